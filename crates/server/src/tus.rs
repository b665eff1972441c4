//! tus 1.0.0: core, creation, creation-with-upload, expiration, checksum and termination.
//!
//! A part is acknowledged only after it is durably stored (the blob part is synced, then the
//! offset recorded). The upload becomes an image only after the whole file's BLAKE3 matches
//! the declared digest, the blob is published and the image row written; the final 204 comes
//! after all of that.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::StreamExt;
use photosync_identify::{identify_bytes, Identifier, Limits};
use photosync_protocol::{meta, tus, ImageInfo, Metadata};
use sha1::Digest as _;

use crate::auth::User;
use crate::error::ApiError;
use crate::store::{NewImage, Upload};
use crate::{now, AppState};

/// On the final PATCH response and on HEAD of a finished upload: the stored image's id.
const IMAGE_ID: &str = photosync_protocol::IMAGE_ID_HEADER;

fn header(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

fn value(v: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&v.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The one value of a header; a repeated header is malformed.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(ApiError::bad_request(
            "duplicate_header",
            format!("{name} is given more than once"),
        ));
    }
    first
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| ApiError::bad_request("malformed_header", format!("{name} is not ASCII")))
}

/// A non-negative decimal integer that fits in an i64, and nothing else.
fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(v) = single(headers, name)? else {
        return Ok(None);
    };
    if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(
            "malformed_header",
            format!("{name} must be a non-negative integer, got {v:?}"),
        ));
    }
    v.parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request("malformed_header", format!("{name} is too large")))
}

fn check_resumable(headers: &HeaderMap) -> Result<(), ApiError> {
    match single(headers, tus::RESUMABLE)? {
        Some(tus::VERSION) => Ok(()),
        other => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "unsupported_version",
            format!(
                "Tus-Resumable {other:?} is not supported; use {}",
                tus::VERSION
            ),
        )),
    }
}

fn expires_header(at: i64) -> HeaderValue {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(at.max(0) as u64);
    value(httpdate::fmt_http_date(t))
}

pub async fn options(State(state): State<AppState>) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        header(tus::RESUMABLE),
        HeaderValue::from_static(tus::VERSION),
    );
    h.insert(
        header(tus::VERSION_HEADER),
        HeaderValue::from_static(tus::VERSION),
    );
    h.insert(
        header(tus::EXTENSION),
        HeaderValue::from_static(tus::EXTENSIONS),
    );
    h.insert(header(tus::MAX_SIZE), value(state.config.max_upload_size));
    h.insert(
        header(tus::CHECKSUM_ALGORITHM),
        HeaderValue::from_static(tus::CHECKSUM_ALGORITHMS),
    );
    (StatusCode::NO_CONTENT, h).into_response()
}

/// What the client declared about the file in `Upload-Metadata`.
struct Declared {
    name: String,
    digest: String,
    mtime: Option<i64>,
}

fn declared(metadata: &Metadata, length: u64) -> Result<Declared, ApiError> {
    let bad = |code, msg: String| Err(ApiError::bad_request(code, msg));
    let digest = match metadata.get(meta::DIGEST) {
        Some(d) if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) => {
            d.to_ascii_lowercase()
        }
        Some(d) => {
            return bad(
                "invalid_digest",
                format!("digest {d:?} is not 64 hex digits"),
            )
        }
        None => {
            return bad(
                "missing_digest",
                format!(
                    "Upload-Metadata must carry '{}': the BLAKE3 of the file",
                    meta::DIGEST
                ),
            )
        }
    };
    let name = metadata.get(meta::NAME).unwrap_or("upload").to_owned();
    if name.is_empty()
        || name.contains(['/', '\\', '\0'])
        || name == "."
        || name == ".."
        || name.len() > 255
    {
        return bad(
            "invalid_filename",
            format!("file name {name:?} is not a plain file name"),
        );
    }
    if let Some(id) = metadata.get(meta::IDENTIFIER) {
        if let Err(e) = id.parse::<Identifier>() {
            return bad("invalid_identifier", format!("identifier: {e}"));
        }
    }
    if let Some(size) = metadata.get(meta::SIZE) {
        if size.parse::<u64>().ok() != Some(length) {
            return bad(
                "invalid_size",
                format!("size {size:?} is not Upload-Length {length}"),
            );
        }
    }
    let mtime = match metadata.get(meta::MTIME) {
        None => None,
        Some(t) => match t.parse::<i64>() {
            Ok(t) => Some(t),
            Err(_) => {
                return bad(
                    "invalid_mtime",
                    format!("mtime {t:?} is not a whole number"),
                )
            }
        },
    };
    Ok(Declared {
        name,
        digest,
        mtime,
    })
}

