//! Photosync's image identity: what a file is, computed from the picture itself.
//!
//! [`identify_file`] reads a file once and returns its [`Identity`]: a feature [`Identifier`]
//! that survives renames, metadata edits, re-encoding, resizing and orientation tags, the BLAKE3
//! [`Digest`] of its bytes, and its size and format. [`compare`] tells two identities apart in
//! one of three ways: the same bytes, the same picture in a different file, or different.
//!
//! This crate reads files and nothing else: no network, no database, no async runtime.

mod capture;
mod decode;
mod detail;
mod error;
mod evidence;
mod features;
mod group;
mod heif;
mod identifier;
mod index;
pub mod media;
mod quality;
mod raw;

use std::fmt;
use std::path::Path;

pub use capture::{Capture, CaptureClash};
pub use decode::{Format, Limits};
pub use detail::{Detail, DetailDistance, ParseDetailError, SAME_DETAIL};
pub use error::IdentifyError;
pub use evidence::{verify, Evidence, ParseEvidenceError, Refuted, EVIDENCE_VERSION};
pub use group::{group, Group, Member};
pub use identifier::{
    Distance, Identifier, ParseIdentifierError, Thresholds, FEATURE_BITS, SAME_PICTURE, VERSION,
};
pub use index::{BkTree, MultiIndex};
pub use quality::{Class, Grade, Quality, Shortfall};
pub use raw::RawKind;

/// BLAKE3 of a file's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Text that is not a digest's 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a digest is 64 hex digits")]
pub struct ParseDigestError;

impl std::str::FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Digest, ParseDigestError> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(ParseDigestError);
        }
        let nibble = |c: u8| (c as char).to_digit(16).ok_or(ParseDigestError);
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks(2).enumerate() {
            out[i] = (nibble(pair[0])? * 16 + nibble(pair[1])?) as u8;
        }
        Ok(Digest(out))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Everything known about one image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub identifier: Identifier,
    /// What confirms a same-picture candidate, and how good this copy is.
    pub evidence: Evidence,
    pub digest: Digest,
    /// Upright size in pixels, after the orientation tag is applied.
    pub width: u32,
    pub height: u32,
    pub format: Format,
    /// File size in bytes.
    pub bytes: u64,
}

impl Identity {
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// How good a copy this is, for "at least as good".
    pub fn grade(&self) -> Grade {
        Grade {
            pixels: self.pixels(),
            quality: self.evidence.quality,
        }
    }
}

/// How two images relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Identical bytes.
    SameBytes,
    /// A different file of the same picture (re-encoded, resized, converted, re-tagged...).
    SamePicture(Distance),
    /// Different pictures, however alike.
    Different(Distance),
    /// Alike by the identifier, and told apart by the verification step.
    Refuted(Distance, Refuted),
}

impl Match {
    pub fn is_same(&self) -> bool {
        matches!(self, Match::SameBytes | Match::SamePicture(_))
    }
}

/// Compares two identities with the crate's one "same picture" rule: the identifiers within
/// [`SAME_PICTURE`], then the [`verify`] step.
pub fn compare(a: &Identity, b: &Identity) -> Match {
    if a.digest == b.digest {
        return Match::SameBytes;
    }
    let d = a.identifier.distance(&b.identifier);
    if !d.is_same_picture() {
        return Match::Different(d);
    }
    match verify(&a.evidence, &b.evidence) {
        Ok(_) => Match::SamePicture(d),
        Err(why) => Match::Refuted(d, why),
    }
}

/// The image format the first bytes of a file announce (64 are plenty), without reading the
/// rest: `NotAnImage` or `Unsupported` for everything this crate cannot identify.
pub fn sniff_format(head: &[u8]) -> Result<Format, IdentifyError> {
    decode::sniff(head)
}

/// Reads `path` once, then digests and identifies the bytes.
pub fn identify_file(path: &Path, limits: &Limits) -> Result<Identity, IdentifyError> {
    identify_bytes(&read_file(path, limits)?, limits)
}

/// The whole file, refused before reading if it is over the limit, and if it grew past it
/// while being read.
fn read_file(path: &Path, limits: &Limits) -> Result<Vec<u8>, IdentifyError> {
    use std::io::Read;
    let max = limits.max_file_bytes;
    let size = std::fs::metadata(path)?.len();
    if size > max {
        return Err(IdentifyError::FileTooLarge { size, max });
    }
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(IdentifyError::FileTooLarge {
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

/// The picture of `path`, upright and decoded at reduced size where the format allows it (a
/// 12 MP JPEG comes out at 500×375; the short side stays at least 128 px): enough for a
/// thumbnail, at a fraction of a full decode's cost.
pub fn preview(path: &Path, limits: &Limits) -> Result<image::RgbImage, IdentifyError> {
    preview_bytes(&read_file(path, limits)?, limits)
}

/// [`preview`] of an image already in memory.
pub fn preview_bytes(bytes: &[u8], limits: &Limits) -> Result<image::RgbImage, IdentifyError> {
    if bytes.is_empty() {
        return Err(IdentifyError::Empty);
    }
    Ok(decode::decode(bytes, limits)?.pixels)
}

/// Digests and identifies an image already in memory.
pub fn identify_bytes(bytes: &[u8], limits: &Limits) -> Result<Identity, IdentifyError> {
    if bytes.is_empty() {
        return Err(IdentifyError::Empty);
    }
    // Hash while the bytes are hot in cache; the decode reads the same buffer.
    let digest = Digest::of(bytes);
    let mut decoded = decode::decode(bytes, limits)?;
    let identifier = features::identifier(&decoded.pixels, decoded.width, decoded.height);
    tracing::trace!(%digest, %identifier, format = %decoded.format, "identified");
    let evidence = Evidence {
        detail: Detail::of(&decoded.pixels, decoded.content),
        capture: decoded
            .capture
            .take()
            .unwrap_or_else(|| Capture::from_exif(bytes)),
        quality: Quality::of(decoded.format, bytes),
    };
    Ok(Identity {
        identifier,
        evidence,
        digest,
        width: decoded.width,
        height: decoded.height,
        format: decoded.format,
        bytes: bytes.len() as u64,
    })
}

/// Identifies many files on a bounded pool of `threads` workers (0: one per core). Each worker
/// holds at most one file and one decode at a time, so memory stays bounded however many files
/// there are. Results come back in input order.
pub fn identify_all<P: AsRef<Path> + Sync>(
    paths: &[P],
    limits: &Limits,
    threads: usize,
) -> Vec<Result<Identity, IdentifyError>> {
    use rayon::prelude::*;
    let run = || {
        paths
            .par_iter()
            .map(|p| identify_file(p.as_ref(), limits))
            .collect()
    };
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(run),
        Err(e) => {
            tracing::warn!(error = %e, "no thread pool; identifying on the caller's thread");
            paths
                .iter()
                .map(|p| identify_file(p.as_ref(), limits))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_reads_back_from_its_text_and_nothing_else_is_one() {
        let d = Digest::of(b"photo");
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        let text = d.to_string();
        for bad in [&text[1..], "", &format!("{}zz", &text[2..])] {
            assert_eq!(bad.parse::<Digest>(), Err(ParseDigestError), "{bad:?}");
        }
    }
}
