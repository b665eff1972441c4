//! The server's settings file: TOML whose keys are the command's own options.
//!
//! Each setting reaches clap through its option's environment variable, so a file's value is
//! parsed, checked and described exactly as the command line's, and a value given on the
//! command line or in the environment wins over the file.

use std::path::{Path, PathBuf};

/// Where a server installed from a package keeps its settings; read when it exists and no
/// `--config` is given.
#[cfg(unix)]
pub const SYSTEM_FILE: &str = "/etc/photosync/server.toml";

/// The settings file to read: the one given, else the system's when there is one.
pub fn path(given: Option<PathBuf>) -> Option<PathBuf> {
    #[cfg(unix)]
    let system = Some(Path::new(SYSTEM_FILE)).filter(|p| p.exists());
    #[cfg(not(unix))]
    let system: Option<&Path> = None;
    given.or_else(|| system.map(Path::to_path_buf))
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

/// Reads `path` into `(environment variable, value)` pairs for the options of `command`.
/// An unknown key or a value of the wrong shape is an error naming the file and the key.
pub fn read(command: &clap::Command, path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the settings file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: not valid TOML: {e}", path.display()))?;
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
