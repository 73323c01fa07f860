//! Limits shared by every worker on a database (docs/operations.md, "Rate limits, throttles and
//! holds"): two workers keep one rate limit per destination, a throttle one of them is answered
//! pauses the other, a hold one finds holds for the other with one alert in total, a database
//! that does not answer falls back to the local share; and no head-of-line blocking: one
//! throttled destination does not keep the others of a batch waiting, nor does a job waiting on
//! its destination's limit keep the capacity of the jobs already done.

mod support;

use std::num::NonZeroU32;
use std::time::Duration;

use chrono::{DateTime, Utc};
use stagecast_sandbox::Fault;
use support::stack::{Stack, Tuning, PIXEL};
use support::wait::{wait_for, wait_until, DEADLINE};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Fast settings with Meta limited to `per_second` requests per pixel, bursts of `burst`, and
/// this worker's requests told apart by `agent` (Meta's `partner_agent`).
fn limited(s: &Stack, per_second: u32, burst: u32, agent: &str) -> Tuning {
    let mut t = s.tuning();
    t.meta.requests_per_second = nz(per_second);
    t.meta.burst = nz(burst);
    t.meta.max_batch = 1;
    t.meta.partner_agent = agent.to_string();
    // Small claims, so both workers get jobs for the same pixel.
    t.worker.batch_size = 2;
    t.worker.concurrency = 2;
    t
}

async fn customers(s: &Stack, n: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for id in 1..=n {
        ids.push(
            s.customer(
                id,
                &format!("c{id}@example.com"),
                &format!("+55119999{id:05}"),
                None,
            )
            .await,
        );
    }
    ids
}

async fn paused_until(s: &Stack, pixel: &str) -> Option<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT paused_until FROM stagecast.destination_limits \
          WHERE platform = 'facebook' AND destination = $1 AND paused_until > now()",
    )
    .bind(pixel)
    .fetch_optional(s.pool())
    .await
    .unwrap()
    .flatten()
}

#[tokio::test]
async fn two_workers_keep_one_rate_limit_per_destination() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let ids = customers(&s, 10).await;
    let (per_second, burst) = (2.0, 2.0);
    let started = Utc::now();
    let a = s.start_worker_with(limited(&s, 2, 2, "worker-a"));
    let b = s.start_worker_with(limited(&s, 2, 2, "worker-b"));
    for &c in &ids {
        s.move_to(c, 1).await;
    }
    assert!(
        s.sandbox.wait_for_events(ids.len(), DEADLINE).await,
        "every event delivered"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();

    let mut requests: Vec<_> = s
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.pixel_id == PIXEL)
        .collect();
    requests.sort_by_key(|r| r.received_at);
    let agents: std::collections::HashSet<_> = requests
        .iter()
        .filter_map(|r| r.partner_agent.clone())
        .collect();
    assert_eq!(agents.len(), 2, "both workers sent requests: {agents:?}");
    // GCRA: by any moment, at most `burst` requests plus `per_second` for every second since
    // the start. Two workers with limits of their own would send twice that.
    for (k, r) in requests.iter().enumerate() {
        let elapsed = (r.received_at - started).num_milliseconds() as f64 / 1000.0;
        let allowed = burst + per_second * elapsed;
        assert!(
            (k + 1) as f64 <= allowed,
            "request {} arrived {elapsed:.3}s after the start: more than the {allowed:.2} one limit allows",
            k + 1
        );
    }
}

