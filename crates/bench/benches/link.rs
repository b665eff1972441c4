//! Upload sizing on a shaped link: the adaptive part sizer against fixed part sizes.
//!
//! `cargo bench -p photosync-bench --bench link` (needs root and iproute2)
//!
//! The benchmark makes a network namespace holding the release `photosync-server`, joins it to
//! this one with a veth pair, and limits the upload direction with `tc qdisc tbf`, changing the
//! rate mid-transfer where a run asks for it. Everything is torn down at the end. There is no
//! added latency (netem is not in this kernel), so per-part overhead is the server's commit time.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use photosync_engine::{Engine, Event, Options, ServerConfig};
use photosync_part_sizer::SizerConfig;

const NS: &str = "psbench";
const HOST_IF: &str = "psb-h";
const NS_IF: &str = "psb-s";
const HOST_IP: &str = "10.231.7.1";
const NS_IP: &str = "10.231.7.2";

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success())
}

struct Link;

impl Link {
    fn up() -> Option<Link> {
        let _ = sh(&["ip", "netns", "del", NS]);
        let _ = sh(&["ip", "link", "del", HOST_IF]);
        let ok = sh(&["ip", "netns", "add", NS])
            && sh(&[
                "ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF,
            ])
            && sh(&["ip", "link", "set", NS_IF, "netns", NS])
            && sh(&[
                "ip",
                "addr",
                "add",
                &format!("{HOST_IP}/30"),
                "dev",
                HOST_IF,
            ])
            && sh(&["ip", "link", "set", HOST_IF, "up"])
            && sh(&[
                "ip",
                "netns",
                "exec",
                NS,
                "ip",
                "addr",
                "add",
                &format!("{NS_IP}/30"),
                "dev",
                NS_IF,
            ])
            && sh(&["ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up"])
            && sh(&["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"])
            && sh(&["sysctl", "-q", "-w", "net.ipv4.tcp_congestion_control=bbr"]);
        ok.then_some(Link)
    }

    fn rate(mbit: u32) {
        let rate = format!("{mbit}mbit");
        // A burst of a few ms at the rate; enough queue for the link's bandwidth-delay product.
        let ok = sh(&[
            "tc", "qdisc", "replace", "dev", HOST_IF, "root", "tbf", "rate", &rate, "burst",
            "64kb", "latency", "200ms",
        ]);
        assert!(ok, "tc failed");
    }

    fn cut(down: bool) {
        sh(&[
            "ip",
            "link",
            "set",
            HOST_IF,
            if down { "down" } else { "up" },
        ]);
    }

    fn tx_bytes() -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{HOST_IF}/statistics/tx_bytes"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", HOST_IF]);
        let _ = sh(&["ip", "netns", "del", NS]);
    }
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn random_file(dir: &Path, name: &str, bytes: usize, seed: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, photosync_testkit::noise(bytes, seed)).unwrap();
    p
}

