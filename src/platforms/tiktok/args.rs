//! TikTok's flags of `stagecast run` (and of `stagecast doctor`, which checks them), each with
//! its environment twin.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;

use super::config::{
    EventSource, TiktokConfig, TiktokConfigError, DEFAULT_BASE_URL, MAX_EVENTS_PER_REQUEST,
};
use crate::platforms::args::{RequestLimits, SettingsCheck};
use crate::platforms::Platform;

#[derive(Debug, Args, Clone)]
pub struct TiktokArgs {
    /// Base URL of TikTok's Business API (the Events API is POST /open_api/v1.3/event/track/ on it).
    #[arg(long, env = "STAGECAST_TIKTOK_BASE_URL", default_value = DEFAULT_BASE_URL)]
    pub tiktok_base_url: String,
    /// Timeout of one Events API request (retried with the same event ids). A request starts
    /// only while the job's lease outlasts it.
    #[arg(long, env = "STAGECAST_TIKTOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub tiktok_timeout: Duration,
    /// Events per request (1-1000).
    #[arg(long, env = "STAGECAST_TIKTOK_BATCH_SIZE", default_value_t = 1000)]
    pub tiktok_batch_size: usize,
    /// Requests per second per TikTok event source, shared by every worker on the database.
    #[arg(long, env = "STAGECAST_TIKTOK_RATE_LIMIT", default_value = "20")]
    pub tiktok_rate_limit: NonZeroU32,
    /// event_source for TikTok pixel rows whose action_source is empty: crm (a CRM event set)
    /// or web (a pixel).
    #[arg(long, env = "STAGECAST_TIKTOK_EVENT_SOURCE", default_value = "crm")]
    pub tiktok_event_source: EventSource,
    /// Stage changes older than this are not sent to TikTok (alert event_too_old). TikTok
    /// documents no hard limit; its click ids last 7 days.
    #[arg(long, env = "STAGECAST_TIKTOK_MAX_EVENT_AGE", default_value = "6days 23h 50m", value_parser = humantime::parse_duration)]
    pub tiktok_max_event_age: Duration,
    /// lead.lead_event_source sent with CRM events: the CRM's name.
    #[arg(
        long,
        env = "STAGECAST_TIKTOK_LEAD_EVENT_SOURCE",
        default_value = "stagecast"
    )]
    pub tiktok_lead_event_source: String,
}

impl TiktokArgs {
    pub fn tiktok_config(&self) -> TiktokConfig {
        TiktokConfig {
            base_url: self.tiktok_base_url.clone(),
            timeout: self.tiktok_timeout,
            max_batch: self.tiktok_batch_size,
            requests_per_second: self.tiktok_rate_limit,
            default_event_source: self.tiktok_event_source,
            max_event_age: self.tiktok_max_event_age,
            lead_event_source: self.tiktok_lead_event_source.clone(),
            ..TiktokConfig::default()
        }
    }

    /// The doctor's line for these settings: the same validation `Tiktok::new` refuses to
    /// start with, and the fix.
    pub fn settings_check(&self) -> SettingsCheck {
        let config = self.tiktok_config();
        let url = crate::local_pg::redact_url(&config.base_url);
        let result = match config.validate() {
            Ok(()) => Ok(format!(
                "{url}, default event_source {}",
                config.default_event_source
            )),
            Err(e) => {
                let fix = match e {
                    TiktokConfigError::Url(_) => format!(
                        "set STAGECAST_TIKTOK_BASE_URL to http(s)://host[:port], normally {DEFAULT_BASE_URL}"
                    ),
                    TiktokConfigError::Batch(_) => format!(
                        "set STAGECAST_TIKTOK_BATCH_SIZE between 1 and {MAX_EVENTS_PER_REQUEST}"
                    ),
                };
                Err((e.to_string(), fix))
            }
        };
        SettingsCheck {
            id: "tiktok_api",
            title: "TikTok Events API",
            result,
        }
    }

    /// What these settings ask of the worker's own (`--lease`, `--drain-timeout`,
    /// `--retention-audit`).
    pub fn limits(&self) -> RequestLimits {
        RequestLimits {
            platform: Platform::Tiktok,
            request: "a TikTok Events API request",
            timeout: self.tiktok_timeout,
            timeout_flag: "--tiktok-timeout",
            timeout_setting: "--tiktok-timeout (STAGECAST_TIKTOK_TIMEOUT)",
            max_event_age: self.tiktok_max_event_age,
            max_event_age_setting: "--tiktok-max-event-age (STAGECAST_TIKTOK_MAX_EVENT_AGE)",
            lease_rule: "lease_tiktok_timeout",
            drain_rule: "drain_tiktok_timeout",
            retention_rule: "retention_tiktok_event_age",
        }
    }
}
