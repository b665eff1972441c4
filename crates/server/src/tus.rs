//! tus 1.0.0: core, creation, creation-with-upload, expiration, checksum and termination.
//!
//! A part is acknowledged only after it is durably stored (the part is synced, then the offset
//! recorded, only by the holder of the upload's lease). The upload becomes an image only after
//! its bytes' BLAKE3 is computed (and matches the declared digest, if one was declared), the
//! verified digest is recorded, the blob is published and the image row written; the final
//! answer comes after all of that. The protocol version check and the `Tus-Resumable` answer
//! header are in [`tus_layer`], once for every route.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use photosync_identify::{identify_bytes, Identifier, Limits, ParseIdentifierError};
use photosync_protocol::{
    display_name, is_offset_content_type, meta, parse_number, percent_decode_name, tus,
    ChecksumAlgorithm, ChecksumHeader, HeaderError, ImageInfo, Metadata, NAME_MAX,
};
use sha1::Digest as _;

use crate::auth::User;
use crate::blobs::PartWriter;
use crate::cleanup;
use crate::error::ApiError;
use crate::store::{
    Creation, Identified, NewImage, StoreError, Upload, UploadLimits, NOT_AN_IMAGE,
};
use crate::{now, now_ms, AppState};

/// On the final PATCH or POST response and on HEAD of a finished upload: the stored image's id.
const IMAGE_ID: &str = photosync_protocol::IMAGE_ID_HEADER;
const JOINED: &str = photosync_protocol::JOINED_HEADER;
const NAME_HEADER: &str = photosync_protocol::NAME_HEADER;

