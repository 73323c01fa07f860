//! The write-back: outcomes, the delivery audit (which is also the ledger) and alerts.
//!
//! The fast path writes a whole flush (up to thousands of jobs) in one transaction of four
//! array-bound statements. When that fails, [`Store::flush`] falls back to isolation instead of
//! retrying the same batch forever (issue 12, finding 5: one outcome the database refuses
//! must never hold up the others):
//!
//! 1. the delivered events of the whole flush go to the ledger first, in their own
//!    transaction: whatever else fails, what reached Meta is recorded, so no rescue or retry
//!    sends it again;
//! 2. then the jobs are written under savepoints, in halves split until the refused job is
//!    alone; a job the database refuses is written once more without its audit detail (error
//!    texts, request and response bodies, alert details), and if even that fails it is
//!    reported unwritable and left to lease expiry;
//! 3. what failed for a passing reason (lock or statement timeout, lost connection) is handed
//!    back for a later retry.
//!
//! Every statement of the write-back runs with a lock timeout, so a lock held elsewhere (an
//! admin's open transaction, `VACUUM FULL`, a migration) delays it by seconds, never forever.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{Connection as _, PgConnection, Postgres, Transaction};
use tracing::{error, warn};

use super::{encode, sanitize, sql, timed, Result, Store, StoreError};
use super::{DeliveryRow, WriteBack, WriteBackReport};

/// How long one write-back statement may wait for a row or table lock. Our own statements
/// hold job rows for milliseconds; anything longer is someone else's long transaction.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound of one write-back statement (a 5,000-outcome flush takes tens of milliseconds).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Passing failures (lock or statement timeouts) in one isolation pass before the rest is
/// deferred too: with a table locked, every part would wait `LOCK_TIMEOUT` in turn.
const MAX_TRANSIENT_PER_PASS: usize = 3;
/// Room kept in a degraded outcome for its original error text.
const DEGRADED_ERROR_CHARS: usize = 500;

/// What a flush achieved. `report` counts what was committed; `leftover` holds what failed for
/// a passing reason and should be retried; `error` is the first error met, if any.
#[derive(Debug, Default)]
pub struct Flush {
    pub report: WriteBackReport,
    pub leftover: WriteBack,
    pub error: Option<StoreError>,
}

impl StoreError {
    /// The database could not be reached or the connection broke: no statement can succeed
    /// now, so isolating jobs is pointless.
    pub fn is_connection(&self) -> bool {
        match self {
            StoreError::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                    // connection_exception, admin/crash shutdown, too_many_connections
                    c.starts_with("08") || c.starts_with("57P") || c == "53300"
                }),
                _ => false,
            },
            _ => false,
        }
    }

    /// Worth retrying as is: the connection, or a wait that timed out or a conflict
    /// (lock_not_available, query_canceled by statement_timeout, serialization failure,
    /// deadlock, insufficient resources). Anything else is about the data and would fail again.
    pub fn is_transient(&self) -> bool {
        if self.is_connection() {
            return true;
        }
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|c| {
                c == "55P03" || c == "57014" || c.starts_with("40") || c.starts_with("53")
            }),
            _ => false,
        }
    }
}

impl Store {
    /// The fast path: one transaction for the whole batch. Fails as a whole.
    pub async fn write_back(&self, worker: &str, batch: &WriteBack) -> Result<WriteBackReport> {
        let mut tx = self.begin_write_back().await?;
        let report = write_parts(&mut tx, worker, batch).await?;
        timed("write_back_commit", tx.commit()).await?;
        Ok(report)
    }

    /// Write `batch`: the fast path, else isolation (see the module documentation). With
    /// `ledger_first`, skip the fast path (a retry, or the last flush before exit: get what
    /// was delivered recorded before anything else).
    pub async fn flush(&self, worker: &str, batch: &WriteBack, ledger_first: bool) -> Flush {
        if !ledger_first {
            match self.write_back(worker, batch).await {
                Ok(report) => {
                    return Flush {
                        report,
                        ..Flush::default()
                    }
                }
                Err(e) if e.is_connection() => {
                    return Flush {
                        leftover: batch.clone(),
                        error: Some(e),
                        ..Flush::default()
                    }
                }
                Err(e) => {
                    warn!(error = %e, outcomes = batch.outcomes.len(), "write-back failed; writing the ledger, then the batch in isolation");
                    let mut flush = self.write_back_isolated(worker, batch).await;
                    flush.error = Some(e);
                    return flush;
                }
            }
        }
        self.write_back_isolated(worker, batch).await
    }

