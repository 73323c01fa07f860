//! The `stagecast` binary's process lifecycle, as docs/operations.md describes it:
//!
//! - SIGTERM and SIGINT with a request in flight: the worker stops claiming, keeps extending the
//!   leases of what it holds while the request finishes, writes the result back and exits 0;
//! - `stagecast migrate` run several times at once, together with `stagecast run --migrate`, on a
//!   database never migrated: every process succeeds, each migration is applied once, and the
//!   worker then delivers.

mod support;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, BufReader};

use support::stack::{Stack, KEYS};
use support::wait::{wait_until, DEADLINE};

/// Collects a child's stderr lines as they come, so a test can wait for one.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(stderr: tokio::process::ChildStderr) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// `stagecast run` on the stack with a short lease and an hour-long poll, so that after the
/// stage change it claims only when notified.
fn worker(s: &Stack, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = support::process::stagecast();
    cmd.args(["run", "--metrics-addr", "", "--poll-interval", "1h"])
        .args(extra)
        .env("DATABASE_URL", &s.db.worker_url)
        .env("STAGECAST_META_GRAPH_URL", s.sandbox.base_url())
        .env("STAGECAST_KEYS", KEYS)
        .env("STAGECAST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}

async fn lease_of(s: &Stack, customer: i64) -> Option<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT locked_until FROM stagecast.jobs WHERE customer_id = $1 AND kind = 'stage_change'",
    )
    .bind(customer)
    .fetch_one(s.pool())
    .await
    .unwrap()
}

