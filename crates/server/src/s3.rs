//! Blobs in an S3-compatible bucket (AWS S3, MinIO, Garage, Ceph RGW, R2), shared by any number
//! of server instances. Nothing about an upload lives in an instance's memory or disk:
//!
//! - `PREFIX/uploads/ID/created` marks an upload that has storage;
//! - each acknowledged tus part is one object, `PREFIX/uploads/ID/part-OFFSET` (the offset
//!   zero-padded, so names sort in byte order). A part is sent to the bucket as it arrives,
//!   as a multipart upload once it is large; a tus part may be of any size, since S3's 5 MiB
//!   minimum applies only to the pieces of one part object;
//! - completion reads the parts in order to hash them, then composes them into
//!   `PREFIX/blobs/AB/DIGEST`, written only if absent (`If-None-Match: *`), so two instances
//!   completing the same bytes publish once;
//! - `PREFIX/thumbs/AB/DIGEST-SIZE.jpg` caches thumbnails.
//!
//! One writer per upload is the store's lease, not a lock here. A writer whose lease lapsed
//! may still finish a part object; its bytes are then never acknowledged, and the BLAKE3 check
//! at completion refuses anything that differs from what was declared and acknowledged.

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, S3CopyIfNotExists};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutMode, PutOptions, PutPayload};
use tokio::io::{AsyncRead, AsyncWriteExt};

use crate::blobs::{Blobs, PartWriter};

/// Where the bucket is and how to reach it. Anything not given comes from the `AWS_*`
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`...).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Folder inside the bucket, without slashes at either end; may be empty.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Access key id and secret; None: from the environment (or the provider's instance
    /// credentials).
    pub credentials: Option<(String, String)>,
}

impl S3Config {
    /// `s3://BUCKET/PREFIX`, the rest from the environment.
    pub fn new(bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: None,
            region: None,
            credentials: None,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Blobs up to this size are composed in memory and written with one conditional PUT;
/// larger ones go through a staging object and a conditional copy.
const IN_MEMORY_MAX: u64 = 16 << 20;
/// What a part buffers before it becomes a multipart upload (and each piece's size).
const PART_BUFFER: usize = 8 << 20;

#[derive(Debug, Clone)]
pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Blobs composed in memory at once (each up to [`IN_MEMORY_MAX`]).
    composing: Arc<tokio::sync::Semaphore>,
}

/// Largest object S3 copies in one step, so the largest blob this store can publish.
pub const MAX_BLOB: u64 = 5 << 30;

fn io_error(e: object_store::Error) -> io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            io::ErrorKind::AlreadyExists
        }
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

