//! What the benchmark programs in `benches/` share. Run them with
//! `cargo bench -p photosync-bench --bench NAME`.

use std::path::PathBuf;

/// The cargo target directory the running benchmark was built in.
pub fn target_dir() -> PathBuf {
    // target/release/deps/<bench>-<hash> -> target/
    let exe = std::env::current_exe().expect("the benchmark knows its own path");
    exe.ancestors()
        .nth(3)
        .expect("benchmarks run from target/release/deps")
        .to_path_buf()
}

/// Builds the release `photosync` and `photosync-server` and returns their folder.
pub fn release_binaries() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = std::process::Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "photosync-cli"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cargo build --release -p photosync-cli failed");
    target_dir().join("release")
}
