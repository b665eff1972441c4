//! One pass over some folders, as a pipeline of stages joined by bounded channels:
//!
//! walk + file table (one blocking thread) → identify (a bounded pool) → sync list →
//! detection in micro-batches → uploads (a bounded number at once).
//!
//! Each stage works while the others do, so the first upload starts within seconds however
//! large the library, and memory is bounded by the channels and batches, not by the library.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use photosync_identify::Digest;
use photosync_protocol::{DetectQuery, DetectResult};
use photosync_walk::WalkError;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::claims::{outcome_of, Claim, Claims};
use super::decide::{verdict, Copies, Photo, Placed, Policy, Verdict};
use super::know::{know, Known, EMPTY_FILE, NOT_MEDIA};
use super::scan::{Scan, Scanned};
use super::{Control, Engine, Summary};
use crate::state::{FileRecord, How, MatchRecord, State, SyncedRecord};
use crate::upload::{self, Job, UploadError};
use photosync_events::{Event, EventSink, OnServer, Standing};

/// Walked entries waiting to be identified.
const SCANNED_QUEUE: usize = 1024;
/// Known files waiting for the sync list and detection.
const KNOWN_QUEUE: usize = 256;
/// Detection asks about at most this many files at once...
const BATCH: usize = 256;
/// ...or about what has arrived when nothing more came for this long...
const BATCH_GAP: Duration = Duration::from_millis(250);
/// ...or when the oldest file has waited this long.
const BATCH_WAIT: Duration = Duration::from_secs(1);
/// Attempts of one detection request before its files are failed (retried by a later round).
const DETECT_ATTEMPTS: u32 = 3;
/// Files waiting for an upload slot at most: past this, no more files are taken in until
/// uploads catch up, so a slow link holds back identification rather than filling memory.
const QUEUED_MAX: usize = 512;

/// A file (and its same-bytes copies) of this run, until it is settled.
type Id = usize;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Time during which a stage had work in hand.
#[derive(Default)]
struct Busy {
    since: Option<Instant>,
    total: Duration,
}

impl Busy {
    fn set(&mut self, busy: bool) {
        match (busy, self.since) {
            (true, None) => self.since = Some(Instant::now()),
            (false, Some(since)) => {
                self.total += since.elapsed();
                self.since = None;
            }
            _ => {}
        }
    }

    fn total(&mut self) -> Duration {
        self.set(false);
        self.total
    }
}

/// A file known, or an entry the walk could not visit.
enum Item {
    Known {
        path: PathBuf,
        known: Known,
        /// Read in this run (new, changed or renamed), not answered from the file table.
        read_now: bool,
    },
    Problem(WalkError),
}

/// The identification stage: files the file table did not know are read on a bounded pool.
struct Identify {
    state: State,
    events: EventSink,
    control: Arc<Control>,
    all_files: bool,
    threads: usize,
}

impl Identify {
    /// Returns how long at least one file was being read.
    async fn run(self, mut rx: mpsc::Receiver<Scanned>, tx: mpsc::Sender<Item>) -> Duration {
        let mut reading: JoinSet<Item> = JoinSet::new();
        let mut paths = HashMap::new();
        let mut busy = Busy::default();
        let mut open = true;
        while open || !reading.is_empty() {
            let out = tokio::select! {
                scanned = rx.recv(), if open && reading.len() < self.threads => match scanned {
                    None => {
                        open = false;
                        continue;
                    }
                    Some(Scanned::Known(path, known)) => Item::Known { path, known, read_now: false },
                    Some(Scanned::Problem(e)) => Item::Problem(e),
                    Some(Scanned::Read(path)) if self.control.is_cancelled() => {
                        Item::Known { path, known: Known::Interrupted, read_now: false }
                    }
                    Some(Scanned::Read(path)) => {
                        let (state, events, control) =
                            (self.state.clone(), self.events.clone(), self.control.clone());
                        let (p, all_files) = (path.clone(), self.all_files);
                        let task = reading.spawn_blocking(move || {
                            let known = know(&state, &p, &events, &control, all_files);
                            Item::Known { path: p, known, read_now: true }
                        });
                        paths.insert(task.id(), path);
                        busy.set(true);
                        continue;
                    }
                },
                Some(done) = reading.join_next_with_id(), if !reading.is_empty() => {
                    if reading.is_empty() {
                        busy.set(false);
                    }
                    match done {
                        Ok((task, item)) => {
                            paths.remove(&task);
                            item
                        }
                        Err(e) => {
                            // A reader that panicked: the file is a failure, not lost.
                            let path = paths.remove(&e.id()).unwrap_or_default();
                            let known = Known::Unreadable(format!("cannot read: {e}"));
                            Item::Known { path, known, read_now: true }
                        }
                    }
                },
            };
            if tx.send(out).await.is_err() {
                break;
            }
        }
        busy.total()
    }
}

