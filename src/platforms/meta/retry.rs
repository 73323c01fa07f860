//! *Whether* to retry (Vector's `RetryLogic`): classify a Graph API response by its error
//! `code`/`error_subcode`, never by message text (messages are localised to the token owner's
//! language). The map follows Meta's *error-handling* and *error-reference* pages, and where they
//! are vague (the 2804xxx validation subcodes: permanent) what RudderStack's integration does
//! (rudder-transformer, `src/v0/util/facebookUtils/networkHandler.js`).

use std::time::Duration;

use serde_json::Value;

use super::client::{GraphResponse, TransportError};
use crate::alerts::AlertCause;
use crate::platforms::outcome::DeliveryError;

/// An error as the Graph API (or the transport) reported it. Holds no token and no PII.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiError {
    pub http_status: Option<u16>,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    pub fbtrace_id: Option<String>,
    /// Short human text: Meta's `error_user_title`/`message`, or the transport failure.
    pub message: String,
}

impl ApiError {
    /// The neutral form every platform maps into (the audit, alerts and job errors use it).
    pub fn to_delivery_error(&self) -> DeliveryError {
        DeliveryError {
            http_status: self.http_status,
            code: self.code.map(|c| c.to_string()),
            subcode: self.subcode,
            trace_id: self.fbtrace_id.clone(),
            trace_name: super::TRACE_NAME,
            message: self.message.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        match (self.code, self.subcode) {
            (Some(c), Some(s)) => write!(f, " (code {c}, subcode {s}")?,
            (Some(c), None) => write!(f, " (code {c}")?,
            _ => {
                if let Some(status) = self.http_status {
                    write!(f, " (HTTP {status}")?;
                } else {
                    return Ok(());
                }
            }
        }
        if let Some(t) = &self.fbtrace_id {
            write!(f, ", fbtrace_id {t}")?;
        }
        f.write_str(")")
    }
}

/// What to do with a request's events.
#[derive(Debug, Clone, PartialEq)]
pub enum Classification {
    /// Accepted. `events_received` as Meta counted them.
    Delivered {
        events_received: Option<u64>,
        fbtrace_id: Option<String>,
    },
    /// Transient (network, 5xx, codes 1/2, `is_transient`): retry the same events later.
    Retry(ApiError),
    /// Rate limited, or told when to come back (`Retry-After`): pause the destination (for
    /// `regain` when Meta estimates it) and retry without spending an attempt.
    Throttle {
        error: ApiError,
        regain: Option<Duration>,
    },
    /// An event-level validation error (code 100 with a 2804xxx-style subcode): batches are
    /// all-or-nothing, so split the batch to isolate the bad events and deliver the rest.
    RejectEvents(ApiError),
    /// A request-level error: the request, not its events, is refused (invalid token, unknown
    /// path or version, missing permission or `appsecret_proof`, unknown pixel). Every request to
    /// this destination would fail the same way, so splitting is pointless: hold the destination
    /// (no attempt spent) until its configuration changes, with one alert.
    HoldDestination { error: ApiError, cause: AlertCause },
}

/// Throttling codes (*rate-limiting*): app, user, page, application, ad account, BUC.
fn is_throttle_code(code: i64) -> bool {
    matches!(code, 4 | 17 | 32 | 341 | 613) || (80000..=80014).contains(&code)
}

/// The class of a Graph error code, by code and subcode alone (never the localised text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttled: pause, no attempt spent.
    Throttle,
    /// Try the same events again later.
    Transient,
    /// One or more events are invalid: isolate them.
    Event,
    /// The request or the destination's configuration is wrong, with the alert to raise.
    Request(AlertCause),
}

