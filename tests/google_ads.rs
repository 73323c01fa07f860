//! Google Ads delivery against the local sandbox (`stagecast_sandbox::google_ads`), through the
//! platform interface the pipeline uses: encode → destination → deliver. What each test is
//! named for is asserted on the results and on what the sandbox recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use stagecast::alerts::AlertCause;
use stagecast::pii::Normalizer;
use stagecast::platforms::event::{ConversionEvent, UserIdentity};
use stagecast::platforms::google_ads::{GoogleAds, GoogleAdsConfig};
use stagecast::platforms::outcome::{EventOutcome, EventResult, PreparedEvent};
use stagecast::platforms::platform::{AdPlatform, DeliveryContext};
use stagecast::queue::lease::LeaseClock;
use stagecast::secrets::Secret;
use stagecast::store::PixelRow;
use stagecast_sandbox::{GoogleAdsFault, GoogleAdsSandbox};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CLIENT_ID: &str = "client-1.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "client-secret-xyz";
const REFRESH: &str = "1//refresh-token-abc";
const CUSTOMER: &str = "1234567890";

async fn sandbox() -> GoogleAdsSandbox {
    let s = GoogleAdsSandbox::start(CLIENT_ID, CLIENT_SECRET)
        .await
        .expect("sandbox starts");
    s.add_refresh_token(REFRESH);
    s
}

fn platform(s: &GoogleAdsSandbox) -> GoogleAds {
    GoogleAds::new(GoogleAdsConfig {
        base_url: s.base_url(),
        token_url: s.token_url(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(Secret::new(CLIENT_SECRET)),
        ..GoogleAdsConfig::default()
    })
    .expect("config")
}

fn pixel(login: Option<&str>) -> PixelRow {
    let mut options = serde_json::json!({"conversion_action_id": "987654321"});
    if let Some(l) = login {
        options["login_customer_id"] = l.into();
    }
    PixelRow {
        id: 7,
        platform: "google_ads".into(),
        name: None,
        pixel_id: "123-456-7890".into(),
        access_token: Some(REFRESH.into()),
        access_token_enc: None,
        active: true,
        is_default: true,
        waba_id: None,
        test_event_code: None,
        action_source: None,
        messaging_mode: None,
        options: Some(options),
    }
}

fn event(n: usize) -> ConversionEvent {
    let norm = Normalizer::new("BR").unwrap();
    let user = UserIdentity {
        gclid: n.is_multiple_of(2).then(|| format!("Cj0KCQ-{n}")),
        google_emails: vec![norm.google_email(&format!("lead.{n}@gmail.com")).unwrap()],
        ..UserIdentity::default()
    };
    ConversionEvent {
        event_id: format!("ev-{n}"),
        event: stagecast::catalog::resolve(Some("Purchase"), None).unwrap(),
        name: "Purchase".into(),
        event_time: DateTime::parse_from_rfc3339("2026-11-30T12:34:56Z")
            .unwrap()
            .with_timezone(&Utc),
        value: Some(100.0 + n as f64),
        currency: Some("BRL".into()),
        stage_name: None,
        funnel_category: None,
        campaign_name: None,
        user: Arc::new(user),
        ad: None,
        order_id: Some(format!("order-{n}")),
    }
}

/// Deliver `events` to `pixel` and collect one result per event, by key.
async fn deliver(g: &GoogleAds, pixel: &PixelRow, events: &[ConversionEvent]) -> Vec<EventResult> {
    let now = Utc::now();
    let prepared: Vec<PreparedEvent> = events
        .iter()
        .enumerate()
        .map(|(key, e)| {
            assert!(g.check(e, pixel, e.event_time).is_ok());
            PreparedEvent {
                key,
                job: 1,
                event_id: e.event_id.clone(),
                json: g.encode(e, pixel, now).json,
            }
        })
        .collect();
    let dest = g.destination(pixel, None).expect("destination");
    let clock = LeaseClock::new(Duration::from_secs(600));
    let lease = clock.register(Instant::now(), [1]);
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    dest.deliver(
        prepared,
        DeliveryContext {
            shutdown: &shutdown,
            lease: &lease,
            results: &tx,
        },
    )
    .await;
    drop(tx);
    let mut results = Vec::new();
    while let Some(batch) = rx.recv().await {
        results.extend(batch);
    }
    results.sort_by_key(|r| r.key);
    assert_eq!(results.len(), events.len(), "exactly one result per event");
    results
}

#[tokio::test]
async fn each_stage_change_is_one_conversion_with_the_same_order_and_date_on_retries() {
    let s = sandbox().await;
    let g = platform(&s);
    let p = pixel(None);
    let events = [event(0), event(1)];
    s.push_fault(GoogleAdsFault::HttpError(503));
    let first = deliver(&g, &p, &events).await;
    assert!(
        first.iter().all(|r| r.outcome == EventOutcome::Retry),
        "{first:?}"
    );
    let second = deliver(&g, &p, &events).await;
    assert!(
        second.iter().all(|r| r.outcome == EventOutcome::Delivered),
        "{second:?}"
    );
    let requests = s.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].order_ids, requests[1].order_ids,
        "same order ids on the retry"
    );
    assert_eq!(requests[0].order_ids, ["order-0", "order-1"]);
    assert_eq!(s.recorded("order-0"), 1);
    assert_eq!(s.recorded("order-1"), 1);
    let accepted = s.accepted();
    assert_eq!(accepted.len(), 2);
    assert_eq!(
        accepted[0]["conversionDateTime"],
        "2026-11-30 12:34:56+00:00"
    );
    assert_eq!(accepted[0]["gclid"], "Cj0KCQ-0");
    assert!(
        accepted[1].get("gclid").is_none(),
        "no click id: enhanced conversion for leads"
    );
    assert!(accepted[1]["userIdentifiers"][0]["hashedEmail"].is_string());
    // One token for both deliveries: the access token is cached.
    assert_eq!(s.token_requests(), 1);
}

