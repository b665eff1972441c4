//! The JSON API: batched detection, the image list, and downloads. Every lookup is scoped to
//! the token's user.

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use photosync_identify::{Identifier, Limits, ParseIdentifierError};
use photosync_protocol::{
    parse_range, Account, ByteRange, Candidate, DetectRequest, DetectResponse, DetectResult,
    Distance, ImageInfo, ImageList, DETECT_MAX_BATCH, THUMBNAIL_SIZES,
};
use serde::Deserialize;

use crate::auth::User;
use crate::error::ApiError;
use crate::store::{ImageQuery, NOT_AN_IMAGE};
use crate::AppState;

/// A full batch of 10,000 queries is about 1.5 MB of JSON.
pub const DETECT_MAX_BODY: usize = 4 << 20;

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub async fn detect(
    State(state): State<AppState>,
    User(user): User,
    body: Result<Json<DetectRequest>, JsonRejection>,
) -> Result<Json<DetectResponse>, ApiError> {
    let Json(req) = body.map_err(|e| match e {
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("detection bodies are limited to {DETECT_MAX_BODY} bytes"),
            )
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            "send Content-Type: application/json",
        ),
        other => ApiError::bad_request("invalid_json", other.body_text()),
    })?;
    if req.images.len() > DETECT_MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "at most {DETECT_MAX_BATCH} images per request, got {}",
                req.images.len()
            ),
        ));
    }
    let mut digests = Vec::with_capacity(req.images.len());
    let mut identifiers = Vec::with_capacity(req.images.len());
    for (i, q) in req.images.iter().enumerate() {
        if !is_digest(&q.digest) {
            return Err(ApiError::bad_request(
                "invalid_digest",
                format!("images[{i}].digest is not 64 hex digits"),
            ));
        }
        digests.push(q.digest.to_ascii_lowercase());
        identifiers.push(
            match q.identifier.as_deref().map(str::parse::<Identifier>) {
                None => None,
                Some(Ok(id)) => Some(id),
                // Another version's identifier compares with nothing here: bytes alone answer.
                Some(Err(ParseIdentifierError::Version(_))) => None,
                Some(Err(e)) => {
                    return Err(ApiError::bad_request(
                        "invalid_identifier",
                        format!("images[{i}].identifier: {e}"),
                    ))
                }
            },
        );
    }

    let exact = state.store.images_by_digest(user, &digests).await?;
    // Near matches only for what is not held byte for byte.
    let wanted: Vec<Option<Identifier>> = identifiers
        .iter()
        .zip(&exact)
        .map(|(id, hit)| if hit.is_some() { None } else { *id })
        .collect();
    if wanted.iter().any(Option::is_some) {
        state.index.refresh(state.store.as_ref(), user).await?;
    }
    let near = state.index.candidates(user, &wanted).await;
    let near_ids: Vec<i64> = near.iter().flatten().map(|(id, _)| *id).collect();
    let mut near_images = state.store.images_by_id(user, &near_ids).await?.into_iter();
    let mut near_evidence = state
        .store
        .evidence_by_id(user, &near_ids)
        .await?
        .into_iter();

    let results = exact
        .into_iter()
        .zip(near)
        .map(|(hit, near)| {
            if let Some(image) = hit {
                return DetectResult::SameBytes { image };
            }
            // Every id is read in order, even of an image removed meanwhile.
            let candidates: Vec<Candidate> = near
                .into_iter()
                .filter_map(|(_, d)| {
                    let image = near_images.next().flatten();
                    let evidence = near_evidence.next().flatten();
                    Some(Candidate {
                        image: image?,
                        distance: Distance {
                            total: d.total(),
                            luma: d.luma,
                            texture: d.texture,
                            colour: d.colour,
                        },
                        evidence: evidence.filter(|e| e != NOT_AN_IMAGE),
                    })
                })
                .collect();
            if candidates.is_empty() {
                DetectResult::Absent
            } else {
                DetectResult::Candidates { candidates }
            }
        })
        .collect();
    Ok(Json(DetectResponse { results }))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    after: i64,
    limit: Option<u32>,
    since: Option<String>,
    until: Option<String>,
    name: Option<String>,
}

