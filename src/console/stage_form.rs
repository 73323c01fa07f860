//! The stage form: `crm_stages.utm_event` as form rows and back, validated with the worker's
//! own parser through the doctor's stage check (`doctor::stage_checks`, which runs
//! `pipeline::event_config::parse` and each platform's `event_name`), so the form accepts exactly
//! what a stage change can send.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::catalog::{self, OTHER};
use crate::doctor::{Check, Status};
use crate::pipeline::event_config::flag;
use crate::store::doctor::StageRow;

/// Rows a form may carry (a stage with more entries than this is not a stage anyone configures).
pub const MAX_ROWS: usize = 50;

/// One row of the form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// The entry of the saved value this row edits; keys the form does not know are kept.
    pub orig: Option<usize>,
    pub platform: String,
    /// A catalog name, `Other`, or (for a saved value) whatever name the stage holds.
    pub event: String,
    pub custom: String,
    pub use_sale_price: bool,
    pub value: String,
    pub currency: String,
    pub enabled: bool,
    pub remove: bool,
}

/// The rows of a saved value (a legacy single object is one row; other shapes none).
pub fn rows_from_value(v: &Value) -> Vec<Row> {
    let entries: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![v],
        _ => Vec::new(),
    };
    entries
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_object().map(|o| (i, o)))
        .map(|(i, o)| {
            let text = |k: &str| match o.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            let name = text("event_name");
            let custom = text("custom_event_name");
            let standard = catalog::lookup(name.trim()).is_some_and(|d| d.name != OTHER);
            let event = if !standard && !custom.trim().is_empty() {
                OTHER.to_string()
            } else {
                name.trim().to_string()
            };
            let platform = text("platform");
            Row {
                orig: Some(i),
                platform: if platform.trim().is_empty() {
                    "facebook".into()
                } else {
                    platform
                },
                event,
                custom,
                use_sale_price: flag(o.get("use_sale_price"), true),
                value: text("value"),
                currency: text("currency"),
                enabled: flag(o.get("enabled"), true),
                remove: false,
            }
        })
        .collect()
}

/// The rows of a submitted form (`p0`, `e0`, … see `pages::stages`), at most [`MAX_ROWS`].
pub fn rows_from_form(fields: &HashMap<String, String>) -> Vec<Row> {
    let count = fields
        .get("rows")
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_ROWS);
    let get = |k: String| {
        fields
            .get(&k)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    (0..count)
        .map(|i| Row {
            orig: fields
                .get(&format!("o{i}"))
                .and_then(|o| o.trim().parse().ok()),
            platform: get(format!("p{i}")),
            event: get(format!("e{i}")),
            custom: get(format!("c{i}")),
            use_sale_price: fields.contains_key(&format!("s{i}")),
            value: get(format!("v{i}")),
            currency: get(format!("cur{i}")),
            enabled: fields.contains_key(&format!("on{i}")),
            remove: fields.contains_key(&format!("rm{i}")),
        })
        .collect()
}

/// A value typed in the form: a number when it reads as one ("149,90" too), else the text, so
/// the worker's parser reports it rather than the form silently dropping it.
fn value_of(s: &str) -> Value {
    let s = s.trim();
    if s.is_empty() {
        return Value::Null;
    }
    match s.replace(',', ".").parse::<f64>() {
        Ok(n) if n.is_finite() => serde_json::Number::from_f64(n)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(s.to_string())),
        _ => Value::String(s.to_string()),
    }
}

/// The `utm_event` array the rows describe. Removed rows and rows without an event (the empty
/// "new event" row) are left out; an edited row keeps the keys of its saved entry that the form
/// does not show.
pub fn build_value(rows: &[Row], base: &Value) -> Value {
    let base_entries: Vec<&Value> = match base {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![base],
        _ => Vec::new(),
    };
    let entries = rows
        .iter()
        .filter(|r| !r.remove && !r.event.trim().is_empty())
        .map(|r| {
            let mut o: Map<String, Value> = r
                .orig
                .and_then(|i| base_entries.get(i))
                .and_then(|e| e.as_object())
                .cloned()
                .unwrap_or_default();
            o.insert("platform".into(), Value::String(r.platform.trim().into()));
            o.insert("event_name".into(), Value::String(r.event.trim().into()));
            if r.event.trim() == OTHER {
                o.insert(
                    "custom_event_name".into(),
                    Value::String(r.custom.trim().into()),
                );
            } else {
                o.remove("custom_event_name");
            }
            o.insert("value".into(), value_of(&r.value));
            let currency = r.currency.trim().to_ascii_uppercase();
            o.insert(
                "currency".into(),
                if currency.is_empty() {
                    Value::Null
                } else {
                    Value::String(currency)
                },
            );
            o.insert("use_sale_price".into(), Value::Bool(r.use_sale_price));
            o.insert("enabled".into(), Value::Bool(r.enabled));
            Value::Object(o)
        })
        .collect();
    Value::Array(entries)
}

