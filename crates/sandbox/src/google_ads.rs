//! A local stand-in for Google's OAuth 2.0 token endpoint and the Google Ads API's
//! `customers/{id}:uploadClickConversions`, so tests never talk to Google.
//!
//! [`GoogleAdsSandbox::start`] binds `127.0.0.1:0` and serves `POST /token` (the refresh-token
//! grant: `grant_type=refresh_token`, the configured client id and secret, a known refresh
//! token; else `invalid_client` / `invalid_grant`) and
//! `POST /{version}/customers/{customer}:uploadClickConversions`, validating like Google's
//! reference documents: `Authorization: Bearer` with a token this endpoint issued, a JSON body
//! with `partialFailure: true` and 1 to 2,000 `conversions`, each with a `conversionAction`
//! resource name of that customer, a `conversionDateTime` of the form
//! `yyyy-mm-dd hh:mm:ss+hh:mm`, exactly one of `gclid` / `gbraid` / `wbraid` or else
//! `userIdentifiers` (lowercase 64-hex `hashedEmail` / `hashedPhoneNumber`), never both braids,
//! and a `consent` (when present) of `adUserData` only, `GRANTED` / `DENIED` / `UNSPECIFIED`
//! (this sandbox names a refused one `INVALID_CONSENT`).
//! Invalid rows are refused one by one in `partialFailureError`, located by
//! `fieldPathElements[].index`, as Google does with partial failure on; a second row with an
//! `orderId` already taken for the action answers `ORDER_ID_ALREADY_IN_USE`.
//!
//! Tests script failures with [`GoogleAdsFault`]s (consumed FIFO, one per upload request).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};

use crate::faults::FaultQueue;
use crate::server::{Nagle, Server};

pub const MAX_CONVERSIONS: usize = 2000;

/// A failure injected into one upload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoogleAdsFault {
    /// This HTTP status (5xx) with a plain-text body.
    HttpError(u16),
    /// HTTP 429 `RESOURCE_EXHAUSTED`: the daily operations quota is spent.
    QuotaExhausted,
    /// HTTP 429 `RESOURCE_TEMPORARILY_EXHAUSTED` with `retryDelay`.
    Throttled,
    /// HTTP 401 `UNAUTHENTICATED` (an access token Google no longer takes).
    Unauthenticated,
    /// These rows (index, `conversionUploadError` code) fail; the others are processed.
    RowErrors(Vec<(usize, String)>),
    Pass,
}

/// One upload request, whatever its outcome.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub customer_id: String,
    pub login_customer_id: Option<String>,
    pub http_status: u16,
    pub rows: usize,
    /// `orderId` of each row, in order.
    pub order_ids: Vec<String>,
    /// Errors per row index.
    pub row_errors: Vec<(usize, String)>,
    pub fault: Option<GoogleAdsFault>,
}

#[derive(Default)]
struct Log {
    accepted: Vec<Value>,
    requests: Vec<UploadRequest>,
    /// (conversion action, order id) → times accepted.
    orders: HashMap<(String, String), usize>,
    token_requests: usize,
    issued: Vec<String>,
}

struct State {
    client_id: String,
    client_secret: String,
    refresh_tokens: Mutex<HashSet<String>>,
    access_tokens: Mutex<HashSet<String>>,
    /// customer → the manager it must be reached through.
    managers: Mutex<HashMap<String, String>>,
    faults: FaultQueue<GoogleAdsFault>,
    log: Mutex<Log>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Clone)]
pub struct GoogleAdsSandbox {
    state: Arc<State>,
    server: Arc<Server>,
}