#[tokio::test]
async fn a_throttle_answered_to_one_worker_pauses_the_other() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let ids = customers(&s, 3).await;
    let mut t = s.tuning();
    // Long enough to see the other worker keep to it; no hint from Meta (code 80004 alone).
    t.meta.throttle_pause = Duration::from_secs(3);
    s.sandbox.push_fault(Fault::Throttle {
        code: 80004,
        subcode: Some(2446079),
        regain_minutes: None,
    });
    let a = s.start_worker_with(t.clone());
    s.move_to(ids[0], 1).await;
    let until = wait_for("worker A's pause to be shared", DEADLINE, || {
        paused_until(&s, PIXEL)
    })
    .await;
    a.shutdown().await.unwrap();

    // B starts afresh: it knows nothing of the throttle but what the database says.
    let mut tb = t.clone();
    tb.worker = s.tuning().worker;
    let b = s.start_worker_with(tb);
    for &c in &ids[1..] {
        s.move_to(c, 1).await;
    }
    assert!(s.sandbox.wait_for_events(ids.len(), DEADLINE).await);
    s.drained().await;
    b.shutdown().await.unwrap();

    let requests = s.sandbox.requests();
    assert_eq!(requests[0].error_code, Some(80004));
    for r in &requests[1..] {
        assert!(
            r.received_at >= until,
            "a request at {} came before the shared pause ended at {until}",
            r.received_at
        );
    }
    assert_eq!(
        requests[1..].iter().map(|r| r.event_count).sum::<usize>(),
        ids.len(),
        "after the throttled request, each event once"
    );
    let throttled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stagecast.deliveries WHERE outcome = 'throttled' AND http_status IS NULL",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert!(
        throttled >= 1,
        "worker B held events back for the pause without a request"
    );
}

#[tokio::test]
async fn a_hold_found_by_one_worker_holds_for_the_other_with_one_alert() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let ids = customers(&s, 3).await;
    s.sandbox.set_pixel_fault(PIXEL, Some(Fault::InvalidToken));
    let mut t = s.tuning();
    t.meta.hold_recheck = Duration::from_millis(200);
    // One job at a time per worker: the first two jobs go to different workers, whose
    // requests are both in flight before either learns of the hold.
    t.worker.batch_size = 1;
    t.worker.concurrency = 1;
    let mut ta = t.clone();
    ta.meta.partner_agent = "worker-a".into();
    let mut tb = t.clone();
    tb.meta.partner_agent = "worker-b".into();
    tb.worker = {
        let mut w = s.tuning().worker;
        w.batch_size = 1;
        w.concurrency = 1;
        w
    };
    s.sandbox.hold_answers();
    let a = s.start_worker_with(ta);
    let b = s.start_worker_with(tb);
    s.move_to(ids[0], 1).await;
    s.move_to(ids[1], 1).await;
    assert!(
        s.sandbox.wait_for_in_flight(2, DEADLINE).await,
        "both workers sent a request"
    );
    s.sandbox.release_answers();
    let held = |c: i64| {
        let pool = s.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM stagecast.jobs \
                  WHERE customer_id = $1 AND status = 'pending' AND last_error LIKE 'held:%'",
            )
            .bind(c)
            .fetch_one(&pool)
            .await
            .unwrap()
                == 1
        }
    };
    wait_until("the first two jobs to be held", DEADLINE, || async {
        held(ids[0]).await && held(ids[1]).await
    })
    .await;
    // A third job, and the first two rechecked: nobody sends while the token is the same.
    s.move_to(ids[2], 1).await;
    wait_until("the third job to be held", DEADLINE, || held(ids[2])).await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();

    let requests = s.sandbox.requests();
    let agents: std::collections::HashSet<_> = requests
        .iter()
        .filter_map(|r| r.partner_agent.clone())
        .collect();
    assert_eq!(agents.len(), 2, "each worker was refused once: {agents:?}");
    assert_eq!(requests.len(), 2, "the hold kept every other request back");
    let alerts: Vec<String> = sqlx::query_scalar("SELECT cause FROM stagecast.alerts")
        .fetch_all(s.pool())
        .await
        .unwrap();
    assert_eq!(alerts, ["token_invalid"], "one alert across both workers");
}

