//! The CRM's write path, under the conditions a production CRM creates:
//! - the stage-change and message triggers are planned for the rows each statement changed,
//!   whatever the same pooled session did before (issue 12, finding 1);
//! - a locked or slow queue never fails or stalls the CRM's write: the change is parked and
//!   delivered exactly once when the lock is gone; what cannot even be parked is visible
//!   (finding 2);
//! - only a true duplicate of a stage change (same customer, stage and time) is coalesced; a real
//!   repeat change is its own job and event (finding 8).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Connection as _, Executor as _, PgConnection};
use support::stack::Stack;

/// The CRM's statement timeout in these tests: what a CRM's pool commonly sets.
const CRM_STATEMENT_TIMEOUT: &str = "3s";

/// A CRM connection: its own session, `statement_timeout = 3s`.
async fn crm_session(s: &Stack) -> PgConnection {
    let mut c = PgConnection::connect(&s.db.url)
        .await
        .expect("CRM connects");
    c.execute(format!("SET statement_timeout = '{CRM_STATEMENT_TIMEOUT}'").as_str())
        .await
        .unwrap();
    c
}

/// Another session (an admin, a migration, another CRM transaction) that holds locks.
async fn other_session(s: &Stack) -> PgConnection {
    PgConnection::connect(&s.db.url)
        .await
        .expect("second session connects")
}

/// Poll until `check` holds; fail after 30 s with `what`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 30 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scalar_i64(c: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(c)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
}

async fn parked_count(c: &mut PgConnection) -> i64 {
    scalar_i64(c, "SELECT count(*) FROM stagecast.enqueue_failures").await
}

/// Standard CRM with `n` customers (1..=n) in campaign 1, each with a sale price.
async fn crm_with_customers(s: &Stack, n: i64) {
    s.seed_standard().await;
    for id in 1..=n {
        s.customer(
            id,
            &format!("c{id}@example.com"),
            "+5511999990001",
            Some(150.0),
        )
        .await;
    }
}

/// Wait until every queued and parked change is finished, then check that the sandbox accepted
/// exactly `expected` events, each event_id once.
async fn assert_delivered_exactly_once(s: &Stack, expected: usize) {
    assert!(
        s.sandbox
            .wait_for_events(expected, Duration::from_secs(30))
            .await,
        "only {} of {expected} events arrived",
        s.sandbox.accepted_events()
    );
    eventually("the queue and the parking table are empty", || async move {
        let (pending, running, _) = s.store.queue_counts().await.unwrap();
        let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM stagecast.enqueue_failures")
            .fetch_one(s.pool())
            .await
            .unwrap();
        pending == 0 && running == 0 && parked == 0
    })
    .await;
    // Nothing is pending, running or parked any more: no further send can happen.
    let received = s.sandbox.received();
    assert_eq!(received.len(), expected, "{received:#?}");
    for e in &received {
        let id = e.event["event_id"].as_str().expect("event_id");
        assert_eq!(s.sandbox.delivered_count(id), 1, "event {id} sent twice");
    }
}

/// The CRM's UPDATE must commit: success, not a timing.
async fn crm_update(c: &mut PgConnection, sql: &str) {
    c.execute(sql)
        .await
        .unwrap_or_else(|e| panic!("the CRM's write failed: {e}: {sql}"));
}

// ---- finding 1: the trigger's plan does not depend on the session's history ----------------

/// Notices the server sends to one session (auto_explain plans, WARNINGs), captured from sqlx's
/// `sqlx::postgres::notice` events on this thread (`#[tokio::test]` runs on one thread).
#[derive(Clone, Default)]
struct Notices(Arc<Mutex<Vec<String>>>);

impl Notices {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        use tracing_subscriber::layer::SubscriberExt as _;
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Notices {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(Option<String>);
        impl tracing::field::Visit for Message {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    self.0 = Some(value.to_string());
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        if event.metadata().target() != "sqlx::postgres::notice" {
            return;
        }
        let mut m = Message(None);
        event.record(&mut m);
        if let Some(m) = m.0 {
            self.0.lock().unwrap().push(m);
        }
    }
}

/// A session that reports the plan of every statement, nested ones included, with estimated and
/// actual rows (auto_explain, as JSON notices). With `jit_everything`, every statement that may be
/// JIT-compiled is (`jit_above_cost = 0`), so a plan shows whether the trigger path can pay for
/// it; only for small statements, since the foreign-key check of every row is compiled too.
async fn explaining_session(s: &Stack, jit_everything: bool) -> PgConnection {
    let mut c = crm_session(s).await;
    let mut settings = vec![
        "LOAD 'auto_explain'",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_nested_statements = on",
        "SET auto_explain.log_analyze = on",
        "SET auto_explain.log_timing = off",
        "SET auto_explain.log_format = json",
        "SET auto_explain.log_level = notice",
        "SET client_min_messages = notice",
    ];
    if jit_everything {
        settings.extend([
            "SET jit_above_cost = 0",
            // Compiled, but neither inlined nor optimised: cheaper, and the plan still says so.
            "SET jit_inline_above_cost = -1",
            "SET jit_optimize_above_cost = -1",
        ]);
    }
    for sql in settings {
        c.execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql} (auto_explain ships with PostgreSQL)"));
    }
    c
}

