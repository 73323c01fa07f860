//! Operator configuration of the Meta destination.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// The Graph API version used when none is configured: the newest stable one (*versions*).
pub const DEFAULT_API_VERSION: &str = "v26.0";
pub const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com";
/// Meta refuses a batch with more than 1,000 events (*using-the-api*).
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;
/// Meta's 7 days (*server-event*), less a margin for clock skew and the time a request takes.
pub const SEVEN_DAYS_WITH_MARGIN: Duration = Duration::from_secs(7 * 24 * 3600 - 10 * 60);
/// The longest window Meta mentions: "upload transactions within 62 days of the conversion",
/// for `physical_store` only (*offline-events*; unverified against the API itself).
pub const PHYSICAL_STORE_MAX_WINDOW: Duration = Duration::from_secs(62 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct MetaConfig {
    /// Base URL of the Graph API (tests and the demo point it at the local sandbox).
    pub graph_url: String,
    pub api_version: String,
    /// Per-request timeout; a timeout is retried with the same event ids.
    pub timeout: Duration,
    /// Events per request (1..=1000).
    pub max_batch: usize,
    /// Requests per second per pixel, and the burst allowed above it.
    pub requests_per_second: NonZeroU32,
    pub burst: NonZeroU32,
    /// Identifies stagecast's traffic to Meta (`partner_agent`).
    pub partner_agent: String,
    /// Used when the pixel has no `action_source`.
    pub default_action_source: ActionSource,
    /// Events older than this are not sent (Meta rejects > 7 days; margin for clock skew), for
    /// every action source but `business_messaging` (always 7 days: [`SEVEN_DAYS_WITH_MARGIN`])
    /// and `physical_store` when `physical_store_max_age` is set.
    pub max_event_age: Duration,
    /// The window of `physical_store` events, when it differs (up to 62 days).
    pub physical_store_max_age: Option<Duration>,
    /// First pause of a pixel Meta throttled without estimating when access returns; half of
    /// it after usage headers past 90 % without an estimate.
    pub throttle_pause: Duration,
    /// A pixel held for its configuration (invalid token, request-level error): its jobs look
    /// again this often whether the configuration changed (no request is sent while it has not).
    pub hold_recheck: Duration,
    /// …and one request is let through this often anyway, in case it was fixed at Meta's side.
    pub hold_probe: Duration,
    /// Look click-to-WhatsApp ad ids up (`GET /{ad_id}?fields=campaign_id`) when they match no
    /// campaign of the CRM directly.
    pub resolve_ads: bool,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            graph_url: DEFAULT_GRAPH_URL.to_string(),
            api_version: DEFAULT_API_VERSION.to_string(),
            timeout: Duration::from_secs(10),
            max_batch: MAX_EVENTS_PER_REQUEST,
            requests_per_second: NonZeroU32::new(50).expect("nonzero"),
            burst: NonZeroU32::new(20).expect("nonzero"),
            partner_agent: "stagecast".to_string(),
            default_action_source: ActionSource::PhysicalStore,
            max_event_age: SEVEN_DAYS_WITH_MARGIN,
            physical_store_max_age: None,
            throttle_pause: Duration::from_secs(60),
            hold_recheck: Duration::from_secs(60),
            hold_probe: Duration::from_secs(15 * 60),
            resolve_ads: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetaConfigError {
    #[error("invalid Graph API version {0:?}: expected the form vNN.0, e.g. v26.0 (Meta's versions always end in .0)")]
    Version(String),
    #[error("invalid Graph API URL {0:?}: expected http(s)://host[:port]")]
    Url(String),
    #[error("batch size {0} is out of range: Meta accepts 1 to 1000 events per request")]
    Batch(usize),
    #[error(
        "event age window {0:?} is longer than the 62 days Meta mentions for any action source"
    )]
    MaxAge(Duration),
    #[error("default action_source {0} is not supported: Meta requires event_source_url and client_user_agent (website) or app_data (app), which stagecast does not send")]
    ActionSource(ActionSource),
}

impl MetaConfig {
    /// How old an event of `source` may be when sent: business messaging is 7 days whatever
    /// the settings (Meta answers 2804003 past it); `physical_store` has its own window when
    /// set; every other source `max_event_age`.
    pub fn max_age_for(&self, source: ActionSource) -> Duration {
        match source {
            ActionSource::BusinessMessaging => self.max_event_age.min(SEVEN_DAYS_WITH_MARGIN),
            ActionSource::PhysicalStore => {
                self.physical_store_max_age.unwrap_or(self.max_event_age)
            }
            _ => self.max_event_age,
        }
    }

    /// The longest window of any action source (what the ledger must outlive).
    pub fn longest_max_age(&self) -> Duration {
        self.max_event_age
            .max(self.physical_store_max_age.unwrap_or_default())
    }

