//! The `attribution` job: an inbound WhatsApp message that may carry click-to-ad data.
//! Parse it (every gateway shape, see `crate::attribution`), find the customer (through the chat,
//! else by the sender's number), record the first touch in `customers.utm_metadata`, and link
//! the campaign whose ad ids (or campaign id) match the ad — optionally resolving the ad's
//! campaign through the Graph API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::{debug, warn};

use super::alert_rows::alert_row;
use super::finish::{outcome_row, report_failure};
use super::Pipeline;
use crate::alerts::{Alert, AlertCause, AlertDetails};
use crate::attribution::{parse_value, AdReferral, ParseOutcome, Sender};
use crate::pii::br_mobile_variant;
use crate::platforms::platform::AdLookup;
use crate::store::{ClaimedJob, FirstTouch, WriteBack};

const FOUND_TTL: Duration = Duration::from_secs(3600);
const NOT_FOUND_TTL: Duration = Duration::from_secs(600);

/// Ad id → platform campaign id answers, so one ad is looked up once an hour at most (misses
/// for ten minutes), however many customers click it.
#[derive(Debug, Default)]
pub(super) struct AdCampaignCache {
    entries: Mutex<HashMap<String, (Instant, Option<String>)>>,
}

impl AdCampaignCache {
    fn get(&self, ad_id: &str) -> Option<Option<String>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(ad_id).and_then(|(at, campaign)| {
            let ttl = if campaign.is_some() {
                FOUND_TTL
            } else {
                NOT_FOUND_TTL
            };
            (at.elapsed() < ttl).then(|| campaign.clone())
        })
    }

    fn put(&self, ad_id: &str, campaign: Option<String>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 10_000 {
            entries.clear();
        }
        entries.insert(ad_id.to_string(), (Instant::now(), campaign));
    }
}

#[derive(Debug, Deserialize)]
struct AttributionPayload {
    message_id: i64,
}

impl Pipeline {
    pub(super) async fn attribute(&self, job: ClaimedJob) -> WriteBack {
        let mut out = WriteBack::default();
        let result = self.attribute_inner(&job, &mut out).await;
        let row = match result {
            Ok(Step::Done(note)) => outcome_row(&job, "done", None, Some(note)),
            Ok(Step::Failed(error)) => outcome_row(&job, "failed", None, Some(error)),
            Ok(Step::DoneUnlessRetries(error, note)) => match self.config.retry.decide(
                job.attempts,
                job.max_attempts,
                job.created_at,
                Utc::now(),
            ) {
                crate::queue::RetryDecision::RetryAt(at) => {
                    outcome_row(&job, "retry", Some(at), Some(error))
                }
                crate::queue::RetryDecision::GiveUp(_) => {
                    outcome_row(&job, "done", None, Some(note))
                }
            },
            Err(e) => {
                self.retry_or_fail(&job, format!("database error: {e}"), Utc::now())
                    .0
            }
        };
        report_failure(&job, &row, None, None, None);
        debug!(outcome = row.outcome, "job finished");
        out.outcomes.push(row);
        out
    }

