//! `photosync sync` as a process against the real server process: summaries, exit status, the
//! config file, and kills of either side in the middle of an upload.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use photosync_testkit::{add_user, photos_dir, CountingProxy, ServerProcess};

const SERVER: &str = env!("CARGO_BIN_EXE_photosync-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_photosync");

fn photosync(args: &[&str], server: &str, token: &str, state: &Path) -> Command {
    let mut c = Command::new(CLIENT);
    c.args(args)
        .env("PHOTOSYNC_SERVER", server)
        .env("PHOTOSYNC_TOKEN", token)
        .env("PHOTOSYNC_STATE", state)
        .env("PHOTOSYNC_CONFIG", state.with_extension("toml"))
        .env("RUST_LOG", "warn");
    c
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A camera-sized JPEG (about 3 MB) made from a real photo, so an upload takes many parts.
fn big_photo(dir: &Path) -> PathBuf {
    let src = photosync_testkit::decode(&std::fs::read(photos_dir().join("wood.jpg")).unwrap());
    let mut img = image::imageops::resize(&src, 2400, 1800, image::imageops::FilterType::Triangle);
    let mut s = 1u32;
    for p in img.pixels_mut() {
        for c in &mut p.0 {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *c = c.saturating_add((s >> 27) as u8).saturating_sub(16);
        }
    }
    let path = dir.join("big.jpg");
    std::fs::write(&path, photosync_testkit::jpeg(&img, 95, false, None)).unwrap();
    path
}

/// `n` files of `size` random bytes (`clip-NN.mp4`, seeds from `seed`) in `dir`; their digests.
fn noise_files(dir: &Path, n: u64, size: usize, seed: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let bytes = photosync_testkit::noise(size, seed + i);
            std::fs::write(dir.join(format!("clip-{i:02}.mp4")), &bytes).unwrap();
            blake3::hash(&bytes).to_hex().to_string()
        })
        .collect()
}

/// The digests of the server's images, sorted.
fn stored_digests(data: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(data.join("photosync.db")).unwrap();
    let mut stored: Vec<String> = db
        .prepare("SELECT digest FROM images")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    stored.sort();
    stored
}

fn upload_sessions(data: &Path) -> usize {
    let db = rusqlite::Connection::open(data.join("photosync.db")).unwrap();
    db.query_row("SELECT COUNT(*) FROM uploads", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize
}

fn stored_image(data: &Path) -> Option<Vec<u8>> {
    let db = rusqlite::Connection::open(data.join("photosync.db")).unwrap();
    let digest: String = db
        .query_row("SELECT digest FROM images", [], |r| r.get(0))
        .ok()?;
    std::fs::read(data.join("blobs").join(&digest[..2]).join(&digest)).ok()
}

#[test]
fn sync_uploads_then_finds_everything_synced() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("photos");
    std::fs::create_dir(&lib).unwrap();
    for n in ["aqua.jpg", "dune.jpg", "storm.jpg"] {
        std::fs::copy(photos_dir().join(n), lib.join(n)).unwrap();
    }
    std::fs::write(lib.join("broken.jpg"), b"\xFF\xD8\xFF\xE0 not really").unwrap();
    // Over the pixel limit, a video the decoders cannot read, and a text file.
    std::fs::write(
        lib.join("panorama.png"),
        photosync_testkit::png_bomb(40_000, 40_000),
    )
    .unwrap();
    let mut clip = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    clip.extend(photosync_testkit::noise(40_000, 5));
    std::fs::write(lib.join("clip.mp4"), &clip).unwrap();
    std::fs::write(lib.join("notes.txt"), b"not a photo").unwrap();
    let state = local.path().join("state.db");
    let lib_s = lib.to_str().unwrap();

    let first = run(&mut photosync(
        &["sync", lib_s],
        &server.url,
        &token,
        &state,
    ));
    assert!(first.status.success(), "{first:?}");
    let out = stdout(&first);
    // Pictures the decoders cannot read, and the video: backed up by their bytes all the same.
    assert!(out.starts_with("uploaded 6, already synced 0"), "{out}");
    assert!(out.contains("not photos or videos 1, failed 0"), "{out}");
    for name in ["broken.jpg", "panorama.png"] {
        assert!(
            out.lines()
                .any(|l| l.contains("backed up, not identified: ") && l.contains(name)),
            "{name}: {out}"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.contains("not a photo or video") && l.ends_with("notes.txt")),
        "{out}"
    );

    let second = run(&mut photosync(
        &["sync", lib_s],
        &server.url,
        &token,
        &state,
    ));
    assert!(
        stdout(&second).starts_with("uploaded 0, already synced 6"),
        "{}",
        stdout(&second)
    );
    let status = run(&mut photosync(&["status"], &server.url, &token, &state));
    assert!(
        stdout(&status).contains("6 files in the sync list"),
        "{}",
        stdout(&status)
    );
    // Every file, when asked: the text file goes up too.
    let all = run(&mut photosync(
        &["sync", "--all-files", lib_s],
        &server.url,
        &token,
        &state,
    ));
    assert!(
        stdout(&all).starts_with("uploaded 1, already synced 6"),
        "{}",
        stdout(&all)
    );

    // A wrong token: said once, before any file, and the exit status says so.
    let bad = run(&mut photosync(
        &["sync", lib_s],
        &server.url,
        "psk_wrong",
        &state,
    ));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("refused the token").count(), 1, "{err}");
}

