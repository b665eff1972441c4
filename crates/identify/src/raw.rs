//! Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2), identified from their largest
//! embedded preview: demosaicing a sensor image is far too slow for a library scan, and the
//! preview is the camera's own rendering of the same frame.
//!
//! The container is read by `rawler` (metadata: the sensor's size, orientation, capture time,
//! serial number). The preview is the largest JPEG embedded anywhere in the file, decoded at
//! reduced size like any JPEG; where there is none, `rawler`'s own preview or thumbnail.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::metadata::Orientation;
use rawler::decoders::{FormatHint, RawDecodeParams};
use rawler::rawsource::RawSource;

use crate::capture::{self, Capture};
use crate::decode::{self, Decoded, Format, Limits};
use crate::IdentifyError;

/// Which RAW container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawKind {
    Dng,
    Cr2,
    Cr3,
    Nef,
    Arw,
    Raf,
    Orf,
    Rw2,
    /// Another RAW format `rawler` reads (PEF, SRW, IIQ...).
    Other,
}

impl RawKind {
    pub fn name(self) -> &'static str {
        match self {
            RawKind::Dng => "dng",
            RawKind::Cr2 => "cr2",
            RawKind::Cr3 => "cr3",
            RawKind::Nef => "nef",
            RawKind::Arw => "arw",
            RawKind::Raf => "raf",
            RawKind::Orf => "orf",
            RawKind::Rw2 => "rw2",
            RawKind::Other => "raw",
        }
    }

    fn of(hint: FormatHint) -> RawKind {
        match hint {
            FormatHint::DNG => RawKind::Dng,
            FormatHint::CR2 => RawKind::Cr2,
            FormatHint::CR3 => RawKind::Cr3,
            FormatHint::NEF | FormatHint::NRW => RawKind::Nef,
            FormatHint::ARW => RawKind::Arw,
            FormatHint::RAF => RawKind::Raf,
            FormatHint::ORF => RawKind::Orf,
            FormatHint::RW2 => RawKind::Rw2,
            _ => RawKind::Other,
        }
    }
}

impl fmt::Display for RawKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the container says, before any pixel is decoded.
struct Container {
    kind: RawKind,
    /// The sensor's size, as stored (before the orientation).
    sensor: Option<(u32, u32)>,
    orientation: Orientation,
    capture: Capture,
}

/// Why a file is not read as RAW.
pub(crate) enum NotRaw {
    /// No RAW decoder recognises it (a plain TIFF, say): read it as what it claims to be.
    Unrecognised,
    Failed(IdentifyError),
}

/// Decodes the preview of a RAW file, upright, with the sensor's size and the capture metadata.
pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<(Decoded, Capture), NotRaw> {
    let container = read_container(bytes).ok_or(NotRaw::Unrecognised)?;
    let format = Format::Raw(container.kind);
    // The largest embedded JPEG; if it does not decode, the container's own preview.
    let mut decoded = largest_jpeg(bytes)
        .and_then(|preview| {
            decode::decode_jpeg_oriented(preview, limits, container.orientation)
                .map_err(|e| tracing::debug!(error = %e, "embedded preview not decoded"))
                .ok()
        })
        .map_or_else(|| rawler_preview(bytes, container.orientation, limits), Ok)
        .map_err(|e| {
            NotRaw::Failed(match e {
                IdentifyError::Unsupported(_) | IdentifyError::Corrupt { .. } => {
                    IdentifyError::Unsupported(format!(
                        "{} file whose embedded preview cannot be read ({e})",
                        container.kind
                    ))
                }
                other => other,
            })
        })?;
    decoded.format = format;
    if let Some((w, h)) = container.sensor {
        let (w, h) = decode::upright_size(w, h, container.orientation);
        decoded.width = w;
        decoded.height = h;
    }
    Ok((decoded, container.capture))
}

/// `rawler` on untrusted bytes, with a panic inside it taken as "cannot read".
fn guarded<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok().flatten()
}