    async fn attribute_inner(
        &self,
        job: &ClaimedJob,
        out: &mut WriteBack,
    ) -> Result<Step, crate::store::StoreError> {
        let payload: AttributionPayload = match serde_json::from_value(job.payload.clone()) {
            Ok(p) => p,
            Err(e) => return Ok(Step::Failed(format!("invalid attribution payload: {e}"))),
        };
        let Some(message) = self.store.load_message(payload.message_id).await? else {
            return Ok(Step::Done(format!(
                "message {} no longer exists",
                payload.message_id
            )));
        };
        let metadata = message.metadata.clone().unwrap_or(Value::Null);
        let parsed = match parse_value(&metadata) {
            Ok(p) => p,
            // Garbage, truncated or huge payloads: a clear, PII-free reason on the job.
            Err(e) => {
                return Ok(Step::Failed(format!(
                    "invalid webhook payload in message {}: {e}",
                    message.id
                )))
            }
        };
        let (referral, marker_only) = match parsed {
            ParseOutcome::Referral(r) => (r, false),
            ParseOutcome::AdMarkerOnly(r) => (r, true),
            ParseOutcome::NoAdData { .. } => {
                return Ok(Step::Done(format!(
                    "message {} carries no ad data",
                    message.id
                )));
            }
        };
        let customer = match message.customer_id {
            Some(c) => Some(c),
            None => {
                let candidates = self.sender_candidates(referral.sender.as_ref());
                if candidates.is_empty() {
                    None
                } else {
                    let found = self.store.find_customers_by_phone(&candidates).await?;
                    if found.len() > 1 {
                        warn!(
                            message_id = message.id,
                            matches = found.len(),
                            "several customers share the sender's number; using the best match"
                        );
                    }
                    found.first().copied()
                }
            }
        };
        let Some(customer_id) = customer else {
            // The CRM may create the customer (or link the chat) a moment after the message.
            let error = format!(
                "no customer yet for chat {} or the sender's number",
                message.chat_id
            );
            let note = format!(
                "no customer found for chat {} or the sender's number; nothing linked",
                message.chat_id
            );
            return Ok(Step::DoneUnlessRetries(error, note));
        };

        let campaign = match referral.source_id.as_deref() {
            Some(ad_id) => self.campaign_for_ad(ad_id).await?,
            None => None,
        };
        let clicked_at = referral.message_timestamp.unwrap_or(message.created_at);
        let first_touch = first_touch_metadata(&referral, marker_only, message.id, clicked_at);
        let result = self
            .store
            .record_first_touch(customer_id, &first_touch, campaign)
            .await?;
        let completed = match result {
            FirstTouch::CustomerMissing => {
                return Ok(Step::DoneUnlessRetries(
                    format!("customer {customer_id} disappeared"),
                    format!("customer {customer_id} no longer exists; nothing linked"),
                ))
            }
            FirstTouch::Kept => {
                return Ok(Step::Done(format!(
                "customer {customer_id} already has a first touch; message {} left it unchanged",
                message.id
            )))
            }
            FirstTouch::Recorded => false,
            FirstTouch::Completed => true,
        };
        if marker_only {
            self.attribution_alert(
                out,
                job,
                customer_id,
                AlertCause::AdWithoutClickId,
                AlertDetails::default(),
            );
        } else if let (Some(ad_id), None) = (referral.source_id.as_deref(), campaign) {
            self.attribution_alert(
                out,
                job,
                customer_id,
                AlertCause::AdNotLinked,
                AlertDetails {
                    ad_id: Some(ad_id.to_string()),
                    ..AlertDetails::default()
                },
            );
        }
        let verb = if completed {
            "completed (it had no click id)"
        } else {
            "recorded"
        };
        Ok(Step::Done(
            match (campaign, referral.source_id.as_deref()) {
                (Some(c), Some(ad)) => {
                    format!("first touch {verb} for customer {customer_id}: ad {ad}, campaign {c}")
                }
                (None, Some(ad)) => format!(
                    "first touch {verb} for customer {customer_id}: ad {ad} matches no campaign"
                ),
                _ if marker_only => format!("customer {customer_id} came from an ad, no click id"),
                _ => format!("first touch recorded for customer {customer_id}"),
            },
        ))
    }

