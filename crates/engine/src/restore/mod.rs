//! Restore: brings the account's images down into a folder, under their original folders,
//! names and modification times.
//!
//! Every file arrives in a hidden partial file beside its place (named by its digest, so a run
//! after a kill finds it and resumes with a range request), is verified against its BLAKE3,
//! and only then linked into place under a name nothing holds. A different local file is never
//! overwritten; a byte-identical one is kept as it is. Each restored file is recorded in the
//! file table and the sync list, so a following sync sends nothing.

mod fetch;
pub mod names;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use photosync_events::{RestoreEvent, Restored};
use photosync_identify::Digest;
use photosync_protocol::ImageInfo;

use crate::client::ImageFilter;
use crate::state::{FileRecord, How, SyncedRecord};
use crate::sync::{Control, Engine, EngineError};

pub use names::Rules;

/// What to restore, and where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The folder the account's folders are recreated in.
    pub to: PathBuf,
    /// Days and names, filtered by the server.
    pub filter: ImageFilter,
    /// A glob over `folder/name` (`*` crosses folders; ASCII case ignored).
    pub matching: Option<glob::Pattern>,
    /// Only these images (a selection in the app); None: every image the filters keep.
    pub ids: Option<Vec<i64>>,
    /// Downloads at once.
    pub concurrency: usize,
}

