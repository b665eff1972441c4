//! End to end: the real app in a real window under Xvfb, driven through WebDriver
//! (tauri-driver + WebKitWebDriver), against a real server on loopback started here.
//! Screenshots of the main states go to target/screenshots/.
//!
//! Needs Xvfb, tauri-driver and WebKitWebDriver (`scripts/setup` installs them).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::{json, Value};

mod common;
use common::{connect_with, invoke, js, tool, wait_js, xvfb, Proc, TestServer};

const APP: &str = env!("CARGO_BIN_EXE_photosync-desktop");

/// Polls `f` (a check outside the page) until it holds, for up to 60 s.
async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn row_status(name: &str) -> String {
    format!("(document.querySelector('.row[data-name=\"{name}\"]') || {{dataset: {{}}}}).dataset.status")
}

async fn fill(c: &Client, id: &str, text: &str) {
    let el = c.find(Locator::Id(id)).await.unwrap();
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

/// Clicks the element with this id, and checks that the page received the click.
///
/// Seen once in CI: a WebDriver click reported success, yet no click event reached the page
/// (the pause button never paused, and nothing else in the app had changed). A click the page
/// never saw is tried once more, and said; a click the page saw is never repeated, so an app
/// that ignores a click still fails the test.
async fn click(c: &Client, id: &str) {
    for attempt in 0..2 {
        js(
            c,
            "if (!window.__clicks) { window.__clicks = []; \
             document.addEventListener('click', (e) => { for (const n of e.composedPath()) if (n.id) window.__clicks.push(n.id); }, true); } \
             window.__clicks.length = 0; return true;",
        )
        .await;
        c.find(Locator::Id(id))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let seen = format!("window.__clicks.includes('{id}')");
        for _ in 0..25 {
            if js(c, &format!("return {seen};")).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        #[allow(clippy::print_stderr)] // said in the test's output, beside a failure's
        {
            eprintln!("the click on #{id} did not reach the page (attempt {attempt})");
        }
    }
    panic!("the page never received a click on #{id}");
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    // WebKitWebDriver takes a screenshot after the page's next rendering update; a page with
    // nothing changing (no upload under way) has none, and the capture would wait forever. A
    // pixel that changes now and then, out of sight, keeps updates coming.
    js(
        c,
        "if (!window.__tick) { const d = document.createElement('div'); \
         d.style.cssText = 'position:fixed;left:0;top:0;width:1px;height:1px;opacity:0.01;pointer-events:none'; \
         document.body.appendChild(d); \
         window.__tick = setInterval(() => { d.style.background = d.style.background === 'red' ? 'blue' : 'red'; }, 100); }",
    )
    .await;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, c.screenshot().await.unwrap()).unwrap();
    path
}

/// A blank or single-colour capture has next to no distinct colours or contrast.
fn assert_not_blank(path: &Path) {
    let img = image::open(path).unwrap().to_rgb8();
    assert!(
        img.width() >= 600 && img.height() >= 400,
        "{}: tiny",
        path.display()
    );
    let mut colours = std::collections::HashSet::new();
    let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
    for p in img.pixels().step_by(7) {
        colours.insert(p.0);
        let l = 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
        sum += l;
        sq += l * l;
        n += 1.0;
    }
    let sd = (sq / n - (sum / n).powi(2)).max(0.0).sqrt();
    assert!(
        colours.len() > 200 && sd > 20.0,
        "{} looks blank: {} colours, luma sd {sd:.1}",
        path.display(),
        colours.len()
    );
}

/// JavaScript that opens the context menu of the element `element` evaluates to.
fn right_click(element: &str) -> String {
    format!(
        "{element}.dispatchEvent(new MouseEvent('contextmenu', {{ bubbles: true, cancelable: true, clientX: 300, clientY: 200 }}));"
    )
}

fn copy_photo(name: &str, to: &Path) {
    std::fs::copy(photosync_testkit::photos_dir().join(name), to).unwrap();
}

/// One window at a time: the tests of this file each start a display, a driver and the app,
/// which together would crowd two cores.
static ONE_WINDOW: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_syncs_a_folder_shows_why_and_survives_pause_drops_and_a_lost_server() {
    let _one = ONE_WINDOW.lock().await;
    let work = tempfile::tempdir().unwrap();
    let (mut server, token) = TestServer::start(&work.path().join("server")).await;

    // The library: real photos, a corrupt image and a file that cannot be read.
    let library = work.path().join("Pictures");
    std::fs::create_dir(&library).unwrap();
    for n in [
        "aqua.jpg",
        "dune.jpg",
        "storm.jpg",
        "coffee.jpg",
        "garden.jpg",
        "wood.jpg",
    ] {
        copy_photo(n, &library.join(n));
    }
    let mut corrupt =
        std::fs::read(photosync_testkit::photos_dir().join("castle-maintenon.jpg")).unwrap();
    corrupt.truncate(600);
    std::fs::write(library.join("corrupt.jpg"), corrupt).unwrap();
    // Not a photo or video: listed as such, not backed up.
    std::fs::write(library.join("LICENSES.md"), "# Licenses\n\nMIT\n").unwrap();
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if root {
        // Root reads any file: a link to nothing is what cannot be read.
        std::os::unix::fs::symlink(work.path().join("gone.jpg"), library.join("unreadable.jpg"))
            .unwrap();
    } else {
        use std::os::unix::fs::PermissionsExt;
        copy_photo("brick.jpg", &library.join("unreadable.jpg"));
        std::fs::set_permissions(
            library.join("unreadable.jpg"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
    }

    let (_x, display) = xvfb();
    // A private session bus with a real notification daemon on the display (dunst), so that
    // a notification can be clicked.
    let bus_dir = work.path().join("bus");
    std::fs::create_dir(&bus_dir).unwrap();
    let (bus, bus_address) = photosync_testkit::private_bus(&bus_dir);
    let _bus = Proc(bus);
    let _dunst = Proc(
        Command::new(tool("dunst"))
            .env("DISPLAY", &display)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dunstctl = |args: &[&str]| -> String {
        let out = Command::new(tool("dunstctl"))
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let displayed = || dunstctl(&["count", "displayed"]).parse::<u32>().ok();
    wait_until("dunst answers", || displayed().is_some()).await;
    let (_driver, c) = connect_with(
        APP,
        &display,
        &work.path().join("app"),
        &[("DBUS_SESSION_BUS_ADDRESS", &bus_address)],
    )
    .await;

    // First run: a dialog of steps, and nothing else live behind it.
    wait_js(
        &c,
        "the first-run steps",
        "document.getElementById('setup').open && document.getElementById('setup').dataset.step === 'address'",
    )
    .await;
    assert_eq!(
        js(&c, "return [document.getElementById('main').inert, document.getElementById('sync-now').disabled]").await,
        json!([true, true]),
        "the main window's controls wait for a server"
    );
    // Escape does not leave the first run: there is nothing behind it yet.
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{e00c}")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        js(&c, "return document.getElementById('setup').open").await,
        json!(true)
    );
    // The address without a scheme, and Enter goes on.
    let address = server.url().trim_start_matches("http://").to_owned();
    fill(&c, "server-url", &format!("{address}\u{e007}")).await;
    wait_js(
        &c,
        "the token step, the address with http:// in front",
        &format!("document.getElementById('setup').dataset.step === 'token' && document.getElementById('server-url').value === '{}'", server.url()),
    )
    .await;
    let first_run = screenshot(&c, "first-run").await;
    // The token can be shown; a wrong one is told apart in plain words.
    fill(&c, "token", "psk_not_this_one").await;
    assert_eq!(
        js(&c, "return document.getElementById('token').type").await,
        json!("password")
    );
    click(&c, "token-show").await;
    assert_eq!(
        js(&c, "return document.getElementById('token').type").await,
        json!("text")
    );
    click(&c, "test-connection").await;
    wait_js(
        &c,
        "the bad token message",
        "document.getElementById('connection-message').textContent.includes('refused the token')",
    )
    .await;
    fill(&c, "token", &format!("{token}\u{e007}")).await;
    wait_js(
        &c,
        "the folders step",
        "document.getElementById('setup').dataset.step === 'folders'",
    )
    .await;
    // A relative path is refused with why; a full one is added (the native dialog is out of
    // WebDriver's reach).
    fill(&c, "setup-folder-path", "Pictures").await;
    click(&c, "setup-add-folder-path").await;
    wait_js(
        &c,
        "the relative path refused",
        "document.getElementById('connection-message').textContent.includes('not a full path')",
    )
    .await;
    fill(&c, "setup-folder-path", library.to_str().unwrap()).await;
    click(&c, "setup-add-folder-path").await;
    wait_js(
        &c,
        "the folder listed in the step",
        "document.querySelectorAll('#setup-folders li[data-path]').length === 1",
    )
    .await;
    click(&c, "folders-next").await;
    wait_js(
        &c,
        "what happens next",
        "document.getElementById('setup').dataset.step === 'next'",
    )
    .await;
    let first_run_next = screenshot(&c, "first-run-next").await;
    click(&c, "setup-done").await;
    wait_js(
        &c,
        "the steps closed, the window live, the account shown",
        "!document.getElementById('setup').open && !document.getElementById('main').inert && document.getElementById('connection').textContent.startsWith('me on http://')",
    )
    .await;
    // Filters are buttons the keyboard reaches. One chosen before the sync fills in must
    // not go stale: its rows appear as they enter it.
    assert_eq!(
        js(
            &c,
            "return document.getElementById('filter-backed_up').tagName"
        )
        .await,
        json!("BUTTON")
    );
    c.find(Locator::Id("filter-backed_up"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // A link to nothing holds nothing to back up: it is reported (skipped), not a failure.
    // The corrupt image is backed up by its bytes.
    // The text file is left out (skipped) with its reason.
    let (failed, skipped) = if root { (0, 2) } else { (1, 1) };
    wait_js(
        &c,
        "the filtered list keeps up with the sidebar",
        "document.querySelector('#filter-backed_up .n').textContent === '7' && \
         document.querySelectorAll('.row[data-status=backed_up]').length === 7 && \
         document.getElementById('list-count').textContent === '7 files'",
    )
    .await;
    click(&c, "filter-all").await;
    wait_js(
        &c,
        "every photo backed up and the bad files failed or were skipped",
        &format!(
            "document.querySelectorAll('.row[data-status=backed_up]').length === 7 && \
             document.querySelectorAll('.row[data-status=failed]').length === {failed} && \
             document.querySelectorAll('.row[data-status=skipped]').length === {skipped}"
        ),
    )
    .await;
    let reasons = js(&c, "return [...document.querySelectorAll('.row[data-status=failed] .detail')].map(d => d.textContent)").await;
    assert!(
        reasons
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().len() > 10),
        "{reasons}"
    );
    let corrupt = js(
        &c,
        "return document.querySelector('.row[data-name=\"corrupt.jpg\"] .detail').textContent",
    )
    .await;
    assert!(
        corrupt
            .as_str()
            .unwrap()
            .starts_with("backed up, not identified: ")
            && corrupt.to_string().contains("jpeg"),
        "the corrupt file says why it has no picture identity: {corrupt}"
    );
    let licenses = js(
        &c,
        "return document.querySelector('.row[data-name=\"LICENSES.md\"] .detail').textContent",
    )
    .await;
    assert_eq!(licenses, json!("not a photo or video"), "the row says why");
    assert_eq!(
        js(
            &c,
            "return document.getElementById('filter-backed_up').textContent"
        )
        .await,
        json!("Backed up7")
    );
    assert_eq!(server.images().await, 7, "the server holds them");
    // A failure is not done.
    wait_js(
        &c,
        "the folder's counts",
        &format!(
            "document.querySelector('#folders li .count').textContent === '{}/9'",
            9 - failed
        ),
    )
    .await;
    // Thumbnails are drawn as their bytes arrive.
    wait_js(
        &c,
        "six thumbnails drawn",
        "document.querySelectorAll('.row canvas.thumb[data-drawn]').length >= 6",
    )
    .await;
    let main = screenshot(&c, "main").await;
    // The activity of the last days, by day.
    click(&c, "show-activity").await;
    wait_js(
        &c,
        "the activity view",
        "document.querySelectorAll('#activity-list .entry.uploaded').length === 7 && document.querySelector('#activity-list h3').textContent === 'Today'",
    )
    .await;
    let activity = screenshot(&c, "activity").await;
    click(&c, "close-activity").await;
    // A row's own menu (not WebKit's Back/Forward/Reload), with what applies to it.
    js(
        &c,
        &format!(
            "{} return true;",
            right_click("document.querySelector('.row[data-name=\"aqua.jpg\"]')")
        ),
    )
    .await;
    assert_eq!(
        js(
            &c,
            "return [...document.querySelectorAll('.menu button')].map(b => b.dataset.action)"
        )
        .await,
        json!(["reveal", "open", "copy"])
    );
    let menu = screenshot(&c, "row-menu").await;
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{e00c}")
        .await
        .unwrap();
    wait_js(&c, "the menu closed", "!document.querySelector('.menu')").await;
    let failed_menu = js(
        &c,
        &format!(
            "const r = document.querySelector('.row[data-status=failed]'); if (!r) return null; {} const a = [...document.querySelectorAll('.menu button')].map(b => b.dataset.action); document.dispatchEvent(new KeyboardEvent('keydown', {{ key: 'Escape' }})); return a;",
            right_click("r")
        ),
    )
    .await;
    if !root {
        assert_eq!(failed_menu, json!(["reveal", "open", "copy", "retry"]));
    }

    // A notification's click sends "show-files": the window shows those files.
    js(
        &c,
        "window.__TAURI__.event.emit('show-files', 'skipped'); return true;",
    )
    .await;
    let files = if skipped == 1 { "1 file" } else { "2 files" };
    wait_js(
        &c,
        "the list on the notice's files",
        &format!("document.getElementById('filter-skipped').getAttribute('aria-pressed') === 'true' && document.getElementById('list-count').textContent === '{files}'"),
    )
    .await;

    // A renamed copy is recognised, with the reason.
    // Under the "Backed up" filter: the row must appear when it enters it, although the
    // number of files changed before that (when it was found).
    click(&c, "filter-backed_up").await;
    copy_photo("aqua.jpg", &library.join("renamed-copy.jpg"));
    wait_js(
        &c,
        "the renamed copy is known, in the filtered list",
        &format!(
            "{} === 'backed_up' && document.getElementById('list-count').textContent === '8 files'",
            row_status("renamed-copy.jpg")
        ),
    )
    .await;
    click(&c, "filter-all").await;
    let why = js(
        &c,
        "return document.querySelector('.row[data-name=\"renamed-copy.jpg\"] .detail').textContent",
    )
    .await;
    assert!(
        why.as_str().unwrap().contains("same bytes as aqua.jpg"),
        "{why}"
    );
    assert_eq!(server.images().await, 7);

    // Pause holds uploads; resume lets them go.
    click(&c, "pause").await;
    wait_js(
        &c,
        "paused",
        "document.getElementById('status-line').textContent.startsWith('Paused')",
    )
    .await;
    copy_photo("burst-pan-0.jpg", &library.join("while-paused.jpg"));
    wait_js(
        &c,
        "queued while paused",
        &format!("{} === 'queued'", row_status("while-paused.jpg")),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        js(&c, &format!("return {}", row_status("while-paused.jpg"))).await,
        json!("queued")
    );
    assert_eq!(server.images().await, 7, "nothing uploaded while paused");
    assert_eq!(
        js(&c, "return document.getElementById('pause').textContent").await,
        json!("Resume")
    );
    click(&c, "pause").await;
    wait_js(
        &c,
        "uploaded after resume",
        &format!("{} === 'backed_up'", row_status("while-paused.jpg")),
    )
    .await;

    // A full account fails an upload, as root too. Its notification, clicked, opens the
    // window on the failed files. Retry meets the same failure, and its button is live again
    // afterwards; once there is room, Retry backs the file up.
    dunstctl(&["close-all"]);
    server.set_quota(Some(1)).await;
    copy_photo("moon.jpg", &library.join("no-room.jpg"));
    let retry_button =
        "document.querySelector('.row[data-name=\"no-room.jpg\"] button[data-action=retry]')";
    wait_js(
        &c,
        "the upload refused for want of room",
        &format!(
            "{} === 'failed' && {retry_button} !== null",
            row_status("no-room.jpg")
        ),
    )
    .await;
    wait_until("the failure notified", || displayed() >= Some(1)).await;
    dunstctl(&["action", "0"]);
    wait_js(
        &c,
        "the window on the failed files",
        "document.getElementById('filter-failed').getAttribute('aria-pressed') === 'true'",
    )
    .await;
    let tries = |n: &str| format!("{} === '{n}'", row_status("no-room.jpg"));
    // The click disables the button while its command runs; the retry (which ends failed
    // again, the row as it was) must leave it live.
    let disabled = js(
        &c,
        &format!("{retry_button}.click(); return {retry_button}.disabled;"),
    )
    .await;
    assert_eq!(
        disabled,
        json!(true),
        "the button is disabled while it runs"
    );
    wait_js(
        &c,
        "the retry failed again, its button live",
        &format!(
            "{} && {retry_button} !== null && !{retry_button}.disabled",
            tries("failed")
        ),
    )
    .await;
    server.set_quota(None).await;
    click(&c, "filter-all").await;
    // The app's own retry (every few seconds while a file fails) may take it first: then the
    // row has no Retry button any more, and the file goes up all the same.
    js(
        &c,
        &format!("const b = {retry_button}; if (b) b.click(); return true;"),
    )
    .await;
    wait_js(&c, "backed up once there is room", &tries("backed_up")).await;

    // A drop, through the same entry point the window's drop handler uses; shown first.
    let dropped = work.path().join("dropped.jpg");
    copy_photo("european-honey-bee.jpg", &dropped);
    let r = invoke(&c, "sync_paths", json!({ "paths": [dropped] })).await;
    assert_eq!(r, Value::Null, "{r}");
    wait_js(
        &c,
        "the dropped file on top, uploaded",
        "(() => { const r = document.querySelector('.row[data-name=\"dropped.jpg\"]'); return r && r.style.top === '0px' && r.dataset.status === 'backed_up' && r.classList.contains('dropped'); })()",
    )
    .await;
    let after_drop = screenshot(&c, "dropped").await;

    // The server goes away mid-sync: offline, then back by itself.
    server.go_away().await;
    copy_photo("ladybird.jpg", &library.join("while-away.jpg"));
    wait_js(
        &c,
        "offline shown",
        "!document.getElementById('offline').classList.contains('hidden')",
    )
    .await;
    let offline = screenshot(&c, "offline").await;
    server.come_back().await;
    wait_js(
        &c,
        "online again",
        "document.getElementById('offline').classList.contains('hidden')",
    )
    .await;
    wait_js(
        &c,
        "the file from the outage uploaded",
        &format!("{} === 'backed_up'", row_status("while-away.jpg")),
    )
    .await;
    assert_eq!(server.images().await, 11);

    // "Change server…" can be left with Cancel and with Escape, changing nothing.
    click(&c, "open-settings").await;
    wait_js(
        &c,
        "settings open",
        "document.getElementById('settings').open",
    )
    .await;
    // The About line names this build: the release and the commit.
    let about = format!(
        "Photosync {} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("PHOTOSYNC_COMMIT")
    );
    wait_js(
        &c,
        "the About line",
        &format!("document.getElementById('about').textContent === '{about}'"),
    )
    .await;
    click(&c, "change-server").await;
    wait_js(
        &c,
        "the address step",
        "document.getElementById('setup').open",
    )
    .await;
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{e00c}")
        .await
        .unwrap();
    wait_js(
        &c,
        "Escape closed it",
        "!document.getElementById('setup').open",
    )
    .await;
    click(&c, "open-settings").await;
    click(&c, "change-server").await;
    wait_js(
        &c,
        "the address step again",
        "document.getElementById('setup').open",
    )
    .await;
    c.find(Locator::Css("#step-address .cancel-setup"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "Cancel closed it",
        "!document.getElementById('setup').open",
    )
    .await;
    assert!(js(
        &c,
        "return document.getElementById('connection').textContent"
    )
    .await
    .as_str()
    .unwrap()
    .ends_with(&server.url()));

    // The window at the smallest width people use, and a large one: the header on one row.
    let mut sized = Vec::new();
    for (w, h) in [(800u32, 600u32), (1280, 800)] {
        c.set_window_size(w, h).await.unwrap();
        wait_js(
            &c,
            "the new size",
            &format!("window.innerWidth <= {w} && window.innerWidth > {w} - 40"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let header = js(&c, "const r = document.querySelector('header').getBoundingClientRect(); const h = document.getElementById('hide').getBoundingClientRect(); const p = document.getElementById('pause').getBoundingClientRect(); return [r.height, h.top === p.top, h.right <= window.innerWidth];").await;
        assert_eq!(header[1], json!(true), "{w}: the header wraps: {header}");
        assert_eq!(header[2], json!(true), "{w}: Hide is cut off: {header}");
        assert!(
            header[0].as_f64().unwrap() < 70.0,
            "{w}: a tall header: {header}"
        );
        sized.push(screenshot(&c, &format!("main-{w}x{h}")).await);
    }

    c.close().await.unwrap();
    drop(_driver);

    // Dark mode follows the system's (here GTK's) preference.
    let (_driver, c) = connect_with(
        APP,
        &display,
        &work.path().join("app"),
        &[("GTK_THEME", "Adwaita:dark")],
    )
    .await;
    wait_js(
        &c,
        "the library listed again",
        "document.querySelectorAll('.row[data-status=backed_up]').length >= 8",
    )
    .await;
    assert_eq!(
        js(&c, "return [matchMedia('(prefers-color-scheme: dark)').matches, getComputedStyle(document.body).backgroundColor]").await,
        json!([true, "rgb(20, 24, 31)"])
    );
    let dark = screenshot(&c, "main-dark").await;
    c.close().await.unwrap();

    for shot in [
        &first_run,
        &first_run_next,
        &main,
        &activity,
        &menu,
        &after_drop,
        &offline,
        &dark,
    ]
    .into_iter()
    .chain(&sized)
    {
        assert_not_blank(shot);
    }
}

/// A new computer: the account already holds a library. The first run offers to restore it
/// and does; the "On the server" view shows the server's pictures with thumbnails, opens one
/// at full size, and downloads a selection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_computer_restores_the_account_and_browses_what_the_server_holds() {
    let _one = ONE_WINDOW.lock().await;
    let work = tempfile::tempdir().unwrap();
    let (server, token) = TestServer::start(&work.path().join("server")).await;
    // The old computer's library, backed up through the engine.
    let old = work.path().join("old");
    let names = [
        "aqua.jpg",
        "dune.jpg",
        "storm.jpg",
        "coffee.jpg",
        "garden.jpg",
        "wood.jpg",
        "brick.jpg",
        "castle-maintenon.jpg",
    ];
    for (i, n) in names.iter().enumerate() {
        let dir = old.join(["", "2019", "2020/Summer"][i % 3]);
        std::fs::create_dir_all(&dir).unwrap();
        copy_photo(n, &dir.join(n));
    }
    let engine = photosync_engine::Engine::new(
        photosync_engine::Options::new(
            photosync_engine::ServerConfig {
                url: server.url(),
                token: token.clone(),
            },
            work.path().join("old-state.db"),
        ),
        std::sync::Arc::new(|_| {}),
    )
    .unwrap();
    let synced = engine.sync(std::slice::from_ref(&old)).await;
    assert_eq!(synced.uploaded, names.len(), "{synced:?}");
    assert_eq!(server.images().await, names.len());

    let (_x, display) = xvfb();
    let (_driver, c) = connect_with(APP, &display, &work.path().join("app"), &[]).await;
    wait_js(
        &c,
        "the first-run steps",
        "document.getElementById('setup').open && document.getElementById('setup').dataset.step === 'address'",
    )
    .await;
    fill(&c, "server-url", &format!("{}\u{e007}", server.url())).await;
    wait_js(
        &c,
        "the token step",
        "document.getElementById('setup').dataset.step === 'token'",
    )
    .await;
    fill(&c, "token", &format!("{token}\u{e007}")).await;
    wait_js(
        &c,
        "the offer to restore",
        "document.getElementById('setup').dataset.step === 'restore' && \
         document.getElementById('restore-offer').textContent.includes('8 photos')",
    )
    .await;
    let offer = screenshot(&c, "first-run-restore").await;
    assert_not_blank(&offer);
    let restored = work.path().join("Restored");
    fill(&c, "first-restore-path", restored.to_str().unwrap()).await;
    click(&c, "first-restore").await;
    wait_js(
        &c,
        "the folders step",
        "document.getElementById('setup').dataset.step === 'folders'",
    )
    .await;
    click(&c, "folders-next").await;
    wait_js(
        &c,
        "what happens next",
        "document.getElementById('setup').dataset.step === 'next'",
    )
    .await;
    click(&c, "setup-done").await;
    wait_js(
        &c,
        "the restore finished, said in the window",
        "document.getElementById('restore-progress').dataset.state === 'done' && \
         document.getElementById('restore-text').textContent.startsWith('Restored 8 files')",
    )
    .await;
    for (i, n) in names.iter().enumerate() {
        let rel = Path::new(["", "2019", "2020/Summer"][i % 3]).join(n);
        assert_eq!(
            std::fs::read(restored.join(&rel)).unwrap(),
            std::fs::read(old.join(&rel)).unwrap(),
            "{}",
            rel.display()
        );
    }
    // The restored folder is backed up from now on, and nothing in it goes up again.
    wait_js(
        &c,
        "the restored folder backed up",
        "document.querySelector('#filter-backed_up .n').textContent === '8'",
    )
    .await;
    assert_eq!(server.images().await, names.len(), "nothing uploaded twice");
    let uploaded = js(&c, "return [...document.querySelectorAll('.row .detail')].filter(d => d.textContent.startsWith('uploaded')).length").await;
    assert_eq!(uploaded, json!(0), "no row says it was uploaded");

    // The server view: every picture as a drawn thumbnail, newest first, with the sizes.
    click(&c, "show-server").await;
    wait_js(
        &c,
        "the server's thumbnails drawn",
        "document.querySelectorAll('#grid .tile canvas[data-drawn=yes]').length === 8 && \
         document.getElementById('server-count').textContent.startsWith('8 photos')",
    )
    .await;
    let months = js(
        &c,
        "return document.getElementById('server-month').options.length",
    )
    .await;
    assert!(
        months.as_u64().unwrap() >= 2,
        "a month to jump to: {months}"
    );
    let view = screenshot(&c, "server-view").await;
    assert_not_blank(&view);
    // One picture at full size.
    js(&c, "document.querySelector('#grid .tile[data-name=\"garden.jpg\"]').dispatchEvent(new MouseEvent('dblclick', { bubbles: true }))").await;
    wait_js(
        &c,
        "the full picture drawn",
        "document.getElementById('viewer').open && document.getElementById('viewer-canvas').dataset.drawn === 'yes' && document.getElementById('viewer-canvas').width > 256",
    )
    .await;
    let full = screenshot(&c, "server-full").await;
    assert_not_blank(&full);
    click(&c, "viewer-close").await;
    // Two selected, downloaded into another folder.
    for n in ["aqua.jpg", "wood.jpg"] {
        js(
            &c,
            &format!("document.querySelector('#grid .tile[data-name=\"{n}\"]').click()"),
        )
        .await;
    }
    wait_js(
        &c,
        "two selected",
        "document.querySelectorAll('#grid .tile.selected').length === 2 && !document.getElementById('download-selected').disabled",
    )
    .await;
    click(&c, "download-selected").await;
    let picked = work.path().join("Picked");
    fill(&c, "restore-path", picked.to_str().unwrap()).await;
    click(&c, "restore-start").await;
    wait_js(
        &c,
        "the selection downloaded",
        "document.getElementById('restore-progress').dataset.state === 'done' && \
         document.getElementById('restore-text').textContent.startsWith('Restored 2 files')",
    )
    .await;
    assert_eq!(
        std::fs::read(picked.join("aqua.jpg")).unwrap(),
        std::fs::read(old.join("aqua.jpg")).unwrap()
    );
    assert!(picked.join("2019/wood.jpg").exists() || picked.join("2020/Summer/wood.jpg").exists());
    assert!(!picked.join("dune.jpg").exists() && !picked.join("2019/dune.jpg").exists());
    c.close().await.unwrap();
}
