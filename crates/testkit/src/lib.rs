//! Test-only helpers: the real photos committed under `tests/photos`, the "same picture" copies
//! made from them, and the bad inputs every reader of files must survive.
//!
//! [`CountingProxy`] sits between a client and a server on loopback and records what the
//! client sends, for tests and benchmarks of the bandwidth limit.
//!
//! Copies are generated, not committed, so the test set stays small and every transform is
//! visible in code.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod postgres;
pub mod proxy;
pub mod s3;

pub use proxy::CountingProxy;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};

/// The folder of committed test photos (see its LICENSES.md).
pub fn photos_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/photos")
}

/// Pairs of photos that are alike but different shots: they must never be "same picture".
pub const HARD_NEGATIVES: &[(&str, &str, &str)] = &[
    (
        "motorcycle-left.jpg",
        "motorcycle-right.jpg",
        "stereo pair (Middlebury 2014)",
    ),
    (
        "burst-pan-0.jpg",
        "burst-pan-1.jpg",
        "two frames of a 4 % camera pan",
    ),
];

/// Every committed photo, by file name, sorted.
pub fn photos() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(photos_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A transform that keeps the picture but changes the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// Decoded and encoded again as a baseline JPEG at quality 75.
    Reencode75,
    /// Resized to half width and height, JPEG quality 90.
    HalfSize,
    /// The original bytes with an EXIF block added (camera, date, orientation 1).
    Tagged,
    /// The original bytes with every APPn metadata segment removed.
    Stripped,
    /// Converted to PNG.
    Png,
    /// Pixels rotated in storage, with the EXIF orientation tag (6, 3 or 8) that undoes it.
    Rotated(u16),
    /// Re-encoded as a progressive JPEG at quality 85.
    Progressive,
}

pub const COPIES: &[Copy] = &[
    Copy::Reencode75,
    Copy::HalfSize,
    Copy::Tagged,
    Copy::Stripped,
    Copy::Png,
    Copy::Rotated(6),
    Copy::Rotated(3),
    Copy::Rotated(8),
    Copy::Progressive,
];

pub fn decode(bytes: &[u8]) -> RgbImage {
    image::load_from_memory(bytes).unwrap().into_rgb8()
}

/// Encodes RGB pixels as JPEG, optionally progressive and with an APP1 EXIF block.
pub fn jpeg(pixels: &RgbImage, quality: u8, progressive: bool, exif: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality);
    enc.set_progressive(progressive);
    if let Some(exif) = exif {
        enc.add_app_segment(1, exif).unwrap();
    }
    let (w, h) = pixels.dimensions();
    enc.encode(
        pixels.as_raw(),
        u16::try_from(w).unwrap(),
        u16::try_from(h).unwrap(),
        jpeg_encoder::ColorType::Rgb,
    )
    .unwrap();
    out
}

/// An APP1 EXIF payload with an orientation tag and a camera model string.
pub fn exif_block(orientation: u16) -> Vec<u8> {
    let model = b"Photosync Test Camera\0";
    let mut e = b"Exif\0\0II*\0".to_vec();
    e.extend(8u32.to_le_bytes()); // IFD0 offset
    e.extend(2u16.to_le_bytes()); // two entries
                                  // Model (0x0110), ASCII, stored after the IFD
    let model_offset = 8 + 2 + 2 * 12 + 4;
    e.extend(0x0110u16.to_le_bytes());
    e.extend(2u16.to_le_bytes());
    e.extend((model.len() as u32).to_le_bytes());
    e.extend((model_offset as u32).to_le_bytes());
    // Orientation (0x0112), SHORT
    e.extend(0x0112u16.to_le_bytes());
    e.extend(3u16.to_le_bytes());
    e.extend(1u32.to_le_bytes());
    e.extend(orientation.to_le_bytes());
    e.extend([0, 0]);
    e.extend(0u32.to_le_bytes()); // no next IFD
    e.extend(model);
    e
}

