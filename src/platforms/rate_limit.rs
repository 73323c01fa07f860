//! Per-destination rate limiting: a GCRA limiter per destination, plus a pause when the
//! platform says we are throttled. Paused destinations are not called at all: their jobs are
//! rescheduled after the pause without spending an attempt.
//!
//! With [`SharedLimits`] attached (every worker's pipeline), the limit and the pauses are the
//! database's: each request takes its slot from the destination's row (one statement, which also
//! says whether another worker learned a pause, or held the destination), so N workers together
//! keep one limit. A pause this worker learns applies here at once and is written for the others,
//! with the throttle streak every worker shares (sql/pause_destination.sql); one the database
//! could not take is written by the next request tried once the database answers again.
//! When the database does not answer, the local limiter (governor) takes over at this worker's
//! share of the limit ([`super::shared_limits`]).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use super::shared_limits::SharedLimits;
use crate::store::{HoldQuery, HoldRow, PauseRequest};

/// Pauses without a hint from the platform start at `first_pause` (60 s in production) and
/// double per consecutive throttle up to `MAX_PAUSE` (Meta's error guide: back off, pause the
/// account). When shared, the streak is the database's; this worker's own counts only while
/// the database does not answer.
const MAX_PAUSE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Pause {
    until: Instant,
    consecutive: u32,
}

pub struct DestinationLimiter {
    /// The `platform` metrics label (bounded: one limiter per platform sink).
    platform: &'static str,
    limiter: DefaultKeyedRateLimiter<String>,
    pauses: Mutex<HashMap<String, Pause>>,
    first_pause: Duration,
    per_second: NonZeroU32,
    burst: NonZeroU32,
    shared: OnceLock<SharedLimits>,
    /// The local limiter at this worker's share (limit / peers), built when the database
    /// fails, rebuilt when the number of peers changed.
    fallback: Mutex<Option<(u32, Arc<DefaultKeyedRateLimiter<String>>)>>,
    /// Pauses learned while the database did not answer, not yet written for the others.
    unwritten: Arc<Unwritten>,
}

/// Pauses to write when the database answers again: until when, and whether a throttle (which
/// counts in the shared streak) rather than a slow-down.
#[derive(Default)]
struct Unwritten {
    pauses: Mutex<HashMap<String, (Instant, bool)>>,
    /// Whether `pauses` is not empty: read on every slot taken, so without the lock.
    any: AtomicBool,
}

