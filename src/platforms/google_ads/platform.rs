//! Google Ads as an [`AdPlatform`]: what the pipeline asks of a platform, answered with this
//! module's config, request builder, token source, client, retry logic and sink.
//!
//! A destination is a `pixels` row with `platform = 'google_ads'`: `pixel_id` is the customer
//! id that owns the conversion action, `access_token` / `access_token_enc` the OAuth refresh
//! token (sealed with the key ring like every token), and `options` a JSON object with
//! `conversion_action_id` (required) and `login_customer_id` (the manager account the
//! credentials reach the customer through, when there is one).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use super::config::{GoogleAdsConfig, GoogleAdsConfigError};
use super::oauth::TokenError;
use super::payload::{build_conversion, customer_digits, Consent};
use super::sink::{GoogleAdsDestination, GoogleAdsSink};
use crate::alerts::AlertCause;
use crate::catalog::EventName;
use crate::platforms::credentials::access_token;
use crate::platforms::event::ConversionEvent;
use crate::platforms::holds::fingerprint;
use crate::platforms::platform::{
    AdPlatform, Destination, DestinationProblem, Encoded, LocalProblem, Verification,
};
use crate::platforms::Platform;
use crate::secrets::{KeyRing, Secret};
use crate::store::PixelRow;

/// The Google Ads API, configured.
#[derive(Debug, Clone)]
pub struct GoogleAds {
    sink: Arc<GoogleAdsSink>,
}

/// The row's `options` as Google Ads reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowOptions {
    pub conversion_action_id: Option<String>,
    pub login_customer_id: Option<String>,
    /// `ad_user_data_consent`, when the row sets it.
    pub ad_user_data: Option<ConsentOption>,
}

/// The row's `ad_user_data_consent`: a status Google takes, or text it would not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentOption {
    Status(Consent),
    Invalid(String),
}

fn consent_option(pixel: &PixelRow) -> Option<ConsentOption> {
    let raw = pixel
        .options
        .as_ref()?
        .get("ad_user_data_consent")?
        .as_str()?
        .trim()
        .to_string();
    if raw.is_empty() {
        return None;
    }
    Some(match Consent::parse(&raw) {
        Some(c) => ConsentOption::Status(c),
        None => ConsentOption::Invalid(raw),
    })
}

/// A digits-only id from `options.<key>` (a JSON string or number; hyphens dropped).
fn option_id(pixel: &PixelRow, key: &str) -> Option<String> {
    let v = pixel.options.as_ref()?.get(key)?;
    let raw = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(customer_digits(&raw)).filter(|d| !d.is_empty())
}

pub fn row_options(pixel: &PixelRow) -> RowOptions {
    RowOptions {
        conversion_action_id: option_id(pixel, "conversion_action_id"),
        login_customer_id: option_id(pixel, "login_customer_id"),
        ad_user_data: consent_option(pixel),
    }
}

impl GoogleAds {
    /// Validates the configuration (the same check the doctor reports under Settings).
    pub fn new(config: GoogleAdsConfig) -> Result<Self, GoogleAdsConfigError> {
        Ok(Self {
            sink: Arc::new(GoogleAdsSink::new(config)?),
        })
    }

    pub fn config(&self) -> &GoogleAdsConfig {
        self.sink.config()
    }
}

impl AdPlatform for GoogleAds {
    fn share_limits(&self, shared: &crate::platforms::shared_limits::SharedLimits) {
        self.sink.share_limits(shared);
    }

