//! The embedded metadata store: SQLite in WAL mode. Blocking calls run on tokio's blocking pool,
//! each on a connection from a small pool (WAL lets readers run beside the one writer).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use photosync_protocol::{percent_encode_name, ImageInfo};
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{
    check_limits, check_quota, contains_pattern, image_day, number_taken, Creation, Identified,
    ImageQuery, ImageRecord, NewImage, RemovedUser, Result, Store, StoreError, Unverified, Upload,
    UploadLimits, UserId, UserRecord, UserSummary,
};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        backend(e)
    }
}

/// The schema this code reads and writes; `PRAGMA user_version` holds the database's.
const VERSION: i64 = 5;

/// Version 3. Users and per-user image numbers are never reused (AUTOINCREMENT and a counter);
/// `blobs` lists published blobs, for collecting those nothing references; `name_bytes` is a
/// file name's exact bytes when the client sent them (version 2); `evidence` is the server's
/// own verification data of an image (`e1;...`), `none` for a file that is not one, NULL until
/// it has been computed (version 3); `folder` is where the file lay below the folder it was
/// synced from, `taken` its capture time, and `day` what lists sort and filter by (the capture
/// time, else the modification time, else the upload, in UTC; version 4); a doomed blob's
/// `collector` and `claimed_at` say who is deleting it (version 5).
const SCHEMA: &str = "
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    quota INTEGER,
    next_image INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    length INTEGER NOT NULL,
    received INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    name TEXT NOT NULL,
    name_bytes BLOB,
    declared TEXT,
    verified TEXT,
    mtime INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    image_id INTEGER,
    lock_holder TEXT,
    lock_until INTEGER
);
CREATE INDEX uploads_expiry ON uploads(expires_at);
CREATE INDEX uploads_user ON uploads(user_id, image_id);
CREATE INDEX uploads_verified ON uploads(verified) WHERE verified IS NOT NULL;
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    digest TEXT NOT NULL,
    identifier TEXT,
    name TEXT NOT NULL,
    name_bytes BLOB,
    bytes INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    format TEXT,
    mtime INTEGER,
    uploaded_at INTEGER NOT NULL,
    evidence TEXT,
    folder TEXT,
    taken TEXT,
    day TEXT NOT NULL DEFAULT '',
    UNIQUE (user_id, digest),
    UNIQUE (user_id, number)
);
CREATE INDEX images_digest ON images(digest);
CREATE INDEX images_unverified ON images(id) WHERE evidence IS NULL;
CREATE INDEX images_day ON images(user_id, day, number);
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    doomed INTEGER NOT NULL DEFAULT 0,
    collector TEXT,
    claimed_at INTEGER
);
";

/// Version 0 (no version set) to the current schema: tables rebuilt with the new columns; an
/// image's number is its old global id, so clients' records stay valid.
const MIGRATE_0_TO_1: &str = "
ALTER TABLE users RENAME TO users_v0;
ALTER TABLE uploads RENAME TO uploads_v0;
ALTER TABLE images RENAME TO images_v0;
DROP INDEX IF EXISTS uploads_expiry;
";

const COPY_0_TO_1: &str = "
INSERT INTO users (id, name, token_hash, created_at)
    SELECT id, name, token_hash, created_at FROM users_v0;
INSERT INTO images (id, user_id, number, digest, identifier, name, bytes, width, height, format,
                    mtime, uploaded_at)
    SELECT id, user_id, id, digest, identifier, name, bytes, width, height, format, mtime,
           uploaded_at FROM images_v0;
UPDATE users SET next_image =
    COALESCE((SELECT MAX(number) FROM images WHERE images.user_id = users.id), 0);
INSERT INTO uploads (id, user_id, length, received, metadata, name, declared, mtime, created_at,
                     expires_at, image_id)
    SELECT id, user_id, length, received, metadata, name, digest, mtime, created_at, expires_at,
           image_id FROM uploads_v0;
