//! Desktop app figures, printed: time from launch to the first window, memory empty and with
//! 10,000 images listed, UI frame time while 10,000 images are identified (beside the frame
//! time of the same window idle, measured first), and CPU and memory once synced, with the
//! window open and then closed to the tray.
//!
//! The real app (release build) under Xvfb through tauri-driver, against a server in this
//! process on loopback. `cargo bench -p photosync-desktop --bench desktop`

#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{connect, invoke, js, wait_js, xvfb, TestServer};
use serde_json::json;

const APP: &str = env!("CARGO_BIN_EXE_photosync-desktop");
const FILES: usize = 10_000;
/// The whole app (its process and WebKit's) with 10,000 files listed should stay under this.
const TARGET_MB: usize = 400;

/// The app and every process under it (WebKit's web and network processes).
fn tree(root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        out.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
        i += 1;
    }
    out
}

/// Proportional set size in MB: shared pages (WebKit's libraries) count once across the
/// processes, not once per process as RSS would.
fn pss_mb(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .sum::<f64>()
        / 1024.0
}

/// Where one process's memory is: PSS in MB by kind of mapping (anonymous, the libc heap,
/// shared memory, files), largest first.
fn pss_by_kind(pid: u32) -> Vec<(String, f64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut kinds: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    let mut kind = String::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: "start-end perms offset dev inode [path]".
            let path = line.split_whitespace().nth(5).unwrap_or("");
            kind = match path {
                "" => "anonymous".to_owned(),
                p if p.starts_with('[') => p.to_owned(),
                p if p.starts_with("/memfd:") || p.starts_with("/dev/shm") => {
                    "shared memory".to_owned()
                }
                p if p.starts_with("/dev/") => p.to_owned(),
                _ => "files".to_owned(),
            };
        } else if let Some(v) = line.strip_prefix("Pss:") {
            let kb = v
                .split_whitespace()
                .next()
                .and_then(|k| k.parse::<f64>().ok());
            *kinds.entry(kind.clone()).or_default() += kb.unwrap_or(0.0) / 1024.0;
        }
    }
    let mut out: Vec<(String, f64)> = kinds.into_iter().filter(|(_, mb)| *mb >= 1.0).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// One line per process: its PSS, and where it is.
