//! Several `photosync-server` processes sharing one PostgreSQL database and one S3 bucket, as
//! behind a load balancer: real processes, a real throwaway PostgreSQL cluster and a real S3
//! server on loopback (moto), both started by this test binary. Each test has its own
//! database and its own prefix in the bucket.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use photosync_protocol::{tus, Metadata};
use photosync_testkit::postgres::Postgres;
use photosync_testkit::s3::Moto;
use photosync_testkit::{photos_dir, CountingProxy, ServerProcess};

const SERVER: &str = env!("CARGO_BIN_EXE_photosync-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_photosync");
const BUCKET: &str = "photos";

fn postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| Postgres::start().expect("a throwaway PostgreSQL cluster"))
}

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let moto = Moto::start().expect("moto's S3 server");
        moto.create_bucket(BUCKET).unwrap();
        moto
    })
}

/// One deployment: a database and a prefix in the bucket, shared by its instances.
struct Shared {
    database: String,
    prefix: String,
}

impl Shared {
    fn new() -> Shared {
        static N: AtomicUsize = AtomicUsize::new(0);
        Shared {
            database: postgres().new_database().unwrap(),
            prefix: format!("deploy-{}", N.fetch_add(1, Ordering::SeqCst)),
        }
    }

    /// `photosync-server --database ... --blobs s3://...` with the S3 settings in the
    /// environment, as a deployment would give them.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(SERVER);
        c.arg("--database")
            .arg(&self.database)
            .arg("--blobs")
            .arg(format!("s3://{BUCKET}/{}", self.prefix))
            .args(args)
            .env("AWS_ENDPOINT_URL", moto().endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("PHOTOSYNC_DATA_DIR", "/nonexistent/never-used");
        c
    }

    fn add_user(&self, name: &str) -> String {
        let out = self.command(&["user", "add", name]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// An instance; a short idle timeout keeps a killed instance's lease short (twice it).
    fn instance(&self) -> ServerProcess {
        ServerProcess::spawn(self.command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--idle-timeout",
            "2",
        ]))
    }