/// A `YYYY-MM-DD` day of a list filter.
fn day(field: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    let b = v.as_bytes();
    let well_formed = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !well_formed {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("{field} must be a day as YYYY-MM-DD, got {v:?}"),
        ));
    }
    Ok(Some(v))
}

pub async fn list_images(
    State(state): State<AppState>,
    User(user): User,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ImageList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    if q.name.as_ref().is_some_and(|n| n.len() > 255) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "name is longer than a file name can be",
        ));
    }
    let query = ImageQuery {
        after: q.after,
        limit,
        since: day("since", q.since)?,
        until: day("until", q.until)?,
        name: q.name.filter(|n| !n.is_empty()),
    };
    let images: Vec<ImageInfo> = state.store.list_images(user, &query).await?;
    let next = (images.len() == limit as usize)
        .then(|| images.last().map(|i| i.id))
        .flatten();
    Ok(Json(ImageList { images, next }))
}

/// `GET /api/v1/version`, without a token: which release this is and which protocols it
/// speaks, so a client can say plainly when one side must be upgraded.
pub async fn version(State(state): State<AppState>) -> Json<photosync_protocol::VersionInfo> {
    Json(photosync_protocol::VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        commit: state.config.commit.clone(),
        protocol: photosync_protocol::PROTOCOL,
        oldest_protocol: photosync_protocol::OLDEST_PROTOCOL,
    })
}

/// `GET /api/v1/health`, without a token: 200 while the store answers, 503 when it does not,
/// so a load balancer sends no one to an instance that lost its database.
pub async fn health(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "status": "ok" }))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: the store does not answer");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the server cannot reach its database",
            )
            .into_response()
        }
    }
}

/// Whose token this is and what the account holds: what a client shows as "connected as".
pub async fn account(
    State(state): State<AppState>,
    User(user): User,
) -> Result<Json<Account>, ApiError> {
    // Removed between the token check and here: the token no longer names anyone.
    let summary = state
        .store
        .account(user)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(Account {
        user: summary.name,
        images: summary.images,
        bytes: summary.bytes,
        quota: summary.quota,
    }))
}

fn image_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

pub async fn image_info(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
) -> Result<Json<ImageInfo>, ApiError> {
    let (info, _) = state
        .store
        .image(user, image_id(&id)?)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(info))
}

/// A blob's bytes never change under its name, nor a thumbnail made from them.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("private, max-age=31536000, immutable");

/// True when `If-None-Match` names `etag` (or is `*`): the client's copy is current.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

fn unchanged(etag: &str) -> Response {
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, IMMUTABLE);
    r
}

/// The range a download serves: `Range` is honoured unless an `If-Range` names another
/// version (then the whole content is sent, as RFC 9110 asks).
fn wanted_range(headers: &HeaderMap, etag: &str, len: u64) -> Result<Option<ByteRange>, String> {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        if if_range.to_str().ok().map(str::trim) != Some(etag) {
            return Ok(None);
        }
    }
    parse_range(range, len).map_err(|e| format!("Range {range:?}: {e}"))
}

/// 416, with the length the range missed (RFC 9110 15.5.17).
fn unsatisfiable(why: String, len: u64) -> Response {
    let mut r = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
        why,
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
        r.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    r
}

