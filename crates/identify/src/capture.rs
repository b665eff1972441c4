//! Capture metadata as evidence: when the shutter fired, and which camera fired it.
//!
//! Two files whose capture moments are both known and differ are two photos, however alike
//! their pixels. Missing metadata (a stripped copy) proves nothing, and the pixels decide.

use std::io::Cursor;

/// What the file says about the moment it was taken. Every field is optional: a stripped copy
/// has none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Capture {
    /// `DateTimeOriginal` as `YYYY-MM-DDTHH:MM:SS`, with `SubSecTimeOriginal` as a fraction
    /// (`.123`) when the file has it.
    pub time: Option<String>,
    /// `ImageUniqueID` (or a RAW's unique id).
    pub unique_id: Option<String>,
    /// The camera body's serial number.
    pub serial: Option<String>,
    /// The camera's shutter count (`ImageNumber`) for this frame.
    pub shutter_count: Option<u32>,
}

/// Which piece of capture metadata told two files apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureClash {
    /// Both have a capture time, and they differ.
    Time,
    /// Both have a unique image id, and they differ.
    UniqueId,
    /// Both name a camera and a shutter count, and the body or the count differs.
    Camera,
}

impl CaptureClash {
    pub fn describe(self) -> &'static str {
        match self {
            CaptureClash::Time => "taken at a different moment (capture time)",
            CaptureClash::UniqueId => "a different camera image id",
            CaptureClash::Camera => "a different camera frame (serial number and shutter count)",
        }
    }
}

impl Capture {
    pub fn is_empty(&self) -> bool {
        *self == Capture::default()
    }

    /// The metadata that proves `self` and `other` are different photos, if any.
    pub fn clash(&self, other: &Capture) -> Option<CaptureClash> {
        if let (Some(a), Some(b)) = (&self.time, &other.time) {
            if !same_moment(a, b) {
                return Some(CaptureClash::Time);
            }
        }
        if let (Some(a), Some(b)) = (&self.unique_id, &other.unique_id) {
            if a != b {
                return Some(CaptureClash::UniqueId);
            }
        }
        if let (Some(sa), Some(na), Some(sb), Some(nb)) = (
            &self.serial,
            self.shutter_count,
            &other.serial,
            other.shutter_count,
        ) {
            if sa != sb || na != nb {
                return Some(CaptureClash::Camera);
            }
        }
        None
    }

    /// Reads EXIF from a JPEG, TIFF, PNG, WebP or HEIF file. A file without EXIF, or with EXIF
    /// that does not parse, has an empty capture.
    pub(crate) fn from_exif(bytes: &[u8]) -> Capture {
        let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
            return Capture::default();
        };
        // The value as written (a time has a space in it); ids are cleaned where stored.
        let text = |tag: exif::Tag| {
            exif.get_field(tag, exif::In::PRIMARY)
                .and_then(|f| match &f.value {
                    exif::Value::Ascii(parts) => parts.first().map(|p| {
                        String::from_utf8_lossy(p)
                            .trim_matches(['\0', ' '])
                            .to_owned()
                    }),
                    _ => None,
                })
                .filter(|s| !s.is_empty())
        };
        let id = |tag: exif::Tag| {
            text(tag)
                .map(|t| clean(t.as_bytes()))
                .filter(|s| !s.is_empty())
        };
        let number = |tag: exif::Tag| {
            exif.get_field(tag, exif::In::PRIMARY)
                .and_then(|f| f.value.get_uint(0))
        };
        Capture {
            time: text(exif::Tag::DateTimeOriginal)
                .and_then(|t| moment(&t, text(exif::Tag::SubSecTimeOriginal).as_deref())),
            unique_id: id(exif::Tag::ImageUniqueID),
            serial: id(exif::Tag::BodySerialNumber),
            // ImageNumber (TIFF/EP 0x9211), where a camera records its shutter count.
            shutter_count: number(exif::Tag(exif::Context::Exif, 0x9211))
                .or_else(|| number(exif::Tag(exif::Context::Tiff, 0x9211))),
        }
    }
}

/// Printable ASCII without the separators of the evidence's text form.
pub(crate) fn clean(bytes: &[u8]) -> String {
    bytes
        .iter()
        .filter(|b| b.is_ascii_graphic() && !matches!(b, b';' | b'=' | b'%'))
        .map(|&b| b as char)
        .collect()
}

