//! The pipeline: walk, identify (or reuse), sync list, batched detection, decisions, uploads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use photosync_identify::{
    identify_file, sniff_format, BkTree, Distance, Identifier, IdentifyError, Limits,
};
use photosync_part_sizer::{PartSizer, SizerConfig};
use photosync_protocol::{DetectQuery, DetectResult};
use tokio::sync::{Notify, Semaphore};

use crate::client::{Client, ServerConfig};
use crate::events::{Event, EventSink, OnServer};
use crate::state::{FileRecord, MatchRecord, State, SyncedRecord};
use crate::throttle::Throttle;
use crate::upload::{self, mtime_ns, Job, UploadError};

#[derive(Debug, Clone)]
pub struct Options {
    pub server: ServerConfig,
    /// The local state database (sync list, file table, pending uploads).
    pub state_path: PathBuf,
    /// Uploads at once.
    pub concurrency: usize,
    /// Files identified at once (0: one per core).
    pub identify_threads: usize,
    /// The bandwidth limit, shared by every upload that holds this `Arc` (all engines of a
    /// process, when they are given the same one).
    pub bandwidth: Arc<Throttle>,
    /// Upload same-picture copies even when the server's copy is as large.
    pub upload_all_copies: bool,
    pub sizer: SizerConfig,
    /// Attempts per part before a file is reported failed.
    pub max_attempts: u32,
}

impl Options {
    pub fn new(server: ServerConfig, state_path: PathBuf) -> Options {
        Options {
            server,
            state_path,
            concurrency: 3,
            identify_threads: 0,
            bandwidth: Arc::default(),
            upload_all_copies: false,
            sizer: SizerConfig::default(),
            max_attempts: 8,
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub uploaded: usize,
    pub already_synced: usize,
    /// Held by the server already: same bytes, or the same picture at least as large.
    pub on_server: usize,
    pub skipped: Vec<(PathBuf, String)>,
    /// Files that look like images but could not be identified, with why: backed up by their
    /// bytes all the same.
    pub unidentified: Vec<(PathBuf, String)>,
    pub failed: Vec<(PathBuf, String)>,
    /// Entries that hold nothing to back up (a broken symbolic link): reported, not failed.
    pub warnings: Vec<(PathBuf, String)>,
    /// Files whose upload was stopped by a cancel; they resume next time.
    pub interrupted: Vec<PathBuf>,
    /// Files that changed while they were uploaded, to be read again.
    pub changed: Vec<PathBuf>,
    /// Wall time of each stage: walking and identifying, detection, uploading.
    pub identify_time: std::time::Duration,
    pub detect_time: std::time::Duration,
    pub upload_time: std::time::Duration,
}

impl Summary {
    /// Adds a later round's outcome to this one.
    pub fn absorb(&mut self, later: Summary) {
        self.uploaded += later.uploaded;
        self.already_synced += later.already_synced;
        self.on_server += later.on_server;
        self.skipped.extend(later.skipped);
        self.unidentified.extend(later.unidentified);
        self.failed.extend(later.failed);
        self.warnings.extend(later.warnings);
        self.interrupted.extend(later.interrupted);
        self.changed.extend(later.changed);
        self.identify_time += later.identify_time;
        self.detect_time += later.detect_time;
        self.upload_time += later.upload_time;
    }
}

/// How many times one `sync` reads again a file that changed while it was uploaded.
const REREADS: usize = 3;
const KEEPS_CHANGING: &str =
    "the file kept changing while it was being uploaded; it is read again next time";

/// Pause, resume and cancel, shared with whoever drives the engine.
#[derive(Debug, Default)]
pub struct Control {
    paused: AtomicBool,
    cancelled: AtomicBool,
    changed: Notify,
}

impl Control {
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Returns once `cancel` has been called.
    pub(crate) async fn cancelled(&self) {
        loop {
            let changed = self.changed.notified();
            if self.is_cancelled() {
                return;
            }
            changed.await;
        }
    }

    /// Returns once the user pauses or cancels.
    pub(crate) async fn interrupted(&self) {
        loop {
            let changed = self.changed.notified();
            if self.is_paused() || self.is_cancelled() {
                return;
            }
            changed.await;
        }
    }

    pub(crate) async fn wait_while_paused(&self) {
        while self.is_paused() && !self.is_cancelled() {
            let changed = self.changed.notified();
            if !self.is_paused() || self.is_cancelled() {
                break;
            }
            changed.await;
        }
    }
}

pub struct Engine {
    state: State,
    client: Client,
    options: Options,
    events: EventSink,
    control: Arc<Control>,
    sizer: Arc<Mutex<PartSizer>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("options", &self.options)
            .finish()
    }
}

/// The one skip made on purpose; every other skip is a file that cannot be backed up.
const EMPTY_FILE: &str = "empty file (0 bytes)";

/// One file after identification.
enum Known {
    File(FileRecord),
    /// Read, but not identifiable as a picture (why): backed up by its bytes.
    Unidentified(FileRecord, String),
    Skip(String),
    /// Not read: the run was cancelled first.
    Interrupted,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What the file table already knows of an unchanged file, without reading it.
fn known_unchanged(state: &State, path: &Path) -> Option<Known> {
    let meta = std::fs::metadata(path).ok()?;
    let (size, mtime) = (meta.len(), mtime_ns(&meta));
    if size == 0 {
        return Some(Known::Skip(EMPTY_FILE.into()));
    }
    // Earlier versions skipped an image they could not identify and noted it; such a file is
    // read again now, and backed up by its bytes.
    match state.file(path) {
        Ok(Some(rec)) if rec.size == size && rec.mtime_ns == mtime => Some(Known::File(rec)),
        _ => None,
    }
}

/// Lowers the calling thread's CPU priority (nice 10), so a big first scan leaves the computer
/// usable. On Linux the nice value is per thread; the blocking pool's threads keep it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn background_priority() {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    DONE.with(|done| {
        if !done.replace(true) {
            // SAFETY: setpriority has no memory effects; `who = 0` is the calling thread.
            let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            if r != 0 {
                tracing::debug!("could not lower the identification thread's priority");
            }
        }
    });
}