pub async fn download(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (info, format) = state
        .store
        .image(user, image_id(&id)?)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let etag = format!("\"{}\"", info.digest);
    if not_modified(&headers, &etag) {
        return Ok(unchanged(&etag));
    }
    let range = match wanted_range(&headers, &etag, info.bytes) {
        Ok(range) => range,
        Err(why) => return Ok(unsatisfiable(why, info.bytes)),
    };
    let (len, reader) = state
        .blobs
        .open(&info.digest, range.map_or(0, |r| r.start))
        .await?;
    if len != info.bytes {
        // Never answer for bytes that are not the image's.
        return Err(ApiError::internal(format!(
            "blob {} holds {len} bytes, its image {}",
            info.digest, info.bytes
        )));
    }
    let content_type = match format.as_deref() {
        Some("jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("tiff") => "image/tiff",
        Some("bmp") => "image/bmp",
        Some("heif") => "image/heif",
        _ => "application/octet-stream",
    };
    let disposition = content_disposition(&info.name);
    let sent = range.map_or(len, |r| r.len());
    let reader = tokio::io::AsyncReadExt::take(reader, sent);
    let mut r = Body::from_stream(tokio_util::io::ReaderStream::new(reader)).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(sent));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(ApiError::internal)?,
    );
    h.insert(header::CACHE_CONTROL, IMMUTABLE);
    h.insert(header::CONTENT_DISPOSITION, disposition);
    if let Some(range) = range {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {}-{}/{len}", range.start, range.end))
                .map_err(ApiError::internal)?,
        );
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(r)
}

#[derive(Debug, Deserialize)]
pub struct ThumbnailQuery {
    size: Option<u32>,
}

/// `GET /api/v1/images/ID/thumbnail?size=N`: a JPEG whose longest side is at most N (one of
/// [`THUMBNAIL_SIZES`]), made from the reduced decode on first request and cached with the
/// blob.
pub async fn thumbnail(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
    query: Result<Query<ThumbnailQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let size = q.size.unwrap_or(THUMBNAIL_SIZES[THUMBNAIL_SIZES.len() - 1]);
    if !THUMBNAIL_SIZES.contains(&size) {
        return Err(ApiError::bad_request(
            "invalid_size",
            format!("size must be one of {THUMBNAIL_SIZES:?}, got {size}"),
        ));
    }
    let (info, _) = state
        .store
        .image(user, image_id(&id)?)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let etag = format!("\"{}-{size}\"", info.digest);
    if not_modified(&headers, &etag) {
        return Ok(unchanged(&etag));
    }
    let jpeg = match state.blobs.thumbnail(&info.digest, size).await? {
        Some(jpeg) => jpeg,
        None => {
            let jpeg = make_thumbnail(&state, &info, size).await?;
            if let Err(e) = state
                .blobs
                .put_thumbnail(&info.digest, size, jpeg.clone())
                .await
            {
                tracing::warn!(image = info.id, error = %e, "thumbnail not cached");
            }
            jpeg
        }
    };
    let mut r = jpeg.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).map_err(ApiError::internal)?,
    );
    h.insert(header::CACHE_CONTROL, IMMUTABLE);
    Ok(r)
}

/// Decodes the blob at reduced size, under the same bound on concurrent decodes as ingest.
async fn make_thumbnail(
    state: &AppState,
    info: &ImageInfo,
    size: u32,
) -> Result<Vec<u8>, ApiError> {
    let no_picture = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_thumbnail",
            format!("image {} has no picture the server can read", info.id),
        )
    };
    let limits = Limits::default();
    if info.bytes > limits.max_file_bytes || info.width.is_none() {
        return Err(no_picture());
    }
    let _permit = state
        .identify_permits
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let (len, reader) = state.blobs.open(&info.digest, 0).await?;
    let mut bytes = Vec::with_capacity(len.min(limits.max_file_bytes) as usize);
    tokio::io::AsyncReadExt::read_to_end(
        &mut tokio::io::AsyncReadExt::take(reader, limits.max_file_bytes),
        &mut bytes,
    )
    .await?;
    tokio::task::spawn_blocking(move || {
        photosync_identify::preview_bytes(&bytes, &limits)
            .and_then(|pixels| photosync_thumbs::jpeg(pixels, size))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| {
        tracing::warn!(image = info.id, error = %e, "no thumbnail");
        no_picture()
    })
}

/// `attachment` with the stored name (RFC 6266): an ASCII `filename` for old clients and the
/// exact name as UTF-8 in `filename*`. Control characters never reach the header.
fn content_disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}
