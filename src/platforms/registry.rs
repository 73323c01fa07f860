//! The platforms this process delivers to, built once at start from the configuration
//! (`stagecast run`'s flags, [`super::args::PlatformArgs`]). The pipeline resolves a stage
//! change's fallbacks, then hands each event to the platform its stage config names; a platform
//! that is not registered gets the `unsupported_platform` alert.
//!
//! Adding a platform: a module under `src/platforms/` implementing [`AdPlatform`], one line in
//! [`PLATFORMS`], its configuration in [`PlatformsConfig`] and its flags in `PlatformArgs`.

use std::sync::Arc;

use super::google_ads::{GoogleAds, GoogleAdsConfig};
use super::meta::{Meta, MetaConfig};
use super::platform::{AdCampaigns, AdPlatform};
use super::tiktok::{Tiktok, TiktokConfig};
use super::Platform;

/// Every platform's configuration.
#[derive(Debug, Clone, Default)]
pub struct PlatformsConfig {
    pub meta: MetaConfig,
    pub tiktok: TiktokConfig,
    pub google_ads: GoogleAdsConfig,
}

impl PlatformsConfig {
    /// The same configuration with every platform's request timeout set to `timeout` (the
    /// doctor checks each destination within its own `--timeout`).
    pub fn with_request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.meta.timeout = timeout;
        self.tiktok.timeout = timeout;
        self.google_ads.timeout = timeout;
        self
    }
}

/// A platform whose configuration cannot be used (its own error says why and what to set).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct PlatformConfigError {
    pub platform: Platform,
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

fn invalid<E: std::error::Error + Send + Sync + 'static>(
    platform: Platform,
) -> impl FnOnce(E) -> PlatformConfigError {
    move |e| PlatformConfigError {
        platform,
        error: Box::new(e),
    }
}

fn shared(p: impl AdPlatform) -> Arc<dyn AdPlatform> {
    Arc::new(p)
}

type Build = fn(&PlatformsConfig) -> Result<Arc<dyn AdPlatform>, PlatformConfigError>;

/// Every platform stagecast has, and how to build it from its configuration: one registration
/// line each.
const PLATFORMS: &[(Platform, Build)] = &[
    (Platform::Facebook, |c| {
        Meta::new(c.meta.clone())
            .map(shared)
            .map_err(invalid(Platform::Facebook))
    }),
    (Platform::Tiktok, |c| {
        Tiktok::new(c.tiktok.clone())
            .map(shared)
            .map_err(invalid(Platform::Tiktok))
    }),
    (Platform::GoogleAds, |c| {
        GoogleAds::new(c.google_ads.clone())
            .map(shared)
            .map_err(invalid(Platform::GoogleAds))
    }),
];

/// The platforms this version can deliver to (whether or not their settings are valid).
pub fn available() -> impl Iterator<Item = Platform> {
    PLATFORMS.iter().map(|(p, _)| *p)
}

fn build(config: &PlatformsConfig) -> Vec<Result<Arc<dyn AdPlatform>, PlatformConfigError>> {
    PLATFORMS.iter().map(|(_, build)| build(config)).collect()
}

/// The registered platforms.
#[derive(Clone, Default)]
pub struct Registry {
    platforms: Vec<Arc<dyn AdPlatform>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.platforms.iter().map(|p| p.platform()))
            .finish()
    }
}

impl Registry {
    /// Every platform, or the first configuration that cannot be used (`stagecast run`
    /// refuses to start with it).
    pub fn from_config(config: &PlatformsConfig) -> Result<Self, PlatformConfigError> {
        let platforms = build(config).into_iter().collect::<Result<_, _>>()?;
        Ok(Self::new(platforms))
    }

    /// The platforms whose configuration can be used, and the errors of the others (the
    /// doctor reports those and goes on with the rest).
    pub fn from_config_lenient(config: &PlatformsConfig) -> (Self, Vec<PlatformConfigError>) {
        let (ok, invalid): (Vec<_>, Vec<_>) = build(config).into_iter().partition(Result::is_ok);
        (
            Self::new(ok.into_iter().filter_map(Result::ok).collect()),
            invalid.into_iter().filter_map(Result::err).collect(),
        )
    }

    /// These platforms, and no others (a later one for the same platform is ignored).
    pub fn new(platforms: Vec<Arc<dyn AdPlatform>>) -> Self {
        let mut unique: Vec<Arc<dyn AdPlatform>> = Vec::new();
        for p in platforms {
            if !unique.iter().any(|u| u.platform() == p.platform()) {
                unique.push(p);
            }
        }
        Self { platforms: unique }
    }

    /// The platform a stage config names, if it is registered.
    pub fn get(&self, platform: Platform) -> Option<&dyn AdPlatform> {
        self.platforms
            .iter()
            .find(|p| p.platform() == platform)
            .map(|p| p.as_ref())
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn AdPlatform> {
        self.platforms.iter().map(|p| p.as_ref())
    }

    /// The one registered platform, when there is exactly one (a job that failed before its
    /// stage config was read is reported against it).
    pub fn only(&self) -> Option<&dyn AdPlatform> {
        match self.platforms.as_slice() {
            [one] => Some(one.as_ref()),
            _ => None,
        }
    }

    /// The first registered platform that can look ads up.
    pub fn ad_campaigns(&self) -> Option<&dyn AdCampaigns> {
        self.iter().find_map(|p| p.ad_campaigns())
    }

    /// Create each platform's series at zero (`metrics_catalog`), once the recorder is installed.
    /// Share every platform's limits through `shared`'s database (see `shared_limits`).
    pub fn share_limits(&self, shared: &super::shared_limits::SharedLimits) {
        for p in self.iter() {
            p.share_limits(shared);
        }
    }

    /// Resolves when every platform's shared state was read once (at once afterwards).
    pub async fn limits_ready(&self) {
        for p in self.iter() {
            p.limits_ready().await;
        }
    }

    pub fn register_metrics(&self) {
        for p in self.iter() {
            crate::metrics_catalog::register_platform(p.label());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_every_platform_and_reports_invalid_configurations() {
        let registry = Registry::from_config(&PlatformsConfig::default()).unwrap();
        assert!(registry.get(Platform::Facebook).is_some());
        assert!(registry.get(Platform::Tiktok).is_some());
        assert!(registry.get(Platform::GoogleAds).is_some());
        assert!(registry.only().is_none(), "three platforms");

        let mut bad = PlatformsConfig::default();
        bad.meta.api_version = "26".into();
        let e = Registry::from_config(&bad).unwrap_err();
        assert_eq!(e.platform, Platform::Facebook);
        assert!(e.to_string().contains("expected the form vNN.0"), "{e}");
        let (lenient, errors) = Registry::from_config_lenient(&bad);
        assert!(lenient.get(Platform::Facebook).is_none());
        assert!(
            lenient.get(Platform::Tiktok).is_some(),
            "the others still build"
        );
        assert_eq!(errors.len(), 1);

        let mut bad = PlatformsConfig::default();
        bad.tiktok.max_batch = 5000;
        let e = Registry::from_config(&bad).unwrap_err();
        assert_eq!(e.platform, Platform::Tiktok);
        assert!(e.to_string().contains("1 to 1000 events"), "{e}");
    }
}
