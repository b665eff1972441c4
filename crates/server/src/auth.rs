//! Bearer tokens: random, shown once, stored only as their BLAKE3 hash, compared in constant
//! time.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::store::UserId;
use crate::AppState;

/// A new random token: 32 bytes from the OS generator, hex, with a recognisable prefix.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("psk_{hex}")
}

pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// The user a request's `Authorization: Bearer` token belongs to.
#[derive(Debug, Clone, Copy)]
pub struct User(pub UserId);

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid bearer token is required",
    )
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut values = parts
            .headers
            .get_all(axum::http::header::AUTHORIZATION)
            .iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(unauthorized());
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().split_once(' '))
            // The scheme is case-insensitive (RFC 9110).
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(unauthorized)?;
        let hash = blake3::hash(token.as_bytes());
        let Some((user, stored)) = state.store.user_by_token_hash(&hash.to_hex()).await? else {
            return Err(unauthorized());
        };
        // blake3::Hash compares in constant time.
        match blake3::Hash::from_hex(stored) {
            Ok(stored) if stored == hash => Ok(User(user)),
            _ => Err(unauthorized()),
        }
    }
}
