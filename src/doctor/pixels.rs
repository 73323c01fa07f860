//! Pixels: each active pixel has a token that Meta accepts for that pixel, and a default pixel
//! exists for campaigns without their own.

use futures_util::future::join_all;

use super::keys::{pixel_label, token_for, Ring, TokenProblem};
use super::report::{list, Check, CheckBuilder, Group};
use crate::alerts::AlertCause;
use crate::platforms::meta::retry::classify;
use crate::platforms::meta::{
    ApiError, Classification, GraphResponse, MetaClient, MetaConfig, TransportError,
};
use crate::platforms::Platform;
use crate::store::PixelRow;

fn check(p: &PixelRow) -> CheckBuilder {
    Check::build(
        Group::Pixels,
        format!("pixels.api.{}", p.id),
        capitalize(&pixel_label(p)),
    )
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// How to store a new token for this pixel.
fn set_token(p: &PixelRow) -> String {
    format!("`stagecast pixel set-token {} < token.txt`", p.id)
}

/// What is wrong with this pixel's setup whatever its token: an unsupported or unknown
/// platform, no pixel id. Needs no token (the admin console shows it too).
pub fn setup_problem(p: &PixelRow) -> Option<Check> {
    match Platform::parse(&p.platform) {
        Some(Platform::Facebook) => {}
        Some(other) => {
            return Some(check(p).warning(
                format!("platform {other} is not supported yet: this version delivers only to Meta"),
                "nothing to do until a stagecast version supports it; set active = false to silence this",
            ))
        }
        None => {
            return Some(check(p).warning(
                format!("unknown platform {:?}: no stage event can use it", p.platform),
                "set pixels.platform to facebook (or meta / instagram)",
            ))
        }
    }
    if p.pixel_id.trim().is_empty() {
        return Some(check(p).problem(
            "has no pixel id (pixels.pixel_id is empty)",
            "set pixels.pixel_id to the dataset id from Meta's Events Manager",
        ));
    }
    None
}

/// What the worker would make of this pixel before any request: platform and token.
fn local_problem(p: &PixelRow, ring: &Ring) -> Result<crate::secrets::Secret, Check> {
    if let Some(problem) = setup_problem(p) {
        return Err(problem);
    }
    token_for(p, ring).map_err(|e| match e {
        TokenProblem::Missing => check(p).problem(
            "has no access token: its events fail with token_missing",
            format!(
                "generate a Conversions API token in Events Manager and store it: {}",
                set_token(p)
            ),
        ),
        TokenProblem::NoKeys => check(p).problem(
            "its token is sealed but STAGECAST_KEYS is not set, so it cannot be checked or used",
            "set STAGECAST_KEYS (see Keys and tokens)",
        ),
        TokenProblem::BadKeys => check(p).skipped("not checked: STAGECAST_KEYS cannot be read"),
        TokenProblem::Unreadable(why) => check(p).problem(
            format!("its token cannot be decrypted: {why}"),
            "see Keys and tokens above",
        ),
    })
}

/// The Graph API's answer to `GET /{version}/{pixel_id}`, classified the way the worker
/// classifies a delivery (`platforms::meta::retry`).
pub fn verdict(
    p: &PixelRow,
    answer: Result<GraphResponse, TransportError>,
    graph_url: &str,
) -> Check {
    let classification = match &answer {
        Ok(resp) => classify(resp),
        // The worker retries a network error; for a check, it means the API is out of reach.
        Err(e) => {
            return check(p).problem(
                format!("cannot reach the Graph API at {graph_url}: {e}"),
                "check that this host can reach it (DNS, firewall, proxy) and STAGECAST_META_GRAPH_URL",
            );
        }
    };
    match classification {
        Classification::Delivered { .. } => {
            check(p).ok("the Graph API accepts its token for this pixel")
        }
        Classification::FailDestination {
            error,
            cause: AlertCause::TokenInvalid,
        } => check(p).problem(
            format!("Meta refused the token: invalid or expired ({})", codes(&error)),
            format!(
                "generate a new token in Events Manager and store it: {}",
                set_token(p)
            ),
        ),
        Classification::FailDestination { error, .. }
            if error.code == Some(100) && error.subcode == Some(33) =>
        {
            check(p).problem(
                format!(
                    "Meta does not know pixel {} or the token has no access to it ({})",
                    p.pixel_id,
                    codes(&error)
                ),
                "check pixels.pixel_id against Events Manager, and that the token was generated for this dataset",
            )
        }
        Classification::FailDestination { error, .. } | Classification::RejectEvents(error) => {
            check(p).problem(
                format!("Meta refused the check: {error}"),
                "check the token's permissions on this dataset; give the fbtrace_id to Meta support if it persists",
            )
        }
        Classification::Throttle { error, .. } => check(p).warning(
            format!("not checked: Meta is rate limiting ({})", codes(&error)),
            "run the doctor again in a few minutes",
        ),
        Classification::Retry(error) => check(p).warning(
            format!("not checked: temporary Graph API error: {error}"),
            "run the doctor again later; if it persists, check Meta's status page",
        ),
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

/// Check every active pixel against the Graph API, concurrently (each within `config.timeout`).
/// `meta` is `None` when the Graph API settings are invalid (reported under Settings).
pub async fn api(pixels: &[PixelRow], ring: &Ring, meta: Option<&MetaConfig>) -> Vec<Check> {
    let active: Vec<&PixelRow> = pixels.iter().filter(|p| p.active).collect();
    if active.is_empty() {
        let c = Check::build(Group::Pixels, "pixels.active", "Active pixels");
        return vec![if pixels.is_empty() {
            c.warning(
                "no pixels configured: no event can be sent",
                "add a pixel (pixels: platform, pixel_id) and store its token with `stagecast pixel set-token`",
            )
        } else {
            c.warning(
                format!(
                    "none of the {} pixel(s) is active: no event can be sent",
                    pixels.len()
                ),
                "set pixels.active = true on the pixels in use",
            )
        }];
    }
    let client = match meta.map(MetaClient::new) {
        Some(Ok(client)) => Some(client),
        // Invalid Graph API settings are reported under Settings already.
        _ => None,
    };
    let graph_url = meta
        .map(|m| crate::local_pg::redact_url(&m.graph_url))
        .unwrap_or_default();
    let checks = active.into_iter().map(|p| {
        let client = client.clone();
        let graph_url = graph_url.clone();
        async move {
            let token = match local_problem(p, ring) {
                Ok(token) => token,
                Err(check) => return check,
            };
            let Some(client) = client else {
                return check(p).skipped(
                    "not checked against the Graph API: its settings are invalid (see Settings)",
                );
            };
            let answer = client
                .get_object(&p.pixel_id, Some("id,name"), &token)
                .await;
            verdict(p, answer, &graph_url)
        }
    });
    join_all(checks).await
}

/// The default pixel for Meta: campaigns without their own pixel use it.
pub fn default_pixel(pixels: &[PixelRow]) -> Check {
    let c = Check::build(Group::Pixels, "pixels.default", "Default pixel");
    let meta: Vec<&PixelRow> = pixels
        .iter()
        .filter(|p| Platform::parse(&p.platform) == Some(Platform::Facebook))
        .collect();
    let defaults: Vec<&PixelRow> = meta.iter().copied().filter(|p| p.is_default).collect();
    let active: Vec<&PixelRow> = defaults.iter().copied().filter(|p| p.active).collect();
    let fix =
        "mark one active pixel as default: UPDATE pixels SET is_default = true WHERE id = <id>";
    match (defaults.len(), active.len()) {
        (0, _) => c.warning(
            "no facebook pixel is marked default: campaigns without a pixel fail with pixel_missing",
            fix,
        ),
        (_, 0) => c.warning(
            format!(
                "the default {} is inactive: campaigns without a pixel fail with pixel_inactive",
                pixel_label(defaults[0])
            ),
            "activate it, or mark an active pixel as default instead",
        ),
        (_, 1) => c.ok(format!(
            "{} (campaigns without their own pixel use it)",
            pixel_label(active[0])
        )),
        _ => {
            let names: Vec<String> = active.iter().map(|p| pixel_label(p)).collect();
            c.warning(
                format!(
                    "{} active default pixels ({}): the lowest id is used",
                    active.len(),
                    list(&names, 5)
                ),
                "keep is_default on one pixel only",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::keys::tests::pixel;
    use crate::doctor::report::Status;
    use serde_json::json;
    use std::time::Duration;

    fn resp(status: u16, body: serde_json::Value) -> Result<GraphResponse, TransportError> {
        Ok(GraphResponse {
            status,
            body: Some(body),
            text: None,
            usage_pct: None,
            regain_minutes: None,
            elapsed: Duration::ZERO,
        })
    }

    fn graph_error(code: i64, subcode: Option<i64>) -> serde_json::Value {
        json!({"error": {"message": "msg", "code": code, "error_subcode": subcode, "fbtrace_id": "T"}})
    }

    #[test]
    fn classifies_like_the_worker() {
        let p = pixel(1, true, true);
        let ok = verdict(&p, resp(200, json!({"id": "111", "name": "x"})), "u");
        assert_eq!(ok.status, Status::Ok);

        let invalid = verdict(&p, resp(401, graph_error(190, Some(463))), "u");
        assert_eq!(invalid.status, Status::Problem);
        assert!(invalid
            .found
            .contains("invalid or expired (code 190, subcode 463, fbtrace_id T)"));
        assert!(invalid.fix.unwrap().contains("stagecast pixel set-token 1"));

        let unknown = verdict(&p, resp(400, graph_error(100, Some(33))), "u");
        assert!(
            unknown.found.contains("does not know pixel 111"),
            "{unknown:?}"
        );

        let throttled = verdict(&p, resp(400, graph_error(17, None)), "u");
        assert_eq!(throttled.status, Status::Warning);

        let down = verdict(
            &p,
            Err(TransportError::Connect("refused".into())),
            "http://x",
        );
        assert_eq!(down.status, Status::Problem);
        assert!(down
            .found
            .starts_with("cannot reach the Graph API at http://x"));
        assert_eq!(down.title, "Pixel 111 \"P1\" (id 1)");
    }

    #[tokio::test]
    async fn local_problems_need_no_request() {
        let mut tiktok = pixel(2, true, false);
        tiktok.platform = "tiktok".into();
        let no_token = pixel(3, true, false);
        let inactive = pixel(4, false, false);
        let checks = api(&[tiktok, no_token, inactive], &Ok(None), None).await;
        assert_eq!(checks.len(), 2, "inactive pixels are not checked");
        assert_eq!(checks[0].status, Status::Warning);
        assert!(checks[0].found.contains("not supported yet"));
        assert_eq!(checks[1].status, Status::Problem);
        assert!(checks[1].found.contains("no access token"));
    }

    #[test]
    fn default_pixel_cases() {
        assert_eq!(
            default_pixel(&[pixel(1, true, false)]).status,
            Status::Warning
        );
        assert_eq!(default_pixel(&[pixel(1, true, true)]).status, Status::Ok);
        let inactive = default_pixel(&[pixel(1, false, true)]);
        assert!(inactive.found.contains("inactive"), "{inactive:?}");
        let two = default_pixel(&[pixel(1, true, true), pixel(2, true, true)]);
        assert!(two.found.contains("2 active default pixels"));
    }
}
