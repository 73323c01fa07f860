//! The platforms' flags of `stagecast run` (each platform's own group, flattened here) and what
//! they mean for the commands that check them: the doctor's Settings lines and the rules
//! between the platforms' timeouts and the worker's lease, drain and retention
//! (`settings::consistency`). Adding a platform adds its group here, next to its registration
//! line in [`super::registry`].

use std::time::Duration;

use clap::Args;

use super::google_ads::GoogleAdsArgs;
use super::meta::MetaArgs;
use super::registry::PlatformsConfig;
use super::tiktok::TiktokArgs;
use super::Platform;

#[derive(Debug, Args, Clone)]
pub struct PlatformArgs {
    #[command(flatten)]
    pub meta: MetaArgs,
    #[command(flatten)]
    pub tiktok: TiktokArgs,
    #[command(flatten)]
    pub google_ads: GoogleAdsArgs,
    /// How long a destination pauses, for every worker on the database, when its platform
    /// throttles it without saying when to come back (Meta without estimated_time_to_regain_access
    /// or Retry-After, TikTok's 40100, Google without retryDelay); doubled while the platform
    /// keeps throttling, up to 15 minutes. The platform's own estimate always wins. Meta's usage
    /// headers past 90 % without an estimate pause a pixel for half of it.
    #[arg(long, env = "STAGECAST_THROTTLE_PAUSE", default_value = "60s", value_parser = parse_throttle_pause)]
    pub throttle_pause: Duration,
}

/// A pause of zero would send to a throttled destination again at once.
fn parse_throttle_pause(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) {
        return Err("a throttle pause must be at least 100ms".into());
    }
    Ok(d)
}

impl PlatformArgs {
    /// Every platform's configuration, for [`super::Registry::from_config`].
    pub fn config(&self) -> PlatformsConfig {
        let mut config = PlatformsConfig {
            meta: self.meta.meta_config(),
            tiktok: self.tiktok.tiktok_config(),
            google_ads: self.google_ads.google_ads_config(),
        };
        config.meta.throttle_pause = self.throttle_pause;
        config.tiktok.throttle_pause = self.throttle_pause;
        config.google_ads.throttle_pause = self.throttle_pause;
        config
    }

    /// One Settings line of the doctor per platform.
    pub fn settings_checks(&self) -> Vec<SettingsCheck> {
        vec![
            self.meta.settings_check(),
            self.tiktok.settings_check(),
            self.google_ads.settings_check(),
        ]
    }

    /// What each platform's requests and event windows ask of the worker's settings.
    pub fn limits(&self) -> Vec<RequestLimits> {
        vec![
            self.meta.limits(),
            self.tiktok.limits(),
            self.google_ads.limits(),
        ]
    }
}

/// A platform's settings as the doctor reports them: `Ok(what is configured)` or
/// `Err((what is wrong, the fix))`, from the validation the platform starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsCheck {
    /// The check's id under `settings.` (stable: monitoring keys on it).
    pub id: &'static str,
    pub title: &'static str,
    pub result: Result<String, (String, String)>,
}

/// A platform's request timeout and event window, with the flags that set them, and the ids of
/// the rules that compare them with the worker's settings (stable: the doctor's check ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLimits {
    pub platform: Platform,
    /// How one request is named in messages: `a Conversions API request`.
    pub request: &'static str,
    pub timeout: Duration,
    /// `--meta-timeout`, and with its environment twin: `--meta-timeout (STAGECAST_META_TIMEOUT)`.
    pub timeout_flag: &'static str,
    pub timeout_setting: &'static str,
    /// Events older than this are not sent, nor replayed.
    pub max_event_age: Duration,
    pub max_event_age_setting: &'static str,
    /// The lease must outlast a request; the drain must outlast a request; the ledger must
    /// outlive the event window.
    pub lease_rule: &'static str,
    pub drain_rule: &'static str,
    pub retention_rule: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        platforms: PlatformArgs,
    }

    fn config(args: &[&str]) -> PlatformsConfig {
        Cli::try_parse_from(std::iter::once("stagecast").chain(args.iter().copied()))
            .expect("flags parse")
            .platforms
            .config()
    }

    fn pauses(c: &PlatformsConfig) -> [Duration; 3] {
        [
            c.meta.throttle_pause,
            c.tiktok.throttle_pause,
            c.google_ads.throttle_pause,
        ]
    }

    #[test]
    fn the_throttle_pause_reaches_every_platform() {
        assert_eq!(pauses(&config(&[])), [Duration::from_secs(60); 3]);
        assert_eq!(
            pauses(&config(&["--throttle-pause", "2s"])),
            [Duration::from_secs(2); 3]
        );
        for bad in ["0s", "10ms", "soon"] {
            assert!(
                Cli::try_parse_from(["stagecast", "--throttle-pause", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
