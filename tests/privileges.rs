//! Least privilege (issue 12): the roles of a deployment (sql/roles/, `stagecast roles`), no
//! escalation through SECURITY DEFINER functions (finding 3), and CRM writes that never depend
//! on stagecast's privileges (finding 4). Every TestDb is set up with those roles and under the
//! usual hardening (functions the owner creates are not executable by PUBLIC).

mod support;

use sqlx::{Connection as _, PgPool};
use support::stack::Stack;
use support::TestDb;

/// The SQLSTATE of a failed statement.
fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
}

/// Functions a CRM role with CREATE on public can plant so that they beat a built-in with an
/// exact argument-type match (the built-ins are polymorphic or variadic "any"), each recording
/// who ran it. Together they shadow what the trigger and enqueue bodies call: cardinality,
/// array_agg, to_jsonb, jsonb_build_array and the text || bigint concatenation of the dedup keys.
const SHADOWS: &str = r#"
CREATE TABLE public.pwned (who text, login text, via text);
GRANT INSERT ON public.pwned TO PUBLIC;
CREATE FUNCTION public.pwn(p_via text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pwned VALUES (current_user, session_user, p_via);
    -- What the finding's reproduction did; it succeeds only if this runs as a superuser.
    BEGIN
        EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
END $$;
CREATE FUNCTION public.cardinality(bigint[]) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN PERFORM public.pwn('cardinality'); RETURN pg_catalog.cardinality($1); END $$;
CREATE FUNCTION public.evil_append(bigint[], bigint) RETURNS bigint[] LANGUAGE plpgsql AS $$
BEGIN PERFORM public.pwn('array_agg'); RETURN pg_catalog.array_append($1, $2); END $$;
CREATE AGGREGATE public.array_agg(bigint) (sfunc = public.evil_append, stype = bigint[]);
CREATE FUNCTION public.to_jsonb(bigint[]) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM public.pwn('to_jsonb'); RETURN pg_catalog.to_jsonb($1); END $$;
CREATE FUNCTION public.jsonb_build_array(jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM public.pwn('jsonb_build_array'); RETURN pg_catalog.jsonb_build_array($1); END $$;
CREATE FUNCTION public.evil_concat(text, bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.pwn('||'); RETURN $1 OPERATOR(pg_catalog.||) $2::text; END $$;
CREATE OPERATOR public.|| (leftarg = text, rightarg = bigint, function = public.evil_concat);
"#;

#[tokio::test]
async fn a_crm_role_with_create_on_public_cannot_run_code_as_the_owner_through_the_triggers() {
    let s = Stack::new().await;
    s.seed_standard().await;
    s.customer(1, "maria@example.com", "+55 11 98765-4321", Some(100.0))
        .await;
    s.customer(2, "joao@example.com", "+55 11 91234-5678", Some(50.0))
        .await;
    let crm = &s.db.roles.crm;
    // The finding's setup: the CRM's role may create objects in public (its own schema, or a
    // server upgraded from before PostgreSQL 15).
    s.exec(&format!("GRANT CREATE ON SCHEMA public TO \"{crm}\""))
        .await;
    s.crm_exec(SHADOWS).await;

    // The shadows are real: in the CRM's own session each one beats the built-in.
    s.crm_exec(
        "SELECT cardinality(ARRAY[1::bigint]), array_agg(x), to_jsonb(ARRAY[1::bigint]),
                jsonb_build_array('{}'::jsonb), 'k:' || 1::bigint
           FROM (VALUES (1::bigint)) v(x)",
    )
    .await;
    let planted: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT via FROM public.pwned ORDER BY via")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(
        planted,
        [
            "array_agg",
            "cardinality",
            "jsonb_build_array",
            "to_jsonb",
            "||"
        ],
        "each shadow must win in a session whose search_path includes public"
    );
    s.exec("TRUNCATE public.pwned").await;

    // Everything a CRM does that fires stagecast's SECURITY DEFINER triggers.
    s.move_to(1, 1).await; // one change: stage_change job, dedup key text || bigint
    s.crm_exec("UPDATE customers SET stage_id = 2 WHERE id IN (1, 2)") // bulk: to_jsonb
        .await;
    s.crm_exec("INSERT INTO customers (id, name, stage_id) VALUES (3, 'Ana', 1), (4, 'Rui', 2)")
        .await;
    s.crm_exec(
        r#"INSERT INTO chat_messages (chat_id, direction, body, metadata)
           SELECT id, 'inbound', 'oi', '{"referral": {"source_id": "120226305854810726"}}' FROM chats WHERE customer_id = 1;
           UPDATE chat_messages SET metadata = '{"referral": {"source_id": "1", "ctwa_clid": "x"}}' WHERE direction = 'inbound';
           INSERT INTO crm_stages (id, name, utm_event) VALUES (5, 'Legado', '{"event_name": "Lead"}');
           INSERT INTO crm_stages (id, name, utm_event) VALUES (6, 'Quebrado', '["not an object"]');"#,
    )
    .await;

    let ran: Vec<(String, String, String)> =
        sqlx::query_as("SELECT DISTINCT who, login, via FROM public.pwned ORDER BY via")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(
        ran,
        [],
        "the triggers called code a CRM role planted in public (who ran it, login, what)"
    );
    let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = $1")
        .bind(crm)
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert!(!superuser, "the CRM role made itself a superuser");

    // And the triggers still did their job.
    let jobs = scalar_i64(
        s.pool(),
        "SELECT count(*) FROM stagecast.jobs WHERE kind IN ('stage_change', 'stage_change_batch', 'attribution')",
    )
    .await;
    // The metadata update of a message whose attribution job is still pending is the same fact.
    assert_eq!(jobs, 4, "1 change, 2 bulk batches, 1 attribution job");
    let parked = scalar_i64(s.pool(), "SELECT count(*) FROM stagecast.enqueue_failures").await;
    assert_eq!(parked, 0);
    let legacy: String = sqlx::query_scalar("SELECT utm_event::text FROM crm_stages WHERE id = 5")
        .fetch_one(s.pool())
        .await
        .unwrap();
    assert_eq!(legacy, r#"[{"event_name": "Lead"}]"#);
    let problems = scalar_i64(
        s.pool(),
        "SELECT count(*) FROM stagecast.config_problems WHERE row_id = 6",
    )
    .await;
    assert_eq!(problems, 1);

    // The worker runs its own statements as its role, with the default search_path: it must
    // not pick up the shadows either (it would run them with its access to the queue).
    let worker = s.start_worker();
    s.drained().await;
    worker.shutdown().await.unwrap();
    let ran: Vec<(String, String)> =
        sqlx::query_as("SELECT DISTINCT who, via FROM public.pwned ORDER BY via")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(ran, [], "the worker ran code a CRM role planted in public");
}

/// A database migrated by a superuser with no hardening at all: the default privileges give
/// PUBLIC EXECUTE on every new function, so only the migrations can take it back.
struct PlainDb {
    name: String,
    pool: PgPool,
}

impl PlainDb {
    async fn new() -> PlainDb {
        let server = support::server().await;
        let name = format!(
            "{}{}_plain_{:08x}",
            support::TEST_DB_PREFIX,
            std::process::id(),
            rand::random::<u32>()
        );
        let url = server
            .create_database(&name)
            .await
            .expect("create database");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy(&url)
            .unwrap();
        let db = PlainDb { name, pool };
        stagecast::store::MIGRATOR
            .run(&db.pool)
            .await
            .expect("migrate as a superuser");
        db
    }
}

impl Drop for PlainDb {
    fn drop(&mut self) {
        let _closing = self.pool.close();
        let name = std::mem::take(&mut self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let server = support::server().await;
                if let Err(e) = server.drop_database(&name).await {
                    eprintln!("warning: could not drop {name}: {e}");
                }
            });
        })
        .join();
    }
}