/// An APP1 EXIF payload with `DateTimeOriginal` (`YYYY:MM:DD HH:MM:SS`), `SubSecTimeOriginal`
/// and `BodySerialNumber`, written by `kamadak-exif`.
pub fn exif_taken(when: &str, subsec: &str, serial: &str) -> Vec<u8> {
    use exif::{Field, In, Tag, Value};
    let ascii = |tag, text: &str| Field {
        tag,
        ifd_num: In::PRIMARY,
        value: Value::Ascii(vec![text.as_bytes().to_vec()]),
    };
    let fields = [
        ascii(Tag::DateTimeOriginal, when),
        ascii(Tag::SubSecTimeOriginal, subsec),
        ascii(Tag::BodySerialNumber, serial),
    ];
    let mut writer = exif::experimental::Writer::new();
    for f in &fields {
        writer.push_field(f);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).unwrap();
    let mut out = b"Exif\0\0".to_vec();
    out.extend(tiff.into_inner());
    out
}

/// JPEG segments as (marker, whole segment bytes) up to the start of scan; then the rest.
fn jpeg_segments(bytes: &[u8]) -> (Vec<(u8, &[u8])>, &[u8]) {
    assert_eq!(&bytes[..2], &[0xFF, 0xD8], "not a JPEG");
    let mut segs = Vec::new();
    let mut at = 2;
    loop {
        assert_eq!(bytes[at], 0xFF);
        let marker = bytes[at + 1];
        if marker == 0xDA {
            return (segs, &bytes[at..]);
        }
        let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        segs.push((marker, &bytes[at..at + 2 + len]));
        at += 2 + len;
    }
}

/// Rebuilds a JPEG keeping the segments `keep` accepts, with `insert` placed after SOI.
fn rebuild_jpeg(bytes: &[u8], insert: &[u8], keep: impl Fn(u8) -> bool) -> Vec<u8> {
    let (segs, rest) = jpeg_segments(bytes);
    let mut out = vec![0xFF, 0xD8];
    out.extend(insert);
    for (marker, seg) in segs {
        if keep(marker) {
            out.extend(seg);
        }
    }
    out.extend(rest);
    out
}

fn app1(payload: &[u8]) -> Vec<u8> {
    let mut seg = vec![0xFF, 0xE1];
    seg.extend(u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    seg.extend(payload);
    seg
}

pub fn make_copy(original: &[u8], copy: Copy) -> Vec<u8> {
    match copy {
        Copy::Reencode75 => jpeg(&decode(original), 75, false, None),
        Copy::Progressive => jpeg(&decode(original), 85, true, None),
        Copy::HalfSize => {
            let img = decode(original);
            let half = image::imageops::resize(
                &img,
                img.width() / 2,
                img.height() / 2,
                image::imageops::FilterType::Lanczos3,
            );
            jpeg(&half, 90, false, None)
        }
        Copy::Tagged => rebuild_jpeg(original, &app1(&exif_block(1)), |m| m != 0xE1),
        Copy::Stripped => rebuild_jpeg(original, &[], |m| !(0xE1..=0xEF).contains(&m)),
        Copy::Png => {
            let mut out = Vec::new();
            DynamicImage::ImageRgb8(decode(original))
                .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
                .unwrap();
            out
        }
        Copy::Rotated(orientation) => {
            let upright = decode(original);
            // Store the pixels so that applying `orientation` brings them upright again.
            let stored = match orientation {
                6 => image::imageops::rotate270(&upright),
                3 => image::imageops::rotate180(&upright),
                8 => image::imageops::rotate90(&upright),
                o => panic!("orientation {o} not generated"),
            };
            jpeg(&stored, 92, false, Some(&exif_block(orientation)))
        }
    }
}

/// Encodes `pixels` in another container format.
pub fn encode_as(pixels: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(pixels.clone())
        .write_to(&mut Cursor::new(&mut out), format)
        .unwrap();
    out
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// A PNG whose header claims `width` × `height` pixels, followed by a tiny, bogus data chunk:
/// a decompression bomb as far as a decoder that trusts headers is concerned.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend(u32::try_from(data.len()).unwrap().to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A different shot made from a photo: the picture a moment later, as a burst would take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearShot {
    /// The camera panned by this many percent of the width (both frames cropped to 90 %).
    Pan(u32),
    /// Exposure bracketing: one stop brighter.
    PlusOneStop,
}

pub const NEAR_SHOTS: &[NearShot] = &[NearShot::Pan(2), NearShot::Pan(4), NearShot::PlusOneStop];

/// Two frames of a burst derived from one photo: (first frame, second frame), both JPEG.
pub fn near_shot_pair(original: &[u8], shot: NearShot) -> (Vec<u8>, Vec<u8>) {
    let img = decode(original);
    let (w, h) = img.dimensions();
    match shot {
        NearShot::Pan(percent) => {
            let cw = w * 9 / 10;
            let dx = w * percent / 100;
            let a = image::imageops::crop_imm(&img, 0, 0, cw, h).to_image();
            let b = image::imageops::crop_imm(&img, dx, 0, cw, h).to_image();
            (jpeg(&a, 90, false, None), jpeg(&b, 90, false, None))
        }
        NearShot::PlusOneStop => {
            let mut bright = img.clone();
            for p in bright.pixels_mut() {
                for c in &mut p.0 {
                    // double the linear light, in the sRGB gamma of the stored values
                    let lin = (f32::from(*c) / 255.0).powf(2.2) * 2.0;
                    *c = (lin.min(1.0).powf(1.0 / 2.2) * 255.0).round() as u8;
                }
            }
            (jpeg(&img, 90, false, None), jpeg(&bright, 90, false, None))
        }
    }
}

/// Real consecutive video frames (`tests/photos/frames`): the camera still, a subject moving a
/// few pixels. Each pair must never be "same picture".
pub const FRAME_PAIRS: &[(&str, &str)] = &[
    ("bbb-096.jpg", "bbb-097.jpg"),
    ("bbb-114.jpg", "bbb-115.jpg"),
    ("bbb-121.jpg", "bbb-122.jpg"),
    ("bbb-125.jpg", "bbb-126.jpg"),
    ("bikes-180.jpg", "bikes-181.jpg"),
];

/// The bytes of a committed video frame.
pub fn frame(name: &str) -> Vec<u8> {
    std::fs::read(photos_dir().join("frames").join(name)).unwrap()
}

/// A local change made to a photo, as between two shots of a burst: the rest of the picture is
/// untouched, so a global summary barely moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalChange {
    /// The most detailed square region (a quarter of the short side) moved diagonally by this
    /// many thousandths of the width, over the unchanged background.
    Displaced(u32),
    /// A small patch (4 % of the width) from the most detailed place pasted onto the flattest.
    ObjectAdded,
    /// The most detailed small patch (4 % of the width) painted over with its surroundings.
    ObjectRemoved,
}

