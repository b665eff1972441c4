//! Bounds on every request, whatever its route: the size of its line and headers, the time it
//! may take, and which browser origins may call at all (CORS).

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use photosync_protocol::{tus, IMAGE_ID_HEADER};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::AppState;

/// Longest request target; ours are short paths with a small query.
pub const MAX_URI: usize = 8 << 10;
/// Most header bytes and headers a request may carry. The HTTP layer is allowed more, so that
/// these answers (with a JSON body) come first.
pub const MAX_HEADER_BYTES: usize = 64 << 10;
pub const MAX_HEADERS: usize = 100;

/// 414 and 431 with a JSON body, before any handler runs.
pub async fn request_size(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let uri_len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if uri_len > MAX_URI {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {uri_len} bytes; at most {MAX_URI}"),
        )
        .into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "{} headers of {bytes} bytes; at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Requests that stream an upload body are bounded by the idle timeout between chunks (a
/// large part on a slow link takes long, rightly); every other request must be answered,
/// its body read, within the request timeout.
pub async fn request_timeout(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let streams_upload = matches!(*request.method(), Method::PATCH | Method::POST)
        && request
            .uri()
            .path()
            .starts_with(photosync_protocol::path::UPLOADS);
    if streams_upload {
        return next.run(request).await;
    }
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request took longer than {} s", limit.as_secs_f32()),
        )
        .into_response(),
    }
}

/// CORS for browser tus clients (Uppy, tus-js-client in a page), off unless origins are given.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o.trim_end_matches('/')) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = %o, "ignoring a CORS origin that is not a header value");
                None
            }
        })
        .collect();
    let names = |list: &[&'static str]| -> Vec<HeaderName> {
        list.iter().map(|n| HeaderName::from_static(n)).collect()
    };
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(names(&[
                "authorization",
                "content-type",
                "x-requested-with",
                "x-http-method-override",
                tus::RESUMABLE,
                tus::UPLOAD_LENGTH,
                tus::UPLOAD_METADATA,
                tus::UPLOAD_OFFSET,
                tus::UPLOAD_CHECKSUM,
                "upload-defer-length",
                "upload-concat",
                photosync_protocol::NAME_HEADER,
            ]))
            .expose_headers(names(&[
                "location",
                tus::RESUMABLE,
                tus::VERSION_HEADER,
                tus::EXTENSION,
                tus::MAX_SIZE,
                tus::CHECKSUM_ALGORITHM,
                tus::UPLOAD_OFFSET,
                tus::UPLOAD_LENGTH,
                tus::UPLOAD_METADATA,
                tus::UPLOAD_EXPIRES,
                IMAGE_ID_HEADER,
                photosync_protocol::JOINED_HEADER,
            ]))
            .max_age(std::time::Duration::from_secs(3600)),
    )
}
