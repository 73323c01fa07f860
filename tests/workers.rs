//! Several workers on one database, and a worker killed with SIGKILL mid-batch: no event is
//! lost, none is sent twice by cooperating workers, and a re-send after a kill carries the same
//! event_id and event_time (counted and reported).

mod support;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use support::stack::{Stack, KEYS};

/// `n` customers in campaign 1, inserted in one statement.
async fn customers(s: &Stack, n: i64) {
    sqlx::query(
        "INSERT INTO customers (id, name, email, phone, utm_campaign_id) \
         SELECT g, 'Cliente ' || g, 'c' || g || '@example.com', '+55 11 9' || lpad(g::text, 8, '0'), 1 \
           FROM generate_series(1, $1::bigint) g",
    )
    .bind(n)
    .execute(s.pool())
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_database_never_send_an_event_twice() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let n = 600;
    customers(&s, n).await;
    s.sandbox.set_latency(Duration::from_millis(5));
    let mut t = s.tuning();
    t.worker.batch_size = 20;
    t.worker.concurrency = 60;
    t.meta.max_batch = 10;
    let a = s.start_worker_with(t.clone());
    let b = s.start_worker_with(t);
    s.exec(&format!(
        "UPDATE customers SET stage_id = 1 WHERE id <= {n}"
    ))
    .await;
    assert!(
        s.sandbox
            .wait_for_events(n as usize, Duration::from_secs(60))
            .await,
        "all events arrive"
    );
    s.drained().await;
    let (sa, sb) = (a.shutdown().await.unwrap(), b.shutdown().await.unwrap());

    let received = s.sandbox.received();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &received {
        *counts
            .entry(r.event["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        counts.len(),
        n as usize,
        "one distinct event per stage change"
    );
    assert!(counts.values().all(|&c| c == 1), "an event was sent twice");
    let claimed = |st: &stagecast::queue::WorkerStats| st.get(&st.claimed);
    assert!(
        claimed(&sa) > 0 && claimed(&sb) > 0,
        "both workers took part ({} / {})",
        claimed(&sa),
        claimed(&sb)
    );
    assert_eq!(sa.get(&sa.fenced_out) + sb.get(&sb.fenced_out), 0);
    let archived: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stagecast.job_archive WHERE kind = 'stage_change'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(archived, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing_and_resends_only_identical_events() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let n = 400;
    customers(&s, n).await;
    // Slow answers keep requests in flight, so the kill lands mid-batch.
    s.sandbox.set_latency(Duration::from_millis(150));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stagecast"))
        .args([
            "run",
            "--metrics-addr",
            "",
            "--batch-size",
            "40",
            "--concurrency",
            "80",
            "--meta-batch-size",
            "20",
            "--lease",
            "2s",
            // A 2 s lease holds a beat, its timeout and a request only with these (the
            // settings rules, docs/operations.md).
            "--heartbeat-interval",
            "200ms",
            "--meta-timeout",
            "1500ms",
            "--poll-interval",
            "100ms",
        ])
        .env("DATABASE_URL", &s.db.url)
        .env("STAGECAST_META_GRAPH_URL", s.sandbox.base_url())
        .env("STAGECAST_KEYS", KEYS)
        .env("STAGECAST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the stagecast binary");
    s.exec(&format!(
        "UPDATE customers SET stage_id = 1 WHERE id <= {n}"
    ))
    .await;
    assert!(
        s.sandbox.wait_for_events(60, Duration::from_secs(30)).await,
        "the first worker delivers some events"
    );
    let killed_at = chrono::Utc::now();
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    let at_kill = s.sandbox.accepted_events();
    assert!(
        at_kill < n as usize,
        "killed before finishing ({at_kill} of {n})"
    );
    // Jobs the dead worker held stay leased until their lease expires, then another worker
    // rescues them in its normal claim.
    let (_, running, _) = s.store.queue_counts().await.unwrap();
    assert!(running > 0, "the kill left leased jobs behind");

    s.sandbox.set_latency(Duration::ZERO);
    let rescuer = s.start_worker();
    assert!(
        s.sandbox
            .wait_for_events(n as usize, Duration::from_secs(60))
            .await,
        "everything is delivered after the lease expires"
    );
    s.drained().await;
    let stats = rescuer.shutdown().await.unwrap();
    assert!(
        stats.get(&stats.rescued) > 0,
        "the rescuer reclaimed expired leases"
    );

    let received = s.sandbox.received();
    let mut copies: HashMap<String, Vec<&serde_json::Value>> = HashMap::new();
    for r in &received {
        copies
            .entry(r.event["event_id"].as_str().unwrap().to_string())
            .or_default()
            .push(&r.event);
    }
    assert_eq!(copies.len(), n as usize, "every stage change delivered");
    let resent: Vec<_> = copies.values().filter(|c| c.len() > 1).collect();
    for c in &resent {
        assert!(
            c.iter()
                .all(|e| e["event_time"] == c[0]["event_time"]
                    && e["event_name"] == c[0]["event_name"]),
            "a re-send must be identical"
        );
    }
    // Only requests in flight at the kill may be re-sent: the first copy of every re-sent event
    // arrived less than one response delay (150 ms, plus slack) before the kill, i.e. its
    // answer had not reached the worker yet. Requests answered earlier were written back.
    let requests = s.sandbox.requests();
    for c in &resent {
        let id = c[0]["event_id"].as_str().unwrap();
        let first = requests
            .iter()
            .find(|r| r.event_ids.iter().any(|e| e == id))
            .expect("the request that carried it");
        let before_kill = killed_at - first.received_at;
        assert!(
            before_kill < chrono::Duration::milliseconds(400),
            "event re-sent although its first request arrived {before_kill} before the kill"
        );
    }
    assert!(resent.len() <= 80, "{} events re-sent", resent.len());
    println!("kill -9 mid-batch: {n} delivered, {} re-sent after the kill (same event_id and event_time)", resent.len());
    let delivered_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stagecast.deliveries WHERE outcome = 'delivered'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(delivered_rows, n, "the ledger records each event once");
}
