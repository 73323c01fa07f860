//! The delivery ledger is read for every claimed job (issue 12, finding 6): an attempt given
//! back by a throttle or a shutdown release must not make the next claim re-send the events
//! an earlier run delivered.

mod support;

use std::time::Duration;

use stagecast_sandbox::Fault;
use support::stack::Stack;
use support::wait;

/// Stage 4 sends two events to the one pixel; with `max_batch = 1` they go in two requests.
async fn seed_two_event_stage(s: &Stack) -> i64 {
    s.seed_standard().await;
    s.exec(
        r#"INSERT INTO crm_stages (id, name, funnel_category, utm_event) VALUES (4, 'Contato', 'meio',
           '[{"platform":"facebook","event_name":"Lead"},{"platform":"facebook","event_name":"Contact"}]')"#,
    )
    .await;
    s.customer(1, "a@example.com", "+5511999990001", None).await
}

/// (status, attempts) of the customer's live job.
async fn live_job(s: &Stack, customer: i64) -> (String, i32) {
    sqlx::query_as("SELECT status, attempts FROM stagecast.jobs WHERE customer_id = $1")
        .bind(customer)
        .fetch_one(s.pool())
        .await
        .unwrap()
}

async fn archived(s: &Stack, customer: i64) -> bool {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM stagecast.job_archive WHERE customer_id = $1",
    )
    .bind(customer)
    .fetch_one(s.pool())
    .await
    .unwrap()
        == 1
}