/// RAW + JPEG pairs, a RAW file without a preview, a burst and a lossless master with its
/// JPEG copy, through the CLI: every shot and every RAW goes up, the worse copy does not.
#[test]
fn raw_files_bursts_and_masters_sync_from_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("photos");
    std::fs::create_dir(&lib).unwrap();
    let read = |n: &str| std::fs::read(photos_dir().join(n)).unwrap();
    let spec = photosync_testkit::DngSpec {
        sensor_scale: 2,
        ..Default::default()
    };
    let write = |n: &str, bytes: &[u8]| std::fs::write(lib.join(n), bytes).unwrap();
    write(
        "IMG_0001.DNG",
        &photosync_testkit::dng(&read("aqua.jpg"), &spec),
    );
    write("IMG_0001.JPG", &read("aqua.jpg"));
    let bare = photosync_testkit::DngSpec {
        no_preview: true,
        ..Default::default()
    };
    write(
        "IMG_0002.DNG",
        &photosync_testkit::dng(&read("dune.jpg"), &bare),
    );
    for (a, b) in photosync_testkit::FRAME_PAIRS.iter().take(2) {
        write(a, &photosync_testkit::frame(a));
        write(b, &photosync_testkit::frame(b));
    }
    let coffee = read("coffee.jpg");
    write(
        "coffee.png",
        &photosync_testkit::make_copy(&coffee, photosync_testkit::Copy::Png),
    );
    write(
        "coffee-q75.jpg",
        &photosync_testkit::make_copy(&coffee, photosync_testkit::Copy::Reencode75),
    );
    let state = local.path().join("state.db");
    let out = run(&mut photosync(
        &["sync", lib.to_str().unwrap()],
        &server.url,
        &token,
        &state,
    ));
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    // 2 RAW, 1 camera JPEG, 4 frames, the PNG master; the q75 copy is on the server by it.
    assert!(text.starts_with("uploaded 8, already synced 0"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("backed up, not identified: ") && l.contains("IMG_0002.DNG")),
        "{text}"
    );
    assert_eq!(stored_digests(data.path()).len(), 8);
}

#[test]
fn login_writes_an_owner_only_config_that_sync_uses() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let state = local.path().join("state.db");
    let config = state.with_extension("toml");
    let login = Command::new(CLIENT)
        .args(["login", "--server", &server.url, "--token", &token])
        .env("PHOTOSYNC_CONFIG", &config)
        .status()
        .unwrap();
    assert!(login.success());
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let photo = photos_dir().join("aqua.jpg");
    let out = Command::new(CLIENT)
        .args(["upload", photo.to_str().unwrap()])
        .env("PHOTOSYNC_CONFIG", &config)
        .env("PHOTOSYNC_STATE", &state)
        .env_remove("PHOTOSYNC_SERVER")
        .env_remove("PHOTOSYNC_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).starts_with("uploaded 1"));
    // Without any configuration, a clear error and status 2.
    let none = Command::new(CLIENT)
        .args(["sync", "."])
        .env("PHOTOSYNC_CONFIG", local.path().join("missing.toml"))
        .env_remove("PHOTOSYNC_SERVER")
        .env_remove("PHOTOSYNC_TOKEN")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no server"));
}

