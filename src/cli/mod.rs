//! The command line (clap). Every flag of `stagecast run` has an environment twin, so a
//! container can be configured entirely through env.

pub mod consistency;
mod console;
pub(crate) mod jobs;
mod keys;
mod pixel;
mod roles;
mod run;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::locale::Locale;
use crate::pipeline::PipelineConfig;
use crate::platforms::meta::config::{DEFAULT_API_VERSION, DEFAULT_GRAPH_URL};
use crate::platforms::meta::{ActionSource, MetaConfig};
use crate::queue::{Backoff, RetryPolicy, WorkerConfig};
use crate::store::Retention;

const ABOUT: &str = "Reports CRM pipeline stage changes to Meta's Conversions API.\n\n\
CRM triggers queue each stage change in Postgres; `stagecast run` leases the jobs, resolves \
campaign, pixel, value and currency, sends hashed events to Meta, and writes the outcome back \
(delivered, retry scheduled, or failed with a chat alert).";

const AFTER_HELP: &str = "Getting started:\n  \
stagecast demo                     see it work end to end on a throwaway database\n  \
export DATABASE_URL=postgres://user@host/crm\n  \
stagecast keys generate            create STAGECAST_KEYS (encrypts pixel tokens)\n  \
stagecast migrate                  install the schema and triggers (as the owner role)\n  \
stagecast roles apply --worker W   grant the worker role what `run` needs (as the owner)\n  \
stagecast run                      start a worker (run as many as you like, as role W)\n  \
stagecast console                  the admin web console, as the admin role (docs/console.md)\n\n\
Docs: README.md, docs/operations.md, docs/crm-integration.md";

#[derive(Debug, Parser)]
#[command(name = "stagecast", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, env = "STAGECAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing syntax, e.g. `info` or `stagecast=debug`); RUST_LOG also works.
    /// Defaults to `info`, or `warn` for `demo` and `bench` so logs do not drown their report.
    #[arg(long, global = true, env = "STAGECAST_LOG")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply all migrations (CRM contract tables, the stagecast schema, triggers) to DATABASE_URL.
    Migrate(DatabaseArgs),
    /// Run a worker until SIGTERM/SIGINT (finishes in-flight work, then exits).
    Run(Box<RunArgs>),
    /// End-to-end demo on a local Postgres and a local sandbox of the Graph API.
    Demo(crate::demo::DemoArgs),
    /// Benchmark: events/s end to end, CRM UPDATE overhead of the trigger, idle latency.
    Bench(crate::bench::BenchArgs),
    /// Pixel administration.
    #[command(subcommand)]
    Pixel(PixelCommand),
    /// Encryption keys for pixel access tokens (STAGECAST_KEYS).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the configuration end to end and print what is wrong and how to fix it.
    Doctor(crate::doctor::DoctorArgs),
    /// Inspect jobs and their delivery attempts; replay or cancel them (audited).
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// The database roles of a deployment: an owner (migrate), a worker (run), the CRM's role.
    #[command(subcommand)]
    Roles(roles::RolesCommand),
    /// The admin web console without a worker: failed jobs, replay, destinations, stage events.
    Console(console::ConsoleArgs),
}

#[derive(Debug, Args, Clone)]
pub struct DatabaseArgs {
    /// Postgres connection URL of the CRM database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum PixelCommand {
    /// Seal an access token into a pixel (reads the token from stdin so it stays out of shell history).
    SetToken(pixel::SetTokenArgs),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random key entry to put first in STAGECAST_KEYS.
    Generate(keys::GenerateArgs),
    /// Re-seal every pixel token with the first (primary) key of STAGECAST_KEYS.
    Rotate(DatabaseArgs),
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Apply pending migrations before starting.
    #[arg(long, env = "STAGECAST_MIGRATE")]
    pub migrate: bool,
    /// Address for /metrics, /healthz and /readyz (empty to disable).
    #[arg(long, env = "STAGECAST_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
    /// Database connections of this worker.
    #[arg(long, env = "STAGECAST_DB_POOL_SIZE", default_value_t = 10)]
    pub db_pool_size: u32,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub meta: MetaArgs,
    #[command(flatten)]
    pub sentry: SentryArgs,
    #[command(flatten)]
    pub console: console::RunConsoleArgs,
}

