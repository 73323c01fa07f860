//! Admin reads and actions on jobs: what `stagecast jobs` runs. Listing and inspection are
//! plain reads (`sql/admin/*.sql`); replay and cancel call the SQL functions of
//! `migrations/20261124120000_admin_actions.sql`, the same ones a CRM admin screen calls, so
//! the two paths validate, behave and are audited alike.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::Store;

mod sql {
    pub const LIST_JOBS: &str = include_str!("../../sql/admin/list_jobs.sql");
    pub const SHOW_JOB: &str = include_str!("../../sql/admin/show_job.sql");
    pub const JOB_DELIVERIES: &str = include_str!("../../sql/admin/job_deliveries.sql");
    pub const JOB_ALERTS: &str = include_str!("../../sql/admin/job_alerts.sql");
    pub const JOB_ADMIN_ACTIONS: &str = include_str!("../../sql/admin/job_admin_actions.sql");
    pub const MATCHING_JOB_IDS: &str = include_str!("../../sql/admin/matching_job_ids.sql");
    pub const REPLAY_JOB: &str = include_str!("../../sql/admin/replay_job.sql");
    pub const CANCEL_JOB: &str = include_str!("../../sql/admin/cancel_job.sql");
    pub const REPLAY_JOBS: &str = include_str!("../../sql/admin/replay_jobs.sql");
    pub const CANCEL_JOBS: &str = include_str!("../../sql/admin/cancel_jobs.sql");
    pub const CONSOLE_PIXELS: &str = include_str!("../../sql/admin/console_pixels.sql");
    pub const DESTINATION_ACTIVITY: &str = include_str!("../../sql/admin/destination_activity.sql");
    pub const DESTINATION_LAST_ERRORS: &str =
        include_str!("../../sql/admin/destination_last_errors.sql");
    pub const HELD_DESTINATIONS: &str = include_str!("../../sql/admin/held_destinations.sql");
    pub const RECENT_ALERTS: &str = include_str!("../../sql/admin/recent_alerts.sql");
    pub const SET_STAGE_EVENTS: &str = include_str!("../../sql/admin/set_stage_events.sql");
}

/// Errors of the admin functions, sorted by the SQLSTATE the SQL functions raise, so callers
/// can react without parsing message text.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("job {0} not found (it may have been pruned by retention)")]
    NotFound(i64),
    #[error("stage {0} not found")]
    StageNotFound(i64),
    /// The request is understood but refused: a done job, an identical stage change pending.
    #[error("{message}{}", hint.as_deref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Refused {
        message: String,
        hint: Option<String>,
    },
    /// A missing actor or reason, an unknown status, a bad limit.
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl AdminError {
    /// Classify an error of a call about `job_id` (when the call names one).
    fn from_sqlx(e: sqlx::Error, job_id: Option<i64>) -> Self {
        let Some(db) = e.as_database_error() else {
            return AdminError::Database(e);
        };
        let code = db.code().unwrap_or_default().into_owned();
        let message = db.message().to_string();
        let hint = db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|pg| pg.hint())
            .map(str::to_string);
        match (code.as_str(), job_id) {
            ("P0002", Some(id)) => AdminError::NotFound(id),
            ("55000", _) => AdminError::Refused { message, hint },
            ("22004" | "22023" | "P0002", _) => AdminError::Invalid(message),
            _ => AdminError::Database(e),
        }
    }
}

impl From<sqlx::Error> for AdminError {
    fn from(e: sqlx::Error) -> Self {
        AdminError::from_sqlx(e, None)
    }
}

type Result<T> = std::result::Result<T, AdminError>;

/// Job statuses as admins name them: the live ones of `stagecast.jobs`, and `done` for the
/// archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Failed,
    Cancelled,
    Done,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Done => "done",
        }
    }
}

