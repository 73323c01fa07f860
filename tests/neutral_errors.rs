//! Migration 20261201150000: the delivery audit's error code becomes text and its trace id
//! `trace_id`, without rewriting `stagecast.deliveries`. Rows written before it, and rows a
//! worker of the previous release writes during a rolling upgrade, read like new ones; so do
//! alerts whose details still say `fbtrace_id`.

mod support;

use std::borrow::Cow;

use serde_json::{json, Value};
use sqlx::Connection as _;
use stagecast::store::{DeliveryRow, Store, MIGRATOR};
use support::TestDb;

const NEUTRAL_ERRORS: i64 = 20261201150000;

/// (event id, error code, subcode, trace id) of one audit row.
type AuditRow = (String, Option<String>, Option<i64>, Option<String>);

fn migrator(keep: impl Fn(i64) -> bool) -> sqlx::migrate::Migrator {
    sqlx::migrate::Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .migrations
                .iter()
                .filter(|m| keep(m.version))
                .cloned()
                .collect(),
        ),
        ignore_missing: true,
        locking: false,
        no_tx: false,
    }
}

async fn filenode(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT pg_relation_filenode('stagecast.deliveries')::bigint")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn old_audit_rows_and_alerts_read_like_new_ones_and_the_audit_is_not_rewritten() {
    let db = TestDb::unmigrated().await;
    let mut owner = sqlx::PgConnection::connect(&db.owner_url).await.unwrap();
    assert!(
        MIGRATOR.iter().any(|m| m.version == NEUTRAL_ERRORS),
        "the migration under test exists"
    );
    migrator(|v| v < NEUTRAL_ERRORS)
        .run(&mut owner)
        .await
        .expect("migrations before the neutral error columns");

    // What the previous release wrote: a numeric code and Meta's fbtrace_id, in the audit and
    // in an alert's details.
    let job: i64 = sqlx::query_scalar(
        "INSERT INTO stagecast.jobs (kind, payload, status, attempts) \
         VALUES ('stage_change', '{}', 'failed', 1) RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO stagecast.deliveries (job_id, attempt, platform, destination, event_id, event_name, \
                                           event_time, outcome, http_status, error_code, error_subcode, fbtrace_id, error) \
         VALUES ($1, 1, 'facebook', '111', 'e-old', 'Lead', now(), 'failed', 401, 190, 463, 'OLDTRACE', 'expired')",
    )
    .bind(job)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO stagecast.alerts (dedup_key, job_id, cause, locale, message, details) \
         VALUES ('k', $1, 'token_invalid', 'en', 'm', $2)",
    )
    .bind(job)
    .bind(json!({"platform": "facebook", "code": 190, "subcode": 463, "fbtrace_id": "OLDTRACE"}))
    .execute(&db.pool)
    .await
    .unwrap();

    let before = filenode(&db).await;
    MIGRATOR
        .run(&mut owner)
        .await
        .expect("the remaining migrations");
    assert_eq!(
        filenode(&db).await,
        before,
        "stagecast.deliveries was rewritten: the migration must only change the catalog"
    );
    let r = &db.roles;
    let names = stagecast::roles::RoleNames {
        database: db.name.clone(),
        owner: r.owner.clone(),
        worker: r.worker.clone(),
        crm: Some(r.crm.clone()),
        admin: Some(r.admin.clone()),
    };
    stagecast::roles::apply_grants(&mut owner, &names)
        .await
        .unwrap();
    let _ = owner.close().await;

    // A worker of the previous release, still running during the rollout, writes with its own
    // statement: the bigint code and the fbtrace_id column.
    sqlx::query(
        "INSERT INTO stagecast.deliveries (job_id, attempt, platform, destination, event_id, event_name, \
                                           event_time, outcome, http_status, error_code, error_subcode, fbtrace_id, error) \
         SELECT job_id, 2, 'facebook', '111', 'e-rolling', 'Lead', now(), 'retry', 500, error_code, NULL, fbtrace_id, 'down' \
           FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(job_id, error_code, fbtrace_id)",
    )
    .bind(vec![job])
    .bind(vec![2_i64])
    .bind(vec!["ROLLTRACE"])
    .execute(&db.worker_pool)
    .await
    .expect("the previous release's insert still works");

    // This release: a text code and trace_id.
    let new = DeliveryRow {
        job_id: job,
        attempt: 3,
        platform: "facebook",
        destination: "111".into(),
        pixel_ref: None,
        event_id: "e-new".into(),
        event_name: "Lead".into(),
        event_time: chrono::Utc::now(),
        outcome: "retry",
        http_status: Some(429),
        error_code: Some("RESOURCE_EXHAUSTED".into()),
        error_subcode: None,
        trace_id: Some("NEWTRACE".into()),
        error: Some("quota".into()),
        match_quality: None,
        request: None,
        response: None,
    };
    Store::new(db.worker_pool.clone())
        .write_ledger(&[new])
        .await
        .expect("this release's insert");

    let detail = Store::new(db.admin_pool.clone())
        .show_job(job)
        .await
        .expect("show_job as the admin role")
        .expect("the job");
    let audit: Vec<AuditRow> = detail
        .deliveries
        .iter()
        .map(|d| {
            (
                d.event_id.clone(),
                d.error_code.clone(),
                d.error_subcode,
                d.trace_id.clone(),
            )
        })
        .collect();
    assert_eq!(
        audit,
        vec![
            (
                "e-old".into(),
                Some("190".into()),
                Some(463),
                Some("OLDTRACE".into())
            ),
            (
                "e-rolling".into(),
                Some("2".into()),
                None,
                Some("ROLLTRACE".into())
            ),
            (
                "e-new".into(),
                Some("RESOURCE_EXHAUSTED".into()),
                None,
                Some("NEWTRACE".into())
            ),
        ]
    );
    let details: &Value = &detail.alerts[0].details;
    assert_eq!(
        details,
        &json!({"platform": "facebook", "code": "190", "subcode": 463, "trace_id": "OLDTRACE"}),
        "an alert written before the migration reads like a new one"
    );
}
