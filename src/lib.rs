//! stagecast: CRM stage changes → durable Postgres queue → ad platforms' conversion APIs.
//!
//! The crate is both the `stagecast` binary and a library, so the demo, the benchmark and the
//! integration tests drive exactly the code that runs in production.

pub mod alerts;
pub mod attribution;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod console;
pub mod demo;
pub mod doctor;
#[doc(hidden)]
pub mod fuzzing;
pub mod http_client;
pub mod local_pg;
pub mod locale;
pub mod match_quality;
pub mod metrics_catalog;
pub mod ops;
pub mod pii;
pub mod pipeline;
pub mod platforms;
pub mod queue;
pub mod reporting;
pub mod roles;
pub mod secrets;
pub mod settings;
pub mod store;
pub mod tokens;
