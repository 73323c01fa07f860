//! Shared test harness: one PostgreSQL per test process, one fresh database per test.
//!
//! Integration tests use it with `mod support;`. See `docs/testing.md`.
//!
//! Statics hold only the `LocalPostgres` (URLs plus, for a throwaway cluster, its guard),
//! never a pool: `#[tokio::test]` gives every test its own runtime, and a pool's connections
//! die with the runtime that opened them.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgPool};
use stagecast::local_pg::{FindOptions, LocalPostgres};

/// Every test database's name starts with this, followed by `<pid>_<counter>_<random>`.
pub const TEST_DB_PREFIX: &str = "stagecast_test_";

/// Per-test pools stay small: a test binary runs one test per core at once, several binaries
/// may share a server (nextest), and `max_connections` is 100 on a stock install.
const POOL_MAX_CONNECTIONS: u32 = 5;

static SERVER: tokio::sync::OnceCell<Result<LocalPostgres, String>> =
    tokio::sync::OnceCell::const_new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The process-wide server: `DATABASE_URL`, else a running local server, else a throwaway
/// cluster (removed by its watchdog when this process exits, since statics are never dropped).
/// Panics with the actionable `LocalPgError` message when there is none.
pub async fn server() -> &'static LocalPostgres {
    let result = SERVER
        .get_or_init(|| async {
            let pg = LocalPostgres::find_or_start(FindOptions::from_env())
                .await
                .map_err(|e| e.to_string())?;
            drop_stale_test_databases(&pg).await;
            Ok(pg)
        })
        .await;
    match result {
        Ok(pg) => pg,
        Err(message) => panic!("no PostgreSQL for the tests: {message}"),
    }
}

/// Whether a process with this PID is running here (zombies count as gone).
pub fn pid_alive(pid: u32) -> bool {
    if std::path::Path::new("/proc/self").exists() {
        return match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name, which may itself hold ')'.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        };
    }
    // `ps -p` rather than `kill -0`: the latter fails with EPERM for other users' processes.
    std::process::Command::new("ps")
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the server is on this machine, so that PIDs in database names refer to our PIDs.
fn server_is_local(pg: &LocalPostgres) -> bool {
    use std::str::FromStr as _;
    let Ok(options) = sqlx::postgres::PgConnectOptions::from_str(pg.admin_url()) else {
        return false;
    };
    options.get_socket().is_some()
        || matches!(
            options.get_host(),
            "127.0.0.1" | "localhost" | "::1" | "[::1]"
        )
}

/// Crash cleanup: drops `stagecast_test_<pid>_…` databases, then roles, left behind by test
/// processes that were killed before their `TestDb`s could drop them.
///
/// Guard rails, because other processes may be using the same server right now:
/// - only on a local server (a PID means nothing on another machine's server);
/// - only when that PID is not running;
/// - plain `DROP DATABASE`, without FORCE, so a database someone is connected to survives.
pub async fn drop_stale_test_databases(pg: &LocalPostgres) -> Vec<String> {
    let mut dropped = Vec::new();
    if !server_is_local(pg) {
        return dropped;
    }
    let Ok(mut conn) = sqlx::PgConnection::connect(pg.admin_url()).await else {
        return dropped;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(TEST_DB_PREFIX)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for name in names {
        let Some(pid) = pid_of(&name) else { continue };
        if pid_alive(pid) {
            continue;
        }
        let sql = format!("DROP DATABASE IF EXISTS \"{}\"", name.replace('"', "\"\""));
        if sqlx::raw_sql(&sql).execute(&mut conn).await.is_ok() {
            dropped.push(name);
        }
    }
    // Then their roles (`<database>_owner` …): a role whose database survived (someone is
    // connected to it) still owns objects there, so its DROP ROLE fails and it stays too.
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname, $1)")
            .bind(TEST_DB_PREFIX)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for role in roles {
        let Some(pid) = pid_of(&role) else { continue };
        if pid_alive(pid) {
            continue;
        }
        let sql = format!(
            "DROP ROLE IF EXISTS {}",
            stagecast::roles::quote_ident(&role)
        );
        if sqlx::raw_sql(&sql).execute(&mut conn).await.is_ok() {
            dropped.push(role);
        }
    }
    let _ = conn.close().await;
    dropped
}

/// The PID in a `stagecast_test_<pid>_…` database or role name.
fn pid_of(name: &str) -> Option<u32> {
    name.strip_prefix(TEST_DB_PREFIX)
        .and_then(|rest| rest.split('_').next())
        .and_then(|pid| pid.parse::<u32>().ok())
}

