//! Request builder: a [`ConversionEvent`] becomes one CAPI server event (*server-event*,
//! *customer-information-parameters*, *fbp-and-fbc*, *business-messaging*).

use serde_json::{json, Map, Value};

use super::config::ActionSource;
use crate::catalog::{self, EventKind, EventName};
use crate::match_quality::MatchKeys;
use crate::platforms::event::ConversionEvent;

/// How the event is attributed.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub action_source: ActionSource,
    /// `whatsapp` for business messaging.
    pub messaging_channel: Option<&'static str>,
    pub whatsapp_business_account_id: Option<String>,
    /// The name sent (business messaging has its own names, e.g. Lead → LeadSubmitted).
    pub event_name: String,
}

/// How a pixel wants events routed (`pixels.messaging_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessagingMode {
    /// Business messaging when the customer has a ctwa_clid, the pixel a WABA id and the event a
    /// business-messaging name.
    #[default]
    Auto,
    /// Always the pixel's action source.
    Never,
    /// Business messaging whenever the customer has a ctwa_clid and the pixel a WABA id, also
    /// for events without a business-messaging name (sent unchanged). Without a click id the
    /// event goes with the pixel's own action source: Meta refuses business messaging without
    /// `ctwa_clid` (*business-messaging*).
    Always,
}

impl MessagingMode {
    pub fn parse(s: Option<&str>) -> MessagingMode {
        match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("never") | Some("off") | Some("pixel") => MessagingMode::Never,
            Some("always") | Some("force") => MessagingMode::Always,
            _ => MessagingMode::Auto,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessagingMode::Auto => "auto",
            MessagingMode::Never => "never",
            MessagingMode::Always => "always",
        }
    }
}

/// Why an event cannot be sent the way it is routed (raised by `Meta::check` as an alert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingRefusal {
    /// A business-messaging-only name (`QualifiedLead`, `OrderCreated` …) on another action
    /// source, where Meta does not know it; with the standard name to configure instead.
    BusinessMessagingOnly { suggestion: &'static str },
    /// `website` / `app`: Meta requires `event_source_url` + `client_user_agent` / `app_data`,
    /// which stagecast does not build from CRM data.
    UnsupportedActionSource(ActionSource),
}

/// Whether stagecast can send events with this action source at all.
pub fn supported_action_source(source: ActionSource) -> bool {
    !matches!(source, ActionSource::Website | ActionSource::App)
}

/// The routing decision on its own (docs/events.md, "Routing table", pins it): the action
/// source and the name sent, or why the event cannot be sent.
pub fn decide_routing(
    mode: MessagingMode,
    pixel_action_source: ActionSource,
    has_waba: bool,
    has_click: bool,
    event: &EventName,
) -> Result<(ActionSource, String), RoutingRefusal> {
    // Meta lists the events business messaging supports (*business-messaging*); in `auto` mode an
    // event without a business-messaging name (e.g. Schedule) keeps the pixel's own source.
    let has_bm_name = event.business_messaging_name().is_some();
    let business_messaging = has_waba
        && has_click
        && match mode {
            MessagingMode::Never => false,
            MessagingMode::Auto => has_bm_name,
            MessagingMode::Always => true,
        };
    if business_messaging {
        let name = event.business_messaging_name().unwrap_or(event.as_str());
        return Ok((ActionSource::BusinessMessaging, name.to_string()));
    }
    if event.kind() == EventKind::BusinessMessagingOnly {
        return Err(RoutingRefusal::BusinessMessagingOnly {
            suggestion: catalog::standard_alternative(event.as_str()),
        });
    }
    if !supported_action_source(pixel_action_source) {
        return Err(RoutingRefusal::UnsupportedActionSource(pixel_action_source));
    }
    Ok((pixel_action_source, event.as_str().to_string()))
}

/// Decide the action source (docs/attribution.md, "Routing"): CTWA customers go to the WABA's
/// dataset as `business_messaging` with the business-messaging event name; everyone else gets
/// the pixel's configured source. An event [`decide_routing`] refuses is stopped by
/// `Meta::check` before it is encoded; here it keeps the pixel's source.
pub fn route(
    event: &ConversionEvent,
    pixel_action_source: ActionSource,
    waba_id: Option<&str>,
    mode: MessagingMode,
) -> Routing {
    let waba = waba_id.map(str::trim).filter(|w| !w.is_empty());
    let decided = decide_routing(
        mode,
        pixel_action_source,
        waba.is_some(),
        event.user.ctwa_clid.is_some(),
        &event.event,
    );
    match decided {
        Ok((ActionSource::BusinessMessaging, name)) => Routing {
            action_source: ActionSource::BusinessMessaging,
            messaging_channel: Some("whatsapp"),
            whatsapp_business_account_id: waba.map(str::to_string),
            event_name: name,
        },
        Ok((action_source, _)) | Err(RoutingRefusal::UnsupportedActionSource(action_source)) => {
            Routing {
                action_source,
                messaging_channel: None,
                whatsapp_business_account_id: None,
                event_name: event.name.clone(),
            }
        }
        Err(RoutingRefusal::BusinessMessagingOnly { .. }) => Routing {
            action_source: pixel_action_source,
            messaging_channel: None,
            whatsapp_business_account_id: None,
            event_name: event.name.clone(),
        },
    }
}

