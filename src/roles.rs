//! The database roles of a deployment (docs/operations.md, "Database roles"): the scripts in
//! `sql/roles/` with the role names filled in, for `stagecast roles` and the test harness.
//!
//! Three roles, none a superuser: the **owner** runs `stagecast migrate` and owns what it
//! creates; the **worker** runs `stagecast run` with exactly the grants it needs; the **CRM**'s
//! application role needs nothing on schema `stagecast`. An optional **admin** role may list,
//! replay and cancel jobs. The scripts use psql's `:"name"` variables, so the same files also
//! run under `psql -v worker=... -f sql/roles/worker.sql`.

use sqlx::{Connection as _, PgConnection};

/// Who runs a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// Once per database, before the first migrate: a superuser, or a role with CREATEROLE and
    /// ADMIN OPTION on the roles.
    Superuser,
    /// The role that runs `stagecast migrate`, after every migrate.
    Owner,
}

/// One script of `sql/roles/`, rendered.
#[derive(Debug, Clone)]
pub struct Script {
    /// The file name in `sql/roles/`.
    pub file: &'static str,
    pub run_as: RunAs,
    pub sql: String,
}

/// The role names of a deployment. `crm` and `admin` are optional parts.
#[derive(Debug, Clone, Default)]
pub struct RoleNames {
    /// The CRM's database (only the superuser part names it).
    pub database: String,
    pub owner: String,
    pub worker: String,
    /// The CRM's application role, when stagecast's migrations created the contract tables.
    pub crm: Option<String>,
    /// A role for `stagecast jobs` and a CRM admin screen.
    pub admin: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("{file} needs the {name} role name, which was not given")]
    MissingName { file: &'static str, name: String },
    #[error("the {0} role name is empty")]
    EmptyName(&'static str),
    #[error("could not read the server version: {0}")]
    Version(#[source] sqlx::Error),
    #[error("applying sql/roles/{file} failed: {source}")]
    Apply {
        file: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// First PostgreSQL major version with the MAINTAIN privilege (VACUUM without ownership).
pub const MAINTAIN_SINCE: u32 = 17;

const SETUP: &str = include_str!("../sql/roles/setup.sql");
const SETUP_PG16: &str = include_str!("../sql/roles/setup_pg16.sql");
const WORKER: &str = include_str!("../sql/roles/worker.sql");
const WORKER_VACUUM_PG16: &str = include_str!("../sql/roles/worker_vacuum_pg16.sql");
const WORKER_VACUUM_PG17: &str = include_str!("../sql/roles/worker_vacuum_pg17.sql");
const CRM_TABLES: &str = include_str!("../sql/roles/crm_tables.sql");
const ADMIN: &str = include_str!("../sql/roles/admin.sql");

impl RoleNames {
    fn lookup(&self, name: &str) -> Option<&str> {
        match name {
            "database" => Some(self.database.as_str()),
            "owner" => Some(self.owner.as_str()),
            "worker" => Some(self.worker.as_str()),
            "crm" => self.crm.as_deref(),
            "admin" => self.admin.as_deref(),
            _ => None,
        }
        .filter(|v| !v.is_empty())
    }

    fn check(&self, names: &[&'static str]) -> Result<(), RolesError> {
        for &n in names {
            if self.lookup(n).is_none() {
                return Err(RolesError::EmptyName(n));
            }
        }
        Ok(())
    }
}

/// `"name"`, with embedded quotes doubled: any role name is safe in the scripts.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Fill in psql's `:"name"` variables. Comments are rendered too (they only ever hold names).
fn render(file: &'static str, template: &str, names: &RoleNames) -> Result<String, RolesError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find(":\"") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('"') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        let value = names.lookup(name).ok_or_else(|| RolesError::MissingName {
            file,
            name: name.to_string(),
        })?;
        out.push_str(&quote_ident(value));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What a superuser runs once per database before the first migrate.
pub fn setup_scripts(names: &RoleNames, pg_major: u32) -> Result<Vec<Script>, RolesError> {
    names.check(&["database", "owner", "worker"])?;
    let mut scripts = vec![Script {
        file: "setup.sql",
        run_as: RunAs::Superuser,
        sql: render("setup.sql", SETUP, names)?,
    }];
    if pg_major < MAINTAIN_SINCE {
        scripts.push(Script {
            file: "setup_pg16.sql",
            run_as: RunAs::Superuser,
            sql: render("setup_pg16.sql", SETUP_PG16, names)?,
        });
    }
    Ok(scripts)
}

/// What the owner runs after every migrate: the worker's grants (and, on PostgreSQL 16 and
/// older, its ownership of the hot tables), then the optional CRM and admin parts.
pub fn grant_scripts(names: &RoleNames, pg_major: u32) -> Result<Vec<Script>, RolesError> {
    names.check(&["worker"])?;
    let (vacuum_file, vacuum) = if pg_major >= MAINTAIN_SINCE {
        ("worker_vacuum_pg17.sql", WORKER_VACUUM_PG17)
    } else {
        ("worker_vacuum_pg16.sql", WORKER_VACUUM_PG16)
    };
    let mut parts: Vec<(&'static str, &'static str)> =
        vec![("worker.sql", WORKER), (vacuum_file, vacuum)];
    if names.crm.is_some() {
        parts.push(("crm_tables.sql", CRM_TABLES));
    }
    if names.admin.is_some() {
        parts.push(("admin.sql", ADMIN));
    }
    parts
        .into_iter()
        .map(|(file, template)| {
            Ok(Script {
                file,
                run_as: RunAs::Owner,
                sql: render(file, template, names)?,
            })
        })
        .collect()
}

/// The server's major version (15 for 15.4).
pub async fn server_major(conn: &mut PgConnection) -> Result<u32, RolesError> {
    let num: String = sqlx::query_scalar("SELECT current_setting('server_version_num')")
        .fetch_one(&mut *conn)
        .await
        .map_err(RolesError::Version)?;
    Ok(num.trim().parse::<u32>().unwrap_or(0) / 10_000)
}

/// Run scripts on one connection, in one transaction: all of them apply, or none.
pub async fn apply(conn: &mut PgConnection, scripts: &[Script]) -> Result<(), RolesError> {
    let mut tx = conn.begin().await?;
    for script in scripts {
        sqlx::raw_sql(&script.sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| RolesError::Apply {
                file: script.file,
                source,
            })?;
    }
    tx.commit().await?;
    Ok(())
}

/// Apply the owner's part (after a migrate) as the connected role.
pub async fn apply_grants(conn: &mut PgConnection, names: &RoleNames) -> Result<(), RolesError> {
    let major = server_major(conn).await?;
    let scripts = grant_scripts(names, major)?;
    apply(conn, &scripts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> RoleNames {
        RoleNames {
            database: "crm".into(),
            owner: "stagecast_owner".into(),
            worker: "stage\"cast".into(),
            crm: Some("crm_app".into()),
            admin: None,
        }
    }

    #[test]
    fn fills_every_variable_and_quotes_names() {
        for major in [15, 16, 17] {
            let scripts = setup_scripts(&names(), major)
                .unwrap()
                .into_iter()
                .chain(grant_scripts(&names(), major).unwrap());
            for s in scripts {
                assert!(!s.sql.contains(":\""), "{}: {}", s.file, s.sql);
                if s.file != "crm_tables.sql" {
                    assert!(s.sql.contains("\"stage\"\"cast\""), "{}", s.file);
                }
            }
        }
    }

    #[test]
    fn vacuum_rights_depend_on_the_server_version() {
        let files = |major| -> Vec<&str> {
            setup_scripts(&names(), major)
                .unwrap()
                .iter()
                .chain(grant_scripts(&names(), major).unwrap().iter())
                .map(|s| s.file)
                .collect()
        };
        assert_eq!(
            files(16),
            [
                "setup.sql",
                "setup_pg16.sql",
                "worker.sql",
                "worker_vacuum_pg16.sql",
                "crm_tables.sql"
            ]
        );
        assert_eq!(
            files(17),
            [
                "setup.sql",
                "worker.sql",
                "worker_vacuum_pg17.sql",
                "crm_tables.sql"
            ]
        );
    }

    #[test]
    fn a_missing_name_is_an_error_not_an_empty_identifier() {
        let mut n = names();
        n.worker.clear();
        assert!(matches!(
            grant_scripts(&n, 15),
            Err(RolesError::EmptyName("worker"))
        ));
        let mut n = names();
        n.database.clear();
        assert!(matches!(
            setup_scripts(&n, 15),
            Err(RolesError::EmptyName("database"))
        ));
    }
}
