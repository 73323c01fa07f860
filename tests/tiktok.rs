//! TikTok Events API 2.0 end to end: CRM stage changes on a real database, the worker in
//! process (as the worker role), and the local TikTok sandbox, which validates requests the way
//! TikTok documents them and injects its failure modes. Every stage change gives exactly one
//! event per configured destination, re-sends carry the same event_id and event_time, each error
//! class ends in its outcome and alert, and bad configuration is an alert, never a panic.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use stagecast::pii::sha256_hex;
use stagecast_sandbox::TiktokFault;
use support::stack::{Stack, PIXEL, TIKTOK_EVENT_SET, TIKTOK_TOKEN};
use support::wait::{wait_until, DEADLINE};

/// (outcome, attempt, event_id, error_code, trace_id) of one audit row.
type AuditRow = (String, i32, String, Option<String>, Option<String>);

/// Every TikTok audit row, in order.
async fn tiktok_audit(s: &Stack) -> Vec<AuditRow> {
    sqlx::query_as(
        "SELECT outcome, attempt, event_id, error_code, trace_id FROM stagecast.deliveries \
         WHERE platform = 'tiktok' ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap()
}

fn outcomes(rows: &[AuditRow]) -> Vec<&str> {
    rows.iter().map(|r| r.0.as_str()).collect()
}

/// The standard CRM with TikTok next to Meta, and one customer.
async fn stack_with_customer() -> (Stack, i64) {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.seed_tiktok().await;
    let c = s
        .customer(
            1,
            " Maria.Silva@Example.com ",
            "(11) 98765-4321",
            Some(1500.0),
        )
        .await;
    (s, c)
}

#[tokio::test]
async fn a_stage_change_sends_one_tiktok_event_and_one_meta_event() {
    let (s, c) = stack_with_customer().await;
    s.crm_exec(
        r#"UPDATE customers SET ttclid = 'E.C.P.v3Dk2ttclid',
                  utm_metadata = '{"tiktok_lead_id": "7299112233"}' WHERE id = 1"#,
    )
    .await;
    let worker = s.start_worker();
    let before = chrono::Utc::now().timestamp();
    s.move_to(c, 2).await;
    assert!(s.tiktok.wait_for_events(1, DEADLINE).await);
    assert!(s.sandbox.wait_for_events(1, DEADLINE).await);
    s.drained().await;
    worker.shutdown().await.unwrap();
    let after = chrono::Utc::now().timestamp();

    let received = s.tiktok.received();
    assert_eq!(received.len(), 1, "exactly one TikTok event");
    assert_eq!(s.sandbox.received().len(), 1, "and exactly one Meta event");
    let t = &received[0];
    assert_eq!(t.event_source, "crm");
    assert_eq!(t.event_source_id, TIKTOK_EVENT_SET);
    let e = &t.event;
    assert_eq!(e["event"], "Purchase");
    let event_time = e["event_time"].as_i64().expect("integer seconds");
    assert!((before - 1..=after).contains(&event_time), "{event_time}");
    let event_id = e["event_id"].as_str().expect("a string event_id");
    assert_eq!(event_id.len(), 64);
    assert_eq!(s.tiktok.delivered_count(event_id), 1);
    // TikTok's normalisation: email trimmed and lowercased, phone E.164 with '+'.
    assert_eq!(e["user"]["email"][0], sha256_hex("maria.silva@example.com"));
    assert_eq!(e["user"]["phone"][0], sha256_hex("+5511987654321"));
    assert_eq!(e["user"]["external_id"][0], sha256_hex("1"));
    assert_eq!(e["user"]["ttclid"], "E.C.P.v3Dk2ttclid");
    assert_eq!(e["user"]["ip"], "200.150.10.20");
    assert_eq!(e["lead"]["lead_id"], "7299112233");
    assert_eq!(e["lead"]["lead_event_source"], "stagecast");
    assert_eq!(e["properties"]["value"], 1500.0);
    assert_eq!(e["properties"]["currency"], "BRL");
    let text = e.to_string();
    assert!(!text.contains("Maria") && !text.contains("98765"), "{text}");

    // The Meta copy has its own id (another destination), the same stage change.
    let meta = &s.sandbox.received()[0];
    assert_eq!(meta.pixel_id, PIXEL);
    assert_ne!(meta.event["event_id"].as_str(), Some(event_id));
    assert_eq!(meta.event["event_time"].as_i64(), Some(event_time));

    let rows = tiktok_audit(&s).await;
    assert_eq!(outcomes(&rows), ["delivered"]);
    assert_eq!(rows[0].2, event_id);
    let destination: String = sqlx::query_scalar(
        "SELECT destination FROM stagecast.deliveries WHERE platform = 'tiktok'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(
        destination, TIKTOK_EVENT_SET,
        "the audit names the platform apart"
    );
    assert_eq!(s.jobs_of(c).await[0].0, "done");
    assert!(s.alert_causes(c).await.is_empty());
}

#[tokio::test]
async fn two_tiktok_destinations_get_one_event_each_and_a_web_pixel_gets_no_lead() {
    let (s, c) = stack_with_customer().await;
    const WEB_PIXEL: &str = "CQ1WEBPIXEL9";
    s.tiktok.add_event_source(WEB_PIXEL, "tt-web-token");
    s.crm_exec(&format!(
        r#"INSERT INTO pixels (id, platform, name, pixel_id, access_token, action_source, active, is_default)
             VALUES (3, 'tiktok', 'TikTok web', '{WEB_PIXEL}', 'tt-web-token', 'web', true, false);
           INSERT INTO utm_campaigns (id, name, pixel_id) VALUES (3, 'TikTok web', 3);
           UPDATE customers SET utm_campaign_id = 3,
                  utm_metadata = '{{"tiktok_lead_id": "7299"}}' WHERE id = 1;
           UPDATE crm_stages SET utm_event = '[{{"platform":"tiktok","event_name":"Lead"}},
                  {{"platform":"tiktok","event_name":"Other","custom_event_name":"Visita realizada"}}]' WHERE id = 1;"#
    ))
    .await;
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();

    let received = s.tiktok.received();
    assert_eq!(received.len(), 2, "{received:#?}");
    let ids: HashSet<&str> = received
        .iter()
        .map(|r| r.event["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "one event per configured event");
    for r in &received {
        // The campaign's pixel is a TikTok web pixel: both events go there, as `web`.
        assert_eq!(r.event_source, "web");
        assert_eq!(r.event_source_id, WEB_PIXEL);
        assert!(r.event.get("lead").is_none(), "lead is for CRM event sets");
        assert_eq!(
            s.tiktok
                .delivered_count(r.event["event_id"].as_str().unwrap()),
            1
        );
    }
    let names: HashSet<&str> = received
        .iter()
        .map(|r| r.event["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, HashSet::from(["Lead", "Visita realizada"]));
    assert_eq!(s.jobs_of(c).await[0].0, "done");
}

#[tokio::test]
async fn server_errors_and_timeouts_are_retried_with_the_same_event_id_and_delivered_once() {
    let (s, c) = stack_with_customer().await;
    s.tiktok.push_fault(TiktokFault::HttpError(503));
    s.tiktok.push_fault(TiktokFault::ServerError);
    // TikTok takes the events but the answer never comes in time.
    s.tiktok
        .push_fault(TiktokFault::Timeout(Duration::from_secs(3600)));
    let mut t = s.tuning();
    t.tiktok.timeout = Duration::from_secs(1);
    let worker = s.start_worker_with(t);
    s.move_to(c, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();

    let requests = s.tiktok.requests();
    assert!(requests.len() >= 4, "{requests:#?}");
    assert!(requests[2].outcome_unknown_to_client);
    let ids: HashSet<&Vec<String>> = requests.iter().map(|r| &r.event_ids).collect();
    assert_eq!(ids.len(), 1, "every attempt carried the same event_id");
    let received = s.tiktok.received();
    for copy in &received {
        assert_eq!(copy.event["event_id"], received[0].event["event_id"]);
        assert_eq!(copy.event["event_time"], received[0].event["event_time"]);
    }
    // The timed-out copy and the retry both reached TikTok: the same event_id, which TikTok
    // deduplicates within 48 hours.
    let event_id = &requests[0].event_ids[0];
    assert_eq!(s.tiktok.delivered_count(event_id), received.len());
    let rows = tiktok_audit(&s).await;
    let mut expected = vec!["retry"; requests.len() - 1];
    expected.push("delivered");
    assert_eq!(outcomes(&rows), expected);
    assert_eq!(rows[1].3.as_deref(), Some("50000"), "{rows:?}");
    assert!(rows[1].4.is_some(), "TikTok's request_id is the trace id");
    assert_eq!(s.jobs_of(c).await[0].0, "done");
}

#[tokio::test]
async fn throttling_40100_pauses_the_event_source_without_spending_attempts() {
    let (s, c) = stack_with_customer().await;
    s.tiktok.push_fault(TiktokFault::Throttle);
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    assert!(s.tiktok.wait_for_events(1, DEADLINE).await);
    s.drained().await;
    worker.shutdown().await.unwrap();

    let rows = tiktok_audit(&s).await;
    assert_eq!(
        rows.iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(),
        [("throttled", 1), ("delivered", 1)],
        "the throttled attempt was refunded"
    );
    assert_eq!(rows[0].3.as_deref(), Some("40100"));
    assert_eq!(s.tiktok.received().len(), 1);
    assert_eq!(s.jobs_of(c).await[0].0, "done");
    assert!(s.alert_causes(c).await.is_empty());
}

#[tokio::test]
async fn an_invalid_token_holds_the_event_source_and_a_new_token_resumes_it() {
    let (s, c) = stack_with_customer().await;
    // The event set's token was revoked: TikTok answers 40105 for every request.
    sqlx::query("UPDATE pixels SET access_token_enc = $1 WHERE id = 2")
        .bind(s.keys.seal("tt-revoked-token-0000"))
        .execute(s.crm())
        .await
        .unwrap();
    let mut t = s.tuning();
    t.tiktok.hold_recheck = Duration::from_millis(200);
    let worker = s.start_worker_with(t);
    s.move_to(c, 1).await;
    wait_until("the job to be held", DEADLINE, || async {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM stagecast.jobs WHERE status = 'pending' AND last_error LIKE 'held:%'",
        )
        .fetch_one(s.pool())
        .await
        .unwrap();
        held == 1
    })
    .await;
    // Rechecks of the held job send nothing while the token is the one refused.
    let since: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(s.pool())
        .await
        .unwrap();
    wait_until("the held job to be rechecked", DEADLINE, || async {
        let at: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("SELECT updated_at FROM stagecast.jobs WHERE kind = 'stage_change'")
                .fetch_one(s.pool())
                .await
                .unwrap();
        at > since
    })
    .await;
    let requests = s.tiktok.requests();
    assert_eq!(requests.len(), 1, "held: one request, nothing sent again");
    assert_eq!(requests[0].code, Some(40105));
    assert_eq!(s.sandbox.received().len(), 1, "Meta's event went out");
    assert_eq!(s.alert_causes(c).await, ["token_invalid"], "one alert");
    let alerts = s.chat_alerts(c).await;
    assert!(
        alerts
            .iter()
            .any(|a| a.contains("TikTok") && a.contains("40105")),
        "{alerts:?}"
    );
    // Held, not failed (it may be mid-recheck, claimed, right now).
    let job = &s.jobs_of(c).await[0];
    assert!(matches!(job.0.as_str(), "pending" | "running"), "{job:?}");

    // A new token is saved: the next recheck sends, without an operator's replay.
    sqlx::query("UPDATE pixels SET access_token_enc = $1 WHERE id = 2")
        .bind(s.keys.seal(TIKTOK_TOKEN))
        .execute(s.crm())
        .await
        .unwrap();
    s.drained().await;
    worker.shutdown().await.unwrap();

    assert_eq!(s.tiktok.received().len(), 1);
    assert_eq!(
        s.sandbox.received().len(),
        1,
        "Meta's event was not sent again"
    );
    let rows = tiktok_audit(&s).await;
    assert_eq!(outcomes(&rows).last(), Some(&"delivered"), "{rows:?}");
    assert!(
        outcomes(&rows[..rows.len() - 1])
            .iter()
            .all(|o| *o == "held"),
        "{rows:?}"
    );
    assert_eq!(rows[0].3.as_deref(), Some("40105"));
    assert!(
        rows.iter().all(|r| r.2 == rows[0].2),
        "same event_id throughout"
    );
    assert_eq!(s.jobs_of(c).await[0].0, "done");
    let attempts: i32 = sqlx::query_scalar(
        "SELECT attempts FROM stagecast.job_archive WHERE kind = 'stage_change'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(attempts, 1, "the held rounds spent no attempt");
    assert_eq!(
        s.alert_causes(c).await,
        ["token_invalid"],
        "still one alert"
    );
}

#[tokio::test]
async fn no_permission_on_the_event_set_fails_with_an_api_error_alert() {
    let (s, c) = stack_with_customer().await;
    s.tiktok.push_fault(TiktokFault::NoPermission);
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let rows = tiktok_audit(&s).await;
    assert_eq!(outcomes(&rows), ["failed"]);
    assert_eq!(rows[0].3.as_deref(), Some("40001"));
    assert_eq!(s.alert_causes(c).await, ["api_error"]);
}

#[tokio::test]
async fn one_invalid_event_in_a_batch_is_isolated_and_the_rest_delivered() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.seed_tiktok().await;
    s.crm_exec(
        r#"UPDATE crm_stages SET utm_event = '[{"platform":"tiktok","event_name":"Lead"}]' WHERE id = 1"#,
    )
    .await;
    for id in 1..=8 {
        s.customer(
            id,
            &format!("c{id}@example.com"),
            &format!("+55119999900{id:02}"),
            None,
        )
        .await;
    }
    // Customer 5's user agent looks like a SHA-256 digest, which TikTok refuses for a field
    // sent raw: its event makes any batch carrying it invalid (40002).
    s.crm_exec(&format!(
        "UPDATE customers SET client_user_agent = '{}' WHERE id = 5",
        sha256_hex("corrupted")
    ))
    .await;
    let worker = s.start_worker();
    s.crm_exec("UPDATE customers SET stage_id = 1 WHERE id BETWEEN 1 AND 8")
        .await;
    s.drained().await;
    worker.shutdown().await.unwrap();

    let received = s.tiktok.received();
    assert_eq!(received.len(), 7, "everyone but customer 5");
    for r in &received {
        assert_eq!(
            s.tiktok
                .delivered_count(r.event["event_id"].as_str().unwrap()),
            1
        );
    }
    let requests = s.tiktok.requests();
    assert_eq!(requests[0].event_count, 8, "the whole batch first");
    assert!(
        requests.iter().filter(|r| !r.accepted()).count() >= 2,
        "split"
    );
    for other in (1..=8).filter(|&c| c != 5) {
        assert_eq!(s.jobs_of(other).await[0].0, "done", "customer {other}");
    }
    let bad = s.jobs_of(5).await;
    assert_eq!(bad[0].0, "failed");
    assert!(bad[0].1.as_deref().unwrap().contains("40002"), "{bad:?}");
    assert_eq!(s.alert_causes(5).await, ["api_error"]);
}

#[tokio::test]
async fn a_partial_success_20001_counts_as_delivered() {
    let (s, c) = stack_with_customer().await;
    s.tiktok.push_fault(TiktokFault::PartialSuccess);
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    assert_eq!(outcomes(&tiktok_audit(&s).await), ["delivered"]);
    assert_eq!(s.tiktok.requests().len(), 1, "not sent again");
    assert_eq!(s.jobs_of(c).await[0].0, "done");
}

#[tokio::test]
async fn bad_configuration_is_an_alert_and_never_a_panic() {
    let (s, c) = stack_with_customer().await;
    // Donate has no TikTok counterpart; the second TikTok entry names a Meta-only event too.
    s.crm_exec(
        r#"UPDATE crm_stages SET utm_event = '[{"platform":"facebook","event_name":"Lead"},
              {"platform":"tiktok","event_name":"Donate"}]' WHERE id = 1;
           UPDATE pixels SET access_token_enc = NULL WHERE id = 2;
           UPDATE crm_stages SET utm_event = '[{"platform":"tiktok","event_name":"Purchase","use_sale_price":true}]' WHERE id = 2;"#,
    )
    .await;
    let d = s
        .customer(2, "d@example.com", "+5511999990002", Some(10.0))
        .await;
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    s.move_to(d, 2).await;
    s.drained().await;
    // A panic in a worker task would surface here.
    worker.shutdown().await.unwrap();

    assert!(s.tiktok.requests().is_empty(), "nothing went to TikTok");
    assert_eq!(s.sandbox.received().len(), 1, "Meta's Lead still went out");
    assert_eq!(s.alert_causes(c).await, ["event_not_on_platform"]);
    let alerts = s.chat_alerts(c).await;
    assert!(
        alerts
            .iter()
            .any(|a| a.contains("TikTok") && a.contains("\"Purchase\"")),
        "the alert names the platform and what to use instead: {alerts:?}"
    );
    assert_eq!(s.alert_causes(d).await, ["token_missing"]);
    assert_eq!(s.jobs_of(d).await[0].0, "failed");
}

#[tokio::test]
async fn tiktok_tokens_never_reach_the_logs() {
    let (s, c) = stack_with_customer().await;
    s.crm_exec(&format!(
        "UPDATE pixels SET access_token = '{TIKTOK_TOKEN}', access_token_enc = NULL WHERE id = 2"
    ))
    .await;
    s.tiktok.push_fault(TiktokFault::ServerError);
    let mut child = s
        .worker_command()
        .env("STAGECAST_LOG", "debug")
        .spawn()
        .unwrap();
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    s.move_to(c, 1).await;
    assert!(s.tiktok.wait_for_events(1, DEADLINE).await);
    s.drained().await;
    wait_until(
        "the worker sealed the plaintext token",
        DEADLINE,
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pixels WHERE access_token IS NOT NULL",
            )
            .fetch_one(s.pool())
            .await
            .unwrap()
                == 0
        },
    )
    .await;
    support::process::signal(&child, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(status.success());
    let logs = format!("{}{}", stdout.await.unwrap(), stderr.await.unwrap());
    assert!(logs.lines().count() > 5, "debug logging ran:\n{logs}");
    for needle in [TIKTOK_TOKEN, "maria.silva", "98765-4321", "5511987654321"] {
        assert!(!logs.contains(needle), "logs contain {needle:?}:\n{logs}");
    }
}

fn read_all<R>(pipe: Option<R>) -> tokio::task::JoinHandle<String>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut p, &mut text).await;
        }
        text
    })
}

