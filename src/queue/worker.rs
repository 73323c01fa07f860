//! The worker process: producer (claim up to free capacity), handlers (one task per claimed
//! batch), completer (batched, fenced write-back), heartbeat (lease extension), listener
//! (LISTEN + poll fallback) and maintenance (retention, parked enqueues, handler upkeep).

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use super::lease::{Lease, LeaseClock};
use super::liveness;
use crate::store::{
    ClaimedJob, OutcomeRow, Retention, Store, StoreError, WriteBack, WriteBackReport,
};

/// The channel the enqueue trigger notifies.
pub const JOBS_CHANNEL: &str = "stagecast_jobs";

/// Tuning of one worker process. Defaults suit a single 2-core machine.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique per process (never reused across restarts, so fencing cannot be fooled).
    pub worker_id: String,
    /// Maximum jobs in flight at once.
    pub concurrency: usize,
    /// Maximum jobs leased per claim (and so per handler batch).
    pub batch_size: usize,
    /// How long a lease lasts without a heartbeat; a crashed worker's jobs are rescued after it.
    pub lease: Duration,
    /// How often the heartbeat extends the leases; `None`: a third of the lease.
    pub heartbeat_interval: Option<Duration>,
    /// Fallback poll when no notification arrives (also picks up scheduled retries).
    pub poll_interval: Duration,
    /// On shutdown, how long in-flight work may take to finish before it is released. The
    /// process then has [`SHUTDOWN_FLUSH`] for its last write-back and [`SHUTDOWN_RELEASE`] to
    /// give back what it still holds.
    pub drain_timeout: Duration,
    pub maintenance_interval: Duration,
    pub retention: Retention,
    /// How often the liveness lock is checked and dead workers' jobs are looked for
    /// (src/queue/liveness.rs; `--rescue-interval`).
    pub rescue_interval: Duration,
    /// How long a worker's lock must stay missing before its jobs are released
    /// (`--rescue-grace`).
    pub rescue_grace: Duration,
    /// Nothing is released this long after the server started: every lock vanished with the
    /// restart, and live workers need the time to take theirs again.
    pub restart_grace: Duration,
    /// Pause between attempts to take the liveness lock (again): short, because after a
    /// restart live workers must be back within the grace.
    pub lock_retry: Duration,
    /// Bytes of payload one claim may carry: a job's payload is returned only if it is at most
    /// this divided by `batch_size` (sql/claim_jobs.sql); larger ones (a bulk change's chunks)
    /// are handled in SQL. `--claim-max-bytes`.
    pub claim_max_bytes: usize,
    /// A bulk change's chunks (`stage_change_batch` jobs) this worker holds at most before it
    /// has expanded them: a claim takes only what is missing, and leaves the other chunks to
    /// the other workers. The pipeline expands one chunk at a time (≈ 0.1–0.2 s for 5,000
    /// customers, docs/performance.md), so two keep it busy: one expanding, the next one claimed.
    pub chunks_held_max: usize,
    /// Bytes one write-back transaction may carry (audit rows with their request text,
    /// outcomes, alerts), besides its row bound: results queue up while a flush runs.
    /// `--write-back-max-bytes`.
    pub write_back_max_bytes: usize,
    /// How long a handler waits for capacity to take on jobs beyond its claimed batch (a bulk
    /// change's chunk leasing its jobs at expansion) before it leaves them to a claim.
    pub capacity_patience: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: new_worker_id(),
            concurrency: 4000,
            batch_size: 1000,
            lease: Duration::from_secs(60),
            heartbeat_interval: None,
            poll_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
            maintenance_interval: Duration::from_secs(10),
            retention: Retention::default(),
            // A dead worker's jobs are claimable 2–3 s after its death (grace + one interval),
            // and the next claim (the rescuer's, woken) takes them up.
            rescue_interval: Duration::from_millis(500),
            rescue_grace: Duration::from_secs(2),
            restart_grace: Duration::from_secs(10),
            lock_retry: Duration::from_millis(250),
            claim_max_bytes: 4 * 1024 * 1024,
            chunks_held_max: 2,
            write_back_max_bytes: 8 * 1024 * 1024,
            capacity_patience: Duration::from_secs(2),
        }
    }
}

/// After the drain, the longest the last write-back may take before the process gives up on
/// it (what it could not write is logged and left to lease expiry and the ledger).
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);
/// Then the longest giving back the jobs still held may take (a little more than the
/// write-back's lock timeout, so a lock our own cut-off write-back held is gone by then).
pub const SHUTDOWN_RELEASE: Duration = Duration::from_secs(3);
/// Longest a heartbeat may take (it is also bounded by its period).
const HEARTBEAT_TIMEOUT_CAP: Duration = Duration::from_secs(5);

/// How often the heartbeat runs for this lease and configured interval.
pub fn heartbeat_period(lease: Duration, interval: Option<Duration>) -> Duration {
    interval
        .unwrap_or(lease / 3)
        .max(Duration::from_millis(100))
}

/// How long one heartbeat may take before it counts as failed: never longer than its period,
/// so beats do not pile up.
pub fn heartbeat_timeout(period: Duration) -> Duration {
    period.min(HEARTBEAT_TIMEOUT_CAP)
}

impl WorkerConfig {
    pub fn heartbeat_period(&self) -> Duration {
        heartbeat_period(self.lease, self.heartbeat_interval)
    }

    /// The largest payload a claim returns (see `claim_max_bytes`).
    pub fn job_payload_max(&self) -> i32 {
        let per_job = self.claim_max_bytes / self.batch_size.max(1);
        i32::try_from(per_job).unwrap_or(i32::MAX)
    }
}

/// `<hostname>-<pid>-<random>`: readable in `locked_by`, unique per process start.
pub fn new_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// What a handler gets besides its jobs (one per claimed batch).
#[derive(Debug)]
pub struct BatchContext {
    pub worker_id: String,
    /// Cancelled on shutdown: handlers stop starting new requests and release what they did
    /// not start (outcome `released`, attempt refunded).
    pub shutdown: CancellationToken,
    /// Until when this batch's lease is known valid: no request may start for it once the
    /// lease might lapse before the request ends.
    pub lease: Lease,
    completer: mpsc::Sender<WriteBack>,
    completed: std::sync::Mutex<HashSet<i64>>,
    /// Jobs given up for a lease in doubt (a subset of `completed`).
    abandoned: std::sync::Mutex<HashSet<i64>>,
    stats: Arc<WorkerStats>,
    expiring: Arc<Mutex<HashSet<i64>>>,
    /// The capacity this batch's unfinished jobs hold: a job handed to the completer gives its
    /// permit back at once, so a slow or rate-limited destination in the batch holds only its
    /// own jobs' share of the concurrency, never the whole batch's (no head-of-line blocking).
    permits: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
    /// The worker's capacity, for jobs a handler takes on beyond its claimed batch.
    capacity: Arc<Semaphore>,
    /// Its size (`--concurrency`).
    capacity_total: usize,
    /// Jobs the handler took on beyond the claimed batch (leased to this worker in SQL, e.g. a
    /// bulk change's jobs leased at their expansion): covered like the batch's own, so a panic
    /// or a forgotten one still gets an outcome instead of a lease heart-beaten forever.
    adopted: std::sync::Mutex<Vec<(i64, i32)>>,
    /// How long a lease this worker takes lasts.
    pub lease_duration: Duration,
    /// See [`WorkerConfig::capacity_patience`].
    pub capacity_patience: Duration,
}

