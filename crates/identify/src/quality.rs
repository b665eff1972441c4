//! How good a copy of a picture is: its class (RAW, lossless, lossy), and for a JPEG the
//! quality its quantisation tables were made with.
//!
//! [`Grade::covers`] is the one "at least as good" rule: a same-picture file is skipped only
//! when the server's copy covers it.

use std::cmp::Ordering;
use std::fmt;

use crate::decode::Format;

/// Classes of copy, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Compressed with loss: JPEG, lossy WebP, GIF (a palette of 256 colours).
    Lossy,
    /// Every pixel kept: PNG, TIFF, BMP, lossless WebP; and HEIF, a camera's own original.
    Lossless,
    /// The sensor's data.
    Raw,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Lossy => "lossy",
            Class::Lossless => "lossless",
            Class::Raw => "raw",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Class> {
        [Class::Lossy, Class::Lossless, Class::Raw]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// A copy's class, with the JPEG quality (1–100) estimated from its luma quantisation table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quality {
    pub class: Class,
    pub jpeg: Option<u8>,
}

impl Quality {
    pub(crate) fn of(format: Format, bytes: &[u8]) -> Quality {
        let class = match format {
            Format::Jpeg | Format::Gif => Class::Lossy,
            Format::Webp if !webp_is_lossless(bytes) => Class::Lossy,
            Format::Webp | Format::Png | Format::Tiff | Format::Bmp | Format::Heif => {
                Class::Lossless
            }
            Format::Raw(_) => Class::Raw,
        };
        Quality {
            class,
            jpeg: (format == Format::Jpeg)
                .then(|| jpeg_quality(bytes))
                .flatten(),
        }
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.class.name())?;
        match self.jpeg {
            Some(q) => write!(f, " q{q}"),
            None => Ok(()),
        }
    }
}

/// What makes one copy better than another: pixels, then class, then compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grade {
    pub pixels: u64,
    pub quality: Quality,
}

/// Which rule said one copy does not cover another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// Fewer pixels.
    Pixels,
    /// A lower class (lossy for a lossless file, anything for a RAW file).
    Class,
    /// The same pixels and class, compressed harder (a lower JPEG quality).
    Compression,
}

impl Grade {
    /// `Ok` when this copy is at least as good as `other` in every way, else the first way it
    /// falls short. Not a total order: a large JPEG and a small PNG do not cover each other,
    /// and then both are kept.
    pub fn covers(&self, other: &Grade) -> Result<(), Shortfall> {
        if self.pixels < other.pixels {
            return Err(Shortfall::Pixels);
        }
        if self.quality.class < other.quality.class {
            return Err(Shortfall::Class);
        }
        let same_kind = self.pixels == other.pixels && self.quality.class == other.quality.class;
        if same_kind && self.quality.class == Class::Lossy {
            // Covered only when both qualities are known: an unknown one proves nothing.
            match (self.quality.jpeg, other.quality.jpeg) {
                (Some(mine), Some(theirs)) if mine >= theirs => {}
                _ => return Err(Shortfall::Compression),
            }
        }
        Ok(())
    }

    /// Strictly better: covers `other` and is not covered by it.
    pub fn beats(&self, other: &Grade) -> bool {
        self.covers(other).is_ok() && other.covers(self).is_err()
    }

    /// An order for picking the best of several copies (only where `covers` cannot decide).
    pub fn rank(&self, other: &Grade) -> Ordering {
        (self.quality.class, self.pixels, self.quality.jpeg).cmp(&(
            other.quality.class,
            other.pixels,
            other.quality.jpeg,
        ))
    }
}

/// A lossless WebP's image chunk is `VP8L`, a lossy one's `VP8 `: the first of them in the
/// RIFF chunk list (after `VP8X` and metadata chunks in an extended file) decides.
fn webp_is_lossless(bytes: &[u8]) -> bool {
    let mut at = 12;
    while let (Some(kind), Some(size)) = (bytes.get(at..at + 4), bytes.get(at + 4..at + 8)) {
        match kind {
            b"VP8L" => return true,
            b"VP8 " => return false,
            _ => {}
        }
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
        // Chunks are padded to an even size.
        at = at
            .saturating_add(8)
            .saturating_add(size)
            .saturating_add(size & 1);
    }
    false
}

/// The IJG luminance table (JPEG Annex K) at quality 50, in zigzag order.
const STANDARD_LUMA: [u16; 64] = [
    16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35, 37,
    29, 40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81,
    87, 95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
];

