//! One file of a restore: find its place, bring its bytes into a partial file (resuming one a
//! killed run left), verify them, and link them into place under a name nothing holds.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use photosync_events::{RestoreEvent, Restored};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{names, Ctx, Job};
use crate::client::ClientError;

/// Attempts at one file's bytes when the network fails; each resumes where the last stopped.
const ATTEMPTS: u32 = 5;
/// Progress is told at most every this many bytes.
const TELL_EVERY: u64 = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error("cancelled")]
    Interrupted,
    #[error("{0}")]
    DiskFull(io::Error),
    #[error("the server's copy does not match its digest (got {got}): not written")]
    Mismatch { got: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Clashes(String),
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// An I/O failure while writing `path`: a full disk stops the restore, anything else fails
/// this file.
fn io_error(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> FetchError {
    move |source| {
        if is_disk_full(&source) {
            FetchError::DiskFull(source)
        } else {
            FetchError::Io {
                what: what(),
                source,
            }
        }
    }
}

/// Restores `job` at `first` or, when a different file holds that name, beside it. Returns
/// where the file is and how it got there.
pub(super) async fn fetch(
    ctx: &Ctx<'_>,
    job: &Job,
    first: &Path,
) -> Result<(PathBuf, Restored), FetchError> {
    let dir = first.parent().unwrap_or(&ctx.to).to_path_buf();
    tokio::fs::create_dir_all(&dir).await.map_err(io_error(|| {
        format!("cannot make the folder {}", dir.display())
    }))?;
    match free_place(job, first).await? {
        Some((place, true)) => return Ok((place, Restored::AlreadyThere)),
        Some((_, false)) => {}
        None => return Err(no_free_name(first)),
    }
    let partial = dir.join(format!(".{}.photosync-restore", &job.image.digest[..32]));
    download(ctx, job, &partial).await?;
    // Another program may take the name while this file downloads: look again, and never
    // replace what is there.
    loop {
        let Some((place, identical)) = free_place(job, first).await? else {
            return Err(no_free_name(first));
        };
        if identical {
            let _ = tokio::fs::remove_file(&partial).await;
            return Ok((place, Restored::AlreadyThere));
        }
        match publish(&partial, &place).await {
            Ok(()) => return Ok((place, Restored::Written)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(io_error(|| {
                    format!("cannot put {} in place", place.display())
                })(e))
            }
        }
    }
}

fn no_free_name(first: &Path) -> FetchError {
    FetchError::Clashes(format!(
        "a thousand different files are named like {}",
        first.display()
    ))
}

/// The first of `first`, `first (1)`, `first (2)`... that is free, or that holds these very
/// bytes (true): a byte-identical file is kept as it is, whatever its time.
async fn free_place(job: &Job, first: &Path) -> Result<Option<(PathBuf, bool)>, FetchError> {
    for n in 0..1000 {
        let place = if n == 0 {
            first.to_path_buf()
        } else {
            names::numbered(first, n)
        };
        match tokio::fs::symlink_metadata(&place).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some((place, false))),
            Err(e) => {
                return Err(io_error(|| format!("cannot look at {}", place.display()))(
                    e,
                ))
            }
            Ok(m) if m.is_file() && m.len() == job.image.bytes => {
                if hash_file(&place, u64::MAX).await.ok() == Some(job.digest.to_string()) {
                    return Ok(Some((place, true)));
                }
            }
            Ok(_) => {}
        }
    }
    Ok(None)
}

/// BLAKE3 of the first `limit` bytes of a file, as hex.
async fn hash_file(path: &Path, limit: u64) -> io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(io::Read::take(file, limit))?;
        Ok(hasher.finalize().to_hex().to_string())
    })
    .await
    .map_err(io::Error::other)?
}

