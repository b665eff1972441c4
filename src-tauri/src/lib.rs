//! The Photosync desktop app: a thin Tauri v2 shell. Commands and events adapt
//! `photosync-service` (which runs the engine) to the window; no sync logic lives here.
//!
//! - `run_app` takes any `tauri::Builder<R>`, so the whole app runs on Tauri's mock runtime in
//!   tests; desktop-only plugins (single instance, autostart, notifications, dialog) and the
//!   tray are added by `main.rs`.
//! - Board changes reach the window as one `board` event per 250 ms at most, carrying the ids of
//!   the changed rows (or "many" past 256) and the totals, and only when something changed: no
//!   polling.

pub mod tray;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use photosync_board::{Page, Query, Status};
use photosync_engine::Connection;
use photosync_service::remote::RemotePage;
use photosync_service::{FolderInfo, Hooks, Notice, Overview, Paths, Service, Settings};
use serde::Serialize;
use tauri::{Emitter, Manager, Runtime};

/// How often at most the window hears about changes.
pub const BOARD_INTERVAL: Duration = Duration::from_millis(250);

/// Past this many changed rows in one update, the window hears "many" instead of each id.
pub const MAX_CHANGED_IDS: usize = 256;

/// The payload of the `board` event: the totals, and which rows changed (ids only: the window
/// fetches the rows it shows, so 10,000 changes do not cross the bridge as 10,000 rows).
/// `None` means more than `MAX_CHANGED_IDS`: the window fetches what it shows again. Every
/// event's text is kept by the page's script engine for a while, so large ones cost memory.
#[derive(Debug, Clone, Serialize)]
pub struct BoardUpdate {
    pub overview: Overview,
    pub changed: Option<Vec<u64>>,
}

/// Managed state: the service, and whether Quit was chosen.
#[allow(missing_debug_implementations)] // holds the service
pub struct AppState {
    pub service: Service,
    quitting: AtomicBool,
}

/// Where the app keeps its files: `PHOTOSYNC_DESKTOP_DIR` if set (tests, portable use: the
/// token stays in that folder's settings file), else the platform's config, data and cache
/// directories, with the token in the system keyring where one runs.
pub fn app_paths() -> Result<Paths, String> {
    if let Some(dir) = std::env::var_os("PHOTOSYNC_DESKTOP_DIR") {
        return Ok(Paths::under(&PathBuf::from(dir)));
    }
    let dirs = directories::ProjectDirs::from("org", "photosync", "photosync-desktop")
        .ok_or("no home directory")?;
    Ok(Paths {
        settings: dirs.config_dir().join("settings.json"),
        state: dirs.data_dir().join("state.db"),
        thumbnails: dirs.cache_dir().join("thumbnails"),
        keyring: Some(photosync_service::Keyring::new("org.photosync.desktop")),
        activity: dirs.data_dir().join("activity.jsonl"),
    })
}

/// A connection test or a connect, as the window shows it: plain words, and the network
/// library's own account apart (one click away, not in the message).
#[derive(Debug, Serialize)]
pub struct ConnectionReport {
    pub ok: bool,
    /// "ok", "unreachable", "bad_token", "not_photosync", "incompatible" or "error".
    pub kind: &'static str,
    pub message: String,
    pub detail: Option<String>,
}

/// "the server..." as "The server...".
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl From<Connection> for ConnectionReport {
    fn from(c: Connection) -> Self {
        let (kind, message, detail) = match c {
            Connection::Ok => (
                "ok",
                "Connected: this is a Photosync server and it accepts the token.".to_owned(),
                None,
            ),
            Connection::Unreachable(why) => (
                "unreachable",
                format!("Photosync cannot reach the server: {}.", why.plain),
                why.detail,
            ),
            Connection::BadToken => (
                "bad_token",
                "The server refused the token. Check it, or make a new one with \
                 photosync-server user add."
                    .to_owned(),
                None,
            ),
            Connection::NotPhotosync(why) => (
                "not_photosync",
                "Something answers at this address, but it is not a Photosync server.".to_owned(),
                Some(why),
            ),
            incompatible @ Connection::Incompatible(_) => (
                "incompatible",
                format!("{}.", capitalised(&incompatible.to_string())),
                None,
            ),
        };
        ConnectionReport {
            ok: kind == "ok",
            kind,
            message,
            detail,
        }
    }
}

