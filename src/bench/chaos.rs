//! `stagecast bench chaos`: stage changes written by a CRM while worker processes are killed,
//! Postgres is restarted and the Graph sandbox misbehaves; then every stage change is checked
//! against what the sandbox accepted.
//!
//! - The CRM writes `--changes` customers to a Purchase stage in UPDATEs of `--chunk` rows, at
//!   `--rate` changes a second (each UPDATE is idempotent, so one whose commit was lost with the
//!   connection is simply sent again).
//! - `--workers` `stagecast run` processes, each with its own `partner_agent`, so the sandbox's
//!   request record says which process sent what. Every `--kill-every` one of them gets SIGKILL
//!   and is replaced; the harness records when.
//! - Postgres is a throwaway cluster of this run (never the machine's server), crash-restarted
//!   (SIGQUIT) once, when half the changes are written.
//! - One sandbox request in `--fault-one-in` takes a fault: 5xx, HTML 502, throttling (a throttle code,
//!   and 503 + Retry-After; at most one throttle every four throttle pauses, as a platform
//!   throttles for the rate), a hang longer than the workers' `--meta-timeout`, and batches
//!   rejected for an event (the workers split them).
//!
//! Then: events lost (a stage change with no accepted event), events sent under a new id (a stage
//! change accepted under two event ids, which the platform cannot deduplicate), and every re-send
//! (an event id accepted again) with where it came from: a request in flight at a kill, an
//! answer the killed process never wrote back, a hang, the Postgres restart, or unexplained.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::Args;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::process::{Child, Command};

use crate::local_pg::LocalPostgres;
use crate::pii::Normalizer;
use crate::secrets::KeyRing;
use crate::store::Store;
use stagecast_sandbox::{Fault, MetaGraphSandbox, RequestRecord};

#[derive(Debug, Args, Clone)]
pub struct ChaosArgs {
    /// Stage changes the CRM writes (one customer each, moved to a Purchase stage).
    #[arg(long, default_value_t = 100_000)]
    pub changes: i64,
    /// Rows per CRM UPDATE.
    #[arg(long, default_value_t = 250)]
    pub chunk: i64,
    /// Stage changes per second the CRM writes.
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Worker processes (`stagecast run`) kept running.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// One worker process gets SIGKILL (and is replaced) this often.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub kill_every: Duration,
    /// Stop killing after this many kills (default: until every change is delivered).
    #[arg(long)]
    pub kills: Option<usize>,
    /// One `/events` request in this many gets a fault (0: none). Throttles come at most once
    /// every four `--throttle-pause`s (10 s at least), as a platform throttles for the rate.
    #[arg(long, default_value_t = 5)]
    pub fault_one_in: usize,
    /// How long Postgres stays down when it is restarted (once, half-way through the writes).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub pg_down_for: Duration,
    /// The workers' `--meta-batch-size`: smaller batches make more requests for the faults
    /// and the kills to hit.
    #[arg(long, default_value_t = 200)]
    pub meta_batch_size: usize,
    /// The workers' `--batch-size` (jobs per claim) and `--concurrency`: every job a worker
    /// holds when it is killed has spent an attempt; the dead-worker rescue refunds it up to
    /// 10 times a job, so with large claims a long run can still exhaust the budget of jobs
    /// held at every kill.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// The workers' `--throttle-pause`: the sandbox's throttle fault gives no estimate, so every
    /// worker pauses the run's only pixel this long (doubling while throttles follow each
    /// other). With `stagecast run`'s 60 s, a dozen throttles in a run of 100,000 changes kept
    /// the pipeline paused past the timeout; the run tests recovery, not Meta's patience.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub throttle_pause: Duration,
    /// The workers' `--lease`: how long a killed worker's jobs wait for another worker.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// Give up when the queue has not drained this long after the start.
    #[arg(long, default_value = "20m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Keep the workers' logs (they are deleted after a run that found nothing).
    #[arg(long)]
    pub keep_logs: bool,
}

