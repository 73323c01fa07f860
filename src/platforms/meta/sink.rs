//! Delivery to one pixel: chunks of ≤ `max_batch` events, rate limited per pixel, classified by
//! the retry logic. A batch rejected for an event-level error (Meta batches are all-or-nothing)
//! is split in halves until the bad events are isolated; the rest are delivered. A request-level
//! error (invalid token, bad version, missing permission) holds the pixel instead: one request,
//! one alert, no split, no attempt spent (`platforms::holds`).

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::client::MetaClient;
use super::config::{MetaConfig, MetaConfigError};
use super::payload::request_body;
use super::retry::{classify, classify_transport, rejected_event_cause, ApiError, Classification};
use crate::platforms::holds::{fingerprint, DestinationHolds, HoldState};
use crate::platforms::outcome::{EventOutcome, EventResult, PreparedEvent};
use crate::platforms::platform::{DeliveryContext, Destination};
use crate::platforms::rate_limit::{instant_to_utc, DestinationLimiter, Slot};
use crate::queue::Lease;
use crate::secrets::Secret;

/// Usage above this share of Meta's allowance makes us pause before Meta throttles us.
const SLOW_DOWN_AT_PCT: f64 = 90.0;

/// A pixel (dataset) and its credentials, resolved for one delivery.
#[derive(Debug, Clone)]
pub struct MetaDestination {
    pub sink: Arc<MetaSink>,
    pub pixel_ref: i64,
    pub pixel_id: String,
    pub token: Secret,
    pub test_event_code: Option<String>,
    /// One batch per pixel row (rows sharing a dataset id keep their own tokens).
    pub batch_key: String,
}

