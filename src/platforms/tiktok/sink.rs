//! Delivery to one event source (CRM event set or web pixel): chunks of ≤ `max_batch` events,
//! rate limited per event source, classified by the retry logic. A batch TikTok refuses for its
//! events (40002) is split in halves until the bad events are isolated; the rest are delivered.
//! Whether TikTok drops only the bad events of a batch is not documented, and splitting is
//! right in both cases: the good events of a refused batch were not taken, and a re-send of any
//! that were carries the same `event_id`, which TikTok deduplicates. An invalid token
//! (40105/40104) holds the event source instead, as Meta's code 190 holds a pixel: one request,
//! one alert, no attempt spent, resumed when the token changes (`platforms::holds`).

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::client::TiktokClient;
use super::config::{EventSource, TiktokConfig, TiktokConfigError};
use super::payload::request_body;
use super::retry::{classify, classify_transport, ApiError, Classification};
use crate::alerts::AlertCause;
use crate::platforms::holds::{fingerprint, DestinationHolds, HoldState};
use crate::platforms::outcome::{EventOutcome, EventResult, PreparedEvent};
use crate::platforms::platform::{DeliveryContext, Destination};
use crate::platforms::rate_limit::{instant_to_utc, DestinationLimiter, Slot};
use crate::queue::Lease;
use crate::secrets::Secret;

/// A pixel row (event source) and its credentials, resolved for one delivery.
#[derive(Debug, Clone)]
pub struct TiktokDestination {
    pub sink: Arc<TiktokSink>,
    pub pixel_ref: i64,
    /// `event_source_id`: the CRM event set id or the pixel code.
    pub source_id: String,
    pub source: EventSource,
    pub token: Secret,
    pub test_event_code: Option<String>,
    pub batch_key: String,
}

impl Destination for TiktokDestination {
    fn batch_key(&self) -> &str {
        &self.batch_key
    }

    fn deliver<'a>(
        &'a self,
        events: Vec<PreparedEvent>,
        ctx: DeliveryContext<'a>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(
            self.sink
                .deliver(self, events, ctx.shutdown, ctx.lease, ctx.results),
        )
    }
}

pub struct TiktokSink {
    client: TiktokClient,
    limiter: DestinationLimiter,
    holds: DestinationHolds,
    config: TiktokConfig,
}

impl std::fmt::Debug for TiktokSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiktokSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TiktokSink {
    pub fn new(config: TiktokConfig) -> Result<Self, TiktokConfigError> {
        let client = TiktokClient::new(&config)?;
        let limiter = DestinationLimiter::new(
            super::LABEL,
            config.requests_per_second,
            config.burst,
            config.throttle_pause,
        );
        Ok(Self {
            client,
            limiter,
            holds: DestinationHolds::new(config.hold_probe),
            config,
        })
    }

    /// Share this sink's rate limit, pauses and holds with every worker on the database.
    pub fn share_limits(&self, shared: &crate::platforms::shared_limits::SharedLimits) {
        self.limiter.share(shared.clone());
        self.holds
            .share(shared.clone(), super::LABEL, super::TRACE_NAME);
    }

    /// Resolves once the shared holds were read (at once after the first time).
    pub async fn limits_ready(&self) {
        self.holds.ready().await;
    }

    pub fn config(&self) -> &TiktokConfig {
        &self.config
    }

    pub fn client(&self) -> &TiktokClient {
        &self.client
    }

    /// When a held event source's jobs look again.
    fn hold_until(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::from_std(self.config.hold_recheck)
                .unwrap_or(chrono::Duration::seconds(60))
    }

