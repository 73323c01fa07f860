//! Protection of ad-platform access tokens at rest (`pixels.access_token_enc`).
//!
//! AES-256-GCM with a key ring, read from `STAGECAST_KEYS`:
//!
//! ```text
//! STAGECAST_KEYS=k2:<base64 of 32 bytes>,k1:<base64 of 32 bytes>
//! ```
//!
//! The first key seals; every key opens. The key id travels inside each sealed token, so tokens
//! sealed before a rotation stay readable while the old key is still listed.
//!
//! Sealed format, version 1 (stable: CRM backends produce it themselves, see `docs/secrets.md`):
//!
//! ```text
//! v1:<key_id>:<base64(nonce[12] || ciphertext || tag[16])>
//! ```
//!
//! * `key_id`: 1–32 characters of `[A-Za-z0-9_-]`.
//! * base64: standard alphabet, padded (unpadded is also accepted when reading).
//! * nonce: 12 random bytes, fresh for every seal.
//! * AAD: the ASCII bytes `stagecast:v1:<key_id>`, so the key id cannot be swapped.
//! * plaintext: the token's UTF-8 bytes.
//!
//! Nothing in this module prints key material or plaintext: [`Secret`] and [`KeyRing`] redact
//! themselves in `Debug`/`Display`, and [`SecretsError`] messages only ever name validated key ids.

mod error;
mod keyring;
mod secret;

#[cfg(test)]
mod tests;

pub use error::{KeyIdProblem, MalformedReason, SecretsError, SpecProblem};
pub use keyring::{KeyRing, KEYS_ENV, KEY_LEN, MAX_KEY_ID_LEN, NONCE_LEN, SEALED_VERSION, TAG_LEN};
pub use secret::Secret;
