//! Uploading one file over tus: resume from the server's offset, parts sized from the measured
//! rate, a checksum on every part, retries with backoff and jitter, the shared bandwidth limit.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use photosync_identify::{Digest, Identifier};
use photosync_part_sizer::PartSizer;
use photosync_protocol::{meta, Metadata};
use tokio::io::AsyncReadExt as _;

use crate::client::{Client, ClientError, Created, ErrorKind};
use crate::state::{Pending, State};
use crate::sync::Control;
use crate::throttle::Throttle;
use photosync_events::{Event, EventSink};

/// What is known about the file to upload.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub path: PathBuf,
    pub digest: Digest,
    pub length: u64,
    pub mtime_ns: i64,
    pub identifier: Option<Identifier>,
    /// How long the file must have been left alone before its last part is sent, so a file
    /// still being written never becomes an image (watch mode).
    pub quiet: Duration,
}

impl Job {
    /// The upload of `path`, one of the local files holding `rec`.
    pub fn new(rec: &crate::state::FileRecord, path: &Path, quiet: Duration) -> Job {
        Job {
            path: path.to_path_buf(),
            digest: rec.digest,
            length: rec.size,
            mtime_ns: rec.mtime_ns,
            identifier: rec.identifier,
            quiet,
        }
    }
}

/// Why an upload did not end with an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UploadError {
    /// Stopped on request; the upload resumes next time.
    #[error("interrupted")]
    Cancelled,
    /// The file is no longer what was identified: it is read again.
    #[error("{CHANGED}")]
    Changed,
    /// The file is no longer there (moved, renamed, deleted). The upload stays on the server,
    /// so the file under its new name resumes it.
    #[error("{GONE}")]
    Gone,
    #[error("{0}")]
    Failed(String),
}

impl From<crate::state::StateError> for UploadError {
    fn from(e: crate::state::StateError) -> Self {
        UploadError::Failed(e.to_string())
    }
}

pub(crate) struct Ctx {
    pub client: Client,
    pub state: State,
    pub server_key: String,
    pub sizer: Arc<Mutex<PartSizer>>,
    pub events: EventSink,
    pub control: Arc<Control>,
    pub throttle: Arc<Throttle>,
    pub max_attempts: u32,
    pub roots: Arc<crate::sync::Roots>,
}

fn backoff(attempt: u32) -> Duration {
    let base = 0.5 * 2f64.powi(attempt.saturating_sub(1).min(6) as i32);
    let jitter = 0.5 + rand::random::<f64>();
    Duration::from_secs_f64((base * jitter).min(30.0))
}

pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A read failure, as a reason; a file that is no longer there is `Gone`.
fn read_error(e: std::io::Error) -> UploadError {
    if e.kind() == std::io::ErrorKind::NotFound {
        return UploadError::Gone;
    }
    UploadError::Failed(format!("cannot read: {e}"))
}

const GONE: &str = "the file was moved, renamed or deleted while it was being uploaded; under a \
                    new name it is backed up by the next scan";

/// Opens the file at `offset`, refusing if it changed since it was identified.
fn open_at(job: &Job, offset: u64) -> Result<std::fs::File, UploadError> {
    let mut f = std::fs::File::open(&job.path).map_err(read_error)?;
    let meta = f.metadata().map_err(read_error)?;
    if meta.len() != job.length || mtime_ns(&meta) != job.mtime_ns {
        return Err(UploadError::Changed);
    }
    f.seek(SeekFrom::Start(offset)).map_err(read_error)?;
    Ok(f)
}

const CHANGED: &str = "the file changed while it was being uploaded; it will be read again";