pub async fn create(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = check_resumable(&headers) {
        return e.into_response();
    }
    match create_upload(&state, user, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn create_upload(
    state: &AppState,
    User(user): User,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if single(headers, "upload-defer-length")?.is_some() {
        return Err(ApiError::bad_request(
            "defer_length_unsupported",
            "Upload-Defer-Length is not supported; send Upload-Length",
        ));
    }
    let length = number(headers, tus::UPLOAD_LENGTH)?
        .ok_or_else(|| ApiError::bad_request("missing_length", "Upload-Length is required"))?;
    if length > state.config.max_upload_size {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "Upload-Length {length} is over Tus-Max-Size {}",
                state.config.max_upload_size
            ),
        ));
    }
    let raw_metadata = single(headers, tus::UPLOAD_METADATA)?
        .unwrap_or("")
        .to_owned();
    let metadata = Metadata::parse(&raw_metadata)
        .map_err(|e| ApiError::bad_request("invalid_metadata", e.to_string()))?;
    let declared = declared(&metadata, length)?;
    let with_body = single(headers, "content-type")? == Some(tus::OFFSET_CONTENT_TYPE);
    let checksum = Checksum::from_headers(headers)?;

    let created = now();
    let id: String = rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut upload = Upload {
        id: id.clone(),
        user_id: user,
        length,
        offset: 0,
        metadata: raw_metadata,
        name: declared.name,
        digest: declared.digest,
        mtime: declared.mtime,
        created_at: created,
        expires_at: created + state.config.upload_ttl.as_secs() as i64,
        image_id: None,
    };
    state.store.create_upload(&upload).await?;
    tracing::info!(upload = %id, length, "upload created");

    let mut h = HeaderMap::new();
    h.insert(
        header(tus::RESUMABLE),
        HeaderValue::from_static(tus::VERSION),
    );
    h.insert(
        axum::http::header::LOCATION,
        value(format!("{}{id}", photosync_protocol::path::UPLOADS)),
    );
    if with_body || length == 0 {
        // creation-with-upload: the body is the first part.
        let holder = lock(state, &upload).await?;
        let result = receive_part(state, &upload, 0, checksum, None, body).await;
        let result = match result {
            Ok(offset) => {
                upload.offset = offset;
                finish_if_complete(state, &upload).await.map(|_| offset)
            }
            Err(e) => Err(e),
        };
        unlock(state, &upload, &holder).await;
        let offset = result?;
        h.insert(header(tus::UPLOAD_OFFSET), value(offset));
    }
    h.insert(
        header(tus::UPLOAD_EXPIRES),
        expires_header(upload.expires_at),
    );
    Ok((StatusCode::CREATED, h).into_response())
}

/// The user's live upload `id`: 404 if unknown or another user's, 410 once expired.
async fn live_upload(state: &AppState, user: i64, id: &str) -> Result<Upload, ApiError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found());
    }
    let upload = state
        .store
        .upload(user, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    if upload.expires_at < now() {
        expire(state, &upload.id).await?;
        return Err(ApiError::new(
            StatusCode::GONE,
            "expired",
            "this upload has expired",
        ));
    }
    Ok(upload)
}

async fn expire(state: &AppState, id: &str) -> Result<(), ApiError> {
    state.blobs.discard(id).await?;
    state.store.delete_upload(id).await?;
    tracing::info!(upload = %id, "expired upload removed");
    Ok(())
}

pub async fn sweep_expired(state: &AppState) -> Result<(), ApiError> {
    for id in state.store.expired_uploads(now()).await? {
        expire(state, &id).await?;
    }
    Ok(())
}

