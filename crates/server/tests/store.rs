//! The metadata store's contract: one suite, run against the embedded SQLite store and the
//! PostgreSQL store alike. PostgreSQL is a real throwaway cluster started by this test binary
//! (from the distribution's packages), with a fresh database per test.
//!
//! Besides each operation's answers, the suite checks what a store shared by several server
//! instances must hold under concurrent callers: limits are never passed by two creations at
//! once, one lease holder at a time, one image for two completions of the same bytes, and no
//! blob doomed while an upload is being tied to it.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, OnceLock};

use photosync_server::store::{
    Creation, Identified, ImageQuery, LimitError, NewImage, Store, StoreError, Upload,
    UploadLimits, UserId,
};
use photosync_server::{PostgresStore, SqliteStore};
use photosync_testkit::postgres::Postgres;

const NO_LIMITS: UploadLimits = UploadLimits {
    max_unfinished: 1000,
    max_unfinished_bytes: u64::MAX / 4,
};

fn cluster() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(|| Postgres::start().expect("a throwaway PostgreSQL cluster"))
}

/// A store and what must live as long as it.
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("photosync.db")).unwrap();
    Backend {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

async fn postgres() -> Backend {
    let url = cluster().new_database().unwrap();
    let store = PostgresStore::open(&url).await.unwrap();
    Backend {
        store: Arc::new(store),
        _dir: None,
    }
}

/// Each contract test, once per backend.
macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod sqlite_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let b = super::sqlite().await;
                    super::$test(b.store.clone()).await;
                }
            )*
        }
        mod postgres_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let b = super::postgres().await;
                    super::$test(b.store.clone()).await;
                }
            )*
        }
    };
}

contract!(
    users_are_unique_and_their_ids_never_reused,
    limits_and_quotas_refuse_what_would_pass_them,
    concurrent_creations_never_pass_a_limit_together,
    a_declared_digest_joins_or_finds_what_is_there,
    one_lease_holder_at_a_time_until_it_lapses,
    concurrent_lease_takers_get_one_lease,
    offsets_advance_only_for_the_holder_from_the_stored_offset,
    completion_needs_verified_bytes_and_numbers_images_per_user,
    concurrent_completions_of_the_same_bytes_make_one_image,
    blobs_nothing_references_are_doomed_and_held_until_forgotten,
    collectors_running_together_never_claim_one_blob,
    no_blob_is_doomed_while_an_upload_is_verified_against_it,
    lists_filter_by_day_and_name_and_page_by_number,
    lookups_answer_in_the_order_asked_and_only_for_the_owner,
    identities_are_set_again_and_feed_the_index,
    removing_a_user_removes_their_uploads_and_images,
    expired_uploads_are_found_and_deleted,
);

const T0: i64 = 1_700_000_000;

fn new_upload(id: &str, user: UserId, length: u64, declared: Option<&str>) -> Upload {
    Upload {
        id: id.to_owned(),
        user_id: user,
        length,
        offset: 0,
        metadata: format!("filename {id}"),
        name: format!("{id}.jpg"),
        name_bytes: Some(format!("{id}.jpg").into_bytes()),
        declared: declared.map(str::to_owned),
        verified: None,
        mtime: Some(T0 - 86_400),
        created_at: T0,
        expires_at: T0 + 3600,
        image_id: None,
    }
}

fn new_image(user: UserId, digest: &str, name: &str, bytes: u64) -> NewImage {
    NewImage {
        user_id: user,
        digest: digest.to_owned(),
        identifier: None,
        name: name.to_owned(),
        name_bytes: None,
        bytes,
        width: Some(4000),
        height: Some(3000),
        format: Some("jpeg".into()),
        mtime: Some(T0 - 86_400),
        uploaded_at: T0,
        evidence: Some("none".into()),
        folder: Some("2024/summer".into()),
        taken: None,
    }
}

fn digest(n: u32) -> String {
    format!("{:064x}", n)
}

async fn user(store: &Arc<dyn Store>, name: &str) -> UserId {
    store
        .create_user(name, &format!("hash-of-{name}"), T0, None)
        .await
        .unwrap()
}

/// Sends an upload in full and verifies it, as the tus handler does; returns its id.
async fn verified(store: &Arc<dyn Store>, user: UserId, id: &str, d: &str, len: u64) -> String {
    store
        .create_upload(&new_upload(id, user, len, Some(d)), &NO_LIMITS)
        .await
        .unwrap();
    assert!(store.lock_upload(id, "h", 0, i64::MAX).await.unwrap());
    store
        .advance_upload(id, "h", 0, len, T0 + 3600)
        .await
        .unwrap();
    store.verify_upload(id, "h", d).await.unwrap();
    id.to_owned()
}

