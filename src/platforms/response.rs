//! What every platform's HTTP service shares: the answer as read (status, JSON body or the start
//! of a non-JSON one), its audit text, and the description of a transport failure.

use std::sync::Arc;

use serde_json::Value;

/// What a platform's API answered.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    /// The JSON body, when it was JSON.
    pub body: Option<Value>,
    /// Start of a non-JSON body (a gateway's page), for the audit.
    pub text: Option<String>,
}

impl ApiResponse {
    /// Reads the whole body; a read that fails is reported as `reqwest` gives it.
    pub async fn read(response: reqwest::Response) -> Result<Self, reqwest::Error> {
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let (body, text) = parse_body(&bytes);
        Ok(Self { status, body, text })
    }

    /// The answer as the audit stores it (`EventResult::response`).
    pub fn audit(&self) -> Option<Arc<str>> {
        audit_text(self.body.as_ref(), self.text.as_deref())
    }
}

/// The body as JSON, or else (when not empty) its first 300 bytes as text.
pub fn parse_body(bytes: &[u8]) -> (Option<Value>, Option<String>) {
    let body: Option<Value> = serde_json::from_slice(bytes).ok();
    let text = (body.is_none() && !bytes.is_empty())
        .then(|| String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned());
    (body, text)
}

/// JSON text for the audit: the JSON body, or the non-JSON text as a JSON string.
pub fn audit_text(body: Option<&Value>, text: Option<&str>) -> Option<Arc<str>> {
    body.map(|b| Arc::from(b.to_string()))
        .or_else(|| text.map(|t| Arc::from(Value::String(t.to_owned()).to_string())))
}

/// A transport failure's text with its cause chain (reqwest's own Display is generic; the
/// causes say what went wrong: refused, DNS, TLS), without the URL.
pub fn transport_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
