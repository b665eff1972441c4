//! The verification step: a finer look at two pictures the identifier calls alike.
//!
//! The identifier summarises a whole picture in low frequencies, so a subject that moves a few
//! pixels over a still background (the next shot of a burst) barely changes it. [`Detail`]
//! keeps the mean luma of each cell of a `GRID`×`GRID` grid over the upright picture. Two
//! copies of one picture (re-encoded, resized, converted, re-tagged) agree in every cell up to
//! rounding; a moved, added or removed subject changes the cells it crosses. [`Detail::compare`]
//! takes the difference cell by cell, less the median difference (a small global shift of tone,
//! as a colour-profile conversion makes), and the largest that remains decides.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use image::RgbImage;

/// Cells per side.
pub const GRID: usize = 64;
const CELLS: usize = GRID * GRID;

/// Mean luma of each cell of the upright picture, row by row.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Detail(Box<[u8; CELLS]>);

/// How far apart two [`Detail`]s are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct DetailDistance {
    /// The largest difference of one cell, in luma levels, once the median shift is removed.
    pub worst: u32,
}

/// The largest cell difference two copies of one picture may have.
///
/// Measured by `crates/identify/tests/thresholds.rs` on the 34 real photos and 5 pairs of real
/// consecutive video frames (64×64 grid):
///
/// | | worst cell |
/// |---|---|
/// | largest, 306 same-picture copies (q75, half size, tag, strip, PNG, 3 rotations, progressive) | 8 |
/// | smallest, a region moved by 0.5 % of the width | 10 |
/// | smallest, a region moved by 1 % / 2 % | 18 / 17 |
/// | smallest, a small object added / removed | 32 / 14 |
/// | smallest, consecutive video frames | 25 |
///
/// The bound sits between the copies and the nearest different shot, leaning towards
/// "different". A GIF (256 colours) of a photo exceeds it and is kept as a picture of its own.
pub const SAME_DETAIL: u32 = 9;

impl DetailDistance {
    pub fn is_same_picture(&self) -> bool {
        self.worst <= SAME_DETAIL
    }
}

impl Detail {
    /// The grid over the part `content` (x0, y0, x1, y1) of `pixels` that holds the picture.
    pub(crate) fn of(pixels: &RgbImage, content: [f64; 4]) -> Detail {
        let [x0, y0, x1, y1] = content;
        let columns = spans(x0, x1, pixels.width());
        let rows = spans(y0, y1, pixels.height());
        let mut cells = Box::new([0u8; CELLS]);
        let mut out = cells.iter_mut();
        for row in &rows {
            for column in &columns {
                let (mut sum, mut weight) = (0f32, 0f32);
                for &(y, wy) in row {
                    for &(x, wx) in column {
                        let [r, g, b] = pixels.get_pixel(x, y).0.map(f32::from);
                        sum += (0.299 * r + 0.587 * g + 0.114 * b) * wx * wy;
                        weight += wx * wy;
                    }
                }
                if let Some(cell) = out.next() {
                    *cell = (sum / weight.max(f32::MIN_POSITIVE)).round() as u8;
                }
            }
        }
        Detail(cells)
    }

    /// Mean luma of each cell, row by row.
    pub fn cells(&self) -> &[u8] {
        &self.0[..]
    }

    pub fn compare(&self, other: &Detail) -> DetailDistance {
        let mut diffs = [0i16; CELLS];
        // Differences run from -255 to 255: a histogram finds the median in one pass.
        let mut histogram = [0u16; 511];
        for ((d, &a), &b) in diffs.iter_mut().zip(self.0.iter()).zip(other.0.iter()) {
            *d = i16::from(a) - i16::from(b);
            histogram[(*d + 255) as usize] += 1;
        }
        // Twice the median (the mean of the two middle values), so that compare(a, b) and
        // compare(b, a) agree.
        let median2 =
            i32::from(nth(&histogram, CELLS / 2 - 1)) + i32::from(nth(&histogram, CELLS / 2));
        let worst2 = diffs
            .iter()
            .map(|&d| (2 * i32::from(d) - median2).unsigned_abs())
            .max()
            .unwrap_or(0);
        DetailDistance {
            // Rounded up: half a level counts against "same".
            worst: worst2.div_ceil(2),
        }
    }
}

/// The `n`th smallest difference (from 0) counted in `histogram`.
fn nth(histogram: &[u16; 511], n: usize) -> i16 {
    let mut seen = 0usize;
    for (i, &count) in histogram.iter().enumerate() {
        seen += usize::from(count);
        if seen > n {
            return i as i16 - 255;
        }
    }
    255
}

/// For each of `GRID` cells from `start` to `end` (in pixels, of `len`): the pixels it covers,
/// with the part of each.
fn spans(start: f64, end: f64, len: u32) -> Vec<Vec<(u32, f32)>> {
    let step = (end - start) / GRID as f64;
    (0..GRID)
        .map(|c| {
            let (from, to) = (start + c as f64 * step, start + (c + 1) as f64 * step);
            let mut span = Vec::new();
            let mut i = from.floor();
            while i < to && i < f64::from(len) {
                let part = (i + 1.0).min(to) - i.max(from);
                if part > 0.0 && i >= 0.0 {
                    span.push((i as u32, part as f32));
                }
                i += 1.0;
            }
            span
        })
        .collect()
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Detail({self})")
    }
}

/// Base64 (URL-safe, unpadded) of the cells: 5,462 characters.
impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(&self.0[..]))
    }
}

/// Text that is not a detail's base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a detail is the base64 of {CELLS} cells")]
pub struct ParseDetailError;

impl FromStr for Detail {
    type Err = ParseDetailError;

    fn from_str(s: &str) -> Result<Detail, ParseDetailError> {
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| ParseDetailError)?;
        let cells: Box<[u8; CELLS]> = bytes
            .into_boxed_slice()
            .try_into()
            .map_err(|_| ParseDetailError)?;
        Ok(Detail(cells))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(f: impl Fn(usize) -> u8) -> Detail {
        let mut cells = Box::new([0u8; CELLS]);
        for (i, c) in cells.iter_mut().enumerate() {
            *c = f(i);
        }
        Detail(cells)
    }

    #[test]
    fn the_distance_is_the_same_both_ways_and_ignores_a_global_shift() {
        let a = grid(|i| (i * 37 % 200) as u8);
        // Half the cells one level up, the rest not: the median falls between.
        let b = grid(|i| (i * 37 % 200) as u8 + u8::from(i % 2 == 0));
        assert_eq!(a.compare(&b), b.compare(&a));
        // A whole picture a little brighter is no difference; one cell far off is.
        let brighter = grid(|i| (i * 37 % 200) as u8 + 6);
        assert_eq!(a.compare(&brighter).worst, 0);
        let moved = grid(|i| if i == 100 { 250 } else { (i * 37 % 200) as u8 });
        assert!(!a.compare(&moved).is_same_picture());
        assert_eq!(a.compare(&moved), moved.compare(&a));
        assert_eq!(a.to_string().parse::<Detail>(), Ok(a.clone()));
        assert_eq!("".parse::<Detail>(), Err(ParseDetailError));
        assert_eq!("!!".parse::<Detail>(), Err(ParseDetailError));
    }
}