pub const LOCAL_CHANGES: &[LocalChange] = &[
    LocalChange::Displaced(5),
    LocalChange::Displaced(10),
    LocalChange::Displaced(20),
    LocalChange::ObjectAdded,
    LocalChange::ObjectRemoved,
];

/// The square of side `side` with the most (`most`) or least structure: gradient energy at a
/// quarter of the size, where a subject shows and grain or noise does not.
fn busiest_square(img: &RgbImage, side: u32, most: bool) -> (u32, u32) {
    let small = image::imageops::resize(
        img,
        img.width() / 4,
        img.height() / 4,
        image::imageops::FilterType::Triangle,
    );
    let (x, y) = busiest_square_at(&small, (side / 4).max(2), most);
    (
        (x * 4).min(img.width() - side),
        (y * 4).min(img.height() - side),
    )
}

fn busiest_square_at(img: &RgbImage, side: u32, most: bool) -> (u32, u32) {
    let luma = |x: u32, y: u32| {
        let p = img.get_pixel(x, y).0;
        i32::from(p[0]) * 3 + i32::from(p[1]) * 6 + i32::from(p[2])
    };
    let (w, h) = img.dimensions();
    let step = (side / 4).max(1);
    let mut best = (0, 0, if most { -1 } else { i64::MAX });
    for y in (0..=h - side).step_by(step as usize) {
        for x in (0..=w - side).step_by(step as usize) {
            let mut e = 0i64;
            for yy in (y..y + side - 1).step_by(2) {
                for xx in (x..x + side - 1).step_by(2) {
                    let v = luma(xx, yy);
                    e += i64::from((luma(xx + 1, yy) - v).abs() + (luma(xx, yy + 1) - v).abs());
                }
            }
            if (most && e > best.2) || (!most && e < best.2) {
                best = (x, y, e);
            }
        }
    }
    (best.0, best.1)
}