impl BatchContext {
    /// Take up to `max` of the worker's free capacity for jobs beyond the claimed batch,
    /// without waiting: how many it got. It comes back like the batch's own, as jobs complete
    /// ([`Self::release_capacity`] returns what went unused).
    pub fn borrow_capacity(&self, max: usize) -> usize {
        let n = self.capacity.available_permits().min(max);
        if n == 0 {
            return 0;
        }
        let Ok(extra) = self.capacity.clone().try_acquire_many_owned(n as u32) else {
            return 0;
        };
        self.hold(extra);
        n
    }

    /// Like [`Self::borrow_capacity`], but first waits up to `patience` for `want` of it to be
    /// free (at most half the worker's capacity: more could be held by jobs that wait for this
    /// very batch). The semaphore is fair, so while this waits, capacity set free goes here
    /// before the producer's next claim: a handler that can take jobs on without a claim (a
    /// bulk change's chunk, leased at its expansion) is preferred to claiming them. Shutdown
    /// or `patience` running out ends the wait with whatever is free.
    pub async fn borrow_capacity_waiting(
        &self,
        want: usize,
        max: usize,
        patience: Duration,
    ) -> usize {
        let want = want.min(max).min(self.capacity_total / 2);
        let mut got = 0;
        if want > 0 && self.capacity.available_permits() < want {
            let wait = self.capacity.clone().acquire_many_owned(want as u32);
            tokio::select! {
                p = tokio::time::timeout(patience, wait) => {
                    if let Ok(Ok(p)) = p {
                        got = p.num_permits();
                        self.hold(p);
                    }
                }
                _ = self.shutdown.cancelled() => {}
            }
        }
        got + self.borrow_capacity(max - got)
    }

    fn hold(&self, extra: OwnedSemaphorePermit) {
        let mut permits = self.permits.lock().unwrap_or_else(|p| p.into_inner());
        match permits.as_mut() {
            Some(held) => held.merge(extra),
            None => *permits = Some(extra),
        }
    }

    /// Keep `job_id` out of the heartbeat while a statement of this batch holds its row lock
    /// (an expansion deletes the chunk's row): the beat would skip the locked row anyway, and
    /// would count it as a lease in doubt. The row's lease is not extended meanwhile; the
    /// statement is fenced like a write-back. [`Self::resume_heartbeat`] undoes it.
    pub fn skip_heartbeat(&self, job_id: i64) {
        let_expire(&self.expiring, job_id);
    }

    pub fn resume_heartbeat(&self, job_id: i64) {
        self.expiring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job_id);
    }

    /// Jobs leased to this worker outside a claim, now this batch's to finish.
    pub fn adopt(&self, jobs: &[ClaimedJob]) {
        self.lease.add_jobs(jobs.iter().map(|j| j.id));
        self.stats
            .adopted
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        self.adopted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(jobs.iter().map(|j| (j.id, j.attempts)));
    }

    /// Give back the capacity of `n` jobs that are done, or borrowed and unused (at most what
    /// the batch still holds).
    pub fn release_capacity(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut permits = self.permits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = permits.as_mut() {
            let n = n.min(held.num_permits());
            drop(held.split(n));
        }
    }

    /// Hand results to the completer before the whole batch is done, so a job is written back
    /// as soon as its last request answered: a crash later in the batch cannot make it re-send.
    pub async fn complete(&self, write_back: WriteBack) {
        if write_back.is_empty() {
            return;
        }
        let newly_done = {
            let mut done = self.completed.lock().unwrap_or_else(|p| p.into_inner());
            write_back
                .outcomes
                .iter()
                .filter(|o| done.insert(o.id))
                .count()
        };
        if self.completer.send(write_back).await.is_err() {
            error!("completer stopped; leases will expire and the jobs will be retried");
        }
        self.release_capacity(newly_done);
    }

    /// The handler gave this job up because its lease may have lapsed: nothing more is
    /// written for it (another worker may hold it now); lease expiry and fencing take over.
    pub fn abandon(&self, job_id: i64) {
        let newly = self
            .completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job_id);
        self.abandoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job_id);
        self.release_capacity(usize::from(newly));
        // Once the heartbeat works again it must not extend this lease: nobody works on the
        // job here any more, and only an expired lease lets a claim (ours too) take it up.
        let_expire_unless_reclaimed(&self.expiring, &self.lease, job_id);
        self.stats.lease_lost_jobs.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics_catalog::LEASE_LOST_JOBS).increment(1);
    }

    fn completed_ids(&self) -> HashSet<i64> {
        self.completed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A handler's result for one batch.
#[derive(Debug, Default)]
pub struct HandlerOutput {
    pub write_back: WriteBack,
    /// Jobs the handler already finalized in SQL itself (e.g. a batch job it expanded).
    pub finalized: Vec<i64>,
}

impl HandlerOutput {
    /// Take in what another part of the same batch produced.
    pub fn append(&mut self, other: HandlerOutput) {
        self.write_back.append(other.write_back);
        self.finalized.extend(other.finalized);
    }
}

/// Business logic plugged into the queue. It receives whole batches so it can group events
/// per destination.
pub trait JobHandler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        ctx: &'a BatchContext,
        jobs: Vec<ClaimedJob>,
    ) -> BoxFuture<'a, HandlerOutput>;

    /// Periodic upkeep (e.g. sealing plaintext tokens). The queue logs an error, and counts a
    /// timeout ([`StoreError::is_timeout`]: a locked table) as a skipped maintenance step.
    fn maintain(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// The job kinds this handler knows: the bounded `kind` label of the queue's metrics and
    /// reports (any other kind is `other`). The queue itself knows no kind.
    fn kinds(&self) -> &'static [&'static str] {
        &[]
    }

    /// Called after each write-back with what it committed, so the handler counts the facts of
    /// its own rows (e.g. alerts written, by cause). The queue counts only queue facts.
    fn written(&self, report: &WriteBackReport) {
        let _ = report;
    }
}

