//! Every Prometheus series the worker exports, in one place: name, type, labels and meaning.
//!
//! The emitting code stays where the event happens (`metrics::counter!` next to the fact it
//! counts); this module only *describes* the series and pre-registers the ones whose label
//! values are known in advance. Without that, a counter appears in a scrape only after it first
//! moves, so on a fresh worker dashboards show "No data" and alert rules such as
//! `increase(stagecast_alerts_total[5m]) > 0` have nothing to compare against.
//!
//! The catalog is also the source of the metrics reference in docs/operations.md and of the
//! checks in tests/grafana.rs (every exported series is catalogued, every catalogued series is
//! exported, every dashboard query names an exported series).

use crate::alerts::AlertCause;
use crate::store::WriteBackReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricType,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

pub const BUILD_INFO: &str = "stagecast_build_info";
pub const EVENTS: &str = "stagecast_events_total";
pub const REQUEST_DURATION: &str = "stagecast_request_duration_seconds";
pub const BATCH_SIZE: &str = "stagecast_batch_size";
pub const MATCH_QUALITY: &str = "stagecast_match_quality";
pub const RATE_LIMIT_WAIT: &str = "stagecast_rate_limit_wait_seconds";
pub const RATE_LIMIT_WAITS: &str = "stagecast_rate_limit_waits_total";
pub const JOBS_CLAIMED: &str = "stagecast_jobs_claimed_total";
pub const JOBS_COMPLETED: &str = "stagecast_jobs_completed_total";
pub const LEASE_EXPIRIES: &str = "stagecast_lease_expiries_total";
pub const FENCED_COMPLETIONS: &str = "stagecast_fenced_completions_total";
pub const DUPLICATE_DELIVERIES: &str = "stagecast_duplicate_deliveries_total";
pub const WRITE_BACK_ERRORS: &str = "stagecast_write_back_errors_total";
pub const WRITE_BACK_ISOLATED: &str = "stagecast_write_back_isolated_total";
pub const CHAT_ALERT_ERRORS: &str = "stagecast_chat_alert_errors_total";
pub const HEARTBEAT_FAILURES: &str = "stagecast_heartbeat_failures_total";
pub const LEASE_LOST_JOBS: &str = "stagecast_lease_lost_jobs_total";
pub const LIVENESS_LOCK_HELD: &str = "stagecast_liveness_lock_held";
pub const LIVENESS_LOCK_LOSSES: &str = "stagecast_liveness_lock_losses_total";
pub const DEAD_WORKER_JOBS_RELEASED: &str = "stagecast_dead_worker_jobs_released_total";
pub const ALERTS: &str = "stagecast_alerts_total";
pub const QUEUE_JOBS: &str = "stagecast_queue_jobs";
pub const QUEUE_OLDEST_AGE: &str = "stagecast_queue_oldest_job_age_seconds";
pub const ENQUEUE_FALLBACKS: &str = "stagecast_enqueue_fallbacks";
pub const PII_REJECTED: &str = "stagecast_pii_rejected_total";
pub const DB_QUERY_DURATION: &str = "stagecast_db_query_duration_seconds";
pub const DEAD_ROWS: &str = "stagecast_dead_rows";
pub const VACUUMS: &str = "stagecast_vacuums_total";
pub const MAINTENANCE_SKIPPED: &str = "stagecast_maintenance_skipped_total";
pub const PARTIAL_SUCCESSES: &str = "stagecast_partial_successes_total";

/// Job outcomes written back (`OutcomeRow::outcome`).
pub const JOB_OUTCOMES: [&str; 6] = ["done", "retry", "throttled", "held", "released", "failed"];
/// Job statuses in the hot table (`queue::worker::status_label`).
pub const STATUSES: [&str; 4] = ["pending", "running", "failed", "cancelled"];
/// Identifier fields whose invalid values are dropped (`pipeline::identity`).
pub const PII_FIELDS: [&str; 13] = [
    "em",
    "ph",
    "fn",
    "ln",
    "external_id",
    "ct",
    "st",
    "zp",
    "country",
    "db",
    "ge",
    "fbp",
    "lead_id",
];
/// Why a request slot was not granted at once (`platforms::rate_limit`).
pub const RATE_LIMIT_REASONS: [&str; 3] = ["limiter", "paused", "local_share"];
/// What became of a job written on its own after its write-back batch failed.
pub const ISOLATION_RESULTS: [&str; 4] = ["applied", "degraded", "deferred", "unwritable"];
/// What became of CRM changes the triggers could not queue (`queue::worker`).
pub const ENQUEUE_FALLBACK_STATES: [&str; 2] = ["parked", "lost"];
/// stagecast's churning tables, which the worker vacuums (sql/vacuum_status.sql).
pub const VACUUM_TABLES: [&str; 5] = [
    "jobs",
    "job_archive",
    "deliveries",
    "alerts",
    "enqueue_failures",
];

