//! Watch mode: file-system events are hints, rescans are the truth.
//!
//! Changed paths are collected from `notify`, and a path is synced only once it has stopped
//! changing: no event for its settle time, and the same size and mtime on two checks in a row.
//! The settle time adapts: a file that changes again after it seemed settled (a slow copy from
//! a share or a card) waits twice as long next time. The upload's last part waits until the
//! file has been left alone for twice its settle time and is still what was read; a file that
//! changed is dropped from the server (its unfinished upload terminated) and settles again, so
//! a half-written file never becomes an image.
//!
//! A full rescan runs every `rescan_interval` to catch whatever the events missed. Files that
//! failed (server away, network down) are tried again on their own after `retry`, doubling up
//! to `max_retry`, and their `Failed` event says when. A watched folder that goes away (a card
//! or share unmounted) is reported and watched again when it comes back. Deleting a local file
//! deletes nothing on the server: the engine never deletes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use crate::sync::{Engine, EngineError, Summary};
use photosync_events::Event;

/// Failed files waiting for their next attempt, with their last reason.
#[derive(Default)]
struct Retries {
    due: HashMap<PathBuf, (Instant, u32, String)>,
}

impl Retries {
    /// Schedules each failed file of `summary` and says when in a `Failed` event.
    fn schedule(&mut self, engine: &Engine, summary: &Summary, options: &WatchOptions) {
        for (path, reason) in &summary.failed {
            let tries = self.due.get(path).map_or(0, |d| d.1) + 1;
            let wait = options
                .retry
                .saturating_mul(1 << (tries - 1).min(16))
                .min(options.max_retry);
            self.due
                .insert(path.clone(), (Instant::now() + wait, tries, reason.clone()));
            engine.emit(Event::Failed {
                path: path.clone(),
                reason: reason.clone(),
                next_retry: Some(std::time::SystemTime::now() + wait),
            });
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.due.values().map(|(at, ..)| *at).min()
    }

    /// Files due now; the rest keep waiting.
    fn take_due(&mut self) -> Vec<PathBuf> {
        let now = Instant::now();
        self.due
            .iter()
            .filter(|(_, (at, ..))| *at <= now)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Forgets files that no longer failed.
    fn settle(&mut self, tried: &[PathBuf], summary: &Summary) {
        for p in tried {
            if !summary.failed.iter().any(|(f, _)| f == p) {
                self.due.remove(p);
            }
        }
    }

    /// The failures that still stand, for the closing summary.
    fn standing(&self) -> Vec<(PathBuf, String)> {
        let mut v: Vec<_> = self
            .due
            .iter()
            .map(|(p, (_, _, why))| (p.clone(), why.clone()))
            .collect();
        v.sort();
        v
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// How long a file must see no change before it is read, at first.
    pub settle: Duration,
    /// The longest settle time a slowly written file can reach.
    pub max_settle: Duration,
    /// How often pending changes are checked.
    pub tick: Duration,
    pub rescan_interval: Duration,
    /// First wait before a failed file is tried again.
    pub retry: Duration,
    /// Longest wait between retries.
    pub max_retry: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            settle: Duration::from_secs(2),
            max_settle: Duration::from_secs(60),
            tick: Duration::from_millis(500),
            rescan_interval: Duration::from_secs(3600),
            retry: Duration::from_secs(15),
            max_retry: Duration::from_secs(900),
        }
    }
}

/// A changed path waiting to settle.
struct Settling {
    last_event: Instant,
    seen: Option<(u64, std::time::SystemTime)>,
}

impl Settling {
    fn new() -> Settling {
        Settling {
            last_event: Instant::now(),
            seen: None,
        }
    }
}

/// The watched folders, and which of them are there.
struct Roots {
    roots: Vec<PathBuf>,
    present: Vec<bool>,
}

impl Roots {
    fn holds(&self, p: &Path) -> bool {
        self.roots.iter().any(|r| p.starts_with(r))
    }

    /// Whether `p` is a hidden entry, or lies in one, below its root: full scans skip those
    /// (and a restore's partial files are hidden), so events about them are ignored too.
    fn hidden(&self, p: &Path) -> bool {
        self.roots
            .iter()
            .filter_map(|r| p.strip_prefix(r).ok())
            .any(|rest| {
                rest.components()
                    .any(|c| c.as_os_str().as_encoded_bytes().starts_with(b"."))
            })
    }

