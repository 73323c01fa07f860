//! Operator configuration of the Google Ads destination.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::secrets::Secret;

pub const DEFAULT_BASE_URL: &str = "https://googleads.googleapis.com";
/// Google's OAuth 2.0 token endpoint ("Using OAuth 2.0 to Access Google APIs").
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const DEFAULT_API_VERSION: &str = "v26";
/// `uploadClickConversions` takes at most 2,000 conversions per request ("Quotas and
/// limits"; `TOO_MANY_CONVERSIONS_IN_REQUEST`).
pub const MAX_CONVERSIONS_PER_REQUEST: usize = 2000;
/// Below the maximum: large answers of big batches are slow to come back, and a smaller
/// batch keeps one request well inside its timeout.
pub const DEFAULT_BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct GoogleAdsConfig {
    /// Base URL of the Google Ads API (tests and the demo point it at the local sandbox).
    pub base_url: String,
    /// `vNN` in the path.
    pub api_version: String,
    /// OAuth 2.0 token endpoint (refresh-token grant).
    pub token_url: String,
    /// The OAuth client the refresh tokens were issued to.
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Per-request timeout (upload and token refresh).
    pub timeout: Duration,
    /// Conversions per request (1..=2000).
    pub max_batch: usize,
    /// Requests per second per destination (customer and login customer).
    pub requests_per_second: NonZeroU32,
    pub burst: NonZeroU32,
    /// Stage changes older than this are not sent. Google enforces the click's own window
    /// (at most 90 days, "About conversion windows"; `EXPIRED_EVENT`); this bounds replays of
    /// old stage changes, and stays below `--retention-audit` (30 days by default) as every
    /// platform's window must.
    pub max_event_age: Duration,
    /// First pause of a destination Google throttled without a `retryDelay`.
    pub throttle_pause: Duration,
    /// How often a held destination (refused credentials) is probed with one request.
    pub hold_probe: Duration,
}

impl Default for GoogleAdsConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            api_version: DEFAULT_API_VERSION.to_string(),
            token_url: DEFAULT_TOKEN_URL.to_string(),
            client_id: String::new(),
            client_secret: None,
            timeout: Duration::from_secs(10),
            max_batch: DEFAULT_BATCH,
            requests_per_second: NonZeroU32::new(10).expect("nonzero"),
            burst: NonZeroU32::new(5).expect("nonzero"),
            max_event_age: Duration::from_secs(29 * 24 * 3600),
            throttle_pause: Duration::from_secs(60),
            hold_probe: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GoogleAdsConfigError {
    #[error("invalid Google Ads API URL {0:?}: expected http(s)://host[:port]")]
    Url(String),
    #[error("invalid Google OAuth token URL {0:?}: expected http(s)://host[:port]/path")]
    TokenUrl(String),
    #[error("invalid Google Ads API version {0:?}: expected the form vNN")]
    Version(String),
    #[error(
        "batch size {0} is out of range: Google Ads accepts 1 to 2000 conversions per request"
    )]
    Batch(usize),
}

fn http_url(s: &str) -> bool {
    matches!(reqwest::Url::parse(s), Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

impl GoogleAdsConfig {
    pub fn validate(&self) -> Result<(), GoogleAdsConfigError> {
        if !http_url(&self.base_url) {
            return Err(GoogleAdsConfigError::Url(self.base_url.clone()));
        }
        if !http_url(&self.token_url) {
            return Err(GoogleAdsConfigError::TokenUrl(self.token_url.clone()));
        }
        let v = self.api_version.as_str();
        if !(v.len() >= 2 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit())) {
            return Err(GoogleAdsConfigError::Version(self.api_version.clone()));
        }
        if self.max_batch == 0 || self.max_batch > MAX_CONVERSIONS_PER_REQUEST {
            return Err(GoogleAdsConfigError::Batch(self.max_batch));
        }
        Ok(())
    }

    /// Whether the OAuth client is configured (without it no destination can send).
    pub fn has_client(&self) -> bool {
        !self.client_id.trim().is_empty()
            && self.client_secret.as_ref().is_some_and(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_urls_version_and_batch() {
        let mut c = GoogleAdsConfig::default();
        assert!(c.validate().is_ok());
        assert!(c.max_batch < MAX_CONVERSIONS_PER_REQUEST);
        c.api_version = "26".into();
        assert!(matches!(
            c.validate(),
            Err(GoogleAdsConfigError::Version(_))
        ));
        c.api_version = "v26".into();
        c.token_url = "oauth2.googleapis.com".into();
        assert!(matches!(
            c.validate(),
            Err(GoogleAdsConfigError::TokenUrl(_))
        ));
        c.token_url = DEFAULT_TOKEN_URL.into();
        c.max_batch = 2001;
        assert!(matches!(
            c.validate(),
            Err(GoogleAdsConfigError::Batch(2001))
        ));
        c.max_batch = 2000;
        assert!(c.validate().is_ok());
    }
}