#[tokio::test]
async fn a_partial_failure_fails_only_its_row_and_a_resent_row_counts_as_delivered() {
    let s = sandbox().await;
    let g = platform(&s);
    let p = pixel(None);
    let events = [event(0), event(2), event(4)];
    s.push_fault(GoogleAdsFault::RowErrors(vec![
        (1, "UNPARSEABLE_GCLID".into()),
        (2, "EXPIRED_EVENT".into()),
    ]));
    let r = deliver(&g, &p, &events).await;
    assert_eq!(r[0].outcome, EventOutcome::Delivered);
    assert_eq!(
        r[1].outcome,
        EventOutcome::Failed {
            cause: AlertCause::ApiError
        }
    );
    assert_eq!(
        r[1].error.as_ref().and_then(|e| e.code.as_deref()),
        Some("UNPARSEABLE_GCLID")
    );
    assert_eq!(
        r[2].outcome,
        EventOutcome::Failed {
            cause: AlertCause::ClickTooOld
        }
    );
    // The delivered row again (a retry after a lost answer): Google says the order id is in
    // use, which is a delivery, and it still holds one conversion.
    let again = deliver(&g, &p, &events[..1]).await;
    assert_eq!(again[0].outcome, EventOutcome::Delivered);
    assert_eq!(
        s.requests()[1].row_errors,
        [(0, "ORDER_ID_ALREADY_IN_USE".to_string())]
    );
    assert_eq!(s.recorded("order-0"), 1);
}

