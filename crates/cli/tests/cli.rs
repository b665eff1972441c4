//! The `photosync` binary, run as a user would run it, on real photos and bad files.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use photosync_testkit::{make_copy, noise, photos_dir, png_bomb, Copy};
use serde_json::Value;

fn photo(name: &str) -> Vec<u8> {
    fs::read(photos_dir().join(name)).unwrap()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap()
}

/// Runs photosync; as root, drops to `nobody` so that file permissions mean something.
fn photosync(args: &[&str], paths: &[&Path]) -> Output {
    let bin = env!("CARGO_BIN_EXE_photosync");
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args).args(paths).env("RUST_LOG", "warn");
    cmd.output().unwrap()
}

fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn by_name<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["path"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("no line for {name}: {lines:#?}"))
}

#[test]
fn identify_prints_every_field_for_every_file() {
    let dir = open_tempdir();
    fs::write(dir.path().join("a.jpg"), photo("aqua.jpg")).unwrap();
    fs::write(
        dir.path().join("b.png"),
        make_copy(&photo("aqua.jpg"), Copy::Png),
    )
    .unwrap();
    fs::write(dir.path().join("c.heic"), photo("ladybird.heic")).unwrap();

    let out = photosync(&["identify", "--json"], &[dir.path()]);
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    let a = by_name(&lines, "a.jpg");
    let b = by_name(&lines, "b.png");
    assert_eq!(a["format"], "jpeg");
    assert_eq!(b["format"], "png");
    assert_eq!(by_name(&lines, "c.heic")["format"], "heif");
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64()),
        (Some(800), Some(500))
    );
    assert!(a["identifier"].as_str().unwrap().starts_with("v1:"));
    assert_eq!(a["digest"].as_str().unwrap().len(), 64);
    assert_ne!(a["digest"], b["digest"]);

    let text = photosync(&["identify"], &[&dir.path().join("a.jpg")]);
    let line = String::from_utf8(text.stdout).unwrap();
    let fields: Vec<&str> = line.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 5, "{line}");
    assert_eq!(fields[1], a["identifier"]);
    assert_eq!(fields[2], a["digest"]);
    assert_eq!(fields[3], "800x500");
    assert_eq!(fields[4], "jpeg");
}

