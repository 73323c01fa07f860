//! `stagecast doctor` end to end: the built binary against a real database and the Graph API
//! sandbox. A healthy setup passes; a broken one names each problem with its fix; `--json` is
//! valid JSON; an unmigrated or unreachable database is reported with the right exit code; and
//! no token, key or password ever appears in the output.

mod support;

use support::stack::{
    Stack, GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET, GOOGLE_REFRESH, KEYS, PIXEL, TOKEN,
};
use support::wait;

/// A token the sandbox does not know: Meta answers 190.
const EXPIRED_TOKEN: &str = "EAAexpired-token-5f4e3d2c1b";
/// The base64 half of the test key: must never be printed either.
const KEY_MATERIAL: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Run the doctor with a clean environment: only what the test passes, so settings from the
/// machine running the tests cannot change the outcome.
async fn doctor(database_url: &str, graph_url: &str, keys: Option<&str>, args: &[&str]) -> Output {
    doctor_with(database_url, graph_url, keys, args, &[]).await
}

/// `doctor` with more environment (another platform's settings).
async fn doctor_with(
    database_url: &str,
    graph_url: &str,
    keys: Option<&str>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = support::process::stagecast();
    cmd.arg("doctor")
        .args(args)
        .envs(env.iter().copied())
        .env("DATABASE_URL", database_url)
        .env("STAGECAST_META_GRAPH_URL", graph_url)
        .env("STAGECAST_DOCTOR_TIMEOUT", "5s");
    if let Some(keys) = keys {
        cmd.env("STAGECAST_KEYS", keys);
    }
    let out = cmd.output().await.expect("run stagecast doctor");
    let out = Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for secret in [
        TOKEN,
        EXPIRED_TOKEN,
        KEY_MATERIAL,
        "hunter2secret",
        GOOGLE_REFRESH,
        GOOGLE_CLIENT_SECRET,
    ] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "a secret was printed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    out
}

