//! The `photosync` binary, run as a user would run it, on real photos and bad files.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use photosync_testkit::{add_user, make_copy, noise, photos_dir, png_bomb, Copy, ServerProcess};
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
    assert!(a["identifier"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}:", photosync_identify::VERSION)));
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
fn identify_reads_raw_files_from_their_preview_with_the_sensor_size() {
    let dir = open_tempdir();
    let garden = photo("garden.jpg");
    let spec = photosync_testkit::DngSpec {
        sensor_scale: 2,
        orientation: 6,
        taken: Some(("2024:05:01 10:00:00", "5")),
        ..Default::default()
    };
    fs::write(
        dir.path().join("IMG_0001.DNG"),
        photosync_testkit::dng(&garden, &spec),
    )
    .unwrap();
    fs::write(dir.path().join("IMG_0001.JPG"), &garden).unwrap();
    let out = photosync(&["identify", "--json"], &[dir.path()]);
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    let raw = by_name(&lines, "IMG_0001.DNG");
    let jpeg = by_name(&lines, "IMG_0001.JPG");
    assert_eq!(raw["format"], "dng");
    assert_eq!(raw["quality"], "raw");
    assert_eq!(jpeg["quality"], "lossy q90");
    assert_eq!(raw["taken"], "2024-05-01T10:00:00.5");
    // The sensor's pixels, upright: the 1000×1600 sensor, turned by the orientation tag.
    assert_eq!(
        (raw["width"].as_u64(), raw["height"].as_u64()),
        (Some(1600), Some(1000))
    );
    // The RAW and its camera JPEG are never grouped as one picture: both are kept.
    let similar = photosync(&["similar", "--json"], &[dir.path()]);
    assert!(similar.status.success());
    assert!(json_lines(&similar).is_empty());
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
    // The non-UTF-8 name is escaped, its exact bytes are kept, and it is still identified.
    let odd_line = by_name(&lines, "caf\\xe9.jpg");
    assert_eq!(odd_line["format"], "jpeg");
    assert!(odd_line["path_bytes"]
        .as_str()
        .unwrap()
        .ends_with("/caf%E9.jpg"));
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
        String::from_utf8_lossy(&missing.stdout)
            .contains(&format!("{}:", photosync_identify::VERSION)),
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
    assert_eq!(relation("bee-rotated.jpg"), "same_picture");
    // The lossless copy is the best (RAW > lossless > lossy), the JPEGs the same picture.
    assert_eq!(relation("bee.png"), "best");
    assert_eq!(relation("/bee.jpg"), "same_picture");
    assert_eq!(relation("renamed.jpg"), "same_picture");
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
    // The photos and the real video frames (tests/photos/frames): consecutive frames are
    // different shots.
    assert!(String::from_utf8_lossy(&out.stderr).contains("45 files read, 2 in 1 groups"));
}

/// Undoes the percent-encoding of `path_bytes`.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(unix)]
#[test]
fn names_with_newlines_or_bytes_that_are_not_utf8_stay_one_line_each() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = open_tempdir();
    let d = dir.path();
    let bytes = photo("aqua.jpg");
    let newline = d.join("two\nlines.jpg");
    let latin1 = d.join(OsStr::from_bytes(b"caf\xe9\tx.jpg"));
    let backslash = d.join("back\\slash.jpg");
    for p in [&newline, &latin1, &backslash] {
        fs::write(p, &bytes).unwrap();
    }
    let shown = |name: &str| format!("{}/{name}", d.to_str().unwrap());

    let out = photosync(&["identify"], &[d]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let first_fields: Vec<&str> = text
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            assert_eq!(fields.len(), 5, "{l:?}");
            fields[0]
        })
        .collect();
    assert_eq!(first_fields.len(), 3, "one line per file: {text:?}");
    for name in ["two\\nlines.jpg", "caf\\xe9\\tx.jpg", "back\\\\slash.jpg"] {
        assert!(
            first_fields.contains(&shown(name).as_str()),
            "{name} in {first_fields:?}"
        );
    }

    let out = photosync(&["identify", "--json"], &[d]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    // Valid UTF-8: the exact name, newline and all.
    let nl = by_name(&lines, "two\nlines.jpg");
    assert_eq!(nl["path"], newline.to_str().unwrap());
    assert!(nl.get("path_bytes").is_none(), "{nl}");
    // Not UTF-8: the escaped name, and the exact bytes beside it.
    let odd = by_name(&lines, "caf\\xe9\\tx.jpg");
    assert_eq!(odd["path"], shown("caf\\xe9\\tx.jpg"));
    assert_eq!(
        percent_decode(odd["path_bytes"].as_str().unwrap()),
        latin1.as_os_str().as_bytes()
    );

    let out = photosync(&["similar"], &[d]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        4,
        "a heading and a line per file: {text:?}"
    );
    assert!(
        text.contains(&format!("  {}\t", shown("two\\nlines.jpg"))),
        "{text}"
    );
    assert!(text.contains(&shown("caf\\xe9\\tx.jpg")), "{text}");

    let out = photosync(&["similar", "--json"], &[d]);
    let groups = json_lines(&out);
    assert_eq!(groups.len(), 1, "{groups:#?}");
    let members = groups[0]["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{members:#?}");
    let odd = members
        .iter()
        .find(|m| m.get("path_bytes").is_some())
        .unwrap_or_else(|| panic!("no path_bytes: {members:#?}"));
    assert_eq!(
        percent_decode(odd["path_bytes"].as_str().unwrap()),
        latin1.as_os_str().as_bytes()
    );
}

