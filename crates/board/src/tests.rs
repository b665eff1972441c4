use super::*;
use std::time::Duration;

fn p(name: &str) -> PathBuf {
    PathBuf::from("/photos").join(name)
}

fn board_with(events: &[Event]) -> Board {
    let mut b = Board::new();
    let now = Instant::now();
    for e in events {
        b.apply(e, now);
    }
    b
}

#[test]
fn events_move_a_row_through_its_states_and_keep_the_reason() {
    let now = Instant::now();
    let mut b = Board::new();
    b.apply(&Event::Discovered { path: p("a.jpg") }, now);
    assert_eq!(b.rows()[0].status, Status::Found);
    b.apply(&Event::Identifying { path: p("a.jpg") }, now);
    b.apply(
        &Event::Queued {
            path: p("a.jpg"),
            bytes: 1000,
            beside: None,
        },
        now,
    );
    b.apply(
        &Event::Uploading {
            path: p("a.jpg"),
            sent: 400,
            total: 1000,
            rate: 100.0,
            part_size: 400,
        },
        now,
    );
    let row = &b.rows()[0];
    assert_eq!(row.status, Status::Uploading);
    assert_eq!(row.upload.as_ref().unwrap().sent, 400);
    b.apply(
        &Event::Failed {
            path: p("a.jpg"),
            reason: "connection refused".into(),
            next_retry: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(99)),
        },
        now,
    );
    let row = &b.rows()[0];
    assert_eq!(row.status, Status::Failed);
    assert_eq!(row.reason.as_deref(), Some("connection refused"));
    assert_eq!(row.next_retry, Some(99));
    assert_eq!(
        row.upload.as_ref().unwrap().sent,
        400,
        "progress kept for the retry"
    );
    b.apply(
        &Event::Uploaded {
            path: p("a.jpg"),
            remote_id: 5,
        },
        now,
    );
    let row = &b.rows()[0];
    assert_eq!(
        (row.status, row.backed, row.reason.clone()),
        (Status::BackedUp, Some(Backed::Uploaded), None)
    );
    assert_eq!(b.rows().len(), 1, "one row per path");
    // A rescan rediscovers it; it stays backed up.
    b.apply(&Event::Discovered { path: p("a.jpg") }, now);
    assert_eq!(b.rows()[0].status, Status::BackedUp);
}

/// A progress report that arrives after the outcome (the last part's, from another pass) does
/// not leave the row at "Uploading 100%".
#[test]
fn late_progress_does_not_take_a_backed_up_row_back_to_uploading() {
    let now = Instant::now();
    let mut b = board_with(&[Event::Uploaded {
        path: p("a.jpg"),
        remote_id: 5,
    }]);
    b.apply(
        &Event::Uploading {
            path: p("a.jpg"),
            sent: 1000,
            total: 1000,
            rate: 100.0,
            part_size: 1000,
        },
        now,
    );
    assert_eq!(b.rows()[0].status, Status::BackedUp);
    assert_eq!(b.rows()[0].upload, None);
    assert_eq!(b.totals(now).rate, 0.0, "no bytes moved");
    // A new upload of the file (it changed) starts with Queued, and shows progress again.
    b.apply(
        &Event::Queued {
            path: p("a.jpg"),
            bytes: 2000,
            beside: None,
        },
        now,
    );
    b.apply(
        &Event::Uploading {
            path: p("a.jpg"),
            sent: 500,
            total: 2000,
            rate: 100.0,
            part_size: 500,
        },
        now,
    );
    assert_eq!(
        (b.rows()[0].status, b.rows()[0].backed),
        (Status::Uploading, None)
    );
}

/// Same bytes, same picture, an earlier run, an upload now: one state, and how in `backed`.
#[test]
fn every_way_of_being_on_the_server_is_one_backed_up_state() {
    let b = board_with(&[
        Event::Uploaded {
            path: p("a.jpg"),
            remote_id: 1,
        },
        Event::OnServer {
            path: p("b.jpg"),
            how: OnServer::SameBytes {
                remote_id: 1,
                name: "a.jpg".into(),
            },
        },
        Event::AlreadySynced {
            path: p("c.jpg"),
            remote_id: 2,
            same_as: None,
        },
    ]);
    let hows: Vec<_> = b.rows().iter().map(|r| (r.status, r.backed)).collect();
    assert_eq!(
        hows,
        [
            (Status::BackedUp, Some(Backed::Uploaded)),
            (Status::BackedUp, Some(Backed::SameBytes)),
            (Status::BackedUp, Some(Backed::Earlier)),
        ]
    );
    let t = b.totals(Instant::now());
    assert_eq!((t.by_status[&Status::BackedUp], t.done), (3, 3));
    assert_eq!(
        serde_json::to_value(&b.rows()[2]).unwrap()["backed"],
        "earlier"
    );
}

