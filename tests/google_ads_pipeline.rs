//! Google Ads end to end: CRM stage changes (as the CRM role) on a real database, the worker in
//! process (as the worker role), and the local Google OAuth + Google Ads sandbox, which
//! validates requests the way Google documents them and injects its failure modes. Every stage
//! change gives exactly one conversion per configured destination, a retry carries the same
//! orderId and conversionDateTime, each error class ends in its outcome and alert, and bad
//! configuration is an alert, never a panic.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use stagecast::pii::sha256_hex;
use stagecast_sandbox::GoogleAdsFault;
use support::stack::{
    Stack, Tuning, GOOGLE_ACTION, GOOGLE_CUSTOMER, GOOGLE_REFRESH, TIKTOK_EVENT_SET,
};
use support::wait::{wait_for, wait_until, DEADLINE};

/// (outcome, attempt, orderId sent, error_code) of one Google Ads audit row.
type AuditRow = (String, i32, Option<String>, Option<String>);

/// Every Google Ads audit row, in order.
async fn google_audit(s: &Stack) -> Vec<AuditRow> {
    sqlx::query_as(
        "SELECT outcome, attempt, request::jsonb ->> 'orderId', error_code FROM stagecast.deliveries \
         WHERE platform = 'google_ads' ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap()
}

fn outcomes(rows: &[AuditRow]) -> Vec<&str> {
    rows.iter().map(|r| r.0.as_str()).collect()
}

/// Meta and Google Ads on stage 2, and one customer with a gclid.
async fn stack_with_customer() -> (Stack, i64) {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.seed_google().await;
    let c = s
        .customer(
            1,
            " Maria.Silva@Gmail.com ",
            "(11) 98765-4321",
            Some(1500.0),
        )
        .await;
    s.crm_exec("UPDATE customers SET gclid = 'Cj0KCQiA-test-gclid-1' WHERE id = 1")
        .await;
    (s, c)
}

/// `n` more customers (ids from 11), each with a gclid and a chat, as the CRM inserts them.
async fn more_customers(s: &Stack, n: i64) -> Vec<i64> {
    s.crm_exec(&format!(
        "INSERT INTO customers (id, name, email, phone, utm_campaign_id, sale_price, gclid) \
         SELECT 10 + i, 'Cliente ' || i, 'c' || i || '@example.com', '+55119' || lpad(i::text, 8, '0'), 1, 100 * i, 'gclid-' || i \
           FROM generate_series(1, {n}) i; \
         INSERT INTO chats (customer_id, channel, external_id) \
         SELECT 10 + i, 'whatsapp', 'chat-' || (10 + i) FROM generate_series(1, {n}) i;"
    ))
    .await;
    (11..11 + n).collect()
}

/// The Google Ads audit row of the conversion sent with `order_id`, last first.
async fn audit_of_order(s: &Stack, order_id: &str) -> Vec<AuditRow> {
    google_audit(s)
        .await
        .into_iter()
        .filter(|r| r.2.as_deref() == Some(order_id))
        .rev()
        .collect()
}

/// The customer whose Google Ads conversion was sent with `order_id`.
async fn customer_of_order(s: &Stack, order_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT j.customer_id FROM stagecast.deliveries d \
           JOIN (SELECT id, customer_id FROM stagecast.jobs UNION ALL \
                 SELECT id, customer_id FROM stagecast.job_archive) j ON j.id = d.job_id \
          WHERE d.platform = 'google_ads' AND d.request::jsonb ->> 'orderId' = $1 LIMIT 1",
    )
    .bind(order_id)
    .fetch_one(s.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_stage_change_sends_one_conversion_to_google_and_one_event_to_meta() {
    let (s, c) = stack_with_customer().await;
    s.crm_exec("UPDATE pixels SET ad_user_data_consent = 'granted' WHERE id = 3")
        .await;
    let worker = s.start_worker();
    s.move_to(c, 2).await;
    s.drained().await;
    worker.shutdown().await.unwrap();

    let accepted = s.google.accepted();
    assert_eq!(accepted.len(), 1, "exactly one conversion: {accepted:#?}");
    assert_eq!(s.sandbox.received().len(), 1, "and exactly one Meta event");
    let row = &accepted[0];
    assert_eq!(row["gclid"], "Cj0KCQiA-test-gclid-1");
    assert_eq!(
        row["conversionAction"],
        format!("customers/{GOOGLE_CUSTOMER}/conversionActions/{GOOGLE_ACTION}")
    );
    assert_eq!(row["conversionValue"], 1500.0);
    assert_eq!(row["currencyCode"], "BRL");
    assert_eq!(row["consent"], serde_json::json!({"adUserData": "GRANTED"}));
    // Google's normalisation: gmail.com addresses without dots, E.164 phones.
    let ids = row["userIdentifiers"].as_array().unwrap();
    assert_eq!(ids[0]["hashedEmail"], sha256_hex("mariasilva@gmail.com"));
    assert_eq!(ids[1]["hashedPhoneNumber"], sha256_hex("+5511987654321"));
    let text = row.to_string();
    for raw in ["Maria", "maria", "98765-4321", "11987654321"] {
        assert!(!text.contains(raw), "raw contact data {raw:?} in {text}");
    }
    // The stage change's time, as Google wants it, and its order id.
    let changed_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT (payload ->> 'changed_at')::timestamptz FROM stagecast.job_archive WHERE customer_id = $1",
    )
    .bind(c)
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(
        row["conversionDateTime"],
        changed_at.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
    );
    let requests = s.google.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].customer_id, GOOGLE_CUSTOMER);
    assert_eq!(requests[0].login_customer_id, None);
    let rows = google_audit(&s).await;
    assert_eq!(outcomes(&rows), ["delivered"]);
    assert_eq!(rows[0].2.as_deref(), row["orderId"].as_str());
    assert_eq!(s.jobs_of(c).await[0].0, "done");
    assert!(s.alert_causes(c).await.is_empty());
}

