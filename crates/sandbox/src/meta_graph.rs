//! HTTP side of the sandbox: routes, auth, body decoding, fault injection and the Graph error envelope.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State as AxumState};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Map, Value};

use super::validate::{self, EventError};
use super::{urlencoded, AuthMethod, Fault, ReceivedEvent, RequestRecord, State, TokenCheck};

/// Graph caps a CAPI request at 1,000 events (*using-the-api*).
const MAX_EVENTS: usize = 1000;
/// Meta documents no byte limit; this only keeps a runaway client from exhausting memory.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

const USAGE_HEADER: HeaderName = HeaderName::from_static("x-business-use-case-usage");
const TRACE_HEADER: HeaderName = HeaderName::from_static("x-fb-trace-id");

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/{version}/{pixel_id}/events", post(post_events))
        .route("/{version}/{object_id}", get(get_object))
        // The same parameter name as the events route: the router needs one per position.
        .route("/{version}/{pixel_id}/dataset", get(get_waba_dataset))
        .fallback(unknown_path)
        .method_not_allowed_fallback(unsupported_method)
        .with_state(state)
}

/// A Graph API error, rendered as the `{"error":{…}}` envelope of *error-handling*.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: Graph error {code}/{subcode:?}: {message}")]
pub(crate) struct GraphError {
    status: StatusCode,
    code: i64,
    subcode: Option<i64>,
    message: String,
    is_transient: bool,
    /// Set for per-event validation errors only; boxed to keep the common error small.
    event: Option<Box<EventDetail>>,
    /// Overrides the configured `X-Business-Use-Case-Usage` (throttling faults).
    usage: Option<HeaderValue>,
    /// A `Retry-After` header, in seconds ([`Fault::RetryAfter`]).
    retry_after: Option<u64>,
}

/// What a per-event validation error adds to the envelope.
#[derive(Debug)]
struct EventDetail {
    user_title: String,
    user_msg: String,
    /// Offending field (`data[3].user_data.em`), echoed in `error_data.blame_field_specs`.
    blame: String,
}

impl GraphError {
    fn new(
        status: StatusCode,
        code: i64,
        subcode: Option<i64>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            subcode,
            message: message.into(),
            is_transient: false,
            event: None,
            usage: None,
            retry_after: None,
        }
    }

    fn transient(mut self) -> Self {
        self.is_transient = true;
        self
    }

    /// Code 100 without subcode: the request as a whole is malformed.
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 100, None, message)
    }

    fn unknown_path(path: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            2500,
            None,
            format!("Unknown path components: {path}"),
        )
    }

    fn token_required() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            104,
            None,
            "An access token is required to request this resource.",
        )
    }

    /// Unknown token: 401/190 without subcode, as Graph answers a token it cannot parse (observed;
    /// *error-handling* documents code 190).
    /// Subcode 463 (expired) is kept for [`Fault::InvalidToken`], so tests can tell the two apart.
    fn token_unknown() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        )
    }

    fn no_such_object(method: &str, id: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            format!(
                "Unsupported {method} request. Object with ID '{id}' does not exist, cannot be loaded due to missing \
                 permissions, or does not support this operation."
            ),
        )
    }

    fn into_response(self, usage: Option<HeaderValue>) -> Response {
        let trace = fbtrace_id();
        let mut error = Map::new();
        error.insert("message".into(), self.message.into());
        error.insert("type".into(), "OAuthException".into());
        error.insert("code".into(), self.code.into());
        // Graph omits the keys it has no value for; clients must cope with that anyway.
        if let Some(subcode) = self.subcode {
            error.insert("error_subcode".into(), subcode.into());
        }
        error.insert("is_transient".into(), self.is_transient.into());
        if let Some(detail) = self.event {
            let EventDetail {
                user_title,
                user_msg,
                blame,
            } = *detail;
            error.insert("error_user_title".into(), user_title.into());
            error.insert("error_user_msg".into(), user_msg.into());
            error.insert(
                "error_data".into(),
                json!({ "blame_field_specs": [[blame]] }),
            );
        }
        error.insert("fbtrace_id".into(), trace.clone().into());
        let mut response = json_response(
            self.status,
            json!({ "error": error }),
            &trace,
            self.usage.or(usage),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<EventError> for GraphError {
    fn from(e: EventError) -> Self {
        let blame = e.blame_path();
        let mut err = Self::new(
            StatusCode::BAD_REQUEST,
            100,
            Some(e.subcode),
            format!("Invalid parameter ({blame})"),
        );
        err.event = Some(Box::new(EventDetail {
            user_title: e.title.to_owned(),
            user_msg: format!("{blame}: {}", e.detail),
            blame,
        }));
        err
    }
}

fn throttle_message(code: i64) -> &'static str {
    match code {
        4 => "Application request limit reached",
        17 => "User request limit reached",
        32 => "Page request limit reached",
        341 => "Application limit reached",
        613 => "Calls to this api have exceeded the rate limit.",
        80000..=80014 => {
            "There have been too many calls from this ad-account. Wait a bit and try again."
        }
        _ => "Request limit reached",
    }
}

fn fbtrace_id() -> String {
    // Real ids look like "ATHEd8F7ddsITPV0fE5TWjY": 23 base64-ish characters.
    let mut id = String::with_capacity(23);
    id.push('A');
    Alphanumeric.append_string(&mut rand::rng(), &mut id, 22);
    id
}

fn json_response(
    status: StatusCode,
    body: Value,
    trace: &str,
    usage: Option<HeaderValue>,
) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(trace) {
        headers.insert(TRACE_HEADER, v);
    }
    if let Some(usage) = usage {
        headers.insert(USAGE_HEADER, usage);
    }
    response
}