#[cfg(not(target_os = "linux"))]
fn background_priority() {}

/// Identity of one file: reads it.
/// A file read that stops with an error once the run is cancelled, so a stop does not wait for
/// a large video to be hashed to its end.
struct UnlessCancelled<'a, R> {
    inner: R,
    control: &'a Control,
}

impl<R: std::io::Read> std::io::Read for UnlessCancelled<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.control.is_cancelled() {
            return Err(std::io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}

fn know(state: &State, path: &Path, events: &EventSink, control: &Control) -> Known {
    background_priority();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Known::Skip(format!("cannot read: {e}")),
    };
    let (size, mtime) = (meta.len(), mtime_ns(&meta));
    if size == 0 {
        return Known::Skip(EMPTY_FILE.into());
    }
    events(Event::Identifying {
        path: path.to_path_buf(),
    });
    // The first bytes say whether this is an image at all; anything else (videos...) is backed
    // up by its digest alone, read once as a stream, however large.
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Known::Skip(format!("cannot read: {e}")),
    };
    let mut head = Vec::with_capacity(64);
    if let Err(e) = std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 64), &mut head) {
        return Known::Skip(format!("cannot read: {e}"));
    }
    let identified = match sniff_format(&head) {
        Err(IdentifyError::NotAnImage | IdentifyError::Unsupported(_)) => None,
        _ => Some(identify_file(path, &Limits::default())),
    };
    let (rec, unidentified) = match identified {
        Some(Ok(id)) => (
            FileRecord {
                size,
                mtime_ns: mtime,
                digest: id.digest.to_string(),
                identifier: Some(id.identifier.to_string()),
                pixels: Some(id.pixels()),
            },
            None,
        ),
        Some(Err(IdentifyError::Io(e))) => return Known::Skip(format!("cannot read: {e}")),
        // Emptied since it was looked at.
        Some(Err(IdentifyError::Empty)) => return Known::Skip(EMPTY_FILE.into()),
        // Corrupt, truncated, too large to decode: a photo all the same, and the one a person
        // can least afford to lose. Its bytes are what is backed up.
        Some(Err(e)) => match digest_of(&mut file, &[], control) {
            Ok(digest) => (bytes_only(size, mtime, digest), Some(e.to_string())),
            Err(known) => return known,
        },
        None => match digest_of(&mut file, &head, control) {
            Ok(digest) => (bytes_only(size, mtime, digest), None),
            Err(known) => return known,
        },
    };
    if let Err(e) = state.put_file(path, &rec) {
        tracing::warn!(error = %e, "file table not updated");
    }
    match unidentified {
        Some(reason) => Known::Unidentified(rec, reason),
        None => Known::File(rec),
    }
}

