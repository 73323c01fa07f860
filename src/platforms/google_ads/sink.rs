//! Delivery to one Google Ads destination (customer id + login customer id + credentials):
//! chunks of ≤ `max_batch` conversions, rate limited per destination, an access token from the
//! token source, each answer classified by the retry logic and written back row by row.
//!
//! Credentials Google refuses (`invalid_grant`, 401 after a fresh token, 403) hold the
//! destination (`platforms::holds`): one alert, no attempts spent, one probe request every
//! `hold_probe`, lifted at once when the sealed refresh token changes.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tracing::{debug, warn};

use super::client::GoogleAdsClient;
use super::config::{GoogleAdsConfig, GoogleAdsConfigError};
use super::oauth::{TokenError, TokenSource};
use super::payload::request_body;
use super::retry::{classify, classify_transport, Classification, RowOutcome};
use crate::alerts::AlertCause;
use crate::platforms::holds::{fingerprint, DestinationHolds, HoldState};
use crate::platforms::outcome::{DeliveryError, EventOutcome, EventResult, PreparedEvent};
use crate::platforms::platform::DeliveryContext;
use crate::platforms::rate_limit::{instant_to_utc, DestinationLimiter};
use crate::platforms::send_loop::{
    record_request, sink_destination, sink_limits, Chunks, HoldTarget, SendChunk, SendLoop,
};
use crate::secrets::Secret;

/// A destination and its credentials, resolved for one delivery.
#[derive(Debug, Clone)]
pub struct GoogleAdsDestination {
    pub sink: Arc<GoogleAdsSink>,
    /// Digits only.
    pub customer_id: String,
    pub login_customer_id: Option<String>,
    pub refresh_token: Secret,
    pub batch_key: String,
}

sink_destination!(GoogleAdsDestination);

pub struct GoogleAdsSink {
    client: GoogleAdsClient,
    tokens: TokenSource,
    limiter: DestinationLimiter,
    holds: DestinationHolds,
    config: GoogleAdsConfig,
}

sink_limits!(GoogleAdsSink, super::LABEL, super::TRACE_NAME);

fn token_error(e: &TokenError) -> DeliveryError {
    let code = match e {
        TokenError::InvalidGrant(_) => Some("invalid_grant".to_string()),
        TokenError::InvalidClient(_) => Some("invalid_client".to_string()),
        TokenError::Unexpected { status, .. } => Some(status.to_string()),
        _ => None,
    };
    DeliveryError {
        http_status: None,
        code,
        subcode: None,
        trace_id: None,
        trace_name: super::TRACE_NAME,
        message: e.to_string(),
    }
}

impl GoogleAdsSink {
    pub fn new(config: GoogleAdsConfig) -> Result<Self, GoogleAdsConfigError> {
        let client = GoogleAdsClient::new(&config)?;
        let tokens = TokenSource::new(&config, client.http());
        let limiter = DestinationLimiter::new(
            super::LABEL,
            config.requests_per_second,
            config.burst,
            config.throttle_pause,
        );
        Ok(Self {
            client,
            tokens,
            limiter,
            holds: DestinationHolds::new(config.hold_probe),
            config,
        })
    }

    pub fn config(&self) -> &GoogleAdsConfig {
        &self.config
    }

    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// Send `events` to `dest`, streaming the results of each request to `ctx.results` (exactly
    /// one result per event in total).
    pub async fn deliver(
        &self,
        dest: &GoogleAdsDestination,
        events: Vec<PreparedEvent>,
        ctx: DeliveryContext<'_>,
    ) {
        let key = dest.batch_key.as_str();
        let hold = HoldTarget {
            holds: &self.holds,
            key,
            fingerprint: fingerprint(&[
                &dest.customer_id,
                dest.login_customer_id.as_deref().unwrap_or(""),
                dest.refresh_token.expose(),
                &self.config.client_id,
            ]),
            // Held jobs look again when the next probe is due.
            recheck: self.config.hold_probe,
            recheck_fallback: chrono::Duration::minutes(15),
        };
        let mut chunks = Chunks::new(events, self.config.max_batch, ctx.results);
        let probing = match hold.state().await {
            HoldState::Open => false,
            HoldState::Probe => true,
            HoldState::Held { cause, error } => {
                chunks.held_all(&hold, cause, &error, error.http_status);
                return;
            }
        };
        let send_loop = SendLoop {
            limiter: &self.limiter,
            limiter_key: key,
            destination: &dest.customer_id,
            // The token refresh and the upload each run within the timeout.
            request_time: self.config.timeout * 2,
            platform_name: "Google Ads",
            trace_name: super::TRACE_NAME,
            hold: (!probing).then(|| hold.check(true)),
        };
        let mut uploads = Uploads {
            sink: self,
            dest,
            hold,
            refreshed_after_401: false,
        };
        send_loop
            .run(chunks, ctx.shutdown, ctx.lease, &mut uploads)
            .await;
    }
}

/// The upload requests of one delivery to one destination.
struct Uploads<'a> {
    sink: &'a GoogleAdsSink,
    dest: &'a GoogleAdsDestination,
    hold: HoldTarget<'a>,
    refreshed_after_401: bool,
}

