//! Tests of the test harness itself (`tests/support`): isolation, cleanup, migrations.

mod support;

use sqlx::Connection as _;
use support::{TestDb, TEST_DB_PREFIX};

async fn database_exists(name: &str) -> bool {
    let mut admin = sqlx::PgConnection::connect(support::server().await.admin_url())
        .await
        .expect("admin connection");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .expect("query pg_database");
    admin.close().await.ok();
    n > 0
}

#[tokio::test]
async fn two_test_dbs_are_distinct_and_isolated() {
    let a = TestDb::new().await;
    let b = TestDb::new().await;
    assert_ne!(a.name, b.name);
    let own_prefix = format!("{TEST_DB_PREFIX}{}_", std::process::id());
    assert!(a.name.starts_with(&own_prefix), "{}", a.name);
    assert!(b.name.starts_with(&own_prefix), "{}", b.name);

    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&a.pool)
        .await
        .unwrap();
    assert_eq!(current, a.name);

    sqlx::query("CREATE TABLE only_in_a (id int)")
        .execute(&a.pool)
        .await
        .unwrap();
    let in_a: Option<String> = sqlx::query_scalar("SELECT to_regclass('only_in_a')::text")
        .fetch_one(&a.pool)
        .await
        .unwrap();
    let in_b: Option<String> = sqlx::query_scalar("SELECT to_regclass('only_in_a')::text")
        .fetch_one(&b.pool)
        .await
        .unwrap();
    assert_eq!(in_a.as_deref(), Some("only_in_a"));
    assert_eq!(
        in_b, None,
        "a table created in one test database leaked into another"
    );
}

#[tokio::test]
async fn database_is_gone_after_drop() {
    let db = TestDb::new().await;
    let name = db.name.clone();
    // Hold a connection open, as a test that forgot to release one would: drop must still work.
    let held = db.pool.acquire().await.unwrap();
    assert!(database_exists(&name).await);
    drop(db);
    drop(held);
    assert!(
        !database_exists(&name).await,
        "{name} still exists after drop"
    );
}

#[tokio::test]
async fn migrations_ran() {
    let db = TestDb::new().await;
    let crm_stages: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public.crm_stages')::text")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(crm_stages.as_deref(), Some("crm_stages"));
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, stagecast::store::MIGRATOR.iter().count());
}

