//! Error reporting to Sentry, off unless a DSN is configured (`stagecast run --sentry-dsn`).
//!
//! What is sent: panics, ERROR-level logs (unexpected internal errors: write-back failures,
//! handler panics, persistent claim failures, …) and one warning per job that ends `failed`,
//! tagged with identifiers and codes only. Every event passes [`scrub::scrub_event`].
//!
//! Each handler batch runs on its own [`Hub`] ([`batch_hub`]) so the scope of one batch
//! (its job ids) never leaks into events of another running at the same time.

pub mod scrub;
mod transport;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;
use sentry::protocol::{Event, Level, Map, Value};
use sentry::types::Dsn;
use sentry::{ClientInitGuard, ClientOptions, Hub, SentryFutureExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::store::ClaimedJob;

#[derive(Debug, thiserror::Error)]
pub enum ReportingError {
    // The DSN itself is not echoed: it carries the project's key.
    #[error("invalid Sentry DSN ({0}); expected https://<key>@<host>/<project id>")]
    InvalidDsn(String),
    #[error("could not start the Sentry transport: {0}")]
    Transport(String),
}

/// Tag values are capped by Sentry at 200 characters.
const MAX_TAG: usize = 200;
/// Job ids listed in a batch's scope (batches hold up to `--batch-size` jobs).
const MAX_BATCH_IDS: usize = 100;

/// Start the Sentry client for this process. `None` (reporting off) when `dsn` is empty.
///
/// Call it on the main thread before the tokio runtime starts: runtime threads take their hub
/// from the process hub when they first use one, so a client bound later on a runtime thread
/// would be seen by that thread only. Keep the guard until exit: dropping it flushes.
pub fn init(
    dsn: Option<&str>,
    environment: Option<&str>,
) -> Result<Option<ClientInitGuard>, ReportingError> {
    let Some(dsn) = dsn.map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let dsn: Dsn = dsn
        .parse()
        .map_err(|e: sentry::types::ParseDsnError| ReportingError::InvalidDsn(e.to_string()))?;
    let transport = Arc::new(transport::HttpTransport::new(&dsn)?);
    let mut options = ClientOptions::default();
    options.dsn = Some(dsn);
    options.release = sentry::release_name!();
    options.environment = environment
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| Cow::Owned(e.to_string()));
    options.send_default_pii = false;
    options.before_send = Some(Arc::new(scrub::scrub_event));
    options.transport = Some(Arc::new(transport));
    Ok(Some(sentry::init(options)))
}

/// Whether a Sentry client is bound to the current hub (reporting is on).
pub fn enabled() -> bool {
    Hub::current().client().is_some_and(|c| c.is_enabled())
}

/// The tracing layer that turns ERROR events into Sentry events (nothing else: no breadcrumbs,
/// no spans, so it costs nothing on the hot path).
pub fn tracing_layer() -> ErrorsToSentry {
    ErrorsToSentry(sentry::integrations::tracing::ErrorLayer::new())
}

/// Forwards ERROR events to sentry's `ErrorLayer`. A level check here rather than a per-layer
/// filter (`with_filter`): per-layer filters drop events of `Interest::always` callsites for
/// every layer after sqlx's query logger asks `log_enabled!` (stale `FilterState`,
/// tokio-rs/tracing#2519); with `STAGECAST_LOG=info,stagecast=debug` no ERROR reached the
/// logs or Sentry.
pub struct ErrorsToSentry(sentry::integrations::tracing::ErrorLayer);

impl<S> Layer<S> for ErrorsToSentry
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            self.0.on_event(event, ctx);
        }
    }
}

/// The hub a handler batch runs on (see [`BatchHub::bind`]); `None` inside when reporting is off.
pub struct BatchHub(Option<Arc<Hub>>);

