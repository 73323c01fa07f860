//! Stages: each stage's events (`crm_stages.utm_event`) with the doctor's findings, and a form
//! per stage: platform, event from the catalog with its "when to use" hint, sale price or
//! value, currency, enabled. Checked with the worker's parser; saved by the audited
//! `stagecast.set_stage_events` (compare-and-set on the value the form was built from).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};
use serde_json::Value;

use super::field;
use crate::catalog::{self, EventKind, OTHER};
use crate::console::i18n::{Tr, K};
use crate::console::layout::{self, badge, findings, Nav};
use crate::console::stage_form::{self, Row, Verdict};
use crate::console::{authorize, reason_of, respond, App, Ctx, Fail};
use crate::doctor;
use crate::store::admin::{AdminError, StageEventsChange};
use crate::store::doctor::StageRow;

const PLATFORMS: [&str; 3] = ["facebook", "google_ads", "tiktok"];

pub async fn list(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    let r = async {
        let t = ctx.tr();
        let stages = app.0.store.doctor_stages().await?;
        let body = html! {
            p.muted { (t.s(K::StagesHelp)) }
            @if stages.is_empty() { p.muted { (t.s(K::NoStages)) } }
            @else {
                table #stages {
                    tr { th { "ID" } th { (t.s(K::Stage)) } th { (t.s(K::Events)) } th { (t.s(K::Findings)) } th {} }
                    @for s in &stages {
                        @let value = s.utm_event.clone().unwrap_or(Value::Null);
                        @let verdict = stage_form::validate(s.id, s.name.as_deref(), &value, &app.0.platforms);
                        tr {
                            td { (s.id) }
                            td { (s.name.as_deref().unwrap_or("")) }
                            td { (summary(t, &value)) }
                            td {
                                @if verdict.problems.is_empty() && verdict.warnings.is_empty() { span.ok { "✓" } }
                                @for c in verdict.problems.iter().chain(&verdict.warnings) {
                                    div { (badge(if c.status == doctor::Status::Problem { "problem" } else { "warning" }, "!")) " " (c.found) }
                                }
                            }
                            td { a href={ "/stages/" (s.id) } { (if ctx.session.is_admin() { t.s(K::Edit) } else { t.s(K::View) }) } }
                        }
                    }
                }
            }
        };
        Ok(layout::respond(StatusCode::OK, layout::page(&ctx, t.s(K::Stages), Some(Nav::Stages), body)))
    }
    .await;
    respond(&ctx, r)
}

/// `Lead → facebook`, one line per entry, disabled ones marked.
fn summary(t: Tr, value: &Value) -> Markup {
    let rows = stage_form::rows_from_value(value);
    html! {
        @if rows.is_empty() { span.muted { (t.s(K::NoEvents)) } }
        @for r in &rows {
            div class=[(!r.enabled).then_some("muted")] {
                (if r.event == OTHER { r.custom.as_str() } else { r.event.as_str() }) " → " (r.platform)
                @if !r.enabled { " (" (t.s(K::Disabled)) ")" }
            }
        }
    }
}

async fn stage(app: &App, id: &str) -> Result<StageRow, Fail> {
    let id: i64 = id.trim().parse().map_err(|_| Fail::NotFound)?;
    app.0
        .store
        .doctor_stages()
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or(Fail::Admin(AdminError::StageNotFound(id)))
}

pub async fn show(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = async {
        let s = stage(&app, &id).await?;
        let base = s.utm_event.clone().unwrap_or(Value::Null);
        let rows = stage_form::rows_from_value(&base);
        let verdict = stage_form::validate(s.id, s.name.as_deref(), &base, &app.0.platforms);
        let notice = match field(&q, "saved") {
            Some("1") => Some(("success", ctx.tr().s(K::Saved).to_string())),
            Some("0") => Some(("note", ctx.tr().s(K::Unchanged).to_string())),
            _ => None,
        };
        Ok(form_page(
            &ctx,
            &s,
            &base,
            &rows,
            &verdict,
            notice,
            StatusCode::OK,
        ))
    }
    .await;
    respond(&ctx, r)
}

