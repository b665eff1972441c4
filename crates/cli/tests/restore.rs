//! `photosync restore` as a process against the real server process: a synced library comes
//! back whole on a "new computer", a SIGKILL mid-download resumes, and bad arguments exit 2.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use photosync_testkit::{add_user, photos_dir, ServerProcess};

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

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every file below `dir` by relative path, with its bytes and modification time.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                    std::fs::metadata(&p).unwrap().modified().unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn put(dir: &Path, rel: &str, bytes: &[u8], secs: u64) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn a_synced_library_is_restored_on_a_new_computer_and_the_next_sync_sends_nothing() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let old = tempfile::tempdir().unwrap();
    let lib = old.path().join("Pictures");
    let names: Vec<String> = std::fs::read_dir(photos_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg") || n.ends_with(".png"))
        .collect();
    assert!(names.len() >= 10);
    for (i, n) in names.iter().enumerate() {
        let folder = ["", "2019/", "2019/Summer/", "Phone/DCIM/"][i % 4];
        let bytes = std::fs::read(photos_dir().join(n)).unwrap();
        put(
            &lib,
            &format!("{folder}{n}"),
            &bytes,
            1_500_000_000 + i as u64 * 86_400,
        );
    }
    let before = tree(&lib);
    let old_state = old.path().join("state.db");
    let synced = photosync(
        &["sync", lib.to_str().unwrap()],
        &server.url,
        &token,
        &old_state,
    )
    .output()
    .unwrap();
    assert!(synced.status.success(), "{synced:?}");
    drop(old); // the old computer and its sync list are gone

    let new = tempfile::tempdir().unwrap();
    let state = new.path().join("state.db");
    let to = new.path().join("Restored");
    let restored = photosync(
        &[
            "restore",
            "--to",
            to.to_str().unwrap(),
            "--concurrency",
            "4",
        ],
        &server.url,
        &token,
        &state,
    )
    .output()
    .unwrap();
    let out = stdout(&restored);
    assert!(restored.status.success(), "{out} {restored:?}");
    assert!(
        out.starts_with(&format!("restored {} (", names.len())),
        "{out}"
    );
    assert!(
        out.contains(&format!("failed 0, of {} on the server", names.len())),
        "{out}"
    );
    // Without a terminal, one line per file on stderr.
    let err = String::from_utf8_lossy(&restored.stderr);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("restored\t")).count(),
        names.len(),
        "{err}"
    );
    assert_eq!(tree(&to), before, "same bytes, relative paths and times");

    let again = photosync(&["sync", to.to_str().unwrap()], &server.url, &token, &state)
        .output()
        .unwrap();
    assert!(
        stdout(&again).starts_with(&format!("uploaded 0, already synced {}", names.len())),
        "{}",
        stdout(&again)
    );
    let status = photosync(&["status"], &server.url, &token, &state)
        .output()
        .unwrap();
    assert!(
        stdout(&status).contains(&format!("{} files in the sync list", names.len())),
        "{}",
        stdout(&status)
    );
    // Filters: one folder by glob, and nothing past the last day.
    let some = new.path().join("Some");
    let filtered = photosync(
        &[
            "restore",
            "--to",
            some.to_str().unwrap(),
            "--match",
            "phone/*",
            "--until",
            "2030-01-01",
        ],
        &server.url,
        &token,
        &state,
    )
    .output()
    .unwrap();
    let expected = names.iter().skip(3).step_by(4).count();
    assert!(
        stdout(&filtered).starts_with(&format!("restored {expected} (")),
        "{}",
        stdout(&filtered)
    );
    assert_eq!(tree(&some).len(), expected);
}

#[test]
fn a_killed_restore_resumes_and_never_leaves_a_partial_file_under_the_name() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("lib");
    let mut clip = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom".to_vec();
    clip.extend(photosync_testkit::noise(4 << 20, 8));
    put(&lib, "clip.mp4", &clip, 1_600_000_000);
    let state = local.path().join("state.db");
    let synced = photosync(
        &["sync", lib.to_str().unwrap()],
        &server.url,
        &token,
        &state,
    )
    .output()
    .unwrap();
    assert!(synced.status.success());

    let to = local.path().join("to");
    let partial_len = || {
        std::fs::read_dir(&to)
            .ok()
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".photosync-restore"))
            .map(|p| std::fs::metadata(p).unwrap().len())
    };
    let mut child = photosync(
        &[
            "restore",
            "--to",
            to.to_str().unwrap(),
            "--bandwidth-limit",
            "1000000",
        ],
        &server.url,
        &token,
        &state,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial_len().unwrap_or(0) < 1 << 20 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = partial_len().unwrap();
    assert!(kept < clip.len() as u64);
    assert!(
        !to.join("clip.mp4").exists(),
        "nothing under the final name"
    );

    let done = photosync(
        &["restore", "--to", to.to_str().unwrap()],
        &server.url,
        &token,
        &state,
    )
    .output()
    .unwrap();
    assert!(done.status.success(), "{}", stdout(&done));
    assert!(
        stdout(&done).starts_with("restored 1 ("),
        "{}",
        stdout(&done)
    );
    assert_eq!(std::fs::read(to.join("clip.mp4")).unwrap(), clip);
    assert_eq!(partial_len(), None, "the partial file is gone");
    // The same file is restored beside the original sync's, and recognised as it.
    let again = photosync(
        &["restore", "--to", to.to_str().unwrap()],
        &server.url,
        &token,
        &state,
    )
    .output()
    .unwrap();
    assert!(
        stdout(&again).starts_with("restored 0 (0 B), already in place 1"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn bad_restore_arguments_exit_2_before_anything_is_written() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let state = local.path().join("state.db");
    let to = local.path().join("to");
    for args in [
        vec!["--since", "2021-13-01"],
        vec!["--until", "yesterday"],
        vec!["--since", "2022-01-01", "--until", "2021-01-01"],
        vec!["--match", "[unclosed"],
    ] {
        let mut all = vec!["restore", "--to", to.to_str().unwrap()];
        all.extend(&args);
        let o = photosync(&all, &server.url, &token, &state)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(!String::from_utf8_lossy(&o.stderr).is_empty());
    }
    let o = photosync(
        &["restore", "--to", to.to_str().unwrap()],
        &server.url,
        "psk_wrong",
        &state,
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused the token"));
    assert!(!to.exists(), "nothing made for a refused run");
}