/// What `list`, `replay` and `cancel` select on (`stagecast.admin_job_matches`). `None`
/// matches everything.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobFilter {
    pub kind: Option<String>,
    /// A destination (`facebook:<pixel id>`) or just the Meta pixel id.
    pub pixel: Option<String>,
    pub customer_id: Option<i64>,
    /// Jobs created (queued) at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// A replay or cancel by filter.
#[derive(Debug, Clone)]
pub struct BulkAction<'a> {
    pub status: JobStatus,
    pub filter: &'a JobFilter,
    pub actor: &'a str,
    pub reason: Option<&'a str>,
    /// At most this many jobs (lowest ids first).
    pub limit: Option<i32>,
    /// Count what would change; change and record nothing.
    pub dry_run: bool,
    /// Only among these jobs (a chunk of a snapshot taken with `matching_job_ids`).
    pub job_ids: Option<&'a [i64]>,
}

/// One line of `stagecast jobs list`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobSummary {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    /// None for done (archived) jobs.
    pub max_attempts: Option<i32>,
    pub customer_id: Option<i64>,
    pub destinations: Option<Vec<String>>,
    pub run_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The archive's note for done jobs ("1 delivered, 0 already delivered earlier", "expanded").
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job as `stagecast jobs show` prints it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub payload: Value,
    pub attempts: i32,
    pub max_attempts: Option<i32>,
    /// Attempts each run gets, recorded by the first replay (None: never replayed).
    pub attempt_budget: Option<i32>,
    pub run_at: Option<DateTime<Utc>>,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub note: Option<String>,
    pub dedup_key: Option<String>,
    pub customer_id: Option<i64>,
    pub destinations: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One event of one attempt, from `stagecast.deliveries`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryAttempt {
    pub id: i64,
    pub attempt: i32,
    pub platform: String,
    pub destination: String,
    pub event_id: String,
    pub event_name: String,
    pub event_time: DateTime<Utc>,
    pub outcome: String,
    pub http_status: Option<i32>,
    /// The platform's error code, as text (numeric for Meta).
    pub error_code: Option<String>,
    pub error_subcode: Option<i64>,
    /// The platform's request id for its support (Meta's `fbtrace_id`).
    pub trace_id: Option<String>,
    pub error: Option<String>,
    pub match_quality: Option<f32>,
    /// The event as sent: PII already hashed, never a token.
    pub request: Option<Value>,
    pub response: Option<Value>,
    pub created_at: DateTime<Utc>,
}

impl DeliveryAttempt {
    /// The platform's id of the request, for its support (Meta: `fbtrace_id`).
    pub fn trace_id(&self) -> Option<&str> {
        self.trace_id.as_deref()
    }