INSERT INTO blobs (digest) SELECT DISTINCT digest FROM images;
DROP TABLE uploads_v0;
DROP TABLE images_v0;
DROP TABLE users_v0;
";

/// Version 1 to 2: the exact bytes of file names; rows from before have none.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE uploads ADD COLUMN name_bytes BLOB;
ALTER TABLE images ADD COLUMN name_bytes BLOB;
";

/// Version 2 to 3: verification evidence; images from before are identified again in the
/// background (`reidentify`), and match nothing by picture until they are.
const MIGRATE_2_TO_3: &str = "
ALTER TABLE images ADD COLUMN evidence TEXT;
CREATE INDEX images_unverified ON images(id) WHERE evidence IS NULL;
";

/// Version 3 to 4: folders, capture times and the day lists sort by. Capture times come from
/// the evidence already computed (`fill_days`); images from before have no folder.
const MIGRATE_3_TO_4: &str = "
ALTER TABLE images ADD COLUMN folder TEXT;
ALTER TABLE images ADD COLUMN taken TEXT;
ALTER TABLE images ADD COLUMN day TEXT NOT NULL DEFAULT '';
CREATE INDEX images_day ON images(user_id, day, number);
";

/// Version 4 to 5: one collector per doomed blob.
const MIGRATE_4_TO_5: &str = "
ALTER TABLE blobs ADD COLUMN collector TEXT;
ALTER TABLE blobs ADD COLUMN claimed_at INTEGER;
";

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let store = SqliteStore {
            path: path.to_path_buf(),
            idle: Arc::default(),
        };
        let mut conn = store.connect()?;
        migrate(&mut conn)?;
        store.give_back(conn);
        Ok(store)
    }

    fn connect(&self) -> Result<Connection> {
        let conn = Connection::open(&self.path).map_err(backend)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 10000;",
        )
        .map_err(backend)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 8 {
            idle.push(conn);
        }
    }

    /// Runs `f` on a pooled connection on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = this.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => this.connect()?,
            };
            let out = f(&mut conn);
            this.give_back(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

/// Brings the schema to [`VERSION`], each step in one transaction.
fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(StoreError::Backend(format!(
            "the database has schema version {version}, newer than this server's {VERSION}"
        )));
    }
    if version == VERSION {
        return Ok(());
    }
    let has_tables: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'users')",
        [],
        |r| r.get(0),
    )?;
    // Table rebuilds must not trip foreign keys half-way; they are checked before commit.
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let result = (|| {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if version >= 1 {
            if version < 2 {
                tx.execute_batch(MIGRATE_1_TO_2)?;
            }
            if version < 3 {
                tx.execute_batch(MIGRATE_2_TO_3)?;
            }
            if version < 4 {
                tx.execute_batch(MIGRATE_3_TO_4)?;
                fill_days(&tx)?;
            }
            tx.execute_batch(MIGRATE_4_TO_5)?;
        } else if has_tables {
            // Version 0 is rebuilt into the current tables at once.
            tx.execute_batch(MIGRATE_0_TO_1)?;
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(COPY_0_TO_1)?;
            fill_days(&tx)?;
            let broken: i64 =
                tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })?;
            if broken > 0 {
                return Err(StoreError::Backend(format!(
                    "migration left {broken} rows with broken references"
                )));
            }
        } else {
            tx.execute_batch(SCHEMA)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {VERSION}"))?;
        tx.commit()?;
        Ok(())
    })();
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    result
}

/// Sets `taken` (from the evidence, where it has a capture time) and `day` of images recorded
/// before version 4.
fn fill_days(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let rows: Vec<(i64, Option<String>, Option<i64>, i64)> = tx
        .prepare("SELECT id, evidence, mtime, uploaded_at FROM images WHERE day = ''")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut set = tx.prepare("UPDATE images SET taken = ?2, day = ?3 WHERE id = ?1")?;
    for (id, evidence, mtime, uploaded_at) in rows {
        let taken = evidence
            .and_then(|e| e.parse::<photosync_identify::Evidence>().ok())
            .and_then(|e| e.capture.time);
        let day = image_day(taken.as_deref(), mtime, uploaded_at);
        set.execute(params![id, taken, day])?;
    }
    Ok(())
}