#[tokio::test]
async fn events_delivered_before_a_throttle_are_not_sent_again_after_the_pause() {
    let s = Stack::new().await;
    let c = seed_two_event_stage(&s).await;
    // The first request goes through; Meta throttles the second.
    s.sandbox.push_fault(Fault::Pass);
    s.sandbox.push_fault(Fault::Throttle {
        code: 80004,
        subcode: Some(2446079),
        regain_minutes: None,
    });
    let mut t = s.tuning();
    t.meta.max_batch = 1;
    let worker = s.start_worker_with(t);
    s.move_to(c, 4).await;
    wait::wait_until("the job to be done", wait::DEADLINE, || archived(&s, c)).await;
    let stats = worker.shutdown().await.unwrap();

    let requests = s.sandbox.requests();
    let shape: Vec<(usize, u16)> = requests
        .iter()
        .map(|r| (r.event_ids.len(), r.status))
        .collect();
    assert_eq!(shape, [(1, 200), (1, 400), (1, 200)], "{requests:#?}");
    let (first, second) = (&requests[0].event_ids[0], &requests[1].event_ids[0]);
    assert_ne!(first, second);
    assert_eq!(
        &requests[2].event_ids[0], second,
        "only the throttled event is sent again"
    );
    assert_eq!(s.sandbox.delivered_count(first), 1);
    assert_eq!(s.sandbox.delivered_count(second), 1);
    assert_eq!(stats.get(&stats.duplicate_deliveries), 0);
    let note: Option<String> =
        sqlx::query_scalar("SELECT note FROM stagecast.job_archive WHERE customer_id = $1")
            .bind(c)
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(
        note.as_deref(),
        Some("1 delivered, 1 already delivered earlier")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_delivered_before_a_shutdown_release_are_not_sent_again() {
    let s = Stack::new().await;
    let c = seed_two_event_stage(&s).await;
    // The first request is slow, so the shutdown arrives while it is in flight: it finishes
    // during the drain, and the second is never started (released, attempt refunded).
    s.sandbox.set_latency(Duration::from_secs(3));
    let mut t = s.tuning();
    t.meta.max_batch = 1;
    t.meta.timeout = Duration::from_secs(20);
    t.worker.lease = Duration::from_secs(30);
    t.worker.drain_timeout = Duration::from_secs(25);
    let worker = s.start_worker_with(t);
    s.move_to(c, 4).await;
    wait::wait_until(
        "the first request to reach the sandbox",
        wait::DEADLINE,
        || async { !s.sandbox.requests().is_empty() },
    )
    .await;
    let stats = worker.shutdown().await.unwrap();
    assert_eq!(
        s.sandbox.requests().len(),
        1,
        "precondition: the shutdown came before the second request"
    );
    assert_eq!(s.sandbox.accepted_events(), 1);
    assert_eq!(live_job(&s, c).await, ("pending".into(), 0), "released");
    assert_eq!(
        stats.get(&stats.released_on_shutdown),
        0,
        "nothing was cut off"
    );

    s.sandbox.set_latency(Duration::ZERO);
    let mut t = s.tuning();
    t.meta.max_batch = 1;
    let worker = s.start_worker_with(t);
    wait::wait_until("the job to be done", wait::DEADLINE, || archived(&s, c)).await;
    let stats = worker.shutdown().await.unwrap();

    let requests = s.sandbox.requests();
    assert_eq!(
        requests.len(),
        2,
        "the delivered event was not sent again: {requests:#?}"
    );
    assert_ne!(requests[0].event_ids, requests[1].event_ids);
    for r in &requests {
        assert_eq!(s.sandbox.delivered_count(&r.event_ids[0]), 1);
    }
    assert_eq!(stats.get(&stats.duplicate_deliveries), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_still_queued_when_the_drain_times_out_are_not_sent_again() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let queued = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let cut_off = s.customer(2, "b@example.com", "+5511999990002", None).await;
    // Archiving a done job waits on this lock: the first job's result stays with the
    // completer, which retries it, while the drain times out on the second job's request.
    let mut locker = s.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE stagecast.job_archive IN SHARE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let mut t = s.tuning();
    t.worker.drain_timeout = Duration::from_millis(300);
    let worker = s.start_worker_with(t);
    s.move_to(queued, 1).await;
    assert!(s.sandbox.wait_for_events(1, wait::DEADLINE).await);
    let stats = worker.stats().clone();
    wait::wait_until(
        "the first result to be retried by the completer",
        wait::DEADLINE,
        || async { stats.get(&stats.write_back_errors) >= 1 },
    )
    .await;
    s.sandbox.set_latency(Duration::from_secs(3));
    s.move_to(cut_off, 1).await;
    wait::wait_until(
        "the second request to be in flight",
        wait::DEADLINE,
        || async { s.sandbox.requests().len() == 2 },
    )
    .await;
    let stats = worker.shutdown().await.unwrap();
    assert_eq!(
        stats.get(&stats.released_on_shutdown),
        2,
        "both given back at exit"
    );
    locker.rollback().await.unwrap();

    s.sandbox.set_latency(Duration::ZERO);
    let worker = s.start_worker();
    wait::wait_until("both jobs to be done", wait::DEADLINE, || async {
        archived(&s, queued).await && archived(&s, cut_off).await
    })
    .await;
    worker.shutdown().await.unwrap();
    let requests = s.sandbox.requests();
    let first = &requests[0].event_ids[0];
    assert_eq!(
        s.sandbox.delivered_count(first),
        1,
        "the delivered event whose result was still queued is not sent again: {requests:#?}"
    );
    // The request cut off by the drain timeout reached Meta unbeknown to the worker: that one
    // is sent again (docs/operations.md, Shutdown), with the same event_id.
    let second = &requests[1].event_ids[0];
    assert!(s.sandbox.delivered_count(second) >= 1);
}

/// A true duplicate (the same customer, stage and time) queued again by the CRM.
async fn enqueue_change(
    s: &Stack,
    customer: i64,
    stage: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> i32 {
    sqlx::query_scalar("SELECT stagecast.enqueue_stage_change($1, $2, NULL, $3)")
        .bind(customer)
        .bind(stage)
        .bind(at)
        .fetch_one(s.crm())
        .await
        .unwrap_or_else(|e| panic!("the CRM's call failed: {e}"))
}

/// (id, note) of the customer's archived jobs, oldest first.
async fn archived_jobs(s: &Stack, customer: i64) -> Vec<(i64, Option<String>)> {
    sqlx::query_as("SELECT id, note FROM stagecast.job_archive WHERE customer_id = $1 ORDER BY id")
        .bind(customer)
        .fetch_all(s.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_true_duplicate_queued_after_the_first_job_finished_is_not_sent_again() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    // A CRM queueing through the SQL API, granted as docs/crm-integration.md ("Who may call
    // the enqueue functions") says.
    s.exec(&format!(
        "GRANT USAGE ON SCHEMA stagecast TO \"{crm}\";
         GRANT EXECUTE ON FUNCTION stagecast.enqueue_stage_change(bigint, bigint, bigint, timestamptz) TO \"{crm}\";",
        crm = s.db.roles.crm
    ))
    .await;
    let at = chrono::Utc::now() - chrono::Duration::hours(1);
    let worker = s.start_worker();
    assert_eq!(enqueue_change(&s, c, 1, at).await, 1, "the first job");
    wait::wait_until("the first job to be done", wait::DEADLINE, || async {
        archived_jobs(&s, c).await.len() == 1
    })
    .await;
    // The first job left the hot table, so the pending-dedup index no longer coalesces it: a
    // second job with the same deterministic event id.
    assert_eq!(enqueue_change(&s, c, 1, at).await, 1, "a second job");
    wait::wait_until("the second job to be done", wait::DEADLINE, || async {
        archived_jobs(&s, c).await.len() == 2
    })
    .await;
    worker.shutdown().await.unwrap();

    let requests = s.sandbox.requests();
    assert_eq!(
        requests.len(),
        1,
        "one request, none for the duplicate: {requests:#?}"
    );
    let jobs = archived_jobs(&s, c).await;
    let (first, second) = (jobs[0].0, jobs[1].1.clone().unwrap_or_default());
    assert!(
        second.contains(&format!("already delivered by job {first}")),
        "the second job says who delivered its event: {second:?}"
    );
}
