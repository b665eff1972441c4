//! HEIC/HEIF, the format phones write: decoded through the system libheif when built with the
//! `heif` feature. libheif applies the HEIF rotation and mirror boxes itself; EXIF orientation
//! is informational in HEIF and is not applied twice.

use crate::decode::{Decoded, Limits};
use crate::IdentifyError;

#[cfg(not(feature = "heif"))]
pub(crate) fn decode(_bytes: &[u8], _limits: &Limits) -> Result<Decoded, IdentifyError> {
    Err(IdentifyError::Unsupported(
        "HEIC/HEIF (this build has no libheif support)".into(),
    ))
}

#[cfg(feature = "heif")]
pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, IdentifyError> {
    use crate::decode::{check_pixels, Format};
    use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};

    let corrupt = |e: libheif_rs::HeifError| IdentifyError::Corrupt {
        format: "heif",
        reason: e.message,
    };
    let lib = LibHeif::new();
    let ctx = HeifContext::read_from_bytes(bytes).map_err(corrupt)?;
    let handle = ctx.primary_image_handle().map_err(corrupt)?;
    // A crop box makes the handle report the cropped size; decoding allocates the stored one.
    let stored_w = u32::try_from(handle.ispe_width()).unwrap_or(0);
    let stored_h = u32::try_from(handle.ispe_height()).unwrap_or(0);
    check_pixels(
        Format::Heif,
        handle.width().max(stored_w).into(),
        handle.height().max(stored_h).into(),
        limits,
    )?;
    // `None`: libheif-rs 0.20 frees passed options before use.
    let image = lib
        .decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), None)
        .map_err(corrupt)?;
    let planes = image.planes();
    let plane = planes.interleaved.ok_or_else(|| IdentifyError::Corrupt {
        format: "heif",
        reason: "decoder returned no RGB plane".into(),
    })?;
    if plane.bits_per_pixel != 8 {
        return Err(IdentifyError::Unsupported(format!(
            "HEIF with {}-bit samples",
            plane.bits_per_pixel
        )));
    }
    let row = plane.width as usize * 3;
    let mut rgb = Vec::with_capacity(row * plane.height as usize);
    for y in 0..plane.height as usize {
        let start = y * plane.stride;
        rgb.extend_from_slice(plane.data.get(start..start + row).ok_or_else(|| {
            IdentifyError::Corrupt {
                format: "heif",
                reason: "decoded plane shorter than its size".into(),
            }
        })?);
    }
    let pixels = image::RgbImage::from_raw(plane.width, plane.height, rgb).ok_or(
        IdentifyError::Corrupt {
            format: "heif",
            reason: "decoded plane has the wrong size".into(),
        },
    )?;
    let (width, height) = pixels.dimensions();
    Ok(Decoded::whole(pixels, width, height, Format::Heif))
}
