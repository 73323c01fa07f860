//! `stagecast bench`: performance is measured here, never asserted in tests.
//!
//! 1. CRM overhead in a warm session: what a CRM's connection pool does. The same session makes
//!    single-row stage changes, then a bulk UPDATE, then single-row ones again (and, in another
//!    session, bulk first on a never-analyzed table, then single-row), each statement timed with
//!    the trigger (`customers`) and without it (`customers_bare`, an identical table).
//! 2. Throughput (`throughput.rs`): for each N of `--customers`, N customers moved to a
//!    Purchase stage in one UPDATE, worked by `stagecast run` subprocesses
//!    (`worker_process.rs`, which also reads their peak RSS); commit → first and → last event
//!    accepted by the local validating Graph sandbox; then the no-op queue ceiling of the same
//!    N (`baseline.rs`) and the pipeline's events/s as a fraction of it.
//! 3. Idle latency: single-customer moves on an idle worker, commit → event accepted.
//!
//! `--one-throttled` measures instead throughput to 50 destinations with one of them throttled
//! (`throttled_destination.rs`). `stagecast bench chaos` ([`chaos`]) is the other measurement:
//! nothing lost or sent under a new id while worker processes are killed, Postgres restarts and
//! the platform misbehaves.

pub mod chaos;
mod throttled_destination;

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::Connection as _;

mod baseline;
mod throughput;
mod worker_process;

use crate::local_pg::{FindOptions, LocalPostgres};
use crate::secrets::KeyRing;
use crate::store::Store;
use stagecast_sandbox::MetaGraphSandbox;

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Customers moved to the Purchase stage in one UPDATE: one throughput run per size of the
    /// list (e.g. 10000,100000,1000000), each on customers of its own, each followed by the
    /// no-op queue ceiling of the same size.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "10000,100000")]
    pub customers: Vec<i64>,
    /// Rows of the bulk UPDATE used to measure the trigger's overhead.
    #[arg(long, default_value_t = 10_000)]
    pub overhead_rows: i64,
    /// Bulk UPDATEs per session of the overhead measurement (each with and without the trigger).
    #[arg(long, default_value_t = 7)]
    pub overhead_rounds: usize,
    /// Single-row UPDATEs per phase of the overhead measurement (each with and without the trigger).
    #[arg(long, default_value_t = 50)]
    pub overhead_singles: usize,
    /// Measure only the CRM overhead (skip throughput and latency).
    #[arg(long)]
    pub overhead_only: bool,
    /// Single-customer moves measured for idle latency.
    #[arg(long, default_value_t = 50)]
    pub latency_probes: usize,
    /// `stagecast run` worker processes.
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
    /// Measure only the claim after the queue was analyzed while drained: a burst of
    /// jobs worked off (the largest of --customers), VACUUM (ANALYZE) of the empty queue, then
    /// the next burst, claimed --batch-size at a time (against the same burst with fresh statistics).
    #[arg(long)]
    pub analyze_drained_queue: bool,
    /// Measure only throughput to 50 destinations: --customers jobs spread over them, all
    /// healthy, then --customers more with one destination throttled by Meta.
    #[arg(long)]
    pub one_throttled: bool,
}

#[derive(Debug, clap::Subcommand, Clone)]
pub enum BenchCommand {
    /// Stage changes while worker processes are SIGKILLed, Postgres (a throwaway cluster of
    /// its own) restarts and the Graph sandbox fails requests; exits non-zero when an event was
    /// lost or sent under a new id.
    Chaos(chaos::ChaosArgs),
}

