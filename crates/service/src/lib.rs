//! The desktop app's background service: it owns the engine and keeps the chosen folders
//! synced (watch mode), takes dropped files, pauses, re-checks, forces uploads, notices when
//! the server goes away and comes back, and folds every engine event into the status board.
//! Shells (the Tauri app) call these methods and render the board; no sync logic lives there.

pub mod activity;
pub mod remote;
mod settings;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use photosync_board::{Board, Page, Query, Status, Totals};
use photosync_engine::{
    Client, Connection, Engine, EngineError, Event, Options, ServerConfig, Summary, Unreachable,
};
use serde::Serialize;
use tokio::task::JoinHandle;

pub use settings::{Keyring, Settings, TokenStore};

/// Why the service could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid settings: {reason}", path.display())]
    Settings { path: PathBuf, reason: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The server or the token did not pass the connection test.
    #[error("{0}")]
    Connection(Connection),
    #[error("{} is not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error(
        "\"{}\" is not a full path: give one from the top, like /home/you/Pictures or ~/Pictures",
        .0.display()
    )]
    RelativePath(PathBuf),
    #[error("connect to a server first")]
    NotConnected,
    #[error("the sync engine is stopping")]
    Stopping,
    #[error("no such file")]
    NoSuchFile,
    #[error("no thumbnail: {0}")]
    Thumbnail(String),
    /// Something of the kind is already under way.
    #[error("{0}")]
    Busy(String),
}

/// Where the service keeps its files, and its token.
#[derive(Debug, Clone)]
pub struct Paths {
    pub settings: PathBuf,
    /// The engine's SQLite state (sync list, file table, pending uploads).
    pub state: PathBuf,
    pub thumbnails: PathBuf,
    /// The system keyring entry for the token; None keeps it in the settings file.
    pub keyring: Option<Keyring>,
    /// The activity log of the last days (JSON lines).
    pub activity: PathBuf,
}

impl Paths {
    /// Everything under one folder, the token included (tests, portable installs).
    pub fn under(dir: &Path) -> Paths {
        Paths {
            settings: dir.join("settings.json"),
            state: dir.join("state.db"),
            thumbnails: dir.join("thumbnails"),
            keyring: None,
            activity: dir.join("activity.jsonl"),
        }
    }
}

/// How the service tells its shell something happened.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // callbacks
pub struct Hooks {
    /// The board changed (called often; the shell batches).
    pub changed: Arc<dyn Fn() + Send + Sync>,
    /// Something a person should hear about even with the window closed.
    pub notify: Arc<dyn Fn(Notice) + Send + Sync>,
}

/// A notification: its words, and which files a click on it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub title: String,
    pub body: String,
    /// The list's filter a click opens the window on; `None` opens the window as it was.
    pub shows: Option<Status>,
}

impl Notice {
    fn new(title: impl Into<String>, body: impl Into<String>, shows: Option<Status>) -> Notice {
        Notice {
            title: title.into(),
            body: body.into(),
            shows,
        }
    }
}

impl Hooks {
    pub fn none() -> Hooks {
        Hooks {
            changed: Arc::new(|| {}),
            notify: Arc::new(|_| {}),
        }
    }
}

/// A round with at least this many uploads is a "big sync" worth a notification.
const BIG_SYNC: usize = 10;

/// A server away this long gets a notification when it is back.
const LONG_ABSENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct FolderInfo {
    pub path: PathBuf,
    pub files: usize,
    pub done: usize,
}

/// Everything a status display needs besides the rows.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub totals: Totals,
    pub status_line: String,
    pub paused: bool,
    pub offline: bool,
    pub configured: bool,
    pub server_url: String,
    /// The account the token belongs to, once the server has said.
    pub user: Option<String>,
    /// Bytes per second over the last five minutes, oldest first (5 s steps).
    pub rate_series: Vec<f64>,
    /// The last restore started from the window, while the app runs.
    pub restore: Option<remote::RestoreProgress>,
}

struct Running {
    engine: Arc<Engine>,
    task: JoinHandle<()>,
    /// Runs asked for besides watch mode's rounds: one queue, taken one at a time.
    runs: tokio::sync::mpsc::UnboundedSender<Run>,
    runner: JoinHandle<()>,
}

