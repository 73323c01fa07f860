//! The admin web console over HTTP (reqwest): sign-in, roles, CSRF, security headers, the
//! audited actions, the stage form, and garbage input. The browser test is tests/console_browser.rs.

mod support;

use reqwest::header::COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::console::{
    client, hidden, login_form, post_login, sign_in, Console, ADMIN_TOKEN, VIEWER_TOKEN,
};
use support::stack::Stack;

/// A failed job as a worker leaves it after Meta refused the token, with its delivery attempt
/// and an alert the CRM's chat refused. Put in by the superuser: no deployment role writes a
/// made-up history. Returns the job id.
async fn failed_job(s: &Stack, customer: i64) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO stagecast.jobs (kind, payload, status, attempts, customer_id, destinations, last_error, finished_at)
         VALUES ('stage_change', jsonb_build_object('customer_id', $1::bigint, 'to_stage_id', 2), 'failed', 1, $1,
                 ARRAY['facebook:1111222233334444'], 'token invalid: Error validating access token (code 190)', now())
         RETURNING id",
    )
    .bind(customer)
    .fetch_one(s.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO stagecast.deliveries (job_id, attempt, platform, destination, event_id, event_name, event_time,
                                           outcome, http_status, error_code, error_subcode, trace_id, error, request, response)
         VALUES ($1, 1, 'facebook', '1111222233334444', 'ev-' || $1, 'Purchase', now(), 'failed', 401, '190', 463, 'AtraceX',
                 'token invalid: Error validating access token (code 190)',
                 '{\"event_name\":\"Purchase\",\"user_data\":{\"em\":[\"b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514\"]}}',
                 '{\"error\":{\"code\":190,\"error_subcode\":463,\"fbtrace_id\":\"AtraceX\"}}')",
    )
    .bind(id)
    .execute(s.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO stagecast.alerts (dedup_key, job_id, customer_id, cause, locale, message, chat_error)
         VALUES ('a-' || $1, $1, $2, 'token_invalid', 'pt', 'O token do pixel é inválido', '23502: null value in column \"sender_id\"')",
    )
    .bind(id)
    .bind(customer)
    .execute(s.pool())
    .await
    .unwrap();
    id
}

async fn status_of(s: &Stack, id: i64) -> String {
    sqlx::query_scalar("SELECT status FROM stagecast.jobs WHERE id = $1")
        .bind(id)
        .fetch_one(s.pool())
        .await
        .unwrap()
}