    fn limits_ready(&self) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(self.sink.limits_ready())
    }

    fn platform(&self) -> Platform {
        Platform::GoogleAds
    }

    fn label(&self) -> &'static str {
        super::LABEL
    }

    /// Google has no event names: the conversion action (in the row's options) says what the
    /// conversion is. The configured name is kept for the audit.
    fn event_name(&self, event: &EventName) -> Result<String, LocalProblem> {
        Ok(event.as_str().to_string())
    }

    fn check(
        &self,
        event: &ConversionEvent,
        pixel: &PixelRow,
        now: DateTime<Utc>,
    ) -> Result<(), LocalProblem> {
        let age = now.signed_duration_since(event.event_time);
        if age.to_std().is_ok_and(|a| a > self.config().max_event_age) {
            return Err(LocalProblem::new(
                AlertCause::EventTooOld,
                "the stage change is older than the Google Ads replay window (--google-ads-max-event-age)",
            ));
        }
        if row_options(pixel).conversion_action_id.is_none() {
            // The destination row is incomplete, not the stage: its own cause, so the text
            // sends the agent to the pixel rather than to the stage's configuration.
            return Err(LocalProblem::new(
                AlertCause::ConversionActionMissing,
                format!("Google Ads pixel {} has no conversion_action_id", pixel.id),
            ));
        }
        // A row with neither a click id nor an email or phone is still sent: Google's own
        // answer for it becomes the failure (`api_error` with Google's code), which names the
        // problem better than any local alert text would.
        Ok(())
    }

    fn encode(&self, event: &ConversionEvent, pixel: &PixelRow, _now: DateTime<Utc>) -> Encoded {
        let options = row_options(pixel);
        let action = options.conversion_action_id.unwrap_or_default();
        // An unreadable consent value is sent as no consent (what Google assumes without
        // one); the doctor reports the value.
        let consent = match options.ad_user_data {
            Some(ConsentOption::Status(c)) => Some(c),
            _ => None,
        };
        let (json, keys) =
            build_conversion(event, &customer_digits(&pixel.pixel_id), &action, consent);
        Encoded {
            event_name: event.name.clone(),
            json: json.to_string().into(),
            match_quality: crate::match_quality::estimate(&keys),
        }
    }

    fn destination(
        &self,
        pixel: &PixelRow,
        keys: Option<&KeyRing>,
    ) -> Result<Arc<dyn Destination>, DestinationProblem> {
        let refresh_token = access_token(pixel, keys)?;
        let customer_id = customer_digits(&pixel.pixel_id);
        let login_customer_id = row_options(pixel).login_customer_id;
        // Rows of the same customer, manager and credentials share requests (the conversion
        // action is per row); the key holds a hash of the token, never the token.
        let credentials = fingerprint(&[refresh_token.expose()]);
        let batch_key = format!(
            "google_ads:{customer_id}:{}:{}",
            login_customer_id.as_deref().unwrap_or("-"),
            &credentials[..12]
        );
        Ok(Arc::new(GoogleAdsDestination {
            sink: self.sink.clone(),
            customer_id,
            login_customer_id,
            refresh_token,
            batch_key,
        }))
    }

    fn check_pixel(&self, pixel: &PixelRow) -> Result<(), (String, String)> {
        if customer_digits(&pixel.pixel_id).len() != 10 {
            return Err((
                format!("has customer id {:?}, not 10 digits", pixel.pixel_id.trim()),
                "set pixels.pixel_id to the Google Ads customer id that owns the conversion action (123-456-7890)".into(),
            ));
        }
        if row_options(pixel).conversion_action_id.is_none() {
            return Err((
                "has no conversion action (conversion_action_id is empty)".into(),
                "set pixels.conversion_action_id to the id of an UPLOAD_CLICKS conversion action (docs/google-ads.md)".into(),
            ));
        }
        if let Some(ConsentOption::Invalid(v)) = row_options(pixel).ad_user_data {
            return Err((
                format!("has ad_user_data_consent {v:?}, which Google does not take (conversions go without consent)"),
                "set pixels.ad_user_data_consent to GRANTED, DENIED or NULL (docs/google-ads.md, \"Consent\")".into(),
            ));
        }
        Ok(())
    }

    fn pixel_warnings(&self, _pixel: &PixelRow) -> Vec<String> {
        if self.config().has_client() {
            Vec::new()
        } else {
            vec!["no Google OAuth client is configured (--google-ads-client-id, --google-ads-client-secret): nothing can be sent".into()]
        }
    }

    /// The doctor exchanges the refresh token for an access token: that proves the client and
    /// the token, without uploading anything.
    fn verify<'a>(
        &'a self,
        _pixel: &'a PixelRow,
        token: &'a Secret,
    ) -> BoxFuture<'a, Verification> {
        Box::pin(async move {
            let url = crate::local_pg::redact_url(&self.config().token_url);
            match self.sink.tokens().access_token(token).await {
                Ok(_) => Verification::Ok(format!("the token endpoint {url} issued an access token")),
                Err(e @ (TokenError::InvalidGrant(_) | TokenError::InvalidClient(_) | TokenError::NoClient)) => {
                    Verification::Problem {
                        found: e.to_string(),
                        fix: "create a new refresh token for the adwords scope with the configured OAuth client and save it with `stagecast pixel set-token` (docs/google-ads.md)".into(),
                    }
                }
                // Unreachable is a problem, as for the other platforms: the worker could not
                // get a token either.
                Err(TokenError::Transport(e)) => Verification::Problem {
                    found: format!("cannot reach the Google token endpoint at {url}: {e}"),
                    fix: "check that it is reachable from this host, or set STAGECAST_GOOGLE_ADS_TOKEN_URL (normally https://oauth2.googleapis.com/token)".into(),
                },
                Err(e) => Verification::Warning {
                    found: format!("could not check the credentials: {e}"),
                    fix: format!("retry later; if it persists, check {url}"),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixel(options: Option<serde_json::Value>) -> PixelRow {
        PixelRow {
            id: 3,
            platform: "google_ads".into(),
            name: None,
            pixel_id: " 123-456-7890 ".into(),
            access_token: Some("refresh-token".into()),
            access_token_enc: None,
            active: true,
            is_default: true,
            waba_id: None,
            test_event_code: None,
            action_source: None,
            messaging_mode: None,
            options,
        }
    }

    #[test]
    fn options_give_the_action_and_the_manager_account() {
        let p = pixel(Some(
            serde_json::json!({"conversion_action_id": 987, "login_customer_id": "111-222-3333"}),
        ));
        assert_eq!(
            row_options(&p),
            RowOptions {
                conversion_action_id: Some("987".into()),
                login_customer_id: Some("1112223333".into()),
                ad_user_data: None,
            }
        );
        let g = GoogleAds::new(GoogleAdsConfig::default()).unwrap();
        assert!(g.check_pixel(&p).is_ok());
        let d = g.destination(&p, None).unwrap();
        assert!(d
            .batch_key()
            .starts_with("google_ads:1234567890:1112223333:"));
        assert!(!d.batch_key().contains("refresh-token"));
        assert!(g.check_pixel(&pixel(None)).is_err());
        let consent = |v: &str| {
            pixel(Some(
                serde_json::json!({"conversion_action_id": "9", "ad_user_data_consent": v}),
            ))
        };
        assert_eq!(
            row_options(&consent(" granted ")).ad_user_data,
            Some(ConsentOption::Status(Consent::Granted))
        );
        assert_eq!(row_options(&consent("")).ad_user_data, None);
        assert!(g.check_pixel(&consent("DENIED")).is_ok());
        let (found, _) = g.check_pixel(&consent("yes")).unwrap_err();
        assert!(found.contains("\"yes\""), "{found}");
        let mut none = pixel(None);
        none.access_token = None;
        assert_eq!(
            g.destination(&none, None).err().unwrap().cause,
            AlertCause::TokenMissing
        );
    }
}