/// Where a file of this run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for detection.
    Asking,
    /// Waiting for an upload slot.
    Queued,
    Uploading,
    /// Waiting for the outcome of a larger copy of its picture (`Copies` knows which).
    Following,
}

struct Entry {
    rec: FileRecord,
    /// Every path of this run holding these bytes.
    paths: Vec<PathBuf>,
    /// How many of `paths` its upload was given (copies found later are added after them).
    tried: usize,
    stage: Stage,
    /// The server's copy of its picture it goes up beside, if any.
    beside: Option<OnServer>,
}

/// How an upload task ended with an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// This pass sent the bytes.
    Uploaded(i64),
    /// Another pass of the engine sent them meanwhile.
    ByAnotherPass(i64),
}

impl Sent {
    fn remote_id(self) -> i64 {
        match self {
            Sent::Uploaded(id) | Sent::ByAnotherPass(id) => id,
        }
    }
}

/// The files of one pass between detection and their outcome.
struct Run<'a> {
    engine: &'a Engine,
    ctx: Arc<upload::Ctx>,
    quiet: Duration,
    started: Instant,
    summary: Summary,
    entries: HashMap<Id, Entry>,
    by_digest: HashMap<Digest, Id>,
    next_id: Id,
    asking: Vec<Id>,
    first_asking: Option<Instant>,
    last_arrival: Instant,
    copies: Copies<Id, Photo>,
    queue: VecDeque<Id>,
    uploads: JoinSet<Result<Sent, UploadError>>,
    uploading: HashMap<tokio::task::Id, Id>,
    upload_busy: Busy,
}

impl Engine {
    /// One pass over `paths`: each file's last part waits until the file has been left alone
    /// for `quiet`. Files that changed under their upload end in `changed`.
    pub(crate) async fn round(&self, paths: &[PathBuf], quiet: Duration) -> Summary {
        let started = Instant::now();
        // Absolute paths: the file table and the matches are keyed by path, whatever the cwd.
        let roots: Vec<PathBuf> = paths
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect();
        let (scanned_tx, scanned_rx) = mpsc::channel(SCANNED_QUEUE);
        let scan = Scan {
            state: self.state.clone(),
            server: self.options.server.key(),
            events: self.events.clone(),
            control: self.control.clone(),
            all_files: self.options.all_files,
        };
        let walk = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let synced = scan.run(&roots, &scanned_tx);
            (t.elapsed(), synced)
        });
        let (known_tx, known_rx) = mpsc::channel(KNOWN_QUEUE);
        let identify = Identify {
            state: self.state.clone(),
            events: self.events.clone(),
            control: self.control.clone(),
            all_files: self.options.all_files,
            threads: match self.options.identify_threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
        };
        let identify = tokio::spawn(identify.run(scanned_rx, known_tx));

        let mut run = Run::new(self, quiet, started);
        run.drive(known_rx).await;
        let mut summary = run.finish();
        match walk.await {
            Ok((walked, synced)) => {
                summary.stages.walk = walked;
                summary.already_synced += synced;
            }
            Err(e) => summary.aborted = Some(format!("the walk stopped: {e}")),
        }
        match identify.await {
            Ok(busy) => summary.stages.identify = busy,
            Err(e) => summary.aborted = Some(format!("identification stopped: {e}")),
        }
        summary
    }
}

