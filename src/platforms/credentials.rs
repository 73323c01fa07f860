//! A pixel row's access token, whatever the platform: a plaintext one the CRM just wrote
//! (sealed by the worker's maintenance shortly, docs/secrets.md), else the sealed one opened
//! with the key ring.

use super::platform::DestinationProblem;
use crate::alerts::AlertCause;
use crate::secrets::{KeyRing, Secret};
use crate::store::PixelRow;

/// The token to call the platform with, or the alert that says why there is none.
pub fn access_token(
    pixel: &PixelRow,
    keys: Option<&KeyRing>,
) -> Result<Secret, DestinationProblem> {
    if let Some(plain) = pixel
        .access_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Ok(Secret::new(plain.to_string()));
    }
    let problem = |cause, message: String| DestinationProblem { cause, message };
    let Some(sealed) = pixel
        .access_token_enc
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    else {
        return Err(problem(
            AlertCause::TokenMissing,
            "the pixel has no access token".into(),
        ));
    };
    let Some(keys) = keys else {
        return Err(problem(
            AlertCause::TokenUnreadable,
            "the token is encrypted but STAGECAST_KEYS is not configured".into(),
        ));
    };
    keys.open(sealed).map_err(|e| {
        problem(
            AlertCause::TokenUnreadable,
            format!("cannot decrypt the token: {e}"),
        )
    })
}
