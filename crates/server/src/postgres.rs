//! The networked metadata store: PostgreSQL, shared by any number of server instances.
//!
//! Where SQLite serialises writers (`BEGIN IMMEDIATE`), PostgreSQL runs them side by side at
//! READ COMMITTED, so each step that reads before it writes takes a lock first:
//! - a user's row (`FOR UPDATE`) before checking their limits, joining an upload or numbering
//!   an image, so two instances never both pass a check or both number one image;
//! - the blob collector holds an exclusive advisory lock while it dooms blobs, and verifying
//!   an upload holds the shared one, so a blob is never doomed while an upload is being tied
//!   to it (each statement then sees what the other committed).
//!
//! Leases and offsets need no extra lock: their `UPDATE ... WHERE` conditions are on the row
//! itself, and PostgreSQL re-checks them after waiting for a concurrent writer.

use std::collections::HashMap;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use photosync_protocol::{percent_encode_name, ImageInfo};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use crate::store::{
    check_limits, check_quota, contains_pattern, number_taken, Creation, Identified, ImageQuery,
    ImageRecord, NewImage, RemovedUser, Result, Store, StoreError, Unverified, Upload,
    UploadLimits, UserId, UserRecord, UserSummary,
};

/// The schema this code reads and writes, kept in `photosync_schema`.
const VERSION: i64 = 2;

/// Each step brings the schema one version up; step `i` makes version `i + 1`. Steps are
/// only ever appended.
const MIGRATIONS: &[&str] = &[
    // Version 1: the SQLite store's version 4, in PostgreSQL's types. `day` compares bytewise
    // (the C collation), whatever the database's locale.
    "
CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    quota BIGINT,
    next_image BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    length BIGINT NOT NULL,
    received BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    name TEXT NOT NULL,
    name_bytes BYTEA,
    declared TEXT,
    verified TEXT,
    mtime BIGINT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    image_id BIGINT,
    lock_holder TEXT,
    lock_until BIGINT
);
CREATE INDEX uploads_expiry ON uploads(expires_at);
CREATE INDEX uploads_user ON uploads(user_id, image_id);
CREATE INDEX uploads_verified ON uploads(verified) WHERE verified IS NOT NULL;
CREATE TABLE images (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    digest TEXT NOT NULL,
    identifier TEXT,
    name TEXT NOT NULL,
    name_bytes BYTEA,
    bytes BIGINT NOT NULL,
    width BIGINT,
    height BIGINT,
    format TEXT,
    mtime BIGINT,
    uploaded_at BIGINT NOT NULL,
    evidence TEXT,
    folder TEXT,
    taken TEXT,
    day TEXT COLLATE \"C\" NOT NULL,
    UNIQUE (user_id, digest),
    UNIQUE (user_id, number)
);
CREATE INDEX images_digest ON images(digest);
CREATE INDEX images_unverified ON images(id) WHERE evidence IS NULL;
CREATE INDEX images_day ON images(user_id, day, number);
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    doomed BOOLEAN NOT NULL DEFAULT FALSE
);
",
    // Version 2: one collector per doomed blob (SQLite's version 5).
    "
ALTER TABLE blobs ADD COLUMN collector TEXT, ADD COLUMN claimed_at BIGINT;
",
];

/// The advisory lock between dooming blobs (exclusive) and verifying uploads (shared).
const BLOB_LOCK: i64 = 0x7068_6f74_6f62_6c62; // "photoblb"
/// The advisory lock migrations hold, so instances starting together upgrade once.
const MIGRATION_LOCK: i64 = 0x7068_6f74_6f6d_6967; // "photomig"

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("connections", &status.size)
            .field("idle", &status.available)
            .finish()
    }
}

fn backend(e: tokio_postgres::Error) -> StoreError {
    // The server's own message says what went wrong; the error's Display says only "db error".
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!("{}: {}", db.severity(), db.message())),
        None => StoreError::Backend(e.to_string()),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        backend(e)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => backend(e),
            other => StoreError::Backend(format!("database connection: {other}")),
        }
    }
}