/// SIGTERM or SIGINT while a request is in flight. The request's answer is held until the test
/// has seen the heartbeat extend the lease *after* the signal: leases are kept alive during the
/// drain. (The Meta timeout leaves the test seconds to see that: a request cannot outlive a
/// lease, the settings rules refuse it, so "past the lease it was claimed with" is not a state a
/// single request can reach.)
async fn drains_on(signal: &str) {
    let s = Stack::new().await;
    s.seed_standard().await;
    let first = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let late = s.customer(2, "b@example.com", "+5511999990002", None).await;
    s.sandbox.hold_answers();
    let mut child = worker(
        &s,
        &[
            "--lease",
            "10s",
            "--heartbeat-interval",
            "1s",
            "--meta-timeout",
            "6s",
            // Every platform's requests must fit the lease (the settings rules).
            "--tiktok-timeout",
            "6s",
            // Google Ads: a token refresh and an upload, each within this.
            "--google-ads-timeout",
            "3s",
            "--drain-timeout",
            "60s",
        ],
    )
    .spawn()
    .expect("the stagecast binary starts");
    let logs = Lines::follow(child.stderr.take().unwrap());
    wait_until("the worker started", DEADLINE, || async {
        // `error: …` is what the binary prints when it refuses to start.
        logs.contains("worker started") || logs.contains("error: ")
    })
    .await;
    assert!(logs.contains("worker started"), "{}", logs.text());
    s.move_to(first, 1).await;
    assert!(
        s.sandbox.wait_for_in_flight(1, DEADLINE).await,
        "the request is in flight"
    );

    support::process::signal(&child, signal);
    wait_until("the worker to acknowledge the signal", DEADLINE, || async {
        logs.contains("shutdown requested")
    })
    .await;
    let at_signal = lease_of(&s, first).await.expect("the job is leased");
    // Draining: a stage change queued now is not claimed.
    s.move_to(late, 1).await;
    wait_until(
        "the heartbeat to extend the lease during the drain",
        DEADLINE,
        || async {
            lease_of(&s, first)
                .await
                .is_some_and(|until| until > at_signal)
        },
    )
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the worker waits for its request"
    );

    s.sandbox.release_answers();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the worker exits once its request is answered")
        .unwrap();
    assert!(status.success(), "exit 0 after the drain:\n{}", logs.text());

    // The in-flight request was written back, delivered once; the late change waits.
    assert_eq!(s.jobs_of(first).await[0].0, "done");
    assert_eq!(s.sandbox.requests().len(), 1);
    assert_eq!(s.sandbox.accepted_events(), 1);
    let (status, attempts, locked_by): (String, i32, Option<String>) = sqlx::query_as(
        "SELECT status, attempts, locked_by FROM stagecast.jobs WHERE customer_id = $1",
    )
    .bind(late)
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), attempts, locked_by),
        ("pending", 0, None),
        "queued after the signal, never claimed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work_extending_its_lease_then_exits_0() {
    drains_on("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_in_flight_work_extending_its_lease_then_exits_0() {
    drains_on("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrate_and_run_migrate_apply_each_migration_once() {
    // The roles and the superuser's part (sql/roles/setup.sql) are in place; nothing is migrated.
    let db = support::TestDb::unmigrated().await;
    let sandbox = stagecast_sandbox::MetaGraphSandbox::start().await.unwrap();
    sandbox.add_pixel(support::stack::PIXEL, support::stack::TOKEN);
    // Three `stagecast migrate` and one `stagecast run --migrate`, all started at once, all as
    // the owner: migrating is the owner's job, and `run --migrate` migrates before it works
    // (docs/operations.md: it does both only when the worker connects as the owner).
    let migrates: Vec<_> = (0..3)
        .map(|_| {
            support::process::stagecast()
                .arg("migrate")
                .env("DATABASE_URL", &db.owner_url)
                .output()
        })
        .collect();
    let mut run = support::process::stagecast()
        .args([
            "run",
            "--migrate",
            "--metrics-addr",
            "",
            "--poll-interval",
            "50ms",
        ])
        .env("DATABASE_URL", &db.owner_url)
        .env("STAGECAST_META_GRAPH_URL", sandbox.base_url())
        .env("STAGECAST_KEYS", KEYS)
        .env("STAGECAST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the stagecast binary starts");
    let logs = Lines::follow(run.stderr.take().unwrap());
    for out in futures_util::future::join_all(migrates).await {
        let out = out.expect("stagecast migrate runs");
        assert!(
            out.status.success(),
            "a concurrent migrate failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_until("the worker to start", DEADLINE, || async {
        // `error: …` is what the binary prints when it stops on an error.
        logs.contains("worker started") || logs.contains("error: ")
    })
    .await;
    assert!(logs.contains("worker started"), "{}", logs.text());

    let applied: Vec<(i64, i64, bool)> = sqlx::query_as(
        "SELECT version, count(*), bool_and(success) FROM _sqlx_migrations GROUP BY version ORDER BY version",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let expected: Vec<i64> = stagecast::store::MIGRATOR
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(
        applied.iter().map(|a| a.0).collect::<Vec<_>>(),
        expected,
        "every migration applied"
    );
    assert!(
        applied.iter().all(|&(_, n, ok)| n == 1 && ok),
        "each exactly once, successfully: {applied:?}"
    );

    // And the schema works: after the owner's grants (as after every migrate), a CRM write is
    // delivered by the worker that migrated.
    let granted = support::process::stagecast()
        .args(["roles", "apply", "--worker", &db.roles.worker])
        .args(["--crm", &db.roles.crm, "--admin", &db.roles.admin])
        .env("DATABASE_URL", &db.owner_url)
        .output()
        .await
        .expect("stagecast roles apply runs");
    assert!(
        granted.status.success(),
        "{}",
        String::from_utf8_lossy(&granted.stderr)
    );
    let keys = stagecast::secrets::KeyRing::parse(KEYS).unwrap();
    sqlx::query(
        "INSERT INTO pixels (id, platform, name, pixel_id, access_token_enc, active, is_default) \
         VALUES (1, 'facebook', 'Main', $1, $2, true, true)",
    )
    .bind(support::stack::PIXEL)
    .bind(keys.seal(support::stack::TOKEN))
    .execute(&db.crm_pool)
    .await
    .unwrap();
    sqlx::raw_sql(
        r#"INSERT INTO utm_campaigns (id, name, pixel_id) VALUES (1, 'Verão', 1);
           INSERT INTO crm_stages (id, name, utm_event) VALUES (1, 'Qualificado', '[{"platform":"facebook","event_name":"Lead"}]');
           INSERT INTO customers (id, name, email, phone, utm_campaign_id) VALUES (1, 'Maria', 'a@example.com', '+5511999990001', 1);
           UPDATE customers SET stage_id = 1 WHERE id = 1;"#,
    )
    .execute(&db.crm_pool)
    .await
    .unwrap();
    assert!(
        sandbox.wait_for_events(1, DEADLINE).await,
        "delivered:\n{}",
        logs.text()
    );
    support::process::signal(&run, "TERM");
    let status = tokio::time::timeout(DEADLINE, run.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{}", logs.text());
}
