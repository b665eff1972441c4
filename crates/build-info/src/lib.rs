//! For build scripts: records the commit a binary is built from, so `--version`, the server's
//! `GET /api/v1/version` and the app's About can say it. `PHOTOSYNC_COMMIT` when set (a
//! package built from a tarball), else git's short hash, else `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// The commit this build is of.
pub fn commit() -> String {
    std::env::var("PHOTOSYNC_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into())
}

/// Called from a build script: sets `PHOTOSYNC_COMMIT` for the crate being built, and has it
/// built again when HEAD moves (HEAD itself, the branch it names, packed refs).
#[allow(clippy::print_stdout)] // build scripts talk to cargo on stdout
pub fn emit() {
    println!("cargo:rerun-if-env-changed=PHOTOSYNC_COMMIT");
    println!("cargo:rustc-env=PHOTOSYNC_COMMIT={}", commit());
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{branch}");
        }
        println!("cargo:rerun-if-changed={dir}/packed-refs");
    }
}
