//! Errors as HTTP responses: a status, and a JSON body with a stable code and a message.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use photosync_protocol::tus;

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

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(e)
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
        // Every answer, errors included, says which tus version it speaks.
        r.headers_mut()
            .insert(tus::RESUMABLE, HeaderValue::from_static(tus::VERSION));
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
        r
    }
}
