//! Parsers for the tus header values a server takes from untrusted clients. Pure functions
//! over `&str`, so they can be fuzzed without a server.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::tus;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("must be a non-negative integer, got {0:?}")]
    NotANumber(String),
    #[error("is too large")]
    TooLarge,
    #[error("must be 'algorithm base64'")]
    MalformedChecksum,
    #[error("checksum algorithm {0:?} is not one of {algos}", algos = tus::CHECKSUM_ALGORITHMS)]
    UnsupportedAlgorithm(String),
    #[error("value is not base64{hint}", hint = hex_hint(.0))]
    NotBase64(String),
    #[error("a {algorithm} checksum is {want} bytes, got {got}{hint}", hint = if *.hex { HEX_HINT } else { "" })]
    ChecksumLength {
        algorithm: ChecksumAlgorithm,
        want: usize,
        got: usize,
        /// The value would have been the right length as hex.
        hex: bool,
    },
}

/// Optional whitespace around header values and their parts is spaces and tabs (RFC 9110),
/// nothing else.
pub(crate) fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

const HEX_HINT: &str = " (it looks like hex: encode the raw bytes as base64 instead)";

fn looks_hex(s: &str) -> bool {
    !s.is_empty() && s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex_hint(s: &str) -> &'static str {
    if looks_hex(s) {
        HEX_HINT
    } else {
        ""
    }
}

/// A non-negative decimal integer that fits in an i64, and nothing else (no sign, no spaces
/// inside, no leading `+`).
pub fn parse_number(value: &str) -> Result<u64, HeaderError> {
    let v = trim_ows(value);
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError::NotANumber(v.chars().take(40).collect()));
    }
    match v.parse::<u64>() {
        Ok(n) if n <= i64::MAX as u64 => Ok(n),
        _ => Err(HeaderError::TooLarge),
    }
}

/// Whether a `Content-Type` is tus's `application/offset+octet-stream`: media types compare
/// without regard to letter case, and parameters (`; charset=...`) do not change the type.
pub fn is_offset_content_type(value: &str) -> bool {
    let media = trim_ows(value.split(';').next().unwrap_or_default());
    media.eq_ignore_ascii_case(tus::OFFSET_CONTENT_TYPE)
}

/// The checksum algorithms a server accepts in `Upload-Checksum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
    Blake3,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 3] = [Self::Sha1, Self::Sha256, Self::Blake3];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Blake3 => "blake3",
        }
    }

    /// Length of the digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 | Self::Blake3 => 32,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl std::fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `Upload-Checksum: <algorithm> <base64 digest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumHeader {
    pub algorithm: ChecksumAlgorithm,
    pub expected: Vec<u8>,
}

impl ChecksumHeader {
    pub fn parse(value: &str) -> Result<ChecksumHeader, HeaderError> {
        let (name, encoded) = trim_ows(value)
            .split_once(' ')
            .ok_or(HeaderError::MalformedChecksum)?;
        let algorithm = ChecksumAlgorithm::from_name(name)
            .ok_or_else(|| HeaderError::UnsupportedAlgorithm(name.chars().take(20).collect()))?;
        let encoded = trim_ows(encoded);
        let expected = STANDARD
            .decode(encoded)
            .map_err(|_| HeaderError::NotBase64(encoded.chars().take(128).collect()))?;
        if expected.len() != algorithm.digest_len() {
            return Err(HeaderError::ChecksumLength {
                algorithm,
                want: algorithm.digest_len(),
                got: expected.len(),
                hex: looks_hex(encoded) && encoded.len() == 2 * algorithm.digest_len(),
            });
        }
        Ok(ChecksumHeader {
            algorithm,
            expected,
        })
    }