impl GoogleAdsSandbox {
    /// Start a sandbox on 127.0.0.1 whose OAuth client is `client_id` / `client_secret`.
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let state = Arc::new(State {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_tokens: Mutex::default(),
            access_tokens: Mutex::default(),
            managers: Mutex::default(),
            faults: FaultQueue::default(),
            log: Mutex::default(),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/{version}/customers/{call}", post(upload))
            .with_state(state.clone());
        let server = Server::start(app, Nagle::Default, "google ads").await?;
        Ok(Self {
            state,
            server: Arc::new(server),
        })
    }

    /// The API's base URL (`--google-ads-base-url`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The token endpoint (`--google-ads-token-url`).
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.server.addr)
    }

    pub fn add_refresh_token(&self, token: &str) {
        lock(&self.state.refresh_tokens).insert(token.into());
    }

    /// The refresh token is revoked (`invalid_grant`) and its access tokens stop working.
    pub fn revoke_refresh_token(&self, token: &str) {
        lock(&self.state.refresh_tokens).remove(token);
        lock(&self.state.access_tokens).clear();
    }

    /// `customer` is reached only through `manager` (the `login-customer-id` header).
    pub fn require_manager(&self, customer: &str, manager: &str) {
        lock(&self.state.managers).insert(customer.into(), manager.into());
    }

    pub fn push_fault(&self, fault: GoogleAdsFault) {
        self.state.faults.push(fault);
    }

    /// Every conversion row Google recorded, in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        lock(&self.state.log).accepted.clone()
    }

    pub fn requests(&self) -> Vec<UploadRequest> {
        lock(&self.state.log).requests.clone()
    }

    /// How many times an order id was recorded (at most 1 with Google's dedup).
    pub fn recorded(&self, order_id: &str) -> usize {
        lock(&self.state.log)
            .orders
            .iter()
            .filter(|((_, o), _)| o == order_id)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every access token the token endpoint issued (tests check none of them is logged).
    pub fn issued_access_tokens(&self) -> Vec<String> {
        lock(&self.state.log).issued.clone()
    }

    pub fn token_requests(&self) -> usize {
        lock(&self.state.log).token_requests
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(AxumState(state): AxumState<Arc<State>>, body: Bytes) -> Response {
    lock(&state.log).token_requests += 1;
    let get = |k| crate::urlencoded::get(&body, k);
    if get("grant_type").as_deref() != Some("refresh_token") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        );
    }
    if get("client_id").as_deref() != Some(state.client_id.as_str())
        || get("client_secret").as_deref() != Some(state.client_secret.as_str())
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    }
    let known = get("refresh_token").is_some_and(|r| lock(&state.refresh_tokens).contains(&r));
    if !known {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired or revoked.",
        );
    }
    let access = format!("ya29.{}", Alphanumeric.sample_string(&mut rand::rng(), 32));
    lock(&state.access_tokens).insert(access.clone());
    lock(&state.log).issued.push(access.clone());
    Json(
        json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer",
                "scope": "https://www.googleapis.com/auth/adwords"}),
    )
    .into_response()
}

fn google_error(
    status: StatusCode,
    rpc: &str,
    category: &str,
    code: &str,
    message: &str,
) -> Response {
    let details = json!([{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
        "errors": [{"errorCode": {category: code}, "message": message,
                    "details": {"quotaErrorDetails": {"retryDelay": "5s"}}}],
        "requestId": Alphanumeric.sample_string(&mut rand::rng(), 22)}]);
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": message, "status": rpc, "details": details}})),
    )
        .into_response()
}

