//! The platform-neutral conversion event: what happened, to whom (hashed), and what it was
//! worth. Platform request builders turn it into their own wire format.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::catalog::EventName;
use crate::pii::Hashed;

/// Who the event is about. Contact PII is already normalised and SHA-256 hashed; the raw
/// values never leave the identity builder.
#[derive(Debug, Clone, Default)]
pub struct UserIdentity {
    pub emails: Vec<Hashed>,
    /// Google's form of the same emails (Gmail dots and `+tags` removed), hashed.
    pub google_emails: Vec<Hashed>,
    /// Meta's form: E.164 digits without `+`, hashed.
    pub phones: Vec<Hashed>,
    /// TikTok's form: E.164 with `+`, hashed (the same numbers as `phones`).
    pub phones_e164: Vec<Hashed>,
    pub first_name: Option<Hashed>,
    pub last_name: Option<Hashed>,
    pub external_id: Option<Hashed>,
    pub city: Option<Hashed>,
    pub state: Option<Hashed>,
    pub zip: Option<Hashed>,
    pub country: Option<Hashed>,
    /// Sent unhashed, as Meta requires.
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// `fb.1.<ms>.<fbclid>` built from the customer's fbclid.
    pub fbc: Option<String>,
    /// Click-to-WhatsApp click id from the first-touch ad data, verbatim.
    pub ctwa_clid: Option<String>,
    /// The browser's `_fbp` cookie as the CRM captured it, verbatim (never fabricated).
    pub fbp: Option<String>,
    pub date_of_birth: Option<Hashed>,
    pub gender: Option<Hashed>,
    /// Meta Lead Ads id (15-17 digits), sent unhashed as an integer.
    pub lead_id: Option<u64>,
    /// TikTok's click id (`customers.ttclid`), verbatim.
    pub ttclid: Option<String>,
    /// TikTok's lead id (`utm_metadata.tiktok_lead_id`), for leads from TikTok lead generation.
    pub tiktok_lead_id: Option<String>,
    /// Google Ads click ids (`customers.gclid`, `gbraid`, `wbraid` when the CRM has those
    /// columns, else the same keys of `utm_metadata`), verbatim.
    pub gclid: Option<String>,
    pub gbraid: Option<String>,
    pub wbraid: Option<String>,
}

/// First-touch ad data, for `custom_data` (ad copy, not PII).
#[derive(Debug, Clone, Default)]
pub struct AdInfo {
    pub source_id: Option<String>,
    pub source_type: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub source_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ConversionEvent {
    /// Deterministic: identical on every retry of the same stage change and destination.
    pub event_id: String,
    /// As the stage config names it (the catalog's name, or a custom one).
    pub event: EventName,
    /// The platform's name for it (`AdPlatform::event_name`).
    pub name: String,
    /// When the stage changed (never the send time).
    pub event_time: DateTime<Utc>,
    pub value: Option<f64>,
    pub currency: Option<String>,
    pub stage_name: Option<String>,
    pub funnel_category: Option<String>,
    pub campaign_name: Option<String>,
    /// For a Purchase: the stage change's own id ([`order_id`]), the same for every destination
    /// and retry, so an order is counted once.
    pub order_id: Option<String>,
    pub user: Arc<UserIdentity>,
    pub ad: Option<Arc<AdInfo>>,
}

/// `sha256("stagecast:v1|<customer>|<stage>|<changed_at µs>|<platform>|<pixel>|<event>")`, hex:
/// the identity of the stage change (who, to which stage, when) and of the destination. It is
/// fixed when the change happens, so a retry, a replay, a re-send after a crash, or the same
/// change queued twice carries the same id, and the platform deduplicates it.
pub fn event_id(
    customer_id: i64,
    to_stage_id: i64,
    changed_at: DateTime<Utc>,
    platform: &str,
    pixel_id: &str,
    event_name: &str,
) -> String {
    crate::pii::sha256_hex(&format!(
        "stagecast:v1|{customer_id}|{to_stage_id}|{}|{platform}|{pixel_id}|{event_name}",
        changed_at.timestamp_micros()
    ))
}

/// `sha256("stagecast:order|<customer>|<stage>|<changed_at µs>")`, first 32 hex digits: the
/// order a Purchase stage change stands for. Deterministic from the stage change alone (not
/// the destination), opaque, and free of PII.
pub fn order_id(customer_id: i64, to_stage_id: i64, changed_at: DateTime<Utc>) -> String {
    let mut id = crate::pii::sha256_hex(&format!(
        "stagecast:order|{customer_id}|{to_stage_id}|{}",
        changed_at.timestamp_micros()
    ));
    id.truncate(32);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_is_deterministic_and_distinguishes_destinations() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = event_id(1, 2, t, "facebook", "111", "Purchase");
        // Another customer, or another stage, is another stage change.
        assert_ne!(a, event_id(1, 3, t, "facebook", "111", "Purchase"));
        assert_eq!(a, event_id(1, 2, t, "facebook", "111", "Purchase"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, event_id(1, 2, t, "facebook", "222", "Purchase"));
        assert_ne!(a, event_id(1, 2, t, "facebook", "111", "Lead"));
        assert_ne!(a, event_id(3, 2, t, "facebook", "111", "Purchase"));
        let later = t + chrono::Duration::microseconds(1);
        assert_ne!(a, event_id(1, 2, later, "facebook", "111", "Purchase"));
    }

    #[test]
    fn order_id_is_the_stage_change_not_the_destination() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let o = order_id(1, 2, t);
        assert_eq!(o, order_id(1, 2, t));
        assert_eq!(o.len(), 32);
        assert_ne!(o, order_id(1, 3, t));
        assert_ne!(o, order_id(1, 2, t + chrono::Duration::microseconds(1)));
    }
}
