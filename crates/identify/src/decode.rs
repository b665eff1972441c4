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
    /// A camera RAW file, identified from its embedded preview.
    Raw(crate::raw::RawKind),
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
            Format::Raw(kind) => kind.name(),
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
    /// Where the picture lies in `pixels`: x0, y0, x1, y1. All of it, unless a JPEG decoded at
    /// k/8 scale left a partial pixel of padding on the edges its orientation put it on.
    pub content: [f64; 4],
    /// Capture metadata the decoder found itself (a RAW container's); `None`: read the EXIF.
    pub capture: Option<crate::capture::Capture>,
}

impl Decoded {
    /// A decode whose pixels are all picture.
    pub(crate) fn whole(pixels: RgbImage, width: u32, height: u32, format: Format) -> Decoded {
        let content = [
            0.0,
            0.0,
            f64::from(pixels.width()),
            f64::from(pixels.height()),
        ];
        Decoded {
            pixels,
            width,
            height,
            format,
            content,
            capture: None,
        }
    }
}

/// The picture's place in an upright decode of `stored` pixels (width, height, before the
/// orientation) whose picture covers `real` of them from the top left.
fn content_rect(stored: (f64, f64), real: (f64, f64), orientation: Orientation) -> [f64; 4] {
    let ((w, h), (a, b)) = (stored, real);
    let (px, py) = (w - a, h - b);
    match orientation {
        Orientation::NoTransforms => [0.0, 0.0, a, b],
        Orientation::FlipHorizontal => [px, 0.0, w, b],
        Orientation::FlipVertical => [0.0, py, a, h],
        Orientation::Rotate180 => [px, py, w, h],
        Orientation::Rotate90 => [py, 0.0, h, a],
        Orientation::Rotate270 => [0.0, px, b, w],
        Orientation::Rotate90FlipH => [0.0, 0.0, b, a],
        Orientation::Rotate270FlipH => [py, px, h, w],
    }
}

/// The smallest side we ask a scaling decoder for. The identifier works on 64×64; a bit more
/// lets the area-averaging resize smooth away JPEG blocking.
const MIN_DECODED_SIDE: u32 = 256;