impl ChaosArgs {
    /// The least time between two throttles: past the pause, the workers' streak starts again
    /// at 1 only once another first pause has gone by (sql/pause_destination.sql).
    fn throttle_spacing(&self) -> Duration {
        (self.throttle_pause * 4).max(Duration::from_secs(10))
    }
}

const PIXEL: &str = "434343";
const TOKEN: &str = "EAACHAOS-token";
/// The workers' request timeout; the hang fault holds its answer longer than this.
const META_TIMEOUT: &str = "2s";
const HANG: Duration = Duration::from_secs(4);
/// After Postgres is back, outcomes the workers could not write back meanwhile are re-sent
/// for about this long (reconnects, retries of the write-back's backoff).
const PG_RESTART_GRACE: Duration = Duration::from_secs(15);

/// The faults queued in turn (`--fault-one-in`); the sandbox takes one per `/events` request.
fn faults() -> Vec<(&'static str, Fault)> {
    vec![
        ("HTTP 500", Fault::ServerError(500)),
        (
            "throttled (code 4)",
            Fault::Throttle {
                code: 4,
                subcode: None,
                regain_minutes: None,
            },
        ),
        ("HTTP 503", Fault::ServerError(503)),
        ("hang past the client's timeout", Fault::Timeout(HANG)),
        ("502 HTML from a proxy", Fault::HtmlError),
        (
            "batch rejected for an event (2804001)",
            Fault::Reject {
                http: 400,
                code: 100,
                subcode: Some(2_804_001),
                message: "Invalid parameter".to_owned(),
            },
        ),
        ("503 + Retry-After: 1", Fault::RetryAfter { seconds: 1 }),
        ("unknown error (code 1)", Fault::Transient),
    ]
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    if args.changes < 1 || args.chunk < 1 || args.rate < 1 || args.workers < 1 {
        bail!("--changes, --chunk, --rate and --workers must be at least 1");
    }
    // Its own cluster, always: the run restarts it, and a server someone else uses (the
    // machine's, a DATABASE_URL) must never be restarted.
    let mut pg = LocalPostgres::start_throwaway(true).await?;
    let url = pg.create_database("stagecast_chaos").await?;
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(pg.admin_url())
        .await?;
    sqlx::query(include_str!("../../sql/bench/chaos_durable_commits.sql"))
        .execute(&admin)
        .await?;
    admin.close().await;
    println!("stagecast bench chaos on {}", pg.describe());
    let logs = std::env::temp_dir().join(format!("stagecast-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let result = tokio::select! {
        r = chaos(&mut pg, &url, &logs, &args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    match &result {
        Ok(()) if !args.keep_logs => {
            let _ = std::fs::remove_dir_all(&logs);
        }
        _ => println!("worker logs: {}", logs.display()),
    }
    // Dropping `pg` stops the cluster and deletes it; the workers were killed on drop.
    result
}

/// What the harness did and when, for the analysis.
#[derive(Default)]
struct Timeline {
    /// Process (partner_agent) → when it was sent SIGKILL.
    kills: HashMap<String, DateTime<Utc>>,
    /// Process → when it was found exited without being killed.
    exits: HashMap<String, DateTime<Utc>>,
    /// Postgres down → up again.
    pg_restart: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

async fn chaos(
    pg: &mut LocalPostgres,
    url: &str,
    logs: &Path,
    args: &ChaosArgs,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    let store = Store::new(pool.clone());
    store.migrate().await?;
    let key_entry = KeyRing::generate_key_entry("chaos")?;
    let keys = KeyRing::parse(&key_entry)?;
    seed(&pool, &keys, args.changes).await?;

    let sandbox = MetaGraphSandbox::start().await?;
    sandbox.add_pixel(PIXEL, TOKEN);
    let mut workers = Workers {
        exe: std::env::current_exe().context("finding the stagecast binary")?,
        env: vec![
            ("DATABASE_URL".into(), url.to_owned()),
            ("STAGECAST_META_GRAPH_URL".into(), sandbox.base_url()),
            ("STAGECAST_KEYS".into(), key_entry),
        ],
        lease: humantime::format_duration(args.lease).to_string(),
        throttle_pause: humantime::format_duration(args.throttle_pause).to_string(),
        batch: args.meta_batch_size.to_string(),
        claim: args.batch_size.to_string(),
        concurrency: args.concurrency.to_string(),
        logs: logs.to_owned(),
        slots: Vec::new(),
        spawned: 0,
        exits_in_a_row: 0,
    };
    for slot in 0..args.workers {
        let w = workers.spawn(slot)?;
        workers.slots.push(w);
    }
    println!(
        "{} stage changes, {} worker processes (one SIGKILLed every {}), one Postgres restart, \
         a fault in one sandbox request in {} (throttle pause {})",
        args.changes,
        args.workers,
        humantime::format_duration(args.kill_every),
        args.fault_one_in,
        humantime::format_duration(args.throttle_pause)
    );

    let committed = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_changes(pool.clone(), args.clone(), committed.clone()));
    let injected = tokio::spawn(inject_faults(
        sandbox.clone(),
        args.fault_one_in,
        args.throttle_spacing(),
        stop.clone(),
    ));

    let mut timeline = Timeline::default();
    let mut next_kill = Instant::now() + args.kill_every;
    let mut next_progress = Instant::now();
    let mut kills = 0_usize;
    let mut writer_done = false;
    let mut converged = true;
    let deadline = started + args.timeout;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Instant::now() > deadline {
            // Report what happened anyway: the counts say where it stands.
            converged = false;
            println!(
                "the queue did not drain within {}; stopping",
                humantime::format_duration(args.timeout)
            );
            break;
        }
        let done = committed.load(Ordering::Relaxed);
        if timeline.pg_restart.is_none() && done >= args.changes / 2 {
            let down = Utc::now();
            println!(
                "[{:>6.1}s] restarting Postgres (SIGQUIT, down for {})",
                started.elapsed().as_secs_f64(),
                humantime::format_duration(args.pg_down_for)
            );
            pg.restart_throwaway(args.pg_down_for).await?;
            timeline.pg_restart = Some((down, Utc::now()));
            println!(
                "[{:>6.1}s] Postgres is back",
                started.elapsed().as_secs_f64()
            );
        }
        workers.replace_exited(&mut timeline)?;
        if Instant::now() >= next_kill && args.kills.is_none_or(|max| kills < max) {
            let slot = kills % args.workers;
            workers.kill(slot, &mut timeline).await?;
            kills += 1;
            next_kill = Instant::now() + args.kill_every;
        }
        if !writer_done && writer.is_finished() {
            writer_done = true;
        }
        if Instant::now() >= next_progress {
            next_progress = Instant::now() + Duration::from_secs(2);
            let requests = sandbox.requests();
            let failed = requests.iter().filter(|r| !r.accepted()).count();
            println!(
                "[{:>6.1}s] committed {done}/{}  accepted {} events in {} requests ({failed} refused)  kills {kills}",
                started.elapsed().as_secs_f64(),
                args.changes,
                sandbox.accepted_events(),
                requests.len(),
            );
        }
        // Drained: every change committed and no job pending or running. Errors (Postgres
        // restarting) just mean "not yet".
        if writer_done {
            let outstanding: Result<(i64, i64), _> =
                sqlx::query_as(include_str!("../../sql/bench/chaos_outstanding.sql"))
                    .fetch_one(&pool)
                    .await;
            if let Ok((0, _)) = outstanding {
                break;
            }
        }
    }
    if converged {
        writer.await??;
    } else {
        writer.abort();
    }
    stop.store(true, Ordering::Relaxed);
    let injected = injected.await?;
    workers.stop_all().await;
    let elapsed = started.elapsed();
    let verdict = report(&pool, &sandbox, &timeline, &injected, kills, elapsed, args).await;
    if !converged {
        let (outstanding, _): (i64, i64) =
            sqlx::query_as(include_str!("../../sql/bench/chaos_outstanding.sql"))
                .fetch_one(&pool)
                .await?;
        bail!(
            "the queue did not drain within {} ({outstanding} jobs or parked changes left)",
            humantime::format_duration(args.timeout)
        );
    }
    verdict
}

async fn seed(pool: &PgPool, keys: &KeyRing, customers: i64) -> anyhow::Result<()> {
    sqlx::raw_sql(include_str!("../../sql/bench/seed.sql"))
        .execute(pool)
        .await?;
    sqlx::query(include_str!("../../sql/bench/insert_pixel.sql"))
        .bind(PIXEL)
        .bind(keys.seal(TOKEN))
        .execute(pool)
        .await?;
    sqlx::query(include_str!("../../sql/bench/insert_campaign.sql"))
        .execute(pool)
        .await?;
    sqlx::query(include_str!("../../sql/bench/insert_customers.sql"))
        .bind(customers)
        .execute(pool)
        .await?;
    sqlx::raw_sql(include_str!(
        "../../sql/bench/analyze_all_but_customers.sql"
    ))
    .execute(pool)
    .await?;
    Ok(())
}

/// The CRM: `--chunk` customers per UPDATE, paced at `--rate`. A failed statement (Postgres
/// restarting) is retried until it goes through.
async fn write_changes(
    pool: PgPool,
    args: ChaosArgs,
    committed: Arc<AtomicI64>,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut first = 1_i64;
    while first <= args.changes {
        let last = (first + args.chunk - 1).min(args.changes);
        let mut failures = 0_u32;
        loop {
            let result = sqlx::query(include_str!("../../sql/bench/chaos_move_range.sql"))
                .bind(first)
                .bind(last)
                .bind(2_i64)
                .execute(&pool)
                .await;
            match result {
                Ok(_) => break,
                Err(e) => {
                    failures += 1;
                    if failures > 600 {
                        return Err(e).context("the CRM's UPDATE kept failing");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        committed.store(last, Ordering::Relaxed);
        first = last + 1;
        let due = t0 + Duration::from_secs_f64(last as f64 / args.rate as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    Ok(())
}

/// Keeps the sandbox's fault queue topped up with blocks of one fault and `one_in - 1` passes
/// (the sandbox takes one entry per request, in order); returns how many of each were taken.
///
/// A throttle (`throttling`) is queued only once the previous one was taken at least
/// `throttle_spacing` ago, and otherwise skipped in the rotation: a platform throttles for the
/// rate, and after a pause the rate is low again. Counted in requests, one in 40 throttled
/// whatever the rate, so the first burst after every pause met the next one, the workers'
/// shared streak doubled each pause, and a 100,000-change run sat at the 15 min cap.
async fn inject_faults(
    sandbox: MetaGraphSandbox,
    one_in: usize,
    throttle_spacing: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<(&'static str, usize)> {
    let faults = faults();
    let mut counts: Vec<(&'static str, usize)> = faults.iter().map(|(l, _)| (*l, 0)).collect();
    if one_in == 0 {
        return counts;
    }
    let mut next = 0;
    // Entries pushed so far; pushed − pending is how many the sandbox has taken.
    let mut pushed = 0_usize;
    // The last throttle queued: its position in the queue, and when it was seen taken.
    let mut throttle_at: Option<usize> = None;
    let mut throttle_taken: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let pending = sandbox.pending_faults();
        if let Some(at) = throttle_at {
            if pushed - pending > at {
                throttle_taken = Some(Instant::now());
                throttle_at = None;
            }
        }
        if pending < one_in {
            let throttle_allowed = throttle_at.is_none()
                && throttle_taken.is_none_or(|t| t.elapsed() >= throttle_spacing);
            let mut i = next % faults.len();
            while is_throttle(&faults[i].1) && !throttle_allowed {
                next += 1;
                i = next % faults.len();
            }
            if is_throttle(&faults[i].1) {
                throttle_at = Some(pushed);
            }
            sandbox.push_fault(faults[i].1.clone());
            for _ in 1..one_in {
                sandbox.push_fault(Fault::Pass);
            }
            pushed += one_in;
            next += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // What the requests took, from the record (a block queued last may be left).
    for r in sandbox.requests() {
        if let Some(f) = r.fault.as_ref().filter(|f| **f != Fault::Pass) {
            if let Some(i) = faults.iter().position(|(_, g)| g == f) {
                counts[i].1 += 1;
            }
        }
    }
    counts
}

/// The faults a worker answers with a pause of the pixel (and a step of its shared streak).
fn is_throttle(f: &Fault) -> bool {
    matches!(f, Fault::Throttle { .. } | Fault::RetryAfter { .. })
}

struct Worker {
    child: Child,
    agent: String,
}

struct Workers {
    exe: PathBuf,
    env: Vec<(String, String)>,
    lease: String,
    throttle_pause: String,
    batch: String,
    claim: String,
    concurrency: String,
    logs: PathBuf,
    slots: Vec<Worker>,
    spawned: usize,
    /// Workers in a row that exited by themselves: a worker that cannot start (bad settings)
    /// would otherwise be restarted forever.
    exits_in_a_row: usize,
}

impl Workers {
    /// A `stagecast run` process with a cleared environment (as the tests start them: nothing
    /// of the caller's `DATABASE_URL`, `SENTRY_DSN` or proxies leaks in) and its own
    /// partner_agent, `chaos-<slot>-<n>`.
    fn spawn(&mut self, slot: usize) -> anyhow::Result<Worker> {
        self.spawned += 1;
        let agent = format!("chaos-{slot}-{}", self.spawned);
        let log = std::fs::File::create(self.logs.join(format!("{agent}.log")))?;
        let mut cmd = Command::new(&self.exe);
        cmd.env_clear();
        for name in ["PATH", "HOME", "TMPDIR"] {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        cmd.env("NO_PROXY", "localhost,127.0.0.0/8,::1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["--log", "warn", "run", "--metrics-addr", ""])
            .args([
                "--poll-interval",
                "100ms",
                "--retry-base",
                "100ms",
                "--retry-cap",
                "1s",
            ])
            .args(["--lease", &self.lease, "--meta-timeout", META_TIMEOUT])
            // Unused platforms, but their timeouts must fit the short lease too.
            .args([
                "--tiktok-timeout",
                META_TIMEOUT,
                "--google-ads-timeout",
                "1s",
            ])
            .args(["--drain-timeout", "5s", "--meta-partner-agent", &agent])
            .args(["--throttle-pause", &self.throttle_pause])
            .args([
                "--meta-batch-size",
                &self.batch,
                "--batch-size",
                &self.claim,
            ])
            .args(["--concurrency", &self.concurrency])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd.spawn().context("starting stagecast run")?;
        Ok(Worker { child, agent })
    }

    async fn kill(&mut self, slot: usize, timeline: &mut Timeline) -> anyhow::Result<()> {
        let at = Utc::now();
        let w = &mut self.slots[slot];
        // SIGKILL: the process gets no chance to finish or release anything.
        let _ = w.child.start_kill();
        let _ = w.child.wait().await;
        timeline.kills.insert(w.agent.clone(), at);
        self.exits_in_a_row = 0;
        self.slots[slot] = self.spawn(slot)?;
        Ok(())
    }

    /// A worker that exited by itself (it should not) is replaced, and its exit noted.
    fn replace_exited(&mut self, timeline: &mut Timeline) -> anyhow::Result<()> {
        for slot in 0..self.slots.len() {
            if let Ok(Some(status)) = self.slots[slot].child.try_wait() {
                let agent = self.slots[slot].agent.clone();
                println!("  worker {agent} exited by itself ({status}); replaced");
                self.exits_in_a_row += 1;
                if self.exits_in_a_row >= 5 {
                    let log = std::fs::read_to_string(self.logs.join(format!("{agent}.log")))
                        .unwrap_or_default();
                    bail!("5 workers in a row exited by themselves; the last one said:\n{log}");
                }
                timeline.exits.insert(agent, Utc::now());
                self.slots[slot] = self.spawn(slot)?;
            }
        }
        Ok(())
    }

    /// SIGTERM (a graceful stop) to every worker, then wait; SIGKILL after 20 s.
    async fn stop_all(&mut self) {
        for w in &self.slots {
            if let Some(pid) = w.child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for w in &mut self.slots {
            if tokio::time::timeout(Duration::from_secs(20), w.child.wait())
                .await
                .is_err()
            {
                let _ = w.child.start_kill();
                let _ = w.child.wait().await;
            }
        }
    }
}

/// Why an event id was accepted again, judged by the request that carried its previous copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Resend {
    InFlightAtKill,
    AnsweredThenKilled,
    ExitedByItself,
    Hang,
    PostgresRestart,
    SameRequest,
    Unexplained,
}

impl Resend {
    fn label(self) -> &'static str {
        match self {
            Resend::InFlightAtKill => "from a request in flight at a kill",
            Resend::AnsweredThenKilled => {
                "answered, then the process was killed before writing the outcome back"
            }
            Resend::ExitedByItself => "its process exited by itself",
            Resend::Hang => "the answer was held past the client's timeout (hang fault)",
            Resend::PostgresRestart => "answered while Postgres was restarting",
            Resend::SameRequest => "twice in one request",
            Resend::Unexplained => "unexplained",
        }
    }
}

fn classify(prev: &RequestRecord, same_request: bool, timeline: &Timeline) -> Resend {
    if same_request {
        return Resend::SameRequest;
    }
    // Before the kills: a client that timed out re-sends whatever happens to it later.
    if prev.outcome_unknown_to_client {
        return Resend::Hang;
    }
    let agent = prev.partner_agent.as_deref().unwrap_or("");
    if let Some(&killed) = timeline.kills.get(agent) {
        return match prev.answered_at {
            Some(answered) if answered < killed => Resend::AnsweredThenKilled,
            _ if prev.received_at <= killed => Resend::InFlightAtKill,
            // Cannot happen: the process was dead before the request arrived.
            _ => Resend::Unexplained,
        };
    }
    if timeline.exits.contains_key(agent) {
        return Resend::ExitedByItself;
    }
    if let (Some((down, up)), Some(answered)) = (timeline.pg_restart, prev.answered_at) {
        let grace = chrono::Duration::from_std(PG_RESTART_GRACE).unwrap_or_default();
        if answered >= down && answered <= up + grace {
            return Resend::PostgresRestart;
        }
    }
    Resend::Unexplained
}

/// The external_id values of an event (a string or a list of strings).
fn external_ids(event: &serde_json::Value) -> Vec<String> {
    match event.pointer("/user_data/external_id") {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

async fn report(
    pool: &PgPool,
    sandbox: &MetaGraphSandbox,
    timeline: &Timeline,
    injected: &[(&'static str, usize)],
    kills: usize,
    elapsed: Duration,
    args: &ChaosArgs,
) -> anyhow::Result<()> {
    // Which customer an event stands for, from its hashed external_id (the customer id).
    let normalizer = Normalizer::new("BR")?;
    let mut customer_of = HashMap::with_capacity(args.changes as usize);
    for c in 1..=args.changes {
        customer_of.insert(normalizer.external_id(&c.to_string())?.into_string(), c);
    }
    let mut ids_of: HashMap<i64, HashSet<String>> = HashMap::new();
    let mut copies: HashMap<String, usize> = HashMap::new();
    let mut unknown = 0_usize;
    for received in sandbox.received() {
        let event_id = received
            .event
            .get("event_id")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        let customers: Vec<i64> = external_ids(&received.event)
            .iter()
            .filter_map(|h| customer_of.get(h).copied())
            .collect();
        if customers.is_empty() {
            unknown += 1;
        }
        for c in customers {
            ids_of.entry(c).or_default().insert(event_id.clone());
        }
        *copies.entry(event_id).or_default() += 1;
    }
    let rejected: HashSet<i64> =
        sqlx::query_scalar(include_str!("../../sql/bench/chaos_rejected_customers.sql"))
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let lost_ids: Vec<i64> = (1..=args.changes)
        .filter(|c| !ids_of.contains_key(c) && !rejected.contains(c))
        .collect();
    let rejected_alone = (1..=args.changes)
        .filter(|c| !ids_of.contains_key(c) && rejected.contains(c))
        .count();
    let lost = lost_ids.len();
    let new_ids = ids_of.values().filter(|ids| ids.len() > 1).count();

    // Each re-send, judged by the accepted request that carried the copy before it.
    let requests = sandbox.requests();
    let mut last_seen: HashMap<&str, usize> = HashMap::new();
    let mut resends: HashMap<Resend, usize> = HashMap::new();
    let mut examples: Vec<String> = Vec::new();
    for (i, r) in requests.iter().enumerate().filter(|(_, r)| r.accepted()) {
        for id in &r.event_ids {
            if copies.get(id).copied().unwrap_or(0) < 2 {
                continue;
            }
            if let Some(prev) = last_seen.insert(id.as_str(), i) {
                let why = classify(&requests[prev], prev == i, timeline);
                *resends.entry(why).or_default() += 1;
                if why == Resend::Unexplained && examples.len() < 5 {
                    let p = &requests[prev];
                    examples.push(format!(
                        "{id}: first by {:?} at {} (answered {:?}), again by {:?} at {}",
                        p.partner_agent,
                        p.received_at,
                        p.answered_at,
                        r.partner_agent,
                        r.received_at
                    ));
                }
            }
        }
    }
    let total_resends: usize = resends.values().sum();
    let refused = requests.iter().filter(|r| !r.accepted()).count();
    let failed: Vec<(String, i64)> =
        sqlx::query_as(include_str!("../../sql/bench/chaos_failed_jobs.sql"))
            .fetch_all(pool)
            .await?;

    println!("\nChaos run ({:.1} s):", elapsed.as_secs_f64());
    println!(
        "  {} stage changes, {} worker processes, {kills} kills (SIGKILL), {} exited by themselves, Postgres restarted {}",
        args.changes,
        args.workers,
        timeline.exits.len(),
        match timeline.pg_restart {
            Some((down, up)) => format!("once (down {:.1} s)", (up - down).as_seconds_f64()),
            None => "never".to_owned(),
        }
    );
    let faults: usize = injected.iter().map(|(_, n)| n).sum();
    println!(
        "  {} requests, {refused} refused; {faults} faults injected:",
        requests.len()
    );
    for (label, n) in injected {
        println!("    {n:>6}  {label}");
    }
    let line = |label: &str, n: usize, note: &str| println!("  {label:<54}{n:>8}{note}");
    line(
        "events lost (a stage change with no accepted event)",
        lost,
        "   (must be 0)",
    );
    line("events sent under a new id", new_ids, "   (must be 0)");
    if rejected_alone > 0 {
        line(
            "failed: an injected rejection met a request of 1 event",
            rejected_alone,
            "   (as Meta would fail a bad event)",
        );
    }
    if unknown > 0 {
        line(
            "accepted events of no stage change of this run",
            unknown,
            "",
        );
    }
    line("re-sends (an event id accepted again)", total_resends, "");
    let mut kinds: Vec<_> = resends.into_iter().collect();
    kinds.sort();
    for (why, n) in kinds {
        println!("    {n:>6}  {}", why.label());
    }
    for e in examples {
        println!("      {e}");
    }
    for (error, jobs) in &failed {
        println!("  failed jobs: {jobs} with {error}");
    }
    let moved: i64 = sqlx::query_scalar(include_str!("../../sql/bench/chaos_moved_count.sql"))
        .bind(2_i64)
        .fetch_one(pool)
        .await?;
    if moved != args.changes {
        println!(
            "  the database kept {moved} of the CRM's {} committed changes",
            args.changes
        );
    }
    let (_, lost_enqueues): (i64, i64) =
        sqlx::query_as(include_str!("../../sql/bench/chaos_outstanding.sql"))
            .fetch_one(pool)
            .await?;
    if lost_enqueues > 0 {
        println!(
            "  changes the trigger could not queue (stagecast.lost_enqueues()): {lost_enqueues}"
        );
    }
    if lost > 0 {
        println!("  lost customers: {}", ranges(&lost_ids));
    }
    if lost > 0 || new_ids > 0 {
        bail!("{lost} events lost and {new_ids} sent under a new id");
    }
    Ok(())
}

/// `1-250, 751-1000` for sorted ids (at most 20 ranges).
fn ranges(ids: &[i64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() && out.len() < 20 {
        let start = ids[i];
        while i + 1 < ids.len() && ids[i + 1] == ids[i] + 1 {
            i += 1;
        }
        out.push(if start == ids[i] {
            start.to_string()
        } else {
            format!("{start}-{}", ids[i])
        });
        i += 1;
    }
    if i < ids.len() {
        out.push("…".to_owned());
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_547_200 + secs, 0).expect("a valid time")
    }

    fn request(agent: &str, received: i64, answered: Option<i64>) -> RequestRecord {
        RequestRecord {
            version: "v21.0".into(),
            pixel_id: PIXEL.into(),
            event_count: 1,
            event_ids: vec!["e".into()],
            status: 200,
            error_code: None,
            error_subcode: None,
            auth: None,
            fault: None,
            outcome_unknown_to_client: false,
            received_at: at(received),
            in_flight_at_arrival: 0,
            answered_at: answered.map(at),
            partner_agent: Some(agent.into()),
        }
    }

    #[test]
    fn a_re_send_is_blamed_on_what_happened_to_the_previous_copy() {
        let mut timeline = Timeline::default();
        timeline.kills.insert("chaos-0-1".into(), at(10));
        timeline.exits.insert("chaos-1-2".into(), at(10));
        timeline.pg_restart = Some((at(100), at(103)));
        let killed = |received, answered| {
            classify(&request("chaos-0-1", received, answered), false, &timeline)
        };
        assert_eq!(killed(9, None), Resend::InFlightAtKill);
        assert_eq!(killed(9, Some(11)), Resend::InFlightAtKill);
        assert_eq!(killed(8, Some(9)), Resend::AnsweredThenKilled);
        assert_eq!(
            classify(&request("chaos-1-2", 9, Some(9)), false, &timeline),
            Resend::ExitedByItself
        );
        let mut hang = request("chaos-0-1", 9, Some(13));
        hang.outcome_unknown_to_client = true;
        assert_eq!(classify(&hang, false, &timeline), Resend::Hang);
        let survivor = |answered| classify(&request("chaos-2-3", 99, answered), false, &timeline);
        assert_eq!(survivor(Some(101)), Resend::PostgresRestart);
        assert_eq!(survivor(Some(110)), Resend::PostgresRestart);
        assert_eq!(survivor(Some(200)), Resend::Unexplained);
        assert_eq!(survivor(None), Resend::Unexplained);
        assert_eq!(
            classify(&request("chaos-2-3", 1, Some(1)), true, &timeline),
            Resend::SameRequest
        );
    }

    #[test]
    fn lost_customers_print_as_ranges() {
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
        assert_eq!(ranges(&[]), "");
        let many: Vec<i64> = (0..50).map(|i| i * 2).collect();
        assert!(ranges(&many).ends_with(", …"));
    }

    #[test]
    fn external_ids_are_read_as_a_string_or_a_list() {
        let one = serde_json::json!({"user_data": {"external_id": "a"}});
        let two = serde_json::json!({"user_data": {"external_id": ["a", "b"]}});
        assert_eq!(external_ids(&one), ["a"]);
        assert_eq!(external_ids(&two), ["a", "b"]);
        assert!(external_ids(&serde_json::json!({})).is_empty());
    }
}
