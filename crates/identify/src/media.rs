//! Whether a file is part of a photo library: photos, videos, RAW files and their sidecars.
//!
//! Content decides first, then the name. A file whose first bytes announce an image or a video
//! is media whatever it is called. A file that reads as text is media only as a sidecar (XMP,
//! AAE), so a text file named `.jpg` is not a photo. Binary content no signature matches (a RAW
//! format, a video container the signatures do not know, a damaged file) is media when its
//! extension says so: when in doubt, back it up.

use std::path::Path;

/// How many leading bytes [`classify`] looks at.
pub const HEAD_BYTES: usize = 4096;

/// What a file is to a photo library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Photo,
    Video,
    /// A camera's raw sensor data (CR2, NEF, ARW, DNG...).
    Raw,
    /// Edits and metadata kept beside a photo (XMP, AAE).
    Sidecar,
    /// Anything else: documents, text, archives, programs.
    Other,
}

impl FileKind {
    /// Whether a photo library backs it up by default.
    pub fn is_media(self) -> bool {
        self != FileKind::Other
    }
}

const RAW: &[&str] = &[
    "3fr", "ari", "arw", "bay", "braw", "cr2", "cr3", "crw", "dcr", "dng", "erf", "fff", "iiq",
    "k25", "kdc", "mef", "mos", "mrw", "nef", "nrw", "orf", "pef", "raf", "raw", "rw2", "rwl",
    "sr2", "srf", "srw", "x3f",
];
const PHOTO: &[&str] = &[
    "avif", "bmp", "gif", "heic", "heif", "hif", "jfif", "jpe", "jpeg", "jpg", "jxl", "png", "psd",
    "tif", "tiff", "webp",
];
const VIDEO: &[&str] = &[
    "3g2", "3gp", "avi", "insv", "lrv", "m2ts", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "mts",
    "ts", "vob", "webm", "wmv",
];
const SIDECAR: &[&str] = &["aae", "xmp"];

/// What the file name alone suggests.
pub fn kind_by_name(path: &Path) -> FileKind {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return FileKind::Other;
    };
    let ext = ext.to_ascii_lowercase();
    let is = |list: &[&str]| list.contains(&ext.as_str());
    if is(RAW) {
        FileKind::Raw
    } else if is(PHOTO) {
        FileKind::Photo
    } else if is(VIDEO) {
        FileKind::Video
    } else if is(SIDECAR) {
        FileKind::Sidecar
    } else {
        FileKind::Other
    }
}

/// What the file is, from its name and its first bytes (up to [`HEAD_BYTES`]).
pub fn classify(path: &Path, head: &[u8]) -> FileKind {
    let by_name = kind_by_name(path);
    if let Some(t) = infer::get(head) {
        match t.matcher_type() {
            // A TIFF-shaped RAW (NEF, ARW, DNG) is known by its name.
            infer::MatcherType::Image if by_name == FileKind::Raw => return FileKind::Raw,
            infer::MatcherType::Image if !matches!(t.extension(), "dwg" | "djvu") => {
                return if t.extension() == "cr2" {
                    FileKind::Raw
                } else {
                    FileKind::Photo
                }
            }
            infer::MatcherType::Video => return FileKind::Video,
            _ => {}
        }
    }
    if looks_like_text(head) {
        // XMP and AAE are XML; any other text is not a picture, whatever its name.
        return if by_name == FileKind::Sidecar {
            FileKind::Sidecar
        } else {
            FileKind::Other
        };
    }
    by_name
}

/// Printable UTF-8 with no control bytes but line breaks and tabs (a cut at the end of the
/// sample is allowed).
fn looks_like_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            // Cut inside a character at the end of the sample.
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid.is_empty()
        && valid
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{feff}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str, head: &[u8]) -> FileKind {
        classify(Path::new(name), head)
    }

    #[test]
    fn content_decides_before_the_name() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
        assert_eq!(kind("IMG_0001.JPG", &jpeg), FileKind::Photo);
        assert_eq!(kind("renamed.txt", &jpeg), FileKind::Photo);
        assert_eq!(kind("no-extension", &jpeg), FileKind::Photo);
        let mp4 = *b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";
        assert_eq!(kind("clip.bin", &mp4), FileKind::Video);
        let mkv = b"\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x88matroska\x42\x87\x81\x04";
        let mut mkv = mkv.to_vec();
        mkv.resize(300, 0);
        assert_eq!(kind("film", &mkv), FileKind::Video);
    }

    #[test]
    fn text_is_not_a_photo_whatever_its_name() {
        assert_eq!(kind("LICENSES.md", b"# Licenses\n\nMIT\n"), FileKind::Other);
        assert_eq!(
            kind("notes.jpg", b"not a photo at all\r\n"),
            FileKind::Other
        );
        assert_eq!(kind("holiday.mp4", "caf\u{e9}".as_bytes()), FileKind::Other);
        // A sample cut inside a multi-byte character is still text.
        assert_eq!(kind("a.jpg", &"café".as_bytes()[..4]), FileKind::Other);
    }

    #[test]
    fn sidecars_are_media_as_text() {
        let xmp = b"<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>\n<x:xmpmeta/>";
        assert_eq!(kind("IMG_0001.xmp", xmp), FileKind::Sidecar);
        assert_eq!(
            kind("IMG_0001.AAE", b"<?xml version=\"1.0\"?>\n<plist/>"),
            FileKind::Sidecar
        );
        assert_eq!(
            kind("notes.xml", b"<?xml version=\"1.0\"?>"),
            FileKind::Other
        );
    }

    #[test]
    fn unknown_binary_content_follows_its_extension() {
        let junk = [0x00, 0x9F, 0x13, 0xF0, 0x00, 0x01, 0x02, 0xFE];
        // A video container or RAW format no signature knows, or a damaged file: backed up.
        assert_eq!(kind("clip.mts", &junk), FileKind::Video);
        assert_eq!(kind("DSC_0001.NEF", &junk), FileKind::Raw);
        assert_eq!(kind("broken.jpg", &junk), FileKind::Photo);
        assert_eq!(kind("archive.zip", &junk), FileKind::Other);
        assert_eq!(kind("program", &junk), FileKind::Other);
        // A TIFF-shaped RAW keeps its RAW name.
        let tiff = [b'I', b'I', 42, 0, 8, 0, 0, 0];
        assert_eq!(kind("DSC_0001.nef", &tiff), FileKind::Raw);
        assert_eq!(kind("scan.tif", &tiff), FileKind::Photo);
    }

    #[test]
    fn documents_and_audio_are_not_photos() {
        let pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n";
        assert_eq!(kind("scan.pdf", pdf), FileKind::Other);
        let zip = [b'P', b'K', 3, 4, 20, 0, 0, 0, 8, 0];
        assert_eq!(kind("photos.zip", &zip), FileKind::Other);
        assert!(FileKind::Raw.is_media() && FileKind::Sidecar.is_media());
        assert!(!FileKind::Other.is_media());
    }
}
