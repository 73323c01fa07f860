//! The HTTP service: builds the concrete request (URL, auth, body) and returns what came back.
//! No retry decisions here (that is `retry`), and the token travels only in the Authorization
//! header, so it never appears in a URL, a log line or an error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;

use super::config::MetaConfig;
use crate::platforms::response::{audit_text, parse_body, transport_text};
use crate::secrets::Secret;

#[derive(Debug, Clone)]
pub struct MetaClient {
    http: reqwest::Client,
    graph_url: reqwest::Url,
    api_version: String,
    timeout: Duration,
}

/// What the Graph API answered.
#[derive(Debug, Clone)]
pub struct GraphResponse {
    pub status: u16,
    /// The JSON body, when it was JSON.
    pub body: Option<Value>,
    /// Start of a non-JSON body (an HTML page from a proxy), for the audit.
    pub text: Option<String>,
    /// Highest usage percentage announced in X-App-Usage / X-Business-Use-Case-Usage, and the
    /// platform's estimate of when access returns (in minutes), if any.
    pub usage_pct: Option<f64>,
    pub regain_minutes: Option<u64>,
    /// `Retry-After` (seconds or an HTTP date), where the answer carried one.
    pub retry_after: Option<Duration>,
    pub elapsed: Duration,
}

impl GraphResponse {
    /// The answer as the audit stores it (`EventResult::response`).
    pub fn audit(&self) -> Option<Arc<str>> {
        audit_text(self.body.as_ref(), self.text.as_deref())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("could not connect to the Graph API: {0}")]
    Connect(String),
    #[error("HTTP error talking to the Graph API: {0}")]
    Other(String),
}

impl MetaClient {
    pub fn new(config: &MetaConfig) -> Result<Self, super::MetaConfigError> {
        config.validate()?;
        let graph_url = reqwest::Url::parse(&config.graph_url)
            .map_err(|_| super::MetaConfigError::Url(config.graph_url.clone()))?;
        // Environment proxies for graph.facebook.com; the local sandbox is reached directly.
        let http = crate::http_client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("stagecast/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(|e| super::MetaConfigError::Url(format!("{}: {e}", config.graph_url)))?;
        Ok(Self {
            http,
            graph_url,
            api_version: config.api_version.clone(),
            timeout: config.timeout,
        })
    }

    /// `{graph_url}/{version}/{segments...}` with each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.graph_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.push(&self.api_version);
            for s in segments {
                path.push(s);
            }
        }
        url
    }

    /// `POST /{version}/{pixel_id}/events` with a pre-serialized JSON body.
    pub async fn post_events(
        &self,
        pixel_id: &str,
        token: &Secret,
        body: Vec<u8>,
    ) -> Result<GraphResponse, TransportError> {
        let url = self.url(&[pixel_id, "events"]);
        let started = Instant::now();
        let request = self
            .http
            .post(url)
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(e, self.timeout))?;
        read_response(response, started, self.timeout).await
    }

    /// `GET /{version}/{object_id}?fields=...` (pixel checks, ad → campaign lookups).
    pub async fn get_object(
        &self,
        object_id: &str,
        fields: Option<&str>,
        token: &Secret,
    ) -> Result<GraphResponse, TransportError> {
        self.get(&[object_id], fields, token).await
    }

    /// `GET /{version}/{object_id}/{edge}` (e.g. a WABA's `dataset`).
    pub async fn get_edge(
        &self,
        object_id: &str,
        edge: &str,
        token: &Secret,
    ) -> Result<GraphResponse, TransportError> {
        self.get(&[object_id, edge], None, token).await
    }

    async fn get(
        &self,
        segments: &[&str],
        fields: Option<&str>,
        token: &Secret,
    ) -> Result<GraphResponse, TransportError> {
        let mut url = self.url(segments);
        if let Some(fields) = fields {
            url.query_pairs_mut().append_pair("fields", fields);
        }
        let started = Instant::now();
        let response = self
            .http
            .get(url)
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .send()
            .await
            .map_err(|e| transport_error(e, self.timeout))?;
        read_response(response, started, self.timeout).await
    }
}