/// The bounded `kind` label: one of the handler's kinds, else `other`.
fn kind_label(kinds: &[&'static str], kind: &str) -> &'static str {
    crate::metrics_catalog::bounded(kinds, kind)
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("worker task failed: {0}")]
    Task(String),
}

/// Counters a running worker exposes (tests, demo and bench read them; Prometheus gets the same
/// numbers through `metrics`).
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub claimed: AtomicU64,
    /// Jobs leased to this worker outside a claim (a bulk change's, at their expansion).
    pub adopted: AtomicU64,
    pub rescued: AtomicU64,
    pub applied: AtomicU64,
    pub fenced_out: AtomicU64,
    pub duplicate_deliveries: AtomicU64,
    pub write_back_errors: AtomicU64,
    pub released_on_shutdown: AtomicU64,
    /// Alerts the CRM's chat refused (kept in stagecast.alerts with the reason).
    pub chat_alert_errors: AtomicU64,
    /// Jobs written on their own after their batch failed: in full, without their audit
    /// detail, or not at all (left to lease expiry).
    pub write_back_isolated: AtomicU64,
    pub write_back_degraded: AtomicU64,
    pub write_back_unwritable: AtomicU64,
    /// Heartbeats that extended the leases, and those that failed or timed out.
    pub heartbeats: AtomicU64,
    pub heartbeat_failures: AtomicU64,
    /// Rows of this worker's running jobs that beats skipped because another transaction held
    /// them (summed over beats): those leases were not extended by that beat.
    pub heartbeat_skipped: AtomicU64,
    /// Jobs given up because their lease could not be confirmed in time.
    pub lease_lost_jobs: AtomicU64,
    pub listener_connected: AtomicBool,
    /// Times the producer found nothing to claim and began to wait for a notification or the
    /// poll: lets a test know the worker is idle, instead of sleeping until it probably is.
    pub idle_waits: AtomicU64,
    /// Maintenance steps skipped because a table they need was locked past their lock bound
    /// (or the statement ran past its bound): tried again on the next tick.
    pub maintenance_skipped: AtomicU64,
    /// Times this worker took its liveness lock (at start, and again after each loss).
    pub liveness_locks_taken: AtomicU64,
    /// Times this worker lost (or could not confirm) its liveness lock.
    pub liveness_lock_losses: AtomicU64,
    /// Dead-worker rescues this worker ran (whatever they found).
    pub rescue_runs: AtomicU64,
    /// Jobs of dead workers this worker released for a claim.
    pub dead_worker_jobs_released: AtomicU64,
}

impl WorkerStats {
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

pub struct Worker<H> {
    store: Store,
    handler: Arc<H>,
    config: WorkerConfig,
}

/// A running worker: stop it with [`WorkerHandle::shutdown`].
pub struct WorkerHandle {
    shutdown: CancellationToken,
    stats: Arc<WorkerStats>,
    task: tokio::task::JoinHandle<Result<(), WorkerError>>,
    worker_id: String,
}

impl WorkerHandle {
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Graceful stop: no new claims, in-flight work finishes (up to the drain timeout), results
    /// are flushed, and anything not started is released.
    pub async fn shutdown(self) -> Result<Arc<WorkerStats>, WorkerError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Wait until the worker stops (after its shutdown token is cancelled).
    pub async fn wait(self) -> Result<Arc<WorkerStats>, WorkerError> {
        match self.task.await {
            Ok(Ok(())) => Ok(self.stats),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(WorkerError::Task(e.to_string())),
        }
    }
}

impl<H: JobHandler> Worker<H> {
    pub fn new(store: Store, handler: H, config: WorkerConfig) -> Self {
        Self {
            store,
            handler: Arc::new(handler),
            config,
        }
    }

    /// Start the worker on the current runtime.
    pub fn spawn(self) -> WorkerHandle {
        let shutdown = CancellationToken::new();
        let stats = Arc::new(WorkerStats::default());
        let worker_id = self.config.worker_id.clone();
        let task = tokio::spawn(self.run(shutdown.clone(), stats.clone()));
        WorkerHandle {
            shutdown,
            stats,
            task,
            worker_id,
        }
    }

