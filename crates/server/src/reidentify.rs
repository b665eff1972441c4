//! Images recorded before the server kept verification evidence (schema 3) are identified
//! again from their blobs, in the background, one per free identification slot. Until then
//! their old identifiers are not indexed, so detection answers "absent" for them: the safe
//! answer, since the client then uploads, and the digest still finds the same bytes.

use std::time::Duration;

use crate::tus::{identified, identify_blob};
use crate::AppState;

const BATCH: u32 = 32;

/// Identifies every image that lacks evidence; returns how many were done. An image whose
/// blob cannot be read now (a disk error, shutdown) keeps no evidence and is tried again on
/// the next pass; the pass goes on past it.
pub async fn reidentify(state: &AppState) -> Result<usize, crate::StoreError> {
    let (mut done, mut after) = (0, 0);
    loop {
        let batch = state.store.images_without_evidence(after, BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(done);
        };
        after = last.row;
        let mut users = Vec::new();
        for image in batch {
            let identity = match identify_blob(state, &image.digest, image.bytes).await {
                Ok(identity) => identified(identity),
                Err(e) => {
                    tracing::warn!(image = image.number, digest = %image.digest, error = ?e,
                        "stored image not identified again; tried again later");
                    continue;
                }
            };
            state
                .store
                .set_identity(image.user, image.number, &identity)
                .await?;
            users.push(image.user);
            done += 1;
        }
        // Their index was built from the old identifiers: built again on the next detection.
        users.dedup();
        for user in users {
            state.index.forget(user).await;
        }
    }
}

/// Runs [`reidentify`] at start, and again every 10 minutes for rows another instance or an
/// older build may have written meanwhile.
pub fn spawn_reidentifier(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            match reidentify(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(images = n, "stored images identified again"),
                Err(e) => tracing::warn!(error = %e, "identifying stored images again failed"),
            }
        }
    })
}
