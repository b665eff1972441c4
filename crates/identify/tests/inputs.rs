//! Every supported format, orientation handling, and every kind of bad input.

#![allow(clippy::unwrap_used)]

use image::{ImageFormat, RgbImage};
use photosync_identify::{
    compare, identify_bytes, identify_file, Format, IdentifyError, Identity, Limits, Match, Refuted,
};
use photosync_testkit::{decode, encode_as, jpeg, make_copy, noise, png_bomb, Copy};

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(photosync_testkit::photos_dir().join(name)).unwrap()
}

fn id(bytes: &[u8]) -> Identity {
    identify_bytes(bytes, &Limits::default()).unwrap()
}

fn err(bytes: &[u8]) -> IdentifyError {
    identify_bytes(bytes, &Limits::default()).unwrap_err()
}

#[test]
fn every_format_is_the_same_picture_as_the_jpeg() {
    let original = photo("ladybird.jpg");
    let base = id(&original);
    assert_eq!(base.format, Format::Jpeg);
    let pixels = decode(&original);
    for (format, want) in [
        (ImageFormat::Png, Format::Png),
        (ImageFormat::WebP, Format::Webp),
        (ImageFormat::Gif, Format::Gif),
        (ImageFormat::Tiff, Format::Tiff),
        (ImageFormat::Bmp, Format::Bmp),
    ] {
        let copy = id(&encode_as(&pixels, format));
        assert_eq!(copy.format, want);
        assert_eq!((copy.width, copy.height), (base.width, base.height));
        let relation = compare(&base, &copy);
        if format == ImageFormat::Gif {
            // 256 colours shift whole regions: a candidate by the identifier, and kept as a
            // picture of its own by the verification (an extra upload, never a lost one).
            assert!(
                matches!(relation, Match::Refuted(d, Refuted::Detail(_)) if d.is_same_picture()),
                "{relation:?}"
            );
        } else {
            assert!(
                matches!(relation, Match::SamePicture(_)),
                "{format:?}: {relation:?}"
            );
        }
    }
}

#[test]
fn animated_gif_is_identified_by_its_first_frame() {
    use image::codecs::gif::GifEncoder;
    use image::{Delay, Frame};
    let first = decode(&photo("coffee.jpg"));
    let second = image::imageops::resize(
        &decode(&photo("rocket.jpg")),
        first.width(),
        first.height(),
        image::imageops::FilterType::Triangle,
    );
    let mut gif = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut gif);
        for f in [&first, &second] {
            let rgba = image::DynamicImage::ImageRgb8(f.clone()).into_rgba8();
            enc.encode_frame(Frame::from_parts(
                rgba,
                0,
                0,
                Delay::from_numer_denom_ms(100, 1),
            ))
            .unwrap();
        }
    }
    let anim = id(&gif);
    assert!(compare(&id(&jpeg(&first, 90, false, None)), &anim).is_same());
    assert!(!compare(&id(&jpeg(&second, 90, false, None)), &anim).is_same());
}

#[test]
fn orientation_tag_is_applied_before_identifying() {
    let original = photo("castle-maintenon.jpg");
    let base = id(&original);
    for o in [6, 8] {
        let rotated = make_copy(&original, Copy::Rotated(o));
        // Stored sideways: the raw pixels are tall, the picture is wide.
        let raw = decode(&rotated);
        assert!(raw.height() > raw.width());
        let r = id(&rotated);
        assert_eq!((r.width, r.height), (base.width, base.height));
        assert!(compare(&base, &r).is_same());
    }
    // The same sideways pixels without the tag are a different picture.
    let sideways = jpeg(
        &image::imageops::rotate270(&decode(&original)),
        92,
        false,
        None,
    );
    assert!(!compare(&base, &id(&sideways)).is_same());
}

#[test]
fn same_bytes_beats_same_picture() {
    let a = id(&photo("dune.jpg"));
    assert_eq!(compare(&a, &a.clone()), Match::SameBytes);
    let tagged = id(&make_copy(&photo("dune.jpg"), Copy::Tagged));
    assert_ne!(tagged.digest, a.digest);
    assert_eq!(
        tagged.identifier, a.identifier,
        "metadata must not move a bit"
    );
    assert!(matches!(compare(&a, &tagged), Match::SamePicture(_)));
}