/// (actor, action, reason, count, db_role) of every audit row.
async fn audit(s: &Stack) -> Vec<(String, String, Option<String>, i32, String)> {
    sqlx::query_as(
        "SELECT actor, action, reason, count, db_role FROM stagecast.admin_audit ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap()
}

const PAGES: [&str; 6] = [
    "/",
    "/jobs",
    "/jobs?status=failed",
    "/destinations",
    "/stages",
    "/stages/1",
];

#[tokio::test]
async fn without_a_valid_token_every_page_and_action_is_refused() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let job = failed_job(&s, 7).await;
    let c = Console::start(&s.db).await;
    let http = client();
    let job_page = format!("/jobs/{job}");
    for path in PAGES.iter().copied().chain([job_page.as_str()]) {
        let res = http.get(c.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("name=\"token\""),
            "{path} shows the sign-in form"
        );
        assert!(
            !html.contains("Error validating access token"),
            "{path} leaks nothing"
        );
    }
    // A forged session cookie is no session.
    let res = http
        .get(c.url(&job_page))
        .header(COOKIE, "stagecast_console=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // An action without a session changes nothing.
    let res = http
        .post(c.url(&format!("/jobs/{job}/replay")))
        .form(&[("reason", "x"), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&s, job).await, "failed");

    // Signing in: a wrong token, and a right token without the form's CSRF cookie, are refused.
    let (cookie, csrf) = login_form(&c.base).await;
    let wrong = [
        ("token", "not-the-token-not-the-token-not-the"),
        ("csrf", csrf.as_str()),
    ];
    let res = post_login(&http, &c.base, Some(&cookie), &wrong).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(support::console::set_cookie(&res, "stagecast_console").is_none());
    let no_cookie = [("token", ADMIN_TOKEN), ("csrf", csrf.as_str())];
    let res = post_login(&http, &c.base, None, &no_cookie).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "login CSRF");
    assert!(support::console::set_cookie(&res, "stagecast_console").is_none());

    // The right token: a session cookie with safe flags, and the pages open.
    let (cookie, csrf) = login_form(&c.base).await;
    let right = [
        ("token", ADMIN_TOKEN),
        ("csrf", csrf.as_str()),
        ("next", "//evil.example/"),
    ];
    let res = post_login(&http, &c.base, Some(&cookie), &right).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/", "no open redirect");
    let set = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("stagecast_console="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(flag), "{set}");
    }
    let admin = sign_in(&c.base, ADMIN_TOKEN).await;
    for path in PAGES.iter().copied().chain([job_page.as_str()]) {
        let res = admin.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    // Signed out, the session is gone.
    let res = admin.post_csrf("/logout", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(admin.get("/jobs").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn actions_without_the_sessions_csrf_token_are_rejected_and_change_nothing() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let job = failed_job(&s, 7).await;
    let (c, admin) = Console::start_signed_in(&s.db, ADMIN_TOKEN).await;
    let other = sign_in(&c.base, ADMIN_TOKEN).await;
    assert_ne!(admin.csrf, other.csrf, "one CSRF token per session");
    let replay = format!("/jobs/{job}/replay");
    for form in [
        vec![("reason", "token renewed")],
        vec![("reason", "token renewed"), ("csrf", "")],
        vec![
            ("reason", "token renewed"),
            ("csrf", "forged-forged-forged-forged"),
        ],
        vec![("reason", "token renewed"), ("csrf", other.csrf.as_str())],
    ] {
        let res = admin.post(&replay, &form).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{form:?}");
        assert!(res.text().await.unwrap().contains("Request refused"));
    }
    let stage = admin
        .post(
            "/stages/1",
            &[
                ("action", "save"),
                ("rows", "0"),
                ("base", "[]"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(stage.status(), StatusCode::FORBIDDEN);
    let bulk = admin
        .post(
            "/jobs/bulk",
            &[
                ("action", "replay"),
                ("status", "failed"),
                ("expected", "1"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(bulk.status(), StatusCode::FORBIDDEN);
    // A cross-site form post is refused even with the right token (Sec-Fetch-Site).
    let res = admin
        .post_request(&replay)
        .header("sec-fetch-site", "cross-site")
        .form(&[("reason", "x"), ("csrf", admin.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(status_of(&s, job).await, "failed");
    assert!(audit(&s).await.is_empty(), "nothing was recorded");
    let stage1: Value = sqlx::query_scalar("SELECT utm_event FROM crm_stages WHERE id = 1")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(
        stage1,
        json!([{"platform": "facebook", "event_name": "Lead"}])
    );

    // With it, the action is the audited function, as the admin role, under the user's name.
    let res = admin
        .post_csrf(&replay, &[("reason", "token renewed")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&s, job).await, "pending");
    let rows = audit(&s).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            &rows[0].0[..],
            &rows[0].1[..],
            rows[0].2.as_deref(),
            rows[0].3
        ),
        ("console:ana", "replay", Some("token renewed"), 1)
    );
    assert_eq!(
        rows[0].4, s.db.roles.admin,
        "the console acts as the admin role"
    );
}

#[tokio::test]
async fn a_viewer_reads_every_page_but_cannot_act() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let job = failed_job(&s, 7).await;
    let (_console, viewer) = Console::start_signed_in(&s.db, VIEWER_TOKEN).await;
    let job_page = format!("/jobs/{job}");
    for path in PAGES.iter().copied().chain([job_page.as_str()]) {
        let res = viewer.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let html = res.text().await.unwrap();
        assert!(
            !html.contains("id=\"replay\""),
            "{path}: no action form for a viewer"
        );
    }
    let res = viewer
        .post_csrf(&format!("/jobs/{job}/replay"), &[("reason", "x")])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = viewer
        .post_csrf(&format!("/jobs/{job}/cancel"), &[("reason", "x")])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = viewer
        .post_csrf(
            "/stages/1",
            &[
                ("action", "save"),
                ("rows", "0"),
                ("base", "[]"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = viewer.get("/jobs/bulk?action=replay&status=failed").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(status_of(&s, job).await, "failed");
    assert!(audit(&s).await.is_empty());
    // Viewers switch their language too (a per-session setting, CSRF-checked).
    let res = viewer
        .post_csrf("/lang", &[("to", "es"), ("back", "/jobs")])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(viewer
        .get("/jobs")
        .await
        .text()
        .await
        .unwrap()
        .contains("Destinos"));
}

#[tokio::test]
async fn the_job_page_shows_every_attempt_the_answer_and_the_chat_refusal() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let job = failed_job(&s, 7).await;
    let (_console, admin) = Console::start_signed_in(&s.db, ADMIN_TOKEN).await;
    let html = admin
        .get(&format!("/jobs/{job}"))
        .await
        .text()
        .await
        .unwrap();
    for must in [
        "b4c9a289323b21a01c3e940f150eb9b8c542587f1abfd8f0e1cc1ffc5e475514", // hashed email, as sent
        "AtraceX",
        "190/463",
        "token_invalid",
        "null value in column",
        "refused by the chat",
    ] {
        assert!(html.contains(must), "the job page shows {must}");
    }
    // The list finds it by status, destination and customer; the overview counts it.
    let list = admin
        .get("/jobs?status=failed&pixel=1111222233334444&customer=7&since=1day")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains(&format!("href=\"/jobs/{job}\"")), "{list}");
    let none = admin
        .get("/jobs?status=failed&customer=8")
        .await
        .text()
        .await
        .unwrap();
    assert!(!none.contains(&format!("href=\"/jobs/{job}\"")));
    let overview = admin.get("/").await.text().await.unwrap();
    assert!(overview.contains("token_invalid") && overview.contains("stage_change"));
    assert!(overview.contains("No destination is held or throttled."));
    // A throttled request and a job waiting for later show as held or throttled (superuser:
    // the worker's records, made up).
    s.exec(
        "INSERT INTO stagecast.deliveries (job_id, attempt, platform, destination, event_id, event_name, event_time, outcome)
         VALUES (999, 1, 'facebook', '1111222233334444', 'ev-t', 'Lead', now(), 'throttled');
         INSERT INTO stagecast.jobs (kind, payload, status, run_at, destinations)
         VALUES ('stage_change', '{}', 'pending', now() + interval '10 minutes', ARRAY['facebook:1111222233334444']);",
    )
    .await;
    let overview = admin.get("/").await.text().await.unwrap();
    assert!(overview.contains("throttled by the platform"), "{overview}");
    assert!(overview.contains("jobs wait for later"), "{overview}");
    let dest = admin.get("/destinations").await.text().await.unwrap();
    assert!(dest.contains("1111222233334444") && dest.contains("sealed with key"));
    assert!(!dest.contains(support::stack::TOKEN), "never the token");
}

#[tokio::test]
async fn a_bulk_replay_shows_the_count_first_and_acts_on_exactly_that_set() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let a = failed_job(&s, 7).await;
    let b = failed_job(&s, 8).await;
    let (_console, admin) = Console::start_signed_in(&s.db, ADMIN_TOKEN).await;
    let preview = admin
        .get("/jobs/bulk?action=replay&status=failed&pixel=1111222233334444&since=2h")
        .await;
    assert_eq!(preview.status(), StatusCode::OK);
    let html = preview.text().await.unwrap();
    assert!(
        html.contains("<strong id=\"eligible\">2</strong>"),
        "{html}"
    );
    let since = hidden(&html, "since").expect("since fixed to an absolute time");
    assert!(since.contains('T'), "{since}");
    let form = |expected: &'static str, since: &str| {
        vec![
            ("action", "replay".to_string()),
            ("status", "failed".to_string()),
            ("pixel", "1111222233334444".to_string()),
            ("since", since.to_string()),
            ("expected", expected.to_string()),
            ("reason", "token renewed".to_string()),
        ]
    };
    // A count that is no longer right is refused: the admin confirms again.
    let stale: Vec<(&str, String)> = form("3", &since);
    let stale: Vec<(&str, &str)> = stale.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = admin.post_csrf("/jobs/bulk", &stale).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(status_of(&s, a).await, "failed");
    // Without a reason, nothing either.
    let res = admin
        .post_csrf(
            "/jobs/bulk",
            &[
                ("action", "replay"),
                ("status", "failed"),
                ("expected", "2"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let ok: Vec<(&str, String)> = form("2", &since);
    let ok: Vec<(&str, &str)> = ok.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = admin.post_csrf("/jobs/bulk", &ok).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("<strong id=\"changed\">2</strong>"));
    assert_eq!(status_of(&s, a).await, "pending");
    assert_eq!(status_of(&s, b).await, "pending");
    let rows: Vec<(String, Value, Vec<i64>)> =
        sqlx::query_as("SELECT actor, filter, job_ids FROM stagecast.admin_audit")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "one chunk, one audit row");
    assert_eq!(rows[0].0, "console:ana");
    assert_eq!(rows[0].1["pixel"], "1111222233334444");
    assert_eq!(rows[0].2, vec![a, b]);
}

fn stage_form(rows: &[[&str; 4]], base: &str, action: &str, reason: &str) -> Vec<(String, String)> {
    let mut f = vec![
        ("rows".to_string(), rows.len().to_string()),
        ("base".into(), base.into()),
        ("action".into(), action.into()),
        ("reason".into(), reason.into()),
    ];
    for (i, [event, value, currency, orig]) in rows.iter().enumerate() {
        f.push((format!("p{i}"), "facebook".into()));
        f.push((format!("e{i}"), event.to_string()));
        f.push((format!("v{i}"), value.to_string()));
        f.push((format!("cur{i}"), currency.to_string()));
        f.push((format!("on{i}"), "on".into()));
        if !orig.is_empty() {
            f.push((format!("o{i}"), orig.to_string()));
        }
    }
    f
}

async fn post_stage(
    admin: &support::console::Signed,
    stage: i64,
    form: &[(String, String)],
) -> reqwest::Response {
    let mut all: Vec<(&str, &str)> = vec![("csrf", admin.csrf.as_str())];
    all.extend(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    admin.post(&format!("/stages/{stage}"), &all).await
}

async fn utm_event(s: &Stack, stage: i64) -> Value {
    sqlx::query_scalar("SELECT utm_event FROM crm_stages WHERE id = $1")
        .bind(stage)
        .fetch_one(s.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn stage_events_are_validated_by_the_workers_parser_saved_once_and_audited() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let (_console, admin) = Console::start_signed_in(&s.db, ADMIN_TOKEN).await;
    let base = utm_event(&s, 1).await.to_string();

    // A name the worker would not send: refused with the worker's words, nothing saved.
    let res = post_stage(
        &admin,
        1,
        &stage_form(
            &[["Lead", "", "", "0"], ["Purchse", "", "", ""]],
            &base,
            "save",
            "add purchase",
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("did you mean &quot;Purchase&quot;"));
    let res = post_stage(
        &admin,
        1,
        &stage_form(&[["Lead", "", "reais", "0"]], &base, "save", "x"),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a currency that is no code"
    );
    let res = post_stage(
        &admin,
        1,
        &stage_form(
            &[["Lead", "", "", "0"], ["Schedule", "", "", ""]],
            &base,
            "save",
            "",
        ),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a reason is required"
    );
    // Checking changes nothing.
    let res = post_stage(
        &admin,
        1,
        &stage_form(
            &[["Lead", "", "", "0"], ["Schedule", "", "", ""]],
            &base,
            "check",
            "",
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        utm_event(&s, 1).await,
        json!([{"platform": "facebook", "event_name": "Lead"}])
    );
    assert!(audit(&s).await.is_empty());

    // Saved: through stagecast.set_stage_events, one audit row with the value before and after.
    let res = post_stage(
        &admin,
        1,
        &stage_form(
            &[["Lead", "", "", "0"], ["Schedule", "49,90", "brl", ""]],
            &base,
            "save",
            "agenda counts",
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let saved = utm_event(&s, 1).await;
    assert_eq!(saved[1]["event_name"], "Schedule");
    assert_eq!(saved[1]["value"], json!(49.9));
    assert_eq!(saved[1]["currency"], "BRL");
    let parsed = stagecast::pipeline::event_config::parse(&saved);
    assert!(
        parsed.iter().all(Result::is_ok) && parsed.len() == 2,
        "{parsed:?}"
    );
    let (actor, action, details): (String, String, Value) =
        sqlx::query_as("SELECT actor, action, details FROM stagecast.admin_audit")
            .fetch_one(s.pool())
            .await
            .unwrap();
    assert_eq!(
        (actor.as_str(), action.as_str()),
        ("console:ana", "set_stage_events")
    );
    assert_eq!(details["stage_id"], 1);
    assert_eq!(
        details["before"],
        json!([{"platform": "facebook", "event_name": "Lead"}])
    );
    assert_eq!(details["after"], saved);

    // The form was built from the old value: someone changed the stage meanwhile, so it is refused.
    let res = post_stage(
        &admin,
        1,
        &stage_form(&[["Contact", "", "", "0"]], &base, "save", "stale form"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(utm_event(&s, 1).await, saved);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let s = Stack::new().await;
    let (c, admin) = Console::start_signed_in(&s.db, ADMIN_TOKEN).await;
    let anonymous = client().get(c.url("/login")).send().await.unwrap();
    let refused = client().get(c.url("/jobs")).send().await.unwrap();
    let page = admin.get("/jobs").await;
    let missing = admin.get("/no/such/page").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    for res in [&anonymous, &refused, &page, &missing] {
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    }
    let html = admin.get("/").await.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("style=\""),
        "no inline script or style"
    );
    let css = client()
        .get(c.url("/static/console.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn garbage_input_gets_a_clear_answer_never_a_server_error() {
    let s = Stack::new().await;
    s.seed_standard().await;
    let job = failed_job(&s, 7).await;
    let (c, admin) = Console::start_signed_in(&s.db, ADMIN_TOKEN).await;
    let long = "x".repeat(100_000);
    let gets = [
        "/jobs/abc".to_string(),
        "/jobs/99999999999999999999999".into(),
        "/jobs/-1".into(),
        "/jobs/%00".into(),
        "/jobs?status=exploded".into(),
        "/jobs?customer=12ab".into(),
        "/jobs?since=last%20tuesday".into(),
        "/jobs?limit=0".into(),
        "/jobs?limit=999999999999999999999".into(),
        "/jobs?kind=%FF%FE".into(),
        "/jobs/bulk?action=explode&status=failed".into(),
        "/jobs/bulk?action=replay&status=done".into(),
        "/jobs/bulk?action=replay".into(),
        "/stages/abc".into(),
        "/stages/424242".into(),
    ];
    for path in &gets {
        let res = admin.get(path).await;
        let status = res.status();
        let body = res.text().await.unwrap();
        let shown: String = path.chars().take(80).collect();
        assert!(status.is_client_error(), "{shown}: {status}");
        assert!(
            !body.contains("panicked") && !body.contains("RUST_BACKTRACE"),
            "{shown}"
        );
    }
    // A bad `next` or language on the sign-in page falls back to the defaults.
    let res = client()
        .get(c.url("/login?next=%00//evil&lang=zz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        hidden(&res.text().await.unwrap(), "next").as_deref(),
        Some("/")
    );
    // A long filter value is cut and matches nothing: an ordinary answer.
    let res = admin.get(&format!("/jobs?pixel={}", &long[..5000])).await;
    assert_eq!(res.status(), StatusCode::OK);
    let replay = format!("/jobs/{job}/replay");
    let posts: Vec<(String, Vec<(&str, String)>)> = vec![
        (replay.clone(), vec![("reason", long.clone())]),
        (replay.clone(), vec![("reason", "".into())]),
        ("/jobs/abc/replay".into(), vec![("reason", "x".into())]),
        ("/jobs/424242/cancel".into(), vec![("reason", "x".into())]),
        (
            "/stages/1".into(),
            vec![("action", "save".into()), ("base", "{not json".into())],
        ),
        (
            "/stages/1".into(),
            vec![
                ("action", "save".into()),
                ("rows", "99999999999".into()),
                ("base", "[]".into()),
            ],
        ),
        (
            "/stages/1".into(),
            vec![
                ("action", "save".into()),
                ("rows", "1".into()),
                ("e0", "Lead".into()),
                ("v0", "1e999".into()),
                ("base", "[]".into()),
                ("reason", "x".into()),
            ],
        ),
        (
            "/stages/1".into(),
            vec![
                ("action", "save".into()),
                ("rows", "1".into()),
                ("e0", "Other".into()),
                ("c0", "é".repeat(60)),
                ("base", "[]".into()),
                ("reason", "x".into()),
            ],
        ),
        (
            "/jobs/bulk".into(),
            vec![
                ("action", "cancel".into()),
                ("status", "done".into()),
                ("reason", "x".into()),
            ],
        ),
        ("/lang".into(), vec![("to", "klingon".into())]),
    ];
    for (path, form) in &posts {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = admin.post_csrf(path, &form).await;
        let status = res.status();
        let shown: String = format!("{form:?}").chars().take(120).collect();
        assert!(status.is_client_error(), "POST {path} {shown}: {status}");
    }
    // Bodies that are not forms at all.
    for body in ["\u{0}\u{1}", "%", "a=%ZZ&&&==="] {
        let res = admin
            .post_request(&replay)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{body:?}: {}", res.status());
    }
    assert_eq!(status_of(&s, job).await, "failed");
    assert_eq!(
        utm_event(&s, 1).await,
        json!([{"platform": "facebook", "event_name": "Lead"}])
    );
    // And it still serves.
    assert_eq!(admin.get("/").await.status(), StatusCode::OK);
}

/// The `addr` of the JSON log line `message` of a spawned process, read from `lines` (which
/// keep being drained afterwards, so the child never blocks on a full pipe).
async fn logged_addr(
    mut lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    message: &str,
) -> String {
    let found = tokio::time::timeout(support::wait::DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(message) {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                return v["addr"].as_str().map(str::to_string);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("no log line {message:?} with an addr"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

#[tokio::test]
async fn a_worker_serves_the_console_with_its_flags_and_stagecast_console_on_its_own() {
    use tokio::io::AsyncBufReadExt as _;
    let s = Stack::new().await;
    s.seed_standard().await;
    let job = failed_job(&s, 7).await;
    // `stagecast run --console-addr`: the console as the admin role next to the worker.
    let mut run = s.worker_command();
    run.args(["--console-addr", "127.0.0.1:0"])
        .env("STAGECAST_CONSOLE_DATABASE_URL", &s.db.admin_url)
        .env("STAGECAST_CONSOLE_USERS", support::console::users_spec());
    let mut worker = run.spawn().expect("the worker starts");
    let lines = tokio::io::BufReader::new(worker.stderr.take().unwrap()).lines();
    let addr = logged_addr(lines, "serving the admin console").await;
    let admin = sign_in(&format!("http://{addr}"), ADMIN_TOKEN).await;
    let page = admin.get(&format!("/jobs/{job}")).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("token_invalid"));
    let res = admin
        .post_csrf(
            &format!("/jobs/{job}/cancel"),
            &[("reason", "retired pixel")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(status_of(&s, job).await, "cancelled");
    assert_eq!(
        audit(&s).await[0].4,
        s.db.roles.admin,
        "as the admin role, not the worker's"
    );
    support::process::signal(&worker, "TERM");
    assert!(worker.wait().await.unwrap().success());

    // `stagecast console`, with DATABASE_URL the admin role's.
    let mut console = support::process::stagecast()
        .args(["--log-format", "json", "console", "--addr", "127.0.0.1:0"])
        .env("DATABASE_URL", &s.db.admin_url)
        .env("STAGECAST_CONSOLE_USERS", support::console::users_spec())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the console starts");
    let lines = tokio::io::BufReader::new(console.stderr.take().unwrap()).lines();
    let addr = logged_addr(lines, "serving the admin console").await;
    let viewer = sign_in(&format!("http://{addr}"), VIEWER_TOKEN).await;
    assert_eq!(viewer.get("/destinations").await.status(), StatusCode::OK);
    support::process::signal(&console, "TERM");
    assert!(console.wait().await.unwrap().success());
}

#[tokio::test]
async fn the_console_refuses_to_start_without_users_and_the_worker_with_it() {
    let db = support::TestDb::new().await;
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = support::process::stagecast();
        cmd.args(args).env("DATABASE_URL", &db.admin_url);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output()
    };
    let out = run(&["console", "--addr", "127.0.0.1:0"], &[])
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no console users configured") && err.contains("no default password"),
        "{err}"
    );
    let out = run(
        &["console", "--addr", "127.0.0.1:0"],
        &[("STAGECAST_CONSOLE_USERS", "ana:admin:admin")],
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 32 characters"), "{err}");
    assert!(!err.contains("ana:admin:admin"), "the token is not echoed");
    // `run` checks the console's settings before it starts a worker.
    let out = run(
        &["run", "--metrics-addr", "", "--console-addr", "127.0.0.1:0"],
        &[("STAGECAST_CONSOLE_DATABASE_URL", &db.admin_url)],
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no console users configured"));
    let out = run(
        &["run", "--metrics-addr", "", "--console-addr", "127.0.0.1:0"],
        &[("STAGECAST_CONSOLE_USERS", &support::console::users_spec())],
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--console-database-url"));
}
