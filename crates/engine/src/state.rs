//! Local state in SQLite (WAL): the file table, the sync list, and uploads in progress.
//!
//! - **files:** what each path was when last read (size, mtime) and what it is (identifier,
//!   digest), so an unchanged file is never read again.
//! - **synced:** the sync list. A digest is written here only after the server's success
//!   response for its upload, or after the server said it holds those bytes.
//! - **pending:** upload URLs and acknowledged offsets, so an interrupted upload resumes where
//!   the server says it stands, even after a restart.
//! - **matches:** files not uploaded because the server holds the same picture, with the server
//!   image that matched and why, so a person can see the reason and force the upload.
//! - **forced:** paths a person asked to upload despite such a match.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use photosync_identify::{Digest, Evidence, Identifier};
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("local state: {0}")]
    Db(String),
    /// Written by a newer Photosync, whose changes this one would not understand.
    #[error(
        "local state: written by a newer Photosync (schema version {found}; this one knows up \
         to {known}); update Photosync, or give another state file"
    )]
    Newer { found: i64, known: i64 },
    /// Another process held the database for longer than the wait.
    #[error("local state: {0}")]
    Busy(String),
}

impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StateError::Busy(e.to_string())
            }
            _ => StateError::Db(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StateError>;

/// What a path held when it was last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub size: u64,
    pub mtime_ns: i64,
    pub digest: Digest,
    pub identifier: Option<Identifier>,
    pub pixels: Option<u64>,
    /// What verifies a same-picture candidate, and how good a copy this is (with `identifier`;
    /// boxed, as it is large beside the rest of a record).
    pub evidence: Option<Box<Evidence>>,
}

/// One entry of the sync list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedRecord {
    pub digest: Digest,
    pub identifier: Option<Identifier>,
    pub remote_id: i64,
    pub how: How,
    pub at: i64,
}

/// Why a digest counts as synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// This client uploaded it.
    Uploaded,
    /// Detection answered that the server holds these bytes.
    OnServer,
    /// Restored from the server: these bytes came from its image.
    Restored,
}

impl How {
    fn as_str(self) -> &'static str {
        match self {
            How::Uploaded => "uploaded",
            How::OnServer => "on_server",
            How::Restored => "restored",
        }
    }
}

impl std::str::FromStr for How {
    type Err = UnknownHow;