/// A failure is not done, and retrying it does not move the count backwards.
#[test]
fn failures_are_not_counted_as_done() {
    let now = Instant::now();
    let mut b = board_with(&[
        Event::Uploaded {
            path: p("a.jpg"),
            remote_id: 1,
        },
        Event::Failed {
            path: p("b.jpg"),
            reason: "the server is out of space".into(),
            next_retry: None,
        },
    ]);
    let t = b.totals(now);
    assert_eq!((t.done, t.failed, t.all), (1, 1, 2));
    assert_eq!(
        b.status_line(now, false, false),
        "Backed up 1 of 2 · 1 failed"
    );
    b.apply(
        &Event::Queued {
            path: p("b.jpg"),
            bytes: 10,
            beside: None,
        },
        now,
    );
    let t = b.totals(now);
    assert_eq!(
        (t.done, t.failed),
        (1, 0),
        "a retry takes nothing from done"
    );
    assert_eq!(b.status_line(now, false, false), "Syncing 1 of 2");
    assert_eq!(b.count_under(Path::new("/photos")), (2, 1));
}

/// With nothing sent for five seconds the rate is 0, and the status line stops showing one.
#[test]
fn the_rate_decays_to_zero_on_its_own() {
    let t0 = Instant::now();
    let mut b = board_with(&[Event::Discovered { path: p("b.jpg") }]);
    b.apply(
        &Event::Uploading {
            path: p("a.jpg"),
            sent: 5_000_000,
            total: 9_000_000,
            rate: 0.0,
            part_size: 1,
        },
        t0,
    );
    assert!(b.totals(t0).rate > 0.0);
    assert!(b.status_line(t0, false, false).ends_with("MB/s"));
    let later = t0 + Duration::from_secs(6);
    assert_eq!(b.totals(later).rate, 0.0);
    assert_eq!(b.status_line(later, false, false), "Syncing 0 of 2");
    let series = b
        .rate_history()
        .series(later + Duration::from_secs(300), 60);
    assert!(series.iter().all(|v| *v == 0.0), "the chart empties too");
}

#[test]
fn a_same_picture_match_shows_the_server_image_and_why() {
    let b = board_with(&[Event::OnServer {
        path: p("small.jpg"),
        how: OnServer::SamePicture {
            remote_id: 3,
            name: "big.jpg".into(),
            distance: 9,
            remote_pixels: Some(4_000_000),
            local_pixels: Some(1_000_000),
            standing: photosync_events::Standing::AtLeastAsGood,
        },
    }]);
    let m = b.rows()[0].matched.clone().unwrap();
    assert_eq!(
        (m.remote_id, m.name.as_str(), m.kind),
        (3, "big.jpg", "same_picture")
    );
    assert!(m.reason.contains("same picture as big.jpg"), "{}", m.reason);
    let json = serde_json::to_value(&b.rows()[0]).unwrap();
    assert_eq!(json["status"], "backed_up");
    assert_eq!(json["backed"], "same_picture");
}

#[test]
fn totals_filters_search_and_pages() {
    let mut events = Vec::new();
    for i in 0..250 {
        let path = p(&format!("IMG_{i:04}.jpg"));
        events.push(Event::Discovered { path: path.clone() });
        if i % 2 == 0 {
            events.push(Event::Uploaded { path, remote_id: i });
        }
    }
    events.push(Event::Skipped {
        path: p("empty.jpg"),
        reason: "empty file (0 bytes)".into(),
        problem: false,
    });
    events.push(Event::Skipped {
        path: p("broken.jpg"),
        reason: "corrupt jpeg".into(),
        problem: true,
    });
    let mut b = board_with(&events);
    let t = b.totals(Instant::now());
    assert_eq!(t.all, 252);
    assert_eq!(t.by_status[&Status::BackedUp], 125);
    assert_eq!(t.by_status[&Status::Found], 125);
    assert_eq!(
        t.by_status[&Status::Skipped],
        1,
        "an empty file is left out on purpose"
    );
    assert_eq!(
        t.by_status[&Status::Failed],
        1,
        "a corrupt image is a failure"
    );
    assert_eq!(t.done, 126, "the failure is not done");
    assert_eq!(t.failed, 1);

    let page = b.query(&Query {
        status: Some("backed_up".into()),
        offset: 100,
        limit: 50,
        ..Query::default()
    });
    assert_eq!((page.total, page.rows.len()), (125, 25));
    assert!(page.rows.iter().all(|r| r.status == Status::BackedUp));

    let page = b.query(&Query {
        search: Some("img_000".into()),
        ..Query::default()
    });
    assert_eq!(page.total, 10, "IMG_0000..IMG_0009, case-insensitive");

    // Dropped files come first.
    b.mark_dropped(&[p("IMG_0200.jpg"), PathBuf::from("/dropped")]);
    b.apply(
        &Event::Discovered {
            path: PathBuf::from("/dropped/new.jpg"),
        },
        Instant::now(),
    );
    let page = b.query(&Query::default());
    assert_eq!(page.rows[0].name, "IMG_0200.jpg");
    assert!(page.rows[0].dropped);
    assert_eq!(
        page.rows[1].name, "new.jpg",
        "files under a dropped folder too"
    );
    assert!(!page.rows[2].dropped);
}

