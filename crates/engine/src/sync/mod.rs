//! The pipeline: walk, identify (or reuse), sync list, batched detection, decisions, uploads.

mod claims;
mod decide;
mod know;
mod run;
mod scan;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use photosync_part_sizer::{PartSizer, SizerConfig};
use tokio::sync::Notify;

use crate::client::{Client, ClientError, ServerConfig};
use crate::state::State;
use crate::state::StateError;
use crate::throttle::Throttle;
use photosync_events::{Event, EventSink};

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
    /// Back up every file, not only photos, videos, RAW files and sidecars.
    pub all_files: bool,
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
            all_files: false,
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub uploaded: usize,
    /// What the uploaded files were, by their names: so a message counts photos and videos,
    /// not every file as a photo.
    pub uploaded_kinds: Kinds,
    pub already_synced: usize,
    /// Held by the server already: same bytes, or the same picture at least as large.
    pub on_server: usize,
    pub skipped: Vec<(PathBuf, String)>,
    /// Files that look like images but could not be identified, with why: backed up by their
    /// bytes all the same.
    pub unidentified: Vec<(PathBuf, String)>,
    /// Files this run uploaded although the server holds their picture: its copy is worse
    /// (the reason names the rule), or every copy was asked for.
    pub beside: Vec<(PathBuf, String)>,
    pub failed: Vec<(PathBuf, String)>,
    /// Files left out because they are not media (documents, text), unless all files are
    /// backed up.
    pub not_media: Vec<PathBuf>,
    /// Why the run as a whole could not go on (the local state could not be written...).
    pub aborted: Option<String>,
    /// Entries that hold nothing to back up (a broken symbolic link): reported, not failed.
    pub warnings: Vec<(PathBuf, String)>,
    /// Files whose upload was stopped by a cancel; they resume next time.
    pub interrupted: Vec<PathBuf>,
    /// Files that changed while they were uploaded, to be read again.
    pub changed: Vec<PathBuf>,
    pub stages: Stages,
}

/// How long each stage of the pipeline had work in hand. The stages overlap, so a run takes
/// about as long as its busiest stage, not their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stages {
    /// Walking the folders and looking files up in the file table.
    pub walk: Duration,
    /// At least one file being read and identified.
    pub identify: Duration,
    /// Waiting for the server's detection answers.
    pub detect: Duration,
    /// At least one upload under way.
    pub upload: Duration,
    /// From the start of the run to the start of its first upload.
    pub first_upload: Option<Duration>,
}

impl Stages {
    fn absorb(&mut self, later: Stages) {
        self.walk += later.walk;
        self.identify += later.identify;
        self.detect += later.detect;
        self.upload += later.upload;
        self.first_upload = self.first_upload.or(later.first_upload);
    }
}

/// Files counted by what they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds {
    /// Photos and RAW files.
    pub photos: usize,
    pub videos: usize,
    /// Sidecars and any other file.
    pub others: usize,
}

impl Kinds {
    pub fn count(&mut self, path: &Path) {
        use photosync_identify::media::{kind_by_name, FileKind};
        match kind_by_name(path) {
            FileKind::Photo | FileKind::Raw => self.photos += 1,
            FileKind::Video => self.videos += 1,
            FileKind::Sidecar | FileKind::Other => self.others += 1,
        }
    }

    fn absorb(&mut self, later: Kinds) {
        self.photos += later.photos;
        self.videos += later.videos;
        self.others += later.others;
    }
}

impl Summary {
    /// Adds a later round's outcome to this one.
    pub fn absorb(&mut self, later: Summary) {
        self.uploaded += later.uploaded;
        self.uploaded_kinds.absorb(later.uploaded_kinds);
        self.already_synced += later.already_synced;
        self.on_server += later.on_server;
        self.skipped.extend(later.skipped);
        self.unidentified.extend(later.unidentified);
        self.beside.extend(later.beside);
        self.failed.extend(later.failed);
        self.not_media.extend(later.not_media);
        self.aborted = self.aborted.take().or(later.aborted);
        self.warnings.extend(later.warnings);
        self.interrupted.extend(later.interrupted);
        self.changed.extend(later.changed);
        self.stages.absorb(later.stages);
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

/// Why the engine could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{}: {source}", path.display())]
    Path {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The system would not watch a folder for changes.
    #[error("cannot watch {}: {reason}", path.display())]
    Watch { path: PathBuf, reason: String },
}

pub struct Engine {
    state: State,
    client: Client,
    options: Options,
    events: EventSink,
    control: Arc<Control>,
    sizer: Arc<Mutex<PartSizer>>,
    /// Uploads under way in any pass, so overlapping passes never send a file twice at once.
    claims: Arc<claims::Claims>,
    /// The folders synced so far: each upload names its folder relative to the one holding it.
    roots: Arc<Roots>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("options", &self.options)
            .finish()
    }
}

impl Engine {
    pub fn new(options: Options, events: EventSink) -> Result<Engine, EngineError> {
        let state = State::open(&options.state_path)?;
        let client = Client::new(options.server.clone())?;
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
            claims: Arc::default(),
            roots: Arc::default(),
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
            return Summary {
                aborted: Some(e.to_string()),
                ..Summary::default()
            };
        }
        self.sync(paths).await
    }

