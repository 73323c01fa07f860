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
//! Holds live in the worker's memory: a restarted worker probes once before holding again (one
//! request and possibly one more alert per worker start, which is cheap and says the problem is
//! still there).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::alerts::AlertCause;
use crate::platforms::outcome::DeliveryError;

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
pub struct DestinationHolds {
    holds: Mutex<HashMap<String, Hold>>,
    probe_every: Duration,
}

/// The fingerprint of a destination's configuration: a SHA-256, so the map never holds a token.
pub fn fingerprint(parts: &[&str]) -> String {
    crate::pii::sha256_hex(&parts.join("\u{1f}"))
}

impl DestinationHolds {
    pub fn new(probe_every: Duration) -> Self {
        Self {
            holds: Mutex::new(HashMap::new()),
            probe_every,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hold>> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` may send with the configuration `fingerprint`. A changed fingerprint lifts
    /// the hold; a due probe is handed out once per `probe_every`.
    pub fn state(&self, key: &str, fingerprint: &str) -> HoldState {
        let mut holds = self.lock();
        let Some(hold) = holds.get_mut(key) else {
            return HoldState::Open;
        };
        if hold.fingerprint != fingerprint {
            holds.remove(key);
            return HoldState::Open;
        }
        let now = Instant::now();
        if now >= hold.next_probe {
            hold.next_probe = now + self.probe_every;
            return HoldState::Probe;
        }
        HoldState::Held {
            cause: hold.cause,
            error: hold.error.clone(),
        }
    }

    /// The platform refused `key`'s configuration. Returns true when this is news (no hold for
    /// this configuration yet): the caller raises the one alert then.
    pub fn hold(
        &self,
        key: &str,
        fingerprint: &str,
        cause: AlertCause,
        error: DeliveryError,
    ) -> bool {
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
                error,
                next_probe,
            },
        );
        news
    }

    /// A request to `key` succeeded: whatever was held is lifted.
    pub fn release(&self, key: &str) -> bool {
        self.lock().remove(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_keeps_back_the_same_configuration_until_it_changes_or_a_probe_is_due() {
        let holds = DestinationHolds::new(Duration::from_secs(3600));
        let a = fingerprint(&["pixel", "token-a"]);
        let b = fingerprint(&["pixel", "token-b"]);
        assert_ne!(a, b);
        assert!(!a.contains("token"), "the fingerprint is a hash");
        assert_eq!(holds.state("1", &a), HoldState::Open);
        let err = DeliveryError::local("expired");
        assert!(holds.hold("1", &a, AlertCause::TokenInvalid, err.clone()));
        assert!(
            !holds.hold("1", &a, AlertCause::TokenInvalid, err.clone()),
            "the same hold again is no news: no second alert"
        );
        assert_eq!(
            holds.state("1", &a),
            HoldState::Held {
                cause: AlertCause::TokenInvalid,
                error: err.clone()
            }
        );
        assert_eq!(holds.state("2", &a), HoldState::Open, "per destination");
        assert_eq!(
            holds.state("1", &b),
            HoldState::Open,
            "a new token lifts it"
        );
        assert_eq!(holds.state("1", &a), HoldState::Open, "lifted for good");

        let probing = DestinationHolds::new(Duration::ZERO);
        probing.hold("1", &a, AlertCause::TokenInvalid, err);
        assert_eq!(probing.state("1", &a), HoldState::Probe);
        assert!(probing.release("1"));
        assert_eq!(probing.state("1", &a), HoldState::Open);
    }
}
