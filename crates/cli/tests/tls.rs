//! `photosync sync` to a server behind HTTPS: the real server process behind a TLS front on
//! loopback (what a reverse proxy does in a real install), with a certificate made here.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use photosync_testkit::{add_user, photos_dir, ServerProcess};
use tokio_rustls::rustls;

const SERVER: &str = env!("CARGO_BIN_EXE_photosync-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_photosync");

/// Accepts TLS on a loopback port and forwards the plain bytes to `backend`. Returns the port.
fn tls_front(cert: &rcgen::CertifiedKey, backend: String) -> u16 {
    let chain = vec![cert.cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    // The ring provider by name, as reqwest's client uses it; no process default is needed.
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, backend) = (acceptor.clone(), backend.clone());
                tokio::spawn(async move {
                    // A client that distrusts the certificate ends the handshake: nothing to do.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
    });
    port
}

fn sync(dir: &Path, url: &str, token: &str, state: &Path, trust: &Path) -> Output {
    Command::new(CLIENT)
        .args(["sync", dir.to_str().unwrap()])
        .env("PHOTOSYNC_SERVER", url)
        .env("PHOTOSYNC_TOKEN", token)
        .env("PHOTOSYNC_STATE", state)
        .env("PHOTOSYNC_CONFIG", state.with_extension("toml"))
        // The roots to trust instead of the system's (rustls-native-certs reads it).
        .env("SSL_CERT_FILE", trust)
        .env_remove("SSL_CERT_DIR")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn sync_over_https_trusts_the_named_certificate_and_refuses_another() {
    let data = tempfile::tempdir().unwrap();
    let token = add_user(Path::new(SERVER), data.path(), "me");
    let server = ServerProcess::start(Path::new(SERVER), data.path(), &[]);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let port = tls_front(&cert, server.url.trim_start_matches("http://").to_owned());
    let url = format!("https://localhost:{port}");

    let local = tempfile::tempdir().unwrap();
    let lib = local.path().join("photos");
    std::fs::create_dir(&lib).unwrap();
    for n in ["aqua.jpg", "dune.jpg"] {
        std::fs::copy(photos_dir().join(n), lib.join(n)).unwrap();
    }
    let trusted = local.path().join("server.pem");
    std::fs::write(&trusted, cert.cert.pem()).unwrap();
    let other = local.path().join("other.pem");
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&other, stranger.cert.pem()).unwrap();

    // A certificate nobody vouched for: refused with the reason, and nothing recorded.
    let state = local.path().join("state.db");
    let refused = sync(&lib, &url, &token, &state, &other);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(err.contains("certificate is not trusted"), "{err}");
    assert!(
        err.contains("invalid peer certificate"),
        "the detail is kept: {err}"
    );

    // The server's own certificate trusted: both photos go up over TLS, in parts.
    let ok = sync(&lib, &url, &token, &state, &trusted);
    assert!(ok.status.success(), "{ok:?}");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.starts_with("uploaded 2, already synced 0"), "{out}");
    let db = rusqlite::Connection::open(data.path().join("photosync.db")).unwrap();
    let stored: i64 = db
        .query_row("SELECT COUNT(*) FROM images", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 2);

    // Plain HTTP to the TLS port is an error, not a hang.
    let plain = sync(
        &lib,
        &format!("http://localhost:{port}"),
        &token,
        &local.path().join("plain.db"),
        &trusted,
    );
    assert!(!plain.status.success(), "{plain:?}");
}
