//! Handler dispatch: a claimed batch split by job kind (`kinds`). Stage changes are processed
//! together (their events are batched per destination); a bulk change, queued in chunks, is
//! expanded into stage changes in SQL, a chunk per statement, alongside, and the new jobs the
//! worker has capacity for are leased to it in that statement and processed here without a
//! claim; an attribution job runs on its own; an unknown kind fails visibly.

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn, Instrument};

use super::finish::{outcome_row, report_failure};
use super::{job_span, kinds, Pipeline};
use crate::queue::{BatchContext, HandlerOutput, RetryDecision};
use crate::store::{ClaimedJob, OutcomeRow};

/// Bulk-change chunks one process expands at once. Each expansion is one INSERT of up to a
/// chunk's jobs (5,000 by default, ≈ 0.1 s); a 1,000,000-customer UPDATE is 200 chunks, claimed
/// within a few claims. Expanded all at once they would take every pooled connection (the
/// heartbeat's too: leases then lapse) and share the cores, so the first chunk's jobs would
/// commit only with the last. One at a time: the first jobs are claimable after one chunk's
/// time, and one expansion (≈ 50,000 jobs/s) outpaces delivery. More workers expand more at
/// once. The turn is the statement's only: the jobs it leased are worked on after it.
pub(super) const EXPANSIONS_AT_ONCE: usize = 1;

/// At most this many of a chunk's jobs are leased to the expanding worker at birth (a chunk is
/// 5,000 by default; the worker's free capacity bounds it further).
const LEASED_AT_EXPANSION_MAX: usize = 5_000;

/// Leased jobs are processed this many at a time, like a claimed batch of the default size:
/// one context query and one ledger read each.
const LEASED_BATCH: usize = 1_000;

