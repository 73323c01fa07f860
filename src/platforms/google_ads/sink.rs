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
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::client::GoogleAdsClient;
use super::config::{GoogleAdsConfig, GoogleAdsConfigError};
use super::oauth::{TokenError, TokenSource};
use super::payload::request_body;
use super::retry::{classify, classify_transport, Classification, RowOutcome};
use crate::alerts::AlertCause;
use crate::platforms::holds::{fingerprint, DestinationHolds, HoldState};
use crate::platforms::outcome::{DeliveryError, EventOutcome, EventResult, PreparedEvent};
use crate::platforms::platform::{DeliveryContext, Destination};
use crate::platforms::rate_limit::{instant_to_utc, DestinationLimiter, Slot};
use crate::queue::Lease;
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

impl Destination for GoogleAdsDestination {
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

pub struct GoogleAdsSink {
    client: GoogleAdsClient,
    tokens: TokenSource,
    limiter: DestinationLimiter,
    holds: DestinationHolds,
    config: GoogleAdsConfig,
}

impl std::fmt::Debug for GoogleAdsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleAdsSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

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

    pub fn config(&self) -> &GoogleAdsConfig {
        &self.config
    }

    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    fn held_until(&self) -> chrono::DateTime<Utc> {
        Utc::now()
            + chrono::Duration::from_std(self.config.hold_probe)
                .unwrap_or(chrono::Duration::minutes(15))
    }

