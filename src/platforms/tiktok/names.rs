//! The stage's configured event → TikTok's event name. TikTok's standard events
//! (*supported-standard-events*) share most of Meta's names, which the catalog uses; a few Meta
//! events have no TikTok counterpart and are refused with an alert instead of being sent under a
//! name TikTok would not optimise for. Custom names are sent as custom events (TikTok accepts
//! them; a CRM event set maps them to its funnel in Events Manager), except that a custom name
//! equal to a TikTok standard or legacy name, in any case, is sent as TikTok's current name.

use crate::alerts::AlertCause;
use crate::catalog::EventName;
use crate::platforms::platform::LocalProblem;

/// TikTok's current standard events.
pub const STANDARD: &[&str] = &[
    "AddPaymentInfo",
    "AddToCart",
    "AddToWishlist",
    "ApplicationApproval",
    "CompleteRegistration",
    "Contact",
    "CustomizeProduct",
    "Download",
    "FindLocation",
    "InitiateCheckout",
    "Lead",
    "Purchase",
    "Schedule",
    "Search",
    "StartTrial",
    "SubmitApplication",
    "Subscribe",
    "ViewContent",
];

/// Older names and their current ones (`CompletePayment` became `Purchase`, `SubmitForm` became
/// `Lead`). `PlaceAnOrder` and `ClickButton` have no current name and are kept as they are.
const RENAMED: &[(&str, &str)] = &[("CompletePayment", "Purchase"), ("SubmitForm", "Lead")];
const LEGACY_KEPT: &[&str] = &["PlaceAnOrder", "ClickButton"];

/// Catalog events with no TikTok counterpart, and what to use instead.
const UNMAPPED: &[(&str, &str)] = &[("Donate", "Purchase"), ("PageView", "ViewContent")];

/// Catalog events (Meta's business-messaging names) that have a TikTok standard name.
const MESSAGING: &[(&str, &str)] = &[("LeadSubmitted", "Lead")];

/// TikTok's name for the configured event, or the problem that becomes the alert.
pub fn tiktok_name(event: &EventName) -> Result<String, LocalProblem> {
    let name = event.as_str();
    if let Some((_, instead)) = UNMAPPED.iter().find(|(n, _)| *n == name) {
        let mut problem = LocalProblem::new(
            AlertCause::EventNotOnPlatform,
            format!("TikTok has no event equivalent to {name}; use {instead} or a custom name"),
        );
        problem.suggestion = Some((*instead).to_string());
        return Err(problem);
    }
    if let Some((_, tiktok)) = MESSAGING.iter().find(|(n, _)| *n == name) {
        return Ok((*tiktok).to_string());
    }
    let canonical = |n: &str| {
        STANDARD
            .iter()
            .chain(LEGACY_KEPT)
            .find(|s| s.eq_ignore_ascii_case(n))
            .map(|s| (*s).to_string())
            .or_else(|| {
                RENAMED
                    .iter()
                    .find(|(old, _)| old.eq_ignore_ascii_case(n))
                    .map(|(_, new)| (*new).to_string())
            })
    };
    Ok(match event {
        EventName::Standard(_) => canonical(name).unwrap_or_else(|| name.to_string()),
        EventName::Custom(custom) => canonical(custom.trim()).unwrap_or_else(|| custom.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn standard(name: &str) -> EventName {
        catalog::resolve(Some(name), None).unwrap()
    }

    #[test]
    fn every_catalog_event_is_mapped_or_refused_with_a_suggestion() {
        for def in catalog::all() {
            // "Other" needs a custom name: not an event of its own.
            let Ok(event) = catalog::resolve(Some(def.name), None) else {
                continue;
            };
            match tiktok_name(&event) {
                Ok(name) => assert!(!name.is_empty()),
                Err(p) => {
                    assert_eq!(p.cause, AlertCause::EventNotOnPlatform, "{}", def.name);
                    let s = p.suggestion.expect("a suggestion");
                    assert!(STANDARD.contains(&s.as_str()), "{s}");
                }
            }
        }
    }

    #[test]
    fn maps_the_table() {
        for (meta, tiktok) in [
            ("Purchase", "Purchase"),
            ("Lead", "Lead"),
            ("InitiateCheckout", "InitiateCheckout"),
            ("Schedule", "Schedule"),
            ("SubmitApplication", "SubmitApplication"),
            ("LeadSubmitted", "Lead"),
            // A business-messaging name without a TikTok one is a custom event.
            ("QualifiedLead", "QualifiedLead"),
        ] {
            assert_eq!(tiktok_name(&standard(meta)).unwrap(), tiktok, "{meta}");
        }
        let donate = tiktok_name(&standard("Donate")).unwrap_err();
        assert_eq!(donate.suggestion.as_deref(), Some("Purchase"));
        assert_eq!(
            tiktok_name(&standard("PageView")).unwrap_err().cause,
            AlertCause::EventNotOnPlatform
        );
    }

    #[test]
    fn custom_names_pass_or_take_tiktoks_spelling() {
        let custom = |s: &str| EventName::Custom(s.to_string());
        assert_eq!(
            tiktok_name(&custom("Visita realizada")).unwrap(),
            "Visita realizada"
        );
        assert_eq!(tiktok_name(&custom("download")).unwrap(), "Download");
        assert_eq!(tiktok_name(&custom("CompletePayment")).unwrap(), "Purchase");
        assert_eq!(tiktok_name(&custom("submitform")).unwrap(), "Lead");
        assert_eq!(
            tiktok_name(&custom("PlaceAnOrder")).unwrap(),
            "PlaceAnOrder"
        );
    }
}
