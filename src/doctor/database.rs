//! Database: can we connect, and is the schema the one this binary expects.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection as _;

use super::report::{list, Check, Group};
use crate::store::doctor::{AppliedMigration, ServerInfo};
use crate::store::Store;

/// Connect with a short timeout: the doctor should answer quickly when the server is down.
/// The error is already a report line (password redacted).
pub async fn connect(url: &str, timeout: Duration) -> Result<Store, Check> {
    let redacted = crate::local_pg::redact_url(url);
    // One plain connection first: a pool retries until its timeout and then reports only
    // "pool timed out", losing the reason (refused, bad password, no such database).
    let probe = tokio::time::timeout(timeout, PgConnection::connect(url)).await;
    match probe {
        Err(_) => {
            return Err(Check::build(Group::Database, "database.connection", "Connection").problem(
                format!("cannot connect to {redacted}: no answer within {timeout:?}"),
                "check the host and port in DATABASE_URL, and that no firewall drops the connection",
            ))
        }
        Ok(Err(e)) => return Err(connection_problem(&redacted, &e)),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
        }
    }
    // Every read waits for a lock and runs at most `timeout`: a table locked by someone
    // else's open transaction must give a finding (Table locks), not a doctor that hangs.
    // The statement bound is twice the lock bound, so a lock wait reports itself as such.
    let lock_bound = format!("{}ms", timeout.as_millis().max(1));
    let statement_bound = format!("{}ms", timeout.as_millis().max(1) * 2);
    let options = url
        .parse::<PgConnectOptions>()
        .map_err(|e| connection_problem(&redacted, &e))?
        .options([
            ("lock_timeout", lock_bound.as_str()),
            ("statement_timeout", statement_bound.as_str()),
        ]);
    crate::store::pool_options()
        .max_connections(2)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
        .map(Store::new)
        .map_err(|e| connection_problem(&redacted, &e))
}

fn connection_problem(redacted: &str, e: &sqlx::Error) -> Check {
    let c = Check::build(Group::Database, "database.connection", "Connection");
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned());
    // Name the likely fix by SQLSTATE, never by message text (messages are localised).
    let fix = match code.as_deref() {
        Some("28P01") | Some("28000") => {
            "check the user and password in DATABASE_URL, and pg_hba.conf on the server"
        }
        Some("3D000") => "the database does not exist: correct the name in DATABASE_URL",
        _ => "check DATABASE_URL (host, port, database) and that Postgres is running and accepts connections from this host",
    };
    c.problem(format!("cannot connect to {redacted}: {e}"), fix)
}

pub fn server(info: &ServerInfo) -> Check {
    Check::build(Group::Database, "database.connection", "Connection").ok(format!(
        "PostgreSQL {}, database {:?} as role {:?}",
        info.version, info.database, info.role
    ))
}

/// What the migration check concluded, for deciding which other checks can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    /// No `_sqlx_migrations`: nothing of stagecast is installed.
    NeverMigrated,
    /// Some migrations are missing or broken: reads may fail on missing objects.
    Incomplete,
    Current,
}

/// A migration embedded in the binary.
#[derive(Debug, Clone)]
pub struct Known {
    pub version: i64,
    pub description: String,
    pub checksum: Vec<u8>,
}

/// The migrations compiled into this binary (`stagecast::store::MIGRATOR`).
pub fn known_migrations() -> Vec<Known> {
    crate::store::MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| Known {
            version: m.version,
            description: m.description.to_string(),
            checksum: m.checksum.to_vec(),
        })
        .collect()
}

/// How to migrate: the doctor usually runs with the worker's DATABASE_URL, which may not migrate,
/// and the worker needs the grants on what a migration creates (docs/operations.md, "Database
/// roles").
const MIGRATE_FIX: &str =
    "run `stagecast migrate`, then `stagecast roles apply`, with the owner role's DATABASE_URL";

fn label(version: i64, description: &str) -> String {
    format!("{version} {description}")
}

