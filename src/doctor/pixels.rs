//! Pixels: each active pixel has a token that Meta accepts for that pixel, and a default pixel
//! exists for campaigns without their own.

use futures_util::future::join_all;

use super::keys::{pixel_label, token_for, Ring, TokenProblem};
use super::report::{list, Check, CheckBuilder, Group};
use crate::alerts::platform_display;
use crate::platforms::platform::{AdPlatform, Verification};
use crate::platforms::{registry, Platform, Registry};
use crate::store::PixelRow;

fn check(p: &PixelRow) -> CheckBuilder {
    Check::build(
        Group::Pixels,
        format!("pixels.api.{}", p.id),
        capitalize(&pixel_label(p)),
    )
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// How to store a new token for this pixel.
fn set_token(p: &PixelRow) -> String {
    format!("`stagecast pixel set-token {} < token.txt`", p.id)
}

/// What is wrong with this pixel's setup whatever its token: an unsupported or unknown
/// platform, or the platform's own checks of the row (e.g. no pixel id). Needs no token (the
/// admin console shows it too). `Ok`: the platform, and its registration when its settings are
/// valid (`None`: reported under Settings).
fn setup<'r>(
    p: &PixelRow,
    platforms: &'r Registry,
) -> Result<(Platform, Option<&'r dyn AdPlatform>), Check> {
    let platform = match Platform::parse(&p.platform) {
        Some(platform) if registry::available().any(|a| a == platform) => platform,
        Some(other) => {
            let names: Vec<String> = registry::available()
                .map(|a| platform_display(Some(a.code())))
                .collect();
            return Err(check(p).warning(
                format!(
                    "platform {other} is not supported yet: this version delivers only to {}",
                    names.join(", ")
                ),
                "nothing to do until a stagecast version supports it; set active = false to silence this",
            ));
        }
        None => {
            return Err(check(p).warning(
                format!(
                    "unknown platform {:?}: no stage event can use it",
                    p.platform
                ),
                "set pixels.platform to facebook (or meta / instagram)",
            ))
        }
    };
    let registered = platforms.get(platform);
    if let Some(Err((found, fix))) = registered.map(|r| r.check_pixel(p)) {
        return Err(check(p).problem(found, fix));
    }
    Ok((platform, registered))
}

/// [`setup`]'s finding, if any.
pub fn setup_problem(p: &PixelRow, platforms: &Registry) -> Option<Check> {
    setup(p, platforms).err()
}

/// What the worker would make of this pixel before any request: its platform (registered
/// when its settings are valid), the platform's own checks of the row, and the token.
fn local_problem<'r>(
    p: &PixelRow,
    ring: &Ring,
    platforms: &'r Registry,
) -> Result<(crate::secrets::Secret, &'r dyn AdPlatform), Check> {
    let (platform, registered) = setup(p, platforms)?;
    let token = token_for(p, ring).map_err(|e| match e {
        TokenProblem::Missing => check(p).problem(
            "has no access token: its events fail with token_missing",
            format!(
                "generate a Conversions API token in Events Manager and store it: {}",
                set_token(p)
            ),
        ),
        TokenProblem::NoKeys => check(p).problem(
            "its token is sealed but STAGECAST_KEYS is not set, so it cannot be checked or used",
            "set STAGECAST_KEYS (see Keys and tokens)",
        ),
        TokenProblem::BadKeys => check(p).skipped("not checked: STAGECAST_KEYS cannot be read"),
        TokenProblem::Unreadable(why) => check(p).problem(
            format!("its token cannot be decrypted: {why}"),
            "see Keys and tokens above",
        ),
    })?;
    match registered {
        Some(r) => Ok((token, r)),
        None => Err(check(p).skipped(format!(
            "not checked against {}: its settings are invalid (see Settings)",
            platform.api_name()
        ))),
    }
}

/// The platform's verdict on a pixel, as a check of the report.
fn verified(p: &PixelRow, v: Verification) -> Check {
    match v {
        Verification::Ok(found) => check(p).ok(found),
        Verification::Warning { found, fix } => check(p).warning(found, fix),
        Verification::Problem { found, fix } => check(p).problem(found, fix),
    }
}

/// Check every active pixel against its platform's API, concurrently (each within the doctor's
/// timeout). `platforms` holds the platforms whose settings are valid (the others are reported
/// under Settings).
pub async fn api(pixels: &[PixelRow], ring: &Ring, platforms: &Registry) -> Vec<Check> {
    let active: Vec<&PixelRow> = pixels.iter().filter(|p| p.active).collect();
    if active.is_empty() {
        let c = Check::build(Group::Pixels, "pixels.active", "Active pixels");
        return vec![if pixels.is_empty() {
            c.warning(
                "no pixels configured: no event can be sent",
                "add a pixel (pixels: platform, pixel_id) and store its token with `stagecast pixel set-token`",
            )
        } else {
            c.warning(
                format!(
                    "none of the {} pixel(s) is active: no event can be sent",
                    pixels.len()
                ),
                "set pixels.active = true on the pixels in use",
            )
        }];
    }
    let checks = active.into_iter().map(|p| async move {
        match local_problem(p, ring, platforms) {
            Ok((token, platform)) => verified(p, platform.verify(p, &token).await),
            Err(check) => check,
        }
    });
    join_all(checks).await
}