/// The plans (JSON) of the statements that read the transition tables, among `notices`.
fn transition_table_plans(notices: &[String]) -> Vec<serde_json::Value> {
    notices
        .iter()
        .filter_map(|n| n.find('{').map(|i| &n[i..]))
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .filter(|p| {
            p["Query Text"]
                .as_str()
                .is_some_and(|q| q.contains("new_rows"))
        })
        .collect()
}

/// (estimated, actual) rows of every unfiltered scan of a transition table in a plan: its
/// estimate is the row count the statement was planned for (a filtered scan's estimate is the
/// filter's selectivity guess instead).
fn tuplestore_scans(node: &serde_json::Value, out: &mut Vec<(f64, f64)>) {
    if node["Node Type"] == "Named Tuplestore Scan"
        && node.get("Filter").is_none()
        && node["Actual Loops"].as_f64() > Some(0.0)
    {
        out.push((
            node["Plan Rows"].as_f64().unwrap(),
            node["Actual Rows"].as_f64().unwrap(),
        ));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        tuplestore_scans(child, out);
    }
}

/// The statement joining old and new rows was planned for this statement's rows (within 2×,
/// whatever the session ran before), and nothing on the trigger path was JIT-compiled.
fn assert_planned_for_its_rows(notices: &[String], what: &str) {
    let plans = transition_table_plans(notices);
    assert!(!plans.is_empty(), "{what}: no plan captured: {notices:#?}");
    let mut join_seen = false;
    for p in &plans {
        assert!(
            p.get("JIT").is_none(),
            "{what}: the trigger path was JIT-compiled: {p:#}"
        );
        if !p["Query Text"].as_str().unwrap().contains("old_rows") {
            continue;
        }
        let mut scans = Vec::new();
        tuplestore_scans(&p["Plan"], &mut scans);
        join_seen |= !scans.is_empty();
        for (estimated, actual) in scans {
            let actual = actual.max(1.0);
            assert!(
                estimated <= actual * 2.0 && estimated * 2.0 >= actual,
                "{what}: planned for {estimated} rows, ran on {actual}: the plan was cached from \
                 an earlier statement of this session\n{p:#}"
            );
        }
    }
    assert!(join_seen, "{what}: no plan of the old/new join: {plans:#?}");
}

#[tokio::test]
async fn the_stage_change_trigger_is_planned_for_each_statements_rows_whatever_the_session_did_before(
) {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.exec(
        "INSERT INTO customers (id, name, utm_campaign_id) SELECT g, 'c' || g, 1 FROM generate_series(1, 4000) g",
    )
    .await;
    let notices = Notices::default();
    let _guard = notices.install();

    // Pooled session 1: single-row changes, then a bulk UPDATE, then single-row again.
    let mut crm = explaining_session(&s, false).await;
    notices.take();
    for id in 1..=3 {
        crm_update(
            &mut crm,
            &format!("UPDATE customers SET stage_id = 1 WHERE id = {id}"),
        )
        .await;
    }
    assert_planned_for_its_rows(&notices.take(), "single-row changes");
    crm_update(
        &mut crm,
        "UPDATE customers SET stage_id = 2 WHERE id BETWEEN 1001 AND 3000",
    )
    .await;
    assert_planned_for_its_rows(&notices.take(), "a bulk UPDATE after single-row changes");
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 4").await;
    assert_planned_for_its_rows(&notices.take(), "a single-row change after a bulk UPDATE");
    crm.close().await.unwrap();

    // Pooled session 2: its first stage change is a bulk UPDATE.
    let mut crm = explaining_session(&s, false).await;
    notices.take();
    crm_update(
        &mut crm,
        "UPDATE customers SET stage_id = 1 WHERE id BETWEEN 1001 AND 3000",
    )
    .await;
    assert_planned_for_its_rows(&notices.take(), "a bulk UPDATE first in the session");
    for id in 5..=7 {
        crm_update(
            &mut crm,
            &format!("UPDATE customers SET stage_id = 1 WHERE id = {id}"),
        )
        .await;
        assert_planned_for_its_rows(
            &notices.take(),
            "a single-row change after a bulk UPDATE first in the session",
        );
    }
    crm.close().await.unwrap();
}