    /// The platform's error code and subcode, `190/463` (`-` for a missing part).
    pub fn error_codes(&self) -> Option<String> {
        if self.error_code.is_none() && self.error_subcode.is_none() {
            return None;
        }
        Some(format!(
            "{}/{}",
            self.error_code.as_deref().unwrap_or("-"),
            self.error_subcode
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        ))
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobAlert {
    pub id: i64,
    pub cause: String,
    pub locale: String,
    pub message: String,
    pub details: Value,
    pub chat_message_id: Option<i64>,
    /// Why the CRM's chat refused the alert (SQLSTATE and message), when it did.
    pub chat_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A row of `stagecast.admin_audit` that concerns a job.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AdminAction {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub db_role: String,
    pub action: String,
    pub reason: Option<String>,
    pub filter: Option<Value>,
    pub count: i32,
}

/// Everything `stagecast jobs show` knows about a job.
#[derive(Debug, Clone, Serialize)]
pub struct JobDetail {
    pub job: JobRecord,
    pub deliveries: Vec<DeliveryAttempt>,
    pub alerts: Vec<JobAlert>,
    pub admin_actions: Vec<AdminAction>,
}

/// A pixel as an admin sees it: everything but the token (`stagecast.console_pixels()`).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AdminPixel {
    pub id: i64,
    pub platform: String,
    pub name: Option<String>,
    pub pixel_id: String,
    pub active: bool,
    pub is_default: bool,
    pub waba_id: Option<String>,
    /// A test event code is set: Meta shows the events under Test events only.
    pub test_events: bool,
    pub action_source: Option<String>,
    /// `sealed`, `plaintext` (written by the CRM, a worker seals it within seconds) or `missing`.
    pub token_state: String,
    /// The key that sealed the token (`v1:<key id>:…`).
    pub sealed_key_id: Option<String>,
}

impl AdminPixel {
    /// The row the doctor's checks take, without a token: the checks reused here (platform,
    /// pixel id, default pixel, campaigns) never look at one.
    pub fn as_pixel_row(&self) -> super::PixelRow {
        super::PixelRow {
            id: self.id,
            platform: self.platform.clone(),
            name: self.name.clone(),
            pixel_id: self.pixel_id.clone(),
            access_token: None,
            access_token_enc: None,
            active: self.active,
            is_default: self.is_default,
            waba_id: self.waba_id.clone(),
            test_event_code: None,
            action_source: self.action_source.clone(),
            messaging_mode: None,
            options: None,
        }
    }
}

/// Events of one destination over the last hour and day, by outcome (the delivery audit).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DestinationActivity {
    pub platform: String,
    /// The pixel id (deliveries name the platform apart).
    pub destination: String,
    pub delivered_hour: i64,
    pub failed_hour: i64,
    pub delivered_day: i64,
    pub failed_day: i64,
    pub retried_day: i64,
    pub throttled_hour: i64,
    pub last_throttled_at: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub destinations: i64,
    /// Audit rows read; at [`ACTIVITY_ROW_CAP`] the counts are lower bounds.
    #[serde(skip)]
    pub rows_read: i64,
}

/// The most rows [`Store::destination_activity`] reads (sql/admin/destination_activity.sql).
pub const ACTIVITY_ROW_CAP: i64 = 1_000_000;

/// The latest refused or retried event of a destination over the last day.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DestinationError {
    pub platform: String,
    pub destination: String,
    pub job_id: i64,
    pub outcome: String,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Pending jobs of a destination that wait for later (a retry's backoff, a throttle pause).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HeldDestination {
    /// As jobs name it: `facebook:<pixel id>`.
    pub destination: String,
    pub jobs: i64,
    pub next_run_at: Option<DateTime<Utc>>,
}

/// A chat alert, newest first (the console's overview).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RecentAlert {
    pub id: i64,
    pub job_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub cause: String,
    pub locale: String,
    pub message: String,
    pub chat_message_id: Option<i64>,
    pub chat_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A stage's new event configuration (`stagecast.set_stage_events`).
#[derive(Debug, Clone)]
pub struct StageEventsChange<'a> {
    pub stage_id: i64,
    pub utm_event: &'a Value,
    /// The value the change was made from: the call is refused if the stage holds another.
    pub expected: &'a Value,
    pub actor: &'a str,
    pub reason: &'a str,
}

/// Keys whose values are credentials. The worker never stores a token in the audit (requests
/// are recorded without one), but a platform echoing one in a response, or a CRM adapter
/// writing one into a payload, must still not reach an admin's terminal.
const CREDENTIAL_KEYS: &[&str] = &[
    "access_token",
    "appsecret_proof",
    "authorization",
    "client_secret",
];

/// Replace the value of every credential key, at any depth, by `"[redacted]"`.
pub fn redact_credentials(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if CREDENTIAL_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k)) {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact_credentials(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_credentials),
        _ => {}
    }
}