    async fn run(
        self,
        shutdown: CancellationToken,
        stats: Arc<WorkerStats>,
    ) -> Result<(), WorkerError> {
        let cfg = self.config.clone();
        let span = tracing::info_span!("worker", worker_id = %cfg.worker_id);
        async move {
            info!(concurrency = cfg.concurrency, batch_size = cfg.batch_size, lease = ?cfg.lease, "worker started");
            // The handler's kinds have their series from the start (a no-op without a recorder).
            for kind in self.handler.kinds() {
                crate::metrics_catalog::register_kind(kind);
            }
            let wake = Arc::new(Notify::new());
            // Background tasks stop on `background`, which is cancelled only after the drain and
            // the last write-back, so leases keep being extended while in-flight work finishes.
            let background = CancellationToken::new();
            let clock = Arc::new(LeaseClock::new(cfg.lease));
            // Jobs held here that nobody works on (given up for a lost lease, or whose outcome
            // cannot be written): the heartbeat lets their lease run out so a claim takes
            // them up again.
            let expiring: Arc<Mutex<HashSet<i64>>> = Arc::default();
            let mut listener = tokio::spawn(listen(self.store.clone(), wake.clone(), background.clone(), stats.clone()));
            // Whether this worker holds its liveness lock: it claims, beats and rescues only then.
            let (held_tx, held) = watch::channel(false);
            let mut lock_keeper = tokio::spawn(liveness::keep_lock(
                self.store.clone(),
                cfg.clone(),
                clock.clone(),
                held_tx,
                background.clone(),
                stats.clone(),
            ));
            let mut rescuer = tokio::spawn(liveness::rescue(
                self.store.clone(),
                cfg.clone(),
                held.clone(),
                wake.clone(),
                background.clone(),
                stats.clone(),
            ));
            let mut heartbeat = spawn_heartbeat(
                self.store.clone(),
                cfg.clone(),
                clock.clone(),
                held.clone(),
                background.clone(),
                stats.clone(),
                expiring.clone(),
            );
            let mut maintenance = tokio::spawn(maintain(
                self.store.clone(),
                self.handler.clone(),
                cfg.clone(),
                background.clone(),
                stats.clone(),
            ));
            let (done_tx, done_rx) = mpsc::channel::<WriteBack>(1024);
            let (deadline_tx, deadline_rx) = watch::channel(None);
            let mut completer = tokio::spawn(complete(
                self.store.clone(),
                cfg.clone(),
                done_rx,
                stats.clone(),
                deadline_rx,
                expiring.clone(),
                self.handler.clone(),
            ));

            let leases = Leases { clock: &clock, held };
            let result = self.produce(&shutdown, &wake, done_tx, leases, &expiring, &stats).await;

            // The producer returned: every batch it started was drained or cut off at the
            // drain timeout, and the completer's senders are gone. The last write-back gets
            // SHUTDOWN_FLUSH, whatever the database is doing (locked, down, refusing a row).
            let flush_deadline = tokio::time::Instant::now() + SHUTDOWN_FLUSH;
            let _ = deadline_tx.send(Some(flush_deadline));
            // The completer stops itself at the deadline; this is the backstop.
            match tokio::time::timeout_at(flush_deadline + Duration::from_secs(1), &mut completer).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!(error = %e, "completer task failed"),
                Err(_) => {
                    completer.abort();
                    error!("the last write-back did not finish in time; the jobs it held are left to lease expiry");
                }
            }
            // Give back what this worker still holds (cut off by the drain timeout, outcome not
            // written, lease lost): released now, it is claimable at once, and the ledger keeps
            // what it delivered from being sent again.
            match tokio::time::timeout(SHUTDOWN_RELEASE, self.store.release_held_jobs(&cfg.worker_id)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    stats.released_on_shutdown.fetch_add(n, Ordering::Relaxed);
                    warn!(jobs = n, "released jobs this worker still held at exit");
                }
                Ok(Err(e)) => error!(error = %e, "could not release the jobs this worker holds; they will be rescued when their lease expires"),
                Err(_) => error!("releasing the jobs this worker holds timed out; they will be rescued when their lease expires"),
            }
            background.cancel();
            let joined = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = tokio::join!(&mut listener, &mut heartbeat, &mut maintenance, &mut lock_keeper, &mut rescuer);
            })
            .await;
            if joined.is_err() {
                warn!("background tasks did not stop in time; abandoning them");
                listener.abort();
                heartbeat.abort();
                maintenance.abort();
                lock_keeper.abort();
                rescuer.abort();
            }
            info!(
                claimed = stats.get(&stats.claimed),
                applied = stats.get(&stats.applied),
                "worker stopped"
            );
            result
        }
        .instrument(span)
        .await
    }

    /// Claim batches while there is capacity; hand each to the handler on its own task.
    async fn produce(
        &self,
        shutdown: &CancellationToken,
        wake: &Notify,
        done_tx: mpsc::Sender<WriteBack>,
        leases: Leases<'_>,
        expiring: &Arc<Mutex<HashSet<i64>>>,
        stats: &Arc<WorkerStats>,
    ) -> Result<(), WorkerError> {
        let cfg = &self.config;
        let Leases { clock, mut held } = leases;
        let capacity = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut claim_failures = 0u32;

        while !shutdown.is_cancelled() {
            // Reap finished batch tasks so the JoinSet does not grow without bound.
            while let Some(res) = in_flight.try_join_next() {
                if let Err(e) = res {
                    error!(error = %e, "batch task failed");
                }
            }
            let free = capacity.available_permits();
            if free == 0 {
                // Wait for capacity (a batch finishing) or shutdown.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    permit = capacity.clone().acquire_owned() => { drop(permit); }
                }
                continue;
            }
            if !*held.borrow_and_update() {
                // Without its liveness lock a worker's new leases could be cut short at once
                // by a rescuer: wait until it holds the lock (again).
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = held.wait_for(|h| *h) => {}
                }
                continue;
            }
            let want = free.min(cfg.batch_size);
            // Read before the claim: a lock lost while it runs makes this batch lost as well.
            let generation = clock.generation();
            let claim_started = Instant::now();
            let jobs = match self
                .store
                .claim_jobs_fair(
                    want as i64,
                    &cfg.worker_id,
                    cfg.lease.as_secs_f64(),
                    cfg.job_payload_max(),
                    cfg.chunks_held_max.max(1) as i64,
                )
                .await
            {
                Ok(jobs) => {
                    claim_failures = 0;
                    jobs
                }
                Err(e) => {
                    claim_failures += 1;
                    // The database may be restarting; back off instead of spinning.
                    let pause = Duration::from_millis(200 * u64::from(claim_failures.min(25)));
                    if escalate(claim_failures, CLAIM_FAILURES_BEFORE_ERROR) {
                        error!(error = %e, failures = claim_failures, retry_in = ?pause, "claiming jobs keeps failing");
                    } else {
                        warn!(error = %e, retry_in = ?pause, "claiming jobs failed");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
            };
            let got = jobs.len();
            if got == 0 {
                stats.idle_waits.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(cfg.poll_interval) => {}
                }
                continue;
            }
            // Registered first: an older batch giving one of these jobs up from now on sees it
            // claimed again (Lease::reclaimed) and leaves it in the heartbeat.
            let lease = clock.register_since(claim_started, generation, jobs.iter().map(|j| j.id));
            {
                // Claimed again (by this worker): ours to work on and to heart-beat.
                let mut expiring = expiring.lock().unwrap_or_else(|p| p.into_inner());
                if !expiring.is_empty() {
                    for job in &jobs {
                        expiring.remove(&job.id);
                    }
                }
            }
            stats.claimed.fetch_add(got as u64, Ordering::Relaxed);
            record_claims(&jobs, stats, self.handler.kinds());
            // It claimed no more than were free; only a batch borrowing capacity for the jobs
            // it leases itself (a bulk change's, at expansion) can have taken some meanwhile,
            // and those come back as that batch's jobs complete.
            let permits = capacity
                .clone()
                .acquire_many_owned(got as u32)
                .await
                .map_err(|e| WorkerError::Task(e.to_string()))?;
            let handler = self.handler.clone();
            let tx = done_tx.clone();
            let ctx = BatchContext {
                worker_id: cfg.worker_id.clone(),
                shutdown: shutdown.clone(),
                lease,
                completer: done_tx.clone(),
                completed: std::sync::Mutex::new(HashSet::new()),
                abandoned: std::sync::Mutex::new(HashSet::new()),
                stats: stats.clone(),
                expiring: expiring.clone(),
                permits: std::sync::Mutex::new(Some(permits)),
                capacity: capacity.clone(),
                capacity_total: cfg.concurrency.max(1),
                adopted: std::sync::Mutex::new(Vec::new()),
                lease_duration: cfg.lease,
                capacity_patience: cfg.capacity_patience,
            };
            // Each batch on its own Sentry hub: its scope (job ids) stays its own while other
            // batches run on the same threads.
            let kinds = self.handler.kinds();
            let hub = crate::reporting::batch_hub(&cfg.worker_id, &jobs, |k| kind_label(kinds, k));
            let task = hub.bind(async move {
                let output = run_handler(handler.as_ref(), &ctx, jobs).await;
                if !output.is_empty() && tx.send(output).await.is_err() {
                    error!("completer stopped before a batch was written back; leases will expire and the jobs will be retried");
                }
                // What the batch still held goes back now that it is done.
                drop(ctx);
            });
            in_flight.spawn(task);
        }

        // Shutdown: let in-flight batches finish (they see the token and release unstarted work).
        let drained = tokio::time::timeout(cfg.drain_timeout, async {
            while let Some(res) = in_flight.join_next().await {
                if let Err(e) = res {
                    error!(error = %e, "batch task failed during drain");
                }
            }
        })
        .await;
        if drained.is_err() {
            // Requests still in flight are cut off; their jobs are released after the last
            // write-back (see `run`), and what they delivered unknowingly may be sent again.
            warn!(timeout = ?cfg.drain_timeout, "drain timed out; cutting off unfinished jobs");
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
        }
        drop(done_tx);
        Ok(())
    }
}