/// Connections one instance keeps open at most.
const POOL_SIZE: usize = 16;

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or key=value
    /// settings), and brings the schema up to date.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("database address: {e}")))?;
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Backend(format!("database pool: {e}")))?;
        let store = PostgresStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// The schema version the database holds (0 for an empty one).
    pub async fn schema_version(&self) -> Result<i64> {
        let c = self.pool.get().await?;
        schema_version(&c).await
    }

    /// Brings the schema to [`VERSION`], all steps in one transaction under a lock.
    async fn migrate(&self) -> Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS photosync_schema (
                 one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
                 version BIGINT NOT NULL
             )",
        )
        .await?;
        let version = schema_version(&tx).await?;
        if version > VERSION {
            return Err(StoreError::Backend(format!(
                "the database has schema version {version}, newer than this server's {VERSION}: \
                 run a newer photosync-server"
            )));
        }
        for (step, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tracing::info!(to = step + 1, "upgrading the database schema");
            tx.batch_execute(sql).await?;
        }
        tx.execute(
            "INSERT INTO photosync_schema (version) VALUES ($1)
             ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version",
            &[&VERSION],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Takes the blob lock's shared side for this transaction, or answers `BlobBusy` while the
/// collector holds it: a request never waits on a pooled connection for a collection pass.
async fn blob_lock_shared(tx: &impl GenericClient) -> Result<()> {
    let got: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock_shared($1)", &[&BLOB_LOCK])
        .await?
        .get(0);
    if got {
        Ok(())
    } else {
        Err(StoreError::BlobBusy)
    }
}

/// Registers a blob (or finds it registered) and says whether it is doomed. The upsert locks
/// the row until the transaction ends, so a collector cannot forget it in between.
async fn register_blob(tx: &impl GenericClient, digest: &str) -> Result<bool> {
    Ok(tx
        .query_one(
            "INSERT INTO blobs (digest) VALUES ($1)
             ON CONFLICT (digest) DO UPDATE SET digest = EXCLUDED.digest
             RETURNING doomed",
            &[&digest],
        )
        .await?
        .get(0))
}

async fn schema_version(c: &impl GenericClient) -> Result<i64> {
    let exists: bool = c
        .query_one("SELECT to_regclass('photosync_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(c.query_opt("SELECT version FROM photosync_schema", &[])
        .await?
        .map_or(0, |r| r.get(0)))
}

const IMAGE_COLUMNS: &str = "number, name, name_bytes, digest, identifier, bytes, width, height, \
     mtime, uploaded_at, format, folder, taken";

fn u32_of(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

fn image_row(r: &Row) -> ImageInfo {
    ImageInfo {
        id: r.get("number"),
        name: r.get("name"),
        name_bytes: r
            .get::<_, Option<Vec<u8>>>("name_bytes")
            .map(|b| percent_encode_name(&b)),
        digest: r.get("digest"),
        identifier: r.get("identifier"),
        bytes: r.get::<_, i64>("bytes") as u64,
        width: u32_of(r.get("width")),
        height: u32_of(r.get("height")),
        mtime: r.get("mtime"),
        uploaded_at: r.get("uploaded_at"),
        folder: r.get("folder"),
        taken: r.get("taken"),
        format: r.get("format"),
    }
}

fn upload_row(r: &Row) -> Upload {
    Upload {
        id: r.get("id"),
        user_id: r.get("user_id"),
        length: r.get::<_, i64>("length") as u64,
        offset: r.get::<_, i64>("received") as u64,
        metadata: r.get("metadata"),
        name: r.get("name"),
        name_bytes: r.get("name_bytes"),
        declared: r.get("declared"),
        verified: r.get("verified"),
        mtime: r.get("mtime"),
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
        image_id: r.get("image_id"),
    }
}

fn gone_unless_one(changed: u64) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::UploadGone)
    }
}

/// Locks the user's row until the transaction ends and reads their quota; `UploadGone` if the
/// user was removed.
async fn lock_user(tx: &impl GenericClient, user: UserId) -> Result<Option<i64>> {
    let row = tx
        .query_opt("SELECT quota FROM users WHERE id = $1 FOR UPDATE", &[&user])
        .await?
        .ok_or(StoreError::UploadGone)?;
    Ok(row.get(0))
}

