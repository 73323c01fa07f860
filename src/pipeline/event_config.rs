//! Parsing a stage's `utm_event` array into typed event configs. Tolerant of what CRMs write
//! (numeric strings, a legacy single object, platform aliases); anything it cannot use becomes
//! a [`ConfigIssue`] that turns into a chat alert, never a panic.

use serde_json::Value;

use crate::alerts::AlertCause;
use crate::catalog::{self, CatalogError, EventName};
use crate::platforms::Platform;

/// The largest event value accepted (any currency). Meta documents no bound, but a value past
/// this is a typo or a unit mistake, and a value that does not fit in JSON (`1e308` × 100 when
/// rounded to cents, NaN, ∞) would go out as `null`, which Meta rejects on a Purchase.
pub const MAX_VALUE: f64 = 1e9;

/// A usable event value: finite, not negative, at most [`MAX_VALUE`].
pub fn is_sane_value(v: f64) -> bool {
    v.is_finite() && (0.0..=MAX_VALUE).contains(&v)
}

/// One entry of `crm_stages.utm_event`.
#[derive(Debug, Clone)]
pub struct EventConfig {
    /// Position in the array (for messages).
    pub index: usize,
    pub platform: Platform,
    pub event: EventName,
    /// Fixed value for this event (used when the customer's sale price is not).
    pub value: Option<f64>,
    pub currency: Option<String>,
    /// Use the customer's `sale_price` first (default true).
    pub use_sale_price: bool,
}

/// A config entry that cannot be used, with the alert it deserves.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    pub index: Option<usize>,
    pub cause: AlertCause,
    /// Platform named by the entry, when it named one.
    pub platform: Option<String>,
    /// Event name as written, when there was one.
    pub event_name: Option<String>,
    pub suggestion: Option<String>,
    /// Short explanation for the alert and the job's last_error.
    pub message: String,
}

/// Parse the whole `utm_event` value. Disabled entries are dropped silently (a marketer
/// switched them off); every other entry yields a config or an issue.
pub fn parse(utm_event: &Value) -> Vec<Result<EventConfig, ConfigIssue>> {
    let entries: Vec<&Value> = match utm_event {
        Value::Array(items) => items.iter().collect(),
        // Legacy single object (the normalising trigger was bypassed or not yet installed).
        Value::Object(_) => vec![utm_event],
        Value::Null => Vec::new(),
        other => {
            return vec![Err(ConfigIssue {
                index: None,
                cause: AlertCause::InvalidEventConfig,
                platform: None,
                event_name: None,
                suggestion: None,
                message: format!(
                    "utm_event is a JSON {}, expected an array of event configs",
                    json_type(other)
                ),
            })]
        }
    };
    entries
        .into_iter()
        .enumerate()
        .filter_map(|(index, entry)| parse_entry(index, entry).transpose())
        .collect()
}

fn parse_entry(index: usize, entry: &Value) -> Result<Option<EventConfig>, ConfigIssue> {
    let issue = |cause, message: String| ConfigIssue {
        index: Some(index),
        cause,
        platform: entry
            .get("platform")
            .and_then(Value::as_str)
            .map(str::to_string),
        event_name: entry
            .get("event_name")
            .and_then(Value::as_str)
            .map(str::to_string),
        suggestion: None,
        message,
    };
    let Value::Object(obj) = entry else {
        return Err(issue(
            AlertCause::InvalidEventConfig,
            format!(
                "entry {} is a JSON {}, expected an object",
                index + 1,
                json_type(entry)
            ),
        ));
    };
    if !flag(obj.get("enabled"), true) {
        return Ok(None);
    }
    let platform_raw = obj.get("platform").and_then(Value::as_str).unwrap_or("");
    let platform = if platform_raw.trim().is_empty() {
        // The first product only spoke to Meta and did not write a platform.
        Platform::Facebook
    } else {
        Platform::parse(platform_raw).ok_or_else(|| {
            issue(
                AlertCause::InvalidEventConfig,
                format!("entry {}: unknown platform {platform_raw:?} (expected facebook, google_ads or tiktok)", index + 1),
            )
        })?
    };
    let event_name = obj.get("event_name").and_then(Value::as_str);
    let custom = obj
        .get("custom_event_name")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty());
    let event = catalog::resolve(event_name, custom)
        .map_err(|e| catalog_issue(index, platform, event_name, e))?;
    let value = match obj.get("value") {
        None | Some(Value::Null) => None,
        Some(v) => Some(number(v).filter(|n| is_sane_value(*n)).ok_or_else(|| {
            issue(
                AlertCause::InvalidEventConfig,
                format!(
                    "entry {}: value {v} is not a number from 0 to {MAX_VALUE:.0}",
                    index + 1
                ),
            )
        })?),
    };
    let currency = obj
        .get("currency")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(Some(EventConfig {
        index,
        platform,
        event,
        value,
        currency,
        use_sale_price: flag(obj.get("use_sale_price"), true),
    }))
}