    /// The header's value.
    pub fn encode(&self) -> String {
        format!("{} {}", self.algorithm, STANDARD.encode(&self.expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_plain_decimals() {
        assert_eq!(parse_number("0"), Ok(0));
        assert_eq!(parse_number(" 42 "), Ok(42));
        assert_eq!(parse_number("9223372036854775807"), Ok(i64::MAX as u64));
        assert_eq!(
            parse_number("9223372036854775808"),
            Err(HeaderError::TooLarge)
        );
        for bad in ["", "-1", "+1", "1.0", "0x10", "1 2", "١"] {
            assert!(parse_number(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_type_ignores_case_and_parameters() {
        assert!(is_offset_content_type("application/offset+octet-stream"));
        assert!(is_offset_content_type("Application/Offset+Octet-Stream"));
        assert!(is_offset_content_type(
            "application/offset+octet-stream; charset=binary"
        ));
        assert!(!is_offset_content_type("application/octet-stream"));
        assert!(!is_offset_content_type(""));
    }

    #[test]
    fn checksums_parse_and_hex_is_named() {
        let sha1 = ChecksumHeader::parse("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        assert_eq!(sha1.algorithm, ChecksumAlgorithm::Sha1);
        assert_eq!(ChecksumHeader::parse(&sha1.encode()), Ok(sha1));
        let hex = "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed";
        let err = ChecksumHeader::parse(&format!("sha1 {hex}")).unwrap_err();
        assert!(err.to_string().contains("looks like hex"), "{err}");
        assert!(matches!(
            ChecksumHeader::parse("md5 AAAA"),
            Err(HeaderError::UnsupportedAlgorithm(_))
        ));
        assert_eq!(
            ChecksumHeader::parse("sha1"),
            Err(HeaderError::MalformedChecksum)
        );
        assert!(matches!(
            ChecksumHeader::parse("sha1 !!"),
            Err(HeaderError::NotBase64(_))
        ));
    }
}

/// One byte range of a blob, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a `Range` header cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Well formed, but no byte of it lies within the content (416).
    #[error("no byte of the range lies within the {0} bytes")]
    Unsatisfiable(u64),
}

/// The one byte range a `Range` header asks for from content of `len` bytes (RFC 9110 14.2).
/// `Ok(None)`: serve the whole content, as for a header that is malformed, of another unit or
/// asks for several ranges (which a server may ignore). A range past the end is cut to it.
pub fn parse_range(value: &str, len: u64) -> Result<Option<ByteRange>, RangeError> {
    // The unit's name is case-insensitive (RFC 9110 14.1).
    let value = trim_ows(value);
    let Some(spec) = value
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &value[6..])
    else {
        return Ok(None);
    };
    let spec = trim_ows(spec);
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (first, last) = (trim_ows(first), trim_ows(last));
    if first.is_empty() {
        // A suffix: the last N bytes.
        if !digits(last) {
            return Ok(None);
        }
        let n = last.parse::<u64>().unwrap_or(u64::MAX);
        if n == 0 || len == 0 {
            return Err(RangeError::Unsatisfiable(len));
        }
        return Ok(Some(ByteRange {
            start: len.saturating_sub(n),
            end: len - 1,
        }));
    }
    if !digits(first) || !(last.is_empty() || digits(last)) {
        return Ok(None);
    }
    let Ok(start) = first.parse::<u64>() else {
        return Err(RangeError::Unsatisfiable(len));
    };
    let end = match last {
        "" => u64::MAX,
        l => l.parse::<u64>().unwrap_or(u64::MAX),
    };
    if end < start {
        return Ok(None);
    }
    if start >= len {
        return Err(RangeError::Unsatisfiable(len));
    }
    Ok(Some(ByteRange {
        start,
        end: end.min(len - 1),
    }))
}

#[cfg(test)]
mod range_tests {
    use super::*;

    fn r(start: u64, end: u64) -> Result<Option<ByteRange>, RangeError> {
        Ok(Some(ByteRange { start, end }))
    }

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-99", 1000), r(0, 99));
        assert_eq!(parse_range("bytes=500-", 1000), r(500, 999));
        assert_eq!(parse_range("bytes=-100", 1000), r(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), r(0, 999));
        assert_eq!(parse_range("bytes=900-5000", 1000), r(900, 999));
        assert_eq!(parse_range(" bytes=1-1 ", 1000), r(1, 1));
        assert_eq!(parse_range("Bytes=2-3", 1000), r(2, 3));
        assert_eq!(parse_range("bytés=2-3", 1000), Ok(None));
        assert_eq!(
            parse_range("bytes=1000-", 1000),
            Err(RangeError::Unsatisfiable(1000))
        );
        assert_eq!(
            parse_range("bytes=-0", 1000),
            Err(RangeError::Unsatisfiable(1000))
        );
        assert_eq!(
            parse_range("bytes=0-", 0),
            Err(RangeError::Unsatisfiable(0))
        );
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 10),
            Err(RangeError::Unsatisfiable(10))
        );
        // Ignored: the whole content is sent.
        for v in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes=0x1-2",
            "",
        ] {
            assert_eq!(parse_range(v, 1000), Ok(None), "{v:?}");
        }
    }
}
