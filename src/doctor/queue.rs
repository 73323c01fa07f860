//! Queue health: stage changes the triggers had to park, failed jobs, and whether pending work
//! is being picked up.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::report::{Check, Group};
use crate::store::doctor::{QueueHealth, TableLock, WorkerRow};

/// A due job waiting longer than this means no worker is taking jobs (or they cannot keep up).
/// Workers claim within ~1 s (LISTEN, 1 s poll), so minutes are far outside normal.
const STALE_WARNING: Duration = Duration::from_secs(5 * 60);
/// ... and this long is an outage: events approach Meta's 7-day limit unseen.
const STALE_PROBLEM: Duration = Duration::from_secs(60 * 60);

fn check(id: &str, title: &str) -> super::report::CheckBuilder {
    Check::build(Group::Queue, format!("queue.{id}"), title)
}

/// `3 min`, `2 h 5 min`, `4 days`: ages as an operator reads them.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} days", s / 86_400),
    }
}

fn since(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    age((now - then).to_std().unwrap_or_default())
}

/// Truncate a database error for one report line (it is `SQLSTATE: message`, no DETAIL).
fn short(s: &str) -> String {
    const MAX: usize = 160;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// Sessions holding a lock on a stagecast table that blocks the worker and the CRM's triggers
/// (an admin's open transaction after `LOCK TABLE`, a migration, VACUUM FULL): named, so the
/// operator can end it, instead of every stagecast statement waiting behind it.
pub fn check_locks(locks: &[TableLock], now: DateTime<Utc>) -> Check {
    let c = check("locks", "Table locks");
    if locks.is_empty() {
        return c.ok("none on stagecast's tables");
    }
    let found: Vec<String> = locks
        .iter()
        .map(|l| {
            let app = l
                .application_name
                .as_deref()
                .unwrap_or("no application_name");
            let role = l.role_name.as_deref().unwrap_or("?");
            let state = match (&l.state, l.visible) {
                (Some(state), true) => {
                    let since = l
                        .since
                        .map(|t| format!(" since {} ago", since(t, now)))
                        .unwrap_or_default();
                    format!("{state}{since}")
                }
                _ => "state hidden from this role: grant it pg_read_all_stats".to_string(),
            };
            format!(
                "{} is locked by pid {} ({app}, role {role}, {state}; {})",
                l.table_name, l.pid, l.mode
            )
        })
        .collect();
    c.problem(
        format!(
            "{}: the worker skips its maintenance and its claims and write-backs wait, the CRM's triggers park changes",
            found.join("; ")
        ),
        "end that transaction (COMMIT or ROLLBACK in its session), or as an admin: SELECT pg_terminate_backend(<pid>); the worker catches up by itself (docs/operations.md, Table locks)",
    )
}

/// The workers: one line each (alive, dead, or only named by the jobs it runs) after a count.
/// A dead worker is a warning: a live one releases its jobs within seconds and forgets it, so
/// one that stays means no worker is alive to rescue it (docs/operations.md, Dead-worker rescue).
pub fn check_workers(workers: &[WorkerRow], now: DateTime<Utc>) -> Vec<Check> {
    let alive = workers.iter().filter(|w| w.alive == Some(true)).count();
    let dead = workers
        .iter()
        .filter(|w| w.registered && w.alive != Some(true))
        .count();
    let summary = check("workers", "Workers");
    let mut checks = vec![if workers.is_empty() {
        summary.ok("none registered: no worker is running")
    } else {
        summary.ok(format!("{alive} alive, {dead} dead"))
    }];
    for w in workers {
        let c = check(
            &format!("worker.{}", w.worker_id),
            &format!("Worker {}", w.worker_id),
        );
        let started = w
            .started_at
            .map(|t| format!("started {} ago, ", since(t, now)))
            .unwrap_or_default();
        let jobs = format!("{started}{} job(s) running", w.jobs_running);
        checks.push(if !w.registered {
            c.ok(format!(
                "not registered (a worker of an older version, or one just found dead): {jobs}, taken over when their lease expires"
            ))
        } else if w.alive == Some(true) {
            c.ok(format!("alive (holds its liveness lock); {jobs}"))
        } else {
            let missing = w
                .lock_missing_since
                .map(|t| format!(" (seen missing {} ago)", since(t, now)))
                .unwrap_or_default();
            let fix = if alive > 0 {
                "nothing: a live worker releases its jobs and forgets it within seconds; if it stays, check the live workers' logs"
            } else {
                "start a worker (`stagecast run`): only a live worker releases a dead one's jobs before their lease expires"
            };
            c.warning(
                format!("dead: its liveness lock is not held{missing}; {jobs}"),
                fix,
            )
        });
    }
    checks
}

pub fn check_health(h: &QueueHealth, now: DateTime<Utc>) -> Vec<Check> {
    let mut checks = Vec::new();

    let parked = check("parked", "Parked enqueues");
    checks.push(if h.parked == 0 {
        parked.ok("none in stagecast.enqueue_failures")
    } else {
        let oldest = h
            .oldest_parked_at
            .map(|t| format!(", oldest {} ago", since(t, now)))
            .unwrap_or_default();
        let error = h
            .latest_parked_error
            .as_deref()
            .map(|e| format!("; latest error: {}", short(e)))
            .unwrap_or_default();
        parked.problem(
            format!(
                "{} stage change(s) a trigger could not queue{oldest}{error}",
                h.parked
            ),
            "a running worker re-queues them every 10 s; if they stay, fix the cause the error names (stagecast.enqueue_failures.error) and keep a worker running",
        )
    });

    if h.lost > 0 {
        checks.push(check("lost", "Lost enqueues").problem(
            format!(
                "{} CRM statement(s) whose stage changes or messages could be neither queued nor parked (the queue and stagecast.enqueue_failures were both locked or failing); they are not queued",
                h.lost
            ),
            "find the Postgres log's WARNINGs \"stagecast: … NOT queued\", queue each payload again as docs/operations.md (Lost enqueues) shows, then reset the count: SELECT setval('stagecast.lost_enqueues_seq', 1, false)",
        ));
    }

    let failed = check("failed", "Failed jobs");
    checks.push(if h.failed == 0 {
        failed.ok("none")
    } else {
        let last = h
            .last_failed_at
            .map(|t| format!(", the latest {} ago", since(t, now)))
            .unwrap_or_default();
        failed.warning(
            format!(
                "{} job(s) failed for good{last}; each one wrote a chat alert",
                h.failed
            ),
            "inspect them with `stagecast jobs list --status failed`, fix the cause, then re-run them (docs/fallbacks.md)",
        )
    });

    let backlog = check("backlog", "Pending jobs");
    let waiting = h
        .oldest_due_age_seconds
        // try_: a corrupt clock must not panic the doctor (from_secs_f64 would on overflow).
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or_default();
    let found = format!(
        "{} pending, {} running; oldest due job waiting {}",
        h.pending,
        h.running,
        age(waiting)
    );
    let fix = "start a worker (`stagecast run`) or more of them, and check the workers' logs";
    checks.push(if waiting >= STALE_PROBLEM {
        backlog.problem(format!("{found}: no worker is taking jobs"), fix)
    } else if waiting >= STALE_WARNING {
        backlog.warning(
            format!("{found}: workers are not keeping up, or none is running"),
            fix,
        )
    } else if h.pending == 0 {
        backlog.ok(format!("none pending, {} running", h.running))
    } else {
        backlog.ok(found)
    });

    if h.expired_leases > 0 {
        checks.push(check("leases", "Expired leases").warning(
            format!(
                "{} running job(s) whose worker stopped renewing its lease (crashed or stuck)",
                h.expired_leases
            ),
            "nothing, if a worker is running: it takes them over; otherwise start one",
        ));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Status;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(Duration::from_secs(42)), "42 s");
        assert_eq!(age(Duration::from_secs(600)), "10 min");
        assert_eq!(age(Duration::from_secs(3 * 3600 + 300)), "3 h 5 min");
        assert_eq!(age(Duration::from_secs(5 * 86_400)), "5 days");
    }

    #[test]
    fn a_lock_names_its_session_and_a_hidden_state_says_why() {
        let now = Utc::now();
        let lock = |visible: bool| TableLock {
            table_name: "stagecast.jobs".into(),
            mode: "AccessExclusiveLock".into(),
            pid: 4242,
            application_name: Some("psql".into()),
            role_name: Some("dba".into()),
            state: visible.then(|| "idle in transaction".to_string()),
            since: Some(now - chrono::Duration::minutes(12)),
            visible,
        };
        assert_eq!(check_locks(&[], now).status, Status::Ok);
        let seen = check_locks(&[lock(true)], now);
        assert_eq!(seen.status, Status::Problem);
        assert!(
            seen.found.starts_with(
                "stagecast.jobs is locked by pid 4242 (psql, role dba, idle in transaction since 12 min ago; AccessExclusiveLock)"
            ),
            "{}",
            seen.found
        );
        let hidden = check_locks(&[lock(false)], now);
        assert!(
            hidden
                .found
                .contains("state hidden from this role: grant it pg_read_all_stats"),
            "{}",
            hidden.found
        );
    }

    #[test]
    fn workers_alive_dead_and_unregistered() {
        let now = Utc::now();
        let row = |id: &str, registered: bool, alive: Option<bool>, jobs: i64| WorkerRow {
            worker_id: id.into(),
            registered,
            started_at: registered.then(|| now - chrono::Duration::minutes(10)),
            alive,
            lock_missing_since: (alive == Some(false)).then(|| now - chrono::Duration::seconds(5)),
            jobs_running: jobs,
        };
        let none = check_workers(&[], now);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].status, Status::Ok);
        assert_eq!(none[0].found, "none registered: no worker is running");

        let rows = [
            row("a-1-x", true, Some(true), 3),
            row("b-2-y", true, Some(false), 1),
            row("c-3-z", false, None, 2),
        ];
        let checks = check_workers(&rows, now);
        assert_eq!(checks[0].found, "1 alive, 1 dead");
        assert_eq!(checks[1].id, "queue.worker.a-1-x");
        assert_eq!(checks[1].status, Status::Ok);
        assert_eq!(
            checks[1].found,
            "alive (holds its liveness lock); started 10 min ago, 3 job(s) running"
        );
        assert_eq!(checks[2].status, Status::Warning);
        assert_eq!(
            checks[2].found,
            "dead: its liveness lock is not held (seen missing 5 s ago); started 10 min ago, 1 job(s) running"
        );
        assert!(checks[2].fix.as_deref().unwrap().starts_with("nothing"));
        assert_eq!(checks[3].status, Status::Ok);
        assert!(
            checks[3].found.starts_with("not registered"),
            "{:?}",
            checks[3]
        );
        // With no live worker, the dead one's fix is to start one.
        let alone = check_workers(&rows[1..2], now);
        assert!(alone[1]
            .fix
            .as_deref()
            .unwrap()
            .starts_with("start a worker"));
    }

    #[test]
    fn healthy_queue() {
        let checks = check_health(&QueueHealth::default(), Utc::now());
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:#?}");
        assert_eq!(checks[2].found, "none pending, 0 running");
    }

    #[test]
    fn parked_failed_and_stale() {
        let now = Utc::now();
        let h = QueueHealth {
            pending: 3,
            failed: 2,
            last_failed_at: Some(now - chrono::Duration::minutes(30)),
            oldest_due_age_seconds: Some(7200.0),
            parked: 1,
            oldest_parked_at: Some(now - chrono::Duration::seconds(90)),
            latest_parked_error: Some("XX000: boom".into()),
            expired_leases: 1,
            ..QueueHealth::default()
        };
        let checks = check_health(&h, now);
        assert_eq!(checks[0].status, Status::Problem);
        assert!(
            checks[0]
                .found
                .contains("oldest 90 s ago; latest error: XX000: boom"),
            "{checks:#?}"
        );
        assert_eq!(checks[1].status, Status::Warning);
        assert!(checks[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("stagecast jobs list --status failed"));
        assert_eq!(checks[2].status, Status::Problem);
        assert!(checks[2].found.contains("waiting 2 h 0 min"));
        assert_eq!(checks[3].id, "queue.leases");
    }

    #[test]
    fn lost_enqueues_are_a_problem_naming_the_log_warning() {
        let h = QueueHealth {
            lost: 2,
            ..QueueHealth::default()
        };
        let checks = check_health(&h, Utc::now());
        let lost = checks
            .iter()
            .find(|c| c.id == "queue.lost")
            .expect("a lost check");
        assert_eq!(lost.status, Status::Problem);
        assert!(lost.found.starts_with("2 CRM statement(s)"), "{lost:#?}");
        assert!(lost.fix.as_deref().unwrap().contains("NOT queued"));
        assert!(check_health(&QueueHealth::default(), Utc::now())
            .iter()
            .all(|c| c.id != "queue.lost"));
    }
}
