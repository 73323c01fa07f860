//! Several workers on one database, and a worker killed with SIGKILL mid-batch: no event is
//! lost, none is sent twice by cooperating workers, and after a kill exactly the events whose
//! request was in flight (by the sandbox's record) are re-sent, with the same event_id and
//! event_time.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use support::stack::Stack;
use support::wait::{wait_until, DEADLINE};

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
    s.crm_exec(&format!(
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
async fn a_worker_killed_mid_batch_loses_nothing_and_resends_exactly_what_was_in_flight() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let n = 400;
    customers(&s, n).await;
    // Meta takes requests but answers only when told: the test decides what is in flight.
    s.sandbox.hold_answers();
    let mut child = s
        .worker_command()
        .args([
            "--batch-size",
            "40",
            "--concurrency",
            "80",
            "--meta-batch-size",
            "20",
            "--lease",
            "2s",
            "--meta-partner-agent",
            "doomed",
            // A 2 s lease holds a beat, its timeout and a request only with these (the
            // settings rules, docs/operations.md).
            "--heartbeat-interval",
            "200ms",
            "--meta-timeout",
            "1500ms",
            "--tiktok-timeout",
            "1500ms",
            "--google-ads-timeout",
            "750ms",
        ])
        .env("STAGECAST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the stagecast binary");
    s.crm_exec(&format!(
        "UPDATE customers SET stage_id = 1 WHERE id <= {n}"
    ))
    .await;
    // Three requests are answered (and so must be written back, never re-sent); at least one
    // more is in flight, its answer held back, when the worker dies.
    assert!(
        s.sandbox.wait_for_in_flight(1, DEADLINE).await,
        "the worker sends"
    );
    s.sandbox.allow_answers(3);
    wait_until(
        "three answered requests and another one in flight",
        DEADLINE,
        || async {
            let requests = s.sandbox.requests();
            let answered = requests.iter().filter(|r| r.answered_at.is_some()).count();
            answered == 3 && s.sandbox.in_flight() >= 1
        },
    )
    .await;
    // The worker writes back what it got an answer for; kill it only once it has, so the kill
    // lands between "answered and recorded" and "in flight".
    wait_until(
        "the worker wrote back every answered request",
        DEADLINE,
        || async {
            let answered: usize = s
                .sandbox
                .requests()
                .iter()
                .filter(|r| r.accepted() && r.answered_at.is_some())
                .map(|r| r.event_count)
                .sum();
            delivered_rows(&s).await == answered as i64
        },
    )
    .await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    let killed_at = chrono::Utc::now();
    // Jobs the dead worker held stay leased until their lease expires, then another worker
    // rescues them in its normal claim.
    let (_, running, _) = s.store.queue_counts().await.unwrap();
    assert!(running > 0, "the kill left leased jobs behind");

    s.sandbox.release_answers();
    let mut t = s.tuning();
    t.meta.partner_agent = "rescuer".into();
    let rescuer = s.start_worker_with(t);
    s.drained().await;
    let stats = rescuer.shutdown().await.unwrap();
    assert!(
        stats.get(&stats.rescued) > 0,
        "the rescuer reclaimed expired leases"
    );

    // By the sandbox's own record: which requests of the dead worker had their answer reach
    // it (answered before it died), and which were still in flight.
    let requests = s.sandbox.requests();
    let ids_of = |agent: &str, in_flight: Option<bool>| -> HashSet<String> {
        requests
            .iter()
            .filter(|r| r.accepted() && r.partner_agent.as_deref() == Some(agent))
            .filter(|r| {
                let unanswered = r.answered_at.is_none_or(|at| at > killed_at);
                in_flight.is_none_or(|want| want == unanswered)
            })
            .flat_map(|r| r.event_ids.iter().cloned())
            .collect()
    };
    let in_flight = ids_of("doomed", Some(true));
    let answered = ids_of("doomed", Some(false));
    let rescued = ids_of("rescuer", None);
    assert!(
        !answered.is_empty(),
        "requests were answered before the kill"
    );
    assert!(!in_flight.is_empty(), "requests were in flight at the kill");
    assert!(
        answered.is_disjoint(&rescued),
        "an event whose answer the dead worker had was sent again"
    );
    let resent: HashSet<String> = rescued
        .intersection(&(&in_flight | &answered))
        .cloned()
        .collect();
    assert_eq!(
        resent, in_flight,
        "exactly the events in flight at the kill were re-sent"
    );

    // Nothing lost, nothing else duplicated, and every re-send identical to the first copy.
    let received = s.sandbox.received();
    let mut copies: HashMap<String, Vec<&serde_json::Value>> = HashMap::new();
    for r in &received {
        copies
            .entry(r.event["event_id"].as_str().unwrap().to_string())
            .or_default()
            .push(&r.event);
    }
    assert_eq!(copies.len(), n as usize, "every stage change delivered");
    for (id, c) in &copies {
        let expected = if in_flight.contains(id) { 2 } else { 1 };
        assert_eq!(c.len(), expected, "copies of {id}");
        assert!(
            c.iter()
                .all(|e| e["event_time"] == c[0]["event_time"]
                    && e["event_name"] == c[0]["event_name"]),
            "a re-send must be identical"
        );
    }
    // The ledger holds one delivery per event: the dead worker recorded nothing of what it had
    // in flight, so the rescuer's copy is the first the ledger sees, and the duplicate-delivery
    // counter (duplicates the ledger can see) stays at 0. The re-sends are visible only here,
    // on Meta's side.
    assert_eq!(
        delivered_rows(&s).await,
        n,
        "the ledger records each event once"
    );
    assert_eq!(stats.get(&stats.duplicate_deliveries), 0);
    println!(
        "kill -9 mid-batch: {n} delivered, {} in flight at the kill and re-sent (same event_id and event_time)",
        in_flight.len()
    );
}

async fn delivered_rows(s: &Stack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM stagecast.deliveries WHERE outcome = 'delivered'")
        .fetch_one(s.pool())
        .await
        .unwrap()
}
