//! How stagecast's commands connect: every session pins its search_path (sql/pin_search_path.sql).

use sqlx::postgres::PgPoolOptions;
use sqlx::Connection as _;
use sqlx::Executor as _;

pub(super) const PIN_SEARCH_PATH: &str = include_str!("../../sql/pin_search_path.sql");

/// Pool options for every command but `migrate` (migrations create the contract tables in the
/// owner's own schema, so they run with its search_path): each new connection first sets
/// `search_path = pg_catalog, pg_temp`. One statement per connection, not per query.
///
/// A connection's read and write buffers keep the size of the largest message it carried (a
/// write-back of up to 8 MiB of audit rows, a claim), for as long as the pool keeps it: every
/// connection of the pool ends up holding one. They go back to 8 kB when the connection returns
/// to the pool (a reallocation only when they grew; docs/performance.md).
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(PIN_SEARCH_PATH).await?;
                Ok(())
            })
        })
        .after_release(|conn, _meta| {
            conn.shrink_buffers();
            Box::pin(async { Ok(true) })
        })
}