/// An image of `d`, stored through a whole upload.
async fn stored(store: &Arc<dyn Store>, user: UserId, id: &str, d: &str, len: u64) -> i64 {
    verified(store, user, id, d, len).await;
    let info = store
        .complete_upload(id, &new_image(user, d, &format!("{id}.jpg"), len))
        .await
        .unwrap();
    store.unlock_upload(id, "h").await.unwrap();
    info.id
}

async fn users_are_unique_and_their_ids_never_reused(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    assert_ne!(alice, bob);
    assert!(matches!(
        store.create_user("alice", "another-hash", T0, None).await,
        Err(StoreError::UserExists(n)) if n == "alice"
    ));
    // A token is one user's.
    assert!(store
        .create_user("carol", "hash-of-bob", T0, None)
        .await
        .is_err());
    assert_eq!(
        store.user_by_token_hash("hash-of-bob").await.unwrap(),
        Some((bob, "hash-of-bob".to_owned()))
    );
    assert_eq!(store.user_by_token_hash("nobody").await.unwrap(), None);

    stored(&store, alice, "a1", &digest(1), 1000).await;
    store.set_quota("alice", Some(5000)).await.unwrap();
    assert!(matches!(
        store.set_quota("nobody", None).await,
        Err(StoreError::NoSuchUser(_))
    ));
    let users = store.list_users().await.unwrap();
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!((users[0].images, users[0].bytes), (1, 1000));
    assert_eq!(users[0].quota, Some(5000));
    assert_eq!(
        (users[1].images, users[1].bytes, users[1].quota),
        (0, 0, None)
    );
    assert_eq!(store.account(alice).await.unwrap().unwrap().images, 1);

    let removed = store.remove_user("alice").await.unwrap().unwrap();
    assert_eq!(removed.id, alice);
    assert_eq!(store.remove_user("alice").await.unwrap(), None);
    assert_eq!(store.account(alice).await.unwrap(), None);
    assert_eq!(
        store.user_by_token_hash("hash-of-alice").await.unwrap(),
        None
    );
    // A new user never gets a removed user's id, not even under the same name.
    let again = user(&store, "alice").await;
    assert!(
        again > bob && again != alice,
        "{again} after {alice}, {bob}"
    );
}

async fn limits_and_quotas_refuse_what_would_pass_them(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    let two = UploadLimits {
        max_unfinished: 2,
        max_unfinished_bytes: 1000,
    };
    store
        .create_upload(&new_upload("01", u, 400, None), &two)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_upload(&new_upload("02", u, 700, None), &two)
            .await,
        Err(StoreError::Limit(LimitError::UnfinishedBytes {
            would: 1100,
            max: 1000
        }))
    ));
    store
        .create_upload(&new_upload("03", u, 600, None), &two)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_upload(&new_upload("04", u, 1, None), &two)
            .await,
        Err(StoreError::Limit(LimitError::TooManyUploads {
            held: 2,
            max: 2
        }))
    ));
    // Another user's uploads do not count.
    let v = user(&store, "v").await;
    store
        .create_upload(&new_upload("05", v, 1000, None), &two)
        .await
        .unwrap();

    // The quota counts stored images and unfinished uploads.
    store.delete_upload("01").await.unwrap();
    store.delete_upload("03").await.unwrap();
    stored(&store, u, "06", &digest(6), 3000).await;
    store.set_quota("u", Some(4000)).await.unwrap();
    store
        .create_upload(&new_upload("07", u, 600, None), &NO_LIMITS)
        .await
        .unwrap();
    match store
        .create_upload(&new_upload("08", u, 500, None), &NO_LIMITS)
        .await
    {
        Err(StoreError::Limit(LimitError::Quota {
            quota,
            used,
            wanted,
        })) => {
            assert_eq!((quota, used, wanted), (4000, 3600, 500));
        }
        other => panic!("{other:?}"),
    }
    store.set_quota("u", None).await.unwrap();
    store
        .create_upload(&new_upload("08", u, 500, None), &NO_LIMITS)
        .await
        .unwrap();
    // A removed user holds no uploads.
    store.remove_user("v").await.unwrap();
    assert!(store
        .create_upload(&new_upload("09", v, 1, None), &NO_LIMITS)
        .await
        .is_err());
}

