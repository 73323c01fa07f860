//! A lock held on a stagecast table hangs nothing: an admin's open transaction holding
//! `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` makes `stagecast doctor` name the session instead of
//! waiting for it, the worker's maintenance skips its tick instead of blocking, shutdown is not
//! stalled, and once the lock goes the work is delivered.

mod support;

use sqlx::Connection as _;
use sqlx::PgConnection;
use support::stack::{Stack, KEYS};
use support::wait;

const TABLES: [&str; 4] = ["jobs", "deliveries", "alerts", "job_archive"];

/// An admin session (owner rights: LOCK needs more than the admin role's SELECT) holding an
/// ACCESS EXCLUSIVE lock on `stagecast.<table>` in an open transaction. Returns the connection
/// (the lock lasts until it is rolled back or dropped) and its pid.
async fn lock(s: &Stack, table: &str) -> (PgConnection, i32) {
    let mut conn = PgConnection::connect(&s.db.url)
        .await
        .expect("admin connects");
    sqlx::raw_sql(&format!(
        "SET application_name = 'psql-admin'; BEGIN; LOCK TABLE stagecast.{table} IN ACCESS EXCLUSIVE MODE;"
    ))
    .execute(&mut conn)
    .await
    .expect("lock the table");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    (conn, pid)
}

async fn unlock(mut conn: PgConnection) {
    sqlx::raw_sql("ROLLBACK").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

/// `stagecast doctor` as the worker role. A hang would be the defect: the deadline is the
/// test's generic one, far beyond any normal run, not a timing assertion.
async fn doctor(s: &Stack) -> String {
    let mut cmd = support::process::stagecast();
    cmd.arg("doctor")
        .env("DATABASE_URL", &s.db.worker_url)
        .env("STAGECAST_META_GRAPH_URL", s.sandbox.base_url())
        .env("STAGECAST_DOCTOR_TIMEOUT", "5s")
        .env("STAGECAST_KEYS", KEYS);
    let out = tokio::time::timeout(wait::DEADLINE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("stagecast doctor hung on a locked table"))
        .expect("run stagecast doctor");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn doctor_names_the_session_locking_a_stagecast_table_instead_of_hanging() {
    let s = Stack::new().await;
    s.seed_standard().await;
    for table in TABLES {
        let (conn, pid) = lock(&s, table).await;
        let out = doctor(&s).await;
        let line = out
            .lines()
            .find(|l| l.contains(&format!("stagecast.{table} is locked by pid {pid}")))
            .unwrap_or_else(|| panic!("no lock finding for stagecast.{table} (pid {pid}):\n{out}"));
        assert!(line.contains("psql-admin"), "the application name: {line}");
        // The worker role sees another role's session state only with pg_read_all_stats.
        assert!(
            line.contains("idle in transaction") || line.contains("grant it pg_read_all_stats"),
            "the state, or why it is not shown: {line}"
        );
        assert!(line.contains("AccessExclusiveLock"), "the mode: {line}");
        unlock(conn).await;
    }
    let out = doctor(&s).await;
    assert!(
        out.lines()
            .any(|l| l.contains("Table locks") && l.contains("none")),
        "no lock finding once the locks are gone:\n{out}"
    );
}

#[tokio::test]
async fn maintenance_skips_a_locked_table_and_the_work_is_delivered_when_the_lock_goes() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let worker = s.start_worker();
    for (i, table) in TABLES.into_iter().enumerate() {
        let skipped_before = worker.stats().get(&worker.stats().maintenance_skipped);
        let (conn, _) = lock(&s, table).await;
        let customer = s
            .customer(
                i as i64 + 1,
                &format!("c{i}@example.com"),
                &format!("+551199999000{i}"),
                None,
            )
            .await;
        // With stagecast.jobs locked the CRM trigger parks the change (its own lock_timeout);
        // otherwise it is queued and the worker's write-back waits for the lock.
        s.move_to(customer, 1).await;
        wait::wait_until(
            &format!("the maintenance to skip a tick while stagecast.{table} is locked"),
            wait::DEADLINE,
            || async { worker.stats().get(&worker.stats().maintenance_skipped) > skipped_before },
        )
        .await;
        unlock(conn).await;
        wait::wait_until(
            &format!("customer {customer}'s job to be delivered and archived after stagecast.{table} was unlocked"),
            wait::DEADLINE,
            || async {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM stagecast.job_archive WHERE customer_id = $1",
                )
                .bind(customer)
                .fetch_one(s.pool())
                .await
                .unwrap()
                    == 1
            },
        )
        .await;
    }
    s.drained().await;
    assert_eq!(
        s.sandbox.accepted_events(),
        TABLES.len(),
        "one event per change, none twice"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_is_not_stalled_by_a_locked_queue() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let worker = s.start_worker();
    let (conn, _) = lock(&s, "jobs").await;
    wait::wait_until(
        "the maintenance to skip a tick while stagecast.jobs is locked",
        wait::DEADLINE,
        || async { worker.stats().get(&worker.stats().maintenance_skipped) > 0 },
    )
    .await;
    // The claim loop is blocked on the lock by now (it claims every 50 ms); the shutdown must
    // still return while the lock is held.
    tokio::time::timeout(wait::DEADLINE, worker.shutdown())
        .await
        .expect("the worker shut down while stagecast.jobs was locked")
        .unwrap();
    unlock(conn).await;
}
