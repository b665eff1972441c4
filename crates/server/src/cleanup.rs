//! Removing what nothing needs any more: expired uploads, part files whose upload is gone,
//! blobs no image references, and users. Jobs of the server and of the admin commands, not
//! answers to requests, so they have an error of their own.

use std::collections::HashSet;

use crate::store::StoreError;
use crate::{now, AppState};

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Removes one upload's bytes and record.
pub(crate) async fn expire(state: &AppState, id: &str) -> Result<(), CleanupError> {
    state.blobs.discard(id).await?;
    state.store.delete_upload(id).await?;
    tracing::info!(upload = %id, "expired upload removed");
    Ok(())
}

/// Removes expired uploads and part files whose upload is gone.
pub async fn sweep(state: &AppState) -> Result<(), CleanupError> {
    for id in state.store.expired_uploads(now()).await? {
        expire(state, &id).await?;
    }
    // Part files are made after their upload row, so a file without a row lost its upload.
    let parts = state.blobs.part_ids().await?;
    let live: HashSet<String> = state.store.upload_ids().await?.into_iter().collect();
    for id in parts.iter().filter(|id| !live.contains(*id)) {
        state.blobs.discard(id).await?;
        tracing::info!(upload = %id, "orphaned part file removed");
    }
    Ok(())
}

/// A collector's claim on a doomed blob lapses after this: it died between claiming and
/// forgetting. Deleting one blob takes far less.
const CLAIM_LAPSES_AFTER: i64 = 3600;
/// The longest one blob's deletion may take: far within the lapse, so a claim never lapses
/// while its collector still deletes.
const DELETE_WITHIN: std::time::Duration = std::time::Duration::from_secs(300);

/// Deletes blobs no image and no verified upload references. A blob is first marked doomed in
/// the store, which stops new references to it; then one collector claims it, deletes its
/// bytes and forgets its row. Several collectors (instances, `user remove`) may run at once;
/// each blob has one claimant. A crash between the steps leaves it doomed and claimed, and a
/// run after the claim lapses finishes the job.
pub async fn collect_garbage(state: &AppState) -> Result<(), CleanupError> {
    let collector = crate::tus::random_hex::<8>();
    state.store.doom_unreferenced_blobs().await?;
    let mut failed = None;
    while let Some(digest) = state
        .store
        .claim_doomed_blob(&collector, now(), now() - CLAIM_LAPSES_AFTER)
        .await?
    {
        // Still ours right now (this collector may have stalled past the lapse), and the
        // delete bounded well within it.
        if !state.store.renew_claim(&digest, &collector, now()).await? {
            continue;
        }
        let deleted = tokio::time::timeout(DELETE_WITHIN, state.blobs.delete_blob(&digest)).await;
        match deleted {
            Ok(Ok(())) => {
                state.store.forget_blob(&digest, &collector).await?;
                tracing::info!(blob = %digest, "unreferenced blob deleted");
            }
            // Left claimed; another pass takes it once the claim lapses. The others go on.
            Ok(Err(e)) => {
                tracing::warn!(blob = %digest, error = %e, "deleting an unreferenced blob failed");
                failed = Some(CleanupError::Io(e));
            }
            Err(_) => {
                tracing::warn!(blob = %digest, "deleting an unreferenced blob timed out");
                failed = Some(CleanupError::Io(std::io::ErrorKind::TimedOut.into()));
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Removes a user with their images and unfinished uploads, then their blobs that no other
/// user holds. A request of theirs still running ends with 404 and stores nothing. False if
/// there is no such user.
pub async fn remove_user(state: &AppState, name: &str) -> Result<bool, CleanupError> {
    let Some(removed) = state.store.remove_user(name).await? else {
        return Ok(false);
    };
    state.index.forget(removed.id).await;
    for id in &removed.uploads {
        if let Err(e) = state.blobs.discard(id).await {
            tracing::warn!(upload = %id, error = %e, "discarding a removed user's upload failed");
        }
    }
    collect_garbage(state).await?;
    Ok(true)
}

/// Sweeps now and then, and collects unreferenced blobs at start and then less often (it
/// queries every blob), until the process ends.
pub fn spawn_sweeper(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.config.sweep_interval);
        let mut collected: Option<std::time::Instant> = None;
        loop {
            tick.tick().await;
            if let Err(e) = sweep(&state).await {
                tracing::warn!(error = %e, "sweeping failed");
            }
            if collected.is_none_or(|t| t.elapsed() >= state.config.gc_interval) {
                collected = Some(std::time::Instant::now());
                if let Err(e) = collect_garbage(&state).await {
                    tracing::warn!(error = %e, "collecting unreferenced blobs failed");
                }
            }
        }
    })
}