impl S3Blobs {
    pub fn open(config: &S3Config) -> io::Result<S3Blobs> {
        // No limit on a whole request: a download streams from the bucket at the pace of the
        // client reading it (a video restored over a slow link takes hours); connecting
        // keeps its timeout.
        let client = object_store::ClientOptions::new()
            .with_timeout_disabled()
            .with_connect_timeout(std::time::Duration::from_secs(10));
        let mut builder = AmazonS3Builder::from_env()
            .with_client_options(client)
            .with_bucket_name(&config.bucket)
            // Native S3 (since 2024) honours If-None-Match on completing a multipart upload.
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        } else if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            builder = builder.with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some((id, secret)) = &config.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder.build().map_err(io_error)?;
        Ok(S3Blobs {
            store: Arc::new(store),
            prefix: Path::from(config.prefix.as_str()),
            composing: Arc::new(tokio::sync::Semaphore::new(4)),
        })
    }

    fn key(&self, parts: &[&str]) -> Path {
        parts
            .iter()
            .fold(self.prefix.clone(), |p, part| p.child(*part))
    }

    fn upload_dir(&self, upload: &str) -> Path {
        // Upload ids are generated hex; never a path of a client's choosing.
        debug_assert!(upload.bytes().all(|b| b.is_ascii_hexdigit()));
        self.key(&["uploads", upload])
    }

    fn blob_key(&self, digest: &str) -> Path {
        debug_assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()));
        self.key(&["blobs", &digest[..2], digest])
    }

    fn thumb_key(&self, digest: &str, size: u32) -> Path {
        self.key(&["thumbs", &digest[..2], &format!("{digest}-{size}.jpg")])
    }

    /// The upload's objects: whether it has storage, and its parts (start, length, key) in
    /// offset order.
    async fn listing(&self, upload: &str) -> io::Result<(bool, Vec<(u64, u64, Path)>)> {
        let dir = self.upload_dir(upload);
        let objects: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(io_error)?;
        let mut created = false;
        let mut parts = Vec::new();
        for o in objects {
            match o.location.filename() {
                Some("created") => created = true,
                Some(name) => {
                    if let Some(start) = name.strip_prefix("part-").and_then(|n| n.parse().ok()) {
                        parts.push((start, o.size, o.location.clone()));
                    }
                }
                None => {}
            }
        }
        parts.sort_by_key(|(start, _, _)| *start);
        Ok((created, parts))
    }

    async fn delete_all(&self, keys: Vec<Path>) -> io::Result<()> {
        for key in keys {
            match self.store.delete(&key).await {
                Err(object_store::Error::NotFound { .. }) | Ok(()) => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(())
    }
}

impl S3Blobs {
    /// The parts holding the upload's bytes `0..offset`, in order.
    async fn stored_parts(&self, upload: &str, offset: u64) -> io::Result<Vec<(u64, u64, Path)>> {
        let (created, parts) = self.listing(upload).await?;
        if !created {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the upload's bytes were published or discarded",
            ));
        }
        chain(&parts, offset)
    }

    /// Calls `each` with the upload's bytes `0..offset`, in order.
    async fn read_parts(
        &self,
        upload: &str,
        offset: u64,
        mut each: impl FnMut(&[u8]) -> io::Result<()> + Send,
    ) -> io::Result<()> {
        for (_, len, key) in self.stored_parts(upload, offset).await? {
            let mut stream = self.store.get(&key).await.map_err(io_error)?.into_stream();
            let mut got = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(io_error)?;
                got += chunk.len() as u64;
                each(&chunk)?;
            }
            if got != len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a part of the upload changed while it was read ({got} of {len} bytes)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn part_name(start: u64) -> String {
    format!("part-{start:020}")
}

/// The parts that hold bytes `0..offset`, one after another; `UnexpectedEof` if they stop
/// short, overlap it or leave a gap: the stored bytes are lost, and the upload starts again.
fn chain(parts: &[(u64, u64, Path)], offset: u64) -> io::Result<Vec<(u64, u64, Path)>> {
    let mut end = 0;
    let mut kept = Vec::new();
    for (start, len, key) in parts {
        if *start >= offset {
            break;
        }
        if *start != end || start + len > offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the upload's stored parts do not run on at byte {end}"),
            ));
        }
        end = start + len;
        kept.push((*start, *len, key.clone()));
    }
    if end < offset {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the upload stores {end} bytes, fewer than its offset {offset}"),
        ));
    }
    Ok(kept)
}

struct S3Part {
    blobs: S3Blobs,
    upload: String,
    /// Where the part being written began (all before it is stored).
    start: u64,
    written: u64,
    writer: Option<BufWriter>,
}

