//! The wire between Photosync clients and the server: tus header names, the `Upload-Metadata`
//! keys, and the JSON bodies of the detection, listing and error endpoints.
//!
//! Only this crate and the shells (server handlers, CLI, desktop app) know about JSON.

mod headers;
mod metadata;
mod name;

pub use headers::{
    is_offset_content_type, parse_number, parse_range, ByteRange, ChecksumAlgorithm,
    ChecksumHeader, HeaderError, RangeError,
};
pub use metadata::{Metadata, MetadataError};
pub use name::{display_name, percent_decode_name, percent_encode_name, NameError, NAME_MAX};

use serde::{Deserialize, Serialize};

/// tus 1.0.0 header names and values.
pub mod tus {
    pub const VERSION: &str = "1.0.0";
    pub const RESUMABLE: &str = "tus-resumable";
    pub const VERSION_HEADER: &str = "tus-version";
    pub const EXTENSION: &str = "tus-extension";
    pub const MAX_SIZE: &str = "tus-max-size";
    pub const CHECKSUM_ALGORITHM: &str = "tus-checksum-algorithm";
    pub const UPLOAD_OFFSET: &str = "upload-offset";
    pub const UPLOAD_LENGTH: &str = "upload-length";
    pub const UPLOAD_METADATA: &str = "upload-metadata";
    pub const UPLOAD_EXPIRES: &str = "upload-expires";
    pub const UPLOAD_CHECKSUM: &str = "upload-checksum";
    pub const OFFSET_CONTENT_TYPE: &str = "application/offset+octet-stream";
    pub const EXTENSIONS: &str = "creation,creation-with-upload,expiration,checksum,termination";
    /// sha1 is mandatory in the checksum extension; blake3 is the fast one.
    pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256,blake3";
    /// Status for a part whose checksum does not match (checksum extension).
    pub const CHECKSUM_MISMATCH: u16 = 460;
}

/// `Upload-Metadata` keys a Photosync client sends with each upload.
pub mod meta {
    /// The file name, without folders, as text for people: [`crate::display_name`] of the
    /// exact bytes when they are not UTF-8.
    pub const NAME: &str = "filename";
    /// The exact bytes of the file name, [`crate::percent_encode_name`]d. Optional; sent beside
    /// `filename`, so that a name that is not UTF-8 can be restored as it was.
    pub const NAME_BYTES: &str = "filename-bytes";
    /// BLAKE3 of the whole file, 64 hex digits. Optional: when given, the server verifies it on
    /// completion; when absent, the server computes it from what it received.
    pub const DIGEST: &str = "digest";
    /// The image identifier (`v1:...`), when the file is an image.
    pub const IDENTIFIER: &str = "identifier";
    /// The file's size in bytes.
    pub const SIZE: &str = "size";
    /// Modification time, seconds since the Unix epoch.
    pub const MTIME: &str = "mtime";
    /// The folder the file lies in, relative to the folder it was synced from: components
    /// joined by `/`, without the file name. Optional; see [`crate::check_folder`].
    pub const FOLDER: &str = "folder";
}

/// The thumbnail sizes the server makes (`GET /api/v1/images/ID/thumbnail?size=N`): the
/// longest side in pixels. Made from the reduced decode, so none is larger than it keeps.
pub const THUMBNAIL_SIZES: [u32; 2] = [128, 256];

/// Paths of the HTTP API.
pub mod path {
    pub const UPLOADS: &str = "/files/";
    pub const DETECT: &str = "/api/v1/detect";
    pub const IMAGES: &str = "/api/v1/images";
    pub const ACCOUNT: &str = "/api/v1/account";
    /// Unauthenticated: 200 while the server can reach its store (load balancers' checks).
    pub const HEALTH: &str = "/api/v1/health";
    /// Unauthenticated: the server's version and the protocols it speaks ([`VersionInfo`]).
    pub const VERSION: &str = "/api/v1/version";
}

/// The protocol this build speaks. It changes only when clients and servers of different
/// protocols could not work together; a server without the version endpoint speaks 1.
pub const PROTOCOL: u32 = 1;
/// The oldest protocol this build still speaks.
pub const OLDEST_PROTOCOL: u32 = 1;

/// `GET /api/v1/version`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The server's release, e.g. `0.1.0`.
    pub version: String,
    /// The commit it was built from (`unknown` outside a git checkout).
    pub commit: String,
    pub protocol: u32,
    pub oldest_protocol: u32,
}

impl VersionInfo {
    /// Whether a peer speaking protocols `oldest..=newest` can talk to this one: the two
    /// ranges meet.
    pub fn speaks_with(&self, oldest: u32, newest: u32) -> bool {
        self.oldest_protocol <= newest && oldest <= self.protocol
    }
}

/// Response header naming the stored image once an upload is complete (final PATCH, HEAD).
pub const IMAGE_ID_HEADER: &str = "photosync-image-id";

/// Request header of a PATCH naming the file anew, in the form of `Upload-Metadata` (`filename`,
/// `filename-bytes`): the file was renamed while it was uploaded, and the image takes the name
/// it has at completion.
pub const NAME_HEADER: &str = "photosync-name";

/// Response header of a creation (201) that declared a digest the user's account already has
/// in hand: in an unfinished upload another client is sending, which the creation joined, or
/// in a stored image, named by `IMAGE_ID_HEADER`. Its value is where the upload stands (the
/// length when stored); the client watches it rather than send the same bytes a second time.
pub const JOINED_HEADER: &str = "photosync-joined";

