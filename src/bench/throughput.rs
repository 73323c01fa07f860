//! Throughput at several sizes: for each N of `--customers`, one UPDATE moves N customers (a
//! range of their own) to the Purchase stage while fresh `stagecast run` processes work; then
//! the no-op queue ceiling of the same N on the same database ([`super::baseline`]).
//! Reported per N: commit → first event and → last event accepted by the Graph sandbox,
//! → all outcomes written back, the workers' peak RSS, and events/s as a fraction of the
//! ceiling.

use std::time::{Duration, Instant};

use anyhow::bail;
use sqlx::PgPool;
use stagecast_sandbox::MetaGraphSandbox;

use super::baseline;
use super::worker_process::{WorkerProcesses, WorkerSetup};
use crate::store::Store;

/// One size's measurements.
pub struct Run {
    pub n: i64,
    pub update: Duration,
    pub first_event: Duration,
    pub last_event: Duration,
    pub drained: Duration,
    pub peak_rss: u64,
    pub requests: usize,
    pub noop: Duration,
    /// The workers' /metrics at the end of the run (per-statement database time).
    pub metrics: String,
}

impl Run {
    pub fn events_per_sec(&self) -> f64 {
        self.n as f64 / self.last_event.as_secs_f64()
    }

    pub fn noop_per_sec(&self) -> f64 {
        self.n as f64 / self.noop.as_secs_f64()
    }
}

/// Move customers `first..first + n` and measure; `batch` is the claim size of the baseline.
pub async fn run(
    store: &Store,
    pool: &PgPool,
    sandbox: &MetaGraphSandbox,
    setup: &WorkerSetup<'_>,
    first: i64,
    n: i64,
) -> anyhow::Result<Run> {
    sandbox.clear();
    let delivered_before: i64 =
        sqlx::query_scalar(include_str!("../../sql/bench/delivered_count.sql"))
            .fetch_one(pool)
            .await?;
    let workers = WorkerProcesses::start(setup).await?;
    let t0 = Instant::now();
    sqlx::query(include_str!("../../sql/bench/move_range.sql"))
        .bind(first)
        .bind(first + n - 1)
        .bind(2_i64)
        .execute(pool)
        .await?;
    let committed = Instant::now();
    let timeout = Duration::from_secs(900);
    if !sandbox.wait_for_events(1, timeout).await {
        bail!("no event arrived within 15 minutes");
    }
    let first_event = committed.elapsed();
    if !sandbox.wait_for_events(n as usize, timeout).await {
        bail!(
            "only {} of {n} events arrived within 15 minutes",
            sandbox.accepted_events()
        );
    }
    let last_event = committed.elapsed();
    if !store.wait_until_drained(timeout).await? {
        bail!("the queue did not drain within 15 minutes");
    }
    let drained = committed.elapsed();
    let peak_rss = workers.peak_rss()?;
    let metrics = workers.metrics().await;
    workers.stop().await;
    let delivered: i64 = sqlx::query_scalar(include_str!("../../sql/bench/delivered_count.sql"))
        .fetch_one(pool)
        .await?;
    let accepted = sandbox.accepted_events();
    if accepted != n as usize || delivered - delivered_before != n {
        bail!(
            "expected exactly {n} deliveries, saw {accepted} accepted and {} audited",
            delivered - delivered_before
        );
    }
    let requests = sandbox.requests().len();
    let noop = baseline::noop_ceiling(store, pool, n, setup.batch_size as i64).await?;
    Ok(Run {
        n,
        update: committed - t0,
        first_event,
        last_event,
        drained,
        peak_rss,
        requests,
        noop,
        metrics,
    })
}

/// The table of every size, then how flat events/s stayed.
pub fn report(runs: &[Run], processes: usize) {
    println!(
        "Throughput: N customers → Purchase in one UPDATE, {processes} `stagecast run` process(es); \
         no-op ceiling: the same N claimed and completed with nothing else ({} loops):",
        baseline::LOOPS
    );
    println!(
        "  {:>9} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10} {:>11} {:>8} {:>9}",
        "N",
        "UPDATE ms",
        "→ first ms",
        "→ last s",
        "→ written s",
        "events/s",
        "no-op/s",
        "of no-op",
        "RSS MB",
        "requests"
    );
    for r in runs {
        println!(
            "  {:>9} {:>10.1} {:>12.1} {:>12.2} {:>12.2} {:>10.0} {:>10.0} {:>10.0}% {:>8.1} {:>9}",
            r.n,
            super::ms(r.update),
            super::ms(r.first_event),
            r.last_event.as_secs_f64(),
            r.drained.as_secs_f64(),
            r.events_per_sec(),
            r.noop_per_sec(),
            100.0 * r.events_per_sec() / r.noop_per_sec(),
            r.peak_rss as f64 / (1024.0 * 1024.0),
            r.requests
        );
    }
    if let (Some(lo), Some(hi)) = (
        runs.iter().map(Run::events_per_sec).reduce(f64::min),
        runs.iter().map(Run::events_per_sec).reduce(f64::max),
    ) {
        if runs.len() > 1 {
            println!(
                "  events/s spread across sizes: {:.0}% (target ≤ 15%); targets: first event ≤ 1 s, \
                 RSS ≤ 100 MB, ≥ 60% of the no-op ceiling",
                100.0 * (hi - lo) / hi
            );
        }
    }
    println!("  (RSS: VmHWM of each `stagecast run` process, the largest; events/s: N / commit → last event)\n");
}