/// `stagecast doctor` as the worker's role, against both sandboxes.
async fn doctor(s: &Stack) -> (Option<i32>, String) {
    let out = support::process::stagecast()
        .arg("doctor")
        .env("DATABASE_URL", &s.db.worker_url)
        .env("STAGECAST_META_GRAPH_URL", s.sandbox.base_url())
        .env("STAGECAST_TIKTOK_BASE_URL", s.tiktok.base_url())
        .env("STAGECAST_DOCTOR_TIMEOUT", "5s")
        .env("STAGECAST_KEYS", support::stack::KEYS)
        .output()
        .await
        .expect("run stagecast doctor");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains(TIKTOK_TOKEN) && !stderr.contains(TIKTOK_TOKEN),
        "the token was printed:\n{stdout}\n{stderr}"
    );
    (out.status.code(), stdout)
}

#[tokio::test]
async fn the_doctor_verifies_tiktok_credentials_against_the_events_api_without_sending_events() {
    let (s, _) = stack_with_customer().await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("  ✓ ")
            && l.contains(TIKTOK_EVENT_SET)
            && l.contains("the TikTok Events API accepts its token")),
        "{out}"
    );
    assert!(
        out.contains("TikTok Events API: http://127.0.0.1:"),
        "{out}"
    );
    assert!(s.tiktok.received().is_empty(), "the check sent no event");

    // A token TikTok does not know: a problem naming the fix.
    s.crm_exec(
        "UPDATE pixels SET access_token = 'tt-revoked-token', access_token_enc = NULL WHERE id = 2",
    )
    .await;
    let (code, out) = doctor(&s).await;
    assert_eq!(code, Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("  ✗ ") && l.contains("TikTok refused the token"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(lines[i].contains("40105"), "{out}");
    assert!(
        lines[i + 1].contains("stagecast pixel set-token 2"),
        "{out}"
    );
}

#[tokio::test]
async fn pixel_set_token_stores_a_tiktok_token_sealed_and_the_worker_delivers_with_it() {
    use tokio::io::AsyncWriteExt;
    let (s, c) = stack_with_customer().await;
    const NEW: &str = "tt-rotated-token-77aa";
    s.tiktok.add_event_source(TIKTOK_EVENT_SET, NEW);
    let mut child = support::process::stagecast()
        .args(["pixel", "set-token", TIKTOK_EVENT_SET])
        .env("DATABASE_URL", &s.db.owner_url)
        .env("STAGECAST_KEYS", support::stack::KEYS)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{NEW}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(NEW));
    let (plain, enc): (Option<String>, String) =
        sqlx::query_as("SELECT access_token, access_token_enc FROM pixels WHERE id = 2")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert!(plain.is_none());
    assert!(!enc.contains(NEW));
    assert_eq!(s.keys.open(&enc).unwrap().expose(), NEW);

    // The old token is revoked: only the new one can deliver.
    s.tiktok.revoke_token(TIKTOK_TOKEN);
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    assert_eq!(s.tiktok.received().len(), 1);
    assert_eq!(outcomes(&tiktok_audit(&s).await), ["delivered"]);
}
