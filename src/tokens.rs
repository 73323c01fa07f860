//! Pixel access tokens at rest (docs/secrets.md): plaintext tokens written by a CRM are sealed with
//! the key ring's primary key and cleared; `stagecast keys rotate` re-seals tokens sealed with
//! older keys. Updates are compare-and-set, so a token the CRM changes meanwhile is never lost.

use crate::secrets::{KeyRing, Secret};
use crate::store::{Store, StoreError};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RotateReport {
    pub resealed: usize,
    pub current: usize,
    pub sealed_plaintext: usize,
    /// (pixel row id, why) for tokens that could not be opened with any key of the ring.
    pub failed: Vec<(i64, String)>,
}

/// Seal every plaintext token and clear the plaintext column. Returns how many were sealed.
pub async fn seal_plaintext(store: &Store, keys: &KeyRing) -> Result<usize, StoreError> {
    let mut sealed = 0;
    for (pixel_ref, plain) in store.plaintext_tokens().await? {
        let secret = Secret::new(plain);
        if store
            .store_sealed_token(pixel_ref, &keys.seal(secret.expose()), secret.expose())
            .await?
        {
            sealed += 1;
            tracing::info!(
                pixel_ref,
                key_id = keys.primary_key_id(),
                "sealed a plaintext access token"
            );
        }
    }
    Ok(sealed)
}

/// Re-seal every token not sealed with the primary key, then seal plaintext ones.
pub async fn rotate(store: &Store, keys: &KeyRing) -> Result<RotateReport, StoreError> {
    let mut report = RotateReport::default();
    for (pixel_ref, sealed) in store.sealed_tokens().await? {
        if !keys.needs_reseal(&sealed) {
            report.current += 1;
            continue;
        }
        match keys.reseal(&sealed) {
            Ok(new) => {
                if store.replace_sealed_token(pixel_ref, &new, &sealed).await? {
                    report.resealed += 1;
                }
            }
            Err(e) => report.failed.push((pixel_ref, e.to_string())),
        }
    }
    report.sealed_plaintext = seal_plaintext(store, keys).await?;
    Ok(report)
}
