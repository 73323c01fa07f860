//! Admin actions on jobs: `stagecast jobs list | show | replay | cancel` (run as the built
//! binary) and the SQL functions a CRM admin screen calls (`stagecast.replay_job`,
//! `replay_jobs`, `cancel_job`, `cancel_jobs`), against a real Postgres and the Graph sandbox.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgListener;
use stagecast::store::{OutcomeRow, WriteBack};
use stagecast_sandbox::Fault;
use support::stack::{Stack, PIXEL, TOKEN};
use support::wait;

/// Runs `stagecast <args>` against the stack's database; (success, stdout, stderr).
async fn cli(s: &Stack, args: &[&str]) -> (bool, String, String) {
    let out = support::process::stagecast()
        .args(args)
        // As the admin role (sql/roles/admin.sql): what `stagecast jobs` needs, no more.
        .env("DATABASE_URL", &s.db.admin_url)
        .env("USER", "tester")
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like `cli`, but the command must succeed; returns stdout.
async fn cli_ok(s: &Stack, args: &[&str]) -> String {
    let (ok, stdout, stderr) = cli(s, args).await;
    assert!(ok, "stagecast {args:?} failed:\n{stderr}\n{stdout}");
    stdout
}

/// A job inserted as the worker would have left it. Returns its id. Put straight into the
/// queue by the superuser: no role of a deployment inserts jobs with a made-up history.
struct JobSpec<'a> {
    status: &'a str,
    kind: &'a str,
    customer: i64,
    destination: Option<&'a str>,
    dedup_key: Option<&'a str>,
    attempts: i32,
    created_hours_ago: i32,
}

impl Default for JobSpec<'_> {
    fn default() -> Self {
        JobSpec {
            status: "failed",
            kind: "stage_change",
            customer: 1,
            destination: Some("facebook:111"),
            dedup_key: None,
            attempts: 12,
            created_hours_ago: 1,
        }
    }
}

async fn insert_job(s: &Stack, j: JobSpec<'_>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO stagecast.jobs (kind, payload, status, attempts, customer_id, destinations, dedup_key,
                                     last_error, created_at, finished_at)
         VALUES ($1, jsonb_build_object('customer_id', $3), $2, $6, $3, CASE WHEN $4::text IS NULL THEN NULL ELSE ARRAY[$4] END,
                 $5, CASE $2 WHEN 'failed' THEN 'gave up: Meta answered HTTP 500' END,
                 now() - make_interval(hours => $7),
                 CASE WHEN $2 IN ('failed', 'cancelled') THEN now() END)
         RETURNING id",
    )
    .bind(j.kind)
    .bind(j.status)
    .bind(j.customer)
    .bind(j.destination)
    .bind(j.dedup_key)
    .bind(j.attempts)
    .bind(j.created_hours_ago)
    .fetch_one(s.pool())
    .await
    .expect("insert job")
}

async fn archive_job(s: &Stack, id: i64, customer: i64, kind: &str) {
    sqlx::query(
        "INSERT INTO stagecast.job_archive (id, kind, payload, attempts, customer_id, destinations, created_at, note)
         VALUES ($1, $2, '{}', 1, $3, ARRAY['facebook:111'], now() - interval '1 hour', '1 delivered, 0 already delivered earlier')",
    )
    .bind(id)
    .bind(kind)
    .bind(customer)
    .execute(s.pool())
    .await
    .expect("archive job");
}

/// Meta rejecting the one event of a request (code 100, a validation subcode): permanent for it.
fn rejected() -> Fault {
    Fault::Reject {
        http: 400,
        code: 100,
        subcode: Some(2804001),
        message: "Invalid parameter".into(),
    }
}

async fn status_of(s: &Stack, id: i64) -> String {
    sqlx::query_scalar(
        "SELECT status FROM stagecast.jobs WHERE id = $1 UNION ALL SELECT 'done' FROM stagecast.job_archive WHERE id = $1",
    )
    .bind(id)
    .fetch_one(s.pool())
    .await
    .expect("job exists")
}

