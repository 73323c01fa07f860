//! `stagecast jobs list | show | replay | cancel`: what an admin needs after a failure (a
//! revoked token, a pixel switched off, a stage misconfigured): see which jobs failed and why,
//! fix the cause, replay them.
//!
//! Replay and cancel go through the SQL functions a CRM admin screen calls
//! (`stagecast.replay_job`, `replay_jobs`, `cancel_job`, `cancel_jobs`), so validation, the
//! rules (a done job is never replayed) and the audit row are the same on both paths. See
//! docs/operations.md, "Admin: inspecting and replaying jobs".

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{presets, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::postgres::PgConnectOptions;

use super::DatabaseArgs;
use crate::platforms::Platform;
use crate::store::admin::{AdminError, BulkAction, JobDetail, JobFilter, JobStatus, JobSummary};
use crate::store::Store;

/// A replay or cancel by filter that would change more jobs than this asks first (or wants
/// `--yes`): a filter typed a little too wide should not re-send a month of failures.
const CONFIRM_ABOVE: i32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("could not connect to the database at {url} (check DATABASE_URL and that Postgres is running): {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("not confirmed: nothing was changed")]
    NotConfirmed,
    #[error("{failed} of {total} jobs could not be {action} (see above)")]
    SomeFailed {
        failed: usize,
        total: usize,
        action: &'static str,
    },
    #[error("could not write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("could not encode the JSON output: {0}")]
    Json(#[from] serde_json::Error),
}

type Result<T, E = JobsError> = std::result::Result<T, E>;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first: live ones, and done ones from the archive.
    List(ListArgs),
    /// One job: its state, every delivery attempt with Meta's answer, its alerts, admin actions.
    Show(ShowArgs),
    /// Re-queue failed or cancelled jobs, by id or by filter (done jobs are never replayed).
    Replay(ActionArgs),
    /// Cancel pending, failed or running jobs, by id or by filter.
    Cancel(ActionArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListStatus {
    Pending,
    Running,
    Failed,
    Cancelled,
    /// Done jobs, from the archive (kept for STAGECAST_RETENTION_DONE).
    Done,
    /// Every status (the default).
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionStatus {
    Pending,
    Running,
    Failed,
    Cancelled,
    Done,
}

impl From<ActionStatus> for JobStatus {
    fn from(s: ActionStatus) -> Self {
        match s {
            ActionStatus::Pending => JobStatus::Pending,
            ActionStatus::Running => JobStatus::Running,
            ActionStatus::Failed => JobStatus::Failed,
            ActionStatus::Cancelled => JobStatus::Cancelled,
            ActionStatus::Done => JobStatus::Done,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct FilterArgs {
    /// Only jobs of this kind: stage_change, stage_change_batch, attribution.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only jobs for this pixel: its Meta pixel id, or a destination such as facebook:<pixel id>.
    /// A job gets its destinations when a worker resolves it, so one that never ran matches none.
    #[arg(long)]
    pub pixel: Option<String>,
    /// Only jobs of this customer id.
    #[arg(long = "customer", value_name = "ID")]
    pub customer_id: Option<i64>,
    /// Only jobs queued since: a date (2026-11-01, UTC midnight), an RFC 3339 time
    /// (2026-11-01T09:00:00-03:00), or a duration ago (2h, 7days).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
}

impl FilterArgs {
    fn to_filter(&self) -> JobFilter {
        JobFilter {
            kind: self.kind.clone(),
            pixel: self.pixel.clone(),
            customer_id: self.customer_id,
            since: self.since,
        }
    }

    fn is_empty(&self) -> bool {
        self.kind.is_none()
            && self.pixel.is_none()
            && self.customer_id.is_none()
            && self.since.is_none()
    }
}

#[derive(Debug, Args, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Only jobs in this status.
    #[arg(long, value_enum)]
    pub status: Option<ListStatus>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many jobs.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    /// One JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ShowArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The job id.
    pub id: i64,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ActionArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Job ids. Leave out to act on every job matching the filter options instead.
    #[arg(value_name = "ID", conflicts_with_all = ["status", "kind", "pixel", "customer_id", "since", "limit"])]
    pub ids: Vec<i64>,
    /// With a filter: the status of the jobs to act on. Replay takes failed (default) or
    /// cancelled; cancel takes pending (default), failed or running.
    #[arg(long, value_enum)]
    pub status: Option<ActionStatus>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// With a filter: act on at most this many jobs (oldest first).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub limit: Option<i32>,
    /// Why; kept in stagecast.admin_audit. Required with a filter.
    #[arg(long)]
    pub reason: Option<String>,
    /// Who is asking; kept in stagecast.admin_audit. Defaults to $USER.
    #[arg(long)]
    pub actor: Option<String>,
    /// Print what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation when a filter matches more than 100 jobs.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// With a filter: jobs per call. Each call is one short transaction and one audit row, so
    /// a large replay never holds many locks, and its progress shows.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub chunk_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Replay,
    Cancel,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Replay => "replay",
            Action::Cancel => "cancel",
        }
    }

    fn default_status(self) -> JobStatus {
        match self {
            Action::Replay => JobStatus::Failed,
            Action::Cancel => JobStatus::Pending,
        }
    }
}

pub async fn run(cmd: JobsCommand) -> Result<()> {
    match cmd {
        JobsCommand::List(args) => list(args).await,
        JobsCommand::Show(args) => show(args).await,
        JobsCommand::Replay(args) => act(Action::Replay, args).await,
        JobsCommand::Cancel(args) => act(Action::Cancel, args).await,
    }
}

async fn connect(db: &DatabaseArgs) -> Result<Store> {
    let failed = |source| JobsError::Connect {
        url: crate::local_pg::redact_url(&db.database_url),
        source,
    };
    // The functions' NOTICEs ("job 42 is already cancelled") are for psql users: this command
    // reports every outcome itself, and sqlx would repeat them as INFO log lines.
    let options = PgConnectOptions::from_str(&db.database_url)
        .map_err(failed)?
        .options([("client_min_messages", "warning")]);
    let pool = crate::store::pool_options()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(failed)?;
    Ok(Store::new(pool))
}

async fn list(args: ListArgs) -> Result<()> {
    let store = connect(&args.db).await?;
    let statuses: Option<Vec<JobStatus>> = match args.status {
        None | Some(ListStatus::All) => None,
        Some(ListStatus::Pending) => Some(vec![JobStatus::Pending]),
        Some(ListStatus::Running) => Some(vec![JobStatus::Running]),
        Some(ListStatus::Failed) => Some(vec![JobStatus::Failed]),
        Some(ListStatus::Cancelled) => Some(vec![JobStatus::Cancelled]),
        Some(ListStatus::Done) => Some(vec![JobStatus::Done]),
    };
    let jobs = store
        .list_jobs(statuses.as_deref(), &args.filter.to_filter(), args.limit)
        .await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &jobs)?;
        writeln!(out)?;
    } else if jobs.is_empty() {
        eprintln!("no job matches");
    } else {
        writeln!(out, "{}", render_table(&jobs))?;
        if jobs.len() as i64 == args.limit {
            eprintln!("(the {} newest shown; --limit for more)", args.limit);
        }
    }
    Ok(())
}

async fn show(args: ShowArgs) -> Result<()> {
    let store = connect(&args.db).await?;
    let detail = store
        .show_job(args.id)
        .await?
        .ok_or(AdminError::NotFound(args.id))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &detail)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render_detail(&detail))?;
    }
    Ok(())
}