/// The rule for every SECURITY DEFINER function of schema stagecast, whichever migration
/// defines it: exactly `search_path = pg_catalog, pg_temp`, and no EXECUTE for PUBLIC.
#[tokio::test]
async fn every_security_definer_function_pins_its_search_path_and_is_not_public() {
    let db = PlainDb::new().await;
    let functions: Vec<(String, Vec<String>, bool)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text,
                coalesce(array(SELECT c FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%'), '{}'),
                p.proacl IS NULL
                  OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
                              WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
           FROM pg_proc p
          WHERE p.pronamespace = 'stagecast'::regnamespace AND p.prosecdef
          ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        functions.len() >= 16,
        "expected every trigger, enqueue, adapter and admin function: {functions:?}"
    );
    let wrong: Vec<String> = functions
        .iter()
        .filter(|(_, path, public)| {
            path.as_slice() != ["search_path=pg_catalog, pg_temp"] || *public
        })
        .map(|(f, path, public)| format!("{f}: {path:?}, PUBLIC may execute: {public}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "SECURITY DEFINER functions must SET search_path = pg_catalog, pg_temp and REVOKE EXECUTE FROM PUBLIC:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn crm_writes_do_not_depend_on_stagecast_function_privileges() {
    let s = Stack::new().await;
    let crm = &s.db.roles.crm;
    // The hardening the finding was found under, both ways: the default privileges of every
    // TestDb (functions the owner creates are not executable by PUBLIC), and taking EXECUTE
    // from PUBLIC afterwards on everything in the schema.
    let hardened = scalar_i64(
        s.pool(),
        "SELECT count(*) FROM pg_default_acl WHERE defaclobjtype = 'f'",
    )
    .await;
    assert_eq!(hardened, 1, "the TestDb's default privileges are missing");
    s.exec("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA stagecast FROM PUBLIC")
        .await;
    let (usage, execute): (bool, bool) = sqlx::query_as(
        "SELECT has_schema_privilege($1, 'stagecast', 'USAGE'),
                has_function_privilege($1, 'stagecast.phone_digits(text)', 'EXECUTE')",
    )
    .bind(crm)
    .fetch_one(s.pool())
    .await
    .unwrap();
    assert!(
        !usage && !execute,
        "the CRM role must hold nothing on stagecast"
    );

    // The CRM's whole write path, as its role.
    s.seed_standard().await; // pixels, campaigns, stages (arrays)
    s.customer(1, "maria@example.com", "+55 11 98765-4321", Some(100.0))
        .await;
    s.customer(2, "joao@example.com", "(11) 91234-5678", None)
        .await;
    s.crm_exec(
        r#"
        INSERT INTO customer_contacts (customer_id, kind, value, is_primary) VALUES
            (1, 'whatsapp', '5511987654321@s.whatsapp.net', true), (2, 'email', 'j@example.com', false);
        UPDATE customer_contacts SET value = '5511912345678:3@s.whatsapp.net' WHERE customer_id = 2;
        UPDATE customers SET phone = '+55 21 99999-0000' WHERE id = 2;
        INSERT INTO customers (id, name, phone, stage_id) VALUES (3, 'Ana', '11 95555-4444', 1);
        UPDATE customers SET stage_id = 1 WHERE id = 1;
        UPDATE customers SET stage_id = 2 WHERE id IN (1, 2);
        INSERT INTO chat_messages (chat_id, direction, body, metadata)
        SELECT id, 'inbound', 'oi', '{"referral": {"source_id": "120226305854810726"}}' FROM chats WHERE customer_id = 1;
        UPDATE chat_messages SET metadata = '{"referral": {"source_id": "1"}}' WHERE direction = 'inbound';
        INSERT INTO crm_stages (id, name, utm_event) VALUES (5, 'Legado', '{"event_name": "Lead"}');
        INSERT INTO crm_stages (id, name, utm_event) VALUES (6, 'Quebrado', '"Lead"');
        UPDATE crm_stages SET utm_event = '[{"event_name": "Purchase"}]' WHERE id = 6;
        UPDATE crm_stages SET utm_event = NULL WHERE id = 5;
        INSERT INTO utm_campaigns (id, name, facebook_campaign_id) VALUES (2, 'Inverno', '999');
        UPDATE pixels SET access_token = 'EAAplaintext-token' WHERE id = 1;
        INSERT INTO pixels (id, platform, pixel_id, active) VALUES (2, 'facebook', '5555', false);
        DELETE FROM customer_contacts WHERE customer_id = 2;
        "#,
    )
    .await;

    // Nothing was parked or lost on the way: the triggers did their work as the owner.
    let parked = scalar_i64(s.pool(), "SELECT count(*) FROM stagecast.enqueue_failures").await;
    assert_eq!(parked, 0, "a trigger hit an error and parked the change");
    let jobs: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, count(*) FROM stagecast.jobs GROUP BY kind ORDER BY kind")
            .fetch_all(s.pool())
            .await
            .unwrap();
    assert_eq!(
        jobs,
        [
            ("attribution".to_string(), 1),
            ("stage_change".to_string(), 2),
            ("stage_change_batch".to_string(), 1)
        ]
    );
    let problems = scalar_i64(
        s.pool(),
        "SELECT count(*) FROM stagecast.config_problems WHERE row_id = 6",
    )
    .await;
    assert_eq!(problems, 1, "the invalid utm_event was reported");
}

#[tokio::test]
async fn the_phone_lookup_uses_the_indexes_that_need_no_stagecast_function() {
    let db = TestDb::new().await;
    // Both indexes exist, are valid, and call only built-in functions.
    let indexes: Vec<(String, bool, String)> = sqlx::query_as(
        "SELECT c.relname::text, i.indisvalid, pg_get_indexdef(i.indexrelid)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE c.relname IN ('customers_phone_lookup_idx', 'customer_contacts_phone_lookup_idx',
                              'customers_phone_digits_idx', 'customer_contacts_phone_digits_idx')
          ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let names: Vec<&str> = indexes.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "customer_contacts_phone_lookup_idx",
            "customers_phone_lookup_idx"
        ],
        "the old indexes on stagecast.phone_digits are gone"
    );
    for (name, valid, def) in &indexes {
        assert!(valid, "{name} is invalid");
        assert!(!def.contains("stagecast."), "{name}: {def}");
    }
    // The worker's lookup (as the worker role, through the views) matches their expression:
    // with sequential scans priced out, a mismatch would still show a Seq Scan.
    let mut conn = db.worker_pool.acquire().await.unwrap();
    sqlx::raw_sql("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let sql = include_str!("../sql/find_customers_by_phone.sql");
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
        .bind(vec!["5511987654321".to_string()])
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = plan.join("\n");
    for index in [
        "customer_contacts_phone_lookup_idx",
        "customers_phone_lookup_idx",
    ] {
        assert!(plan.contains(index), "{index} not used:\n{plan}");
    }
    assert!(!plan.contains("Seq Scan"), "{plan}");
    // And the expression is stagecast.phone_digits, spelled out.
    let same: bool = sqlx::query_scalar(
        "SELECT bool_and(stagecast.phone_digits(v) IS NOT DISTINCT FROM
                         nullif(regexp_replace(split_part(split_part(v, '@', 1), ':', 1), '\\D', '', 'g'), ''))
           FROM unnest(ARRAY['5511987654321:12@s.whatsapp.net', '(11) 98765-4321', '', 'abc', NULL]) v",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(same);
}

#[tokio::test]
async fn the_worker_role_reaches_the_crm_only_through_the_views_and_adapter_functions() {
    let db = TestDb::new().await;
    let r = &db.roles;
    let attributes: (bool, bool, bool) = sqlx::query_as(
        "SELECT bool_or(rolsuper), bool_or(rolcreaterole), bool_or(rolcreatedb) FROM pg_roles WHERE rolname = ANY($1)",
    )
    .bind(vec![r.owner.clone(), r.worker.clone(), r.crm.clone(), r.admin.clone()])
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(attributes, (false, false, false), "no role is privileged");
    let whoami: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&db.worker_pool)
        .await
        .unwrap();
    assert_eq!(&whoami, &r.worker);

    // Allowed: the views, the queue.
    for sql in [
        "SELECT count(*) FROM stagecast.crm_customers",
        "SELECT count(*) FROM stagecast.crm_pixels",
        "SELECT count(*) FROM stagecast.jobs",
    ] {
        sqlx::query(sql)
            .execute(&db.worker_pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Refused: the CRM's tables directly, the admin functions, DDL in the schema, the views'
    // and functions' definitions.
    for sql in [
        "SELECT count(*) FROM public.customers",
        "UPDATE public.pixels SET access_token = NULL",
        "INSERT INTO public.chat_messages (chat_id, body) VALUES (1, 'x')",
        "SELECT stagecast.replay_jobs(p_actor => 'w', p_reason => 'x')",
        "SELECT stagecast.enqueue_stage_change(1, 1)",
        "CREATE TABLE stagecast.mine (id int)",
        "CREATE FUNCTION stagecast.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE OR REPLACE VIEW stagecast.crm_chats AS SELECT 1 AS id",
        "ALTER FUNCTION stagecast.write_chat_alert(bigint, text, jsonb) SECURITY INVOKER",
        "SELECT count(*) FROM stagecast.admin_audit",
    ] {
        let e = sqlx::query(sql)
            .execute(&db.worker_pool)
            .await
            .expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    // The CRM role holds nothing on the schema.
    let e = sqlx::query("SELECT count(*) FROM stagecast.jobs")
        .execute(&db.crm_pool)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
}

#[tokio::test]
async fn the_owner_keeps_migrating_the_tables_the_worker_owns() {
    let db = TestDb::new().await;
    // On PostgreSQL 16 and older the worker owns the tables it vacuums; a later migration, run
    // by the owner, must still be able to change them.
    let mut owner = sqlx::PgConnection::connect(&db.owner_url).await.unwrap();
    let mut tx = owner.begin().await.unwrap();
    sqlx::raw_sql(
        "ALTER TABLE stagecast.jobs ADD COLUMN probe integer;
         CREATE INDEX jobs_probe_idx ON stagecast.jobs (probe);
         ALTER TABLE stagecast.deliveries SET (autovacuum_vacuum_insert_scale_factor = 0.01);",
    )
    .execute(&mut *tx)
    .await
    .expect("the owner alters the worker's tables");
    tx.rollback().await.unwrap();
    // Re-applying the grants is a no-op, and the worker gained no CREATE on the schema from
    // the hand-over.
    let names = stagecast::roles::RoleNames {
        worker: db.roles.worker.clone(),
        crm: Some(db.roles.crm.clone()),
        admin: Some(db.roles.admin.clone()),
        ..Default::default()
    };
    stagecast::roles::apply_grants(&mut owner, &names)
        .await
        .expect("idempotent");
    let _ = owner.close().await;
    let create: bool = sqlx::query_scalar("SELECT has_schema_privilege($1, 'stagecast', 'CREATE')")
        .bind(&db.roles.worker)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!create);
}

#[tokio::test]
async fn stagecast_roles_prints_the_scripts_and_applies_the_owners_part() {
    let print = support::process::stagecast()
        .args([
            "roles",
            "print",
            "--database",
            "crm",
            "--owner",
            "stagecast_owner",
            "--worker",
            "stagecast_worker",
            "--crm",
            "crm_app",
            "--pg-major",
            "16",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        print.status.success(),
        "{}",
        String::from_utf8_lossy(&print.stderr)
    );
    let out = String::from_utf8(print.stdout).unwrap();
    for expected in [
        "-- ===== sql/roles/setup.sql: as a superuser, once, connected to database \"crm\" =====",
        "GRANT CREATE ON DATABASE \"crm\" TO \"stagecast_owner\";",
        "GRANT \"stagecast_worker\" TO \"stagecast_owner\";",
        "-- ===== sql/roles/worker.sql: as \"stagecast_owner\", after every `stagecast migrate`",
        "ALTER TABLE stagecast.jobs OWNER TO \"stagecast_worker\";",
        "TO \"crm_app\";",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(!out.contains(":\""), "an unfilled variable:\n{out}");

    // `apply` as the owner of a TestDb puts back what was taken.
    let db = TestDb::new().await;
    let r = &db.roles;
    sqlx::raw_sql(&format!(
        "REVOKE EXECUTE ON FUNCTION stagecast.replay_job(bigint, text, text) FROM \"{}\";
         REVOKE SELECT ON stagecast.crm_customers FROM \"{}\";",
        r.admin, r.worker
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    let apply = support::process::stagecast()
        .args(["roles", "apply", "--worker", &r.worker, "--admin", &r.admin])
        .env("DATABASE_URL", &db.owner_url)
        .output()
        .await
        .unwrap();
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    assert!(String::from_utf8_lossy(&apply.stdout).contains("applied sql/roles/admin.sql"));
    let granted: (bool, bool) = sqlx::query_as(
        "SELECT has_function_privilege($1, 'stagecast.replay_job(bigint, text, text)', 'EXECUTE'),
                has_table_privilege($2, 'stagecast.crm_customers', 'SELECT')",
    )
    .bind(&r.admin)
    .bind(&r.worker)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(granted, (true, true));

    // As a role that is not the owner, it fails with a message saying whose job it is.
    let refused = support::process::stagecast()
        .args(["roles", "apply", "--worker", &db.roles.worker])
        .env("DATABASE_URL", &db.crm_url)
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("as the role that ran `stagecast migrate`"),
        "{err}"
    );
}
