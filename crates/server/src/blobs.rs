//! Blob storage behind a trait: upload parts land in a per-upload file, and a verified upload
//! is published under its BLAKE3 digest. The embedded implementation is a local folder; each
//! part file is locked by its one writer.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt};

/// Exclusive access to one upload's stored bytes, opened at the acknowledged offset. Only one
/// writer per upload exists at a time (a second gets `WouldBlock`), so bytes are never written
/// by a request that has lost the upload, and a published blob is never written again.
#[async_trait]
pub trait PartWriter: Send {
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything written since the part began durable.
    async fn commit(&mut self) -> io::Result<()>;
    /// Drops everything this part wrote.
    async fn abort(&mut self) -> io::Result<()>;
    /// BLAKE3 of all of the upload's stored bytes.
    async fn digest(&mut self) -> io::Result<blake3::Hash>;
    /// Makes the upload's bytes, verified to hash to `digest`, the blob for `digest`,
    /// atomically. Nothing can write them after this.
    async fn publish(self: Box<Self>, digest: &str) -> io::Result<()>;
}

#[async_trait]
pub trait Blobs: Send + Sync + std::fmt::Debug {
    /// Makes the empty storage for a new upload.
    async fn create_part(&self, upload: &str) -> io::Result<()>;
    /// Opens the upload's bytes for writing at `offset`, discarding any stored past it (from a
    /// part that was never acknowledged, say before a crash). `NotFound` if the upload has no
    /// stored bytes (discarded or published), `WouldBlock` while another writer holds them.
    async fn open_part(&self, upload: &str, offset: u64) -> io::Result<Box<dyn PartWriter>>;
    async fn discard(&self, upload: &str) -> io::Result<()>;
    /// Uploads that have stored bytes.
    async fn part_ids(&self) -> io::Result<Vec<String>>;
    /// The blob's size and a reader over it from byte `from` on.
    async fn open(
        &self,
        digest: &str,
        from: u64,
    ) -> io::Result<(u64, Box<dyn AsyncRead + Send + Unpin>)>;
    /// Deletes a blob that nothing references any more, with its thumbnails.
    async fn delete_blob(&self, digest: &str) -> io::Result<()>;
    /// The cached thumbnail of the blob at `size`, if one was made.
    async fn thumbnail(&self, digest: &str, size: u32) -> io::Result<Option<Vec<u8>>>;
    /// Caches a thumbnail of the blob; none is kept for a blob deleted meanwhile.
    async fn put_thumbnail(&self, digest: &str, size: u32, jpeg: Vec<u8>) -> io::Result<()>;
    /// Bytes free for new data, if the storage can tell.
    async fn available_space(&self) -> io::Result<Option<u64>>;
    /// The largest blob this storage can publish, if it has a limit.
    fn max_blob_size(&self) -> Option<u64> {
        None
    }
}

/// Blobs in a local folder: `uploads/<id>.part` while receiving, `blobs/<ab>/<digest>` after.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    pub fn open(root: &Path) -> io::Result<LocalBlobs> {
        std::fs::create_dir_all(root.join("uploads"))?;
        std::fs::create_dir_all(root.join("blobs"))?;
        Ok(LocalBlobs {
            root: root.to_path_buf(),
        })
    }

    fn part_path(&self, upload: &str) -> PathBuf {
        // Upload ids are generated hex; never a path of a client's choosing.
        debug_assert!(upload.bytes().all(|b| b.is_ascii_hexdigit()));
        self.root.join("uploads").join(format!("{upload}.part"))
    }
}

struct LocalPart {
    file: tokio::fs::File,
    path: PathBuf,
    root: PathBuf,
    start: u64,
    /// Bytes written since the last write-back was started.
    unsynced: u64,
    /// A write-back running beside the writes, so the disk works while the part arrives and
    /// the commit's sync, which the client waits for, finds little left to do.
    writeback: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

/// How much a part writes before a background write-back starts.
const WRITEBACK_EVERY: u64 = 4 << 20;

impl LocalPart {
    async fn settle_writeback(&mut self) -> io::Result<()> {
        match self.writeback.take() {
            Some(w) => w.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl PartWriter for LocalPart {
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes).await?;
        self.unsynced += bytes.len() as u64;
        let idle = self.writeback.as_ref().is_none_or(|w| w.is_finished());
        if self.unsynced >= WRITEBACK_EVERY && idle {
            self.settle_writeback().await?;
            self.file.flush().await?;
            let file = self.file.try_clone().await?.into_std().await;
            self.writeback = Some(tokio::task::spawn_blocking(move || file.sync_data()));
            self.unsynced = 0;
        }
        Ok(())
    }

    async fn commit(&mut self) -> io::Result<()> {
        self.settle_writeback().await?;
        self.file.flush().await?;
        self.file.sync_data().await?;
        self.start = self.file.stream_position().await?;
        Ok(())
    }

    async fn abort(&mut self) -> io::Result<()> {
        let _ = self.settle_writeback().await;
        self.file.flush().await?;
        self.file.set_len(self.start).await?;
        self.file.seek(io::SeekFrom::Start(self.start)).await?;
        self.file.sync_data().await
    }

    async fn digest(&mut self) -> io::Result<blake3::Hash> {
        self.settle_writeback().await?;
        self.file.flush().await?;
        let mut file = self.file.try_clone().await?.into_std().await;
        tokio::task::spawn_blocking(move || {
            use std::io::Seek;
            file.seek(io::SeekFrom::Start(0))?;
            let mut hasher = blake3::Hasher::new();
            hasher.update_reader(&mut file)?;
            Ok(hasher.finalize())
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn publish(mut self: Box<Self>, digest: &str) -> io::Result<()> {
        self.settle_writeback().await?;
        self.file.flush().await?;
        self.file.sync_data().await?;
        let target = blob_path(&self.root, digest);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        if tokio::fs::try_exists(&target).await? {
            // The same bytes are already published (blobs only ever hold verified bytes).
            tokio::fs::remove_file(&self.path).await?;
        } else {
            // Parts were synced as they were acknowledged; the rename makes the blob visible
            // whole. This writer still holds the file's lock, so no one else is writing it.
            tokio::fs::rename(&self.path, &target).await?;
            sync_dir(&dir).await?;
        }
        sync_dir(&self.root.join("uploads")).await
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    tokio::fs::File::open(dir).await?.sync_all().await?;
    // Directories cannot be opened for syncing elsewhere; renames are durable there on close.
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn thumb_path(root: &Path, digest: &str, size: u32) -> PathBuf {
    debug_assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()));
    root.join("thumbs")
        .join(&digest[..2])
        .join(format!("{digest}-{size}.jpg"))
}

fn blob_path(root: &Path, digest: &str) -> PathBuf {
    debug_assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()));
    root.join("blobs").join(&digest[..2]).join(digest)
}

/// Locks the part file for this writer alone and checks it is still the upload's file (not
/// published or discarded between opening and locking).
fn lock_part(file: &std::fs::File, path: &Path) -> io::Result<()> {
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "another request is writing this upload",
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let ours = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "the upload's bytes were published or discarded",
                ))
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[async_trait]
impl Blobs for LocalBlobs {
    async fn create_part(&self, upload: &str) -> io::Result<()> {
        tokio::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(self.part_path(upload))
            .await?;
        Ok(())
    }

