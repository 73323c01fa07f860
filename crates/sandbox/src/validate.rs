//! Per-event validation, modelled on what Meta's Conversions API pages document. Page names in
//! comments (*server-event*, *customer-information-parameters*, …) are listed with their URLs in
//! `docs/sandbox.md` ("Sources").
//!
//! Everything here works on an already parsed `serde_json::Value` and allocates only on the error
//! path: the benchmark pushes 100k events through the sandbox, so the happy path is a handful of
//! byte comparisons per field. There is deliberately no regex: each format is a tiny byte check.
//!
//! Where Meta's behaviour is undocumented the sandbox is *stricter* than Meta, because its job is
//! to catch stagecast bugs (raw PII, seconds-vs-milliseconds, hashed click IDs) before production
//! does. `docs/sandbox.md` lists every rule with its code/subcode and where it comes from.

use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

/// Subcode for a stale `event_time` (*server-event*: documented by Meta, and seen in RudderStack's
/// test fixtures).
pub const SUBCODE_TOO_OLD: i64 = 2_804_003;
/// Subcode for a `Purchase` without `value`/`currency` ("Missing Value for Purchase Event"; Meta's
/// answer as RudderStack's test fixtures record it).
pub const SUBCODE_PURCHASE_VALUE: i64 = 2_804_009;
/// Subcode for `user_data` without a usable customer-information key (observed by a third party
/// for "thin" events; its meaning is not confirmed by Meta).
pub const SUBCODE_NO_USER_DATA: i64 = 2_804_050;
/// Generic CAPI invalid-parameter subcode (code 100 in *error-handling*). Its exact meaning at
/// Meta is unverified, so the sandbox uses it for every rule that has no documented subcode of
/// its own.
pub const SUBCODE_INVALID: i64 = 2_804_001;

/// `event_time` may be at most this old (*server-event*, *using-the-api*: 7 days, all-or-nothing).
pub const MAX_AGE_SECS: i64 = 7 * 24 * 3600;
/// `physical_store` events may be up to 62 days old (*offline-events*: "upload transactions within
/// 62 days of the conversion"; RudderStack enforces the same). Whether Graph itself accepts
/// 8–62-day-old events is unverified; the sandbox follows the documented guidance.
pub const PHYSICAL_STORE_MAX_AGE_SECS: i64 = 62 * 24 * 3600;
/// Meta documents no upper bound; a timestamp this far ahead means a clock or unit bug in stagecast.
pub const MAX_FUTURE_SECS: i64 = 10 * 60;
/// Anything above this cannot be Unix seconds (it is the year 5138): it is milliseconds.
pub const MILLIS_THRESHOLD: i64 = 100_000_000_000;

/// The nine `action_source` values of *server-event*.
pub const ACTION_SOURCES: [&str; 9] = [
    "website",
    "app",
    "email",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
];

/// Event names *business-messaging* lists that are not pixel standard events: valid only with
/// `action_source = business_messaging`.
pub const BUSINESS_MESSAGING_ONLY_NAMES: [&str; 10] = [
    "LeadSubmitted",
    "QualifiedLead",
    "OrderCreated",
    "OrderShipped",
    "OrderDelivered",
    "OrderCanceled",
    "OrderReturned",
    "CartAbandoned",
    "RatingProvided",
    "ReviewProvided",
];

/// `messaging_channel` values for `business_messaging` (*server-event*, *business-messaging*).
pub const MESSAGING_CHANNELS: [&str; 3] = ["whatsapp", "messenger", "instagram"];

/// Why one event was refused. It names the event index and the field, so the Graph error built
/// from it can say exactly what to fix (Meta's own `error_user_msg` is localised and vaguer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data[{index}].{field}: {detail}")]
pub struct EventError {
    pub index: usize,
    /// Dotted path inside the event, e.g. `user_data.em[1]`.
    pub field: String,
    pub subcode: i64,
    /// Short title in the style of Meta's `error_user_title`.
    pub title: &'static str,
    pub detail: String,
}

impl EventError {
    fn new(
        index: usize,
        field: impl fmt::Display,
        subcode: i64,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            index,
            field: field.to_string(),
            subcode,
            title,
            detail: detail.into(),
        }
    }

    /// Path of the offending field relative to the request body, e.g. `data[3].user_data.em`.
    pub fn blame_path(&self) -> String {
        format!("data[{}].{}", self.index, self.field)
    }
}

