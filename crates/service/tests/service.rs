//! The service against the real server on loopback, with real photos.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use photosync_board::{Query, Status};
use photosync_server::AppState;
use photosync_service::{Hooks, Notice, Paths, Service};

async fn server(dir: &Path) -> (String, String, AppState) {
    let token = "psk_service_test".to_owned();
    let mut state = AppState::embedded_with_user(dir, "me", &token)
        .await
        .unwrap();
    // Small enough that a test can make a file the server refuses.
    let mut config = (*state.config).clone();
    config.max_upload_size = 4 << 20;
    state.config = Arc::new(config);
    let url = photosync_server::spawn_local(state.clone()).await.unwrap();
    (url, token, state)
}

type Notices = Arc<Mutex<Vec<Notice>>>;

/// A service with its files under `home` that records the notifications it sends.
fn noting_service(home: &Path) -> (Service, Notices) {
    let notices: Notices = Arc::default();
    let hooks = Hooks {
        changed: Arc::new(|| {}),
        notify: {
            let n = notices.clone();
            Arc::new(move |notice| n.lock().unwrap().push(notice))
        },
    };
    let service =
        Service::new(Paths::under(home), hooks, tokio::runtime::Handle::current()).unwrap();
    (service, notices)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_sync_on_their_own_drops_go_first_and_bad_settings_are_refused() {
    let server_dir = tempfile::tempdir().unwrap();
    let (url, token, state) = server(server_dir.path()).await;
    let home = tempfile::tempdir().unwrap();
    let (service, notices) = noting_service(home.path());
    assert_eq!(service.overview().status_line, "Not connected to a server");

    // A wrong token and a wrong address are refused with what went wrong, and not saved.
    let e = service.configure(&url, "psk_wrong").await.unwrap_err();
    assert!(
        matches!(
            e,
            photosync_service::ServiceError::Connection(photosync_engine::Connection::BadToken)
        ),
        "{e}"
    );
    assert!(e.to_string().contains("refused the token"), "{e}");
    let e = service
        .configure("ftp://nowhere", &token)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("http://"), "{e}");
    assert!(!service.settings().is_configured());
    service.configure(&url, &token).await.unwrap();

    let photos = home.path().join("Pictures");
    std::fs::create_dir(&photos).unwrap();
    for n in ["aqua.jpg", "dune.jpg", "storm.jpg", "coffee.jpg"] {
        std::fs::copy(photosync_testkit::photos_dir().join(n), photos.join(n)).unwrap();
    }
    // Not a picture the decoders can read: backed up by its bytes, and said so.
    std::fs::write(photos.join("broken.jpg"), b"\xFF\xD8\xFF\xE0 not really").unwrap();
    // A link to nothing holds nothing to back up: reported, not failed.
    std::os::unix::fs::symlink(home.path().join("nowhere.jpg"), photos.join("gone.jpg")).unwrap();
    // Larger than the server takes: a failure.
    std::fs::write(
        photos.join("huge.mov"),
        photosync_testkit::noise(5 << 20, 1),
    )
    .unwrap();
    service.add_folder(&photos).await.unwrap();
    wait_until("the folder is synced", || {
        let t = service.overview().totals;
        t.by_status[&Status::BackedUp] == 5
            && t.by_status[&Status::Failed] == 1
            && t.by_status[&Status::Skipped] == 1
    })
    .await;
    // Another full round meets the same failure: it is notified once, not at every retry.
    service.restart().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let told = |n: &Notices| {
        n.lock()
            .unwrap()
            .iter()
            .filter(|n| {
                n.title.contains("could not be backed up") && n.body.starts_with("huge.mov")
            })
            // A click on it shows the failed files.
            .filter(|n| n.shows == Some(Status::Failed))
            .count()
    };
    wait_until("the failure notified", || told(&notices) >= 1).await;
    assert_eq!(told(&notices), 1);
    // The second round tries huge.mov again; once it has failed again, every row is settled.
    wait_until("the second round settled", || {
        let t = service.overview().totals;
        (t.all, t.done, t.failed) == (7, 6, 1)
    })
    .await;
    assert_eq!(
        (service.folders()[0].files, service.folders()[0].done),
        (7, 6),
        "a failure is not done"
    );
    assert_eq!(
        service.overview().status_line,
        "Backed up 6 of 7 · 1 failed"
    );
    // The activity of the last days: each upload, the skip, and the failure (a repeat for the
    // same reason is left out: `activity.rs` tests that).
    use photosync_service::activity::Happened;
    let activity = service.activity(100);
    let count = |what: Happened| activity.iter().filter(|e| e.what == what).count();
    assert_eq!(count(Happened::Uploaded), 5, "{activity:#?}");
    assert_eq!(count(Happened::Failed), 1, "{activity:#?}");
    assert_eq!(count(Happened::Skipped), 1, "{activity:#?}");
    let huge = activity
        .iter()
        .find(|e| e.what == Happened::Failed)
        .unwrap();
    assert!(
        huge.path.ends_with("huge.mov") && huge.detail.is_some(),
        "{huge:?}"
    );
    let uploaded = service.query(&Query {
        status: Some("backed_up".into()),
        ..Query::default()
    });
    let broken = uploaded
        .rows
        .iter()
        .find(|r| r.name == "broken.jpg")
        .unwrap();
    assert!(
        broken.unidentified.as_deref().unwrap().contains("jpeg"),
        "{broken:?}"
    );
    let failed = service.query(&Query {
        status: Some("failed".into()),
        ..Query::default()
    });
    let huge = failed.rows.iter().find(|r| r.name == "huge.mov").unwrap();
    assert!(huge.reason.is_some(), "{huge:?}");
    let skipped = service.query(&Query {
        status: Some("skipped".into()),
        ..Query::default()
    });
    let gone = skipped.rows.iter().find(|r| r.name == "gone.jpg").unwrap();
    assert!(
        gone.reason.as_deref().unwrap().contains("broken"),
        "{gone:?}"
    );
    assert_eq!(
        state
            .store
            .list_images(1, &photosync_server::ImageQuery::first(100))
            .await
            .unwrap()
            .len(),
        5
    );

    // A thumbnail is made from the picture.
    let id = uploaded
        .rows
        .iter()
        .find(|r| r.name == "aqua.jpg")
        .unwrap()
        .id;
    let thumb = service.thumbnail(id).await.unwrap();
    assert_eq!(&thumb[..2], b"\xFF\xD8");

    // A dropped file is synced at once and listed first; a renamed copy is on the server.
    let elsewhere = home.path().join("Desktop");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::copy(
        photosync_testkit::photos_dir().join("wood.jpg"),
        elsewhere.join("new.jpg"),
    )
    .unwrap();
    std::fs::copy(photos.join("aqua.jpg"), elsewhere.join("renamed.jpg")).unwrap();
    service
        .sync_dropped(vec![
            elsewhere.join("new.jpg"),
            elsewhere.join("renamed.jpg"),
        ])
        .await
        .unwrap();
    wait_until("the dropped files are done", || {
        let page = service.query(&Query::default());
        page.rows[..2]
            .iter()
            .all(|r| r.dropped && r.status.is_settled())
    })
    .await;
    let page = service.query(&Query::default());
    let renamed = page.rows.iter().find(|r| r.name == "renamed.jpg").unwrap();
    // Its bytes are in the sync list already: backed up, and the reason names the other file.
    assert_eq!(renamed.status, Status::BackedUp);
    assert_eq!(renamed.backed, Some(photosync_board::Backed::Earlier));
    let m = renamed.matched.as_ref().unwrap();
    assert_eq!((m.kind, m.name.as_str()), ("same_bytes", "aqua.jpg"));
    assert!(m.reason.contains("same bytes as aqua.jpg"), "{}", m.reason);

    // Settings survive a restart of the service; pending nothing.
    service.set_paused(true).await;
    assert!(service.overview().status_line.starts_with("Paused"));
    service.set_paused(false).await;
    service.stop().await;
    let again = Service::new(
        Paths::under(home.path()),
        Hooks::none(),
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    assert_eq!(again.settings().folders, vec![photos.clone()]);
    assert_eq!(
        again.activity(100).len(),
        service.activity(100).len(),
        "the activity is kept across restarts"
    );
    assert!(notices.lock().unwrap().iter().all(|n| !n.title.is_empty()));
}

/// The desktop app's service backs up RAW files and their camera JPEGs both, and a burst's
/// every shot; the board shows each as uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_files_and_bursts_are_backed_up_from_a_watched_folder() {
    let server_dir = tempfile::tempdir().unwrap();
    let (url, token, state) = server(server_dir.path()).await;
    let home = tempfile::tempdir().unwrap();
    let hooks = Hooks {
        changed: Arc::new(|| {}),
        notify: Arc::new(|_| {}),
    };
    let service = Service::new(
        Paths::under(home.path()),
        hooks,
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    service.configure(&url, &token).await.unwrap();
    let photos = home.path().join("Pictures");
    std::fs::create_dir(&photos).unwrap();
    let garden = std::fs::read(photosync_testkit::photos_dir().join("garden.jpg")).unwrap();
    // Sensor data at the photo's own size keeps the file under this server's 4 MB limit.
    let spec = photosync_testkit::DngSpec {
        sensor_scale: 1,
        taken: Some(("2024:05:01 10:00:00", "5")),
        ..Default::default()
    };
    std::fs::write(
        photos.join("IMG_0001.DNG"),
        photosync_testkit::dng(&garden, &spec),
    )
    .unwrap();
    std::fs::write(photos.join("IMG_0001.JPG"), &garden).unwrap();
    let (a, b) = photosync_testkit::FRAME_PAIRS[0];
    std::fs::write(photos.join(a), photosync_testkit::frame(a)).unwrap();
    std::fs::write(photos.join(b), photosync_testkit::frame(b)).unwrap();
    service.add_folder(&photos).await.unwrap();
    wait_until("all four are uploaded", || {
        service.overview().totals.by_status[&Status::BackedUp] == 4
    })
    .await;
    let images = state
        .store
        .list_images(1, &photosync_server::ImageQuery::first(10))
        .await
        .unwrap();
    assert_eq!(images.len(), 4);
    let raw = images.iter().find(|i| i.name == "IMG_0001.DNG").unwrap();
    assert_eq!((raw.width, raw.height), (Some(800), Some(500)));
    let rows = service.query(&Query {
        status: Some("backed_up".into()),
        ..Query::default()
    });
    assert_eq!(rows.rows.len(), 4);
}

fn told(notices: &Notices, title: &str) -> usize {
    notices
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.title.contains(title))
        .count()
}