/// A service error as the window shows it.
fn said<T>(r: Result<T, photosync_service::ServiceError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn service<R: Runtime>(app: &tauri::AppHandle<R>) -> Result<Service, String> {
    app.try_state::<AppState>()
        .map(|s| s.service.clone())
        .ok_or_else(|| "the app is still starting".to_owned())
}

#[tauri::command]
fn overview<R: Runtime>(app: tauri::AppHandle<R>) -> Result<Overview, String> {
    Ok(service(&app)?.overview())
}

#[tauri::command]
fn list<R: Runtime>(app: tauri::AppHandle<R>, query: Query) -> Result<Page, String> {
    Ok(service(&app)?.query(&query))
}

#[tauri::command]
async fn test_connection(url: String, token: String) -> ConnectionReport {
    Service::test_connection(&url, &token).await.into()
}

/// Saves server and token if they pass the test; the report says how it went.
#[tauri::command]
async fn configure<R: Runtime>(
    app: tauri::AppHandle<R>,
    url: String,
    token: String,
) -> Result<ConnectionReport, String> {
    Ok(match service(&app)?.configure(&url, &token).await {
        Ok(()) => Connection::Ok.into(),
        Err(photosync_service::ServiceError::Connection(c)) => c.into(),
        Err(e) => ConnectionReport {
            ok: false,
            kind: "error",
            message: e.to_string(),
            detail: None,
        },
    })
}

#[tauri::command]
fn folders<R: Runtime>(app: tauri::AppHandle<R>) -> Result<Vec<FolderInfo>, String> {
    Ok(service(&app)?.folders())
}

#[tauri::command]
async fn add_folder<R: Runtime>(app: tauri::AppHandle<R>, path: PathBuf) -> Result<(), String> {
    said(service(&app)?.add_folder(&path).await)
}

#[tauri::command]
async fn remove_folder<R: Runtime>(app: tauri::AppHandle<R>, path: PathBuf) -> Result<(), String> {
    said(service(&app)?.remove_folder(&path).await)
}

/// Files or folders to sync right away: what a drop on the window does.
#[tauri::command]
async fn sync_paths<R: Runtime>(
    app: tauri::AppHandle<R>,
    paths: Vec<PathBuf>,
) -> Result<(), String> {
    said(service(&app)?.sync_dropped(paths).await)
}

#[tauri::command]
async fn force_upload<R: Runtime>(app: tauri::AppHandle<R>, path: PathBuf) -> Result<(), String> {
    said(service(&app)?.force_upload(path).await)
}

#[tauri::command]
async fn retry<R: Runtime>(app: tauri::AppHandle<R>, path: PathBuf) -> Result<(), String> {
    said(service(&app)?.retry(path).await)
}

/// What happened to files over the last days, newest first (at most 1,000).
#[tauri::command]
fn activity<R: Runtime>(
    app: tauri::AppHandle<R>,
) -> Result<Vec<photosync_service::activity::Entry>, String> {
    Ok(service(&app)?.activity(1000))
}

/// A listed file's path: the window names files by row, so it can open nothing else.
fn row_path<R: Runtime>(app: &tauri::AppHandle<R>, id: u64) -> Result<PathBuf, String> {
    service(app)?
        .row_path(id)
        .ok_or_else(|| "that file is no longer listed".to_owned())
}

/// Shows the file in the system's file manager.
#[tauri::command]
fn reveal<R: Runtime>(app: tauri::AppHandle<R>, id: u64) -> Result<(), String> {
    tauri_plugin_opener::reveal_item_in_dir(row_path(&app, id)?).map_err(|e| e.to_string())
}

/// Opens the file with the system's default app for it.
#[tauri::command]
fn open_file<R: Runtime>(app: tauri::AppHandle<R>, id: u64) -> Result<(), String> {
    tauri_plugin_opener::open_path(row_path(&app, id)?, None::<&str>).map_err(|e| e.to_string())
}

/// A row's thumbnail, JPEG bytes made from the picture (cached on disk). The window decodes
/// it into a canvas and frees the bitmap, so scrolling through 10,000 rows keeps only the
/// rows in view decoded; `<img>` elements left every decoded picture in WebKit's caches.
#[tauri::command]
async fn thumbnail<R: Runtime>(
    app: tauri::AppHandle<R>,
    id: u64,
) -> Result<tauri::ipc::Response, String> {
    Ok(tauri::ipc::Response::new(said(
        service(&app)?.thumbnail(id).await,
    )?))
}

/// Reads what the account holds from the server again; answers its size (no rows).
#[tauri::command]
async fn remote_load<R: Runtime>(app: tauri::AppHandle<R>) -> Result<RemotePage, String> {
    said(service(&app)?.remote_load().await)
}

/// `limit` of the server's images from `offset`, newest first, with the months' counts.
#[tauri::command]
fn remote_page<R: Runtime>(
    app: tauri::AppHandle<R>,
    offset: usize,
    limit: usize,
) -> Result<RemotePage, String> {
    Ok(service(&app)?.remote_page(offset, limit.min(2000)))
}

/// A server image's thumbnail, JPEG bytes (drawn into a canvas, as the list's are).
#[tauri::command]
async fn remote_thumbnail<R: Runtime>(
    app: tauri::AppHandle<R>,
    id: i64,
) -> Result<tauri::ipc::Response, String> {
    Ok(tauri::ipc::Response::new(said(
        service(&app)?.remote_thumbnail(id).await,
    )?))
}

/// A server image at full size, its file's bytes.
#[tauri::command]
async fn remote_full<R: Runtime>(
    app: tauri::AppHandle<R>,
    id: i64,
) -> Result<tauri::ipc::Response, String> {
    Ok(tauri::ipc::Response::new(said(
        service(&app)?.remote_full(id).await,
    )?))
}

/// This build: the release and the commit, for the About line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct About {
    pub version: &'static str,
    pub commit: &'static str,
}