fn invalid(index: usize, field: impl fmt::Display, detail: impl Into<String>) -> EventError {
    EventError::new(index, field, SUBCODE_INVALID, "Invalid Parameter", detail)
}

/// How a `user_data` key must be encoded (which keys *customer-information-parameters* hashes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// Contact PII: SHA-256 lowercase hex, string or list of strings.
    Hashed,
    /// Sent as-is and never hashed: a non-empty string that must not look like a SHA-256.
    Raw,
    /// `fbc` / `fbp`: raw, in the `fb.<idx>.<ms>.<payload>[.<appendix>]` cookie format
    /// (*fbp-and-fbc*).
    Cookie,
    /// `client_ip_address`: an IPv4/IPv6 literal.
    Ip,
    /// Numeric IDs (`fb_login_id`, `lead_id`): a JSON integer or a digit string.
    Numeric,
}

// Bits of the keys that take part in Meta's "thin user_data" rule (*best-practices*: since
// v13.0 user_data holding only a subset of these combinations is invalid).
const B_CT: u32 = 1;
const B_COUNTRY: u32 = 1 << 1;
const B_ST: u32 = 1 << 2;
const B_ZP: u32 = 1 << 3;
const B_GE: u32 = 1 << 4;
const B_UA: u32 = 1 << 5;
const B_DB: u32 = 1 << 6;
const B_FN: u32 = 1 << 7;
const B_LN: u32 = 1 << 8;
/// Every other known key: its presence alone makes `user_data` usable.
const B_STRONG: u32 = 1 << 9;

const THIN_COMBINATIONS: [u32; 4] = [
    B_CT | B_COUNTRY | B_ST | B_ZP | B_GE | B_UA,
    B_DB | B_UA,
    B_FN | B_GE,
    B_LN | B_GE,
];

/// The keys of *customer-information-parameters* (plus `instagram_business_account_id` from
/// *business-messaging*).
/// Unknown keys are refused: a misspelt key such as `email` would otherwise carry raw PII to Meta.
fn classify(key: &str) -> Option<(KeyKind, u32)> {
    use KeyKind::*;
    Some(match key {
        "em" | "ph" | "external_id" => (Hashed, B_STRONG),
        "fn" => (Hashed, B_FN),
        "ln" => (Hashed, B_LN),
        "db" => (Hashed, B_DB),
        "ge" => (Hashed, B_GE),
        "ct" => (Hashed, B_CT),
        "st" => (Hashed, B_ST),
        "zp" => (Hashed, B_ZP),
        "country" => (Hashed, B_COUNTRY),
        "client_ip_address" => (Ip, B_STRONG),
        "client_user_agent" => (Raw, B_UA),
        "fbc" | "fbp" => (Cookie, B_STRONG),
        "fb_login_id" | "lead_id" => (Numeric, B_STRONG),
        "subscription_id"
        | "anon_id"
        | "madid"
        | "page_id"
        | "page_scoped_user_id"
        | "ctwa_clid"
        | "ig_account_id"
        | "ig_sid"
        | "instagram_business_account_id"
        | "whatsapp_business_account_id" => (Raw, B_STRONG),
        _ => return None,
    })
}

/// `^[0-9a-f]{64}$`: what a SHA-256 in lowercase hex looks like (Meta's SDKs' `is_already_hashed`).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `fb.<digit>.<13-digit ms>.<payload>` with an optional 5th `.<appendix>` segment (*fbp-and-fbc*;
/// the appendix is what Meta's `capi-param-builder` adds).
pub fn is_fb_cookie(s: &str) -> bool {
    let mut parts = s.split('.');
    let prefix_ok = parts.next() == Some("fb");
    let index_ok = parts
        .next()
        .is_some_and(|p| p.len() == 1 && p.as_bytes()[0].is_ascii_digit());
    let time_ok = parts
        .next()
        .is_some_and(|p| p.len() == 13 && p.bytes().all(|b| b.is_ascii_digit()));
    let payload_ok = parts.next().is_some_and(|p| !p.is_empty());
    let appendix_ok = match parts.next() {
        None => true,
        Some(a) => !a.is_empty() && parts.next().is_none(),
    };
    prefix_ok && index_ok && time_ok && payload_ok && appendix_ok
}

