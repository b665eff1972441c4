//! What the person chose: server, token, folders and preferences, in a JSON file only its
//! owner can read (it holds the token).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ServiceError;

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
    pub fn load(path: &Path) -> Result<Settings, ServiceError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ServiceError::Settings {
                path: path.to_path_buf(),
                reason: source.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(source) => Err(ServiceError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes atomically, readable by the owner only (it holds the token).
    pub fn save(&self, path: &Path) -> Result<(), ServiceError> {
        use std::io::Write;
        let fail = |source: std::io::Error| ServiceError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = owner_only()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(fail)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| ServiceError::Settings {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }
}

/// Options that create a file only its owner can read. Elsewhere than Unix the file gets the
/// folder's permissions: the user's own data directory.
fn owner_only() -> std::fs::OpenOptions {
    #[allow(unused_mut)]
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}
