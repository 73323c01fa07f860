//! The page shell (navigation, language switch, sign-out), the sign-in page, the static files
//! and small rendering helpers shared by the pages.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::i18n::{Tr, K};
use super::Ctx;
use crate::doctor::{Check, Status};
use crate::locale::Locale;

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

pub async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

pub async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// An HTML response.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// Which navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Jobs,
    Destinations,
    Stages,
}

fn head(t: Tr, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) " · " (t.s(K::Title)) }
            link rel="stylesheet" href="/static/console.css";
            script src="/static/console.js" defer {}
        }
    }
}

/// A page of a signed-in user.
pub fn page(ctx: &Ctx, title: &str, current: Option<Nav>, body: Markup) -> Markup {
    let t = ctx.tr();
    let locale = ctx.session.locale;
    let nav = [
        (Nav::Overview, "/", K::Overview),
        (Nav::Jobs, "/jobs", K::Jobs),
        (Nav::Destinations, "/destinations", K::Destinations),
        (Nav::Stages, "/stages", K::Stages),
    ];
    let role = if ctx.session.is_admin() {
        K::RoleAdmin
    } else {
        K::RoleViewer
    };
    html! {
        (DOCTYPE)
        html lang=(locale.code()) {
            (head(t, title))
            body {
                header.top {
                    a.brand href="/" { "stagecast" }
                    nav {
                        @for (n, href, k) in nav {
                            a href=(href) class=[(current == Some(n)).then_some("current")] { (t.s(k)) }
                        }
                    }
                    div.session {
                        form.lang method="post" action="/lang" {
                            input type="hidden" name="csrf" value=(ctx.session.csrf);
                            input type="hidden" name="back" value=(ctx.here);
                            @for l in Locale::ALL {
                                button type="submit" name="to" value=(l.code())
                                    class=[(l == locale).then_some("current")]
                                    title=(t.s(K::Language)) { (l.code()) }
                            }
                        }
                        span.user { (t.s(K::SignedInAs)) " " strong { (ctx.session.user) } " (" (t.s(role)) ")" }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(ctx.session.csrf);
                            button type="submit" { (t.s(K::Logout)) }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
                footer { "stagecast " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

/// The sign-in page.
pub fn login(t: Tr, locale: Locale, next: &str, csrf: &str, note: Option<K>) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(locale.code()) {
            (head(t, t.s(K::LoginTitle)))
            body.login {
                main {
                    h1 { (t.s(K::LoginTitle)) }
                    @if let Some(k) = note {
                        p class=(if k == K::LoginRequired { "note" } else { "error" }) { (t.s(k)) }
                    }
                    form method="post" action="/login" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="next" value=(next);
                        input type="hidden" name="lang" value=(locale.code());
                        label for="token" { (t.s(K::LoginToken)) }
                        input id="token" type="password" name="token" autocomplete="current-password" required autofocus;
                        button type="submit" { (t.s(K::LoginButton)) }
                    }
                    p.help { (t.s(K::LoginHelp)) }
                    p.langs {
                        @for l in Locale::ALL {
                            a href={ "/login?lang=" (l.code()) "&next=" (urlencode(next)) } { (l.code()) } " "
                        }
                    }
                }
            }
        }
    }
}

/// Percent-encoding for a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn opt_ts(t: Option<DateTime<Utc>>) -> String {
    t.map(ts).unwrap_or_default()
}

/// `3m 12s`: a whole number of seconds.
pub fn age(seconds: f64) -> String {
    let secs = if seconds.is_finite() && seconds > 0.0 {
        seconds.round() as u64
    } else {
        0
    };
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// JSON as a readable block.
pub fn json_block(v: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    html! { pre.json { (text) } }
}

/// A status word in a coloured badge.
pub fn badge(class: &str, text: &str) -> Markup {
    html! { span class={ "badge " (class) } { (text) } }
}

/// The doctor's findings, as `stagecast doctor` words them.
pub fn findings(t: Tr, checks: &[Check]) -> Markup {
    html! {
        @if checks.is_empty() {
            p.ok { "✓ " (t.s(K::NoFindings)) }
        } @else {
            ul.findings {
                @for c in checks {
                    @let (mark, class) = match c.status {
                        Status::Ok => ("✓", "ok"),
                        Status::Warning => ("!", "warning"),
                        Status::Problem => ("✗", "problem"),
                        Status::Skipped => ("-", "skipped"),
                    };
                    li class=(class) {
                        span.mark { (mark) } " " strong { (c.title) } ": " (c.found)
                        @if let Some(fix) = &c.fix {
                            br; span.fix { (t.s(K::Fix)) ": " (fix) }
                        }
                    }
                }
            }
        }
    }
}
