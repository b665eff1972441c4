//! What happened to files over the last days: uploaded, found on the server, skipped, failed,
//! with times. One JSON line per entry, appended as it happens, in an owner-only file (it
//! lists the person's files); entries older than `KEEP` are dropped when the log is opened and
//! once a day while it runs. It is a record for people, not state: a lost line loses no photo,
//! so lines are not synced one by one.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How far back the activity view reaches.
pub const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Happened {
    Uploaded,
    /// The server already held it (same bytes or the same picture).
    OnServer,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// The file's path as a person reads it (a name that is not Unicode is shown lossily).
    pub path: String,
    pub what: Happened,
    /// Why (skipped, failed) or how (the server image it matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug)]
pub struct Activity {
    path: PathBuf,
    /// The entries kept, oldest first.
    entries: Vec<Entry>,
    /// Each path's newest entry, by its place in `entries`.
    latest: std::collections::HashMap<String, usize>,
    file: Option<std::fs::File>,
}

impl Entry {
    /// What happened to `path` just now.
    pub fn now(path: &Path, what: Happened, detail: Option<&str>) -> Entry {
        Entry {
            at: now_secs(),
            path: path.to_string_lossy().into_owned(),
            what,
            detail: detail.map(str::to_owned),
        }
    }
}

/// At most this many entries are kept, however busy the week.
pub const MAX_ENTRIES: usize = 100_000;

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Activity {
    /// Reads the log at `path` (none yet is an empty log), keeps the last `KEEP`, and writes
    /// back what is kept. A line that does not parse (a write cut short) is left out.
    pub fn open(path: &Path, now: u64) -> Activity {
        let entries: Vec<Entry> = match std::fs::File::open(path) {
            // By bytes: a damaged line is skipped, not the end of the log.
            Ok(f) => std::io::BufReader::new(f)
                .split(b'\n')
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_slice::<Entry>(&l).ok())
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut a = Activity {
            path: path.to_path_buf(),
            entries,
            latest: Default::default(),
            file: None,
        };
        a.prune(now);
        a
    }

    /// Drops what is older than `KEEP` (and beyond `MAX_ENTRIES`), and writes the rest anew.
    fn prune(&mut self, now: u64) {
        let since = now.saturating_sub(KEEP.as_secs());
        self.entries.retain(|e| e.at >= since);
        let over = self.entries.len().saturating_sub(MAX_ENTRIES);
        self.entries.drain(..over);
        self.latest = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.clone(), i))
            .collect();
        if let Err(e) = self.rewrite() {
            tracing::warn!(error = %e, path = %self.path.display(), "activity log not written");
        }
    }

    fn rewrite(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        {
            let file = crate::settings::owner_only()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            let mut f = std::io::BufWriter::new(file);
            for e in &self.entries {
                writeln!(f, "{}", serde_json::to_string(e).unwrap_or_default())?;
            }
            f.flush()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.file = Some(std::fs::OpenOptions::new().append(true).open(&self.path)?);
        Ok(())
    }

    /// Adds `entry`, unless it only repeats the path's newest entry (a rescan meeting the
    /// same match, a retry failing for the same reason). An upload is always news.
    pub fn add(&mut self, entry: Entry) {
        // Once a day's worth past the window (or past the cap), the old part goes.
        let day = 24 * 3600;
        let stale = self
            .entries
            .first()
            .is_some_and(|e| e.at + KEEP.as_secs() + day < entry.at);
        if stale || self.entries.len() >= MAX_ENTRIES + MAX_ENTRIES / 10 {
            self.prune(entry.at);
        }
        let repeat = self.latest.get(&entry.path).is_some_and(|&i| {
            let last = &self.entries[i];
            entry.what != Happened::Uploaded
                && last.what == entry.what
                && last.detail == entry.detail
        });
        if repeat {
            return;
        }
        self.latest.insert(entry.path.clone(), self.entries.len());
        if let Some(f) = &mut self.file {
            let line = serde_json::to_string(&entry).unwrap_or_default();
            if let Err(e) = writeln!(f, "{line}") {
                tracing::debug!(error = %e, "activity line not written");
            }
        }
        self.entries.push(entry);
    }

    /// The newest `limit` entries since `since` (seconds since the epoch), newest first.
    pub fn recent(&self, since: u64, limit: usize) -> Vec<Entry> {
        self.entries
            .iter()
            .rev()
            .take_while(|e| e.at >= since)
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: u64, name: &str, what: Happened) -> Entry {
        Entry {
            at,
            path: format!("/p/{name}"),
            what,
            detail: None,
        }
    }

    /// Entries survive a reopen, newest first; a week-old one and a torn line are dropped.
    #[test]
    fn the_log_keeps_a_week_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("activity.jsonl");
        let now = 1_000_000_000;
        let mut a = Activity::open(&path, now);
        a.add(entry(
            now - KEEP.as_secs() - 1,
            "old.jpg",
            Happened::Uploaded,
        ));
        a.add(entry(now - 10, "a.jpg", Happened::Uploaded));
        a.add(entry(now - 5, "b.jpg", Happened::Failed));
        drop(a);
        // A write cut short leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"at\": 99").unwrap();
        drop(f);
        let a = Activity::open(&path, now);
        let names: Vec<_> = a
            .recent(0, 10)
            .iter()
            .map(|e| e.path.trim_start_matches("/p/").to_owned())
            .collect();
        assert_eq!(names, ["b.jpg", "a.jpg"]);
        assert_eq!(a.recent(now - 7, 10).len(), 1, "since a time");
        assert_eq!(a.recent(0, 1).len(), 1, "at most the limit");
        // The file was rewritten without them, and takes new lines after; a repeat of a
        // path's newest entry is not one, an upload always is.
        let mut a = a;
        a.add(entry(now, "c.jpg", Happened::Skipped));
        a.add(entry(now, "c.jpg", Happened::Skipped));
        a.add(entry(now, "b.jpg", Happened::Failed));
        a.add(entry(now, "a.jpg", Happened::Uploaded));
        drop(a);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(!text.contains("old.jpg"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "it lists the person's files");
        }
    }

    /// A log left running past the window drops its old part by itself.
    #[test]
    fn a_running_log_prunes_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("activity.jsonl");
        let start = 1_000_000_000;
        let mut a = Activity::open(&path, start);
        a.add(entry(start, "first.jpg", Happened::Uploaded));
        let later = start + KEEP.as_secs() + 2 * 24 * 3600;
        a.add(entry(later, "later.jpg", Happened::Uploaded));
        assert_eq!(a.recent(0, 10).len(), 1);
        assert!(!std::fs::read_to_string(&path)
            .unwrap()
            .contains("first.jpg"));
    }
}
