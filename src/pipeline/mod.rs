//! Stage change → conversion events → delivery → outcome (docs/architecture.md).
//!
//! For a claimed batch ([`dispatch`]): load every context in one query ([`stage_change`]),
//! resolve each configured event (campaign → pixel → value → currency) and hand it to the
//! platform the stage config names ([`plan`]), deliver per destination concurrently
//! ([`deliver`]), and fold the per-event results into one outcome per job ([`outcome`], a pure
//! decision) plus the delivery audit and the chat alerts ([`finish`], [`alert_rows`]).
//! `attribution` handles the WhatsApp click-to-ad jobs.

mod alert_rows;
mod attribution;
mod deliver;
mod dispatch;
pub mod event_config;
mod finish;
pub mod identity;
pub mod kinds;
pub mod outcome;
mod plan;
pub mod resolve;
mod stage_change;
mod work;

use futures_util::future::BoxFuture;
use tracing::warn;

pub use stage_change::StageChangePayload;

use crate::locale::Locale;
use crate::pii::{Normalizer, PiiError};
use crate::platforms::Registry;
use crate::queue::{BatchContext, HandlerOutput, JobHandler, RetryPolicy};
use crate::secrets::KeyRing;
use crate::store::{ClaimedJob, Store, WriteBackReport};

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
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            locale: Locale::Pt,
            default_region: "BR".to_string(),
            default_currency: "BRL".to_string(),
            retry: RetryPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("invalid default region: {0}")]
    Region(#[from] PiiError),
    #[error("invalid default currency {0:?}: expected a 3-letter ISO 4217 code such as BRL")]
    Currency(String),
}

/// The job handler of stagecast.
pub struct Pipeline {
    store: Store,
    platforms: Registry,
    keys: Option<KeyRing>,
    normalizer: Normalizer,
    config: PipelineConfig,
    warned_no_keys: std::sync::atomic::AtomicBool,
    ad_campaigns: attribution::AdCampaignCache,
    /// Bulk-change chunks expanded at once by this process ([`dispatch::EXPANSIONS_AT_ONCE`]).
    expansions: tokio::sync::Semaphore,
    /// When this process last refreshed the queue's statistics after an expansion.
    analyzed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("config", &self.config)
            .field("platforms", &self.platforms)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline delivering to the `platforms` registered (`Registry::from_config`).
    pub fn new(
        store: Store,
        platforms: Registry,
        keys: Option<KeyRing>,
        config: PipelineConfig,
    ) -> Result<Self, PipelineError> {
        let normalizer = Normalizer::new(&config.default_region)?;
        let c = config.default_currency.trim();
        if !resolve::is_currency_code(c) {
            return Err(PipelineError::Currency(config.default_currency.clone()));
        }
        // Each platform's series exist from the start (a no-op before the recorder is installed).
        platforms.register_metrics();
        // Every worker on this database shares one rate limit, pause and hold per destination.
        platforms.share_limits(&crate::platforms::shared_limits::SharedLimits::new(
            store.clone(),
        ));
        Ok(Self {
            store,
            platforms,
            keys,
            normalizer,
            config,
            warned_no_keys: std::sync::atomic::AtomicBool::new(false),
            ad_campaigns: attribution::AdCampaignCache::default(),
            expansions: tokio::sync::Semaphore::new(dispatch::EXPANSIONS_AT_ONCE),
            analyzed_at: std::sync::Mutex::new(None),
        })
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

    /// Seal plaintext tokens; the queue logs a failure (a timeout is a skipped step).
    fn maintain(&self) -> BoxFuture<'_, Result<(), crate::store::StoreError>> {
        Box::pin(async move { self.seal_plaintext_tokens().await.map(|_| ()) })
    }

    fn kinds(&self) -> &'static [&'static str] {
        kinds::ALL
    }

    /// Alerts written (new ones only), by cause.
    fn written(&self, report: &WriteBackReport) {
        for cause in &report.new_alert_causes {
            metrics::counter!(crate::metrics_catalog::ALERTS, "cause" => crate::alerts::cause_label(cause))
                .increment(1);
        }
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
