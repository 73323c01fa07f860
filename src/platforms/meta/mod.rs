//! Meta Conversions API. Page names in comments (*using-the-api*, *server-event*, *rate-limiting*,
//! …) are Meta's pages, listed with their URLs in docs/sandbox.md ("Sources").
//!
//! `config` (what the operator sets, from `args`) → `payload` (ConversionEvent → CAPI event
//! JSON) → `client` (HTTP: URL, Bearer auth, timeout) → `retry` (classify a response by code:
//! deliver, retry, throttle, isolate bad events, or fail the destination) → `sink` (batching
//! per pixel, rate limit, bisection of rejected batches). `platform` is Meta as an
//! `AdPlatform`; `verify` is the doctor's pixel check, `ads` the ad → campaign lookup.

mod ads;
mod args;
pub mod client;
pub mod config;
pub mod payload;
pub mod pixel_options;
mod platform;
pub mod retry;
pub mod sink;
mod verify;

pub use args::MetaArgs;
pub use client::{GraphResponse, MetaClient, TransportError};
pub use config::{ActionSource, MetaConfig, MetaConfigError};
pub use platform::Meta;
pub use retry::{ApiError, Classification};
pub use sink::{MetaDestination, MetaSink};

/// The `platform` label of Meta's metrics (the contract's name for it).
pub const LABEL: &str = "facebook";

/// How Meta's API is named in messages.
pub const API_NAME: &str = "the Graph API";

/// What Meta calls the id of a request for its support (in every Graph API error).
pub const TRACE_NAME: &str = "fbtrace_id";
