//! The metadata store: users, upload sessions and images. Handlers see only this trait, so the
//! embedded SQLite store and a networked one (PostgreSQL) are interchangeable. Upload-session
//! state lives here, not in process memory, so any server instance sharing the store can take
//! the next part of any upload.

use async_trait::async_trait;
use photosync_protocol::ImageInfo;

pub type UserId = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a user named {0:?} already exists")]
    UserExists(String),
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    /// The upload was deleted (terminated, expired, its user removed) or another request took
    /// its lease: this request must stop without storing anything.
    #[error("the upload is gone or another request holds it")]
    UploadGone,
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The blob is being garbage-collected this moment; try again shortly.
    #[error("the blob is being collected; retry")]
    BlobBusy,
    #[error("metadata store: {0}")]
    Backend(String),
}

/// A per-user limit an upload creation would pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("{held} unfinished uploads already, the most allowed per user is {max}; finish or delete some first")]
    TooManyUploads { held: u64, max: u64 },
    #[error("unfinished uploads would declare {would} bytes, over the {max} allowed per user; finish or delete some first")]
    UnfinishedBytes { would: u64, max: u64 },
    #[error("the storage quota is {quota} bytes and {used} are used or promised to unfinished uploads; this upload needs {wanted}")]
    Quota { quota: u64, used: u64, wanted: u64 },
}

/// Per-user bounds on unfinished uploads, checked atomically with the creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    pub max_unfinished: u64,
    pub max_unfinished_bytes: u64,
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub name: String,
    pub created_at: i64,
    pub images: u64,
    /// Bytes of the user's images.
    pub bytes: u64,
    pub quota: Option<u64>,
}

/// What removing a user left for the blob store to clean up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovedUser {
    pub id: UserId,
    /// Their unfinished uploads, whose part files are to be discarded.
    pub uploads: Vec<String>,
}

/// One tus upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub user_id: UserId,
    pub length: u64,
    /// Bytes durably stored and acknowledged.
    pub offset: u64,
    /// The `Upload-Metadata` header as received, echoed on HEAD.
    pub metadata: String,
    pub name: String,
    /// The file name's exact bytes, when the client sent them (`filename-bytes`).
    pub name_bytes: Option<Vec<u8>>,
    /// The BLAKE3 the client declared, if it did (then the bytes must match it).
    pub declared: Option<String>,
    /// The BLAKE3 of the received bytes, set once they were verified and before they are
    /// published. It holds the blob against garbage collection until the image is recorded.
    pub verified: Option<String>,
    pub mtime: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set once the file is verified and published; HEAD still answers until expiry.
    pub image_id: Option<i64>,
}

/// What a creation that declared a digest came to.
#[derive(Debug, Clone)]
pub enum Creation {
    /// A new upload, to be sent.
    Created,
    /// The user's unfinished upload of the same file, which another client is sending.
    Joined(Box<Upload>),
    /// The user has the file already: a finished upload naming its image (the user's newest
    /// unexpired one, or the new upload recorded finished).
    Stored(Box<Upload>),
}

/// An image to record once its blob is published.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub user_id: UserId,
    pub digest: String,
    pub identifier: Option<String>,
    pub name: String,
    pub name_bytes: Option<Vec<u8>>,
    pub bytes: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub format: Option<String>,
    pub mtime: Option<i64>,
    pub uploaded_at: i64,
    /// The verification evidence (`e1;...`), or `none` for a file that is not an image.
    pub evidence: Option<String>,
    /// The folder relative to the one it was synced from, as the client sent it.
    pub folder: Option<String>,
    /// The capture time from EXIF.
    pub taken: Option<String>,
}

impl NewImage {
    /// The moment the list sorts and filters by: the capture time, else the modification
    /// time, else the upload, as `YYYY-MM-DDTHH:MM:SS`.
    pub fn day(&self) -> String {
        image_day(self.taken.as_deref(), self.mtime, self.uploaded_at)
    }
}

/// See [`NewImage::day`].
pub fn image_day(taken: Option<&str>, mtime: Option<i64>, uploaded_at: i64) -> String {
    match taken {
        Some(t) => t.to_owned(),
        None => photosync_protocol::utc_time_text(mtime.unwrap_or(uploaded_at)),
    }
}

/// A `LIKE` pattern (escape `\`, PostgreSQL's default) matching text that contains `text`,
/// with `%`, `_` and the escape itself taken literally.
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Which of a user's images a list asks for, after `after` in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageQuery {
    pub after: i64,
    pub limit: u32,
    /// First day included, `YYYY-MM-DD`.
    pub since: Option<String>,
    /// Last day included, `YYYY-MM-DD`.
    pub until: Option<String>,
    /// Text the name contains, ignoring ASCII case.
    pub name: Option<String>,
}

