//! Planning: every configured event of every job, resolved into an event to send. For each
//! `utm_event` entry: the platform it names must be registered; the platform names the event;
//! the fallbacks resolve campaign → pixel → value → currency (`resolve`); the event gets its
//! hashed identity and deterministic id; the platform's local checks pass; the platform encodes
//! it (the ledger then drops what is already delivered: `stage_change::skip_delivered`). Anything missing is the alert that names the fix.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::work::{JobWork, PendingEvent};
use super::{event_config, identity, resolve, Pipeline};
use crate::alerts::{AlertCause, AlertDetails};
use crate::platforms::event::{event_id, order_id, ConversionEvent, UserIdentity};
use crate::store::{PixelRow, StageChangeContext};

impl Pipeline {
    /// Resolve every configured event of every job; returns the events to send.
    pub(super) fn plan(
        &self,
        works: &mut [JobWork],
        contexts: Vec<StageChangeContext>,
        pixels: &[PixelRow],
        now: DateTime<Utc>,
    ) -> Vec<PendingEvent> {
        let mut by_job: HashMap<i64, StageChangeContext> =
            contexts.into_iter().map(|c| (c.job_id, c)).collect();
        let mut pending = Vec::new();
        let mut parsed_configs: HashMap<
            i64,
            Vec<Result<event_config::EventConfig, event_config::ConfigIssue>>,
        > = HashMap::new();
        for (index, w) in works.iter_mut().enumerate() {
            // Planning is synchronous: the span is entered, never held across an await.
            let span = w.span.clone();
            let _entered = span.enter();
            let Some(change) = w.change.clone() else {
                continue;
            };
            let Some(ctx) = by_job.remove(&w.job.id) else {
                w.failures.push("stage change context not found".into());
                continue;
            };
            let Some(customer_id) = ctx.customer_id else {
                w.failures
                    .push(format!("customer {} no longer exists", change.customer_id));
                continue;
            };
            if ctx.stage_id.is_none() {
                w.failures
                    .push(format!("stage {} no longer exists", change.to_stage_id));
                continue;
            }
            w.stage_name = ctx.stage_name.clone();
            // A batch is usually one bulk move to one stage: parse each stage's config once.
            let stage_id = ctx.stage_id.unwrap_or_default();
            let configs = parsed_configs
                .entry(stage_id)
                .or_insert_with(|| {
                    event_config::parse(ctx.utm_event.as_ref().unwrap_or(&Value::Null))
                })
                .clone();
            let mut identity: Option<Arc<UserIdentity>> = None;
            let ad = identity::ad_info(&ctx).map(Arc::new);
            for config in configs {
                let base = AlertDetails {
                    stage_name: ctx.stage_name.clone(),
                    campaign: ctx.campaign_name.clone(),
                    ..AlertDetails::default()
                };
                let config = match config {
                    Ok(c) => c,
                    Err(issue) => {
                        w.failures.push(issue.message.clone());
                        w.alert(
                            issue.cause,
                            AlertDetails {
                                platform: issue.platform,
                                event_name: issue.event_name,
                                suggestion: issue.suggestion,
                                error: Some(issue.message),
                                ..base
                            },
                        );
                        continue;
                    }
                };
                let details = AlertDetails {
                    platform: Some(config.platform.code().to_string()),
                    event_name: Some(config.event.as_str().to_string()),
                    ..base
                };
                let Some(platform) = self.platforms.get(config.platform) else {
                    w.failures
                        .push(format!("{}: platform not supported yet", config.platform));
                    w.alert(AlertCause::UnsupportedPlatform, details);
                    continue;
                };
                let name = match platform.event_name(&config.event) {
                    Ok(name) => name,
                    Err(problem) => {
                        w.failures.push(problem.message.clone());
                        w.alert(
                            problem.cause,
                            AlertDetails {
                                suggestion: problem.suggestion,
                                error: Some(problem.message),
                                ..details
                            },
                        );
                        continue;
                    }
                };
                let resolved =
                    match resolve::resolve(&ctx, &config, pixels, &self.config.default_currency) {
                        Ok(r) => r,
                        Err(problem) => {
                            w.failures.push(format!(
                                "{}: {}",
                                config.event.as_str(),
                                problem.message
                            ));
                            w.alert(
                                problem.cause,
                                AlertDetails {
                                    pixel: problem.pixel,
                                    error: Some(problem.message),
                                    ..details
                                },
                            );
                            continue;
                        }
                    };
                let pixel = resolved.pixel;
                let user = identity
                    .get_or_insert_with(|| Arc::new(identity::build(&ctx, &self.normalizer, now)))
                    .clone();
                let event = ConversionEvent {
                    event_id: event_id(
                        customer_id,
                        change.to_stage_id,
                        change.changed_at,
                        platform.platform().code(),
                        &pixel.pixel_id,
                        config.event.as_str(),
                    ),
                    event: config.event.clone(),
                    name,
                    event_time: change.changed_at,
                    value: resolved.value.map(|(v, _)| v),
                    currency: Some(resolved.currency.clone()),
                    stage_name: ctx.stage_name.clone(),
                    funnel_category: ctx.funnel_category.clone(),
                    campaign_name: ctx.campaign_name.clone(),
                    order_id: (config.event.as_str() == "Purchase")
                        .then(|| order_id(customer_id, change.to_stage_id, change.changed_at)),
                    user,
                    ad: ad.clone(),
                };
                if let Err(problem) = platform.check(&event, pixel, now) {
                    w.failures
                        .push(format!("{}: {}", config.event.as_str(), problem.message));
                    w.alert(
                        problem.cause,
                        AlertDetails {
                            pixel: Some(pixel.pixel_id.clone()),
                            suggestion: problem.suggestion,
                            max_age_secs: problem.max_age.map(|w| w.as_secs()),
                            error: Some(problem.message),
                            ..details
                        },
                    );
                    continue;
                }
                let destination = format!("{}:{}", platform.platform().code(), pixel.pixel_id);
                w.destinations.insert(destination);
                let encoded = platform.encode(&event, pixel, now);
                pending.push(PendingEvent {
                    work: index,
                    platform: platform.platform(),
                    label: platform.label(),
                    pixel_ref: pixel.id,
                    pixel_id: pixel.pixel_id.clone(),
                    event_id: event.event_id,
                    event_name: encoded.event_name,
                    event_time: change.changed_at,
                    json: encoded.json,
                    match_quality: encoded.match_quality,
                    details: AlertDetails {
                        pixel: Some(pixel.pixel_id.clone()),
                        ..details
                    },
                });
            }
            w.record_destination();
        }
        pending
    }
}
