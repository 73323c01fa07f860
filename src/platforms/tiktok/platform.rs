//! TikTok as an [`AdPlatform`]: what the pipeline asks of a platform, answered with this
//! module's config, event names, request builder, client, retry logic and sink.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tracing::warn;

use super::config::{EventSource, TiktokConfig, TiktokConfigError};
use super::names::tiktok_name;
use super::payload::build_event;
use super::sink::{TiktokDestination, TiktokSink};
use super::verify::verdict;
use crate::catalog::EventName;
use crate::platforms::credentials::access_token;
use crate::platforms::event::ConversionEvent;
use crate::platforms::platform::{
    AdPlatform, Destination, DestinationProblem, Encoded, LocalProblem, Verification,
};
use crate::platforms::Platform;
use crate::secrets::{KeyRing, Secret};
use crate::store::PixelRow;

/// TikTok's Events API 2.0, configured.
#[derive(Debug, Clone)]
pub struct Tiktok {
    sink: Arc<TiktokSink>,
}

impl Tiktok {
    /// Validates the configuration (the same check the doctor reports under Settings).
    pub fn new(config: TiktokConfig) -> Result<Self, TiktokConfigError> {
        Ok(Self {
            sink: Arc::new(TiktokSink::new(config)?),
        })
    }

    pub fn config(&self) -> &TiktokConfig {
        self.sink.config()
    }

    /// The row's `event_source`: `pixels.action_source` (`crm` or `web`), else the configured
    /// default. A value TikTok does not take is logged and replaced by the default.
    pub fn event_source(&self, pixel: &PixelRow) -> EventSource {
        let default = self.config().default_event_source;
        match pixel.action_source.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => default,
            Some(s) => s.parse().unwrap_or_else(|e| {
                warn!(pixel = %pixel.pixel_id, error = %e, "invalid TikTok event_source in pixels.action_source; using the default");
                default
            }),
        }
    }
}

impl AdPlatform for Tiktok {
    fn share_limits(&self, shared: &crate::platforms::shared_limits::SharedLimits) {
        self.sink.share_limits(shared);
    }

    fn limits_ready(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(self.sink.limits_ready())
    }

    fn platform(&self) -> Platform {
        Platform::Tiktok
    }

