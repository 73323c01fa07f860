//! Local stand-ins for the ad platforms' APIs (Meta's Graph API; TikTok's Events API in
//! [`tiktok`]), so tests, the demo and the benchmark never talk to real hosts.
//!
//! [`MetaGraphSandbox::start`] binds `127.0.0.1:0` and serves:
//! - `POST /{version}/{pixel_id}/events`: the Conversions API edge, validating auth, body encodings
//!   and every event the way Meta's Conversions API pages document it (`docs/sandbox.md` lists
//!   each rule and, under "Sources", the pages named in these comments);
//! - `GET /{version}/{pixel_id}`: pixel/dataset lookup used by `stagecast doctor`;
//! - `GET /{version}/{ad_id}?fields=campaign_id`: ad → campaign lookup (a WhatsApp referral's
//!   `source_id` is the ad's ID, *whatsapp-messages*).
//!
//! Tests script failures with [`Fault`]s (consumed FIFO, one per `/events` request) and inspect what
//! "Meta" accepted with [`MetaGraphSandbox::received`], [`MetaGraphSandbox::requests`] and
//! [`MetaGraphSandbox::delivered_count`].

mod faults;
pub mod google_ads;
mod meta_graph;
mod server;
pub mod tiktok;
mod urlencoded;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::HeaderValue;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use faults::FaultQueue;
use server::{Nagle, Server};

pub use google_ads::{GoogleAdsFault, GoogleAdsSandbox, UploadRequest};
pub use tiktok::{TiktokEvent, TiktokFault, TiktokRequest, TiktokSandbox};

/// One event of an accepted `/events` request, as Meta would have ingested it.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub pixel_id: String,
    pub event: serde_json::Value,
    pub test_event_code: Option<String>,
    pub partner_agent: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// Where the access token of a request came from (*using-the-api* shows the query parameter and
/// the body field, *automatic-events-api* the Bearer header, which stagecast uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `Authorization: Bearer <token>`.
    BearerHeader,
    /// `?access_token=` in the URL.
    QueryParam,
    /// An `access_token` field of the body (form field, or a key of the JSON object).
    BodyField,
}

/// One `/events` request, whatever its outcome.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub version: String,
    pub pixel_id: String,
    /// Length of `data` when it was a JSON array, else 0.
    pub event_count: usize,
    /// `event_id`s of the events in `data`, in order (events without one are skipped).
    /// Left empty when event recording is off (see [`MetaGraphSandbox::set_record_events`]).
    pub event_ids: Vec<String>,
    /// HTTP status returned.
    pub status: u16,
    /// Graph `error.code` / `error.error_subcode` returned, if any.
    pub error_code: Option<i64>,
    pub error_subcode: Option<i64>,
    /// Where the token came from; `None` when no token was sent.
    pub auth: Option<AuthMethod>,
    /// The fault injected into this request, if any.
    pub fault: Option<Fault>,
    /// True when the answer was held back by [`Fault::Timeout`]: the request was processed (and, if
    /// valid, its events count as delivered) but the client most likely gave up before the answer,
    /// so it cannot know. It must retry with the same `event_id`; `delivered_count` shows the copy.
    pub outcome_unknown_to_client: bool,
    pub received_at: DateTime<Utc>,
    /// How many other `/events` requests were in flight (received, not yet answered) when this one
    /// arrived: 1 or more means two requests overlapped, whatever the clocks say.
    pub in_flight_at_arrival: usize,
    /// When the sandbox handed the answer to the HTTP server; `None` while the request is still
    /// held (latency, [`Fault::Timeout`], [`MetaGraphSandbox::hold_answers`]) or when the client
    /// went away before the answer was ready. A client cannot have seen the outcome of a request
    /// answered after it died.
    pub answered_at: Option<DateTime<Utc>>,
    /// The request's `partner_agent`: tells two clients (a killed worker and its rescuer) apart.
    pub partner_agent: Option<String>,
}

impl RequestRecord {
    /// True when Meta accepted the events of this request.
    pub fn accepted(&self) -> bool {
        self.status == 200
    }
}

