//! Overview: backlog and lag by kind, deliveries per destination over the last hour and day,
//! held or throttled destinations, the last alerts.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::html;

use super::pixel_name;
use crate::console::i18n::K;
use crate::console::layout::{self, age, badge, ts, Nav};
use crate::console::{respond, App, Ctx, Fail};
use crate::store::admin::ACTIVITY_ROW_CAP;

pub async fn show(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    let r = render(&app, &ctx).await;
    respond(&ctx, r)
}

#[derive(Default)]
struct KindRow {
    pending: i64,
    running: i64,
    failed: i64,
    cancelled: i64,
    lag: Option<f64>,
}

async fn render(app: &App, ctx: &Ctx) -> Result<Response, Fail> {
    let store = &app.0.store;
    let t = ctx.tr();
    let stats = store.queue_stats().await?;
    let activity = store.destination_activity().await?;
    let held = store.held_destinations().await?;
    let alerts = store.recent_alerts(20).await?;
    let pixels = store.admin_pixels().await?;

    let mut kinds: BTreeMap<String, KindRow> = BTreeMap::new();
    for s in &stats {
        let row = kinds.entry(s.kind.clone()).or_default();
        match s.status.as_str() {
            "pending" => row.pending += s.jobs,
            "running" => row.running += s.jobs,
            "failed" => row.failed += s.jobs,
            "cancelled" => row.cancelled += s.jobs,
            _ => {}
        }
        if let Some(lag) = s.oldest_due_age_seconds {
            row.lag = Some(row.lag.map_or(lag, |l: f64| l.max(lag)));
        }
    }
    let capped = activity
        .first()
        .is_some_and(|a| a.rows_read >= ACTIVITY_ROW_CAP);
    let throttled: Vec<_> = activity.iter().filter(|a| a.throttled_hour > 0).collect();

    let body = html! {
        h2 { (t.s(K::Backlog)) }
        @if kinds.is_empty() {
            p.muted { (t.s(K::QueueEmpty)) }
        } @else {
            table {
                tr {
                    th { (t.s(K::Kind)) } th.num { (t.s(K::Pending)) } th.num { (t.s(K::Running)) }
                    th.num { (t.s(K::Failed)) } th.num { (t.s(K::Cancelled)) } th.num { (t.s(K::Lag)) }
                }
                @for (kind, r) in &kinds {
                    tr {
                        td { (kind) }
                        td.num { (r.pending) }
                        td.num { (r.running) }
                        td.num {
                            @if r.failed > 0 {
                                a href={ "/jobs?status=failed&kind=" (kind) } { (r.failed) }
                            } @else { "0" }
                        }
                        td.num { (r.cancelled) }
                        td.num { (r.lag.map(age).unwrap_or_else(|| "-".into())) }
                    }
                }
            }
        }

        h2 { (t.s(K::Deliveries24h)) }
        @if activity.is_empty() {
            p.muted { (t.s(K::NoDeliveries)) }
        } @else {
            @if capped { p.note { (t.s(K::Capped)) } }
            table {
                tr {
                    th { (t.s(K::Destination)) } th.num { (t.s(K::Delivered1h)) } th.num { (t.s(K::Failed1h)) }
                    th.num { (t.s(K::Delivered24h)) } th.num { (t.s(K::Failed24h)) }
                    th.num { (t.s(K::Retries24h)) } th.num { (t.s(K::Throttled1h)) }
                }
                @for a in &activity {
                    tr {
                        td { (a.platform) ":" (pixel_name(&pixels, &a.destination)) }
                        td.num { (a.delivered_hour) }
                        td.num { (a.failed_hour) }
                        td.num { (a.delivered_day) }
                        td.num {
                            @if a.failed_day > 0 {
                                a href={ "/jobs?status=failed&pixel=" (a.destination) } { (a.failed_day) }
                            } @else { "0" }
                        }
                        td.num { (a.retried_day) }
                        td.num { (a.throttled_hour) }
                    }
                }
            }
        }

        h2 { (t.s(K::HeldTitle)) }
        @if throttled.is_empty() && held.is_empty() {
            p.muted { (t.s(K::NoneHeld)) }
        } @else {
            ul {
                @for a in &throttled {
                    li {
                        (badge("throttled", "throttled")) " " (a.platform) ":" (pixel_name(&pixels, &a.destination)) ": "
                        (t.s(K::ThrottledSince)) " " (layout::opt_ts(a.last_throttled_at))
                    }
                }
                @for h in &held {
                    @let pixel = h.destination.split_once(':').map(|(_, p)| p).unwrap_or(&h.destination);
                    li {
                        (badge("pending", "held")) " "
                        a href={ "/jobs?status=pending&pixel=" (pixel) } { (h.destination) }
                        ": " (h.jobs) " " (t.s(K::JobsWaitUntil)) " " (layout::opt_ts(h.next_run_at))
                    }
                }
            }
        }

        h2 { (t.s(K::LastAlerts)) }
        @if alerts.is_empty() {
            p.muted { (t.s(K::NoAlerts)) }
        } @else {
            table {
                tr {
                    th { (t.s(K::When)) } th { (t.s(K::Cause)) } th { (t.s(K::Job)) }
                    th { (t.s(K::Customer)) } th { (t.s(K::Chat)) } th { (t.s(K::Message)) }
                }
                @for a in &alerts {
                    tr {
                        td { (ts(a.created_at)) }
                        td { code { (a.cause) } }
                        td { @if let Some(j) = a.job_id { a href={ "/jobs/" (j) } { (j) } } }
                        td { @if let Some(c) = a.customer_id { (c) } }
                        td {
                            @if let Some(m) = a.chat_message_id {
                                (t.s(K::ChatPosted)) " " (m)
                            } @else if let Some(e) = &a.chat_error {
                                (badge("failed", t.s(K::ChatRefused))) " " (e)
                            } @else {
                                span.muted { (t.s(K::ChatNone)) }
                            }
                        }
                        td { (one_line(&a.message, 160)) }
                    }
                }
            }
        }
    };
    Ok(layout::respond(
        StatusCode::OK,
        layout::page(ctx, t.s(K::Overview), Some(Nav::Overview), body),
    ))
}

/// The first `max` characters on one line.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}
