//! A local stand-in for TikTok's Events API 2.0, so tests and the demo never talk to TikTok.
//!
//! [`TiktokSandbox::start`] binds `127.0.0.1:0` and serves `POST /open_api/v1.3/event/track/`,
//! validating a request the way TikTok's Events API pages document it (docs/tiktok.md lists the
//! rules): the raw token in the `Access-Token` header (no `Bearer`), a JSON body with
//! `event_source` (`web`, `app`, `offline`, `crm`) and the `event_source_id` the token may use,
//! `data` holding 1 to 1,000 events, each with `event`, an integer `event_time` in seconds, a
//! *string* `event_id`, hashed `user.email` / `user.phone` / `user.external_id` as lowercase
//! 64-hex SHA-256 digests, raw `ip` / `user_agent`, a numeric `properties.value` with an ISO 4217
//! `currency`, and `lead` only for CRM event sets.
//!
//! TikTok answers HTTP 200 for its own errors and puts the outcome in the top-level `code`
//! (`0` OK, `40001` no permission, `40002` invalid parameters, `40100` too many requests,
//! `40105` bad token, `5xxxx` server side). A request with any invalid event is refused as a
//! whole with 40002 (whether TikTok drops only the bad events is not documented; a client that
//! isolates bad events by splitting works either way).
//!
//! Tests script failures with [`TiktokFault`]s (consumed FIFO, one per request) and inspect what
//! "TikTok" accepted with [`TiktokSandbox::received`], [`TiktokSandbox::requests`] and
//! [`TiktokSandbox::delivered_count`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::faults::FaultQueue;
use crate::server::{Nagle, Server};

/// The Events API 2.0 path (`/open_api/v1.3/event/track/`).
pub const TRACK_PATH: &str = "/open_api/v1.3/event/track/";
/// Events API 2.0 takes at most 1,000 events per request.
pub const MAX_EVENTS: usize = 1000;

/// TikTok's standard events (Help Center, "About supported standard events") and the legacy
/// names integrations still send. Any other name is a custom event, which TikTok also accepts.
pub const STANDARD_EVENTS: &[&str] = &[
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

/// One event of an accepted request.
#[derive(Debug, Clone)]
pub struct TiktokEvent {
    pub event_source: String,
    pub event_source_id: String,
    pub test_event_code: Option<String>,
    /// The `data[i]` object as sent.
    pub event: Value,
    pub received_at: DateTime<Utc>,
}

/// One `/event/track/` request, whatever its outcome.
#[derive(Debug, Clone)]
pub struct TiktokRequest {
    pub event_source_id: Option<String>,
    pub event_count: usize,
    /// `event_id`s of its events (string ids only), in order.
    pub event_ids: Vec<String>,
    pub http_status: u16,
    /// The top-level `code` answered (`None` for a bare HTTP error).
    pub code: Option<i64>,
    pub message: String,
    pub fault: Option<TiktokFault>,
    /// Processed, but the answer was held back ([`TiktokFault::Timeout`]): the client cannot
    /// know whether its events were taken.
    pub outcome_unknown_to_client: bool,
}

impl TiktokRequest {
    /// True when TikTok took the request's events (code 0, or 20001).
    pub fn accepted(&self) -> bool {
        self.http_status == 200 && matches!(self.code, Some(0) | Some(20001))
    }
}

/// A failure the sandbox injects into one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TiktokFault {
    /// This HTTP status (meant for 5xx) with a plain-text body, as a gateway answers.
    HttpError(u16),
    /// HTTP 200 with code 50000 ("system error"): TikTok's own server-side failure.
    ServerError,
    /// HTTP 200 with code 40100, "Too many requests. Please retry in some time."
    Throttle,
    /// HTTP 200 with code 40105: the access token is missing or incorrect.
    InvalidToken,
    /// HTTP 200 with code 40001: the token may not operate this pixel / event set.
    NoPermission,
    /// Processed normally (validated, and recorded when valid), then the answer is held this
    /// long: TikTok may have taken events whose client timed out.
    Timeout(Duration),
    /// Processed normally, answered with code 20001 (which integrations treat as a partial
    /// success; its exact meaning is undocumented). The events count as accepted.
    PartialSuccess,
    /// No fault: lets a test aim a later fault at a later request.
    Pass,
}

