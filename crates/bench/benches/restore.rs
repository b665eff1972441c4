//! Restore benchmark: prints figures, each beside what it is compared with.
//!
//! `cargo bench -p photosync-bench --bench restore`
//!
//! 1. Restore throughput on loopback: 1,000 camera-sized photos (12 MP JPEGs, about 2 MB each)
//!    restored by the engine (4 at once: range-resumable partial files, BLAKE3 verified, fsynced,
//!    linked into place, recorded in the sync list), beside a plain parallel download of the
//!    same bytes with an HTTP client (4 at once, written to files, nothing verified or synced),
//!    in the same run, against the release `photosync-server`.
//! 2. Time to the first thumbnail page for 10,000 server images: what the desktop's "On the
//!    server" view does before it shows anything (every page of the list, then the 60
//!    thumbnails of the first screen, 6 at once), with the server's thumbnail cache cold, then
//!    warm.
//!
//! The server's images are written into its data folder directly (blobs under their digests,
//! rows in one transaction), as `--bench server` does: the figures are about reading them back.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use photosync_engine::restore::RestoreOptions;
use photosync_engine::{Client, Control, Engine, ImageFilter, Options, ServerConfig};
use photosync_testkit::{add_user, ServerProcess};

/// A data folder of user "bench" holding `blobs` (name, bytes) as images.
fn populated(
    dir: &Path,
    bin: &Path,
    blobs: impl Iterator<Item = (String, Vec<u8>, u32, u32)>,
) -> String {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let token = add_user(bin, dir, "bench");
    let mut db = rusqlite::Connection::open(dir.join("photosync.db")).unwrap();
    let tx = db.transaction().unwrap();
    let mut n = 0i64;
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO images (user_id, number, digest, name, bytes, width, height, format,
                                     mtime, uploaded_at, evidence, day)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, 'jpeg', ?7, ?7, 'none', ?8)",
            )
            .unwrap();
        let mut blob = tx
            .prepare("INSERT INTO blobs (digest) VALUES (?1)")
            .unwrap();
        for (name, bytes, width, height) in blobs {
            n += 1;
            let digest = blake3::hash(&bytes).to_hex().to_string();
            let path = dir.join("blobs").join(&digest[..2]).join(&digest);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            let mtime = 1_500_000_000 + n * 3600;
            insert
                .execute(rusqlite::params![
                    n,
                    digest,
                    name,
                    bytes.len() as i64,
                    width,
                    height,
                    mtime,
                    photosync_protocol::utc_time_text(mtime)
                ])
                .unwrap();
            blob.execute([&digest]).unwrap();
        }
        tx.execute("UPDATE users SET next_image = ?1 WHERE id = 1", [n])
            .unwrap();
    }
    tx.commit().unwrap();
    token
}

