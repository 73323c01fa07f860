//! What the pipeline keeps per job while its batch is processed, and per event waiting for its
//! delivery result.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::stage_change::StageChangePayload;
use crate::alerts::{Alert, AlertCause, AlertDetails};
use crate::platforms::Platform;
use crate::store::{ClaimedJob, DeliveryRow};

/// Per-job state while a batch is processed.
pub(super) struct JobWork {
    pub job: ClaimedJob,
    pub change: Option<StageChangePayload>,
    pub stage_name: Option<String>,
    pub alerts: Vec<Alert>,
    /// Permanent problems (configuration, rejected events).
    pub failures: Vec<String>,
    /// Transient problems, and the platform of the first one that came from a platform.
    pub retry_errors: Vec<String>,
    pub retry_platform: Option<Platform>,
    /// The latest end of a throttle among this job's destinations, and the platform.
    pub throttled: Option<(DateTime<Utc>, Platform)>,
    /// The latest end of a hold among this job's destinations, and the platform.
    pub held: Option<(DateTime<Utc>, Platform)>,
    pub not_started: bool,
    /// The worker could not confirm its lease: another worker takes the job over.
    pub lease_lost: bool,
    pub destinations: BTreeSet<String>,
    pub deliveries: Vec<DeliveryRow>,
    pub delivered: usize,
    pub already_delivered: usize,
    /// Other jobs that delivered some of this job's events (true duplicates of the change).
    pub delivered_by: BTreeSet<i64>,
    /// Events sent whose result has not come back yet.
    pub outstanding: usize,
    pub finished: bool,
    /// Entered around this job's synchronous planning and outcome (its deliveries are shared
    /// with other jobs of the batch, per destination).
    pub span: tracing::Span,
}

impl JobWork {
    pub fn new(job: ClaimedJob) -> Self {
        Self {
            span: super::job_span(&job),
            job,
            change: None,
            stage_name: None,
            alerts: Vec::new(),
            failures: Vec::new(),
            retry_errors: Vec::new(),
            retry_platform: None,
            throttled: None,
            held: None,
            not_started: false,
            lease_lost: false,
            destinations: BTreeSet::new(),
            deliveries: Vec::new(),
            delivered: 0,
            already_delivered: 0,
            delivered_by: BTreeSet::new(),
            outstanding: 0,
            finished: false,
        }
    }

    /// `facebook:<pixel id>`, comma-separated when the stage sends to several destinations.
    pub fn destination(&self) -> Option<String> {
        (!self.destinations.is_empty()).then(|| {
            self.destinations
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    pub fn record_destination(&self) {
        // Only built when the span is logged: disabled spans must stay free.
        if !self.span.is_disabled() {
            if let Some(d) = self.destination() {
                self.span.record("destination", d.as_str());
            }
        }
    }

    pub fn alert(&mut self, cause: AlertCause, details: AlertDetails) {
        // One alert per cause per stage change.
        if !self.alerts.iter().any(|a| a.cause == cause) {
            self.alerts.push(Alert::new(cause, details));
        }
    }

    pub fn retry(&mut self, error: String, platform: Option<Platform>) {
        self.retry_errors.push(error);
        if self.retry_platform.is_none() {
            self.retry_platform = platform;
        }
    }

    pub fn hold(&mut self, until: DateTime<Utc>, platform: Platform) {
        self.held = match self.held {
            Some((t, p)) if t >= until => Some((t, p)),
            _ => Some((until, platform)),
        };
    }

    pub fn throttle(&mut self, until: DateTime<Utc>, platform: Platform) {
        self.throttled = match self.throttled {
            Some((t, p)) if t >= until => Some((t, p)),
            _ => Some((until, platform)),
        };
    }
}

/// An event waiting to be sent, with what the audit needs.
pub(super) struct PendingEvent {
    pub work: usize,
    pub platform: Platform,
    /// The platform's metrics label.
    pub label: &'static str,
    pub pixel_ref: i64,
    pub pixel_id: String,
    pub event_id: String,
    /// As sent (the platform's name).
    pub event_name: String,
    pub event_time: DateTime<Utc>,
    /// The event as encoded once: sent in the request and kept in the audit.
    pub json: Arc<str>,
    pub match_quality: f32,
    pub details: AlertDetails,
}
