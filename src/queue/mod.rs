//! The queue core (docs/architecture.md): owned, not borrowed. Jobs are leased in batches with
//! `FOR UPDATE SKIP LOCKED`, processed by a [`JobHandler`] with no transaction open across the
//! HTTP calls, and written back in fenced batches. Any number of worker processes can share one
//! database: leases, attempt fencing and lease-expiry rescue keep them from stepping on each other.

pub mod backoff;
pub mod lease;
pub mod liveness;
mod worker;

pub use backoff::{Backoff, RetryDecision, RetryPolicy};
pub use lease::Lease;
pub use worker::{heartbeat_period, heartbeat_timeout};
pub use worker::{
    BatchContext, HandlerOutput, JobHandler, Worker, WorkerConfig, WorkerError, WorkerHandle,
    WorkerStats, JOBS_CHANNEL, SHUTDOWN_FLUSH, SHUTDOWN_RELEASE,
};