/// Records a new upload if the user's limits and quota allow it. The caller holds the user's
/// row lock.
async fn insert_upload(
    tx: &impl GenericClient,
    u: &Upload,
    limits: &UploadLimits,
    quota: Option<i64>,
) -> Result<()> {
    let row = tx
        .query_one(
            "SELECT COUNT(*), COALESCE(SUM(length), 0)::BIGINT FROM uploads
             WHERE user_id = $1 AND image_id IS NULL",
            &[&u.user_id],
        )
        .await?;
    let (held, pending) = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
    check_limits(held, pending, u.length, limits)?;
    if let Some(quota) = quota.map(|q| q as u64) {
        let stored: i64 = tx
            .query_one(
                "SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM images WHERE user_id = $1",
                &[&u.user_id],
            )
            .await?
            .get(0);
        check_quota(quota, stored as u64, pending, u.length)?;
    }
    insert_upload_row(tx, u).await
}

/// Records an image under `number`; returns it as stored.
async fn insert_image(tx: &impl GenericClient, number: i64, img: &NewImage) -> Result<ImageInfo> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO images (user_id, number, digest, identifier, name, name_bytes, bytes,
                                     width, height, format, mtime, uploaded_at, evidence, folder,
                                     taken, day)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 RETURNING {IMAGE_COLUMNS}"
            ),
            &[
                &img.user_id,
                &number,
                &img.digest,
                &img.identifier,
                &img.name,
                &img.name_bytes,
                &(img.bytes as i64),
                &img.width.map(i64::from),
                &img.height.map(i64::from),
                &img.format,
                &img.mtime,
                &img.uploaded_at,
                &img.evidence,
                &img.folder,
                &img.taken,
                &img.day(),
            ],
        )
        .await?;
    Ok(image_row(&row))
}

async fn insert_upload_row(tx: &impl GenericClient, u: &Upload) -> Result<()> {
    tx.execute(
        "INSERT INTO uploads (id, user_id, length, received, metadata, name, name_bytes,
                              declared, mtime, created_at, expires_at, image_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &u.id,
            &u.user_id,
            &(u.length as i64),
            &(u.offset as i64),
            &u.metadata,
            &u.name,
            &u.name_bytes,
            &u.declared,
            &u.mtime,
            &u.created_at,
            &u.expires_at,
            &u.image_id,
        ],
    )
    .await?;
    Ok(())
}

/// A user's name, creation time, image count and bytes, and quota; `user_summary` reads it.
const USER_SUMMARY: &str = "SELECT u.name, u.created_at, COUNT(i.id), \
     COALESCE(SUM(i.bytes), 0)::BIGINT, u.quota FROM users u LEFT JOIN images i ON i.user_id = u.id";

