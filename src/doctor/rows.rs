//! Rows the doctor reads (`src/store/doctor.rs`). They live here, not in `store::rows`, because
//! the store's doctor module is private and these types are the doctor's vocabulary.

use chrono::{DateTime, Utc};

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