const PIXEL: &str = "424242";
const TOKEN: &str = "EAABENCH-token";

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(BenchCommand::Chaos(chaos)) = args.command {
        return chaos::run(chaos).await;
    }
    if args.customers.is_empty()
        || args.customers.iter().any(|&n| n < 1)
        || args.overhead_rows < 1
        || args.overhead_singles < 1
    {
        bail!("--customers (each size), --overhead-rows and --overhead-singles must be at least 1");
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
    let pool = PgPoolOptions::new()
        .max_connections(8 + 4 * args.workers as u32)
        .connect(url)
        .await?;
    let store = Store::new(pool.clone());
    store.migrate().await?;
    if args.analyze_drained_queue {
        return analyze_drained_queue(&store, &pool, args).await;
    }
    if args.one_throttled {
        return throttled_destination::run(&store, &pool, args).await;
    }
    let key_entry = KeyRing::generate_key_entry("bench")?;
    let keys = KeyRing::parse(&key_entry)?;
    sqlx::raw_sql(include_str!("../../sql/bench/seed.sql"))
        .execute(&pool)
        .await?;
    sqlx::query(include_str!("../../sql/bench/insert_pixel.sql"))
        .bind(PIXEL)
        .bind(keys.seal(TOKEN))
        .execute(&pool)
        .await?;
    sqlx::query(include_str!("../../sql/bench/insert_campaign.sql"))
        .execute(&pool)
        .await?;
    let singles = args.overhead_singles as i64;
    // Each throughput size moves customers of its own, from 1 on; the others come after.
    let moved: i64 = args.customers.iter().sum();
    let total = moved + args.overhead_rows + args.latency_probes as i64 + singles + 10;
    let t = Instant::now();
    sqlx::query(include_str!("../../sql/bench/insert_customers.sql"))
        .bind(total)
        .execute(&pool)
        .await?;
    sqlx::raw_sql(include_str!("../../sql/bench/create_bare_customers.sql"))
        .execute(&pool)
        .await?;
    // Statistics for everything but the customers (analyzed after scenario B below), taken
    // while stagecast.jobs is still empty, as on a fresh install.
    sqlx::raw_sql(include_str!(
        "../../sql/bench/analyze_all_but_customers.sql"
    ))
    .execute(&pool)
    .await?;
    println!(
        "seeded {total} customers in {:.1}s\n",
        t.elapsed().as_secs_f64()
    );

    // 1. Overhead of the trigger on the CRM's own write, in warm sessions. Bulk rows come after
    // the throughput range, single-row moves after the latency probes.
    let bulk = (moved + 1, moved + args.overhead_rows);
    let first_single = moved + args.overhead_rows + args.latency_probes as i64 + 1;
    let shape = Overhead {
        bulk,
        singles: (first_single..first_single + singles).collect(),
        rounds: args.overhead_rounds.max(1),
    };
    println!(
        "CRM write overhead of the stage-change trigger, one session per scenario (each \
         statement rolled back; without = the same UPDATE on customers_bare, an identical table \
         without stagecast's triggers):"
    );
    // The customers table has never been analyzed here, as on a CRM right after a bulk import.
    let mut session = bench_session(url).await?;
    println!("  B. bulk first (customers never analyzed), then single-row:");
    shape
        .bulk_phase(&mut session, "bulk UPDATE, first in the session")
        .await?;
    shape
        .single_phase(&mut session, "single-row after bulk")
        .await?;
    session.close().await?;
    sqlx::query("ANALYZE customers, customers_bare")
        .execute(&pool)
        .await?;
    let mut session = bench_session(url).await?;
    println!("  A. single-row first, then bulk, then single-row again:");
    shape
        .single_phase(&mut session, "single-row (first statements)")
        .await?;
    shape
        .bulk_phase(&mut session, "bulk UPDATE after single-row")
        .await?;
    shape
        .single_phase(&mut session, "single-row after bulk")
        .await?;
    session.close().await?;
    println!(
        "  targets: bulk ≤ {BULK_TARGET}x, single-row ≤ {SINGLE_TARGET}x + {SINGLE_ALLOWANCE_MS} ms of the bare statement\n"
    );
    if args.overhead_only {
        return Ok(());
    }

    // 2. Throughput, per size, against the no-op ceiling.
    let sandbox = MetaGraphSandbox::start().await?;
    sandbox.add_pixel(PIXEL, TOKEN);
    sandbox.set_record_events(false);
    let graph_url = sandbox.base_url();
    let setup = worker_process::WorkerSetup {
        database_url: url,
        graph_url: &graph_url,
        keys: &key_entry,
        processes: args.workers.max(1),
        concurrency: args.concurrency,
        batch_size: args.batch_size,
    };
    let mut runs = Vec::new();
    let mut first = 1;
    for &n in &args.customers {
        let run = throughput::run(&store, &pool, &sandbox, &setup, first, n).await?;
        first += n;
        runs.push(run);
    }
    throughput::report(&runs, setup.processes);
    if let Some(largest) = runs.iter().max_by_key(|r| r.n) {
        println!(
            "  time in the database by statement, N = {} run:",
            largest.n
        );
        print_db_breakdown(&largest.metrics);
    }

    // 3. Idle latency.
    let mut latencies = Vec::with_capacity(args.latency_probes);
    let base = moved + args.overhead_rows;
    sandbox.clear();
    let workers = worker_process::WorkerProcesses::start(&setup).await?;
    for i in 0..args.latency_probes as i64 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let before = sandbox.accepted_events();
        let id = base + 1 + i;
        sqlx::query(include_str!("../../sql/bench/move_range.sql"))
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
    workers.stop().await;
    Ok(())
}