/// `paths` with every sync run waiting behind it, as one list, and the first run of another
/// kind met on the way (it runs next).
fn merge_waiting(
    mut paths: Vec<PathBuf>,
    queue: &mut tokio::sync::mpsc::UnboundedReceiver<Run>,
) -> (Vec<PathBuf>, Option<Run>) {
    let mut other = None;
    while let Ok(more) = queue.try_recv() {
        match more {
            Run::Sync(p) => paths.extend(p),
            recheck => {
                other = Some(recheck);
                break;
            }
        }
    }
    paths.sort();
    paths.dedup();
    (paths, other)
}

/// A run asked for from the window or by the service itself.
#[derive(Debug)]
enum Run {
    /// Dropped files, a retry, a forced upload, files that failed while the server was away.
    Sync(Vec<PathBuf>),
    /// Ask the server about everything again.
    Recheck(Vec<PathBuf>),
}

struct Inner {
    paths: Paths,
    settings: Mutex<Settings>,
    board: Mutex<Board>,
    running: tokio::sync::Mutex<Option<Running>>,
    paused: AtomicBool,
    offline: AtomicBool,
    /// A poll for the server's return is under way.
    polling: AtomicBool,
    /// Runs still queued when the engine stopped: queued again when it starts.
    leftover: Mutex<Vec<Run>>,
    /// Failures already notified.
    told_failed: Mutex<std::collections::HashSet<PathBuf>>,
    /// Failures of finished rounds not told yet: told once a connection check finds the
    /// server there (while it is away they are retried, not told).
    untold: Mutex<Vec<(PathBuf, String)>>,
    /// Whose token the settings hold, as the server last said (None until it has).
    user: Mutex<Option<String>>,
    /// What happened to files over the last days.
    activity: Mutex<activity::Activity>,
    hooks: Hooks,
    rt: tokio::runtime::Handle,
    thumbs: photosync_thumbs::Thumbs,
    /// The bandwidth limit of every upload of the app; a new limit applies at once.
    bandwidth: Arc<photosync_engine::Throttle>,
    /// What the server holds, and the restore the window started.
    remote: remote::Remote,
}

#[derive(Clone)]
#[allow(missing_debug_implementations)] // holds the engine and a runtime handle
pub struct Service {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Service {
    /// Loads the settings; nothing runs until `start`.
    pub fn new(
        paths: Paths,
        hooks: Hooks,
        rt: tokio::runtime::Handle,
    ) -> Result<Service, ServiceError> {
        let settings = Settings::load(&paths.settings, paths.keyring.as_ref())?;
        let activity = activity::Activity::open(&paths.activity, activity::now_secs());
        Ok(Service {
            inner: Arc::new(Inner {
                thumbs: photosync_thumbs::Thumbs::new(paths.thumbnails.clone()),
                paths,
                settings: Mutex::new(settings),
                board: Mutex::new(Board::new()),
                running: tokio::sync::Mutex::new(None),
                paused: AtomicBool::new(false),
                offline: AtomicBool::new(false),
                polling: AtomicBool::new(false),
                leftover: Mutex::default(),
                told_failed: Mutex::default(),
                untold: Mutex::default(),
                user: Mutex::default(),
                activity: Mutex::new(activity),
                bandwidth: Arc::default(),
                remote: remote::Remote::default(),
                hooks,
                rt,
            }),
        })
    }

    pub fn settings(&self) -> Settings {
        lock(&self.inner.settings).clone()
    }

    fn save(&self, mut settings: Settings) -> Result<(), ServiceError> {
        settings.token_store = settings.save(
            &self.inner.paths.settings,
            self.inner.paths.keyring.as_ref(),
        )?;
        *lock(&self.inner.settings) = settings;
        Ok(())
    }

    /// Checks a server address and token without saving them.
    pub async fn test_connection(url: &str, token: &str) -> Connection {
        let url = match server_address(url) {
            Ok(url) => url,
            Err(why) => return Connection::Unreachable(Unreachable::plain(why)),
        };
        match Client::new(ServerConfig {
            url,
            token: token.trim().to_owned(),
        }) {
            Ok(c) => c.check().await,
            Err(e) => Connection::Unreachable(Unreachable::plain(e.to_string())),
        }
    }

