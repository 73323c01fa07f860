//! The HTTP service: builds the request (URL, `Access-Token` header, body) and returns what came
//! back. No retry decisions here (that is `retry`). The token travels only in its header, raw
//! (TikTok refuses `Bearer`), so it never appears in a URL, a log line or an error.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;

use super::config::{TiktokConfig, TiktokConfigError, TRACK_PATH};
use crate::platforms::response::{transport_text, ApiResponse};
use crate::secrets::Secret;

const ACCESS_TOKEN: &str = "Access-Token";

#[derive(Debug, Clone)]
pub struct TiktokClient {
    http: reqwest::Client,
    track_url: reqwest::Url,
    timeout: Duration,
}

/// What the Events API answered.
pub type TrackResponse = ApiResponse;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("could not connect to the TikTok Events API: {0}")]
    Connect(String),
    #[error("HTTP error talking to the TikTok Events API: {0}")]
    Other(String),
}

impl TiktokClient {
    pub fn new(config: &TiktokConfig) -> Result<Self, TiktokConfigError> {
        config.validate()?;
        let base = reqwest::Url::parse(&config.base_url)
            .map_err(|_| TiktokConfigError::Url(config.base_url.clone()))?;
        let track_url = base
            .join(TRACK_PATH)
            .map_err(|_| TiktokConfigError::Url(config.base_url.clone()))?;
        let http = crate::http_client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("stagecast/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| TiktokConfigError::Url(format!("{}: {e}", config.base_url)))?;
        Ok(Self {
            http,
            track_url,
            timeout: config.timeout,
        })
    }

    pub fn track_url(&self) -> &reqwest::Url {
        &self.track_url
    }

    /// `POST /open_api/v1.3/event/track/` with a pre-serialized JSON body.
    pub async fn track(
        &self,
        token: &Secret,
        body: Vec<u8>,
    ) -> Result<TrackResponse, TransportError> {
        let response = self
            .http
            .post(self.track_url.clone())
            .header(ACCESS_TOKEN, token.expose())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(e, self.timeout))?;
        ApiResponse::read(response)
            .await
            .map_err(|e| transport_error(e, self.timeout))
    }
}

fn transport_error(e: reqwest::Error, timeout: Duration) -> TransportError {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_track_url_keeps_the_base_host() {
        let c = TiktokClient::new(&TiktokConfig {
            base_url: "http://127.0.0.1:9".into(),
            ..TiktokConfig::default()
        })
        .unwrap();
        assert_eq!(
            c.track_url().as_str(),
            "http://127.0.0.1:9/open_api/v1.3/event/track/"
        );
        let real = TiktokClient::new(&TiktokConfig::default()).unwrap();
        assert_eq!(
            real.track_url().as_str(),
            "https://business-api.tiktok.com/open_api/v1.3/event/track/"
        );
    }
}