impl ImageQuery {
    /// The first `limit` images, unfiltered.
    pub fn first(limit: u32) -> ImageQuery {
        ImageQuery {
            limit,
            ..ImageQuery::default()
        }
    }
}

/// What the server's own identification of a stored file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    pub identifier: Option<String>,
    /// `e1;...` for an image; [`NOT_AN_IMAGE`] for anything else.
    pub evidence: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub format: Option<String>,
    /// The capture time from EXIF.
    pub taken: Option<String>,
}

/// The evidence of a file that is not an image: tried, and nothing to verify.
pub const NOT_AN_IMAGE: &str = "none";

/// An image recorded before the server kept evidence, to be identified again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The row's place in the store's order, to page on.
    pub row: i64,
    pub user: UserId,
    pub number: i64,
    pub digest: String,
    pub bytes: u64,
}

/// Whether one more unfinished upload of `length` bytes fits the per-user bounds, beside the
/// `held` unfinished ones declaring `pending` bytes.
pub(crate) fn check_limits(
    held: u64,
    pending: u64,
    length: u64,
    limits: &UploadLimits,
) -> Result<()> {
    if held >= limits.max_unfinished {
        return Err(LimitError::TooManyUploads {
            held,
            max: limits.max_unfinished,
        }
        .into());
    }
    let would = pending.saturating_add(length);
    if would > limits.max_unfinished_bytes {
        return Err(LimitError::UnfinishedBytes {
            would,
            max: limits.max_unfinished_bytes,
        }
        .into());
    }
    Ok(())
}

/// Whether `length` more bytes fit the quota, beside the `stored` images and the `pending`
/// unfinished uploads.
pub(crate) fn check_quota(quota: u64, stored: u64, pending: u64, length: u64) -> Result<()> {
    let used = stored.saturating_add(pending);
    if used.saturating_add(length) > quota {
        return Err(LimitError::Quota {
            quota,
            used,
            wanted: length,
        }
        .into());
    }
    Ok(())
}

/// An import found another image under the number it was to keep.
pub(crate) fn number_taken(number: i64, held: &str) -> StoreError {
    StoreError::Backend(format!(
        "image number {number} is taken by another file ({held}) in the target store"
    ))
}

/// A user as stored, for moving an install to another store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    pub token_hash: String,
    pub created_at: i64,
    pub quota: Option<u64>,
}

/// An image as stored, for moving an install to another store: its number stays, since
/// clients' sync lists name images by it.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    /// The row's place in the store's order, to page on.
    pub row: i64,
    pub number: i64,
    /// `user_id` is the source store's.
    pub image: NewImage,
}