fn is_hex64(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn date_time_ok(s: &str) -> bool {
    // yyyy-mm-dd hh:mm:ss+hh:mm (or -hh:mm)
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 25
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b' '
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && matches!(b[19], b'+' | b'-')
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
}

/// Why a row is refused (a `conversionUploadError` code), if it is.
fn row_problem(row: &Value, customer: &str) -> Option<&'static str> {
    let action = row
        .get("conversionAction")
        .and_then(Value::as_str)
        .unwrap_or("");
    let prefix = format!("customers/{customer}/conversionActions/");
    match action.strip_prefix(&prefix) {
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {}
        _ => return Some("INVALID_CONVERSION_ACTION"),
    }
    if !row
        .get("conversionDateTime")
        .and_then(Value::as_str)
        .is_some_and(date_time_ok)
    {
        return Some("INVALID_CONVERSION_DATE_TIME");
    }
    if let Some(consent) = row.get("consent") {
        // ClickConversion.consent takes adUserData only: Google's Consent reference says
        // adPersonalization can be set for OfflineUserDataJobService and UserDataService only.
        let ok = consent.as_object().is_some_and(|c| {
            !c.is_empty()
                && c.iter().all(|(k, v)| {
                    k == "adUserData"
                        && matches!(v.as_str(), Some("GRANTED" | "DENIED" | "UNSPECIFIED"))
                })
        });
        if !ok {
            return Some("INVALID_CONSENT");
        }
    }
    let has = |k| {
        row.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if has("gbraid") && has("wbraid") {
        return Some("GBRAID_WBRAID_BOTH_SET");
    }
    let clicks = ["gclid", "gbraid", "wbraid"]
        .iter()
        .filter(|k| has(k))
        .count();
    let ids = row.get("userIdentifiers").and_then(Value::as_array);
    if clicks > 1 {
        return Some("INVALID_CLICK_ID");
    }
    if clicks == 0 && ids.is_none_or(Vec::is_empty) {
        return Some("EVENT_NOT_FOUND");
    }
    for id in ids.into_iter().flatten() {
        let hashes: Vec<&Value> = ["hashedEmail", "hashedPhoneNumber"]
            .iter()
            .filter_map(|k| id.get(*k))
            .collect();
        if hashes.len() != 1 || !hashes.iter().all(|h| is_hex64(h)) {
            return Some("INVALID_USER_IDENTIFIER");
        }
    }
    None
}

async fn upload(
    AxumState(state): AxumState<Arc<State>>,
    Path((_version, call)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(customer) = call.strip_suffix(":uploadClickConversions") else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let customer = customer.to_string();
    let login = headers
        .get("login-customer-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fault = state.faults.next();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let rows: Vec<Value> = parsed
        .as_ref()
        .and_then(|b| b.get("conversions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut record = UploadRequest {
        customer_id: customer.clone(),
        login_customer_id: login.clone(),
        http_status: 200,
        rows: rows.len(),
        order_ids: rows
            .iter()
            .map(|r| {
                r.get("orderId")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .collect(),
        row_errors: Vec::new(),
        fault: fault.clone(),
    };
    let respond = |state: &State, mut record: UploadRequest, response: Response| {
        record.http_status = response.status().as_u16();
        lock(&state.log).requests.push(record);
        response
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let authorized = bearer.is_some_and(|t| lock(&state.access_tokens).contains(&t));
    if !authorized || fault == Some(GoogleAdsFault::Unauthenticated) {
        let r = google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "authenticationError",
            "OAUTH_TOKEN_INVALID",
            "Request is missing required authentication credential.",
        );
        return respond(&state, record, r);
    }
    let manager = lock(&state.managers).get(&customer).cloned();
    if manager.is_some() && manager != login {
        let r = google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "authorizationError",
            "USER_PERMISSION_DENIED",
            "User doesn't have permission to access customer.",
        );
        return respond(&state, record, r);
    }
    match &fault {
        Some(GoogleAdsFault::HttpError(s)) => {
            let status = StatusCode::from_u16(*s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return respond(&state, record, (status, "backend error").into_response());
        }
        Some(GoogleAdsFault::QuotaExhausted) => {
            let r = google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "quotaError",
                "RESOURCE_EXHAUSTED",
                "Too many requests.",
            );
            return respond(&state, record, r);
        }
        Some(GoogleAdsFault::Throttled) => {
            let r = google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "quotaError",
                "RESOURCE_TEMPORARILY_EXHAUSTED",
                "Too many requests. Retry in 5 seconds.",
            );
            return respond(&state, record, r);
        }
        _ => {}
    }
    let partial = parsed.as_ref().and_then(|b| b.get("partialFailure")) == Some(&Value::Bool(true));
    if parsed.is_none() || !partial || rows.is_empty() || rows.len() > MAX_CONVERSIONS {
        let (category, code) = if rows.len() > MAX_CONVERSIONS {
            ("conversionUploadError", "TOO_MANY_CONVERSIONS_IN_REQUEST")
        } else if !partial {
            ("requestError", "PARTIAL_FAILURE_MODE_REQUIRED")
        } else {
            ("requestError", "REQUIRED")
        };
        let r = google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            category,
            code,
            "Request contains an invalid argument.",
        );
        return respond(&state, record, r);
    }
    let injected: HashMap<usize, String> = match &fault {
        Some(GoogleAdsFault::RowErrors(e)) => e.iter().cloned().collect(),
        _ => HashMap::new(),
    };
    let mut errors = Vec::new();
    let mut results = Vec::new();
    let mut log = lock(&state.log);
    for (i, row) in rows.iter().enumerate() {
        let action = row
            .get("conversionAction")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let order = row
            .get("orderId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let problem = injected
            .get(&i)
            .cloned()
            .or_else(|| row_problem(row, &customer).map(str::to_string))
            .or_else(|| {
                (!order.is_empty() && log.orders.contains_key(&(action.clone(), order.clone())))
                    .then(|| "ORDER_ID_ALREADY_IN_USE".to_string())
            });
        match problem {
            Some(code) => {
                errors.push(
                    json!({"errorCode": {"conversionUploadError": code}, "message": code,
                    "location": {"fieldPathElements": [{"fieldName": "conversions", "index": i}]}}),
                );
                record.row_errors.push((i, code));
                results.push(json!({}));
            }
            None => {
                *log.orders.entry((action, order)).or_default() += 1;
                log.accepted.push(row.clone());
                results.push(json!({"conversionAction": row["conversionAction"], "conversionDateTime": row["conversionDateTime"]}));
            }
        }
    }
    drop(log);
    let mut answer = json!({"results": results, "jobId": "9000000001"});
    if !errors.is_empty() {
        answer["partialFailureError"] = json!({"code": 3, "message": "partial failure",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                         "errors": errors, "requestId": "sandbox-request"}]});
    }
    respond(&state, record, Json(answer).into_response())
}
