//! The server's HTTP API as the engine uses it: batched detection and a tus 1.0.0 client.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use photosync_protocol::{
    from_json, path, to_json, tus, ApiError, DetectQuery, DetectRequest, DetectResponse,
    DetectResult, Metadata, DETECT_MAX_BATCH, IMAGE_ID_HEADER, NAME_HEADER,
};

/// Where to sync to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub token: String,
}

impl ServerConfig {
    /// The key the sync list is kept under: one list per server and account.
    pub fn key(&self) -> String {
        let account = blake3::hash(self.token.as_bytes()).to_hex();
        format!("{}#{}", self.url.trim_end_matches('/'), &account[..16])
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the server: {0}")]
    Network(String),
    #[error("server answered {status} {code}: {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// What a failed request means to an upload, classified once from the status and the
/// server's code, so callers match kinds instead of raw statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request or its answer was lost on the way (refused, reset, timed out).
    Network,
    /// The upload is not there (any more): expired, removed, never made (404, 410).
    Gone,
    /// The offset sent is not the server's (409).
    OffsetMismatch,
    /// Another writer holds the upload's lease (423).
    Busy,
    /// Another writer finished the upload: HEAD names its image.
    Finished,
    /// The bytes stored are not the digest declared: the file changed.
    DigestMismatch,
    /// The part's checksum did not match its bytes (460): resend it.
    ChecksumMismatch,
    /// The server is out of space (507): not fixed in seconds.
    NoSpace,
    /// Worth trying again after a pause (408, 429, 5xx).
    Transient,
    /// The server refuses the file itself (422: a name or metadata it cannot take).
    Refused,
    /// The token was not accepted (401, 403).
    Unauthorized,
    /// Any other refusal (4xx): trying again changes nothing.
    Rejected,
    /// An answer that is not the protocol's.
    Protocol,
}

impl ClientError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Network(_) => ErrorKind::Network,
            ClientError::Protocol(_) => ErrorKind::Protocol,
            ClientError::Http { status, code, .. } => match (*status, code.as_str()) {
                (_, "upload_finished") => ErrorKind::Finished,
                (_, "digest_mismatch") => ErrorKind::DigestMismatch,
                (404 | 410, _) => ErrorKind::Gone,
                (409, _) => ErrorKind::OffsetMismatch,
                (423, _) => ErrorKind::Busy,
                (460, _) => ErrorKind::ChecksumMismatch,
                (507, _) => ErrorKind::NoSpace,
                (408 | 429 | 500..=599, _) => ErrorKind::Transient,
                (422, _) => ErrorKind::Refused,
                (401 | 403, _) => ErrorKind::Unauthorized,
                _ => ErrorKind::Rejected,
            },
        }
    }

    /// Worth trying again after a pause.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Network | ErrorKind::Busy | ErrorKind::NoSpace | ErrorKind::Transient
        )
    }

    /// The server's error code (`digest_mismatch`, `insufficient_storage`...), if it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Http { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The error with its causes: reqwest's own text names only the URL, the cause says why
/// (refused, timed out, a certificate not trusted).
fn network(e: reqwest::Error) -> ClientError {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    ClientError::Network(text)
}

/// Why a server could not be reached, in the words a person would use, from the error's
/// chain of causes (whose own words are kept at the end, for whoever needs the detail).
fn unreachable_reason(chain: &str) -> Unreachable {
    let c = chain.to_ascii_lowercase();
    let plain = if c.contains("invalidcontenttype") || c.contains("corrupt message") {
        "it does not speak HTTPS at this address (try http://)"
    } else if c.contains("connection refused") {
        "nothing is listening at this address (connection refused)"
    } else if c.contains("dns error") || c.contains("failed to lookup") {
        "the server's name cannot be resolved"
    } else if c.contains("certificate") || c.contains("unknownissuer") {
        "its certificate is not trusted (for your own CA, set SSL_CERT_FILE)"
    } else if c.contains("timed out") || c.contains("deadline") {
        "it did not answer in time"
    } else if c.contains("connection reset") || c.contains("connection closed") {
        "it closed the connection"
    } else {
        "the connection failed"
    };
    Unreachable {
        plain: plain.to_owned(),
        detail: Some(chain.to_owned()),
    }
}

/// Why a server cannot be reached: in plain words, and the network library's own account
/// (which names the address and the system's error) for whoever wants the details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    pub plain: String,
    pub detail: Option<String>,
}

impl Unreachable {
    pub fn plain(why: impl Into<String>) -> Unreachable {
        Unreachable {
            plain: why.into(),
            detail: None,
        }
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{} [{d}]", self.plain),
            None => f.write_str(&self.plain),
        }
    }
}

