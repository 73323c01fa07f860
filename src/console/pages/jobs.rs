//! Jobs: the filtered list, a job's page (every attempt as sent and answered, its alerts and
//! admin actions), replay and cancel of one job or of a filtered set (counted first). Every
//! read and action is a `Store` function `stagecast jobs` uses too.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::field;
use super::overview::one_line;
use crate::console::i18n::{Tr, K};
use crate::console::layout::{self, badge, json_block, opt_ts, ts, urlencode, Nav};
use crate::console::{authorize, reason_of, respond, App, Ctx, Fail};
use crate::store::admin::{AdminError, BulkAction, JobDetail, JobFilter, JobStatus};

const KINDS: [&str; 3] = ["stage_change", "stage_change_batch", "attribution"];
const STATUSES: [&str; 5] = ["pending", "running", "failed", "cancelled", "done"];
/// Jobs per call of a bulk action: one short transaction and one audit row each, as the CLI.
const CHUNK: usize = 1000;

/// The list's filter, as typed (shown back in the form) and as parsed.
struct Filters {
    status: Option<JobStatus>,
    filter: JobFilter,
    limit: i64,
    /// The raw values, for the form and the links.
    raw: Vec<(&'static str, String)>,
}

fn status_of(s: &str) -> Option<JobStatus> {
    Some(match s {
        "pending" => JobStatus::Pending,
        "running" => JobStatus::Running,
        "failed" => JobStatus::Failed,
        "cancelled" => JobStatus::Cancelled,
        "done" => JobStatus::Done,
        _ => return None,
    })
}

fn parse_filters(q: &HashMap<String, String>) -> Result<Filters, String> {
    let mut raw = Vec::new();
    for name in ["status", "kind", "pixel", "customer", "since", "limit"] {
        if let Some(v) = field(q, name) {
            raw.push((name, v.chars().take(200).collect::<String>()));
        }
    }
    let get = |name: &str| {
        raw.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    };
    let status = match get("status") {
        None | Some("all") => None,
        Some(s) => Some(status_of(s).ok_or_else(|| format!("unknown status {s:?}"))?),
    };
    let kind = match get("kind") {
        None => None,
        Some(k) if KINDS.contains(&k) => Some(k.to_string()),
        Some(k) => return Err(format!("unknown kind {k:?}")),
    };
    let customer_id = match get("customer") {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| format!("customer {c:?} is not a customer id"))?,
        ),
    };
    let since = match get("since") {
        None => None,
        Some(s) => Some(crate::cli::jobs::parse_since(s)?),
    };
    let limit = match get("limit") {
        None => 50,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| format!("limit {l:?} is not a number from 1 to 1000"))?,
    };
    Ok(Filters {
        status,
        filter: JobFilter {
            kind,
            pixel: get("pixel").map(str::to_string),
            customer_id,
            since,
        },
        limit,
        raw,
    })
}

