//! Settings of `stagecast run` checked against each other (issue 12, finding 7). Each value may
//! be valid on its own and the combination still break a promise: a lease too short for a
//! request, a drain too short for the request in flight, a ledger pruned while its job can
//! still be retried. `run` refuses to start on any of these; `stagecast doctor` reports the
//! same, from this same function. docs/operations.md ("Settings rules") explains each rule.

use std::time::Duration;

use super::WorkerArgs;
use crate::platforms::args::RequestLimits;
use crate::queue::{heartbeat_period, heartbeat_timeout};

/// Two settings that contradict each other, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{first} and {second}: {problem} Fix: {fix}")]
pub struct Conflict {
    /// Stable id of the rule (the doctor's check id is `settings.<rule>`).
    pub rule: &'static str,
    /// The two flags, with their environment twin: `--lease (STAGECAST_LEASE)`.
    pub first: &'static str,
    pub second: &'static str,
    pub problem: String,
    pub fix: String,
}

const LEASE: &str = "--lease (STAGECAST_LEASE)";
const HEARTBEAT: &str = "--heartbeat-interval (STAGECAST_HEARTBEAT_INTERVAL)";
const DRAIN: &str = "--drain-timeout (STAGECAST_DRAIN_TIMEOUT)";
const RETENTION_AUDIT: &str = "--retention-audit (STAGECAST_RETENTION_AUDIT)";
const MAX_JOB_AGE: &str = "--max-job-age (STAGECAST_MAX_JOB_AGE)";
const CLAIM_MAX_BYTES: &str = "--claim-max-bytes (STAGECAST_CLAIM_MAX_BYTES)";
const BATCH_SIZE: &str = "--batch-size (STAGECAST_BATCH_SIZE)";

/// The least payload a claim must return per job: a stage change's is about 200 bytes, and a
/// payload over the share is refused for a job kind that cannot be expanded in SQL.
const MIN_CLAIM_BYTES_PER_JOB: usize = 1024;

