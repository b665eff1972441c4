//! Renders the engine's events: progress bars on a terminal, a summary at the end.
//!
//! Without a terminal on stderr (cron, systemd) there are no bars; instead one plain line per
//! file says what became of it as soon as it is known, so a log follows a long run.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use photosync_engine::{Event, EventSink, Summary};

use crate::output::{escape_path, escape_text};

pub struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    uploads: Mutex<HashMap<PathBuf, ProgressBar>>,
    /// The file the "identifying" message names; any later event for it clears the message.
    identifying: Mutex<Option<PathBuf>>,
    /// No terminal: plain lines instead of bars.
    plain: bool,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        let terminal = std::io::stderr().is_terminal();
        let multi = if terminal {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} files {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        overall.set_prefix("sync");
        Arc::new(Progress {
            multi,
            overall,
            uploads: Mutex::default(),
            identifying: Mutex::default(),
            plain: !terminal,
        })
    }

    pub fn sink(self: &Arc<Self>) -> EventSink {
        let me = self.clone();
        Arc::new(move |e| me.on(e))
    }

    fn name(path: &Path) -> String {
        escape_path(path.file_name().map_or(path, Path::new))
    }

    fn finish_one(&self, path: &Path) {
        if let Some(bar) = self
            .uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(path)
        {
            bar.finish_and_clear();
        }
        self.overall.inc(1);
    }

    /// Keeps "identifying X" only while nothing else has been heard of X.
    fn track_identifying(&self, e: &Event) {
        let mut current = self.identifying.lock().unwrap_or_else(|p| p.into_inner());
        if let Event::Identifying { path } = e {
            self.overall
                .set_message(format!("identifying {}", Self::name(path)));
            *current = Some(path.clone());
        } else if current.as_ref() == Some(e.path()) {
            self.overall.set_message("");
            *current = None;
        }
    }

    /// Without a terminal, says at once what became of a file; `detail` is already escaped.
    fn record(&self, path: &Path, what: &'static str, detail: String) {
        if self.plain {
            // These lines are the command's output for logs (cron, systemd), not diagnostics;
            // a stderr that cannot be written must not fail the run.
            let _ = writeln!(
                std::io::stderr().lock(),
                "{what}\t{}\t{detail}",
                escape_path(path)
            );
        }
    }

    fn on(&self, e: Event) {
        self.track_identifying(&e);
        match e {
            Event::Discovered { .. } => self.overall.inc_length(1),
            // The bar's length grows with the walk; until it ends, say it is not the total.
            Event::Walking { found, done, .. } => {
                if done {
                    self.overall.set_message("");
                } else {
                    self.overall.set_message(format!("(found {found} so far)"));
                }
            }
            Event::Identifying { .. } | Event::Queued { .. } => {}
            // A diagnostic of watch mode, not a file's outcome: logged as it happens.
            Event::Folder { path, present } => {
                if present {
                    tracing::info!(folder = %escape_path(&path), "watched again");
                } else {
                    tracing::warn!(folder = %escape_path(&path), "gone; watched again when back");
                }
            }
            Event::AlreadySynced {
                path,
                remote_id,
                same_as,
            } => {
                let detail = match same_as {
                    Some(other) => format!(
                        "server image {remote_id}, same bytes as {}",
                        escape_path(&other)
                    ),
                    None => format!("server image {remote_id}"),
                };
                self.record(&path, "already synced", detail);
                self.finish_one(&path);
            }
            Event::OnServer { path, how } => {
                self.record(&path, "on the server", escape_text(&how.reason()));
                self.finish_one(&path);
            }
            // The file goes on to be uploaded; the summary lists it.
            Event::Unidentified { path, reason } => {
                tracing::info!(path = %escape_path(&path), reason, "not identified; backed up by its bytes");
            }
            Event::Skipped { path, reason, .. } => {
                self.record(&path, "skipped", escape_text(&reason));
                self.finish_one(&path);
            }
            Event::Uploading {
                path,
                sent,
                total,
                rate,
                part_size,
            } => {
                let mut uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
                let bar = uploads.entry(path.clone()).or_insert_with(|| {
                    let b = self.multi.add(ProgressBar::new(total));
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b.set_prefix("upload");
                    b
                });
                bar.set_position(sent);
                bar.set_message(format!(
                    "{} {}/s, parts of {}",
                    Self::name(&path),
                    indicatif::HumanBytes(rate as u64),
                    indicatif::HumanBytes(part_size)
                ));
            }
            Event::Uploaded { path, remote_id } => {
                self.record(&path, "uploaded", format!("server image {remote_id}"));
                self.finish_one(&path);
            }
            Event::Failed {
                path,
                reason,
                next_retry,
            } => {
                if next_retry.is_none() {
                    self.finish_one(&path);
                }
                if self.plain {
                    let detail = if next_retry.is_some() {
                        format!("{} (to be retried)", escape_text(&reason))
                    } else {
                        escape_text(&reason)
                    };
                    self.record(&path, "failed", detail);
                } else {
                    tracing::warn!(path = %escape_path(&path), reason, retrying = next_retry.is_some(), "failed");
                }
            }
        }
    }

    pub fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

/// The closing summary, for people.
pub fn summary_text(s: &Summary, events: &[Event]) -> String {
    let mut out = format!(
        "uploaded {}, already synced {}, on the server already {}, skipped {}, not photos or \
         videos {}, failed {}\n",
        s.uploaded,
        s.already_synced,
        s.on_server,
        s.skipped.len(),
        s.not_media.len(),
        s.failed.len()
    );
    if let Some(why) = &s.aborted {
        out.push_str(&format!("  stopped: {}\n", escape_text(why)));
    }
    for e in events {
        if let Event::OnServer { path, how } = e {
            out.push_str(&format!(
                "  on server: {}: {}\n",
                escape_path(path),
                escape_text(&how.reason())
            ));
        }
    }
    for (p, why) in &s.skipped {
        out.push_str(&format!(
            "  skipped: {}: {}\n",
            escape_path(p),
            escape_text(why)
        ));
    }
    for p in &s.not_media {
        out.push_str(&format!(
            "  not a photo or video (not backed up; --all-files backs it up): {}\n",
            escape_path(p)
        ));
    }
    for (p, why) in &s.beside {
        out.push_str(&format!(
            "  uploaded beside the server's copy: {}: {}\n",
            escape_path(p),
            escape_text(why)
        ));
    }
    for (p, why) in &s.unidentified {
        out.push_str(&format!(
            "  backed up, not identified: {}: {}\n",
            escape_path(p),
            escape_text(why)
        ));
    }
    for (p, why) in &s.warnings {
        out.push_str(&format!(
            "  warning: {}: {}\n",
            escape_path(p),
            escape_text(why)
        ));
    }
    if !s.interrupted.is_empty() {
        out.push_str(&format!(
            "  interrupted: {} files not finished; they resume on the next run\n",
            s.interrupted.len()
        ));
    }
    for (p, why) in &s.failed {
        out.push_str(&format!(
            "  failed: {}: {}\n",
            escape_path(p),
            escape_text(why)
        ));
    }
    out
}
