//! Dead-worker rescue (issue 8, item 4; docs/operations.md, "Dead-worker rescue"): a worker
//! killed with SIGKILL has its jobs taken up by another long before their lease could expire,
//! each change delivered under its one event id; a live worker that loses its lock connection
//! stops sending and gives back what it did not send, and is fenced out once another worker has
//! taken its job over; every lock vanishing at once (what a Postgres restart does) steals
//! nothing from live workers.
//!
//! Every lease here is 120 s, four times the tests' wait bound (`wait::DEADLINE`, 30 s): a job
//! that is taken up again within the bound can only have been released by the liveness lock.
//! Workers run as the database's worker role, like `stagecast run`.

mod support;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::process::Stdio;
use std::time::Duration;

use support::stack::{Stack, Tuning};
use support::wait::{wait_until, DEADLINE};

const LEASE: Duration = Duration::from_secs(120);

#[test]
fn the_lease_is_far_longer_than_any_wait_of_these_tests() {
    assert!(LEASE >= DEADLINE * 4);
}

/// Tuning with the long lease (and the heartbeat a third of it, as by default).
fn long_lease(s: &Stack) -> Tuning {
    let mut t = s.tuning();
    t.worker.lease = LEASE;
    t.worker.heartbeat_interval = None;
    t
}

/// `n` customers in campaign 1, inserted in one statement.
async fn customers(s: &Stack, n: i64) {
    sqlx::query(
        "INSERT INTO customers (id, name, email, phone, utm_campaign_id) \
         SELECT g, 'Cliente ' || g, 'c' || g || '@example.com', '+55 11 9' || lpad(g::text, 8, '0'), 1 \
           FROM generate_series(1, $1::bigint) g",
    )
    .bind(n)
    .execute(s.crm())
    .await
    .unwrap();
}

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

async fn scalar(s: &Stack, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(s.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
}

async fn archived(s: &Stack) -> i64 {
    scalar(
        s,
        "SELECT count(*) FROM stagecast.job_archive WHERE kind = 'stage_change'",
    )
    .await
}

/// Copies of each event id the sandbox received from workers of this partner agent.
fn event_ids(s: &Stack, agent: &str) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for r in s.sandbox.requests() {
        if r.partner_agent.as_deref() == Some(agent) {
            for id in r.event_ids {
                *n.entry(id).or_default() += 1;
            }
        }
    }
    n
}