#[tokio::test]
async fn a_stage_naming_meta_tiktok_and_google_sends_exactly_one_event_to_each() {
    let (s, c) = stack_with_customer().await;
    s.seed_tiktok().await;
    // seed_tiktok rewrote stage 2 for Meta and TikTok: name all three at once.
    s.crm_exec(
        r#"UPDATE crm_stages SET utm_event = '[{"platform":"facebook","event_name":"Purchase","use_sale_price":true},
              {"platform":"tiktok","event_name":"Purchase","use_sale_price":true},
              {"platform":"google_ads","event_name":"Purchase","use_sale_price":true}]' WHERE id = 2"#,
    )
    .await;
    let worker = s.start_worker();
    s.move_to(c, 2).await;
    s.drained().await;
    worker.shutdown().await.unwrap();

    assert_eq!(s.sandbox.received().len(), 1, "one Meta event");
    let tiktok = s.tiktok.received();
    assert_eq!(tiktok.len(), 1, "one TikTok event");
    assert_eq!(tiktok[0].event_source_id, TIKTOK_EVENT_SET);
    assert_eq!(s.google.accepted().len(), 1, "one Google Ads conversion");
    assert_eq!(s.google.requests().len(), 1);
    let platforms: Vec<String> = sqlx::query_scalar(
        "SELECT platform FROM stagecast.deliveries WHERE outcome = 'delivered' ORDER BY platform",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(platforms, ["facebook", "google_ads", "tiktok"]);
    assert_eq!(s.jobs_of(c).await[0].0, "done");
    assert!(s.alert_causes(c).await.is_empty());
}