/// Handle on a running sandbox; the server stops when the last clone is dropped.
#[derive(Clone)]
pub struct TiktokSandbox {
    state: Arc<State>,
    server: Arc<Server>,
}

#[derive(Default)]
struct Log {
    received: Vec<TiktokEvent>,
    requests: Vec<TiktokRequest>,
    delivered: HashMap<String, usize>,
}

struct State {
    /// token → event source ids (pixel codes, CRM event set ids) it may send to.
    sources_by_token: Mutex<HashMap<String, HashSet<String>>>,
    faults: FaultQueue<TiktokFault>,
    log: Mutex<Log>,
    accepted: watch::Sender<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TiktokSandbox {
    /// Start a sandbox on an ephemeral port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(State {
            sources_by_token: Mutex::default(),
            faults: FaultQueue::default(),
            log: Mutex::default(),
            accepted: watch::Sender::new(0),
        });
        let app = Router::new()
            .route(TRACK_PATH, post(track))
            .fallback(unknown_path)
            .with_state(state.clone());
        let server = Server::start(app, Nagle::Default, "tiktok").await?;
        Ok(Self {
            state,
            server: Arc::new(server),
        })
    }

    /// `http://127.0.0.1:PORT`; stagecast appends `/open_api/v1.3/event/track/`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Make `token` valid for the pixel code or CRM event set id `source_id`.
    pub fn add_event_source(&self, source_id: &str, token: &str) {
        lock(&self.state.sources_by_token)
            .entry(token.to_owned())
            .or_default()
            .insert(source_id.to_owned());
    }

    /// Revoke `token`: from now on it is unknown (40105).
    pub fn revoke_token(&self, token: &str) {
        lock(&self.state.sources_by_token).remove(token);
    }

    /// Queue a fault; each request takes the next one (FIFO).
    pub fn push_fault(&self, fault: TiktokFault) {
        self.state.faults.push(fault);
    }

    /// Every event of every accepted request, in arrival order.
    pub fn received(&self) -> Vec<TiktokEvent> {
        lock(&self.state.log).received.clone()
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<TiktokRequest> {
        lock(&self.state.log).requests.clone()
    }

    /// How many times `event_id` was accepted (each copy counts).
    pub fn delivered_count(&self, event_id: &str) -> usize {
        lock(&self.state.log)
            .delivered
            .get(event_id)
            .copied()
            .unwrap_or(0)
    }

    /// Accepted events since start.
    pub fn accepted_events(&self) -> usize {
        *self.state.accepted.borrow()
    }

    /// Resolves to `true` once at least `n` events have been accepted, `false` after `timeout`.
    pub fn wait_for_events(
        &self,
        n: usize,
        timeout: Duration,
    ) -> impl Future<Output = bool> + Send + 'static {
        let mut rx = self.state.accepted.subscribe();
        async move {
            matches!(
                tokio::time::timeout(timeout, rx.wait_for(|&c| c >= n)).await,
                Ok(Ok(_))
            )
        }
    }
}

/// An Events API answer: HTTP 200 with TikTok's envelope.
fn envelope(code: i64, message: &str) -> Response {
    let request_id = Alphanumeric.sample_string(&mut rand::rng(), 24);
    (
        StatusCode::OK,
        Json(json!({"code": code, "message": message, "request_id": request_id, "data": {}})),
    )
        .into_response()
}

async fn unknown_path() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found").into_response()
}

/// A refusal of the whole request (its `code` and message).
#[derive(Debug)]
struct Refusal {
    code: i64,
    message: String,
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal {
        code: 40002,
        message: message.into(),
    }
}

struct Valid {
    event_source: String,
    event_source_id: String,
    test_event_code: Option<String>,
    events: Vec<Value>,
}

