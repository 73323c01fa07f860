//! Reads for `stagecast doctor`, and the rows they return. All read-only: the doctor never
//! changes the database.

use chrono::{DateTime, Utc};

use super::{timed, PixelRow, Result, Store};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServerInfo {
    pub version: String,
    pub database: String,
    pub role: String,
}

/// A row of sqlx's `_sqlx_migrations`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppliedMigration {
    pub version: i64,
    pub description: String,
    pub success: bool,
    pub checksum: Vec<u8>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignRow {
    pub id: i64,
    pub name: Option<String>,
    pub pixel_id: Option<i64>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StageRow {
    pub id: i64,
    pub name: Option<String>,
    pub utm_event: Option<serde_json::Value>,
}

/// An unresolved row of `stagecast.config_problems`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConfigProblemRow {
    pub source: String,
    pub row_id: Option<i64>,
    pub problem: String,
    pub found_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct QueueHealth {
    pub pending: i64,
    pub running: i64,
    /// Running jobs whose worker stopped renewing the lease (crashed or stuck).
    pub expired_leases: i64,
    pub failed: i64,
    pub last_failed_at: Option<DateTime<Utc>>,
    /// Age of the oldest pending job that is due (not waiting for a retry).
    pub oldest_due_age_seconds: Option<f64>,
    /// Stage changes a trigger could not queue (`stagecast.enqueue_failures`).
    pub parked: i64,
    pub oldest_parked_at: Option<DateTime<Utc>>,
    pub latest_parked_error: Option<String>,
    /// Changes that could be neither queued nor parked (`stagecast.lost_enqueues()`).
    pub lost: i64,
}

/// A session holding a lock on a stagecast table that blocks writes (sql/doctor/table_locks.sql).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TableLock {
    /// `stagecast.jobs`.
    pub table_name: String,
    /// `AccessExclusiveLock` …, as pg_locks names it.
    pub mode: String,
    pub pid: i32,
    pub application_name: Option<String>,
    pub role_name: Option<String>,
    /// `idle in transaction` …; `None` when this role may not see the session's state.
    pub state: Option<String>,
    /// Start of its transaction (or of the session when the state is hidden).
    pub since: Option<DateTime<Utc>>,
    pub visible: bool,
}

/// A worker as sql/doctor/workers.sql sees it: registered (with its liveness lock held or not),
/// or only named by the jobs it runs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkerRow {
    /// `<hostname>-<pid>-<random>`.
    pub worker_id: String,
    /// Has a row in `stagecast.workers`; false: only its running jobs name it.
    pub registered: bool,
    pub started_at: Option<DateTime<Utc>>,
    /// Its liveness lock is held (`None` when not registered: it has none).
    pub alive: Option<bool>,
    /// When a rescuer first saw its lock missing.
    pub lock_missing_since: Option<DateTime<Utc>>,
    pub jobs_running: i64,
}

mod sql {
    pub const WORKERS: &str = include_str!("../../sql/doctor/workers.sql");
    pub const TABLE_LOCKS: &str = include_str!("../../sql/doctor/table_locks.sql");
    pub const SERVER_INFO: &str = include_str!("../../sql/doctor/server_info.sql");
    pub const MIGRATIONS_TABLE_EXISTS: &str =
        include_str!("../../sql/doctor/migrations_table_exists.sql");
    pub const APPLIED_MIGRATIONS: &str = include_str!("../../sql/doctor/applied_migrations.sql");
    pub const PIXELS: &str = include_str!("../../sql/doctor/pixels.sql");
    pub const CAMPAIGNS: &str = include_str!("../../sql/doctor/campaigns.sql");
    pub const STAGES: &str = include_str!("../../sql/doctor/stages.sql");
    pub const CONFIG_PROBLEMS: &str = include_str!("../../sql/doctor/config_problems.sql");
    pub const QUEUE_HEALTH: &str = include_str!("../../sql/doctor/queue_health.sql");
    pub const STALE_CLICK_IDS: &str = include_str!("../../sql/doctor/stale_click_ids.sql");
}

impl Store {
    pub async fn doctor_server_info(&self) -> Result<ServerInfo> {
        Ok(sqlx::query_as(sql::SERVER_INFO)
            .fetch_one(self.pool())
            .await?)
    }

    /// Applied migrations, or `None` when the database was never migrated.
    pub async fn doctor_applied_migrations(&self) -> Result<Option<Vec<AppliedMigration>>> {
        let exists: bool = sqlx::query_scalar(sql::MIGRATIONS_TABLE_EXISTS)
            .fetch_one(self.pool())
            .await?;
        if !exists {
            return Ok(None);
        }
        Ok(Some(
            sqlx::query_as(sql::APPLIED_MIGRATIONS)
                .fetch_all(self.pool())
                .await?,
        ))
    }

    /// Every pixel, tokens included (for the key and Graph API checks; never printed).
    pub async fn doctor_pixels(&self) -> Result<Vec<PixelRow>> {
        Ok(sqlx::query_as(sql::PIXELS).fetch_all(self.pool()).await?)
    }

    pub async fn doctor_campaigns(&self) -> Result<Vec<CampaignRow>> {
        Ok(sqlx::query_as(sql::CAMPAIGNS)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn doctor_stages(&self) -> Result<Vec<StageRow>> {
        Ok(sqlx::query_as(sql::STAGES).fetch_all(self.pool()).await?)
    }

    pub async fn doctor_config_problems(&self) -> Result<Vec<ConfigProblemRow>> {
        Ok(sqlx::query_as(sql::CONFIG_PROBLEMS)
            .fetch_all(self.pool())
            .await?)
    }

    /// How many customers hold a click-to-WhatsApp click id older than `ctwa_max`, and an
    /// fbclid captured longer ago than `fbclid_max`.
    pub async fn doctor_stale_click_ids(
        &self,
        ctwa_max: std::time::Duration,
        fbclid_max: std::time::Duration,
    ) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(sql::STALE_CLICK_IDS)
            .bind(ctwa_max.as_secs_f64())
            .bind(fbclid_max.as_secs_f64())
            .fetch_one(self.pool())
            .await?)
    }

    pub async fn doctor_table_locks(&self) -> Result<Vec<TableLock>> {
        Ok(sqlx::query_as(sql::TABLE_LOCKS)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn doctor_workers(&self) -> Result<Vec<WorkerRow>> {
        Ok(timed(
            "workers",
            sqlx::query_as(sql::WORKERS).fetch_all(self.pool()),
        )
        .await?)
    }

    pub async fn doctor_queue_health(&self) -> Result<QueueHealth> {
        Ok(sqlx::query_as(sql::QUEUE_HEALTH)
            .fetch_one(self.pool())
            .await?)
    }
}
