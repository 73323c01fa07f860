//! `stage_change` jobs: parse each payload, load every context and the pixels in one round,
//! plan the events ([`super::plan`]), drop those the ledger has delivered (by event id, one
//! query per batch), deliver the rest ([`super::deliver`]) and finish the jobs that nothing is
//! in flight for.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tracing::warn;

use super::work::{JobWork, PendingEvent};
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
                // The claim withholds payloads over its per-job bound (a stage change's is
                // about 200 bytes): this one is not what the enqueue functions write.
                Err(_) if w.job.payload.is_null() => w.failures.push(
                    "invalid stage_change payload: too large to be claimed (one is about 200 bytes)"
                        .into(),
                ),
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
            let loaded = tokio::try_join!(
                self.store.load_stage_change_contexts(&keys),
                self.store.load_pixels(),
            );
            match loaded {
                Ok((contexts, pixels)) => {
                    let planned = self.plan(&mut works, contexts, &pixels, now);
                    match self.skip_delivered(&mut works, planned).await {
                        Ok(pending) => {
                            for p in &pending {
                                works[p.work].outstanding += 1;
                            }
                            self.deliver(ctx, &mut works, pending, &pixels).await;
                        }
                        Err(e) => {
                            warn!(error = %e, "could not read the delivery ledger; retrying the batch");
                            for w in works.iter_mut().filter(|w| w.change.is_some()) {
                                w.retry(
                                    format!(
                                        "database error while reading the delivery ledger: {e}"
                                    ),
                                    None,
                                );
                            }
                        }
                    }
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

    /// The ledger, read by the planned event ids (one query for the batch): an event already
    /// delivered is not sent again, whichever job delivered it. The same job's earlier attempt
    /// (a throttle or shutdown gave the attempt back, a rescue) or another job of the same
    /// change (a true duplicate queued after the first job finished, a replay): the job is then
    /// done with "already delivered by job N" in its note.
    async fn skip_delivered(
        &self,
        works: &mut [JobWork],
        planned: Vec<PendingEvent>,
    ) -> Result<Vec<PendingEvent>, crate::store::StoreError> {
        if planned.is_empty() {
            return Ok(planned);
        }
        let ids: Vec<String> = planned.iter().map(|p| p.event_id.clone()).collect();
        let ledger: HashMap<String, i64> = self
            .store
            .delivered_events(&ids)
            .await?
            .into_iter()
            .collect();
        if ledger.is_empty() {
            return Ok(planned);
        }
        let mut pending = Vec::with_capacity(planned.len());
        for p in planned {
            match ledger.get(&p.event_id) {
                Some(&by_job) => {
                    let w = &mut works[p.work];
                    w.already_delivered += 1;
                    if by_job != w.job.id {
                        w.delivered_by.insert(by_job);
                    }
                }
                None => pending.push(p),
            }
        }
        Ok(pending)
    }
}