#[test]
fn digest_is_blake3_of_the_file() {
    let bytes = photo("wood.jpg");
    let a = id(&bytes);
    // Reference value from the blake3 crate's incremental hasher, fed in odd-sized pieces.
    let mut h = blake3::Hasher::new();
    for piece in bytes.chunks(1021) {
        h.update(piece);
    }
    assert_eq!(a.digest.to_string(), h.finalize().to_hex().to_string());
}

#[test]
fn empty_input() {
    assert!(matches!(err(&[]), IdentifyError::Empty));
}

#[test]
fn random_bytes_are_not_an_image() {
    let e = err(&noise(10_000, 7));
    assert!(matches!(e, IdentifyError::NotAnImage), "{e:?}");
    assert_eq!(e.code(), "not_an_image");
}

#[test]
fn truncated_jpegs_are_refused() {
    for bytes in [
        photo("storm.jpg"),
        make_copy(&photo("storm.jpg"), Copy::Progressive),
    ] {
        for cut in [bytes.len() / 2, bytes.len() - 2, 400] {
            let e = err(&bytes[..cut]);
            assert!(
                matches!(e, IdentifyError::Corrupt { format: "jpeg", .. }),
                "cut at {cut}: {e:?}"
            );
        }
    }
}

#[test]
fn truncated_png_is_refused() {
    let png = make_copy(&photo("storm.jpg"), Copy::Png);
    let e = err(&png[..png.len() / 2]);
    assert!(
        matches!(e, IdentifyError::Corrupt { format: "png", .. }),
        "{e:?}"
    );
}

#[test]
fn corrupt_headers_are_refused() {
    let mut jpg = photo("aqua.jpg");
    let n = noise(300, 3);
    jpg[20..320].copy_from_slice(&n);
    let e = err(&jpg);
    assert_eq!(e.code(), "corrupt", "{e:?}");

    let mut png = make_copy(&photo("aqua.jpg"), Copy::Png);
    png[16] ^= 0xFF; // width inside IHDR: the CRC no longer matches
    assert_eq!(err(&png).code(), "corrupt");
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let e = err(&png_bomb(100_000, 100_000));
    assert!(matches!(e, IdentifyError::TooManyPixels { .. }), "{e:?}");

    // A 64×64 JPEG whose frame header is patched to claim 60000 × 60000.
    let mut jpg = jpeg(&RgbImage::new(64, 64), 90, false, None);
    let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let e = err(&jpg);
    assert!(matches!(e, IdentifyError::TooManyPixels { .. }), "{e:?}");
}

#[test]
fn pixel_limit_is_configurable() {
    let limits = Limits {
        max_pixels: 1000,
        ..Limits::default()
    };
    let e = identify_bytes(&photo("aqua.jpg"), &limits).unwrap_err();
    assert!(matches!(e, IdentifyError::TooManyPixels { .. }));
}

#[test]
fn oversized_file_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jpg");
    std::fs::write(&path, photo("aqua.jpg")).unwrap();
    let limits = Limits {
        max_file_bytes: 1000,
        ..Limits::default()
    };
    let e = identify_file(&path, &limits).unwrap_err();
    assert!(
        matches!(e, IdentifyError::FileTooLarge { max: 1000, .. }),
        "{e:?}"
    );
}

#[test]
fn heif_without_libheif_is_unsupported_not_corrupt() {
    // An ISO-BMFF header with the 'heic' brand.
    let mut heic = vec![0, 0, 0, 24];
    heic.extend(b"ftypheic\0\0\0\0mif1heic");
    heic.extend(noise(1000, 9));
    let e = err(&heic);
    if cfg!(feature = "heif") {
        assert_eq!(e.code(), "corrupt", "{e:?}");
    } else {
        assert_eq!(e.code(), "unsupported_format", "{e:?}");
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let e = identify_file(
        std::path::Path::new("/nonexistent/x.jpg"),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "io");
}

#[test]
fn many_files_in_parallel_come_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, (name, bytes)) in photosync_testkit::photos().into_iter().take(8).enumerate() {
        let p = dir.path().join(format!("{i}-{name}"));
        std::fs::write(&p, &bytes).unwrap();
        paths.push(p);
    }
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    paths.insert(3, empty);
    let results = photosync_identify::identify_all(&paths, &Limits::default(), 2);
    assert_eq!(results.len(), paths.len());
    for (p, r) in paths.iter().zip(&results) {
        match r {
            Ok(got) => assert_eq!(got, &identify_file(p, &Limits::default()).unwrap()),
            Err(e) => {
                assert!(p.ends_with("empty.jpg"));
                assert_eq!(e.code(), "empty");
            }
        }
    }
}

