//! The interface every ad platform implements (docs/architecture.md, "Adding a platform").
//!
//! The pipeline resolves a stage change into [`ConversionEvent`]s (campaign → pixel → value →
//! currency) and from then on asks the platform the stage config names, through
//! [`AdPlatform`], for everything platform-specific:
//!
//! 1. [`AdPlatform::event_name`]: the platform's name for the configured event (or the issue
//!    that becomes an alert);
//! 2. [`AdPlatform::check`]: local checks before anything is sent (age window, identifiers);
//! 3. [`AdPlatform::encode`]: the event in the platform's wire format, encoded once;
//! 4. [`AdPlatform::destination`]: the credentials and batching key of a `pixels` row;
//! 5. [`Destination::deliver`]: a batch, reporting exactly one [`EventResult`] per event,
//!    streamed per request so a job is written back as soon as its last request answered.
//!
//! Inside, each platform keeps Vector's split: config → request builder → service (client) →
//! retry logic (*whether* to retry, by the platform's codes) → sink (batching, rate limit). The
//! queue's backoff decides *when*.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::event::ConversionEvent;
use super::outcome::{EventResult, PreparedEvent};
use super::Platform;
use crate::alerts::AlertCause;
use crate::catalog::EventName;
use crate::queue::Lease;
use crate::secrets::{KeyRing, Secret};
use crate::store::PixelRow;

/// One ad platform, registered at start ([`super::Registry`]).
pub trait AdPlatform: Send + Sync + 'static {
    /// Which platform of the data contract this is: the name in `utm_event[].platform`,
    /// `pixels.platform`, the audit and the event id.
    fn platform(&self) -> Platform;

    /// The `platform` label of its metrics: one bounded value per platform.
    fn label(&self) -> &'static str {
        self.platform().code()
    }

    /// The platform's name for an event a stage config names (`utm_event[].event_name`, or
    /// its custom name), or why it has none: the problem becomes the alert (e.g.
    /// `unknown_event_name` with a suggestion).
    fn event_name(&self, event: &EventName) -> Result<String, LocalProblem>;

    /// What must hold before the event is sent at all (the platform's age window, the
    /// identifiers it requires). A problem fails the event with its alert, without a request.
    fn check(
        &self,
        event: &ConversionEvent,
        pixel: &PixelRow,
        now: DateTime<Utc>,
    ) -> Result<(), LocalProblem>;

    /// The event as the platform's API takes it, encoded once (the same bytes go in every
    /// request that carries it and in the audit).
    fn encode(&self, event: &ConversionEvent, pixel: &PixelRow, now: DateTime<Utc>) -> Encoded;

    /// Where events for this pixel row go: its credentials (from the row and the key ring)
    /// and its batching key. A problem fails the events with its alert.
    fn destination(
        &self,
        pixel: &PixelRow,
        keys: Option<&KeyRing>,
    ) -> Result<Arc<dyn Destination>, DestinationProblem>;

    /// `stagecast doctor`: what the platform's own API says of this destination's credentials,
    /// classified the way a delivery would be. `token` is the row's token, opened.
    fn verify<'a>(&'a self, pixel: &'a PixelRow, token: &'a Secret) -> BoxFuture<'a, Verification>;

    /// What must be true of a pixel row before its credentials are worth checking (e.g. an
    /// id), as the doctor reports it: `Err((found, fix))`.
    fn check_pixel(&self, pixel: &PixelRow) -> Result<(), (String, String)> {
        let _ = pixel;
        Ok(())
    }

    /// What works but deserves a warning in a pixel row's options (the doctor lists them).
    fn pixel_warnings(&self, pixel: &PixelRow) -> Vec<String> {
        let _ = pixel;
        Vec::new()
    }

    /// Click-to-WhatsApp ads carry only an ad id: a platform that can say which of its
    /// campaigns an ad belongs to offers it here (see [`AdCampaigns`]).
    fn ad_campaigns(&self) -> Option<&dyn AdCampaigns> {
        None
    }

    /// Share its rate limits, pauses and holds with every worker on the database (called once
    /// when a pipeline is built; a platform without limits ignores it).
    fn share_limits(&self, _shared: &crate::platforms::shared_limits::SharedLimits) {}

    /// Resolves when its shared state was read once (a worker that just started learns the
    /// holds found before it, before its first request).
    fn limits_ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A resolved destination: one per `pixels` row in a batch of jobs, holding its credentials.
pub trait Destination: Send + Sync {
    /// Events whose destinations share a key go in the same requests (Meta: one pixel; a
    /// platform whose requests carry the target per event may batch several rows together).
    fn batch_key(&self) -> &str;

    /// Send `events`, streaming the results of each request to `ctx.results` as soon as it
    /// answers: exactly one result per event in total. A request starts only while `ctx.lease`
    /// outlasts it, and none starts once `ctx.shutdown` is cancelled.
    fn deliver<'a>(
        &'a self,
        events: Vec<PreparedEvent>,
        ctx: DeliveryContext<'a>,
    ) -> BoxFuture<'a, ()>;
}

/// What a delivery runs under (one per handler batch).
#[derive(Clone, Copy)]
pub struct DeliveryContext<'a> {
    pub shutdown: &'a CancellationToken,
    pub lease: &'a Lease,
    pub results: &'a mpsc::UnboundedSender<Vec<EventResult>>,
}

/// An event in the platform's wire format.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The event name as sent (it may differ from the configured one, e.g. Meta's
    /// business-messaging names): the audit's `event_name`.
    pub event_name: String,
    pub json: Arc<str>,
    /// Match-key coverage, 0–10 (docs/match-quality.md).
    pub match_quality: f32,
}

/// Why an event is not sent (permanent for this event), with its alert.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalProblem {
    pub cause: AlertCause,
    pub message: String,
    /// What to write instead, when there is an obvious candidate (an event name).
    pub suggestion: Option<String>,
    /// The age window applied, for `event_too_old`: the alert names it.
    pub max_age: Option<std::time::Duration>,
}

impl LocalProblem {
    pub fn new(cause: AlertCause, message: impl Into<String>) -> Self {
        Self {
            cause,
            message: message.into(),
            suggestion: None,
            max_age: None,
        }
    }

    /// `event_too_old` for an event past `window`.
    pub fn too_old(window: std::time::Duration, message: impl Into<String>) -> Self {
        Self {
            max_age: Some(window),
            ..Self::new(AlertCause::EventTooOld, message)
        }
    }
}

/// Why a destination cannot be used now (no token, a token that does not open), with its alert.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationProblem {
    pub cause: AlertCause,
    pub message: String,
}

/// The doctor's verdict on one destination's credentials.
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    Ok(String),
    Warning { found: String, fix: String },
    Problem { found: String, fix: String },
}

/// What an ad lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum AdLookup {
    /// The platform's id of the ad's campaign.
    Campaign(String),
    /// The platform answered: the ad has no campaign it can see.
    NoCampaign,
    /// No answer (no token, network): ask again next time.
    Unknown,
}

/// Which platform campaign an ad belongs to.
pub trait AdCampaigns: Send + Sync {
    /// Look `ad_id` up with the credentials of one of `pixels` (the platform picks which).
    fn campaign_of<'a>(
        &'a self,
        ad_id: &'a str,
        pixels: &'a [PixelRow],
        keys: Option<&'a KeyRing>,
    ) -> BoxFuture<'a, AdLookup>;
}