fn transport_error(e: reqwest::Error, timeout: Duration) -> TransportError {
    // The URL never carries the token (header auth), and is left out anyway.
    if e.is_timeout() {
        return TransportError::Timeout(timeout);
    }
    let connect = e.is_connect();
    let text = transport_text(e);
    if connect {
        TransportError::Connect(text)
    } else {
        TransportError::Other(text)
    }
}

async fn read_response(
    response: reqwest::Response,
    started: Instant,
    timeout: Duration,
) -> Result<GraphResponse, TransportError> {
    let status = response.status().as_u16();
    let (usage_pct, regain_minutes) = usage(response.headers());
    let retry_after = retry_after(response.headers(), chrono::Utc::now());
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(e, timeout))?;
    let (body, text) = parse_body(&bytes);
    Ok(GraphResponse {
        status,
        body,
        text,
        usage_pct,
        regain_minutes,
        retry_after,
        elapsed: started.elapsed(),
    })
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date. Unreadable values are
/// ignored (the queue's backoff applies then).
fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - now).to_std().ok()
}

/// Read Meta's usage headers (*rate-limiting*): percentages of the hourly allowance, and
/// `estimated_time_to_regain_access` (minutes) in the business-use-case header.
fn usage(headers: &HeaderMap) -> (Option<f64>, Option<u64>) {
    let mut max_pct: Option<f64> = None;
    let mut regain: Option<u64> = None;
    let mut consider = |v: &Value| {
        for key in [
            "call_count",
            "total_cputime",
            "total_time",
            "acc_id_util_pct",
        ] {
            if let Some(p) = v.get(key).and_then(Value::as_f64) {
                max_pct = Some(max_pct.map_or(p, |m: f64| m.max(p)));
            }
        }
        if let Some(m) = v
            .get("estimated_time_to_regain_access")
            .and_then(Value::as_u64)
        {
            if m > 0 {
                regain = Some(regain.map_or(m, |r: u64| r.max(m)));
            }
        }
    };
    for name in ["x-app-usage", "x-ad-account-usage"] {
        if let Some(v) = headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        {
            consider(&v);
        }
    }
    if let Some(Value::Object(map)) = headers
        .get("x-business-use-case-usage")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    {
        for entries in map.values() {
            if let Some(list) = entries.as_array() {
                list.iter().for_each(&mut consider);
            }
        }
    }
    (max_pct, regain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reads_usage_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-app-usage",
            HeaderValue::from_static(r#"{"call_count":12,"total_cputime":3,"total_time":40}"#),
        );
        h.insert(
            "x-business-use-case-usage",
            HeaderValue::from_static(
                r#"{"123":[{"type":"ads_management","call_count":95,"total_cputime":20,"total_time":20,"estimated_time_to_regain_access":19}]}"#,
            ),
        );
        assert_eq!(usage(&h), (Some(95.0), Some(19)));
        assert_eq!(usage(&HeaderMap::new()), (None, None));
        h.insert("x-app-usage", HeaderValue::from_static("not json"));
        assert_eq!(usage(&h).1, Some(19));
    }

    #[test]
    fn reads_retry_after_as_seconds_or_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Tue, 01 Dec 2026 12:01:30 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(90)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn builds_urls_with_version_and_encoded_segments() {
        let c = MetaClient::new(&MetaConfig {
            graph_url: "http://127.0.0.1:9/base/".into(),
            ..MetaConfig::default()
        })
        .unwrap();
        assert_eq!(
            c.url(&["123", "events"]).as_str(),
            "http://127.0.0.1:9/base/v26.0/123/events"
        );
        assert_eq!(
            c.url(&["a/b?c"]).as_str(),
            "http://127.0.0.1:9/base/v26.0/a%2Fb%3Fc"
        );
    }
}
