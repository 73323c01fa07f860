//! Bounded memory at any backlog: a bulk CRM change is queued in chunks of at most
//! `stagecast.stage_change_chunk` customers, each chunk expanded in its own statement; claims
//! withhold payloads over their per-job bound; an expansion cut off by a crash resumes without
//! losing or duplicating a change.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use stagecast::store::ClaimedJob;
use support::stack::{Stack, Tuning};
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
                .expand_stage_change_batch(b.id, "w", b.attempts, 0, 30.0)
                .await
                .unwrap()
                .expect("held by w")
                .created,
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

    // A worker claims four chunks with a 1 s lease, expands two (leasing 100 of the first's
    // jobs to itself at birth, as a worker with capacity free does), and dies holding the
    // others and those 100 jobs.
    let dead = s.store.claim_jobs(4, "dead-worker", 1.0).await.unwrap();
    assert_eq!(dead.len(), 4);
    for (b, lease) in dead[..2].iter().zip([100, 0]) {
        let expansion = s
            .store
            .expand_stage_change_batch(b.id, "dead-worker", b.attempts, lease, 1.0)
            .await
            .unwrap()
            .expect("held by the dead worker");
        assert_eq!(expansion.created, 250);
        assert_eq!(expansion.leased.len(), lease);
        assert!(expansion
            .leased
            .iter()
            .all(|j| j.attempts == 1 && j.kind == "stage_change"));
    }
    let mut held_by_the_dead: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM stagecast.jobs WHERE kind = 'stage_change' AND status = 'running' \
         AND locked_by = 'dead-worker'",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(held_by_the_dead.len(), 100);
    held_by_the_dead.extend(dead[2..].iter().map(|j| j.id));

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
    // Each job the dead worker held was rescued: claimed again, at attempt 2 or later. (On a loaded
    // machine the live worker may lose a lease of its own too and rescue that job as well, so
    // the rescue count is at least, not exactly, these.)
    let rescued_attempts: Vec<i32> =
        sqlx::query_scalar("SELECT attempts FROM stagecast.job_archive WHERE id = ANY($1)")
            .bind(&held_by_the_dead)
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(rescued_attempts.len(), 102);
    assert!(
        rescued_attempts.iter().all(|&a| a >= 2),
        "the two chunks the dead worker held and the 100 jobs leased to it at birth were rescued \
         (claimed again): {rescued_attempts:?}"
    );
    assert!(stats.rescued.load(std::sync::atomic::Ordering::Relaxed) >= 2 + 100);

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

/// Runs one worker tuned by `tuning` until the `n` customers of `chunks` bulk chunks are
/// delivered, checks that each job was claimed or leased at birth once and each customer got
/// one job and one event, and returns the jobs (claimed, leased at birth). A job whose lease the
/// worker lost on a loaded machine is claimed again once it expired: counted as rescued, and
/// the only way a job may take a second attempt.
async fn deliver_counting_leases(s: &Stack, tuning: Tuning, n: i64, chunks: u64) -> (u64, u64) {
    let worker = s.start_worker_with(tuning);
    wait_for_value(
        "every customer's event accepted",
        DEADLINE * 2,
        || async { s.sandbox.accepted_events() },
        |&a| a >= n as usize,
    )
    .await;
    s.drained().await;
    let stats = worker.shutdown().await.unwrap();
    let claimed = stats.claimed.load(std::sync::atomic::Ordering::Relaxed);
    let adopted = stats.adopted.load(std::sync::atomic::Ordering::Relaxed);
    let rescued = stats.rescued.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        claimed + adopted - rescued,
        chunks + n as u64,
        "the chunks and the jobs not leased at birth were claimed, the others not (or claimed \
         again after their lease lapsed)"
    );
    assert_eq!(
        s.sandbox.accepted_events(),
        n as usize,
        "no event sent twice"
    );
    let (jobs, customers, retried): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT customer_id), count(*) FILTER (WHERE attempts > 1) \
           FROM stagecast.job_archive WHERE kind = 'stage_change'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!((jobs, customers), (n, n));
    assert!(
        retried as u64 <= rescued,
        "no job took a second attempt but by a rescue ({retried} jobs, {rescued} rescued)"
    );
    (claimed, adopted)
}