pub async fn save(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let r = async {
        let fields = form.map(|f| f.0).unwrap_or_default();
        authorize(&ctx, fields.get("csrf").map(String::as_str).unwrap_or(""))?;
        let s = stage(&app, &id).await?;
        let t = ctx.tr();
        let base: Value = fields
            .get("base")
            .map(|b| serde_json::from_str(b))
            .transpose()
            .map_err(|e| Fail::BadRequest(format!("the form's base value is not JSON: {e}")))?
            .unwrap_or(Value::Null);
        let rows = stage_form::rows_from_form(&fields);
        let value = stage_form::build_value(&rows, &base);
        let verdict = stage_form::validate(s.id, s.name.as_deref(), &value, &app.0.platforms);
        let saving = field(&fields, "action") == Some("save");
        if !saving {
            let notice = verdict
                .saveable()
                .then(|| ("success", t.s(K::CheckOk).to_string()));
            return Ok(form_page(
                &ctx,
                &s,
                &base,
                &rows,
                &verdict,
                notice,
                StatusCode::OK,
            ));
        }
        if !verdict.saveable() {
            let notice = Some(("error", t.s(K::NotSaved).to_string()));
            return Ok(form_page(
                &ctx,
                &s,
                &base,
                &rows,
                &verdict,
                notice,
                StatusCode::UNPROCESSABLE_ENTITY,
            ));
        }
        let reason = match reason_of(field(&fields, "reason")) {
            Ok(r) => r,
            Err(k) => {
                let notice = Some(("error", t.s(k).to_string()));
                return Ok(form_page(
                    &ctx,
                    &s,
                    &base,
                    &rows,
                    &verdict,
                    notice,
                    StatusCode::UNPROCESSABLE_ENTITY,
                ));
            }
        };
        let actor = ctx.session.actor();
        let change = StageEventsChange {
            stage_id: s.id,
            utm_event: &value,
            expected: &base,
            actor: &actor,
            reason,
        };
        match app.0.store.set_stage_events(&change).await {
            Ok(changed) => {
                Ok(
                    Redirect::to(&format!("/stages/{}?saved={}", s.id, u8::from(changed)))
                        .into_response(),
                )
            }
            Err(e @ (AdminError::Refused { .. } | AdminError::Invalid(_))) => {
                let status = if matches!(e, AdminError::Refused { .. }) {
                    StatusCode::CONFLICT
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                Ok(form_page(
                    &ctx,
                    &s,
                    &base,
                    &rows,
                    &verdict,
                    Some(("error", e.to_string())),
                    status,
                ))
            }
            Err(e) => Err(Fail::Admin(e)),
        }
    }
    .await;
    respond(&ctx, r)
}

fn hint_of(t: Tr, event: &str) -> &'static str {
    catalog::lookup(event)
        .map(|d| d.when_to_use.get(t.0))
        .unwrap_or("")
}

fn event_options(t: Tr, selected: &str) -> Markup {
    let groups = [
        (K::StandardEvents, EventKind::Standard),
        (K::MessagingEvents, EventKind::BusinessMessagingOnly),
    ];
    let known = catalog::lookup(selected).is_some();
    html! {
        option value="" data-hint="" selected[selected.is_empty()] { "—" }
        @if !known && !selected.is_empty() {
            option value=(selected) data-hint="" selected { (selected) " (?)" }
        }
        @for (label, kind) in groups {
            optgroup label=(t.s(label)) {
                @for d in catalog::all().iter().filter(|d| d.kind == kind) {
                    option value=(d.name) data-hint=(d.when_to_use.get(t.0)) selected[d.name == selected] {
                        (d.label.get(t.0)) @if d.label.get(t.0) != d.name { " — " (d.name) }
                    }
                }
            }
        }
        @if let Some(d) = catalog::lookup(OTHER) {
            option value=(OTHER) data-hint=(d.when_to_use.get(t.0)) selected[selected == OTHER] { (d.label.get(t.0)) }
        }
    }
}

