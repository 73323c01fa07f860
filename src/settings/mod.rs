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
    /// job whose lease might lapse before the request ends. A job row another transaction holds
    /// is skipped, not waited for: only that job's lease goes unextended.
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
    /// Payload bytes one claim may carry (B, KiB, MiB or GiB; 64KiB-1GiB), split evenly over
    /// --batch-size: a job's payload is claimed only within its share (a bulk change's chunks,
    /// larger, are expanded in SQL). At least 1 KiB per job (checked at start).
    #[arg(long, env = "STAGECAST_CLAIM_MAX_BYTES", default_value = "4MiB", value_parser = claim_bytes)]
    pub claim_max_bytes: usize,
    /// Bytes one write-back transaction may carry (B, KiB, MiB or GiB; 64KiB-1GiB): audit rows
    /// with their request and response text, outcomes, alerts. Results queue up meanwhile.
    #[arg(long, env = "STAGECAST_WRITE_BACK_MAX_BYTES", default_value = "8MiB", value_parser = write_back_bytes)]
    pub write_back_max_bytes: usize,
    /// How often each worker checks that it holds its liveness lock and looks for dead workers
    /// whose jobs to release (50ms-30s; docs/operations.md, Dead-worker rescue).
    #[arg(long, env = "STAGECAST_RESCUE_INTERVAL", default_value = "500ms", value_parser = rescue_interval)]
    pub rescue_interval: Duration,
    /// How long a worker's liveness lock must stay missing before its jobs are released (1s-10m;
    /// after a Postgres crash, the time live workers have to take their locks back).
    #[arg(long, env = "STAGECAST_RESCUE_GRACE", default_value = "2s", value_parser = rescue_grace)]
    pub rescue_grace: Duration,
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
            claim_max_bytes: self.claim_max_bytes,
            write_back_max_bytes: self.write_back_max_bytes,
            rescue_interval: self.rescue_interval,
            rescue_grace: self.rescue_grace,
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

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

/// `4MiB`, `512KiB`, `1GiB`, `65536` or `65536B`: a byte count (binary units, as the defaults
/// are written). Zero is refused: no bound of these may be empty.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_bytes = match unit.trim() {
        "" | "B" => 1,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => GIB,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: write a number of bytes with B, KiB, MiB or GiB (e.g. 4MiB)"
            ))
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 4MiB, 512KiB, 65536)"))?;
    let bytes = n
        .checked_mul(unit_bytes)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes == 0 {
        return Err("must be more than 0 bytes".into());
    }
    Ok(bytes)
}

/// `4 MiB`, `64 KiB`, `1000 B`: a byte count as the messages write it.
pub fn show_bytes(n: usize) -> String {
    match n {
        n if n >= GIB && n % GIB == 0 => format!("{} GiB", n / GIB),
        n if n >= MIB && n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n >= KIB && n % KIB == 0 => format!("{} KiB", n / KIB),
        n => format!("{n} B"),
    }
}

fn bytes_between(s: &str, min: usize, max: usize) -> Result<usize, String> {
    let n = parse_bytes(s)?;
    if !(min..=max).contains(&n) {
        return Err(format!(
            "{} is out of range: between {} and {}",
            show_bytes(n),
            show_bytes(min),
            show_bytes(max)
        ));
    }
    Ok(n)
}

fn claim_bytes(s: &str) -> Result<usize, String> {
    bytes_between(s, 64 * KIB, GIB)
}

fn write_back_bytes(s: &str) -> Result<usize, String> {
    bytes_between(s, 64 * KIB, GIB)
}

fn duration_between(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if !(min..=max).contains(&d) {
        return Err(format!(
            "{} is out of range: between {} and {}",
            humantime::format_duration(d),
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

fn rescue_interval(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::from_millis(50), Duration::from_secs(30))
}

fn rescue_grace(s: &str) -> Result<Duration, String> {
    duration_between(s, Duration::from_secs(1), Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    fn parse(args: &[&str]) -> Result<WorkerArgs, String> {
        // Only flags: nothing of this process's environment may decide the test.
        let cmd = <Cli as clap::CommandFactory>::command().mut_args(|a| a.env(None));
        let m = cmd
            .try_get_matches_from(std::iter::once("stagecast").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Ok(<Cli as clap::FromArgMatches>::from_arg_matches(&m)
            .unwrap()
            .worker)
    }

    #[test]
    fn the_defaults_are_the_workers_own() {
        let c = parse(&[]).unwrap().worker_config();
        let d = WorkerConfig::default();
        assert_eq!(c.claim_max_bytes, d.claim_max_bytes);
        assert_eq!(c.write_back_max_bytes, d.write_back_max_bytes);
        assert_eq!(c.rescue_interval, d.rescue_interval);
        assert_eq!(c.rescue_grace, d.rescue_grace);
        assert_eq!(
            c.job_payload_max(),
            crate::store::DEFAULT_JOB_PAYLOAD_MAX,
            "4 MiB over the default batch"
        );
    }

    #[test]
    fn the_bounds_reach_the_worker_config() {
        let c = parse(&[
            "--claim-max-bytes",
            "16MiB",
            "--write-back-max-bytes",
            "512KiB",
            "--rescue-interval",
            "2s",
            "--rescue-grace",
            "30s",
            "--batch-size",
            "100",
        ])
        .unwrap()
        .worker_config();
        assert_eq!(c.claim_max_bytes, 16 * MIB);
        assert_eq!(c.job_payload_max(), (16 * MIB / 100) as i32);
        assert_eq!(c.write_back_max_bytes, 512 * KIB);
        assert_eq!(c.rescue_interval, Duration::from_secs(2));
        assert_eq!(c.rescue_grace, Duration::from_secs(30));
        assert_eq!(
            parse(&["--claim-max-bytes", "65536"])
                .unwrap()
                .claim_max_bytes,
            64 * KIB
        );
    }

    #[test]
    fn zero_and_absurd_values_are_refused_with_the_range() {
        for (flag, value, says) in [
            ("--claim-max-bytes", "0", "must be more than 0 bytes"),
            ("--claim-max-bytes", "1KiB", "between 64 KiB and 1 GiB"),
            ("--claim-max-bytes", "2GiB", "between 64 KiB and 1 GiB"),
            ("--claim-max-bytes", "4MB", "unknown unit \"MB\""),
            ("--write-back-max-bytes", "0B", "must be more than 0 bytes"),
            (
                "--write-back-max-bytes",
                "99999999999999999999",
                "not a byte count",
            ),
            ("--rescue-interval", "0s", "between 50ms and 30s"),
            ("--rescue-interval", "1h", "between 50ms and 30s"),
            ("--rescue-grace", "100ms", "between 1s and 10m"),
        ] {
            let e = parse(&[flag, value]).err().unwrap_or_default();
            assert!(e.contains(flag) && e.contains(says), "{flag} {value}: {e}");
        }
    }
}