impl Unwritten {
    fn keep(&self, key: &str, until: Instant, throttle: bool) {
        let mut pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pauses.entry(key.to_string()).or_insert((until, throttle));
        entry.0 = entry.0.max(until);
        entry.1 |= throttle;
        self.any.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<HashMap<String, (Instant, bool)>> {
        if !self.any.swap(false, Ordering::AcqRel) {
            return None;
        }
        Some(std::mem::take(
            &mut *self.pauses.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

impl std::fmt::Debug for DestinationLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationLimiter").finish_non_exhaustive()
    }
}

/// The result of waiting for a request slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// Go ahead; `waited` is how long the limiter held us (a metric).
    Ready { waited: Duration },
    /// The destination is paused until then (throttled by the platform).
    Paused { until: Instant },
    /// Shutting down: do not start the request.
    Shutdown,
    /// Another worker held the destination for the configuration asked about (the slot
    /// statement found its hold; this worker's cache had not): send nothing.
    Held(HoldRow),
}

impl DestinationLimiter {
    /// `per_second` requests per destination of `platform`, with bursts of up to `burst`;
    /// throttling pauses start at `first_pause`.
    pub fn new(
        platform: &'static str,
        per_second: NonZeroU32,
        burst: NonZeroU32,
        first_pause: Duration,
    ) -> Self {
        Self {
            platform,
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            pauses: Mutex::new(HashMap::new()),
            first_pause: first_pause.max(Duration::from_millis(1)),
            per_second,
            burst,
            shared: OnceLock::new(),
            fallback: Mutex::new(None),
            unwritten: Arc::default(),
        }
    }

    /// Share the limit and the pauses with every worker on `shared`'s database (once; a second
    /// call is ignored).
    pub fn share(&self, shared: SharedLimits) {
        let _ = self.shared.set(shared);
    }

    fn pause_locally(&self, key: &str, until: Instant) {
        let mut pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner());
        let entry = pauses.entry(key.to_string()).or_insert(Pause {
            until,
            consecutive: 0,
        });
        entry.until = entry.until.max(until);
    }

    /// The local limiter while the shared one is unavailable: this worker's share of the limit.
    fn fallback_limiter(&self, peers: u32) -> Arc<DefaultKeyedRateLimiter<String>> {
        let mut fallback = self.fallback.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, limiter)) = fallback.as_ref() {
            if *n == peers {
                return Arc::clone(limiter);
            }
        }
        let period = Duration::from_secs_f64(f64::from(peers) / f64::from(self.per_second.get()));
        let burst = NonZeroU32::new(self.burst.get() / peers).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(self.per_second))
            .allow_burst(burst);
        let limiter = Arc::new(RateLimiter::keyed(quota));
        *fallback = Some((peers, Arc::clone(&limiter)));
        limiter
    }

    /// Take the slot from the shared row. None: the database is unavailable (use the local
    /// share).
    async fn acquire_shared(
        &self,
        shared: &SharedLimits,
        key: &str,
        hold: Option<HoldQuery<'_>>,
        shutdown: &CancellationToken,
    ) -> Option<Slot> {
        let interval = 1.0 / f64::from(self.per_second.get());
        let tolerance = interval * f64::from(self.burst.get() - 1);
        let slot = shared
            .run(self.platform, |store| async move {
                store
                    .take_request_slot(self.platform, key, interval, tolerance, hold)
                    .await
            })
            .await
            .ok()?;
        self.flush_unwritten(shared);
        if let Some(row) = hold.and_then(|h| slot.hold(h)) {
            return Some(Slot::Held(row));
        }
        if let Some(paused_for) = slot.paused_for {
            let until = Instant::now() + Duration::from_secs_f64(paused_for.max(0.0));
            self.pause_locally(key, until);
            metrics::counter!("stagecast_rate_limit_waits_total", "platform" => self.platform, "reason" => "paused")
                .increment(1);
            return Some(Slot::Paused { until });
        }
        if slot.wait_for <= 0.0 {
            return Some(Slot::Ready {
                waited: Duration::ZERO,
            });
        }
        metrics::counter!("stagecast_rate_limit_waits_total", "platform" => self.platform, "reason" => "limiter")
            .increment(1);
        let wait = Duration::from_secs_f64(slot.wait_for);
        tokio::select! {
            _ = shutdown.cancelled() => Some(Slot::Shutdown),
            _ = tokio::time::sleep(wait) => {
                metrics::histogram!("stagecast_rate_limit_wait_seconds", "platform" => self.platform)
                    .record(wait.as_secs_f64());
                Some(Slot::Ready { waited: wait })
            }
        }
    }

    pub fn paused_until(&self, key: &str) -> Option<Instant> {
        let pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner());
        pauses
            .get(key)
            .map(|p| p.until)
            .filter(|until| *until > Instant::now())
    }

    /// Wait for a request slot for `key`, unless paused or shutting down.
    pub async fn acquire(&self, key: &str, shutdown: &CancellationToken) -> Slot {
        self.acquire_unless_held(key, None, shutdown).await
    }

    /// [`Self::acquire`], also checking (when shared, in the same statement) that no worker
    /// holds `hold`: a hold written by another worker stops this request even before this
    /// worker's cache of holds has read it.
    pub async fn acquire_unless_held(
        &self,
        key: &str,
        hold: Option<HoldQuery<'_>>,
        shutdown: &CancellationToken,
    ) -> Slot {
        if shutdown.is_cancelled() {
            return Slot::Shutdown;
        }
        if let Some(until) = self.paused_until(key) {
            // No slot statement for a paused destination, so its pause (if unwritten) is
            // tried here; while the database is marked down that costs no round trip.
            if let Some(shared) = self.shared.get() {
                self.flush_unwritten(shared);
            }
            // Counted so throttling shows up as requests held back, not only as the throttled
            // responses that started the pause.
            metrics::counter!("stagecast_rate_limit_waits_total", "platform" => self.platform, "reason" => "paused")
                .increment(1);
            return Slot::Paused { until };
        }
        let limiter = match self.shared.get() {
            Some(shared) => {
                if let Some(slot) = self.acquire_shared(shared, key, hold, shutdown).await {
                    return slot;
                }
                metrics::counter!("stagecast_rate_limit_waits_total", "platform" => self.platform, "reason" => "local_share")
                    .increment(1);
                self.fallback_limiter(shared.peers())
            }
            None => return self.acquire_local(&self.limiter, key, shutdown).await,
        };
        self.acquire_local(&limiter, key, shutdown).await
    }

    async fn acquire_local(
        &self,
        limiter: &DefaultKeyedRateLimiter<String>,
        key: &str,
        shutdown: &CancellationToken,
    ) -> Slot {
        let key = key.to_string();
        // A free slot is taken at once; only requests the limiter really holds back are
        // counted (elapsed time is never exactly zero, so it cannot tell them apart).
        if limiter.check_key(&key).is_ok() {
            return Slot::Ready {
                waited: Duration::ZERO,
            };
        }
        metrics::counter!("stagecast_rate_limit_waits_total", "platform" => self.platform, "reason" => "limiter")
            .increment(1);
        let start = Instant::now();
        tokio::select! {
            _ = shutdown.cancelled() => Slot::Shutdown,
            _ = limiter.until_key_ready(&key) => {
                let waited = start.elapsed();
                metrics::histogram!("stagecast_rate_limit_wait_seconds", "platform" => self.platform)
                    .record(waited.as_secs_f64());
                Slot::Ready { waited }
            }
        }
    }

    /// The platform throttled `key`: pause it for `hint` (the platform's estimate) or an
    /// exponentially growing default. Returns when the pause ends. This worker pauses at once;
    /// when shared, the pause and its streak are the database's (every worker's throttles
    /// count), and its answer is awaited (bounded by `DB_TIMEOUT`).
    pub async fn throttled(&self, key: &str, hint: Option<Duration>) -> Instant {
        let hint = hint.filter(|d| !d.is_zero());
        let local = {
            let mut pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let consecutive = pauses
                .get(key)
                .map(|p| p.consecutive.saturating_add(1))
                .unwrap_or(1);
            let default = self
                .first_pause
                .saturating_mul(1u32 << (consecutive - 1).min(8))
                .min(self.max_pause());
            let until = now + hint.unwrap_or(default);
            let entry = pauses
                .entry(key.to_string())
                .or_insert(Pause { until, consecutive });
            entry.until = entry.until.max(until);
            entry.consecutive = consecutive;
            entry.until
        };
        self.pause_shared(key, hint, local, true).await
    }

    fn max_pause(&self) -> Duration {
        MAX_PAUSE.max(self.first_pause)
    }

    /// Write a pause for the other workers; returns the pause in force here afterwards. A
    /// pause that cannot be written (the database down or slow) is kept in `unwritten` and
    /// written by the next request tried once the database answers again.
    async fn pause_shared(
        &self,
        key: &str,
        hint: Option<Duration>,
        local: Instant,
        throttle: bool,
    ) -> Instant {
        let Some(shared) = self.shared.get() else {
            return local;
        };
        let pause = PauseRequest {
            hint: hint.map(|d| d.as_secs_f64()),
            first: self.first_pause.as_secs_f64(),
            max: self.max_pause().as_secs_f64(),
            throttle,
        };
        let platform = self.platform;
        let written = shared
            .run(platform, |store| async move {
                store.pause_destination(platform, key, pause).await
            })
            .await;
        match written {
            Ok((paused_for, streak)) => {
                // The database's pause and streak (every worker's throttles) replace this
                // worker's own guess, which knew only its own.
                let until = Instant::now() + Duration::from_secs_f64(paused_for.max(0.0));
                let mut pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner());
                pauses.insert(
                    key.to_string(),
                    Pause {
                        until,
                        consecutive: u32::try_from(streak).unwrap_or(0),
                    },
                );
                until
            }
            Err(_) => {
                self.unwritten.keep(key, local, throttle);
                local
            }
        }
    }

    /// The database answers again: write the pauses learned while it did not, in the
    /// background (each for what is left of it; one statement per pause, once).
    fn flush_unwritten(&self, shared: &SharedLimits) {
        let Some(pending) = self.unwritten.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (platform, shared) = (self.platform, shared.clone());
        let (first, max) = (
            self.first_pause.as_secs_f64(),
            self.max_pause().as_secs_f64(),
        );
        let unwritten = Arc::clone(&self.unwritten);
        rt.spawn(async move {
            for (key, (until, throttle)) in pending {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    continue;
                }
                let pause = PauseRequest {
                    hint: Some(left.as_secs_f64()),
                    first,
                    max,
                    throttle,
                };
                let k = key.clone();
                let written = shared
                    .run(platform, |store| async move {
                        store.pause_destination(platform, &k, pause).await
                    })
                    .await;
                if written.is_err() {
                    unwritten.keep(&key, until, throttle);
                }
            }
        });
    }

    /// Usage headers say we are close to the limit: pause briefly instead of getting throttled.
    pub async fn slow_down(&self, key: &str, pause: Duration) -> Instant {
        let until = {
            let mut pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner());
            let until = Instant::now() + pause;
            let entry = pauses.entry(key.to_string()).or_insert(Pause {
                until,
                consecutive: 0,
            });
            entry.until = entry.until.max(until);
            entry.until
        };
        self.pause_shared(key, Some(pause), until, false).await
    }

    /// A request went through: the next throttle starts from the short pause again.
    pub fn succeeded(&self, key: &str) {
        let mut pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pauses.get(key) {
            if p.until <= Instant::now() {
                pauses.remove(key);
            }
        }
    }
}