    fn from_str(s: &str) -> std::result::Result<How, UnknownHow> {
        match s {
            "uploaded" => Ok(How::Uploaded),
            "on_server" => Ok(How::OnServer),
            "restored" => Ok(How::Restored),
            _ => Err(UnknownHow),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("not a way of being synced")]
pub struct UnknownHow;

/// A column holding a value's text form (a digest, a `how`), read back into its type.
fn parsed<T>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    r.get::<_, String>(i)?.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// An identifier column: one this build cannot read (another identifier version) counts as
/// none, so the file is identified again.
fn identifier_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Identifier>> {
    Ok(r.get::<_, Option<String>>(i)?.and_then(|t| t.parse().ok()))
}

/// An upload the server has accepted but not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub digest: Digest,
    pub url: String,
    pub length: u64,
    pub offset: u64,
}

/// A file left out because the server holds the same picture, and which server image matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRecord {
    pub path: PathBuf,
    pub digest: Digest,
    pub remote_id: i64,
    pub remote_name: String,
    pub distance: u32,
    pub remote_pixels: Option<u64>,
    pub local_pixels: Option<u64>,
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct State {
    conn: Arc<Mutex<Connection>>,
}

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// Version 1 to 2: the verification evidence of each identified file. Rows from before have
/// none, and are read again when they are needed (not for files already synced).
const MIGRATE_1_TO_2: &str = "ALTER TABLE files ADD COLUMN evidence TEXT;";

/// From no version (the files of earlier builds, or a new file) to version 1: every table, and
/// the `skips` table of earlier builds dropped.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL,
    identifier TEXT,
    pixels INTEGER
);
CREATE INDEX IF NOT EXISTS files_digest ON files(digest);
CREATE TABLE IF NOT EXISTS synced (
    server TEXT NOT NULL,
    digest TEXT NOT NULL,
    identifier TEXT,
    remote_id INTEGER NOT NULL,
    how TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (server, digest)
);
CREATE TABLE IF NOT EXISTS pending (
    server TEXT NOT NULL,
    digest TEXT NOT NULL,
    url TEXT NOT NULL,
    length INTEGER NOT NULL,
    offset_acked INTEGER NOT NULL,
    PRIMARY KEY (server, digest)
);
-- Earlier versions noted images they could not identify here and never read them again;
-- such files are now backed up by their bytes.
DROP TABLE IF EXISTS skips;
CREATE TABLE IF NOT EXISTS matches (
    server TEXT NOT NULL,
    path BLOB NOT NULL,
    digest TEXT NOT NULL,
    remote_id INTEGER NOT NULL,
    remote_name TEXT NOT NULL,
    distance INTEGER NOT NULL,
    remote_pixels INTEGER,
    local_pixels INTEGER,
    at INTEGER NOT NULL,
    PRIMARY KEY (server, path)
);
CREATE TABLE IF NOT EXISTS forced (
    server TEXT NOT NULL,
    path BLOB NOT NULL,
    PRIMARY KEY (server, path)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// The file's schema version; a newer one than this build knows is refused.
fn version(conn: &Connection) -> Result<i64> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StateError::Newer {
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Brings the file to `SCHEMA_VERSION`. The version is read again under the write lock, so two
/// processes opening one old file together migrate it once; a current file takes no lock.
fn migrate(conn: &mut Connection) -> Result<()> {
    if version(conn)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found < 1 {
        tx.execute_batch(SCHEMA_V1)?;
    }
    if found < 2 {
        tx.execute_batch(MIGRATE_1_TO_2)?;
    }
    if found < SCHEMA_VERSION {
        tracing::info!(from = found, to = SCHEMA_VERSION, "local state upgraded");
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    tx.commit()?;
    Ok(())
}

fn path_key(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

fn path_of(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))
}

impl State {
    pub fn open(path: &Path) -> Result<State> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Db(e.to_string()))?;
        }
        // Another process opening the same new file at once (two `photosync sync` started
        // together) can make the switch to WAL or the first schema answer "busy" without
        // waiting on the busy handler: tried again for up to 10 s in all (one try may itself
        // wait that long for a writer that holds the database).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Self::open_once(path) {
                Err(StateError::Busy(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path) -> Result<State> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        migrate(&mut conn)?;
        Ok(State {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    pub fn file(&self, path: &Path) -> Result<Option<FileRecord>> {
        // No server is named "": the join finds nothing.
        Ok(self.file_and_synced(path, "")?.map(|(rec, _)| rec))
    }

    /// What the file table holds for `path`, with the server image of its digest when the
    /// sync list of `server` has it: one lookup, for the rescan of an unchanged library.
    pub fn file_and_synced(
        &self,
        path: &Path,
        server: &str,
    ) -> Result<Option<(FileRecord, Option<i64>)>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT f.size, f.mtime_ns, f.digest, f.identifier, f.pixels, s.remote_id,
                     f.evidence
                 FROM files f LEFT JOIN synced s ON s.server = ?2 AND s.digest = f.digest
                 WHERE f.path = ?1",
            )?
            .query_row(params![path_key(path), server], |r| {
                let identifier = identifier_at(r, 3)?;
                let evidence = r
                    .get::<_, Option<String>>(6)?
                    .and_then(|t| t.parse::<Evidence>().ok())
                    .map(Box::new);
                // An identified file of an earlier build (another identifier version, or no
                // evidence) is read again, unless it is synced and nothing more is needed.
                let unreadable = r.get::<_, Option<String>>(3)?.is_some()
                    && (identifier.is_none() || evidence.is_none());
                let remote_id: Option<i64> = r.get(5)?;
                let rec = FileRecord {
                    size: r.get::<_, i64>(0)? as u64,
                    mtime_ns: r.get(1)?,
                    digest: parsed(r, 2)?,
                    identifier: identifier.filter(|_| evidence.is_some()),
                    pixels: r.get::<_, Option<i64>>(4)?.map(|p| p as u64),
                    evidence,
                };
                Ok((!unreadable || remote_id.is_some()).then_some((rec, remote_id)))
            })
            .optional()
            .map(Option::flatten)
        })
    }

    pub fn put_file(&self, path: &Path, f: &FileRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO files (path, size, mtime_ns, digest, identifier, pixels, evidence)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (path) DO UPDATE SET size = ?2, mtime_ns = ?3, digest = ?4,
                     identifier = ?5, pixels = ?6, evidence = ?7",
                params![
                    path_key(path),
                    f.size as i64,
                    f.mtime_ns,
                    f.digest.to_string(),
                    f.identifier.map(|i| i.to_string()),
                    f.pixels.map(|p| p as i64),
                    f.evidence.as_ref().map(|e| e.to_string())
                ],
            )?;
            Ok(())
        })
    }

    /// Forgets what was read of `path`, so the next sync reads it again (its bytes no longer
    /// match what was recorded, though size and mtime do).
    pub fn forget_file(&self, path: &Path) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM files WHERE path = ?1", [path_key(path)])?;
            Ok(())
        })
    }

    /// Forgets the files under the folder `root` that a walk of it did not find (renamed,
    /// moved, deleted), so the table does not grow with every rename. Returns how many.
    pub fn prune_files(&self, root: &Path, found: &HashSet<PathBuf>) -> Result<usize> {
        let mut low = path_key(root).to_vec();
        if low.last() != Some(&b'/') {
            low.push(b'/');
        }
        // Every path starting with `low`: up to the same prefix with its last byte + 1.
        let mut high = low.clone();
        if let Some(last) = high.last_mut() {
            *last += 1;
        }
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let mut gone = Vec::new();
        {
            let mut q = tx.prepare("SELECT path FROM files WHERE path >= ?1 AND path < ?2")?;
            let rows = q.query_map([&low, &high], |r| r.get::<_, Vec<u8>>(0))?;
            for key in rows {
                let key = key?;
                if !found.contains(&path_of(key.clone())) {
                    gone.push(key);
                }
            }
            let mut del = tx.prepare("DELETE FROM files WHERE path = ?1")?;
            for key in &gone {
                del.execute([key])?;
            }
        }
        tx.commit()?;
        Ok(gone.len())
    }

    /// Local paths known to hold `digest`.
    pub fn paths_of(&self, digest: &Digest) -> Result<Vec<PathBuf>> {
        self.with(|c| {
            let mut s = c.prepare("SELECT path FROM files WHERE digest = ?1 ORDER BY path")?;
            let rows = s.query_map([digest.to_string()], |r| Ok(path_of(r.get(0)?)))?;
            rows.collect()
        })
    }

    pub fn synced(&self, server: &str, digest: &Digest) -> Result<Option<SyncedRecord>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT digest, identifier, remote_id, how, at FROM synced
                 WHERE server = ?1 AND digest = ?2",
            )?
            .query_row(params![server, digest.to_string()], |r| {
                Ok(SyncedRecord {
                    digest: parsed(r, 0)?,
                    identifier: identifier_at(r, 1)?,
                    remote_id: r.get(2)?,
                    how: parsed(r, 3)?,
                    at: r.get(4)?,
                })
            })
            .optional()
        })
    }

    /// Records a digest as held by the server. Call only after the server said so.
    pub fn mark_synced(&self, server: &str, rec: &SyncedRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO synced (server, digest, identifier, remote_id, how, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (server, digest) DO UPDATE SET identifier = ?3, remote_id = ?4,
                     how = ?5, at = ?6",
                params![
                    server,
                    rec.digest.to_string(),
                    rec.identifier.map(|i| i.to_string()),
                    rec.remote_id,
                    rec.how.as_str(),
                    rec.at
                ],
            )?;
            c.execute(
                "DELETE FROM pending WHERE server = ?1 AND digest = ?2",
                params![server, rec.digest.to_string()],
            )?;
            Ok(())
        })
    }

    pub fn synced_count(&self, server: &str) -> Result<u64> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM synced WHERE server = ?1",
                [server],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
    }

    /// Forgets the sync list for `server`, so the next sync asks the server again.
    pub fn forget_synced(&self, server: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM synced WHERE server = ?1", [server])?;
            Ok(())
        })
    }

    pub fn pending(&self, server: &str, digest: &Digest) -> Result<Option<Pending>> {
        self.with(|c| {
            c.query_row(
                "SELECT digest, url, length, offset_acked FROM pending
                 WHERE server = ?1 AND digest = ?2",
                params![server, digest.to_string()],
                |r| {
                    Ok(Pending {
                        digest: parsed(r, 0)?,
                        url: r.get(1)?,
                        length: r.get::<_, i64>(2)? as u64,
                        offset: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .optional()
        })
    }

    pub fn put_pending(&self, server: &str, p: &Pending) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO pending (server, digest, url, length, offset_acked)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (server, digest) DO UPDATE SET url = ?3, length = ?4,
                     offset_acked = ?5",
                params![
                    server,
                    p.digest.to_string(),
                    p.url,
                    p.length as i64,
                    p.offset as i64
                ],
            )?;
            Ok(())
        })
    }

    pub fn drop_pending(&self, server: &str, digest: &Digest) -> Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM pending WHERE server = ?1 AND digest = ?2",
                params![server, digest.to_string()],
            )?;
            Ok(())
        })
    }

    /// Remembers why `m.path` was not uploaded to `server`.
    pub fn put_match(&self, server: &str, m: &MatchRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO matches (server, path, digest, remote_id, remote_name, distance,
                     remote_pixels, local_pixels, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (server, path) DO UPDATE SET digest = ?3, remote_id = ?4,
                     remote_name = ?5, distance = ?6, remote_pixels = ?7, local_pixels = ?8,
                     at = ?9",
                params![
                    server,
                    path_key(&m.path),
                    m.digest.to_string(),
                    m.remote_id,
                    m.remote_name,
                    m.distance,
                    m.remote_pixels.map(|p| p as i64),
                    m.local_pixels.map(|p| p as i64),
                    m.at
                ],
            )?;
            Ok(())
        })
    }

    /// Every same-picture match on record for `server`, by path.
    pub fn matches(&self, server: &str) -> Result<Vec<MatchRecord>> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT path, digest, remote_id, remote_name, distance, remote_pixels,
                     local_pixels, at
                 FROM matches WHERE server = ?1 ORDER BY path",
            )?;
            let rows = s.query_map([server], |r| {
                Ok(MatchRecord {
                    path: path_of(r.get(0)?),
                    digest: parsed(r, 1)?,
                    remote_id: r.get(2)?,
                    remote_name: r.get(3)?,
                    distance: r.get(4)?,
                    remote_pixels: r.get::<_, Option<i64>>(5)?.map(|p| p as u64),
                    local_pixels: r.get::<_, Option<i64>>(6)?.map(|p| p as u64),
                    at: r.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Forgets the match and any forced upload for `paths` (they were uploaded).
    pub fn clear_match(&self, server: &str, paths: &[PathBuf]) -> Result<()> {
        self.with(|c| {
            for p in paths {
                c.execute(
                    "DELETE FROM matches WHERE server = ?1 AND path = ?2",
                    params![server, path_key(p)],
                )?;
                c.execute(
                    "DELETE FROM forced WHERE server = ?1 AND path = ?2",
                    params![server, path_key(p)],
                )?;
            }
            Ok(())
        })
    }

    /// Asks for `path` to be uploaded to `server` even though it shows a picture already there.
    pub fn force(&self, server: &str, path: &Path) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO forced (server, path) VALUES (?1, ?2)",
                params![server, path_key(path)],
            )?;
            Ok(())
        })
    }

    pub fn is_forced(&self, server: &str, path: &Path) -> Result<bool> {
        self.with(|c| {
            c.prepare_cached("SELECT 1 FROM forced WHERE server = ?1 AND path = ?2")?
                .exists(params![server, path_key(path)])
        })
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    pub fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )?;
            Ok(())
        })
    }

    /// Opens the state at `path` read-only, or `None` when there is none: creates no folder,
    /// no database and no table, so looking (`photosync status`) leaves no trace.
    pub fn open_existing(path: &Path) -> Result<Option<State>> {
        use rusqlite::OpenFlags;
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::Db(format!("{}: {e}", path.display()))),
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Read-only: an older file is read as it is (its tables are a subset), a newer refused.
        version(&conn)?;
        Ok(Some(State {
            conn: Arc::new(Mutex::new(conn)),
        }))
    }

    /// Paths in the file table whose bytes are in `server`'s sync list: local files backed up,
    /// however many share one digest.
    pub fn synced_file_count(&self, server: &str) -> Result<u64> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM files
                 WHERE digest IN (SELECT digest FROM synced WHERE server = ?1)",
                [server],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
    }
}

