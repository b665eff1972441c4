//! The real `photosync-server` process on loopback: standard tus clients (tuspy, and
//! tus-js-client under node), a crash in the middle of an upload, 32 concurrent clients, user
//! management and shutdown.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use photosync_protocol::{tus, Metadata};
use photosync_testkit::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_photosync-server");

fn bin() -> &'static Path {
    Path::new(BIN)
}

fn add_user(dir: &Path, name: &str) -> String {
    photosync_testkit::add_user(bin(), dir, name)
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(photosync_testkit::photos_dir().join(name)).unwrap()
}

fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

async fn create(c: &reqwest::Client, s: &str, token: &str, name: &str, bytes: &[u8]) -> String {
    let mut m = Metadata::default();
    m.insert("filename", name);
    m.insert("digest", digest(bytes));
    let r = c
        .post(format!("{s}/files/"))
        .bearer_auth(token)
        .header(tus::RESUMABLE, tus::VERSION)
        .header(tus::UPLOAD_LENGTH, bytes.len())
        .header(tus::UPLOAD_METADATA, m.encode())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    format!("{s}{}", r.headers()["location"].to_str().unwrap())
}

async fn patch(
    c: &reqwest::Client,
    loc: &str,
    token: &str,
    offset: usize,
    body: reqwest::Body,
) -> reqwest::Result<reqwest::Response> {
    c.patch(loc)
        .bearer_auth(token)
        .header(tus::RESUMABLE, tus::VERSION)
        .header("content-type", tus::OFFSET_CONTENT_TYPE)
        .header(tus::UPLOAD_OFFSET, offset)
        .body(body)
        .send()
        .await
}

/// The upload's offset. HEAD is idempotent: like any tus client, this one asks again when a
/// pooled connection turns out closed (the server closes one whose PATCH body it refused).
async fn head_offset(c: &reqwest::Client, loc: &str, token: &str) -> usize {
    let mut tries = 0;
    let r = loop {
        let sent = c
            .head(loc)
            .bearer_auth(token)
            .header(tus::RESUMABLE, tus::VERSION)
            .send()
            .await;
        match sent {
            Err(e) if tries < 5 && e.is_request() => tries += 1,
            other => break other.unwrap(),
        }
    };
    assert_eq!(r.status(), 200);
    r.headers()[tus::UPLOAD_OFFSET]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn images(c: &reqwest::Client, s: &str, token: &str) -> Vec<serde_json::Value> {
    let r = c
        .get(format!("{s}/api/v1/images?limit=1000"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    v["images"].as_array().unwrap().clone()
}

async fn download(c: &reqwest::Client, s: &str, token: &str, id: i64) -> Vec<u8> {
    let r = c
        .get(format!("{s}/api/v1/images/{id}/content"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

/// A Python virtual environment with tuspy, made once per target directory.
fn tuspy_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tuspy-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".ready");
    if !ready.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "python3 -m venv failed (Debian: apt-get install python3-venv)"
        );
        let ok = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "tuspy==1.1.0"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "pip install tuspy failed");
        std::fs::write(&ready, b"").unwrap();
    }
    python
}

const TUSPY_SCRIPT: &str = r#"
import sys
from tusclient import client
url, token, path, digest = sys.argv[1:5]
c = client.TusClient(url + "/files/", headers={"Authorization": "Bearer " + token})
u = c.uploader(path, chunk_size=1000, upload_checksum=True,
               metadata={"filename": "from-tuspy.jpg", "digest": digest})
sizes = [1000, 4096, 333, 65536, 7, 20000]
i = 0
while u.offset < u.get_file_size():
    u.chunk_size = sizes[i % len(sizes)]  # a different size for every chunk
    u.upload_chunk()
    i += 1
print(i)
"#;

#[tokio::test]
async fn tuspy_uploads_unchanged_and_the_bytes_are_identical() {
    let python = tuspy_python();
    let dir = tempfile::tempdir().unwrap();
    let token = add_user(dir.path(), "alice");
    let server = ServerProcess::start(bin(), dir.path(), &[]);
    let original = photosync_testkit::photos_dir().join("panther-chameleon-female.jpg");
    let bytes = std::fs::read(&original).unwrap();
    let out = Command::new(python)
        .args(["-c", TUSPY_SCRIPT, &server.url, &token])
        .arg(&original)
        .arg(digest(&bytes))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tuspy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chunks: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        chunks > 6,
        "several chunk sizes were used ({chunks} chunks)"
    );

    let c = client();
    let list = images(&c, &server.url, &token).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "from-tuspy.jpg");
    let got = download(&c, &server.url, &token, list[0]["id"].as_i64().unwrap()).await;
    assert!(got == bytes, "stored bytes differ from the original");
}