    /// Keys in the bucket below this deployment's `folder/`.
    fn objects(&self, folder: &str) -> Vec<(String, u64)> {
        moto()
            .list(BUCKET, &format!("{}/{folder}/", self.prefix))
            .unwrap()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(photos_dir().join(name)).unwrap()
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
    r.headers()["location"].to_str().unwrap().to_owned()
}

async fn patch(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    offset: usize,
    body: reqwest::Body,
) -> reqwest::Result<reqwest::Response> {
    c.patch(url)
        .bearer_auth(token)
        .header(tus::RESUMABLE, tus::VERSION)
        .header("content-type", tus::OFFSET_CONTENT_TYPE)
        .header(tus::UPLOAD_OFFSET, offset)
        .body(body)
        .send()
        .await
}

async fn head_offset(c: &reqwest::Client, url: &str, token: &str) -> usize {
    for _ in 0..5 {
        let sent = c
            .head(url)
            .bearer_auth(token)
            .header(tus::RESUMABLE, tus::VERSION)
            .send()
            .await;
        if let Ok(r) = sent {
            assert_eq!(r.status(), 200);
            return r.headers()[tus::UPLOAD_OFFSET]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
        }
    }
    panic!("HEAD {url} failed five times");
}

async fn get_json(c: &reqwest::Client, url: &str, token: &str) -> serde_json::Value {
    let r = c.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

async fn images(c: &reqwest::Client, s: &str, token: &str) -> Vec<serde_json::Value> {
    let v = get_json(c, &format!("{s}/api/v1/images?limit=1000"), token).await;
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

async fn detect(
    c: &reqwest::Client,
    s: &str,
    token: &str,
    digest: &str,
    identifier: Option<&str>,
) -> serde_json::Value {
    let body = serde_json::json!({"images": [{"digest": digest, "identifier": identifier}]});
    let r = c
        .post(format!("{s}/api/v1/detect"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    v["results"][0].clone()
}

/// PATCHes from the server's offset until the upload is whole, on `url` (any instance),
/// waiting out a lease that a killed instance still holds (423).
async fn finish(c: &reqwest::Client, url: &str, token: &str, bytes: &[u8]) {
    for _ in 0..200 {
        let offset = head_offset(c, url, token).await;
        if offset == bytes.len() {
            return;
        }
        match patch(c, url, token, offset, bytes[offset..].to_vec().into()).await {
            Ok(r) if r.status() == 204 => {}
            Ok(r) if r.status() == 423 || r.status() == 409 => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(r) => panic!("PATCH answered {}", r.status()),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    panic!("the upload never completed");
}

#[tokio::test]
async fn an_upload_moves_between_instances_survives_a_killed_one_and_is_found_by_both() {
    let shared = Shared::new();
    let token = shared.add_user("alice");
    let mut a = shared.instance();
    let b = shared.instance();
    let c = client();
    let bytes = photo("cincinnati-bridge.jpg");
    let path = create(&c, &a.url, &token, "bridge.jpg", &bytes).await;
    let on = |s: &ServerProcess| format!("{}{path}", s.url);

    // Parts alternate between the instances; each acknowledges what the other stored.
    let step = 25_000;
    let mut offset = 0;
    for (i, server) in [&a, &b, &a, &b].iter().enumerate() {
        let r = patch(
            &c,
            &on(server),
            &token,
            offset,
            bytes[offset..offset + step].to_vec().into(),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 204, "part {i}");
        offset += step;
        assert_eq!(
            head_offset(&c, &on(if i % 2 == 0 { &b } else { &a }), &token).await,
            offset
        );
    }

    // A part is in flight to A when A is killed.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let body =
        reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let in_flight = tokio::spawn({
        let (c, url, token) = (c.clone(), on(&a), token.clone());
        async move { patch(&c, &url, &token, offset, body).await }
    });
    tx.send(Ok(bytes[offset..offset + 30_000].to_vec()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill(); // SIGKILL
    let _ = in_flight.await.unwrap();
    drop(tx);

    // B answers for the upload at once, and takes it over once A's lease lapses.
    assert_eq!(head_offset(&c, &on(&b), &token).await, offset);
    finish(&c, &on(&b), &token, &bytes).await;

    let listed = images(&c, &b.url, &token).await;
    assert_eq!(listed.len(), 1);
    let id = listed[0]["id"].as_i64().unwrap();
    let again = shared.instance();
    for server in [&b, &again] {
        assert!(
            download(&c, &server.url, &token, id).await == bytes,
            "the blob differs"
        );
    }
    // Exactly one blob, of the right size, and nothing of the upload left in the bucket.
    let blobs = shared.objects("blobs");
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    assert!(blobs[0].0.ends_with(&digest(&bytes)));
    assert_eq!(blobs[0].1, bytes.len() as u64);
    assert!(
        shared.objects("uploads").is_empty(),
        "{:?}",
        shared.objects("uploads")
    );

    // Detection on either instance finds it: by its bytes, and by its picture.
    let identifier = listed[0]["identifier"].as_str().unwrap().to_owned();
    for server in [&b, &again] {
        let same = detect(&c, &server.url, &token, &digest(&bytes), None).await;
        assert_eq!(same["status"], "same_bytes", "{same}");
        let other_bytes = digest(b"a re-encoded copy");
        let alike = detect(&c, &server.url, &token, &other_bytes, Some(&identifier)).await;
        assert_eq!(alike["status"], "candidates", "{alike}");
        assert_eq!(alike["candidates"][0]["image"]["id"], id);
    }
}

#[tokio::test]
async fn an_image_stored_through_one_instance_is_detected_by_another_at_once() {
    let shared = Shared::new();
    let token = shared.add_user("alice");
    let (a, b) = (shared.instance(), shared.instance());
    let c = client();
    // B has served a detect already, so its index is built and must be kept fresh.
    let before = detect(&c, &b.url, &token, &digest(b"x"), None).await;
    assert_eq!(before["status"], "absent");
    for name in ["aqua.jpg", "dune.jpg", "storm.jpg"] {
        let bytes = photo(name);
        let path = create(&c, &a.url, &token, name, &bytes).await;
        finish(&c, &format!("{}{path}", a.url), &token, &bytes).await;
        let stored = images(&c, &a.url, &token).await;
        let mine = stored
            .iter()
            .find(|i| i["digest"] == digest(&bytes))
            .unwrap();
        let identifier = mine["identifier"].as_str().unwrap();
        // Asked right after A's answer: no waiting, no retry.
        let found = detect(
            &c,
            &b.url,
            &token,
            &digest(b"another file"),
            Some(identifier),
        )
        .await;
        assert_eq!(found["status"], "candidates", "{name}: {found}");
        assert_eq!(found["candidates"][0]["image"]["id"], mine["id"]);
    }
}

#[tokio::test]
async fn thirty_two_clients_on_two_instances_store_every_photo_exactly_once() {
    let shared = Shared::new();
    let token = shared.add_user("alice");
    let servers = [shared.instance(), shared.instance()];
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
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
            let (c, urls, token) = (c.clone(), urls.clone(), token.clone());
            let bytes = photos[i % photos.len()].clone();
            let name = format!("{i}-{}", names[i % names.len()]);
            tokio::spawn(async move {
                // Every request goes to the next instance, as a balancer would send it.
                let mut turn = i;
                let mut next = || {
                    turn += 1;
                    urls[turn % 2].clone()
                };
                let path = create(&c, &next(), &token, &name, &bytes).await;
                let half = bytes.len() / 2;
                for _ in 0..1000 {
                    let offset = head_offset(&c, &format!("{}{path}", next()), &token).await;
                    if offset == bytes.len() {
                        return Ok(());
                    }
                    let end = if offset < half { half } else { bytes.len() };
                    let url = format!("{}{path}", next());
                    let body = bytes[offset..end].to_vec().into();
                    let Ok(r) = patch(&c, &url, &token, offset, body).await else {
                        continue;
                    };
                    match r.status().as_u16() {
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
    let list = images(&c, &urls[0], &token).await;
    assert_eq!(list.len(), names.len(), "each distinct photo recorded once");
    let mut recorded: Vec<String> = list
        .iter()
        .map(|i| i["digest"].as_str().unwrap().to_owned())
        .collect();
    recorded.sort();
    // Each blob stored once, and none without a record.
    let mut in_bucket: Vec<String> = shared
        .objects("blobs")
        .into_iter()
        .map(|(key, _)| key.rsplit('/').next().unwrap().to_owned())
        .collect();
    in_bucket.sort();
    assert_eq!(in_bucket, recorded);
    for img in &list {
        let got = download(&c, &urls[1], &token, img["id"].as_i64().unwrap()).await;
        assert_eq!(digest(&got), img["digest"].as_str().unwrap());
    }
    assert!(shared.objects("uploads").is_empty());
}

#[tokio::test]
async fn deleted_uploads_and_removed_users_leave_nothing_in_the_bucket() {
    let shared = Shared::new();
    let token = shared.add_user("alice");
    let (a, b) = (shared.instance(), shared.instance());
    let c = client();
    // An unfinished upload with parts in the bucket, terminated through the other instance.
    let bytes = photo("wood.jpg");
    let path = create(&c, &a.url, &token, "wood.jpg", &bytes).await;
    let r = patch(
        &c,
        &format!("{}{path}", a.url),
        &token,
        0,
        bytes[..10_000].to_vec().into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!shared.objects("uploads").is_empty());
    let r = c
        .delete(format!("{}{path}", b.url))
        .bearer_auth(&token)
        .header(tus::RESUMABLE, tus::VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        shared.objects("uploads").is_empty(),
        "{:?}",
        shared.objects("uploads")
    );

    // Two users hold one photo; another photo is alice's alone. Removing alice deletes only
    // the blob nobody else holds, from the bucket.
    let bob = shared.add_user("bob");
    for (who, name) in [
        (&token, "aqua.jpg"),
        (&bob, "aqua.jpg"),
        (&token, "dune.jpg"),
    ] {
        let bytes = photo(name);
        let path = create(&c, &a.url, who, name, &bytes).await;
        finish(&c, &format!("{}{path}", b.url), who, &bytes).await;
    }
    assert_eq!(shared.objects("blobs").len(), 2);
    let removed = shared
        .command(&["user", "remove", "alice"])
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    let left = shared.objects("blobs");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].0.ends_with(&digest(&photo("aqua.jpg"))));
    assert_eq!(images(&c, &b.url, &bob).await.len(), 1);
}

#[test]
fn a_blob_that_no_longer_matches_its_digest_is_reported_and_not_moved() {
    let data = tempfile::tempdir().unwrap();
    let token = photosync_testkit::add_user(Path::new(SERVER), data.path(), "alice");
    let local = tempfile::tempdir().unwrap();
    let lib = library(local.path());
    {
        let embedded = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
        let state = local.path().join("state.db");
        let first = photosync(
            &["sync", lib.to_str().unwrap()],
            &embedded.url,
            &token,
            &state,
        );
        assert!(first.status.success(), "{first:?}");
    }
    // One blob rots on the old disk.
    let rotten = digest(&photo("dune.jpg"));
    let path = data.path().join("blobs").join(&rotten[..2]).join(&rotten);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();

    let shared = Shared::new();
    let moved = shared
        .command(&["migrate", "--from", data.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!moved.status.success(), "{moved:?}");
    let out = stdout(&moved);
    assert!(out.contains("images: 5 moved"), "{out}");
    assert!(
        out.contains("1 failed") && out.contains("no longer hash"),
        "{out}"
    );
    // The rest is there; the rotten one is neither recorded nor in the bucket.
    let blobs = shared.objects("blobs");
    assert_eq!(blobs.len(), 5);
    assert!(!blobs.iter().any(|(k, _)| k.ends_with(&rotten)));
    assert!(shared.objects("uploads").is_empty());
    let server = shared.instance();
    let listed = rt().block_on(images(&client(), &server.url, &token));
    assert_eq!(listed.len(), 5);
    assert!(!listed.iter().any(|i| i["digest"] == rotten.as_str()));
    // Without --database and --blobs there is nowhere to move to: said, nothing done.
    let nowhere = Command::new(SERVER)
        .args(["--data-dir", "/nonexistent", "migrate", "--from"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("--database and --blobs"));
}

#[tokio::test]
async fn health_answers_without_a_token_and_says_when_the_database_is_gone() {
    let shared = Shared::new();
    let server = shared.instance();
    let c = client();
    let health = format!("{}/api/v1/health", server.url);
    let r = c.get(&health).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let name = shared.database.rsplit('/').next().unwrap();
    postgres()
        .sql("postgres", &format!("DROP DATABASE {name} WITH (FORCE)"))
        .unwrap();
    let r = c.get(&health).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], "store_unavailable", "{body}");
}

#[test]
fn bad_backends_are_refused_with_a_clear_message() {
    let bad_db = Command::new(SERVER)
        .args(["--database", "mysql://x/y", "user", "list"])
        .output()
        .unwrap();
    assert_eq!(bad_db.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_db.stderr).contains("postgres://"));
    // A mistyped address is not echoed: it may hold a password.
    let typo = Command::new(SERVER)
        .args([
            "--database",
            "postgresql+asyncpg://u:hunter2@h/db",
            "user",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(typo.status.code(), Some(2));
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(
        said.contains("names no database") && !said.contains("hunter2"),
        "{said}"
    );
    let bad_blobs = Command::new(SERVER)
        .args(["--blobs", "ftp://x", "user", "list"])
        .output()
        .unwrap();
    assert_eq!(bad_blobs.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_blobs.stderr).contains("s3://BUCKET"));
    // Nothing listens there: the server says so and exits.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let blobs = tempfile::tempdir().unwrap();
    let away = Command::new(SERVER)
        .args(["--database", &format!("postgres://u@127.0.0.1:{port}/db")])
        .arg("--blobs")
        .arg(format!("file:{}", blobs.path().display()))
        .args(["user", "list"])
        .output()
        .unwrap();
    assert!(!away.status.success());
    let said = String::from_utf8_lossy(&away.stderr);
    assert!(said.contains("cannot open the server's storage"), "{said}");
    assert!(
        said.contains("database connection") || said.contains("onnect"),
        "{said}"
    );
}

fn photosync(args: &[&str], server: &str, token: &str, state: &Path) -> Output {
    Command::new(CLIENT)
        .args(args)
        .env("PHOTOSYNC_SERVER", server)
        .env("PHOTOSYNC_TOKEN", token)
        .env("PHOTOSYNC_STATE", state)
        .env("PHOTOSYNC_CONFIG", state.with_extension("toml"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A folder of real photos, a picture the decoders cannot read and a video.
fn library(dir: &Path) -> std::path::PathBuf {
    let lib = dir.join("photos");
    std::fs::create_dir_all(lib.join("2024/summer")).unwrap();
    for n in ["aqua.jpg", "dune.jpg", "storm.jpg"] {
        std::fs::copy(photos_dir().join(n), lib.join(n)).unwrap();
    }
    std::fs::copy(
        photos_dir().join("garden.jpg"),
        lib.join("2024/summer/garden.jpg"),
    )
    .unwrap();
    std::fs::write(lib.join("broken.jpg"), b"\xFF\xD8\xFF\xE0 not really").unwrap();
    let mut clip = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    clip.extend(photosync_testkit::noise(40_000, 5));
    std::fs::write(lib.join("clip.mp4"), &clip).unwrap();
    lib
}

#[tokio::test]
async fn an_embedded_install_moves_over_and_two_instances_behind_a_balancer_serve_it() {
    // An embedded install with photos, synced by a client.
    let data = tempfile::tempdir().unwrap();
    let token = photosync_testkit::add_user(Path::new(SERVER), data.path(), "alice");
    let local = tempfile::tempdir().unwrap();
    let lib = library(local.path());
    let lib_s = lib.to_str().unwrap();
    let state = local.path().join("state.db");
    {
        let embedded = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
        let first = photosync(&["sync", lib_s], &embedded.url, &token, &state);
        assert!(stdout(&first).starts_with("uploaded 6,"), "{first:?}");
    }
    let c = client();

    // Moved, twice: the second run finds everything there.
    let shared = Shared::new();
    let data_s = data.path().to_str().unwrap();
    let moved = shared
        .command(&["migrate", "--from", data_s])
        .output()
        .unwrap();
    assert!(moved.status.success(), "{moved:?}");
    assert!(
        stdout(&moved).contains("images: 6 moved"),
        "{}",
        stdout(&moved)
    );
    let again = shared
        .command(&["migrate", "--from", data_s])
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    assert!(
        stdout(&again).contains("0 moved (0 bytes), 6 there already, 0 failed"),
        "{}",
        stdout(&again)
    );

    // Two instances behind a round-robin balancer serve it, with the same token.
    let (a, b) = (shared.instance(), shared.instance());
    let balancer = CountingProxy::balance(
        [&a, &b]
            .iter()
            .map(|s| s.url.trim_start_matches("http://").parse().unwrap())
            .collect(),
    );
    let url = balancer.url();
    let listed = images(&c, &url, &token).await;
    assert_eq!(listed.len(), 6);
    for img in &listed {
        let name = img["name"].as_str().unwrap();
        let folder = img["folder"]
            .as_str()
            .map(|f| format!("{f}/"))
            .unwrap_or_default();
        let original = std::fs::read(lib.join(format!("{folder}{name}"))).unwrap();
        for server in [&a, &b] {
            let got = download(&c, &server.url, &token, img["id"].as_i64().unwrap()).await;
            assert!(got == original, "{name} differs after the move");
        }
    }

    // The client's next sync, with its sync list (kept per server address, so it asks the
    // new one) and with none, uploads nothing.
    let next = photosync(&["sync", lib_s], &url, &token, &state);
    assert!(
        stdout(&next).starts_with("uploaded 0, already synced 0, on the server already 6"),
        "{next:?}"
    );
    let fresh_state = local.path().join("fresh.db");
    let fresh = photosync(&["sync", lib_s], &url, &token, &fresh_state);
    assert!(stdout(&fresh).starts_with("uploaded 0,"), "{fresh:?}");

    // The end-to-end sync through the balancer: new files go up, each once, and a second
    // sync finds them all.
    for n in ["wood.jpg", "coffee.jpg", "rocket.jpg", "moon.jpg"] {
        std::fs::copy(photos_dir().join(n), lib.join(n)).unwrap();
    }
    std::fs::write(lib.join("notes.txt"), b"not a photo").unwrap();
    let more = photosync(&["sync", lib_s], &url, &token, &state);
    assert!(more.status.success(), "{more:?}");
    assert!(
        stdout(&more).starts_with("uploaded 4, already synced 6,"),
        "{more:?}"
    );
    assert!(
        stdout(&more).contains("not photos or videos 1, failed 0"),
        "{more:?}"
    );
    let last = photosync(&["sync", lib_s], &url, &token, &state);
    assert!(
        stdout(&last).starts_with("uploaded 0, already synced 10"),
        "{last:?}"
    );
    assert_eq!(images(&c, &url, &token).await.len(), 10);
    assert_eq!(shared.objects("blobs").len(), 10);
}