fn html_bad_gateway() -> Response {
    let html = "<html><head><title>502 Bad Gateway</title></head>\
                <body><center><h1>502 Bad Gateway</h1></center></body></html>";
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// `v<digits>.0`, the only shape of Graph API versions (*versions*).
fn is_graph_version(s: &str) -> bool {
    s.strip_prefix('v')
        .and_then(|r| r.strip_suffix(".0"))
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The token of a request, by precedence: Bearer header, then `?access_token=`, then the body.
fn find_token(
    headers: &HeaderMap,
    query: Option<&str>,
    body_token: Option<String>,
) -> Option<(String, AuthMethod)> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let non_empty = |t: &String| !t.is_empty();
    bearer
        .filter(non_empty)
        .map(|t| (t, AuthMethod::BearerHeader))
        .or_else(|| {
            query
                .and_then(|q| urlencoded::get(q.as_bytes(), "access_token"))
                .filter(non_empty)
                .map(|t| (t, AuthMethod::QueryParam))
        })
        .or_else(|| {
            body_token
                .filter(non_empty)
                .map(|t| (t, AuthMethod::BodyField))
        })
}

/// The parameters of an `/events` body (*using-the-api*), whichever encoding carried them.
#[derive(Default)]
struct EventsBody {
    /// `data` as sent: an array once decoded (a JSON string holding an array is decoded too).
    data: Option<Value>,
    access_token: Option<String>,
    test_event_code: Option<String>,
    partner_agent: Option<String>,
    /// The first problem met while decoding. Kept beside the fields rather than replacing them, so
    /// a form with a valid `access_token` and a broken `data` is answered with code 100, not 104.
    error: Option<GraphError>,
}

impl EventsBody {
    fn failed(error: GraphError) -> Self {
        Self {
            error: Some(error),
            ..Self::default()
        }
    }

    fn note(&mut self, error: GraphError) {
        self.error.get_or_insert(error);
    }
}

fn parse_body(headers: &HeaderMap, bytes: &[u8]) -> EventsBody {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_json = if content_type.contains("json") {
        true
    } else if content_type.contains("x-www-form-urlencoded") {
        false
    } else if content_type.is_empty() {
        // Graph is lenient about a missing content type; sniff.
        bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    } else {
        return EventsBody::failed(GraphError::invalid(format!(
            "Unsupported content type {content_type:?}: send application/json or application/x-www-form-urlencoded"
        )));
    };
    if is_json {
        parse_json_body(bytes)
    } else {
        parse_form_body(bytes)
    }
}

fn parse_json_body(bytes: &[u8]) -> EventsBody {
    let map = match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return EventsBody::failed(GraphError::invalid(
                "The request body must be a JSON object",
            ))
        }
        Err(e) => {
            return EventsBody::failed(GraphError::invalid(format!(
                "The request body is not valid JSON: {e}"
            )))
        }
    };
    let mut body = EventsBody::default();
    for (name, value) in map {
        let slot = match name.as_str() {
            "data" => {
                body.data = match value {
                    // Graph also takes `data` as a JSON-encoded string inside a JSON body.
                    Value::String(s) => parse_data_string(&s).map_err(|e| body.note(e)).ok(),
                    other => Some(other),
                };
                continue;
            }
            "access_token" => &mut body.access_token,
            "test_event_code" => &mut body.test_event_code,
            "partner_agent" => &mut body.partner_agent,
            _ => continue,
        };
        match value {
            Value::String(s) => *slot = Some(s),
            Value::Null => {}
            _ => body.note(GraphError::invalid(format!(
                "Param {name} must be a string"
            ))),
        }
    }
    body
}

