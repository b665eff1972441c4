//! Uploading one file over tus: resume from the server's offset, parts sized from the measured
//! rate, a checksum on every part, retries with backoff and jitter.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use photosync_part_sizer::PartSizer;
use photosync_protocol::{meta, Metadata};
use tokio::io::AsyncReadExt as _;

use crate::client::Client;
use crate::events::{Event, EventSink};
use crate::state::{Pending, State};
use crate::sync::Control;

/// What is known about the file to upload.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub path: PathBuf,
    pub digest: String,
    pub length: u64,
    pub mtime_ns: i64,
    pub identifier: Option<String>,
}

impl Job {
    /// The upload of `path`, one of the local files holding `rec`.
    pub fn new(rec: &crate::state::FileRecord, path: &Path) -> Job {
        Job {
            path: path.to_path_buf(),
            digest: rec.digest.clone(),
            length: rec.size,
            mtime_ns: rec.mtime_ns,
            identifier: rec.identifier.clone(),
        }
    }
}

pub(crate) struct Ctx {
    pub client: Client,
    pub state: State,
    pub server_key: String,
    pub sizer: Arc<Mutex<PartSizer>>,
    pub events: EventSink,
    pub control: Arc<Control>,
    pub bandwidth_limit: Option<u64>,
    pub max_attempts: u32,
}

fn backoff(attempt: u32) -> Duration {
    let base = 0.5 * 2f64.powi(attempt.saturating_sub(1).min(6) as i32);
    let jitter = 0.5 + rand::random::<f64>();
    Duration::from_secs_f64((base * jitter).min(30.0))
}

pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Opens the file at `offset`, refusing if it changed since it was identified.
fn open_at(job: &Job, offset: u64) -> Result<std::fs::File, String> {
    let mut f = std::fs::File::open(&job.path).map_err(|e| format!("cannot read: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() != job.length || mtime_ns(&meta) != job.mtime_ns {
        return Err(CHANGED.into());
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(f)
}

const CHANGED: &str = "the file changed while it was being uploaded; it will be read again";

/// The part's bytes, read from the file while they are sent, so a part never sits in memory
/// whole. The server checks them against the checksum; a file changed in between is refused
/// there and read again here.
async fn body_of(job: &Job, offset: u64, len: u64) -> Result<reqwest::Body, String> {
    let j = job.clone();
    let f = tokio::task::spawn_blocking(move || open_at(&j, offset))
        .await
        .map_err(|e| e.to_string())??;
    let reader = tokio::fs::File::from_std(f).take(len);
    Ok(reqwest::Body::wrap_stream(
        tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10),
    ))
}

/// The checksum of the `len` bytes at `offset`, going on from `from`: a hasher that has
/// already taken the part's first bytes. The checksum goes in the request's headers, so it is
/// computed before the part is sent.
fn checksum(
    job: &Job,
    offset: u64,
    len: u64,
    from: blake3::Hasher,
) -> Result<blake3::Hash, String> {
    let mut h = from;
    let done = h.count();
    let f = open_at(job, offset + done)?;
    h.update_reader(f.take(len - done))
        .map_err(|e| format!("cannot read: {e}"))?;
    if h.count() != len {
        return Err(CHANGED.into());
    }
    Ok(h.finalize())
}

/// How often hashing ahead keeps the hasher's state.
const CHECKPOINT: u64 = 1 << 20;

/// Hashing of the file onward from where the next part starts, done while the part before it
/// is sent, so the link does not wait for the checksum. The next part's size is only known
/// once the part in flight is acknowledged, so the hasher's state is kept every
/// [`CHECKPOINT`] bytes; whatever size the sizer then picks, less than a checkpoint is left to
/// hash.
struct Ahead {
    offset: u64,
    limit: u64,
    /// Dropping it stops the hashing.
    states: tokio::sync::mpsc::UnboundedReceiver<blake3::Hasher>,
}

impl Ahead {
    /// Starts hashing up to `limit` bytes from `offset` on a blocking thread.
    fn start(job: &Job, offset: u64, limit: u64) -> Ahead {
        let (tx, states) = tokio::sync::mpsc::unbounded_channel();
        let job = job.clone();
        tokio::task::spawn_blocking(move || {
            // A read error ends the hashing early; the part's own checksum then reports it.
            let Ok(mut f) = open_at(&job, offset).map(|f| f.take(limit)) else {
                return;
            };
            let mut h = blake3::Hasher::new();
            let mut buf = vec![0u8; CHECKPOINT as usize];
            while !tx.is_closed() {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        h.update(&buf[..n]);
                        if (h.count().is_multiple_of(CHECKPOINT) || h.count() == limit)
                            && tx.send(h.clone()).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Ahead {
            offset,
            limit,
            states,
        }
    }

    /// The furthest state that has taken no more than the `len` bytes at `offset`: a fresh
    /// hasher if this hashing began elsewhere.
    async fn furthest(mut self, offset: u64, len: u64) -> blake3::Hasher {
        let mut from = blake3::Hasher::new();
        if offset == self.offset && len <= self.limit {
            loop {
                // States come at each checkpoint and at the limit.
                let next = ((from.count() / CHECKPOINT + 1) * CHECKPOINT).min(self.limit);
                if next > len || next == from.count() {
                    break;
                }
                match self.states.recv().await {
                    Some(h) if h.count() <= len => from = h,
                    _ => break,
                }
            }
        }
        from
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().replace(['/', '\\'], "_"))
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .unwrap_or_else(|| "upload".into())
}

/// Uploads `job`; returns the server's image id. The sync list is not touched here: the caller
/// records the image once this returns, i.e. after the server's success response.
pub(crate) async fn upload(ctx: &Ctx, job: &Job) -> Result<i64, String> {
    let err = |e: crate::state::StateError| e.to_string();
    let mut resume = None;
    if let Some(p) = ctx
        .state
        .pending(&ctx.server_key, &job.digest)
        .map_err(err)?
    {
        if p.length == job.length {
            match ctx.client.offset(&p.url).await {
                Ok((off, Some(id))) if off == job.length => return Ok(id),
                Ok((off, _)) => resume = Some((p.url, off)),
                Err(e) if matches!(e.status(), Some(404 | 410)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let (mut url, mut offset) = match resume {
        Some(r) => r,
        None => (create(ctx, job).await?, 0),
    };
    let mut attempts = 0;
    let mut ahead: Option<Ahead> = None;
    loop {
        ctx.control.wait_while_paused().await;
        if ctx.control.is_cancelled() {
            return Err("cancelled".into());
        }
        if offset >= job.length {
            // Every byte is in; the server names the image on HEAD.
            match ctx.client.offset(&url).await {
                Ok((_, Some(id))) => return Ok(id),
                Ok((off, None)) if off < job.length => {
                    offset = off;
                    continue;
                }
                Ok(_) => return Err("the server has every byte but no image".into()),
                Err(e) => return Err(e.to_string()),
            }
        }
        let (size, limit) = {
            let s = ctx.sizer.lock().unwrap_or_else(|p| p.into_inner());
            (s.next_size().min(job.length - offset), s.largest_next())
        };
        let from = match ahead.take() {
            Some(a) => a.furthest(offset, size).await,
            None => blake3::Hasher::new(),
        };
        let sum = {
            let job = job.clone();
            tokio::task::spawn_blocking(move || checksum(&job, offset, size, from))
                .await
                .map_err(|e| e.to_string())??
        };
        let next = offset + size;
        if next < job.length {
            ahead = Some(Ahead::start(job, next, limit.min(job.length - next)));
        }
        let body = body_of(job, offset, size).await?;
        match ctx.client.send_body(&url, offset, size, &sum, body).await {
            Ok(ack) => {
                attempts = 0;
                let sent = ack.offset.saturating_sub(offset);
                let (rate, next) = {
                    let mut s = ctx.sizer.lock().unwrap_or_else(|p| p.into_inner());
                    s.record(sent, ack.elapsed);
                    (s.rate().unwrap_or(0.0), s.next_size())
                };
                offset = ack.offset;
                save_pending(ctx, job, &url, offset)?;
                (ctx.events)(Event::Uploading {
                    path: job.path.clone(),
                    sent: offset,
                    total: job.length,
                    rate,
                    part_size: size,
                });
                ctx.state
                    .put_setting(&format!("part_size:{}", ctx.server_key), &next.to_string())
                    .map_err(err)?;
                if let Some(id) = ack.image_id {
                    return Ok(id);
                }
                if let Some(limit) = ctx.bandwidth_limit.filter(|l| *l > 0) {
                    let min_time = Duration::from_secs_f64(sent as f64 / limit as f64);
                    if let Some(rest) = min_time.checked_sub(ack.elapsed) {
                        tokio::time::sleep(rest).await;
                    }
                }
            }
            Err(e) if e.status() == Some(409) => {
                offset = ctx.client.offset(&url).await.map_err(|e| e.to_string())?.0;
            }
            Err(e) if matches!(e.status(), Some(404 | 410)) => {
                // The server dropped the upload (expired, removed): start a new one.
                tracing::info!(path = %job.path.display(), "upload gone on the server; starting again");
                url = create(ctx, job).await?;
                offset = 0;
            }
            Err(e) if e.status() == Some(422) => {
                let _ = ctx.state.drop_pending(&ctx.server_key, &job.digest);
                return Err(format!("the server refused the file: {e}"));
            }
            Err(e) if e.is_transient() || e.status() == Some(460) => {
                attempts += 1;
                ctx.sizer
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record_failure();
                if attempts > ctx.max_attempts {
                    return Err(format!("gave up after {attempts} attempts: {e}"));
                }
                let wait = backoff(attempts);
                (ctx.events)(Event::Failed {
                    path: job.path.clone(),
                    reason: e.to_string(),
                    next_retry: Some(SystemTime::now() + wait),
                });
                tokio::time::sleep(wait).await;
                match ctx.client.offset(&url).await {
                    Ok((_, Some(id))) => return Ok(id),
                    Ok((off, None)) => offset = off,
                    Err(e) if matches!(e.status(), Some(404 | 410)) => {
                        url = create(ctx, job).await?;
                        offset = 0;
                    }
                    Err(_) => {} // still unreachable: the next attempt waits longer
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn create(ctx: &Ctx, job: &Job) -> Result<String, String> {
    let mut m = Metadata::default();
    m.insert(meta::NAME, file_name(&job.path));
    m.insert(meta::DIGEST, job.digest.clone());
    m.insert(meta::SIZE, job.length.to_string());
    m.insert(meta::MTIME, (job.mtime_ns / 1_000_000_000).to_string());
    if let Some(id) = &job.identifier {
        m.insert(meta::IDENTIFIER, id.clone());
    }
    let mut attempts = 0;
    let url = loop {
        match ctx.client.create_upload(job.length, &m).await {
            Ok(url) => break url,
            Err(e) if e.is_transient() && attempts < ctx.max_attempts => {
                attempts += 1;
                tokio::time::sleep(backoff(attempts)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    save_pending(ctx, job, &url, 0)?;
    Ok(url)
}

/// Persists where the upload stands, so a restart resumes it.
fn save_pending(ctx: &Ctx, job: &Job, url: &str, offset: u64) -> Result<(), String> {
    ctx.state
        .put_pending(
            &ctx.server_key,
            &Pending {
                digest: job.digest.clone(),
                url: url.to_owned(),
                length: job.length,
                offset,
            },
        )
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_of(path: &Path) -> Job {
        let meta = std::fs::metadata(path).unwrap();
        Job {
            path: path.to_path_buf(),
            digest: String::new(),
            length: meta.len(),
            mtime_ns: mtime_ns(&meta),
            identifier: None,
        }
    }

    fn fresh() -> blake3::Hasher {
        blake3::Hasher::new()
    }

    #[test]
    fn a_part_checksum_covers_exactly_its_range_and_refuses_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let job = job_of(&path);
        assert_eq!(
            checksum(&job, 1000, 5000, fresh()).unwrap(),
            blake3::hash(&bytes[1000..6000])
        );
        assert_eq!(
            checksum(&job, 90_000, 10_000, fresh()).unwrap(),
            blake3::hash(&bytes[90_000..])
        );
        // Asked past the end: the file is not what was identified.
        assert_eq!(
            checksum(&job, 90_000, 10_001, fresh()).unwrap_err(),
            CHANGED
        );
        std::fs::write(&path, &bytes[..50_000]).unwrap();
        assert_eq!(checksum(&job, 0, 10, fresh()).unwrap_err(), CHANGED);
        assert_eq!(open_at(&job, 0).unwrap_err(), CHANGED);
        std::fs::remove_file(&path).unwrap();
        assert!(checksum(&job, 0, 10, fresh())
            .unwrap_err()
            .starts_with("cannot read"));
    }

    #[tokio::test]
    async fn hashing_ahead_serves_any_part_size_from_where_it_began() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let bytes: Vec<u8> = (0..(6u32 << 20)).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let job = job_of(&path);
        let at = 1000;
        let limit = 3 * CHECKPOINT + 5;
        for (len, kept) in [
            (10, 0),
            (CHECKPOINT, CHECKPOINT),
            (5 * CHECKPOINT / 2, 2 * CHECKPOINT),
            (limit, limit),
            (limit + 1, 0), // further than it hashed: from the start
        ] {
            let from = Ahead::start(&job, at, limit).furthest(at, len).await;
            assert_eq!(from.count(), kept, "part of {len}");
            let end = (at + len) as usize;
            assert_eq!(
                checksum(&job, at, len, from).unwrap(),
                blake3::hash(&bytes[at as usize..end])
            );
        }
        // Hashing that began elsewhere (the server answered another offset) is not used.
        let from = Ahead::start(&job, at, limit)
            .furthest(at + 1, CHECKPOINT)
            .await;
        assert_eq!(from.count(), 0);
        // A file changed meanwhile: nothing kept, and the part's checksum says so.
        let ahead = Ahead::start(&job, at, limit);
        std::fs::write(&path, &bytes[..1 << 20]).unwrap();
        let from = ahead.furthest(at, 2 * CHECKPOINT).await;
        assert_eq!(
            checksum(&job, at, 2 * CHECKPOINT, from).unwrap_err(),
            CHANGED
        );
    }
}