async fn act(action: Action, args: ActionArgs) -> Result<()> {
    let actor = resolve_actor(args.actor.as_deref(), |k| std::env::var(k).ok())?;
    let reason = args
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let store = connect(&args.db).await?;
    if !args.ids.is_empty() {
        return act_on_ids(&store, action, &args.ids, &actor, reason, args.dry_run).await;
    }
    if args.status.is_none() && args.filter.is_empty() {
        return Err(JobsError::Usage(format!(
            "give job ids, or a filter (--status, --kind, --pixel, --customer, --since), e.g. \
             `stagecast jobs {} --status {} --since 1day --reason \"…\"`",
            action.verb(),
            action.default_status().as_str()
        )));
    }
    if reason.is_none() && !args.dry_run {
        return Err(JobsError::Usage(format!(
            "--reason is required to {} jobs by filter (it is kept in stagecast.admin_audit)",
            action.verb()
        )));
    }
    let status = args
        .status
        .map(JobStatus::from)
        .unwrap_or(action.default_status());
    let filter = args.filter.to_filter();
    let bulk = BulkAction {
        status,
        filter: &filter,
        actor: &actor,
        reason,
        limit: args.limit,
        dry_run: true,
        job_ids: None,
    };
    // The function's own dry run: the same validation and the same eligibility rules.
    let eligible = bulk_call(&store, action, &bulk).await?;
    let snapshot = store
        .matching_job_ids(status, &filter, args.limit.map(i64::from))
        .await?;
    let left_alone = snapshot.len().saturating_sub(eligible.max(0) as usize);
    if args.dry_run {
        println!(
            "{eligible} {} job(s) would be {}",
            status.as_str(),
            past(action)
        );
        if action == Action::Replay && left_alone > 0 {
            println!("{left_alone} more match but would stay as they are: an identical stage change (same customer and stage) is already pending");
        }
        return Ok(());
    }
    if eligible == 0 {
        println!(
            "no {} job matches: nothing to {}",
            status.as_str(),
            action.verb()
        );
        return Ok(());
    }
    if eligible > CONFIRM_ABOVE && !args.yes {
        confirm(&format!(
            "{} {eligible} {} jobs?",
            capitalised(action.verb()),
            status.as_str()
        ))?;
    }
    let chunk = args.chunk_size as usize;
    let bar = progress_bar(snapshot.len(), chunk, action);
    let mut changed: i64 = 0;
    for ids in snapshot.chunks(chunk) {
        let chunk_action = BulkAction {
            dry_run: false,
            limit: None,
            job_ids: Some(ids),
            ..bulk.clone()
        };
        let n = bulk_call(&store, action, &chunk_action).await;
        match n {
            Ok(n) => changed += i64::from(n),
            Err(e) => {
                bar.abandon();
                // Earlier chunks are committed (and audited); say so, so nobody re-runs blind.
                eprintln!(
                    "stopped after {changed} job(s) were {}; the rest are unchanged",
                    past(action)
                );
                return Err(e.into());
            }
        }
        bar.inc(ids.len() as u64);
    }
    bar.finish_and_clear();
    println!("{changed} job(s) {}", past(action));
    let unchanged = snapshot.len() as i64 - changed;
    if unchanged > 0 {
        println!(
            "{unchanged} matching job(s) left as they were: {}",
            match action {
                Action::Replay =>
                    "an identical stage change (same customer and stage) is already pending, or they changed meanwhile",
                Action::Cancel => "they changed meanwhile (a worker was finishing them); run again to catch any still live",
            }
        );
    }
    Ok(())
}