    /// Saves the server and token once they pass the connection test, and starts syncing.
    pub async fn configure(&self, url: &str, token: &str) -> Result<(), ServiceError> {
        match Self::test_connection(url, token).await {
            Connection::Ok => {}
            other => return Err(ServiceError::Connection(other)),
        }
        let mut s = self.settings();
        s.server_url = server_address(url).map_err(|why| {
            ServiceError::Connection(Connection::Unreachable(Unreachable::plain(why)))
        })?;
        s.token = token.trim().to_owned();
        self.save(s)?;
        *lock(&self.inner.user) = None;
        self.inner.offline.store(false, Ordering::SeqCst);
        self.restart().await
    }

    pub async fn add_folder(&self, path: &Path) -> Result<(), ServiceError> {
        let path = folder_path(path)?;
        if !path.is_dir() {
            return Err(ServiceError::NotAFolder(path));
        }
        let mut s = self.settings();
        if s.folders.iter().any(|f| f == &path) {
            return Ok(());
        }
        s.folders.push(path);
        self.save(s)?;
        self.restart().await
    }

    pub async fn remove_folder(&self, path: &Path) -> Result<(), ServiceError> {
        let mut s = self.settings();
        s.folders.retain(|f| f != path);
        self.save(s)?;
        // Stopped first, so no late event of the old round brings its files back.
        self.stop().await;
        lock(&self.inner.board).remove_under(path);
        (self.inner.hooks.changed)();
        self.start().await
    }

    pub fn folders(&self) -> Vec<FolderInfo> {
        let board = lock(&self.inner.board);
        self.settings()
            .folders
            .into_iter()
            .map(|path| {
                let (files, done) = board.count_under(&path);
                FolderInfo { path, files, done }
            })
            .collect()
    }

    /// Preferences other than the server and the folders. Returns what was stored (values
    /// out of range are clamped), without the token, so a window shows the truth.
    pub async fn update_settings(&self, new: Settings) -> Result<Settings, ServiceError> {
        let mut s = self.settings();
        let restart = s.concurrency != new.concurrency
            || s.upload_all_copies != new.upload_all_copies
            || s.all_files != new.all_files;
        self.inner
            .bandwidth
            .set_rate(Some(new.bandwidth_limit).filter(|l| *l > 0));
        s.concurrency = new.concurrency.clamp(1, 16);
        s.bandwidth_limit = new.bandwidth_limit;
        s.upload_all_copies = new.upload_all_copies;
        s.all_files = new.all_files;
        s.start_at_login = new.start_at_login;
        self.save(s)?;
        if restart {
            self.restart().await?;
        }
        let mut stored = self.settings();
        stored.token = String::new();
        Ok(stored)
    }

    fn options(&self, s: &Settings) -> Options {
        let mut o = Options::new(
            ServerConfig {
                url: s.server_url.clone(),
                token: s.token.clone(),
            },
            self.inner.paths.state.clone(),
        );
        o.concurrency = s.concurrency.max(1);
        self.inner
            .bandwidth
            .set_rate(Some(s.bandwidth_limit).filter(|l| *l > 0));
        o.bandwidth = self.inner.bandwidth.clone();
        o.upload_all_copies = s.upload_all_copies;
        o.all_files = s.all_files;
        o
    }

    fn sink(&self) -> photosync_engine::EventSink {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        Arc::new(move |e: Event| {
            if let Some(inner) = weak.upgrade() {
                if let Event::Folder {
                    path,
                    present: false,
                } = &e
                {
                    (inner.hooks.notify)(Notice::new(
                        "A watched folder is gone",
                        format!(
                            "{} is not there (unplugged or deleted); it is backed up again when it comes back",
                            path.display()
                        ),
                        None,
                    ));
                }
                let failed = matches!(e, Event::Failed { .. });
                lock(&inner.board).apply(&e, Instant::now());
                if let Some(entry) = activity_of(&e) {
                    lock(&inner.activity).add(entry);
                }
                (inner.hooks.changed)();
                if failed {
                    // Is the server away? Told within seconds, not when the round ends.
                    Service { inner }.check_online();
                }
            }
        })
    }

