//! The sync engine: keeps photo folders backed up to a Photosync server.
//!
//! For every file, in this order: identify it (or reuse what the file table knew, when size and
//! mtime are unchanged); look it up in the local sync list; ask the server about the rest in
//! batched detection requests; upload what the server lacks in parts sized from the measured
//! rate; write the sync list only after the server's success response. Progress is a stream of
//! typed [`Event`]s. The engine knows nothing of tauri, axum or JSON.

pub mod client;
pub mod restore;
pub mod state;
mod sync;
mod throttle;
mod upload;
mod watch;

pub use client::{
    Client, ClientError, Connection, Created, ErrorKind, ImageFilter, ServerConfig, Unreachable,
};
pub use photosync_events::{Event, EventSink, OnServer, RestoreEvent, Restored};
pub use restore::{RestoreOptions, RestoreSummary};
pub use state::{MatchRecord, State};
pub use sync::{Control, Engine, EngineError, Kinds, Options, Stages, Summary};
pub use throttle::Throttle;
pub use watch::WatchOptions;
