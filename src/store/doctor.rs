//! Reads for `stagecast doctor`. All read-only: the doctor never changes the database.

use super::{PixelRow, Result, Store};
use crate::doctor::rows::{
    AppliedMigration, CampaignRow, ConfigProblemRow, QueueHealth, ServerInfo, StageRow,
};

mod sql {
    pub const SERVER_INFO: &str = include_str!("../../sql/doctor/server_info.sql");
    pub const MIGRATIONS_TABLE_EXISTS: &str =
        include_str!("../../sql/doctor/migrations_table_exists.sql");
    pub const APPLIED_MIGRATIONS: &str = include_str!("../../sql/doctor/applied_migrations.sql");
    pub const PIXELS: &str = include_str!("../../sql/doctor/pixels.sql");
    pub const CAMPAIGNS: &str = include_str!("../../sql/doctor/campaigns.sql");
    pub const STAGES: &str = include_str!("../../sql/doctor/stages.sql");
    pub const CONFIG_PROBLEMS: &str = include_str!("../../sql/doctor/config_problems.sql");
    pub const QUEUE_HEALTH: &str = include_str!("../../sql/doctor/queue_health.sql");
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

    pub async fn doctor_queue_health(&self) -> Result<QueueHealth> {
        Ok(sqlx::query_as(sql::QUEUE_HEALTH)
            .fetch_one(self.pool())
            .await?)
    }
}