/// Classify a Graph error (*error-handling*, *marketing-api error-reference*):
/// - throttling codes first (they are transient, and come with `is_transient`);
/// - 190 is the token (`token_invalid`);
/// - request-level configuration errors: 102 (session), 104 (no token), 2500 (unknown path,
///   e.g. a bad API version), 2635 (deprecated version), 3/10/200–299 (capability,
///   permission), 100 with subcode 33 (unknown object or no access) and 100 *without* a subcode
///   (the request as a whole is malformed, e.g. a missing `appsecret_proof`);
/// - then `is_transient`, codes 1/2, 368 (policy block: later) and 5xx are transient;
/// - code 100 with any other subcode is event-level (the 2804xxx validation family);
/// - anything else, unknown to us, is request-level: splitting a batch cannot fix an error
///   that does not name an event, and a hold costs one request instead of 2n − 1.
pub fn classify_error(
    code: Option<i64>,
    subcode: Option<i64>,
    transient: bool,
    http_status: u16,
) -> ErrorClass {
    match code {
        Some(c) if is_throttle_code(c) => ErrorClass::Throttle,
        Some(190) => ErrorClass::Request(AlertCause::TokenInvalid),
        Some(100) if subcode == Some(33) => ErrorClass::Request(AlertCause::RequestRefused),
        Some(100) if subcode.is_none() => ErrorClass::Request(AlertCause::RequestRefused),
        Some(102 | 104 | 2500 | 2635 | 3 | 10) => ErrorClass::Request(AlertCause::RequestRefused),
        Some(c) if (200..=299).contains(&c) => ErrorClass::Request(AlertCause::RequestRefused),
        _ if transient => ErrorClass::Transient,
        Some(1 | 2 | 368) => ErrorClass::Transient,
        _ if http_status >= 500 => ErrorClass::Transient,
        Some(100) => ErrorClass::Event,
        _ => ErrorClass::Request(AlertCause::RequestRefused),
    }
}

pub fn classify_transport(e: &TransportError) -> Classification {
    Classification::Retry(ApiError {
        message: e.to_string(),
        ..ApiError::default()
    })
}