/// The worker's maintenance steps, each bounded and skipped when a table it needs is locked.
pub const MAINTENANCE_STEPS: [&str; 5] = [
    "queue_stats",
    "retention",
    "requeue_parked",
    "enqueue_fallbacks",
    "handler",
];

/// The `table` label: one of [`VACUUM_TABLES`], anything else `other`.
pub fn vacuum_table_label(table: &str) -> &'static str {
    VACUUM_TABLES
        .iter()
        .find(|t| **t == table)
        .copied()
        .unwrap_or("other")
}

pub const CATALOG: &[MetricDef] = &[
    MetricDef {
        name: BUILD_INFO,
        kind: MetricType::Gauge,
        labels: &["version"],
        help: "Always 1; `version` is the stagecast release this process runs. `count by (version)` shows a rolling upgrade.",
    },
    MetricDef {
        name: EVENTS,
        kind: MetricType::Counter,
        labels: &["platform", "destination", "outcome"],
        help: "Events handed to a platform, by result: `delivered`; `retry` (transient error, sent again later with the same event_id); `throttled` (the platform throttled the pixel: rescheduled without spending an attempt); `held` (the platform refused the pixel's configuration, e.g. an invalid token: held without spending an attempt until it changes); `failed` (permanent: the job fails with a chat alert); `not_started` (worker shutting down, released); `lease_lost` (not sent: the worker could not confirm its lease, another worker takes the job over). `destination` is `<platform>:<pixel id>` (`facebook:<dataset id>`, `tiktok:<event set id>`). Events stopped before sending (configuration problems) are not counted here but in `stagecast_alerts_total`.",
    },
    MetricDef {
        name: REQUEST_DURATION,
        kind: MetricType::Histogram,
        labels: &["platform", "outcome"],
        help: "Duration of one platform request (Meta Conversions API, TikTok Events API; up to 1,000 events), by classification: `delivered`, `retry`, `throttled`, `rejected` (an event-level error: the batch is split to isolate bad events), `held` (a request-level error such as an invalid token or a bad API version: the pixel is held, nothing is split). The `_count` is the request rate.",
    },
    MetricDef {
        name: BATCH_SIZE,
        kind: MetricType::Histogram,
        labels: &["platform"],
        help: "Events per request. Small batches under load mean few jobs per claim (see --batch-size) or many pixels.",
    },
    MetricDef {
        name: MATCH_QUALITY,
        kind: MetricType::Histogram,
        labels: &["platform"],
        help: "Match-key coverage score (0-10, stagecast's own estimate, not Meta's EMQ) of each delivered event; see docs/match-quality.md.",
    },
    MetricDef {
        name: RATE_LIMIT_WAIT,
        kind: MetricType::Histogram,
        labels: &["platform"],
        help: "How long requests held back by the per-pixel rate limiter waited (requests that found a free slot are not recorded).",
    },
    MetricDef {
        name: RATE_LIMIT_WAITS,
        kind: MetricType::Counter,
        labels: &["platform", "reason"],
        help: "Requests not sent at once: `limiter` (held by the per-destination rate limit, --meta-rate-limit, --tiktok-rate-limit, --google-ads-rate-limit, shared by every worker on the database), `paused` (the destination is paused after the platform throttled it or its usage headers ran high, as seen by any worker; the events are rescheduled without spending an attempt); `local_share` (granted by this worker's local limiter at its share of the limit because the database did not answer the shared limit's statement; docs/operations.md, section Rate limits, throttles and holds).",
    },
    MetricDef {
        name: PARTIAL_SUCCESSES,
        kind: MetricType::Counter,
        labels: &["platform"],
        help: "Requests the platform answered as a partial success, whose events stagecast counts as delivered: TikTok's code 20001, which TikTok does not document (docs/tiktok.md). Anything above zero is worth a look in the platform's events manager.",
    },
    MetricDef {
        name: JOBS_CLAIMED,
        kind: MetricType::Counter,
        labels: &["kind"],
        help: "Jobs leased by this worker: claimed (including jobs rescued from an expired lease), or leased to it at birth by its expansion of a bulk change.",
    },
    MetricDef {
        name: JOBS_COMPLETED,
        kind: MetricType::Counter,
        labels: &["kind", "outcome"],
        help: "Job outcomes written back by this worker: `done`, `retry` (scheduled with backoff), `throttled`, `held` and `released` (rescheduled, attempt refunded), `failed` (dead: kept for inspection and replay). Outcomes fenced out are not counted. Bulk jobs (`stage_change_batch`) are finalised when expanded and so appear here only when they fail or retry.",
    },
    MetricDef {
        name: LEASE_EXPIRIES,
        kind: MetricType::Counter,
        labels: &["kind"],
        help: "Jobs this worker claimed whose previous lease had expired: another worker died or stalled holding them.",
    },
    MetricDef {
        name: FENCED_COMPLETIONS,
        kind: MetricType::Counter,
        labels: &[],
        help: "Outcomes this worker discarded because another worker had taken the job over after its lease expired.",
    },
    MetricDef {
        name: DUPLICATE_DELIVERIES,
        kind: MetricType::Counter,
        labels: &[],
        help: "Events delivered again that the delivery ledger had already recorded as delivered: a worker whose lease expired finished its request after the worker that took the job over delivered the same event. Re-sends after a crash are not counted (the crashed worker recorded nothing). Meta does not promise to drop a re-sent event (for business messaging it says it does not deduplicate at all), so a re-send may be counted twice.",
    },
    MetricDef {
        name: WRITE_BACK_ERRORS,
        kind: MetricType::Counter,
        labels: &[],
        help: "Write-back attempts that met a database error. The batch is then written in isolation, the delivery ledger first (see `stagecast_write_back_isolated_total`); what failed for a passing reason (lock or statement timeout, lost connection) waits in memory and is retried with backoff.",
    },
    MetricDef {
        name: WRITE_BACK_ISOLATED,
        kind: MetricType::Counter,
        labels: &["result"],
        help: "Jobs of a write-back batch that failed, written again in isolation (halves under savepoints, split until the refused job is alone), by result: `applied` (written in full), `degraded` (the database refused part of its audit detail: written without error texts, request and response bodies and alert details, see the job's last_error), `deferred` (a passing error: retried with backoff), `unwritable` (its outcome cannot be written at all: logged with its job id, its delivered events kept in the ledger, its lease left to expire so another attempt takes it). Any `degraded` or `unwritable` is worth a look (runbook: Write-back isolation).",
    },
    MetricDef {
        name: CHAT_ALERT_ERRORS,
        kind: MetricType::Counter,
        labels: &[],
        help: "Alerts that could not be posted to the customer's chat because the CRM refused the chat message (e.g. its chat_messages has a NOT NULL column stagecast.write_chat_alert does not fill). The alert is kept in stagecast.alerts with the reason in chat_error; the job's outcome is written as usual (runbook: Alert that could not reach the chat).",
    },
    MetricDef {
        name: HEARTBEAT_FAILURES,
        kind: MetricType::Counter,
        labels: &[],
        help: "Lease heartbeats that failed or did not answer within their timeout (a slow or unreachable database, a table lock; a job row held by another transaction is skipped, not waited for). A lease survives one; if they go on, requests stop before a lease can lapse (see `stagecast_lease_lost_jobs_total`).",
    },
    MetricDef {
        name: LEASE_LOST_JOBS,
        kind: MetricType::Counter,
        labels: &[],
        help: "Jobs this worker gave up because it could not confirm its lease in time (the heartbeat kept failing, or kept skipping the job's row because another transaction held it): no further request is started for them and nothing but the ledger of what they delivered is written; another worker rescues them after the lease (runbook: Lease lost).",
    },
    MetricDef {
        name: LIVENESS_LOCK_HELD,
        kind: MetricType::Gauge,
        labels: &[],
        help: "1 while this worker holds its liveness lock (a session-level advisory lock on a connection of its own), 0 while it takes it (again): without it the worker claims nothing (runbook: Liveness lock lost).",
    },
    MetricDef {
        name: LIVENESS_LOCK_LOSSES,
        kind: MetricType::Counter,
        labels: &[],
        help: "Times this worker lost its liveness lock or could not confirm it in time (its lock connection dropped, the server restarted, a proxy in between): every lease it held counts as lost at once, no further request is started for those jobs, what it did not send is given back, and it takes the lock again on a new session (runbook: Liveness lock lost).",
    },
    MetricDef {
        name: DEAD_WORKER_JOBS_RELEASED,
        kind: MetricType::Counter,
        labels: &[],
        help: "Jobs of dead workers (their liveness lock gone for the rescue grace) whose lease this worker cut short, so that a claim takes them up seconds after the crash instead of after the lease; the claim then counts them in `stagecast_lease_expiries_total` (docs/operations.md, Dead-worker rescue; runbook: Lease expiries).",
    },
    MetricDef {
        name: ALERTS,
        kind: MetricType::Counter,
        labels: &["cause"],
        help: "Chat alerts written (new ones only: an alert is written once per cause per stage change), by cause code (see the runbook).",
    },
    MetricDef {
        name: QUEUE_JOBS,
        kind: MetricType::Gauge,
        labels: &["kind", "status"],
        help: "Jobs in the hot table by kind and status (`pending`, `running`, `failed`, `cancelled`), refreshed on the maintenance timer from one bounded query (capped at 200k rows). Every worker reports the same database-wide number: aggregate with `max`, not `sum`.",
    },
    MetricDef {
        name: QUEUE_OLDEST_AGE,
        kind: MetricType::Gauge,
        labels: &["kind"],
        help: "Age of the oldest pending job that is due (run_at in the past): the queue lag. 0 when nothing is waiting. Database-wide like `stagecast_queue_jobs`: aggregate with `max`.",
    },
    MetricDef {
        name: ENQUEUE_FALLBACKS,
        kind: MetricType::Gauge,
        labels: &["state"],
        help: "CRM statements whose stage changes or messages the triggers could not put in the queue within their lock wait (the queue was locked or failing): `parked` = waiting in stagecast.enqueue_failures, re-queued by the maintenance timer once the queue accepts them; `lost` = could be neither queued nor parked since the count was last reset (each one is a WARNING \"stagecast: … NOT queued\" in the Postgres log). Refreshed on the maintenance timer; database-wide like `stagecast_queue_jobs`: aggregate with `max`.",
    },
    MetricDef {
        name: PII_REJECTED,
        kind: MetricType::Counter,
        labels: &["field"],
        help: "Customer identifiers dropped because they were invalid after normalisation (the value itself is never logged), by Meta field name (`em`, `ph`, `fn`, `ln`, `external_id`, `ct`, `st`, `zp`, `country`, `db`, `ge`, `fbp`, `lead_id`).",
    },
    MetricDef {
        name: DB_QUERY_DURATION,
        kind: MetricType::Histogram,
        labels: &["query"],
        help: "Duration of the worker's hot statements, by statement (`query` is the sql/ file name).",
    },
    MetricDef {
        name: DEAD_ROWS,
        kind: MetricType::Gauge,
        labels: &["table"],
        help: "Dead rows in stagecast's churning tables (`jobs`, `job_archive`, `deliveries`, `alerts`, `enqueue_failures`), from pg_stat_user_tables on the maintenance timer. The worker VACUUMs a table past autovacuum's threshold for it (5,000 for jobs), so this falls back after a burst; staying high means the worker's role may not vacuum it (see the runbook). Database-wide: aggregate with `max`.",
    },
    MetricDef {
        name: VACUUMS,
        kind: MetricType::Counter,
        labels: &["table"],
        help: "VACUUM (ANALYZE) runs this worker made on a stagecast table past its dead-row threshold.",
    },
    MetricDef {
        name: MAINTENANCE_SKIPPED,
        kind: MetricType::Counter,
        labels: &["step"],
        help: "Maintenance steps skipped because a table they need was locked past their 1 s lock bound, or ran past their 30 s bound: `queue_stats`, `retention`, `requeue_parked`, `enqueue_fallbacks`, `handler` (token sealing). Tried again on the next tick; rising steadily means a long transaction holds a stagecast table (`stagecast doctor`, Table locks).",
    },
];