/// The server goes away mid-sync: offline is shown within seconds, not when the round ends;
/// "Sync now" while it is away turns no backed-up file into a failure and tells no failure;
/// once it is back, every file is backed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_shown_at_once_and_fails_nothing_already_backed_up() {
    let server_dir = tempfile::tempdir().unwrap();
    let token = "psk_service_test".to_owned();
    let state = AppState::embedded_with_user(server_dir.path(), "me", &token)
        .await
        .unwrap();
    let mut server = photosync_server::LocalServer::start(state).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let (service, notices) = noting_service(home.path());
    // No scheme typed: http:// is meant.
    let typed = server.url().trim_start_matches("http://").to_owned();
    service.configure(&typed, &token).await.unwrap();
    assert_eq!(service.settings().server_url, server.url());
    wait_until("the account is known", || {
        service.overview().user.as_deref() == Some("me")
    })
    .await;

    let photos = home.path().join("Pictures");
    std::fs::create_dir(&photos).unwrap();
    let read = |n: &str| std::fs::read(photosync_testkit::photos_dir().join(n)).unwrap();
    std::fs::write(photos.join("aqua.jpg"), read("aqua.jpg")).unwrap();
    std::fs::write(photos.join("dune.jpg"), read("dune.jpg")).unwrap();
    // The same picture, smaller: on the server as aqua.jpg, by a match (not the sync list).
    std::fs::write(
        photos.join("aqua-small.jpg"),
        photosync_testkit::make_copy(&read("aqua.jpg"), photosync_testkit::Copy::HalfSize),
    )
    .unwrap();
    service.add_folder(&photos).await.unwrap();
    let backed_up = |n: usize| {
        let t = service.overview().totals;
        t.by_status[&Status::BackedUp] == n && t.all == n
    };
    wait_until("three backed up", || backed_up(3)).await;

    // Slow uploads of files large enough to take several parts, then the server goes away in
    // the middle of one.
    let mut s = service.settings();
    s.bandwidth_limit = 40_000;
    service.update_settings(s).await.unwrap();
    for (i, n) in ["clip-1.mov", "clip-2.mov"].into_iter().enumerate() {
        std::fs::write(photos.join(n), photosync_testkit::noise(300_000, i as u64)).unwrap();
    }
    wait_until("an upload under way", || {
        let t = service.overview().totals;
        t.by_status[&Status::Uploading] + t.by_status[&Status::Queued] > 0
    })
    .await;
    server.go_away().await;
    let gone = std::time::Instant::now();
    wait_until("offline shown", || service.overview().offline).await;
    let took = gone.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "offline shown {took:?} after the server went away"
    );
    wait_until("the outage notified", || {
        told(&notices, "cannot reach the server") == 1
    })
    .await;

    // "Sync now" while it is away: a new round asks the server about every file not in the
    // sync list (the clips, and the copy matched before), and cannot.
    service.restart().await.unwrap();
    wait_until("the new round has met the outage", || {
        let rows = service.query(&Query::default()).rows;
        let asked = rows
            .iter()
            .filter(|r| r.name.starts_with("clip-"))
            .all(|r| {
                r.reason
                    .as_deref()
                    .is_some_and(|w| w.starts_with("cannot ask the server"))
            });
        asked && rows.iter().all(|r| r.status.is_settled())
    })
    .await;
    let rows = service.query(&Query::default()).rows;
    for name in ["aqua.jpg", "dune.jpg", "aqua-small.jpg"] {
        let row = rows.iter().find(|r| r.name == name).unwrap();
        assert_eq!(row.status, Status::BackedUp, "{row:?}");
    }
    assert_eq!(
        told(&notices, "could not be backed up"),
        0,
        "a server away is no failure to tell: {:?}",
        notices.lock().unwrap()
    );

    server.come_back().await.unwrap();
    wait_until("all five backed up", || backed_up(5)).await;
    wait_until("online again", || !service.overview().offline).await;
    assert_eq!(told(&notices, "could not be backed up"), 0);
    assert_eq!(
        told(&notices, "connected again"),
        0,
        "a short absence is not worth a notification"
    );
    assert_eq!(
        server
            .state
            .store
            .list_images(1, &photosync_server::ImageQuery::first(100))
            .await
            .unwrap()
            .len(),
        4
    );
}

