//! Whether to retry: an answer of `uploadClickConversions` classified by Google's error codes
//! ("Error types", "Handle partial failures", `ConversionUploadError`). *When* to retry is the
//! queue's backoff, except where Google says when: `TOO_RECENT_EVENT` (hours later) and the
//! daily quota (`RESOURCE_EXHAUSTED`, the next day).
//!
//! Row errors come back with HTTP 200 in `partialFailureError`, each locating its row by
//! `location.fieldPathElements[{fieldName: "conversions", index}]`: rows are matched by that
//! index, never by the order or number of errors.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::client::{TransportError, UploadResponse};
use crate::alerts::AlertCause;
use crate::platforms::outcome::DeliveryError;

/// Google asks to wait at least six hours after a click or a new conversion action.
pub const TOO_RECENT_WAIT: Duration = Duration::from_secs(6 * 3600 + 600);

/// What to do with one row of a request that Google answered row by row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    Delivered,
    /// Delivered before (same order id or same click and time): done.
    AlreadyDelivered,
    Retry(DeliveryError),
    /// Not before `wait` has passed.
    Later(DeliveryError, Duration),
    Failed(DeliveryError, AlertCause),
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Classification {
    /// HTTP 200: one outcome per row, in the request's order.
    Rows(Vec<RowOutcome>),
    /// Transient (5xx, network, `INTERNAL_ERROR`, `CONCURRENT_MODIFICATION`).
    Retry(DeliveryError),
    /// Short-term throttling (429, `RESOURCE_TEMPORARILY_EXHAUSTED`), with Google's
    /// `retryDelay` when it gave one.
    Throttle(DeliveryError, Option<Duration>),
    /// The daily operations quota is spent: retry at this time.
    QuotaSpent(DeliveryError, DateTime<Utc>),
    /// HTTP 401: the access token expired or was revoked; refresh it and try once more.
    Unauthenticated(DeliveryError),
    /// The destination's configuration is refused (permission, customer, conversion action):
    /// every request would fail the same way.
    Hold(DeliveryError, AlertCause),
    /// The request itself is refused (a malformed body): its events fail.
    Fail(DeliveryError),
}

/// The first error code of an error (`{"conversionUploadError": "CLICK_NOT_FOUND"}` →
/// `CLICK_NOT_FOUND`).
fn error_code(error: &Value) -> Option<String> {
    error
        .get("errorCode")?
        .as_object()?
        .values()
        .find_map(Value::as_str)
        .map(str::to_string)
}

fn row_index(error: &Value) -> Option<usize> {
    error
        .pointer("/location/fieldPathElements")?
        .as_array()?
        .iter()
        .find(|e| e.get("fieldName").and_then(Value::as_str) == Some("conversions"))?
        .get("index")?
        .as_u64()
        .map(|i| i as usize)
}