impl From<&MatchRecord> for photosync_events::OnServer {
    fn from(m: &MatchRecord) -> Self {
        photosync_events::OnServer::SamePicture {
            remote_id: m.remote_id,
            name: m.remote_name.clone(),
            distance: m.distance,
            remote_pixels: m.remote_pixels,
            local_pixels: m.local_pixels,
            // Only files the server's copy covered are left out, and so recorded.
            standing: photosync_events::Standing::AtLeastAsGood,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest the fixtures use.
    fn ab() -> Digest {
        "ab".repeat(32).parse().unwrap()
    }

    #[test]
    fn a_row_whose_identifier_this_build_cannot_read_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::open(&dir.path().join("state.db")).unwrap();
        let p = Path::new("/photos/a.jpg");
        s.with(|c| {
            c.execute(
                "INSERT INTO files VALUES (?1, 10, 5, ?2, 'v0:from-an-older-build', 100, NULL)",
                params![path_key(p), ab().to_string()],
            )
        })
        .unwrap();
        assert_eq!(s.file(p).unwrap(), None);
    }

    #[test]
    fn processes_opening_a_new_state_file_at_once_all_get_it() {
        // Two `photosync sync` runs started together once failed with "database is locked".
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20 {
            let db = dir.path().join(format!("state-{round}.db"));
            let start = Arc::new(std::sync::Barrier::new(4));
            let opened: Vec<_> = (0..4)
                .map(|_| {
                    let (db, start) = (db.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        State::open(&db).map(|_| ())
                    })
                })
                .collect();
            for t in opened {
                let opened = t.join().unwrap();
                assert!(opened.is_ok(), "round {round}: {opened:?}");
            }
        }
    }

