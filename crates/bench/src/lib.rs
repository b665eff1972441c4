//! What the benchmark programs in `benches/` share. Run them with
//! `cargo bench -p photosync-bench --bench NAME`.

pub mod fuzz;

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

/// A real 5640×3172 photograph (MATE's Elephants, Debian package mate-backgrounds), fetched
/// with `apt-get download` into the target directory when it is not installed.
pub fn source_photo() -> PathBuf {
    use std::process::Command;
    const SOURCE: &str = "usr/share/backgrounds/mate/abstract/Elephants_5640x3172.jpg";
    let system = std::path::Path::new("/").join(SOURCE);
    if system.exists() {
        return system;
    }
    let deb_dir = target_dir().join("bench-identify").join("deb");
    let unpacked = deb_dir.join(SOURCE);
    if !unpacked.exists() {
        std::fs::create_dir_all(&deb_dir).expect("the target directory is writable");
        let ok = Command::new("apt-get")
            .args(["download", "mate-backgrounds"])
            .current_dir(&deb_dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot fetch mate-backgrounds; install it or run apt-get update"
        );
        let deb = std::fs::read_dir(&deb_dir)
            .expect("the download folder is readable")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .expect("apt-get download wrote a .deb");
        let ok = Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(&deb_dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "dpkg -x failed");
    }
    unpacked
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

/// A xorshift64 generator: cheap, deterministic pseudo-random numbers for benchmark inputs.
/// The seed must not be 0.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `range` (`range` not empty).
    pub fn in_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next_u64() % (range.end - range.start)
    }
}

/// The value at fraction `p` (0..=1) of `sorted`, which must not be empty.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