fn parse_form_body(bytes: &[u8]) -> EventsBody {
    let mut body = EventsBody::default();
    for (name, value) in urlencoded::pairs(bytes) {
        match name.as_str() {
            "data" => body.data = parse_data_string(&value).map_err(|e| body.note(e)).ok(),
            "access_token" => body.access_token = Some(value),
            "test_event_code" => body.test_event_code = Some(value),
            "partner_agent" => body.partner_agent = Some(value),
            _ => {}
        }
    }
    body
}

fn parse_data_string(s: &str) -> Result<Value, GraphError> {
    serde_json::from_str(s)
        .map_err(|e| GraphError::invalid(format!("Param data must be a JSON array of events: {e}")))
}

/// The events of `data`, or the code-100 error Graph gives for a missing, non-array or
/// out-of-range `data` (*using-the-api*: 1–1000 events).
fn events_of(data: Option<&Value>) -> Result<&[Value], GraphError> {
    match data {
        None => Err(GraphError::invalid("The parameter data is required")),
        Some(Value::Array(events)) if events.is_empty() => Err(GraphError::invalid(
            "Param data must contain at least one event",
        )),
        Some(Value::Array(events)) if events.len() > MAX_EVENTS => {
            Err(GraphError::invalid(format!(
                "Param data must contain at most {MAX_EVENTS} events (got {})",
                events.len()
            )))
        }
        Some(Value::Array(events)) => Ok(events),
        Some(_) => Err(GraphError::invalid("Param data must be an array")),
    }
}

async fn post_events(
    AxumState(state): AxumState<Arc<State>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received_at = Utc::now();
    let (in_flight, in_flight_at_arrival) = state.enter();
    // Faults come first: a failing proxy or server does not look at the request at all.
    let (version, pixel_id) = path.map(|Path(p)| p).unwrap_or_default();
    let fault = state.next_fault(&pixel_id);

    let mut body = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => parse_body(&headers, &bytes),
        Err(_) => EventsBody::failed(GraphError::invalid(format!(
            "The request body is unreadable or larger than {MAX_BODY_BYTES} bytes"
        ))),
    };
    let auth = find_token(&headers, query.as_deref(), body.access_token.take());

    let outcome = match fault.as_ref().and_then(|f| fault_outcome(f, &pixel_id)) {
        Some(injected) => injected,
        None => match check_events_request(
            &state,
            &version,
            &pixel_id,
            auth.as_ref(),
            &mut body,
            received_at.timestamp(),
        ) {
            Ok(()) => Outcome::Accepted,
            Err(e) => Outcome::Error(e),
        },
    };

    let (status, error_code, error_subcode) = match &outcome {
        Outcome::Accepted => (StatusCode::OK, None, None),
        Outcome::Html => (StatusCode::BAD_GATEWAY, None, None),
        Outcome::Error(e) => (e.status, Some(e.code), e.subcode),
    };
    let accepted = matches!(outcome, Outcome::Accepted);
    let record_events = state.record_events();
    let events = match body.data {
        Some(Value::Array(events)) => events,
        _ => Vec::new(),
    };
    let event_count = events.len();
    // Ids are needed for delivery counts (accepted) and for the request log (when recording).
    let ids: Vec<String> = if accepted || record_events {
        events
            .iter()
            .filter_map(|e| e.get("event_id")?.as_str().map(str::to_owned))
            .collect()
    } else {
        Vec::new()
    };
    let received: Vec<ReceivedEvent> = if accepted && record_events {
        events
            .into_iter()
            .map(|event| ReceivedEvent {
                pixel_id: pixel_id.clone(),
                event,
                test_event_code: body.test_event_code.clone(),
                partner_agent: body.partner_agent.clone(),
                received_at,
            })
            .collect()
    } else {
        Vec::new()
    };
    let hold = match &fault {
        Some(Fault::Timeout(d)) => *d,
        _ => Duration::ZERO,
    };
    let record = RequestRecord {
        version,
        pixel_id,
        event_count,
        event_ids: Vec::new(),
        status: status.as_u16(),
        error_code,
        error_subcode,
        auth: auth.map(|(_, method)| method),
        outcome_unknown_to_client: matches!(fault, Some(Fault::Timeout(_))),
        fault,
        received_at,
        in_flight_at_arrival,
        answered_at: None,
        partner_agent: body.partner_agent.clone(),
    };
    // Recorded before the (possibly long) hold: with a Timeout fault the client is gone by the time
    // the answer is written, yet Meta has the events.
    state.record(in_flight.seq, record, ids, received);

    let delay = state.latency() + hold;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    state.wait_for_answer_turn().await;
    in_flight.answered();
    let usage = state.usage_header();
    match outcome {
        Outcome::Accepted => {
            let trace = fbtrace_id();
            let body =
                json!({ "events_received": event_count, "messages": [], "fbtrace_id": trace });
            json_response(StatusCode::OK, body, &trace, usage)
        }
        Outcome::Html => html_bad_gateway(),
        Outcome::Error(e) => e.into_response(usage),
    }
}