async fn bulk_call(store: &Store, action: Action, a: &BulkAction<'_>) -> Result<i32, AdminError> {
    match action {
        Action::Replay => store.replay_jobs(a).await,
        Action::Cancel => store.cancel_jobs(a).await,
    }
}

async fn act_on_ids(
    store: &Store,
    action: Action,
    ids: &[i64],
    actor: &str,
    reason: Option<&str>,
    dry_run: bool,
) -> Result<()> {
    let mut failed = 0;
    let mut last_error = None;
    for &id in ids {
        let outcome = if dry_run {
            predict(store, action, id, actor).await
        } else {
            let changed = match action {
                Action::Replay => store.replay_job(id, actor, reason).await,
                Action::Cancel => store.cancel_job(id, actor, reason).await,
            };
            changed.map(|changed| match (action, changed) {
                (Action::Replay, true) => {
                    format!("job {id} replayed: pending again, with a fresh attempt budget")
                }
                (Action::Replay, false) => {
                    format!("job {id} is already pending or running: nothing to replay")
                }
                (Action::Cancel, true) => format!("job {id} cancelled"),
                (Action::Cancel, false) => {
                    format!("job {id} is already cancelled or done: nothing to cancel")
                }
            })
        };
        match outcome {
            Ok(line) => println!("{line}"),
            Err(e) if ids.len() == 1 => return Err(e.into()),
            Err(e) => {
                match e {
                    // These name the job already.
                    AdminError::NotFound(_) | AdminError::Refused { .. } => eprintln!("error: {e}"),
                    _ => eprintln!("error: job {id}: {e}"),
                }
                failed += 1;
                last_error = Some(e);
            }
        }
    }
    match last_error {
        None => Ok(()),
        Some(_) => Err(JobsError::SomeFailed {
            failed,
            total: ids.len(),
            action: past(action),
        }),
    }
}

