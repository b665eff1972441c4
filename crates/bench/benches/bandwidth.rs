//! The upload bandwidth limit: what `photosync sync --bandwidth-limit` really puts on the wire.
//!
//! `cargo bench -p photosync-bench --bench bandwidth`
//!
//! The release `photosync` syncs a fresh folder to the release `photosync-server` on loopback
//! through a counting proxy (`photosync_testkit::CountingProxy`), which timestamps every chunk
//! the client sends. For each limit (250 kB/s, 1 MB/s, 4 MB/s) and concurrency (1, 4) the
//! folder holds limit × 6 bytes of random data in files of about 500 kB (at least 8 files, so
//! four uploads run at once even at the lowest limit), so a run at the limit takes about 6 s. One line per run: the average rate at the proxy (first byte to last), the
//! largest 1 s and 5 s windows as rates, each as a ratio to the limit, and the wall time of the
//! process. (A run shorter than 5 s has its whole transfer in one 5 s window, divided by 5.)
//!
//! Baseline: the largest transfer with no limit, to show the link is far faster than the
//! limits, so what the runs show is the limit and nothing else.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use photosync_testkit::{add_user, CountingProxy, ServerProcess};

const LIMITS: [u64; 3] = [250_000, 1_000_000, 4_000_000];
const CONCURRENCY: [usize; 2] = [1, 4];
/// Seconds of data at the limit.
const SECONDS: u64 = 6;
const FILE_SIZE: u64 = 500_000;
/// Twice the highest concurrency, so every upload slot has work to the end.
const MIN_FILES: u64 = 8;

struct Setup {
    work: PathBuf,
    client: PathBuf,
    server_url: String,
    token: String,
}

/// A fresh folder of `bytes` random bytes in files of about [`FILE_SIZE`] (at least
/// [`MIN_FILES`] files); returns it and the number of files.
fn folder(work: &Path, run: u64, bytes: u64) -> (PathBuf, u64) {
    let dir = work.join(format!("run-{run}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let n = bytes.div_ceil(FILE_SIZE).max(MIN_FILES);
    for i in 0..n {
        let len = (bytes / n) as usize;
        let content = photosync_testkit::noise(len, run * 10_000 + i + 1);
        std::fs::write(dir.join(format!("clip-{i:03}.bin")), content).unwrap();
    }
    (dir, n)
}

fn rate(bytes_per_s: f64) -> String {
    if bytes_per_s >= 1e6 {
        format!("{:.2} MB/s", bytes_per_s / 1e6)
    } else {
        format!("{:.0} kB/s", bytes_per_s / 1e3)
    }
}

/// Syncs a fresh folder of `bytes` through a new proxy and prints one line; `reference` is
/// the rate the ratios are to (the limit, or for the baseline the highest limit).
fn run(setup: &Setup, id: u64, limit: Option<u64>, concurrency: usize, bytes: u64, reference: u64) {
    let (dir, files) = folder(&setup.work, id, bytes);
    let proxy = CountingProxy::for_url(&setup.server_url);
    let state = setup.work.join(format!("run-{id}-state.db"));
    let _ = std::fs::remove_file(&state);
    let mut cmd = Command::new(&setup.client);
    cmd.args(["sync", "--concurrency", &concurrency.to_string()]);
    if let Some(limit) = limit {
        cmd.args(["--bandwidth-limit", &limit.to_string()]);
    }
    cmd.arg(&dir)
        .env("PHOTOSYNC_SERVER", proxy.url())
        .env("PHOTOSYNC_TOKEN", &setup.token)
        .env("PHOTOSYNC_STATE", &state)
        .env("PHOTOSYNC_CONFIG", state.with_extension("toml"))
        // Nothing from the environment may take this traffic off loopback.
        .env("NO_PROXY", "127.0.0.1")
        .env("RUST_LOG", "warn");
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let wall = start.elapsed().as_secs_f64();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && summary.starts_with(&format!("uploaded {files},")),
        "{out:?}"
    );
    let avg = proxy.average_rate();
    let w1 = proxy.max_window(Duration::from_secs(1)) as f64;
    let w5 = proxy.max_window(Duration::from_secs(5)) as f64 / 5.0;
    let r = reference as f64;
    let name = match limit {
        Some(l) => format!("limit {:>9}", rate(l as f64)),
        None => "no limit (baseline)".to_owned(),
    };
    println!(
        "{name:<19}  concurrency {concurrency}  {:>5.1} MB in {files:>2} files: average {:>11} \
         ({:>5.2}×), max 1 s {:>11} ({:>5.2}×), max 5 s {:>11} ({:>5.2}×), wall {wall:>5.1} s",
        proxy.total_upstream_bytes() as f64 / 1e6,
        rate(avg),
        avg / r,
        rate(w1),
        w1 / r,
        rate(w5),
        w5 / r,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let work = photosync_bench::target_dir().join("bench-bandwidth");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let bins = photosync_bench::release_binaries();
    let server_bin = bins.join("photosync-server");
    let data = work.join("server");
    std::fs::create_dir_all(&data).unwrap();
    let token = add_user(&server_bin, &data, "bench");
    let server = ServerProcess::start(&server_bin, &data, &[]);
    let setup = Setup {
        work: work.clone(),
        client: bins.join("photosync"),
        server_url: server.url.clone(),
        token,
    };
    println!(
        "# photosync upload bandwidth limit, through a counting proxy on loopback ({} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "# {SECONDS} s of data at each limit in files of about {} kB (at least {MIN_FILES}); \
         ratios are to the limit",
        FILE_SIZE / 1000
    );
    let top = LIMITS[LIMITS.len() - 1];
    let mut id = 0;
    for concurrency in CONCURRENCY {
        id += 1;
        run(&setup, id, None, concurrency, top * SECONDS, top);
    }
    println!(
        "# (baseline ratios are to the highest limit, {})",
        rate(top as f64)
    );
    for limit in LIMITS {
        for concurrency in CONCURRENCY {
            id += 1;
            run(&setup, id, Some(limit), concurrency, limit * SECONDS, limit);
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
}