impl RestoreOptions {
    pub fn new(to: PathBuf) -> RestoreOptions {
        RestoreOptions {
            to,
            filter: ImageFilter::default(),
            matching: None,
            ids: None,
            concurrency: 4,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreSummary {
    /// Images the server listed under the filters.
    pub planned: usize,
    /// Downloaded, verified and put in place.
    pub written: usize,
    pub bytes_written: u64,
    /// A byte-identical local file was there already.
    pub already_there: usize,
    /// Names changed: made safe here, or beside a different file of the same name.
    pub renamed: Vec<(PathBuf, String)>,
    pub failed: Vec<(PathBuf, String)>,
    /// Files not finished because the run was cancelled or stopped.
    pub interrupted: usize,
    /// Why the whole restore stopped early (the disk is full), if it did.
    pub stopped: Option<String>,
}

/// One image and where it goes.
#[derive(Debug, Clone)]
struct Job {
    image: ImageInfo,
    digest: Digest,
    /// Relative to the restore folder, made safe.
    place: PathBuf,
}

/// How one file ended.
#[derive(Debug)]
enum Outcome {
    Done {
        image: i64,
        path: PathBuf,
        how: Restored,
        bytes: u64,
        /// The file is not under its first-choice name: a different file had it.
        clash_with: Option<PathBuf>,
    },
    Failed(PathBuf, String),
    /// Cancelled, or the restore stopped: the partial file stays for the next run.
    Interrupted,
    /// The disk is full: everything stops.
    DiskFull(PathBuf, String),
}

/// What every download of one restore shares.
struct Ctx<'a> {
    engine: &'a Engine,
    to: PathBuf,
    control: &'a Control,
    /// Set when the restore must stop (the disk is full).
    stop: AtomicBool,
    events: &'a (dyn Fn(RestoreEvent) + Send + Sync),
}

impl Ctx<'_> {
    fn halted(&self) -> bool {
        self.control.is_cancelled() || self.stop.load(Ordering::SeqCst)
    }
}

impl Engine {
    /// Restores the account's images into `options.to`. `control` pauses and cancels it
    /// (a cancelled restore keeps its partial files, and the next run resumes them).
    pub async fn restore(
        &self,
        options: &RestoreOptions,
        control: &Control,
        events: &(dyn Fn(RestoreEvent) + Send + Sync),
    ) -> Result<RestoreSummary, EngineError> {
        let to = std::path::absolute(&options.to).map_err(|source| EngineError::Path {
            path: options.to.clone(),
            source,
        })?;
        std::fs::create_dir_all(&to).map_err(|source| EngineError::Path {
            path: to.clone(),
            source,
        })?;
        let images = self.list_for_restore(options).await?;
        let mut summary = RestoreSummary {
            planned: images.len(),
            ..RestoreSummary::default()
        };
        let jobs = plan(images, Rules::of_this_system(), &mut summary, events);
        events(RestoreEvent::Planned {
            files: jobs.len() as u64,
            bytes: jobs.iter().map(|j| j.image.bytes).sum(),
        });
        let ctx = Ctx {
            engine: self,
            to,
            control,
            stop: AtomicBool::new(false),
            events,
        };
        let mut outcomes = futures_util::stream::iter(jobs)
            .map(|job| restore_one(&ctx, job))
            .buffer_unordered(options.concurrency.max(1));
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Outcome::Done {
                    image,
                    path,
                    how,
                    bytes,
                    clash_with,
                } => {
                    if let Some(first) = clash_with {
                        let why = format!(
                            "{} holds a different file; restored beside it",
                            first.display()
                        );
                        events(RestoreEvent::Renamed {
                            path: path.clone(),
                            why: why.clone(),
                        });
                        summary.renamed.push((path.clone(), why));
                    }
                    match how {
                        Restored::Written => {
                            summary.written += 1;
                            summary.bytes_written += bytes;
                        }
                        Restored::AlreadyThere => summary.already_there += 1,
                    }
                    events(RestoreEvent::Restored {
                        image,
                        path,
                        bytes,
                        how,
                    });
                }
                Outcome::Failed(path, reason) => {
                    events(RestoreEvent::Failed {
                        path: path.clone(),
                        reason: reason.clone(),
                    });
                    summary.failed.push((path, reason));
                }
                Outcome::Interrupted => summary.interrupted += 1,
                Outcome::DiskFull(path, reason) => {
                    ctx.stop.store(true, Ordering::SeqCst);
                    summary.interrupted += 1;
                    if summary.stopped.is_none() {
                        summary.stopped = Some(format!(
                            "the disk is full ({reason}, writing {}): every file restored so \
                             far is kept; free some space and restore again to go on",
                            path.display()
                        ));
                    }
                }
            }
        }
        Ok(summary)
    }

    async fn list_for_restore(
        &self,
        options: &RestoreOptions,
    ) -> Result<Vec<ImageInfo>, EngineError> {
        let wanted: Option<HashSet<i64>> = options
            .ids
            .as_ref()
            .map(|ids| ids.iter().copied().collect());
        let glob = glob::MatchOptions {
            case_sensitive: false,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        let mut images = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .client()
                .list_images(&options.filter, after, 1000)
                .await?;
            for image in page.images {
                if wanted.as_ref().is_some_and(|w| !w.contains(&image.id)) {
                    continue;
                }
                if let Some(pattern) = &options.matching {
                    let full = match image.folder.as_deref() {
                        Some(f) if !f.is_empty() => format!("{f}/{}", image.name),
                        _ => image.name.clone(),
                    };
                    if !pattern.matches_with(&full, glob) {
                        continue;
                    }
                }
                images.push(image);
            }
            match page.next {
                Some(next) if next > after => after = next,
                _ => break,
            }
        }
        Ok(images)
    }

    /// Records a restored file as read and as held by the server, so a sync sends nothing.
    fn record_restored(&self, path: &Path, job: &Job) -> Result<(), String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let rec = FileRecord {
            size: meta.len(),
            mtime_ns: crate::upload::mtime_ns(&meta),
            digest: job.digest,
            identifier: None,
            pixels: None,
            evidence: None,
        };
        let synced = SyncedRecord {
            digest: job.digest,
            identifier: job.image.identifier.as_deref().and_then(|i| i.parse().ok()),
            remote_id: job.image.id,
            how: How::Restored,
            at: now(),
        };
        let key = self.client().server().key();
        let state = self.state();
        (|| {
            // What the file table knows of these very bytes (read by a sync) is kept.
            let known = state.file(path)?.is_some_and(|f| {
                (f.digest, f.size, f.mtime_ns) == (rec.digest, rec.size, rec.mtime_ns)
            });
            if !known {
                state.put_file(path, &rec)?;
            }
            // Uploaded from here before: that stays what the sync list says.
            if state.synced(&key, &job.digest)?.is_none() {
                state.mark_synced(&key, &synced)?;
            }
            Ok::<_, crate::state::StateError>(())
        })()
        .map_err(|e| e.to_string())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Each image's place, made safe; two images that would share a place within this run are
