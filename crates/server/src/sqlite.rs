//! The embedded metadata store: SQLite in WAL mode. Blocking calls run on tokio's blocking pool,
//! each on a connection from a small pool (WAL lets readers run beside the one writer).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use photosync_protocol::ImageInfo;
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{NewImage, Result, Store, StoreError, Upload, UserId, UserSummary};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    length INTEGER NOT NULL,
    received INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    mtime INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    image_id INTEGER,
    lock_holder TEXT,
    lock_until INTEGER
);
CREATE INDEX IF NOT EXISTS uploads_expiry ON uploads(expires_at);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    identifier TEXT,
    name TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    width INTEGER,
    height INTEGER,
    format TEXT,
    mtime INTEGER,
    uploaded_at INTEGER NOT NULL,
    UNIQUE (user_id, digest)
);
";

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let store = SqliteStore {
            path: path.to_path_buf(),
            idle: Arc::default(),
        };
        let conn = store.connect()?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
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
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = this.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => this.connect()?,
            };
            let out = f(&mut conn).map_err(backend);
            this.give_back(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

fn image_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ImageInfo> {
    Ok(ImageInfo {
        id: row.get("id")?,
        name: row.get("name")?,
        digest: row.get("digest")?,
        identifier: row.get("identifier")?,
        bytes: row.get::<_, i64>("bytes")? as u64,
        width: row.get("width")?,
        height: row.get("height")?,
        mtime: row.get("mtime")?,
        uploaded_at: row.get("uploaded_at")?,
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
        digest: row.get("digest")?,
        mtime: row.get("mtime")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        image_id: row.get("image_id")?,
    })
}

const IMAGE_COLUMNS: &str =
    "id, name, digest, identifier, bytes, width, height, mtime, uploaded_at, format";

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, name: &str, token_hash: &str, now: i64) -> Result<UserId> {
        let (name, hash) = (name.to_owned(), token_hash.to_owned());
        let taken = name.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO users (name, token_hash, created_at) VALUES (?1, ?2, ?3)",
                params![name, hash, now],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
        .map_err(|e| match e {
            StoreError::Backend(m) if m.contains("UNIQUE") => StoreError::UserExists(taken),
            other => other,
        })
    }

    async fn remove_user(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.run(move |c| Ok(c.execute("DELETE FROM users WHERE name = ?1", [name])? > 0))
            .await
    }

    async fn list_users(&self) -> Result<Vec<UserSummary>> {
        self.run(|c| {
            let mut s = c.prepare(
                "SELECT u.name, u.created_at, COUNT(i.id) FROM users u
                 LEFT JOIN images i ON i.user_id = u.id GROUP BY u.id ORDER BY u.name",
            )?;
            let rows = s.query_map([], |r| {
                Ok(UserSummary {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    images: r.get::<_, i64>(2)? as u64,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<(UserId, String)>> {
        let hash = token_hash.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT id, token_hash FROM users WHERE token_hash = ?1",
                [hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .await
    }

    async fn create_upload(&self, u: &Upload) -> Result<()> {
        let u = u.clone();
        self.run(move |c| {
            c.execute(
                "INSERT INTO uploads (id, user_id, length, received, metadata, name, digest, mtime,
                                      created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    u.id,
                    u.user_id,
                    u.length as i64,
                    u.offset as i64,
                    u.metadata,
                    u.name,
                    u.digest,
                    u.mtime,
                    u.created_at,
                    u.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn upload(&self, user: UserId, id: &str) -> Result<Option<Upload>> {
        let id = id.to_owned();
        self.run(move |c| {
            c.query_row(
                "SELECT * FROM uploads WHERE id = ?1 AND user_id = ?2",
                params![id, user],
                upload_row,
            )
            .optional()
        })
        .await
    }

    async fn lock_upload(&self, id: &str, holder: &str, now: i64, until: i64) -> Result<bool> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE uploads SET lock_holder = ?2, lock_until = ?4
                 WHERE id = ?1 AND (lock_until IS NULL OR lock_until < ?3)",
                params![id, holder, now, until],
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

    async fn advance_upload(&self, id: &str, offset: u64, expires_at: i64) -> Result<()> {
        let id = id.to_owned();
        self.run(move |c| {
            c.execute(
                "UPDATE uploads SET received = ?2, expires_at = ?3 WHERE id = ?1",
                params![id, offset as i64, expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn finish_upload(&self, id: &str, image_id: i64) -> Result<()> {
        let id = id.to_owned();
        self.run(move |c| {
            c.execute(
                "UPDATE uploads SET image_id = ?2 WHERE id = ?1",
                params![id, image_id],
            )?;
            Ok(())
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
            rows.collect()
        })
        .await
    }

    async fn insert_image(&self, img: &NewImage) -> Result<ImageInfo> {
        let img = img.clone();
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO images (user_id, digest, identifier, name, bytes, width, height,
                                     format, mtime, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (user_id, digest) DO NOTHING",
                params![
                    img.user_id,
                    img.digest,
                    img.identifier,
                    img.name,
                    img.bytes as i64,
                    img.width,
                    img.height,
                    img.format,
                    img.mtime,
                    img.uploaded_at
                ],
            )?;
            let info = tx.query_row(
                &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND digest = ?2"),
                params![img.user_id, img.digest],
                image_row,
            )?;
            tx.commit()?;
            Ok(info)
        })
        .await
    }

    async fn image(&self, user: UserId, id: i64) -> Result<Option<(ImageInfo, Option<String>)>> {
        self.run(move |c| {
            c.query_row(
                &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND id = ?2"),
                params![user, id],
                |r| Ok((image_row(r)?, r.get("format")?)),
            )
            .optional()
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
            digests
                .iter()
                .map(|d| s.query_row(params![user, d], image_row).optional())
                .collect()
        })
        .await
    }

    async fn images_by_id(&self, user: UserId, ids: &[i64]) -> Result<Vec<Option<ImageInfo>>> {
        let ids = ids.to_vec();
        self.run(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND id = ?2"
            ))?;
            ids.iter()
                .map(|id| s.query_row(params![user, id], image_row).optional())
                .collect()
        })
        .await
    }

    async fn list_images(&self, user: UserId, after: i64, limit: u32) -> Result<Vec<ImageInfo>> {
        self.run(move |c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = ?1 AND id > ?2
                 ORDER BY id LIMIT ?3"
            ))?;
            let rows = s.query_map(params![user, after, limit], image_row)?;
            rows.collect()
        })
        .await
    }

    async fn identifiers_since(&self, user: UserId, after: i64) -> Result<Vec<(i64, String)>> {
        self.run(move |c| {
            let mut s = c.prepare_cached(
                "SELECT id, identifier FROM images
                 WHERE user_id = ?1 AND id > ?2 AND identifier IS NOT NULL ORDER BY id",
            )?;
            let rows = s.query_map(params![user, after], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }
}
