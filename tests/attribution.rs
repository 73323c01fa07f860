//! WhatsApp click-to-ad attribution end to end: an inbound message (raw webhook JSON of each
//! gateway shape) → customer linked (first touch, campaign) → stage change → the Graph sandbox
//! receives the event with the click id and the right action source.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::stack::{Stack, PIXEL, TOKEN};

const WABA: &str = "555000111";

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/whatsapp/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Standard CRM, the pixel linked to a WhatsApp Business Account, a campaign for `ad_id`, and a
/// customer reachable only through a contact number stored as `contact` (the chat is not linked).
async fn setup(s: &Stack, ad_id: &str, contact: &str) -> (i64, i64) {
    s.seed_standard().await;
    // Campaign 1 of the standard seed is linked to no ad here.
    s.crm_exec("UPDATE utm_campaigns SET facebook_ad_ids = '{}' WHERE id = 1")
        .await;
    sqlx::query("UPDATE pixels SET waba_id = $1 WHERE id = 1")
        .bind(WABA)
        .execute(s.crm())
        .await
        .unwrap();
    sqlx::query("INSERT INTO utm_campaigns (id, name, facebook_ad_ids, pixel_id) VALUES (7, 'CTWA', ARRAY[$1], 1)")
        .bind(ad_id)
        .execute(s.crm())
        .await
        .unwrap();
    s.crm_exec("INSERT INTO customers (id, name) VALUES (42, 'Cliente WhatsApp'); INSERT INTO chats (id, customer_id) VALUES (900, NULL), (901, 42);")
        .await;
    sqlx::query("INSERT INTO customer_contacts (customer_id, kind, value, is_primary) VALUES (42, 'whatsapp', $1, true)")
        .bind(contact)
        .execute(s.crm())
        .await
        .unwrap();
    (42, 900)
}

async fn inbound(s: &Stack, chat: i64, metadata: &Value) {
    sqlx::query("INSERT INTO chat_messages (chat_id, direction, body, metadata) VALUES ($1, 'inbound', 'Olá!', $2)")
        .bind(chat)
        .bind(metadata)
        .execute(s.crm())
        .await
        .expect("the CRM's insert always succeeds");
}

async fn utm(s: &Stack, customer: i64) -> (Value, Option<i64>) {
    sqlx::query_as("SELECT utm_metadata, utm_campaign_id FROM customers WHERE id = $1")
        .bind(customer)
        .fetch_one(s.pool())
        .await
        .unwrap()
}

/// The whole flow for one payload shape.
async fn shape_end_to_end(fixture_name: &str, ad_id: &str, clid: &str, contact: &str) {
    let s = Stack::new().await;
    let (customer, chat) = setup(&s, ad_id, contact).await;
    let worker = s.start_worker();
    inbound(&s, chat, &fixture(fixture_name)).await;
    s.drained().await;
    let (meta, campaign) = utm(&s, customer).await;
    assert_eq!(
        meta["ctwa_clid"], clid,
        "{fixture_name}: click id stored verbatim: {meta}"
    );
    assert_eq!(meta["source_id"], ad_id, "{fixture_name}");
    assert!(
        meta["clicked_at"].is_string() && meta["message_id"].is_string(),
        "{fixture_name}: {meta}"
    );
    assert_eq!(
        campaign,
        Some(7),
        "{fixture_name}: campaign linked from the ad id"
    );

    s.move_to(customer, 1).await;
    assert!(
        s.sandbox.wait_for_events(1, Duration::from_secs(10)).await,
        "{fixture_name}: event sent"
    );
    s.drained().await;
    worker.shutdown().await.unwrap();
    let received = s.sandbox.received();
    assert_eq!(received.len(), 1);
    let e = &received[0].event;
    assert_eq!(received[0].pixel_id, PIXEL);
    assert_eq!(
        e["action_source"], "business_messaging",
        "{fixture_name}: {e}"
    );
    assert_eq!(e["messaging_channel"], "whatsapp");
    assert_eq!(
        e["event_name"], "LeadSubmitted",
        "Lead maps to the business-messaging name"
    );
    assert_eq!(e["user_data"]["ctwa_clid"], clid);
    assert_eq!(e["user_data"]["whatsapp_business_account_id"], WABA);
    assert_eq!(e["custom_data"]["ad_id"], ad_id);
}

