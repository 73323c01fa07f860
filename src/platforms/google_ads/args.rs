//! Google Ads' flags of `stagecast run` (and of `stagecast doctor`, which checks them), each
//! with its environment twin.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;

use super::config::{
    GoogleAdsConfig, GoogleAdsConfigError, DEFAULT_API_VERSION, DEFAULT_BASE_URL,
    DEFAULT_TOKEN_URL, MAX_CONVERSIONS_PER_REQUEST,
};
use crate::platforms::args::{RequestLimits, SettingsCheck};
use crate::platforms::Platform;
use crate::secrets::Secret;

#[derive(Debug, Args, Clone)]
pub struct GoogleAdsArgs {
    /// Base URL of the Google Ads API (uploads go to POST /{version}/customers/{id}:uploadClickConversions on it).
    #[arg(long, env = "STAGECAST_GOOGLE_ADS_BASE_URL", default_value = DEFAULT_BASE_URL)]
    pub google_ads_base_url: String,
    /// Google Ads API version in the path (vNN).
    #[arg(long, env = "STAGECAST_GOOGLE_ADS_API_VERSION", default_value = DEFAULT_API_VERSION)]
    pub google_ads_api_version: String,
    /// Google's OAuth 2.0 token endpoint (refresh-token grant).
    #[arg(long, env = "STAGECAST_GOOGLE_ADS_TOKEN_URL", default_value = DEFAULT_TOKEN_URL)]
    pub google_ads_token_url: String,
    /// OAuth client id the destinations' refresh tokens were issued to.
    #[arg(long, env = "STAGECAST_GOOGLE_ADS_CLIENT_ID", default_value = "")]
    pub google_ads_client_id: String,
    /// OAuth client secret (prefer the environment variable).
    #[arg(
        long,
        env = "STAGECAST_GOOGLE_ADS_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub google_ads_client_secret: Option<String>,
    /// Timeout of one Google request (token refresh or upload; retried with the same order ids).
    #[arg(long, env = "STAGECAST_GOOGLE_ADS_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub google_ads_timeout: Duration,
    /// Conversions per request (1-2000).
    #[arg(long, env = "STAGECAST_GOOGLE_ADS_BATCH_SIZE", default_value_t = super::config::DEFAULT_BATCH)]
    pub google_ads_batch_size: usize,
    /// Requests per second per Google Ads destination (customer and login customer), shared by every worker on the database.
    #[arg(long, env = "STAGECAST_GOOGLE_ADS_RATE_LIMIT", default_value = "10")]
    pub google_ads_rate_limit: NonZeroU32,
    /// Stage changes older than this are not sent to Google Ads (alert event_too_old). Google
    /// checks the click's own window (at most 90 days; alert click_too_old).
    #[arg(long, env = "STAGECAST_GOOGLE_ADS_MAX_EVENT_AGE", default_value = "29days", value_parser = humantime::parse_duration)]
    pub google_ads_max_event_age: Duration,
}

impl GoogleAdsArgs {
    pub fn google_ads_config(&self) -> GoogleAdsConfig {
        GoogleAdsConfig {
            base_url: self.google_ads_base_url.clone(),
            api_version: self.google_ads_api_version.clone(),
            token_url: self.google_ads_token_url.clone(),
            client_id: self.google_ads_client_id.clone(),
            client_secret: self
                .google_ads_client_secret
                .clone()
                .filter(|s| !s.is_empty())
                .map(Secret::new),
            timeout: self.google_ads_timeout,
            max_batch: self.google_ads_batch_size,
            requests_per_second: self.google_ads_rate_limit,
            max_event_age: self.google_ads_max_event_age,
            ..GoogleAdsConfig::default()
        }
    }

    /// The doctor's line for these settings.
    pub fn settings_check(&self) -> SettingsCheck {
        let config = self.google_ads_config();
        let url = crate::local_pg::redact_url(&config.base_url);
        let result = match config.validate() {
            Ok(()) if config.has_client() => Ok(format!("{url}, {}", config.api_version)),
            Ok(()) => Ok(format!(
                "{url}, {}; no OAuth client set (only needed with google_ads pixels)",
                config.api_version
            )),
            Err(e) => {
                let fix = match e {
                    GoogleAdsConfigError::Url(_) => format!(
                        "set STAGECAST_GOOGLE_ADS_BASE_URL to http(s)://host[:port], normally {DEFAULT_BASE_URL}"
                    ),
                    GoogleAdsConfigError::TokenUrl(_) => format!(
                        "set STAGECAST_GOOGLE_ADS_TOKEN_URL to http(s)://host[:port]/path, normally {DEFAULT_TOKEN_URL}"
                    ),
                    GoogleAdsConfigError::Version(_) => format!(
                        "set STAGECAST_GOOGLE_ADS_API_VERSION to a supported version such as {DEFAULT_API_VERSION}"
                    ),
                    GoogleAdsConfigError::Batch(_) => format!(
                        "set STAGECAST_GOOGLE_ADS_BATCH_SIZE between 1 and {MAX_CONVERSIONS_PER_REQUEST}"
                    ),
                };
                Err((e.to_string(), fix))
            }
        };
        SettingsCheck {
            id: "google_ads_api",
            title: "Google Ads API",
            result,
        }
    }

    /// What these settings ask of the worker's own (`--lease`, `--drain-timeout`,
    /// `--retention-audit`): a delivery may refresh a token and then upload.
    pub fn limits(&self) -> RequestLimits {
        RequestLimits {
            platform: Platform::GoogleAds,
            request: "a Google Ads token refresh and upload",
            timeout: self.google_ads_timeout * 2,
            timeout_flag: "--google-ads-timeout",
            timeout_setting: "--google-ads-timeout (STAGECAST_GOOGLE_ADS_TIMEOUT)",
            max_event_age: self.google_ads_max_event_age,
            max_event_age_setting:
                "--google-ads-max-event-age (STAGECAST_GOOGLE_ADS_MAX_EVENT_AGE)",
            lease_rule: "lease_google_ads_timeout",
            drain_rule: "drain_google_ads_timeout",
            retention_rule: "retention_google_ads_event_age",
        }
    }
}