/// Convert a monotonic deadline into wall-clock time (for a job's `run_at`).
pub fn instant_to_utc(until: Instant) -> chrono::DateTime<chrono::Utc> {
    let remaining = until.saturating_duration_since(Instant::now());
    chrono::Utc::now()
        + chrono::Duration::from_std(remaining).unwrap_or_else(|_| chrono::Duration::seconds(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[tokio::test]
    async fn throttle_pauses_only_that_destination_and_grows() {
        let l = DestinationLimiter::new("test", nz(100), nz(10), Duration::from_secs(60));
        let stop = CancellationToken::new();
        let first = l.throttled("a", None).await;
        assert!(first > Instant::now() + Duration::from_secs(50));
        assert!(matches!(l.acquire("a", &stop).await, Slot::Paused { .. }));
        assert!(matches!(l.acquire("b", &stop).await, Slot::Ready { .. }));
        let second = l.throttled("a", None).await;
        assert!(
            second > first + Duration::from_secs(50),
            "second pause should be about twice the first"
        );
        let hinted = l.throttled("c", Some(Duration::from_secs(5))).await;
        assert!(hinted < Instant::now() + Duration::from_secs(6));
    }

    #[tokio::test]
    async fn shutdown_stops_waiting() {
        let l = DestinationLimiter::new("test", nz(1), nz(1), Duration::from_secs(60));
        let stop = CancellationToken::new();
        assert!(matches!(l.acquire("a", &stop).await, Slot::Ready { .. }));
        stop.cancel();
        assert_eq!(l.acquire("a", &stop).await, Slot::Shutdown);
    }

    #[tokio::test]
    async fn only_requests_held_back_report_a_wait() {
        let l = DestinationLimiter::new("test", nz(20), nz(1), Duration::from_secs(60));
        let stop = CancellationToken::new();
        assert_eq!(
            l.acquire("a", &stop).await,
            Slot::Ready {
                waited: Duration::ZERO
            }
        );
        match l.acquire("a", &stop).await {
            Slot::Ready { waited } => assert!(waited > Duration::ZERO),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn limiter_spaces_requests_beyond_the_burst() {
        let l = DestinationLimiter::new("test", nz(20), nz(1), Duration::from_secs(60));
        let stop = CancellationToken::new();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(matches!(l.acquire("a", &stop).await, Slot::Ready { .. }));
        }
        // 3 requests at 20/s with a burst of 1 need at least ~100 ms: the limiter really waits.
        assert!(
            start.elapsed() >= Duration::from_millis(90),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn an_unreachable_database_falls_back_to_this_workers_share() {
        // Nothing listens on port 9: every shared statement fails at once.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:9/none")
            .unwrap();
        let shared = SharedLimits::new(crate::store::Store::new(pool));
        let l = DestinationLimiter::new("test", nz(20), nz(4), Duration::from_secs(60));
        l.share(shared.clone());
        let stop = CancellationToken::new();
        assert!(
            matches!(l.acquire("a", &stop).await, Slot::Ready { .. }),
            "delivery goes on without the database"
        );
        l.throttled("a", None).await;
        assert!(
            matches!(l.acquire("a", &stop).await, Slot::Paused { .. }),
            "a throttle still pauses this worker"
        );
        // Two workers seen: each gets half the burst (and half the rate).
        let half = l.fallback_limiter(2);
        let key = "b".to_string();
        assert!(half.check_key(&key).is_ok());
        assert!(half.check_key(&key).is_ok());
        assert!(half.check_key(&key).is_err(), "a burst of 4 shared by 2");
    }
}