    /// Starts watching the folders (a full sync first), if a server is configured.
    pub async fn start(&self) -> Result<(), ServiceError> {
        let mut running = self.inner.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let s = self.settings();
        if !s.is_configured() {
            return Ok(());
        }
        let engine = Arc::new(Engine::new(self.options(&s), self.sink())?);
        self.learn_user(&engine);
        if self.is_paused() {
            engine.control().pause();
        }
        let (me, e) = (self.clone(), engine.clone());
        let options = photosync_engine::WatchOptions {
            retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(300),
            ..Default::default()
        };
        let task = self.inner.rt.spawn(async move {
            let folders = s.folders.clone();
            let result = e
                .watch(&folders, options, |summary| me.after_round(&summary))
                .await;
            if let Err(why) = result {
                tracing::warn!(error = %why, "watching stopped");
                (me.inner.hooks.notify)(Notice::new(
                    "Photosync cannot watch a folder",
                    why.to_string(),
                    None,
                ));
            }
        });
        let (runs, queue) = tokio::sync::mpsc::unbounded_channel();
        for run in std::mem::take(&mut *lock(&self.inner.leftover)) {
            let _ = runs.send(run);
        }
        let runner = self
            .inner
            .rt
            .spawn(self.clone().take_runs(engine.clone(), queue));
        *running = Some(Running {
            engine,
            task,
            runs,
            runner,
        });
        Ok(())
    }

    /// Asks the server whose token this is, for the window's "connected as".
    fn learn_user(&self, engine: &Arc<Engine>) {
        let (me, engine) = (self.clone(), engine.clone());
        self.inner.rt.spawn(async move {
            match engine.client().account().await {
                Ok(account) => {
                    *lock(&me.inner.user) = Some(account.user);
                    (me.inner.hooks.changed)();
                }
                Err(e) => tracing::debug!(error = %e, "account not known yet"),
            }
        });
    }

    /// The one owner of runs besides watch mode: takes them in order, one at a time. Sync runs
    /// waiting together become one run (a burst of retries is one pass). A file that a
    /// watch round is sending at the same moment is not sent twice: the engine's passes share
    /// their uploads under way.
    async fn take_runs(
        self,
        engine: Arc<Engine>,
        mut queue: tokio::sync::mpsc::UnboundedReceiver<Run>,
    ) {
        let mut next = None;
        loop {
            let run = match next.take() {
                Some(run) => run,
                None => match queue.recv().await {
                    Some(run) => run,
                    None => return,
                },
            };
            if engine.control().is_cancelled() {
                // Stopping: what has not run yet waits for the next start.
                let mut left = lock(&self.inner.leftover);
                left.push(run);
                while let Ok(more) = queue.try_recv() {
                    left.push(more);
                }
                return;
            }
            let summary = match run {
                Run::Recheck(folders) => engine.recheck(&folders).await,
                Run::Sync(paths) => {
                    let (paths, after) = merge_waiting(paths, &mut queue);
                    next = after;
                    engine.sync(&paths).await
                }
            };
            if engine.control().is_cancelled() && !summary.interrupted.is_empty() {
                // Cut short by a stop: the files not done run again after the next start.
                lock(&self.inner.leftover).push(Run::Sync(summary.interrupted.clone()));
            }
            self.after_round(&summary);
        }
    }

    /// Puts a run in the queue, starting the engine first if needed.
    async fn queue(&self, run: Run) -> Result<(), ServiceError> {
        if self.inner.running.lock().await.is_none() {
            self.start().await?;
        }
        let running = self.inner.running.lock().await;
        let r = running.as_ref().ok_or(ServiceError::NotConnected)?;
        r.runs.send(run).map_err(|_| ServiceError::Stopping)
    }

    /// Stops the engine, waiting for it to settle; pending uploads resume at the next start.
    pub async fn stop(&self) {
        let taken = self.inner.running.lock().await.take();
        if let Some(r) = taken {
            r.engine.control().cancel();
            drop(r.runs);
            let _ = r.task.await;
            let _ = r.runner.await;
        }
    }