async fn concurrent_creations_never_pass_a_limit_together(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    let five = UploadLimits {
        max_unfinished: 5,
        max_unfinished_bytes: u64::MAX / 4,
    };
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_upload(&new_upload(&format!("{i:02x}"), u, 10, None), &five)
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => created += 1,
            Err(StoreError::Limit(LimitError::TooManyUploads { .. })) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(created, 5);
    assert_eq!(store.upload_ids().await.unwrap().len(), 5);

    // Joining with a declared digest too: one upload however many ask at once.
    let d = digest(77);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, d) = (store.clone(), d.clone());
            tokio::spawn(async move {
                let up = new_upload(&format!("b{i:02x}"), u, 10, Some(&d));
                store.join_or_create_upload(&up, &NO_LIMITS, T0).await
            })
        })
        .collect();
    let mut made = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Creation::Created => made += 1,
            Creation::Joined(_) => {}
            Creation::Stored(u) => panic!("nothing is stored yet: {u:?}"),
        }
    }
    assert_eq!(made, 1);
}

async fn a_declared_digest_joins_or_finds_what_is_there(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    let d = digest(5);
    let first = new_upload("0a", u, 900, Some(&d));
    assert!(matches!(
        store
            .join_or_create_upload(&first, &NO_LIMITS, T0)
            .await
            .unwrap(),
        Creation::Created
    ));
    assert!(store.lock_upload("0a", "h", 0, 10).await.unwrap());
    store
        .advance_upload("0a", "h", 0, 300, T0 + 3600)
        .await
        .unwrap();
    // A second client of the same file is handed the first upload, furthest along, with the
    // time to live a new one would have.
    let second = Upload {
        expires_at: T0 + 7200,
        ..new_upload("0b", u, 900, Some(&d))
    };
    match store
        .join_or_create_upload(&second, &NO_LIMITS, T0)
        .await
        .unwrap()
    {
        Creation::Joined(up) => {
            assert_eq!(
                (up.id.as_str(), up.offset, up.expires_at),
                ("0a", 300, T0 + 7200)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.upload(u, "0a").await.unwrap().unwrap().expires_at,
        T0 + 7200
    );
    // Another length is another file; an expired upload is not joined.
    assert!(matches!(
        store
            .join_or_create_upload(&new_upload("0c", u, 901, Some(&d)), &NO_LIMITS, T0)
            .await
            .unwrap(),
        Creation::Created
    ));
    assert!(matches!(
        store
            .join_or_create_upload(&new_upload("0d", u, 900, Some(&d)), &NO_LIMITS, T0 + 9000)
            .await
            .unwrap(),
        Creation::Created
    ));

    // Once stored, a creation is answered with a finished upload naming the image, the same
    // one each time.
    let image = stored(&store, u, "0e", &digest(6), 50).await;
    let ids_before = store.upload_ids().await.unwrap().len();
    let again = new_upload("0f", u, 50, Some(&digest(6)));
    let Creation::Stored(done) = store
        .join_or_create_upload(&again, &NO_LIMITS, T0)
        .await
        .unwrap()
    else {
        panic!("stored")
    };
    assert_eq!((done.image_id, done.offset), (Some(image), 50));
    let Creation::Stored(same) = store
        .join_or_create_upload(&new_upload("10", u, 50, Some(&digest(6))), &NO_LIMITS, T0)
        .await
        .unwrap()
    else {
        panic!("stored")
    };
    assert_eq!(same.id, done.id);
    assert_eq!(store.upload_ids().await.unwrap().len(), ids_before);
    // Another user holding the same bytes has nothing to join.
    let v = user(&store, "v").await;
    assert!(matches!(
        store
            .join_or_create_upload(&new_upload("11", v, 50, Some(&digest(6))), &NO_LIMITS, T0)
            .await
            .unwrap(),
        Creation::Created
    ));
}

async fn one_lease_holder_at_a_time_until_it_lapses(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    store
        .create_upload(&new_upload("0a", u, 100, None), &NO_LIMITS)
        .await
        .unwrap();
    assert!(store.lock_upload("0a", "A", 1000, 2000).await.unwrap());
    assert!(!store.lock_upload("0a", "B", 1500, 2500).await.unwrap());
    assert!(store.renew_upload("0a", "A", 3000).await.unwrap());
    assert!(!store.renew_upload("0a", "B", 3000).await.unwrap());
    assert!(!store.lock_upload("0a", "B", 2999, 4000).await.unwrap());
    // Lapsed: B takes it, and A can neither renew nor write.
    assert!(store.lock_upload("0a", "B", 3001, 5000).await.unwrap());
    assert!(!store.renew_upload("0a", "A", 6000).await.unwrap());
    assert!(matches!(
        store.advance_upload("0a", "A", 0, 10, T0).await,
        Err(StoreError::UploadGone)
    ));
    // Only the holder unlocks.
    store.unlock_upload("0a", "A").await.unwrap();
    assert!(!store.lock_upload("0a", "C", 4000, 5000).await.unwrap());
    store.unlock_upload("0a", "B").await.unwrap();
    assert!(store.lock_upload("0a", "C", 4000, 5000).await.unwrap());
    assert!(!store.lock_upload("nope", "C", 4000, 5000).await.unwrap());
    assert_eq!(store.release_all_leases().await.unwrap(), 1);
    assert!(store.lock_upload("0a", "D", 4000, 5000).await.unwrap());
}

async fn concurrent_lease_takers_get_one_lease(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    for round in 0..10 {
        let id = format!("{round:02x}");
        store
            .create_upload(&new_upload(&id, u, 100, None), &NO_LIMITS)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|who| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    store
                        .lock_upload(&id, &format!("holder{who}"), 100, 10_000)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            won += usize::from(t.await.unwrap());
        }
        assert_eq!(won, 1, "round {round}");
    }
}

async fn offsets_advance_only_for_the_holder_from_the_stored_offset(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    let v = user(&store, "v").await;
    store
        .create_upload(&new_upload("0a", u, 100, None), &NO_LIMITS)
        .await
        .unwrap();
    assert!(matches!(
        store.advance_upload("0a", "h", 0, 10, T0).await,
        Err(StoreError::UploadGone)
    ));
    assert!(store.lock_upload("0a", "h", 0, 10).await.unwrap());
    store
        .advance_upload("0a", "h", 0, 40, T0 + 10)
        .await
        .unwrap();
    // A stale offset (a part that raced another) records nothing.
    assert!(matches!(
        store.advance_upload("0a", "h", 0, 50, T0).await,
        Err(StoreError::UploadGone)
    ));
    let up = store.upload(u, "0a").await.unwrap().unwrap();
    assert_eq!((up.offset, up.expires_at), (40, T0 + 10));
    // Nobody else's: another user sees no such upload.
    assert_eq!(store.upload(v, "0a").await.unwrap(), None);
    // Not all bytes: nothing to verify.
    assert!(matches!(
        store.verify_upload("0a", "h", &digest(1)).await,
        Err(StoreError::UploadGone)
    ));
    store.reset_upload("0a", "h").await.unwrap();
    assert_eq!(store.upload(u, "0a").await.unwrap().unwrap().offset, 0);
    assert!(matches!(
        store.reset_upload("0a", "other").await,
        Err(StoreError::UploadGone)
    ));
    store.delete_upload("0a").await.unwrap();
    assert!(matches!(
        store.advance_upload("0a", "h", 0, 10, T0).await,
        Err(StoreError::UploadGone)
    ));
}

async fn completion_needs_verified_bytes_and_numbers_images_per_user(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    let v = user(&store, "v").await;
    store
        .create_upload(&new_upload("0a", u, 10, None), &NO_LIMITS)
        .await
        .unwrap();
    assert!(matches!(
        store
            .complete_upload("0a", &new_image(u, &digest(1), "a.jpg", 10))
            .await,
        Err(StoreError::UploadGone)
    ));
    verified(&store, u, "0b", &digest(1), 10).await;
    // Verified to other bytes, or someone else's upload: not completed.
    assert!(matches!(
        store
            .complete_upload("0b", &new_image(u, &digest(2), "b.jpg", 10))
            .await,
        Err(StoreError::UploadGone)
    ));
    assert!(matches!(
        store
            .complete_upload("0b", &new_image(v, &digest(1), "b.jpg", 10))
            .await,
        Err(StoreError::UploadGone)
    ));
    let mut img = new_image(u, &digest(1), "b.jpg", 10);
    img.name_bytes = Some(b"b\xff.jpg".to_vec());
    img.taken = Some("2024-07-01T10:00:00".into());
    img.identifier = Some("id-1".into());
    let first = store.complete_upload("0b", &img).await.unwrap();
    assert_eq!(first.id, 1);
    assert_eq!(first.name, "b.jpg");
    assert_eq!(first.name_bytes.as_deref(), Some("b%FF.jpg"));
    assert_eq!((first.width, first.height), (Some(4000), Some(3000)));
    assert_eq!(first.folder.as_deref(), Some("2024/summer"));
    assert_eq!(first.taken.as_deref(), Some("2024-07-01T10:00:00"));
    assert_eq!(first.format.as_deref(), Some("jpeg"));
    assert_eq!(
        store.upload(u, "0b").await.unwrap().unwrap().image_id,
        Some(1)
    );
    // The same bytes again are the same image.
    verified(&store, u, "0c", &digest(1), 10).await;
    let again = store
        .complete_upload("0c", &new_image(u, &digest(1), "copy.jpg", 10))
        .await
        .unwrap();
    assert_eq!((again.id, again.name.as_str()), (1, "b.jpg"));
    assert_eq!(stored(&store, u, "0d", &digest(2), 10).await, 2);
    // Numbers are per user.
    assert_eq!(stored(&store, v, "0e", &digest(1), 10).await, 1);
    let (info, format) = store.image(u, 1).await.unwrap().unwrap();
    assert_eq!((info.digest, format.as_deref()), (digest(1), Some("jpeg")));
    assert_eq!(store.image(u, 3).await.unwrap(), None);
}

async fn concurrent_completions_of_the_same_bytes_make_one_image(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    for round in 0..6u32 {
        let d = digest(100 + round);
        let mut ids = Vec::new();
        for w in 0..4 {
            let id = format!("{round:02x}{w:02x}");
            store
                .create_upload(&new_upload(&id, u, 10, Some(&d)), &NO_LIMITS)
                .await
                .unwrap();
            assert!(store.lock_upload(&id, "h", 0, i64::MAX).await.unwrap());
            store.advance_upload(&id, "h", 0, 10, T0).await.unwrap();
            store.verify_upload(&id, "h", &d).await.unwrap();
            ids.push(id);
        }
        let tasks: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let (store, d) = (store.clone(), d.clone());
                tokio::spawn(async move {
                    store
                        .complete_upload(&id, &new_image(u, &d, &id, 10))
                        .await
                        .unwrap()
                        .id
                })
            })
            .collect();
        let mut numbers = Vec::new();
        for t in tasks {
            numbers.push(t.await.unwrap());
        }
        numbers.dedup();
        assert_eq!(numbers, [i64::from(round) + 1], "round {round}");
    }
    assert_eq!(store.account(u).await.unwrap().unwrap().images, 6);
}

