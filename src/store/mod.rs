//! All SQL lives behind this module (River-style): callers get typed functions, the statements
//! live in `sql/*.sql` named for what they do.

/// Every migration of the CRM data contract and the `stagecast` schema, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