    #[test]
    fn a_state_file_of_earlier_builds_is_upgraded_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        {
            let c = Connection::open(&db).unwrap();
            c.execute_batch(include_str!("../tests/state-v0.sql"))
                .unwrap();
        }
        let s = State::open(&db).unwrap();
        let f = s.file(Path::new("/photos/a.jpg")).unwrap().unwrap();
        assert_eq!((f.size, f.digest), (10, ab()));
        assert_eq!(s.synced("srv", &ab()).unwrap().unwrap().remote_id, 7);
        let cd: Digest = "cd".repeat(32).parse().unwrap();
        assert_eq!(s.pending("srv", &cd).unwrap().unwrap().offset, 4);
        let (version, skips): (i64, i64) = s
            .with(|c| {
                Ok((
                    c.query_row("PRAGMA user_version", [], |r| r.get(0))?,
                    c.query_row(
                        "SELECT COUNT(*) FROM sqlite_master WHERE name = 'skips'",
                        [],
                        |r| r.get(0),
                    )?,
                ))
            })
            .unwrap();
        assert_eq!((version, skips), (SCHEMA_VERSION, 0));
        drop(s);
        // Opened again: nothing to do, nothing lost.
        let s = State::open(&db).unwrap();
        assert!(s.file(Path::new("/photos/a.jpg")).unwrap().is_some());
        s.with(|c| c.execute_batch("PRAGMA user_version = 99"))
            .unwrap();
        drop(s);
        let e = State::open(&db).unwrap_err();
        assert!(
            matches!(
                e,
                StateError::Newer {
                    found: 99,
                    known: SCHEMA_VERSION
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("newer Photosync"), "{e}");
        // Refused without a change: the newer build still finds its file as it left it.
        let c = Connection::open(&db).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 99);
    }