/// One upload; returns (seconds, per-part durations, per-part start in seconds from `start`).
async fn upload(
    file: &Path,
    token: &str,
    sizer: SizerConfig,
    state: &Path,
    during: impl FnOnce(Instant) + Send + 'static,
) -> (f64, Vec<f64>, Vec<f64>) {
    let _ = std::fs::remove_file(state);
    let parts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let sink = parts.clone();
    let mut options = Options::new(
        ServerConfig {
            url: format!("http://{NS_IP}:8080"),
            token: token.to_owned(),
        },
        state.to_path_buf(),
    );
    options.sizer = sizer;
    options.concurrency = 1;
    let engine = Engine::new(
        options,
        Arc::new(move |e| {
            if matches!(e, Event::Uploading { .. } | Event::Queued { .. }) {
                sink.lock().unwrap().push(Instant::now());
            }
        }),
    )
    .unwrap();
    let start = Instant::now();
    let driver = std::thread::spawn(move || during(start));
    let s = engine.sync(&[file.to_path_buf()]).await;
    let took = start.elapsed().as_secs_f64();
    driver.join().unwrap();
    assert_eq!(s.uploaded, 1, "{s:?}");
    let stamps = parts.lock().unwrap().clone();
    let durations = stamps
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let starts = stamps
        .iter()
        .rev()
        .skip(1)
        .rev()
        .map(|t| (*t - start).as_secs_f64())
        .collect();
    (took, durations, starts)
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn fixed(size: u64) -> SizerConfig {
    SizerConfig {
        min: size,
        max: size,
        initial: size,
        ..SizerConfig::default()
    }
}

fn main() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root {
        println!("skipped: the shaped-link benchmark needs root (network namespaces, tc)");
        return;
    }
    let bin = photosync_bench::release_binaries().join("photosync-server");
    let work = photosync_bench::target_dir().join("bench-link");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let Some(_link) = Link::up() else {
        println!("skipped: could not create the network namespace and veth pair");
        return;
    };
    let token = photosync_testkit::add_user(&bin, &work.join("server"), "bench");
    let _server = Server(
        Command::new("ip")
            .args(["netns", "exec", NS])
            .arg(&bin)
            .arg("--data-dir")
            .arg(work.join("server"))
            .args(["serve", "--listen", &format!("{NS_IP}:8080")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target_s = SizerConfig::default().target.as_secs_f64();
    println!("# shaped link: tbf on a veth pair into a namespace, bbr, no added latency");
    println!("part target {target_s:.0} s; goodput = file bytes / upload time / link rate\n");
    println!(
        "{:>8} {:>10} {:>9} {:>7} {:>10} {:>10}",
        "Mbit/s", "parts", "goodput", "parts#", "median s", "p90 s"
    );
    let mut seed = 1;
    let only_step = std::env::var_os("PHOTOSYNC_BENCH_STEP_ONLY").is_some();
    // Each case runs `reps` times, the cases taking turns, so slow drifts of the machine hit
    // them alike; the table shows the median run and the goodput range.
    let reps: usize = std::env::var("PHOTOSYNC_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // PHOTOSYNC_BENCH_RATES=50 runs only the 50 Mbit/s steady cases (a comma list).
    let rates: Vec<u32> = std::env::var("PHOTOSYNC_BENCH_RATES")
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|_| vec![2, 8, 50]);
    let steady_only = std::env::var_os("PHOTOSYNC_BENCH_STEADY_ONLY").is_some();
    for mbit in if only_step { vec![] } else { rates } {
        Link::rate(mbit);
        let bytes = (f64::from(mbit) * 1e6 / 8.0 * 20.0) as usize; // about 20 s of link time
        let cases = [
            ("adaptive", SizerConfig::default()),
            ("256KiB", fixed(256 << 10)),
            ("5MiB", fixed(5 << 20)),
            ("50MiB", fixed(50 << 20)),
        ];
        let mut runs: Vec<Vec<(f64, Vec<f64>)>> = vec![Vec::new(); cases.len()];
        for _ in 0..reps.max(1) {
            for (i, (_, sizer)) in cases.iter().enumerate() {
                seed += 1;
                let file = random_file(&work, &format!("f{seed}.bin"), bytes, seed);
                let (took, parts, _) = rt.block_on(upload(
                    &file,
                    &token,
                    *sizer,
                    &work.join("state.db"),
                    |_| {},
                ));
                let _ = std::fs::remove_file(&file);
                runs[i].push((bytes as f64 * 8.0 / took / (f64::from(mbit) * 1e6), parts));
            }
        }
        for ((label, _), mut r) in cases.iter().zip(runs) {
            r.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (lo, hi) = (r[0].0, r[r.len() - 1].0);
            let (goodput, parts) = r.swap_remove(r.len() / 2);
            println!(
                "{mbit:>8} {label:>10} {:>8.1}% {:>7} {:>10.2} {:>10.2}   ({:.1}–{:.1} % over {} runs)",
                goodput * 100.0,
                parts.len(),
                pct(parts.clone(), 0.5),
                pct(parts, 0.9),
                lo * 100.0,
                hi * 100.0,
                reps.max(1)
            );
        }
    }

    if steady_only {
        return;
    }
    // Step: 20 -> 2 -> 20 Mbit/s during one upload.
    Link::rate(20);
    seed += 1;
    let file = random_file(&work, "step.bin", 90 << 20, seed);
    let marks: Arc<Mutex<Vec<f64>>> = Arc::default();
    let m = marks.clone();
    let (took, parts, starts) = rt.block_on(upload(
        &file,
        &token,
        SizerConfig::default(),
        &work.join("state.db"),
        move |start| {
            std::thread::sleep(Duration::from_secs(8));
            Link::rate(2);
            m.lock().unwrap().push(start.elapsed().as_secs_f64());
            std::thread::sleep(Duration::from_secs(30));
            Link::rate(20);
            m.lock().unwrap().push(start.elapsed().as_secs_f64());
        },
    ));
    let within = |d: f64| (d - target_s).abs() <= 0.25 * target_s;
    // Parts started after each step (as the clock saw it) until one is back within ±25 % of
    // the target; the part in flight at the step is not counted. Each window ends at the next
    // step.
    let marks = marks.lock().unwrap().clone();
    let steps = [(marks[0], marks[1]), (marks[1], f64::MAX)];
    let recover: Vec<String> = steps
        .iter()
        .map(|&(at, until)| {
            let after: Vec<f64> = starts
                .iter()
                .zip(&parts)
                .filter(|(s, _)| **s >= at && **s < until)
                .map(|(_, d)| *d)
                .collect();
            after
                .iter()
                .position(|d| within(*d))
                .map_or("never".into(), |n| (n + 1).to_string())
        })
        .collect();
    let listed: Vec<String> = starts
        .iter()
        .zip(&parts)
        .map(|(s, d)| format!("{s:.1}+{d:.1}"))
        .collect();
    println!("\nstep parts (start+duration s): {}", listed.join(" "));
    println!(
        "step 20 -> 2 (at {:.1} s) -> 20 (at {:.1} s) Mbit/s, 90 MiB: {took:.1} s, {} parts, median part {:.2} s; parts to return within ±25 % of target: {} after the drop, {} after the rise",
        marks[0],
        marks[1],
        parts.len(),
        pct(parts.clone(), 0.5),
        recover[0],
        recover[1]
    );

    // Cut: the link goes down for 2 s every 20 s.
    Link::rate(8);
    seed += 1;
    let size = 40 << 20;
    let file = random_file(&work, "cut.bin", size, seed);
    let tx0 = Link::tx_bytes();
    let (took, parts, _) = rt.block_on(upload(
        &file,
        &token,
        SizerConfig::default(),
        &work.join("state.db"),
        |_| {
            for _ in 0..2 {
                std::thread::sleep(Duration::from_secs(18));
                Link::cut(true);
                std::thread::sleep(Duration::from_secs(2));
                Link::cut(false);
            }
        },
    ));
    let sent = Link::tx_bytes() - tx0;
    let overhead = sent.saturating_sub(size as u64);
    println!(
        "cut 2 s every 20 s at 8 Mbit/s, 40 MiB: {took:.1} s, {} parts; bytes sent beyond the file (headers, TCP, re-sends) {:.2} MB in all, {:.2} MB per cut",
        parts.len(),
        overhead as f64 / 1e6,
        overhead as f64 / 2e6
    );
}