/// The quality a JPEG's luma table was scaled for, as libjpeg scales the standard table:
/// `scale = 5000 / q` below 50, `200 - 2q` above. Cameras' own tables come out near the
/// quality they resemble.
pub(crate) fn jpeg_quality(bytes: &[u8]) -> Option<u8> {
    let table = luma_table(bytes)?;
    let sum: u32 = table.iter().map(|&v| u32::from(v)).sum();
    let standard: u32 = STANDARD_LUMA.iter().map(|&v| u32::from(v)).sum();
    let scale = f64::from(sum) * 100.0 / f64::from(standard);
    let quality = if scale <= 100.0 {
        (200.0 - scale) / 2.0
    } else {
        5000.0 / scale
    };
    Some(quality.round().clamp(1.0, 100.0) as u8)
}

/// Quantisation table 0 from the DQT segments before the first scan.
fn luma_table(bytes: &[u8]) -> Option<[u16; 64]> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2;
    loop {
        while *bytes.get(at)? == 0xFF && *bytes.get(at + 1)? == 0xFF {
            at += 1;
        }
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        let body = bytes.get(at + 4..at + 2 + len)?;
        if marker == 0xDB {
            let mut p = 0;
            while p < body.len() {
                let (precision, id) = (body[p] >> 4, body[p] & 0x0F);
                let width = if precision == 0 { 1 } else { 2 };
                let values = body.get(p + 1..p + 1 + 64 * width)?;
                if id == 0 {
                    let mut table = [0u16; 64];
                    for (i, v) in table.iter_mut().enumerate() {
                        *v = if width == 1 {
                            u16::from(values[i])
                        } else {
                            u16::from_be_bytes([values[2 * i], values[2 * i + 1]])
                        };
                    }
                    return Some(table);
                }
                p += 1 + 64 * width;
            }
        }
        at += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(pixels: u64, q: u8) -> Grade {
        Grade {
            pixels,
            quality: Quality {
                class: Class::Lossy,
                jpeg: Some(q),
            },
        }
    }

    fn of_class(pixels: u64, class: Class) -> Grade {
        Grade {
            pixels,
            quality: Quality { class, jpeg: None },
        }
    }

    #[test]
    fn at_least_as_good_means_pixels_class_and_compression() {
        assert_eq!(lossy(100, 92).covers(&lossy(100, 75)), Ok(()));
        assert_eq!(
            lossy(100, 75).covers(&lossy(100, 92)),
            Err(Shortfall::Compression)
        );
        // More pixels win over compression.
        assert_eq!(lossy(400, 60).covers(&lossy(100, 95)), Ok(()));
        assert_eq!(
            lossy(100, 95).covers(&lossy(400, 60)),
            Err(Shortfall::Pixels)
        );
        // A JPEG never covers a PNG master or a RAW file; they cover it.
        let png = of_class(100, Class::Lossless);
        let raw = of_class(100, Class::Raw);
        assert_eq!(lossy(100, 100).covers(&png), Err(Shortfall::Class));
        assert_eq!(png.covers(&lossy(100, 100)), Ok(()));
        assert_eq!(png.covers(&raw), Err(Shortfall::Class));
        assert_eq!(raw.covers(&png), Ok(()));
        // A big JPEG and a small PNG: neither covers the other.
        assert!(lossy(400, 90).covers(&png).is_err());
        assert!(png.covers(&lossy(400, 90)).is_err());
        assert!(png.beats(&lossy(100, 90)) && !png.beats(&png));
        // A quality that cannot be read proves nothing either way.
        let unknown = Grade {
            pixels: 100,
            quality: Quality {
                class: Class::Lossy,
                jpeg: None,
            },
        };
        assert_eq!(lossy(100, 50).covers(&unknown), Err(Shortfall::Compression));
        assert_eq!(unknown.covers(&lossy(100, 50)), Err(Shortfall::Compression));
    }

    #[test]
    fn jpeg_quality_is_read_from_the_quantisation_table() {
        let img =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 3, y as u8 * 5, 90]));
        for q in [50u8, 75, 90, 92] {
            let out = photosync_testkit::jpeg(&img, q, false, None);
            let got = jpeg_quality(&out).unwrap_or(0);
            assert!(got.abs_diff(q) <= 1, "q{q} read as {got}");
        }
        assert_eq!(jpeg_quality(b"\xFF\xD8\xFF"), None);
        // WebP: the image chunk decides, not bytes that happen to spell it in metadata.
        let pixels = image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]));
        let lossless = photosync_testkit::encode_as(&pixels, image::ImageFormat::WebP);
        assert!(webp_is_lossless(&lossless));
        let mut lossy = b"RIFF\0\0\0\0WEBPXMP \x04\0\0\0VP8LVP8 \x00\0\0\0".to_vec();
        assert!(!webp_is_lossless(&lossy));
        lossy.truncate(20);
        assert!(!webp_is_lossless(&lossy));
        assert_eq!(jpeg_quality(b"not a jpeg"), None);
    }
}