    /// Record delivered (and other audited) events in their own transaction. Returns how many
    /// delivered rows were already in the ledger.
    pub async fn write_ledger(&self, deliveries: &[DeliveryRow]) -> Result<u64> {
        let mut tx = self.begin_write_back().await?;
        let duplicates = insert_deliveries(&mut tx, deliveries).await?;
        tx.commit().await?;
        Ok(duplicates)
    }

    /// Give back every job `worker` holds (attempt refunded), waiting at most `LOCK_TIMEOUT`
    /// for a job row another session holds. A held job whose newer twin is already pending is
    /// archived as superseded instead, in its own transaction afterwards (it writes the
    /// archive, which may be what is locked). Returns how many were given back either way.
    pub async fn release_held_jobs(&self, worker: &str) -> Result<u64> {
        let mut tx = self.begin_write_back().await?;
        let (released, superseded): (i64, i64) = sqlx::query_as(sql::RELEASE_HELD_JOBS)
            .bind(worker)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        if superseded == 0 {
            return Ok(released as u64);
        }
        let mut tx = self.begin_write_back().await?;
        let archived: i64 = sqlx::query_scalar(sql::SUPERSEDE_HELD_JOBS)
            .bind(worker)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((released + archived) as u64)
    }

    async fn begin_write_back(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::WRITE_BACK_SETTINGS)
            .bind(millis(LOCK_TIMEOUT))
            .bind(millis(STATEMENT_TIMEOUT))
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn write_back_isolated(&self, worker: &str, batch: &WriteBack) -> Flush {
        let mut flush = Flush::default();
        let mut groups = by_job(batch.clone());
        // 1. The ledger first, for the whole batch.
        let deliveries: Vec<DeliveryRow> = groups
            .iter()
            .flat_map(|g| g.deliveries.iter().cloned())
            .collect();
        if !deliveries.is_empty() {
            match self.write_ledger(&deliveries).await {
                Ok(duplicates) => {
                    flush.report.duplicate_deliveries += duplicates;
                    for g in &mut groups {
                        g.deliveries.clear();
                    }
                    groups.retain(|g| !g.is_empty());
                }
                Err(e) if e.is_transient() => {
                    flush.leftover = merge(groups);
                    flush.error = Some(e);
                    return flush;
                }
                // Some row is refused: each job writes its own below.
                Err(_) => {}
            }
        }
        if groups.is_empty() {
            return flush;
        }
        // 2. Halves under savepoints, in one transaction, split until the refused job is
        //    alone (one bad job among n costs about 2·log2(n) savepoints, not n).
        let mut tx = match self.begin_write_back().await {
            Ok(tx) => tx,
            Err(e) => {
                flush.leftover = merge(groups);
                flush.error = Some(e);
                return flush;
            }
        };
        let mut staged = WriteBackReport::default();
        let mut written: Vec<WriteBack> = Vec::new();
        let mut deferred: Vec<WriteBack> = Vec::new();
        let mut transient = 0usize;
        let mut stack: Vec<Vec<WriteBack>> = vec![groups];
        while let Some(mut chunk) = stack.pop() {
            let failure = if chunk.len() > 1 {
                let merged = merge(chunk.clone());
                match savepoint(&mut tx, worker, &merged).await {
                    Ok(r) => {
                        staged.merge(r);
                        staged.isolated += with_outcome(&chunk);
                        written.extend(chunk);
                        continue;
                    }
                    Err(e) if e.is_transient() => e,
                    Err(_) => {
                        let right = chunk.split_off(chunk.len() / 2);
                        stack.push(right);
                        stack.push(chunk);
                        continue;
                    }
                }
            } else {
                let Some(group) = chunk.pop() else { continue };
                let job = group_job(&group);
                let failure = match savepoint(&mut tx, worker, &group).await {
                    Ok(r) => {
                        staged.merge(r);
                        staged.isolated += with_outcome(std::slice::from_ref(&group));
                        written.push(group);
                        continue;
                    }
                    Err(e) => e,
                };
                let failure = if failure.is_transient() {
                    failure
                } else {
                    match savepoint(&mut tx, worker, &degrade(&group, &failure)).await {
                        Ok(r) => {
                            warn!(job_id = job, error = %failure, "job written back without the audit detail the database refused");
                            staged.merge(r);
                            staged.degraded += 1;
                            written.push(group);
                            continue;
                        }
                        Err(e) if e.is_transient() => e,
                        Err(e) => {
                            // Keep at least what was delivered, so a rescue does not send it again.
                            let ledger = ledger_only(&group);
                            if !ledger.deliveries.is_empty() {
                                if let Ok(r) = savepoint(&mut tx, worker, &ledger).await {
                                    staged.merge(r);
                                }
                            }
                            error!(job_id = job, error = %e, "this job's outcome cannot be written; it is left to lease expiry");
                            staged.unwritable.extend(job);
                            written.push(ledger);
                            flush.error.get_or_insert(e);
                            continue;
                        }
                    }
                };
                chunk.push(group);
                failure
            };
            // A passing error (a lock, a timeout, the connection): retried later, with a few
            // more tries in this pass for the other jobs unless the connection is gone.
            transient += 1;
            let give_up = failure.is_connection() || transient >= MAX_TRANSIENT_PER_PASS;
            flush.error.get_or_insert(failure);
            if give_up || chunk.len() == 1 {
                deferred.extend(chunk);
            } else {
                let right = chunk.split_off(chunk.len() / 2);
                stack.push(right);
                stack.push(chunk);
            }
            if give_up {
                break;
            }
        }
        deferred.extend(stack.into_iter().flatten());
        match timed("write_back_commit", tx.commit()).await {
            Ok(()) => {
                staged.deferred = deferred.iter().filter(|g| !g.outcomes.is_empty()).count() as u64;
                flush.report.merge(staged);
                flush.leftover = merge(deferred);
            }
            Err(e) => {
                written.extend(deferred);
                flush.leftover = merge(written);
                flush.error = Some(e.into());
            }
        }
        flush
    }
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

async fn savepoint(
    tx: &mut Transaction<'static, Postgres>,
    worker: &str,
    batch: &WriteBack,
) -> Result<WriteBackReport> {
    let mut sp = tx.begin().await?;
    match write_parts(&mut sp, worker, batch).await {
        Ok(report) => {
            sp.commit().await?;
            Ok(report)
        }
        Err(e) => {
            // A failed rollback leaves the transaction broken; its commit fails and says so.
            let _ = sp.rollback().await;
            Err(e)
        }
    }
}

/// The four statements of a write-back, on one connection (transaction or savepoint).
async fn write_parts(
    conn: &mut PgConnection,
    worker: &str,
    batch: &WriteBack,
) -> Result<WriteBackReport> {
    let mut report = WriteBackReport::default();
    if !batch.deliveries.is_empty() {
        report.duplicate_deliveries = insert_deliveries(conn, &batch.deliveries).await?;
    }
    if !batch.alerts.is_empty() {
        let json = encode("alerts", &batch.alerts)?;
        let new: Vec<(i64, String)> = timed(
            "insert_alerts",
            sqlx::query_as(sql::INSERT_ALERTS)
                .bind(sanitize::json(&json).as_ref())
                .fetch_all(&mut *conn),
        )
        .await?;
        report.new_alerts = new.len() as u64;
        let new_ids: Vec<i64> = new.iter().map(|(id, _)| *id).collect();
        report.new_alert_causes = new.into_iter().map(|(_, cause)| cause).collect();
        if !new_ids.is_empty() {
            // Never fails for one alert: the chat post of each runs in its own exception block
            // (see the migration 20261201110000), a refused one keeps its reason in chat_error.
            let posted: Vec<(i64, Option<i64>, Option<String>)> = timed(
                "post_alerts",
                sqlx::query_as(sql::POST_ALERTS)
                    .bind(&new_ids)
                    .fetch_all(&mut *conn),
            )
            .await?;
            report.posted_alerts = posted.iter().filter(|p| p.1.is_some()).count() as u64;
            for (alert, _, reason) in &posted {
                if let Some(reason) = reason {
                    warn!(alert_id = alert, reason = %reason, "an alert could not be posted to the customer's chat; it is kept in stagecast.alerts");
                    report.chat_errors += 1;
                }
            }
        }
    }
    if !batch.outcomes.is_empty() {
        let o = &batch.outcomes;
        let errors: Vec<Option<std::borrow::Cow<'_, str>>> =
            o.iter().map(|r| sanitize::opt_text(&r.error)).collect();
        let query = sqlx::query_as(sql::COMPLETE_JOBS)
            .bind(worker)
            .bind(o.iter().map(|r| r.id).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.attempt).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.outcome).collect::<Vec<_>>())
            .bind(o.iter().map(|r| r.run_at).collect::<Vec<_>>())
            .bind(errors.iter().map(|e| e.as_deref()).collect::<Vec<_>>())
            .bind(
                o.iter()
                    .map(|r| r.destinations.as_ref().map(|d| d.join(",")))
                    .collect::<Vec<_>>(),
            );
        let applied: Vec<(String, String, i64)> =
            timed("complete_jobs", query.fetch_all(&mut *conn)).await?;
        report.completed = applied
            .into_iter()
            .map(|(kind, outcome, jobs)| (kind, outcome, jobs as u64))
            .collect();
        report.applied = report.completed.iter().map(|(_, _, n)| n).sum();
        report.fenced_out = (batch.outcomes.len() as u64).saturating_sub(report.applied);
    }
    Ok(report)
}

