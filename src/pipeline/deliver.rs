//! Delivery: the planned events grouped per destination (one per `pixels` row, resolved by its
//! platform with the row's credentials), the groups sharing a batching key sent together, all
//! destinations concurrently. Results stream back per request; a job is finished and handed to
//! the completer as soon as its last event is resolved.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::mpsc;

use super::work::{JobWork, PendingEvent};
use super::Pipeline;
use crate::alerts::{AlertCause, AlertDetails};
use crate::platforms::outcome::{DeliveryError, EventOutcome, EventResult, PreparedEvent};
use crate::platforms::platform::{DeliveryContext, Destination};
use crate::platforms::Platform;
use crate::queue::BatchContext;
use crate::store::{ClaimedJob, DeliveryRow, PixelRow, WriteBack};

impl Pipeline {
    /// Send pending events, one concurrent delivery per destination. Results stream back per
    /// request;
    /// a job is finished and handed to the completer as soon as its last event is resolved.
    pub(super) async fn deliver(
        &self,
        ctx: &BatchContext,
        works: &mut [JobWork],
        pending: Vec<PendingEvent>,
        pixels: &[PixelRow],
    ) {
        // A worker that just started first learns the holds other workers found.
        self.platforms.limits_ready().await;
        let mut groups: HashMap<(Platform, i64), Vec<usize>> = HashMap::new();
        for (i, p) in pending.iter().enumerate() {
            groups.entry((p.platform, p.pixel_ref)).or_default().push(i);
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<EventResult>>();
        // One destination per pixel row, then one delivery per batching key.
        let mut batches: Vec<(Arc<dyn Destination>, Vec<usize>)> = Vec::new();
        let mut batch_of: HashMap<(&'static str, String), usize> = HashMap::new();
        for ((platform, pixel_ref), members) in groups {
            let Some(platform) = self.platforms.get(platform) else {
                continue; // planned through the registry: always registered
            };
            let destination = match pixels.iter().find(|p| p.id == pixel_ref) {
                Some(pixel) => platform
                    .destination(pixel, self.keys.as_ref())
                    .map_err(|p| (p.cause, p.message)),
                None => Err((
                    AlertCause::PixelMissing,
                    "the pixel was deleted meanwhile".to_string(),
                )),
            };
            match destination {
                Ok(dest) => {
                    let key = (platform.label(), dest.batch_key().to_string());
                    match batch_of.get(&key) {
                        Some(&b) => batches[b].1.extend(members),
                        None => {
                            batch_of.insert(key, batches.len());
                            batches.push((dest, members));
                        }
                    }
                }
                Err((cause, message)) => {
                    for i in members {
                        let p = &pending[i];
                        let w = &mut works[p.work];
                        w.outstanding -= 1;
                        w.failures.push(format!(
                            "{} to pixel {}: {message}",
                            p.event_name, p.pixel_id
                        ));
                        w.alert(
                            cause,
                            AlertDetails {
                                error: Some(message.clone()),
                                ..p.details.clone()
                            },
                        );
                        w.deliveries.push(delivery_row(
                            &w.job,
                            p,
                            "failed",
                            None,
                            Some(message.clone()),
                            None,
                            None,
                        ));
                    }
                }
            }
        }
        let deliveries: Vec<_> = batches
            .into_iter()
            .map(|(dest, members)| {
                let events: Vec<PreparedEvent> = members
                    .iter()
                    .map(|&i| PreparedEvent {
                        key: i,
                        job: works[pending[i].work].job.id,
                        event_id: pending[i].event_id.clone(),
                        json: pending[i].json.clone(),
                    })
                    .collect();
                let tx = tx.clone();
                async move {
                    let ctx = DeliveryContext {
                        shutdown: &ctx.shutdown,
                        lease: &ctx.lease,
                        results: &tx,
                    };
                    dest.deliver(events, ctx).await
                }
            })
            .collect();
        drop(tx);

        // Jobs with nothing in flight (no events, or only configuration problems) are done now.
        let mut ready = WriteBack::default();
        for w in works
            .iter_mut()
            .filter(|w| !w.finished && w.outstanding == 0)
        {
            ready.append(self.finish(ctx, w));
        }
        ctx.complete(ready).await;

        let record = async {
            while let Some(results) = rx.recv().await {
                let mut ready = WriteBack::default();
                for r in results {
                    let p = &pending[r.key];
                    let w = &mut works[p.work];
                    self.record_result(w, p, r);
                    w.outstanding = w.outstanding.saturating_sub(1);
                    if w.outstanding == 0 && !w.finished {
                        ready.append(self.finish(ctx, w));
                    }
                }
                ctx.complete(ready).await;
            }
        };
        tokio::join!(join_all(deliveries), record);
    }

    /// Fold one event's delivery result into its job.
    pub(super) fn record_result(&self, w: &mut JobWork, p: &PendingEvent, r: EventResult) {
        let destination = format!("{}:{}", p.platform.code(), p.pixel_id);
        metrics::counter!("stagecast_events_total", "platform" => p.label, "destination" => destination,
            "outcome" => r.outcome.label())
        .increment(1);
        let error_text = r.error.as_ref().map(|e| e.to_string());
        let response = r
            .response
            .clone()
            .or_else(|| r.error.as_ref().map(DeliveryError::transport_record));
        match r.outcome {
            EventOutcome::Delivered => {
                w.delivered += 1;
                metrics::histogram!("stagecast_match_quality", "platform" => p.label)
                    .record(f64::from(p.match_quality));
                w.deliveries.push(delivery_row(
                    &w.job,
                    p,
                    "delivered",
                    r.http_status,
                    None,
                    None,
                    response,
                ));
            }
            EventOutcome::Retry => {
                w.retry(
                    format!(
                        "{} to pixel {}: {}",
                        p.event_name,
                        p.pixel_id,
                        error_text.clone().unwrap_or_default()
                    ),
                    Some(p.platform),
                );
                w.deliveries.push(delivery_row(
                    &w.job,
                    p,
                    "retry",
                    r.http_status,
                    error_text,
                    r.error.as_ref(),
                    response,
                ));
            }
            EventOutcome::Throttled { until } => {
                w.throttle(until, p.platform);
                w.deliveries.push(delivery_row(
                    &w.job,
                    p,
                    "throttled",
                    r.http_status,
                    error_text,
                    r.error.as_ref(),
                    response,
                ));
            }
            EventOutcome::Held {
                until,
                cause,
                alert,
            } => {
                w.hold(until, p.platform);
                let err = r.error.clone().unwrap_or_default();
                if alert {
                    w.alert(
                        cause,
                        AlertDetails {
                            code: err.code.clone(),
                            subcode: err.subcode,
                            trace_id: err.trace_id.clone(),
                            trace_name: Some(err.trace_name()),
                            error: Some(err.message.clone()),
                            ..p.details.clone()
                        },
                    );
                }
                // Audited when a request was refused; the events a hold keeps back without a
                // request (every recheck) would only repeat it.
                if r.http_status.is_some() {
                    w.deliveries.push(delivery_row(
                        &w.job,
                        p,
                        "held",
                        r.http_status,
                        error_text,
                        r.error.as_ref(),
                        response,
                    ));
                }
            }
            EventOutcome::Failed { cause } => {
                let err = r.error.clone().unwrap_or_default();
                w.failures
                    .push(format!("{} to pixel {}: {err}", p.event_name, p.pixel_id));
                w.alert(
                    cause,
                    AlertDetails {
                        code: err.code.clone(),
                        subcode: err.subcode,
                        trace_id: err.trace_id.clone(),
                        trace_name: Some(err.trace_name()),
                        error: Some(err.message.clone()),
                        ..p.details.clone()
                    },
                );
                w.deliveries.push(delivery_row(
                    &w.job,
                    p,
                    "failed",
                    r.http_status,
                    error_text,
                    r.error.as_ref(),
                    response,
                ));
            }
            EventOutcome::NotStarted => w.not_started = true,
            EventOutcome::LeaseLost => w.lease_lost = true,
        }
    }
}

fn delivery_row(
    job: &ClaimedJob,
    p: &PendingEvent,
    outcome: &'static str,
    http_status: Option<u16>,
    error: Option<String>,
    api: Option<&DeliveryError>,
    response: Option<Arc<str>>,
) -> DeliveryRow {
    DeliveryRow {
        job_id: job.id,
        attempt: job.attempts,
        platform: p.platform.code(),
        destination: p.pixel_id.clone(),
        pixel_ref: Some(p.pixel_ref),
        event_id: p.event_id.clone(),
        event_name: p.event_name.clone(),
        event_time: p.event_time,
        outcome,
        http_status,
        error_code: api.and_then(|e| e.code.clone()),
        error_subcode: api.and_then(|e| e.subcode),
        trace_id: api.and_then(|e| e.trace_id.clone()),
        error,
        match_quality: Some(p.match_quality),
        request: Some(p.json.clone()),
        response,
    }
}
