//! Routing decisions end to end through the sandbox (which refuses what Meta refuses):
//! `messaging_mode = always` without a click id, business-messaging-only names without
//! business messaging, `website`/`app` pixels, and event values that cannot be sent.

mod support;

use std::time::Duration;

use support::stack::Stack;

const WABA: &str = "102290129340398";

async fn with_click_id(s: &Stack, customer: i64, clid: &str) {
    sqlx::query("UPDATE customers SET utm_metadata = jsonb_build_object('ctwa_clid', $2::text) WHERE id = $1")
        .bind(customer)
        .bind(clid)
        .execute(s.crm())
        .await
        .expect("the CRM stores the click id");
}

#[tokio::test]
async fn always_mode_sends_business_messaging_only_with_a_click_id() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(&format!(
        "UPDATE pixels SET waba_id = '{WABA}', messaging_mode = 'always' WHERE id = 1"
    ))
    .await;
    let clicked = s.customer(1, "a@example.com", "+5511999990001", None).await;
    with_click_id(
        &s,
        clicked,
        "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LE",
    )
    .await;
    let plain = s.customer(2, "b@example.com", "+5511999990002", None).await;
    let worker = s.start_worker();
    s.move_to(clicked, 1).await;
    s.move_to(plain, 1).await;
    assert!(s.sandbox.wait_for_events(2, Duration::from_secs(15)).await);
    s.drained().await;
    worker.shutdown().await.unwrap();

    // Both accepted: the sandbox refuses business messaging without ctwa_clid (400/100/2804001).
    assert!(s.sandbox.requests().iter().all(|r| r.accepted()));
    let received = s.sandbox.received();
    let by_clid = |has: bool| {
        received
            .iter()
            .find(|r| r.event["user_data"].get("ctwa_clid").is_some() == has)
            .map(|r| r.event.clone())
            .expect("event")
    };
    let bm = by_clid(true);
    assert_eq!(bm["action_source"], "business_messaging");
    assert_eq!(bm["event_name"], "LeadSubmitted");
    let own = by_clid(false);
    assert_eq!(own["action_source"], "physical_store", "{own}");
    assert_eq!(own["event_name"], "Lead");
    assert!(own.get("messaging_channel").is_none());
    assert!(own["user_data"]
        .get("whatsapp_business_account_id")
        .is_none());
    for c in [clicked, plain] {
        assert_eq!(s.jobs_of(c).await[0].0, "done");
    }
}

#[tokio::test]
async fn a_business_messaging_only_name_is_refused_without_business_messaging() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(&format!(
        "UPDATE pixels SET waba_id = '{WABA}' WHERE id = 1"
    ))
    .await;
    s.crm_exec(
        r#"INSERT INTO crm_stages (id, name, funnel_category, utm_event) VALUES
           (3, 'Lead qualificado', 'meio', '[{"platform":"facebook","event_name":"QualifiedLead"}]')"#,
    )
    .await;
    let clicked = s.customer(1, "a@example.com", "+5511999990001", None).await;
    with_click_id(&s, clicked, "ARAkLkA8rmlFeiCktEJQ").await;
    let plain = s.customer(2, "b@example.com", "+5511999990002", None).await;
    let worker = s.start_worker();
    s.move_to(plain, 3).await;
    s.move_to(clicked, 3).await;
    assert!(s.sandbox.wait_for_events(1, Duration::from_secs(15)).await);
    s.drained().await;
    worker.shutdown().await.unwrap();

    let received = s.sandbox.received();
    assert_eq!(received.len(), 1, "only the click-to-WhatsApp customer's");
    assert_eq!(received[0].event["event_name"], "QualifiedLead");
    assert_eq!(received[0].event["action_source"], "business_messaging");
    assert_eq!(
        s.sandbox.requests().len(),
        1,
        "the refused one was never sent"
    );
    let jobs = s.jobs_of(plain).await;
    assert_eq!(jobs[0].0, "failed");
    assert!(
        jobs[0]
            .1
            .as_deref()
            .unwrap_or("")
            .contains("configure Lead"),
        "{jobs:?}"
    );
    assert_eq!(
        s.alert_causes(plain).await,
        ["business_messaging_only_event"]
    );
    let alert = &s.chat_alerts(plain).await[0];
    assert!(
        alert.contains("\"QualifiedLead\"") && alert.contains("\"Lead\""),
        "{alert}"
    );
}

