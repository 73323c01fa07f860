//! `stagecast bench --one-throttled`: throughput to 50 destinations, first all healthy, then
//! with one of them throttled by Meta (code 4, paused by every worker). The other 49 should
//! keep their pace: a paused destination's jobs are rescheduled at once, never waited for, and
//! a job that is done gives its capacity back even while its batch still waits on another
//! destination (docs/performance.md, "One throttled destination of 50").

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::PgPool;
use stagecast_sandbox::{Fault, MetaGraphSandbox};

use super::BenchArgs;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::platforms::meta::MetaConfig;
use crate::platforms::{PlatformsConfig, Registry};
use crate::queue::{Worker, WorkerConfig, WorkerHandle};
use crate::secrets::KeyRing;
use crate::store::Store;

const DESTINATIONS: i64 = 50;
const TOKEN: &str = "EAABENCH-token";

/// The dataset id of bench pixel `n` (sql/bench/insert_pixels.sql).
fn dataset(n: i64) -> String {
    (9_000_000_000_000_000_i64 + n).to_string()
}

pub(super) async fn run(store: &Store, pool: &PgPool, args: &BenchArgs) -> anyhow::Result<()> {
    let keys = KeyRing::parse(&KeyRing::generate_key_entry("bench")?)?;
    sqlx::raw_sql(include_str!("../../sql/bench/seed.sql"))
        .execute(pool)
        .await?;
    sqlx::query(include_str!("../../sql/bench/insert_pixels.sql"))
        .bind(DESTINATIONS)
        .bind(keys.seal(TOKEN))
        .execute(pool)
        .await?;
    sqlx::query(include_str!("../../sql/bench/insert_campaigns.sql"))
        .bind(DESTINATIONS)
        .execute(pool)
        .await?;
    // The first --customers size: this scenario measures the comparison, not the scale.
    let n = args.customers.first().copied().unwrap_or(10_000);
    sqlx::query(include_str!("../../sql/bench/insert_spread_customers.sql"))
        .bind(2 * n)
        .bind(DESTINATIONS)
        .execute(pool)
        .await?;
    sqlx::raw_sql(include_str!(
        "../../sql/bench/analyze_all_but_customers.sql"
    ))
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE customers").execute(pool).await?;

    let sandbox = MetaGraphSandbox::start().await?;
    for p in 1..=DESTINATIONS {
        sandbox.add_pixel(&dataset(p), TOKEN);
    }
    sandbox.set_record_events(false);
    let workers = start_workers(store, &sandbox, &keys, args)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "Throughput to {DESTINATIONS} destinations, {n} customers → Purchase per UPDATE, {} worker(s):",
        args.workers
    );

    // All healthy: customers 1..n.
    let healthy = burst(pool, &sandbox, 1, n, n as usize).await?;
    println!(
        "  all {DESTINATIONS} healthy: commit → {n} events accepted  {:>7.2} s  = {:>8.0} events/s",
        healthy.as_secs_f64(),
        n as f64 / healthy.as_secs_f64()
    );

    // Destination 50 throttled: customers n+1..2n; those of campaign 50 ((g % 50) + 1 = 50)
    // wait for its pause, the others are measured.
    sandbox.set_pixel_fault(
        &dataset(DESTINATIONS),
        Some(Fault::Throttle {
            code: 4,
            subcode: None,
            regain_minutes: None,
        }),
    );
    let others = (n + 1..=2 * n)
        .filter(|g| g % DESTINATIONS != DESTINATIONS - 1)
        .count();
    let throttled = burst(pool, &sandbox, n + 1, 2 * n, n as usize + others).await?;
    println!(
        "  1 of {DESTINATIONS} throttled: commit → the other {} destinations' {others} events accepted  {:>7.2} s  = {:>8.0} events/s",
        DESTINATIONS - 1,
        throttled.as_secs_f64(),
        others as f64 / throttled.as_secs_f64()
    );
    // The 49's outcomes are written back shortly after their events were accepted.
    let written_back = Instant::now();
    loop {
        let running: i64 = sqlx::query_scalar(include_str!("../../sql/bench/running_jobs.sql"))
            .fetch_one(pool)
            .await?;
        if running == 0 || written_back.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting: i64 = sqlx::query_scalar(include_str!("../../sql/bench/waiting_jobs.sql"))
        .fetch_one(pool)
        .await?;
    println!(
        "  {waiting} jobs of the throttled destination wait for its pause ({} events accepted in all)\n",
        sandbox.accepted_events()
    );
    for w in workers {
        w.shutdown().await?;
    }
    Ok(())
}

/// Move customers `from..=to` to the Purchase stage in one UPDATE; the time from its commit
/// until the sandbox accepted `total` events in all.
async fn burst(
    pool: &PgPool,
    sandbox: &MetaGraphSandbox,
    from: i64,
    to: i64,
    total: usize,
) -> anyhow::Result<Duration> {
    sqlx::query(include_str!("../../sql/bench/move_range.sql"))
        .bind(from)
        .bind(to)
        .bind(2_i64)
        .execute(pool)
        .await?;
    let committed = Instant::now();
    if !sandbox
        .wait_for_events(total, Duration::from_secs(600))
        .await
    {
        bail!(
            "only {} of {total} events arrived within 10 minutes",
            sandbox.accepted_events()
        );
    }
    Ok(committed.elapsed())
}

/// In-process workers (the throughput bench runs `stagecast run` subprocesses to read their
/// memory; here only the comparison between the two phases matters).
fn start_workers(
    store: &Store,
    sandbox: &MetaGraphSandbox,
    keys: &KeyRing,
    args: &BenchArgs,
) -> anyhow::Result<Vec<WorkerHandle>> {
    (0..args.workers.max(1))
        .map(|_| {
            let meta = MetaConfig {
                graph_url: sandbox.base_url(),
                requests_per_second: std::num::NonZeroU32::new(10_000).expect("nonzero"),
                burst: std::num::NonZeroU32::new(1_000).expect("nonzero"),
                ..MetaConfig::default()
            };
            let platforms = Registry::from_config(&PlatformsConfig {
                meta,
                ..PlatformsConfig::default()
            })
            .context("platform configuration")?;
            let pipeline = Pipeline::new(
                store.clone(),
                platforms,
                Some(keys.clone()),
                PipelineConfig::default(),
            )
            .context("pipeline configuration")?;
            Ok(Worker::new(
                store.clone(),
                pipeline,
                WorkerConfig {
                    concurrency: args.concurrency,
                    batch_size: args.batch_size,
                    ..WorkerConfig::default()
                },
            )
            .spawn())
        })
        .collect()
}
