//! The admin console in a real browser: Debian's Chromium, headless, through chromedriver
//! (tests/support/webdriver.rs). A job fails for real (a worker, the Graph sandbox rejecting its
//! event); an admin finds it, inspects it and replays it, and it is delivered; a stage's events
//! are configured through the form (its hint script runs); a request without the token and an
//! action without the CSRF token are refused.
//!
//! Skipped with a message where Chromium is not installed, a failure under
//! `STAGECAST_REQUIRE_BROWSER=1` (`.ci/run`). With `STAGECAST_UPDATE_SCREENSHOTS=1` it writes
//! the screenshots of docs/console.md into docs/console/.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use stagecast_sandbox::Fault;
use support::console::{Console, ADMIN_TOKEN};
use support::stack::Stack;
use support::wait::{wait_for, wait_until, DEADLINE};
use support::webdriver::Browser;

struct Shots {
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Shots {
    fn new() -> Shots {
        if std::env::var("STAGECAST_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console");
            std::fs::create_dir_all(&dir).unwrap();
            Shots { dir, _tmp: None }
        } else {
            let tmp = tempfile::tempdir().unwrap();
            Shots {
                dir: tmp.path().to_path_buf(),
                _tmp: Some(tmp),
            }
        }
    }

    async fn take(&self, b: &Browser, name: &str) {
        let png = b.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        std::fs::write(self.dir.join(format!("{name}.png")), png).unwrap();
    }
}

async fn job_status(s: &Stack, id: i64) -> String {
    sqlx::query_scalar(
        "SELECT status FROM stagecast.jobs WHERE id = $1 UNION ALL SELECT 'done' FROM stagecast.job_archive WHERE id = $1",
    )
    .bind(id)
    .fetch_one(s.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn an_admin_finds_inspects_and_replays_a_failed_job_and_configures_a_stage_in_a_browser() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s
        .customer(1, "maria@example.com", "+5511999990001", Some(149.9))
        .await;
    // Meta rejects the event once: the Purchase fails at once, with a chat alert. (An invalid
    // token would hold the pixel instead of failing the job: tests/meta_holds.rs.)
    s.sandbox.push_fault(Fault::Reject {
        http: 400,
        code: 100,
        subcode: Some(2804001),
        message: "Invalid parameter".into(),
    });
    let worker = s.start_worker();
    s.move_to(c, 2).await;
    let id: i64 = wait_for("the stage change's job to fail", DEADLINE, || async {
        sqlx::query_scalar(
            "SELECT id FROM stagecast.jobs WHERE customer_id = $1 AND status = 'failed'",
        )
        .bind(c)
        .fetch_optional(s.pool())
        .await
        .unwrap()
    })
    .await;
    let console = Console::start(&s.db).await;
    let shots = Shots::new();

    // Without the token: the sign-in page, nothing of the jobs.
    b.goto(&console.url("/jobs?status=failed")).await;
    let page = b.source().await;
    assert!(page.contains("name=\"token\""), "the sign-in form");
    assert!(
        !page.contains(&format!("href=\"/jobs/{id}\"")),
        "no job shown"
    );
    shots.take(&b, "login").await;

    // Sign in: back to the failed jobs, where this one is.
    b.type_into("input[name=token]", ADMIN_TOKEN).await;
    b.click("button[type=submit]").await;
    b.wait_for_text(&format!("href=\"/jobs/{id}\"")).await;
    assert!(b.url().await.ends_with("/jobs?status=failed"));
    shots.take(&b, "jobs").await;

    // Inspect it: the attempt as sent (hashed), Meta's answer, the alert.
    b.click(&format!("a[href=\"/jobs/{id}\"]")).await;
    b.wait_for_text("api_error").await;
    let page = b.source().await;
    assert!(page.contains("100/2804001"), "the Graph error code");
    assert!(page.contains("\"em\""), "the hashed email as sent");
    assert!(!page.contains("maria@example.com"), "no raw PII");
    shots.take(&b, "job").await;

    b.goto(&console.url("/")).await;
    b.wait_for_text("api_error").await;
    shots.take(&b, "overview").await;
    b.goto(&console.url(&format!("/jobs/{id}"))).await;
    b.wait_for_text("api_error").await;

    // An action whose CSRF token is not the session's is refused, and changes nothing.
    b.execute("document.querySelector('#replay input[name=csrf]').value = 'forged';")
        .await;
    b.type_into("#replay input[name=reason]", "token renewed")
        .await;
    b.click("#replay button").await;
    b.wait_for_text("Request refused").await;
    assert_eq!(job_status(&s, id).await, "failed");

    // Replay it for real: pending again, then delivered by the worker.
    b.goto(&console.url(&format!("/jobs/{id}"))).await;
    b.type_into("#replay input[name=reason]", "token renewed")
        .await;
    b.click("#replay button").await;
    b.wait_for_text("Job replayed").await;
    wait_until("the replayed job to be delivered", DEADLINE, || async {
        job_status(&s, id).await == "done"
    })
    .await;
    let actor: String = sqlx::query_scalar("SELECT actor FROM stagecast.admin_audit")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(actor, "console:ana");

    // The other pages.
    b.goto(&console.url("/destinations")).await;
    b.wait_for_text("sealed with key").await;
    shots.take(&b, "destinations").await;
    b.goto(&console.url("/stages")).await;
    b.wait_for_text("Qualificado").await;
    shots.take(&b, "stages").await;

    // Configure stage 1: add a Schedule event. The hint follows the choice (the script).
    b.goto(&console.url("/stages/1")).await;
    b.click("select[name=e1] option[value=Schedule]").await;
    let hint = stagecast::catalog::lookup("Schedule")
        .unwrap()
        .when_to_use
        .en;
    wait_until("the hint to follow the chosen event", DEADLINE, || async {
        b.text("#hint1").await == hint
    })
    .await;
    b.type_into("input[name=v1]", "49,90").await;
    b.type_into("input[name=cur1]", "brl").await;
    b.type_into("input[name=reason]", "bookings count as conversions")
        .await;
    shots.take(&b, "stage").await;
    b.click("button[value=save]").await;
    b.wait_for_text("Saved.").await;
    let saved: Value = sqlx::query_scalar("SELECT utm_event FROM crm_stages WHERE id = 1")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(saved[1]["event_name"], "Schedule");
    assert_eq!(saved[1]["value"], serde_json::json!(49.9));
    assert_eq!(saved[1]["currency"], "BRL");

    // The language is a per-session switch.
    b.click("form.lang button[value=pt]").await;
    b.wait_for_text("Visão geral").await;

    // Signed out (cookies gone): a job page is the sign-in page again.
    b.delete_cookies().await;
    b.goto(&console.url(&format!("/jobs/{id}"))).await;
    let page = b.source().await;
    assert!(page.contains("name=\"token\"") && !page.contains("api_error"));

    worker.shutdown().await.unwrap();
}