/// A folder with tus-js-client installed by npm, made once per target directory.
fn tus_js_modules() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tus-js-client");
    let ready = dir.join(".ready");
    if !ready.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        // Its own package.json, so npm installs here rather than in a parent folder.
        std::fs::write(dir.join("package.json"), b"{\"private\": true}\n").unwrap();
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "tus-js-client@4"])
            .current_dir(&dir)
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "npm install tus-js-client@4 failed (Debian: apt-get install nodejs npm): {status:?}"
        );
        std::fs::write(&ready, b"").unwrap();
    }
    dir
}

/// Runs tests/tus-js/upload.mjs with node; returns its JSON lines, or fails the test with
/// everything it printed.
fn tus_js_upload(server: &str, token: &str, file: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tus-js/upload.mjs");
    let out = Command::new("node")
        .arg(script)
        .arg("--modules")
        .arg(tus_js_modules())
        .args(["--endpoint", server, "--token", token, "--file"])
        .arg(file)
        .args(extra)
        .output()
        .expect("node not found (Debian: apt-get install nodejs npm)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tus-js-client failed ({}):\n{stdout}{stderr}",
        out.status
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// The one line of `lines` whose "event" is `event`.
fn event<'a>(lines: &'a [serde_json::Value], event: &str) -> &'a serde_json::Value {
    let mut found = lines.iter().filter(|l| l["event"] == event);
    let line = found.next();
    assert!(found.next().is_none(), "two {event:?} lines: {lines:?}");
    line.unwrap_or_else(|| panic!("no {event:?} line: {lines:?}"))
}

/// The one image called `name`, and its bytes.
async fn stored(s: &str, token: &str, name: &str) -> (serde_json::Value, Vec<u8>) {
    let c = client();
    let list = images(&c, s, token).await;
    let mut found = list.iter().filter(|i| i["name"] == name);
    let image = found
        .next()
        .unwrap_or_else(|| panic!("no {name}: {list:?}"));
    assert!(found.next().is_none(), "{name} stored twice: {list:?}");
    let bytes = download(&c, s, token, image["id"].as_i64().unwrap()).await;
    (image.clone(), bytes)
}

