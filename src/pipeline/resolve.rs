//! Fallbacks, each step documented in docs/fallbacks.md:
//! campaign → pixel → value → currency. A missing link is a [`Problem`] with the alert that
//! names the fix; nothing is guessed silently.

use crate::alerts::AlertCause;
use crate::platforms::Platform;
use crate::store::{PixelRow, StageChangeContext};

use super::event_config::EventConfig;

/// Why an event cannot be sent (permanent until someone changes the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub cause: AlertCause,
    pub message: String,
    pub pixel: Option<String>,
}

impl Problem {
    fn new(cause: AlertCause, message: impl Into<String>) -> Self {
        Self {
            cause,
            message: message.into(),
            pixel: None,
        }
    }
}

/// Where the value came from (kept in the audit for "why was this value sent?").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    SalePrice,
    EventConfig,
    StageDefault,
}

#[derive(Debug, Clone)]
pub struct Resolved<'p> {
    pub pixel: &'p PixelRow,
    pub value: Option<(f64, ValueSource)>,
    pub currency: String,
}

/// Campaign: the customer's, else matched from first-touch ad data (done in SQL). None → alert.
pub fn campaign(ctx: &StageChangeContext) -> Result<i64, Problem> {
    ctx.campaign_id.ok_or_else(|| {
        let hint = ctx
            .utm_metadata
            .as_ref()
            .and_then(|m| m.get("source_id"))
            .and_then(|v| v.as_str())
            .map(|ad| format!(" (its first-touch ad id {ad} matches no campaign)"))
            .unwrap_or_default();
        Problem::new(
            AlertCause::NoCampaign,
            format!("customer has no associated UTM campaign{hint}"),
        )
    })
}

/// Pixel: the campaign's pixel when it is for this platform, else the platform's default
/// pixel. An inactive pixel is an error, not a reason to silently use another one.
pub fn pixel<'p>(
    ctx: &StageChangeContext,
    platform: Platform,
    pixels: &'p [PixelRow],
) -> Result<&'p PixelRow, Problem> {
    let for_platform = |p: &&PixelRow| Platform::parse(&p.platform) == Some(platform);
    let campaign_pixel = ctx
        .campaign_pixel_ref
        .and_then(|id| pixels.iter().find(|p| p.id == id))
        .filter(for_platform);
    let chosen = campaign_pixel.or_else(|| {
        let defaults = pixels.iter().filter(for_platform).filter(|p| p.is_default);
        // Prefer an active default when several are flagged.
        let mut defaults: Vec<&PixelRow> = defaults.collect();
        defaults.sort_by_key(|p| (!p.active, p.id));
        defaults.into_iter().next()
    });
    match chosen {
        None => Err(Problem::new(
            AlertCause::PixelMissing,
            format!(
                "no {} pixel: campaign {} has none and no default pixel is set",
                platform,
                ctx.campaign_name.as_deref().unwrap_or("?")
            ),
        )),
        Some(p) if !p.active => Err(Problem {
            cause: AlertCause::PixelInactive,
            message: format!("pixel {} is inactive", p.pixel_id),
            pixel: Some(p.pixel_id.clone()),
        }),
        Some(p) => Ok(p),
    }
}

/// Value: the customer's sale price when the config uses it (default) → the config's value →
/// the stage default. A value of 0 counts as missing: a purchase is never reported as worth 0;
/// so does one outside what can be sent (`event_config::is_sane_value`: never `null` on the wire).
pub fn value(ctx: &StageChangeContext, config: &EventConfig) -> Option<(f64, ValueSource)> {
    let positive =
        |v: Option<f64>| v.filter(|x| *x > 0.0 && super::event_config::is_sane_value(*x));
    let sale = if config.use_sale_price {
        positive(ctx.sale_price)
    } else {
        None
    };
    sale.map(|v| (v, ValueSource::SalePrice))
        .or_else(|| positive(config.value).map(|v| (v, ValueSource::EventConfig)))
        .or_else(|| positive(ctx.stage_default_value).map(|v| (v, ValueSource::StageDefault)))
}