/// Every doomed blob `collector` can claim now.
async fn claim_all(store: &Arc<dyn Store>, collector: &str, now: i64) -> Vec<String> {
    let mut claimed = Vec::new();
    while let Some(d) = store
        .claim_doomed_blob(collector, now, now - 3600)
        .await
        .unwrap()
    {
        claimed.push(d);
    }
    claimed
}

async fn blobs_nothing_references_are_doomed_and_held_until_forgotten(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    stored(&store, u, "0a", &digest(1), 10).await;
    verified(&store, u, "0b", &digest(2), 10).await;
    // An image's blob and a verified upload's blob are held.
    assert_eq!(store.doom_unreferenced_blobs().await.unwrap(), 0);
    assert!(claim_all(&store, "gc1", T0).await.is_empty());
    store.delete_upload("0b").await.unwrap();
    assert_eq!(store.doom_unreferenced_blobs().await.unwrap(), 1);
    assert_eq!(store.doom_unreferenced_blobs().await.unwrap(), 0);
    // Doomed: nothing may be tied to it until its bytes are gone and it is forgotten.
    store
        .create_upload(&new_upload("0c", u, 10, Some(&digest(2))), &NO_LIMITS)
        .await
        .unwrap();
    assert!(store.lock_upload("0c", "h", 0, i64::MAX).await.unwrap());
    store.advance_upload("0c", "h", 0, 10, T0).await.unwrap();
    let busy = || async {
        matches!(
            store.verify_upload("0c", "h", &digest(2)).await,
            Err(StoreError::BlobBusy)
        )
    };
    assert!(busy().await);
    // One claimant: another collector gets nothing while the claim stands, and cannot
    // forget the blob.
    assert_eq!(claim_all(&store, "gc1", T0).await, [digest(2)]);
    assert!(claim_all(&store, "gc2", T0 + 10).await.is_empty());
    store.forget_blob(&digest(2), "gc2").await.unwrap();
    assert!(busy().await);
    assert!(store.renew_claim(&digest(2), "gc1", T0 + 5).await.unwrap());
    assert!(!store.renew_claim(&digest(2), "gc2", T0 + 5).await.unwrap());
    // A claim whose collector stalled lapses, and another takes it over: the first, awake
    // again, learns it before it deletes anything.
    assert_eq!(claim_all(&store, "gc2", T0 + 3606).await, [digest(2)]);
    assert!(!store
        .renew_claim(&digest(2), "gc1", T0 + 3607)
        .await
        .unwrap());
    store.forget_blob(&digest(2), "gc1").await.unwrap();
    assert!(busy().await);
    store.forget_blob(&digest(2), "gc2").await.unwrap();
    store.verify_upload("0c", "h", &digest(2)).await.unwrap();
    // Forgetting a blob that is not doomed does nothing.
    store.forget_blob(&digest(1), "gc2").await.unwrap();
    assert_eq!(store.doom_unreferenced_blobs().await.unwrap(), 0);
    // A removed user's blobs become garbage, unless another user holds the same bytes.
    let v = user(&store, "v").await;
    stored(&store, v, "0d", &digest(1), 10).await;
    store.delete_upload("0c").await.unwrap();
    store.remove_user("u").await.unwrap();
    assert_eq!(store.doom_unreferenced_blobs().await.unwrap(), 1);
    assert_eq!(claim_all(&store, "gc3", T0).await, [digest(2)]);
}

