//! How stagecast builds its HTTP clients (Meta's Graph API, Sentry): the environment's proxy
//! settings for real hosts, and never a proxy for this machine's own loopback addresses.
//!
//! A proxy cannot reach the caller's loopback interface: for the proxy, `127.0.0.1` is itself.
//! Handing it a request for `http://127.0.0.1:PORT` (the Graph API sandbox of the demo, the
//! benchmark and the tests, a local Sentry relay) can only fail, typically with a 502 after a
//! timeout. So loopback destinations (`localhost` and its subdomains, `127.0.0.0/8`, `::1`) are
//! always reached directly, the same rule Go's `net/http` applies to its environment proxies
//! (`ProxyFromEnvironment` never proxies localhost or loopback addresses). Every other destination
//! follows the usual variables, read the way reqwest reads them by default: `HTTPS_PROXY` /
//! `HTTP_PROXY` / `ALL_PROXY` (upper or lower case), `NO_PROXY`, and none at all when
//! `REQUEST_METHOD` says the process runs as a CGI script (httpoxy).

use reqwest::{NoProxy, Proxy};

/// Destinations never sent through a proxy, in `NO_PROXY` syntax.
pub const LOOPBACK_NO_PROXY: &str = "localhost,127.0.0.0/8,::1";

/// A reqwest client builder with stagecast's proxy rule; callers add timeouts and the like.
pub fn builder() -> reqwest::ClientBuilder {
    with_proxies(reqwest::Client::builder(), &|name| std::env::var(name).ok())
}

/// The environment variables that decide the proxies (for diagnostics and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: String,
}

impl ProxyEnv {
    /// Reads the variables through `env` (`std::env::var` in production). `None` in a CGI process.
    pub fn read(env: &dyn Fn(&str) -> Option<String>) -> Option<ProxyEnv> {
        if env("REQUEST_METHOD").is_some() {
            return None;
        }
        // An empty value counts as unset, as in curl and reqwest.
        let first = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| env(n))
                .find(|v| !v.trim().is_empty())
        };
        let all = first(&["ALL_PROXY", "all_proxy"]);
        let no_proxy = first(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
        Some(ProxyEnv {
            http: first(&["HTTP_PROXY", "http_proxy"]).or_else(|| all.clone()),
            https: first(&["HTTPS_PROXY", "https_proxy"]).or(all),
            no_proxy: if no_proxy.trim().is_empty() {
                LOOPBACK_NO_PROXY.to_string()
            } else {
                format!("{no_proxy},{LOOPBACK_NO_PROXY}")
            },
        })
    }
}

fn with_proxies(
    builder: reqwest::ClientBuilder,
    env: &dyn Fn(&str) -> Option<String>,
) -> reqwest::ClientBuilder {
    // No automatic system proxy: it would apply to loopback too. The explicit ones below are the
    // same settings plus the loopback exclusion.
    let mut builder = builder.no_proxy();
    let Some(settings) = ProxyEnv::read(env) else {
        return builder;
    };
    let exclusions = || NoProxy::from_string(&settings.no_proxy);
    // An unparsable proxy URL is skipped, as reqwest's own environment handling skips it.
    if let Some(url) = &settings.http {
        if let Ok(p) = Proxy::http(url) {
            builder = builder.proxy(p.no_proxy(exclusions()));
        }
    }
    if let Some(url) = &settings.https {
        if let Ok(p) = Proxy::https(url) {
            builder = builder.proxy(p.no_proxy(exclusions()));
        }
    }
    builder
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn reads_the_variables_like_curl_and_always_excludes_loopback() {
        let e = ProxyEnv::read(&env_of(&[
            ("https_proxy", "http://proxy:3128"),
            ("ALL_PROXY", "http://all:1080"),
            ("NO_PROXY", "internal.example"),
        ]))
        .unwrap();
        assert_eq!(e.https.as_deref(), Some("http://proxy:3128"));
        assert_eq!(
            e.http.as_deref(),
            Some("http://all:1080"),
            "ALL_PROXY fills in"
        );
        assert_eq!(e.no_proxy, format!("internal.example,{LOOPBACK_NO_PROXY}"));

        let none = ProxyEnv::read(&env_of(&[("HTTP_PROXY", "")])).unwrap();
        assert_eq!(none.http, None, "empty is unset");
        assert_eq!(none.no_proxy, LOOPBACK_NO_PROXY);

        assert_eq!(
            ProxyEnv::read(&env_of(&[
                ("REQUEST_METHOD", "GET"),
                ("HTTP_PROXY", "http://evil:1")
            ])),
            None,
            "CGI: HTTP_PROXY may come from a request header (httpoxy)"
        );
    }

    /// A fake forward proxy on 127.0.0.1 that answers 200 to whatever it is sent and records
    /// the request line: where the client asked it to go.
    async fn fake_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = conn.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let line = head.lines().next().unwrap_or_default().to_string();
                    record.lock().unwrap().push(line);
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nproxied")
                        .await;
                });
            }
        });
        (url, seen)
    }

    /// A plain server on 127.0.0.1 answering "direct".
    async fn direct_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\ndirect")
                        .await;
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn loopback_goes_direct_and_real_hosts_through_the_proxy() {
        let (proxy, seen) = fake_proxy().await;
        let env = env_of(&[("HTTP_PROXY", proxy.as_str())]);
        let client = with_proxies(reqwest::Client::builder(), &env)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();

        let local = direct_server().await;
        let body = client
            .get(&local)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "direct", "loopback never goes to the proxy");
        let localhost = local.replace("127.0.0.1", "localhost");
        let body = client
            .get(&localhost)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "direct");

        // A real host name goes to the proxy (which is on this machine: nothing leaves it).
        let body = client
            .get("http://graph.example.invalid/v26.0/me")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "proxied");
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            ["GET http://graph.example.invalid/v26.0/me HTTP/1.1"]
        );
    }
}