/// `GoogleAdsFailure.errors[]` of a `google.rpc.Status`'s details, and the request id.
fn failures(status: &Value) -> (Vec<&Value>, Option<String>) {
    let mut errors = Vec::new();
    let mut request_id = None;
    for d in status
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(id) = d.get("requestId").and_then(Value::as_str) {
            request_id.get_or_insert_with(|| id.to_string());
        }
        errors.extend(
            d.get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    (errors, request_id)
}

fn delivery_error(
    http_status: Option<u16>,
    code: Option<String>,
    request_id: Option<String>,
    message: impl Into<String>,
) -> DeliveryError {
    DeliveryError {
        http_status,
        code,
        subcode: None,
        trace_id: request_id,
        trace_name: super::TRACE_NAME,
        message: message.into(),
    }
}

fn row_outcome(code: &str, error: DeliveryError) -> RowOutcome {
    match code {
        "CLICK_CONVERSION_ALREADY_EXISTS" | "ORDER_ID_ALREADY_IN_USE" => {
            RowOutcome::AlreadyDelivered
        }
        "TOO_RECENT_EVENT" | "TOO_RECENT_CONVERSION_ACTION" => {
            RowOutcome::Later(error, TOO_RECENT_WAIT)
        }
        "EXPIRED_EVENT" | "EXPIRED_CLICK" => RowOutcome::Failed(error, AlertCause::ClickTooOld),
        // The click is not this account's (or not Google's): nothing to fix for the row, and
        // an agent should read that, not a raw API error ("ConversionUploadError").
        "CLICK_NOT_FOUND" | "INVALID_CUSTOMER_FOR_CLICK" => {
            RowOutcome::Failed(error, AlertCause::ClickNotFound)
        }
        "INTERNAL_ERROR" | "TRANSIENT_ERROR" | "DEADLINE_EXCEEDED" | "CONCURRENT_MODIFICATION" => {
            RowOutcome::Retry(error)
        }
        _ => RowOutcome::Failed(error, AlertCause::ApiError),
    }
}

/// How bad an outcome is, to pick one when a row has several errors.
fn severity(o: &RowOutcome) -> u8 {
    match o {
        RowOutcome::Delivered => 0,
        RowOutcome::AlreadyDelivered => 1,
        RowOutcome::Retry(_) => 2,
        RowOutcome::Later(..) => 3,
        RowOutcome::Failed(..) => 4,
    }
}

/// The rows of a 200 answer to a request of `rows` conversions.
fn rows(body: &Value, rows: usize) -> Vec<RowOutcome> {
    let mut out = vec![RowOutcome::Delivered; rows];
    let Some(status) = body.get("partialFailureError") else {
        return out;
    };
    // A partialFailureError with code 0 is a success (seen in practice).
    if status.get("code").and_then(Value::as_i64).unwrap_or(0) == 0 {
        return out;
    }
    let (errors, request_id) = failures(status);
    let whole = status
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("partial failure");
    if errors.is_empty() {
        // A failure that names no row: no row can be taken as delivered.
        let e = delivery_error(Some(200), None, request_id, whole);
        return vec![RowOutcome::Failed(e, AlertCause::ApiError); rows];
    }
    for error in errors {
        let code = error_code(error).unwrap_or_default();
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or(whole);
        let outcome = row_outcome(
            &code,
            delivery_error(Some(200), Some(code.clone()), request_id.clone(), message),
        );
        let targets: Vec<usize> = match row_index(error) {
            Some(i) if i < rows => vec![i],
            Some(_) => continue,
            None => (0..rows).collect(),
        };
        for i in targets {
            if severity(&outcome) > severity(&out[i]) {
                out[i] = outcome.clone();
            }
        }
    }
    out
}

/// The next 08:00 UTC (midnight in California, where Google's daily quotas roll over), at
/// least an hour away.
fn next_quota_day(now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now
        .date_naive()
        .and_hms_opt(8, 0, 0)
        .expect("valid time")
        .and_utc();
    let next = if today > now + chrono::Duration::hours(1) {
        today
    } else {
        today + chrono::Duration::days(1)
    };
    next.max(now + chrono::Duration::hours(1))
}

fn retry_delay(status: &Value) -> Option<Duration> {
    // `details[].errors[].details.quotaErrorDetails.retryDelay` is a protobuf Duration ("30s").
    let (errors, _) = failures(status);
    errors.iter().find_map(|e| {
        let d = e
            .pointer("/details/quotaErrorDetails/retryDelay")?
            .as_str()?;
        let secs: f64 = d.strip_suffix('s')?.parse().ok()?;
        (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
    })
}

/// Classify an answer to a request of `row_count` conversions.
pub fn classify(r: &UploadResponse, row_count: usize, now: DateTime<Utc>) -> Classification {
    if r.status == 200 {
        return match &r.body {
            Some(body) => Classification::Rows(rows(body, row_count)),
            // A 200 that is not JSON did not say what it took: send again (same order ids).
            None => Classification::Retry(delivery_error(
                Some(200),
                None,
                None,
                "HTTP 200 without a JSON body",
            )),
        };
    }
    let status = r.body.as_ref().and_then(|b| b.get("error"));
    let (errors, request_id) = status.map(failures).unwrap_or_default();
    let code = errors.iter().find_map(|e| error_code(e)).or_else(|| {
        status
            .and_then(|s| s.get("status"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let message = status
        .and_then(|s| s.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| r.text.clone())
        .unwrap_or_else(|| format!("HTTP {}", r.status));
    let error = delivery_error(Some(r.status), code.clone(), request_id, message);
    match (r.status, code.as_deref().unwrap_or("")) {
        (_, "RESOURCE_EXHAUSTED") => Classification::QuotaSpent(error, next_quota_day(now)),
        (429, _) | (_, "RESOURCE_TEMPORARILY_EXHAUSTED") => {
            let delay = status.and_then(retry_delay);
            Classification::Throttle(error, delay)
        }
        (
            _,
            "CONCURRENT_MODIFICATION" | "INTERNAL_ERROR" | "TRANSIENT_ERROR" | "DEADLINE_EXCEEDED",
        ) => Classification::Retry(error),
        (401, _) => Classification::Unauthenticated(error),
        (403, _) => Classification::Hold(error, AlertCause::RequestRefused),
        (
            _,
            "CUSTOMER_NOT_FOUND"
            | "NO_CONVERSION_ACTION_FOUND"
            | "INVALID_CONVERSION_ACTION_TYPE"
            | "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"
            | "CUSTOMER_NOT_ENABLED_ENHANCED_CONVERSIONS_FOR_LEADS"
            | "USER_PERMISSION_DENIED",
        ) => Classification::Hold(error, AlertCause::RequestRefused),
        // A path the API does not have: a wrong --google-ads-api-version or customer id.
        (404, _) => Classification::Hold(error, AlertCause::RequestRefused),
        (s, _) if s >= 500 || s == 408 => Classification::Retry(error),
        _ => Classification::Fail(error),
    }
}

pub fn classify_transport(e: &TransportError) -> Classification {
    Classification::Retry(delivery_error(None, None, None, e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer(status: u16, body: Value) -> UploadResponse {
        UploadResponse {
            status,
            body: Some(body),
            text: None,
        }
    }

    fn row_error(index: usize, code: &str) -> Value {
        json!({"errorCode": {"conversionUploadError": code}, "message": code,
               "location": {"fieldPathElements": [{"fieldName": "conversions", "index": index},
                                                  {"fieldName": "gclid"}]}})
    }

    fn partial(errors: Vec<Value>) -> Value {
        json!({"partialFailureError": {"code": 3, "message": "failed",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                         "errors": errors, "requestId": "req-1"}]},
               "results": []})
    }

    #[test]
    fn row_errors_go_to_the_rows_their_index_names() {
        let now = Utc::now();
        let body = partial(vec![
            row_error(3, "EXPIRED_EVENT"),
            row_error(1, "ORDER_ID_ALREADY_IN_USE"),
            row_error(2, "TOO_RECENT_EVENT"),
            row_error(0, "UNPARSEABLE_GCLID"),
            row_error(4, "CLICK_NOT_FOUND"),
            row_error(5, "INVALID_CUSTOMER_FOR_CLICK"),
        ]);
        let Classification::Rows(rows) = classify(&answer(200, body), 7, now) else {
            panic!("rows");
        };
        assert!(
            matches!(&rows[0], RowOutcome::Failed(e, AlertCause::ApiError) if e.code.as_deref() == Some("UNPARSEABLE_GCLID") && e.trace_id.as_deref() == Some("req-1"))
        );
        assert_eq!(rows[1], RowOutcome::AlreadyDelivered);
        assert!(matches!(&rows[2], RowOutcome::Later(_, w) if *w >= Duration::from_secs(6 * 3600)));
        assert!(matches!(
            &rows[3],
            RowOutcome::Failed(_, AlertCause::ClickTooOld)
        ));
        assert!(matches!(
            &rows[4],
            RowOutcome::Failed(_, AlertCause::ClickNotFound)
        ));
        assert!(matches!(
            &rows[5],
            RowOutcome::Failed(_, AlertCause::ClickNotFound)
        ));
        assert_eq!(rows[6], RowOutcome::Delivered);
    }

    #[test]
    fn code_zero_and_no_error_are_success() {
        let now = Utc::now();
        let ok = classify(&answer(200, json!({"results": [{}, {}]})), 2, now);
        assert_eq!(ok, Classification::Rows(vec![RowOutcome::Delivered; 2]));
        let zero = classify(
            &answer(200, json!({"partialFailureError": {"code": 0}})),
            1,
            now,
        );
        assert_eq!(zero, Classification::Rows(vec![RowOutcome::Delivered]));
    }

    #[test]
    fn request_errors_are_classified() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let google = |status: u16, code: &str| {
            answer(
                status,
                json!({"error": {"code": status, "message": code, "status": "X",
                "details": [{"errors": [{"errorCode": {"quotaError": code},
                    "details": {"quotaErrorDetails": {"retryDelay": "30s"}}}]}]}}),
            )
        };
        match classify(&google(429, "RESOURCE_EXHAUSTED"), 1, now) {
            Classification::QuotaSpent(_, at) => {
                assert_eq!(at.to_rfc3339(), "2026-12-02T08:00:00+00:00")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(&google(429, "RESOURCE_TEMPORARILY_EXHAUSTED"), 1, now),
            Classification::Throttle(_, Some(d)) if d == Duration::from_secs(30)
        ));
        assert!(matches!(
            classify(&google(400, "CONCURRENT_MODIFICATION"), 1, now),
            Classification::Retry(_)
        ));
        assert!(matches!(
            classify(&google(401, "OAUTH_TOKEN_EXPIRED"), 1, now),
            Classification::Unauthenticated(_)
        ));
        assert!(matches!(
            classify(&google(403, "USER_PERMISSION_DENIED"), 1, now),
            Classification::Hold(_, AlertCause::RequestRefused)
        ));
        assert!(matches!(
            classify(&google(503, "X"), 1, now),
            Classification::Retry(_)
        ));
        assert!(matches!(
            classify(&google(400, "REQUIRED"), 1, now),
            Classification::Fail(_)
        ));
    }
}
