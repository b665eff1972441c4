//! `restore`: bring the account's photos back into a folder, with a progress bar (or one line
//! per file without a terminal), a summary, and the exit status saying how it went.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use photosync_engine::restore::RestoreOptions;
use photosync_engine::{Engine, Options, RestoreEvent, RestoreSummary, Restored};

use crate::output::{escape_path, escape_text};
use crate::run::{check_server, runtime, stop_on_signals, WRONG_ARGUMENT};

/// What to restore, as typed.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The folder to restore into; the account's folders are made below it.
    #[arg(long, default_value = ".")]
    to: PathBuf,
    /// Only photos taken (or, without a capture time, modified) on or after this day, YYYY-MM-DD.
    #[arg(long)]
    since: Option<String>,
    /// Only photos taken on or before this day, YYYY-MM-DD.
    #[arg(long)]
    until: Option<String>,
    /// Only files whose `folder/name` matches this glob (`*` also crosses folders; case is
    /// ignored), e.g. '2021/*' or '*.dng'.
    #[arg(long = "match")]
    matching: Option<String>,
}

/// A `YYYY-MM-DD` day that exists.
fn day(flag: &str, value: Option<String>) -> Result<Option<String>, String> {
    let Some(v) = value else { return Ok(None) };
    let parts: Vec<&str> = v.split('-').collect();
    let ok = match parts.as_slice() {
        [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            match (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) {
                (Ok(_), Ok(m), Ok(d)) => (1..=12).contains(&m) && (1..=31).contains(&d),
                _ => false,
            }
        }
        _ => false,
    };
    if ok {
        Ok(Some(v))
    } else {
        Err(format!("{flag} takes a day as YYYY-MM-DD, not {v:?}"))
    }
}

impl RestoreArgs {
    fn options(self, concurrency: usize) -> Result<RestoreOptions, String> {
        let mut o = RestoreOptions::new(self.to);
        o.filter.since = day("--since", self.since)?;
        o.filter.until = day("--until", self.until)?;
        if let (Some(since), Some(until)) = (&o.filter.since, &o.filter.until) {
            if since > until {
                return Err(format!("--since {since} is after --until {until}"));
            }
        }
        o.matching = self
            .matching
            .map(|g| glob::Pattern::new(&g).map_err(|e| format!("--match {g:?}: {e}")))
            .transpose()?;
        o.concurrency = concurrency.max(1);
        Ok(o)
    }
}

/// The restore's one bar: bytes in place of the total, and files done.
struct Progress {
    bar: ProgressBar,
    /// Bytes of each image so far, so that a resumed or restarted file counts once.
    files: Mutex<std::collections::HashMap<i64, u64>>,
    plain: bool,
}

impl Progress {
    fn new() -> Arc<Progress> {
        let terminal = std::io::stderr().is_terminal();
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if terminal {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("restore");
        Arc::new(Progress {
            bar,
            files: Mutex::default(),
            plain: !terminal,
        })
    }

    /// Without a terminal, one line per file as soon as its fate is known.
    fn line(&self, what: &str, path: &Path, detail: &str) {
        if self.plain {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{what}\t{}\t{}",
                escape_path(path),
                escape_text(detail)
            );
        }
    }

    fn set_file(&self, image: i64, bytes: u64) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let before = files.insert(image, bytes).unwrap_or(0);
        if bytes >= before {
            self.bar.inc(bytes - before);
        } else {
            self.bar
                .set_position(self.bar.position().saturating_sub(before - bytes));
        }
    }

    fn on(&self, e: RestoreEvent) {
        match e {
            RestoreEvent::Planned { files, bytes } => {
                self.bar.set_length(bytes);
                self.bar.set_message(format!("{files} files"));
            }
            RestoreEvent::Receiving {
                image, path, done, ..
            } => {
                self.set_file(image, done);
                let name = path.file_name().map_or(path.as_path(), Path::new);
                self.bar.set_message(escape_path(name));
            }
            RestoreEvent::Restored {
                image,
                path,
                bytes,
                how,
            } => {
                self.set_file(image, bytes);
                let what = match how {
                    Restored::Written => "restored",
                    Restored::AlreadyThere => "already there",
                };
                self.line(what, &path, "");
            }
            RestoreEvent::Renamed { path, why } => self.line("renamed", &path, &why),
            RestoreEvent::Failed { path, reason } => {
                if !self.plain {
                    tracing::warn!(path = %escape_path(&path), reason, "not restored");
                }
                self.line("failed", &path, &reason);
            }
        }
    }
}

fn summary_text(s: &RestoreSummary) -> String {
    let mut out = format!(
        "restored {} ({}), already in place {}, renamed {}, failed {}, of {} on the server\n",
        s.written,
        HumanBytes(s.bytes_written),
        s.already_there,
        s.renamed.len(),
        s.failed.len(),
        s.planned
    );
    if let Some(why) = &s.stopped {
        out.push_str(&format!("  stopped: {}\n", escape_text(why)));
    }
    for (p, why) in &s.renamed {
        out.push_str(&format!(
            "  renamed: {}: {}\n",
            escape_path(p),
            escape_text(why)
        ));
    }
    if s.interrupted > 0 {
        out.push_str(&format!(
            "  interrupted: {} files not finished; restore again to resume them\n",
            s.interrupted
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

pub fn run_restore(options: Result<Options, String>, args: RestoreArgs) -> ExitCode {
    let (options, restore) = match options.and_then(|o| {
        let concurrency = o.concurrency;
        Ok((o, args.options(concurrency)?))
    }) {
        Ok(both) => both,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(WRONG_ARGUMENT);
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let url = options.server.url.clone();
    let engine = match Engine::new(options, Arc::new(|_| {})) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let progress = Progress::new();
    let stopped_by = Arc::new(AtomicU8::new(0));
    let control = engine.control();
    let outcome = runtime.block_on(async {
        stop_on_signals(control.clone(), stopped_by.clone());
        if let Some(why) = check_server(&engine, &url, false).await {
            return Err((WRONG_ARGUMENT, why));
        }
        let bars = progress.clone();
        engine
            .restore(&restore, &control, &move |e| bars.on(e))
            .await
            .map_err(|e| (1, e.to_string()))
    });
    progress.bar.finish_and_clear();
    let summary = match outcome {
        Ok(s) => s,
        Err((code, why)) => {
            tracing::error!("{why}");
            return ExitCode::from(code);
        }
    };
    #[allow(clippy::print_stdout)] // the summary is the command's output
    {
        print!("{}", summary_text(&summary));
    }
    match stopped_by.load(Ordering::SeqCst) {
        0 if summary.failed.is_empty() && summary.stopped.is_none() => ExitCode::SUCCESS,
        0 => ExitCode::FAILURE,
        signal => ExitCode::from(signal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_checked() {
        assert_eq!(
            day("--since", Some("2021-06-05".into())),
            Ok(Some("2021-06-05".into()))
        );
        for bad in [
            "2021-6-5",
            "21-06-05",
            "2021-13-01",
            "2021-06-32",
            "2021/06/05",
            "today",
        ] {
            assert!(day("--since", Some(bad.into())).is_err(), "{bad}");
        }
    }
}
