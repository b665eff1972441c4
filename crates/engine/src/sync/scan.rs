//! The first stage: walk the folders, and answer unchanged files from the file table on the
//! way. Runs on one blocking thread, at disk-metadata speed, ahead of everything else.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use photosync_walk::WalkError;
use tokio::sync::mpsc;

use super::know::{known_unchanged, Known};
use super::Control;
use crate::state::State;
use photosync_events::{Event, EventSink};

/// One walked entry.
pub(crate) enum Scanned {
    /// Known without reading it: unchanged since the file table learnt it, or empty.
    Known(PathBuf, Known),
    /// To be read.
    Read(PathBuf),
    /// An entry the walk could not visit.
    Problem(WalkError),
}

/// How often the walk says how far it has got.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

pub(crate) struct Scan {
    pub state: State,
    /// The server account whose sync list answers for unchanged files.
    pub server: String,
    pub events: EventSink,
    pub control: Arc<Control>,
    pub all_files: bool,
}

impl Scan {
    /// Walks `roots` (absolute) and sends every file down `tx`, then forgets file-table rows
    /// under walked folders that the walk did not find, when it saw everything. Returns when
    /// the walk is done, the run is cancelled or nobody listens any more, with how many
    /// unchanged files it found in the sync list: those it reports itself, so a rescan of an
    /// unchanged library stays on this one thread.
    pub fn run(&self, roots: &[PathBuf], tx: &mpsc::Sender<Scanned>) -> usize {
        let mut synced = 0;
        let emit = |e: Event| (self.events)(e);
        // Overlapping paths (a folder and a file in it) name a file once.
        let mut listed = HashSet::new();
        let mut lost_sight = false;
        let mut last_said = Instant::now();
        // The walk's progress is named by its first root, from its first event to its last.
        let walking = |found: usize, done: bool| {
            emit(Event::Walking {
                path: roots.first().cloned().unwrap_or_default(),
                found: found as u64,
                done,
            });
        };
        for entry in photosync_walk::walk(roots) {
            if self.control.is_cancelled() {
                walking(listed.len(), true);
                return synced;
            }
            let item = match entry {
                Ok(p) if listed.contains(&p) => continue,
                Ok(p) => {
                    listed.insert(p.clone());
                    emit(Event::Discovered { path: p.clone() });
                    if last_said.elapsed() >= PROGRESS_EVERY {
                        last_said = Instant::now();
                        walking(listed.len(), false);
                    }
                    match known_unchanged(&self.state, &p, &self.server, self.all_files) {
                        Some(Known::Synced(remote_id)) => {
                            emit(Event::AlreadySynced {
                                path: p,
                                remote_id,
                                same_as: None,
                            });
                            synced += 1;
                            continue;
                        }
                        Some(k) => Scanned::Known(p, k),
                        None => Scanned::Read(p),
                    }
                }
                Err(e) => {
                    lost_sight |= e.kind.loses_data();
                    Scanned::Problem(e)
                }
            };
            if tx.blocking_send(item).is_err() {
                walking(listed.len(), true);
                return synced;
            }
        }
        walking(listed.len(), true);
        // A walk that could not see everything (a folder unreadable for now) prunes nothing.
        if !lost_sight {
            self.prune(roots, &listed);
        }
        synced
    }

    /// Forgets file-table rows under walked folders that the walk did not find.
    fn prune(&self, roots: &[PathBuf], found: &HashSet<PathBuf>) {
        let pruned: usize = roots
            .iter()
            .filter(|r| r.is_dir())
            .map(|f| self.state.prune_files(f, found).unwrap_or(0))
            .sum();
        if pruned > 0 {
            tracing::debug!(pruned, "file table: forgot files that are gone");
        }
    }
}
