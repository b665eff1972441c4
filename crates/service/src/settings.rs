//! What the person chose: server, token, folders and preferences, in a JSON file only its
//! owner can read. The token goes to the system keyring (Secret Service, Keychain, Credential
//! Manager) where one runs; where none does, it stays in that file, and the file says which.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ServiceError;

/// Where the token is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStore {
    /// In the settings file (owner-only): no keyring could take it.
    #[default]
    File,
    /// In the system keyring; the file holds no token.
    Keyring,
}

/// The token's entry in the system keyring.
#[derive(Debug, Clone)]
pub struct Keyring {
    service: String,
}

impl Keyring {
    /// The entry named `service` (one per app install: the app's identifier).
    pub fn new(service: impl Into<String>) -> Keyring {
        Keyring {
            service: service.into(),
        }
    }

    fn entry(&self) -> keyring::Result<keyring::Entry> {
        keyring::Entry::new(&self.service, "token")
    }

    pub fn get(&self) -> keyring::Result<String> {
        self.entry()?.get_password()
    }

    pub fn set(&self, token: &str) -> keyring::Result<()> {
        self.entry()?.set_password(token)
    }

    fn delete(&self) {
        match self.entry().and_then(|e| e.delete_credential()) {
            Ok(()) | Err(keyring::Error::NoEntry) => {}
            Err(e) => tracing::debug!(error = %e, "no token removed from the keyring"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub server_url: String,
    pub token: String,
    /// Where the token is kept (read from the file; set by `save`).
    pub token_store: TokenStore,
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
            token_store: TokenStore::File,
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

    /// The saved settings, or the defaults when there are none yet. A token kept in the
    /// keyring is read from it; if the keyring cannot give it now, the token is empty and the
    /// window asks for it again.
    pub fn load(path: &Path, keyring: Option<&Keyring>) -> Result<Settings, ServiceError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let mut s: Settings =
                    serde_json::from_slice(&bytes).map_err(|source| ServiceError::Settings {
                        path: path.to_path_buf(),
                        reason: source.to_string(),
                    })?;
                if s.token_store == TokenStore::Keyring {
                    match keyring.map(Keyring::get) {
                        Some(Ok(token)) => s.token = token,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the token is not in the keyring")
                        }
                        None => tracing::warn!("the token is in a keyring this build does not use"),
                    }
                }
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(source) => Err(ServiceError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Puts the token in the keyring if there is one that takes it, else in the file; then
    /// writes the file. Returns where the token went.
    ///
    /// - A token said to be in the keyring that could not be read (no token in memory) stays
    ///   where it is: a keyring that is late at login must not cost the token.
    /// - If the file cannot be written, the keyring gets its earlier token back, so file and
    ///   keyring never pair a server with another server's token.
    pub fn save(&self, path: &Path, keyring: Option<&Keyring>) -> Result<TokenStore, ServiceError> {
        let mut on_disk = self.clone();
        on_disk.token_store = TokenStore::File;
        let Some(k) = keyring else {
            on_disk.write(path)?;
            return Ok(TokenStore::File);
        };
        if self.token.is_empty() {
            // Not read at start (or never set): nothing to move; the file keeps saying where.
            on_disk.token_store = self.token_store;
            on_disk.write(path)?;
            return Ok(self.token_store);
        }
        let before = k.get().ok();
        match k.set(&self.token) {
            Ok(()) => {
                on_disk.token.clear();
                on_disk.token_store = TokenStore::Keyring;
            }
            Err(e) => tracing::info!(
                error = %e,
                "no system keyring takes the token: it stays in the owner-only settings file"
            ),
        }
        if let Err(e) = on_disk.write(path) {
            if on_disk.token_store == TokenStore::Keyring {
                match before {
                    Some(old) => {
                        let _ = k.set(&old);
                    }
                    None => k.delete(),
                }
            }
            return Err(e);
        }
        if on_disk.token_store == TokenStore::File {
            // A token left in the keyring by an earlier save is not this one.
            k.delete();
        }
        Ok(on_disk.token_store)
    }

    /// Writes atomically, readable by the owner only (it may hold the token).
    fn write(&self, path: &Path) -> Result<(), ServiceError> {
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

/// Options that create a file only its owner can read (the settings, the activity log). Elsewhere than Unix the file gets the
/// folder's permissions: the user's own data directory.
pub(crate) fn owner_only() -> std::fs::OpenOptions {
    #[allow(unused_mut)]
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}
