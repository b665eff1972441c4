//! The Photosync server: tus 1.0.0 resumable uploads, batched detection, per-user images.
//!
//! [`router`] builds the whole HTTP API over an [`AppState`], so tests drive it directly with
//! `tower::ServiceExt::oneshot` and the binary serves it with [`serve`]. Handlers see storage
//! only through the [`Store`] and [`Blobs`] traits.

mod api;
mod auth;
mod backend;
pub mod blobs;
mod cleanup;
mod error;
mod index;
mod limits;
pub mod migrate;
pub mod postgres;
mod reidentify;
pub mod s3;
pub mod sqlite;
pub mod store;
mod tus;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use photosync_protocol::path;

pub use auth::{new_token, token_hash};
pub use backend::{BackendError, BlobStore, Database};
pub use blobs::{Blobs, LocalBlobs};
pub use cleanup::{collect_garbage, remove_user, spawn_sweeper, CleanupError};
pub use migrate::{move_install, MoveError, MoveReport};
pub use postgres::PostgresStore;
pub use reidentify::{reidentify, spawn_reidentifier};
pub use s3::{S3Blobs, S3Config};
pub use sqlite::SqliteStore;
pub use store::{ImageQuery, LimitError, Store, StoreError, UserSummary};

/// Server limits and timings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest `Upload-Length` accepted (`Tus-Max-Size`).
    pub max_upload_size: u64,
    /// An upload with no activity for this long expires.
    pub upload_ttl: Duration,
    /// An upload body that sends nothing for this long is cut. An upload's write lease lasts
    /// twice this and is renewed while data arrives.
    pub idle_timeout: Duration,
    /// Bytes per second an upload body must average over each idle-timeout window; slower is
    /// cut like an idle body.
    pub min_upload_rate: u64,
    /// A connection must deliver a request's headers within this; it also closes connections
    /// idle between requests.
    pub header_timeout: Duration,
    /// Requests other than upload bodies (detection, listings, HEAD...) must be answered
    /// within this, their bodies included.
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Unfinished uploads a user may hold at once.
    pub max_unfinished_uploads: u64,
    /// Total declared bytes of a user's unfinished uploads.
    pub max_unfinished_bytes: u64,
    /// Disk space kept free: data that would leave less is refused with 507.
    pub min_free_space: u64,
    /// Browser origins allowed to call the API (CORS); empty: none.
    pub cors_origins: Vec<String>,
    /// How often expired uploads and orphaned parts are cleaned up.
    pub sweep_interval: Duration,
    /// How often unreferenced blobs are collected (a query over every blob, so less often);
    /// `user remove` collects at once.
    pub gc_interval: Duration,
    /// The commit the binary was built from, for `GET /api/v1/version`.
    pub commit: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_upload_size: 4 << 30,
            upload_ttl: Duration::from_secs(24 * 3600),
            idle_timeout: Duration::from_secs(30),
            min_upload_rate: 256,
            header_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_unfinished_uploads: 1000,
            max_unfinished_bytes: 64 << 30,
            min_free_space: 256 << 20,
            cors_origins: Vec::new(),
            sweep_interval: Duration::from_secs(60),
            gc_interval: Duration::from_secs(3600),
            commit: "unknown".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn Blobs>,
    pub config: Arc<Config>,
    index: Arc<index::DetectIndex>,
    identify_permits: Arc<tokio::sync::Semaphore>,
    /// The embedded data directory's claim, taken by the first `serve` of this state.
    claim: Arc<DataDirClaim>,
}

/// Only one server process serves an embedded data directory: it holds a lock on
/// `server.lock` while it serves (the system drops it when the process dies). Holding it
/// proves every upload lease in the store belongs to a process that is gone.
#[derive(Debug, Default)]
struct DataDirClaim {
    path: Option<PathBuf>,
    held: tokio::sync::Mutex<Option<std::fs::File>>,
}

impl DataDirClaim {
    async fn take(&self, store: &dyn Store) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut held = self.held.lock().await;
        if held.is_some() {
            return Ok(());
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!(
                        "another photosync-server is serving {}",
                        path.parent().unwrap_or(path).display()
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        // Leases of a previous run (a crash, a kill) would block resuming until they lapse.
        let released = store
            .release_all_leases()
            .await
            .map_err(std::io::Error::other)?;
        if released > 0 {
            tracing::info!(released, "released upload leases of a previous run");
        }
        *held = Some(file);
        Ok(())
    }
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn Blobs>, config: Config) -> Self {
        AppState {
            store,
            blobs,
            config: Arc::new(config),
            index: Arc::default(),
            identify_permits: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            claim: Arc::default(),
        }
    }

    /// The embedded default: SQLite and a blob folder under `data_dir`.
    pub fn embedded(data_dir: &Path, config: Config) -> Result<Self, StartError> {
        std::fs::create_dir_all(data_dir)?;
        let store = SqliteStore::open(&data_dir.join("photosync.db"))?;
        let blobs = LocalBlobs::open(data_dir)?;
        Ok(Self::with_sqlite(store, Arc::new(blobs), data_dir, config))
    }

    /// A SQLite store has one server: it claims the store's folder while it serves.
    fn with_sqlite(
        store: SqliteStore,
        blobs: Arc<dyn Blobs>,
        db_dir: &Path,
        config: Config,
    ) -> Self {
        let mut state = AppState::new(Arc::new(store), blobs, config);
        state.claim = Arc::new(DataDirClaim {
            path: Some(db_dir.join("server.lock")),
            held: Default::default(),
        });
        state
    }