/// The audit rows, bound as parallel arrays; text the database refuses is sanitised here.
async fn insert_deliveries(conn: &mut PgConnection, d: &[DeliveryRow]) -> Result<u64> {
    let text = |f: fn(&DeliveryRow) -> Option<&str>| -> Vec<Option<String>> {
        d.iter()
            .map(|r| f(r).map(|s| sanitize::text(s).into_owned()))
            .collect()
    };
    let json = |f: fn(&DeliveryRow) -> Option<&str>| -> Vec<Option<std::borrow::Cow<'_, str>>> {
        d.iter().map(|r| f(r).map(sanitize::json_text)).collect()
    };
    let requests = json(|r| r.request.as_deref());
    let responses = json(|r| r.response.as_deref());
    let query = sqlx::query_scalar(sql::INSERT_DELIVERIES)
        .bind(d.iter().map(|r| r.job_id).collect::<Vec<_>>())
        .bind(d.iter().map(|r| r.attempt).collect::<Vec<_>>())
        .bind(d.iter().map(|r| r.platform).collect::<Vec<_>>())
        .bind(d.iter().map(|r| r.destination.as_str()).collect::<Vec<_>>())
        .bind(d.iter().map(|r| r.pixel_ref).collect::<Vec<_>>())
        .bind(d.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>())
        .bind(d.iter().map(|r| r.event_name.as_str()).collect::<Vec<_>>())
        .bind(d.iter().map(|r| r.event_time).collect::<Vec<_>>())
        .bind(d.iter().map(|r| r.outcome).collect::<Vec<_>>())
        .bind(
            d.iter()
                .map(|r| r.http_status.map(i32::from))
                .collect::<Vec<_>>(),
        )
        .bind(text(|r| r.error_code.as_deref()))
        .bind(d.iter().map(|r| r.error_subcode).collect::<Vec<_>>())
        .bind(text(|r| r.trace_id.as_deref()))
        .bind(text(|r| r.error.as_deref()))
        .bind(d.iter().map(|r| r.match_quality).collect::<Vec<_>>())
        .bind(requests.iter().map(|r| r.as_deref()).collect::<Vec<_>>())
        .bind(responses.iter().map(|r| r.as_deref()).collect::<Vec<_>>());
    let duplicates: i64 = timed("insert_deliveries", query.fetch_one(&mut *conn)).await?;
    Ok(duplicates as u64)
}