/// The roles of one test database, named `<database>_owner|_worker|_crm|_admin`. Roles are
/// cluster-wide, so the names carry the database's unique name; they are dropped with it.
#[derive(Debug, Clone)]
pub struct TestRoles {
    /// Ran the migrations, owns what they created (as `stagecast migrate` would in production).
    pub owner: String,
    /// What `stagecast run` connects as: the grants of sql/roles/worker.sql, nothing more.
    pub worker: String,
    /// The CRM's application role: reads and writes the contract tables, nothing on stagecast.
    pub crm: String,
    /// `stagecast jobs` and a CRM admin screen (sql/roles/admin.sql): list, show, replay, cancel.
    pub admin: String,
    /// The same password for all of them (the local server trusts 127.0.0.1 and ignores it; a
    /// `DATABASE_URL` server that asks for passwords gets it).
    password: String,
}

impl TestRoles {
    fn for_database(name: &str) -> Self {
        TestRoles {
            owner: format!("{name}_owner"),
            worker: format!("{name}_worker"),
            crm: format!("{name}_crm"),
            admin: format!("{name}_admin"),
            password: format!("{:032x}", rand::random::<u128>()),
        }
    }

    fn all(&self) -> [&str; 4] {
        [&self.owner, &self.worker, &self.crm, &self.admin]
    }
}

/// A fresh database with all migrations applied, dropped when this value is dropped, with
/// its own non-superuser roles set up the way a deployment does (docs/operations.md,
/// "Database roles"): migrated as `roles.owner`, the worker's grants applied, the CRM role
/// granted reads and writes on the contract tables, the admin role the admin functions. Under the usual hardening too: functions
/// the owner creates are not executable by PUBLIC (default privileges).
///
/// Which pool for what (docs/testing.md):
/// - `crm_pool` / `crm_url`: everything a CRM does (stage changes, customers, chat messages,
///   pixels, campaigns and stages as a CRM's screens write them);
/// - `worker_pool` / `worker_url`: the worker (`Stack` uses it for in-process and spawned
///   workers) and anything else `stagecast run` would do;
/// - `admin_pool` / `admin_url`: `stagecast jobs` and the replay/cancel SQL functions;
/// - `pool` / `url` (a superuser): assertions, and setup no CRM would do (rows inserted
///   straight into stagecast's tables, server-side tricks).
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    pub worker_pool: PgPool,
    pub worker_url: String,
    pub crm_pool: PgPool,
    pub crm_url: String,
    /// The owner's URL (migrations, `stagecast roles apply`).
    pub owner_url: String,
    /// The admin role (sql/roles/admin.sql): `stagecast jobs`, replay and cancel.
    pub admin_pool: PgPool,
    pub admin_url: String,
    pub roles: TestRoles,
    pub name: String,
    server: &'static LocalPostgres,
}

fn lazy_pool(url: &str, what: &str) -> PgPool {
    lazy_pool_with(PgPoolOptions::new(), url, what)
}

