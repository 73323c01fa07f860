//! Request-level errors and invalid tokens, played by the sandbox: a request Meta refuses for
//! its configuration (not its events) is never split, costs one request and one alert, and
//! holds the pixel without spending attempts; a new token resumes it; only events that pass the
//! age window while held fail. `Retry-After` pauses the pixel for that long.

mod support;

use std::time::Duration;

use stagecast_sandbox::{Fault, RequestError};
use support::stack::{Stack, Tuning, TOKEN};
use support::wait::{wait_for, wait_until, DEADLINE};

/// Fast rechecks of held pixels; no probe during a test (the default 15 minutes).
fn tuning(s: &Stack) -> Tuning {
    let mut t = s.tuning();
    t.meta.hold_recheck = Duration::from_millis(200);
    t
}

/// `n` customers in campaign 1, each with a chat, as the CRM would insert them.
async fn customers(s: &Stack, n: i64) {
    s.crm_exec(&format!(
        "INSERT INTO customers (id, name, email, phone, utm_campaign_id, client_ip) \
         SELECT i, 'Cliente ' || i, 'c' || i || '@example.com', '+55119' || lpad(i::text, 8, '0'), 1, '200.150.10.20' \
           FROM generate_series(1, {n}) i; \
         INSERT INTO chats (customer_id, channel, external_id) \
         SELECT i, 'whatsapp', 'chat-' || i FROM generate_series(1, {n}) i;"
    ))
    .await;
}

/// (pending jobs whose last error says they are held, their highest attempt count).
async fn held_jobs(s: &Stack) -> (i64, i32) {
    sqlx::query_as(
        "SELECT count(*), coalesce(max(attempts), 0) FROM stagecast.jobs \
          WHERE kind = 'stage_change' AND status = 'pending' AND last_error LIKE 'held:%'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap()
}

async fn alerts_with_cause(s: &Stack, cause: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM stagecast.alerts WHERE cause = $1")
        .bind(cause)
        .fetch_one(s.pool())
        .await
        .unwrap()
}

/// Waits until every held job has been written back again after `since` (rechecked at least
/// once), so a test can tell that rechecks send nothing.
async fn rechecked_since(s: &Stack, since: chrono::DateTime<chrono::Utc>) {
    wait_until("every held job to be rechecked", DEADLINE, || async {
        let oldest: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
            "SELECT min(updated_at) FROM stagecast.jobs WHERE kind = 'stage_change'",
        )
        .fetch_one(s.pool())
        .await
        .unwrap();
        oldest.is_some_and(|t| t > since)
    })
    .await;
}

