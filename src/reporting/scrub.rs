//! The last line of defence before anything leaves for Sentry (`before_send`): contact data and
//! tokens should never be in an event in the first place (docs/secrets.md; docs/operations.md,
//! "Sentry"), but error texts come from databases, HTTP peers and panics we do not control, so
//! every free-text field is masked.

use std::sync::LazyLock;

use regex::{Captures, Regex};
use sentry::protocol::{Context, Event, Value};

/// Tags whose values stagecast itself sets from identifiers and bounded codes. They are kept as
/// they are: a pixel id or a large job id would otherwise read as a phone number.
const SAFE_TAGS: [&str; 8] = [
    "job_id",
    "kind",
    "attempt",
    "cause",
    "platform",
    "destination",
    "worker_id",
    "batch_size",
];

static BEARER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*").expect("static regex"));
/// `access_token=…` in URLs and form bodies.
static TOKEN_PARAM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\b(access_token|token)=[^&\s"']+"#).expect("static regex"));
/// Meta user and system-user tokens start with `EAA`.
static META_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bEAA[A-Za-z0-9\-_.]{4,}").expect("static regex"));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+(?:@|%40)[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
        .expect("static regex")
});
/// A run of digits, possibly written with the usual phone separators; masked when it holds 7+
/// digits (checked in [`mask_phones`], a regex cannot count across separators).
static DIGITS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\d[\d ().\-]*\d").expect("static regex"));

/// Mask emails, phone-like digit runs (7+ digits) and access tokens in free text.
pub fn scrub_text(text: &str) -> String {
    // Cheap exit for the common case: no digit, no '@', no token marker.
    if !text
        .bytes()
        .any(|b| b.is_ascii_digit() || b == b'@' || b == b'%' || b == b'=')
        && !text.contains("EAA")
        && !text
            .as_bytes()
            .windows(6)
            .any(|w| w.eq_ignore_ascii_case(b"bearer"))
    {
        return text.to_string();
    }
    let text = BEARER.replace_all(text, "Bearer [token]");
    let text = TOKEN_PARAM.replace_all(&text, "$1=[token]");
    let text = META_TOKEN.replace_all(&text, "[token]");
    let text = EMAIL.replace_all(&text, "[email]");
    mask_phones(&text)
}

