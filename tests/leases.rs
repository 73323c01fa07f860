//! Leases under production conditions (issue 12, finding 7; issue 13, item 6): a worker whose
//! heartbeat cannot extend its leases stops sending for those jobs and leaves them to a rescue,
//! which sends each event once; a row held by another transaction costs the heartbeat only that
//! job's lease, not every lease of the worker; a healthy heartbeat keeps a job that outlives its
//! lease from being rescued; contradictory lease and timeout settings are refused at start.

mod support;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use support::stack::{Stack, Tuning};
use support::wait;

/// Stage 5 sends five events to the one pixel; with `max_batch = 1` each is its own request.
async fn seed_five_event_stage(s: &Stack) -> i64 {
    s.seed_standard().await;
    s.exec(
        r#"INSERT INTO crm_stages (id, name, funnel_category, utm_event) VALUES (5, 'Agendou', 'meio',
           '[{"platform":"facebook","event_name":"Lead"},{"platform":"facebook","event_name":"Contact"},
             {"platform":"facebook","event_name":"Schedule"},{"platform":"facebook","event_name":"SubmitApplication"},
             {"platform":"facebook","event_name":"CompleteRegistration"}]')"#,
    )
    .await;
    s.customer(1, "a@example.com", "+5511999990001", None).await
}

/// A short lease with a heartbeat and request timeout that fit in it (the settings rules of
/// docs/operations.md): 3 s lease, a beat every 500 ms, requests of at most 1 s.
fn short_lease(s: &Stack) -> Tuning {
    let mut t = s.tuning();
    t.worker.lease = Duration::from_secs(3);
    t.worker.heartbeat_interval = Some(Duration::from_millis(500));
    t.meta.timeout = Duration::from_secs(1);
    t.meta.max_batch = 1;
    t
}

/// A job's (status, attempts) in the hot table.
async fn job_state(s: &Stack, id: i64) -> (String, i32) {
    sqlx::query_as("SELECT status, attempts FROM stagecast.jobs WHERE id = $1")
        .bind(id)
        .fetch_one(s.pool())
        .await
        .unwrap()
}