#[tokio::test]
async fn invalid_grant_holds_the_destination_with_one_alert_and_no_secret_in_results() {
    let s = sandbox().await;
    let g = platform(&s);
    let p = pixel(None);
    s.revoke_refresh_token(REFRESH);
    let r = deliver(&g, &p, &[event(0), event(1)]).await;
    let alerts = r
        .iter()
        .filter(|r| {
            matches!(
                r.outcome,
                EventOutcome::Held {
                    cause: AlertCause::TokenInvalid,
                    alert: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(alerts, 1, "{r:?}");
    assert!(r.iter().all(|r| matches!(
        r.outcome,
        EventOutcome::Held {
            cause: AlertCause::TokenInvalid,
            ..
        }
    )));
    assert_eq!(
        r[0].error.as_ref().and_then(|e| e.code.as_deref()),
        Some("invalid_grant")
    );
    // Held: the next delivery sends nothing and raises no second alert.
    let tokens = s.token_requests();
    let again = deliver(&g, &p, &[event(2)]).await;
    assert!(matches!(
        again[0].outcome,
        EventOutcome::Held { alert: false, .. }
    ));
    assert_eq!(s.token_requests(), tokens);
    assert!(s.requests().is_empty(), "no upload without a token");
    let text = format!("{r:?}{again:?}");
    assert!(!text.contains(REFRESH) && !text.contains(CLIENT_SECRET));
}

#[tokio::test]
async fn a_manager_account_is_sent_as_login_customer_id() {
    let s = sandbox().await;
    let g = platform(&s);
    s.require_manager(CUSTOMER, "1112223333");
    let r = deliver(&g, &pixel(Some("111-222-3333")), &[event(0)]).await;
    assert_eq!(r[0].outcome, EventOutcome::Delivered, "{r:?}");
    assert_eq!(
        s.requests()[0].login_customer_id.as_deref(),
        Some("1112223333")
    );
    // Without it Google refuses the customer: held for the configuration, not failed.
    let g = platform(&s);
    let r = deliver(&g, &pixel(None), &[event(1)]).await;
    assert!(
        matches!(
            r[0].outcome,
            EventOutcome::Held {
                cause: AlertCause::RequestRefused,
                alert: true,
                ..
            }
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn quota_exhaustion_waits_for_the_next_day_and_a_401_refreshes_once() {
    let s = sandbox().await;
    let g = platform(&s);
    let p = pixel(None);
    s.push_fault(GoogleAdsFault::QuotaExhausted);
    let r = deliver(&g, &p, &[event(0)]).await;
    match r[0].outcome {
        EventOutcome::Throttled { until } => {
            assert!(until > Utc::now() + chrono::Duration::minutes(59))
        }
        ref other => panic!("{other:?}"),
    }
    s.push_fault(GoogleAdsFault::Unauthenticated);
    let r = deliver(&g, &p, &[event(0)]).await;
    assert_eq!(r[0].outcome, EventOutcome::Delivered, "{r:?}");
    assert_eq!(s.token_requests(), 2, "a fresh token after the 401");
}

#[tokio::test]
async fn consent_is_sent_as_ad_user_data_and_the_sandbox_refuses_ad_personalization() {
    let s = sandbox().await;
    let g = platform(&s);
    let mut p = pixel(None);
    p.options.as_mut().unwrap()["ad_user_data_consent"] = "denied".into();
    let r = deliver(&g, &p, &[event(0)]).await;
    assert_eq!(r[0].outcome, EventOutcome::Delivered, "{r:?}");
    assert_eq!(
        s.accepted()[0]["consent"],
        serde_json::json!({"adUserData": "DENIED"})
    );

    // adPersonalization is not a field of click conversions: Google's Consent reference allows
    // it for OfflineUserDataJobService and UserDataService only.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let token: serde_json::Value = http
        .post(s.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&refresh_token={REFRESH}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = serde_json::json!({
        "gclid": "Cj0KCQ-x", "orderId": "o-consent",
        "conversionAction": format!("customers/{CUSTOMER}/conversionActions/1"),
        "conversionDateTime": "2026-11-30 12:00:00+00:00",
        "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}});
    let answer: serde_json::Value = http
        .post(format!(
            "{}/v26/customers/{CUSTOMER}:uploadClickConversions",
            s.base_url()
        ))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&serde_json::json!({"conversions": [row], "partialFailure": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["partialFailureError"]["details"][0]["errors"][0]["errorCode"]
            ["conversionUploadError"],
        "INVALID_CONSENT",
        "{answer}"
    );
    assert_eq!(s.recorded("o-consent"), 0);
}
