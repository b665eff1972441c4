//! `photosync`: the command line. Argument parsing and output only; the work happens in the
//! libraries.

mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use photosync_identify::{identify_all, Limits};

#[derive(Debug, Parser)]
#[command(
    name = "photosync",
    version,
    about = "Back up photo folders to your own server"
)]
struct Cli {
    /// Worker threads for identifying images (0: one per core).
    #[arg(long, global = true, default_value_t = 0, env = "PHOTOSYNC_THREADS")]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print each image's identifier, BLAKE3 digest, size and format, one line per file.
    Identify {
        /// One JSON object per line instead of tab-separated text.
        #[arg(long)]
        json: bool,
        /// Files and folders to identify.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Find files that are the same picture or the same bytes, and print them in groups.
    Similar {
        /// One JSON object per group instead of text.
        #[arg(long)]
        json: bool,
        /// Files and folders to search.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// Exit status: 0 when something was read, 1 when nothing could be, 2 for a wrong argument.
fn main() -> ExitCode {
    photosync_cli::init_logging("warn");
    let cli = Cli::parse();
    let limits = Limits::default();
    let (json, paths, similar) = match cli.command {
        Command::Identify { json, paths } => (json, paths, false),
        Command::Similar { json, paths } => (json, paths, true),
    };

    let mut files = Vec::new();
    let mut walk_errors = Vec::new();
    for entry in photosync_walk::walk(&paths) {
        match entry {
            Ok(path) => files.push(path),
            Err(e) => walk_errors.push(e),
        }
    }
    let results = identify_all(&files, &limits, cli.threads);
    let identified = results.iter().filter(|r| r.is_ok()).count();

    let mut out = output::Output::new(json);
    let written = if similar {
        out.similar(&files, &results, &walk_errors)
    } else {
        out.identify(&files, &results, &walk_errors)
    };
    if let Err(e) = written {
        // A closed pipe (`photosync identify | head`) is not a failure of ours.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            tracing::error!(error = %e, "cannot write output");
            return ExitCode::FAILURE;
        }
    }

    let bad_argument = walk_errors
        .iter()
        .any(|e| e.kind == photosync_walk::WalkErrorKind::NotFound);
    if bad_argument {
        ExitCode::from(2)
    } else if identified == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
