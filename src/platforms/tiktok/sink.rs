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

use tracing::{debug, warn};

use super::client::TiktokClient;
use super::config::{EventSource, TiktokConfig, TiktokConfigError};
use super::payload::request_body;
use super::retry::{classify, classify_transport, Classification};
use crate::alerts::AlertCause;
use crate::platforms::holds::{fingerprint, DestinationHolds, HoldState};
use crate::platforms::outcome::{EventOutcome, PreparedEvent};
use crate::platforms::platform::DeliveryContext;
use crate::platforms::rate_limit::{instant_to_utc, DestinationLimiter};
use crate::platforms::send_loop::{
    record_request, sink_destination, sink_limits, Chunks, HoldTarget, SendChunk, SendLoop,
};
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

sink_destination!(TiktokDestination);

pub struct TiktokSink {
    client: TiktokClient,
    limiter: DestinationLimiter,
    holds: DestinationHolds,
    config: TiktokConfig,
}

sink_limits!(TiktokSink, super::LABEL, super::TRACE_NAME);

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

    pub fn config(&self) -> &TiktokConfig {
        &self.config
    }

    pub fn client(&self) -> &TiktokClient {
        &self.client
    }

    /// Send `events` to `dest`, streaming the results of each request to `ctx.results` as soon
    /// as it answers (exactly one result per event in total). A request starts only while
    /// `ctx.lease` is known to outlast it (the request timeout).
    pub async fn deliver(
        &self,
        dest: &TiktokDestination,
        events: Vec<PreparedEvent>,
        ctx: DeliveryContext<'_>,
    ) {
        let key = dest.batch_key.as_str();
        let mut chunks = Chunks::new(events, self.config.max_batch, ctx.results);
        // An event source held for its token sends nothing while that token is the one in use
        // (or one probe request when it is due): the events wait, no attempt spent.
        let hold = HoldTarget {
            holds: &self.holds,
            key,
            fingerprint: fingerprint(&[&dest.source_id, dest.token.expose()]),
            recheck: self.config.hold_recheck,
            recheck_fallback: chrono::Duration::seconds(60),
        };
        let mut probing = false;
        match hold.state().await {
            HoldState::Open => {}
            HoldState::Probe => {
                probing = true;
                debug!(event_source = %dest.source_id, "held event source: probing with one request");
            }
            HoldState::Held { cause, error } => {
                chunks.held_all(&hold, cause, &error, None);
                return;
            }
        }
        let send_loop = SendLoop {
            limiter: &self.limiter,
            limiter_key: key,
            destination: &dest.source_id,
            request_time: self.config.timeout,
            platform_name: "TikTok",
            trace_name: super::TRACE_NAME,
            hold: (!probing).then(|| hold.check(false)),
        };
        let mut requests = TrackRequests {
            sink: self,
            dest,
            hold,
            probing,
        };
        send_loop
            .run(chunks, ctx.shutdown, ctx.lease, &mut requests)
            .await;
    }
}

/// The Events API requests of one delivery to one event source.
struct TrackRequests<'a> {
    sink: &'a TiktokSink,
    dest: &'a TiktokDestination,
    hold: HoldTarget<'a>,
    /// The event source is held and this delivery is its probe.
    probing: bool,
}

impl SendChunk for TrackRequests<'_> {
    async fn send(&mut self, chunk: Vec<PreparedEvent>, chunks: &mut Chunks<'_>) {
        let (sink, dest) = (self.sink, self.dest);
        let key = dest.batch_key.as_str();
        let started = Instant::now();
        let parts: Vec<&[u8]> = chunk.iter().map(|e| e.json.as_bytes()).collect();
        let body = request_body(
            dest.source,
            &dest.source_id,
            dest.test_event_code.as_deref(),
            &parts,
        );
        let response = sink.client.track(&dest.token, body).await;
        let elapsed = started.elapsed().as_secs_f64();
        let (classification, status, body) = match &response {
            Ok(r) => (classify(r), Some(r.status), r.audit()),
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
        record_request(super::LABEL, chunk.len(), label, elapsed);
        match classification {
            Classification::Delivered {
                partial,
                request_id,
            } => {
                sink.limiter.succeeded(key);
                if self.hold.release() || self.probing {
                    warn!(event_source = %dest.source_id, "TikTok accepts this event source's token again; its held events are sent");
                    self.probing = false;
                }
                if partial {
                    // Code 20001: integrations count it as accepted; TikTok does not
                    // document which events, if any, it dropped.
                    metrics::counter!(crate::metrics_catalog::PARTIAL_SUCCESSES, "platform" => super::LABEL)
                        .increment(1);
                    warn!(event_source = %dest.source_id, events = chunk.len(), ?request_id,
                        "TikTok answered 20001 (partial success); counting the events as delivered");
                }
                chunks.emit(chunk, EventOutcome::Delivered, status, None, body.as_ref());
            }
            Classification::Retry(error) => {
                debug!(event_source = %dest.source_id, %error, "transient TikTok failure; will retry");
                let error = error.to_delivery_error();
                chunks.emit(
                    chunk,
                    EventOutcome::Retry,
                    status,
                    Some(&error),
                    body.as_ref(),
                );
            }
            Classification::Throttle(error) => {
                let until = instant_to_utc(sink.limiter.throttled(key, None).await);
                warn!(event_source = %dest.source_id, %error, %until, "TikTok throttled this event source; pausing it");
                let error = error.to_delivery_error();
                let outcome = EventOutcome::Throttled { until };
                chunks.emit(chunk, outcome, status, Some(&error), body.as_ref());
            }
            Classification::RejectEvents(error) if chunk.len() > 1 => {
                debug!(event_source = %dest.source_id, size = chunk.len(), %error, "batch refused; splitting to isolate the bad events");
                chunks.split(chunk);
            }
            Classification::RejectEvents(error) => {
                let error = error.to_delivery_error();
                let outcome = EventOutcome::Failed {
                    cause: AlertCause::ApiError,
                };
                chunks.emit(chunk, outcome, status, Some(&error), body.as_ref());
            }
            Classification::HoldDestination { error, cause } => {
                // One alert per hold: on the first event of the request that found it.
                let neutral = error.to_delivery_error();
                let news = chunks
                    .hold_rest(chunk, &self.hold, cause, neutral, status, body.as_ref())
                    .await;
                if news {
                    warn!(event_source = %dest.source_id, %error, "TikTok refused this event source's token; holding its events until the token changes");
                } else {
                    debug!(event_source = %dest.source_id, %error, "held event source still refused");
                }
            }
            Classification::FailDestination { error, cause } => {
                warn!(event_source = %dest.source_id, %error, "TikTok refused this destination's configuration; failing its events");
                let error = error.to_delivery_error();
                for c in chunks.with_rest(chunk) {
                    let outcome = EventOutcome::Failed { cause };
                    chunks.emit(c, outcome, status, Some(&error), body.as_ref());
                }
            }
        }
    }
}
