//! `stagecast doctor`: checks the configuration end to end (database, settings, keys, pixels
//! against the Graph API, campaigns, stage events, queue) and prints what is wrong and how to
//! fix it, so nobody has to read code to find out.
//!
//! Read-only: it never changes the database (no migration, no sealing) and never sends events.
//! Exit code: 0 healthy (warnings allowed), 1 problems, 2 database unreachable.

mod config;
mod database;
mod keys;
mod pixels;
mod queue;
mod report;
mod settings;
mod vacuum;

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use clap::Args;

pub use report::{Check, Group, Report, Status, Summary, Verdict};
/// The settings of `stagecast run` the doctor checks (for the CLI's test that they match).
#[cfg(test)]
pub(crate) use settings::value_args as checked_settings;
pub use settings::RawSettings;
// The admin console shows these findings from the doctor's own code (src/console/).
pub use config::{campaigns as campaign_checks, stages as stage_checks};
pub use pixels::{default_pixel, in_use as pixels_in_use, setup_problem};

use crate::platforms::{registry, Registry};
use crate::secrets::{KeyRing, Secret};
use crate::settings::DatabaseArgs;
use crate::store::Store;
use database::SchemaState;

#[derive(Debug, Args, Clone)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Print the report as JSON (for monitoring and scripts).
    #[arg(long)]
    pub json: bool,
    /// Timeout of each network check (database connection, one Graph API request per pixel).
    #[arg(long, env = "STAGECAST_DOCTOR_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The settings of `stagecast run` (same flags and environment variables), checked here.
    #[command(flatten)]
    pub settings: RawSettings,
}

/// The doctor found problems or could not reach the database. Its report is already printed;
/// the CLI turns this into the exit code and prints nothing more.
#[derive(Debug, thiserror::Error)]
#[error("stagecast doctor: {0:?}")]
pub struct Unhealthy(pub Verdict);

impl Unhealthy {
    pub fn exit_code(&self) -> std::process::ExitCode {
        std::process::ExitCode::from(self.0.exit_code())
    }
}

/// `stagecast doctor`.
pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let report = diagnose(&args).await;
    let text = if args.json {
        report.render_json()
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        report.render_text(color)
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    match report.verdict() {
        Verdict::Healthy => Ok(()),
        verdict => Err(Unhealthy(verdict).into()),
    }
}

/// Run every check. Never fails: whatever goes wrong becomes a line of the report.
pub async fn diagnose(args: &DoctorArgs) -> Report {
    let url = &args.db.database_url;
    let mut report = Report {
        database: crate::local_pg::redact_url(url),
        checks: Vec::new(),
        database_unreachable: false,
    };
    // Everything that must never reach the output, scrubbed from it at the end: the database
    // password (in the user info or a `password=` parameter) and, later, every token read.
    let mut secrets: Vec<Secret> = Vec::new();
    if let Ok(parsed) = reqwest::Url::parse(url) {
        secrets.extend(parsed.password().map(|p| Secret::new(p.to_string())));
        secrets.extend(
            parsed
                .query_pairs()
                .filter(|(k, _)| k == "password")
                .map(|(_, v)| Secret::new(v.into_owned())),
        );
    }

    let (settings_checks, typed) = settings::check(&args.settings);
    let ring = KeyRing::from_env();
    // The platforms whose settings are valid, as the worker would build them but checking each
    // destination within the doctor's timeout; invalid ones are reported under Settings.
    let platforms = typed
        .as_ref()
        .map(|t| {
            let config = t.platforms.config().with_request_timeout(args.timeout);
            Registry::from_config_lenient(&config).0
        })
        .unwrap_or_default();

    match database::connect(url, args.timeout).await {
        Err(problem) => {
            report.database_unreachable = true;
            report.checks.push(problem);
            report.checks.extend(settings_checks);
            report.checks.extend(keys::ring(&ring));
            report.checks.push(
                Check::build(Group::Database, "database.rest", "Other checks")
                    .skipped("not run: they read the database"),
            );
        }
        Ok(store) => {
            let checks =
                with_database(&store, settings_checks, &ring, &platforms, &mut secrets).await;
            report.checks.extend(checks);
            store.pool().close().await;
        }
    }
    let exposed: Vec<&str> = secrets.iter().map(Secret::expose).collect();
    report.redact(&exposed);
    report.checks.sort_by_key(|c| c.group);
    report
}

/// A read that failed: a problem when the schema is current, merely skipped when migrations are
/// pending (the missing objects are the reason, already reported).
fn read_failed(
    group: Group,
    id: &str,
    title: &str,
    schema: SchemaState,
    e: &crate::store::StoreError,
) -> Check {
    let c = Check::build(group, id, title);
    if e.is_timeout() {
        return c.problem(
            format!("gave up waiting for the database: {e}"),
            "a session holds a lock on the table this reads (see Table locks under Queue) or the server is overloaded; end that transaction and run the doctor again",
        );
    }
    match schema {
        SchemaState::Current => c.problem(
            format!("could not read the database: {e}"),
            "check that the role in DATABASE_URL has the worker's grants: `stagecast roles apply --worker <role>` as the owner (docs/operations.md, Database roles)",
        ),
        _ => c.skipped(format!("not checked until the migrations are complete ({e})")),
    }
}

