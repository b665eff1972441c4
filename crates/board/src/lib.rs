//! The status board: every file the app knows about, with its state, folded from the engine's
//! events. A desktop shell renders it; nothing here knows about windows or IPC.
//!
//! - Rows keep the order files were first seen, and each has a stable `id` for thumbnails.
//! - `take_changed` hands out the ids of the rows changed since the last call, so a shell can send
//!   batches at its own pace instead of one message per event.
//! - `query` filters by state and name and returns one page, so a list of 10,000 can be
//!   rendered a screenful at a time.

mod rate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use photosync_events::{Event, OnServer};
use serde::{Deserialize, Serialize};

pub use rate::RateHistory;

/// Where a file stands. A file the server holds has one state, `BackedUp`, however that came
/// to be ([`Backed`] says how).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Seen, not yet read.
    Found,
    Identifying,
    Queued,
    Uploading,
    BackedUp,
    /// Nothing to back up (not a photo or video, empty, gone).
    Skipped,
    Failed,
}

/// How a backed-up file came to be on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backed {
    /// Uploaded while the app ran.
    Uploaded,
    /// The server already held these bytes.
    SameBytes,
    /// The server already held the same picture, at least as good.
    SamePicture,
    /// The sync list says an earlier run backed it up.
    Earlier,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Found,
        Status::Identifying,
        Status::Queued,
        Status::Uploading,
        Status::BackedUp,
        Status::Skipped,
        Status::Failed,
    ];

    /// Nothing more will happen to the file in this round.
    pub fn is_settled(self) -> bool {
        matches!(self, Status::BackedUp | Status::Skipped | Status::Failed)
    }

    /// Settled for good: backed up, or nothing to back up. A failure is not done.
    pub fn is_done(self) -> bool {
        matches!(self, Status::BackedUp | Status::Skipped)
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.name() == s)
    }

    /// The name on the wire (as serialised).
    pub fn name(self) -> &'static str {
        match self {
            Status::Found => "found",
            Status::Identifying => "identifying",
            Status::Queued => "queued",
            Status::Uploading => "uploading",
            Status::BackedUp => "backed_up",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

/// The server image a file matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matched {
    pub remote_id: i64,
    pub name: String,
    /// "same_bytes" or "same_picture".
    pub kind: &'static str,
    pub reason: String,
}