/// What a replay or cancel of this job would do, without doing it.
async fn predict(
    store: &Store,
    action: Action,
    id: i64,
    actor: &str,
) -> Result<String, AdminError> {
    let detail = store.show_job(id).await?.ok_or(AdminError::NotFound(id))?;
    let status = detail.job.status.as_str();
    Ok(match (action, status) {
        (Action::Replay, "failed" | "cancelled") => {
            let filter = JobFilter::default();
            let status = if status == "failed" {
                JobStatus::Failed
            } else {
                JobStatus::Cancelled
            };
            let ids = [id];
            let n = store
                .replay_jobs(&BulkAction {
                    status,
                    filter: &filter,
                    actor,
                    reason: None,
                    limit: None,
                    dry_run: true,
                    job_ids: Some(&ids),
                })
                .await?;
            if n == 1 {
                format!("job {id} ({}) would be replayed", status.as_str())
            } else {
                format!("job {id} would be refused: an identical stage change is already pending")
            }
        }
        (Action::Replay, "pending" | "running") => {
            format!("job {id} is already {status}: nothing to replay")
        }
        (Action::Replay, _) => format!(
            "job {id} is {status} and would be refused: done jobs are never replayed (their events were delivered)"
        ),
        (Action::Cancel, "pending" | "failed" | "running") => {
            format!("job {id} ({status}) would be cancelled")
        }
        (Action::Cancel, _) => format!("job {id} is already {status}: nothing to cancel"),
    })
}

fn past(action: Action) -> &'static str {
    match action {
        Action::Replay => "replayed",
        Action::Cancel => "cancelled",
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `--actor`, else `$USER`, else `$LOGNAME`, else the OS account running the command (containers
/// often set no `$USER`): the audit must say who asked.
/// The account name of this process's uid, from /etc/passwd (no libc binding needed for this).
fn os_user() -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").ok()?.uid();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let uid_field = f.nth(1)?;
            (uid_field.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
    }
    #[cfg(not(unix))]
    {
        None
    }
}

fn resolve_actor(given: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Result<String> {
    given
        .map(str::to_string)
        .or_else(|| env("USER"))
        .or_else(|| env("LOGNAME"))
        .or_else(|| {
            env("__STAGECAST_NO_OS_USER")
                .is_none()
                .then(os_user)
                .flatten()
        })
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            JobsError::Usage(
                "give --actor (who is asking, kept in stagecast.admin_audit): $USER is not set"
                    .into(),
            )
        })
}

fn confirm(question: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(JobsError::Usage(format!(
            "{question} Not confirmed: standard input is not a terminal (pass --yes)"
        )));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(JobsError::NotConfirmed),
    }
}

/// Shown only when the work takes more than one call; indicatif hides it by itself when
/// standard error is not a terminal, so scripts and logs get just the summary line.
fn progress_bar(total: usize, chunk: usize, action: Action) -> ProgressBar {
    if total <= chunk {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} jobs ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(match action {
        Action::Replay => "replaying",
        Action::Cancel => "cancelling",
    });
    bar
}

/// `--since`: a date (UTC midnight), a date and time (UTC unless it carries an offset), or a
/// duration ago (`2h`, `7days`, `90min ago`).
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    parse_since_at(s, Utc::now())
}