/// numbered in id order, so a run after a kill plans the same places.
fn plan(
    images: Vec<ImageInfo>,
    rules: Rules,
    summary: &mut RestoreSummary,
    events: &(dyn Fn(RestoreEvent) + Send + Sync),
) -> Vec<Job> {
    let mut taken: HashSet<PathBuf> = HashSet::new();
    let mut jobs = Vec::with_capacity(images.len());
    for image in images {
        let Ok(digest) = image.digest.parse::<Digest>() else {
            let path = PathBuf::from(&image.name);
            let why = format!(
                "the server's digest {:?} is not a BLAKE3 digest",
                image.digest
            );
            events(RestoreEvent::Failed {
                path: path.clone(),
                reason: why.clone(),
            });
            summary.failed.push((path, why));
            continue;
        };
        let exact = image
            .name_bytes
            .as_deref()
            .and_then(|b| photosync_protocol::percent_decode_name(b).ok());
        let placed = names::place(
            image.folder.as_deref(),
            &image.name,
            exact.as_deref(),
            rules,
        );
        let mut place = placed.path.clone();
        let mut n = 1;
        while !taken.insert(key_of(&place, rules)) {
            place = names::numbered(&placed.path, n);
            n += 1;
        }
        let why = match (placed.changed, place != placed.path) {
            (Some(why), false) => Some(why),
            (Some(why), true) => Some(format!("{why}; another server image has that name")),
            (None, true) => Some(format!(
                "another server image is named {}",
                placed.path.display()
            )),
            (None, false) => None,
        };
        if let Some(why) = why {
            events(RestoreEvent::Renamed {
                path: place.clone(),
                why: why.clone(),
            });
            summary.renamed.push((place.clone(), why));
        }
        jobs.push(Job {
            image,
            digest,
            place,
        });
    }
    jobs
}

/// Names that one file system takes as the same: case is ignored on Windows (and by default on
/// macOS).
fn key_of(path: &Path, rules: Rules) -> PathBuf {
    if rules == Rules::Windows || cfg!(target_os = "macos") {
        PathBuf::from(path.to_string_lossy().to_lowercase())
    } else {
        path.to_path_buf()
    }
}

async fn restore_one(ctx: &Ctx<'_>, job: Job) -> Outcome {
    let first = ctx.to.join(&job.place);
    // Paused: no new file starts.
    ctx.control.wait_while_paused().await;
    if ctx.halted() {
        return Outcome::Interrupted;
    }
    match fetch::fetch(ctx, &job, &first).await {
        Ok((path, how)) => {
            if let Err(e) = ctx.engine.record_restored(&path, &job) {
                // The file is in place and verified; only the sync list missed it, and the next
                // sync finds the bytes on the server anyway.
                tracing::warn!(path = %path.display(), error = %e, "restored file not recorded");
            }
            Outcome::Done {
                image: job.image.id,
                clash_with: (path != first).then_some(first),
                path,
                how,
                bytes: job.image.bytes,
            }
        }
        Err(fetch::FetchError::Interrupted) => Outcome::Interrupted,
        Err(fetch::FetchError::DiskFull(e)) => Outcome::DiskFull(first, e.to_string()),
        Err(e) => Outcome::Failed(first, e.to_string()),
    }
}
