//! The send loop every platform's sink runs (`Destination::deliver`): events in chunks of at
//! most `max_batch`, each chunk waiting for the destination's rate limiter, then sent only if
//! the jobs' lease outlasts the request. What a request is and what its answer means is the
//! platform's ([`SendChunk`]); what happens around it is the same for all of them:
//!
//! - the limiter says shutdown: nothing more is sent, every event left is `NotStarted`;
//! - the destination is paused (the platform throttled it): the chunk is `Throttled`;
//! - the lease may lapse before a request could end: every event left is `LeaseLost` (another
//!   worker will send them); if only some jobs' leases may (a heartbeat skipped their rows),
//!   only their events are, and the rest is sent.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::alerts::AlertCause;
use crate::platforms::holds::{DestinationHolds, HoldState};
use crate::platforms::outcome::{DeliveryError, EventOutcome, EventResult, PreparedEvent};
use crate::platforms::rate_limit::{instant_to_utc, DestinationLimiter, Slot};
use crate::queue::Lease;
use crate::store::HoldQuery;

/// `Destination` for a platform's destination struct that has `sink: Arc<Sink>` and
/// `batch_key: String`, its sink having `deliver(&self, &Dest, Vec<PreparedEvent>,
/// DeliveryContext)`.
macro_rules! sink_destination {
    ($dest:ty) => {
        impl $crate::platforms::platform::Destination for $dest {
            fn batch_key(&self) -> &str {
                &self.batch_key
            }

            fn deliver<'a>(
                &'a self,
                events: Vec<$crate::platforms::outcome::PreparedEvent>,
                ctx: $crate::platforms::platform::DeliveryContext<'a>,
            ) -> futures_util::future::BoxFuture<'a, ()> {
                Box::pin(self.sink.deliver(self, events, ctx))
            }
        }
    };
}
pub(crate) use sink_destination;

/// What every platform's sink (`limiter: DestinationLimiter`, `holds: DestinationHolds`,
/// `config`) has alike: a `Debug` that shows the config but not the client (it holds
/// credentials), and sharing its rate limit, pauses and holds with every worker on the database.
macro_rules! sink_limits {
    ($sink:ident, $label:expr, $trace_name:expr) => {
        impl std::fmt::Debug for $sink {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($sink))
                    .field("config", &self.config)
                    .finish_non_exhaustive()
            }
        }

        impl $sink {
            /// Share this sink's rate limit, pauses and holds with every worker on the database.
            pub fn share_limits(&self, shared: &$crate::platforms::shared_limits::SharedLimits) {
                self.limiter.share(shared.clone());
                self.holds.share(shared.clone(), $label, $trace_name);
            }

            /// Resolves once the shared holds were read (at once after the first time).
            pub async fn limits_ready(&self) {
                self.holds.ready().await;
            }
        }
    };
}
pub(crate) use sink_limits;

/// One platform's request for one chunk: build it, send it, classify the answer and report
/// the chunk's results (or put it back) through [`Chunks`].
pub trait SendChunk {
    /// Called with the chunk's limiter slot taken and the lease checked. Taking every chunk
    /// left ([`Chunks::with_rest`]) ends the delivery.
    fn send(
        &mut self,
        chunk: Vec<PreparedEvent>,
        chunks: &mut Chunks<'_>,
    ) -> impl Future<Output = ()> + Send;
}

/// The chunks of a delivery not yet sent, and where their results go.
pub struct Chunks<'a> {
    /// A stack: the next chunk to send is the last one; chunks put back are sent next.
    work: Vec<Vec<PreparedEvent>>,
    out: &'a mpsc::UnboundedSender<Vec<EventResult>>,
}

impl<'a> Chunks<'a> {
    pub fn new(
        events: Vec<PreparedEvent>,
        max_batch: usize,
        out: &'a mpsc::UnboundedSender<Vec<EventResult>>,
    ) -> Self {
        let work = events
            .chunks(max_batch.max(1))
            .rev()
            .map(<[PreparedEvent]>::to_vec)
            .collect();
        Self { work, out }
    }

    fn next(&mut self) -> Option<Vec<PreparedEvent>> {
        self.work.pop()
    }

    /// How many events are still waiting to be sent (the current chunk not included).
    pub fn pending(&self) -> usize {
        self.work.iter().map(Vec::len).sum()
    }

    /// Send `chunk` again, next.
    pub fn again(&mut self, chunk: Vec<PreparedEvent>) {
        self.work.push(chunk);
    }

    /// Send `chunk` again as two halves, the first half next (to isolate the events a
    /// platform refuses a whole batch for).
    pub fn split(&mut self, mut chunk: Vec<PreparedEvent>) {
        let second = chunk.split_off(chunk.len() / 2);
        self.work.push(second);
        self.work.push(chunk);
    }

