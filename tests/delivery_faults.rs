//! Failure modes of the Graph API, played by the sandbox: transient errors and timeouts are
//! retried with the same event_id and delivered once; throttling pauses without spending
//! attempts; an invalid token holds the pixel at once with an alert; one bad event in a batch is
//! isolated.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use stagecast_sandbox::Fault;
use support::stack::{Stack, PIXEL};
use support::wait::{wait_for, DEADLINE};

/// (outcome, attempt, event_id) of every audit row, in order.
async fn audit(s: &Stack) -> Vec<(String, i32, String)> {
    sqlx::query_as("SELECT outcome, attempt, event_id FROM stagecast.deliveries ORDER BY id")
        .fetch_all(s.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_event_id_and_delivered_once() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.sandbox.push_fault(Fault::ServerError(503));
    s.sandbox.push_fault(Fault::HtmlError);
    s.sandbox.push_fault(Fault::Transient);
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    assert!(s.sandbox.wait_for_events(1, Duration::from_secs(15)).await);
    s.drained().await;
    worker.shutdown().await.unwrap();

    let requests = s.sandbox.requests();
    assert_eq!(requests.len(), 4, "three failures, then success");
    let ids: HashSet<&Vec<String>> = requests.iter().map(|r| &r.event_ids).collect();
    assert_eq!(ids.len(), 1, "every attempt carried the same event_id");
    let event_id = &requests[0].event_ids[0];
    assert_eq!(
        s.sandbox.delivered_count(event_id),
        1,
        "delivered exactly once"
    );
    let rows = audit(&s).await;
    let outcomes: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(outcomes, ["retry", "retry", "retry", "delivered"]);
    assert_eq!(rows.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(s.jobs_of(c).await[0].0, "done");
}

#[tokio::test]
async fn a_timeout_is_retried_with_the_same_event_id_and_event_time() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    // Meta ingests the request but never answers it in time: the client's timeout fires first
    // however long it is (the answer is held for an hour).
    s.sandbox
        .push_fault(Fault::Timeout(Duration::from_secs(3600)));
    let mut t = s.tuning();
    t.meta.timeout = Duration::from_secs(1);
    let worker = s.start_worker_with(t);
    s.move_to(c, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();

    // The same timeout applies to every retry, and a slow machine may make a retry time out
    // too: whatever the count, each request Meta took is one copy, every copy carries the same
    // event_id and event_time, and the audit shows one retry per timed-out attempt, then one
    // delivery.
    let requests = s.sandbox.requests();
    assert!(requests[0].outcome_unknown_to_client);
    assert_eq!(requests[0].answered_at, None, "the first answer never came");
    assert!(requests.len() >= 2, "the timed-out copy and the retry");
    let received = s.sandbox.received();
    assert_eq!(
        received.len(),
        requests.len(),
        "every attempt reached the sandbox"
    );
    for copy in &received {
        assert_eq!(copy.event["event_id"], received[0].event["event_id"]);
        assert_eq!(copy.event["event_time"], received[0].event["event_time"]);
    }
    let rows = audit(&s).await;
    let mut expected = vec!["retry"; requests.len() - 1];
    expected.push("delivered");
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(s.jobs_of(c).await[0].0, "done");
}

#[tokio::test]
async fn throttling_pauses_the_pixel_without_spending_attempts() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.sandbox.push_fault(Fault::Throttle {
        code: 80004,
        subcode: Some(2446079),
        regain_minutes: None,
    });
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    assert!(s.sandbox.wait_for_events(1, Duration::from_secs(15)).await);
    s.drained().await;
    worker.shutdown().await.unwrap();

    let rows = audit(&s).await;
    assert_eq!(
        rows.iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(),
        [("throttled", 1), ("delivered", 1)],
        "the throttled attempt was refunded, so the delivery is still attempt 1"
    );
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM stagecast.job_archive WHERE customer_id = $1")
            .bind(c)
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(attempts, 1);
    assert_eq!(s.sandbox.delivered_count(&rows[1].2), 1);
}

#[tokio::test]
async fn an_invalid_token_holds_the_job_at_once_with_an_alert_and_no_attempt_spent() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.sandbox.push_fault(Fault::InvalidToken);
    let mut t = s.tuning();
    t.meta.hold_recheck = Duration::from_millis(200);
    let worker = s.start_worker_with(t);
    s.move_to(c, 1).await;
    let (error, attempts): (Option<String>, i32) =
        wait_for("the job to be held", DEADLINE, || async {
            sqlx::query_as(
                "SELECT last_error, attempts FROM stagecast.jobs \
                  WHERE customer_id = $1 AND status = 'pending' AND last_error LIKE 'held:%'",
            )
            .bind(c)
            .fetch_optional(s.pool())
            .await
            .unwrap()
        })
        .await;
    worker.shutdown().await.unwrap();

    // Held, not failed: the same token is not sent again (a new one resumes the pixel:
    // tests/meta_holds.rs).
    assert_eq!(attempts, 0, "{error:?}");
    assert_eq!(s.sandbox.requests().len(), 1, "no retry after code 190");
    assert_eq!(s.alert_causes(c).await, ["token_invalid"]);
    let alert = &s.chat_alerts(c).await[0];
    assert!(
        alert.contains("código 190") && alert.contains("fbtrace_id"),
        "{alert}"
    );
}

