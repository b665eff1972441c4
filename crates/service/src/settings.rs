//! What the person chose: server, token, folders and preferences, in a JSON file only its
//! owner can read (it holds the token).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub server_url: String,
    pub token: String,
    pub folders: Vec<PathBuf>,
    /// Uploads at once.
    pub concurrency: usize,
    /// Upload bytes per second; 0 for no limit.
    pub bandwidth_limit: u64,
    /// Upload same-picture copies even when the server's copy is at least as large.
    pub upload_all_copies: bool,
    /// Back up every file, not only photos, videos, RAW files and their sidecars.
    pub all_files: bool,
    pub start_at_login: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server_url: String::new(),
            token: String::new(),
            folders: Vec::new(),
            concurrency: 3,
            bandwidth_limit: 0,
            upload_all_copies: false,
            all_files: false,
            start_at_login: false,
        }
    }
}

impl Settings {
    pub fn is_configured(&self) -> bool {
        !self.server_url.is_empty() && !self.token.is_empty()
    }

    /// The saved settings, or the defaults when there are none yet.
    pub fn load(path: &Path) -> Result<Settings, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not valid settings: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes atomically, readable by the owner only.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }
}
