//! The HTTP service: the upload request (URL, `Authorization: Bearer`, `login-customer-id`,
//! body) and what came back. No retry decisions here (that is `retry`). Tokens travel only in
//! the header, never in a URL, a log line or an error.

use std::time::Duration;

use super::config::{GoogleAdsConfig, GoogleAdsConfigError};
use crate::platforms::response::{transport_text, ApiResponse};
use crate::secrets::Secret;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

#[derive(Debug, Clone)]
pub struct GoogleAdsClient {
    http: reqwest::Client,
    base: reqwest::Url,
    version: String,
    timeout: Duration,
}

/// What the API answered.
pub type UploadResponse = ApiResponse;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP error talking to the Google Ads API: {0}")]
    Other(String),
}

impl GoogleAdsClient {
    pub fn new(config: &GoogleAdsConfig) -> Result<Self, GoogleAdsConfigError> {
        config.validate()?;
        let base = reqwest::Url::parse(&config.base_url)
            .map_err(|_| GoogleAdsConfigError::Url(config.base_url.clone()))?;
        let http = crate::http_client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("stagecast/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| GoogleAdsConfigError::Url(format!("{}: {e}", config.base_url)))?;
        Ok(Self {
            http,
            base,
            version: config.api_version.clone(),
            timeout: config.timeout,
        })
    }

    /// The same HTTP client, for the token endpoint.
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// `/{version}/customers/{customer}:uploadClickConversions` on the base URL.
    pub fn upload_url(&self, customer_id: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        url.set_path(&format!(
            "/{}/customers/{customer_id}:uploadClickConversions",
            self.version
        ));
        url
    }

    pub async fn upload(
        &self,
        customer_id: &str,
        login_customer_id: Option<&str>,
        access_token: &Secret,
        body: Vec<u8>,
    ) -> Result<UploadResponse, TransportError> {
        let mut request = self
            .http
            .post(self.upload_url(customer_id))
            .header(AUTHORIZATION, format!("Bearer {}", access_token.expose()))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(login) = login_customer_id {
            request = request.header("login-customer-id", login);
        }
        let response = request
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
    TransportError::Other(transport_text(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_url_has_the_version_and_the_customer() {
        let c = GoogleAdsClient::new(&GoogleAdsConfig {
            base_url: "http://127.0.0.1:9".into(),
            ..GoogleAdsConfig::default()
        })
        .unwrap();
        assert_eq!(
            c.upload_url("1234567890").as_str(),
            "http://127.0.0.1:9/v26/customers/1234567890:uploadClickConversions"
        );
    }
}