impl Matched {
    fn of(how: &OnServer) -> Matched {
        Matched {
            remote_id: how.remote_id(),
            name: match how {
                OnServer::SameBytes { name, .. } | OnServer::SamePicture { name, .. } => {
                    name.clone()
                }
            },
            kind: match how {
                OnServer::SameBytes { .. } => "same_bytes",
                OnServer::SamePicture { .. } => "same_picture",
            },
            reason: how.reason(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upload {
    pub sent: u64,
    pub total: u64,
    /// Bytes per second.
    pub rate: f64,
    pub part_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub id: u64,
    pub path: PathBuf,
    pub name: String,
    pub status: Status,
    /// How it was backed up, once it is.
    pub backed: Option<Backed>,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// Why the file could not be identified as a picture: it is backed up by its bytes.
    pub unidentified: Option<String>,
    pub matched: Option<Matched>,
    pub upload: Option<Upload>,
    /// Seconds since the epoch of the next automatic retry.
    pub next_retry: Option<u64>,
    /// Dropped on the window (shown at the top).
    pub dropped: bool,
}

/// How many files are in each state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub all: usize,
    pub by_status: BTreeMap<Status, usize>,
    /// Files backed up or with nothing to back up, out of `all` (failures are not done).
    pub done: usize,
    /// Files that failed (also in `by_status`).
    pub failed: usize,
    /// Bytes per second over the last few seconds.
    pub rate: f64,
    /// Files found so far while a walk is still under way (the total is not known yet).
    pub walking: Option<u64>,
}

/// A page request: optional state filter and name search.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Query {
    pub status: Option<String>,
    pub search: Option<String>,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    /// Rows matching the filter, in all.
    pub total: usize,
    pub offset: usize,
    pub rows: Vec<Row>,
}

#[derive(Debug, Default)]
pub struct Board {
    rows: Vec<Row>,
    index: HashMap<PathBuf, usize>,
    changed: BTreeSet<usize>,
    rate: RateHistory,
    /// Files and folders dropped on the window: files under them show first.
    dropped: Vec<PathBuf>,
    /// Files found so far by each walk under way, by the walk's name.
    walking: HashMap<PathBuf, u64>,
}

fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Board {
    pub fn new() -> Board {
        Board::default()
    }

    fn row_mut(&mut self, path: &Path) -> &mut Row {
        let i = match self.index.get(path) {
            Some(&i) => i,
            None => {
                let i = self.rows.len();
                self.rows.push(Row {
                    id: i as u64,
                    path: path.to_path_buf(),
                    name: name_of(path),
                    status: Status::Found,
                    backed: None,
                    reason: None,
                    unidentified: None,
                    matched: None,
                    upload: None,
                    next_retry: None,
                    dropped: self.dropped.iter().any(|d| path.starts_with(d)),
                });
                self.index.insert(path.to_path_buf(), i);
                i
            }
        };
        self.changed.insert(i);
        &mut self.rows[i]
    }

    /// Folds one engine event in.
    pub fn apply(&mut self, event: &Event, now: Instant) {
        if let Event::Walking { path, found, done } = event {
            if *done {
                self.walking.remove(path);
            } else {
                self.walking.insert(path.clone(), *found);
            }
            return;
        }
        let path = event.path();
        // A folder's presence is news for the service, not a file row.
        if matches!(event, Event::Folder { .. }) {
            return;
        }
        if let Event::Uploading { sent, .. } = event {
            let row = self.index.get(path.as_path()).map(|&i| &self.rows[i]);
            // Late progress of a backed-up row moved no new bytes (and is ignored below).
            let late = row.is_some_and(|r| matches!(r.status, Status::BackedUp | Status::Skipped));
            if !late {
                let before = row.and_then(|r| r.upload.as_ref()).map_or(0, |u| u.sent);
                self.rate.add(now, sent.saturating_sub(before));
            }
        }
        let row = self.row_mut(path);
        let settle = |row: &mut Row, status: Status| {
            row.status = status;
            row.upload = None;
            row.next_retry = None;
        };
        let back_up = |row: &mut Row, how: Backed| {
            settle(row, Status::BackedUp);
            row.backed = Some(how);
            row.reason = None;
        };
        match event {
            Event::Discovered { .. } => {
                // A rescan rediscovers settled files: keep what is known about them.
                if !row.status.is_settled() {
                    row.status = Status::Found;
                }
            }
            Event::Identifying { .. } => {
                row.status = Status::Identifying;
                row.reason = None;
                row.unidentified = None;
            }
            Event::Unidentified { reason, .. } => row.unidentified = Some(reason.clone()),
            // A later rescan finds what this session uploaded or matched in the sync list: the
            // row keeps saying what happened to it.
            Event::AlreadySynced { .. } if row.status == Status::BackedUp => {}
            Event::AlreadySynced {
                remote_id, same_as, ..
            } => {
                let name = same_as.as_deref().map(name_of);
                row.matched = Some(Matched {
                    remote_id: *remote_id,
                    name: name.clone().unwrap_or_default(),
                    kind: "same_bytes",
                    reason: match name {
                        Some(n) if n != row.name => {
                            format!("same bytes as {n} (server image {remote_id})")
                        }
                        _ => format!("server image {remote_id}"),
                    },
                });
                back_up(row, Backed::Earlier);
            }
            Event::OnServer { how, .. } => {
                row.matched = Some(Matched::of(how));
                back_up(
                    row,
                    match how {
                        OnServer::SameBytes { .. } => Backed::SameBytes,
                        OnServer::SamePicture { .. } => Backed::SamePicture,
                    },
                );
            }
            Event::Queued { bytes, beside, .. } => {
                // A worse server copy of the picture: shown beside the upload, with the rule.
                row.matched = beside.as_ref().map(Matched::of);
                row.status = Status::Queued;
                row.backed = None;
                row.reason = None;
                row.upload = Some(Upload {
                    sent: 0,
                    total: *bytes,
                    rate: 0.0,
                    part_size: 0,
                });
            }
            // Progress that arrives after the outcome (another pass's late report) does not
            // take a backed-up row back to "Uploading".
            Event::Uploading { .. } if matches!(row.status, Status::BackedUp | Status::Skipped) => {
            }
            Event::Uploading {
                sent,
                total,
                rate,
                part_size,
                ..
            } => {
                row.status = Status::Uploading;
                row.reason = None;
                row.next_retry = None;
                row.upload = Some(Upload {
                    sent: *sent,
                    total: *total,
                    rate: *rate,
                    part_size: *part_size,
                });
            }
            Event::Uploaded { .. } => back_up(row, Backed::Uploaded),
            Event::Skipped {
                reason, problem, ..
            } => {
                // A file that should be backed up but cannot be is a failure to a person.
                settle(
                    row,
                    if *problem {
                        Status::Failed
                    } else {
                        Status::Skipped
                    },
                );
                row.backed = None;
                row.reason = Some(reason.clone());
            }
            Event::Failed {
                reason, next_retry, ..
            } => {
                // A part that failed and will be retried keeps its upload progress.
                let upload = row.upload.take();
                settle(row, Status::Failed);
                row.backed = None;
                row.reason = Some(reason.clone());
                row.next_retry = next_retry.map(epoch_secs);
                if next_retry.is_some() {
                    row.upload = upload;
                }
            }
            Event::Folder { .. } | Event::Walking { .. } => {}
        }
    }

    /// Marks files and folders dropped on the window, so the files show at the top.
    pub fn mark_dropped(&mut self, paths: &[PathBuf]) {
        self.dropped.extend(paths.iter().cloned());
        for (i, r) in self.rows.iter_mut().enumerate() {
            if !r.dropped && paths.iter().any(|d| r.path.starts_with(d)) {
                r.dropped = true;
                self.changed.insert(i);
            }
        }
    }

    /// Forgets every file under `folder` (it was removed from the app).
    pub fn remove_under(&mut self, folder: &Path) {
        let keep: Vec<Row> = self
            .rows
            .drain(..)
            .filter(|r| !r.path.starts_with(folder) || r.dropped)
            .collect();
        self.index.clear();
        self.changed.clear();
        for (i, mut r) in keep.into_iter().enumerate() {
            r.id = i as u64;
            self.index.insert(r.path.clone(), i);
            self.rows.push(r);
        }
    }

    /// Ids of the rows changed since the last call.
    pub fn take_changed(&mut self) -> Vec<u64> {
        let changed = std::mem::take(&mut self.changed);
        changed.into_iter().map(|i| self.rows[i].id).collect()
    }

    pub fn row(&self, id: u64) -> Option<&Row> {
        self.rows.get(id as usize)
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn totals(&self, now: Instant) -> Totals {
        let mut t = Totals {
            all: self.rows.len(),
            rate: self.rate.current(now),
            walking: (!self.walking.is_empty()).then(|| self.walking.values().sum()),
            ..Totals::default()
        };
        for s in Status::ALL {
            t.by_status.insert(s, 0);
        }
        for r in &self.rows {
            *t.by_status.entry(r.status).or_default() += 1;
            t.done += usize::from(r.status.is_done());
            t.failed += usize::from(r.status == Status::Failed);
        }
        t
    }

    /// Files under `folder` and how many of them are done.
    pub fn count_under(&self, folder: &Path) -> (usize, usize) {
        self.rows
            .iter()
            .filter(|r| r.path.starts_with(folder))
            .fold((0, 0), |(n, done), r| {
                (n + 1, done + usize::from(r.status.is_done()))
            })
    }

    /// One page of rows matching `q`: dropped files first, then in the order first seen.
    pub fn query(&self, q: &Query) -> Page {
        let status = q.status.as_deref().and_then(Status::parse);
        let needle = q
            .search
            .as_deref()
            .map(str::to_lowercase)
            .filter(|s| !s.is_empty());
        let matching = |r: &&Row| {
            status.is_none_or(|s| r.status == s)
                && needle
                    .as_deref()
                    .is_none_or(|n| r.name.to_lowercase().contains(n))
        };
        let dropped = self.rows.iter().filter(|r| r.dropped).filter(matching);
        let rest = self.rows.iter().filter(|r| !r.dropped).filter(matching);
        let all: Vec<&Row> = dropped.chain(rest).collect();
        let limit = if q.limit == 0 { 100 } else { q.limit.min(1000) };
        Page {
            total: all.len(),
            offset: q.offset,
            rows: all
                .into_iter()
                .skip(q.offset)
                .take(limit)
                .cloned()
                .collect(),
        }
    }

    pub fn rate_history(&self) -> &RateHistory {
        &self.rate
    }

    /// The one line a tray menu shows, e.g. "Syncing 12 of 340 · 3.1 MB/s" or "Up to date".
    /// A failure is never counted as done, and "Up to date" means every file is.
    pub fn status_line(&self, now: Instant, paused: bool, offline: bool) -> String {
        let t = self.totals(now);
        let failed = t.failed;
        let busy = t.all - t.done - failed;
        let mut line = if offline {
            "Offline · will retry".to_owned()
        } else if paused {
            format!("Paused · {} of {} done", t.done, t.all)
        } else if let Some(found) = t.walking {
            // The total is not known before the walk ends.
            format!(
                "Syncing {} · found {found} so far{}",
                t.done,
                rate_part(t.rate)
            )
        } else if busy > 0 {
            format!("Syncing {} of {}{}", t.done, t.all, rate_part(t.rate))
        } else if t.all == 0 {
            "No photos yet".to_owned()
        } else if failed > 0 {
            format!("Backed up {} of {}", t.done, t.all)
        } else {
            "Up to date".to_owned()
        };
        if failed > 0 {
            line.push_str(&format!(" · {failed} failed"));
        }
        line
    }
}

/// " · 3.1 MB/s" while bytes move; nothing once the rate has decayed.
fn rate_part(rate: f64) -> String {
    if rate >= 1.0 {
        format!(" · {}/s", human_bytes(rate))
    } else {
        String::new()
    }
}

/// "3.1 MB", "512 kB", "12 B".
pub fn human_bytes(bytes: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes.max(0.0);
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", units[u])
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests;
