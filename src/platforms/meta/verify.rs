//! `stagecast doctor` for a Meta pixel: `GET /{version}/{pixel_id}?fields=id,name` with its
//! token, classified the way the worker classifies a delivery (`retry::classify`), and put in
//! words that name the fix.

use super::client::{GraphResponse, TransportError};
use super::retry::{classify, ApiError, Classification};
use crate::alerts::AlertCause;
use crate::platforms::platform::Verification;
use crate::store::PixelRow;

/// How to store a new token for this pixel.
fn set_token(p: &PixelRow) -> String {
    format!("`stagecast pixel set-token {} < token.txt`", p.id)
}

/// The Graph API's answer to the pixel lookup, as the doctor reports it.
pub fn verdict(
    p: &PixelRow,
    answer: Result<GraphResponse, TransportError>,
    graph_url: &str,
) -> Verification {
    let problem = |found: String, fix: String| Verification::Problem { found, fix };
    let warning = |found: String, fix: &str| Verification::Warning {
        found,
        fix: fix.to_string(),
    };
    let classification = match &answer {
        Ok(resp) => classify(resp),
        // The worker retries a network error; for a check, it means the API is out of reach.
        Err(e) => {
            return problem(
                format!("cannot reach the Graph API at {graph_url}: {e}"),
                "check that this host can reach it (DNS, firewall, proxy) and STAGECAST_META_GRAPH_URL".into(),
            );
        }
    };
    match classification {
        Classification::Delivered { .. } => {
            Verification::Ok("the Graph API accepts its token for this pixel".into())
        }
        Classification::HoldDestination {
            error,
            cause: AlertCause::TokenInvalid,
        } => problem(
            format!("Meta refused the token: invalid or expired ({})", codes(&error)),
            format!(
                "generate a new token in Events Manager and store it: {}",
                set_token(p)
            ),
        ),
        Classification::HoldDestination { error, .. }
            if error.code == Some(100) && error.subcode == Some(33) =>
        {
            problem(
                format!(
                    "Meta does not know pixel {} or the token has no access to it ({})",
                    p.pixel_id,
                    codes(&error)
                ),
                "check pixels.pixel_id against Events Manager, and that the token was generated for this dataset".into(),
            )
        }
        Classification::HoldDestination { error, .. } | Classification::RejectEvents(error) => {
            problem(
                format!("Meta refused the check: {error}"),
                "check the token's permissions on this dataset; give the fbtrace_id to Meta support if it persists".into(),
            )
        }
        Classification::Throttle { error, .. } => warning(
            format!("not checked: Meta is rate limiting ({})", codes(&error)),
            "run the doctor again in a few minutes",
        ),
        Classification::Retry(error) => warning(
            format!("not checked: temporary Graph API error: {error}"),
            "run the doctor again later; if it persists, check Meta's status page",
        ),
    }
}