    /// Stops and starts again (after a change of server, folders or options), or syncs now.
    pub async fn restart(&self) -> Result<(), ServiceError> {
        self.stop().await;
        self.start().await
    }

    async fn engine(&self) -> Result<Arc<Engine>, ServiceError> {
        if self.inner.running.lock().await.is_none() {
            self.start().await?;
        }
        self.inner
            .running
            .lock()
            .await
            .as_ref()
            .map(|r| r.engine.clone())
            .ok_or(ServiceError::NotConnected)
    }

    /// Syncs these files and folders right away (dropped on the window); they show first.
    pub async fn sync_dropped(&self, paths: Vec<PathBuf>) -> Result<(), ServiceError> {
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .collect();
        self.queue(Run::Sync(paths.clone())).await?;
        lock(&self.inner.board).mark_dropped(&paths);
        (self.inner.hooks.changed)();
        Ok(())
    }

    /// Uploads a file despite a same-picture match.
    pub async fn force_upload(&self, path: PathBuf) -> Result<(), ServiceError> {
        self.engine()
            .await?
            .force_upload(std::slice::from_ref(&path))?;
        self.queue(Run::Sync(vec![path])).await
    }

    /// Tries a failed file again now.
    pub async fn retry(&self, path: PathBuf) -> Result<(), ServiceError> {
        self.queue(Run::Sync(vec![path])).await
    }

    /// Asks the server again about every file instead of trusting the sync list.
    pub async fn recheck(&self) -> Result<(), ServiceError> {
        self.queue(Run::Recheck(self.settings().folders)).await
    }

    pub fn is_paused(&self) -> bool {
        self.inner.paused.load(Ordering::SeqCst)
    }

    pub async fn set_paused(&self, paused: bool) {
        self.inner.paused.store(paused, Ordering::SeqCst);
        if let Some(r) = self.inner.running.lock().await.as_ref() {
            if paused {
                r.engine.control().pause();
            } else {
                r.engine.control().resume();
            }
        }
        (self.inner.hooks.changed)();
    }

    pub fn is_offline(&self) -> bool {
        self.inner.offline.load(Ordering::SeqCst)
    }

    /// After each sync round: notifications, and the offline check when files failed.
    fn after_round(&self, summary: &Summary) {
        let notify = &self.inner.hooks.notify;
        if let Some(why) = &summary.aborted {
            notify(Notice::new(
                "Photosync could not finish a sync",
                why.clone(),
                None,
            ));
        }
        if summary.uploaded >= BIG_SYNC {
            notify(Notice::new(
                "Backup finished",
                format!("{} backed up", counted(&summary.uploaded_kinds)),
                Some(Status::BackedUp),
            ));
        }
        if !summary.failed.is_empty() {
            {
                let mut activity = lock(&self.inner.activity);
                for (path, why) in &summary.failed {
                    activity.add(activity::Entry::now(
                        path,
                        activity::Happened::Failed,
                        Some(why),
                    ));
                }
            }
            lock(&self.inner.untold).extend(summary.failed.iter().cloned());
            self.check_online();
        } else if summary.uploaded > 0 && self.inner.offline.swap(false, Ordering::SeqCst) {
            // Only an upload proves the server answers: matches and the sync list may come
            // from what was known before (a server away fails no file it was found to hold).
            (self.inner.hooks.changed)();
        }
    }