#[tokio::test]
async fn the_message_and_insert_triggers_are_planned_for_each_statements_rows() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.exec("INSERT INTO customers (id, name) VALUES (1, 'c1'); INSERT INTO chats (id, customer_id) VALUES (1, 1)")
        .await;
    let notices = Notices::default();
    let _guard = notices.install();
    let mut crm = explaining_session(&s, false).await;
    notices.take();
    let referral = r#"{"referral": {"source_id": "120226305854810726", "ctwa_clid": "ARAk"}}"#;
    // A gateway's bulk import first, then single messages, then a bulk metadata fix-up.
    crm_update(
        &mut crm,
        &format!(
            "INSERT INTO chat_messages (chat_id, direction, metadata) \
             SELECT 1, 'inbound', '{referral}' FROM generate_series(1, 2000)"
        ),
    )
    .await;
    crm_update(
        &mut crm,
        "INSERT INTO chat_messages (chat_id, direction, metadata) VALUES (1, 'inbound', '{}')",
    )
    .await;
    crm_update(&mut crm, "UPDATE chat_messages SET metadata = '{\"x\": 1}' WHERE id = (SELECT max(id) FROM chat_messages)").await;
    crm_update(
        &mut crm,
        &format!("UPDATE chat_messages SET metadata = '{referral}' WHERE id <= 1500"),
    )
    .await;
    crm_update(
        &mut crm,
        "UPDATE chat_messages SET metadata = '{\"y\": 2}' WHERE id = 1",
    )
    .await;
    // Customers inserted with a stage: a bulk import, then one by one.
    crm_update(
        &mut crm,
        "INSERT INTO customers (id, name, stage_id) SELECT g, 'c' || g, 1 FROM generate_series(10, 2009) g",
    )
    .await;
    crm_update(
        &mut crm,
        "INSERT INTO customers (id, name, stage_id) VALUES (3000, 'x', 1)",
    )
    .await;
    let captured = notices.take();
    let plans = transition_table_plans(&captured);
    // 2 message inserts, 3 message updates and 2 customer inserts, each one statement.
    assert!(plans.len() >= 7, "{plans:#?}");
    assert_planned_for_its_rows(&captured, "message and customer triggers");
    crm.close().await.unwrap();
}

#[tokio::test]
async fn no_statement_of_the_trigger_path_is_ever_jit_compiled() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.exec(
        "INSERT INTO customers (id, name, utm_campaign_id) SELECT g, 'c' || g, 1 FROM generate_series(1, 40) g; \
         INSERT INTO chats (id, customer_id) VALUES (1, 1)",
    )
    .await;
    let notices = Notices::default();
    let _guard = notices.install();
    let mut crm = explaining_session(&s, true).await;
    notices.take();
    let referral = r#"{"referral": {"source_id": "120226305854810726"}}"#;
    for sql in [
        "UPDATE customers SET stage_id = 1 WHERE id = 1".to_string(),
        "UPDATE customers SET stage_id = 2 WHERE id BETWEEN 2 AND 30".to_string(),
        "INSERT INTO customers (id, name, stage_id) SELECT g, 'c' || g, 1 FROM generate_series(100, 120) g".to_string(),
        format!("INSERT INTO chat_messages (chat_id, direction, metadata) SELECT 1, 'inbound', '{referral}' FROM generate_series(1, 20)"),
        "UPDATE chat_messages SET metadata = '{\"referral\": {\"ctwa_clid\": \"x\"}}'".to_string(),
    ] {
        crm_update(&mut crm, &sql).await;
    }
    let captured = notices.take();
    let plans = transition_table_plans(&captured);
    assert!(plans.len() >= 5, "{plans:#?}");
    // The CRM's own statements were compiled: JIT is available and on in this session.
    assert!(
        captured
            .iter()
            .any(|n| n.contains("UPDATE customers") && n.contains("\"JIT\"")),
        "JIT did not run at all here, so this test would prove nothing: {captured:#?}"
    );
    assert_planned_for_its_rows(&captured, "the trigger path with every statement JIT-able");
    crm.close().await.unwrap();
}

// ---- finding 2: a locked or slow queue never fails or stalls the CRM's write ----------------

