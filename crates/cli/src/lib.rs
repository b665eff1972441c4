//! What the `photosync` and `photosync-server` binaries share.

/// The commit these binaries were built from (see `build.rs`).
pub const COMMIT: &str = env!("PHOTOSYNC_COMMIT");
/// What `--version` prints after the program's name: the release and the commit.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PHOTOSYNC_COMMIT"),
    ")"
);

/// Logs to stderr, filtered by `RUST_LOG` (default: `default`).
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        // A log on a full disk must not fail the work being logged: tracing-subscriber would
        // report the failed write with eprintln!, which panics when stderr cannot be written.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
