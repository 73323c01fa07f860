//! Who the event is about: customer fields and contacts, normalised and hashed. Invalid
//! values (an email without @, a phone that cannot be parsed) are dropped from the event and
//! counted; they never fail the event and are never logged.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::pii::{br_mobile_variant, split_full_name, Hashed, Normalizer, PiiError};
use crate::platforms::event::{AdInfo, UserIdentity};
use crate::store::StageChangeContext;

/// At most this many emails/phones per event: enough for every contact a CRM keeps, small
/// enough to keep payloads bounded.
const MAX_PER_KEY: usize = 5;
const MAX_USER_AGENT: usize = 512;
/// A click id longer than this is corrupted data, not an id.
const MAX_CLICK_ID: usize = 512;

/// `now`: when the event is built; the creation time of an `fbc` whose capture time the CRM
/// did not store (never the customer's creation time, which may precede the click).
pub fn build(
    ctx: &StageChangeContext,
    normalizer: &Normalizer,
    now: DateTime<Utc>,
) -> UserIdentity {
    let mut id = UserIdentity::default();
    let contacts = contacts(ctx.contacts.as_ref());
    for raw in ctx.email.iter().map(String::as_str).chain(contacts.emails) {
        push_unique(&mut id.emails, normalizer.email(raw), "em");
        if let Ok(h) = normalizer.google_email(raw) {
            if id.google_emails.len() < MAX_PER_KEY && !id.google_emails.contains(&h) {
                id.google_emails.push(h);
            }
        }
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
        // A Brazilian mobile stored without its 9th digit (as some WhatsApp ids are) is also
        // sent with it: which spelling Meta knows the person by is not derivable
        // (docs/events.md, "Brazilian mobiles").
        if let Some(with_nine) = normalizer
            .phone_digits(raw)
            .ok()
            .filter(|d| d.len() == 12)
            .and_then(|d| br_mobile_variant(&d))
        {
            push_unique(
                &mut id.phones,
                normalizer.phone(&format!("+{with_nine}")),
                "ph",
            );
        }
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
    // Meta asks for country on every event; a customer without one is taken to live in the
    // tenant's region (the region national phone numbers are read in).
    id.country = ctx
        .country
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| ok(normalizer.country(v), "country"))
        .or_else(|| ok(normalizer.country(normalizer.default_region()), "country"));
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
    id.fbc = ctx
        .fbclid
        .as_deref()
        .and_then(|fbclid| fbc(fbclid, ctx.fbclid_at.unwrap_or(now)));
    id.ctwa_clid = metadata_str(ctx.utm_metadata.as_ref(), "ctwa_clid");
    let optional = ctx.optional.as_ref();
    id.fbp = metadata_str(optional, "fbp").and_then(|v| {
        let ok = is_fb_cookie(&v);
        if !ok {
            metrics::counter!("stagecast_pii_rejected_total", "field" => "fbp").increment(1);
        }
        ok.then_some(v)
    });
    id.date_of_birth =
        metadata_str(optional, "birth_date").and_then(|v| ok(normalizer.date_of_birth(&v), "db"));
    id.gender = metadata_str(optional, "gender").and_then(|v| ok(normalizer.gender(&v), "ge"));
    id.lead_id = metadata_str(optional, "lead_id").and_then(|v| {
        let lead = lead_id(&v);
        if lead.is_none() {
            metrics::counter!("stagecast_pii_rejected_total", "field" => "lead_id").increment(1);
        }
        lead
    });
    id.ttclid = ctx
        .ttclid
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= MAX_CLICK_ID)
        .map(str::to_string);
    id.tiktok_lead_id = metadata_str(ctx.utm_metadata.as_ref(), "tiktok_lead_id");
    let click_id = |key| {
        // The customer's own column first (`customers.gclid`), then the first-touch ad data.
        metadata_str(optional, key)
            .or_else(|| metadata_str(ctx.utm_metadata.as_ref(), key))
            .filter(|c| c.len() <= MAX_CLICK_ID)
    };
    id.gclid = click_id("gclid");
    id.gbraid = click_id("gbraid");
    id.wbraid = click_id("wbraid");
    id
}

/// A Lead Ads id: 15 to 17 digits (Meta's Conversion Leads payload specification).
pub fn lead_id(raw: &str) -> Option<u64> {
    let t = raw.trim();
    ((15..=17).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t.parse().ok())
        .flatten()
}

