//! What a Meta event says about the customer and the pixel, end to end: CRM rows → stage change
//! → worker → the Graph sandbox, which validates every event as Meta documents it. Identity keys
//! (country from the tenant's region, both spellings of a Brazilian mobile without its 9th
//! digit, `fbc` time, `fbp`, `db`, `ge`, `lead_id`, a Purchase's `order_id`), Conversion Leads,
//! Limited Data Use and opt-out, and a CRM whose views lack the optional columns.

mod support;

use serde_json::Value;
use support::stack::{Stack, PIXEL};

fn sha256(s: &str) -> String {
    stagecast::pii::sha256_hex(s)
}

/// The one event the sandbox accepted.
fn only_event(s: &Stack) -> Value {
    let received = s.sandbox.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].pixel_id, PIXEL);
    received[0].event.clone()
}

#[tokio::test]
async fn identity_keys_meta_asks_for_are_sent() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // No country; a mobile stored without its 9th digit; an fbclid with its capture time; the
    // optional columns of the contract.
    s.crm_exec(
        "INSERT INTO customers (id, name, phone, utm_campaign_id, sale_price, fbclid, fbclid_at, fbp, birth_date, gender, lead_id) \
         VALUES (5, 'Ana Lima', '+55 11 8765-4321', 1, 250.00, 'IwAR2F4-dbP0l7Mn', '2026-03-01T12:00:00Z', \
                 'fb.1.1596403881668.1116446470', '1997-02-16', 'Feminino', '1234567890123456')",
    )
    .await;
    let worker = s.start_worker();
    s.move_to(5, 2).await; // Purchase
    s.drained().await;
    worker.shutdown().await.unwrap();
    let e = only_event(&s);
    let ud = &e["user_data"];
    assert_eq!(
        ud["ph"],
        serde_json::json!([sha256("551187654321"), sha256("5511987654321")]),
        "both spellings of the mobile: {ud}"
    );
    assert_eq!(
        ud["country"],
        serde_json::json!([sha256("br")]),
        "the tenant's region"
    );
    assert_eq!(
        ud["fbc"], "fb.1.1772366400000.IwAR2F4-dbP0l7Mn",
        "fbc created when the fbclid was captured"
    );
    assert_eq!(ud["fbp"], "fb.1.1596403881668.1116446470");
    assert_eq!(ud["db"], serde_json::json!([sha256("19970216")]));
    assert_eq!(ud["ge"], serde_json::json!([sha256("f")]));
    assert_eq!(ud["lead_id"], serde_json::json!(1_234_567_890_123_456u64));
    let order = e["custom_data"]["order_id"].as_str().expect("order_id");
    assert_eq!(order.len(), 32, "{order}");
    assert!(order.bytes().all(|b| b.is_ascii_hexdigit()));

    // The same stage change replayed: the same order.
    let changed_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT (payload->>'changed_at')::timestamptz FROM stagecast.job_archive WHERE kind = 'stage_change'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert_eq!(
        order,
        stagecast::platforms::event::order_id(5, 2, changed_at),
        "order_id is the stage change's own"
    );
}

#[tokio::test]
async fn an_fbclid_without_capture_time_is_dated_when_sent_never_at_customer_creation() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(
        "INSERT INTO customers (id, name, email, utm_campaign_id, fbclid, created_at, country) \
         VALUES (6, 'Rui', 'rui@example.com', 1, 'IwAR9x', '2024-01-01T00:00:00Z', 'Portugal')",
    )
    .await;
    let before = chrono::Utc::now().timestamp_millis();
    let worker = s.start_worker();
    s.move_to(6, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let after = chrono::Utc::now().timestamp_millis();
    let e = only_event(&s);
    let fbc = e["user_data"]["fbc"].as_str().unwrap();
    let ms: i64 = fbc.split('.').nth(2).unwrap().parse().unwrap();
    assert!(
        (before..=after).contains(&ms),
        "fbc time {ms} is when it was built ({before}..{after})"
    );
    assert_eq!(
        e["user_data"]["country"],
        serde_json::json!([sha256("pt")]),
        "the customer's own country wins"
    );
    assert!(
        e["custom_data"].get("order_id").is_none(),
        "order_id only for Purchase"
    );
}

