//! Meta's flags of `stagecast run` (and of `stagecast doctor`, which checks them), each with its
//! environment twin.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;

use super::config::{
    ActionSource, MetaConfig, MetaConfigError, DEFAULT_API_VERSION, DEFAULT_GRAPH_URL,
    MAX_EVENTS_PER_REQUEST,
};
use crate::platforms::args::{RequestLimits, SettingsCheck};
use crate::platforms::Platform;

#[derive(Debug, Args, Clone)]
pub struct MetaArgs {
    /// Base URL of the Graph API.
    #[arg(long, env = "STAGECAST_META_GRAPH_URL", default_value = DEFAULT_GRAPH_URL)]
    pub meta_graph_url: String,
    /// Graph API version, in the form Meta uses: vNN.0 (e.g. v26.0).
    #[arg(long, env = "STAGECAST_META_API_VERSION", default_value = DEFAULT_API_VERSION)]
    pub meta_api_version: String,
    /// Timeout of one Conversions API request (retried with the same event ids). A request
    /// starts only while the job's lease outlasts it.
    #[arg(long, env = "STAGECAST_META_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub meta_timeout: Duration,
    /// Events per request (1-1000).
    #[arg(long, env = "STAGECAST_META_BATCH_SIZE", default_value_t = 1000)]
    pub meta_batch_size: usize,
    /// Requests per second per pixel, shared by every worker on the database.
    #[arg(long, env = "STAGECAST_META_RATE_LIMIT", default_value = "50")]
    pub meta_rate_limit: NonZeroU32,
    /// action_source for pixels that do not set one (website and app are refused: stagecast
    /// does not build event_source_url or app_data).
    #[arg(
        long,
        env = "STAGECAST_META_ACTION_SOURCE",
        default_value = "physical_store"
    )]
    pub meta_action_source: ActionSource,
    /// Stage changes older than this are not sent (alert event_too_old), for every action source
    /// except business_messaging, which is always 7 days (Meta refuses older ones with 2804003),
    /// and physical_store when --meta-max-event-age-physical-store is set. Meta documents 7 days.
    #[arg(long, env = "STAGECAST_META_MAX_EVENT_AGE", default_value = "6days 23h 50m", value_parser = humantime::parse_duration)]
    pub meta_max_event_age: Duration,
    /// The window of physical_store events, at most 62 days (Meta's offline-events guide asks
    /// for uploads within 62 days; whether the API accepts 8-62-day-old events is unverified:
    /// test it against your dataset). Default: --meta-max-event-age.
    #[arg(long, env = "STAGECAST_META_MAX_EVENT_AGE_PHYSICAL_STORE", value_parser = humantime::parse_duration)]
    pub meta_max_event_age_physical_store: Option<Duration>,
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
            physical_store_max_age: self.meta_max_event_age_physical_store,
            resolve_ads: self.meta_resolve_ads,
            ..MetaConfig::default()
        }
    }

    /// The doctor's line for these settings: the same validation `Meta::new` refuses to start
    /// with, and the fix.
    pub fn settings_check(&self) -> SettingsCheck {
        let config = self.meta_config();
        let url = crate::local_pg::redact_url(&config.graph_url);
        let result = match config.validate() {
            Ok(()) => Ok(format!("{url}, version {}", config.api_version)),
            Err(e) => {
                let fix = match e {
                    MetaConfigError::Version(_) => format!(
                        "set STAGECAST_META_API_VERSION to a version such as {DEFAULT_API_VERSION}"
                    ),
                    MetaConfigError::Url(_) => format!(
                        "set STAGECAST_META_GRAPH_URL to http(s)://host[:port], normally {DEFAULT_GRAPH_URL}"
                    ),
                    MetaConfigError::Batch(_) => format!(
                        "set STAGECAST_META_BATCH_SIZE between 1 and {MAX_EVENTS_PER_REQUEST}"
                    ),
                    MetaConfigError::MaxAge(_) => "set STAGECAST_META_MAX_EVENT_AGE (and STAGECAST_META_MAX_EVENT_AGE_PHYSICAL_STORE) to 62 days or less; Meta documents 7".to_string(),
                    MetaConfigError::ActionSource(_) => "set STAGECAST_META_ACTION_SOURCE to physical_store, chat, system_generated or another source stagecast supports".to_string(),
                };
                Err((e.to_string(), fix))
            }
        };
        SettingsCheck {
            id: "graph_api",
            title: "Graph API",
            result,
        }
    }

    /// What these settings ask of the worker's own (`--lease`, `--drain-timeout`,
    /// `--retention-audit`): checked by `run` at start and by the doctor.
    pub fn limits(&self) -> RequestLimits {
        RequestLimits {
            platform: Platform::Facebook,
            request: "a Conversions API request",
            timeout: self.meta_timeout,
            timeout_flag: "--meta-timeout",
            timeout_setting: "--meta-timeout (STAGECAST_META_TIMEOUT)",
            max_event_age: self.meta_config().longest_max_age(),
            max_event_age_setting: if self
                .meta_max_event_age_physical_store
                .is_some_and(|p| p > self.meta_max_event_age)
            {
                "--meta-max-event-age-physical-store (STAGECAST_META_MAX_EVENT_AGE_PHYSICAL_STORE)"
            } else {
                "--meta-max-event-age (STAGECAST_META_MAX_EVENT_AGE)"
            },
            lease_rule: "lease_meta_timeout",
            drain_rule: "drain_meta_timeout",
            retention_rule: "retention_event_age",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        meta: MetaArgs,
    }

    fn parse(args: &[&str]) -> MetaArgs {
        Cli::try_parse_from(std::iter::once("stagecast").chain(args.iter().copied()))
            .expect("flags parse")
            .meta
    }

    #[test]
    fn the_ledger_rule_uses_the_longest_age_window_and_names_its_flag() {
        let plain = parse(&[]);
        assert_eq!(
            plain.limits().max_event_age,
            super::super::config::SEVEN_DAYS_WITH_MARGIN
        );
        assert!(plain
            .limits()
            .max_event_age_setting
            .starts_with("--meta-max-event-age "));
        let store = parse(&["--meta-max-event-age-physical-store", "62days"]);
        assert_eq!(
            store.limits().max_event_age,
            Duration::from_secs(62 * 24 * 3600)
        );
        assert!(store
            .limits()
            .max_event_age_setting
            .starts_with("--meta-max-event-age-physical-store"));
        assert!(store.settings_check().result.is_ok());
        let too_long = parse(&["--meta-max-event-age-physical-store", "63days"]);
        assert!(too_long.settings_check().result.is_err());
        let website = parse(&["--meta-action-source", "website"]);
        let (found, fix) = website.settings_check().result.unwrap_err();
        assert!(found.contains("website"), "{found}");
        assert!(fix.contains("STAGECAST_META_ACTION_SOURCE"), "{fix}");
        let version = parse(&["--meta-api-version", "v26.1"]);
        assert!(version.settings_check().result.is_err());
    }
}