#[cfg(feature = "heif")]
#[test]
fn heic_from_a_phone_format_is_the_same_picture() {
    // tests/photos/ladybird.heic: `heif-enc -q 50 ladybird.jpg` (libheif 1.15, x265)
    let heic = id(&photo("ladybird.heic"));
    assert_eq!(heic.format, Format::Heif);
    let jpg = id(&photo("ladybird.jpg"));
    assert_eq!((heic.width, heic.height), (jpg.width, jpg.height));
    assert!(
        matches!(compare(&jpg, &heic), Match::SamePicture(_)),
        "{:?}",
        compare(&jpg, &heic)
    );
    let mut truncated = photo("ladybird.heic");
    truncated.truncate(truncated.len() / 2);
    assert_eq!(err(&truncated).code(), "corrupt");
}

#[test]
fn camera_sized_progressive_and_baseline_copies_agree() {
    // Large enough for the 1/8-scale decode, where progressive files are read from their DC
    // scans only.
    let img = image::imageops::resize(
        &decode(&photo("elephants.jpg")),
        3200,
        1800,
        image::imageops::FilterType::Triangle,
    );
    let base = id(&jpeg(&img, 92, false, None));
    let prog = id(&jpeg(&img, 92, true, None));
    match compare(&base, &prog) {
        Match::SamePicture(d) => assert!(d.total() <= 8, "{d}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_dng_is_identified_from_its_preview_with_the_sensor_size_and_its_orientation() {
    use photosync_identify::{Class, RawKind, Refuted};
    use photosync_testkit::{dng, DngSpec};
    let original = photo("ladybird.jpg");
    let jpeg_id = id(&original);
    for orientation in [1u16, 6, 3, 8] {
        let spec = DngSpec {
            sensor_scale: 2,
            orientation,
            taken: Some(("2024:05:01 10:00:00", "25")),
            ..DngSpec::default()
        };
        let raw = id(&dng(&original, &spec));
        assert_eq!(
            raw.format,
            Format::Raw(RawKind::Dng),
            "orientation {orientation}"
        );
        // The sensor's pixels, upright.
        assert_eq!(
            (raw.width, raw.height),
            (jpeg_id.width * 2, jpeg_id.height * 2)
        );
        assert_eq!(raw.evidence.quality.class, Class::Raw);
        assert_eq!(
            raw.evidence.capture.time.as_deref(),
            Some("2024-05-01T10:00:00.25")
        );
        // The same picture as its camera JPEG by the identifier, and kept both.
        let d = raw.identifier.distance(&jpeg_id.identifier);
        assert!(d.is_same_picture(), "orientation {orientation}: {d}");
        assert!(matches!(
            compare(&raw, &jpeg_id),
            Match::Refuted(_, Refuted::RawAndRendering)
        ));
    }
}

#[test]
fn a_raw_file_without_a_preview_or_broken_is_a_clear_error() {
    use photosync_testkit::{dng, DngSpec};
    let original = photo("ladybird.jpg");
    let bare = dng(
        &original,
        &DngSpec {
            no_preview: true,
            ..DngSpec::default()
        },
    );
    let e = err(&bare);
    assert_eq!(e.code(), "unsupported_format", "{e}");
    // Truncated: the container or the preview is cut.
    let full = dng(&original, &DngSpec::default());
    for cut in [16, full.len() / 3, full.len() - 100] {
        let e = err(&full[..cut]);
        assert!(
            matches!(e.code(), "unsupported_format" | "corrupt" | "not_an_image"),
            "cut at {cut}: {e}"
        );
    }
    // Signatures of other RAW containers with nothing behind them.
    for head in [
        &b"FUJIFILMCCD-RAW 0201"[..],
        b"IIRO\x08\0\0\0",
        b"IIU\0\x08\0\0\0",
        b"II*\0\x10\0\0\0CR\x02\0",
    ] {
        let e = err(head);
        assert_eq!(e.code(), "unsupported_format", "{head:?}: {e}");
    }
}