/// Claim latency when the planner believes the queue is empty: the worker's own maintenance
/// ANALYZEs stagecast.jobs, often while it is drained, and the next burst is claimed with those
/// statistics. Each claim leases --batch-size jobs, as a worker does; the jobs are claimed, not
/// worked (no platform is involved).
async fn analyze_drained_queue(
    store: &Store,
    pool: &sqlx::PgPool,
    args: &BenchArgs,
) -> anyhow::Result<()> {
    let n = args.customers.iter().copied().max().unwrap_or(1);
    let batch = args.batch_size.max(1) as i64;
    println!("Claim latency, {n} jobs claimed {batch} at a time (median / mean / max per claim):");
    for (label, analyze_after_burst) in [
        ("analyzed while drained, then a burst", false),
        ("the same burst with fresh statistics", true),
    ] {
        sqlx::query(include_str!("../../sql/bench/drain_jobs.sql"))
            .execute(pool)
            .await?;
        sqlx::query(include_str!("../../sql/bench/burst_jobs.sql"))
            .bind(n)
            .execute(pool)
            .await?;
        sqlx::query(include_str!("../../sql/bench/drain_jobs.sql"))
            .execute(pool)
            .await?;
        sqlx::raw_sql(include_str!("../../sql/bench/vacuum_analyze_jobs.sql"))
            .execute(pool)
            .await?;
        sqlx::query(include_str!("../../sql/bench/burst_jobs.sql"))
            .bind(n)
            .execute(pool)
            .await?;
        if analyze_after_burst {
            sqlx::raw_sql(include_str!("../../sql/bench/vacuum_analyze_jobs.sql"))
                .execute(pool)
                .await?;
        }
        let mut claims = Vec::new();
        let mut claimed = 0_i64;
        let t = Instant::now();
        while claimed < n {
            let started = Instant::now();
            let jobs = store.claim_jobs(batch, "bench-claim", 600.0).await?;
            claims.push(started.elapsed());
            if jobs.is_empty() {
                bail!("only {claimed} of {n} jobs could be claimed");
            }
            claimed += jobs.len() as i64;
        }
        let total = t.elapsed();
        let max = claims.iter().max().copied().unwrap_or_default();
        let avg = mean(&claims);
        println!(
            "  {label:<38} {:>8.2} / {:>8.2} / {:>8.2} ms   all {n} in {:.2} s",
            ms(median(&mut claims)),
            ms(avg),
            ms(max),
            total.as_secs_f64()
        );
    }
    Ok(())
}