#[tokio::test]
async fn website_and_app_pixels_are_refused_before_sending() {
    for source in ["website", "app"] {
        let s = Stack::new().await;
        s.seed_standard().await;
        s.crm_exec(&format!(
            "UPDATE pixels SET action_source = '{source}' WHERE id = 1"
        ))
        .await;
        let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
        let worker = s.start_worker();
        s.move_to(c, 1).await;
        s.drained().await;
        worker.shutdown().await.unwrap();
        assert!(s.sandbox.requests().is_empty(), "{source}: nothing sent");
        let jobs = s.jobs_of(c).await;
        assert_eq!(jobs[0].0, "failed", "{source}");
        assert!(
            jobs[0].1.as_deref().unwrap_or("").contains(source),
            "{jobs:?}"
        );
        assert_eq!(s.alert_causes(c).await, ["unsupported_action_source"]);
    }
}

#[tokio::test]
async fn a_value_that_cannot_be_sent_is_refused_at_parse_time_naming_the_stage() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(
        r#"INSERT INTO crm_stages (id, name, funnel_category, utm_event) VALUES
           (3, 'Venda enorme', 'fundo', '[{"platform":"facebook","event_name":"Purchase","value":1e308,"use_sale_price":false}]')"#,
    )
    .await;
    let c = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let worker = s.start_worker();
    s.move_to(c, 3).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    assert!(
        s.sandbox.requests().is_empty(),
        "never sent (it would go as value null)"
    );
    assert_eq!(s.jobs_of(c).await[0].0, "failed");
    assert_eq!(s.alert_causes(c).await, ["invalid_event_config"]);
    let alert = &s.chat_alerts(c).await[0];
    assert!(
        alert.contains("Venda enorme") && alert.contains("1e+308"),
        "{alert}"
    );
}

#[tokio::test]
async fn the_age_window_is_seven_days_for_business_messaging_and_configurable_for_physical_store() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(&format!(
        "UPDATE pixels SET waba_id = '{WABA}' WHERE id = 1"
    ))
    .await;
    let clicked = s.customer(1, "a@example.com", "+5511999990001", None).await;
    with_click_id(&s, clicked, "ARAkLkA8rmlFeiCktEJQ").await;
    let store = s.customer(2, "b@example.com", "+5511999990002", None).await;
    let ancient = s.customer(3, "c@example.com", "+5511999990003", None).await;
    s.move_to(clicked, 1).await;
    s.move_to(store, 1).await;
    s.move_to(ancient, 1).await;
    // The stage changes happened ten days ago (the worker was down, say); one 70 days ago.
    s.exec(&format!(
        "UPDATE stagecast.jobs SET payload = jsonb_set(payload, '{{changed_at}}', \
           to_jsonb(now() - CASE WHEN customer_id = {ancient} THEN interval '70 days' ELSE interval '10 days' END))",
    ))
    .await;
    let mut t = s.tuning();
    t.meta.physical_store_max_age = Some(Duration::from_secs(62 * 24 * 3600));
    let worker = s.start_worker_with(t);
    assert!(s.sandbox.wait_for_events(1, Duration::from_secs(15)).await);
    s.drained().await;
    worker.shutdown().await.unwrap();

    let received = s.sandbox.received();
    assert_eq!(received.len(), 1, "only the physical_store event");
    assert_eq!(received[0].event["action_source"], "physical_store");
    assert_eq!(s.jobs_of(store).await[0].0, "done");
    // The business-messaging one is past Meta's 7 days whatever the physical_store window:
    // refused locally, never sent (Meta would answer 2804003).
    assert_eq!(s.sandbox.requests().len(), 1);
    let jobs = s.jobs_of(clicked).await;
    assert_eq!(jobs[0].0, "failed");
    assert!(
        jobs[0]
            .1
            .as_deref()
            .unwrap_or("")
            .contains("window for business_messaging"),
        "{jobs:?}"
    );
    assert_eq!(s.alert_causes(clicked).await, ["event_too_old"]);
    // Each alert names the window actually applied: 7 days for business messaging, the
    // configured 62 days for a physical_store event past it.
    let seven = s.chat_alerts(clicked).await;
    assert!(
        seven.iter().any(|a| a.contains("mais de 7 dias")),
        "{seven:?}"
    );
    assert_eq!(s.alert_causes(ancient).await, ["event_too_old"]);
    let long = s.chat_alerts(ancient).await;
    assert!(
        long.iter()
            .any(|a| a.contains("mais de 62 dias") && !a.contains("7 dias")),
        "{long:?}"
    );
}