/// Takes the upload's lease; 423 while another request holds it.
async fn lock(state: &AppState, upload: &Upload) -> Result<String, ApiError> {
    let holder: String = rand::random::<[u8; 8]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let t = now();
    let lease = lease_secs(state);
    if state
        .store
        .lock_upload(&upload.id, &holder, t, t + lease)
        .await?
    {
        Ok(holder)
    } else {
        Err(ApiError::new(
            StatusCode::LOCKED,
            "upload_busy",
            "another request is writing to this upload; retry shortly",
        ))
    }
}

fn lease_secs(state: &AppState) -> i64 {
    (state.config.idle_timeout.as_secs() as i64 * 2).max(2)
}

async fn unlock(state: &AppState, upload: &Upload, holder: &str) {
    if let Err(e) = state.store.unlock_upload(&upload.id, holder).await {
        tracing::warn!(upload = %upload.id, error = %e, "unlock failed; the lease will lapse");
    }
}

pub async fn head(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = check_resumable(&headers) {
        return e.into_response();
    }
    let result = async {
        let upload = live_upload(&state, user.0, &id).await?;
        let mut image_id = upload.image_id;
        if upload.offset == upload.length && upload.image_id.is_none() {
            // All bytes arrived but completion was cut short (a crash): finish it now, so a
            // full offset always means a stored image.
            if let Ok(holder) = lock(&state, &upload).await {
                let r = finish_if_complete(&state, &upload).await;
                unlock(&state, &upload, &holder).await;
                image_id = r?.map(|i| i.id);
            }
        }
        let mut h = HeaderMap::new();
        h.insert(
            header(tus::RESUMABLE),
            HeaderValue::from_static(tus::VERSION),
        );
        h.insert(header(tus::UPLOAD_OFFSET), value(upload.offset));
        h.insert(header(tus::UPLOAD_LENGTH), value(upload.length));
        if let Some(id) = image_id {
            h.insert(header(IMAGE_ID), value(id));
        }
        if !upload.metadata.is_empty() {
            h.insert(header(tus::UPLOAD_METADATA), value(&upload.metadata));
        }
        h.insert(
            header(tus::UPLOAD_EXPIRES),
            expires_header(upload.expires_at),
        );
        h.insert(
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        Ok::<_, ApiError>((StatusCode::OK, h).into_response())
    }
    .await;
    result.unwrap_or_else(|e| {
        // HEAD answers carry no body; keep the status and headers.
        let mut r = e.into_response();
        *r.body_mut() = Body::empty();
        r.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        r
    })
}

pub async fn patch(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = check_resumable(&headers) {
        return e.into_response();
    }
    match patch_upload(&state, user, &id, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn patch_upload(
    state: &AppState,
    User(user): User,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if single(headers, "content-type")? != Some(tus::OFFSET_CONTENT_TYPE) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            format!("PATCH bodies must be {}", tus::OFFSET_CONTENT_TYPE),
        ));
    }
    let offset = number(headers, tus::UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::bad_request("missing_offset", "Upload-Offset is required"))?;
    let checksum = Checksum::from_headers(headers)?;
    let content_length = number(headers, "content-length")?;
    let upload = live_upload(state, user, id).await?;
    if upload.image_id.is_some() {
        return Err(ApiError::bad_request(
            "upload_finished",
            "this upload is already complete",
        ));
    }
    if offset != upload.offset {
        let mut r = ApiError::new(
            StatusCode::CONFLICT,
            "offset_mismatch",
            format!(
                "Upload-Offset is {offset}, the upload stands at {}",
                upload.offset
            ),
        )
        .into_response();
        r.headers_mut()
            .insert(header(tus::UPLOAD_OFFSET), value(upload.offset));
        return Ok(r);
    }
    let remaining = upload.length - upload.offset;
    if content_length.is_some_and(|n| n > remaining) {
        return Err(exceeds(remaining));
    }
    let holder = lock(state, &upload).await?;
    let result = async {
        let new_offset =
            receive_part(state, &upload, upload.offset, checksum, Some(&holder), body).await?;
        let advanced = Upload {
            offset: new_offset,
            ..upload.clone()
        };
        let image = finish_if_complete(state, &advanced).await?;
        Ok::<_, ApiError>((new_offset, image))
    }
    .await;
    unlock(state, &upload, &holder).await;
    let (new_offset, image) = result?;
    let mut h = HeaderMap::new();
    if let Some(image) = image {
        // The client records this id in its sync list.
        h.insert(header(IMAGE_ID), value(image.id));
    }
    h.insert(
        header(tus::RESUMABLE),
        HeaderValue::from_static(tus::VERSION),
    );
    h.insert(header(tus::UPLOAD_OFFSET), value(new_offset));
    h.insert(
        header(tus::UPLOAD_EXPIRES),
        expires_header(now() + state.config.upload_ttl.as_secs() as i64),
    );
    Ok((StatusCode::NO_CONTENT, h).into_response())
}