/// ISO-4217-shaped: three ASCII letters (any case).
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Currency: config → customer → campaign → default. Values that are not ISO-4217-shaped
/// (3 letters) are skipped, so a CRM writing "R$" falls through to the next source.
pub fn currency(ctx: &StageChangeContext, config: &EventConfig, default: &str) -> String {
    [
        config.currency.as_deref(),
        ctx.currency.as_deref(),
        ctx.campaign_currency.as_deref(),
        Some(default),
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .find(|c| is_currency_code(c))
    .map(str::to_ascii_uppercase)
    .unwrap_or_else(|| "BRL".to_string())
}

/// All four steps for one config.
pub fn resolve<'p>(
    ctx: &StageChangeContext,
    config: &EventConfig,
    pixels: &'p [PixelRow],
    default_currency: &str,
) -> Result<Resolved<'p>, Problem> {
    campaign(ctx)?;
    let pixel = pixel(ctx, config.platform, pixels)?;
    let value = value(ctx, config);
    if value.is_none() && config.event.requires_value() {
        return Err(Problem {
            cause: AlertCause::PurchaseWithoutValue,
            message: format!(
                "{} has no value: no sale price, config value or stage default",
                config.event.as_str()
            ),
            pixel: Some(pixel.pixel_id.clone()),
        });
    }
    Ok(Resolved {
        pixel,
        value,
        currency: currency(ctx, config, default_currency),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn ctx() -> StageChangeContext {
        StageChangeContext {
            job_id: 1,
            customer_id: Some(7),
            stage_id: Some(1),
            stage_name: Some("Comprou".into()),
            campaign_id: Some(3),
            campaign_name: Some("Verão".into()),
            campaign_pixel_ref: Some(10),
            campaign_matched_by: Some("customer".into()),
            ..StageChangeContext::default()
        }
    }

    fn pixel_row(id: i64, platform: &str, active: bool, is_default: bool) -> PixelRow {
        PixelRow {
            id,
            platform: platform.into(),
            name: None,
            pixel_id: format!("px{id}"),
            access_token: None,
            access_token_enc: None,
            active,
            is_default,
            waba_id: None,
            test_event_code: None,
            action_source: None,
            messaging_mode: None,
            options: None,
        }
    }

    fn config(event: &str) -> EventConfig {
        EventConfig {
            index: 0,
            platform: Platform::Facebook,
            event: catalog::resolve(Some(event), None).unwrap(),
            value: None,
            currency: None,
            use_sale_price: true,
        }
    }

    #[test]
    fn no_campaign_is_a_problem_naming_the_ad() {
        let mut c = ctx();
        c.campaign_id = None;
        c.utm_metadata = Some(serde_json::json!({"source_id": "1202"}));
        let p = campaign(&c).unwrap_err();
        assert_eq!(p.cause, AlertCause::NoCampaign);
        assert!(p.message.contains("1202"));
    }

    #[test]
    fn pixel_fallbacks() {
        let pixels = vec![
            pixel_row(10, "facebook", true, false),
            pixel_row(11, "facebook", true, true),
        ];
        assert_eq!(pixel(&ctx(), Platform::Facebook, &pixels).unwrap().id, 10);
        let mut c = ctx();
        c.campaign_pixel_ref = None;
        assert_eq!(pixel(&c, Platform::Facebook, &pixels).unwrap().id, 11);
        let inactive = vec![
            pixel_row(10, "facebook", false, false),
            pixel_row(11, "facebook", true, true),
        ];
        assert_eq!(
            pixel(&ctx(), Platform::Facebook, &inactive)
                .unwrap_err()
                .cause,
            AlertCause::PixelInactive
        );
        let none: Vec<PixelRow> = vec![pixel_row(12, "tiktok", true, true)];
        assert_eq!(
            pixel(&c, Platform::Facebook, &none).unwrap_err().cause,
            AlertCause::PixelMissing
        );
        // A campaign pixel of another platform does not serve this one.
        assert_eq!(
            pixel(&ctx(), Platform::Tiktok, &pixels).unwrap_err().cause,
            AlertCause::PixelMissing
        );
    }

    #[test]
    fn value_fallbacks_and_purchase_needs_value() {
        let pixels = vec![pixel_row(10, "facebook", true, false)];
        let mut c = ctx();
        let mut cfg = config("Purchase");
        assert_eq!(
            resolve(&c, &cfg, &pixels, "BRL").unwrap_err().cause,
            AlertCause::PurchaseWithoutValue
        );
        c.stage_default_value = Some(10.0);
        assert_eq!(value(&c, &cfg), Some((10.0, ValueSource::StageDefault)));
        cfg.value = Some(20.0);
        assert_eq!(value(&c, &cfg), Some((20.0, ValueSource::EventConfig)));
        c.sale_price = Some(0.0);
        assert_eq!(
            value(&c, &cfg),
            Some((20.0, ValueSource::EventConfig)),
            "0 is not a sale price"
        );
        c.sale_price = Some(99.9);
        assert_eq!(value(&c, &cfg), Some((99.9, ValueSource::SalePrice)));
        cfg.use_sale_price = false;
        assert_eq!(value(&c, &cfg), Some((20.0, ValueSource::EventConfig)));
        // A Lead without value is fine.
        let lead = config("Lead");
        assert!(resolve(&ctx(), &lead, &pixels, "BRL")
            .unwrap()
            .value
            .is_none());
    }

    #[test]
    fn currency_fallbacks_skip_invalid() {
        let mut c = ctx();
        let mut cfg = config("Lead");
        assert_eq!(currency(&c, &cfg, "BRL"), "BRL");
        c.campaign_currency = Some("usd".into());
        assert_eq!(currency(&c, &cfg, "BRL"), "USD");
        c.currency = Some("R$".into());
        assert_eq!(currency(&c, &cfg, "BRL"), "USD");
        c.currency = Some("eur".into());
        assert_eq!(currency(&c, &cfg, "BRL"), "EUR");
        cfg.currency = Some("ARS".into());
        assert_eq!(currency(&c, &cfg, "BRL"), "ARS");
    }
}
