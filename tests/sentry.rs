//! Sentry reporting, end to end: the `stagecast run` binary with `SENTRY_DSN` pointed at a fake
//! Sentry on 127.0.0.1 that records every envelope. Failed jobs arrive as warnings tagged with
//! their own job id, kind, cause and destination (also when two fail at the same time on
//! separate batches), and nothing sent contains a token, an email or a phone number.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use stagecast_sandbox::Fault;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use support::stack::{Stack, PIXEL, TOKEN};
use support::wait::{wait_for, wait_until, DEADLINE};

/// One POST received by the fake Sentry.
#[derive(Debug, Clone)]
struct Captured {
    path: String,
    auth: String,
    content_encoding: Option<String>,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct FakeSentry {
    received: Arc<Mutex<Vec<Captured>>>,
}

impl FakeSentry {
    /// Accepts the envelope endpoint (what the SDK uses) and the legacy store endpoint.
    async fn start() -> (FakeSentry, SocketAddr) {
        async fn record(
            State(fake): State<FakeSentry>,
            uri: axum::http::Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Json<Value> {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            fake.received.lock().unwrap().push(Captured {
                path: uri.path().to_string(),
                auth: header("x-sentry-auth").unwrap_or_default(),
                content_encoding: header("content-encoding"),
                body: body.to_vec(),
            });
            Json(json!({"id": "00000000000000000000000000000000"}))
        }
        let fake = FakeSentry::default();
        let app = Router::new()
            .route("/api/{project}/envelope/", post(record))
            .route("/api/{project}/store/", post(record))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (fake, addr)
    }

    fn captured(&self) -> Vec<Captured> {
        self.received.lock().unwrap().clone()
    }

    /// Every event payload received so far.
    fn events(&self) -> Vec<Value> {
        self.captured()
            .iter()
            .flat_map(|c| parse_envelope(&c.body))
            .filter(|(header, _)| header["type"] == "event")
            .map(|(_, payload)| payload)
            .collect()
    }

    /// The warning event whose `job_id` tag is `job_id`, waiting for it.
    async fn failed_job_event(&self, job_id: i64) -> Value {
        wait_for(
            &format!("a Sentry event for failed job {job_id}"),
            DEADLINE,
            || async {
                self.events().into_iter().find(|e| {
                    level(e) == "warning" && e["tags"]["job_id"] == job_id.to_string().as_str()
                })
            },
        )
        .await
    }
}

/// Sentry envelopes: a header line, then items, each a header line and a payload (of the
/// header's `length` in bytes, else up to the newline).
fn parse_envelope(body: &[u8]) -> Vec<(Value, Value)> {
    fn line(rest: &[u8]) -> (&[u8], &[u8]) {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[]),
        }
    }
    let (_envelope_header, mut rest) = line(body);
    let mut items = Vec::new();
    while !rest.is_empty() {
        let (header, after) = line(rest);
        rest = after;
        if header.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let header: Value = serde_json::from_slice(header).expect("item header is JSON");
        let payload = match header["length"].as_u64() {
            Some(len) => {
                let len = usize::try_from(len).unwrap().min(rest.len());
                let (payload, after) = rest.split_at(len);
                rest = after.strip_prefix(b"\n").unwrap_or(after);
                payload
            }
            None => {
                let (payload, after) = line(rest);
                rest = after;
                payload
            }
        };
        items.push((
            header,
            serde_json::from_slice(payload).unwrap_or(Value::Null),
        ));
    }
    items
}

/// Sentry omits the default level, `error`.
fn level(event: &Value) -> &str {
    event["level"].as_str().unwrap_or("error")
}

fn tag<'a>(event: &'a Value, name: &str) -> &'a str {
    event["tags"][name].as_str().unwrap_or_default()
}

/// `stagecast run` with Sentry on the fake server; logs as JSON on stderr.
fn spawn_worker(s: &Stack, sentry: SocketAddr, extra: &[&str]) -> tokio::process::Child {
    s.worker_command()
        .args(extra)
        .env("STAGECAST_LOG", "info,stagecast=debug")
        .env("SENTRY_DSN", format!("http://public@{sentry}/1"))
        .env("SENTRY_ENVIRONMENT", "ci-test")
        .spawn()
        .expect("the stagecast binary starts")
}

