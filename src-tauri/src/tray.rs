//! The tray icon: a status line, pause/resume, sync now, open the window, quit.

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{Manager, Runtime};

use photosync_service::Overview;

pub const ID: &str = "photosync";

/// The menu items whose text changes.
struct Items<R: Runtime> {
    status: MenuItem<R>,
    pause: MenuItem<R>,
}

/// Builds the tray. Without a tray host (a bare X server) the icon is invisible, not an error.
pub fn install<R: Runtime>(app: &tauri::AppHandle<R>) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", "Starting…", false, None::<&str>)?;
    let pause = MenuItem::with_id(app, "pause", "Pause", true, None::<&str>)?;
    let sync = MenuItem::with_id(app, "sync", "Sync now", true, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open Photosync", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&status, &sep, &pause, &sync, &open, &quit])?;
    let mut tray = TrayIconBuilder::with_id(ID)
        .tooltip("Photosync")
        .menu(&menu)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()));
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app)?;
    app.manage(Items { status, pause });
    Ok(())
}

/// What each menu item does; public so tests can press them.
pub fn on_menu<R: Runtime>(app: &tauri::AppHandle<R>, id: &str) {
    let Some(state) = app.try_state::<crate::AppState>() else {
        return;
    };
    let service = state.service.clone();
    match id {
        "pause" => {
            let paused = !service.is_paused();
            tauri::async_runtime::spawn(async move { service.set_paused(paused).await });
        }
        "sync" => {
            tauri::async_runtime::spawn(async move {
                if let Err(e) = service.restart().await {
                    tracing::warn!(error = %e, "sync now");
                }
            });
        }
        "open" => crate::show_main(app),
        "quit" => crate::quit(app),
        _ => {}
    }
}

/// Puts the status line (and pause/resume) in the menu and the tooltip.
pub fn set_status<R: Runtime>(app: &tauri::AppHandle<R>, overview: &Overview) {
    if let Some(items) = app.try_state::<Items<R>>() {
        let _ = items.status.set_text(&overview.status_line);
        let _ = items
            .pause
            .set_text(if overview.paused { "Resume" } else { "Pause" });
    }
    if let Some(tray) = app.tray_by_id(ID) {
        let _ = tray.set_tooltip(Some(format!("Photosync · {}", overview.status_line)));
    }
}