/// Two shots made from one photo: (the photo, the photo with a local change), both JPEG q90.
pub fn local_change_pair(original: &[u8], change: LocalChange) -> (Vec<u8>, Vec<u8>) {
    let img = decode(original);
    let (w, h) = img.dimensions();
    let mut changed = img.clone();
    match change {
        LocalChange::Displaced(permille) => {
            let side = w.min(h) / 4;
            // Diagonally, so that no stripe or edge can hide the move by running along it.
            let step = (f64::from(w * permille) / 1000.0 / std::f64::consts::SQRT_2).ceil() as u32;
            let (x, y) = busiest_square(&img, side, true);
            let region = image::imageops::crop_imm(&img, x, y, side, side).to_image();
            // Towards the bottom right where there is room, else back.
            let to = |at: u32, len: u32| {
                if at + side + step <= len {
                    at + step
                } else {
                    at - step
                }
            };
            image::imageops::replace(
                &mut changed,
                &region,
                i64::from(to(x, w)),
                i64::from(to(y, h)),
            );
        }
        LocalChange::ObjectAdded => {
            let side = (w / 25).max(4);
            let (sx, sy) = busiest_square(&img, side, true);
            let (tx, ty) = busiest_square(&img, side, false);
            let patch = image::imageops::crop_imm(&img, sx, sy, side, side).to_image();
            image::imageops::replace(&mut changed, &patch, i64::from(tx), i64::from(ty));
        }
        LocalChange::ObjectRemoved => {
            let side = (w / 25).max(4);
            let (x, y) = busiest_square(&img, side, true);
            // Each pixel takes the mix of the four border pixels facing it, as a quick
            // inpainting would.
            for yy in y..y + side {
                for xx in x..x + side {
                    let fx = (xx - x) as f32 / (side - 1) as f32;
                    let fy = (yy - y) as f32 / (side - 1) as f32;
                    let l = img.get_pixel(x.saturating_sub(1), yy).0;
                    let r = img.get_pixel((x + side).min(w - 1), yy).0;
                    let t = img.get_pixel(xx, y.saturating_sub(1)).0;
                    let b = img.get_pixel(xx, (y + side).min(h - 1)).0;
                    let mut px = [0u8; 3];
                    for c in 0..3 {
                        let horiz = f32::from(l[c]) * (1.0 - fx) + f32::from(r[c]) * fx;
                        let vert = f32::from(t[c]) * (1.0 - fy) + f32::from(b[c]) * fy;
                        px[c] = ((horiz + vert) / 2.0).round() as u8;
                    }
                    changed.put_pixel(xx, yy, image::Rgb(px));
                }
            }
        }
    }
    (jpeg(&img, 90, false, None), jpeg(&changed, 90, false, None))
}

/// What goes into a generated DNG.
#[derive(Debug, Clone, Default)]
pub struct DngSpec<'a> {
    /// The sensor's size is the preview's times this (1 when 0).
    pub sensor_scale: u32,
    /// The EXIF orientation tag (1 when 0); the preview is stored turned so that it undoes it.
    pub orientation: u16,
    /// `DateTimeOriginal` (`YYYY:MM:DD HH:MM:SS`) and `SubSecTimeOriginal`.
    pub taken: Option<(&'a str, &'a str)>,
    /// Leave the preview out: only the sensor data remains.
    pub no_preview: bool,
}