/// Meta's checks predate the other platforms' and keep their ids; the others' end in the
/// platform's name.
pub fn check_id(base: &str, platform: Platform) -> String {
    match platform {
        Platform::Facebook => base.to_string(),
        other => format!("{base}.{}", other.code()),
    }
}

/// Whether the per-platform checks (default pixel, campaigns) apply to `platform`: always for
/// Meta, and for another platform once the CRM has a pixel row for it, so a CRM that never
/// configured TikTok is not told its campaigns have no TikTok pixel.
pub fn in_use(pixels: &[PixelRow], platform: Platform) -> bool {
    platform == Platform::Facebook
        || pixels
            .iter()
            .any(|p| Platform::parse(&p.platform) == Some(platform))
}

/// The default pixel of a platform: its campaigns without their own pixel use it.
pub fn default_pixel(pixels: &[PixelRow], platform: Platform) -> Check {
    let c = Check::build(
        Group::Pixels,
        check_id("pixels.default", platform),
        "Default pixel",
    );
    let of_platform: Vec<&PixelRow> = pixels
        .iter()
        .filter(|p| Platform::parse(&p.platform) == Some(platform))
        .collect();
    let defaults: Vec<&PixelRow> = of_platform
        .iter()
        .copied()
        .filter(|p| p.is_default)
        .collect();
    let active: Vec<&PixelRow> = defaults.iter().copied().filter(|p| p.active).collect();
    let fix =
        "mark one active pixel as default: UPDATE pixels SET is_default = true WHERE id = <id>";
    match (defaults.len(), active.len()) {
        (0, _) => c.warning(
            format!(
                "no {} pixel is marked default: campaigns without a pixel fail with pixel_missing",
                platform.code()
            ),
            fix,
        ),
        (_, 0) => c.warning(
            format!(
                "the default {} is inactive: campaigns without a pixel fail with pixel_inactive",
                pixel_label(defaults[0])
            ),
            "activate it, or mark an active pixel as default instead",
        ),
        (_, 1) => c.ok(format!(
            "{} (campaigns without their own pixel use it)",
            pixel_label(active[0])
        )),
        _ => {
            let names: Vec<String> = active.iter().map(|p| pixel_label(p)).collect();
            c.warning(
                format!(
                    "{} active default pixels ({}): the lowest id is used",
                    active.len(),
                    list(&names, 5)
                ),
                "keep is_default on one pixel only",
            )
        }
    }
}

/// Each active pixel's options its platform warns about (e.g. a Limited Data Use pair Meta does
/// not document); one check, ok when there is nothing to say.
pub fn options(pixels: &[PixelRow], platforms: &Registry) -> Check {
    let c = Check::build(Group::Pixels, "pixels.options", "Pixel options");
    let found: Vec<String> = pixels
        .iter()
        .filter(|p| p.active)
        .filter_map(|p| {
            let platform = platforms.get(Platform::parse(&p.platform)?)?;
            let warnings = platform.pixel_warnings(p);
            (!warnings.is_empty()).then(|| format!("{}: {}", pixel_label(p), warnings.join("; ")))
        })
        .collect();
    if found.is_empty() {
        return c.ok("nothing to report in the active pixels' options");
    }
    c.warning(
        found.join(" | "),
        "see docs/events.md (Conversion Leads; Limited Data Use and opt-out) for the values Meta documents",
    )
}

/// Active pixels with a `test_event_code`: Meta shows their events under Test Events, and still
/// counts them in the real dataset (Meta's using-the-api page), so it belongs to a trial only.
pub fn test_event_codes(pixels: &[PixelRow]) -> Check {
    let c = Check::build(Group::Pixels, "pixels.test_event_code", "Test event codes");
    let with_code: Vec<String> = pixels
        .iter()
        .filter(|p| p.active)
        .filter(|p| {
            p.test_event_code
                .as_deref()
                .is_some_and(|t| !t.trim().is_empty())
        })
        .map(pixel_label)
        .collect();
    if with_code.is_empty() {
        return c.ok("no active pixel has a test_event_code");
    }
    c.warning(
        format!(
            "{} active pixel(s) send with a test_event_code ({}): their events also count in the real dataset",
            with_code.len(),
            list(&with_code, 5)
        ),
        "clear it once the trial is over: UPDATE pixels SET test_event_code = NULL WHERE id = <id>",
    )
}

