//! Meta as an [`AdPlatform`]: what the pipeline asks of a platform, answered with this
//! module's config, request builder (`payload`), client, retry logic and sink.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tracing::warn;

use super::config::{ActionSource, MetaConfig, MetaConfigError};
use super::payload::{
    build_event, decide_routing, route, supported_action_source, MessagingMode, RoutingRefusal,
};
use super::pixel_options::{self, PixelOptions};
use super::sink::{MetaDestination, MetaSink};
use super::verify::{dataset_verdict, verdict};
use crate::alerts::AlertCause;
use crate::catalog::EventName;
use crate::platforms::credentials::access_token;
use crate::platforms::event::ConversionEvent;
use crate::platforms::platform::{
    AdCampaigns, AdPlatform, Destination, DestinationProblem, Encoded, LocalProblem, Verification,
};
use crate::platforms::Platform;
use crate::secrets::{KeyRing, Secret};
use crate::store::PixelRow;

/// Meta's Conversions API, configured.
#[derive(Debug, Clone)]
pub struct Meta {
    pub(super) sink: Arc<MetaSink>,
}

impl Meta {
    /// Validates the configuration (the same check the doctor reports under Settings).
    pub fn new(config: MetaConfig) -> Result<Self, MetaConfigError> {
        Ok(Self {
            sink: Arc::new(MetaSink::new(config)?),
        })
    }

    pub fn config(&self) -> &MetaConfig {
        self.sink.config()
    }

    pub fn sink(&self) -> &MetaSink {
        &self.sink
    }
}

impl AdPlatform for Meta {
    fn share_limits(&self, shared: &crate::platforms::shared_limits::SharedLimits) {
        self.sink.share_limits(shared);
    }

    fn limits_ready(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(self.sink.limits_ready())
    }

    fn platform(&self) -> Platform {
        Platform::Facebook
    }

