//! Write-back under production conditions (issue 12, finding 5; issue 13, item 6): an outcome
//! that cannot be written never stalls the other jobs, an alert the CRM's chat refuses is kept
//! with its reason, text Postgres rejects is sanitised, a write-back that fails on a database
//! error is retried and applied, and SIGTERM ends the worker whatever its write-back is doing.

mod support;

use stagecast_sandbox::Fault;
use support::stack::Stack;
use support::wait;

/// Status of the customer's stage_change job (live or archived), if it exists.
async fn status(s: &Stack, customer: i64) -> Option<String> {
    s.jobs_of(customer).await.first().map(|j| j.0.clone())
}

async fn has_status(s: &Stack, customer: i64, want: &str) -> bool {
    status(s, customer).await.as_deref() == Some(want)
}

/// Sessions of this test's database whose write-back (sql/complete_jobs.sql, archiving a done
/// job) waits for a lock. The maintenance loop's pruning of the archive may wait too: not it.
/// (pg_stat_activity keeps only the first 1 kB of a statement: matched on its first line.)
async fn write_backs_waiting_on_a_lock(s: &Stack) -> Vec<i32> {
    let first_line = include_str!("../sql/complete_jobs.sql")
        .lines()
        .next()
        .unwrap();
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' \
         AND starts_with(query, $1)",
    )
    .bind(first_line)
    .fetch_all(s.pool())
    .await
    .unwrap()
}

/// Stage 3 sends to TikTok, for which the CRM has no pixel: the job fails with an alert.
async fn seed_alerting_stage(s: &Stack) {
    s.exec(
        r#"INSERT INTO crm_stages (id, name, funnel_category, utm_event)
           VALUES (3, 'TikTok', 'fundo', '[{"platform":"tiktok","event_name":"Purchase"}]')"#,
    )
    .await;
}

#[tokio::test]
async fn an_alert_the_crm_chat_refuses_is_kept_with_its_reason_and_other_jobs_finish() {
    let s = Stack::new().await;
    s.seed_standard().await;
    seed_alerting_stage(&s).await;
    let alerting = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let delivered = s.customer(2, "b@example.com", "+5511999990002", None).await;
    // The CRM's real chat_messages has more columns than the contract: the chat insert of
    // stagecast.write_chat_alert fails with a not-null violation.
    s.exec("ALTER TABLE chat_messages ADD COLUMN sender_id bigint NOT NULL")
        .await;
    let worker = s.start_worker();
    s.move_to(alerting, 3).await;
    wait::wait_until(
        "the alerting job to be written back as failed",
        wait::DEADLINE,
        || has_status(&s, alerting, "failed"),
    )
    .await;
    s.move_to(delivered, 1).await;
    assert!(s.sandbox.wait_for_events(1, wait::DEADLINE).await);
    wait::wait_until(
        "the delivered job to be written back as done",
        wait::DEADLINE,
        || has_status(&s, delivered, "done"),
    )
    .await;
    let stats = worker.shutdown().await.unwrap();

    let alert: (String, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT cause, chat_message_id, chat_error FROM stagecast.alerts WHERE customer_id = $1",
    )
    .bind(alerting)
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(alert.0, "pixel_missing");
    assert_eq!(alert.1, None, "nothing reached the chat");
    let reason = alert.2.expect("the reason is kept with the alert");
    assert!(
        reason.contains("sender_id") && reason.contains("23502"),
        "{reason}"
    );
    assert!(s.chat_alerts(alerting).await.is_empty());
    assert_eq!(stats.get(&stats.chat_alert_errors), 1);
    assert_eq!(s.sandbox.requests().len(), 1, "nothing was sent twice");
}

