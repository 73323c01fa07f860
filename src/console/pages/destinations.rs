//! Destinations: each pixel with its status, token state (never the token), activity, last
//! error, and the doctor's findings for it (the doctor's own checks that need no token).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::html;

use crate::console::i18n::K;
use crate::console::layout::{self, badge, findings, opt_ts, ts, Nav};
use crate::console::{respond, App, Ctx, Fail};
use crate::doctor;

pub async fn show(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    let r = render(&app, &ctx).await;
    respond(&ctx, r)
}

async fn render(app: &App, ctx: &Ctx) -> Result<Response, Fail> {
    let t = ctx.tr();
    let store = &app.0.store;
    let pixels = store.admin_pixels().await?;
    let activity = store.destination_activity().await?;
    let errors = store.destination_last_errors().await?;
    let held = store.held_destinations().await?;
    let campaigns = store.doctor_campaigns().await?;
    let rows: Vec<_> = pixels.iter().map(|p| p.as_pixel_row()).collect();
    let mut general = Vec::new();
    for platform in app
        .0
        .platforms
        .iter()
        .map(|p| p.platform())
        .filter(|&p| doctor::pixels_in_use(&rows, p))
    {
        general.push(doctor::default_pixel(&rows, platform));
        general.extend(doctor::campaign_checks(&campaigns, &rows, platform));
    }
    general.retain(|c| c.status != doctor::Status::Ok);

    let body = html! {
        p.muted { (t.s(K::TokenNeverShown)) }
        h2 { (t.s(K::AllPixels)) }
        (findings(t, &general))
        @if pixels.is_empty() { p.muted { (t.s(K::NoPixels)) } }
        @for p in &pixels {
            @let platform = crate::platforms::Platform::parse(&p.platform).map(|pl| pl.code()).unwrap_or(p.platform.as_str());
            @let act = activity.iter().find(|a| a.platform == platform && a.destination == p.pixel_id);
            @let err = errors.iter().find(|e| e.platform == platform && e.destination == p.pixel_id);
            @let dest = format!("{platform}:{}", p.pixel_id);
            @let hold = held.iter().find(|h| h.destination == dest);
            @let setup: Vec<_> = doctor::setup_problem(&p.as_pixel_row(), &app.0.platforms).into_iter().collect();
            div.card.pixel id={ "pixel-" (p.id) } {
                h3 {
                    (t.s(K::Pixel)) " " (p.pixel_id)
                    @if let Some(n) = &p.name { " \"" (n) "\"" }
                    " (id " (p.id) ") "
                    @if p.active { (badge("ok", t.s(K::Active))) } @else { (badge("cancelled", t.s(K::Inactive))) }
                    " " (badge("", &p.platform))
                    @if p.is_default { " " (badge("running", t.s(K::Default))) }
                }
                div.grid2 {
                    dl.facts {
                        dt { (t.s(K::Token)) }
                        dd.token {
                            @match p.token_state.as_str() {
                                "sealed" => { (badge("ok", "sealed")) " " (t.s(K::TokenSealed)) " " code { (p.sealed_key_id.as_deref().unwrap_or("?")) } }
                                "plaintext" => { (badge("warning", "plaintext")) " " (t.s(K::TokenPlaintext)) }
                                _ => { (badge("failed", "missing")) " " (t.s(K::TokenMissing)) }
                            }
                        }
                        dt { (t.s(K::ActionSource)) }
                        dd { (p.action_source.as_deref().unwrap_or(t.s(K::WorkerDefault))) }
                        dt { (t.s(K::Waba)) }
                        dd { (if p.waba_id.is_some() { t.s(K::On) } else { t.s(K::Off) }) }
                        dt { (t.s(K::TestEvents)) }
                        dd { (if p.test_events { t.s(K::On) } else { t.s(K::Off) }) }
                    }
                    dl.facts {
                        dt { (t.s(K::Activity)) }
                        dd {
                            @if let Some(a) = act {
                                (a.delivered_hour) " / " (a.failed_hour) " (1 h) · "
                                (a.delivered_day) " / " (a.failed_day) " (24 h) · "
                                (t.s(K::LastDelivered)) ": " (opt_ts(a.last_delivered_at))
                            } @else { span.muted { (t.s(K::NoDeliveries)) } }
                        }
                        @if let Some(a) = act.filter(|a| a.throttled_hour > 0) {
                            dt { (t.s(K::Throttled1h)) }
                            dd { (badge("throttled", "throttled")) " " (a.throttled_hour) " · " (opt_ts(a.last_throttled_at)) }
                        }
                        @if let Some(h) = hold {
                            dt { (t.s(K::HeldTitle)) }
                            dd { (h.jobs) " " (t.s(K::JobsWaitUntil)) " " (opt_ts(h.next_run_at)) }
                        }
                        dt { (t.s(K::LastError)) }
                        dd.last-error {
                            @if let Some(e) = err {
                                (ts(e.created_at)) " · " (badge(&e.outcome, &e.outcome))
                                @if let Some(s) = e.http_status { " HTTP " (s) }
                                " · " a href={ "/jobs/" (e.job_id) } { (t.s(K::Job)) " " (e.job_id) }
                                @if let Some(text) = &e.error { br; (text) }
                            } @else { "-" }
                        }
                    }
                }
                h4 { (t.s(K::Findings)) }
                (findings(t, &setup))
            }
        }
    };
    Ok(layout::respond(
        StatusCode::OK,
        layout::page(ctx, t.s(K::Destinations), Some(Nav::Destinations), body),
    ))
}