/// A hold as another worker's sql/hold_destination.sql writes it, for pixel 1 (the hold key is
/// the pixel's row id) with the standard token: Meta said the token expired.
async fn hold_written_by_another_worker(s: &Stack, next_probe: &str) {
    let api_version = s.tuning().meta.api_version;
    let fingerprint =
        stagecast::platforms::holds::fingerprint(&[PIXEL, support::stack::TOKEN, &api_version]);
    sqlx::query(&format!(
        "INSERT INTO stagecast.destination_holds \
                (platform, destination, fingerprint, cause, http_status, error_code, error_subcode, \
                 message, next_probe, held_since) \
         VALUES ('facebook', '1', $1, 'token_invalid', 400, '190', 463, \
                 'Error validating access token: Session has expired', {next_probe}, now())"
    ))
    .bind(fingerprint)
    .execute(s.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn a_hold_another_worker_wrote_stops_the_next_request_before_the_cache_has_read_it() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let ids = customers(&s, 2).await;
    let worker = s.start_worker();
    s.move_to(ids[0], 1).await;
    assert!(
        s.sandbox.wait_for_events(1, DEADLINE).await,
        "the first event delivered: the worker has read the (empty) holds"
    );
    // Another worker is refused for the token now and holds the pixel. This worker's cache of
    // holds is read again only when it is next asked, and answers from what it last read.
    hold_written_by_another_worker(&s, "now() + interval '1 hour'").await;
    s.sandbox.set_pixel_fault(PIXEL, Some(Fault::InvalidToken));
    s.move_to(ids[1], 1).await;
    wait_until("the second job to be held", DEADLINE, || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT count(*) = 1 FROM stagecast.jobs \
              WHERE customer_id = $1 AND status = 'pending' AND last_error LIKE 'held:%'",
        )
        .bind(ids[1])
        .fetch_one(s.pool())
        .await
        .unwrap()
    })
    .await;
    worker.shutdown().await.unwrap();
    let requests = s.sandbox.requests();
    assert_eq!(
        requests.len(),
        1,
        "no request after the other worker's hold: {:?}",
        requests.iter().map(|r| r.error_code).collect::<Vec<_>>()
    );
    let alerts: i64 = sqlx::query_scalar("SELECT count(*) FROM stagecast.alerts")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(alerts, 0, "the hold's alert is the other worker's");
}