    pub fn validate(&self) -> Result<(), MetaConfigError> {
        let v = self.api_version.as_str();
        // Graph API versions are `v<major>.0` (*graph-api/changelog/versions*); anything else is
        // an unknown path to Graph (code 2500), refused here instead of on every request.
        let ok_version = v
            .strip_prefix('v')
            .and_then(|rest| rest.strip_suffix(".0"))
            .is_some_and(|major| {
                !major.is_empty() && major.len() <= 3 && major.bytes().all(|b| b.is_ascii_digit())
            });
        if !ok_version {
            return Err(MetaConfigError::Version(self.api_version.clone()));
        }
        match reqwest::Url::parse(&self.graph_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(MetaConfigError::Url(self.graph_url.clone())),
        }
        if self.max_batch == 0 || self.max_batch > MAX_EVENTS_PER_REQUEST {
            return Err(MetaConfigError::Batch(self.max_batch));
        }
        for age in [Some(self.max_event_age), self.physical_store_max_age]
            .into_iter()
            .flatten()
        {
            if age > PHYSICAL_STORE_MAX_WINDOW {
                return Err(MetaConfigError::MaxAge(age));
            }
        }
        if matches!(
            self.default_action_source,
            ActionSource::Website | ActionSource::App
        ) {
            return Err(MetaConfigError::ActionSource(self.default_action_source));
        }
        Ok(())
    }
}

/// Meta's `action_source` values (*server-event*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionSource {
    Website,
    App,
    Email,
    PhoneCall,
    Chat,
    PhysicalStore,
    SystemGenerated,
    BusinessMessaging,
    Other,
}

impl ActionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionSource::Website => "website",
            ActionSource::App => "app",
            ActionSource::Email => "email",
            ActionSource::PhoneCall => "phone_call",
            ActionSource::Chat => "chat",
            ActionSource::PhysicalStore => "physical_store",
            ActionSource::SystemGenerated => "system_generated",
            ActionSource::BusinessMessaging => "business_messaging",
            ActionSource::Other => "other",
        }
    }
}

impl fmt::Display for ActionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown action_source {0:?}: expected one of website, app, email, phone_call, chat, physical_store, system_generated, business_messaging, other")]
pub struct UnknownActionSource(pub String);

impl FromStr for ActionSource {
    type Err = UnknownActionSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "website" => ActionSource::Website,
            "app" => ActionSource::App,
            "email" => ActionSource::Email,
            "phone_call" => ActionSource::PhoneCall,
            "chat" => ActionSource::Chat,
            "physical_store" => ActionSource::PhysicalStore,
            "system_generated" => ActionSource::SystemGenerated,
            "business_messaging" => ActionSource::BusinessMessaging,
            "other" => ActionSource::Other,
            _ => return Err(UnknownActionSource(s.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_version_url_and_batch() {
        let mut c = MetaConfig::default();
        assert!(c.validate().is_ok());
        for bad in [
            "26", "v26", "v26.1", "26.0", "v.0", "vv26.0", "v26.0.0", " v26.0",
        ] {
            c.api_version = bad.into();
            assert!(
                matches!(c.validate(), Err(MetaConfigError::Version(_))),
                "{bad}"
            );
        }
        c.api_version = "v25.0".into();
        c.graph_url = "graph.facebook.com".into();
        assert!(matches!(c.validate(), Err(MetaConfigError::Url(_))));
        c.graph_url = "http://127.0.0.1:9".into();
        c.max_batch = 1001;
        assert!(matches!(c.validate(), Err(MetaConfigError::Batch(1001))));
        c.max_batch = 10;
        for source in [ActionSource::Website, ActionSource::App] {
            c.default_action_source = source;
            assert!(matches!(
                c.validate(),
                Err(MetaConfigError::ActionSource(_))
            ));
        }
    }

    #[test]
    fn the_age_window_depends_on_the_action_source() {
        let days = |d: u64| Duration::from_secs(d * 24 * 3600);
        let mut c = MetaConfig {
            max_event_age: days(30),
            physical_store_max_age: Some(days(62)),
            ..MetaConfig::default()
        };
        assert!(c.validate().is_ok());
        assert_eq!(
            c.max_age_for(ActionSource::BusinessMessaging),
            SEVEN_DAYS_WITH_MARGIN,
            "business messaging stays at 7 days"
        );
        assert_eq!(c.max_age_for(ActionSource::PhysicalStore), days(62));
        assert_eq!(c.max_age_for(ActionSource::Chat), days(30));
        assert_eq!(c.longest_max_age(), days(62));
        c.physical_store_max_age = None;
        assert_eq!(c.max_age_for(ActionSource::PhysicalStore), days(30));
        c.max_event_age = Duration::from_secs(3600);
        assert_eq!(
            c.max_age_for(ActionSource::BusinessMessaging),
            Duration::from_secs(3600),
            "a shorter window applies to business messaging too"
        );
        c.physical_store_max_age = Some(days(63));
        assert!(matches!(c.validate(), Err(MetaConfigError::MaxAge(_))));
    }

    #[test]
    fn action_sources_round_trip() {
        for s in [
            "website",
            "app",
            "email",
            "phone_call",
            "chat",
            "physical_store",
            "system_generated",
            "business_messaging",
            "other",
        ] {
            assert_eq!(s.parse::<ActionSource>().unwrap().as_str(), s);
        }
        assert!("store".parse::<ActionSource>().is_err());
    }
}
