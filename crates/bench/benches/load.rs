//! Load benchmark: a bounded load run against the release `photosync-server`.
//!
//! `cargo bench -p photosync-bench --bench load`
//!
//! 200 concurrent connections on loopback to a freshly started server (three users):
//! - 120 doing real work: 60 uploaders (tus creation, then 512 KB PATCH parts of files of
//!   0.3–3 MB of random bytes, over and over) and 60 detectors (batches of 100 digests);
//! - 80 slow or stalled, written by hand over raw TCP, 16 of each kind: a PATCH body trickling
//!   4 bytes a second, a PATCH body that stops, request headers cut short, a detect body cut
//!   short, and a connection that sends nothing.
//!
//! Prints, beside a baseline of the same real work with no slow or stalled clients (measured in
//! the same run on its own fresh server): requests/s, MB/s, p50 and p99 latency per request
//! kind, failures by status, the server's resident memory before, during and after, its peak
//! (VmHWM) and open sockets; then, per stalled kind, whether and when the server closed them.
//! The point: stalled clients must neither raise memory without bound nor hold up the others.
//!
//! The `serve` options in [`SERVE_FLAGS`] are passed only where `serve --help` lists them, so
//! the run works on servers with and without them; it prints which were used.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::time::{Duration, Instant};

use photosync_bench::{percentile, Rng};
use photosync_protocol::{meta, path, tus, Metadata};
use photosync_testkit::{add_user, noise, ServerProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// `serve` options under test and their values (edit freely). Short timeouts, so that they
/// fire within the run; a connection limit above the 200 connections of the run.
const SERVE_FLAGS: &[(&str, &str)] = &[
    ("--header-timeout", "5"),
    ("--request-timeout", "10"),
    ("--idle-timeout", "5"),
    ("--max-connections", "256"),
];

const USERS: usize = 3;
const UPLOADERS: usize = 60;
const DETECTORS: usize = 60;
/// Connections of each slow or stalled kind: 5 kinds, 80 in all.
const PER_STALL_KIND: usize = 16;

/// How long real work keeps starting new requests, in each run.
const REAL_WORK: Duration = Duration::from_secs(8);
/// Stalled connections open this long before real work starts, so it meets them all.
const STALL_HEAD_START: Duration = Duration::from_secs(1);
/// How long stalled connections are watched before the benchmark cuts them: long enough for
/// each timeout in SERVE_FLAGS to fire.
const STALL_WATCH: Duration = Duration::from_secs(14);
/// No request of the real work may take longer (a hung server must not hang the benchmark).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Loops are bounded in count as well as in time.
const MAX_FILES_PER_UPLOADER: u64 = 1_000;
const MAX_BATCHES_PER_DETECTOR: u64 = 100_000;

const FILE_SIZES: std::ops::Range<u64> = 300_000..3_000_000;
const PART_SIZE: usize = 512 << 10;
const DETECT_BATCH: usize = 100;
/// Upload length of the hand-written PATCH kinds.
const RAW_UPLOAD_LEN: usize = 64 << 10;
/// What the stopping PATCH sends before it stops.
const RAW_UPLOAD_SENT: usize = 4 << 10;
/// What a slow client sends each second.
const TRICKLE_BYTES: usize = 4;

/// Where requests go: the server's address, a client for it and its users' tokens.
#[derive(Clone)]
struct Target {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT`
    url: String,
    /// `127.0.0.1:PORT`
    addr: String,
    tokens: Vec<String>,
}

/// The SERVE_FLAGS that `bin serve --help` lists, as arguments, and those it does not list.
fn offered_flags(bin: &Path) -> (Vec<String>, Vec<&'static str>) {
    let out = std::process::Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let words: HashSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .collect();
    let mut args = Vec::new();
    let mut missing = Vec::new();
    for &(flag, value) in SERVE_FLAGS {
        if words.contains(flag) {
            args.extend([flag.to_owned(), value.to_owned()]);
        } else {
            missing.push(flag);
        }
    }
    (args, missing)
}

/// A fresh server on an empty data folder with USERS users.
fn start_server(bin: &Path, dir: &Path, args: &[String]) -> (ServerProcess, Target) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let tokens = (0..USERS)
        .map(|i| add_user(bin, dir, &format!("load{i}")))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(bin, dir, &args);
    let addr = server.url.strip_prefix("http://").unwrap().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "loopback only, not {addr}");
    // No proxy from the environment may take this traffic off loopback.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(UPLOADERS + DETECTORS)
        .build()
        .unwrap();
    let url = server.url.clone();
    (
        server,
        Target {
            http,
            url,
            addr,
            tokens,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Real work

/// What the real work saw. Each worker keeps its own; they are merged at the end.
#[derive(Default)]
struct Tally {
    creates: Vec<Duration>,
    parts: Vec<Duration>,
    detects: Vec<Duration>,
    files: u64,
    upload_bytes: u64,
    detect_bytes: u64,
    /// "PATCH 423", "POST /api/v1/detect timeout"... -> count
    failures: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.creates.extend(other.creates);
        self.parts.extend(other.parts);
        self.detects.extend(other.detects);
        self.files += other.files;
        self.upload_bytes += other.upload_bytes;
        self.detect_bytes += other.detect_bytes;
        for (what, n) in other.failures {
            *self.failures.entry(what).or_default() += n;
        }
    }

    fn fail(&mut self, request: &str, why: String) {
        *self.failures.entry(format!("{request} {why}")).or_default() += 1;
    }
}

/// The response if it has status `want`; otherwise the status or the kind of error.
fn expect(
    sent: Result<reqwest::Response, reqwest::Error>,
    want: u16,
) -> Result<reqwest::Response, String> {
    match sent {
        Ok(r) if r.status().as_u16() == want => Ok(r),
        Ok(r) => Err(r.status().as_u16().to_string()),
        Err(e) => Err(error_kind(&e)),
    }
}

fn error_kind(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "connection error"
    };
    kind.to_owned()
}

/// A server that refuses at once must not turn a worker into a busy loop.
async fn pause_after_failure() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Uploads files of random bytes, one after another, until `until`.
async fn uploader(t: Target, token: String, seed: u64, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng(seed);
    for n in 0..MAX_FILES_PER_UPLOADER {
        if Instant::now() >= until {
            break;
        }
        let len = rng.in_range(FILE_SIZES) as usize;
        let file_seed = seed << 20 | n;
        // Making and hashing megabytes is CPU work: keep it off the threads that time requests.
        let (bytes, digest) = tokio::task::spawn_blocking(move || {
            let bytes = noise(len, file_seed);
            let digest = blake3::hash(&bytes).to_hex().to_string();
            (bytes, digest)
        })
        .await
        .unwrap();
        if !upload(&t, &token, &bytes, &digest, &mut tally).await {
            pause_after_failure().await;
        }
    }
    tally
}

/// One tus upload: creation, then PATCH parts. Stops at the first failure (returns false).
async fn upload(t: &Target, token: &str, bytes: &[u8], digest: &str, tally: &mut Tally) -> bool {
    let mut m = Metadata::default();
    m.insert(meta::NAME, "noise.bin");
    m.insert(meta::DIGEST, digest);
    let start = Instant::now();
    let created = t
        .http
        .post(format!("{}{}", t.url, path::UPLOADS))
        .bearer_auth(token)
        .header(tus::RESUMABLE, tus::VERSION)
        .header(tus::UPLOAD_LENGTH, bytes.len())
        .header(tus::UPLOAD_METADATA, m.encode())
        .send()
        .await;
    let location = match expect(created, 201) {
        Ok(r) => {
            tally.creates.push(start.elapsed());
            absolute(&t.url, r.headers()["location"].to_str().unwrap())
        }
        Err(why) => {
            tally.fail("POST /files/", why);
            return false;
        }
    };
    let mut offset = 0;
    for part in bytes.chunks(PART_SIZE) {
        let start = Instant::now();
        let sent = t
            .http
            .patch(&location)
            .bearer_auth(token)
            .header(tus::RESUMABLE, tus::VERSION)
            .header("content-type", tus::OFFSET_CONTENT_TYPE)
            .header(tus::UPLOAD_OFFSET, offset)
            .body(part.to_vec())
            .send()
            .await;
        if let Err(why) = expect(sent, 204) {
            tally.fail("PATCH", why);
            return false;
        }
        tally.parts.push(start.elapsed());
        tally.upload_bytes += part.len() as u64;
        offset += part.len();
    }
    tally.files += 1;
    true
}

/// A `Location` header as a URL (tus allows both relative and absolute ones).
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

/// Sends detect batches, one after another, until `until`.
async fn detector(t: Target, token: String, seed: u64, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng(seed);
    for _ in 0..MAX_BATCHES_PER_DETECTOR {
        if Instant::now() >= until {
            break;
        }
        let body = detect_body(&mut rng);
        let sent_len = body.len();
        let start = Instant::now();
        let sent = t
            .http
            .post(format!("{}{}", t.url, path::DETECT))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        // The latency of a detect includes reading its answer.
        let answer = match expect(sent, 200) {
            Ok(r) => r.bytes().await.map_err(|e| error_kind(&e)),
            Err(why) => Err(why),
        };
        match answer {
            Ok(b) => {
                tally.detects.push(start.elapsed());
                tally.detect_bytes += (sent_len + b.len()) as u64;
            }
            Err(why) => {
                tally.fail("POST /api/v1/detect", why);
                pause_after_failure().await;
            }
        }
    }
    tally
}

/// `{"images":[{"digest":"<64 hex>"},...]}` with DETECT_BATCH random digests.
fn detect_body(rng: &mut Rng) -> String {
    let images: Vec<String> = (0..DETECT_BATCH)
        .map(|_| {
            let d: [u64; 4] = std::array::from_fn(|_| rng.next_u64());
            format!(
                r#"{{"digest":"{:016x}{:016x}{:016x}{:016x}"}}"#,
                d[0], d[1], d[2], d[3]
            )
        })
        .collect();
    format!(r#"{{"images":[{}]}}"#, images.join(","))
}

/// Runs the uploaders and detectors until REAL_WORK has passed; returns what they saw and how
/// long they took (until the last request in flight finished).
async fn real_work(t: &Target) -> (Tally, Duration) {
    let start = Instant::now();
    let until = start + REAL_WORK;
    let tasks: Vec<_> = (0..UPLOADERS + DETECTORS)
        .map(|i| {
            let token = t.tokens[i % t.tokens.len()].clone();
            let seed = 0x10AD_0000 + i as u64;
            if i < UPLOADERS {
                tokio::spawn(uploader(t.clone(), token, seed, until))
            } else {
                tokio::spawn(detector(t.clone(), token, seed, until))
            }
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.unwrap());
    }
    (tally, start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Slow and stalled connections, written by hand

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// A PATCH whose body comes TRICKLE_BYTES a second: slow but alive.
    Trickle,
    /// A PATCH that sends part of its body, then nothing.
    StoppedUpload,
    /// A detect request whose headers stop halfway.
    PartialHeaders,
    /// A detect request with Content-Length whose body stops a third of the way.
    PartialDetect,
    /// A connection that sends nothing at all.
    Silent,
}

const STALLS: [Stall; 5] = [
    Stall::Trickle,
    Stall::StoppedUpload,
    Stall::PartialHeaders,
    Stall::PartialDetect,
    Stall::Silent,
];

impl Stall {
    fn label(self) -> &'static str {
        match self {
            Stall::Trickle => "PATCH body at 4 B/s",
            Stall::StoppedUpload => "PATCH body, then nothing",
            Stall::PartialHeaders => "headers cut short",
            Stall::PartialDetect => "detect body cut short",
            Stall::Silent => "connect, send nothing",
        }
    }
}

/// What became of one stalled connection. Times count from when it stopped sending (for the
/// slow client: from its first slow byte).
#[derive(Debug, Default)]
struct Outcome {
    /// The server's status line, if it answered.
    answer: Option<String>,
    /// When the server closed the connection; None: still open when the benchmark cut it.
    closed: Option<Duration>,
}

/// Opens PER_STALL_KIND connections of each kind, each watched until `until`.
fn spawn_stalled(t: &Target, until: Instant) -> Vec<(Stall, JoinHandle<Outcome>)> {
    STALLS
        .iter()
        .flat_map(|&kind| std::iter::repeat_n(kind, PER_STALL_KIND))
        .map(|kind| (kind, tokio::spawn(stalled_client(kind, t.clone(), until))))
        .collect()
}

async fn stalled_client(kind: Stall, t: Target, until: Instant) -> Outcome {
    let token = &t.tokens[0];
    let mut opening = Vec::new();
    let mut trickle = Vec::new();
    match kind {
        Stall::Trickle | Stall::StoppedUpload => {
            // The PATCH needs an upload to write to, created the ordinary way.
            let Some(location) = create_small_upload(&t, token).await else {
                return Outcome {
                    answer: Some("could not create its upload".into()),
                    closed: None,
                };
            };
            let body = noise(RAW_UPLOAD_LEN, 7);
            opening = patch_head(&t.addr, &location, token, body.len()).into_bytes();
            if kind == Stall::Trickle {
                trickle = body;
            } else {
                opening.extend_from_slice(&body[..RAW_UPLOAD_SENT]);
            }
        }
        Stall::PartialHeaders => {
            let head = detect_head(&t.addr, token, 10_000);
            opening = head.as_bytes()[..head.len() / 2].to_vec();
        }
        Stall::PartialDetect => {
            let body = detect_body(&mut Rng(99));
            opening = detect_head(&t.addr, token, body.len()).into_bytes();
            opening.extend_from_slice(&body.as_bytes()[..body.len() / 3]);
        }
        Stall::Silent => {}
    }
    let Ok(mut stream) = TcpStream::connect(&t.addr).await else {
        return Outcome {
            answer: Some("connect failed".into()),
            closed: None,
        };
    };
    if stream.write_all(&opening).await.is_err() {
        return Outcome {
            answer: Some("write failed".into()),
            closed: Some(Duration::ZERO),
        };
    }
    watch(stream, &trickle, until).await
}

/// An upload of RAW_UPLOAD_LEN bytes; returns its path.
async fn create_small_upload(t: &Target, token: &str) -> Option<String> {
    let mut m = Metadata::default();
    m.insert(
        meta::DIGEST,
        blake3::hash(&noise(RAW_UPLOAD_LEN, 7)).to_hex().to_string(),
    );
    let created = t
        .http
        .post(format!("{}{}", t.url, path::UPLOADS))
        .bearer_auth(token)
        .header(tus::RESUMABLE, tus::VERSION)
        .header(tus::UPLOAD_LENGTH, RAW_UPLOAD_LEN)
        .header(tus::UPLOAD_METADATA, m.encode())
        .send()
        .await;
    let r = expect(created, 201).ok()?;
    let location = r.headers()["location"].to_str().ok()?;
    Some(request_path(location).to_owned())
}

/// The path of a `Location` that may be relative or absolute, for a request line.
fn request_path(location: &str) -> &str {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => location,
    }
}

fn patch_head(addr: &str, path: &str, token: &str, len: usize) -> String {
    format!(
        "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Tus-Resumable: {}\r\nUpload-Offset: 0\r\nContent-Type: {}\r\n\
         Content-Length: {len}\r\n\r\n",
        tus::VERSION,
        tus::OFFSET_CONTENT_TYPE
    )
}

fn detect_head(addr: &str, token: &str, len: usize) -> String {
    format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n",
        path::DETECT
    )
}

/// Holds a connection open, sending `trickle` TRICKLE_BYTES a second, until the server closes
/// it or `until`; notes the server's answer, if any.
async fn watch(mut stream: TcpStream, mut trickle: &[u8], until: Instant) -> Outcome {
    let since = Instant::now();
    let mut out = Outcome::default();
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut deadline = pin!(tokio::time::sleep_until(until.into()));
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    out.closed = Some(since.elapsed());
                    break;
                }
                Ok(n) => {
                    if out.answer.is_none() {
                        out.answer = Some(status_line(&buf[..n]));
                    }
                }
            },
            _ = tick.tick(), if !trickle.is_empty() => {
                let (now, rest) = trickle.split_at(TRICKLE_BYTES.min(trickle.len()));
                if stream.write_all(now).await.is_err() {
                    out.closed = Some(since.elapsed());
                    break;
                }
                trickle = rest;
            }
            () = &mut deadline => break,
        }
    }
    // Dropping the stream here is the benchmark cutting whatever is still open.
    out
}

/// "408 Request Timeout" out of "HTTP/1.1 408 Request Timeout\r\n...".
fn status_line(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    let line = text.lines().next().unwrap_or_default();
    line.split_once(' ').map_or(line, |(_, s)| s).to_owned()
}

// ---------------------------------------------------------------------------------------------
// Server usage

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    rss_kb: u64,
    /// The listener and the connections the server holds.
    sockets: usize,
}

fn usage(server: &ServerProcess) -> Usage {
    Usage {
        rss_kb: server.status_kb("VmRSS"),
        sockets: open_sockets(server.child.id()),
    }
}

fn open_sockets(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(Result::ok)
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// Runs `work`, sampling the server every 200 ms; returns its output and the largest samples.
async fn sampled<T>(server: &ServerProcess, work: impl Future<Output = T>) -> (T, Usage) {
    let mut most = usage(server);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut work = pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return (out, most),
            _ = tick.tick() => {
                let now = usage(server);
                most.rss_kb = most.rss_kb.max(now.rss_kb);
                most.sockets = most.sockets.max(now.sockets);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Runs and report

struct Report {
    tally: Tally,
    elapsed: Duration,
    stalled: Vec<(Stall, Outcome)>,
    before: Usage,
    during: Usage,
    after: Usage,
    peak_kb: u64,
}

/// One run on a fresh server: the real work, with or without the slow and stalled clients.
async fn run(bin: &Path, dir: &Path, args: &[String], with_stalled: bool) -> Report {
    let (server, target) = start_server(bin, dir, args);
    let before = usage(&server);
    let ((tally, elapsed, stalled), during) = sampled(&server, async {
        let handles = if with_stalled {
            let handles = spawn_stalled(&target, Instant::now() + STALL_WATCH);
            tokio::time::sleep(STALL_HEAD_START).await;
            handles
        } else {
            Vec::new()
        };
        let (tally, elapsed) = real_work(&target).await;
        let mut stalled = Vec::new();
        for (kind, h) in handles {
            stalled.push((kind, h.await.unwrap()));
        }
        (tally, elapsed, stalled)
    })
    .await;
    // Stalled connections still open were cut as their tasks ended; closing the client's
    // pooled keep-alive connections too leaves the server with its listener alone.
    drop(target);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Report {
        tally,
        elapsed,
        stalled,
        before,
        during,
        after: usage(&server),
        peak_kb: server.status_kb("VmHWM"),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// "p50 / p99 ms" of `times`.
fn p50_p99(times: &[Duration]) -> String {
    if times.is_empty() {
        return "-".into();
    }
    let mut sorted = times.to_vec();
    sorted.sort();
    format!(
        "{} / {} ms",
        ms(percentile(&sorted, 0.5)),
        ms(percentile(&sorted, 0.99))
    )
}

fn per_s(n: f64, d: Duration) -> String {
    format!("{:.1}", n / d.as_secs_f64())
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn row(label: &str, base: String, load: String) {
    println!("{label:<34} {base:>22} {load:>22}");
}

fn failures(t: &Tally) -> String {
    if t.failures.is_empty() {
        return "none".into();
    }
    let list: Vec<String> = t
        .failures
        .iter()
        .map(|(what, n)| format!("{what} ×{n}"))
        .collect();
    list.join(", ")
}

fn print_work(base: &Report, load: &Report) {
    println!("\n## real work: {UPLOADERS} uploaders + {DETECTORS} detectors");
    row(
        "",
        "baseline (no stalled)".into(),
        format!("with {} slow/stalled", STALLS.len() * PER_STALL_KIND),
    );
    let (b, l) = (&base.tally, &load.tally);
    let (bt, lt) = (base.elapsed, load.elapsed);
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    row("time (until last request done)", secs(bt), secs(lt));
    row(
        "uploads: files finished",
        b.files.to_string(),
        l.files.to_string(),
    );
    let upload_requests = |t: &Tally| (t.creates.len() + t.parts.len()) as f64;
    row(
        "uploads: requests/s (POST+PATCH)",
        per_s(upload_requests(b), bt),
        per_s(upload_requests(l), lt),
    );
    row(
        "uploads: MB/s",
        per_s(b.upload_bytes as f64 / 1e6, bt),
        per_s(l.upload_bytes as f64 / 1e6, lt),
    );
    row(
        "uploads: POST p50 / p99",
        p50_p99(&b.creates),
        p50_p99(&l.creates),
    );
    row(
        "uploads: PATCH 512 KB p50 / p99",
        p50_p99(&b.parts),
        p50_p99(&l.parts),
    );
    row(
        "detects (100 each): requests/s",
        per_s(b.detects.len() as f64, bt),
        per_s(l.detects.len() as f64, lt),
    );
    row(
        "detects: MB/s (sent + received)",
        per_s(b.detect_bytes as f64 / 1e6, bt),
        per_s(l.detect_bytes as f64 / 1e6, lt),
    );
    row(
        "detects: p50 / p99",
        p50_p99(&b.detects),
        p50_p99(&l.detects),
    );
    let failed = |t: &Tally| t.failures.values().sum::<u64>().to_string();
    row("failed requests", failed(b), failed(l));
    println!("  failures, baseline: {}", failures(b));
    println!("  failures, with slow/stalled: {}", failures(l));
}

fn print_server(base: &Report, load: &Report) {
    println!("\n## server process (each run on its own fresh server)");
    row("", "baseline".into(), "with slow/stalled".into());
    row(
        "RSS before the load",
        mb(base.before.rss_kb),
        mb(load.before.rss_kb),
    );
    row(
        "RSS during (largest sample)",
        mb(base.during.rss_kb),
        mb(load.during.rss_kb),
    );
    row(
        "RSS 1 s after (stalled gone/cut)",
        mb(base.after.rss_kb),
        mb(load.after.rss_kb),
    );
    row("peak RSS (VmHWM)", mb(base.peak_kb), mb(load.peak_kb));
    let sockets = |r: &Report| {
        format!(
            "{} / {} / {}",
            r.before.sockets, r.during.sockets, r.after.sockets
        )
    };
    row(
        "open sockets before / max / after",
        sockets(base),
        sockets(load),
    );
}

fn print_stalled(load: &Report) {
    println!(
        "\n## slow/stalled connections: {PER_STALL_KIND} of each kind, watched {} s \
         (times from when each stopped sending)",
        STALL_WATCH.as_secs()
    );
    println!(
        "{:<26} {:>16} {:>14} {:>18}  answers",
        "kind", "closed by server", "after min–max", "open at end (cut)"
    );
    for kind in STALLS {
        let outcomes: Vec<&Outcome> = load
            .stalled
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, o)| o)
            .collect();
        let closed: Vec<Duration> = outcomes.iter().filter_map(|o| o.closed).collect();
        let after = match (closed.iter().min(), closed.iter().max()) {
            (Some(lo), Some(hi)) => format!("{:.1}–{:.1} s", lo.as_secs_f64(), hi.as_secs_f64()),
            _ => "-".into(),
        };
        let mut answers: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &outcomes {
            *answers
                .entry(o.answer.as_deref().unwrap_or("none"))
                .or_default() += 1;
        }
        let answers: Vec<String> = answers.iter().map(|(a, n)| format!("{a} ×{n}")).collect();
        println!(
            "{:<26} {:>16} {:>14} {:>18}  {}",
            kind.label(),
            format!("{}/{}", closed.len(), outcomes.len()),
            after,
            outcomes.len() - closed.len(),
            answers.join(", ")
        );
    }
}

fn main() {
    let work = photosync_bench::target_dir().join("bench-load");
    let bin = photosync_bench::release_binaries().join("photosync-server");
    let (args, missing) = offered_flags(&bin);
    println!(
        "# photosync-server under load ({} cores, release build, loopback)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // Other work on the machine shows in the figures: say how busy it was.
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average before the run: {}",
        load_avg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("server: {}", bin.display());
    println!(
        "serve flags used: {}",
        if args.is_empty() {
            "none".into()
        } else {
            args.join(" ")
        }
    );
    if !missing.is_empty() {
        println!(
            "not offered by this binary, left out: {}",
            missing.join(" ")
        );
    }
    println!(
        "connections: {UPLOADERS} uploaders + {DETECTORS} detectors (real work, {} s per run) \
         + {} slow/stalled; {USERS} users",
        REAL_WORK.as_secs(),
        STALLS.len() * PER_STALL_KIND,
    );
    println!(
        "slow/stalled kinds, {PER_STALL_KIND} each: {}",
        STALLS.map(Stall::label).join("; ")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (base, load) = rt.block_on(async {
        let base = run(&bin, &work.join("baseline"), &args, false).await;
        let load = run(&bin, &work.join("stalled"), &args, true).await;
        (base, load)
    });
    print_work(&base, &load);
    print_server(&base, &load);
    print_stalled(&load);
}
