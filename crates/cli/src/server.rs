//! `photosync-server`: argument parsing over the server library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use photosync_server::{new_token, token_hash, AppState, BlobStore, Config, Database, StoreError};

mod server_config;

#[derive(Debug, Parser)]
#[command(
    name = "photosync-server",
    version = photosync_cli::VERSION,
    about = "The server your photos are backed up to"
)]
struct Cli {
    /// A TOML file of settings, keyed by the options' long names with `_` (`data_dir`,
    /// `listen`, `max_upload_size`, `cors_origins = [...]`, ...). The command line and the
    /// environment win over it [default: /etc/photosync/server.toml when it exists]
    #[arg(long, global = true, env = "PHOTOSYNC_CONFIG")]
    config: Option<PathBuf>,
    /// Where the database and the photos live [default: the platform's data directory]
    #[arg(long, global = true, env = "PHOTOSYNC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The metadata store: `sqlite:PATH`, or `postgres://USER:PASSWORD@HOST/DATABASE` for
    /// several instances [default: sqlite:DATA_DIR/photosync.db]
    // A String, parsed after clap: clap's own message would echo the value, password and all.
    #[arg(
        long,
        global = true,
        env = "PHOTOSYNC_DATABASE",
        hide_env_values = true
    )]
    database: Option<String>,
    /// Where uploads and photos are kept: `file:DIR`, or `s3://BUCKET/PREFIX` for several
    /// instances (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)
    /// [default: file:DATA_DIR]
    #[arg(long, global = true, env = "PHOTOSYNC_BLOBS")]
    blobs: Option<BlobStore>,
    /// The S3 endpoint, for stores other than AWS (MinIO, Garage, Ceph RGW, R2)
    /// [default: AWS_ENDPOINT_URL, else AWS]
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    s3_endpoint: Option<String>,
    /// The S3 region [default: AWS_REGION, else us-east-1]
    #[arg(long, global = true, env = "AWS_REGION")]
    s3_region: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the tus upload endpoint and the API.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080", env = "PHOTOSYNC_LISTEN")]
        listen: String,
        /// Largest upload accepted, in bytes.
        #[arg(long, default_value_t = 4 << 30, env = "PHOTOSYNC_MAX_UPLOAD_SIZE")]
        max_upload_size: u64,
        /// Seconds a request body may send nothing before it is cut.
        #[arg(long, default_value_t = 30, env = "PHOTOSYNC_IDLE_TIMEOUT")]
        idle_timeout: u64,
        /// Bytes per second an upload body must average over each idle-timeout window.
        #[arg(long, default_value_t = 256, env = "PHOTOSYNC_MIN_UPLOAD_RATE")]
        min_upload_rate: u64,
        /// Hours an unfinished upload is kept after its last part.
        #[arg(long, default_value_t = 24, env = "PHOTOSYNC_UPLOAD_TTL_HOURS")]
        upload_ttl_hours: u64,
        /// Seconds a connection may take to send a request's headers (also closes connections
        /// idle between requests).
        #[arg(long, default_value_t = 30, env = "PHOTOSYNC_HEADER_TIMEOUT")]
        header_timeout: u64,
        /// Seconds any request but an upload body may take, its body included.
        #[arg(long, default_value_t = 60, env = "PHOTOSYNC_REQUEST_TIMEOUT")]
        request_timeout: u64,
        /// Connections served at once; more wait to be accepted.
        #[arg(long, default_value_t = 1024, env = "PHOTOSYNC_MAX_CONNECTIONS")]
        max_connections: usize,
        /// Unfinished uploads one user may hold at once.
        #[arg(long, default_value_t = 1000, env = "PHOTOSYNC_MAX_UNFINISHED_UPLOADS")]
        max_unfinished_uploads: u64,
        /// Total declared bytes of one user's unfinished uploads.
        #[arg(long, default_value_t = 64 << 30, env = "PHOTOSYNC_MAX_UNFINISHED_BYTES")]
        max_unfinished_bytes: u64,
        /// Bytes of disk kept free: uploads that would leave less are refused (507).
        #[arg(long, default_value_t = 256 << 20, env = "PHOTOSYNC_MIN_FREE_SPACE")]
        min_free_space: u64,
        /// A browser origin allowed to call the server (CORS), e.g. https://photos.example;
        /// repeat for more. Off when not given.
        #[arg(
            long = "cors-origin",
            env = "PHOTOSYNC_CORS_ORIGINS",
            value_delimiter = ','
        )]
        cors_origins: Vec<String>,
    },
    /// Open the stores, upgrading their schema when it is older (as a package upgrade does),
    /// and say what they hold.
    Check,
    /// Manage the users who may back up here.
    #[command(subcommand)]
    User(UserCommand),
    /// Move an embedded install (its data directory) into the stores given with --database
    /// and --blobs: users, images and photos, each photo's BLAKE3 checked on the way. Run it
    /// again to go on after an interruption; what was moved is skipped.
    Migrate {
        /// The embedded install's data directory (not being served meanwhile).
        #[arg(long)]
        from: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user and print their token (shown once).
    Add {
        name: String,
        /// Storage quota in bytes (none: unlimited).
        #[arg(long)]
        quota: Option<u64>,
    },
    /// List users with their image counts, bytes stored and quotas.
    List,
    /// Remove a user, their images and unfinished uploads; photos no other user holds are
    /// deleted from storage.
    Remove { name: String },
    /// Set a user's storage quota in bytes, or `none` to lift it.
    SetQuota { name: String, quota: Quota },
}

