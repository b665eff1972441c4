//! Where a server image lands on this computer: its folder and name made safe for the local
//! file system. The server is not trusted here: whatever it sends, a restore writes only below
//! the chosen folder, and every change to a name is said.

use std::ffi::OsString;
use std::path::PathBuf;

/// The rules of a file system's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rules {
    /// Anything but `/` and NUL, at most 255 bytes.
    Unix,
    /// Also no `<>:"\|?*` or control characters, no trailing dot or space, and not a device
    /// name (`CON`, `NUL`, `COM1`...), with or without an extension.
    Windows,
}

impl Rules {
    pub fn of_this_system() -> Rules {
        if cfg!(windows) {
            Rules::Windows
        } else {
            Rules::Unix
        }
    }
}

/// An image's place below the restore folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Relative path: safe folders, then the safe name.
    pub path: PathBuf,
    /// What was changed to make it safe, for people; None when nothing was.
    pub changed: Option<String>,
}

const DEVICES: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// One path component made safe: `None` when nothing of it is usable (empty, `.`, `..`).
fn safe_component(text: &str, rules: Rules) -> Option<String> {
    let mut out: String = text
        .chars()
        .map(|c| match c {
            '/' | '\0' => '_',
            '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*' if rules == Rules::Windows => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    if rules == Rules::Windows {
        let trimmed = out.trim_end_matches(['.', ' ']).len();
        out.truncate(trimmed);
        let stem = out.split('.').next().unwrap_or("").trim_end();
        if DEVICES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
            out.insert(0, '_');
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        return None;
    }
    // Room for a clash's " (123)".
    Some(shorten(out, 240))
}

/// What a restore's partial files end with: no restored name may.
const PARTIAL_SUFFIX: &str = ".photosync-restore";

/// The hidden name of the partial file of the image with this digest.
pub fn partial_name(digest: &photosync_identify::Digest) -> String {
    format!(".{}{PARTIAL_SUFFIX}", &digest.to_string()[..32])
}

/// At most `max` bytes, cut at a character boundary, keeping the extension.
fn shorten(name: String, max: usize) -> String {
    if name.len() <= max {
        return name;
    }
    let ext = match name.rfind('.') {
        Some(i) if name.len() - i <= 16 => name[i..].to_owned(),
        _ => String::new(),
    };
    let mut cut = max - ext.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &name[..cut])
}

/// Where an image named `name` (its exact bytes in `name_bytes`, when the server has them) from
/// `folder` goes below the restore folder.
pub fn place(folder: Option<&str>, name: &str, name_bytes: Option<&[u8]>, rules: Rules) -> Placed {
    let mut changes = Vec::new();
    let mut path = PathBuf::new();
    if let Some(folder) = folder.filter(|f| !f.is_empty()) {
        for part in folder.split(['/', '\\']) {
            match safe_component(part, rules) {
                Some(safe) if safe == part => path.push(safe),
                Some(safe) => {
                    changes.push(format!("folder {part:?} became {safe:?}"));
                    path.push(safe);
                }
                None => changes.push(format!("folder {part:?} was left out")),
            }
        }
    }
    match exact_name(name_bytes, rules) {
        Some(exact) => path.push(exact),
        None => {
            let safe = match safe_component(name, rules) {
                // A restore's own partial files are named so: never a restored file.
                Some(safe) if safe.ends_with(PARTIAL_SUFFIX) => format!("{safe}_"),
                Some(safe) => safe,
                None => "restored".to_owned(),
            };
            if safe != name {
                changes.push(format!("name {name:?} became {safe:?}"));
            }
            path.push(safe);
        }
    }
    Placed {
        path,
        changed: (!changes.is_empty()).then(|| changes.join("; ")),
    }
}

/// The exact bytes of a name, where this system can take them as they are (on Unix, any plain
/// name: not valid UTF-8 is fine).
fn exact_name(bytes: Option<&[u8]>, rules: Rules) -> Option<OsString> {
    let bytes = bytes?;
    let plain = !bytes.is_empty()
        && bytes.len() <= 240
        && !bytes.ends_with(PARTIAL_SUFFIX.as_bytes())
        && !bytes.contains(&b'/')
        && !bytes.contains(&0)
        && bytes != b"."
        && bytes != b"..";
    // macOS file systems take only UTF-8 names, which the text form already is.
    if !plain || rules != Rules::Unix || cfg!(target_os = "macos") {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        Some(OsString::from_vec(bytes.to_vec()))
    }
    #[cfg(not(unix))]
    None
}

/// The `n`th name beside a clash: `IMG_1 (2).jpg` for `IMG_1.jpg`.
pub fn numbered(path: &std::path::Path, n: u32) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem} ({n}).{}", ext.to_string_lossy()),
        None => format!("{stem} ({n})"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(folder: Option<&str>, name: &str) -> Placed {
        place(folder, name, None, Rules::Unix)
    }

    #[test]
    fn plain_names_and_folders_are_kept() {
        let p = unix(Some("2021/Été"), "IMG_0001.JPG");
        assert_eq!(p.path, PathBuf::from("2021/Été/IMG_0001.JPG"));
        assert_eq!(p.changed, None);
        assert_eq!(unix(None, "a:b?.jpg").path, PathBuf::from("a:b?.jpg"));
    }

    #[test]
    fn nothing_leaves_the_restore_folder() {
        for (folder, name) in [
            (Some("../../etc"), "passwd"),
            (Some("/abs/olute"), "x.jpg"),
            (Some("a/./b/.."), "x.jpg"),
            (None, "../x.jpg"),
            (None, ".."),
            (None, "a/b.jpg"),
        ] {
            let p = unix(folder, name);
            assert!(
                p.path
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))),
                "{folder:?} {name:?} gave {:?}",
                p.path
            );
            assert!(p.changed.is_some(), "{folder:?} {name:?}");
        }
        assert_eq!(unix(Some("../a"), "x.jpg").path, PathBuf::from("a/x.jpg"));
        assert_eq!(unix(None, "a/b.jpg").path, PathBuf::from("a_b.jpg"));
        assert_eq!(unix(None, "..").path, PathBuf::from("restored"));
        // Never the name of a restore's partial file.
        let partial = ".0123.photosync-restore";
        assert_eq!(
            unix(None, partial).path,
            PathBuf::from(format!("{partial}_"))
        );
        assert_eq!(unix(None, "a\nb").path, PathBuf::from("a_b"));
    }

    #[test]
    fn windows_rules_take_out_device_names_and_reserved_characters() {
        let w = |name: &str| place(None, name, None, Rules::Windows);
        assert_eq!(w("CON").path, PathBuf::from("_CON"));
        assert_eq!(w("nul.jpg").path, PathBuf::from("_nul.jpg"));
        assert_eq!(w("com1 .txt").path, PathBuf::from("_com1 .txt"));
        assert_eq!(w("a:b?.jpg").path, PathBuf::from("a_b_.jpg"));
        assert_eq!(w("photo. ").path, PathBuf::from("photo"));
        assert_eq!(w("CONSOLE.jpg").path, PathBuf::from("CONSOLE.jpg"));
        assert!(w("CON").changed.unwrap().contains("\"_CON\""));
        let p = place(Some("aux/ok"), "x.jpg", None, Rules::Windows);
        assert_eq!(p.path, PathBuf::from("_aux/ok/x.jpg"));
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.jpeg", "é".repeat(200));
        let p = unix(None, &long);
        let name = p.path.to_str().unwrap();
        assert!(name.len() <= 240);
        assert!(name.ends_with("é.jpeg"));
    }

    #[cfg(unix)]
    #[test]
    fn exact_name_bytes_are_kept_on_unix() {
        let bytes = b"caf\xe9.jpg";
        let p = place(None, "caf\u{FFFD}.jpg", Some(bytes), Rules::Unix);
        assert_eq!(
            std::os::unix::ffi::OsStrExt::as_bytes(p.path.as_os_str()),
            bytes
        );
        assert_eq!(p.changed, None);
        // Unsafe bytes fall back to the made-safe text.
        let p = place(None, "x.jpg", Some(b".."), Rules::Unix);
        assert_eq!(p.path, PathBuf::from("x.jpg"));
    }

    #[test]
    fn clashes_are_numbered_before_the_extension() {
        let p = std::path::Path::new("a/IMG_1.jpg");
        assert_eq!(numbered(p, 1), PathBuf::from("a/IMG_1 (1).jpg"));
        assert_eq!(
            numbered(std::path::Path::new("README"), 2),
            PathBuf::from("README (2)")
        );
    }
}
