//! The typed stream of per-file events the sync engine reports, and that the CLI, the desktop
//! app, the status board and the tests consume. A leaf: it depends on nothing, so a consumer of
//! events does not build the engine's HTTP client, database or decoders.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// How the server holds a picture the local file also shows.
#[derive(Debug, Clone, PartialEq)]
pub enum OnServer {
    /// The exact bytes.
    SameBytes { remote_id: i64, name: String },
    /// Another file of the same picture.
    SamePicture {
        remote_id: i64,
        name: String,
        distance: u32,
        /// Pixels of the server's copy and of the local file.
        remote_pixels: Option<u64>,
        local_pixels: Option<u64>,
        /// How the server's copy compares: the rule that decided.
        standing: Standing,
    },
}

/// How the server's copy of a picture compares with the local file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// At least as good in every way: pixels, class (RAW > lossless > lossy), compression.
    AtLeastAsGood,
    /// Worse in this way, so the local file goes up too.
    Worse(Worse),
}

/// The way a server's copy falls short of the local file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worse {
    /// Fewer pixels.
    Pixels,
    /// A lower class of file: lossy for a lossless file, anything but RAW for a RAW file.
    Class,
    /// The same pixels and class, compressed harder (a lower JPEG quality).
    Compression,
}

impl Worse {
    pub fn describe(self) -> &'static str {
        match self {
            Worse::Pixels => "fewer pixels",
            Worse::Class => "a lower class of file (RAW > lossless > lossy)",
            Worse::Compression => "harder compression (a lower JPEG quality)",
        }
    }
}

fn megapixels(p: Option<u64>) -> String {
    p.map_or_else(
        || "unknown size".into(),
        |p| format!("{:.1} MP", p as f64 / 1e6),
    )
}

impl OnServer {
    pub fn remote_id(&self) -> i64 {
        match self {
            OnServer::SameBytes { remote_id, .. } | OnServer::SamePicture { remote_id, .. } => {
                *remote_id
            }
        }
    }

    /// Why the file counts as on the server, in words a person can check.
    pub fn reason(&self) -> String {
        match self {
            OnServer::SameBytes { remote_id, name } => {
                format!("same bytes as {name} (server image {remote_id})")
            }
            OnServer::SamePicture {
                remote_id,
                name,
                distance,
                remote_pixels,
                local_pixels,
                standing,
            } => {
                let verdict = match standing {
                    Standing::AtLeastAsGood => "at least as good".to_owned(),
                    Standing::Worse(w) => format!("{}, so this file is uploaded", w.describe()),
                };
                format!(
                    "same picture as {name} (server image {remote_id}, distance {distance}); the \
                     server's copy is {} against {} here: {verdict}",
                    megapixels(*remote_pixels),
                    megapixels(*local_pixels)
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Discovered {
        path: PathBuf,
    },
    /// How far a walk has got: `found` files so far. `path` names the walk (its first folder)
    /// from its first event to its last, which says `done` (the total is known, or the walk
    /// was stopped). Overlapping passes walk at once, each under its own name.
    Walking {
        path: PathBuf,
        found: u64,
        done: bool,
    },
    Identifying {
        path: PathBuf,
    },
    /// The sync list already holds these bytes: nothing to ask the server.
    AlreadySynced {
        path: PathBuf,
        /// The server's image.
        remote_id: i64,
        /// Another local file with the same bytes, when there is one (a renamed or moved copy).
        same_as: Option<PathBuf>,
    },
    /// The server holds it; nothing will be uploaded.
    OnServer {
        path: PathBuf,
        how: OnServer,
    },
    Queued {
        path: PathBuf,
        bytes: u64,
        /// The server's copy of the same picture this file goes up beside: a worse one (the
        /// reason names the rule), or one the person asked to keep anyway.
        beside: Option<OnServer>,
    },
    Uploading {
        path: PathBuf,
        sent: u64,
        total: u64,
        /// Smoothed bytes per second.
        rate: f64,
        part_size: u64,
    },
    Uploaded {
        path: PathBuf,
        remote_id: i64,
    },
    /// The file looks like an image but could not be identified (corrupt, truncated, too many
    /// pixels, too large to decode): it is backed up by its bytes, as a video is, and copies of
    /// it are recognised by their bytes only.
    Unidentified {
        path: PathBuf,
        reason: String,
    },
    Skipped {
        path: PathBuf,
        reason: String,
        /// The file should be backed up but cannot be (unreadable, a corrupt image), as
        /// opposed to one left out on purpose (an empty file).
        problem: bool,
    },
    Failed {
        path: PathBuf,
        reason: String,
        next_retry: Option<SystemTime>,
    },
    /// A watched folder went away (a card or share unmounted, a folder deleted), or came back
    /// and is watched again.
    Folder {
        path: PathBuf,
        present: bool,
    },
}

impl Event {
    pub fn path(&self) -> &PathBuf {
        match self {
            Event::Discovered { path }
            | Event::Walking { path, .. }
            | Event::Identifying { path }
            | Event::AlreadySynced { path, .. }
            | Event::OnServer { path, .. }
            | Event::Queued { path, .. }
            | Event::Uploading { path, .. }
            | Event::Uploaded { path, .. }
            | Event::Unidentified { path, .. }
            | Event::Skipped { path, .. }
            | Event::Failed { path, .. }
            | Event::Folder { path, .. } => path,
        }
    }
}

/// What a restore reports as it goes. Paths are where the files land (or would have).
#[derive(Debug, Clone, PartialEq)]
pub enum RestoreEvent {
    /// The server's list is read: this many files and bytes to bring down or find in place.
    Planned {
        files: u64,
        bytes: u64,
    },
    /// Bytes of server image `image` are on this computer: `done` of `total` (a resumed file
    /// starts above 0). `path` is where it is meant to go.
    Receiving {
        image: i64,
        path: PathBuf,
        done: u64,
        total: u64,
    },
    /// One file is in place, at `path`.
    Restored {
        image: i64,
        path: PathBuf,
        bytes: u64,
        how: Restored,
    },
    /// The name was changed: made safe for this file system, or a different file had it.
    Renamed {
        path: PathBuf,
        why: String,
    },
    Failed {
        path: PathBuf,
        reason: String,
    },
}

/// How a restored file came to be in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// Downloaded, verified and moved into place.
    Written,
    /// A local file with the same bytes was there already, and is kept as it is.
    AlreadyThere,
}

/// Where events go: a plain callback, so shells and tests need no particular runtime.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;
