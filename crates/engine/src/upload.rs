//! Uploading one file over tus: resume from the server's offset, parts sized from the measured
//! rate, a checksum on every part, retries with backoff and jitter.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use photosync_part_sizer::PartSizer;
use photosync_protocol::{meta, Metadata};

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

/// Reads `len` bytes at `offset`, refusing if the file changed since it was identified.
fn read_part(job: &Job, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let mut f = std::fs::File::open(&job.path).map_err(|e| format!("cannot read: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() != job.length || mtime_ns(&meta) != job.mtime_ns {
        return Err("the file changed while it was being uploaded; it will be read again".into());
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("cannot read: {e}"))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(buf)
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
        let size = ctx
            .sizer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_size()
            .min(job.length - offset);
        let part = {
            let job = job.clone();
            tokio::task::spawn_blocking(move || read_part(&job, offset, size))
                .await
                .map_err(|e| e.to_string())??
        };
        match ctx.client.send_part(&url, offset, part).await {
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
