//! "On the server": what the account holds, newest first by the day each picture was taken,
//! its thumbnails, and restores (all of it, or a selection) on the engine's restore.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use photosync_engine::restore::RestoreOptions;
use photosync_engine::{Client, Control, Engine, RestoreEvent, Restored};
use photosync_protocol::ImageInfo;
use serde::Serialize;

use crate::{lock, Notice, Service, ServiceError};

/// The thumbnail size the grid shows (its tiles are 120 px, so 2× screens stay sharp).
pub const GRID_THUMBNAIL: u32 = 256;

/// Full pictures larger than this are not opened in the window: download them instead.
const FULL_MAX: u64 = 256 << 20;

/// One server image as the grid shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteItem {
    pub id: i64,
    pub name: String,
    pub folder: Option<String>,
    /// When it was taken (`YYYY-MM-DDTHH:MM:SS`): the capture time, else the file's
    /// modification time, else the upload, in UTC.
    pub day: String,
    pub bytes: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub format: Option<String>,
}

impl From<ImageInfo> for RemoteItem {
    fn from(i: ImageInfo) -> RemoteItem {
        let day = match i.taken {
            Some(t) => t,
            None => photosync_protocol::utc_time_text(i.mtime.unwrap_or(i.uploaded_at)),
        };
        RemoteItem {
            id: i.id,
            name: i.name,
            folder: i.folder,
            day,
            bytes: i.bytes,
            width: i.width,
            height: i.height,
            format: i.format,
        }
    }
}

/// A month of the grid: how many pictures, and the index of its first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Month {
    /// `YYYY-MM`.
    pub month: String,
    pub count: usize,
    pub first: usize,
}

/// One page of the grid, with what the whole account holds.
#[derive(Debug, Clone, Serialize)]
pub struct RemotePage {
    pub total: usize,
    /// Bytes of every image the account holds.
    pub bytes: u64,
    pub offset: usize,
    pub items: Vec<RemoteItem>,
    pub months: Vec<Month>,
}

/// Where a restore of the window stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreState {
    Running,
    Paused,
    Done,
    Cancelled,
    /// Stopped early (the disk is full): `message` says why.
    Stopped,
    /// It could not start or list (the server, the folder): `message` says why.
    Failed,
}

/// A restore's progress, in the overview the window gets.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreProgress {
    pub state: RestoreState,
    pub to: PathBuf,
    pub files_total: u64,
    pub files_done: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
    /// Files found in place already (byte-identical), among `files_done`.
    pub already_there: u64,
    pub failed: usize,
    pub renamed: usize,
    pub message: Option<String>,
}

/// The account's images, newest first, and the running restore.
#[derive(Default)]
pub(crate) struct Remote {
    items: std::sync::Mutex<Option<Arc<Vec<RemoteItem>>>>,
    restore: std::sync::Mutex<Option<RestoreProgress>>,
    control: std::sync::Mutex<Option<Arc<Control>>>,
    /// Bytes of each image of the running restore, so resumed files count once.
    received: std::sync::Mutex<HashMap<i64, u64>>,
}

/// Counts `bytes` of `image` in place, once however often the file restarts.
fn count_bytes(p: &mut RestoreProgress, received: &mut HashMap<i64, u64>, image: i64, bytes: u64) {
    let before = received.insert(image, bytes).unwrap_or(0);
    p.bytes_done = (p.bytes_done + bytes).saturating_sub(before);
}

fn months(items: &[RemoteItem]) -> Vec<Month> {
    let mut out: Vec<Month> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let month = item.day.get(..7).unwrap_or("").to_owned();
        match out.last_mut() {
            Some(m) if m.month == month => m.count += 1,
            _ => out.push(Month {
                month,
                count: 1,
                first: i,
            }),
        }
    }
    out
}

impl Service {
    fn client(&self) -> Result<Client, ServiceError> {
        let s = self.settings();
        if !s.is_configured() {
            return Err(ServiceError::NotConnected);
        }
        let options = self.options(&s);
        Ok(Client::new(options.server).map_err(photosync_engine::EngineError::from)?)
    }

    /// Reads the account's list from the server again (every page), newest first.
    pub async fn remote_load(&self) -> Result<RemotePage, ServiceError> {
        let client = self.client()?;
        let mut items: Vec<RemoteItem> = Vec::new();
        let mut after = 0;
        loop {
            let page = client
                .list_images(&Default::default(), after, 1000)
                .await
                .map_err(photosync_engine::EngineError::from)?;
            items.extend(page.images.into_iter().map(RemoteItem::from));
            match page.next {
                Some(next) if next > after => after = next,
                _ => break,
            }
        }
        items.sort_by(|a, b| b.day.cmp(&a.day).then(b.id.cmp(&a.id)));
        *lock(&self.inner.remote.items) = Some(Arc::new(items));
        Ok(self.remote_page(0, 0))
    }