#[tokio::test]
async fn two_workers_that_both_find_a_holds_probe_due_send_one_probe() {
    use stagecast::platforms::holds::{DestinationHolds, HoldState};
    use stagecast::platforms::shared_limits::SharedLimits;
    let s = Stack::new().await;
    hold_written_by_another_worker(&s, "now() - interval '1 second'").await;
    let api_version = s.tuning().meta.api_version;
    let fingerprint =
        stagecast::platforms::holds::fingerprint(&[PIXEL, support::stack::TOKEN, &api_version]);
    // Two workers: each its own holds and its own pool of shared limits.
    let workers: Vec<DestinationHolds> = (0..2)
        .map(|_| {
            let holds = DestinationHolds::new(Duration::from_secs(3600));
            holds.share(SharedLimits::new(s.store.clone()), "facebook", "fbtrace_id");
            holds
        })
        .collect();
    for holds in &workers {
        holds.ready().await;
    }
    // Both read the hold with its probe due; both ask at the same time.
    let (a, b) = tokio::join!(
        workers[0].state("1", &fingerprint),
        workers[1].state("1", &fingerprint)
    );
    let states = [a, b];
    assert_eq!(
        states.iter().filter(|s| **s == HoldState::Probe).count(),
        1,
        "one probe between the two: {states:?}"
    );
    assert!(
        states.iter().any(|s| matches!(s, HoldState::Held { .. })),
        "the other holds: {states:?}"
    );
    let next_probe_later: bool = sqlx::query_scalar(
        "SELECT next_probe > now() + interval '59 minutes' FROM stagecast.destination_holds",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert!(
        next_probe_later,
        "the winner pushed the next probe back for both"
    );
    // Lifted by another worker meanwhile: a due probe finds it gone and sends as usual.
    s.exec("UPDATE stagecast.destination_holds SET next_probe = now() - interval '1 second'")
        .await;
    let third = DestinationHolds::new(Duration::from_secs(3600));
    third.share(SharedLimits::new(s.store.clone()), "facebook", "fbtrace_id");
    third.ready().await;
    s.exec("DELETE FROM stagecast.destination_holds").await;
    assert_eq!(third.state("1", &fingerprint).await, HoldState::Open);
}

async fn throttle_streak(s: &Stack, pixel: &str) -> i32 {
    sqlx::query_scalar(
        "SELECT throttles FROM stagecast.destination_limits \
          WHERE platform = 'facebook' AND destination = $1",
    )
    .bind(pixel)
    .fetch_one(s.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn the_throttle_streak_is_shared_so_a_second_worker_throttled_next_pauses_twice_as_long() {
    use stagecast::platforms::rate_limit::DestinationLimiter;
    use stagecast::platforms::shared_limits::SharedLimits;
    use std::time::Instant;
    let s = Stack::new().await;
    // Doubled, still under the longest pause (15 minutes).
    let first = Duration::from_secs(120);
    let worker = || {
        let l = DestinationLimiter::new("facebook", nz(100), nz(10), first);
        l.share(SharedLimits::new(s.store.clone()));
        l
    };
    let (a, b) = (worker(), worker());
    a.throttled(PIXEL, None).await;
    assert_eq!(throttle_streak(&s, PIXEL).await, 1);
    // B's request was in flight: throttled while the pause runs, the same episode.
    b.throttled(PIXEL, None).await;
    assert_eq!(throttle_streak(&s, PIXEL).await, 1, "one episode, not two");
    // The pause has just ended (as if two minutes had passed) and B is throttled again at once:
    // the streak goes on, though B itself was throttled only once since.
    s.exec("UPDATE stagecast.destination_limits SET paused_until = now() - interval '1 second'")
        .await;
    let until = b.throttled(PIXEL, None).await;
    assert_eq!(throttle_streak(&s, PIXEL).await, 2);
    assert!(
        until > Instant::now() + first * 2 - Duration::from_secs(30),
        "the second throttle of the streak pauses twice the first"
    );
    // Long after the last pause: a new streak, from the first pause again.
    s.exec("UPDATE stagecast.destination_limits SET paused_until = now() - interval '1 hour'")
        .await;
    let until = a.throttled(PIXEL, None).await;
    assert_eq!(throttle_streak(&s, PIXEL).await, 1);
    assert!(until < Instant::now() + first + Duration::from_secs(30));
}

#[tokio::test]
async fn a_pause_learned_while_the_database_does_not_answer_is_written_once_it_does() {
    use stagecast::platforms::rate_limit::{DestinationLimiter, Slot};
    use stagecast::platforms::shared_limits::SharedLimits;
    let s = Stack::new().await;
    let l = DestinationLimiter::new("facebook", nz(100), nz(10), Duration::from_secs(600));
    l.share(SharedLimits::new(s.store.clone()));
    let stop = tokio_util::sync::CancellationToken::new();
    // The limits table locked (as in the local-share test): the pause cannot be written.
    let mut lock = s.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE stagecast.destination_limits IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    l.throttled(PIXEL, None).await;
    assert!(
        matches!(l.acquire(PIXEL, &stop).await, Slot::Paused { .. }),
        "paused here at once"
    );
    lock.commit().await.unwrap();
    assert_eq!(paused_until(&s, PIXEL).await, None, "not written yet");
    // The database answers again (after the retry delay): the next request this worker tries,
    // even to the paused destination itself, writes the pause for the others.
    wait_until("the pause to be written", DEADLINE, || async {
        l.acquire(PIXEL, &stop).await;
        paused_until(&s, PIXEL).await.is_some()
    })
    .await;
    assert_eq!(throttle_streak(&s, PIXEL).await, 1, "counted as a throttle");
}

/// 50 pixels (ids 1–50, dataset ids `9000000000000001`…), a campaign per pixel and one customer
/// per campaign, all through the CRM role; a Lead stage (1). Returns the dataset ids.
async fn seed_fifty(s: &Stack) -> Vec<String> {
    let datasets: Vec<String> = (1..=50).map(|i| format!("90000000000000{i:02}")).collect();
    for (i, dataset) in datasets.iter().enumerate() {
        let id = i as i64 + 1;
        s.sandbox.add_pixel(dataset, support::stack::TOKEN);
        sqlx::query(
            "INSERT INTO pixels (id, platform, name, pixel_id, access_token_enc, active, is_default) \
             VALUES ($1, 'facebook', 'Pixel ' || $1, $2, $3, true, $1 = 1)",
        )
        .bind(id)
        .bind(dataset)
        .bind(s.keys.seal(support::stack::TOKEN))
        .execute(s.crm())
        .await
        .expect("insert pixel");
    }
    s.crm_exec(
        r#"
        INSERT INTO utm_campaigns (id, name, pixel_id)
             SELECT g, 'Campaign ' || g, g FROM generate_series(1, 50) g;
        INSERT INTO crm_stages (id, name, funnel_category, utm_event)
             VALUES (1, 'Qualificado', 'meio', '[{"platform":"facebook","event_name":"Lead"}]');
        INSERT INTO customers (id, name, email, phone, utm_campaign_id, client_ip)
             SELECT g, 'Cliente ' || g, 'c' || g || '@example.com',
                    '+55 11 9' || lpad(g::text, 8, '0'), g, '200.150.10.20'
               FROM generate_series(1, 50) g;
        INSERT INTO chats (customer_id, channel, external_id)
             SELECT g, 'whatsapp', 'chat-' || g FROM generate_series(1, 50) g;
        "#,
    )
    .await;
    datasets
}

#[tokio::test]
async fn one_throttled_destination_of_fifty_does_not_hold_back_the_other_49() {
    let s = Stack::new().await;
    let datasets = seed_fifty(&s).await;
    let throttled = datasets[49].clone();
    // Meta keeps throttling this dataset (code 4, no estimate): it stays paused for the test.
    s.sandbox.set_pixel_fault(
        &throttled,
        Some(Fault::Throttle {
            code: 4,
            subcode: None,
            regain_minutes: None,
        }),
    );
    let mut t = s.tuning();
    t.meta.throttle_pause = Duration::from_secs(600);
    let worker = s.start_worker_with(t);
    // One UPDATE: the 50 jobs are claimed and delivered together.
    s.crm_exec("UPDATE customers SET stage_id = 1").await;
    assert!(
        s.sandbox.wait_for_events(49, DEADLINE).await,
        "the 49 healthy pixels' events were delivered"
    );
    wait_until(
        "the throttled pixel's job to be rescheduled",
        DEADLINE,
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT count(*) = 1 FROM stagecast.jobs \
              WHERE customer_id = 50 AND status = 'pending' AND run_at > now()",
            )
            .fetch_one(s.pool())
            .await
            .unwrap()
        },
    )
    .await;
    assert!(
        paused_until(&s, &throttled).await.is_some(),
        "the throttled pixel is still paused while the others are delivered"
    );
    worker.shutdown().await.unwrap();

    let requests = s.sandbox.requests();
    for dataset in &datasets[..49] {
        let accepted = requests
            .iter()
            .filter(|r| &r.pixel_id == dataset && r.accepted())
            .count();
        assert_eq!(accepted, 1, "pixel {dataset}");
    }
    let to_throttled: Vec<_> = requests
        .iter()
        .filter(|r| r.pixel_id == throttled)
        .collect();
    assert_eq!(to_throttled.len(), 1, "nothing more sent while paused");
    assert_eq!(to_throttled[0].error_code, Some(4));
    let done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stagecast.job_archive WHERE kind = 'stage_change'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(done, 49, "the 49 jobs are done, the throttled one waits");
}

#[tokio::test]
async fn a_database_that_does_not_answer_the_limit_falls_back_to_the_local_share() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let ids = customers(&s, 2).await;
    // The superuser locks the limits table as a stuck migration or a long admin transaction
    // would: every slot statement waits on it (no role of a deployment takes this lock).
    let mut lock = s.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE stagecast.destination_limits IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let worker = s.start_worker();
    s.move_to(ids[0], 1).await;
    s.move_to(ids[1], 1).await;
    assert!(
        s.sandbox.wait_for_events(2, DEADLINE).await,
        "delivered by the local share while the limits table is locked"
    );
    lock.commit().await.unwrap();
    s.drained().await;
    worker.shutdown().await.unwrap();
    for &c in &ids {
        assert_eq!(s.jobs_of(c).await.len(), 1);
        assert_eq!(s.jobs_of(c).await[0].0, "done");
    }
}