/// What the producer needs of the leases: the clock, and whether the liveness lock is held.
struct Leases<'a> {
    clock: &'a LeaseClock,
    held: watch::Receiver<bool>,
}

/// Consecutive claim failures tolerated (logged at WARN, about 3 s of backoff) before it is an
/// ERROR, i.e. reported to Sentry: a database restart should not page anyone.
const CLAIM_FAILURES_BEFORE_ERROR: u32 = 5;
/// Consecutive write-back failures before it is an ERROR; a single one is often a failover.
const WRITE_BACK_FAILURES_BEFORE_ERROR: u32 = 3;
/// Consecutive heartbeat failures before it is an ERROR (by default a lease survives two).
const HEARTBEAT_FAILURES_BEFORE_ERROR: u32 = 3;

/// Whether the `failures`-th consecutive failure is logged at ERROR: at `threshold`, then every
/// 100 failures while it lasts, so a long outage reports periodically instead of per retry.
fn escalate(failures: u32, threshold: u32) -> bool {
    failures >= threshold && (failures - threshold).is_multiple_of(100)
}

fn record_claims(jobs: &[ClaimedJob], stats: &WorkerStats, kinds: &[&'static str]) {
    for job in jobs {
        metrics::counter!("stagecast_jobs_claimed_total", "kind" => kind_label(kinds, &job.kind))
            .increment(1);
        if job.rescued {
            stats.rescued.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("stagecast_lease_expiries_total", "kind" => kind_label(kinds, &job.kind))
                .increment(1);
            warn!(job_id = job.id, kind = %job.kind, attempt = job.attempts, "rescued a job whose lease expired");
        }
    }
}

/// Run the handler, guaranteeing an outcome for every job: a panic or a forgotten job becomes
/// a retry instead of a job held (and heart-beaten) forever.
async fn run_handler<H: JobHandler>(
    handler: &H,
    ctx: &BatchContext,
    jobs: Vec<ClaimedJob>,
) -> WriteBack {
    let mut expected: Vec<(i64, i32)> = jobs.iter().map(|j| (j.id, j.attempts)).collect();
    let result = AssertUnwindSafe(handler.handle(ctx, jobs))
        .catch_unwind()
        .await;
    expected.extend(
        ctx.adopted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied(),
    );
    let (mut write_back, finalized) = match result {
        Ok(out) => (out.write_back, out.finalized),
        Err(panic) => {
            let msg = panic_message(&panic);
            error!(panic = %msg, jobs = expected.len(), "handler panicked; the batch will be retried");
            (WriteBack::default(), Vec::new())
        }
    };
    let mut covered: HashSet<i64> = ctx.completed_ids();
    covered.extend(
        write_back
            .outcomes
            .iter()
            .map(|o| o.id)
            .chain(finalized.iter().copied()),
    );
    // A batch lost with the liveness lock: once the handler returned, no request of this
    // worker is in flight for it, so what it gave up unsent is given back at once (fenced on
    // locked_by and attempts, in the same write-back as the ledger of what it did send) instead
    // of waiting for its lease. A job a rescuer took meanwhile is not touched.
    if ctx.lease.lost_to_lock() {
        let abandoned = ctx
            .abandoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for &(id, attempt) in expected.iter().filter(|(id, _)| abandoned.contains(id)) {
            write_back.outcomes.push(OutcomeRow {
                id,
                attempt,
                outcome: "released",
                run_at: Some(chrono::Utc::now()),
                error: Some(
                    "released: this worker lost its liveness lock before sending the rest".into(),
                ),
                destinations: None,
            });
        }
    }
    for (id, attempt) in expected {
        if !covered.contains(&id) {
            write_back.outcomes.push(OutcomeRow {
                id,
                attempt,
                outcome: "retry",
                run_at: Some(chrono::Utc::now() + chrono::Duration::seconds(30)),
                error: Some(
                    "internal error: the handler returned no outcome (see worker logs)".into(),
                ),
                destinations: None,
            });
        }
    }
    write_back
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Batched write-back: take whatever has accumulated while the previous flush ran. Idle → one
/// result is flushed at once (no added latency); busy → large batches (few transactions).
///
/// A batch that fails is written in isolation (`Store::flush`): one outcome the database refuses
/// never holds up the others. What failed for a passing reason is retried with backoff, the
/// ledger first. Once `deadline` is set (the drain is over), the completer makes one last
/// attempt with everything queued and stops at the deadline whatever the database does,
/// logging what it could not write.
async fn complete<H: JobHandler>(
    store: Store,
    cfg: WorkerConfig,
    mut rx: mpsc::Receiver<WriteBack>,
    stats: Arc<WorkerStats>,
    mut deadline: watch::Receiver<Option<tokio::time::Instant>>,
    expiring: Arc<Mutex<HashSet<i64>>>,
    handler: Arc<H>,
) {
    const MAX_OUTCOMES_PER_FLUSH: usize = 5000;
    let (worker_id, max_bytes) = (cfg.worker_id, cfg.write_back_max_bytes.max(1));
    // A result that would have pushed the last flush past its byte bound starts the next one.
    let mut carried: Option<WriteBack> = None;
    loop {
        let first = match carried.take() {
            Some(first) => first,
            None => match rx.recv().await {
                Some(first) => first,
                None => break,
            },
        };
        let mut batch = gather(
            first,
            &mut rx,
            &mut carried,
            MAX_OUTCOMES_PER_FLUSH,
            max_bytes,
        );
        let mut failures = 0u32;
        let mut last_attempt = false;
        // After a lock, timeout or refused row the fast path would only fail again: retries go
        // straight to isolation, the ledger first. After a lost connection it is the fastest.
        let mut ledger_first = false;
        loop {
            let flush = tokio::select! {
                f = store.flush(&worker_id, &batch, ledger_first) => f,
                _ = deadline_passed(&mut deadline) => {
                    let mut batch = batch;
                    batch.append(carried.take().unwrap_or_default());
                    give_up(batch, &mut rx, "the shutdown deadline passed during the last write-back");
                    return;
                }
            };
            record_flush(&flush.report, &stats, &expiring, handler.as_ref());
            if let Some(e) = &flush.error {
                stats.write_back_errors.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::metrics_catalog::WRITE_BACK_ERRORS).increment(1);
                if flush.leftover.is_empty() {
                    debug!(error = %e, "write-back isolated a failure; everything else was written");
                }
            }
            if flush.leftover.is_empty() {
                break;
            }
            batch = flush.leftover;
            failures += 1;
            ledger_first = !flush.error.as_ref().is_some_and(StoreError::is_connection);
            let e = flush
                .error
                .map(|e| e.to_string())
                .unwrap_or_else(|| "unknown error".into());
            if last_attempt {
                batch.append(carried.take().unwrap_or_default());
                give_up(batch, &mut rx, &e);
                break;
            }
            if deadline.borrow().is_some() {
                // Shutting down: one last attempt, with everything still queued.
                batch.append(carried.take().unwrap_or_default());
                while let Ok(more) = rx.try_recv() {
                    batch.append(more);
                }
                last_attempt = true;
                continue;
            }
            // Keep trying: the jobs stay leased (heartbeat) and the results are not lost while
            // this process lives. If it dies, leases expire and the jobs re-run with the same
            // event ids; the ledger, written first, spares what was delivered.
            let pause = Duration::from_millis(100 * u64::from(failures.min(50)));
            if escalate(failures, WRITE_BACK_FAILURES_BEFORE_ERROR) {
                error!(error = %e, attempt = failures, outcomes = batch.outcomes.len(), retry_in = ?pause, "write-back keeps failing");
            } else {
                warn!(error = %e, attempt = failures, retry_in = ?pause, "write-back failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = deadline.wait_for(Option::is_some) => {}
            }
        }
    }
}

/// One flush's worth: `first` and whatever else is already queued, up to `max_rows` outcomes
/// and `max_bytes` ([`WriteBack::approx_bytes`]). The result that would cross the byte bound
/// is left in `carried` for the next flush; a single result larger than the bound (its size is
/// bounded by the claim) is written on its own.
fn gather(
    first: WriteBack,
    rx: &mut mpsc::Receiver<WriteBack>,
    carried: &mut Option<WriteBack>,
    max_rows: usize,
    max_bytes: usize,
) -> WriteBack {
    let mut batch = first;
    let mut bytes = batch.approx_bytes();
    while batch.outcomes.len() < max_rows {
        match rx.try_recv() {
            Ok(more) => {
                let more_bytes = more.approx_bytes();
                if bytes + more_bytes > max_bytes {
                    *carried = Some(more);
                    break;
                }
                bytes += more_bytes;
                batch.append(more);
            }
            Err(_) => break,
        }
    }
    batch
}

/// Resolves when the shutdown deadline has been set and has passed.
async fn deadline_passed(deadline: &mut watch::Receiver<Option<tokio::time::Instant>>) {
    let at = match deadline.wait_for(Option::is_some).await {
        Ok(at) => *at,
        // The sender is gone only when the worker stops without a deadline: never resolves.
        Err(_) => None,
    };
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The process is about to exit with results it could not write: say exactly what is left to
/// lease expiry and the ledger (ids only, no customer data).
fn give_up(mut batch: WriteBack, rx: &mut mpsc::Receiver<WriteBack>, reason: &str) {
    while let Ok(more) = rx.try_recv() {
        batch.append(more);
    }
    let mut jobs: Vec<i64> = batch
        .outcomes
        .iter()
        .map(|o| o.id)
        .chain(batch.deliveries.iter().map(|d| d.job_id))
        .collect();
    jobs.sort_unstable();
    jobs.dedup();
    let unrecorded = batch
        .deliveries
        .iter()
        .filter(|d| d.outcome == "delivered")
        .count();
    let listed: Vec<i64> = jobs.iter().take(50).copied().collect();
    error!(
        reason,
        outcomes = batch.outcomes.len(),
        jobs = jobs.len(),
        job_ids = ?listed,
        delivered_not_in_ledger = unrecorded,
        "exiting with results that could not be written: these jobs are retried after their lease expires, and the delivered events not in the ledger may be sent again"
    );
}

/// Counters and metrics of one flush: the queue's own, then the handler's.
fn record_flush<H: JobHandler>(
    report: &WriteBackReport,
    stats: &WorkerStats,
    expiring: &Mutex<HashSet<i64>>,
    handler: &H,
) {
    use crate::metrics_catalog as m;
    stats.applied.fetch_add(report.applied, Ordering::Relaxed);
    stats
        .fenced_out
        .fetch_add(report.fenced_out, Ordering::Relaxed);
    stats
        .duplicate_deliveries
        .fetch_add(report.duplicate_deliveries, Ordering::Relaxed);
    if report.fenced_out > 0 {
        metrics::counter!(m::FENCED_COMPLETIONS).increment(report.fenced_out);
        warn!(
            count = report.fenced_out,
            "results ignored: another worker took these jobs over after our lease expired"
        );
    }
    if report.duplicate_deliveries > 0 {
        metrics::counter!(m::DUPLICATE_DELIVERIES).increment(report.duplicate_deliveries);
    }
    if report.chat_errors > 0 {
        stats
            .chat_alert_errors
            .fetch_add(report.chat_errors, Ordering::Relaxed);
        metrics::counter!(m::CHAT_ALERT_ERRORS).increment(report.chat_errors);
    }
    let unwritable_n = report.unwritable.len() as u64;
    for (result, n) in [
        ("applied", report.isolated),
        ("degraded", report.degraded),
        ("deferred", report.deferred),
        ("unwritable", unwritable_n),
    ] {
        if n > 0 {
            metrics::counter!(m::WRITE_BACK_ISOLATED, "result" => result).increment(n);
        }
    }
    stats
        .write_back_isolated
        .fetch_add(report.isolated, Ordering::Relaxed);
    stats
        .write_back_degraded
        .fetch_add(report.degraded, Ordering::Relaxed);
    stats
        .write_back_unwritable
        .fetch_add(unwritable_n, Ordering::Relaxed);
    for id in &report.unwritable {
        let_expire(expiring, *id);
    }
    m::record_write_back(report, handler.kinds());
    handler.written(report);
    debug!(
        applied = report.applied,
        alerts = report.new_alerts,
        "write-back flushed"
    );
}

/// Stop extending this job's lease. Bounded: a pathological flood must not grow the
/// heartbeat's exclusion list forever (beyond it jobs are simply heart-beaten like the rest).
fn let_expire(expiring: &Mutex<HashSet<i64>>, job_id: i64) {
    let mut set = expiring.lock().unwrap_or_else(|p| p.into_inner());
    if set.len() < 10_000 {
        set.insert(job_id);
    }
}

/// [`let_expire`] for a job of `lease`'s batch, unless this worker claimed it again since: the
/// newer claim's lease must go on being extended. Checked under the set's lock, which the
/// producer takes after registering a claim, so a claim cannot slip in between.
fn let_expire_unless_reclaimed(expiring: &Mutex<HashSet<i64>>, lease: &Lease, job_id: i64) {
    let mut set = expiring.lock().unwrap_or_else(|p| p.into_inner());
    if set.len() < 10_000 && !lease.reclaimed(job_id) {
        set.insert(job_id);
    }
}

/// The heartbeat on a thread and runtime of its own, with a connection of its own
/// ([`Store::heartbeat_store`], made inside that runtime, whose I/O it uses). On the worker's
/// runtime a beat waited for a thread behind the batches' CPU work (hashing, encoding), which
/// tokio cannot pre-empt: on a loaded host beats came late or not at all, and every lease of
/// the worker went into doubt. It stops with `stop`, mid-beat too.
fn spawn_heartbeat(
    store: Store,
    cfg: WorkerConfig,
    clock: Arc<LeaseClock>,
    held: watch::Receiver<bool>,
    stop: CancellationToken,
    stats: Arc<WorkerStats>,
    expiring: Arc<Mutex<HashSet<i64>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("stagecast-heartbeat")
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "could not start the heartbeat's runtime; leases will lapse and be rescued");
                return;
            }
        };
        runtime.block_on(async move {
            let store = store.heartbeat_store();
            // Stopped mid-beat too: the worker's runtime, which waits for this thread when it
            // shuts down, must not wait for a beat the database is slow to answer.
            let cancelled = stop.clone();
            tokio::select! {
                _ = heartbeat(store.clone(), cfg, clock, held, stop, stats, expiring) => {}
                _ = cancelled.cancelled() => {}
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), store.pool().close()).await;
        });
    })
}