/// Waits until the job reaches `status`.
async fn wait_for_status(s: &Stack, id: i64, status: &str) {
    wait::wait_for_value(
        &format!("job {id} to become {status} (the value is its status)"),
        wait::DEADLINE,
        || status_of(s, id),
        |now| now == status,
    )
    .await;
}

/// The only stage_change job of a customer (live or archived), once it exists.
async fn job_of(s: &Stack, customer: i64) -> i64 {
    wait::wait_for(
        &format!("a stage_change job for customer {customer}"),
        wait::DEADLINE,
        || async {
            sqlx::query_scalar(
                "SELECT id FROM stagecast.jobs WHERE customer_id = $1 AND kind = 'stage_change'
                 UNION ALL SELECT id FROM stagecast.job_archive WHERE customer_id = $1 AND kind = 'stage_change'",
            )
            .bind(customer)
            .fetch_optional(s.pool())
            .await
            .unwrap()
        },
    )
    .await
}

/// (actor, action, reason, job_ids, count) of every audit row, in order.
type AuditRow = (String, String, Option<String>, Vec<i64>, i32);

async fn audit(s: &Stack) -> Vec<AuditRow> {
    sqlx::query_as(
        "SELECT actor, action, reason, job_ids, count FROM stagecast.admin_audit ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_failed_job_replayed_by_id_is_woken_by_notify_and_delivered_with_a_fresh_budget() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    // Meta rejects the event (an event-level error): the job fails at once with an alert. (An
    // invalid token would hold the job instead, tests/meta_holds.rs.)
    s.sandbox.push_fault(rejected());
    // Polling every hour: only a NOTIFY can wake this worker within the test.
    let mut t = s.tuning();
    t.worker.poll_interval = Duration::from_secs(3600);
    let worker = s.start_worker_with(t);
    s.move_to(c, 1).await;
    let id = job_of(&s, c).await;
    wait_for_status(&s, id, "failed").await;
    assert_eq!(s.alert_causes(c).await, ["api_error"]);

    // The admin fixes the cause (here: the sandbox accepts again) and replays.
    let out = cli_ok(
        &s,
        &[
            "jobs",
            "replay",
            &id.to_string(),
            "--actor",
            "ana",
            "--reason",
            "payload fixed",
        ],
    )
    .await;
    assert!(out.contains(&format!("job {id} replayed")), "{out}");
    assert!(
        s.sandbox.wait_for_events(1, Duration::from_secs(10)).await,
        "the worker was woken and delivered"
    );
    wait_for_status(&s, id, "done").await;
    worker.shutdown().await.unwrap();

    // Attempt numbers keep counting: attempt 2 consulted the ledger and is the one delivered.
    let rows: Vec<(i32, String)> = sqlx::query_as(
        "SELECT attempt, outcome FROM stagecast.deliveries WHERE job_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        [(1, "failed".to_string()), (2, "delivered".to_string())]
    );
    assert_eq!(
        audit(&s).await,
        [(
            "ana".to_string(),
            "replay".to_string(),
            Some("payload fixed".to_string()),
            vec![id],
            1
        )]
    );
}

#[tokio::test]
async fn replay_by_filter_counts_in_a_dry_run_then_replays_in_chunks_with_one_audit_row_each() {
    let s = Stack::new().await;
    let mut target = Vec::new();
    for customer in 1..=5 {
        target.push(
            insert_job(
                &s,
                JobSpec {
                    customer,
                    ..JobSpec::default()
                },
            )
            .await,
        );
    }
    let other_pixel = insert_job(
        &s,
        JobSpec {
            destination: Some("facebook:222"),
            ..JobSpec::default()
        },
    )
    .await;
    let cancelled = insert_job(
        &s,
        JobSpec {
            status: "cancelled",
            ..JobSpec::default()
        },
    )
    .await;
    let too_old = insert_job(
        &s,
        JobSpec {
            created_hours_ago: 72,
            ..JobSpec::default()
        },
    )
    .await;
    // The same stage change is queued again: the queue holds one pending job per dedup key.
    let twin = insert_job(
        &s,
        JobSpec {
            customer: 9,
            dedup_key: Some("stage_change:9:1"),
            ..JobSpec::default()
        },
    )
    .await;
    insert_job(
        &s,
        JobSpec {
            status: "pending",
            customer: 9,
            dedup_key: Some("stage_change:9:1"),
            destination: None,
            attempts: 0,
            ..JobSpec::default()
        },
    )
    .await;
    let filter = ["--status", "failed", "--pixel", "111", "--since", "1day"];

    let dry = cli_ok(
        &s,
        &[&["jobs", "replay", "--dry-run"][..], &filter[..]].concat(),
    )
    .await;
    assert!(dry.contains("5 failed job(s) would be replayed"), "{dry}");
    assert!(dry.contains("1 more match but would stay"), "{dry}");
    assert!(
        audit(&s).await.is_empty(),
        "a dry run changes and records nothing"
    );
    assert_eq!(status_of(&s, target[0]).await, "failed");

    let (ok, _, err) = cli(&s, &[&["jobs", "replay"][..], &filter[..]].concat()).await;
    assert!(!ok && err.contains("--reason is required"), "{err}");

    let out = cli_ok(
        &s,
        &[
            &["jobs", "replay"][..],
            &filter[..],
            &["--reason", "pixel fixed", "--chunk-size", "2"][..],
        ]
        .concat(),
    )
    .await;
    assert!(out.contains("5 job(s) replayed"), "{out}");
    assert!(out.contains("1 matching job(s) left as they were"), "{out}");

    for &id in &target {
        let (status, attempts, max_attempts, budget, last_error, locked, run_at_due): (
            String,
            i32,
            i32,
            Option<i32>,
            String,
            bool,
            bool,
        ) = sqlx::query_as(
            "SELECT status, attempts, max_attempts, attempt_budget, last_error, locked_by IS NOT NULL,
                    run_at <= now() FROM stagecast.jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(s.pool())
        .await
        .unwrap();
        assert_eq!(status, "pending");
        // A fresh budget of 12 attempts; the attempt count itself keeps going (see the
        // migration: the ledger and the write-back fence depend on it).
        assert_eq!((attempts, max_attempts, budget), (12, 24, Some(12)));
        assert_eq!(last_error, "replayed: gave up: Meta answered HTTP 500");
        assert!(!locked && run_at_due);
    }
    for (id, status) in [
        (other_pixel, "failed"),
        (cancelled, "cancelled"),
        (too_old, "failed"),
        (twin, "failed"),
    ] {
        assert_eq!(status_of(&s, id).await, status, "job {id} is untouched");
    }
    // One audit row per chunk of 2, with the filter and the jobs it changed.
    let rows = audit(&s).await;
    assert_eq!(
        rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        [2, 2, 1],
        "{rows:?}"
    );
    assert!(rows
        .iter()
        .all(|r| r.0 == "tester" && r.1 == "replay" && r.2.as_deref() == Some("pixel fixed")));
    let replayed: BTreeSet<i64> = rows.iter().flat_map(|r| r.3.clone()).collect();
    assert_eq!(replayed, target.iter().copied().collect());
    let filters: Vec<Value> =
        sqlx::query_scalar("SELECT filter FROM stagecast.admin_audit ORDER BY id")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(filters[0]["pixel"], "111");
    assert_eq!(filters[0]["status"], "failed");
    assert!(filters[0]["since"].is_string());

    // A wide filter asks first; without a terminal to ask on, nothing happens without --yes.
    sqlx::query(
        "INSERT INTO stagecast.jobs (kind, payload, status, attempts, destinations, finished_at)
         SELECT 'stage_change', '{}', 'failed', 1, ARRAY['facebook:333'], now() FROM generate_series(1, 101)",
    )
    .execute(s.pool())
    .await
    .unwrap();
    let wide = [
        "jobs",
        "replay",
        "--pixel",
        "333",
        "--reason",
        "outage over",
    ];
    let (ok, _, err) = cli(&s, &wide).await;
    assert!(!ok && err.contains("pass --yes"), "{err}");
    let still_failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stagecast.jobs WHERE 'facebook:333' = ANY (destinations) AND status = 'failed'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(still_failed, 101);
    let out = cli_ok(&s, &[&wide[..], &["--yes"][..]].concat()).await;
    assert!(out.contains("101 job(s) replayed"), "{out}");
}

#[tokio::test]
async fn cancel_by_id_and_by_filter_and_a_running_jobs_late_write_back_changes_nothing() {
    let s = Stack::new().await;
    let pending = insert_job(
        &s,
        JobSpec {
            status: "pending",
            destination: None,
            attempts: 0,
            ..JobSpec::default()
        },
    )
    .await;
    let running: i64 = sqlx::query_scalar(
        "INSERT INTO stagecast.jobs (kind, payload, status, attempts, customer_id, locked_by, locked_until)
         VALUES ('stage_change', '{}', 'running', 1, 7, 'worker-old', now() + interval '1 minute') RETURNING id",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();

    let out = cli_ok(
        &s,
        &[
            "jobs",
            "cancel",
            &pending.to_string(),
            "--actor",
            "bo",
            "--reason",
            "sent by mistake",
        ],
    )
    .await;
    assert!(out.contains(&format!("job {pending} cancelled")), "{out}");
    let finished: bool = sqlx::query_scalar(
        "SELECT status = 'cancelled' AND finished_at IS NOT NULL FROM stagecast.jobs WHERE id = $1",
    )
    .bind(pending)
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert!(
        finished,
        "cancelled with finished_at, so retention removes it"
    );
    let again = cli_ok(&s, &["jobs", "cancel", &pending.to_string()]).await;
    assert!(again.contains("already cancelled"), "{again}");

    let dry = cli_ok(&s, &["jobs", "cancel", "--status", "running", "--dry-run"]).await;
    assert!(dry.contains("1 running job(s) would be cancelled"), "{dry}");
    let out = cli_ok(
        &s,
        &[
            "jobs",
            "cancel",
            "--status",
            "running",
            "--customer",
            "7",
            "--reason",
            "customer asked",
            "--actor",
            "bo",
        ],
    )
    .await;
    assert!(out.contains("1 job(s) cancelled"), "{out}");

    // The worker that was running it finishes and writes back: fenced on status = 'running',
    // nothing changes (the job is not archived as done behind the admin's back).
    let report = s
        .store
        .write_back(
            "worker-old",
            &WriteBack {
                outcomes: vec![OutcomeRow {
                    id: running,
                    attempt: 1,
                    outcome: "done",
                    run_at: None,
                    error: None,
                    destinations: None,
                }],
                ..WriteBack::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((report.applied, report.fenced_out), (0, 1));
    assert_eq!(status_of(&s, running).await, "cancelled");

    // Replayed, it waits for the cancelled attempt's lease to run out, so the two attempts can
    // never send the same events at the same time.
    let replayed: bool =
        sqlx::query_scalar("SELECT stagecast.replay_job($1, 'bo', 'changed my mind')")
            .bind(running)
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert!(replayed);
    let waits: bool = sqlx::query_scalar(
        "SELECT run_at > now() + interval '50 seconds' AND locked_by IS NULL FROM stagecast.jobs WHERE id = $1",
    )
    .bind(running)
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert!(waits);

    let (ok, _, err) = cli(&s, &["jobs", "cancel", "4242", "--reason", "x"]).await;
    assert!(!ok);
    assert!(
        err.contains("job 4242 not found (it may have been pruned by retention)"),
        "{err}"
    );
    let rows = audit(&s).await;
    assert_eq!(
        rows.iter()
            .map(|r| (r.0.as_str(), r.1.as_str(), r.4))
            .collect::<Vec<_>>(),
        [
            ("bo", "cancel", 1),
            ("tester", "cancel", 0),
            ("bo", "cancel", 1),
            ("bo", "replay", 1)
        ]
    );
}

#[tokio::test]
async fn a_done_job_is_never_replayed() {
    let s = Stack::new().await;
    archive_job(&s, 500, 3, "stage_change").await;
    let (ok, _, err) = cli(&s, &["jobs", "replay", "500", "--reason", "again"]).await;
    assert!(!ok);
    assert!(
        err.contains("job 500 is done") && err.contains("count the conversions twice"),
        "{err}"
    );
    assert!(
        err.contains("hint:") && err.contains("enqueue_stage_change"),
        "{err}"
    );
    let (ok, _, err) = cli(
        &s,
        &["jobs", "replay", "--status", "done", "--reason", "again"],
    )
    .await;
    assert!(!ok && err.contains("done jobs are never replayed"), "{err}");
    // The SQL functions, as a CRM's admin screen calls them: as the admin role.
    let e = sqlx::query(
        "SELECT stagecast.replay_jobs(p_status => 'done', p_actor => 'crm', p_reason => 'x')",
    )
    .execute(s.admin())
    .await
    .unwrap_err();
    assert_eq!(
        e.as_database_error().unwrap().code().as_deref(),
        Some("55000")
    );
    // Cancelling it is a no-op, not an error.
    let cancelled: bool = sqlx::query_scalar("SELECT stagecast.cancel_job(500, 'crm', NULL)")
        .fetch_one(s.admin())
        .await
        .unwrap();
    assert!(!cancelled);
    assert_eq!(status_of(&s, 500).await, "done");
    assert_eq!(
        audit(&s).await,
        [("crm".to_string(), "cancel".to_string(), None, vec![500], 0)],
        "refusals raise and record nothing; the no-op cancel is recorded"
    );
}

#[tokio::test]
async fn a_crm_role_granted_execute_calls_the_sql_functions_which_validate_notify_and_audit() {
    let s = Stack::new().await;
    let failed = insert_job(&s, JobSpec::default()).await;
    let failed_b = insert_job(
        &s,
        JobSpec {
            customer: 2,
            destination: Some("facebook:222"),
            ..JobSpec::default()
        },
    )
    .await;
    // Not for every role that can reach the schema: the worker role has USAGE on it, and no
    // EXECUTE on the admin functions (they are revoked from PUBLIC).
    let e = sqlx::query("SELECT stagecast.replay_job($1, 'maria', NULL)")
        .bind(failed)
        .execute(&s.db.worker_pool)
        .await
        .unwrap_err();
    assert_eq!(
        e.as_database_error().unwrap().code().as_deref(),
        Some("42501"),
        "{e}"
    );

    // The CRM's admin screen connects as the admin role (sql/roles/admin.sql), no superuser.
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&s.db.admin_url)
        .await
        .expect("connect as the admin role");
    let mut conn = admin.acquire().await.unwrap();
    let mut listener = PgListener::connect_with(s.pool()).await.unwrap();
    listener.listen("stagecast_jobs").await.unwrap();

    let replayed: bool =
        sqlx::query_scalar("SELECT stagecast.replay_job($1, 'maria@crm', 'token renewed')")
            .bind(failed)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert!(replayed);
    let note = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("replay_job notifies the workers")
        .unwrap();
    assert_eq!(note.channel(), "stagecast_jobs");
    // SECURITY DEFINER: the role changes jobs only through the audited functions.
    let e = sqlx::query("UPDATE stagecast.jobs SET status = 'pending'")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(
        e.as_database_error().unwrap().code().as_deref(),
        Some("42501")
    );
    // Already pending: false, nothing to do.
    let again: bool = sqlx::query_scalar("SELECT stagecast.replay_job($1, 'maria@crm', NULL)")
        .bind(failed)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert!(!again);

    // Named arguments, as documented; a dry run first.
    let would: i32 = sqlx::query_scalar(
        "SELECT stagecast.replay_jobs(p_pixel => '222', p_actor => 'maria@crm', p_dry_run => true)",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(would, 1);
    assert_eq!(status_of(&s, failed_b).await, "failed");
    let did: i32 = sqlx::query_scalar(
        "SELECT stagecast.replay_jobs(p_pixel => 'facebook:222', p_actor => 'maria@crm', p_reason => 'pixel re-activated')",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(did, 1);
    assert_eq!(status_of(&s, failed_b).await, "pending");
    let cancelled: i32 = sqlx::query_scalar(
        "SELECT stagecast.cancel_jobs(p_customer_id => 2, p_actor => 'maria@crm', p_reason => 'duplicate deal')",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(cancelled, 1);
    assert_eq!(status_of(&s, failed_b).await, "cancelled");

    // Validation: clear messages and standard SQLSTATEs.
    for (sql, code, text) in [
        (
            "SELECT stagecast.replay_jobs(p_status => 'bogus', p_actor => 'maria')",
            "22023",
            "unknown status 'bogus': replay takes failed or cancelled",
        ),
        (
            "SELECT stagecast.cancel_jobs(p_status => 'finished', p_actor => 'maria', p_reason => 'x')",
            "22023",
            "unknown status 'finished'",
        ),
        (
            "SELECT stagecast.replay_job(1, NULL, 'x')",
            "22004",
            "actor is required",
        ),
        (
            "SELECT stagecast.cancel_jobs(p_actor => ' ', p_reason => 'x')",
            "22004",
            "actor is required",
        ),
        (
            "SELECT stagecast.replay_jobs(p_actor => 'maria')",
            "22004",
            "a reason is required",
        ),
        (
            "SELECT stagecast.replay_jobs(p_actor => 'maria', p_reason => 'x', p_limit => 0)",
            "22023",
            "limit must be at least 1",
        ),
        (
            "SELECT stagecast.replay_job(987654, 'maria', NULL)",
            "P0002",
            "job 987654 not found (it may have been pruned by retention)",
        ),
    ] {
        let e = sqlx::query(sql).execute(&mut *conn).await.unwrap_err();
        let db = e.as_database_error().unwrap();
        assert_eq!(db.code().as_deref(), Some(code), "{sql}: {}", db.message());
        assert!(db.message().contains(text), "{sql}: {}", db.message());
    }
    drop(conn);
    admin.close().await;

    let rows: Vec<(String, String, String, i32)> = sqlx::query_as(
        "SELECT actor, db_role, action, count FROM stagecast.admin_audit ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    // The login (session_user): inside SECURITY DEFINER current_user is the owner, but the
    // audit names who connected.
    let expect = |action: &str, count| {
        (
            "maria@crm".to_string(),
            s.db.roles.admin.clone(),
            action.to_string(),
            count,
        )
    };
    assert_eq!(
        rows,
        [
            expect("replay", 1),
            expect("replay", 0),
            expect("replay", 1),
            expect("cancel", 1)
        ],
        "one row per call, dry runs and rejected calls excepted; db_role is the caller's login"
    );
}

#[tokio::test]
async fn replaying_a_partly_delivered_job_does_not_send_the_delivered_event_again() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // Lead is valid; "purchase" is a typo for Purchase: Lead is delivered, the job fails.
    s.crm_exec(
        r#"INSERT INTO crm_stages (id, name, funnel_category, utm_event) VALUES
           (3, 'Fechado', 'fundo', '[{"event_name":"Lead"},{"event_name":"purchase"}]')"#,
    )
    .await;
    let c = s
        .customer(1, "a@example.com", "+5511999990001", Some(250.0))
        .await;
    let worker = s.start_worker();
    s.move_to(c, 3).await;
    let id = job_of(&s, c).await;
    wait_for_status(&s, id, "failed").await;
    assert_eq!(s.sandbox.received().len(), 1);
    let lead_id = s.sandbox.received()[0].event["event_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The marketer fixes the stage; the admin replays.
    s.crm_exec(r#"UPDATE crm_stages SET utm_event = '[{"event_name":"Lead"},{"event_name":"Purchase"}]' WHERE id = 3"#)
        .await;
    cli_ok(
        &s,
        &["jobs", "replay", &id.to_string(), "--reason", "typo fixed"],
    )
    .await;
    wait_for_status(&s, id, "done").await;
    worker.shutdown().await.unwrap();

    let names: Vec<String> = s
        .sandbox
        .received()
        .iter()
        .map(|e| e.event["event_name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["Lead", "Purchase"], "Lead was not sent twice");
    assert_eq!(s.sandbox.delivered_count(&lead_id), 1);
}

#[tokio::test]
async fn jobs_list_json_filters_by_status_kind_pixel_customer_and_since_and_includes_done_jobs() {
    let s = Stack::new().await;
    let failed_111 = insert_job(&s, JobSpec::default()).await;
    let failed_222 = insert_job(
        &s,
        JobSpec {
            destination: Some("facebook:222"),
            customer: 7,
            ..JobSpec::default()
        },
    )
    .await;
    let pending_old = insert_job(
        &s,
        JobSpec {
            status: "pending",
            destination: None,
            attempts: 0,
            customer: 7,
            created_hours_ago: 72,
            ..JobSpec::default()
        },
    )
    .await;
    let attribution = insert_job(
        &s,
        JobSpec {
            kind: "attribution",
            status: "cancelled",
            destination: None,
            customer: 8,
            ..JobSpec::default()
        },
    )
    .await;
    archive_job(&s, 900, 7, "stage_change").await;

    let ids = |out: &str| -> Vec<i64> {
        let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v.as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_i64().unwrap())
            .collect()
    };
    let all = cli_ok(&s, &["jobs", "list", "--json"]).await;
    assert_eq!(
        ids(&all),
        [900, attribution, pending_old, failed_222, failed_111],
        "newest first, done jobs included"
    );
    let done: Value =
        serde_json::from_str(&cli_ok(&s, &["jobs", "list", "--status", "done", "--json"]).await)
            .unwrap();
    assert_eq!(done.as_array().unwrap().len(), 1);
    assert_eq!(done[0]["status"], "done");
    assert_eq!(done[0]["note"], "1 delivered, 0 already delivered earlier");
    for (args, expected) in [
        (vec!["--status", "failed"], vec![failed_222, failed_111]),
        (vec!["--status", "all", "--pixel", "222"], vec![failed_222]),
        (vec!["--pixel", "facebook:111"], vec![900, failed_111]),
        (vec!["--customer", "7"], vec![900, pending_old, failed_222]),
        (vec!["--kind", "attribution"], vec![attribution]),
        (
            vec!["--customer", "7", "--since", "1day"],
            vec![900, failed_222],
        ),
        (vec!["--limit", "2"], vec![900, attribution]),
    ] {
        let out = cli_ok(&s, &[&["jobs", "list", "--json"][..], &args[..]].concat()).await;
        assert_eq!(ids(&out), expected, "jobs list {args:?}");
    }
    let failed = cli_ok(&s, &["jobs", "list", "--status", "failed", "--json"]).await;
    let v: Value = serde_json::from_str(&failed).unwrap();
    assert_eq!(v[0]["attempts"], 12);
    assert_eq!(v[0]["max_attempts"], 12);
    assert_eq!(v[0]["destinations"][0], "facebook:222");
    assert_eq!(v[0]["last_error"], "gave up: Meta answered HTTP 500");

    // The table: a header and one line per job.
    let table = cli_ok(&s, &["jobs", "list", "--status", "failed"]).await;
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(table.contains("facebook:222"), "{table}");

    let (ok, _, err) = cli(&s, &["jobs", "list", "--since", "last tuesday"]).await;
    assert!(!ok && err.contains("neither a date"), "{err}");
}

#[tokio::test]
async fn jobs_show_prints_every_delivery_attempt_and_alert_and_never_the_token() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let email = "Joana.Secreta@Example.com";
    let a = s.customer(1, email, "+5511999990001", None).await;
    let b = s.customer(2, "b@example.com", "+5511999990002", None).await;
    s.sandbox.push_fault(Fault::ServerError(500));
    let worker = s.start_worker();
    s.move_to(a, 1).await;
    let job_a = job_of(&s, a).await;
    wait_for_status(&s, job_a, "done").await;
    s.sandbox.push_fault(rejected());
    s.move_to(b, 1).await;
    let job_b = job_of(&s, b).await;
    wait_for_status(&s, job_b, "failed").await;
    worker.shutdown().await.unwrap();
    // A platform that echoed the token back (Meta does not): the admin view must not print it.
    sqlx::query(
        "UPDATE stagecast.deliveries SET response = json_build_object('error', json_build_object('code', 190, 'access_token', $2::text))
          WHERE job_id = $1",
    )
    .bind(job_b)
    .bind(TOKEN)
    .execute(s.pool())
    .await
    .unwrap();

    let text = cli_ok(&s, &["jobs", "show", &job_a.to_string()]).await;
    assert!(
        text.starts_with(&format!("job {job_a}  stage_change  done")),
        "{text}"
    );
    assert!(text.contains("deliveries (2)"), "{text}");
    assert!(
        text.contains("attempt 1") && text.contains("retry"),
        "{text}"
    );
    assert!(text.contains("http 500"), "{text}");
    assert!(
        text.contains("attempt 2") && text.contains("delivered"),
        "{text}"
    );
    assert!(text.contains(&format!("Lead → facebook:{PIXEL}")), "{text}");
    assert!(
        text.contains("\"event_name\":\"Lead\""),
        "the event as sent:\n{text}"
    );
    // The email went out hashed, as sent; the raw value is not in the audit at all.
    let hashed = stagecast::pii::sha256_hex(&email.to_lowercase());
    assert!(text.contains(&hashed), "{text}");

    let text_b = cli_ok(&s, &["jobs", "show", &job_b.to_string()]).await;
    assert!(text_b.contains("code 100/2804001"), "{text_b}");
    assert!(text_b.contains("fbtrace_id"), "{text_b}");
    assert!(
        text_b.contains("alerts (1)") && text_b.contains("api_error"),
        "{text_b}"
    );
    assert!(text_b.contains("[redacted]"), "{text_b}");
    let json = cli_ok(&s, &["jobs", "show", &job_b.to_string(), "--json"]).await;
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["job"]["status"], "failed");
    assert_eq!(v["deliveries"][0]["error_code"], "100");
    assert_eq!(
        v["deliveries"][0]["trace_id"].as_str().map(str::len),
        Some(23)
    );
    assert_eq!(
        v["deliveries"][0]["response"]["error"]["access_token"],
        "[redacted]"
    );
    assert_eq!(v["alerts"][0]["cause"], "api_error");
    for out in [&text, &text_b, &json] {
        assert!(!out.contains(TOKEN), "the token leaked:\n{out}");
        assert!(!out.contains(email) && !out.contains(&email.to_lowercase()));
    }

    let (ok, _, err) = cli(&s, &["jobs", "show", "4242"]).await;
    assert!(!ok);
    assert!(
        err.contains("job 4242 not found (it may have been pruned by retention)"),
        "{err}"
    );
}