/// Times are milliseconds since the Unix epoch for leases, seconds elsewhere.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A new user; ids are never reused, even after a removal.
    async fn create_user(
        &self,
        name: &str,
        token_hash: &str,
        now: i64,
        quota: Option<u64>,
    ) -> Result<UserId>;
    /// Removes the user with their images and uploads; their blobs become garbage unless
    /// another user holds the same bytes. None if there is no such user.
    async fn remove_user(&self, name: &str) -> Result<Option<RemovedUser>>;
    async fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<()>;
    async fn list_users(&self) -> Result<Vec<UserSummary>>;
    /// One user's summary, by id; None once the user is removed.
    async fn account(&self, user: UserId) -> Result<Option<UserSummary>>;
    /// The user whose token hashes to `token_hash`, with the stored hash for a constant-time
    /// comparison.
    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<(UserId, String)>>;

    /// Records a new upload if the user's limits and quota allow it, atomically with the check.
    async fn create_upload(&self, upload: &Upload, limits: &UploadLimits) -> Result<()>;
    /// In one transaction, for a creation that declared a digest: if the user has an image of
    /// that digest and length, answers with a finished upload naming it, reusing the newest
    /// unexpired one so repeated creations add no rows (`Stored`); else joins the
    /// user's unfinished upload, unexpired at `now`, of the same digest and length (the
    /// furthest along if there are several), with its expiry pushed to at least
    /// `upload.expires_at` (`Joined`); else `create_upload` (`Created`). Nothing is counted
    /// against the limits for a joined upload: it is counted already.
    async fn join_or_create_upload(
        &self,
        upload: &Upload,
        limits: &UploadLimits,
        now: i64,
    ) -> Result<Creation>;
    /// The upload, only if it belongs to `user`.
    async fn upload(&self, user: UserId, id: &str) -> Result<Option<Upload>>;
    /// Takes the upload's lease until `until_ms` unless another holder's lease is still running.
    async fn lock_upload(&self, id: &str, holder: &str, now_ms: i64, until_ms: i64)
        -> Result<bool>;
    /// Extends `holder`'s lease; false if it no longer holds it (it lapsed and was taken, or
    /// the upload is gone).
    async fn renew_upload(&self, id: &str, holder: &str, until_ms: i64) -> Result<bool>;
    async fn unlock_upload(&self, id: &str, holder: &str) -> Result<()>;
    /// Drops every lease: for a server that knows it is the store's only one, at its start,
    /// since any lease then was held by a process that is gone. Returns how many there were.
    async fn release_all_leases(&self) -> Result<u64>;
    /// Records a durably stored part, only for the lease holder and only from `from`:
    /// `UploadGone` otherwise.
    async fn advance_upload(
        &self,
        id: &str,
        holder: &str,
        from: u64,
        to: u64,
        expires_at: i64,
    ) -> Result<()>;
    /// Forgets the received bytes of an upload whose part was lost.
    async fn reset_upload(&self, id: &str, holder: &str) -> Result<()>;
    /// Marks the upload's bytes as verified to hash to `digest`, which registers the blob and
    /// holds it against collection. `BlobBusy` while that blob is being collected.
    async fn verify_upload(&self, id: &str, holder: &str, digest: &str) -> Result<()>;
    /// Records the image of a verified, published upload and ties it to the upload; if the
    /// user already holds these bytes, returns the existing image. `UploadGone` if the upload
    /// (or its user) was removed meanwhile.
    async fn complete_upload(&self, id: &str, image: &NewImage) -> Result<ImageInfo>;
    async fn delete_upload(&self, id: &str) -> Result<()>;
    async fn expired_uploads(&self, now: i64) -> Result<Vec<String>>;
    /// Ids of all uploads, for finding part files whose upload is gone.
    async fn upload_ids(&self) -> Result<Vec<String>>;

    /// Marks blobs no image and no verified upload references as doomed; returns how many it
    /// marked. A doomed blob cannot be referenced again until `forget_blob`.
    async fn doom_unreferenced_blobs(&self) -> Result<u64>;
    /// Claims a doomed blob for `collector` to delete: one no one claimed, or whose claim was
    /// made before `stale_before` (its collector died). One claimant at a time, so two
    /// collectors never both delete a blob that one of them forgot and an upload then
    /// published again. None when every doomed blob is claimed.
    async fn claim_doomed_blob(
        &self,
        collector: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<Option<String>>;
    /// Renews `collector`'s claim on a doomed blob just before it deletes the bytes; false if
    /// the claim lapsed and was taken over (then it must not delete them).
    async fn renew_claim(&self, digest: &str, collector: &str, now: i64) -> Result<bool>;
    /// Forgets a doomed blob once its claimant deleted its bytes.
    async fn forget_blob(&self, digest: &str, collector: &str) -> Result<()>;

    async fn image(&self, user: UserId, id: i64) -> Result<Option<(ImageInfo, Option<String>)>>;
    async fn images_by_digest(
        &self,
        user: UserId,
        digests: &[String],
    ) -> Result<Vec<Option<ImageInfo>>>;
    async fn images_by_id(&self, user: UserId, ids: &[i64]) -> Result<Vec<Option<ImageInfo>>>;
    async fn list_images(&self, user: UserId, query: &ImageQuery) -> Result<Vec<ImageInfo>>;
    /// The verification evidence of each of the user's images (None: not computed yet).
    async fn evidence_by_id(&self, user: UserId, ids: &[i64]) -> Result<Vec<Option<String>>>;
    /// Images of any user whose evidence has not been computed (recorded by older builds),
    /// in store order after `after` (a `row`).
    async fn images_without_evidence(&self, after: i64, limit: u32) -> Result<Vec<Unverified>>;
    /// Records the server's identification of an image again.
    async fn set_identity(&self, user: UserId, number: i64, identity: &Identified) -> Result<()>;
    /// (image id, identifier) of the user's images with an id above `after`, for the index.
    async fn identifiers_since(&self, user: UserId, after: i64) -> Result<Vec<(i64, String)>>;

    /// Answers if the store can be reached (a health check).
    async fn ping(&self) -> Result<()>;
    /// Every user with their token hash, for moving the install.
    async fn export_users(&self) -> Result<Vec<(UserId, UserRecord)>>;
    /// Images of every user in store order after `after` (a `row`), for moving the install.
    async fn export_images(&self, after: i64, limit: u32) -> Result<Vec<ImageRecord>>;
    /// Adds a moved user, or finds them moved already (same name and token hash);
    /// `UserExists` if the name is taken by someone else.
    async fn import_user(&self, user: &UserRecord) -> Result<UserId>;
    /// Records a moved image under its number, with its blob; false if it is there already.
    /// Another image under that number is an error, never overwritten.
    async fn import_image(&self, number: i64, image: &NewImage) -> Result<bool>;
}