#[tokio::test]
async fn cloud_api_webhook_contact_stored_without_the_ninth_digit() {
    shape_end_to_end(
        "cloud_api_full_envelope_image_ad.json",
        "120226305854810726",
        "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a",
        "551187654321",
    )
    .await;
}

#[tokio::test]
async fn evolution_api_webhook_contact_stored_in_national_format() {
    shape_end_to_end(
        "evolution_messages_upsert_conversation.json",
        "120246244376650582",
        "Afc3nYt4TTydumlFFsatFz8bR2yHCtVA92Veu_zDE4DgWQ9-illustrative",
        "(11) 98765-4321",
    )
    .await;
}

#[tokio::test]
async fn raw_baileys_message_contact_stored_as_a_jid() {
    shape_end_to_end(
        "baileys_raw_wamessage.json",
        "120219988776655443",
        "ARArawBaileysClid_ZZYYXXWWVV-illustrative",
        "5521987650000@s.whatsapp.net",
    )
    .await;
}

#[tokio::test]
async fn whatsmeow_gateway_with_source_id_casing_and_device_suffix() {
    shape_end_to_end(
        "whatsmeow_sourceID_casing.json",
        "120233344455566677",
        "AfwhatsmeowCasingClid_abcXYZ-0987654321",
        "+55 11 95555-4444",
    )
    .await;
}

#[tokio::test]
async fn uazapi_flat_payload_sender_without_the_ninth_digit() {
    shape_end_to_end(
        "uazapi_flat.json",
        "120250000000000002",
        "AfUazapiFlatClid_5544332211-illustrative",
        "+55 43 99980-0000",
    )
    .await;
}

#[tokio::test]
async fn a_second_ad_message_never_overwrites_the_first_touch() {
    let s = Stack::new().await;
    let (customer, chat) = setup(&s, "120226305854810726", "5511987654321").await;
    let worker = s.start_worker();
    inbound(&s, chat, &fixture("cloud_api_full_envelope_image_ad.json")).await;
    s.drained().await;
    let (first, _) = utm(&s, customer).await;
    // A later click on another ad, from the same number.
    inbound(
        &s,
        chat,
        &fixture("evolution_messages_upsert_conversation.json"),
    )
    .await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let (after, campaign) = utm(&s, customer).await;
    assert_eq!(after, first, "first touch kept as it was");
    assert_eq!(after["source_id"], "120226305854810726");
    assert_eq!(campaign, Some(7));
    let notes: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT note FROM stagecast.job_archive WHERE kind = 'attribution' ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert!(
        notes[1]
            .as_deref()
            .unwrap()
            .contains("already has a first touch"),
        "{notes:?}"
    );
}

#[tokio::test]
async fn an_ad_id_matching_no_campaign_alerts_with_the_id_to_add() {
    let s = Stack::new().await;
    let (customer, chat) = setup(&s, "999999999999999999", "5511987654321").await;
    let worker = s.start_worker();
    inbound(&s, chat, &fixture("cloud_api_full_envelope_image_ad.json")).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let (meta, campaign) = utm(&s, customer).await;
    assert_eq!(
        meta["source_id"], "120226305854810726",
        "first touch is still recorded"
    );
    assert_eq!(campaign, None);
    assert_eq!(s.alert_causes(customer).await, ["ad_not_linked"]);
    let alert = &s.chat_alerts(customer).await[0];
    assert!(
        alert.contains("120226305854810726"),
        "the alert names the ad id to add: {alert}"
    );
}