fn header(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

fn value(v: impl ToString) -> HeaderValue {
    HeaderValue::from_str(&v.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The one value of a header; a repeated header is malformed.
pub(crate) fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
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

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(v) = single(headers, name)? else {
        return Ok(None);
    };
    parse_number(v)
        .map(Some)
        .map_err(|e| ApiError::bad_request("malformed_header", format!("{name} {e}")))
}

/// Every tus request but OPTIONS must speak 1.0.0; every answer says that it does.
pub async fn tus_layer(request: Request, next: Next) -> Response {
    let checked = if request.method() == Method::OPTIONS {
        Ok(())
    } else {
        check_resumable(request.headers())
    };
    let mut response = match checked {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    };
    response.headers_mut().insert(
        header(tus::RESUMABLE),
        HeaderValue::from_static(tus::VERSION),
    );
    response
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

/// When an upload touched at `from` expires.
fn expiry(state: &AppState, from: i64) -> i64 {
    from.saturating_add(state.config.upload_ttl.as_secs().min(i64::MAX as u64) as i64)
}

fn expires_header(at: i64) -> HeaderValue {
    // HTTP dates end with the year 9999; a longer time to live says that.
    let t = std::time::UNIX_EPOCH + Duration::from_secs(at.clamp(0, 253_402_300_799) as u64);
    value(httpdate::fmt_http_date(t))
}

pub async fn options(State(state): State<AppState>) -> Response {
    let mut h = HeaderMap::new();
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
    name_bytes: Option<Vec<u8>>,
    digest: Option<String>,
    mtime: Option<i64>,
}

fn declared(metadata: &Metadata, length: u64) -> Result<Declared, ApiError> {
    let bad = |code, msg: String| Err(ApiError::bad_request(code, msg));
    let digest = match metadata.get(meta::DIGEST) {
        None => None,
        Some(d) if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(d.to_ascii_lowercase())
        }
        Some(d) => {
            return bad(
                "invalid_digest",
                format!("digest {d:?} is not 64 hex digits"),
            )
        }
    };
    let (name, name_bytes) = declared_name(metadata)?;
    if let Some(id) = metadata.get(meta::IDENTIFIER) {
        match id.parse::<Identifier>() {
            // Another version's identifier is a client's business; the server makes its own.
            Ok(_) | Err(ParseIdentifierError::Version(_)) => {}
            Err(e) => return bad("invalid_identifier", format!("identifier: {e}")),
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
    if let Some(folder) = metadata.get(meta::FOLDER) {
        if let Err(e) = photosync_protocol::check_folder(folder) {
            return bad("invalid_folder", format!("folder {folder:?} {e}"));
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
        name_bytes,
        digest,
        mtime,
    })
}

/// A file name and, when it is not plain UTF-8, its exact bytes.
type FileName = (String, Option<Vec<u8>>);

fn declared_name(metadata: &Metadata) -> Result<FileName, ApiError> {
    let name_bytes = match metadata.get(meta::NAME_BYTES) {
        None => None,
        Some(encoded) => Some(name_bytes(encoded)?),
    };
    let name = match (
        metadata.get(meta::NAME).or_else(|| metadata.get("name")),
        &name_bytes,
    ) {
        (Some(name), _) => name.to_owned(),
        (None, Some(bytes)) => display_name(bytes),
        (None, None) => "upload".to_owned(),
    };
    if name.is_empty()
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
        || name == "."
        || name == ".."
        || name.len() > 255
    {
        return Err(ApiError::bad_request(
            "invalid_filename",
            format!("file name {name:?} is not a plain file name"),
        ));
    }
    Ok((name, name_bytes))
}

/// A PATCH may name the file anew (`Photosync-Name`, in the form of `Upload-Metadata`): the
/// file was renamed while it was uploaded, and the image takes the name it has now.
fn renamed(headers: &HeaderMap) -> Result<Option<FileName>, ApiError> {
    let Some(v) = single(headers, NAME_HEADER)? else {
        return Ok(None);
    };
    let metadata = Metadata::parse(v)
        .map_err(|e| ApiError::bad_request("invalid_metadata", format!("{NAME_HEADER}: {e}")))?;
    declared_name(&metadata).map(Some)
}

/// The exact bytes of a `filename-bytes` value: a plain Linux file name (1 to 255 bytes, no
/// `/` or NUL, not `.` or `..`), in any encoding.
fn name_bytes(encoded: &str) -> Result<Vec<u8>, ApiError> {
    let bad = |why: String| ApiError::bad_request("invalid_filename", why);
    let bytes = percent_decode_name(encoded).map_err(|e| bad(format!("filename-bytes: {e}")))?;
    if bytes.is_empty()
        || bytes.len() > NAME_MAX
        || bytes.contains(&b'/')
        || bytes.contains(&0)
        || bytes == b"."
        || bytes == b".."
    {
        return Err(bad(format!(
            "filename-bytes ({} bytes) is not a plain file name: 1 to {NAME_MAX} bytes, no '/' \
             or NUL, not '.' or '..'",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn is_offset_body(headers: &HeaderMap) -> Result<bool, ApiError> {
    Ok(single(headers, "content-type")?.is_some_and(is_offset_content_type))
}

/// 507 unless the storage keeps `--min-free-space` free after `bytes` more.
async fn ensure_space(state: &AppState, bytes: u64) -> Result<(), ApiError> {
    let Some(free) = state.blobs.available_space().await? else {
        return Ok(());
    };
    let needed = bytes.saturating_add(state.config.min_free_space);
    if free < needed {
        tracing::warn!(free, needed, "refusing data: the disk is nearly full");
        return Err(insufficient_storage(format!(
            "the server has {free} bytes free and keeps {} in reserve; {bytes} more do not fit",
            state.config.min_free_space
        )));
    }
    Ok(())
}

fn insufficient_storage(message: String) -> ApiError {
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "insufficient_storage",
        message,
    )
}

pub async fn create(
    State(state): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if single(&headers, "upload-defer-length")?.is_some() {
        return Err(ApiError::bad_request(
            "defer_length_unsupported",
            "Upload-Defer-Length is not supported; send Upload-Length",
        ));
    }
    let length = number(&headers, tus::UPLOAD_LENGTH)?
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
    let raw_metadata = single(&headers, tus::UPLOAD_METADATA)?
        .unwrap_or("")
        .to_owned();
    let metadata = Metadata::parse(&raw_metadata)
        .map_err(|e| ApiError::bad_request("invalid_metadata", e.to_string()))?;
    let declared = declared(&metadata, length)?;
    let with_body = is_offset_body(&headers)?;
    let checksum = Checksum::from_headers(&headers)?;

    let created = now();
    let upload = Upload {
        id: random_hex::<16>(),
        user_id: user,
        length,
        offset: 0,
        metadata: raw_metadata,
        name: declared.name,
        name_bytes: declared.name_bytes,
        declared: declared.digest,
        verified: None,
        mtime: declared.mtime,
        created_at: created,
        expires_at: expiry(&state, created),
        image_id: None,
    };
    let limits = UploadLimits {
        max_unfinished: state.config.max_unfinished_uploads,
        max_unfinished_bytes: state.config.max_unfinished_bytes,
    };
    // Two clients syncing one folder create an upload each for the same file: the second
    // creation by the same user joins the first's unfinished upload, and the lease and offset
    // checks keep the two writers apart; one that comes after the first finished is answered
    // with the image. Either way the answer says so, and how far the upload is. A
    // creation-with-upload brings bytes of its own (and an empty file has none to share), so
    // it gets a new upload.
    if !with_body && length > 0 && upload.declared.is_some() {
        let creation = state
            .store
            .join_or_create_upload(&upload, &limits, created)
            .await?;
        let (id, offset, image, expires_at) = match creation {
            Creation::Created => {
                // Only a new upload needs room for its bytes.
                if let Err(e) = ensure_space(&state, length).await {
                    forget(&state, &upload.id).await;
                    return Err(e);
                }
                (upload.id.clone(), None, None, upload.expires_at)
            }
            Creation::Joined(existing) => {
                tracing::info!(upload = %existing.id, length, "creation joined an unfinished upload");
                let at = existing.offset;
                (existing.id, Some(at), None, existing.expires_at)
            }
            Creation::Stored(done) => {
                tracing::info!(upload = %done.id, image = ?done.image_id, "creation of a file already stored");
                (done.id, Some(length), done.image_id, done.expires_at)
            }
        };
        if let Some(offset) = offset {
            let mut answer = created_answer(&id, None, image, expires_at);
            answer.headers_mut().insert(header(JOINED), value(offset));
            return Ok(answer);
        }
    } else {
        ensure_space(&state, length).await?;
        state.store.create_upload(&upload, &limits).await?;
    }
    let stored = match state.blobs.create_part(&upload.id).await {
        // A joined writer's first PATCH may have made the part file already.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    };
    let stored = match stored {
        Ok(()) if with_body || length == 0 => first_part(&state, &upload, checksum, body).await,
        Ok(()) => Ok((0, None)),
        Err(e) => Err(e.into()),
    };
    let (offset, image) = match stored {
        Ok(stored) => stored,
        Err(e) => {
            // The client never learns this upload's URL: leave nothing behind.
            forget(&state, &upload.id).await;
            return Err(e);
        }
    };
    tracing::info!(upload = %upload.id, length, offset, "upload created");
    let offset = (with_body || length == 0).then_some(offset);
    Ok(created_answer(
        &upload.id,
        offset,
        image.map(|i| i.id),
        upload.expires_at,
    ))
}

/// 201 naming the upload; the offset only after a creation-with-upload, as tus has it.
fn created_answer(id: &str, offset: Option<u64>, image: Option<i64>, expires_at: i64) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        axum::http::header::LOCATION,
        value(format!("{}{id}", photosync_protocol::path::UPLOADS)),
    );
    if let Some(offset) = offset {
        h.insert(header(tus::UPLOAD_OFFSET), value(offset));
    }
    if let Some(image) = image {
        h.insert(header(IMAGE_ID), value(image));
    }
    h.insert(header(tus::UPLOAD_EXPIRES), expires_header(expires_at));
    (StatusCode::CREATED, h).into_response()
}

/// creation-with-upload: the request's body is the first part.
async fn first_part(
    state: &AppState,
    upload: &Upload,
    checksum: Option<Checksum>,
    body: Body,
) -> Result<(u64, Option<ImageInfo>), ApiError> {
    let lease = lock(state, upload).await?;
    let result = write_part(state, upload, lease.holder(), checksum, body).await;
    lease.release().await;
    result
}

async fn forget(state: &AppState, id: &str) {
    if let Err(e) = state.blobs.discard(id).await {
        tracing::warn!(upload = %id, error = %e, "discarding a failed upload's bytes failed");
    }
    if let Err(e) = state.store.delete_upload(id).await {
        tracing::warn!(upload = %id, error = %e, "deleting a failed upload failed");
    }
}

pub(crate) fn random_hex<const N: usize>() -> String {
    rand::random::<[u8; N]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        cleanup::expire(state, &upload.id).await?;
        return Err(ApiError::new(
            StatusCode::GONE,
            "expired",
            "this upload has expired",
        ));
    }
    Ok(upload)
}

/// An upload's write lease, held by one request. `release` gives it back; a request cancelled
/// before that (a timeout, a shutdown) gives it back in the background when dropped, rather
/// than leaving the upload busy until the lease lapses.
struct Lease {
    store: std::sync::Arc<dyn crate::store::Store>,
    upload: String,
    holder: String,
    released: bool,
}

impl Lease {
    fn holder(&self) -> &str {
        &self.holder
    }

    async fn release(mut self) {
        self.released = true;
        if let Err(e) = self.store.unlock_upload(&self.upload, &self.holder).await {
            tracing::warn!(upload = %self.upload, error = %e, "unlock failed; the lease will lapse");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let (upload, holder) = (
                std::mem::take(&mut self.upload),
                std::mem::take(&mut self.holder),
            );
            runtime.spawn(async move {
                let _ = store.unlock_upload(&upload, &holder).await;
            });
        }
    }
}

/// Takes the upload's lease; 423 while another request holds it.
async fn lock(state: &AppState, upload: &Upload) -> Result<Lease, ApiError> {
    let holder = random_hex::<8>();
    let t = now_ms();
    if state
        .store
        .lock_upload(&upload.id, &holder, t, t + lease_ms(state))
        .await?
    {
        Ok(Lease {
            store: state.store.clone(),
            upload: upload.id.clone(),
            holder,
            released: false,
        })
    } else {
        Err(busy())
    }
}

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::LOCKED,
        "upload_busy",
        "another request is writing to this upload; retry shortly",
    )
}

/// The write lease outlasts the longest wait for a chunk (the idle timeout) with room to spare;
/// it is renewed while data arrives.
fn lease_ms(state: &AppState) -> i64 {
    (state.config.idle_timeout.as_millis() as i64 * 2).max(2000)
}

async fn renew(state: &AppState, upload: &Upload, holder: &str) -> Result<(), ApiError> {
    let until = now_ms() + lease_ms(state);
    if state.store.renew_upload(&upload.id, holder, until).await? {
        Ok(())
    } else {
        Err(gone_or_taken(state, upload).await)
    }
}

/// Why a conditional update of an upload changed nothing: it was deleted (404), or another
/// request took its lease (423).
async fn gone_or_taken(state: &AppState, upload: &Upload) -> ApiError {
    match state.store.upload(upload.user_id, &upload.id).await {
        Ok(Some(_)) => busy(),
        Ok(None) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the upload was deleted while this request ran; nothing was stored",
        ),
        Err(e) => e.into(),
    }
}

/// All bytes arrived but completion was cut short (a crash): finish it now, so a full offset
/// always means a stored image. Busy means someone else is on it. Another writer may have
/// completed the upload between the caller's read and the lease, so only what holds under the
/// lease is acted on; acting on the stale read would reset an image just recorded.
async fn complete_if_cut_short(state: &AppState, upload: Upload) -> Result<Upload, ApiError> {
    if upload.offset != upload.length || upload.image_id.is_some() {
        return Ok(upload);
    }
    let Ok(lease) = lock(state, &upload).await else {
        return Ok(upload);
    };
    let result = async {
        let mut fresh = reread(state, &upload).await?;
        if fresh.offset == fresh.length && fresh.image_id.is_none() {
            match resume_completion(state, &fresh, lease.holder()).await? {
                Some(image) => fresh.image_id = Some(image.id),
                None => fresh.offset = 0,
            }
        }
        Ok(fresh)
    }
    .await;
    lease.release().await;
    result
}

/// The upload as it stands now; 404 once deleted.
async fn reread(state: &AppState, upload: &Upload) -> Result<Upload, ApiError> {
    state
        .store
        .upload(upload.user_id, &upload.id)
        .await?
        .ok_or_else(ApiError::not_found)
}

pub async fn head(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let upload = live_upload(&state, user, &id).await?;
        let upload = complete_if_cut_short(&state, upload).await?;
        let mut h = HeaderMap::new();
        h.insert(header(tus::UPLOAD_OFFSET), value(upload.offset));
        h.insert(header(tus::UPLOAD_LENGTH), value(upload.length));
        if let Some(id) = upload.image_id {
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
    User(user): User,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !is_offset_body(&headers)? {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            format!("PATCH bodies must be {}", tus::OFFSET_CONTENT_TYPE),
        ));
    }
    let offset = number(&headers, tus::UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::bad_request("missing_offset", "Upload-Offset is required"))?;
    let checksum = Checksum::from_headers(&headers)?;
    let content_length = number(&headers, "content-length")?;
    let new_name = renamed(&headers)?;
    let mut upload = live_upload(&state, user, &id).await?;
    if let Some((name, name_bytes)) = new_name {
        // Used by the completion this request may make; the row keeps the created name.
        upload.name = name;
        upload.name_bytes = name_bytes;
    }
    if upload.image_id.is_some() {
        return Err(ApiError::bad_request(
            "upload_finished",
            "this upload is already complete",
        ));
    }
    if offset != upload.offset {
        return Ok(offset_mismatch(offset, upload.offset));
    }
    let remaining = upload.length - upload.offset;
    if content_length.is_some_and(|n| n > remaining) {
        return Err(exceeds(remaining));
    }
    ensure_space(&state, content_length.unwrap_or(remaining)).await?;
    let lease = lock(&state, &upload).await?;
    // What was read before the lease may be stale: another writer (a joined creation, a
    // retry) may have moved the offset or finished in between. Writing from a stale offset
    // would truncate bytes it acknowledged, so the checks are made again under the lease.
    let fresh = match reread(&state, &upload).await {
        Ok(fresh) => fresh,
        Err(e) => {
            lease.release().await;
            return Err(e);
        }
    };
    if fresh.image_id.is_some() || fresh.offset != upload.offset {
        lease.release().await;
        if fresh.image_id.is_some() {
            return Err(ApiError::bad_request(
                "upload_finished",
                "this upload is already complete",
            ));
        }
        return Ok(offset_mismatch(offset, fresh.offset));
    }
    // The upload as it stands under the lease (a completion's `verified` digest among it),
    // with the name this request gives it.
    let upload = Upload {
        name: upload.name,
        name_bytes: upload.name_bytes,
        ..fresh
    };
    let result = if remaining == 0 {
        resume_completion(&state, &upload, lease.holder())
            .await
            .map(|image| match image {
                Some(image) => (upload.length, Some(image)),
                None => (0, None),
            })
    } else {
        write_part(&state, &upload, lease.holder(), checksum, body).await
    };
    lease.release().await;
    let (new_offset, image) = result?;
    let mut h = HeaderMap::new();
    if let Some(image) = image {
        // The client records this id in its sync list.
        h.insert(header(IMAGE_ID), value(image.id));
    }
    h.insert(header(tus::UPLOAD_OFFSET), value(new_offset));
    h.insert(
        header(tus::UPLOAD_EXPIRES),
        expires_header(expiry(&state, now())),
    );
    Ok((StatusCode::NO_CONTENT, h).into_response())
}

fn offset_mismatch(asked: u64, stands: u64) -> Response {
    let mut r = ApiError::new(
        StatusCode::CONFLICT,
        "offset_mismatch",
        format!("Upload-Offset is {asked}, the upload stands at {stands}"),
    )
    .into_response();
    r.headers_mut()
        .insert(header(tus::UPLOAD_OFFSET), value(stands));
    r
}

fn exceeds(remaining: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "exceeds_length",
        format!("the body is longer than the {remaining} bytes left of Upload-Length"),
    )
}

/// Opens the upload's bytes for this lease holder at the acknowledged offset. Bytes that were
/// acknowledged but are gone (deleted by hand) reset the upload to 0: the client sends again.
async fn open_writer(
    state: &AppState,
    upload: &Upload,
    holder: &str,
) -> Result<Box<dyn PartWriter>, ApiError> {
    match state.blobs.open_part(&upload.id, upload.offset).await {
        Ok(w) => Ok(w),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(busy()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            tracing::warn!(upload = %upload.id, error = %e, "stored bytes lost; upload reset");
            state.store.reset_upload(&upload.id, holder).await?;
            if upload.offset == 0 {
                state.blobs.create_part(&upload.id).await?;
                return state
                    .blobs
                    .open_part(&upload.id, 0)
                    .await
                    .map_err(Into::into);
            }
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "offset_mismatch",
                "the upload's stored bytes were lost; start again from offset 0",
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// One part, then completion if it was the last. Returns the new offset and the image.
async fn write_part(
    state: &AppState,
    upload: &Upload,
    holder: &str,
    checksum: Option<Checksum>,
    body: Body,
) -> Result<(u64, Option<ImageInfo>), ApiError> {
    let mut part = open_writer(state, upload, holder).await?;
    let new_offset = match receive_part(state, upload, holder, part.as_mut(), checksum, body).await
    {
        Ok(offset) => offset,
        Err(e) => {
            // Whatever this part wrote goes; the writer still holds the file alone.
            if let Err(abort) = part.abort().await {
                tracing::warn!(upload = %upload.id, error = %abort, "discarding a part failed");
            }
            return Err(e);
        }
    };
    if new_offset < upload.length {
        return Ok((new_offset, None));
    }
    let done = Upload {
        offset: new_offset,
        ..upload.clone()
    };
    let image = finish(state, &done, holder, part).await?;
    Ok((new_offset, Some(image)))
}

/// Streams one part into the writer and acknowledges it. Returns the new offset.
///
/// A part with a checksum is all or nothing: cut off or mismatched, it is discarded. A part
/// without one keeps whatever arrived before the connection broke, as tus allows.
async fn receive_part(
    state: &AppState,
    upload: &Upload,
    holder: &str,
    part: &mut dyn PartWriter,
    mut checksum: Option<Checksum>,
    body: Body,
) -> Result<u64, ApiError> {
    let remaining = upload.length - upload.offset;
    let idle = state.config.idle_timeout;
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    let mut cut: Option<String> = None;
    let mut renewed = Instant::now();
    let mut pace = Pace::new(idle, state.config.min_upload_rate);
    loop {
        let chunk = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => {
                cut = Some(format!("no data for {} ms", idle.as_millis()));
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
            return Err(exceeds(remaining));
        }
        if let Some(c) = checksum.as_mut() {
            c.update(&chunk);
        }
        part.write(&chunk).await.map_err(write_error)?;
        received += chunk.len() as u64;
        if let Err(slow) = pace.add(chunk.len()) {
            cut = Some(slow);
            break;
        }
        // A slow part on a slow link may outlast the lease: keep it while data flows, and stop
        // at once if someone else took it or the upload was deleted.
        if renewed.elapsed() > idle / 2 {
            renew(state, upload, holder).await?;
            renewed = Instant::now();
        }
    }
    if let Some(reason) = &cut {
        tracing::info!(upload = %upload.id, received, reason, "part cut off");
        if checksum.is_some() {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "part_cut_off",
                format!("the part was cut off ({reason}) and discarded"),
            ));
        }
    }
    if let Some(c) = checksum {
        if !c.matches() {
            return Err(ApiError::new(
                StatusCode::from_u16(tus::CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST),
                "checksum_mismatch",
                "the part does not match its Upload-Checksum and was discarded",
            ));
        }
    }
    // The lease once more before the part is made durable: a writer that lost it (a stall
    // longer than the lease) stores nothing, which matters where the blob store has no lock
    // of its own (a bucket).
    renew(state, upload, holder).await?;
    part.commit().await.map_err(write_error)?;
    let new_offset = upload.offset + received;
    let expires = expiry(state, now());
    match state
        .store
        .advance_upload(&upload.id, holder, upload.offset, new_offset, expires)
        .await
    {
        Ok(()) => {}
        Err(StoreError::UploadGone) => return Err(gone_or_taken(state, upload).await),
        Err(e) => return Err(e.into()),
    }
    tracing::debug!(upload = %upload.id, new_offset, "part stored");
    Ok(new_offset)
}

/// The rate of a body over windows as long as the idle timeout: a body that trickles just
/// often enough never to be idle would otherwise hold its connection and lease for ever.
struct Pace {
    window: Duration,
    min_bytes: u64,
    started: Instant,
    bytes: u64,
}

impl Pace {
    fn new(window: Duration, min_rate: u64) -> Pace {
        Pace {
            window,
            min_bytes: (min_rate as f64 * window.as_secs_f64()) as u64,
            started: Instant::now(),
            bytes: 0,
        }
    }

    fn add(&mut self, bytes: usize) -> Result<(), String> {
        self.bytes += bytes as u64;
        if self.started.elapsed() < self.window {
            return Ok(());
        }
        if self.bytes < self.min_bytes {
            return Err(format!(
                "{} bytes in {} ms, under the minimum rate",
                self.bytes,
                self.started.elapsed().as_millis()
            ));
        }
        self.started = Instant::now();
        self.bytes = 0;
        Ok(())
    }
}

fn write_error(e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        insufficient_storage(
            "the server's disk filled up during this part; it was discarded".into(),
        )
    } else {
        e.into()
    }
}

/// Every byte is in and `part` holds them alone: hash, check against the declared digest,
/// record the verified digest, publish, record the image.
async fn finish(
    state: &AppState,
    upload: &Upload,
    holder: &str,
    mut part: Box<dyn PartWriter>,
) -> Result<ImageInfo, ApiError> {
    renew(state, upload, holder).await?;
    let digest = part.digest().await?.to_hex().to_string();
    if upload.declared.as_ref().is_some_and(|d| *d != digest) {
        drop(part);
        forget(state, &upload.id).await;
        tracing::warn!(upload = %upload.id, "digest mismatch; upload discarded");
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "digest_mismatch",
            "the file's BLAKE3 does not match the declared digest; the upload was discarded",
        ));
    }
    verify(state, upload, holder, &digest).await?;
    part.publish(&digest).await?;
    record(state, upload, &digest).await
}