    /// Take the events of jobs whose own lease may lapse within `d` (a heartbeat skipped their
    /// rows, [`Lease::doubtful`]) out of `chunk` and of every chunk not yet sent, as
    /// `LeaseLost`: nothing more is sent for those jobs. What is left of `chunk`, if anything.
    pub fn drop_doubtful(
        &mut self,
        chunk: Vec<PreparedEvent>,
        lease: &Lease,
        d: Duration,
    ) -> Option<Vec<PreparedEvent>> {
        let doubtful = lease.doubtful(d);
        if doubtful.is_empty() {
            return Some(chunk);
        }
        let mut lost = Vec::new();
        let mut keep = |c: Vec<PreparedEvent>| -> Vec<PreparedEvent> {
            let (out, kept): (Vec<_>, Vec<_>) =
                c.into_iter().partition(|e| doubtful.contains(&e.job));
            lost.extend(out);
            kept
        };
        let chunk = keep(chunk);
        let work = std::mem::take(&mut self.work);
        self.work = work
            .into_iter()
            .map(&mut keep)
            .filter(|c| !c.is_empty())
            .collect();
        if !lost.is_empty() {
            warn!(
                jobs = doubtful.len(),
                events = lost.len(),
                "a heartbeat could not extend these jobs' lease (their rows were held elsewhere); not sending them (another worker will)"
            );
            self.emit(lost, EventOutcome::LeaseLost, None, None, None);
        }
        (!chunk.is_empty()).then_some(chunk)
    }

    /// `chunk` and every chunk not yet sent, taken out: nothing more will be sent.
    pub fn with_rest(&mut self, chunk: Vec<PreparedEvent>) -> Vec<Vec<PreparedEvent>> {
        std::iter::once(chunk).chain(self.work.drain(..)).collect()
    }

    /// Report results. A send fails only if the caller stopped listening; the results have
    /// nowhere to go then.
    pub fn report(&self, results: Vec<EventResult>) {
        let _ = self.out.send(results);
    }

    /// The same result for every event of `chunk`.
    pub fn emit(
        &self,
        chunk: Vec<PreparedEvent>,
        outcome: EventOutcome,
        status: Option<u16>,
        error: Option<&DeliveryError>,
        body: Option<&Arc<str>>,
    ) {
        self.report(
            chunk
                .into_iter()
                .map(|e| EventResult {
                    key: e.key,
                    outcome: outcome.clone(),
                    http_status: status,
                    error: error.cloned(),
                    response: body.cloned(),
                })
                .collect(),
        );
    }

    /// The destination is held already: every event of the delivery is `Held` with the hold's
    /// cause and error, no request, no alert (the hold raised it).
    pub fn held_all(
        &mut self,
        hold: &HoldTarget<'_>,
        cause: AlertCause,
        error: &DeliveryError,
        status: Option<u16>,
    ) {
        let all = std::mem::take(&mut self.work);
        self.emit_held(all, hold.until(), cause, false, status, error, None);
    }

    /// The platform refused the destination's configuration (not its events): hold it, and
    /// report `chunk` and every chunk not yet sent as `Held`; nothing more will be sent. The
    /// first result carries the alert when the hold is news (one alert per hold). Returns
    /// whether it was news.
    pub async fn hold_rest(
        &mut self,
        chunk: Vec<PreparedEvent>,
        hold: &HoldTarget<'_>,
        cause: AlertCause,
        error: DeliveryError,
        status: Option<u16>,
        body: Option<&Arc<str>>,
    ) -> bool {
        let news = hold
            .holds
            .hold(hold.key, &hold.fingerprint, cause, error.clone())
            .await;
        let all = self.with_rest(chunk);
        self.emit_held(all, hold.until(), cause, news, status, &error, body);
        news
    }

    /// `Held` for every event of `chunks`; only the first result carries `alert`.
    #[allow(clippy::too_many_arguments)]
    fn emit_held(
        &self,
        chunks: Vec<Vec<PreparedEvent>>,
        until: DateTime<Utc>,
        cause: AlertCause,
        alert: bool,
        status: Option<u16>,
        error: &DeliveryError,
        body: Option<&Arc<str>>,
    ) {
        let mut alert = alert;
        for chunk in chunks {
            self.report(
                chunk
                    .into_iter()
                    .map(|e| EventResult {
                        key: e.key,
                        outcome: EventOutcome::Held {
                            until,
                            cause,
                            alert: std::mem::take(&mut alert),
                        },
                        http_status: status,
                        error: Some(error.clone()),
                        response: body.cloned(),
                    })
                    .collect(),
            );
        }
    }
}

/// A delivery's destination as its platform's holds know it (`platforms::holds`): which
/// configuration it is sent with, and when the jobs of a held one look again.
pub struct HoldTarget<'a> {
    pub holds: &'a DestinationHolds,
    /// The destination's key in the holds (its batch key).
    pub key: &'a str,
    /// The configuration in use ([`crate::platforms::holds::fingerprint`]).
    pub fingerprint: String,
    /// How long a held destination's jobs wait before they look again...
    pub recheck: Duration,
    /// ...and how long when `recheck` is out of chrono's range.
    pub recheck_fallback: chrono::Duration,
}

impl<'a> HoldTarget<'a> {
    /// Whether the destination may be sent to now.
    pub async fn state(&self) -> HoldState {
        self.holds.state(self.key, &self.fingerprint).await
    }

