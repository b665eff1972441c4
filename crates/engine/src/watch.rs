//! Watch mode: file-system events are hints, rescans are the truth.
//!
//! Changed paths are collected from `notify`, and a path is synced only once it has stopped
//! changing: no event for `settle`, and the same size and mtime on two checks in a row, so a
//! photo being copied in is never read half-written. A full rescan runs every
//! `rescan_interval` to catch whatever the events missed. Files that failed (server away,
//! network down) are tried again on their own after `retry`, doubling up to `max_retry`, and
//! their `Failed` event says when. Deleting a local file deletes
//! nothing on the server: the engine never deletes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use crate::events::Event;
use crate::sync::{Engine, Summary};

/// Failed files waiting for their next attempt.
#[derive(Default)]
struct Retries {
    due: HashMap<PathBuf, (Instant, u32)>,
}

impl Retries {
    /// Schedules each failed file of `summary` and says when in a `Failed` event.
    fn schedule(&mut self, engine: &Engine, summary: &Summary, options: &WatchOptions) {
        for (path, reason) in &summary.failed {
            if path.as_os_str().is_empty() {
                continue;
            }
            let tries = self.due.get(path).map_or(0, |d| d.1) + 1;
            let wait = options
                .retry
                .saturating_mul(1 << (tries - 1).min(16))
                .min(options.max_retry);
            self.due
                .insert(path.clone(), (Instant::now() + wait, tries));
            engine.emit(Event::Failed {
                path: path.clone(),
                reason: reason.clone(),
                next_retry: Some(std::time::SystemTime::now() + wait),
            });
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.due.values().map(|(at, _)| *at).min()
    }

    /// Files due now; the rest keep waiting.
    fn take_due(&mut self) -> Vec<PathBuf> {
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .due
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(p, _)| p.clone())
            .collect();
        due
    }

    /// Forgets files that no longer failed.
    fn settle(&mut self, tried: &[PathBuf], summary: &Summary) {
        for p in tried {
            if !summary.failed.iter().any(|(f, _)| f == p) {
                self.due.remove(p);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// How long a file must see no change before it is read.
    pub settle: Duration,
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

impl Engine {
    /// Syncs `paths`, then keeps them synced until the engine's control is cancelled.
    /// `on_round` gets each sync's summary.
    pub async fn watch(
        &self,
        paths: &[PathBuf],
        options: WatchOptions,
        mut on_round: impl FnMut(Summary),
    ) -> Result<(), String> {
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
        .map_err(|e| format!("cannot watch: {e}"))?;
        for p in paths {
            watcher
                .watch(p, RecursiveMode::Recursive)
                .map_err(|e| format!("cannot watch {}: {e}", p.display()))?;
        }
        let mut retries = Retries::default();
        let mut round = |retries: &mut Retries, tried: &[PathBuf], summary: Summary| {
            retries.settle(tried, &summary);
            retries.schedule(self, &summary, &options);
            on_round(summary);
        };
        let all = self.sync(paths).await;
        round(&mut retries, &[], all);
        let control = self.control();
        let mut settling: HashMap<PathBuf, Settling> = HashMap::new();
        let mut last_rescan = Instant::now();
        while !control.is_cancelled() {
            // Wake only for work: a settling file, a retry or the next rescan. An idle watcher
            // sleeps until then (no polling loop).
            let mut wake = last_rescan + options.rescan_interval;
            if !settling.is_empty() {
                wake = wake.min(Instant::now() + options.tick);
            }
            if let Some(due) = retries.next_due() {
                wake = wake.min(due);
            }
            tokio::select! {
                () = control.cancelled() => break,
                Some(p) = rx.recv() => {
                    settling
                        .entry(p)
                        .and_modify(|s| s.last_event = Instant::now())
                        .or_insert(Settling { last_event: Instant::now(), seen: None });
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    if last_rescan.elapsed() >= options.rescan_interval {
                        last_rescan = Instant::now();
                        settling.clear();
                        retries.due.clear();
                        let all = self.sync(paths).await;
                        round(&mut retries, &[], all);
                        continue;
                    }
                    let due = retries.take_due();
                    if !due.is_empty() {
                        tracing::debug!(files = due.len(), "retrying failed files");
                        let summary = self.sync(&due).await;
                        round(&mut retries, &due, summary);
                    }
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
                        if stable && s.last_event.elapsed() >= options.settle {
                            ready.push(p.clone());
                            false
                        } else {
                            true
                        }
                    });
                    // A settled folder may hold files still being written: those wait their turn.
                    let (dirs, mut ready): (Vec<_>, Vec<_>) =
                        ready.into_iter().partition(|p| p.is_dir());
                    for file in photosync_walk::walk(&dirs).flatten() {
                        let young = std::fs::metadata(&file)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_none_or(|age| age < options.settle);
                        if young {
                            settling.entry(file).or_insert(Settling {
                                last_event: Instant::now(),
                                seen: None,
                            });
                        } else {
                            ready.push(file);
                        }
                    }
                    if !ready.is_empty() {
                        tracing::debug!(files = ready.len(), "settled changes");
                        let summary = self.sync(&ready).await;
                        round(&mut retries, &ready, summary);
                    }
                }
            }
        }
        drop(watcher);
        Ok(())
    }
}