/// What the form found: problems keep it from being saved, warnings do not.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub problems: Vec<Check>,
    pub warnings: Vec<Check>,
    /// Entries (0-based, in the built value) whose currency is not a 3-letter code.
    pub bad_currencies: Vec<usize>,
}

impl Verdict {
    pub fn saveable(&self) -> bool {
        self.problems.is_empty() && self.bad_currencies.is_empty()
    }
}

/// Check a value as the worker would read it, disabled entries included (the worker skips
/// them, but they are sent once someone enables them, so they must be valid too).
pub fn validate(
    stage_id: i64,
    name: Option<&str>,
    value: &Value,
    platforms: &crate::platforms::registry::Registry,
) -> Verdict {
    let forced = match value {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|e| {
                    let mut e = e.clone();
                    if let Some(o) = e.as_object_mut() {
                        o.insert("enabled".into(), Value::Bool(true));
                    }
                    e
                })
                .collect(),
        ),
        other => other.clone(),
    };
    let checks = crate::doctor::stage_checks(
        &[StageRow {
            id: stage_id,
            name: name.map(str::to_string),
            utm_event: Some(forced),
        }],
        platforms,
    );
    let mut verdict = Verdict::default();
    for c in checks {
        match c.status {
            Status::Problem => verdict.problems.push(c),
            Status::Warning => verdict.warnings.push(c),
            _ => {}
        }
    }
    if let Value::Array(items) = value {
        for (i, e) in items.iter().enumerate() {
            if let Some(Value::String(c)) = e.get("currency") {
                if c.len() != 3 || !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                    verdict.bad_currencies.push(i);
                }
            }
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_saved_value_round_trips_through_the_form_keeping_unknown_keys() {
        let saved = json!([
            {"platform": "facebook", "event_name": "Purchase", "use_sale_price": true, "value": null, "currency": "brl", "crm_note": "kept"},
            {"event_name": "Other", "custom_event_name": "Visita", "enabled": false, "value": "49,90"}
        ]);
        let rows = rows_from_value(&saved);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].event, OTHER);
        assert_eq!(rows[1].custom, "Visita");
        assert!(!rows[1].enabled);
        let built = build_value(&rows, &saved);
        assert_eq!(built[0]["crm_note"], "kept");
        assert_eq!(built[0]["currency"], "BRL");
        assert_eq!(built[1]["value"], json!(49.9));
        assert_eq!(built[1]["platform"], "facebook");
        assert!(validate(1, None, &built, &registry()).saveable());
    }

    #[test]
    fn the_form_refuses_what_the_worker_could_not_send() {
        let mut fields: HashMap<String, String> = [
            ("rows", "3"),
            ("p0", "facebook"),
            ("e0", "Purchse"),
            ("on0", "on"),
            ("p1", "facebook"),
            ("e1", "Lead"),
            ("v1", "-3"),
            ("p2", "facebook"),
            ("e2", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let rows = rows_from_form(&fields);
        let built = build_value(&rows, &Value::Null);
        assert_eq!(
            built.as_array().unwrap().len(),
            2,
            "the empty new row is left out"
        );
        let v = validate(3, Some("Venda"), &built, &registry());
        assert!(!v.saveable());
        let found: Vec<&str> = v.problems.iter().map(|c| c.found.as_str()).collect();
        assert!(found[0].contains("did you mean \"Purchase\""), "{found:?}");
        assert!(
            found[1].contains("is not a number from 0 to 1000000000"),
            "{found:?}"
        );
        // Disabled entries are checked too (e1 is disabled: no `on1`).
        fields.insert("e0".into(), "Lead".into());
        fields.insert("v1".into(), "10".into());
        fields.insert("cur1".into(), "reais".into());
        let built = build_value(&rows_from_form(&fields), &Value::Null);
        let v = validate(3, None, &built, &registry());
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.bad_currencies, [1]);
        // TikTok and Google Ads are delivered: no warning.
        let v = validate(
            3,
            None,
            &json!([{"platform": "google_ads", "event_name": "Lead"}]),
            &registry(),
        );
        assert!(v.saveable() && v.warnings.is_empty(), "{:?}", v.warnings);
        let v = validate(
            3,
            None,
            &json!([{"platform": "tiktok", "event_name": "Lead"}]),
            &registry(),
        );
        assert!(v.saveable() && v.warnings.is_empty(), "{:?}", v.warnings);
        // …but not an event TikTok has no counterpart for: the worker would refuse it.
        let v = validate(
            3,
            None,
            &json!([{"platform": "tiktok", "event_name": "Donate"}]),
            &registry(),
        );
        assert!(!v.saveable(), "{v:?}");
        assert!(v.problems[0].found.contains("Donate"), "{:?}", v.problems);
    }

    fn registry() -> crate::platforms::registry::Registry {
        crate::platforms::registry::Registry::from_config_lenient(
            &crate::platforms::registry::PlatformsConfig::default(),
        )
        .0
    }
}