fn catalog_issue(
    index: usize,
    platform: Platform,
    event_name: Option<&str>,
    e: CatalogError,
) -> ConfigIssue {
    let (cause, suggestion) = match &e {
        CatalogError::UnknownEventName { suggestion, .. } => (
            AlertCause::UnknownEventName,
            suggestion.map(|s| s.to_string()),
        ),
        _ => (AlertCause::InvalidEventConfig, None),
    };
    ConfigIssue {
        index: Some(index),
        cause,
        platform: Some(platform.code().to_string()),
        event_name: event_name.map(str::to_string),
        suggestion,
        message: format!("entry {}: {e}", index + 1),
    }
}

/// Booleans as CRMs write them: true/false, "true"/"false", 1/0.
pub fn flag(v: Option<&Value>, default: bool) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "false" | "0" | "no" | "off" => false,
            "true" | "1" | "yes" | "on" => true,
            _ => default,
        },
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        _ => default,
    }
}

/// A number, or a numeric string ("149.90", "149,90").
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().replace(',', ".").parse().ok(),
        _ => None,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_array_with_defaults_and_skips_disabled() {
        let v = json!([
            {"platform": "facebook", "event_name": "Purchase", "enabled": true, "value": null, "currency": null, "use_sale_price": true},
            {"platform": "facebook", "event_name": "Lead", "enabled": false},
            {"event_name": "Other", "custom_event_name": "Visita agendada", "value": "49,90", "currency": "brl"}
        ]);
        let out = parse(&v);
        assert_eq!(out.len(), 2);
        let a = out[0].as_ref().unwrap();
        assert_eq!(
            (a.platform, a.event.as_str(), a.value, a.use_sale_price),
            (Platform::Facebook, "Purchase", None, true)
        );
        let b = out[1].as_ref().unwrap();
        assert_eq!(
            (b.event.as_str(), b.value, b.currency.as_deref()),
            ("Visita agendada", Some(49.9), Some("brl"))
        );
    }

    #[test]
    fn legacy_object_is_one_entry() {
        let out = parse(&json!({"platform": "facebook", "event_name": "Lead"}));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ref().unwrap().event.as_str(), "Lead");
    }

    #[test]
    fn garbage_becomes_issues_not_panics() {
        let out = parse(&json!("oops"));
        assert!(
            matches!(&out[..], [Err(i)] if i.cause == AlertCause::InvalidEventConfig && i.message.contains("string"))
        );
        let out = parse(
            &json!([42, {"platform": "myspace", "event_name": "Lead"}, {"event_name": "Purchse"}, {"event_name": "Lead", "value": -3}]),
        );
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(Result::is_err));
        let unknown = out[2].as_ref().unwrap_err();
        assert_eq!(unknown.cause, AlertCause::UnknownEventName);
        assert_eq!(unknown.suggestion.as_deref(), Some("Purchase"));
        assert!(out[1].as_ref().unwrap_err().message.contains("myspace"));
    }

    #[test]
    fn values_outside_a_sane_range_are_refused_never_sent_as_null() {
        for bad in [
            json!(1e308),
            json!("1e308"),
            json!("NaN"),
            json!("inf"),
            json!(-0.01),
            json!(1.5e9),
            json!(true),
        ] {
            let out = parse(&json!([{"event_name": "Purchase", "value": bad}]));
            let issue = out[0].as_ref().expect_err("refused");
            assert_eq!(issue.cause, AlertCause::InvalidEventConfig, "{bad}");
            assert!(
                issue.message.contains("not a number from 0 to 1000000000"),
                "{}",
                issue.message
            );
        }
        for good in [json!(0), json!(149.9), json!("1000000000")] {
            assert!(
                parse(&json!([{"event_name": "Purchase", "value": good}]))[0].is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn platform_aliases_and_other_platforms() {
        let out = parse(
            &json!([{"platform": "Meta", "event_name": "Lead"}, {"platform": "tiktok", "event_name": "Purchase"}]),
        );
        assert_eq!(out[0].as_ref().unwrap().platform, Platform::Facebook);
        assert_eq!(out[1].as_ref().unwrap().platform, Platform::Tiktok);
    }
}
