//! Request builder: a [`ConversionEvent`] becomes one Events API 2.0 event (`data[i]`), and
//! pre-serialized events become a request body (*events-api*, *standard-events-parameters*).
//!
//! TikTok's hashing rules: SHA-256, lowercase hex, of the email trimmed and lowercased (no Gmail
//! rule), of the phone in E.164 *with* `+`, and of the external id; a value that already is a
//! digest is sent as it is, never hashed twice. `ip` and `user_agent` go unhashed, `ttclid`
//! verbatim.

use serde_json::{json, Map, Value};

use super::config::EventSource;
use crate::match_quality::MatchKeys;
use crate::platforms::event::ConversionEvent;

/// The event JSON and which match keys it carries.
pub fn build_event(
    event: &ConversionEvent,
    source: EventSource,
    lead_event_source: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> (Value, MatchKeys) {
    let user = &event.user;
    let mut keys = MatchKeys::default();
    let mut u = Map::new();
    let list = crate::pii::Hashed::json_array;
    if !user.emails.is_empty() {
        u.insert("email".into(), list(&user.emails));
        keys.em = true;
    }
    if !user.phones_e164.is_empty() {
        u.insert("phone".into(), list(&user.phones_e164));
        keys.ph = true;
    }
    if let Some(h) = &user.external_id {
        u.insert("external_id".into(), list(std::slice::from_ref(h)));
        keys.external_id = true;
    }
    if let Some(clid) = &user.ttclid {
        u.insert("ttclid".into(), Value::String(clid.clone()));
        keys.click_id = true;
    }
    if let Some(ip) = &user.client_ip {
        u.insert("ip".into(), Value::String(ip.clone()));
        keys.client_ip = true;
    }
    if let Some(ua) = &user.user_agent {
        u.insert("user_agent".into(), Value::String(ua.clone()));
        keys.user_agent = true;
    }

    let mut props = Map::new();
    if let Some(v) = event.value {
        props.insert("value".into(), json!(round_cents(v)));
    }
    if let Some(c) = &event.currency {
        props.insert("currency".into(), Value::String(c.clone()));
    }

    // Clamp a future time (clock skew) to now, as for every platform.
    let event_time = event.event_time.min(now).timestamp();
    let mut ev = Map::new();
    ev.insert("event".into(), Value::String(event.name.clone()));
    ev.insert("event_time".into(), json!(event_time));
    // A string: TikTok refuses a numeric event_id (40002).
    ev.insert("event_id".into(), Value::String(event.event_id.clone()));
    ev.insert("user".into(), Value::Object(u));
    if !props.is_empty() {
        ev.insert("properties".into(), Value::Object(props));
    }
    // `lead` belongs to CRM event sets only.
    if source == EventSource::Crm {
        let mut lead = Map::new();
        if let Some(id) = &user.tiktok_lead_id {
            lead.insert("lead_id".into(), Value::String(id.clone()));
            keys.lead_id = true;
        }
        if !lead.is_empty() {
            lead.insert(
                "lead_event_source".into(),
                Value::String(lead_event_source.to_string()),
            );
            ev.insert("lead".into(), Value::Object(lead));
        }
    }
    (Value::Object(ev), keys)
}

/// Money with two decimals, as the CRM stores it.
fn round_cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `{"event_source":…,"event_source_id":…,"data":[…],"test_event_code":…}` from pre-serialized
/// events, so splitting a refused batch never re-serializes them.
pub fn request_body(
    source: EventSource,
    source_id: &str,
    test_event_code: Option<&str>,
    events: &[&[u8]],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 160);
    body.extend_from_slice(b"{\"event_source\":");
    body.extend_from_slice(Value::String(source.as_str().into()).to_string().as_bytes());
    body.extend_from_slice(b",\"event_source_id\":");
    body.extend_from_slice(Value::String(source_id.into()).to_string().as_bytes());
    if let Some(code) = test_event_code.map(str::trim).filter(|c| !c.is_empty()) {
        body.extend_from_slice(b",\"test_event_code\":");
        body.extend_from_slice(Value::String(code.into()).to_string().as_bytes());
    }
    body.extend_from_slice(b",\"data\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(b"]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use crate::pii::{sha256_hex, Normalizer};
    use crate::platforms::event::UserIdentity;
    use std::sync::Arc;

    fn event(lead_id: Option<&str>) -> ConversionEvent {
        let n = Normalizer::new("BR").unwrap();
        let user = UserIdentity {
            emails: vec![n.email(" John_Smith@Gmail.com ").unwrap()],
            phones: vec![n.phone("+55 (11) 98765-4321").unwrap()],
            phones_e164: vec![n.phone_e164("+55 (11) 98765-4321").unwrap()],
            external_id: Some(n.external_id("42").unwrap()),
            client_ip: Some("2001:db8::1".into()),
            ttclid: Some("E.C.P.abc".into()),
            tiktok_lead_id: lead_id.map(str::to_string),
            ..UserIdentity::default()
        };
        ConversionEvent {
            event_id: "e1".into(),
            event: catalog::resolve(Some("Purchase"), None).unwrap(),
            name: "Purchase".into(),
            event_time: chrono::Utc::now() - chrono::Duration::minutes(5),
            value: Some(1499.899999),
            currency: Some("BRL".into()),
            stage_name: Some("Ganhou".into()),
            funnel_category: None,
            campaign_name: None,
            user: Arc::new(user),
            ad: None,
            order_id: None,
        }
    }

    #[test]
    fn builds_the_event_with_tiktoks_hashing() {
        let ev = event(Some("7299"));
        let (v, keys) = build_event(&ev, EventSource::Crm, "stagecast", chrono::Utc::now());
        assert_eq!(v["event"], "Purchase");
        assert_eq!(v["event_id"], "e1");
        assert_eq!(v["event_time"], json!(ev.event_time.timestamp()));
        // Email: trimmed and lowercased, no Gmail rule.
        assert_eq!(v["user"]["email"][0], sha256_hex("john_smith@gmail.com"));
        // Phone: E.164 with the plus sign.
        assert_eq!(v["user"]["phone"][0], sha256_hex("+5511987654321"));
        assert_ne!(v["user"]["phone"][0], sha256_hex("5511987654321"));
        assert_eq!(v["user"]["external_id"][0], sha256_hex("42"));
        assert_eq!(v["user"]["ttclid"], "E.C.P.abc");
        assert_eq!(v["user"]["ip"], "2001:db8::1");
        assert_eq!(v["properties"]["value"], json!(1499.9));
        assert_eq!(v["properties"]["currency"], "BRL");
        assert_eq!(v["lead"]["lead_id"], "7299");
        assert_eq!(v["lead"]["lead_event_source"], "stagecast");
        assert!(keys.em && keys.ph && keys.external_id && keys.click_id && keys.lead_id);
        // PII never appears raw.
        let text = v.to_string();
        assert!(!text.contains("john") && !text.contains("98765"));
    }

    #[test]
    fn web_pixels_get_no_lead_and_events_without_lead_id_none() {
        let (web, _) = build_event(
            &event(Some("7299")),
            EventSource::Web,
            "x",
            chrono::Utc::now(),
        );
        assert!(web.get("lead").is_none());
        let (crm, _) = build_event(&event(None), EventSource::Crm, "x", chrono::Utc::now());
        assert!(crm.get("lead").is_none());
    }

    #[test]
    fn future_times_are_clamped_and_the_body_is_json() {
        let mut ev = event(None);
        let now = chrono::Utc::now();
        ev.event_time = now + chrono::Duration::hours(1);
        let (v, _) = build_event(&ev, EventSource::Crm, "x", now);
        assert_eq!(v["event_time"], json!(now.timestamp()));
        let e = v.to_string().into_bytes();
        let body = request_body(EventSource::Crm, "C\"1", Some("TEST1"), &[&e, &e]);
        let b: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(b["event_source"], "crm");
        assert_eq!(b["event_source_id"], "C\"1");
        assert_eq!(b["test_event_code"], "TEST1");
        assert_eq!(b["data"].as_array().unwrap().len(), 2);
        let b: Value =
            serde_json::from_slice(&request_body(EventSource::Web, "P", None, &[&e])).unwrap();
        assert!(b.get("test_event_code").is_none());
    }
}