/// A minimal valid DNG written by `rawler`'s DNG writer: linear sensor data (flat, at
/// `sensor_scale` times the photo's size), the photo itself as the JPEG preview (q90), and
/// the tags of `spec`. Real RAW files are not shipped by any package this project may use, so
/// the tests make their own from the real photos.
pub fn dng(original: &[u8], spec: &DngSpec) -> Vec<u8> {
    use rawler::dng::writer::DngWriter;
    use rawler::dng::{DngCompression, DNG_VERSION_V1_4};
    use rawler::tags::{ExifTag, TiffCommonTag};
    let upright = decode(original);
    let stored = match spec.orientation {
        0 | 1 => upright,
        6 => image::imageops::rotate270(&upright),
        3 => image::imageops::rotate180(&upright),
        8 => image::imageops::rotate90(&upright),
        o => panic!("orientation {o} not generated"),
    };
    let scale = spec.sensor_scale.max(1) as usize;
    let (w, h) = (
        stored.width() as usize * scale,
        stored.height() as usize * scale,
    );
    let mut out = Cursor::new(Vec::new());
    let mut dng = DngWriter::new(&mut out, DNG_VERSION_V1_4).unwrap();
    dng.root_ifd_mut().add_tag(TiffCommonTag::Make, "Photosync");
    dng.root_ifd_mut()
        .add_tag(TiffCommonTag::Model, "Test Camera");
    dng.root_ifd_mut().add_tag(
        rawler::tags::DngTag::UniqueCameraModel,
        "Photosync Test Camera",
    );
    dng.root_ifd_mut()
        .add_tag(TiffCommonTag::Orientation, spec.orientation.max(1));
    if let Some((when, subsec)) = spec.taken {
        dng.exif_ifd_mut().add_tag(ExifTag::DateTimeOriginal, when);
        dng.exif_ifd_mut()
            .add_tag(ExifTag::SubSecTimeOriginal, subsec);
    }
    let sensor = vec![128u8; w * h * 3];
    let mut raw = dng.subframe(0);
    raw.rgb_image_u8(&sensor, w, h, DngCompression::Uncompressed, 1)
        .unwrap();
    raw.finalize().unwrap();
    if !spec.no_preview {
        let mut preview = dng.subframe(1);
        preview
            .preview(&DynamicImage::ImageRgb8(stored), 0.9)
            .unwrap();
        preview.finalize().unwrap();
    }
    dng.close().unwrap();
    out.into_inner()
}

/// What a set of identifiers looks like on the committed photos: every copy against its
/// original, every pair of distinct photos, the hard negatives and the generated near shots.
/// Generic over the identifier, so the tests and the benchmark measure the same thing.
#[derive(Debug)]
pub struct Separation<D> {
    pub photos: usize,
    /// (distance, "photo copy"), for every photo and every copy in [`COPIES`].
    pub copies: Vec<(D, String)>,
    /// (distance, "a vs b"), for every pair of distinct photos that is not a hard negative.
    pub distinct: Vec<(D, String)>,
    /// (distance, description), one per [`HARD_NEGATIVES`] entry.
    pub hard: Vec<(D, String)>,
    /// (distance, "photo shot"), for every photo and every [`NEAR_SHOTS`] entry.
    pub near_shots: Vec<(D, String)>,
    /// (distance, "photo change"), for every photo and every [`LOCAL_CHANGES`] entry.
    pub local: Vec<(D, String)>,
    /// (distance, "a vs b"), one per [`FRAME_PAIRS`] entry.
    pub frames: Vec<(D, String)>,
}

pub fn measure_separation<I, D>(
    identify: impl Fn(&[u8]) -> I,
    distance: impl Fn(&I, &I) -> D,
) -> Separation<D> {
    let photos = photos();
    let originals: Vec<(String, I)> = photos
        .iter()
        .map(|(n, b)| (n.clone(), identify(b)))
        .collect();
    let mut copies = Vec::new();
    let mut near_shots = Vec::new();
    let mut local = Vec::new();
    for ((name, bytes), (_, original)) in photos.iter().zip(&originals) {
        for &change in LOCAL_CHANGES {
            let (a, b) = local_change_pair(bytes, change);
            let d = distance(&identify(&a), &identify(&b));
            local.push((d, format!("{name} {change:?}")));
        }
        for &copy in COPIES {
            let c = identify(&make_copy(bytes, copy));
            copies.push((distance(original, &c), format!("{name} {copy:?}")));
        }
        for &shot in NEAR_SHOTS {
            let (a, b) = near_shot_pair(bytes, shot);
            let d = distance(&identify(&a), &identify(&b));
            near_shots.push((d, format!("{name} {shot:?}")));
        }
    }
    let is_hard = |a: &str, b: &str| {
        HARD_NEGATIVES
            .iter()
            .any(|(x, y, _)| (a == *x && b == *y) || (a == *y && b == *x))
    };
    let mut distinct = Vec::new();
    for (i, (na, a)) in originals.iter().enumerate() {
        for (nb, b) in &originals[i + 1..] {
            if !is_hard(na, nb) {
                distinct.push((distance(a, b), format!("{na} vs {nb}")));
            }
        }
    }
    let find = |n: &str| &originals.iter().find(|(x, _)| x == n).unwrap().1;
    let hard = HARD_NEGATIVES
        .iter()
        .map(|(a, b, why)| (distance(find(a), find(b)), (*why).to_owned()))
        .collect();
    let frames = FRAME_PAIRS
        .iter()
        .map(|(a, b)| {
            let d = distance(&identify(&frame(a)), &identify(&frame(b)));
            (d, format!("{a} vs {b}"))
        })
        .collect();
    Separation {
        local,
        frames,
        photos: photos.len(),
        copies,
        distinct,
        hard,
        near_shots,
    }
}