/// `fb.<subdomain index>.<creation time, ms>.<payload>[.<appendix>]`, the `_fbp` / `_fbc`
/// cookie format (Meta's fbp-and-fbc page); anything else is not a cookie value and is not sent.
pub fn is_fb_cookie(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (4..=5).contains(&parts.len())
        && parts[0] == "fb"
        && parts[1].len() == 1
        && parts[1].bytes().all(|b| b.is_ascii_digit())
        && parts[2].len() == 13
        && parts[2].bytes().all(|b| b.is_ascii_digit())
        && parts[3..].iter().all(|p| !p.is_empty())
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

    fn normalizer() -> Normalizer {
        Normalizer::new("BR").unwrap()
    }

    #[test]
    fn country_defaults_to_the_tenant_region() {
        let n = normalizer();
        let now = Utc::now();
        let none = build(&StageChangeContext::default(), &n, now);
        assert_eq!(none.country, Some(n.country("br").unwrap()));
        let ctx = StageChangeContext {
            country: Some("Portugal".into()),
            ..StageChangeContext::default()
        };
        assert_eq!(build(&ctx, &n, now).country, Some(n.country("pt").unwrap()));
        let us = Normalizer::new("US").unwrap();
        assert_eq!(
            build(&StageChangeContext::default(), &us, now).country,
            Some(us.country("us").unwrap())
        );
    }

    #[test]
    fn brazilian_mobile_without_the_ninth_digit_sends_both_spellings() {
        let n = normalizer();
        let ctx = StageChangeContext {
            phone: Some("+55 11 8765-4321".into()),
            ..StageChangeContext::default()
        };
        let id = build(&ctx, &n, Utc::now());
        let hashes: Vec<&str> = id.phones.iter().map(Hashed::as_str).collect();
        // 551187654321 and 5511987654321 (the test vectors of Meta's phone normalisation).
        assert_eq!(
            hashes,
            [
                "9d00682b6cd3bf3cfdfcb37f11706e1183d9e9aa55e88e775efdd5c2d1581efe",
                "029c7290f14c4516673508635f0519db95f7daf42057fd0e4ad1de84c5408a66"
            ]
        );
        // Stored with the 9th digit, or a landline: one spelling only.
        for phone in ["+55 11 98765-4321", "+55 11 3456-7890"] {
            let ctx = StageChangeContext {
                phone: Some(phone.into()),
                ..StageChangeContext::default()
            };
            assert_eq!(build(&ctx, &n, Utc::now()).phones.len(), 1, "{phone}");
        }
    }

    #[test]
    fn fbc_creation_time_is_the_capture_else_now_never_the_customer_creation() {
        let n = normalizer();
        let created = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let captured = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let now = DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut ctx = StageChangeContext {
            fbclid: Some("IwAR2F4".into()),
            fbclid_at: Some(captured),
            customer_created_at: Some(created),
            ..StageChangeContext::default()
        };
        assert_eq!(
            build(&ctx, &n, now).fbc.as_deref(),
            Some("fb.1.1772366400000.IwAR2F4")
        );
        ctx.fbclid_at = None;
        assert_eq!(
            build(&ctx, &n, now).fbc,
            Some(format!("fb.1.{}.IwAR2F4", now.timestamp_millis()))
        );
    }

    #[test]
    fn optional_columns_give_fbp_db_ge_and_lead_id() {
        let n = normalizer();
        let ctx = StageChangeContext {
            optional: Some(serde_json::json!({
                "fbp": "fb.1.1596403881668.1116446470",
                "birth_date": "1997-02-16",
                "gender": "Feminino",
                "lead_id": "1234567890123456"
            })),
            ..StageChangeContext::default()
        };
        let id = build(&ctx, &n, Utc::now());
        assert_eq!(id.fbp.as_deref(), Some("fb.1.1596403881668.1116446470"));
        // Meta's own example: 2/16/1997 → 19970216.
        assert_eq!(
            id.date_of_birth.as_ref().map(Hashed::as_str),
            Some("01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c")
        );
        assert_eq!(id.gender, Some(n.gender("f").unwrap()));
        assert_eq!(id.lead_id, Some(1_234_567_890_123_456));

        // Values that are not what Meta takes are dropped, never sent.
        let bad = StageChangeContext {
            optional: Some(serde_json::json!({
                "fbp": "1116446470", "birth_date": "31/31/1990", "gender": "x", "lead_id": "12345"
            })),
            ..StageChangeContext::default()
        };
        let id = build(&bad, &n, Utc::now());
        assert!(id.fbp.is_none() && id.date_of_birth.is_none());
        assert!(id.gender.is_none() && id.lead_id.is_none());
        // A CRM without the optional columns.
        let id = build(&StageChangeContext::default(), &n, Utc::now());
        assert!(id.fbp.is_none() && id.lead_id.is_none());
    }

    #[test]
    fn contacts_by_kind() {
        let v = serde_json::json!([{"kind": "WhatsApp", "value": "a"}, {"kind": "email", "value": "b"}, {"kind": "fax", "value": "c"}, {"x": 1}]);
        let c = contacts(Some(&v));
        assert_eq!(c.phones, vec!["a"]);
        assert_eq!(c.emails, vec!["b"]);
    }
}
