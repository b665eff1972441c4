//! Format sniffing and reduced-size decoding.
//!
//! Formats are recognised by their bytes, never by the file name. JPEG — the format of nearly
//! every camera photo — is decoded by libjpeg-turbo at reduced scale inside the decoder
//! (DCT-domain scaling): a 12-megapixel photo comes out at 500×375, so the full-size pixels are
//! never allocated.
//! Other formats go through the `image` crate with allocation limits checked against the header
//! before any pixel buffer exists.

use std::fmt;
use std::io::Cursor;

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

pub(crate) fn check_pixels(
    format: Format,
    width: u64,
    height: u64,
    limits: &Limits,
) -> Result<(), IdentifyError> {
    if width == 0 || height == 0 {
        return Err(IdentifyError::Corrupt {
            format: format.name(),
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

fn decode_jpeg(bytes: &[u8], limits: &Limits) -> Result<Decoded, IdentifyError> {
    let corrupt = |e: turbojpeg::Error| IdentifyError::Corrupt {
        format: "jpeg",
        reason: e.to_string(),
    };
    let mut decompressor = turbojpeg::Decompressor::new().map_err(corrupt)?;
    let header = match decompressor.read_header(bytes) {
        Ok(h) => h,
        // Chroma layouts TurboJPEG's API has no name for: let the image crate try.
        Err(turbojpeg::Error::BadSubsamp(_)) => {
            return decode_with_image(bytes, Format::Jpeg, limits)
        }
        Err(e) => return Err(corrupt(e)),
    };
    let (full_w, full_h) = (header.width, header.height);
    check_pixels(Format::Jpeg, full_w as u64, full_h as u64, limits)?;
    if matches!(
        header.colorspace,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
    ) {
        // TurboJPEG cannot convert CMYK to RGB; these are rare (print workflows).
        return decode_with_image(bytes, Format::Jpeg, limits);
    }

    // The smallest DCT scale (1/8, 1/4, 1/2 or 1) whose short side stays at or above
    // MIN_DECODED_SIDE: a 12 MP photo decodes to 500×375, and only DC coefficients are used.
    let short = full_w.min(full_h);
    let eighths = [1, 2, 4, 8]
        .into_iter()
        .find(|k| short * k / 8 >= MIN_DECODED_SIDE as usize)
        .unwrap_or(8);
    let (w, h) = (
        (full_w * eighths).div_ceil(8),
        (full_h * eighths).div_ceil(8),
    );
    let mut image = turbojpeg::Image {
        pixels: vec![0u8; w * h * 3],
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    // Truncated and corrupt data come back as errors ("Premature end of JPEG file").
    decompressor
        .decompress(bytes, image.as_deref_mut())
        .map_err(corrupt)?;
    let rgb = RgbImage::from_raw(w as u32, h as u32, image.pixels).ok_or_else(|| {
        IdentifyError::Corrupt {
            format: "jpeg",
            reason: "decoder returned fewer pixels than the header declares".into(),
        }
    })?;
    let orientation = jpeg_orientation(bytes).unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    let (width, height) = upright_size(full_w as u32, full_h as u32, orientation);
    Ok(Decoded {
        pixels: image.into_rgb8(),
        width,
        height,
        format: Format::Jpeg,
    })
}

/// The EXIF orientation tag of a JPEG, read from its APP1 segment before the scan starts.
fn jpeg_orientation(bytes: &[u8]) -> Option<Orientation> {
    let mut at = 2;
    while at + 4 <= bytes.len() && bytes[at] == 0xFF {
        let marker = bytes[at + 1];
        if marker == 0xDA || marker == 0xD9 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        let segment = bytes.get(at + 4..at + 2 + len)?;
        if marker == 0xE1 {
            if let Some(tiff) = segment.strip_prefix(b"Exif\0\0") {
                return Orientation::from_exif_chunk(tiff);
            }
        }
        at += 2 + len;
    }
    None
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
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Heif => unreachable!("decoded by libheif"),
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
    check_pixels(format, full_w.into(), full_h.into(), limits)?;
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