fn user_summary(r: &Row) -> UserSummary {
    UserSummary {
        name: r.get(0),
        created_at: r.get(1),
        images: r.get::<_, i64>(2) as u64,
        bytes: r.get::<_, i64>(3) as u64,
        quota: r.get::<_, Option<i64>>(4).map(|q| q as u64),
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_user(
        &self,
        name: &str,
        token_hash: &str,
        now: i64,
        quota: Option<u64>,
    ) -> Result<UserId> {
        let c = self.pool.get().await?;
        let quota = quota.map(|q| q as i64);
        match c
            .query_one(
                "INSERT INTO users (name, token_hash, created_at, quota) VALUES ($1, $2, $3, $4)
                 RETURNING id",
                &[&name, &token_hash, &now, &quota],
            )
            .await
        {
            Ok(row) => Ok(row.get(0)),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Err(StoreError::UserExists(name.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_user(&self, name: &str) -> Result<Option<RemovedUser>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let Some(user) = tx
            .query_opt("SELECT id FROM users WHERE name = $1 FOR UPDATE", &[&name])
            .await?
            .map(|r| r.get::<_, i64>(0))
        else {
            return Ok(None);
        };
        let uploads = tx
            .query("SELECT id FROM uploads WHERE user_id = $1", &[&user])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Uploads and images go with the user (ON DELETE CASCADE).
        tx.execute("DELETE FROM users WHERE id = $1", &[&user])
            .await?;
        tx.commit().await?;
        Ok(Some(RemovedUser { id: user, uploads }))
    }

    async fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<()> {
        let c = self.pool.get().await?;
        let n = c
            .execute(
                "UPDATE users SET quota = $2 WHERE name = $1",
                &[&name, &quota.map(|q| q as i64)],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    async fn list_users(&self) -> Result<Vec<UserSummary>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                &format!("{USER_SUMMARY} GROUP BY u.id ORDER BY u.name COLLATE \"C\""),
                &[],
            )
            .await?;
        Ok(rows.iter().map(user_summary).collect())
    }

    async fn account(&self, user: UserId) -> Result<Option<UserSummary>> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                &format!("{USER_SUMMARY} WHERE u.id = $1 GROUP BY u.id"),
                &[&user],
            )
            .await?;
        Ok(row.as_ref().map(user_summary))
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<(UserId, String)>> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached("SELECT id, token_hash FROM users WHERE token_hash = $1")
            .await?;
        let row = c.query_opt(&stmt, &[&token_hash]).await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn create_upload(&self, u: &Upload, limits: &UploadLimits) -> Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let quota = lock_user(&tx, u.user_id).await?;
        insert_upload(&tx, u, limits, quota).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn join_or_create_upload(
        &self,
        u: &Upload,
        limits: &UploadLimits,
        now: i64,
    ) -> Result<Creation> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let quota = lock_user(&tx, u.user_id).await?;
        let Some(declared) = &u.declared else {
            insert_upload(&tx, u, limits, quota).await?;
            tx.commit().await?;
            return Ok(Creation::Created);
        };
        let length = u.length as i64;
        let stored: Option<i64> = tx
            .query_opt(
                "SELECT number FROM images WHERE user_id = $1 AND digest = $2 AND bytes = $3",
                &[&u.user_id, declared, &length],
            )
            .await?
            .map(|r| r.get(0));
        if let Some(image) = stored {
            let finished = tx
                .query_opt(
                    "SELECT * FROM uploads
                     WHERE user_id = $1 AND image_id = $2 AND expires_at >= $3
                     ORDER BY expires_at DESC, id LIMIT 1",
                    &[&u.user_id, &image, &now],
                )
                .await?
                .as_ref()
                .map(upload_row);
            let done = match finished {
                Some(done) => done,
                None => {
                    // Finished from the start: nothing is sent, so no limit or quota applies.
                    let done = Upload {
                        offset: u.length,
                        image_id: Some(image),
                        ..u.clone()
                    };
                    insert_upload_row(&tx, &done).await?;
                    done
                }
            };
            tx.commit().await?;
            return Ok(Creation::Stored(Box::new(done)));
        }
        let unfinished = tx
            .query_opt(
                "SELECT * FROM uploads
                 WHERE user_id = $1 AND declared = $2 AND length = $3
                   AND image_id IS NULL AND expires_at >= $4
                 ORDER BY received DESC, created_at, id LIMIT 1",
                &[&u.user_id, declared, &length, &now],
            )
            .await?
            .as_ref()
            .map(upload_row);
        let creation = match unfinished {
            Some(mut existing) => {
                // The new writer gets the time to live a new upload would have.
                existing.expires_at = existing.expires_at.max(u.expires_at);
                tx.execute(
                    "UPDATE uploads SET expires_at = $2 WHERE id = $1",
                    &[&existing.id, &existing.expires_at],
                )
                .await?;
                Creation::Joined(Box::new(existing))
            }
            None => {
                insert_upload(&tx, u, limits, quota).await?;
                Creation::Created
            }
        };
        tx.commit().await?;
        Ok(creation)
    }

    async fn upload(&self, user: UserId, id: &str) -> Result<Option<Upload>> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached("SELECT * FROM uploads WHERE id = $1 AND user_id = $2")
            .await?;
        Ok(c.query_opt(&stmt, &[&id, &user])
            .await?
            .as_ref()
            .map(upload_row))
    }

    async fn lock_upload(
        &self,
        id: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE uploads SET lock_holder = $2, lock_until = $4
                 WHERE id = $1 AND (lock_until IS NULL OR lock_until < $3)",
            )
            .await?;
        Ok(c.execute(&stmt, &[&id, &holder, &now_ms, &until_ms])
            .await?
            == 1)
    }

    async fn renew_upload(&self, id: &str, holder: &str, until_ms: i64) -> Result<bool> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached("UPDATE uploads SET lock_until = $3 WHERE id = $1 AND lock_holder = $2")
            .await?;
        Ok(c.execute(&stmt, &[&id, &holder, &until_ms]).await? == 1)
    }

    async fn unlock_upload(&self, id: &str, holder: &str) -> Result<()> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE uploads SET lock_holder = NULL, lock_until = NULL
                 WHERE id = $1 AND lock_holder = $2",
            )
            .await?;
        c.execute(&stmt, &[&id, &holder]).await?;
        Ok(())
    }

    async fn release_all_leases(&self) -> Result<u64> {
        let c = self.pool.get().await?;
        Ok(c.execute(
            "UPDATE uploads SET lock_holder = NULL, lock_until = NULL
             WHERE lock_holder IS NOT NULL",
            &[],
        )
        .await?)
    }

    async fn advance_upload(
        &self,
        id: &str,
        holder: &str,
        from: u64,
        to: u64,
        expires_at: i64,
    ) -> Result<()> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached(
                "UPDATE uploads SET received = $4, expires_at = $5
                 WHERE id = $1 AND lock_holder = $2 AND received = $3 AND image_id IS NULL",
            )
            .await?;
        gone_unless_one(
            c.execute(
                &stmt,
                &[&id, &holder, &(from as i64), &(to as i64), &expires_at],
            )
            .await?,
        )
    }

    async fn reset_upload(&self, id: &str, holder: &str) -> Result<()> {
        let c = self.pool.get().await?;
        gone_unless_one(
            c.execute(
                "UPDATE uploads SET received = 0, verified = NULL
                 WHERE id = $1 AND lock_holder = $2 AND image_id IS NULL",
                &[&id, &holder],
            )
            .await?,
        )
    }

    async fn verify_upload(&self, id: &str, holder: &str, digest: &str) -> Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        blob_lock_shared(&tx).await?;
        let doomed = register_blob(&tx, digest).await?;
        if doomed {
            return Err(StoreError::BlobBusy);
        }
        gone_unless_one(
            tx.execute(
                "UPDATE uploads SET verified = $3
                 WHERE id = $1 AND lock_holder = $2 AND received = length AND image_id IS NULL",
                &[&id, &holder, &digest],
            )
            .await?,
        )?;
        tx.commit().await?;
        Ok(())
    }

    async fn complete_upload(&self, id: &str, img: &NewImage) -> Result<ImageInfo> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // The user's row first: two completions of the same bytes number one image.
        lock_user(&tx, img.user_id).await?;
        // The upload row too: deleting it (expiry, DELETE) waits until the image that holds
        // the blob is committed, so the collector never sees the blob held by neither.
        let verified: Option<String> = tx
            .query_opt(
                "SELECT verified FROM uploads WHERE id = $1 AND user_id = $2 FOR UPDATE",
                &[&id, &img.user_id],
            )
            .await?
            .and_then(|r| r.get(0));
        if verified.as_deref() != Some(img.digest.as_str()) {
            return Err(StoreError::UploadGone);
        }
        let existing = tx
            .query_opt(
                &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = $1 AND digest = $2"),
                &[&img.user_id, &img.digest],
            )
            .await?
            .as_ref()
            .map(image_row);
        let info = match existing {
            Some(info) => info,
            None => {
                let number: i64 = tx
                    .query_one(
                        "UPDATE users SET next_image = next_image + 1 WHERE id = $1
                         RETURNING next_image",
                        &[&img.user_id],
                    )
                    .await?
                    .get(0);
                insert_image(&tx, number, img).await?
            }
        };
        tx.execute(
            "UPDATE uploads SET image_id = $2 WHERE id = $1",
            &[&id, &info.id],
        )
        .await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        let c = self.pool.get().await?;
        c.execute("DELETE FROM uploads WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }

    async fn expired_uploads(&self, now: i64) -> Result<Vec<String>> {
        let c = self.pool.get().await?;
        let rows = c
            .query("SELECT id FROM uploads WHERE expires_at < $1", &[&now])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn upload_ids(&self) -> Result<Vec<String>> {
        let c = self.pool.get().await?;
        let rows = c.query("SELECT id FROM uploads", &[]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn doom_unreferenced_blobs(&self) -> Result<u64> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&BLOB_LOCK])
            .await?;
        let doomed = tx
            .execute(
                "UPDATE blobs SET doomed = TRUE WHERE NOT doomed
                   AND NOT EXISTS (SELECT 1 FROM images i WHERE i.digest = blobs.digest)
                   AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.verified = blobs.digest)",
                &[],
            )
            .await?;
        tx.commit().await?;
        Ok(doomed)
    }

    async fn claim_doomed_blob(
        &self,
        collector: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<Option<String>> {
        let c = self.pool.get().await?;
        // SKIP LOCKED: two collectors claiming at once take different blobs.
        let row = c
            .query_opt(
                "UPDATE blobs SET collector = $1, claimed_at = $2
                 WHERE digest = (SELECT digest FROM blobs WHERE doomed
                                   AND (collector IS NULL OR claimed_at < $3)
                                 LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING digest",
                &[&collector, &now, &stale_before],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn renew_claim(&self, digest: &str, collector: &str, now: i64) -> Result<bool> {
        let c = self.pool.get().await?;
        Ok(c.execute(
            "UPDATE blobs SET claimed_at = $3 WHERE digest = $1 AND doomed AND collector = $2",
            &[&digest, &collector, &now],
        )
        .await?
            == 1)
    }

    async fn forget_blob(&self, digest: &str, collector: &str) -> Result<()> {
        let c = self.pool.get().await?;
        c.execute(
            "DELETE FROM blobs WHERE digest = $1 AND doomed AND collector = $2",
            &[&digest, &collector],
        )
        .await?;
        Ok(())
    }

    async fn image(&self, user: UserId, id: i64) -> Result<Option<(ImageInfo, Option<String>)>> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = $1 AND number = $2"),
                &[&user, &id],
            )
            .await?;
        Ok(row.map(|r| (image_row(&r), r.get("format"))))
    }

    async fn images_by_digest(
        &self,
        user: UserId,
        digests: &[String],
    ) -> Result<Vec<Option<ImageInfo>>> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = $1 AND digest = ANY($2)"
            ))
            .await?;
        let found: HashMap<String, ImageInfo> = c
            .query(&stmt, &[&user, &digests])
            .await?
            .iter()
            .map(|r| {
                let info = image_row(r);
                (info.digest.clone(), info)
            })
            .collect();
        Ok(digests.iter().map(|d| found.get(d).cloned()).collect())
    }

    async fn images_by_id(&self, user: UserId, ids: &[i64]) -> Result<Vec<Option<ImageInfo>>> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = $1 AND number = ANY($2)"
            ))
            .await?;
        let found: HashMap<i64, ImageInfo> = c
            .query(&stmt, &[&user, &ids])
            .await?
            .iter()
            .map(|r| {
                let info = image_row(r);
                (info.id, info)
            })
            .collect();
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    async fn list_images(&self, user: UserId, q: &ImageQuery) -> Result<Vec<ImageInfo>> {
        let c = self.pool.get().await?;
        // `day` is `YYYY-MM-DDTHH:MM:SS`: a day's moments sort between `D` and `D` + "U".
        let until = q.until.as_ref().map(|d| format!("{d}U"));
        let name = q.name.as_deref().map(contains_pattern);
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS} FROM images WHERE user_id = $1 AND number > $2
                   AND ($4::TEXT IS NULL OR day >= $4) AND ($5::TEXT IS NULL OR day < $5)
                   AND ($6::TEXT IS NULL OR name COLLATE \"C\" ILIKE $6)
                 ORDER BY number LIMIT $3"
            ))
            .await?;
        let rows = c
            .query(
                &stmt,
                &[
                    &user,
                    &q.after,
                    &i64::from(q.limit),
                    &q.since,
                    &until,
                    &name,
                ],
            )
            .await?;
        Ok(rows.iter().map(image_row).collect())
    }

    async fn evidence_by_id(&self, user: UserId, ids: &[i64]) -> Result<Vec<Option<String>>> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached(
                "SELECT number, evidence FROM images WHERE user_id = $1 AND number = ANY($2)",
            )
            .await?;
        let found: HashMap<i64, Option<String>> = c
            .query(&stmt, &[&user, &ids])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(ids
            .iter()
            .map(|id| found.get(id).cloned().flatten())
            .collect())
    }

    async fn images_without_evidence(&self, after: i64, limit: u32) -> Result<Vec<Unverified>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT id, user_id, number, digest, bytes FROM images
                 WHERE evidence IS NULL AND id > $1 ORDER BY id LIMIT $2",
                &[&after, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Unverified {
                row: r.get(0),
                user: r.get(1),
                number: r.get(2),
                digest: r.get(3),
                bytes: r.get::<_, i64>(4) as u64,
            })
            .collect())
    }

    async fn set_identity(&self, user: UserId, number: i64, identity: &Identified) -> Result<()> {
        let c = self.pool.get().await?;
        c.execute(
            "UPDATE images SET identifier = $3, evidence = $4,
                 width = COALESCE($5, width), height = COALESCE($6, height),
                 format = COALESCE($7, format), taken = COALESCE($8, taken),
                 day = COALESCE($8, day)
             WHERE user_id = $1 AND number = $2",
            &[
                &user,
                &number,
                &identity.identifier,
                &identity.evidence,
                &identity.width.map(i64::from),
                &identity.height.map(i64::from),
                &identity.format,
                &identity.taken,
            ],
        )
        .await?;
        Ok(())
    }

    async fn identifiers_since(&self, user: UserId, after: i64) -> Result<Vec<(i64, String)>> {
        let c = self.pool.get().await?;
        let stmt = c
            .prepare_cached(
                "SELECT number, identifier FROM images
                 WHERE user_id = $1 AND number > $2 AND identifier IS NOT NULL ORDER BY number",
            )
            .await?;
        let rows = c.query(&stmt, &[&user, &after]).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn ping(&self) -> Result<()> {
        let c = self.pool.get().await?;
        c.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn export_users(&self) -> Result<Vec<(UserId, UserRecord)>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT id, name, token_hash, created_at, quota FROM users ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    UserRecord {
                        name: r.get(1),
                        token_hash: r.get(2),
                        created_at: r.get(3),
                        quota: r.get::<_, Option<i64>>(4).map(|q| q as u64),
                    },
                )
            })
            .collect())
    }

    async fn export_images(&self, after: i64, limit: u32) -> Result<Vec<ImageRecord>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT * FROM images WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ImageRecord {
                row: r.get("id"),
                number: r.get("number"),
                image: NewImage {
                    user_id: r.get("user_id"),
                    digest: r.get("digest"),
                    identifier: r.get("identifier"),
                    name: r.get("name"),
                    name_bytes: r.get("name_bytes"),
                    bytes: r.get::<_, i64>("bytes") as u64,
                    width: u32_of(r.get("width")),
                    height: u32_of(r.get("height")),
                    format: r.get("format"),
                    mtime: r.get("mtime"),
                    uploaded_at: r.get("uploaded_at"),
                    evidence: r.get("evidence"),
                    folder: r.get("folder"),
                    taken: r.get("taken"),
                },
            })
            .collect())
    }

    async fn import_user(&self, user: &UserRecord) -> Result<UserId> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // Serialises imports of one name; a plain insert would race two importers.
        tx.execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE", &[])
            .await?;
        let found = tx
            .query_opt(
                "SELECT id, token_hash FROM users WHERE name = $1",
                &[&user.name],
            )
            .await?;
        let id = match found {
            Some(r) if r.get::<_, String>(1) == user.token_hash => r.get(0),
            Some(_) => return Err(StoreError::UserExists(user.name.clone())),
            None => tx
                .query_one(
                    "INSERT INTO users (name, token_hash, created_at, quota)
                     VALUES ($1, $2, $3, $4) RETURNING id",
                    &[
                        &user.name,
                        &user.token_hash,
                        &user.created_at,
                        &user.quota.map(|q| q as i64),
                    ],
                )
                .await?
                .get(0),
        };
        tx.commit().await?;
        Ok(id)
    }

    async fn import_image(&self, number: i64, img: &NewImage) -> Result<bool> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        lock_user(&tx, img.user_id).await?;
        let held: Option<String> = tx
            .query_opt(
                "SELECT digest FROM images WHERE user_id = $1 AND number = $2",
                &[&img.user_id, &number],
            )
            .await?
            .map(|r| r.get(0));
        match held {
            Some(d) if d == img.digest => return Ok(false),
            Some(d) => return Err(number_taken(number, &d)),
            None => {}
        }
        blob_lock_shared(&tx).await?;
        let doomed = register_blob(&tx, &img.digest).await?;
        if doomed {
            return Err(StoreError::BlobBusy);
        }
        insert_image(&tx, number, img).await?;
        tx.execute(
            "UPDATE users SET next_image = GREATEST(next_image, $2) WHERE id = $1",
            &[&img.user_id, &number],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
