//! Stage change → conversion events → delivery → outcome (docs/architecture.md).
//!
//! For a claimed batch: load every context in one query, resolve each configured event
//! (campaign → pixel → value → currency), build the events with hashed PII and a deterministic
//! event id, group them per pixel, deliver the groups concurrently, and fold the per-event
//! results into one outcome per job plus the delivery audit and the chat alerts.

mod attribution;
pub mod event;
pub mod event_config;
pub mod identity;
pub mod resolve;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::{join_all, BoxFuture};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, info, warn, Instrument};

use crate::alerts::{Alert, AlertCause, AlertDetails};
use crate::locale::Locale;
use crate::match_quality;
use crate::pii::{Normalizer, PiiError};
use crate::platforms::meta::payload::{build_event, route, MessagingMode};
use crate::platforms::meta::sink::transport_response;
use crate::platforms::meta::{
    ActionSource, EventOutcome, EventResult, MetaConfig, MetaConfigError, MetaDestination,
    MetaSink, PreparedEvent,
};
use crate::platforms::Platform;
use crate::queue::{BatchContext, HandlerOutput, JobHandler, RetryDecision, RetryPolicy};
use crate::secrets::{KeyRing, Secret};
use crate::store::{
    AlertRow, ClaimedJob, ContextKey, DeliveryRow, OutcomeRow, PixelRow, StageChangeContext, Store,
    WriteBack,
};

use event::{event_id, ConversionEvent, UserIdentity};

