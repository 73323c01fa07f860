//! Stage change → exactly one event per configured destination, with the expected payload;
//! configuration problems → alert, failed job with the reason, CRM write unaffected.

mod support;

use serde_json::Value;
use stagecast::pii::Normalizer;
use support::stack::{Stack, PIXEL, TOKEN};

fn sha(s: &str) -> String {
    stagecast::pii::sha256_hex(s)
}

#[tokio::test]
async fn stage_change_sends_one_event_per_destination_with_the_expected_payload() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // A stage with two destinations on the same pixel: a standard and a custom event.
    s.crm_exec(r#"INSERT INTO crm_stages (id, name, funnel_category, utm_event) VALUES (3, 'Fechou', 'fundo',
        '[{"platform":"facebook","event_name":"Purchase","use_sale_price":true},
          {"platform":"facebook","event_name":"Other","custom_event_name":"ContratoAssinado","value":10}]')"#)
        .await;
    let c = s
        .customer(
            7,
            "  Maria.Silva@Example.COM ",
            "(11) 98765-4321",
            Some(1490.5),
        )
        .await;
    // Test events go to Events Manager's Test Events tab when the pixel asks for it.
    s.crm_exec("UPDATE pixels SET test_event_code = 'TEST4242' WHERE id = 1")
        .await;
    let worker = s.start_worker();
    s.move_to(c, 3).await;
    assert!(
        s.sandbox
            .wait_for_events(2, std::time::Duration::from_secs(10))
            .await,
        "two events expected"
    );
    s.drained().await;
    worker.shutdown().await.unwrap();

    let received = s.sandbox.received();
    assert_eq!(received.len(), 2, "exactly one event per destination");
    let changed_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT (payload->>'changed_at')::timestamptz FROM stagecast.job_archive WHERE customer_id = $1")
            .bind(c)
            .fetch_one(s.pool())
            .await
            .unwrap();
    let job_id: i64 =
        sqlx::query_scalar("SELECT id FROM stagecast.job_archive WHERE customer_id = $1")
            .bind(c)
            .fetch_one(s.pool())
            .await
            .unwrap();
    let purchase = received
        .iter()
        .find(|r| r.event["event_name"] == "Purchase")
        .expect("Purchase sent");
    let custom = received
        .iter()
        .find(|r| r.event["event_name"] == "ContratoAssinado")
        .expect("custom event sent");
    let e = &purchase.event;
    assert_eq!(purchase.pixel_id, PIXEL);
    assert_eq!(purchase.test_event_code.as_deref(), Some("TEST4242"));
    assert_eq!(purchase.partner_agent.as_deref(), Some("stagecast"));
    assert_eq!(
        e["event_time"].as_i64().unwrap(),
        changed_at.timestamp(),
        "event_time is the stage change time"
    );
    assert_eq!(
        e["event_id"],
        stagecast::platforms::event::event_id(c, 3, changed_at, "facebook", PIXEL, "Purchase"),
        "event_id is the deterministic id of this stage change and destination"
    );
    assert_ne!(e["event_id"], custom.event["event_id"]);
    assert_eq!(e["action_source"], "physical_store");
    let ud = &e["user_data"];
    assert_eq!(ud["em"][0], sha("maria.silva@example.com"));
    assert_eq!(
        ud["ph"][0],
        sha("5511987654321"),
        "BR default region adds the country code"
    );
    assert_eq!(ud["fn"][0], sha("maria"));
    assert_eq!(ud["ln"][0], sha("dasilva"));
    assert_eq!(ud["external_id"][0], sha("7"));
    assert_eq!(ud["client_ip_address"], "200.150.10.20");
    let cd = &e["custom_data"];
    assert_eq!(cd["value"], serde_json::json!(1490.5));
    assert_eq!(cd["currency"], "BRL");
    assert_eq!(cd["stage_name"], "Fechou");
    assert_eq!(cd["funnel_category"], "fundo");
    assert_eq!(cd["campaign_name"], "Verão");
    // The custom event carries its configured value only when the sale price is not used...
    // ...but use_sale_price defaults to true, so the sale price wins there too.
    assert_eq!(
        custom.event["custom_data"]["value"],
        serde_json::json!(1490.5)
    );

    // Outcome written back: job done, two delivered audit rows with a match-quality score,
    // and no token anywhere in the audit.
    assert_eq!(
        s.jobs_of(c)
            .await
            .iter()
            .filter(|(st, _)| st == "done")
            .count(),
        1
    );
    let audit: Vec<(String, Option<f32>, Value)> = sqlx::query_as(
        "SELECT outcome, match_quality, request FROM stagecast.deliveries WHERE job_id = $1 ORDER BY id",
    )
    .bind(job_id)
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert_eq!(audit.len(), 2);
    for (outcome, mq, request) in &audit {
        assert_eq!(outcome, "delivered");
        let mq = mq.expect("match quality recorded");
        assert!(
            (8.0..=10.0).contains(&mq),
            "em+ph+external_id+fn/ln → high coverage, got {mq}"
        );
        assert!(!request.to_string().contains(TOKEN));
        assert!(!request.to_string().contains("maria.silva@example.com"));
    }
    let dump: String = sqlx::query_scalar(
        "SELECT coalesce(string_agg(d::text, ''), '') FROM stagecast.deliveries d",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert!(!dump.contains(TOKEN), "token in the delivery audit");
    assert!(
        s.chat_alerts(c).await.is_empty(),
        "no alert for a clean delivery"
    );
}

