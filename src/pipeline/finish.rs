//! A job's results become rows: the outcome ([`super::outcome::decide`]), its audit rows, its
//! alerts, and a Sentry report when it failed.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tracing::debug;

use super::alert_rows::alert_row;
use super::outcome::{decide, Decision, JobFacts};
use super::stage_change::StageChangePayload;
use super::work::JobWork;
use super::Pipeline;
use crate::alerts::{Alert, AlertCause};
use crate::queue::BatchContext;
use crate::store::{ClaimedJob, OutcomeRow, WriteBack};

impl Pipeline {
    /// Fold a job's results into its outcome, audit rows and alerts.
    pub(super) fn finish(&self, ctx: &BatchContext, w: &mut JobWork) -> WriteBack {
        let span = w.span.clone();
        let _entered = span.enter();
        let now = Utc::now();
        w.finished = true;
        let mut out = WriteBack::default();
        // A job that failed before a platform answered (e.g. its context could not be loaded)
        // is reported against the only platform, when there is one.
        let platform = w
            .retry_platform
            .map(|p| p.code())
            .or_else(|| self.platforms.only().map(|p| p.platform().code()));
        let first_event = w.deliveries.first().map(|d| d.event_name.clone());
        let delivered_by: Vec<i64> = w.delivered_by.iter().copied().collect();
        let facts = JobFacts {
            lease_lost: w.lease_lost,
            retry_errors: &w.retry_errors,
            failures: &w.failures,
            throttled: w.throttled.map(|(until, p)| (until, p.code())),
            held: w.held.map(|(until, p)| (until, p.code())),
            not_started: w.not_started,
            delivered: w.delivered,
            already_delivered: w.already_delivered,
            delivered_by: &delivered_by,
            platform,
            stage_name: w.stage_name.as_deref(),
            event_name: first_event.as_deref(),
        };
        let job = &w.job;
        let retry = &self.config.retry;
        let decision = decide(
            &facts,
            || retry.decide(job.attempts, job.max_attempts, job.created_at, now),
            now,
        );
        let row = match decision {
            Decision::LeaseLost => {
                // Another worker may hold the job now: write no outcome and no alert (fencing
                // would discard them, or worse, they would land first), only the audit of what
                // this run did send, which is the ledger the rescuer reads.
                debug!(outcome = "lease_lost", "job given up");
                ctx.abandon(w.job.id);
                out.deliveries.append(&mut w.deliveries);
                return out;
            }
            Decision::Done { note } => outcome_row(&w.job, "done", None, note),
            Decision::Retry { at, error } => outcome_row(&w.job, "retry", Some(at), Some(error)),
            Decision::Throttled { until, error } => {
                outcome_row(&w.job, "throttled", Some(until), Some(error))
            }
            Decision::Held { until, error } => {
                outcome_row(&w.job, "held", Some(until), Some(error))
            }
            Decision::Released { at, error } => {
                outcome_row(&w.job, "released", Some(at), Some(error))
            }
            Decision::Failed { error, gave_up } => {
                if let Some(details) = gave_up {
                    w.alert(AlertCause::DeliveryGaveUp, *details);
                }
                outcome_row(&w.job, "failed", None, Some(error))
            }
        };
        if row.outcome == "failed" {
            self.report_failed(w, &row);
        }
        debug!(outcome = row.outcome, "job finished");
        let row = OutcomeRow {
            destinations: (!w.destinations.is_empty())
                .then(|| w.destinations.iter().cloned().collect()),
            ..row
        };
        out.outcomes.push(row);
        out.deliveries.append(&mut w.deliveries);
        let customer_id = w
            .change
            .as_ref()
            .map(|c| c.customer_id)
            .or_else(|| w.job.payload.get("customer_id").and_then(Value::as_i64));
        let change_key = w
            .change
            .as_ref()
            .map(StageChangePayload::change_key)
            .unwrap_or_else(|| format!("job:{}", w.job.id));
        for alert in std::mem::take(&mut w.alerts) {
            out.alerts.push(alert_row(
                &alert,
                &change_key,
                w.job.id,
                customer_id,
                self.config.locale,
            ));
        }
        out
    }

    /// One Sentry warning for a failed job, with its first alert's cause and its destination.
    fn report_failed(&self, w: &JobWork, row: &OutcomeRow) {
        let first: Option<&Alert> = w.alerts.first();
        let destination = w.destination().or_else(|| {
            first.and_then(|a| {
                let d = &a.details;
                d.platform
                    .as_deref()
                    .zip(d.pixel.as_deref())
                    .map(|(platform, pixel)| format!("{platform}:{pixel}"))
            })
        });
        let platform = first.and_then(|a| a.details.platform.clone()).or_else(|| {
            destination
                .as_deref()
                .and_then(|d| d.split_once(':'))
                .map(|(platform, _)| platform.to_string())
        });
        report_failure(
            &w.job,
            row,
            first.map(|a| a.cause.code()),
            platform.as_deref(),
            destination.as_deref(),
        );
    }
}

/// The outcome row of a job (complete_jobs.sql binds it column by column).
pub(super) fn outcome_row(
    job: &ClaimedJob,
    outcome: &'static str,
    run_at: Option<DateTime<Utc>>,
    error: Option<String>,
) -> OutcomeRow {
    OutcomeRow {
        id: job.id,
        attempt: job.attempts,
        outcome,
        run_at,
        error,
        destinations: None,
    }
}

/// A job ended `failed`: one warning to Sentry (a no-op when reporting is off).
pub(super) fn report_failure(
    job: &ClaimedJob,
    row: &OutcomeRow,
    cause: Option<&'static str>,
    platform: Option<&str>,
    destination: Option<&str>,
) {
    if row.outcome != "failed" {
        return;
    }
    crate::reporting::report_failed_job(&crate::reporting::FailedJob {
        job_id: job.id,
        kind: super::kinds::label(&job.kind),
        attempt: job.attempts,
        cause,
        platform,
        destination,
        error: row.error.as_deref(),
    });
}
