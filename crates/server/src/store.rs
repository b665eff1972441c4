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
    #[error("metadata store: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub name: String,
    pub created_at: i64,
    pub images: u64,
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
    pub digest: String,
    pub mtime: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set once the file is verified and published; HEAD still answers until expiry.
    pub image_id: Option<i64>,
}

/// An image to record once its blob is published.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub user_id: UserId,
    pub digest: String,
    pub identifier: Option<String>,
    pub name: String,
    pub bytes: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub format: Option<String>,
    pub mtime: Option<i64>,
    pub uploaded_at: i64,
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    async fn create_user(&self, name: &str, token_hash: &str, now: i64) -> Result<UserId>;
    async fn remove_user(&self, name: &str) -> Result<bool>;
    async fn list_users(&self) -> Result<Vec<UserSummary>>;
    /// The user whose token hashes to `token_hash`, with the stored hash for a constant-time
    /// comparison.
    async fn user_by_token_hash(&self, token_hash: &str) -> Result<Option<(UserId, String)>>;

    async fn create_upload(&self, upload: &Upload) -> Result<()>;
    /// The upload, only if it belongs to `user`.
    async fn upload(&self, user: UserId, id: &str) -> Result<Option<Upload>>;
    /// Takes the upload's lease until `until` unless another holder's lease is still running.
    async fn lock_upload(&self, id: &str, holder: &str, now: i64, until: i64) -> Result<bool>;
    async fn unlock_upload(&self, id: &str, holder: &str) -> Result<()>;
    /// Records a durably stored part: the new offset and the new expiry.
    async fn advance_upload(&self, id: &str, offset: u64, expires_at: i64) -> Result<()>;
    async fn finish_upload(&self, id: &str, image_id: i64) -> Result<()>;
    async fn delete_upload(&self, id: &str) -> Result<()>;
    async fn expired_uploads(&self, now: i64) -> Result<Vec<String>>;

    /// Records the image; if the user already holds these bytes, returns the existing one.
    async fn insert_image(&self, image: &NewImage) -> Result<ImageInfo>;
    async fn image(&self, user: UserId, id: i64) -> Result<Option<(ImageInfo, Option<String>)>>;
    async fn images_by_digest(
        &self,
        user: UserId,
        digests: &[String],
    ) -> Result<Vec<Option<ImageInfo>>>;
    async fn images_by_id(&self, user: UserId, ids: &[i64]) -> Result<Vec<Option<ImageInfo>>>;
    async fn list_images(&self, user: UserId, after: i64, limit: u32) -> Result<Vec<ImageInfo>>;
    /// (image id, identifier) of the user's images with an id above `after`, for the index.
    async fn identifiers_since(&self, user: UserId, after: i64) -> Result<Vec<(i64, String)>>;
}