async fn collectors_running_together_never_claim_one_blob(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    for n in 0..30u32 {
        let id = format!("{n:02x}");
        verified(&store, u, &id, &digest(500 + n), 10).await;
        store.delete_upload(&id).await.unwrap();
    }
    assert_eq!(store.doom_unreferenced_blobs().await.unwrap(), 30);
    let tasks: Vec<_> = (0..6)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move { claim_all(&store, &format!("gc{c}"), T0).await })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(
        (before, all.len()),
        (30, 30),
        "a blob claimed twice, or one missed"
    );
}

async fn no_blob_is_doomed_while_an_upload_is_verified_against_it(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    for round in 0..40u32 {
        let d = digest(1000 + round);
        // A blob that nothing references, not yet doomed.
        verified(&store, u, &format!("a{round:03x}"), &d, 10).await;
        store.delete_upload(&format!("a{round:03x}")).await.unwrap();
        let id = format!("b{round:03x}");
        store
            .create_upload(&new_upload(&id, u, 10, Some(&d)), &NO_LIMITS)
            .await
            .unwrap();
        assert!(store.lock_upload(&id, "h", 0, i64::MAX).await.unwrap());
        store.advance_upload(&id, "h", 0, 10, T0).await.unwrap();
        let verify = {
            let (store, id, d) = (store.clone(), id.clone(), d.clone());
            tokio::spawn(async move { store.verify_upload(&id, "h", &d).await })
        };
        let doom = {
            let store = store.clone();
            tokio::spawn(async move { store.doom_unreferenced_blobs().await.unwrap() })
        };
        let (verify, _) = (verify.await.unwrap(), doom.await.unwrap());
        store.doom_unreferenced_blobs().await.unwrap();
        let doomed = claim_all(&store, "check", T0).await;
        match verify {
            Ok(()) => assert!(!doomed.contains(&d), "round {round}: tied to a doomed blob"),
            // Doomed first; or, on PostgreSQL, the collector held its lock at that moment.
            Err(StoreError::BlobBusy) => {}
            Err(e) => panic!("round {round}: {e}"),
        }
        for gone in doomed {
            store.forget_blob(&gone, "check").await.unwrap();
        }
    }
}