fn spawn_sync(file: &Path, url: &str, token: &str, state: &Path) -> Child {
    photosync(
        &[
            "sync",
            "--bandwidth-limit",
            "400000",
            file.to_str().unwrap(),
        ],
        url,
        token,
        state,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap()
}

fn pending_offset(state: &Path) -> Option<u64> {
    let db = rusqlite::Connection::open(state).ok()?;
    db.query_row("SELECT offset_acked FROM pending", [], |r| {
        r.get::<_, i64>(0)
    })
    .ok()
    .map(|o| o as u64)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_client_resumes_from_the_servers_offset() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let file = big_photo(local.path());
    let state = local.path().join("state.db");

    let mut client = spawn_sync(&file, &server.url, &token, &state);
    wait_for("a part to be acknowledged", || {
        pending_offset(&state).is_some_and(|o| o > 0)
    });
    client.kill().unwrap(); // SIGKILL
    client.wait().unwrap();
    let acked = pending_offset(&state).unwrap();
    assert!(stored_image(data.path()).is_none(), "nothing visible yet");

    let done = spawn_sync(&file, &server.url, &token, &state)
        .wait_with_output()
        .unwrap();
    assert!(done.status.success(), "{}", stdout(&done));
    assert!(stdout(&done).starts_with("uploaded 1"));
    assert!(acked > 0);
    assert_eq!(
        upload_sessions(data.path()),
        1,
        "resumed the same upload, never from zero"
    );
    assert!(stored_image(data.path()).unwrap() == std::fs::read(&file).unwrap());
}

#[test]
fn a_killed_server_is_waited_for_and_the_upload_resumes() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    // A fixed port, so the restarted server is where the client looks.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let extra = ["--listen", listen.as_str(), "--idle-timeout", "1"];
    let start = |extra: &[&str]| {
        let mut c = Command::new(SERVER);
        c.arg("--data-dir")
            .arg(data.path())
            .arg("serve")
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut server = start(&extra);
    let url = format!("http://{listen}");
    wait_for("the server", || {
        std::net::TcpStream::connect(&listen).is_ok()
    });
    let local = tempfile::tempdir().unwrap();
    let file = big_photo(local.path());
    let state = local.path().join("state.db");

    let client = spawn_sync(&file, &url, &token, &state);
    wait_for("a part to be acknowledged", || {
        pending_offset(&state).is_some_and(|o| o > 0)
    });
    server.kill().unwrap();
    server.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let mut server = start(&extra);
    let done = client.wait_with_output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(done.status.success(), "{}", stdout(&done));
    assert!(stdout(&done).starts_with("uploaded 1"), "{}", stdout(&done));
    assert_eq!(upload_sessions(data.path()), 1, "one upload, resumed");
    assert!(stored_image(data.path()).unwrap() == std::fs::read(&file).unwrap());
}

#[test]
fn status_shows_same_picture_matches_and_upload_force_sends_one() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let state = local.path().join("state.db");
    let original = std::fs::read(photos_dir().join("coffee.jpg")).unwrap();
    let full = local.path().join("coffee.jpg");
    std::fs::write(&full, &original).unwrap();
    let small = local.path().join("coffee-small.jpg");
    std::fs::write(
        &small,
        photosync_testkit::make_copy(&original, photosync_testkit::Copy::HalfSize),
    )
    .unwrap();
    let (full_s, small_s) = (full.to_str().unwrap(), small.to_str().unwrap());

    let first = run(&mut photosync(
        &["upload", full_s],
        &server.url,
        &token,
        &state,
    ));
    assert!(
        stdout(&first).starts_with("uploaded 1,"),
        "{}",
        stdout(&first)
    );
    let second = run(&mut photosync(
        &["upload", small_s],
        &server.url,
        &token,
        &state,
    ));
    let out = stdout(&second);
    assert!(second.status.success(), "{out}");
    assert!(
        out.starts_with("uploaded 0, already synced 0, on the server already 1"),
        "{out}"
    );
    assert!(out.contains("same picture as coffee.jpg"), "{out}");

    let status = stdout(&run(&mut photosync(
        &["status"],
        &server.url,
        &token,
        &state,
    )));
    assert!(status.contains("1 files not uploaded because"), "{status}");
    assert!(
        status.contains(&format!("{small_s}: same picture as coffee.jpg")),
        "{status}"
    );
    assert!(status.contains("at least as good"), "{status}");

    let forced = run(&mut photosync(
        &["upload", "--force", small_s],
        &server.url,
        &token,
        &state,
    ));
    assert!(
        stdout(&forced).starts_with("uploaded 1,"),
        "{}",
        stdout(&forced)
    );
    // Uploaded, so not described as held by the server.
    assert!(
        !stdout(&forced).contains("on server"),
        "{}",
        stdout(&forced)
    );
    let status = stdout(&run(&mut photosync(
        &["status"],
        &server.url,
        &token,
        &state,
    )));
    assert!(status.contains("2 files in the sync list"), "{status}");
    assert!(!status.contains("not uploaded because"), "{status}");
}