/// The expanding worker leases a chunk's jobs to itself at birth, as far as its capacity is
/// free, and works on them without claiming them; the rest are claimed as usual. Every customer
/// still gets exactly one event and one job.
#[tokio::test]
async fn an_expanded_chunk_is_worked_by_its_expander_without_a_claim_within_its_capacity() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let n = 3_000;
    customers(&s, n).await;
    bulk_move(&s, n, 2, 5_000).await;
    assert_eq!(chunk_sizes(&s).await, vec![3_000]);

    let mut tuning = s.tuning();
    tuning.worker.concurrency = 1_000;
    tuning.worker.batch_size = 250;
    let (_, adopted) = deliver_counting_leases(&s, tuning, n, 1).await;
    assert!(
        adopted > 0 && adopted < 1_000,
        "leased at birth: some, never more than the capacity left by the claim ({adopted})"
    );
}

/// Chunks claimed together: the first one's jobs take the free capacity, and the later ones
/// wait for capacity to come back (the fair semaphore gives it to them before the next claim)
/// and lease their jobs too, instead of queueing them all pending to be claimed one by one.
/// Before, every job of the second and third chunks was claimed (adopted stayed below 1,000).
#[tokio::test]
async fn chunks_claimed_together_wait_for_capacity_and_lease_their_jobs_at_birth() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let n = 3_000;
    customers(&s, n).await;
    bulk_move(&s, n, 2, 1_000).await;
    assert_eq!(chunk_sizes(&s).await, vec![1_000, 1_000, 1_000]);

    let mut tuning = s.tuning();
    tuning.worker.concurrency = 1_000;
    tuning.worker.batch_size = 250;
    // Long enough that a loaded machine does not turn the wait into a timeout; the default
    // (2 s) only bounds how long a chunk may wait for a worker busy with slow destinations.
    tuning.worker.capacity_patience = Duration::from_secs(60);
    let (claimed, adopted) = deliver_counting_leases(&s, tuning, n, 3).await;
    assert!(
        adopted >= 1_900,
        "the first chunk leased what the claim left free (997), each later one at least half the \
         worker's capacity ({adopted} leased at birth, {claimed} claimed)"
    );
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

/// `--claim-max-bytes` reaches the worker `stagecast run` starts: a stage change padded past
/// the default per-job bound (which would withhold it: "too large to be claimed") is claimed
/// whole and delivered under a larger budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_budget_flag_reaches_the_worker() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.move_to(1, 1).await;
    s.exec(
        "UPDATE stagecast.jobs SET payload = payload || jsonb_build_object('padding', repeat('x', 20000)) \
          WHERE kind = 'stage_change'",
    )
    .await;
    let size: i32 = sqlx::query_scalar(
        "SELECT octet_length(payload::text) FROM stagecast.jobs WHERE kind = 'stage_change'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert!(size > stagecast::store::DEFAULT_JOB_PAYLOAD_MAX, "{size}");
    // 1 MiB over 10 jobs: about 100 KiB a job.
    let mut worker = s
        .worker_command()
        .args(["--batch-size", "10"])
        .env("STAGECAST_CLAIM_MAX_BYTES", "1MiB")
        .env("STAGECAST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the stagecast binary");
    assert!(
        s.sandbox.wait_for_events(1, DEADLINE).await,
        "the padded stage change is delivered"
    );
    worker.kill().await.unwrap();
    let failed: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(last_error, '') FROM stagecast.jobs WHERE status = 'failed'",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
}

/// A claim budget of nothing, or too small for the batch, is refused before connecting, naming
/// the flag and what would fit.
#[tokio::test]
async fn a_claim_budget_of_zero_or_too_small_for_the_batch_is_refused() {
    for (args, says) in [
        (&["--claim-max-bytes", "0"][..], "must be more than 0 bytes"),
        (
            &["--claim-max-bytes", "64KiB", "--batch-size", "1000"][..],
            "lower --batch-size to at most 64",
        ),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_stagecast"))
            .env_clear()
            .arg("run")
            .args(args)
            // Never reached: the settings are checked before connecting.
            .args(["--database-url", "postgres://stagecast@127.0.0.1:1/none"])
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--claim-max-bytes") && stderr.contains(says),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("could not connect"), "{stderr}");
    }
}

