//! `stagecast roles`: the database roles of a deployment (src/roles.rs, sql/roles/).

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sqlx::{ConnectOptions as _, Connection as _};

use super::DatabaseArgs;
use crate::roles::{self, RoleNames, RunAs};

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// Print every script with the role names filled in, each headed by who runs it and when.
    Print(PrintArgs),
    /// Apply the owner's part (the worker's grants, and the optional CRM and admin parts) as
    /// the role in DATABASE_URL, which must be the owner. Run it after every `stagecast migrate`.
    Apply(ApplyArgs),
}

#[derive(Debug, Args, Clone)]
pub struct Names {
    /// The role that runs `stagecast run`.
    #[arg(long)]
    pub worker: String,
    /// The CRM's application role, when stagecast's migrations created the contract tables
    /// (grants it reads and writes on them; nothing on schema stagecast).
    #[arg(long)]
    pub crm: Option<String>,
    /// A role for `stagecast jobs` and a CRM admin screen (list, show, replay, cancel).
    #[arg(long)]
    pub admin: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct PrintArgs {
    /// The CRM's database.
    #[arg(long)]
    pub database: String,
    /// The role that runs `stagecast migrate` and owns what it creates.
    #[arg(long)]
    pub owner: String,
    #[command(flatten)]
    pub names: Names,
    /// Major version of the PostgreSQL server (16 and older: the worker owns the tables it
    /// vacuums; 17 and newer: it gets the MAINTAIN privilege instead).
    #[arg(long)]
    pub pg_major: u32,
}

#[derive(Debug, Args, Clone)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub names: Names,
}

pub async fn run(cmd: RolesCommand) -> anyhow::Result<()> {
    match cmd {
        RolesCommand::Print(args) => print(args),
        RolesCommand::Apply(args) => apply(args).await,
    }
}

fn print(args: PrintArgs) -> anyhow::Result<()> {
    let names = RoleNames {
        database: args.database,
        owner: args.owner,
        worker: args.names.worker,
        crm: args.names.crm,
        admin: args.names.admin,
    };
    let scripts = roles::setup_scripts(&names, args.pg_major)?
        .into_iter()
        .chain(roles::grant_scripts(&names, args.pg_major)?);
    for s in scripts {
        let who = match s.run_as {
            RunAs::Superuser => format!(
                "as a superuser, once, connected to database {}",
                roles::quote_ident(&names.database)
            ),
            RunAs::Owner => format!(
                "as {}, after every `stagecast migrate` (or: stagecast roles apply)",
                roles::quote_ident(&names.owner)
            ),
        };
        println!("-- ===== sql/roles/{}: {who} =====", s.file);
        println!("{}", s.sql.trim_end());
        println!();
    }
    Ok(())
}

async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let url = &args.db.database_url;
    let redacted = crate::local_pg::redact_url(url);
    let mut conn = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .with_context(|| format!("invalid DATABASE_URL {redacted}"))?
        .connect()
        .await
        .with_context(|| format!("could not connect to the database at {redacted}"))?;
    let owner: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await?;
    let names = RoleNames {
        database: String::new(),
        owner: owner.clone(),
        worker: args.names.worker,
        crm: args.names.crm,
        admin: args.names.admin,
    };
    let major = roles::server_major(&mut conn).await?;
    let scripts = roles::grant_scripts(&names, major)?;
    roles::apply(&mut conn, &scripts).await.with_context(|| {
        format!("as role {owner:?}: run `stagecast roles apply` as the role that ran `stagecast migrate`")
    })?;
    let _ = conn.close().await;
    for s in &scripts {
        println!(
            "applied sql/roles/{} as {owner} (PostgreSQL {major})",
            s.file
        );
    }
    Ok(())
}