    #[test]
    fn matches_are_kept_until_the_file_is_uploaded_and_forcing_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let m = MatchRecord {
            path: PathBuf::from("/photos/small.jpg"),
            digest: ab(),
            remote_id: 7,
            remote_name: "big.jpg".into(),
            distance: 12,
            remote_pixels: Some(12_000_000),
            local_pixels: Some(3_000_000),
            at: 1,
        };
        {
            let s = State::open(&db).unwrap();
            s.put_match("srv", &m).unwrap();
            s.put_match("srv", &m).unwrap(); // an upsert, not a second row
            s.force("srv", &m.path).unwrap();
            assert!(!s.is_forced("other", &m.path).unwrap());
        }
        let s = State::open(&db).unwrap();
        assert_eq!(s.matches("srv").unwrap(), vec![m.clone()]);
        assert!(s.matches("other").unwrap().is_empty());
        assert!(s.is_forced("srv", &m.path).unwrap());
        s.clear_match("srv", std::slice::from_ref(&m.path)).unwrap();
        assert!(s.matches("srv").unwrap().is_empty());
        assert!(!s.is_forced("srv", &m.path).unwrap());
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/photos/caf\xe9.jpg"));
        {
            let s = State::open(&db).unwrap();
            let f = FileRecord {
                size: 10,
                mtime_ns: 5,
                digest: ab(),
                identifier: None,
                pixels: Some(100),
                evidence: None,
            };
            s.put_file(&odd, &f).unwrap();
            s.put_pending(
                "srv",
                &Pending {
                    digest: ab(),
                    url: "http://x/files/1".into(),
                    length: 10,
                    offset: 4,
                },
            )
            .unwrap();
        }
        let s = State::open(&db).unwrap();
        assert_eq!(s.file(&odd).unwrap().unwrap().size, 10);
        assert_eq!(s.paths_of(&ab()).unwrap(), vec![odd]);
        assert_eq!(s.pending("srv", &ab()).unwrap().unwrap().offset, 4);
        assert!(s.synced("srv", &ab()).unwrap().is_none());
        s.mark_synced(
            "srv",
            &SyncedRecord {
                digest: ab(),
                identifier: None,
                remote_id: 7,
                how: How::Uploaded,
                at: 1,
            },
        )
        .unwrap();
        assert_eq!(s.synced("srv", &ab()).unwrap().unwrap().remote_id, 7);
        assert!(
            s.pending("srv", &ab()).unwrap().is_none(),
            "done uploads leave pending"
        );
        assert!(s.synced("other", &ab()).unwrap().is_none(), "per server");
    }
}
