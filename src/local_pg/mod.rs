//! Finding a PostgreSQL server for the demo, the benchmark and the tests — or starting one.
//!
//! Search order (see `docs/testing.md`):
//! 1. `FindOptions::database_url` (usually `DATABASE_URL`). If it is set but unreachable that is
//!    an error: silently using another server would hide a misconfiguration.
//! 2. A running local server: `postgres@127.0.0.1:5432`, then the OS user's role there, then
//!    the Unix sockets in `/var/run/postgresql` and `/tmp`.
//! 3. If allowed, a throwaway cluster started from the newest server binaries on the machine,
//!    deleted when the [`LocalPostgres`] is dropped or, failing that, when this process exits.
//!
//! `STAGECAST_PG_NO_PROBE=1` skips step 2. It exists so the test suite can prove it works on a
//! machine where PostgreSQL is installed but not running; it is not meant for production use.
//!
//! Nothing here panics on environment problems: every failure is a [`LocalPgError`] whose
//! message says what to do next. URLs in messages are always redacted.

mod binaries;
mod cluster;
mod url;

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions as _, Connection as _};

pub use binaries::ServerBinaries;
pub use url::redact as redact_url;

/// Environment variable that disables probing for running servers (tests only).
pub const NO_PROBE_ENV: &str = "STAGECAST_PG_NO_PROBE";

/// Probes must fail fast: on a fresh machine every one of them fails, and the user is waiting.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// An explicitly configured server may be remote; give it a little longer.
const URL_TIMEOUT: Duration = Duration::from_secs(5);
/// CREATE/DROP DATABASE connections; generous because parallel tests can keep a server busy.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

const INSTALL_HINT: &str = "Install them: Debian/Ubuntu `sudo apt-get install postgresql`, \
Fedora `sudo dnf install postgresql-server`, macOS `brew install postgresql@16` — or set \
DATABASE_URL to a server you can reach.";

#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "DATABASE_URL `{url}` is not a valid PostgreSQL URL ({reason}). Expected something like \
         postgres://user:password@host:5432/dbname"
    )]
    InvalidUrl { url: String, reason: String },

    #[error(
        "cannot connect to PostgreSQL at {target} (DATABASE_URL={url}): {reason}. Check that the \
         server is running and DATABASE_URL is right, or unset DATABASE_URL to let stagecast \
         find or start a local PostgreSQL."
    )]
    Unreachable {
        target: String,
        url: String,
        reason: String,
    },

    #[error(
        "no usable PostgreSQL server is running (tried {tried}). Start one (Debian/Ubuntu \
         `sudo service postgresql start`, macOS `brew services start postgresql@16`) or set \
         DATABASE_URL to a server you can reach."
    )]
    NotRunning { tried: String },

    #[error(
        "PostgreSQL is not running and no PostgreSQL server binaries were found. {}",
        INSTALL_HINT
    )]
    NoPostgres,

    #[error(
        "cannot start a throwaway PostgreSQL cluster: running as root, PostgreSQL refuses to run \
         as root, and there is no `postgres` system user to run it as. Run as a normal user, \
         create the user (`sudo useradd --system --user-group postgres`), or set DATABASE_URL to \
         a server you can reach."
    )]
    RootWithoutPostgresUser,

    #[error(
        "initdb ({path}) failed ({status}) creating a throwaway cluster in {dir}:\n{output}\n\
         If that directory is not accessible to {user}, set TMPDIR to a world-accessible \
         directory such as /tmp; or set DATABASE_URL to a server you can reach."
    )]
    Initdb {
        path: String,
        status: String,
        dir: String,
        user: String,
        output: String,
    },

    #[error(
        "the throwaway PostgreSQL cluster in {dir} did not start: {reason}. Server log (last \
         lines):\n{log_tail}\nSet DATABASE_URL to a server you can reach to skip the throwaway \
         cluster."
    )]
    ServerStart {
        dir: String,
        reason: String,
        log_tail: String,
    },

    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "invalid database name `{0}`: use 1 to 63 characters from a-z, A-Z, 0-9 and _, starting \
         with a letter or _"
    )]
    InvalidDatabaseName(String),

    #[error("{server} is not a throwaway cluster started by stagecast: it is never restarted")]
    NotThrowaway { server: String },

    /// A CREATE/DROP DATABASE (or the connection for it) failed. `code` is the SQLSTATE, if any.
    #[error("{action} on {server} failed: {reason}{hint}")]
    Admin {
        action: String,
        server: String,
        reason: String,
        code: Option<String>,
        hint: String,
    },
}

