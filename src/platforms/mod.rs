//! One module per ad platform, each split like Vector's HTTP sinks: config → request builder
//! (`payload`) → service (`client`), with a `RetryLogic` (`retry`) deciding *whether* to retry,
//! kept apart from the queue's backoff deciding *when*.

pub mod meta;
pub mod rate_limit;

use std::fmt;

/// Platforms a stage's `utm_event` config can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Facebook,
    GoogleAds,
    Tiktok,
}

impl Platform {
    /// The value stored in `utm_event[].platform`, `pixels.platform` and metrics labels.
    pub fn code(self) -> &'static str {
        match self {
            Platform::Facebook => "facebook",
            Platform::GoogleAds => "google_ads",
            Platform::Tiktok => "tiktok",
        }
    }

    /// Accepts the contract's names plus common aliases CRMs write.
    pub fn parse(s: &str) -> Option<Platform> {
        match s.trim().to_ascii_lowercase().as_str() {
            "facebook" | "meta" | "instagram" => Some(Platform::Facebook),
            "google_ads" | "google" | "googleads" | "google-ads" => Some(Platform::GoogleAds),
            "tiktok" | "tik_tok" => Some(Platform::Tiktok),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