#[tokio::test]
async fn a_message_from_an_unknown_number_links_nobody() {
    let s = Stack::new().await;
    let (customer, chat) = setup(&s, "120226305854810726", "+55 31 90000-0000").await;
    let mut t = s.tuning();
    t.pipeline.retry.backoff.base = Duration::from_millis(10);
    t.pipeline.retry.backoff.cap = Duration::from_millis(20);
    let worker = s.start_worker_with(t);
    inbound(&s, chat, &fixture("cloud_api_full_envelope_image_ad.json")).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    assert_eq!(utm(&s, customer).await, (serde_json::json!({}), None));
    let (attempts, note): (i32, String) = sqlx::query_as(
        "SELECT attempts, note FROM stagecast.job_archive WHERE kind = 'attribution'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert!(
        attempts > 1,
        "retried in case the CRM creates the customer a moment later"
    );
    assert!(note.contains("no customer found"), "{note}");
}

#[tokio::test]
async fn an_ad_marker_without_click_id_is_recorded_with_an_informational_alert() {
    let s = Stack::new().await;
    let (customer, _) = setup(&s, "1", "5511912345678").await;
    let worker = s.start_worker();
    // This chat is linked to the customer by the CRM: no number lookup needed.
    inbound(&s, 901, &fixture("evolution_marker_only.json")).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let (meta, campaign) = utm(&s, customer).await;
    assert_eq!(meta["ad_marker"], true, "{meta}");
    assert!(meta.get("ctwa_clid").is_none());
    assert_eq!(campaign, None);
    assert_eq!(s.alert_causes(customer).await, ["ad_without_click_id"]);
}

