//! Launching the app a second time hands over to the first instance and exits; the first keeps
//! running. A real X display (Xvfb) and a private D-Bus session bus, which the single-instance
//! plugin uses on Linux.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{xvfb, Proc};

const APP: &str = env!("CARGO_BIN_EXE_photosync-desktop");

#[test]
fn a_second_launch_hands_over_and_exits() {
    let work = tempfile::tempdir().unwrap();
    let (_x, display) = xvfb();
    let (bus, address) = photosync_testkit::private_bus(work.path());
    let _bus = Proc(bus);
    let launch = |stderr: Stdio| {
        Command::new(APP)
            .env("DISPLAY", &display)
            .env("DBUS_SESSION_BUS_ADDRESS", address.trim())
            .env("PHOTOSYNC_DESKTOP_DIR", work.path())
            .env_remove("PHOTOSYNC_SERVER")
            .env_remove("PHOTOSYNC_TOKEN")
            .env_remove("PHOTOSYNC_FOLDERS")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    };
    let mut first = Proc(launch(Stdio::null()));
    // The first instance is up once its setup has written the settings.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !work.path().join("settings.json").exists() {
        assert!(
            Instant::now() < deadline,
            "the first instance never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    let mut second = launch(Stdio::piped());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second instance kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "the first instance must keep running"
    );
}
