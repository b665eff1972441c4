//! What confirms or refutes a same-picture candidate, and its text form.
//!
//! The identifier finds candidates; [`verify`] decides. Capture metadata that both files have
//! and that differs says "different" outright. A RAW file and a rendering of it are kept both.
//! Otherwise the [`Detail`] grids must agree cell by cell.

use std::fmt;
use std::str::FromStr;

use crate::capture::{Capture, CaptureClash};
use crate::detail::{Detail, DetailDistance};
use crate::quality::{Class, Quality};

/// Version prefix of the text form.
pub const EVIDENCE_VERSION: &str = "e1";

/// Everything beyond the identifier that decides "same picture" and "at least as good".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub detail: Detail,
    pub capture: Capture,
    pub quality: Quality,
}

/// Why a candidate is not the same picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuted {
    /// Capture metadata both files have tells them apart.
    Capture(CaptureClash),
    /// One is a RAW file, the other a rendering: RAW + JPEG shooting keeps both.
    RawAndRendering,
    /// Some part of the picture differs: a moved, added or removed subject.
    Detail(DetailDistance),
}

impl fmt::Display for Refuted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refuted::Capture(c) => f.write_str(c.describe()),
            Refuted::RawAndRendering => f.write_str("a RAW file and a rendering of it: both kept"),
            Refuted::Detail(d) => write!(f, "a part of the picture differs ({} levels)", d.worst),
        }
    }
}

/// The verification step: `Ok` with the detail distance when `a` and `b`, already candidates
/// by their identifiers, are the same picture.
pub fn verify(a: &Evidence, b: &Evidence) -> Result<DetailDistance, Refuted> {
    if let Some(clash) = a.capture.clash(&b.capture) {
        return Err(Refuted::Capture(clash));
    }
    if (a.quality.class == Class::Raw) != (b.quality.class == Class::Raw) {
        return Err(Refuted::RawAndRendering);
    }
    let d = a.detail.compare(&b.detail);
    if d.is_same_picture() {
        Ok(d)
    } else {
        Err(Refuted::Detail(d))
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{EVIDENCE_VERSION};q={}", self.quality.class.name())?;
        if let Some(q) = self.quality.jpeg {
            write!(f, ":{q}")?;
        }
        let c = &self.capture;
        for (key, value) in [("t", &c.time), ("u", &c.unique_id), ("s", &c.serial)] {
            if let Some(v) = value {
                write!(f, ";{key}={v}")?;
            }
        }
        if let Some(n) = c.shutter_count {
            write!(f, ";n={n}")?;
        }
        write!(f, ";d={}", self.detail)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseEvidenceError {
    #[error("evidence version {0:?} is not {EVIDENCE_VERSION}")]
    Version(String),
    #[error("malformed evidence: {0}")]
    Malformed(&'static str),
}

impl FromStr for Evidence {
    type Err = ParseEvidenceError;

    fn from_str(s: &str) -> Result<Evidence, ParseEvidenceError> {
        let bad = ParseEvidenceError::Malformed;
        let mut parts = s.split(';');
        let version = parts.next().unwrap_or_default();
        if version != EVIDENCE_VERSION {
            return Err(ParseEvidenceError::Version(version.to_owned()));
        }
        let (mut detail, mut quality) = (None, None);
        let mut capture = Capture::default();
        for part in parts {
            let (key, value) = part.split_once('=').ok_or(bad("a part without '='"))?;
            let text = || (!value.is_empty()).then(|| value.to_owned());
            match key {
                "d" => detail = Some(value.parse::<Detail>().map_err(|_| bad("detail"))?),
                "q" => {
                    let (class, jpeg) = value
                        .split_once(':')
                        .map_or((value, None), |(c, q)| (c, Some(q)));
                    let class = Class::from_name(class).ok_or(bad("class"))?;
                    let jpeg = match jpeg {
                        None => None,
                        Some(q) => Some(q.parse::<u8>().map_err(|_| bad("jpeg quality"))?),
                    };
                    quality = Some(Quality { class, jpeg });
                }
                "t" => capture.time = text(),
                "u" => capture.unique_id = text(),
                "s" => capture.serial = text(),
                "n" => {
                    capture.shutter_count = Some(value.parse().map_err(|_| bad("shutter count"))?)
                }
                // Keys of later builds: ignored, so their evidence still reads.
                _ => {}
            }
        }
        Ok(Evidence {
            detail: detail.ok_or(bad("no detail"))?,
            capture,
            quality: quality.ok_or(bad("no quality"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(time: Option<&str>, class: Class) -> Evidence {
        let cells: Vec<u8> = (0..crate::detail::GRID * crate::detail::GRID)
            .map(|i| ((i * 7) % 251) as u8)
            .collect();
        let text = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, cells);
        Evidence {
            detail: text.parse().unwrap_or_else(|e| panic!("{e}")),
            capture: Capture {
                time: time.map(str::to_owned),
                unique_id: Some("ABC123".into()),
                serial: Some("0042".into()),
                shutter_count: Some(1234),
            },
            quality: Quality {
                class,
                jpeg: (class == Class::Lossy).then_some(92),
            },
        }
    }

    #[test]
    fn text_form_round_trips_and_refuses_garbage() {
        for e in [
            sample(Some("2024-05-01T10:00:00.12"), Class::Lossy),
            sample(None, Class::Raw),
        ] {
            let text = e.to_string();
            assert_eq!(text.parse::<Evidence>(), Ok(e), "{text}");
        }
        let text = sample(None, Class::Lossless).to_string();
        assert!(matches!(
            text.replacen("e1", "e9", 1).parse::<Evidence>(),
            Err(ParseEvidenceError::Version(_))
        ));
        assert!(text[..text.len() - 2].parse::<Evidence>().is_err());
        assert!("e1;q=lossy".parse::<Evidence>().is_err());
        assert!("e1;q=shiny;d=00".parse::<Evidence>().is_err());
        // A key from a later build is skipped.
        let later = text.replacen("e1;", "e1;z=new;", 1);
        assert_eq!(later.parse::<Evidence>(), Ok(sample(None, Class::Lossless)));
    }

    #[test]
    fn capture_and_raw_pairs_refute_before_the_pixels() {
        let a = sample(Some("2024-05-01T10:00:00.12"), Class::Lossy);
        assert!(verify(&a, &a).is_ok());
        let b = sample(Some("2024-05-01T10:00:00.25"), Class::Lossy);
        assert_eq!(verify(&a, &b), Err(Refuted::Capture(CaptureClash::Time)));
        let raw = sample(Some("2024-05-01T10:00:00.12"), Class::Raw);
        assert_eq!(verify(&a, &raw), Err(Refuted::RawAndRendering));
    }
}