impl Store {
    /// Jobs matching a filter, newest first; `statuses` None means every status, done
    /// (archived) jobs included.
    pub async fn list_jobs(
        &self,
        statuses: Option<&[JobStatus]>,
        filter: &JobFilter,
        limit: i64,
    ) -> Result<Vec<JobSummary>> {
        let statuses: Option<Vec<&str>> = statuses.map(|s| s.iter().map(|s| s.as_str()).collect());
        Ok(sqlx::query_as(sql::LIST_JOBS)
            .bind(statuses)
            .bind(filter.kind.as_deref())
            .bind(filter.pixel.as_deref())
            .bind(filter.customer_id)
            .bind(filter.since)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// A job with its delivery attempts, alerts and admin actions; None if it does not exist
    /// (any more). Credentials are redacted from every JSON value.
    pub async fn show_job(&self, job_id: i64) -> Result<Option<JobDetail>> {
        let Some(mut job) = sqlx::query_as::<_, JobRecord>(sql::SHOW_JOB)
            .bind(job_id)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let mut deliveries: Vec<DeliveryAttempt> = sqlx::query_as(sql::JOB_DELIVERIES)
            .bind(job_id)
            .fetch_all(self.pool())
            .await?;
        let mut alerts: Vec<JobAlert> = sqlx::query_as(sql::JOB_ALERTS)
            .bind(job_id)
            .fetch_all(self.pool())
            .await?;
        let admin_actions: Vec<AdminAction> = sqlx::query_as(sql::JOB_ADMIN_ACTIONS)
            .bind(job_id)
            .fetch_all(self.pool())
            .await?;
        redact_credentials(&mut job.payload);
        for d in &mut deliveries {
            d.request.iter_mut().for_each(redact_credentials);
            d.response.iter_mut().for_each(redact_credentials);
        }
        for a in &mut alerts {
            redact_credentials(&mut a.details);
        }
        Ok(Some(JobDetail {
            job,
            deliveries,
            alerts,
            admin_actions,
        }))
    }

    /// Ids of the live jobs in `status` matching `filter`, lowest first (at most `limit`).
    pub async fn matching_job_ids(
        &self,
        status: JobStatus,
        filter: &JobFilter,
        limit: Option<i64>,
    ) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(sql::MATCHING_JOB_IDS)
            .bind(status.as_str())
            .bind(filter.kind.as_deref())
            .bind(filter.pixel.as_deref())
            .bind(filter.customer_id)
            .bind(filter.since)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// `stagecast.replay_job`: true if re-queued, false if it was already pending or running.
    pub async fn replay_job(&self, job_id: i64, actor: &str, reason: Option<&str>) -> Result<bool> {
        self.by_id(sql::REPLAY_JOB, job_id, actor, reason).await
    }

    /// `stagecast.cancel_job`: true if cancelled, false if it was already cancelled or done.
    pub async fn cancel_job(&self, job_id: i64, actor: &str, reason: Option<&str>) -> Result<bool> {
        self.by_id(sql::CANCEL_JOB, job_id, actor, reason).await
    }

    /// `stagecast.replay_jobs`: how many jobs were (or, dry, would be) re-queued.
    pub async fn replay_jobs(&self, action: &BulkAction<'_>) -> Result<i32> {
        self.bulk(sql::REPLAY_JOBS, action).await
    }

    /// `stagecast.cancel_jobs`: how many jobs were (or, dry, would be) cancelled.
    pub async fn cancel_jobs(&self, action: &BulkAction<'_>) -> Result<i32> {
        self.bulk(sql::CANCEL_JOBS, action).await
    }

    /// Every pixel, without its token.
    pub async fn admin_pixels(&self) -> Result<Vec<AdminPixel>> {
        Ok(sqlx::query_as(sql::CONSOLE_PIXELS)
            .fetch_all(self.pool())
            .await?)
    }

    /// Events per destination and outcome over the last hour and day.
    pub async fn destination_activity(&self) -> Result<Vec<DestinationActivity>> {
        Ok(super::timed(
            "destination_activity",
            sqlx::query_as(sql::DESTINATION_ACTIVITY).fetch_all(self.pool()),
        )
        .await?)
    }

    /// The latest refused or retried event per destination over the last day.
    pub async fn destination_last_errors(&self) -> Result<Vec<DestinationError>> {
        // The error texts `stagecast jobs show` prints too; the audit never holds a token.
        Ok(super::timed(
            "destination_last_errors",
            sqlx::query_as(sql::DESTINATION_LAST_ERRORS).fetch_all(self.pool()),
        )
        .await?)
    }

    /// Pending jobs due later, per destination.
    pub async fn held_destinations(&self) -> Result<Vec<HeldDestination>> {
        Ok(super::timed(
            "held_destinations",
            sqlx::query_as(sql::HELD_DESTINATIONS).fetch_all(self.pool()),
        )
        .await?)
    }

    /// The newest `limit` chat alerts.
    pub async fn recent_alerts(&self, limit: i64) -> Result<Vec<RecentAlert>> {
        Ok(sqlx::query_as(sql::RECENT_ALERTS)
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// `stagecast.set_stage_events`: true if the stage's utm_event changed, false if it already
    /// held that value (audited either way). Refused when the stage changed meanwhile.
    pub async fn set_stage_events(&self, c: &StageEventsChange<'_>) -> Result<bool> {
        sqlx::query_scalar(sql::SET_STAGE_EVENTS)
            .bind(c.stage_id)
            .bind(c.utm_event)
            .bind(c.expected)
            .bind(c.actor)
            .bind(c.reason)
            .fetch_one(self.pool())
            .await
            .map_err(|e| match AdminError::from_sqlx(e, None) {
                AdminError::Invalid(m) if m.contains("not found") => {
                    AdminError::StageNotFound(c.stage_id)
                }
                other => other,
            })
    }

    async fn by_id(
        &self,
        statement: &'static str,
        job_id: i64,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<bool> {
        sqlx::query_scalar(statement)
            .bind(job_id)
            .bind(actor)
            .bind(reason)
            .fetch_one(self.pool())
            .await
            .map_err(|e| AdminError::from_sqlx(e, Some(job_id)))
    }

    async fn bulk(&self, statement: &'static str, a: &BulkAction<'_>) -> Result<i32> {
        Ok(sqlx::query_scalar(statement)
            .bind(a.status.as_str())
            .bind(a.filter.kind.as_deref())
            .bind(a.filter.pixel.as_deref())
            .bind(a.filter.customer_id)
            .bind(a.filter.since)
            .bind(a.actor)
            .bind(a.reason)
            .bind(a.limit)
            .bind(a.dry_run)
            .bind(a.job_ids)
            .fetch_one(self.pool())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_are_redacted_at_any_depth_and_nothing_else() {
        let mut v = json!({
            "data": [{"event_name": "Lead", "user_data": {"em": ["ab12"]}}],
            "Access_Token": "EAAsecret",
            "error": {"message": "bad", "debug": {"appsecret_proof": "p", "authorization": "Bearer x"}},
            "list": [{"client_secret": "s"}, "access_token"]
        });
        redact_credentials(&mut v);
        assert_eq!(
            v,
            json!({
                "data": [{"event_name": "Lead", "user_data": {"em": ["ab12"]}}],
                "Access_Token": "[redacted]",
                "error": {"message": "bad", "debug": {"appsecret_proof": "[redacted]", "authorization": "[redacted]"}},
                "list": [{"client_secret": "[redacted]"}, "access_token"]
            })
        );
    }

    #[test]
    fn refusals_keep_the_hint_on_its_own_line() {
        let e = AdminError::Refused {
            message: "job 7 is done".into(),
            hint: Some("queue it again".into()),
        };
        assert_eq!(e.to_string(), "job 7 is done\nhint: queue it again");
        let e = AdminError::Refused {
            message: "no".into(),
            hint: None,
        };
        assert_eq!(e.to_string(), "no");
        assert_eq!(
            AdminError::NotFound(42).to_string(),
            "job 42 not found (it may have been pruned by retention)"
        );
    }
}