impl<'a> Run<'a> {
    fn new(engine: &'a Engine, quiet: Duration, started: Instant) -> Run<'a> {
        let ctx = Arc::new(upload::Ctx {
            client: engine.client.clone(),
            state: engine.state.clone(),
            server_key: engine.options.server.key(),
            sizer: engine.sizer.clone(),
            events: engine.events.clone(),
            control: engine.control.clone(),
            throttle: engine.options.bandwidth.clone(),
            max_attempts: engine.options.max_attempts,
            roots: engine.roots.clone(),
        });
        Run {
            engine,
            ctx,
            quiet,
            started,
            summary: Summary::default(),
            entries: HashMap::new(),
            by_digest: HashMap::new(),
            next_id: 0,
            asking: Vec::new(),
            first_asking: None,
            last_arrival: Instant::now(),
            copies: Copies::default(),
            queue: VecDeque::new(),
            uploads: JoinSet::new(),
            uploading: HashMap::new(),
            upload_busy: Busy::default(),
        }
    }

    fn emit(&self, e: Event) {
        self.engine.emit(e);
    }

    fn finish(mut self) -> Summary {
        self.summary.stages.upload = self.upload_busy.total();
        self.summary
    }

    /// Takes known files until the stages before are done, and settles every one of them.
    async fn drive(&mut self, mut known: mpsc::Receiver<Item>) {
        let mut open = true;
        loop {
            self.start_uploads();
            if !open && self.asking.is_empty() && self.queue.is_empty() && self.uploads.is_empty() {
                break;
            }
            let batch_due = self.batch_due();
            tokio::select! {
                item = known.recv(), if open && self.queue.len() < QUEUED_MAX => match item {
                    Some(item) => {
                        self.take(item);
                        if self.asking.len() >= BATCH {
                            self.detect().await;
                        }
                    }
                    None => {
                        open = false;
                        self.detect().await;
                    }
                },
                Some(done) = self.uploads.join_next_with_id(), if !self.uploads.is_empty() => {
                    let (task, result) = match done {
                        Ok((task, r)) => (task, r),
                        Err(e) => (e.id(), Err(UploadError::Failed(e.to_string()))),
                    };
                    if self.uploads.is_empty() {
                        self.upload_busy.set(false);
                    }
                    if let Some(id) = self.uploading.remove(&task) {
                        self.settle(id, result);
                    }
                }
                () = tokio::time::sleep_until(batch_due.unwrap_or_else(far_future).into()),
                    if batch_due.is_some() => self.detect().await,
            }
        }
        debug_assert!(self.entries.is_empty(), "every file of the run is settled");
        debug_assert_eq!(self.copies.len(), 0);
    }

    /// When the files waiting for detection are to be asked about.
    fn batch_due(&self) -> Option<Instant> {
        let first = self.first_asking?;
        Some((self.last_arrival + BATCH_GAP).min(first + BATCH_WAIT))
    }

    fn take(&mut self, item: Item) {
        let (path, known, read_now) = match item {
            Item::Problem(e) if !e.kind.loses_data() => {
                // Nothing here to lose: reported, not a failed backup.
                self.emit(Event::Skipped {
                    path: e.path.clone(),
                    reason: e.reason.clone(),
                    problem: false,
                });
                self.summary.warnings.push((e.path, e.reason));
                return;
            }
            Item::Problem(e) => return self.fail(vec![e.path], &e.reason),
            Item::Known {
                path,
                known,
                read_now,
            } => (path, known, read_now),
        };
        match known {
            // Answered by the walk itself; not sent on.
            Known::Synced(_) => {}
            Known::File(rec) => self.add(path, rec, read_now),
            Known::Unidentified(rec, reason) => {
                self.emit(Event::Unidentified {
                    path: path.clone(),
                    reason: reason.clone(),
                });
                self.summary.unidentified.push((path.clone(), reason));
                self.add(path, rec, read_now);
            }
            Known::NotMedia => {
                self.emit(Event::Skipped {
                    path: path.clone(),
                    reason: NOT_MEDIA.into(),
                    problem: false,
                });
                self.summary.not_media.push(path);
            }
            Known::Empty => {
                self.emit(Event::Skipped {
                    path: path.clone(),
                    reason: EMPTY_FILE.into(),
                    problem: false,
                });
                self.summary.skipped.push((path, EMPTY_FILE.into()));
            }
            Known::Unreadable(reason) => self.fail(vec![path], &reason),
            Known::Interrupted => self.summary.interrupted.push(path),
        }
    }

    /// A file with its digest: the same bytes as a file on its way, in the sync list, or to
    /// be asked about.
    fn add(&mut self, path: PathBuf, rec: FileRecord, read_now: bool) {
        if let Some(&id) = self.by_digest.get(&rec.digest) {
            if let Some(e) = self.entries.get_mut(&id) {
                if matches!(e.stage, Stage::Queued | Stage::Uploading) {
                    self.engine.emit(Event::Queued {
                        path: path.clone(),
                        bytes: rec.size,
                        beside: e.beside.clone(),
                    });
                }
                e.paths.push(path);
                return;
            }
        }
        let state = &self.engine.state;
        if let Ok(Some(synced)) = state.synced(&self.ctx.server_key, &rec.digest) {
            // Another local file with these bytes: "same bytes as ...". Looked up only for
            // files read now (a new or renamed copy), so a rescan stays at stat speed.
            let same_as = if read_now {
                state
                    .paths_of(&rec.digest)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|k| *k != path)
            } else {
                None
            };
            self.emit(Event::AlreadySynced {
                path,
                remote_id: synced.remote_id,
                same_as,
            });
            self.summary.already_synced += 1;
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_digest.insert(rec.digest, id);
        self.entries.insert(
            id,
            Entry {
                rec,
                paths: vec![path],
                tried: 0,
                stage: Stage::Asking,
                beside: None,
            },
        );
        self.ask_later(id);
    }

    /// Puts a file in the next detect batch.
    fn ask_later(&mut self, id: Id) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.stage = Stage::Asking;
            self.asking.push(id);
            self.last_arrival = Instant::now();
            self.first_asking.get_or_insert(self.last_arrival);
        }
    }

    /// Asks the server about the files waiting, in one request.
    async fn detect(&mut self) {
        self.first_asking = None;
        let ids = std::mem::take(&mut self.asking);
        if ids.is_empty() {
            return;
        }
        if self.engine.control.is_cancelled() {
            for id in ids {
                self.interrupt(id);
            }
            return;
        }
        let queries: Vec<DetectQuery> = ids
            .iter()
            .filter_map(|id| self.entries.get(id))
            .map(|e| DetectQuery {
                digest: e.rec.digest.to_string(),
                identifier: e.rec.identifier.map(|i| i.to_string()),
            })
            .collect();
        let asked = Instant::now();
        let answers = self.ask(&queries).await;
        self.summary.stages.detect += asked.elapsed();
        let Some(answers) = answers else {
            for id in ids {
                self.interrupt(id);
            }
            return;
        };
        match answers {
            Ok(answers) if answers.len() == ids.len() => {
                for (id, answer) in ids.into_iter().zip(answers) {
                    self.decide(id, &answer);
                }
            }
            Ok(answers) => {
                let why = format!(
                    "cannot ask the server: {} answers to {} questions",
                    answers.len(),
                    ids.len()
                );
                self.unanswered(ids, &why);
            }
            Err(e) => self.unanswered(ids, &format!("cannot ask the server: {e}")),
        }
    }

    /// The server could not be asked. A file it was found to hold before (a same-picture
    /// match on record, for these very bytes) stays backed up as then: a server away for a
    /// moment turns no backed-up file into a failure. The others fail, to be retried.
    fn unanswered(&mut self, ids: Vec<Id>, why: &str) {
        let known: HashMap<PathBuf, MatchRecord> =
            match self.engine.state.matches(&self.ctx.server_key) {
                Ok(all) => all.into_iter().map(|m| (m.path.clone(), m)).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "matches not read");
                    HashMap::new()
                }
            };
        let mut failed = Vec::new();
        for id in ids {
            let held = self.entries.get(&id).and_then(|e| {
                if self.engine.forced(&e.paths) {
                    return None;
                }
                let first = known.get(&e.paths[0])?;
                let all_held = e.paths.iter().all(|p| {
                    known
                        .get(p)
                        .is_some_and(|m| m.digest == e.rec.digest && m.remote_id == first.remote_id)
                });
                all_held.then(|| OnServer::from(first))
            });
            match held {
                Some(how) => {
                    if let Some(e) = self.remove(id) {
                        self.on_server(e.paths, &how);
                    }
                }
                None => failed.push(id),
            }
        }
        self.fail_all(failed, why);
    }

    /// One detection request, asked again after a pause when the network or the server
    /// failed for a moment. `None`: the run was cancelled meanwhile.
    async fn ask(
        &self,
        queries: &[DetectQuery],
    ) -> Option<Result<Vec<DetectResult>, crate::client::ClientError>> {
        let control = &self.engine.control;
        let mut wait = Duration::from_secs(1);
        let mut attempt = 1;
        loop {
            let answer = tokio::select! {
                a = self.engine.client.detect(queries) => a,
                () = control.cancelled() => return None,
            };
            match answer {
                Err(e) if e.is_transient() && attempt < DETECT_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "detection failed; asking again");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = control.cancelled() => return None,
                    }
                    wait *= 2;
                    attempt += 1;
                }
                other => return Some(other),
            }
        }
    }

    fn fail_all(&mut self, ids: Vec<Id>, reason: &str) {
        for id in ids {
            if let Some(e) = self.remove(id) {
                self.fail(e.paths, reason);
            }
        }
    }

    /// The decision for one file the server has answered about.
    fn decide(&mut self, id: Id, answer: &DetectResult) {
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        let upload_all_copies = self.engine.options.upload_all_copies;
        let forced =
            !matches!(answer, DetectResult::SameBytes { .. }) && self.engine.forced(&entry.paths);
        let policy = Policy {
            upload_all_copies,
            forced,
        };
        let photo = Photo::of(&entry.rec);
        match verdict(answer, photo.as_ref(), policy) {
            Verdict::OnServer(how) => {
                if let Some(e) = self.remove(id) {
                    if let OnServer::SameBytes { remote_id, .. } = how {
                        mark_synced(&self.ctx, &e.rec, remote_id, How::OnServer);
                    } else {
                        self.record_match(&e.rec, &e.paths, &how);
                    }
                    self.on_server(e.paths, &how);
                }
            }
            Verdict::Upload { why } => {
                // The latest answer stands (a copy asked about again may find none now).
                if let Some(e) = self.entries.get_mut(&id) {
                    e.beside = why;
                }
                self.place(id, photo, upload_all_copies || forced);
            }
        }
    }

    /// Copies of one picture within this run: only the best goes up, the rest follow it. A
    /// copy a person forced, or every copy when asked, goes up on its own.
    fn place(&mut self, id: Id, photo: Option<Photo>, on_its_own: bool) {
        match photo {
            Some(p) if !on_its_own => {
                let changes = self.copies.place(id, p);
                self.apply(changes);
            }
            _ => self.enqueue(id),
        }
    }

    fn apply(&mut self, changes: Vec<Placed<Id>>) {
        for change in changes {
            match change {
                Placed::Lead(id) => self.enqueue(id),
                Placed::Follow { id, .. } => {
                    self.queue.retain(|q| *q != id);
                    if let Some(e) = self.entries.get_mut(&id) {
                        e.stage = Stage::Following;
                    }
                }
            }
        }
    }

    fn enqueue(&mut self, id: Id) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if matches!(e.stage, Stage::Queued | Stage::Uploading) {
            return;
        }
        e.stage = Stage::Queued;
        for p in &e.paths {
            self.engine.emit(Event::Queued {
                path: p.clone(),
                bytes: e.rec.size,
                beside: e.beside.clone(),
            });
        }
        self.queue.push_back(id);
    }

    /// Starts queued uploads while slots are free.
    fn start_uploads(&mut self) {
        let slots = self.engine.options.concurrency.max(1);
        while self.uploads.len() < slots {
            let Some(id) = self.queue.pop_front() else {
                return;
            };
            if self.engine.control.is_cancelled() {
                self.interrupt(id);
                continue;
            }
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            e.stage = Stage::Uploading;
            e.tried = e.paths.len();
            self.copies.started(id);
            let (ctx, rec, paths, quiet) =
                (self.ctx.clone(), e.rec.clone(), e.paths.clone(), self.quiet);
            let claims = self.engine.claims.clone();
            let task = self
                .uploads
                .spawn(async move { upload_claimed(&ctx, &claims, &rec, &paths, quiet).await });
            self.uploading.insert(task.id(), id);
            self.upload_busy.set(true);
            self.summary
                .stages
                .first_upload
                .get_or_insert(self.started.elapsed());
        }
    }

    /// An upload's outcome, for the file and the copies that followed it.
    fn settle(&mut self, id: Id, result: Result<Sent, UploadError>) {
        if result == Err(UploadError::Gone) && self.try_later_copies(id) {
            return;
        }
        let Some(leader) = self.remove(id) else {
            return;
        };
        match &result {
            Ok(sent) => {
                for (f, distance) in self.copies.settled(id) {
                    let Some(e) = self.remove(f) else { continue };
                    let how = OnServer::SamePicture {
                        remote_id: sent.remote_id(),
                        name: file_name(&leader.paths[0]),
                        distance,
                        remote_pixels: leader.rec.pixels,
                        local_pixels: e.rec.pixels,
                        // It followed a copy that covers it.
                        standing: Standing::AtLeastAsGood,
                    };
                    self.record_match(&e.rec, &e.paths, &how);
                    self.on_server(e.paths, &how);
                }
            }
            Err(UploadError::Cancelled) => {
                for f in self.copies.abandoned(id) {
                    self.interrupt(f);
                }
            }
            // The better copy did not make it: the copies that followed it are asked about
            // again (another copy may be on the server by now), and one of them goes up.
            Err(_) => {
                for f in self.copies.failed(id) {
                    self.ask_later(f);
                }
            }
        }
        if let (Ok(Sent::Uploaded(_)), Some(how)) = (&result, &leader.beside) {
            let reason = how.reason();
            for p in &leader.paths {
                self.summary.beside.push((p.clone(), reason.clone()));
            }
        }
        self.record_upload(leader.paths, result);
    }

    /// The paths an upload was given are all gone, but copies with the same bytes were found
    /// after it started: those go up instead. False when there are none.
    fn try_later_copies(&mut self, id: Id) -> bool {
        let Some(e) = self.entries.get_mut(&id) else {
            return false;
        };
        if e.paths.len() <= e.tried {
            return false;
        }
        let gone: Vec<PathBuf> = e.paths.drain(..e.tried).collect();
        e.tried = 0;
        // Its upload has ended: it may be queued again.
        e.stage = Stage::Asking;
        self.record_upload(gone, Err(UploadError::Gone));
        self.enqueue(id);
        true
    }

    /// Forgets a file of the run: it is settled.
    fn remove(&mut self, id: Id) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        self.by_digest.remove(&e.rec.digest);
        Some(e)
    }

    /// A file left for next time because the run was cancelled, with its followers.
    fn interrupt(&mut self, id: Id) {
        if let Some(e) = self.remove(id) {
            self.summary.interrupted.extend(e.paths);
        }
        for f in self.copies.abandoned(id) {
            self.interrupt(f);
        }
    }

    fn fail(&mut self, paths: Vec<PathBuf>, reason: &str) {
        for p in paths {
            self.emit(Event::Failed {
                path: p.clone(),
                reason: reason.into(),
                next_retry: None,
            });
            self.summary.failed.push((p, reason.into()));
        }
    }

    fn on_server(&mut self, paths: Vec<PathBuf>, how: &OnServer) {
        for p in paths {
            self.emit(Event::OnServer {
                path: p,
                how: how.clone(),
            });
            self.summary.on_server += 1;
        }
    }

    /// Remembers that `paths` were left out because of a same-picture match, and why.
    fn record_match(&self, rec: &FileRecord, paths: &[PathBuf], how: &OnServer) {
        let OnServer::SamePicture {
            remote_id,
            name,
            distance,
            remote_pixels,
            local_pixels,
            ..
        } = how
        else {
            return;
        };
        for p in paths {
            let m = MatchRecord {
                path: p.clone(),
                digest: rec.digest,
                remote_id: *remote_id,
                remote_name: name.clone(),
                distance: *distance,
                remote_pixels: *remote_pixels,
                local_pixels: *local_pixels,
                at: now(),
            };
            if let Err(e) = self.engine.state.put_match(&self.ctx.server_key, &m) {
                tracing::warn!(error = %e, "match not recorded");
            }
        }
    }

    /// An upload's outcome: every path holding it gets its event. (The sync list learnt an
    /// upload in its task, on the server's success response.)
    fn record_upload(&mut self, paths: Vec<PathBuf>, result: Result<Sent, UploadError>) {
        match result {
            Ok(Sent::ByAnotherPass(remote_id)) => {
                for p in paths {
                    self.emit(Event::AlreadySynced {
                        path: p,
                        remote_id,
                        same_as: None,
                    });
                    self.summary.already_synced += 1;
                }
            }
            Ok(Sent::Uploaded(remote_id)) => {
                if let Err(e) = self.engine.state.clear_match(&self.ctx.server_key, &paths) {
                    tracing::warn!(error = %e, "sync list not updated");
                }
                for p in paths {
                    self.summary.uploaded_kinds.count(&p);
                    self.emit(Event::Uploaded { path: p, remote_id });
                    self.summary.uploaded += 1;
                }
            }
            Err(UploadError::Cancelled) => self.summary.interrupted.extend(paths),
            Err(UploadError::Changed) => {
                for p in &paths {
                    // Size and mtime may be what the file table holds (an edit that kept
                    // them): forgotten, so reading it again reads it.
                    if let Err(e) = self.engine.state.forget_file(p) {
                        tracing::warn!(error = %e, "file table not updated");
                    }
                }
                self.summary.changed.extend(paths);
            }
            Err(e @ UploadError::Gone) => {
                // Nothing left here to back up; not a failure of the backup.
                for p in paths {
                    self.emit(Event::Skipped {
                        path: p.clone(),
                        reason: e.to_string(),
                        problem: false,
                    });
                    self.summary.warnings.push((p, e.to_string()));
                }
            }
            Err(UploadError::Failed(reason)) => self.fail(paths, &reason),
        }
    }
}