    /// The check the send loop makes with every slot it takes (`with_status`: held events
    /// carry the hold error's HTTP status, as Google Ads' do).
    pub fn check(&self, with_status: bool) -> HoldCheck<'a> {
        HoldCheck {
            holds: self.holds,
            key: self.key,
            fingerprint: self.fingerprint.clone(),
            until: self.until(),
            with_status,
        }
    }

    /// A request succeeded: the hold (if any) is lifted. True if there was one.
    pub fn release(&self) -> bool {
        self.holds.release(self.key)
    }

    /// When held jobs look again, from now.
    fn until(&self) -> DateTime<Utc> {
        held_until(self.recheck, self.recheck_fallback)
    }
}

/// What the loop needs of a destination, besides its chunks.
pub struct SendLoop<'a> {
    pub limiter: &'a DestinationLimiter,
    /// The destination's key in the limiter.
    pub limiter_key: &'a str,
    /// The destination as logs name it (pixel id, event source id, customer id).
    pub destination: &'a str,
    /// How long the lease must still run for a request to start: the longest a request (and
    /// what it needs first, such as a token refresh) may take.
    pub request_time: Duration,
    /// How the platform's API is named in messages ("Meta", "TikTok", "Google Ads").
    pub platform_name: &'static str,
    /// `DeliveryError::trace_name` for the platform.
    pub trace_name: &'static str,
    /// The destination's hold, checked with every slot (None: not checked, as for a probe).
    pub hold: Option<HoldCheck<'a>>,
}

/// A destination's hold as the send loop checks it with each slot taken.
pub struct HoldCheck<'a> {
    pub holds: &'a DestinationHolds,
    /// The hold key (`Destination::batch_key`).
    pub key: &'a str,
    /// The fingerprint of the configuration about to be sent.
    pub fingerprint: String,
    /// When the held events look again.
    pub until: DateTime<Utc>,
    /// Whether held events carry the hold error's HTTP status (Google Ads' do).
    pub with_status: bool,
}

impl SendLoop<'_> {
    /// Send every chunk through `sender`, reporting exactly one result per event in total.
    pub async fn run<S: SendChunk>(
        &self,
        mut chunks: Chunks<'_>,
        shutdown: &CancellationToken,
        lease: &Lease,
        sender: &mut S,
    ) {
        let mut check_hold = true;
        while let Some(chunk) = chunks.next() {
            let hold = self
                .hold
                .as_ref()
                .filter(|_| check_hold)
                .map(|h| HoldQuery {
                    key: h.key,
                    fingerprint: &h.fingerprint,
                });
            match self
                .limiter
                .acquire_unless_held(self.limiter_key, hold, shutdown)
                .await
            {
                Slot::Ready { .. } => {}
                Slot::Held(row) => {
                    let check = self.hold.as_ref().expect("a hold is found only when asked");
                    // Learned here too, so this worker's next deliveries hold at once.
                    if let Some((cause, error)) = check.holds.learn(row) {
                        let status = error.http_status.filter(|_| check.with_status);
                        let all = chunks.with_rest(chunk);
                        chunks.emit_held(all, check.until, cause, false, status, &error, None);
                        break;
                    }
                    // A cause this version does not know (the cache skips it too): no slot
                    // was taken; take one without the check.
                    check_hold = false;
                    chunks.again(chunk);
                    continue;
                }
                Slot::Shutdown => {
                    for c in chunks.with_rest(chunk) {
                        chunks.emit(c, EventOutcome::NotStarted, None, None, None);
                    }
                    break;
                }
                Slot::Paused { until } => {
                    let error = DeliveryError {
                        trace_name: self.trace_name,
                        ..DeliveryError::local(format!(
                            "destination paused after {} throttled it",
                            self.platform_name
                        ))
                    };
                    let until = instant_to_utc(until);
                    chunks.emit(
                        chunk,
                        EventOutcome::Throttled { until },
                        None,
                        Some(&error),
                        None,
                    );
                    continue;
                }
            }
            // Checked after the limiter's wait, right before sending: the wait may be long.
            if !lease.valid_for(self.request_time) {
                warn!(destination = %self.destination, events = chunk.len() + chunks.pending(),
                    "the lease on these jobs may lapse before a request could end; not sending them (another worker will)");
                for c in chunks.with_rest(chunk) {
                    chunks.emit(c, EventOutcome::LeaseLost, None, None, None);
                }
                break;
            }
            let Some(chunk) = chunks.drop_doubtful(chunk, lease, self.request_time) else {
                continue;
            };
            sender.send(chunk, &mut chunks).await;
        }
    }
}

/// Records a request's metrics: its batch size and its duration by outcome.
pub fn record_request(platform: &'static str, size: usize, outcome: &'static str, seconds: f64) {
    metrics::histogram!("stagecast_batch_size", "platform" => platform).record(size as f64);
    metrics::histogram!("stagecast_request_duration_seconds", "platform" => platform, "outcome" => outcome)
        .record(seconds);
}

/// When a held destination's jobs look again: `after` from now (`fallback` if out of range).
pub fn held_until(after: Duration, fallback: chrono::Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(after).unwrap_or(fallback)
}
