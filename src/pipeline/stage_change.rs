//! `stage_change` jobs: parse each payload, load every context, the pixels and the ledger in
//! one round, plan the events ([`super::plan`]), deliver them ([`super::deliver`]) and finish
//! the jobs that nothing is in flight for.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tracing::warn;

use super::work::JobWork;
use super::Pipeline;
use crate::queue::{BatchContext, HandlerOutput};
use crate::store::{ClaimedJob, ContextKey};

/// The payload the enqueue functions write for a `stage_change` job.
#[derive(Debug, Clone, Deserialize)]
pub struct StageChangePayload {
    pub customer_id: i64,
    pub to_stage_id: i64,
    #[serde(default)]
    pub from_stage_id: Option<i64>,
    pub changed_at: DateTime<Utc>,
}

impl StageChangePayload {
    /// Identifies the stage change itself (stable across retries, replays and batch
    /// expansion): alerts are deduplicated on it.
    pub fn change_key(&self) -> String {
        format!(
            "stage_change:{}:{}:{}",
            self.customer_id,
            self.to_stage_id,
            self.changed_at.timestamp_micros()
        )
    }
}

impl Pipeline {
    pub(super) async fn process_stage_changes(
        &self,
        ctx: &BatchContext,
        jobs: Vec<ClaimedJob>,
        out: &mut HandlerOutput,
    ) {
        let now = Utc::now();
        let mut works: Vec<JobWork> = jobs.into_iter().map(JobWork::new).collect();

        for w in works.iter_mut() {
            match serde_json::from_value::<StageChangePayload>(w.job.payload.clone()) {
                Ok(p) => w.change = Some(p),
                Err(e) => w
                    .failures
                    .push(format!("invalid stage_change payload: {e}")),
            }
            if w.job.attempts > w.job.max_attempts {
                // Claimed once more than its budget allows: the earlier attempts ended in lost
                // leases (a worker died or stalled), or the job was re-queued without resetting
                // its attempts. The job is failed visibly; no event is sent.
                w.failures.push(format!(
                    "no attempts left ({} of {}): earlier attempts were lost with their worker, or the job was \
                     re-queued by hand without a new budget (`stagecast jobs replay` gives it one)",
                    w.job.attempts, w.job.max_attempts
                ));
                w.change.take();
            }
        }

        let keys: Vec<ContextKey> = works
            .iter()
            .filter_map(|w| {
                w.change.as_ref().map(|c| ContextKey {
                    job_id: w.job.id,
                    customer_id: c.customer_id,
                    stage_id: c.to_stage_id,
                })
            })
            .collect();
        if !keys.is_empty() {
            // The ledger is read for every claimed job, whatever its attempt: a throttle or a
            // shutdown release gives the attempt back, and a rescue follows a run that may
            // have delivered part of the job (issue 12, finding 6). An index probe per job on
            // deliveries_job_idx, run alongside the context load.
            let job_ids: Vec<i64> = keys.iter().map(|k| k.job_id).collect();
            let loaded = tokio::try_join!(
                self.store.load_stage_change_contexts(&keys),
                self.store.load_pixels(),
                self.store.delivered_event_ids(&job_ids),
            );
            match loaded {
                Ok((contexts, pixels, ledger)) => {
                    let ledger: HashSet<String> = ledger.into_iter().map(|(_, id)| id).collect();
                    let pending = self.plan(&mut works, contexts, &pixels, &ledger, now);
                    for p in &pending {
                        works[p.work].outstanding += 1;
                    }
                    self.deliver(ctx, &mut works, pending, &pixels).await;
                }
                Err(e) => {
                    warn!(error = %e, "could not load stage change contexts; retrying the batch");
                    for w in works.iter_mut().filter(|w| w.change.is_some()) {
                        w.retry(
                            format!("database error while loading the stage change: {e}"),
                            None,
                        );
                    }
                }
            }
        }
        for w in works.iter_mut().filter(|w| !w.finished) {
            let write_back = self.finish(ctx, w);
            out.write_back.append(write_back);
        }
    }
}
