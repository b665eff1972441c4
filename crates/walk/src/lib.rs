//! Walks the files and folders a person names and yields every regular file in them.
//!
//! Files are not filtered by extension: whether a file is an image is decided by its content,
//! later. Inside folders, hidden entries and system folders (recycle bins, NAS thumbnail
//! caches...) are skipped; a path named explicitly is always visited. Symbolic links are
//! followed, and a link that loops back is reported once instead of being walked forever. An
//! entry that cannot be read becomes an error with its path, and the walk goes on.

use std::path::{Path, PathBuf};

/// A path the walk could not visit, and why.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct WalkError {
    pub path: PathBuf,
    pub kind: WalkErrorKind,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkErrorKind {
    /// A path given on the command line does not exist.
    NotFound,
    /// A symbolic link points back at one of its own parent folders.
    SymlinkLoop,
    /// A symbolic link to nothing, or a file gone between listing and reading.
    BrokenLink,
    /// Permission denied, I/O error.
    Unreadable,
}

impl WalkErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            WalkErrorKind::NotFound => "not_found",
            WalkErrorKind::SymlinkLoop => "symlink_loop",
            WalkErrorKind::BrokenLink => "broken_link",
            WalkErrorKind::Unreadable => "unreadable",
        }
    }

    /// Whether the entry held bytes that should have been backed up. A broken link or a link
    /// loop holds none: worth a warning, not a failed backup.
    pub fn loses_data(self) -> bool {
        matches!(self, WalkErrorKind::NotFound | WalkErrorKind::Unreadable)
    }
}

/// Folder names that hold no photos of the person's own: OS and NAS housekeeping.
const SYSTEM_FOLDERS: &[&str] = &[
    "$RECYCLE.BIN",
    "System Volume Information",
    "lost+found",
    "@eaDir",
    "#recycle",
    "node_modules",
];

fn is_skipped(entry: &walkdir::DirEntry) -> bool {
    if entry.depth() == 0 {
        return false;
    }
    let name = entry.file_name().as_encoded_bytes();
    name.first() == Some(&b'.')
        || (entry.file_type().is_dir() && SYSTEM_FOLDERS.iter().any(|s| s.as_bytes() == name))
}

/// Every regular file under `roots`, in a stable order, with an error for each entry that
/// could not be visited.
pub fn walk<P: AsRef<Path>>(
    roots: impl IntoIterator<Item = P>,
) -> impl Iterator<Item = Result<PathBuf, WalkError>> {
    roots.into_iter().flat_map(|root| {
        let root = root.as_ref().to_path_buf();
        let missing = match std::fs::symlink_metadata(&root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(WalkError {
                reason: "no such file or folder".into(),
                path: root.clone(),
                kind: WalkErrorKind::NotFound,
            }),
            _ => None,
        };
        let entries = missing.is_none().then(|| {
            walkdir::WalkDir::new(&root)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| !is_skipped(e))
                .filter_map(|entry| match entry {
                    Ok(e) if e.file_type().is_file() => Some(Ok(e.into_path())),
                    Ok(_) => None,
                    Err(e) => Some(Err(walk_error(e))),
                })
        });
        missing
            .map(Err)
            .into_iter()
            .chain(entries.into_iter().flatten())
    })
}

fn walk_error(e: walkdir::Error) -> WalkError {
    let path = e.path().map(Path::to_path_buf).unwrap_or_default();
    if let Some(ancestor) = e.loop_ancestor() {
        return WalkError {
            reason: format!("symbolic link loop: leads back to {}", ancestor.display()),
            path,
            kind: WalkErrorKind::SymlinkLoop,
        };
    }
    let (kind, reason) = match e.io_error() {
        Some(io) if io.kind() == std::io::ErrorKind::NotFound => (
            WalkErrorKind::BrokenLink,
            "broken symbolic link or vanished file".to_owned(),
        ),
        Some(io) => (WalkErrorKind::Unreadable, io.to_string()),
        None => (WalkErrorKind::Unreadable, e.to_string()),
    };
    WalkError { path, kind, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(root: &Path, results: &[Result<PathBuf, WalkError>]) -> Vec<String> {
        results
            .iter()
            .map(|r| match r {
                Ok(p) => p.strip_prefix(root).unwrap().display().to_string(),
                Err(e) => format!("ERR {} {:?}", e.path.display(), e.kind),
            })
            .collect()
    }

    #[test]
    fn walks_files_skips_hidden_and_system_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join(".thumbnails")).unwrap();
        fs::create_dir_all(root.join("@eaDir")).unwrap();
        for f in [
            "a/1.jpg",
            "a/b/2.png",
            "z.txt",
            ".hidden.jpg",
            ".thumbnails/t.jpg",
            "@eaDir/x.jpg",
        ] {
            fs::write(root.join(f), b"x").unwrap();
        }
        let got: Vec<_> = walk([root]).collect();
        assert_eq!(names(root, &got), vec!["a/1.jpg", "a/b/2.png", "z.txt"]);
    }

    #[test]
    fn explicit_hidden_path_is_visited() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".named.jpg");
        fs::write(&f, b"x").unwrap();
        let got: Vec<_> = walk([&f]).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap(), &f);
    }

    #[test]
    fn missing_root_is_an_error_and_the_walk_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ok.jpg"), b"x").unwrap();
        let got: Vec<_> = walk([dir.path().join("nope"), dir.path().to_path_buf()]).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap_err().kind, WalkErrorKind::NotFound);
        assert!(got[1].is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loop_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("photos")).unwrap();
        fs::write(root.join("photos/1.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(root, root.join("photos/loop")).unwrap();
        let got: Vec<_> = walk([root]).collect();
        let loops = got
            .iter()
            .filter(|r| matches!(r, Err(e) if e.kind == WalkErrorKind::SymlinkLoop))
            .count();
        assert_eq!(loops, 1, "{:?}", names(root, &got));
        assert!(got
            .iter()
            .any(|r| r.as_ref().is_ok_and(|p| p.ends_with("1.jpg"))));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_names_are_walked() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.jpg");
        fs::write(dir.path().join(name), b"x").unwrap();
        let got: Vec<_> = walk([dir.path()]).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap().file_name().unwrap(), name);
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_folder_is_an_error_and_the_walk_goes_on() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("locked")).unwrap();
        fs::write(root.join("locked/x.jpg"), b"x").unwrap();
        fs::write(root.join("open.jpg"), b"x").unwrap();
        fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        let got: Vec<_> = walk([root]).collect();
        fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
        if is_root() {
            // root reads anything; the permission check cannot be provoked
            assert_eq!(got.len(), 2);
            return;
        }
        assert!(got
            .iter()
            .any(|r| matches!(r, Err(e) if e.kind == WalkErrorKind::Unreadable)));
        assert!(got
            .iter()
            .any(|r| r.as_ref().is_ok_and(|p| p.ends_with("open.jpg"))));
    }

    #[cfg(unix)]
    fn is_root() -> bool {
        fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
    }
}
