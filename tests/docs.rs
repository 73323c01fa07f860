//! The user docs stay true to the code:
//!
//! - docs/events.md names every event of `stagecast::catalog::all()` with its pt label, and its
//!   catalog table is exactly the one generated here from the catalog;
//! - the routing table of docs/events.md is what `decide_routing` decides, row by row, and covers
//!   every messaging mode with and without business messaging;
//! - docs/fallbacks.md names every `AlertCause::ALL` code, and quotes the pt message each cause
//!   renders (`Alert::render`) for the example situation given below;
//! - the runbook (docs/operations.md) and docs/fallbacks.md say a cause is "not raised" exactly
//!   when no code outside `src/alerts.rs` raises it;
//! - the view contract of docs/crm-integration.md §5 is the views' real columns and types, and
//!   every statement in `sql/` prepares against views redefined with only those columns (what a
//!   CRM following the doc would have; this one needs the database);
//! - the doctor sample's migration count and newest migration are those of `migrations/`;
//! - one statement on whether Meta drops re-sent events, and no doc or help text claiming it does;
//! - docs/CONVERSION_EVENTS.md: its payloads are what Meta's encoder builds and the sandbox
//!   accepts, its tables what the retry logic decides, its alerts and links exist
//!   (`conversion_events`);
//! - no file of the repository points into the project's private research notes (which
//!   maintainers do not have): facts are cited from their public page or stated in docs/.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stagecast::alerts::{Alert, AlertCause, AlertDetails};
use stagecast::catalog::{self, EventKind};
use stagecast::locale::Locale;

fn read_doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

const CATALOG_BEGIN: &str =
    "<!-- catalog:begin (generated from stagecast::catalog::all() by tests/docs.rs; do not edit by hand) -->";
const CATALOG_END: &str = "<!-- catalog:end -->";

/// Escapes what would break a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The catalog table of docs/events.md, generated from the catalog.
fn catalog_table() -> String {
    let mut out = String::from(
        "| `event_name` | kind | label (pt) | when to use (pt) | sent with `business_messaging` as |\n\
         |---|---|---|---|---|\n",
    );
    for d in catalog::all() {
        let (kind, bm) = match d.kind {
            EventKind::Standard => (
                "standard",
                match d.business_messaging_name {
                    Some(n) => format!("`{n}`"),
                    None => format!("`{}` (unchanged)", d.name),
                },
            ),
            EventKind::BusinessMessagingOnly => (
                "business messaging only",
                format!("`{}`", d.business_messaging_name.unwrap_or(d.name)),
            ),
            EventKind::Other => ("custom", "the custom name, unchanged".to_string()),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            d.name,
            kind,
            cell(d.label.pt),
            cell(d.when_to_use.pt),
            bm
        ));
    }
    out
}

fn between<'a>(doc: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = doc.find(begin)? + begin.len();
    let len = doc[start..].find(end)?;
    Some(doc[start..start + len].trim_matches('\n'))
}

#[test]
fn events_doc_names_every_catalog_event_and_its_pt_label() {
    let doc = read_doc("events.md");
    for d in catalog::all() {
        assert!(
            doc.contains(&format!("`{}`", d.name)),
            "docs/events.md does not mention the catalog event `{}`",
            d.name
        );
        assert!(
            doc.contains(d.label.pt),
            "docs/events.md does not show the pt label {:?} of `{}`",
            d.label.pt,
            d.name
        );
    }
}

#[test]
fn events_doc_catalog_table_is_generated_from_the_catalog() {
    let doc = read_doc("events.md");
    let expected = catalog_table();
    let found = between(&doc, CATALOG_BEGIN, CATALOG_END).unwrap_or_else(|| {
        panic!("docs/events.md lacks the catalog markers; put this between them:\n{CATALOG_BEGIN}\n{expected}{CATALOG_END}")
    });
    assert!(
        found == expected.trim_end_matches('\n'),
        "the catalog table in docs/events.md is out of date; replace it with:\n{expected}"
    );
}

const ROUTING_BEGIN: &str = "<!-- routing:begin -->";
const ROUTING_END: &str = "<!-- routing:end -->";