fn exceeds(remaining: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "exceeds_length",
        format!("the body is longer than the {remaining} bytes left of Upload-Length"),
    )
}

/// Streams one part into the blob store and acknowledges it. Returns the new offset.
///
/// A part with a checksum is all or nothing: cut off or mismatched, it is discarded. A part
/// without one keeps whatever arrived before the connection broke, as tus allows.
async fn receive_part(
    state: &AppState,
    upload: &Upload,
    offset: u64,
    mut checksum: Option<Checksum>,
    holder: Option<&str>,
    body: Body,
) -> Result<u64, ApiError> {
    let remaining = upload.length - offset;
    let idle = state.config.idle_timeout;
    let mut part = state.blobs.begin_part(&upload.id, offset).await?;
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    let mut cut: Option<String> = None;
    let mut renewed = Instant::now();
    loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => {
                cut = Some(format!("no data for {} s", idle.as_secs()));
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                cut = Some(e.to_string());
                break;
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        if received + chunk.len() as u64 > remaining {
            part.abort().await?;
            return Err(exceeds(remaining));
        }
        if let Some(c) = checksum.as_mut() {
            c.update(&chunk);
        }
        part.write(&chunk).await?;
        received += chunk.len() as u64;
        if let Some(holder) = holder {
            if renewed.elapsed() > idle / 2 {
                let t = now();
                state
                    .store
                    .lock_upload(&upload.id, holder, t, t + lease_secs(state))
                    .await?;
                renewed = Instant::now();
            }
        }
    }
    if let Some(reason) = &cut {
        tracing::info!(upload = %upload.id, received, reason, "part cut off");
        if checksum.is_some() {
            part.abort().await?;
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "part_cut_off",
                format!("the part was cut off ({reason}) and discarded"),
            ));
        }
    }
    if let Some(c) = checksum {
        if !c.matches() {
            part.abort().await?;
            return Err(ApiError::new(
                StatusCode::from_u16(tus::CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST),
                "checksum_mismatch",
                "the part does not match its Upload-Checksum and was discarded",
            ));
        }
    }
    part.commit().await?;
    let new_offset = offset + received;
    let expires = now() + state.config.upload_ttl.as_secs() as i64;
    state
        .store
        .advance_upload(&upload.id, new_offset, expires)
        .await?;
    tracing::debug!(upload = %upload.id, new_offset, "part stored");
    Ok(new_offset)
}

/// Once every byte is in: verify, publish, record. Idempotent, so it can run again after a
/// crash between any two steps.
async fn finish_if_complete(
    state: &AppState,
    upload: &Upload,
) -> Result<Option<ImageInfo>, ApiError> {
    if upload.offset != upload.length || upload.image_id.is_some() {
        return Ok(None);
    }
    match state.blobs.upload_digest(&upload.id).await {
        Ok(d) if d.to_hex().as_str() != upload.digest => {
            state.blobs.discard(&upload.id).await?;
            state.store.delete_upload(&upload.id).await?;
            tracing::warn!(upload = %upload.id, "digest mismatch; upload discarded");
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "digest_mismatch",
                "the file's BLAKE3 does not match the declared digest; the upload was discarded",
            ));
        }
        Ok(_) => state.blobs.publish(&upload.id, &upload.digest).await?,
        // No part file: it was published just before a crash; the blob must be there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let identity = identify_blob(state, &upload.digest, upload.length).await?;
    let image = state
        .store
        .insert_image(&NewImage {
            user_id: upload.user_id,
            digest: upload.digest.clone(),
            identifier: identity.as_ref().map(|i| i.identifier.to_string()),
            name: upload.name.clone(),
            bytes: upload.length,
            width: identity.as_ref().map(|i| i.width),
            height: identity.as_ref().map(|i| i.height),
            format: identity.as_ref().map(|i| i.format.name().to_owned()),
            mtime: upload.mtime,
            uploaded_at: now(),
        })
        .await?;
    state.store.finish_upload(&upload.id, image.id).await?;
    tracing::info!(upload = %upload.id, image = image.id, "upload complete");
    Ok(Some(image))
}