#[tokio::test]
async fn a_nul_byte_in_an_api_error_is_stored_sanitised_and_other_jobs_finish() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let rejected = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let delivered = s.customer(2, "b@example.com", "+5511999990002", None).await;
    // Postgres refuses 0x00 in text (and \u0000 in jsonb): in the audit's error, the job's
    // last_error and the alert's details.
    s.sandbox.push_fault(Fault::Reject {
        http: 400,
        code: 100,
        subcode: Some(2804001),
        message: "Invalid parameter\0 in field\0".into(),
    });
    let worker = s.start_worker();
    s.move_to(rejected, 1).await;
    wait::wait_until(
        "the rejected job to be written back as failed",
        wait::DEADLINE,
        || has_status(&s, rejected, "failed"),
    )
    .await;
    s.move_to(delivered, 1).await;
    assert!(s.sandbox.wait_for_events(1, wait::DEADLINE).await);
    wait::wait_until(
        "the delivered job to be written back as done",
        wait::DEADLINE,
        || has_status(&s, delivered, "done"),
    )
    .await;
    worker.shutdown().await.unwrap();

    let last_error = s.jobs_of(rejected).await[0].1.clone().unwrap();
    assert!(
        last_error.contains("Invalid parameter\u{FFFD} in field\u{FFFD}"),
        "{last_error}"
    );
    let audit: (String, Option<String>, String) = sqlx::query_as(
        "SELECT outcome, error, response::text FROM stagecast.deliveries WHERE job_id = \
         (SELECT id FROM stagecast.jobs WHERE customer_id = $1)",
    )
    .bind(rejected)
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(audit.0, "failed");
    assert!(audit.1.unwrap().contains('\u{FFFD}'));
    assert!(!audit.2.contains("\\u0000"), "{}", audit.2);
    assert_eq!(s.alert_causes(rejected).await, ["api_error"]);
    assert_eq!(
        s.chat_alerts(rejected).await.len(),
        1,
        "the alert reached the chat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_that_cannot_be_written_are_isolated_and_the_rest_of_the_batch_applies() {
    let s = Stack::new().await;
    s.seed_standard().await;
    for (id, price) in [(1, 10.0), (2, 123.45), (3, 30.0)] {
        s.customer(
            id,
            &format!("c{id}@example.com"),
            "+5511999990001",
            Some(price),
        )
        .await;
    }
    // Customer 2's audit row is refused (its request shows its sale price); customer 3's job
    // row refuses every change (a broken trigger): neither may hold up customer 1.
    s.exec(
        r#"ALTER TABLE stagecast.deliveries ADD CONSTRAINT poison
             CHECK (request IS NULL OR request::text NOT LIKE '%123.45%');
           CREATE FUNCTION public.refuse_customer_3() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               -- Completion (DELETE, or an UPDATE giving the job back) is refused; the
               -- heartbeat and a rescuing claim are not.
               IF OLD.customer_id = 3 AND (TG_OP = 'DELETE' OR NEW.locked_by IS NULL) THEN
                   RAISE EXCEPTION 'job rows of customer 3 are frozen';
               END IF;
               RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
           END $$;
           CREATE TRIGGER refuse_customer_3 BEFORE UPDATE OR DELETE ON stagecast.jobs
               FOR EACH ROW EXECUTE FUNCTION public.refuse_customer_3();"#,
    )
    .await;
    let worker = s.start_worker();
    // One bulk move: the three jobs are claimed, sent and written back together.
    s.exec("UPDATE customers SET stage_id = 2 WHERE id IN (1, 2, 3)")
        .await;
    assert!(s.sandbox.wait_for_events(3, wait::DEADLINE).await);
    wait::wait_until("customers 1 and 2 to be done", wait::DEADLINE, || async {
        has_status(&s, 1, "done").await && has_status(&s, 2, "done").await
    })
    .await;
    wait::wait_until(
        "customer 3's outcome to be found unwritable",
        wait::DEADLINE,
        || async { worker.stats().get(&worker.stats().write_back_unwritable) >= 1 },
    )
    .await;
    let stats = worker.stats().clone();
    assert!(stats.get(&stats.write_back_degraded) >= 1, "customer 2");
    // Customer 2's outcome was written without the audit detail the database refused.
    let note: Option<String> =
        sqlx::query_scalar("SELECT note FROM stagecast.job_archive WHERE customer_id = 2")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert!(
        note.as_deref().unwrap_or("").contains("audit detail"),
        "{note:?}"
    );
    // Every delivered event is in the ledger, customer 3's too, so nothing is sent again
    // when its lease expires and the job is rescued.
    let ledger: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT event_id) FROM stagecast.deliveries WHERE outcome = 'delivered'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(ledger, 3);
    assert_eq!(status(&s, 3).await.as_deref(), Some("running"));
    // The unwritable job is no longer heart-beaten: its lease runs out instead of being held
    // forever by this worker.
    let lease = || async {
        sqlx::query_as::<_, (chrono::DateTime<chrono::Utc>, i32)>(
            "SELECT locked_until, attempts FROM stagecast.jobs WHERE customer_id = 3",
        )
        .fetch_one(s.pool())
        .await
        .unwrap()
    };
    let before = lease().await;
    let beats = stats.get(&stats.heartbeats);
    wait::wait_until("two more heartbeats", wait::DEADLINE, || async {
        stats.get(&stats.heartbeats) >= beats + 2
    })
    .await;
    let after = lease().await;
    // Unless the lease ran out and the job was rescued meanwhile (a new attempt), which
    // proves the same.
    assert!(
        after == before || after.1 > before.1,
        "the unwritable job's lease is no longer extended: {before:?} → {after:?}"
    );
    s.exec("DROP TRIGGER refuse_customer_3 ON stagecast.jobs")
        .await;
    worker.shutdown().await.unwrap();
    for r in s.sandbox.received() {
        let id = r.event["event_id"].as_str().unwrap();
        assert_eq!(s.sandbox.delivered_count(id), 1, "{id} sent once");
    }
}

