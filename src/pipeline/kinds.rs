//! The job kinds the pipeline handles (written by the enqueue functions of the migrations).
//! The queue knows none of them: it asks its handler for their labels ([`JobHandler::kinds`]).
//!
//! [`JobHandler::kinds`]: crate::queue::JobHandler::kinds

/// One stage change of one customer.
pub const STAGE_CHANGE: &str = "stage_change";
/// A bulk CRM update, expanded by the worker into `stage_change` jobs.
pub const STAGE_CHANGE_BATCH: &str = "stage_change_batch";
/// An inbound WhatsApp message that may carry click-to-ad data.
pub const ATTRIBUTION: &str = "attribution";

/// Every kind, as the bounded `kind` label of metrics and reports (anything else is `other`).
pub const ALL: &[&str] = &[STAGE_CHANGE, STAGE_CHANGE_BATCH, ATTRIBUTION];

/// The bounded label of a job kind: one of [`ALL`], else `other`.
pub fn label(kind: &str) -> &'static str {
    crate::metrics_catalog::bounded(ALL, kind)
}