/// The server's own identity of a published blob (None for videos and other non-images).
/// At most one identification per core runs at once, so memory stays bounded however many
/// uploads finish together.
async fn identify_blob(
    state: &AppState,
    digest: &str,
    length: u64,
) -> Result<Option<photosync_identify::Identity>, ApiError> {
    let limits = Limits::default();
    if length > limits.max_file_bytes {
        return Ok(None);
    }
    let _permit = state
        .identify_permits
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let (_, reader) = state.blobs.open(digest).await?;
    // The first bytes say whether it is an image at all: a video is not read into memory.
    let mut reader = tokio::io::AsyncReadExt::take(reader, length);
    let mut bytes = vec![0u8; length.min(64) as usize];
    tokio::io::AsyncReadExt::read_exact(&mut reader, &mut bytes).await?;
    if photosync_identify::sniff_format(&bytes).is_err() {
        return Ok(None);
    }
    bytes.reserve_exact((length - bytes.len() as u64) as usize);
    tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut bytes).await?;
    tokio::task::spawn_blocking(move || identify_bytes(&bytes, &limits).ok())
        .await
        .map_err(ApiError::internal)
}

pub async fn delete(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = check_resumable(&headers) {
        return e.into_response();
    }
    let result = async {
        let upload = live_upload(&state, user.0, &id).await?;
        let holder = lock(&state, &upload).await?;
        if upload.image_id.is_none() {
            state.blobs.discard(&upload.id).await?;
        }
        state.store.delete_upload(&upload.id).await?;
        unlock(&state, &upload, &holder).await;
        let mut h = HeaderMap::new();
        h.insert(
            header(tus::RESUMABLE),
            HeaderValue::from_static(tus::VERSION),
        );
        Ok::<_, ApiError>((StatusCode::NO_CONTENT, h).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// An `Upload-Checksum` being verified as the part streams in.
enum Checksum {
    Sha1(sha1::Sha1, Vec<u8>),
    Sha256(sha2::Sha256, Vec<u8>),
    Blake3(Box<blake3::Hasher>, Vec<u8>),
}

impl Checksum {
    fn from_headers(headers: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
        let Some(v) = single(headers, tus::UPLOAD_CHECKSUM)? else {
            return Ok(None);
        };
        let (algo, encoded) = v.split_once(' ').ok_or_else(|| {
            ApiError::bad_request(
                "malformed_checksum",
                "Upload-Checksum must be 'algorithm base64'",
            )
        })?;
        let expected = STANDARD.decode(encoded.trim()).map_err(|_| {
            ApiError::bad_request("malformed_checksum", "Upload-Checksum value is not base64")
        })?;
        let (c, len) = match algo {
            "sha1" => (Checksum::Sha1(sha1::Sha1::new(), expected.clone()), 20),
            "sha256" => (Checksum::Sha256(sha2::Sha256::new(), expected.clone()), 32),
            "blake3" => (Checksum::Blake3(Box::default(), expected.clone()), 32),
            other => {
                return Err(ApiError::bad_request(
                    "unsupported_checksum",
                    format!(
                        "checksum algorithm {other:?} is not one of {}",
                        tus::CHECKSUM_ALGORITHMS
                    ),
                ))
            }
        };
        if expected.len() != len {
            return Err(ApiError::bad_request(
                "malformed_checksum",
                format!("a {algo} checksum is {len} bytes, got {}", expected.len()),
            ));
        }
        Ok(Some(c))
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Checksum::Sha1(h, _) => h.update(bytes),
            Checksum::Sha256(h, _) => h.update(bytes),
            Checksum::Blake3(h, _) => {
                h.update(bytes);
            }
        }
    }

    fn matches(self) -> bool {
        match self {
            Checksum::Sha1(h, want) => h.finalize().as_slice() == want.as_slice(),
            Checksum::Sha256(h, want) => h.finalize().as_slice() == want.as_slice(),
            Checksum::Blake3(h, want) => h.finalize().as_bytes().as_slice() == want.as_slice(),
        }
    }
}
