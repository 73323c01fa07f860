//! Destinations held for their configuration: the platform refused a destination's requests
//! (an invalid token, a missing permission, an unknown path) rather than its events. Every
//! request would fail the same way, so none is sent while the configuration that failed is the
//! one in use; the jobs are rescheduled without spending attempts (`EventOutcome::Held`).
//!
//! A hold is keyed by the destination and remembers a fingerprint of the configuration that was
//! refused (destination id + token, hashed: the token itself is never kept here). A different
//! fingerprint (a new sealed token, `stagecast pixel set-token`, a corrected pixel id) lifts the
//! hold at once. Because the platform may also be fixed on its side (a permission granted), one
//! request is let through as a probe every `probe_every`.
//!
//! With [`SharedLimits`] attached (every worker's pipeline), holds are shared through the
//! database (`stagecast.destination_holds`): the statement that records a hold tells whether it
//! is news, so one alert is raised across all workers; each worker reads the holds of its
//! platform about every second ([`super::shared_limits::REFRESH_EVERY`]) into the map `state`
//! answers from; between reads, the statement that takes each request's slot checks the hold too
//! (`SendLoop::hold`), so a hold another worker wrote stops the next request here at once. A due
//! probe is claimed in the database (one worker of all sends it); a release is written in the
//! background. Without a database (or while it does not answer) holds are this process's own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::shared_limits::{SharedLimits, REFRESH_EVERY};
use crate::alerts::AlertCause;
use crate::platforms::outcome::DeliveryError;
use crate::store::{HoldRow, NewHold, ProbeClaim};

#[derive(Debug, Clone)]
struct Hold {
    fingerprint: String,
    cause: AlertCause,
    error: DeliveryError,
    next_probe: Instant,
}

/// What a destination may do now.
#[derive(Debug, Clone, PartialEq)]
pub enum HoldState {
    /// Not held (or its configuration changed since): send.
    Open,
    /// Held, and the probe is due: send one request; the hold stays until it succeeds.
    Probe,
    /// Held: send nothing; the events wait with this cause and error.
    Held {
        cause: AlertCause,
        error: DeliveryError,
    },
}

#[derive(Debug)]
struct Shared {
    limits: SharedLimits,
    /// The `platform` label of the rows (one `DestinationHolds` per platform sink).
    platform: &'static str,
    /// What the platform calls its request ids (restored into errors read back).
    trace_name: &'static str,
    /// When the map was last read from the database (None: never), and whether a read is out.
    refresh: Arc<Mutex<(Option<Instant>, bool)>>,
    /// True once the first read finished (answered or not): see [`DestinationHolds::ready`].
    loaded: Arc<tokio::sync::watch::Sender<bool>>,
}

#[derive(Debug)]
pub struct DestinationHolds {
    holds: Arc<Mutex<HashMap<String, Hold>>>,
    probe_every: Duration,
    shared: OnceLock<Shared>,
    /// Bumped by every local change: a database read started before one is not applied (it
    /// could bring back a hold this worker just released).
    generation: Arc<AtomicU64>,
}

/// The fingerprint of a destination's configuration: a SHA-256, so the map never holds a token.
pub fn fingerprint(parts: &[&str]) -> String {
    crate::pii::sha256_hex(&parts.join("\u{1f}"))
}