/// Validate event `index` of a request received at `now` (Unix seconds).
pub fn validate_event(index: usize, event: &Value, now: i64) -> Result<(), EventError> {
    let Some(event) = event.as_object() else {
        return Err(invalid(
            index,
            "(event)",
            "each element of data must be a JSON object",
        ));
    };

    let event_name = match event.get("event_name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.as_str(),
        _ => {
            return Err(invalid(
                index,
                "event_name",
                "event_name is required and must be a non-empty string",
            ))
        }
    };

    let max_age = if event.get("action_source").and_then(Value::as_str) == Some("physical_store") {
        PHYSICAL_STORE_MAX_AGE_SECS
    } else {
        MAX_AGE_SECS
    };
    check_event_time(index, event.get("event_time"), now, max_age)?;

    match event.get("event_id") {
        None => {}
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => {
            return Err(invalid(
                index,
                "event_id",
                "event_id must be a non-empty string when present",
            ))
        }
    }

    let action_source = match event.get("action_source") {
        Some(Value::String(s)) if ACTION_SOURCES.contains(&s.as_str()) => s.as_str(),
        Some(_) => {
            return Err(invalid(
                index,
                "action_source",
                format!("action_source must be one of {}", ACTION_SOURCES.join(", ")),
            ))
        }
        None => return Err(invalid(index, "action_source", "action_source is required")),
    };

    let channel = match event.get("messaging_channel") {
        None => None,
        Some(Value::String(s)) if MESSAGING_CHANNELS.contains(&s.as_str()) => Some(s.as_str()),
        Some(_) => {
            return Err(invalid(
                index,
                "messaging_channel",
                "messaging_channel must be one of whatsapp, messenger, instagram",
            ))
        }
    };

    let user_data =
        match event.get("user_data") {
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(invalid(
                    index,
                    "user_data",
                    "user_data must be a JSON object",
                ))
            }
            None => return Err(EventError::new(
                index,
                "user_data",
                SUBCODE_NO_USER_DATA,
                "Missing Customer Information",
                "user_data is required and must hold at least one customer information parameter",
            )),
        };
    check_user_data(index, user_data)?;

    if action_source == "business_messaging" {
        let Some(channel) = channel else {
            return Err(invalid(
                index,
                "messaging_channel",
                "business_messaging events require messaging_channel (whatsapp, messenger or instagram)",
            ));
        };
        // *business-messaging*: a CTWA event is attributed through the click ID on the WABA's
        // dataset. Meta's sample for Messenger/Instagram names different keys in different
        // places, so only WhatsApp is enforced (it is the only channel stagecast sends).
        if channel == "whatsapp" {
            for key in ["ctwa_clid", "whatsapp_business_account_id"] {
                if !user_data.contains_key(key) {
                    return Err(invalid(
                        index,
                        format_args!("user_data.{key}"),
                        format!("business_messaging events on whatsapp require user_data.{key}"),
                    ));
                }
            }
        }
    }

    if action_source != "business_messaging" && BUSINESS_MESSAGING_ONLY_NAMES.contains(&event_name)
    {
        return Err(invalid(
            index,
            "event_name",
            format!("{event_name} is a business messaging event: it is valid only with action_source business_messaging"),
        ));
    }
    // *server-event*: website events need the page and the browser; app events the app data.
    if action_source == "website" {
        match event.get("event_source_url") {
            Some(Value::String(u)) if u.starts_with("http://") || u.starts_with("https://") => {}
            _ => {
                return Err(invalid(
                    index,
                    "event_source_url",
                    "website events require event_source_url (the page's http(s) URL)",
                ))
            }
        }
        if !user_data.contains_key("client_user_agent") {
            return Err(invalid(
                index,
                "user_data.client_user_agent",
                "website events require user_data.client_user_agent",
            ));
        }
    }
    if action_source == "app" && !matches!(event.get("app_data"), Some(Value::Object(_))) {
        return Err(invalid(
            index,
            "app_data",
            "app events require app_data (with extinfo)",
        ));
    }

    check_custom_data(index, event_name, event.get("custom_data"))?;
    check_conversion_lead(index, action_source, user_data, event.get("custom_data"))?;
    check_privacy(index, event, user_data)
}