/// The shortest time between two ANALYZEs of the queue after expansions (one ANALYZE reads a
/// 30,000-row sample; per chunk it would cost more than the chunk).
const ANALYZE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Pipeline {
    pub(super) async fn handle_batch(
        &self,
        ctx: &BatchContext,
        jobs: Vec<ClaimedJob>,
    ) -> HandlerOutput {
        let mut out = HandlerOutput::default();
        let mut stage_changes = Vec::new();
        let mut batches = Vec::new();
        for job in jobs {
            match job.kind.as_str() {
                kinds::STAGE_CHANGE => stage_changes.push(job),
                kinds::STAGE_CHANGE_BATCH => batches.push(job),
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
        // Chunks claimed together are expanded EXPANSIONS_AT_ONCE at a time (the semaphore is
        // fair: in claim order), without holding up the stage changes claimed with them.
        let expand = async {
            let parts = futures_util::future::join_all(batches.into_iter().map(|job| async {
                let span = job_span(&job);
                let mut part = HandlerOutput::default();
                self.expand_batch(ctx, job, &mut part)
                    .instrument(span)
                    .await;
                part
            }))
            .await;
            let mut expanded = HandlerOutput::default();
            for part in parts {
                expanded.append(part);
            }
            expanded
        };
        let process = async {
            let mut processed = HandlerOutput::default();
            if !stage_changes.is_empty() {
                self.process_stage_changes(ctx, stage_changes, &mut processed)
                    .await;
            }
            processed
        };
        let (expanded, processed) = tokio::join!(expand, process);
        for part in [expanded, processed] {
            out.append(part);
        }
        out
    }

    async fn expand_batch(&self, ctx: &BatchContext, job: ClaimedJob, out: &mut HandlerOutput) {
        // The payload is not needed (the expansion reads it in SQL) and, for a chunk, was
        // withheld by the claim anyway.
        let job = ClaimedJob {
            payload: serde_json::Value::Null,
            ..job
        };
        let turn = tokio::select! {
            permit = self.expansions.acquire() => permit.ok(),
            _ = ctx.shutdown.cancelled() => {
                // Given back whole: the next worker expands it (attempt refunded).
                let row = outcome_row(&job, "released", None, Some("released on shutdown before its expansion".into()));
                debug!(outcome = row.outcome, "job finished");
                out.write_back.outcomes.push(row);
                return;
            }
        };
        // Lease the new jobs to ourselves as far as the worker has capacity (free, or set free
        // within its patience, 2 s by default): they are worked on here without a claim; the
        // rest wait, pending, for any worker's claim. Without the wait, the chunks claimed with
        // the first found its jobs holding every slot and queued all theirs pending, and each
        // of those jobs then cost a claim (an UPDATE, new index entries) that leasing at birth
        // saves. A batch of 1,000 is done in well under a second, so the wait is short while
        // the worker is busy with its own jobs, and bounded when it is not.
        let borrowed = ctx
            .borrow_capacity_waiting(LEASED_BATCH, LEASED_AT_EXPANSION_MAX, ctx.capacity_patience)
            .await;
        ctx.skip_heartbeat(job.id);
        let expanded = self
            .store
            .expand_stage_change_batch(
                job.id,
                &ctx.worker_id,
                job.attempts,
                borrowed,
                ctx.lease_duration.as_secs_f64(),
            )
            .await;
        ctx.resume_heartbeat(job.id);
        drop(turn);
        let leased = match &expanded {
            Ok(Some(e)) => e.leased.len(),
            _ => 0,
        };
        ctx.release_capacity(borrowed.saturating_sub(leased));
        match expanded {
            Ok(Some(expansion)) => {
                info!(
                    job_id = job.id,
                    created = expansion.created,
                    leased,
                    "expanded a bulk stage change into jobs"
                );
                debug!(outcome = "expanded", "job finished");
                out.finalized.push(job.id);
                // The chunk's own slot: it is archived, nothing more to do for it.
                ctx.release_capacity(1);
                // The statistics are refreshed alongside the leased jobs' work, not before it:
                // awaited first, the ANALYZE delayed the bulk change's first event.
                let analyze = async {
                    if expansion.created >= 1000 {
                        self.analyze_after_expansion().await;
                    }
                };
                let work = async {
                    if !expansion.leased.is_empty() {
                        ctx.adopt(&expansion.leased);
                        metrics::counter!(crate::metrics_catalog::JOBS_CLAIMED, "kind" => kinds::STAGE_CHANGE)
                            .increment(leased as u64);
                        self.process_leased(ctx, expansion.leased, out).await;
                    }
                };
                tokio::join!(analyze, work);
            }
            Ok(None) => {
                warn!(
                    job_id = job.id,
                    "batch job was taken over by another worker; skipping"
                );
                out.finalized.push(job.id);
                ctx.release_capacity(1);
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

    /// The jobs an expansion leased to this worker, processed like claimed batches of
    /// [`LEASED_BATCH`] at once (their events still batch per destination across them).
    async fn process_leased(
        &self,
        ctx: &BatchContext,
        leased: Vec<ClaimedJob>,
        out: &mut HandlerOutput,
    ) {
        let mut rest = leased;
        let mut batches = Vec::new();
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(LEASED_BATCH));
            batches.push(std::mem::replace(&mut rest, tail));
        }
        let parts = futures_util::future::join_all(batches.into_iter().map(|jobs| async move {
            let mut part = HandlerOutput::default();
            self.process_stage_changes(ctx, jobs, &mut part).await;
            part
        }))
        .await;
        for part in parts {
            out.append(part);
        }
    }

    /// A bulk insert: refresh the queue's statistics now rather than waiting for autoanalyze,
    /// at most once per [`ANALYZE_EVERY`] in this process. A failure only costs stale
    /// statistics (every queue statement is plan-proofed against them).
    async fn analyze_after_expansion(&self) {
        {
            let mut at = self.analyzed_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|t| t.elapsed() < ANALYZE_EVERY) {
                return;
            }
            *at = Some(std::time::Instant::now());
        }
        if let Err(e) = self.store.analyze_jobs().await {
            warn!(error = %e, "could not refresh the queue's statistics after an expansion");
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
