//! Blob storage behind a trait: upload parts land in a per-upload file, and a verified upload
//! is published under its BLAKE3 digest. The embedded implementation is a local folder.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Receives one part of an upload. Nothing is acknowledged until `commit` returns.
#[async_trait]
pub trait PartWriter: Send {
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes the part durable.
    async fn commit(self: Box<Self>) -> io::Result<()>;
    /// Drops everything this part wrote.
    async fn abort(self: Box<Self>) -> io::Result<()>;
}

#[async_trait]
pub trait Blobs: Send + Sync + std::fmt::Debug {
    /// Starts a part at `offset`, discarding any bytes stored past it (from a part that was
    /// never acknowledged, say before a crash).
    async fn begin_part(&self, upload: &str, offset: u64) -> io::Result<Box<dyn PartWriter>>;
    /// BLAKE3 of everything stored for the upload, read as a stream.
    async fn upload_digest(&self, upload: &str) -> io::Result<blake3::Hash>;
    /// Makes the verified upload the blob for `digest`, atomically.
    async fn publish(&self, upload: &str, digest: &str) -> io::Result<()>;
    async fn discard(&self, upload: &str) -> io::Result<()>;
    /// The blob's size and a reader over it.
    async fn open(&self, digest: &str) -> io::Result<(u64, Box<dyn AsyncRead + Send + Unpin>)>;
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

    fn blob_path(&self, digest: &str) -> PathBuf {
        debug_assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()));
        self.root.join("blobs").join(&digest[..2]).join(digest)
    }
}

struct LocalPart {
    file: tokio::fs::File,
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

    async fn commit(mut self: Box<Self>) -> io::Result<()> {
        self.settle_writeback().await?;
        self.file.flush().await?;
        self.file.sync_data().await
    }

    async fn abort(mut self: Box<Self>) -> io::Result<()> {
        let _ = self.settle_writeback().await;
        self.file.flush().await?;
        self.file.set_len(self.start).await?;
        self.file.sync_data().await
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

#[async_trait]
impl Blobs for LocalBlobs {
    async fn begin_part(&self, upload: &str, offset: u64) -> io::Result<Box<dyn PartWriter>> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.part_path(upload))
            .await?;
        if file.metadata().await?.len() != offset {
            file.set_len(offset).await?;
        }
        file.seek(io::SeekFrom::Start(offset)).await?;
        Ok(Box::new(LocalPart {
            file,
            start: offset,
            unsynced: 0,
            writeback: None,
        }))
    }

    async fn upload_digest(&self, upload: &str) -> io::Result<blake3::Hash> {
        let mut file = tokio::fs::File::open(self.part_path(upload)).await?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(hasher.finalize());
            }
            hasher.update(&buf[..n]);
        }
    }

    async fn publish(&self, upload: &str, digest: &str) -> io::Result<()> {
        let target = self.blob_path(digest);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        tokio::fs::create_dir_all(&dir).await?;
        // Parts were synced as they were acknowledged; the rename makes the blob visible whole.
        tokio::fs::rename(self.part_path(upload), &target).await?;
        sync_dir(&dir).await?;
        sync_dir(&self.root.join("uploads")).await
    }

    async fn discard(&self, upload: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.part_path(upload)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    async fn open(&self, digest: &str) -> io::Result<(u64, Box<dyn AsyncRead + Send + Unpin>)> {
        let file = tokio::fs::File::open(self.blob_path(digest)).await?;
        let len = file.metadata().await?.len();
        Ok((len, Box::new(file)))
    }
}
