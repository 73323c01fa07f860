//! Bounded memory at any backlog: a bulk CRM change is queued in chunks of at most
//! `stagecast.stage_change_chunk` customers, each chunk expanded in its own statement; claims
//! withhold payloads over their per-job bound; an expansion cut off by a crash resumes without
//! losing or duplicating a change.

mod support;

use std::collections::HashSet;

use stagecast::store::ClaimedJob;
use support::stack::Stack;
use support::wait::{wait_for_value, DEADLINE};

/// `n` customers 1..=n in campaign 1, inserted in one statement as a CRM import would.
async fn customers(s: &Stack, n: i64) {
    sqlx::query(
        "INSERT INTO customers (id, name, email, phone, utm_campaign_id, sale_price, client_ip) \
         SELECT g, 'Cliente ' || g, 'c' || g || '@example.com', '+55119' || lpad(g::text, 8, '0'), 1, 10, '200.150.10.20' \
           FROM generate_series(1, $1::bigint) g",
    )
    .bind(n)
    .execute(s.crm())
    .await
    .expect("insert customers");
}

/// The CRM moves customers 1..=n to `stage` in one UPDATE, its session setting the chunk size
/// (as `ALTER DATABASE … SET stagecast.stage_change_chunk` would for every session).
async fn bulk_move(s: &Stack, n: i64, stage: i64, chunk: i64) {
    let mut tx = s.crm().begin().await.expect("begin");
    sqlx::query("SELECT set_config('stagecast.stage_change_chunk', $1, true)")
        .bind(chunk.to_string())
        .execute(&mut *tx)
        .await
        .expect("set the chunk size");
    sqlx::query("UPDATE customers SET stage_id = $2 WHERE id BETWEEN 1 AND $1")
        .bind(n)
        .bind(stage)
        .execute(&mut *tx)
        .await
        .expect("CRM update succeeds");
    tx.commit().await.expect("commit");
}

/// Customers per queued batch job, in id order.
async fn chunk_sizes(s: &Stack) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT jsonb_array_length(payload -> 'customer_ids') FROM stagecast.jobs \
         WHERE kind = 'stage_change_batch' ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .expect("batch jobs")
}

/// Bytes of payload a claim returned, as the database sends them (jsonb travels as its text).
async fn claimed_bytes(s: &Stack, jobs: &[ClaimedJob]) -> i64 {
    let ids: Vec<i64> = jobs
        .iter()
        .filter(|j| !j.payload.is_null())
        .map(|j| j.id)
        .collect();
    sqlx::query_scalar(
        "SELECT coalesce(sum(octet_length(payload::text)), 0)::bigint FROM stagecast.jobs WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_one(s.pool())
    .await
    .expect("payload bytes")
}

#[tokio::test]
async fn a_bulk_update_is_queued_and_expanded_in_chunks_of_the_configured_size() {
    let s = Stack::new().await;
    s.seed_standard().await;
    customers(&s, 20_000).await;
    bulk_move(&s, 20_000, 2, 3_000).await;
    let sizes = chunk_sizes(&s).await;
    assert_eq!(sizes, vec![3000, 3000, 3000, 3000, 3000, 3000, 2000]);

    // The chunks are claimed without their payloads (each is far over the per-job bound), so
    // the claim's bytes stay within limit × bound.
    let max = 4_000;
    let batches = s
        .store
        .claim_jobs_bounded(100, "w", 60.0, max)
        .await
        .unwrap();
    assert_eq!(batches.len(), 7);
    assert!(
        batches.iter().all(|j| j.payload.is_null()),
        "a chunk's payload is never returned by the claim"
    );
    // Each chunk becomes at most its own size in jobs, in its own statement.
    let mut created = Vec::new();
    for b in &batches {
        created.push(
            s.store
                .expand_stage_change_batch(b.id, "w", b.attempts)
                .await
                .unwrap()
                .expect("held by w"),
        );
    }
    assert_eq!(created, vec![3000, 3000, 3000, 3000, 3000, 3000, 2000]);
    let (jobs, customers): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT customer_id) FROM stagecast.jobs WHERE kind = 'stage_change'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!((jobs, customers), (20_000, 20_000));

    // Stage changes are small: returned whole, 1,000 per claim within 1,000 × the bound.
    let mut claimed = 0;
    while claimed < 20_000 {
        let jobs = s
            .store
            .claim_jobs_bounded(1000, "w", 60.0, max)
            .await
            .unwrap();
        assert!(!jobs.is_empty(), "{claimed} of 20000 claimed");
        assert!(jobs.iter().all(|j| !j.payload.is_null()));
        assert!(claimed_bytes(&s, &jobs).await <= jobs.len() as i64 * i64::from(max));
        claimed += jobs.len();
    }
}