async fn track(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = state.faults.next();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let source_id = parsed
        .as_ref()
        .and_then(|b| b.get("event_source_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let data = parsed
        .as_ref()
        .and_then(|b| b.get("data"))
        .and_then(Value::as_array);
    let event_count = data.map_or(0, Vec::len);
    let event_ids: Vec<String> = data
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("event_id").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    let mut record = TiktokRequest {
        event_source_id: source_id,
        event_count,
        event_ids,
        http_status: 200,
        code: None,
        message: String::new(),
        fault: fault.clone(),
        outcome_unknown_to_client: false,
    };
    let finish = |mut record: TiktokRequest, code: Option<i64>, message: &str, status: u16| {
        record.code = code;
        record.message = message.to_owned();
        record.http_status = status;
        lock(&state.log).requests.push(record);
    };
    let early = match &fault {
        Some(TiktokFault::HttpError(status)) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            finish(record, None, "gateway error", status.as_u16());
            return (status, "upstream connect error").into_response();
        }
        Some(TiktokFault::ServerError) => Some((50000, "System error, please retry later.")),
        Some(TiktokFault::Throttle) => {
            Some((40100, "Too many requests. Please retry in some time."))
        }
        Some(TiktokFault::InvalidToken) => {
            Some((40105, "The access token is invalid or has been revoked."))
        }
        Some(TiktokFault::NoPermission) => Some((
            40001,
            "No permission to operate pixel code. You must be an admin or operator of this pixel.",
        )),
        _ => None,
    };
    if let Some((code, message)) = early {
        finish(record, Some(code), message, 200);
        return envelope(code, message);
    }
    let outcome = validate(&state, &headers, parsed.as_ref());
    let (code, message) = match &outcome {
        Ok(_) if fault == Some(TiktokFault::PartialSuccess) => {
            (20001, "Partial success".to_owned())
        }
        Ok(_) => (0, "OK".to_owned()),
        Err(r) => (r.code, r.message.clone()),
    };
    if let Ok(valid) = outcome {
        let now = Utc::now();
        let mut log = lock(&state.log);
        for e in &valid.events {
            if let Some(id) = e.get("event_id").and_then(Value::as_str) {
                *log.delivered.entry(id.to_owned()).or_default() += 1;
            }
            log.received.push(TiktokEvent {
                event_source: valid.event_source.clone(),
                event_source_id: valid.event_source_id.clone(),
                test_event_code: valid.test_event_code.clone(),
                event: e.clone(),
                received_at: now,
            });
        }
        state.accepted.send_modify(|c| *c += valid.events.len());
    }
    if let Some(TiktokFault::Timeout(hold)) = fault {
        record.outcome_unknown_to_client = true;
        finish(record, Some(code), &message, 200);
        tokio::time::sleep(hold).await;
        return envelope(code, &message);
    }
    finish(record, Some(code), &message, 200);
    envelope(code, &message)
}

fn validate(state: &State, headers: &HeaderMap, body: Option<&Value>) -> Result<Valid, Refusal> {
    // Authentication first: a bad token is refused whatever the body holds.
    let token = headers
        .get("access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        let message = if headers.contains_key(header::AUTHORIZATION) {
            "Access-Token header is missing: the Events API does not take an Authorization header"
        } else {
            "Access-Token header is missing"
        };
        return Err(Refusal {
            code: 40105,
            message: message.into(),
        });
    };
    if token.starts_with("Bearer ") {
        return Err(Refusal {
            code: 40105,
            message: "The access token is incorrect: send it raw, without \"Bearer\"".into(),
        });
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(invalid("Content-Type must be application/json"));
    }
    let Some(Value::Object(body)) = body else {
        return Err(invalid("the request body is not a JSON object"));
    };
    let event_source = match body.get("event_source").and_then(Value::as_str) {
        Some(s @ ("web" | "app" | "offline" | "crm")) => s.to_owned(),
        Some(other) => {
            return Err(invalid(format!(
                "Invalid value for event_source: {other:?} (expected web, app, offline or crm)"
            )))
        }
        None => return Err(invalid("event_source is required")),
    };
    let Some(source_id) = body
        .get("event_source_id")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
    else {
        return Err(invalid("event_source_id is required and must be a string"));
    };
    {
        let sources = lock(&state.sources_by_token);
        match sources.get(token) {
            None => {
                return Err(Refusal {
                    code: 40105,
                    message: "The access token is invalid or has been revoked.".into(),
                })
            }
            Some(ids) if !ids.contains(source_id) => {
                return Err(Refusal {
                    code: 40001,
                    message: format!(
                        "No permission to operate pixel code {source_id}. You must be an admin or operator of this pixel."
                    ),
                })
            }
            Some(_) => {}
        }
    }
    let test_event_code = match body.get("test_event_code") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("test_event_code must be a string")),
    };
    let Some(data) = body.get("data").and_then(Value::as_array) else {
        return Err(invalid("data is required and must be an array"));
    };
    if data.is_empty() {
        return Err(invalid("data must hold at least one event"));
    }
    if data.len() > MAX_EVENTS {
        return Err(invalid(format!(
            "data holds {} events: at most {MAX_EVENTS} per request",
            data.len()
        )));
    }
    for (i, e) in data.iter().enumerate() {
        validate_event(e, &event_source).map_err(|m| invalid(format!("data[{i}].{m}")))?;
    }
    Ok(Valid {
        event_source,
        event_source_id: source_id.to_owned(),
        test_event_code,
        events: data.clone(),
    })
}

