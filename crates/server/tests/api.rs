//! The router driven in-process with `oneshot`, over the real SQLite store and blob folder.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use photosync_protocol::{
    display_name, meta, percent_decode_name, percent_encode_name, tus, Metadata,
};
use photosync_server::{router, token_hash, AppState, Config};
use tower::ServiceExt;

struct Server {
    app: Router,
    state: AppState,
    _dir: tempfile::TempDir,
    alice: String,
    bob: String,
}

async fn server_with(config: Config) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::embedded(dir.path(), config).unwrap();
    let (alice, bob) = ("psk_alice_token".to_owned(), "psk_bob_token".to_owned());
    state
        .store
        .create_user("alice", &token_hash(&alice), 0, None)
        .await
        .unwrap();
    state
        .store
        .create_user("bob", &token_hash(&bob), 0, None)
        .await
        .unwrap();
    Server {
        app: router(state.clone()),
        state,
        _dir: dir,
        alice,
        bob,
    }
}

/// A server over a data folder made earlier (by a test's SQL or an older schema), whose users
/// hold Alice's and Bob's tokens.
fn reopened(dir: tempfile::TempDir) -> Server {
    let state = AppState::embedded(dir.path(), Config::default()).unwrap();
    Server {
        app: router(state.clone()),
        state,
        _dir: dir,
        alice: "psk_alice_token".into(),
        bob: "psk_bob_token".into(),
    }
}

async fn server() -> Server {
    server_with(Config::default()).await
}

fn photo(name: &str) -> Vec<u8> {
    std::fs::read(photosync_testkit::photos_dir().join(name)).unwrap()
}

fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn metadata(name: &str, bytes: &[u8]) -> String {
    let mut m = Metadata::default();
    m.insert("filename", name);
    m.insert("digest", digest(bytes));
    m.encode()
}

/// Metadata naming the file by its exact bytes, with the display form beside them.
fn metadata_with_name_bytes(raw_name: &[u8], bytes: &[u8]) -> String {
    let mut m = Metadata::default();
    m.insert(meta::NAME, display_name(raw_name));
    m.insert(meta::NAME_BYTES, percent_encode_name(raw_name));
    m.insert(meta::DIGEST, digest(bytes));
    m.encode()
}

async fn body_json(r: Response<Body>) -> serde_json::Value {
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 24).await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

fn header<'a>(r: &'a Response<Body>, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

impl Server {
    async fn send(&self, req: Request<Body>) -> Response<Body> {
        self.app.clone().oneshot(req).await.unwrap()
    }

    fn req(&self, method: Method, uri: &str, token: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .header(tus::RESUMABLE, tus::VERSION)
    }