#[tokio::test]
async fn crm_writes_commit_while_a_migration_holds_the_queue_locked_and_are_delivered_once_after() {
    let s = Stack::new().await;
    crm_with_customers(&s, 4).await;
    let worker = s.start_worker();
    // What a migration or VACUUM FULL holds while it rewrites the table.
    let mut migration = other_session(&s).await;
    migration.execute("BEGIN").await.unwrap();
    migration
        .execute("LOCK TABLE stagecast.jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let mut crm = crm_session(&s).await;
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 1").await;
    crm_update(
        &mut crm,
        "UPDATE customers SET stage_id = 2 WHERE id BETWEEN 2 AND 4",
    )
    .await;
    crm_update(
        &mut crm,
        "INSERT INTO customers (id, name, email, utm_campaign_id, stage_id) VALUES (5, 'Ana', 'ana@example.com', 1, 1)",
    )
    .await;
    let mut observer = other_session(&s).await;
    assert_eq!(
        scalar_i64(
            &mut observer,
            "SELECT count(*) FROM customers WHERE stage_id IS NOT NULL"
        )
        .await,
        5,
        "the CRM's writes committed"
    );
    let errors: Vec<String> =
        sqlx::query_scalar("SELECT error FROM stagecast.enqueue_failures ORDER BY id")
            .fetch_all(&mut observer)
            .await
            .unwrap();
    assert_eq!(
        errors.len(),
        3,
        "each statement's changes are parked: {errors:?}"
    );
    assert!(
        errors.iter().all(|e| e.starts_with("55P03")),
        "parked because the lock wait was cut short: {errors:?}"
    );
    // The trigger's own lock_timeout does not leak into the CRM's session.
    let lock_timeout: String = sqlx::query_scalar("SHOW lock_timeout")
        .fetch_one(&mut crm)
        .await
        .unwrap();
    assert_eq!(lock_timeout, "0");

    migration.execute("COMMIT").await.unwrap();
    // 1 Lead (customer 1), 3 Purchases (2-4), 1 Lead (customer 5).
    assert_delivered_exactly_once(&s, 5).await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crm_write_commits_while_an_admins_open_transaction_blocks_inserts_into_the_queue() {
    let s = Stack::new().await;
    crm_with_customers(&s, 2).await;
    // An admin started building an index by hand and left the transaction open: SHARE lock.
    let mut admin = other_session(&s).await;
    admin.execute("BEGIN").await.unwrap();
    admin
        .execute("CREATE INDEX jobs_by_customer ON stagecast.jobs (customer_id)")
        .await
        .unwrap();
    let mut crm = crm_session(&s).await;
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 1").await;
    crm_update(
        &mut crm,
        "UPDATE customers SET stage_id = 2 WHERE id IN (1, 2)",
    )
    .await;
    assert_eq!(parked_count(&mut other_session(&s).await).await, 2);
    admin.execute("ROLLBACK").await.unwrap();
    let worker = s.start_worker();
    // Customer 1: Lead then Purchase; customer 2: Purchase.
    assert_delivered_exactly_once(&s, 3).await;
    worker.shutdown().await.unwrap();
}

/// The CRM's application code queues a change it already made, with the time it happened (the
/// SQL API, docs/crm-integration.md §4).
async fn enqueue_again(c: &mut PgConnection, customer: i64, stage: i64, at: &str) -> i32 {
    sqlx::query_scalar("SELECT stagecast.enqueue_stage_change($1, $2, NULL, $3::timestamptz)")
        .bind(customer)
        .bind(stage)
        .bind(at)
        .fetch_one(c)
        .await
        .unwrap_or_else(|e| panic!("the CRM's call failed: {e}"))
}

const AT: &str = "2026-11-30 10:00:00.123456+00";

#[tokio::test]
async fn a_crm_write_commits_while_an_admins_open_transaction_holds_the_same_changes_job_row() {
    let s = Stack::new().await;
    crm_with_customers(&s, 1).await;
    let mut crm = crm_session(&s).await;
    assert_eq!(enqueue_again(&mut crm, 1, 1, AT).await, 1);
    // An admin edits that pending job in a transaction left open (a GUI client, psql).
    let mut admin = other_session(&s).await;
    admin.execute("BEGIN").await.unwrap();
    admin
        .execute("UPDATE stagecast.jobs SET max_attempts = 20 WHERE customer_id = 1")
        .await
        .unwrap();
    // The CRM retries its call (it timed out on its side): the same change again.
    assert_eq!(
        enqueue_again(&mut crm, 1, 1, AT).await,
        0,
        "parked, not queued"
    );
    assert_eq!(parked_count(&mut other_session(&s).await).await, 1);
    admin.execute("COMMIT").await.unwrap();
    let worker = s.start_worker();
    // The parked duplicate is recognised when it is re-queued: one event.
    assert_delivered_exactly_once(&s, 1).await;
    worker.shutdown().await.unwrap();
    let jobs: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM stagecast.jobs WHERE kind = 'stage_change') \
              + (SELECT count(*) FROM stagecast.job_archive WHERE kind = 'stage_change')",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(jobs, 1, "one job for one change");
}

#[tokio::test]
async fn a_crm_write_commits_while_another_transaction_inserts_the_same_change_uncommitted() {
    let s = Stack::new().await;
    crm_with_customers(&s, 1).await;
    let worker = s.start_worker();
    // Another connection of the CRM queues the change and has not committed yet.
    let mut first = other_session(&s).await;
    first.execute("BEGIN").await.unwrap();
    assert_eq!(enqueue_again(&mut first, 1, 1, AT).await, 1);
    let mut crm = crm_session(&s).await;
    assert_eq!(
        enqueue_again(&mut crm, 1, 1, AT).await,
        0,
        "parked, not queued"
    );
    first.execute("COMMIT").await.unwrap();
    assert_delivered_exactly_once(&s, 1).await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn inbound_messages_written_while_the_queue_is_locked_are_parked_and_attributed_after() {
    let s = Stack::new().await;
    crm_with_customers(&s, 1).await;
    let mut migration = other_session(&s).await;
    migration.execute("BEGIN").await.unwrap();
    migration
        .execute("LOCK TABLE stagecast.jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut crm = crm_session(&s).await;
    crm_update(
        &mut crm,
        r#"INSERT INTO chat_messages (chat_id, direction, metadata)
           SELECT id, 'inbound', '{"stub": true}' FROM chats WHERE customer_id = 1"#,
    )
    .await;
    // The gateway fills in the real message, with its ad data, a moment later.
    crm_update(
        &mut crm,
        r#"UPDATE chat_messages SET metadata = '{"referral": {"source_id": "120226305854810726", "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ"}}'"#,
    )
    .await;
    assert_eq!(parked_count(&mut other_session(&s).await).await, 1);
    migration.execute("ROLLBACK").await.unwrap();
    let worker = s.start_worker();
    let st = &s;
    eventually("the parked message was attributed", || async move {
        let source: Option<String> =
            sqlx::query_scalar("SELECT utm_metadata ->> 'source_id' FROM customers WHERE id = 1")
                .fetch_one(st.pool())
                .await
                .unwrap();
        source.as_deref() == Some("120226305854810726")
    })
    .await;
    worker.shutdown().await.unwrap();
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM stagecast.enqueue_failures")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(parked, 0);
}

/// Run `stagecast doctor --json` against this stack and return its checks.
async fn doctor_checks(s: &Stack) -> Vec<serde_json::Value> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stagecast"))
        .env_clear()
        .args(["doctor", "--json"])
        .env("DATABASE_URL", &s.db.url)
        .env("STAGECAST_META_GRAPH_URL", s.sandbox.base_url())
        .env("STAGECAST_KEYS", support::stack::KEYS)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .await
        .expect("run stagecast doctor");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["checks"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_change_that_can_be_neither_queued_nor_parked_still_commits_and_is_visible() {
    let s = Stack::new().await;
    crm_with_customers(&s, 1).await;
    let notices = Notices::default();
    let _guard = notices.install();
    // A transaction that locks the queue and the parking table at once.
    let mut admin = other_session(&s).await;
    admin.execute("BEGIN").await.unwrap();
    admin
        .execute("LOCK TABLE stagecast.jobs, stagecast.enqueue_failures IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut crm = crm_session(&s).await;
    notices.take();
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 1").await;
    let warnings = notices.take();
    assert!(
        warnings.iter().any(|w| w.contains("NOT queued")
            && w.contains("\"customer_ids\": [1]")
            && w.contains("55P03")),
        "a WARNING names the change that was lost: {warnings:#?}"
    );
    admin.execute("ROLLBACK").await.unwrap();
    let lost: i64 = sqlx::query_scalar("SELECT stagecast.lost_enqueues()")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(lost, 1);
    let checks = doctor_checks(&s).await;
    let check = checks
        .iter()
        .find(|c| c["id"] == "queue.lost")
        .unwrap_or_else(|| panic!("no queue.lost check: {checks:#?}"));
    assert_eq!(check["status"], "problem", "{check:#}");
    assert!(check["found"].as_str().unwrap().contains('1'), "{check:#}");
}

async fn wait(c: &mut PgConnection) -> String {
    sqlx::query_scalar("SELECT stagecast.enqueue_lock_wait()")
        .fetch_one(c)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_worker_reports_parked_and_lost_changes_in_its_metrics() {
    let s = Stack::new().await;
    crm_with_customers(&s, 2).await;
    // One change lost: a transaction holds the queue and the parking table.
    let mut admin = other_session(&s).await;
    admin.execute("BEGIN").await.unwrap();
    admin
        .execute("LOCK TABLE stagecast.jobs, stagecast.enqueue_failures IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut crm = crm_session(&s).await;
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 1").await;
    admin.execute("ROLLBACK").await.unwrap();
    // One change parked for good: the queue refuses stage changes (a broken constraint), so
    // each re-queue parks it again.
    s.exec("ALTER TABLE stagecast.jobs ADD CONSTRAINT broken CHECK (kind <> 'stage_change')")
        .await;
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 2").await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let _worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_stagecast"))
        .env_clear()
        .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &s.db.url)
        .env("STAGECAST_META_GRAPH_URL", s.sandbox.base_url())
        .env("STAGECAST_KEYS", support::stack::KEYS)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start stagecast run");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let (client, url) = (&client, &url);
    eventually("the worker reports 1 parked and 1 lost", || async move {
        let Ok(r) = client.get(url).send().await else {
            return false;
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .any(|l| l == "stagecast_enqueue_fallbacks{state=\"parked\"} 1")
            && text
                .lines()
                .any(|l| l == "stagecast_enqueue_fallbacks{state=\"lost\"} 1")
    })
    .await;
}

#[tokio::test]
async fn the_trigger_waits_less_than_the_crm_sessions_own_timeouts_and_restores_them() {
    let s = Stack::new().await;
    let mut c = other_session(&s).await;
    assert_eq!(wait(&mut c).await, "50ms", "no CRM timeouts: our own bound");
    c.execute("SET lock_timeout = '10ms'").await.unwrap();
    assert_eq!(
        wait(&mut c).await,
        "10ms",
        "the CRM's smaller lock_timeout wins"
    );
    c.execute("RESET lock_timeout").await.unwrap();
    c.execute("SET statement_timeout = '100ms'").await.unwrap();
    let ms: u32 = wait(&mut c).await.trim_end_matches("ms").parse().unwrap();
    assert!(
        (1..=25).contains(&ms),
        "a quarter of what is left of the CRM's statement_timeout at most: {ms} ms"
    );

    // Whatever the trigger set inside, the CRM's session keeps its own settings, whether the
    // change was queued or parked.
    crm_with_customers(&s, 1).await;
    let mut crm = crm_session(&s).await;
    crm.execute("SET lock_timeout = '2s'").await.unwrap();
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 1").await;
    let mut admin = other_session(&s).await;
    admin.execute("BEGIN").await.unwrap();
    admin
        .execute("LOCK TABLE stagecast.jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    crm_update(&mut crm, "UPDATE customers SET stage_id = 2 WHERE id = 1").await;
    admin.execute("ROLLBACK").await.unwrap();
    for setting in ["lock_timeout", "statement_timeout"] {
        let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(&mut crm)
            .await
            .unwrap();
        assert_eq!(
            value,
            if setting == "lock_timeout" {
                "2s"
            } else {
                "3s"
            }
        );
    }
    assert_eq!(parked_count(&mut admin).await, 1);
}

// ---- finding 8: repeat changes are their own events; true duplicates are coalesced ----------

/// Pending stage_change jobs of a customer as (to_stage_id, changed_at as sent).
async fn pending_changes(s: &Stack, customer: i64) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT (payload ->> 'to_stage_id')::bigint, payload ->> 'changed_at' FROM stagecast.jobs \
         WHERE kind = 'stage_change' AND status = 'pending' AND customer_id = $1 \
         ORDER BY (payload ->> 'changed_at')::timestamptz, id",
    )
    .bind(customer)
    .fetch_all(s.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_customer_moved_away_and_back_while_the_first_change_is_pending_gets_two_events() {
    let s = Stack::new().await;
    crm_with_customers(&s, 1).await;
    // No worker yet: the first change waits (as it would during a retry backoff or a throttle).
    s.move_to(1, 1).await;
    s.move_to(1, 2).await;
    s.move_to(1, 1).await;
    let pending = pending_changes(&s, 1).await;
    assert_eq!(
        pending.iter().map(|(stage, _)| *stage).collect::<Vec<_>>(),
        vec![1, 2, 1],
        "the move back to stage 1 is a new change: {pending:?}"
    );
    let worker = s.start_worker();
    assert_delivered_exactly_once(&s, 3).await;
    worker.shutdown().await.unwrap();
    let leads = s
        .sandbox
        .received()
        .into_iter()
        .filter(|e| e.event["event_name"] == "Lead")
        .map(|e| e.event["event_id"].as_str().unwrap().to_string())
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(leads.len(), 2, "two Lead events with their own event_ids");
}

#[tokio::test]
async fn the_same_change_enqueued_twice_is_one_job_and_a_repeat_in_a_bulk_update_is_not_dropped() {
    let s = Stack::new().await;
    crm_with_customers(&s, 3).await;
    let mut crm = crm_session(&s).await;
    assert_eq!(enqueue_again(&mut crm, 1, 1, AT).await, 1);
    assert_eq!(
        enqueue_again(&mut crm, 1, 1, AT).await,
        0,
        "a true duplicate is coalesced"
    );
    // The same change once more inside a multi-customer call (a batch): customer 1's copy is
    // coalesced when the batch is expanded, customer 2's is new.
    let queued: i32 = sqlx::query_scalar(
        "SELECT stagecast.enqueue_stage_changes(ARRAY[1, 2]::bigint[], ARRAY[1, 1]::bigint[], NULL, $1::timestamptz)",
    )
    .bind(AT)
    .fetch_one(&mut crm)
    .await
    .unwrap();
    assert_eq!(queued, 1, "one batch job");
    // Bulk moves: all three customers to stage 2, then back to stage 1 while customer 1's first
    // change to stage 1 is still pending.
    crm_update(
        &mut crm,
        "UPDATE customers SET stage_id = 2 WHERE id BETWEEN 1 AND 3",
    )
    .await;
    crm_update(
        &mut crm,
        "UPDATE customers SET stage_id = 1 WHERE id BETWEEN 1 AND 3",
    )
    .await;
    // Keep customer 1's single job waiting (not claimed) while the batches are expanded.
    s.exec(
        "UPDATE stagecast.jobs SET run_at = now() + interval '1 hour' WHERE kind = 'stage_change'",
    )
    .await;
    let batches = s.store.claim_jobs(10, "w", 30.0).await.unwrap();
    let batches: Vec<_> = batches
        .into_iter()
        .filter(|j| j.kind == "stage_change_batch")
        .collect();
    assert_eq!(batches.len(), 3);
    let mut created = 0;
    for b in &batches {
        created += s
            .store
            .expand_stage_change_batch(b.id, "w", b.attempts, 0, 30.0)
            .await
            .unwrap()
            .expect("still held")
            .created;
    }
    assert_eq!(
        created,
        1 + 3 + 3,
        "only customer 1's true duplicate is coalesced"
    );
    let customer_1 = pending_changes(&s, 1).await;
    assert_eq!(
        customer_1
            .iter()
            .map(|(stage, _)| *stage)
            .collect::<Vec<_>>(),
        vec![1, 2, 1],
        "{customer_1:?}"
    );
}

#[tokio::test]
async fn parked_changes_are_requeued_with_the_same_rule() {
    let s = Stack::new().await;
    crm_with_customers(&s, 1).await;
    let mut crm = crm_session(&s).await;
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 1").await;
    let mut admin = other_session(&s).await;
    admin.execute("BEGIN").await.unwrap();
    admin
        .execute("LOCK TABLE stagecast.jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    crm_update(&mut crm, "UPDATE customers SET stage_id = 2 WHERE id = 1").await;
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 1").await;
    admin.execute("ROLLBACK").await.unwrap();
    assert_eq!(parked_count(&mut crm).await, 2);
    let (requeued, parked) = s.store.requeue_enqueue_failures().await.unwrap();
    assert_eq!((requeued, parked), (2, 2));
    assert_eq!(
        pending_changes(&s, 1)
            .await
            .iter()
            .map(|(stage, _)| *stage)
            .collect::<Vec<_>>(),
        vec![1, 2, 1]
    );
}

#[tokio::test]
async fn live_jobs_queued_with_the_old_dedup_key_are_migrated_to_the_change_key() {
    let s = Stack::new().await;
    s.exec(
        r#"INSERT INTO stagecast.jobs (kind, payload, customer_id, dedup_key, status) VALUES
           ('stage_change', '{"customer_id": 7, "to_stage_id": 2, "changed_at": "2026-11-30T10:00:00.123456+00:00"}', 7, 'stage_change:7:2', 'pending'),
           ('stage_change', '{"customer_id": 8, "to_stage_id": 2, "changed_at": "2026-11-30T10:00:00+00:00"}', 8, 'stage_change:8:2', 'failed'),
           ('stage_change', '{"customer_id": 9, "to_stage_id": 2, "changed_at": "not a time"}', 9, 'stage_change:9:2', 'pending'),
           ('attribution', '{"message_id": 5}', NULL, 'attribution:5', 'pending')"#,
    )
    .await;
    // What the migration does to a deployed database's live jobs (it is idempotent).
    sqlx::raw_sql(include_str!(
        "../migrations/20261201100000_crm_write_path.sql"
    ))
    .execute(s.pool())
    .await
    .unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT dedup_key FROM stagecast.jobs ORDER BY id")
        .fetch_all(s.pool())
        .await
        .unwrap();
    assert_eq!(
        keys,
        vec![
            "stage_change:7:2:1796032800123456",
            "stage_change:8:2:1796032800000000",
            // A payload the worker will fail anyway keeps its key.
            "stage_change:9:2",
            "attribution:5",
        ]
    );
}

#[tokio::test]
async fn replay_is_refused_while_the_same_change_is_pending_but_not_for_a_repeat_change() {
    let s = Stack::new().await;
    crm_with_customers(&s, 1).await;
    // The change fails for good (no campaign), with its alert.
    s.exec("UPDATE customers SET utm_campaign_id = NULL WHERE id = 1")
        .await;
    let worker = s.start_worker();
    s.move_to(1, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let (failed, changed_at): (i64, String) = sqlx::query_as(
        "SELECT id, payload ->> 'changed_at' FROM stagecast.jobs WHERE status = 'failed'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    s.exec("UPDATE customers SET utm_campaign_id = 1 WHERE id = 1")
        .await;

    // The CRM queues the very same change again: it is pending, so replaying the failed copy
    // would send the same events twice.
    let mut crm = crm_session(&s).await;
    assert_eq!(enqueue_again(&mut crm, 1, 1, &changed_at).await, 1);
    let twin: i64 = sqlx::query_scalar("SELECT id FROM stagecast.jobs WHERE status = 'pending'")
        .fetch_one(s.pool())
        .await
        .unwrap();
    let refused = sqlx::query_scalar::<_, bool>("SELECT stagecast.replay_job($1, 'ana', 'fixed')")
        .bind(failed)
        .fetch_one(s.pool())
        .await
        .expect_err("replay refused");
    let db = refused.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("55000"), "{db}");
    assert!(db.message().contains(&format!("job {twin}")), "{db}");
    let by_filter: i32 = sqlx::query_scalar(
        "SELECT stagecast.replay_jobs(p_actor => 'ana', p_reason => 'fixed', p_customer_id => 1)",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(by_filter, 0, "the filter leaves it too");
    let status: String = sqlx::query_scalar("SELECT status FROM stagecast.jobs WHERE id = $1")
        .bind(failed)
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(status, "failed");

    // Another change of the customer to the same stage (moved away and back) does not block the
    // replay: it is a different change, with its own events.
    let cancelled: bool = sqlx::query_scalar("SELECT stagecast.cancel_job($1, 'ana', 'duplicate')")
        .bind(twin)
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert!(cancelled);
    s.move_to(1, 2).await;
    s.move_to(1, 1).await;
    let replayed: bool = sqlx::query_scalar("SELECT stagecast.replay_job($1, 'ana', 'fixed')")
        .bind(failed)
        .fetch_one(s.pool())
        .await
        .expect("replay while another change to the same stage is pending");
    assert_eq!(
        pending_changes(&s, 1)
            .await
            .iter()
            .map(|(stage, _)| *stage)
            .collect::<Vec<_>>(),
        vec![1, 2, 1],
        "the replayed change, then the move away and back"
    );
    assert!(replayed);
}

// ---- the wake-up never fails the commit -----------------------------------------------------

/// Notifications on `stagecast_jobs` up to the one with `marker`: how many wake-ups ('') came
/// before it. Notifications arrive in commit order, and within a transaction in order.
async fn wake_ups_before(listener: &mut sqlx::postgres::PgListener, marker: &str) -> usize {
    let mut wake_ups = 0;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), listener.recv())
            .await
            .expect("the marker notification arrives")
            .expect("LISTEN works");
        match n.payload() {
            "" => wake_ups += 1,
            p if p == marker => return wake_ups,
            other => panic!("unexpected notification {other:?}"),
        }
    }
}

/// A full notification queue fails the commit of a transaction that notified, so the wake-up is
/// skipped once the queue is past its limit (half by default; `stagecast.notify_queue_limit`
/// lowers it here, since filling 8 GB is no test): the CRM's write commits, no wake-up is sent,
/// and the job is delivered by the workers' poll.
#[tokio::test]
async fn past_the_notification_queue_limit_the_wake_up_is_skipped_and_the_change_still_delivered() {
    let s = Stack::new().await;
    crm_with_customers(&s, 2).await;
    let mut listener = sqlx::postgres::PgListener::connect(&s.db.url)
        .await
        .unwrap();
    listener.listen("stagecast_jobs").await.unwrap();
    let mut crm = crm_session(&s).await;

    // Past the limit: committed, queued, not notified.
    crm_update(&mut crm, "SET stagecast.notify_queue_limit = '0'").await;
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 1").await;
    // A value that is not a number falls back to the default (half), never an error.
    crm_update(&mut crm, "SET stagecast.notify_queue_limit = 'lots'").await;
    crm_update(&mut crm, "BEGIN").await;
    crm_update(&mut crm, "UPDATE customers SET stage_id = 1 WHERE id = 2").await;
    crm_update(&mut crm, "SELECT pg_notify('stagecast_jobs', 'marker')").await;
    crm_update(&mut crm, "COMMIT").await;
    assert_eq!(
        wake_ups_before(&mut listener, "marker").await,
        1,
        "only the second change (under the default limit) woke the workers"
    );
    assert_eq!(
        scalar_i64(
            &mut crm,
            "SELECT count(*) FROM stagecast.jobs WHERE kind = 'stage_change'"
        )
        .await,
        2,
        "both changes queued"
    );
    let worker = s.start_worker();
    assert_delivered_exactly_once(&s, 2).await;
    worker.shutdown().await.unwrap();
}