fn image_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ImageInfo> {
    Ok(ImageInfo {
        id: row.get("number")?,
        name: row.get("name")?,
        name_bytes: row
            .get::<_, Option<Vec<u8>>>("name_bytes")?
            .map(|b| percent_encode_name(&b)),
        digest: row.get("digest")?,
        identifier: row.get("identifier")?,
        bytes: row.get::<_, i64>("bytes")? as u64,
        width: row.get("width")?,
        height: row.get("height")?,
        mtime: row.get("mtime")?,
        uploaded_at: row.get("uploaded_at")?,
        folder: row.get("folder")?,
        taken: row.get("taken")?,
        format: row.get("format")?,
    })
}

fn upload_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Upload> {
    Ok(Upload {
        id: row.get("id")?,
        user_id: row.get("user_id")?,
        length: row.get::<_, i64>("length")? as u64,
        offset: row.get::<_, i64>("received")? as u64,
        metadata: row.get("metadata")?,
        name: row.get("name")?,
        name_bytes: row.get("name_bytes")?,
        declared: row.get("declared")?,
        verified: row.get("verified")?,
        mtime: row.get("mtime")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        image_id: row.get("image_id")?,
    })
}

const IMAGE_COLUMNS: &str = "number, name, name_bytes, digest, identifier, bytes, width, height, \
     mtime, uploaded_at, format, folder, taken";

fn immediate(c: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    // Writers take the lock up front, so two of them never deadlock upgrading a read.
    c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

fn gone_unless_one(changed: usize) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::UploadGone)
    }
}

/// Records a new upload if the user's limits and quota allow it.
fn insert_upload(tx: &rusqlite::Transaction<'_>, u: &Upload, limits: &UploadLimits) -> Result<()> {
    let (held, pending, quota): (i64, i64, Option<i64>) = tx.query_row(
        "SELECT (SELECT COUNT(*) FROM uploads WHERE user_id = ?1 AND image_id IS NULL),
                (SELECT COALESCE(SUM(length), 0) FROM uploads
                  WHERE user_id = ?1 AND image_id IS NULL),
                quota
         FROM users WHERE id = ?1",
        [u.user_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (held, pending) = (held as u64, pending as u64);
    check_limits(held, pending, u.length, limits)?;
    if let Some(quota) = quota.map(|q| q as u64) {
        let stored: i64 = tx.query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM images WHERE user_id = ?1",
            [u.user_id],
            |r| r.get(0),
        )?;
        check_quota(quota, stored as u64, pending, u.length)?;
    }
    insert_upload_row(tx, u)
}

/// Records an image under `number`.
fn insert_image(tx: &rusqlite::Transaction<'_>, number: i64, img: &NewImage) -> Result<()> {
    tx.execute(
        "INSERT INTO images (user_id, number, digest, identifier, name, name_bytes, bytes, width,
                             height, format, mtime, uploaded_at, evidence, folder, taken, day)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            img.user_id,
            number,
            img.digest,
            img.identifier,
            img.name,
            img.name_bytes,
            img.bytes as i64,
            img.width,
            img.height,
            img.format,
            img.mtime,
            img.uploaded_at,
            img.evidence,
            img.folder,
            img.taken,
            img.day()
        ],
    )?;
    Ok(())
}

/// Registers a blob (or finds it registered) and says whether it is doomed.
fn register_blob(tx: &rusqlite::Transaction<'_>, digest: &str) -> Result<bool> {
    tx.execute(
        "INSERT INTO blobs (digest) VALUES (?1) ON CONFLICT (digest) DO NOTHING",
        [digest],
    )?;
    Ok(tx.query_row(
        "SELECT doomed FROM blobs WHERE digest = ?1",
        [digest],
        |r| r.get(0),
    )?)
}

