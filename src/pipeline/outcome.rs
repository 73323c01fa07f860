//! The outcome decision: what became of a job's events (delivered, retried, throttled, not
//! started, lost with the lease) and of its local problems → one job outcome, and the alert the
//! decision itself raises. Pure: the facts in, the decision out; [`super::finish`] turns it
//! into rows.
//!
//! The order matters (docs/crm-integration.md §7): a lost lease writes nothing; any transient
//! problem retries the job (a permanent problem beside it is retried too, and fails for good on
//! the next attempt); then a hold, a throttle, then a shutdown, give the attempt back; then any
//! permanent problem fails it; else it is done.

use chrono::{DateTime, Utc};

use crate::alerts::{platform_display, AlertDetails};
use crate::queue::RetryDecision;

/// What happened to one job in this attempt.
#[derive(Debug, Clone, Default)]
pub struct JobFacts<'a> {
    /// The worker could not confirm its lease in time.
    pub lease_lost: bool,
    /// Transient problems (network, 5xx, a database error while loading the job).
    pub retry_errors: &'a [String],
    /// Permanent problems: configuration, events a platform rejected, local checks.
    pub failures: &'a [String],
    /// The latest end of a throttle, and the platform (contract code) that throttled.
    pub throttled: Option<(DateTime<Utc>, &'a str)>,
    /// The latest end of a hold (a destination refused for its configuration, e.g. an invalid
    /// token), and the platform that refused it.
    pub held: Option<(DateTime<Utc>, &'a str)>,
    /// Events not sent because the worker is shutting down.
    pub not_started: bool,
    pub delivered: usize,
    /// Events an earlier attempt delivered (skipped through the ledger).
    pub already_delivered: usize,
    /// Other jobs the ledger says delivered some of them (true duplicates of this change).
    pub delivered_by: &'a [i64],
    /// For the `delivery_gave_up` alert: the platform of the first transient problem, the
    /// stage, and the event as sent.
    pub platform: Option<&'a str>,
    pub stage_name: Option<&'a str>,
    pub event_name: Option<&'a str>,
}

/// The job's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Another worker may hold the job: nothing is written for it but the audit of what this
    /// run sent (the ledger the rescuer reads).
    LeaseLost,
    /// Every event delivered, now or by an earlier attempt, or nothing to send.
    Done { note: Option<String> },
    /// Again at `at`, an attempt spent.
    Retry { at: DateTime<Utc>, error: String },
    /// Again when the throttle ends, the attempt refunded.
    Throttled { until: DateTime<Utc>, error: String },
    /// Again at `until` (to see whether the destination's configuration changed), the attempt
    /// refunded: a held destination spends no attempts; only the age window fails its events.
    Held { until: DateTime<Utc>, error: String },
    /// Again now, the attempt refunded: the worker stopped before sending.
    Released { at: DateTime<Utc>, error: String },
    /// For good: a permanent problem, or the retry budget is spent (then `gave_up` holds the
    /// `delivery_gave_up` alert's details).
    Failed {
        error: String,
        gave_up: Option<Box<AlertDetails>>,
    },
}

impl Decision {
    /// The `outcome` written back (complete_jobs.sql), `None` for a lost lease.
    pub fn outcome(&self) -> Option<&'static str> {
        Some(match self {
            Decision::LeaseLost => return None,
            Decision::Done { .. } => "done",
            Decision::Retry { .. } => "retry",
            Decision::Throttled { .. } => "throttled",
            Decision::Held { .. } => "held",
            Decision::Released { .. } => "released",
            Decision::Failed { .. } => "failed",
        })
    }
}