enum Outcome {
    Accepted,
    Html,
    Error(GraphError),
}

/// What an injected fault answers instead of processing; `None` for faults that let the request
/// be processed (`Timeout` only delays the answer).
fn fault_outcome(fault: &Fault, pixel_id: &str) -> Option<Outcome> {
    let status = |code: u16, default: StatusCode| StatusCode::from_u16(code).unwrap_or(default);
    let err = match fault {
        Fault::Timeout(_) | Fault::Pass => return None,
        Fault::HtmlError => return Some(Outcome::Html),
        Fault::ServerError(http) => GraphError::new(
            status(*http, StatusCode::INTERNAL_SERVER_ERROR),
            2,
            None,
            "Service temporarily unavailable",
        )
        .transient(),
        Fault::Transient => GraphError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            1,
            None,
            "An unknown error occurred",
        )
        .transient(),
        Fault::RetryAfter { seconds } => {
            let mut err = GraphError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                2,
                None,
                "Service temporarily unavailable",
            )
            .transient();
            err.retry_after = Some(*seconds);
            err
        }
        Fault::RequestLevel(kind) => {
            let (status, code, subcode, message) = kind.answer();
            GraphError::new(status, code, subcode, message)
        }
        Fault::InvalidToken => GraphError::new(
            StatusCode::UNAUTHORIZED,
            190,
            Some(463),
            "Error validating access token: Session has expired.",
        ),
        Fault::Reject {
            http,
            code,
            subcode,
            message,
        } => GraphError::new(
            status(*http, StatusCode::BAD_REQUEST),
            *code,
            *subcode,
            message.clone(),
        ),
        Fault::Throttle {
            code,
            subcode,
            regain_minutes,
        } => {
            let mut err = GraphError::new(
                StatusCode::BAD_REQUEST,
                *code,
                *subcode,
                throttle_message(*code),
            )
            .transient();
            err.usage = regain_minutes.and_then(|minutes| {
                // Keyed by the business / ad account in real Graph; the pixel stands in for it.
                let usage = json!({ pixel_id: [{
                    "type": "ads_management",
                    "call_count": 100,
                    "total_cputime": 100,
                    "total_time": 100,
                    "estimated_time_to_regain_access": minutes,
                }]});
                HeaderValue::from_str(&usage.to_string()).ok()
            });
            err
        }
    };
    Some(Outcome::Error(err))
}

/// Everything Graph checks on a `/events` request, in the order it reports them: path, token,
/// access to the dataset, body, then each event (one bad event rejects the whole batch:
/// *using-the-api*).
fn check_events_request(
    state: &State,
    version: &str,
    pixel_id: &str,
    auth: Option<&(String, AuthMethod)>,
    body: &mut EventsBody,
    now: i64,
) -> Result<(), GraphError> {
    if !is_graph_version(version) {
        return Err(GraphError::unknown_path(&format!(
            "/{version}/{pixel_id}/events"
        )));
    }
    let (token, _) = auth.ok_or_else(GraphError::token_required)?;
    match state.check_pixel_token(pixel_id, token) {
        TokenCheck::Unknown => return Err(GraphError::token_unknown()),
        TokenCheck::NoAccess => return Err(GraphError::no_such_object("post", pixel_id)),
        TokenCheck::Ok => {}
    }
    if let Some(e) = body.error.take() {
        return Err(e);
    }
    let events = events_of(body.data.as_ref())?;
    for (index, event) in events.iter().enumerate() {
        validate::validate_event(index, event, now)?;
    }
    Ok(())
}