/// Extend every lease this worker holds, by default at a third of the lease so one missed beat
/// is harmless. A row held by another transaction (our own write-back finishing it, an admin's
/// `SELECT ... FOR UPDATE`) is skipped, not waited for: only that job's lease is not extended,
/// and the lease clock stops requests for it, and gives it up, once its own lease might lapse.
/// Each beat is bounded (`heartbeat_timeout`) on the server and here, so a slow server or an
/// outage fails it instead of hanging it; only a beat acknowledged in time moves the lease
/// clock, which stops new requests before a lease can lapse.
async fn heartbeat(
    store: Store,
    cfg: WorkerConfig,
    clock: Arc<LeaseClock>,
    held: watch::Receiver<bool>,
    stop: CancellationToken,
    stats: Arc<WorkerStats>,
    expiring: Arc<Mutex<HashSet<i64>>>,
) {
    let period = cfg.heartbeat_period();
    let timeout = heartbeat_timeout(period);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !*held.borrow() {
            // Its leases are lost already (LeaseClock::lose_all); extending them would only
            // delay their rescue.
            continue;
        }
        let excluded: Vec<i64> = expiring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        let started = Instant::now();
        let beat = store.extend_leases(&cfg.worker_id, cfg.lease.as_secs_f64(), &excluded, timeout);
        let error = match tokio::time::timeout(timeout, beat).await {
            Ok(Ok(beat)) => {
                let lost = clock.renewed(started, Instant::now(), &beat.skipped);
                stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                stats
                    .heartbeat_skipped
                    .fetch_add(beat.skipped.len() as u64, Ordering::Relaxed);
                if !beat.skipped.is_empty() {
                    debug!(
                        skipped = beat.skipped.len(),
                        extended = beat.extended,
                        "heartbeat skipped rows held by another transaction"
                    );
                }
                if !lost.is_empty() {
                    // Nobody may send for them now; their lease must run out so that a claim
                    // (after the row is free) takes them up.
                    let ids: Vec<i64> = lost.iter().map(|(id, _)| *id).collect();
                    warn!(jobs = ?ids, "rows held by another transaction kept these leases from being extended; the jobs are given up and left to a rescue");
                    for (id, lease) in &lost {
                        let_expire_unless_reclaimed(&expiring, lease, *id);
                    }
                }
                failures = 0;
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {timeout:?}"),
        };
        failures += 1;
        stats.heartbeat_failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics_catalog::HEARTBEAT_FAILURES).increment(1);
        if escalate(failures, HEARTBEAT_FAILURES_BEFORE_ERROR) {
            error!(error = %error, failures, "lease heartbeat keeps failing; jobs whose lease may lapse are not sent and are left to a rescue");
        } else {
            warn!(error = %error, "lease heartbeat failed");
        }
    }
}