/// *conversion-leads* (payload specification): a CRM Conversion Lead is `system_generated`,
/// says `custom_data.event_source = "crm"`, names the CRM in `custom_data.lead_event_source`,
/// and carries the Lead Ads `user_data.lead_id` (its format is checked with `user_data`).
fn check_conversion_lead(
    index: usize,
    action_source: &str,
    user_data: &Map<String, Value>,
    custom_data: Option<&Value>,
) -> Result<(), EventError> {
    let custom = custom_data.and_then(Value::as_object);
    let event_source = custom.and_then(|c| c.get("event_source"));
    let Some(event_source) = event_source else {
        return Ok(());
    };
    if event_source != "crm" {
        return Err(invalid(
            index,
            "custom_data.event_source",
            "custom_data.event_source must be \"crm\" for Conversion Leads",
        ));
    }
    if action_source != "system_generated" {
        return Err(invalid(
            index,
            "action_source",
            "Conversion Leads (custom_data.event_source = crm) require action_source system_generated",
        ));
    }
    let named = custom
        .and_then(|c| c.get("lead_event_source"))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty());
    if !named {
        return Err(invalid(
            index,
            "custom_data.lead_event_source",
            "Conversion Leads require custom_data.lead_event_source, the name of the CRM",
        ));
    }
    if !user_data.contains_key("lead_id") {
        return Err(invalid(
            index,
            "user_data.lead_id",
            "Conversion Leads require user_data.lead_id (the Lead Ads lead id)",
        ));
    }
    Ok(())
}

/// *server-event* ("Data Processing Options", `opt_out`): `data_processing_options` is `[]` or
/// `["LDU"]`; with LDU, `data_processing_options_country` is required (0 = geolocate, 1 = USA)
/// and `_state` too unless the event carries an IP address (0 = geolocate, 1000+ = a US state).
/// `opt_out` is a boolean. Stricter than Meta where it documents no more values: a country or
/// state without LDU, or a state without the USA, is refused as a likely mistake.
fn check_privacy(
    index: usize,
    event: &Map<String, Value>,
    user_data: &Map<String, Value>,
) -> Result<(), EventError> {
    if event.get("opt_out").is_some_and(|v| !v.is_boolean()) {
        return Err(invalid(index, "opt_out", "opt_out must be a JSON boolean"));
    }
    let ldu = match event.get("data_processing_options") {
        None => false,
        Some(Value::Array(items)) if items.is_empty() => false,
        Some(Value::Array(items)) if items.len() == 1 && items[0] == "LDU" => true,
        Some(_) => {
            return Err(invalid(
                index,
                "data_processing_options",
                "data_processing_options must be [] or [\"LDU\"]",
            ))
        }
    };
    let int = |key: &str| -> Result<Option<i64>, EventError> {
        match event.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| invalid(index, key, format!("{key} must be a JSON integer"))),
        }
    };
    let country = int("data_processing_options_country")?;
    let state = int("data_processing_options_state")?;
    if !ldu {
        if let Some(key) = [
            ("data_processing_options_country", country),
            ("data_processing_options_state", state),
        ]
        .iter()
        .find_map(|(k, v)| v.map(|_| *k))
        {
            return Err(invalid(
                index,
                key,
                format!("{key} is only meaningful with data_processing_options [\"LDU\"]"),
            ));
        }
        return Ok(());
    }
    let Some(country) = country else {
        return Err(invalid(
            index,
            "data_processing_options_country",
            "data_processing_options [\"LDU\"] requires data_processing_options_country (0 to let Meta geolocate, 1 for the USA)",
        ));
    };
    if !matches!(country, 0 | 1) {
        return Err(invalid(
            index,
            "data_processing_options_country",
            "data_processing_options_country must be 0 (geolocate) or 1 (USA)",
        ));
    }
    match state {
        None if !user_data.contains_key("client_ip_address") => Err(invalid(
            index,
            "data_processing_options_state",
            "data_processing_options [\"LDU\"] without client_ip_address requires data_processing_options_state (0 to let Meta geolocate)",
        )),
        None | Some(0) => Ok(()),
        Some(s) if country == 1 && (1000..2000).contains(&s) => Ok(()),
        Some(_) => Err(invalid(
            index,
            "data_processing_options_state",
            "data_processing_options_state must be 0 (geolocate) or, with country 1, a US state code such as 1000 (California)",
        )),
    }
}

