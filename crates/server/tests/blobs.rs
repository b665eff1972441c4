//! The blob store's contract: one suite, run against the local folder and an S3-compatible
//! bucket alike. The bucket is a real S3 server on loopback (moto, from PyPI, started by this
//! test binary), with its 5 MiB minimum part size left as it is, and a fresh prefix per test.

#![allow(clippy::unwrap_used)]

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use photosync_protocol::tus;
use photosync_server::blobs::Blobs;
use photosync_server::{
    token_hash, AppState, BlobStore, Config, Database, LocalBlobs, S3Blobs, S3Config,
};
use photosync_testkit::s3::Moto;
use tokio::io::AsyncReadExt;

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let moto = Moto::start().expect("moto's S3 server");
        moto.create_bucket("photos").unwrap();
        moto
    })
}

struct Backend {
    blobs: Arc<dyn Blobs>,
    _dir: Option<tempfile::TempDir>,
}

async fn folder() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    Backend {
        blobs: Arc::new(LocalBlobs::open(dir.path()).unwrap()),
        _dir: Some(dir),
    }
}

/// A fresh prefix in the test bucket.
fn bucket_config() -> S3Config {
    static N: AtomicUsize = AtomicUsize::new(0);
    let prefix = format!("test-{}", N.fetch_add(1, Ordering::SeqCst));
    S3Config {
        endpoint: Some(moto().endpoint()),
        region: Some("us-east-1".into()),
        credentials: Some(("test".into(), "test".into())),
        ..S3Config::new("photos", &prefix)
    }
}

async fn bucket() -> Backend {
    Backend {
        blobs: Arc::new(S3Blobs::open(&bucket_config()).unwrap()),
        _dir: None,
    }
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod folder {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let b = super::folder().await;
                    super::$test(b.blobs.clone()).await;
                }
            )*
        }
        mod bucket {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let b = super::bucket().await;
                    super::$test(b.blobs.clone()).await;
                }
            )*
        }
    };
}

contract!(
    parts_of_any_size_add_up_and_publish_as_one_blob,
    an_aborted_part_leaves_what_was_acknowledged,
    bytes_past_the_offset_are_dropped_and_missing_ones_said,
    discarded_uploads_leave_nothing,
    the_same_bytes_published_twice_at_once_are_one_blob,
    a_published_blob_is_never_replaced,
    a_large_blob_is_composed_from_small_parts,
    thumbnails_are_kept_beside_their_blob_and_go_with_it,
    reads_start_anywhere_and_missing_blobs_are_not_found,
);

/// Bytes that differ at every position, so a misplaced part shows.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Sends `bytes` as parts of the given sizes, each committed by its own writer, as PATCHes do.
async fn send(blobs: &Arc<dyn Blobs>, upload: &str, bytes: &[u8], sizes: &[usize]) {
    let mut at = 0;
    let mut i = 0;
    while at < bytes.len() {
        let n = sizes[i % sizes.len()].min(bytes.len() - at);
        let mut w = blobs.open_part(upload, at as u64).await.unwrap();
        // Within a part, writes come in pieces as the body arrives.
        for piece in bytes[at..at + n].chunks(70_000) {
            w.write(piece).await.unwrap();
        }
        w.commit().await.unwrap();
        at += n;
        i += 1;
    }
}

async fn read(blobs: &Arc<dyn Blobs>, digest: &str, from: u64) -> (u64, Vec<u8>) {
    let (len, mut r) = blobs.open(digest, from).await.unwrap();
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    (len, got)
}

