//! HEIC/HEIF: decoded through the system libheif when built with the `heif` feature.

use crate::decode::{Decoded, Limits};
use crate::IdentifyError;

#[cfg(not(feature = "heif"))]
pub(crate) fn decode(_bytes: &[u8], _limits: &Limits) -> Result<Decoded, IdentifyError> {
    Err(IdentifyError::Unsupported(
        "HEIC/HEIF (this build has no libheif support)".into(),
    ))
}
