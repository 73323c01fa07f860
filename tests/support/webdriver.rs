//! Debian's Chromium, headless, driven through chromedriver with the W3C WebDriver protocol
//! (JSON over HTTP, <https://www.w3.org/TR/webdriver2/>), spoken with the reqwest client the
//! crate already has: the dozen commands the browser test needs do not justify a WebDriver
//! crate's dependency tree.
//!
//! `Browser::start()` returns `None` (the test prints why and passes) when chromium or
//! chromedriver is missing, unless `STAGECAST_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that
//! a failure. The browser is closed (its WebDriver session deleted) when the value is dropped,
//! and chromedriver killed.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::wait::{wait_for, DEADLINE};

/// W3C WebDriver's key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
    port: u16,
    session_id: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn required() -> bool {
    std::env::var("STAGECAST_REQUIRE_BROWSER").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Skip (locally) or fail (in CI) when the browser cannot run here.
fn unavailable(why: &str) -> Option<Browser> {
    if required() {
        panic!(
            "STAGECAST_REQUIRE_BROWSER is set, but the browser test cannot run: {why}. \
             Install Debian's chromium and chromium-driver, or unset the variable."
        );
    }
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "\nSKIPPED the console's browser test ({why}); apt-get install chromium chromium-driver, \
         or set STAGECAST_REQUIRE_BROWSER=1 to make this an error\n"
    );
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    pub async fn start() -> Option<Browser> {
        let Some(chromium) = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]) else {
            return unavailable("no /usr/bin/chromium");
        };
        let Some(driver) = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
        else {
            return unavailable("no chromedriver");
        };
        let port = free_port();
        let profile = tempfile::tempdir().expect("a profile directory");
        let child = super::process::hermetic(&driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver to answer", DEADLINE, || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                let v: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                v["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        // The closed network refuses Chromium's background connections: these flags keep it
        // from trying (and a fresh profile from anything a previous run left).
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1100".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let res: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new WebDriver session")
            .json()
            .await
            .expect("session JSON");
        let Some(id) = res["value"]["sessionId"].as_str() else {
            panic!("chromedriver did not start Chromium: {res}");
        };
        Some(Browser {
            http,
            session: format!("{base}/session/{id}"),
            port,
            session_id: id.to_string(),
            _driver: child,
            _profile: profile,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status();
        let v: Value = res.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {v}"
        );
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The elements matching a CSS selector (possibly none).
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`; panics if there is none.
    pub async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {css:?}"))
    }

    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Run a script in the page (WebDriver's, not the page's: the page's CSP does not apply).
    pub async fn execute(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    pub async fn delete_cookies(&self) {
        self.call(reqwest::Method::DELETE, "/cookie", None).await;
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("a base64 PNG")
    }

    /// Wait until the page source contains `text`.
    pub async fn wait_for_text(&self, text: &str) {
        wait_until_page(self, text).await
    }
}

async fn wait_until_page(b: &Browser, text: &str) {
    let what = format!("the page to show {text:?}");
    wait_for(&what, DEADLINE, || async {
        b.source().await.contains(text).then_some(())
    })
    .await
}

impl Drop for Browser {
    /// Close Chromium through chromedriver (a killed chromedriver would leave it running),
    /// with a plain blocking request: Drop cannot await.
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.session_id, self.port
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
        }
    }
}
