//! The admin web console (docs/console.md): failed jobs, their delivery audit, replay and
//! cancel, destination health and stage event configuration, in a browser.
//!
//! Served by `stagecast run --console-addr …` or `stagecast console`, on its own listener (not
//! the /metrics one: that one is often opened to a Prometheus on other hosts, the console must
//! not be). Server-rendered HTML (maud), one small script for the event hints, no build step;
//! every page works without JavaScript.
//!
//! It reads and acts only through `src/store` — the same functions `stagecast jobs` and
//! `stagecast doctor` use — as the admin database role: replay and cancel are the audited SQL
//! functions the CLI calls, a stage's events are saved by `stagecast.set_stage_events`
//! (audited too).

mod auth;
mod i18n;
mod layout;
mod pages;
mod stage_form;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

pub use auth::{Role, Users, UsersError, MIN_TOKEN_CHARS};

use crate::locale::Locale;
use crate::store::admin::AdminError;
use crate::store::{Store, StoreError};
use auth::{Session, Sessions};
use i18n::{Tr, K};

const SESSION_COOKIE: &str = "stagecast_console";
const LOGIN_COOKIE: &str = "stagecast_console_login";

/// How the console runs.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub addr: SocketAddr,
    pub users: Users,
    /// The default language (the worker's `--locale`); each session can switch.
    pub locale: Locale,
}

struct Inner {
    store: Store,
    users: Users,
    sessions: Sessions,
    locale: Locale,
    /// `Secure` cookies: everywhere but on loopback, where browsers may be given plain http.
    secure: bool,
    /// The platforms' own checks of a pixel row (the destinations page) and of a stage's event
    /// names (the stage form). Built from default settings: those checks read only the row or
    /// the name, never a setting or the network.
    platforms: crate::platforms::registry::Registry,
}

#[derive(Clone)]
struct App(Arc<Inner>);

/// What the session middleware found, for the handlers behind it.
#[derive(Clone)]
struct Ctx {
    session_id: String,
    session: Session,
    /// The request's path and query (the language switch comes back here).
    here: String,
}

impl Ctx {
    fn tr(&self) -> Tr {
        Tr(self.session.locale)
    }
}

/// Why a request failed. Rendered as a page in the session's language, never as a stack.
#[derive(Debug)]
enum Fail {
    NotFound,
    Forbidden,
    Csrf,
    BadRequest(String),
    Admin(AdminError),
    Store(StoreError),
}

impl From<AdminError> for Fail {
    fn from(e: AdminError) -> Self {
        Fail::Admin(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl Fail {
    fn status(&self) -> StatusCode {
        match self {
            Fail::NotFound => StatusCode::NOT_FOUND,
            Fail::Forbidden | Fail::Csrf => StatusCode::FORBIDDEN,
            Fail::BadRequest(_) => StatusCode::BAD_REQUEST,
            Fail::Admin(AdminError::NotFound(_) | AdminError::StageNotFound(_)) => {
                StatusCode::NOT_FOUND
            }
            Fail::Admin(AdminError::Refused { .. }) => StatusCode::CONFLICT,
            Fail::Admin(AdminError::Invalid(_)) => StatusCode::BAD_REQUEST,
            Fail::Admin(AdminError::Database(_)) | Fail::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn message(&self, t: Tr) -> String {
        match self {
            Fail::NotFound => t.s(K::NotFound).into(),
            Fail::Forbidden => t.s(K::Forbidden).into(),
            Fail::Csrf => t.s(K::CsrfRejected).into(),
            Fail::BadRequest(m) => format!("{}: {m}", t.s(K::BadRequest)),
            Fail::Admin(e @ AdminError::Database(_)) => format!("{}: {e}", t.s(K::DatabaseError)),
            Fail::Admin(e) => e.to_string(),
            Fail::Store(e) => format!("{}: {e}", t.s(K::DatabaseError)),
        }
    }
}

/// The page for a failure, logged when it is the database's.
fn fail_page(ctx: &Ctx, fail: Fail) -> Response {
    if matches!(fail, Fail::Store(_) | Fail::Admin(AdminError::Database(_))) {
        tracing::warn!(error = %fail.message(Tr(Locale::En)), "console: a database read or action failed");
    }
    let t = ctx.tr();
    let body = maud::html! { p.error { (fail.message(t)) } };
    layout::respond(fail.status(), layout::page(ctx, t.s(K::Title), None, body))
}

/// A handler's result as a response.
fn respond(ctx: &Ctx, r: Result<Response, Fail>) -> Response {
    r.unwrap_or_else(|f| fail_page(ctx, f))
}

/// A running console; dropped → stopped.
pub struct ConsoleServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listen on `config.addr` (port 0 picks a free port) and serve the console, reading and
/// acting through `store` (a pool of the admin role).
pub async fn serve(config: ConsoleConfig, store: Store) -> std::io::Result<ConsoleServer> {
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let addr = listener.local_addr()?;
    let users = config.users.len();
    let app = router(App(Arc::new(Inner {
        store,
        users: config.users,
        sessions: Sessions::new(),
        locale: config.locale,
        secure: !addr.ip().is_loopback(),
        platforms: crate::platforms::registry::Registry::from_config_lenient(
            &crate::platforms::registry::PlatformsConfig::default(),
        )
        .0,
    })));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "console stopped");
        }
    });
    tracing::info!(%addr, users, "serving the admin console");
    Ok(ConsoleServer { addr, task })
}

fn router(app: App) -> Router {
    let protected = Router::new()
        .route("/", get(pages::overview::show))
        .route("/jobs", get(pages::jobs::list))
        .route(
            "/jobs/bulk",
            get(pages::jobs::bulk_preview).post(pages::jobs::bulk_act),
        )
        .route("/jobs/{id}", get(pages::jobs::show))
        .route("/jobs/{id}/replay", post(pages::jobs::replay))
        .route("/jobs/{id}/cancel", post(pages::jobs::cancel))
        .route("/destinations", get(pages::destinations::show))
        .route("/stages", get(pages::stages::list))
        .route(
            "/stages/{id}",
            get(pages::stages::show).post(pages::stages::save),
        )
        .route("/lang", post(switch_language))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_session));
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/static/console.css", get(layout::css))
        .route("/static/console.js", get(layout::js))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(app)
}