async fn get_object(
    AxumState(state): AxumState<Arc<State>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let usage = state.usage_header();
    match lookup_object(&state, path, query.as_deref(), &headers, uri.path()) {
        Ok(body) => {
            let trace = fbtrace_id();
            json_response(StatusCode::OK, body, &trace, usage)
        }
        Err(e) => e.into_response(usage),
    }
}

fn lookup_object(
    state: &State,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Option<&str>,
    headers: &HeaderMap,
    raw_path: &str,
) -> Result<Value, GraphError> {
    let Ok(Path((version, id))) = path else {
        return Err(GraphError::unknown_path(raw_path));
    };
    if !is_graph_version(&version) {
        return Err(GraphError::unknown_path(raw_path));
    }
    let (token, _) = find_token(headers, query, None).ok_or_else(GraphError::token_required)?;
    match state.check_pixel_token(&id, &token) {
        TokenCheck::Ok => return Ok(json!({ "id": id, "name": format!("Sandbox pixel {id}") })),
        TokenCheck::Unknown => return Err(GraphError::token_unknown()),
        TokenCheck::NoAccess => {}
    }
    let Some(campaign_id) = state.ad_campaign(&id, &token) else {
        return Err(GraphError::no_such_object("get", &id));
    };
    // Only campaign_id is modelled; other requested fields are left out, as Graph leaves out
    // fields an object does not have.
    let fields = query.and_then(|q| urlencoded::get(q.as_bytes(), "fields"));
    let wants_campaign = fields
        .as_deref()
        .is_none_or(|f| f.split(',').any(|f| f.trim() == "campaign_id"));
    Ok(if wants_campaign {
        json!({ "id": id, "campaign_id": campaign_id })
    } else {
        json!({ "id": id })
    })
}

/// `GET /{version}/{waba_id}/dataset`: the dataset linked to a WhatsApp Business Account
/// (*business-messaging*), as `{"data":[{"id":…,"name":…}]}`; a WABA with none answers an empty
/// list; one the token may not read, code 100 subcode 33 like any unknown object.
async fn get_waba_dataset(
    AxumState(state): AxumState<Arc<State>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let usage = state.usage_header();
    let answer = (|| {
        let Ok(Path((version, waba_id))) = path else {
            return Err(GraphError::unknown_path(uri.path()));
        };
        if !is_graph_version(&version) {
            return Err(GraphError::unknown_path(uri.path()));
        }
        let (token, _) =
            find_token(&headers, query.as_deref(), None).ok_or_else(GraphError::token_required)?;
        if !state.knows_token(&token) {
            return Err(GraphError::token_unknown());
        }
        match state.waba_dataset(&waba_id, &token) {
            Some(dataset) => {
                Ok(json!({"data": [{"id": dataset, "name": format!("Sandbox dataset {dataset}")}]}))
            }
            None if state.waba_known(&waba_id) => Err(GraphError::no_such_object("get", &waba_id)),
            None => Ok(json!({"data": []})),
        }
    })();
    match answer {
        Ok(body) => json_response(StatusCode::OK, body, &fbtrace_id(), usage),
        Err(e) => e.into_response(usage),
    }
}

async fn unknown_path(uri: Uri) -> Response {
    GraphError::unknown_path(uri.path()).into_response(None)
}

async fn unsupported_method(method: Method) -> Response {
    GraphError::invalid(format!(
        "Unsupported {} request.",
        method.as_str().to_ascii_lowercase()
    ))
    .into_response(None)
}

/// The body decoding and event validation of `POST …/events` without a server, path or token:
/// `Ok(n)` when Graph would take the `n` events, else the error code and subcode. For the fuzz
/// targets (`stagecast::fuzzing`); the answer must never be a panic.
pub(crate) fn check_events_body(
    content_type: &str,
    bytes: &[u8],
    now: i64,
) -> Result<usize, (i64, Option<i64>)> {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        if !content_type.is_empty() {
            headers.insert(header::CONTENT_TYPE, value);
        }
    }
    let mut body = parse_body(&headers, bytes);
    let result = (|| {
        if let Some(e) = body.error.take() {
            return Err(e);
        }
        let events = events_of(body.data.as_ref())?;
        for (index, event) in events.iter().enumerate() {
            validate::validate_event(index, event, now)?;
        }
        Ok(events.len())
    })();
    result.map_err(|e| (e.code, e.subcode))
}
