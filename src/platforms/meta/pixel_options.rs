//! Per-pixel options that change what each event carries: Conversion Leads (CRM integration),
//! Limited Data Use and opt-out (*server-event*, *conversion-leads*). They come from the
//! contract's optional pixel columns (`pixels.lead_event_source`, `limited_data_use`,
//! `ldu_country`, `ldu_state`, `opt_out`; docs/crm-integration.md §5), read tolerantly: a CRM
//! view without them means "off".

use serde_json::{json, Map, Value};
use tracing::warn;

use super::config::ActionSource;
use crate::store::PixelRow;

/// `data_processing_options_country` / `_state` values Meta documents: 0 lets Meta geolocate
/// the event; 1 is the United States, 1000 California (*server-event*, "Data Processing
/// Options").
const LDU_GEOLOCATE: i64 = 0;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PixelOptions {
    /// The CRM's name for Conversion Leads (`custom_data.lead_event_source`).
    pub lead_event_source: Option<String>,
    /// `Some((country, state))` when Limited Data Use is on.
    pub limited_data_use: Option<(i64, i64)>,
    pub opt_out: bool,
}

impl PixelOptions {
    /// What `stagecast doctor` warns about in a Meta pixel's options: an LDU pair Meta does not
    /// document (sent as 0/0 instead), and a Conversion Leads pixel that names no CRM.
    pub fn problems(pixel: &PixelRow, action_source: ActionSource) -> Vec<String> {
        let mut out = Vec::new();
        let o = pixel.options.as_ref().and_then(Value::as_object);
        let options = PixelOptions::of(pixel);
        if options.limited_data_use.is_some() {
            let number = |key: &str| {
                o.and_then(|o| o.get(key)).and_then(|v| match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                })
            };
            let country = number("ldu_country").unwrap_or(LDU_GEOLOCATE);
            let state = number("ldu_state").unwrap_or(LDU_GEOLOCATE);
            if let Some(problem) = ldu_problem(country, state) {
                out.push(format!(
                    "Limited Data Use with ldu_country {country}, ldu_state {state}: {problem}; sent as 0/0 (Meta geolocates)"
                ));
            }
        }
        if action_source == ActionSource::SystemGenerated && options.lead_event_source.is_none() {
            out.push(
                "sends Conversion Leads (action_source system_generated) without pixels.lead_event_source: custom_data.lead_event_source is the partner agent instead of the CRM's name"
                    .to_string(),
            );
        }
        out
    }

    pub fn of(pixel: &PixelRow) -> PixelOptions {
        let Some(Value::Object(o)) = pixel.options.as_ref() else {
            return PixelOptions::default();
        };
        let flag = |key: &str| match o.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => matches!(
                s.trim().to_ascii_lowercase().as_str(),
                "true" | "t" | "yes" | "1" | "on"
            ),
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            _ => false,
        };
        let number = |key: &str| match o.get(key) {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        let limited_data_use = flag("limited_data_use").then(|| {
            let country = number("ldu_country").unwrap_or(LDU_GEOLOCATE);
            let state = number("ldu_state").unwrap_or(LDU_GEOLOCATE);
            match ldu_problem(country, state) {
                None => (country, state),
                Some(problem) => {
                    // Still LDU: geolocated by Meta rather than not restricted at all.
                    warn!(pixel = %pixel.pixel_id, problem, "invalid ldu_country/ldu_state; Meta geolocates instead");
                    (LDU_GEOLOCATE, LDU_GEOLOCATE)
                }
            }
        });
        PixelOptions {
            lead_event_source: o
                .get("lead_event_source")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            limited_data_use,
            opt_out: flag("opt_out"),
        }
    }
}

/// What is wrong with an LDU country/state pair, if anything.
/// Meta documents country 0 (geolocate) or 1 (USA), and state 0 (geolocate) or a US state
/// code from 1000 (California); a state without the USA is meaningless.
pub fn ldu_problem(country: i64, state: i64) -> Option<&'static str> {
    match (country, state) {
        (0, 0) => None,
        (0, _) => Some("ldu_state must be 0 when ldu_country is 0 (Meta geolocates both)"),
        (1, 0) => None,
        (1, s) if (1000..2000).contains(&s) => None,
        (1, _) => Some("ldu_state must be 0 or a US state code such as 1000 (California)"),
        _ => Some("ldu_country must be 0 (Meta geolocates) or 1 (United States)"),
    }
}