#[tokio::test]
async fn a_job_waiting_on_its_destinations_limit_does_not_hold_back_the_capacity_of_the_others() {
    let s = Stack::new().await;
    s.seed_standard().await;
    const OTHER: &str = "5555666677778888";
    s.sandbox.add_pixel(OTHER, support::stack::TOKEN);
    sqlx::query(
        "INSERT INTO pixels (id, platform, name, pixel_id, access_token_enc, active, is_default) \
         VALUES (2, 'facebook', 'Other', $1, $2, true, false)",
    )
    .bind(OTHER)
    .bind(s.keys.seal(support::stack::TOKEN))
    .execute(s.crm())
    .await
    .unwrap();
    s.crm_exec("INSERT INTO utm_campaigns (id, name, pixel_id) VALUES (2, 'Other', 2)")
        .await;
    let ids = customers(&s, 3).await;
    // Customers 2 and 3 send to the other pixel.
    s.crm_exec("UPDATE customers SET utm_campaign_id = 2 WHERE id IN (2, 3)")
        .await;
    // The main pixel's shared limit is spent for an hour, as if other workers had used it: its
    // request waits in the limiter (set by the superuser: no role of a deployment writes it).
    s.exec(
        "INSERT INTO stagecast.destination_limits (platform, destination, tat) \
         VALUES ('facebook', '1111222233334444', now() + interval '1 hour')",
    )
    .await;
    let mut t = s.tuning();
    // Room for two jobs: the waiting one, and one more.
    t.worker.concurrency = 2;
    t.worker.batch_size = 2;
    s.crm_exec("UPDATE customers SET stage_id = 1 WHERE id IN (1, 2)")
        .await;
    let worker = s.start_worker_with(t);
    assert!(s.sandbox.wait_for_events(1, DEADLINE).await);
    // The first job still waits for its slot; its batch is not done. The other pixel's next job
    // is claimed and delivered meanwhile, with the capacity the delivered job gave back.
    s.move_to(ids[2], 1).await;
    assert!(s.sandbox.wait_for_events(2, DEADLINE).await);
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stagecast.jobs WHERE customer_id = $1 AND status = 'running'",
    )
    .bind(ids[0])
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(waiting, 1, "the first job is still waiting for its slot");
    assert!(
        s.sandbox.requests().iter().all(|r| r.pixel_id == OTHER),
        "nothing was sent to the main pixel"
    );
    worker.shutdown().await.unwrap();
}

