//! Server benchmark: prints figures, each beside what it is compared with.
//!
//! `cargo bench -p photosync-bench --bench server [-- --backend embedded|scale-out|all]`
//!
//! 1. Detection latency: batches of 1,000 exact (digest) and near (identifier, a few bits off a
//!    stored one) lookups against 100,000 and 1,000,000 stored images of one user, over HTTP on
//!    loopback to the release `photosync-server`. Median and p99 of 40 requests each.
//! 2. Upload throughput on loopback: 1 and 16 concurrent uploads of a 20 MB JPEG in 4 MB tus
//!    parts (every part fsynced), beside the disk's raw sequential write speed in the same run.
//! 3. Server resident memory with 16 uploads in flight.
//!
//! `--backend embedded` (the default) measures SQLite and a local folder. `scale-out` measures
//! detection on PostgreSQL (a throwaway cluster) and 16 concurrent uploads through one and two
//! instances sharing PostgreSQL and an S3 bucket (moto on loopback); `all` runs both, so the
//! embedded figures are the baseline of the same run.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use photosync_engine::{Client, ServerConfig};
use photosync_protocol::{tus, Metadata};
use photosync_testkit::postgres::Postgres;
use photosync_testkit::s3::Moto;
use photosync_testkit::{add_user, ServerProcess};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn identifier_text(words: &[u64; 9]) -> String {
    let mut s = format!("{}:", photosync_identify::VERSION);
    for w in words {
        s.push_str(&format!("{w:016x}"));
    }
    s.push_str("0000");
    s
}

fn random_words(rng: &mut Rng) -> [u64; 9] {
    std::array::from_fn(|_| rng.next())
}

/// A data folder with `n` images of user "bench", written in one transaction.
fn populated(work: &Path, bin: &Path, n: u64) -> (PathBuf, String) {
    let dir = work.join(format!(
        "detect-{n}-{}",
        photosync_identify::EVIDENCE_VERSION
    ));
    let token_file = dir.join("token");
    if let Ok(token) = std::fs::read_to_string(&token_file) {
        return (dir, token);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let token = add_user(bin, &dir, "bench");
    let mut db = rusqlite::Connection::open(dir.join("photosync.db")).unwrap();
    let tx = db.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO images (user_id, number, digest, identifier, name, bytes, width,
                                     height, format, uploaded_at, evidence)
                 VALUES (1, ?4, ?1, ?2, ?3, 3000000, 4000, 3000, 'jpeg', 0, ?5)",
            )
            .unwrap();
        each_image(n, |i, digest, id, evidence| {
            insert
                .execute(rusqlite::params![
                    digest,
                    id,
                    format!("IMG_{i:07}.jpg"),
                    i as i64 + 1,
                    evidence
                ])
                .unwrap();
        });
        // Image numbers are per user and come from this counter.
        tx.execute("UPDATE users SET next_image = ?1 WHERE id = 1", [n as i64])
            .unwrap();
    }
    tx.commit().unwrap();
    std::fs::write(&token_file, &token).unwrap();
    (dir, token)
}

const EVIDENCE_ROWS: u64 = 20_000;

/// The benchmark's `n` stored images: (index, digest, identifier, evidence), the same on every
/// backend. Real evidence (5.5 kB each) for the first EVIDENCE_ROWS images; `none` beyond, so
/// that a million rows stay a few hundred MB.
fn each_image(n: u64, mut f: impl FnMut(u64, &str, &str, &str)) {
    let evidence = real_evidence();
    let mut rng = Rng(0x5EED);
    for i in 0..n {
        let digest = blake3::hash(&i.to_le_bytes()).to_hex().to_string();
        let id = identifier_text(&random_words(&mut rng));
        let e = if i < EVIDENCE_ROWS {
            evidence.as_str()
        } else {
            "none"
        };
        f(i, &digest, &id, e);
    }
}

