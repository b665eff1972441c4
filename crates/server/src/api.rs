//! The JSON API: batched detection, the image list, and downloads. Every lookup is scoped to
//! the token's user.

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use photosync_identify::{Identifier, ParseIdentifierError};
use photosync_protocol::{
    Account, Candidate, DetectRequest, DetectResponse, DetectResult, Distance, ImageInfo,
    ImageList, DETECT_MAX_BATCH,
};
use serde::Deserialize;

use crate::auth::User;
use crate::error::ApiError;
use crate::store::NOT_AN_IMAGE;
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
}

pub async fn list_images(
    State(state): State<AppState>,
    User(user): User,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ImageList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let images: Vec<ImageInfo> = state.store.list_images(user, q.after, limit).await?;
    let next = (images.len() == limit as usize)
        .then(|| images.last().map(|i| i.id))
        .flatten();
    Ok(Json(ImageList { images, next }))
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

pub async fn download(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (info, format) = state
        .store
        .image(user, image_id(&id)?)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let (len, reader) = state.blobs.open(&info.digest).await?;
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
    let mut r = Body::from_stream(tokio_util::io::ReaderStream::new(reader)).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", info.digest)).map_err(ApiError::internal)?,
    );
    h.insert(header::CONTENT_DISPOSITION, disposition);
    Ok(r)
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
