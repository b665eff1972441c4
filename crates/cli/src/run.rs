//! `sync`, `upload` and `watch` (and the shared parts of `restore`): check the server once, run the engine, stop promptly on
//! Ctrl-C or SIGTERM, print the summary, and say how it went in the exit status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use photosync_engine::{Connection, Control, Engine, Event, Options, Summary};

use crate::progress;

/// What `run_engine` does with the paths.
pub enum Mode {
    Sync,
    /// Ask the server about everything again.
    Recheck,
    /// Upload despite same-picture matches.
    Force,
    /// Keep syncing until Ctrl-C or SIGTERM.
    Watch(photosync_engine::WatchOptions),
}

/// Exit statuses beyond 0 and 1.
pub(crate) const WRONG_ARGUMENT: u8 = 2;
/// 128 + the signal's number, as shells report a process a signal stopped.
const INTERRUPTED_BY_INT: u8 = 130;
const INTERRUPTED_BY_TERM: u8 = 143;

/// Cancels the engine on Ctrl-C or SIGTERM and remembers which came; a second signal ends
/// the process at once.
pub(crate) fn stop_on_signals(control: Arc<Control>, stopped_by: Arc<AtomicU8>) {
    let stop = move |code: u8| {
        if stopped_by.swap(code, Ordering::SeqCst) != 0 {
            std::process::exit(i32::from(code));
        }
        tracing::info!("stopping: parts in flight are abandoned and resume next time");
        control.cancel();
    };
    let on_int = stop.clone();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            on_int(INTERRUPTED_BY_INT);
        }
    });
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            while term.recv().await.is_some() {
                stop(INTERRUPTED_BY_TERM);
            }
        }
    });
    #[cfg(not(unix))]
    drop(stop);
}

/// Says once, in plain words, why the server cannot be used; `None` when it can (or, for
/// `watch`, when it may simply not be up yet).
pub(crate) async fn check_server(engine: &Engine, url: &str, watching: bool) -> Option<String> {
    match engine.client().check().await {
        Connection::Ok => None,
        Connection::Unreachable(why) if watching => {
            tracing::warn!("{url}: {why}; watching anyway, and uploading once it answers");
            None
        }
        other => Some(format!("{url}: {other}")),
    }
}

/// The runtime of a command that talks to the server; failing that, the exit status.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        tracing::error!(error = %e, "no async runtime");
        ExitCode::FAILURE
    })
}

pub fn run_engine(options: Result<Options, String>, paths: Vec<PathBuf>, mode: Mode) -> ExitCode {
    let options = match options {
        Ok(o) => o,
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
    let progress = progress::Progress::new();
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = {
        let (bars, seen) = (progress.sink(), seen.clone());
        Arc::new(move |e: Event| {
            if matches!(e, Event::OnServer { .. }) {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(e.clone());
            }
            bars(e);
        })
    };
    let engine = match Engine::new(options, sink) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let stopped_by = Arc::new(AtomicU8::new(0));
    let outcome = runtime.block_on(async {
        stop_on_signals(engine.control(), stopped_by.clone());
        let watching = matches!(mode, Mode::Watch(_));
        if let Some(why) = check_server(&engine, &url, watching).await {
            return Err(why);
        }
        Ok(match mode {
            Mode::Recheck => engine.recheck(&paths).await,
            Mode::Sync => engine.sync(&paths).await,
            Mode::Force => {
                if let Err(e) = engine.force_upload(&paths) {
                    return Ok(Summary {
                        aborted: Some(e.to_string()),
                        ..Summary::default()
                    });
                }
                engine.sync(&paths).await
            }
            Mode::Watch(options) => match engine.watch(&paths, options, |_| {}).await {
                Ok(total) => total,
                Err(e) => return Err(e.to_string()),
            },
        })
    });
    progress.finish();
    let summary = match outcome {
        Ok(s) => s,
        Err(why) => {
            tracing::error!("{why}");
            return ExitCode::from(WRONG_ARGUMENT);
        }
    };
    let text = progress::summary_text(&summary, &seen.lock().unwrap_or_else(|p| p.into_inner()));
    #[allow(clippy::print_stdout)] // the summary is the command's output
    {
        print!("{text}");
    }
    match stopped_by.load(Ordering::SeqCst) {
        0 if summary.failed.is_empty() && summary.aborted.is_none() => ExitCode::SUCCESS,
        0 => ExitCode::FAILURE,
        signal => ExitCode::from(signal),
    }
}