impl DestinationHolds {
    pub fn new(probe_every: Duration) -> Self {
        Self {
            holds: Arc::new(Mutex::new(HashMap::new())),
            probe_every,
            shared: OnceLock::new(),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Share the holds of `platform`'s destinations with every worker on `limits`' database
    /// (once; a second call is ignored). `trace_name`: the platform's name for request ids.
    pub fn share(&self, limits: SharedLimits, platform: &'static str, trace_name: &'static str) {
        let _ = self.shared.set(Shared {
            limits,
            platform,
            trace_name,
            refresh: Arc::new(Mutex::new((None, false))),
            loaded: Arc::new(tokio::sync::watch::Sender::new(false)),
        });
        self.refresh_if_due();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hold>> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Read the platform's holds from the database in the background when the map is older
    /// than [`REFRESH_EVERY`]; the map is replaced only if nothing changed here meanwhile.
    fn refresh_if_due(&self) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        {
            let mut refresh = shared.refresh.lock().unwrap_or_else(|p| p.into_inner());
            let (last, in_flight) = *refresh;
            if in_flight || last.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
                return;
            }
            let Ok(_) = tokio::runtime::Handle::try_current() else {
                return;
            };
            *refresh = (Some(Instant::now()), true);
        }
        let (limits, platform, trace_name) =
            (shared.limits.clone(), shared.platform, shared.trace_name);
        let (holds, generation) = (Arc::clone(&self.holds), Arc::clone(&self.generation));
        let refresh = Arc::clone(&shared.refresh);
        let loaded = Arc::clone(&shared.loaded);
        let started = generation.load(Ordering::SeqCst);
        tokio::spawn(async move {
            let rows = limits
                .run(platform, |store| async move {
                    store.destination_holds(platform).await
                })
                .await;
            if let Ok(rows) = rows {
                let now = Instant::now();
                let fresh: HashMap<String, Hold> = rows
                    .into_iter()
                    .filter_map(|r| hold_from_row(r, trace_name, now))
                    .collect();
                let mut map = holds.lock().unwrap_or_else(|p| p.into_inner());
                if generation.load(Ordering::SeqCst) == started {
                    *map = fresh;
                }
            }
            let mut refresh = refresh.lock().unwrap_or_else(|p| p.into_inner());
            *refresh = (Some(Instant::now()), false);
            loaded.send_replace(true);
        });
    }

    /// Wait (briefly) for the first read of the shared holds, so a worker that just started
    /// knows the holds other workers found before it sends its first request.
    pub async fn ready(&self) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        let mut loaded = shared.loaded.subscribe();
        if *loaded.borrow() {
            return;
        }
        self.refresh_if_due();
        let bound = super::shared_limits::DB_TIMEOUT * 2;
        let _ = tokio::time::timeout(bound, loaded.wait_for(|done| *done)).await;
    }

    /// Whether `key` may send with the configuration `fingerprint`. A changed fingerprint lifts
    /// the hold; a due probe is handed out once per `probe_every`: when shared, as a claim in
    /// the database that one worker of all wins (sql/claim_hold_probe.sql), so two workers that
    /// both see the probe due do not both send it.
    pub async fn state(&self, key: &str, fingerprint: &str) -> HoldState {
        self.refresh_if_due();
        let (cause, error) = {
            let mut holds = self.lock();
            let Some(hold) = holds.get_mut(key) else {
                return HoldState::Open;
            };
            if hold.fingerprint != fingerprint {
                let old = hold.fingerprint.clone();
                holds.remove(key);
                drop(holds);
                self.changed();
                self.write_behind(key, move |store, platform, key| async move {
                    store
                        .release_destination_hold(platform, &key, Some(&old))
                        .await
                });
                return HoldState::Open;
            }
            let now = Instant::now();
            if now < hold.next_probe {
                return HoldState::Held {
                    cause: hold.cause,
                    error: hold.error.clone(),
                };
            }
            // Pushed back here first: this process's other deliveries hold meanwhile.
            hold.next_probe = now + self.probe_every;
            (hold.cause, hold.error.clone())
        };
        self.changed();
        let Some(shared) = self.shared.get() else {
            return HoldState::Probe;
        };
        let (platform, secs) = (shared.platform, self.probe_every.as_secs_f64());
        let claim = shared
            .limits
            .run(platform, |store| async move {
                store
                    .claim_hold_probe(platform, key, fingerprint, secs)
                    .await
            })
            .await;
        match claim {
            // The database unavailable: this worker's own memory decides, as without one.
            Ok(ProbeClaim::Probe) | Err(_) => HoldState::Probe,
            Ok(ProbeClaim::Held) => HoldState::Held { cause, error },
            Ok(ProbeClaim::Open) => {
                let mut holds = self.lock();
                if holds.get(key).is_some_and(|h| h.fingerprint == fingerprint) {
                    holds.remove(key);
                }
                drop(holds);
                self.changed();
                HoldState::Open
            }
        }
    }

    /// The platform refused `key`'s configuration. Returns true when this is news (no hold for
    /// this configuration yet, in any worker when shared): the caller raises the one alert then.
    pub async fn hold(
        &self,
        key: &str,
        fingerprint: &str,
        cause: AlertCause,
        error: DeliveryError,
    ) -> bool {
        let local_news = {
            let mut holds = self.lock();
            let news = holds
                .get(key)
                .is_none_or(|h| h.fingerprint != fingerprint || h.cause != cause);
            let next_probe = Instant::now() + self.probe_every;
            holds.insert(
                key.to_string(),
                Hold {
                    fingerprint: fingerprint.to_string(),
                    cause,
                    error: error.clone(),
                    next_probe,
                },
            );
            news
        };
        self.changed();
        let Some(shared) = self.shared.get() else {
            return local_news;
        };
        let platform = shared.platform;
        let new = NewHold {
            platform,
            destination: key,
            fingerprint,
            cause: cause.code(),
            http_status: error.http_status,
            error_code: error.code.as_deref(),
            error_subcode: error.subcode,
            trace_id: error.trace_id.as_deref(),
            message: &error.message,
            probe_in: self.probe_every.as_secs_f64(),
        };
        // The database decides when it answers (another worker may have held it first);
        // otherwise this worker's own memory does.
        shared
            .limits
            .run(platform, |store| async move {
                store.hold_destination(&new).await
            })
            .await
            .unwrap_or(local_news)
    }