/// Where the database time went during a throughput run, from the workers' own metrics
/// (`text`: their /metrics, summed over processes).
fn print_db_breakdown(text: &str) {
    let mut rows: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for line in text.lines() {
        let (sum, rest) =
            if let Some(r) = line.strip_prefix("stagecast_db_query_duration_seconds_sum") {
                (true, r)
            } else if let Some(r) = line.strip_prefix("stagecast_db_query_duration_seconds_count") {
                (false, r)
            } else {
                continue;
            };
        let (Some(q), Some(v)) = (rest.split('"').nth(1), rest.rsplit(' ').next()) else {
            continue;
        };
        let v: f64 = v.parse().unwrap_or(0.0);
        let row = rows.entry(q.to_string()).or_default();
        if sum {
            row.0 += v;
        } else {
            row.1 += v;
        }
    }
    let mut rows: Vec<(String, (f64, f64))> = rows.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    for (q, (secs, count)) in rows {
        println!("    {q:<28} {secs:>7.2} s  over {count:>6.0} calls");
    }
    println!();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const BULK_TARGET: f64 = 1.5;
const SINGLE_TARGET: f64 = 2.0;
const SINGLE_ALLOWANCE_MS: f64 = 1.0;

/// The statements of the overhead measurement.
struct Overhead {
    /// Customer ids of the bulk UPDATE (inclusive).
    bulk: (i64, i64),
    /// Customers moved one by one.
    singles: Vec<i64>,
    /// Bulk UPDATEs per phase, with and without the trigger each.
    rounds: usize,
}

impl Overhead {
    async fn bulk_phase(&self, conn: &mut PgConnection, label: &str) -> anyhow::Result<()> {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for round in 0..self.rounds {
            // Alternate which side goes first, so caching and dead tuples favour neither.
            for trigger in [round % 2 == 0, round % 2 == 1] {
                let sql = if trigger {
                    include_str!("../../sql/bench/move_range.sql")
                } else {
                    include_str!("../../sql/bench/move_range_bare.sql")
                };
                let d = rolled_back(
                    conn,
                    sqlx::query(sql)
                        .bind(self.bulk.0)
                        .bind(self.bulk.1)
                        .bind(2_i64),
                )
                .await?;
                if trigger {
                    with.push(d)
                } else {
                    without.push(d)
                }
            }
        }
        let rows = self.bulk.1 - self.bulk.0 + 1;
        report(
            &format!("{label}, {rows} rows"),
            &mut with,
            &mut without,
            |w, b| w <= b * BULK_TARGET,
        );
        Ok(())
    }

    async fn single_phase(&self, conn: &mut PgConnection, label: &str) -> anyhow::Result<()> {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for (i, &id) in self.singles.iter().enumerate() {
            for trigger in [i % 2 == 0, i % 2 == 1] {
                let sql = if trigger {
                    include_str!("../../sql/bench/move_one.sql")
                } else {
                    include_str!("../../sql/bench/move_one_bare.sql")
                };
                let d = rolled_back(conn, sqlx::query(sql).bind(id).bind(2_i64)).await?;
                if trigger {
                    with.push(d)
                } else {
                    without.push(d)
                }
            }
        }
        report(label, &mut with, &mut without, |w, b| {
            w <= b * SINGLE_TARGET + SINGLE_ALLOWANCE_MS
        });
        Ok(())
    }
}

/// A fresh session, as a pooled CRM connection starts. Statement logging off: sqlx's
/// slow-statement warnings would drown the report when the trigger is slow.
async fn bench_session(url: &str) -> anyhow::Result<PgConnection> {
    use sqlx::ConnectOptions as _;
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    Ok(options.disable_statement_logging().connect().await?)
}

/// Time one UPDATE inside a transaction that is then rolled back, so every round starts from
/// the same rows. (Not `ALTER TABLE … DISABLE TRIGGER` for the bare side: that invalidates the
/// session's cached plans and so hides exactly the history effect measured here.)
async fn rolled_back(
    conn: &mut PgConnection,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> anyhow::Result<Duration> {
    let mut tx = conn.begin().await?;
    let t = Instant::now();
    query.execute(&mut *tx).await?;
    let d = t.elapsed();
    tx.rollback().await?;
    Ok(d)
}

/// Print one phase: median and mean in ms of each side, their ratios and whether both meet the
/// target. The mean keeps a single pathological statement visible (one 10 s UPDATE among seven
/// fast ones leaves the median untouched, and it is what the CRM pays).
fn report(
    label: &str,
    with: &mut [Duration],
    without: &mut [Duration],
    meets: impl Fn(f64, f64) -> bool,
) {
    let (w, b) = (ms(median(with)), ms(median(without)));
    let (wm, bm) = (ms(mean(with)), ms(mean(without)));
    println!(
        "    {label:<34} without {b:>8.2} ms (mean {bm:>8.2})   with {w:>8.2} ms (mean {wm:>8.2})   ratio {:>5.2}x (mean {:>5.2}x)  {}",
        w / b,
        wm / bm,
        if meets(w, b) && meets(wm, bm) { "ok" } else { "MISSED" }
    );
}

fn mean(d: &[Duration]) -> Duration {
    d.iter().sum::<Duration>() / (d.len().max(1) as u32)
}

fn median(d: &mut [Duration]) -> Duration {
    d.sort();
    d.get(d.len() / 2).copied().unwrap_or_default()
}
