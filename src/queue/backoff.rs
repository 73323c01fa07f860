//! *When* to retry (kept apart from *whether*, which each platform's `RetryLogic`
//! decides). Exponential growth, capped, with full jitter so a burst of failures does not
//! come back as a synchronized burst.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// Exponential backoff with full jitter: attempt n waits uniformly in `[0, min(cap, base·2ⁿ⁻¹)]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The ceiling of the jittered delay after `attempt` (1-based) failed.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let grown = self.base.saturating_mul(1u32 << exp);
        grown.min(self.cap)
    }

    /// A delay drawn with full jitter.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        if ceiling.is_zero() {
            return ceiling;
        }
        Duration::from_secs_f64(rng.random_range(0.0..=ceiling.as_secs_f64()))
    }
}

/// Attempt and time budgets plus the backoff: decides whether a failed job is retried (and
/// at what time) or given up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// A job older than this is not retried again (Meta refuses events older than 7 days;
    /// the default leaves a margin below that).
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            max_age: Duration::from_secs(6 * 24 * 3600),
        }
    }
}

/// Retry at a time, or give up with the budget that ran out.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryDecision {
    RetryAt(DateTime<Utc>),
    GiveUp(String),
}

impl RetryPolicy {
    /// `attempt` is the attempt that just failed (1-based), `created_at` when the job was queued.
    pub fn decide(
        &self,
        attempt: i32,
        max_attempts: i32,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> RetryDecision {
        if attempt >= max_attempts {
            return RetryDecision::GiveUp(format!(
                "gave up after {attempt} of {max_attempts} attempts"
            ));
        }
        let delay = self.backoff.delay(attempt.max(1) as u32, &mut rand::rng());
        let at = now
            + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::seconds(0));
        let deadline =
            created_at + chrono::Duration::from_std(self.max_age).unwrap_or(chrono::Duration::MAX);
        if at > deadline {
            return RetryDecision::GiveUp(format!(
                "gave up after {attempt} attempts: the job is older than its time budget of {}",
                humantime::format_duration(self.max_age)
            ));
        }
        RetryDecision::RetryAt(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_grows_exponentially_and_caps() {
        let b = Backoff {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(60),
        };
        assert_eq!(b.ceiling(1), Duration::from_secs(5));
        assert_eq!(b.ceiling(2), Duration::from_secs(10));
        assert_eq!(b.ceiling(4), Duration::from_secs(40));
        assert_eq!(b.ceiling(5), Duration::from_secs(60));
        assert_eq!(b.ceiling(500), Duration::from_secs(60));
    }

    #[test]
    fn full_jitter_stays_within_ceiling_and_spreads() {
        let b = Backoff::default();
        let mut rng = rand::rng();
        let delays: Vec<Duration> = (0..500).map(|_| b.delay(3, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= b.ceiling(3)));
        let min = delays.iter().min().unwrap();
        let max = delays.iter().max().unwrap();
        // Full jitter spreads over the whole range, not just near the ceiling.
        assert!(*min < Duration::from_secs(5), "min {min:?}");
        assert!(*max > Duration::from_secs(15), "max {max:?}");
    }

    #[test]
    fn attempt_budget_gives_up() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        assert!(
            matches!(p.decide(12, 12, now, now), RetryDecision::GiveUp(m) if m.contains("12 of 12"))
        );
        assert!(matches!(p.decide(1, 12, now, now), RetryDecision::RetryAt(at) if at >= now));
    }

    #[test]
    fn time_budget_gives_up() {
        let p = RetryPolicy {
            backoff: Backoff {
                base: Duration::from_secs(10),
                cap: Duration::from_secs(10),
            },
            max_age: Duration::from_secs(60),
        };
        let now = Utc::now();
        let created = now - chrono::Duration::seconds(3600);
        assert!(
            matches!(p.decide(1, 12, created, now), RetryDecision::GiveUp(m) if m.contains("time budget"))
        );
    }
}