#[tokio::test]
async fn one_invalid_event_in_a_batch_is_isolated_and_the_rest_delivered() {
    let s = Stack::new().await;
    s.seed_standard().await;
    for id in 1..=8 {
        s.customer(
            id,
            &format!("c{id}@example.com"),
            &format!("+55119999900{id:02}"),
            None,
        )
        .await;
    }
    // Customer 5 has a corrupted user agent (it looks like a SHA-256 hash, which Meta's
    // validation refuses for a field that must be sent raw): its event poisons any batch.
    s.crm_exec(&format!(
        "UPDATE customers SET client_user_agent = '{}' WHERE id = 5",
        stagecast::pii::sha256_hex("corrupted")
    ))
    .await;
    let worker = s.start_worker();
    // One bulk UPDATE → one batch job → eight jobs claimed together → one request of eight.
    s.crm_exec("UPDATE customers SET stage_id = 1 WHERE id BETWEEN 1 AND 8")
        .await;
    s.drained().await;
    worker.shutdown().await.unwrap();

    let received = s.sandbox.received();
    assert_eq!(received.len(), 7, "everyone but customer 5");
    let ids: HashSet<String> = received
        .iter()
        .map(|r| r.event["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 7, "each delivered exactly once");
    for id in &ids {
        assert_eq!(s.sandbox.delivered_count(id), 1);
    }
    let requests = s.sandbox.requests();
    assert_eq!(
        requests[0].event_count, 8,
        "first attempt sent the whole batch"
    );
    assert!(
        requests.iter().filter(|r| !r.accepted()).count() >= 2,
        "the batch was split to isolate the bad event"
    );
    for other in (1..=8).filter(|&c| c != 5) {
        assert_eq!(s.jobs_of(other).await[0].0, "done", "customer {other}");
    }
    let bad = s.jobs_of(5).await;
    assert_eq!(bad[0].0, "failed");
    assert!(bad[0].1.as_deref().unwrap().contains("code 100"), "{bad:?}");
    assert_eq!(s.alert_causes(5).await, ["api_error"]);
}

#[tokio::test]
async fn a_job_that_keeps_failing_gives_up_after_its_attempt_budget_with_an_alert() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.move_to(c, 1).await;
    // A small budget, set by the superuser: no role changes a queued job's budget.
    s.exec("UPDATE stagecast.jobs SET max_attempts = 2").await;
    s.sandbox.push_fault(Fault::ServerError(500));
    s.sandbox.push_fault(Fault::ServerError(502));
    let worker = s.start_worker();
    s.drained().await;
    worker.shutdown().await.unwrap();

    let jobs = s.jobs_of(c).await;
    assert_eq!(jobs[0].0, "failed");
    assert!(
        jobs[0]
            .1
            .as_deref()
            .unwrap()
            .starts_with("gave up after 2 of 2 attempts"),
        "{jobs:?}"
    );
    assert_eq!(s.alert_causes(c).await, ["delivery_gave_up"]);
    assert!(s.sandbox.received().is_empty());
}

/// `X-Business-Use-Case-Usage` at `pct` % of the budget, regaining access in `regain_minutes`.
/// Once a paused pixel's job for `customer` is rescheduled: its status, attempts, minutes
/// until it runs again and last error.
async fn rescheduled(s: &Stack, customer: i64) -> (String, i32, f64, Option<String>) {
    wait_for("the paused pixel's job to be rescheduled", DEADLINE, || async {
        sqlx::query_as(
            "SELECT status, attempts, (extract(epoch FROM run_at - now()) / 60)::float8, last_error \
               FROM stagecast.jobs WHERE customer_id = $1 AND last_error IS NOT NULL",
        )
        .bind(customer)
        .fetch_optional(s.pool())
        .await
        .unwrap()
    })
    .await
}

fn usage_header(pct: u32, regain_minutes: u32) -> String {
    serde_json::json!({ PIXEL: [{
        "type": "ads_management",
        "call_count": pct,
        "total_cputime": 10,
        "total_time": 10,
        "estimated_time_to_regain_access": regain_minutes,
    }]})
    .to_string()
}

/// Usage past 90 % without an estimate: the pause is half of `--throttle-pause` (it was a
/// fixed 30 s whatever the setting).
#[tokio::test]
async fn usage_headers_without_an_estimate_pause_for_half_the_throttle_pause() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let busy = s.customer(1, "b@example.com", "+5511999990002", None).await;
    let paused = s.customer(2, "c@example.com", "+5511999990003", None).await;
    let mut t = s.tuning();
    t.meta.throttle_pause = Duration::from_secs(20 * 60);
    let worker = s.start_worker_with(t);
    s.sandbox.set_usage_header(Some(usage_header(95, 0)));
    s.move_to(busy, 1).await;
    s.drained().await;
    s.move_to(paused, 1).await;
    let (_, _, paused_for_minutes, _) = rescheduled(&s, paused).await;
    worker.shutdown().await.unwrap();
    assert!(
        (9.0..=10.0).contains(&paused_for_minutes),
        "half of the 20 min throttle pause: {paused_for_minutes} min"
    );
    assert_eq!(s.sandbox.requests().len(), 1, "nothing sent while paused");
}

