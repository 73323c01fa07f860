//! `stagecast bench`: performance is measured here, never asserted in tests.
//!
//! 1. CRM overhead: a bulk UPDATE of stage_id with and without the stage-change trigger.
//! 2. Throughput: N customers moved to a Purchase stage in one UPDATE; events/s from the
//!    commit until the local validating Graph sandbox accepted all N events.
//! 3. Idle latency: single-customer moves on an idle worker, commit → event accepted.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::local_pg::{FindOptions, LocalPostgres};
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::platforms::meta::MetaConfig;
use crate::queue::{Worker, WorkerConfig, WorkerHandle};
use crate::sandbox::MetaGraphSandbox;
use crate::secrets::KeyRing;
use crate::store::Store;

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Customers moved to the Purchase stage in one UPDATE.
    #[arg(long, default_value_t = 100_000)]
    pub customers: i64,
    /// Rows of the bulk UPDATE used to measure the trigger's overhead.
    #[arg(long, default_value_t = 10_000)]
    pub overhead_rows: i64,
    /// Rounds of the overhead measurement (each with and without the trigger).
    #[arg(long, default_value_t = 7)]
    pub overhead_rounds: usize,
    /// Single-customer moves measured for idle latency.
    #[arg(long, default_value_t = 50)]
    pub latency_probes: usize,
    /// Worker processes' worth of workers, run in this process.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Jobs in flight per worker.
    #[arg(long, default_value_t = 4000)]
    pub concurrency: usize,
    /// Jobs leased per claim.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Keep the benchmark database afterwards.
    #[arg(long)]
    pub keep: bool,
}

const PIXEL: &str = "424242";
const TOKEN: &str = "EAABENCH-token";

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.customers < 1 || args.overhead_rows < 1 {
        bail!("--customers and --overhead-rows must be at least 1");
    }
    let pg = LocalPostgres::find_or_start(FindOptions::from_env()).await?;
    let db = format!("stagecast_bench_{}", std::process::id());
    let url = pg.create_database(&db).await?;
    println!("stagecast bench on {} (database {db})", pg.describe());
    // Ctrl-C must not leave a benchmark database behind.
    let result = tokio::select! {
        r = bench(&url, &args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if !args.keep {
        if let Err(e) = pg.drop_database(&db).await {
            eprintln!("warning: could not drop {db}: {e}");
        }
    }
    result
}

async fn bench(url: &str, args: &BenchArgs) -> anyhow::Result<()> {
    // The worker's own metrics give the per-statement breakdown printed below.
    crate::ops::prometheus();
    let pool = PgPoolOptions::new()
        .max_connections(8 + 4 * args.workers as u32)
        .connect(url)
        .await?;
    let store = Store::new(pool.clone());
    store.migrate().await?;
    let keys = KeyRing::parse(&KeyRing::generate_key_entry("bench")?)?;
    sqlx::raw_sql(include_str!("../sql/bench/seed.sql"))
        .execute(&pool)
        .await?;
    sqlx::query(include_str!("../sql/bench/insert_pixel.sql"))
        .bind(PIXEL)
        .bind(keys.seal(TOKEN))
        .execute(&pool)
        .await?;
    sqlx::query(include_str!("../sql/bench/insert_campaign.sql"))
        .execute(&pool)
        .await?;
    let total = args.customers + args.overhead_rows + args.latency_probes as i64 + 10;
    let t = Instant::now();
    sqlx::query(include_str!("../sql/bench/insert_customers.sql"))
        .bind(total)
        .execute(&pool)
        .await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    println!(
        "seeded {total} customers in {:.1}s\n",
        t.elapsed().as_secs_f64()
    );

    // 1. Overhead of the trigger on the CRM's own write (customers after the throughput range).
    let (first, last) = (args.customers + 1, args.customers + args.overhead_rows);
    let (with, without) = overhead(&pool, first, last, args.overhead_rounds).await?;
    let ratio = with.as_secs_f64() / without.as_secs_f64();
    println!(
        "CRM bulk UPDATE of {} rows (median of {} rounds, rolled back):",
        args.overhead_rows, args.overhead_rounds
    );
    println!("  without trigger {:>8.1} ms", ms(without));
    println!("  with trigger    {:>8.1} ms", ms(with));
    println!("  overhead ratio  {ratio:>8.2}x   (target ≤ 1.5x)\n");

    // 2. Throughput.
    let sandbox = MetaGraphSandbox::start().await?;
    sandbox.add_pixel(PIXEL, TOKEN);
    sandbox.set_record_events(false);
    let workers = start_workers(&store, &sandbox, &keys, args)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    sqlx::query(include_str!("../sql/bench/move_range.sql"))
        .bind(1_i64)
        .bind(args.customers)
        .bind(2_i64)
        .execute(&pool)
        .await?;
    let committed = Instant::now();
    let n = args.customers as usize;
    if !sandbox.wait_for_events(n, Duration::from_secs(600)).await {
        bail!(
            "only {} of {n} events arrived within 10 minutes",
            sandbox.accepted_events()
        );
    }
    let sent = Instant::now();
    if !store.wait_until_drained(Duration::from_secs(600)).await? {
        bail!("the queue did not drain within 10 minutes");
    }
    let drained = Instant::now();
    let delivered: i64 = sqlx::query_scalar(include_str!("../sql/bench/delivered_count.sql"))
        .fetch_one(&pool)
        .await?;
    let requests = sandbox.requests().len();
    let accepted = sandbox.accepted_events();
    println!(
        "Throughput: {n} customers → Purchase, one UPDATE, {} worker(s):",
        args.workers
    );
    println!("  CRM UPDATE statement  {:>8.1} ms", ms(committed - t0));
    println!(
        "  commit → all {n} events accepted by the Graph sandbox  {:>7.2} s  = {:>8.0} events/s",
        (sent - committed).as_secs_f64(),
        n as f64 / (sent - committed).as_secs_f64()
    );
    println!(
        "  commit → all outcomes written back                    {:>7.2} s  = {:>8.0} events/s",
        (drained - committed).as_secs_f64(),
        n as f64 / (drained - committed).as_secs_f64()
    );
    println!("  {requests} requests, {accepted} events accepted, {delivered} delivered rows in the audit\n");
    if accepted != n || delivered as usize != n {
        bail!("expected exactly {n} deliveries, saw {accepted} accepted and {delivered} audited");
    }

    print_db_breakdown();

    // 3. Idle latency.
    let mut latencies = Vec::with_capacity(args.latency_probes);
    let base = args.customers + args.overhead_rows;
    for i in 0..args.latency_probes as i64 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let before = sandbox.accepted_events();
        let id = base + 1 + i;
        sqlx::query(include_str!("../sql/bench/move_range.sql"))
            .bind(id)
            .bind(id)
            .bind(1_i64)
            .execute(&pool)
            .await?;
        let committed = Instant::now();
        if !sandbox
            .wait_for_events(before + 1, Duration::from_secs(10))
            .await
        {
            bail!("latency probe {i} was not delivered within 10s");
        }
        latencies.push(committed.elapsed());
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "Idle latency, commit of a single-customer UPDATE → event accepted ({} probes):",
        latencies.len()
    );
    println!(
        "  p50 {:.2} ms   p90 {:.2} ms   max {:.2} ms   (target p50 ≤ 5 ms)",
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO))
    );
    for w in workers {
        w.shutdown().await?;
    }
    Ok(())
}