/// A failure the sandbox injects instead of (or around) normal processing of one `/events` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// This HTTP status (meant for 5xx) with a Graph body `{code: 2, is_transient: true}`.
    /// A value that is not a valid HTTP status answers 500.
    ServerError(u16),
    /// 502 with an HTML body, as a proxy in front of Graph would answer.
    HtmlError,
    /// The request is processed normally (validated and, if valid, recorded as accepted), then the
    /// answer is held back this long. Meta may well have ingested a request whose client timed
    /// out, so the events count as delivered and the record is marked `outcome_unknown_to_client`.
    Timeout(Duration),
    /// HTTP 400 with a throttling code (4, 17, 32, 341, 613, 80000–80014 …, *rate-limiting*) and
    /// `is_transient: true`; with `regain_minutes`, also an `X-Business-Use-Case-Usage` header
    /// carrying `estimated_time_to_regain_access`.
    Throttle {
        code: i64,
        subcode: Option<i64>,
        regain_minutes: Option<u32>,
    },
    /// 401, code 190, subcode 463: the access token has expired.
    InvalidToken,
    /// Any Graph error (`is_transient: false`). An invalid HTTP status answers 400.
    Reject {
        http: u16,
        code: i64,
        subcode: Option<i64>,
        message: String,
    },
    /// 500 with `{code: 1, is_transient: true}` ("An unknown error occurred").
    Transient,
    /// 503 with `{code: 2, is_transient: true}` and a `Retry-After: <seconds>` header.
    RetryAfter { seconds: u64 },
    /// A request-level error: the request, not its events, is refused, as Graph answers it.
    RequestLevel(RequestError),
    /// No fault: the request is processed normally. Lets a test aim a later fault at a later
    /// request (faults are consumed one per request, in order).
    Pass,
}

/// The request-level errors of *error-handling* and *versions*: each refuses a request whatever
/// its events, so a client must not split the batch to look for a bad event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Code 100 without a subcode, e.g. "Invalid appsecret_proof provided in the API argument"
    /// (an app that requires `appsecret_proof`).
    AppSecretProof,
    /// Code 102: the API session (user session behind the token) is no longer valid.
    Session,
    /// Code 104: no access token (*error-handling*; the sandbox also answers it for real when a
    /// request carries no token).
    TokenRequired,
    /// Code 2500: unknown path components (e.g. a version that does not exist).
    UnknownPath,
    /// Code 2635: the requested API version is deprecated.
    DeprecatedVersion,
    /// Code 200 (permissions): the token lacks a permission on the dataset.
    Permission,
}

impl RequestError {
    pub const ALL: [RequestError; 6] = [
        RequestError::AppSecretProof,
        RequestError::Session,
        RequestError::TokenRequired,
        RequestError::UnknownPath,
        RequestError::DeprecatedVersion,
        RequestError::Permission,
    ];

    /// (HTTP status, code, subcode, message) as Graph answers it.
    pub(crate) fn answer(self) -> (axum::http::StatusCode, i64, Option<i64>, &'static str) {
        use axum::http::StatusCode as S;
        match self {
            RequestError::AppSecretProof => (
                S::BAD_REQUEST,
                100,
                None,
                "Invalid appsecret_proof provided in the API argument",
            ),
            RequestError::Session => (S::BAD_REQUEST, 102, None, "API Session: the session is invalid"),
            RequestError::TokenRequired => (
                S::BAD_REQUEST,
                104,
                None,
                "An access token is required to request this resource.",
            ),
            RequestError::UnknownPath => (S::BAD_REQUEST, 2500, None, "Unknown path components"),
            RequestError::DeprecatedVersion => (
                S::BAD_REQUEST,
                2635,
                None,
                "You are calling a deprecated version of the Ads API. Please update to the latest version.",
            ),
            RequestError::Permission => (
                S::FORBIDDEN,
                200,
                None,
                "Permissions error: the token lacks a permission on this dataset",
            ),
        }
    }

    /// The Graph error code this answers with.
    pub fn code(self) -> i64 {
        self.answer().1
    }
}

/// Handle on a running sandbox. Clones share the same server; the server stops when the last clone
/// is dropped or on [`shutdown`](Self::shutdown).
#[derive(Clone)]
pub struct MetaGraphSandbox {
    state: Arc<State>,
    server: Arc<Server>,
}