/// Sends `request` and reads its JSON answer; a refusal becomes the server's error.
async fn answer<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, ClientError> {
    let r = request.send().await.map_err(network)?;
    if !r.status().is_success() {
        return Err(error_of(r).await);
    }
    let bytes = r.bytes().await.map_err(network)?;
    from_json(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
}

/// Which of the account's images a list asks for (see `GET /api/v1/images`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilter {
    /// First day included, `YYYY-MM-DD`.
    pub since: Option<String>,
    /// Last day included, `YYYY-MM-DD`.
    pub until: Option<String>,
    /// Text the name contains.
    pub name: Option<String>,
}

/// A new upload's place on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub url: String,
    /// Set when the account has the file in hand already (an unfinished upload another client
    /// is sending, which the server joined this creation to, or a stored image): where the
    /// upload stands.
    pub joined: Option<u64>,
}

/// A part the server acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartAck {
    pub offset: u64,
    /// Time from sending the part to the server's response.
    pub elapsed: Duration,
    /// Set on the final part: the stored image's id.
    pub image_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    server: ServerConfig,
}

async fn error_of(r: reqwest::Response) -> ClientError {
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap_or_default();
    match from_json::<ApiError>(&body) {
        Ok(e) => ClientError::Http {
            status,
            code: e.code,
            message: e.message,
        },
        Err(_) => ClientError::Http {
            status,
            code: "unknown".into(),
            message: String::from_utf8_lossy(&body).chars().take(200).collect(),
        },
    }
}

fn header_u64(r: &reqwest::Response, name: &str) -> Option<u64> {
    r.headers().get(name)?.to_str().ok()?.parse().ok()
}

/// What a connection test found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    Ok,
    /// No answer at all (refused, timed out, no route, bad address).
    Unreachable(Unreachable),
    /// A Photosync server that refused the token.
    BadToken,
    /// Something answered, but not as a Photosync server does.
    NotPhotosync(String),
    /// A Photosync server of protocols this build does not speak.
    Incompatible(Box<photosync_protocol::VersionInfo>),
}

impl std::fmt::Display for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connection::Ok => write!(f, "connected"),
            Connection::Unreachable(why) => write!(f, "the server cannot be reached: {why}"),
            Connection::BadToken => write!(f, "the server refused the token"),
            Connection::NotPhotosync(why) => write!(f, "this is not a Photosync server ({why})"),
            Connection::Incompatible(server) => {
                let upgrade = if server.protocol < photosync_protocol::OLDEST_PROTOCOL {
                    "upgrade the server"
                } else {
                    "upgrade Photosync on this computer"
                };
                write!(
                    f,
                    "the server runs photosync-server {} (protocol {}), which this Photosync \
                     (protocol {}) cannot talk to: {upgrade}",
                    server.version,
                    server.protocol,
                    photosync_protocol::PROTOCOL
                )
            }
        }
    }
}