#[tokio::test]
async fn a_5xx_is_retried_with_the_same_order_id_and_date_and_google_keeps_one() {
    let (s, c) = stack_with_customer().await;
    s.google.push_fault(GoogleAdsFault::HttpError(503));
    // Google took the row but the answer was lost: the re-sent row is already there.
    s.google.push_fault(GoogleAdsFault::HttpError(502));
    let worker = s.start_worker();
    s.move_to(c, 2).await;
    s.drained().await;
    worker.shutdown().await.unwrap();

    let requests = s.google.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert_eq!(
        requests.iter().map(|r| r.http_status).collect::<Vec<_>>(),
        [503, 502, 200]
    );
    let orders: HashSet<&Vec<String>> = requests.iter().map(|r| &r.order_ids).collect();
    assert_eq!(orders.len(), 1, "every attempt carried the same orderId");
    let order = &requests[0].order_ids[0];
    assert_eq!(s.google.recorded(order), 1);
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT outcome, request::jsonb FROM stagecast.deliveries WHERE platform = 'google_ads' ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["retry", "retry", "delivered"]
    );
    let dates: HashSet<&Value> = rows.iter().map(|r| &r.1["conversionDateTime"]).collect();
    assert_eq!(
        dates.len(),
        1,
        "the same conversionDateTime on every attempt"
    );
    assert_eq!(
        s.google.accepted()[0]["conversionDateTime"],
        *rows[0].1.get("conversionDateTime").unwrap()
    );
    assert_eq!(s.jobs_of(c).await[0].0, "done");
    assert!(s.alert_causes(c).await.is_empty());
}

#[tokio::test]
async fn row_errors_land_on_the_rows_their_index_names() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.seed_google().await;
    // Google only for this test: one request carries all three rows.
    s.crm_exec(
        r#"UPDATE crm_stages SET utm_event = '[{"platform":"google_ads","event_name":"Purchase","use_sale_price":true}]' WHERE id = 2"#,
    )
    .await;
    let customers = more_customers(&s, 3).await;
    s.google.push_fault(GoogleAdsFault::RowErrors(vec![
        (1, "CLICK_NOT_FOUND".into()),
        (2, "CLICK_CONVERSION_ALREADY_EXISTS".into()),
    ]));
    // All three moved before the worker starts: claimed together, sent in one request.
    s.crm_exec("UPDATE customers SET stage_id = 2 WHERE id > 10")
        .await;
    let worker = s.start_worker();
    s.drained().await;
    worker.shutdown().await.unwrap();

    let requests = s.google.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].rows, 3);
    let order = &requests[0].order_ids;
    // Row 0: delivered. Row 1: the click is not this account's: failed with its own cause.
    // Row 2: Google already has it: delivered.
    assert_eq!(audit_of_order(&s, &order[0]).await[0].0, "delivered");
    let not_found = &audit_of_order(&s, &order[1]).await[0];
    assert_eq!(not_found.0, "failed");
    assert_eq!(not_found.3.as_deref(), Some("CLICK_NOT_FOUND"));
    assert_eq!(audit_of_order(&s, &order[2]).await[0].0, "delivered");
    assert_eq!(
        s.google.accepted().len(),
        1,
        "the sandbox recorded row 0 only"
    );

    let lost = customer_of_order(&s, &order[1]).await;
    assert!(customers.contains(&lost));
    assert_eq!(s.alert_causes(lost).await, ["click_not_found"]);
    let alert = &s.chat_alerts(lost).await[0];
    assert!(
        alert.contains("não encontrou nesta conta o clique") && alert.contains("CLICK_NOT_FOUND"),
        "{alert}"
    );
    assert!(
        !alert.contains("recusado"),
        "not an API error text: {alert}"
    );
    assert_eq!(s.jobs_of(lost).await[0].0, "failed");
    for other in customers.iter().filter(|c| **c != lost) {
        assert!(s.alert_causes(*other).await.is_empty());
        assert_eq!(s.jobs_of(*other).await[0].0, "done");
    }
}