/// tus-js-client knows nothing of Photosync: no digest, only `filename` and `filetype`. The server
/// takes the upload as it comes, computes the digest itself, and an aborted upload that a new
/// `tus.Upload` is pointed at resumes from the server's offset instead of starting over.
#[tokio::test]
async fn tus_js_client_uploads_without_a_digest_and_resumes_after_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_user(dir.path(), "alice");
    let server = ServerProcess::start(bin(), dir.path(), &[]);
    let files = tempfile::tempdir().unwrap();

    // A photo in one PATCH.
    let photo_path = files.path().join("elephants.jpg");
    let photo_bytes = photo("elephants.jpg");
    std::fs::write(&photo_path, &photo_bytes).unwrap();
    let out = tus_js_upload(
        &server.url,
        &token,
        &photo_path,
        &["--filetype", "image/jpeg"],
    );
    let done = event(&out, "success");
    assert_eq!(
        done["requests"],
        serde_json::json!(["POST 201", "PATCH 204"])
    );
    let (image, got) = stored(&server.url, &token, "elephants.jpg").await;
    assert!(got == photo_bytes, "stored bytes differ from the photo");
    assert_eq!(image["digest"], digest(&photo_bytes), "BLAKE3 of the file");
    assert_eq!(image["bytes"], photo_bytes.len());
    assert!(
        image["identifier"]
            .as_str()
            .is_some_and(|i| i.starts_with(&format!("{}:", photosync_identify::VERSION))),
        "the server identified the photo itself: {image}"
    );

    // 3 MiB in 64 KiB parts, aborted by the client after 1 MiB, then resumed by a new upload.
    let size = 3 << 20;
    let big_path = files.path().join("big.bin");
    let big = photosync_testkit::noise(size, 11);
    std::fs::write(&big_path, &big).unwrap();
    let chunk = 64 << 10;
    let abort_after = 1 << 20;
    let out = tus_js_upload(
        &server.url,
        &token,
        &big_path,
        &[
            "--chunk-size",
            &chunk.to_string(),
            "--abort-after",
            &abort_after.to_string(),
        ],
    );
    let aborted = event(&out, "aborted");
    let acked = aborted["offset"].as_u64().unwrap() as usize;
    assert!(
        (abort_after..size).contains(&acked),
        "aborted at {acked} of {size}"
    );
    let head = event(&out, "head");
    assert_eq!(head["status"], 200);
    assert_eq!(
        head["offset"], acked,
        "the server holds what it acknowledged"
    );
    assert_eq!(head["length"], size);
    let done = event(&out, "success");
    assert_eq!(done["url"], aborted["url"], "the same upload went on");
    let from = done["resumed_from"].as_u64().unwrap() as usize;
    assert!(
        from > 0 && from < size,
        "resumed from {from} of {size}, not from the start"
    );
    assert_eq!(from, acked, "resumed where the server stood");
    let requests: Vec<&str> = done["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        requests[0], "HEAD 200",
        "asked the server first: {requests:?}"
    );
    assert!(
        requests[1..].iter().all(|r| *r == "PATCH 204"),
        "then only parts: {requests:?}"
    );
    assert_eq!(
        requests.len() - 1,
        (size - acked).div_ceil(chunk),
        "only the rest was sent"
    );
    let (image, got) = stored(&server.url, &token, "big.bin").await;
    assert!(got == big, "the resumed file differs");
    assert_eq!(image["digest"], digest(&big), "BLAKE3 of the file");
}

#[tokio::test]
async fn a_crash_mid_upload_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_user(dir.path(), "alice");
    // The default idle timeout: a killed request's lease would stand for a minute.
    let mut server = ServerProcess::start(bin(), dir.path(), &[]);
    let c = client();
    let bytes = photo("cincinnati-bridge.jpg");
    let loc = create(&c, &server.url, &token, "bridge.jpg", &bytes).await;
    let id = loc.rsplit('/').next().unwrap().to_owned();

    // The first part is acknowledged.
    let acked = 40_000;
    let r = patch(&c, &loc, &token, 0, bytes[..acked].to_vec().into())
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // The second part is in flight when the server is killed.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let body =
        reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let in_flight = tokio::spawn({
        let (c, loc, token) = (c.clone(), loc.clone(), token.clone());
        async move { patch(&c, &loc, &token, acked, body).await }
    });
    tx.send(Ok(bytes[acked..acked + 30_000].to_vec()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill(); // SIGKILL
    let _ = in_flight.await.unwrap();
    drop(tx);

    let part = dir.path().join("uploads").join(format!("{id}.part"));
    let stored = std::fs::metadata(&part).unwrap().len() as usize;

    // Nothing partial is visible as an image, before or after the restart.
    let server = ServerProcess::start(bin(), dir.path(), &[]);
    let loc = format!("{}/files/{id}", server.url);
    assert!(images(&c, &server.url, &token).await.is_empty());
    let offset = head_offset(&c, &loc, &token).await;
    assert!(
        offset >= acked,
        "offset {offset} below the acknowledged {acked}"
    );
    assert!(
        offset <= stored,
        "offset {offset} beyond the {stored} bytes stored"
    );

    // Resume from where the server stands at once: the restarted server holds no lease of
    // the killed one's requests.
    let r = patch(&c, &loc, &token, offset, bytes[offset..].to_vec().into())
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let list = images(&c, &server.url, &token).await;
    assert_eq!(list.len(), 1);
    let got = download(&c, &server.url, &token, list[0]["id"].as_i64().unwrap()).await;
    assert!(got == bytes, "the resumed file differs");
}

/// A log that cannot be written (stderr on a full disk) must not fail requests.
#[tokio::test]
async fn a_full_disk_under_the_log_does_not_fail_requests() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_user(dir.path(), "alice");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    /// Kills the server however the test ends, so a failed assertion leaves no process behind.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = Killed(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "debug")
            .stderr(std::fs::File::create("/dev/full").unwrap())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in ["aqua.jpg", "garden.jpg", "wood.jpg"] {
        let bytes = photo(name);
        let loc = create(&c, &url, &token, name, &bytes).await;
        let r = patch(&c, &loc, &token, 0, bytes.into()).await.unwrap();
        assert_eq!(r.status(), 204);
    }
    assert_eq!(images(&c, &url, &token).await.len(), 3);
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server is still running"
    );
}

