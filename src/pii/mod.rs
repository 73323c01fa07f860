//! Normalise and SHA-256-hash customer information exactly as Meta specifies.
//!
//! Rules follow Meta's customer-information parameters page
//! (<https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/customer-information-parameters>);
//! where Meta's own SDKs disagree, the reading closest to its text (docs/events.md, "How contact
//! data is normalised and hashed", lists each choice):
//!
//! - every field: Unicode NFC, trim, Unicode lowercase; an empty result is [`PiiError::Empty`];
//! - a value that already is a SHA-256 digest (64 hex digits, any case) passes through lowercased;
//! - the hash is lowercase hex SHA-256 of the UTF-8 bytes.
//!
//! Per field, see the methods of [`Normalizer`].
//!
//! **Already-hashed detection accepts SHA-256 only, not 32-hex MD5** (which Meta's SDKs also pass
//! through). Meta's documentation asks for SHA-256; an MD5 digest sent as `em` would never match;
//! and 32 hex digits is also what a dash-less UUID looks like, so an `external_id` of that shape
//! would otherwise be sent unhashed. A 32-hex value is therefore hashed like any other value.
//!
//! Nothing here logs, and no error message contains the raw value: errors name the field and the
//! reason only, so they are safe for logs, job rows and chat alerts.

mod date;
mod geo;
mod phone;
mod text;

use std::fmt;

use sha2::{Digest, Sha256};

pub use phone::br_mobile_variant;

/// A SHA-256 digest as 64 lowercase hex digits. Never holds raw PII: it can only be built by
/// hashing or from something that already is a digest.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Hashed(String);

impl Hashed {
    /// Hashes an already normalised value.
    fn of(normalized: &str) -> Self {
        Hashed(sha256_hex(normalized))
    }