impl Destination for MetaDestination {
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

pub struct MetaSink {
    client: MetaClient,
    limiter: DestinationLimiter,
    holds: DestinationHolds,
    config: MetaConfig,
}

impl std::fmt::Debug for MetaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MetaSink {
    pub fn new(config: MetaConfig) -> Result<Self, MetaConfigError> {
        let client = MetaClient::new(&config)?;
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

    pub fn config(&self) -> &MetaConfig {
        &self.config
    }

    pub fn client(&self) -> &MetaClient {
        &self.client
    }

    /// Send `events` to `dest`, streaming the results of each request to `out` as soon as it
    /// answers (exactly one result per event in total), so the caller can write outcomes back
    /// per request instead of per batch. A request starts only while `lease` is known to
    /// outlast it (the request timeout).
    pub async fn deliver(
        &self,
        dest: &MetaDestination,
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
        // A stack of chunks: halves of a rejected chunk are pushed back and sent next.
        let mut work: Vec<Vec<PreparedEvent>> = events
            .chunks(self.config.max_batch.max(1))
            .rev()
            .map(<[PreparedEvent]>::to_vec)
            .collect();
        // A pixel held for its configuration sends nothing while that configuration is the one
        // in use (or one probe request when it is due): the events wait, no attempt spent.
        let config_fingerprint = fingerprint(&[
            &dest.pixel_id,
            dest.token.expose(),
            &self.config.api_version,
        ]);
        let hold_key = dest.batch_key.as_str();
        let mut probing = false;
        match self.holds.state(hold_key, &config_fingerprint) {
            HoldState::Open => {}
            HoldState::Probe => {
                probing = true;
                debug!(pixel = %dest.pixel_id, "held pixel: probing with one request");
            }
            HoldState::Held { cause, error } => {
                let until = chrono::Utc::now()
                    + chrono::Duration::from_std(self.config.hold_recheck)
                        .unwrap_or(chrono::Duration::seconds(60));
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
            match self.limiter.acquire(&dest.pixel_id, shutdown).await {
                Slot::Ready { .. } => {}
                Slot::Shutdown => {
                    for c in std::iter::once(chunk).chain(work.drain(..)) {
                        emit(c, EventOutcome::NotStarted, None, None, None);
                    }
                    break;
                }
                Slot::Paused { until } => {
                    let error = ApiError {
                        message: "destination paused after Meta throttled it".into(),
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
                warn!(pixel = %dest.pixel_id, events = chunk.len() + work.iter().map(Vec::len).sum::<usize>(),
                    "the lease on these jobs may lapse before a request could end; not sending them (another worker will)");
                for c in std::iter::once(chunk).chain(work.drain(..)) {
                    emit(c, EventOutcome::LeaseLost, None, None, None);
                }
                break;
            }
            let started = Instant::now();
            let parts: Vec<&[u8]> = chunk.iter().map(|e| e.json.as_bytes()).collect();
            let body = request_body(
                &parts,
                &self.config.partner_agent,
                dest.test_event_code.as_deref(),
            );
            let response = self
                .client
                .post_events(&dest.pixel_id, &dest.token, body)
                .await;
            let elapsed = started.elapsed().as_secs_f64();
            metrics::histogram!("stagecast_batch_size", "platform" => super::LABEL)
                .record(chunk.len() as f64);
            let (classification, status, body): (_, _, Option<Arc<str>>) = match &response {
                Ok(r) => {
                    if let Some(pct) = r.usage_pct.filter(|p| *p >= SLOW_DOWN_AT_PCT) {
                        let pause = r
                            .regain_minutes
                            .map(|m| std::time::Duration::from_secs(m * 60))
                            .unwrap_or(std::time::Duration::from_secs(30));
                        self.limiter.slow_down(&dest.pixel_id, pause);
                        warn!(pixel = %dest.pixel_id, usage_pct = pct, ?pause, "Meta usage is high; pausing this pixel");
                    }
                    (
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
                    )
                }
                Err(e) => (classify_transport(e), None, None),
            };
            let label = match &classification {
                Classification::Delivered { .. } => "delivered",
                Classification::Retry(_) => "retry",
                Classification::Throttle { .. } => "throttled",
                Classification::RejectEvents(_) => "rejected",
                Classification::HoldDestination { .. } => "held",
            };
            metrics::histogram!("stagecast_request_duration_seconds", "platform" => super::LABEL, "outcome" => label)
                .record(elapsed);
            match classification {
                Classification::Delivered {
                    events_received, ..
                } => {
                    self.limiter.succeeded(&dest.pixel_id);
                    if self.holds.release(hold_key) || probing {
                        warn!(pixel = %dest.pixel_id, "Meta accepts this pixel's requests again; its held events are sent");
                        probing = false;
                    }
                    if events_received.is_some_and(|n| n != chunk.len() as u64) {
                        warn!(pixel = %dest.pixel_id, sent = chunk.len(), events_received, "Meta counted a different number of events than sent");
                    }
                    emit(chunk, EventOutcome::Delivered, status, None, body.as_ref());
                }
                Classification::Retry(error) => {
                    debug!(pixel = %dest.pixel_id, %error, "transient Meta failure; will retry");
                    emit(
                        chunk,
                        EventOutcome::Retry,
                        status,
                        Some(&error),
                        body.as_ref(),
                    );
                }
                Classification::Throttle { error, regain } => {
                    let until = instant_to_utc(self.limiter.throttled(&dest.pixel_id, regain));
                    warn!(pixel = %dest.pixel_id, %error, %until, "Meta throttled this pixel; pausing it");
                    emit(
                        chunk,
                        EventOutcome::Throttled { until },
                        status,
                        Some(&error),
                        body.as_ref(),
                    );
                }
                Classification::RejectEvents(error) if chunk.len() > 1 => {
                    debug!(pixel = %dest.pixel_id, size = chunk.len(), %error, "batch rejected; splitting to isolate the bad events");
                    let mut first = chunk;
                    let second = first.split_off(first.len() / 2);
                    work.push(second);
                    work.push(first);
                }
                Classification::RejectEvents(error) => {
                    let cause = rejected_event_cause(&error);
                    emit(
                        chunk,
                        EventOutcome::Failed { cause },
                        status,
                        Some(&error),
                        body.as_ref(),
                    );
                }
                Classification::HoldDestination { error, cause } => {
                    let neutral = error.to_delivery_error();
                    let news = self
                        .holds
                        .hold(hold_key, &config_fingerprint, cause, neutral)
                        .await;
                    if news {
                        warn!(pixel = %dest.pixel_id, %error, "Meta refused this pixel's requests (not its events); holding its events until its configuration changes");
                    } else {
                        debug!(pixel = %dest.pixel_id, %error, "held pixel still refused");
                    }
                    let until = chrono::Utc::now()
                        + chrono::Duration::from_std(self.config.hold_recheck)
                            .unwrap_or(chrono::Duration::seconds(60));
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
            }
        }
    }
}
