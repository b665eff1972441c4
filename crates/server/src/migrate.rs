//! Moving an install to other stores: users, image records and blobs, from an embedded data
//! folder (or any store) into, say, PostgreSQL and a bucket. Image numbers and token hashes
//! stay, so clients go on without noticing. Every blob's bytes are hashed on the way and
//! must match their digest; an image is recorded in the target only after its blob is there.
//! Running it again goes on where it stopped: what the target holds already is skipped.
//! Unfinished uploads are not moved: clients start them again. The target's servers should
//! not run meanwhile: their sweep would take a blob being copied for an abandoned upload.

use std::collections::HashMap;
use std::io;

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use crate::store::{ImageRecord, StoreError, UserId};
use crate::AppState;

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("the source: {0}")]
    Source(StoreError),
    #[error("the target: {0}")]
    Target(StoreError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What a move did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveReport {
    pub users: u64,
    /// Images recorded in the target by this run.
    pub moved: u64,
    /// Images the target held already (an earlier run).
    pub already: u64,
    /// Blob bytes copied.
    pub bytes: u64,
    /// Images not moved, with why: a blob whose bytes no longer match its digest, or that
    /// is missing.
    pub failed: Vec<(i64, String)>,
}

/// Blobs copied at once.
const CONCURRENT: usize = 4;
/// Image records read per page.
const PAGE: u32 = 500;

/// Moves what `from` holds into `to`; `progress` hears each image as it is done.
pub async fn move_install(
    from: &AppState,
    to: &AppState,
    progress: impl Fn(&MoveReport),
) -> Result<MoveReport, MoveError> {
    // No server may serve the source meanwhile (an embedded one claims its folder).
    from.claim.take(from.store.as_ref()).await?;
    let mut report = MoveReport::default();
    let mut users: HashMap<UserId, UserId> = HashMap::new();
    for (id, user) in from.store.export_users().await.map_err(MoveError::Source)? {
        let moved = to
            .store
            .import_user(&user)
            .await
            .map_err(MoveError::Target)?;
        users.insert(id, moved);
        report.users += 1;
    }
    let mut after = 0;
    loop {
        let page = from
            .store
            .export_images(after, PAGE)
            .await
            .map_err(MoveError::Source)?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.row;
        let results: Vec<_> = futures_util::stream::iter(page)
            .map(|record| {
                let target_user = users.get(&record.image.user_id).copied();
                async move {
                    (
                        record.number,
                        move_image(from, to, record, target_user).await,
                    )
                }
            })
            .buffer_unordered(CONCURRENT)
            .collect()
            .await;
        for (number, result) in results {
            match result? {
                Moved::New(bytes) => {
                    report.moved += 1;
                    report.bytes += bytes;
                }
                Moved::Already => report.already += 1,
                Moved::Failed(why) => {
                    tracing::error!(image = number, "{why}");
                    report.failed.push((number, why));
                }
            }
            progress(&report);
        }
    }
    Ok(report)
}

enum Moved {
    /// Recorded now, after copying this many bytes.
    New(u64),
    Already,
    Failed(String),
}

async fn move_image(
    from: &AppState,
    to: &AppState,
    record: ImageRecord,
    user: Option<UserId>,
) -> Result<Moved, MoveError> {
    let Some(user) = user else {
        return Ok(Moved::Failed("its user was not moved".into()));
    };
    let image = crate::store::NewImage {
        user_id: user,
        ..record.image
    };
    if let Some(max) = to.blobs.max_blob_size().filter(|max| image.bytes > *max) {
        return Ok(Moved::Failed(format!(
            "its {} bytes are more than the target storage keeps in one file ({max})",
            image.bytes
        )));
    }
    let held = to
        .store
        .images_by_id(user, &[record.number])
        .await
        .map_err(MoveError::Target)?;
    if held.first().and_then(Option::as_ref).map(|i| &i.digest) == Some(&image.digest) {
        return Ok(Moved::Already);
    }
    let mut copied = 0;
    let mut tries = 0;
    let recorded = loop {
        if !target_has(to, &image.digest).await? {
            match copy_blob(from, to, &image.digest).await? {
                Ok(bytes) => copied += bytes,
                Err(why) => return Ok(Moved::Failed(why)),
            }
        }
        match to.store.import_image(record.number, &image).await {
            Ok(recorded) => break recorded,
            // Doomed on the target: a collector is deleting these bytes, or one was cut
            // short. Collecting finishes the job (the target's servers are not running);
            // then the bytes are copied again.
            Err(StoreError::BlobBusy) if tries < 30 => {
                tries += 1;
                if tries == 1 {
                    if let Err(e) = crate::cleanup::collect_garbage(to).await {
                        tracing::warn!(error = %e, "collecting the target's doomed blobs failed");
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => return Err(MoveError::Target(e)),
        }
    };
    // Recorded, the image holds its blob; but a collector that claimed the blob before may
    // have deleted it since. Then the bytes go again.
    if !target_has(to, &image.digest).await? {
        match copy_blob(from, to, &image.digest).await? {
            Ok(bytes) => copied += bytes,
            Err(why) => return Ok(Moved::Failed(why)),
        }
    }
    Ok(if recorded {
        Moved::New(copied)
    } else {
        Moved::Already
    })
}

async fn target_has(to: &AppState, digest: &str) -> io::Result<bool> {
    match to.blobs.open(digest, 0).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Copies one blob through the target's own upload path, hashing the bytes as they go; the
/// blob is published only if they hash to `digest`. The inner error says why it was not.
async fn copy_blob(
    from: &AppState,
    to: &AppState,
    digest: &str,
) -> Result<Result<u64, String>, MoveError> {
    let mut reader = match from.blobs.open(digest, 0).await {
        Ok((_, r)) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Err(format!("its blob {digest} is missing from the source")))
        }
        Err(e) => return Err(e.into()),
    };
    let upload = crate::tus::random_hex::<16>();
    to.blobs.create_part(&upload).await?;
    let mut part = to.blobs.open_part(&upload, 0).await?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let written: io::Result<()> = async {
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            part.write(&buf[..n]).await?;
            total += n as u64;
        }
        part.commit().await
    }
    .await;
    if let Err(e) = written {
        let _ = part.abort().await;
        drop(part);
        to.blobs.discard(&upload).await?;
        return Err(e.into());
    }
    if hasher.finalize().to_hex().as_str() != digest {
        drop(part);
        to.blobs.discard(&upload).await?;
        return Ok(Err(format!(
            "its blob's bytes no longer hash to {digest}: not moved"
        )));
    }
    part.publish(digest).await?;
    Ok(Ok(total))
}
