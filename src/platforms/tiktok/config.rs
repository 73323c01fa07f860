//! Operator configuration of the TikTok destination.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "https://business-api.tiktok.com";
/// The Events API 2.0 path, on the base URL.
pub const TRACK_PATH: &str = "/open_api/v1.3/event/track/";
/// Events API 2.0 takes at most 1,000 events per request (*events-api*).
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;

#[derive(Debug, Clone)]
pub struct TiktokConfig {
    /// Base URL of TikTok's Business API (tests and the demo point it at the local sandbox).
    pub base_url: String,
    /// Per-request timeout; a timeout is retried with the same event ids.
    pub timeout: Duration,
    /// Events per request (1..=1000).
    pub max_batch: usize,
    /// Requests per second per event source, and the burst allowed above it. TikTok publishes
    /// no quota for `/event/track/`; its 40100 answer is the signal that pauses a destination.
    pub requests_per_second: NonZeroU32,
    pub burst: NonZeroU32,
    /// Used when the pixel row names no `event_source` (in `pixels.action_source`).
    pub default_event_source: EventSource,
    /// `lead.lead_event_source`: the CRM's name, sent with CRM events.
    pub lead_event_source: String,
    /// Events older than this are not sent. TikTok documents no hard age limit; its click id is
    /// valid 7 days and it deduplicates by `event_id` only for 48 hours.
    pub max_event_age: Duration,
    /// First pause of an event source TikTok throttled (40100 carries no estimate).
    pub throttle_pause: Duration,
    /// An event source held for its token (40105/40104): its jobs look again this often whether
    /// the token changed (no request is sent while it has not).
    pub hold_recheck: Duration,
    /// …and one request is let through this often anyway, in case it was fixed at TikTok's side.
    pub hold_probe: Duration,
}

impl Default for TiktokConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_string(),
            timeout: Duration::from_secs(10),
            max_batch: MAX_EVENTS_PER_REQUEST,
            requests_per_second: NonZeroU32::new(20).expect("nonzero"),
            burst: NonZeroU32::new(10).expect("nonzero"),
            default_event_source: EventSource::Crm,
            lead_event_source: "stagecast".to_string(),
            max_event_age: Duration::from_secs(7 * 24 * 3600 - 10 * 60),
            throttle_pause: Duration::from_secs(60),
            hold_recheck: Duration::from_secs(60),
            hold_probe: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TiktokConfigError {
    #[error("invalid TikTok API URL {0:?}: expected http(s)://host[:port]")]
    Url(String),
    #[error("batch size {0} is out of range: TikTok accepts 1 to 1000 events per request")]
    Batch(usize),
}

impl TiktokConfig {
    pub fn validate(&self) -> Result<(), TiktokConfigError> {
        match reqwest::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(TiktokConfigError::Url(self.base_url.clone())),
        }
        if self.max_batch == 0 || self.max_batch > MAX_EVENTS_PER_REQUEST {
            return Err(TiktokConfigError::Batch(self.max_batch));
        }
        Ok(())
    }
}

/// TikTok's `event_source` for the destinations stagecast serves: a CRM event set (`crm`, the
/// row's `pixel_id` is the CRM event set id) or a web pixel (`web`, the pixel code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventSource {
    Crm,
    Web,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Crm => "crm",
            EventSource::Web => "web",
        }
    }
}

impl fmt::Display for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown TikTok event_source {0:?}: expected crm or web")]
pub struct UnknownEventSource(pub String);

impl FromStr for EventSource {
    type Err = UnknownEventSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "crm" => Ok(EventSource::Crm),
            "web" | "pixel" => Ok(EventSource::Web),
            _ => Err(UnknownEventSource(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_url_and_batch() {
        let mut c = TiktokConfig::default();
        assert!(c.validate().is_ok());
        c.base_url = "business-api.tiktok.com".into();
        assert!(matches!(c.validate(), Err(TiktokConfigError::Url(_))));
        c.base_url = "http://127.0.0.1:9".into();
        c.max_batch = 1001;
        assert!(matches!(c.validate(), Err(TiktokConfigError::Batch(1001))));
        c.max_batch = 0;
        assert!(matches!(c.validate(), Err(TiktokConfigError::Batch(0))));
    }

    #[test]
    fn event_sources_parse() {
        assert_eq!("CRM".parse::<EventSource>().unwrap(), EventSource::Crm);
        assert_eq!(" web ".parse::<EventSource>().unwrap(), EventSource::Web);
        assert!("offline".parse::<EventSource>().is_err());
    }
}