/// Most images one detection request may carry.
pub const DETECT_MAX_BATCH: usize = 10_000;

/// `POST /api/v1/detect`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectRequest {
    pub images: Vec<DetectQuery>,
}

/// One image asked about: its digest, and its identifier when it is an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectQuery {
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectResponse {
    /// One answer per query, in the order asked.
    pub results: Vec<DetectResult>,
}

/// What the server holds for one queried image, for the asking user only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DetectResult {
    /// Nothing like it.
    Absent,
    /// This exact file.
    SameBytes { image: ImageInfo },
    /// Images alike by the identifier, nearest first. Each carries the server's evidence, for
    /// the client's verification step: it alone decides whether one is the same picture.
    Candidates { candidates: Vec<Candidate> },
}

/// An image the identifier finds alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub image: ImageInfo,
    pub distance: Distance,
    /// The server's verification evidence of the image (`e1;...`); absent while it has not
    /// been computed, and then nothing can be verified against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distance {
    pub total: u32,
    pub luma: u32,
    pub texture: u32,
    pub colour: u32,
}

/// An image the server holds for a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: i64,
    pub name: String,
    /// The exact bytes of the file name, percent-encoded, when the client sent them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_bytes: Option<String>,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    /// Seconds since the Unix epoch.
    pub uploaded_at: i64,
    /// The folder the file was in, relative to the folder it was synced from (`a/b`), when
    /// the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// When the picture was taken, from its EXIF (`YYYY-MM-DDTHH:MM:SS[.fff]`, the camera's
    /// local time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken: Option<String>,
    /// The picture's format (`jpeg`, `png`, `dng`...), when the server could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// Why a relative folder is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FolderError {
    #[error("is longer than {FOLDER_MAX} bytes")]
    TooLong,
    #[error("has an empty, '.' or '..' component, or starts or ends with '/'")]
    BadComponent,
    #[error("has a control character or a backslash")]
    BadCharacter,
    #[error("has a component longer than 255 bytes")]
    ComponentTooLong,
}

/// Longest relative folder the server keeps.
pub const FOLDER_MAX: usize = 4096;

/// Checks a relative folder: `/`-separated components, none empty, `.` or `..`, no control
/// characters or backslashes, each at most 255 bytes. The empty string is the synced folder
/// itself.
pub fn check_folder(folder: &str) -> Result<(), FolderError> {
    if folder.len() > FOLDER_MAX {
        return Err(FolderError::TooLong);
    }
    if folder.is_empty() {
        return Ok(());
    }
    if folder.chars().any(|c| c.is_control() || c == '\\') {
        return Err(FolderError::BadCharacter);
    }
    for part in folder.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(FolderError::BadComponent);
        }
        if part.len() > 255 {
            return Err(FolderError::ComponentTooLong);
        }
    }
    Ok(())
}

/// `GET /api/v1/images?after=ID&limit=N[&since=DATE][&until=DATE][&name=TEXT]`: `since` and
/// `until` (`YYYY-MM-DD`, both days included) filter by the day the picture was taken (its
/// modification time, else its upload, when it has no capture time); `name` keeps the names
/// containing the text, ignoring ASCII case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageList {
    pub images: Vec<ImageInfo>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// `GET /api/v1/account`: whose token this is, and what the account holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub user: String,
    pub images: u64,
    /// Bytes of the account's images.
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
}

/// Every error body: a stable machine-readable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

/// `secs` since the Unix epoch as UTC `YYYY-MM-DDTHH:MM:SS`, the form of capture times.
pub fn utc_time_text(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Encodes a wire body as JSON, so that clients need not know the format.
pub fn to_json<T: Serialize>(body: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(body).unwrap_or_default()
}

/// Decodes a JSON wire body.
pub fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_utc_calendar_dates() {
        assert_eq!(utc_time_text(0), "1970-01-01T00:00:00");
        assert_eq!(utc_time_text(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(utc_time_text(1_767_225_599), "2025-12-31T23:59:59");
        assert_eq!(utc_time_text(-1), "1969-12-31T23:59:59");
    }

    #[test]
    fn folders_are_relative_and_plain() {
        for ok in ["", "2024", "2024/Summer trip", "a/b/c", "été/日本"] {
            assert_eq!(check_folder(ok), Ok(()), "{ok:?}");
        }
        for bad in ["/abs", "a/", "a//b", "..", "a/../b", "./a", "a/."] {
            assert_eq!(check_folder(bad), Err(FolderError::BadComponent), "{bad:?}");
        }
        assert_eq!(check_folder("a\\b"), Err(FolderError::BadCharacter));
        assert_eq!(check_folder("a\nb"), Err(FolderError::BadCharacter));
        assert_eq!(
            check_folder(&"x".repeat(256)),
            Err(FolderError::ComponentTooLong)
        );
        assert_eq!(check_folder(&"x/".repeat(3000)), Err(FolderError::TooLong));
    }

    #[test]
    fn detect_results_are_tagged() {
        let r = DetectResponse {
            results: vec![DetectResult::Absent],
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"results":[{"status":"absent"}]}"#
        );
        let q: DetectRequest = serde_json::from_str(
            r#"{"images":[{"digest":"ab"},{"digest":"cd","identifier":"v1:0"}]}"#,
        )
        .unwrap();
        assert_eq!(q.images[0].identifier, None);
        assert_eq!(q.images[1].identifier.as_deref(), Some("v1:0"));
    }
}