fn memory_lines(root: u32) -> String {
    tree(root)
        .into_iter()
        .map(|p| {
            let kinds: Vec<String> = pss_by_kind(p)
                .iter()
                .map(|(k, mb)| format!("{k} {mb:.0}"))
                .collect();
            format!(
                "    {} {:.0} MB ({})",
                comm(p),
                pss_mb(&[p]),
                kinds.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// User + system CPU seconds used so far by `pids`.
fn cpu_secs(pid: u32) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0.0, |s| {
        let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / tick
    })
}

fn app_pid(app_dir: &std::path::Path) -> u32 {
    // The app is the process whose environment names our private app directory.
    let needle = format!("PHOTOSYNC_DESKTOP_DIR={}", app_dir.display());
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if !exe.ends_with("photosync-desktop") {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            return pid;
        }
    }
    panic!("app process not found");
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn frames(c: &fantoccini::Client) -> Vec<f64> {
    let v = js(
        c,
        "const f = window.__frames; window.__frames = []; return f;",
    )
    .await;
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect()
}

fn frame_line(label: &str, f: &[f64]) -> String {
    let slow = f.iter().filter(|d| **d > 50.0).count();
    format!(
        "{label:>34}: {} frames, median {:.1} ms, p95 {:.1} ms, max {:.0} ms, {slow} over 50 ms",
        f.len(),
        pct(f.to_vec(), 0.5),
        pct(f.to_vec(), 0.95),
        f.iter().copied().fold(0.0, f64::max)
    )
}

/// "On the server" over the `held` images just backed up (some of the 10,000 are the same
/// picture as another): the time to its first screen (every
/// tile in view drawn), then frame times and memory while the grid scrolls.
async fn server_view(c: &fantoccini::Client, pid: u32, held: usize) {
    js(c, "window.location.reload(); return true;").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let opened = Instant::now();
    js(
        c,
        "document.getElementById('show-server').click(); return true;",
    )
    .await;
    // Settled: every tile in view drawn (or showing its file type, for a picture the server
    // could not draw).
    let probe = "const g = document.getElementById('grid'); const r = g.getBoundingClientRect(); \
         const shown = [...g.querySelectorAll('.tile')].filter((t) => { const b = t.getBoundingClientRect(); return b.bottom > r.top && b.top < r.bottom; }); \
         return { count: document.getElementById('server-count').textContent, shown: shown.length, \
           drawn: shown.filter((t) => t.querySelector('canvas').dataset.drawn === 'yes').length, \
           none: shown.filter((t) => t.querySelector('.noimg')).length, tiles: g.querySelectorAll('.tile').length };";
    let mut last;
    let settled = loop {
        last = js(c, probe).await;
        let n = |k: &str| last[k].as_u64().unwrap_or(0);
        if last["count"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("{held} photos"))
            && n("shown") > 0
            && n("drawn") + n("none") >= n("shown")
        {
            break true;
        }
        if opened.elapsed() > Duration::from_secs(120) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if !settled {
        println!("\nserver view: not settled after 120 s: {last}");
        return;
    }
    let first = opened.elapsed();
    println!(
        "\nserver view, {held} server images: first screen ({} thumbnails drawn, {} without a picture) {:.2} s after the click",
        last["drawn"],
        last["none"],
        first.as_secs_f64()
    );
    js(
        c,
        "window.__frames = []; let last = performance.now();
         const tick = (t) => { window.__frames.push(t - last); last = t; requestAnimationFrame(tick); };
         requestAnimationFrame(tick);
         setInterval(() => { const g = document.getElementById('grid'); g.scrollTop = (g.scrollTop + 640) % Math.max(1, g.scrollHeight - g.clientHeight); }, 250);
         return true;",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let scrolled = frames(c).await;
    println!(
        "{}",
        frame_line("server view scrolled every 250 ms", &scrolled)
    );
    println!(
        "memory, server view after scrolling: {:.0} MB\n{}",
        pss_mb(&tree(pid)),
        memory_lines(pid)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let work = tempfile::tempdir().unwrap();
    let (server, token) = TestServer::start(&work.path().join("server")).await;
    let library = work.path().join("library");
    let made = Instant::now();
    photosync_testkit::distinct_photos(&library, FILES, 160, 120);
    println!("# photosync-desktop benchmark (release build, Xvfb, tauri-driver, 2 cores)");
    println!(
        "library: {FILES} JPEGs of 160×120 cropped from the real test photos (written in {:.0} s)\n",
        made.elapsed().as_secs_f64()
    );

    let (_x, display) = xvfb();
    let app_dir = work.path().join("app");
    let launched = Instant::now();
    let (_driver, c) = connect(APP, &display, &app_dir).await;
    wait_js(
        &c,
        "the first window",
        "document.getElementById('status-line').textContent !== 'Starting…'",
    )
    .await;
    let first_window = launched.elapsed();
    println!(
        "launch to first window (WebDriver session request to a rendered status line): {:.2} s",
        first_window.as_secs_f64()
    );
    let pid = app_pid(&app_dir);
    let empty_mb = pss_mb(&tree(pid));
    println!("memory, empty window: {empty_mb:.0} MB (PSS of the app and its WebKit processes)");
    println!("{}", memory_lines(pid));

    // Frame times: rAF intervals recorded in the page, idle first as the baseline.
    js(
        &c,
        "window.__frames = []; let last = performance.now();
         const tick = (t) => { window.__frames.push(t - last); last = t; requestAnimationFrame(tick); };
         requestAnimationFrame(tick);
         // Scroll the list now and then, as a person watching it would.
         setInterval(() => { const l = document.getElementById('list'); l.scrollTop = (l.scrollTop + 640) % Math.max(1, l.scrollHeight - l.clientHeight); }, 250);
         return true;",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_frames = frames(&c).await;

    let r = invoke(
        &c,
        "configure",
        json!({ "url": server.url(), "token": token }),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    // Connected without the first-run steps: they close.
    js(&c, "document.getElementById('setup').close(); return true;").await;
    let started = Instant::now();
    let r = invoke(&c, "add_folder", json!({ "path": library })).await;
    assert_eq!(r, serde_json::Value::Null, "{r}");
    let mut busy_frames = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        busy_frames.extend(frames(&c).await);
        let o = invoke(&c, "overview", json!({})).await;
        let by = &o["totals"]["by_status"];
        let waiting = by["found"].as_u64().unwrap_or(0) + by["identifying"].as_u64().unwrap_or(0);
        if o["totals"]["all"].as_u64() == Some(FILES as u64) && waiting == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "identification never ended: {o}"
        );
    }
    let identified = started.elapsed();
    println!(
        "\nUI frame time (requestAnimationFrame intervals; the list scrolled every 250 ms):\n{}\n{}",
        frame_line("idle, empty (baseline)", &idle_frames),
        frame_line(&format!("while {FILES} images are identified"), &busy_frames)
    );
    println!(
        "  ({FILES} files found and identified in {:.0} s)",
        identified.as_secs_f64()
    );

    wait_js(
        &c,
        "every file settled",
        "document.getElementById('status-line').textContent.startsWith('Up to date')",
    )
    .await;
    let synced = started.elapsed();
    let listed_mb = pss_mb(&tree(pid));
    let o = invoke(&c, "overview", json!({})).await;
    println!(
        "\nfirst sync of {FILES} files: {:.0} s ({} backed up); server holds {}",
        synced.as_secs_f64(),
        o["totals"]["by_status"]["backed_up"],
        server.images().await
    );
    println!(
        "memory with {FILES} images listed: {listed_mb:.0} MB (empty: {empty_mb:.0} MB; target: under {TARGET_MB} MB)"
    );
    println!("{}", memory_lines(pid));

    server_view(&c, pid, server.images().await).await;

    // Idle once synced: window open, then closed to the tray.
    tokio::time::sleep(Duration::from_secs(3)).await;
    js(&c, "window.location.reload(); return true;").await; // drop the bench's own rAF/scroll loops
    tokio::time::sleep(Duration::from_secs(15)).await;
    println!("  after reloading the window:\n{}", memory_lines(pid));
    for label in ["synced, window open", "synced, window hidden to the tray"] {
        if label.contains("tray") {
            js(&c, "document.getElementById('hide').click(); return true;").await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let pids = tree(pid);
        let before: Vec<f64> = pids.iter().map(|p| cpu_secs(*p)).collect();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(20)).await;
        let secs = t0.elapsed().as_secs_f64();
        let per: Vec<String> = pids
            .iter()
            .zip(&before)
            .map(|(p, b)| format!("{} {:.2} %", comm(*p), 100.0 * (cpu_secs(*p) - b) / secs))
            .collect();
        let total: f64 = pids
            .iter()
            .zip(&before)
            .map(|(p, b)| cpu_secs(*p) - b)
            .sum();
        println!(
            "idle, {label}: CPU {:.2} % of one core over {secs:.0} s ({}); memory {:.0} MB",
            100.0 * total / secs,
            per.join(", "),
            pss_mb(&tree(pid))
        );
    }
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    println!("app still running after the window was hidden: {alive}");
}