#[test]
fn changed_rows_are_handed_out_once() {
    let mut b = board_with(&[
        Event::Discovered { path: p("a.jpg") },
        Event::Discovered { path: p("b.jpg") },
    ]);
    assert_eq!(b.take_changed().len(), 2);
    assert!(b.take_changed().is_empty());
    b.apply(&Event::Identifying { path: p("b.jpg") }, Instant::now());
    let changed = b.take_changed();
    assert_eq!(changed.len(), 1);
    assert_eq!(b.row(changed[0]).unwrap().name, "b.jpg");
}

#[test]
fn removing_a_folder_forgets_its_files_and_renumbers() {
    let mut b = board_with(&[
        Event::Discovered { path: p("a.jpg") },
        Event::Discovered {
            path: PathBuf::from("/other/b.jpg"),
        },
    ]);
    b.remove_under(Path::new("/photos"));
    assert_eq!(b.rows().len(), 1);
    assert_eq!(b.rows()[0].id, 0);
    assert_eq!(b.row(0).unwrap().name, "b.jpg");
    assert_eq!(b.count_under(Path::new("/other")), (1, 0));
}

#[test]
fn the_status_line_says_what_is_happening() {
    let now = Instant::now();
    let mut b = Board::new();
    assert_eq!(b.status_line(now, false, false), "No photos yet");
    b.apply(&Event::Discovered { path: p("a.jpg") }, now);
    b.apply(&Event::Discovered { path: p("b.jpg") }, now);
    b.apply(
        &Event::Uploading {
            path: p("a.jpg"),
            sent: 3_000_000,
            total: 9_000_000,
            rate: 0.0,
            part_size: 1,
        },
        now,
    );
    assert_eq!(
        b.status_line(now, false, false),
        "Syncing 0 of 2 · 600.0 kB/s"
    );
    // While the walk goes on, the total is not known: how many were found so far is.
    let walking = |found, done| Event::Walking {
        path: p("lib"),
        found,
        done,
    };
    b.apply(&walking(2, false), now);
    assert_eq!(
        b.status_line(now, false, false),
        "Syncing 0 · found 2 so far · 600.0 kB/s"
    );
    assert_eq!(b.totals(now).walking, Some(2));
    assert_eq!(
        b.totals(now).all,
        2,
        "the walk's progress is not a file row"
    );
    b.apply(&walking(2, true), now);
    assert_eq!(b.totals(now).walking, None);
    assert!(b.status_line(now, true, false).starts_with("Paused"));
    assert!(b.status_line(now, false, true).starts_with("Offline"));
    for path in [p("a.jpg"), p("b.jpg")] {
        b.apply(&Event::Uploaded { path, remote_id: 1 }, now);
    }
    assert_eq!(b.status_line(now, false, false), "Up to date");
    b.apply(
        &Event::Failed {
            path: p("c.jpg"),
            reason: "x".into(),
            next_retry: None,
        },
        now,
    );
    assert_eq!(
        b.status_line(now, false, false),
        "Backed up 2 of 3 · 1 failed"
    );
}

#[test]
fn the_rate_history_spreads_bytes_over_its_window() {
    let t0 = Instant::now();
    let mut r = RateHistory::default();
    r.add(t0, 1000);
    r.add(t0 + Duration::from_secs(1), 1000);
    assert_eq!(r.current(t0 + Duration::from_secs(1)), 400.0);
    let series = r.series(t0 + Duration::from_secs(1), 60);
    assert_eq!(series.len(), 60);
    assert_eq!(series.iter().sum::<f64>() * 5.0, 2000.0);
    // Ten minutes later the old bytes have left the window.
    r.add(t0 + Duration::from_secs(600), 10);
    assert_eq!(
        r.series(t0 + Duration::from_secs(600), 60)
            .iter()
            .sum::<f64>()
            * 5.0,
        10.0
    );
}

#[test]
fn a_rescan_does_not_hide_what_this_session_did() {
    let b = board_with(&[
        Event::Uploaded {
            path: p("a.jpg"),
            remote_id: 1,
        },
        Event::AlreadySynced {
            path: p("a.jpg"),
            remote_id: 1,
            same_as: None,
        },
        Event::AlreadySynced {
            path: p("b.jpg"),
            remote_id: 1,
            same_as: Some(p("a.jpg")),
        },
    ]);
    assert_eq!(b.rows()[0].backed, Some(Backed::Uploaded));
    assert_eq!(b.rows()[1].backed, Some(Backed::Earlier));
    let m = b.rows()[1].matched.as_ref().unwrap();
    assert!(m.reason.contains("same bytes as a.jpg"), "{}", m.reason);
}
