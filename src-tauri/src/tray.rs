//! The tray icon: a status line, pause/resume, sync now, open the window, quit.

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{Manager, Runtime};

use photosync_service::Overview;

pub const ID: &str = "photosync";

/// The menu items whose text changes, and the state the icon shows.
struct Items<R: Runtime> {
    status: MenuItem<R>,
    pause: MenuItem<R>,
    shown: std::sync::Mutex<Option<TrayState>>,
}

/// What the tray icon shows, most pressing first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    Offline,
    /// Files failed.
    Error,
    Paused,
    Syncing,
    Idle,
}

impl TrayState {
    pub fn of(o: &Overview) -> TrayState {
        let t = &o.totals;
        // Not connected yet: nothing is backed up, as when the server is away.
        if o.offline || !o.configured {
            TrayState::Offline
        } else if t.failed > 0 {
            TrayState::Error
        } else if o.paused {
            TrayState::Paused
        } else if t.walking.is_some() || t.done + t.failed < t.all {
            TrayState::Syncing
        } else {
            TrayState::Idle
        }
    }

    /// The badge's colour (RGB).
    fn colour(self) -> [u8; 3] {
        match self {
            TrayState::Offline => [0xd9, 0x8a, 0x00],
            TrayState::Error => [0xd1, 0x24, 0x1b],
            TrayState::Paused => [0x8a, 0x94, 0xa6],
            TrayState::Syncing => [0x2f, 0x7b, 0xf5],
            TrayState::Idle => [0x1f, 0xa3, 0x4f],
        }
    }
}

/// The app icon with a badge in its lower right quarter: a disc in the state's colour with a
/// white mark (a tick when idle, an arrow when syncing, bars when paused, a dash offline, an
/// exclamation mark on error). `rgba` is `w` × `h` pixels.
pub fn badged(rgba: &[u8], w: u32, h: u32, state: TrayState) -> Vec<u8> {
    let mut out = rgba.to_vec();
    let side = w.min(h) as f32;
    let r = side * 0.26;
    let (cx, cy) = (w as f32 - r - 0.5, h as f32 - r - 0.5);
    let [cr, cg, cb] = state.colour();
    for y in 0..h {
        for x in 0..w {
            // Coordinates inside the badge, from -1 to 1.
            let (u, v) = ((x as f32 + 0.5 - cx) / r, (y as f32 + 0.5 - cy) / r);
            let d = (u * u + v * v).sqrt();
            if d > 1.0 {
                continue;
            }
            let i = ((y * w + x) * 4) as usize;
            let white = d > 0.86 || mark(state, u, v);
            let px = if white { [255, 255, 255] } else { [cr, cg, cb] };
            out[i..i + 4].copy_from_slice(&[px[0], px[1], px[2], 255]);
        }
    }
    out
}

/// Whether (u, v), inside the unit disc, is part of the state's white mark.
fn mark(state: TrayState, u: f32, v: f32) -> bool {
    let near = |a: f32, b: f32, w: f32| (a - b).abs() <= w;
    match state {
        // Two strokes of a tick.
        TrayState::Idle => {
            ((-0.5..-0.1).contains(&u) && near(v, u + 0.35, 0.16))
                || ((-0.15..0.5).contains(&u) && near(v, -u * 1.1 + 0.2, 0.16))
        }
        // An upward arrow: a shaft and a head.
        TrayState::Syncing => {
            (near(u, 0.0, 0.13) && (-0.3..0.5).contains(&v))
                || ((-0.55..-0.05).contains(&v) && u.abs() < (v + 0.55) * 0.9)
        }
        // Two bars.
        TrayState::Paused => (near(u, -0.22, 0.11) || near(u, 0.22, 0.11)) && v.abs() < 0.45,
        // A dash.
        TrayState::Offline => near(v, 0.0, 0.13) && u.abs() < 0.5,
        // An exclamation mark.
        TrayState::Error => {
            near(u, 0.0, 0.12) && ((-0.5..0.15).contains(&v) || near(v, 0.38, 0.12))
        }
    }
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
    app.manage(Items {
        status,
        pause,
        shown: std::sync::Mutex::new(None),
    });
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

/// Puts the status line (and pause/resume) in the menu and the tooltip (Linux trays show no
/// tooltips: the menu's first line is the status), and the state on the icon.
pub fn set_status<R: Runtime>(app: &tauri::AppHandle<R>, overview: &Overview) {
    let Some(items) = app.try_state::<Items<R>>() else {
        return;
    };
    let _ = items.status.set_text(&overview.status_line);
    let _ = items
        .pause
        .set_text(if overview.paused { "Resume" } else { "Pause" });
    let Some(tray) = app.tray_by_id(ID) else {
        return;
    };
    let _ = tray.set_tooltip(Some(format!("Photosync · {}", overview.status_line)));
    let state = TrayState::of(overview);
    let mut shown = items.shown.lock().unwrap_or_else(|p| p.into_inner());
    if *shown == Some(state) {
        return;
    }
    if let Some(icon) = app.default_window_icon() {
        let rgba = badged(icon.rgba(), icon.width(), icon.height(), state);
        let image = tauri::image::Image::new_owned(rgba, icon.width(), icon.height());
        if tray.set_icon(Some(image)).is_ok() {
            *shown = Some(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(rgba: &[u8], w: u32, x: u32, y: u32) -> [u8; 4] {
        let i = ((y * w + x) * 4) as usize;
        [rgba[i], rgba[i + 1], rgba[i + 2], rgba[i + 3]]
    }

    /// Each state draws its own badge over the icon, and leaves the rest of the icon alone.
    #[test]
    fn each_state_draws_a_distinct_badge() {
        let (w, h) = (64u32, 64u32);
        let icon: Vec<u8> = (0..w * h).flat_map(|_| [10u8, 20, 30, 255]).collect();
        let states = [
            TrayState::Offline,
            TrayState::Error,
            TrayState::Paused,
            TrayState::Syncing,
            TrayState::Idle,
        ];
        let drawn: Vec<Vec<u8>> = states.iter().map(|s| badged(&icon, w, h, *s)).collect();
        for (i, a) in drawn.iter().enumerate() {
            assert_eq!(pixel(a, w, 2, 2), [10, 20, 30, 255], "outside the badge");
            for b in &drawn[i + 1..] {
                assert_ne!(a, b, "two states look the same");
            }
            // The badge's colour shows at the edge of its disc, inside the white ring.
            let r = 64.0 * 0.26;
            let x = (64.0 - r - 0.5 - r * 0.75) as u32;
            let y = (64.0 - r - 0.5) as u32;
            let [cr, cg, cb] = states[i].colour();
            assert_eq!(pixel(a, w, x, y), [cr, cg, cb, 255], "{:?}", states[i]);
        }
    }
}
