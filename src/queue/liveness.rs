//! Dead-worker rescue (docs/operations.md, "Dead-worker rescue"): a worker that dies (kill -9,
//! OOM, a lost connection) has its jobs taken up within seconds, not a lease later, and a live
//! worker's slow request is never taken from it.
//!
//! - **The lock.** Each worker holds a session-level advisory lock keyed by its registration
//!   (`stagecast.workers`) on a connection of its own for its whole life. Postgres releases it
//!   the moment that session ends, whoever ends it, and any role may read `pg_locks` (unlike
//!   other roles' rows of `pg_stat_activity`).
//! - **The rescue.** Every worker that holds its own lock looks, every `rescue_interval`, for
//!   registered workers whose lock stayed missing for `rescue_grace`, and cuts their jobs' lease
//!   short: the next claim takes them up as expired leases, fenced as always (locked_by,
//!   attempts). See sql/rescue_dead_workers.sql for the guards around a Postgres restart.
//! - **Fencing the survivor.** A worker that cannot confirm its lock (the check fails or does not
//!   answer in time) counts every lease it holds as lost at once ([`LeaseClock::lose_all`]):
//!   no new request starts for those jobs, exactly as for a lease that may have lapsed, and its
//!   heartbeat, claims and rescues stop until it holds the lock again, on a new session. Once a
//!   lost batch's requests in flight have answered, what it did not send is given back
//!   (`released`, fenced, with the ledger of what it did send: see `run_handler`). Only
//!   requests in flight at the loss can be sent twice, and only if a rescuer took the job over
//!   meanwhile, as after a crash (same event ids). After a Postgres restart live workers take
//!   their locks back within the grace, so nothing of theirs is taken over.
//! - **The lease stays the fallback**: a worker of an older version (not registered), or one
//!   whose session the server keeps alive, is rescued when its lease expires, as before.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::lease::LeaseClock;
use super::worker::{WorkerConfig, WorkerStats};
use crate::store::{LockSession, Store};

/// How long the lock check may take before the lock counts as lost (a slow answer is not a lost
/// lock, but the worker cannot tell them apart, and a rescuer may act after `rescue_grace`).
pub const LOCK_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Hold this worker's lock for its whole life, publishing whether it is held (`held`). Stops
/// on `stop`, closing the session (which releases the lock: whatever the worker still holds is
/// then rescued after the grace).
pub(super) async fn keep_lock(
    store: Store,
    cfg: WorkerConfig,
    clock: Arc<LeaseClock>,
    held: watch::Sender<bool>,
    stop: CancellationToken,
    stats: Arc<WorkerStats>,
) {
    let mut failures = 0u32;
    loop {
        let session = tokio::select! {
            _ = stop.cancelled() => return,
            s = tokio::time::timeout(LOCK_CHECK_TIMEOUT * 2, store.take_worker_lock(&cfg.worker_id)) => s,
        };
        let mut session: LockSession = match session {
            Ok(Ok(Some(s))) => s,
            other => {
                failures += 1;
                let why = match other {
                    Ok(Ok(_)) => {
                        "the lock is still held by this worker's previous session".to_string()
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {:?}", LOCK_CHECK_TIMEOUT * 2),
                };
                if failures == 20 || (failures > 20 && failures.is_multiple_of(400)) {
                    error!(error = %why, failures, "cannot take this worker's liveness lock: it claims nothing meanwhile");
                } else {
                    debug!(error = %why, "taking the liveness lock failed; trying again");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(cfg.lock_retry) => continue,
                }
            }
        };
        if failures > 0 {
            info!(attempts = failures + 1, "liveness lock taken again");
        }
        failures = 0;
        stats.liveness_locks_taken.fetch_add(1, Ordering::Relaxed);
        let _ = held.send(true);
        metrics::gauge!(crate::metrics_catalog::LIVENESS_LOCK_HELD).set(1.0);
        let mut tick = tokio::time::interval(cfg.rescue_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lost = loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    session.close().await;
                    let _ = held.send(false);
                    return;
                }
                _ = tick.tick() => {}
            }
            match tokio::time::timeout(LOCK_CHECK_TIMEOUT, session.held()).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    break "the session answering does not hold the lock (a transaction-pooling proxy between the worker and Postgres? the worker needs a direct session)".to_string()
                }
                Ok(Err(e)) => break e.to_string(),
                Err(_) => break format!("no answer within {LOCK_CHECK_TIMEOUT:?}"),
            }
        };
        // Every lease may be cut short from now on: stop sending first, then say so.
        clock.lose_all();
        let _ = held.send(false);
        metrics::gauge!(crate::metrics_catalog::LIVENESS_LOCK_HELD).set(0.0);
        metrics::counter!(crate::metrics_catalog::LIVENESS_LOCK_LOSSES).increment(1);
        stats.liveness_lock_losses.fetch_add(1, Ordering::Relaxed);
        warn!(error = %lost, "lost this worker's liveness lock: its leases count as lost (nothing more is sent for them) and it claims nothing until it holds the lock again");
        // Dropping the session closes it if it is still open; the server then releases the
        // lock, and a later try takes it on a new session.
        drop(session);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(cfg.lock_retry) => {}
        }
    }
}

/// Every `rescue_interval` while this worker holds its own lock: release the jobs of dead
/// workers and wake the producer to claim them.
pub(super) async fn rescue(
    store: Store,
    cfg: WorkerConfig,
    mut held: watch::Receiver<bool>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    stats: Arc<WorkerStats>,
) {
    let mut tick = tokio::time::interval(cfg.rescue_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !*held.borrow_and_update() {
            // A worker cut off from its own lock does not judge others by a view it cannot trust.
            continue;
        }
        let step = store.rescue_dead_workers(cfg.rescue_grace, cfg.restart_grace);
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = step => r,
        };
        stats.rescue_runs.fetch_add(1, Ordering::Relaxed);
        if result.is_ok() {
            failures = 0;
        }
        match result {
            Ok(r) if r.released > 0 || !r.dead.is_empty() => {
                stats
                    .dead_worker_jobs_released
                    .fetch_add(r.released, Ordering::Relaxed);
                metrics::counter!(crate::metrics_catalog::DEAD_WORKER_JOBS_RELEASED)
                    .increment(r.released);
                if r.released > 0 {
                    warn!(jobs = r.released, workers = ?r.dead, "released the jobs of dead workers (their liveness lock is gone); claiming them");
                    wake.notify_one();
                } else {
                    debug!(workers = ?r.dead, "forgot dead workers that held no jobs");
                }
            }
            Ok(_) => {}
            Err(e) if e.is_timeout() => {
                debug!(error = %e, "dead-worker rescue skipped: a table it needs is locked")
            }
            Err(e) => {
                failures += 1;
                // Twice a second: say it once, then every few minutes while it lasts.
                if failures == 1 || failures.is_multiple_of(600) {
                    warn!(error = %e, failures, "dead-worker rescue failed (dead workers' jobs wait for their lease meanwhile); trying again next interval");
                }
            }
        }
    }
}