#[tokio::test]
async fn a_conversion_leads_pixel_sends_lead_id_and_the_crm_name_and_refuses_customers_without_one()
{
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(
        "UPDATE pixels SET action_source = 'system_generated', lead_event_source = 'Pipedrive' WHERE id = 1;
         INSERT INTO customers (id, name, email, utm_campaign_id, lead_id) VALUES
           (7, 'Bia', 'bia@example.com', 1, '987654321098765'),
           (8, 'Caio', 'caio@example.com', 1, NULL);
         INSERT INTO chats (customer_id) VALUES (7), (8);",
    )
    .await;
    let worker = s.start_worker();
    s.move_to(7, 1).await;
    s.move_to(8, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let e = only_event(&s);
    assert_eq!(e["action_source"], "system_generated");
    assert_eq!(e["event_name"], "Lead");
    assert_eq!(
        e["user_data"]["lead_id"],
        serde_json::json!(987_654_321_098_765u64)
    );
    assert_eq!(e["custom_data"]["event_source"], "crm");
    assert_eq!(e["custom_data"]["lead_event_source"], "Pipedrive");

    assert_eq!(s.alert_causes(8).await, ["missing_lead_id"]);
    let alert = &s.chat_alerts(8).await[0];
    assert!(alert.contains("lead_id"), "{alert}");
    assert!(s.alert_causes(7).await.is_empty());
}

#[tokio::test]
async fn limited_data_use_and_opt_out_go_on_every_event_of_the_pixel() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(
        "UPDATE pixels SET limited_data_use = true, ldu_country = 1, ldu_state = 1000, opt_out = true WHERE id = 1;
         INSERT INTO customers (id, name, email, utm_campaign_id) VALUES (9, 'Duda', 'duda@example.com', 1);",
    )
    .await;
    let worker = s.start_worker();
    s.move_to(9, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let e = only_event(&s);
    assert_eq!(e["data_processing_options"], serde_json::json!(["LDU"]));
    assert_eq!(e["data_processing_options_country"], 1);
    assert_eq!(e["data_processing_options_state"], 1000);
    assert_eq!(e["opt_out"], true);
}

#[tokio::test]
async fn a_crm_whose_views_lack_the_optional_columns_keeps_working() {
    use sqlx::Connection as _;
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(
        "INSERT INTO customers (id, name, email, phone, utm_campaign_id, lead_id) \
         VALUES (10, 'Eva', 'eva@example.com', '+55 11 98765-4321', 1, '987654321098765')",
    )
    .await;
    // Redefined by the owner as a CRM adapted before these columns existed, then granted again
    // as docs/crm-integration.md says.
    let mut owner = sqlx::PgConnection::connect(&s.db.owner_url).await.unwrap();
    sqlx::raw_sql(
        "DROP VIEW stagecast.crm_customers;
         CREATE VIEW stagecast.crm_customers AS
         SELECT id, name, email, phone, stage_id, sale_price, currency, utm_campaign_id, utm_metadata,
                client_ip, client_user_agent, fbclid, fbclid_at, gclid, ttclid, city, state, zip, country,
                created_at
           FROM public.customers;
         DROP VIEW stagecast.crm_pixels;
         CREATE VIEW stagecast.crm_pixels AS
         SELECT id, platform, name, pixel_id, access_token, access_token_enc, active, is_default,
                waba_id, test_event_code, action_source, messaging_mode
           FROM public.pixels;",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    let names = stagecast::roles::RoleNames {
        worker: s.db.roles.worker.clone(),
        ..Default::default()
    };
    stagecast::roles::apply_grants(&mut owner, &names)
        .await
        .unwrap();
    let _ = owner.close().await;

    let worker = s.start_worker();
    s.move_to(10, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let e = only_event(&s);
    assert_eq!(
        e["user_data"]["ph"],
        serde_json::json!([sha256("5511987654321")])
    );
    assert!(
        e["user_data"].get("lead_id").is_none(),
        "not in the view, so not sent: {e}"
    );
    assert!(e.get("data_processing_options").is_none());
}