async fn lists_filter_by_day_and_name_and_page_by_number(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    let names = [
        ("0a", "Beach 100%.JPG", Some("2024-07-01T09:00:00")),
        ("0b", "beach_2.jpg", Some("2024-07-01T23:59:59")),
        ("0c", "beachX2.jpg", Some("2024-07-02T00:00:00")),
        ("0d", "forest.jpg", None),
        ("0e", "back\\slash.jpg", Some("2023-12-31T12:00:00")),
    ];
    for (n, (id, name, taken)) in names.iter().enumerate() {
        let d = digest(n as u32 + 1);
        verified(&store, u, id, &d, 10).await;
        let mut img = new_image(u, &d, name, 10);
        img.taken = taken.map(str::to_owned);
        // No capture time: the day is the modification time's.
        img.mtime = Some(1_720_000_000); // 2024-07-03T09:46:40Z
        store.complete_upload(id, &img).await.unwrap();
    }
    let list = |q: ImageQuery| {
        let store = store.clone();
        async move {
            store
                .list_images(u, &q)
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.name)
                .collect::<Vec<_>>()
        }
    };
    let all = ImageQuery::first(100);
    assert_eq!(list(all.clone()).await.len(), 5);
    let page = list(ImageQuery {
        after: 2,
        limit: 2,
        ..all.clone()
    })
    .await;
    assert_eq!(page, ["beachX2.jpg", "forest.jpg"]);
    let day = |since: &str, until: &str| ImageQuery {
        since: Some(since.into()),
        until: Some(until.into()),
        ..all.clone()
    };
    assert_eq!(
        list(day("2024-07-01", "2024-07-01")).await,
        ["Beach 100%.JPG", "beach_2.jpg"]
    );
    assert_eq!(
        list(day("2024-07-02", "2024-07-03")).await,
        ["beachX2.jpg", "forest.jpg"]
    );
    assert_eq!(
        list(ImageQuery {
            until: Some("2023-12-31".into()),
            ..all.clone()
        })
        .await,
        ["back\\slash.jpg"]
    );
    let named = |text: &str| ImageQuery {
        name: Some(text.into()),
        ..all.clone()
    };
    // Case is ignored; `%`, `_` and `\` are taken literally.
    assert_eq!(
        list(named("BEACH")).await,
        ["Beach 100%.JPG", "beach_2.jpg", "beachX2.jpg"]
    );
    assert_eq!(list(named("_2")).await, ["beach_2.jpg"]);
    assert_eq!(list(named("100%")).await, ["Beach 100%.JPG"]);
    assert_eq!(list(named("\\s")).await, ["back\\slash.jpg"]);
    assert_eq!(list(named("nothing")).await, Vec::<String>::new());
    // Another user lists nothing of these.
    let v = user(&store, "v").await;
    assert!(store.list_images(v, &all).await.unwrap().is_empty());
}

