//! *Whether* to retry (Vector's `RetryLogic`): classify an Events API answer by its top-level
//! `code`, never by message text. TikTok answers HTTP 200 for its own errors, so the status
//! matters only when there is no TikTok body (a gateway's 5xx, a wrong base URL).
//!
//! | code | class |
//! |---|---|
//! | 0 | delivered |
//! | 20001 | delivered (integrations treat it as a partial success; its meaning is undocumented, so it is logged and counted) |
//! | 40100 | throttled: pause the destination, retry without spending an attempt |
//! | 40105, 40104 | the token: hold the destination (`token_invalid`, no attempt spent) until its token changes |
//! | 40001 | no permission on the pixel / event set: fail the destination |
//! | 40002 and other 4xxxx | invalid events: split the batch to isolate them |
//! | 5xxxx, HTTP 5xx, 408, timeouts | retry with the same `event_id` |
//!
//! (TikTok's return-code appendix of the Marketing API, and what RudderStack's integration does
//! with them, `rudder-transformer` `src/v0/destinations/tiktok_ads/networkHandler.js`.)

use serde_json::Value;

use super::client::{TrackResponse, TransportError};
use crate::alerts::AlertCause;
use crate::platforms::outcome::DeliveryError;

/// An error as TikTok (or the transport) reported it. Holds no token and no PII.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiError {
    pub http_status: Option<u16>,
    pub code: Option<i64>,
    pub request_id: Option<String>,
    pub message: String,
}

impl ApiError {
    /// The neutral form every platform maps into.
    pub fn to_delivery_error(&self) -> DeliveryError {
        DeliveryError {
            http_status: self.http_status,
            code: self.code.map(|c| c.to_string()),
            subcode: None,
            trace_id: self.request_id.clone(),
            trace_name: super::TRACE_NAME,
            message: self.message.clone(),
        }
    }

    fn local(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_delivery_error().fmt(f)
    }
}

/// What to do with a request's events.
#[derive(Debug, Clone, PartialEq)]
pub enum Classification {
    /// Accepted. `partial` for code 20001.
    Delivered {
        request_id: Option<String>,
        partial: bool,
    },
    /// Transient: retry the same events later.
    Retry(ApiError),
    /// Rate limited (40100): pause the destination, retry without spending an attempt.
    Throttle(ApiError),
    /// At least one event is invalid: split the batch to isolate it.
    RejectEvents(ApiError),
    /// The token was refused: nothing sent with it can succeed, so the destination is held
    /// (no attempt spent) until its token changes (`platforms::holds`).
    HoldDestination { error: ApiError, cause: AlertCause },
    /// Nothing sent to this destination can succeed until its configuration is fixed.
    FailDestination { error: ApiError, cause: AlertCause },
}

pub fn classify_transport(e: &TransportError) -> Classification {
    Classification::Retry(ApiError::local(e.to_string()))
}

/// TikTok sends codes as numbers; tolerate numeric strings.
fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