fn insert_upload_row(tx: &rusqlite::Transaction<'_>, u: &Upload) -> Result<()> {
    tx.execute(
        "INSERT INTO uploads (id, user_id, length, received, metadata, name, name_bytes,
                              declared, mtime, created_at, expires_at, image_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            u.id,
            u.user_id,
            u.length as i64,
            u.offset as i64,
            u.metadata,
            u.name,
            u.name_bytes,
            u.declared,
            u.mtime,
            u.created_at,
            u.expires_at,
            u.image_id
        ],
    )?;
    Ok(())
}

/// A user's name, creation time, image count and bytes, and quota; `user_summary` reads it.
const USER_SUMMARY: &str =
    "SELECT u.name, u.created_at, COUNT(i.id), COALESCE(SUM(i.bytes), 0), u.quota
     FROM users u LEFT JOIN images i ON i.user_id = u.id";

fn user_summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserSummary> {
    Ok(UserSummary {
        name: r.get(0)?,
        created_at: r.get(1)?,
        images: r.get::<_, i64>(2)? as u64,
        bytes: r.get::<_, i64>(3)? as u64,
        quota: r.get::<_, Option<i64>>(4)?.map(|q| q as u64),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(
        &self,
        name: &str,
        token_hash: &str,
        now: i64,
        quota: Option<u64>,
    ) -> Result<UserId> {
        let (name, hash) = (name.to_owned(), token_hash.to_owned());
        let taken = name.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO users (name, token_hash, created_at, quota) VALUES (?1, ?2, ?3, ?4)",
                params![name, hash, now, quota.map(|q| q as i64)],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
        .map_err(|e| match e {
            StoreError::Backend(m) if m.contains("UNIQUE") => StoreError::UserExists(taken),
            other => other,
        })
    }

    async fn remove_user(&self, name: &str) -> Result<Option<RemovedUser>> {
        let name = name.to_owned();
        self.run(move |c| {
            let tx = immediate(c)?;
            let Some(user): Option<i64> = tx
                .query_row("SELECT id FROM users WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
                .optional()?
            else {
                return Ok(None);
            };
            let uploads = tx
                .prepare("SELECT id FROM uploads WHERE user_id = ?1")?
                .query_map([user], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            // Uploads and images go with the user (ON DELETE CASCADE).
            tx.execute("DELETE FROM users WHERE id = ?1", [user])?;
            tx.commit()?;
            Ok(Some(RemovedUser { id: user, uploads }))
        })
        .await
    }

    async fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<()> {
        let name = name.to_owned();
        self.run(move |c| {
            let n = c.execute(
                "UPDATE users SET quota = ?2 WHERE name = ?1",
                params![name, quota.map(|q| q as i64)],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchUser(name));
            }
            Ok(())
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<UserSummary>> {
        self.run(|c| {
            let mut s = c.prepare(&format!("{USER_SUMMARY} GROUP BY u.id ORDER BY u.name"))?;
            let rows = s.query_map([], user_summary)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn account(&self, user: UserId) -> Result<Option<UserSummary>> {
        self.run(move |c| {
            Ok(c.query_row(
                &format!("{USER_SUMMARY} WHERE u.id = ?1 GROUP BY u.id"),
                [user],
                user_summary,
            )
            .optional()?)
        })
        .await
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<(UserId, String)>> {
        let hash = token_hash.to_owned();
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT id, token_hash FROM users WHERE token_hash = ?1",
                [hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
    }

    async fn create_upload(&self, u: &Upload, limits: &UploadLimits) -> Result<()> {
        let (u, limits) = (u.clone(), *limits);
        self.run(move |c| {
            let tx = immediate(c)?;
            insert_upload(&tx, &u, &limits)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn join_or_create_upload(
        &self,
        u: &Upload,
        limits: &UploadLimits,
        now: i64,
    ) -> Result<Creation> {
        let (u, limits) = (u.clone(), *limits);
        self.run(move |c| {
            let tx = immediate(c)?;
            let Some(declared) = &u.declared else {
                insert_upload(&tx, &u, &limits)?;
                tx.commit()?;
                return Ok(Creation::Created);
            };
            let stored: Option<i64> = tx
                .query_row(
                    "SELECT number FROM images WHERE user_id = ?1 AND digest = ?2 AND bytes = ?3",
                    params![u.user_id, declared, u.length as i64],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(image) = stored {
                let finished = tx
                    .query_row(
                        "SELECT * FROM uploads
                         WHERE user_id = ?1 AND image_id = ?2 AND expires_at >= ?3
                         ORDER BY expires_at DESC, id LIMIT 1",
                        params![u.user_id, image, now],
                        upload_row,
                    )
                    .optional()?;
                let done = match finished {
                    Some(done) => done,
                    None => {
                        // Finished from the start: nothing is sent, so no limit or quota
                        // applies.
                        let done = Upload {
                            offset: u.length,
                            image_id: Some(image),
                            ..u.clone()
                        };
                        insert_upload_row(&tx, &done)?;
                        done
                    }
                };
                tx.commit()?;
                return Ok(Creation::Stored(Box::new(done)));
            }
            let unfinished = tx
                .query_row(
                    "SELECT * FROM uploads
                     WHERE user_id = ?1 AND declared = ?2 AND length = ?3
                       AND image_id IS NULL AND expires_at >= ?4
                     ORDER BY received DESC, created_at, id LIMIT 1",
                    params![u.user_id, declared, u.length as i64, now],
                    upload_row,
                )
                .optional()?;
            let creation = match unfinished {
                Some(mut existing) => {
                    // The new writer gets the time to live a new upload would have.
                    existing.expires_at = existing.expires_at.max(u.expires_at);
                    tx.execute(
                        "UPDATE uploads SET expires_at = ?2 WHERE id = ?1",
                        params![existing.id, existing.expires_at],
                    )?;
                    Creation::Joined(Box::new(existing))
                }
                None => {
                    insert_upload(&tx, &u, &limits)?;
                    Creation::Created
                }
            };
            tx.commit()?;
            Ok(creation)
        })
        .await
    }

    async fn upload(&self, user: UserId, id: &str) -> Result<Option<Upload>> {
        let id = id.to_owned();
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT * FROM uploads WHERE id = ?1 AND user_id = ?2",
                params![id, user],
                upload_row,
            )
            .optional()?)
        })
        .await
    }

    async fn lock_upload(
        &self,
        id: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE uploads SET lock_holder = ?2, lock_until = ?4
                 WHERE id = ?1 AND (lock_until IS NULL OR lock_until < ?3)",
                params![id, holder, now_ms, until_ms],
            )? == 1)
        })
        .await
    }

    async fn renew_upload(&self, id: &str, holder: &str, until_ms: i64) -> Result<bool> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE uploads SET lock_until = ?3 WHERE id = ?1 AND lock_holder = ?2",
                params![id, holder, until_ms],
            )? == 1)
        })
        .await
    }

    async fn unlock_upload(&self, id: &str, holder: &str) -> Result<()> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.run(move |c| {
            c.execute(
                "UPDATE uploads SET lock_holder = NULL, lock_until = NULL
                 WHERE id = ?1 AND lock_holder = ?2",
                params![id, holder],
            )?;
            Ok(())
        })
        .await
    }

    async fn release_all_leases(&self) -> Result<u64> {
        self.run(|c| {
            Ok(c.execute(
                "UPDATE uploads SET lock_holder = NULL, lock_until = NULL
                 WHERE lock_holder IS NOT NULL",
                [],
            )? as u64)
        })
        .await
    }

    async fn advance_upload(
        &self,
        id: &str,
        holder: &str,
        from: u64,
        to: u64,
        expires_at: i64,
    ) -> Result<()> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.run(move |c| {
            gone_unless_one(c.execute(
                "UPDATE uploads SET received = ?4, expires_at = ?5
                 WHERE id = ?1 AND lock_holder = ?2 AND received = ?3 AND image_id IS NULL",
                params![id, holder, from as i64, to as i64, expires_at],
            )?)
        })
        .await
    }

    async fn reset_upload(&self, id: &str, holder: &str) -> Result<()> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.run(move |c| {
            gone_unless_one(c.execute(
                "UPDATE uploads SET received = 0, verified = NULL
                 WHERE id = ?1 AND lock_holder = ?2 AND image_id IS NULL",
                params![id, holder],
            )?)
        })
        .await
    }

    async fn verify_upload(&self, id: &str, holder: &str, digest: &str) -> Result<()> {
        let (id, holder, digest) = (id.to_owned(), holder.to_owned(), digest.to_owned());
        self.run(move |c| {
            let tx = immediate(c)?;
            if register_blob(&tx, &digest)? {
                return Err(StoreError::BlobBusy);
            }
            gone_unless_one(tx.execute(
                "UPDATE uploads SET verified = ?3
                 WHERE id = ?1 AND lock_holder = ?2 AND received = length AND image_id IS NULL",
                params![id, holder, digest],
            )?)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn complete_upload(&self, id: &str, img: &NewImage) -> Result<ImageInfo> {
        let (id, img) = (id.to_owned(), img.clone());
        self.run(move |c| {
            let tx = immediate(c)?;
            let verified: Option<Option<String>> = tx
                .query_row(
                    "SELECT verified FROM uploads WHERE id = ?1 AND user_id = ?2",
                    params![id, img.user_id],
                    |r| r.get(0),
                )
                .optional()?;
            if verified.flatten().as_deref() != Some(img.digest.as_str()) {
                return Err(StoreError::UploadGone);
            }
            let existing = tx
                .query_row(
                    &format!(
                        "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND digest = ?2"
                    ),
                    params![img.user_id, img.digest],
                    image_row,
                )
                .optional()?;
            let info = match existing {
                Some(info) => info,
                None => {
                    let number: i64 = tx.query_row(
                        "UPDATE users SET next_image = next_image + 1 WHERE id = ?1
                         RETURNING next_image",
                        [img.user_id],
                        |r| r.get(0),
                    )?;
                    insert_image(&tx, number, &img)?;
                    tx.query_row(
                        &format!(
                            "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND number = ?2"
                        ),
                        params![img.user_id, number],
                        image_row,
                    )?
                }
            };
            tx.execute(
                "UPDATE uploads SET image_id = ?2 WHERE id = ?1",
                params![id, info.id],
            )?;
            tx.commit()?;
            Ok(info)
        })
        .await
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.run(move |c| {
            c.execute("DELETE FROM uploads WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    async fn expired_uploads(&self, now: i64) -> Result<Vec<String>> {
        self.run(move |c| {
            let mut s = c.prepare("SELECT id FROM uploads WHERE expires_at < ?1")?;
            let rows = s.query_map([now], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn upload_ids(&self) -> Result<Vec<String>> {
        self.run(move |c| {
            let mut s = c.prepare("SELECT id FROM uploads")?;
            let rows = s.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn doom_unreferenced_blobs(&self) -> Result<u64> {
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE blobs SET doomed = 1 WHERE doomed = 0
                   AND NOT EXISTS (SELECT 1 FROM images i WHERE i.digest = blobs.digest)
                   AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.verified = blobs.digest)",
                [],
            )? as u64)
        })
        .await
    }

    async fn claim_doomed_blob(
        &self,
        collector: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<Option<String>> {
        let collector = collector.to_owned();
        self.run(move |c| {
            Ok(c.query_row(
                "UPDATE blobs SET collector = ?1, claimed_at = ?2
                 WHERE digest = (SELECT digest FROM blobs WHERE doomed = 1
                                   AND (collector IS NULL OR claimed_at < ?3) LIMIT 1)
                 RETURNING digest",
                params![collector, now, stale_before],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn renew_claim(&self, digest: &str, collector: &str, now: i64) -> Result<bool> {
        let (digest, collector) = (digest.to_owned(), collector.to_owned());
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE blobs SET claimed_at = ?3
                 WHERE digest = ?1 AND doomed = 1 AND collector = ?2",
                params![digest, collector, now],
            )? == 1)
        })
        .await
    }

    async fn forget_blob(&self, digest: &str, collector: &str) -> Result<()> {
        let (digest, collector) = (digest.to_owned(), collector.to_owned());
        self.run(move |c| {
            c.execute(
                "DELETE FROM blobs WHERE digest = ?1 AND doomed = 1 AND collector = ?2",
                params![digest, collector],
            )?;
            Ok(())
        })
        .await
    }

    async fn image(&self, user: UserId, id: i64) -> Result<Option<(ImageInfo, Option<String>)>> {
        self.run(move |c| {
            Ok(c.query_row(
                &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND number = ?2"),
                params![user, id],
                |r| Ok((image_row(r)?, r.get("format")?)),
            )
            .optional()?)
        })
        .await
    }

    async fn images_by_digest(
        &self,
        user: UserId,
        digests: &[String],
    ) -> Result<Vec<Option<ImageInfo>>> {
        let digests = digests.to_vec();
        self.run(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND digest = ?2"
            ))?;
            Ok(digests
                .iter()
                .map(|d| s.query_row(params![user, d], image_row).optional())
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn images_by_id(&self, user: UserId, ids: &[i64]) -> Result<Vec<Option<ImageInfo>>> {
        let ids = ids.to_vec();
        self.run(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND number = ?2"
            ))?;
            Ok(ids
                .iter()
                .map(|id| s.query_row(params![user, id], image_row).optional())
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn list_images(&self, user: UserId, query: &ImageQuery) -> Result<Vec<ImageInfo>> {
        let q = query.clone();
        self.run(move |c| {
            // `day` is `YYYY-MM-DDTHH:MM:SS`: a day's moments sort between `D` and `D` + "U".
            let since = q.since.as_deref().unwrap_or("");
            let until = q.until.map_or_else(|| "\u{10FFFF}".to_owned(), |d| d + "U");
            let name = q.name.as_deref().map(contains_pattern);
            let mut s = c.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND number > ?2
                   AND day >= ?4 AND day < ?5 AND (?6 IS NULL OR name LIKE ?6 ESCAPE '\\')
                 ORDER BY number LIMIT ?3"
            ))?;
            let rows = s.query_map(
                params![user, q.after, q.limit, since, until, name],
                image_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn evidence_by_id(&self, user: UserId, ids: &[i64]) -> Result<Vec<Option<String>>> {
        let ids = ids.to_vec();
        self.run(move |c| {
            let mut s =
                c.prepare_cached("SELECT evidence FROM images WHERE user_id = ?1 AND number = ?2")?;
            Ok(ids
                .iter()
                .map(|id| {
                    s.query_row(params![user, id], |r| r.get::<_, Option<String>>(0))
                        .optional()
                        .map(Option::flatten)
                })
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn images_without_evidence(&self, after: i64, limit: u32) -> Result<Vec<Unverified>> {
        self.run(move |c| {
            let mut s = c.prepare_cached(
                "SELECT id, user_id, number, digest, bytes FROM images
                 WHERE evidence IS NULL AND id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = s.query_map(params![after, limit], |r| {
                Ok(Unverified {
                    row: r.get(0)?,
                    user: r.get(1)?,
                    number: r.get(2)?,
                    digest: r.get(3)?,
                    bytes: r.get::<_, i64>(4)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn set_identity(&self, user: UserId, number: i64, identity: &Identified) -> Result<()> {
        let identity = identity.clone();
        self.run(move |c| {
            c.execute(
                "UPDATE images SET identifier = ?3, evidence = ?4,
                     width = COALESCE(?5, width), height = COALESCE(?6, height),
                     format = COALESCE(?7, format), taken = COALESCE(?8, taken),
                     day = COALESCE(?8, day)
                 WHERE user_id = ?1 AND number = ?2",
                params![
                    user,
                    number,
                    identity.identifier,
                    identity.evidence,
                    identity.width,
                    identity.height,
                    identity.format,
                    identity.taken
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn identifiers_since(&self, user: UserId, after: i64) -> Result<Vec<(i64, String)>> {
        self.run(move |c| {
            let mut s = c.prepare_cached(
                "SELECT number, identifier FROM images
                 WHERE user_id = ?1 AND number > ?2 AND identifier IS NOT NULL ORDER BY number",
            )?;
            let rows = s.query_map(params![user, after], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.run(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
            .map(drop)
    }

    async fn export_users(&self) -> Result<Vec<(UserId, UserRecord)>> {
        self.run(|c| {
            let mut s =
                c.prepare("SELECT id, name, token_hash, created_at, quota FROM users ORDER BY id")?;
            let rows = s.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    UserRecord {
                        name: r.get(1)?,
                        token_hash: r.get(2)?,
                        created_at: r.get(3)?,
                        quota: r.get::<_, Option<i64>>(4)?.map(|q| q as u64),
                    },
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn export_images(&self, after: i64, limit: u32) -> Result<Vec<ImageRecord>> {
        self.run(move |c| {
            let mut s =
                c.prepare_cached("SELECT * FROM images WHERE id > ?1 ORDER BY id LIMIT ?2")?;
            let rows = s.query_map(params![after, limit], |r| {
                Ok(ImageRecord {
                    row: r.get("id")?,
                    number: r.get("number")?,
                    image: NewImage {
                        user_id: r.get("user_id")?,
                        digest: r.get("digest")?,
                        identifier: r.get("identifier")?,
                        name: r.get("name")?,
                        name_bytes: r.get("name_bytes")?,
                        bytes: r.get::<_, i64>("bytes")? as u64,
                        width: r.get("width")?,
                        height: r.get("height")?,
                        format: r.get("format")?,
                        mtime: r.get("mtime")?,
                        uploaded_at: r.get("uploaded_at")?,
                        evidence: r.get("evidence")?,
                        folder: r.get("folder")?,
                        taken: r.get("taken")?,
                    },
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn import_user(&self, user: &UserRecord) -> Result<UserId> {
        let user = user.clone();
        self.run(move |c| {
            let tx = immediate(c)?;
            let found: Option<(i64, String)> = tx
                .query_row(
                    "SELECT id, token_hash FROM users WHERE name = ?1",
                    [&user.name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let id = match found {
                Some((id, hash)) if hash == user.token_hash => id,
                Some(_) => return Err(StoreError::UserExists(user.name)),
                None => {
                    tx.execute(
                        "INSERT INTO users (name, token_hash, created_at, quota)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![
                            user.name,
                            user.token_hash,
                            user.created_at,
                            user.quota.map(|q| q as i64)
                        ],
                    )?;
                    tx.last_insert_rowid()
                }
            };
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    async fn import_image(&self, number: i64, img: &NewImage) -> Result<bool> {
        let img = img.clone();
        self.run(move |c| {
            let tx = immediate(c)?;
            let held: Option<String> = tx
                .query_row(
                    "SELECT digest FROM images WHERE user_id = ?1 AND number = ?2",
                    params![img.user_id, number],
                    |r| r.get(0),
                )
                .optional()?;
            match held {
                Some(d) if d == img.digest => return Ok(false),
                Some(d) => return Err(number_taken(number, &d)),
                None => {}
            }
            if register_blob(&tx, &img.digest)? {
                return Err(StoreError::BlobBusy);
            }
            insert_image(&tx, number, &img)?;
            tx.execute(
                "UPDATE users SET next_image = MAX(next_image, ?2) WHERE id = ?1",
                params![img.user_id, number],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}