/// The attempts of a customer's archived (finished) job.
async fn archived_attempts(s: &Stack, customer: i64) -> i32 {
    sqlx::query_scalar("SELECT attempts FROM stagecast.job_archive WHERE customer_id = $1")
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

/// How many times each event id reached the sandbox, over all requests (accepted or not).
fn sends(s: &Stack) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for r in s.sandbox.requests() {
        for id in r.event_ids {
            *n.entry(id).or_default() += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_heartbeat_is_blocked_stops_sending_and_a_rescue_delivers_each_event_once() {
    let s = Stack::new().await;
    let c = seed_five_event_stage(&s).await;
    // One request per second: the job needs about five seconds.
    let mut t = short_lease(&s);
    t.meta.requests_per_second = NonZeroU32::new(1).unwrap();
    t.meta.burst = NonZeroU32::new(1).unwrap();
    let stuck = s.start_worker_with(t);
    s.move_to(c, 5).await;
    assert!(s.sandbox.wait_for_events(1, wait::DEADLINE).await);

    // Another session locks the job rows (an admin's open transaction, a long migration): the
    // heartbeat skips them and cannot extend the lease, and a rescuing claim skips them too.
    let mut locker = s.pool().begin().await.unwrap();
    let locked: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM stagecast.jobs WHERE status = 'running' FOR UPDATE")
            .fetch_all(&mut *locker)
            .await
            .unwrap();
    assert_eq!(locked.len(), 1);
    let stats = stuck.stats().clone();
    wait::wait_until(
        "the worker to give the job up for lost",
        wait::DEADLINE,
        || async { stats.get(&stats.lease_lost_jobs) >= 1 },
    )
    .await;
    let sent_by_stuck = s.sandbox.requests().len();
    assert!(
        sent_by_stuck < 5,
        "it stopped before the end ({sent_by_stuck} of 5)"
    );
    // Nothing is sent for the job while its lease is in doubt (no other worker can have it:
    // the rows are locked).
    // (The given-up job is no longer heart-beaten: it is excluded, not even skipped.)
    let beats = || stats.get(&stats.heartbeats) + stats.get(&stats.heartbeat_failures);
    let before = beats();
    wait::wait_until("two more heartbeats", wait::DEADLINE, || async {
        beats() >= before + 2
    })
    .await;
    assert_eq!(
        s.sandbox.requests().len(),
        sent_by_stuck,
        "no request after the lease lapsed"
    );
    // Nothing was written for the job but the ledger of what it delivered.
    let (status, attempts) = job_state(&s, locked[0]).await;
    assert_eq!((status.as_str(), attempts), ("running", 1));
    wait::wait_until(
        "what it delivered to reach the ledger",
        wait::DEADLINE,
        || async {
            let ledger: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM stagecast.deliveries WHERE job_id = $1 AND outcome = 'delivered'",
        )
        .bind(locked[0])
        .fetch_one(s.pool())
        .await
        .unwrap();
            ledger as usize == sent_by_stuck
        },
    )
    .await;

    // The lock goes; the stuck worker's heartbeat works again but leaves the given-up job's
    // lease to run out, so a claim (another worker's, or its own) rescues it and sends only
    // what the ledger does not show as delivered.
    locker.rollback().await.unwrap();
    let rescuer = s.start_worker_with(short_lease(&s));
    wait::wait_until("the rescued job to be done", wait::DEADLINE, || {
        archived(&s, c)
    })
    .await;
    let (stuck, rescuer) = (
        stuck.shutdown().await.unwrap(),
        rescuer.shutdown().await.unwrap(),
    );
    assert_eq!(stuck.get(&stuck.rescued) + rescuer.get(&rescuer.rescued), 1);
    let sends = sends(&s);
    assert_eq!(sends.len(), 5, "{sends:?}");
    assert!(
        sends.values().all(|&n| n == 1),
        "each event sent once: {sends:?}"
    );
    assert_eq!(
        stuck.get(&stuck.duplicate_deliveries) + rescuer.get(&rescuer.duplicate_deliveries),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_a_job_that_outlives_its_lease_from_being_rescued() {
    let s = Stack::new().await;
    let c = seed_five_event_stage(&s).await;
    // Five slow requests one after the other: the job takes well over its 3 s lease. Requests
    // may take up to 1.9 s, the most a 3 s lease with a beat every 500 ms allows.
    s.sandbox.set_latency(Duration::from_millis(800));
    let mut t = short_lease(&s);
    t.meta.timeout = Duration::from_millis(1900);
    let a = s.start_worker_with(t.clone());
    let b = s.start_worker_with(t);
    s.move_to(c, 5).await;
    wait::wait_until("the job to be done", wait::DEADLINE, || archived(&s, c)).await;
    let (a, b) = (a.shutdown().await.unwrap(), b.shutdown().await.unwrap());

    let requests = s.sandbox.requests();
    assert_eq!(requests.len(), 5);
    let span = requests[4].received_at - requests[0].received_at;
    assert!(
        span >= chrono::Duration::milliseconds(3200),
        "precondition: the job outlived its lease ({span})"
    );
    assert_eq!(a.get(&a.rescued) + b.get(&b.rescued), 0, "never rescued");
    assert_eq!(a.get(&a.lease_lost_jobs) + b.get(&b.lease_lost_jobs), 0);
    assert!(sends(&s).values().all(|&n| n == 1));
    let attempts = archived_attempts(&s, c).await;
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn contradictory_lease_and_timeout_settings_are_refused_naming_both_flags() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_stagecast"))
        .env_clear()
        .args(["run", "--lease", "5s", "--meta-timeout", "10s"])
        // Never reached: the settings are checked before connecting.
        .args(["--database-url", "postgres://stagecast@127.0.0.1:1/none"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--lease") && stderr.contains("--meta-timeout"),
        "{stderr}"
    );
    assert!(stderr.contains("raise --lease"), "a fix is named: {stderr}");
    assert!(!stderr.contains("could not connect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_lock_on_one_job_costs_the_heartbeat_only_that_jobs_lease() {
    let s = Stack::new().await;
    let a = seed_five_event_stage(&s).await;
    let b = s.customer(2, "b@example.com", "+5511999990002", None).await;
    // Ten events at one request per second: both jobs run for several leases of 3 s.
    let mut t = short_lease(&s);
    t.meta.requests_per_second = NonZeroU32::new(1).unwrap();
    t.meta.burst = NonZeroU32::new(1).unwrap();
    s.move_to(a, 5).await;
    s.move_to(b, 5).await;
    let worker = s.start_worker_with(t);
    let stats = worker.stats().clone();
    wait::wait_until("both jobs to be running", wait::DEADLINE, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM stagecast.jobs WHERE status = 'running'")
            .fetch_one(s.pool())
            .await
            .unwrap()
            == 2
    })
    .await;
    assert!(s.sandbox.wait_for_events(1, wait::DEADLINE).await);

    // An admin's session holds b's job row (SELECT ... FOR UPDATE, left open) through several
    // leases: the heartbeat must not wait on it, so a's lease stays held and a is delivered.
    let mut locker = s.pool().begin().await.unwrap();
    let locked: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM stagecast.jobs WHERE customer_id = $1 AND status = 'running' FOR UPDATE",
    )
    .bind(b)
    .fetch_all(&mut *locker)
    .await
    .unwrap();
    assert_eq!(locked.len(), 1);
    let beats = stats.get(&stats.heartbeats);
    wait::wait_until(
        "a to be delivered while b's row is locked",
        wait::DEADLINE,
        || archived(&s, a),
    )
    .await;
    // a was delivered on its first lease (its own claim, extended by every beat), not given up
    // with b's and rescued.
    let a_attempts = archived_attempts(&s, a).await;
    assert_eq!(a_attempts, 1);
    assert_eq!(stats.get(&stats.rescued), 0);
    // b's lease was not extended: once it might have lapsed, b is given up (nothing more is
    // sent for it by this worker), and only b.
    wait::wait_until(
        "b to be given up, and beats over more than a lease",
        wait::DEADLINE,
        || async {
            stats.get(&stats.lease_lost_jobs) >= 1 && stats.get(&stats.heartbeats) >= beats + 8
        },
    )
    .await;
    assert_eq!(
        stats.get(&stats.heartbeat_failures),
        0,
        "no beat waited on the lock"
    );
    assert!(
        stats.get(&stats.heartbeat_skipped) >= 1,
        "b's row was skipped"
    );
    assert_eq!(
        stats.get(&stats.lease_lost_jobs),
        1,
        "only b's lease is in doubt"
    );
    let (status, attempts) = job_state(&s, locked[0]).await;
    assert_eq!((status.as_str(), attempts), ("running", 1));

    // The lock goes: b's lease runs out (no longer extended) and a claim rescues it, sending
    // what the ledger does not show as delivered, with the same event ids.
    locker.rollback().await.unwrap();
    wait::wait_until("b to be done", wait::DEADLINE, || archived(&s, b)).await;
    let stats = worker.shutdown().await.unwrap();
    assert_eq!(stats.get(&stats.rescued), 1, "b, once");
    assert_eq!(stats.get(&stats.heartbeat_failures), 0);
    assert_eq!(stats.get(&stats.duplicate_deliveries), 0);
    let sends = sends(&s);
    assert_eq!(sends.len(), 10, "five events each: {sends:?}");
    assert!(
        sends.values().all(|&n| n == 1),
        "each event sent once: {sends:?}"
    );
}

/// The heartbeat has a connection of its own: while every connection of the pool the worker's
/// batches share is taken (a burst of claims, contexts and write-backs), its beats still answer
/// in time and no lease becomes doubtful. On the shared pool each beat waited for a connection
/// past its bound and failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_answers_while_every_pooled_connection_is_taken() {
    let s = Stack::new().await;
    let a = seed_five_event_stage(&s).await;
    // Five events at one request per second: the job runs for several beats.
    let mut t = short_lease(&s);
    t.meta.requests_per_second = NonZeroU32::new(1).unwrap();
    t.meta.burst = NonZeroU32::new(1).unwrap();
    s.move_to(a, 5).await;
    let worker = s.start_worker_with(t);
    let stats = worker.stats().clone();
    assert!(s.sandbox.wait_for_events(1, wait::DEADLINE).await);

    // The worker's pool (its role's): every connection it will give (the worker keeps some
    // for itself: LISTEN, its liveness lock).
    let pool = s.store.pool();
    let mut taken = Vec::new();
    while let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(300), pool.acquire()).await {
        taken.push(c);
    }
    assert!(!taken.is_empty());
    let (beats, failures) = (
        stats.get(&stats.heartbeats),
        stats.get(&stats.heartbeat_failures),
    );
    wait::wait_until(
        "four beats while the pool has no connection free",
        wait::DEADLINE,
        || async { stats.get(&stats.heartbeats) >= beats + 4 },
    )
    .await;
    assert_eq!(stats.get(&stats.heartbeat_failures), failures);
    drop(taken);

    wait::wait_until("the job to be delivered", wait::DEADLINE, || {
        archived(&s, a)
    })
    .await;
    worker.shutdown().await.unwrap();
    let attempts = archived_attempts(&s, a).await;
    assert_eq!(attempts, 1, "delivered on its first lease");
    assert_eq!(stats.get(&stats.lease_lost_jobs), 0);
    assert_eq!(s.sandbox.accepted_events(), 5, "each event once");
}

/// The heartbeat does not share the worker's threads: while a batch's CPU work holds them
/// (here a blocking sleep on the test's one-thread runtime, where the worker runs), beats still
/// go out. On the worker's runtime a beat waited behind such work, which tokio cannot pre-empt,
/// and every lease of the worker went into doubt on a loaded host.
#[tokio::test]
async fn beats_go_out_while_the_workers_runtime_is_busy() {
    let s = Stack::new().await;
    let worker = s.start_worker_with(short_lease(&s));
    let stats = worker.stats().clone();
    wait::wait_until("a first beat", wait::DEADLINE, || async {
        stats.get(&stats.heartbeats) >= 1
    })
    .await;
    let during = tokio::spawn({
        let stats = stats.clone();
        async move {
            let before = stats.get(&stats.heartbeats);
            // Blocks the runtime's only thread, as CPU-bound work between two awaits does.
            std::thread::sleep(Duration::from_secs(3));
            stats.get(&stats.heartbeats) - before
        }
    })
    .await
    .unwrap();
    assert!(
        during >= 2,
        "{during} beats in 3 s of a busy runtime (one every 500 ms)"
    );
    worker.shutdown().await.unwrap();
}

/// A write-back in flight holds the row locks of the jobs it finishes until it commits: the
/// heartbeat leaves those rows out instead of waiting on them. It waited, timed out, and every
/// lease of the worker became doubtful: a whole claimed batch was given up unsent (a bulk
/// change's 250 jobs in tests/bounded_memory.rs). The write-back here is held up by a
/// superuser's uncommitted archive row with the job's id, which its insert must wait for after
/// it has deleted the job's row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_does_not_wait_on_the_rows_of_a_write_back_in_flight() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.move_to(c, 1).await;
    let job: i64 = sqlx::query_scalar("SELECT id FROM stagecast.jobs WHERE customer_id = $1")
        .bind(c)
        .fetch_one(s.pool())
        .await
        .unwrap();
    let mut blocker = s.pool().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO stagecast.job_archive (id, kind, payload, attempts, created_at) \
         VALUES ($1, 'stage_change', '{}', 0, now())",
    )
    .bind(job)
    .execute(&mut *blocker)
    .await
    .unwrap();
    let worker = s.start_worker();
    assert!(s.sandbox.wait_for_events(1, wait::DEADLINE).await);
    wait::wait_until(
        "the write-back to wait with the job's row locked",
        wait::DEADLINE,
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                  AND query LIKE '-- Write back a batch of outcomes%' AND wait_event_type = 'Lock'",
            )
            .fetch_one(s.pool())
            .await
            .unwrap()
                > 0
        },
    )
    .await;
    let stats = worker.stats().clone();
    let failed_before = stats.get(&stats.heartbeat_failures);
    let beats = || stats.get(&stats.heartbeats) + stats.get(&stats.heartbeat_failures);
    let before = beats();
    wait::wait_until("three more beats", wait::DEADLINE, || async {
        beats() >= before + 3
    })
    .await;
    assert_eq!(
        stats.get(&stats.heartbeat_failures),
        failed_before,
        "no beat waited on the rows of the write-back in flight"
    );
    blocker.rollback().await.unwrap();
    wait::wait_until("the job to be done", wait::DEADLINE, || archived(&s, c)).await;
    worker.shutdown().await.unwrap();
    let sends = sends(&s);
    assert!(
        sends.values().all(|&n| n == 1),
        "each event sent once: {sends:?}"
    );
}