/// How long Meta uses a stored click id: a click-to-WhatsApp `ctwa_clid` attributes business
/// messaging events for 7 days after the click (the same 7-day window as event times); an
/// `fbc` built from an fbclid lives as long as Meta's `_fbc` cookie, 90 days.
pub const CTWA_CLID_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
pub const FBCLID_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// Customers whose stored click ids are older than Meta uses them: their events are still
/// sent, matched on the other keys, but the click no longer attributes them.
pub fn stale_click_ids(ctwa_clid: i64, fbclid: i64) -> Check {
    let c = Check::build(Group::Pixels, "pixels.click_ids", "Stored click ids");
    if ctwa_clid == 0 && fbclid == 0 {
        return c.ok("no customer holds a click id older than Meta uses");
    }
    let mut parts = Vec::new();
    if ctwa_clid > 0 {
        parts.push(format!(
            "{ctwa_clid} customer(s) have a ctwa_clid from a click more than 7 days ago"
        ));
    }
    if fbclid > 0 {
        parts.push(format!(
            "{fbclid} customer(s) have an fbclid captured more than 90 days ago"
        ));
    }
    c.warning(
        format!(
            "{}: Meta no longer attributes their conversions to that click",
            parts.join("; ")
        ),
        "send stage changes promptly after the click; a later click (a new fbclid, or a new ad message) is what attributes them again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::keys::tests::pixel;
    use crate::doctor::report::Status;
    use crate::platforms::PlatformsConfig;

    #[tokio::test]
    async fn local_problems_need_no_request() {
        // A platform this version does not know (every platform it parses is delivered).
        let mut google = pixel(2, true, false);
        google.platform = "myspace".into();
        let no_token = pixel(3, true, false);
        let inactive = pixel(4, false, false);
        let registry = Registry::from_config(&PlatformsConfig::default()).unwrap();
        let checks = api(&[google, no_token, inactive], &Ok(None), &registry).await;
        assert_eq!(checks.len(), 2, "inactive pixels are not checked");
        assert_eq!(checks[0].status, Status::Warning);
        assert!(
            checks[0].found.contains("unknown platform \"myspace\""),
            "{:?}",
            checks[0]
        );
        assert_eq!(checks[1].status, Status::Problem);
        assert!(checks[1].found.contains("no access token"));
        assert_eq!(checks[1].title, "Pixel 333 \"P3\" (id 3)");

        // Invalid settings: the pixel's own problems are still reported, its API is not asked.
        let mut sealed = pixel(5, true, false);
        sealed.access_token = Some("EAAx".into());
        let none = Registry::new(Vec::new());
        let checks = api(&[sealed], &Ok(None), &none).await;
        assert_eq!(checks[0].status, Status::Skipped);
        assert_eq!(
            checks[0].found,
            "not checked against the Graph API: its settings are invalid (see Settings)"
        );
    }

    #[test]
    fn test_event_code_on_an_active_pixel_warns() {
        let mut trial = pixel(1, true, true);
        trial.test_event_code = Some("TEST123".into());
        let mut inactive = pixel(2, false, false);
        inactive.test_event_code = Some("TEST9".into());
        let c = test_event_codes(&[trial, inactive.clone()]);
        assert_eq!(c.status, Status::Warning);
        assert!(c.found.starts_with("1 active pixel(s)"), "{}", c.found);
        assert!(c.found.contains("(id 1)"), "{}", c.found);
        assert_eq!(test_event_codes(&[inactive]).status, Status::Ok);
    }

    #[test]
    fn stale_click_ids_warn_with_counts() {
        assert_eq!(stale_click_ids(0, 0).status, Status::Ok);
        let c = stale_click_ids(3, 1);
        assert_eq!(c.status, Status::Warning);
        assert!(
            c.found.contains("3 customer(s) have a ctwa_clid"),
            "{}",
            c.found
        );
        assert!(
            c.found.contains("1 customer(s) have an fbclid"),
            "{}",
            c.found
        );
    }

    #[test]
    fn default_pixel_cases() {
        let fb = Platform::Facebook;
        let none = default_pixel(&[pixel(1, true, false)], fb);
        assert_eq!(none.status, Status::Warning);
        assert_eq!(none.id, "pixels.default");
        assert!(none
            .found
            .starts_with("no facebook pixel is marked default"));
        assert_eq!(
            default_pixel(&[pixel(1, true, true)], fb).status,
            Status::Ok
        );
        let inactive = default_pixel(&[pixel(1, false, true)], fb);
        assert!(inactive.found.contains("inactive"), "{inactive:?}");
        let two = default_pixel(&[pixel(1, true, true), pixel(2, true, true)], fb);
        assert!(two.found.contains("2 active default pixels"));
        assert_eq!(
            default_pixel(&[], Platform::Tiktok).id,
            "pixels.default.tiktok"
        );
    }
}
