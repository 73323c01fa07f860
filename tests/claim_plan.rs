//! The claim plan survives stale statistics: the worker's own maintenance ANALYZEs
//! stagecast.jobs (sql/analyze_jobs.sql, VACUUM (ANALYZE)), so the queue is often analyzed
//! while (nearly) drained; then a burst of 100,000 jobs arrives and the planner believes the
//! table is empty. The statements the worker runs on the hot table must keep their shape in
//! that state: index scans anchored on the primary key or the claim's partial index, no sort
//! of the backlog, no nested loop over a scan of the table. Shapes, read with
//! `EXPLAIN (FORMAT JSON)`, not timings.

mod support;

use serde_json::Value;
use support::stack::Stack;

const CLAIM_JOBS: &str = include_str!("../sql/claim_jobs.sql");
const CLAIM_SETTINGS: &str = include_str!("../sql/claim_settings.sql");
const COMPLETE_JOBS: &str = include_str!("../sql/complete_jobs.sql");
const WRITE_BACK_SETTINGS: &str = include_str!("../sql/write_back_settings.sql");
const EXTEND_LEASES: &str = include_str!("../sql/extend_leases.sql");
const EXPAND_STAGE_CHANGE_BATCH: &str = include_str!("../sql/expand_stage_change_batch.sql");
const LOAD_STAGE_CHANGE_CONTEXTS: &str = include_str!("../sql/load_stage_change_contexts.sql");

const BURST: i64 = 100_000;

/// The queue analyzed while drained (a full burst came and went, then VACUUM (ANALYZE) saw no
/// live row), then the next burst of stage-change jobs, as the trigger writes them. A few are
/// running, as while a worker works.
async fn analyzed_drained_then_burst(s: &Stack) {
    let burst = format!(
        "INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key)
         SELECT 'stage_change',
                jsonb_build_object('customer_id', g, 'to_stage_id', 1, 'changed_at', now()),
                g, stagecast.stage_change_dedup_key(g, 1, now())
           FROM generate_series(1, {BURST}) g"
    );
    s.exec(&burst).await;
    s.exec("DELETE FROM stagecast.jobs").await;
    s.exec("VACUUM (ANALYZE) stagecast.jobs").await;
    let reltuples: f32 =
        sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = 'stagecast.jobs'::regclass")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(reltuples, 0.0, "the statistics say the queue is empty");
    s.exec(&burst).await;
    s.exec(
        "UPDATE stagecast.jobs SET status = 'running', locked_by = 'w', locked_until = now() + interval '1 minute', attempts = 1
          WHERE id = ANY(ARRAY(SELECT id FROM stagecast.jobs ORDER BY id LIMIT 1000))",
    )
    .await;
}

/// Every plan node, depth first.
fn nodes(plan: &Value, out: &mut Vec<Value>) {
    out.push(plan.clone());
    if let Some(children) = plan["Plans"].as_array() {
        for c in children {
            nodes(c, out);
        }
    }
}

fn describe(n: &Value) -> String {
    format!(
        "{} {} {} {}",
        n["Node Type"].as_str().unwrap_or("?"),
        n["Relation Name"].as_str().unwrap_or(""),
        n["Index Name"].as_str().unwrap_or(""),
        n["Index Cond"].as_str().unwrap_or("")
    )
}

