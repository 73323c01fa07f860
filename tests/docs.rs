//! The user docs stay true to the code (no database needed):
//!
//! - docs/events.md names every event of `stagecast::catalog::all()` with its pt label, and its
//!   catalog table is exactly the one generated here from the catalog;
//! - docs/fallbacks.md names every `AlertCause::ALL` code, and quotes the pt message each cause
//!   renders (`Alert::render`) for the example situation given below.

use std::path::PathBuf;

use stagecast::alerts::{Alert, AlertCause, AlertDetails};
use stagecast::catalog::{self, EventKind};
use stagecast::locale::Locale;

fn read_doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

const CATALOG_BEGIN: &str =
    "<!-- catalog:begin (generated from stagecast::catalog::all() by tests/docs.rs; do not edit by hand) -->";
const CATALOG_END: &str = "<!-- catalog:end -->";

/// Escapes what would break a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The catalog table of docs/events.md, generated from the catalog.
fn catalog_table() -> String {
    let mut out = String::from(
        "| `event_name` | kind | label (pt) | when to use (pt) | sent with `business_messaging` as |\n\
         |---|---|---|---|---|\n",
    );
    for d in catalog::all() {
        let (kind, bm) = match d.kind {
            EventKind::Standard => (
                "standard",
                match d.business_messaging_name {
                    Some(n) => format!("`{n}`"),
                    None => format!("`{}` (unchanged)", d.name),
                },
            ),
            EventKind::BusinessMessagingOnly => (
                "business messaging only",
                format!("`{}`", d.business_messaging_name.unwrap_or(d.name)),
            ),
            EventKind::Other => ("custom", "the custom name, unchanged".to_string()),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            d.name,
            kind,
            cell(d.label.pt),
            cell(d.when_to_use.pt),
            bm
        ));
    }
    out
}

fn between<'a>(doc: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = doc.find(begin)? + begin.len();
    let len = doc[start..].find(end)?;
    Some(doc[start..start + len].trim_matches('\n'))
}

#[test]
fn events_doc_names_every_catalog_event_and_its_pt_label() {
    let doc = read_doc("events.md");
    for d in catalog::all() {
        assert!(
            doc.contains(&format!("`{}`", d.name)),
            "docs/events.md does not mention the catalog event `{}`",
            d.name
        );
        assert!(
            doc.contains(d.label.pt),
            "docs/events.md does not show the pt label {:?} of `{}`",
            d.label.pt,
            d.name
        );
    }
}

#[test]
fn events_doc_catalog_table_is_generated_from_the_catalog() {
    let doc = read_doc("events.md");
    let expected = catalog_table();
    let found = between(&doc, CATALOG_BEGIN, CATALOG_END).unwrap_or_else(|| {
        panic!("docs/events.md lacks the catalog markers; put this between them:\n{CATALOG_BEGIN}\n{expected}{CATALOG_END}")
    });
    assert!(
        found == expected.trim_end_matches('\n'),
        "the catalog table in docs/events.md is out of date; replace it with:\n{expected}"
    );
}

/// The situation each cause is illustrated with in docs/fallbacks.md.
fn example(cause: AlertCause) -> AlertDetails {
    let d = |event: &str, stage: &str| AlertDetails {
        platform: Some("facebook".into()),
        event_name: Some(event.into()),
        stage_name: Some(stage.into()),
        ..AlertDetails::default()
    };
    let pixel = Some("111222333".to_string());
    let trace = Some("AbC123xyz".to_string());
    match cause {
        AlertCause::NoCampaign | AlertCause::EventTooOld => d("Lead", "Qualificado"),
        AlertCause::PixelMissing => AlertDetails {
            campaign: Some("Black Friday".into()),
            ..d("Lead", "Qualificado")
        },
        AlertCause::PixelInactive | AlertCause::TokenMissing | AlertCause::TokenUnreadable => {
            AlertDetails {
                pixel,
                ..d("Lead", "Qualificado")
            }
        }
        AlertCause::TokenInvalid => AlertDetails {
            pixel,
            code: Some(190),
            fbtrace_id: trace,
            ..d("Purchase", "Venda fechada")
        },
        AlertCause::ApiError => AlertDetails {
            pixel,
            code: Some(100),
            subcode: Some(33),
            fbtrace_id: trace,
            error: Some("Unsupported post request".into()),
            ..d("Lead", "Qualificado")
        },
        AlertCause::PurchaseWithoutValue => d("Purchase", "Venda fechada"),
        AlertCause::UnknownEventName => AlertDetails {
            suggestion: Some("Purchase".into()),
            ..d("purchase", "Venda fechada")
        },
        AlertCause::InvalidEventConfig => AlertDetails {
            error: Some("entry 1: event \"Other\" needs a custom event name".into()),
            ..d("Other", "Visita agendada")
        },
        AlertCause::UnsupportedPlatform => AlertDetails {
            platform: Some("tiktok".into()),
            ..d("Lead", "Qualificado")
        },
        AlertCause::DeliveryGaveUp => AlertDetails {
            error: Some(
                "Purchase to pixel 111222333: An unexpected error has occurred. Please retry your request later. (code 2, fbtrace_id AbC123xyz)"
                    .into(),
            ),
            ..d("Purchase", "Venda fechada")
        },
        AlertCause::AdNotLinked => AlertDetails {
            ad_id: Some("120226305854810726".into()),
            ..AlertDetails::default()
        },
        AlertCause::AdWithoutClickId => AlertDetails::default(),
    }
}

#[test]
fn fallbacks_doc_lists_every_alert_cause_with_its_pt_message() {
    let doc = read_doc("fallbacks.md");
    for cause in AlertCause::ALL {
        assert!(
            doc.contains(&format!("`{}`", cause.code())),
            "docs/fallbacks.md does not list the alert cause `{}`",
            cause.code()
        );
        let text = Alert::new(cause, example(cause)).render(Locale::Pt);
        let text = text.strip_prefix("⚠️ stagecast: ").unwrap_or(&text);
        assert!(
            doc.contains(text),
            "docs/fallbacks.md does not quote the pt message of `{}`; expected:\n{text}",
            cause.code()
        );
    }
}