/// End a worker's lock session from outside, as a lost connection does. The superuser's: no
/// role of a deployment signals another role's sessions.
async fn cut_lock_connection(s: &Stack, worker_id: &str) {
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
          WHERE application_name = 'stagecast worker lock ' || $1) t",
    )
    .bind(worker_id)
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(cut, 1, "the worker's lock session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_jobs_are_taken_up_by_another_long_before_their_lease() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let n = 20;
    customers(&s, n).await;
    // Every request is held in flight: the worker dies with all of its jobs unanswered.
    s.sandbox.hold_answers();
    let mut child = s
        .worker_command()
        .args(["--lease", "120s", "--meta-partner-agent", "doomed"])
        .env("STAGECAST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the stagecast binary");
    s.crm_exec(&format!(
        "UPDATE customers SET stage_id = 1 WHERE id <= {n}"
    ))
    .await;
    wait_until("every event in flight", DEADLINE, || async {
        event_ids(&s, "doomed").len() == n as usize
    })
    .await;
    let doomed: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT locked_by FROM stagecast.jobs WHERE status = 'running' AND kind = 'stage_change'",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(doomed.len(), 1, "one worker holds the jobs: {doomed:?}");
    let doomed = &doomed[0];
    // Precondition: only the liveness lock can explain a rescue within the wait bound.
    let lease_left = scalar(
        &s,
        "SELECT floor(extract(epoch FROM min(locked_until) - now()))::bigint \
           FROM stagecast.jobs WHERE status = 'running'",
    )
    .await;
    assert!(
        lease_left > 2 * DEADLINE.as_secs() as i64,
        "lease left: {lease_left} s"
    );
    assert_eq!(
        scalar(&s, "SELECT count(*) FROM stagecast.workers").await,
        1,
        "the doomed worker registered"
    );

    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    s.sandbox.release_answers();
    let mut t = long_lease(&s);
    t.meta.partner_agent = "rescuer".into();
    let rescuer = s.start_worker_with(t);
    wait_until("every job done", DEADLINE, || async {
        archived(&s).await == n
    })
    .await;
    let stats = rescuer.shutdown().await.unwrap();

    assert_eq!(stats.get(&stats.dead_worker_jobs_released), n as u64);
    assert_eq!(stats.get(&stats.rescued), n as u64, "claimed as rescued");
    // Each change: the one event id the dead worker had in flight, sent again under that id,
    // and one delivery in the ledger.
    let doomed_ids = event_ids(&s, "doomed");
    let rescued_ids = event_ids(&s, "rescuer");
    assert_eq!(rescued_ids.len(), n as usize);
    assert!(rescued_ids.values().all(|&c| c == 1), "{rescued_ids:?}");
    assert_eq!(
        rescued_ids.keys().collect::<HashSet<_>>(),
        doomed_ids.keys().collect::<HashSet<_>>(),
        "the same event ids"
    );
    assert_eq!(
        scalar(
            &s,
            "SELECT count(DISTINCT event_id) FROM stagecast.deliveries WHERE outcome = 'delivered'"
        )
        .await,
        n
    );
    let attempts: Vec<i32> = sqlx::query_scalar(
        "SELECT DISTINCT attempts FROM stagecast.job_archive WHERE kind = 'stage_change'",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(
        attempts,
        vec![2],
        "the dead worker's attempt, then the rescue"
    );
    // The dead worker is forgotten once its jobs are released.
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stagecast.workers WHERE worker_id = $1")
            .bind(doomed)
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_loses_its_lock_connection_stops_sending_and_gives_back_the_rest() {
    let s = Stack::new().await;
    let c = seed_five_event_stage(&s).await;
    // One request a second, one event each: the job takes about five seconds.
    let mut t = long_lease(&s);
    t.meta.max_batch = 1;
    t.meta.requests_per_second = NonZeroU32::new(1).unwrap();
    t.meta.burst = NonZeroU32::new(1).unwrap();
    t.meta.partner_agent = "cut".into();
    let worker = s.start_worker_with(t);
    let stats = worker.stats().clone();
    s.move_to(c, 5).await;
    assert!(s.sandbox.wait_for_events(1, DEADLINE).await);
    cut_lock_connection(&s, worker.worker_id()).await;

    wait_until("the job to be done", DEADLINE, || async {
        archived(&s).await == 1
    })
    .await;
    let stats_now = |c: &std::sync::atomic::AtomicU64| stats.get(c);
    assert!(stats_now(&stats.liveness_lock_losses) >= 1);
    assert!(
        stats_now(&stats.lease_lost_jobs) >= 1,
        "it stopped sending for the job"
    );
    assert!(
        stats_now(&stats.liveness_locks_taken) >= 2,
        "it took its lock again"
    );
    let worker_stats = worker.shutdown().await.unwrap();
    // What it sent before the cut is in the ledger, what it did not was given back and sent by
    // the next claim: each of the five events exactly once.
    let ids = event_ids(&s, "cut");
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert!(ids.values().all(|&n| n == 1), "each event once: {ids:?}");
    assert_eq!(worker_stats.get(&worker_stats.duplicate_deliveries), 0);
    // Given back, not rescued: the attempt was refunded.
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM stagecast.job_archive WHERE customer_id = $1")
            .bind(c)
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_worker_whose_job_was_taken_over_is_fenced_out() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.sandbox.hold_answers();
    // The cut-off worker does not get its lock back during the test, so its job is taken over.
    let mut t = long_lease(&s);
    t.worker.lock_retry = Duration::from_secs(3600);
    t.meta.partner_agent = "cut".into();
    // Its request waits for its answer as long as this test holds it.
    t.meta.timeout = Duration::from_secs(25);
    let cut = s.start_worker_with(t);
    s.move_to(c, 1).await;
    assert!(s.sandbox.wait_for_in_flight(1, DEADLINE).await);
    cut_lock_connection(&s, cut.worker_id()).await;

    let mut t = long_lease(&s);
    t.meta.partner_agent = "rescuer".into();
    let rescuer = s.start_worker_with(t);
    // The rescuer takes the job over while the cut-off worker's request is still in flight.
    assert!(s.sandbox.wait_for_in_flight(2, DEADLINE).await);
    s.sandbox.release_answers();
    wait_until("the job to be done", DEADLINE, || async {
        archived(&s).await == 1
    })
    .await;
    let cut_stats = cut.stats().clone();
    wait_until(
        "the cut-off worker's result to be fenced out",
        DEADLINE,
        || async { cut_stats.get(&cut_stats.fenced_out) == 1 },
    )
    .await;
    let (cut, rescuer) = (
        cut.shutdown().await.unwrap(),
        rescuer.shutdown().await.unwrap(),
    );
    assert_eq!(rescuer.get(&rescuer.dead_worker_jobs_released), 1);
    assert_eq!(rescuer.get(&rescuer.rescued), 1);
    assert_eq!(cut.get(&cut.liveness_locks_taken), 1, "never taken again");
    // The request in flight at the cut is the only copy sent twice, under the same event id.
    let (a, b) = (event_ids(&s, "cut"), event_ids(&s, "rescuer"));
    assert_eq!(a.len(), 1);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM stagecast.job_archive WHERE customer_id = $1")
            .bind(c)
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(attempts, 2, "the rescuer's attempt is the one written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lock_vanishing_at_once_steals_nothing_from_live_workers() {
    let s = Stack::new().await;
    s.seed_standard().await;
    for id in 1..=2 {
        s.customer(
            id,
            &format!("c{id}@example.com"),
            &format!("+55119999900{id:02}"),
            None,
        )
        .await;
    }
    s.sandbox.hold_answers();
    // One job at a time each; requests may wait for their answer longer than this test holds
    // them. (Each Tuning gets its own worker id.)
    let one_at_a_time = || {
        let mut t = long_lease(&s);
        t.worker.batch_size = 1;
        t.worker.concurrency = 1;
        t.meta.timeout = Duration::from_secs(25);
        t
    };
    let (a, b) = (
        s.start_worker_with(one_at_a_time()),
        s.start_worker_with(one_at_a_time()),
    );
    s.move_to(1, 1).await;
    s.move_to(2, 1).await;
    // One job each, both requests in flight.
    assert!(s.sandbox.wait_for_in_flight(2, DEADLINE).await);
    let holders = scalar(
        &s,
        "SELECT count(DISTINCT locked_by) FROM stagecast.jobs WHERE status = 'running'",
    )
    .await;
    assert_eq!(holders, 2, "each worker holds a job");
    // What a Postgres restart does to the locks: every lock session ends at once. (The
    // superuser's: no role of a deployment signals another role's sessions.)
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
          WHERE datname = current_database() AND application_name LIKE 'stagecast worker lock %') t",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(cut, 2);
    let (sa, sb) = (a.stats().clone(), b.stats().clone());
    wait_until("both workers hold their lock again", DEADLINE, || async {
        sa.get(&sa.liveness_locks_taken) >= 2 && sb.get(&sb.liveness_locks_taken) >= 2
    })
    .await;
    // Then long enough for a rescue to act on a lock missing past the grace (2 s): eight
    // rescues of each worker, 500 ms apart.
    let runs = |st: &stagecast::queue::WorkerStats| st.get(&st.rescue_runs);
    let (ra, rb) = (runs(&sa), runs(&sb));
    wait_until("eight more rescues on each worker", DEADLINE, || async {
        runs(&sa) >= ra + 8 && runs(&sb) >= rb + 8
    })
    .await;
    s.sandbox.release_answers();
    wait_until("both jobs done", DEADLINE, || async {
        archived(&s).await == 2
    })
    .await;
    let (a, b) = (a.shutdown().await.unwrap(), b.shutdown().await.unwrap());
    for st in [&a, &b] {
        assert_eq!(st.get(&st.dead_worker_jobs_released), 0, "nothing released");
        assert_eq!(st.get(&st.rescued), 0, "nothing rescued");
        assert_eq!(st.get(&st.fenced_out), 0, "both results written");
    }
    let all: HashMap<String, usize> = s
        .sandbox
        .requests()
        .iter()
        .flat_map(|r| r.event_ids.clone())
        .fold(HashMap::new(), |mut m, id| {
            *m.entry(id).or_default() += 1;
            m
        });
    assert_eq!(all.len(), 2);
    assert!(
        all.values().all(|&n| n == 1),
        "each event sent once: {all:?}"
    );
    let attempts: Vec<i32> = sqlx::query_scalar(
        "SELECT attempts FROM stagecast.job_archive WHERE kind = 'stage_change' ORDER BY 1",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(attempts, vec![1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_job_on_its_last_attempt_is_delivered_not_given_up() {
    // A kill spends the attempt of every job the worker held, sent or not: in a crash loop
    // jobs would run out of attempts without a single answer from the platform. A release by
    // the liveness lock gives that attempt back (fencing still sees attempts grow).
    let s = Stack::new().await;
    s.seed_standard().await;
    customers(&s, 1).await;
    s.crm_exec("UPDATE customers SET stage_id = 1 WHERE id = 1")
        .await;
    let max: i32 =
        sqlx::query_scalar("SELECT max_attempts FROM stagecast.jobs WHERE kind = 'stage_change'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    // A worker that died holding the job on its last attempt: registered, its lock gone.
    s.exec("INSERT INTO stagecast.workers (worker_id) VALUES ('died-on-last-attempt')")
        .await;
    s.exec(
        "UPDATE stagecast.jobs SET status = 'running', locked_by = 'died-on-last-attempt', \
                locked_until = now() + interval '120 seconds', attempts = max_attempts, \
                updated_at = now() - interval '1 minute' \
          WHERE kind = 'stage_change'",
    )
    .await;
    let worker = s.start_worker_with(long_lease(&s));
    wait_until("the job finished", DEADLINE, || async {
        scalar(
            &s,
            "SELECT count(*) FROM stagecast.jobs WHERE status IN ('pending', 'running')",
        )
        .await
            == 0
    })
    .await;
    let stats = worker.shutdown().await.unwrap();
    assert_eq!(stats.get(&stats.dead_worker_jobs_released), 1);
    let failed: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(last_error, '') FROM stagecast.jobs WHERE status = 'failed'",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert!(failed.is_empty(), "given up: {failed:?}");
    let (attempts, note): (i32, Option<String>) = sqlx::query_as(
        "SELECT attempts, note FROM stagecast.job_archive WHERE kind = 'stage_change'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(
        attempts,
        max + 1,
        "the dead worker's last attempt, then the rescue's"
    );
    assert_eq!(
        scalar(
            &s,
            "SELECT count(*) FROM stagecast.deliveries WHERE outcome = 'delivered'"
        )
        .await,
        1,
        "delivered, not given up (archive note: {note:?})"
    );
    assert_eq!(
        scalar(&s, "SELECT count(*) FROM stagecast.alerts").await,
        0,
        "no delivery_gave_up alert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_workers_expired_lease_refunds_the_attempt_up_to_ten_times_a_job() {
    // A worker that stalls (a frozen VM, a process stopped with SIGSTOP) holds its jobs until
    // their lease expires; to its jobs it is as good as dead, and its claim spent their attempt
    // whether or not a request left. The claim that takes an expired lease up gives it back,
    // with the dead-worker rescue's counter and cap: a job rescued 10 times already pays.
    let s = Stack::new().await;
    s.seed_standard().await;
    customers(&s, 2).await;
    // One statement per customer: a job each (a bulk change would be one batch job).
    for id in [1, 2] {
        s.crm_exec(&format!(
            "UPDATE customers SET stage_id = 1 WHERE id = {id}"
        ))
        .await;
    }
    let max: i32 = scalar(
        &s,
        "SELECT max(max_attempts)::bigint FROM stagecast.jobs WHERE kind = 'stage_change'",
    )
    .await
    .try_into()
    .unwrap();
    // Both on their last attempt, leased to a worker that stalled (no worker row: nothing tells
    // it is dead, only the lease): customer 2's job was rescued 10 times already.
    s.exec(
        "UPDATE stagecast.jobs SET status = 'running', locked_by = 'stalled', \
                locked_until = now() - interval '1 second', attempts = max_attempts, \
                rescues = CASE WHEN customer_id = 2 THEN 10 ELSE 0 END, \
                updated_at = now() - interval '1 minute' \
          WHERE kind = 'stage_change'",
    )
    .await;
    let worker = s.start_worker_with(long_lease(&s));
    wait_until("both jobs finished", DEADLINE, || async {
        scalar(
            &s,
            "SELECT count(*) FROM stagecast.jobs WHERE status IN ('pending', 'running')",
        )
        .await
            == 0
    })
    .await;
    worker.shutdown().await.unwrap();
    let (attempts, note): (i32, Option<String>) = sqlx::query_as(
        "SELECT attempts, note FROM stagecast.job_archive \
          WHERE kind = 'stage_change' AND customer_id = 1",
    )
    .fetch_one(s.pool())
    .await
    .unwrap_or_else(|e| panic!("customer 1's job is not archived as done: {e}"));
    assert_eq!(
        attempts,
        max + 1,
        "the stalled claim's attempt, then the rescue's (note: {note:?})"
    );
    let (status, rescues, max_attempts): (String, i32, i32) = sqlx::query_as(
        "SELECT status, rescues, max_attempts FROM stagecast.jobs \
          WHERE kind = 'stage_change' AND customer_id = 2",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), rescues, max_attempts),
        ("failed", 11, max),
        "past 10 refunds the expired lease is paid for: given up, counted"
    );
    assert_eq!(
        scalar(
            &s,
            "SELECT count(*) FROM stagecast.deliveries WHERE outcome = 'delivered'"
        )
        .await,
        1,
        "customer 1's event delivered, customer 2's given up unsent"
    );
}