/// Records the verified digest, which holds the blob against collection. A blob being
/// collected this moment is waited for, briefly.
async fn verify(
    state: &AppState,
    upload: &Upload,
    holder: &str,
    digest: &str,
) -> Result<(), ApiError> {
    for _ in 0..100 {
        match state.store.verify_upload(&upload.id, holder, digest).await {
            Ok(()) => return Ok(()),
            Err(StoreError::BlobBusy) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(StoreError::UploadGone) => return Err(gone_or_taken(state, upload).await),
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::BlobBusy.into())
}

/// Completes an upload whose bytes all arrived but that has no image yet (the request that
/// sent them was cut short). None: the bytes are gone and the upload starts again from 0.
async fn resume_completion(
    state: &AppState,
    upload: &Upload,
    holder: &str,
) -> Result<Option<ImageInfo>, ApiError> {
    match state.blobs.open_part(&upload.id, upload.length).await {
        Ok(part) => return finish(state, upload, holder, part).await.map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(busy()),
        // No stored bytes, or not all of them.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
            ) => {}
        Err(e) => return Err(e.into()),
    }
    // No part file: published just before a crash, if its digest was verified and recorded
    // first. Even then the blob is hashed again: an image is never recorded unverified.
    if let Some(digest) = &upload.verified {
        if blob_hashes_to(state, digest).await? {
            return record(state, upload, digest).await.map(Some);
        }
    }
    tracing::warn!(upload = %upload.id, "all bytes acknowledged but not all stored; upload reset");
    state.store.reset_upload(&upload.id, holder).await?;
    state.blobs.discard(&upload.id).await?;
    state.blobs.create_part(&upload.id).await?;
    Ok(None)
}