fn mask_phones(text: &str) -> String {
    DIGITS
        .replace_all(text, |caps: &Captures| {
            let m = caps.get(0).map_or("", |m| m.as_str());
            let (start, end) = caps.get(0).map_or((0, 0), |m| (m.start(), m.end()));
            // Digits glued to letters belong to an identifier (fbtrace ids, hex, hashes).
            let glued = text[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                || text[end..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            let digits = m.bytes().filter(u8::is_ascii_digit).count();
            if digits >= 7 && !glued {
                "[phone]".to_string()
            } else {
                m.to_string()
            }
        })
        .into_owned()
}

fn scrub_in_place(text: &mut String) {
    let scrubbed = scrub_text(text);
    if scrubbed != *text {
        *text = scrubbed;
    }
}

fn scrub_option(text: &mut Option<String>) {
    if let Some(t) = text {
        scrub_in_place(t);
    }
}

/// Every string inside a JSON value (numbers are left alone: ours are ids and counts).
fn scrub_value(value: &mut Value) {
    match value {
        Value::String(s) => scrub_in_place(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(map) => map.values_mut().for_each(scrub_value),
        _ => {}
    }
}

/// `before_send`: drop user and request data, mask every free-text field.
pub fn scrub_event(mut event: Event<'static>) -> Option<Event<'static>> {
    event.user = None;
    event.request = None;
    event
        .contexts
        .retain(|_, c| !matches!(c, Context::Response(_)));
    scrub_option(&mut event.message);
    scrub_option(&mut event.culprit);
    scrub_option(&mut event.transaction);
    if let Some(entry) = &mut event.logentry {
        scrub_in_place(&mut entry.message);
        entry.params.iter_mut().for_each(scrub_value);
    }
    for exception in &mut event.exception.values {
        scrub_option(&mut exception.value);
        if let Some(mechanism) = &mut exception.mechanism {
            scrub_option(&mut mechanism.description);
            mechanism.data.values_mut().for_each(scrub_value);
        }
    }
    for (key, value) in event.tags.iter_mut() {
        if !SAFE_TAGS.contains(&key.as_str()) {
            scrub_in_place(value);
        }
    }
    event.extra.values_mut().for_each(scrub_value);
    for context in event.contexts.values_mut() {
        if let Context::Other(map) = context {
            map.values_mut().for_each(scrub_value);
        }
    }
    for crumb in &mut event.breadcrumbs.values {
        scrub_option(&mut crumb.message);
        crumb.data.values_mut().for_each(scrub_value);
    }
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentry::protocol::{Breadcrumb, Exception, Request, User};

    #[test]
    fn masks_emails_phones_and_tokens() {
        let cases = [
            ("mail Joana.Secreta@Example.com now", "mail [email] now"),
            ("url-encoded joana%40example.com.br", "url-encoded [email]"),
            ("call (11) 97777-8888 today", "call ([phone] today"),
            ("+55 11 97777-8888", "[phone]"),
            ("phone=5511977778888&x=1", "phone=[phone]&x=1"),
            ("ip 200.150.10.20", "ip [phone]"),
            (
                "token EAAtest-secret-token-9f8e7d used",
                "token [token] used",
            ),
            (
                "Authorization: Bearer abc.DEF-123_x==",
                "Authorization: Bearer [token]",
            ),
            (
                "GET /events?access_token=xyz123&debug=1",
                "GET /events?access_token=[token]&debug=1",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(scrub_text(input), expected, "{input}");
        }
    }

    #[test]
    fn keeps_short_numbers_identifiers_and_plain_text() {
        for text in [
            "job 123456 failed after 3 attempts (code 190, subcode 463)",
            "fbtrace_id AbC1234567xyz",
            "hash 9f8e7d12345678ab",
            "2026-11-24T10:00:00Z",
            "Invalid OAuth access token - Cannot parse access token",
            "",
        ] {
            assert_eq!(scrub_text(text), text);
        }
    }

    #[test]
    fn scrubs_every_free_text_field_and_drops_user_and_request() {
        let pii = "a@b.com 11977778888 EAAsecret-token";
        let mut event = Event {
            message: Some(pii.into()),
            culprit: Some(pii.into()),
            user: Some(User {
                email: Some("a@b.com".into()),
                ..User::default()
            }),
            request: Some(Request {
                query_string: Some("access_token=EAAx".into()),
                ..Request::default()
            }),
            ..Event::default()
        };
        event.exception.values.push(Exception {
            ty: "Error".into(),
            value: Some(pii.into()),
            ..Exception::default()
        });
        event
            .tags
            .insert("destination".into(), "facebook:1111222233334444".into());
        event.tags.insert("job_id".into(), "12345678".into());
        event.tags.insert("free".into(), pii.into());
        event
            .extra
            .insert("error".into(), Value::String(pii.into()));
        event.extra.insert(
            "nested".into(),
            serde_json::json!({"list": [pii], "count": 12_345_678_901_u64}),
        );
        let mut other = sentry::protocol::Map::new();
        other.insert("field".into(), Value::String(pii.into()));
        event
            .contexts
            .insert("Rust Tracing Fields".into(), Context::Other(other));
        event.breadcrumbs.values.push(Breadcrumb {
            message: Some(pii.into()),
            ..Breadcrumb::default()
        });

        let event = scrub_event(event).expect("events are kept");
        let json = serde_json::to_string(&event).expect("serializes");
        for needle in ["a@b.com", "11977778888", "EAAsecret"] {
            assert!(!json.contains(needle), "{needle} left in {json}");
        }
        assert!(event.user.is_none() && event.request.is_none());
        assert_eq!(event.message.as_deref(), Some("[email] [phone] [token]"));
        // Identifiers stagecast sets itself survive.
        assert_eq!(event.tags["destination"], "facebook:1111222233334444");
        assert_eq!(event.tags["job_id"], "12345678");
        assert_eq!(event.tags["free"], "[email] [phone] [token]");
        assert_eq!(event.extra["nested"]["count"], 12_345_678_901_u64);
    }
}