#[tauri::command]
fn about() -> About {
    About {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("PHOTOSYNC_COMMIT"),
    }
}

/// What the account holds: the first run offers a restore when it holds anything.
#[tauri::command]
async fn account<R: Runtime>(
    app: tauri::AppHandle<R>,
) -> Result<photosync_protocol::Account, String> {
    said(service(&app)?.account().await)
}

/// Restores the images `ids` (all of them when absent) into `to`; with `watch`, that folder
/// is backed up from then on. Progress arrives in the overview.
#[tauri::command]
async fn restore<R: Runtime>(
    app: tauri::AppHandle<R>,
    to: PathBuf,
    ids: Option<Vec<i64>>,
    watch: bool,
) -> Result<(), String> {
    said(service(&app)?.restore_to(to, ids, watch).await)
}

#[tauri::command]
fn restore_pause<R: Runtime>(app: tauri::AppHandle<R>, paused: bool) -> Result<(), String> {
    service(&app)?.restore_pause(paused);
    Ok(())
}

#[tauri::command]
fn restore_cancel<R: Runtime>(app: tauri::AppHandle<R>) -> Result<(), String> {
    service(&app)?.restore_cancel();
    Ok(())
}

#[tauri::command]
async fn recheck<R: Runtime>(app: tauri::AppHandle<R>) -> Result<(), String> {
    said(service(&app)?.recheck().await)
}

#[tauri::command]
async fn sync_now<R: Runtime>(app: tauri::AppHandle<R>) -> Result<(), String> {
    said(service(&app)?.restart().await)
}

#[tauri::command]
async fn set_paused<R: Runtime>(app: tauri::AppHandle<R>, paused: bool) -> Result<(), String> {
    service(&app)?.set_paused(paused).await;
    Ok(())
}

/// The settings, without the token (the window never needs it back).
#[tauri::command]
fn get_settings<R: Runtime>(app: tauri::AppHandle<R>) -> Result<Settings, String> {
    let mut s = service(&app)?.settings();
    s.token = String::new();
    Ok(s)
}