fn read_container(bytes: &[u8]) -> Option<Container> {
    guarded(|| {
        let source = RawSource::new_from_slice(bytes);
        let decoder = rawler::get_decoder(&source).ok()?;
        let params = RawDecodeParams::default();
        let kind = RawKind::of(decoder.format_hint());
        let sensor = decoder
            .raw_image(&source, &params, true)
            .ok()
            .and_then(|raw| {
                Some((
                    u32::try_from(raw.width).ok()?,
                    u32::try_from(raw.height).ok()?,
                ))
            });
        let metadata = decoder.raw_metadata(&source, &params).ok();
        let exif = metadata.as_ref().map(|m| &m.exif);
        let orientation = exif
            .and_then(|e| e.orientation)
            .and_then(|o| Orientation::from_exif(o.min(255) as u8))
            .unwrap_or(Orientation::NoTransforms);
        let text = |s: Option<&String>| {
            s.map(|s| capture::clean(s.as_bytes()))
                .filter(|s| !s.is_empty())
        };
        let mut capture = Capture {
            time: exif.and_then(|e| {
                capture::moment(
                    e.date_time_original.as_deref()?,
                    e.sub_sec_time_original.as_deref(),
                )
            }),
            unique_id: metadata
                .as_ref()
                .and_then(|m| m.unique_image_id)
                .map(|id| format!("{id:032x}")),
            serial: text(exif.and_then(|e| e.serial_number.as_ref())),
            shutter_count: exif.and_then(|e| e.image_number),
        };
        if capture.is_empty() {
            // A container rawler reads without its EXIF: TIFF-based RAWs carry plain EXIF.
            capture = Capture::from_exif(bytes);
        }
        Some(Container {
            kind,
            sensor,
            orientation,
            capture,
        })
    })
}

/// Start-of-image markers looked at, at most: a camera embeds a few JPEGs, and a crafted file
/// with thousands costs no more than this.
const MAX_EMBEDDED: usize = 64;

/// The embedded JPEG with the most pixels (lossless-JPEG sensor tiles are not pictures and
/// fail the header read). Each candidate runs to the end of the file; the decoder stops at
/// its own end-of-image marker.
fn largest_jpeg(bytes: &[u8]) -> Option<&[u8]> {
    let mut decompressor = turbojpeg::Decompressor::new().ok()?;
    let mut best: Option<(usize, &[u8])> = None;
    for at in memchr::memmem::find_iter(bytes, b"\xFF\xD8\xFF").take(MAX_EMBEDDED) {
        let candidate = &bytes[at..];
        if let Ok(header) = decompressor.read_header(candidate) {
            let pixels = header.width.saturating_mul(header.height);
            if best.is_none_or(|(most, _)| pixels > most) {
                best = Some((pixels, candidate));
            }
        }
    }
    best.map(|(_, jpeg)| jpeg)
}

/// `rawler`'s own preview, or its thumbnail, for a file without an embedded JPEG.
fn rawler_preview(
    bytes: &[u8],
    orientation: Orientation,
    limits: &Limits,
) -> Result<Decoded, IdentifyError> {
    let image = guarded(|| {
        let source = RawSource::new_from_slice(bytes);
        let decoder = rawler::get_decoder(&source).ok()?;
        let params = RawDecodeParams::default();
        let preview = decoder.preview_image(&source, &params).ok().flatten();
        preview.or_else(|| decoder.thumbnail_image(&source, &params).ok().flatten())
    })
    .ok_or_else(|| IdentifyError::Unsupported("RAW file without an embedded preview".into()))?;
    decode::check_pixels(
        Format::Raw(RawKind::Other),
        u64::from(image.width()),
        u64::from(image.height()),
        limits,
    )?;
    let mut image = image;
    image.apply_orientation(orientation);
    let pixels = image.into_rgb8();
    let (w, h) = pixels.dimensions();
    Ok(Decoded::whole(pixels, w, h, Format::Raw(RawKind::Other)))
}