async fn db_now(s: &Stack) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(s.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_request_level_error_on_a_1000_event_batch_costs_one_request_and_one_alert() {
    let s = Stack::new().await;
    s.seed_standard().await;
    customers(&s, 1000).await;
    // Graph answers "unknown path components" (2500) whatever the events: a configuration
    // problem. Splitting the batch would cost 1,999 requests and fail 1,000 good events.
    s.sandbox
        .push_fault(Fault::RequestLevel(RequestError::UnknownPath));
    let worker = s.start_worker_with(tuning(&s));
    s.crm_exec("UPDATE customers SET stage_id = 1").await;
    wait_for("the 1,000 jobs to be held", DEADLINE, || async {
        let (n, _) = held_jobs(&s).await;
        (n == 1000).then_some(())
    })
    .await;
    let since = db_now(&s).await;
    rechecked_since(&s, since).await;
    worker.shutdown().await.unwrap();

    let requests = s.sandbox.requests();
    assert_eq!(
        requests.len(),
        1,
        "one request, not split, and nothing sent on recheck"
    );
    assert_eq!(requests[0].event_count, 1000);
    assert_eq!(requests[0].error_code, Some(2500));
    assert_eq!(held_jobs(&s).await, (1000, 0), "no attempt spent");
    assert_eq!(
        alerts_with_cause(&s, "request_refused").await,
        1,
        "one alert"
    );
    assert_eq!(alerts_with_cause(&s, "api_error").await, 0);
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stagecast.jobs WHERE status = 'failed'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(failed, 0, "nothing failed: the events were not the problem");
}

#[tokio::test]
async fn every_request_level_error_the_sandbox_answers_holds_without_a_split() {
    for kind in RequestError::ALL {
        let s = Stack::new().await;
        s.seed_standard().await;
        customers(&s, 4).await;
        s.sandbox.push_fault(Fault::RequestLevel(kind));
        let worker = s.start_worker_with(tuning(&s));
        s.crm_exec("UPDATE customers SET stage_id = 1").await;
        wait_for("the jobs to be held", DEADLINE, || async {
            (held_jobs(&s).await.0 == 4).then_some(())
        })
        .await;
        worker.shutdown().await.unwrap();
        let requests = s.sandbox.requests();
        assert_eq!(requests.len(), 1, "{kind:?}: one request");
        assert_eq!(requests[0].error_code, Some(kind.code()), "{kind:?}");
        assert_eq!(
            alerts_with_cause(&s, "request_refused").await,
            1,
            "{kind:?}: one alert"
        );
    }
}

#[tokio::test]
async fn an_invalid_token_holds_the_pixel_and_a_new_token_resumes_it() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // The pixel's token expired: the sandbox does not know it (401, code 190).
    sqlx::query("UPDATE pixels SET access_token_enc = $1 WHERE id = 1")
        .bind(s.keys.seal("EAA-expired-token"))
        .execute(s.crm())
        .await
        .unwrap();
    customers(&s, 3).await;
    let worker = s.start_worker_with(tuning(&s));
    s.crm_exec("UPDATE customers SET stage_id = 1").await;
    wait_for("the jobs to be held", DEADLINE, || async {
        (held_jobs(&s).await.0 == 3).then_some(())
    })
    .await;
    let since = db_now(&s).await;
    rechecked_since(&s, since).await;
    assert_eq!(s.sandbox.requests().len(), 1, "held: nothing sent again");
    assert_eq!(alerts_with_cause(&s, "token_invalid").await, 1);
    let alert: String = sqlx::query_scalar(
        "SELECT m.body FROM chat_messages m WHERE m.direction = 'system' ORDER BY m.id LIMIT 1",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert!(
        alert.contains("código 190") && alert.contains("fbtrace_id") && alert.contains("retidos"),
        "{alert}"
    );

    // The CRM saves a new token: the next recheck sends, without an operator's replay.
    sqlx::query("UPDATE pixels SET access_token_enc = $1 WHERE id = 1")
        .bind(s.keys.seal(TOKEN))
        .execute(s.crm())
        .await
        .unwrap();
    s.drained().await;
    worker.shutdown().await.unwrap();

    let received = s.sandbox.received();
    assert_eq!(received.len(), 3);
    for r in &received {
        assert_eq!(
            s.sandbox
                .delivered_count(r.event["event_id"].as_str().unwrap()),
            1
        );
    }
    let attempts: Vec<i32> = sqlx::query_scalar(
        "SELECT attempts FROM stagecast.job_archive WHERE kind = 'stage_change' ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(attempts, [1, 1, 1], "the held rounds spent no attempt");
    assert_eq!(
        alerts_with_cause(&s, "token_invalid").await,
        1,
        "still one alert"
    );
    let outcomes: Vec<String> =
        sqlx::query_scalar("SELECT outcome FROM stagecast.deliveries ORDER BY id")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(
        outcomes,
        [
            "held",
            "held",
            "held",
            "delivered",
            "delivered",
            "delivered"
        ],
        "the refused request is audited once per event; rechecks add nothing"
    );
}

#[tokio::test]
async fn a_held_event_fails_only_once_it_is_older_than_the_age_window() {
    let s = Stack::new().await;
    s.seed_standard().await;
    sqlx::query("UPDATE pixels SET access_token_enc = $1 WHERE id = 1")
        .bind(s.keys.seal("EAA-expired-token"))
        .execute(s.crm())
        .await
        .unwrap();
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let mut t = tuning(&s);
    // A window the test can outlive: the event is held first, then too old.
    t.meta.max_event_age = Duration::from_secs(2);
    let worker = s.start_worker_with(t);
    s.move_to(c, 1).await;
    wait_for("the job to be held", DEADLINE, || async {
        (held_jobs(&s).await.0 == 1).then_some(())
    })
    .await;
    wait_for("the job to fail for its age", DEADLINE, || async {
        let jobs = s.jobs_of(c).await;
        (jobs[0].0 == "failed").then_some(())
    })
    .await;
    worker.shutdown().await.unwrap();
    assert_eq!(s.alert_causes(c).await, ["token_invalid", "event_too_old"]);
    assert_eq!(s.sandbox.requests().len(), 1);
}

#[tokio::test]
async fn retry_after_pauses_the_pixel_that_long_without_spending_an_attempt() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.sandbox.push_fault(Fault::RetryAfter { seconds: 1 });
    let worker = s.start_worker_with(tuning(&s));
    s.move_to(c, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let requests = s.sandbox.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1].received_at - requests[0].received_at >= chrono::Duration::seconds(1),
        "the retry waited for Retry-After"
    );
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT outcome, attempt FROM stagecast.deliveries ORDER BY id")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(
        rows,
        [("throttled".to_string(), 1), ("delivered".to_string(), 1)]
    );
}
