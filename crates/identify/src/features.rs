//! From upright pixels to an [`Identifier`].
//!
//! Everything is computed on a 64×64 area-averaged copy of the picture:
//! - **luminance structure** (256 bits): the 16×16 lowest non-DC coefficients of a 64-point
//!   2-D DCT of the luma plane, each compared with their median (the PDQ construction);
//! - **texture** (64 bits): gradient energy of each 8×8 block, compared with the median block;
//! - **colour and exposure** (256 bits): a 4×4 grid of mean luma and chroma, thermometer-coded
//!   so that the Hamming distance grows with the size of a colour or exposure change;
//! - **aspect ratio** of the full picture.

use std::sync::OnceLock;

use image::imageops::{self, FilterType};
use image::RgbImage;

use crate::identifier::Identifier;

const SIDE: usize = 64;
const DCT_SIZE: usize = 16;

pub(crate) fn identifier(pixels: &RgbImage, width: u32, height: u32) -> Identifier {
    // A triangle filter widened to the scale factor averages every source pixel, so the
    // reduced JPEG decode and a full decode of the same picture land on nearly the same 64×64.
    let small = imageops::resize(pixels, SIDE as u32, SIDE as u32, FilterType::Triangle);
    let mut y = vec![0f32; SIDE * SIDE];
    let mut cb = vec![0f32; SIDE * SIDE];
    let mut cr = vec![0f32; SIDE * SIDE];
    for (i, p) in small.pixels().enumerate() {
        let [r, g, b] = p.0.map(f32::from);
        y[i] = 0.299 * r + 0.587 * g + 0.114 * b;
        cb[i] = -0.168_736 * r - 0.331_264 * g + 0.5 * b;
        cr[i] = 0.5 * r - 0.418_688 * g - 0.081_312 * b;
    }
    Identifier {
        luma: luma_bits(&y),
        texture: texture_bits(&y),
        colour: colour_bits(&y, &cb, &cr),
        aspect: Identifier::aspect_of(width, height),
    }
}

fn dct_matrix() -> &'static [[f32; SIDE]; DCT_SIZE] {
    static M: OnceLock<[[f32; SIDE]; DCT_SIZE]> = OnceLock::new();
    M.get_or_init(|| {
        let mut m = [[0f32; SIDE]; DCT_SIZE];
        for (k, row) in m.iter_mut().enumerate() {
            for (n, v) in row.iter_mut().enumerate() {
                // k + 1: the DC row carries brightness only, which the colour part covers.
                *v = (std::f64::consts::PI / (2.0 * SIDE as f64)
                    * (k as f64 + 1.0)
                    * (2.0 * n as f64 + 1.0))
                    .cos() as f32;
            }
        }
        m
    })
}

/// Bits set where a value is above the median of all values.
fn above_median<const N: usize>(values: &[f32; N]) -> [bool; N] {
    let mut sorted = *values;
    sorted.sort_unstable_by(f32::total_cmp);
    let median = (sorted[N / 2 - 1] + sorted[N / 2]) / 2.0;
    values.map(|v| v > median)
}

fn pack<const W: usize>(bits: &[bool]) -> [u64; W] {
    let mut out = [0u64; W];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

fn luma_bits(y: &[f32]) -> [u64; 4] {
    let d = dct_matrix();
    // rows = D · Y  (16×64), then coeffs = rows · Dᵀ (16×16)
    let mut rows = [[0f32; SIDE]; DCT_SIZE];
    for (k, out) in rows.iter_mut().enumerate() {
        for (n, &dkn) in d[k].iter().enumerate() {
            let line = &y[n * SIDE..(n + 1) * SIDE];
            for (o, &v) in out.iter_mut().zip(line) {
                *o += dkn * v;
            }
        }
    }
    let mut coeffs = [0f32; DCT_SIZE * DCT_SIZE];
    for (k, row) in rows.iter().enumerate() {
        for (l, dl) in d.iter().enumerate() {
            coeffs[k * DCT_SIZE + l] = row.iter().zip(dl).map(|(a, b)| a * b).sum();
        }
    }
    pack(&above_median(&coeffs))
}

fn texture_bits(y: &[f32]) -> u64 {
    const BLOCK: usize = 8;
    let mut energy = [0f32; 64];
    for row in 0..SIDE {
        for col in 0..SIDE {
            let v = y[row * SIDE + col];
            let mut e = 0.0;
            if col + 1 < SIDE {
                e += (y[row * SIDE + col + 1] - v).abs();
            }
            if row + 1 < SIDE {
                e += (y[(row + 1) * SIDE + col] - v).abs();
            }
            energy[(row / BLOCK) * (SIDE / BLOCK) + col / BLOCK] += e;
        }
    }
    pack::<1>(&above_median(&energy))[0]
}

/// Luma levels for the exposure thermometer: a geometric series one photographic stop apart
/// (×2^(1/2.2) in gamma-encoded values), so a one-stop exposure change moves every unclipped
/// cell across one level, however dark or bright the picture.
const LUMA_LEVELS: [f32; 12] = [
    6.0, 8.2, 11.3, 15.4, 21.1, 28.9, 39.6, 54.3, 74.4, 101.9, 139.6, 191.3,
];
/// Mean chroma beyond which a cell counts as coloured.
const CHROMA_LEVEL: f32 = 8.0;

fn colour_bits(y: &[f32], cb: &[f32], cr: &[f32]) -> [u64; 4] {
    const GRID: usize = 4;
    const CELL: usize = SIDE / GRID;
    let mut bits = Vec::with_capacity(256);
    for gy in 0..GRID {
        for gx in 0..GRID {
            let (mut sy, mut sb, mut sr) = (0f32, 0f32, 0f32);
            for row in gy * CELL..(gy + 1) * CELL {
                for col in gx * CELL..(gx + 1) * CELL {
                    let i = row * SIDE + col;
                    sy += y[i];
                    sb += cb[i];
                    sr += cr[i];
                }
            }
            let n = (CELL * CELL) as f32;
            let (my, mb, mr) = (sy / n, sb / n, sr / n);
            bits.extend(LUMA_LEVELS.iter().map(|&l| my > l));
            bits.extend([
                mb > CHROMA_LEVEL,
                mb < -CHROMA_LEVEL,
                mr > CHROMA_LEVEL,
                mr < -CHROMA_LEVEL,
            ]);
        }
    }
    pack(&bits)
}
