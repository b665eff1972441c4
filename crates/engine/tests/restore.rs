//! Restore against the real server on loopback, with real photos: everything comes back byte
//! for byte, under its folders, names and times; nothing local is overwritten; cut downloads
//! resume; bytes that do not verify and full disks are reported, never written.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use photosync_engine::restore::RestoreOptions;
use photosync_engine::{Engine, Options, RestoreEvent, Restored, ServerConfig};
use photosync_server::AppState;
use photosync_testkit::photos_dir;

struct TestServer {
    url: String,
    token: String,
    _state: AppState,
    dir: tempfile::TempDir,
}

async fn server() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let token = "psk_restore_test".to_owned();
    let state = AppState::embedded_with_user(dir.path(), "me", &token)
        .await
        .unwrap();
    let url = photosync_server::spawn_local(state.clone()).await.unwrap();
    TestServer {
        url,
        token,
        _state: state,
        dir,
    }
}

/// An engine with its own state database in `state_dir`.
fn engine(s: &TestServer, state_dir: &Path) -> Engine {
    let options = Options::new(
        ServerConfig {
            url: s.url.clone(),
            token: s.token.clone(),
        },
        state_dir.join("state.db"),
    );
    Engine::new(options, Arc::new(|_| {})).unwrap()
}

type Log = Arc<Mutex<Vec<RestoreEvent>>>;

async fn restore(
    engine: &Engine,
    options: &RestoreOptions,
) -> (photosync_engine::RestoreSummary, Vec<RestoreEvent>) {
    let log: Log = Arc::default();
    let sink = log.clone();
    let control = photosync_engine::Control::default();
    let summary = engine
        .restore(options, &control, &move |e| sink.lock().unwrap().push(e))
        .await
        .unwrap();
    let events = log.lock().unwrap().clone();
    (summary, events)
}

/// A real photo without its EXIF, so its modification time dates it.
fn photo(name: &str) -> Vec<u8> {
    let bytes = std::fs::read(photos_dir().join(name)).unwrap();
    photosync_testkit::make_copy(&bytes, photosync_testkit::Copy::Stripped)
}

/// Writes `bytes` at `dir/rel` with a modification time `days` days after 2020-01-01.
fn put(dir: &Path, rel: &str, bytes: &[u8], days: u64) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800 + days * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(t)
        .unwrap();
    p
}

/// The old computer: `files` (path below its library, bytes, days after 2020-01-01) backed up
/// by an engine of its own. Answers its folder and the library.
async fn backed_up(s: &TestServer, files: &[(&str, Vec<u8>, u64)]) -> (tempfile::TempDir, PathBuf) {
    let old = tempfile::tempdir().unwrap();
    let lib = old.path().join("lib");
    for (rel, bytes, days) in files {
        put(&lib, rel, bytes, *days);
    }
    engine(s, old.path()).sync(std::slice::from_ref(&lib)).await;
    (old, lib)
}

/// Every file below `dir` (hidden ones too) by relative path, with its bytes and mtime.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let m = std::fs::metadata(&p).unwrap();
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                    m.modified().unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// A library of real photos in folders, a video-like file and a name that needs its bytes.
fn library(dir: &Path) -> Vec<PathBuf> {
    let mut clip = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    clip.extend(photosync_testkit::noise(300_000, 3));
    vec![
        put(dir, "aqua.jpg", &photo("aqua.jpg"), 1),
        put(dir, "2021/June/garden.jpg", &photo("garden.jpg"), 500),
        put(dir, "2021/June/wood.jpg", &photo("wood.jpg"), 501),
        put(dir, "2021/Été/storm.jpg", &photo("storm.jpg"), 560),
        put(dir, "2022/clips/clip.mp4", &clip, 800),
        // Same name as a photo in another folder, different bytes.
        put(dir, "2022/aqua.jpg", &photo("coffee.jpg"), 801),
    ]
}