/// A scale-out deployment: a PostgreSQL database, an S3 prefix (or a folder), and the
/// arguments every instance and admin command gets.
struct ScaleOut {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ScaleOut {
    fn new(pg: &Postgres, blobs: Blobs) -> ScaleOut {
        let database = pg.new_database().unwrap();
        let (blobs, env) = match blobs {
            Blobs::Folder(dir) => (format!("file:{}", dir.display()), Vec::new()),
            Blobs::Bucket(moto, prefix) => (
                format!("s3://bench/{prefix}"),
                vec![
                    ("AWS_ENDPOINT_URL".into(), moto.endpoint()),
                    ("AWS_ACCESS_KEY_ID".into(), "bench".into()),
                    ("AWS_SECRET_ACCESS_KEY".into(), "bench".into()),
                    ("AWS_REGION".into(), "us-east-1".into()),
                ],
            ),
        };
        ScaleOut {
            args: vec!["--database".into(), database, "--blobs".into(), blobs],
            env,
        }
    }

    fn command(&self, bin: &Path, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(bin);
        c.args(&self.args).args(args).envs(self.env.iter().cloned());
        c
    }

    fn add_user(&self, bin: &Path) -> String {
        let out = self
            .command(bin, &["user", "add", "bench"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn instance(&self, bin: &Path) -> ServerProcess {
        ServerProcess::spawn(self.command(bin, &["serve", "--listen", "127.0.0.1:0"]))
    }

    fn database_name(&self) -> &str {
        self.args[1].rsplit('/').next().unwrap()
    }
}

enum Blobs<'a> {
    Folder(PathBuf),
    Bucket(&'a Moto, String),
}

/// A PostgreSQL deployment holding `n` images of user "bench", loaded with COPY.
fn pg_populated(work: &Path, bin: &Path, pg: &Postgres, n: u64) -> (ScaleOut, String) {
    let deploy = ScaleOut::new(pg, Blobs::Folder(work.join(format!("pg-blobs-{n}"))));
    let token = deploy.add_user(bin);
    let mut tsv = Vec::with_capacity(n as usize * 220);
    each_image(n, |i, digest, id, evidence| {
        use std::io::Write;
        writeln!(
            tsv,
            "1\t{}\t{digest}\t{id}\tIMG_{i:07}.jpg\t3000000\t4000\t3000\tjpeg\t0\t{}\t1970-01-01T00:00:00",
            i + 1,
            evidence.replace('\\', "\\\\")
        )
        .unwrap();
    });
    let db = deploy.database_name().to_owned();
    pg.copy_in(
        &db,
        "COPY images (user_id, number, digest, identifier, name, bytes, width, height, format, \
         uploaded_at, evidence, day) FROM STDIN",
        &tsv,
    )
    .unwrap();
    pg.sql(
        &db,
        &format!("UPDATE users SET next_image = {n} WHERE id = 1; ANALYZE"),
    )
    .unwrap();
    (deploy, token)
}

/// The evidence of a real photo, as the server stores it.
fn real_evidence() -> String {
    let bytes = std::fs::read(photosync_testkit::photos_dir().join("garden.jpg")).unwrap();
    photosync_identify::identify_bytes(&bytes, &Default::default())
        .unwrap()
        .evidence
        .to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn detect(c: &reqwest::Client, url: &str, token: &str, body: &str) -> (Duration, String) {
    let start = Instant::now();
    let r = c
        .post(format!("{url}/api/v1/detect"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    (start.elapsed(), text)
}

async fn detect_latency(work: &Path, bin: &Path, pg: Option<&Postgres>) {
    let backend = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
    println!("\n## detection latency on {backend}, batches of 1,000 lookups, one user");
    println!(
        "{:>10} {:>13} {:>14} {:>10} {:>10}",
        "stored", "kind", "first (index)", "median", "p99"
    );
    let c = reqwest::Client::new();
    for n in [100_000u64, 1_000_000] {
        let started = Instant::now();
        let (server, token) = match pg {
            None => {
                let (dir, token) = populated(work, bin, n);
                (ServerProcess::start(bin, &dir, &[]), token)
            }
            Some(pg) => {
                let (deploy, token) = pg_populated(work, bin, pg, n);
                (deploy.instance(bin), token)
            }
        };
        println!(
            "{n:>10} stored images ready in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        // Queries: stored digests (exact), and stored identifiers with 8 luma bits flipped under
        // digests the server does not hold (near).
        let mut rng = Rng(0x5EED);
        let stored: Vec<[u64; 9]> = (0..n.min(200_000))
            .map(|_| random_words(&mut rng))
            .collect();
        let mut pick = Rng(42);
        let exact: Vec<String> = (0..1000)
            .map(|_| {
                let i = pick.next() % n;
                format!(
                    r#"{{"digest":"{}"}}"#,
                    blake3::hash(&i.to_le_bytes()).to_hex()
                )
            })
            .collect();
        // Near matches of images without evidence (the answer of earlier builds: the image
        // alone), and of images with it (every candidate carries 5.5 kB for verification).
        let near_to = |pick: &mut Rng, from: u64, to: u64| -> Vec<String> {
            (0..1000u64)
                .map(|q| {
                    let i = from + pick.next() % (to - from);
                    let mut w = stored[i as usize];
                    for b in 0..8 {
                        w[(b % 4) as usize] ^= 1 << (pick.next() % 64);
                    }
                    let digest = blake3::hash(&(u64::MAX - q).to_le_bytes()).to_hex();
                    format!(
                        r#"{{"digest":"{digest}","identifier":"{}"}}"#,
                        identifier_text(&w)
                    )
                })
                .collect()
        };
        let near = near_to(&mut pick, EVIDENCE_ROWS, stored.len() as u64);
        let evidenced = near_to(&mut pick, 0, EVIDENCE_ROWS);
        for (kind, items) in [
            ("exact", &exact),
            ("near", &near),
            ("near+evidence", &evidenced),
        ] {
            let body = format!(r#"{{"images":[{}]}}"#, items.join(","));
            let (first, text) = detect(&c, &server.url, &token, &body).await;
            let want = if kind == "exact" {
                "same_bytes"
            } else {
                "candidates"
            };
            let hits = text.matches(want).count();
            assert!(hits >= 990, "{kind}: only {hits} of 1000 found");
            if kind == "near+evidence" {
                assert!(text.matches("\"evidence\"").count() >= 990);
            }
            println!(
                "{n:>10} {kind:>13} response {:.1} MB",
                text.len() as f64 / 1e6
            );
            let mut times = Vec::new();
            for _ in 0..40 {
                times.push(detect(&c, &server.url, &token, &body).await.0);
            }
            times.sort();
            println!(
                "{n:>10} {kind:>13} {:>14} {:>10} {:>10}",
                ms(first),
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99))
            );
        }
        println!(
            "{n:>10} server RSS after both: {} MB",
            server.status_kb("VmRSS") / 1024
        );
    }
}

/// A real photo blown up to about 20 MB of JPEG.
fn big_jpeg(work: &Path) -> Vec<u8> {
    let path = work.join("photo-20mb-5000x2812.jpg");
    if let Ok(b) = std::fs::read(&path) {
        return b;
    }
    let src = photosync_testkit::decode(
        &std::fs::read(photosync_testkit::photos_dir().join("elephants.jpg")).unwrap(),
    );
    let mut big = image::imageops::resize(&src, 5000, 2812, image::imageops::FilterType::Triangle);
    let mut rng = Rng(7);
    for p in big.pixels_mut() {
        for c in &mut p.0 {
            *c = c.saturating_add((rng.next() % 40) as u8).saturating_sub(20);
        }
    }
    let bytes = photosync_testkit::jpeg(&big, 97, false, None);
    std::fs::write(&path, &bytes).unwrap();
    bytes
}

/// One upload in 4 MB parts through the engine's tus client (checksummed parts, as the sync
/// engine sends them).
async fn upload(c: &Client, name: &str, bytes: &[u8]) {
    let mut m = Metadata::default();
    m.insert("filename", name);
    m.insert("digest", blake3::hash(bytes).to_hex().to_string());
    let loc = c.create_upload(bytes.len() as u64, &m).await.unwrap().url;
    let mut offset = 0;
    for part in bytes.chunks(4 << 20) {
        offset = c
            .send_part(&loc, offset, part.to_vec())
            .await
            .unwrap()
            .offset;
    }
}

/// Distinct files of the same photo: bytes after the JPEG's end marker change the digest only.
fn variant(base: &[u8], i: usize) -> Vec<u8> {
    let mut v = base.to_vec();
    v.extend_from_slice(format!("photosync-bench-{i}").as_bytes());
    v
}

fn raw_write_speed(dir: &Path) -> (f64, f64) {
    use std::io::Write;
    let block = vec![0xA5u8; 4 << 20];
    let path = dir.join("raw-write.bin");
    let run = |sync_each: bool| {
        let mut f = std::fs::File::create(&path).unwrap();
        let start = Instant::now();
        for _ in 0..64 {
            f.write_all(&block).unwrap();
            if sync_each {
                f.sync_data().unwrap();
            }
        }
        f.sync_all().unwrap();
        let mbps = 256.0 / start.elapsed().as_secs_f64();
        std::fs::remove_file(&path).unwrap();
        mbps
    };
    // Best of two runs each: the first write to a new file pays for allocation.
    (run(false).max(run(false)), run(true).max(run(true)))
}

async fn upload_throughput(work: &Path, bin: &Path) {
    let dir = work.join("upload");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let token = add_user(bin, &dir, "bench");
    let base = big_jpeg(work);
    let mb = base.len() as f64 / 1e6;
    let server = ServerProcess::start(bin, &dir, &[]);
    let c = Client::new(ServerConfig {
        url: server.url.clone(),
        token: token.clone(),
    })
    .unwrap();

    println!("\n## upload throughput on loopback ({mb:.1} MB JPEG, 4 MB parts, fsync per part)");
    let (raw, raw_synced) = raw_write_speed(&dir);
    println!("raw sequential write, same disk: {raw:.0} MB/s (one fsync), {raw_synced:.0} MB/s (fsync every 4 MB)");
    let mut singles = Vec::new();
    for i in 0..3 {
        let v = variant(&base, i);
        let start = Instant::now();
        upload(&c, "one.jpg", &v).await;
        singles.push(v.len() as f64 / 1e6 / start.elapsed().as_secs_f64());
    }
    singles.sort_by(f64::total_cmp);
    println!("1 upload at a time: {:.0} MB/s (median of 3)", singles[1]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let c = c.clone();
            let v = variant(&base, 100 + i);
            tokio::spawn(async move { upload(&c, &format!("{i}.jpg"), &v).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "16 concurrent uploads: {:.0} MB/s in all",
        16.0 * mb / start.elapsed().as_secs_f64()
    );
}

async fn memory_in_flight(work: &Path, bin: &Path) {
    let dir = work.join("memory");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let token = add_user(bin, &dir, "bench");
    let base = big_jpeg(work);
    let server = ServerProcess::start(bin, &dir, &[]);
    let c = reqwest::Client::new();
    let idle = server.status_kb("VmRSS");
    // 16 uploads held open mid-part, each with 2 MB received.
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let v = variant(&base, 200 + i);
        let mut m = Metadata::default();
        m.insert("digest", blake3::hash(&v).to_hex().to_string());
        let r = c
            .post(format!("{}/files/", server.url))
            .bearer_auth(&token)
            .header(tus::RESUMABLE, tus::VERSION)
            .header(tus::UPLOAD_LENGTH, v.len())
            .header(tus::UPLOAD_METADATA, m.encode())
            .send()
            .await
            .unwrap();
        let loc = format!(
            "{}{}",
            server.url,
            r.headers()["location"].to_str().unwrap()
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        tx.send(Ok(v[..2 << 20].to_vec())).await.unwrap();
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        let (c, token) = (c.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            c.patch(&loc)
                .bearer_auth(&token)
                .header(tus::RESUMABLE, tus::VERSION)
                .header("content-type", tus::OFFSET_CONTENT_TYPE)
                .header(tus::UPLOAD_OFFSET, 0)
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
        senders.push((tx, v));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let in_flight = server.status_kb("VmRSS");
    for (tx, v) in senders {
        tx.send(Ok(v[2 << 20..].to_vec())).await.unwrap();
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 204);
    }
    println!("\n## server memory (fresh process)");
    println!(
        "resident: {} MB idle, {} MB with 16 uploads in flight; peak while they finished: {} MB",
        idle / 1024,
        in_flight / 1024,
        server.status_kb("VmHWM") / 1024
    );
}

/// 16 concurrent uploads through one and through two instances sharing PostgreSQL and a
/// bucket; each upload goes to one instance, in turn.
async fn upload_throughput_scaled(work: &Path, bin: &Path, pg: &Postgres, moto: &Moto) {
    let base = big_jpeg(work);
    let mb = base.len() as f64 / 1e6;
    println!("\n## upload throughput, PostgreSQL + S3 bucket (moto), {mb:.1} MB JPEG, 4 MB parts");
    for instances in [1usize, 2] {
        let deploy = ScaleOut::new(pg, Blobs::Bucket(moto, format!("upload-{instances}")));
        let token = deploy.add_user(bin);
        let servers: Vec<ServerProcess> = (0..instances).map(|_| deploy.instance(bin)).collect();
        let clients: Vec<Client> = servers
            .iter()
            .map(|s| {
                Client::new(ServerConfig {
                    url: s.url.clone(),
                    token: token.clone(),
                })
                .unwrap()
            })
            .collect();
        let start = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let c = clients[i % instances].clone();
                let v = variant(&base, 300 + i);
                tokio::spawn(async move { upload(&c, &format!("{i}.jpg"), &v).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let rss: Vec<String> = servers
            .iter()
            .map(|s| format!("{} MB", s.status_kb("VmHWM") / 1024))
            .collect();
        println!(
            "16 concurrent uploads, {instances} instance(s): {:.0} MB/s in all (peak RSS {})",
            16.0 * mb / start.elapsed().as_secs_f64(),
            rss.join(", ")
        );
    }
}

fn main() {
    let target = photosync_bench::target_dir();
    let work = target.join("bench-server");
    std::fs::create_dir_all(&work).unwrap();
    let bin = photosync_bench::release_binaries().join("photosync-server");
    println!(
        "# photosync-server benchmark ({} cores, release build, loopback)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let args: Vec<String> = std::env::args().collect();
    let backend = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1))
        .map_or("embedded", String::as_str);
    let (embedded, scaled) = match backend {
        "embedded" => (true, false),
        "scale-out" => (false, true),
        "all" => (true, true),
        other => panic!("--backend {other}: embedded, scale-out or all"),
    };
    rt.block_on(async {
        if embedded {
            memory_in_flight(&work, &bin).await;
            upload_throughput(&work, &bin).await;
            detect_latency(&work, &bin, None).await;
        }
        if scaled {
            let pg = Postgres::start().unwrap();
            let moto = Moto::start().unwrap();
            moto.create_bucket("bench").unwrap();
            upload_throughput_scaled(&work, &bin, &pg, &moto).await;
            detect_latency(&work, &bin, Some(&pg)).await;
        }
    });
}
