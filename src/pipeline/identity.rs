//! Who the event is about: customer fields and contacts, normalised and hashed. Invalid
//! values (an email without @, a phone that cannot be parsed) are dropped from the event and
//! counted; they never fail the event and are never logged.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::pii::{split_full_name, Hashed, Normalizer, PiiError};
use crate::platforms::event::{AdInfo, UserIdentity};
use crate::store::StageChangeContext;

/// At most this many emails/phones per event: enough for every contact a CRM keeps, small
/// enough to keep payloads bounded.
const MAX_PER_KEY: usize = 5;
const MAX_USER_AGENT: usize = 512;
/// A click id longer than this is corrupted data, not an id.
const MAX_CLICK_ID: usize = 512;

pub fn build(
    ctx: &StageChangeContext,
    normalizer: &Normalizer,
    fallback_time: DateTime<Utc>,
) -> UserIdentity {
    let mut id = UserIdentity::default();
    let contacts = contacts(ctx.contacts.as_ref());
    for raw in ctx.email.iter().map(String::as_str).chain(contacts.emails) {
        push_unique(&mut id.emails, normalizer.email(raw), "em");
    }
    for raw in ctx.phone.iter().map(String::as_str).chain(contacts.phones) {
        let hashed = normalizer.phone(raw);
        // The same number in TikTok's form; an invalid one is counted once, below.
        if hashed.is_ok() && id.phones_e164.len() < MAX_PER_KEY {
            if let Ok(h) = normalizer.phone_e164(raw) {
                if !id.phones_e164.contains(&h) {
                    id.phones_e164.push(h);
                }
            }
        }
        push_unique(&mut id.phones, hashed, "ph");
    }
    if let Some(name) = ctx.name.as_deref() {
        let (first, last) = split_full_name(name);
        id.first_name = first.and_then(|f| ok(normalizer.first_name(&f), "fn"));
        id.last_name = last.and_then(|l| ok(normalizer.last_name(&l), "ln"));
    }
    id.external_id = ctx
        .customer_id
        .and_then(|c| ok(normalizer.external_id(&c.to_string()), "external_id"));
    id.city = ctx
        .city
        .as_deref()
        .and_then(|v| ok(normalizer.city(v), "ct"));
    id.state = ctx
        .state
        .as_deref()
        .and_then(|v| ok(normalizer.state(v), "st"));
    id.zip = ctx.zip.as_deref().and_then(|v| ok(normalizer.zip(v), "zp"));
    id.country = ctx
        .country
        .as_deref()
        .and_then(|v| ok(normalizer.country(v), "country"));
    id.client_ip = ctx
        .client_ip
        .as_deref()
        .map(str::trim)
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| ip.to_string());
    id.user_agent = ctx
        .client_user_agent
        .as_deref()
        .map(str::trim)
        .filter(|ua| !ua.is_empty())
        .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
    id.fbc = ctx.fbclid.as_deref().and_then(|fbclid| {
        let seen = ctx
            .fbclid_at
            .or(ctx.customer_created_at)
            .unwrap_or(fallback_time);
        fbc(fbclid, seen)
    });
    id.ctwa_clid = metadata_str(ctx.utm_metadata.as_ref(), "ctwa_clid");
    id.ttclid = ctx
        .ttclid
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= MAX_CLICK_ID)
        .map(str::to_string);
    id.tiktok_lead_id = metadata_str(ctx.utm_metadata.as_ref(), "tiktok_lead_id");
    id
}

pub fn ad_info(ctx: &StageChangeContext) -> Option<AdInfo> {
    let m = ctx.utm_metadata.as_ref()?;
    let ad = AdInfo {
        source_id: metadata_str(Some(m), "source_id"),
        source_type: metadata_str(Some(m), "source_type"),
        title: metadata_str(Some(m), "ad_title"),
        body: metadata_str(Some(m), "ad_body").map(|b| b.chars().take(300).collect()),
        source_url: metadata_str(Some(m), "source_url"),
    };
    (ad.source_id.is_some() || ad.title.is_some()).then_some(ad)
}

/// `fb.1.<first seen, ms>.<fbclid>` (Meta's fbp-and-fbc page, docs/sandbox.md "Sources"):
/// subdomain index 1 when built server-side;
/// the fbclid is kept verbatim (case-sensitive). A full `_fbc` cookie value passes through.
pub fn fbc(fbclid: &str, seen: DateTime<Utc>) -> Option<String> {
    let fbclid = fbclid.trim();
    if fbclid.is_empty() {
        return None;
    }
    if fbclid.starts_with("fb.") && fbclid.split('.').count() >= 4 {
        return Some(fbclid.to_string());
    }
    Some(format!("fb.1.{}.{fbclid}", seen.timestamp_millis()))
}

fn metadata_str(m: Option<&Value>, key: &str) -> Option<String> {
    m?.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

struct Contacts<'a> {
    emails: Vec<&'a str>,
    phones: Vec<&'a str>,
}

/// `customer_contacts` rows as aggregated by the context query; kinds as CRMs name them.
fn contacts(v: Option<&Value>) -> Contacts<'_> {
    let mut out = Contacts {
        emails: Vec::new(),
        phones: Vec::new(),
    };
    let Some(Value::Array(items)) = v else {
        return out;
    };
    for item in items {
        let (Some(kind), Some(value)) = (
            item.get("kind").and_then(Value::as_str),
            item.get("value").and_then(Value::as_str),
        ) else {
            continue;
        };
        match kind.trim().to_ascii_lowercase().as_str() {
            "email" | "e-mail" | "mail" => out.emails.push(value),
            "phone" | "whatsapp" | "mobile" | "cell" | "celular" | "telefone" | "tel" | "wa" => {
                out.phones.push(value)
            }
            _ => {}
        }
    }
    out
}

fn ok(r: Result<Hashed, PiiError>, field: &'static str) -> Option<Hashed> {
    match r {
        Ok(h) => Some(h),
        Err(e) => {
            // The error text never contains the raw value (pii module contract).
            metrics::counter!("stagecast_pii_rejected_total", "field" => field).increment(1);
            tracing::debug!(field, error = %e, "dropped an invalid identifier");
            None
        }
    }
}

fn push_unique(list: &mut Vec<Hashed>, r: Result<Hashed, PiiError>, field: &'static str) {
    if list.len() >= MAX_PER_KEY {
        return;
    }
    if let Some(h) = ok(r, field) {
        if !list.iter().any(|x| x.as_str() == h.as_str()) {
            list.push(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fbc_format_and_passthrough() {
        let seen = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            fbc(
                "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk",
                seen
            )
            .unwrap(),
            "fb.1.1772366400000.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
        );
        assert_eq!(
            fbc("fb.1.1596403881668.AbC.Ag", seen).unwrap(),
            "fb.1.1596403881668.AbC.Ag"
        );
        assert_eq!(fbc("  ", seen), None);
    }

    #[test]
    fn contacts_by_kind() {
        let v = serde_json::json!([{"kind": "WhatsApp", "value": "a"}, {"kind": "email", "value": "b"}, {"kind": "fax", "value": "c"}, {"x": 1}]);
        let c = contacts(Some(&v));
        assert_eq!(c.phones, vec!["a"]);
        assert_eq!(c.emails, vec!["b"]);
    }
}
