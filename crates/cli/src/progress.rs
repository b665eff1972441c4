//! Renders the engine's events: progress bars on a terminal, a summary at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use photosync_engine::{Event, EventSink, Summary};

pub struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    uploads: Mutex<HashMap<PathBuf, ProgressBar>>,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        let multi = MultiProgress::new();
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
        })
    }

    pub fn sink(self: &Arc<Self>) -> EventSink {
        let me = self.clone();
        Arc::new(move |e| me.on(e))
    }

    fn name(path: &std::path::Path) -> String {
        path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    fn finish_one(&self, path: &PathBuf) {
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

    fn on(&self, e: Event) {
        match e {
            Event::Discovered { .. } => self.overall.inc_length(1),
            Event::Identifying { path } => self
                .overall
                .set_message(format!("identifying {}", Self::name(&path))),
            Event::AlreadySynced { path, .. }
            | Event::OnServer { path, .. }
            | Event::Skipped { path, .. } => self.finish_one(&path),
            Event::Queued { .. } => {}
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
            Event::Uploaded { path, .. } => self.finish_one(&path),
            Event::Failed {
                path,
                reason,
                next_retry,
            } => {
                if next_retry.is_none() {
                    self.finish_one(&path);
                }
                tracing::warn!(path = %path.display(), reason, retrying = next_retry.is_some(), "failed");
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
        "uploaded {}, already synced {}, on the server already {}, skipped {}, failed {}\n",
        s.uploaded,
        s.already_synced,
        s.on_server,
        s.skipped.len(),
        s.failed.len()
    );
    for e in events {
        if let Event::OnServer { path, how } = e {
            out.push_str(&format!(
                "  on server: {}: {}\n",
                path.display(),
                how.reason()
            ));
        }
    }
    for (p, why) in &s.skipped {
        out.push_str(&format!("  skipped: {}: {why}\n", p.display()));
    }
    for (p, why) in &s.failed {
        out.push_str(&format!("  failed: {}: {why}\n", p.display()));
    }
    out
}