#[tokio::test]
async fn many_databases_in_parallel() {
    let dbs = futures_util::future::join_all((0..6).map(|_| TestDb::new())).await;
    let mut names: Vec<&str> = dbs.iter().map(|d| d.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 6);
    for db in &dbs {
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
}

#[tokio::test]
async fn leftovers_of_dead_processes_are_dropped_and_live_ones_kept() {
    let pg = support::server().await;
    // A PID that certainly belonged to a process that has exited (and been reaped).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    assert!(!support::pid_alive(dead_pid));

    let stale = format!("{TEST_DB_PREFIX}{dead_pid}_0_deadbeef");
    let live = format!("{TEST_DB_PREFIX}{}_999999_feedface", std::process::id());
    pg.create_database(&stale).await.unwrap();
    pg.create_database(&live).await.unwrap();

    let dropped = support::drop_stale_test_databases(pg).await;
    let stale_gone = !database_exists(&stale).await;
    let live_kept = database_exists(&live).await;
    // Clean up before asserting so a failure leaves nothing behind either.
    pg.drop_database(&stale).await.unwrap();
    pg.drop_database(&live).await.unwrap();

    assert!(stale_gone, "{stale} survived; dropped: {dropped:?}");
    assert!(dropped.contains(&stale));
    assert!(
        live_kept,
        "{live} belongs to this running process and must survive"
    );
}

async fn role_exists(name: &str) -> bool {
    let mut admin = sqlx::PgConnection::connect(support::server().await.admin_url())
        .await
        .expect("admin connection");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .expect("query pg_roles");
    admin.close().await.ok();
    n > 0
}

#[tokio::test]
async fn each_database_has_its_own_roles_and_the_pools_log_in_as_them() {
    let db = TestDb::new().await;
    let r = &db.roles;
    for (pool, role) in [
        (&db.worker_pool, &r.worker),
        (&db.crm_pool, &r.crm),
        (&db.admin_pool, &r.admin),
    ] {
        let (user, superuser): (String, bool) = sqlx::query_as(
            "SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(&user, role);
        assert!(!superuser, "{role} must not be a superuser");
    }
    let owner: String = sqlx::query_scalar(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'stagecast'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(owner, r.owner, "the owner role ran the migrations");
    // The worker's pool pins its search_path, as `stagecast run` does.
    let path: String = sqlx::query_scalar("SHOW search_path")
        .fetch_one(&db.worker_pool)
        .await
        .unwrap();
    assert_eq!(path, "pg_catalog, pg_temp");
}

#[tokio::test]
async fn an_unmigrated_database_has_its_roles_and_setup_but_nothing_migrated_or_granted() {
    let db = TestDb::unmigrated().await;
    let r = &db.roles;
    let (roles, schema, migrations, owner_may_create): (i64, bool, bool, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)),
                EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'stagecast'),
                to_regclass('public._sqlx_migrations') IS NOT NULL,
                has_database_privilege($2, current_database(), 'CREATE')",
    )
    .bind(vec![
        r.owner.clone(),
        r.worker.clone(),
        r.crm.clone(),
        r.admin.clone(),
    ])
    .bind(&r.owner)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(roles, 4, "the four roles exist");
    assert!(owner_may_create, "sql/roles/setup.sql ran");
    assert!(!schema && !migrations, "nothing is migrated");
    // The owner can migrate it, as `stagecast migrate` would.
    let mut owner = sqlx::PgConnection::connect(&db.owner_url).await.unwrap();
    stagecast::store::MIGRATOR
        .run(&mut owner)
        .await
        .expect("the owner migrates");
    let _ = owner.close().await;
}

#[tokio::test]
async fn roles_are_dropped_with_the_database_even_when_the_test_panics() {
    use futures_util::FutureExt as _;
    let names = std::sync::Mutex::new(Vec::<String>::new());
    let failed = std::panic::AssertUnwindSafe(async {
        let db = TestDb::new().await;
        *names.lock().unwrap() = vec![
            db.roles.owner.clone(),
            db.roles.worker.clone(),
            db.roles.crm.clone(),
            db.roles.admin.clone(),
        ];
        panic!("a failing test");
    })
    .catch_unwind()
    .await;
    assert!(failed.is_err(), "the test panicked");
    let names = names.lock().unwrap().clone();
    assert_eq!(names.len(), 4);
    for role in &names {
        assert!(!role_exists(role).await, "{role} survived a panicking test");
    }
}

#[tokio::test]
async fn roles_of_dead_processes_are_dropped_and_live_ones_kept() {
    let pg = support::server().await;
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let stale = format!("{TEST_DB_PREFIX}{dead_pid}_0_deadbeef_worker");
    let live = format!(
        "{TEST_DB_PREFIX}{}_999999_feedface_worker",
        std::process::id()
    );
    let mut admin = sqlx::PgConnection::connect(pg.admin_url()).await.unwrap();
    for role in [&stale, &live] {
        sqlx::raw_sql(&format!("CREATE ROLE \"{role}\" NOLOGIN"))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let dropped = support::drop_stale_test_databases(pg).await;
    let stale_gone = !role_exists(&stale).await;
    let live_kept = role_exists(&live).await;
    for role in [&stale, &live] {
        let _ = sqlx::raw_sql(&format!("DROP ROLE IF EXISTS \"{role}\""))
            .execute(&mut admin)
            .await;
    }
    admin.close().await.ok();
    assert!(stale_gone, "{stale} survived; dropped: {dropped:?}");
    assert!(dropped.contains(&stale));
    assert!(live_kept, "{live} belongs to this running process");
}