fn row_markup(t: Tr, i: usize, r: &Row, editable: bool, bad_currency: bool) -> Markup {
    let platform_known = PLATFORMS.contains(&r.platform.as_str());
    html! {
        tr.entry {
            td {
                @if let Some(o) = r.orig { input type="hidden" name={ "o" (i) } value=(o); }
                select name={ "p" (i) } disabled[!editable] {
                    @if !platform_known { option value=(r.platform) selected { (r.platform) " (?)" } }
                    @for p in PLATFORMS { option value=(p) selected[r.platform == p] { (p) } }
                }
            }
            td {
                select name={ "e" (i) } data-hint-for={ "hint" (i) } disabled[!editable] { (event_options(t, &r.event)) }
                div.hint id={ "hint" (i) } { (hint_of(t, &r.event)) }
            }
            td { input type="text" name={ "c" (i) } value=(r.custom) maxlength="50" size="16" disabled[!editable]; }
            td { input type="checkbox" name={ "s" (i) } checked[r.use_sale_price] disabled[!editable]; }
            td { input type="text" name={ "v" (i) } value=(r.value) inputmode="decimal" size="8" disabled[!editable]; }
            td {
                input type="text" name={ "cur" (i) } value=(r.currency) size="4" maxlength="3" disabled[!editable];
                @if bad_currency { div.error { (t.s(K::CurrencyInvalid)) } }
            }
            td { input type="checkbox" name={ "on" (i) } checked[r.enabled] disabled[!editable]; }
            td { @if r.orig.is_some() { input type="checkbox" name={ "rm" (i) } checked[r.remove] disabled[!editable]; } }
        }
    }
}

fn form_page(
    ctx: &Ctx,
    s: &StageRow,
    base: &Value,
    rows: &[Row],
    verdict: &Verdict,
    notice: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let t = ctx.tr();
    let editable = ctx.session.is_admin();
    // Always one empty row to add an event with (no script needed).
    let mut rows: Vec<Row> = rows.to_vec();
    if editable && rows.iter().all(|r| !r.event.trim().is_empty()) {
        rows.push(Row {
            platform: "facebook".into(),
            use_sale_price: true,
            enabled: true,
            ..Row::default()
        });
    }
    // Entries of the built value map back to the rows that are kept.
    let kept: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.remove && !r.event.trim().is_empty())
        .map(|(i, _)| i)
        .collect();
    let bad_rows: Vec<usize> = verdict
        .bad_currencies
        .iter()
        .filter_map(|e| kept.get(*e).copied())
        .collect();
    let title = format!("{} {}", t.s(K::Stage), s.name.as_deref().unwrap_or(""));
    let mut checks = verdict.problems.clone();
    checks.extend(verdict.warnings.iter().cloned());
    let body = html! {
        @if let Some((class, text)) = &notice { p class=(class) #notice { (text) } }
        h2 { (t.s(K::Findings)) }
        (findings(t, &checks))
        form #stage method="post" action={ "/stages/" (s.id) } {
            input type="hidden" name="csrf" value=(ctx.session.csrf);
            input type="hidden" name="base" value=(base.to_string());
            input type="hidden" name="rows" value=(rows.len());
            table.entries {
                tr {
                    th { (t.s(K::Platform)) } th { (t.s(K::Event)) " · " (t.s(K::WhenToUse)) } th { (t.s(K::CustomName)) }
                    th { (t.s(K::UseSalePrice)) } th { (t.s(K::Value)) } th { (t.s(K::Currency)) }
                    th { (t.s(K::Enabled)) } th { (t.s(K::Remove)) }
                }
                @for (i, r) in rows.iter().enumerate() {
                    (row_markup(t, i, r, editable, bad_rows.contains(&i)))
                }
            }
            p.muted.help { (t.s(K::FormHelp)) }
            @if editable {
                div.action {
                    label { (t.s(K::Reason)) br; input type="text" name="reason" maxlength="500"; }
                    button type="submit" name="action" value="check" { (t.s(K::Check)) }
                    button.primary type="submit" name="action" value="save" { (t.s(K::Save)) }
                }
            } @else {
                p.muted { (t.s(K::ReadOnlyNote)) }
            }
        }
        h2 { (t.s(K::Catalog)) }
        table.catalog {
            tr { th { (t.s(K::Name)) } th { (t.s(K::Label)) } th { (t.s(K::WhenToUse)) } }
            @for d in catalog::all() {
                tr { td { code { (d.name) } } td { (d.label.get(t.0)) } td { (d.when_to_use.get(t.0)) } }
            }
        }
        p { a href="/stages" { "← " (t.s(K::Stages)) } }
    };
    layout::respond(status, layout::page(ctx, &title, Some(Nav::Stages), body))
}