    fn label(&self) -> &'static str {
        super::LABEL
    }

    /// Every name of the catalog is one of Meta's standard events, and Meta takes custom
    /// names as they are (business-messaging renaming depends on the customer: `encode`).
    fn event_name(&self, event: &EventName) -> Result<String, LocalProblem> {
        Ok(event.as_str().to_string())
    }

    fn check(
        &self,
        event: &ConversionEvent,
        pixel: &PixelRow,
        now: DateTime<Utc>,
    ) -> Result<(), LocalProblem> {
        let action_source = pixel_action_source(pixel, self.config().default_action_source);
        let waba = pixel
            .waba_id
            .as_deref()
            .map(str::trim)
            .filter(|w| !w.is_empty());
        let routed = match decide_routing(
            MessagingMode::parse(pixel.messaging_mode.as_deref()),
            action_source,
            waba.is_some(),
            event.user.ctwa_clid.is_some(),
            &event.event,
        ) {
            Ok((source, _)) => source,
            Err(RoutingRefusal::BusinessMessagingOnly { suggestion }) => {
                return Err(LocalProblem {
                    cause: AlertCause::BusinessMessagingOnlyEvent,
                    message: format!(
                        "{} is valid only as business messaging (a click-to-WhatsApp customer, ctwa_clid, on a pixel with waba_id); configure {suggestion} instead",
                        event.event.as_str()
                    ),
                    suggestion: Some(suggestion.to_string()),
                    max_age: None,
                });
            }
            Err(RoutingRefusal::UnsupportedActionSource(source)) => {
                return Err(LocalProblem::new(
                    AlertCause::UnsupportedActionSource,
                    format!("action_source {source} needs website or app data (event_source_url and client_user_agent, or app_data) that stagecast does not send"),
                ));
            }
        };
        self.check_conversion_lead(event, pixel)?;
        let age = now.signed_duration_since(event.event_time);
        let window = self.config().max_age_for(routed);
        if age.to_std().is_ok_and(|a| a > window) {
            return Err(LocalProblem::too_old(
                window,
                format!(
                    "the stage change is older than the {} window for {routed} events",
                    humantime::format_duration(window)
                ),
            ));
        }
        Ok(())
    }

    fn encode(&self, event: &ConversionEvent, pixel: &PixelRow, now: DateTime<Utc>) -> Encoded {
        let action_source = pixel_action_source(pixel, self.config().default_action_source);
        let routing = route(
            event,
            action_source,
            pixel.waba_id.as_deref(),
            MessagingMode::parse(pixel.messaging_mode.as_deref()),
        );
        let (mut request, keys) = build_event(event, &routing, now);
        if let serde_json::Value::Object(ev) = &mut request {
            pixel_options::apply(
                ev,
                &PixelOptions::of(pixel),
                routing.action_source,
                &self.config().partner_agent,
            );
        }
        Encoded {
            event_name: routing.event_name,
            json: request.to_string().into(),
            match_quality: crate::match_quality::estimate(&keys),
        }
    }

    fn destination(
        &self,
        pixel: &PixelRow,
        keys: Option<&KeyRing>,
    ) -> Result<Arc<dyn Destination>, DestinationProblem> {
        let token = access_token(pixel, keys)?;
        Ok(Arc::new(MetaDestination {
            sink: self.sink.clone(),
            pixel_ref: pixel.id,
            pixel_id: pixel.pixel_id.clone(),
            token,
            test_event_code: pixel.test_event_code.clone(),
            batch_key: pixel.id.to_string(),
        }))
    }

    fn check_pixel(&self, pixel: &PixelRow) -> Result<(), (String, String)> {
        if pixel.pixel_id.trim().is_empty() {
            return Err((
                "has no pixel id (pixels.pixel_id is empty)".into(),
                "set pixels.pixel_id to the dataset id from Meta's Events Manager".into(),
            ));
        }
        let source = pixel_action_source(pixel, self.config().default_action_source);
        if !supported_action_source(source) {
            return Err((
                format!("uses action_source {source}, which Meta accepts only with event_source_url and client_user_agent (website) or app_data (app); stagecast does not send those, so its events are refused"),
                "set pixels.action_source to physical_store, chat, system_generated or another source stagecast supports".into(),
            ));
        }
        Ok(())
    }

    fn pixel_warnings(&self, pixel: &PixelRow) -> Vec<String> {
        PixelOptions::problems(
            pixel,
            pixel_action_source(pixel, self.config().default_action_source),
        )
    }

    fn verify<'a>(&'a self, pixel: &'a PixelRow, token: &'a Secret) -> BoxFuture<'a, Verification> {
        Box::pin(async move {
            let answer = self
                .sink
                .client()
                .get_object(&pixel.pixel_id, Some("id,name"), token)
                .await;
            let graph_url = crate::local_pg::redact_url(&self.config().graph_url);
            let pixel_verdict = verdict(pixel, answer, &graph_url);
            let waba = pixel
                .waba_id
                .as_deref()
                .map(str::trim)
                .filter(|w| !w.is_empty());
            match (pixel_verdict, waba) {
                (Verification::Ok(_), Some(waba)) => {
                    let answer = self.sink.client().get_edge(waba, "dataset", token).await;
                    dataset_verdict(pixel, waba, answer)
                }
                (other, _) => other,
            }
        })
    }

    fn ad_campaigns(&self) -> Option<&dyn AdCampaigns> {
        self.config()
            .resolve_ads
            .then_some(self as &dyn AdCampaigns)
    }
}

impl Meta {
    /// Conversion Leads (a pixel whose events go as `system_generated`) are about a Lead Ads
    /// lead: without the customer's `lead_id` Meta rejects the event, so it is not sent.
    fn check_conversion_lead(
        &self,
        event: &ConversionEvent,
        pixel: &PixelRow,
    ) -> Result<(), LocalProblem> {
        let routing = route(
            event,
            pixel_action_source(pixel, self.config().default_action_source),
            pixel.waba_id.as_deref(),
            MessagingMode::parse(pixel.messaging_mode.as_deref()),
        );
        if routing.action_source == ActionSource::SystemGenerated && event.user.lead_id.is_none() {
            return Err(LocalProblem::new(
                AlertCause::MissingLeadId,
                "the pixel sends Conversion Leads (action_source system_generated), which need the customer's Lead Ads lead_id (15-17 digits)",
            ));
        }
        Ok(())
    }
}

/// The pixel's `action_source`, else the configured default (a value Meta does not know is
/// logged and replaced by the default, never sent).
fn pixel_action_source(pixel: &PixelRow, default: ActionSource) -> ActionSource {
    match pixel.action_source.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|e| {
            warn!(pixel = %pixel.pixel_id, error = %e, "invalid pixel action_source; using the default");
            default
        }),
    }
}