/// Where to look for a server, and whether starting one is acceptable.
#[derive(Clone, Default)]
pub struct FindOptions {
    /// An explicit server (usually from `DATABASE_URL`). Empty strings count as unset.
    pub database_url: Option<String>,
    /// Start a throwaway cluster when no server is running.
    pub allow_throwaway: bool,
    /// Print a line to stderr when starting a throwaway cluster (it takes a few seconds).
    pub progress: bool,
}

impl FindOptions {
    /// What the demo and the benchmark want: `DATABASE_URL` if set, else a running local server,
    /// else a throwaway cluster, announced on stderr.
    pub fn from_env() -> Self {
        FindOptions {
            database_url: std::env::var("DATABASE_URL")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            allow_throwaway: true,
            progress: true,
        }
    }
}

impl std::fmt::Debug for FindOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FindOptions")
            .field(
                "database_url",
                &self.database_url.as_deref().map(url::redact),
            )
            .field("allow_throwaway", &self.allow_throwaway)
            .field("progress", &self.progress)
            .finish()
    }
}

/// A PostgreSQL server we can create databases on. If it is a throwaway cluster, dropping this
/// value stops the server and deletes its files.
pub struct LocalPostgres {
    admin_url: String,
    description: String,
    cluster: Option<cluster::Cluster>,
}

impl std::fmt::Debug for LocalPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPostgres")
            .field("admin_url", &url::redact(&self.admin_url))
            .field("description", &self.description)
            .field("throwaway", &self.cluster.is_some())
            .finish()
    }
}

/// Why a connection attempt failed; `Sql` keeps the error so callers can look at SQLSTATEs.
enum ConnectFailure {
    Invalid(String),
    Timeout(Duration),
    Sql(sqlx::Error),
}

impl ConnectFailure {
    fn sqlstate(&self) -> Option<String> {
        match self {
            ConnectFailure::Sql(sqlx::Error::Database(e)) => e.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectFailure::Invalid(reason) => write!(f, "invalid URL: {reason}"),
            ConnectFailure::Timeout(t) => write!(f, "no answer within {:.1}s", t.as_secs_f32()),
            ConnectFailure::Sql(e) => write!(f, "{e}"),
        }
    }
}

fn parse_options(url: &str) -> Result<PgConnectOptions, ConnectFailure> {
    PgConnectOptions::from_str(url)
        .map(|o| o.disable_statement_logging())
        .map_err(|e| ConnectFailure::Invalid(e.to_string()))
}

async fn connect(url: &str, timeout: Duration) -> Result<PgConnection, ConnectFailure> {
    let options = parse_options(url)?;
    match tokio::time::timeout(timeout, options.connect()).await {
        Err(_) => Err(ConnectFailure::Timeout(timeout)),
        Ok(Err(e)) => Err(ConnectFailure::Sql(e)),
        Ok(Ok(conn)) => Ok(conn),
    }
}

/// `host:port`, or the socket directory, for messages. Never includes credentials.
fn target_of(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(dir) => format!("{} (Unix socket)", dir.display()),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// `15.20` from `SHOW server_version` (which may append a distribution suffix).
async fn server_version(conn: &mut PgConnection) -> String {
    sqlx::query_scalar::<_, String>("SHOW server_version")
        .fetch_one(conn)
        .await
        .ok()
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "(unknown version)".to_owned())
}

fn probing_disabled() -> bool {
    std::env::var(NO_PROBE_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The OS user name, which is also the default superuser of Homebrew and source installs.
async fn os_user() -> Option<String> {
    for var in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(var) {
            if !name.is_empty() {
                return Some(name);
            }
        }
    }
    let out = tokio::process::Command::new("id")
        .arg("-un")
        .output()
        .await
        .ok()?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !name.is_empty()).then_some(name)
}

/// Running local servers worth trying, as `(label, admin URL)`, in order.
async fn local_candidates() -> Vec<(String, String)> {
    let mut users = vec!["postgres".to_owned()];
    if let Some(me) = os_user().await {
        if me != "postgres" {
            users.push(me);
        }
    }
    let mut out = Vec::new();
    for user in &users {
        out.push((
            format!("{user}@127.0.0.1:5432"),
            format!("postgres://{user}@127.0.0.1:5432/postgres"),
        ));
    }
    for dir in ["/var/run/postgresql", "/tmp"] {
        for user in &users {
            out.push((
                format!("{user}@{dir}"),
                format!("postgres:///postgres?host={dir}&user={user}"),
            ));
        }
    }
    out
}

fn valid_database_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

