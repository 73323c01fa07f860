//! `stagecast migrate` and `stagecast run`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use tracing::{info, warn};

use super::{parse_addr, DatabaseArgs, RunArgs, SentryArgs};
use crate::pipeline::Pipeline;
use crate::platforms::Registry;
use crate::queue::Worker;
use crate::secrets::KeyRing;
use crate::store::Store;

/// The pool of every command but `migrate`: sessions pin their search_path
/// ([`crate::store::pool_options`]).
pub async fn connect(database_url: &str, pool_size: u32) -> anyhow::Result<Store> {
    connect_with(crate::store::pool_options(), database_url, pool_size).await
}

/// For migrations only: they create objects in the owner's own schema (public), so they run
/// with its search_path. Run them as the owner, with nothing untrusted able to create objects
/// in that schema (docs/operations.md, "Database roles").
async fn connect_for_migrations(database_url: &str) -> anyhow::Result<Store> {
    connect_with(PgPoolOptions::new(), database_url, 2).await
}

async fn connect_with(
    options: PgPoolOptions,
    database_url: &str,
    pool_size: u32,
) -> anyhow::Result<Store> {
    let pool = options
        .max_connections(pool_size.max(3))
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await
        .with_context(|| {
            format!(
                "could not connect to the database at {} (check DATABASE_URL and that Postgres is running)",
                crate::local_pg::redact_url(database_url)
            )
        })?;
    Ok(Store::new(pool))
}

pub async fn migrate(args: &DatabaseArgs) -> anyhow::Result<()> {
    let store = connect_for_migrations(&args.database_url).await?;
    store.migrate().await.context("migration failed")?;
    store.pool().close().await;
    println!(
        "migrations applied ({} in total)",
        crate::store::MIGRATOR.iter().count()
    );
    Ok(())
}

/// Sentry for `stagecast run` (see [`crate::reporting`]); `None` when no DSN is configured.
/// Called from `main` on the main thread, before the runtime starts.
pub fn init_sentry(args: &SentryArgs) -> anyhow::Result<Option<sentry::ClientInitGuard>> {
    crate::reporting::init(
        args.sentry_dsn.as_deref(),
        args.sentry_environment.as_deref(),
    )
    .context("Sentry reporting could not start")
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics_addr = parse_addr(&args.metrics_addr)?;
    // Before anything else (no connection needed): settings that contradict each other would
    // break a promise at run time (see docs/operations.md, Settings rules).
    let conflicts = crate::settings::consistency::check(&args.worker, &args.platforms.limits());
    if !conflicts.is_empty() {
        let list: Vec<String> = conflicts.iter().map(|c| format!("  - {c}")).collect();
        anyhow::bail!(
            "contradictory settings (docs/operations.md, \"Settings rules\"):\n{}",
            list.join("\n")
        );
    }
    // The console's settings too: no user list, no console (and no worker started without it).
    let console = args.console.plan()?;
    let keys = KeyRing::from_env().context("STAGECAST_KEYS is invalid")?;
    if keys.is_none() {
        warn!("STAGECAST_KEYS is not set: plaintext tokens will not be sealed and sealed tokens cannot be read (create one with `stagecast keys generate`)");
    }
    if args.migrate {
        let migrations = connect_for_migrations(&args.db.database_url).await?;
        migrations.migrate().await.context("migration failed")?;
        migrations.pool().close().await;
        info!("migrations applied");
    }
    let store = connect(&args.db.database_url, args.db_pool_size).await?;
    if crate::reporting::enabled() {
        info!("reporting panics, internal errors and failed jobs to Sentry");
    }
    let worker_config = args.worker.worker_config();
    let pipeline_config = args.pipeline.pipeline_config(args.worker.retry_policy());
    if metrics_addr.is_some() {
        // Install the recorder before the pipeline and the worker start: anything counted
        // before it exists (the platforms' series at zero, the first claims) would be lost.
        crate::ops::prometheus();
    }
    let platforms =
        Registry::from_config(&args.platforms.config()).context("invalid configuration")?;
    let pipeline = Pipeline::new(store.clone(), platforms, keys, pipeline_config)
        .context("invalid configuration")?;
    let handle = Worker::new(store.clone(), pipeline, worker_config).spawn();
    let _http = match metrics_addr {
        Some(addr) => Some(
            crate::ops::serve(addr, store.clone(), Arc::clone(handle.stats()))
                .await
                .with_context(|| format!("could not listen on {addr} for /metrics"))?,
        ),
        None => None,
    };
    let _console = match console {
        Some(plan) => Some(super::console::start(plan, args.pipeline.locale).await?),
        None => None,
    };
    let token = handle.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown requested; finishing in-flight work");
        token.cancel();
        // The drain is bounded anyway; a second signal is an operator who will not wait.
        wait_for_signal().await;
        warn!("second shutdown signal: exiting now; unfinished jobs are rescued when their lease expires");
        std::process::exit(130);
    });
    handle.wait().await.context("worker failed")?;
    Ok(())
}

/// SIGTERM (Kubernetes, systemd) or SIGINT (Ctrl-C).
pub(super) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
