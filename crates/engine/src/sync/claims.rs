//! Uploads under way in any pass of one engine, by digest. Passes overlap (watch mode's rounds,
//! a file dropped on the window, a retry, "sync now"); a pass that reaches a file another pass
//! is already sending waits for that upload's outcome instead of sending the bytes again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use photosync_identify::Digest;
use tokio::sync::watch;

use crate::upload::UploadError;

type Outcome = Option<Result<i64, UploadError>>;

#[derive(Default)]
pub(crate) struct Claims {
    /// The outcome channel of each upload under way, with its claim's number.
    under_way: Mutex<HashMap<Digest, (u64, watch::Receiver<Outcome>)>>,
    next: Mutex<u64>,
}

pub(crate) enum Claim {
    /// This pass sends the file.
    Mine(Held),
    /// Another pass is sending it: its outcome arrives here.
    Theirs(watch::Receiver<Outcome>),
}

/// The right to send one digest's bytes, given back when dropped.
pub(crate) struct Held {
    claims: Arc<Claims>,
    digest: Digest,
    number: u64,
    outcome: watch::Sender<Outcome>,
}

impl Held {
    pub fn finish(self, outcome: Result<i64, UploadError>) {
        self.outcome.send_replace(Some(outcome));
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self
            .claims
            .under_way
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map
            .get(&self.digest)
            .is_some_and(|(n, _)| *n == self.number)
        {
            map.remove(&self.digest);
        }
    }
}

impl Claims {
    pub fn claim(self: &Arc<Self>, digest: Digest) -> Claim {
        let mut map = self.under_way.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, rx)) = map.get(&digest) {
            return Claim::Theirs(rx.clone());
        }
        let number = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let (tx, rx) = watch::channel(None);
        map.insert(digest, (number, rx));
        Claim::Mine(Held {
            claims: self.clone(),
            digest,
            number,
            outcome: tx,
        })
    }
}

/// Waits for another pass's upload: its image, or `None` when it did not end with one (this
/// pass then sends the file itself).
pub(crate) async fn outcome_of(mut theirs: watch::Receiver<Outcome>) -> Option<i64> {
    match theirs.wait_for(Option::is_some).await {
        Ok(outcome) => match &*outcome {
            Some(Ok(id)) => Some(*id),
            _ => None,
        },
        // Given up without an outcome (its pass was stopped).
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first_upload_and_a_failed_one_is_claimed_again() {
        let claims = Arc::new(Claims::default());
        let d = Digest::of(b"d");
        let Claim::Mine(first) = claims.claim(d) else {
            panic!("the first claim sends")
        };
        let Claim::Theirs(waiting) = claims.claim(d) else {
            panic!("a second claim waits")
        };
        assert!(matches!(claims.claim(Digest::of(b"other")), Claim::Mine(_)));
        first.finish(Ok(7));
        assert_eq!(outcome_of(waiting).await, Some(7));
        // Given back: the next claim sends again.
        let Claim::Mine(again) = claims.claim(d) else {
            panic!("claimed again after the first ended")
        };
        let Claim::Theirs(waiting) = claims.claim(d) else {
            panic!("waits")
        };
        again.finish(Err(UploadError::Failed("server away".into())));
        assert_eq!(outcome_of(waiting).await, None, "a failure is not an image");
        let Claim::Mine(dropped) = claims.claim(d) else {
            panic!("a failed upload's digest is free")
        };
        let Claim::Theirs(waiting) = claims.claim(d) else {
            panic!("waits")
        };
        drop(dropped);
        assert_eq!(
            outcome_of(waiting).await,
            None,
            "stopped without an outcome"
        );
        assert!(matches!(claims.claim(d), Claim::Mine(_)));
    }
}