#[tokio::test]
async fn legacy_object_utm_event_is_normalised_and_delivered() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // A CRM still writing the legacy single-object form after the migration.
    s.crm_exec(r#"INSERT INTO crm_stages (id, name, utm_event) VALUES (5, 'Agendou', '{"platform":"facebook","event_name":"Schedule"}')"#)
        .await;
    let stored: Value = sqlx::query_scalar("SELECT utm_event FROM crm_stages WHERE id = 5")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(
        stored,
        serde_json::json!([{"platform": "facebook", "event_name": "Schedule"}])
    );
    let c = s.customer(1, "a@example.com", "+5511999990000", None).await;
    let worker = s.start_worker();
    s.move_to(c, 5).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let received = s.sandbox.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].event["event_name"], "Schedule");
}

/// Each case: the CRM write succeeds, the job ends `failed` with the reason, and one alert
/// with the right cause is written to the customer's chat.
async fn assert_failed_with_alert(
    s: &Stack,
    customer: i64,
    cause: &str,
    reason_fragment: &str,
    alert_fragment: &str,
) {
    let jobs = s.jobs_of(customer).await;
    assert_eq!(jobs.len(), 1, "one job: {jobs:?}");
    assert_eq!(jobs[0].0, "failed", "{jobs:?}");
    let reason = jobs[0].1.clone().unwrap_or_default();
    assert!(
        reason.contains(reason_fragment),
        "last_error {reason:?} should mention {reason_fragment:?}"
    );
    assert_eq!(s.alert_causes(customer).await, vec![cause.to_string()]);
    let alerts = s.chat_alerts(customer).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].contains(alert_fragment),
        "alert {:?} should contain {alert_fragment:?}",
        alerts[0]
    );
}

