//! The hot table does not depend on autovacuum (issue 12, finding 9): with autovacuum off, a
//! burst left stagecast.jobs with every dead row it made. The worker's maintenance vacuums its
//! own tables past autovacuum's threshold, as the worker role.

mod support;

use std::time::Duration;

use support::stack::Stack;
use support::wait;

/// (dead rows, threshold, vacuumed at least once) of stagecast.jobs, read with the worker's own
/// query (sql/vacuum_status.sql) as the worker role.
async fn jobs_vacuum_state(s: &Stack) -> (i64, f64, bool) {
    let tables = s.store.vacuum_status().await.expect("vacuum status");
    let jobs = tables
        .iter()
        .find(|t| t.table_name == "jobs")
        .expect("stagecast.jobs is watched");
    assert!(jobs.may_vacuum, "the worker role may vacuum the queue");
    (
        jobs.n_dead_tup,
        jobs.dead_threshold,
        jobs.last_vacuumed_at.is_some(),
    )
}

#[tokio::test]
async fn after_a_burst_the_worker_vacuums_the_queue_with_autovacuum_off() {
    let s = Stack::new().await;
    // The production condition, whatever this server's setting: no autovacuum for the queue.
    s.exec("ALTER TABLE stagecast.jobs SET (autovacuum_enabled = false)")
        .await;
    let threshold: String = sqlx::query_scalar(
        "SELECT option_value FROM pg_options_to_table((SELECT reloptions FROM pg_class WHERE oid = 'stagecast.jobs'::regclass))
          WHERE option_name = 'autovacuum_vacuum_threshold'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(threshold, "5000", "the queue's own vacuum threshold");
    s.seed_standard().await;

    // A burst: one bulk stage change of 6,000 customers becomes 6,000 jobs, each claimed
    // (a dead row) and finished (another): about 12,000 dead rows, past the threshold.
    const BURST: i64 = 6000;
    s.crm_exec(&format!(
        "INSERT INTO customers (id, name, email, utm_campaign_id)
         SELECT g, 'Cliente ' || g, 'c' || g || '@example.com', 1 FROM generate_series(1, {BURST}) g;
         UPDATE customers SET stage_id = 1;"
    ))
    .await;
    let worker = s.start_worker();
    s.drained().await;
    let delivered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stagecast.deliveries WHERE outcome = 'delivered'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(delivered, BURST);

    // Statistics reach pg_stat_user_tables within seconds, and the maintenance tick (100 ms
    // here) vacuums once they show the dead rows. Wait for the observable result.
    wait::wait_for_value(
        "the worker to vacuum stagecast.jobs (the value is: dead rows, threshold, vacuumed)",
        Duration::from_secs(60),
        || jobs_vacuum_state(&s),
        |(dead, threshold, vacuumed)| *vacuumed && (*dead as f64) <= *threshold,
    )
    .await;
    let autovacuumed: bool = sqlx::query_scalar(
        "SELECT last_autovacuum IS NOT NULL FROM pg_stat_user_tables WHERE schemaname = 'stagecast' AND relname = 'jobs'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert!(
        !autovacuumed,
        "autovacuum was supposed to be off for the queue"
    );
    worker.shutdown().await.unwrap();
}

/// VACUUM's truncation of empty pages at a table's end takes ACCESS EXCLUSIVE (briefly, but a
/// scan of the tail on a drained queue can last longer than the CRM trigger's 50 ms lock wait),
/// which parks CRM changes. The tables the trigger writes keep their pages instead
/// (`vacuum_truncate = false`): after a drained burst, the worker role's VACUUM leaves their
/// size as it was, so it never took that lock.
#[tokio::test]
async fn vacuum_never_truncates_the_tables_the_crm_trigger_writes() {
    let s = Stack::new().await;
    for table in ["jobs", "enqueue_failures", "config_problems"] {
        let fill = match table {
            "jobs" => "INSERT INTO stagecast.jobs (kind, payload) SELECT 'stage_change', '{}' FROM generate_series(1, 5000)",
            "enqueue_failures" => "INSERT INTO stagecast.enqueue_failures (kind, payload, error) SELECT 'stage_change', '{}', 'test' FROM generate_series(1, 5000)",
            _ => "INSERT INTO stagecast.config_problems (source, row_id, problem) SELECT 'test', g, 'test' FROM generate_series(1, 5000) g",
        };
        s.exec(fill).await;
        s.exec(&format!("DELETE FROM stagecast.{table}")).await;
        let size = || async {
            sqlx::query_scalar::<_, i64>(&format!("SELECT pg_relation_size('stagecast.{table}')"))
                .fetch_one(s.pool())
                .await
                .unwrap()
        };
        let before = size().await;
        assert!(before > 0, "stagecast.{table} has pages to truncate");
        // The statement of the worker's maintenance (sql/vacuum_table.sql), as the superuser so
        // that every one of these tables is vacuumed whatever the worker role may vacuum.
        sqlx::raw_sql(&format!("VACUUM (SKIP_LOCKED, ANALYZE) stagecast.{table}"))
            .execute(s.pool())
            .await
            .unwrap();
        assert_eq!(
            size().await,
            before,
            "VACUUM truncated stagecast.{table} (and so took ACCESS EXCLUSIVE)"
        );
    }
}