/// Decide a job's outcome. `budget` is asked only when a transient problem wants a retry: the
/// queue's backoff policy says when, or that the job's attempts or time are spent.
pub fn decide(
    facts: &JobFacts<'_>,
    budget: impl FnOnce() -> RetryDecision,
    now: DateTime<Utc>,
) -> Decision {
    if facts.lease_lost {
        return Decision::LeaseLost;
    }
    if !facts.retry_errors.is_empty() {
        let mut errors = facts.retry_errors.to_vec();
        errors.extend(facts.failures.iter().cloned());
        let error = summarize(&errors);
        return match budget() {
            RetryDecision::RetryAt(at) => Decision::Retry { at, error },
            RetryDecision::GiveUp(reason) => Decision::Failed {
                error: format!("{reason}: {error}"),
                gave_up: Some(Box::new(AlertDetails {
                    platform: facts.platform.map(str::to_string),
                    stage_name: facts.stage_name.map(str::to_string),
                    event_name: facts.event_name.map(str::to_string),
                    error: facts.retry_errors.first().cloned(),
                    ..AlertDetails::default()
                })),
            },
        };
    }
    if let Some((until, platform)) = facts.held {
        return Decision::Held {
            until,
            error: format!(
                "held: {} refused the destination's configuration; waiting for it to change without spending an attempt",
                platform_display(Some(platform))
            ),
        };
    }
    if let Some((until, platform)) = facts.throttled {
        return Decision::Throttled {
            until,
            error: format!(
                "throttled by {}; paused without spending an attempt",
                platform_display(Some(platform))
            ),
        };
    }
    if facts.not_started {
        return Decision::Released {
            at: now,
            error: "released on shutdown before sending".into(),
        };
    }
    if !facts.failures.is_empty() {
        return Decision::Failed {
            error: summarize(facts.failures),
            gave_up: None,
        };
    }
    let sent = facts.delivered + facts.already_delivered;
    Decision::Done {
        note: (sent > 0).then(|| {
            let by = if facts.delivered_by.is_empty() {
                String::new()
            } else {
                let jobs: Vec<String> = facts.delivered_by.iter().map(i64::to_string).collect();
                format!("; already delivered by job {}", jobs.join(", "))
            };
            format!(
                "{} delivered, {} already delivered earlier{by}",
                facts.delivered, facts.already_delivered
            )
        }),
    }
}