/// The line `  <marker> <title>: …` containing `found`, and (for problems and warnings) the
/// `fix:` line right after it containing `fix`.
fn assert_check(stdout: &str, marker: &str, found: &str, fix: Option<&str>) {
    let lines: Vec<&str> = stdout.lines().collect();
    let Some(i) = lines
        .iter()
        .position(|l| l.starts_with(&format!("  {marker} ")) && l.contains(found))
    else {
        panic!("no `{marker}` line containing {found:?} in:\n{stdout}");
    };
    if let Some(fix) = fix {
        let next = lines.get(i + 1).copied().unwrap_or_default();
        assert!(
            next.starts_with("    fix: ") && next.contains(fix),
            "the fix for {found:?} should contain {fix:?}, got {next:?} in:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn a_healthy_setup_passes_with_exit_code_0() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // As the worker's role: the doctor runs with the worker's DATABASE_URL.
    let out = doctor(&s.db.worker_url, &s.sandbox.base_url(), Some(KEYS), &[]).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let o = &out.stdout;
    assert_check(o, "✓", "Connection: PostgreSQL", None);
    assert_check(o, "✓", "Migrations: all", None);
    assert_check(
        o,
        "✓",
        "STAGECAST_KEYS: 1 key(s); tokens are sealed with k1",
        None,
    );
    assert_check(o, "✓", "Sealed tokens: all 1 open", None);
    assert_check(
        o,
        "✓",
        &format!("Pixel {PIXEL} \"Main\" (id 1): the Graph API accepts its token"),
        None,
    );
    assert_check(o, "✓", "Default pixel: pixel 1111222233334444", None);
    assert_check(o, "✓", "Campaigns: all 1 resolve to an active pixel", None);
    assert_check(o, "✓", "Stage events: 2 stage(s), 2 send events", None);
    assert_check(o, "✓", "Recorded problems: no unresolved row", None);
    assert_check(o, "✓", "Parked enqueues: none", None);
    assert_check(
        o,
        "✓",
        "STAGECAST_LOCALE: chat alerts are written in pt",
        None,
    );
    assert!(!o.contains('✗'), "{o}");
    assert!(
        !o.contains('\x1b'),
        "no colors when stdout is not a terminal"
    );
    assert!(o.contains(", 0 problems: healthy"), "{o}");

    // The same setup with the Graph API out of reach: each pixel says so, exit 1.
    let unreachable = doctor(&s.db.worker_url, "http://127.0.0.1:1", Some(KEYS), &[]).await;
    assert_eq!(unreachable.code, Some(1), "{}", unreachable.stdout);
    assert_check(
        &unreachable.stdout,
        "✗",
        "cannot reach the Graph API at http://127.0.0.1:1",
        Some("STAGECAST_META_GRAPH_URL"),
    );
}

/// Every kind of problem at once, without STAGECAST_KEYS while a token is sealed.
async fn broken_setup() -> Stack {
    let s = Stack::new().await;
    s.seed_standard().await; // pixel 1: sealed token, campaign 1 → pixel 1
    sqlx::query(
        "INSERT INTO pixels (id, platform, name, pixel_id, access_token, active) VALUES \
           (2, 'facebook', 'Expired', '5555666677778888', $1, true), \
           (4, 'facebook', 'Typo', '4444000044440000', $2, true)",
    )
    .bind(EXPIRED_TOKEN)
    .bind(TOKEN)
    .execute(s.crm())
    .await
    .expect("insert pixels");
    s.crm_exec(
        r#"
        UPDATE pixels SET is_default = false WHERE id = 1;
        INSERT INTO pixels (id, platform, name, pixel_id, active) VALUES (3, 'facebook', 'Old', '9999000011112222', false);
        INSERT INTO utm_campaigns (id, name, pixel_id) VALUES (2, 'Inverno', 3), (3, 'Sem pixel', NULL);
        INSERT INTO crm_stages (id, name, utm_event) VALUES (3, 'Venda', '[{"platform":"facebook","event_name":"Purchse"}]');
        -- A CRM writing a bare string: the trigger keeps it and records it in config_problems.
        INSERT INTO crm_stages (id, name, utm_event) VALUES (4, 'Visita', '"Schedule"');
        "#,
    )
    .await;
    // A parked enqueue, put there by the superuser (only a trigger's failure parks one).
    s.exec(
        "INSERT INTO stagecast.enqueue_failures (kind, payload, error)
              VALUES ('stage_change', '{\"customer_ids\":[1],\"to_stage_ids\":[3]}', 'XX000: simulated failure')",
    )
    .await;
    s
}

#[tokio::test]
async fn a_broken_setup_names_each_problem_with_its_fix_and_exits_1() {
    let s = broken_setup().await;
    let out = doctor(&s.db.worker_url, &s.sandbox.base_url(), None, &[]).await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let o = &out.stdout;
    // STAGECAST_KEYS missing while a token is sealed.
    assert_check(
        o,
        "✗",
        "STAGECAST_KEYS: not set, but 1 token(s) are sealed",
        Some("set STAGECAST_KEYS"),
    );
    assert_check(
        o,
        "✗",
        &format!(
            "Pixel {PIXEL} \"Main\" (id 1): its token is sealed but STAGECAST_KEYS is not set"
        ),
        Some("STAGECAST_KEYS"),
    );
    // Invalid token: Meta's 190, from the sandbox.
    assert_check(
        o,
        "✗",
        "Pixel 5555666677778888 \"Expired\" (id 2): Meta refused the token: invalid or expired (code 190",
        Some("stagecast pixel set-token 2 < token.txt"),
    );
    // A valid token for another pixel: 100/33.
    assert_check(
        o,
        "✗",
        "Meta does not know pixel 4444000044440000 or the token has no access to it (code 100, subcode 33",
        Some("check pixels.pixel_id"),
    );
    assert_check(
        o,
        "!",
        "Plaintext tokens: 2 token(s) in pixels.access_token waiting to be sealed",
        Some("stagecast keys rotate"),
    );
    assert_check(
        o,
        "!",
        "Default pixel: no facebook pixel is marked default",
        Some("is_default = true"),
    );
    // Campaign without a pixel and no default; campaign on an inactive pixel.
    assert_check(
        o,
        "✗",
        "Campaigns without a pixel: 1 campaign(s) have no pixel and there is no default pixel: \"Sem pixel\" (id 3)",
        Some("utm_campaigns.pixel_id"),
    );
    assert_check(
        o,
        "✗",
        "\"Inverno\" (id 2) → pixel 9999000011112222 \"Old\" (id 3)",
        Some("pixels.active = true"),
    );
    // The misspelt event, with the suggestion.
    assert_check(
        o,
        "✗",
        "Stage \"Venda\" (id 3): entry 1: unknown event name \"Purchse\": did you mean \"Purchase\"?",
        Some("set \"event_name\" to \"Purchase\""),
    );
    // The string utm_event: the parser's issue, and the trigger's unresolved record of it.
    assert_check(
        o,
        "✗",
        "Stage \"Visita\" (id 4): utm_event is a JSON string, expected an array",
        Some("correct the stage's utm_event"),
    );
    assert_check(
        o,
        "✗",
        "Recorded problems: 1 unresolved in stagecast.config_problems: stage \"Visita\" (id 4)",
        Some("correct the value"),
    );
    // The parked enqueue, with its error.
    assert_check(
        o,
        "✗",
        "Parked enqueues: 1 stage change(s) a trigger could not queue",
        Some("re-queues them"),
    );
    assert!(o.contains("XX000: simulated failure"), "{o}");
    assert!(o.contains("problems found."), "{o}");

    // Once the stage holds a valid value, its recorded problem counts as resolved.
    s.crm_exec(r#"UPDATE crm_stages SET utm_event = '[{"event_name":"Schedule"}]' WHERE id = 4"#)
        .await;
    let again = doctor(&s.db.worker_url, &s.sandbox.base_url(), None, &[]).await;
    assert_check(
        &again.stdout,
        "✓",
        "Recorded problems: no unresolved row",
        None,
    );
    assert!(!again.stdout.contains("\"Visita\""), "{}", again.stdout);
}

#[tokio::test]
async fn json_lists_every_check_and_matches_the_exit_code() {
    let s = broken_setup().await;
    let out = doctor(&s.db.worker_url, &s.sandbox.base_url(), None, &["--json"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("--json prints valid JSON ({e}):\n{}", out.stdout));
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["verdict"], "problems");
    assert!(v["database"].as_str().unwrap().starts_with("postgres://"));
    let checks = v["checks"].as_array().expect("checks array");
    let status_of = |id: &str| {
        checks
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("check {id} in {checks:#?}"))["status"]
            .clone()
    };
    assert_eq!(status_of("database.connection"), "ok");
    assert_eq!(status_of("keys.ring"), "problem");
    assert_eq!(status_of("pixels.api.2"), "problem");
    assert_eq!(status_of("pixels.default"), "warning");
    assert_eq!(status_of("campaigns.without_pixel"), "problem");
    assert_eq!(status_of("stage_events.3.1"), "problem");
    assert_eq!(status_of("stage_events.4.value"), "problem");
    assert_eq!(status_of("stage_events.config_problems"), "problem");
    assert_eq!(status_of("queue.parked"), "problem");
    for c in checks {
        for key in ["group", "id", "title", "status", "found", "fix"] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
        let has_fix = !c["fix"].is_null();
        let fine = matches!(c["status"].as_str(), Some("ok" | "skipped"));
        assert_eq!(
            has_fix, !fine,
            "only problems and warnings carry a fix: {c}"
        );
    }
    let problems = checks.iter().filter(|c| c["status"] == "problem").count();
    assert_eq!(v["summary"]["problems"], problems);
}

#[tokio::test]
async fn the_doctor_warns_when_autovacuum_is_off_or_stagecasts_tables_are_not_vacuumed() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // Autovacuum off for the queue (this server has it off altogether; the test must not
    // depend on that), and 6,000 dead rows in it with no worker running to vacuum them (as the
    // superuser: setup no role of a deployment does).
    s.exec(
        "ALTER TABLE stagecast.jobs SET (autovacuum_enabled = false);
         INSERT INTO stagecast.jobs (kind, payload) SELECT 'stage_change', '{}' FROM generate_series(1, 6000);
         DELETE FROM stagecast.jobs;",
    )
    .await;
    // And a table the worker's role may no longer vacuum (handed back to the owner).
    s.exec(&format!(
        "ALTER TABLE stagecast.deliveries OWNER TO \"{}\"",
        s.db.roles.owner
    ))
    .await;
    // The deletes reach pg_stat_user_tables within seconds.
    wait::wait_for_value(
        "the dead rows of stagecast.jobs to show in the statistics (the value is n_dead_tup)",
        wait::DEADLINE,
        || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = 'stagecast' AND relname = 'jobs'",
            )
            .fetch_one(s.pool())
            .await
            .unwrap()
        },
        |dead| *dead > 5000,
    )
    .await;

    let out = doctor(&s.db.worker_url, &s.sandbox.base_url(), Some(KEYS), &[]).await;
    // Warnings: it works today, and will bite later.
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let o = &out.stdout;
    assert_check(
        o,
        "!",
        "Autovacuum: does not run for ",
        Some("ALTER SYSTEM SET autovacuum = on"),
    );
    assert!(
        o.lines()
            .any(|l| l.contains("Autovacuum: does not run for ") && l.contains("stagecast.jobs")),
        "{o}"
    );
    assert_check(
        o,
        "!",
        "Dead rows: vacuum is behind: stagecast.jobs: ",
        Some("within one maintenance tick"),
    );
    assert!(o.contains("(threshold 5000), never vacuumed"), "{o}");
    assert_check(
        o,
        "!",
        "Vacuum rights: the role in DATABASE_URL may not VACUUM stagecast.deliveries",
        Some("stagecast roles apply --worker"),
    );

    // A worker running as that role vacuums the queue; the doctor then finds it lean.
    let worker = s.start_worker();
    wait::wait_for_value(
        "the worker to vacuum the queue (the value is the doctor's report)",
        wait::DEADLINE,
        || async {
            doctor(&s.db.worker_url, &s.sandbox.base_url(), Some(KEYS), &[])
                .await
                .stdout
        },
        |stdout| stdout.contains("✓ Dead rows: under autovacuum's threshold"),
    )
    .await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unmigrated_database_is_reported_and_migrate_fixes_it() {
    let s = Stack::new().await;
    // One migration missing, as after deploying a new version without migrating (the superuser
    // edits sqlx's record to get there).
    let newest: i64 = sqlx::query_scalar(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations) RETURNING version",
    )
    .fetch_one(s.pool())
    .await
    .unwrap();
    // The doctor runs with the worker's DATABASE_URL, which cannot migrate: the fix says whose
    // job it is, and that the grants follow every migrate.
    let owners_fix = "then `stagecast roles apply`, with the owner role's DATABASE_URL";
    let out = doctor(&s.db.worker_url, &s.sandbox.base_url(), Some(KEYS), &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert_check(
        &out.stdout,
        "✗",
        &format!("pending: {newest} "),
        Some("run `stagecast migrate`"),
    );
    assert_check(
        &out.stdout,
        "✗",
        &format!("pending: {newest} "),
        Some(owners_fix),
    );

    // A CRM database stagecast was never installed in (the superuser removes it).
    s.exec("DROP SCHEMA stagecast CASCADE; DROP TABLE _sqlx_migrations;")
        .await;
    let out = doctor(&s.db.worker_url, &s.sandbox.base_url(), Some(KEYS), &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert_check(
        &out.stdout,
        "✗",
        "Migrations: the database was never migrated",
        Some("run `stagecast migrate`"),
    );
    assert_check(
        &out.stdout,
        "✗",
        "Migrations: the database was never migrated",
        Some(owners_fix),
    );
    assert_check(
        &out.stdout,
        "-",
        "Queue: not checked: the database was never migrated",
        None,
    );

    // Following the fix makes the doctor happy (apart from the empty CRM's warnings): migrate
    // and apply the grants as the owner, as docs/operations.md says to after every migrate.
    let migrate = support::process::stagecast()
        .arg("migrate")
        .env("DATABASE_URL", &s.db.owner_url)
        .output()
        .await
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let r = &s.db.roles;
    let grants = support::process::stagecast()
        .args(["roles", "apply", "--worker", &r.worker, "--crm", &r.crm])
        .args(["--admin", &r.admin])
        .env("DATABASE_URL", &s.db.owner_url)
        .output()
        .await
        .unwrap();
    assert!(
        grants.status.success(),
        "{}",
        String::from_utf8_lossy(&grants.stderr)
    );
    let out = doctor(&s.db.worker_url, &s.sandbox.base_url(), Some(KEYS), &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert_check(&out.stdout, "✓", "Migrations: all", None);
}

#[tokio::test]
async fn an_unreachable_database_exits_2_with_a_clear_message() {
    let url = "postgres://stagecast:hunter2secret@127.0.0.1:1/crm";
    let out = doctor(url, "http://127.0.0.1:1", Some(KEYS), &[]).await;
    assert_eq!(out.code, Some(2), "{}\n{}", out.stdout, out.stderr);
    assert_check(
        &out.stdout,
        "✗",
        "Connection: cannot connect to postgres://stagecast:***@127.0.0.1:1/crm",
        Some("check DATABASE_URL"),
    );
    assert!(
        out.stdout.contains("the database cannot be reached."),
        "{}",
        out.stdout
    );
    // Checks that need no database still run.
    assert_check(&out.stdout, "✓", "STAGECAST_KEYS: 1 key(s)", None);

    let json = doctor(url, "http://127.0.0.1:1", None, &["--json"]).await;
    assert_eq!(json.code, Some(2));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("valid JSON");
    assert_eq!(v["verdict"], "database_unreachable");
    assert_eq!(v["exit_code"], 2);
}

#[tokio::test]
async fn whatsapp_datasets_test_event_codes_and_old_click_ids_are_checked() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // Pixel 1: the dataset linked to its WABA, but still sending with a test code. Pixel 2: its
    // WABA has another dataset. Pixel 3: its WABA has none.
    s.sandbox.link_waba("555000111", PIXEL, TOKEN);
    s.sandbox.add_pixel("5555666677778888", TOKEN);
    s.sandbox.link_waba("555000222", "4444333322221111", TOKEN);
    s.sandbox.add_pixel("7777666655554444", TOKEN);
    sqlx::query(
        "UPDATE pixels SET waba_id = '555000111', test_event_code = 'TEST42', \
           limited_data_use = true, ldu_country = 0, ldu_state = 1000 WHERE id = 1;",
    )
    .execute(s.crm())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO pixels (id, platform, name, pixel_id, access_token_enc, active, waba_id) VALUES \
           (2, 'facebook', 'Loja', '5555666677778888', $1, true, '555000222'), \
           (3, 'facebook', 'Outra', '7777666655554444', $1, true, '555000333')",
    )
    .bind(s.keys.seal(TOKEN))
    .execute(s.crm())
    .await
    .unwrap();
    // A click-to-WhatsApp click ten days ago, an fbclid captured 100 days ago, and fresh ones.
    s.crm_exec(
        "INSERT INTO customers (id, name, utm_metadata, fbclid, fbclid_at) VALUES
           (1, 'Old click', jsonb_build_object('ctwa_clid', 'Aff-old', 'clicked_at',
                to_char((now() - interval '10 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')),
              'IwARold', now() - interval '100 days'),
           (2, 'New click', jsonb_build_object('ctwa_clid', 'Aff-new', 'clicked_at',
                to_char((now() - interval '1 day') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')),
              'IwARnew', now() - interval '1 day');",
    )
    .await;
    let out = doctor(&s.db.worker_url, &s.sandbox.base_url(), Some(KEYS), &[]).await;
    let o = &out.stdout;
    assert_eq!(
        out.code,
        Some(1),
        "two pixels are problems:\n{o}\n{}",
        out.stderr
    );
    assert_check(
        o,
        "✓",
        "(id 1): the Graph API accepts its token for this pixel, the dataset linked to WhatsApp Business Account 555000111",
        None,
    );
    assert_check(
        o,
        "✗",
        "(id 2): pixel 5555666677778888 is not the dataset linked to WhatsApp Business Account 555000222 (Meta says 4444333322221111)",
        Some("set pixels.pixel_id to 4444333322221111, or correct pixels.waba_id"),
    );
    assert_check(
        o,
        "✗",
        "(id 3): WhatsApp Business Account 555000333 has no dataset linked",
        Some("POST /555000333/dataset"),
    );
    assert_check(
        o,
        "!",
        "Test event codes: 1 active pixel(s) send with a test_event_code (pixel 1111222233334444 \"Main\" (id 1))",
        Some("UPDATE pixels SET test_event_code = NULL"),
    );
    assert_check(
        o,
        "!",
        "Stored click ids: 1 customer(s) have a ctwa_clid from a click more than 7 days ago; 1 customer(s) have an fbclid captured more than 90 days ago",
        Some("send stage changes promptly"),
    );
    assert_check(
        o,
        "!",
        "Pixel options: pixel 1111222233334444 \"Main\" (id 1): Limited Data Use with ldu_country 0, ldu_state 1000: ldu_state must be 0 when ldu_country is 0",
        Some("Limited Data Use and opt-out"),
    );
}

#[tokio::test]
async fn website_pixels_and_values_that_cannot_be_sent_are_reported() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.crm_exec(
        r#"
        UPDATE pixels SET action_source = 'website' WHERE id = 1;
        INSERT INTO crm_stages (id, name, utm_event) VALUES
          (3, 'Venda enorme', '[{"platform":"facebook","event_name":"Purchase","value":1e308}]');
        "#,
    )
    .await;
    let out = doctor(&s.db.worker_url, &s.sandbox.base_url(), Some(KEYS), &[]).await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert_check(
        &out.stdout,
        "✗",
        &format!("Pixel {PIXEL} \"Main\" (id 1): uses action_source website"),
        Some("set pixels.action_source"),
    );
    assert_check(
        &out.stdout,
        "✗",
        "entry 1: value 1e+308 is not a number from 0 to 1000000000",
        None,
    );
}

#[tokio::test]
async fn google_ads_credentials_are_checked_by_a_token_exchange() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.seed_google().await;
    let google = |token_url: String| {
        vec![
            ("STAGECAST_GOOGLE_ADS_BASE_URL", s.google.base_url()),
            ("STAGECAST_GOOGLE_ADS_TOKEN_URL", token_url),
            (
                "STAGECAST_GOOGLE_ADS_CLIENT_ID",
                GOOGLE_CLIENT_ID.to_string(),
            ),
            (
                "STAGECAST_GOOGLE_ADS_CLIENT_SECRET",
                GOOGLE_CLIENT_SECRET.to_string(),
            ),
        ]
    };
    let run = |env: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            doctor_with(
                &s.db.worker_url,
                &s.sandbox.base_url(),
                Some(KEYS),
                &[],
                &env,
            )
            .await
        }
    };
    const TITLE: &str = "Pixel 123-456-7890 \"Google Ads - Venda\" (id 3)";

    let ok = run(google(s.google.token_url())).await;
    assert_eq!(ok.code, Some(0), "{}\n{}", ok.stdout, ok.stderr);
    assert_check(
        &ok.stdout,
        "✓",
        &format!(
            "{TITLE}: the token endpoint {} issued an access token",
            s.google.token_url()
        ),
        None,
    );
    assert_eq!(s.google.token_requests(), 1, "one token exchange");
    assert!(s.google.requests().is_empty(), "nothing uploaded");

    // The refresh token revoked: a problem naming invalid_grant and the fix.
    s.google.revoke_refresh_token(GOOGLE_REFRESH);
    let revoked = run(google(s.google.token_url())).await;
    assert_eq!(revoked.code, Some(1), "{}", revoked.stdout);
    assert_check(
        &revoked.stdout,
        "✗",
        &format!("{TITLE}: Google refused the refresh token (invalid_grant)"),
        Some("stagecast pixel set-token"),
    );

    // The token endpoint out of reach.
    let unreachable = run(google("http://127.0.0.1:1/token".into())).await;
    assert_eq!(unreachable.code, Some(1), "{}", unreachable.stdout);
    assert_check(
        &unreachable.stdout,
        "✗",
        &format!("{TITLE}: cannot reach the Google token endpoint at http://127.0.0.1:1/token"),
        Some("STAGECAST_GOOGLE_ADS_TOKEN_URL"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_are_listed_alive_or_dead_with_the_jobs_each_runs() {
    let s = Stack::new().await;
    s.seed_standard().await;
    // A worker killed without a trace: registered, its lock gone with its session, one job of
    // its still leased.
    let dead = "deadhost-4242-0badc0de";
    s.exec(&format!(
        "INSERT INTO stagecast.workers (worker_id) VALUES ('{dead}');
         INSERT INTO stagecast.jobs (kind, payload, status, attempts, locked_by, locked_until)
         VALUES ('stage_change', '{{}}', 'running', 1, '{dead}', now() + interval '1 hour')"
    ))
    .await;
    // The live worker would release the dead one's job (and forget it) after the grace: not
    // within this test.
    let mut t = s.tuning();
    t.worker.rescue_grace = std::time::Duration::from_secs(3600);
    let worker = s.start_worker_with(t);
    let live = worker.worker_id().to_string();
    // Its one request is held in flight: its job stays running.
    s.sandbox.hold_answers();
    s.customer(1, "a@example.com", "+5511999990001", None).await;
    s.move_to(1, 1).await;
    wait::wait_until("the live worker runs its job", wait::DEADLINE, || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM stagecast.jobs WHERE status = 'running' AND locked_by = $1",
        )
        .bind(&live)
        .fetch_one(s.pool())
        .await
        .unwrap()
            == 1
    })
    .await;

    let out = doctor(&s.db.worker_url, &s.sandbox.base_url(), Some(KEYS), &[]).await;
    let o = &out.stdout;
    assert_eq!(
        out.code,
        Some(0),
        "a dead worker is a warning\n{o}\n{}",
        out.stderr
    );
    assert_check(o, "✓", "Workers: 1 alive, 1 dead", None);
    assert_check(
        o,
        "✓",
        &format!("Worker {live}: alive (holds its liveness lock); started "),
        None,
    );
    assert_check(o, "✓", "ago, 1 job(s) running", None);
    assert_check(
        o,
        "!",
        &format!("Worker {dead}: dead: its liveness lock is not held"),
        Some("a live worker releases its jobs"),
    );

    let json = doctor(
        &s.db.worker_url,
        &s.sandbox.base_url(),
        Some(KEYS),
        &["--json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let ids: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(
        ids.contains(&format!("queue.worker.{live}").as_str()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&format!("queue.worker.{dead}").as_str()),
        "{ids:?}"
    );

    s.sandbox.release_answers();
    worker.shutdown().await.unwrap();
}
