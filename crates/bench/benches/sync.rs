//! Sync engine benchmark: prints figures, each beside a baseline from the same run.
//!
//! `cargo bench -p photosync-bench --bench sync`
//!
//! 1. Rescan: an unchanged tree of 100,000 files, already in the sync list, synced again.
//!    Baseline: walking the tree and stat-ing every file, nothing else.
//! 2. End to end: a first sync of 1,000 distinct camera-sized JPEGs (3000×2250, cropped from a
//!    real photo) to the release server on loopback, with the time per stage.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use photosync_engine::{Engine, Options, ServerConfig, State};
use photosync_testkit::{add_user, ServerProcess};

fn mtime_ns(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// 100 folders of 1,000 small files, and a state that knows them all as synced.
fn rescan_tree(work: &Path, server: &ServerConfig) -> (PathBuf, PathBuf) {
    let root = work.join("tree-100k");
    let state_path = work.join("tree-100k-state.db");
    if !state_path.exists() {
        let _ = std::fs::remove_dir_all(&root);
        let state = State::open(&state_path).unwrap();
        for d in 0..100 {
            let dir = root.join(format!("{d:03}"));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..1000 {
                let p = dir.join(format!("IMG_{f:04}.jpg"));
                let content = format!("{d}/{f}");
                std::fs::write(&p, &content).unwrap();
                let meta = std::fs::metadata(&p).unwrap();
                let digest = blake3::hash(content.as_bytes()).to_hex().to_string();
                state
                    .put_file(
                        &p,
                        &photosync_engine::state::FileRecord {
                            size: meta.len(),
                            mtime_ns: mtime_ns(&meta),
                            digest: digest.clone(),
                            identifier: None,
                            pixels: None,
                        },
                    )
                    .unwrap();
                state
                    .mark_synced(
                        &server.key(),
                        &photosync_engine::state::SyncedRecord {
                            digest,
                            identifier: None,
                            remote_id: 1,
                            how: "uploaded".into(),
                            at: 0,
                        },
                    )
                    .unwrap();
            }
        }
    }
    (root, state_path)
}

fn engine(server: ServerConfig, state: PathBuf) -> Engine {
    Engine::new(Options::new(server, state), Arc::new(|_| {})).unwrap()
}

async fn rescan(work: &Path) {
    println!("\n## rescan of an unchanged tree");
    // Nothing is asked of the server when everything is in the sync list; none listens here.
    let server = ServerConfig {
        url: "http://127.0.0.1:9".into(),
        token: "psk_none".into(),
    };
    let (root, state) = rescan_tree(work, &server);
    let start = Instant::now();
    let mut n = 0u64;
    for e in walkdir_all(&root) {
        std::hint::black_box(std::fs::metadata(&e).unwrap().len());
        n += 1;
    }
    let walk = n as f64 / start.elapsed().as_secs_f64();
    let engine = engine(server, state);
    let mut rates = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let s = engine.sync(std::slice::from_ref(&root)).await;
        assert_eq!(
            s.already_synced,
            100_000,
            "{:?}",
            (s.uploaded, s.failed.first())
        );
        rates.push(100_000.0 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!("walk + stat only (baseline): {walk:.0} files/s");
    println!(
        "photosync sync, nothing changed: {:.0} files/s (median of 3)",
        rates[1]
    );
}

fn walkdir_all(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// 1,000 distinct 3000×2250 JPEGs: crops of a real photo 80 px apart, in four orientations.
fn photos_1000(work: &Path) -> PathBuf {
    let dir = work.join("photos-1000");
    if std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) == 1000 {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let deb = photosync_bench::target_dir()
        .join("bench-identify/deb/usr/share/backgrounds/mate/abstract/Elephants_5640x3172.jpg");
    let system = Path::new("/usr/share/backgrounds/mate/abstract/Elephants_5640x3172.jpg");
    let source = if system.exists() {
        system.to_path_buf()
    } else {
        deb
    };
    assert!(
        source.exists(),
        "run `cargo bench -p photosync-bench --bench identify` first: it fetches the source photo"
    );
    let src = image::open(&source).unwrap().into_rgb8();
    let (w, h) = (3000u32, 2250u32);
    let mut jobs = Vec::new();
    'outer: for y in (0..src.height() - h).step_by(80) {
        for x in (0..src.width() - w).step_by(80) {
            for orient in 0..4 {
                jobs.push((x, y, orient));
                if jobs.len() == 1000 {
                    break 'outer;
                }
            }
        }
    }
    std::thread::scope(|s| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for chunk in jobs.chunks(jobs.len().div_ceil(cores)) {
            let (src, dir) = (&src, &dir);
            s.spawn(move || {
                for &(x, y, orient) in chunk {
                    let crop = image::imageops::crop_imm(src, x, y, w, h).to_image();
                    let img = match orient {
                        0 => crop,
                        1 => image::imageops::flip_horizontal(&crop),
                        2 => image::imageops::flip_vertical(&crop),
                        _ => image::imageops::rotate180(&crop),
                    };
                    let name = format!("P{x:04}_{y:04}_{orient}.jpg");
                    std::fs::write(
                        dir.join(name),
                        photosync_testkit::jpeg(&img, 90, false, None),
                    )
                    .unwrap();
                }
            });
        }
    });
    dir
}

async fn end_to_end(work: &Path, bin: &Path) {
    let photos = photos_1000(work);
    let bytes: u64 = std::fs::read_dir(&photos)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let data = work.join("e2e-server");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let token = add_user(bin, &data, "bench");
    let server = ServerProcess::start(bin, &data, &[]);
    let state = work.join("e2e-state.db");
    let _ = std::fs::remove_file(&state);
    let engine = engine(
        ServerConfig {
            url: server.url.clone(),
            token,
        },
        state,
    );
    let start = Instant::now();
    let s = engine.sync(std::slice::from_ref(&photos)).await;
    let took = start.elapsed().as_secs_f64();
    println!(
        "\n## end to end: first sync of 1,000 photos ({:.0} MB) to a loopback server",
        bytes as f64 / 1e6
    );
    println!(
        "uploaded {}, on server {}, failed {}: {:.1} images/s, {:.0} MB/s, {took:.1} s",
        s.uploaded,
        s.on_server,
        s.failed.len(),
        1000.0 / took,
        bytes as f64 / 1e6 / took
    );
    println!(
        "stages: identify {:.1} s, detect {:.2} s, upload {:.1} s",
        s.identify_time.as_secs_f64(),
        s.detect_time.as_secs_f64(),
        s.upload_time.as_secs_f64()
    );
    println!("server peak RSS {} MB", server.status_kb("VmHWM") / 1024);
}

fn main() {
    let work = photosync_bench::target_dir().join("bench-sync");
    std::fs::create_dir_all(&work).unwrap();
    let bin = photosync_bench::release_binaries().join("photosync-server");
    println!(
        "# photosync sync benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        rescan(&work).await;
        end_to_end(&work, &bin).await;
    });
}
