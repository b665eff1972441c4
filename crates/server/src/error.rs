//! Errors as HTTP responses: a status, and a JSON body with a stable code and a message.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use photosync_protocol::tus;

use crate::store::{LimitError, StoreError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such upload or image",
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed; try again",
        )
    }
}

impl ApiError {
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take that method",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Limit(limit) => {
                let (status, code) = match limit {
                    // These clear as the user's uploads finish or expire: try later.
                    LimitError::TooManyUploads { .. } => {
                        (StatusCode::TOO_MANY_REQUESTS, "too_many_uploads")
                    }
                    LimitError::UnfinishedBytes { .. } => {
                        (StatusCode::TOO_MANY_REQUESTS, "too_many_unfinished_bytes")
                    }
                    LimitError::Quota { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "quota_exceeded"),
                };
                ApiError::new(status, code, limit.to_string())
            }
            StoreError::BlobBusy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the server is cleaning up this file's storage; retry in a second",
            ),
            StoreError::UploadGone => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "the upload was deleted while this request ran",
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::cleanup::CleanupError> for ApiError {
    fn from(e: crate::cleanup::CleanupError) -> Self {
        match e {
            crate::cleanup::CleanupError::Store(e) => e.into(),
            crate::cleanup::CleanupError::Io(e) => e.into(),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = photosync_protocol::ApiError {
            code: self.code.to_owned(),
            message: self.message,
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::PRECONDITION_FAILED {
            r.headers_mut()
                .insert(tus::VERSION_HEADER, HeaderValue::from_static(tus::VERSION));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            );
        }
        r
    }
}
