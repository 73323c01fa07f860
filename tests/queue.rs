//! The queue core against a real Postgres: leasing, fencing, write-back outcomes, bulk
//! expansion, enqueue that never fails the CRM write, retention, wake-up and shutdown.

mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use stagecast::store::{OutcomeRow, Retention, WriteBack};
use support::stack::Stack;
use support::wait::{wait_until, DEADLINE};

/// `n` no-op jobs put straight into the queue as the superuser: no role inserts arbitrary jobs
/// (the CRM queues stage changes through its triggers), and these tests exercise the queue alone.
async fn insert_jobs(s: &Stack, n: i64) {
    sqlx::query("INSERT INTO stagecast.jobs (kind, payload) SELECT 'noop', jsonb_build_object('n', g) FROM generate_series(1, $1::bigint) g")
        .bind(n)
        .execute(s.pool())
        .await
        .unwrap();
}

fn outcome(
    id: i64,
    attempt: i32,
    outcome: &'static str,
    run_at: Option<chrono::DateTime<chrono::Utc>>,
) -> WriteBack {
    WriteBack {
        outcomes: vec![OutcomeRow {
            id,
            attempt,
            outcome,
            run_at,
            error: Some(format!("test {outcome}")),
            destinations: None,
        }],
        ..WriteBack::default()
    }
}

