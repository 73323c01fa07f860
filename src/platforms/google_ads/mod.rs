//! Google Ads API click conversions (`POST /{version}/customers/{id}:uploadClickConversions`).
//! Page names in comments are Google's public pages, listed in docs/google-ads.md ("Sources").
//!
//! `config` (what the operator sets, from `args`) → `oauth` (refresh token → access token,
//! cached in memory, one refresh at a time) → `payload` (ConversionEvent → one `conversions[]`
//! row, and the request body) → `client` (HTTP: URL, `Authorization: Bearer`,
//! `login-customer-id`, timeout) → `retry` (classify an answer: the request as a whole, then
//! each row by `fieldPathElements.index`) → `sink` (batching per customer and login customer,
//! rate limit, holds). `platform` is Google Ads as an `AdPlatform`.

mod args;
pub mod client;
pub mod config;
pub mod oauth;
pub mod payload;
mod platform;
pub mod retry;
pub mod sink;

pub use args::GoogleAdsArgs;
pub use config::{GoogleAdsConfig, GoogleAdsConfigError};
pub use platform::GoogleAds;

/// The `platform` label of Google Ads' metrics (the contract's name for it).
pub const LABEL: &str = "google_ads";

/// How Google's API is named in messages.
pub const API_NAME: &str = "the Google Ads API";

/// What Google calls the id of a request for its support (`requestId` in error details).
pub const TRACE_NAME: &str = "request_id";