fn is_sha256_lower(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One `data[i]` object; the error names the field.
fn validate_event(e: &Value, event_source: &str) -> Result<(), String> {
    let Value::Object(e) = e else {
        return Err("<event>: not an object".into());
    };
    match e.get("event").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() && name.len() <= 100 => {}
        _ => return Err("event: required, a non-empty string".into()),
    }
    match e.get("event_time") {
        Some(Value::Number(n)) if n.is_u64() => {
            let t = n.as_u64().unwrap_or(0);
            // Seconds; a millisecond timestamp is 1000 times too large.
            if t > 10_000_000_000 {
                return Err(format!("event_time: {t} is not in seconds"));
            }
            if t as i64 > Utc::now().timestamp() + 600 {
                return Err("event_time: in the future".into());
            }
        }
        _ => return Err("event_time: required, an integer Unix time in seconds".into()),
    }
    match e.get("event_id") {
        None => {}
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => return Err("event_id: Invalid value for event_id: not a valid string".into()),
    }
    if let Some(user) = e.get("user") {
        let Value::Object(user) = user else {
            return Err("user: must be an object".into());
        };
        for key in ["email", "phone", "external_id"] {
            let values: Vec<&Value> = match user.get(key) {
                None => continue,
                Some(Value::Array(items)) => items.iter().collect(),
                Some(v) => vec![v],
            };
            for v in values {
                match v.as_str() {
                    Some(s) if is_sha256_lower(s) => {}
                    _ => {
                        return Err(format!(
                            "user.{key}: must be SHA-256 hashed, 64 lowercase hex digits"
                        ))
                    }
                }
            }
        }
        for key in ["ttclid", "ttp", "ip", "user_agent", "locale"] {
            match user.get(key) {
                None | Some(Value::String(_)) => {}
                Some(_) => return Err(format!("user.{key}: must be a string")),
            }
        }
        // Sent raw: a digest where a browser's user agent belongs is corrupted data.
        if let Some(ua) = user.get("user_agent").and_then(Value::as_str) {
            if is_sha256_lower(&ua.to_ascii_lowercase()) {
                return Err("user.user_agent: must be sent unhashed".into());
            }
        }
    }
    if let Some(props) = e.get("properties") {
        let Value::Object(props) = props else {
            return Err("properties: must be an object".into());
        };
        match props.get("value") {
            None | Some(Value::Number(_)) => {}
            Some(_) => return Err("properties.value: must be a number".into()),
        }
        match props.get("currency") {
            None => {}
            Some(Value::String(c)) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
            }
            Some(_) => return Err("properties.currency: must be an ISO 4217 code".into()),
        }
    }
    if let Some(lead) = e.get("lead") {
        if event_source != "crm" {
            return Err("lead: only for event_source crm".into());
        }
        let Value::Object(lead) = lead else {
            return Err("lead: must be an object".into());
        };
        for key in ["lead_id", "lead_event_source"] {
            match lead.get(key) {
                None | Some(Value::String(_)) => {}
                Some(_) => return Err(format!("lead.{key}: must be a string")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        json!({
            "event": "Lead", "event_time": Utc::now().timestamp(), "event_id": "e1",
            "user": {"email": [hex()], "external_id": [hex()], "ttclid": "E.C.P.x"},
            "properties": {"value": 10.5, "currency": "BRL"},
            "lead": {"lead_id": "7299", "lead_event_source": "stagecast"}
        })
    }

    fn hex() -> String {
        "a".repeat(64)
    }

    /// Straight to 127.0.0.1, whatever HTTP_PROXY says.
    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    async fn post(s: &TiktokSandbox, token: Option<&str>, body: Value) -> Value {
        let mut req = client()
            .post(format!("{}{TRACK_PATH}", s.base_url()))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = token {
            req = req.header("Access-Token", t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    fn body(source: &str, data: Vec<Value>) -> Value {
        json!({"event_source": source, "event_source_id": "CRM1", "data": data})
    }

    #[tokio::test]
    async fn validates_auth_shape_and_events() {
        let s = TiktokSandbox::start().await.unwrap();
        s.add_event_source("CRM1", "tok");
        assert_eq!(
            post(&s, Some("tok"), body("crm", vec![event()])).await["code"],
            0
        );
        assert_eq!(s.delivered_count("e1"), 1);
        assert_eq!(
            post(&s, None, body("crm", vec![event()])).await["code"],
            40105
        );
        assert_eq!(
            post(&s, Some("Bearer tok"), body("crm", vec![event()])).await["code"],
            40105
        );
        assert_eq!(
            post(&s, Some("other"), body("crm", vec![event()])).await["code"],
            40105
        );
        s.add_event_source("WEB1", "other");
        assert_eq!(
            post(&s, Some("other"), body("crm", vec![event()])).await["code"],
            40001
        );
        // A lead on a web pixel, a numeric event_id, milliseconds, raw email: 40002.
        assert_eq!(
            post(&s, Some("tok"), body("web", vec![event()])).await["code"],
            40002
        );
        for (k, v) in [
            ("event_id", json!(12)),
            ("event_time", json!(Utc::now().timestamp_millis())),
            ("user", json!({"email": "a@b.com"})),
            ("user", json!({"email": ["A".repeat(64)]})),
        ] {
            let mut e = event();
            e[k] = v;
            let answer = post(&s, Some("tok"), body("crm", vec![e])).await;
            assert_eq!(answer["code"], 40002, "{k}: {answer}");
        }
        let many = vec![event(); MAX_EVENTS + 1];
        assert_eq!(
            post(&s, Some("tok"), body("crm", many)).await["code"],
            40002
        );
        assert_eq!(
            post(&s, Some("tok"), body("crm", vec![])).await["code"],
            40002
        );
        assert_eq!(s.delivered_count("e1"), 1);
    }

    #[tokio::test]
    async fn faults_are_consumed_in_order() {
        let s = TiktokSandbox::start().await.unwrap();
        s.add_event_source("CRM1", "tok");
        s.push_fault(TiktokFault::Throttle);
        s.push_fault(TiktokFault::ServerError);
        s.push_fault(TiktokFault::PartialSuccess);
        assert_eq!(
            post(&s, Some("tok"), body("crm", vec![event()])).await["code"],
            40100
        );
        assert_eq!(
            post(&s, Some("tok"), body("crm", vec![event()])).await["code"],
            50000
        );
        assert_eq!(
            post(&s, Some("tok"), body("crm", vec![event()])).await["code"],
            20001
        );
        assert_eq!(s.delivered_count("e1"), 1);
        s.push_fault(TiktokFault::HttpError(503));
        let status = client()
            .post(format!("{}{TRACK_PATH}", s.base_url()))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 503);
        assert_eq!(s.requests().len(), 4);
    }
}
