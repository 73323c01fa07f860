//! The throwaway-cluster path of `stagecast::local_pg`, forced even when a server is running:
//! start, serve, and leave nothing behind — after a normal drop and after the owner is killed.
//!
//! Skipped (with a message, not a failure) only on machines without PostgreSQL server binaries.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use stagecast::local_pg::LocalPostgres;

const CHILD_ENV: &str = "STAGECAST_THROWAWAY_TEST_CHILD";
const CHILD_TEST: &str = "child_holds_cluster_until_killed";

async fn binaries_present() -> bool {
    if LocalPostgres::find_server_binaries().await.is_some() {
        return true;
    }
    eprintln!(
        "SKIPPED: no PostgreSQL server binaries (initdb, postgres) on this machine, so there is \
         no throwaway cluster to test. Install them (Debian/Ubuntu: apt-get install postgresql)."
    );
    false
}

/// PIDs of live processes whose command line mentions `dir` (the postmaster's `-D`, its
/// backends inherit nothing visible, the watchdog's argument). Linux only; empty elsewhere.
fn processes_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
                && support::pid_alive(pid)
        })
        .collect()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

#[tokio::test]
async fn throwaway_cluster_starts_serves_and_cleans_up() {
    if !binaries_present().await {
        return;
    }
    let started = Instant::now();
    let pg = LocalPostgres::start_throwaway(false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("started {} in {:?}", pg.describe(), started.elapsed());
    assert!(pg.is_throwaway());
    assert!(
        pg.describe().starts_with("throwaway cluster (PostgreSQL "),
        "{}",
        pg.describe()
    );
    let dir: PathBuf = pg.throwaway_dir().expect("throwaway dir").to_owned();
    let pid = pg.throwaway_pid().expect("postmaster pid");
    assert!(dir.join("data/PG_VERSION").exists());
    assert!(support::pid_alive(pid));

    let mut conn = sqlx::PgConnection::connect(pg.admin_url()).await.unwrap();
    let answer: i32 = sqlx::query_scalar("SELECT 6 * 7")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(answer, 42);
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(fsync, "off");
    conn.close().await.unwrap();

    // The create/drop round trip the harness relies on, against this cluster.
    let url = pg.create_database("throwaway_roundtrip").await.unwrap();
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(current, "throwaway_roundtrip");
    // Left open on purpose: drop_database must force it closed.
    pg.drop_database("throwaway_roundtrip").await.unwrap();
    drop(db);

    drop(pg);
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
    assert!(
        !support::pid_alive(pid),
        "postmaster {pid} still running after drop"
    );
    // The watchdog has been reaped by the drop; nothing else may mention the directory.
    assert!(
        wait_until(Duration::from_secs(5), || processes_mentioning(&dir)
            .is_empty()),
        "processes left behind: {:?}",
        processes_mentioning(&dir)
    );
}

/// Helper process for `killed_owner_leaves_nothing_behind`: starts a cluster, reports it on
/// stdout, and waits to be killed. Ignored, and a no-op unless that test launched it.
#[tokio::test]
#[ignore = "helper process, launched by killed_owner_leaves_nothing_behind"]
async fn child_holds_cluster_until_killed() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let pg = LocalPostgres::start_throwaway(false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "CLUSTER dir={} pid={}",
        pg.throwaway_dir().unwrap().display(),
        pg.throwaway_pid().unwrap()
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    drop(pg);
}

#[tokio::test]
async fn killed_owner_leaves_nothing_behind() {
    if !binaries_present().await {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut cluster = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("CLUSTER dir=") {
            let (dir, pid) = rest.rsplit_once(" pid=").unwrap();
            cluster = Some((PathBuf::from(dir), pid.parse::<u32>().unwrap()));
            break;
        }
    }
    let Some((dir, pid)) = cluster else {
        let status = child.wait().unwrap();
        panic!("the helper process did not start a cluster ({status})");
    };
    assert!(dir.exists());
    assert!(support::pid_alive(pid));

    // SIGKILL: no destructors, no atexit — only the watchdog can clean up.
    child.kill().unwrap();
    child.wait().unwrap();

    let clean = wait_until(Duration::from_secs(30), || {
        !dir.exists() && !support::pid_alive(pid) && processes_mentioning(&dir).is_empty()
    });
    assert!(
        clean,
        "after the owner was killed: dir exists={}, postmaster alive={}, processes={:?}",
        dir.exists(),
        support::pid_alive(pid),
        processes_mentioning(&dir)
    );
}

/// `stagecast bench chaos` crash-restarts its cluster: same port (URLs stay valid), a new
/// postmaster, committed data kept (the database commits synchronously, as the chaos run sets
/// it), and the directory still deleted on drop. Any other server is refused untouched.
#[tokio::test]
async fn a_throwaway_cluster_restarts_on_its_port_and_keeps_synchronous_commits() {
    if !binaries_present().await {
        return;
    }
    let mut pg = LocalPostgres::start_throwaway(false).await.expect("starts");
    let url = pg.create_database("restart_me").await.expect("database");
    let mut admin = sqlx::PgConnection::connect(pg.admin_url()).await.unwrap();
    sqlx::raw_sql("ALTER DATABASE restart_me SET synchronous_commit = on")
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        .execute(&mut conn)
        .await
        .unwrap();
    let before = pg.throwaway_pid().expect("a postmaster");
    let dir = pg.throwaway_dir().expect("a directory").to_owned();

    pg.restart_throwaway(Duration::from_millis(200))
        .await
        .expect("restarts");

    assert_ne!(pg.throwaway_pid(), Some(before), "a new postmaster");
    assert!(
        sqlx::query("SELECT 1").execute(&mut conn).await.is_err(),
        "the old session died with the server"
    );
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("same URL");
    let n: i32 = sqlx::query_scalar("SELECT n FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 42);
    conn.close().await.unwrap();
    drop(pg);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[tokio::test]
async fn only_a_throwaway_cluster_is_ever_restarted() {
    // The suite's server, reached by URL: a server stagecast did not start (even when it is
    // the suite's own throwaway cluster, a URL does not own it). Refused before anything is sent.
    let url = support::server().await.admin_url().to_owned();
    let mut pg = LocalPostgres::find_or_start(stagecast::local_pg::FindOptions {
        database_url: Some(url),
        ..Default::default()
    })
    .await
    .expect("reachable");
    let err = pg
        .restart_throwaway(Duration::ZERO)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, stagecast::local_pg::LocalPgError::NotThrowaway { .. }),
        "{err}"
    );
}
