//! All SQL lives behind this module (River-style): callers get typed functions, the statements
//! live in `sql/*.sql`, named for what they do. Nothing else in the crate writes SQL for the
//! queue or the CRM, so a reviewer finds every statement in one place.

pub mod admin;
pub mod doctor;
mod limits;
mod liveness;
mod rows;
pub mod sanitize;
mod session;
mod vacuum;
mod write_back;

pub use limits::{HoldQuery, HoldRow, NewHold, PauseRequest, ProbeClaim, RequestSlot};
pub use liveness::{LockSession, Rescue};
pub use rows::*;
pub use session::pool_options;
pub use vacuum::VacuumStatus;
pub use write_back::{Flush, LOCK_TIMEOUT as WRITE_BACK_LOCK_TIMEOUT};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// Every migration of the CRM data contract and the `stagecast` schema, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Errors of the storage layer. Statements never include PII or tokens in their error text
/// because parameters are bound, not interpolated.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("could not encode {what} for the database: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The statement gave up waiting: a lock held elsewhere past the transaction's
    /// `lock_timeout` (55P03), or its `statement_timeout` (57014). A passing condition: the
    /// caller skips the step and tries again later.
    pub fn is_timeout(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        e.as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "55P03" || c == "57014")
    }
}

/// How long one transaction may wait for a lock, and run, before the server cancels it (set
/// LOCAL by [`Store::begin_bounded`], sql/bounded_transaction.sql).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub lock_timeout: std::time::Duration,
    pub statement_timeout: std::time::Duration,
}

impl Bounds {
    /// The worker's maintenance (retention, re-queue of parked enqueues, gauges, token
    /// sealing): its own statements hold rows for milliseconds, so a second's wait is someone
    /// else's long transaction; the tick is skipped and the next one (10 s later) tries again.
    /// The statement bound is generous: retention deletes up to 10,000 rows per table.
    pub const MAINTENANCE: Bounds = Bounds {
        lock_timeout: std::time::Duration::from_secs(1),
        statement_timeout: std::time::Duration::from_secs(30),
    };
    /// The claim: other workers' claims skip locked rows and never make it wait, so only a
    /// table lock can (ACCESS EXCLUSIVE of an admin, a migration, VACUUM FULL). The producer
    /// then backs off and claims again, and can see a shutdown in between.
    pub const CLAIM: Bounds = Bounds {
        lock_timeout: std::time::Duration::from_secs(2),
        statement_timeout: std::time::Duration::from_secs(30),
    };
}

/// The largest payload a claim returns by default (4 MiB per claim of 1,000 jobs, the defaults
/// of `--claim-max-bytes` and `--batch-size`; a stage change's is about 200 bytes). Larger
/// ones, a bulk change's chunks, are expanded in SQL.
pub const DEFAULT_JOB_PAYLOAD_MAX: i32 = 4 * 1024 * 1024 / 1000;