#[tokio::test]
async fn configuration_problems_fail_visibly_with_one_alert_each() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(
        r#"
        INSERT INTO pixels (id, platform, pixel_id, active, is_default) VALUES (2, 'facebook', '999', false, false);
        INSERT INTO utm_campaigns (id, name, pixel_id) VALUES (2, 'Antiga', 2), (3, 'Sem pixel', NULL);
        INSERT INTO crm_stages (id, name, utm_event) VALUES
          (10, 'Lixo', '"not a config"'),
          (11, 'Digitado errado', '[{"platform":"facebook","event_name":"Purchse"}]');
        "#,
    )
    .await;
    let no_campaign = s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.crm_exec("UPDATE customers SET utm_campaign_id = NULL WHERE id = 1")
        .await;
    let inactive = s.customer(2, "b@example.com", "+5511999990002", None).await;
    s.crm_exec("UPDATE customers SET utm_campaign_id = 2 WHERE id = 2")
        .await;
    let garbage = s.customer(3, "c@example.com", "+5511999990003", None).await;
    let typo = s.customer(4, "d@example.com", "+5511999990004", None).await;
    let no_value = s.customer(5, "e@example.com", "+5511999990005", None).await;
    let missing_pixel = s.customer(6, "f@example.com", "+5511999990006", None).await;
    s.crm_exec("UPDATE customers SET utm_campaign_id = 3 WHERE id = 6; UPDATE pixels SET is_default = false WHERE id = 1")
        .await;

    let worker = s.start_worker();
    s.move_to(no_campaign, 1).await;
    s.move_to(inactive, 1).await;
    s.move_to(garbage, 10).await;
    s.move_to(typo, 11).await;
    s.move_to(no_value, 2).await;
    s.move_to(missing_pixel, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();

    assert!(s.sandbox.received().is_empty(), "nothing may be sent");
    assert_failed_with_alert(
        &s,
        no_campaign,
        "no_campaign",
        "no associated UTM campaign",
        "não tem campanha UTM",
    )
    .await;
    assert_failed_with_alert(
        &s,
        inactive,
        "pixel_inactive",
        "pixel 999 is inactive",
        "está inativo",
    )
    .await;
    assert_failed_with_alert(
        &s,
        garbage,
        "invalid_event_config",
        "utm_event is a JSON string",
        "Lixo",
    )
    .await;
    assert_failed_with_alert(&s, typo, "unknown_event_name", "Purchse", "\"Purchase\"").await;
    assert_failed_with_alert(
        &s,
        no_value,
        "purchase_without_value",
        "no value",
        "nunca é enviada com valor 0",
    )
    .await;
    assert_failed_with_alert(
        &s,
        missing_pixel,
        "pixel_missing",
        "no facebook pixel",
        "não tem pixel",
    )
    .await;
    // The garbage config is kept as written and reported.
    let problem: String =
        sqlx::query_scalar("SELECT problem FROM stagecast.config_problems WHERE row_id = 10")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert!(problem.contains("string"));
    let kept: Value = sqlx::query_scalar("SELECT utm_event FROM crm_stages WHERE id = 10")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(kept, serde_json::json!("not a config"));
}

#[tokio::test]
async fn replaying_a_failed_stage_change_does_not_repeat_its_alert() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.crm_exec("UPDATE customers SET utm_campaign_id = NULL WHERE id = 1")
        .await;
    let worker = s.start_worker();
    s.move_to(c, 1).await;
    s.drained().await;
    // Replay it twice without fixing anything, as an admin would: still one alert in the chat.
    let replay = "SELECT stagecast.replay_jobs(p_status => 'failed', p_actor => 'tester', p_reason => 'test')";
    for _ in 0..2 {
        s.admin_exec(replay).await;
        s.drained().await;
    }
    assert_eq!(s.chat_alerts(c).await.len(), 1);
    // Fix the cause and replay: delivered, with the same stage-change time.
    s.crm_exec("UPDATE customers SET utm_campaign_id = 1 WHERE id = 1")
        .await;
    s.admin_exec(replay).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    assert_eq!(s.sandbox.received().len(), 1);
    assert_eq!(
        s.jobs_of(c).await,
        vec![(
            "done".to_string(),
            Some("1 delivered, 0 already delivered earlier".to_string())
        )]
    );
}