async fn lookups_answer_in_the_order_asked_and_only_for_the_owner(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    let v = user(&store, "v").await;
    stored(&store, u, "0a", &digest(1), 10).await;
    stored(&store, u, "0b", &digest(2), 20).await;
    stored(&store, v, "0c", &digest(3), 30).await;
    let found = store
        .images_by_digest(u, &[digest(2), digest(3), digest(1), digest(2)])
        .await
        .unwrap();
    let ids: Vec<Option<i64>> = found.iter().map(|i| i.as_ref().map(|i| i.id)).collect();
    assert_eq!(ids, [Some(2), None, Some(1), Some(2)]);
    let found = store.images_by_id(u, &[2, 9, 1]).await.unwrap();
    let bytes: Vec<Option<u64>> = found.iter().map(|i| i.as_ref().map(|i| i.bytes)).collect();
    assert_eq!(bytes, [Some(20), None, Some(10)]);
    assert_eq!(store.images_by_id(v, &[2]).await.unwrap(), [None]);
    assert_eq!(
        store.evidence_by_id(u, &[1, 7]).await.unwrap(),
        [Some("none".to_owned()), None]
    );
    assert!(store.images_by_digest(u, &[]).await.unwrap().is_empty());
}

async fn identities_are_set_again_and_feed_the_index(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    for n in 1..=3u32 {
        let id = format!("{n:02x}");
        verified(&store, u, &id, &digest(n), 10).await;
        let mut img = new_image(u, &digest(n), "x.jpg", 10);
        img.evidence = None; // as recorded by an older server
        img.identifier = (n != 2).then(|| format!("ident-{n}"));
        store.complete_upload(&id, &img).await.unwrap();
    }
    let page = store.images_without_evidence(0, 2).await.unwrap();
    assert_eq!(page.iter().map(|r| r.number).collect::<Vec<_>>(), [1, 2]);
    let rest = store
        .images_without_evidence(page[1].row, 10)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|r| r.number).collect::<Vec<_>>(), [3]);
    assert_eq!(
        (rest[0].user, rest[0].bytes, rest[0].digest.clone()),
        (u, 10, digest(3))
    );
    assert_eq!(
        store.identifiers_since(u, 0).await.unwrap(),
        [(1, "ident-1".to_owned()), (3, "ident-3".to_owned())]
    );
    let identity = Identified {
        identifier: Some("ident-2b".into()),
        evidence: "e1;x".into(),
        width: Some(640),
        height: None,
        format: Some("png".into()),
        taken: Some("2020-02-02T02:02:02".into()),
    };
    store.set_identity(u, 2, &identity).await.unwrap();
    assert_eq!(
        store.identifiers_since(u, 1).await.unwrap(),
        [(2, "ident-2b".to_owned()), (3, "ident-3".to_owned())]
    );
    let info = store.images_by_id(u, &[2]).await.unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!((info.width, info.height), (Some(640), Some(3000)));
    assert_eq!(info.format.as_deref(), Some("png"));
    assert_eq!(info.taken.as_deref(), Some("2020-02-02T02:02:02"));
    let day = ImageQuery {
        since: Some("2020-02-02".into()),
        until: Some("2020-02-02".into()),
        ..ImageQuery::first(10)
    };
    assert_eq!(store.list_images(u, &day).await.unwrap().len(), 1);
    assert_eq!(
        store.evidence_by_id(u, &[2]).await.unwrap(),
        [Some("e1;x".to_owned())]
    );
    assert_eq!(store.images_without_evidence(0, 10).await.unwrap().len(), 2);
}

async fn removing_a_user_removes_their_uploads_and_images(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    let v = user(&store, "v").await;
    stored(&store, u, "0a", &digest(1), 10).await;
    store
        .create_upload(&new_upload("0b", u, 10, None), &NO_LIMITS)
        .await
        .unwrap();
    store
        .create_upload(&new_upload("0c", v, 10, None), &NO_LIMITS)
        .await
        .unwrap();
    let mut removed = store.remove_user("u").await.unwrap().unwrap();
    removed.uploads.sort();
    assert_eq!(removed.uploads, ["0a", "0b"]);
    assert_eq!(store.upload_ids().await.unwrap(), ["0c"]);
    assert_eq!(store.images_by_id(u, &[1]).await.unwrap(), [None]);
    assert!(matches!(
        store
            .complete_upload("0a", &new_image(u, &digest(1), "a", 10))
            .await,
        Err(StoreError::UploadGone)
    ));
}