    /// Send `events` to `dest`, streaming the results of each request to `out` as soon as it
    /// answers (exactly one result per event in total). A request starts only while `lease` is
    /// known to outlast it (the request timeout).
    pub async fn deliver(
        &self,
        dest: &TiktokDestination,
        events: Vec<PreparedEvent>,
        shutdown: &CancellationToken,
        lease: &Lease,
        out: &mpsc::UnboundedSender<Vec<EventResult>>,
    ) {
        // A send fails only if the caller stopped listening; the results have nowhere to go then.
        let emit = |chunk: Vec<PreparedEvent>,
                    outcome: EventOutcome,
                    status: Option<u16>,
                    error: Option<&ApiError>,
                    body: Option<&Arc<str>>| {
            let results = chunk
                .into_iter()
                .map(|e| EventResult {
                    key: e.key,
                    outcome: outcome.clone(),
                    http_status: status,
                    error: error.map(ApiError::to_delivery_error),
                    response: body.cloned(),
                })
                .collect();
            let _ = out.send(results);
        };
        let key = dest.batch_key.as_str();
        // A stack of chunks: halves of a refused chunk are pushed back and sent next.
        let mut work: Vec<Vec<PreparedEvent>> = events
            .chunks(self.config.max_batch.max(1))
            .rev()
            .map(<[PreparedEvent]>::to_vec)
            .collect();
        // An event source held for its token sends nothing while that token is the one in use
        // (or one probe request when it is due): the events wait, no attempt spent.
        let config_fingerprint = fingerprint(&[&dest.source_id, dest.token.expose()]);
        let mut probing = false;
        match self.holds.state(key, &config_fingerprint) {
            HoldState::Open => {}
            HoldState::Probe => {
                probing = true;
                debug!(event_source = %dest.source_id, "held event source: probing with one request");
            }
            HoldState::Held { cause, error } => {
                let until = self.hold_until();
                for c in work.drain(..) {
                    let results = c
                        .into_iter()
                        .map(|e| EventResult {
                            key: e.key,
                            outcome: EventOutcome::Held {
                                until,
                                cause,
                                alert: false,
                            },
                            http_status: None,
                            error: Some(error.clone()),
                            response: None,
                        })
                        .collect();
                    let _ = out.send(results);
                }
                return;
            }
        }
        while let Some(chunk) = work.pop() {
            match self.limiter.acquire(key, shutdown).await {
                Slot::Ready { .. } => {}
                Slot::Shutdown => {
                    for c in std::iter::once(chunk).chain(work.drain(..)) {
                        emit(c, EventOutcome::NotStarted, None, None, None);
                    }
                    break;
                }
                Slot::Paused { until } => {
                    let error = ApiError {
                        message: "destination paused after TikTok throttled it".into(),
                        ..ApiError::default()
                    };
                    emit(
                        chunk,
                        EventOutcome::Throttled {
                            until: instant_to_utc(until),
                        },
                        None,
                        Some(&error),
                        None,
                    );
                    continue;
                }
            }
            // Checked after the limiter's wait, right before sending: the wait may be long.
            if !lease.valid_for(self.config.timeout) {
                warn!(event_source = %dest.source_id, events = chunk.len() + work.iter().map(Vec::len).sum::<usize>(),
                    "the lease on these jobs may lapse before a request could end; not sending them (another worker will)");
                for c in std::iter::once(chunk).chain(work.drain(..)) {
                    emit(c, EventOutcome::LeaseLost, None, None, None);
                }
                break;
            }
            let started = Instant::now();
            let parts: Vec<&[u8]> = chunk.iter().map(|e| e.json.as_bytes()).collect();
            let body = request_body(
                dest.source,
                &dest.source_id,
                dest.test_event_code.as_deref(),
                &parts,
            );
            let response = self.client.track(&dest.token, body).await;
            let elapsed = started.elapsed().as_secs_f64();
            metrics::histogram!("stagecast_batch_size", "platform" => super::LABEL)
                .record(chunk.len() as f64);
            let (classification, status, body): (_, _, Option<Arc<str>>) = match &response {
                Ok(r) => (
                    classify(r),
                    Some(r.status),
                    r.body
                        .as_ref()
                        .map(|b| Arc::from(b.to_string()))
                        .or_else(|| {
                            r.text
                                .as_ref()
                                .map(|t| Arc::from(Value::String(t.clone()).to_string()))
                        }),
                ),
                Err(e) => (classify_transport(e), None, None),
            };
            let label = match &classification {
                Classification::Delivered { .. } => "delivered",
                Classification::Retry(_) => "retry",
                Classification::Throttle(_) => "throttled",
                Classification::RejectEvents(_) => "rejected",
                Classification::HoldDestination { .. } => "held",
                Classification::FailDestination { .. } => "failed",
            };
            metrics::histogram!("stagecast_request_duration_seconds", "platform" => super::LABEL, "outcome" => label)
                .record(elapsed);
            match classification {
                Classification::Delivered {
                    partial,
                    request_id,
                } => {
                    self.limiter.succeeded(key);
                    if self.holds.release(key) || probing {
                        warn!(event_source = %dest.source_id, "TikTok accepts this event source's token again; its held events are sent");
                        probing = false;
                    }
                    if partial {
                        // Code 20001: integrations count it as accepted; TikTok does not
                        // document which events, if any, it dropped.
                        metrics::counter!(crate::metrics_catalog::PARTIAL_SUCCESSES, "platform" => super::LABEL)
                            .increment(1);
                        warn!(event_source = %dest.source_id, events = chunk.len(), ?request_id,
                            "TikTok answered 20001 (partial success); counting the events as delivered");
                    }
                    emit(chunk, EventOutcome::Delivered, status, None, body.as_ref());
                }
                Classification::Retry(error) => {
                    debug!(event_source = %dest.source_id, %error, "transient TikTok failure; will retry");
                    emit(
                        chunk,
                        EventOutcome::Retry,
                        status,
                        Some(&error),
                        body.as_ref(),
                    );
                }
                Classification::Throttle(error) => {
                    let until = instant_to_utc(self.limiter.throttled(key, None));
                    warn!(event_source = %dest.source_id, %error, %until, "TikTok throttled this event source; pausing it");
                    emit(
                        chunk,
                        EventOutcome::Throttled { until },
                        status,
                        Some(&error),
                        body.as_ref(),
                    );
                }
                Classification::RejectEvents(error) if chunk.len() > 1 => {
                    debug!(event_source = %dest.source_id, size = chunk.len(), %error, "batch refused; splitting to isolate the bad events");
                    let mut first = chunk;
                    let second = first.split_off(first.len() / 2);
                    work.push(second);
                    work.push(first);
                }
                Classification::RejectEvents(error) => {
                    emit(
                        chunk,
                        EventOutcome::Failed {
                            cause: AlertCause::ApiError,
                        },
                        status,
                        Some(&error),
                        body.as_ref(),
                    );
                }
                Classification::HoldDestination { error, cause } => {
                    let news = self
                        .holds
                        .hold(key, &config_fingerprint, cause, error.to_delivery_error())
                        .await;
                    if news {
                        warn!(event_source = %dest.source_id, %error, "TikTok refused this event source's token; holding its events until the token changes");
                    } else {
                        debug!(event_source = %dest.source_id, %error, "held event source still refused");
                    }
                    let until = self.hold_until();
                    // One alert per hold: on the first event of the request that found it.
                    let mut alert = news;
                    for c in std::iter::once(chunk).chain(work.drain(..)) {
                        let results = c
                            .into_iter()
                            .map(|e| EventResult {
                                key: e.key,
                                outcome: EventOutcome::Held {
                                    until,
                                    cause,
                                    alert: std::mem::take(&mut alert),
                                },
                                http_status: status,
                                error: Some(error.to_delivery_error()),
                                response: body.clone(),
                            })
                            .collect();
                        let _ = out.send(results);
                    }
                    break;
                }
                Classification::FailDestination { error, cause } => {
                    warn!(event_source = %dest.source_id, %error, "TikTok refused this destination's configuration; failing its events");
                    for c in std::iter::once(chunk).chain(work.drain(..)) {
                        emit(
                            c,
                            EventOutcome::Failed { cause },
                            status,
                            Some(&error),
                            body.as_ref(),
                        );
                    }
                    break;
                }
            }
        }
    }
}