#[tokio::test]
async fn a_stage_change_older_than_seven_days_is_not_sent_and_alerts() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    // Another CRM's trigger (or a late import) queues an old change through the SQL API, as
    // its role, granted the way docs/crm-integration.md ("Who may call the enqueue functions")
    // tells such a CRM to: not executable by PUBLIC, so the deployment grants it explicitly.
    s.exec(&format!(
        "GRANT USAGE ON SCHEMA stagecast TO \"{crm}\";
         GRANT EXECUTE ON FUNCTION stagecast.enqueue_stage_changes(bigint[], bigint[], bigint[], timestamptz),
                                   stagecast.enqueue_stage_change(bigint, bigint, bigint, timestamptz)
            TO \"{crm}\";",
        crm = s.db.roles.crm
    ))
    .await;
    s.crm_exec("SELECT stagecast.enqueue_stage_change(1, 1, NULL, now() - interval '8 days')")
        .await;
    let worker = s.start_worker();
    s.drained().await;
    worker.shutdown().await.unwrap();
    assert!(s.sandbox.received().is_empty());
    assert_failed_with_alert(
        &s,
        c,
        "event_too_old",
        "window for physical_store events",
        "mais de 7 dias",
    )
    .await;
}

/// The Brazilian phone vectors of the pii module's unit tests (raw form → the E.164 digits sent
/// in `ph`): every format a CRM or a WhatsApp gateway stores, the trunk-0 national form both Meta
/// SDKs get wrong, and a mobile written without the 9th digit, which is sent in both spellings
/// (docs/events.md, "Brazilian mobiles without the 9th digit").
const BRAZILIAN_PHONES: &[(&str, &[&str])] = &[
    ("+55 (11) 98765-4321", &["5511987654321"]),
    ("0055 11 98765-4321", &["5511987654321"]),
    ("+55.11.98765.4321", &["5511987654321"]),
    ("5511987654321@s.whatsapp.net", &["5511987654321"]),
    ("011 98765-4321", &["5511987654321"]),
    ("(11) 98765-4321", &["5511987654321"]),
    ("551187654321", &["551187654321", "5511987654321"]),
];

#[tokio::test]
async fn the_pipelines_normaliser_hashes_every_documented_brazilian_vector() {
    // End to end, through the pipeline as configured (default region BR, the default): one
    // customer per vector, and what reaches "Meta" is the hash of the expected digits.
    let s = Stack::new().await;
    s.seed_standard().await;
    for (i, (raw, _)) in BRAZILIAN_PHONES.iter().enumerate() {
        let id = i as i64 + 1;
        sqlx::query("INSERT INTO customers (id, name, phone, utm_campaign_id) VALUES ($1, 'Cliente', $2, 1)")
            .bind(id)
            .bind(raw)
            .execute(s.crm())
            .await
            .unwrap();
    }
    let worker = s.start_worker();
    s.crm_exec("UPDATE customers SET stage_id = 1").await;
    assert!(
        s.sandbox
            .wait_for_events(BRAZILIAN_PHONES.len(), support::wait::DEADLINE)
            .await
    );
    s.drained().await;
    worker.shutdown().await.unwrap();
    let received = s.sandbox.received();
    for (i, (raw, digits)) in BRAZILIAN_PHONES.iter().enumerate() {
        let external_id = sha(&(i + 1).to_string());
        let event = received
            .iter()
            .find(|r| r.event["user_data"]["external_id"][0] == external_id.as_str())
            .unwrap_or_else(|| panic!("no event for customer {}", i + 1));
        let hashes: Vec<String> = digits.iter().map(|d| sha(d)).collect();
        assert_eq!(
            event.event["user_data"]["ph"],
            serde_json::json!(hashes),
            "{raw:?} must be sent as sha256 of {digits:?}"
        );
    }
    // And the pipeline's default region is the one the unit tests use.
    let n =
        Normalizer::new(&stagecast::pipeline::PipelineConfig::default().default_region).unwrap();
    for (raw, digits) in BRAZILIAN_PHONES {
        assert_eq!(n.phone_digits(raw).unwrap(), digits[0], "{raw:?}");
    }
}
