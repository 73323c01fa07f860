//! What a delivery reports, in the terms every platform maps into: one [`EventResult`] per
//! event handed to it, with a neutral [`DeliveryError`] when the event was not delivered. The
//! pipeline folds these into job outcomes, the delivery audit and alerts without knowing which
//! platform answered.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::alerts::AlertCause;

/// One event ready to send. `key` is the caller's handle to map results back.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub key: usize,
    /// The job the event is sent for: its own lease may be in doubt ([`crate::queue::Lease::doubtful`]).
    pub job: i64,
    pub event_id: String,
    /// The encoded event (encoded once, reused by the audit and by every split of a batch).
    pub json: Arc<str>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    Delivered,
    /// Transient failure: retry later with the same event id.
    Retry,
    /// The destination is throttled until then; retry without spending an attempt.
    Throttled {
        until: DateTime<Utc>,
    },
    /// The destination is held: its requests are refused for a reason of configuration (an
    /// invalid token, a missing permission), not for the events. Retried at `until` without
    /// spending an attempt, and sent once the configuration changes. `alert` is set on one
    /// event of the request that found the problem: one alert per hold, not per event.
    Held {
        until: DateTime<Utc>,
        cause: AlertCause,
        alert: bool,
    },
    /// Permanent for this event (or for the destination), with the alert to raise.
    Failed {
        cause: AlertCause,
    },
    /// Not sent because the worker is shutting down.
    NotStarted,
    /// Not sent because the worker's lease on the job might lapse before the request ends:
    /// another worker may be sending it by then.
    LeaseLost,
}

impl EventOutcome {
    /// The `outcome` label of `stagecast_events_total`.
    pub fn label(&self) -> &'static str {
        match self {
            EventOutcome::Delivered => "delivered",
            EventOutcome::Retry => "retry",
            EventOutcome::Throttled { .. } => "throttled",
            EventOutcome::Held { .. } => "held",
            EventOutcome::Failed { .. } => "failed",
            EventOutcome::NotStarted => "not_started",
            EventOutcome::LeaseLost => "lease_lost",
        }
    }
}

/// The result of one event of a delivery.
#[derive(Debug, Clone)]
pub struct EventResult {
    pub key: usize,
    pub outcome: EventOutcome,
    pub http_status: Option<u16>,
    pub error: Option<DeliveryError>,
    /// What the API answered (success or error envelope) as JSON text, for the audit. Shared by
    /// all events of the request: serialized once, not once per event.
    pub response: Option<Arc<str>>,
}

/// An error as a platform (or the transport) reported it, mapped by the platform into fields
/// every platform has. Holds no token and no PII. Stored in `stagecast.deliveries`
/// (`error_code`, `error_subcode`, `trace_id`, `error`) and quoted by alerts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryError {
    pub http_status: Option<u16>,
    /// The platform's own error code, as text: numeric codes (`190`) and symbolic ones
    /// (`RESOURCE_EXHAUSTED`) alike.
    pub code: Option<String>,
    /// A finer numeric code, where the platform has one.
    pub subcode: Option<i64>,
    /// The platform's id of the failed request, for its support.
    pub trace_id: Option<String>,
    /// What the platform's documentation calls that id (Meta: `fbtrace_id`), so messages use the
    /// name its support asks for. Empty: `trace_id`.
    pub trace_name: &'static str,
    /// Short human text: the platform's message, or the transport failure.
    pub message: String,
}

impl DeliveryError {
    /// A failure with no platform answer (network, timeout, a pause before sending).
    pub fn local(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }

    pub fn trace_name(&self) -> &'static str {
        if self.trace_name.is_empty() {
            "trace_id"
        } else {
            self.trace_name
        }
    }

    /// A small audit record for an error without a response body, as JSON text.
    pub fn transport_record(&self) -> Arc<str> {
        Arc::from(json!({ "transport_error": self.message }).to_string())
    }
}

/// `message (code c, subcode s, fbtrace_id t)`, or `message (HTTP 502)` without a code.
impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        match (&self.code, self.subcode) {
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
        if let Some(t) = &self.trace_id {
            write!(f, ", {} {t}", self.trace_name())?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_code_and_the_trace_as_the_platform_calls_it() {
        let e = DeliveryError {
            http_status: Some(400),
            code: Some("100".into()),
            subcode: Some(2804003),
            trace_id: Some("T".into()),
            trace_name: "fbtrace_id",
            message: "Event Timestamp Too Old".into(),
        };
        assert_eq!(
            e.to_string(),
            "Event Timestamp Too Old (code 100, subcode 2804003, fbtrace_id T)"
        );
        let symbolic = DeliveryError {
            code: Some("RESOURCE_EXHAUSTED".into()),
            trace_id: Some("r1".into()),
            message: "quota".into(),
            ..DeliveryError::default()
        };
        assert_eq!(
            symbolic.to_string(),
            "quota (code RESOURCE_EXHAUSTED, trace_id r1)"
        );
        let bare = DeliveryError {
            http_status: Some(502),
            message: "bad gateway".into(),
            ..DeliveryError::default()
        };
        assert_eq!(bare.to_string(), "bad gateway (HTTP 502)");
        assert_eq!(DeliveryError::local("timed out").to_string(), "timed out");
        assert_eq!(
            &*DeliveryError::local("timed out").transport_record(),
            r#"{"transport_error":"timed out"}"#
        );
    }
}
