//! The versioned image identifier, its text form, distances and the "same picture" rule.

use std::fmt;
use std::str::FromStr;

/// Version prefix of the text form. Any change to decoding, resizing or features changes the
/// bits, so it must change this too.
pub const VERSION: &str = "v2";

/// Bits of feature data in an identifier (the aspect ratio comes on top).
pub const FEATURE_BITS: u32 = 256 + 64 + 256;

/// An identifier computed from the picture's own features: it survives renames, metadata edits,
/// re-encoding, resizing, format conversion and orientation tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identifier {
    /// Luminance structure: signs of 256 low-frequency DCT coefficients against their median.
    pub(crate) luma: [u64; 4],
    /// Texture: which of 64 blocks carry more gradient energy than the median block.
    pub(crate) texture: u64,
    /// Colour and exposure: thermometer-coded luma and chroma of a 4×4 grid.
    pub(crate) colour: [u64; 4],
    /// log2(width / height) in 1/4096 steps.
    pub(crate) aspect: i16,
}

/// How far apart two identifiers are, per feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Distance {
    /// Differing luminance-structure bits, of 256.
    pub luma: u32,
    /// Differing texture bits, of 64.
    pub texture: u32,
    /// Differing colour and exposure bits, of 256.
    pub colour: u32,
    /// Aspect-ratio difference in 1/4096 steps of log2.
    pub aspect: u32,
}

/// The "same picture" rule: every feature must be within its bound.
///
/// Measured by `crates/identify/tests/thresholds.rs` on the 34 real photos in `tests/photos`:
///
/// | | luma | texture | colour |
/// |---|---|---|---|
/// | largest, 306 same-picture copies (q75, half size, tag, strip, PNG, 3 rotations, progressive) | 16 | 4 | 3 |
/// | smallest, 559 pairs of distinct photos | 104 | 12 | 0 |
/// | stereo pair | 82 | 14 | 7 |
/// | smallest, 2 % camera pan of each photo | 38 | | |
/// | smallest, +1 stop exposure bracket of each photo | | | 12 |
///
/// (Measured with v1's decode. With v2's larger reduced decode, the largest copy distance is
/// 11: luma 10, colour 1.) A candidate within these bounds is then verified (`verify`).
///
/// Each bound sits nearer the copies than the different shots: a wrong "same picture" means a
/// photo never backed up, a wrong "different" only an extra upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub luma: u32,
    pub texture: u32,
    pub colour: u32,
    pub aspect: u32,
}

pub const SAME_PICTURE: Thresholds = Thresholds {
    luma: 26,
    texture: 16,
    colour: 6,
    // 2 % in width/height: resizing rounds a side by a pixel, cropping changes far more.
    aspect: 117,
};

impl Distance {
    /// Differing feature bits in all, of [`FEATURE_BITS`].
    pub fn total(&self) -> u32 {
        self.luma + self.texture + self.colour
    }

    pub fn within(&self, t: &Thresholds) -> bool {
        self.luma <= t.luma
            && self.texture <= t.texture
            && self.colour <= t.colour
            && self.aspect <= t.aspect
    }

    pub fn is_same_picture(&self) -> bool {
        self.within(&SAME_PICTURE)
    }
}

impl fmt::Display for Distance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (luma {}, texture {}, colour {})",
            self.total(),
            self.luma,
            self.texture,
            self.colour
        )
    }
}

fn hamming<const N: usize>(a: &[u64; N], b: &[u64; N]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

impl Identifier {
    pub(crate) fn aspect_of(width: u32, height: u32) -> i16 {
        if width == 0 || height == 0 {
            return 0;
        }
        let l = (f64::from(width) / f64::from(height)).log2() * 4096.0;
        l.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
    }

    pub fn distance(&self, other: &Identifier) -> Distance {
        Distance {
            luma: hamming(&self.luma, &other.luma),
            texture: (self.texture ^ other.texture).count_ones(),
            colour: hamming(&self.colour, &other.colour),
            aspect: u32::from(self.aspect.abs_diff(other.aspect)),
        }
    }

    /// All feature bits, for indexes that work on one bit string.
    pub fn feature_words(&self) -> [u64; WORDS] {
        let [a, b, c, d] = self.luma;
        let [e, f, g, h] = self.colour;
        [a, b, c, d, self.texture, e, f, g, h]
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VERSION}:")?;
        for w in self.feature_words() {
            write!(f, "{w:016x}")?;
        }
        write!(f, "{:04x}", self.aspect as u16)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdentifierError {
    #[error("identifier version {0:?} is not {VERSION}")]
    Version(String),
    #[error("identifier must be {VERSION}: followed by {TEXT_HEX} hex digits")]
    Malformed,
}

const WORDS: usize = 9;
const TEXT_HEX: usize = WORDS * 16 + 4;

impl FromStr for Identifier {
    type Err = ParseIdentifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (version, hex) = s.split_once(':').ok_or(ParseIdentifierError::Malformed)?;
        if version != VERSION {
            return Err(ParseIdentifierError::Version(version.to_owned()));
        }
        if hex.len() != TEXT_HEX || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseIdentifierError::Malformed);
        }
        let word = |i: usize| {
            u64::from_str_radix(&hex[i * 16..(i + 1) * 16], 16)
                .map_err(|_| ParseIdentifierError::Malformed)
        };
        let aspect = u16::from_str_radix(&hex[WORDS * 16..], 16)
            .map_err(|_| ParseIdentifierError::Malformed)? as i16;
        Ok(Identifier {
            luma: [word(0)?, word(1)?, word(2)?, word(3)?],
            texture: word(4)?,
            colour: [word(5)?, word(6)?, word(7)?, word(8)?],
            aspect,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Identifier {
        Identifier {
            luma: [1, u64::MAX, 0x0123_4567_89ab_cdef, 42],
            texture: 7,
            colour: [u64::MAX - 1, 3, 0, 5],
            aspect: -1234,
        }
    }

    #[test]
    fn text_form_round_trips() {
        let id = sample();
        let text = id.to_string();
        assert!(text.starts_with("v2:"));
        assert_eq!(text.len(), 3 + TEXT_HEX);
        assert_eq!(text.parse::<Identifier>().unwrap(), id);
    }

    #[test]
    fn parse_rejects_bad_text() {
        let text = sample().to_string();
        assert_eq!(
            text.replacen("v2", "v1", 1).parse::<Identifier>(),
            Err(ParseIdentifierError::Version("v1".into()))
        );
        assert_eq!(
            text[..text.len() - 1].parse::<Identifier>(),
            Err(ParseIdentifierError::Malformed)
        );
        assert_eq!(
            text.replacen('0', "g", 1).parse::<Identifier>(),
            Err(ParseIdentifierError::Malformed)
        );
        assert_eq!(
            "no-colon".parse::<Identifier>(),
            Err(ParseIdentifierError::Malformed)
        );
    }

    #[test]
    fn distance_counts_bits_per_feature() {
        let a = sample();
        let mut b = a;
        b.luma[1] ^= 0b111;
        b.texture ^= 1;
        b.colour[0] ^= 0b11;
        b.aspect += 10;
        let d = a.distance(&b);
        assert_eq!(
            d,
            Distance {
                luma: 3,
                texture: 1,
                colour: 2,
                aspect: 10
            }
        );
        assert_eq!(d.total(), 6);
        assert!(d.is_same_picture());
        b.luma = a.luma.map(|w| !w);
        assert!(!a.distance(&b).is_same_picture());
    }
}