impl Client {
    pub fn new(server: ServerConfig) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A part is timed up to the response; a stalled one must not hang the queue.
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(network)?;
        Ok(Client { http, server })
    }

    pub fn server(&self) -> &ServerConfig {
        &self.server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url.trim_end_matches('/'))
    }

    /// Whether the server answers, is a Photosync server, and takes the token.
    pub async fn check(&self) -> Connection {
        let r = self
            .http
            .get(format!("{}?limit=1", self.url(path::IMAGES)))
            .bearer_auth(&self.server.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => return Connection::Unreachable(unreachable_reason(&network(e).to_string())),
        };
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap_or_default();
        let list = from_json::<photosync_protocol::ImageList>(&bytes);
        let api_error = from_json::<ApiError>(&bytes);
        match status {
            200 if list.is_ok() => self.check_version().await,
            401 | 403 if api_error.is_ok() => Connection::BadToken,
            // A proxy in front answers for a server that is away.
            502..=504 => Connection::Unreachable(Unreachable {
                plain: "the proxy in front of it cannot reach it".into(),
                detail: Some(format!("HTTP {status} from the address")),
            }),
            _ => Connection::NotPhotosync(format!("HTTP {status} without a Photosync answer")),
        }
    }

    /// The server's version and protocols; None for a server from before the endpoint.
    pub async fn version(&self) -> Result<Option<photosync_protocol::VersionInfo>, ClientError> {
        let r = self
            .http
            .get(self.url(path::VERSION))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(network)?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(error_of(r).await);
        }
        let bytes = r.bytes().await.map_err(network)?;
        from_json(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `Ok`, unless the server says it speaks no protocol of ours. A server from before the
    /// version endpoint speaks protocol 1.
    async fn check_version(&self) -> Connection {
        match self.version().await {
            Ok(Some(server))
                if !server.speaks_with(
                    photosync_protocol::OLDEST_PROTOCOL,
                    photosync_protocol::PROTOCOL,
                ) =>
            {
                Connection::Incompatible(Box::new(server))
            }
            Ok(None) if photosync_protocol::OLDEST_PROTOCOL > 1 => {
                Connection::Incompatible(Box::new(photosync_protocol::VersionInfo {
                    version: "older than 0.1".into(),
                    commit: "unknown".into(),
                    protocol: 1,
                    oldest_protocol: 1,
                }))
            }
            Ok(_) => Connection::Ok,
            Err(e) => {
                // The images answered: this is a Photosync server; the version is extra.
                tracing::debug!(error = %e, "the server's version could not be read");
                Connection::Ok
            }
        }
    }

    /// Whose token this is, and what the account holds.
    pub async fn account(&self) -> Result<photosync_protocol::Account, ClientError> {
        answer(
            self.http
                .get(self.url(path::ACCOUNT))
                .bearer_auth(&self.server.token)
                .timeout(Duration::from_secs(10)),
        )
        .await
    }

    /// One page of the account's images after id `after`, filtered.
    pub async fn list_images(
        &self,
        filter: &ImageFilter,
        after: i64,
        limit: u32,
    ) -> Result<photosync_protocol::ImageList, ClientError> {
        let mut query: Vec<(&str, String)> =
            vec![("after", after.to_string()), ("limit", limit.to_string())];
        for (key, value) in [
            ("since", &filter.since),
            ("until", &filter.until),
            ("name", &filter.name),
        ] {
            if let Some(v) = value {
                query.push((key, v.clone()));
            }
        }
        answer(
            self.http
                .get(self.url(path::IMAGES))
                .query(&query)
                .bearer_auth(&self.server.token)
                .timeout(Duration::from_secs(60)),
        )
        .await
    }

    /// The bytes of image `id` from byte `from` on. The answer is 206 when the server took
    /// the range, 200 (the whole file) when it did not; the caller checks which.
    pub async fn download(&self, id: i64, from: u64) -> Result<reqwest::Response, ClientError> {
        let mut req = self
            .http
            .get(self.url(&format!("{}/{id}/content", path::IMAGES)))
            .bearer_auth(&self.server.token);
        if from > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let r = req.send().await.map_err(network)?;
        if !r.status().is_success() {
            return Err(error_of(r).await);
        }
        Ok(r)
    }

    /// The JPEG thumbnail of image `id` whose longest side is at most `size`.
    pub async fn thumbnail(&self, id: i64, size: u32) -> Result<Vec<u8>, ClientError> {
        let r = self
            .http
            .get(self.url(&format!("{}/{id}/thumbnail", path::IMAGES)))
            .query(&[("size", size)])
            .bearer_auth(&self.server.token)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(network)?;
        if !r.status().is_success() {
            return Err(error_of(r).await);
        }
        Ok(r.bytes().await.map_err(network)?.to_vec())
    }

    /// Asks which of `queries` the server holds, in batches of at most 10,000.
    pub async fn detect(&self, queries: &[DetectQuery]) -> Result<Vec<DetectResult>, ClientError> {
        let mut out = Vec::with_capacity(queries.len());
        for batch in queries.chunks(DETECT_MAX_BATCH) {
            let body = to_json(&DetectRequest {
                images: batch.to_vec(),
            });
            let resp: DetectResponse = answer(
                self.http
                    .post(self.url(path::DETECT))
                    .bearer_auth(&self.server.token)
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await?;
            if resp.results.len() != batch.len() {
                return Err(ClientError::Protocol(format!(
                    "{} answers for {} questions",
                    resp.results.len(),
                    batch.len()
                )));
            }
            out.extend(resp.results);
        }
        Ok(out)
    }

    /// Creates an upload; returns its URL.
    pub async fn create_upload(
        &self,
        length: u64,
        metadata: &Metadata,
    ) -> Result<Created, ClientError> {
        let r = self
            .http
            .post(self.url(path::UPLOADS))
            .bearer_auth(&self.server.token)
            .header(tus::RESUMABLE, tus::VERSION)
            .header(tus::UPLOAD_LENGTH, length)
            .header(tus::UPLOAD_METADATA, metadata.encode())
            .send()
            .await
            .map_err(network)?;
        if r.status().as_u16() != 201 {
            return Err(error_of(r).await);
        }
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Protocol("201 without Location".into()))?;
        let url = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            self.url(location)
        };
        let joined = r
            .headers()
            .get(photosync_protocol::JOINED_HEADER)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Ok(Created { url, joined })
    }

    /// Where the upload stands on the server (HEAD), and its image id once finished.
    pub async fn offset(&self, url: &str) -> Result<(u64, Option<i64>), ClientError> {
        let r = self
            .http
            .head(url)
            .bearer_auth(&self.server.token)
            .header(tus::RESUMABLE, tus::VERSION)
            .send()
            .await
            .map_err(network)?;
        if !r.status().is_success() {
            return Err(ClientError::Http {
                status: r.status().as_u16(),
                code: "head_failed".into(),
                message: format!("HEAD {url}"),
            });
        }
        let offset = header_u64(&r, tus::UPLOAD_OFFSET)
            .ok_or_else(|| ClientError::Protocol("HEAD without Upload-Offset".into()))?;
        Ok((offset, header_u64(&r, IMAGE_ID_HEADER).map(|i| i as i64)))
    }

    /// Ends an upload this client started and abandoned (tus termination); the server drops
    /// its bytes. Never used on anything the server has made an image of.
    pub async fn terminate(&self, url: &str) -> Result<(), ClientError> {
        let r = self
            .http
            .delete(url)
            .bearer_auth(&self.server.token)
            .header(tus::RESUMABLE, tus::VERSION)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(network)?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(error_of(r).await)
        }
    }

    /// One PATCH of `part` at `offset`, with its BLAKE3 checksum.
    pub async fn send_part(
        &self,
        url: &str,
        offset: u64,
        part: Vec<u8>,
    ) -> Result<PartAck, ClientError> {
        let sum = blake3::hash(&part);
        let len = part.len() as u64;
        self.send_body(url, offset, len, &sum, part.into(), None)
            .await
    }

    /// One PATCH of `len` bytes at `offset` streamed from `body`, whose BLAKE3 is `sum`. The
    /// length is declared up front, so the body is not sent chunked. The part's time runs until
    /// the server's response: a written body is not a delivered one.
    pub async fn send_body(
        &self,
        url: &str,
        offset: u64,
        len: u64,
        sum: &blake3::Hash,
        body: reqwest::Body,
        name: Option<&Metadata>,
    ) -> Result<PartAck, ClientError> {
        let sum = STANDARD.encode(sum.as_bytes());
        let start = Instant::now();
        let mut request = self.http.patch(url);
        if let Some(name) = name {
            request = request.header(NAME_HEADER, name.encode());
        }
        let r = request
            .bearer_auth(&self.server.token)
            .header(tus::RESUMABLE, tus::VERSION)
            .header("content-type", tus::OFFSET_CONTENT_TYPE)
            .header("content-length", len)
            .header(tus::UPLOAD_OFFSET, offset)
            .header(tus::UPLOAD_CHECKSUM, format!("blake3 {sum}"))
            .body(body)
            .send()
            .await
            .map_err(network)?;
        let elapsed = start.elapsed();
        if r.status().as_u16() != 204 {
            return Err(error_of(r).await);
        }
        let offset = header_u64(&r, tus::UPLOAD_OFFSET)
            .ok_or_else(|| ClientError::Protocol("PATCH answer without Upload-Offset".into()))?;
        Ok(PartAck {
            offset,
            elapsed,
            image_id: header_u64(&r, IMAGE_ID_HEADER).map(|i| i as i64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: &str) -> ClientError {
        ClientError::Http {
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn errors_are_classified_once_by_status_and_code() {
        use ErrorKind::*;
        let cases = [
            (http(404, "not_found"), Gone),
            (http(410, ""), Gone),
            (http(409, "offset_mismatch"), OffsetMismatch),
            (http(423, "locked"), Busy),
            (http(409, "upload_finished"), Finished),
            (http(400, "digest_mismatch"), DigestMismatch),
            (http(460, "checksum_mismatch"), ChecksumMismatch),
            (http(507, "insufficient_storage"), NoSpace),
            (http(503, ""), Transient),
            (http(429, ""), Transient),
            (http(422, "invalid_filename"), Refused),
            (http(401, "unauthorized"), Unauthorized),
            (http(413, ""), Rejected),
            (ClientError::Network("reset".into()), Network),
            (ClientError::Protocol("no Location".into()), Protocol),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
        }
        let transient: Vec<bool> = [http(423, ""), http(507, ""), http(500, ""), http(422, "")]
            .iter()
            .map(ClientError::is_transient)
            .collect();
        assert_eq!(transient, [true, true, true, false]);
    }
}