#[tokio::test]
async fn a_write_back_that_fails_on_a_database_error_is_retried_and_applied() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    // Archiving the done job waits on this lock; the claim and the send do not.
    let mut locker = s.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE stagecast.job_archive IN SHARE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    assert!(s.sandbox.wait_for_events(1, wait::DEADLINE).await);
    // Kill the write-back's connection while it waits (a failover, an admin's
    // pg_terminate_backend): the statement fails with a database error.
    wait::wait_until(
        "the write-back's connection to be terminated",
        wait::DEADLINE,
        || async {
            let mut killed = false;
            for pid in write_backs_waiting_on_a_lock(&s).await {
                killed |= sqlx::query_scalar::<_, bool>("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .fetch_one(s.pool())
                    .await
                    .unwrap();
            }
            killed
        },
    )
    .await;
    locker.rollback().await.unwrap();
    wait::wait_until("the job to be written back as done", wait::DEADLINE, || {
        has_status(&s, c, "done")
    })
    .await;
    let stats = worker.shutdown().await.unwrap();
    assert!(stats.get(&stats.write_back_errors) >= 1);
    let event = &s.sandbox.requests()[0].event_ids[0];
    assert_eq!(s.sandbox.delivered_count(event), 1, "applied, not re-sent");
    let delivered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stagecast.deliveries WHERE outcome = 'delivered'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(delivered, 1, "the audit row was written once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_worker_while_its_write_back_cannot_finish_and_nothing_is_resent() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    // The job is claimed and delivered, but archiving it waits on this lock for as long as
    // the test holds it.
    let mut locker = s.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE stagecast.job_archive IN SHARE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let mut child = s
        .worker_command()
        .env("STAGECAST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the stagecast binary");
    s.move_to(c, 1).await;
    assert!(s.sandbox.wait_for_events(1, wait::DEADLINE).await);
    wait::wait_until(
        "the write-back to wait on the lock",
        wait::DEADLINE,
        || async { !write_backs_waiting_on_a_lock(&s).await.is_empty() },
    )
    .await;
    let pid = child.id().expect("the worker runs");
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exit = tokio::time::timeout(wait::DEADLINE, child.wait()).await;
    let status = exit
        .expect("SIGTERM ends the worker although its write-back cannot finish")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The delivered event reached the ledger before the worker gave up on the outcome.
    let ledger: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stagecast.deliveries WHERE outcome = 'delivered'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(ledger, 1);
    locker.rollback().await.unwrap();

    // Another worker finishes the job from the ledger: nothing is sent again.
    let worker = s.start_worker();
    wait::wait_until("the job to be done", wait::DEADLINE, || {
        has_status(&s, c, "done")
    })
    .await;
    let stats = worker.shutdown().await.unwrap();
    assert_eq!(s.sandbox.requests().len(), 1, "nothing was sent again");
    assert_eq!(stats.get(&stats.duplicate_deliveries), 0);
}