/// SIGTERM, then the process's stderr (it flushes Sentry before exiting).
async fn stop(child: tokio::process::Child) -> String {
    support::process::signal(&child, "TERM");
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "graceful exit:\n{stderr}");
    stderr
}

async fn stage_change_job(s: &Stack, customer: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT id FROM stagecast.jobs WHERE customer_id = $1 AND kind = 'stage_change'",
    )
    .bind(customer)
    .fetch_one(s.pool())
    .await
    .expect("one stage_change job")
}

async fn wait_failed(s: &Stack, job: i64) {
    wait_until(&format!("job {job} to fail"), DEADLINE, || async {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM stagecast.jobs WHERE id = $1")
                .bind(job)
                .fetch_optional(s.pool())
                .await
                .unwrap();
        status.as_deref() == Some("failed")
    })
    .await
}

#[tokio::test]
async fn a_failed_job_is_reported_with_its_tags_and_nothing_personal() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let (sentry, addr) = FakeSentry::start().await;
    let email = "Joana.Secreta@Example.com";
    let phone = "(11) 97777-8888";
    let a = s.customer(1, email, phone, None).await;
    let b = s
        .customer(2, "outro.cliente@example.com", "+55 21 96666-5555", None)
        .await;
    let worker = spawn_worker(&s, addr, &[]);

    // Meta rejects the event. (An expired token holds the pixel instead of failing the job.)
    s.sandbox.push_fault(Fault::Reject {
        http: 400,
        code: 100,
        subcode: Some(2804001),
        message: "Invalid parameter".into(),
    });
    s.move_to(a, 1).await;
    let job_a = stage_change_job(&s, a).await;
    wait_failed(&s, job_a).await;
    let event = sentry.failed_job_event(job_a).await;
    assert_eq!(tag(&event, "kind"), "stage_change");
    assert_eq!(tag(&event, "cause"), "api_error");
    assert_eq!(tag(&event, "platform"), "facebook");
    assert_eq!(tag(&event, "destination"), format!("facebook:{PIXEL}"));
    assert_eq!(tag(&event, "attempt"), "1");
    assert_eq!(event["environment"], "ci-test");
    assert_eq!(
        event["release"],
        format!("stagecast@{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(level(&event), "warning");
    assert!(event.get("user").is_none() && event.get("request").is_none());

    // An API error whose text echoes contact data and the token (Meta's messages may quote
    // what they reject): it reaches Sentry masked.
    s.sandbox.push_fault(Fault::Reject {
        http: 400,
        code: 100,
        subcode: Some(2804001),
        message: format!(
            "Permission denied for outro.cliente@example.com, +55 21 96666-5555, token {TOKEN}"
        ),
    });
    s.move_to(b, 1).await;
    let job_b = stage_change_job(&s, b).await;
    wait_failed(&s, job_b).await;
    let event_b = sentry.failed_job_event(job_b).await;
    assert_eq!(tag(&event_b, "cause"), "api_error");
    let error = event_b["extra"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Permission denied for [email], [phone], token [token]"),
        "the job's error is sent, scrubbed: {error:?}"
    );

    let logs = stop(worker).await;

    // The JSON outcome line of the failed job carries its span's fields.
    let finished = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "job finished" && l["span"]["job_id"] == job_a)
        .unwrap_or_else(|| panic!("no `job finished` line in the job's span:\n{logs}"));
    assert_eq!(finished["span"]["name"], "job");
    assert_eq!(finished["span"]["kind"], "stage_change");
    assert_eq!(finished["span"]["attempt"], 1);
    assert_eq!(finished["span"]["destination"], format!("facebook:{PIXEL}"));
    assert_eq!(finished["outcome"], "failed");

    let captured = sentry.captured();
    assert!(!captured.is_empty());
    for c in &captured {
        assert!(c.path.starts_with("/api/1/"), "{}", c.path);
        assert!(c.auth.contains("sentry_key=public"), "{}", c.auth);
        assert_eq!(c.content_encoding, None, "bodies are sent uncompressed");
        let body = String::from_utf8_lossy(&c.body);
        for needle in [
            TOKEN,
            email,
            &email.to_lowercase(),
            "outro.cliente@example.com",
            "97777-8888",
            "11977778888",
            "96666-5555",
            "5521966665555",
            "Maria da Silva",
        ] {
            assert!(!body.contains(needle), "Sentry got {needle:?}:\n{body}");
        }
    }
}