    /// `limit` images from `offset` of the list last read (empty before `remote_load`).
    pub fn remote_page(&self, offset: usize, limit: usize) -> RemotePage {
        let items = lock(&self.inner.remote.items).clone().unwrap_or_default();
        let end = offset.saturating_add(limit).min(items.len());
        RemotePage {
            total: items.len(),
            bytes: items.iter().map(|i| i.bytes).sum(),
            offset,
            items: items.get(offset.min(end)..end).unwrap_or(&[]).to_vec(),
            months: months(&items),
        }
    }

    /// A server image's grid thumbnail (JPEG), kept in the thumbnail cache under its server,
    /// account and id (the server never reuses an id).
    pub async fn remote_thumbnail(&self, id: i64) -> Result<Vec<u8>, ServiceError> {
        let client = self.client()?;
        let key = blake3::hash(format!("{}#{id}", client.server().key()).as_bytes()).to_hex();
        let file = self
            .inner
            .paths
            .thumbnails
            .join("server")
            .join(format!("{}-{GRID_THUMBNAIL}.jpg", &key[..32]));
        if let Ok(bytes) = tokio::fs::read(&file).await {
            // Only a whole JPEG (a crash may leave an empty file behind).
            if bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9]) {
                return Ok(bytes);
            }
        }
        let bytes = client
            .thumbnail(id, GRID_THUMBNAIL)
            .await
            .map_err(|e| ServiceError::Thumbnail(e.to_string()))?;
        let jpeg = bytes.clone();
        let _ = tokio::task::spawn_blocking(move || photosync_thumbs::cache(&file, &jpeg)).await;
        Ok(bytes)
    }

    /// A server image's bytes, to show at full size.
    pub async fn remote_full(&self, id: i64) -> Result<Vec<u8>, ServiceError> {
        let client = self.client()?;
        let response = client
            .download(id, 0)
            .await
            .map_err(|e| ServiceError::Thumbnail(e.to_string()))?;
        if response.content_length().unwrap_or(0) > FULL_MAX {
            return Err(ServiceError::Thumbnail(
                "too large to show here: download it instead".into(),
            ));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ServiceError::Thumbnail(e.to_string()))?;
        Ok(bytes.to_vec())
    }

    /// Where a restore of the window stands, if one ran since the app started.
    pub fn restore_progress(&self) -> Option<RestoreProgress> {
        lock(&self.inner.remote.restore).clone()
    }

    /// Restores into `to` (`~` allowed) the images `ids`, or all of them, on the engine's
    /// restore; the overview carries its progress. With `then_watch`, the folder is backed up
    /// from then on (a new computer's first run): the files restored are in the sync list, so
    /// nothing goes up again.
    pub async fn restore_to(
        &self,
        to: PathBuf,
        ids: Option<Vec<i64>>,
        then_watch: bool,
    ) -> Result<(), ServiceError> {
        let to = crate::folder_path(&to)?;
        let s = self.settings();
        if !s.is_configured() {
            return Err(ServiceError::NotConnected);
        }
        // Downloads have no limit here: the app's limit is for uploads.
        let mut engine_options = self.options(&s);
        engine_options.bandwidth = Arc::default();
        let engine = Engine::new(engine_options, Arc::new(|_| {}))?;
        {
            let mut current = lock(&self.inner.remote.restore);
            if current
                .as_ref()
                .is_some_and(|p| matches!(p.state, RestoreState::Running | RestoreState::Paused))
            {
                return Err(ServiceError::Busy("a restore is already running".into()));
            }
            *current = Some(RestoreProgress {
                state: RestoreState::Running,
                to: to.clone(),
                files_total: 0,
                files_done: 0,
                bytes_total: 0,
                bytes_done: 0,
                already_there: 0,
                failed: 0,
                renamed: 0,
                message: None,
            });
        }
        lock(&self.inner.remote.received).clear();
        let control = Arc::new(Control::default());
        *lock(&self.inner.remote.control) = Some(control.clone());
        let mut options = RestoreOptions::new(to.clone());
        options.ids = ids;
        options.concurrency = s.concurrency.max(1);
        let me = self.clone();
        self.inner.rt.spawn(async move {
            let events = {
                let me = me.clone();
                move |e: RestoreEvent| me.on_restore_event(e)
            };
            let result = engine.restore(&options, &control, &events).await;
            me.restore_finished(result, &control, then_watch, to).await;
        });
        (self.inner.hooks.changed)();
        Ok(())
    }

    fn on_restore_event(&self, e: RestoreEvent) {
        {
            let mut guard = lock(&self.inner.remote.restore);
            let Some(p) = guard.as_mut() else { return };
            let mut received = lock(&self.inner.remote.received);
            match e {
                RestoreEvent::Planned { files, bytes } => {
                    p.files_total = files;
                    p.bytes_total = bytes;
                }
                RestoreEvent::Receiving { image, done, .. } => {
                    count_bytes(p, &mut received, image, done)
                }
                RestoreEvent::Restored {
                    image, bytes, how, ..
                } => {
                    count_bytes(p, &mut received, image, bytes);
                    p.files_done += 1;
                    if how == Restored::AlreadyThere {
                        p.already_there += 1;
                    }
                }
                RestoreEvent::Renamed { .. } => p.renamed += 1,
                RestoreEvent::Failed { .. } => p.failed += 1,
            }
        }
        (self.inner.hooks.changed)();
    }

    async fn restore_finished(
        &self,
        result: Result<photosync_engine::RestoreSummary, photosync_engine::EngineError>,
        control: &Control,
        then_watch: bool,
        to: PathBuf,
    ) {
        let notice = {
            let mut guard = lock(&self.inner.remote.restore);
            let Some(p) = guard.as_mut() else { return };
            match &result {
                Err(e) => {
                    p.state = RestoreState::Failed;
                    p.message = Some(e.to_string());
                }
                Ok(summary) if summary.stopped.is_some() => {
                    p.state = RestoreState::Stopped;
                    p.message = summary.stopped.clone();
                }
                Ok(_) if control.is_cancelled() => p.state = RestoreState::Cancelled,
                Ok(summary) => {
                    p.state = RestoreState::Done;
                    if !summary.failed.is_empty() {
                        p.message = Some(
                            summary
                                .failed
                                .iter()
                                .map(|(path, why)| format!("{}: {why}", path.display()))
                                .collect::<Vec<_>>()
                                .join("\n"),
                        );
                    }
                }
            }
            Notice::new(
                match p.state {
                    RestoreState::Done if p.failed == 0 => "Restore finished",
                    RestoreState::Cancelled => "Restore cancelled",
                    _ => "Restore did not finish",
                },
                format!(
                    "{} of {} files in {}{}",
                    p.files_done,
                    p.files_total,
                    to.display(),
                    p.message
                        .as_ref()
                        .map(|m| format!(": {}", m.lines().next().unwrap_or("")))
                        .unwrap_or_default()
                ),
                None,
            )
        };
        {
            // A restore started since keeps its own control.
            let mut current = lock(&self.inner.remote.control);
            if current
                .as_ref()
                .is_some_and(|c| std::ptr::eq(c.as_ref(), control))
            {
                *current = None;
            }
        }
        (self.inner.hooks.notify)(notice);
        if then_watch && result.is_ok() && !control.is_cancelled() {
            if let Err(e) = self.add_folder(&to).await {
                tracing::warn!(error = %e, "restored folder not watched");
            }
        }
        (self.inner.hooks.changed)();
    }

    /// Pauses or resumes the running restore.
    pub fn restore_pause(&self, paused: bool) {
        let Some(control) = lock(&self.inner.remote.control).clone() else {
            return;
        };
        if paused {
            control.pause();
        } else {
            control.resume();
        }
        if let Some(p) = lock(&self.inner.remote.restore).as_mut() {
            if matches!(p.state, RestoreState::Running | RestoreState::Paused) {
                p.state = if paused {
                    RestoreState::Paused
                } else {
                    RestoreState::Running
                };
            }
        }
        (self.inner.hooks.changed)();
    }

    /// Cancels the running restore; its partial files stay for a later one to resume.
    pub fn restore_cancel(&self) {
        if let Some(control) = lock(&self.inner.remote.control).clone() {
            control.resume();
            control.cancel();
        }
    }

    /// What the account holds (the first run asks before offering a restore).
    pub async fn account(&self) -> Result<photosync_protocol::Account, ServiceError> {
        Ok(self
            .client()?
            .account()
            .await
            .map_err(photosync_engine::EngineError::from)?)
    }
}