/// `YYYY:MM:DD HH:MM:SS` (EXIF's form) and sub-second digits as `YYYY-MM-DDTHH:MM:SS.fff`;
/// `None` for a time that is blank or malformed (cameras write `0000:00:00 00:00:00`).
pub(crate) fn moment(datetime: &str, subsec: Option<&str>) -> Option<String> {
    let b = datetime.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 19
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19);
    if !shape || datetime.starts_with("0000") {
        return None;
    }
    let mut out = format!(
        "{}-{}-{}T{}:{}:{}",
        &datetime[0..4],
        &datetime[5..7],
        &datetime[8..10],
        &datetime[11..13],
        &datetime[14..16],
        &datetime[17..19]
    );
    let fraction: String = subsec
        .unwrap_or("")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let fraction = fraction.trim_end_matches('0');
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    Some(out)
}

/// Equal seconds, and equal fractions where both have one.
fn same_moment(a: &str, b: &str) -> bool {
    let (sa, fa) = a.split_once('.').map_or((a, None), |(s, f)| (s, Some(f)));
    let (sb, fb) = b.split_once('.').map_or((b, None), |(s, f)| (s, Some(f)));
    sa == sb && (fa.is_none() || fb.is_none() || fa == fb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: &str) -> Capture {
        Capture {
            time: Some(time.into()),
            ..Capture::default()
        }
    }

    #[test]
    fn times_that_both_exist_and_differ_are_different_photos() {
        assert_eq!(
            at("2024-05-01T10:00:00").clash(&at("2024-05-01T10:00:00")),
            None
        );
        assert_eq!(
            at("2024-05-01T10:00:00").clash(&at("2024-05-01T10:00:01")),
            Some(CaptureClash::Time)
        );
        // A burst: the same second, different fractions.
        assert_eq!(
            at("2024-05-01T10:00:00.12").clash(&at("2024-05-01T10:00:00.25")),
            Some(CaptureClash::Time)
        );
        // One copy lost its fraction: the seconds agree, nothing is proven.
        assert_eq!(
            at("2024-05-01T10:00:00.12").clash(&at("2024-05-01T10:00:00")),
            None
        );
        // A stripped copy proves nothing.
        assert_eq!(at("2024-05-01T10:00:00").clash(&Capture::default()), None);
    }

    #[test]
    fn camera_frames_and_unique_ids_tell_shots_apart() {
        let frame = |serial: &str, n| Capture {
            serial: Some(serial.into()),
            shutter_count: Some(n),
            ..Capture::default()
        };
        assert_eq!(frame("A1", 10).clash(&frame("A1", 10)), None);
        assert_eq!(
            frame("A1", 10).clash(&frame("A1", 11)),
            Some(CaptureClash::Camera)
        );
        assert_eq!(
            frame("A1", 10).clash(&frame("B2", 10)),
            Some(CaptureClash::Camera)
        );
        let id = |u: &str| Capture {
            unique_id: Some(u.into()),
            ..Capture::default()
        };
        assert_eq!(id("x").clash(&id("y")), Some(CaptureClash::UniqueId));
        assert_eq!(id("x").clash(&id("x")), None);
    }

    #[test]
    fn a_jpeg_says_when_it_was_taken() {
        let pixels = image::RgbImage::from_pixel(32, 24, image::Rgb([90, 120, 150]));
        let exif = photosync_testkit::exif_taken("2024:05:01 10:00:00", "120", "SN 42");
        let jpeg = photosync_testkit::jpeg(&pixels, 90, false, Some(&exif));
        let c = Capture::from_exif(&jpeg);
        assert_eq!(c.time.as_deref(), Some("2024-05-01T10:00:00.12"));
        assert_eq!(c.serial.as_deref(), Some("SN42"));
        // No EXIF, or EXIF that does not parse: nothing is known.
        assert!(Capture::from_exif(&photosync_testkit::jpeg(&pixels, 90, false, None)).is_empty());
        let broken = photosync_testkit::jpeg(&pixels, 90, false, Some(b"Exif\0\0MM\0*garbage"));
        assert!(Capture::from_exif(&broken).is_empty());
    }

    #[test]
    fn exif_times_are_normalised_and_blank_ones_dropped() {
        assert_eq!(
            moment("2024:05:01 10:00:00", Some("120")).as_deref(),
            Some("2024-05-01T10:00:00.12")
        );
        assert_eq!(
            moment("2024:05:01 10:00:00", None).as_deref(),
            Some("2024-05-01T10:00:00")
        );
        assert_eq!(moment("0000:00:00 00:00:00", None), None);
        assert_eq!(moment("    :  :     :  :  ", None), None);
        assert_eq!(moment("yesterday", None), None);
    }
}