#[test]
fn login_refuses_what_is_not_a_server_address() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("photosync.toml");
    let login = |server: &str| {
        Command::new(env!("CARGO_BIN_EXE_photosync"))
            .args(["login", "--server", server, "--token", "psk_x"])
            .env("PHOTOSYNC_CONFIG", &config)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    for (server, says) in [
        ("not a url", "must start with http:// or https://"),
        ("example.org:8080", "must start with http:// or https://"),
        ("ftp://example.org", "must be http or https"),
        ("http://:8080", "no host"),
        (
            "http://127.0.0.1:1/some/path",
            "give the server's address without a path, e.g. http://host:8080",
        ),
    ] {
        let out = login(server);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{server}: {out:?}");
        assert!(stderr.contains(says), "{server}: {stderr}");
        assert!(!config.exists(), "{server}: a config was written");
        assert!(!home.path().join("config").exists(), "{server}");
    }
    for server in [
        "http://127.0.0.1:8080/",
        "https://[::1]:8443",
        "http://photos.lan",
    ] {
        let out = login(server);
        assert!(out.status.success(), "{server}: {out:?}");
        assert!(config.exists(), "{server}");
    }
}

const SERVER: &str = env!("CARGO_BIN_EXE_photosync-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_photosync");

/// `photosync` against a server, as the user running the tests.
fn against(args: &[&str], server: &str, token: &str, state: &Path) -> Output {
    Command::new(CLIENT)
        .args(args)
        .env("PHOTOSYNC_SERVER", server)
        .env("PHOTOSYNC_TOKEN", token)
        .env("PHOTOSYNC_STATE", state)
        .env("PHOTOSYNC_CONFIG", state.with_extension("toml"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A server with one user, and a library synced to it: `aqua.jpg`, a same-bytes copy of it
/// and `dune.jpg`.
struct Synced {
    server: ServerProcess,
    token: String,
    state: std::path::PathBuf,
    _dirs: [tempfile::TempDir; 2],
}

fn synced_library() -> Synced {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("photos");
    fs::create_dir(&lib).unwrap();
    fs::write(lib.join("aqua.jpg"), photo("aqua.jpg")).unwrap();
    fs::write(lib.join("aqua-copy.jpg"), photo("aqua.jpg")).unwrap();
    fs::write(lib.join("dune.jpg"), photo("dune.jpg")).unwrap();
    let state = local.path().join("state.db");
    let out = against(
        &["sync", lib.to_str().unwrap()],
        &server.url,
        &token,
        &state,
    );
    assert!(out.status.success(), "{out:?}");
    Synced {
        server,
        token,
        state,
        _dirs: [data, local],
    }
}

#[test]
fn status_on_a_state_path_that_does_not_exist_creates_nothing() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let state = local.path().join("new/deeper/state.db");
    let out = against(&["status"], &server.url, &token, &state);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains(&format!(
            "nothing synced yet: no state at {}",
            state.display()
        )),
        "{}",
        stdout(&out)
    );
    assert!(!local.path().join("new").exists(), "a folder was created");
}

#[test]
fn status_counts_local_files_apart_from_distinct_pictures() {
    let s = synced_library();
    let out = against(&["status"], &s.server.url, &s.token, &s.state);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("3 files in the sync list, 2 distinct pictures"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn status_with_a_wrong_token_says_the_server_refused_it() {
    let s = synced_library();
    let out = against(&["status"], &s.server.url, "psk_wrong", &s.state);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains("the server refused the token"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("files in the sync list"), "{out:?}");
}

#[test]
fn status_without_the_server_still_shows_the_local_list() {
    let mut s = synced_library();
    s.server.kill(); // its port on 127.0.0.1 is now closed
    let out = against(&["status"], &s.server.url, &s.token, &s.state);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("the server could not be reached"), "{text}");
    assert!(text.contains("3 files in the sync list"), "{text}");
}

#[test]
fn sync_without_a_terminal_prints_one_line_per_file_at_the_end() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("photos");
    fs::create_dir(&lib).unwrap();
    fs::write(lib.join("aqua.jpg"), photo("aqua.jpg")).unwrap();
    fs::write(lib.join("storm.jpg"), photo("storm.jpg")).unwrap();
    fs::write(lib.join("broken.jpg"), b"\xFF\xD8\xFF\xE0 not really").unwrap();
    let state = local.path().join("state.db");
    let lib_s = lib.to_str().unwrap();
    // stderr is a pipe here, as under cron or systemd.
    let file_lines = |out: &Output| {
        let mut lines: Vec<(String, String)> = stderr(out)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 3).then(|| (f[0].to_owned(), f[1].to_owned()))
            })
            .collect();
        lines.sort_by(|a, b| a.1.cmp(&b.1));
        lines
    };
    let expect = |a: &str, b: &str, t: &str| {
        vec![
            (a.to_owned(), format!("{lib_s}/aqua.jpg")),
            (b.to_owned(), format!("{lib_s}/broken.jpg")),
            (t.to_owned(), format!("{lib_s}/storm.jpg")),
        ]
    };

    let first = against(&["sync", lib_s], &server.url, &token, &state);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        file_lines(&first),
        expect("uploaded", "uploaded", "uploaded"),
        "{}",
        stderr(&first)
    );
    // Not a picture the decoders can read: backed up by its bytes, and the summary says why.
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("backed up, not identified: "),
        "{first:?}"
    );
    assert!(!stderr(&first).contains('\r'), "no progress bars");

    let second = against(&["sync", lib_s], &server.url, &token, &state);
    assert_eq!(
        file_lines(&second),
        expect("already synced", "already synced", "already synced"),
        "{}",
        stderr(&second)
    );
}