/// Adds the pixel's options to a built event: LDU and opt-out on every event, and the
/// Conversion Leads fields when the event goes as `system_generated` (`crm_name` when the pixel
/// names no CRM). Only keys of its own: `user_data` and the routing stay as built.
pub fn apply(
    event: &mut Map<String, Value>,
    options: &PixelOptions,
    action_source: ActionSource,
    crm_name: &str,
) {
    if action_source == ActionSource::SystemGenerated {
        let custom = event
            .entry("custom_data")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(custom) = custom {
            custom.insert("event_source".into(), json!("crm"));
            custom.insert(
                "lead_event_source".into(),
                json!(options.lead_event_source.as_deref().unwrap_or(crm_name)),
            );
        }
    }
    if let Some((country, state)) = options.limited_data_use {
        event.insert("data_processing_options".into(), json!(["LDU"]));
        event.insert("data_processing_options_country".into(), json!(country));
        event.insert("data_processing_options_state".into(), json!(state));
    }
    if options.opt_out {
        event.insert("opt_out".into(), json!(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(options: Value) -> PixelRow {
        PixelRow {
            id: 1,
            platform: "facebook".into(),
            name: None,
            pixel_id: "111".into(),
            access_token: None,
            access_token_enc: None,
            active: true,
            is_default: true,
            waba_id: None,
            test_event_code: None,
            action_source: None,
            messaging_mode: None,
            options: Some(options),
        }
    }

    #[test]
    fn options_are_read_tolerantly_and_default_to_off() {
        assert_eq!(PixelOptions::of(&pixel(json!({}))), PixelOptions::default());
        let o = PixelOptions::of(&pixel(json!({
            "lead_event_source": " Pipedrive ", "limited_data_use": true, "opt_out": "yes"
        })));
        assert_eq!(o.lead_event_source.as_deref(), Some("Pipedrive"));
        assert_eq!(o.limited_data_use, Some((0, 0)));
        assert!(o.opt_out);
        let california = PixelOptions::of(&pixel(json!({
            "limited_data_use": true, "ldu_country": 1, "ldu_state": 1000
        })));
        assert_eq!(california.limited_data_use, Some((1, 1000)));
        let wrong = PixelOptions::of(&pixel(json!({
            "limited_data_use": true, "ldu_country": 55, "ldu_state": 1000
        })));
        assert_eq!(
            wrong.limited_data_use,
            Some((0, 0)),
            "still LDU, geolocated"
        );
    }

    #[test]
    fn ldu_and_opt_out_exactly_as_meta_specifies() {
        let mut ev = Map::new();
        let o = PixelOptions {
            limited_data_use: Some((1, 1000)),
            opt_out: true,
            ..PixelOptions::default()
        };
        apply(&mut ev, &o, ActionSource::PhysicalStore, "stagecast");
        assert_eq!(
            Value::Object(ev),
            json!({"data_processing_options": ["LDU"], "data_processing_options_country": 1,
                   "data_processing_options_state": 1000, "opt_out": true})
        );
        let mut off = Map::new();
        apply(
            &mut off,
            &PixelOptions::default(),
            ActionSource::PhysicalStore,
            "stagecast",
        );
        assert!(
            off.is_empty(),
            "LDU off: the keys are omitted, as Meta allows"
        );
    }

    #[test]
    fn conversion_leads_fields_only_for_system_generated() {
        let o = PixelOptions {
            lead_event_source: Some("Pipedrive".into()),
            ..PixelOptions::default()
        };
        let mut ev = Map::new();
        ev.insert("custom_data".into(), json!({"value": 1.0}));
        apply(&mut ev, &o, ActionSource::SystemGenerated, "stagecast");
        assert_eq!(
            ev["custom_data"],
            json!({"value": 1.0, "event_source": "crm", "lead_event_source": "Pipedrive"})
        );
        let mut unnamed = Map::new();
        apply(
            &mut unnamed,
            &PixelOptions::default(),
            ActionSource::SystemGenerated,
            "stagecast",
        );
        assert_eq!(unnamed["custom_data"]["lead_event_source"], "stagecast");
        let mut other = Map::new();
        apply(&mut other, &o, ActionSource::Chat, "stagecast");
        assert!(other.get("custom_data").is_none());
    }

    #[test]
    fn problems_name_the_ldu_pair_and_a_conversion_leads_pixel_without_crm_name() {
        let ok = pixel(json!({"limited_data_use": true, "ldu_country": 1, "ldu_state": 1000}));
        assert!(PixelOptions::problems(&ok, ActionSource::PhysicalStore).is_empty());
        let bad = pixel(json!({"limited_data_use": true, "ldu_country": 0, "ldu_state": 1000}));
        let p = PixelOptions::problems(&bad, ActionSource::PhysicalStore);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("ldu_state 1000"), "{p:?}");
        let leads = pixel(json!({}));
        let p = PixelOptions::problems(&leads, ActionSource::SystemGenerated);
        assert!(p[0].contains("lead_event_source"), "{p:?}");
    }

    #[test]
    fn ldu_problems() {
        assert_eq!(ldu_problem(0, 0), None);
        assert_eq!(ldu_problem(1, 1000), None);
        assert_eq!(ldu_problem(1, 0), None);
        assert!(ldu_problem(0, 1000).is_some());
        assert!(ldu_problem(1, 5).is_some());
        assert!(ldu_problem(2, 0).is_some());
    }
}