async fn with_database(
    store: &Store,
    settings_checks: Vec<Check>,
    ring: &keys::Ring,
    platforms: &Registry,
    secrets: &mut Vec<Secret>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    match store.doctor_server_info().await {
        Ok(info) => checks.push(database::server(&info)),
        Err(e) => checks.push(
            Check::build(Group::Database, "database.connection", "Connection").problem(
                format!("connected, but a query failed: {e}"),
                "check the server's log",
            ),
        ),
    }
    let known = database::known_migrations();
    let schema = match store.doctor_applied_migrations().await {
        Ok(applied) => {
            let (c, state) = database::migrations(applied.as_deref(), &known);
            checks.extend(c);
            state
        }
        Err(e) => {
            checks.push(read_failed(
                Group::Database,
                "database.migrations",
                "Migrations",
                SchemaState::Current,
                &e,
            ));
            SchemaState::Incomplete
        }
    };
    checks.extend(settings_checks);

    if schema == SchemaState::NeverMigrated {
        checks.extend(keys::ring(ring));
        for group in [
            Group::Pixels,
            Group::Campaigns,
            Group::StageEvents,
            Group::Queue,
        ] {
            checks.push(
                Check::build(group, format!("{}.schema", group_id(group)), group.title())
                    .skipped("not checked: the database was never migrated"),
            );
        }
        return checks;
    }

    // Pixels: tokens, each platform's API, the default pixels; then campaigns, which need them.
    let pixels = match store.doctor_pixels().await {
        Ok(p) => Some(p),
        Err(e) => {
            checks.push(read_failed(
                Group::Pixels,
                "pixels.read",
                "Pixels",
                schema,
                &e,
            ));
            checks.extend(keys::ring(ring));
            None
        }
    };
    if let Some(pixels) = &pixels {
        for p in pixels {
            if let Some(t) = p.access_token.as_deref().filter(|t| !t.trim().is_empty()) {
                secrets.push(Secret::new(t.trim().to_string()));
            }
            if let Ok(t) = keys::token_for(p, ring) {
                secrets.push(t);
            }
        }
        checks.extend(keys::tokens(ring, pixels));
        checks.extend(pixels::api(pixels, ring, platforms).await);
        for platform in registry::available().filter(|&p| pixels::in_use(pixels, p)) {
            checks.push(pixels::default_pixel(pixels, platform));
        }
        checks.push(pixels::test_event_codes(pixels));
        checks.push(pixels::options(pixels, platforms));
        match store
            .doctor_stale_click_ids(pixels::CTWA_CLID_MAX_AGE, pixels::FBCLID_MAX_AGE)
            .await
        {
            Ok((ctwa, fbclid)) => checks.push(pixels::stale_click_ids(ctwa, fbclid)),
            Err(e) => checks.push(read_failed(
                Group::Pixels,
                "pixels.click_ids",
                "Stored click ids",
                schema,
                &e,
            )),
        }
        match store.doctor_campaigns().await {
            Ok(campaigns) => {
                for platform in registry::available().filter(|&p| pixels::in_use(pixels, p)) {
                    checks.extend(config::campaigns(&campaigns, pixels, platform));
                }
            }
            Err(e) => checks.push(read_failed(
                Group::Campaigns,
                "campaigns.read",
                "Campaigns",
                schema,
                &e,
            )),
        }
    } else {
        checks.push(
            Check::build(Group::Campaigns, "campaigns.read", "Campaigns")
                .skipped("not checked: the pixels could not be read"),
        );
    }

    let stages = match store.doctor_stages().await {
        Ok(stages) => {
            checks.extend(config::stages(&stages, platforms));
            stages
        }
        Err(e) => {
            checks.push(read_failed(
                Group::StageEvents,
                "stage_events.read",
                "Stage events",
                schema,
                &e,
            ));
            Vec::new()
        }
    };
    match store.doctor_config_problems().await {
        Ok(rows) => checks.push(config::config_problems(&rows, &stages)),
        Err(e) => checks.push(read_failed(
            Group::StageEvents,
            "stage_events.config_problems",
            "Recorded problems",
            schema,
            &e,
        )),
    }

    match store.doctor_table_locks().await {
        Ok(locks) => checks.push(queue::check_locks(&locks, chrono::Utc::now())),
        Err(e) => checks.push(read_failed(
            Group::Queue,
            "queue.locks",
            "Table locks",
            schema,
            &e,
        )),
    }
    match store.doctor_workers().await {
        Ok(workers) => checks.extend(queue::check_workers(&workers, chrono::Utc::now())),
        Err(e) => checks.push(read_failed(
            Group::Queue,
            "queue.workers",
            "Workers",
            schema,
            &e,
        )),
    }
    match store.doctor_queue_health().await {
        Ok(h) => checks.extend(queue::check_health(&h, chrono::Utc::now())),
        Err(e) => checks.push(read_failed(Group::Queue, "queue.read", "Queue", schema, &e)),
    }
    match store.vacuum_status().await {
        Ok(tables) => checks.extend(vacuum::check_vacuum(&tables, chrono::Utc::now())),
        Err(e) => checks.push(read_failed(
            Group::Queue,
            "queue.vacuum",
            "Vacuum",
            schema,
            &e,
        )),
    }
    checks
}

fn group_id(group: Group) -> &'static str {
    match group {
        Group::Database => "database",
        Group::Settings => "settings",
        Group::Keys => "keys",
        Group::Pixels => "pixels",
        Group::Campaigns => "campaigns",
        Group::StageEvents => "stage_events",
        Group::Queue => "queue",
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use clap::{FromArgMatches, Parser};

    use super::DoctorArgs;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        args: DoctorArgs,
    }

    /// Parse doctor arguments as the CLI would (plus a placeholder database URL).
    pub fn parse_args(args: &[&str]) -> DoctorArgs {
        let argv = [
            "doctor",
            "--database-url=postgres://u:secret@127.0.0.1:1/db",
        ]
        .into_iter()
        .chain(args.iter().copied());
        let matches = <Harness as clap::CommandFactory>::command()
            .try_get_matches_from(argv)
            .expect("doctor arguments parse");
        Harness::from_arg_matches(&matches)
            .expect("doctor arguments")
            .args
    }
}