pub fn classify(resp: &TrackResponse) -> Classification {
    let code = resp
        .body
        .as_ref()
        .and_then(|b| b.get("code"))
        .and_then(as_i64);
    let Some(code) = code else {
        return classify_bare_status(resp);
    };
    let body = resp.body.as_ref();
    let request_id = body
        .and_then(|b| b.get("request_id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = body
        .and_then(|b| b.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("TikTok Events API error");
    let err = ApiError {
        http_status: Some(resp.status),
        code: Some(code),
        request_id: request_id.clone(),
        message: truncate(message, 300),
    };
    match code {
        0 => Classification::Delivered {
            request_id,
            partial: false,
        },
        20001 => Classification::Delivered {
            request_id,
            partial: true,
        },
        40100 => Classification::Throttle(err),
        40104 | 40105 => Classification::HoldDestination {
            error: err,
            cause: AlertCause::TokenInvalid,
        },
        40001 => Classification::FailDestination {
            error: err,
            cause: AlertCause::ApiError,
        },
        50000..=59999 => Classification::Retry(err),
        _ if resp.status >= 500 => Classification::Retry(err),
        // Any other code is permanent for these events; isolate them.
        _ => Classification::RejectEvents(err),
    }
}

/// No TikTok envelope: go by the HTTP status alone.
fn classify_bare_status(resp: &TrackResponse) -> Classification {
    let err = ApiError {
        http_status: Some(resp.status),
        message: match &resp.text {
            Some(t) => format!(
                "HTTP {} without a TikTok answer: {}",
                resp.status,
                truncate(t, 120)
            ),
            None => format!("HTTP {} without a TikTok answer", resp.status),
        },
        ..ApiError::default()
    };
    match resp.status {
        // A 2xx that is not TikTok's envelope (a proxy?): we cannot tell whether the events
        // were taken, and a resend carries the same event ids.
        200..=299 => Classification::Retry(err),
        429 => Classification::Throttle(err),
        401 | 403 => Classification::HoldDestination {
            error: err,
            cause: AlertCause::TokenInvalid,
        },
        408 | 500..=599 => Classification::Retry(err),
        // 404 and friends from a wrong base URL or proxy: configuration, not the events.
        _ => Classification::FailDestination {
            error: err,
            cause: AlertCause::ApiError,
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(status: u16, body: Value) -> TrackResponse {
        TrackResponse {
            status,
            body: Some(body),
            text: None,
        }
    }

    fn answer(code: i64) -> TrackResponse {
        resp(
            200,
            json!({"code": code, "message": "m", "request_id": "R1", "data": {}}),
        )
    }

    #[test]
    fn classifies_by_code() {
        assert_eq!(
            classify(&answer(0)),
            Classification::Delivered {
                request_id: Some("R1".into()),
                partial: false
            }
        );
        assert!(matches!(
            classify(&answer(20001)),
            Classification::Delivered { partial: true, .. }
        ));
        assert!(matches!(
            classify(&answer(40100)),
            Classification::Throttle(_)
        ));
        for code in [40104, 40105] {
            assert!(matches!(
                classify(&answer(code)),
                Classification::HoldDestination {
                    cause: AlertCause::TokenInvalid,
                    ..
                }
            ));
        }
        assert!(matches!(
            classify(&answer(40001)),
            Classification::FailDestination {
                cause: AlertCause::ApiError,
                ..
            }
        ));
        assert!(matches!(
            classify(&answer(40002)),
            Classification::RejectEvents(_)
        ));
        assert!(matches!(classify(&answer(50000)), Classification::Retry(_)));
        assert!(matches!(classify(&answer(51001)), Classification::Retry(_)));
        // A string code is still a code.
        assert!(matches!(
            classify(&resp(200, json!({"code": "40100"}))),
            Classification::Throttle(_)
        ));
    }

    #[test]
    fn bare_statuses() {
        let bare = |status| TrackResponse {
            status,
            body: None,
            text: Some("<html>".into()),
        };
        assert!(matches!(classify(&bare(502)), Classification::Retry(_)));
        assert!(matches!(classify(&bare(200)), Classification::Retry(_)));
        assert!(matches!(classify(&bare(429)), Classification::Throttle(_)));
        assert!(matches!(
            classify(&bare(401)),
            Classification::HoldDestination {
                cause: AlertCause::TokenInvalid,
                ..
            }
        ));
        assert!(matches!(
            classify(&bare(404)),
            Classification::FailDestination {
                cause: AlertCause::ApiError,
                ..
            }
        ));
    }

    #[test]
    fn errors_name_the_code_and_request_id() {
        let Classification::RejectEvents(e) = classify(&answer(40002)) else {
            panic!()
        };
        assert_eq!(e.to_string(), "m (code 40002, request_id R1)");
        let d = e.to_delivery_error();
        assert_eq!(d.code.as_deref(), Some("40002"));
        assert_eq!(d.trace_id.as_deref(), Some("R1"));
    }
}