fn millis(d: std::time::Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// The statements, embedded at compile time.
mod sql {
    pub const CLAIM_JOBS: &str = include_str!("../../sql/claim_jobs.sql");
    pub const CLAIM_SETTINGS: &str = include_str!("../../sql/claim_settings.sql");
    pub const EXTEND_LEASES: &str = include_str!("../../sql/extend_leases.sql");
    pub const COMPLETE_JOBS: &str = include_str!("../../sql/complete_jobs.sql");
    pub const INSERT_DELIVERIES: &str = include_str!("../../sql/insert_deliveries.sql");
    pub const INSERT_ALERTS: &str = include_str!("../../sql/insert_alerts.sql");
    pub const POST_ALERTS: &str = include_str!("../../sql/post_alerts.sql");
    pub const EXPAND_STAGE_CHANGE_BATCH: &str =
        include_str!("../../sql/expand_stage_change_batch.sql");
    pub const LOAD_STAGE_CHANGE_CONTEXTS: &str =
        include_str!("../../sql/load_stage_change_contexts.sql");
    pub const LOAD_PIXELS: &str = include_str!("../../sql/load_pixels.sql");
    pub const DELIVERED_EVENTS: &str = include_str!("../../sql/delivered_events.sql");
    pub const PRUNE_FINISHED: &str = include_str!("../../sql/prune_finished.sql");
    pub const REQUEUE_ENQUEUE_FAILURES: &str =
        include_str!("../../sql/requeue_enqueue_failures.sql");
    pub const ENQUEUE_FALLBACKS: &str = include_str!("../../sql/enqueue_fallbacks.sql");
    pub const PLAINTEXT_TOKENS: &str = include_str!("../../sql/plaintext_tokens.sql");
    pub const STORE_SEALED_TOKEN: &str = include_str!("../../sql/store_sealed_token.sql");
    pub const SEALED_TOKENS: &str = include_str!("../../sql/sealed_tokens.sql");
    pub const QUEUE_STATS: &str = include_str!("../../sql/queue_stats.sql");
    pub const WRITE_BACK_SETTINGS: &str = include_str!("../../sql/write_back_settings.sql");
    pub const HEARTBEAT_SETTINGS: &str = include_str!("../../sql/heartbeat_settings.sql");
    pub const BOUNDED_TRANSACTION: &str = include_str!("../../sql/bounded_transaction.sql");
    pub const ANALYZE_JOBS: &str = include_str!("../../sql/analyze_jobs.sql");
    pub const RELEASE_HELD_JOBS: &str = include_str!("../../sql/release_held_jobs.sql");
    pub const SUPERSEDE_HELD_JOBS: &str = include_str!("../../sql/supersede_held_jobs.sql");
    pub const SET_PIXEL_TOKEN: &str = include_str!("../../sql/set_pixel_token.sql");
    pub const SCHEMA_VERSION: &str = include_str!("../../sql/schema_version.sql");
    pub const TRY_MIGRATION_LOCK: &str = include_str!("../../sql/try_migration_lock.sql");
    pub const RELEASE_MIGRATION_LOCK: &str = include_str!("../../sql/release_migration_lock.sql");
    pub const QUEUE_COUNTS: &str = include_str!("../../sql/queue_counts.sql");
    pub const LOAD_MESSAGE: &str = include_str!("../../sql/load_message.sql");
    pub const FIND_CUSTOMERS_BY_PHONE: &str = include_str!("../../sql/find_customers_by_phone.sql");
    pub const MATCH_CAMPAIGN_BY_AD: &str = include_str!("../../sql/match_campaign_by_ad.sql");
    pub const MATCH_CAMPAIGN_BY_CAMPAIGN_ID: &str =
        include_str!("../../sql/match_campaign_by_campaign_id.sql");
    pub const RECORD_FIRST_TOUCH: &str = include_str!("../../sql/record_first_touch.sql");
    pub const REPLACE_SEALED_TOKEN: &str = include_str!("../../sql/replace_sealed_token.sql");
}

/// The narrow interface to Postgres. Cheap to clone (the pool is reference counted).
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A store on one connection of its own, to the same database, for the lease heartbeat:
    /// on the shared pool a beat waited for a connection behind the batches' statements, and
    /// under load that wait alone ran past the beat's bound, which makes every lease of the
    /// worker doubtful. Connects lazily; call it inside the runtime.
    pub fn heartbeat_store(&self) -> Store {
        let pool = session::pool_options()
            .max_connections(1)
            .connect_lazy_with((*self.pool.connect_options()).clone());
        Store::new(pool)
    }

    /// A transaction whose lock waits and statements are bounded by `bounds` (set LOCAL).
    pub async fn begin_bounded(
        &self,
        bounds: Bounds,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::BOUNDED_TRANSACTION)
            .bind(millis(bounds.lock_timeout))
            .bind(millis(bounds.statement_timeout))
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Apply pending migrations, one process at a time.
    ///
    /// sqlx's own lock is `pg_advisory_lock`, a *waiting* statement: a second `migrate` blocked
    /// in it holds a snapshot, and `CREATE INDEX CONCURRENTLY` (the phone-lookup migrations) waits
    /// for every snapshot to go, while the second process waits for the first's lock: a deadlock
    /// (`tests/lifecycle.rs`, three `migrate` and a `run --migrate` at once). So the lock is
    /// taken here with `pg_try_advisory_lock`, polled from a connection that is idle between
    /// tries, and sqlx runs without its own.
    pub async fn migrate(&self) -> Result<()> {
        use sqlx::Connection as _;
        let mut lock = self.pool.acquire().await?;
        loop {
            let got: bool = sqlx::query_scalar(sql::TRY_MIGRATION_LOCK)
                .fetch_one(&mut *lock)
                .await?;
            if got {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let migrator = sqlx::migrate::Migrator {
            migrations: MIGRATOR.migrations.clone(),
            ignore_missing: MIGRATOR.ignore_missing,
            locking: false,
            no_tx: MIGRATOR.no_tx,
        };
        let result = migrator.run(&self.pool).await;
        // Session-level: released explicitly, or with the connection if that fails.
        if sqlx::query(sql::RELEASE_MIGRATION_LOCK)
            .execute(&mut *lock)
            .await
            .is_err()
        {
            let _ = lock.detach().close().await;
        }
        result?;
        Ok(())
    }

    /// The newest applied migration version, if any.
    pub async fn schema_version(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(sql::SCHEMA_VERSION)
            .fetch_one(&self.pool)
            .await?)
    }

    // ---- queue --------------------------------------------------------------------------

    /// Live jobs by status: (pending, running, failed). A `count(*)`: for tools and tests,
    /// never for a metrics scrape.
    pub async fn queue_counts(&self) -> Result<(i64, i64, i64)> {
        Ok(sqlx::query_as(sql::QUEUE_COUNTS)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Backlog per (kind, status) with the age of the oldest due pending job (gauges), bounded
    /// by [`Bounds::MAINTENANCE`] (the maintenance reads it every tick).
    pub async fn queue_stats(&self) -> Result<Vec<QueueStat>> {
        let mut tx = self.begin_bounded(Bounds::MAINTENANCE).await?;
        let stats = timed(
            "queue_stats",
            sqlx::query_as(sql::QUEUE_STATS).fetch_all(&mut *tx),
        )
        .await?;
        tx.commit().await?;
        Ok(stats)
    }

    /// Wait until no job is pending or running (or `timeout` passes). Returns whether it drained.
    pub async fn wait_until_drained(&self, timeout: std::time::Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (pending, running, _) = self.queue_counts().await?;
            if pending == 0 && running == 0 {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Lease up to `limit` due jobs (and jobs whose lease expired) for `worker`, waiting for
    /// a lock at most [`Bounds::CLAIM`] (a locked queue is a claim error, retried). Payloads
    /// over [`DEFAULT_JOB_PAYLOAD_MAX`] come back as JSON null ([`Store::claim_jobs_bounded`]).
    pub async fn claim_jobs(
        &self,
        limit: i64,
        worker: &str,
        lease_secs: f64,
    ) -> Result<Vec<ClaimedJob>> {
        self.claim_jobs_bounded(limit, worker, lease_secs, DEFAULT_JOB_PAYLOAD_MAX)
            .await
    }

    /// [`Store::claim_jobs`], returning a job's payload only if it is at most
    /// `max_payload_bytes` (else JSON null): a claim then carries at most `limit ×
    /// max_payload_bytes` bytes of payload (sql/claim_jobs.sql). Takes any number of a bulk
    /// change's chunks; the worker claims with [`Store::claim_jobs_fair`].
    pub async fn claim_jobs_bounded(
        &self,
        limit: i64,
        worker: &str,
        lease_secs: f64,
        max_payload_bytes: i32,
    ) -> Result<Vec<ClaimedJob>> {
        self.claim_jobs_fair(limit, worker, lease_secs, max_payload_bytes, limit)
            .await
    }

    /// [`Store::claim_jobs_bounded`], leaving a bulk change's chunks (`stage_change_batch`
    /// jobs) to the other workers once `worker` holds `chunks_held_max` of them unexpanded:
    /// it expands them one at a time, so taking more would only keep them from the others
    /// (sql/claim_jobs.sql).
    pub async fn claim_jobs_fair(
        &self,
        limit: i64,
        worker: &str,
        lease_secs: f64,
        max_payload_bytes: i32,
        chunks_held_max: i64,
    ) -> Result<Vec<ClaimedJob>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::CLAIM_SETTINGS)
            .bind(millis(Bounds::CLAIM.lock_timeout))
            .bind(millis(Bounds::CLAIM.statement_timeout))
            .execute(&mut *tx)
            .await?;
        let jobs = timed(
            "claim_jobs",
            sqlx::query_as::<_, ClaimedJob>(sql::CLAIM_JOBS)
                .bind(limit)
                .bind(worker)
                .bind(lease_secs)
                .bind(max_payload_bytes)
                .bind(chunks_held_max)
                .fetch_all(&mut *tx),
        )
        .await?;
        tx.commit().await?;
        Ok(jobs)
    }

    /// Heartbeat: extend the lease of every job `worker` holds but `excluded` (jobs nobody
    /// works on any more: their lease must run out) and those whose row another transaction
    /// holds: these are skipped, not waited for, and returned (sql/extend_leases.sql). The
    /// statement is bounded by `timeout` on the server, so a slow server or a table lock fails
    /// the beat instead of hanging it.
    pub async fn extend_leases(
        &self,
        worker: &str,
        lease_secs: f64,
        excluded: &[i64],
        timeout: std::time::Duration,
    ) -> Result<LeaseExtension> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::HEARTBEAT_SETTINGS)
            .bind(format!("{}ms", timeout.as_millis().max(1)))
            .execute(&mut *tx)
            .await?;
        let (extended, skipped): (i64, Vec<i64>) = timed(
            "extend_leases",
            sqlx::query_as(sql::EXTEND_LEASES)
                .bind(worker)
                .bind(lease_secs)
                .bind(excluded)
                .fetch_one(&mut *tx),
        )
        .await?;
        tx.commit().await?;
        Ok(LeaseExtension {
            extended: u64::try_from(extended).unwrap_or(0),
            skipped,
        })
    }

    /// Expand a `stage_change_batch` job (one chunk of a bulk change, at most
    /// `stagecast.stage_change_chunk` customers) into per-customer jobs, in one statement: the
    /// chunk is expanded and archived, or not at all. Up to `lease` of the new jobs are leased to
    /// `worker` at birth (attempt 1, for `lease_secs`) and returned for it to work on without a
    /// claim. `None` when the worker no longer holds the batch job (its lease expired and
    /// another worker took it).
    pub async fn expand_stage_change_batch(
        &self,
        job_id: i64,
        worker: &str,
        attempt: i32,
        lease: usize,
        lease_secs: f64,
    ) -> Result<Option<Expansion>> {
        type Row = (
            i64,
            i64,
            Option<i64>,
            Option<String>,
            Option<serde_json::Value>,
            Option<i32>,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = timed(
            "expand_stage_change_batch",
            sqlx::query_as(sql::EXPAND_STAGE_CHANGE_BATCH)
                .bind(job_id)
                .bind(worker)
                .bind(attempt)
                .bind(i64::try_from(lease).unwrap_or(i64::MAX))
                .bind(lease_secs)
                .fetch_all(&self.pool),
        )
        .await?;
        let Some(&(created, archived, ..)) = rows.first() else {
            return Ok(None);
        };
        if archived == 0 {
            return Ok(None);
        }
        let leased = rows
            .into_iter()
            .filter_map(|(_, _, id, kind, payload, max_attempts, created_at)| {
                Some(ClaimedJob {
                    id: id?,
                    kind: kind?,
                    payload: payload?,
                    attempts: 1,
                    max_attempts: max_attempts?,
                    created_at: created_at?,
                    rescued: false,
                })
            })
            .collect();
        Ok(Some(Expansion {
            created: created as u64,
            leased,
        }))
    }

    /// Refresh the queue's statistics (after a bulk insert, rather than waiting for
    /// autoanalyze). The caller rate-limits it: two at once on one table wait for each other.
    /// Bounded by [`Bounds::MAINTENANCE`]: behind a VACUUM of the queue it gives up instead of
    /// holding a connection.
    pub async fn analyze_jobs(&self) -> Result<()> {
        let mut tx = self.begin_bounded(Bounds::MAINTENANCE).await?;
        timed(
            "analyze_jobs",
            sqlx::query(sql::ANALYZE_JOBS).execute(&mut *tx),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Delete finished jobs, audit rows and alerts past their retention (bounded by
    /// [`Bounds::MAINTENANCE`]: a locked table skips this round).
    pub async fn prune(&self, retention: &Retention, batch: i64) -> Result<PruneReport> {
        let mut tx = self.begin_bounded(Bounds::MAINTENANCE).await?;
        let (archive, dead, audit, alerts): (i64, i64, i64, i64) = timed(
            "prune_finished",
            sqlx::query_as(sql::PRUNE_FINISHED)
                .bind(retention.done.as_secs_f64())
                .bind(retention.failed.as_secs_f64())
                .bind(retention.audit.as_secs_f64())
                .bind(batch)
                .fetch_one(&mut *tx),
        )
        .await?;
        tx.commit().await?;
        Ok(PruneReport {
            archive: archive as u64,
            dead: dead as u64,
            audit: audit as u64,
            alerts: alerts as u64,
        })
    }

    /// Move stage changes that a trigger had to park back into the queue (bounded by
    /// [`Bounds::MAINTENANCE`]: with the queue locked, they stay parked until the next round).
    pub async fn requeue_enqueue_failures(&self) -> Result<(u64, u64)> {
        let mut tx = self.begin_bounded(Bounds::MAINTENANCE).await?;
        let (requeued, parked): (i64, i64) = timed(
            "requeue_enqueue_failures",
            sqlx::query_as(sql::REQUEUE_ENQUEUE_FAILURES).fetch_one(&mut *tx),
        )
        .await?;
        tx.commit().await?;
        Ok((requeued as u64, parked as u64))
    }

    /// CRM changes the triggers could not queue: (parked, lost). See sql/enqueue_fallbacks.sql.
    pub async fn enqueue_fallbacks(&self) -> Result<(i64, i64)> {
        let mut tx = self.begin_bounded(Bounds::MAINTENANCE).await?;
        let counts = timed(
            "enqueue_fallbacks",
            sqlx::query_as(sql::ENQUEUE_FALLBACKS).fetch_one(&mut *tx),
        )
        .await?;
        tx.commit().await?;
        Ok(counts)
    }

    // ---- pipeline reads -----------------------------------------------------------------

    pub async fn load_stage_change_contexts(
        &self,
        keys: &[ContextKey],
    ) -> Result<Vec<StageChangeContext>> {
        let job_ids: Vec<i64> = keys.iter().map(|k| k.job_id).collect();
        let customer_ids: Vec<i64> = keys.iter().map(|k| k.customer_id).collect();
        let stage_ids: Vec<i64> = keys.iter().map(|k| k.stage_id).collect();
        Ok(timed(
            "load_stage_change_contexts",
            sqlx::query_as::<_, StageChangeContext>(sql::LOAD_STAGE_CHANGE_CONTEXTS)
                .bind(job_ids)
                .bind(customer_ids)
                .bind(stage_ids)
                .fetch_all(&self.pool),
        )
        .await?)
    }

    pub async fn load_pixels(&self) -> Result<Vec<PixelRow>> {
        Ok(timed(
            "load_pixels",
            sqlx::query_as::<_, PixelRow>(sql::LOAD_PIXELS).fetch_all(&self.pool),
        )
        .await?)
    }

    /// The ledger: which of these event ids are already delivered, as (event id, job id of the
    /// delivery): by an earlier attempt of the same job, or by another job of the same change.
    pub async fn delivered_events(&self, event_ids: &[String]) -> Result<Vec<(String, i64)>> {
        Ok(timed(
            "delivered_events",
            sqlx::query_as(sql::DELIVERED_EVENTS)
                .bind(event_ids)
                .fetch_all(&self.pool),
        )
        .await?)
    }

    // ---- attribution ----------------------------------------------------------------------

    pub async fn load_message(&self, message_id: i64) -> Result<Option<MessageRow>> {
        Ok(timed(
            "load_message",
            sqlx::query_as(sql::LOAD_MESSAGE)
                .bind(message_id)
                .fetch_optional(&self.pool),
        )
        .await?)
    }

    /// Customers matching any of these phone digit strings, best match first.
    pub async fn find_customers_by_phone(&self, digits: &[String]) -> Result<Vec<i64>> {
        Ok(timed(
            "find_customers_by_phone",
            sqlx::query_scalar(sql::FIND_CUSTOMERS_BY_PHONE)
                .bind(digits)
                .fetch_all(&self.pool),
        )
        .await?)
    }

    pub async fn match_campaign_by_ad(&self, ad_id: &str) -> Result<Option<i64>> {
        Ok(timed(
            "match_campaign_by_ad",
            sqlx::query_scalar(sql::MATCH_CAMPAIGN_BY_AD)
                .bind(ad_id)
                .fetch_optional(&self.pool),
        )
        .await?)
    }

    pub async fn match_campaign_by_campaign_id(&self, campaign_id: &str) -> Result<Option<i64>> {
        Ok(timed(
            "match_campaign_by_campaign_id",
            sqlx::query_scalar(sql::MATCH_CAMPAIGN_BY_CAMPAIGN_ID)
                .bind(campaign_id)
                .fetch_optional(&self.pool),
        )
        .await?)
    }

    /// Store first-touch ad data (only if the customer has none, or completes one without a
    /// click id) and the campaign it matched.
    pub async fn record_first_touch(
        &self,
        customer_id: i64,
        metadata: &serde_json::Value,
        campaign_id: Option<i64>,
    ) -> Result<FirstTouch> {
        let result: String = timed(
            "record_first_touch",
            sqlx::query_scalar(sql::RECORD_FIRST_TOUCH)
                .bind(customer_id)
                .bind(metadata)
                .bind(campaign_id)
                .fetch_one(&self.pool),
        )
        .await?;
        Ok(match result.as_str() {
            "recorded" => FirstTouch::Recorded,
            "completed" => FirstTouch::Completed,
            "kept" => FirstTouch::Kept,
            _ => FirstTouch::CustomerMissing,
        })
    }

    // ---- tokens ---------------------------------------------------------------------------

    /// Pixels holding a plaintext token written by the CRM. The token is only ever held in
    /// memory long enough to seal it.
    /// Bounded by [`Bounds::MAINTENANCE`]: the maintenance seals on every tick, and a
    /// locked pixels table must skip the round, not block it.
    pub async fn plaintext_tokens(&self) -> Result<Vec<(i64, String)>> {
        let mut tx = self.begin_bounded(Bounds::MAINTENANCE).await?;
        let rows = sqlx::query_as(sql::PLAINTEXT_TOKENS)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Store a sealed token and clear the plaintext, if the plaintext is still `expected`.
    pub async fn store_sealed_token(
        &self,
        pixel_ref: i64,
        sealed: &str,
        expected: &str,
    ) -> Result<bool> {
        let mut tx = self.begin_bounded(Bounds::MAINTENANCE).await?;
        let stored = sqlx::query_scalar(sql::STORE_SEALED_TOKEN)
            .bind(pixel_ref)
            .bind(sealed)
            .bind(expected)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Store a sealed token on the pixel with this row id or platform id. Returns how many
    /// pixels matched (only a unique match is updated).
    pub async fn set_pixel_token(&self, pixel: &str, sealed: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(sql::SET_PIXEL_TOKEN)
            .bind(pixel)
            .bind(sealed)
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn sealed_tokens(&self) -> Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as(sql::SEALED_TOKENS)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Replace a sealed token (re-sealed with the primary key), if it is still `expected`.
    pub async fn replace_sealed_token(
        &self,
        pixel_ref: i64,
        sealed: &str,
        expected: &str,
    ) -> Result<bool> {
        Ok(sqlx::query_scalar(sql::REPLACE_SEALED_TOKEN)
            .bind(pixel_ref)
            .bind(sealed)
            .bind(expected)
            .fetch_one(&self.pool)
            .await?)
    }
}

/// Time a statement into `stagecast_db_query_duration_seconds{query}` (bounded label: the
/// statement's file name).
async fn timed<T>(query: &'static str, fut: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = fut.await;
    metrics::histogram!("stagecast_db_query_duration_seconds", "query" => query)
        .record(started.elapsed().as_secs_f64());
    out
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|source| StoreError::Encode { what, source })
}

/// How long finished work is kept.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Done jobs in `stagecast.job_archive`.
    pub done: std::time::Duration,
    /// Failed and cancelled jobs (kept for inspection and replay).
    pub failed: std::time::Duration,
    /// Delivery audit and alerts.
    pub audit: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            done: std::time::Duration::from_secs(24 * 3600),
            failed: std::time::Duration::from_secs(30 * 24 * 3600),
            audit: std::time::Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    pub archive: u64,
    pub dead: u64,
    pub audit: u64,
    pub alerts: u64,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.archive + self.dead + self.audit + self.alerts
    }
}

/// What one write-back transaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteBackReport {
    /// Outcomes applied (the worker still held the job).
    pub applied: u64,
    /// Outcomes ignored because another worker had taken the job over.
    pub fenced_out: u64,
    /// Delivered events already recorded as delivered (re-sent after a crash or lease loss).
    pub duplicate_deliveries: u64,
    pub new_alerts: u64,
    /// Cause codes of the new alerts (for the alerts-written metric).
    pub new_alert_causes: Vec<String>,
    pub posted_alerts: u64,
    /// Applied outcomes as (job kind, outcome, jobs) (for the jobs-completed metric).
    pub completed: Vec<(String, String, u64)>,
    /// Alerts kept in stagecast.alerts that the CRM's chat refused (reason in chat_error).
    pub chat_errors: u64,
    /// After the batch failed as a whole: jobs written on their own, jobs written without
    /// their audit detail, jobs deferred to a retry (a passing error), and jobs whose outcome
    /// cannot be written at all (left to lease expiry).
    pub isolated: u64,
    pub degraded: u64,
    pub deferred: u64,
    pub unwritable: Vec<i64>,
}

impl WriteBackReport {
    pub fn merge(&mut self, other: WriteBackReport) {
        self.applied += other.applied;
        self.fenced_out += other.fenced_out;
        self.duplicate_deliveries += other.duplicate_deliveries;
        self.new_alerts += other.new_alerts;
        self.new_alert_causes.extend(other.new_alert_causes);
        self.posted_alerts += other.posted_alerts;
        self.completed.extend(other.completed);
        self.chat_errors += other.chat_errors;
        self.isolated += other.isolated;
        self.degraded += other.degraded;
        self.deferred += other.deferred;
        self.unwritable.extend(other.unwritable);
    }
}

/// A batch of results to write back.
#[derive(Debug, Default, Clone)]
pub struct WriteBack {
    pub outcomes: Vec<OutcomeRow>,
    pub deliveries: Vec<DeliveryRow>,
    pub alerts: Vec<AlertRow>,
}

impl WriteBack {
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty() && self.deliveries.is_empty() && self.alerts.is_empty()
    }

    /// About how many bytes this batch sends to the database: the variable-length fields (the
    /// audit's request and response text dominate) plus a fixed share per row. A response shared
    /// by the events of one request is counted once per event: an over-estimate, which only
    /// makes flushes smaller.
    pub fn approx_bytes(&self) -> usize {
        const ROW: usize = 64;
        let len = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let arc = |s: &Option<std::sync::Arc<str>>| s.as_ref().map_or(0, |s| s.len());
        let outcomes: usize = self.outcomes.iter().map(|o| ROW + len(&o.error)).sum();
        let deliveries: usize = self
            .deliveries
            .iter()
            .map(|d| {
                ROW + d.destination.len()
                    + d.event_id.len()
                    + d.event_name.len()
                    + len(&d.error)
                    + len(&d.trace_id)
                    + arc(&d.request)
                    + arc(&d.response)
            })
            .sum();
        let alerts: usize = self
            .alerts
            .iter()
            .map(|a| ROW + a.dedup_key.len() + a.message.len() + a.details.to_string().len())
            .sum();
        outcomes + deliveries + alerts
    }

    pub fn append(&mut self, mut other: WriteBack) {
        self.outcomes.append(&mut other.outcomes);
        self.deliveries.append(&mut other.deliveries);
        self.alerts.append(&mut other.alerts);
    }
}

/// One job outcome, as complete_jobs.sql reads it (bound column by column).
#[derive(Debug, Clone)]
pub struct OutcomeRow {
    pub id: i64,
    pub attempt: i32,
    /// done | retry | throttled | released | failed
    pub outcome: &'static str,
    pub run_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub destinations: Option<Vec<String>>,
}
