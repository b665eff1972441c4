//! Thumbnails for the desktop list: decoded at reduced scale by the identifier's decoder (a
//! 12 MP JPEG never decodes at full size), resized to fit a square, stored as JPEG in a cache
//! folder. The cache key covers the path, size and mtime, so an edited file gets a new one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use photosync_identify::{preview, IdentifyError, Limits};

/// The longest side of a thumbnail, in pixels: the list shows them at 52 px, so this is enough
/// for a 2× screen and keeps the window's image memory small.
pub const SIDE: u32 = 112;

#[derive(Debug, Clone)]
pub struct Thumbs {
    dir: PathBuf,
}

impl Thumbs {
    pub fn new(dir: PathBuf) -> Thumbs {
        Thumbs { dir }
    }

    fn key(path: &Path) -> std::io::Result<String> {
        let meta = std::fs::metadata(path)?;
        let mtime = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut h = blake3::Hasher::new();
        h.update(path.as_os_str().as_encoded_bytes());
        h.update(&meta.len().to_le_bytes());
        h.update(&mtime.to_le_bytes());
        Ok(h.finalize().to_hex()[..32].to_owned())
    }

    /// The JPEG bytes of `path`'s thumbnail, made on first use.
    pub fn get(&self, path: &Path) -> Result<Vec<u8>, IdentifyError> {
        let key = Self::key(path)?;
        let file = self.dir.join(&key[..2]).join(format!("{key}.jpg"));
        if let Ok(bytes) = std::fs::read(&file) {
            return Ok(bytes);
        }
        let bytes = make(path)?;
        cache(&file, &bytes);
        Ok(bytes)
    }
}

/// Writes a cached thumbnail at `file`; a cache that cannot be written is only logged. Each
/// writer has a temporary file of its own: two requests for one picture at once must not write
/// into one file, or the rename could publish a torn JPEG.
pub fn cache(file: &Path, jpeg: &[u8]) {
    static WRITERS: AtomicU64 = AtomicU64::new(0);
    let dir = file.parent().unwrap_or(Path::new("."));
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        let n = WRITERS.fetch_add(1, Ordering::Relaxed);
        let tmp = file.with_extension(format!("{}-{n}.tmp", std::process::id()));
        std::fs::write(&tmp, jpeg)?;
        std::fs::rename(&tmp, file).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    });
    if let Err(e) = written {
        tracing::warn!(file = %file.display(), error = %e, "thumbnail not cached");
    }
}

fn make(path: &Path) -> Result<Vec<u8>, IdentifyError> {
    jpeg(preview(path, &Limits::default())?, SIDE)
}

/// A JPEG of `pixels` whose longest side is at most `side` (never enlarged).
pub fn jpeg(pixels: image::RgbImage, side: u32) -> Result<Vec<u8>, IdentifyError> {
    let image = image::DynamicImage::ImageRgb8(pixels);
    let thumb = if image.width().max(image.height()) > side {
        image.thumbnail(side, side)
    } else {
        image
    };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&thumb.to_rgb8())
        .map_err(|e| IdentifyError::Corrupt {
            format: "thumbnail",
            reason: e.to_string(),
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_thumbnail_fits_the_square_keeps_the_aspect_and_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("aqua.jpg");
        std::fs::copy(photosync_testkit::photos_dir().join("aqua.jpg"), &photo).unwrap();
        let thumbs = Thumbs::new(dir.path().join("cache"));
        let bytes = thumbs.get(&photo).unwrap();
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!(
            (img.width(), img.height()),
            (112, 70),
            "800x500 fits 112x70"
        );
        let cached: Vec<_> = walk(&dir.path().join("cache"));
        assert_eq!(cached.len(), 1);
        assert_eq!(std::fs::read(&cached[0]).unwrap(), bytes);
        // Same file, same thumbnail from the cache; an edit makes a new one.
        assert_eq!(thumbs.get(&photo).unwrap(), bytes);
        std::fs::copy(photosync_testkit::photos_dir().join("dune.jpg"), &photo).unwrap();
        assert_ne!(thumbs.get(&photo).unwrap(), bytes);
        assert_eq!(walk(&dir.path().join("cache")).len(), 2);
    }

    #[test]
    fn many_requests_for_one_picture_at_once_cache_one_whole_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("aqua.jpg");
        std::fs::copy(photosync_testkit::photos_dir().join("aqua.jpg"), &photo).unwrap();
        for round in 0..5 {
            let thumbs = Thumbs::new(dir.path().join(format!("cache-{round}")));
            let got: Vec<Vec<u8>> = std::thread::scope(|s| {
                let workers: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| thumbs.get(&photo).unwrap()))
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).collect()
            });
            let cached = walk(&dir.path().join(format!("cache-{round}")));
            assert_eq!(cached.len(), 1, "no temporary file left: {cached:?}");
            let bytes = std::fs::read(&cached[0]).unwrap();
            assert!(
                got.iter().all(|g| *g == bytes),
                "a torn thumbnail was cached"
            );
            image::load_from_memory(&bytes).unwrap();
        }
    }

    #[test]
    fn a_raw_file_shows_its_preview_upright() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("IMG_0001.DNG");
        let aqua = std::fs::read(photosync_testkit::photos_dir().join("aqua.jpg")).unwrap();
        let spec = photosync_testkit::DngSpec {
            orientation: 6,
            ..Default::default()
        };
        std::fs::write(&raw, photosync_testkit::dng(&aqua, &spec)).unwrap();
        let thumbs = Thumbs::new(dir.path().join("cache"));
        let img = image::load_from_memory(&thumbs.get(&raw).unwrap()).unwrap();
        // The 800x500 photo, stored turned for orientation 6, comes out as it was taken.
        assert_eq!((img.width(), img.height()), (112, 70));
    }

    #[test]
    fn bad_files_give_errors_not_thumbnails() {
        let dir = tempfile::tempdir().unwrap();
        let thumbs = Thumbs::new(dir.path().join("cache"));
        let text = dir.path().join("notes.jpg");
        std::fs::write(&text, b"just text").unwrap();
        assert!(thumbs.get(&text).is_err());
        let empty = dir.path().join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        assert!(thumbs.get(&empty).is_err());
        assert!(thumbs.get(&dir.path().join("missing.jpg")).is_err());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