/// A quota given on the command line: bytes, or `none`.
#[derive(Debug, Clone, Copy)]
struct Quota(Option<u64>);

impl std::str::FromStr for Quota {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("none") {
            return Ok(Quota(None));
        }
        s.parse()
            .map(|q| Quota(Some(q)))
            .map_err(|_| format!("{s:?} is neither a number of bytes nor 'none'"))
    }
}

/// `migrate`: opens the embedded install at `from` and moves it into `to`.
async fn migrate(from: &std::path::Path, to: &AppState) -> Result<(), String> {
    if !from.join("photosync.db").is_file() {
        return Err(format!("{} holds no photosync.db", from.display()));
    }
    let source = AppState::embedded(from, Config::default()).map_err(|e| e.to_string())?;
    let report = photosync_server::move_install(&source, to, |r| {
        let done = r.moved + r.already + r.failed.len() as u64;
        if done.is_multiple_of(100) {
            tracing::info!(done, moved = r.moved, bytes = r.bytes, "moving");
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    #[allow(clippy::print_stdout)] // the command's summary
    {
        println!(
            "moved {} users; images: {} moved ({} bytes), {} there already, {} failed",
            report.users,
            report.moved,
            report.bytes,
            report.already,
            report.failed.len()
        );
        for (image, why) in &report.failed {
            println!("image {image}: {why}");
        }
    }
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} images were not moved", report.failed.len()))
    }
}

/// The server's limits, from `serve`'s options; the defaults for the other commands.
fn serve_config(command: &Command) -> Config {
    match command {
        Command::Serve {
            max_upload_size,
            idle_timeout,
            min_upload_rate,
            upload_ttl_hours,
            header_timeout,
            request_timeout,
            max_connections,
            max_unfinished_uploads,
            max_unfinished_bytes,
            min_free_space,
            cors_origins,
            ..
        } => Config {
            max_upload_size: *max_upload_size,
            idle_timeout: Duration::from_secs(*idle_timeout),
            min_upload_rate: *min_upload_rate,
            upload_ttl: Duration::from_secs(upload_ttl_hours * 3600),
            header_timeout: Duration::from_secs(*header_timeout),
            request_timeout: Duration::from_secs(*request_timeout),
            max_connections: *max_connections,
            max_unfinished_uploads: *max_unfinished_uploads,
            max_unfinished_bytes: *max_unfinished_bytes,
            min_free_space: *min_free_space,
            cors_origins: cors_origins.clone(),
            commit: photosync_cli::COMMIT.into(),
            ..Config::default()
        },
        Command::User(_) | Command::Migrate { .. } | Command::Check => Config::default(),
    }
}

/// `check`: the stores are open (and their schema current); says what they hold.
async fn check(
    state: &AppState,
    database: &Database,
    blobs: &BlobStore,
    serve: Option<&Command>,
) -> Result<(), String> {
    if let Some(Command::Serve { listen, .. }) = serve {
        std::net::ToSocketAddrs::to_socket_addrs(listen.as_str())
            .map_err(|e| format!("listen = {listen:?}: {e}"))?;
    }
    let users = state.store.list_users().await.map_err(|e| e.to_string())?;
    let images: u64 = users.iter().map(|u| u.images).sum();
    let bytes: u64 = users.iter().map(|u| u.bytes).sum();
    #[allow(clippy::print_stdout)] // the command's report
    {
        println!(
            "ok: {database} and {blobs}: {} users, {images} images, {bytes} bytes",
            users.len()
        );
    }
    Ok(())
}

fn data_dir(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        directories::ProjectDirs::from("", "", "photosync-server")
            .map(|d| d.data_dir().to_path_buf())
    })
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives as soon as the server listens is not
/// fatal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        match signals {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => tokio::signal::ctrl_c().await.unwrap_or(()),
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c().await.unwrap_or(());
        tracing::info!("shutting down");
    }
}

