//! Which Meta campaign a click-to-WhatsApp ad belongs to: `GET /{ad_id}?fields=campaign_id`
//! with the token of the default active Meta pixel (`--meta-resolve-ads`). The pipeline's
//! attribution job asks when the ad id matches no campaign of the CRM directly.

use futures_util::future::BoxFuture;
use tracing::{debug, warn};

use super::Meta;
use crate::platforms::credentials::access_token;
use crate::platforms::platform::{AdCampaigns, AdLookup};
use crate::platforms::Platform;
use crate::secrets::KeyRing;
use crate::store::PixelRow;

impl AdCampaigns for Meta {
    fn campaign_of<'a>(
        &'a self,
        ad_id: &'a str,
        pixels: &'a [PixelRow],
        keys: Option<&'a KeyRing>,
    ) -> BoxFuture<'a, AdLookup> {
        Box::pin(async move {
            let pixel = pixels
                .iter()
                .filter(|p| Platform::parse(&p.platform) == Some(Platform::Facebook) && p.active)
                .max_by_key(|p| (p.is_default, -p.id));
            let Some(token) = pixel.and_then(|p| access_token(p, keys).ok()) else {
                debug!(ad_id, "no pixel token to look the ad up with");
                return AdLookup::Unknown;
            };
            match self
                .sink
                .client()
                .get_object(ad_id, Some("campaign_id"), &token)
                .await
            {
                Ok(r) if (200..300).contains(&r.status) => r
                    .body
                    .as_ref()
                    .and_then(|b| b.get("campaign_id"))
                    .and_then(|c| {
                        c.as_str()
                            .map(str::to_string)
                            .or_else(|| c.as_u64().map(|n| n.to_string()))
                    })
                    .map_or(AdLookup::NoCampaign, AdLookup::Campaign),
                // The ad is unknown to this token (or gone): a definite "no campaign".
                Ok(r) if r.status == 400 || r.status == 404 => AdLookup::NoCampaign,
                Ok(r) => {
                    warn!(ad_id, status = r.status, "ad lookup failed");
                    AdLookup::Unknown
                }
                Err(e) => {
                    warn!(ad_id, error = %e, "ad lookup failed");
                    AdLookup::Unknown
                }
            }
        })
    }
}
