//! Errors of the secrets module.
//!
//! Every message here may end up in a log line, a CLI error or a chat alert, so none of them ever
//! carries key material, a plaintext token, or an echo of unvalidated input (which could be either:
//! an operator who swaps id and key in `STAGECAST_KEYS`, or a CRM that writes a plaintext token
//! into `access_token_enc`). The only input echoed back is a key id that passed validation — key
//! ids are public by design, they sit in clear in every sealed token.

use super::keyring::MAX_KEY_ID_LEN;

/// Why a key id was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyIdProblem {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} characters long (at most {MAX_KEY_ID_LEN})")]
    TooLong { len: usize },
    #[error("may only contain A-Z, a-z, 0-9, `_` and `-`")]
    InvalidChar,
}

/// What is wrong with one entry of a key ring spec.
///
/// Entries are identified by position only, never by their id: when an operator mangles the spec
/// (swaps id and key, or splits a key at a stray `:`), whatever sits in the id slot may be a piece
/// of a key, and it still passes id validation if it is short enough.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecProblem {
    #[error("expected `<key_id>:<base64 of 32 bytes>` (no `:` found)")]
    MissingSeparator,
    #[error("key id {0}")]
    KeyId(KeyIdProblem),
    #[error("duplicate key id (same as entry {first_entry})")]
    DuplicateKeyId { first_entry: usize },
    // The base64 crate's own error names the offending symbol and offset; that would leak a
    // character of the key, so it is deliberately dropped.
    #[error("key is not valid base64 (standard or URL-safe alphabet, padding optional)")]
    BadBase64,
    #[error("key decoded to {len} bytes; AES-256 needs exactly 32")]
    BadKeyLength { len: usize },
}

/// Why a sealed token could not be parsed (before any decryption was attempted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedReason {
    #[error("expected `v1:<key_id>:<base64(nonce || ciphertext || tag)>`")]
    Shape,
    #[error("unsupported format version (this build reads `v1`)")]
    UnsupportedVersion,
    #[error("key id {0}")]
    KeyId(KeyIdProblem),
    #[error("payload is not valid standard base64")]
    Base64,
    #[error(
        "payload decodes to {len} bytes; at least 28 (12-byte nonce + 16-byte tag) are required"
    )]
    TooShort { len: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "key ring spec is empty: expected `<key_id>:<base64 of 32 bytes>[,<key_id>:<base64>...]`"
    )]
    NoKeys,
    /// `entry` is the 1-based position in the comma-separated spec, so the operator can find it
    /// without the message quoting it.
    #[error("key ring spec, entry {entry}: {problem}")]
    InvalidSpec { entry: usize, problem: SpecProblem },
    #[error("invalid key id: key id {0}")]
    InvalidKeyId(KeyIdProblem),
    #[error("environment variable {var} is not valid UTF-8")]
    EnvNotUnicode { var: &'static str },
    #[error(
        "sealed token uses key id `{key_id}`, which is not in the key ring (add the key to STAGECAST_KEYS)"
    )]
    UnknownKeyId { key_id: String },
    #[error("malformed sealed token: {reason}")]
    Malformed { reason: MalformedReason },
    #[error(
        "sealed token with key id `{key_id}` failed authentication: it was altered, or sealed with a different key under the same id"
    )]
    Decrypt { key_id: String },
    /// Authentic, so it was sealed by someone holding the key, but not text: a producer bug.
    #[error("sealed token with key id `{key_id}` decrypted to bytes that are not UTF-8")]
    NotUtf8 { key_id: String },
}

impl From<MalformedReason> for SecretsError {
    fn from(reason: MalformedReason) -> Self {
        SecretsError::Malformed { reason }
    }
}