#[tokio::test]
async fn garbage_payloads_fail_the_job_with_a_clear_error_and_never_the_crm_write() {
    let s = Stack::new().await;
    setup(&s, "1", "5511987654321").await;
    // A webhook body cut off in the middle of its ad data.
    let full = std::fs::read_to_string(format!(
        "{}/tests/fixtures/whatsapp/evolution_messages_upsert_conversation.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let cut = full.find("externalAdReply").unwrap() + 40;
    let truncated = full[..cut].to_string();
    let worker = s.start_worker();
    // A CRM that stored the raw (truncated) body as a JSON string.
    inbound(&s, 901, &Value::String(truncated)).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let (status, error): (String, String) =
        sqlx::query_as("SELECT status, last_error FROM stagecast.jobs WHERE kind = 'attribution'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(
        error.starts_with("invalid webhook payload in message"),
        "{error}"
    );
    let messages: i64 =
        sqlx::query_scalar("SELECT count(*) FROM chat_messages WHERE direction = 'inbound'")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(messages, 1, "the message itself was stored");
}

#[tokio::test]
async fn an_ad_unknown_to_the_crm_is_resolved_to_its_campaign_through_the_graph_api() {
    let s = Stack::new().await;
    let (customer, chat) = setup(&s, "not-this-ad", "5511987654321").await;
    s.crm_exec("UPDATE utm_campaigns SET facebook_campaign_id = '120226300000000099' WHERE id = 7")
        .await;
    s.sandbox
        .add_ad("120226305854810726", "120226300000000099", TOKEN);
    let mut t = s.tuning();
    t.meta.resolve_ads = true;
    let worker = s.start_worker_with(t);
    inbound(&s, chat, &fixture("cloud_api_full_envelope_image_ad.json")).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    assert_eq!(
        utm(&s, customer).await.1,
        Some(7),
        "linked through GET /{{ad_id}}?fields=campaign_id"
    );
    assert!(s.alert_causes(customer).await.is_empty());
}

#[tokio::test]
async fn a_pixel_can_force_its_own_action_source_for_whatsapp_customers() {
    let s = Stack::new().await;
    let (customer, chat) = setup(&s, "120226305854810726", "5511987654321").await;
    s.crm_exec("UPDATE pixels SET messaging_mode = 'never', action_source = 'chat' WHERE id = 1")
        .await;
    let worker = s.start_worker();
    inbound(&s, chat, &fixture("cloud_api_full_envelope_image_ad.json")).await;
    s.drained().await;
    s.move_to(customer, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let e = &s.sandbox.received()[0].event;
    assert_eq!(e["action_source"], "chat");
    assert_eq!(e["event_name"], "Lead");
    assert!(
        e["user_data"]["ctwa_clid"].is_string(),
        "the click id still travels as a match key"
    );
}

/// A touch without a click id, then a message with the click id and ad id, both on the chat the
/// CRM linked to the customer: the click completes the touch, and a later stage change goes as
/// business messaging with that click id.
async fn incomplete_touch_completed_by_the_click(first_fixture: &str) {
    let s = Stack::new().await;
    let (customer, _) = setup(&s, "120226305854810726", "5511987654321").await;
    let worker = s.start_worker();
    inbound(&s, 901, &fixture(first_fixture)).await;
    s.drained().await;
    let (before, _) = utm(&s, customer).await;
    assert!(
        before.get("ctwa_clid").is_none(),
        "{first_fixture}: {before}"
    );
    assert!(
        before.get("ad_marker").is_some() || before.get("source_id").is_some(),
        "{first_fixture}: the incomplete touch is recorded: {before}"
    );

    inbound(&s, 901, &fixture("cloud_api_full_envelope_image_ad.json")).await;
    s.drained().await;
    let (after, campaign) = utm(&s, customer).await;
    assert_eq!(
        after["ctwa_clid"], "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a",
        "{first_fixture}: the click id completes the touch: {after}"
    );
    assert_eq!(after["source_id"], "120226305854810726", "{after}");
    assert!(after.get("ad_marker").is_none(), "{after}");
    assert!(
        after["completed_marker"].is_object(),
        "what the incomplete touch said is kept for the record: {after}"
    );
    assert_eq!(campaign, Some(7), "campaign linked from the click's ad id");

    // A third ad message (another ad, with its own click id) changes nothing: a real first
    // touch is never overwritten.
    inbound(
        &s,
        901,
        &fixture("evolution_messages_upsert_conversation.json"),
    )
    .await;
    s.drained().await;
    assert_eq!(
        utm(&s, customer).await.0,
        after,
        "the real first touch is kept"
    );

    s.move_to(customer, 1).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    let received = s.sandbox.received();
    assert_eq!(received.len(), 1, "{first_fixture}");
    let e = &received[0].event;
    assert_eq!(e["action_source"], "business_messaging", "{e}");
    assert_eq!(e["messaging_channel"], "whatsapp");
    assert_eq!(e["user_data"]["ctwa_clid"], after["ctwa_clid"]);
    let notes: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT note FROM stagecast.job_archive WHERE kind = 'attribution' ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    assert!(
        notes[1].as_deref().unwrap().contains("completed"),
        "{notes:?}"
    );
}

#[tokio::test]
async fn a_marker_only_first_touch_is_completed_by_the_first_click_id() {
    incomplete_touch_completed_by_the_click("evolution_marker_only.json").await;
}

#[tokio::test]
async fn a_status_ad_without_click_id_is_completed_by_the_first_click_id() {
    incomplete_touch_completed_by_the_click("cloud_api_status_ad_no_clid.json").await;
}

#[tokio::test]
async fn a_touch_without_click_id_never_replaces_a_real_first_touch() {
    let s = Stack::new().await;
    let (customer, _) = setup(&s, "120226305854810726", "5511987654321").await;
    let worker = s.start_worker();
    inbound(&s, 901, &fixture("cloud_api_full_envelope_image_ad.json")).await;
    s.drained().await;
    let (first, _) = utm(&s, customer).await;
    inbound(&s, 901, &fixture("evolution_marker_only.json")).await;
    inbound(&s, 901, &fixture("cloud_api_status_ad_no_clid.json")).await;
    s.drained().await;
    worker.shutdown().await.unwrap();
    assert_eq!(utm(&s, customer).await.0, first);
}

/// An attribution job retried while a newer twin of it (the same message queued again while
/// it ran, so not coalesced by the pending-dedup index) is pending: the retry's write-back
/// must not hit that index's unique violation. The older job is archived as superseded, with
/// the twin's id in its note; the twin does the work.
#[tokio::test]
async fn an_attribution_retry_with_a_newer_pending_twin_is_archived_as_superseded() {
    let s = Stack::new().await;
    let (_, chat) = setup(&s, "120226305854810726", "+55 31 90000-0000").await;
    inbound(&s, chat, &fixture("cloud_api_full_envelope_image_ad.json")).await;
    let claimed = s.store.claim_jobs(10, "worker-a", 30.0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let older = &claimed[0];
    assert_eq!(older.kind, "attribution");
    let message: i64 = older.payload["message_id"].as_i64().unwrap();
    // The same message queued again while the first job runs (a CRM re-import, a parked
    // enqueue re-queued): a pending twin.
    let queued: i32 =
        sqlx::query_scalar("SELECT stagecast.enqueue_inbound_messages(ARRAY[$1]::bigint[])")
            .bind(message)
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(queued, 1, "the twin is queued");
    let twin: i64 = sqlx::query_scalar(
        "SELECT id FROM stagecast.jobs WHERE status = 'pending' AND kind = 'attribution'",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();

    let retry = stagecast::store::WriteBack {
        outcomes: vec![stagecast::store::OutcomeRow {
            id: older.id,
            attempt: older.attempts,
            outcome: "retry",
            run_at: Some(chrono::Utc::now() + chrono::Duration::seconds(1)),
            error: Some("no customer found for the sender yet".into()),
            destinations: None,
        }],
        ..Default::default()
    };
    let report = s
        .store
        .write_back("worker-a", &retry)
        .await
        .expect("the retry is written back despite the pending twin");
    assert_eq!(report.applied, 1);

    let note: Option<String> =
        sqlx::query_scalar("SELECT note FROM stagecast.job_archive WHERE id = $1")
            .bind(older.id)
            .fetch_one(s.pool())
            .await
            .expect("the older job is archived");
    let note = note.unwrap_or_default();
    assert!(
        note.contains(&format!("superseded by job {twin}")),
        "the archive says which job took over: {note:?}"
    );
    let live: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, status FROM stagecast.jobs WHERE kind = 'attribution'")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(
        live,
        vec![(twin, "pending".to_string())],
        "the twin does the work"
    );
}

/// The same twin at shutdown: giving back the jobs a worker still holds must not hit the
/// unique violation either (sql/release_held_jobs.sql); the older one is archived as superseded.
#[tokio::test]
async fn releasing_a_held_job_with_a_newer_pending_twin_archives_it_as_superseded() {
    let s = Stack::new().await;
    let (_, chat) = setup(&s, "120226305854810726", "+55 31 90000-0000").await;
    inbound(&s, chat, &fixture("cloud_api_full_envelope_image_ad.json")).await;
    let claimed = s.store.claim_jobs(10, "worker-a", 30.0).await.unwrap();
    let older = &claimed[0];
    let message: i64 = older.payload["message_id"].as_i64().unwrap();
    sqlx::query("SELECT stagecast.enqueue_inbound_messages(ARRAY[$1]::bigint[])")
        .bind(message)
        .execute(s.pool())
        .await
        .unwrap();
    let released = s
        .store
        .release_held_jobs("worker-a")
        .await
        .expect("the held job is given back despite the pending twin");
    assert_eq!(released, 1);
    let note: Option<String> =
        sqlx::query_scalar("SELECT note FROM stagecast.job_archive WHERE id = $1")
            .bind(older.id)
            .fetch_one(s.pool())
            .await
            .expect("the older job is archived");
    assert!(note.unwrap_or_default().contains("superseded by job"));
}
