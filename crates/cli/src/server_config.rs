//! The server's settings file: TOML whose keys are the command's own options.
//!
//! Each setting reaches clap through its option's environment variable, so a file's value is
//! parsed, checked and described exactly as the command line's, and a value given on the
//! command line or in the environment wins over the file.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Where a server installed from a package keeps its settings; read when it exists and no
/// `--config` is given.
#[cfg(unix)]
pub const SYSTEM_FILE: &str = "/etc/photosync/server.toml";

/// Set for a command that runs itself again (as the data's owner): the settings it was given
/// are in its environment already, and the files may not be readable by that user.
pub const READ_MARK: &str = "PHOTOSYNC_SETTINGS_READ";

/// Which settings file to read.
#[derive(Debug)]
pub enum Source {
    /// Named by `--config` or `PHOTOSYNC_CONFIG`: it must be readable.
    Given(PathBuf),
    /// The installed server's, read when it exists. A user who may not read it (it can hold a
    /// password) runs without it, told so, as for a server of their own.
    System(PathBuf),
}

impl Source {
    /// The one given, else the system's when there is one.
    pub fn find(given: Option<PathBuf>) -> Option<Source> {
        #[cfg(unix)]
        let system = Some(Path::new(SYSTEM_FILE)).filter(|p| p.exists());
        #[cfg(not(unix))]
        let system: Option<&Path> = None;
        match given {
            Some(path) => Some(Source::Given(path)),
            None => system.map(|p| Source::System(p.to_path_buf())),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Source::Given(p) | Source::System(p) => p,
        }
    }
}

/// An option the file may set.
struct Settable {
    key: String,
    env: String,
    /// Takes a list (a value delimiter): a TOML array is joined with it.
    delimiter: Option<char>,
}

/// Every option of `command` and its subcommands that has an environment variable, under its
/// long name with `_` for `-` (and its field name, where that differs).
fn settable(command: &clap::Command, out: &mut Vec<Settable>) {
    for arg in command.get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let env = env.to_string_lossy().into_owned();
        let mut keys = vec![long.replace('-', "_"), arg.get_id().to_string()];
        keys.dedup();
        for key in keys {
            if key != "config" && !out.iter().any(|s| s.key == key) {
                out.push(Settable {
                    key,
                    env: env.clone(),
                    delimiter: arg.get_value_delimiter(),
                });
            }
        }
    }
    for sub in command.get_subcommands() {
        settable(sub, out);
    }
}

/// Reads the settings file, and the `server.env` beside it when there is one, into
/// `(environment variable, value)` pairs: the file's for the options of `command`, the other's
/// as they are (the keys of a bucket, which are no options). An unknown key or a value of the
/// wrong shape is an error naming the file and the key, never the value.
pub fn read(command: &clap::Command, source: &Source) -> Result<Vec<(String, String)>, String> {
    let path = source.path();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e)
            if matches!(source, Source::System(_)) && e.kind() == ErrorKind::PermissionDenied =>
        {
            tracing::warn!(
                "not reading {} ({e}): run as root for the installed server's data",
                path.display()
            );
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(format!(
                "cannot read the settings file {}: {e}",
                path.display()
            ))
        }
    };
    let mut pairs = settings(command, path, &text)?;
    let env_file = path.with_file_name("server.env");
    match std::fs::read_to_string(&env_file) {
        Ok(text) => pairs.extend(environment(&env_file, &text)?),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e)
            if matches!(source, Source::System(_)) && e.kind() == ErrorKind::PermissionDenied =>
        {
            tracing::warn!("not reading {} ({e})", env_file.display());
        }
        Err(e) => return Err(format!("cannot read {}: {e}", env_file.display())),
    }
    Ok(pairs)
}

/// Line and column (from 1, in bytes) of a byte offset; bytes, so no offset can panic.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, column)
}

/// `KEY=VALUE` lines (as systemd's `EnvironmentFile=` reads them), `#` comments and blank lines.
fn environment(path: &Path, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once('=').filter(|(key, _)| {
            key.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        let Some((key, value)) = parsed else {
            // The line itself is not said: it may hold a secret.
            return Err(format!(
                "{}: line {} is not KEY=VALUE",
                path.display(),
                n + 1
            ));
        };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
            .unwrap_or(value);
        pairs.push((key.to_owned(), unquoted.to_owned()));
    }
    Ok(pairs)
}

fn settings(
    command: &clap::Command,
    path: &Path,
    text: &str,
) -> Result<Vec<(String, String)>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        // toml's own message quotes the line, which may hold a password.
        let at = e.span().map_or(String::new(), |span| {
            let (line, column) = line_column(text, span.start);
            format!(" at line {line}, column {column}")
        });
        format!("{}: not valid TOML{at}: {}", path.display(), e.message())
    })?;
    let mut known = Vec::new();
    settable(command, &mut known);
    let mut pairs = Vec::new();
    for (key, value) in &table {
        let Some(setting) = known.iter().find(|s| &s.key == key) else {
            let mut names: Vec<&str> = known.iter().map(|s| s.key.as_str()).collect();
            names.sort_unstable();
            return Err(format!(
                "{}: unknown setting {key:?}; known: {}",
                path.display(),
                names.join(", ")
            ));
        };
        // An empty list sets nothing (as an empty variable would set one empty value).
        if matches!(value, toml::Value::Array(items) if items.is_empty()) {
            continue;
        }
        let text = match (value, setting.delimiter) {
            (toml::Value::Array(items), Some(delimiter)) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(&delimiter.to_string())),
            (value, _) => scalar(value),
        };
        let Some(text) = text else {
            return Err(format!(
                "{}: {key} takes {}",
                path.display(),
                if setting.delimiter.is_some() {
                    "a string, a number or a list of them"
                } else {
                    "a string or a number"
                }
            ));
        };
        pairs.push((setting.env.clone(), text));
    }
    Ok(pairs)
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}