#[tokio::test]
async fn a_synced_library_comes_back_byte_for_byte_and_a_following_sync_sends_nothing() {
    let s = server().await;
    let old = tempfile::tempdir().unwrap();
    let lib = old.path().join("Pictures");
    let files = library(&lib);
    let before = tree(&lib);
    let summary = engine(&s, old.path())
        .sync(std::slice::from_ref(&lib))
        .await;
    assert_eq!(summary.uploaded, files.len(), "{summary:?}");
    // The old computer is gone.
    drop(old);

    let new = tempfile::tempdir().unwrap();
    let to = new.path().join("Restored");
    let fresh = engine(&s, new.path());
    let (summary, events) = restore(&fresh, &RestoreOptions::new(to.clone())).await;
    assert_eq!(summary.planned, files.len());
    assert_eq!(summary.written, files.len(), "{summary:?}");
    assert!(
        summary.failed.is_empty() && summary.renamed.is_empty(),
        "{summary:?}"
    );
    assert_eq!(
        tree(&to),
        before,
        "same bytes, same relative paths, same times"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, RestoreEvent::Planned { files: 6, .. })));

    // The sync list knows every file: a sync sends nothing and asks the server nothing.
    let again = fresh.sync(std::slice::from_ref(&to)).await;
    assert_eq!(again.uploaded, 0, "{again:?}");
    assert_eq!(again.already_synced, files.len(), "{again:?}");
    // A second restore finds everything in place.
    let (second, _) = restore(&fresh, &RestoreOptions::new(to.clone())).await;
    assert_eq!((second.written, second.already_there), (0, files.len()));
    assert_eq!(tree(&to), before);
}

#[tokio::test]
async fn filters_pick_days_and_globs() {
    let s = server().await;
    let old = tempfile::tempdir().unwrap();
    let lib = old.path().join("lib");
    library(&lib);
    engine(&s, old.path())
        .sync(std::slice::from_ref(&lib))
        .await;
    let new = tempfile::tempdir().unwrap();
    let e = engine(&s, new.path());

    let mut o = RestoreOptions::new(new.path().join("june"));
    o.matching = Some(glob::Pattern::new("2021/june/*").unwrap());
    let (summary, _) = restore(&e, &o).await;
    assert_eq!(summary.written, 2, "case is ignored: {summary:?}");
    assert!(new.path().join("june/2021/June/garden.jpg").exists());

    // Modification times: days 800 and 801 after 2020-01-01 are 2022-03-11 and 2022-03-12.
    let mut o = RestoreOptions::new(new.path().join("2022"));
    o.filter.since = Some("2022-03-12".into());
    let (summary, _) = restore(&e, &o).await;
    assert_eq!(summary.written, 1, "{summary:?}");
    assert!(new.path().join("2022/2022/aqua.jpg").exists());

    let mut o = RestoreOptions::new(new.path().join("jpg"));
    o.matching = Some(glob::Pattern::new("*.JPG").unwrap());
    o.filter.until = Some("2021-12-31".into());
    let (summary, _) = restore(&e, &o).await;
    assert_eq!(summary.written, 4, "{summary:?}");
}

#[tokio::test]
async fn a_different_local_file_is_never_overwritten_and_an_identical_one_is_kept() {
    let s = server().await;
    let (_old, _lib) = backed_up(
        &s,
        &[
            ("a/garden.jpg", photo("garden.jpg"), 10),
            ("a/wood.jpg", photo("wood.jpg"), 11),
        ],
    )
    .await;

    let new = tempfile::tempdir().unwrap();
    let to = new.path().join("to");
    // Someone's own garden.jpg, and a copy of wood.jpg with another time.
    let mine = put(&to, "a/garden.jpg", b"my own notes, not the photo", 99);
    let copy = put(&to, "a/wood.jpg", &photo("wood.jpg"), 99);
    let mine_before = std::fs::metadata(&mine).unwrap().modified().unwrap();
    let (summary, events) =
        restore(&engine(&s, new.path()), &RestoreOptions::new(to.clone())).await;
    assert_eq!(
        (summary.written, summary.already_there),
        (1, 1),
        "{summary:?}"
    );
    assert_eq!(
        std::fs::read(&mine).unwrap(),
        b"my own notes, not the photo"
    );
    assert_eq!(
        std::fs::metadata(&mine).unwrap().modified().unwrap(),
        mine_before
    );
    assert_eq!(
        std::fs::read(to.join("a/garden (1).jpg")).unwrap(),
        photo("garden.jpg")
    );
    assert_eq!(std::fs::read(&copy).unwrap(), photo("wood.jpg"));
    assert_eq!(summary.renamed.len(), 1);
    assert!(summary.renamed[0].1.contains("holds a different file"));
    assert!(events.iter().any(|e| matches!(
        e,
        RestoreEvent::Restored { how: Restored::AlreadyThere, path, .. } if path == &copy
    )));
    // Once more: both are found in place, nothing is written or numbered again.
    let (again, _) = restore(&engine(&s, new.path()), &RestoreOptions::new(to.clone())).await;
    assert_eq!((again.written, again.already_there), (0, 2), "{again:?}");
    assert!(!to.join("a/garden (2).jpg").exists());
}