    async fn open_part(&self, upload: &str, offset: u64) -> io::Result<Box<dyn PartWriter>> {
        let path = self.part_path(upload);
        let std_file = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)?;
                lock_part(&file, &path)?;
                Ok::<_, io::Error>(file)
            })
            .await
            .map_err(io::Error::other)??
        };
        let mut file = tokio::fs::File::from_std(std_file);
        let len = file.metadata().await?.len();
        if len < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the upload stores {len} bytes, fewer than its offset {offset}"),
            ));
        }
        if len != offset {
            file.set_len(offset).await?;
        }
        file.seek(io::SeekFrom::Start(offset)).await?;
        Ok(Box::new(LocalPart {
            file,
            path,
            root: self.root.clone(),
            start: offset,
            unsynced: 0,
            writeback: None,
        }))
    }

    async fn discard(&self, upload: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.part_path(upload)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn part_ids(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        let mut dir = tokio::fs::read_dir(self.root.join("uploads")).await?;
        while let Some(entry) = dir.next_entry().await? {
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".part")) {
                if id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    ids.push(id.to_owned());
                }
            }
        }
        Ok(ids)
    }

    async fn open(
        &self,
        digest: &str,
        from: u64,
    ) -> io::Result<(u64, Box<dyn AsyncRead + Send + Unpin>)> {
        let mut file = tokio::fs::File::open(blob_path(&self.root, digest)).await?;
        let len = file.metadata().await?.len();
        if from > 0 {
            file.seek(io::SeekFrom::Start(from.min(len))).await?;
        }
        Ok((len, Box::new(file)))
    }

    async fn delete_blob(&self, digest: &str) -> io::Result<()> {
        let path = blob_path(&self.root, digest);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // After the blob: a thumbnail made meanwhile sees the blob gone and removes itself.
        for size in photosync_protocol::THUMBNAIL_SIZES {
            match tokio::fs::remove_file(thumb_path(&self.root, digest, size)).await {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        sync_dir(path.parent().unwrap_or(&self.root)).await
    }

    async fn available_space(&self) -> io::Result<Option<u64>> {
        #[cfg(unix)]
        {
            let root = self.root.clone();
            let stat = tokio::task::spawn_blocking(move || rustix::fs::statvfs(&root))
                .await
                .map_err(io::Error::other)?
                .map_err(io::Error::from)?;
            Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
        }
        #[cfg(not(unix))]
        Ok(None)
    }

    async fn thumbnail(&self, digest: &str, size: u32) -> io::Result<Option<Vec<u8>>> {
        match tokio::fs::read(thumb_path(&self.root, digest, size)).await {
            // Only a whole JPEG counts (a crash may leave an empty file behind).
            Ok(bytes) if bytes.starts_with(&[0xFF, 0xD8]) && bytes.ends_with(&[0xFF, 0xD9]) => {
                Ok(Some(bytes))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_thumbnail(&self, digest: &str, size: u32, jpeg: Vec<u8>) -> io::Result<()> {
        let path = thumb_path(&self.root, digest, size);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        // A temporary file per writer: two requests at once never publish a torn JPEG.
        let tmp = dir.join(format!(
            ".{digest}-{size}-{:016x}.tmp",
            rand::random::<u64>()
        ));
        let written = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            file.write_all(&jpeg).await?;
            file.sync_data().await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        written?;
        // The blob was collected while this thumbnail was made: it would never be deleted.
        if !tokio::fs::try_exists(blob_path(&self.root, digest)).await? {
            let _ = tokio::fs::remove_file(&path).await;
        }
        Ok(())
    }
}