/// A hub of its own for a handler batch, with the batch's job ids in its scope, so a panic or an
/// error in it is reported with those ids and nothing from another batch. `kind_label` is the
/// bounded name of a job kind (the handler's; anything else is `other`).
pub fn batch_hub(
    worker_id: &str,
    jobs: &[ClaimedJob],
    kind_label: impl Fn(&str) -> &'static str,
) -> BatchHub {
    if !enabled() {
        return BatchHub(None);
    }
    let hub = Arc::new(Hub::new_from_top(Hub::current()));
    hub.configure_scope(|scope| {
        scope.set_tag("worker_id", truncate(worker_id));
        scope.set_tag("batch_size", jobs.len());
        if let [job] = jobs {
            scope.set_tag("job_id", job.id);
            scope.set_tag("kind", kind_label(&job.kind));
            scope.set_tag("attempt", job.attempts);
        }
        let mut batch = Map::new();
        batch.insert(
            "job_ids".into(),
            Value::from(
                jobs.iter()
                    .take(MAX_BATCH_IDS)
                    .map(|j| j.id)
                    .collect::<Vec<_>>(),
            ),
        );
        batch.insert("jobs".into(), Value::from(jobs.len()));
        scope.set_context("batch", sentry::protocol::Context::Other(batch));
    });
    BatchHub(Some(hub))
}

impl BatchHub {
    /// Poll `future` with this hub as the current one (without a hub, the future as it is).
    pub fn bind<F: Future>(self, future: F) -> Either<sentry::SentryFuture<F>, F> {
        match self.0 {
            Some(hub) => Either::Left(future.bind_hub(hub)),
            None => Either::Right(future),
        }
    }
}

/// A job that ended `failed`, as Sentry sees it: identifiers and codes, no contact data.
#[derive(Debug, Clone, Copy)]
pub struct FailedJob<'a> {
    pub job_id: i64,
    /// The job's kind, as a bounded label (`other` for a kind nothing handles).
    pub kind: &'static str,
    pub attempt: i32,
    /// The alert cause code (`token_invalid`, …), when the failure raised an alert.
    pub cause: Option<&'static str>,
    pub platform: Option<&'a str>,
    /// `facebook:<pixel id>`, comma-separated when the job had several.
    pub destination: Option<&'a str>,
    /// The job's `last_error` (scrubbed like every other text before sending).
    pub error: Option<&'a str>,
}

/// Report a failed job as a warning on the current hub, with its tags in a scope of its own
/// (several jobs of one batch share the batch hub). A no-op when reporting is off.
pub fn report_failed_job(job: &FailedJob<'_>) {
    Hub::with_active(|hub| {
        let kind = job.kind;
        let cause = job.cause.unwrap_or("none");
        hub.with_scope(
            |scope| {
                scope.set_tag("job_id", job.job_id);
                scope.set_tag("kind", kind);
                scope.set_tag("attempt", job.attempt);
                scope.set_tag("cause", cause);
                if let Some(platform) = job.platform {
                    scope.set_tag("platform", truncate(platform));
                }
                if let Some(destination) = job.destination {
                    scope.set_tag("destination", truncate(destination));
                }
            },
            || {
                let mut extra = Map::new();
                if let Some(error) = job.error {
                    extra.insert("error".into(), Value::String(error.to_string()));
                }
                hub.capture_event(Event {
                    level: Level::Warning,
                    message: Some(format!("{kind} job failed: {cause}")),
                    // One issue per kind and cause, however many jobs fail that way.
                    fingerprint: Cow::Owned(vec![
                        Cow::Borrowed("job-failed"),
                        Cow::Borrowed(kind),
                        Cow::Borrowed(cause),
                    ]),
                    extra,
                    ..Event::default()
                });
            },
        );
    });
}

/// Report why `stagecast run` stopped with an error (not a log line: main prints it already).
pub fn report_fatal(message: &str) {
    Hub::with_active(|hub| {
        hub.capture_message(message, Level::Fatal);
    });
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_TAG) {
        Some((end, _)) => s[..end].to_string(),
        None => s.to_string(),
    }
}
