//! Where `photosync` finds its server, token and local state: flags, then the environment,
//! then the config file in the platform's config directory (written owner-only).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileConfig {
    pub server: Option<String>,
    pub token: Option<String>,
}

fn dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "photosync")
}

pub fn config_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PHOTOSYNC_CONFIG") {
        return Some(PathBuf::from(p));
    }
    dirs().map(|d| d.config_dir().join("config.toml"))
}

pub fn default_state_path() -> Option<PathBuf> {
    dirs().map(|d| d.data_dir().join("state.db"))
}

/// Whether `server` is a server's address: an absolute `http://` or `https://` URL with a host,
/// an optional port and no path. A wrong value is refused here, before it is saved or used,
/// rather than failing later as an unreachable server.
///
/// Parsed by hand: the `url` crate is in the tree but not a dependency of this crate.
pub fn check_server_url(server: &str) -> Result<(), String> {
    const EXAMPLE: &str = "e.g. http://host:8080";
    let not_address = |why: &str| Err(format!("{server:?} is not a server address: {why}"));
    let Some((scheme, rest)) = server.split_once("://") else {
        return not_address(&format!(
            "it must start with http:// or https://, {EXAMPLE}"
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return not_address(&format!(
            "the scheme must be http or https, not {scheme:?}; {EXAMPLE}"
        ));
    }
    if server.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return not_address(&format!("it holds spaces or control characters; {EXAMPLE}"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !tail.is_empty() && tail != "/" {
        return Err(format!(
            "{server:?} has a path ({tail}): give the server's address without a path, \
             {EXAMPLE}"
        ));
    }
    if authority.contains('@') {
        return not_address("a user or password does not go in it (the token is given apart)");
    }
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 address: [::1]:8080
        Some(v6) => {
            let Some((addr, after)) = v6.split_once(']') else {
                return not_address("an IPv6 address needs its closing ]");
            };
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return not_address(&format!("{addr:?} is not an IPv6 address"));
            }
            match after {
                "" => (addr, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (addr, Some(port)),
                    None => return not_address("only a port may follow the IPv6 address"),
                },
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return not_address(&format!("it has no host, {EXAMPLE}"));
    }
    let host_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
    if !host.chars().all(host_char) {
        return not_address(&format!("{host:?} is not a host name"));
    }
    if let Some(port) = port {
        // Digits only: `u16::from_str` would take "+80".
        if !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err() {
            return not_address(&format!("the port must be a number up to 65535, {EXAMPLE}"));
        }
    }
    Ok(())
}

pub fn load(path: &Path) -> Result<FileConfig, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes the config with owner-only permissions: it holds a token.
pub fn save(path: &Path, config: &FileConfig) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = toml::to_string(config).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("toml.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
