//! A 1,000-file folder syncs through the real `photosync` process, and the client's peak memory
//! does not grow with the number of files. Its own test binary, so no other test's processes
//! run beside it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use photosync_testkit::{add_user, distinct_photos, ServerProcess};

const SERVER: &str = env!("CARGO_BIN_EXE_photosync-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_photosync");

struct Run {
    stdout: String,
    success: bool,
    /// Peak resident memory of the process, in MB.
    peak_mb: f64,
}

/// Runs `photosync ARGS` to the end and reads its peak RSS from the kernel's accounting.
#[allow(unsafe_code)]
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its peak memory
fn photosync(args: &[&str], server: &str, token: &str, state: &Path) -> Run {
    use std::io::Read;
    let mut child = Command::new(CLIENT)
        .args(args)
        .env("PHOTOSYNC_SERVER", server)
        .env("PHOTOSYNC_TOKEN", token)
        .env("PHOTOSYNC_STATE", state)
        .env("PHOTOSYNC_CONFIG", state.with_extension("toml"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and wait4 writes into the two locals it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    Run {
        stdout,
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        peak_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

fn counts(summary: &str) -> Vec<usize> {
    let first = summary.lines().next().unwrap_or_default();
    first
        .split(", ")
        .filter_map(|part| part.rsplit(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn a_thousand_files_sync_with_bounded_client_memory() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    // The small run has an account of its own: its pictures are among the large run's.
    let other = add_user(Path::new(SERVER), data.path(), "other");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let small = distinct_photos(&local.path().join("small"), 100, 960, 640);
    let large = distinct_photos(&local.path().join("large"), 1000, 960, 640);
    eprintln!("libraries written: {:?}", started.elapsed());

    let small_run = photosync(
        &["sync", small.to_str().unwrap()],
        &server.url,
        &other,
        &local.path().join("small.db"),
    );
    assert!(small_run.success, "{}", small_run.stdout);
    let state = local.path().join("large.db");
    let run = photosync(
        &["sync", large.to_str().unwrap()],
        &server.url,
        &token,
        &state,
    );
    assert!(run.success, "{}", run.stdout);
    eprintln!("synced: {:?}", started.elapsed());
    // uploaded, already synced, on the server already, skipped, not photos or videos, failed
    let c = counts(&run.stdout);
    assert_eq!(c.len(), 6, "{}", run.stdout);
    assert_eq!(
        c[0] + c[1] + c[2],
        1000,
        "every file accounted for: {}",
        run.stdout
    );
    assert_eq!((c[3], c[4], c[5]), (0, 0, 0), "{}", run.stdout);
    assert!(c[0] >= 900, "mostly distinct pictures: {}", run.stdout);

    // Ten times the files, about the same memory: nothing is held per file beyond a few bytes.
    eprintln!(
        "peak client RSS: {:.0} MB for 100 files, {:.0} MB for 1,000",
        small_run.peak_mb, run.peak_mb
    );
    assert!(
        run.peak_mb < small_run.peak_mb + 40.0 && run.peak_mb < 250.0,
        "100 files: {:.0} MB, 1,000 files: {:.0} MB",
        small_run.peak_mb,
        run.peak_mb
    );

    let again = photosync(
        &["sync", large.to_str().unwrap()],
        &server.url,
        &token,
        &state,
    );
    assert!(again.success);
    let c = counts(&again.stdout);
    assert_eq!(c[0], 0, "nothing uploaded twice: {}", again.stdout);
    assert_eq!(c[1] + c[2], 1000, "{}", again.stdout);
}
