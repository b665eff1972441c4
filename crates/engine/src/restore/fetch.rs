//! One file of a restore: find its place, bring its bytes into a partial file (resuming one a
//! killed run left), verify them, and put them in place under a name nothing holds.
//!
//! The partial file is locked by its one writer for as long as it exists under its name, so
//! two restores of one picture into one folder (the app's and the command's) never write it
//! at once, and one that finds it published (a second link to a restored photo) starts anew.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use photosync_events::{RestoreEvent, Restored};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{names, Ctx, Job};
use crate::client::ClientError;

/// Attempts in a row without a byte arriving, when the network fails; each resumes where the
/// last stopped.
const ATTEMPTS: u32 = 5;
/// Progress is told at most every this many bytes.
const TELL_EVERY: u64 = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub(super) enum FetchError {
    #[error("cancelled")]
    Interrupted,
    #[error("{0}")]
    DiskFull(io::Error),
    #[error("the server's copy does not match its digest ({got}): not written")]
    Mismatch { got: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Clashes(String),
    #[error("another restore is writing {0} at this moment; restore again once it is done")]
    Busy(String),
}

fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// An I/O failure while writing: a full disk stops the restore, anything else fails this file.
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
    let partial = dir.join(names::partial_name(&job.digest));
    let mut file = open_partial(&partial).await?;
    if let Err(e) = download(ctx, job, &partial, &mut file).await {
        if matches!(e, FetchError::Mismatch { .. }) {
            // Nothing of bytes that do not verify is kept.
            remove_quietly(&partial).await;
        }
        return Err(e);
    }
    finish(job, &mut file).await?;
    // Another program may take the name while this file downloads: look again, and never
    // replace what is there. The lock is held until the partial name is gone.
    let placed = loop {
        let Some((place, identical)) = free_place(job, first).await? else {
            break Err(no_free_name(first));
        };
        if identical {
            remove_quietly(&partial).await;
            break Ok((place, Restored::AlreadyThere));
        }
        match publish(&partial, &place).await {
            Ok(()) => break Ok((place, Restored::Written)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                break Err(io_error(|| {
                    format!("cannot put {} in place", place.display())
                })(e))
            }
        }
    };
    drop(file);
    placed
}

fn no_free_name(first: &Path) -> FetchError {
    FetchError::Clashes(format!(
        "a thousand different files are named like {}",
        first.display()
    ))
}

async fn remove_quietly(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "partial file not removed");
        }
    }
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
                if hash_file(&place).await.ok() == Some(job.digest.0) {
                    return Ok(Some((place, true)));
                }
            }
            Ok(_) => {}
        }
    }
    Ok(None)
}

/// BLAKE3 of a whole file.
async fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(&path)?)?;
        Ok(*hasher.finalize().as_bytes())
    })
    .await
    .map_err(io::Error::other)?
}

/// Opens the partial file for this restore alone. Anything at its name that is not a plain
/// file of one link (a link somewhere else, a published photo a killed run left a second name
/// for) is removed first, so a write never reaches another file.
async fn open_partial(partial: &Path) -> Result<tokio::fs::File, FetchError> {
    let path = partial.to_path_buf();
    let what = || format!("cannot write {}", partial.display());
    let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File, FetchError> {
        let what = || format!("cannot write {}", path.display());
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.is_file() || links(&meta) > 1 {
                std::fs::remove_file(&path).map_err(io_error(what))?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(what))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(FetchError::Busy(path.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(what)(e)),
        }
        // Removed and made anew by another restore between the open and the lock: not ours.
        let same = match (std::fs::symlink_metadata(&path), file.metadata()) {
            (Ok(at_name), Ok(opened)) => same_file(&at_name, &opened) && links(&opened) == 1,
            _ => false,
        };
        if !same {
            return Err(FetchError::Busy(path.display().to_string()));
        }
        Ok(file)
    })
    .await
    .map_err(|e| io_error(what)(io::Error::other(e)))??;
    Ok(tokio::fs::File::from_std(file))
}

/// Whether two metadata describe one file.
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        a.is_file() && b.is_file()
    }
}

/// How many names a file has.
fn links(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::nlink(meta)
    }
    // Elsewhere a restore never links a partial file into place while it keeps its name open.
    #[cfg(not(unix))]
    {
        let _ = meta;
        1
    }
}