/// An unknown path: "not found" for a signed-in user, the sign-in page for anyone else (who
/// learns nothing about which paths exist).
async fn not_found(State(app): State<App>, req: Request) -> Response {
    let found = cookie(req.headers(), SESSION_COOKIE)
        .and_then(|id| app.0.sessions.get(&id).map(|s| (id, s)));
    match found {
        Some((session_id, session)) => {
            let ctx = Ctx {
                session_id,
                session,
                here: "/".into(),
            };
            fail_page(&ctx, Fail::NotFound)
        }
        None => login_page(
            &app,
            req.headers(),
            app.0.locale,
            "/",
            Some(K::LoginRequired),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

/// Headers on every response; cross-site state changes refused before any handler runs.
async fn security_headers(req: Request, next: Next) -> Response {
    let cross_site = req.method() != Method::GET
        && req.method() != Method::HEAD
        && req
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "same-origin" && v != "none");
    let is_static = req.uri().path().starts_with("/static/");
    let mut res = if cross_site {
        (StatusCode::FORBIDDEN, "cross-site request refused\n").into_response()
    } else {
        next.run(req).await
    };
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    // No inline script or style anywhere: the one script and the stylesheet are files.
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    if is_static {
        set(h, "cache-control", "public, max-age=300");
    } else {
        set(h, "cache-control", "no-store");
        set(h, "pragma", "no-cache");
    }
    res
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn set_cookie(app: &App, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
    let secure = if app.0.secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A path of this console to come back to: relative, never `//host` or a scheme.
fn local_path(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if ok {
        next.to_string()
    } else {
        "/".to_string()
    }
}

fn lang_of(s: Option<&str>, default: Locale) -> Locale {
    s.and_then(|l| l.parse().ok()).unwrap_or(default)
}

async fn require_session(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let found = cookie(req.headers(), SESSION_COOKIE)
        .and_then(|id| app.0.sessions.get(&id).map(|s| (id, s)));
    let here = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    match found {
        Some((session_id, session)) => {
            req.extensions_mut().insert(Ctx {
                session_id,
                session,
                here,
            });
            next.run(req).await
        }
        None => {
            let next_path = if req.method() == Method::GET {
                local_path(&here)
            } else {
                "/".into()
            };
            login_page(
                &app,
                req.headers(),
                app.0.locale,
                &next_path,
                Some(K::LoginRequired),
                StatusCode::UNAUTHORIZED,
            )
        }
    }
}

/// The sign-in page with a pre-session CSRF token (in its cookie and in the form). The token
/// of the request's cookie is kept when it has one: a browser fetches other things meanwhile
/// (`/favicon.ico` gets this page too), and a new token each time would void the form it shows.
fn login_page(
    app: &App,
    headers: &HeaderMap,
    locale: Locale,
    next: &str,
    note: Option<K>,
    status: StatusCode,
) -> Response {
    let csrf = cookie(headers, LOGIN_COOKIE)
        .filter(|c| {
            c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or_else(auth::random_token);
    let markup = layout::login(Tr(locale), locale, next, &csrf, note);
    let mut res = layout::respond(status, markup);
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(app, LOGIN_COOKIE, &csrf, "/", 900),
    );
    res
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
    lang: Option<String>,
}

async fn login_form(
    State(app): State<App>,
    headers: HeaderMap,
    q: axum::extract::Query<LoginQuery>,
) -> Response {
    let locale = lang_of(q.lang.as_deref(), app.0.locale);
    let next = local_path(q.next.as_deref().unwrap_or("/"));
    login_page(&app, &headers, locale, &next, None, StatusCode::OK)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    lang: String,
}

async fn login(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return login_page(
            &app,
            &headers,
            app.0.locale,
            "/",
            Some(K::LoginFailed),
            StatusCode::BAD_REQUEST,
        );
    };
    let locale = lang_of(Some(&form.lang), app.0.locale);
    let next = local_path(&form.next);
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !auth::same_secret(&expected, &form.csrf) {
        return login_page(
            &app,
            &headers,
            locale,
            &next,
            Some(K::CsrfRejected),
            StatusCode::FORBIDDEN,
        );
    }
    if !app.0.sessions.login_allowed() {
        return login_page(
            &app,
            &headers,
            locale,
            &next,
            Some(K::TooManyAttempts),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    match app.0.sessions.sign_in(&app.0.users, &form.token, locale) {
        None => {
            tracing::warn!("console: a sign-in with an unknown token was refused");
            login_page(
                &app,
                &headers,
                locale,
                &next,
                Some(K::LoginFailed),
                StatusCode::UNAUTHORIZED,
            )
        }
        Some((id, session)) => {
            tracing::info!(user = %session.user, role = session.role.code(), "console: signed in");
            let mut res = Redirect::to(&next).into_response();
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(&app, SESSION_COOKIE, &id, "/", 8 * 3600),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(&app, LOGIN_COOKIE, "", "/", 0),
            );
            res
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    back: String,
}

async fn logout(
    State(app): State<App>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.map(|f| f.0.csrf).unwrap_or_default();
    if !ctx.session.csrf_ok(&csrf) {
        return fail_page(&ctx, Fail::Csrf);
    }
    app.0.sessions.sign_out(&ctx.session_id);
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&app, SESSION_COOKIE, "", "/", 0),
    );
    res
}

async fn switch_language(
    State(app): State<App>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return fail_page(&ctx, Fail::Csrf);
    };
    if !ctx.session.csrf_ok(&form.csrf) {
        return fail_page(&ctx, Fail::Csrf);
    }
    let Ok(locale) = form.to.parse::<Locale>() else {
        return fail_page(
            &ctx,
            Fail::BadRequest(format!("unknown language {:?}", form.to)),
        );
    };
    app.0.sessions.set_locale(&ctx.session_id, locale);
    Redirect::to(&local_path(&form.back)).into_response()
}

/// Longest reason kept in the audit (the forms say so too).
const MAX_REASON_CHARS: usize = 500;

/// A form's reason: required, and short enough for the audit.
fn reason_of(raw: Option<&str>) -> Result<&str, K> {
    let reason = raw.map(str::trim).unwrap_or("");
    if reason.is_empty() {
        Err(K::ReasonRequired)
    } else if reason.chars().count() > MAX_REASON_CHARS {
        Err(K::ReasonTooLong)
    } else {
        Ok(reason)
    }
}

/// The CSRF token of a state-changing form must be the session's; admins only.
fn authorize(ctx: &Ctx, csrf: &str) -> Result<(), Fail> {
    if !ctx.session.csrf_ok(csrf) {
        return Err(Fail::Csrf);
    }
    if !ctx.session.is_admin() {
        return Err(Fail::Forbidden);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_this_console() {
        assert_eq!(local_path("/jobs?status=failed"), "/jobs?status=failed");
        for evil in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "jobs",
            "",
            "/a\nb",
        ] {
            assert_eq!(local_path(evil), "/", "{evil:?}");
        }
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; stagecast_console=xyz; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
    }
}