#[tokio::test]
async fn a_cut_download_resumes_from_its_partial_file_and_leaves_no_partial_under_the_name() {
    let s = server().await;
    let old = tempfile::tempdir().unwrap();
    let lib = old.path().join("lib");
    let big = photosync_testkit::noise(3 << 20, 11);
    let mut clip = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    clip.extend(&big);
    put(&lib, "clip.mp4", &clip, 5);
    engine(&s, old.path())
        .sync(std::slice::from_ref(&lib))
        .await;

    let new = tempfile::tempdir().unwrap();
    let to = new.path().join("to");
    let e = engine(&s, new.path());
    e.bandwidth().set_rate(Some(1 << 20));
    let control = photosync_engine::Control::default();
    let cut = AtomicCut::default();
    let summary = e
        .restore(&RestoreOptions::new(to.clone()), &control, &|ev| {
            if let RestoreEvent::Receiving { done, .. } = ev {
                if done >= 1 << 20 && !cut.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    control.cancel();
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(
        (summary.written, summary.interrupted),
        (0, 1),
        "{summary:?}"
    );
    assert!(
        !to.join("clip.mp4").exists(),
        "nothing under the final name"
    );
    let partials: Vec<_> = tree(&to)
        .into_iter()
        .filter(|(p, ..)| p.to_string_lossy().ends_with(".photosync-restore"))
        .collect();
    assert_eq!(partials.len(), 1);
    let kept = partials[0].1.len();
    assert!(kept >= 1 << 20 && kept < clip.len(), "{kept}");
    assert_eq!(
        partials[0].1,
        clip[..kept],
        "the partial holds the first bytes"
    );

    e.bandwidth().set_rate(None);
    let (summary, events) = restore(&e, &RestoreOptions::new(to.clone())).await;
    assert_eq!(summary.written, 1, "{summary:?}");
    let first = events
        .iter()
        .find_map(|ev| match ev {
            RestoreEvent::Receiving { done, .. } => Some(*done),
            _ => None,
        })
        .unwrap();
    assert!(
        first > kept as u64,
        "resumed at {kept}, first progress {first}"
    );
    assert!(
        first - (kept as u64) <= 1 << 20,
        "not sent again from 0: {first}"
    );
    assert_eq!(tree(&to).len(), 1, "the partial file is gone");
    assert_eq!(std::fs::read(to.join("clip.mp4")).unwrap(), clip);
}

#[derive(Default)]
struct AtomicCut(std::sync::atomic::AtomicBool);

#[tokio::test]
async fn a_server_copy_that_does_not_match_its_digest_is_reported_and_not_written() {
    let s = server().await;
    let (_old, _lib) = backed_up(
        &s,
        &[
            ("garden.jpg", photo("garden.jpg"), 1),
            ("wood.jpg", photo("wood.jpg"), 2),
        ],
    )
    .await;
    // The disk under the server flipped a byte of one blob.
    let d = blake3::hash(&photo("garden.jpg")).to_hex().to_string();
    let blob = s.dir.path().join("blobs").join(&d[..2]).join(&d);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[5000] ^= 0x20;
    std::fs::write(&blob, &bytes).unwrap();

    let new = tempfile::tempdir().unwrap();
    let to = new.path().join("to");
    let (summary, events) =
        restore(&engine(&s, new.path()), &RestoreOptions::new(to.clone())).await;
    assert_eq!(summary.written, 1, "{summary:?}");
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].0, to.join("garden.jpg"));
    assert!(
        summary.failed[0].1.contains("does not match its digest"),
        "{:?}",
        summary.failed
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, RestoreEvent::Failed { .. })));
    assert_eq!(
        tree(&to).into_iter().map(|(p, ..)| p).collect::<Vec<_>>(),
        [PathBuf::from("wood.jpg")],
        "no file, and no partial file, for the bad copy"
    );
}