/// EXPLAIN (FORMAT JSON) of `statement` with `settings` applied in the same transaction, as
/// the worker runs it (as the worker role).
async fn explain(
    s: &Stack,
    settings: &str,
    settings_args: &[&str],
    statement: &str,
    bind: impl FnOnce(
        sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Vec<Value> {
    let mut tx = s.db.worker_pool.begin().await.unwrap();
    let mut q = sqlx::query(settings);
    for a in settings_args {
        q = q.bind(*a);
    }
    q.execute(&mut *tx).await.unwrap();
    let explain = format!("EXPLAIN (FORMAT JSON) {statement}");
    let row = bind(sqlx::query(&explain))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let plan: Value = sqlx::Row::get(&row, 0);
    tx.rollback().await.unwrap();
    let mut out = Vec::new();
    nodes(&plan[0]["Plan"], &mut out);
    out
}

fn assert_no_scan_of_the_whole_queue(what: &str, plan: &[Value]) {
    let shape: Vec<String> = plan.iter().map(describe).collect();
    for n in plan {
        let on_jobs = n["Relation Name"] == "jobs";
        assert!(
            !(on_jobs && n["Node Type"] == "Seq Scan"),
            "{what}: a seq scan of stagecast.jobs: {shape:#?}"
        );
        assert!(
            n["Node Type"] != "Sort",
            "{what}: sorts rows of the queue: {shape:#?}"
        );
        if n["Node Type"] == "Nested Loop" {
            // A nested loop is fine only when its inner side is a keyed probe, never a scan
            // of the table repeated per outer row.
            // Only its outer and inner sides loop; a CTE or init plan under it runs once.
            for child in n["Plans"].as_array().into_iter().flatten() {
                let looped = matches!(
                    child["Parent Relationship"].as_str(),
                    Some("Outer" | "Inner")
                );
                if looped && child["Relation Name"] == "jobs" {
                    assert!(
                        child["Index Cond"].is_string(),
                        "{what}: a nested loop over an unkeyed scan of stagecast.jobs: {shape:#?}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn the_worker_statements_keep_their_plan_after_an_analyze_of_the_drained_queue() {
    let s = Stack::new().await;
    analyzed_drained_then_burst(&s).await;

    // The claim: picked through the claim's partial index, leased by primary key.
    let claim = explain(
        &s,
        CLAIM_SETTINGS,
        &["2000ms", "30000ms"],
        CLAIM_JOBS,
        |q| {
            q.bind(1000_i64)
                .bind("worker-a")
                .bind(30.0_f64)
                .bind(stagecast::store::DEFAULT_JOB_PAYLOAD_MAX)
                .bind(2_i64)
        },
    )
    .await;
    assert_no_scan_of_the_whole_queue("claim_jobs.sql", &claim);
    let shape: Vec<String> = claim.iter().map(describe).collect();
    assert!(
        claim
            .iter()
            .any(|n| n["Index Name"] == "jobs_claimable_idx"),
        "the due jobs are picked through jobs_claimable_idx: {shape:#?}"
    );
    // A bulk change's chunks (the worker's own count and the due ones) through the index of
    // chunks alone: never a walk of the 100,000 stage changes for them.
    let on_chunks = claim
        .iter()
        .filter(|n| n["Index Name"] == "jobs_chunks_idx")
        .count();
    assert_eq!(
        on_chunks, 2,
        "the held and the due chunks are read through jobs_chunks_idx: {shape:#?}"
    );
    let update_scan = claim
        .iter()
        .find(|n| {
            n["Relation Name"] == "jobs"
                && n["Alias"] == "j"
                && n["Node Type"].as_str().is_some_and(|t| t.contains("Scan"))
        })
        .unwrap_or_else(|| panic!("no scan of jobs j under the UPDATE: {shape:#?}"));
    assert_eq!(update_scan["Index Name"], "jobs_pkey", "{shape:#?}");
    assert!(
        update_scan["Index Cond"]
            .as_str()
            .is_some_and(|c| c.contains("ANY")),
        "the UPDATE is a primary-key lookup of the picked ids: {shape:#?}"
    );

    // The write-back of 1,000 outcomes, as the completer binds them.
    let ids: Vec<i64> = (1..=1000).collect();
    let n = ids.len();
    let complete = explain(
        &s,
        WRITE_BACK_SETTINGS,
        &["2000ms", "30000ms"],
        COMPLETE_JOBS,
        |q| {
            q.bind("w")
                .bind(ids.clone())
                .bind(vec![1_i32; n])
                .bind(vec!["done"; n])
                .bind(vec![None::<chrono::DateTime<chrono::Utc>>; n])
                .bind(vec![None::<String>; n])
                .bind(vec![None::<String>; n])
        },
    )
    .await;
    assert_no_scan_of_the_whole_queue("complete_jobs.sql", &complete);

    // The heartbeat: this worker's running jobs, through the lease index.
    let beat = explain(
        &s,
        "SELECT set_config('lock_timeout', $1, true)",
        &["1000ms"],
        EXTEND_LEASES,
        |q| q.bind("w").bind(60.0_f64).bind(Vec::<i64>::new()),
    )
    .await;
    assert_no_scan_of_the_whole_queue("extend_leases.sql", &beat);

    // The expansion of a chunk, leasing its jobs at birth: the batch job by primary key, the
    // dedup of the leased rows a probe of the pending-only index per row.
    let expand = explain(&s, "SELECT 1", &[], EXPAND_STAGE_CHANGE_BATCH, |q| {
        q.bind(1_i64)
            .bind("w")
            .bind(1_i32)
            .bind(5000_i64)
            .bind(60.0_f64)
    })
    .await;
    assert_no_scan_of_the_whole_queue("expand_stage_change_batch.sql", &expand);
    let shape: Vec<String> = expand.iter().map(describe).collect();
    assert!(
        expand
            .iter()
            .any(|n| n["Index Name"] == "jobs_dedup_pending_idx"),
        "the leased rows' dedup probes jobs_dedup_pending_idx: {shape:#?}"
    );

    // The CRM trigger's insert: its dedup is the ON CONFLICT arbiter, a probe of the unique
    // partial index per row whatever the statistics.
    let mut tx = s.pool().begin().await.unwrap();
    let row = sqlx::query(
        "EXPLAIN (FORMAT JSON) INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key)
         VALUES ('stage_change', '{}', 1, stagecast.stage_change_dedup_key(1, 1, now()))
         ON CONFLICT (dedup_key) WHERE status = 'pending' DO NOTHING",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let plan: Value = sqlx::Row::get(&row, 0);
    tx.rollback().await.unwrap();
    assert_eq!(
        plan[0]["Plan"]["Conflict Arbiter Indexes"],
        serde_json::json!(["jobs_dedup_pending_idx"]),
        "{plan:#}"
    );
}

/// The pipeline's read of a batch's context, on a CRM customers table that was never analyzed
/// (a bulk import, autovacuum off) and holds many more customers than the batch: each customer
/// is looked up by its key. Before, the planner merge-joined the batch against an index scan of
/// customers from its first id, reading every customer up to the batch's highest id: with the
/// batch at the top of a 1,000,000-customer table, a million rows per 1,000 events.
#[tokio::test]
async fn the_context_read_looks_customers_up_by_key_in_a_table_never_analyzed() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.exec("ALTER TABLE customers SET (autovacuum_enabled = false)")
        .await;
    s.crm_exec(
        "INSERT INTO customers (id, name, email, phone, utm_campaign_id, sale_price)
         SELECT g, 'Cliente ' || g, 'cliente' || g || '@example.com',
                '+55 11 9' || lpad(g::text, 8, '0'), 1, 100
           FROM generate_series(1, 50000) g",
    )
    .await;
    let jobs: Vec<i64> = (1..=1000).collect();
    let customers: Vec<i64> = (49_001..=50_000).collect();
    let stages = vec![2_i64; 1000];
    let plan = explain(&s, "SELECT 1", &[], LOAD_STAGE_CHANGE_CONTEXTS, |q| {
        q.bind(jobs.clone())
            .bind(customers.clone())
            .bind(stages.clone())
    })
    .await;
    let shape: Vec<String> = plan.iter().map(describe).collect();
    let reads: Vec<&Value> = plan
        .iter()
        .filter(|n| n["Relation Name"] == "customers")
        .collect();
    assert!(!reads.is_empty(), "no read of customers: {shape:#?}");
    for n in reads {
        assert!(
            n["Index Cond"].is_string(),
            "customers read without a key (a scan from the first customer): {shape:#?}"
        );
    }
}
