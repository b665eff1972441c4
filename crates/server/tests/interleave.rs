//! A property test over interleavings: several users and concurrent tus clients against a real
//! server on real sockets, with shared and distinct contents (noise, and one real photo so the
//! server identifies it), several writers on one upload URL, stale offsets, slow bodies (some
//! outliving the write lease, some slower than the idle timeout), pauses, HEADs, DELETEs from
//! another connection (retried while the upload is busy; some cancel the file for good),
//! impatient clients that DELETE a busy upload and start over, right and wrong part checksums,
//! right and wrong declared digests (some the digest of another user's file), a short upload
//! TTL now and then, and a server restart on the same data folder in the middle. Each server
//! runs on its own runtime, dropped when it stops, as a process exit would. Clients retry a
//! bounded number of times, following HEAD, so most uploads complete. Afterwards, with every
//! server stopped or through a fresh one:
//!
//! 1. every file under `<data>/blobs/` hashes (BLAKE3) to its name;
//! 2. every image record's content hashes to its `digest` (and is `bytes` long);
//! 3. every image a user holds is a content that user sent in full to a live upload that declared
//!    its digest: bytes sent after the client learned the upload was gone (DELETE answered 204,
//!    404, 410, 422) do not count; two plans of one user whose creations were handed the same
//!    unfinished upload cover it together;
//! 4. every acknowledged completion (PATCH 204 or HEAD carrying an image id) is listed for that
//!    user with the digest its upload declared, and only uploads declaring the right digest are
//!    acknowledged.
//!
//! How many uploads completed is printed, not asserted. `PROPTEST_CASES` (default 12),
//! `PROPTEST_MAX_SHRINK_ITERS` (default 8) and `PROPTEST_MAX_SHRINK_TIME` (ms, default 45000)
//! tune the run; a failure prints the schedule and the clients' log of that case.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use photosync_protocol::{tus, IMAGE_ID_HEADER};
use photosync_server::{serve, token_hash, AppState, Config};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use sha1::Digest as _;
use tokio::time::{sleep, Instant};

// ---------------------------------------------------------------------------------------------
// The schedule

/// One case: who uploads what, and what every client does.
#[derive(Debug, Clone)]
struct Schedule {
    users: usize,
    idle_ms: u64,
    ttl_secs: u64,
    /// Content 0: one of the committed photos (so the server identifies it).
    photo: Index,
    /// Contents 1..: noise of (length, seed).
    noise: Vec<(usize, u64)>,
    /// The first five are forced to be shared: photo by users 0 and 1, content 1 by all.
    uploads: Vec<UploadPlan>,
    restart: Option<Restart>,
}

#[derive(Debug, Clone, Copy)]
struct Restart {
    at_ms: u16,
    grace_ms: u16,
}

/// One file one user backs up: one tus upload (created again if it is lost), written by one to
/// three clients at once on its URL.
#[derive(Debug, Clone)]
struct UploadPlan {
    user: usize,
    content: usize,
    declared: Declared,
    /// creation-with-upload: this percentage of the file goes with the POST.
    first_part: Option<u8>,
    writers: Vec<WriterPlan>,
}

#[derive(Debug, Clone, Copy)]
enum Declared {
    Right,
    /// 64 hex digits of nothing in particular.
    Random(u64),
    /// The digest of another content (modulo the number of contents): a client claiming a file
    /// someone else holds.
    Other(usize),
}