/// A new computer: the account already holds photos. The server view lists them newest first
/// with their thumbnails; a restore lands them, and the folder it made is then backed up
/// without sending anything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_view_lists_the_account_and_a_restore_lands_it_without_uploads() {
    let server_dir = tempfile::tempdir().unwrap();
    let (url, token, _state) = server(server_dir.path()).await;
    // The old computer's backup.
    let old = tempfile::tempdir().unwrap();
    let (first, _) = noting_service(old.path());
    first.configure(&url, &token).await.unwrap();
    let lib = old.path().join("Pictures");
    std::fs::create_dir_all(lib.join("2020")).unwrap();
    let names = ["aqua.jpg", "dune.jpg", "storm.jpg"];
    for (i, n) in names.iter().enumerate() {
        let p = if i == 0 {
            lib.join(n)
        } else {
            lib.join("2020").join(n)
        };
        let bytes = std::fs::read(photosync_testkit::photos_dir().join(n)).unwrap();
        let bytes = photosync_testkit::make_copy(&bytes, photosync_testkit::Copy::Stripped);
        std::fs::write(&p, bytes).unwrap();
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000 + i as u64 * 40 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    first.add_folder(&lib).await.unwrap();
    wait_until("the library is backed up", || {
        first.overview().totals.by_status[&Status::BackedUp] == 3
    })
    .await;
    first.stop().await;

    let home = tempfile::tempdir().unwrap();
    let (service, notices) = noting_service(home.path());
    service.configure(&url, &token).await.unwrap();
    assert_eq!(service.account().await.unwrap().images, 3);
    let page = service.remote_load().await.unwrap();
    assert_eq!((page.total, page.items.len()), (3, 0));
    let listed = service.remote_page(0, 10);
    let days: Vec<&str> = listed.items.iter().map(|i| &i.day[..10]).collect();
    assert_eq!(
        days,
        ["2020-12-02", "2020-10-23", "2020-09-13"],
        "newest first"
    );
    assert_eq!(listed.items[0].name, "storm.jpg");
    assert_eq!(listed.items[0].folder.as_deref(), Some("2020"));
    assert_eq!(listed.months.len(), 3);
    assert_eq!(listed.months[1].first, 1);
    assert!(listed.bytes > 0);
    let thumb = service.remote_thumbnail(listed.items[0].id).await.unwrap();
    assert_eq!(&thumb[..2], b"\xFF\xD8", "a JPEG");
    // Cached: the same bytes come back without the server.
    assert_eq!(
        service.remote_thumbnail(listed.items[0].id).await.unwrap(),
        thumb
    );
    let full = service.remote_full(listed.items[2].id).await.unwrap();
    assert!(full.len() > thumb.len() / 2);

    // Two selected photos first, then everything into a folder that is then backed up.
    let picked = home.path().join("Picked");
    let ids = vec![listed.items[0].id, listed.items[2].id];
    service
        .restore_to(picked.clone(), Some(ids), false)
        .await
        .unwrap();
    let settled = |s: &Service| {
        s.overview()
            .restore
            .is_some_and(|p| p.state == photosync_service::remote::RestoreState::Done)
    };
    wait_until("the selection is restored", || settled(&service)).await;
    assert!(picked.join("2020/storm.jpg").exists() && picked.join("aqua.jpg").exists());
    assert!(!picked.join("2020/dune.jpg").exists());

    let to = home.path().join("Restored");
    service.restore_to(to.clone(), None, true).await.unwrap();
    wait_until("everything is restored", || settled(&service)).await;
    let p = service.overview().restore.unwrap();
    assert_eq!((p.files_done, p.files_total, p.failed), (3, 3, 0));
    assert_eq!(p.bytes_done, p.bytes_total);
    for (i, n) in names.iter().enumerate() {
        let rel = if i == 0 {
            n.to_string()
        } else {
            format!("2020/{n}")
        };
        assert_eq!(
            std::fs::read(to.join(&rel)).unwrap(),
            std::fs::read(lib.join(&rel)).unwrap(),
            "{rel}"
        );
    }
    wait_until("the restored folder is watched", || {
        service.settings().folders.contains(&to)
    })
    .await;
    wait_until("its files are known as backed up", || {
        service.overview().totals.by_status[&Status::BackedUp] == 3
    })
    .await;
    let uploaded = service
        .query(&Query::default())
        .rows
        .iter()
        .filter(|r| r.backed == Some(photosync_board::Backed::Uploaded))
        .count();
    assert_eq!(uploaded, 0, "nothing restored goes up again");
    assert!(notices
        .lock()
        .unwrap()
        .iter()
        .any(|n| n.title == "Restore finished" && n.body.starts_with("3 of 3 files")));
    // A second restore while one runs is refused; an unknown folder form too.
    assert!(service
        .restore_to("relative/path".into(), None, false)
        .await
        .is_err());
    service.stop().await;
}