/// Where the database time went during the throughput run (from the worker's own metrics).
fn print_db_breakdown() {
    let text = crate::ops::prometheus().render();
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("stagecast_db_query_duration_seconds_sum"))
    {
        let (Some(q), Some(v)) = (line.split('"').nth(1), line.rsplit(' ').next()) else {
            continue;
        };
        let count_line = format!("stagecast_db_query_duration_seconds_count{{query=\"{q}\"}}");
        let count = text
            .lines()
            .find(|l| l.starts_with(&count_line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|c| c.parse().ok())
            .unwrap_or(0.0);
        rows.push((q.to_string(), v.parse().unwrap_or(0.0), count));
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("  time in the database by statement (all workers, wall clock):");
    for (q, secs, count) in rows {
        println!("    {q:<28} {secs:>7.2} s  over {count:>6.0} calls");
    }
    println!();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

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
            let pipeline = Pipeline::new(
                store.clone(),
                meta,
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

/// Median time of the bulk UPDATE with and without the trigger, alternating the order each
/// round so caching and dead tuples do not favour one side.
async fn overhead(
    pool: &PgPool,
    first: i64,
    last: i64,
    rounds: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let mut with = Vec::new();
    let mut without = Vec::new();
    // Warm-up round, not counted.
    timed_update(pool, first, last, true).await?;
    timed_update(pool, first, last, false).await?;
    for round in 0..rounds.max(1) {
        for enabled in if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let d = timed_update(pool, first, last, enabled).await?;
            if enabled {
                with.push(d);
            } else {
                without.push(d);
            }
        }
    }
    with.sort();
    without.sort();
    Ok((with[with.len() / 2], without[without.len() / 2]))
}

async fn timed_update(
    pool: &PgPool,
    first: i64,
    last: i64,
    trigger: bool,
) -> anyhow::Result<Duration> {
    let mut tx = pool.begin().await?;
    if !trigger {
        sqlx::query(include_str!("../sql/bench/disable_stage_trigger.sql"))
            .execute(&mut *tx)
            .await?;
    }
    let t = Instant::now();
    sqlx::query(include_str!("../sql/bench/move_range.sql"))
        .bind(first)
        .bind(last)
        .bind(2_i64)
        .execute(&mut *tx)
        .await?;
    let d = t.elapsed();
    // Roll back: the rows stay untouched for the next round (and the ALTER is undone).
    tx.rollback().await?;
    Ok(d)
}
