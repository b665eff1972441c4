//! Identification benchmark: prints figures, with the naive baseline measured in the same run.
//!
//! `cargo bench -p photosync-bench --bench identify`
//!
//! 1. Builds a corpus of camera-sized (4000×3000, 12 MP) JPEGs, baseline and progressive,
//!    cropped from a real 5640×3172 photograph (MATE's Elephants, Debian package
//!    mate-backgrounds, fetched with `apt-get download` when it is not installed).
//! 2. Single-core images/s: our identify, and `image::open` + `image_hasher` with its default
//!    `HasherConfig`, on the same files.
//! 3. Peak memory of `photosync identify` on 500 such files on all cores (wait4 max RSS).
//! 4. Wall time of `photosync similar` on 1,000 files made from the test photos.
//! 5. The largest "same picture" and smallest "different" distances on the test photos, for our
//!    identifier and for the baseline's 64-bit hash.
//! 6. RAW (DNG) files identified per second beside JPEGs of the same pixel count.
//! 7. The verification step: cost per candidate, and its margins (the largest copy beside the
//!    smallest of each local change and of real consecutive video frames).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::RgbImage;
use photosync_identify::{compare, identify_bytes, identify_file, Limits, FEATURE_BITS};
use photosync_testkit::{
    make_copy, measure_separation, near_shot_pair, photos, COPIES, NEAR_SHOTS,
};

const CROPS: usize = 8;