#[tokio::test]
async fn throttling_pauses_the_destination_and_the_daily_quota_waits_for_the_next_day() {
    let (s, c) = stack_with_customer().await;
    s.google.push_fault(GoogleAdsFault::Throttled);
    let mut t = s.tuning();
    // Google's retryDelay in the sandbox is 5 s: the destination pauses that long.
    t.worker.lease = Duration::from_secs(20);
    let worker = s.start_worker_with(t.clone());
    s.move_to(c, 2).await;
    s.drained().await;
    let rows = google_audit(&s).await;
    assert_eq!(outcomes(&rows), ["throttled", "delivered"], "{rows:?}");
    assert_eq!(rows[0].3.as_deref(), Some("RESOURCE_TEMPORARILY_EXHAUSTED"));
    assert_eq!(rows[1].1, 1, "a throttle spends no attempt");
    assert!(s.alert_causes(c).await.is_empty());

    // RESOURCE_EXHAUSTED: the day's quota is spent; the job waits for the next day.
    let d = more_customers(&s, 1).await[0];
    s.google.push_fault(GoogleAdsFault::QuotaExhausted);
    s.move_to(d, 2).await;
    let (attempts, hours): (i32, f64) = wait_for("the job to wait for the quota", DEADLINE, || async {
        sqlx::query_as::<_, (i32, f64)>(
            "SELECT attempts, extract(epoch FROM run_at - now())::float8 / 3600 FROM stagecast.jobs \
              WHERE customer_id = $1 AND status = 'pending' AND last_error IS NOT NULL",
        )
        .bind(d)
        .fetch_optional(s.pool())
        .await
        .unwrap()
    })
    .await;
    worker.shutdown().await.unwrap();
    assert!(
        hours > 0.9,
        "retried from the next quota day, {hours} h away"
    );
    assert_eq!(attempts, 0, "no attempt spent on the quota");
    assert!(s.alert_causes(d).await.is_empty());
    let last = google_audit(&s).await.pop().unwrap();
    assert_eq!(last.0, "throttled");
    assert_eq!(last.3.as_deref(), Some("RESOURCE_EXHAUSTED"));
}

#[tokio::test]
async fn too_recent_event_is_retried_hours_later_with_the_same_order_id() {
    let (s, c) = stack_with_customer().await;
    s.google.push_fault(GoogleAdsFault::RowErrors(vec![(
        0,
        "TOO_RECENT_EVENT".into(),
    )]));
    let worker = s.start_worker();
    s.move_to(c, 2).await;
    let hours: f64 = wait_for("the job to wait for Google", DEADLINE, || async {
        sqlx::query_scalar::<_, f64>(
            "SELECT extract(epoch FROM run_at - now())::float8 / 3600 FROM stagecast.jobs \
              WHERE customer_id = $1 AND status = 'pending' AND last_error IS NOT NULL",
        )
        .bind(c)
        .fetch_optional(s.pool())
        .await
        .unwrap()
    })
    .await;
    assert!(hours > 5.9, "about six hours later, not {hours} h");
    assert!(s.google.accepted().is_empty());
    // Six hours pass.
    s.exec("UPDATE stagecast.jobs SET run_at = now() WHERE kind = 'stage_change'")
        .await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let requests = s.google.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].order_ids, requests[1].order_ids);
    assert_eq!(s.google.accepted().len(), 1);
    let rows = google_audit(&s).await;
    assert_eq!(outcomes(&rows), ["throttled", "delivered"]);
    assert_eq!(rows[0].3.as_deref(), Some("TOO_RECENT_EVENT"));
    assert_eq!(rows[1].1, 1, "waiting for Google spent no attempt");
    assert!(s.alert_causes(c).await.is_empty());
}