fn lazy_pool_with(options: PgPoolOptions, url: &str, what: &str) -> PgPool {
    options
        .max_connections(POOL_MAX_CONNECTIONS)
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy(url)
        .unwrap_or_else(|e| panic!("test database URL for {what} is invalid: {e}"))
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::create(true).await
    }

    /// Like [`TestDb::new`], but stops before the owner's part: the roles exist and
    /// sql/roles/setup.sql ran (as a deployment does before its first `stagecast migrate`), and
    /// nothing is migrated or granted yet. For tests that migrate through the binary.
    pub async fn unmigrated() -> TestDb {
        Self::create(false).await
    }

    async fn create(migrate: bool) -> TestDb {
        let server = server().await;
        let name = format!(
            "{TEST_DB_PREFIX}{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let url = server
            .create_database(&name)
            .await
            .unwrap_or_else(|e| panic!("creating test database: {e}"));
        let roles = TestRoles::for_database(&name);
        let as_role = |role: &str| server.url_as(&name, role, &roles.password);
        // Build the value first so a failure below (its panic unwinds through this frame)
        // still drops the database and the roles.
        let db = TestDb {
            pool: lazy_pool(&url, &name),
            // As `stagecast run` connects: search_path pinned on every session.
            worker_pool: lazy_pool_with(
                stagecast::store::pool_options(),
                &as_role(&roles.worker),
                &roles.worker,
            ),
            crm_pool: lazy_pool(&as_role(&roles.crm), &roles.crm),
            admin_pool: lazy_pool(&as_role(&roles.admin), &roles.admin),
            worker_url: as_role(&roles.worker),
            crm_url: as_role(&roles.crm),
            owner_url: as_role(&roles.owner),
            admin_url: as_role(&roles.admin),
            url,
            roles,
            name,
            server,
        };
        db.set_up_roles(migrate).await;
        db
    }

    /// Create the roles, run sql/roles/setup.sql as the superuser, then (with `migrate`)
    /// migrate as the owner and apply the owner's grants (`stagecast roles apply`), as a
    /// deployment would.
    async fn set_up_roles(&self, migrate: bool) {
        let r = &self.roles;
        let mut admin = sqlx::PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connecting to test database {}: {e}", self.name));
        for role in r.all() {
            sqlx::raw_sql(&format!(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{}'",
                stagecast::roles::quote_ident(role),
                r.password
            ))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating test role {role}: {e}. The tests run the worker and the CRM as \
                     their own roles: the server role needs CREATEROLE (docs/testing.md)"
                )
            });
        }
        // The hardening finding 4 of issue 12 was found under: nothing the owner creates is
        // executable by PUBLIC unless granted.
        sqlx::raw_sql(&format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
            stagecast::roles::quote_ident(&r.owner)
        ))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("hardening test database {}: {e}", self.name));
        let names = stagecast::roles::RoleNames {
            database: self.name.clone(),
            owner: r.owner.clone(),
            worker: r.worker.clone(),
            crm: Some(r.crm.clone()),
            admin: Some(r.admin.clone()),
        };
        let major = stagecast::roles::server_major(&mut admin)
            .await
            .expect("server version");
        let setup = stagecast::roles::setup_scripts(&names, major).expect("setup scripts");
        stagecast::roles::apply(&mut admin, &setup)
            .await
            .unwrap_or_else(|e| panic!("roles setup on {}: {e}", self.name));
        let _ = admin.close().await;
        if !migrate {
            return;
        }

        let mut owner = sqlx::PgConnection::connect(&self.owner_url)
            .await
            .unwrap_or_else(|e| panic!("connecting as the owner role {}: {e}", r.owner));
        stagecast::store::MIGRATOR
            .run(&mut owner)
            .await
            .unwrap_or_else(|e| panic!("migrating test database {} as its owner: {e}", self.name));
        stagecast::roles::apply_grants(&mut owner, &names)
            .await
            .unwrap_or_else(|e| panic!("roles grants on {}: {e}", self.name));
        let _ = owner.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Marks the pools closed at once (the returned futures would only wait for connections
        // to finish closing). We cannot await here, and the connections belong to the test's
        // runtime; DROP … WITH (FORCE) below ends any that are still open.
        let _closing = (
            self.pool.close(),
            self.worker_pool.close(),
            self.crm_pool.close(),
            self.admin_pool.close(),
        );
        let server = self.server;
        let name = std::mem::take(&mut self.name);
        let roles: Vec<String> = self.roles.all().map(str::to_owned).to_vec();
        // Drop is sync and may run inside the test's (possibly current-thread) runtime, where
        // blocking on its own futures would deadlock; a fresh thread with its own runtime can't.
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                // The database first: the roles' objects and privileges live in it.
                server
                    .drop_database(&name)
                    .await
                    .map_err(|e| format!("database {name}: {e}"))?;
                drop_roles(server, &roles)
                    .await
                    .map_err(|e| format!("roles of {name}: {e}"))
            })
        })
        .join();
        // Never panic in Drop: it may be running because the test already panicked.
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test {e}"),
            Err(_) => eprintln!("warning: the thread dropping a test database panicked"),
        }
    }
}

async fn drop_roles(server: &LocalPostgres, roles: &[String]) -> Result<(), String> {
    let mut conn = sqlx::PgConnection::connect(server.admin_url())
        .await
        .map_err(|e| e.to_string())?;
    let mut result = Ok(());
    for role in roles {
        let sql = format!(
            "DROP ROLE IF EXISTS {}",
            stagecast::roles::quote_ident(role)
        );
        if let Err(e) = sqlx::raw_sql(&sql).execute(&mut conn).await {
            result = Err(format!("{role}: {e}"));
        }
    }
    let _ = conn.close().await;
    result
}

pub mod console;
pub mod process;
pub mod stack;
pub mod wait;
pub mod webdriver;
