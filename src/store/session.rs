//! How stagecast's commands connect: every session pins its search_path (sql/pin_search_path.sql).

use sqlx::postgres::PgPoolOptions;
use sqlx::Executor as _;

pub(super) const PIN_SEARCH_PATH: &str = include_str!("../../sql/pin_search_path.sql");

/// Pool options for every command but `migrate` (migrations create the contract tables in the
/// owner's own schema, so they run with its search_path): each new connection first sets
/// `search_path = pg_catalog, pg_temp`. One statement per connection, not per query.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().after_connect(|conn, _meta| {
        Box::pin(async move {
            conn.execute(PIN_SEARCH_PATH).await?;
            Ok(())
        })
    })
}