    fn any_missing(&self) -> bool {
        self.present.iter().any(|p| !p)
    }
}

impl Engine {
    /// Syncs `paths`, then keeps them synced until the engine's control is cancelled.
    /// `on_round` gets each sync's summary. Returns the whole watch's summary: its counts, and
    /// the failures that still stand at the end (a file that failed and was uploaded on a
    /// later try is not among them).
    pub async fn watch(
        &self,
        paths: &[PathBuf],
        options: WatchOptions,
        mut on_round: impl FnMut(Summary),
    ) -> Result<Summary, EngineError> {
        self.add_roots(paths);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Reading a file (ours, a viewer's, a thumbnailer's) changes nothing.
            if let Ok(event) = res {
                if matches!(event.kind, notify::EventKind::Access(_)) {
                    return;
                }
                for p in event.paths {
                    let _ = tx.send(p);
                }
            }
        })
        .map_err(|e| EngineError::Watch {
            path: paths.first().cloned().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        let roots: Vec<PathBuf> = paths
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect();
        for p in &roots {
            watcher
                .watch(p, RecursiveMode::Recursive)
                .map_err(|e| EngineError::Watch {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
            // The parent tells when the folder itself goes away and comes back. A parent inside
            // another watched folder is watched already (recursively: a second, flat watch
            // would replace that).
            let inside = |parent: &Path| roots.iter().any(|r| parent.starts_with(r));
            if let Some(parent) = p.parent().filter(|q| p.is_dir() && !inside(q)) {
                if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
                    tracing::debug!(error = %e, "the parent of a watched folder is not watched");
                }
            }
        }
        let mut roots = Roots {
            present: vec![true; roots.len()],
            roots,
        };
        let mut total = Summary::default();
        let mut retries = Retries::default();
        // Settle times of files seen changing after they seemed settled.
        let mut slow: HashMap<PathBuf, Duration> = HashMap::new();
        let mut settling: HashMap<PathBuf, Settling> = HashMap::new();
        let quiet_of = |ready: &[PathBuf], slow: &HashMap<PathBuf, Duration>| {
            2 * ready
                .iter()
                .filter_map(|p| slow.get(p))
                .copied()
                .max()
                .unwrap_or(options.settle)
        };
        let mut round = |retries: &mut Retries,
                         settling: &mut HashMap<PathBuf, Settling>,
                         slow: &mut HashMap<PathBuf, Duration>,
                         tried: &[PathBuf],
                         mut summary: Summary| {
            // Changed under their upload: settle again, for longer.
            for p in std::mem::take(&mut summary.changed) {
                let next = slow
                    .get(&p)
                    .map_or(options.settle * 2, |s| *s * 2)
                    .min(options.max_settle);
                slow.insert(p.clone(), next);
                settling.insert(p, Settling::new());
            }
            retries.settle(tried, &summary);
            retries.schedule(self, &summary, &options);
            let mut counts = summary.clone();
            counts.failed.clear();
            total.absorb(counts);
            on_round(summary);
        };
        let quiet = quiet_of(&[], &slow);
        let all = self.round(&roots.roots, quiet).await;
        round(&mut retries, &mut settling, &mut slow, &[], all);
        let control = self.control();
        let mut last_rescan = Instant::now();
        while !control.is_cancelled() {
            // Wake only for work: a settling file, a retry, a missing folder or the next
            // rescan. An idle watcher sleeps until then (no polling loop).
            let mut wake = last_rescan + options.rescan_interval;
            if !settling.is_empty() {
                wake = wake.min(Instant::now() + options.tick);
            }
            if roots.any_missing() {
                wake = wake.min(Instant::now() + MISSING_POLL);
            }
            if let Some(due) = retries.next_due() {
                wake = wake.min(due);
            }
            tokio::select! {
                () = control.cancelled() => break,
                Some(p) = rx.recv() => {
                    if let Some(back) = self.check_roots(&mut roots, &mut watcher) {
                        settling.extend(back.into_iter().map(|p| (p, Settling::new())));
                    }
                    if !roots.holds(&p) || roots.hidden(&p) {
                        continue; // a sibling in a watched folder's parent, or hidden
                    }
                    if roots.roots.contains(&p) && p.is_dir() {
                        // The folder itself was made anew (deleted and re-created, perhaps
                        // faster than its absence was seen): watch the new one.
                        let _ = watcher.unwatch(&p);
                        if let Err(e) = watcher.watch(&p, RecursiveMode::Recursive) {
                            tracing::warn!(folder = %p.display(), error = %e, "cannot watch again");
                        }
                    }
                    match settling.get_mut(&p) {
                        Some(s) => {
                            // Written again after a pause: a slow writer, which may pause as
                            // long again; it settles only after twice its longest pause.
                            let pause = s.last_event.elapsed();
                            let settle = slow.get(&p).copied().unwrap_or(options.settle);
                            if pause >= options.tick && 2 * pause > settle {
                                slow.insert(p.clone(), (2 * pause).min(options.max_settle));
                            }
                            s.last_event = Instant::now();
                        }
                        None => {
                            settling.insert(p, Settling::new());
                        }
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    if let Some(back) = self.check_roots(&mut roots, &mut watcher) {
                        settling.extend(back.into_iter().map(|p| (p, Settling::new())));
                    }
                    if last_rescan.elapsed() >= options.rescan_interval {
                        last_rescan = Instant::now();
                        settling.clear();
                        retries.due.clear();
                        let present: Vec<PathBuf> = roots.roots.iter().zip(&roots.present)
                            .filter(|(_, p)| **p).map(|(r, _)| r.clone()).collect();
                        let all = self.round(&present, quiet_of(&[], &slow)).await;
                        round(&mut retries, &mut settling, &mut slow, &[], all);
                        continue;
                    }
                    let mut due = retries.take_due();
                    // A file deleted or moved away since it failed is no longer owed.
                    due.retain(|p| {
                        let there = p.exists();
                        if !there {
                            retries.due.remove(p);
                        }
                        there
                    });
                    if !due.is_empty() {
                        tracing::debug!(files = due.len(), "retrying failed files");
                        let summary = self.round(&due, quiet_of(&due, &slow)).await;
                        round(&mut retries, &mut settling, &mut slow, &due, summary);
                    }
                    let ready = settled(&mut settling, &slow, &options);
                    if !ready.is_empty() {
                        tracing::debug!(files = ready.len(), "settled changes");
                        let summary = self.round(&ready, quiet_of(&ready, &slow)).await;
                        round(&mut retries, &mut settling, &mut slow, &ready, summary);
                    }
                }
            }
        }
        drop(watcher);
        total.failed = retries.standing();
        Ok(total)
    }

    /// Notices watched folders that went away or came back; returns those that came back, to
    /// be synced, after watching them again.
    fn check_roots(
        &self,
        roots: &mut Roots,
        watcher: &mut notify::RecommendedWatcher,
    ) -> Option<Vec<PathBuf>> {
        let mut back = Vec::new();
        for (root, present) in roots.roots.iter().zip(roots.present.iter_mut()) {
            let now = root.exists();
            if now == *present {
                continue;
            }
            if now {
                if let Err(e) = watcher.watch(root, RecursiveMode::Recursive) {
                    tracing::warn!(folder = %root.display(), error = %e, "cannot watch again");
                    continue;
                }
                tracing::info!(folder = %root.display(), "the watched folder is back");
                back.push(root.clone());
            } else {
                tracing::warn!(
                    folder = %root.display(),
                    "the watched folder is gone; it is watched again when it comes back"
                );
                let _ = watcher.unwatch(root);
            }
            *present = now;
            self.emit(Event::Folder {
                path: root.clone(),
                present: now,
            });
        }
        (!back.is_empty()).then_some(back)
    }
}

/// How often a missing watched folder is looked for when no event says it is back (its
/// parent is gone too, or not watchable).
const MISSING_POLL: Duration = Duration::from_secs(5);

/// Takes the paths that have settled: no event for their settle time and the same size and
/// mtime twice in a row. A settled folder's files are walked; those still young keep settling.
fn settled(
    settling: &mut HashMap<PathBuf, Settling>,
    slow: &HashMap<PathBuf, Duration>,
    options: &WatchOptions,
) -> Vec<PathBuf> {
    let settle_of = |p: &Path| slow.get(p).copied().unwrap_or(options.settle);
    let mut ready = Vec::new();
    settling.retain(|p, s| {
        // A folder moved in is walked once it settles, like a file.
        let now = std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)));
        let Some(now) = now else {
            // Deleted: nothing to upload, and nothing is deleted on the server.
            return false;
        };
        let stable = s.seen == Some(now);
        s.seen = Some(now);
        if stable && s.last_event.elapsed() >= settle_of(p) {
            ready.push(p.clone());
            false
        } else {
            true
        }
    });
    let (dirs, mut ready): (Vec<_>, Vec<_>) = ready.into_iter().partition(|p| p.is_dir());
    for file in photosync_walk::walk(&dirs).flatten() {
        let young = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < settle_of(&file));
        if young {
            settling.entry(file).or_insert_with(Settling::new);
        } else {
            ready.push(file);
        }
    }
    ready
}
