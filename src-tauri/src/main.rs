//! `photosync-desktop`: the window, the tray and the desktop-only plugins around `run_app`.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() -> std::process::ExitCode {
    // WebKitGTK's accelerated compositing draws through OpenGL. Without a GPU (Mesa's software
    // GL) it cost 80 MB with the window empty, 160 MB more with 10,000 files listed, and
    // doubled frame times (`cargo bench -p photosync-desktop --bench desktop`); a list of
    // files gains nothing from it. Set before any thread starts; a user's own setting wins.
    #[cfg(target_os = "linux")]
    if std::env::var_os("WEBKIT_DISABLE_COMPOSITING_MODE").is_none() {
        std::env::set_var("WEBKIT_DISABLE_COMPOSITING_MODE", "1");
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    #[cfg(target_os = "linux")]
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        tracing::error!(
            "no display: the desktop app needs a graphical session. On a machine without a \
             screen, use the `photosync` command line (photosync sync / watch)."
        );
        return std::process::ExitCode::from(2);
    }
    let builder = tauri::Builder::default()
        // First: a second launch only focuses the first window.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            photosync_desktop::show_main(app);
        }))
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_dialog::init());
    let app = photosync_desktop::run_app(builder).build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "the app could not start");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = photosync_desktop::tray::install(app.handle()) {
        tracing::warn!(error = %e, "no tray icon");
    }
    app.run(|app, event| {
        // With the window closed the app lives on in the tray; only Quit ends it.
        if let tauri::RunEvent::ExitRequested {
            code: None, api, ..
        } = event
        {
            if app.tray_by_id(photosync_desktop::tray::ID).is_some() {
                api.prevent_exit();
            }
        }
    });
    std::process::ExitCode::SUCCESS
}