#[tokio::test]
async fn a_claim_withholds_every_payload_over_its_bound() {
    let s = Stack::new().await;
    s.seed_standard().await;
    customers(&s, 3).await;
    for id in 1..=3 {
        s.move_to(id, 1).await;
    }
    let size: i32 = sqlx::query_scalar(
        "SELECT max(octet_length(payload::text)) FROM stagecast.jobs WHERE kind = 'stage_change'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    // One byte short: nothing of it reaches the worker, and the job is still leased.
    let jobs = s
        .store
        .claim_jobs_bounded(10, "w", 60.0, size - 1)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3);
    let withheld = jobs.iter().filter(|j| j.payload.is_null()).count();
    assert!(withheld >= 1, "the largest payload is withheld");
    assert_eq!(claimed_bytes(&s, &jobs).await, {
        // What was returned is exactly the payloads within the bound.
        let ids: Vec<i64> = jobs
            .iter()
            .filter(|j| !j.payload.is_null())
            .map(|j| j.id)
            .collect();
        sqlx::query_scalar::<_, i64>(
            "SELECT coalesce(sum(octet_length(payload::text)), 0)::bigint FROM stagecast.jobs \
             WHERE id = ANY($1) AND octet_length(payload::text) <= $2",
        )
        .bind(ids)
        .bind(size - 1)
        .fetch_one(s.pool())
        .await
        .unwrap()
    });
}

#[tokio::test]
async fn an_expansion_cut_off_by_a_crash_resumes_and_every_customer_gets_exactly_one_event() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let n = 2_000;
    customers(&s, n).await;
    bulk_move(&s, n, 2, 250).await;
    assert_eq!(chunk_sizes(&s).await.len(), 8);

    // A worker claims four chunks with a 1 s lease, expands two, and dies holding the others.
    let dead = s.store.claim_jobs(4, "dead-worker", 1.0).await.unwrap();
    assert_eq!(dead.len(), 4);
    for b in &dead[..2] {
        assert_eq!(
            s.store
                .expand_stage_change_batch(b.id, "dead-worker", b.attempts)
                .await
                .unwrap(),
            Some(250)
        );
    }

    // A live worker takes the rest up (the two held chunks once their lease expires).
    // Small claims: on a loaded machine a debug build works a 1,000-job batch slowly.
    let mut tuning = s.tuning();
    tuning.worker.batch_size = 250;
    let worker = s.start_worker_with(tuning);
    let accepted = wait_for_value(
        "every customer's event accepted",
        DEADLINE * 3,
        || async { s.sandbox.accepted_events() },
        |&a| a >= n as usize,
    )
    .await;
    s.drained().await;
    let stats = worker.shutdown().await.unwrap();
    assert_eq!(accepted, n as usize, "no event sent twice");
    assert_eq!(
        stats.rescued.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "the two chunks the dead worker held were rescued"
    );

    // Exactly one job per customer, all done; every chunk expanded once.
    let per_customer: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT customer_id, count(*) FROM stagecast.job_archive WHERE kind = 'stage_change' \
         GROUP BY customer_id ORDER BY customer_id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(per_customer.len(), n as usize);
    assert!(per_customer.iter().all(|&(_, jobs)| jobs == 1));
    let expanded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stagecast.job_archive WHERE kind = 'stage_change_batch' AND note = 'expanded'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(expanded, 8);
    // Exactly one delivered event per customer in the ledger.
    let (delivered, events, customers): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT d.event_id), count(DISTINCT j.customer_id) \
           FROM stagecast.deliveries d JOIN stagecast.job_archive j ON j.id = d.job_id \
          WHERE d.outcome = 'delivered'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!((delivered, events, customers), (n, n, n));
    let customer_ids: HashSet<i64> = per_customer.iter().map(|&(c, _)| c).collect();
    assert_eq!(customer_ids, (1..=n).collect::<HashSet<i64>>());
}

#[tokio::test]
async fn the_first_chunks_are_delivered_while_a_later_one_is_not_yet_expanded() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let n = 2_000;
    customers(&s, n).await;
    bulk_move(&s, n, 2, 500).await;
    // The last chunk stays unexpanded for as long as this transaction holds its row (claims
    // skip locked rows): the superuser stands in for an expansion still running, which no role
    // of a deployment could stage on purpose.
    let last: i64 =
        sqlx::query_scalar("SELECT max(id) FROM stagecast.jobs WHERE kind = 'stage_change_batch'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    let mut hold = s.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM stagecast.jobs WHERE id = $1 FOR UPDATE")
        .bind(last)
        .execute(&mut *hold)
        .await
        .unwrap();
    let worker = s.start_worker();
    wait_for_value(
        "the first three chunks' events accepted",
        DEADLINE,
        || async { s.sandbox.accepted_events() },
        |&a| a >= 1_500,
    )
    .await;
    let unexpanded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stagecast.jobs WHERE kind = 'stage_change_batch' AND status = 'pending'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(unexpanded, 1, "the last chunk is still queued whole");
    assert_eq!(s.sandbox.accepted_events(), 1_500);
    hold.commit().await.unwrap();
    wait_for_value(
        "every event accepted",
        DEADLINE,
        || async { s.sandbox.accepted_events() },
        |&a| a >= n as usize,
    )
    .await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    assert_eq!(s.sandbox.accepted_events(), n as usize);
}