impl MetaGraphSandbox {
    /// Start a sandbox on an ephemeral port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(State::new());
        let app = meta_graph::router(state.clone());
        let server = Server::start(app, Nagle::Off, "meta graph").await?;
        Ok(Self {
            state,
            server: Arc::new(server),
        })
    }

    /// `http://127.0.0.1:PORT`; stagecast appends `/{version}/{pixel}/events`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Stop accepting connections now; open connections finish their current request and close.
    pub fn shutdown(&self) {
        self.server.stop();
    }

    /// Make `access_token` valid for `pixel_id` (a token may serve several pixels/datasets).
    pub fn add_pixel(&self, pixel_id: &str, access_token: &str) {
        lock(&self.state.registry)
            .pixels_by_token
            .entry(access_token.to_owned())
            .or_default()
            .insert(pixel_id.to_owned());
    }

    /// Register an ad for `GET /{version}/{ad_id}?fields=campaign_id`, readable with `token`.
    pub fn add_ad(&self, ad_id: &str, campaign_id: &str, token: &str) {
        lock(&self.state.registry).ads.insert(
            ad_id.to_owned(),
            Ad {
                campaign_id: campaign_id.to_owned(),
                token: token.to_owned(),
            },
        );
    }

    /// Link `dataset_id` to a WhatsApp Business Account for `GET /{version}/{waba_id}/dataset`,
    /// readable with `token` (Meta's business-messaging guide: one dataset per WABA).
    pub fn link_waba(&self, waba_id: &str, dataset_id: &str, token: &str) {
        lock(&self.state.registry).wabas.insert(
            waba_id.to_owned(),
            WabaDataset {
                dataset_id: dataset_id.to_owned(),
                token: token.to_owned(),
            },
        );
    }

    /// Queue a fault; each `/events` request takes the next one (FIFO) before anything else.
    pub fn push_fault(&self, fault: Fault) {
        self.state.faults.push(fault);
    }

    /// A fault answered to every `/events` request for `pixel_id` while set (after the FIFO
    /// ones), e.g. one dataset that Meta keeps throttling among many; `None` clears it.
    pub fn set_pixel_fault(&self, pixel_id: &str, fault: Option<Fault>) {
        let mut faults = lock(&self.state.pixel_faults);
        match fault {
            Some(f) => faults.insert(pixel_id.to_string(), f),
            None => faults.remove(pixel_id),
        };
    }

    /// Faults not yet consumed.
    pub fn pending_faults(&self) -> usize {
        self.state.faults.pending()
    }

    /// Delay added to every `/events` response (faults included).
    pub fn set_latency(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.state.latency_nanos.store(nanos, Ordering::Relaxed);
    }

    /// `X-Business-Use-Case-Usage` value returned on every response (`None` removes it). A value
    /// that is not a valid header value is ignored with a warning.
    pub fn set_usage_header(&self, value: Option<String>) {
        let header = value.and_then(|v| match HeaderValue::from_str(&v) {
            Ok(h) => Some(h),
            Err(_) => {
                tracing::warn!(value = %v, "sandbox usage header is not a valid header value; ignored");
                None
            }
        });
        *lock(&self.state.usage_header) = header;
    }

    /// Keep full events and event ids (`true`, the default) or only counts (the benchmark).
    /// Per-`event_id` delivery counts are kept either way.
    pub fn set_record_events(&self, record: bool) {
        self.state.record_events.store(record, Ordering::Relaxed);
    }

    /// Every event of every accepted request, in arrival order.
    pub fn received(&self) -> Vec<ReceivedEvent> {
        lock(&self.state.log).received.clone()
    }

    /// Every `/events` request, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state.log).requests.clone()
    }

    /// How many times `event_id` was accepted. Each occurrence counts, also two inside one request:
    /// Meta may ingest both copies (it does not promise to drop a re-sent event, and for business
    /// messaging says it does not deduplicate at all), so either is a possible double count.
    pub fn delivered_count(&self, event_id: &str) -> usize {
        lock(&self.state.log)
            .delivered
            .get(event_id)
            .map_or(0, |&n| n as usize)
    }

    /// Number of accepted events since start or the last [`clear`](Self::clear).
    pub fn accepted_events(&self) -> usize {
        *self.state.accepted.borrow()
    }

    /// Hold back the answer of every `/events` request (after it was validated and recorded, and
    /// after its latency) until [`release_answers`](Self::release_answers) or
    /// [`allow_answers`](Self::allow_answers): tests use it to keep requests in flight for
    /// exactly as long as they need, instead of guessing a latency.
    pub fn hold_answers(&self) {
        self.state.answer_budget.send_replace(Some(0));
    }

    /// While answers are held, let `n` more go (to the longest-waiting requests first, as far as
    /// the runtime wakes them in order; then to new ones). Does nothing when nothing is held.
    pub fn allow_answers(&self, n: usize) {
        self.state.answer_budget.send_modify(|budget| {
            if let Some(left) = budget {
                *left += n;
            }
        });
    }

    /// Let held answers (and every later one) go.
    pub fn release_answers(&self) {
        self.state.answer_budget.send_replace(None);
    }

    /// `/events` requests received and not yet answered.
    pub fn in_flight(&self) -> usize {
        *self.state.in_flight.borrow()
    }

    /// Resolves to `true` once at least `n` `/events` requests are in flight at the same time,
    /// `false` after `timeout`.
    pub fn wait_for_in_flight(
        &self,
        n: usize,
        timeout: Duration,
    ) -> impl Future<Output = bool> + Send + 'static {
        let mut rx = self.state.in_flight.subscribe();
        async move {
            matches!(
                tokio::time::timeout(timeout, rx.wait_for(|&count| count >= n)).await,
                Ok(Ok(_))
            )
        }
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
                tokio::time::timeout(timeout, rx.wait_for(|&count| count >= n)).await,
                Ok(Ok(_))
            )
        }
    }

    /// Forget received events, requests, delivery counts and queued faults. Pixels, ads, latency
    /// and the usage header stay configured.
    pub fn clear(&self) {
        self.state.faults.clear();
        let mut log = lock(&self.state.log);
        *log = Log::default();
        self.state.accepted.send_replace(0);
    }
}

