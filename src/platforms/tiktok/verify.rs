//! `stagecast doctor` for a TikTok event source: `POST /open_api/v1.3/event/track/` with its
//! token, its `event_source_id` and no events. TikTok checks the token and its access to the
//! event source before it looks at the events, so a bad token answers 40105 and a foreign event
//! set 40001, while good credentials get only the complaint that `data` is empty (40002). No
//! event is sent. The answer is classified the way the worker classifies a delivery.

use super::client::{TrackResponse, TransportError};
use super::retry::{classify, ApiError, Classification};
use crate::alerts::AlertCause;
use crate::platforms::platform::Verification;
use crate::store::PixelRow;

fn set_token(p: &PixelRow) -> String {
    format!("`stagecast pixel set-token {} < token.txt`", p.id)
}

pub fn verdict(
    p: &PixelRow,
    answer: Result<TrackResponse, TransportError>,
    base_url: &str,
) -> Verification {
    let problem = |found: String, fix: String| Verification::Problem { found, fix };
    let warning = |found: String, fix: &str| Verification::Warning {
        found,
        fix: fix.to_string(),
    };
    let classification = match &answer {
        Ok(resp) => classify(resp),
        Err(e) => {
            return problem(
                format!("cannot reach the TikTok Events API at {base_url}: {e}"),
                "check that this host can reach it (DNS, firewall, proxy) and STAGECAST_TIKTOK_BASE_URL".into(),
            );
        }
    };
    let ok =
        || Verification::Ok("the TikTok Events API accepts its token for this event source".into());
    match classification {
        Classification::Delivered { .. } => ok(),
        // The empty `data` is all TikTok found wrong: the credentials passed.
        Classification::RejectEvents(ApiError {
            code: Some(40002), ..
        }) => ok(),
        Classification::HoldDestination {
            error,
            cause: AlertCause::TokenInvalid,
        } => problem(
            format!("TikTok refused the token: invalid or revoked ({error})"),
            format!(
                "generate a new access token for this event set in TikTok's Events Manager and store it: {}",
                set_token(p)
            ),
        ),
        Classification::FailDestination { error, .. } if error.code == Some(40001) => problem(
            format!(
                "the token may not send to event source {} ({error})",
                p.pixel_id
            ),
            "check pixels.pixel_id against Events Manager, and that the token was generated for this event set".into(),
        ),
        Classification::HoldDestination { error, .. }
        | Classification::FailDestination { error, .. }
        | Classification::RejectEvents(error) => {
            problem(
                format!("TikTok refused the check: {error}"),
                "check STAGECAST_TIKTOK_BASE_URL and the event set; give the request_id to TikTok support if it persists".into(),
            )
        }
        Classification::Throttle(error) => warning(
            format!("not checked: TikTok is rate limiting ({error})"),
            "run the doctor again in a few minutes",
        ),
        Classification::Retry(error) => warning(
            format!("not checked: temporary TikTok error: {error}"),
            "run the doctor again later",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pixel() -> PixelRow {
        PixelRow {
            id: 7,
            platform: "tiktok".into(),
            name: None,
            pixel_id: "CRM1".into(),
            access_token: None,
            access_token_enc: None,
            active: true,
            is_default: true,
            waba_id: None,
            test_event_code: None,
            action_source: None,
            messaging_mode: None,
            options: None,
        }
    }

    fn answer(code: i64) -> Result<TrackResponse, TransportError> {
        Ok(TrackResponse {
            status: 200,
            body: Some(json!({"code": code, "message": "m", "request_id": "R"})),
            text: None,
        })
    }

    #[test]
    fn classifies_like_the_worker() {
        let p = pixel();
        assert!(matches!(
            verdict(&p, answer(40002), "u"),
            Verification::Ok(_)
        ));
        assert!(matches!(verdict(&p, answer(0), "u"), Verification::Ok(_)));
        let Verification::Problem { found, fix } = verdict(&p, answer(40105), "u") else {
            panic!()
        };
        assert!(found.contains("code 40105"), "{found}");
        assert!(fix.contains("stagecast pixel set-token 7"), "{fix}");
        assert!(matches!(
            verdict(&p, answer(40001), "u"),
            Verification::Problem { found, .. } if found.contains("event source CRM1")
        ));
        assert!(matches!(
            verdict(&p, answer(40100), "u"),
            Verification::Warning { .. }
        ));
        assert!(matches!(
            verdict(&p, answer(50000), "u"),
            Verification::Warning { .. }
        ));
        assert!(matches!(
            verdict(&p, Err(TransportError::Connect("refused".into())), "http://x"),
            Verification::Problem { found, .. } if found.starts_with("cannot reach the TikTok Events API at http://x")
        ));
    }
}
