//! The app's commands, event adapter and tray actions on Tauri's mock runtime (no window, no
//! display), against a real server on loopback.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
use tauri::{Listener, Manager};

/// A server on its own runtime, as a separate process would be.
fn start_server(dir: &std::path::Path) -> (String, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let token = "psk_mock_app".to_owned();
            let state = photosync_server::AppState::embedded_with_user(&dir, "me", &token)
                .await
                .unwrap();
            let url = photosync_server::spawn_local(state).await.unwrap();
            tx.send((url, token)).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

fn invoke(
    webview: &tauri::WebviewWindow<tauri::test::MockRuntime>,
    cmd: &str,
    args: Value,
) -> Result<Value, Value> {
    ipc(webview, cmd, args).map(|b| b.deserialize::<Value>().unwrap())
}

/// A command's answer as the bridge carries it (JSON, or raw bytes).
fn ipc(
    webview: &tauri::WebviewWindow<tauri::test::MockRuntime>,
    cmd: &str,
    args: Value,
) -> Result<tauri::ipc::InvokeResponseBody, Value> {
    get_ipc_response(
        webview,
        tauri::webview::InvokeRequest {
            cmd: cmd.into(),
            callback: tauri::ipc::CallbackFn(0),
            error: tauri::ipc::CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: tauri::ipc::InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
}

/// Every payload of `event` the app sends from now on.
fn record(app: &tauri::App<tauri::test::MockRuntime>, event: &str) -> Arc<Mutex<Vec<Value>>> {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = seen.clone();
    app.listen_any(event, move |e| {
        sink.lock()
            .unwrap()
            .push(serde_json::from_str(e.payload()).unwrap());
    });
    seen
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn commands_events_and_tray_actions_drive_the_service() {
    let server_dir = tempfile::tempdir().unwrap();
    let (url, token) = start_server(server_dir.path());
    let home = tempfile::tempdir().unwrap();
    // This test binary holds this one test, so the variable is ours alone.
    std::env::set_var("PHOTOSYNC_DESKTOP_DIR", home.path().join("app"));

    let mut app = photosync_desktop::run_app(mock_builder())
        .build(mock_context(noop_assets()))
        .unwrap();
    // One turn of the (mock) event loop runs the app's setup.
    #[allow(deprecated)]
    app.run_iteration(|_, _| {});
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .unwrap();
    let updates = record(&app, "board");

    // First run: not connected; each kind of bad connection is told apart.
    let o = invoke(&webview, "overview", json!({})).unwrap();
    assert_eq!(o["configured"], false);
    assert_eq!(o["status_line"], "Not connected to a server");
    let r = invoke(
        &webview,
        "test_connection",
        json!({"url": url, "token": "psk_bad"}),
    )
    .unwrap();
    assert_eq!(
        (r["ok"].clone(), r["kind"].clone()),
        (json!(false), json!("bad_token"))
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let r = invoke(
        &webview,
        "test_connection",
        json!({"url": nowhere, "token": token}),
    )
    .unwrap();
    assert_eq!(r["kind"], "unreachable");
    // Plain words; the library's account, with the address, is apart.
    let message = r["message"].as_str().unwrap();
    assert!(
        message.contains("nothing is listening") && !message.contains("127.0.0.1"),
        "{r}"
    );
    assert!(r["detail"].as_str().unwrap().contains("127.0.0.1"), "{r}");
    let r = invoke(
        &webview,
        "configure",
        json!({"url": url, "token": "psk_bad"}),
    )
    .unwrap();
    assert_eq!(
        (r["ok"].clone(), r["kind"].clone()),
        (json!(false), json!("bad_token"))
    );
    assert!(
        r["message"].as_str().unwrap().contains("refused the token"),
        "{r}"
    );
    assert_eq!(
        invoke(&webview, "overview", json!({})).unwrap()["configured"],
        false
    );
    let r = invoke(&webview, "configure", json!({"url": url, "token": token})).unwrap();
    assert_eq!(r["ok"], true, "{r}");
    wait_for("the account shown", || {
        invoke(&webview, "overview", json!({})).unwrap()["user"] == "me"
    });
    assert_eq!(
        invoke(&webview, "get_settings", json!({})).unwrap()["token"],
        "",
        "never sent back"
    );

    // A folder of real photos, one corrupt: backed up by its bytes.
    let photos = home.path().join("Pictures");
    std::fs::create_dir(&photos).unwrap();
    for n in ["aqua.jpg", "dune.jpg", "storm.jpg"] {
        std::fs::copy(photosync_testkit::photos_dir().join(n), photos.join(n)).unwrap();
    }
    std::fs::write(photos.join("corrupt.jpg"), b"\xFF\xD8\xFF\xE0\x00\x10JFIF").unwrap();
    // Not a photo: listed, not backed up.
    std::fs::write(photos.join("notes.txt"), b"shopping list\n").unwrap();
    let e = invoke(
        &webview,
        "add_folder",
        json!({"path": home.path().join("nope")}),
    )
    .unwrap_err();
    assert!(e.as_str().unwrap().contains("is not a folder"), "{e}");
    let e = invoke(&webview, "add_folder", json!({"path": "Pictures"})).unwrap_err();
    assert!(e.as_str().unwrap().contains("not a full path"), "{e}");
    invoke(&webview, "add_folder", json!({"path": photos})).unwrap();
    wait_for("uploaded", || {
        let o = invoke(&webview, "overview", json!({})).unwrap();
        o["totals"]["by_status"]["backed_up"] == 4
    });
    wait_for("the text file left out", || {
        let o = invoke(&webview, "overview", json!({})).unwrap();
        o["totals"]["by_status"]["skipped"] == 1
    });
    let folders = invoke(&webview, "folders", json!({})).unwrap();
    assert_eq!(folders[0]["files"], 5);
    let notes = invoke(
        &webview,
        "list",
        json!({"query": {"search": "notes", "offset": 0, "limit": 10}}),
    )
    .unwrap();
    assert_eq!(notes["rows"][0]["status"], "skipped", "{notes}");
    assert_eq!(
        notes["rows"][0]["reason"], "not a photo or video",
        "{notes}"
    );

    // The event adapter: batched updates with changed rows and totals.
    wait_for("a board event with the final totals", || {
        updates
            .lock()
            .unwrap()
            .iter()
            .any(|u| u["overview"]["totals"]["by_status"]["backed_up"] == 4)
    });
    // With nothing else happening, the rate decays to 0 and the window hears it.
    wait_for("a board event with the rate back to 0", || {
        updates.lock().unwrap().last().is_some_and(|u| {
            u["overview"]["totals"]["rate"] == 0.0
                && u["overview"]["totals"]["by_status"]["backed_up"] == 4
        })
    });
    let seen: std::collections::BTreeSet<u64> = updates
        .lock()
        .unwrap()
        .iter()
        .flat_map(|u| u["changed"].as_array().unwrap().clone())
        .map(|id| id.as_u64().unwrap())
        .collect();
    let all = invoke(
        &webview,
        "list",
        json!({"query": {"offset": 0, "limit": 100}}),
    )
    .unwrap();
    for row in all["rows"].as_array().unwrap() {
        let id = row["id"].as_u64().unwrap();
        assert!(
            seen.contains(&id),
            "{} never announced: {seen:?}",
            row["name"]
        );
    }
    // Thumbnails cross the bridge as JPEG bytes, not JSON; a file without a picture and an
    // unknown row are errors the window turns into a type badge.
    let id_of = |name: &str| {
        all["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["id"]
            .clone()
    };
    match ipc(&webview, "thumbnail", json!({ "id": id_of("aqua.jpg") })) {
        Ok(tauri::ipc::InvokeResponseBody::Raw(jpeg)) => {
            assert!(jpeg.starts_with(&[0xFF, 0xD8]), "not a JPEG");
            let (w, h) = image::load_from_memory(&jpeg)
                .unwrap()
                .to_rgb8()
                .dimensions();
            assert!(w.max(h) <= 112 && w.max(h) >= 64, "{w}×{h}");
        }
        other => panic!("thumbnail: {other:?}"),
    }
    assert!(invoke(&webview, "thumbnail", json!({ "id": id_of("notes.txt") })).is_err());
    assert!(invoke(&webview, "thumbnail", json!({ "id": 999_999 })).is_err());

    // Far fewer messages than engine events: they are batched (one a second at most while
    // only the rate changes).
    assert!(updates.lock().unwrap().len() < 80);

    let page = invoke(
        &webview,
        "list",
        json!({"query": {"search": "corrupt", "offset": 0, "limit": 10}}),
    )
    .unwrap();
    assert_eq!(page["total"], 1);
    let row = &page["rows"][0];
    assert_eq!(row["status"], "backed_up", "{row}");
    assert!(
        row["unidentified"].as_str().unwrap().contains("jpeg"),
        "{row}"
    );

    // A notification's click opens the window on its files: the window hears which.
    let shown = record(&app, "show-files");
    photosync_desktop::show_files(app.handle(), Some(photosync_board::Status::Failed));
    photosync_desktop::show_files(app.handle(), None);
    wait_for("both clicks heard", || shown.lock().unwrap().len() == 2);
    let heard = shown.lock().unwrap().clone();
    assert!(
        heard.contains(&json!("failed")) && heard.contains(&Value::Null),
        "{heard:?}"
    );

    // Tray actions: pause and resume reach the service.
    photosync_desktop::tray::on_menu(app.handle(), "pause");
    wait_for("paused", || {
        invoke(&webview, "overview", json!({})).unwrap()["paused"] == true
    });
    assert!(
        invoke(&webview, "overview", json!({})).unwrap()["status_line"]
            .as_str()
            .unwrap()
            .starts_with("Paused")
    );
    photosync_desktop::tray::on_menu(app.handle(), "pause");
    wait_for("resumed", || {
        invoke(&webview, "overview", json!({})).unwrap()["paused"] == false
    });

    // A drop goes through sync_paths and shows first.
    let dropped = home.path().join("dropped.jpg");
    std::fs::copy(photosync_testkit::photos_dir().join("wood.jpg"), &dropped).unwrap();
    invoke(&webview, "sync_paths", json!({"paths": [dropped]})).unwrap();
    wait_for("the drop is uploaded", || {
        let page = invoke(
            &webview,
            "list",
            json!({"query": {"offset": 0, "limit": 1}}),
        )
        .unwrap();
        page["rows"][0]["name"] == "dropped.jpg" && page["rows"][0]["status"] == "backed_up"
    });

    // A smaller copy of a picture the server has is left out, with why; forcing uploads it.
    let small = photos.join("aqua-small.jpg");
    std::fs::write(
        &small,
        photosync_testkit::make_copy(
            &std::fs::read(photos.join("aqua.jpg")).unwrap(),
            photosync_testkit::Copy::HalfSize,
        ),
    )
    .unwrap();
    invoke(&webview, "sync_paths", json!({"paths": [small]})).unwrap();
    let row_of = |name: &str| {
        let page = invoke(
            &webview,
            "list",
            json!({"query": {"search": name, "offset": 0, "limit": 5}}),
        )
        .unwrap();
        page["rows"][0].clone()
    };
    wait_for("the copy is matched", || {
        row_of("aqua-small")["backed"] == "same_picture"
    });
    assert_eq!(row_of("aqua-small")["status"], "backed_up");
    let row = row_of("aqua-small");
    assert_eq!(row["matched"]["kind"], "same_picture");
    assert_eq!(row["matched"]["name"], "aqua.jpg");
    assert!(row["matched"]["reason"]
        .as_str()
        .unwrap()
        .contains("at least as good"));
    invoke(&webview, "force_upload", json!({"path": small})).unwrap();
    wait_for("the forced copy is uploaded", || {
        row_of("aqua-small")["backed"] == "uploaded"
    });

    // Settings are saved; a bad command argument is an error, not a crash.
    let mut s = invoke(&webview, "get_settings", json!({})).unwrap();
    s["bandwidth_limit"] = json!(500_000);
    s["concurrency"] = json!(99);
    let stored = invoke(&webview, "update_settings", json!({"settings": s})).unwrap();
    // What was stored comes back, clamped, for the window to show.
    assert_eq!(stored["concurrency"], 16, "{stored}");
    assert_eq!(stored["token"], "", "never sent back");
    let now = invoke(&webview, "get_settings", json!({})).unwrap();
    assert_eq!(
        (now["bandwidth_limit"].clone(), now["concurrency"].clone()),
        (json!(500_000), json!(16))
    );
    assert!(invoke(&webview, "add_folder", json!({"wrong": 1})).is_err());
    // The window names files by row: it cannot open or reveal anything else.
    let e = invoke(&webview, "open_file", json!({"id": 99_999})).unwrap_err();
    assert!(e.as_str().unwrap().contains("no longer listed"), "{e}");

    // Removing the folder forgets its files in the window (the server keeps them).
    invoke(&webview, "remove_folder", json!({"path": photos})).unwrap();
    assert_eq!(invoke(&webview, "folders", json!({})).unwrap(), json!([]));
    let page = invoke(
        &webview,
        "list",
        json!({"query": {"offset": 0, "limit": 100}}),
    )
    .unwrap();
    let names: Vec<&str> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["dropped.jpg", "aqua-small.jpg"],
        "dropped files stay listed, wherever they are"
    );

    // What the server holds: every image the folder and the drops sent, newest first, with
    // a thumbnail each; bad ids and arguments are refused.
    let account = invoke(&webview, "account", json!({})).unwrap();
    let held = account["images"].as_u64().unwrap();
    assert!(held >= 3, "{account}");
    let loaded = invoke(&webview, "remote_load", json!({})).unwrap();
    assert_eq!(loaded["total"].as_u64(), Some(held));
    let page = invoke(&webview, "remote_page", json!({"offset": 0, "limit": 1000})).unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len() as u64, held);
    let days: Vec<&str> = items.iter().map(|i| i["day"].as_str().unwrap()).collect();
    assert!(
        days.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {days:?}"
    );
    let aqua = items.iter().find(|i| i["name"] == "aqua.jpg").unwrap()["id"].clone();
    match ipc(&webview, "remote_thumbnail", json!({ "id": aqua })) {
        Ok(tauri::ipc::InvokeResponseBody::Raw(bytes)) => assert_eq!(&bytes[..2], b"\xFF\xD8"),
        other => panic!("remote_thumbnail: {other:?}"),
    }
    assert!(invoke(&webview, "remote_thumbnail", json!({ "id": 999_999 })).is_err());
    assert!(invoke(
        &webview,
        "restore",
        json!({"to": "relative", "watch": false})
    )
    .is_err());
    let to = home.path().join("restored");
    invoke(
        &webview,
        "restore",
        json!({"to": to, "ids": [aqua], "watch": false}),
    )
    .unwrap();
    wait_for("the restore done", || {
        invoke(&webview, "overview", json!({})).unwrap()["restore"]["state"] == "done"
    });
    assert_eq!(
        std::fs::read(to.join("aqua.jpg")).unwrap(),
        std::fs::read(photos.join("aqua.jpg")).unwrap()
    );

    let state = app.state::<photosync_desktop::AppState>();
    tauri::async_runtime::block_on(state.service.stop());
}