#[derive(Debug, Args, Clone)]
pub struct SentryArgs {
    /// Sentry DSN: panics, internal errors and failed jobs are reported there (scrubbed of
    /// contact data and tokens). Reporting is off when unset or empty.
    #[arg(long, env = "SENTRY_DSN", hide_env_values = true)]
    pub sentry_dsn: Option<String>,
    /// Sentry environment of this worker (e.g. production, staging).
    #[arg(long, env = "SENTRY_ENVIRONMENT")]
    pub sentry_environment: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct WorkerArgs {
    /// Maximum jobs in flight in this process.
    #[arg(long, env = "STAGECAST_CONCURRENCY", default_value_t = 4000)]
    pub concurrency: usize,
    /// Maximum jobs leased per claim (events are batched per pixel from these).
    #[arg(long, env = "STAGECAST_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: usize,
    /// Lease length; a crashed worker's jobs are picked up again after it. Must hold a
    /// heartbeat period, its timeout and a whole --meta-timeout (checked at start).
    #[arg(long, env = "STAGECAST_LEASE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// How often the leases of running jobs are extended (default: a third of --lease). Each
    /// beat times out after its period (at most 5s); while beats fail, no request starts for a
    /// job whose lease might lapse before the request ends.
    #[arg(long, env = "STAGECAST_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Fallback poll interval when no notification arrives.
    #[arg(long, env = "STAGECAST_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// On SIGTERM, how long in-flight work may take before it is released (longer than
    /// --meta-timeout). The process then exits within 10s more, whatever the database does: 5s
    /// for the last write-back, 3s to give back the jobs it still holds, 2s to stop.
    #[arg(long, env = "STAGECAST_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// First retry delay ceiling (exponential backoff with full jitter).
    #[arg(long, env = "STAGECAST_RETRY_BASE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub retry_base: Duration,
    /// Maximum retry delay.
    #[arg(long, env = "STAGECAST_RETRY_CAP", default_value = "1h", value_parser = humantime::parse_duration)]
    pub retry_cap: Duration,
    /// Time budget: a job older than this is not retried again.
    #[arg(long, env = "STAGECAST_MAX_JOB_AGE", default_value = "6days", value_parser = humantime::parse_duration)]
    pub max_job_age: Duration,
    /// How long done jobs stay in stagecast.job_archive.
    #[arg(long, env = "STAGECAST_RETENTION_DONE", default_value = "1day", value_parser = humantime::parse_duration)]
    pub retention_done: Duration,
    /// How long failed and cancelled jobs are kept for inspection and replay.
    #[arg(long, env = "STAGECAST_RETENTION_FAILED", default_value = "30days", value_parser = humantime::parse_duration)]
    pub retention_failed: Duration,
    /// How long the delivery audit and alerts are kept. The audit is the delivery ledger: at
    /// least --meta-max-event-age and --max-job-age plus --retry-cap (checked at start).
    #[arg(long, env = "STAGECAST_RETENTION_AUDIT", default_value = "30days", value_parser = humantime::parse_duration)]
    pub retention_audit: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct PipelineArgs {
    /// Language of chat alerts: pt, en or es.
    #[arg(long, env = "STAGECAST_LOCALE", default_value = "pt")]
    pub locale: Locale,
    /// Region for phone numbers written without a country code (ISO 3166 alpha-2).
    #[arg(long, env = "STAGECAST_DEFAULT_REGION", default_value = "BR")]
    pub default_region: String,
    /// Currency when neither the event config, the customer nor the campaign has one.
    #[arg(long, env = "STAGECAST_DEFAULT_CURRENCY", default_value = "BRL")]
    pub default_currency: String,
}

#[derive(Debug, Args, Clone)]
pub struct MetaArgs {
    /// Base URL of the Graph API.
    #[arg(long, env = "STAGECAST_META_GRAPH_URL", default_value = DEFAULT_GRAPH_URL)]
    pub meta_graph_url: String,
    /// Graph API version.
    #[arg(long, env = "STAGECAST_META_API_VERSION", default_value = DEFAULT_API_VERSION)]
    pub meta_api_version: String,
    /// Timeout of one Conversions API request (retried with the same event ids). A request
    /// starts only while the job's lease outlasts it.
    #[arg(long, env = "STAGECAST_META_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub meta_timeout: Duration,
    /// Events per request (1-1000).
    #[arg(long, env = "STAGECAST_META_BATCH_SIZE", default_value_t = 1000)]
    pub meta_batch_size: usize,
    /// Requests per second per pixel.
    #[arg(long, env = "STAGECAST_META_RATE_LIMIT", default_value = "50")]
    pub meta_rate_limit: NonZeroU32,
    /// action_source for pixels that do not set one.
    #[arg(
        long,
        env = "STAGECAST_META_ACTION_SOURCE",
        default_value = "physical_store"
    )]
    pub meta_action_source: ActionSource,
    /// Stage changes older than this are not sent (alert event_too_old). Meta documents 7 days;
    /// its 62-day window for physical_store uploads is unverified, so raise this only after
    /// testing it against your dataset.
    #[arg(long, env = "STAGECAST_META_MAX_EVENT_AGE", default_value = "6days 23h 50m", value_parser = humantime::parse_duration)]
    pub meta_max_event_age: Duration,
    /// Look click-to-WhatsApp ad ids up in the Graph API (campaign_id) when they match no campaign.
    #[arg(long, env = "STAGECAST_META_RESOLVE_ADS")]
    pub meta_resolve_ads: bool,
    /// partner_agent sent with every request.
    #[arg(
        long,
        env = "STAGECAST_META_PARTNER_AGENT",
        default_value = "stagecast"
    )]
    pub meta_partner_agent: String,
}

