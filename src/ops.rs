//! Operations plumbing: logging, and the HTTP endpoint for Prometheus and probes.
//! `/metrics` (Prometheus text), `/healthz` (the process answers), `/readyz` (database
//! reachable, migrations current, LISTEN connected).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tracing_subscriber::layer::{Layered, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::queue::WorkerStats;
use crate::store::{Store, StoreError};

/// Log format: human-readable text or one JSON object per line (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// SQLSTATE 42P01: `_sqlx_migrations` does not exist in a database never migrated.
const UNDEFINED_TABLE: &str = "42P01";

/// Install the global tracing subscriber (stderr). RUST_LOG overrides `filter` when set. With
/// `sentry`, ERROR events that pass the filter also go to Sentry.
pub fn init_logging(format: LogFormat, filter: &str, sentry: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt: Box<dyn Layer<Layered<EnvFilter, Registry>> + Send + Sync> = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    // One global filter, no per-layer filters: see `reporting::ErrorsToSentry`.
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(sentry.then(crate::reporting::tracing_layer))
        .try_init();
    // A second init (tests, demo inside a process that already logs) is harmless.
    let _ = result;
}

/// The process-wide Prometheus recorder (installed once; later calls reuse it).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("stagecast_batch_size".into()),
                    &[1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("stagecast_match_quality".into()),
                    &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
                )
            })
            .expect("static bucket lists are non-empty");
        match builder.install_recorder() {
            Ok(handle) => {
                crate::metrics_catalog::register();
                handle
            }
            // Another recorder is installed (only in unusual embeddings): keep a detached one
            // so /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

#[derive(Clone)]
struct AppState {
    store: Store,
    stats: Arc<WorkerStats>,
}

/// A running HTTP endpoint; dropped → stopped.
pub struct OpsServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve /metrics, /healthz and /readyz on `addr` (port 0 picks a free port).
pub async fn serve(
    addr: SocketAddr,
    store: Store,
    stats: Arc<WorkerStats>,
) -> std::io::Result<OpsServer> {
    let handle = prometheus().clone();
    let upkeep = handle.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || async move {
                // The text exposition format's own content type, so scrapers never guess.
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { store, stats });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Histograms need periodic upkeep to drain their buckets.
        let upkeep_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
        upkeep_task.abort();
    });
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(OpsServer { addr, task })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db = tokio::time::timeout(Duration::from_secs(2), state.store.schema_version()).await;
    let (db_ok, migrations_ok, detail) = match db {
        Ok(Ok(applied)) => {
            let latest = crate::store::MIGRATOR.iter().map(|m| m.version).max();
            let current = applied == latest;
            (
                true,
                current,
                format!("applied {applied:?}, expected {latest:?}"),
            )
        }
        // Reachable, but `stagecast migrate` never ran there: not ready, and say why.
        Ok(Err(StoreError::Database(sqlx::Error::Database(e))))
            if e.code().as_deref() == Some(UNDEFINED_TABLE) =>
        {
            (
                true,
                false,
                "no migrations applied (run `stagecast migrate`)".to_string(),
            )
        }
        Ok(Err(e)) => (false, false, format!("database error: {e}")),
        Err(_) => (
            false,
            false,
            "database did not answer within 2s".to_string(),
        ),
    };
    let listener_ok = state.stats.listener_connected.load(Ordering::Relaxed);
    let ready = db_ok && migrations_ok && listener_ok;
    let body = json!({
        "ready": ready,
        "database": db_ok,
        "migrations_current": migrations_ok,
        "listener_connected": listener_ok,
        "detail": detail,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