#[tokio::test]
async fn unsafe_names_from_the_server_are_made_safe_and_said() {
    let s = server().await;
    let (_old, _lib) = backed_up(
        &s,
        &[
            ("a/garden.jpg", photo("garden.jpg"), 1),
            ("b/wood.jpg", photo("wood.jpg"), 2),
            ("c/aqua.jpg", photo("aqua.jpg"), 3),
        ],
    )
    .await;
    // A server (or its database) gone wrong: names that would leave the folder.
    let db = rusqlite::Connection::open(s.dir.path().join("photosync.db")).unwrap();
    db.execute_batch(
        "UPDATE images SET folder = '../../outside', name = '../escape.jpg' WHERE name = 'garden.jpg';
         UPDATE images SET folder = '/etc', name = '..' WHERE name = 'wood.jpg';
         UPDATE images SET folder = 'ok/../..', name = 'a\nb.jpg' WHERE name = 'aqua.jpg';",
    )
    .unwrap();
    drop(db);

    let new = tempfile::tempdir().unwrap();
    let to = new.path().join("deep/to");
    let (summary, _) = restore(&engine(&s, new.path()), &RestoreOptions::new(to.clone())).await;
    assert_eq!(summary.written, 3, "{summary:?}");
    assert_eq!(
        summary.renamed.len(),
        3,
        "each change is said: {:?}",
        summary.renamed
    );
    let files: Vec<PathBuf> = tree(&new.path().join("deep"))
        .into_iter()
        .map(|(p, ..)| p)
        .collect();
    assert_eq!(
        files,
        [
            PathBuf::from("to/etc/restored"),
            PathBuf::from("to/ok/a_b.jpg"),
            PathBuf::from("to/outside/.._escape.jpg"),
        ],
        "everything stays inside the restore folder"
    );
    assert!(summary
        .renamed
        .iter()
        .any(|(_, why)| why.contains("\"../escape.jpg\"")));
}

/// As root, a 2 MiB tmpfs fills part-way through a restore.
#[tokio::test]
async fn a_full_disk_stops_the_restore_cleanly_and_keeps_what_was_restored() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap() != 0 {
        tracing::warn!("not root: cannot mount a small file system; skipped");
        return;
    }
    let s = server().await;
    let old = tempfile::tempdir().unwrap();
    let lib = old.path().join("lib");
    // One photo first (the lowest id), then two files that cannot both fit beside it.
    put(&lib, "a/garden.jpg", &photo("garden.jpg"), 1);
    engine(&s, old.path())
        .sync(std::slice::from_ref(&lib))
        .await;
    for (i, name) in ["b/one.mp4", "b/two.mp4"].into_iter().enumerate() {
        let mut clip = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
        clip.extend(photosync_testkit::noise(1_200_000, 20 + i as u64));
        put(&lib, name, &clip, 10 + i as u64);
    }
    engine(&s, old.path())
        .sync(std::slice::from_ref(&lib))
        .await;

    let new = tempfile::tempdir().unwrap();
    let mnt = new.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success());
    let e = engine(&s, new.path());
    let mut o = RestoreOptions::new(mnt.join("to"));
    o.concurrency = 1;
    let (summary, _) = restore(&e, &o).await;
    let files = tree(&mnt);
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    let stopped = summary.stopped.clone().expect("the restore stops");
    assert!(stopped.contains("disk is full"), "{stopped}");
    assert_eq!(summary.written, 2, "{summary:?}");
    assert!(summary.failed.is_empty(), "{summary:?}");
    assert!(summary.interrupted >= 1, "{summary:?}");
    // What was restored is whole and verified; no partial file sits under a final name.
    let whole: Vec<&PathBuf> = files
        .iter()
        .filter(|(p, ..)| !p.to_string_lossy().ends_with(".photosync-restore"))
        .map(|(p, ..)| p)
        .collect();
    assert_eq!(whole.len(), 2, "{files:?}");
    assert!(files
        .iter()
        .any(|(p, b, _)| p == Path::new("to/a/garden.jpg") && *b == photo("garden.jpg")));
}

#[tokio::test]
async fn a_paused_restore_writes_nothing_until_resumed() {
    let s = server().await;
    let (_old, _lib) = backed_up(
        &s,
        &[
            ("garden.jpg", photo("garden.jpg"), 1),
            ("wood.jpg", photo("wood.jpg"), 2),
        ],
    )
    .await;

    let new = tempfile::tempdir().unwrap();
    let to = new.path().join("to");
    let e = engine(&s, new.path());
    let control = photosync_engine::Control::default();
    control.pause();
    let options = RestoreOptions::new(to.clone());
    let restoring = e.restore(&options, &control, &|_| {});
    tokio::pin!(restoring);
    // Paused from the start: the list is read, no file is written.
    let waited = tokio::time::timeout(Duration::from_millis(800), &mut restoring).await;
    assert!(waited.is_err(), "a paused restore does not finish");
    assert!(tree(&to).is_empty(), "nothing written while paused");
    control.resume();
    let summary = restoring.await.unwrap();
    assert_eq!(summary.written, 2, "{summary:?}");
    assert_eq!(tree(&to).len(), 2);
}