/// 12-megapixel crops of the real photo (and their mirror images), as baseline and progressive
/// JPEGs at quality 92 with 4:2:0 chroma, like a camera's.
fn corpus(work: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let dir = work.join("corpus-12mp");
    let names = |kind: &str| -> Vec<PathBuf> {
        (0..CROPS * 2)
            .map(|i| dir.join(format!("{kind}-{i:02}.jpg")))
            .collect()
    };
    let (baseline, progressive) = (names("baseline"), names("progressive"));
    if baseline.iter().chain(&progressive).all(|p| p.exists()) {
        return (baseline, progressive);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let src = image::open(photosync_bench::source_photo())
        .unwrap()
        .into_rgb8();
    let (sw, sh) = src.dimensions();
    let (w, h) = (4000u32, 3000u32);
    for i in 0..CROPS {
        let x = (sw - w) * i as u32 / (CROPS as u32 - 1);
        let y = (sh - h) * ((i as u32 * 3) % CROPS as u32) / (CROPS as u32 - 1);
        let crop: RgbImage = image::imageops::crop_imm(&src, x, y, w, h).to_image();
        let mirrored = image::imageops::flip_horizontal(&crop);
        for (j, img) in [crop, mirrored].iter().enumerate() {
            let k = i * 2 + j;
            std::fs::write(&baseline[k], encode(img, false)).unwrap();
            std::fs::write(&progressive[k], encode(img, true)).unwrap();
        }
    }
    (baseline, progressive)
}

fn encode(img: &RgbImage, progressive: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 92);
    enc.set_progressive(progressive);
    enc.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_2_0);
    enc.encode(img.as_raw(), 4000, 3000, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// Images per second on this thread, over `passes` passes of `files`.
fn rate(files: &[PathBuf], passes: usize, f: impl Fn(&Path)) -> f64 {
    f(&files[0]); // warm the page cache and lazy tables
    let start = Instant::now();
    for _ in 0..passes {
        for p in files {
            f(p);
        }
    }
    (files.len() * passes) as f64 / start.elapsed().as_secs_f64()
}

fn ours(p: &Path) {
    std::hint::black_box(identify_file(p, &Limits::default()).unwrap());
}

fn naive(p: &Path) {
    let img = image::open(p).unwrap();
    let hasher = image_hasher::HasherConfig::new().to_hasher();
    std::hint::black_box(hasher.hash_image(&img));
}

/// RAW files (DNG: 12 MP of sensor data and the camera's preview, as `rawler` writes it:
/// 1024 px wide) beside JPEGs of the same pixel count, one core.
fn raw_rate(work: &Path, jpegs: &[PathBuf]) {
    let dir = work.join("raw-12mp");
    std::fs::create_dir_all(&dir).unwrap();
    let raws: Vec<PathBuf> = jpegs[..4]
        .iter()
        .enumerate()
        .map(|(i, jpeg)| {
            let path = dir.join(format!("IMG_{i:04}.DNG"));
            if !path.exists() {
                // 2000x1500 at sensor scale 2: 4000x3000 sensor pixels (the preview itself is
                // cut to 1024 px wide by the writer).
                let img = image::open(jpeg).unwrap().into_rgb8();
                let small = image::imageops::resize(
                    &img,
                    2000,
                    1500,
                    image::imageops::FilterType::Triangle,
                );
                let preview = photosync_testkit::jpeg(&small, 92, false, None);
                let spec = photosync_testkit::DngSpec {
                    sensor_scale: 2,
                    ..Default::default()
                };
                std::fs::write(&path, photosync_testkit::dng(&preview, &spec)).unwrap();
            }
            path
        })
        .collect();
    let mb = raws
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum::<u64>() as f64
        / 4e6;
    let r = rate(&raws, 3, ours);
    let j = rate(&jpegs[..4], 3, ours);
    println!(
        "
## RAW files, single core, images/s"
    );
    println!("DNG, 4000x3000 sensor ({mb:.0} MB, uncompressed), preview 1024 px: {r:.1} images/s");
    println!("JPEG, 4000x3000 q92 (same pixel count):                          {j:.1} images/s");
}

/// The verification step: its cost per candidate, and the margins on the test photos.
fn verification(
    ours: &photosync_testkit::Separation<(photosync_identify::Match, photosync_identify::Distance)>,
) {
    use photosync_identify::{verify, Evidence, SAME_DETAIL};
    let photos = photos();
    let ids: Vec<_> = photos
        .iter()
        .map(|(_, b)| identify_bytes(b, &Limits::default()).unwrap())
        .collect();
    let texts: Vec<String> = ids.iter().map(|i| i.evidence.to_string()).collect();
    let rounds = 20_000;
    let start = Instant::now();
    for i in 0..rounds {
        let a = &ids[i % ids.len()].evidence;
        let b = &ids[(i * 7 + 1) % ids.len()].evidence;
        std::hint::black_box(verify(a, b).is_ok());
    }
    let compare_us = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let start = Instant::now();
    for i in 0..rounds {
        std::hint::black_box(texts[i % texts.len()].parse::<Evidence>().unwrap());
    }
    let parse_us = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    println!(
        "
## verification step (64x64 detail grid, capture metadata, class)"
    );
    println!(
        "per candidate: compare {compare_us:.1} us, parse the server's evidence ({} bytes) {parse_us:.1} us",
        texts[0].len()
    );
    let detail = measure_separation(
        |b| identify_bytes(b, &Limits::default()).unwrap(),
        |a, b| a.evidence.detail.compare(&b.evidence.detail).worst,
    );
    let largest = detail.copies.iter().max().unwrap();
    println!(
        "detail: largest same-picture {} [{}], bound {SAME_DETAIL}",
        largest.0, largest.1
    );
    for change in photosync_testkit::LOCAL_CHANGES {
        let tag = format!("{change:?}");
        let min = detail
            .local
            .iter()
            .filter(|(_, w)| w.ends_with(&tag))
            .min()
            .unwrap();
        let by_identifier = ours
            .local
            .iter()
            .filter(|((_, d), w)| w.ends_with(&tag) && d.is_same_picture())
            .count();
        println!(
            "detail: smallest different, {tag}: {} [{}]; alike by the identifier alone: {by_identifier} of {}",
            min.0,
            min.1,
            ids.len()
        );
    }
    let min = detail.frames.iter().min().unwrap();
    let by_identifier = ours
        .frames
        .iter()
        .filter(|((_, d), _)| d.is_same_picture())
        .count();
    println!(
        "detail: smallest different, consecutive video frames: {} [{}]; alike by the identifier alone: {by_identifier} of {}",
        min.0,
        min.1,
        detail.frames.len()
    );
}

/// Runs a command to completion; returns (wall time, peak resident set size in bytes, stderr).
// wait4 is the one call that reports a child's own peak RSS; the child is reaped by it.
#[allow(unsafe_code, clippy::zombie_processes)]
fn run_measured(cmd: &mut Command) -> (Duration, u64, String) {
    use std::process::Stdio;
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    let mut status = 0;
    // SAFETY: plain syscall on our own child, with valid pointers to locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    assert!(libc::WIFEXITED(status), "child did not exit normally");
    (start.elapsed(), usage.ru_maxrss as u64 * 1024, err)
}

fn similar_corpus(work: &Path) -> PathBuf {
    let dir = work.join("similar-1000");
    let count = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    if count == 1000 {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut files: Vec<Vec<u8>> = Vec::new();
    for (_, bytes) in photos() {
        files.push(bytes.clone());
        files.extend(COPIES.iter().map(|&c| make_copy(&bytes, c)));
        for &shot in NEAR_SHOTS {
            let (a, b) = near_shot_pair(&bytes, shot);
            files.extend([a, b]);
        }
    }
    // Renamed duplicates fill the rest, as in a library with backups of backups.
    let distinct = files.len().min(1000);
    for i in 0..1000 {
        std::fs::write(dir.join(format!("{i:04}.img")), &files[i % distinct]).unwrap();
    }
    dir
}

fn main() {
    let target = photosync_bench::target_dir();
    let work = target.join("bench-identify");
    std::fs::create_dir_all(&work).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# photosync identify benchmark ({cores} cores)");

    let (baseline, progressive) = corpus(&work);
    let mb = |p: &[PathBuf]| {
        p.iter().map(|f| f.metadata().unwrap().len()).sum::<u64>() as f64 / p.len() as f64 / 1e6
    };
    println!(
        "corpus: {} baseline ({:.1} MB avg) + {} progressive ({:.1} MB avg) 4000x3000 JPEGs, q92 4:2:0, cropped from a real 5640x3172 photo",
        baseline.len(),
        mb(&baseline),
        progressive.len(),
        mb(&progressive)
    );

    println!("\n## single core, images/s");
    println!(
        "{:<14} {:>10} {:>10} {:>7}",
        "jpeg", "photosync", "naive", "ratio"
    );
    for (kind, files) in [("baseline", &baseline), ("progressive", &progressive)] {
        let o = rate(files, 3, ours);
        let n = rate(&files[..6], 1, naive);
        println!("{kind:<14} {o:>10.1} {n:>10.2} {:>6.1}x", o / n);
    }
    println!("naive = image::open + image_hasher::HasherConfig::new() (gradient 8x8, Lanczos3)");

    raw_rate(&work, &baseline);

    let all: Vec<PathBuf> = baseline.iter().chain(&progressive).cloned().collect();
    let start = Instant::now();
    let n = photosync_identify::identify_all(&all, &Limits::default(), 0).len();
    println!(
        "all {cores} cores, identify_all on {n} files: {:.1} images/s",
        n as f64 / start.elapsed().as_secs_f64()
    );

    let bin = photosync_bench::release_binaries().join("photosync");
    let mem_dir = work.join("mem-500");
    if std::fs::read_dir(&mem_dir).map(|d| d.count()).unwrap_or(0) != 500 {
        let _ = std::fs::remove_dir_all(&mem_dir);
        std::fs::create_dir_all(&mem_dir).unwrap();
        for i in 0..500 {
            std::fs::hard_link(&all[i % all.len()], mem_dir.join(format!("{i:03}.jpg"))).unwrap();
        }
    }
    let (t, rss, _) = run_measured(
        Command::new(&bin)
            .args(["identify", "--json"])
            .arg(&mem_dir),
    );
    println!("\n## memory");
    println!(
        "photosync identify, 500 x 12 MP files, all cores: peak RSS {:.0} MB, {:.1} s ({:.1} images/s)",
        rss as f64 / 1e6,
        t.as_secs_f64(),
        500.0 / t.as_secs_f64()
    );

    let sim_dir = similar_corpus(&work);
    let (t, rss, err) = run_measured(Command::new(&bin).arg("similar").arg(&sim_dir));
    println!("\n## photosync similar");
    println!(
        "1000 files (test photos, their copies and near shots, renamed duplicates): {:.2} s, peak RSS {:.0} MB; {}",
        t.as_secs_f64(),
        rss as f64 / 1e6,
        err.lines().last().unwrap_or("")
    );

    println!("\n## separation on the test photos (tests/photos)");
    println!("identifier: {FEATURE_BITS} feature bits (256 luma DCT, 64 texture, 256 colour/exposure) + 16-bit aspect");
    let ours = measure_separation(
        |b| identify_bytes(b, &Limits::default()).unwrap(),
        |a, b| (compare(a, b), a.identifier.distance(&b.identifier)),
    );
    let worst = ours
        .copies
        .iter()
        .max_by_key(|((_, d), _)| d.total())
        .unwrap();
    let nearest = ours
        .distinct
        .iter()
        .min_by_key(|((_, d), _)| d.total())
        .unwrap();
    println!(
        "{} photos, {} copies, {} distinct pairs",
        ours.photos,
        ours.copies.len(),
        ours.distinct.len()
    );
    println!(
        "photosync: largest same-picture distance {} [{}]",
        worst.0 .1, worst.1
    );
    println!(
        "photosync: smallest different distance    {} [{}]",
        nearest.0 .1, nearest.1
    );
    for ((_, d), what) in &ours.hard {
        println!("photosync: hard negative, {what}: {d}");
    }
    for &shot in NEAR_SHOTS {
        let tag = format!("{shot:?}");
        let n = ours
            .near_shots
            .iter()
            .filter(|(_, w)| w.ends_with(&tag))
            .min_by_key(|((_, d), _)| d.total())
            .unwrap();
        println!(
            "photosync: nearest generated near shot {tag}: {} [{}]",
            n.0 .1, n.1
        );
    }
    let wrong = ours
        .copies
        .iter()
        .filter(|((m, _), _)| !m.is_same())
        .count()
        + ours
            .distinct
            .iter()
            .chain(&ours.hard)
            .chain(&ours.near_shots)
            .chain(&ours.local)
            .chain(&ours.frames)
            .filter(|((m, _), _)| m.is_same())
            .count();
    println!(
        "photosync: wrong answers under the same-picture rule (identifier + verification), \
         copies, distinct, hard, near shots, local changes, video frames: {wrong}"
    );

    verification(&ours);

    let hasher = image_hasher::HasherConfig::new().to_hasher();
    let naive = measure_separation(
        |b| hasher.hash_image(&image::load_from_memory(b).unwrap()),
        |a, b| a.dist(b),
    );
    let worst = naive.copies.iter().max_by_key(|(d, _)| *d).unwrap();
    let nearest = naive.distinct.iter().min_by_key(|(d, _)| *d).unwrap();
    let near = naive.near_shots.iter().min_by_key(|(d, _)| *d).unwrap();
    println!(
        "naive 64-bit: largest same-picture distance {} [{}]",
        worst.0, worst.1
    );
    println!(
        "naive 64-bit: smallest different distance    {} [{}]",
        nearest.0, nearest.1
    );
    println!(
        "naive 64-bit: nearest near shot              {} [{}]",
        near.0, near.1
    );
}