/// The text of a cell without its backticks.
fn unquote(cell: &str) -> String {
    cell.trim().replace('`', "")
}

#[test]
fn events_doc_routing_table_is_what_the_code_decides() {
    use stagecast::platforms::meta::payload::{decide_routing, MessagingMode, RoutingRefusal};
    use stagecast::platforms::meta::ActionSource;
    let doc = read_doc("events.md");
    let table = between(&doc, ROUTING_BEGIN, ROUTING_END)
        .expect("docs/events.md has the routing table between its markers");
    let mut seen = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for line in table.lines().skip(2).filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        assert_eq!(cells.len(), 4, "a routing row has 4 cells: {line}");
        let mode_text = unquote(cells[0]);
        let mode = MessagingMode::parse(Some(&mode_text));
        assert_eq!(mode.as_str(), mode_text, "unknown mode in: {line}");
        let both = match cells[1].trim() {
            "yes" => true,
            "no" => false,
            other => panic!("expected yes/no, got {other:?} in: {line}"),
        };
        let event_cell = unquote(cells[2]);
        let (name, custom) = match event_cell.strip_suffix(" (custom)") {
            Some(n) => (n.to_string(), true),
            None => (event_cell.clone(), false),
        };
        let event = catalog::resolve(
            Some(if custom {
                catalog::OTHER
            } else {
                name.as_str()
            }),
            custom.then_some(name.as_str()),
        )
        .unwrap_or_else(|e| panic!("{line}: {e}"));
        let decided = decide_routing(mode, ActionSource::PhysicalStore, both, both, &event);
        let expected = match &decided {
            Ok((ActionSource::BusinessMessaging, sent)) => format!("business_messaging, {sent}"),
            Ok((_, sent)) => format!("the pixel's action_source, {sent}"),
            Err(RoutingRefusal::BusinessMessagingOnly { .. }) => {
                "not sent: business_messaging_only_event".to_string()
            }
            Err(RoutingRefusal::UnsupportedActionSource(_)) => {
                "not sent: unsupported_action_source".to_string()
            }
        };
        if unquote(cells[3]) != expected {
            problems.push(format!(
                "{line}
  the code decides: {expected}"
            ));
        }
        seen.insert((mode_text, both, custom, name));
    }
    assert!(
        problems.is_empty(),
        "docs/events.md routing table:
{}",
        problems.join(
            "
"
        )
    );
    // Every mode, with and without business messaging, for the names the docs single out.
    for mode in ["auto", "always", "never"] {
        for both in [true, false] {
            for name in ["Lead", "Contact", "Schedule", "QualifiedLead"] {
                assert!(
                    seen.contains(&(mode.to_string(), both, false, name.to_string())),
                    "the routing table lacks {mode} / {both} / {name}"
                );
            }
            assert!(
                seen.iter()
                    .any(|(m, b, custom, _)| m == mode && *b == both && *custom),
                "the routing table lacks a custom name for {mode} / {both}"
            );
        }
    }
}