impl WorkerArgs {
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency.max(1),
            batch_size: self.batch_size.max(1),
            lease: self.lease.max(Duration::from_secs(1)),
            heartbeat_interval: self.heartbeat_interval,
            poll_interval: self.poll_interval.max(Duration::from_millis(10)),
            drain_timeout: self.drain_timeout,
            retention: Retention {
                done: self.retention_done,
                failed: self.retention_failed,
                audit: self.retention_audit,
            },
            ..WorkerConfig::default()
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff {
                base: self.retry_base,
                cap: self.retry_cap.max(self.retry_base),
            },
            max_age: self.max_job_age,
        }
    }
}

impl PipelineArgs {
    pub fn pipeline_config(&self, retry: RetryPolicy, resolve_ads: bool) -> PipelineConfig {
        PipelineConfig {
            resolve_ads,
            locale: self.locale,
            default_region: self.default_region.clone(),
            default_currency: self.default_currency.trim().to_ascii_uppercase(),
            retry,
        }
    }
}

impl MetaArgs {
    pub fn meta_config(&self) -> MetaConfig {
        MetaConfig {
            graph_url: self.meta_graph_url.clone(),
            api_version: self.meta_api_version.clone(),
            timeout: self.meta_timeout,
            max_batch: self.meta_batch_size,
            requests_per_second: self.meta_rate_limit,
            partner_agent: self.meta_partner_agent.clone(),
            default_action_source: self.meta_action_source,
            max_event_age: self.meta_max_event_age,
            ..MetaConfig::default()
        }
    }
}

/// Parse a metrics address; empty disables the HTTP endpoint.
pub fn parse_addr(s: &str) -> anyhow::Result<Option<SocketAddr>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        anyhow::anyhow!("invalid metrics address {s:?}: expected host:port such as 0.0.0.0:9464")
    })
}

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Demo(_) | Command::Bench(_) => "warn",
        _ => "info",
    };
    // Before logging (its layer feeds Sentry) and before the runtime (see reporting::init).
    // The guard lives until main returns, so queued events are flushed on exit.
    let sentry_guard = match &cli.command {
        Command::Run(args) => match run::init_sentry(&args.sentry) {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("error: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    crate::ops::init_logging(
        cli.log_format,
        cli.log.as_deref().unwrap_or(default_log),
        sentry_guard.is_some(),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Migrate(args) => run::migrate(&args).await,
            Command::Run(args) => run::run(*args).await,
            Command::Demo(args) => crate::demo::run(args).await,
            Command::Bench(args) => crate::bench::run(args).await,
            Command::Pixel(PixelCommand::SetToken(args)) => pixel::set_token(args).await,
            Command::Keys(KeysCommand::Generate(args)) => keys::generate(args),
            Command::Keys(KeysCommand::Rotate(args)) => keys::rotate(args).await,
            Command::Doctor(args) => crate::doctor::run(args).await,
            Command::Jobs(cmd) => jobs::run(cmd).await.map_err(Into::into),
            Command::Roles(cmd) => roles::run(cmd).await,
            Command::Console(args) => console::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The doctor printed its report already; its verdict is the exit code (1 or 2).
            if let Some(unhealthy) = e.downcast_ref::<crate::doctor::Unhealthy>() {
                return unhealthy.exit_code();
            }
            // `{:#}` prints the whole cause chain on one line; it never holds tokens or PII.
            eprintln!("error: {e:#}");
            if sentry_guard.is_some() {
                crate::reporting::report_fatal(&format!("stagecast run stopped: {e:#}"));
            }
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_run_flag_has_an_env_twin() {
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").expect("run subcommand");
        for arg in run.get_arguments() {
            if arg.is_global_set() || arg.get_id() == "help" || arg.get_id() == "version" {
                continue;
            }
            assert!(
                arg.get_env().is_some(),
                "flag --{} of `stagecast run` has no env twin",
                arg.get_id()
            );
        }
    }
}
