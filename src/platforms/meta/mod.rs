//! Meta Conversions API. Page names in comments (*using-the-api*, *server-event*, *rate-limiting*,
//! …) are Meta's pages, listed with their URLs in docs/sandbox.md ("Sources").
//!
//! `config` (what the operator sets) → `payload` (ConversionEvent → CAPI event JSON) →
//! `client` (HTTP: URL, Bearer auth, timeout) → `retry` (classify a response by code: deliver,
//! retry, throttle, isolate bad events, or fail the destination) → `sink` (batching per pixel,
//! rate limit, bisection of rejected batches).

pub mod client;
pub mod config;
pub mod payload;
pub mod retry;
pub mod sink;

pub use client::{GraphResponse, MetaClient, TransportError};
pub use config::{ActionSource, MetaConfig, MetaConfigError};
pub use retry::{ApiError, Classification};
pub use sink::{EventOutcome, EventResult, MetaDestination, MetaSink, PreparedEvent};
