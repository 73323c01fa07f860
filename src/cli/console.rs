//! `stagecast console`: the admin web console without a worker (docs/console.md), and the
//! console flags `stagecast run` shares.

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sqlx::postgres::PgConnectOptions;

use crate::console::{ConsoleConfig, ConsoleServer, Users};
use crate::locale::Locale;
use crate::store::Store;

/// Where `stagecast console` listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9465";

#[derive(Debug, Args, Clone)]
pub struct ConsoleArgs {
    /// Postgres URL of the admin role (sql/roles/admin.sql): what the console reads and acts as.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Address to listen on. Keep it on loopback unless a TLS proxy is in front (docs/console.md).
    #[arg(long, env = "STAGECAST_CONSOLE_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// Who may sign in: `name:role:token` entries separated by commas, role `admin` or `viewer`,
    /// tokens of 32 or more characters. Required: the console has no default password.
    #[arg(long, env = "STAGECAST_CONSOLE_USERS", hide_env_values = true)]
    pub users: Option<String>,
    /// Default language of the pages (each session can switch): pt, en or es.
    #[arg(long, env = "STAGECAST_LOCALE", default_value = "pt")]
    pub locale: Locale,
}

/// The console flags of `stagecast run`.
#[derive(Debug, Args, Clone)]
pub struct RunConsoleArgs {
    /// Serve the admin web console on this address too (e.g. 127.0.0.1:9465); empty, the
    /// default, leaves it off. Needs --console-database-url and --console-users (docs/console.md).
    #[arg(long, env = "STAGECAST_CONSOLE_ADDR", default_value = "")]
    pub console_addr: String,
    /// The console's Postgres URL: the admin role (sql/roles/admin.sql), not the worker's.
    #[arg(long, env = "STAGECAST_CONSOLE_DATABASE_URL", hide_env_values = true)]
    pub console_database_url: Option<String>,
    /// Who may sign in to the console: `name:role:token` entries separated by commas, role
    /// `admin` or `viewer`, tokens of 32 or more characters.
    #[arg(long, env = "STAGECAST_CONSOLE_USERS", hide_env_values = true)]
    pub console_users: Option<String>,
}

/// A console to start: checked before anything connects, so a missing user list or address
/// stops the process at once.
pub struct Planned {
    addr: SocketAddr,
    users: Users,
    database_url: String,
}

fn parse_addr(s: &str) -> anyhow::Result<SocketAddr> {
    s.trim().parse().map_err(|_| {
        anyhow::anyhow!("invalid console address {s:?}: expected host:port such as {DEFAULT_ADDR}")
    })
}

fn users(spec: Option<&str>) -> anyhow::Result<Users> {
    Ok(Users::parse(spec.unwrap_or(""))?)
}

impl RunConsoleArgs {
    /// `None` when the console is off.
    pub fn plan(&self) -> anyhow::Result<Option<Planned>> {
        if self.console_addr.trim().is_empty() {
            return Ok(None);
        }
        let addr = parse_addr(&self.console_addr)?;
        let users = users(self.console_users.as_deref())
            .context("the console (--console-addr) cannot start")?;
        let database_url = self
            .console_database_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .context("the console (--console-addr) needs --console-database-url (STAGECAST_CONSOLE_DATABASE_URL): the admin role's URL, not the worker's")?;
        Ok(Some(Planned {
            addr,
            users,
            database_url,
        }))
    }
}

/// Connect as the admin role and serve.
pub async fn start(plan: Planned, locale: Locale) -> anyhow::Result<ConsoleServer> {
    let url = crate::local_pg::redact_url(&plan.database_url);
    // The admin functions' NOTICEs ("job 42 is already cancelled") are for psql users.
    let options = PgConnectOptions::from_str(&plan.database_url)
        .with_context(|| format!("invalid console database URL {url}"))?
        .options([("client_min_messages", "warning")]);
    let pool = crate::store::pool_options()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .with_context(|| format!("the console could not connect to the database at {url}"))?;
    let config = ConsoleConfig {
        addr: plan.addr,
        users: plan.users,
        locale,
    };
    crate::console::serve(config, Store::new(pool))
        .await
        .with_context(|| format!("the console could not listen on {}", plan.addr))
}

/// `stagecast console`.
pub async fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    let plan = Planned {
        addr: parse_addr(&args.addr)?,
        users: users(args.users.as_deref()).context("the console cannot start")?,
        database_url: args.database_url.clone(),
    };
    let server = start(plan, args.locale).await?;
    println!("stagecast console on http://{}/", server.addr);
    super::run::wait_for_signal().await;
    tracing::info!("console stopping");
    drop(server);
    Ok(())
}