    /// Accepts a digest (any case, surrounding whitespace allowed); `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Self> {
        is_already_hashed(s).then(|| Hashed(s.trim().to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The digests as a JSON array of strings: how every platform's payload lists a match key.
    pub fn json_array(items: &[Hashed]) -> serde_json::Value {
        serde_json::Value::Array(
            items
                .iter()
                .map(|h| serde_json::Value::String(h.0.clone()))
                .collect(),
        )
    }
}

impl fmt::Display for Hashed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Hashed {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Hashed> for String {
    fn from(h: Hashed) -> String {
        h.0
    }
}

/// Deserialising only accepts digests, so a stored payload cannot smuggle raw PII into a `Hashed`.
impl TryFrom<String> for Hashed {
    type Error = PiiError;

    fn try_from(s: String) -> Result<Self, PiiError> {
        Hashed::from_hex(&s).ok_or(PiiError::NotAHash)
    }
}

/// Lowercase hex SHA-256 of the UTF-8 bytes of `s`, as-is (no normalisation).
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Whether `s`, trimmed and lowercased, is 64 hex digits (a SHA-256 digest). MD5 (32 hex) is
/// deliberately not accepted: see the module documentation.
pub fn is_already_hashed(s: &str) -> bool {
    let t = s.trim();
    t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The customer-information field a value was meant for; used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Email,
    Phone,
    FirstName,
    LastName,
    City,
    State,
    Zip,
    Country,
    DateOfBirth,
    Gender,
    ExternalId,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::Phone => "phone",
            Field::FirstName => "first name",
            Field::LastName => "last name",
            Field::City => "city",
            Field::State => "state",
            Field::Zip => "zip code",
            Field::Country => "country",
            Field::DateOfBirth => "date of birth",
            Field::Gender => "gender",
            Field::ExternalId => "external id",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a value could not be normalised. Messages never contain the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    #[error("{0} is empty after normalisation")]
    Empty(Field),
    #[error("{reason}")]
    InvalidEmail { reason: &'static str },
    #[error("{reason}")]
    InvalidPhone { reason: &'static str },
    #[error("phone has no country code and could not be parsed for region {region}")]
    PhoneUnparseable { region: String },
    #[error("phone has an unknown country code")]
    PhoneUnknownCountryCode,
    #[error("phone is a WhatsApp LID, not a phone number: resolve the phone-number id first")]
    PhoneIsWhatsAppLid,
    #[error("{0} is already hashed, so it cannot be read")]
    AlreadyHashed(Field),
    #[error("country is neither an ISO 3166-1 alpha-2 code nor a known country name")]
    UnknownCountry,
    #[error("gender is not recognised as female or male")]
    UnknownGender,
    #[error("{reason}")]
    InvalidDateOfBirth { reason: &'static str },
    #[error("default region must be an ISO 3166-1 alpha-2 code known to the phone library")]
    InvalidRegion,
    #[error("value is not a SHA-256 hex digest")]
    NotAHash,
}

/// Normalises and hashes customer information for one tenant. The default region decides how
/// national phone numbers and numeric dates are read.
#[derive(Debug, Clone)]
pub struct Normalizer {
    region: phone::Region,
    date_order: date::DateOrder,
    /// US ZIP codes are cut to 5 digits only for US tenants.
    us_zip: bool,
}

/// The steps every field shares: canonical form, already-hashed passthrough, empty check.
enum Prepared {
    Hashed(Hashed),
    Text(String),
}

fn prepare(raw: &str, field: Field) -> Result<Prepared, PiiError> {
    if let Some(h) = Hashed::from_hex(raw) {
        return Ok(Prepared::Hashed(h));
    }
    let canon = text::canonical(raw);
    if canon.is_empty() {
        return Err(PiiError::Empty(field));
    }
    Ok(Prepared::Text(canon))
}

/// `prepare`, then `f` on the canonical text, then hash (skipping empty results).
fn hash_with(
    raw: &str,
    field: Field,
    f: impl FnOnce(&str) -> Result<String, PiiError>,
) -> Result<Hashed, PiiError> {
    match prepare(raw, field)? {
        Prepared::Hashed(h) => Ok(h),
        Prepared::Text(canon) => {
            let normalized = f(&canon)?;
            if normalized.is_empty() {
                return Err(PiiError::Empty(field));
            }
            Ok(Hashed::of(&normalized))
        }
    }
}

impl Normalizer {
    /// `default_region`: ISO 3166-1 alpha-2, any case (`"BR"`, `"us"`).
    pub fn new(default_region: &str) -> Result<Self, PiiError> {
        let region = phone::Region::parse(default_region)?;
        let date_order = date::DateOrder::for_region(region.code());
        let us_zip = region.code() == "US";
        Ok(Normalizer {
            region,
            date_order,
            us_zip,
        })
    }

    /// The region, uppercase (`"BR"`).
    pub fn default_region(&self) -> &str {
        self.region.code()
    }

    /// `em`: trim + lowercase only (dots and `+tags` are kept, Gmail is not canonicalised),
    /// validated roughly as `.+@.+\..+` without whitespace.
    pub fn email(&self, raw: &str) -> Result<Hashed, PiiError> {
        hash_with(raw, Field::Email, |canon| {
            let invalid = |reason| Err(PiiError::InvalidEmail { reason });
            if canon.chars().any(char::is_whitespace) {
                return invalid("email contains whitespace");
            }
            let Some((local, domain)) = canon.rsplit_once('@') else {
                return invalid("email has no @");
            };
            if local.is_empty() {
                return invalid("email has nothing before @");
            }
            // `.+\..+` on the domain: a dot that is neither its first nor its last character.
            let dotted = domain
                .char_indices()
                .any(|(i, ch)| ch == '.' && i > 0 && i + 1 < domain.len());
            if !dotted {
                return invalid("email domain is not a dotted name");
            }
            Ok(canon.to_owned())
        })
    }

    /// Google's form of an email (Google Ads enhanced conversions share the Data Manager
    /// formatting rules, developers.google.com/data-manager/api/devguides/concepts/formatting):
    /// [`Normalizer::email`]'s trim + lowercase, and for `gmail.com` / `googlemail.com` only,
    /// every `.` and any `+tag` removed from the local part.
    pub fn google_email(&self, raw: &str) -> Result<Hashed, PiiError> {
        // Validate exactly as Meta's form does, so both forms accept the same addresses.
        self.email(raw)?;
        hash_with(raw, Field::Email, |canon| {
            let (local, domain) = canon.rsplit_once('@').ok_or(PiiError::InvalidEmail {
                reason: "email has no @",
            })?;
            if !matches!(domain, "gmail.com" | "googlemail.com") {
                return Ok(canon.to_owned());
            }
            let local = local.split('+').next().unwrap_or_default().replace('.', "");
            if local.is_empty() {
                return Err(PiiError::InvalidEmail {
                    reason: "email has nothing before @",
                });
            }
            Ok(format!("{local}@{domain}"))
        })
    }

    /// `ph`: E.164 digits without `+`, hashed. See [`Normalizer::phone_digits`].
    pub fn phone(&self, raw: &str) -> Result<Hashed, PiiError> {
        if let Some(h) = Hashed::from_hex(raw) {
            return Ok(h);
        }
        let digits = self.phone_digits(raw)?;
        Ok(Hashed::of(&digits))
    }

    /// TikTok's phone: E.164 *with* `+` (`+5511987654321`), hashed. A digest passes through.
    pub fn phone_e164(&self, raw: &str) -> Result<Hashed, PiiError> {
        if let Some(h) = Hashed::from_hex(raw) {
            return Ok(h);
        }
        let digits = self.phone_digits(raw)?;
        Ok(Hashed::of(&format!("+{digits}")))
    }

    /// E.164 digits without `+`, unhashed, for internal matching only (never log it).
    ///
    /// Parsed with the default region: `011 98765-4321` (BR) → `5511987654321`. A country code is
    /// taken from `+`, the `00` prefix, a WhatsApp id (`5511987654321@s.whatsapp.net`), or
    /// leading digits the library recognises. A number the library cannot place is an error:
    /// never a guess, and a trunk `0` is never dropped without adding the country code.
    pub fn phone_digits(&self, raw: &str) -> Result<String, PiiError> {
        if is_already_hashed(raw) {
            return Err(PiiError::AlreadyHashed(Field::Phone));
        }
        if text::canonical(raw).is_empty() {
            return Err(PiiError::Empty(Field::Phone));
        }
        phone::normalize(raw, &self.region)
    }

    /// `fn`: lowercase, no whitespace or punctuation, accents kept (`Mary-Jane` → `maryjane`).
    pub fn first_name(&self, raw: &str) -> Result<Hashed, PiiError> {
        hash_with(raw, Field::FirstName, |c| Ok(text::strip_name(c)))
    }

    /// `ln`: as [`Normalizer::first_name`] (`O'Brien` → `obrien`).
    pub fn last_name(&self, raw: &str) -> Result<Hashed, PiiError> {
        hash_with(raw, Field::LastName, |c| Ok(text::strip_name(c)))
    }

    /// `ct`: letters only, accents kept (`São Paulo` → `sãopaulo`).
    pub fn city(&self, raw: &str) -> Result<Hashed, PiiError> {
        hash_with(raw, Field::City, |c| Ok(text::letters_only(c)))
    }

    /// `st`: Brazilian, US and Canadian full names map to their 2-letter codes (`São Paulo` →
    /// `sp`); codes are lowercased; any other name is lowercased without spaces or punctuation,
    /// never truncated to 2 letters.
    pub fn state(&self, raw: &str) -> Result<Hashed, PiiError> {
        hash_with(raw, Field::State, |c| {
            Ok(match geo::state_code(&text::lookup_key(c)) {
                Some(code) => code.to_owned(),
                None => text::strip_name(c),
            })
        })
    }

    /// `zp`: no whitespace, dashes or other punctuation (`01310-100` → `01310100`, `M1 1AE` →
    /// `m11ae`); for US tenants a code starting with 5 digits is cut to those 5 (ZIP+4 → ZIP).
    pub fn zip(&self, raw: &str) -> Result<Hashed, PiiError> {
        hash_with(raw, Field::Zip, |c| {
            let cleaned: String = c
                .chars()
                .filter(|ch| !ch.is_whitespace() && !ch.is_ascii_punctuation())
                .filter(|ch| !matches!(ch, '\u{2010}'..='\u{2015}'))
                .collect();
            let head = cleaned
                .get(..5)
                .filter(|h| h.bytes().all(|b| b.is_ascii_digit()));
            Ok(match head {
                Some(h) if self.us_zip => h.to_owned(),
                _ => cleaned,
            })
        })
    }

    /// `country`: ISO 3166-1 alpha-2, lowercase; accepts codes, common alpha-3 codes and the
    /// names of common countries in English, Portuguese and Spanish (`Brazil`, `Brasil` → `br`).
    pub fn country(&self, raw: &str) -> Result<Hashed, PiiError> {
        hash_with(raw, Field::Country, |c| {
            let key = text::lookup_key(c);
            if key.is_empty() {
                return Err(PiiError::Empty(Field::Country));
            }
            geo::country_code(&key)
                .map(str::to_owned)
                .ok_or(PiiError::UnknownCountry)
        })
    }

    /// `db`: `YYYYMMDD`. `YYYY-MM-DD` (and `YYYYMMDD`) always; `a/b/YYYY` (also with `-` or `.`)
    /// is day-first unless the region is the US or a US territory. Never guessed: a date that is
    /// invalid in the region's order is an error. Two-digit years are rejected.
    pub fn date_of_birth(&self, raw: &str) -> Result<Hashed, PiiError> {
        hash_with(raw, Field::DateOfBirth, |c| {
            date::normalize(c, self.date_order)
        })
    }

    /// `ge`: `f` or `m`, from English, Portuguese and Spanish words.
    pub fn gender(&self, raw: &str) -> Result<Hashed, PiiError> {
        hash_with(raw, Field::Gender, |c| {
            let g = match text::lookup_key(c).as_str() {
                "f" | "female" | "woman" | "feminino" | "feminina" | "mulher" | "femenino"
                | "femenina" | "mujer" | "fem" => "f",
                "m" | "male" | "man" | "masculino" | "masculina" | "homem" | "hombre" | "masc" => {
                    "m"
                }
                _ => return Err(PiiError::UnknownGender),
            };
            Ok(g.to_owned())
        })
    }

    /// `external_id`: `sha256(lowercase(trim(id)))` (after NFC). Every other place that sends
    /// this id must derive it exactly the same way.
    pub fn external_id(&self, raw: &str) -> Result<Hashed, PiiError> {
        hash_with(raw, Field::ExternalId, |c| Ok(c.to_owned()))
    }
}

/// Splits a full name into first and last name: first word, then the rest with its internal
/// whitespace collapsed (`Maria da Silva` → `Maria`, `da Silva`). The parts are not normalised.
pub fn split_full_name(full: &str) -> (Option<String>, Option<String>) {
    let mut words = full.split_whitespace();
    let first = words.next().map(str::to_owned);
    let rest = words.collect::<Vec<_>>().join(" ");
    (first, (!rest.is_empty()).then_some(rest))
}

#[cfg(test)]
mod tests;