    /// Digit strings the sender's number may be stored as: E.164 with and without the
    /// Brazilian 9th digit, the national forms, and the LID id.
    fn sender_candidates(&self, sender: Option<&Sender>) -> Vec<String> {
        let Some(sender) = sender else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        let mut push = |s: String| {
            if !s.is_empty() && !out.contains(&s) {
                out.push(s);
            }
        };
        if let Some(digits) = sender.phone_digits.as_deref() {
            let e164 = self
                .normalizer
                .phone_digits(&format!("+{digits}"))
                .unwrap_or_else(|_| digits.to_string());
            let mut forms = vec![e164.clone()];
            forms.extend(br_mobile_variant(&e164));
            for f in forms {
                if let Some(national) = f.strip_prefix("55").filter(|n| n.len() >= 10) {
                    push(national.to_string());
                }
                push(f);
            }
        }
        if let Some(lid) = sender.lid.as_deref() {
            push(
                lid.split(['@', ':'])
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect(),
            );
        }
        out
    }

    /// The campaign of an ad: by ad id (or campaign id) in the CRM, else through the platform
    /// that can look ads up (Meta's Graph API, with `--meta-resolve-ads`).
    async fn campaign_for_ad(&self, ad_id: &str) -> Result<Option<i64>, crate::store::StoreError> {
        if let Some(c) = self.store.match_campaign_by_ad(ad_id).await? {
            return Ok(Some(c));
        }
        let Some(lookup) = self.platforms.ad_campaigns() else {
            return Ok(None);
        };
        let platform_campaign = match self.ad_campaigns.get(ad_id) {
            Some(cached) => cached,
            None => {
                let pixels = self.store.load_pixels().await?;
                match lookup.campaign_of(ad_id, &pixels, self.keys.as_ref()).await {
                    AdLookup::Campaign(c) => {
                        self.ad_campaigns.put(ad_id, Some(c.clone()));
                        Some(c)
                    }
                    AdLookup::NoCampaign => {
                        self.ad_campaigns.put(ad_id, None);
                        None
                    }
                    // Not cached: tried again next time.
                    AdLookup::Unknown => None,
                }
            }
        };
        match platform_campaign {
            Some(campaign_id) => self.store.match_campaign_by_campaign_id(&campaign_id).await,
            None => Ok(None),
        }
    }

    fn attribution_alert(
        &self,
        out: &mut WriteBack,
        job: &ClaimedJob,
        customer_id: i64,
        cause: AlertCause,
        details: AlertDetails,
    ) {
        let alert = Alert::new(cause, details);
        out.alerts.push(alert_row(
            &alert,
            &format!("attribution:{customer_id}"),
            job.id,
            Some(customer_id),
            self.config.locale,
        ));
    }
}

enum Step {
    Done(String),
    Failed(String),
    /// Retry while the budget lasts (the missing piece may appear), then finish with the note.
    DoneUnlessRetries(String, String),
}

/// The keys stored in `customers.utm_metadata` (docs/attribution.md).
fn first_touch_metadata(
    r: &AdReferral,
    marker_only: bool,
    message_id: i64,
    clicked_at: chrono::DateTime<Utc>,
) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.to_string(), Value::String(v.clone()));
        }
    };
    put("source_id", &r.source_id);
    put("source_type", &r.source_type);
    put("ctwa_clid", &r.ctwa_clid);
    put("ad_title", &r.headline);
    put("ad_body", &r.body);
    put("source_url", &r.source_url);
    put("thumbnail_url", &r.thumbnail_url);
    put("image_url", &r.image_url);
    put("video_url", &r.video_url);
    put("source_app", &r.source_app);
    put("conversion_source", &r.conversion_source);
    put(
        "entry_point_conversion_source",
        &r.entry_point_conversion_source,
    );
    put("waba_id", &r.waba_id);
    put("message_id", &r.message_id);
    if let Some(media) = r.media_type {
        m.insert(
            "media_type".into(),
            Value::String(media.as_str().to_string()),
        );
    }
    m.insert("clicked_at".into(), json!(clicked_at));
    m.insert("chat_message_id".into(), json!(message_id));
    m.insert(
        "payload_shape".into(),
        serde_json::to_value(r.shape).unwrap_or(Value::Null),
    );
    if marker_only {
        m.insert("ad_marker".into(), Value::Bool(true));
    }
    Value::Object(m)
}