/// The CAPI event JSON and which match keys it carries.
pub fn build_event(
    event: &ConversionEvent,
    routing: &Routing,
    now: chrono::DateTime<chrono::Utc>,
) -> (Value, MatchKeys) {
    let user = &event.user;
    let mut ud = Map::new();
    let mut keys = MatchKeys::default();
    let list = crate::pii::Hashed::json_array;
    let one = |h: &crate::pii::Hashed| Value::Array(vec![Value::String(h.as_str().to_string())]);
    if !user.emails.is_empty() {
        ud.insert("em".into(), list(&user.emails));
        keys.em = true;
    }
    if !user.phones.is_empty() {
        ud.insert("ph".into(), list(&user.phones));
        keys.ph = true;
    }
    for (key, value, flag) in [
        ("fn", &user.first_name, &mut keys.first_name),
        ("ln", &user.last_name, &mut keys.last_name),
        ("external_id", &user.external_id, &mut keys.external_id),
        ("ct", &user.city, &mut keys.city),
        ("st", &user.state, &mut keys.state),
        ("zp", &user.zip, &mut keys.zip),
        ("country", &user.country, &mut keys.country),
        ("db", &user.date_of_birth, &mut keys.date_of_birth),
        ("ge", &user.gender, &mut keys.gender),
    ] {
        if let Some(h) = value {
            ud.insert(key.into(), one(h));
            *flag = true;
        }
    }
    if let Some(ip) = &user.client_ip {
        ud.insert("client_ip_address".into(), Value::String(ip.clone()));
        keys.client_ip = true;
    }
    if let Some(ua) = &user.user_agent {
        ud.insert("client_user_agent".into(), Value::String(ua.clone()));
        keys.user_agent = true;
    }
    if let Some(fbc) = &user.fbc {
        ud.insert("fbc".into(), Value::String(fbc.clone()));
        keys.click_id = true;
    }
    if let Some(clid) = &user.ctwa_clid {
        ud.insert("ctwa_clid".into(), Value::String(clid.clone()));
        keys.click_id = true;
    }
    // Browser id and Lead Ads id: sent unhashed, as Meta requires; `lead_id` as an integer.
    if let Some(fbp) = &user.fbp {
        // Not a match-quality key: it identifies a browser, not a person.
        ud.insert("fbp".into(), Value::String(fbp.clone()));
    }
    if let Some(lead) = user.lead_id {
        ud.insert("lead_id".into(), json!(lead));
        keys.lead_id = true;
    }
    if let Some(waba) = &routing.whatsapp_business_account_id {
        ud.insert(
            "whatsapp_business_account_id".into(),
            Value::String(waba.clone()),
        );
    }

    let mut cd = Map::new();
    if let Some(v) = event.value {
        cd.insert("value".into(), json!(round_cents(v)));
    }
    if let Some(c) = &event.currency {
        cd.insert("currency".into(), Value::String(c.clone()));
    }
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            cd.insert(k.into(), Value::String(v.clone()));
        }
    };
    put("stage_name", &event.stage_name);
    put("funnel_category", &event.funnel_category);
    put("campaign_name", &event.campaign_name);
    put("order_id", &event.order_id);
    if let Some(ad) = &event.ad {
        put("ad_id", &ad.source_id);
        put("ad_source_type", &ad.source_type);
        put("ad_title", &ad.title);
        put("ad_body", &ad.body);
        put("ad_source_url", &ad.source_url);
    }

    // Clamp a future time (clock skew) to now: Meta rejects events from the future.
    let event_time = event.event_time.min(now).timestamp();
    let mut ev = Map::new();
    ev.insert(
        "event_name".into(),
        Value::String(routing.event_name.clone()),
    );
    ev.insert("event_time".into(), json!(event_time));
    ev.insert("event_id".into(), Value::String(event.event_id.clone()));
    ev.insert(
        "action_source".into(),
        Value::String(routing.action_source.as_str().into()),
    );
    if let Some(channel) = routing.messaging_channel {
        ev.insert("messaging_channel".into(), Value::String(channel.into()));
    }
    ev.insert("user_data".into(), Value::Object(ud));
    if !cd.is_empty() {
        ev.insert("custom_data".into(), Value::Object(cd));
    }
    (Value::Object(ev), keys)
}

