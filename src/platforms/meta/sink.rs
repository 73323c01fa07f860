//! Delivery to one pixel: chunks of ≤ `max_batch` events, rate limited per pixel, classified by
//! the retry logic. A batch rejected for an event-level error (Meta batches are all-or-nothing)
//! is split in halves until the bad events are isolated; the rest are delivered. A request-level
//! error (invalid token, bad version, missing permission) holds the pixel instead: one request,
//! one alert, no split, no attempt spent (`platforms::holds`).

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, warn};

use super::client::MetaClient;
use super::config::{MetaConfig, MetaConfigError};
use super::payload::request_body;
use super::retry::{classify, classify_transport, rejected_event_cause, Classification};
use crate::platforms::holds::{fingerprint, DestinationHolds, HoldState};
use crate::platforms::outcome::{EventOutcome, PreparedEvent};
use crate::platforms::platform::DeliveryContext;
use crate::platforms::rate_limit::{instant_to_utc, DestinationLimiter};
use crate::platforms::send_loop::{
    record_request, sink_destination, sink_limits, Chunks, HoldTarget, SendChunk, SendLoop,
};
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

sink_destination!(MetaDestination);

pub struct MetaSink {
    client: MetaClient,
    limiter: DestinationLimiter,
    holds: DestinationHolds,
    config: MetaConfig,
}

sink_limits!(MetaSink, super::LABEL, super::TRACE_NAME);

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

    pub fn config(&self) -> &MetaConfig {
        &self.config
    }

    pub fn client(&self) -> &MetaClient {
        &self.client
    }

    /// Send `events` to `dest`, streaming the results of each request to `ctx.results` as soon
    /// as it answers (exactly one result per event in total), so the caller can write outcomes
    /// back per request instead of per batch. A request starts only while `ctx.lease` is known
    /// to outlast it (the request timeout).
    pub async fn deliver(
        &self,
        dest: &MetaDestination,
        events: Vec<PreparedEvent>,
        ctx: DeliveryContext<'_>,
    ) {
        let mut chunks = Chunks::new(events, self.config.max_batch, ctx.results);
        // A pixel held for its configuration sends nothing while that configuration is the one
        // in use (or one probe request when it is due): the events wait, no attempt spent.
        let hold = HoldTarget {
            holds: &self.holds,
            key: &dest.batch_key,
            fingerprint: fingerprint(&[
                &dest.pixel_id,
                dest.token.expose(),
                &self.config.api_version,
            ]),
            recheck: self.config.hold_recheck,
            recheck_fallback: chrono::Duration::seconds(60),
        };
        let mut probing = false;
        match hold.state().await {
            HoldState::Open => {}
            HoldState::Probe => {
                probing = true;
                debug!(pixel = %dest.pixel_id, "held pixel: probing with one request");
            }
            HoldState::Held { cause, error } => {
                chunks.held_all(&hold, cause, &error, None);
                return;
            }
        }
        let send_loop = SendLoop {
            limiter: &self.limiter,
            limiter_key: &dest.pixel_id,
            destination: &dest.pixel_id,
            request_time: self.config.timeout,
            platform_name: "Meta",
            trace_name: super::TRACE_NAME,
            hold: (!probing).then(|| hold.check(false)),
        };
        let mut requests = PixelRequests {
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

/// The Conversions API requests of one delivery to one pixel.
struct PixelRequests<'a> {
    sink: &'a MetaSink,
    dest: &'a MetaDestination,
    hold: HoldTarget<'a>,
    /// The pixel is held and this delivery is its probe.
    probing: bool,
}

impl SendChunk for PixelRequests<'_> {
    async fn send(&mut self, chunk: Vec<PreparedEvent>, chunks: &mut Chunks<'_>) {
        let (sink, dest) = (self.sink, self.dest);
        let started = Instant::now();
        let parts: Vec<&[u8]> = chunk.iter().map(|e| e.json.as_bytes()).collect();
        let body = request_body(
            &parts,
            &sink.config.partner_agent,
            dest.test_event_code.as_deref(),
        );
        let response = sink
            .client
            .post_events(&dest.pixel_id, &dest.token, body)
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let (classification, status, body) = match &response {
            Ok(r) => {
                if let Some(pct) = r.usage_pct.filter(|p| *p >= SLOW_DOWN_AT_PCT) {
                    // Without Meta's estimate, half a throttle's first pause (30 s by
                    // default): the budget is close to its end, not spent yet.
                    let pause = r
                        .regain_minutes
                        .map(|m| std::time::Duration::from_secs(m * 60))
                        .unwrap_or(sink.config.throttle_pause / 2);
                    sink.limiter.slow_down(&dest.pixel_id, pause).await;
                    warn!(pixel = %dest.pixel_id, usage_pct = pct, ?pause, "Meta usage is high; pausing this pixel");
                }
                (classify(r), Some(r.status), r.audit())
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
        record_request(super::LABEL, chunk.len(), label, elapsed);
        match classification {
            Classification::Delivered {
                events_received, ..
            } => {
                sink.limiter.succeeded(&dest.pixel_id);
                if self.hold.release() || self.probing {
                    warn!(pixel = %dest.pixel_id, "Meta accepts this pixel's requests again; its held events are sent");
                    self.probing = false;
                }
                if events_received.is_some_and(|n| n != chunk.len() as u64) {
                    warn!(pixel = %dest.pixel_id, sent = chunk.len(), events_received, "Meta counted a different number of events than sent");
                }
                chunks.emit(chunk, EventOutcome::Delivered, status, None, body.as_ref());
            }
            Classification::Retry(error) => {
                debug!(pixel = %dest.pixel_id, %error, "transient Meta failure; will retry");
                let error = error.to_delivery_error();
                chunks.emit(
                    chunk,
                    EventOutcome::Retry,
                    status,
                    Some(&error),
                    body.as_ref(),
                );
            }
            Classification::Throttle { error, regain } => {
                let until = instant_to_utc(sink.limiter.throttled(&dest.pixel_id, regain).await);
                warn!(pixel = %dest.pixel_id, %error, %until, "Meta throttled this pixel; pausing it");
                let error = error.to_delivery_error();
                let outcome = EventOutcome::Throttled { until };
                chunks.emit(chunk, outcome, status, Some(&error), body.as_ref());
            }
            Classification::RejectEvents(error) if chunk.len() > 1 => {
                debug!(pixel = %dest.pixel_id, size = chunk.len(), %error, "batch rejected; splitting to isolate the bad events");
                chunks.split(chunk);
            }
            Classification::RejectEvents(error) => {
                let cause = rejected_event_cause(&error);
                let error = error.to_delivery_error();
                let outcome = EventOutcome::Failed { cause };
                chunks.emit(chunk, outcome, status, Some(&error), body.as_ref());
            }
            Classification::HoldDestination { error, cause } => {
                // One alert per hold: on the first event of the request that found it.
                let neutral = error.to_delivery_error();
                let news = chunks
                    .hold_rest(chunk, &self.hold, cause, neutral, status, body.as_ref())
                    .await;
                if news {
                    warn!(pixel = %dest.pixel_id, %error, "Meta refused this pixel's requests (not its events); holding its events until its configuration changes");
                } else {
                    debug!(pixel = %dest.pixel_id, %error, "held pixel still refused");
                }
            }
        }
    }
}