async fn blob_hashes_to(state: &AppState, digest: &str) -> Result<bool, ApiError> {
    let mut reader = match state.blobs.open(digest, 0).await {
        Ok((_, r)) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await?;
        if n == 0 {
            return Ok(hasher.finalize().to_hex().as_str() == digest);
        }
        hasher.update(&buf[..n]);
    }
}

/// Identifies the published blob and records the image for the upload's user.
async fn record(state: &AppState, upload: &Upload, digest: &str) -> Result<ImageInfo, ApiError> {
    let identified = identified(identify_blob(state, digest, upload.length).await?);
    let image = NewImage {
        user_id: upload.user_id,
        digest: digest.to_owned(),
        identifier: identified.identifier,
        name: upload.name.clone(),
        name_bytes: upload.name_bytes.clone(),
        bytes: upload.length,
        width: identified.width,
        height: identified.height,
        format: identified.format,
        mtime: upload.mtime,
        uploaded_at: now(),
        evidence: Some(identified.evidence),
        // Checked at creation.
        folder: Metadata::parse(&upload.metadata)
            .ok()
            .and_then(|m| m.get(meta::FOLDER).map(str::to_owned))
            .filter(|f| !f.is_empty()),
        taken: identified.taken,
    };
    match state.store.complete_upload(&upload.id, &image).await {
        Ok(info) => {
            tracing::info!(upload = %upload.id, image = info.id, "upload complete");
            Ok(info)
        }
        Err(StoreError::UploadGone) => Err(gone_or_taken(state, upload).await),
        Err(e) => Err(e.into()),
    }
}

