//! The worker keeps its own hot tables lean (issue 12, finding 9): with autovacuum off or
//! behind, `stagecast.jobs` kept every dead row of a burst, and each claim walked them.

use chrono::{DateTime, Utc};
use sqlx::Executor as _;

use super::{millis, timed, Bounds, Result, Store};

mod sql {
    pub const VACUUM_STATUS: &str = include_str!("../../sql/vacuum_status.sql");
    pub const VACUUM_TABLE: &str = include_str!("../../sql/vacuum_table.sql");
    pub const VACUUM_LOCK_TIMEOUT: &str = include_str!("../../sql/vacuum_lock_timeout.sql");
}

/// One of stagecast's churning tables, as `sql/vacuum_status.sql` reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VacuumStatus {
    /// `jobs`, `job_archive`, `deliveries`, `alerts` or `enqueue_failures`.
    pub table_name: String,
    /// `stagecast.jobs`, quoted as an identifier if it needs to be.
    pub qualified_name: String,
    pub n_live_tup: i64,
    pub n_dead_tup: i64,
    /// The dead rows at which autovacuum would vacuum it.
    pub dead_threshold: f64,
    /// The last VACUUM, by anyone (manual or autovacuum).
    pub last_vacuumed_at: Option<DateTime<Utc>>,
    /// Whether the connected role may VACUUM it.
    pub may_vacuum: bool,
    /// Whether autovacuum runs for it (server setting, track_counts, the table's own setting).
    pub autovacuum_on: bool,
}

impl VacuumStatus {
    /// More dead rows than autovacuum would tolerate (its own test: dead > threshold).
    pub fn behind(&self) -> bool {
        self.n_dead_tup as f64 > self.dead_threshold
    }
}

impl Store {
    pub async fn vacuum_status(&self) -> Result<Vec<VacuumStatus>> {
        Ok(timed(
            "vacuum_status",
            sqlx::query_as(sql::VACUUM_STATUS).fetch_all(self.pool()),
        )
        .await?)
    }

    /// `VACUUM (SKIP_LOCKED, ANALYZE)` one table. `qualified_name` must come from
    /// [`VacuumStatus::qualified_name`] (quoted by the server): a table name cannot be bound.
    pub async fn vacuum_table(&self, status: &VacuumStatus) -> Result<()> {
        let statement = sql::VACUUM_TABLE.replace("{table}", &status.qualified_name);
        let mut conn = self.pool().acquire().await?;
        sqlx::query(sql::VACUUM_LOCK_TIMEOUT)
            .bind(millis(Bounds::MAINTENANCE.lock_timeout))
            .execute(&mut *conn)
            .await?;
        // A plain &str: sent as a simple query (VACUUM cannot be prepared in a transaction).
        let result = timed("vacuum_table", conn.execute(statement.as_str())).await;
        // Back to the server's default before the connection returns to the pool.
        if sqlx::query(sql::VACUUM_LOCK_TIMEOUT)
            .bind("0")
            .execute(&mut *conn)
            .await
            .is_err()
        {
            conn.detach();
        }
        result?;
        Ok(())
    }
}