/// On a terminal (a pseudo-terminal from `script`), "identifying FILE" is gone from the
/// progress line once that file is identified: while it uploads, no frame names it.
#[test]
fn the_progress_line_stops_naming_a_file_once_it_is_identified() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("media");
    fs::create_dir(&lib).unwrap();
    // About two seconds of upload at the limit below, so that many frames are drawn.
    fs::write(lib.join("clip.mov"), noise(2_000_000, 7)).unwrap();
    let state = local.path().join("state.db");
    let command = format!(
        "stty cols 200 rows 40; '{CLIENT}' sync --bandwidth-limit 1000000 '{}'",
        lib.display()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("PHOTOSYNC_SERVER", &server.url)
        .env("PHOTOSYNC_TOKEN", &token)
        .env("PHOTOSYNC_STATE", &state)
        .env("PHOTOSYNC_CONFIG", state.with_extension("toml"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("script (util-linux) runs the command on a pseudo-terminal");
    let screen = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    assert!(screen.contains("uploaded 1,"), "{screen:?}");
    let upload = screen
        .find("upload [")
        .unwrap_or_else(|| panic!("no upload bar drawn: {screen:?}"));
    assert!(
        screen[upload..].contains("sync ["),
        "the progress line is drawn while uploading: {screen:?}"
    );
    assert!(
        !screen[upload..].contains("identifying"),
        "still identifying during the upload: {screen:?}"
    );
}
