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

/// A real Secret Service (gnome-keyring) on the bus at `address`, its login keyring created
/// and unlocked, its files under `home`.
fn secret_service(address: &str, home: &Path) -> Child {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut keyring = Command::new("gnome-keyring-daemon")
        .args(["--foreground", "--components=secrets", "--unlock"])
        .env("DBUS_SESSION_BUS_ADDRESS", address)
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
    Child(keyring)
}

/// Where no keyring answers, the token stays in the owner-only file, which says so; once a
/// keyring runs, the token moves there at the next save and the file holds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_goes_to_the_system_keyring_or_stays_in_the_file() {
    use photosync_service::{Keyring, TokenStore};
    let server_dir = tempfile::tempdir().unwrap();
    let (url, token) = server(server_dir.path()).await;
    let home = tempfile::tempdir().unwrap();
    let paths = || Paths {
        keyring: Some(Keyring::new("photosync-test")),
        ..Paths::under(home.path())
    };
    let on_disk = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(home.path().join("settings.json")).unwrap()).unwrap()
    };
    let rt = tokio::runtime::Handle::current;
    let bus_dir = tempfile::tempdir().unwrap();
    let (bus, address) = photosync_testkit::private_bus(bus_dir.path());
    let _bus = Child(bus);
    // Set once, before any connection: libdbus keeps the first address it reads. This test
    // binary holds this one test, so the variable is ours alone.
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address);

    // A bus, but no Secret Service on it: the file keeps the token.
    let service = Service::new(paths(), Hooks::none(), rt()).unwrap();
    service.configure(&url, &token).await.unwrap();
    assert_eq!(service.settings().token_store, TokenStore::File);
    assert_eq!(
        (on_disk()["token"].clone(), on_disk()["token_store"].clone()),
        (serde_json::json!(token), serde_json::json!("file"))
    );
    service.stop().await;

    // A real keyring comes up: the token moves there at the next save.
    let keyring_home = tempfile::tempdir().unwrap();
    let _daemon = secret_service(&address, keyring_home.path());
    let keyring = Keyring::new("photosync-test");
    // The daemon takes a moment to own its name on the bus.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = keyring.set("probe") {
        assert!(
            std::time::Instant::now() < deadline,
            "no Secret Service came up: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let service = Service::new(paths(), Hooks::none(), rt()).unwrap();
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
    let again = Service::new(paths(), Hooks::none(), rt()).unwrap();
    assert_eq!(again.settings().token, token);
    assert!(again.settings().is_configured());
    drop(again);

    // A keyring that is not up yet at a start (login is slow): the token is not known this
    // time, but it is not lost, and the file still says where it is.
    drop(_daemon);
    let late = Service::new(paths(), Hooks::none(), rt()).unwrap();
    assert!(!late.settings().is_configured());
    late.preset(None, None, vec![home.path().to_path_buf()])
        .unwrap();
    assert_eq!(on_disk()["token_store"], "keyring", "{}", on_disk());
    assert_eq!(on_disk()["token"], "");
    drop(late);
    let _daemon = secret_service(&address, keyring_home.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let back = loop {
        let s = Service::new(paths(), Hooks::none(), rt()).unwrap();
        if s.settings().is_configured() || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(back.settings().token, token, "the keyring gives it back");
}
