//! Alerts as rows of `stagecast.alerts`: rendered in the CRM's language, deduplicated on the
//! fact they are about (a stage change, or a customer's first touch) and their cause, so
//! retries and replays never post the same alert twice.

use serde_json::Value;

use crate::alerts::Alert;
use crate::locale::Locale;
use crate::store::AlertRow;

/// The row of `alert`, deduplicated on `fact` (e.g. `stage_change:<customer>:<stage>:<µs>`).
pub fn alert_row(
    alert: &Alert,
    fact: &str,
    job_id: i64,
    customer_id: Option<i64>,
    locale: Locale,
) -> AlertRow {
    AlertRow {
        dedup_key: format!("{fact}:{}", alert.cause.code()),
        job_id,
        customer_id,
        cause: alert.cause.code(),
        locale: locale.code(),
        message: alert.render(locale),
        details: serde_json::to_value(&alert.details).unwrap_or(Value::Null),
    }
}