#[tokio::test]
async fn usage_headers_past_90_percent_pause_the_pixel_before_meta_throttles_it() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let calm = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let busy = s.customer(2, "b@example.com", "+5511999990002", None).await;
    let paused = s.customer(3, "c@example.com", "+5511999990003", None).await;
    let worker = s.start_worker();
    // 80 %: nothing happens.
    s.sandbox.set_usage_header(Some(usage_header(80, 0)));
    s.move_to(calm, 1).await;
    s.drained().await;
    // 95 %, and Meta estimates an hour until the budget is back: the request is delivered, and
    // the pixel is paused for that hour.
    s.sandbox.set_usage_header(Some(usage_header(95, 60)));
    s.move_to(busy, 1).await;
    s.drained().await;
    assert_eq!(s.sandbox.requests().len(), 2);
    // The next stage change is not sent: rescheduled for the end of the pause, its attempt
    // refunded.
    s.move_to(paused, 1).await;
    let (status, attempts, paused_for_minutes, error) = rescheduled(&s, paused).await;
    worker.shutdown().await.unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    assert!(
        paused_for_minutes > 50.0,
        "paused for Meta's estimate, not a default: {paused_for_minutes} min"
    );
    assert!(
        error.as_deref().unwrap_or_default().contains("paused"),
        "{error:?}"
    );
    assert_eq!(
        s.sandbox.requests().len(),
        2,
        "nothing was sent to the paused pixel"
    );
    assert_eq!(
        audit(&s)
            .await
            .iter()
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>(),
        ["delivered", "delivered", "throttled"]
    );
}