    /// Failures of finished rounds, each told once. Only called with the server there: a
    /// file that failed because the server was away is retried, not reported.
    fn tell_failures(&self) {
        let untold = std::mem::take(&mut *lock(&self.inner.untold));
        // A file retried and backed up since (the server came back meanwhile) is no failure.
        let untold: Vec<(PathBuf, String)> = {
            let board = lock(&self.inner.board);
            let still_failed: std::collections::HashSet<&Path> = board
                .rows()
                .iter()
                .filter(|r| r.status == Status::Failed)
                .map(|r| r.path.as_path())
                .collect();
            untold
                .into_iter()
                .filter(|(p, _)| still_failed.contains(p.as_path()))
                .collect()
        };
        let new: Vec<(PathBuf, String)> = {
            let mut told = lock(&self.inner.told_failed);
            untold
                .into_iter()
                .filter(|(p, _)| told.insert(p.clone()))
                .collect()
        };
        let Some((path, why)) = new.first() else {
            return;
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let title = match new.len() {
            1 => "1 file could not be backed up".to_owned(),
            n => format!("{n} files could not be backed up"),
        };
        (self.inner.hooks.notify)(Notice::new(
            title,
            format!("{name}: {why}"),
            Some(Status::Failed),
        ));
    }

    /// Files failed: is the server away? If so, say so, and poll until it is back (only
    /// while away: no polling when all is well), then retry the failed files at once. If it
    /// is there, the failures of finished rounds are real, and told.
    fn check_online(&self) {
        if self.inner.polling.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        self.inner.rt.spawn(async move {
            let mut delay = Duration::from_secs(1);
            let mut away_since = None;
            loop {
                // Read anew each time: the server may have been changed meanwhile.
                let s = me.settings();
                let found = Self::test_connection(&s.server_url, &s.token).await;
                let away = matches!(found, Connection::Unreachable(_));
                if me.inner.offline.swap(away, Ordering::SeqCst) != away {
                    tracing::info!(away, "server connection changed");
                    (me.inner.hooks.changed)();
                    if away {
                        (me.inner.hooks.notify)(Notice::new(
                            "Photosync cannot reach the server",
                            "Backups go on by themselves when it is back.",
                            None,
                        ));
                    }
                }
                if !away {
                    break;
                }
                away_since.get_or_insert_with(Instant::now);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                if me.inner.running.lock().await.is_none() {
                    break;
                }
            }
            // Cleared before the untold failures are read: a round that ends now either finds
            // the flag down and checks again, or put its failures where this reads them.
            me.inner.polling.store(false, Ordering::SeqCst);
            let Some(since) = away_since else {
                me.tell_failures();
                return;
            };
            lock(&me.inner.untold).clear();
            if me.is_offline() {
                return; // stopped while away
            }
            let engine = me
                .inner
                .running
                .lock()
                .await
                .as_ref()
                .map(|r| r.engine.clone());
            let unknown = lock(&me.inner.user).is_none();
            if let (Some(engine), true) = (engine, unknown) {
                me.learn_user(&engine);
            }
            if since.elapsed() >= LONG_ABSENCE {
                (me.inner.hooks.notify)(Notice::new(
                    "Photosync is connected again",
                    "The server is back; backups carry on.",
                    None,
                ));
            }
            let failed: Vec<PathBuf> = lock(&me.inner.board)
                .rows()
                .iter()
                .filter(|r| r.status == Status::Failed)
                .map(|r| r.path.clone())
                .collect();
            let sender = me
                .inner
                .running
                .lock()
                .await
                .as_ref()
                .map(|r| r.runs.clone());
            if let (Some(runs), false) = (sender, failed.is_empty()) {
                let _ = runs.send(Run::Sync(failed));
            }
        });
    }

    pub fn overview(&self) -> Overview {
        let now = Instant::now();
        let (paused, offline) = (self.is_paused(), self.is_offline());
        let board = lock(&self.inner.board);
        let s = self.settings();
        Overview {
            totals: board.totals(now),
            status_line: if s.is_configured() {
                board.status_line(now, paused, offline)
            } else {
                "Not connected to a server".into()
            },
            paused,
            offline,
            configured: s.is_configured(),
            server_url: s.server_url,
            user: lock(&self.inner.user).clone(),
            rate_series: board.rate_history().series(now, 60),
            restore: self.restore_progress(),
        }
    }

    pub fn query(&self, q: &Query) -> Page {
        lock(&self.inner.board).query(q)
    }

    /// What happened to files over the last days, newest first.
    pub fn activity(&self, limit: usize) -> Vec<activity::Entry> {
        let since = activity::now_secs().saturating_sub(activity::KEEP.as_secs());
        lock(&self.inner.activity).recent(since, limit)
    }

    /// The path of a listed file, by its row id.
    pub fn row_path(&self, id: u64) -> Option<PathBuf> {
        lock(&self.inner.board).row(id).map(|r| r.path.clone())
    }

    pub fn take_changed(&self) -> Vec<u64> {
        lock(&self.inner.board).take_changed()
    }

    /// A row's thumbnail (JPEG), made from the picture and cached.
    pub async fn thumbnail(&self, id: u64) -> Result<Vec<u8>, ServiceError> {
        let path = self.row_path(id).ok_or(ServiceError::NoSuchFile)?;
        let thumbs = self.inner.thumbs.clone();
        tokio::task::spawn_blocking(move || thumbs.get(&path))
            .await
            .map_err(|e| ServiceError::Thumbnail(e.to_string()))?
            .map_err(|e| ServiceError::Thumbnail(e.to_string()))
    }

    /// Applies server, token and folders given from outside (environment, first-run scripts).
    /// Saves only when something changed.
    pub fn preset(
        &self,
        url: Option<String>,
        token: Option<String>,
        folders: Vec<PathBuf>,
    ) -> Result<(), ServiceError> {
        let before = self.settings();
        let mut s = before.clone();
        if let Some(u) = url.filter(|u| !u.is_empty()) {
            s.server_url = u;
        }
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            s.token = t;
        }
        for f in folders {
            let f = std::path::absolute(&f).unwrap_or(f);
            if f.is_dir() && !s.folders.contains(&f) {
                s.folders.push(f);
            }
        }
        // Written once at the first start, so the files exist; after that, only on change.
        if s == before && self.inner.paths.settings.exists() {
            return Ok(());
        }
        self.save(s)
    }
}

/// The activity entry an event makes: uploads, matches and skips (the log leaves out
/// repeats). Failures are taken from each round's summary, not from events: a part that
/// failed and was sent again within its upload is no failure of the file.
fn activity_of(e: &Event) -> Option<activity::Entry> {
    use activity::Happened;
    let (what, detail) = match e {
        Event::Uploaded { .. } => (Happened::Uploaded, None),
        Event::OnServer { how, .. } => (Happened::OnServer, Some(how.reason())),
        Event::Skipped {
            reason, problem, ..
        } => (
            if *problem {
                Happened::Failed
            } else {
                Happened::Skipped
            },
            Some(reason.clone()),
        ),
        _ => return None,
    };
    Some(activity::Entry::now(e.path(), what, detail.as_deref()))
}

/// The address a person typed, as the client uses it: trimmed, without a trailing slash, and
/// `http://` in front when no scheme was typed.
pub fn server_address(typed: &str) -> Result<String, String> {
    let typed = typed.trim();
    let (scheme, rest) = typed.split_once("://").unwrap_or(("http", typed));
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err("enter the server's address, like 192.168.1.10:8080".into());
    }
    match scheme {
        "http" | "https" => Ok(format!("{scheme}://{rest}")),
        _ => Err("the address must start with http:// or https://".into()),
    }
}