/// Split a batch into one write-back per job, in order of first appearance.
fn by_job(batch: WriteBack) -> Vec<WriteBack> {
    let mut index: HashMap<i64, usize> = HashMap::new();
    let mut groups: Vec<WriteBack> = Vec::new();
    let mut slot = |job: i64, groups: &mut Vec<WriteBack>| -> usize {
        *index.entry(job).or_insert_with(|| {
            groups.push(WriteBack::default());
            groups.len() - 1
        })
    };
    for o in batch.outcomes {
        let i = slot(o.id, &mut groups);
        groups[i].outcomes.push(o);
    }
    for d in batch.deliveries {
        let i = slot(d.job_id, &mut groups);
        groups[i].deliveries.push(d);
    }
    for a in batch.alerts {
        let i = slot(a.job_id, &mut groups);
        groups[i].alerts.push(a);
    }
    groups
}

fn merge(groups: Vec<WriteBack>) -> WriteBack {
    let mut all = WriteBack::default();
    for g in groups {
        all.append(g);
    }
    all
}

/// Jobs with an outcome among these parts (parts may hold only ledger rows).
fn with_outcome(parts: &[WriteBack]) -> u64 {
    parts.iter().filter(|g| !g.outcomes.is_empty()).count() as u64
}

fn group_job(g: &WriteBack) -> Option<i64> {
    g.outcomes
        .first()
        .map(|o| o.id)
        .or_else(|| g.deliveries.first().map(|d| d.job_id))
        .or_else(|| g.alerts.first().map(|a| a.job_id))
}

