//! Vacuum of stagecast's churning tables (issue 12, finding 9): autovacuum off or lagging, dead
//! rows past the threshold, and whether the role in DATABASE_URL may vacuum them (the workers
//! vacuum the tables themselves when it may; docs/operations.md, "Vacuum").

use chrono::{DateTime, Utc};

use super::queue::age;
use super::report::{list, Check, Group};
use crate::store::VacuumStatus;

fn check(id: &str, title: &str) -> super::report::CheckBuilder {
    Check::build(Group::Queue, format!("queue.{id}"), title)
}

fn last_vacuum(t: &VacuumStatus, now: DateTime<Utc>) -> String {
    match t.last_vacuumed_at {
        Some(at) => format!(
            "last vacuumed {} ago",
            age((now - at).to_std().unwrap_or_default())
        ),
        None => "never vacuumed".to_string(),
    }
}

pub fn check_vacuum(tables: &[VacuumStatus], now: DateTime<Utc>) -> Vec<Check> {
    let mut checks = Vec::new();

    let off: Vec<String> = tables
        .iter()
        .filter(|t| !t.autovacuum_on)
        .map(|t| t.qualified_name.clone())
        .collect();
    let autovacuum = check("autovacuum", "Autovacuum");
    checks.push(if off.is_empty() {
        autovacuum.ok("runs for stagecast's tables (the workers vacuum them too when it lags)")
    } else {
        autovacuum.warning(
            format!(
                "does not run for {} (the server's `autovacuum` or `track_counts` is off, or the table's autovacuum_enabled): only the workers' own VACUUMs keep them lean, and nothing does for the CRM's tables",
                list(&off, 5)
            ),
            "turn it on (`ALTER SYSTEM SET autovacuum = on; SELECT pg_reload_conf();`), and keep the workers' role able to vacuum stagecast's tables (docs/operations.md, Vacuum)",
        )
    });

    let behind: Vec<String> = tables
        .iter()
        .filter(|t| t.behind())
        .map(|t| {
            format!(
                "{}: {} dead rows (threshold {:.0}), {}",
                t.qualified_name,
                t.n_dead_tup,
                t.dead_threshold,
                last_vacuum(t, now)
            )
        })
        .collect();
    let dead = check("dead_rows", "Dead rows");
    checks.push(if behind.is_empty() {
        dead.ok(format!(
            "under autovacuum's threshold in all {} of stagecast's churning tables",
            tables.len()
        ))
    } else {
        dead.warning(
            format!("vacuum is behind: {}", list(&behind, 5)),
            "a running worker vacuums a table past its threshold within one maintenance tick (10 s); if this stays, check that the workers' role may vacuum it (next line) or run `VACUUM (ANALYZE) <table>` as its owner",
        )
    });

    let refused: Vec<String> = tables
        .iter()
        .filter(|t| !t.may_vacuum)
        .map(|t| t.qualified_name.clone())
        .collect();
    let rights = check("vacuum_rights", "Vacuum rights");
    checks.push(if refused.is_empty() {
        rights.ok("the role in DATABASE_URL may vacuum stagecast's churning tables")
    } else {
        rights.warning(
            format!(
                "the role in DATABASE_URL may not VACUUM {}: a worker connecting as it cannot keep them lean",
                list(&refused, 5)
            ),
            "as the owner, run `stagecast roles apply --worker <role>` (PostgreSQL 16 and older: the worker owns these tables; 17 and newer: it gets MAINTAIN)",
        )
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Status;

    fn table(name: &str, dead: i64) -> VacuumStatus {
        VacuumStatus {
            table_name: name.into(),
            qualified_name: format!("stagecast.{name}"),
            n_live_tup: 10,
            n_dead_tup: dead,
            dead_threshold: 5000.0,
            last_vacuumed_at: None,
            may_vacuum: true,
            autovacuum_on: true,
        }
    }

    #[test]
    fn lean_tables_with_autovacuum_on_are_fine() {
        let checks = check_vacuum(&[table("jobs", 10), table("alerts", 0)], Utc::now());
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:#?}");
    }

    #[test]
    fn autovacuum_off_dead_rows_and_missing_rights_are_warnings() {
        let now = Utc::now();
        let mut jobs = table("jobs", 200_000);
        jobs.autovacuum_on = false;
        jobs.last_vacuumed_at = Some(now - chrono::Duration::hours(3));
        let mut deliveries = table("deliveries", 0);
        deliveries.may_vacuum = false;
        let checks = check_vacuum(&[jobs, deliveries], now);
        let by_id = |id: &str| checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(by_id("queue.autovacuum").status, Status::Warning);
        assert!(by_id("queue.autovacuum").found.contains("stagecast.jobs"));
        let dead = by_id("queue.dead_rows");
        assert_eq!(dead.status, Status::Warning);
        assert!(
            dead.found.contains(
                "stagecast.jobs: 200000 dead rows (threshold 5000), last vacuumed 3 h 0 min ago"
            ),
            "{dead:#?}"
        );
        let rights = by_id("queue.vacuum_rights");
        assert_eq!(rights.status, Status::Warning);
        assert!(rights.found.contains("stagecast.deliveries"));
        assert!(rights
            .fix
            .as_deref()
            .unwrap()
            .contains("stagecast roles apply"));
    }
}