/// The part's bytes, read from the file while they are sent, so a part never sits in memory
/// whole, and shaped by the bandwidth limit as they are written. The time spent waiting for
/// the limit is added to `waited`, so the part sizer can measure the link, not the limit.
async fn body_of(
    job: &Job,
    offset: u64,
    len: u64,
    throttle: &Arc<Throttle>,
    waited: &Arc<AtomicU64>,
) -> Result<reqwest::Body, UploadError> {
    let j = job.clone();
    let f = tokio::task::spawn_blocking(move || open_at(&j, offset))
        .await
        .map_err(|e| UploadError::Failed(e.to_string()))??;
    let reader = tokio::fs::File::from_std(f).take(len);
    let chunks = tokio_util::io::ReaderStream::with_capacity(reader, throttle.write_size());
    if throttle.rate().is_none() {
        return Ok(reqwest::Body::wrap_stream(chunks));
    }
    let (throttle, waited) = (throttle.clone(), waited.clone());
    let shaped = chunks.then(move |chunk| {
        let (throttle, waited) = (throttle.clone(), waited.clone());
        async move {
            if let Ok(bytes) = &chunk {
                let w = throttle.take(bytes.len() as u64).await;
                waited.fetch_add(w.as_nanos() as u64, Ordering::Relaxed);
            }
            chunk
        }
    });
    Ok(reqwest::Body::wrap_stream(shaped))
}

