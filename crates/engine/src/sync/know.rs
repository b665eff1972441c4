//! Knowing a file: from the file table when its size and mtime are unchanged, else by reading
//! it once (identified as a picture, or digested by its bytes).

use std::path::Path;

use photosync_identify::media::{classify, kind_by_name, HEAD_BYTES};
use photosync_identify::{identify_file, sniff_format, Digest, IdentifyError, Limits};

use super::Control;
use crate::state::{FileRecord, State};
use crate::upload::mtime_ns;
use photosync_events::{Event, EventSink};

/// The one skip made on purpose: an empty file holds nothing to back up.
pub(crate) const EMPTY_FILE: &str = "empty file (0 bytes)";
/// Why a file is left out by default.
pub(crate) const NOT_MEDIA: &str = "not a photo or video";

/// One file, known.
#[derive(Debug)]
pub(crate) enum Known {
    /// Unchanged since the file table learnt it, and its bytes are in the sync list: the
    /// server's image.
    Synced(i64),
    File(FileRecord),
    /// Read, but not identifiable as a picture (why): backed up by its bytes.
    Unidentified(FileRecord, String),
    /// Neither a photo, a video, a RAW file nor a sidecar, and only media is backed up.
    NotMedia,
    Empty,
    /// Could not be read (why): a failure, tried again later.
    Unreadable(String),
    /// Not read: the run was cancelled first.
    Interrupted,
}

fn unreadable(e: impl std::fmt::Display) -> Known {
    Known::Unreadable(format!("cannot read: {e}"))
}

/// What the file table already knows of an unchanged file, without reading it. `None`: the
/// file must be read.
pub(crate) fn known_unchanged(
    state: &State,
    path: &Path,
    server: &str,
    all_files: bool,
) -> Option<Known> {
    let meta = std::fs::metadata(path).ok()?;
    let (size, mtime) = (meta.len(), mtime_ns(&meta));
    if size == 0 {
        return Some(Known::Empty);
    }
    match state.file_and_synced(path, server) {
        // A file known by its bytes alone may be a document an earlier build took in: unless
        // its name says media, its first bytes are looked at again.
        Ok(Some((rec, _)))
            if rec.identifier.is_none() && !all_files && !kind_by_name(path).is_media() =>
        {
            None
        }
        Ok(Some((rec, synced))) if rec.size == size && rec.mtime_ns == mtime => {
            Some(match synced {
                Some(remote_id) => Known::Synced(remote_id),
                None => Known::File(rec),
            })
        }
        _ => None,
    }
}

/// Lowers the calling thread's CPU priority (nice 10), so a big first scan leaves the computer
/// usable. On Linux the nice value is per thread; the blocking pool's threads keep it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn background_priority() {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    DONE.with(|done| {
        if !done.replace(true) {
            // SAFETY: setpriority has no memory effects; `who = 0` is the calling thread.
            let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            if r != 0 {
                tracing::debug!("could not lower the identification thread's priority");
            }
        }
    });
}

#[cfg(not(target_os = "linux"))]
fn background_priority() {}

/// A file read that stops with an error once the run is cancelled, so a stop does not wait for
/// a large video to be hashed to its end.
struct UnlessCancelled<'a, R> {
    inner: R,
    control: &'a Control,
}

impl<R: std::io::Read> std::io::Read for UnlessCancelled<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.control.is_cancelled() {
            return Err(std::io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}

/// Reads `path` once: what it is, its digest, and its picture identity when it has one. The
/// file table learns the result.
pub(crate) fn know(
    state: &State,
    path: &Path,
    events: &EventSink,
    control: &Control,
    all_files: bool,
) -> Known {
    background_priority();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return unreadable(e),
    };
    let (size, mtime) = (meta.len(), mtime_ns(&meta));
    if size == 0 {
        return Known::Empty;
    }
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return unreadable(e),
    };
    // The first bytes say what the file is; anything but an image (videos...) is backed up
    // by its digest alone, read once as a stream, however large.
    let mut head = Vec::with_capacity(HEAD_BYTES);
    if let Err(e) = std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut file, HEAD_BYTES as u64),
        &mut head,
    ) {
        return unreadable(e);
    }
    if !all_files && !classify(path, &head).is_media() {
        return Known::NotMedia;
    }
    events(Event::Identifying {
        path: path.to_path_buf(),
    });
    let identified = match sniff_format(&head) {
        Err(IdentifyError::NotAnImage | IdentifyError::Unsupported(_)) => None,
        _ => Some(identify_file(path, &Limits::default())),
    };
    let (rec, unidentified) = match identified {
        Some(Ok(id)) => (
            FileRecord {
                size,
                mtime_ns: mtime,
                digest: id.digest,
                identifier: Some(id.identifier),
                pixels: Some(id.pixels()),
                evidence: Some(Box::new(id.evidence)),
            },
            None,
        ),
        Some(Err(IdentifyError::Io(e))) => return unreadable(e),
        // Emptied since it was looked at.
        Some(Err(IdentifyError::Empty)) => return Known::Empty,
        // Corrupt, truncated, too large to decode: a photo all the same, and the one a person
        // can least afford to lose. Its bytes are what is backed up.
        Some(Err(e)) => match digest_of(&mut file, &[], control) {
            Ok(digest) => (bytes_only(size, mtime, digest), Some(e.to_string())),
            Err(e) => return e.into(),
        },
        None => match digest_of(&mut file, &head, control) {
            Ok(digest) => (bytes_only(size, mtime, digest), None),
            Err(e) => return e.into(),
        },
    };
    if let Err(e) = state.put_file(path, &rec) {
        tracing::warn!(error = %e, "file table not updated");
    }
    match unidentified {
        Some(reason) => Known::Unidentified(rec, reason),
        None => Known::File(rec),
    }
}

/// A file known by its bytes alone, with no picture identity.
fn bytes_only(size: u64, mtime_ns: i64, digest: Digest) -> FileRecord {
    FileRecord {
        size,
        mtime_ns,
        digest,
        identifier: None,
        pixels: None,
        evidence: None,
    }
}

/// Why a file's digest could not be had.
enum NotRead {
    Cancelled,
    Unreadable(std::io::Error),
}

impl From<NotRead> for Known {
    fn from(e: NotRead) -> Known {
        match e {
            NotRead::Cancelled => Known::Interrupted,
            NotRead::Unreadable(e) => unreadable(e),
        }
    }
}

/// The BLAKE3 of `head` followed by the rest of `file` from where it stands (from its start
/// when `head` is empty), read as a stream however large.
fn digest_of(file: &mut std::fs::File, head: &[u8], control: &Control) -> Result<Digest, NotRead> {
    if head.is_empty() {
        std::io::Seek::rewind(file).map_err(NotRead::Unreadable)?;
    }
    let mut h = blake3::Hasher::new();
    h.update(head);
    let reader = UnlessCancelled {
        inner: file,
        control,
    };
    match h.update_reader(reader) {
        Ok(_) => Ok(Digest(*h.finalize().as_bytes())),
        Err(_) if control.is_cancelled() => Err(NotRead::Cancelled),
        Err(e) => Err(NotRead::Unreadable(e)),
    }
}
