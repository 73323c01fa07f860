//! Row types read from and written to the database.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A job this worker has leased.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    /// The attempt now running (1 for the first).
    pub attempts: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    /// Reclaimed from a worker whose lease expired.
    pub rescued: bool,
}

/// A bulk change's chunk expanded into per-customer jobs.
#[derive(Debug)]
pub struct Expansion {
    /// Jobs created (leased and pending).
    pub created: u64,
    /// The ones leased at birth to the expanding worker (attempt 1), to work on unclaimed.
    pub leased: Vec<ClaimedJob>,
}

/// Which context to load for a stage-change job.
/// What one heartbeat did (sql/extend_leases.sql).
#[derive(Debug, Clone, Default)]
pub struct LeaseExtension {
    /// Leases extended.
    pub extended: u64,
    /// This worker's running jobs whose row another transaction held: their lease was not
    /// extended by this beat.
    pub skipped: Vec<i64>,
}

#[derive(Debug, Clone, Copy)]
pub struct ContextKey {
    pub job_id: i64,
    pub customer_id: i64,
    pub stage_id: i64,
}

/// Everything about one stage change, read through the adapter views. Columns are optional:
/// a customer or stage may have been deleted since the change was queued.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct StageChangeContext {
    pub job_id: i64,
    pub customer_id: Option<i64>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub sale_price: Option<f64>,
    pub currency: Option<String>,
    pub utm_metadata: Option<serde_json::Value>,
    pub client_ip: Option<String>,
    pub client_user_agent: Option<String>,
    pub fbclid: Option<String>,
    pub fbclid_at: Option<DateTime<Utc>>,
    /// TikTok's click id, as the CRM stored it.
    pub ttclid: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub country: Option<String>,
    pub customer_created_at: Option<DateTime<Utc>>,
    /// The contract's optional customer columns present in the view, as text by name:
    /// `fbp`, `birth_date`, `gender`, `lead_id` (a view without them gives `{}`).
    pub optional: Option<serde_json::Value>,
    pub stage_id: Option<i64>,
    pub stage_name: Option<String>,
    pub funnel_category: Option<String>,
    pub utm_event: Option<serde_json::Value>,
    pub stage_default_value: Option<f64>,
    pub campaign_id: Option<i64>,
    pub campaign_name: Option<String>,
    pub campaign_pixel_ref: Option<i64>,
    pub campaign_currency: Option<String>,
    /// "customer" (utm_campaign_id) or "first_touch_ad" (matched from utm_metadata.source_id).
    pub campaign_matched_by: Option<String>,
    /// `[{"kind": "...", "value": "..."}]`, primary first.
    pub contacts: Option<serde_json::Value>,
}

/// A pixel (Meta dataset, TikTok pixel or Google conversion action) as the CRM configured it.
/// `Debug` is implemented by hand: the token columns must never reach a log line.
#[derive(Clone, sqlx::FromRow)]
pub struct PixelRow {
    pub id: i64,
    pub platform: String,
    pub name: Option<String>,
    pub pixel_id: String,
    pub access_token: Option<String>,
    pub access_token_enc: Option<String>,
    pub active: bool,
    pub is_default: bool,
    pub waba_id: Option<String>,
    pub test_event_code: Option<String>,
    pub action_source: Option<String>,
    /// auto | always | never: routing of click-to-WhatsApp customers to business messaging.
    pub messaging_mode: Option<String>,
    /// The contract's optional pixel columns present in the view, by name (`lead_event_source`,
    /// `limited_data_use`, `ldu_country`, `ldu_state`, `opt_out`, `conversion_action_id`,
    /// `login_customer_id`, `ad_user_data_consent`); read by each platform.
    pub options: Option<serde_json::Value>,
}

impl std::fmt::Debug for PixelRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PixelRow")
            .field("id", &self.id)
            .field("platform", &self.platform)
            .field("name", &self.name)
            .field("pixel_id", &self.pixel_id)
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "access_token_enc",
                &self.access_token_enc.as_ref().map(|_| "[sealed]"),
            )
            .field("active", &self.active)
            .field("is_default", &self.is_default)
            .field("waba_id", &self.waba_id)
            .field("test_event_code", &self.test_event_code)
            .field("action_source", &self.action_source)
            .field("messaging_mode", &self.messaging_mode)
            .field("options", &self.options)
            .finish()
    }
}

/// One row of the delivery audit (`stagecast.deliveries`), bound column by column.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub job_id: i64,
    pub attempt: i32,
    pub platform: &'static str,
    pub destination: String,
    pub pixel_ref: Option<i64>,
    pub event_id: String,
    pub event_name: String,
    pub event_time: DateTime<Utc>,
    /// delivered | retry | throttled | failed
    pub outcome: &'static str,
    pub http_status: Option<u16>,
    /// The platform's error code, as text (`platforms::outcome::DeliveryError`).
    pub error_code: Option<String>,
    pub error_subcode: Option<i64>,
    /// The platform's request id for its support (Meta's `fbtrace_id`).
    pub trace_id: Option<String>,
    pub error: Option<String>,
    pub match_quality: Option<f32>,
    /// The event as sent (JSON text, the very bytes of the request): PII already hashed,
    /// never a token.
    pub request: Option<std::sync::Arc<str>>,
    /// What the platform answered, as JSON text (shared by the events of one request).
    pub response: Option<std::sync::Arc<str>>,
}

/// One chat alert to record (deduplicated on `dedup_key`).
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub dedup_key: String,
    pub job_id: i64,
    pub customer_id: Option<i64>,
    pub cause: &'static str,
    pub locale: &'static str,
    pub message: String,
    pub details: serde_json::Value,
}

/// An inbound chat message to attribute.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub chat_id: i64,
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    /// The customer the CRM linked the chat to, if any.
    pub customer_id: Option<i64>,
}

/// What recording a first touch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstTouch {
    Recorded,
    /// An incomplete touch (no click id: an ad marker or a Status ad) replaced by the first
    /// message carrying the click id and the ad id.
    Completed,
    /// The customer already had first-touch data; nothing was overwritten.
    Kept,
    CustomerMissing,
}

/// One line of the backlog gauges.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueStat {
    pub kind: String,
    pub status: String,
    pub jobs: i64,
    /// Age of the oldest pending job that is due (the queue's lag), if any.
    pub oldest_due_age_seconds: Option<f64>,
}
