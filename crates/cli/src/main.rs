//! `photosync`: the command line. Argument parsing and output only; the work happens in the
//! libraries.

mod config;
mod output;
mod progress;
mod restore;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use photosync_identify::{identify_all, Limits};

#[derive(Debug, Parser)]
#[command(
    name = "photosync",
    version = photosync_cli::VERSION,
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
    /// Back up files and folders to the server: identify, ask, upload what it lacks.
    Sync {
        #[command(flatten)]
        target: Target,
        /// Ask the server about every file again instead of trusting the sync list.
        #[arg(long)]
        recheck: bool,
        /// Files and folders to back up.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Back up files and folders, then keep them backed up until stopped (Ctrl-C).
    Watch {
        #[command(flatten)]
        target: Target,
        /// Seconds between full rescans (events are hints; rescans are the truth).
        #[arg(long, default_value_t = 3600)]
        rescan_secs: u64,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Back up just these files.
    Upload {
        #[command(flatten)]
        target: Target,
        /// Upload even when the server holds the same picture at least as large (see `status`).
        #[arg(long)]
        force: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Bring the account's photos back into a folder, under their folders, names and times.
    /// A different local file is never overwritten; an identical one is kept. Resumes after
    /// an interruption; every file is verified before it is put in place.
    Restore {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        args: restore::RestoreArgs,
    },
    /// Show what the sync list holds for the server.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Save the server and token in the config file (owner-only).
    Login {
        #[arg(long)]
        server: String,
        #[arg(long)]
        token: String,
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

/// Which server and account, and where the local state lives.
#[derive(Debug, clap::Args)]
struct Target {
    /// Server URL [env PHOTOSYNC_SERVER, or the config file]
    #[arg(long, env = "PHOTOSYNC_SERVER")]
    server: Option<String>,
    /// Bearer token [env PHOTOSYNC_TOKEN, or the config file]
    #[arg(long, env = "PHOTOSYNC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Local state database [default: the platform's data directory]
    #[arg(long, env = "PHOTOSYNC_STATE")]
    state: Option<PathBuf>,
    /// Transfers at once (uploads; downloads of `restore`).
    #[arg(long, default_value_t = 3)]
    concurrency: usize,
    /// Bandwidth limit in bytes per second (uploads; downloads of `restore`).
    #[arg(long)]
    bandwidth_limit: Option<u64>,
    /// Upload same-picture copies even when the server's copy is as large.
    #[arg(long)]
    upload_all_copies: bool,
    /// Back up every file, not only photos, videos, RAW files and their sidecars.
    #[arg(long)]
    all_files: bool,
}

impl Target {
    fn options(self, threads: usize) -> Result<photosync_engine::Options, String> {
        let file = match config::config_path() {
            Some(p) => config::load(&p)?,
            None => config::FileConfig::default(),
        };
        let server = self
            .server
            .or(file.server)
            .ok_or("no server: pass --server, set PHOTOSYNC_SERVER, or run `photosync login`")?;
        config::check_server_url(&server)?;
        let token = self
            .token
            .or(file.token)
            .ok_or("no token: pass --token, set PHOTOSYNC_TOKEN, or run `photosync login`")?;
        let state = self
            .state
            .or_else(config::default_state_path)
            .ok_or("no state directory: pass --state")?;
        let mut o = photosync_engine::Options::new(
            photosync_engine::ServerConfig { url: server, token },
            state,
        );
        o.concurrency = self.concurrency;
        o.bandwidth.set_rate(self.bandwidth_limit);
        o.upload_all_copies = self.upload_all_copies;
        o.all_files = self.all_files;
        o.identify_threads = threads;
        Ok(o)
    }
}

fn run_status(target: Target) -> ExitCode {
    use photosync_engine::Connection;
    let options = match target.options(0) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    // The sync list is kept per server and token: with a wrong one it would just look empty,
    // so the server is asked once whether it takes them.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "no async runtime");
            return ExitCode::FAILURE;
        }
    };
    let connection = match photosync_engine::Client::new(options.server.clone()) {
        Ok(client) => runtime.block_on(client.check()),
        Err(e) => Connection::Unreachable(photosync_engine::Unreachable::plain(e.to_string())),
    };
    let mut text = String::new();
    match &connection {
        Connection::Ok => {}
        Connection::Unreachable(why) => text.push_str(&format!(
            "the server could not be reached ({}); this is the local state only\n",
            output::escape_text(&why.to_string())
        )),
        Connection::BadToken | Connection::NotPhotosync(_) | Connection::Incompatible(_) => {
            tracing::error!("{}: {connection}", options.server.url);
            return ExitCode::from(2);
        }
    }
    let key = options.server.key();
    let state_path = output::escape_path(&options.state_path);
    // Read-only: looking must not create folders or a database.
    let listed = photosync_engine::State::open_existing(&options.state_path).and_then(|s| {
        s.map(|s| {
            Ok((
                s.synced_file_count(&key)?,
                s.synced_count(&key)?,
                s.matches(&key)?,
            ))
        })
        .transpose()
    });
    match listed {
        Ok(None) => text.push_str(&format!("nothing synced yet: no state at {state_path}\n")),
        Ok(Some((files, pictures, matches))) => {
            text.push_str(&format!(
                "{}: {files} files in the sync list, {pictures} distinct pictures ({state_path})\n",
                options.server.url,
            ));
            if !matches.is_empty() {
                text.push_str(&format!(
                    "{} files not uploaded because the server holds the same picture \
                     (`photosync upload --force FILE` uploads one anyway):\n",
                    matches.len()
                ));
            }
            for m in &matches {
                let how = photosync_engine::OnServer::from(m);
                text.push_str(&format!(
                    "  {}: {}\n",
                    output::escape_path(&m.path),
                    output::escape_text(&how.reason())
                ));
            }
        }
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    #[allow(clippy::print_stdout)] // the listing is the command's output
    {
        print!("{text}");
    }
    ExitCode::SUCCESS
}

/// Exit status: 0 when something was read, 1 when nothing could be, 2 for a wrong argument.
/// For `sync` and `upload`: 0 unless a file failed.
fn main() -> ExitCode {
    photosync_cli::init_logging("warn");
    let cli = Cli::parse();
    let limits = Limits::default();
    let (json, paths, similar) = match cli.command {
        Command::Identify { json, paths } => (json, paths, false),
        Command::Similar { json, paths } => (json, paths, true),
        Command::Sync {
            target,
            recheck,
            paths,
        } => {
            let mode = if recheck {
                run::Mode::Recheck
            } else {
                run::Mode::Sync
            };
            return run::run_engine(target.options(cli.threads), paths, mode);
        }
        Command::Upload {
            target,
            force,
            files,
        } => {
            let mode = if force {
                run::Mode::Force
            } else {
                run::Mode::Sync
            };
            return run::run_engine(target.options(cli.threads), files, mode);
        }
        Command::Watch {
            target,
            rescan_secs,
            paths,
        } => {
            let options = photosync_engine::WatchOptions {
                rescan_interval: std::time::Duration::from_secs(rescan_secs.max(1)),
                ..Default::default()
            };
            return run::run_engine(
                target.options(cli.threads),
                paths,
                run::Mode::Watch(options),
            );
        }
        Command::Status { target } => return run_status(target),
        Command::Restore { target, args } => {
            return restore::run_restore(target.options(cli.threads), args)
        }
        Command::Login { server, token } => {
            if let Err(e) = config::check_server_url(&server) {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
            let Some(path) = config::config_path() else {
                tracing::error!("no config directory");
                return ExitCode::FAILURE;
            };
            return match config::save(
                &path,
                &config::FileConfig {
                    server: Some(server),
                    token: Some(token),
                },
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            };
        }
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