/// The answer to `GET /{waba_id}/dataset` (Meta's business-messaging guide): business-messaging
/// events are attributed only on the dataset linked to the WABA, so `pixels.pixel_id` must be
/// it. Meta's answer is read as `{"data":[{"id":…}]}` or `{"id":…}`.
pub fn dataset_verdict(
    p: &PixelRow,
    waba_id: &str,
    answer: Result<GraphResponse, TransportError>,
) -> Verification {
    let resp = match answer {
        Ok(resp) => resp,
        Err(e) => {
            return Verification::Warning {
                found: format!(
                "could not check the dataset linked to WhatsApp Business Account {waba_id}: {e}"
            ),
                fix: "run the doctor again when the Graph API is reachable".into(),
            }
        }
    };
    let Classification::Delivered { .. } = classify(&resp) else {
        let error = resp.body.as_ref().and_then(|b| b.get("error"));
        let field = |k: &str| error.and_then(|e| e.get(k)).map(|v| v.to_string());
        let why = match (field("code"), field("error_subcode")) {
            (Some(c), Some(s)) => format!("code {c}, subcode {s}"),
            (Some(c), None) => format!("code {c}"),
            _ => format!("HTTP {}", resp.status),
        };
        return Verification::Warning {
            found: format!(
                "could not read the dataset linked to WhatsApp Business Account {waba_id} ({why})"
            ),
            fix: format!("check pixels.waba_id, and that the token has whatsapp_business_management on WABA {waba_id}"),
        };
    };
    let body = resp.body.unwrap_or_default();
    let linked: Vec<&str> = match body.get("data").and_then(|d| d.as_array()) {
        Some(items) => items
            .iter()
            .filter_map(|d| d.get("id").and_then(|i| i.as_str()))
            .collect(),
        None => body
            .get("id")
            .and_then(|i| i.as_str())
            .into_iter()
            .collect(),
    };
    if linked.contains(&p.pixel_id.as_str()) {
        return Verification::Ok(format!(
            "the Graph API accepts its token for this pixel, the dataset linked to WhatsApp Business Account {waba_id}"
        ));
    }
    match linked.first() {
        None => Verification::Problem {
            found: format!("WhatsApp Business Account {waba_id} has no dataset linked: business-messaging events are not attributed"),
            fix: format!("link dataset {} to the WABA (POST /{waba_id}/dataset, or in Events Manager), or correct pixels.waba_id", p.pixel_id),
        },
        Some(other) => Verification::Problem {
            found: format!(
                "pixel {} is not the dataset linked to WhatsApp Business Account {waba_id} (Meta says {other}): business-messaging events sent to it are not attributed",
                p.pixel_id
            ),
            fix: format!("set pixels.pixel_id to {other}, or correct pixels.waba_id"),
        },
    }
}

/// `code 190, subcode 463, fbtrace_id X`, or the HTTP status when there was no Graph error.
fn codes(e: &ApiError) -> String {
    let mut parts = Vec::new();
    match (e.code, e.http_status) {
        (Some(c), _) => parts.push(format!("code {c}")),
        (None, Some(s)) => parts.push(format!("HTTP {s}")),
        _ => {}
    }
    if let Some(s) = e.subcode {
        parts.push(format!("subcode {s}"));
    }
    if let Some(t) = &e.fbtrace_id {
        parts.push(format!("fbtrace_id {t}"));
    }
    if parts.is_empty() {
        e.message.clone()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn pixel() -> PixelRow {
        PixelRow {
            id: 1,
            platform: "facebook".into(),
            name: Some("P1".into()),
            pixel_id: "111".into(),
            access_token: None,
            access_token_enc: None,
            active: true,
            is_default: true,
            waba_id: None,
            test_event_code: None,
            action_source: None,
            messaging_mode: None,
            options: None,
        }
    }

    fn resp(status: u16, body: serde_json::Value) -> Result<GraphResponse, TransportError> {
        Ok(GraphResponse {
            status,
            body: Some(body),
            text: None,
            usage_pct: None,
            regain_minutes: None,
            retry_after: None,
            elapsed: Duration::ZERO,
        })
    }

    fn graph_error(code: i64, subcode: Option<i64>) -> serde_json::Value {
        json!({"error": {"message": "msg", "code": code, "error_subcode": subcode, "fbtrace_id": "T"}})
    }

    #[test]
    fn classifies_like_the_worker() {
        let p = pixel();
        let ok = verdict(&p, resp(200, json!({"id": "111", "name": "x"})), "u");
        assert!(matches!(ok, Verification::Ok(_)), "{ok:?}");

        let Verification::Problem { found, fix } =
            verdict(&p, resp(401, graph_error(190, Some(463))), "u")
        else {
            panic!("expected a problem")
        };
        assert!(found.contains("invalid or expired (code 190, subcode 463, fbtrace_id T)"));
        assert!(fix.contains("stagecast pixel set-token 1"));

        let unknown = verdict(&p, resp(400, graph_error(100, Some(33))), "u");
        assert!(
            matches!(&unknown, Verification::Problem { found, .. } if found.contains("does not know pixel 111")),
            "{unknown:?}"
        );

        let throttled = verdict(&p, resp(400, graph_error(17, None)), "u");
        assert!(matches!(throttled, Verification::Warning { .. }));

        let down = verdict(
            &p,
            Err(TransportError::Connect("refused".into())),
            "http://x",
        );
        assert!(
            matches!(&down, Verification::Problem { found, .. } if found.starts_with("cannot reach the Graph API at http://x")),
            "{down:?}"
        );
    }
}