/// The delivered events of a job, reduced to what the ledger needs.
fn ledger_only(g: &WriteBack) -> WriteBack {
    WriteBack {
        deliveries: g
            .deliveries
            .iter()
            .filter(|d| d.outcome == "delivered")
            .map(|d| DeliveryRow {
                trace_id: None,
                error: None,
                request: None,
                response: None,
                ..d.clone()
            })
            .collect(),
        ..WriteBack::default()
    }
}

/// A job's write-back without what the database may have refused: audit rows reduced to the
/// ledger, alert details replaced by the reason, the outcome's error shortened and explained.
fn degrade(g: &WriteBack, why: &StoreError) -> WriteBack {
    let why: String = why.to_string().chars().take(300).collect();
    let mut out = ledger_only(g);
    out.alerts = g
        .alerts
        .iter()
        .map(|a| super::AlertRow {
            details: serde_json::json!({ "write_back": format!("details dropped: {why}") }),
            ..a.clone()
        })
        .collect();
    out.outcomes = g
        .outcomes
        .iter()
        .map(|o| {
            let original: String = o
                .error
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(DEGRADED_ERROR_CHARS)
                .collect();
            let sep = if original.is_empty() { "" } else { "; " };
            super::OutcomeRow {
                error: Some(format!(
                    "{original}{sep}audit detail dropped: the full write-back failed ({why})"
                )),
                ..o.clone()
            }
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AlertRow, OutcomeRow};

    fn delivery(job: i64, outcome: &'static str) -> DeliveryRow {
        DeliveryRow {
            job_id: job,
            attempt: 1,
            platform: "facebook",
            destination: "1".into(),
            pixel_ref: Some(1),
            event_id: format!("e{job}-{outcome}"),
            event_name: "Lead".into(),
            event_time: chrono::Utc::now(),
            outcome,
            http_status: Some(200),
            error_code: None,
            error_subcode: None,
            trace_id: Some("trace".into()),
            error: Some("boom".into()),
            match_quality: None,
            request: Some("{}".into()),
            response: Some("{}".into()),
        }
    }

    fn outcome(id: i64) -> OutcomeRow {
        OutcomeRow {
            id,
            attempt: 1,
            outcome: "done",
            run_at: None,
            error: Some("1 delivered".into()),
            destinations: None,
        }
    }

    #[test]
    fn a_batch_splits_into_one_write_back_per_job_in_order() {
        let batch = WriteBack {
            outcomes: vec![outcome(2), outcome(1)],
            deliveries: vec![delivery(1, "delivered"), delivery(3, "delivered")],
            alerts: vec![AlertRow {
                dedup_key: "k".into(),
                job_id: 2,
                customer_id: None,
                cause: "api_error",
                locale: "en",
                message: "m".into(),
                details: serde_json::json!({"a": 1}),
            }],
        };
        let groups = by_job(batch);
        let jobs: Vec<Option<i64>> = groups.iter().map(group_job).collect();
        assert_eq!(jobs, [Some(2), Some(1), Some(3)]);
        assert_eq!(groups[0].alerts.len(), 1);
        assert_eq!(groups[1].deliveries.len(), 1);
        assert!(groups[2].outcomes.is_empty());
    }

    #[test]
    fn a_degraded_write_back_keeps_the_ledger_and_the_outcome() {
        let g = WriteBack {
            outcomes: vec![outcome(1)],
            deliveries: vec![delivery(1, "delivered"), delivery(1, "failed")],
            alerts: Vec::new(),
        };
        let why = StoreError::Database(sqlx::Error::Protocol("refused".into()));
        let d = degrade(&g, &why);
        assert_eq!(d.deliveries.len(), 1, "only the ledger row");
        let row = &d.deliveries[0];
        assert_eq!(row.outcome, "delivered");
        assert!(row.request.is_none() && row.response.is_none() && row.error.is_none());
        let error = d.outcomes[0].error.as_deref().unwrap();
        assert!(
            error.starts_with("1 delivered; audit detail dropped"),
            "{error}"
        );
        assert_eq!(d.outcomes[0].outcome, "done");
    }

    #[test]
    fn lock_and_statement_timeouts_are_transient_but_constraint_violations_are_not() {
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_connection());
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_transient());
    }
}