#[test]
fn bad_files_are_reported_with_reasons_and_the_run_goes_on() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let dir = open_tempdir();
    let d = dir.path();
    let good = photo("garden.jpg");
    fs::write(d.join("good.jpg"), &good).unwrap();
    let mut corrupt = good.clone();
    corrupt[20..320].copy_from_slice(&noise(300, 1));
    fs::write(d.join("corrupt.jpg"), corrupt).unwrap();
    fs::write(d.join("truncated.jpg"), &good[..good.len() / 2]).unwrap();
    fs::write(d.join("random.jpg"), noise(5000, 2)).unwrap();
    fs::write(d.join("empty.jpg"), b"").unwrap();
    fs::write(d.join("bomb.png"), png_bomb(100_000, 100_000)).unwrap();
    fs::write(d.join("locked.jpg"), &good).unwrap();
    fs::set_permissions(d.join("locked.jpg"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::create_dir(d.join("sub")).unwrap();
    fs::set_permissions(d.join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(d, d.join("sub/loop")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.jpg");
    fs::write(d.join(odd), photo("wood.jpg")).unwrap();

    let out = photosync(&["identify", "--json"], &[d]);
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    let code = |name: &str| by_name(&lines, name)["error"].as_str().map(str::to_owned);
    assert_eq!(code("good.jpg"), None);
    assert_eq!(code("corrupt.jpg").as_deref(), Some("corrupt"));
    assert_eq!(code("truncated.jpg").as_deref(), Some("corrupt"));
    assert!(by_name(&lines, "truncated.jpg")["reason"]
        .as_str()
        .unwrap()
        .contains("truncated"));
    assert_eq!(code("random.jpg").as_deref(), Some("not_an_image"));
    assert_eq!(code("empty.jpg").as_deref(), Some("empty"));
    assert_eq!(code("bomb.png").as_deref(), Some("too_many_pixels"));
    assert_eq!(code("locked.jpg").as_deref(), Some("permission_denied"));
    assert_eq!(code("loop").as_deref(), Some("symlink_loop"));
    // The non-UTF-8 name is shown with a replacement character and still identified.
    let odd_line = by_name(&lines, "caf\u{fffd}.jpg");
    assert_eq!(odd_line["format"], "jpeg");
    // Every entry got exactly one line.
    assert_eq!(lines.len(), 9, "{lines:#?}");
    for l in &lines {
        if l.get("error").is_some() {
            assert!(!l["reason"].as_str().unwrap().is_empty());
        }
    }
}

#[test]
fn exit_status_says_whether_anything_was_read() {
    let dir = open_tempdir();
    fs::write(dir.path().join("random.jpg"), noise(100, 5)).unwrap();
    fs::write(dir.path().join("ok.jpg"), photo("storm.jpg")).unwrap();

    let nothing = photosync(&["identify"], &[&dir.path().join("random.jpg")]);
    assert_eq!(nothing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nothing.stdout).contains("not an image"));

    let missing = photosync(
        &["identify"],
        &[&dir.path().join("ok.jpg"), Path::new("/no/such")],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stdout).contains("v1:"),
        "still identified"
    );

    let no_args = photosync(&["identify"], &[]);
    assert_eq!(no_args.status.code(), Some(2));
    let unknown_flag = photosync(&["identify", "--frobnicate"], &[dir.path()]);
    assert_eq!(unknown_flag.status.code(), Some(2));

    let mixed = photosync(&["identify"], &[dir.path()]);
    assert_eq!(mixed.status.code(), Some(0));
}

#[test]
fn similar_groups_copies_and_keeps_different_shots_apart() {
    let dir = open_tempdir();
    let d = dir.path();
    let original = photo("european-honey-bee.jpg");
    fs::create_dir(d.join("backup")).unwrap();
    fs::set_permissions(
        d.join("backup"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fs::write(d.join("bee.jpg"), &original).unwrap();
    fs::write(d.join("backup/renamed.jpg"), &original).unwrap();
    fs::write(
        d.join("bee-small.jpg"),
        make_copy(&original, Copy::HalfSize),
    )
    .unwrap();
    fs::write(d.join("bee.png"), make_copy(&original, Copy::Png)).unwrap();
    fs::write(
        d.join("bee-rotated.jpg"),
        make_copy(&original, Copy::Rotated(6)),
    )
    .unwrap();
    for name in [
        "motorcycle-left.jpg",
        "motorcycle-right.jpg",
        "burst-pan-0.jpg",
        "burst-pan-1.jpg",
    ] {
        fs::write(d.join(name), photo(name)).unwrap();
    }
    fs::write(d.join("notes.txt"), b"not a photo").unwrap();

    let out = photosync(&["similar", "--json"], &[d]);
    assert!(out.status.success(), "{out:?}");
    let groups = json_lines(&out);
    assert_eq!(groups.len(), 1, "{groups:#?}");
    let members = groups[0]["members"].as_array().unwrap();
    let relation = |name: &str| {
        members
            .iter()
            .find(|m| m["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} not grouped: {members:#?}"))["relation"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(members.len(), 5, "{members:#?}");
    assert_eq!(relation("bee-small.jpg"), "same_picture");
    assert_eq!(relation("bee.png"), "same_picture");
    assert_eq!(relation("bee-rotated.jpg"), "same_picture");
    // One of the two identical files is the best copy, the other its same-bytes twin.
    let mut pair = [relation("/bee.jpg"), relation("renamed.jpg")];
    pair.sort();
    assert_eq!(pair, ["best".to_owned(), "same_bytes".to_owned()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notes.txt\terror: not an image"),
        "{stderr}"
    );

    let text = photosync(&["similar"], &[d]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.starts_with("group 1 (5 files)"), "{text}");
    assert!(text.contains("same picture, distance"), "{text}");
}

#[test]
fn similar_on_the_test_photos_finds_only_the_heic_copy() {
    let out = photosync(&["similar", "--json"], &[&photos_dir()]);
    assert!(out.status.success());
    let groups = json_lines(&out);
    assert_eq!(groups.len(), 1, "{groups:#?}");
    let members: Vec<&str> = groups[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert!(members[0].ends_with("ladybird.heic") || members[0].ends_with("ladybird.jpg"));
    assert_eq!(members.len(), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("35 files read, 2 in 1 groups"));
}