pub(crate) fn sniff(bytes: &[u8]) -> Result<Format, IdentifyError> {
    if bytes.is_empty() {
        return Err(IdentifyError::Empty);
    }
    if let Some(brand) = iso_bmff_brand(bytes) {
        return match &brand {
            b"crx " => Ok(Format::Raw(crate::raw::RawKind::Cr3)),
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1"
            | b"heif" => Ok(Format::Heif),
            b"avif" | b"avis" => Err(IdentifyError::Unsupported("AVIF".into())),
            _ => Err(IdentifyError::NotAnImage),
        };
    }
    if let Some(kind) = raw_signature(bytes) {
        return Ok(Format::Raw(kind));
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

/// RAW containers whose first bytes tell them from a plain TIFF. DNG, NEF and ARW begin like
/// any TIFF; [`decode`] asks the RAW reader about every TIFF before decoding it as one.
fn raw_signature(bytes: &[u8]) -> Option<crate::raw::RawKind> {
    use crate::raw::RawKind;
    if bytes.starts_with(b"FUJIFILMCCD-RAW") {
        Some(RawKind::Raf)
    } else if bytes.starts_with(b"IIRO") || bytes.starts_with(b"IIRS") || bytes.starts_with(b"MMOR")
    {
        Some(RawKind::Orf)
    } else if bytes.starts_with(b"IIU\0") {
        Some(RawKind::Rw2)
    } else if bytes.starts_with(b"II*\0") && bytes.get(8..10) == Some(b"CR") {
        Some(RawKind::Cr2)
    } else {
        None
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
        Format::Raw(_) | Format::Tiff => match crate::raw::decode(bytes, limits) {
            Ok((mut decoded, capture)) => {
                decoded.capture = Some(capture);
                Ok(decoded)
            }
            Err(crate::raw::NotRaw::Failed(e)) => Err(e),
            Err(crate::raw::NotRaw::Unrecognised) if format == Format::Tiff => {
                decode_with_image(bytes, format, limits)
            }
            Err(crate::raw::NotRaw::Unrecognised) => Err(IdentifyError::Unsupported(format!(
                "{format} file the RAW reader does not recognise"
            ))),
        },
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
    let orientation = jpeg_orientation(bytes).unwrap_or(Orientation::NoTransforms);
    decode_jpeg_oriented(bytes, limits, orientation)
}

/// A JPEG at reduced size, turned upright by `orientation` (its own tag's, or the RAW file's
/// it is the preview of).
pub(crate) fn decode_jpeg_oriented(
    bytes: &[u8],
    limits: &Limits,
    orientation: Orientation,
) -> Result<Decoded, IdentifyError> {
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
    let dc_only = if eighths == 1 {
        dc_scans_only(bytes)
    } else {
        None
    };
    let mut image = turbojpeg::Image {
        pixels: vec![0u8; w * h * 3],
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    // Truncated and corrupt data come back as errors ("Premature end of JPEG file").
    decompressor
        .decompress(dc_only.as_deref().unwrap_or(bytes), image.as_deref_mut())
        .map_err(corrupt)?;
    let rgb = RgbImage::from_raw(w as u32, h as u32, image.pixels).ok_or_else(|| {
        IdentifyError::Corrupt {
            format: "jpeg",
            reason: "decoder returned fewer pixels than the header declares".into(),
        }
    })?;
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    let (width, height) = upright_size(full_w as u32, full_h as u32, orientation);
    let real = |side: usize| side as f64 * eighths as f64 / 8.0;
    Ok(Decoded {
        pixels: image.into_rgb8(),
        width,
        height,
        format: Format::Jpeg,
        content: content_rect(
            (w as f64, h as f64),
            (real(full_w), real(full_h)),
            orientation,
        ),
        capture: None,
    })
}

/// A progressive JPEG rebuilt from its DC scans alone, or `None` for any other JPEG.
///
/// At 1/8 scale each output pixel is one block's DC coefficient, and a progressive JPEG keeps
/// DC in scans of its own, so the AC scans (most of the file) need not be entropy-decoded at
/// all. (libjpeg-turbo then smooths the DC-only blocks slightly; the identifier averages that
/// away, see the tests.) Only a file whose markers are intact through EOI qualifies: anything odd falls back to
/// the full decode, which reports truncation and corruption.
fn dc_scans_only(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() / 4);
    out.extend_from_slice(bytes.get(..2)?);
    let mut at = 2;
    let mut progressive = false;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        match marker {
            0xFF => at += 1, // fill byte
            0xD9 => break,   // EOI
            0x01 | 0xD0..=0xD7 => at += 2,
            _ => {
                let len = usize::from(u16::from_be_bytes([
                    *bytes.get(at + 2)?,
                    *bytes.get(at + 3)?,
                ]));
                let header_end = at + 2 + len;
                let header = bytes.get(at..header_end)?;
                progressive |= marker == 0xC2;
                if marker != 0xDA {
                    out.extend_from_slice(header);
                    at = header_end;
                    continue;
                }
                // SOS: Ns, Ns × (id, tables), Ss, Se, Ah/Al; then entropy-coded data up to the
                // next marker that is neither a stuffed 0xFF00 nor a restart marker.
                let ns = usize::from(*header.get(4)?);
                let ss = *header.get(5 + 2 * ns)?;
                let mut p = header_end;
                loop {
                    p += memchr::memchr(0xFF, bytes.get(p..)?)?;
                    match *bytes.get(p + 1)? {
                        0x00 | 0xD0..=0xD7 => p += 2,
                        _ => break,
                    }
                }
                if ss == 0 {
                    out.extend_from_slice(&bytes[at..p]);
                }
                at = p;
            }
        }
    }
    if !progressive {
        return None;
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    Some(out)
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

pub(crate) fn upright_size(w: u32, h: u32, orientation: Orientation) -> (u32, u32) {
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
        Format::Heif | Format::Raw(_) => {
            return Err(IdentifyError::Unsupported(format!(
                "{format} is not decoded by the image crate"
            )))
        }
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
    Ok(Decoded::whole(image.into_rgb8(), width, height, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real photo at 1600×1200, as a progressive JPEG.
    fn progressive_jpeg() -> Vec<u8> {
        let photo =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/photos/wood.jpg");
        let img = image::open(photo).unwrap().into_rgb8();
        let img = image::imageops::resize(&img, 1600, 1200, image::imageops::FilterType::Triangle);
        let mut out = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
        enc.encode_image(&img).unwrap();
        // The image crate writes baseline; rebuild as progressive through libjpeg-turbo.
        let mut t = turbojpeg::Transformer::new().unwrap();
        let tr = turbojpeg::Transform {
            progressive: true,
            ..Default::default()
        };
        t.transform_to_owned(&tr, &out).unwrap().to_vec()
    }

    #[test]
    fn dc_scans_give_nearly_the_same_pixels_at_one_eighth() {
        let jpg = progressive_jpeg();
        let dc = dc_scans_only(&jpg).expect("progressive file qualifies");
        assert!(
            dc.len() < jpg.len() / 2,
            "AC scans dropped: {} of {}",
            dc.len(),
            jpg.len()
        );
        let decode = |b: &[u8]| {
            let mut d = turbojpeg::Decompressor::new().unwrap();
            let mut img = turbojpeg::Image {
                pixels: vec![0u8; 200 * 150 * 3],
                width: 200,
                pitch: 600,
                height: 150,
                format: turbojpeg::PixelFormat::RGB,
            };
            d.decompress(b, img.as_deref_mut()).unwrap();
            img.pixels
        };
        let (full, fast) = (decode(&jpg), decode(&dc));
        let worst = full
            .iter()
            .zip(&fast)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        let mean = full
            .iter()
            .zip(&fast)
            .map(|(a, b)| f64::from(a.abs_diff(*b)))
            .sum::<f64>()
            / full.len() as f64;
        // libjpeg-turbo smooths blocks whose AC coefficients never arrived, which nudges the
        // DC-only decode a little; the identifier works on a 64×64 average of it.
        assert!(
            mean < 1.0 && worst <= 24,
            "pixels differ by {mean} on average, {worst} at most"
        );
    }

    #[test]
    fn baseline_and_damaged_files_take_the_full_path() {
        let jpg = progressive_jpeg();
        assert!(
            dc_scans_only(&jpg[..jpg.len() - 100]).is_none(),
            "truncated"
        );
        let mut baseline = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut baseline)
            .encode_image(&RgbImage::new(64, 64))
            .unwrap();
        assert!(dc_scans_only(&baseline).is_none());
        assert!(dc_scans_only(b"\xFF\xD8\xFF").is_none());
    }
}