pub fn classify(resp: &GraphResponse) -> Classification {
    let error = resp.body.as_ref().and_then(|b| b.get("error"));
    if (200..300).contains(&resp.status) && error.is_none() {
        let Some(body) = resp.body.as_ref() else {
            // A 2xx that is not JSON did not come from the Graph API (a proxy?): we cannot tell
            // whether the events were taken, and a resend carries the same event ids.
            return Classification::Retry(ApiError {
                http_status: Some(resp.status),
                message: "unexpected non-JSON success response".into(),
                ..ApiError::default()
            });
        };
        return Classification::Delivered {
            events_received: body.get("events_received").and_then(Value::as_u64),
            fbtrace_id: body
                .get("fbtrace_id")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
    }
    let Some(error) = error else {
        return classify_bare_status(resp);
    };
    let code = error.get("code").and_then(as_i64);
    let subcode = error.get("error_subcode").and_then(as_i64);
    let transient = error
        .get("is_transient")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let title = error
        .get("error_user_title")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("Graph API error");
    let err = ApiError {
        http_status: Some(resp.status),
        code,
        subcode,
        fbtrace_id: error
            .get("fbtrace_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        message: truncate(title.unwrap_or(message), 300),
    };
    let class = classify_error(code, subcode, transient, resp.status);
    match class {
        ErrorClass::Throttle => Classification::Throttle {
            error: err,
            regain: regain(resp),
        },
        ErrorClass::Request(cause) => Classification::HoldDestination { error: err, cause },
        // Told when to come back: a pause, like a throttle, rather than our own backoff.
        ErrorClass::Transient if resp.retry_after.is_some() => Classification::Throttle {
            error: err,
            regain: resp.retry_after,
        },
        ErrorClass::Transient => Classification::Retry(err),
        ErrorClass::Event => Classification::RejectEvents(err),
    }
}

/// When access returns: Meta's usage estimate, else a `Retry-After` header.
fn regain(resp: &GraphResponse) -> Option<Duration> {
    resp.regain_minutes
        .map(|m| Duration::from_secs(m * 60))
        .or(resp.retry_after)
}

/// No Graph error envelope: go by the HTTP status alone.
fn classify_bare_status(resp: &GraphResponse) -> Classification {
    let err = ApiError {
        http_status: Some(resp.status),
        message: match &resp.text {
            Some(t) => format!(
                "HTTP {} without a Graph error body: {}",
                resp.status,
                truncate(t, 120)
            ),
            None => format!("HTTP {} without a Graph error body", resp.status),
        },
        ..ApiError::default()
    };
    match resp.status {
        429 => Classification::Throttle {
            error: err,
            regain: regain(resp),
        },
        408 | 500..=599 if resp.retry_after.is_some() => Classification::Throttle {
            error: err,
            regain: resp.retry_after,
        },
        401 => Classification::HoldDestination {
            error: err,
            cause: AlertCause::TokenInvalid,
        },
        408 | 500..=599 => Classification::Retry(err),
        // 404 and friends from a wrong base URL or proxy: configuration, not the events.
        _ => Classification::HoldDestination {
            error: err,
            cause: AlertCause::RequestRefused,
        },
    }
}

/// Meta sends codes as numbers; tolerate numeric strings.
fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// The alert cause for a single event Meta rejected.
pub fn rejected_event_cause(err: &ApiError) -> AlertCause {
    match (err.code, err.subcode) {
        (Some(100), Some(2804003)) => AlertCause::EventTooOld,
        (Some(100), Some(2804009)) => AlertCause::PurchaseWithoutValue,
        _ => AlertCause::ApiError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(status: u16, body: Value) -> GraphResponse {
        GraphResponse {
            status,
            body: Some(body),
            text: None,
            usage_pct: None,
            regain_minutes: None,
            retry_after: None,
            elapsed: Duration::ZERO,
        }
    }

    fn graph_error(code: i64, subcode: Option<i64>, transient: bool) -> Value {
        json!({"error": {"message": "msg", "type": "OAuthException", "code": code, "error_subcode": subcode,
                          "is_transient": transient, "fbtrace_id": "TRACE"}})
    }

    #[test]
    fn success_reads_events_received() {
        let c = classify(&resp(
            200,
            json!({"events_received": 3, "messages": [], "fbtrace_id": "X"}),
        ));
        assert_eq!(
            c,
            Classification::Delivered {
                events_received: Some(3),
                fbtrace_id: Some("X".into())
            }
        );
    }

    #[test]
    fn classifies_by_code_not_status() {
        // RudderStack's mocks pair a 190 body with HTTP 500: the code wins.
        assert!(matches!(
            classify(&resp(500, graph_error(190, Some(463), false))),
            Classification::HoldDestination {
                cause: AlertCause::TokenInvalid,
                ..
            }
        ));
        assert!(
            matches!(classify(&resp(400, graph_error(100, Some(2804003), false))), Classification::RejectEvents(e) if e.subcode == Some(2804003))
        );
        assert!(matches!(
            classify(&resp(400, graph_error(100, Some(33), false))),
            Classification::HoldDestination { .. }
        ));
        for code in [4, 17, 32, 341, 613, 80004, 80014] {
            assert!(
                matches!(
                    classify(&resp(400, graph_error(code, None, false))),
                    Classification::Throttle { .. }
                ),
                "{code}"
            );
        }
        for code in [1, 2] {
            assert!(
                matches!(
                    classify(&resp(500, graph_error(code, None, true))),
                    Classification::Retry(_)
                ),
                "{code}"
            );
        }
        assert!(matches!(
            classify(&resp(400, graph_error(12345, None, true))),
            Classification::Retry(_)
        ));
        assert!(matches!(
            classify(&resp(400, graph_error(200, None, false))),
            Classification::HoldDestination { .. }
        ));
    }

    #[test]
    fn request_level_errors_hold_the_destination_and_event_level_errors_split() {
        for (code, subcode) in [
            (102, None),
            (104, None),
            (2500, None),
            (2635, None),
            (100, None),
            (100, Some(33)),
            (3, None),
            (10, None),
            (200, None),
            (294, None),
            (99999, None),
        ] {
            assert!(
                matches!(
                    classify(&resp(400, graph_error(code, subcode, false))),
                    Classification::HoldDestination {
                        cause: AlertCause::RequestRefused,
                        ..
                    }
                ),
                "{code}/{subcode:?}"
            );
        }
        assert!(matches!(
            classify(&resp(401, graph_error(190, None, false))),
            Classification::HoldDestination {
                cause: AlertCause::TokenInvalid,
                ..
            }
        ));
        for subcode in [2804001, 2804003, 2804009, 2804050] {
            assert!(
                matches!(
                    classify(&resp(400, graph_error(100, Some(subcode), false))),
                    Classification::RejectEvents(_)
                ),
                "{subcode}"
            );
        }
        // `is_transient` wins over an unknown code, not over the token or a configuration error.
        assert!(matches!(
            classify(&resp(400, graph_error(99999, None, true))),
            Classification::Retry(_)
        ));
        assert!(matches!(
            classify(&resp(400, graph_error(190, None, true))),
            Classification::HoldDestination { .. }
        ));
    }

    #[test]
    fn retry_after_turns_a_transient_error_into_a_pause_of_that_length() {
        let mut r = resp(503, graph_error(2, None, true));
        r.retry_after = Some(Duration::from_secs(7));
        assert!(
            matches!(classify(&r), Classification::Throttle { regain: Some(d), .. } if d == Duration::from_secs(7))
        );
        let bare = GraphResponse {
            status: 503,
            body: None,
            text: None,
            usage_pct: None,
            regain_minutes: None,
            retry_after: Some(Duration::from_secs(3)),
            elapsed: Duration::ZERO,
        };
        assert!(
            matches!(classify(&bare), Classification::Throttle { regain: Some(d), .. } if d == Duration::from_secs(3))
        );
    }

    #[test]
    fn html_and_bare_statuses() {
        let html = GraphResponse {
            status: 502,
            body: None,
            text: Some("<html>bad gateway</html>".into()),
            usage_pct: None,
            regain_minutes: None,
            retry_after: None,
            elapsed: Duration::ZERO,
        };
        assert!(matches!(classify(&html), Classification::Retry(_)));
        let throttled = GraphResponse {
            status: 429,
            regain_minutes: Some(2),
            ..html.clone()
        };
        assert!(
            matches!(classify(&throttled), Classification::Throttle { regain: Some(d), .. } if d == Duration::from_secs(120))
        );
        let not_found = GraphResponse {
            status: 404,
            ..html
        };
        assert!(matches!(
            classify(&not_found),
            Classification::HoldDestination { .. }
        ));
    }

    #[test]
    fn throttle_uses_regain_estimate() {
        let mut r = resp(400, graph_error(80004, Some(2446079), false));
        r.regain_minutes = Some(19);
        assert!(
            matches!(classify(&r), Classification::Throttle { regain: Some(d), .. } if d == Duration::from_secs(19 * 60))
        );
    }

    #[test]
    fn prefers_user_title_and_truncates() {
        let body = json!({"error": {"message": "Invalid parameter", "code": 100, "error_subcode": 2804003,
                                     "error_user_title": "Event Timestamp Too Old", "fbtrace_id": "T"}});
        let Classification::RejectEvents(e) = classify(&resp(400, body)) else {
            panic!("expected RejectEvents")
        };
        assert_eq!(e.message, "Event Timestamp Too Old");
        assert_eq!(rejected_event_cause(&e), AlertCause::EventTooOld);
        assert_eq!(
            e.to_string(),
            "Event Timestamp Too Old (code 100, subcode 2804003, fbtrace_id T)"
        );
    }
}