/// The pause a `stagecast run` process (settings from `env`) takes after one throttle answer
/// (`fault`), measured from the sandbox's record of that request to the pause it shared with the
/// other workers; then the worker is stopped.
async fn pause_of_a_worker_process(fault: Fault, env: &[(&str, &str)]) -> chrono::Duration {
    let s = Stack::new().await;
    s.seed_standard().await;
    let ids = customers(&s, 1).await;
    s.sandbox.push_fault(fault);
    let mut cmd = s.worker_command();
    cmd.env("STAGECAST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the stagecast binary");
    s.move_to(ids[0], 1).await;
    let until = wait_for("the worker's pause to be shared", DEADLINE, || {
        paused_until(&s, PIXEL)
    })
    .await;
    let throttled = s.sandbox.requests()[0].clone();
    assert_eq!(throttled.error_code, Some(4));
    support::process::signal(&child, "TERM");
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    until - throttled.received_at
}

#[tokio::test]
async fn the_throttle_pause_setting_applies_when_meta_gives_no_estimate() {
    let no_estimate = Fault::Throttle {
        code: 4,
        subcode: None,
        regain_minutes: None,
    };
    let pause =
        pause_of_a_worker_process(no_estimate.clone(), &[("STAGECAST_THROTTLE_PAUSE", "2s")]).await;
    assert!(
        pause >= chrono::Duration::milliseconds(1900) && pause < chrono::Duration::seconds(30),
        "paused {pause} with STAGECAST_THROTTLE_PAUSE=2s (the default is 60s)"
    );
    let pause = pause_of_a_worker_process(no_estimate, &[]).await;
    assert!(
        pause >= chrono::Duration::seconds(59),
        "paused {pause} by default"
    );
}

#[tokio::test]
async fn meta_s_estimate_wins_over_the_throttle_pause_setting() {
    // X-Business-Use-Case-Usage `estimated_time_to_regain_access` is in minutes
    // (https://developers.facebook.com/docs/graph-api/overview/rate-limiting).
    let estimated = Fault::Throttle {
        code: 4,
        subcode: None,
        regain_minutes: Some(2),
    };
    let pause = pause_of_a_worker_process(estimated, &[("STAGECAST_THROTTLE_PAUSE", "2s")]).await;
    assert!(
        pause >= chrono::Duration::seconds(119),
        "paused {pause}: Meta estimated 2 minutes"
    );
}
