//! TikTok Events API 2.0 (`POST /open_api/v1.3/event/track/`). Page names in comments are
//! TikTok's public pages, listed with their URLs in docs/tiktok.md ("Sources").
//!
//! `config` (what the operator sets, from `args`) → `names` (the stage's event → TikTok's
//! standard name) → `payload` (ConversionEvent → one `data[]` event, and the request body) →
//! `client` (HTTP: URL, `Access-Token` header, timeout) → `retry` (classify an answer by its
//! top-level `code`: deliver, retry, throttle, isolate bad events, or fail the destination) →
//! `sink` (batching per event source, rate limit, bisection of refused batches). `platform` is
//! TikTok as an `AdPlatform`; `verify` is the doctor's credentials check.

mod args;
pub mod client;
pub mod config;
pub mod names;
pub mod payload;
mod platform;
pub mod retry;
pub mod sink;
mod verify;

pub use args::TiktokArgs;
pub use client::{TiktokClient, TrackResponse, TransportError};
pub use config::{EventSource, TiktokConfig, TiktokConfigError};
pub use platform::Tiktok;
pub use retry::{ApiError, Classification};
pub use sink::{TiktokDestination, TiktokSink};

/// The `platform` label of TikTok's metrics (the contract's name for it).
pub const LABEL: &str = "tiktok";

/// How TikTok's API is named in messages.
pub const API_NAME: &str = "the TikTok Events API";

/// What TikTok calls the id of a request for its support (in every answer).
pub const TRACE_NAME: &str = "request_id";