    /// Send `events` to `dest`, streaming the results of each request to `out` (exactly one
    /// result per event in total).
    pub async fn deliver(
        &self,
        dest: &GoogleAdsDestination,
        events: Vec<PreparedEvent>,
        shutdown: &CancellationToken,
        lease: &Lease,
        out: &mpsc::UnboundedSender<Vec<EventResult>>,
    ) {
        let emit = |chunk: Vec<PreparedEvent>,
                    outcome: EventOutcome,
                    status: Option<u16>,
                    error: Option<&DeliveryError>,
                    body: Option<&Arc<str>>| {
            let results = chunk
                .into_iter()
                .map(|e| EventResult {
                    key: e.key,
                    outcome: outcome.clone(),
                    http_status: status,
                    error: error.cloned(),
                    response: body.cloned(),
                })
                .collect();
            let _ = out.send(results);
        };
        // Held events: the first result carries the alert when the hold is news.
        let emit_held = |work: Vec<Vec<PreparedEvent>>,
                         cause: AlertCause,
                         error: &DeliveryError,
                         alert: bool| {
            let until = self.held_until();
            let mut first = alert;
            for c in work {
                let results = c
                    .into_iter()
                    .map(|e| EventResult {
                        key: e.key,
                        outcome: EventOutcome::Held {
                            until,
                            cause,
                            alert: std::mem::take(&mut first),
                        },
                        http_status: error.http_status,
                        error: Some(error.clone()),
                        response: None,
                    })
                    .collect();
                let _ = out.send(results);
            }
        };
        let key = dest.batch_key.as_str();
        let config_fingerprint = fingerprint(&[
            &dest.customer_id,
            dest.login_customer_id.as_deref().unwrap_or(""),
            dest.refresh_token.expose(),
            &self.config.client_id,
        ]);
        let mut work: Vec<Vec<PreparedEvent>> = events
            .chunks(self.config.max_batch.max(1))
            .rev()
            .map(<[PreparedEvent]>::to_vec)
            .collect();
        match self.holds.state(key, &config_fingerprint) {
            HoldState::Open | HoldState::Probe => {}
            HoldState::Held { cause, error } => {
                emit_held(work, cause, &error, false);
                return;
            }
        }
        let mut refreshed_after_401 = false;
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
                    let error = DeliveryError {
                        http_status: None,
                        code: None,
                        subcode: None,
                        trace_id: None,
                        trace_name: super::TRACE_NAME,
                        message: "destination paused after Google Ads throttled it".into(),
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
            // The token refresh and the upload each run within the timeout.
            if !lease.valid_for(self.config.timeout * 2) {
                warn!(customer = %dest.customer_id, "the lease on these jobs may lapse before a request could end; not sending them (another worker will)");
                for c in std::iter::once(chunk).chain(work.drain(..)) {
                    emit(c, EventOutcome::LeaseLost, None, None, None);
                }
                break;
            }
            let token = match self.tokens.access_token(&dest.refresh_token).await {
                Ok(t) => t,
                Err(e) if e.is_permanent() => {
                    let error = token_error(&e);
                    let news = self
                        .holds
                        .hold(
                            key,
                            &config_fingerprint,
                            AlertCause::TokenInvalid,
                            error.clone(),
                        )
                        .await;
                    warn!(customer = %dest.customer_id, error = %e, "Google refused this destination's OAuth credentials; holding its events");
                    emit_held(
                        std::iter::once(chunk).chain(work.drain(..)).collect(),
                        AlertCause::TokenInvalid,
                        &error,
                        news,
                    );
                    break;
                }
                Err(e) => {
                    debug!(customer = %dest.customer_id, error = %e, "token refresh failed; will retry");
                    let error = token_error(&e);
                    for c in std::iter::once(chunk).chain(work.drain(..)) {
                        emit(c, EventOutcome::Retry, None, Some(&error), None);
                    }
                    break;
                }
            };
            let started = Instant::now();
            let parts: Vec<&[u8]> = chunk.iter().map(|e| e.json.as_bytes()).collect();
            let body = request_body(&parts);
            let response = self
                .client
                .upload(
                    &dest.customer_id,
                    dest.login_customer_id.as_deref(),
                    &token,
                    body,
                )
                .await;
            let elapsed = started.elapsed().as_secs_f64();
            metrics::histogram!("stagecast_batch_size", "platform" => super::LABEL)
                .record(chunk.len() as f64);
            let (classification, status, body): (_, _, Option<Arc<str>>) = match &response {
                Ok(r) => (
                    classify(r, chunk.len(), Utc::now()),
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
                Classification::Rows(_) => "delivered",
                Classification::Retry(_) | Classification::Unauthenticated(_) => "retry",
                Classification::Throttle(..) | Classification::QuotaSpent(..) => "throttled",
                Classification::Fail(_) => "rejected",
                Classification::Hold(..) => "failed",
            };
            metrics::histogram!("stagecast_request_duration_seconds", "platform" => super::LABEL, "outcome" => label)
                .record(elapsed);
            match classification {
                Classification::Rows(rows) => {
                    self.limiter.succeeded(key);
                    self.holds.release(key);
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
                    let _ = out.send(results);
                }
                Classification::Retry(error) => {
                    debug!(customer = %dest.customer_id, %error, "transient Google Ads failure; will retry");
                    emit(
                        chunk,
                        EventOutcome::Retry,
                        status,
                        Some(&error),
                        body.as_ref(),
                    );
                }
                Classification::Throttle(error, delay) => {
                    let until = instant_to_utc(self.limiter.throttled(key, delay));
                    warn!(customer = %dest.customer_id, %error, %until, "Google Ads throttled this destination; pausing it");
                    emit(
                        chunk,
                        EventOutcome::Throttled { until },
                        status,
                        Some(&error),
                        body.as_ref(),
                    );
                }
                Classification::QuotaSpent(error, until) => {
                    warn!(customer = %dest.customer_id, %error, %until, "Google Ads daily quota spent; retrying the next day");
                    for c in std::iter::once(chunk).chain(work.drain(..)) {
                        emit(
                            c,
                            EventOutcome::Throttled { until },
                            status,
                            Some(&error),
                            body.as_ref(),
                        );
                    }
                    break;
                }
                Classification::Unauthenticated(error) if !refreshed_after_401 => {
                    // Once per delivery: a fresh token, then the same rows again.
                    debug!(customer = %dest.customer_id, %error, "Google Ads answered 401; refreshing the access token");
                    refreshed_after_401 = true;
                    self.tokens.forget(&dest.refresh_token).await;
                    work.push(chunk);
                }
                Classification::Unauthenticated(error) => {
                    let news = self
                        .holds
                        .hold(
                            key,
                            &config_fingerprint,
                            AlertCause::TokenInvalid,
                            error.clone(),
                        )
                        .await;
                    emit_held(
                        std::iter::once(chunk).chain(work.drain(..)).collect(),
                        AlertCause::TokenInvalid,
                        &error,
                        news,
                    );
                    break;
                }
                Classification::Hold(error, cause) => {
                    let news = self
                        .holds
                        .hold(key, &config_fingerprint, cause, error.clone())
                        .await;
                    warn!(customer = %dest.customer_id, %error, "Google Ads refused this destination's configuration; holding its events");
                    emit_held(
                        std::iter::once(chunk).chain(work.drain(..)).collect(),
                        cause,
                        &error,
                        news,
                    );
                    break;
                }
                Classification::Fail(error) => {
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
            }
        }
    }
}
