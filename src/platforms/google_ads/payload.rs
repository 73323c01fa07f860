//! The request builder: a [`ConversionEvent`] as one `ClickConversion` row, and the
//! `UploadClickConversionsRequest` around the rows ("ConversionUploadService",
//! "Upload click conversions", "Enhanced conversions for leads").
//!
//! What makes a retry idempotent: `orderId` is derived from the stage change (never random) and
//! `conversionDateTime` is the stage change's time, so a re-sent row is the same conversion and
//! Google answers `ORDER_ID_ALREADY_IN_USE` / `CLICK_CONVERSION_ALREADY_EXISTS` for it.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::match_quality::MatchKeys;
use crate::platforms::event::ConversionEvent;

/// At most five identifiers per conversion (`userIdentifiers`, "ClickConversion").
const MAX_IDENTIFIERS: usize = 5;

/// `customers/{customer}/conversionActions/{action}`.
pub fn conversion_action(customer_id: &str, action_id: &str) -> String {
    format!("customers/{customer_id}/conversionActions/{action_id}")
}

/// `yyyy-mm-dd hh:mm:ss+00:00`: Google requires the offset; UTC keeps it unambiguous.
pub fn date_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
}

/// Digits only: Google's ids are written `123-456-7890` in its UI and sent without hyphens.
pub fn customer_digits(id: &str) -> String {
    id.chars().filter(char::is_ascii_digit).collect()
}

/// Which click id a row carries: `gclid`, else `gbraid`, else `wbraid` (never both braids:
/// `GBRAID_WBRAID_BOTH_SET`).
fn click_id(event: &ConversionEvent) -> Option<(&'static str, &str)> {
    let u = &event.user;
    u.gclid
        .as_deref()
        .map(|c| ("gclid", c))
        .or_else(|| u.gbraid.as_deref().map(|c| ("gbraid", c)))
        .or_else(|| u.wbraid.as_deref().map(|c| ("wbraid", c)))
}

/// Whether the event can be matched at all: a click id, or a hashed email or phone.
pub fn matchable(event: &ConversionEvent) -> bool {
    click_id(event).is_some()
        || !event.user.google_emails.is_empty()
        || !event.user.phones_e164.is_empty()
}

/// A `ConsentStatus` ("Consent", "ConsentStatus" in the API reference). Only `adUserData` is
/// sent: Google documents `adPersonalization` as settable only for OfflineUserDataJobService
/// and UserDataService, not for click conversions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    Granted,
    Denied,
}

impl Consent {
    /// `GRANTED` / `DENIED`, any case.
    pub fn parse(s: &str) -> Option<Consent> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GRANTED" => Some(Consent::Granted),
            "DENIED" => Some(Consent::Denied),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Granted => "GRANTED",
            Consent::Denied => "DENIED",
        }
    }
}

/// One `conversions[]` row. `order_id` falls back to the event id (also deterministic).
/// `consent`: the destination's `adUserData` status, when it sets one.
pub fn build_conversion(
    event: &ConversionEvent,
    customer_id: &str,
    action_id: &str,
    consent: Option<Consent>,
) -> (Value, MatchKeys) {
    let mut row = Map::new();
    let mut keys = MatchKeys::default();
    let click = click_id(event);
    if let Some((field, id)) = click {
        row.insert(field.into(), Value::String(id.to_string()));
        keys.click_id = true;
    }
    row.insert(
        "conversionAction".into(),
        Value::String(conversion_action(customer_id, action_id)),
    );
    row.insert(
        "conversionDateTime".into(),
        Value::String(date_time(event.event_time)),
    );
    if let Some(v) = event.value {
        row.insert("conversionValue".into(), json!(v));
    }
    if let Some(c) = &event.currency {
        row.insert("currencyCode".into(), Value::String(c.clone()));
    }
    if let Some(c) = consent {
        row.insert("consent".into(), json!({"adUserData": c.as_str()}));
    }
    let order = event.order_id.as_deref().unwrap_or(&event.event_id);
    row.insert("orderId".into(), Value::String(order.to_string()));
    // With a braid only the braid is sent: braid rows with identifiers are refused by some
    // conversion actions, and the braid alone is what matches them.
    let braid = matches!(click, Some(("gbraid" | "wbraid", _)));
    if !braid {
        let emails = event
            .user
            .google_emails
            .iter()
            .map(|h| json!({"hashedEmail": h.as_str(), "userIdentifierSource": "FIRST_PARTY"}));
        let phones = event.user.phones_e164.iter().map(
            |h| json!({"hashedPhoneNumber": h.as_str(), "userIdentifierSource": "FIRST_PARTY"}),
        );
        let ids: Vec<Value> = emails.chain(phones).take(MAX_IDENTIFIERS).collect();
        keys.em = ids.iter().any(|i| i.get("hashedEmail").is_some());
        keys.ph = ids.iter().any(|i| i.get("hashedPhoneNumber").is_some());
        if !ids.is_empty() {
            row.insert("userIdentifiers".into(), Value::Array(ids));
        }
    }
    (Value::Object(row), keys)
}