/// A `photosync-server` process on a free loopback port, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl ServerProcess {
    /// Starts `bin --data-dir dir serve --listen 127.0.0.1:0 extra...` and waits until it
    /// listens.
    pub fn start(bin: &Path, dir: &Path, extra: &[&str]) -> ServerProcess {
        let mut command = std::process::Command::new(bin);
        command
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra);
        ServerProcess::spawn(command)
    }

    /// Runs `command` (a `photosync-server ... serve --listen 127.0.0.1:0 ...`) and waits
    /// until it listens.
    pub fn spawn(mut command: std::process::Command) -> ServerProcess {
        use std::io::BufRead;
        let mut child = command
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        ServerProcess {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A line of /proc/PID/status, in kB (VmRSS, VmHWM).
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `bin --data-dir dir user add name`; returns the token it prints.
pub fn add_user(bin: &Path, dir: &Path, name: &str) -> String {
    let out = std::process::Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .args(["user", "add", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Writes `n` distinct `width`×`height` JPEGs named `IMG_00000.jpg`...: crops (60 % of each
/// side) of the real test photos at places on a grid fine enough for `n`, in four
/// orientations. Returns `dir`.
pub fn distinct_photos(dir: &Path, n: usize, width: u32, height: u32) -> PathBuf {
    let sources: Vec<_> = photos().iter().map(|(_, b)| decode(b)).collect();
    // A g×g grid of crop positions per photo and orientation.
    let per_spot = sources.len() * 4;
    let g = (1..).find(|g| g * g * per_spot >= n).unwrap_or(1) as u32;
    let mut jobs = Vec::new();
    'outer: for orient in 0..4 {
        for spot in 0..g * g {
            for src in 0..sources.len() {
                if jobs.len() == n {
                    break 'outer;
                }
                jobs.push((src, spot, orient));
            }
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    let chunk = jobs.len().div_ceil(2).max(1);
    std::thread::scope(|s| {
        for (part, list) in jobs.chunks(chunk).enumerate() {
            let sources = &sources;
            s.spawn(move || {
                for (i, &(src, spot, orient)) in list.iter().enumerate() {
                    let img = &sources[src];
                    let (w, h) = (img.width() * 3 / 5, img.height() * 3 / 5);
                    let step = (g - 1).max(1);
                    let (x, y) = (
                        (img.width() - w) * (spot % g) / step,
                        (img.height() - h) * (spot / g) / step,
                    );
                    let crop = image::imageops::crop_imm(img, x, y, w, h).to_image();
                    let crop = match orient {
                        0 => crop,
                        1 => image::imageops::flip_horizontal(&crop),
                        2 => image::imageops::flip_vertical(&crop),
                        _ => image::imageops::rotate180(&crop),
                    };
                    let out = image::imageops::resize(
                        &crop,
                        width,
                        height,
                        image::imageops::FilterType::Triangle,
                    );
                    let name = format!("IMG_{:05}.jpg", part * chunk + i);
                    std::fs::write(dir.join(name), jpeg(&out, 85, false, None)).unwrap();
                }
            });
        }
    });
    dir.to_path_buf()
}

/// A private D-Bus session bus that starts nothing by itself (no service activation, so no
/// keyring or notification daemon of the machine's comes up on its own), its socket in `dir`.
/// Returns the bus (the caller stops it) and its address.
pub fn private_bus(dir: &Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let config = dir.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            dir.display()
        ),
    )
    .unwrap();
    let mut bus = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("dbus-daemon (scripts/setup installs it)");
    let mut address = String::new();
    std::io::BufReader::new(bus.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    (bus, address.trim().to_owned())
}
