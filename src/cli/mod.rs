//! The command line (clap). Every flag of `stagecast run` has an environment twin, so a
//! container can be configured entirely through env.

mod console;
pub(crate) mod jobs;
mod keys;
mod pixel;
mod roles;
mod run;

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

pub use crate::ops::LogFormat;
pub use crate::platforms::args::PlatformArgs;
pub use crate::settings::{DatabaseArgs, PipelineArgs, WorkerArgs};

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply all migrations (CRM contract tables, the stagecast schema, triggers) to DATABASE_URL.
    Migrate(DatabaseArgs),
    /// Run a worker until SIGTERM/SIGINT (finishes in-flight work, then exits).
    Run(Box<RunArgs>),
    /// End-to-end demo on a local Postgres and local sandboxes of Meta, TikTok and Google Ads.
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
    /// Every platform's settings (`--meta-*`, ...).
    #[command(flatten)]
    pub platforms: PlatformArgs,
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

    #[test]
    fn doctor_takes_every_value_setting_of_run_with_the_same_env_and_default() {
        let cli = Cli::command();
        let run = cli.find_subcommand("run").unwrap();
        let doctor = cli.find_subcommand("doctor").unwrap();
        for arg in crate::doctor::checked_settings() {
            let id = arg.get_id().as_str();
            let in_run = run.get_arguments().find(|a| a.get_id() == id).unwrap();
            let in_doctor = doctor
                .get_arguments()
                .find(|a| a.get_id() == id)
                .unwrap_or_else(|| panic!("doctor lacks {id}"));
            assert_eq!(in_run.get_env(), in_doctor.get_env(), "{id}");
            assert_eq!(
                in_run.get_default_values(),
                in_doctor.get_default_values(),
                "{id}"
            );
        }
    }
}