/// Files of one run by digest: the first record read, and every path holding those bytes.
type ByDigest = BTreeMap<String, (FileRecord, Vec<PathBuf>)>;

fn add_copy(by_digest: &mut ByDigest, rec: FileRecord, path: &Path) {
    by_digest
        .entry(rec.digest.clone())
        .or_insert_with(|| (rec, Vec::new()))
        .1
        .push(path.to_path_buf());
}

/// A file known by its bytes alone, with no picture identity.
fn bytes_only(size: u64, mtime_ns: i64, digest: String) -> FileRecord {
    FileRecord {
        size,
        mtime_ns,
        digest,
        identifier: None,
        pixels: None,
    }
}

/// The BLAKE3 of `head` followed by the rest of `file` from where it stands (from its start
/// when `head` is empty), read as a stream however large.
fn digest_of(file: &mut std::fs::File, head: &[u8], control: &Control) -> Result<String, Known> {
    if head.is_empty() {
        std::io::Seek::rewind(file).map_err(|e| Known::Skip(format!("cannot read: {e}")))?;
    }
    let mut h = blake3::Hasher::new();
    h.update(head);
    let reader = UnlessCancelled {
        inner: file,
        control,
    };
    match h.update_reader(reader) {
        Ok(_) => Ok(h.finalize().to_hex().to_string()),
        Err(_) if control.is_cancelled() => Err(Known::Interrupted),
        Err(e) => Err(Known::Skip(format!("cannot read: {e}"))),
    }
}

impl Engine {
    pub fn new(options: Options, events: EventSink) -> Result<Engine, String> {
        let state = State::open(&options.state_path).map_err(|e| e.to_string())?;
        let client = Client::new(options.server.clone()).map_err(|e| e.to_string())?;
        let remembered = state
            .setting(&format!("part_size:{}", options.server.key()))
            .ok()
            .flatten()
            .and_then(|s| s.parse().ok());
        Ok(Engine {
            sizer: Arc::new(Mutex::new(PartSizer::new(options.sizer, remembered))),
            state,
            client,
            options,
            events,
            control: Arc::default(),
        })
    }

    pub fn control(&self) -> Arc<Control> {
        self.control.clone()
    }

    /// The bandwidth limit its uploads share; a new rate applies at once.
    pub fn bandwidth(&self) -> &Arc<Throttle> {
        &self.options.bandwidth
    }

    /// The server's API, as this engine speaks to it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Asks the server again about everything instead of trusting the sync list, so a photo
    /// the list claims but the server lost is uploaded again.
    pub async fn recheck(&self, paths: &[PathBuf]) -> Summary {
        if let Err(e) = self.state.forget_synced(&self.options.server.key()) {
            let mut s = Summary::default();
            s.failed.push((PathBuf::new(), e.to_string()));
            return s;
        }
        self.sync(paths).await
    }

    /// Syncs every file under `paths` once. A file that changes while it is uploaded is read
    /// again and goes on with its new identity, a few times at most.
    pub async fn sync(&self, paths: &[PathBuf]) -> Summary {
        let mut summary = self.round(paths, std::time::Duration::ZERO).await;
        for _ in 0..REREADS {
            if summary.changed.is_empty() || self.control.is_cancelled() {
                break;
            }
            let again = std::mem::take(&mut summary.changed);
            summary.absorb(self.round(&again, std::time::Duration::ZERO).await);
        }
        if self.control.is_cancelled() {
            let left = std::mem::take(&mut summary.changed);
            summary.interrupted.extend(left);
        }
        for p in std::mem::take(&mut summary.changed) {
            self.emit(Event::Failed {
                path: p.clone(),
                reason: KEEPS_CHANGING.into(),
                next_retry: None,
            });
            summary.failed.push((p, KEEPS_CHANGING.into()));
        }
        summary
    }