    /// The store and blob store named, e.g. `postgres://...` and `s3://BUCKET/PREFIX`. A
    /// PostgreSQL store is shared: any number of instances may serve it, so none claims it.
    pub async fn open(
        database: &Database,
        blobs: &BlobStore,
        config: Config,
    ) -> Result<Self, StartError> {
        let blobs: Arc<dyn Blobs> = match blobs {
            BlobStore::File(dir) => Arc::new(LocalBlobs::open(dir)?),
            BlobStore::S3(bucket) => {
                if config.max_upload_size > s3::MAX_BLOB {
                    return Err(StartError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "an S3 blob store keeps files up to {} bytes: lower --max-upload-size",
                            s3::MAX_BLOB
                        ),
                    )));
                }
                Arc::new(S3Blobs::open(bucket)?)
            }
        };
        match database {
            Database::Sqlite(path) => {
                let dir = path.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir)?;
                let store = SqliteStore::open(path)?;
                Ok(Self::with_sqlite(store, blobs, dir, config))
            }
            Database::Postgres(url) => {
                let store = PostgresStore::open(url).await?;
                Ok(AppState::new(Arc::new(store), blobs, config))
            }
        }
    }

    /// `embedded` with default settings and one user holding `token` (tests, local runs).
    pub async fn embedded_with_user(
        data_dir: &Path,
        user: &str,
        token: &str,
    ) -> Result<Self, StartError> {
        let state = AppState::embedded(data_dir, Config::default())?;
        state
            .store
            .create_user(user, &token_hash(token), now(), None)
            .await?;
        Ok(state)
    }
}

/// Serves `state` on 127.0.0.1 with a port the system picks, in the background, for as long as
/// the runtime lives; returns the base URL.
pub async fn spawn_local(state: AppState) -> std::io::Result<String> {
    state.claim.take(state.store.as_ref()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(serve(
        listener,
        state,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    Ok(url)
}

/// A server on a loopback port that can go away and come back on the same port: for tests
/// of clients that lose their server mid-sync.
#[derive(Debug)]
pub struct LocalServer {
    pub state: AppState,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl LocalServer {
    /// Serves `state` on 127.0.0.1 with a port the system picks.
    pub async fn start(state: AppState) -> std::io::Result<LocalServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut s = LocalServer {
            state,
            addr: listener.local_addr()?,
            stop: None,
            task: None,
        };
        s.serve(listener);
        Ok(s)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(serve(
            listener,
            self.state.clone(),
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(1),
        )));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and ends its connections (after a second's grace).
    pub async fn go_away(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn come_back(&mut self) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
}

pub fn router(state: AppState) -> Router {
    let uploads = Router::new()
        .route(path::UPLOADS, post(tus::create).options(tus::options))
        .route(
            "/files/{id}",
            axum::routing::head(tus::head)
                .patch(tus::patch)
                .delete(tus::delete)
                .options(tus::options),
        )
        .route_layer(middleware::from_fn(tus::tus_layer));
    let api = Router::new()
        .route(
            path::DETECT,
            post(api::detect).layer(axum::extract::DefaultBodyLimit::max(api::DETECT_MAX_BODY)),
        )
        .route(path::IMAGES, get(api::list_images))
        .route(path::ACCOUNT, get(api::account))
        .route(path::HEALTH, get(api::health))
        .route(path::VERSION, get(api::version))
        .route("/api/v1/images/{id}", get(api::image_info))
        .route("/api/v1/images/{id}/content", get(api::download))
        .route("/api/v1/images/{id}/thumbnail", get(api::thumbnail));
    let app = uploads
        .merge(api)
        .fallback(|| async { error::ApiError::not_found() })
        .method_not_allowed_fallback(|| async { error::ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::request_timeout,
        ))
        .layer(middleware::from_fn(limits::request_size))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(
                    tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO),
                )
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                ),
        );
    let cors = limits::cors(&state.config.cors_origins);
    let app = app.with_state(state);
    match cors {
        None => app,
        Some(cors) => {
            // tower-http answers every OPTIONS as a CORS preflight; one from outside a browser
            // (no Origin) is a tus client asking for the server's capabilities (Tus-Version,
            // Tus-Max-Size), which only the tus handler gives.
            let with_cors = app.clone().layer(cors);
            Router::new().fallback_service(tower::service_fn(move |req: axum::extract::Request| {
                use axum::http::header::{ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
                let cors = req.method() != axum::http::Method::OPTIONS
                    || req.headers().contains_key(ORIGIN)
                    || req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
                let target = if cors { &with_cors } else { &app };
                tower::ServiceExt::oneshot(target.clone(), req)
            }))
        }
    }
}

/// Serves until `shutdown` resolves; in-flight requests then get `grace` to finish. Parts that
/// were cut off were never acknowledged, and nothing half-written is ever published.
///
/// Each connection is HTTP/1.1 with a header timeout (which also ends idle keep-alive
/// connections), and at most `max_connections` are served at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    state.claim.take(state.store.as_ref()).await?;
    tracing::info!(%addr, "listening");
    let sweeper = spawn_sweeper(state.clone());
    let reidentifier = spawn_reidentifier(state.clone());
    let config = state.config.clone();
    let app = router(state);
    let permits = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        let header_timeout = config.header_timeout;
        connections.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_headers(limits::MAX_HEADERS * 2);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                }
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still running after the grace period; stopping anyway");
        connections.abort_all();
    }
    sweeper.abort();
    reidentifier.abort();
    Ok(())
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