/// Shared by the handle and the HTTP handlers.
pub(crate) struct State {
    registry: Mutex<Registry>,
    faults: FaultQueue<Fault>,
    pixel_faults: Mutex<HashMap<String, Fault>>,
    latency_nanos: AtomicU64,
    usage_header: Mutex<Option<HeaderValue>>,
    record_events: AtomicBool,
    log: Mutex<Log>,
    /// Accepted-event count; a watch channel so `wait_for_events` sleeps instead of polling.
    accepted: watch::Sender<usize>,
    /// `/events` requests received and not yet answered.
    in_flight: watch::Sender<usize>,
    /// How many more `/events` answers may go while answers are held; `None` when nothing is
    /// held (see `hold_answers`).
    answer_budget: watch::Sender<Option<usize>>,
    /// Numbers requests, so an answer finds its record even after `clear`.
    next_seq: AtomicU64,
}

#[derive(Default)]
struct Registry {
    pixels_by_token: HashMap<String, HashSet<String>>,
    ads: HashMap<String, Ad>,
    /// WABA id → the dataset linked to it, readable with the token.
    wabas: HashMap<String, WabaDataset>,
}

struct WabaDataset {
    dataset_id: String,
    token: String,
}

struct Ad {
    campaign_id: String,
    token: String,
}

#[derive(Default)]
struct Log {
    received: Vec<ReceivedEvent>,
    requests: Vec<RequestRecord>,
    /// `seq` of each entry of `requests` (same index).
    seqs: Vec<u64>,
    delivered: HashMap<String, u32>,
}

/// Outcome of checking a token against the registry.
pub(crate) enum TokenCheck {
    Unknown,
    /// The token exists but does not grant access to this object.
    NoAccess,
    Ok,
}

impl State {
    fn new() -> Self {
        Self {
            registry: Mutex::default(),
            faults: FaultQueue::default(),
            pixel_faults: Mutex::default(),
            latency_nanos: AtomicU64::new(0),
            usage_header: Mutex::default(),
            record_events: AtomicBool::new(true),
            log: Mutex::default(),
            accepted: watch::Sender::new(0),
            in_flight: watch::Sender::new(0),
            answer_budget: watch::Sender::new(None),
            next_seq: AtomicU64::new(0),
        }
    }

    fn next_fault(&self, pixel_id: &str) -> Option<Fault> {
        self.faults
            .next()
            .or_else(|| lock(&self.pixel_faults).get(pixel_id).cloned())
    }

    fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    fn usage_header(&self) -> Option<HeaderValue> {
        lock(&self.usage_header).clone()
    }

    fn record_events(&self) -> bool {
        self.record_events.load(Ordering::Relaxed)
    }

    fn check_pixel_token(&self, pixel_id: &str, token: &str) -> TokenCheck {
        let registry = lock(&self.registry);
        match registry.pixels_by_token.get(token) {
            Some(pixels) if pixels.contains(pixel_id) => TokenCheck::Ok,
            Some(_) => TokenCheck::NoAccess,
            None if registry.ads.values().any(|ad| ad.token == token) => TokenCheck::NoAccess,
            None => TokenCheck::Unknown,
        }
    }

