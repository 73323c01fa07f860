//! The admin console (src/console/) in process, for tests: served on a free port of 127.0.0.1
//! as the database's admin role, with an admin and a viewer user; and a small HTTP client that
//! signs in like a browser (the sign-in form's CSRF cookie, then the session cookie).
#![allow(dead_code)]

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::{Response, StatusCode};
use stagecast::console::{ConsoleConfig, ConsoleServer, Users};
use stagecast::locale::Locale;
use stagecast::store::Store;

use super::TestDb;

pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdefghijklmnop";
pub const VIEWER_TOKEN: &str = "viewer-token-0123456789abcdefghijklmno";

/// `STAGECAST_CONSOLE_USERS` of the tests: `ana` (admin) and `bob` (viewer).
pub fn users_spec() -> String {
    format!("ana:admin:{ADMIN_TOKEN},bob:viewer:{VIEWER_TOKEN}")
}

pub struct Console {
    pub server: ConsoleServer,
    pub base: String,
}

impl Console {
    /// The console on the admin role's pool of `db`, default language English.
    pub async fn start(db: &TestDb) -> Console {
        let config = ConsoleConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            users: Users::parse(&users_spec()).expect("test users"),
            locale: Locale::En,
        };
        let server = stagecast::console::serve(config, Store::new(db.admin_pool.clone()))
            .await
            .expect("the console listens");
        let base = format!("http://{}", server.addr);
        Console { server, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The console on `db` (as [`Console::start`]) and a user signed in to it with `token`.
    pub async fn start_signed_in(db: &TestDb, token: &str) -> (Console, Signed) {
        let console = Console::start(db).await;
        let user = sign_in(&console.base, token).await;
        (console, user)
    }
}

/// A client that follows no redirects (tests look at them) and uses no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `name=value` of a Set-Cookie header of `res` for cookie `name`.
pub fn set_cookie(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
}

/// The value of the first hidden input called `name` in an HTML page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(
        html[start..end]
            .replace("&quot;", "\"")
            .replace("&amp;", "&"),
    )
}

/// A signed-in user: the session cookie and the session's CSRF token.
pub struct Signed {
    pub cookie: String,
    pub csrf: String,
    pub http: reqwest::Client,
    pub base: String,
}

impl Signed {
    /// A POST to `path` carrying the session cookie, for a test to finish (headers, body).
    pub fn post_request(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.post_request(path).form(form).send().await.unwrap()
    }

    /// `post` with the session's CSRF token added.
    pub async fn post_csrf(&self, path: &str, form: &[(&str, &str)]) -> Response {
        let mut all: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        all.extend_from_slice(form);
        self.post(path, &all).await
    }
}

/// The sign-in form of the console at `base` (`http://127.0.0.1:<port>`): its CSRF cookie
/// (`name=value`) and token.
pub async fn login_form(base: &str) -> (String, String) {
    let res = client().get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = set_cookie(&res, "stagecast_console_login").expect("a sign-in CSRF cookie");
    let html = res.text().await.unwrap();
    let csrf = hidden(&html, "csrf").expect("a CSRF field in the sign-in form");
    (cookie, csrf)
}

/// `POST /login` of the console at `base` with `form`, with the sign-in form's CSRF cookie
/// when there is one.
pub async fn post_login(
    http: &reqwest::Client,
    base: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> Response {
    let mut request = http.post(format!("{base}/login"));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.form(form).send().await.unwrap()
}

/// Sign in to the console at `base` with `token`; panics unless it works.
pub async fn sign_in(base: &str, token: &str) -> Signed {
    let (cookie, csrf) = login_form(base).await;
    let http = client();
    let form = [("token", token), ("csrf", csrf.as_str()), ("next", "/")];
    let res = post_login(&http, base, Some(&cookie), &form).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "signing in");
    let session = set_cookie(&res, "stagecast_console").expect("a session cookie");
    let page = http
        .get(format!("{base}/"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let csrf = hidden(&html, "csrf").expect("the session's CSRF token on a page");
    Signed {
        cookie: session,
        csrf,
        http,
        base: base.to_string(),
    }
}