/// Waits until the file has been left alone for `job.quiet`, and checks that it is still what
/// was read, right before its last part completes the upload.
async fn still_settled(ctx: &Ctx, job: &Job) -> Result<(), UploadError> {
    loop {
        let meta = std::fs::metadata(&job.path).map_err(read_error)?;
        if meta.len() != job.length || mtime_ns(&meta) != job.mtime_ns {
            return Err(UploadError::Changed);
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or(Duration::MAX);
        let Some(rest) = job.quiet.checked_sub(age).filter(|r| !r.is_zero()) else {
            return Ok(());
        };
        interruptible(
            ctx,
            tokio::time::sleep(rest.min(Duration::from_millis(500))),
        )
        .await?;
    }
}

/// Runs `f` unless the user pauses or cancels first; then the work is dropped (a part in
/// flight is abandoned, as after a cut, and resumes from the server's offset).
async fn interruptible<T>(
    ctx: &Ctx,
    f: impl std::future::Future<Output = T>,
) -> Result<T, UploadError> {
    tokio::select! {
        r = f => Ok(r),
        () = ctx.control.interrupted() => Err(UploadError::Cancelled),
    }
}

/// The checksum of the `len` bytes at `offset`, going on from `from`: a hasher that has
/// already taken the part's first bytes. The checksum goes in the request's headers, so it is
/// computed before the part is sent.
fn checksum(
    job: &Job,
    offset: u64,
    len: u64,
    from: blake3::Hasher,
) -> Result<blake3::Hash, UploadError> {
    let mut h = from;
    let done = h.count();
    let f = open_at(job, offset + done)?;
    h.update_reader(f.take(len - done)).map_err(read_error)?;
    if h.count() != len {
        return Err(UploadError::Changed);
    }
    Ok(h.finalize())
}

/// How often hashing ahead keeps the hasher's state.
const CHECKPOINT: u64 = 1 << 20;

/// Hashing of the file onward from where the next part starts, done while the part before it
/// is sent, so the link does not wait for the checksum. The next part's size is only known
/// once the part in flight is acknowledged, so the hasher's state is kept every
/// [`CHECKPOINT`] bytes; whatever size the sizer then picks, less than a checkpoint is left to
/// hash.
struct Ahead {
    offset: u64,
    limit: u64,
    /// Dropping it stops the hashing.
    states: tokio::sync::mpsc::UnboundedReceiver<blake3::Hasher>,
}

impl Ahead {
    /// Starts hashing up to `limit` bytes from `offset` on a blocking thread.
    fn start(job: &Job, offset: u64, limit: u64) -> Ahead {
        let (tx, states) = tokio::sync::mpsc::unbounded_channel();
        let job = job.clone();
        tokio::task::spawn_blocking(move || {
            // A read error ends the hashing early; the part's own checksum then reports it.
            let Ok(mut f) = open_at(&job, offset).map(|f| f.take(limit)) else {
                return;
            };
            let mut h = blake3::Hasher::new();
            let mut buf = vec![0u8; CHECKPOINT as usize];
            while !tx.is_closed() {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        h.update(&buf[..n]);
                        if (h.count().is_multiple_of(CHECKPOINT) || h.count() == limit)
                            && tx.send(h.clone()).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Ahead {
            offset,
            limit,
            states,
        }
    }

    /// The furthest state that has taken no more than the `len` bytes at `offset`: a fresh
    /// hasher if this hashing began elsewhere.
    async fn furthest(mut self, offset: u64, len: u64) -> blake3::Hasher {
        let mut from = blake3::Hasher::new();
        if offset == self.offset && len <= self.limit {
            loop {
                // States come at each checkpoint and at the limit.
                let next = ((from.count() / CHECKPOINT + 1) * CHECKPOINT).min(self.limit);
                if next > len || next == from.count() {
                    break;
                }
                match self.states.recv().await {
                    Some(h) if h.count() <= len => from = h,
                    _ => break,
                }
            }
        }
        from
    }
}

/// The file's name for the server: as it is when it is plain UTF-8, else a readable form plus
/// its exact bytes, so no legal name is refused or lost (restore needs the bytes).
fn put_name(m: &mut Metadata, path: &Path) {
    let Some(name) = path.file_name() else {
        m.insert(meta::NAME, "upload");
        return;
    };
    let plain = name
        .to_str()
        .filter(|n| !n.chars().any(|c| c.is_control() || c == '/' || c == '\\'));
    match plain {
        Some(n) => m.insert(meta::NAME, n),
        None => {
            let bytes = name.as_encoded_bytes();
            m.insert(meta::NAME, photosync_protocol::display_name(bytes));
            m.insert(
                meta::NAME_BYTES,
                photosync_protocol::percent_encode_name(bytes),
            );
        }
    }
}

/// How long a 423 (another writer holds the upload's lease) is waited out: longer than any
/// lease lasts, so a lease left by a crashed writer always expires first.
const LOCKED_PATIENCE: Duration = Duration::from_secs(600);
/// 409s in a row (the offset the server just gave did not hold) before giving up.
const MAX_CONFLICTS: u32 = 10;
/// How long "every byte is in, no image yet" is waited out: the server (or another client of
/// this account) is completing the upload.
const FINISHING_PATIENCE: Duration = Duration::from_secs(120);

/// How long a watched upload may stand still before this client sends it itself: past a
/// part's usual duration (the sizer aims at a few seconds). Taking over too early costs one
/// refused write (423) and another wait, never a byte of the upload.
const STALL: Duration = Duration::from_secs(10);
/// How often a watched upload is asked where it stands.
const WATCH_POLL: Duration = Duration::from_secs(1);

/// Another client of this account is sending the upload (the server joined this creation to
/// it, or its lease was held): this one watches the offset instead of sending the same bytes a
/// second time, and sends them itself only if the offset stops moving.
struct Watch {
    offset: u64,
    moved: Instant,
    /// The longest time the other writer took to move the offset: a slow link's parts take
    /// longer than `STALL`, and such a writer is not taken for stopped.
    slowest: Duration,
}

impl Watch {
    fn new(offset: u64) -> Watch {
        Watch {
            offset,
            moved: Instant::now(),
            slowest: Duration::ZERO,
        }
    }

    /// Notes where the upload stands; true if the other writer moved it since the last look.
    fn saw(&mut self, offset: u64) -> bool {
        if offset == self.offset {
            return false;
        }
        self.offset = offset;
        self.slowest = self.slowest.max(self.moved.elapsed());
        self.moved = Instant::now();
        true
    }

    fn stalled(&self) -> bool {
        self.moved.elapsed() >= STALL.max(self.slowest * 3)
    }
}

/// The server's upload a file goes to.
struct Place {
    url: String,
    /// Created by this client in this run: no other client sends into it, so it may be
    /// terminated when the file can no longer complete it. A joined or resumed one may be
    /// another client's, and is left to complete or expire.
    mine: bool,
}

/// Where a new upload starts: a joined one where the other writer has it, watched.
fn start_of(created: Created) -> (Place, u64, Option<Watch>) {
    let offset = created.joined.unwrap_or(0);
    let place = Place {
        url: created.url,
        mine: created.joined.is_none(),
    };
    (place, offset, created.joined.map(Watch::new))
}

/// Retries of one upload: failures count against `max_attempts`, waits that the server asks for
/// (a lease held elsewhere, completion in progress) count against time instead.
struct Retries {
    failures: u32,
    waiting_since: Option<Instant>,
    waits: u32,
}

impl Retries {
    fn new() -> Retries {
        Retries {
            failures: 0,
            waiting_since: None,
            waits: 0,
        }
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.waiting_since = None;
        self.waits = 0;
    }

    /// The pause before asking again while the server is busy with the upload, or `None` once
    /// `patience` has run out.
    fn wait(&mut self, patience: Duration) -> Option<Duration> {
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        if since.elapsed() > patience {
            return None;
        }
        self.waits += 1;
        Some(backoff(self.waits).min(Duration::from_secs(5)))
    }
}

/// Where an upload starts.
enum Start {
    /// The server already finished it: its image.
    Done(i64),
    At(String, u64),
    New,
}

/// A pending upload of these bytes from an earlier run, and where the server has it.
async fn resume_point(ctx: &Ctx, job: &Job) -> Result<Start, UploadError> {
    let Some(p) = ctx.state.pending(&ctx.server_key, &job.digest)? else {
        return Ok(Start::New);
    };
    if p.length != job.length {
        return Ok(Start::New);
    }
    match ctx.client.offset(&p.url).await {
        Ok((off, Some(id))) if off == job.length => Ok(Start::Done(id)),
        Ok((off, _)) => Ok(Start::At(p.url, off)),
        Err(e) if e.kind() == ErrorKind::Gone => Ok(Start::New),
        Err(e) => Err(UploadError::Failed(plain(&e))),
    }
}

/// A client error in words for the person reading the summary.
pub(crate) fn plain(e: &ClientError) -> String {
    match e.kind() {
        ErrorKind::NoSpace => "the server is out of space".into(),
        _ => e.to_string(),
    }
}

/// Uploads `job`; returns the server's image id. The sync list is not touched here: the caller
/// records the image once this returns, i.e. after the server's success response.
pub(crate) async fn upload(ctx: &Ctx, job: &Job) -> Result<i64, UploadError> {
    ctx.control.wait_while_paused().await;
    if ctx.control.is_cancelled() {
        return Err(UploadError::Cancelled);
    }
    let (mut place, offset, watch) = match resume_point(ctx, job).await? {
        Start::Done(id) => return Ok(id),
        Start::At(url, offset) => (Place { url, mine: false }, offset, None),
        Start::New => start_of(create(ctx, job).await?),
    };
    let result = send_parts(ctx, job, &mut place, offset, watch).await;
    let resized = std::fs::metadata(&job.path).is_ok_and(|m| m.len() != job.length);
    if result == Err(UploadError::Changed) && resized {
        // A file of another length can never complete this upload: it is dropped on the
        // server. One of the same length may still be these bytes (only its mtime moved): it
        // stays pending, and resumes if reading it again gives the same digest.
        let _ = ctx.state.drop_pending(&ctx.server_key, &job.digest);
        if place.mine {
            if let Err(e) = ctx.client.terminate(&place.url).await {
                tracing::debug!(error = %e, "an abandoned upload was not terminated; it expires");
            }
        }
    }
    result
}

/// Sends the parts from `offset` until the server names the image.
/// `place` follows the upload when the server loses it and a new one is created.
async fn send_parts(
    ctx: &Ctx,
    job: &Job,
    place: &mut Place,
    mut offset: u64,
    mut watch: Option<Watch>,
) -> Result<i64, UploadError> {
    let mut retries = Retries::new();
    let mut ahead: Option<Ahead> = None;
    // After a pause, the part that was in flight may or may not have landed.
    let mut ask_offset = false;
    // 409s in a row: the offset the server gave did not hold.
    let mut conflicts = 0;
    // Sending after watching: the other writer may still be there. Takeovers cut off in a
    // row are bounded, so a link that breaks every body still ends as a failure.
    let mut took_over = false;
    let mut cut_takeovers = 0;
    loop {
        let url = &place.url;
        if ctx.control.is_paused() {
            // A pause is no failure, and waits asked for before it start again after it.
            retries.succeeded();
        }
        ctx.control.wait_while_paused().await;
        if ctx.control.is_cancelled() {
            return Err(UploadError::Cancelled);
        }
        if ask_offset || offset >= job.length {
            ask_offset = false;
            // The server names the image on HEAD once every byte is in.
            let Ok(head) = interruptible(ctx, ctx.client.offset(url)).await else {
                ask_offset = true;
                continue;
            };
            match head {
                Ok((_, Some(id))) => return Ok(id),
                Ok((off, None)) if off < job.length => offset = off,
                Ok(_) => match retries.wait(FINISHING_PATIENCE) {
                    // Completing elsewhere (another process, a server's leftover lease).
                    Some(wait) => {
                        interruptible(ctx, tokio::time::sleep(wait)).await.ok();
                        ask_offset = true;
                        continue;
                    }
                    None => {
                        return Err(UploadError::Failed(
                            "the server has every byte but did not complete the image; it is \
                             tried again next time"
                                .into(),
                        ))
                    }
                },
                Err(e) if e.kind() == ErrorKind::Gone => {
                    (*place, offset, watch) = start_of(create(ctx, job).await?);
                    continue;
                }
                Err(e) => {
                    failed_attempt(ctx, job, &mut retries, &e).await?;
                    ask_offset = true;
                    continue;
                }
            }
        }
        if let Some(w) = watch.as_mut() {
            if w.saw(offset) {
                // The other writer's progress is this upload's progress.
                retries.succeeded();
            }
            if !w.stalled() {
                interruptible(ctx, tokio::time::sleep(WATCH_POLL))
                    .await
                    .ok();
                ask_offset = true;
                continue;
            }
            tracing::info!(path = %job.path.display(), offset, "the other writer stopped; sending it here");
            watch = None;
            took_over = true;
        }
        let (size, prepare) = {
            let s = ctx.sizer.lock().unwrap_or_else(|p| p.into_inner());
            // Under a limit, a part takes about the target duration at the limit, not at the
            // link's rate, so a cut loses little.
            let cap = ctx
                .throttle
                .rate()
                .map_or(u64::MAX, |r| s.size_for_rate(r as f64));
            (
                s.next_size().min(cap).min(job.length - offset),
                s.largest_next().min(cap),
            )
        };
        let from = match ahead.take() {
            Some(a) => a.furthest(offset, size).await,
            None => blake3::Hasher::new(),
        };
        let sum = {
            let job = job.clone();
            tokio::task::spawn_blocking(move || checksum(&job, offset, size, from))
                .await
                .map_err(|e| UploadError::Failed(e.to_string()))??
        };
        let next = offset + size;
        if next < job.length {
            ahead = Some(Ahead::start(job, next, prepare.min(job.length - next)));
        } else {
            match still_settled(ctx, job).await {
                Err(UploadError::Cancelled) => {
                    ask_offset = true;
                    continue;
                }
                r => r?,
            }
        }
        let waited = Arc::new(AtomicU64::new(0));
        let body = body_of(job, offset, size, &ctx.throttle, &waited).await?;
        // The name the file has now goes with the last part: it may have been renamed since
        // the upload was created (in an earlier run, under another name).
        let name = (next == job.length).then(|| {
            let mut m = Metadata::default();
            put_name(&mut m, &job.path);
            m
        });
        let send = ctx
            .client
            .send_body(url, offset, size, &sum, body, name.as_ref());
        let sent = interruptible(ctx, send).await;
        let Ok(sent) = sent else {
            // Paused or cancelled mid-part: the part is abandoned.
            ahead = None;
            ask_offset = true;
            continue;
        };
        match sent {
            Ok(ack) => {
                retries.succeeded();
                conflicts = 0;
                took_over = false;
                cut_takeovers = 0;
                let waited = Duration::from_nanos(waited.load(Ordering::Relaxed));
                acknowledged(ctx, job, url, offset, size, ack.offset, ack.elapsed, waited)?;
                offset = ack.offset;
                if let Some(id) = ack.image_id {
                    return Ok(id);
                }
            }
            Err(e) if e.kind() == ErrorKind::OffsetMismatch => {
                conflicts += 1;
                if conflicts > MAX_CONFLICTS {
                    return Err(UploadError::Failed(format!(
                        "the server's offset keeps moving under this upload: {e}"
                    )));
                }
                ask_offset = true;
            }
            // Another writer of this upload (another process of this account) finished it:
            // HEAD names the image.
            Err(e) if e.kind() == ErrorKind::Finished => ask_offset = true,
            Err(e) if e.kind() == ErrorKind::Gone => {
                // The server dropped the upload (expired, removed): start a new one.
                tracing::info!(path = %job.path.display(), "upload gone on the server; starting again");
                (*place, offset, watch) = start_of(create(ctx, job).await?);
            }
            Err(e) if e.kind() == ErrorKind::DigestMismatch => return Err(UploadError::Changed),
            Err(e) if e.kind() == ErrorKind::Refused => {
                let _ = ctx.state.drop_pending(&ctx.server_key, &job.digest);
                return Err(UploadError::Failed(format!(
                    "the server refused the file: {e}"
                )));
            }
            // Another writer holds the upload: watch it rather than send into its lease again.
            Err(e) if e.kind() == ErrorKind::Busy => match retries.wait(LOCKED_PATIENCE) {
                Some(_) => {
                    watch = Some(Watch::new(offset));
                    ask_offset = true;
                }
                None => return Err(UploadError::Failed(plain(&e))),
            },
            // The server may refuse a body sent into another writer's lease by closing the
            // connection, before the 423 is read: the other writer is back, so watch again.
            Err(e) if took_over && e.kind() == ErrorKind::Network && cut_takeovers < 3 => {
                took_over = false;
                cut_takeovers += 1;
                watch = Some(Watch::new(offset));
                ask_offset = true;
            }
            Err(e) => {
                failed_attempt(ctx, job, &mut retries, &e).await?;
                ask_offset = true;
            }
        }
    }
}

/// A part went wrong: waits before the next attempt, or gives up.
async fn failed_attempt(
    ctx: &Ctx,
    job: &Job,
    retries: &mut Retries,
    e: &ClientError,
) -> Result<(), UploadError> {
    if !(e.is_transient() || e.kind() == ErrorKind::ChecksumMismatch) {
        return Err(UploadError::Failed(plain(e)));
    }
    retries.failures += 1;
    ctx.sizer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record_failure();
    if retries.failures >= ctx.max_attempts {
        return Err(UploadError::Failed(format!(
            "gave up after {} attempts: {}",
            retries.failures,
            plain(e)
        )));
    }
    // A full disk is not fixed in seconds.
    let wait = match e.kind() {
        ErrorKind::NoSpace => backoff(retries.failures).max(Duration::from_secs(5)),
        _ => backoff(retries.failures),
    };
    (ctx.events)(Event::Failed {
        path: job.path.clone(),
        reason: plain(e),
        next_retry: Some(SystemTime::now() + wait),
    });
    interruptible(ctx, tokio::time::sleep(wait)).await.ok();
    Ok(())
}

/// Records an acknowledged part: where the upload stands, the measured link, progress.
///
/// A part that spent a good share of its time waiting for the bandwidth limit measured the
/// limit, not the link: its bytes went into the socket as fast as the limit let them, so its
/// time less the waits says nothing either. The sizer keeps what it knew of the link.
#[allow(clippy::too_many_arguments)]
fn acknowledged(
    ctx: &Ctx,
    job: &Job,
    url: &str,
    from: u64,
    size: u64,
    to: u64,
    elapsed: Duration,
    waited: Duration,
) -> Result<(), UploadError> {
    let measured = waited < elapsed / 4;
    let (rate, next) = {
        let mut s = ctx.sizer.lock().unwrap_or_else(|p| p.into_inner());
        if measured {
            s.record(to.saturating_sub(from), elapsed.saturating_sub(waited));
        }
        (s.rate().unwrap_or(0.0), s.next_size())
    };
    save_pending(ctx, job, url, to)?;
    (ctx.events)(Event::Uploading {
        path: job.path.clone(),
        sent: to,
        total: job.length,
        rate,
        part_size: size,
    });
    if measured {
        ctx.state
            .put_setting(&format!("part_size:{}", ctx.server_key), &next.to_string())?;
    }
    Ok(())
}

async fn create(ctx: &Ctx, job: &Job) -> Result<Created, UploadError> {
    let mut m = Metadata::default();
    put_name(&mut m, &job.path);
    m.insert(meta::DIGEST, job.digest.to_string());
    m.insert(meta::SIZE, job.length.to_string());
    m.insert(meta::MTIME, (job.mtime_ns / 1_000_000_000).to_string());
    if let Some(id) = &job.identifier {
        m.insert(meta::IDENTIFIER, id.to_string());
    }
    if let Some(folder) = ctx.roots.folder_of(&job.path) {
        m.insert(meta::FOLDER, folder);
    }
    let mut retries = Retries::new();
    let created = loop {
        // Paused: no new upload is created on the server until resumed.
        ctx.control.wait_while_paused().await;
        if ctx.control.is_cancelled() {
            return Err(UploadError::Cancelled);
        }
        match interruptible(ctx, ctx.client.create_upload(job.length, &m)).await {
            Err(_) => {} // paused or cancelled: decided above
            Ok(Ok(created)) => break created,
            Ok(Err(e)) => failed_attempt(ctx, job, &mut retries, &e).await?,
        }
    };
    save_pending(ctx, job, &created.url, 0)?;
    Ok(created)
}

/// Persists where the upload stands, so a restart resumes it.
fn save_pending(ctx: &Ctx, job: &Job, url: &str, offset: u64) -> Result<(), UploadError> {
    ctx.state
        .put_pending(
            &ctx.server_key,
            &Pending {
                digest: job.digest,
                url: url.to_owned(),
                length: job.length,
                offset,
            },
        )
        .map_err(UploadError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_of(path: &Path) -> Job {
        let meta = std::fs::metadata(path).unwrap();
        Job {
            path: path.to_path_buf(),
            digest: Digest([0; 32]),
            length: meta.len(),
            mtime_ns: mtime_ns(&meta),
            identifier: None,
            quiet: Duration::ZERO,
        }
    }

    fn fresh() -> blake3::Hasher {
        blake3::Hasher::new()
    }

    #[test]
    fn a_part_checksum_covers_exactly_its_range_and_refuses_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let job = job_of(&path);
        assert_eq!(
            checksum(&job, 1000, 5000, fresh()).unwrap(),
            blake3::hash(&bytes[1000..6000])
        );
        assert_eq!(
            checksum(&job, 90_000, 10_000, fresh()).unwrap(),
            blake3::hash(&bytes[90_000..])
        );
        // Asked past the end: the file is not what was identified.
        assert_eq!(
            checksum(&job, 90_000, 10_001, fresh()).unwrap_err(),
            UploadError::Changed
        );
        std::fs::write(&path, &bytes[..50_000]).unwrap();
        assert_eq!(
            checksum(&job, 0, 10, fresh()).unwrap_err(),
            UploadError::Changed
        );
        assert_eq!(open_at(&job, 0).unwrap_err(), UploadError::Changed);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            checksum(&job, 0, 10, fresh()).unwrap_err(),
            UploadError::Gone
        );
    }

    #[tokio::test]
    async fn hashing_ahead_serves_any_part_size_from_where_it_began() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let bytes: Vec<u8> = (0..(6u32 << 20)).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let job = job_of(&path);
        let at = 1000;
        let limit = 3 * CHECKPOINT + 5;
        for (len, kept) in [
            (10, 0),
            (CHECKPOINT, CHECKPOINT),
            (5 * CHECKPOINT / 2, 2 * CHECKPOINT),
            (limit, limit),
            (limit + 1, 0), // further than it hashed: from the start
        ] {
            let from = Ahead::start(&job, at, limit).furthest(at, len).await;
            assert_eq!(from.count(), kept, "part of {len}");
            let end = (at + len) as usize;
            assert_eq!(
                checksum(&job, at, len, from).unwrap(),
                blake3::hash(&bytes[at as usize..end])
            );
        }
        // Hashing that began elsewhere (the server answered another offset) is not used.
        let from = Ahead::start(&job, at, limit)
            .furthest(at + 1, CHECKPOINT)
            .await;
        assert_eq!(from.count(), 0);
        // A file changed meanwhile: nothing kept, and the part's checksum says so.
        let ahead = Ahead::start(&job, at, limit);
        std::fs::write(&path, &bytes[..1 << 20]).unwrap();
        let from = ahead.furthest(at, 2 * CHECKPOINT).await;
        assert_eq!(
            checksum(&job, at, 2 * CHECKPOINT, from).unwrap_err(),
            UploadError::Changed
        );
    }
}
