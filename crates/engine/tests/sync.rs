//! The engine against the real server on loopback, with real photos.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use photosync_engine::{Engine, Event, OnServer, Options, ServerConfig, Summary};
use photosync_server::AppState;
use photosync_testkit::{make_copy, photos_dir, Copy};

struct TestServer {
    url: String,
    token: String,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn server() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let token = "psk_engine_test".to_owned();
    let state = AppState::embedded_with_user(dir.path(), "me", &token)
        .await
        .unwrap();
    let url = photosync_server::spawn_local(state.clone()).await.unwrap();
    TestServer {
        url,
        token,
        state,
        _dir: dir,
    }
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(photos_dir().join(name)).unwrap()
}

type Log = Arc<Mutex<Vec<Event>>>;

fn engine(s: &TestServer, state_dir: &Path) -> (Engine, Log) {
    engine_with(s, state_dir, |_| {})
}

fn engine_with(s: &TestServer, state_dir: &Path, set: impl FnOnce(&mut Options)) -> (Engine, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let mut options = Options::new(
        ServerConfig {
            url: s.url.clone(),
            token: s.token.clone(),
        },
        state_dir.join("state.db"),
    );
    options.sizer.min = 16 << 10; // small parts, so the test photos take several
    options.sizer.initial = 16 << 10;
    options.sizer.max = 16 << 10;
    set(&mut options);
    let engine = Engine::new(options, Arc::new(move |e| sink.lock().unwrap().push(e))).unwrap();
    (engine, log)
}

fn events_for<'a>(log: &'a [Event], name: &str) -> Vec<&'a Event> {
    log.iter()
        .filter(|e| e.path().file_name().is_some_and(|n| n == name))
        .collect()
}

async fn server_images(s: &TestServer) -> usize {
    s.state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(1000))
        .await
        .unwrap()
        .len()
}