/// The situation each cause is illustrated with in docs/fallbacks.md.
fn example(cause: AlertCause) -> AlertDetails {
    let d = |event: &str, stage: &str| AlertDetails {
        platform: Some("facebook".into()),
        event_name: Some(event.into()),
        stage_name: Some(stage.into()),
        ..AlertDetails::default()
    };
    let pixel = Some("111222333".to_string());
    let trace = Some("AbC123xyz".to_string());
    match cause {
        AlertCause::NoCampaign | AlertCause::EventTooOld => d("Lead", "Qualificado"),
        AlertCause::PixelMissing => AlertDetails {
            campaign: Some("Black Friday".into()),
            ..d("Lead", "Qualificado")
        },
        AlertCause::PixelInactive | AlertCause::TokenMissing | AlertCause::TokenUnreadable => {
            AlertDetails {
                pixel,
                ..d("Lead", "Qualificado")
            }
        }
        AlertCause::TokenInvalid => AlertDetails {
            pixel,
            code: Some("190".into()),
            trace_id: trace,
            trace_name: Some("fbtrace_id"),
            ..d("Purchase", "Venda fechada")
        },
        AlertCause::ApiError => AlertDetails {
            pixel,
            code: Some("100".into()),
            subcode: Some(33),
            trace_id: trace,
            trace_name: Some("fbtrace_id"),
            error: Some("Unsupported post request".into()),
            ..d("Lead", "Qualificado")
        },
        AlertCause::PurchaseWithoutValue => d("Purchase", "Venda fechada"),
        AlertCause::UnknownEventName => AlertDetails {
            suggestion: Some("Purchase".into()),
            ..d("purchase", "Venda fechada")
        },
        AlertCause::InvalidEventConfig => AlertDetails {
            error: Some("entry 1: event \"Other\" needs a custom event name".into()),
            ..d("Other", "Visita agendada")
        },
        AlertCause::UnsupportedPlatform => AlertDetails {
            platform: Some("tiktok".into()),
            ..d("Lead", "Qualificado")
        },
        AlertCause::DeliveryGaveUp => AlertDetails {
            error: Some(
                "Purchase to pixel 111222333: An unexpected error has occurred. Please retry your request later. (code 2, fbtrace_id AbC123xyz)"
                    .into(),
            ),
            ..d("Purchase", "Venda fechada")
        },
        AlertCause::AdNotLinked => AlertDetails {
            ad_id: Some("120226305854810726".into()),
            ..AlertDetails::default()
        },
        AlertCause::AdWithoutClickId => AlertDetails::default(),
        AlertCause::MissingLeadId => AlertDetails {
            pixel: Some("111222333".into()),
            ..d("Lead", "Qualificado")
        },
        AlertCause::RequestRefused => AlertDetails {
            pixel,
            code: Some("2500".into()),
            trace_id: trace,
            trace_name: Some("fbtrace_id"),
            error: Some("Unknown path components".into()),
            ..d("Lead", "Qualificado")
        },
        AlertCause::BusinessMessagingOnlyEvent => AlertDetails {
            pixel,
            suggestion: Some("Lead".into()),
            ..d("QualifiedLead", "Qualificado")
        },
        AlertCause::UnsupportedActionSource => AlertDetails {
            pixel,
            error: Some("action_source website needs website or app data (event_source_url and client_user_agent, or app_data) that stagecast does not send".into()),
            ..d("Lead", "Qualificado")
        },
        AlertCause::EventNotOnPlatform => AlertDetails {
            platform: Some("tiktok".into()),
            suggestion: Some("Purchase".into()),
            ..d("Donate", "Doação")
        },
        AlertCause::ClickTooOld => AlertDetails {
            platform: Some("google_ads".into()),
            code: Some("EXPIRED_EVENT".into()),
            ..d("Purchase", "Venda fechada")
        },
        AlertCause::ClickNotFound => AlertDetails {
            platform: Some("google_ads".into()),
            pixel: Some("123-456-7890".into()),
            code: Some("CLICK_NOT_FOUND".into()),
            ..d("Purchase", "Venda fechada")
        },
        AlertCause::ConversionActionMissing => AlertDetails {
            platform: Some("google_ads".into()),
            pixel: Some("123-456-7890".into()),
            ..d("Purchase", "Venda fechada")
        },
    }
}

#[test]
fn fallbacks_doc_lists_every_alert_cause_with_its_pt_message() {
    let doc = read_doc("fallbacks.md");
    for cause in AlertCause::ALL {
        assert!(
            doc.contains(&format!("`{}`", cause.code())),
            "docs/fallbacks.md does not list the alert cause `{}`",
            cause.code()
        );
        let text = Alert::new(cause, example(cause)).render(Locale::Pt);
        let text = text.strip_prefix("⚠️ stagecast: ").unwrap_or(&text);
        assert!(
            doc.contains(text),
            "docs/fallbacks.md does not quote the pt message of `{}`; expected:\n{text}",
            cause.code()
        );
    }
}

// ------------------------------------------------------------------------------------------
// Alert causes: raised by the code, or documented as not raised

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Every `.rs` file under `dir`, with its text cut at the first `#[cfg(test)]` (tests construct
/// every cause; only production code counts as raising one). Test-only files are skipped.
fn production_sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            production_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_name().unwrap().to_string_lossy();
            if name == "tests.rs" || name == "proptests.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.push((path, text));
        }
    }
}