#[tokio::test]
async fn claims_respect_the_limit_and_never_hand_a_job_to_two_workers() {
    let s = Stack::new().await;
    insert_jobs(&s, 10).await;
    let a = s.store.claim_jobs(4, "worker-a", 30.0).await.unwrap();
    let b = s.store.claim_jobs(100, "worker-b", 30.0).await.unwrap();
    assert_eq!(a.len(), 4);
    assert_eq!(b.len(), 6);
    let ids: HashSet<i64> = a.iter().chain(&b).map(|j| j.id).collect();
    assert_eq!(ids.len(), 10, "no job claimed twice");
    assert!(a.iter().chain(&b).all(|j| j.attempts == 1 && !j.rescued));
    assert!(s
        .store
        .claim_jobs(10, "worker-c", 30.0)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_expired_lease_is_rescued_and_the_stale_worker_is_fenced_out() {
    let s = Stack::new().await;
    insert_jobs(&s, 1).await;
    let a = s
        .store
        .claim_jobs(1, "worker-a", 30.0)
        .await
        .unwrap()
        .remove(0);
    // worker-a stalls past its lease (the superuser moves the clock on).
    s.exec("UPDATE stagecast.jobs SET locked_until = now() - interval '1 second'")
        .await;
    let b = s
        .store
        .claim_jobs(1, "worker-b", 30.0)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(b.id, a.id);
    assert!(b.rescued);
    assert_eq!(b.attempts, 2, "the lost attempt counts");
    // worker-a comes back and reports: ignored.
    let report = s
        .store
        .write_back("worker-a", &outcome(a.id, a.attempts, "done", None))
        .await
        .unwrap();
    assert_eq!((report.applied, report.fenced_out), (0, 1));
    let status: String = sqlx::query_scalar("SELECT status FROM stagecast.jobs WHERE id = $1")
        .bind(a.id)
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(status, "running");
    // worker-b's result counts; the job moves to the archive.
    let report = s
        .store
        .write_back("worker-b", &outcome(b.id, b.attempts, "done", None))
        .await
        .unwrap();
    assert_eq!(report.applied, 1);
    let archived: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stagecast.job_archive WHERE id = $1")
            .bind(a.id)
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(archived, 1);
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM stagecast.jobs")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(live, 0, "done jobs leave the hot table");
}

#[tokio::test]
async fn the_heartbeat_skips_a_row_held_elsewhere_and_names_it_instead_of_waiting() {
    let s = Stack::new().await;
    insert_jobs(&s, 4).await;
    let jobs = s.store.claim_jobs(4, "w", 30.0).await.unwrap();
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
    let (held, excluded, shared) = (ids[0], ids[1], ids[2]);
    // Another session holds one row as an admin's SELECT ... FOR UPDATE does, and only shares
    // the key of another (as inserting a row that references it does).
    let mut locker = s.pool().begin().await.unwrap();
    sqlx::query("SELECT id FROM stagecast.jobs WHERE id = $1 FOR UPDATE")
        .bind(held)
        .execute(&mut *locker)
        .await
        .unwrap();
    sqlx::query("SELECT id FROM stagecast.jobs WHERE id = $1 FOR KEY SHARE")
        .bind(shared)
        .execute(&mut *locker)
        .await
        .unwrap();
    let until = || async {
        let rows: Vec<(i64, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as("SELECT id, locked_until FROM stagecast.jobs ORDER BY id")
                .fetch_all(s.pool())
                .await
                .unwrap();
        rows.into_iter()
            .collect::<std::collections::HashMap<_, _>>()
    };
    let before = until().await;
    // The lock is held until the rollback below: a beat that waited on it would fail at its
    // own 1 s lock bound (the outer bound only keeps the test from hanging).
    let beat = tokio::time::timeout(
        Duration::from_secs(5),
        s.store
            .extend_leases("w", 120.0, &[excluded], Duration::from_secs(1)),
    )
    .await
    .expect("the beat does not wait on the held row")
    .expect("the beat succeeds");
    assert_eq!(
        beat.skipped,
        vec![held],
        "only the held row, not the excluded one"
    );
    assert_eq!(beat.extended, 2);
    let after = until().await;
    assert_eq!(
        after[&held], before[&held],
        "the held row's lease is not extended"
    );
    assert_eq!(after[&excluded], before[&excluded]);
    for id in [shared, ids[3]] {
        assert!(after[&id] > before[&id], "job {id} is extended");
    }
    locker.rollback().await.unwrap();
    let beat = s
        .store
        .extend_leases("w", 120.0, &[], Duration::from_secs(1))
        .await
        .unwrap();
    assert!(beat.skipped.is_empty());
    assert_eq!(beat.extended, 4);
}

#[tokio::test]
async fn write_back_schedules_retries_refunds_throttled_attempts_and_fails() {
    let s = Stack::new().await;
    insert_jobs(&s, 3).await;
    let jobs = s.store.claim_jobs(3, "w", 30.0).await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::minutes(5);
    let mut wb = WriteBack::default();
    wb.append(outcome(jobs[0].id, 1, "retry", Some(later)));
    wb.append(outcome(jobs[1].id, 1, "throttled", Some(later)));
    wb.append(outcome(jobs[2].id, 1, "failed", None));
    assert_eq!(s.store.write_back("w", &wb).await.unwrap().applied, 3);
    let rows: Vec<(i64, String, i32, bool, Option<String>, bool)> = sqlx::query_as(
        "SELECT id, status, attempts, run_at > now() + interval '4 minutes', last_error, finished_at IS NOT NULL \
         FROM stagecast.jobs ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    let by_id = |id: i64| rows.iter().find(|r| r.0 == id).unwrap().clone();
    assert_eq!(
        by_id(jobs[0].id),
        (
            jobs[0].id,
            "pending".into(),
            1,
            true,
            Some("test retry".into()),
            false
        )
    );
    assert_eq!(
        by_id(jobs[1].id),
        (
            jobs[1].id,
            "pending".into(),
            0,
            true,
            Some("test throttled".into()),
            false
        )
    );
    let failed = by_id(jobs[2].id);
    assert_eq!((failed.1.as_str(), failed.5), ("failed", true));
    // Scheduled retries are not claimable before their time.
    assert!(s.store.claim_jobs(10, "w", 30.0).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_bulk_update_queues_one_batch_job_expanded_into_deduplicated_jobs() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(r#"INSERT INTO crm_stages (id, name, utm_event) VALUES (9, 'Sem eventos', '[]')"#)
        .await;
    for id in 1..=5 {
        s.customer(id, &format!("c{id}@example.com"), "+5511999990000", None)
            .await;
    }
    // Customer 1 already has a live job for stage 1.
    s.move_to(1, 1).await;
    s.crm_exec("UPDATE customers SET stage_id = 1 WHERE id BETWEEN 1 AND 5")
        .await;
    let kinds: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, count(*) FROM stagecast.jobs GROUP BY kind ORDER BY kind")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(
        kinds,
        vec![("stage_change".into(), 1), ("stage_change_batch".into(), 1)]
    );
    // A bulk move to a stage without events is expanded into nothing.
    s.crm_exec("UPDATE customers SET stage_id = 9 WHERE id BETWEEN 2 AND 5")
        .await;
    // Keep customer 1's job waiting (not claimed) so it is still pending when the batch expands
    // (the superuser reschedules it; nothing in production does).
    s.exec(
        "UPDATE stagecast.jobs SET run_at = now() + interval '1 hour' WHERE kind = 'stage_change'",
    )
    .await;
    let batches = s.store.claim_jobs(10, "w", 30.0).await.unwrap();
    assert_eq!(batches.len(), 2, "only the two batch jobs are due");
    let mut created = Vec::new();
    for j in batches.iter().filter(|j| j.kind == "stage_change_batch") {
        created.push(
            s.store
                .expand_stage_change_batch(j.id, "w", j.attempts, 0, 30.0)
                .await
                .unwrap()
                .map(|e| e.created),
        );
    }
    created.sort();
    // Customers 2-5 moved to stage 1 (customer 1 was already queued), and nothing for stage 9.
    assert_eq!(created, vec![Some(0), Some(4)]);
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stagecast.jobs WHERE kind = 'stage_change' AND status = 'pending'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(
        live, 5,
        "four expanded jobs plus customer 1's own, not duplicated"
    );
    // A stale worker cannot expand a batch it no longer holds.
    assert_eq!(
        s.store
            .expand_stage_change_batch(batches[0].id, "other", 1, 0, 30.0)
            .await
            .unwrap()
            .map(|e| e.created),
        None
    );
}

#[tokio::test]
async fn the_crm_write_succeeds_even_when_queueing_fails_and_nothing_is_lost() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.customer(1, "a@example.com", "+5511999990001", None).await;
    // Break the queue table for stage changes (disk full, broken permissions...), as the
    // superuser: fault injection.
    s.exec("ALTER TABLE stagecast.jobs ADD CONSTRAINT broken CHECK (kind <> 'stage_change')")
        .await;
    s.move_to(1, 1).await; // must not fail
    let stage: i64 = sqlx::query_scalar("SELECT stage_id FROM customers WHERE id = 1")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(stage, 1, "the CRM's write committed");
    let parked: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, error FROM stagecast.enqueue_failures")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(parked.len(), 1);
    assert!(parked[0].1.contains("broken"), "{parked:?}");
    // Once the problem is fixed, the worker's maintenance re-queues it.
    s.exec("ALTER TABLE stagecast.jobs DROP CONSTRAINT broken")
        .await;
    assert_eq!(s.store.requeue_enqueue_failures().await.unwrap(), (1, 1));
    let payload: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM stagecast.jobs WHERE kind = 'stage_change'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(payload["customer_id"], 1);
    assert_eq!(payload["to_stage_id"], 1);
}

#[tokio::test]
async fn retention_prunes_old_finished_work_only() {
    let s = Stack::new().await;
    insert_jobs(&s, 3).await;
    let jobs = s.store.claim_jobs(3, "w", 30.0).await.unwrap();
    let mut wb = WriteBack::default();
    wb.append(outcome(jobs[0].id, 1, "done", None));
    wb.append(outcome(jobs[1].id, 1, "failed", None));
    s.store.write_back("w", &wb).await.unwrap();
    // Age the finished work (as the superuser: only time does that in production).
    s.exec("UPDATE stagecast.job_archive SET finished_at = now() - interval '2 days'")
        .await;
    let retention = Retention {
        done: Duration::from_secs(24 * 3600),
        failed: Duration::from_secs(24 * 3600),
        audit: Duration::from_secs(24 * 3600),
    };
    let report = s.store.prune(&retention, 100).await.unwrap();
    assert_eq!(
        (report.archive, report.dead),
        (1, 0),
        "the recent failure is kept"
    );
    s.exec(
        "UPDATE stagecast.jobs SET finished_at = now() - interval '2 days' WHERE status = 'failed'",
    )
    .await;
    assert_eq!(s.store.prune(&retention, 100).await.unwrap().dead, 1);
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stagecast.jobs WHERE status = 'running'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(running, 1, "live work is never pruned");
}

/// Rows of `table` matching `filter` (a SQL condition).
async fn count(s: &Stack, table: &str, filter: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {filter}"))
        .fetch_one(s.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_maintenance_loop_prunes_old_deliveries_alerts_and_jobs_but_never_the_admin_audit() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let delivered = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let alerted = s.customer(2, "b@example.com", "+5511999990002", None).await;
    s.crm_exec("UPDATE customers SET utm_campaign_id = NULL WHERE id = 2")
        .await;
    let mut t = s.tuning();
    t.worker.retention = Retention {
        done: Duration::from_secs(24 * 3600),
        failed: Duration::from_secs(24 * 3600),
        audit: Duration::from_secs(24 * 3600),
    };
    let worker = s.start_worker_with(t);
    // Real history: a delivery (audit row, archived job), an alert (and its chat message) on a
    // failed job, and an admin replay of that job (it fails again: still no campaign).
    s.move_to(delivered, 1).await;
    s.move_to(alerted, 1).await;
    s.drained().await;
    s.admin_exec("SELECT stagecast.replay_job(id, 'tester', 'retention test') FROM stagecast.jobs WHERE status = 'failed'")
        .await;
    s.drained().await;
    assert_eq!(count(&s, "stagecast.admin_audit", "true").await, 1);
    assert_eq!(count(&s, "stagecast.alerts", "true").await, 1);

    // Everything of it becomes two days old; the admin audit even a year old (as the superuser:
    // only time does that in production).
    s.exec(
        "UPDATE stagecast.deliveries SET created_at = now() - interval '2 days';
         UPDATE stagecast.alerts SET created_at = now() - interval '2 days';
         UPDATE stagecast.job_archive SET finished_at = now() - interval '2 days';
         UPDATE stagecast.jobs SET finished_at = now() - interval '2 days' WHERE status = 'failed';
         UPDATE stagecast.admin_audit SET at = now() - interval '400 days';",
    )
    .await;
    // And a fresh delivery, which must stay.
    let fresh = s.customer(3, "c@example.com", "+5511999990003", None).await;
    s.move_to(fresh, 1).await;
    s.drained().await;

    wait_until(
        "the maintenance loop to prune what is older than the retention",
        DEADLINE,
        || async {
            let old = "now() - interval '1 day'";
            count(&s, "stagecast.deliveries", &format!("created_at < {old}")).await == 0
                && count(&s, "stagecast.alerts", &format!("created_at < {old}")).await == 0
                && count(&s, "stagecast.job_archive", &format!("finished_at < {old}")).await == 0
                && count(&s, "stagecast.jobs", "status = 'failed'").await == 0
        },
    )
    .await;
    worker.shutdown().await.unwrap();

    assert_eq!(
        count(&s, "stagecast.admin_audit", "true").await,
        1,
        "retention never prunes the admin audit"
    );
    assert_eq!(
        count(&s, "stagecast.deliveries", "outcome = 'delivered'").await,
        1,
        "the fresh delivery is kept"
    );
    assert_eq!(s.jobs_of(fresh).await[0].0, "done", "and its archived job");
    assert_eq!(
        s.chat_alerts(alerted).await.len(),
        1,
        "the chat message of a pruned alert stays in the CRM"
    );
}

#[tokio::test]
async fn a_notification_wakes_an_idle_worker_long_before_its_poll() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let mut t = s.tuning();
    // Far beyond the deadline below: only the NOTIFY can make the worker claim in time.
    t.worker.poll_interval = Duration::from_secs(3600);
    let worker = s.start_worker_with(t);
    let stats = worker.stats().clone();
    // LISTEN connected, and the producer back to its idle wait after the wake-up the listener
    // gives it on connecting (for jobs queued before LISTEN took effect): its second idle wait.
    // From there nothing but a notification (or the hour-long poll) makes it claim.
    wait_until("LISTEN connected and the worker idle", DEADLINE, || async {
        stats.listener_connected.load(Ordering::Relaxed)
            && stats.idle_waits.load(Ordering::Relaxed) >= 2
    })
    .await;
    let idle_before = stats.idle_waits.load(Ordering::Relaxed);
    s.move_to(c, 1).await;
    assert!(
        s.sandbox.wait_for_events(1, DEADLINE).await,
        "delivered well before the hour-long poll: the NOTIFY woke the worker"
    );
    assert_eq!(
        idle_before, 2,
        "the worker had not claimed again before the notification"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_in_flight_work_or_releases_it_after_the_drain_timeout() {
    // Drain: the in-flight request completes and its result is written back.
    let s = Stack::new().await;
    s.seed_standard().await;
    s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.sandbox.hold_answers();
    let worker = s.start_worker();
    s.move_to(1, 1).await;
    assert!(
        s.sandbox.wait_for_in_flight(1, DEADLINE).await,
        "the request is in flight"
    );
    // Shutdown first, then Meta answers: the drain waits for it.
    worker.shutdown_token().cancel();
    s.sandbox.release_answers();
    let stats = worker.wait().await.unwrap();
    assert_eq!(stats.get(&stats.released_on_shutdown), 0);
    assert_eq!(s.jobs_of(1).await[0].0, "done");
    assert_eq!(s.sandbox.accepted_events(), 1);

    // Release: the answer never comes, so the drain timeout passes; the job goes back to
    // pending, attempt refunded.
    let s = Stack::new().await;
    s.seed_standard().await;
    s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.sandbox.hold_answers();
    let mut t = s.tuning();
    t.worker.drain_timeout = Duration::from_millis(200);
    let worker = s.start_worker_with(t);
    s.move_to(1, 1).await;
    assert!(
        s.sandbox.wait_for_in_flight(1, DEADLINE).await,
        "the request is in flight"
    );
    let stats = worker.shutdown().await.unwrap();
    assert_eq!(stats.get(&stats.released_on_shutdown), 1);
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM stagecast.jobs WHERE customer_id = 1")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    s.sandbox.release_answers();
}