/// A bounded one-line summary for `last_error`: the first three distinct errors, how many
/// more, at most 1,000 characters.
pub fn summarize(errors: &[String]) -> String {
    let mut unique: Vec<&String> = Vec::new();
    for e in errors {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    let mut s = unique
        .iter()
        .take(3)
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    if unique.len() > 3 {
        s.push_str(&format!("; (+{} more)", unique.len() - 3));
    }
    if s.chars().count() > 1000 {
        s = s.chars().take(1000).collect::<String>() + "…";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn later(secs: i64) -> DateTime<Utc> {
        now() + chrono::Duration::seconds(secs)
    }

    /// A budget that must not be consulted.
    fn unused() -> RetryDecision {
        panic!("the retry budget was consulted without a transient problem")
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn events_another_job_delivered_are_named_in_the_note() {
        let facts = JobFacts {
            already_delivered: 2,
            delivered_by: &[17, 18],
            ..JobFacts::default()
        };
        assert_eq!(
            decide(&facts, unused, now()),
            Decision::Done {
                note: Some(
                    "0 delivered, 2 already delivered earlier; already delivered by job 17, 18"
                        .into()
                )
            }
        );
    }

    #[test]
    fn everything_delivered_is_done_with_a_note_and_nothing_to_send_is_done_without() {
        let facts = JobFacts {
            delivered: 2,
            already_delivered: 1,
            ..JobFacts::default()
        };
        assert_eq!(
            decide(&facts, unused, now()),
            Decision::Done {
                note: Some("2 delivered, 1 already delivered earlier".into())
            }
        );
        assert_eq!(
            decide(&JobFacts::default(), unused, now()),
            Decision::Done { note: None }
        );
        let skipped = JobFacts {
            already_delivered: 1,
            ..JobFacts::default()
        };
        assert_eq!(
            decide(&skipped, unused, now()).outcome(),
            Some("done"),
            "delivered by an earlier attempt"
        );
    }

    #[test]
    fn a_lost_lease_writes_nothing_whatever_else_happened() {
        let errors = strings(&["timeout"]);
        let failures = strings(&["rejected"]);
        let facts = JobFacts {
            lease_lost: true,
            retry_errors: &errors,
            failures: &failures,
            throttled: Some((later(60), "facebook")),
            not_started: true,
            delivered: 1,
            ..JobFacts::default()
        };
        assert_eq!(decide(&facts, unused, now()), Decision::LeaseLost);
        assert_eq!(Decision::LeaseLost.outcome(), None);
    }

    #[test]
    fn a_transient_problem_retries_within_the_budget_even_beside_a_permanent_one() {
        let errors = strings(&["Lead to pixel 1: timed out", "Lead to pixel 1: timed out"]);
        let failures = strings(&["Purchase to pixel 2: rejected"]);
        let facts = JobFacts {
            retry_errors: &errors,
            failures: &failures,
            throttled: Some((later(60), "facebook")),
            not_started: true,
            delivered: 1,
            ..JobFacts::default()
        };
        assert_eq!(
            decide(&facts, || RetryDecision::RetryAt(later(5)), now()),
            Decision::Retry {
                at: later(5),
                error: "Lead to pixel 1: timed out; Purchase to pixel 2: rejected".into()
            }
        );
    }

    #[test]
    fn a_spent_budget_fails_with_the_reason_and_a_gave_up_alert() {
        let errors = strings(&["Purchase to pixel 1: HTTP 503", "Lead to pixel 1: HTTP 503"]);
        let facts = JobFacts {
            retry_errors: &errors,
            platform: Some("facebook"),
            stage_name: Some("Venda fechada"),
            event_name: Some("Purchase"),
            ..JobFacts::default()
        };
        let decision = decide(
            &facts,
            || RetryDecision::GiveUp("no attempts left (12 of 12)".into()),
            now(),
        );
        let Decision::Failed { error, gave_up } = decision else {
            panic!("expected failed, got {decision:?}")
        };
        assert_eq!(
            error,
            "no attempts left (12 of 12): Purchase to pixel 1: HTTP 503; Lead to pixel 1: HTTP 503"
        );
        let alert = gave_up.expect("a delivery_gave_up alert");
        assert_eq!(alert.platform.as_deref(), Some("facebook"));
        assert_eq!(alert.stage_name.as_deref(), Some("Venda fechada"));
        assert_eq!(alert.event_name.as_deref(), Some("Purchase"));
        assert_eq!(
            alert.error.as_deref(),
            Some("Purchase to pixel 1: HTTP 503"),
            "the first transient error"
        );
    }

    #[test]
    fn a_throttle_refunds_the_attempt_before_a_shutdown_or_a_permanent_problem() {
        let failures = strings(&["Purchase to pixel 2: rejected"]);
        let facts = JobFacts {
            throttled: Some((later(90), "facebook")),
            not_started: true,
            failures: &failures,
            delivered: 1,
            ..JobFacts::default()
        };
        assert_eq!(
            decide(&facts, unused, now()),
            Decision::Throttled {
                until: later(90),
                error: "throttled by Meta; paused without spending an attempt".into()
            }
        );
    }

    #[test]
    fn a_held_destination_refunds_the_attempt_before_a_throttle_or_a_permanent_problem() {
        let failures = strings(&["Purchase to pixel 2: rejected"]);
        let facts = JobFacts {
            held: Some((later(60), "facebook")),
            throttled: Some((later(90), "facebook")),
            not_started: true,
            failures: &failures,
            ..JobFacts::default()
        };
        let decision = decide(&facts, unused, now());
        assert_eq!(decision.outcome(), Some("held"));
        let Decision::Held { until, error } = decision else {
            panic!("expected held, got {decision:?}")
        };
        assert_eq!(until, later(60));
        assert!(error.starts_with("held: Meta refused"), "{error}");
        // A transient problem beside it still retries (and spends the attempt).
        let errors = strings(&["Lead to pixel 1: timed out"]);
        let both = JobFacts {
            retry_errors: &errors,
            ..facts
        };
        assert_eq!(
            decide(&both, || RetryDecision::RetryAt(later(5)), now()).outcome(),
            Some("retry")
        );
    }

    #[test]
    fn a_shutdown_before_sending_releases_before_a_permanent_problem() {
        let failures = strings(&["Purchase to pixel 2: rejected"]);
        let facts = JobFacts {
            not_started: true,
            failures: &failures,
            ..JobFacts::default()
        };
        assert_eq!(
            decide(&facts, unused, now()),
            Decision::Released {
                at: now(),
                error: "released on shutdown before sending".into()
            }
        );
    }

    #[test]
    fn a_permanent_problem_fails_even_when_another_event_was_delivered() {
        let failures = strings(&[
            "Lead: no campaign",
            "Lead: no campaign",
            "Purchase: no value",
        ]);
        let facts = JobFacts {
            failures: &failures,
            delivered: 1,
            ..JobFacts::default()
        };
        assert_eq!(
            decide(&facts, unused, now()),
            Decision::Failed {
                error: "Lead: no campaign; Purchase: no value".into(),
                gave_up: None
            }
        );
    }

    #[test]
    fn summaries_are_bounded() {
        let many = strings(&["a", "b", "c", "d", "e"]);
        assert_eq!(summarize(&many), "a; b; c; (+2 more)");
        let long = vec!["x".repeat(2000)];
        assert_eq!(summarize(&long).chars().count(), 1001);
    }
}