/// Describe every metric and create the series whose label values are known, at zero. Called
/// once, right after the Prometheus recorder is installed (see `ops::prometheus`).
pub fn register() {
    for m in CATALOG {
        match m.kind {
            MetricType::Counter => metrics::describe_counter!(m.name, m.help),
            MetricType::Gauge => metrics::describe_gauge!(m.name, m.help),
            MetricType::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);

    // `increment(0)` creates the series without moving it.
    for state in ENQUEUE_FALLBACK_STATES {
        metrics::gauge!(ENQUEUE_FALLBACKS, "state" => state).set(0.0);
    }
    for cause in AlertCause::ALL {
        metrics::counter!(ALERTS, "cause" => cause.code()).increment(0);
    }
    for field in PII_FIELDS {
        metrics::counter!(PII_REJECTED, "field" => field).increment(0);
    }
    for table in VACUUM_TABLES {
        metrics::gauge!(DEAD_ROWS, "table" => table).set(0.0);
        metrics::counter!(VACUUMS, "table" => table).increment(0);
    }
    for step in MAINTENANCE_STEPS {
        metrics::counter!(MAINTENANCE_SKIPPED, "step" => step).increment(0);
    }
    metrics::counter!(FENCED_COMPLETIONS).increment(0);
    metrics::counter!(DUPLICATE_DELIVERIES).increment(0);
    metrics::counter!(WRITE_BACK_ERRORS).increment(0);
    for result in ISOLATION_RESULTS {
        metrics::counter!(WRITE_BACK_ISOLATED, "result" => result).increment(0);
    }
    metrics::counter!(CHAT_ALERT_ERRORS).increment(0);
    metrics::counter!(HEARTBEAT_FAILURES).increment(0);
    metrics::counter!(LEASE_LOST_JOBS).increment(0);
    metrics::gauge!(LIVENESS_LOCK_HELD).set(0.0);
    metrics::counter!(LIVENESS_LOCK_LOSSES).increment(0);
    metrics::counter!(DEAD_WORKER_JOBS_RELEASED).increment(0);
}

/// Create the series of one job kind (its `kind` label) at zero. The worker calls it for every
/// kind its handler knows (`JobHandler::kinds`): the queue itself knows none.
pub fn register_kind(kind: &'static str) {
    metrics::counter!(JOBS_CLAIMED, "kind" => kind).increment(0);
    metrics::counter!(LEASE_EXPIRIES, "kind" => kind).increment(0);
    for outcome in JOB_OUTCOMES {
        metrics::counter!(JOBS_COMPLETED, "kind" => kind, "outcome" => outcome).increment(0);
    }
    // The maintenance timer overwrites these with the real numbers on its first tick, right
    // after start.
    for status in STATUSES {
        metrics::gauge!(QUEUE_JOBS, "kind" => kind, "status" => status).set(0.0);
    }
    metrics::gauge!(QUEUE_OLDEST_AGE, "kind" => kind).set(0.0);
}

/// Create the series of one registered platform (its `platform` label) at zero. The registry
/// calls it for every platform it holds (`Registry::register_metrics`).
pub fn register_platform(platform: &'static str) {
    for reason in RATE_LIMIT_REASONS {
        metrics::counter!(RATE_LIMIT_WAITS, "platform" => platform, "reason" => reason)
            .increment(0);
    }
    // A histogram handle with no samples renders as empty buckets, which is enough for
    // `histogram_quantile` queries to find the series.
    metrics::counter!(PARTIAL_SUCCESSES, "platform" => platform).increment(0);
    let _ = metrics::histogram!(BATCH_SIZE, "platform" => platform);
    let _ = metrics::histogram!(MATCH_QUALITY, "platform" => platform);
    let _ = metrics::histogram!(RATE_LIMIT_WAIT, "platform" => platform);
    let _ = metrics::histogram!(REQUEST_DURATION, "platform" => platform, "outcome" => "delivered");
}

/// Count the job outcomes one write-back applied (the completer calls this per flush), by the
/// handler's `kinds`.
pub fn record_write_back(report: &WriteBackReport, kinds: &[&'static str]) {
    for (kind, outcome, jobs) in &report.completed {
        metrics::counter!(JOBS_COMPLETED,
            "kind" => bounded(kinds, kind),
            "outcome" => bounded(&JOB_OUTCOMES, outcome))
        .increment(*jobs);
    }
}

/// Bounded label values: a value outside `known` (a garbage row) collapses into "other".
pub fn bounded(known: &[&'static str], value: &str) -> &'static str {
    known
        .iter()
        .find(|k| **k == value)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for m in CATALOG {
            assert!(seen.insert(m.name), "{} is catalogued twice", m.name);
            assert!(m.name.starts_with("stagecast_"), "{}", m.name);
            // Counters end in _total; nothing else does.
            assert_eq!(
                m.kind == MetricType::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            // Units are base units in the name (seconds, not ms).
            assert!(!m.name.contains("_ms") && !m.name.contains("millis"));
            // Labels that could carry PII or be unbounded have no place here.
            for l in m.labels {
                assert!(
                    ![
                        "email",
                        "phone",
                        "customer",
                        "customer_id",
                        "job_id",
                        "event_id",
                        "error"
                    ]
                    .contains(l),
                    "{} has the unbounded or personal label {l}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn label_values_are_bounded() {
        assert_eq!(bounded(&JOB_OUTCOMES, "done"), "done");
        assert_eq!(bounded(&JOB_OUTCOMES, "anything"), "other");
        assert_eq!(bounded(&["attribution"], "attribution"), "attribution");
        assert_eq!(bounded(&[], "attribution"), "other");
    }
}
