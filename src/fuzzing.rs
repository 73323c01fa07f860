//! The bodies of the fuzz targets in `fuzz/` (cargo fuzz), kept in the library so the stable
//! test suite replays the same functions over the committed corpora (`tests/fuzz_corpus.rs`):
//! this machine's toolchain is stable, and a crash found once must stay fixed without nightly.
//!
//! Each function takes arbitrary bytes and panics only on a bug: a panic in a parser or a
//! normaliser, or a broken invariant checked here.

use crate::pii::{Hashed, Normalizer};

/// A fuzz target's body: arbitrary bytes in, a panic only on a bug.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (the file names under `fuzz/fuzz_targets/` and `fuzz/corpus/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("whatsapp_referral", whatsapp_referral),
    ("utm_event", utm_event),
    ("pii_phone", pii_phone),
    ("pii_email", pii_email),
    ("pii_name", pii_name),
    ("sandbox_meta_request", sandbox_meta_request),
];

/// The WhatsApp referral parser, from stored bytes (its size and depth checks included) and,
/// when the bytes are JSON, from the decoded value (the `jsonb` path).
pub fn whatsapp_referral(data: &[u8]) {
    let from_bytes = crate::attribution::parse_bytes(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let from_value = crate::attribution::parse_value(&value);
        // The two entry points must agree on whether a referral was found.
        if let (Ok(a), Ok(b)) = (&from_bytes, &from_value) {
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "bytes and value disagree"
            );
        }
    }
}

/// A stage's `utm_event` value, as the CRM writes it into a jsonb column.
pub fn utm_event(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = crate::pipeline::event_config::parse(&value);
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

fn check_hash(h: &Hashed) {
    let s = h.as_str();
    assert!(
        s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "not a SHA-256 hash in hex: {s:?}"
    );
}

/// Phone normalisation in a few default regions; E.164 digits come out, and a valid number's
/// digits normalise to themselves again (with a `+`). Numbers the library calls invalid are
/// kept by their explicit country code with one trunk 0 dropped, so `+375 00…` is not a fixed
/// point (another 0 goes on the next pass): left as it is, such a number matches nothing anyway.
pub fn pii_phone(data: &[u8]) {
    let Some(raw) = text(data) else { return };
    for region in ["BR", "US", "PT"] {
        let n = Normalizer::new(region).expect("a valid region");
        if let Ok(digits) = n.phone_digits(raw) {
            assert!(
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                "phone_digits({raw:?}) = {digits:?}"
            );
            let plus = format!("+{digits}");
            let valid = phonenumber::parse(None, &plus).is_ok_and(|p| p.is_valid());
            let again = n.phone_digits(&plus);
            assert!(
                !valid || again.as_deref().ok() == Some(digits.as_str()),
                "{plus} does not normalise to itself: {again:?}"
            );
        }
        if let Ok(h) = n.phone(raw) {
            check_hash(&h);
        }
        if let Ok(h) = n.phone_e164(raw) {
            check_hash(&h);
        }
    }
}

/// Email normalisation (Meta's and Google's rules).
pub fn pii_email(data: &[u8]) {
    let Some(raw) = text(data) else { return };
    let n = Normalizer::new("BR").expect("a valid region");
    if let Ok(h) = n.email(raw) {
        check_hash(&h);
    }
    if let Ok(h) = n.google_email(raw) {
        check_hash(&h);
    }
}

/// First and last names, the full-name split, and the other free-text fields.
pub fn pii_name(data: &[u8]) {
    let Some(raw) = text(data) else { return };
    let n = Normalizer::new("BR").expect("a valid region");
    let (first, last) = crate::pii::split_full_name(raw);
    for part in [Some(raw.to_owned()), first, last].into_iter().flatten() {
        for h in [
            n.first_name(&part),
            n.last_name(&part),
            n.city(&part),
            n.state(&part),
            n.country(&part),
            n.zip(&part),
            n.gender(&part),
            n.date_of_birth(&part),
            n.external_id(&part),
        ]
        .into_iter()
        .flatten()
        {
            check_hash(&h);
        }
    }
}

/// The Graph sandbox's request validator: the first byte picks the content type, the rest is
/// the body.
pub fn sandbox_meta_request(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = match selector % 4 {
        0 => "application/json",
        1 => "application/x-www-form-urlencoded",
        2 => "",
        _ => "multipart/form-data",
    };
    let _ = stagecast_sandbox::fuzzing::meta_events_request(content_type, body, 1_764_547_200);
}