#[tokio::test]
async fn invalid_grant_holds_the_destination_with_one_alert_until_a_new_token_is_sealed() {
    let (s, c) = stack_with_customer().await;
    let d = more_customers(&s, 1).await[0];
    s.google.revoke_refresh_token(GOOGLE_REFRESH);
    let mut t: Tuning = s.tuning();
    t.google_ads.hold_probe = Duration::from_millis(200);
    let worker = s.start_worker_with(t);
    s.move_to(c, 2).await;
    s.move_to(d, 2).await;
    wait_until("both jobs held", DEADLINE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM stagecast.jobs WHERE status = 'pending' AND last_error LIKE 'held:%'",
        )
        .fetch_one(s.pool())
        .await
        .unwrap()
            == 2
    })
    .await;
    assert!(s.google.requests().is_empty(), "no upload without a token");
    let alerts: Vec<String> = sqlx::query_scalar("SELECT cause FROM stagecast.alerts")
        .fetch_all(s.pool())
        .await
        .unwrap();
    assert_eq!(alerts, ["token_invalid"], "one alert for the destination");
    let attempts: i32 =
        sqlx::query_scalar("SELECT max(attempts) FROM stagecast.jobs WHERE kind = 'stage_change'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(attempts, 0, "held without spending attempts");

    // A new refresh token, sealed on the pixel: the held conversions go out by themselves.
    const NEW: &str = "1//0g-new-refresh-token-after-consent";
    s.google.add_refresh_token(NEW);
    sqlx::query("UPDATE pixels SET access_token_enc = $1 WHERE id = 3")
        .bind(s.keys.seal(NEW))
        .execute(s.pool())
        .await
        .unwrap();
    s.drained().await;
    worker.shutdown().await.unwrap();
    assert_eq!(s.google.accepted().len(), 2);
    let alerts: i64 = sqlx::query_scalar("SELECT count(*) FROM stagecast.alerts")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(alerts, 1, "no second alert");
}

#[tokio::test]
async fn bad_configuration_is_an_alert_naming_the_destination_never_a_panic() {
    let (s, c) = stack_with_customer().await;
    // The destination row lacks its conversion action; its consent text is not Google's.
    s.crm_exec(
        "UPDATE pixels SET conversion_action_id = NULL, ad_user_data_consent = 'yes' WHERE id = 3",
    )
    .await;
    let worker = s.start_worker();
    s.move_to(c, 2).await;
    s.drained().await;
    assert_eq!(s.alert_causes(c).await, ["conversion_action_missing"]);
    let alert = &s.chat_alerts(c).await[0];
    assert!(
        alert.contains("o pixel 123-456-7890 não tem a ação de conversão")
            && alert.contains("a configuração da etapa está correta"),
        "{alert}"
    );
    assert!(s.google.requests().is_empty());
    assert_eq!(s.sandbox.received().len(), 1, "Meta still gets its event");

    // Fixed, the next stage change goes out (without the unreadable consent) and the worker
    // is still running.
    s.crm_exec(&format!(
        "UPDATE pixels SET conversion_action_id = '{GOOGLE_ACTION}' WHERE id = 3"
    ))
    .await;
    let d = more_customers(&s, 1).await[0];
    s.move_to(d, 2).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let accepted = s.google.accepted();
    assert_eq!(accepted.len(), 1);
    assert!(accepted[0].get("consent").is_none(), "{:?}", accepted[0]);
    assert!(s.alert_causes(d).await.is_empty());
}

#[tokio::test]
async fn a_worker_without_an_oauth_client_holds_with_a_configuration_alert_not_a_token_one() {
    // The OAuth client is the process's configuration, not the pixel's token: the agents'
    // alert must not tell them to generate a new token.
    let (s, c) = stack_with_customer().await;
    let mut t: Tuning = s.tuning();
    t.google_ads.client_secret = None;
    let worker = s.start_worker_with(t);
    s.move_to(c, 2).await;
    wait_until("the Google job held", DEADLINE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM stagecast.jobs WHERE status = 'pending' AND last_error LIKE 'held:%'",
        )
        .fetch_one(s.pool())
        .await
        .unwrap()
            == 1
    })
    .await;
    worker.shutdown().await.unwrap();
    assert!(s.google.requests().is_empty(), "no upload without a token");
    let alerts: Vec<(String, String)> =
        sqlx::query_as("SELECT cause, message FROM stagecast.alerts ORDER BY id")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].0, "request_refused", "{alerts:?}");
    assert!(
        alerts[0].1.contains("--google-ads-client-id"),
        "the alert names the missing setting: {}",
        alerts[0].1
    );
}
