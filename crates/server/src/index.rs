//! Per-user near-match index for detection, kept in step with the store.
//!
//! Each user's identifiers live in a [`MultiIndex`], built from the store on first use and
//! topped up with rows newer than the last one seen before every lookup, so images published
//! by another server instance are found too. A lookup only ever touches the asking user's index.

use std::collections::HashMap;
use std::sync::Arc;

use photosync_identify::{Distance, Identifier, MultiIndex};
use tokio::sync::{Mutex, RwLock};

use crate::store::{Result, Store, UserId};

#[derive(Debug, Default)]
struct UserIndex {
    last_id: i64,
    index: MultiIndex<i64>,
}

#[derive(Debug, Default)]
pub struct DetectIndex {
    users: Mutex<HashMap<UserId, Arc<RwLock<UserIndex>>>>,
}

impl DetectIndex {
    async fn user(&self, user: UserId) -> Arc<RwLock<UserIndex>> {
        self.users
            .lock()
            .await
            .entry(user)
            .or_insert_with(|| {
                Arc::new(RwLock::new(UserIndex {
                    last_id: 0,
                    index: MultiIndex::new(),
                }))
            })
            .clone()
    }

    /// Drops a removed user's index (their id is never given to anyone else).
    pub async fn forget(&self, user: UserId) {
        self.users.lock().await.remove(&user);
    }

    /// Brings the user's index up to date with the store.
    pub async fn refresh(&self, store: &dyn Store, user: UserId) -> Result<()> {
        let entry = self.user(user).await;
        let mut idx = entry.write().await;
        let rows = store.identifiers_since(user, idx.last_id).await?;
        if let Some((last, _)) = rows.last() {
            idx.last_id = *last;
        }
        let parsed = rows
            .into_iter()
            .filter_map(|(id, text)| match text.parse::<Identifier>() {
                Ok(identifier) => Some((identifier, id)),
                // Identifiers of another version cannot be compared; they only match by bytes.
                Err(e) => {
                    tracing::debug!(image = id, error = %e, "identifier not indexed");
                    None
                }
            });
        idx.index.extend(parsed);
        Ok(())
    }

    /// The same-picture candidates of `user` for each identifier, nearest first, at most
    /// `MAX_CANDIDATES` (the client's verification step decides among them).
    pub async fn candidates(
        &self,
        user: UserId,
        ids: &[Option<Identifier>],
    ) -> Vec<Vec<(i64, Distance)>> {
        let entry = self.user(user).await;
        let idx = entry.read().await;
        ids.iter()
            .map(|id| {
                let Some(id) = id.as_ref() else {
                    return Vec::new();
                };
                let mut found: Vec<(i64, Distance)> = idx
                    .index
                    .same_picture(id)
                    .into_iter()
                    .map(|(image, d)| (*image, d))
                    .collect();
                found.sort_by_key(|(image, d)| (d.total(), *image));
                found.truncate(MAX_CANDIDATES);
                found
            })
            .collect()
    }
}

/// Candidates per queried image: a burst of one scene can put several shots within the
/// identifier's bound of a file.
pub const MAX_CANDIDATES: usize = 4;
