//! Watch mode: file-system events are hints, rescans are the truth.
//!
//! Changed paths are collected from `notify`, and a path is synced only once it has stopped
//! changing: no event for `settle`, and the same size and mtime on two checks in a row, so a
//! photo being copied in is never read half-written. A full rescan runs every
//! `rescan_interval` to catch whatever the events missed. Deleting a local file deletes
//! nothing on the server: the engine never deletes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};

use crate::sync::{Engine, Summary};

#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// How long a file must see no change before it is read.
    pub settle: Duration,
    /// How often pending changes are checked.
    pub tick: Duration,
    pub rescan_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            settle: Duration::from_secs(2),
            tick: Duration::from_millis(500),
            rescan_interval: Duration::from_secs(3600),
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
            if let Ok(event) = res {
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
        on_round(self.sync(paths).await);
        let control = self.control();
        let mut settling: HashMap<PathBuf, Settling> = HashMap::new();
        let mut tick = tokio::time::interval(options.tick);
        let mut last_rescan = Instant::now();
        while !control.is_cancelled() {
            tokio::select! {
                Some(p) = rx.recv() => {
                    settling
                        .entry(p)
                        .and_modify(|s| s.last_event = Instant::now())
                        .or_insert(Settling { last_event: Instant::now(), seen: None });
                }
                _ = tick.tick() => {
                    if last_rescan.elapsed() >= options.rescan_interval {
                        last_rescan = Instant::now();
                        settling.clear();
                        on_round(self.sync(paths).await);
                        continue;
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
                        on_round(self.sync(&ready).await);
                    }
                }
            }
        }
        drop(watcher);
        Ok(())
    }
}