/// Reads the settings file into the environment variables of the options it sets, where
/// the environment does not set them already. Runs before any thread is started.
fn load_settings_file() -> Result<(), String> {
    if std::env::var_os(server_config::READ_MARK).is_some() {
        // For this one program only: whatever it starts reads the settings as usual.
        std::env::remove_var(server_config::READ_MARK);
        return Ok(());
    }
    let command = Cli::command();
    // Only --config is wanted here; the real parse below reports any error in the arguments.
    let given = match command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(std::env::args_os())
    {
        Ok(m) => m.get_one::<PathBuf>("config").cloned(),
        // --help and --version need no settings, and must work when the file is broken.
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            return Ok(())
        }
        Err(_) => None,
    };
    let Some(source) = server_config::Source::find(given) else {
        return Ok(());
    };
    for (env, value) in server_config::read(&command, &source)? {
        if std::env::var_os(&env).is_none() {
            std::env::set_var(env, value);
        }
    }
    std::env::set_var(server_config::READ_MARK, "1");
    tracing::debug!(path = %source.path().display(), "settings read");
    Ok(())
}

/// Run by root on a data directory that a system account owns (the package's `photosync`),
/// the command runs again as that account, with its own group: a database or photo created by
/// root could not be written by the service afterwards. Root on another user's data is
/// refused. Returns only when it does not run again.
#[cfg(target_os = "linux")]
fn run_as_owner_of(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let Ok(owner) = std::fs::metadata(dir) else {
        return Ok(());
    };
    if !root || owner.uid() == 0 {
        return Ok(());
    }
    let account = system_account(owner.uid()).ok_or_else(|| {
        format!(
            "{} belongs to uid {}, which is not a system account: run this as its owner",
            dir.display(),
            owner.uid()
        )
    })?;
    tracing::debug!(user = %account.0, dir = %dir.display(), "running as the data's owner");
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .uid(owner.uid())
        .gid(account.1)
        .exec();
    Err(format!("cannot run as {}: {error}", account.0))
}

/// The name and primary group of a local system account (uid 1–999 in /etc/passwd, not in
/// group 0): only such an account is switched to.
#[cfg(target_os = "linux")]
fn system_account(uid: u32) -> Option<(String, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid: u32 = fields.nth(1)?.parse().ok()?;
        let gid: u32 = fields.next()?.parse().ok()?;
        (entry_uid == uid && (1..1000).contains(&uid) && gid != 0).then(|| (name.to_owned(), gid))
    })
}