/// Stores the preferences; answers what was stored (clamped where out of range).
#[tauri::command]
async fn update_settings<R: Runtime>(
    app: tauri::AppHandle<R>,
    settings: Settings,
) -> Result<Settings, String> {
    set_autostart(&app, settings.start_at_login)?;
    said(service(&app)?.update_settings(settings).await)
}

fn set_autostart<R: Runtime>(app: &tauri::AppHandle<R>, on: bool) -> Result<(), String> {
    // Absent on the mock runtime and wherever the plugin is not registered.
    let Some(manager) = app.try_state::<tauri_plugin_autostart::AutoLaunchManager>() else {
        return Ok(());
    };
    let result = if on {
        manager.enable()
    } else {
        manager.disable()
    };
    result.map_err(|e| format!("start at login: {e}"))
}

/// Sends one notification, if the notification plugin is there (not on the mock runtime). It
/// carries the status its click shows (see `listen_for_clicks`).
fn notify<R: Runtime>(app: &tauri::AppHandle<R>, notice: &Notice) {
    use tauri_plugin_notification::NotificationExt;
    if !has_notifications(app) {
        return;
    }
    let shown = app
        .notification()
        .builder()
        .title(&notice.title)
        .body(&notice.body)
        .extra(SHOWS, notice.shows)
        .show();
    if let Err(e) = shown {
        tracing::debug!(error = %e, "notification not shown");
    }
}

/// Whether the notification plugin is registered (`main.rs` does; the mock runtime not).
fn has_notifications<R: Runtime>(app: &tauri::AppHandle<R>) -> bool {
    app.try_state::<tauri_plugin_notification::Notification<R>>()
        .is_some()
}

/// The key of a notification's extra data that names the files its click shows.
const SHOWS: &str = "shows";

/// A click on one of our notifications opens the window on the files it was about.
fn listen_for_clicks<R: Runtime>(app: &tauri::AppHandle<R>) {
    use tauri_plugin_notification::NotificationExt;
    if !has_notifications(app) {
        return;
    }
    let handle = app.clone();
    let _ = app.notification().on_action(move |done| {
        if done.action_id() != "tap" {
            return;
        }
        let shows = done
            .notification()
            .and_then(|n| n.extra().get(SHOWS))
            .and_then(|v| serde_json::from_value::<Option<Status>>(v.clone()).ok())
            .flatten();
        show_files(&handle, shows);
    });
}

/// Opens the window on the files with this status (`None`: as it was).
pub fn show_files<R: Runtime>(app: &tauri::AppHandle<R>, shows: Option<Status>) {
    show_main(app);
    if let Err(e) = app.emit("show-files", shows) {
        tracing::debug!(error = %e, "show-files not sent");
    }
}

/// Shows and focuses the main window (tray "Open", a second launch).
pub fn show_main<R: Runtime>(app: &tauri::AppHandle<R>) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
    }
}

/// Stops syncing cleanly (pending uploads resume at the next start), then exits.
pub fn quit<R: Runtime>(app: &tauri::AppHandle<R>) {
    let Some(state) = app.try_state::<AppState>() else {
        app.exit(0);
        return;
    };
    state.quitting.store(true, Ordering::SeqCst);
    let (service, app) = (state.service.clone(), app.clone());
    tauri::async_runtime::spawn(async move {
        service.stop().await;
        app.exit(0);
    });
}

/// How often the window hears about the rate while it is decaying with no other change.
pub const RATE_TICK: Duration = Duration::from_secs(1);