/// Whether production code outside src/alerts.rs (where causes are only defined) uses `cause`.
fn raised(cause: AlertCause, sources: &[(PathBuf, String)]) -> bool {
    let needle = format!("AlertCause::{cause:?}");
    sources
        .iter()
        .filter(|(path, _)| !path.ends_with("src/alerts.rs"))
        .any(|(_, text)| text.contains(&needle))
}

/// The table row of `doc` that starts with the cause's code cell.
fn cause_row(doc: &str, cause: AlertCause) -> Option<&str> {
    let cell = format!("| `{}` |", cause.code());
    doc.lines().find(|l| l.trim_start().starts_with(&cell))
}

#[test]
fn runbook_and_fallbacks_say_not_raised_exactly_for_causes_the_code_never_raises() {
    let mut sources = Vec::new();
    production_sources(&repo("src"), &mut sources);
    production_sources(&repo("crates"), &mut sources);
    let operations = read_doc("operations.md");
    let runbook = operations
        .split("## Runbook")
        .nth(1)
        .expect("docs/operations.md has a ## Runbook section");
    let fallbacks = read_doc("fallbacks.md");
    let mut problems = Vec::new();
    for cause in AlertCause::ALL {
        let raised = raised(cause, &sources);
        for (doc_name, doc) in [
            ("the runbook of docs/operations.md", runbook),
            ("docs/fallbacks.md", fallbacks.as_str()),
        ] {
            let Some(row) = cause_row(doc, cause) else {
                problems.push(format!(
                    "{doc_name} has no table row for `{}`",
                    cause.code()
                ));
                continue;
            };
            let says_not_raised = row.to_lowercase().contains("not raised");
            if raised && says_not_raised {
                problems.push(format!(
                    "{doc_name} says `{}` is not raised, but the code raises it:\n  {row}",
                    cause.code()
                ));
            }
            if !raised && !says_not_raised {
                problems.push(format!(
                    "no code raises `{}` (AlertCause::{cause:?}), but {doc_name} does not say so:\n  {row}",
                    cause.code()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ------------------------------------------------------------------------------------------
// The view contract of docs/crm-integration.md

/// `(view, [(column, type)])` from the §5 table: cells like "`id` bigint, `name`, `email`
/// text, `active` boolean **not NULL**" (a name without a type takes the next one's).
fn documented_views() -> BTreeMap<String, Vec<(String, String)>> {
    let doc = read_doc("crm-integration.md");
    let section = doc
        .split("## 5. The adapter layer")
        .nth(1)
        .expect("docs/crm-integration.md has its §5");
    let mut views = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split(" | ").collect();
        let Some(view) = cells
            .first()
            .and_then(|c| {
                c.trim_start_matches('|')
                    .trim()
                    .strip_prefix("`stagecast.crm_")
            })
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        let mut columns: Vec<(String, String)> = Vec::new();
        for item in cells[1].split(", ") {
            let item = item.trim();
            let rest = item
                .strip_prefix('`')
                .unwrap_or_else(|| panic!("crm_{view}: unexpected column item {item:?}"));
            let (name, ty) = rest.split_once('`').unwrap();
            let ty = ty.replace("**", "").replace("not NULL", "");
            columns.push((name.to_string(), ty.trim().to_string()));
        }
        let mut next = String::new();
        for (name, ty) in columns.iter_mut().rev() {
            if ty.is_empty() {
                assert!(!next.is_empty(), "crm_{view}: no type for `{name}`");
                *ty = next.clone();
            } else {
                next = ty.clone();
            }
        }
        views.insert(format!("crm_{view}"), columns);
    }
    assert!(views.len() >= 7, "views found in the doc: {views:?}");
    views
}

/// `format_type` spelling of a documented type, without a type modifier.
fn pg_type(doc_type: &str) -> &str {
    match doc_type {
        "timestamptz" => "timestamp with time zone",
        other => other,
    }
}

/// Every statement the binary runs against a CRM database (`sql/`, except the benchmark's and
/// the demo's own), by file.
fn worker_statements() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in ["sql", "sql/admin", "sql/doctor"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(repo(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        for f in files {
            let name = f.strip_prefix(repo("")).unwrap().display().to_string();
            // sql/vacuum_table.sql is a template: the worker fills in a qualified table name.
            let sql = std::fs::read_to_string(&f)
                .unwrap()
                .replace("{table}", "stagecast.jobs");
            out.push((name, sql));
        }
    }
    out
}

#[tokio::test]
async fn the_view_contract_in_crm_integration_is_what_the_worker_reads() {
    use sqlx::{Connection as _, Executor as _};
    let db = support::TestDb::new().await;
    let documented = documented_views();
    let mut problems = Vec::new();

    // The doc lists each view's real columns, with their types.
    let real_views: Vec<String> = sqlx::query_scalar(
        "SELECT viewname::text FROM pg_views WHERE schemaname = 'stagecast' AND viewname LIKE 'crm\\_%' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for view in &real_views {
        if !documented.contains_key(view) {
            problems.push(format!("stagecast.{view} is not in the §5 table"));
        }
    }
    for (view, columns) in &documented {
        let real: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, regexp_replace(format_type(a.atttypid, a.atttypmod), '\\(.*\\)', '') \
               FROM pg_attribute a WHERE a.attrelid = ('stagecast.' || $1)::regclass \
                AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(view)
        .fetch_all(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("the doc names stagecast.{view}, which does not exist: {e}"));
        let doc: Vec<(String, String)> = columns
            .iter()
            .map(|(n, t)| (n.clone(), pg_type(t).to_string()))
            .collect();
        if real != doc {
            problems.push(format!(
                "stagecast.{view}: the doc says\n    {doc:?}\n  the migrations define\n    {real:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // A CRM that redefines the views from the doc: every statement still prepares (a column
    // the worker selects but the doc omits fails here, as it would in that CRM). As the doc
    // says to: redefined by the owner, then `stagecast roles apply` again, and prepared by the
    // worker role.
    let mut owner = sqlx::PgConnection::connect(&db.owner_url).await.unwrap();
    for (view, columns) in &documented {
        let select: Vec<String> = columns
            .iter()
            .map(|(n, t)| format!("NULL::{t} AS {n}"))
            .collect();
        let sql = format!(
            "DROP VIEW stagecast.{view}; CREATE VIEW stagecast.{view} AS SELECT {} WHERE false",
            select.join(", ")
        );
        sqlx::raw_sql(&sql)
            .execute(&mut owner)
            .await
            .unwrap_or_else(|e| panic!("redefining stagecast.{view} from the doc: {e}"));
    }
    let names = stagecast::roles::RoleNames {
        worker: db.roles.worker.clone(),
        ..Default::default()
    };
    stagecast::roles::apply_grants(&mut owner, &names)
        .await
        .expect("the owner grants the redefined views");
    let _ = owner.close().await;
    let mut conn = db.worker_pool.acquire().await.unwrap();
    let mut failed = Vec::new();
    for (file, sql) in worker_statements() {
        if let Err(e) = conn.prepare(sql.as_str()).await {
            failed.push(format!("{file}: {e}"));
        }
    }
    assert!(
        failed.is_empty(),
        "statements that fail against views defined as docs/crm-integration.md §5 says:\n{}",
        failed.join("\n")
    );
}

// ------------------------------------------------------------------------------------------
// Samples: the doctor's migration line

#[test]
fn the_doctor_sample_shows_the_migrations_of_this_version() {
    let mut files: Vec<String> = std::fs::read_dir(repo("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    let newest = files.last().expect("migrations exist");
    // sqlx's description: the file name after the version, underscores as spaces.
    let (version, rest) = newest.trim_end_matches(".sql").split_once('_').unwrap();
    let expected = format!(
        "Migrations: all {} applied (newest: {version} {})",
        files.len(),
        rest.replace('_', " ")
    );
    let doc = read_doc("operations.md");
    let lines: Vec<&str> = doc
        .lines()
        .filter(|l| l.contains("Migrations: all "))
        .collect();
    assert!(!lines.is_empty(), "docs/operations.md has no doctor sample");
    for line in lines {
        assert!(
            line.contains(&expected),
            "the doctor sample in docs/operations.md is out of date (migrations/ has {} files); expected\n  {expected}\nfound\n  {line}",
            files.len()
        );
    }
}

// ------------------------------------------------------------------------------------------
// Whether Meta drops a re-sent event: one statement

/// The statement, word for word wherever docs, help texts or the sandbox make the point.
const DEDUP_STATEMENT: &str = "Meta does not promise to drop a re-sent event (for business messaging it says it does not deduplicate at all), so a re-send may be counted twice";

#[test]
fn docs_and_help_texts_agree_meta_does_not_promise_to_drop_re_sent_events() {
    let mut texts: Vec<(String, String)> = Vec::new();
    for dir in ["docs"] {
        for entry in std::fs::read_dir(repo(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                let name = path.strip_prefix(repo("")).unwrap().display().to_string();
                texts.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    texts.push((
        "README.md".into(),
        std::fs::read_to_string(repo("README.md")).unwrap(),
    ));
    let mut sources = Vec::new();
    production_sources(&repo("src"), &mut sources);
    production_sources(&repo("crates"), &mut sources);
    for (path, text) in sources {
        texts.push((path.display().to_string(), text));
    }
    let mut problems = Vec::new();
    for (name, text) in &texts {
        // Markdown and comments wrap lines: compare with whitespace collapsed.
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let flat = flat.replace("/// ", "").replace("// ", "");
        for claim in [
            "Meta deduplicates",
            "which Meta dedup",
            "Meta dedupes",
            "Meta de-duplicates",
            "deduplicated by Meta",
        ] {
            if flat.contains(claim) {
                problems.push(format!("{name} claims {claim:?}"));
            }
        }
    }
    for must in [
        "docs/crm-integration.md",
        "docs/operations.md",
        "docs/sandbox.md",
    ] {
        let text = &texts.iter().find(|(n, _)| n == must).unwrap().1;
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !flat.contains(DEDUP_STATEMENT) {
            problems.push(format!(
                "{must} does not make the statement: {DEDUP_STATEMENT:?}"
            ));
        }
    }
    let help = stagecast::metrics_catalog::CATALOG
        .iter()
        .find(|d| d.name == "stagecast_duplicate_deliveries_total")
        .expect("the duplicate-delivery counter is catalogued")
        .help;
    if !help.contains(DEDUP_STATEMENT) {
        problems.push(format!(
            "the metric help does not make the statement: {help:?}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ------------------------------------------------------------------------------------------
// No pointers to notes maintainers do not have

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_file_points_into_the_private_research_notes() {
    // Spelled in pieces, so that this file does not match itself.
    let needles: Vec<String> = [
        ["../", "shared"],
        ["/work/", "shared"],
        ["reference/", "meta-capi"],
        ["reference/", "google-tiktok"],
        ["meta-capi", ".md"],
        ["google-tiktok", ".md"],
        ["queue-", "anchors"],
        ["apalis-", "eval"],
    ]
    .iter()
    .map(|parts| parts.concat())
    .collect();
    let mut files = Vec::new();
    for dir in [
        "src",
        "crates",
        "docs",
        "tests",
        "sql",
        "migrations",
        "grafana",
        ".ci",
    ] {
        files_under(&repo(dir), &mut files);
    }
    files.push(repo("README.md"));
    files.push(repo("Cargo.toml"));
    assert!(files.len() > 100, "only {} files found", files.len());
    let mut problems = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            // The design document is private too. Landed migrations keep their old comments
            // (sqlx checksums them); nothing else may point to it.
            let design = ["DESIGN", " §"].concat();
            if line.contains(design.as_str()) && !path.starts_with(repo("migrations")) {
                problems.push(format!(
                    "{}:{}: mentions the private design document: point to docs/architecture.md",
                    path.strip_prefix(repo("")).unwrap().display(),
                    i + 1
                ));
            }
            for needle in &needles {
                if line.contains(needle.as_str()) {
                    problems.push(format!(
                        "{}:{}: mentions {needle:?}: cite the public source or state the fact in docs/",
                        path.strip_prefix(repo("")).unwrap().display(),
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ------------------------------------------------------------------------------------------
// docs/CONVERSION_EVENTS.md: its examples and tables against the code

#[path = "docs/conversion_events.rs"]
mod conversion_events;