/// `--bandwidth-limit` bounds the whole process, not each upload: four uploads at once of
/// files that each fit in one (last) part, measured by a counting proxy in front of the
/// server, never carry more than the limit (+ 20 %) over any 5 s window.
#[test]
fn the_bandwidth_limit_bounds_all_uploads_together() {
    const LIMIT: u64 = 200_000;
    const FILES: u64 = 12;
    const SIZE: usize = 250_000;
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let proxy = CountingProxy::for_url(&server.url);
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("files");
    std::fs::create_dir(&lib).unwrap();
    let mut digests = noise_files(&lib, FILES, SIZE, 1000);
    let state = local.path().join("state.db");
    let limit = LIMIT.to_string();

    let start = Instant::now();
    let out = run(photosync(
        &[
            "sync",
            "--bandwidth-limit",
            &limit,
            "--concurrency",
            "4",
            lib.to_str().unwrap(),
        ],
        &proxy.url(),
        &token,
        &state,
    )
    .env("NO_PROXY", "127.0.0.1"));
    let took = start.elapsed();
    let window = Duration::from_secs(5);
    let most = proxy.max_window(window);
    eprintln!(
        "limit {LIMIT} B/s: {} bytes sent in {:.1} s, average {:.0} B/s, at most {most} bytes \
         in a 5 s window ({:.0} B/s, {:.2} × the limit)",
        proxy.total_upstream_bytes(),
        took.as_secs_f64(),
        proxy.average_rate(),
        most as f64 / window.as_secs_f64(),
        most as f64 / window.as_secs_f64() / LIMIT as f64,
    );

    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).starts_with(&format!("uploaded {FILES}, ")),
        "{}",
        stdout(&out)
    );
    let stored = stored_digests(data.path());
    digests.sort();
    assert_eq!(stored, digests, "every file is on the server");

    // 20 % over the limit, and one body chunk: the engine streams a part in 256 KiB chunks,
    // and a shaper that lets a whole chunk through at once may put it on the wire right at a
    // window's edge.
    let allowed = LIMIT * 5 * 6 / 5 + (256 << 10);
    assert!(
        most <= allowed,
        "{most} bytes in a 5 s window, at most {allowed} allowed (limit {LIMIT} B/s)"
    );
}