    /// One pass over `paths`: each file's last part waits until the file has been left alone
    /// for `quiet`. Files that changed under their upload end in `changed`.
    pub(crate) async fn round(&self, paths: &[PathBuf], quiet: std::time::Duration) -> Summary {
        let mut summary = Summary::default();
        let emit = |e: Event| (self.events)(e);
        let started = std::time::Instant::now();

        // Absolute paths: the file table and the matches are keyed by path, whatever the cwd.
        let roots: Vec<PathBuf> = paths
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect();
        let walked =
            tokio::task::spawn_blocking(move || photosync_walk::walk(&roots).collect::<Vec<_>>())
                .await
                .unwrap_or_default();
        let mut files = Vec::new();
        // Overlapping paths (a folder and a file in it) name a file once.
        let mut listed = std::collections::HashSet::new();
        for entry in walked {
            match entry {
                Ok(p) if !listed.insert(p.clone()) => {}
                Ok(p) => {
                    emit(Event::Discovered { path: p.clone() });
                    files.push(p);
                }
                Err(e) if !e.kind.loses_data() => {
                    // Nothing here to lose: reported, not a failed backup.
                    emit(Event::Skipped {
                        path: e.path.clone(),
                        reason: e.reason.clone(),
                        problem: false,
                    });
                    summary.warnings.push((e.path, e.reason));
                }
                Err(e) => {
                    emit(Event::Failed {
                        path: e.path.clone(),
                        reason: e.reason.clone(),
                        next_retry: None,
                    });
                    summary.failed.push((e.path, e.reason));
                }
            }
        }
        // A walk that could not see everything (a folder unreadable for now) prunes nothing.
        if !summary
            .failed
            .iter()
            .any(|(p, _)| !p.as_os_str().is_empty())
        {
            self.prune_file_table(paths, &files).await;
        }

        // First pass, on one blocking thread: files whose size and mtime are unchanged are
        // answered from the file table without being read. This is what makes a rescan of an
        // unchanged library run at disk-metadata speed.
        let (state, list) = (self.state.clone(), files.clone());
        let cached: Vec<Option<Known>> = tokio::task::spawn_blocking(move || {
            list.iter().map(|p| known_unchanged(&state, p)).collect()
        })
        .await
        .unwrap_or_default();

        // The rest are identified on a bounded pool; results keep the walk order.
        let threads = match self.options.identify_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let permits = Arc::new(Semaphore::new(threads));
        let tasks: Vec<_> = files
            .iter()
            .zip(cached)
            .map(|(p, cached)| {
                let (state, events, permits, p, control) = (
                    self.state.clone(),
                    self.events.clone(),
                    permits.clone(),
                    p.clone(),
                    self.control.clone(),
                );
                // With whether the file was read now (new, changed, renamed) or known unchanged.
                async move {
                    match cached {
                        Some(k) => Ok((k, false)),
                        None => {
                            let _permit = permits.acquire_owned().await;
                            if control.is_cancelled() {
                                return Ok((Known::Interrupted, false));
                            }
                            tokio::task::spawn_blocking(move || know(&state, &p, &events, &control))
                                .await
                                .map(|k| (k, true))
                                .map_err(|e| e.to_string())
                        }
                    }
                }
            })
            .map(tokio::spawn)
            .collect();
        let mut by_digest = ByDigest::new();
        let mut read_now = std::collections::HashSet::new();
        for (path, task) in files.iter().zip(tasks) {
            let known = task.await.map_err(|e| e.to_string()).and_then(|r| r);
            if matches!(known, Ok((_, true))) {
                read_now.insert(path.clone());
            }
            match known.map(|(k, _)| k) {
                Ok(Known::File(rec)) => add_copy(&mut by_digest, rec, path),
                Ok(Known::Unidentified(rec, reason)) => {
                    emit(Event::Unidentified {
                        path: path.clone(),
                        reason: reason.clone(),
                    });
                    summary.unidentified.push((path.clone(), reason));
                    add_copy(&mut by_digest, rec, path);
                }
                Ok(Known::Skip(reason)) => {
                    emit(Event::Skipped {
                        path: path.clone(),
                        problem: reason != EMPTY_FILE,
                        reason: reason.clone(),
                    });
                    summary.skipped.push((path.clone(), reason));
                }
                Ok(Known::Interrupted) => summary.interrupted.push(path.clone()),
                Err(e) => summary.failed.push((path.clone(), e)),
            }
        }

        summary.identify_time = started.elapsed();
        let started = std::time::Instant::now();
        // The sync list answers first; only the rest goes to the server.
        let key = self.options.server.key();
        let mut ask = Vec::new();
        for (digest, (rec, paths)) in by_digest {
            if let Ok(Some(synced)) = self.state.synced(&key, &digest) {
                // Another local file with these bytes: "same bytes as ...". Looked up only for
                // files read now (a new or renamed copy), so a rescan stays at stat speed.
                let others = if paths.iter().any(|p| read_now.contains(p)) {
                    self.state.paths_of(&digest).unwrap_or_default()
                } else {
                    paths.clone()
                };
                for p in paths {
                    let same_as = others.iter().find(|k| **k != p).cloned();
                    emit(Event::AlreadySynced {
                        path: p,
                        remote_id: synced.remote_id,
                        same_as,
                    });
                    summary.already_synced += 1;
                }
            } else {
                ask.push((rec, paths));
            }
        }
        if ask.is_empty() {
            return summary;
        }
        if self.control.is_cancelled() {
            summary
                .interrupted
                .extend(ask.into_iter().flat_map(|(_, paths)| paths));
            return summary;
        }
        let queries: Vec<DetectQuery> = ask
            .iter()
            .map(|(rec, _)| DetectQuery {
                digest: rec.digest.clone(),
                identifier: rec.identifier.clone(),
            })
            .collect();
        let answers = match self.client.detect(&queries).await {
            Ok(a) => a,
            Err(e) => {
                let reason = format!("cannot ask the server: {e}");
                for (_, paths) in ask {
                    for p in paths {
                        emit(Event::Failed {
                            path: p.clone(),
                            reason: reason.clone(),
                            next_retry: None,
                        });
                        summary.failed.push((p, reason.clone()));
                    }
                }
                return summary;
            }
        };

        summary.detect_time = started.elapsed();
        let started = std::time::Instant::now();
        let mut uploads = Vec::new();
        for ((rec, paths), answer) in ask.into_iter().zip(answers) {
            match answer {
                DetectResult::SameBytes { image } => {
                    let marked = self.state.mark_synced(
                        &key,
                        &SyncedRecord {
                            digest: rec.digest.clone(),
                            identifier: rec.identifier.clone(),
                            remote_id: image.id,
                            how: "on_server".into(),
                            at: now(),
                        },
                    );
                    if let Err(e) = marked {
                        tracing::warn!(error = %e, "sync list not updated");
                    }
                    for p in paths {
                        emit(Event::OnServer {
                            path: p,
                            how: OnServer::SameBytes {
                                remote_id: image.id,
                                name: image.name.clone(),
                            },
                        });
                        summary.on_server += 1;
                    }
                }
                DetectResult::SamePicture { image, distance } => {
                    let remote_pixels = image
                        .width
                        .zip(image.height)
                        .map(|(w, h)| u64::from(w) * u64::from(h));
                    let how = OnServer::SamePicture {
                        remote_id: image.id,
                        name: image.name.clone(),
                        distance: distance.total,
                        remote_pixels,
                        local_pixels: rec.pixels,
                    };
                    let server_as_good = remote_pixels >= rec.pixels;
                    if server_as_good && !self.options.upload_all_copies && !self.forced(&paths) {
                        self.record_match(&key, &rec, &paths, &how);
                        for p in &paths {
                            emit(Event::OnServer {
                                path: p.clone(),
                                how: how.clone(),
                            });
                        }
                        summary.on_server += paths.len();
                    } else {
                        uploads.push((rec, paths));
                    }
                }
                DetectResult::Absent => uploads.push((rec, paths)),
            }
        }

        // Copies of one picture within this run: only the largest goes up, the rest follow it.
        // A copy a person forced goes up on its own.
        let (uploads, followers) = if self.options.upload_all_copies {
            (uploads, Vec::new())
        } else {
            let (forced, rest): (Batch, Batch) = uploads
                .into_iter()
                .partition(|(_, paths)| self.forced(paths));
            let (mut leaders, followers) = split_copies(rest);
            leaders.extend(forced);
            (leaders, followers)
        };

        let ctx = Arc::new(upload::Ctx {
            client: self.client.clone(),
            state: self.state.clone(),
            server_key: key.clone(),
            sizer: self.sizer.clone(),
            events: self.events.clone(),
            control: self.control.clone(),
            throttle: self.options.bandwidth.clone(),
            max_attempts: self.options.max_attempts,
        });
        let slots = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let mut running = Vec::new();
        for (rec, paths) in uploads {
            for p in &paths {
                emit(Event::Queued {
                    path: p.clone(),
                    bytes: rec.size,
                });
            }
            let (ctx, slots) = (ctx.clone(), slots.clone());
            let (copies, r) = (paths.clone(), rec.clone());
            running.push((
                rec,
                paths,
                tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    upload_any(&ctx, &r, &copies, quiet).await
                }),
            ));
        }
        let mut leaders = Vec::new();
        for (rec, paths, task) in running {
            let result = task
                .await
                .unwrap_or_else(|e| Err(UploadError::Failed(e.to_string())));
            leaders.push((paths[0].clone(), rec.pixels, result.clone()));
            self.record_upload(&key, &rec, paths, result, &mut summary);
        }
        for (rec, paths, leader, distance) in followers {
            let (leader_path, leader_pixels, result) = &leaders[leader];
            let how = match result {
                Ok(remote_id) => OnServer::SamePicture {
                    remote_id: *remote_id,
                    name: leader_path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    distance: distance.total(),
                    remote_pixels: *leader_pixels,
                    local_pixels: rec.pixels,
                },
                Err(_) => {
                    // The better copy did not make it; this one must go up itself.
                    let result = upload_any(&ctx, &rec, &paths, quiet).await;
                    self.record_upload(&key, &rec, paths, result, &mut summary);
                    continue;
                }
            };
            self.record_match(&key, &rec, &paths, &how);
            for p in paths {
                emit(Event::OnServer {
                    path: p,
                    how: how.clone(),
                });
                summary.on_server += 1;
            }
        }
        summary.upload_time = started.elapsed();
        summary
    }
}