fn query_of(raw: &[(&'static str, String)], skip: &[&str]) -> String {
    raw.iter()
        .filter(|(n, _)| !skip.contains(n))
        .map(|(n, v)| format!("{n}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn filter_form(t: Tr, raw: &[(&'static str, String)]) -> Markup {
    let get = |name: &str| {
        raw.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let status = get("status");
    let kind = get("kind");
    html! {
        form.filters method="get" action="/jobs" {
            label { (t.s(K::Status))
                select name="status" {
                    option value="" { (t.s(K::Any)) }
                    @for s in STATUSES { option value=(s) selected[status == s] { (s) } }
                }
            }
            label { (t.s(K::Kind))
                select name="kind" {
                    option value="" { (t.s(K::Any)) }
                    @for k in KINDS { option value=(k) selected[kind == k] { (k) } }
                }
            }
            label { (t.s(K::Destination))
                input type="text" name="pixel" value=(get("pixel")) placeholder="1111222233334444";
            }
            label { (t.s(K::Customer))
                input type="text" name="customer" value=(get("customer")) inputmode="numeric" size="8";
            }
            label title=(t.s(K::SinceHelp)) { (t.s(K::Since))
                input type="text" name="since" value=(get("since")) placeholder="1day" size="12";
            }
            label { (t.s(K::Limit))
                input type="text" name="limit" value=(get("limit")) placeholder="50" size="4";
            }
            button.primary type="submit" { (t.s(K::Filter)) }
        }
    }
}

pub async fn list(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = render_list(&app, &ctx, &q).await;
    respond(&ctx, r)
}

async fn render_list(app: &App, ctx: &Ctx, q: &HashMap<String, String>) -> Result<Response, Fail> {
    let t = ctx.tr();
    let raw_for_form: Vec<(&'static str, String)> =
        ["status", "kind", "pixel", "customer", "since", "limit"]
            .into_iter()
            .filter_map(|n| field(q, n).map(|v| (n, v.chars().take(200).collect())))
            .collect();
    let filters = match parse_filters(q) {
        Ok(f) => f,
        Err(e) => {
            let body =
                html! { (filter_form(t, &raw_for_form)) p.error { (t.s(K::BadRequest)) ": " (e) } };
            return Ok(layout::respond(
                StatusCode::BAD_REQUEST,
                layout::page(ctx, t.s(K::Jobs), Some(Nav::Jobs), body),
            ));
        }
    };
    let statuses = filters.status.map(|s| vec![s]);
    let jobs = app
        .0
        .store
        .list_jobs(statuses.as_deref(), &filters.filter, filters.limit)
        .await?;
    let bulk_query = query_of(&filters.raw, &["limit", "status"]);
    let body = html! {
        (filter_form(t, &filters.raw))
        @if jobs.is_empty() {
            p.muted { (t.s(K::NoJobs)) }
        } @else {
            table #jobs {
                tr {
                    th { "ID" } th { (t.s(K::Kind)) } th { (t.s(K::Status)) } th.num { (t.s(K::Attempts)) }
                    th { (t.s(K::Customer)) } th { (t.s(K::Destinations)) } th { (t.s(K::Created)) }
                    th { (t.s(K::LastErrorNote)) }
                }
                @for j in &jobs {
                    tr {
                        td { a href={ "/jobs/" (j.id) } { (j.id) } }
                        td { (j.kind) }
                        td { (badge(&j.status, &j.status)) }
                        td.num {
                            (j.attempts) @if let Some(m) = j.max_attempts { "/" (m) }
                        }
                        td { @if let Some(c) = j.customer_id { (c) } }
                        td { (j.destinations.as_ref().map(|d| d.join(", ")).unwrap_or_default()) }
                        td { (ts(j.created_at)) }
                        td { (one_line(j.last_error.as_deref().or(j.note.as_deref()).unwrap_or(""), 120)) }
                    }
                }
            }
            @if jobs.len() as i64 == filters.limit { p.muted { (t.s(K::NewestShown)) } }
        }
        h2 { (t.s(K::BulkTitle)) }
        @if !ctx.session.is_admin() {
            p.muted { (t.s(K::ReadOnlyNote)) }
        } @else {
            @match filters.status {
                Some(s @ (JobStatus::Failed | JobStatus::Cancelled)) => {
                    p.actions {
                        a href={ "/jobs/bulk?action=replay&status=" (s.as_str()) "&" (bulk_query) } { (t.s(K::ReplayMatching)) }
                        @if s == JobStatus::Failed {
                            a href={ "/jobs/bulk?action=cancel&status=failed&" (bulk_query) } { (t.s(K::CancelMatching)) }
                        }
                    }
                }
                Some(s @ (JobStatus::Pending | JobStatus::Running)) => {
                    p.actions {
                        a href={ "/jobs/bulk?action=cancel&status=" (s.as_str()) "&" (bulk_query) } { (t.s(K::CancelMatching)) }
                    }
                }
                _ => { p.muted { (t.s(K::BulkPickStatus)) } }
            }
        }
    };
    Ok(layout::respond(
        StatusCode::OK,
        layout::page(ctx, t.s(K::Jobs), Some(Nav::Jobs), body),
    ))
}

fn parse_id(id: &str) -> Result<i64, Fail> {
    id.trim().parse::<i64>().map_err(|_| Fail::NotFound)
}

pub async fn show(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let notice = match field(&q, "done") {
        Some("replayed") => Some(("success", K::JobReplayed)),
        Some("not_replayed") => Some(("note", K::JobNotReplayed)),
        Some("cancelled") => Some(("success", K::JobCancelled)),
        Some("not_cancelled") => Some(("note", K::JobNotCancelled)),
        _ => None,
    };
    let r = async {
        let id = parse_id(&id)?;
        render_job(
            &app,
            &ctx,
            id,
            notice.map(|(c, k)| (c, ctx.tr().s(k).to_string())),
            StatusCode::OK,
        )
        .await
    }
    .await;
    respond(&ctx, r)
}

async fn render_job(
    app: &App,
    ctx: &Ctx,
    id: i64,
    notice: Option<(&str, String)>,
    status: StatusCode,
) -> Result<Response, Fail> {
    let t = ctx.tr();
    let detail = app
        .0
        .store
        .show_job(id)
        .await?
        .ok_or(Fail::Admin(AdminError::NotFound(id)))?;
    let title = format!("{} {} · {}", t.s(K::Job), id, detail.job.kind);
    let body = job_body(ctx, &detail, notice);
    Ok(layout::respond(
        status,
        layout::page(ctx, &title, Some(Nav::Jobs), body),
    ))
}

fn job_body(ctx: &Ctx, d: &JobDetail, notice: Option<(&str, String)>) -> Markup {
    let t = ctx.tr();
    let j = &d.job;
    let attempts = match (j.max_attempts, j.attempt_budget) {
        (Some(max), Some(budget)) => format!("{} / {max} ({budget} per run; replayed)", j.attempts),
        (Some(max), None) => format!("{} / {max}", j.attempts),
        (None, _) => j.attempts.to_string(),
    };
    let can_replay = matches!(j.status.as_str(), "failed" | "cancelled");
    let can_cancel = matches!(j.status.as_str(), "pending" | "failed" | "running");
    html! {
        @if let Some((class, text)) = &notice { p class=(class) { (text) } }
        div.card {
            dl.facts {
                dt { (t.s(K::Status)) } dd { (badge(&j.status, &j.status)) }
                dt { (t.s(K::Attempts)) } dd { (attempts) }
                @if let Some(c) = j.customer_id { dt { (t.s(K::Customer)) } dd { (c) } }
                @if let Some(dest) = &j.destinations { dt { (t.s(K::Destinations)) } dd { (dest.join(", ")) } }
                dt { (t.s(K::Created)) } dd { (ts(j.created_at)) }
                @if let (Some(run_at), true) = (j.run_at, j.status == "pending") {
                    dt { (t.s(K::RunAt)) } dd { (ts(run_at)) }
                }
                @if j.finished_at.is_some() { dt { (t.s(K::Finished)) } dd { (opt_ts(j.finished_at)) } }
                @if let Some(w) = &j.locked_by { dt { (t.s(K::LeasedBy)) } dd { (w) " → " (opt_ts(j.locked_until)) } }
                @if let Some(k) = &j.dedup_key { dt { (t.s(K::DedupKey)) } dd { code { (k) } } }
                @if let Some(e) = &j.last_error { dt { (t.s(K::LastError)) } dd { (e) } }
                @if let Some(n) = &j.note { dt { (t.s(K::Note)) } dd { (n) } }
                dt { (t.s(K::Payload)) } dd { (json_block(&j.payload)) }
            }
        }
        @if ctx.session.is_admin() && (can_replay || can_cancel) {
            h2 { (t.s(K::Actions)) }
            div.actions {
                @if can_replay {
                    form.action #replay method="post" action={ "/jobs/" (j.id) "/replay" } {
                        input type="hidden" name="csrf" value=(ctx.session.csrf);
                        label { (t.s(K::Reason)) br; input type="text" name="reason" required maxlength="500"; }
                        button.primary type="submit" { (t.s(K::Replay)) }
                    }
                }
                @if can_cancel {
                    form.action #cancel method="post" action={ "/jobs/" (j.id) "/cancel" } {
                        input type="hidden" name="csrf" value=(ctx.session.csrf);
                        label { (t.s(K::Reason)) br; input type="text" name="reason" required maxlength="500"; }
                        button.danger type="submit" { (t.s(K::Cancel)) }
                    }
                }
            }
        } @else if !ctx.session.is_admin() {
            p.muted { (t.s(K::ReadOnlyNote)) }
        }
        h2 { (t.s(K::DeliveriesTitle)) " (" (d.deliveries.len()) ")" }
        @if d.deliveries.is_empty() { p.muted { (t.s(K::NoDeliveriesJob)) } }
        @for a in &d.deliveries {
            div.card.delivery {
                h3 {
                    (t.s(K::Attempt)) " " (a.attempt) " · " (ts(a.created_at)) " · "
                    (a.event_name) " → " (a.platform) ":" (a.destination) " "
                    (badge(&a.outcome, &a.outcome))
                }
                dl.facts {
                    @if let Some(s) = a.http_status { dt { "HTTP" } dd { (s) } }
                    @if let Some(c) = a.error_codes() { dt { "code/subcode" } dd { (c) } }
                    @if let Some(tr) = a.trace_id() { dt { "trace id" } dd { code { (tr) } } }
                    @if let Some(e) = &a.error { dt { (t.s(K::LastError)) } dd { (e) } }
                    dt { "event_id" } dd { code { (a.event_id) } }
                    @if let Some(q) = a.match_quality { dt { "match quality" } dd { (format!("{q:.1}")) } }
                }
                @if let Some(r) = &a.request { h4 { (t.s(K::Sent)) } (json_block(r)) }
                @if let Some(r) = &a.response { h4 { (t.s(K::Answer)) } (json_block(r)) }
            }
        }
        h2 { (t.s(K::AlertsTitle)) " (" (d.alerts.len()) ")" }
        @if d.alerts.is_empty() { p.muted { (t.s(K::NoneYet)) } }
        @for a in &d.alerts {
            div.card.alert {
                p {
                    (ts(a.created_at)) " · " code { (a.cause) } " (" (a.locale) ") · "
                    @if let Some(m) = a.chat_message_id {
                        (t.s(K::ChatPosted)) " " (m)
                    } @else if let Some(e) = &a.chat_error {
                        (badge("failed", t.s(K::ChatRefused))) " " span.chat-error { (e) }
                    } @else {
                        span.muted { (t.s(K::ChatNone)) }
                    }
                }
                p { (a.message) }
            }
        }
        h2 { (t.s(K::AdminActions)) " (" (d.admin_actions.len()) ")" }
        @if d.admin_actions.is_empty() { p.muted { (t.s(K::NoneYet)) } }
        @else {
            table {
                tr { th { (t.s(K::When)) } th { (t.s(K::Actions)) } th { "actor" } th { (t.s(K::DbRole)) } th.num { (t.s(K::Changed)) } th { (t.s(K::Reason)) } }
                @for a in &d.admin_actions {
                    tr {
                        td { (ts(a.at)) }
                        td { (a.action) " (" (if a.filter.is_some() { t.s(K::ByFilter) } else { t.s(K::ById) }) ")" }
                        td { (a.actor) }
                        td { (a.db_role) }
                        td.num { (a.count) }
                        td { (a.reason.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        p { a href="/jobs" { "← " (t.s(K::Jobs)) } }
    }
}

#[derive(serde::Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Replay,
    Cancel,
}

pub async fn replay(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    form: Result<Form<ReasonForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    act_on_one(app, ctx, id, form, Action::Replay).await
}

pub async fn cancel(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    form: Result<Form<ReasonForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    act_on_one(app, ctx, id, form, Action::Cancel).await
}

async fn act_on_one(
    app: App,
    ctx: Ctx,
    id: String,
    form: Result<Form<ReasonForm>, axum::extract::rejection::FormRejection>,
    action: Action,
) -> Response {
    let r = async {
        let form = form.map(|f| f.0).map_err(|_| Fail::Csrf)?;
        authorize(&ctx, &form.csrf)?;
        let id = parse_id(&id)?;
        let reason = match reason_of(Some(&form.reason)) {
            Ok(r) => r,
            Err(k) => {
                let msg = ctx.tr().s(k).to_string();
                return render_job(
                    &app,
                    &ctx,
                    id,
                    Some(("error", msg)),
                    StatusCode::BAD_REQUEST,
                )
                .await;
            }
        };
        let actor = ctx.session.actor();
        let store = &app.0.store;
        let result = match action {
            Action::Replay => store.replay_job(id, &actor, Some(reason)).await,
            Action::Cancel => store.cancel_job(id, &actor, Some(reason)).await,
        };
        let done = match (action, result) {
            (Action::Replay, Ok(true)) => "replayed",
            (Action::Replay, Ok(false)) => "not_replayed",
            (Action::Cancel, Ok(true)) => "cancelled",
            (Action::Cancel, Ok(false)) => "not_cancelled",
            (_, Err(e @ (AdminError::Refused { .. } | AdminError::Invalid(_)))) => {
                let status = if matches!(e, AdminError::Refused { .. }) {
                    StatusCode::CONFLICT
                } else {
                    StatusCode::BAD_REQUEST
                };
                return render_job(&app, &ctx, id, Some(("error", e.to_string())), status).await;
            }
            (_, Err(e)) => return Err(Fail::Admin(e)),
        };
        Ok(Redirect::to(&format!("/jobs/{id}?done={done}")).into_response())
    }
    .await;
    respond(&ctx, r)
}

/// A bulk action's target: the action, the status it acts on and the filter, with `since`
/// fixed to an absolute time so the confirmation acts on what was counted.
struct Bulk {
    action: Action,
    status: JobStatus,
    filter: JobFilter,
}

fn parse_bulk(q: &HashMap<String, String>) -> Result<Bulk, String> {
    let action = match field(q, "action") {
        Some("replay") => Action::Replay,
        Some("cancel") => Action::Cancel,
        other => return Err(format!("unknown action {:?}", other.unwrap_or(""))),
    };
    let f = parse_filters(q)?;
    let status = f.status.ok_or("choose a status")?;
    let allowed = match action {
        Action::Replay => matches!(status, JobStatus::Failed | JobStatus::Cancelled),
        Action::Cancel => matches!(
            status,
            JobStatus::Pending | JobStatus::Failed | JobStatus::Running
        ),
    };
    if !allowed {
        return Err(format!(
            "{} jobs cannot be {}",
            status.as_str(),
            match action {
                Action::Replay => "replayed",
                Action::Cancel => "cancelled",
            }
        ));
    }
    Ok(Bulk {
        action,
        status,
        filter: f.filter,
    })
}

async fn dry_run(app: &App, ctx: &Ctx, b: &Bulk) -> Result<(i32, usize), Fail> {
    let actor = ctx.session.actor();
    let bulk = BulkAction {
        status: b.status,
        filter: &b.filter,
        actor: &actor,
        reason: None,
        limit: None,
        dry_run: true,
        job_ids: None,
    };
    let store = &app.0.store;
    let eligible = match b.action {
        Action::Replay => store.replay_jobs(&bulk).await?,
        Action::Cancel => store.cancel_jobs(&bulk).await?,
    };
    let matching = store
        .matching_job_ids(b.status, &b.filter, None)
        .await?
        .len();
    Ok((eligible, matching))
}

fn hidden_filter(b: &Bulk) -> Markup {
    let since: Option<DateTime<Utc>> = b.filter.since;
    html! {
        input type="hidden" name="action" value=(if b.action == Action::Replay { "replay" } else { "cancel" });
        input type="hidden" name="status" value=(b.status.as_str());
        @if let Some(k) = &b.filter.kind { input type="hidden" name="kind" value=(k); }
        @if let Some(p) = &b.filter.pixel { input type="hidden" name="pixel" value=(p); }
        @if let Some(c) = b.filter.customer_id { input type="hidden" name="customer" value=(c); }
        @if let Some(s) = since { input type="hidden" name="since" value=(s.to_rfc3339()); }
    }
}

fn describe(t: Tr, b: &Bulk) -> Markup {
    html! {
        dl.facts {
            dt { (t.s(K::Status)) } dd { (b.status.as_str()) }
            @if let Some(k) = &b.filter.kind { dt { (t.s(K::Kind)) } dd { (k) } }
            @if let Some(p) = &b.filter.pixel { dt { (t.s(K::Destination)) } dd { (p) } }
            @if let Some(c) = b.filter.customer_id { dt { (t.s(K::Customer)) } dd { (c) } }
            @if let Some(s) = b.filter.since { dt { (t.s(K::Since)) } dd { (ts(s)) } }
        }
    }
}

async fn render_preview(
    app: &App,
    ctx: &Ctx,
    b: &Bulk,
    message: Option<(&str, String)>,
    status: StatusCode,
) -> Result<Response, Fail> {
    let t = ctx.tr();
    let (eligible, matching) = dry_run(app, ctx, b).await?;
    let left_alone = matching.saturating_sub(eligible.max(0) as usize);
    let (would, verb, class) = match b.action {
        Action::Replay => (K::WouldReplay, K::Replay, "primary"),
        Action::Cancel => (K::WouldCancel, K::Cancel, "danger"),
    };
    let body = html! {
        @if let Some((class, text)) = &message { p class=(class) { (text) } }
        div.card { (describe(t, b)) }
        p.count { strong #eligible { (eligible) } " " (t.s(would)) }
        @if b.action == Action::Replay && left_alone > 0 {
            p.muted { (left_alone) " " (t.s(K::SkippedPending)) }
        }
        @if eligible == 0 {
            p.muted { (t.s(K::NothingToDo)) }
        } @else {
            form.action #bulk method="post" action="/jobs/bulk" {
                input type="hidden" name="csrf" value=(ctx.session.csrf);
                input type="hidden" name="expected" value=(eligible);
                (hidden_filter(b))
                label { (t.s(K::Reason)) br; input type="text" name="reason" required maxlength="500"; }
                button class=(class) type="submit" { (t.s(K::Confirm)) ": " (t.s(verb)) " " (eligible) }
            }
        }
        p { a href="/jobs" { "← " (t.s(K::Jobs)) } }
    };
    let title = t.s(K::BulkTitle);
    Ok(layout::respond(
        status,
        layout::page(ctx, title, Some(Nav::Jobs), body),
    ))
}

pub async fn bulk_preview(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = async {
        if !ctx.session.is_admin() {
            return Err(Fail::Forbidden);
        }
        let b = parse_bulk(&q).map_err(Fail::BadRequest)?;
        render_preview(&app, &ctx, &b, None, StatusCode::OK).await
    }
    .await;
    respond(&ctx, r)
}

pub async fn bulk_act(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let r = async {
        let fields = form.map(|f| f.0).unwrap_or_default();
        authorize(&ctx, fields.get("csrf").map(String::as_str).unwrap_or(""))?;
        let b = parse_bulk(&fields).map_err(Fail::BadRequest)?;
        let t = ctx.tr();
        let reason = match reason_of(field(&fields, "reason")) {
            Ok(r) => r,
            Err(k) => {
                return render_preview(
                    &app,
                    &ctx,
                    &b,
                    Some(("error", t.s(k).into())),
                    StatusCode::BAD_REQUEST,
                )
                .await;
            }
        };
        let expected = field(&fields, "expected").and_then(|e| e.parse::<i32>().ok());
        let (eligible, _) = dry_run(&app, &ctx, &b).await?;
        if expected != Some(eligible) {
            return render_preview(
                &app,
                &ctx,
                &b,
                Some(("error", t.s(K::CountChanged).into())),
                StatusCode::CONFLICT,
            )
            .await;
        }
        // As the CLI: a snapshot of the matching jobs, acted on in chunks, so each job is acted
        // on once even if it fails again meanwhile, and no call holds many locks.
        let store = &app.0.store;
        let snapshot = store.matching_job_ids(b.status, &b.filter, None).await?;
        let actor = ctx.session.actor();
        let mut changed: i64 = 0;
        let mut stopped = None;
        for ids in snapshot.chunks(CHUNK) {
            let chunk = BulkAction {
                status: b.status,
                filter: &b.filter,
                actor: &actor,
                reason: Some(reason),
                limit: None,
                dry_run: false,
                job_ids: Some(ids),
            };
            let n = match b.action {
                Action::Replay => store.replay_jobs(&chunk).await,
                Action::Cancel => store.cancel_jobs(&chunk).await,
            };
            match n {
                Ok(n) => changed += i64::from(n),
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        let left = snapshot.len() as i64 - changed;
        let done = if b.action == Action::Replay {
            K::Replayed
        } else {
            K::CancelledN
        };
        let body = html! {
            div.card { (describe(t, &b)) }
            p.success { strong #changed { (changed) } " " (t.s(done)) }
            @if left > 0 && stopped.is_none() { p.muted { (left) " " (t.s(K::LeftAlone)) } }
            @if let Some(e) = &stopped { p.error { (e) } }
            p { a href={ "/jobs?status=" (b.status.as_str()) } { "← " (t.s(K::Jobs)) } }
        };
        let status = if stopped.is_some() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        Ok(layout::respond(
            status,
            layout::page(&ctx, t.s(K::BulkTitle), Some(Nav::Jobs), body),
        ))
    }
    .await;
    respond(&ctx, r)
}
