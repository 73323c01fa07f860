//! The settings of `stagecast run` that other commands share: the clap argument groups
//! (`stagecast doctor` checks the same flags, with the same environment twins and defaults) and
//! the rules they must satisfy together ([`consistency`]). Each platform's flags live with the
//! platform (`platforms::args::PlatformArgs`).

pub mod consistency;

use std::time::Duration;

use clap::Args;

use crate::locale::Locale;
use crate::pipeline::PipelineConfig;
use crate::queue::{Backoff, RetryPolicy, WorkerConfig};
use crate::store::Retention;

#[derive(Debug, Args, Clone)]
pub struct DatabaseArgs {
    /// Postgres connection URL of the CRM database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
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
    pub fn pipeline_config(&self, retry: RetryPolicy) -> PipelineConfig {
        PipelineConfig {
            locale: self.locale,
            default_region: self.default_region.clone(),
            default_currency: self.default_currency.trim().to_ascii_uppercase(),
            retry,
        }
    }
}