#[async_trait]
impl PartWriter for S3Part {
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => {
                let key = self
                    .blobs
                    .upload_dir(&self.upload)
                    .child(part_name(self.start));
                // Two pieces in flight at most: a PATCH holds about 3 × 8 MiB, whatever its size.
                self.writer.insert(
                    BufWriter::with_capacity(self.blobs.store.clone(), key, PART_BUFFER)
                        .with_max_concurrency(2),
                )
            }
        };
        writer.write_all(bytes).await?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    async fn commit(&mut self) -> io::Result<()> {
        if let Some(mut w) = self.writer.take() {
            // Completes the part object: it is whole in the bucket, or not there at all.
            w.shutdown().await?;
        }
        self.start += self.written;
        self.written = 0;
        Ok(())
    }

    async fn abort(&mut self) -> io::Result<()> {
        self.written = 0;
        match self.writer.take() {
            Some(mut w) => w.abort().await.map_err(io_error),
            None => Ok(()),
        }
    }

    async fn digest(&mut self) -> io::Result<blake3::Hash> {
        self.commit().await?;
        let mut hasher = blake3::Hasher::new();
        let blobs = self.blobs.clone();
        blobs
            .read_parts(&self.upload, self.start, |chunk| {
                hasher.update(chunk);
                Ok(())
            })
            .await?;
        Ok(hasher.finalize())
    }

    async fn publish(mut self: Box<Self>, digest: &str) -> io::Result<()> {
        self.commit().await?;
        let target = self.blobs.blob_key(digest);
        let exists = match self.blobs.store.head(&target).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(io_error(e)),
        };
        if !exists {
            self.blobs
                .compose(&self.upload, self.start, digest, &target)
                .await?;
        }
        // Visible first, then the upload's storage goes, its marker first: a crash between
        // leaves either everything to publish again, or no marker (the upload is then
        // completed from the published blob) and parts the sweep removes.
        self.blobs.discard(&self.upload).await
    }
}

impl S3Blobs {
    /// Writes the upload's parts (`length` bytes, whose BLAKE3 is `digest`) as the blob: once,
    /// whoever else publishes the same bytes at the same time.
    async fn compose(
        &self,
        upload: &str,
        length: u64,
        digest: &str,
        target: &Path,
    ) -> io::Result<()> {
        let store = &self.store;
        if length <= IN_MEMORY_MAX {
            let _permit = self.composing.acquire().await.map_err(io::Error::other)?;
            let mut bytes = Vec::with_capacity(length as usize);
            self.read_parts(upload, length, |chunk| {
                bytes.extend_from_slice(chunk);
                Ok(())
            })
            .await?;
            let mut hasher = blake3::Hasher::new();
            hasher.update(&bytes);
            check(&hasher.finalize(), digest)?;
            let create = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            return conditional(
                store
                    .put_opts(target, PutPayload::from(bytes), create)
                    .await,
            );
        }
        let staging = self.key(&["staging", &format!("{upload}-{digest}")]);
        let mut writer = BufWriter::with_capacity(store.clone(), staging.clone(), PART_BUFFER)
            .with_max_concurrency(2);
        let mut hasher = blake3::Hasher::new();
        for (_, _, key) in self.stored_parts(upload, length).await? {
            let mut stream = store.get(&key).await.map_err(io_error)?.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(io_error)?;
                hasher.update(&chunk);
                writer.write_all(&chunk).await?;
            }
        }
        if let Err(e) = check(&hasher.finalize(), digest) {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.shutdown().await?;
        let copied = match store.copy_if_not_exists(&staging, target).await {
            // A store without conditional copies: the same bytes under the same name.
            Err(object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented) => {
                store.copy(&staging, target).await
            }
            other => other,
        };
        let published = conditional(copied);
        self.delete_all(vec![staging]).await?;
        published
    }
}

/// A conditional write's outcome: someone publishing the same bytes first is success too,
/// since blobs are named by their content.
fn conditional<T>(result: object_store::Result<T>) -> io::Result<()> {
    match result {
        Ok(_)
        | Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(()),
        Err(e) => Err(io_error(e)),
    }
}

