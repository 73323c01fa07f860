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

/// Crash cleanup: drops `stagecast_test_<pid>_…` databases left behind by test processes that
/// were killed before their `TestDb`s could drop them.
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
        let pid = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid_alive(pid) {
            continue;
        }
        let sql = format!("DROP DATABASE IF EXISTS \"{}\"", name.replace('"', "\"\""));
        if sqlx::raw_sql(&sql).execute(&mut conn).await.is_ok() {
            dropped.push(name);
        }
    }
    let _ = conn.close().await;
    dropped
}

/// A fresh database with all migrations applied, dropped when this value is dropped.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    pub name: String,
    server: &'static LocalPostgres,
}

impl TestDb {
    pub async fn new() -> TestDb {
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
        // Build the value first so a failure below (its panic unwinds through this frame)
        // still drops the database.
        let pool = PgPoolOptions::new()
            .max_connections(POOL_MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy(&url)
            .unwrap_or_else(|e| panic!("test database URL for {name} is invalid: {e}"));
        let db = TestDb {
            pool,
            url,
            name,
            server,
        };
        stagecast::store::MIGRATOR
            .run(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("migrating test database {}: {e}", db.name));
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Marks the pool closed at once (the returned future would only wait for connections
        // to finish closing). We cannot await here, and the connections belong to the test's
        // runtime; DROP … WITH (FORCE) below ends any that are still open.
        let _closing = self.pool.close();
        let server = self.server;
        let name = std::mem::take(&mut self.name);
        // Drop is sync and may run inside the test's (possibly current-thread) runtime, where
        // blocking on its own futures would deadlock; a fresh thread with its own runtime can't.
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(server.drop_database(&name))
                .map_err(|e| format!("{name}: {e}"))
        })
        .join();
        // Never panic in Drop: it may be running because the test already panicked.
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {e}"),
            Err(_) => eprintln!("warning: the thread dropping a test database panicked"),
        }
    }
}

pub mod stack;
pub mod wait;