/// Brings the image's bytes into `partial`, resuming what is there, and verifies them. On
/// success `partial` holds exactly the image's bytes, synced, with its modification time.
async fn download(ctx: &Ctx<'_>, job: &Job, partial: &Path) -> Result<(), FetchError> {
    let what = || format!("cannot write {}", partial.display());
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(partial)
        .await
        .map_err(io_error(what))?;
    let total = job.image.bytes;
    let mut have = file.metadata().await.map_err(io_error(what))?.len();
    if have > total {
        have = 0;
    }
    let mut hasher = blake3::Hasher::new();
    if have > 0 {
        // What a killed run left: its bytes count once they are hashed again.
        let mut buf = vec![0u8; 1 << 20];
        let mut left = have;
        file.seek(io::SeekFrom::Start(0))
            .await
            .map_err(io_error(what))?;
        while left > 0 {
            let n = file
                .read(&mut buf[..left.min(1 << 20) as usize])
                .await
                .map_err(io_error(what))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        have -= left;
    }
    file.set_len(have).await.map_err(io_error(what))?;
    file.seek(io::SeekFrom::Start(have))
        .await
        .map_err(io_error(what))?;
    let mut resumed = have > 0;
    let mut attempt = 0;
    loop {
        if have < total {
            match receive(ctx, job, partial, &mut file, &mut hasher, &mut have).await {
                Ok(()) => {}
                Err(FetchError::Client(e)) if e.is_transient() && attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    tracing::info!(image = job.image.id, error = %e, attempt, "download cut; resuming");
                    tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
                    continue;
                }
                Err(e) => {
                    // Whatever arrived stays for the next run to resume from.
                    let _ = file.flush().await;
                    return Err(e);
                }
            }
        }
        let got = hasher.finalize().to_hex().to_string();
        if have == total && got == job.image.digest {
            break;
        }
        if resumed {
            // The partial file may be what is wrong: once more from the first byte.
            tracing::warn!(
                image = job.image.id,
                "resumed bytes did not verify; starting again"
            );
            resumed = false;
            hasher = blake3::Hasher::new();
            have = 0;
            file.set_len(0).await.map_err(io_error(what))?;
            file.seek(io::SeekFrom::Start(0))
                .await
                .map_err(io_error(what))?;
            continue;
        }
        drop(file);
        let _ = tokio::fs::remove_file(partial).await;
        return Err(FetchError::Mismatch { got });
    }
    file.flush().await.map_err(io_error(what))?;
    let mut file = file.into_std().await;
    let mtime = job
        .image
        .mtime
        .and_then(|t| u64::try_from(t).ok())
        .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t));
    tokio::task::spawn_blocking(move || {
        if let Some(t) = mtime {
            file.set_modified(t)?;
        }
        file.sync_all()?;
        io::Write::flush(&mut file)
    })
    .await
    .map_err(io::Error::other)
    .and_then(|r| r)
    .map_err(io_error(what))
}

/// Receives the rest of the image from byte `have` on into `file`.
async fn receive(
    ctx: &Ctx<'_>,
    job: &Job,
    partial: &Path,
    file: &mut tokio::fs::File,
    hasher: &mut blake3::Hasher,
    have: &mut u64,
) -> Result<(), FetchError> {
    let what = || format!("cannot write {}", partial.display());
    let total = job.image.bytes;
    let response = ctx.engine.client().download(job.image.id, *have).await?;
    if response.status().as_u16() != 206 && *have > 0 {
        // The server sent the whole file: start again from its first byte.
        *hasher = blake3::Hasher::new();
        *have = 0;
        file.set_len(0).await.map_err(io_error(what))?;
        file.seek(io::SeekFrom::Start(0))
            .await
            .map_err(io_error(what))?;
    }
    let final_path = ctx.to.join(&job.place);
    let mut told = *have;
    let mut body = response.bytes_stream();
    loop {
        let chunk = tokio::select! {
            chunk = body.next() => chunk,
            () = ctx.control.cancelled() => return Err(FetchError::Interrupted),
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|e| ClientError::Network(e.to_string()))?;
        if *have + chunk.len() as u64 > total {
            return Err(FetchError::Mismatch {
                got: format!("more than the {total} bytes listed"),
            });
        }
        ctx.engine.bandwidth().take(chunk.len() as u64).await;
        file.write_all(&chunk).await.map_err(io_error(what))?;
        hasher.update(&chunk);
        *have += chunk.len() as u64;
        if *have - told >= TELL_EVERY || *have == total {
            told = *have;
            (ctx.events)(RestoreEvent::Receiving {
                path: final_path.clone(),
                done: *have,
                total,
            });
        }
        if ctx.control.is_paused() {
            ctx.control.wait_while_paused().await;
        }
        if ctx.halted() {
            return Err(FetchError::Interrupted);
        }
    }
    if *have < total {
        return Err(ClientError::Network(format!(
            "the download ended after {} of {total} bytes",
            *have
        ))
        .into());
    }
    Ok(())
}

/// Puts the verified partial file at `place`, which must not exist: never replaces a file.
async fn publish(partial: &Path, place: &Path) -> io::Result<()> {
    let (partial, place) = (partial.to_path_buf(), place.to_path_buf());
    tokio::task::spawn_blocking(move || {
        match std::fs::hard_link(&partial, &place) {
            Ok(()) => std::fs::remove_file(&partial)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
            // File systems without hard links (FAT, some shares): a rename after a last look.
            Err(_) => {
                if std::fs::symlink_metadata(&place).is_ok() {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                std::fs::rename(&partial, &place)?;
            }
        }
        #[cfg(unix)]
        if let Some(dir) = place.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(io::Error::other)?
}