/// Only one server serves a data directory (its leases, its index): a second one says so and
/// exits, while the first goes on serving.
#[tokio::test]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_user(dir.path(), "alice");
    let first = ServerProcess::start(bin(), dir.path(), &[]);
    let second = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another photosync-server is serving"), "{err}");
    assert!(images(&client(), &first.url, &token).await.is_empty());
}

#[tokio::test]
async fn thirty_two_clients_at_once_store_every_photo_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_user(dir.path(), "alice");
    let server = ServerProcess::start(bin(), dir.path(), &[]);
    let names = [
        "aqua.jpg",
        "garden.jpg",
        "wood.jpg",
        "dune.jpg",
        "storm.jpg",
        "coffee.jpg",
        "rocket.jpg",
        "moon.jpg",
    ];
    let photos: Vec<Vec<u8>> = names.iter().map(|n| photo(n)).collect();
    let c = client();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (c, url, token) = (c.clone(), server.url.clone(), token.clone());
            let bytes = photos[i % photos.len()].clone();
            let name = format!("{i}-{}", names[i % names.len()]);
            tokio::spawn(async move {
                // Clients of one account creating the same file share its upload (the server
                // joins them), so each goes on from the server's offset, as a tus client
                // resumes, until every byte is in: in halves, so writers meet mid-upload.
                let loc = create(&c, &url, &token, &name, &bytes).await;
                let half = bytes.len() / 2;
                for _ in 0..1000 {
                    let offset = head_offset(&c, &loc, &token).await;
                    if offset == bytes.len() {
                        return Ok(loc);
                    }
                    let end = if offset < half { half } else { bytes.len() };
                    let sent =
                        patch(&c, &loc, &token, offset, bytes[offset..end].to_vec().into()).await;
                    // A dropped connection: ask where the upload stands and go on.
                    let Ok(r) = sent else {
                        continue;
                    };
                    match r.status().as_u16() {
                        // Another writer holds the upload, moved its offset or finished it.
                        409 | 423 | 400 => tokio::time::sleep(Duration::from_millis(20)).await,
                        204 => {}
                        other => return Err(other),
                    }
                }
                Err(0)
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("every upload is completed");
    }
    let list = images(&c, &server.url, &token).await;
    assert_eq!(list.len(), names.len(), "each distinct photo recorded once");
    for img in &list {
        let got = download(&c, &server.url, &token, img["id"].as_i64().unwrap()).await;
        assert_eq!(digest(&got), img["digest"].as_str().unwrap());
    }
    let blobs: usize = std::fs::read_dir(dir.path().join("blobs"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(blobs, names.len(), "each blob stored once");
}

#[tokio::test]
async fn users_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_user(dir.path(), "alice");
    assert!(token.starts_with("psk_") && token.len() > 40);
    let again = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["user", "add", "alice"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let list = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["user", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("alice\t0 images"));
    // The token is stored only as a hash.
    let db = std::fs::read(dir.path().join("photosync.db")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));

    let server = ServerProcess::start(bin(), dir.path(), &[]);
    let c = client();
    let ok = c
        .get(format!("{}/api/v1/images", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    // Quotas: set at creation, changed, lifted; the server refuses what would pass them.
    let user = |args: &[&str]| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("user")
            .args(args)
            .output()
            .unwrap()
    };
    let bob = user(&["add", "bob", "--quota", "100"]);
    assert!(bob.status.success(), "{bob:?}");
    let bob = String::from_utf8(bob.stdout).unwrap().trim().to_owned();
    let bytes = photo("aqua.jpg");
    let mut m = Metadata::default();
    m.insert("filename", "aqua.jpg");
    let create_bobs = || {
        c.post(format!("{}/files/", server.url))
            .bearer_auth(&bob)
            .header(tus::RESUMABLE, tus::VERSION)
            .header(tus::UPLOAD_LENGTH, bytes.len())
            .header(tus::UPLOAD_METADATA, m.encode())
            .send()
    };
    let r = create_bobs().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("quota_exceeded"));
    let listed = String::from_utf8(user(&["list"]).stdout).unwrap();
    assert!(
        listed.contains("bob\t0 images\t0 bytes\tquota 100"),
        "{listed}"
    );
    assert!(user(&["set-quota", "bob", "none"]).status.success());
    assert!(!user(&["set-quota", "bob", "lots"]).status.success());
    assert!(!user(&["set-quota", "nobody", "5"]).status.success());
    assert_eq!(create_bobs().await.unwrap().status(), 201);

    // Removing a user removes their photos from storage, unless another user holds them.
    let loc = create(&c, &server.url, &token, "aqua.jpg", &bytes).await;
    let r = patch(&c, &loc, &token, 0, bytes.clone().into())
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let d = digest(&bytes);
    let blob = dir.path().join("blobs").join(&d[..2]).join(&d);
    assert!(blob.exists());
    assert!(user(&["remove", "alice"]).status.success());
    let gone = c
        .get(format!("{}/api/v1/images", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 401);
    assert!(!blob.exists(), "only Alice held it");
    assert!(!user(&["remove", "alice"]).status.success());
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(bin(), dir.path(), &[]);
    let ok = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `Tus-Max-Size` of a running server: which `max_upload_size` it took.
async fn max_size(server: &ServerProcess) -> String {
    let r = client()
        .request(reqwest::Method::OPTIONS, format!("{}/files/", server.url))
        .send()
        .await
        .unwrap();
    r.headers()[tus::MAX_SIZE].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_settings_file_sets_the_options_and_the_command_line_and_environment_win() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("server.toml");
    std::fs::write(
        &file,
        format!(
            "# as the package writes it\ndata_dir = {:?}\nlisten = \"127.0.0.1:0\"\n\
             max_upload_size = 1000\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let server = |extra: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&file).arg("serve").args(extra);
        c.env_remove("PHOTOSYNC_MAX_UPLOAD_SIZE")
            .envs(env.iter().copied());
        ServerProcess::spawn(c)
    };

    // The admin's commands find the same data through the same file.
    let out = Command::new(BIN)
        .args(["user", "add", "alice"])
        .env("PHOTOSYNC_CONFIG", &file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        data.join("photosync.db").is_file(),
        "data_dir comes from the file"
    );

    let s = server(&[], &[]);
    assert_eq!(max_size(&s).await, "1000");
    // A list: both origins are allowed.
    for origin in ["https://a.example", "https://b.example"] {
        let r = client()
            .get(format!("{}/api/v1/version", s.url))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], origin);
    }
    drop(s);
    let s = server(&["--max-upload-size", "2000"], &[]);
    assert_eq!(max_size(&s).await, "2000", "the command line wins");
    drop(s);
    let s = server(&[], &[("PHOTOSYNC_MAX_UPLOAD_SIZE", "3000")]);
    assert_eq!(max_size(&s).await, "3000", "the environment wins");
    drop(s);

    // server.env beside the file sets variables (a bucket's keys) the file does not.
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("server.env"),
        "# as the admin writes it\nPHOTOSYNC_MAX_UPLOAD_SIZE=\"5000\"\n",
    )
    .unwrap();
    let s = server(&[], &[]);
    assert_eq!(max_size(&s).await, "5000");
}

#[test]
fn a_bad_settings_file_is_refused_with_where_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.toml");
    // `serve` reads every key; a bad value must stop it before it listens.
    let run = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&file)
            .args(["--data-dir", dir.path().to_str().unwrap(), "serve"])
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("PHOTOSYNC_MAX_UPLOAD_SIZE")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("lisen = \"127.0.0.1:8080\"\n");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("unknown setting \"lisen\"") && err.contains("listen"),
        "{err}"
    );
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    let (code, err) = run("listen = \n");
    assert_eq!(code, Some(2));
    assert!(err.contains("not valid TOML"), "{err}");
    let (code, err) = run("[listen]\nport = 1\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("listen takes a string or a number"), "{err}");
    let (code, err) = run("max_upload_size = \"lots\"\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("lots"), "{err}");
    let (code, err) = run("database = \"mysql://root:hunter2@db/x\"\n");
    assert_eq!(code, Some(2));
    assert!(
        !err.contains("hunter2"),
        "a password is never echoed: {err}"
    );
    // Nor when the line around it is broken (toml's own message quotes the line).
    let (code, err) = run("listen = \"127.0.0.1:0\"\ndatabase = \"postgres://u:hunter2@db/x\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("at line 2"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "a password is never echoed: {err}"
    );

    // The keys of a bucket (no options) come from server.env beside the file.
    let env_file = dir.path().join("server.env");
    std::fs::write(&env_file, "# keys\nAWS_REGION=x\nnot a line with hunter2\n").unwrap();
    let (code, err) = run("listen = \"127.0.0.1:0\"\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("server.env: line 3 is not KEY=VALUE"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    std::fs::remove_file(&env_file).unwrap();
    // Nothing was created anywhere by a refused start.
    assert!(!dir.path().join("photosync.db").exists());

    let missing = Command::new(BIN)
        .args(["--config", "/nonexistent/server.toml", "user", "list"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the settings file"));
}

/// Root running an admin command on the service's data (owned by its own user) runs it as
/// that user: nothing it creates is root's, which the service could not write.
#[test]
fn root_runs_admin_commands_as_the_owner_of_the_data() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Debian's `daemon` system account (uid 1, group 1); the directory's group is root's, and
    // the command must take the account's own group, not that one.
    let daemon = 1;
    std::os::unix::fs::chown(&data, Some(daemon), Some(0)).unwrap();
    let token = add_user(&data, "alice");
    assert!(token.starts_with("psk_"));
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (daemon, daemon),
            "{} is not the owner's",
            entry.path().display()
        );
    }
    let list = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["user", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("alice\t0 images"));
    // And the check a package upgrade runs says what the stores hold.
    let check = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .arg("check")
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stdout).contains(": 1 users, 0 images, 0 bytes"),
        "{check:?}"
    );
    // `check` also refuses what `serve` would refuse (a package upgrade relies on it).
    let check_with = |setting: &str| {
        // Root's alone: the command run again as the data's owner must not need to read it.
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, setting).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Command::new(BIN)
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(&data)
            .arg("check")
            .env_remove("PHOTOSYNC_MAX_UPLOAD_SIZE")
            .env_remove("PHOTOSYNC_LISTEN")
            .output()
            .unwrap()
    };
    let bad = check_with("max_upload_size = \"lots\"\n");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("the settings for serve"));
    let bad = check_with("listen = \"nowhere\"\n");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("listen = \"nowhere\""));

    // Data of a user who is no system account: root is refused, not switched to them.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
    let refused = Command::new(BIN)
        .arg("--data-dir")
        .arg(&theirs)
        .args(["user", "add", "mallory"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a system account"));
    assert!(!theirs.join("photosync.db").exists());
}