    /// A hold the slot statement found (another worker wrote it; the cache had not read it):
    /// kept here as a refresh would. Its cause and error, unless the cause is one this version
    /// does not know.
    pub fn learn(&self, row: HoldRow) -> Option<(AlertCause, DeliveryError)> {
        let trace_name = self.shared.get().map_or("", |s| s.trace_name);
        let (key, hold) = hold_from_row(row, trace_name, Instant::now())?;
        let found = (hold.cause, hold.error.clone());
        self.lock().insert(key, hold);
        self.changed();
        Some(found)
    }

    /// A request to `key` succeeded: whatever was held is lifted (for every worker).
    pub fn release(&self, key: &str) -> bool {
        let was_held = self.lock().remove(key).is_some();
        if was_held {
            self.changed();
            self.write_behind(key, |store, platform, key| async move {
                store.release_destination_hold(platform, &key, None).await
            });
        }
        was_held
    }

    /// Write a change for the other workers in the background (it holds here already).
    fn write_behind<F>(
        &self,
        key: &str,
        f: impl FnOnce(crate::store::Store, &'static str, String) -> F + Send + 'static,
    ) where
        F: std::future::Future<Output = Result<(), crate::store::StoreError>> + Send + 'static,
    {
        if let Some(shared) = self.shared.get() {
            let (platform, key) = (shared.platform, key.to_string());
            shared
                .limits
                .spawn(platform, move |store| f(store, platform, key));
        }
    }
}

/// A stored hold back into the map (a cause this version does not know is skipped).
fn hold_from_row(r: HoldRow, trace_name: &'static str, now: Instant) -> Option<(String, Hold)> {
    let cause = AlertCause::ALL.into_iter().find(|c| c.code() == r.cause)?;
    let probe_in = Duration::from_secs_f64(r.probe_in.max(0.0));
    let error = DeliveryError {
        http_status: r.http_status.and_then(|s| u16::try_from(s).ok()),
        code: r.error_code,
        subcode: r.error_subcode,
        trace_id: r.trace_id,
        trace_name,
        message: r.message,
    };
    Some((
        r.destination,
        Hold {
            fingerprint: r.fingerprint,
            cause,
            error,
            next_probe: now + probe_in,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hold_keeps_back_the_same_configuration_until_it_changes_or_a_probe_is_due() {
        let holds = DestinationHolds::new(Duration::from_secs(3600));
        let a = fingerprint(&["pixel", "token-a"]);
        let b = fingerprint(&["pixel", "token-b"]);
        assert_ne!(a, b);
        assert!(!a.contains("token"), "the fingerprint is a hash");
        assert_eq!(holds.state("1", &a).await, HoldState::Open);
        let err = DeliveryError::local("expired");
        assert!(
            holds
                .hold("1", &a, AlertCause::TokenInvalid, err.clone())
                .await
        );
        assert!(
            !holds
                .hold("1", &a, AlertCause::TokenInvalid, err.clone())
                .await,
            "the same hold again is no news: no second alert"
        );
        assert_eq!(
            holds.state("1", &a).await,
            HoldState::Held {
                cause: AlertCause::TokenInvalid,
                error: err.clone()
            }
        );
        assert_eq!(
            holds.state("2", &a).await,
            HoldState::Open,
            "per destination"
        );
        assert_eq!(
            holds.state("1", &b).await,
            HoldState::Open,
            "a new token lifts it"
        );
        assert_eq!(
            holds.state("1", &a).await,
            HoldState::Open,
            "lifted for good"
        );

        let probing = DestinationHolds::new(Duration::ZERO);
        probing.hold("1", &a, AlertCause::TokenInvalid, err).await;
        assert_eq!(probing.state("1", &a).await, HoldState::Probe);
        assert!(probing.release("1"));
        assert_eq!(probing.state("1", &a).await, HoldState::Open);
    }
}