fn show(d: Duration) -> String {
    // Whole milliseconds: humantime would print nanoseconds of a division.
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// Every contradiction between the settings, empty when they fit together: the worker's own,
/// and the worker's against each platform's (`PlatformArgs::limits`).
pub fn check(worker: &WorkerArgs, platforms: &[RequestLimits]) -> Vec<Conflict> {
    let mut out = Vec::new();
    // As the worker uses them (see WorkerArgs::worker_config).
    let lease = worker.lease.max(Duration::from_secs(1));
    let beat = heartbeat_period(lease, worker.heartbeat_interval);
    let beat_timeout = heartbeat_timeout(beat);

    // A lease survives one failed beat: two periods plus the second beat's own timeout.
    if beat * 2 + beat_timeout > lease {
        out.push(Conflict {
            rule: "heartbeat_interval",
            first: HEARTBEAT,
            second: LEASE,
            problem: format!(
                "a heartbeat every {} leaves no room for one failed beat in a {} lease (two periods plus a beat's {} timeout make {}).",
                show(beat),
                show(lease),
                show(beat_timeout),
                show(beat * 2 + beat_timeout)
            ),
            fix: format!(
                "set --heartbeat-interval to at most {}, unset it (a third of the lease), or raise --lease to at least {}.",
                show(lease.saturating_sub(beat_timeout) / 2),
                show(beat * 2 + beat_timeout)
            ),
        });
    }
    for limits in platforms {
        out.extend(platform_rules(worker, lease, beat, beat_timeout, limits));
    }
    let batch = worker.batch_size.max(1);
    if worker.claim_max_bytes / batch < MIN_CLAIM_BYTES_PER_JOB {
        out.push(Conflict {
            rule: "claim_bytes_per_job",
            first: CLAIM_MAX_BYTES,
            second: BATCH_SIZE,
            problem: format!(
                "{} over {batch} jobs leaves {} bytes of payload per job, under {}: stage changes would fail as too large to be claimed.",
                super::show_bytes(worker.claim_max_bytes),
                worker.claim_max_bytes / batch,
                super::show_bytes(MIN_CLAIM_BYTES_PER_JOB),
            ),
            fix: format!(
                "raise --claim-max-bytes to at least {}, or lower --batch-size to at most {}.",
                super::show_bytes(batch * MIN_CLAIM_BYTES_PER_JOB),
                (worker.claim_max_bytes / MIN_CLAIM_BYTES_PER_JOB).max(1)
            ),
        });
    }
    let retried_until = worker.max_job_age + worker.retry_cap.max(worker.retry_base);
    if worker.retention_audit < retried_until {
        out.push(Conflict {
            rule: "retention_job_age",
            first: RETENTION_AUDIT,
            second: MAX_JOB_AGE,
            problem: format!(
                "the delivery ledger is pruned after {}, but a job is retried until it is {} old (--max-job-age plus one --retry-cap of backoff): a retry could send again what was delivered.",
                show(worker.retention_audit),
                show(retried_until)
            ),
            fix: format!(
                "raise --retention-audit to at least {}, or lower --max-job-age.",
                show(retried_until)
            ),
        });
    }
    out
}

/// The rules between the worker's settings and one platform's request timeout and window.
fn platform_rules(
    worker: &WorkerArgs,
    lease: Duration,
    beat: Duration,
    beat_timeout: Duration,
    limits: &RequestLimits,
) -> Vec<Conflict> {
    let mut out = Vec::new();
    let request = limits.timeout;
    // A request starts only while the lease is known to outlast it; just before a beat, a
    // healthy worker's lease reaches `lease - period - beat timeout` ahead.
    let headroom = lease.saturating_sub(beat + beat_timeout);
    if request > headroom {
        out.push(Conflict {
            rule: limits.lease_rule,
            first: LEASE,
            second: limits.timeout_setting,
            problem: format!(
                "{} of up to {} may start only while the lease outlasts it, and a {} lease with a heartbeat every {} (timeout {}) is only known to last {} ahead: the worker would stop sending.",
                limits.request,
                show(request),
                show(lease),
                show(beat),
                show(beat_timeout),
                show(headroom)
            ),
            fix: format!(
                "raise --lease to at least {}, or lower {} to at most {}.",
                show(min_lease(request, worker.heartbeat_interval)),
                limits.timeout_flag,
                show(headroom)
            ),
        });
    }
    // The request in flight at SIGTERM must end within the drain; cut off, its events may
    // have reached the platform unrecorded and are sent again.
    if request >= worker.drain_timeout {
        out.push(Conflict {
            rule: limits.drain_rule,
            first: DRAIN,
            second: limits.timeout_setting,
            problem: format!(
                "a request in flight at shutdown may take up to {}, longer than the {} drain: it would be cut off and its events sent again.",
                show(request),
                show(worker.drain_timeout)
            ),
            fix: format!(
                "raise --drain-timeout above {} (e.g. {}), or lower {}.",
                show(request),
                show(request + Duration::from_secs(5)),
                limits.timeout_flag
            ),
        });
    }
    // The ledger (delivery audit) must outlive every chance of sending its events again: a
    // retry until the time budget plus the last backoff, a replay until the event is too old.
    if worker.retention_audit < limits.max_event_age {
        out.push(Conflict {
            rule: limits.retention_rule,
            first: RETENTION_AUDIT,
            second: limits.max_event_age_setting,
            problem: format!(
                "the delivery ledger is pruned after {}, but an event may be sent (replayed) until it is {} old: a replay could send again what was delivered.",
                show(worker.retention_audit),
                show(limits.max_event_age)
            ),
            fix: format!(
                "raise --retention-audit to at least {}.",
                show(limits.max_event_age)
            ),
        });
    }
    out
}

/// The shortest lease with which a request of `request` can always start.
fn min_lease(request: Duration, interval: Option<Duration>) -> Duration {
    let fits = |lease: Duration| {
        let beat = heartbeat_period(lease, interval);
        beat + heartbeat_timeout(beat) + request <= lease
    };
    // Whole seconds, upwards: the first that fits (a lease grows its default beat with it, so
    // the bound has no simple closed form).
    let mut secs = request.as_secs().max(1);
    while !fits(Duration::from_secs(secs)) && secs < 100 * 24 * 3600 {
        secs += 1;
    }
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn all_settings(args: &[&str]) -> (WorkerArgs, Vec<RequestLimits>) {
        #[derive(Parser)]
        struct Both {
            #[command(flatten)]
            worker: WorkerArgs,
            #[command(flatten)]
            platforms: crate::platforms::args::PlatformArgs,
        }
        let mut argv = vec!["stagecast"];
        argv.extend_from_slice(args);
        // Only flags: nothing read from this process's environment may decide the test.
        let cmd = <Both as clap::CommandFactory>::command().mut_args(|a| a.env(None));
        let m = cmd.try_get_matches_from(argv).unwrap();
        let both = <Both as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        (both.worker, both.platforms.limits())
    }

    /// The worker's settings and Meta's alone: the rules' arithmetic, tested on one platform.
    fn meta_settings(args: &[&str]) -> (WorkerArgs, Vec<RequestLimits>) {
        let (w, mut limits) = all_settings(args);
        limits.retain(|l| l.platform == crate::platforms::Platform::Facebook);
        (w, limits)
    }

    #[test]
    fn every_platforms_requests_are_held_to_the_same_rules() {
        let (w, m) = all_settings(&["--lease", "5s", "--retention-audit", "5days"]);
        let found: Vec<_> = check(&w, &m).into_iter().map(|c| c.rule).collect();
        for rule in [
            "lease_meta_timeout",
            "lease_tiktok_timeout",
            "lease_google_ads_timeout",
            "retention_event_age",
            "retention_tiktok_event_age",
        ] {
            assert!(found.contains(&rule), "{rule} in {found:?}");
        }
        let (w, m) = all_settings(&["--drain-timeout", "10s", "--meta-timeout", "5s"]);
        let c = check(&w, &m);
        // TikTok's 10s request, and Google Ads' token refresh plus upload (2 × 10s).
        assert_eq!(c.len(), 2, "{c:#?}");
        assert_eq!(c[0].rule, "drain_tiktok_timeout");
        assert!(c[0]
            .to_string()
            .contains("--tiktok-timeout (STAGECAST_TIKTOK_TIMEOUT)"));
        assert_eq!(c[1].rule, "drain_google_ads_timeout");
        assert!(c[1]
            .to_string()
            .contains("--google-ads-timeout (STAGECAST_GOOGLE_ADS_TIMEOUT)"));
    }

    #[test]
    fn a_claim_budget_too_small_for_its_batch_names_both_settings() {
        let (w, m) = meta_settings(&["--claim-max-bytes", "64KiB", "--batch-size", "1000"]);
        let c = check(&w, &m);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].rule, "claim_bytes_per_job");
        let text = c[0].to_string();
        assert!(
            text.contains("--claim-max-bytes (STAGECAST_CLAIM_MAX_BYTES)"),
            "{text}"
        );
        assert!(text.contains("65 bytes of payload per job"), "{text}");
        assert!(
            text.contains("at least 1000 KiB, or lower --batch-size to at most 64"),
            "{text}"
        );
        let (w, m) = meta_settings(&["--claim-max-bytes", "64KiB", "--batch-size", "64"]);
        assert!(check(&w, &m).is_empty());
    }

    fn rules(args: &[&str]) -> Vec<&'static str> {
        let (w, m) = meta_settings(args);
        check(&w, &m).into_iter().map(|c| c.rule).collect()
    }

    #[test]
    fn the_defaults_fit_together() {
        assert_eq!(rules(&[]), Vec::<&str>::new());
    }

    #[test]
    fn a_lease_too_short_for_the_request_timeout_is_refused_with_the_shortest_that_fits() {
        let (w, m) = meta_settings(&["--lease", "5s", "--meta-timeout", "10s"]);
        let c = check(&w, &m);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].rule, "lease_meta_timeout");
        let text = c[0].to_string();
        assert!(
            text.starts_with("--lease (STAGECAST_LEASE) and --meta-timeout"),
            "{text}"
        );
        // 23 s: a beat every 7.67 s, its 5 s timeout and the 10 s request fit; 22 s does not.
        assert!(text.contains("raise --lease to at least 23s"), "{text}");
        assert!(rules(&["--lease", "23s", "--meta-timeout", "10s"]).is_empty());
        assert_eq!(
            rules(&["--lease", "22s", "--meta-timeout", "10s"]),
            ["lease_meta_timeout"]
        );
    }

    #[test]
    fn a_short_lease_fits_with_a_fast_heartbeat_and_short_requests() {
        assert!(rules(&[
            "--lease",
            "2s",
            "--heartbeat-interval",
            "200ms",
            "--meta-timeout",
            "1500ms"
        ])
        .is_empty());
        assert_eq!(rules(&["--lease", "2s"]), ["lease_meta_timeout"]);
    }

    #[test]
    fn a_heartbeat_that_cannot_miss_a_beat_is_refused() {
        assert_eq!(
            rules(&["--lease", "60s", "--heartbeat-interval", "30s"]),
            ["heartbeat_interval"]
        );
        assert!(rules(&["--lease", "60s", "--heartbeat-interval", "25s"]).is_empty());
    }

    #[test]
    fn the_drain_must_outlast_a_request() {
        let found = rules(&["--drain-timeout", "10s", "--meta-timeout", "10s"]);
        assert_eq!(found, ["drain_meta_timeout"]);
        assert!(rules(&["--drain-timeout", "11s"]).is_empty());
    }

    #[test]
    fn the_ledger_outlives_replays_and_retries() {
        assert_eq!(
            rules(&["--retention-audit", "5days"]),
            ["retention_event_age", "retention_job_age"]
        );
        // Retries until 6 days plus an hour of backoff; events until 6d 23h 50m.
        assert_eq!(
            rules(&["--retention-audit", "6days 2h"]),
            ["retention_event_age"]
        );
        assert_eq!(
            rules(&["--retention-audit", "7days", "--max-job-age", "7days"]),
            ["retention_job_age"]
        );
        assert!(rules(&["--retention-audit", "7days"]).is_empty());
    }
}
