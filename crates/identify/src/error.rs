use std::io;

/// Why one file could not be identified. Every variant is a per-file outcome with a reason a
/// person can act on; none of them is fatal to a run over many files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentifyError {
    #[error("cannot read file: {0}")]
    Io(#[from] io::Error),

    #[error("empty file (0 bytes)")]
    Empty,

    #[error("file is {size} bytes, over the {max}-byte limit for images")]
    FileTooLarge { size: u64, max: u64 },

    #[error("not an image: the content matches no known image format")]
    NotAnImage,

    #[error("unsupported format: {0}")]
    Unsupported(String),

    #[error("image is {width}x{height} pixels, over the {max_pixels}-pixel limit")]
    TooManyPixels {
        width: u64,
        height: u64,
        max_pixels: u64,
    },

    #[error("corrupt or truncated {format} image: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
}

impl IdentifyError {
    /// A stable, machine-readable name for the kind of failure.
    pub fn code(&self) -> &'static str {
        match self {
            IdentifyError::Io(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                "permission_denied"
            }
            IdentifyError::Io(_) => "io",
            IdentifyError::Empty => "empty",
            IdentifyError::FileTooLarge { .. } => "file_too_large",
            IdentifyError::NotAnImage => "not_an_image",
            IdentifyError::Unsupported(_) => "unsupported_format",
            IdentifyError::TooManyPixels { .. } => "too_many_pixels",
            IdentifyError::Corrupt { .. } => "corrupt",
        }
    }
}