    /// Syncs every file under `paths` once. A file that changes while it is uploaded is read
    /// again and goes on with its new identity, a few times at most.
    pub async fn sync(&self, paths: &[PathBuf]) -> Summary {
        self.add_roots(paths);
        let mut summary = self.round(paths, Duration::ZERO).await;
        for _ in 0..REREADS {
            if summary.changed.is_empty() || self.control.is_cancelled() {
                break;
            }
            let again = std::mem::take(&mut summary.changed);
            summary.absorb(self.round(&again, Duration::ZERO).await);
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
}

impl Engine {
    /// Folders the person synced: uploads name their folder relative to these.
    pub(crate) fn add_roots(&self, paths: &[PathBuf]) {
        self.roots.add(paths);
    }

    pub(crate) fn emit(&self, e: Event) {
        (self.events)(e);
    }

    /// Asks for these files to be uploaded on the next sync even though the server holds the
    /// same picture at least as large. The caller then syncs them.
    pub fn force_upload(&self, files: &[PathBuf]) -> Result<(), EngineError> {
        let key = self.options.server.key();
        for f in files {
            let f = std::path::absolute(f).map_err(|source| EngineError::Path {
                path: f.clone(),
                source,
            })?;
            self.state.force(&key, &f)?;
        }
        Ok(())
    }

    fn forced(&self, paths: &[PathBuf]) -> bool {
        let key = self.options.server.key();
        paths
            .iter()
            .any(|p| matches!(self.state.is_forced(&key, p), Ok(true)))
    }
}

/// The folders a person asked to sync, absolute. A file's folder on the server is its place
/// below the one of them that holds it. The first of nested folders stays the root: a folder
/// dropped later inside a watched one, or around it, does not change where files belong.
#[derive(Debug, Default)]
pub(crate) struct Roots(Mutex<Vec<PathBuf>>);

impl Roots {
    pub fn add(&self, paths: &[PathBuf]) {
        let mut roots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for p in paths.iter().filter(|p| p.is_dir()) {
            if let Ok(p) = std::path::absolute(p) {
                if !roots.iter().any(|r| p.starts_with(r) || r.starts_with(&p)) {
                    roots.push(p);
                }
            }
        }
    }

    /// `file`'s folder relative to the root holding it, `/`-separated; None when no
    /// root holds it, or a component is not UTF-8 or not a plain name.
    pub fn folder_of(&self, file: &Path) -> Option<String> {
        let file = std::path::absolute(file).ok()?;
        let roots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let below = roots
            .iter()
            .filter_map(|r| file.strip_prefix(r).ok())
            .max_by_key(|rest| rest.components().count())?;
        let parts: Option<Vec<&str>> = below
            .parent()?
            .components()
            .map(|c| match c {
                std::path::Component::Normal(n) => n.to_str(),
                _ => None,
            })
            .collect();
        let folder = parts?.join("/");
        photosync_protocol::check_folder(&folder).ok()?;
        Some(folder)
    }
}

#[cfg(test)]
mod roots_tests {
    #![allow(clippy::unwrap_used)]
    use super::Roots;

    #[test]
    fn a_file_is_placed_below_the_first_of_nested_roots() {
        let dir = tempfile::tempdir().unwrap();
        let pictures = dir.path().join("Pictures");
        let year = pictures.join("2020/June");
        std::fs::create_dir_all(&year).unwrap();
        let roots = Roots::default();
        roots.add(std::slice::from_ref(&pictures));
        // Dropped later: inside the watched folder, and around it.
        roots.add(&[year.clone(), dir.path().to_path_buf()]);
        assert_eq!(
            roots.folder_of(&year.join("x.jpg")).as_deref(),
            Some("2020/June")
        );
        assert_eq!(
            roots.folder_of(&pictures.join("x.jpg")).as_deref(),
            Some("")
        );
        assert_eq!(roots.folder_of(&dir.path().join("y.jpg")), None);
        // A folder name the server would refuse is not sent at all.
        assert_eq!(roots.folder_of(&pictures.join("a\\b/x.jpg")), None);
    }
}