/// Settings of the business logic (as opposed to the queue's).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Language of chat alerts.
    pub locale: Locale,
    /// Region used to parse phone numbers written without a country code.
    pub default_region: String,
    /// Last currency fallback.
    pub default_currency: String,
    pub retry: RetryPolicy,
    /// Look ads up in the Graph API (`GET /{ad_id}?fields=campaign_id`) when a click-to-WhatsApp
    /// ad id matches no campaign directly.
    pub resolve_ads: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            locale: Locale::Pt,
            default_region: "BR".to_string(),
            default_currency: "BRL".to_string(),
            retry: RetryPolicy::default(),
            resolve_ads: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("invalid default region: {0}")]
    Region(#[from] PiiError),
    #[error(transparent)]
    Meta(#[from] MetaConfigError),
    #[error("invalid default currency {0:?}: expected a 3-letter ISO 4217 code such as BRL")]
    Currency(String),
}

/// The job handler of stagecast.
pub struct Pipeline {
    store: Store,
    meta: MetaSink,
    keys: Option<KeyRing>,
    normalizer: Normalizer,
    config: PipelineConfig,
    warned_no_keys: std::sync::atomic::AtomicBool,
    ad_campaigns: attribution::AdCampaignCache,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("config", &self.config)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The payload the enqueue functions write for a `stage_change` job.
#[derive(Debug, Clone, Deserialize)]
pub struct StageChangePayload {
    pub customer_id: i64,
    pub to_stage_id: i64,
    #[serde(default)]
    pub from_stage_id: Option<i64>,
    pub changed_at: DateTime<Utc>,
}

impl StageChangePayload {
    /// Identifies the stage change itself (stable across retries, replays and batch
    /// expansion): alerts are deduplicated on it.
    pub fn change_key(&self) -> String {
        format!(
            "stage_change:{}:{}:{}",
            self.customer_id,
            self.to_stage_id,
            self.changed_at.timestamp_micros()
        )
    }
}

/// Per-job state while a batch is processed.
struct JobWork {
    job: ClaimedJob,
    change: Option<StageChangePayload>,
    stage_name: Option<String>,
    alerts: Vec<Alert>,
    failures: Vec<String>,
    retry_errors: Vec<String>,
    throttled_until: Option<DateTime<Utc>>,
    not_started: bool,
    /// The worker could not confirm its lease: another worker takes the job over.
    lease_lost: bool,
    destinations: BTreeSet<String>,
    deliveries: Vec<DeliveryRow>,
    delivered: usize,
    already_delivered: usize,
    /// Events sent whose result has not come back yet.
    outstanding: usize,
    finished: bool,
    /// Entered around this job's synchronous planning and outcome (its deliveries are shared
    /// with other jobs of the batch, per pixel).
    span: tracing::Span,
}

impl JobWork {
    fn new(job: ClaimedJob) -> Self {
        Self {
            span: job_span(&job),
            job,
            change: None,
            stage_name: None,
            alerts: Vec::new(),
            failures: Vec::new(),
            retry_errors: Vec::new(),
            throttled_until: None,
            not_started: false,
            lease_lost: false,
            destinations: BTreeSet::new(),
            deliveries: Vec::new(),
            delivered: 0,
            already_delivered: 0,
            outstanding: 0,
            finished: false,
        }
    }

    /// `facebook:<pixel id>`, comma-separated when the stage sends to several pixels.
    fn destination(&self) -> Option<String> {
        (!self.destinations.is_empty()).then(|| {
            self.destinations
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    fn record_destination(&self) {
        // Only built when the span is logged: disabled spans must stay free.
        if !self.span.is_disabled() {
            if let Some(d) = self.destination() {
                self.span.record("destination", d.as_str());
            }
        }
    }

    fn alert(&mut self, cause: AlertCause, details: AlertDetails) {
        // One alert per cause per stage change.
        if !self.alerts.iter().any(|a| a.cause == cause) {
            self.alerts.push(Alert::new(cause, details));
        }
    }
}

/// An event waiting to be sent, with what the audit needs.
struct PendingEvent {
    work: usize,
    pixel_ref: i64,
    pixel_id: String,
    event_id: String,
    event_name: String,
    event_time: DateTime<Utc>,
    /// The event as serialized once: sent in the request and kept in the audit.
    json: Arc<str>,
    match_quality: f32,
    details: AlertDetails,
}

impl Pipeline {
    pub fn new(
        store: Store,
        meta: MetaConfig,
        keys: Option<KeyRing>,
        config: PipelineConfig,
    ) -> Result<Self, PipelineError> {
        let normalizer = Normalizer::new(&config.default_region)?;
        let c = config.default_currency.trim();
        if !resolve::is_currency_code(c) {
            return Err(PipelineError::Currency(config.default_currency.clone()));
        }
        Ok(Self {
            store,
            meta: MetaSink::new(meta)?,
            keys,
            normalizer,
            config,
            warned_no_keys: std::sync::atomic::AtomicBool::new(false),
            ad_campaigns: attribution::AdCampaignCache::default(),
        })
    }

    pub fn meta(&self) -> &MetaSink {
        &self.meta
    }

    async fn handle_batch(&self, ctx: &BatchContext, jobs: Vec<ClaimedJob>) -> HandlerOutput {
        let mut out = HandlerOutput::default();
        let mut stage_changes = Vec::new();
        for job in jobs {
            match job.kind.as_str() {
                "stage_change" => stage_changes.push(job),
                "stage_change_batch" => {
                    let span = job_span(&job);
                    self.expand_batch(ctx, job, &mut out).instrument(span).await
                }
                "attribution" => {
                    let span = job_span(&job);
                    let write_back = self.attribute(job).instrument(span).await;
                    out.write_back.append(write_back);
                }
                other => job_span(&job).in_scope(|| {
                    // job_id too: at `info` the (debug) span is not logged.
                    warn!(job_id = job.id, kind = other, "unknown job kind");
                    let row = outcome(
                        &job,
                        "failed",
                        None,
                        Some(format!("unknown job kind {other:?}: nothing handles it")),
                    );
                    report_failure(&job, &row, None, None, None);
                    debug!(outcome = row.outcome, "job finished");
                    out.write_back.outcomes.push(row);
                }),
            }
        }
        if !stage_changes.is_empty() {
            self.process_stage_changes(ctx, stage_changes, &mut out)
                .await;
        }
        out
    }

    async fn expand_batch(&self, ctx: &BatchContext, job: ClaimedJob, out: &mut HandlerOutput) {
        match self
            .store
            .expand_stage_change_batch(job.id, &ctx.worker_id, job.attempts)
            .await
        {
            Ok(Some(created)) => {
                info!(
                    job_id = job.id,
                    created, "expanded a bulk stage change into jobs"
                );
                debug!(outcome = "expanded", "job finished");
                out.finalized.push(job.id);
            }
            Ok(None) => {
                warn!(
                    job_id = job.id,
                    "batch job was taken over by another worker; skipping"
                );
                out.finalized.push(job.id);
            }
            Err(e) => {
                let error = format!("could not expand the bulk stage change: {e}");
                let (row, _) = self.retry_or_fail(&job, error, Utc::now());
                report_failure(&job, &row, None, None, None);
                debug!(outcome = row.outcome, "job finished");
                out.write_back.outcomes.push(row);
            }
        }
    }

    /// Retry if the budgets allow, else fail. The bool says whether it gave up.
    fn retry_or_fail(
        &self,
        job: &ClaimedJob,
        error: String,
        now: DateTime<Utc>,
    ) -> (OutcomeRow, bool) {
        match self
            .config
            .retry
            .decide(job.attempts, job.max_attempts, job.created_at, now)
        {
            RetryDecision::RetryAt(at) => (outcome(job, "retry", Some(at), Some(error)), false),
            RetryDecision::GiveUp(reason) => (
                outcome(job, "failed", None, Some(format!("{reason}: {error}"))),
                true,
            ),
        }
    }

    async fn process_stage_changes(
        &self,
        ctx: &BatchContext,
        jobs: Vec<ClaimedJob>,
        out: &mut HandlerOutput,
    ) {
        let now = Utc::now();
        let mut works: Vec<JobWork> = jobs.into_iter().map(JobWork::new).collect();

        for w in works.iter_mut() {
            match serde_json::from_value::<StageChangePayload>(w.job.payload.clone()) {
                Ok(p) => w.change = Some(p),
                Err(e) => w
                    .failures
                    .push(format!("invalid stage_change payload: {e}")),
            }
            if w.job.attempts > w.job.max_attempts {
                // Claimed once more than its budget allows: the earlier attempts ended in lost
                // leases (a worker died or stalled), or the job was re-queued without resetting
                // its attempts. The job is failed visibly; no event is sent.
                w.failures.push(format!(
                    "no attempts left ({} of {}): earlier attempts were lost with their worker, or the job was \
                     re-queued by hand without a new budget (`stagecast jobs replay` gives it one)",
                    w.job.attempts, w.job.max_attempts
                ));
                w.change.take();
            }
        }

        let keys: Vec<ContextKey> = works
            .iter()
            .filter_map(|w| {
                w.change.as_ref().map(|c| ContextKey {
                    job_id: w.job.id,
                    customer_id: c.customer_id,
                    stage_id: c.to_stage_id,
                })
            })
            .collect();
        if !keys.is_empty() {
            // The ledger is read for every claimed job, whatever its attempt: a throttle or a
            // shutdown release gives the attempt back, and a rescue follows a run that may
            // have delivered part of the job (issue 12, finding 6). An index probe per job on
            // deliveries_job_idx, run alongside the context load.
            let job_ids: Vec<i64> = keys.iter().map(|k| k.job_id).collect();
            let loaded = tokio::try_join!(
                self.store.load_stage_change_contexts(&keys),
                self.store.load_pixels(),
                self.store.delivered_event_ids(&job_ids),
            );
            match loaded {
                Ok((contexts, pixels, ledger)) => {
                    let ledger: HashSet<String> = ledger.into_iter().map(|(_, id)| id).collect();
                    let pending = self.plan(&mut works, contexts, &pixels, &ledger, now);
                    for p in &pending {
                        works[p.work].outstanding += 1;
                    }
                    self.deliver(ctx, &mut works, pending, &pixels).await;
                }
                Err(e) => {
                    warn!(error = %e, "could not load stage change contexts; retrying the batch");
                    for w in works.iter_mut().filter(|w| w.change.is_some()) {
                        w.retry_errors.push(format!(
                            "database error while loading the stage change: {e}"
                        ));
                    }
                }
            }
        }
        for w in works.iter_mut().filter(|w| !w.finished) {
            let write_back = self.finish(ctx, w);
            out.write_back.append(write_back);
        }
    }

    /// Resolve every configured event of every job; returns the events to send.
    fn plan(
        &self,
        works: &mut [JobWork],
        contexts: Vec<StageChangeContext>,
        pixels: &[PixelRow],
        ledger: &HashSet<String>,
        now: DateTime<Utc>,
    ) -> Vec<PendingEvent> {
        let mut by_job: HashMap<i64, StageChangeContext> =
            contexts.into_iter().map(|c| (c.job_id, c)).collect();
        let mut pending = Vec::new();
        let meta_cfg = self.meta.config();
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
                if config.platform != Platform::Facebook {
                    w.failures
                        .push(format!("{}: platform not supported yet", config.platform));
                    w.alert(AlertCause::UnsupportedPlatform, details);
                    continue;
                }
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
                let age = now.signed_duration_since(change.changed_at);
                if age.to_std().is_ok_and(|a| a > meta_cfg.max_event_age) {
                    w.failures.push(format!(
                        "{}: the stage change is older than Meta's 7-day window",
                        config.event.as_str()
                    ));
                    w.alert(
                        AlertCause::EventTooOld,
                        AlertDetails {
                            pixel: Some(pixel.pixel_id.clone()),
                            ..details
                        },
                    );
                    continue;
                }
                let user = identity
                    .get_or_insert_with(|| {
                        Arc::new(identity::build(&ctx, &self.normalizer, change.changed_at))
                    })
                    .clone();
                let event = ConversionEvent {
                    event_id: event_id(
                        customer_id,
                        change.to_stage_id,
                        change.changed_at,
                        Platform::Facebook.code(),
                        &pixel.pixel_id,
                        config.event.as_str(),
                    ),
                    event: config.event.clone(),
                    event_time: change.changed_at,
                    value: resolved.value.map(|(v, _)| v),
                    currency: Some(resolved.currency.clone()),
                    stage_name: ctx.stage_name.clone(),
                    funnel_category: ctx.funnel_category.clone(),
                    campaign_name: ctx.campaign_name.clone(),
                    user,
                    ad: ad.clone(),
                };
                let action_source = pixel_action_source(pixel, meta_cfg.default_action_source);
                let routing = route(
                    &event,
                    action_source,
                    pixel.waba_id.as_deref(),
                    MessagingMode::parse(pixel.messaging_mode.as_deref()),
                );
                let (request, keys) = build_event(&event, &routing, now);
                let destination = format!("facebook:{}", pixel.pixel_id);
                w.destinations.insert(destination);
                if ledger.contains(&event.event_id) {
                    w.already_delivered += 1;
                    continue;
                }
                let json: Arc<str> = request.to_string().into();
                pending.push(PendingEvent {
                    work: index,
                    pixel_ref: pixel.id,
                    pixel_id: pixel.pixel_id.clone(),
                    event_id: event.event_id,
                    event_name: routing.event_name,
                    event_time: change.changed_at,
                    json,
                    match_quality: match_quality::estimate(&keys),
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

    /// Send pending events, one concurrent delivery per pixel. Results stream back per request;
    /// a job is finished and handed to the completer as soon as its last event is resolved.
    async fn deliver(
        &self,
        ctx: &BatchContext,
        works: &mut [JobWork],
        pending: Vec<PendingEvent>,
        pixels: &[PixelRow],
    ) {
        let mut groups: HashMap<i64, Vec<usize>> = HashMap::new();
        for (i, p) in pending.iter().enumerate() {
            groups.entry(p.pixel_ref).or_default().push(i);
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<EventResult>>();
        let mut deliveries = Vec::new();
        for (pixel_ref, members) in groups {
            let token = match pixels.iter().find(|p| p.id == pixel_ref) {
                Some(pixel) => self.token_for(pixel).map(|t| (pixel, t)),
                None => Err((
                    AlertCause::PixelMissing,
                    "the pixel was deleted meanwhile".to_string(),
                )),
            };
            match token {
                Ok((pixel, token)) => {
                    let dest = MetaDestination {
                        pixel_ref,
                        pixel_id: pixel.pixel_id.clone(),
                        token,
                        test_event_code: pixel.test_event_code.clone(),
                    };
                    let events: Vec<PreparedEvent> = members
                        .iter()
                        .map(|&i| PreparedEvent {
                            key: i,
                            event_id: pending[i].event_id.clone(),
                            json: pending[i].json.clone(),
                        })
                        .collect();
                    let tx = tx.clone();
                    deliveries.push(async move {
                        self.meta
                            .deliver(&dest, events, &ctx.shutdown, &ctx.lease, &tx)
                            .await
                    });
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
    fn record_result(&self, w: &mut JobWork, p: &PendingEvent, r: EventResult) {
        let destination = format!("facebook:{}", p.pixel_id);
        metrics::counter!("stagecast_events_total", "platform" => "facebook", "destination" => destination,
            "outcome" => r.outcome.label())
        .increment(1);
        let error_text = r.error.as_ref().map(|e| e.to_string());
        let response = r
            .response
            .clone()
            .or_else(|| r.error.as_ref().map(transport_response));
        match r.outcome {
            EventOutcome::Delivered => {
                w.delivered += 1;
                metrics::histogram!("stagecast_match_quality", "platform" => "facebook")
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
                w.retry_errors.push(format!(
                    "{} to pixel {}: {}",
                    p.event_name,
                    p.pixel_id,
                    error_text.clone().unwrap_or_default()
                ));
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
                w.throttled_until = Some(w.throttled_until.map_or(until, |t| t.max(until)));
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
            EventOutcome::Failed { cause } => {
                let err = r.error.clone().unwrap_or_default();
                w.failures
                    .push(format!("{} to pixel {}: {err}", p.event_name, p.pixel_id));
                w.alert(
                    cause,
                    AlertDetails {
                        code: err.code,
                        subcode: err.subcode,
                        fbtrace_id: err.fbtrace_id.clone(),
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

    /// The token to call the API with: a plaintext one the CRM just wrote (sealed by
    /// maintenance shortly), else the sealed one opened with the key ring.
    fn token_for(&self, pixel: &PixelRow) -> Result<Secret, (AlertCause, String)> {
        if let Some(plain) = pixel
            .access_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Ok(Secret::new(plain.to_string()));
        }
        let Some(sealed) = pixel
            .access_token_enc
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        else {
            return Err((
                AlertCause::TokenMissing,
                "the pixel has no access token".into(),
            ));
        };
        let Some(keys) = &self.keys else {
            return Err((
                AlertCause::TokenUnreadable,
                "the token is encrypted but STAGECAST_KEYS is not configured".into(),
            ));
        };
        keys.open(sealed).map_err(|e| {
            (
                AlertCause::TokenUnreadable,
                format!("cannot decrypt the token: {e}"),
            )
        })
    }

    /// Fold a job's results into its outcome, audit rows and alerts.
    fn finish(&self, ctx: &BatchContext, w: &mut JobWork) -> WriteBack {
        let span = w.span.clone();
        let _entered = span.enter();
        let now = Utc::now();
        w.finished = true;
        let mut out = WriteBack::default();
        if w.lease_lost {
            // Another worker may hold the job now: write no outcome and no alert (fencing would
            // discard them, or worse, they would land first), only the audit of what this run
            // did send, which is the ledger the rescuer reads.
            debug!(outcome = "lease_lost", "job given up");
            ctx.abandon(w.job.id);
            out.deliveries.append(&mut w.deliveries);
            return out;
        }
        let destinations = (!w.destinations.is_empty())
            .then(|| w.destinations.iter().cloned().collect::<Vec<_>>());
        let row = if !w.retry_errors.is_empty() {
            let mut errors = w.retry_errors.clone();
            errors.extend(w.failures.iter().cloned());
            let (row, gave_up) = self.retry_or_fail(&w.job, summarize(&errors), now);
            if gave_up {
                let first = w.retry_errors.first().cloned();
                w.alert(
                    AlertCause::DeliveryGaveUp,
                    AlertDetails {
                        platform: Some("facebook".into()),
                        stage_name: w.stage_name.clone(),
                        event_name: w.deliveries.first().map(|d| d.event_name.clone()),
                        error: first,
                        ..AlertDetails::default()
                    },
                );
            }
            row
        } else if let Some(until) = w.throttled_until {
            outcome(
                &w.job,
                "throttled",
                Some(until),
                Some("throttled by Meta; paused without spending an attempt".into()),
            )
        } else if w.not_started {
            outcome(
                &w.job,
                "released",
                Some(now),
                Some("released on shutdown before sending".into()),
            )
        } else if !w.failures.is_empty() {
            outcome(&w.job, "failed", None, Some(summarize(&w.failures)))
        } else {
            let note = (w.delivered + w.already_delivered > 0).then(|| {
                format!(
                    "{} delivered, {} already delivered earlier",
                    w.delivered, w.already_delivered
                )
            });
            outcome(&w.job, "done", None, note)
        };
        if row.outcome == "failed" {
            let first = w.alerts.first();
            let destination = w.destination().or_else(|| {
                first
                    .and_then(|a| a.details.pixel.as_ref())
                    .map(|p| format!("facebook:{p}"))
            });
            let platform = first
                .and_then(|a| a.details.platform.as_deref())
                .or(destination.is_some().then_some("facebook"));
            report_failure(
                &w.job,
                &row,
                first.map(|a| a.cause.code()),
                platform,
                destination.as_deref(),
            );
        }
        debug!(outcome = row.outcome, "job finished");
        let row = OutcomeRow {
            destinations,
            ..row
        };
        out.outcomes.push(row);
        out.deliveries.append(&mut w.deliveries);
        let customer_id = w
            .change
            .as_ref()
            .map(|c| c.customer_id)
            .or_else(|| w.job.payload.get("customer_id").and_then(Value::as_i64));
        let change_key = w
            .change
            .as_ref()
            .map(StageChangePayload::change_key)
            .unwrap_or_else(|| format!("job:{}", w.job.id));
        for alert in std::mem::take(&mut w.alerts) {
            out.alerts.push(AlertRow {
                dedup_key: format!("{change_key}:{}", alert.cause.code()),
                job_id: w.job.id,
                customer_id,
                cause: alert.cause.code(),
                locale: self.config.locale.code(),
                message: alert.render(self.config.locale),
                details: serde_json::to_value(&alert.details).unwrap_or(Value::Null),
            });
        }
        out
    }

    /// Seal plaintext tokens written by the CRM and clear them. Returns how many were sealed.
    pub async fn seal_plaintext_tokens(&self) -> Result<usize, crate::store::StoreError> {
        let Some(keys) = &self.keys else {
            let plain = self.store.plaintext_tokens().await?;
            if !plain.is_empty()
                && !self
                    .warned_no_keys
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                warn!(pixels = plain.len(), "pixels hold plaintext tokens but STAGECAST_KEYS is not set: they cannot be sealed");
            }
            return Ok(0);
        };
        crate::tokens::seal_plaintext(&self.store, keys).await
    }
}

impl JobHandler for Pipeline {
    fn handle<'a>(
        &'a self,
        ctx: &'a BatchContext,
        jobs: Vec<ClaimedJob>,
    ) -> BoxFuture<'a, HandlerOutput> {
        Box::pin(self.handle_batch(ctx, jobs))
    }

    fn maintain(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.seal_plaintext_tokens().await {
                warn!(error = %e, "sealing plaintext tokens failed");
            }
        })
    }
}

/// The span of one job: created at DEBUG so that, at the default `info`, it is disabled and
/// costs a level check (the benchmark runs ~20k jobs/s). `destination` is recorded when known.
pub(crate) fn job_span(job: &ClaimedJob) -> tracing::Span {
    tracing::debug_span!(
        "job",
        job_id = job.id,
        kind = %job.kind,
        attempt = job.attempts,
        destination = tracing::field::Empty
    )
}

/// A job ended `failed`: one warning to Sentry (a no-op when reporting is off).
pub(crate) fn report_failure(
    job: &ClaimedJob,
    row: &OutcomeRow,
    cause: Option<&'static str>,
    platform: Option<&str>,
    destination: Option<&str>,
) {
    if row.outcome != "failed" {
        return;
    }
    crate::reporting::report_failed_job(&crate::reporting::FailedJob {
        job_id: job.id,
        kind: &job.kind,
        attempt: job.attempts,
        cause,
        platform,
        destination,
        error: row.error.as_deref(),
    });
}

fn pixel_action_source(pixel: &PixelRow, default: ActionSource) -> ActionSource {
    match pixel.action_source.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|e| {
            warn!(pixel = %pixel.pixel_id, error = %e, "invalid pixel action_source; using the default");
            default
        }),
    }
}

fn outcome(
    job: &ClaimedJob,
    outcome: &'static str,
    run_at: Option<DateTime<Utc>>,
    error: Option<String>,
) -> OutcomeRow {
    OutcomeRow {
        id: job.id,
        attempt: job.attempts,
        outcome,
        run_at,
        error,
        destinations: None,
    }
}

fn delivery_row(
    job: &ClaimedJob,
    p: &PendingEvent,
    outcome: &'static str,
    http_status: Option<u16>,
    error: Option<String>,
    api: Option<&crate::platforms::meta::ApiError>,
    response: Option<Arc<str>>,
) -> DeliveryRow {
    DeliveryRow {
        job_id: job.id,
        attempt: job.attempts,
        platform: "facebook",
        destination: p.pixel_id.clone(),
        pixel_ref: Some(p.pixel_ref),
        event_id: p.event_id.clone(),
        event_name: p.event_name.clone(),
        event_time: p.event_time,
        outcome,
        http_status,
        error_code: api.and_then(|e| e.code),
        error_subcode: api.and_then(|e| e.subcode),
        fbtrace_id: api.and_then(|e| e.fbtrace_id.clone()),
        error,
        match_quality: Some(p.match_quality),
        request: Some(p.json.clone()),
        response,
    }
}

/// A bounded one-line summary for `last_error`.
fn summarize(errors: &[String]) -> String {
    let mut unique: Vec<&String> = Vec::new();
    for e in errors {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    let mut s = unique
        .iter()
        .take(3)
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    if unique.len() > 3 {
        s.push_str(&format!("; (+{} more)", unique.len() - 3));
    }
    if s.chars().count() > 1000 {
        s = s.chars().take(1000).collect::<String>() + "…";
    }
    s
}