/// Two machines of one account sync the same folder at the same moment: the server joins the
/// second creation of each file to the first's upload, so the bytes cross the wire about once,
/// not twice, and each file is stored once. Measured at a counting proxy in front of the server.
#[test]
fn two_clients_syncing_one_folder_send_its_bytes_once() {
    const FILES: u64 = 6;
    const SIZE: usize = 300_000;
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let proxy = CountingProxy::for_url(&server.url);
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("files");
    std::fs::create_dir(&lib).unwrap();
    let mut digests = noise_files(&lib, FILES, SIZE, 2000);
    // A limit keeps each upload in flight long enough for the other machine to meet it.
    let client = |state: &str| {
        photosync(
            &["sync", "--bandwidth-limit", "400000", lib.to_str().unwrap()],
            &proxy.url(),
            &token,
            &local.path().join(state),
        )
        .env("NO_PROXY", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (a, b) = (client("a.db"), client("b.db"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{a:?}");
    assert!(b.status.success(), "{b:?}");

    let stored = stored_digests(data.path());
    digests.sort();
    assert_eq!(stored, digests, "every file is on the server, once");

    let folder = FILES * SIZE as u64;
    let sent = proxy.total_upstream_bytes();
    eprintln!(
        "two clients, one folder of {folder} bytes: {sent} bytes reached the server ({:.2} ×)",
        sent as f64 / folder as f64
    );
    // Requests and headers cost something; a second copy of every file would be 2 ×, and
    // parts sent into the other machine's upload (joined but not watched) about 1.4 ×.
    assert!(
        sent < folder * 115 / 100,
        "{sent} bytes sent for a {folder}-byte folder"
    );
}

/// Runs `photosync sync` on `file` at a limit slow enough to be stopped mid-upload, sends
/// `signal` once a part is acknowledged, and returns how the process ended.
#[cfg(unix)]
fn stopped_by(signal: i32, file: &Path, url: &str, token: &str, state: &Path) -> Output {
    let child = photosync(
        &[
            "sync",
            "--bandwidth-limit",
            "150000",
            file.to_str().unwrap(),
        ],
        url,
        token,
        state,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let before = pending_offset(state).unwrap_or(0);
    wait_for("a part", || {
        pending_offset(state).is_some_and(|o| o > before)
    });
    // SAFETY: kill(2) on our own child's pid.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
#[test]
fn ctrl_c_and_sigterm_stop_promptly_say_interrupted_and_the_upload_resumes() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let file = big_photo(local.path());
    let state = local.path().join("state.db");
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let out = stopped_by(signal, &file, &server.url, &token, &state);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(code), "{text}");
        assert!(
            text.starts_with("uploaded 0,"),
            "the summary is printed: {text}"
        );
        assert!(text.contains("failed 0"), "{text}");
        assert!(text.contains("interrupted: 1 files not finished"), "{text}");
    }
    let offset = pending_offset(&state).unwrap();
    assert!(offset > 0);
    let last = run(&mut photosync(
        &["sync", file.to_str().unwrap()],
        &server.url,
        &token,
        &state,
    ));
    assert!(last.status.success(), "{}", stdout(&last));
    assert_eq!(
        stored_image(data.path()).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

#[test]
fn connection_problems_are_said_once_in_plain_words_and_exit_2() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("photos");
    std::fs::create_dir(&lib).unwrap();
    for n in ["aqua.jpg", "dune.jpg", "storm.jpg"] {
        std::fs::copy(photos_dir().join(n), lib.join(n)).unwrap();
    }
    let state = local.path().join("state.db");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let https = server.url.replace("http://", "https://");
    let with_path = format!("{}/photos", server.url);
    let no_scheme = server.url.replace("http://", "");
    for (url, words) in [
        (closed.as_str(), "nothing is listening"),
        (https.as_str(), "does not speak HTTPS"),
        (with_path.as_str(), "without a path"),
        (no_scheme.as_str(), "must start with http://"),
    ] {
        let out = run(&mut photosync(
            &["sync", lib.to_str().unwrap()],
            url,
            &token,
            &state,
        ));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert_eq!(err.matches(words).count(), 1, "{url}: said once: {err}");
        assert!(!err.contains("aqua.jpg"), "{url}: not once per file: {err}");
    }
}

#[test]
fn two_syncs_of_one_folder_on_one_state_file_both_finish() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("photos");
    std::fs::create_dir(&lib).unwrap();
    big_photo(&lib);
    for n in ["aqua.jpg", "dune.jpg", "storm.jpg"] {
        std::fs::copy(photos_dir().join(n), lib.join(n)).unwrap();
    }
    let state = local.path().join("state.db");
    let both: Vec<Child> = (0..2)
        .map(|_| {
            photosync(
                &[
                    "sync",
                    "--bandwidth-limit",
                    "2000000",
                    lib.to_str().unwrap(),
                ],
                &server.url,
                &token,
                &state,
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for child in both {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = rusqlite::Connection::open(data.path().join("photosync.db")).unwrap();
    let images: i64 = db
        .query_row("SELECT COUNT(*) FROM images", [], |r| r.get(0))
        .unwrap();
    assert_eq!(images, 4);
}

#[cfg(unix)]
#[test]
fn watch_started_before_its_server_ends_on_ctrl_c_with_only_standing_failures() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("photos");
    std::fs::create_dir(&lib).unwrap();
    for n in ["aqua.jpg", "dune.jpg"] {
        std::fs::copy(photos_dir().join(n), lib.join(n)).unwrap();
    }
    let state = local.path().join("state.db");
    let watch = photosync(
        &["watch", lib.to_str().unwrap()],
        &format!("http://{listen}"),
        &token,
        &state,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // The first round fails: nothing listens yet.
    wait_for("the first round", || {
        rusqlite::Connection::open(&state)
            .and_then(|db| db.query_row("SELECT COUNT(*) FROM files", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n == 2)
    });
    let mut server = Command::new(SERVER)
        .arg("--data-dir")
        .arg(data.path())
        .args(["serve", "--listen", &listen])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // In the client's sync list, which it writes after the server's answer: the server's
    // images alone may be in before the client has heard back.
    wait_for("both retried and uploaded", || {
        rusqlite::Connection::open(&state)
            .and_then(|db| db.query_row("SELECT COUNT(*) FROM synced", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n == 2)
    });
    // SAFETY: kill(2) on our own child's pid.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(watch.id() as i32, libc::SIGINT);
    }
    let out = watch.wait_with_output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(text.starts_with("uploaded 2,"), "{text}");
    assert!(text.contains("failed 0"), "{text}");
}

/// A stand-in for a server of another protocol: it answers the image list as a Photosync
/// server does, and `GET /api/v1/version` with `version`. Returns its URL.
fn server_speaking(version: serde_json::Value) -> String {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, body) = if first.contains("/api/v1/version") {
                ("200 OK", version.to_string())
            } else if first.contains("/api/v1/images") {
                ("200 OK", r#"{"images":[]}"#.to_owned())
            } else {
                (
                    "404 Not Found",
                    r#"{"code":"not_found","message":"no"}"#.to_owned(),
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn versions_are_printed_and_a_server_of_another_protocol_is_named() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".to_owned(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        });
    let release = env!("CARGO_PKG_VERSION");
    for (bin, name) in [(CLIENT, "photosync"), (SERVER, "photosync-server")] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        assert_eq!(stdout(&out), format!("{name} {release} ({commit})\n"));
    }

    // The server says the same without a token, with the protocols it speaks.
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let info: serde_json::Value = rt.block_on(async {
        let r = reqwest::get(format!("{}/api/v1/version", server.url))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    });
    assert_eq!(info["version"], release);
    assert_eq!(info["commit"], commit.as_str());
    assert_eq!(info["protocol"], photosync_protocol::PROTOCOL);

    // A server too new or too old for this client: said plainly, with which side to upgrade.
    let local = tempfile::tempdir().unwrap();
    let state = local.path().join("state.db");
    for (protocol, upgrade) in [
        (99, "upgrade Photosync on this computer"),
        (0, "upgrade the server"),
    ] {
        let url = server_speaking(serde_json::json!({
            "version": "9.9.9", "commit": "abc", "protocol": protocol, "oldest_protocol": protocol,
        }));
        let out = run(&mut photosync(&["status"], &url, "psk_any", &state));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("photosync-server 9.9.9 (protocol {protocol})"))
                && err.contains(upgrade),
            "{err}"
        );
    }
    // One that speaks ours among others is fine.
    let url = server_speaking(serde_json::json!({
        "version": "1.5.0", "commit": "abc", "protocol": 7, "oldest_protocol": 1,
    }));
    let out = run(&mut photosync(&["status"], &url, "psk_any", &state));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