async fn expired_uploads_are_found_and_deleted(store: Arc<dyn Store>) {
    let u = user(&store, "u").await;
    for (id, expires) in [("0a", T0 + 10), ("0b", T0 + 20), ("0c", T0 + 30)] {
        let up = Upload {
            expires_at: expires,
            ..new_upload(id, u, 10, None)
        };
        store.create_upload(&up, &NO_LIMITS).await.unwrap();
    }
    let mut expired = store.expired_uploads(T0 + 21).await.unwrap();
    expired.sort();
    assert_eq!(expired, ["0a", "0b"]);
    for id in expired {
        store.delete_upload(&id).await.unwrap();
    }
    assert_eq!(store.upload_ids().await.unwrap(), ["0c"]);
    assert!(store.expired_uploads(T0).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Schema versions

#[tokio::test]
async fn a_postgres_database_newer_than_this_server_is_refused_and_reopening_changes_nothing() {
    let url = cluster().new_database().unwrap();
    let store = PostgresStore::open(&url).await.unwrap();
    let u = store.create_user("u", "h", T0, None).await.unwrap();
    let version = store.schema_version().await.unwrap();
    assert_eq!(version, 2);
    drop(store);
    // Opened again (a restart, or a second instance): the data is kept, nothing re-applied.
    let again = PostgresStore::open(&url).await.unwrap();
    assert_eq!(again.user_by_token_hash("h").await.unwrap().unwrap().0, u);
    assert_eq!(again.schema_version().await.unwrap(), version);
    drop(again);
    let name = url.rsplit('/').next().unwrap();
    cluster()
        .sql(name, "UPDATE photosync_schema SET version = 999")
        .unwrap();
    let e = PostgresStore::open(&url).await.unwrap_err();
    assert!(e.to_string().contains("newer than this server"), "{e}");
}

/// What a database made by today's schema holds (the fixtures), read and added to.
async fn todays_data_is_kept(store: Arc<dyn Store>) {
    let carol = "c474d84e50a9920232dbb1016bcfc3cc14be33cfb53127100627bc3e331fa77c";
    let (id, _) = store.user_by_token_hash(carol).await.unwrap().unwrap();
    let images = store.list_images(id, &ImageQuery::first(10)).await.unwrap();
    let names: Vec<(&str, Option<&str>)> = images
        .iter()
        .map(|i| (i.name.as_str(), i.folder.as_deref()))
        .collect();
    assert_eq!(names, [("aqua.jpg", None), ("garden.jpg", Some("2024"))]);
    assert!(images.iter().all(|i| i.identifier.is_some()));
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 3);
    // Nothing is garbage: every blob is an image's.
    assert_eq!(store.doom_unreferenced_blobs().await.unwrap(), 0);
    assert!(claim_all(&store, "gc", T0).await.is_empty());
    // Numbers and ids go on from where they were.
    assert_eq!(stored(&store, id, "ab", &digest(1), 10).await, 3);
    assert!(user(&store, "dave").await > 3);
}

#[tokio::test]
async fn a_sqlite_database_of_todays_schema_opens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photosync.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(include_str!("schema-sqlite-v4.sql"))
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    // Version 4 is upgraded (to 5: the collector's claims).
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
    todays_data_is_kept(Arc::new(store)).await;
}

#[tokio::test]
async fn a_postgres_database_of_todays_schema_opens_with_its_data() {
    let url = cluster().new_database().unwrap();
    let name = url.rsplit('/').next().unwrap();
    cluster()
        .sql(name, include_str!("schema-postgres-v1.sql"))
        .unwrap();
    let store = PostgresStore::open(&url).await.unwrap();
    // Version 1 is upgraded (to 2: the collector's claims).
    assert_eq!(store.schema_version().await.unwrap(), 2);
    todays_data_is_kept(Arc::new(store)).await;
}

#[tokio::test]
async fn a_sqlite_database_newer_than_this_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photosync.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 999")
        .unwrap();
    let e = SqliteStore::open(&path).unwrap_err();
    assert!(e.to_string().contains("newer than this server"), "{e}");
}

#[tokio::test]
async fn two_instances_starting_together_upgrade_an_empty_database_once() {
    let url = cluster().new_database().unwrap();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::open(&url).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = PostgresStore::open(&format!("postgres://u@127.0.0.1:{port}/db"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Backend(_)), "{e}");
}
