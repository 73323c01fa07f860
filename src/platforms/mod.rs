//! The ad platforms behind one interface (docs/architecture.md, "Platforms").
//!
//! At the base, what every platform shares: the neutral conversion event (`event`), the
//! per-event outcome and the neutral delivery error every platform maps into (`outcome`), the
//! interface ([`AdPlatform`], [`Destination`]), the [`Registry`] built at start, the platforms'
//! flags (`args`), token reading (`credentials`), the per-destination limiter
//! (`rate_limit`), the holds of destinations refused for their configuration (`holds`), and
//! their link to the database, which every worker on it shares (`shared_limits`). Then one
//! module per platform, each split like Vector's HTTP sinks: config →
//! request builder (`payload`) → service (`client`), with a `RetryLogic` (`retry`) deciding
//! *whether* to retry, kept apart from the queue's backoff deciding *when*, and a sink.

pub mod args;
pub mod credentials;
pub mod event;
pub mod google_ads;
pub mod holds;
pub mod meta;
pub mod outcome;
pub mod platform;
pub mod rate_limit;
pub mod registry;
pub mod response;
pub mod send_loop;
pub mod shared_limits;
pub mod tiktok;

pub use platform::{AdPlatform, Destination};
pub use registry::{PlatformsConfig, Registry};

use std::fmt;

/// Platforms a stage's `utm_event` config can name: the data contract's vocabulary, whether or
/// not this version delivers to them (the [`Registry`] says which it does).
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

    /// How its API is named in messages ("not checked against the Graph API").
    pub fn api_name(self) -> &'static str {
        match self {
            Platform::Facebook => meta::API_NAME,
            Platform::GoogleAds => google_ads::API_NAME,
            Platform::Tiktok => tiktok::API_NAME,
        }
    }

    /// What the platform calls the id of a failed request that its support asks for.
    pub fn trace_name(self) -> &'static str {
        match self {
            Platform::Facebook => meta::TRACE_NAME,
            Platform::Tiktok => tiktok::TRACE_NAME,
            Platform::GoogleAds => google_ads::TRACE_NAME,
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