fn check_event_time(
    index: usize,
    value: Option<&Value>,
    now: i64,
    max_age: i64,
) -> Result<(), EventError> {
    let t = match value {
        None => {
            return Err(invalid(
                index,
                "event_time",
                "event_time is required (Unix seconds)",
            ))
        }
        Some(Value::Number(n)) => match n.as_i64() {
            Some(t) => t,
            // u64 beyond i64 is certainly not seconds; floats are not integers.
            None if n.as_u64().is_some() => i64::MAX,
            None => {
                return Err(invalid(
                    index,
                    "event_time",
                    "event_time must be an integer number of Unix seconds",
                ))
            }
        },
        Some(_) => {
            return Err(invalid(
                index,
                "event_time",
                "event_time must be a JSON integer (Unix seconds), not a string",
            ))
        }
    };
    if t > MILLIS_THRESHOLD {
        return Err(EventError::new(
            index,
            "event_time",
            SUBCODE_INVALID,
            "Invalid Event Timestamp",
            format!("event_time {t} looks like milliseconds; it must be Unix seconds"),
        ));
    }
    if now.saturating_sub(t) > max_age {
        return Err(EventError::new(
            index,
            "event_time",
            SUBCODE_TOO_OLD,
            "Event Timestamp Too Old",
            "The timestamp for this event is too far in the past. Events need to be sent from your server within 7 days of when they occurred.",
        ));
    }
    if t.saturating_sub(now) > MAX_FUTURE_SECS {
        return Err(EventError::new(
            index,
            "event_time",
            SUBCODE_INVALID,
            "Invalid Event Timestamp",
            format!(
                "event_time {t} is more than {} minutes in the future",
                MAX_FUTURE_SECS / 60
            ),
        ));
    }
    Ok(())
}

fn check_user_data(index: usize, user_data: &Map<String, Value>) -> Result<(), EventError> {
    let mut present = 0u32;
    for (key, value) in user_data {
        let Some((kind, bit)) = classify(key) else {
            return Err(invalid(
                index,
                format_args!("user_data.{key}"),
                format!("unknown user_data parameter {key:?}"),
            ));
        };
        match kind {
            KeyKind::Hashed => check_hashed(index, key, value)?,
            KeyKind::Raw | KeyKind::Cookie => {
                let s = raw_string(index, key, value)?;
                if kind == KeyKind::Cookie && !is_fb_cookie(s) {
                    return Err(invalid(
                        index,
                        format_args!("user_data.{key}"),
                        format!("{key} must look like fb.<subdomain index>.<creation time in ms, 13 digits>.<value>"),
                    ));
                }
            }
            KeyKind::Ip => {
                let ok = value.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok());
                if !ok {
                    return Err(invalid(
                        index,
                        "user_data.client_ip_address",
                        "client_ip_address must be a valid IPv4 or IPv6 address, unhashed",
                    ));
                }
            }
            KeyKind::Numeric => check_numeric_id(index, key, value)?,
        }
        present |= bit;
    }

    let thin = present == 0 || THIN_COMBINATIONS.iter().any(|combo| present & !combo == 0);
    if thin {
        return Err(EventError::new(
            index,
            "user_data",
            SUBCODE_NO_USER_DATA,
            "Missing Customer Information",
            "user_data has no usable customer information parameter (empty, or only a combination Meta refuses such as fn+ge or db+client_user_agent)",
        ));
    }
    Ok(())
}

/// Hashed keys accept one string or a non-empty list of strings, each a SHA-256 hex digest.
fn check_hashed(index: usize, key: &str, value: &Value) -> Result<(), EventError> {
    let one = |i: Option<usize>, v: &Value| -> Result<(), EventError> {
        let field = || match i {
            Some(i) => format!("user_data.{key}[{i}]"),
            None => format!("user_data.{key}"),
        };
        match v {
            Value::String(s) if is_sha256_hex(s) => Ok(()),
            Value::String(_) => Err(invalid(
                index,
                field(),
                format!(
                    "{key} must be SHA-256 lowercase hex (64 characters); the value looks unhashed"
                ),
            )),
            _ => Err(invalid(
                index,
                field(),
                format!("{key} must be a string or a list of strings"),
            )),
        }
    };
    match value {
        Value::Array(items) if items.is_empty() => Err(invalid(
            index,
            format_args!("user_data.{key}"),
            format!("{key} must not be an empty list"),
        )),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| one(Some(i), v)),
        v => one(None, v),
    }
}