/// Compare what the database recorded with what the binary carries.
pub fn migrations(
    applied: Option<&[AppliedMigration]>,
    known: &[Known],
) -> (Vec<Check>, SchemaState) {
    let c = |id: &str, title: &str| Check::build(Group::Database, format!("database.{id}"), title);
    let Some(applied) = applied else {
        return (
            vec![c("migrations", "Migrations").problem(
                "the database was never migrated (no _sqlx_migrations table): stagecast's schema, views and triggers are missing",
                MIGRATE_FIX,
            )],
            SchemaState::NeverMigrated,
        );
    };
    let mut checks = Vec::new();
    let find = |v: i64| applied.iter().find(|a| a.version == v);

    let pending: Vec<String> = known
        .iter()
        .filter(|k| find(k.version).is_none())
        .map(|k| label(k.version, &k.description))
        .collect();
    if !pending.is_empty() {
        checks.push(c("migrations", "Migrations").problem(
            format!(
                "{} of {} pending: {}",
                pending.len(),
                known.len(),
                list(&pending, 10)
            ),
            MIGRATE_FIX,
        ));
    }
    let failed: Vec<String> = applied
        .iter()
        .filter(|a| !a.success)
        .map(|a| label(a.version, &a.description))
        .collect();
    if !failed.is_empty() {
        checks.push(c("migrations_failed", "Failed migrations").problem(
            format!("recorded as failed partway: {}", list(&failed, 10)),
            "repair what the migration left half-done, delete its row from _sqlx_migrations, then run `stagecast migrate`",
        ));
    }
    let changed: Vec<String> = known
        .iter()
        .filter(|k| find(k.version).is_some_and(|a| a.success && a.checksum != k.checksum))
        .map(|k| label(k.version, &k.description))
        .collect();
    if !changed.is_empty() {
        // sqlx refuses to migrate such a database (VersionMismatch).
        checks.push(c("migrations_changed", "Changed migrations").problem(
            format!(
                "applied with different contents than this binary carries: {}",
                list(&changed, 10)
            ),
            "run the stagecast version that migrated this database, or ask its developers; `stagecast migrate` refuses to continue until they agree",
        ));
    }
    let unknown: Vec<String> = applied
        .iter()
        .filter(|a| !known.iter().any(|k| k.version == a.version))
        .map(|a| label(a.version, &a.description))
        .collect();
    if !unknown.is_empty() {
        checks.push(c("migrations_unknown", "Newer schema").warning(
            format!(
                "applied but unknown to this binary (a newer stagecast migrated the database): {}",
                list(&unknown, 10)
            ),
            "upgrade this stagecast to the version the other workers run",
        ));
    }
    let broken = !pending.is_empty() || !failed.is_empty() || !changed.is_empty();
    if !broken {
        let newest = known
            .iter()
            .max_by_key(|k| k.version)
            .map(|k| label(k.version, &k.description))
            .unwrap_or_default();
        checks.insert(
            0,
            c("migrations", "Migrations")
                .ok(format!("all {} applied (newest: {newest})", known.len())),
        );
    }
    let state = if broken {
        SchemaState::Incomplete
    } else {
        SchemaState::Current
    };
    (checks, state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Status;

    fn known() -> Vec<Known> {
        (1..=3)
            .map(|v| Known {
                version: v,
                description: format!("m{v}"),
                checksum: vec![v as u8],
            })
            .collect()
    }

    fn applied(versions: &[i64]) -> Vec<AppliedMigration> {
        versions
            .iter()
            .map(|&v| AppliedMigration {
                version: v,
                description: format!("m{v}"),
                success: true,
                checksum: vec![v as u8],
            })
            .collect()
    }

    #[test]
    fn never_migrated() {
        let (checks, state) = migrations(None, &known());
        assert_eq!(state, SchemaState::NeverMigrated);
        assert_eq!(checks[0].status, Status::Problem);
        assert!(checks[0].found.contains("never migrated"));
        assert_eq!(
            checks[0].fix.as_deref(),
            Some("run `stagecast migrate`, then `stagecast roles apply`, with the owner role's DATABASE_URL")
        );
    }

    #[test]
    fn all_applied() {
        let (checks, state) = migrations(Some(&applied(&[1, 2, 3])), &known());
        assert_eq!(state, SchemaState::Current);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].found, "all 3 applied (newest: 3 m3)");
    }

    #[test]
    fn pending_failed_changed_and_unknown() {
        let mut a = applied(&[1, 2, 7]);
        a[0].checksum = vec![9];
        a[1].success = false;
        let (checks, state) = migrations(Some(&a), &known());
        assert_eq!(state, SchemaState::Incomplete);
        let by_id = |id: &str| checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(by_id("database.migrations").found, "1 of 3 pending: 3 m3");
        assert!(by_id("database.migrations_failed").found.contains("2 m2"));
        assert!(by_id("database.migrations_changed").found.contains("1 m1"));
        assert_eq!(by_id("database.migrations_unknown").status, Status::Warning);
    }

    #[test]
    fn a_newer_schema_alone_is_a_warning() {
        let (checks, state) = migrations(Some(&applied(&[1, 2, 3, 4])), &known());
        assert_eq!(state, SchemaState::Current);
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].status, Status::Ok);
        assert_eq!(checks[1].status, Status::Warning);
    }

    #[test]
    fn the_binary_carries_migrations() {
        assert!(!known_migrations().is_empty());
    }
}