impl SendChunk for Uploads<'_> {
    async fn send(&mut self, chunk: Vec<PreparedEvent>, chunks: &mut Chunks<'_>) {
        let (sink, dest) = (self.sink, self.dest);
        let key = dest.batch_key.as_str();
        let token = match sink.tokens.access_token(&dest.refresh_token).await {
            Ok(t) => t,
            Err(e) if e.is_permanent() => {
                let error = token_error(&e);
                // A revoked refresh token is the pixel's (a new one fixes it); a missing or
                // refused OAuth client is this process's configuration, which the agents'
                // token alert would send them to fix in the wrong place.
                let cause = match e {
                    TokenError::InvalidGrant(_) => AlertCause::TokenInvalid,
                    _ => AlertCause::RequestRefused,
                };
                let status = error.http_status;
                chunks
                    .hold_rest(chunk, &self.hold, cause, error, status, None)
                    .await;
                warn!(customer = %dest.customer_id, error = %e, "Google refused this destination's OAuth credentials; holding its events");
                return;
            }
            Err(e) => {
                debug!(customer = %dest.customer_id, error = %e, "token refresh failed; will retry");
                let error = token_error(&e);
                for c in chunks.with_rest(chunk) {
                    chunks.emit(c, EventOutcome::Retry, None, Some(&error), None);
                }
                return;
            }
        };
        let started = Instant::now();
        let parts: Vec<&[u8]> = chunk.iter().map(|e| e.json.as_bytes()).collect();
        let body = request_body(&parts);
        let response = sink
            .client
            .upload(
                &dest.customer_id,
                dest.login_customer_id.as_deref(),
                &token,
                body,
            )
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let (classification, status, body) = match &response {
            Ok(r) => (
                classify(r, chunk.len(), Utc::now()),
                Some(r.status),
                r.audit(),
            ),
            Err(e) => (classify_transport(e), None, None),
        };
        let label = match &classification {
            Classification::Rows(_) => "delivered",
            Classification::Retry(_) | Classification::Unauthenticated(_) => "retry",
            Classification::Throttle(..) | Classification::QuotaSpent(..) => "throttled",
            Classification::Fail(_) => "rejected",
            Classification::Hold(..) => "failed",
        };
        record_request(super::LABEL, chunk.len(), label, elapsed);
        match classification {
            Classification::Rows(rows) => {
                sink.limiter.succeeded(key);
                self.hold.release();
                let results = chunk
                    .into_iter()
                    .zip(rows)
                    .map(|(e, row)| {
                        let (outcome, error) = match row {
                            RowOutcome::Delivered | RowOutcome::AlreadyDelivered => {
                                (EventOutcome::Delivered, None)
                            }
                            RowOutcome::Retry(err) => (EventOutcome::Retry, Some(err)),
                            RowOutcome::Later(err, wait) => (
                                EventOutcome::Throttled {
                                    until: Utc::now()
                                        + chrono::Duration::from_std(wait)
                                            .unwrap_or(chrono::Duration::hours(6)),
                                },
                                Some(err),
                            ),
                            RowOutcome::Failed(err, cause) => {
                                (EventOutcome::Failed { cause }, Some(err))
                            }
                        };
                        EventResult {
                            key: e.key,
                            outcome,
                            http_status: status,
                            error,
                            response: body.clone(),
                        }
                    })
                    .collect();
                chunks.report(results);
            }
            Classification::Retry(error) => {
                debug!(customer = %dest.customer_id, %error, "transient Google Ads failure; will retry");
                chunks.emit(
                    chunk,
                    EventOutcome::Retry,
                    status,
                    Some(&error),
                    body.as_ref(),
                );
            }
            Classification::Throttle(error, delay) => {
                let until = instant_to_utc(sink.limiter.throttled(key, delay).await);
                warn!(customer = %dest.customer_id, %error, %until, "Google Ads throttled this destination; pausing it");
                chunks.emit(
                    chunk,
                    EventOutcome::Throttled { until },
                    status,
                    Some(&error),
                    body.as_ref(),
                );
            }
            Classification::QuotaSpent(error, until) => {
                warn!(customer = %dest.customer_id, %error, %until, "Google Ads daily quota spent; retrying the next day");
                for c in chunks.with_rest(chunk) {
                    chunks.emit(
                        c,
                        EventOutcome::Throttled { until },
                        status,
                        Some(&error),
                        body.as_ref(),
                    );
                }
            }
            Classification::Unauthenticated(error) if !self.refreshed_after_401 => {
                // Once per delivery: a fresh token, then the same rows again.
                debug!(customer = %dest.customer_id, %error, "Google Ads answered 401; refreshing the access token");
                self.refreshed_after_401 = true;
                sink.tokens.forget(&dest.refresh_token).await;
                chunks.again(chunk);
            }
            Classification::Unauthenticated(error) => {
                let (cause, status) = (AlertCause::TokenInvalid, error.http_status);
                chunks
                    .hold_rest(chunk, &self.hold, cause, error, status, None)
                    .await;
            }
            Classification::Hold(error, cause) => {
                warn!(customer = %dest.customer_id, %error, "Google Ads refused this destination's configuration; holding its events");
                let status = error.http_status;
                chunks
                    .hold_rest(chunk, &self.hold, cause, error, status, None)
                    .await;
            }
            Classification::Fail(error) => {
                chunks.emit(
                    chunk,
                    EventOutcome::Failed {
                        cause: AlertCause::ApiError,
                    },
                    status,
                    Some(&error),
                    body.as_ref(),
                );
            }
        }
    }
}