/// Waits for board changes and sends them to the window and the tray, at most once per
/// `BOARD_INTERVAL`. While bytes moved in the chart's window (the last 5 minutes), the rate
/// and the chart change with time alone: they are sent every `RATE_TICK` until both are 0.
fn forward_board<R: Runtime>(app: tauri::AppHandle<R>, dirty: Arc<tokio::sync::Notify>) {
    tauri::async_runtime::spawn(async move {
        // The first round goes at once: the tray shows the state from the start.
        let mut live = true;
        loop {
            if live {
                tokio::select! {
                    () = dirty.notified() => {}
                    () = tokio::time::sleep(RATE_TICK) => {}
                }
            } else {
                dirty.notified().await;
            }
            tokio::time::sleep(BOARD_INTERVAL).await;
            let Ok(service) = service(&app) else { continue };
            let update = BoardUpdate {
                overview: service.overview(),
                changed: Some(service.take_changed()).filter(|ids| ids.len() <= MAX_CHANGED_IDS),
            };
            live = update.overview.totals.rate > 0.0
                || update.overview.rate_series.iter().any(|v| *v > 0.0);
            tray::set_status(&app, &update.overview);
            if let Err(e) = app.emit("board", &update) {
                tracing::debug!(error = %e, "board event not sent");
            }
        }
    });
}

/// The whole app on any runtime: state, commands, notification clicks, window behaviour.
pub fn run_app<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder
        .invoke_handler(tauri::generate_handler![
            about,
            overview,
            list,
            test_connection,
            configure,
            folders,
            add_folder,
            remove_folder,
            sync_paths,
            force_upload,
            retry,
            reveal,
            open_file,
            thumbnail,
            remote_load,
            remote_page,
            remote_thumbnail,
            remote_full,
            account,
            restore,
            restore_pause,
            restore_cancel,
            activity,
            recheck,
            sync_now,
            set_paused,
            get_settings,
            update_settings
        ])
        .on_window_event(|window, event| match event {
            // Closing the window keeps syncing in the tray.
            tauri::WindowEvent::CloseRequested { api, .. } => {
                let quitting = window
                    .app_handle()
                    .try_state::<AppState>()
                    .is_some_and(|s| s.quitting.load(Ordering::SeqCst));
                if !quitting && window.app_handle().tray_by_id(tray::ID).is_some() {
                    api.prevent_close();
                    let _ = window.hide();
                }
            }
            tauri::WindowEvent::DragDrop(tauri::DragDropEvent::Drop { paths, .. }) => {
                let (app, paths) = (window.app_handle().clone(), paths.clone());
                tauri::async_runtime::spawn(async move {
                    if let Ok(s) = service(&app) {
                        if let Err(e) = s.sync_dropped(paths).await {
                            let _ = app.emit("problem", e.to_string());
                        }
                    }
                });
            }
            _ => {}
        })
        .setup(|app| {
            let handle = app.handle().clone();
            let dirty = Arc::new(tokio::sync::Notify::new());
            let hooks = Hooks {
                changed: {
                    let dirty = dirty.clone();
                    Arc::new(move || dirty.notify_one())
                },
                notify: {
                    let handle = handle.clone();
                    Arc::new(move |notice| notify(&handle, &notice))
                },
            };
            let paths = app_paths()?;
            let rt = tauri::async_runtime::handle().inner().clone();
            let service = Service::new(paths, hooks, rt)?;
            // Server, token and folders may come from the environment (first-run scripts).
            let folders = std::env::var_os("PHOTOSYNC_FOLDERS")
                .map(|v| std::env::split_paths(&v).collect())
                .unwrap_or_default();
            service.preset(
                std::env::var("PHOTOSYNC_SERVER").ok(),
                std::env::var("PHOTOSYNC_TOKEN").ok(),
                folders,
            )?;
            app.manage(AppState {
                service: service.clone(),
                quitting: AtomicBool::new(false),
            });
            // An entry written by another copy of the app (a build since moved, the one run
            // before a package was installed) would start that copy: point it at this one.
            if service.settings().start_at_login {
                if let Err(e) = set_autostart(&handle, true) {
                    tracing::warn!(error = %e, "start at login not renewed");
                }
            }
            forward_board(handle.clone(), dirty);
            listen_for_clicks(&handle);
            tauri::async_runtime::spawn(async move {
                if let Err(e) = service.start().await {
                    tracing::warn!(error = %e, "sync not started");
                    let _ = handle.emit("problem", e.to_string());
                }
            });
            Ok(())
        })
}
