//! The no-op queue ceiling: what this database does with the queue alone. The same claim
//! (sql/claim_jobs.sql: SKIP LOCKED, lease) and the same write-back (sql/complete_jobs.sql:
//! fenced, archived as done), batched as a worker batches them, and nothing else: no
//! expansion, no context load, no request, no audit row. Run on the benchmark's database,
//! after the pipeline's run of the same size, so both see the same server and table history.

use std::time::{Duration, Instant};

use anyhow::bail;
use sqlx::PgPool;

use crate::store::{OutcomeRow, Store, WriteBack};

/// Claim → complete loops at once: a worker has `concurrency / batch_size` batches in flight
/// (4 with the defaults).
pub const LOOPS: usize = 4;

/// Queue `n` no-op jobs, then claim and complete them `batch` at a time from [`LOOPS`] loops.
/// Returns the time from the first claim until the last completion.
pub async fn noop_ceiling(
    store: &Store,
    pool: &PgPool,
    n: i64,
    batch: i64,
) -> anyhow::Result<Duration> {
    sqlx::query(include_str!("../../sql/bench/noop_jobs.sql"))
        .bind(n)
        .execute(pool)
        .await?;
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for i in 0..LOOPS {
        let store = store.clone();
        loops.spawn(async move {
            let worker = format!("bench-noop-{i}");
            let mut done = 0_u64;
            loop {
                let jobs = store.claim_jobs(batch, &worker, 60.0).await?;
                if jobs.is_empty() {
                    return anyhow::Ok(done);
                }
                let outcomes = jobs
                    .iter()
                    .map(|j| OutcomeRow {
                        id: j.id,
                        attempt: j.attempts,
                        outcome: "done",
                        run_at: None,
                        error: None,
                        destinations: None,
                    })
                    .collect();
                let flush = store
                    .flush(
                        &worker,
                        &WriteBack {
                            outcomes,
                            ..WriteBack::default()
                        },
                        false,
                    )
                    .await;
                if let Some(e) = flush.error {
                    bail!("no-op write-back failed: {e}");
                }
                done += flush.report.applied;
            }
        });
    }
    let mut done = 0;
    while let Some(r) = loops.join_next().await {
        done += r??;
    }
    let elapsed = started.elapsed();
    if done != n as u64 {
        bail!("the no-op baseline completed {done} of {n} jobs");
    }
    Ok(elapsed)
}