/// What the image row records of the server's identification (evidence `none` for a file
/// that is not an image).
pub(crate) fn identified(identity: Option<photosync_identify::Identity>) -> Identified {
    match identity {
        Some(i) => Identified {
            identifier: Some(i.identifier.to_string()),
            evidence: i.evidence.to_string(),
            width: Some(i.width),
            height: Some(i.height),
            format: Some(i.format.name().to_owned()),
            taken: i.evidence.capture.time,
        },
        None => Identified {
            identifier: None,
            evidence: NOT_AN_IMAGE.to_owned(),
            width: None,
            height: None,
            format: None,
            taken: None,
        },
    }
}

/// The server's own identity of a published blob (None for videos and other non-images).
/// At most one identification per core runs at once, so memory stays bounded however many
/// uploads finish together.
pub(crate) async fn identify_blob(
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
    let (_, reader) = state.blobs.open(digest, 0).await?;
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
    User(user): User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let upload = live_upload(&state, user, &id).await?;
    let lease = lock(&state, &upload).await?;
    if upload.image_id.is_none() {
        state.blobs.discard(&upload.id).await?;
    }
    state.store.delete_upload(&upload.id).await?;
    lease.release().await;
    Ok(StatusCode::NO_CONTENT.into_response())
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
        let parsed = ChecksumHeader::parse(v).map_err(|e| match e {
            HeaderError::UnsupportedAlgorithm(_) => {
                ApiError::bad_request("unsupported_checksum", format!("Upload-Checksum: {e}"))
            }
            _ => ApiError::bad_request("malformed_checksum", format!("Upload-Checksum {e}")),
        })?;
        let want = parsed.expected;
        Ok(Some(match parsed.algorithm {
            ChecksumAlgorithm::Sha1 => Checksum::Sha1(sha1::Sha1::new(), want),
            ChecksumAlgorithm::Sha256 => Checksum::Sha256(sha2::Sha256::new(), want),
            ChecksumAlgorithm::Blake3 => Checksum::Blake3(Box::default(), want),
        }))
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