/// LISTEN for new jobs; sqlx's listener reconnects by itself, and the poll fallback covers any
/// notification lost while it was down.
async fn listen(store: Store, wake: Arc<Notify>, stop: CancellationToken, stats: Arc<WorkerStats>) {
    loop {
        let mut listener = match PgListener::connect_with(store.pool()).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "LISTEN connection failed; polling meanwhile");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
        };
        if let Err(e) = listener.listen(JOBS_CHANNEL).await {
            warn!(error = %e, "LISTEN failed; polling meanwhile");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
            }
        }
        stats.listener_connected.store(true, Ordering::Relaxed);
        // Jobs may have arrived before LISTEN took effect.
        wake.notify_one();
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    stats.listener_connected.store(false, Ordering::Relaxed);
                    return;
                }
                msg = listener.try_recv() => match msg {
                    Ok(Some(_)) => wake.notify_one(),
                    Ok(None) => {
                        // Connection lost; sqlx reconnects on the next call. Wake the producer
                        // in case a notification was lost meanwhile.
                        warn!("LISTEN connection lost; reconnecting");
                        wake.notify_one();
                    }
                    Err(e) => {
                        stats.listener_connected.store(false, Ordering::Relaxed);
                        warn!(error = %e, "LISTEN failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

/// The vacuum step of the maintenance: each tick, read the dead rows of stagecast's hot tables
/// (sql/vacuum_status.sql, cheap) and VACUUM those past autovacuum's own threshold, whether
/// autovacuum is on or not: with it off, a 100k-event burst left 200k dead rows in jobs for
/// good. The VACUUMs run on their own task, one round at a time, so a long one (a large audit
/// table) never delays retention, re-queuing or the gauges.
#[derive(Default)]
struct Vacuum {
    running: Option<tokio::task::JoinHandle<()>>,
    /// Tables this role may not vacuum, warned about once each.
    refused: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl Vacuum {
    fn tick(&mut self, store: &Store) {
        if self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.running = Some(tokio::spawn(vacuum_hot_tables(
            store.clone(),
            self.refused.clone(),
        )));
    }

    /// Shutdown must not wait for a VACUUM of a large table: the server finishes it anyway.
    fn stop(&mut self) {
        if let Some(h) = self.running.take() {
            h.abort();
        }
    }
}

async fn vacuum_hot_tables(store: Store, refused: Arc<std::sync::Mutex<HashSet<String>>>) {
    let tables = match store.vacuum_status().await {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "reading dead rows of stagecast's tables failed");
            return;
        }
    };
    for t in &tables {
        metrics::gauge!(crate::metrics_catalog::DEAD_ROWS, "table" => crate::metrics_catalog::vacuum_table_label(&t.table_name))
            .set(t.n_dead_tup as f64);
    }
    for t in tables.iter().filter(|t| t.behind()) {
        if !t.may_vacuum {
            let first = refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(t.table_name.clone());
            if first {
                warn!(
                    table = %t.qualified_name,
                    dead_rows = t.n_dead_tup,
                    threshold = t.dead_threshold,
                    "this worker's role may not VACUUM the table, so it is not kept lean; grant it (stagecast roles, docs/operations.md \"Database roles\")"
                );
            }
            continue;
        }
        let started = std::time::Instant::now();
        match store.vacuum_table(t).await {
            Ok(()) => {
                metrics::counter!(crate::metrics_catalog::VACUUMS, "table" => crate::metrics_catalog::vacuum_table_label(&t.table_name))
                    .increment(1);
                info!(
                    table = %t.qualified_name,
                    dead_rows = t.n_dead_tup,
                    threshold = t.dead_threshold,
                    autovacuum = t.autovacuum_on,
                    elapsed = ?started.elapsed(),
                    "vacuumed a table past its dead-row threshold"
                );
            }
            Err(e) => warn!(table = %t.qualified_name, error = %e, "VACUUM failed"),
        }
    }
}

/// Publish backlog and lag gauges from one bounded query (see sql/queue_stats.sql). Every
/// (kind, status) pair seen is reset to 0 when it disappears, so a drained queue reads 0.
async fn publish_queue_stats(
    store: &Store,
    seen: &mut HashSet<(&'static str, &'static str)>,
    kinds: &[&'static str],
    worker: &WorkerStats,
) {
    let stats = match store.queue_stats().await {
        Ok(s) => s,
        Err(e) => {
            maintenance_failed("queue_stats", &e, worker);
            return;
        }
    };
    let mut now_seen = HashSet::new();
    let mut lag: std::collections::HashMap<&'static str, f64> = std::collections::HashMap::new();
    for s in &stats {
        let (kind, status) = (kind_label(kinds, &s.kind), status_label(&s.status));
        metrics::gauge!("stagecast_queue_jobs", "kind" => kind, "status" => status)
            .set(s.jobs as f64);
        now_seen.insert((kind, status));
        if let Some(age) = s.oldest_due_age_seconds {
            let e = lag.entry(kind).or_insert(0.0);
            *e = e.max(age);
        }
    }
    for (kind, status) in seen.difference(&now_seen) {
        metrics::gauge!("stagecast_queue_jobs", "kind" => *kind, "status" => *status).set(0.0);
    }
    for kind in kinds.iter().copied() {
        metrics::gauge!("stagecast_queue_oldest_job_age_seconds", "kind" => kind)
            .set(lag.get(kind).copied().unwrap_or(0.0));
    }
    seen.extend(now_seen);
}

fn status_label(status: &str) -> &'static str {
    match status {
        "pending" => "pending",
        "running" => "running",
        "failed" => "failed",
        "cancelled" => "cancelled",
        _ => "other",
    }
}

/// A maintenance step failed. A timeout is a table locked elsewhere (an admin's open
/// transaction, a migration) or a slow server: every step's waits are bounded
/// ([`crate::store::Bounds::MAINTENANCE`]), so the step is skipped, counted and tried again on
/// the next tick instead of blocking the loop (and holding a pooled connection) behind the lock.
fn maintenance_failed(step: &'static str, e: &StoreError, stats: &WorkerStats) {
    if e.is_timeout() {
        stats.maintenance_skipped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics_catalog::MAINTENANCE_SKIPPED, "step" => step).increment(1);
        warn!(step, error = %e, "skipped a maintenance step: a table it needs is locked (see `stagecast doctor`, Table locks); trying again next tick");
    } else {
        warn!(step, error = %e, "maintenance step failed");
    }
}

async fn maintain<H: JobHandler>(
    store: Store,
    handler: Arc<H>,
    cfg: WorkerConfig,
    stop: CancellationToken,
    stats: Arc<WorkerStats>,
) {
    let mut seen = HashSet::new();
    let mut vacuum = Vacuum::default();
    let mut tick = tokio::time::interval(cfg.maintenance_interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                vacuum.stop();
                return;
            }
            _ = tick.tick() => {}
        }
        // One tick's steps, each bounded on the server; shutdown does not wait for them.
        let round = async {
            publish_queue_stats(&store, &mut seen, handler.kinds(), &stats).await;
            vacuum.tick(&store);
            match store.prune(&cfg.retention, 10_000).await {
                Ok(report) if report.total() > 0 => {
                    debug!(?report, "retention pruned finished rows");
                }
                Ok(_) => {}
                Err(e) => maintenance_failed("retention", &e, &stats),
            }
            match store.requeue_enqueue_failures().await {
                Ok((requeued, parked)) if parked > 0 => {
                    warn!(
                        parked,
                        requeued, "re-queued stage changes a CRM trigger had parked"
                    );
                }
                Ok(_) => {}
                Err(e) => maintenance_failed("requeue_parked", &e, &stats),
            }
            match store.enqueue_fallbacks().await {
                Ok((parked, lost)) => {
                    use crate::metrics_catalog::ENQUEUE_FALLBACKS;
                    metrics::gauge!(ENQUEUE_FALLBACKS, "state" => "parked").set(parked as f64);
                    metrics::gauge!(ENQUEUE_FALLBACKS, "state" => "lost").set(lost as f64);
                }
                Err(e) => maintenance_failed("enqueue_fallbacks", &e, &stats),
            }
            if let Err(e) = handler.maintain().await {
                maintenance_failed("handler", &e, &stats);
            }
        };
        let stopped = tokio::select! {
            _ = stop.cancelled() => true,
            _ = round => false,
        };
        if stopped {
            vacuum.stop();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{escalate, gather};
    use crate::store::{OutcomeRow, WriteBack};

    fn result(id: i64, error_bytes: usize) -> WriteBack {
        WriteBack {
            outcomes: vec![OutcomeRow {
                id,
                attempt: 1,
                outcome: "retry",
                run_at: None,
                error: Some("x".repeat(error_bytes)),
                destinations: None,
            }],
            ..WriteBack::default()
        }
    }

    fn ids(w: &WriteBack) -> Vec<i64> {
        w.outcomes.iter().map(|o| o.id).collect()
    }

    #[test]
    fn a_flush_is_bounded_in_bytes_and_the_next_result_waits_for_the_next_flush() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        for id in 2..=5 {
            tx.try_send(result(id, 400)).unwrap();
        }
        let bound = 3 * result(1, 400).approx_bytes();
        let mut carried = None;
        let first = gather(result(1, 400), &mut rx, &mut carried, 5000, bound);
        assert_eq!(ids(&first), vec![1, 2, 3]);
        assert!(first.approx_bytes() <= bound);
        let next = carried.take().expect("result 4 carried over");
        let second = gather(next, &mut rx, &mut carried, 5000, bound);
        assert_eq!(ids(&second), vec![4, 5]);
        assert!(carried.is_none());
        // One result larger than the bound is written on its own.
        tx.try_send(result(7, 10)).unwrap();
        let alone = gather(result(6, 10 * bound), &mut rx, &mut carried, 5000, bound);
        assert_eq!(ids(&alone), vec![6]);
        assert_eq!(carried.map(|c| ids(&c)), Some(vec![7]));
    }

    #[test]
    fn failures_escalate_at_the_threshold_then_every_hundredth() {
        let errors: Vec<u32> = (1..=300).filter(|&f| escalate(f, 5)).collect();
        assert_eq!(errors, vec![5, 105, 205]);
        assert!(escalate(3, 3) && !escalate(2, 3) && !escalate(4, 3));
    }
}
