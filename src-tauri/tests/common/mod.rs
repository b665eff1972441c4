//! What the end-to-end test and the desktop benchmark share: a private X display, the
//! WebDriver bridge, a restartable server in this process, and page helpers.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn tool(name: &str) -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([home.join(".cargo/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is missing: run `bash scripts/setup`"))
}

/// A private X display.
pub fn xvfb() -> (Proc, String) {
    for n in 90..200 {
        if Path::new(&format!("/tmp/.X{n}-lock")).exists() {
            continue;
        }
        let display = format!(":{n}");
        let socket = format!("/tmp/.X11-unix/X{n}");
        // A socket without a lock is left over from a server that is gone.
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(tool("Xvfb"))
            .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut proc = Proc(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Path::new(&socket).exists() && Instant::now() < deadline {
            if proc.0.try_wait().unwrap().is_some() {
                break; // the display was taken after all: try the next
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        if Path::new(&socket).exists() && proc.0.try_wait().unwrap().is_none() {
            return (proc, display);
        }
    }
    panic!("no free X display");
}

/// The server in this process, stoppable and restartable on the same address.
pub struct TestServer(photosync_server::LocalServer);

impl TestServer {
    pub async fn start(dir: &Path) -> (TestServer, String) {
        let token = "psk_e2e_token".to_owned();
        let state = photosync_server::AppState::embedded_with_user(dir, "me", &token)
            .await
            .unwrap();
        let server = photosync_server::LocalServer::start(state).await.unwrap();
        (TestServer(server), token)
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    pub async fn go_away(&mut self) {
        self.0.go_away().await;
    }

    pub async fn come_back(&mut self) {
        self.0.come_back().await.unwrap();
    }

    /// The test user's storage quota in bytes (`None`: no limit).
    pub async fn set_quota(&self, quota: Option<u64>) {
        self.0.state.store.set_quota("me", quota).await.unwrap();
    }

    pub async fn images(&self) -> usize {
        self.0
            .state
            .store
            .list_images(1, &photosync_server::ImageQuery::first(u32::MAX))
            .await
            .unwrap()
            .len()
    }
}

pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// Calls a command of the app the way the page does.
pub async fn invoke(c: &Client, cmd: &str, args: Value) -> Value {
    c.execute_async(
        "const [cmd, args, done] = arguments;
         window.__TAURI__.core.invoke(cmd, args).then(done, (e) => done({ error: String(e) }));",
        vec![json!(cmd), args],
    )
    .await
    .unwrap()
}

pub async fn wait_js(c: &Client, what: &str, condition: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if js(c, &format!("return !!({condition});")).await == json!(true) {
            return;
        }
        if Instant::now() > deadline {
            let status = js(
                c,
                "return document.getElementById('status-line').textContent",
            )
            .await;
            let rows = js(
                c,
                "return [...document.querySelectorAll('.row')].map(r => r.dataset.name + ' ' + r.dataset.status + ': ' + r.querySelector('.detail').textContent)",
            )
            .await;
            let page = js(
                c,
                "return { pause: document.getElementById('pause').textContent, \
                 open_dialogs: [...document.querySelectorAll('dialog[open]')].map(d => d.id), \
                 problem: document.getElementById('problem').textContent.trim(), \
                 clicks: window.__clicks || [] }",
            )
            .await;
            panic!("timed out: {what}\nstatus: {status}\nrows: {rows:#}\npage: {page:#}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts tauri-driver on `display` and a WebDriver session, which launches the app with its
/// files under `app_dir`.
pub async fn connect(app: &str, display: &str, app_dir: &Path) -> (Proc, Client) {
    connect_with(app, display, app_dir, &[]).await
}

/// `connect`, with more variables in the app's environment.
pub async fn connect_with(
    app: &str,
    display: &str,
    app_dir: &Path,
    env: &[(&str, &str)],
) -> (Proc, Client) {
    let (port, native) = (free_port(), free_port());
    let driver = Proc(
        Command::new(tool("tauri-driver"))
            .envs(env.iter().copied())
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native.to_string(),
            ])
            .env("DISPLAY", display)
            .env("PHOTOSYNC_DESKTOP_DIR", app_dir)
            .env_remove("PHOTOSYNC_SERVER")
            .env_remove("PHOTOSYNC_TOKEN")
            .env_remove("PHOTOSYNC_FOLDERS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port, "tauri-driver");
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("wry"));
    caps.insert("tauri:options".into(), json!({ "application": app }));
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(caps);
    // tauri-driver accepts before WebKitWebDriver behind it listens; on a cold machine a first
    // session request can find the connection closed. Wait for the native driver, and retry.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", native)).is_err() && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut attempt = 0;
    let client = loop {
        attempt += 1;
        match builder.connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(c) => break c,
            Err(e) if attempt < 5 && Instant::now() < deadline => {
                tracing::warn!(attempt, error = %e, "WebDriver session failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("no WebDriver session after {attempt} attempts: {e}"),
        }
    };
    (driver, client)
}