/// `{"conversions": [rows], "partialFailure": true}` from rows encoded once. `partialFailure`
/// is required to be true: without it one bad row fails the whole request.
pub fn request_body(rows: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::with_capacity(rows.iter().map(|r| r.len() + 1).sum::<usize>() + 48);
    body.extend_from_slice(b"{\"conversions\":[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(r);
    }
    body.extend_from_slice(b"],\"partialFailure\":true}");
    body
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pii::Normalizer;
    use crate::platforms::event::UserIdentity;

    fn event(user: UserIdentity) -> ConversionEvent {
        ConversionEvent {
            event_id: "ev-1".into(),
            event: crate::catalog::resolve(Some("Purchase"), None).unwrap(),
            name: "Purchase".into(),
            event_time: DateTime::parse_from_rfc3339("2026-11-24T17:05:09.750Z")
                .unwrap()
                .with_timezone(&Utc),
            value: Some(1500.0),
            currency: Some("BRL".into()),
            stage_name: None,
            funnel_category: None,
            campaign_name: None,
            user: Arc::new(user),
            ad: None,
            order_id: Some("o-8812".into()),
        }
    }

    #[test]
    fn a_gclid_row_has_the_action_the_date_the_order_and_the_identifiers() {
        let n = Normalizer::new("BR").unwrap();
        let user = UserIdentity {
            google_emails: vec![n.google_email(" John.Smith+ads@Gmail.com ").unwrap()],
            phones_e164: vec![n.phone_e164("+55 11 98765-4321").unwrap()],
            gclid: Some("Cj0KCQ".into()),
            wbraid: Some("wb".into()),
            ..UserIdentity::default()
        };
        let (row, keys) = build_conversion(&event(user), "1234567890", "987", None);
        assert_eq!(row["gclid"], "Cj0KCQ");
        assert!(row.get("wbraid").is_none(), "one click id");
        assert_eq!(
            row["conversionAction"],
            "customers/1234567890/conversionActions/987"
        );
        assert_eq!(row["conversionDateTime"], "2026-11-24 17:05:09+00:00");
        assert_eq!(row["orderId"], "o-8812");
        assert_eq!(row["conversionValue"], 1500.0);
        assert_eq!(row["currencyCode"], "BRL");
        let ids = row["userIdentifiers"].as_array().unwrap();
        assert_eq!(
            ids[0]["hashedEmail"],
            crate::pii::sha256_hex("johnsmith@gmail.com")
        );
        assert_eq!(
            ids[1]["hashedPhoneNumber"],
            crate::pii::sha256_hex("+5511987654321")
        );
        assert!(keys.click_id && keys.em && keys.ph);
        assert!(
            row.get("consent").is_none(),
            "no consent unless the row sets it"
        );
        assert_eq!(Consent::parse(" granted"), Some(Consent::Granted));
        assert_eq!(Consent::parse("UNSPECIFIED"), None);
    }

    #[test]
    fn a_braid_row_carries_one_braid_and_no_identifiers() {
        let n = Normalizer::new("BR").unwrap();
        let user = UserIdentity {
            google_emails: vec![n.google_email("a@b.com").unwrap()],
            gbraid: Some("gb".into()),
            wbraid: Some("wb".into()),
            ..UserIdentity::default()
        };
        let (row, _) = build_conversion(&event(user), "1", "2", Some(Consent::Denied));
        assert_eq!(row["gbraid"], "gb");
        assert!(row.get("wbraid").is_none());
        assert!(row.get("userIdentifiers").is_none());
        assert_eq!(row["consent"], json!({"adUserData": "DENIED"}));
    }

    #[test]
    fn without_a_click_id_the_row_is_an_enhanced_conversion_for_leads() {
        let n = Normalizer::new("BR").unwrap();
        let mut e = event(UserIdentity {
            google_emails: vec![n.google_email("Lead@Example.com").unwrap()],
            ..UserIdentity::default()
        });
        e.order_id = None;
        assert!(matchable(&e));
        let (row, _) = build_conversion(&e, "1", "2", None);
        assert!(row.get("gclid").is_none());
        assert_eq!(
            row["orderId"], "ev-1",
            "the event id when there is no order id"
        );
        assert_eq!(row["userIdentifiers"].as_array().unwrap().len(), 1);
        assert!(!matchable(&event(UserIdentity::default())));
    }

    #[test]
    fn the_body_sets_partial_failure_and_keeps_the_rows() {
        let body = request_body(&[b"{\"a\":1}", b"{\"b\":2}"]);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["partialFailure"], true);
        assert_eq!(v["conversions"].as_array().unwrap().len(), 2);
        assert_eq!(customer_digits("123-456-7890"), "1234567890");
    }
}
