//! Sync engine benchmark: prints figures, each beside a baseline from the same run.
//!
//! `cargo bench -p photosync-bench --bench sync`
//!
//! 1. Rescan: an unchanged tree of 100,000 files, already in the sync list, synced again.
//!    Baseline: walking the tree and stat-ing every file, nothing else. Then the peak memory
//!    of the release `photosync sync` doing the same rescan.
//! 2. End to end: a first sync of 1,000 distinct camera-sized JPEGs (3000×2250, cropped from a
//!    real photo) to the release server on loopback. Printed: the wall time beside the time
//!    each stage was busy (the baseline: the stages' sum, what a pipeline of barriers takes),
//!    and the time to the first upload, the first part stored and the first image recorded.
//! 3. The same first sync of 20,000 small photos (the first-upload figures should not grow
//!    with the library), and the peak memory of `photosync sync` doing it.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use photosync_engine::{Engine, Event, Options, ServerConfig, State, Summary};
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
                let digest = photosync_identify::Digest::of(content.as_bytes());
                state
                    .put_file(
                        &p,
                        &photosync_engine::state::FileRecord {
                            size: meta.len(),
                            mtime_ns: mtime_ns(&meta),
                            digest,
                            identifier: None,
                            pixels: None,
                            evidence: None,
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
                            how: photosync_engine::state::How::Uploaded,
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

/// The same rescan by the release CLI (which asks the server it is pointed at first), for its
/// peak memory.
fn rescan_memory(work: &Path, bin: &Path) {
    let (_server, config) = fresh_server(work, bin, "rescan-server");
    let (root, state) = rescan_tree(work, &config);
    // The tree's sync list was written for another address: moved to this server's.
    let cli_state = work.join("tree-100k-cli.db");
    std::fs::copy(&state, &cli_state).unwrap();
    rusqlite::Connection::open(&cli_state)
        .unwrap()
        .execute("UPDATE synced SET server = ?1", [config.key()])
        .unwrap();
    let run = cli_sync(bin, &root, &config, &cli_state);
    println!(
        "photosync sync (release CLI), 100,000 unchanged files: peak RSS {:.0} MB ({})",
        run.peak_mb, run.first_line
    );
}

/// A new release server with one user, its data in `work/NAME`, and how to reach it. It is
/// killed when the `ServerProcess` is dropped.
fn fresh_server(work: &Path, bin: &Path, name: &str) -> (ServerProcess, ServerConfig) {
    let data = work.join(name);
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let token = add_user(&bin.join("photosync-server"), &data, "bench");
    let server = ServerProcess::start(&bin.join("photosync-server"), &data, &[]);
    let config = ServerConfig {
        url: server.url.clone(),
        token,
    };
    (server, config)
}

/// The path of a local state in `work` that holds nothing yet.
fn fresh_state(work: &Path, name: &str) -> PathBuf {
    let state = work.join(name);
    let _ = std::fs::remove_file(&state);
    state
}

struct CliRun {
    first_line: String,
    peak_mb: f64,
}

/// Runs `photosync sync DIR` to its end, reading its peak RSS (`VmHWM`) as it goes. (The
/// kernel's `ru_maxrss` of a child would include this benchmark's own memory from before the
/// child's exec.)
fn cli_sync(bin: &Path, dir: &Path, server: &ServerConfig, state: &Path) -> CliRun {
    use std::io::Read;
    let mut child = std::process::Command::new(bin.join("photosync"))
        .args(["sync", dir.to_str().unwrap()])
        .env("PHOTOSYNC_SERVER", &server.url)
        .env("PHOTOSYNC_TOKEN", &server.token)
        .env("PHOTOSYNC_STATE", state)
        .env("PHOTOSYNC_CONFIG", state.with_extension("toml"))
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let peak_kb = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let peak_kb = peak_kb.clone();
        std::thread::spawn(move || {
            while let Ok(text) = std::fs::read_to_string(&status) {
                if let Some(kb) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                {
                    peak_kb.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child.wait().unwrap();
    watcher.join().unwrap();
    CliRun {
        first_line: stdout.lines().next().unwrap_or_default().to_owned(),
        peak_mb: peak_kb.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0,
    }
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
    let source = photosync_bench::source_photo();
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

/// When the first upload's first part was stored, and the first image recorded, as the
/// engine's events tell it (each follows the server's response).
#[derive(Default)]
struct Firsts {
    part_stored: Option<Instant>,
    image_recorded: Option<Instant>,
}

/// A first sync of `photos` to a new server, timed.
async fn first_sync(work: &Path, bin: &Path, photos: &Path, label: &str) {
    let (files, bytes) = std::fs::read_dir(photos)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .fold((0usize, 0u64), |(n, b), l| (n + 1, b + l));
    let (server, config) = fresh_server(work, bin, &format!("{label}-server"));
    let state = fresh_state(work, &format!("{label}-state.db"));
    let firsts = Arc::new(std::sync::Mutex::new(Firsts::default()));
    let sink = {
        let firsts = firsts.clone();
        Arc::new(move |e: Event| {
            let mut f = firsts.lock().unwrap();
            match e {
                Event::Uploading { .. } => {
                    f.part_stored.get_or_insert_with(Instant::now);
                }
                Event::Uploaded { .. } => {
                    f.image_recorded.get_or_insert_with(Instant::now);
                }
                _ => {}
            }
        })
    };
    let engine = Engine::new(Options::new(config, state.clone()), sink).unwrap();
    let state_path = state;
    let start = Instant::now();
    let s = engine
        .sync(std::slice::from_ref(&photos.to_path_buf()))
        .await;
    let took = start.elapsed().as_secs_f64();
    println!(
        "\n## end to end: first sync of {files} photos ({:.0} MB) to a loopback server",
        bytes as f64 / 1e6
    );
    println!(
        "uploaded {}, on server {}, failed {}: {:.1} images/s, {:.0} MB/s, wall {took:.1} s",
        s.uploaded,
        s.on_server,
        s.failed.len(),
        files as f64 / took,
        bytes as f64 / 1e6 / took
    );
    print_stages(&s, took);
    let f = std::mem::take(&mut *firsts.lock().unwrap());
    let since = |t: Option<Instant>| {
        t.map_or_else(
            || "never".into(),
            |t| format!("{:.2} s", (t - start).as_secs_f64()),
        )
    };
    println!(
        "from start: first upload started {}, first part stored on the server {}, first image \
         recorded by the server {}",
        s.stages
            .first_upload
            .map_or_else(|| "never".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        since(f.part_stored),
        since(f.image_recorded)
    );
    println!("server peak RSS {} MB", server.status_kb("VmHWM") / 1024);
    drop(server);
    // Closing the engine's database folds its write-ahead log in, so the file can be copied.
    drop(engine);
    one_stage_after_another(work, bin, photos, label, &state_path, took).await;
}

/// The baseline, measured in the same run: the stages one after another, as a pipeline of
/// barriers runs them. Identification alone (the engine's pool size, every file read once),
/// then the same library uploaded alone to a new server (every identity known from the file
/// table, so nothing is read but to send it).
async fn one_stage_after_another(
    work: &Path,
    bin: &Path,
    photos: &Path,
    label: &str,
    pipelined_state: &Path,
    pipelined_wall: f64,
) {
    let files: Vec<PathBuf> = std::fs::read_dir(photos)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Instant::now();
    let identified =
        photosync_identify::identify_all(&files, &photosync_identify::Limits::default(), threads);
    let identify_only = start.elapsed().as_secs_f64();
    assert!(identified.iter().all(Result::is_ok));

    let (_server, config) = fresh_server(work, bin, &format!("{label}-server-2"));
    let state = fresh_state(work, &format!("{label}-state-2.db"));
    std::fs::copy(pipelined_state, &state).unwrap();
    let engine = Engine::new(Options::new(config, state), Arc::new(|_| {})).unwrap();
    let start = Instant::now();
    let s = engine
        .sync(std::slice::from_ref(&photos.to_path_buf()))
        .await;
    let upload_only = start.elapsed().as_secs_f64();
    assert_eq!(
        s.stages.identify,
        std::time::Duration::ZERO,
        "nothing read again"
    );
    println!(
        "baseline, one stage after another in this run: identify only {identify_only:.1} s + \
         upload only {upload_only:.1} s (uploaded {}) = {:.1} s; the pipeline took {pipelined_wall:.1} s",
        s.uploaded,
        identify_only + upload_only
    );
}

fn print_stages(s: &Summary, wall: f64) {
    let st = &s.stages;
    let busy = [
        ("walk", st.walk),
        ("identify", st.identify),
        ("detect", st.detect),
        ("upload", st.upload),
    ];
    let sum: f64 = busy.iter().map(|(_, d)| d.as_secs_f64()).sum();
    let (name, busiest) = busy
        .iter()
        .map(|(n, d)| (*n, d.as_secs_f64()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    println!(
        "stages busy: {}",
        busy.iter()
            .map(|(n, d)| format!("{n} {:.1} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "wall {wall:.1} s against the busiest stage ({name}) {busiest:.1} s: {:+.0} %; the busy \
         times add up to {sum:.1} s (the walk's includes waiting for the stages after it)",
        100.0 * (wall / busiest - 1.0)
    );
}

/// The first sync of a library of 20,000 small photos by the release CLI, for its memory.
fn first_sync_memory(work: &Path, bin: &Path, photos: &Path) {
    let (_server, config) = fresh_server(work, bin, "small-cli-server");
    let state = fresh_state(work, "small-cli-state.db");
    let run = cli_sync(bin, photos, &config, &state);
    println!(
        "photosync sync (release CLI), first sync of 20,000 small photos: peak RSS {:.0} MB ({})",
        run.peak_mb, run.first_line
    );
}

/// 20,000 distinct small photos (480×320).
fn photos_20000(work: &Path) -> PathBuf {
    let dir = work.join("photos-20000");
    if std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) != 20_000 {
        let _ = std::fs::remove_dir_all(&dir);
        photosync_testkit::distinct_photos(&dir, 20_000, 480, 320);
    }
    dir
}

fn main() {
    let work = photosync_bench::target_dir().join("bench-sync");
    std::fs::create_dir_all(&work).unwrap();
    let bin = photosync_bench::release_binaries();
    println!(
        "# photosync sync benchmark ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        rescan(&work).await;
        rescan_memory(&work, &bin);
        first_sync(&work, &bin, &photos_1000(&work), "photos-1000").await;
        let small = photos_20000(&work);
        first_sync(&work, &bin, &small, "photos-20000").await;
        first_sync_memory(&work, &bin, &small);
    });
}
