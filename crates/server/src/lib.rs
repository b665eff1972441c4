//! The Photosync server: tus 1.0.0 resumable uploads, batched detection, per-user images.
//!
//! [`router`] builds the whole HTTP API over an [`AppState`], so tests drive it directly with
//! `tower::ServiceExt::oneshot` and the binary serves it with [`serve`]. Handlers see storage
//! only through the [`Store`] and [`Blobs`] traits.

mod api;
mod auth;
pub mod blobs;
mod error;
mod index;
pub mod sqlite;
pub mod store;
mod tus;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use photosync_protocol::path;

pub use auth::{new_token, token_hash};
pub use blobs::{Blobs, LocalBlobs};
pub use sqlite::SqliteStore;
pub use store::{Store, StoreError, UserSummary};

/// Server limits and timings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest `Upload-Length` accepted (`Tus-Max-Size`).
    pub max_upload_size: u64,
    /// An upload with no activity for this long expires.
    pub upload_ttl: Duration,
    /// A request body that sends nothing for this long is cut.
    pub idle_timeout: Duration,
    /// How often expired uploads are cleaned up.
    pub sweep_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_upload_size: 4 << 30,
            upload_ttl: Duration::from_secs(24 * 3600),
            idle_timeout: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(60),
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
        }
    }

    /// The embedded default: SQLite and a blob folder under `data_dir`.
    pub fn embedded(data_dir: &Path, config: Config) -> Result<Self, StartError> {
        std::fs::create_dir_all(data_dir)?;
        let store = SqliteStore::open(&data_dir.join("photosync.db"))?;
        let blobs = LocalBlobs::open(data_dir)?;
        Ok(AppState::new(Arc::new(store), Arc::new(blobs), config))
    }

    /// `embedded` with default settings and one user holding `token` (tests, local runs).
    pub async fn embedded_with_user(
        data_dir: &Path,
        user: &str,
        token: &str,
    ) -> Result<Self, StartError> {
        let state = AppState::embedded(data_dir, Config::default())?;
        state.store.create_user(user, &token_hash(token), 0).await?;
        Ok(state)
    }
}

/// Serves `state` on 127.0.0.1 with a port the system picks, in the background, for as long as
/// the runtime lives; returns the base URL.
pub async fn spawn_local(state: AppState) -> std::io::Result<String> {
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

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(path::UPLOADS, post(tus::create).options(tus::options))
        .route(
            "/files/{id}",
            axum::routing::head(tus::head)
                .patch(tus::patch)
                .delete(tus::delete)
                .options(tus::options),
        )
        .route(
            path::DETECT,
            post(api::detect).layer(axum::extract::DefaultBodyLimit::max(api::DETECT_MAX_BODY)),
        )
        .route(path::IMAGES, get(api::list_images))
        .route("/api/v1/images/{id}", get(api::image_info))
        .route("/api/v1/images/{id}/content", get(api::download))
        .fallback(|| async { error::ApiError::not_found() })
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(
                    tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO),
                )
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                ),
        )
        .with_state(state)
}

/// Deletes expired uploads now and then, until the process ends.
pub fn spawn_sweeper(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.sweep_interval);
        loop {
            tick.tick().await;
            if let Err(e) = tus::sweep_expired(&state).await {
                tracing::warn!(error = %e.message, "sweeping expired uploads failed");
            }
        }
    })
}

/// Serves until `shutdown` resolves; in-flight requests then get `grace` to finish. Parts that
/// were cut off were never acknowledged, and nothing half-written is ever published.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    let sweeper = spawn_sweeper(state.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop_rx.clone();
    let result = tokio::select! {
        r = server => r,
        _ = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("requests still running after the grace period; stopping anyway");
            Ok(())
        }
    };
    sweeper.abort();
    result
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