/// Keys Meta says never to hash: a non-empty string that does not look like a SHA-256 digest.
fn raw_string<'a>(index: usize, key: &str, value: &'a Value) -> Result<&'a str, EventError> {
    match value {
        Value::String(s) if s.is_empty() => Err(invalid(
            index,
            format_args!("user_data.{key}"),
            format!("{key} must not be empty"),
        )),
        Value::String(s) if is_sha256_hex(s) => Err(invalid(
            index,
            format_args!("user_data.{key}"),
            format!("{key} must be sent unhashed; the value looks like a SHA-256 digest"),
        )),
        Value::String(s) => Ok(s),
        _ => Err(invalid(
            index,
            format_args!("user_data.{key}"),
            format!("{key} must be a string"),
        )),
    }
}

/// `fb_login_id` / `lead_id` are integers (*customer-information-parameters*); `lead_id` is a 15–17
/// digit Lead Ads ID (*conversion-leads*).
fn check_numeric_id(index: usize, key: &str, value: &Value) -> Result<(), EventError> {
    let digits = match value {
        Value::Number(n) if n.as_u64().is_some() => n.to_string(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.clone(),
        _ => {
            return Err(invalid(
                index,
                format_args!("user_data.{key}"),
                format!("{key} must be an unhashed integer ID"),
            ))
        }
    };
    if key == "lead_id" && !(15..=17).contains(&digits.len()) {
        return Err(invalid(
            index,
            "user_data.lead_id",
            "lead_id must be a 15-17 digit Lead Ads ID",
        ));
    }
    Ok(())
}

fn check_custom_data(
    index: usize,
    event_name: &str,
    custom_data: Option<&Value>,
) -> Result<(), EventError> {
    let custom = match custom_data {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            return Err(invalid(
                index,
                "custom_data",
                "custom_data must be a JSON object",
            ))
        }
    };
    // A null is no value: what a client sends when its number did not fit in JSON (NaN, ∞).
    let value = custom.and_then(|m| m.get("value")).filter(|v| !v.is_null());
    let currency = custom.and_then(|m| m.get("currency"));
    if custom.is_some_and(|m| m.get("value").is_some_and(Value::is_null))
        && event_name != "Purchase"
    {
        return Err(invalid(
            index,
            "custom_data.value",
            "custom_data.value must be a number, not null",
        ));
    }
    if value.is_some_and(|v| !v.is_number()) {
        return Err(invalid(
            index,
            "custom_data.value",
            "custom_data.value must be a JSON number, not a string",
        ));
    }
    if let Some(c) = currency {
        let ok = c
            .as_str()
            .is_some_and(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()));
        if !ok {
            return Err(invalid(
                index,
                "custom_data.currency",
                "custom_data.currency must be a 3-letter ISO 4217 code",
            ));
        }
    }
    if event_name == "Purchase" && (value.is_none() || currency.is_none()) {
        let missing = if value.is_none() {
            "custom_data.value"
        } else {
            "custom_data.currency"
        };
        return Err(EventError::new(
            index,
            missing,
            SUBCODE_PURCHASE_VALUE,
            "Missing Value for Purchase Event",
            "Purchase events must include custom_data.value and custom_data.currency",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_789_433_294;
    const H: &str = "029c7290f14c4516673508635f0519db95f7daf42057fd0e4ad1de84c5408a66";

    fn base() -> Value {
        json!({"event_name":"Lead","event_time":NOW - 60,"event_id":"e1","action_source":"chat",
               "user_data":{"ph":[H]}})
    }

    fn err(ev: &Value) -> EventError {
        validate_event(0, ev, NOW).expect_err("event should be rejected")
    }

    #[test]
    fn byte_checks() {
        assert!(is_sha256_hex(H));
        assert!(!is_sha256_hex(&H.to_uppercase()));
        assert!(!is_sha256_hex(&H[1..]));
        assert!(is_fb_cookie("fb.1.1772366400000.IwAR2F4-dbP0"));
        assert!(is_fb_cookie("fb.1.1772366400000.IwAR2F4.AQYBAQIA"));
        assert!(!is_fb_cookie("fb.1.1772366400.IwAR2F4")); // seconds, not ms
        assert!(!is_fb_cookie("fb.1.1772366400000."));
        assert!(!is_fb_cookie("fb.12.1772366400000.x"));
        assert!(!is_fb_cookie("fb.1.1772366400000.a.b.c"));
        assert!(!is_fb_cookie("fx.1.1772366400000.a"));
    }

    #[test]
    fn valid_event_passes() {
        validate_event(0, &base(), NOW).unwrap();
    }

    #[test]
    fn conversion_leads_shape() {
        let mut ev = base();
        ev["action_source"] = json!("system_generated");
        ev["user_data"]["lead_id"] = json!(1_234_567_890_123_456u64);
        ev["custom_data"] = json!({"event_source": "crm", "lead_event_source": "Pipedrive"});
        validate_event(0, &ev, NOW).unwrap();
        let mut no_name = ev.clone();
        no_name["custom_data"] = json!({"event_source": "crm"});
        assert_eq!(err(&no_name).field, "custom_data.lead_event_source");
        let mut no_lead = ev.clone();
        no_lead["user_data"] = json!({"ph": [H]});
        assert_eq!(err(&no_lead).field, "user_data.lead_id");
        let mut wrong_source = ev.clone();
        wrong_source["action_source"] = json!("physical_store");
        assert_eq!(err(&wrong_source).field, "action_source");
        let mut other = ev.clone();
        other["custom_data"]["event_source"] = json!("website");
        assert_eq!(err(&other).field, "custom_data.event_source");
        let mut short = ev;
        short["user_data"]["lead_id"] = json!(12345);
        assert_eq!(err(&short).field, "user_data.lead_id");
    }

    #[test]
    fn limited_data_use_and_opt_out_shapes() {
        let with = |extra: Value| {
            let mut ev = base();
            for (k, v) in extra.as_object().unwrap() {
                ev[k] = v.clone();
            }
            ev
        };
        for ok in [
            json!({"data_processing_options": []}),
            json!({"data_processing_options": ["LDU"], "data_processing_options_country": 0, "data_processing_options_state": 0}),
            json!({"data_processing_options": ["LDU"], "data_processing_options_country": 1, "data_processing_options_state": 1000}),
            json!({"opt_out": true}),
            json!({"opt_out": false}),
        ] {
            validate_event(0, &with(ok.clone()), NOW).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, field) in [
            (
                json!({"data_processing_options": "LDU"}),
                "data_processing_options",
            ),
            (
                json!({"data_processing_options": ["ldu"]}),
                "data_processing_options",
            ),
            (
                json!({"data_processing_options": ["LDU"]}),
                "data_processing_options_country",
            ),
            (
                json!({"data_processing_options": ["LDU"], "data_processing_options_country": 0}),
                "data_processing_options_state",
            ),
            (
                json!({"data_processing_options": ["LDU"], "data_processing_options_country": 55, "data_processing_options_state": 0}),
                "data_processing_options_country",
            ),
            (
                json!({"data_processing_options": ["LDU"], "data_processing_options_country": 0, "data_processing_options_state": 1000}),
                "data_processing_options_state",
            ),
            (
                json!({"data_processing_options": ["LDU"], "data_processing_options_country": "0", "data_processing_options_state": 0}),
                "data_processing_options_country",
            ),
            (
                json!({"data_processing_options_country": 1}),
                "data_processing_options_country",
            ),
            (json!({"opt_out": "true"}), "opt_out"),
        ] {
            assert_eq!(err(&with(bad.clone())).field, field, "{bad}");
        }
        // With an IP address Meta can geolocate the state itself.
        let mut ev =
            with(json!({"data_processing_options": ["LDU"], "data_processing_options_country": 0}));
        ev["user_data"]["client_ip_address"] = json!("2001:db8::1");
        validate_event(0, &ev, NOW).unwrap();
    }

    #[test]
    fn thin_user_data_is_refused() {
        let mut ev = base();
        ev["user_data"] = json!({"fn": H, "ge": H});
        assert_eq!(err(&ev).subcode, SUBCODE_NO_USER_DATA);
        ev["user_data"] = json!({"client_user_agent": "Mozilla/5.0"});
        assert_eq!(err(&ev).subcode, SUBCODE_NO_USER_DATA);
        ev["user_data"] = json!({"fn": H, "ln": H});
        validate_event(0, &ev, NOW).unwrap();
    }

    #[test]
    fn edge_of_time_window() {
        let mut ev = base();
        ev["event_time"] = json!(NOW - MAX_AGE_SECS);
        validate_event(0, &ev, NOW).unwrap();
        ev["event_time"] = json!(NOW - MAX_AGE_SECS - 1);
        assert_eq!(err(&ev).subcode, SUBCODE_TOO_OLD);
        ev["event_time"] = json!(NOW + MAX_FUTURE_SECS);
        validate_event(0, &ev, NOW).unwrap();
        let mut store = base();
        store["action_source"] = json!("physical_store");
        store["event_time"] = json!(NOW - PHYSICAL_STORE_MAX_AGE_SECS);
        validate_event(0, &store, NOW).unwrap();
        store["event_time"] = json!(NOW - PHYSICAL_STORE_MAX_AGE_SECS - 1);
        assert_eq!(err(&store).subcode, SUBCODE_TOO_OLD);
        ev["event_time"] = json!(NOW + MAX_FUTURE_SECS + 1);
        assert_eq!(err(&ev).field, "event_time");
        ev["event_time"] = json!(1.5e9);
        assert_eq!(err(&ev).field, "event_time");
        ev["event_time"] = json!(u64::MAX);
        assert!(err(&ev).detail.contains("milliseconds"));
    }

    #[test]
    fn field_paths_name_list_items() {
        let mut ev = base();
        ev["user_data"]["em"] = json!([H, "maria@example.com"]);
        let e = err(&ev);
        assert_eq!(
            (e.field.as_str(), e.subcode),
            ("user_data.em[1]", SUBCODE_INVALID)
        );
        assert_eq!(e.blame_path(), "data[0].user_data.em[1]");
    }

    #[test]
    fn type_and_format_rules() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"user_data": {"em": []}}), "user_data.em"),
            (
                json!({"user_data": {"ph": [H], "email": "a@b.c"}}),
                "user_data.email",
            ),
            (
                json!({"user_data": {"ph": [H], "client_ip_address": "1.2.3"}}),
                "user_data.client_ip_address",
            ),
            (json!({"user_data": {"ph": [H], "fbp": H}}), "user_data.fbp"),
            (
                json!({"user_data": {"ph": [H], "lead_id": "123"}}),
                "user_data.lead_id",
            ),
            (json!({"event_id": ""}), "event_id"),
            (json!({"event_name": " "}), "event_name"),
            (
                json!({"messaging_channel": "telegram"}),
                "messaging_channel",
            ),
            (
                json!({"custom_data": {"value": 1, "currency": "R$"}}),
                "custom_data.currency",
            ),
            (json!({"custom_data": []}), "custom_data"),
            (
                json!({"action_source": "business_messaging"}),
                "messaging_channel",
            ),
            (json!({"event_name": "QualifiedLead"}), "event_name"),
            (json!({"action_source": "website"}), "event_source_url"),
            (
                json!({"action_source": "website", "event_source_url": "https://example.com/"}),
                "user_data.client_user_agent",
            ),
            (json!({"action_source": "app"}), "app_data"),
            (json!({"custom_data": {"value": null}}), "custom_data.value"),
        ];
        for (patch, field) in cases {
            let mut ev = base();
            for (k, v) in patch.as_object().unwrap() {
                ev[k] = v.clone();
            }
            let e = err(&ev);
            assert_eq!(e.field, field, "{patch}");
            assert_eq!(e.subcode, SUBCODE_INVALID, "{patch}");
        }
    }

    #[test]
    fn business_messaging_names_pass_on_business_messaging_and_a_null_purchase_value_is_missing() {
        let mut ev = base();
        ev["event_name"] = json!("QualifiedLead");
        ev["action_source"] = json!("business_messaging");
        ev["messaging_channel"] = json!("whatsapp");
        ev["user_data"] =
            json!({"ph": [H], "ctwa_clid": "Aff-1", "whatsapp_business_account_id": "555"});
        validate_event(0, &ev, NOW).unwrap();
        let mut purchase = base();
        purchase["event_name"] = json!("Purchase");
        purchase["custom_data"] = json!({"value": null, "currency": "BRL"});
        let e = err(&purchase);
        assert_eq!(
            (e.field.as_str(), e.subcode),
            ("custom_data.value", SUBCODE_PURCHASE_VALUE)
        );
    }

    #[test]
    fn ipv6_and_numeric_lead_id_accepted() {
        let mut ev = base();
        ev["user_data"] =
            json!({"client_ip_address": "2001:db8::1", "lead_id": 123456789012345u64});
        validate_event(0, &ev, NOW).unwrap();
    }
}