async fn upload_sessions(s: &TestServer) -> usize {
    s.state.store.expired_uploads(i64::MAX).await.unwrap().len()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[tokio::test]
async fn a_library_syncs_once_and_copies_are_recognised() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let library = local.path().join("library");
    std::fs::create_dir(&library).unwrap();
    let names = [
        "aqua.jpg",
        "garden.jpg",
        "wood.jpg",
        "castle-maintenon.jpg",
        "coffee.jpg",
    ];
    for n in names {
        write(&library, n, &photo(n));
    }
    // Not photos: left out, and listed as such.
    write(&library, "notes.txt", b"not a photo, so not backed up");
    write(&library, "LICENSES.md", b"# Licenses\n\nMIT\n");
    write(&library, "text.jpg", b"a text file named like a photo\n");
    write(&library, "empty.jpg", b"");
    // A video the decoders cannot read: backed up by its bytes.
    let mut clip = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    clip.extend(photosync_testkit::noise(50_000, 9));
    write(&library, "clip.mp4", &clip);
    // Images the decoders cannot identify are backed up by their bytes, never skipped.
    let mut corrupt = photo("dune.jpg");
    corrupt.truncate(corrupt.len() / 2);
    write(&library, "corrupt.jpg", &corrupt);
    write(
        &library,
        "panorama.png",
        &photosync_testkit::png_bomb(40_000, 40_000),
    );
    let mut mangled = photo("storm.jpg");
    mangled[20..320].copy_from_slice(&photosync_testkit::noise(300, 3));
    write(&library, "mangled.jpg", &mangled);
    let backed_up = names.len() + 4;

    let (engine, log) = engine(&s, local.path());
    let summary = engine.sync(std::slice::from_ref(&library)).await;
    assert_eq!(summary.uploaded, backed_up, "{summary:#?}");
    let mut not_media: Vec<_> = summary
        .not_media
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    not_media.sort();
    assert_eq!(not_media, ["LICENSES.md", "notes.txt", "text.jpg"]);
    assert!(
        log.lock().unwrap().iter().any(|e| matches!(e,
            Event::Skipped { path, reason, problem: false }
                if path.ends_with("notes.txt") && reason == "not a photo or video")),
        "the event says why a file is left out"
    );
    assert_eq!(summary.skipped.len(), 1, "{summary:#?}");
    assert!(summary.skipped[0].1.contains("empty"));
    assert!(summary.failed.is_empty(), "{summary:#?}");
    let mut unidentified: Vec<(String, String)> = summary
        .unidentified
        .iter()
        .map(|(p, r)| (p.file_name().unwrap().to_string_lossy().into(), r.clone()))
        .collect();
    unidentified.sort();
    let names_of: Vec<&str> = unidentified.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names_of,
        ["corrupt.jpg", "mangled.jpg", "panorama.png"],
        "{unidentified:?}"
    );
    assert!(unidentified[0].1.contains("truncated"), "{unidentified:?}");
    assert!(
        log.lock().unwrap().iter().any(
            |e| matches!(e, Event::Unidentified { path, .. } if path.ends_with("panorama.png"))
        ),
        "the event names the file"
    );
    assert_eq!(server_images(&s).await, backed_up);
    {
        let log = log.lock().unwrap();
        let parts = events_for(&log, "garden.jpg")
            .iter()
            .filter(|e| matches!(e, Event::Uploading { .. }))
            .count();
        assert!(parts > 1, "uploaded in several parts ({parts})");
    }
    // The server holds byte-identical files.
    for img in s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(100))
        .await
        .unwrap()
    {
        let (_, mut r) = s.state.blobs.open(&img.digest, 0).await.unwrap();
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut got)
            .await
            .unwrap();
        let local = std::fs::read(library.join(&img.name)).unwrap();
        assert!(got == local, "{} differs", img.name);
    }

    // Again: nothing to upload, and no upload request at all.
    let sessions = upload_sessions(&s).await;
    log.lock().unwrap().clear();
    let again = engine.sync(std::slice::from_ref(&library)).await;
    assert_eq!(again.uploaded, 0);
    assert_eq!(again.already_synced, backed_up);
    assert_eq!(
        upload_sessions(&s).await,
        sessions,
        "no new upload was started"
    );
    assert!(
        !log.lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Identifying { .. })),
        "unchanged files are not read again"
    );

    // Renamed, re-encoded and re-tagged copies in another folder: nothing new is uploaded.
    let copies = local.path().join("copies");
    std::fs::create_dir(&copies).unwrap();
    write(&copies, "renamed.jpg", &photo("aqua.jpg"));
    write(
        &copies,
        "reencoded.jpg",
        &make_copy(&photo("garden.jpg"), Copy::Reencode75),
    );
    write(
        &copies,
        "retagged.jpg",
        &make_copy(&photo("wood.jpg"), Copy::Tagged),
    );
    write(
        &copies,
        "smaller.jpg",
        &make_copy(&photo("coffee.jpg"), Copy::HalfSize),
    );
    log.lock().unwrap().clear();
    let copies_summary: Summary = engine.sync(std::slice::from_ref(&copies)).await;
    assert_eq!(copies_summary.uploaded, 0, "{copies_summary:#?}");
    // The renamed copy is answered by the local sync list, the others by the server.
    assert_eq!(copies_summary.already_synced, 1);
    assert_eq!(copies_summary.on_server, 3);
    let log = log.lock().unwrap().clone();
    let why = |name: &str| {
        events_for(&log, name)
            .into_iter()
            .find_map(|e| match e {
                Event::OnServer { how, .. } => Some(how.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no reason given for {name}"))
    };
    assert!(events_for(&log, "renamed.jpg")
        .iter()
        .any(|e| matches!(e, Event::AlreadySynced { .. })));
    assert!(
        matches!(why("reencoded.jpg"), OnServer::SamePicture { ref name, .. } if name == "garden.jpg")
    );
    assert!(
        matches!(why("retagged.jpg"), OnServer::SamePicture { ref name, .. } if name == "wood.jpg")
    );
    assert!(
        matches!(why("smaller.jpg"), OnServer::SamePicture { ref name, .. } if name == "coffee.jpg")
    );
    assert_eq!(server_images(&s).await, backed_up);

    // Asked to back up every file, the same library sends the three text files too.
    let (all, _) = engine_with(&s, local.path(), |o| o.all_files = true);
    let summary = all.sync(std::slice::from_ref(&library)).await;
    assert_eq!(summary.uploaded, 3, "{summary:#?}");
    assert!(summary.not_media.is_empty());
    assert_eq!(summary.already_synced, backed_up);
    assert_eq!(server_images(&s).await, backed_up + 3);
}

#[tokio::test]
async fn different_shots_are_all_uploaded_and_a_better_copy_replaces_nothing() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let first = local.path().join("first");
    std::fs::create_dir(&first).unwrap();
    write(
        &first,
        "bee-small.jpg",
        &make_copy(&photo("european-honey-bee.jpg"), Copy::HalfSize),
    );
    let (engine, _) = engine(&s, local.path());
    assert_eq!(engine.sync(&[first]).await.uploaded, 1);

    let second = local.path().join("second");
    std::fs::create_dir(&second).unwrap();
    for n in [
        "burst-pan-0.jpg",
        "burst-pan-1.jpg",
        "motorcycle-left.jpg",
        "motorcycle-right.jpg",
    ] {
        write(&second, n, &photo(n));
    }
    // The full-size original has more pixels than the server's copy: it is uploaded too.
    write(&second, "bee.jpg", &photo("european-honey-bee.jpg"));
    let summary = engine.sync(&[second]).await;
    assert_eq!(summary.uploaded, 5, "{summary:#?}");
    assert_eq!(server_images(&s).await, 6);
}

#[tokio::test]
async fn an_unreachable_server_fails_each_file_with_a_reason() {
    let local = tempfile::tempdir().unwrap();
    write(local.path(), "a.jpg", &photo("aqua.jpg"));
    let log: Log = Arc::default();
    let sink = log.clone();
    let options = Options::new(
        ServerConfig {
            url: "http://127.0.0.1:9".into(), // discard port: nothing listens
            token: "psk_x".into(),
        },
        local.path().join("state.db"),
    );
    let engine = Engine::new(options, Arc::new(move |e| sink.lock().unwrap().push(e))).unwrap();
    let summary = engine.sync(&[local.path().join("a.jpg")]).await;
    assert_eq!(summary.failed.len(), 1);
    assert!(
        summary.failed[0].1.contains("cannot ask the server"),
        "{summary:?}"
    );
    assert_eq!(engine.state().synced_count(&engine_key(&local)).unwrap(), 0);
}

fn engine_key(_: &tempfile::TempDir) -> String {
    ServerConfig {
        url: "http://127.0.0.1:9".into(),
        token: "psk_x".into(),
    }
    .key()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_uploads_a_slowly_written_photo_once_and_never_deletes() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let folder = local.path().join("watched");
    std::fs::create_dir(&folder).unwrap();
    let (engine, log) = engine(&s, local.path());
    let engine = Arc::new(engine);
    let rounds = Arc::new(Mutex::new(Vec::new()));
    let task = {
        let (engine, folder, rounds) = (engine.clone(), folder.clone(), rounds.clone());
        tokio::spawn(async move {
            let options = photosync_engine::WatchOptions {
                settle: std::time::Duration::from_millis(800),
                tick: std::time::Duration::from_millis(200),
                rescan_interval: std::time::Duration::from_secs(3600),
                ..Default::default()
            };
            engine
                .watch(&[folder], options, move |summary| {
                    rounds.lock().unwrap().push(summary)
                })
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // Written in pieces over about three seconds, as a slow copy would.
    let bytes = photo("panther-chameleon-female.jpg");
    let path = folder.join("slow.jpg");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        for piece in bytes.chunks(bytes.len() / 6 + 1) {
            f.write_all(piece).unwrap();
            f.flush().unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server_images(&s).await == 0 {
        assert!(std::time::Instant::now() < deadline, "never uploaded");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let images = s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(10))
        .await
        .unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0].bytes as usize,
        bytes.len(),
        "uploaded complete, not half-written"
    );
    assert_eq!(upload_sessions(&s).await, 1, "uploaded once");
    {
        let log = log.lock().unwrap();
        assert!(
            !log.iter()
                .any(|e| matches!(e, Event::Skipped { .. } | Event::Failed { .. })),
            "{log:#?}"
        );
    }

    // Deleting the local file deletes nothing on the server.
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(server_images(&s).await, 1);

    engine.control().cancel();
    task.await.unwrap().unwrap();
    assert!(!rounds.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_recheck_uploads_what_the_server_lost() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    write(&lib, "a.jpg", &photo("aqua.jpg"));
    write(&lib, "b.jpg", &photo("dune.jpg"));
    let (engine, _) = engine(&s, local.path());
    assert_eq!(engine.sync(std::slice::from_ref(&lib)).await.uploaded, 2);

    // The server loses one image (a restore from an old backup, say).
    let db = rusqlite::Connection::open(s._dir.path().join("photosync.db")).unwrap();
    db.execute("DELETE FROM images WHERE name = 'b.jpg'", [])
        .unwrap();
    assert_eq!(server_images(&s).await, 1);

    // The sync list still claims it; a plain sync trusts the list.
    assert_eq!(
        engine.sync(std::slice::from_ref(&lib)).await.already_synced,
        2
    );
    let rechecked = engine.recheck(std::slice::from_ref(&lib)).await;
    assert_eq!(rechecked.uploaded, 1, "{rechecked:#?}");
    assert_eq!(rechecked.on_server, 1);
    assert_eq!(server_images(&s).await, 2);
}

#[tokio::test]
async fn copies_within_one_run_upload_only_the_largest() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    write(
        &lib,
        "small.jpg",
        &make_copy(&photo("ladybird.jpg"), Copy::HalfSize),
    );
    write(&lib, "phone.heic", &photo("ladybird.heic"));
    write(&lib, "full.jpg", &photo("ladybird.jpg"));
    let (engine, log) = engine(&s, local.path());
    let summary = engine.sync(std::slice::from_ref(&lib)).await;
    assert_eq!(summary.uploaded, 1, "{summary:#?}");
    assert_eq!(summary.on_server, 2);
    let images = s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(10))
        .await
        .unwrap();
    assert_eq!(images[0].width, Some(800), "the full-size copy went up");
    let log = log.lock().unwrap();
    let small = events_for(&log, "small.jpg");
    assert!(small.iter().any(|e| matches!(
        e,
        Event::OnServer {
            how: OnServer::SamePicture { .. },
            ..
        }
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_uploads_and_resume_finishes_them() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    write(&lib, "big.jpg", &photo("panther-chameleon-female.jpg"));
    let (engine, log) = engine(&s, local.path());
    let engine = Arc::new(engine);
    let control = engine.control();
    control.pause();
    let task = {
        let (engine, lib) = (engine.clone(), lib.clone());
        tokio::spawn(async move { engine.sync(&[lib]).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let uploading = |log: &Log| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Uploading { .. }))
            .count()
    };
    assert_eq!(uploading(&log), 0, "paused: no part sent");
    assert_eq!(server_images(&s).await, 0);
    control.resume();
    let summary = task.await.unwrap();
    assert_eq!(summary.uploaded, 1);
    assert!(uploading(&log) > 1);

    // Cancel: the upload stops, is reported as interrupted (not failed), and the sync list
    // does not claim the file.
    write(&lib, "other.jpg", &photo("citrus-fruits.jpg"));
    control.pause();
    let task = {
        let (engine, lib) = (engine.clone(), lib.clone());
        tokio::spawn(async move { engine.sync(&[lib]).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    control.cancel();
    let summary = task.await.unwrap();
    assert_eq!(summary.uploaded, 0);
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.interrupted.len(), 1);
    assert_eq!(server_images(&s).await, 1);
}

/// Pause stops at once: no part is acknowledged after it (the one in flight is abandoned, as
/// after a cut), no new upload is created on the server, and resume finishes every file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_mid_upload_stops_at_once_and_creates_no_upload() {
    use std::time::Duration;
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let names = [
        "coffee.jpg",
        "garden.jpg",
        "wood.jpg",
        "storm.jpg",
        "grass.jpg",
    ];
    for n in names {
        write(&lib, n, &photo(n));
    }
    // 64 kB/s for all: the photos take seconds, so the pause lands mid-part, with files
    // still waiting for an upload slot (3 at once).
    let (engine, log) = limited_engine(&s, local.path(), Some(64_000), 8);
    let engine = Arc::new(engine);
    let task = {
        let (engine, lib) = (engine.clone(), lib.clone());
        tokio::spawn(async move { engine.sync(&[lib]).await })
    };
    let acks = |log: &Log| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Uploading { .. }))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acks(&log) == 0 {
        assert!(std::time::Instant::now() < deadline, "no part acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.control().pause();
    // A response already on its way as the pause came may still land; after that, nothing.
    // (A part not abandoned takes about 0.75 s here, so it would land after this.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_pause = acks(&log);
    let offsets = || async {
        let mut all = Vec::new();
        for id in s.state.store.upload_ids().await.unwrap() {
            let u = s.state.store.upload(1, &id).await.unwrap().unwrap();
            all.push((id, u.offset));
        }
        all.sort();
        all
    };
    let held = offsets().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(offsets().await, held, "nothing sent while paused");
    assert_eq!(acks(&log), at_pause, "no part acknowledged after the pause");
    assert!(
        held.len() <= 3,
        "no upload created after the pause: {held:?}"
    );
    assert_eq!(server_images(&s).await, 0);

    engine.control().resume();
    let summary = task.await.unwrap();
    assert_eq!(summary.uploaded, names.len(), "{summary:#?}");
    assert!(summary.failed.is_empty());
    assert_eq!(server_images(&s).await, names.len());
}

#[tokio::test]
async fn a_same_picture_skip_is_recorded_with_its_reason_and_can_be_forced() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let first = local.path().join("first");
    let second = local.path().join("second");
    std::fs::create_dir(&first).unwrap();
    std::fs::create_dir(&second).unwrap();
    write(&first, "bee.jpg", &photo("european-honey-bee.jpg"));
    let small = write(
        &second,
        "bee-small.jpg",
        &make_copy(&photo("european-honey-bee.jpg"), Copy::HalfSize),
    );
    let (engine, log) = engine(&s, local.path());
    assert_eq!(engine.sync(&[first]).await.uploaded, 1);
    let summary = engine.sync(std::slice::from_ref(&second)).await;
    assert_eq!(
        (summary.uploaded, summary.on_server),
        (0, 1),
        "{summary:#?}"
    );

    // The match survives the run: which server image, and why.
    let key = ServerConfig {
        url: s.url.clone(),
        token: s.token.clone(),
    }
    .key();
    let matches = engine.state().matches(&key).unwrap();
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].path, small);
    assert_eq!(matches[0].remote_name, "bee.jpg");
    assert!(matches[0].remote_pixels > matches[0].local_pixels);
    let reason = OnServer::from(&matches[0]).reason();
    assert!(
        reason.contains("same picture as bee.jpg") && reason.contains("at least as good"),
        "{reason}"
    );
    // The event carried the same match.
    let carried = events_for(&log.lock().unwrap(), "bee-small.jpg")
        .iter()
        .any(|e| matches!(e, Event::OnServer { how, .. } if *how == OnServer::from(&matches[0])));
    assert!(carried);

    // Another plain sync still leaves it out.
    assert_eq!(engine.sync(std::slice::from_ref(&second)).await.uploaded, 0);
    assert_eq!(server_images(&s).await, 1);

    // Forced: it goes up, the match is cleared, and the next sync finds it synced.
    engine.force_upload(std::slice::from_ref(&small)).unwrap();
    let summary = engine.sync(std::slice::from_ref(&small)).await;
    assert_eq!(summary.uploaded, 1, "{summary:#?}");
    assert_eq!(server_images(&s).await, 2);
    assert!(engine.state().matches(&key).unwrap().is_empty());
    assert_eq!(engine.sync(&[second]).await.already_synced, 1);
}

/// A server away for a moment turns no backed-up file into a failure: a file left out for a
/// same-picture match stays on the server as last checked; a file never backed up fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_away_does_not_fail_files_it_was_found_to_hold() {
    let s = server().await;
    // The same account on a port that can go away.
    let mut stoppable = photosync_server::LocalServer::start(s.state.clone())
        .await
        .unwrap();
    let here = TestServer {
        url: stoppable.url(),
        token: s.token.clone(),
        state: s.state.clone(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let local = tempfile::tempdir().unwrap();
    let folder = local.path().join("lib");
    std::fs::create_dir(&folder).unwrap();
    write(&folder, "bee.jpg", &photo("european-honey-bee.jpg"));
    let (engine, _log) = engine(&here, local.path());
    assert_eq!(engine.sync(std::slice::from_ref(&folder)).await.uploaded, 1);
    write(
        &folder,
        "bee-small.jpg",
        &make_copy(&photo("european-honey-bee.jpg"), Copy::HalfSize),
    );
    let summary = engine.sync(std::slice::from_ref(&folder)).await;
    assert_eq!((summary.on_server, summary.already_synced), (1, 1));

    stoppable.go_away().await;
    write(&folder, "new.jpg", &photo("coffee.jpg"));
    let (engine, log) = engine_with(&here, local.path(), |o| o.max_attempts = 1);
    let summary = engine.sync(std::slice::from_ref(&folder)).await;
    let failed: Vec<_> = summary.failed.iter().map(|(p, _)| file_name(p)).collect();
    assert_eq!(failed, ["new.jpg"], "{summary:#?}");
    assert_eq!((summary.on_server, summary.already_synced), (1, 1));
    let log = log.lock().unwrap();
    assert!(
        events_for(&log, "bee-small.jpg").iter().any(|e| matches!(
            e,
            Event::OnServer {
                how: OnServer::SamePicture { .. },
                ..
            }
        )),
        "the copy is still shown on the server"
    );
    assert!(!events_for(&log, "bee-small.jpg")
        .iter()
        .any(|e| matches!(e, Event::Failed { .. })));
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_retries_files_that_failed_while_the_server_was_away() {
    use std::time::Duration;
    let s = server().await;
    // A second server on a port of our own, which we can stop and start again.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(photosync_server::serve(
        listener,
        s.state.clone(),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(1),
    ));
    let away = TestServer {
        url: format!("http://{addr}"),
        token: s.token.clone(),
        state: s.state.clone(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let local = tempfile::tempdir().unwrap();
    let folder = local.path().join("watched");
    std::fs::create_dir(&folder).unwrap();
    let (engine, log) = engine(&away, local.path());
    let engine = Arc::new(engine);
    let task = {
        let (engine, folder) = (engine.clone(), folder.clone());
        tokio::spawn(async move {
            let options = photosync_engine::WatchOptions {
                settle: Duration::from_millis(300),
                tick: Duration::from_millis(100),
                retry: Duration::from_millis(500),
                max_retry: Duration::from_secs(1),
                ..Default::default()
            };
            engine.watch(&[folder], options, |_| {}).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(());
    first.await.unwrap().unwrap();

    write(&folder, "while-away.jpg", &photo("coffee.jpg"));
    // It fails with a reason and a time for the next attempt...
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let retry_told = log.lock().unwrap().iter().any(|e| {
            matches!(e, Event::Failed { path, next_retry: Some(_), .. }
                if path.ends_with("while-away.jpg"))
        });
        if retry_told {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no retry scheduled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server_images(&s).await, 0);

    // ...and once the server is back on the same address, it goes up with no new file event.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(photosync_server::serve(
        listener,
        s.state.clone(),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server_images(&s).await == 0 {
        assert!(std::time::Instant::now() < deadline, "never retried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The server records the image before its answer reaches the engine.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Uploaded { path, .. } if path.ends_with("while-away.jpg")))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.control().cancel();
    // The watch's summary keeps no failure that a later try fixed.
    let total = task.await.unwrap().unwrap();
    assert!(total.failed.is_empty(), "{:?}", total.failed);
    assert_eq!(total.uploaded, 1);
}

#[tokio::test]
async fn a_connection_check_tells_unreachable_bad_token_and_not_photosync_apart() {
    use photosync_engine::{Client, Connection};
    let s = server().await;
    let check = |url: &str, token: &str| {
        let client = Client::new(ServerConfig {
            url: url.to_owned(),
            token: token.to_owned(),
        })
        .unwrap();
        async move { client.check().await }
    };
    assert_eq!(check(&s.url, &s.token).await, Connection::Ok);
    assert_eq!(check(&s.url, "psk_wrong").await, Connection::BadToken);
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    assert!(matches!(
        check(&url, &s.token).await,
        Connection::Unreachable(_)
    ));
    // Some other web server.
    let url = answering("200 OK", "<html>It works!</html>").await;
    let found = check(&url, &s.token).await;
    assert!(matches!(found, Connection::NotPhotosync(_)), "{found:?}");
    assert!(found.to_string().contains("not a Photosync server"));
    // A proxy whose server is away answers 502: the server is unreachable, not "not ours".
    let url = answering("502 Bad Gateway", "<html>502 Bad Gateway</html>").await;
    let found = check(&url, &s.token).await;
    assert!(matches!(found, Connection::Unreachable(_)), "{found:?}");
}

/// A web server on loopback that answers every request with `status` and an HTML `body`.
async fn answering(status: &'static str, body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut c, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(format!("{head}{body}").as_bytes()).await;
        }
    });
    url
}

/// An engine for `s` with the given bandwidth limit and attempts per part.
fn limited_engine(
    s: &TestServer,
    state_dir: &Path,
    limit: Option<u64>,
    attempts: u32,
) -> (Engine, Log) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let mut options = Options::new(
        ServerConfig {
            url: s.url.clone(),
            token: s.token.clone(),
        },
        state_dir.join("state.db"),
    );
    options.sizer.min = 16 << 10;
    options.sizer.initial = 16 << 10;
    options.sizer.max = 16 << 10;
    options.bandwidth.set_rate(limit);
    options.max_attempts = attempts;
    let engine = Engine::new(options, Arc::new(move |e| sink.lock().unwrap().push(e))).unwrap();
    (engine, log)
}

fn upload_id_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_mid_part_and_a_lease_held_elsewhere_is_waited_out() {
    use std::time::Duration;
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let bytes = photo("panther-chameleon-female.jpg");
    write(&lib, "big.jpg", &bytes);
    // One part of 1 MiB at 40 kB/s takes about 25 s: the cancel lands inside it.
    let (engine, log) = {
        let log: Log = Arc::default();
        let sink = log.clone();
        let mut options = Options::new(
            ServerConfig {
                url: s.url.clone(),
                token: s.token.clone(),
            },
            local.path().join("state.db"),
        );
        options.sizer.min = 1 << 20;
        options.sizer.initial = 1 << 20;
        options.bandwidth.set_rate(Some(40_000));
        let engine = Engine::new(options, Arc::new(move |e| sink.lock().unwrap().push(e))).unwrap();
        (Arc::new(engine), log)
    };
    let task = {
        let (engine, lib) = (engine.clone(), lib.clone());
        tokio::spawn(async move { engine.sync(&[lib]).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    engine.control().cancel();
    // Far less than the part's time at the limit: the part in flight was abandoned.
    let summary = tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("a cancel stops promptly")
        .unwrap();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.interrupted.len(), 1);
    assert_eq!(summary.uploaded, 0);
    assert!(!log
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Uploading { .. })));
    assert_eq!(server_images(&s).await, 0);
    drop(engine);

    // Another writer holds the upload's lease (a crashed server's leftover, another process):
    // with one attempt allowed, the client still waits the lease out and finishes the same
    // upload.
    let (engine, _) = limited_engine(&s, local.path(), None, 1);
    let key = ServerConfig {
        url: s.url.clone(),
        token: s.token.clone(),
    }
    .key();
    let digest = photosync_identify::Digest::of(&bytes);
    let pending = engine
        .state()
        .pending(&key, &digest)
        .unwrap()
        .expect("pending upload kept");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let id = upload_id_of(&pending.url);
    assert!(s
        .state
        .store
        .lock_upload(&id, "someone-else", now_ms, now_ms + 3_000)
        .await
        .unwrap());
    let summary = engine.sync(&[lib]).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.uploaded, 1);
    assert_eq!(upload_sessions(&s).await, 1, "the same upload, resumed");
    let images = s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(10))
        .await
        .unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].digest, digest.to_string());
}

#[tokio::test]
async fn a_change_that_keeps_size_and_mtime_is_read_again_and_uploaded() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    // A video or any file the decoders do not know: backed up by its bytes.
    let mut bytes = photosync_testkit::noise(300_000, 7);
    let path = write(&lib, "clip.mov", &bytes);
    // Identified while the server is away: the file table holds its first digest.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let away = TestServer {
        url: format!("http://{}", closed.local_addr().unwrap()),
        token: s.token.clone(),
        state: s.state.clone(),
        _dir: tempfile::tempdir().unwrap(),
    };
    drop(closed);
    let (first, _) = engine(&away, local.path());
    assert_eq!(first.sync(std::slice::from_ref(&lib)).await.failed.len(), 1);
    drop(first);

    // An edit in place that keeps size and mtime (exiftool -P, touch -r).
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    let (engine, _) = engine(&s, local.path());
    let summary = engine.sync(std::slice::from_ref(&lib)).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.uploaded, 1, "{summary:?}");
    let images = s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(10))
        .await
        .unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].digest, blake3::hash(&bytes).to_hex().to_string());
    // And the next run knows the file by its new bytes.
    let again = engine.sync(&[lib]).await;
    assert_eq!((again.already_synced, again.uploaded), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_never_makes_images_of_a_file_still_growing_and_reattaches_a_folder() {
    use std::io::Write;
    use std::time::Duration;
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let folder = local.path().join("card");
    std::fs::create_dir(&folder).unwrap();
    let (engine, log) = engine(&s, local.path());
    let engine = Arc::new(engine);
    let task = {
        let (engine, folder) = (engine.clone(), folder.clone());
        tokio::spawn(async move {
            let options = photosync_engine::WatchOptions {
                settle: Duration::from_millis(1000),
                tick: Duration::from_millis(200),
                ..Default::default()
            };
            engine.watch(&[folder], options, |_| {}).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A copy that pauses longer than the settle time between pieces: each piece alone would
    // look finished.
    let bytes = photo("panther-chameleon-female.jpg");
    let path = folder.join("growing.jpg");
    let mut f = std::fs::File::create(&path).unwrap();
    for piece in bytes.chunks(bytes.len() / 4 + 1) {
        f.write_all(piece).unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(1600)).await;
    }
    drop(f);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while server_images(&s).await == 0 {
        assert!(std::time::Instant::now() < deadline, "never uploaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let images = s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(10))
        .await
        .unwrap();
    assert_eq!(images.len(), 1, "one image, no truncated ones: {images:?}");
    assert_eq!(images[0].digest, blake3::hash(&bytes).to_hex().to_string());
    assert_eq!(
        upload_sessions(&s).await,
        1,
        "abandoned uploads were terminated"
    );

    // The folder goes away (a card pulled) and comes back with a new photo.
    std::fs::remove_dir_all(&folder).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Folder { present: false, .. }))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the missing folder was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::create_dir(&folder).unwrap();
    write(&folder, "after.jpg", &photo("coffee.jpg"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server_images(&s).await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the folder was not watched again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Deleted and made anew at once, faster than the watch can see it gone.
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::create_dir(&folder).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    write(&folder, "quick.jpg", &photo("citrus-fruits.jpg"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server_images(&s).await < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new folder was not watched"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.control().cancel();
    let total = task.await.unwrap().unwrap();
    assert!(total.failed.is_empty(), "{:?}", total.failed);
    let uploaded: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Uploaded { .. }))
        .cloned()
        .collect();
    assert_eq!(total.uploaded, 3, "{uploaded:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn a_broken_link_is_reported_not_failed_and_renamed_files_leave_the_file_table() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let old = write(&lib, "a.jpg", &photo("coffee.jpg"));
    std::os::unix::fs::symlink(local.path().join("nowhere.jpg"), lib.join("dangling.jpg")).unwrap();
    let (engine, _) = engine(&s, local.path());
    let summary = engine.sync(std::slice::from_ref(&lib)).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.warnings.len(), 1);
    assert_eq!(summary.uploaded, 1);

    let digest = photosync_identify::Digest::of(&photo("coffee.jpg"));
    let new = lib.join("b.jpg");
    std::fs::rename(&old, &new).unwrap();
    let summary = engine.sync(std::slice::from_ref(&lib)).await;
    assert_eq!(summary.already_synced, 1);
    assert_eq!(engine.state().paths_of(&digest).unwrap(), vec![new]);
}

#[cfg(unix)]
#[tokio::test]
async fn a_long_name_that_is_not_utf8_is_uploaded_with_its_exact_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    // 124 bytes that are not UTF-8 (lossy conversion would triple them past 255), and a
    // video's extension.
    let mut raw: Vec<u8> = (0x80..0xFC).collect();
    raw.extend_from_slice(b".mov");
    let name = std::ffi::OsStr::from_bytes(&raw);
    std::fs::write(lib.join(name), photosync_testkit::noise(10_000, 3)).unwrap();
    // And a legal name with a line break in it.
    std::fs::write(
        lib.join("two\nlines.mov"),
        photosync_testkit::noise(10_000, 4),
    )
    .unwrap();
    let (engine, _) = engine(&s, local.path());
    let summary = engine.sync(&[lib]).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.uploaded, 2);
    let images = s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(10))
        .await
        .unwrap();
    let mut kept: Vec<Vec<u8>> = images
        .iter()
        .map(|i| {
            i.name_bytes.as_deref().map_or_else(
                || i.name.clone().into_bytes(),
                |b| photosync_protocol::percent_decode_name(b).unwrap(),
            )
        })
        .collect();
    kept.sort();
    let mut want = vec![raw, b"two\nlines.mov".to_vec()];
    want.sort();
    assert_eq!(kept, want);
}

#[tokio::test]
async fn a_full_server_is_named_and_the_attempts_counted_right() {
    let dir = tempfile::tempdir().unwrap();
    let token = "psk_full".to_owned();
    let mut state = AppState::embedded_with_user(dir.path(), "me", &token)
        .await
        .unwrap();
    // More free space wanted than any disk has: every creation is refused with 507.
    let mut config = (*state.config).clone();
    config.min_free_space = u64::MAX / 2;
    state.config = Arc::new(config);
    let url = photosync_server::spawn_local(state.clone()).await.unwrap();
    let s = TestServer {
        url,
        token,
        state,
        _dir: dir,
    };
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    write(&lib, "a.jpg", &photo("coffee.jpg"));
    let (engine, _) = limited_engine(&s, local.path(), None, 2);
    let summary = engine.sync(&[lib]).await;
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(
        summary.failed[0].1,
        "gave up after 2 attempts: the server is out of space"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_during_its_upload_ends_on_the_server_under_its_new_name() {
    use std::time::Duration;
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let old = write(&lib, "IMG_0001.jpg", &photo("panther-chameleon-female.jpg"));
    let (engine, log) = limited_engine(&s, local.path(), Some(40_000), 8);
    let engine = Arc::new(engine);
    let task = {
        let (engine, lib) = (engine.clone(), lib.clone());
        tokio::spawn(async move { engine.sync(&[lib]).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !log
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Uploading { .. }))
    {
        assert!(std::time::Instant::now() < deadline, "no part acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new = lib.join("chameleon.jpg");
    std::fs::rename(&old, &new).unwrap();
    let summary = task.await.unwrap();
    // Not a failure: the file is not gone, only named anew.
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.warnings.len(), 1);

    engine.bandwidth().set_rate(None);
    let summary = engine.sync(&[lib]).await;
    assert_eq!(summary.uploaded, 1, "{summary:?}");
    let images = s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(10))
        .await
        .unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].name, "chameleon.jpg");
    assert_eq!(
        upload_sessions(&s).await,
        1,
        "the upload was resumed, not sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reads_again_a_file_whose_bytes_changed_under_the_same_size_and_mtime() {
    use std::time::Duration;
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let mut bytes = photosync_testkit::noise(200_000, 9);
    let path = write(&lib, "clip.mov", &bytes);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let away = TestServer {
        url: format!("http://{}", closed.local_addr().unwrap()),
        token: s.token.clone(),
        state: s.state.clone(),
        _dir: tempfile::tempdir().unwrap(),
    };
    drop(closed);
    let (first, _) = engine(&away, local.path());
    assert_eq!(first.sync(std::slice::from_ref(&lib)).await.failed.len(), 1);
    drop(first);
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    bytes[1000] ^= 0xAA;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    let (engine, _) = engine(&s, local.path());
    let engine = Arc::new(engine);
    let task = {
        let (engine, lib) = (engine.clone(), lib.clone());
        tokio::spawn(async move {
            let options = photosync_engine::WatchOptions {
                settle: Duration::from_millis(300),
                tick: Duration::from_millis(100),
                ..Default::default()
            };
            engine.watch(&[lib], options, |_| {}).await
        })
    };
    let want = blake3::hash(&bytes).to_hex().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let images = s
            .state
            .store
            .list_images(1, &photosync_server::ImageQuery::first(10))
            .await
            .unwrap();
        if let Some(i) = images.first() {
            assert_eq!(images.len(), 1);
            assert_eq!(i.digest, want);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never uploaded its new bytes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.control().cancel();
    let total = task.await.unwrap().unwrap();
    assert!(total.failed.is_empty(), "{:?}", total.failed);
}

/// Another machine of the account started the same file and stopped half-way: the server joins
/// this engine's creation to that upload, the engine watches it, finds it standing still and
/// sends the rest itself, from where the other left off.
#[tokio::test]
async fn a_joined_upload_whose_other_writer_stopped_is_finished_here() {
    use photosync_engine::Client;
    use photosync_protocol::{meta, Metadata};
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let bytes = photosync_testkit::noise(400_000, 31);
    write(&lib, "clip.mov", &bytes);

    let other = Client::new(ServerConfig {
        url: s.url.clone(),
        token: s.token.clone(),
    })
    .unwrap();
    let mut m = Metadata::default();
    m.insert(meta::NAME, "clip.mov");
    m.insert(meta::DIGEST, blake3::hash(&bytes).to_hex().to_string());
    let created = other.create_upload(bytes.len() as u64, &m).await.unwrap();
    assert_eq!(created.joined, None, "the first creation makes the upload");
    let half = 150_000;
    let ack = other
        .send_part(&created.url, 0, bytes[..half].to_vec())
        .await
        .unwrap();
    assert_eq!(ack.offset, half as u64);

    // This machine reaches the server through a proxy that counts what it sends.
    let proxy = photosync_testkit::CountingProxy::for_url(&s.url);
    let through = TestServer {
        url: proxy.url(),
        token: s.token.clone(),
        state: s.state.clone(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let (engine, _) = engine(&through, local.path());
    let summary = engine.sync(std::slice::from_ref(&lib)).await;
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.uploaded, 1);
    assert_eq!(
        upload_sessions(&s).await,
        1,
        "the other machine's upload, finished"
    );
    // Only the half the other machine did not send went up from here (and the requests).
    let sent = proxy.total_upstream_bytes();
    let rest = (bytes.len() - half) as u64;
    assert!(
        sent < rest + 20_000,
        "{sent} bytes sent for the {rest} missing"
    );
    let images = s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(10))
        .await
        .unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].digest, blake3::hash(&bytes).to_hex().to_string());
    // A creation of the stored file now is answered with its image: nothing is sent.
    let again = other.create_upload(bytes.len() as u64, &m).await.unwrap();
    assert_eq!(again.joined, Some(bytes.len() as u64));
    assert_eq!(
        other.offset(&again.url).await.unwrap(),
        (bytes.len() as u64, Some(images[0].id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_start_before_the_library_is_identified() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    for n in ["aqua.jpg", "garden.jpg", "wood.jpg", "coffee.jpg"] {
        write(&lib, n, &photo(n));
    }
    write(&lib, "zz-last.jpg", &photo("castle-maintenon.jpg"));
    // The last file's identification is held until some upload has finished: a pipeline
    // that identifies everything before its first upload never gets there.
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let log: Log = Arc::default();
    let (sink_log, sink_gate) = (log.clone(), gate.clone());
    let sink = Arc::new(move |e: Event| {
        let (uploaded, cv) = &*sink_gate;
        let held = matches!(&e, Event::Identifying { path } if path.ends_with("zz-last.jpg"));
        let upload = matches!(e, Event::Uploaded { .. });
        // Logged before the gate opens, so the log's order is the order things happened.
        sink_log.lock().unwrap().push(e);
        if upload {
            *uploaded.lock().unwrap() = true;
            cv.notify_all();
        }
        if held {
            let guard = uploaded.lock().unwrap();
            let (_guard, waited) = cv
                .wait_timeout_while(guard, std::time::Duration::from_secs(60), |up| !*up)
                .unwrap();
            sink_log.lock().unwrap().push(Event::Failed {
                path: PathBuf::from("gate"),
                reason: format!("timed out: {}", waited.timed_out()),
                next_retry: None,
            });
        }
    });
    let mut options = Options::new(
        ServerConfig {
            url: s.url.clone(),
            token: s.token.clone(),
        },
        local.path().join("state.db"),
    );
    options.identify_threads = 2;
    let engine = Engine::new(options, sink).unwrap();
    let summary = engine.sync(std::slice::from_ref(&lib)).await;
    assert_eq!(summary.uploaded, 5, "{summary:#?}");
    let log = log.lock().unwrap();
    let at = |f: &dyn Fn(&Event) -> bool| log.iter().position(f).unwrap();
    let released = at(&|e| e.path().ends_with("gate"));
    assert!(
        matches!(&log[released], Event::Failed { reason, .. } if reason == "timed out: false"),
        "the last file was identified only after an upload: {:?}",
        log[released]
    );
    let first_uploaded = at(&|e| matches!(e, Event::Uploaded { .. }));
    let last_queued =
        at(&|e| matches!(e, Event::Queued { path, .. } if path.ends_with("zz-last.jpg")));
    assert!(first_uploaded < released && released < last_queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_passes_send_each_file_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let s = server().await;
    // The real server, counting the upload creations it is asked for.
    let creations = Arc::new(AtomicUsize::new(0));
    let counted = creations.clone();
    let app = photosync_server::router(s.state.clone()).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            if req.method() == axum::http::Method::POST && req.uri().path() == "/files/" {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    for i in 0..4u64 {
        write(
            &lib,
            &format!("clip-{i}.mov"),
            &photosync_testkit::noise(150_000, 40 + i),
        );
    }
    let (engine, _) = engine_with(&s, local.path(), |o| {
        o.server.url = url.clone();
        // Slow enough that both passes reach every file while it is being sent.
        o.bandwidth.set_rate(Some(400_000));
    });
    // Watch mode's round and a file dropped on the window, say.
    let (a, b) = tokio::join!(
        engine.sync(std::slice::from_ref(&lib)),
        engine.sync(std::slice::from_ref(&lib))
    );
    assert!(a.failed.is_empty() && b.failed.is_empty(), "{a:#?} {b:#?}");
    assert_eq!(
        a.uploaded + a.already_synced + b.uploaded + b.already_synced,
        8
    );
    assert_eq!(
        a.uploaded + b.uploaded,
        4,
        "each file counted uploaded once"
    );
    assert_eq!(server_images(&s).await, 4);
    assert_eq!(
        creations.load(Ordering::SeqCst),
        4,
        "each file's upload was created once, by one of the passes"
    );
}

/// The digests the server holds, sorted.
async fn server_digests(s: &TestServer) -> Vec<String> {
    let mut d: Vec<String> = s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(1000))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    d.sort();
    d
}

fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Issue 13's real folder: q75 re-encodes beside their q92 originals, found in any order. The
/// best copy of each picture leads; the server keeps every original and none of the
/// re-encodes.
#[tokio::test]
async fn within_a_run_the_best_copy_of_each_picture_goes_up() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let mut originals = Vec::new();
    for (i, name) in [
        "aqua.jpg",
        "dune.jpg",
        "storm.jpg",
        "coffee.jpg",
        "chelsea.jpg",
        "rocket.jpg",
    ]
    .iter()
    .enumerate()
    {
        let pixels = photosync_testkit::decode(&photo(name));
        let original = photosync_testkit::jpeg(&pixels, 92, false, None);
        let reencoded = photosync_testkit::jpeg(&pixels, 75, false, None);
        // Names that put the re-encode first for some and last for others.
        let (a, b) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
        write(&lib, &format!("{a}-{name}"), &reencoded);
        write(&lib, &format!("{b}-{name}"), &original);
        originals.push(digest(&original));
    }
    originals.sort();
    let (engine, _log) = engine(&s, local.path());
    let summary = engine.sync(std::slice::from_ref(&lib)).await;
    assert_eq!(
        (summary.uploaded, summary.on_server),
        (6, 6),
        "{summary:#?}"
    );
    assert_eq!(server_digests(&s).await, originals);
}

/// A worse copy on the server does not stand in for a better one found later: a PNG master
/// after its JPEG, the q92 original after a q75 re-encode, a larger copy after a smaller. Each
/// goes up, naming the rule; a worse copy after them stays local.
#[tokio::test]
async fn a_better_copy_found_later_is_uploaded_and_says_why() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let (first, second, third) = (
        local.path().join("first"),
        local.path().join("second"),
        local.path().join("third"),
    );
    for d in [&first, &second, &third] {
        std::fs::create_dir(d).unwrap();
    }
    let dune = photosync_testkit::decode(&photo("dune.jpg"));
    let storm = photosync_testkit::decode(&photo("storm.jpg"));
    let bee = photo("european-honey-bee.jpg");
    let dune_jpeg = photosync_testkit::jpeg(&dune, 95, false, None);
    write(&first, "dune.jpg", &dune_jpeg);
    write(
        &first,
        "storm-q75.jpg",
        &photosync_testkit::jpeg(&storm, 75, false, None),
    );
    write(&first, "bee-small.jpg", &make_copy(&bee, Copy::HalfSize));
    write(&second, "dune.png", &make_copy(&dune_jpeg, Copy::Png));
    write(
        &second,
        "storm.jpg",
        &photosync_testkit::jpeg(&storm, 92, false, None),
    );
    write(&second, "bee.jpg", &bee);
    write(
        &third,
        "storm-q60.jpg",
        &photosync_testkit::jpeg(&storm, 60, false, None),
    );
    let (engine, log) = engine(&s, local.path());
    assert_eq!(engine.sync(std::slice::from_ref(&first)).await.uploaded, 3);
    let summary = engine.sync(std::slice::from_ref(&second)).await;
    assert_eq!(
        (summary.uploaded, summary.on_server),
        (3, 0),
        "{summary:#?}"
    );
    let log = log.lock().unwrap().clone();
    let why = |name: &str| {
        events_for(&log, name)
            .iter()
            .find_map(|e| match e {
                Event::Queued {
                    beside: Some(how), ..
                } => Some(how.reason()),
                _ => None,
            })
            .unwrap_or_default()
    };
    for (name, rule) in [
        ("dune.png", "a lower class of file"),
        ("storm.jpg", "harder compression"),
        ("bee.jpg", "fewer pixels"),
    ] {
        let reason = why(name);
        assert!(reason.contains(rule), "{name}: {reason}");
        assert!(
            summary
                .beside
                .iter()
                .any(|(p, r)| p.ends_with(name) && *r == reason),
            "{name}: {:?}",
            summary.beside
        );
    }
    let summary = engine.sync(std::slice::from_ref(&third)).await;
    assert_eq!(
        (summary.uploaded, summary.on_server),
        (0, 1),
        "{summary:#?}"
    );
}

/// A burst: frames of a still camera with a subject moving, and a photo with a region moved by
/// 1 % of its width. Alike by the identifier, told apart by the verification step: every shot
/// goes up, in one run and across runs.
#[tokio::test]
async fn every_shot_of_a_burst_goes_up() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let (one, two) = (local.path().join("one"), local.path().join("two"));
    std::fs::create_dir(&one).unwrap();
    std::fs::create_dir(&two).unwrap();
    for (a, b) in photosync_testkit::FRAME_PAIRS.iter().take(3) {
        write(&one, a, &photosync_testkit::frame(a));
        write(&one, b, &photosync_testkit::frame(b));
    }
    let (shot, moved) = photosync_testkit::local_change_pair(
        &photo("elephants.jpg"),
        photosync_testkit::LocalChange::Displaced(10),
    );
    write(&one, "shot.jpg", &shot);
    write(&two, "moved.jpg", &moved);
    // A phone's burst where nothing visible moved: the capture times tell the shots apart.
    let still = photosync_testkit::decode(&photo("coffee.jpg"));
    for (name, subsec) in [("burst-1.jpg", "10"), ("burst-2.jpg", "35")] {
        let exif = photosync_testkit::exif_taken("2024:05:01 10:00:00", subsec, "A1");
        write(
            &one,
            name,
            &photosync_testkit::jpeg(&still, 90, false, Some(&exif)),
        );
    }
    let (engine, _log) = engine(&s, local.path());
    let summary = engine.sync(std::slice::from_ref(&one)).await;
    assert_eq!(
        (summary.uploaded, summary.on_server),
        (9, 0),
        "{summary:#?}"
    );
    let summary = engine.sync(std::slice::from_ref(&two)).await;
    assert_eq!(
        (summary.uploaded, summary.on_server),
        (1, 0),
        "{summary:#?}"
    );
}

/// RAW + JPEG shooting keeps both, whichever reaches the server first; a RAW file without a
/// preview is backed up by its bytes.
#[tokio::test]
async fn raw_files_and_their_camera_jpegs_both_go_up() {
    let s = server().await;
    let local = tempfile::tempdir().unwrap();
    let (one, two) = (local.path().join("one"), local.path().join("two"));
    std::fs::create_dir(&one).unwrap();
    std::fs::create_dir(&two).unwrap();
    let garden = photo("garden.jpg");
    let spec = photosync_testkit::DngSpec {
        sensor_scale: 2,
        taken: Some(("2024:05:01 10:00:00", "25")),
        ..Default::default()
    };
    write(
        &one,
        "IMG_0001.DNG",
        &photosync_testkit::dng(&garden, &spec),
    );
    write(&one, "IMG_0001.JPG", &garden);
    let bare = photosync_testkit::DngSpec {
        no_preview: true,
        ..Default::default()
    };
    write(
        &one,
        "IMG_0002.DNG",
        &photosync_testkit::dng(&photo("dune.jpg"), &bare),
    );
    // The JPEG first this time, then its RAW.
    let wood = photo("wood.jpg");
    write(&one, "IMG_0003.JPG", &wood);
    write(&two, "IMG_0003.DNG", &photosync_testkit::dng(&wood, &spec));
    let (engine, _log) = engine(&s, local.path());
    let summary = engine.sync(std::slice::from_ref(&one)).await;
    assert_eq!(
        (summary.uploaded, summary.on_server),
        (4, 0),
        "{summary:#?}"
    );
    assert_eq!(summary.unidentified.len(), 1, "{summary:#?}");
    assert!(summary.unidentified[0].0.ends_with("IMG_0002.DNG"));
    let summary = engine.sync(std::slice::from_ref(&two)).await;
    assert_eq!(
        (summary.uploaded, summary.on_server),
        (1, 0),
        "{summary:#?}"
    );
    let images = s
        .state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(100))
        .await
        .unwrap();
    let raw = images.iter().find(|i| i.name == "IMG_0001.DNG").unwrap();
    assert_eq!((raw.width, raw.height), (Some(1600), Some(1000)));
}