    fn label(&self) -> &'static str {
        super::LABEL
    }

    fn event_name(&self, event: &EventName) -> Result<String, LocalProblem> {
        tiktok_name(event)
    }

    fn check(
        &self,
        event: &ConversionEvent,
        _pixel: &PixelRow,
        now: DateTime<Utc>,
    ) -> Result<(), LocalProblem> {
        let age = now.signed_duration_since(event.event_time);
        let window = self.config().max_event_age;
        if age.to_std().is_ok_and(|a| a > window) {
            return Err(LocalProblem::too_old(
                window,
                "the stage change is older than the TikTok event window (--tiktok-max-event-age)",
            ));
        }
        Ok(())
    }

    fn encode(&self, event: &ConversionEvent, pixel: &PixelRow, now: DateTime<Utc>) -> Encoded {
        let (json, keys) = build_event(
            event,
            self.event_source(pixel),
            &self.config().lead_event_source,
            now,
        );
        Encoded {
            event_name: event.name.clone(),
            json: json.to_string().into(),
            match_quality: crate::match_quality::estimate(&keys),
        }
    }

    fn destination(
        &self,
        pixel: &PixelRow,
        keys: Option<&KeyRing>,
    ) -> Result<Arc<dyn Destination>, DestinationProblem> {
        let token = access_token(pixel, keys)?;
        Ok(Arc::new(TiktokDestination {
            sink: self.sink.clone(),
            pixel_ref: pixel.id,
            source_id: pixel.pixel_id.trim().to_string(),
            source: self.event_source(pixel),
            token,
            test_event_code: pixel.test_event_code.clone(),
            // One batch per pixel row: each row has its own token and event source.
            batch_key: format!("tiktok:{}", pixel.id),
        }))
    }

    fn check_pixel(&self, pixel: &PixelRow) -> Result<(), (String, String)> {
        if pixel.pixel_id.trim().is_empty() {
            return Err((
                "has no event set id (pixels.pixel_id is empty)".into(),
                "set pixels.pixel_id to the CRM event set id (or pixel code) from TikTok's Events Manager".into(),
            ));
        }
        Ok(())
    }

    fn verify<'a>(&'a self, pixel: &'a PixelRow, token: &'a Secret) -> BoxFuture<'a, Verification> {
        Box::pin(async move {
            let body = super::payload::request_body(
                self.event_source(pixel),
                pixel.pixel_id.trim(),
                None,
                &[],
            );
            let answer = self.sink.client().track(token, body).await;
            let base_url = crate::local_pg::redact_url(&self.config().base_url);
            verdict(pixel, answer, &base_url)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertCause;
    use crate::platforms::event::UserIdentity;

    fn pixel(action_source: Option<&str>) -> PixelRow {
        PixelRow {
            id: 2,
            platform: "tiktok".into(),
            name: None,
            pixel_id: " CRM1 ".into(),
            access_token: Some("tt-token".into()),
            access_token_enc: None,
            active: true,
            is_default: true,
            waba_id: None,
            test_event_code: None,
            action_source: action_source.map(str::to_string),
            messaging_mode: None,
            options: None,
        }
    }

    fn event(age: chrono::Duration) -> ConversionEvent {
        ConversionEvent {
            event_id: "e".into(),
            event: crate::catalog::resolve(Some("Lead"), None).unwrap(),
            name: "Lead".into(),
            event_time: Utc::now() - age,
            value: None,
            currency: None,
            stage_name: None,
            funnel_category: None,
            campaign_name: None,
            user: Arc::new(UserIdentity::default()),
            ad: None,
            order_id: None,
        }
    }

    #[test]
    fn the_rows_event_source_or_the_default() {
        let t = Tiktok::new(TiktokConfig::default()).unwrap();
        assert_eq!(t.event_source(&pixel(None)), EventSource::Crm);
        assert_eq!(t.event_source(&pixel(Some(" WEB "))), EventSource::Web);
        // A Meta action_source left on a TikTok row is not TikTok's: the default, no panic.
        assert_eq!(
            t.event_source(&pixel(Some("physical_store"))),
            EventSource::Crm
        );
        let web = Tiktok::new(TiktokConfig {
            default_event_source: EventSource::Web,
            ..TiktokConfig::default()
        })
        .unwrap();
        assert_eq!(web.event_source(&pixel(Some(""))), EventSource::Web);
    }

    #[test]
    fn events_older_than_the_window_are_not_sent() {
        let t = Tiktok::new(TiktokConfig::default()).unwrap();
        let p = pixel(None);
        assert!(t
            .check(&event(chrono::Duration::hours(1)), &p, Utc::now())
            .is_ok());
        let old = t
            .check(&event(chrono::Duration::days(8)), &p, Utc::now())
            .unwrap_err();
        assert_eq!(old.cause, AlertCause::EventTooOld);
        assert_eq!(old.max_age, Some(TiktokConfig::default().max_event_age));
        let long = Tiktok::new(TiktokConfig {
            max_event_age: std::time::Duration::from_secs(28 * 24 * 3600),
            ..TiktokConfig::default()
        })
        .unwrap();
        let past = long
            .check(&event(chrono::Duration::days(30)), &p, Utc::now())
            .unwrap_err();
        assert_eq!(
            past.max_age,
            Some(std::time::Duration::from_secs(28 * 24 * 3600)),
            "the alert names the window configured"
        );
    }

    #[test]
    fn the_destination_trims_the_id_and_batches_per_row() {
        let t = Tiktok::new(TiktokConfig::default()).unwrap();
        let d = t.destination(&pixel(Some("web")), None).unwrap();
        assert_eq!(d.batch_key(), "tiktok:2");
        let mut none = pixel(None);
        none.access_token = None;
        let problem = t.destination(&none, None).err().unwrap();
        assert_eq!(problem.cause, AlertCause::TokenMissing);
        assert!(t.check_pixel(&pixel(None)).is_ok());
        let mut empty = pixel(None);
        empty.pixel_id = "  ".into();
        assert!(t.check_pixel(&empty).is_err());
    }
}