    async fn create(&self, token: &str, length: usize, meta: &str) -> Response<Body> {
        self.send(
            self.req(Method::POST, "/files/", token)
                .header(tus::UPLOAD_LENGTH, length.to_string())
                .header(tus::UPLOAD_METADATA, meta)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// Creates an upload and returns its path.
    async fn start(&self, token: &str, name: &str, bytes: &[u8]) -> String {
        let r = self
            .create(token, bytes.len(), &metadata(name, bytes))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", body_json(r).await);
        header(&r, "location").unwrap().to_owned()
    }

    async fn patch(&self, token: &str, loc: &str, offset: u64, part: &[u8]) -> Response<Body> {
        self.send(
            self.req(Method::PATCH, loc, token)
                .header("content-type", tus::OFFSET_CONTENT_TYPE)
                .header(tus::UPLOAD_OFFSET, offset.to_string())
                .body(Body::from(part.to_vec()))
                .unwrap(),
        )
        .await
    }

    async fn head(&self, token: &str, loc: &str) -> Response<Body> {
        self.send(
            self.req(Method::HEAD, loc, token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn offset(&self, token: &str, loc: &str) -> u64 {
        let r = self.head(token, loc).await;
        assert_eq!(r.status(), StatusCode::OK);
        header(&r, tus::UPLOAD_OFFSET).unwrap().parse().unwrap()
    }

    async fn upload(&self, token: &str, name: &str, bytes: &[u8]) -> Response<Body> {
        let loc = self.start(token, name, bytes).await;
        self.patch(token, &loc, 0, bytes).await
    }

    async fn content(&self, token: &str, id: impl std::fmt::Display) -> Response<Body> {
        self.send(
            self.req(Method::GET, &format!("/api/v1/images/{id}/content"), token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn images(&self, token: &str) -> Vec<serde_json::Value> {
        self.images_where(token, "").await
    }

    /// The images a list with this query string (`since=...&name=...`) answers.
    async fn images_where(&self, token: &str, query: &str) -> Vec<serde_json::Value> {
        let r = self
            .get(token, &format!("/api/v1/images?{query}"), &[])
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{query}");
        body_json(r).await["images"].as_array().unwrap().clone()
    }

    async fn get(&self, token: &str, uri: &str, headers: &[(&str, &str)]) -> Response<Body> {
        let mut req = self.req(Method::GET, uri, token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// Uploads `bytes` with these extra metadata entries; returns the image id.
    async fn upload_with(
        &self,
        token: &str,
        name: &str,
        bytes: &[u8],
        extra: &[(&str, &str)],
    ) -> i64 {
        let mut m = Metadata::default();
        m.insert(meta::NAME, name);
        m.insert(meta::DIGEST, digest(bytes));
        for (k, v) in extra {
            m.insert(k, *v);
        }
        let r = self.create(token, bytes.len(), &m.encode()).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", body_json(r).await);
        let loc = header(&r, "location").unwrap().to_owned();
        let r = self.patch(token, &loc, 0, bytes).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        header(&r, "photosync-image-id").unwrap().parse().unwrap()
    }

    async fn detect(&self, token: &str, body: serde_json::Value) -> Response<Body> {
        self.send(
            self.req(Method::POST, "/api/v1/detect", token)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }
}

/// A tus client's `OPTIONS /files/`: no token, no CORS headers.
fn tus_options() -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/files/")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn options_advertises_the_protocol() {
    let s = server().await;
    let r = s.send(tus_options()).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, tus::VERSION_HEADER), Some("1.0.0"));
    assert_eq!(header(&r, tus::MAX_SIZE), Some("4294967296"));
    let ext = header(&r, tus::EXTENSION).unwrap();
    for e in [
        "creation",
        "creation-with-upload",
        "expiration",
        "checksum",
        "termination",
    ] {
        assert!(ext.split(',').any(|x| x == e), "{e}");
    }
    assert!(header(&r, tus::CHECKSUM_ALGORITHM)
        .unwrap()
        .contains("sha1"));
}

#[tokio::test]
async fn whole_upload_in_parts_then_detect_list_and_download() {
    let s = server().await;
    let bytes = photo("garden.jpg");
    let loc = s.start(&s.alice, "garden.jpg", &bytes).await;
    let head = s.head(&s.alice, &loc).await;
    assert_eq!(header(&head, tus::UPLOAD_OFFSET), Some("0"));
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    assert!(header(&head, tus::UPLOAD_EXPIRES).is_some());

    let mut offset = 0;
    for size in [1000, 7, 20_000, usize::MAX] {
        let end = (offset + size.min(bytes.len())).min(bytes.len());
        let r = s
            .patch(&s.alice, &loc, offset as u64, &bytes[offset..end])
            .await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&r, tus::UPLOAD_OFFSET).unwrap(), end.to_string());
        // Not an image until the last byte is in and verified.
        assert_eq!(
            s.images(&s.alice).await.len(),
            usize::from(end == bytes.len())
        );
        offset = end;
    }
    let images = s.images(&s.alice).await;
    assert_eq!(images[0]["name"], "garden.jpg");
    assert_eq!(images[0]["digest"], digest(&bytes));
    assert_eq!(images[0]["width"], 800);
    assert!(images[0]["identifier"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}:", photosync_identify::VERSION)));

    let id = images[0]["id"].as_i64().unwrap();
    let r = s.content(&s.alice, id).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), Some("image/jpeg"));
    let got = axum::body::to_bytes(r.into_body(), 1 << 24).await.unwrap();
    assert_eq!(got.as_ref(), bytes.as_slice());

    // Detect: same bytes, a re-encoded copy (same picture), and something absent.
    let copy = photosync_testkit::make_copy(&bytes, photosync_testkit::Copy::Reencode75);
    let copy_id = photosync_identify::identify_bytes(&copy, &Default::default()).unwrap();
    let other =
        photosync_identify::identify_bytes(&photo("dune.jpg"), &Default::default()).unwrap();
    let r = s
        .detect(
            &s.alice,
            serde_json::json!({"images": [
                {"digest": digest(&bytes)},
                {"digest": copy_id.digest.to_string(), "identifier": copy_id.identifier.to_string()},
                {"digest": other.digest.to_string(), "identifier": other.identifier.to_string()},
            ]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let results = body_json(r).await["results"].as_array().unwrap().clone();
    assert_eq!(results[0]["status"], "same_bytes");
    assert_eq!(results[1]["status"], "candidates");
    let candidate = &results[1]["candidates"][0];
    assert_eq!(candidate["image"]["name"], "garden.jpg");
    assert!(candidate["distance"]["total"].as_u64().unwrap() <= 48);
    // The server's own evidence comes with it, and verifies against the copy's.
    let evidence: photosync_identify::Evidence =
        candidate["evidence"].as_str().unwrap().parse().unwrap();
    assert!(photosync_identify::verify(&copy_id.evidence, &evidence).is_ok());
    assert_eq!(evidence.quality.jpeg, Some(90));
    assert_eq!(results[2]["status"], "absent");

    // A PATCH to the finished upload changes nothing.
    let r = s.patch(&s.alice, &loc, bytes.len() as u64, b"x").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(r).await["code"], "upload_finished");
    assert_eq!(s.offset(&s.alice, &loc).await, bytes.len() as u64);
}

#[tokio::test]
async fn creation_with_upload_stores_the_whole_file() {
    let s = server().await;
    let bytes = photo("aqua.jpg");
    let r = s
        .send(
            s.req(Method::POST, "/files/", &s.alice)
                .header(tus::UPLOAD_LENGTH, bytes.len().to_string())
                .header(tus::UPLOAD_METADATA, metadata("aqua.jpg", &bytes))
                .header("content-type", tus::OFFSET_CONTENT_TYPE)
                .body(Body::from(bytes.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, tus::UPLOAD_OFFSET).unwrap(),
        bytes.len().to_string()
    );
    assert_eq!(s.images(&s.alice).await.len(), 1);
}

#[tokio::test]
async fn missing_or_wrong_tokens_get_401_and_nothing_else() {
    let s = server().await;
    let loc = s.start(&s.alice, "a.jpg", b"abc").await;
    for token in [
        None,
        Some("Bearer psk_nope"),
        Some("Basic YWxpY2U6eA=="),
        Some("Bearer "),
    ] {
        for (method, uri) in [
            (Method::POST, "/files/"),
            (Method::HEAD, loc.as_str()),
            (Method::PATCH, loc.as_str()),
            (Method::DELETE, loc.as_str()),
            (Method::GET, "/api/v1/images"),
            (Method::GET, "/api/v1/account"),
            (Method::POST, "/api/v1/detect"),
        ] {
            let mut b = Request::builder()
                .method(method.clone())
                .uri(uri)
                .header(tus::RESUMABLE, tus::VERSION);
            if let Some(t) = token {
                b = b.header("authorization", t);
            }
            let r = s.send(b.body(Body::empty()).unwrap()).await;
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {uri} {token:?}"
            );
            assert!(header(&r, tus::UPLOAD_OFFSET).is_none());
        }
    }
    // Two Authorization headers are not a way in either.
    let r = s
        .send(
            Request::builder()
                .uri("/api/v1/images")
                .header("authorization", format!("Bearer {}", s.alice))
                .header("authorization", "Bearer psk_nope")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.offset(&s.alice, &loc).await, 0, "nothing changed");
}

#[tokio::test]
async fn users_never_see_each_other() {
    let s = server().await;
    let bytes = photo("wood.jpg");
    let loc = s.start(&s.alice, "wood.jpg", &bytes).await;
    // Bob cannot see, write or delete Alice's upload: it does not exist for him.
    assert_eq!(s.head(&s.bob, &loc).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        s.patch(&s.bob, &loc, 0, &bytes).await.status(),
        StatusCode::NOT_FOUND
    );
    let del = s
        .send(
            s.req(Method::DELETE, &loc, &s.bob)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(del.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        s.patch(&s.alice, &loc, 0, &bytes).await.status(),
        StatusCode::NO_CONTENT
    );

    let id = photosync_identify::identify_bytes(&bytes, &Default::default()).unwrap();
    let r = s
        .detect(&s.bob, serde_json::json!({"images": [{"digest": id.digest.to_string(), "identifier": id.identifier.to_string()}]}))
        .await;
    assert_eq!(body_json(r).await["results"][0]["status"], "absent");
    assert!(s.images(&s.bob).await.is_empty());
    let image = s.images(&s.alice).await[0]["id"].as_i64().unwrap();
    for uri in [
        format!("/api/v1/images/{image}"),
        format!("/api/v1/images/{image}/content"),
    ] {
        let r = s
            .send(
                s.req(Method::GET, &uri, &s.bob)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // Each token names its own account, with its own counts.
    let account = |token: String| {
        let s = &s;
        async move {
            let r = s
                .send(
                    s.req(Method::GET, "/api/v1/account", &token)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(r.status(), StatusCode::OK);
            body_json(r).await
        }
    };
    let alice = account(s.alice.clone()).await;
    assert_eq!(
        (
            alice["user"].clone(),
            alice["images"].clone(),
            alice["bytes"].clone()
        ),
        (
            serde_json::json!("alice"),
            serde_json::json!(1),
            serde_json::json!(bytes.len())
        )
    );
    let bob = account(s.bob.clone()).await;
    assert_eq!(
        (bob["user"].clone(), bob["images"].clone()),
        (serde_json::json!("bob"), serde_json::json!(0))
    );
    // Bob uploading the same photo gets his own record.
    assert_eq!(
        s.upload(&s.bob, "mine.jpg", &bytes).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.images(&s.bob).await[0]["name"], "mine.jpg");
}

#[tokio::test]
async fn unsupported_or_missing_tus_version_gets_412() {
    let s = server().await;
    for v in [None, Some("0.2.2"), Some("1.0.0, 1.0.0")] {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri("/files/")
            .header("authorization", format!("Bearer {}", s.alice))
            .header(tus::UPLOAD_LENGTH, "3");
        if let Some(v) = v {
            b = b.header(tus::RESUMABLE, v);
        }
        let r = s.send(b.body(Body::empty()).unwrap()).await;
        assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED, "{v:?}");
        assert_eq!(header(&r, tus::VERSION_HEADER), Some("1.0.0"));
    }
}

#[tokio::test]
async fn malformed_creation_requests_get_4xx_and_create_nothing() {
    let s = server_with(Config {
        max_upload_size: 1000,
        ..Config::default()
    })
    .await;
    let good = metadata("a.jpg", b"abc");
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no length",
            vec![(tus::UPLOAD_METADATA, good.clone())],
            StatusCode::BAD_REQUEST,
            "missing_length",
        ),
        (
            "negative",
            vec![
                (tus::UPLOAD_LENGTH, "-3".into()),
                (tus::UPLOAD_METADATA, good.clone()),
            ],
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        (
            "not a number",
            vec![
                (tus::UPLOAD_LENGTH, "3a".into()),
                (tus::UPLOAD_METADATA, good.clone()),
            ],
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        (
            "huge",
            vec![
                (tus::UPLOAD_LENGTH, "99999999999999999999999".into()),
                (tus::UPLOAD_METADATA, good.clone()),
            ],
            StatusCode::BAD_REQUEST,
            "malformed_header",
        ),
        (
            "over max",
            vec![
                (tus::UPLOAD_LENGTH, "1001".into()),
                (tus::UPLOAD_METADATA, good.clone()),
            ],
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "duplicate length",
            vec![
                (tus::UPLOAD_LENGTH, "3".into()),
                (tus::UPLOAD_LENGTH, "3".into()),
                (tus::UPLOAD_METADATA, good.clone()),
            ],
            StatusCode::BAD_REQUEST,
            "duplicate_header",
        ),
        (
            "not base64",
            vec![
                (tus::UPLOAD_LENGTH, "3".into()),
                (tus::UPLOAD_METADATA, format!("{good},filename !!!")),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_metadata",
        ),
        (
            "digest in hex where base64 belongs",
            vec![
                (tus::UPLOAD_LENGTH, "3".into()),
                (tus::UPLOAD_METADATA, format!("digest {}", digest(b"abc"))),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_metadata",
        ),
        (
            "line break in name",
            vec![
                (tus::UPLOAD_LENGTH, "3".into()),
                (
                    tus::UPLOAD_METADATA,
                    format!("filename {}", STANDARD.encode("a\r\nSet-Cookie: x.jpg")),
                ),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_filename",
        ),
        (
            "path in name",
            vec![
                (tus::UPLOAD_LENGTH, "3".into()),
                (
                    tus::UPLOAD_METADATA,
                    format!(
                        "filename {},digest {}",
                        STANDARD.encode("../etc/passwd"),
                        STANDARD.encode(digest(b"abc"))
                    ),
                ),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_filename",
        ),
        (
            "dot dot",
            vec![
                (tus::UPLOAD_LENGTH, "3".into()),
                (
                    tus::UPLOAD_METADATA,
                    format!(
                        "filename {},digest {}",
                        STANDARD.encode(".."),
                        STANDARD.encode(digest(b"abc"))
                    ),
                ),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_filename",
        ),
        (
            "bad identifier",
            vec![
                (tus::UPLOAD_LENGTH, "3".into()),
                (
                    tus::UPLOAD_METADATA,
                    format!(
                        "{good},identifier {}",
                        STANDARD.encode(format!("{}:zz", photosync_identify::VERSION))
                    ),
                ),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_identifier",
        ),
        (
            "deferred",
            vec![
                ("upload-defer-length", "1".into()),
                (tus::UPLOAD_METADATA, good.clone()),
            ],
            StatusCode::BAD_REQUEST,
            "defer_length_unsupported",
        ),
    ];
    for (what, headers, status, code) in cases {
        let mut b = s.req(Method::POST, "/files/", &s.alice);
        for (k, v) in headers {
            b = b.header(k, v);
        }
        let r = s.send(b.body(Body::empty()).unwrap()).await;
        assert_eq!(r.status(), status, "{what}");
        assert_eq!(body_json(r).await["code"], code, "{what}");
    }
    let uploads = s.state.store.expired_uploads(i64::MAX).await.unwrap();
    assert!(uploads.is_empty(), "nothing was created");
}

#[tokio::test]
async fn malformed_patches_get_4xx_and_change_nothing() {
    let s = server().await;
    let bytes = photo("storm.jpg");
    let loc = s.start(&s.alice, "storm.jpg", &bytes).await;
    assert_eq!(
        s.patch(&s.alice, &loc, 0, &bytes[..100]).await.status(),
        StatusCode::NO_CONTENT
    );

    let wrong_offset = s.patch(&s.alice, &loc, 50, &bytes[50..200]).await;
    assert_eq!(wrong_offset.status(), StatusCode::CONFLICT);
    assert_eq!(header(&wrong_offset, tus::UPLOAD_OFFSET), Some("100"));

    let send = |headers: Vec<(&'static str, String)>, part: Vec<u8>| {
        let mut b = s.req(Method::PATCH, &loc, &s.alice);
        for (k, v) in headers {
            b = b.header(k, v);
        }
        s.send(b.body(Body::from(part)).unwrap())
    };
    let ct = ("content-type", tus::OFFSET_CONTENT_TYPE.to_owned());
    let r = send(
        vec![
            ("content-type", "application/json".into()),
            (tus::UPLOAD_OFFSET, "100".into()),
        ],
        bytes[100..200].to_vec(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    for bad in ["-100", "1e2", "", "100, 100"] {
        let r = send(
            vec![ct.clone(), (tus::UPLOAD_OFFSET, bad.into())],
            bytes[100..200].to_vec(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "offset {bad:?}");
    }
    let r = send(vec![ct.clone()], bytes[100..200].to_vec()).await;
    assert_eq!(body_json(r).await["code"], "missing_offset");
    let r = send(
        vec![
            ct.clone(),
            (tus::UPLOAD_OFFSET, "100".into()),
            (tus::UPLOAD_OFFSET, "100".into()),
        ],
        vec![1],
    )
    .await;
    assert_eq!(body_json(r).await["code"], "duplicate_header");

    // Checksums: wrong value 460, unknown algorithm or malformed 400, and the part is gone.
    let part = &bytes[100..300];
    let sha1 = {
        use sha1::Digest;
        STANDARD.encode(sha1::Sha1::digest(part))
    };
    let r = send(
        vec![
            ct.clone(),
            (tus::UPLOAD_OFFSET, "100".into()),
            (tus::UPLOAD_CHECKSUM, format!("sha1 {sha1}")),
        ],
        bytes[101..301].to_vec(),
    )
    .await;
    assert_eq!(r.status().as_u16(), 460);
    assert_eq!(body_json(r).await["code"], "checksum_mismatch");
    for (value, code) in [
        ("md5 AAAA", "unsupported_checksum"),
        ("sha1", "malformed_checksum"),
        ("sha1 ***", "malformed_checksum"),
        ("sha1 AAAA", "malformed_checksum"),
    ] {
        let r = send(
            vec![
                ct.clone(),
                (tus::UPLOAD_OFFSET, "100".into()),
                (tus::UPLOAD_CHECKSUM, value.into()),
            ],
            part.to_vec(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{value}");
        assert_eq!(body_json(r).await["code"], code, "{value}");
    }
    // A body longer than what is left of Upload-Length.
    let mut too_long = bytes[100..].to_vec();
    too_long.push(0);
    let r = s.patch(&s.alice, &loc, 100, &too_long).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.offset(&s.alice, &loc).await, 100, "nothing changed");

    // The right checksums are accepted, each algorithm in turn.
    let sha256 = {
        use sha2::Digest;
        STANDARD.encode(sha2::Sha256::digest(&bytes[300..400]))
    };
    let b3 = STANDARD.encode(blake3::hash(&bytes[400..]).as_bytes());
    let r = send(
        vec![
            ct.clone(),
            (tus::UPLOAD_OFFSET, "100".into()),
            (tus::UPLOAD_CHECKSUM, format!("sha1 {sha1}")),
        ],
        part.to_vec(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = send(
        vec![
            ct.clone(),
            (tus::UPLOAD_OFFSET, "300".into()),
            (tus::UPLOAD_CHECKSUM, format!("sha256 {sha256}")),
        ],
        bytes[300..400].to_vec(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = send(
        vec![
            ct,
            (tus::UPLOAD_OFFSET, "400".into()),
            (tus::UPLOAD_CHECKSUM, format!("blake3 {b3}")),
        ],
        bytes[400..].to_vec(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let stored = s.images(&s.alice).await;
    assert_eq!(stored[0]["digest"], digest(&bytes));
}

#[tokio::test]
async fn a_file_that_does_not_match_its_digest_is_discarded() {
    let s = server().await;
    let bytes = photo("dune.jpg");
    let mut other = bytes.clone();
    other[5000] ^= 1;
    let loc = s.start(&s.alice, "dune.jpg", &bytes).await;
    let r = s.patch(&s.alice, &loc, 0, &other).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body_json(r).await["code"], "digest_mismatch");
    assert_eq!(s.head(&s.alice, &loc).await.status(), StatusCode::NOT_FOUND);
    assert!(s.images(&s.alice).await.is_empty());
}

#[tokio::test]
async fn termination_removes_the_upload() {
    let s = server().await;
    let bytes = photo("dune.jpg");
    let loc = s.start(&s.alice, "dune.jpg", &bytes).await;
    s.patch(&s.alice, &loc, 0, &bytes[..1000]).await;
    let r = s
        .send(
            s.req(Method::DELETE, &loc, &s.alice)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.head(&s.alice, &loc).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        s.patch(&s.alice, &loc, 1000, &bytes[1000..]).await.status(),
        StatusCode::NOT_FOUND
    );
    let parts = std::fs::read_dir(s._dir.path().join("uploads"))
        .unwrap()
        .count();
    assert_eq!(parts, 0);
}

#[tokio::test]
async fn expired_uploads_answer_410_and_are_swept() {
    let s = server_with(Config {
        upload_ttl: Duration::from_secs(0),
        ..Config::default()
    })
    .await;
    let loc = s.start(&s.alice, "a.jpg", b"abcdef").await;
    let loc2 = s.start(&s.alice, "b.jpg", b"ghijkl").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.head(&s.alice, &loc).await.status(), StatusCode::GONE);
    assert_eq!(
        s.head(&s.alice, &loc).await.status(),
        StatusCode::NOT_FOUND,
        "cleaned up"
    );
    assert_eq!(
        s.state.store.expired_uploads(i64::MAX).await.unwrap().len(),
        1
    );
    photosync_server::spawn_sweeper(s.state.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(s
        .state
        .store
        .expired_uploads(i64::MAX)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.patch(&s.alice, &loc2, 0, b"ghijkl").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_second_writer_gets_423_while_the_first_holds_the_upload() {
    let s = server_with(Config {
        idle_timeout: Duration::from_secs(2),
        ..Config::default()
    })
    .await;
    let bytes = photo("aqua.jpg");
    let loc = s.start(&s.alice, "aqua.jpg", &bytes).await;
    // The first PATCH streams slowly through a channel.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = Body::from_stream(tokio_stream_from(rx));
    let first = s.send(
        s.req(Method::PATCH, &loc, &s.alice)
            .header("content-type", tus::OFFSET_CONTENT_TYPE)
            .header(tus::UPLOAD_OFFSET, "0")
            .body(body)
            .unwrap(),
    );
    let second = async {
        tx.send(Ok(bytes[..1000].to_vec())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = s.patch(&s.alice, &loc, 0, &bytes).await;
        tx.send(Ok(bytes[1000..].to_vec())).await.unwrap();
        drop(tx);
        r
    };
    let (first, second) = tokio::join!(first, second);
    assert_eq!(second.status(), StatusCode::LOCKED);
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.images(&s.alice).await.len(), 1);
}

#[tokio::test]
async fn an_idle_body_is_cut_and_a_checksummed_part_discarded() {
    let s = server_with(Config {
        idle_timeout: Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    let bytes = photo("aqua.jpg");
    let loc = s.start(&s.alice, "aqua.jpg", &bytes).await;
    for checksum in [true, false] {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        tx.send(Ok(bytes[..500].to_vec())).await.unwrap();
        let mut b = s
            .req(Method::PATCH, &loc, &s.alice)
            .header("content-type", tus::OFFSET_CONTENT_TYPE)
            .header(tus::UPLOAD_OFFSET, "0");
        if checksum {
            let sum = {
                use sha1::Digest;
                STANDARD.encode(sha1::Sha1::digest(&bytes[..1000]))
            };
            b = b.header(tus::UPLOAD_CHECKSUM, format!("sha1 {sum}"));
        }
        let r = s
            .send(b.body(Body::from_stream(tokio_stream_from(rx))).unwrap())
            .await;
        drop(tx);
        if checksum {
            assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
            assert_eq!(
                s.offset(&s.alice, &loc).await,
                0,
                "checksummed part discarded"
            );
        } else {
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            assert_eq!(header(&r, tus::UPLOAD_OFFSET), Some("500"));
        }
    }
    // Without a checksum, what arrived is kept, as tus allows.
    assert_eq!(s.offset(&s.alice, &loc).await, 500);
}

/// Parts long enough to be written back while they arrive: a bad one is still discarded
/// whole, and the good ones are stored byte for byte.
#[tokio::test]
async fn large_parts_written_back_as_they_arrive_are_kept_or_discarded_whole() {
    let s = server().await;
    // Not a picture: the server keeps any file; 13 MiB in parts of 10 MiB and the rest.
    let bytes = photosync_testkit::noise(13 << 20, 7);
    let loc = s.start(&s.alice, "big.bin", &bytes).await;
    let patch = |offset: usize, part: &[u8], sum_of: &[u8]| {
        let sum = STANDARD.encode(blake3::hash(sum_of).as_bytes());
        // 64 KiB chunks, as a network delivers them: several write-backs start mid-part.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            part.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
        s.send(
            s.req(Method::PATCH, &loc, &s.alice)
                .header("content-type", tus::OFFSET_CONTENT_TYPE)
                .header(tus::UPLOAD_OFFSET, offset.to_string())
                .header(tus::UPLOAD_CHECKSUM, format!("blake3 {sum}"))
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .unwrap(),
        )
    };
    let first = &bytes[..10 << 20];
    let mut wrong = first.to_vec();
    wrong[(10 << 20) - 1] ^= 1;
    let r = patch(0, &wrong, first).await;
    assert_eq!(r.status().as_u16(), 460);
    assert_eq!(
        s.offset(&s.alice, &loc).await,
        0,
        "bad part discarded whole"
    );
    let r = patch(0, first, first).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.offset(&s.alice, &loc).await, 10 << 20);
    let r = patch(10 << 20, &bytes[10 << 20..], &bytes[10 << 20..]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let id = header(&r, photosync_protocol::IMAGE_ID_HEADER)
        .unwrap()
        .to_owned();
    let r = s.content(&s.alice, &id).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = axum::body::to_bytes(r.into_body(), 1 << 25).await.unwrap();
    assert!(got.as_ref() == bytes.as_slice(), "stored bytes differ");
    let images = s.images(&s.alice).await;
    assert_eq!(images[0]["name"], "big.bin");
    assert!(
        images[0]["identifier"].is_null(),
        "not a picture: no identifier"
    );
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn detect_refuses_malformed_bodies() {
    let s = server().await;
    let raw = |body: String, ct: &str| {
        s.send(
            s.req(Method::POST, "/api/v1/detect", &s.alice)
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap(),
        )
    };
    let r = raw("{not json".into(), "application/json").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(r).await["code"], "invalid_json");
    let r = raw("{}".into(), "text/plain").await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = raw("x".repeat(5 << 20), "application/json").await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let d = digest(b"x");
    let many: Vec<_> = (0..10_001)
        .map(|_| serde_json::json!({"digest": d}))
        .collect();
    let r = s
        .detect(&s.alice, serde_json::json!({ "images": many }))
        .await;
    assert_eq!(body_json(r).await["code"], "batch_too_large");
    let r = s
        .detect(&s.alice, serde_json::json!({"images": [{"digest": "abc"}]}))
        .await;
    assert_eq!(body_json(r).await["code"], "invalid_digest");
    let r = s
        .detect(
            &s.alice,
            serde_json::json!({"images": [{"digest": d, "identifier": format!("{}:abc", photosync_identify::VERSION)}]}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(r).await["code"], "invalid_identifier");
    // A full batch of absent images is answered in order.
    let full: Vec<_> = (0..10_000u32)
        .map(|i| serde_json::json!({"digest": digest(&i.to_le_bytes())}))
        .collect();
    let r = s
        .detect(&s.alice, serde_json::json!({ "images": full }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        body_json(r).await["results"].as_array().unwrap().len(),
        10_000
    );
}

#[tokio::test]
async fn images_are_listed_in_pages() {
    let s = server().await;
    for i in 0..5u8 {
        let bytes = vec![i; 100];
        assert_eq!(
            s.upload(&s.alice, &format!("{i}.bin"), &bytes)
                .await
                .status(),
            StatusCode::NO_CONTENT
        );
    }
    let mut after = 0;
    let mut names = Vec::new();
    loop {
        let r = s
            .send(
                s.req(
                    Method::GET,
                    &format!("/api/v1/images?limit=2&after={after}"),
                    &s.alice,
                )
                .body(Body::empty())
                .unwrap(),
            )
            .await;
        let page = body_json(r).await;
        for i in page["images"].as_array().unwrap() {
            names.push(i["name"].as_str().unwrap().to_owned());
            assert!(
                i.get("identifier").is_none(),
                "not an image, so no identifier"
            );
        }
        match page["next"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(names, ["0.bin", "1.bin", "2.bin", "3.bin", "4.bin"]);
    let r = s
        .send(
            s.req(Method::GET, "/api/v1/images?limit=abc", &s.alice)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

// Hardening: each "Defect" test below failed on the server before its fix (checked by porting
// it to the old code); the others test what the fixes added.

fn streamed(
    s: &Server,
    loc: &str,
    token: &str,
    offset: usize,
) -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    Request<Body>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let req = s
        .req(Method::PATCH, loc, token)
        .header("content-type", tus::OFFSET_CONTENT_TYPE)
        .header(tus::UPLOAD_OFFSET, offset.to_string())
        .body(Body::from_stream(tokio_stream_from(rx)))
        .unwrap();
    (tx, req)
}

/// Sends `bytes` in `pieces` chunks, `gap` apart.
async fn trickle(
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    bytes: &[u8],
    pieces: usize,
    gap: Duration,
) {
    for chunk in bytes.chunks(bytes.len().div_ceil(pieces)) {
        tx.send(Ok(chunk.to_vec())).await.unwrap();
        tokio::time::sleep(gap).await;
    }
}

/// Defects 1 and 2: a PATCH slower than twice the idle timeout kept writing after its lease
/// lapsed, a DELETE from another connection then removed its file, and completion, finding no
/// file, recorded an image for the declared digest: another user's photo, by its digest alone.
#[tokio::test]
async fn a_slow_patch_keeps_its_lease_so_a_delete_cannot_make_it_record_anothers_photo() {
    let s = server_with(Config {
        idle_timeout: Duration::from_millis(600),
        ..Config::default()
    })
    .await;
    let bobs = photo("aqua.jpg");
    assert_eq!(
        s.upload(&s.bob, "aqua.jpg", &bobs).await.status(),
        StatusCode::NO_CONTENT
    );
    // Alice knows only the digest and the size of Bob's photo.
    let garbage = photosync_testkit::noise(bobs.len(), 3);
    let mut m = Metadata::default();
    m.insert("filename", "mine.jpg");
    m.insert("digest", digest(&bobs));
    let r = s.create(&s.alice, bobs.len(), &m.encode()).await;
    let loc = header(&r, "location").unwrap().to_owned();
    let (tx, req) = streamed(&s, &loc, &s.alice, 0);
    let slow = s.send(req);
    // 4 s of body, never idle for the 600 ms timeout, against a 2 s lease; meanwhile a DELETE
    // and a second writer try every 100 ms.
    let others = async {
        let sending = tokio::spawn({
            let garbage = garbage.clone();
            async move { trickle(tx, &garbage, 8, Duration::from_millis(500)).await }
        });
        let mut answers = Vec::new();
        // Until shortly before the body ends (the last piece goes at 3.5 s, the end at 4 s).
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(3400) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let delete = s
                .send(
                    s.req(Method::DELETE, &loc, &s.alice)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            let second = s.patch(&s.alice, &loc, 0, &garbage[..100]).await;
            answers.push((delete.status(), second.status()));
        }
        sending.await.unwrap();
        answers
    };
    let (slow, answers) = tokio::join!(slow, others);
    assert!(answers.len() > 20);
    for (delete, second) in answers {
        assert_eq!(delete, StatusCode::LOCKED, "the lease is still held");
        assert_eq!(second, StatusCode::LOCKED, "the lease is still held");
    }
    assert_eq!(slow.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body_json(slow).await["code"], "digest_mismatch");
    assert!(s.images(&s.alice).await.is_empty(), "no image for Alice");
}

/// Defect 2, the crash path: an upload whose every byte was acknowledged but whose bytes are
/// gone, never verified, must not become an image of the declared digest.
#[tokio::test]
async fn acknowledged_bytes_that_are_gone_restart_the_upload_instead_of_trusting_the_digest() {
    let s = server().await;
    let bobs = photo("aqua.jpg");
    s.upload(&s.bob, "aqua.jpg", &bobs).await;
    let mut m = Metadata::default();
    m.insert("digest", digest(&bobs));
    let r = s.create(&s.alice, bobs.len(), &m.encode()).await;
    let loc = header(&r, "location").unwrap().to_owned();
    let id = loc.trim_start_matches("/files/").to_owned();
    // Every byte acknowledged, then the part file lost (as if deleted under a running request).
    let store = &s.state.store;
    assert!(store.lock_upload(&id, "t", 0, i64::MAX).await.unwrap());
    store
        .advance_upload(&id, "t", 0, bobs.len() as u64, 4_000_000_000)
        .await
        .unwrap();
    store.unlock_upload(&id, "t").await.unwrap();
    s.state.blobs.discard(&id).await.unwrap();
    let r = s.head(&s.alice, &loc).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, tus::UPLOAD_OFFSET), Some("0"), "start again");
    assert_eq!(header(&r, photosync_protocol::IMAGE_ID_HEADER), None);
    assert!(s.images(&s.alice).await.is_empty());
    // And the upload still works from 0.
    assert_eq!(
        s.patch(&s.alice, &loc, 0, &bobs).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.images(&s.alice).await.len(), 1);
}

/// Defect 3: a second writer's open file went on writing into the published blob.
#[tokio::test]
async fn an_upload_has_one_writer_and_a_published_blob_none() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = photosync_server::LocalBlobs::open(dir.path()).unwrap();
    use photosync_server::Blobs;
    let id = "0123456789abcdef0123456789abcdef";
    blobs.create_part(id).await.unwrap();
    let mut first = blobs.open_part(id, 0).await.unwrap();
    let second = blobs.open_part(id, 0).await.map(|_| ()).unwrap_err();
    assert_eq!(second.kind(), std::io::ErrorKind::WouldBlock);
    first.write(b"verified bytes").await.unwrap();
    first.commit().await.unwrap();
    let d = first.digest().await.unwrap().to_hex().to_string();
    assert_eq!(d, digest(b"verified bytes"));
    first.publish(&d).await.unwrap();
    // Nothing can open the upload's bytes for writing any more.
    let after = blobs.open_part(id, 0).await.map(|_| ()).unwrap_err();
    assert_eq!(after.kind(), std::io::ErrorKind::NotFound);
    let (len, mut r) = blobs.open(&d, 0).await.unwrap();
    let mut got = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut r, &mut got)
        .await
        .unwrap();
    assert_eq!((len, got.as_slice()), (14, &b"verified bytes"[..]));
}

/// Defect 4: a removed user's id went to the next new user, with the old near-match index, so
/// detection said "same picture" for a photo the new user never uploaded; image ids were
/// global, so anyone could count other users' images.
#[tokio::test]
async fn ids_are_never_reused_and_reveal_nothing_about_other_users() {
    let s = server().await;
    let aqua = photo("aqua.jpg");
    for name in ["aqua.jpg", "ladybird.jpg"] {
        let r = s.upload(&s.alice, name, &photo(name)).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let r = s.upload(&s.bob, "aqua.jpg", &aqua).await;
    assert_eq!(
        header(&r, photosync_protocol::IMAGE_ID_HEADER),
        Some("1"),
        "Bob's first image is his number 1, whatever Alice holds"
    );
    let identifier = photosync_identify::identify_bytes(&aqua, &Default::default())
        .unwrap()
        .identifier
        .to_string();
    let query =
        serde_json::json!({"images": [{"digest": digest(b"other"), "identifier": identifier}]});
    let r = s.detect(&s.bob, query.clone()).await;
    assert_eq!(body_json(r).await["results"][0]["status"], "candidates");

    // Bob has the highest user id, the one a plain INTEGER PRIMARY KEY gives out again.
    assert!(photosync_server::remove_user(&s.state, "bob")
        .await
        .unwrap());
    let token = "psk_new_bob".to_owned();
    s.state
        .store
        .create_user("bob", &token_hash(&token), 0, None)
        .await
        .unwrap();
    let r = s.detect(&token, query).await;
    assert_eq!(
        body_json(r).await["results"][0]["status"],
        "absent",
        "the new Bob holds nothing"
    );
    assert!(s.images(&token).await.is_empty());
    let r = s
        .upload(&token, "ladybird.jpg", &photo("ladybird.jpg"))
        .await;
    assert_eq!(header(&r, photosync_protocol::IMAGE_ID_HEADER), Some("1"));
    // Alice's shared bytes survived Bob's removal.
    let r = s.content(&s.alice, 1).await;
    assert_eq!(r.status(), StatusCode::OK);
    let got = axum::body::to_bytes(r.into_body(), 1 << 24).await.unwrap();
    assert!(got.as_ref() == aqua.as_slice());
}

/// Defect 6: unfinished uploads were unbounded (400 × 4 GiB accepted), with no quota and no
/// look at the free disk space.
#[tokio::test]
async fn unfinished_uploads_quotas_and_free_space_are_bounded_with_clear_errors() {
    let s = server_with(Config {
        max_unfinished_uploads: 2,
        max_unfinished_bytes: 1000,
        ..Config::default()
    })
    .await;
    let meta = format!(
        "filename {},digest {}",
        STANDARD.encode("a.bin"),
        STANDARD.encode(digest(b"a"))
    );
    assert_eq!(
        s.create(&s.alice, 400, &meta).await.status(),
        StatusCode::CREATED
    );
    let r = s.create(&s.alice, 700, &meta).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body_json(r).await["code"], "too_many_unfinished_bytes");
    assert_eq!(
        s.create(&s.alice, 600, &meta).await.status(),
        StatusCode::CREATED
    );
    let r = s.create(&s.alice, 1, &meta).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body_json(r).await["code"], "too_many_uploads");
    // Bob is not affected by Alice's uploads.
    assert_eq!(
        s.create(&s.bob, 1, &meta).await.status(),
        StatusCode::CREATED
    );

    // A quota counts stored images and unfinished uploads.
    let s = server().await;
    let bytes = photo("aqua.jpg");
    s.state
        .store
        .set_quota("bob", Some(bytes.len() as u64 + 10))
        .await
        .unwrap();
    assert_eq!(
        s.upload(&s.bob, "aqua.jpg", &bytes).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.create(&s.bob, 10, &meta).await.status(),
        StatusCode::CREATED
    );
    let r = s.create(&s.bob, 1, &meta).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = body_json(r).await;
    assert_eq!(body["code"], "quota_exceeded");
    assert!(body["message"].as_str().unwrap().contains("quota"));
    s.state.store.set_quota("bob", None).await.unwrap();
    // Another length, so that this is a new upload, not the one above joined again.
    assert_eq!(
        s.create(&s.bob, 11, &meta).await.status(),
        StatusCode::CREATED
    );

    // Not enough free disk: creations and parts are refused before anything is written.
    let loc = s
        .start(&s.bob, "ladybird.jpg", &photo("ladybird.jpg"))
        .await;
    let full = Server {
        app: router(AppState::new(
            s.state.store.clone(),
            s.state.blobs.clone(),
            Config {
                min_free_space: u64::MAX / 4,
                ..Config::default()
            },
        )),
        state: s.state.clone(),
        _dir: tempfile::tempdir().unwrap(),
        alice: s.alice.clone(),
        bob: s.bob.clone(),
    };
    // Joining Bob's unfinished upload of these 10 bytes needs no room; a new upload does.
    let r = full.create(&full.bob, 10, &meta).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(header(&r, photosync_protocol::JOINED_HEADER).is_some());
    let uploads = s.state.store.upload_ids().await.unwrap().len();
    let r = full.create(&full.bob, 12, &meta).await;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(
        s.state.store.upload_ids().await.unwrap().len(),
        uploads,
        "a refused creation leaves no upload behind"
    );
    assert_eq!(body_json(r).await["code"], "insufficient_storage");
    let r = full.patch(&full.bob, &loc, 0, &photo("ladybird.jpg")).await;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(s.offset(&s.bob, &loc).await, 0);
}

fn part_files(s: &Server) -> usize {
    let dir = s._dir.path().join("uploads");
    std::fs::read_dir(dir).unwrap().count()
}

/// Defect 7: a creation-with-upload refused with 460 or 413 left an upload row and an empty
/// part file whose URL the client never learned.
#[tokio::test]
async fn a_refused_creation_with_upload_leaves_nothing_behind() {
    let s = server().await;
    let bytes = photo("aqua.jpg");
    let with_body = |checksum: String, body: Vec<u8>, content_type: &str| {
        s.req(Method::POST, "/files/", &s.alice)
            .header(tus::UPLOAD_LENGTH, bytes.len().to_string())
            .header(tus::UPLOAD_METADATA, metadata("aqua.jpg", &bytes))
            .header("content-type", content_type)
            .header(tus::UPLOAD_CHECKSUM, checksum)
            .body(Body::from(body))
            .unwrap()
    };
    let sum = |b: &[u8]| format!("blake3 {}", STANDARD.encode(blake3::hash(b).as_bytes()));
    let exact = tus::OFFSET_CONTENT_TYPE;
    let r = s.send(with_body(sum(b"other"), bytes.clone(), exact)).await;
    assert_eq!(r.status().as_u16(), 460);
    let mut longer = bytes.clone();
    longer.push(0);
    let r = s.send(with_body(sum(&longer), longer, exact)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(s.state.store.upload_ids().await.unwrap().is_empty());
    assert_eq!(part_files(&s), 0);
    // The good one answers with the image it stored (it used to name none); the content type
    // is recognised in any letter case and with parameters.
    let typed = "Application/Offset+Octet-Stream; x=y";
    let r = s.send(with_body(sum(&bytes), bytes.clone(), typed)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, photosync_protocol::IMAGE_ID_HEADER), Some("1"));
}

/// Defect 8: removing a user mid-upload ended the upload in a 500 after its file was stored,
/// and left the user's blobs on disk forever.
#[tokio::test]
async fn removing_a_user_mid_upload_ends_it_cleanly_and_collects_only_their_blobs() {
    let s = server().await;
    let shared = photo("aqua.jpg");
    let own = photo("ladybird.jpg");
    for (token, name, bytes) in [
        (&s.alice, "aqua.jpg", &shared),
        (&s.bob, "aqua.jpg", &shared),
        (&s.alice, "ladybird.jpg", &own),
    ] {
        assert_eq!(
            s.upload(token, name, bytes).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    let blob = |d: &str| s._dir.path().join("blobs").join(&d[..2]).join(d);
    assert!(blob(&digest(&own)).exists());
    let third = photo("brick.jpg");
    let loc = s.start(&s.alice, "brick.jpg", &third).await;
    let (tx, req) = streamed(&s, &loc, &s.alice, 0);
    let writing = s.send(req);
    let removing = async {
        tx.send(Ok(third[..1000].to_vec())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(photosync_server::remove_user(&s.state, "alice")
            .await
            .unwrap());
        tx.send(Ok(third[1000..].to_vec())).await.unwrap();
        drop(tx);
    };
    let (r, ()) = tokio::join!(writing, removing);
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "{:?}",
        body_json(r).await
    );
    assert!(!blob(&digest(&own)).exists(), "only Alice held it");
    assert!(!blob(&digest(&third)).exists(), "never published");
    assert!(blob(&digest(&shared)).exists(), "Bob still holds it");
    assert_eq!(part_files(&s), 0);
    let r = s.content(&s.bob, 1).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// New with blob collection (the old server had none, so nothing to regress): a blob that an
/// image references again is never collected, and collection does not get in a new upload's way.
#[tokio::test]
async fn a_collected_blob_can_be_uploaded_again_and_is_kept_while_referenced() {
    let s = server().await;
    let bytes = photo("aqua.jpg");
    s.upload(&s.alice, "aqua.jpg", &bytes).await;
    assert!(photosync_server::remove_user(&s.state, "alice")
        .await
        .unwrap());
    // Bob's upload of the same bytes, with a collection cut short before it.
    let d = digest(&bytes);
    let bobs = s.start(&s.bob, "aqua.jpg", &bytes).await;
    s.state
        .store
        .create_user("carol", &token_hash("psk_carol"), 0, None)
        .await
        .unwrap();
    let carols = s.start("psk_carol", "aqua.jpg", &bytes).await;
    assert_eq!(
        s.patch(&s.bob, &bobs, 0, &bytes).await.status(),
        StatusCode::NO_CONTENT
    );
    // Nothing references the blob only while no image does; Bob's does.
    assert!(s.state.store.doom_unreferenced_blobs().await.unwrap() == 0);
    photosync_server::collect_garbage(&s.state).await.unwrap();
    assert_eq!(
        s.patch("psk_carol", &carols, 0, &bytes).await.status(),
        StatusCode::NO_CONTENT
    );
    let blob = s._dir.path().join("blobs").join(&d[..2]).join(&d);
    assert_eq!(std::fs::read(blob).unwrap(), bytes);
}

/// The smaller ones of the hardening review.
#[tokio::test]
async fn protocol_details_bearer_case_names_content_types_and_json_errors() {
    let s = server().await;
    // The scheme is case-insensitive.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = s
            .send(
                Request::builder()
                    .uri("/api/v1/images")
                    .header("authorization", format!("{scheme} {}", s.alice))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
    }
    // A non-ASCII name goes out as RFC 6266 filename*.
    let bytes = photo("aqua.jpg");
    let name = "été à Zürich.jpg";
    let r = s.upload(&s.alice, name, &bytes).await;
    let id = header(&r, photosync_protocol::IMAGE_ID_HEADER)
        .unwrap()
        .to_owned();
    let r = s.content(&s.alice, &id).await;
    let cd = header(&r, "content-disposition").unwrap();
    assert!(
        cd.contains("filename*=UTF-8''%C3%A9t%C3%A9%20%C3%A0%20Z%C3%BCrich.jpg"),
        "{cd}"
    );
    assert!(cd.contains("filename=\"_t_ _ Z_rich.jpg\""), "{cd}");
    // 405 with a JSON body.
    let r = s
        .send(
            s.req(Method::PUT, "/api/v1/detect", &s.alice)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body_json(r).await["code"], "method_not_allowed");
    // 414 and 431 with JSON bodies.
    let long = format!("/api/v1/images?after={}", "1".repeat(9000));
    let r = s
        .send(
            s.req(Method::GET, &long, &s.alice)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(body_json(r).await["code"], "uri_too_long");
    let mut b = s.req(Method::GET, "/api/v1/images", &s.alice);
    for i in 0..120 {
        b = b.header(format!("x-filler-{i}"), "x");
    }
    let r = s.send(b.body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(body_json(r).await["code"], "headers_too_large");
    // Hex where base64 belongs is named as such.
    let loc = s
        .start(&s.alice, "ladybird.jpg", &photo("ladybird.jpg"))
        .await;
    let r = s
        .send(
            s.req(Method::PATCH, &loc, &s.alice)
                .header("content-type", tus::OFFSET_CONTENT_TYPE)
                .header(tus::UPLOAD_OFFSET, "0")
                .header(tus::UPLOAD_CHECKSUM, format!("sha256 {}", digest(b"x")))
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let msg = body_json(r).await["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("hex"), "{msg}");
}

/// `digest` is optional, so standard tus clients work unchanged: the server computes it.
#[tokio::test]
async fn an_upload_without_a_digest_is_stored_under_the_digest_of_what_arrived() {
    let s = server().await;
    let bytes = photo("aqua.jpg");
    let r = s
        .create(
            &s.alice,
            bytes.len(),
            &format!("filename {}", STANDARD.encode("a.jpg")),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let loc = header(&r, "location").unwrap().to_owned();
    let r = s.patch(&s.alice, &loc, 0, &bytes).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let images = s.images(&s.alice).await;
    assert_eq!(images[0]["digest"], digest(&bytes));
    assert!(
        images[0]["identifier"].is_string(),
        "identified by the server"
    );
}

/// CORS is off by default and, when configured, answers preflights and exposes tus headers.
#[tokio::test]
async fn cors_only_for_configured_origins() {
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/files/")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,tus-resumable,upload-length,upload-metadata",
            )
            .body(Body::empty())
            .unwrap()
    };
    let off = server().await;
    let r = off.send(preflight("https://photos.example")).await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let on = server_with(Config {
        cors_origins: vec!["https://photos.example".into()],
        ..Config::default()
    })
    .await;
    let r = on.send(preflight("https://photos.example")).await;
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://photos.example")
    );
    let allowed = header(&r, "access-control-allow-headers")
        .unwrap()
        .to_owned();
    assert!(allowed.contains("upload-metadata"), "{allowed}");
    let r = on.send(preflight("https://evil.example")).await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let bytes = photo("aqua.jpg");
    let r = on
        .send(
            on.req(Method::POST, "/files/", &on.alice)
                .header("origin", "https://photos.example")
                .header(tus::UPLOAD_LENGTH, bytes.len().to_string())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let exposed = header(&r, "access-control-expose-headers")
        .unwrap()
        .to_owned();
    assert!(
        exposed.contains("location") && exposed.contains("upload-offset"),
        "{exposed}"
    );
    // A tus client's OPTIONS is no preflight: it still learns the server's capabilities.
    let r = on.send(tus_options()).await;
    assert_eq!(header(&r, tus::VERSION_HEADER), Some("1.0.0"));
    assert!(header(&r, tus::MAX_SIZE).is_some());
}

/// Reads until the server closes the connection; the answer, or None if it stayed open for
/// `limit`.
async fn until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

/// Defect 5: partial headers, silent connections and partial detection bodies stayed open
/// forever, each holding memory. Now every connection and request is bounded, and so is the
/// number of connections.
#[tokio::test]
async fn stalled_connections_are_cut_and_cannot_crowd_out_others() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let token = "psk_t";
    let state = AppState::embedded(
        dir.path(),
        Config {
            header_timeout: Duration::from_millis(800),
            request_timeout: Duration::from_millis(800),
            max_connections: 3,
            ..Config::default()
        },
    )
    .unwrap();
    state
        .store
        .create_user("u", &token_hash(token), 0, None)
        .await
        .unwrap();
    let url = photosync_server::spawn_local(state).await.unwrap();
    let addr = url.trim_start_matches("http://").to_owned();
    let connect = || tokio::net::TcpStream::connect(addr.clone());
    let limit = Duration::from_secs(10);

    // Fill every connection slot with stalled clients.
    let mut silent = connect().await.unwrap();
    let mut partial_headers = connect().await.unwrap();
    partial_headers
        .write_all(b"POST /api/v1/detect HTTP/1.1\r\nHost: x\r\nContent-")
        .await
        .unwrap();
    let mut partial_body = connect().await.unwrap();
    partial_body
        .write_all(
            format!(
                "POST /api/v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"images\":["
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // A well-behaved client waits for a slot, and gets one once the stalled are cut.
    let good = tokio::spawn(async move {
        reqwest::Client::new()
            .get(format!("{url}/api/v1/images"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(until_closed(&mut silent, limit).await.is_some(), "silent");
    assert!(
        until_closed(&mut partial_headers, limit).await.is_some(),
        "headers"
    );
    let answer = until_closed(&mut partial_body, limit).await.expect("body");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert_eq!(good.await.unwrap().unwrap(), 200);
    // A kept-alive connection idle between requests is closed too.
    let mut idle = connect().await.unwrap();
    idle.write_all(
        format!("GET /api/v1/images HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let answer = until_closed(&mut idle, limit)
        .await
        .expect("idle keep-alive");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The schema is versioned: a database written by the previous server (no version) is
/// migrated, keeping users, images (their ids become per-user numbers) and uploads.
#[tokio::test]
async fn a_database_of_the_previous_schema_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = rusqlite::Connection::open(dir.path().join("photosync.db")).unwrap();
        let sql = include_str!("schema-v0.sql")
            .replace("ALICE_HASH", &token_hash("psk_alice_token"))
            .replace("BOB_HASH", &token_hash("psk_bob_token"));
        db.execute_batch(&sql).unwrap();
    }
    let s = Server {
        app: router(AppState::embedded(dir.path(), Config::default()).unwrap()),
        state: AppState::embedded(dir.path(), Config::default()).unwrap(),
        _dir: dir,
        alice: "psk_alice_token".into(),
        bob: "psk_bob_token".into(),
    };
    let images = s.images(&s.bob).await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["id"], 2, "the old id is kept as Bob's number");
    assert_eq!(images[0]["name"], "b.jpg");
    assert_eq!(s.images(&s.alice).await.len(), 1);
    // New ids go on after the old ones, and never reuse a removed user's.
    let r = s.upload(&s.bob, "aqua.jpg", &photo("aqua.jpg")).await;
    assert_eq!(header(&r, photosync_protocol::IMAGE_ID_HEADER), Some("3"));
    let users = s.state.store.list_users().await.unwrap();
    assert_eq!(users.len(), 2);
    let id = s
        .state
        .store
        .create_user("carol", &token_hash("psk_carol"), 0, None)
        .await
        .unwrap();
    // Id 3 was removed before the migration, which cannot know it; no running server holds
    // anything of it (the migration runs as the server starts). From now on ids are not reused.
    assert_eq!(id, 3);
    assert!(photosync_server::remove_user(&s.state, "carol")
        .await
        .unwrap());
    let id = s
        .state
        .store
        .create_user("carol", &token_hash("psk_carol"), 0, None)
        .await
        .unwrap();
    assert_eq!(id, 4);
    // The old upload is still there, and the old blob rows are known to the collector.
    let uploads = s.state.store.upload_ids().await.unwrap();
    assert!(uploads.contains(&"0123456789abcdef0123456789abcdef".to_owned()));
    assert!(s.state.store.doom_unreferenced_blobs().await.unwrap() == 0);
}

/// A body that trickles just often enough never to be idle is cut for being too slow, so it
/// cannot hold its connection and the upload's lease for ever.
#[tokio::test]
async fn a_trickling_body_is_cut_like_an_idle_one() {
    let s = server_with(Config {
        idle_timeout: Duration::from_millis(500),
        min_upload_rate: 1000,
        ..Config::default()
    })
    .await;
    let bytes = photo("aqua.jpg");
    let loc = s.start(&s.alice, "aqua.jpg", &bytes).await;
    let (tx, req) = streamed(&s, &loc, &s.alice, 0);
    let sending = tokio::spawn({
        let bytes = bytes.clone();
        // 100 B/s, each piece well inside the idle timeout.
        async move { trickle(tx, &bytes[..300], 30, Duration::from_millis(100)).await }
    });
    let r = s.send(req).await;
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "kept what came, as tus allows"
    );
    let kept: u64 = header(&r, tus::UPLOAD_OFFSET).unwrap().parse().unwrap();
    assert!(kept < 300, "cut before the trickle ended: {kept}");
    sending.abort();
    // The lease is free again: the client can go on at a proper pace.
    let r = s.patch(&s.alice, &loc, kept, &bytes[kept as usize..]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s.images(&s.alice).await.len(), 1);
}

/// A request cancelled while it holds an upload's lease (a timeout, a shutdown) gives the
/// lease back instead of leaving the upload busy until it lapses (a minute by default).
#[tokio::test]
async fn a_cancelled_request_gives_its_lease_back() {
    let s = server().await;
    let bytes = photo("aqua.jpg");
    let loc = s.start(&s.alice, "aqua.jpg", &bytes).await;
    let (tx, req) = streamed(&s, &loc, &s.alice, 0);
    let app = s.app.clone();
    let writing = tokio::spawn(async move { app.oneshot(req).await });
    tx.send(Ok(bytes[..1000].to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.patch(&s.alice, &loc, 0, &bytes).await.status(),
        StatusCode::LOCKED
    );
    writing.abort();
    let mut status = StatusCode::LOCKED;
    for _ in 0..50 {
        status = s.patch(&s.alice, &loc, 0, &bytes).await.status();
        if status != StatusCode::LOCKED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, StatusCode::NO_CONTENT);
    drop(tx);
}

/// A Linux file name is up to 255 arbitrary bytes. Sent as UTF-8 text, a name that is not
/// UTF-8 lost its bytes (and grew past 255 and was refused); `filename-bytes` carries them
/// exactly, and the image list gives them back for a restore.
#[tokio::test]
async fn a_file_name_that_is_not_utf8_is_kept_byte_for_byte() {
    let s = server().await;
    let raw: Vec<u8> = (0x80..=0xfb).collect();
    assert_eq!(raw.len(), 124);
    let bytes = photo("aqua.jpg");
    let r = s
        .create(
            &s.alice,
            bytes.len(),
            &metadata_with_name_bytes(&raw, &bytes),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", body_json(r).await);
    let loc = header(&r, "location").unwrap().to_owned();
    assert_eq!(
        s.patch(&s.alice, &loc, 0, &bytes).await.status(),
        StatusCode::NO_CONTENT
    );
    // Linux allows a line break and a backslash in a name; the display form does not.
    let odd = b"a\\b\nc.jpg";
    let other = photo("ladybird.jpg");
    let r = s
        .create(
            &s.alice,
            other.len(),
            &metadata_with_name_bytes(odd, &other),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", body_json(r).await);
    let loc = header(&r, "location").unwrap().to_owned();
    assert_eq!(
        s.patch(&s.alice, &loc, 0, &other).await.status(),
        StatusCode::NO_CONTENT
    );
    s.upload(&s.alice, "plain.jpg", &photo("dune.jpg")).await;

    let images = s.images(&s.alice).await;
    assert_eq!(images.len(), 3);
    let name_bytes =
        |i: usize| percent_decode_name(images[i]["name_bytes"].as_str().unwrap()).unwrap();
    assert_eq!(name_bytes(0), raw);
    assert_eq!(images[0]["name"], display_name(&raw));
    assert_eq!(name_bytes(1), odd);
    assert_eq!(images[1]["name"], "a\u{fffd}b\u{fffd}c.jpg");
    assert_eq!(images[2]["name"], "plain.jpg");
    assert!(
        images[2].get("name_bytes").is_none(),
        "none sent, none said"
    );
    // The image record says the same.
    let r = s
        .send(
            s.req(Method::GET, "/api/v1/images/1", &s.alice)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let record = body_json(r).await;
    assert_eq!(
        percent_decode_name(record["name_bytes"].as_str().unwrap()).unwrap(),
        raw
    );
}

#[tokio::test]
async fn malformed_or_unsafe_name_bytes_are_refused_and_create_nothing() {
    let s = server().await;
    let with = |encoded: &str| {
        let mut m = Metadata::default();
        m.insert(meta::NAME, "a.jpg");
        m.insert(meta::NAME_BYTES, encoded);
        m.insert(meta::DIGEST, digest(b"abc"));
        m.encode()
    };
    let cases = [
        ("truncated escape", "a%4".to_owned()),
        ("not hex", "a%G1".to_owned()),
        ("lone percent", "%".to_owned()),
        ("unencoded space", "a b".to_owned()),
        ("unencoded slash", "a/b".to_owned()),
        ("unencoded non-ASCII", "é".to_owned()),
        ("empty", String::new()),
        ("256 bytes", "%41".repeat(256)),
        ("slash", "a%2Fb".to_owned()),
        ("NUL", "a%00b".to_owned()),
        ("dot", ".".to_owned()),
        ("dot dot", "%2E%2E".to_owned()),
    ];
    for (what, encoded) in cases {
        let r = s.create(&s.alice, 3, &with(&encoded)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(body_json(r).await["code"], "invalid_filename", "{what}");
    }
    assert!(s.state.store.upload_ids().await.unwrap().is_empty());
    assert_eq!(part_files(&s), 0);
    // 255 bytes is the most, and fine.
    let r = s.create(&s.alice, 3, &with(&"%41".repeat(255))).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Two clients syncing one folder to one account each create an upload for the same file: the
/// second creation gets the first's unfinished upload, so the file is sent once, and the
/// offset conflict (409) and the lease (423) keep the two writers apart.
#[tokio::test]
async fn a_second_creation_of_an_unfinished_upload_joins_it() {
    let s = server().await;
    let bytes = photo("aqua.jpg");
    let first = s.start(&s.alice, "aqua.jpg", &bytes).await;
    let r = s
        .create(&s.alice, bytes.len(), &metadata("aqua.jpg", &bytes))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The answer says the upload is joined, and where it stands.
    assert_eq!(header(&r, photosync_protocol::JOINED_HEADER), Some("0"));
    assert_eq!(header(&r, photosync_protocol::IMAGE_ID_HEADER), None);
    let second = header(&r, "location").unwrap().to_owned();
    assert_eq!(second, first);

    let half = bytes.len() / 2;
    let r = s.patch(&s.alice, &first, 0, &bytes[..half]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // The other writer believes it is at 0: told where the upload stands, it sends the rest.
    let r = s.patch(&s.alice, &second, 0, &bytes).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        header(&r, tus::UPLOAD_OFFSET),
        Some(half.to_string().as_str())
    );
    assert_eq!(s.offset(&s.alice, &second).await, half as u64);
    let r = s
        .patch(&s.alice, &second, half as u64, &bytes[half..])
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let image = header(&r, photosync_protocol::IMAGE_ID_HEADER)
        .unwrap()
        .to_owned();
    // The first writer, going on, learns that the file is stored.
    let r = s.head(&s.alice, &first).await;
    assert_eq!(
        header(&r, photosync_protocol::IMAGE_ID_HEADER),
        Some(image.as_str())
    );
    assert_eq!(s.images(&s.alice).await.len(), 1);

    // Once stored, a creation of the same file is answered with a finished upload (the one
    // that stored it): the answer names the image, and no byte is asked for.
    let r = s
        .create(&s.alice, bytes.len(), &metadata("aqua.jpg", &bytes))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, photosync_protocol::JOINED_HEADER),
        Some(bytes.len().to_string().as_str())
    );
    assert_eq!(
        header(&r, photosync_protocol::IMAGE_ID_HEADER),
        Some(image.as_str())
    );
    let again = header(&r, "location").unwrap().to_owned();
    let r = s.head(&s.alice, &again).await;
    assert_eq!(
        header(&r, tus::UPLOAD_OFFSET),
        Some(bytes.len().to_string().as_str())
    );
    assert_eq!(
        header(&r, photosync_protocol::IMAGE_ID_HEADER),
        Some(image.as_str())
    );
    assert_eq!(
        s.patch(&s.alice, &again, 0, &bytes).await.status(),
        StatusCode::BAD_REQUEST,
        "a finished upload takes no bytes"
    );
    assert_eq!(s.images(&s.alice).await.len(), 1);

    // Another user never shares, and cannot reach Alice's upload.
    let bobs = s.start(&s.bob, "aqua.jpg", &bytes).await;
    assert_ne!(bobs, again);
    assert_eq!(s.head(&s.bob, &again).await.status(), StatusCode::NOT_FOUND);
    // Another length is another file, whatever digest it declares.
    let r = s
        .create(&s.alice, bytes.len() + 1, &metadata("aqua.jpg", &bytes))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_ne!(header(&r, "location"), Some(again.as_str()));
    // A creation-with-upload brings its own bytes, and gets its own upload.
    let r = s
        .send(
            s.req(Method::POST, "/files/", &s.alice)
                .header(tus::UPLOAD_LENGTH, bytes.len().to_string())
                .header(tus::UPLOAD_METADATA, metadata("aqua.jpg", &bytes))
                .header("content-type", tus::OFFSET_CONTENT_TYPE)
                .body(Body::from(bytes[..1000].to_vec()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_ne!(header(&r, "location"), Some(again.as_str()));
    // Without a declared digest there is nothing to match on.
    let mut m = Metadata::default();
    m.insert(meta::NAME, "aqua.jpg");
    let undeclared = s.create(&s.alice, bytes.len(), &m.encode()).await;
    let undeclared = header(&undeclared, "location").unwrap().to_owned();
    let r = s.create(&s.alice, bytes.len(), &m.encode()).await;
    assert_ne!(header(&r, "location"), Some(undeclared.as_str()));
}

#[tokio::test]
async fn a_joined_upload_counts_once_against_limits_and_quota() {
    let bytes = photo("aqua.jpg");
    let s = server_with(Config {
        max_unfinished_uploads: 1,
        max_unfinished_bytes: bytes.len() as u64,
        ..Config::default()
    })
    .await;
    s.state
        .store
        .set_quota("alice", Some(bytes.len() as u64))
        .await
        .unwrap();
    let first = s.start(&s.alice, "aqua.jpg", &bytes).await;
    for _ in 0..3 {
        assert_eq!(s.start(&s.alice, "aqua.jpg", &bytes).await, first);
    }
    let r = s.create(&s.alice, 10, &metadata("b.bin", b"b")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the limits hold");
    assert_eq!(
        s.patch(&s.alice, &first, 0, &bytes).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.state.store.upload_ids().await.unwrap().len(), 1);
    // The quota is used up, yet a creation of the stored file is answered: it needs no byte.
    let r = s
        .create(&s.alice, bytes.len(), &metadata("aqua.jpg", &bytes))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(header(&r, photosync_protocol::IMAGE_ID_HEADER).is_some());
    // Asked again and again, it adds no upload.
    for _ in 0..5 {
        let r = s
            .create(&s.alice, bytes.len(), &metadata("aqua.jpg", &bytes))
            .await;
        assert_eq!(header(&r, "location"), Some(first.as_str()));
    }
    assert_eq!(s.state.store.upload_ids().await.unwrap().len(), 1);
    let r = s.create(&s.alice, 10, &metadata("b.bin", b"b")).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "the quota holds");
}

/// Schema version 2 adds the exact bytes of file names; a version 1 database gains the columns
/// and keeps its users, images and unfinished uploads.
#[tokio::test]
async fn a_database_of_schema_version_1_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("photosync.db");
    {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        let sql = include_str!("schema-v1.sql")
            .replace("ALICE_HASH", &token_hash("psk_alice_token"))
            .replace("BOB_HASH", &token_hash("psk_bob_token"))
            .replace("ABC_DIGEST", &digest(b"abc"));
        db.execute_batch(&sql).unwrap();
    }
    let s = reopened(dir);
    let version: i64 = rusqlite::Connection::open(&db_path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
    let images = s.images(&s.alice).await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["name"], "a.jpg");
    assert!(images[0].get("name_bytes").is_none());
    // The old upload goes on and becomes Alice's second image, with no name bytes.
    let old = "/files/0123456789abcdef0123456789abcdef";
    let r = s.patch(&s.alice, old, 0, b"abc").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&r, photosync_protocol::IMAGE_ID_HEADER), Some("2"));
    // New uploads keep their names' bytes.
    let raw = b"caf\xe9.jpg";
    let bytes = photo("aqua.jpg");
    let r = s
        .create(&s.bob, bytes.len(), &metadata_with_name_bytes(raw, &bytes))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let loc = header(&r, "location").unwrap().to_owned();
    assert_eq!(
        s.patch(&s.bob, &loc, 0, &bytes).await.status(),
        StatusCode::NO_CONTENT
    );
    let images = s.images(&s.alice).await;
    assert_eq!(images[1]["name"], "c.jpg");
    assert!(images[1].get("name_bytes").is_none());
    let bobs = s.images(&s.bob).await;
    assert_eq!(bobs[0]["name_bytes"], "caf%E9.jpg");
    // Opening it again changes nothing.
    drop(AppState::embedded(s._dir.path(), Config::default()).unwrap());
}

/// Schema version 3 keeps the server's verification evidence. Images of a version 2
/// database, with identifiers of the previous version, match nothing by picture (the safe
/// answer) until the background pass identifies them again from their blobs; then they are
/// candidates with evidence.
#[tokio::test]
async fn images_of_schema_version_2_are_identified_again_before_they_match() {
    let s = server().await;
    let garden = photo("garden.jpg");
    assert_eq!(
        s.upload(&s.alice, "garden.jpg", &garden).await.status(),
        StatusCode::NO_CONTENT
    );
    let dir = s._dir;
    drop(s.app);
    drop(s.state);
    {
        // What a version 2 server left: no evidence column, a v1 identifier.
        let db = rusqlite::Connection::open(dir.path().join("photosync.db")).unwrap();
        db.execute_batch(
            "DROP INDEX images_unverified;
             DROP INDEX images_day;
             ALTER TABLE images DROP COLUMN folder;
             ALTER TABLE images DROP COLUMN taken;
             ALTER TABLE images DROP COLUMN day;
             ALTER TABLE images DROP COLUMN evidence;
             UPDATE images SET identifier = 'v1:' || substr(identifier, 4);
             ALTER TABLE blobs DROP COLUMN collector;
             ALTER TABLE blobs DROP COLUMN claimed_at;
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let s = reopened(dir);
    let copy = photosync_testkit::make_copy(&garden, photosync_testkit::Copy::Reencode75);
    let copy = photosync_identify::identify_bytes(&copy, &Default::default()).unwrap();
    let query = serde_json::json!({"images": [
        {"digest": copy.digest.to_string(), "identifier": copy.identifier.to_string()},
        // A client of the previous version: answered by its digest alone, not refused.
        {"digest": digest(&garden), "identifier": format!("v1:{}", "0".repeat(148))},
    ]});
    let r = s.detect(&s.alice, query.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let results = body_json(r).await["results"].clone();
    assert_eq!(results[0]["status"], "absent");
    assert_eq!(results[1]["status"], "same_bytes");

    assert_eq!(photosync_server::reidentify(&s.state).await.unwrap(), 1);
    let images = s.images(&s.alice).await;
    assert!(images[0]["identifier"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}:", photosync_identify::VERSION)));
    let results = body_json(s.detect(&s.alice, query).await).await["results"].clone();
    assert_eq!(results[0]["status"], "candidates");
    let evidence: photosync_identify::Evidence = results[0]["candidates"][0]["evidence"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(photosync_identify::verify(&copy.evidence, &evidence).is_ok());
    // Nothing is left to do.
    assert_eq!(photosync_server::reidentify(&s.state).await.unwrap(), 0);
}

/// HEADs that meet a PATCH completing the upload never see it deleted or reset: a HEAD reads
/// the upload again once it holds the lease, and finishes only a completion that still stands
/// cut short. (A HEAD acting on its first read took the lease just after the PATCH released it,
/// found the part file published and answered 404.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heads_racing_the_completing_patch_never_lose_the_upload() {
    let s = std::sync::Arc::new(server().await);
    for round in 0..40u64 {
        let bytes = photosync_testkit::noise(20_000, 500 + round);
        let loc = s.start(&s.alice, "clip.bin", &bytes).await;
        let half = bytes.len() / 2;
        let r = s.patch(&s.alice, &loc, 0, &bytes[..half]).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        let heads: Vec<_> = (0..4)
            .map(|_| {
                let (s, loc) = (s.clone(), loc.clone());
                tokio::spawn(async move {
                    for _ in 0..10_000 {
                        let r = s.head(&s.alice, &loc).await;
                        if r.status() != StatusCode::OK {
                            return Err(r.status());
                        }
                        if header(&r, photosync_protocol::IMAGE_ID_HEADER).is_some() {
                            return Ok(());
                        }
                        tokio::task::yield_now().await;
                    }
                    Ok(())
                })
            })
            .collect();
        let r = s.patch(&s.alice, &loc, half as u64, &bytes[half..]).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "round {round}");
        for h in heads {
            assert_eq!(h.await.unwrap(), Ok(()), "round {round}");
        }
        let r = s.head(&s.alice, &loc).await;
        assert_eq!(
            header(&r, tus::UPLOAD_OFFSET),
            Some(bytes.len().to_string().as_str()),
            "round {round}"
        );
        assert!(header(&r, photosync_protocol::IMAGE_ID_HEADER).is_some());
    }
    assert_eq!(s.images(&s.alice).await.len(), 40);
}

async fn body_bytes(r: Response<Body>) -> Vec<u8> {
    axum::body::to_bytes(r.into_body(), 1 << 26)
        .await
        .unwrap()
        .to_vec()
}

/// A JPEG of a real photo taken at `when` (`YYYY:MM:DD HH:MM:SS`), by its EXIF.
fn taken_at(name: &str, when: &str) -> Vec<u8> {
    let pixels = photosync_testkit::decode(&photo(name));
    let exif = photosync_testkit::exif_taken(when, "25", "X100");
    photosync_testkit::jpeg(&pixels, 90, false, Some(&exif))
}

#[tokio::test]
async fn images_keep_folder_capture_time_and_format_and_lists_filter_by_day_and_name() {
    let s = server().await;
    let summer = taken_at("garden.jpg", "2021:06:05 10:11:12");
    let winter = taken_at("storm.jpg", "2019:12:31 23:59:59");
    let plain = photosync_testkit::make_copy(&photo("dune.jpg"), photosync_testkit::Copy::Stripped);
    let a = s
        .upload_with(
            &s.alice,
            "Summer_1.jpg",
            &summer,
            &[(meta::FOLDER, "2021/Été")],
        )
        .await;
    let b = s.upload_with(&s.alice, "winter%.jpg", &winter, &[]).await;
    // No capture time: its modification time (2020-03-01 12:00 UTC) dates it.
    let c = s
        .upload_with(&s.alice, "dune.jpg", &plain, &[(meta::MTIME, "1583064000")])
        .await;
    let images = s.images(&s.alice).await;
    assert_eq!(images[0]["id"], a);
    assert_eq!(images[0]["folder"], "2021/Été");
    assert_eq!(images[0]["taken"], "2021-06-05T10:11:12.25");
    assert_eq!(images[0]["format"], "jpeg");
    assert!(images[1].get("folder").is_none());
    assert_eq!(images[2]["mtime"], 1583064000);
    assert!(images[2].get("taken").is_none());

    let ids = |list: Vec<serde_json::Value>| -> Vec<i64> {
        list.iter().map(|i| i["id"].as_i64().unwrap()).collect()
    };
    assert_eq!(
        ids(s.images_where(&s.alice, "since=2020-01-01").await),
        [a, c]
    );
    assert_eq!(ids(s.images_where(&s.alice, "until=2019-12-31").await), [b]);
    assert_eq!(
        ids(s
            .images_where(&s.alice, "since=2020-03-01&until=2020-03-01")
            .await),
        [c]
    );
    assert_eq!(
        ids(s.images_where(&s.alice, "since=2021-06-06").await),
        [] as [i64; 0]
    );
    // Names: a part, any ASCII case; `%` and `_` are plain characters.
    assert_eq!(ids(s.images_where(&s.alice, "name=SUMMER").await), [a]);
    assert_eq!(ids(s.images_where(&s.alice, "name=%25").await), [b]);
    assert_eq!(ids(s.images_where(&s.alice, "name=_").await), [a]);
    assert_eq!(
        ids(s.images_where(&s.alice, "name=.jpg&until=2020-12-31").await),
        [b, c]
    );
    // Bob's list is his own, filters or not.
    assert!(s.images_where(&s.bob, "name=jpg").await.is_empty());

    for bad in [
        "since=2021-6-5",
        "until=yesterday",
        "since=2021-06-05T00",
        "limit=x",
    ] {
        let r = s.get(&s.alice, &format!("/api/v1/images?{bad}"), &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body_json(r).await["code"], "invalid_query", "{bad}");
    }
    for bad in ["../x", "/abs", "a//b", "a\\b", "a/./b"] {
        let mut m = Metadata::default();
        m.insert(meta::NAME, "x.jpg");
        m.insert(meta::FOLDER, bad);
        let r = s.create(&s.alice, 10, &m.encode()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body_json(r).await["code"], "invalid_folder", "{bad}");
    }
    assert_eq!(s.images(&s.alice).await.len(), 3);
}

#[tokio::test]
async fn thumbnails_are_made_once_cached_with_validators_and_collected_with_the_blob() {
    let s = server().await;
    let garden = photo("garden.jpg");
    let id = s.upload_with(&s.alice, "garden.jpg", &garden, &[]).await;
    let uri = |size: u32| format!("/api/v1/images/{id}/thumbnail?size={size}");
    let mut first = Vec::new();
    for size in photosync_protocol::THUMBNAIL_SIZES {
        let r = s.get(&s.alice, &uri(size), &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), Some("image/jpeg"));
        assert!(header(&r, "cache-control").unwrap().contains("immutable"));
        let etag = header(&r, "etag").unwrap().to_owned();
        assert_eq!(etag, format!("\"{}-{size}\"", digest(&garden)));
        let jpeg = body_bytes(r).await;
        let img = image::load_from_memory(&jpeg).unwrap();
        assert_eq!(
            img.width().max(img.height()),
            size,
            "the longest side is {size}"
        );
        // The cached one is the same; a client holding it gets 304 without a body.
        let again = s.get(&s.alice, &uri(size), &[]).await;
        assert_eq!(body_bytes(again).await, jpeg);
        let r = s
            .get(&s.alice, &uri(size), &[("if-none-match", &etag)])
            .await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(body_bytes(r).await.is_empty());
        first.push(jpeg);
    }
    let default = s
        .get(&s.alice, &format!("/api/v1/images/{id}/thumbnail"), &[])
        .await;
    assert_eq!(body_bytes(default).await, first[1]);
    let cached = |s: &Server| walkdir(&s._dir.path().join("thumbs"));
    assert_eq!(cached(&s).len(), 2);

    let r = s.get(&s.alice, &uri(100), &[]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(r).await["code"], "invalid_size");
    // Another user's id, an unknown one and a non-number: 404 as for records.
    for (token, path) in [
        (&s.bob, uri(128)),
        (&s.alice, "/api/v1/images/999/thumbnail".to_owned()),
        (&s.alice, "/api/v1/images/x/thumbnail".to_owned()),
    ] {
        let r = s.get(token, &path, &[]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body_json(r).await["code"], "not_found");
    }
    // Bytes that are no picture, and a truncated one, have none: a clear 404 of their own.
    let text = b"not a picture at all".to_vec();
    let cut = garden[..garden.len() / 3].to_vec();
    for (name, bytes) in [("notes.jpg", &text), ("cut.jpg", &cut)] {
        let other = s.upload_with(&s.alice, name, bytes, &[]).await;
        let r = s
            .get(
                &s.alice,
                &format!("/api/v1/images/{other}/thumbnail?size=128"),
                &[],
            )
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{name}");
        assert_eq!(body_json(r).await["code"], "no_thumbnail", "{name}");
    }
    // The thumbnails go with the blob.
    assert!(photosync_server::remove_user(&s.state, "alice")
        .await
        .unwrap());
    assert_eq!(cached(&s), Vec::<std::path::PathBuf>::new());
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn downloads_answer_byte_ranges_and_validators() {
    let s = server().await;
    let bytes = photo("storm.jpg");
    let len = bytes.len();
    let id = s.upload_with(&s.alice, "storm.jpg", &bytes, &[]).await;
    let uri = format!("/api/v1/images/{id}/content");
    let etag = format!("\"{}\"", digest(&bytes));

    let r = s.get(&s.alice, &uri, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "accept-ranges"), Some("bytes"));
    assert_eq!(header(&r, "etag"), Some(etag.as_str()));
    assert_eq!(body_bytes(r).await, bytes);

    for (range, start, end) in [
        ("bytes=10-19".to_owned(), 10, 19),
        ("bytes=-100".to_owned(), len - 100, len - 1),
        (format!("bytes={}-", len - 7), len - 7, len - 1),
        (format!("bytes=5-{}", len * 2), 5, len - 1),
    ] {
        let r = s.get(&s.alice, &uri, &[("range", &range)]).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&r, "content-range").unwrap(),
            format!("bytes {start}-{end}/{len}")
        );
        assert_eq!(
            header(&r, "content-length").unwrap(),
            (end - start + 1).to_string()
        );
        assert_eq!(body_bytes(r).await, &bytes[start..=end], "{range}");
    }
    // The same version: the range; another: the whole file.
    let r = s
        .get(
            &s.alice,
            &uri,
            &[("range", "bytes=0-9"), ("if-range", &etag)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let r = s
        .get(
            &s.alice,
            &uri,
            &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_bytes(r).await, bytes);
    // Several ranges or a malformed one: the whole file, as a server may answer.
    for range in ["bytes=0-1,5-6", "bytes=x-y", "lines=1-2"] {
        let r = s.get(&s.alice, &uri, &[("range", range)]).await;
        assert_eq!(r.status(), StatusCode::OK, "{range}");
        assert_eq!(body_bytes(r).await.len(), len);
    }
    let past = format!("bytes={len}-");
    let r = s.get(&s.alice, &uri, &[("range", &past)]).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header(&r, "content-range").unwrap(),
        format!("bytes */{len}")
    );
    assert_eq!(body_json(r).await["code"], "range_not_satisfiable");
    let r = s.get(&s.alice, &uri, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // Another user's id answers 404 whatever the headers.
    let r = s.get(&s.bob, &uri, &[("range", "bytes=0-9")]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_database_of_schema_version_3_gets_capture_times_and_days() {
    let s = server().await;
    let summer = taken_at("garden.jpg", "2021:06:05 10:11:12");
    let plain = photosync_testkit::make_copy(&photo("dune.jpg"), photosync_testkit::Copy::Stripped);
    s.upload_with(&s.alice, "summer.jpg", &summer, &[]).await;
    s.upload_with(&s.alice, "dune.jpg", &plain, &[(meta::MTIME, "1583064000")])
        .await;
    let dir = s._dir;
    drop(s.app);
    drop(s.state);
    {
        // What a version 3 server left: the same images without the version 4 columns.
        let db = rusqlite::Connection::open(dir.path().join("photosync.db")).unwrap();
        db.execute_batch(
            "DROP INDEX images_day;
             ALTER TABLE images DROP COLUMN folder;
             ALTER TABLE images DROP COLUMN taken;
             ALTER TABLE images DROP COLUMN day;
             ALTER TABLE blobs DROP COLUMN collector;
             ALTER TABLE blobs DROP COLUMN claimed_at;
             PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let s = reopened(dir);
    let images = s.images(&s.alice).await;
    assert_eq!(images[0]["taken"], "2021-06-05T10:11:12.25");
    assert!(images[1].get("taken").is_none());
    assert_eq!(
        s.images_where(&s.alice, "since=2021-06-05&until=2021-06-05")
            .await
            .len(),
        1
    );
    assert_eq!(s.images_where(&s.alice, "until=2020-03-01").await.len(), 1);
    let version: i64 = rusqlite::Connection::open(s._dir.path().join("photosync.db"))
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
}
