//! OAuth 2.0 refresh-token grant against Google's token endpoint ("Using OAuth 2.0 for Web
//! Server Applications", "Refreshing an access token"): `POST token_url` with
//! `grant_type=refresh_token`, the client id and secret and the destination's refresh token.
//!
//! Access tokens live only in memory, one per refresh token, and are renewed five minutes
//! before `expires_in` runs out. One refresh at a time per refresh token: concurrent deliveries
//! wait for the refresh in flight instead of each asking for a token. Hand-written rather than
//! an OAuth crate: it is one form POST, and the crates bring their own HTTP stacks and caches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;

use super::config::GoogleAdsConfig;
use crate::platforms::holds::fingerprint;
use crate::secrets::Secret;

/// Renew this long before the token expires (a request that starts with it must not see it
/// expire midway).
const RENEW_BEFORE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// The refresh token was revoked or expired: someone must consent again.
    #[error("Google refused the refresh token (invalid_grant): {0}")]
    InvalidGrant(String),
    /// The client id or secret is wrong.
    #[error("Google refused the OAuth client (invalid_client): {0}")]
    InvalidClient(String),
    #[error("no Google OAuth client configured: set --google-ads-client-id and --google-ads-client-secret")]
    NoClient,
    #[error("the Google token endpoint answered HTTP {status}: {message}")]
    Unexpected { status: u16, message: String },
    #[error("could not reach the Google token endpoint: {0}")]
    Transport(String),
}

impl TokenError {
    /// Whether no retry can help until someone changes the credentials.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            TokenError::InvalidGrant(_) | TokenError::InvalidClient(_) | TokenError::NoClient
        )
    }
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    renew_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

pub struct TokenSource {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: Option<Secret>,
    /// Keyed by a hash of the refresh token (never the token itself).
    slots: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.token_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource {
    pub fn new(config: &GoogleAdsConfig, http: reqwest::Client) -> Self {
        Self {
            http,
            token_url: config.token_url.clone(),
            client_id: config.client_id.trim().to_string(),
            client_secret: config.client_secret.clone(),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, refresh: &Secret) -> Slot {
        let key = fingerprint(&[refresh.expose()]);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key).or_default().clone()
    }

    /// A valid access token for `refresh`: the cached one, or a new one.
    pub async fn access_token(&self, refresh: &Secret) -> Result<Secret, TokenError> {
        let slot = self.slot(refresh);
        // Held across the refresh: the single flight.
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.renew_at) {
            return Ok(c.token.clone());
        }
        let fresh = self.refresh(refresh).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Drop the cached access token of `refresh` (Google answered 401 with it).
    pub async fn forget(&self, refresh: &Secret) {
        *self.slot(refresh).lock().await = None;
    }

    async fn refresh(&self, refresh: &Secret) -> Result<Cached, TokenError> {
        let secret = match &self.client_secret {
            Some(s) if !s.is_empty() && !self.client_id.is_empty() => s,
            _ => return Err(TokenError::NoClient),
        };
        // The form encoding of `url` (reqwest's Url), without enabling another reqwest feature.
        let mut form = reqwest::Url::parse("form:").expect("static URL");
        form.query_pairs_mut()
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", secret.expose())
            .append_pair("refresh_token", refresh.expose());
        let body = form.query().unwrap_or_default().to_string();
        let started = Instant::now();
        let response = self
            .http
            .post(&self.token_url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| TokenError::Transport(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| TokenError::Transport(e.without_url().to_string()))?;
        let answer: Option<TokenAnswer> = serde_json::from_slice(&bytes).ok();
        let describe = |a: &TokenAnswer| {
            a.error_description
                .clone()
                .or_else(|| a.error.clone())
                .unwrap_or_default()
        };
        match answer {
            Some(a)
                if status == 200 && a.access_token.as_deref().is_some_and(|t| !t.is_empty()) =>
            {
                let lifetime = Duration::from_secs(a.expires_in.unwrap_or(3600));
                let renew_in = lifetime.saturating_sub(RENEW_BEFORE.min(lifetime / 2));
                Ok(Cached {
                    token: Secret::new(a.access_token.unwrap_or_default()),
                    renew_at: started + renew_in,
                })
            }
            Some(a) if a.error.as_deref() == Some("invalid_grant") => {
                Err(TokenError::InvalidGrant(describe(&a)))
            }
            Some(a) if a.error.as_deref() == Some("invalid_client") => {
                Err(TokenError::InvalidClient(describe(&a)))
            }
            Some(a) => Err(TokenError::Unexpected {
                status,
                message: describe(&a),
            }),
            None => Err(TokenError::Unexpected {
                status,
                message: "the answer is not JSON".into(),
            }),
        }
    }
}