fn parse_since_at(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let ago = s.strip_suffix("ago").unwrap_or(s).trim();
    if let Ok(d) = humantime::parse_duration(ago) {
        return chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| format!("{s:?} reaches too far back"));
    }
    Err(format!(
        "{s:?} is neither a date (2026-11-01), a time (2026-11-01T09:00:00-03:00) nor a duration ago (2h, 7days)"
    ))
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// First `max` characters on one line, with an ellipsis if cut.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn render_table(jobs: &[JobSummary]) -> String {
    let mut table = Table::new();
    // Borderless, space-aligned columns: readable, and still easy to grep and cut.
    table.load_preset(presets::NOTHING);
    table.set_header([
        "ID",
        "KIND",
        "STATUS",
        "ATTEMPTS",
        "CUSTOMER",
        "DESTINATIONS",
        "CREATED (UTC)",
        "LAST ERROR / NOTE",
    ]);
    for j in jobs {
        let attempts = match j.max_attempts {
            Some(max) => format!("{}/{max}", j.attempts),
            None => j.attempts.to_string(),
        };
        let info = j.last_error.as_deref().or(j.note.as_deref()).unwrap_or("");
        table.add_row([
            j.id.to_string(),
            j.kind.clone(),
            j.status.clone(),
            attempts,
            j.customer_id.map(|c| c.to_string()).unwrap_or_default(),
            j.destinations
                .as_ref()
                .map(|d| d.join(","))
                .unwrap_or_default(),
            ts(j.created_at),
            one_line(info, 80),
        ]);
    }
    // The preset pads every cell by one space on each side: drop the margin and the
    // trailing blanks so lines start at the id and end at their last character.
    table
        .to_string()
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_detail(d: &JobDetail) -> String {
    let j = &d.job;
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "  {name:<13} {value}");
    };
    let opt_ts = |t: Option<DateTime<Utc>>| t.map(|t| format!("{} UTC", ts(t)));
    let mut header = String::new();
    let _ = writeln!(header, "job {}  {}  {}", j.id, j.kind, j.status);
    let attempts = match (j.max_attempts, j.attempt_budget) {
        (Some(max), Some(budget)) => {
            format!("{} of {max} ({budget} per run; replayed)", j.attempts)
        }
        (Some(max), None) => format!("{} of {max}", j.attempts),
        (None, _) => j.attempts.to_string(),
    };
    field("attempts", attempts);
    if let Some(c) = j.customer_id {
        field("customer", c.to_string());
    }
    if let Some(dest) = &j.destinations {
        field("destinations", dest.join(", "));
    }
    field("created", format!("{} UTC", ts(j.created_at)));
    if let (Some(run_at), true) = (j.run_at, j.status == "pending") {
        field("run at", format!("{} UTC", ts(run_at)));
    }
    if let Some(t) = opt_ts(j.finished_at) {
        field("finished", t);
    }
    if let Some(worker) = &j.locked_by {
        let until = opt_ts(j.locked_until).unwrap_or_default();
        field("leased by", format!("{worker} until {until}"));
    }
    if let Some(key) = &j.dedup_key {
        field("dedup key", key.clone());
    }
    if let Some(e) = &j.last_error {
        field("last error", e.clone());
    }
    if let Some(n) = &j.note {
        field("note", n.clone());
    }
    field("payload", j.payload.to_string());
    let mut out = header + &out;

    let _ = writeln!(out, "\ndeliveries ({})", d.deliveries.len());
    if d.deliveries.is_empty() {
        let _ = writeln!(out, "  none recorded");
    }
    for a in &d.deliveries {
        let _ = writeln!(
            out,
            "  attempt {}  {} UTC  {} → {}:{}  {}",
            a.attempt,
            ts(a.created_at),
            a.event_name,
            a.platform,
            a.destination,
            a.outcome
        );
        let mut facts = Vec::new();
        if let Some(s) = a.http_status {
            facts.push(format!("http {s}"));
        }
        if a.error_code.is_some() || a.error_subcode.is_some() {
            let subcode = a.error_subcode.map(|v| v.to_string());
            facts.push(format!(
                "code {}/{}",
                a.error_code.as_deref().unwrap_or("-"),
                subcode.as_deref().unwrap_or("-")
            ));
        }
        if let Some(t) = &a.trace_id {
            // Under the name the platform's support knows it by (Meta: fbtrace_id).
            let name = Platform::parse(&a.platform).map_or("trace_id", Platform::trace_name);
            facts.push(format!("{name} {t}"));
        }
        if let Some(q) = a.match_quality {
            facts.push(format!("match quality {q:.1}"));
        }
        if !facts.is_empty() {
            let _ = writeln!(out, "      {}", facts.join("  "));
        }
        if let Some(e) = &a.error {
            let _ = writeln!(out, "      error     {e}");
        }
        let _ = writeln!(out, "      event_id  {}", a.event_id);
        if let Some(r) = &a.request {
            let _ = writeln!(out, "      sent      {r}");
        }
        if let Some(r) = &a.response {
            let _ = writeln!(out, "      response  {r}");
        }
    }

    let _ = writeln!(out, "\nalerts ({})", d.alerts.len());
    for a in &d.alerts {
        let chat = a
            .chat_message_id
            .map(|m| format!(", chat message {m}"))
            .unwrap_or_else(|| ", not posted: no chat".into());
        let _ = writeln!(
            out,
            "  {} UTC  {} ({}{chat})",
            ts(a.created_at),
            a.cause,
            a.locale
        );
        let _ = writeln!(out, "      {}", one_line(&a.message, 500));
    }

    let _ = writeln!(out, "\nadmin actions ({})", d.admin_actions.len());
    for a in &d.admin_actions {
        let what = if a.filter.is_some() { "a filter" } else { "id" };
        let changed = if a.count == 0 {
            " (changed nothing)".to_string()
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {} UTC  {} by {} (by {what}, database role {}){changed}: {}",
            ts(a.at),
            a.action,
            a.actor,
            a.db_role,
            a.reason.as_deref().unwrap_or("no reason given")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    #[test]
    fn since_accepts_dates_times_and_durations_ago() {
        let at = |y, m, d, h, min| Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap();
        assert_eq!(
            parse_since_at("2026-11-01", now()),
            Ok(at(2026, 11, 1, 0, 0))
        );
        assert_eq!(
            parse_since_at("2026-11-01T09:00:00-03:00", now()),
            Ok(at(2026, 11, 1, 12, 0))
        );
        assert_eq!(
            parse_since_at("2026-11-01 09:30", now()),
            Ok(at(2026, 11, 1, 9, 30))
        );
        assert_eq!(parse_since_at("2h", now()), Ok(at(2026, 11, 24, 10, 0)));
        assert_eq!(
            parse_since_at(" 7days ago ", now()),
            Ok(at(2026, 11, 17, 12, 0))
        );
        let err = parse_since_at("last tuesday", now()).unwrap_err();
        assert!(err.contains("neither a date"), "{err}");
        assert!(parse_since_at("", now()).is_err());
        assert!(parse_since_at("99999999years", now()).is_err());
    }

    #[test]
    fn the_actor_comes_from_the_flag_then_the_environment() {
        let env = |k: &str| (k == "LOGNAME").then(|| "ops".to_string());
        assert_eq!(resolve_actor(Some(" ana "), env).unwrap(), "ana");
        assert_eq!(resolve_actor(None, env).unwrap(), "ops");
        assert!(matches!(
            resolve_actor(Some("  "), |k| (k == "__STAGECAST_NO_OS_USER")
                .then(String::new)),
            Err(JobsError::Usage(_))
        ));
        let nothing = |k: &str| (k == "__STAGECAST_NO_OS_USER").then(String::new);
        assert!(resolve_actor(None, nothing).is_err());
        // Without $USER/$LOGNAME, the OS account of the process is used (containers).
        if cfg!(unix) {
            assert!(!resolve_actor(None, |_| None).unwrap().is_empty());
        }
    }

    #[test]
    fn long_errors_are_cut_on_one_line_at_a_character_boundary() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("ééééé", 3), "éé…");
    }

    #[test]
    fn the_table_has_one_aligned_line_per_job() {
        let job = |id, status: &str, max| JobSummary {
            id,
            kind: "stage_change".into(),
            status: status.into(),
            attempts: 3,
            max_attempts: max,
            customer_id: Some(12),
            destinations: Some(vec!["facebook:111".into()]),
            run_at: None,
            last_error: (status == "failed").then(|| "token invalid (190)".to_string()),
            note: (status == "done").then(|| "1 delivered".to_string()),
            created_at: now(),
            finished_at: None,
        };
        let table = render_table(&[job(7, "failed", Some(12)), job(1234, "done", None)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].contains("3/12") && lines[1].contains("token invalid (190)"));
        assert!(lines[2].contains("1 delivered"));
        let col = |l: &str| l.find("stage_change");
        assert_eq!(col(lines[1]), col(lines[2]), "columns align:\n{table}");
    }
}