/// Brings the image's bytes into `file` (the partial file), resuming what is there, and
/// verifies them.
async fn download(
    ctx: &Ctx<'_>,
    job: &Job,
    partial: &Path,
    file: &mut tokio::fs::File,
) -> Result<(), FetchError> {
    let what = || format!("cannot write {}", partial.display());
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
            let before = have;
            match receive(ctx, job, file, &mut hasher, &mut have).await {
                Ok(()) => {}
                Err(FetchError::Client(e)) if e.is_transient() => {
                    // Only attempts in a row that brought nothing count.
                    attempt = if have > before { 1 } else { attempt + 1 };
                    if attempt >= ATTEMPTS {
                        let _ = file.flush().await;
                        return Err(FetchError::Client(e));
                    }
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
        let got = hasher.finalize();
        if have == total && *got.as_bytes() == job.digest.0 {
            return Ok(());
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
        return Err(FetchError::Mismatch {
            got: format!("{have} bytes hashing to {}", got.to_hex()),
        });
    }
}

/// Makes the verified bytes durable, with the image's modification time.
async fn finish(job: &Job, file: &mut tokio::fs::File) -> Result<(), FetchError> {
    let what = || "cannot finish the download".to_owned();
    file.flush().await.map_err(io_error(what))?;
    let std_file = file
        .try_clone()
        .await
        .map_err(io_error(what))?
        .into_std()
        .await;
    let mtime = job
        .image
        .mtime
        .and_then(|t| u64::try_from(t).ok())
        .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t));
    tokio::task::spawn_blocking(move || {
        if let Some(t) = mtime {
            std_file.set_modified(t)?;
        }
        std_file.sync_all()
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
    file: &mut tokio::fs::File,
    hasher: &mut blake3::Hasher,
    have: &mut u64,
) -> Result<(), FetchError> {
    let what = || "cannot write the partial file".to_owned();
    let total = job.image.bytes;
    // Paused: no request is left hanging open until it times out.
    ctx.control.wait_while_paused().await;
    if ctx.halted() {
        return Err(FetchError::Interrupted);
    }
    let response = ctx.engine.client().download(job.image.id, *have).await?;
    if response.status().as_u16() == 206 {
        // The part must start where the partial file ends, or the bytes would be misplaced.
        let start = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.parse::<u64>().ok());
        if start != Some(*have) {
            return Err(ClientError::Protocol(format!(
                "asked for bytes from {}, got a range starting at {start:?}",
                *have
            ))
            .into());
        }
    } else if *have > 0 {
        // The server sent the whole file: start again from its first byte.
        *hasher = blake3::Hasher::new();
        *have = 0;
        file.set_len(0).await.map_err(io_error(what))?;
        file.seek(io::SeekFrom::Start(0))
            .await
            .map_err(io_error(what))?;
    }
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
                image: job.image.id,
                path: ctx.to.join(&job.place),
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
/// Once the bytes are at `place`, what is left to tidy (the partial name, syncing the folder)
/// cannot fail the file: it is restored.
async fn publish(partial: &Path, place: &Path) -> io::Result<()> {
    let (partial, place) = (partial.to_path_buf(), place.to_path_buf());
    tokio::task::spawn_blocking(move || {
        match std::fs::hard_link(&partial, &place) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
            // File systems without hard links (FAT, exFAT, some shares): a copy into a file
            // made new for it (refused if the name was taken meanwhile), then synced.
            Err(e) => {
                tracing::debug!(error = %e, "no hard link; copying into place");
                copy_new(&partial, &place)?;
            }
        }
        if let Err(e) = std::fs::remove_file(&partial) {
            tracing::warn!(path = %partial.display(), error = %e, "partial file not removed");
        }
        #[cfg(unix)]
        if let Some(dir) = place.parent() {
            if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
                tracing::warn!(folder = %dir.display(), error = %e, "folder not synced");
            }
        }
        Ok(())
    })
    .await
    .map_err(io::Error::other)?
}

fn copy_new(from: &Path, to: &Path) -> io::Result<()> {
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    let copied = (|| {
        let mut source = std::fs::File::open(from)?;
        io::copy(&mut source, &mut target)?;
        target.set_modified(source.metadata()?.modified()?)?;
        target.sync_all()
    })();
    if copied.is_err() {
        let _ = std::fs::remove_file(to);
    }
    copied
}
