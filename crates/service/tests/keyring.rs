//! The token in the system keyring: a real Secret Service (gnome-keyring) on a private D-Bus
//! bus. A test binary of its own, since it sets the process's bus address.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use photosync_server::AppState;
use photosync_service::{Hooks, Paths, Service};

async fn server(dir: &Path) -> (String, String) {
    let token = "psk_keyring_test".to_owned();
    let state = AppState::embedded_with_user(dir, "me", &token)
        .await
        .unwrap();
    let url = photosync_server::spawn_local(state).await.unwrap();
    (url, token)
}

/// A process of the test's own, ended when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private D-Bus session bus with a real Secret Service (gnome-keyring) on it, unlocked,
/// its files under `home`. Returns the bus address.
fn secret_service(home: &Path) -> (Child, Child, String) {
    use std::io::{BufRead, Write};
    use std::process::{Command, Stdio};
    let mut bus = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("dbus-daemon (scripts/setup installs it)");
    let mut address = String::new();
    std::io::BufReader::new(bus.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let bus = Child(bus);
    let address = address.trim().to_owned();
    let mut keyring = Command::new("gnome-keyring-daemon")
        .args(["--foreground", "--components=secrets", "--unlock"])
        .env("DBUS_SESSION_BUS_ADDRESS", &address)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_RUNTIME_DIR", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gnome-keyring-daemon (scripts/setup installs it)");
    // The login keyring's password, then end of input: it is created unlocked.
    let mut stdin = keyring.stdin.take().unwrap();
    stdin.write_all(b"test-password").unwrap();
    drop(stdin);
    (bus, Child(keyring), address)
}

/// The token goes to the system keyring and the settings file says so, holding no token;
/// where no keyring answers, the token stays in the owner-only file, which says that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_goes_to_the_system_keyring_or_stays_in_the_file() {
    use photosync_service::{Keyring, TokenStore};
    let server_dir = tempfile::tempdir().unwrap();
    let (url, token) = server(server_dir.path()).await;
    let home = tempfile::tempdir().unwrap();
    let paths = |keyring: &str| Paths {
        keyring: Some(Keyring::new(keyring)),
        ..Paths::under(home.path())
    };
    let on_disk = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(home.path().join("settings.json")).unwrap()).unwrap()
    };
    let rt = tokio::runtime::Handle::current;

    // No Secret Service on this bus address: the file keeps the token.
    std::env::set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", home.path().join("no-bus").display()),
    );
    let service = Service::new(paths("photosync-test"), Hooks::none(), rt()).unwrap();
    service.configure(&url, &token).await.unwrap();
    assert_eq!(service.settings().token_store, TokenStore::File);
    assert_eq!(
        (on_disk()["token"].clone(), on_disk()["token_store"].clone()),
        (serde_json::json!(token), serde_json::json!("file"))
    );
    service.stop().await;

    // A real keyring on a private bus: the token moves there at the next save.
    let keyring_home = tempfile::tempdir().unwrap();
    let (_bus, _daemon, address) = secret_service(keyring_home.path());
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address);
    let keyring = Keyring::new("photosync-test");
    // The daemon takes a moment to own its name on the bus.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while keyring.set("probe").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no Secret Service came up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let service = Service::new(paths("photosync-test"), Hooks::none(), rt()).unwrap();
    assert_eq!(
        service.settings().token,
        token,
        "read from the file as before"
    );
    service.configure(&url, &token).await.unwrap();
    assert_eq!(service.settings().token_store, TokenStore::Keyring);
    assert_eq!(
        (on_disk()["token"].clone(), on_disk()["token_store"].clone()),
        (serde_json::json!(""), serde_json::json!("keyring")),
        "the file holds no token, and says where it is"
    );
    assert_eq!(keyring.get().unwrap(), token);
    service.stop().await;
    // A new start reads it back from the keyring.
    let again = Service::new(paths("photosync-test"), Hooks::none(), rt()).unwrap();
    assert_eq!(again.settings().token, token);
    assert!(again.settings().is_configured());
    std::env::remove_var("DBUS_SESSION_BUS_ADDRESS");
}
