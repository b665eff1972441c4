//! Format sniffing and reduced-size decoding.
//!
//! Formats are recognised by their bytes, never by the file name. JPEG — the format of nearly
//! every camera photo — is decoded at reduced scale inside the decoder (DCT-domain scaling): a
//! 12-megapixel photo comes out at about 500×375, so the full-size pixels are never allocated.
//! Other formats go through the `image` crate with allocation limits checked against the header
//! before any pixel buffer exists.

use std::fmt;
use std::io::{self, Cursor, Read};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage};

use crate::IdentifyError;

/// Image formats this crate identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Gif,
    Tiff,
    Bmp,
    Heif,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Gif => "gif",
            Format::Tiff => "tiff",
            Format::Bmp => "bmp",
            Format::Heif => "heif",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Resource limits applied to every file before its pixels are allocated.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Files larger than this are refused before they are read.
    pub max_file_bytes: u64,
    /// Width × height as declared in the header.
    pub max_pixels: u64,
    /// Largest single buffer a decoder may allocate.
    pub max_alloc: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 512 << 20,
            // Covers 100-megapixel medium-format cameras.
            max_pixels: 120_000_000,
            max_alloc: 512 << 20,
        }
    }
}

/// A decoded picture, upright (EXIF orientation applied), at reduced size where the format
/// allows it.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub pixels: RgbImage,
    /// Full upright size of the picture, not of `pixels`.
    pub width: u32,
    pub height: u32,
    pub format: Format,
}

/// The smallest side we ask a scaling decoder for. The identifier works on 64×64; a bit more
/// lets the area-averaging resize smooth away JPEG blocking.
const MIN_DECODED_SIDE: u32 = 128;

pub(crate) fn sniff(bytes: &[u8]) -> Result<Format, IdentifyError> {
    if bytes.is_empty() {
        return Err(IdentifyError::Empty);
    }
    if let Some(brand) = iso_bmff_brand(bytes) {
        return match &brand {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1"
            | b"heif" => Ok(Format::Heif),
            b"avif" | b"avis" => Err(IdentifyError::Unsupported("AVIF".into())),
            _ => Err(IdentifyError::NotAnImage),
        };
    }
    match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => Ok(Format::Jpeg),
        Ok(ImageFormat::Png) => Ok(Format::Png),
        Ok(ImageFormat::WebP) => Ok(Format::Webp),
        Ok(ImageFormat::Gif) => Ok(Format::Gif),
        Ok(ImageFormat::Tiff) => Ok(Format::Tiff),
        Ok(ImageFormat::Bmp) => Ok(Format::Bmp),
        Ok(other) => Err(IdentifyError::Unsupported(format!("{other:?}"))),
        Err(_) => Err(IdentifyError::NotAnImage),
    }
}

/// The major brand of an ISO base media file (HEIF, AVIF, MP4...), if `bytes` starts like one.
fn iso_bmff_brand(bytes: &[u8]) -> Option<[u8; 4]> {
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        bytes[8..12].try_into().ok()
    } else {
        None
    }
}

pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, IdentifyError> {
    let format = sniff(bytes)?;
    match format {
        Format::Jpeg => decode_jpeg(bytes, limits),
        Format::Heif => crate::heif::decode(bytes, limits),
        other => decode_with_image(bytes, other, limits),
    }
}

pub(crate) fn check_pixels(width: u64, height: u64, limits: &Limits) -> Result<(), IdentifyError> {
    if width == 0 || height == 0 {
        return Err(IdentifyError::Corrupt {
            format: "image",
            reason: format!("header declares a {width}x{height} image"),
        });
    }
    if width.saturating_mul(height) > limits.max_pixels {
        return Err(IdentifyError::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
}

/// Records whether the decoder tried to read past the end of the file: a JPEG decoder pads a
/// truncated scan with zeros and reports success, so this is how truncation is noticed.
struct EofTracker<'a> {
    inner: &'a [u8],
    hit_eof: bool,
}

impl Read for EofTracker<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        Ok(n)
    }
}