    /// The dataset linked to a WABA, if the token may read it.
    fn waba_dataset(&self, waba_id: &str, token: &str) -> Option<String> {
        let registry = lock(&self.registry);
        registry
            .wabas
            .get(waba_id)
            .filter(|w| w.token == token)
            .map(|w| w.dataset_id.clone())
    }

    fn waba_known(&self, waba_id: &str) -> bool {
        lock(&self.registry).wabas.contains_key(waba_id)
    }

    /// Whether any pixel, ad or WABA accepts this token.
    fn knows_token(&self, token: &str) -> bool {
        let registry = lock(&self.registry);
        registry.pixels_by_token.contains_key(token)
            || registry.ads.values().any(|ad| ad.token == token)
            || registry.wabas.values().any(|w| w.token == token)
    }

    /// Campaign of `ad_id` if `token` may read it.
    fn ad_campaign(&self, ad_id: &str, token: &str) -> Option<String> {
        let registry = lock(&self.registry);
        registry
            .ads
            .get(ad_id)
            .filter(|ad| ad.token == token)
            .map(|ad| ad.campaign_id.clone())
    }

    /// Count a request in flight until the returned guard is dropped (answered, or abandoned by
    /// the server because the client went away). Also says how many others were in flight.
    fn enter(self: &Arc<Self>) -> (InFlight, usize) {
        let mut others = 0;
        self.in_flight.send_modify(|n| {
            others = *n;
            *n += 1;
        });
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        (
            InFlight {
                state: self.clone(),
                seq,
            },
            others,
        )
    }

    /// Waits while answers are held, then takes one from the budget.
    async fn wait_for_answer_turn(&self) {
        let mut changes = self.answer_budget.subscribe();
        loop {
            let mut go = false;
            self.answer_budget.send_if_modified(|budget| match budget {
                None => {
                    go = true;
                    false
                }
                Some(0) => false,
                Some(left) => {
                    *left -= 1;
                    go = true;
                    true
                }
            });
            // A change between the check and here is seen: `changes` was subscribed before it.
            if go || changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Store one request. `ids` are the `event_id`s of its events (counted as delivered when it was
    /// accepted); `received` holds its events when it was accepted and recording is on.
    fn record(
        &self,
        seq: u64,
        mut record: RequestRecord,
        ids: Vec<String>,
        received: Vec<ReceivedEvent>,
    ) {
        let accepted = if record.accepted() {
            record.event_count
        } else {
            0
        };
        let keep_ids = self.record_events();
        let mut log = lock(&self.log);
        if accepted > 0 {
            for id in &ids {
                // get_mut first: a repeated id (a retry) then costs no key allocation.
                match log.delivered.get_mut(id.as_str()) {
                    Some(n) => *n += 1,
                    None => {
                        log.delivered.insert(id.clone(), 1);
                    }
                }
            }
        }
        if keep_ids {
            record.event_ids = ids;
        }
        log.received.extend(received);
        log.requests.push(record);
        log.seqs.push(seq);
        if accepted > 0 {
            // Under the log lock so a concurrent clear() cannot interleave with the increment.
            self.accepted.send_modify(|c| *c += accepted);
        }
    }
}

/// One `/events` request in flight; see [`State::enter`].
pub(crate) struct InFlight {
    state: Arc<State>,
    seq: u64,
}

impl InFlight {
    /// The answer is about to be handed to the HTTP server.
    pub(crate) fn answered(self) {
        let now = Utc::now();
        let mut log = lock(&self.state.log);
        // Requests are appended in `seq` order, so the newest are at the end.
        if let Some(i) = log.seqs.iter().rposition(|&s| s == self.seq) {
            log.requests[i].answered_at = Some(now);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The sandbox never panics while holding a lock, but a panicking test thread could poison one;
/// the data behind it is still consistent (every update is a single push/insert), so keep going.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Entry points for stagecast's fuzz targets (`fuzz/`, and the corpus replay in its test suite).
/// Not an API for anything else.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes an `/events` body sent with `content_type` and validates its events as of `now`
    /// (Unix seconds): `Ok(events)` or Graph's `(code, subcode)`.
    pub fn meta_events_request(
        content_type: &str,
        body: &[u8],
        now: i64,
    ) -> Result<usize, (i64, Option<i64>)> {
        crate::meta_graph::check_events_body(content_type, body, now)
    }
}