/// Money with two decimals, as the CRM stores it (avoids 149.89999999 on the wire).
fn round_cents(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `{"data":[...],"partner_agent":"...","test_event_code":"..."}` from pre-serialized events,
/// so splitting a rejected batch never re-serializes them.
pub fn request_body(
    events: &[&[u8]],
    partner_agent: &str,
    test_event_code: Option<&str>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 128);
    body.extend_from_slice(b"{\"data\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(b"],\"partner_agent\":");
    body.extend_from_slice(
        Value::String(partner_agent.to_string())
            .to_string()
            .as_bytes(),
    );
    if let Some(code) = test_event_code.map(str::trim).filter(|c| !c.is_empty()) {
        body.extend_from_slice(b",\"test_event_code\":");
        body.extend_from_slice(Value::String(code.to_string()).to_string().as_bytes());
    }
    body.push(b'}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use crate::pii::Normalizer;
    use crate::platforms::event::{AdInfo, UserIdentity};
    use std::sync::Arc;

    fn event(ctwa: bool) -> ConversionEvent {
        let n = Normalizer::new("BR").unwrap();
        let user = UserIdentity {
            emails: vec![n.email("John_Smith@gmail.com").unwrap()],
            phones: vec![n.phone("+55 (11) 98765-4321").unwrap()],
            first_name: Some(n.first_name("Mary").unwrap()),
            external_id: Some(n.external_id("42").unwrap()),
            client_ip: Some("2001:db8::1".into()),
            ctwa_clid: ctwa.then(|| "Aff-n8ZT".to_string()),
            ..UserIdentity::default()
        };
        ConversionEvent {
            event_id: "e1".into(),
            event: catalog::resolve(Some("Lead"), None).unwrap(),
            name: "Lead".into(),
            event_time: chrono::Utc::now() - chrono::Duration::minutes(5),
            value: Some(149.899999),
            currency: Some("BRL".into()),
            stage_name: Some("Qualificado".into()),
            funnel_category: Some("meio".into()),
            campaign_name: None,
            order_id: None,
            user: Arc::new(user),
            ad: Some(Arc::new(AdInfo {
                source_id: Some("1202".into()),
                ..AdInfo::default()
            })),
        }
    }

    #[test]
    fn builds_capi_event_with_hashed_lists_and_raw_click_ids() {
        let ev = event(true);
        let routing = route(&ev, ActionSource::PhysicalStore, None, MessagingMode::Auto);
        let (v, keys) = build_event(&ev, &routing, chrono::Utc::now());
        assert_eq!(v["event_name"], "Lead");
        assert_eq!(v["action_source"], "physical_store");
        assert_eq!(v["event_time"], json!(ev.event_time.timestamp()));
        assert_eq!(
            v["user_data"]["em"][0],
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
        );
        assert_eq!(
            v["user_data"]["ph"][0],
            "029c7290f14c4516673508635f0519db95f7daf42057fd0e4ad1de84c5408a66"
        );
        assert_eq!(v["user_data"]["ctwa_clid"], "Aff-n8ZT");
        assert_eq!(v["user_data"]["client_ip_address"], "2001:db8::1");
        assert_eq!(v["custom_data"]["value"], json!(149.9));
        assert_eq!(v["custom_data"]["ad_id"], "1202");
        assert!(v.get("messaging_channel").is_none());
        assert!(keys.em && keys.ph && keys.click_id && keys.external_id && !keys.last_name);
    }

    #[test]
    fn routes_ctwa_customers_to_business_messaging() {
        let ev = event(true);
        let r = route(
            &ev,
            ActionSource::PhysicalStore,
            Some("555"),
            MessagingMode::Auto,
        );
        assert_eq!(r.action_source, ActionSource::BusinessMessaging);
        assert_eq!(r.event_name, "LeadSubmitted");
        let (v, _) = build_event(&ev, &r, chrono::Utc::now());
        assert_eq!(v["messaging_channel"], "whatsapp");
        assert_eq!(v["user_data"]["whatsapp_business_account_id"], "555");
        // No click id: the pixel's own source, unless forced.
        let plain = event(false);
        assert_eq!(
            route(&plain, ActionSource::Chat, Some("555"), MessagingMode::Auto).action_source,
            ActionSource::Chat
        );
        // `always` without a click id: Meta refuses business messaging without ctwa_clid, so
        // the pixel's own source.
        assert_eq!(
            route(
                &plain,
                ActionSource::Chat,
                Some("555"),
                MessagingMode::Always
            )
            .action_source,
            ActionSource::Chat
        );
        assert_eq!(
            route(&ev, ActionSource::Chat, Some("555"), MessagingMode::Never).action_source,
            ActionSource::Chat
        );
    }

    #[test]
    fn future_event_time_is_clamped() {
        let mut ev = event(false);
        let now = chrono::Utc::now();
        ev.event_time = now + chrono::Duration::hours(1);
        let (v, _) = build_event(
            &ev,
            &route(&ev, ActionSource::Other, None, MessagingMode::Auto),
            now,
        );
        assert_eq!(v["event_time"], json!(now.timestamp()));
    }

    #[test]
    fn request_body_is_valid_json() {
        let a = br#"{"event_name":"Lead"}"#.to_vec();
        let b = br#"{"event_name":"Purchase"}"#.to_vec();
        let body = request_body(&[&a, &b], "stagecast", Some("TEST1"));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["test_event_code"], "TEST1");
        let body = request_body(&[&a], "st\"x", None);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["partner_agent"], "st\"x");
        assert!(v.get("test_event_code").is_none());
    }
}
