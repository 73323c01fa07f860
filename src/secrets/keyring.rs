//! [`KeyRing`]: AES-256-GCM keys by id, and the `v1` sealed-token format.
//!
//! See the module docs of [`crate::secrets`] and `docs/secrets.md` for the format; the tests at the
//! bottom pin it with a known-answer vector computed by Python's `cryptography` package.

use std::env::VarError;
use std::fmt;

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Tag};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::{RngCore as _, TryRngCore as _};

use super::error::{KeyIdProblem, MalformedReason, SecretsError, SpecProblem};
use super::secret::{wipe, Secret};

type Nonce = aes_gcm::aead::Nonce<Aes256Gcm>;

/// Environment variable holding the key ring spec.
pub const KEYS_ENV: &str = "STAGECAST_KEYS";
/// Version tag of the sealed format this build writes (and the only one it reads).
pub const SEALED_VERSION: &str = "v1";
pub const MAX_KEY_ID_LEN: usize = 32;
pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// The AAD is this prefix followed by the key id, e.g. `stagecast:v1:k2`.
const AAD_PREFIX: &str = "stagecast:v1:";

/// Standard alphabet, padding optional: operators paste keys from `openssl rand -base64 32`,
/// `head -c32 /dev/urandom | base64` or hand-trimmed values, and padding carries no information.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// URL-safe alphabet, padding optional: what some secret managers and JS tooling emit.
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone)]
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// An ordered set of AES-256-GCM keys. The first (primary) key seals; every key opens.
///
/// Cheap to share behind an `Arc`; it is `Send + Sync`. The expanded key schedules are not
/// zeroed on drop (that would need the `aes/zeroize` feature): the ring is loaded once at start-up
/// and lives until the process exits, so zeroing on drop would protect nothing in practice.
#[derive(Clone)]
pub struct KeyRing {
    /// Never empty; `keys[0]` is the primary.
    keys: Vec<Key>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("primary", &self.primary_key_id())
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// Parses `k2:<base64 32 bytes>,k1:<base64>`. Whitespace around entries, ids and keys is
    /// ignored, and so are blank entries (a trailing comma). The first key is the primary.
    pub fn parse(spec: &str) -> Result<KeyRing, SecretsError> {
        let mut keys: Vec<Key> = Vec::new();
        // 1-based spec position of each key in `keys` (blank entries make them differ).
        let mut entries: Vec<usize> = Vec::new();
        for (index, entry) in spec.split(',').enumerate() {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let invalid = |problem| SecretsError::InvalidSpec {
                entry: index + 1,
                problem,
            };
            let (id, key_b64) = entry
                .split_once(':')
                .ok_or_else(|| invalid(SpecProblem::MissingSeparator))?;
            let (id, key_b64) = (id.trim(), key_b64.trim());
            validate_key_id(id).map_err(|p| invalid(SpecProblem::KeyId(p)))?;
            if let Some(first) = keys.iter().position(|k| k.id == id) {
                return Err(invalid(SpecProblem::DuplicateKeyId {
                    first_entry: entries[first],
                }));
            }
            let key_bytes = decode_key(key_b64).ok_or_else(|| invalid(SpecProblem::BadBase64))?;
            let cipher = Aes256Gcm::new_from_slice(&key_bytes).ok();
            let len = key_bytes.len();
            wipe(key_bytes);
            let cipher = cipher.ok_or_else(|| invalid(SpecProblem::BadKeyLength { len }))?;
            entries.push(index + 1);
            keys.push(Key {
                id: id.into(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(SecretsError::NoKeys);
        }
        Ok(KeyRing { keys })
    }

    /// Reads [`KEYS_ENV`]. Unset or blank → `Ok(None)`: running without keys is a valid
    /// configuration (the caller decides whether it can proceed with plaintext tokens only).
    pub fn from_env() -> Result<Option<KeyRing>, SecretsError> {
        Self::from_var(std::env::var(KEYS_ENV))
    }

    /// [`KeyRing::from_env`] minus the process-global read, so tests need not mutate the
    /// environment (which races with every other test thread).
    pub(crate) fn from_var(
        value: Result<String, VarError>,
    ) -> Result<Option<KeyRing>, SecretsError> {
        match value {
            Err(VarError::NotPresent) => Ok(None),
            Err(VarError::NotUnicode(_)) => Err(SecretsError::EnvNotUnicode { var: KEYS_ENV }),
            Ok(spec) if spec.trim().is_empty() => Ok(None),
            Ok(spec) => {
                let ring = Self::parse(&spec).map(Some);
                // Our copy of the spec holds every key in base64; don't leave it in freed memory.
                wipe(spec.into_bytes());
                ring
            }
        }
    }

    /// A new ring entry `"<id>:<base64 of 32 random bytes>"` (standard, padded), for
    /// `stagecast keys generate`. The bytes come straight from the OS CSPRNG.
    pub fn generate_key_entry(id: &str) -> Result<String, SecretsError> {
        validate_key_id(id).map_err(SecretsError::InvalidKeyId)?;
        let mut key = [0u8; KEY_LEN];
        OsRng.unwrap_err().fill_bytes(&mut key);
        // Encode straight into the result so no intermediate copy of the key is left behind.
        let mut entry = String::with_capacity(id.len() + 1 + 44);
        entry.push_str(id);
        entry.push(':');
        STANDARD.encode_string(key, &mut entry);
        for byte in key.iter_mut() {
            // SAFETY: valid, aligned, exclusive reference into a local array.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
        Ok(entry)
    }

    pub fn primary_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Key ids in ring order, primary first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    pub fn contains_key_id(&self, key_id: &str) -> bool {
        self.key(key_id).is_some()
    }

    /// Seals with the primary key and a fresh random 96-bit nonce.
    ///
    /// # Panics
    /// Only if the OS random source fails (nothing sensible can be sealed then), or if
    /// `plaintext` exceeds AES-GCM's limit of 64 GiB (a Postgres text value cannot exceed 1 GiB).
    pub fn seal(&self, plaintext: &str) -> String {
        // OsRng rather than the thread-local generator: nonce uniqueness is the whole security of
        // GCM, and a syscall per seal is free at the rate tokens are written.
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.unwrap_err().fill_bytes(&mut nonce);
        self.seal_with_nonce(plaintext, &nonce)
    }

    /// [`KeyRing::seal`] with a caller-chosen nonce. Crate-private: a reused nonce breaks GCM,
    /// so only the known-answer test may choose one.
    pub(crate) fn seal_with_nonce(&self, plaintext: &str, nonce: &[u8; NONCE_LEN]) -> String {
        let key = &self.keys[0];
        let aad = aad(&key.id);
        let ciphertext_and_tag = key
            .cipher
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption only fails for plaintexts over 64 GiB");
        let mut payload = Vec::with_capacity(NONCE_LEN + ciphertext_and_tag.len());
        payload.extend_from_slice(nonce);
        payload.extend_from_slice(&ciphertext_and_tag);
        format!("{SEALED_VERSION}:{}:{}", key.id, STANDARD.encode(&payload))
    }

    /// Opens a token sealed with any key of the ring.
    pub fn open(&self, sealed: &str) -> Result<Secret, SecretsError> {
        let (key_id, payload_b64) = split_sealed(sealed)?;
        // Parse fully before looking up the key, so a malformed token is reported as malformed
        // whatever ring reads it.
        let mut payload = decode_payload(payload_b64)?;
        let key = self.key(key_id).ok_or_else(|| SecretsError::UnknownKeyId {
            key_id: key_id.into(),
        })?;

        // payload = nonce || ciphertext || tag; decrypt the ciphertext in place so the plaintext
        // exists in exactly one buffer, which ends up inside the returned `Secret`.
        let tag = *Tag::from_slice(&payload[payload.len() - TAG_LEN..]);
        let nonce = *Nonce::from_slice(&payload[..NONCE_LEN]);
        payload.truncate(payload.len() - TAG_LEN);
        payload.drain(..NONCE_LEN);
        key.cipher
            .decrypt_in_place_detached(&nonce, aad(key_id).as_bytes(), &mut payload, &tag)
            .map_err(|_| SecretsError::Decrypt {
                key_id: key_id.into(),
            })?;
        match String::from_utf8(payload) {
            Ok(plaintext) => Ok(Secret::from(plaintext)),
            Err(err) => {
                wipe(err.into_bytes());
                Err(SecretsError::NotUtf8 {
                    key_id: key_id.into(),
                })
            }
        }
    }

    /// The key id of a sealed token, from its header only: neither the payload nor the
    /// authenticity is checked (the id is only trustworthy after [`KeyRing::open`] succeeds).
    pub fn sealed_key_id(sealed: &str) -> Result<&str, SecretsError> {
        let (key_id, _) = split_sealed(sealed)?;
        Ok(key_id)
    }

    /// True unless `sealed` is well-formed and sealed with the primary key. A malformed token, or
    /// one sealed with a key the ring lacks, also answers true: `keys rotate` then calls
    /// [`KeyRing::reseal`] on it and reports the error instead of silently skipping it.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        Self::sealed_key_id(sealed).map_or(true, |id| id != self.primary_key_id())
    }

    /// Opens with whichever key sealed it and seals again with the primary key (fresh nonce).
    pub fn reseal(&self, sealed: &str) -> Result<String, SecretsError> {
        let secret = self.open(sealed)?;
        Ok(self.seal(secret.expose()))
    }

    fn key(&self, key_id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == key_id)
    }
}

/// Binding the key id into the AAD means a token whose id was edited fails authentication even if
/// two ids ever mapped to the same key bytes; the version in it rules out cross-version confusion.
fn aad(key_id: &str) -> String {
    format!("{AAD_PREFIX}{key_id}")
}

pub(crate) fn validate_key_id(id: &str) -> Result<(), KeyIdProblem> {
    if id.is_empty() {
        return Err(KeyIdProblem::Empty);
    }
    // Count chars, not bytes, so the reported length matches what the operator sees.
    let len = id.chars().count();
    if len > MAX_KEY_ID_LEN {
        return Err(KeyIdProblem::TooLong { len });
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(KeyIdProblem::InvalidChar);
    }
    Ok(())
}

/// Standard first, then URL-safe. A 32-byte key always has characters that tell the two apart or
/// decodes identically under both, so the order cannot change the result.
fn decode_key(b64: &str) -> Option<Vec<u8>> {
    STANDARD_LENIENT
        .decode(b64)
        .or_else(|_| URL_SAFE_LENIENT.decode(b64))
        .ok()
}

/// Splits `v1:<key_id>:<payload>` and validates the header. Surrounding ASCII whitespace is
/// ignored (a trailing newline from a CRM's script is a common, harmless slip).
fn split_sealed(sealed: &str) -> Result<(&str, &str), MalformedReason> {
    let mut parts = sealed.trim_ascii().splitn(3, ':');
    let (Some(version), Some(key_id), Some(payload)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(MalformedReason::Shape);
    };
    if version != SEALED_VERSION {
        return Err(MalformedReason::UnsupportedVersion);
    }
    validate_key_id(key_id).map_err(MalformedReason::KeyId)?;
    Ok((key_id, payload))
}

/// We write standard padded base64; reading also accepts it unpadded, which costs nothing and
/// spares a CRM integration a failure over `=`.
fn decode_payload(b64: &str) -> Result<Vec<u8>, MalformedReason> {
    let payload = STANDARD_LENIENT
        .decode(b64)
        .map_err(|_| MalformedReason::Base64)?;
    if payload.len() < NONCE_LEN + TAG_LEN {
        return Err(MalformedReason::TooShort { len: payload.len() });
    }
    Ok(payload)
}