fn decode_jpeg(bytes: &[u8], limits: &Limits) -> Result<Decoded, IdentifyError> {
    let corrupt = |e: jpeg_decoder::Error| IdentifyError::Corrupt {
        format: "jpeg",
        reason: e.to_string(),
    };
    let mut source = EofTracker {
        inner: bytes,
        hit_eof: false,
    };
    let mut decoder = jpeg_decoder::Decoder::new(&mut source);
    decoder.set_max_decoding_buffer_size(usize::try_from(limits.max_alloc).unwrap_or(usize::MAX));
    decoder.read_info().map_err(corrupt)?;
    let info = decoder.info().ok_or_else(|| IdentifyError::Corrupt {
        format: "jpeg",
        reason: "no frame header".into(),
    })?;
    let (full_w, full_h) = (u32::from(info.width), u32::from(info.height));
    check_pixels(full_w.into(), full_h.into(), limits)?;

    // Ask for the smallest DCT scale (1/8, 1/4, 1/2 or 1) whose short side stays at or above
    // MIN_DECODED_SIDE.
    let short = full_w.min(full_h);
    let (req_w, req_h) = if short > MIN_DECODED_SIDE {
        (
            (u64::from(full_w) * u64::from(MIN_DECODED_SIDE)).div_ceil(u64::from(short)),
            (u64::from(full_h) * u64::from(MIN_DECODED_SIDE)).div_ceil(u64::from(short)),
        )
    } else {
        (full_w.into(), full_h.into())
    };
    let (w, h) = decoder
        .scale(
            u16::try_from(req_w).unwrap_or(u16::MAX),
            u16::try_from(req_h).unwrap_or(u16::MAX),
        )
        .map_err(corrupt)?;
    let raw = decoder.decode().map_err(corrupt)?;
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let pixel_format = decoder
        .info()
        .map(|i| i.pixel_format)
        .unwrap_or(info.pixel_format);
    drop(decoder);
    if source.hit_eof {
        return Err(IdentifyError::Corrupt {
            format: "jpeg",
            reason: "truncated: the file ends inside the image data".into(),
        });
    }

    let (w, h) = (u32::from(w), u32::from(h));
    let rgb = jpeg_to_rgb(raw, pixel_format, w, h).ok_or_else(|| IdentifyError::Corrupt {
        format: "jpeg",
        reason: "decoder returned fewer pixels than the header declares".into(),
    })?;
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    let (width, height) = upright_size(full_w, full_h, orientation);
    Ok(Decoded {
        pixels: image.into_rgb8(),
        width,
        height,
        format: Format::Jpeg,
    })
}

fn jpeg_to_rgb(
    raw: Vec<u8>,
    format: jpeg_decoder::PixelFormat,
    w: u32,
    h: u32,
) -> Option<RgbImage> {
    use jpeg_decoder::PixelFormat;
    let n = w as usize * h as usize;
    let rgb: Vec<u8> = match format {
        PixelFormat::RGB24 => raw,
        PixelFormat::L8 => raw.iter().take(n).flat_map(|&l| [l, l, l]).collect(),
        // Big-endian 16-bit luminance: keep the high byte.
        PixelFormat::L16 => raw
            .chunks_exact(2)
            .take(n)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        // jpeg-decoder hands back Adobe-style inverted CMYK.
        PixelFormat::CMYK32 => raw
            .chunks_exact(4)
            .take(n)
            .flat_map(|p| {
                let k = u16::from(p[3]);
                [0, 1, 2].map(|i| ((u16::from(p[i]) * k) / 255) as u8)
            })
            .collect(),
    };
    RgbImage::from_raw(w, h, rgb)
}

fn upright_size(w: u32, h: u32, orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    }
}

fn decode_with_image(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Decoded, IdentifyError> {
    let image_format = match format {
        Format::Png => ImageFormat::Png,
        Format::Webp => ImageFormat::WebP,
        Format::Gif => ImageFormat::Gif,
        Format::Tiff => ImageFormat::Tiff,
        Format::Bmp => ImageFormat::Bmp,
        Format::Jpeg | Format::Heif => unreachable!("decoded elsewhere"),
    };
    let map_err = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => IdentifyError::Corrupt {
            format: format.name(),
            reason: format!("refused by decoding limits: {l}"),
        },
        image::ImageError::Unsupported(u) => {
            IdentifyError::Unsupported(format!("{} variant: {u}", format.name()))
        }
        other => IdentifyError::Corrupt {
            format: format.name(),
            reason: other.to_string(),
        },
    };

    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_alloc);
    // The pixel count is checked below; these stop absurd single dimensions early.
    image_limits.max_image_width = Some(1 << 20);
    image_limits.max_image_height = Some(1 << 20);
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(map_err)?;
    let (full_w, full_h) = decoder.dimensions();
    check_pixels(full_w.into(), full_h.into(), limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(map_err)?;
    image.apply_orientation(orientation);
    let (width, height) = upright_size(full_w, full_h, orientation);
    Ok(Decoded {
        pixels: image.into_rgb8(),
        width,
        height,
        format,
    })
}