#[tokio::test]
async fn a_worker_holds_at_most_a_few_chunks_and_leaves_the_rest_to_the_others() {
    let s = Stack::new().await;
    s.seed_standard().await;
    customers(&s, 16).await;
    s.move_to(1, 1).await;
    bulk_move(&s, 16, 2, 2).await;
    assert_eq!(chunk_sizes(&s).await.len(), 8);
    let claim = |worker: &'static str| {
        let store = s.store.clone();
        async move {
            store
                .claim_jobs_fair(1000, worker, 60.0, 4_000, 2)
                .await
                .unwrap()
        }
    };
    let count = |jobs: &[ClaimedJob], kind: &str| jobs.iter().filter(|j| j.kind == kind).count();
    // A's claim takes two chunks, and the stage change queued before them.
    let a = claim("a").await;
    assert_eq!(count(&a, "stage_change_batch"), 2, "{a:?}");
    assert_eq!(count(&a, "stage_change"), 1);
    assert!(
        claim("a").await.is_empty(),
        "A holds two chunks unexpanded: it takes no more"
    );
    let b = claim("b").await;
    assert_eq!(count(&b, "stage_change_batch"), 2, "the next two go to B");
    // A expanded one: it takes one more chunk, and the stage changes that chunk queued.
    let first = a.iter().find(|j| j.kind == "stage_change_batch").unwrap();
    let expansion = s
        .store
        .expand_stage_change_batch(first.id, "a", first.attempts, 0, 60.0)
        .await
        .unwrap()
        .expect("held by A");
    assert_eq!(expansion.created, 2);
    let again = claim("a").await;
    assert_eq!(count(&again, "stage_change_batch"), 1, "{again:?}");
    assert_eq!(count(&again, "stage_change"), 2);
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stagecast.jobs WHERE kind = 'stage_change_batch' AND status = 'pending'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(pending, 3, "left for whichever worker has room");
}

/// The workers holding a bulk change's chunks that are not expanded yet, with how many each.
async fn chunk_holders(s: &Stack) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT locked_by, count(*) FROM stagecast.jobs \
          WHERE kind = 'stage_change_batch' AND status = 'running' GROUP BY locked_by ORDER BY locked_by",
    )
    .fetch_all(s.pool())
    .await
    .expect("chunk holders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_chunks_of_one_bulk_change() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let n = 16;
    customers(&s, n).await;
    let a = s.start_worker();
    let b = s.start_worker();
    for w in [&a, &b] {
        support::wait::wait_until("both workers idle", DEADLINE, || async {
            w.stats().get(&w.stats().idle_waits) > 0
        })
        .await;
    }
    // Every expansion waits (it archives its chunk) until the test lets go: what each worker
    // claimed stays visible in jobs.locked_by meanwhile.
    let mut archive = s.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE stagecast.job_archive IN SHARE MODE")
        .execute(&mut *archive)
        .await
        .unwrap();
    bulk_move(&s, n, 2, 2).await;
    assert_eq!(chunk_sizes(&s).await.len(), 8);
    let holders = wait_for_value(
        "both workers to hold chunks",
        DEADLINE,
        || chunk_holders(&s),
        |h| h.len() == 2,
    )
    .await;
    for (worker, held) in &holders {
        assert!(
            *held <= stagecast::queue::WorkerConfig::default().chunks_held_max as i64,
            "{worker} holds {held} chunks: {holders:?}"
        );
    }
    archive.rollback().await.unwrap();

    assert!(
        s.sandbox.wait_for_events(n as usize, DEADLINE).await,
        "every customer's event accepted"
    );
    s.drained().await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    let expanded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stagecast.job_archive WHERE kind = 'stage_change_batch' AND note = 'expanded'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(expanded, 8);
    let ids: HashSet<String> = s
        .sandbox
        .received()
        .iter()
        .map(|r| r.event["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), n as usize, "one event per customer");
}