fn main() -> ExitCode {
    photosync_cli::init_logging("info");
    if let Err(e) = load_settings_file() {
        tracing::error!("{e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let dir = data_dir(cli.data_dir.clone());
    #[cfg(target_os = "linux")]
    if let Some(dir) = &dir {
        if let Err(e) = run_as_owner_of(dir) {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(cli, dir)),
        Err(e) => {
            tracing::error!("cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The command, with the data directory (given, or the platform's) resolved.
async fn run(cli: Cli, dir: Option<PathBuf>) -> ExitCode {
    let given_database = match cli.database.as_deref().map(str::parse::<Database>) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            tracing::error!("--database: {e}");
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::Migrate { .. })
        && (given_database.is_none() || cli.blobs.is_none())
    {
        tracing::error!("migrate moves into the stores named by --database and --blobs: give both");
        return ExitCode::from(2);
    }
    let database = given_database.or_else(|| {
        dir.as_ref()
            .map(|d| Database::Sqlite(d.join("photosync.db")))
    });
    let blobs = cli
        .blobs
        .or_else(|| dir.as_ref().map(|d| BlobStore::File(d.clone())))
        .map(|b| match b {
            BlobStore::S3(mut bucket) => {
                bucket.endpoint = cli.s3_endpoint.clone();
                bucket.region = cli.s3_region.clone();
                BlobStore::S3(bucket)
            }
            other => other,
        });
    let (Some(database), Some(blobs)) = (database, blobs) else {
        tracing::error!("no data directory: pass --data-dir, or --database and --blobs");
        return ExitCode::from(2);
    };
    // `check` also checks what `serve` would start with: a package upgrade runs it before
    // starting the service again.
    let serve_settings = match &cli.command {
        Command::Check => match Cli::try_parse_from(["photosync-server", "serve"]) {
            Ok(parsed) => Some(parsed.command),
            Err(e) => {
                tracing::error!("the settings for serve: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let config = serve_config(serve_settings.as_ref().unwrap_or(&cli.command));

    let state = match AppState::open(&database, &blobs, config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%database, %blobs, error = %e, "cannot open the server's storage");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve { listen, .. } => match tokio::net::TcpListener::bind(&listen).await {
            Ok(listener) => {
                let stop = shutdown_signal();
                photosync_server::serve(listener, state, stop, Duration::from_secs(30))
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("cannot listen on {listen}: {e}")),
        },
        Command::User(UserCommand::Add { name, quota }) => {
            let token = new_token();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            match state
                .store
                .create_user(&name, &token_hash(&token), now, quota)
                .await
            {
                Ok(_) => {
                    #[allow(clippy::print_stdout)] // the token is the command's output
                    {
                        println!("{token}");
                    }
                    Ok(())
                }
                Err(StoreError::UserExists(n)) => Err(format!("a user named {n:?} already exists")),
                Err(e) => Err(e.to_string()),
            }
        }
        Command::User(UserCommand::List) => state
            .store
            .list_users()
            .await
            .map_err(|e| e.to_string())
            .map(|users| {
                #[allow(clippy::print_stdout)]
                for u in users {
                    let quota = u
                        .quota
                        .map_or("no quota".to_owned(), |q| format!("quota {q}"));
                    println!(
                        "{}\t{} images\t{} bytes\t{quota}",
                        u.name, u.images, u.bytes
                    );
                }
            }),
        Command::User(UserCommand::Remove { name }) => {
            match photosync_server::remove_user(&state, &name).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("no user named {name:?}")),
                Err(e) => Err(e.to_string()),
            }
        }
        Command::Migrate { from } => migrate(&from, &state).await,
        Command::Check => check(&state, &database, &blobs, serve_settings.as_ref()).await,
        Command::User(UserCommand::SetQuota { name, quota }) => state
            .store
            .set_quota(&name, quota.0)
            .await
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