impl LocalPostgres {
    /// Finds a server as described in the module docs, starting a throwaway cluster if allowed.
    pub async fn find_or_start(opts: FindOptions) -> Result<Self, LocalPgError> {
        if let Some(url) = opts
            .database_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            return Self::from_url(url).await;
        }

        let mut tried = Vec::new();
        if probing_disabled() {
            tried.push(format!("nothing: probing disabled by {NO_PROBE_ENV}"));
        } else {
            for (label, url) in local_candidates().await {
                match Self::probe(&url).await {
                    Ok(found) => return Ok(found),
                    Err(reason) => tried.push(format!("{label}: {reason}")),
                }
            }
        }

        if !opts.allow_throwaway {
            return Err(LocalPgError::NotRunning {
                tried: tried.join("; "),
            });
        }
        Self::start_throwaway(opts.progress).await
    }

    /// Starts a throwaway cluster without looking for running servers. Fails with
    /// [`LocalPgError::NoPostgres`] when the machine has no server binaries.
    pub async fn start_throwaway(progress: bool) -> Result<Self, LocalPgError> {
        let bins = binaries::find().await.ok_or(LocalPgError::NoPostgres)?;
        let cluster = cluster::Cluster::start(&bins, progress).await?;
        Ok(LocalPostgres {
            admin_url: cluster.admin_url(),
            description: format!(
                "throwaway cluster (PostgreSQL {}) in {}, port {}",
                cluster.version(),
                cluster.dir().display(),
                cluster.port()
            ),
            cluster: Some(cluster),
        })
    }

    /// The newest PostgreSQL server installation on this machine, if any.
    pub async fn find_server_binaries() -> Option<ServerBinaries> {
        binaries::find().await
    }

    async fn from_url(url: &str) -> Result<Self, LocalPgError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| LocalPgError::InvalidUrl {
            url: url::redact(url),
            reason: e.to_string(),
        })?;
        let target = target_of(&options);
        // Administer through the maintenance database so the URL's own database may be
        // dropped and re-created, but fall back to the URL as given when we may not use
        // `postgres` (missing, or no CONNECT privilege on a managed server).
        let maintenance = url::with_database(url, "postgres");
        let (admin_url, mut conn) = match connect(&maintenance, URL_TIMEOUT).await {
            Ok(conn) => (maintenance, conn),
            Err(e) if matches!(e.sqlstate().as_deref(), Some("3D000" | "42501")) => {
                let conn =
                    connect(url, URL_TIMEOUT)
                        .await
                        .map_err(|e| LocalPgError::Unreachable {
                            target: target.clone(),
                            url: url::redact(url),
                            reason: e.to_string(),
                        })?;
                (url.to_owned(), conn)
            }
            Err(e) => {
                return Err(LocalPgError::Unreachable {
                    target,
                    url: url::redact(url),
                    reason: e.to_string(),
                })
            }
        };
        let version = server_version(&mut conn).await;
        let _ = conn.close().await;
        Ok(LocalPostgres {
            admin_url,
            description: format!("PostgreSQL {version} at {target} (DATABASE_URL)"),
            cluster: None,
        })
    }

    async fn probe(url: &str) -> Result<Self, String> {
        let options = parse_options(url).map_err(|e| e.to_string())?;
        if let Some(dir) = options.get_socket() {
            // Skip the connection attempt (and its error text) when there is no socket file.
            let socket = dir.join(format!(".s.PGSQL.{}", options.get_port()));
            if !socket.exists() {
                return Err("no socket".to_owned());
            }
        }
        let mut conn = connect(url, PROBE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let version = server_version(&mut conn).await;
        let _ = conn.close().await;
        Ok(LocalPostgres {
            admin_url: url.to_owned(),
            description: format!("PostgreSQL {version} at {}", target_of(&options)),
            cluster: None,
        })
    }

    /// A URL for the server's maintenance database (to CREATE/DROP DATABASE). May contain a
    /// password: print [`LocalPostgres::describe`] or [`redact_url`] of it instead.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The same server, another database.
    pub fn url_for(&self, database: &str) -> String {
        url::with_database(&self.admin_url, database)
    }

    /// The same server, another database, logging in as another role.
    pub fn url_as(&self, database: &str, user: &str, password: &str) -> String {
        url::with_login(&self.url_for(database), user, password)
    }

    pub fn is_throwaway(&self) -> bool {
        self.cluster.is_some()
    }

    /// Human-readable, password-free: `PostgreSQL 15.20 at 127.0.0.1:5432` or
    /// `throwaway cluster (PostgreSQL 15.20) in /tmp/stagecast-pg-…, port 54321`.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// The throwaway cluster's directory (data, socket, log), if this is one.
    pub fn throwaway_dir(&self) -> Option<&Path> {
        self.cluster.as_ref().map(|c| c.dir())
    }

    /// Crash-restarts the throwaway cluster (SIGQUIT, down for `down_for`, started again on the
    /// same port). Refused for any other server: stagecast never restarts a server it did not
    /// start.
    pub async fn restart_throwaway(&mut self, down_for: Duration) -> Result<(), LocalPgError> {
        match self.cluster.as_mut() {
            Some(cluster) => cluster.restart(down_for).await,
            None => Err(LocalPgError::NotThrowaway {
                server: self.description.clone(),
            }),
        }
    }

    /// The throwaway cluster's postmaster PID, if this is one.
    pub fn throwaway_pid(&self) -> Option<u32> {
        self.cluster.as_ref().and_then(|c| c.postmaster_pid())
    }

    async fn admin(&self, action: &str, sql: &str) -> Result<(), LocalPgError> {
        let fail = |reason: String, code: Option<String>| {
            let hint = match code.as_deref() {
                Some("42501") => " The role needs the CREATEDB privilege (`ALTER ROLE <role> \
                                  CREATEDB`), or set DATABASE_URL to a role that has it."
                    .to_owned(),
                _ => String::new(),
            };
            LocalPgError::Admin {
                action: action.to_owned(),
                server: self.describe(),
                reason,
                code,
                hint,
            }
        };
        let mut conn = connect(&self.admin_url, ADMIN_TIMEOUT)
            .await
            .map_err(|e| fail(e.to_string(), e.sqlstate()))?;
        // Simple-query protocol: CREATE/DROP DATABASE may not run inside the implicit
        // transaction of an extended-protocol statement on every server version.
        let result = sqlx::raw_sql(sql).execute(&mut conn).await;
        let _ = conn.close().await;
        result.map(drop).map_err(|e| {
            let code = match &e {
                sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
                _ => None,
            };
            fail(e.to_string(), code)
        })
    }

    /// Creates database `name` (letters, digits, `_`) and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String, LocalPgError> {
        if !valid_database_name(name) {
            return Err(LocalPgError::InvalidDatabaseName(name.to_owned()));
        }
        self.admin(
            &format!("creating database {name}"),
            &format!("CREATE DATABASE \"{name}\""),
        )
        .await?;
        Ok(self.url_for(name))
    }

    /// Drops database `name` if it exists, disconnecting its sessions first.
    pub async fn drop_database(&self, name: &str) -> Result<(), LocalPgError> {
        if !valid_database_name(name) {
            return Err(LocalPgError::InvalidDatabaseName(name.to_owned()));
        }
        self.admin(
            &format!("dropping database {name}"),
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        assert!(valid_database_name("stagecast_test_12_0_abcdef01"));
        assert!(valid_database_name("_x"));
        assert!(!valid_database_name(""));
        assert!(!valid_database_name("1abc"));
        assert!(!valid_database_name("a\"; DROP DATABASE x; --"));
        assert!(!valid_database_name(&"a".repeat(64)));
    }

    #[test]
    fn messages_say_what_to_do_and_hide_passwords() {
        let e = LocalPgError::NoPostgres.to_string();
        assert!(e.contains("sudo apt-get install postgresql"), "{e}");
        assert!(e.contains("DATABASE_URL"), "{e}");

        let opts = FindOptions {
            database_url: Some("postgres://u:hunter2@h/db".into()),
            ..FindOptions::default()
        };
        assert!(!format!("{opts:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn unreachable_database_url_is_an_error_not_a_fallback() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let err = LocalPostgres::find_or_start(FindOptions {
            database_url: Some("postgres://app:hunter2@127.0.0.1:1/crm".into()),
            allow_throwaway: true,
            progress: false,
        })
        .await
        .expect_err("must not fall back to another server");
        let msg = err.to_string();
        assert!(matches!(err, LocalPgError::Unreachable { .. }), "{msg}");
        assert!(msg.contains("127.0.0.1:1"), "{msg}");
        assert!(msg.contains("postgres://app:***@127.0.0.1:1/crm"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[tokio::test]
    async fn invalid_database_url_is_reported_redacted() {
        let err = LocalPostgres::find_or_start(FindOptions {
            database_url: Some("postgres://app:hunter2@127.0.0.1:notaport/crm".into()),
            ..FindOptions::default()
        })
        .await
        .expect_err("invalid URL");
        let msg = err.to_string();
        assert!(matches!(err, LocalPgError::InvalidUrl { .. }), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