/// A folder path as typed: `~` is the home folder; a relative path is refused (relative to
/// what? the app's own working folder is no place a person chose).
pub fn folder_path(typed: &Path) -> Result<PathBuf, ServiceError> {
    let home = || {
        #[allow(deprecated)] // fine on every platform the app runs on
        std::env::home_dir()
    };
    let expanded = match typed.strip_prefix("~") {
        Ok(rest) => home()
            .map(|h| h.join(rest))
            .ok_or_else(|| ServiceError::RelativePath(typed.to_path_buf()))?,
        Err(_) => typed.to_path_buf(),
    };
    if !expanded.is_absolute() {
        return Err(ServiceError::RelativePath(typed.to_path_buf()));
    }
    Ok(expanded)
}

/// "12 photos and 3 videos", "1 photo", "4 files": what a notification counts.
pub fn counted(k: &photosync_engine::Kinds) -> String {
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let mut parts = Vec::new();
    if k.photos > 0 {
        parts.push(plural(k.photos, "photo", "photos"));
    }
    if k.videos > 0 {
        parts.push(plural(k.videos, "video", "videos"));
    }
    if k.others > 0 || parts.is_empty() {
        parts.push(if parts.is_empty() {
            plural(k.others, "file", "files")
        } else {
            plural(k.others, "other file", "other files")
        });
    }
    let last = parts.pop().unwrap_or_default();
    if parts.is_empty() {
        last
    } else {
        format!("{} and {last}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests;
