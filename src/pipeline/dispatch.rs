//! Handler dispatch: a claimed batch split by job kind (`kinds`). Stage changes are processed
//! together (their events are batched per destination); a bulk change is expanded into
//! stage changes in SQL; an attribution job runs on its own; an unknown kind fails visibly.

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn, Instrument};

use super::finish::{outcome_row, report_failure};
use super::{job_span, kinds, Pipeline};
use crate::queue::{BatchContext, HandlerOutput, RetryDecision};
use crate::store::{ClaimedJob, OutcomeRow};

impl Pipeline {
    pub(super) async fn handle_batch(
        &self,
        ctx: &BatchContext,
        jobs: Vec<ClaimedJob>,
    ) -> HandlerOutput {
        let mut out = HandlerOutput::default();
        let mut stage_changes = Vec::new();
        for job in jobs {
            match job.kind.as_str() {
                kinds::STAGE_CHANGE => stage_changes.push(job),
                kinds::STAGE_CHANGE_BATCH => {
                    let span = job_span(&job);
                    self.expand_batch(ctx, job, &mut out).instrument(span).await
                }
                kinds::ATTRIBUTION => {
                    let span = job_span(&job);
                    let write_back = self.attribute(job).instrument(span).await;
                    out.write_back.append(write_back);
                }
                other => job_span(&job).in_scope(|| {
                    // job_id too: at `info` the (debug) span is not logged.
                    warn!(job_id = job.id, kind = other, "unknown job kind");
                    let row = outcome_row(
                        &job,
                        "failed",
                        None,
                        Some(format!("unknown job kind {other:?}: nothing handles it")),
                    );
                    report_failure(&job, &row, None, None, None);
                    debug!(outcome = row.outcome, "job finished");
                    out.write_back.outcomes.push(row);
                }),
            }
        }
        if !stage_changes.is_empty() {
            self.process_stage_changes(ctx, stage_changes, &mut out)
                .await;
        }
        out
    }

    async fn expand_batch(&self, ctx: &BatchContext, job: ClaimedJob, out: &mut HandlerOutput) {
        match self
            .store
            .expand_stage_change_batch(job.id, &ctx.worker_id, job.attempts)
            .await
        {
            Ok(Some(created)) => {
                info!(
                    job_id = job.id,
                    created, "expanded a bulk stage change into jobs"
                );
                debug!(outcome = "expanded", "job finished");
                out.finalized.push(job.id);
            }
            Ok(None) => {
                warn!(
                    job_id = job.id,
                    "batch job was taken over by another worker; skipping"
                );
                out.finalized.push(job.id);
            }
            Err(e) => {
                let error = format!("could not expand the bulk stage change: {e}");
                let (row, _) = self.retry_or_fail(&job, error, Utc::now());
                report_failure(&job, &row, None, None, None);
                debug!(outcome = row.outcome, "job finished");
                out.write_back.outcomes.push(row);
            }
        }
    }

    /// Retry if the budgets allow, else fail. The bool says whether it gave up.
    pub(super) fn retry_or_fail(
        &self,
        job: &ClaimedJob,
        error: String,
        now: DateTime<Utc>,
    ) -> (OutcomeRow, bool) {
        match self
            .config
            .retry
            .decide(job.attempts, job.max_attempts, job.created_at, now)
        {
            RetryDecision::RetryAt(at) => (outcome_row(job, "retry", Some(at), Some(error)), false),
            RetryDecision::GiveUp(reason) => (
                outcome_row(job, "failed", None, Some(format!("{reason}: {error}"))),
                true,
            ),
        }
    }
}