#[derive(Debug, Clone)]
struct WriterPlan {
    delay_ms: u16,
    steps: Vec<Step>,
    /// After this many 423s in a row the client DELETEs the upload and starts over.
    impatience: Option<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Patch {
        offset: OffsetKind,
        /// Of what is left after the offset.
        percent: u8,
        pace: Pace,
        sum: Sum,
    },
    Pause(u16),
    Head,
    /// DELETE of the upload from this client's own connection, whatever the others are doing,
    /// retried for a while on 423. A cancel means the user dropped the file: nobody creates the
    /// upload again.
    Delete {
        cancel: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum OffsetKind {
    /// The last offset this client heard from the server.
    Believed,
    /// That, moved back by this percentage.
    Stale(u8),
    Zero,
}

#[derive(Debug, Clone, Copy)]
enum Pace {
    Fast,
    /// The part in `chunks` pieces with `gap_ms` between them.
    Slow {
        chunks: u8,
        gap_ms: u16,
    },
}

#[derive(Debug, Clone, Copy)]
enum Sum {
    None,
    Right,
    Wrong,
}

/// The longest a slow body takes (the lease of today's server is 2-3 s).
const SLOW_BODY_MAX_MS: u64 = 4_500;
/// Clients start no new step after this, and no new request after `FINISH_DEADLINE_MS`.
const STEPS_DEADLINE_MS: u64 = 5_000;
const FINISH_DEADLINE_MS: u64 = 7_500;
/// Each upload is created at most this many times (again after a DELETE, expiry, 422...).
const MAX_CREATIONS: usize = 4;
/// A DELETE answered 423 is tried again this many times, 150 ms apart.
const DELETE_TRIES: usize = 20;
const FINISH_ATTEMPTS: usize = 40;

fn pace() -> impl Strategy<Value = Pace> {
    prop_oneof![
        3 => Just(Pace::Fast),
        // Under the idle timeout between pieces.
        1 => (2u8..=6, 100u16..=500).prop_map(|(chunks, gap_ms)| Pace::Slow { chunks, gap_ms }),
        // Under the idle timeout, but outliving a lease of a few seconds.
        2 => (8u8..=12, 350u16..=550).prop_map(|(chunks, gap_ms)| Pace::Slow { chunks, gap_ms }),
        // A gap longer than the idle timeout: the server cuts the part.
        1 => (2u8..=3, 1_100u16..=1_600).prop_map(|(chunks, gap_ms)| Pace::Slow { chunks, gap_ms }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let offset = prop_oneof![
        4 => Just(OffsetKind::Believed),
        1 => (1u8..=100).prop_map(OffsetKind::Stale),
        1 => Just(OffsetKind::Zero),
    ];
    let percent = prop_oneof![1 => Just(100u8), 2 => 1u8..=100];
    let sum = prop_oneof![2 => Just(Sum::None), 2 => Just(Sum::Right), 1 => Just(Sum::Wrong)];
    prop_oneof![
        6 => (offset, percent, pace(), sum).prop_map(|(offset, percent, pace, sum)| Step::Patch {
            offset,
            percent,
            pace,
            sum
        }),
        2 => (50u16..=1_200).prop_map(Step::Pause),
        2 => Just(Step::Head),
        1 => any::<bool>().prop_map(|cancel| Step::Delete { cancel }),
    ]
}

fn writer() -> impl Strategy<Value = WriterPlan> {
    (
        0u16..=1_500,
        vec(step(), 1..=3),
        proptest::option::weighted(0.3, 2u8..=8),
    )
        .prop_map(|(delay_ms, steps, impatience)| WriterPlan {
            delay_ms,
            steps,
            impatience,
        })
}

fn upload_plan() -> impl Strategy<Value = UploadPlan> {
    let declared = prop_oneof![
        8 => Just(Declared::Right),
        1 => any::<u64>().prop_map(Declared::Random),
        2 => (0usize..8).prop_map(Declared::Other),
    ];
    (
        0usize..3,
        0usize..8,
        declared,
        proptest::option::weighted(0.25, 1u8..=100),
        vec(writer(), 1..=3),
    )
        .prop_map(
            |(user, content, declared, first_part, writers)| UploadPlan {
                user,
                content,
                declared,
                first_part,
                writers,
            },
        )
}

fn schedule() -> impl Strategy<Value = Schedule> {
    let restart =
        (300u16..=3_000, 20u16..=300).prop_map(|(at_ms, grace_ms)| Restart { at_ms, grace_ms });
    (
        2usize..=3,
        600u64..=1_000,
        prop_oneof![3 => Just(600u64), 1 => Just(2u64)],
        any::<Index>(),
        vec((4_096usize..=200_000, any::<u64>()), 2..=3),
        vec(upload_plan(), 5..=7),
        proptest::option::weighted(0.6, restart),
    )
        .prop_map(
            |(users, idle_ms, ttl_secs, photo, noise, mut uploads, restart)| {
                // Shared contents: the photo for users 0 and 1, the first noise for everyone.
                for (plan, (user, content)) in
                    uploads
                        .iter_mut()
                        .zip([(0, 0), (1, 0), (0, 1), (1, 1), (2, 1)])
                {
                    plan.user = user % users;
                    plan.content = content;
                }
                for plan in &mut uploads {
                    plan.user %= users;
                    plan.content %= noise.len() + 1;
                }
                Schedule {
                    users,
                    idle_ms,
                    ttl_secs,
                    photo,
                    noise,
                    uploads,
                    restart,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Servers, each on its own runtime so stopping one is like its process exiting

struct Server {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Opens the data folder, makes `users` (name, token), serves on 127.0.0.1 port 0.
    fn start(dir: &Path, config: Config, grace: Duration, users: Vec<(String, String)>) -> Server {
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let dir = dir.to_path_buf();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let state = AppState::embedded(&dir, config).unwrap();
                for (name, token) in &users {
                    state
                        .store
                        .create_user(name, &token_hash(token), 0, None)
                        .await
                        .unwrap();
                }
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                url_tx
                    .send(format!("http://{}", listener.local_addr().unwrap()))
                    .unwrap();
                let shutdown = async move {
                    let _ = stop_rx.await;
                };
                serve(listener, state, shutdown, grace).await.unwrap();
            });
            // Whatever still runs after the grace period is dropped, as at a process exit.
            rt.shutdown_timeout(Duration::from_millis(500));
        });
        let url = url_rx.recv().expect("the server did not start");
        Server {
            url,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn start_server(
    dir: PathBuf,
    config: Config,
    grace: Duration,
    users: Vec<(String, String)>,
) -> Server {
    tokio::task::spawn_blocking(move || Server::start(&dir, config, grace, users))
        .await
        .unwrap()
}

async fn stop_server(server: Server) {
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Clients

/// One tus upload as its clients know it.
#[derive(Debug)]
struct Session {
    user: usize,
    content: usize,
    declared: String,
    declared_right: bool,
    /// `/files/<id>`: valid against whichever server is running.
    location: String,
    length: u64,
    /// Bytes sent to this upload while the clients still believed it alive.
    covered: Mutex<Vec<bool>>,
    /// The clients learned it is gone (DELETE 204, 404, 410, 422).
    dead: AtomicBool,
}

impl Session {
    fn mark(&self, from: u64, to: u64) {
        if !self.dead.load(Ordering::SeqCst) {
            self.covered.lock().unwrap()[from as usize..to as usize].fill(true);
        }
    }

    /// Every byte was sent while live, by this client or by another of the same user whose
    /// creation joined the same upload (the server hands a second creation of an unfinished
    /// upload the same location).
    fn sent_in_full(&self, sessions: &[Arc<Session>]) -> bool {
        let joined: Vec<_> = sessions
            .iter()
            .filter(|o| {
                std::ptr::eq(Arc::as_ptr(o), self)
                    || (o.user == self.user
                        && o.content == self.content
                        && o.location == self.location
                        && !o.location.ends_with("(unknown)"))
            })
            .map(|o| o.covered.lock().unwrap().clone())
            .collect();
        (0..self.length as usize).all(|i| joined.iter().any(|c| c[i]))
    }

    fn id(&self) -> &str {
        self.location.rsplit('/').next().unwrap_or("")
    }
}

#[derive(Debug, Default)]
struct SlotState {
    session: Option<Arc<Session>>,
    creations: usize,
}

/// An upload plan at run time: its current session, created again when lost.
#[derive(Debug)]
struct Slot {
    index: usize,
    plan: UploadPlan,
    state: tokio::sync::Mutex<SlotState>,
    done: AtomicBool,
    gave_up: AtomicBool,
}

#[derive(Debug)]
struct Ack {
    user: usize,
    image: i64,
    session: Arc<Session>,
    via: &'static str,
}

#[derive(Debug, Default)]
struct Counters {
    created: AtomicUsize,
    patches: AtomicUsize,
    stored: AtomicUsize,
    conflicts: AtomicUsize,
    busy: AtomicUsize,
    checksum_mismatch: AtomicUsize,
    digest_mismatch: AtomicUsize,
    gone: AtomicUsize,
    deleted: AtomicUsize,
    cancelled: AtomicUsize,
    transport: AtomicUsize,
    other: AtomicUsize,
}

struct Ctx {
    http: reqwest::Client,
    base: tokio::sync::watch::Receiver<String>,
    tokens: Vec<String>,
    contents: Vec<Arc<Vec<u8>>>,
    names: Vec<String>,
    digests: Vec<String>,
    start: Instant,
    sessions: Mutex<Vec<Arc<Session>>>,
    acks: Mutex<Vec<Ack>>,
    log: Mutex<Vec<String>>,
    n: Counters,
}

fn bump(c: &AtomicUsize) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Ctx {
    fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn past(&self, ms: u64) -> bool {
        self.elapsed_ms() >= ms
    }

    fn log(&self, who: &str, what: impl std::fmt::Display) {
        let line = format!("{:>5} ms {who}: {what}", self.elapsed_ms());
        self.log.lock().unwrap().push(line);
    }

    fn req(&self, method: reqwest::Method, path: &str, user: usize) -> reqwest::RequestBuilder {
        let base = self.base.borrow().clone();
        self.http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.tokens[user])
            .header(tus::RESUMABLE, tus::VERSION)
    }
}

fn header_num<T: std::str::FromStr>(r: &reqwest::Response, name: &str) -> Option<T> {
    r.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

/// What a PATCH, HEAD or POST came back with (the fields are read through `Debug`, in the log).
#[allow(dead_code)]
#[derive(Debug)]
enum Answer {
    Stored { offset: u64, image: Option<i64> },
    Conflict(Option<u64>),
    Busy,
    Gone(u16),
    DigestMismatch,
    ChecksumMismatch,
    Status(u16),
    Transport(String),
}

fn answer_of(r: &reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    match status {
        200 | 201 | 204 => Answer::Stored {
            offset: header_num(r, tus::UPLOAD_OFFSET).unwrap_or(0),
            image: header_num(r, IMAGE_ID_HEADER),
        },
        409 => Answer::Conflict(header_num(r, tus::UPLOAD_OFFSET)),
        423 => Answer::Busy,
        404 | 410 => Answer::Gone(status),
        422 => Answer::DigestMismatch,
        460 => Answer::ChecksumMismatch,
        s => Answer::Status(s),
    }
}

fn transport(e: &reqwest::Error) -> Answer {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    Answer::Transport(msg)
}

fn encode_metadata(name: &str, digest: &str) -> String {
    format!(
        "filename {},digest {}",
        STANDARD.encode(name),
        STANDARD.encode(digest)
    )
}

/// The body of a part sent in pieces with pauses between them; each piece counts as sent when
/// the stream hands it over.
fn slow_body(
    session: Arc<Session>,
    offset: u64,
    part: Vec<u8>,
    chunks: usize,
    gap: Duration,
) -> reqwest::Body {
    let part = Arc::new(part);
    let size = part.len().div_ceil(chunks).max(1);
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let (part, session) = (part.clone(), session.clone());
        async move {
            let start = i * size;
            if start >= part.len() {
                return None;
            }
            if i > 0 {
                sleep(gap).await;
            }
            let end = (start + size).min(part.len());
            session.mark(offset + start as u64, offset + end as u64);
            Some((Ok::<_, std::io::Error>(part[start..end].to_vec()), i + 1))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

impl Slot {
    /// The live session, creating one if there is none and creations are left.
    async fn session(&self, ctx: &Ctx, who: &str) -> Option<Arc<Session>> {
        let mut st = self.state.lock().await;
        if let Some(s) = &st.session {
            if !s.dead.load(Ordering::SeqCst) {
                return Some(s.clone());
            }
        }
        st.session = None;
        if self.done.load(Ordering::SeqCst)
            || self.gave_up.load(Ordering::SeqCst)
            || st.creations >= MAX_CREATIONS
            || ctx.past(FINISH_DEADLINE_MS)
        {
            return None;
        }
        st.creations += 1;
        let first = if st.creations == 1 {
            self.plan.first_part
        } else {
            None
        };
        let s = self.create(ctx, who, first).await;
        st.session.clone_from(&s);
        s
    }

    async fn create(&self, ctx: &Ctx, who: &str, first_part: Option<u8>) -> Option<Arc<Session>> {
        let plan = &self.plan;
        let content = &ctx.contents[plan.content];
        let length = content.len() as u64;
        let declared = match plan.declared {
            Declared::Right => ctx.digests[plan.content].clone(),
            Declared::Random(seed) => blake3::hash(&seed.to_le_bytes()).to_hex().to_string(),
            Declared::Other(i) => ctx.digests[i % ctx.digests.len()].clone(),
        };
        let declared_right = declared == ctx.digests[plan.content];
        let mut rb = ctx
            .req(reqwest::Method::POST, "/files/", plan.user)
            .header(tus::UPLOAD_LENGTH, length.to_string())
            .header(
                tus::UPLOAD_METADATA,
                encode_metadata(&ctx.names[plan.content], &declared),
            );
        let first = first_part.map_or(0, |p| (content.len() * p as usize / 100).max(1));
        if first > 0 {
            rb = rb
                .header("content-type", tus::OFFSET_CONTENT_TYPE)
                .body(content[..first].to_vec());
        }
        // A POST with a body whose answer is lost may still have created (even completed) an
        // upload: what it sent is recorded as an upload the clients cannot reach.
        let unreachable = || {
            if first > 0 {
                let mut covered = vec![false; content.len()];
                covered[..first].fill(true);
                ctx.sessions.lock().unwrap().push(Arc::new(Session {
                    user: plan.user,
                    content: plan.content,
                    declared: declared.clone(),
                    declared_right,
                    location: "/files/(unknown)".to_owned(),
                    length,
                    covered: Mutex::new(covered),
                    dead: AtomicBool::new(true),
                }));
            }
        };
        let r = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                bump(&ctx.n.transport);
                ctx.log(who, format_args!("POST (+{first}) -> {:?}", transport(&e)));
                unreachable();
                return None;
            }
        };
        let answer = answer_of(&r);
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|l| match l.find("/files/") {
                Some(i) => l[i..].to_owned(),
                None => l.to_owned(),
            });
        match (r.status().as_u16(), location) {
            (201, Some(location)) => {
                bump(&ctx.n.created);
                let mut covered = vec![false; content.len()];
                covered[..first].fill(true);
                let s = Arc::new(Session {
                    user: plan.user,
                    content: plan.content,
                    declared,
                    declared_right,
                    location,
                    length,
                    covered: Mutex::new(covered),
                    dead: AtomicBool::new(false),
                });
                ctx.log(
                    who,
                    format_args!(
                        "POST (+{first}, digest {}) -> 201 {} {answer:?}",
                        if declared_right { "right" } else { "WRONG" },
                        s.id()
                    ),
                );
                ctx.sessions.lock().unwrap().push(s.clone());
                Some(s)
            }
            (status, _) => {
                ctx.log(who, format_args!("POST (+{first}) -> {status} {answer:?}"));
                unreachable();
                if matches!(answer, Answer::DigestMismatch) {
                    bump(&ctx.n.digest_mismatch);
                    if !declared_right {
                        self.gave_up.store(true, Ordering::SeqCst);
                    }
                }
                None
            }
        }
    }

    /// Takes in what the server said about `session`. Returns the offset it reported, if any.
    fn heard(
        &self,
        ctx: &Ctx,
        session: &Arc<Session>,
        answer: &Answer,
        via: &'static str,
    ) -> Option<u64> {
        match answer {
            Answer::Stored { offset, image } => {
                if let Some(image) = image {
                    ctx.acks.lock().unwrap().push(Ack {
                        user: session.user,
                        image: *image,
                        session: session.clone(),
                        via,
                    });
                    self.done.store(true, Ordering::SeqCst);
                }
                Some(*offset)
            }
            Answer::Conflict(offset) => {
                bump(&ctx.n.conflicts);
                *offset
            }
            Answer::Busy => {
                bump(&ctx.n.busy);
                None
            }
            Answer::Gone(_) => {
                bump(&ctx.n.gone);
                session.dead.store(true, Ordering::SeqCst);
                None
            }
            Answer::DigestMismatch => {
                bump(&ctx.n.digest_mismatch);
                session.dead.store(true, Ordering::SeqCst);
                if !session.declared_right {
                    self.gave_up.store(true, Ordering::SeqCst);
                }
                None
            }
            Answer::ChecksumMismatch => {
                bump(&ctx.n.checksum_mismatch);
                None
            }
            Answer::Status(_) => {
                bump(&ctx.n.other);
                None
            }
            Answer::Transport(_) => {
                bump(&ctx.n.transport);
                None
            }
        }
    }

    async fn head(&self, ctx: &Ctx, who: &str, s: &Arc<Session>) -> Answer {
        let answer = match ctx
            .req(reqwest::Method::HEAD, &s.location, s.user)
            .send()
            .await
        {
            Ok(r) => answer_of(&r),
            Err(e) => transport(&e),
        };
        ctx.log(who, format_args!("HEAD {} -> {answer:?}", s.id()));
        answer
    }

    #[allow(clippy::too_many_arguments)]
    async fn patch(
        &self,
        ctx: &Ctx,
        who: &str,
        s: &Arc<Session>,
        offset: u64,
        len: u64,
        pace: Pace,
        sum: Sum,
    ) -> Answer {
        bump(&ctx.n.patches);
        let sent_at = ctx.elapsed_ms();
        let content = &ctx.contents[s.content];
        let from = offset.min(s.length) as usize;
        let to = (offset + len).min(s.length) as usize;
        let part = content[from..to].to_vec();
        let mut rb = ctx
            .req(reqwest::Method::PATCH, &s.location, s.user)
            .header("content-type", tus::OFFSET_CONTENT_TYPE)
            .header(tus::UPLOAD_OFFSET, offset.to_string());
        match sum {
            Sum::None => {}
            Sum::Right => {
                let d = sha1::Sha1::digest(&part);
                rb = rb.header(tus::UPLOAD_CHECKSUM, format!("sha1 {}", STANDARD.encode(d)));
            }
            Sum::Wrong => {
                let mut h = sha1::Sha1::new();
                h.update(&part);
                h.update(b"not this part");
                let d = h.finalize();
                rb = rb.header(tus::UPLOAD_CHECKSUM, format!("sha1 {}", STANDARD.encode(d)));
            }
        }
        let body = match pace {
            Pace::Fast => {
                s.mark(from as u64, to as u64);
                reqwest::Body::from(part)
            }
            Pace::Slow { chunks, gap_ms } => {
                let chunks = chunks.max(1) as u64;
                let gap = (gap_ms as u64).min(SLOW_BODY_MAX_MS / chunks.saturating_sub(1).max(1));
                slow_body(
                    s.clone(),
                    from as u64,
                    part,
                    chunks as usize,
                    Duration::from_millis(gap),
                )
            }
        };
        let answer = match rb.body(body).send().await {
            Ok(r) => {
                let a = answer_of(&r);
                if let Answer::Stored { .. } = a {
                    bump(&ctx.n.stored);
                }
                a
            }
            Err(e) => transport(&e),
        };
        ctx.log(
            who,
            format_args!(
                "PATCH {} @{offset} +{} {pace:?} {sum:?} (sent at {sent_at} ms) -> {answer:?}",
                s.id(),
                to - from
            ),
        );
        answer
    }

    /// DELETE, tried again while the upload is busy. True once answered 204.
    async fn delete(&self, ctx: &Ctx, who: &str, s: &Arc<Session>) -> bool {
        for _ in 0..DELETE_TRIES {
            if ctx.past(FINISH_DEADLINE_MS) {
                break;
            }
            let answer = match ctx
                .req(reqwest::Method::DELETE, &s.location, s.user)
                .send()
                .await
            {
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) => format!("{:?}", transport(&e)),
            };
            ctx.log(who, format_args!("DELETE {} -> {answer}", s.id()));
            match answer.as_str() {
                "204" => {
                    bump(&ctx.n.deleted);
                    s.dead.store(true, Ordering::SeqCst);
                    return true;
                }
                "423" => sleep(Duration::from_millis(150)).await,
                _ => break,
            }
        }
        false
    }

    /// Counts 423s in a row; an impatient client DELETEs the upload when it has seen enough of
    /// them (it then starts over with a new one).
    async fn patience(
        &self,
        ctx: &Ctx,
        who: &str,
        s: &Arc<Session>,
        answer: &Answer,
        busy: &mut u8,
        impatience: Option<u8>,
    ) {
        if !matches!(answer, Answer::Busy) {
            *busy = 0;
            return;
        }
        *busy += 1;
        if impatience.is_some_and(|n| *busy >= n) {
            *busy = 0;
            ctx.log(who, "tired of 423s: deleting the upload to start over");
            self.delete(ctx, who, s).await;
        }
    }

    /// One client of this upload: its planned steps, then bounded retries until it completes.
    async fn run_writer(&self, ctx: &Ctx, w: usize) {
        let who = format!("u{}w{w}", self.index);
        let plan = &self.plan.writers[w];
        let mut busy = 0u8;
        sleep(Duration::from_millis(plan.delay_ms as u64)).await;
        // (session, offset this client believes in)
        let mut belief: Option<(Arc<Session>, u64)> = None;
        let believed = |belief: &Option<(Arc<Session>, u64)>, s: &Arc<Session>| match belief {
            Some((b, o)) if Arc::ptr_eq(b, s) => *o,
            _ => 0,
        };
        for step in &plan.steps {
            if ctx.past(STEPS_DEADLINE_MS) {
                break;
            }
            match *step {
                Step::Patch {
                    offset,
                    percent,
                    pace,
                    sum,
                } => {
                    let Some(s) = self.session(ctx, &who).await else {
                        continue;
                    };
                    let b = believed(&belief, &s);
                    let at = match offset {
                        OffsetKind::Believed => b,
                        OffsetKind::Stale(p) => b - b * p as u64 / 100,
                        OffsetKind::Zero => 0,
                    };
                    let rest = s.length.saturating_sub(at);
                    let len = (rest * percent as u64 / 100).max(1).min(rest);
                    let a = self.patch(ctx, &who, &s, at, len, pace, sum).await;
                    self.patience(ctx, &who, &s, &a, &mut busy, plan.impatience)
                        .await;
                    if let Some(o) = self.heard(ctx, &s, &a, "PATCH") {
                        belief = Some((s, o));
                    }
                }
                Step::Pause(ms) => sleep(Duration::from_millis(ms as u64)).await,
                Step::Head => {
                    let Some(s) = self.session(ctx, &who).await else {
                        continue;
                    };
                    let a = self.head(ctx, &who, &s).await;
                    if let Some(o) = self.heard(ctx, &s, &a, "HEAD") {
                        belief = Some((s, o));
                    }
                }
                Step::Delete { cancel } => {
                    let current = self.state.lock().await.session.clone();
                    if let Some(s) = current {
                        if self.delete(ctx, &who, &s).await && cancel {
                            ctx.log(&who, "cancelled: the user dropped this file");
                            bump(&ctx.n.cancelled);
                            self.gave_up.store(true, Ordering::SeqCst);
                        }
                    }
                }
            }
        }
        // Finish like a client would: follow HEAD, send the rest, wait while busy.
        for _ in 0..FINISH_ATTEMPTS {
            if ctx.past(FINISH_DEADLINE_MS)
                || self.done.load(Ordering::SeqCst)
                || self.gave_up.load(Ordering::SeqCst)
            {
                break;
            }
            let Some(s) = self.session(ctx, &who).await else {
                if self.state.lock().await.creations >= MAX_CREATIONS {
                    break;
                }
                sleep(Duration::from_millis(200)).await;
                continue;
            };
            let a = self.head(ctx, &who, &s).await;
            let Some(offset) = self.heard(ctx, &s, &a, "HEAD") else {
                sleep(Duration::from_millis(150)).await;
                continue;
            };
            if self.done.load(Ordering::SeqCst) {
                break;
            }
            let a = self
                .patch(
                    ctx,
                    &who,
                    &s,
                    offset,
                    s.length.saturating_sub(offset),
                    Pace::Fast,
                    Sum::Right,
                )
                .await;
            self.heard(ctx, &s, &a, "PATCH");
            self.patience(ctx, &who, &s, &a, &mut busy, plan.impatience)
                .await;
            match a {
                Answer::Busy | Answer::Transport(_) => sleep(Duration::from_millis(200)).await,
                Answer::Status(_) => sleep(Duration::from_millis(100)).await,
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One case

fn photos() -> &'static [(String, Vec<u8>)] {
    static PHOTOS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    PHOTOS.get_or_init(photosync_testkit::photos)
}

fn hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[derive(Debug, Default)]
struct Summary {
    uploads: usize,
    completed: usize,
    wrong_digest: usize,
    line: String,
}

fn run_case(s: &Schedule) -> Result<Summary, String> {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (checked, log) = rt.block_on(drive(s, dir.path()));
    rt.shutdown_timeout(Duration::from_secs(1));
    // All servers are stopped now.
    let blobs = check_blobs(&dir.path().join("blobs"));
    let violations = match checked {
        Ok(summary) if blobs.is_empty() => return Ok(summary),
        Ok(_) => blobs,
        Err(mut v) => {
            v.extend(blobs);
            v
        }
    };
    let mut msg = String::new();
    for v in &violations {
        let _ = writeln!(msg, "{v}");
    }
    let _ = writeln!(msg, "schedule: {s:#?}");
    let _ = writeln!(msg, "clients' log:");
    for line in &log {
        let _ = writeln!(msg, "  {line}");
    }
    Err(msg)
}

/// Runs the clients against the server(s), then checks the records through a fresh server.
/// Returns the summary or the violations of invariants 2-4, and the clients' log.
async fn drive(s: &Schedule, dir: &Path) -> (Result<Summary, Vec<String>>, Vec<String>) {
    let tokens: Vec<String> = (0..s.users)
        .map(|u| format!("psk_interleave_user_{u}"))
        .collect();
    let config = Config {
        idle_timeout: Duration::from_millis(s.idle_ms),
        upload_ttl: Duration::from_secs(s.ttl_secs),
        sweep_interval: Duration::from_millis(700),
        ..Config::default()
    };
    let grace = Duration::from_millis(s.restart.map_or(200, |r| r.grace_ms as u64));
    let users: Vec<(String, String)> = tokens
        .iter()
        .enumerate()
        .map(|(u, t)| (format!("user{u}"), t.clone()))
        .collect();

    let (photo_name, photo) = &photos()[s.photo.index(photos().len())];
    let mut contents = vec![Arc::new(photo.clone())];
    let mut names = vec![photo_name.clone()];
    for (i, &(len, seed)) in s.noise.iter().enumerate() {
        contents.push(Arc::new(photosync_testkit::noise(len, seed)));
        names.push(format!("noise-{i}.bin"));
    }
    let digests: Vec<String> = contents.iter().map(|c| hex(c)).collect();

    let server = start_server(dir.to_path_buf(), config.clone(), grace, users).await;
    let (base_tx, base_rx) = tokio::sync::watch::channel(server.url.clone());
    let server = Arc::new(tokio::sync::Mutex::new(Some(server)));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(7))
        .build()
        .unwrap();
    let ctx = Arc::new(Ctx {
        http,
        base: base_rx,
        tokens,
        contents,
        names,
        digests,
        start: Instant::now(),
        sessions: Mutex::default(),
        acks: Mutex::default(),
        log: Mutex::default(),
        n: Counters::default(),
    });

    let restart = s.restart.map(|r| {
        let (ctx, server, dir, config) = (ctx.clone(), server.clone(), dir.to_path_buf(), config);
        tokio::spawn(async move {
            sleep(Duration::from_millis(r.at_ms as u64)).await;
            ctx.log("server", "stopping");
            if let Some(old) = server.lock().await.take() {
                stop_server(old).await;
            }
            let new = start_server(dir, config, grace, Vec::new()).await;
            ctx.log("server", format_args!("restarted at {}", new.url));
            base_tx.send_replace(new.url.clone());
            *server.lock().await = Some(new);
        })
    });

    let slots: Vec<Arc<Slot>> = s
        .uploads
        .iter()
        .enumerate()
        .map(|(index, plan)| {
            Arc::new(Slot {
                index,
                plan: plan.clone(),
                state: tokio::sync::Mutex::default(),
                done: AtomicBool::new(false),
                gave_up: AtomicBool::new(false),
            })
        })
        .collect();
    let mut writers = tokio::task::JoinSet::new();
    for slot in &slots {
        for w in 0..slot.plan.writers.len() {
            let (slot, ctx) = (slot.clone(), ctx.clone());
            writers.spawn(async move { slot.run_writer(&ctx, w).await });
        }
    }
    let all_done = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(r) = writers.join_next().await {
            r.unwrap();
        }
    })
    .await;
    if all_done.is_err() {
        ctx.log("test", "clients still running after 30 s; aborted");
        writers.abort_all();
    }
    if let Some(r) = restart {
        r.await.unwrap();
    }
    if let Some(last) = server.lock().await.take() {
        stop_server(last).await;
    }

    // Read everything back through a fresh server on the same data folder.
    let fresh = start_server(dir.to_path_buf(), Config::default(), grace, Vec::new()).await;
    let checked = check_records(&ctx, &fresh.url, &slots).await;
    stop_server(fresh).await;
    let log = std::mem::take(&mut *ctx.log.lock().unwrap());
    (checked, log)
}

// ---------------------------------------------------------------------------------------------
// The invariants

/// Invariant 1: every file under blobs/ is `<2 hex>/<64 hex>` and hashes to its name.
fn check_blobs(blobs: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(blobs) else {
        return out;
    };
    for d in dirs {
        let d = d.unwrap().path();
        let Ok(files) = std::fs::read_dir(&d) else {
            out.push(format!(
                "invariant 1 (blobs): {} is not a folder",
                d.display()
            ));
            continue;
        };
        for f in files {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = match std::fs::read(&f) {
                Ok(b) => b,
                Err(e) => {
                    out.push(format!("invariant 1 (blobs): {}: {e}", f.display()));
                    continue;
                }
            };
            let actual = hex(&bytes);
            let prefix = d.file_name().unwrap().to_string_lossy().into_owned();
            if actual != name || !name.starts_with(&prefix) || prefix.len() != 2 {
                out.push(format!(
                    "invariant 1 (blobs): blobs/{prefix}/{name} ({} bytes) hashes to {actual}",
                    bytes.len()
                ));
            }
        }
    }
    out
}

/// Invariants 2-4 through the server at `base`; also counts for the summary.
async fn check_records(ctx: &Ctx, base: &str, slots: &[Arc<Slot>]) -> Result<Summary, Vec<String>> {
    let mut out = Vec::new();
    let http = reqwest::Client::new();
    let sessions = ctx.sessions.lock().unwrap().clone();
    // user -> image id -> digest
    let mut listed: Vec<HashMap<i64, String>> = vec![HashMap::new(); ctx.tokens.len()];
    let mut images = 0;
    for (user, token) in ctx.tokens.iter().enumerate() {
        let mut after = 0i64;
        loop {
            let r = http
                .get(format!("{base}/api/v1/images?limit=1000&after={after}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200, "listing user {user}'s images");
            let page: serde_json::Value =
                serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            for img in page["images"].as_array().unwrap() {
                images += 1;
                let id = img["id"].as_i64().unwrap();
                let digest = img["digest"].as_str().unwrap_or_default().to_owned();
                let bytes = img["bytes"].as_u64();
                listed[user].insert(id, digest.clone());
                let r = http
                    .get(format!("{base}/api/v1/images/{id}/content"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body = match r.bytes().await {
                    Ok(b) if status == 200 => b,
                    other => {
                        out.push(format!(
                            "invariant 2 (records): user {user}'s image {id} (digest {digest}): \
                             content answered {status} {:?}",
                            other.map(|b| String::from_utf8_lossy(&b).into_owned())
                        ));
                        continue;
                    }
                };
                let actual = hex(&body);
                if actual != digest || bytes != Some(body.len() as u64) {
                    out.push(format!(
                        "invariant 2 (records): user {user}'s image {id} says digest {digest}, \
                         {bytes:?} bytes; its content is {} bytes hashing to {actual}",
                        body.len()
                    ));
                }
                // Invariant 3: the user sent exactly these bytes, in full, to a live upload
                // declaring them.
                let legit = sessions.iter().any(|s| {
                    s.user == user
                        && s.declared_right
                        && ctx.digests[s.content] == actual
                        && s.sent_in_full(&sessions)
                });
                if !legit {
                    let which = ctx
                        .digests
                        .iter()
                        .position(|d| *d == actual)
                        .map_or("no content of this test".to_owned(), |c| {
                            format!("content #{c} ({})", ctx.names[c])
                        });
                    let tried: Vec<String> = sessions
                        .iter()
                        .filter(|s| s.user == user && ctx.digests[s.content] == actual)
                        .map(|s| {
                            let covered = s.covered.lock().unwrap();
                            format!(
                                "upload {} declared {} digest, {} of {} bytes sent while live",
                                s.id(),
                                if s.declared_right {
                                    "the right"
                                } else {
                                    "a WRONG"
                                },
                                covered.iter().filter(|&&b| b).count(),
                                covered.len()
                            )
                        })
                        .collect();
                    let others: Vec<usize> = sessions
                        .iter()
                        .filter(|s| s.user != user && ctx.digests[s.content] == actual)
                        .map(|s| s.user)
                        .collect();
                    out.push(format!(
                        "invariant 3 (users apart): user {user}'s image {id} holds {which}, which \
                         user {user} never sent in full to a live upload declaring it; its own \
                         uploads of these bytes: {tried:?}; other users who sent them: {others:?}"
                    ));
                }
            }
            match page["next"].as_i64() {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    // Invariant 4: acknowledged completions are stored, and only for the right digest.
    for ack in ctx.acks.lock().unwrap().iter() {
        let s = &ack.session;
        match listed[ack.user].get(&ack.image) {
            _ if !s.declared_right => out.push(format!(
                "invariant 4 (acknowledgements): {} of upload {} (user {}) acknowledged image {} \
                 although the upload declared a WRONG digest",
                ack.via,
                s.id(),
                ack.user,
                ack.image
            )),
            Some(d) if *d == s.declared => {}
            other => out.push(format!(
                "invariant 4 (acknowledgements): {} of upload {} (user {}) acknowledged image {}, \
                 but the user's listing has {other:?} under that id, not {}",
                ack.via,
                s.id(),
                ack.user,
                ack.image,
                s.declared
            )),
        }
    }
    if !out.is_empty() {
        return Err(out);
    }
    let n = &ctx.n;
    let get = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    let completed = slots
        .iter()
        .filter(|s| s.done.load(Ordering::SeqCst))
        .count();
    let wrong_digest = slots
        .iter()
        .filter(|s| {
            let c = s.plan.content;
            match s.plan.declared {
                Declared::Right => false,
                Declared::Random(_) => true,
                Declared::Other(i) => ctx.digests[i % ctx.digests.len()] != ctx.digests[c],
            }
        })
        .count();
    let line = format!(
        "{} uploads, {completed} acknowledged complete ({wrong_digest} declared a wrong digest), \
         {images} images; {} creations, {} PATCHes ({} stored, {} 409, {} 423, {} 460, {} 422), \
         {} 404/410, {} deleted ({} cancelled), {} transport errors, {} other",
        slots.len(),
        get(&n.created),
        get(&n.patches),
        get(&n.stored),
        get(&n.conflicts),
        get(&n.busy),
        get(&n.checksum_mismatch),
        get(&n.digest_mismatch),
        get(&n.gone),
        get(&n.deleted),
        get(&n.cancelled),
        get(&n.transport),
        get(&n.other),
    );
    Ok(Summary {
        uploads: slots.len(),
        completed,
        wrong_digest,
        line,
    })
}

// ---------------------------------------------------------------------------------------------

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn interleaved_uploads_keep_blobs_records_and_users_apart() {
    let config = ProptestConfig {
        cases: env_u32("PROPTEST_CASES", 12),
        max_shrink_iters: env_u32("PROPTEST_MAX_SHRINK_ITERS", 8),
        max_shrink_time: env_u32("PROPTEST_MAX_SHRINK_TIME", 45_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let case = AtomicUsize::new(0);
    let failed_once = AtomicBool::new(false);
    let totals = Mutex::new((0usize, 0usize, 0usize));
    let result = runner.run(&schedule(), |s| {
        let k = case.fetch_add(1, Ordering::Relaxed) + 1;
        let started = std::time::Instant::now();
        match run_case(&s) {
            Ok(summary) => {
                let mut t = totals.lock().unwrap();
                t.0 += summary.uploads;
                t.1 += summary.completed;
                t.2 += summary.wrong_digest;
                println!(
                    "case {k}: {}{} in {:.1} s",
                    summary.line,
                    if s.restart.is_some() {
                        ", server restarted"
                    } else {
                        ""
                    },
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            }
            Err(msg) => {
                // In full the first time; shrinking then reruns smaller schedules, and the
                // smallest failure is printed in full at the end.
                let shown = if failed_once.swap(true, Ordering::Relaxed) {
                    msg.lines()
                        .take_while(|l| !l.starts_with("schedule:"))
                        .collect::<Vec<_>>()
                        .join("\n")
                } else {
                    msg.clone()
                };
                eprintln!(
                    "case {k} FAILED in {:.1} s:\n{shown}",
                    started.elapsed().as_secs_f64()
                );
                Err(TestCaseError::fail(msg))
            }
        }
    });
    let t = totals.lock().unwrap();
    println!(
        "passing cases: {} of {} uploads acknowledged complete ({} declared a wrong digest)",
        t.1, t.0, t.2
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