#[tokio::test]
async fn concurrent_failing_jobs_keep_their_own_tags() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // Two pixels, one campaign each; Meta rejects the event of each request (an event-level
    // error: the job fails; an invalid token would hold the pixel instead).
    s.sandbox.add_pixel("2222333344445555", TOKEN);
    s.crm_exec(&format!(
        "INSERT INTO pixels (id, platform, pixel_id, access_token, active)
           VALUES (2, 'facebook', '2222333344445555', '{TOKEN}', true);
         INSERT INTO utm_campaigns (id, name, pixel_id) VALUES (2, 'Outono', 2);"
    ))
    .await;
    for _ in 0..2 {
        s.sandbox.push_fault(Fault::Reject {
            http: 400,
            code: 100,
            subcode: Some(2804001),
            message: "Invalid parameter".into(),
        });
    }
    let a = s.customer(1, "a@example.com", "+5511999990001", None).await;
    let b = s.customer(2, "b@example.com", "+5511999990002", None).await;
    s.crm_exec("UPDATE customers SET utm_campaign_id = 2 WHERE id = 2")
        .await;
    s.move_to(a, 1).await;
    s.move_to(b, 1).await;
    let (job_a, job_b) = (stage_change_job(&s, a).await, stage_change_job(&s, b).await);
    // Both jobs are queued before the worker starts; one job per batch, and Meta holds its
    // answers until both requests are in flight: the two batches run at the same time, on hubs
    // of their own.
    s.sandbox.hold_answers();
    let (sentry, addr) = FakeSentry::start().await;
    let worker = spawn_worker(&s, addr, &["--batch-size", "1"]);
    assert!(
        s.sandbox.wait_for_in_flight(2, DEADLINE).await,
        "both batches have their request in flight at once"
    );
    s.sandbox.release_answers();
    wait_failed(&s, job_a).await;
    wait_failed(&s, job_b).await;
    let event_a = sentry.failed_job_event(job_a).await;
    let event_b = sentry.failed_job_event(job_b).await;
    stop(worker).await;

    let requests = s.sandbox.requests();
    assert_eq!(requests.len(), 2, "one request per batch");
    assert_eq!(
        requests[1].in_flight_at_arrival, 1,
        "the second batch's request arrived while the first was in flight"
    );

    for (event, job, destination) in [
        (&event_a, job_a, format!("facebook:{PIXEL}")),
        (&event_b, job_b, "facebook:2222333344445555".to_string()),
    ] {
        assert_eq!(tag(event, "cause"), "api_error");
        assert_eq!(tag(event, "destination"), destination, "{event:#}");
        // The batch hub's scope: this job's batch, not the other one running meanwhile.
        assert_eq!(tag(event, "batch_size"), "1", "{event:#}");
        assert_eq!(
            event["contexts"]["batch"]["job_ids"],
            json!([job]),
            "{event:#}"
        );
    }
}

#[tokio::test]
async fn claims_failing_for_a_while_are_reported_as_an_error() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let (sentry, addr) = FakeSentry::start().await;
    let worker = spawn_worker(&s, addr, &[]);
    // Take the queue table away (as a broken migration would): every claim fails.
    s.exec("ALTER TABLE stagecast.jobs RENAME TO jobs_elsewhere")
        .await;
    let event = wait_for("an ERROR event in Sentry", DEADLINE, || async {
        sentry.events().into_iter().find(|e| level(e) == "error")
    })
    .await;
    s.exec("ALTER TABLE stagecast.jobs_elsewhere RENAME TO jobs")
        .await;
    stop(worker).await;
    let text = event.to_string();
    assert!(text.contains("claiming jobs keeps failing"), "{event:#}");
    assert!(
        !text.contains(&s.db.worker_url),
        "no database URL: {event:#}"
    );
    // Only the escalation is an error: the first failures are warnings, not events.
    let errors = sentry
        .events()
        .into_iter()
        .filter(|e| level(e) == "error")
        .count();
    assert_eq!(errors, 1, "{:#?}", sentry.events());
}