impl Engine {
    pub(crate) fn emit(&self, e: Event) {
        (self.events)(e);
    }

    /// Forgets file-table rows under walked folders that the walk did not find.
    async fn prune_file_table(&self, roots: &[PathBuf], found: &[PathBuf]) {
        let folders: Vec<PathBuf> = roots
            .iter()
            .filter_map(|r| std::path::absolute(r).ok())
            .filter(|r| r.is_dir())
            .collect();
        if folders.is_empty() {
            return;
        }
        let found: std::collections::HashSet<PathBuf> = found.iter().cloned().collect();
        let state = self.state.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            folders
                .iter()
                .map(|f| state.prune_files(f, &found).unwrap_or(0))
                .sum::<usize>()
        })
        .await
        .unwrap_or(0);
        if pruned > 0 {
            tracing::debug!(pruned, "file table: forgot files that are gone");
        }
    }

    /// Asks for these files to be uploaded on the next sync even though the server holds the
    /// same picture at least as large. The caller then syncs them.
    pub fn force_upload(&self, files: &[PathBuf]) -> Result<(), String> {
        let key = self.options.server.key();
        for f in files {
            let f = std::path::absolute(f).map_err(|e| format!("{}: {e}", f.display()))?;
            self.state.force(&key, &f).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn forced(&self, paths: &[PathBuf]) -> bool {
        let key = self.options.server.key();
        paths
            .iter()
            .any(|p| matches!(self.state.is_forced(&key, p), Ok(true)))
    }

    /// Remembers that `paths` were left out because of a same-picture match, and why.
    fn record_match(&self, key: &str, rec: &FileRecord, paths: &[PathBuf], how: &OnServer) {
        let OnServer::SamePicture {
            remote_id,
            name,
            distance,
            remote_pixels,
            local_pixels,
        } = how
        else {
            return;
        };
        for p in paths {
            let m = MatchRecord {
                path: p.clone(),
                digest: rec.digest.clone(),
                remote_id: *remote_id,
                remote_name: name.clone(),
                distance: *distance,
                remote_pixels: *remote_pixels,
                local_pixels: *local_pixels,
                at: now(),
            };
            if let Err(e) = self.state.put_match(key, &m) {
                tracing::warn!(error = %e, "match not recorded");
            }
        }
    }

    /// An upload's outcome: on the server's success response, and only then, the sync list
    /// learns the file; every path holding it gets its event.
    fn record_upload(
        &self,
        key: &str,
        rec: &FileRecord,
        paths: Vec<PathBuf>,
        result: Result<i64, UploadError>,
        summary: &mut Summary,
    ) {
        match result {
            Ok(remote_id) => {
                let marked = self.state.mark_synced(
                    key,
                    &SyncedRecord {
                        digest: rec.digest.clone(),
                        identifier: rec.identifier.clone(),
                        remote_id,
                        how: "uploaded".into(),
                        at: now(),
                    },
                );
                if let Err(e) = marked.and_then(|()| self.state.clear_match(key, &paths)) {
                    tracing::warn!(error = %e, "sync list not updated");
                }
                for p in paths {
                    (self.events)(Event::Uploaded { path: p, remote_id });
                    summary.uploaded += 1;
                }
            }
            Err(UploadError::Cancelled) => summary.interrupted.extend(paths),
            Err(UploadError::Changed) => {
                for p in &paths {
                    // Size and mtime may be what the file table holds (an edit that kept
                    // them): forgotten, so reading it again reads it.
                    if let Err(e) = self.state.forget_file(p) {
                        tracing::warn!(error = %e, "file table not updated");
                    }
                }
                summary.changed.extend(paths);
            }
            Err(e @ UploadError::Gone) => {
                // Nothing left here to back up; not a failure of the backup.
                for p in paths {
                    (self.events)(Event::Skipped {
                        path: p.clone(),
                        reason: e.to_string(),
                        problem: false,
                    });
                    summary.warnings.push((p, e.to_string()));
                }
            }
            Err(UploadError::Failed(reason)) => {
                for p in paths {
                    (self.events)(Event::Failed {
                        path: p.clone(),
                        reason: reason.clone(),
                        next_retry: None,
                    });
                    summary.failed.push((p, reason.clone()));
                }
            }
        }
    }
}

/// Uploads the bytes of `rec` from the first of `paths` still there: a copy moved away during
/// its upload hands over to the next one.
async fn upload_any(
    ctx: &upload::Ctx,
    rec: &FileRecord,
    paths: &[PathBuf],
    quiet: std::time::Duration,
) -> Result<i64, UploadError> {
    let mut result = Err(UploadError::Gone);
    for p in paths {
        result = upload::upload(ctx, &Job::new(rec, p, quiet)).await;
        if result != Err(UploadError::Gone) {
            break;
        }
    }
    result
}

type Batch = Vec<(FileRecord, Vec<PathBuf>)>;
type Followers = Vec<(FileRecord, Vec<PathBuf>, usize, Distance)>;

/// Splits uploads into leaders (the largest copy of each picture, and every non-image) and
/// followers (other copies of a leader's picture, with the leader's index and distance).
fn split_copies(uploads: Batch) -> (Batch, Followers) {
    let mut order: Vec<_> = uploads.into_iter().collect();
    order.sort_by_key(|(rec, _)| std::cmp::Reverse(rec.pixels.unwrap_or(0)));
    let mut leaders: Batch = Vec::new();
    let mut followers = Vec::new();
    let mut tree = BkTree::new();
    for (rec, paths) in order {
        let id = rec
            .identifier
            .as_deref()
            .and_then(|t| t.parse::<Identifier>().ok());
        if let Some(id) = id {
            if let Some((&leader, d)) = tree
                .same_picture(&id)
                .into_iter()
                .min_by_key(|(_, d)| d.total())
            {
                followers.push((rec, paths, leader, d));
                continue;
            }
            tree.insert(id, leaders.len());
        }
        leaders.push((rec, paths));
    }
    (leaders, followers)
}