async fn parts_of_any_size_add_up_and_publish_as_one_blob(blobs: Arc<dyn Blobs>) {
    let bytes = noise(300_000, 1);
    blobs.create_part("0a").await.unwrap();
    assert_eq!(blobs.part_ids().await.unwrap(), ["0a"]);
    // Tiny parts and odd sizes: nothing about S3's part minimum reaches the protocol.
    send(&blobs, "0a", &bytes, &[1, 7, 1000, 65_536, 3]).await;
    let mut w = blobs.open_part("0a", bytes.len() as u64).await.unwrap();
    let digest = w.digest().await.unwrap().to_hex().to_string();
    assert_eq!(digest, hex(&bytes));
    w.publish(&digest).await.unwrap();
    assert_eq!(read(&blobs, &digest, 0).await, (300_000, bytes));
    // Published: the upload's own bytes are gone.
    assert!(blobs.part_ids().await.unwrap().is_empty());
    let e = blobs.open_part("0a", 0).await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

async fn an_aborted_part_leaves_what_was_acknowledged(blobs: Arc<dyn Blobs>) {
    let bytes = noise(50_000, 2);
    blobs.create_part("0b").await.unwrap();
    send(&blobs, "0b", &bytes[..20_000], &[20_000]).await;
    let mut w = blobs.open_part("0b", 20_000).await.unwrap();
    w.write(&noise(9_000, 99)).await.unwrap();
    w.abort().await.unwrap();
    drop(w);
    send_from(&blobs, "0b", &bytes, 20_000).await;
    let mut w = blobs.open_part("0b", 50_000).await.unwrap();
    assert_eq!(w.digest().await.unwrap().to_hex().to_string(), hex(&bytes));
}

async fn send_from(blobs: &Arc<dyn Blobs>, upload: &str, bytes: &[u8], from: usize) {
    let mut w = blobs.open_part(upload, from as u64).await.unwrap();
    w.write(&bytes[from..]).await.unwrap();
    w.commit().await.unwrap();
}

async fn bytes_past_the_offset_are_dropped_and_missing_ones_said(blobs: Arc<dyn Blobs>) {
    let bytes = noise(40_000, 3);
    blobs.create_part("0c").await.unwrap();
    send(&blobs, "0c", &bytes[..30_000], &[10_000]).await;
    // The store acknowledged only 10,000 (the later parts' records were lost in a crash):
    // what lies past that is dropped, and the upload goes on from there.
    send_from(&blobs, "0c", &bytes, 10_000).await;
    let mut w = blobs.open_part("0c", 40_000).await.unwrap();
    assert_eq!(w.digest().await.unwrap().to_hex().to_string(), hex(&bytes));
    drop(w);
    // More acknowledged than stored: said, so the upload starts again.
    let e = blobs.open_part("0c", 40_001).await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    let e = blobs.open_part("ff", 0).await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
}

async fn discarded_uploads_leave_nothing(blobs: Arc<dyn Blobs>) {
    blobs.create_part("0d").await.unwrap();
    blobs.create_part("0e").await.unwrap();
    send(&blobs, "0d", &noise(5000, 4), &[1000]).await;
    blobs.discard("0d").await.unwrap();
    blobs.discard("0d").await.unwrap(); // twice is fine
    assert_eq!(blobs.part_ids().await.unwrap(), ["0e"]);
    let e = blobs.open_part("0d", 0).await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

async fn the_same_bytes_published_twice_at_once_are_one_blob(blobs: Arc<dyn Blobs>) {
    let bytes = noise(120_000, 5);
    let digest = hex(&bytes);
    for id in ["10", "11", "12"] {
        blobs.create_part(id).await.unwrap();
        send(&blobs, id, &bytes, &[50_000]).await;
    }
    let tasks: Vec<_> = ["10", "11", "12"]
        .into_iter()
        .map(|id| {
            let (blobs, digest) = (blobs.clone(), digest.clone());
            tokio::spawn(async move {
                let mut w = blobs.open_part(id, 120_000).await.unwrap();
                assert_eq!(w.digest().await.unwrap().to_hex().to_string(), digest);
                w.publish(&digest).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(read(&blobs, &digest, 0).await.1, bytes);
    assert!(blobs.part_ids().await.unwrap().is_empty());
}

/// Publishing is a write-once: bytes published under a name stay, whatever is published
/// under it later. (Real callers only publish verified bytes; here the second publish lies,
/// so a replacement would show.)
async fn a_published_blob_is_never_replaced(blobs: Arc<dyn Blobs>) {
    let real = noise(30_000, 10);
    let digest = hex(&real);
    blobs.create_part("20").await.unwrap();
    send(&blobs, "20", &real, &[10_000]).await;
    let w = blobs.open_part("20", 30_000).await.unwrap();
    w.publish(&digest).await.unwrap();
    let lie = noise(777, 11);
    blobs.create_part("21").await.unwrap();
    send(&blobs, "21", &lie, &[777]).await;
    let w = blobs.open_part("21", 777).await.unwrap();
    w.publish(&digest).await.unwrap();
    assert_eq!(read(&blobs, &digest, 0).await, (30_000, real));
    assert!(blobs.part_ids().await.unwrap().is_empty());
}

async fn a_large_blob_is_composed_from_small_parts(blobs: Arc<dyn Blobs>) {
    // Past what is composed in memory: staged as a multipart upload, then copied once.
    let bytes = noise(21 << 20, 6);
    blobs.create_part("13").await.unwrap();
    send(&blobs, "13", &bytes, &[3 << 20, 1 << 20, 5 << 20]).await;
    let mut w = blobs.open_part("13", bytes.len() as u64).await.unwrap();
    let digest = w.digest().await.unwrap().to_hex().to_string();
    w.publish(&digest).await.unwrap();
    let (len, tail) = read(&blobs, &digest, 20 << 20).await;
    assert_eq!(len, 21 << 20);
    assert_eq!(tail, bytes[20 << 20..]);
    assert_eq!(hex(&read(&blobs, &digest, 0).await.1), digest);
}

async fn thumbnails_are_kept_beside_their_blob_and_go_with_it(blobs: Arc<dyn Blobs>) {
    let bytes = noise(1000, 7);
    let digest = hex(&bytes);
    blobs.create_part("14").await.unwrap();
    send(&blobs, "14", &bytes, &[1000]).await;
    let w = blobs.open_part("14", 1000).await.unwrap();
    w.publish(&digest).await.unwrap();
    let jpeg = [&[0xFF, 0xD8][..], &noise(500, 8), &[0xFF, 0xD9]].concat();
    assert_eq!(blobs.thumbnail(&digest, 128).await.unwrap(), None);
    blobs
        .put_thumbnail(&digest, 128, jpeg.clone())
        .await
        .unwrap();
    assert_eq!(
        blobs.thumbnail(&digest, 128).await.unwrap(),
        Some(jpeg.clone())
    );
    blobs.delete_blob(&digest).await.unwrap();
    assert_eq!(blobs.thumbnail(&digest, 128).await.unwrap(), None);
    assert_eq!(
        blobs.open(&digest, 0).await.err().unwrap().kind(),
        io::ErrorKind::NotFound
    );
    // A thumbnail made for a blob collected meanwhile is not kept.
    blobs.put_thumbnail(&digest, 256, jpeg).await.unwrap();
    assert_eq!(blobs.thumbnail(&digest, 256).await.unwrap(), None);
    blobs.delete_blob(&digest).await.unwrap(); // twice is fine
}

async fn reads_start_anywhere_and_missing_blobs_are_not_found(blobs: Arc<dyn Blobs>) {
    let bytes = noise(10_000, 9);
    let digest = hex(&bytes);
    blobs.create_part("15").await.unwrap();
    send(&blobs, "15", &bytes, &[4096]).await;
    blobs
        .open_part("15", 10_000)
        .await
        .unwrap()
        .publish(&digest)
        .await
        .unwrap();
    assert_eq!(
        read(&blobs, &digest, 9_999).await,
        (10_000, bytes[9_999..].to_vec())
    );
    assert_eq!(read(&blobs, &digest, 10_000).await, (10_000, Vec::new()));
    assert_eq!(read(&blobs, &digest, 50_000).await.1, Vec::<u8>::new());
    let missing = hex(b"never stored");
    assert_eq!(
        blobs.open(&missing, 0).await.err().unwrap().kind(),
        io::ErrorKind::NotFound
    );
    // The empty file is a blob too.
    blobs.create_part("16").await.unwrap();
    let empty = hex(b"");
    let mut w = blobs.open_part("16", 0).await.unwrap();
    assert_eq!(w.digest().await.unwrap().to_hex().to_string(), empty);
    w.publish(&empty).await.unwrap();
    assert_eq!(read(&blobs, &empty, 0).await, (0, Vec::new()));
}

/// A server on the bucket, whose uploads expire after a second and whose sweeper runs every
/// 100 ms: an abandoned upload's part objects leave the bucket with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_upload_leaves_no_part_objects_in_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let config = bucket_config();
    let prefix = config.prefix.clone();
    let state = AppState::open(
        &Database::Sqlite(dir.path().join("photosync.db")),
        &BlobStore::S3(config),
        Config {
            upload_ttl: std::time::Duration::from_secs(1),
            sweep_interval: std::time::Duration::from_millis(100),
            ..Config::default()
        },
    )
    .await
    .unwrap();
    state
        .store
        .create_user("alice", &token_hash("psk_alice"), 0, None)
        .await
        .unwrap();
    let url = photosync_server::spawn_local(state).await.unwrap();
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{url}/files/"))
        .bearer_auth("psk_alice")
        .header(tus::RESUMABLE, tus::VERSION)
        .header(tus::UPLOAD_LENGTH, 50_000)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = format!("{url}{}", r.headers()["location"].to_str().unwrap());
    let r = c
        .patch(&loc)
        .bearer_auth("psk_alice")
        .header(tus::RESUMABLE, tus::VERSION)
        .header("content-type", tus::OFFSET_CONTENT_TYPE)
        .header(tus::UPLOAD_OFFSET, 0)
        .body(noise(20_000, 12))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let objects = || {
        moto()
            .list("photos", &format!("{prefix}/uploads/"))
            .unwrap()
    };
    assert_eq!(objects().len(), 2, "{:?}", objects()); // the marker and one part
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !objects().is_empty() {
        assert!(std::time::Instant::now() < deadline, "{:?}", objects());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let r = c
        .head(&loc)
        .bearer_auth("psk_alice")
        .header(tus::RESUMABLE, tus::VERSION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