/// Writes `rec` into the sync list. Call only after the server said it holds the bytes.
fn mark_synced(ctx: &upload::Ctx, rec: &FileRecord, remote_id: i64, how: How) {
    let marked = ctx.state.mark_synced(
        &ctx.server_key,
        &SyncedRecord {
            digest: rec.digest,
            identifier: rec.identifier,
            remote_id,
            how,
            at: now(),
        },
    );
    if let Err(e) = marked {
        tracing::warn!(error = %e, "sync list not updated");
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Uploads the bytes of `rec` unless another pass of this engine is sending them: then waits
/// for that upload, and sends them itself only if it ends without an image. The sync list
/// learns an upload here, before the claim is given back, so a pass that claims the digest
/// next finds it there.
async fn upload_claimed(
    ctx: &upload::Ctx,
    claims: &Arc<Claims>,
    rec: &FileRecord,
    paths: &[PathBuf],
    quiet: Duration,
) -> Result<Sent, UploadError> {
    loop {
        match claims.claim(rec.digest) {
            Claim::Mine(held) => {
                // Another pass may have finished it since this one asked the server.
                if let Ok(Some(synced)) = ctx.state.synced(&ctx.server_key, &rec.digest) {
                    held.finish(Ok(synced.remote_id));
                    return Ok(Sent::ByAnotherPass(synced.remote_id));
                }
                let result = upload_any(ctx, rec, paths, quiet).await;
                if let Ok(remote_id) = result {
                    mark_synced(ctx, rec, remote_id, How::Uploaded);
                }
                held.finish(result.clone());
                return result.map(Sent::Uploaded);
            }
            Claim::Theirs(outcome) => {
                let image = tokio::select! {
                    image = outcome_of(outcome) => image,
                    () = ctx.control.cancelled() => return Err(UploadError::Cancelled),
                };
                if let Some(id) = image {
                    return Ok(Sent::ByAnotherPass(id));
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
    quiet: Duration,
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