/// The bytes read for publishing must be the ones verified.
fn check(hash: &blake3::Hash, digest: &str) -> io::Result<()> {
    if hash.to_hex().as_str() == digest {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the upload's bytes changed between verification and publishing",
        ))
    }
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn create_part(&self, upload: &str) -> io::Result<()> {
        let marker = self.upload_dir(upload).child("created");
        self.store
            .put(&marker, PutPayload::new())
            .await
            .map_err(io_error)?;
        Ok(())
    }

    async fn open_part(&self, upload: &str, offset: u64) -> io::Result<Box<dyn PartWriter>> {
        let (created, parts) = self.listing(upload).await?;
        if !created {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the upload's bytes were published or discarded",
            ));
        }
        chain(&parts, offset)?;
        // Parts past the offset were never acknowledged (a crash, a lost lease): dropped.
        let beyond = parts
            .into_iter()
            .filter(|(start, _, _)| *start >= offset)
            .map(|(_, _, key)| key)
            .collect();
        self.delete_all(beyond).await?;
        Ok(Box::new(S3Part {
            blobs: self.clone(),
            upload: upload.to_owned(),
            start: offset,
            written: 0,
            writer: None,
        }))
    }

    async fn discard(&self, upload: &str) -> io::Result<()> {
        // The marker first: half a discard is an upload without storage, never one whose
        // stored parts have holes.
        self.delete_all(vec![self.upload_dir(upload).child("created")])
            .await?;
        let (_, parts) = self.listing(upload).await?;
        self.delete_all(parts.into_iter().map(|(_, _, k)| k).collect())
            .await
    }

    async fn part_ids(&self) -> io::Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.key(&["uploads"])))
            .await
            .map_err(io_error)?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned)
            .collect())
    }

    async fn open(
        &self,
        digest: &str,
        from: u64,
    ) -> io::Result<(u64, Box<dyn AsyncRead + Send + Unpin>)> {
        let key = self.blob_key(digest);
        let len = self.store.head(&key).await.map_err(io_error)?.size;
        if from >= len {
            return Ok((len, Box::new(tokio::io::empty())));
        }
        let options = GetOptions {
            range: (from > 0).then_some(GetRange::Offset(from)),
            ..GetOptions::default()
        };
        let stream = self
            .store
            .get_opts(&key, options)
            .await
            .map_err(io_error)?
            .into_stream()
            .map_err(io_error);
        Ok((len, Box::new(tokio_util::io::StreamReader::new(stream))))
    }

    async fn delete_blob(&self, digest: &str) -> io::Result<()> {
        // The blob first: a thumbnail made meanwhile sees it gone and removes itself.
        let mut keys = vec![self.blob_key(digest)];
        keys.extend(
            photosync_protocol::THUMBNAIL_SIZES
                .iter()
                .map(|size| self.thumb_key(digest, *size)),
        );
        self.delete_all(keys).await
    }

    async fn thumbnail(&self, digest: &str, size: u32) -> io::Result<Option<Vec<u8>>> {
        match self.store.get(&self.thumb_key(digest, size)).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(io_error)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn put_thumbnail(&self, digest: &str, size: u32, jpeg: Vec<u8>) -> io::Result<()> {
        let key = self.thumb_key(digest, size);
        // One PUT: an object is whole or absent, never torn.
        self.store
            .put(&key, PutPayload::from(jpeg))
            .await
            .map_err(io_error)?;
        // The blob was collected while this thumbnail was made: it would never be deleted.
        if let Err(object_store::Error::NotFound { .. }) =
            self.store.head(&self.blob_key(digest)).await
        {
            self.delete_all(vec![key]).await?;
        }
        Ok(())
    }

    async fn available_space(&self) -> io::Result<Option<u64>> {
        // A bucket does not say; quotas and the provider's limits apply.
        Ok(None)
    }

    fn max_blob_size(&self) -> Option<u64> {
        Some(MAX_BLOB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(spec: &[(u64, u64)]) -> Vec<(u64, u64, Path)> {
        spec.iter()
            .map(|(s, l)| (*s, *l, Path::from(part_name(*s))))
            .collect()
    }

    #[test]
    fn stored_parts_must_run_on_to_the_offset() {
        let p = parts(&[(0, 10), (10, 5), (15, 20)]);
        assert_eq!(chain(&p, 35).unwrap().len(), 3);
        // Parts at or past the offset are not the upload's (never acknowledged).
        assert_eq!(chain(&p, 15).unwrap().len(), 2);
        assert_eq!(chain(&p, 0).unwrap().len(), 0);
        assert_eq!(
            chain(&p, 40).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        // A part across the offset, or a gap: the stored bytes cannot be trusted.
        let e = chain(&p, 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("do not run on"), "{e}");
        let gap = parts(&[(0, 10), (12, 5)]);
        assert_eq!(
            chain(&gap, 17).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(part_name(5) < part_name(40) && part_name(40) < part_name(1 << 40));
    }
}