/// A 12 MP JPEG made from a real photo, with fine noise so it compresses as a camera's does.
fn camera_photo() -> Vec<u8> {
    let src = photosync_testkit::decode(
        &std::fs::read(photosync_testkit::photos_dir().join("wood.jpg")).unwrap(),
    );
    let mut img = image::imageops::resize(&src, 4000, 3000, image::imageops::FilterType::Triangle);
    let mut s = 1u32;
    for p in img.pixels_mut() {
        for c in &mut p.0 {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *c = c.saturating_add((s >> 28) as u8).saturating_sub(8);
        }
    }
    photosync_testkit::jpeg(&img, 88, false, None)
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// Every image of the account downloaded `concurrency` at a time into `to`, plainly.
async fn plain_download(url: &str, token: &str, to: &Path, concurrency: usize) -> u64 {
    std::fs::create_dir_all(to).unwrap();
    let client = Client::new(ServerConfig {
        url: url.to_owned(),
        token: token.to_owned(),
    })
    .unwrap();
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .list_images(&ImageFilter::default(), after, 1000)
            .await
            .unwrap();
        ids.extend(page.images.iter().map(|i| (i.id, i.name.clone())));
        match page.next {
            Some(n) => after = n,
            None => break,
        }
    }
    let http = reqwest::Client::new();
    let total: u64 = futures_util::stream::iter(ids)
        .map(|(id, name)| {
            let (http, to) = (http.clone(), to.to_path_buf());
            async move {
                let r = http
                    .get(format!("{url}/api/v1/images/{id}/content"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                let mut file = tokio::fs::File::create(to.join(name)).await.unwrap();
                let mut body = r.bytes_stream();
                let mut n = 0u64;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.unwrap();
                    n += chunk.len() as u64;
                    tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                        .await
                        .unwrap();
                }
                n
            }
        })
        .buffer_unordered(concurrency)
        .fold(0u64, |a, n| async move { a + n })
        .await;
    total
}

async fn restore_throughput(work: &Path, bin: &Path) {
    println!("\n## restore of 1,000 camera-sized photos, loopback, 4 at once");
    let photo = camera_photo();
    println!(
        "photo: 4000x3000 JPEG, {:.2} MB each (distinct bytes after its end marker)",
        photo.len() as f64 / 1e6
    );
    let dir = work.join("restore-data");
    let token = populated(
        &dir,
        bin,
        (0..1000u32).map(|i| {
            let mut bytes = photo.clone();
            bytes.extend_from_slice(&i.to_le_bytes());
            (format!("IMG_{i:04}.JPG"), bytes, 4000, 3000)
        }),
    );
    let server = ServerProcess::start(bin, &dir, &[]);
    let out = work.join("restore-out");
    println!("{:>34} {:>9} {:>10} {:>9}", "", "time", "MB/s", "files/s");
    for round in 1..=2 {
        let _ = std::fs::remove_dir_all(&out);
        let start = Instant::now();
        let bytes = plain_download(&server.url, &token, &out.join("plain"), 4).await;
        let t = start.elapsed();
        println!(
            "{:>34} {:>8.2}s {:>10.0} {:>9.0}",
            format!("plain parallel download (run {round})"),
            t.as_secs_f64(),
            mb_per_s(bytes, t),
            1000.0 / t.as_secs_f64()
        );

        let mut options = Options::new(
            ServerConfig {
                url: server.url.clone(),
                token: token.clone(),
            },
            out.join("state.db"),
        );
        options.concurrency = 4;
        let engine = Engine::new(options, Arc::new(|_| {})).unwrap();
        let mut restore = RestoreOptions::new(out.join("restored"));
        restore.concurrency = 4;
        let start = Instant::now();
        let summary = engine
            .restore(&restore, &Control::default(), &|_| {})
            .await
            .unwrap();
        let t = start.elapsed();
        assert_eq!(summary.written, 1000, "{summary:?}");
        println!(
            "{:>34} {:>8.2}s {:>10.0} {:>9.0}",
            format!("photosync restore (run {round})"),
            t.as_secs_f64(),
            mb_per_s(summary.bytes_written, t),
            1000.0 / t.as_secs_f64()
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn first_thumbnail_page(work: &Path, bin: &Path) {
    println!("\n## the server view's first screen, 10,000 server images");
    let photos = work.join("thumb-photos");
    let _ = std::fs::remove_dir_all(&photos);
    std::fs::create_dir_all(&photos).unwrap();
    photosync_testkit::distinct_photos(&photos, 10_000, 1024, 768);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&photos)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let dir = work.join("thumb-data");
    let token = populated(
        &dir,
        bin,
        names.iter().map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(p).unwrap(), 1024, 768)
        }),
    );
    let _ = std::fs::remove_dir_all(&photos);
    let server = ServerProcess::start(bin, &dir, &[]);
    let client = Client::new(ServerConfig {
        url: server.url.clone(),
        token,
    })
    .unwrap();
    for label in ["cold (thumbnails made)", "warm (thumbnails cached)"] {
        let start = Instant::now();
        let mut items = Vec::new();
        let mut after = 0;
        loop {
            let page = client
                .list_images(&ImageFilter::default(), after, 1000)
                .await
                .unwrap();
            items.extend(page.images);
            match page.next {
                Some(n) => after = n,
                None => break,
            }
        }
        let listed = start.elapsed();
        // The view shows the newest first.
        items.sort_by_key(|i| std::cmp::Reverse(i.mtime));
        let thumbs: Vec<usize> = futures_util::stream::iter(items.iter().take(60))
            .map(|i| {
                let client = client.clone();
                async move { client.thumbnail(i.id, 256).await.unwrap().len() }
            })
            .buffer_unordered(6)
            .collect()
            .await;
        let all = start.elapsed();
        println!(
            "{label:>26}: list of {} read in {:.0} ms; first 60 thumbnails ({} kB) by {:.0} ms",
            items.len(),
            listed.as_secs_f64() * 1000.0,
            thumbs.iter().sum::<usize>() / 1000,
            all.as_secs_f64() * 1000.0
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let target = photosync_bench::target_dir();
    let work = target.join("bench-restore");
    std::fs::create_dir_all(&work).unwrap();
    let bin = photosync_bench::release_binaries().join("photosync-server");
    println!(
        "# restore benchmark ({} cores, release build, loopback)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        restore_throughput(&work, &bin).await;
        first_thumbnail_page(&work, &bin).await;
    });
}
