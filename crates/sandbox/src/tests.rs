//! End-to-end tests: real HTTP requests (reqwest) against a running sandbox.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::*;

const PIXEL: &str = "1234567890";
const TOKEN: &str = "tok-pixel-a";
const OTHER_PIXEL: &str = "2222222222";
const OTHER_TOKEN: &str = "tok-pixel-b";
const VERSION: &str = "v25.0";
/// sha256("5511987654321") (`printf %s 5511987654321 | sha256sum`).
const PH: &str = "029c7290f14c4516673508635f0519db95f7daf42057fd0e4ad1de84c5408a66";
/// sha256("crm-000123") (`printf %s crm-000123 | sha256sum`).
const EXT: &str = "bb9edd468efd9eb23a23da18bbde007bbc1af81ca297634fdc29a616661bdb09";

async fn sandbox() -> MetaGraphSandbox {
    let sb = MetaGraphSandbox::start().await.expect("sandbox starts");
    sb.add_pixel(PIXEL, TOKEN);
    sb.add_pixel(OTHER_PIXEL, OTHER_TOKEN);
    sb
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn events_url(sb: &MetaGraphSandbox, pixel: &str) -> String {
    format!("{}/{VERSION}/{pixel}/events", sb.base_url())
}

fn event(id: &str) -> Value {
    json!({
        "event_name": "Lead",
        "event_time": now() - 60,
        "event_id": id,
        "action_source": "chat",
        "user_data": {"ph": [PH], "external_id": [EXT], "client_ip_address": "2001:db8::1"},
    })
}

fn ctwa_event(id: &str) -> Value {
    json!({
        "event_name": "Purchase",
        "event_time": now() - 5,
        "event_id": id,
        "action_source": "business_messaging",
        "messaging_channel": "whatsapp",
        "user_data": {"ctwa_clid": "Aff-n8ZTODiE79d22KtAwQKj9e", "whatsapp_business_account_id": "102290129340398", "ph": [PH]},
        "custom_data": {"value": 199.9, "currency": "BRL"},
    })
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.expect("request reaches the sandbox");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

async fn post_json(sb: &MetaGraphSandbox, body: Value) -> Reply {
    send(
        client()
            .post(events_url(sb, PIXEL))
            .bearer_auth(TOKEN)
            .json(&body),
    )
    .await
}

async fn post_events(sb: &MetaGraphSandbox, events: Vec<Value>) -> Reply {
    post_json(sb, json!({ "data": events })).await
}

/// Asserts a Graph error envelope and returns its `error` object.
fn graph_error(reply: &Reply, status: u16, code: i64, subcode: Option<i64>) -> Value {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    let err = &reply.body["error"];
    assert_eq!(err["code"], json!(code), "body: {}", reply.body);
    assert_eq!(
        err["error_subcode"].as_i64(),
        subcode,
        "body: {}",
        reply.body
    );
    assert_eq!(err["type"], "OAuthException");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(err["is_transient"].is_boolean());
    assert!(err["fbtrace_id"].as_str().is_some_and(|t| t.len() == 23));
    err.clone()
}

fn assert_ok(reply: &Reply, n: usize) {
    assert_eq!(reply.status, 200, "body: {}", reply.body);
    assert_eq!(reply.body["events_received"], json!(n));
    assert_eq!(reply.body["messages"], json!([]));
    assert!(reply.body["fbtrace_id"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn valid_json_batch_is_accepted_and_recorded() {
    let sb = sandbox().await;
    let events = vec![event("e1"), ctwa_event("e2"), event("e3")];
    let reply = post_json(
        &sb,
        json!({"data": events, "test_event_code": "TEST123", "partner_agent": "stagecast"}),
    )
    .await;
    assert_ok(&reply, 3);

    let received = sb.received();
    assert_eq!(received.len(), 3);
    for (got, sent) in received.iter().zip(&events) {
        assert_eq!(&got.event, sent);
        assert_eq!(got.pixel_id, PIXEL);
        assert_eq!(got.test_event_code.as_deref(), Some("TEST123"));
        assert_eq!(got.partner_agent.as_deref(), Some("stagecast"));
    }
    let requests = sb.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.status, r.error_code, r.error_subcode), (200, None, None));
    assert_eq!(
        (r.pixel_id.as_str(), r.version.as_str(), r.event_count),
        (PIXEL, VERSION, 3)
    );
    assert_eq!(r.event_ids, ["e1", "e2", "e3"]);
    assert_eq!(r.auth, Some(AuthMethod::BearerHeader));
    assert!(r.fault.is_none() && !r.outcome_unknown_to_client);
    assert_eq!(sb.delivered_count("e2"), 1);
    assert_eq!(sb.delivered_count("nope"), 0);
    assert_eq!(sb.accepted_events(), 3);
}

#[tokio::test]
async fn form_encoded_body_is_accepted() {
    let sb = sandbox().await;
    let data = serde_json::to_string(&vec![event("f1"), ctwa_event("f2")]).unwrap();
    let form = [
        ("data", data.as_str()),
        ("access_token", TOKEN),
        ("test_event_code", "TEST9"),
        ("partner_agent", "pa"),
    ];
    let reply = send(client().post(events_url(&sb, PIXEL)).form(&form)).await;
    assert_ok(&reply, 2);
    let received = sb.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].event["event_id"], "f2");
    assert_eq!(received[1].test_event_code.as_deref(), Some("TEST9"));
    assert_eq!(received[1].partner_agent.as_deref(), Some("pa"));
    assert_eq!(sb.requests()[0].auth, Some(AuthMethod::BodyField));
}

#[tokio::test]
async fn token_can_come_from_header_query_form_or_json_field() {
    let sb = sandbox().await;
    let c = client();
    let url = events_url(&sb, PIXEL);
    let data = serde_json::to_string(&vec![event("t")]).unwrap();

    assert_ok(
        &send(
            c.post(&url)
                .bearer_auth(TOKEN)
                .json(&json!({"data": [event("t")]})),
        )
        .await,
        1,
    );
    assert_ok(
        &send(
            c.post(&url)
                .query(&[("access_token", TOKEN)])
                .json(&json!({"data": [event("t")]})),
        )
        .await,
        1,
    );
    assert_ok(
        &send(
            c.post(&url)
                .form(&[("data", data.as_str()), ("access_token", TOKEN)]),
        )
        .await,
        1,
    );
    assert_ok(
        &send(
            c.post(&url)
                .json(&json!({"data": [event("t")], "access_token": TOKEN})),
        )
        .await,
        1,
    );
    // The header wins over a bad query token: precedence is header, query, body.
    let both = c
        .post(format!("{url}?access_token=bogus"))
        .bearer_auth(TOKEN)
        .json(&json!({"data": [event("t")]}));
    assert_ok(&send(both).await, 1);

    let methods: Vec<_> = sb.requests().iter().map(|r| r.auth).collect();
    use AuthMethod::*;
    assert_eq!(
        methods,
        [
            Some(BearerHeader),
            Some(QueryParam),
            Some(BodyField),
            Some(BodyField),
            Some(BearerHeader)
        ]
    );
    assert_eq!(sb.delivered_count("t"), 5);
}

#[tokio::test]
async fn missing_unknown_and_foreign_tokens_are_refused() {
    let sb = sandbox().await;
    let c = client();
    let body = json!({"data": [event("x")]});

    let missing = send(c.post(events_url(&sb, PIXEL)).json(&body)).await;
    graph_error(&missing, 400, 104, None);

    let unknown = send(
        c.post(events_url(&sb, PIXEL))
            .bearer_auth("not-a-token")
            .json(&body),
    )
    .await;
    let err = graph_error(&unknown, 401, 190, None);
    assert_eq!(err["is_transient"], false);

    // A valid token, but for another pixel; and an unregistered pixel.
    let foreign = send(
        c.post(events_url(&sb, PIXEL))
            .bearer_auth(OTHER_TOKEN)
            .json(&body),
    )
    .await;
    graph_error(&foreign, 400, 100, Some(33));
    let no_pixel = send(
        c.post(events_url(&sb, "999"))
            .bearer_auth(TOKEN)
            .json(&body),
    )
    .await;
    graph_error(&no_pixel, 400, 100, Some(33));

    assert!(sb.received().is_empty());
    assert_eq!(sb.delivered_count("x"), 0);
    let codes: Vec<_> = sb
        .requests()
        .iter()
        .map(|r| (r.status, r.error_code, r.error_subcode, r.auth))
        .collect();
    assert_eq!(
        codes,
        [
            (400, Some(104), None, None),
            (401, Some(190), None, Some(AuthMethod::BearerHeader)),
            (400, Some(100), Some(33), Some(AuthMethod::BearerHeader)),
            (400, Some(100), Some(33), Some(AuthMethod::BearerHeader)),
        ]
    );
}

#[tokio::test]
async fn version_must_look_like_graph_versions() {
    let sb = sandbox().await;
    for version in ["v25", "25.0", "v25.1", "vX.0", "v.0"] {
        let url = format!("{}/{version}/{PIXEL}/events", sb.base_url());
        let reply = send(
            client()
                .post(url)
                .bearer_auth(TOKEN)
                .json(&json!({"data": [event("v")]})),
        )
        .await;
        graph_error(&reply, 400, 2500, None);
    }
    let url = format!("{}/v9.0/{PIXEL}/events", sb.base_url());
    assert_ok(
        &send(
            client()
                .post(url)
                .bearer_auth(TOKEN)
                .json(&json!({"data": [event("v")]})),
        )
        .await,
        1,
    );
}

/// One case per validation rule: how to break a valid event, then the subcode and field Graph must blame.
#[tokio::test]
async fn each_validation_rule_rejects_with_its_code() {
    let sb = sandbox().await;
    let t = now();
    type Mutate = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutate, i64, &str)> = vec![
        (
            "too old",
            Box::new(move |e| e["event_time"] = json!(t - 8 * 86_400)),
            2804003,
            "event_time",
        ),
        (
            "milliseconds",
            Box::new(move |e| e["event_time"] = json!(t * 1000)),
            2804001,
            "event_time",
        ),
        (
            "future",
            Box::new(move |e| e["event_time"] = json!(t + 3600)),
            2804001,
            "event_time",
        ),
        (
            "string time",
            Box::new(move |e| e["event_time"] = json!(t.to_string())),
            2804001,
            "event_time",
        ),
        (
            "no time",
            Box::new(|e| drop(e.as_object_mut().unwrap().remove("event_time"))),
            2804001,
            "event_time",
        ),
        (
            "empty name",
            Box::new(|e| e["event_name"] = json!("")),
            2804001,
            "event_name",
        ),
        (
            "numeric event_id",
            Box::new(|e| e["event_id"] = json!(42)),
            2804001,
            "event_id",
        ),
        (
            "raw email",
            Box::new(|e| e["user_data"]["em"] = json!(["maria@example.com"])),
            2804001,
            "user_data.em[0]",
        ),
        (
            "raw phone",
            Box::new(|e| e["user_data"]["ph"] = json!("5511987654321")),
            2804001,
            "user_data.ph",
        ),
        (
            "uppercase hash",
            Box::new(|e| e["user_data"]["ph"] = json!([PH.to_uppercase()])),
            2804001,
            "user_data.ph[0]",
        ),
        (
            "hashed ctwa_clid",
            Box::new(|e| e["user_data"]["ctwa_clid"] = json!(PH)),
            2804001,
            "user_data.ctwa_clid",
        ),
        (
            "hashed UA",
            Box::new(|e| e["user_data"]["client_user_agent"] = json!(PH)),
            2804001,
            "user_data.client_user_agent",
        ),
        (
            "bad IP",
            Box::new(|e| e["user_data"]["client_ip_address"] = json!("10.0.0")),
            2804001,
            "user_data.client_ip_address",
        ),
        (
            "fbc in seconds",
            Box::new(|e| e["user_data"]["fbc"] = json!("fb.1.1772366400.IwAR2F4")),
            2804001,
            "user_data.fbc",
        ),
        (
            "unknown key",
            Box::new(|e| e["user_data"]["email"] = json!("a@b.co")),
            2804001,
            "user_data.email",
        ),
        (
            "empty user_data",
            Box::new(|e| e["user_data"] = json!({})),
            2804050,
            "user_data",
        ),
        (
            "no user_data",
            Box::new(|e| drop(e.as_object_mut().unwrap().remove("user_data"))),
            2804050,
            "user_data",
        ),
        (
            "thin user_data",
            Box::new(|e| e["user_data"] = json!({"fn": PH, "ge": PH})),
            2804050,
            "user_data",
        ),
        (
            "bad action_source",
            Box::new(|e| e["action_source"] = json!("whatsapp")),
            2804001,
            "action_source",
        ),
        (
            "no action_source",
            Box::new(|e| drop(e.as_object_mut().unwrap().remove("action_source"))),
            2804001,
            "action_source",
        ),
        (
            "purchase without value",
            Box::new(|e| {
                e["event_name"] = json!("Purchase");
                e["custom_data"] = json!({"currency": "BRL"});
            }),
            2804009,
            "custom_data.value",
        ),
        (
            "purchase without currency",
            Box::new(|e| {
                e["event_name"] = json!("Purchase");
                e["custom_data"] = json!({"value": 10});
            }),
            2804009,
            "custom_data.currency",
        ),
        (
            "value as string",
            Box::new(|e| e["custom_data"] = json!({"value": "10.00", "currency": "BRL"})),
            2804001,
            "custom_data.value",
        ),
        (
            "bad currency",
            Box::new(|e| e["custom_data"] = json!({"value": 1, "currency": "REAL"})),
            2804001,
            "custom_data.currency",
        ),
    ];
    for (name, mutate, subcode, field) in cases {
        sb.clear();
        let mut ev = event("bad");
        mutate(&mut ev);
        let reply = post_events(&sb, vec![ev]).await;
        let err = graph_error(&reply, 400, 100, Some(subcode));
        let blame = format!("data[0].{field}");
        assert_eq!(
            err["error_data"]["blame_field_specs"],
            json!([[blame]]),
            "{name}"
        );
        assert!(
            err["error_user_msg"].as_str().unwrap().starts_with(&blame),
            "{name}: {err}"
        );
        assert!(err["message"].as_str().unwrap().contains(&blame), "{name}");
        assert!(err["error_user_title"].is_string(), "{name}");
        assert_eq!(err["is_transient"], false, "{name}");
        assert!(sb.received().is_empty(), "{name}");
        assert_eq!(sb.delivered_count("bad"), 0, "{name}");
        let r = &sb.requests()[0];
        assert_eq!(
            (r.status, r.error_code, r.error_subcode),
            (400, Some(100), Some(subcode)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn business_messaging_needs_channel_and_click_ids() {
    let sb = sandbox().await;
    let cases: Vec<(&str, &str)> = vec![
        ("ctwa_clid", "user_data.ctwa_clid"),
        (
            "whatsapp_business_account_id",
            "user_data.whatsapp_business_account_id",
        ),
    ];
    for (key, field) in cases {
        let mut ev = ctwa_event("bm");
        ev["user_data"].as_object_mut().unwrap().remove(key);
        let err = graph_error(&post_events(&sb, vec![ev]).await, 400, 100, Some(2804001));
        assert_eq!(
            err["error_data"]["blame_field_specs"],
            json!([[format!("data[0].{field}")]])
        );
    }
    let mut ev = ctwa_event("bm");
    ev.as_object_mut().unwrap().remove("messaging_channel");
    let err = graph_error(&post_events(&sb, vec![ev]).await, 400, 100, Some(2804001));
    assert_eq!(
        err["error_data"]["blame_field_specs"],
        json!([["data[0].messaging_channel"]])
    );
    let mut ev = ctwa_event("bm");
    ev["messaging_channel"] = json!("telegram");
    graph_error(&post_events(&sb, vec![ev]).await, 400, 100, Some(2804001));

    assert_ok(&post_events(&sb, vec![ctwa_event("bm")]).await, 1);
    assert_eq!(sb.delivered_count("bm"), 1);
}

#[tokio::test]
async fn raw_ids_and_cookies_in_their_documented_shape_pass() {
    let sb = sandbox().await;
    let mut ev = event("web");
    ev["action_source"] = json!("website");
    ev["event_source_url"] = json!("https://shop.example.com/checkout");
    ev["user_data"]["fbc"] =
        json!("fb.1.1772366400000.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk");
    ev["user_data"]["fbp"] = json!("fb.1.1596403881668.1116446470.AQYBAQIA");
    ev["user_data"]["client_user_agent"] = json!("Mozilla/5.0");
    ev["user_data"]["client_ip_address"] = json!("203.0.113.7");
    ev["user_data"]["em"] =
        json!("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f");
    ev["custom_data"] = json!({"value": 0, "currency": "usd", "content_ids": ["a"]});
    assert_ok(&post_events(&sb, vec![ev]).await, 1);
}

#[tokio::test]
async fn one_invalid_event_rejects_the_whole_batch() {
    let sb = sandbox().await;
    let mut events: Vec<Value> = (0..5).map(|i| event(&format!("b{i}"))).collect();
    events[3]["user_data"]["em"] = json!("maria@example.com");
    let err = graph_error(&post_events(&sb, events).await, 400, 100, Some(2804001));
    assert_eq!(
        err["error_data"]["blame_field_specs"],
        json!([["data[3].user_data.em"]])
    );

    assert!(sb.received().is_empty());
    assert_eq!(sb.accepted_events(), 0);
    for i in 0..5 {
        assert_eq!(sb.delivered_count(&format!("b{i}")), 0);
    }
    let r = &sb.requests()[0];
    assert_eq!((r.status, r.event_count, r.event_ids.len()), (400, 5, 5));
    assert!(!r.accepted());
}

#[tokio::test]
async fn batch_size_and_body_shape_are_enforced() {
    let sb = sandbox().await;
    let many: Vec<Value> = (0..1001).map(|i| event(&format!("m{i}"))).collect();
    graph_error(&post_events(&sb, many.clone()).await, 400, 100, None);
    assert_eq!(sb.requests()[0].event_count, 1001);
    assert!(sb.received().is_empty());
    assert_ok(&post_events(&sb, many[..1000].to_vec()).await, 1000);
    assert_eq!(sb.received().len(), 1000);

    graph_error(&post_events(&sb, vec![]).await, 400, 100, None);
    graph_error(
        &post_json(&sb, json!({"data": {"event_name": "Lead"}})).await,
        400,
        100,
        None,
    );
    graph_error(
        &post_json(&sb, json!({"events": [event("x")]})).await,
        400,
        100,
        None,
    );
    graph_error(&post_json(&sb, json!([event("x")])).await, 400, 100, None);
    graph_error(
        &post_json(&sb, json!({"data": [event("x")], "test_event_code": 5})).await,
        400,
        100,
        None,
    );
    graph_error(
        &post_events(&sb, vec![json!("not an object")]).await,
        400,
        100,
        Some(2804001),
    );
    assert_eq!(sb.received().len(), 1000);
}

#[tokio::test]
async fn garbage_bodies_get_graph_errors_not_panics() {
    let sb = sandbox().await;
    let c = client();
    let url = events_url(&sb, PIXEL);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{not json".to_vec()),
        ("application/json", vec![0xff, 0xfe, 0x00]),
        ("application/json", Vec::new()),
        (
            "application/x-www-form-urlencoded",
            b"data=%5Bbroken&x=%zz".to_vec(),
        ),
        ("application/x-www-form-urlencoded", b"data=%FF%FE".to_vec()),
        ("application/x-www-form-urlencoded", b"&&&=&=".to_vec()),
        ("text/plain", b"hello".to_vec()),
        ("", b"\x00\x01garbage".to_vec()),
    ];
    for (ct, body) in bodies {
        let mut req = c.post(&url).bearer_auth(TOKEN).body(body.clone());
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let reply = send(req).await;
        graph_error(&reply, 400, 100, None);
    }
    // A form whose token is fine but whose data is broken is a body error (100), not a missing token.
    let form = [("access_token", TOKEN), ("data", "[{broken")];
    graph_error(&send(c.post(&url).form(&form)).await, 400, 100, None);
    assert_eq!(
        sb.requests().last().unwrap().auth,
        Some(AuthMethod::BodyField)
    );
    let form = [("data", "[{broken"), ("access_token", TOKEN)];
    graph_error(&send(c.post(&url).form(&form)).await, 400, 100, None);
    assert!(sb.received().is_empty());
    // Still serving.
    assert_ok(&post_events(&sb, vec![event("alive")]).await, 1);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_graph_errors() {
    let sb = sandbox().await;
    let c = client();
    let reply = send(
        c.get(format!("{}/v25.0/{PIXEL}/events/extra", sb.base_url()))
            .bearer_auth(TOKEN),
    )
    .await;
    graph_error(&reply, 400, 2500, None);
    let reply = send(c.delete(events_url(&sb, PIXEL)).bearer_auth(TOKEN)).await;
    graph_error(&reply, 400, 100, None);
    assert!(sb.requests().is_empty(), "only POST /events is recorded");
}

#[tokio::test]
async fn server_error_fault_is_transient_and_consumed_once() {
    let sb = sandbox().await;
    sb.push_fault(Fault::ServerError(503));
    let err = graph_error(&post_events(&sb, vec![event("s")]).await, 503, 2, None);
    assert_eq!(err["is_transient"], true);
    assert!(sb.received().is_empty());
    assert_eq!(sb.delivered_count("s"), 0);
    assert_ok(&post_events(&sb, vec![event("s")]).await, 1);
    assert_eq!(sb.delivered_count("s"), 1);
    let records = sb.requests();
    assert_eq!(records[0].fault, Some(Fault::ServerError(503)));
    assert_eq!((records[0].status, records[0].error_code), (503, Some(2)));
    assert_eq!(records[0].event_ids, ["s"]);
    assert_eq!(records[1].fault, None);
}

#[tokio::test]
async fn transient_fault_answers_500_code_1() {
    let sb = sandbox().await;
    sb.push_fault(Fault::Transient);
    let err = graph_error(&post_events(&sb, vec![event("tr")]).await, 500, 1, None);
    assert_eq!(err["is_transient"], true);
    assert_ok(&post_events(&sb, vec![event("tr")]).await, 1);
    assert_eq!(sb.delivered_count("tr"), 1);
}

#[tokio::test]
async fn html_fault_answers_502_html() {
    let sb = sandbox().await;
    sb.push_fault(Fault::HtmlError);
    let reply = post_events(&sb, vec![event("h")]).await;
    assert_eq!(reply.status, 502);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(
        reply.body.as_str().unwrap().contains("<html>"),
        "not JSON: {}",
        reply.body
    );
    assert!(sb.received().is_empty());
    assert_eq!(sb.requests()[0].error_code, None);
    assert_ok(&post_events(&sb, vec![event("h")]).await, 1);
}

#[tokio::test]
async fn timeout_fault_records_events_but_client_times_out() {
    let sb = sandbox().await;
    // Held far longer than any client waits: the client's timeout always fires first.
    let hold = Duration::from_secs(3600);
    sb.push_fault(Fault::Timeout(hold));
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let err = c
        .post(events_url(&sb, PIXEL))
        .bearer_auth(TOKEN)
        .json(&json!({"data": [event("slow")]}))
        .send()
        .await
        .expect_err("client must time out first");
    assert!(err.is_timeout(), "{err}");

    // Meta may have ingested it: the events are delivered, the record says the client could not know.
    assert_eq!(sb.delivered_count("slow"), 1);
    assert_eq!(sb.received().len(), 1);
    let r = &sb.requests()[0];
    assert!(r.accepted() && r.outcome_unknown_to_client);
    assert_eq!(r.fault, Some(Fault::Timeout(hold)));
    assert_eq!(r.answered_at, None, "the answer is still held");

    // The retry (same event_id) is answered: the fault was consumed; the duplicate shows. A
    // second hold would make this client (30 s) time out too.
    let patient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    assert_ok(
        &send(
            patient
                .post(events_url(&sb, PIXEL))
                .bearer_auth(TOKEN)
                .json(&json!({"data": [event("slow")]})),
        )
        .await,
        1,
    );
    assert_eq!(sb.delivered_count("slow"), 2);
    let retry = &sb.requests()[1];
    assert!(!retry.outcome_unknown_to_client);
    assert_eq!(retry.fault, None);
    assert!(retry.answered_at.is_some());
}

#[tokio::test]
async fn held_answers_keep_requests_in_flight_until_released() {
    let sb = sandbox().await;
    sb.hold_answers();
    let first = tokio::spawn(post_events_owned(sb.clone(), "h1"));
    assert!(
        sb.wait_for_in_flight(1, Duration::from_secs(30)).await,
        "the first request is held"
    );
    let second = tokio::spawn(post_events_owned(sb.clone(), "h2"));
    assert!(
        sb.wait_for_in_flight(2, Duration::from_secs(30)).await,
        "both requests are held at once"
    );
    // Held answers are recorded (and delivered) already, but not answered.
    let requests = sb.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].in_flight_at_arrival, 0);
    assert_eq!(requests[1].in_flight_at_arrival, 1, "they overlapped");
    assert!(requests.iter().all(|r| r.answered_at.is_none()));
    assert_eq!(sb.accepted_events(), 2);

    sb.release_answers();
    assert_ok(&first.await.unwrap(), 1);
    assert_ok(&second.await.unwrap(), 1);
    assert_eq!(sb.in_flight(), 0);
    assert!(sb.requests().iter().all(|r| r.answered_at.is_some()));
    // Released means released: the next request is answered at once.
    assert_ok(&post_events(&sb, vec![event("h3")]).await, 1);
    assert_eq!(sb.requests()[2].in_flight_at_arrival, 0);
}

#[tokio::test]
async fn allow_answers_lets_exactly_that_many_go() {
    let sb = sandbox().await;
    sb.hold_answers();
    let a = tokio::spawn(post_events_owned(sb.clone(), "a1"));
    let b = tokio::spawn(post_events_owned(sb.clone(), "a2"));
    assert!(sb.wait_for_in_flight(2, Duration::from_secs(30)).await);
    sb.allow_answers(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sb.in_flight() != 1 {
        assert!(Instant::now() < deadline, "one answer should go");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answered: Vec<bool> = sb
        .requests()
        .iter()
        .map(|r| r.answered_at.is_some())
        .collect();
    assert_eq!(answered.iter().filter(|&&a| a).count(), 1, "{answered:?}");
    sb.allow_answers(1);
    assert_ok(&a.await.unwrap(), 1);
    assert_ok(&b.await.unwrap(), 1);
    // Still held for the next one, until released.
    let c = tokio::spawn(post_events_owned(sb.clone(), "a3"));
    assert!(sb.wait_for_in_flight(1, Duration::from_secs(30)).await);
    sb.release_answers();
    assert_ok(&c.await.unwrap(), 1);
}

async fn post_events_owned(sb: MetaGraphSandbox, id: &'static str) -> Reply {
    post_events(&sb, vec![event(id)]).await
}

#[tokio::test]
async fn timeout_fault_still_validates() {
    let sb = sandbox().await;
    sb.push_fault(Fault::Timeout(Duration::from_millis(50)));
    let mut ev = event("late");
    ev["event_time"] = json!(now() - 9 * 86_400);
    graph_error(&post_events(&sb, vec![ev]).await, 400, 100, Some(2804003));
    assert_eq!(sb.delivered_count("late"), 0);
    assert!(sb.requests()[0].outcome_unknown_to_client);
}

#[tokio::test]
async fn throttle_fault_carries_code_and_regain_time() {
    let sb = sandbox().await;
    sb.push_fault(Fault::Throttle {
        code: 80004,
        subcode: Some(2446079),
        regain_minutes: Some(7),
    });
    sb.push_fault(Fault::Throttle {
        code: 613,
        subcode: None,
        regain_minutes: None,
    });
    let reply = post_events(&sb, vec![event("th")]).await;
    let err = graph_error(&reply, 400, 80004, Some(2446079));
    assert_eq!(err["is_transient"], true);
    let usage: Value =
        serde_json::from_str(reply.headers["x-business-use-case-usage"].to_str().unwrap()).unwrap();
    assert_eq!(usage[PIXEL][0]["estimated_time_to_regain_access"], 7);
    assert_eq!(usage[PIXEL][0]["call_count"], 100);

    let reply = post_events(&sb, vec![event("th")]).await;
    graph_error(&reply, 400, 613, None);
    assert!(reply.headers.get("x-business-use-case-usage").is_none());

    assert_ok(&post_events(&sb, vec![event("th")]).await, 1);
    assert_eq!(sb.delivered_count("th"), 1);
}

#[tokio::test]
async fn invalid_token_and_reject_faults() {
    let sb = sandbox().await;
    sb.push_fault(Fault::InvalidToken);
    sb.push_fault(Fault::Reject {
        http: 403,
        code: 10,
        subcode: None,
        message: "Permission denied".into(),
    });
    sb.push_fault(Fault::Reject {
        http: 42,
        code: 368,
        subcode: Some(1390008),
        message: "Blocked".into(),
    });
    let err = graph_error(
        &post_events(&sb, vec![event("r")]).await,
        401,
        190,
        Some(463),
    );
    assert_eq!(err["is_transient"], false);
    let err = graph_error(&post_events(&sb, vec![event("r")]).await, 403, 10, None);
    assert_eq!(err["message"], "Permission denied");
    // An impossible HTTP status falls back to 400.
    graph_error(
        &post_events(&sb, vec![event("r")]).await,
        400,
        368,
        Some(1390008),
    );
    assert_ok(&post_events(&sb, vec![event("r")]).await, 1);
    assert_eq!(sb.pending_faults(), 0);
}

#[tokio::test]
async fn faults_are_fifo_and_taken_before_validation() {
    let sb = sandbox().await;
    sb.push_fault(Fault::Transient);
    sb.push_fault(Fault::ServerError(502));
    assert_eq!(sb.pending_faults(), 2);
    // The first fault hits a request that would fail auth: the fault answers, not the 190.
    let reply = send(
        client()
            .post(events_url(&sb, PIXEL))
            .bearer_auth("bogus")
            .json(&json!({"data": [event("q")]})),
    )
    .await;
    graph_error(&reply, 500, 1, None);
    graph_error(&post_events(&sb, vec![event("q")]).await, 502, 2, None);
    assert_ok(&post_events(&sb, vec![event("q")]).await, 1);
    let faults: Vec<_> = sb.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        [Some(Fault::Transient), Some(Fault::ServerError(502)), None]
    );
}

#[tokio::test]
async fn usage_header_is_returned_on_every_response() {
    let sb = sandbox().await;
    let usage = r#"{"1234567890":[{"type":"ads_management","call_count":85,"total_cputime":20,"total_time":20,"estimated_time_to_regain_access":0}]}"#;
    sb.set_usage_header(Some(usage.to_owned()));
    let ok = post_events(&sb, vec![event("u")]).await;
    assert_eq!(ok.headers["x-business-use-case-usage"], usage);
    let bad = send(
        client()
            .post(events_url(&sb, PIXEL))
            .bearer_auth("bogus")
            .json(&json!({"data": [event("u")]})),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.headers["x-business-use-case-usage"], usage);
    let get = send(
        client()
            .get(format!("{}/{VERSION}/{PIXEL}", sb.base_url()))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(get.headers["x-business-use-case-usage"], usage);

    sb.set_usage_header(None);
    let ok = post_events(&sb, vec![event("u")]).await;
    assert!(ok.headers.get("x-business-use-case-usage").is_none());
    // A value that cannot be a header is ignored rather than breaking responses.
    sb.set_usage_header(Some("bad\nvalue".into()));
    assert_ok(&post_events(&sb, vec![event("u")]).await, 1);
}

#[tokio::test]
async fn latency_delays_events_responses() {
    let sb = sandbox().await;
    sb.set_latency(Duration::from_millis(200));
    let started = Instant::now();
    assert_ok(&post_events(&sb, vec![event("l")]).await, 1);
    assert!(started.elapsed() >= Duration::from_millis(200));
    sb.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn wait_for_events_resolves_when_enough_arrive() {
    let sb = sandbox().await;
    assert!(!sb.wait_for_events(1, Duration::from_millis(50)).await);
    let waiter = tokio::spawn(sb.wait_for_events(3, Duration::from_secs(10)));
    let sender = sb.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_ok(&post_events(&sender, vec![event("w1")]).await, 1);
        assert_ok(
            &post_events(&sender, vec![event("w2"), event("w3")]).await,
            2,
        );
    });
    assert!(waiter.await.unwrap());
    assert!(
        sb.wait_for_events(3, Duration::ZERO).await,
        "already satisfied resolves at once"
    );
    assert!(!sb.wait_for_events(4, Duration::from_millis(100)).await);
    // Rejected events never count.
    let mut bad = event("w4");
    bad["action_source"] = json!("nope");
    post_events(&sb, vec![bad]).await;
    assert_eq!(sb.accepted_events(), 3);
}

#[tokio::test]
async fn delivered_count_counts_duplicates_across_requests() {
    let sb = sandbox().await;
    assert_ok(&post_events(&sb, vec![event("d1"), event("d2")]).await, 2);
    assert_ok(&post_events(&sb, vec![event("d1")]).await, 1);
    let data = serde_json::to_string(&vec![event("d1")]).unwrap();
    assert_ok(
        &send(
            client()
                .post(events_url(&sb, PIXEL))
                .form(&[("data", data.as_str()), ("access_token", TOKEN)]),
        )
        .await,
        1,
    );
    // Another pixel carrying the same id is still Meta receiving it again.
    let other = send(
        client()
            .post(events_url(&sb, OTHER_PIXEL))
            .bearer_auth(OTHER_TOKEN)
            .json(&json!({"data": [event("d1")]})),
    );
    assert_ok(&other.await, 1);
    // A rejected request does not count.
    sb.push_fault(Fault::Transient);
    post_events(&sb, vec![event("d1")]).await;
    assert_eq!(sb.delivered_count("d1"), 4);
    assert_eq!(sb.delivered_count("d2"), 1);
    // Two copies in one request are two deliveries.
    assert_ok(&post_events(&sb, vec![event("d3"), event("d3")]).await, 2);
    assert_eq!(sb.delivered_count("d3"), 2);
}

#[tokio::test]
async fn counts_only_mode_keeps_delivery_counts() {
    let sb = sandbox().await;
    sb.set_record_events(false);
    assert_ok(&post_events(&sb, vec![event("c1"), event("c2")]).await, 2);
    assert_ok(&post_events(&sb, vec![event("c1")]).await, 1);
    assert!(sb.received().is_empty());
    assert_eq!(sb.delivered_count("c1"), 2);
    assert_eq!(sb.accepted_events(), 3);
    assert!(sb.wait_for_events(3, Duration::ZERO).await);
    let records = sb.requests();
    assert_eq!(records.len(), 2);
    assert_eq!((records[0].event_count, records[0].event_ids.len()), (2, 0));
}

#[tokio::test]
async fn clear_forgets_traffic_but_keeps_configuration() {
    let sb = sandbox().await;
    assert_ok(&post_events(&sb, vec![event("k")]).await, 1);
    sb.push_fault(Fault::Transient);
    sb.clear();
    assert!(sb.received().is_empty() && sb.requests().is_empty());
    assert_eq!(
        (
            sb.delivered_count("k"),
            sb.accepted_events(),
            sb.pending_faults()
        ),
        (0, 0, 0)
    );
    assert_ok(&post_events(&sb, vec![event("k")]).await, 1);
    assert_eq!(sb.delivered_count("k"), 1);
}

#[tokio::test]
async fn get_pixel_for_doctor() {
    let sb = sandbox().await;
    let c = client();
    let url = format!("{}/{VERSION}/{PIXEL}", sb.base_url());
    let ok = send(c.get(&url).bearer_auth(TOKEN)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.body,
        json!({"id": PIXEL, "name": format!("Sandbox pixel {PIXEL}")})
    );
    let ok = send(c.get(&url).query(&[("access_token", TOKEN)])).await;
    assert_eq!(ok.status, 200);

    graph_error(
        &send(c.get(&url).bearer_auth("bogus")).await,
        401,
        190,
        None,
    );
    graph_error(&send(c.get(&url)).await, 400, 104, None);
    graph_error(
        &send(c.get(&url).bearer_auth(OTHER_TOKEN)).await,
        400,
        100,
        Some(33),
    );
    graph_error(
        &send(
            c.get(format!("{}/25/{PIXEL}", sb.base_url()))
                .bearer_auth(TOKEN),
        )
        .await,
        400,
        2500,
        None,
    );
    assert!(sb.requests().is_empty(), "lookups are not /events requests");
}

#[tokio::test]
async fn get_ad_campaign() {
    let sb = sandbox().await;
    sb.add_ad("120226305854810726", "120226305854810001", "tok-ads");
    let c = client();
    let url = format!("{}/{VERSION}/120226305854810726", sb.base_url());
    let ok = send(
        c.get(&url)
            .query(&[("fields", "campaign_id")])
            .bearer_auth("tok-ads"),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.body,
        json!({"id": "120226305854810726", "campaign_id": "120226305854810001"})
    );
    let ok = send(
        c.get(&url)
            .query(&[("fields", "name"), ("access_token", "tok-ads")]),
    )
    .await;
    assert_eq!(ok.body, json!({"id": "120226305854810726"}));

    // Unknown ad, or an ad the (valid) token may not read: 100/33.
    let unknown = format!("{}/{VERSION}/999999", sb.base_url());
    graph_error(
        &send(
            c.get(&unknown)
                .query(&[("fields", "campaign_id")])
                .bearer_auth("tok-ads"),
        )
        .await,
        400,
        100,
        Some(33),
    );
    graph_error(
        &send(
            c.get(&url)
                .query(&[("fields", "campaign_id")])
                .bearer_auth(TOKEN),
        )
        .await,
        400,
        100,
        Some(33),
    );
    graph_error(
        &send(c.get(&url).bearer_auth("bogus")).await,
        401,
        190,
        None,
    );
    // An ads-only token is a real token, but not one for a pixel.
    let reply = send(
        c.post(events_url(&sb, PIXEL))
            .bearer_auth("tok-ads")
            .json(&json!({"data": [event("a")]})),
    )
    .await;
    graph_error(&reply, 400, 100, Some(33));
}

/// Waits (up to 30 s) until connecting to `url` fails: stopping the server is asynchronous.
async fn refused_eventually(url: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = client()
            .post(url)
            .bearer_auth(TOKEN)
            .json(&json!({"data": [event("z")]}))
            .send()
            .await;
        if result.is_err() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_stops_serving_and_clones_share_state() {
    let sb = sandbox().await;
    let clone = sb.clone();
    assert_ok(&post_events(&clone, vec![event("z")]).await, 1);
    assert_eq!(sb.delivered_count("z"), 1);
    sb.shutdown();
    assert!(
        refused_eventually(&events_url(&sb, PIXEL)).await,
        "a stopped sandbox must refuse connections"
    );
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let sb = sandbox().await;
    let url = events_url(&sb, PIXEL);
    drop(sb);
    assert!(refused_eventually(&url).await);
}

#[tokio::test]
async fn get_waba_dataset() {
    let sb = sandbox().await;
    sb.add_pixel(PIXEL, TOKEN);
    sb.link_waba("555000111", PIXEL, TOKEN);
    let c = client();
    let url = |waba: &str| format!("{}/{VERSION}/{waba}/dataset", sb.base_url());
    let ok = send(c.get(url("555000111")).bearer_auth(TOKEN)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["data"][0]["id"], PIXEL, "{}", ok.body);
    // A WABA with no dataset linked: an empty list.
    let none = send(c.get(url("555000999")).bearer_auth(TOKEN)).await;
    assert_eq!((none.status, none.body.clone()), (200, json!({"data": []})));
    // Another token that Graph knows may not read this WABA; an unknown one is refused.
    sb.add_pixel("42", "tok-other");
    graph_error(
        &send(c.get(url("555000111")).bearer_auth("tok-other")).await,
        400,
        100,
        Some(33),
    );
    graph_error(
        &send(c.get(url("555000111")).bearer_auth("tok-unknown")).await,
        401,
        190,
        None,
    );
    // A bad version is an unknown path, as everywhere.
    let bad = format!("{}/v26/555000111/dataset", sb.base_url());
    graph_error(&send(c.get(&bad).bearer_auth(TOKEN)).await, 400, 2500, None);
    assert!(sb.requests().is_empty(), "lookups are not /events requests");
}
