//! Property tests: no input, however broken, makes the parser panic.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

/// Keys from every supported shape, so generated objects walk the real search paths.
const KEYS: &[&str] = &[
    "contextInfo",
    "ContextInfo",
    "externalAdReply",
    "ExternalAdReply",
    "referral",
    "sourceId",
    "sourceID",
    "source_id",
    "ctwa_clid",
    "ctwaClid",
    "CtwaClid",
    "sourceType",
    "sourceUrl",
    "sourceApp",
    "mediaType",
    "media_type",
    "mediaUrl",
    "title",
    "headline",
    "showAdAttribution",
    "conversionSource",
    "entryPointConversionSource",
    "entryPointConversionApp",
    "ctwaPayload",
    "quotedMessage",
    "messageContextInfo",
    "key",
    "remoteJid",
    "remoteJidAlt",
    "participant",
    "fromMe",
    "id",
    "message",
    "messages",
    "messageTimestamp",
    "messageStubType",
    "pushName",
    "data",
    "event",
    "instance",
    "Info",
    "Message",
    "Sender",
    "SenderAlt",
    "Timestamp",
    "IsFromMe",
    "object",
    "entry",
    "changes",
    "value",
    "contacts",
    "wa_id",
    "user_id",
    "from",
    "from_user_id",
    "timestamp",
    "type",
    "messaging_product",
    "statuses",
    "chatid",
    "messageid",
    "sender_pn",
    "senderName",
    "content",
    "low",
    "high",
];

/// Values that mean something to the parser, mixed with arbitrary ones.
const STRINGS: &[&str] = &[
    "5511987654321@s.whatsapp.net",
    "5511987654321:7@s.whatsapp.net",
    "213709100187796@lid",
    "120363000000000000@g.us",
    "5511987654321",
    "BR.1502576394655843",
    "FB_Ads",
    "ctwa_ad",
    "click_to_chat_link",
    "instagram",
    "IMAGE",
    "VIDEO",
    "ad",
    "1789433294",
    "1789433294000",
    "2026-09-15T00:48:14Z",
    "{\"key\":{\"id\":\"x\"},\"message\":{}}",
    "{",
    "",
    "   ",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,12}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
    ]
}

/// JSON values up to 8 levels deep, biased towards WhatsApp payload keys.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(8, 256, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A generated value inside each real envelope, so the shape detectors accept it and the ad
/// search runs over it.
fn wrapped(value: Value) -> [Value; 5] {
    use serde_json::json;
    [
        json!({"event": "messages.upsert", "instance": "i", "data": {"key": {"id": "k"}, "message": value.clone()}}),
        json!({"key": {"remoteJid": "5511987654321@s.whatsapp.net"}, "message": value.clone(), "contextInfo": value.clone()}),
        json!({"entry": [{"id": "1", "changes": [{"value": {"messaging_product": "whatsapp", "messages": [{"from": "1", "referral": value.clone()}]}}]}]}),
        json!({"event": {"Info": {"ID": "x", "Sender": value.clone()}, "Message": value.clone()}}),
        json!({"message": {"chatid": value.clone(), "content": value.clone(), "messageTimestamp": value}}),
    ]
}

proptest! {
    #[test]
    fn parse_bytes_never_panics(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_bytes(&raw);
    }

    #[test]
    fn parse_value_never_panics(value in json_value()) {
        let _ = parse_value(&value);
        // Inside a real envelope any content is read, never refused: this is what proves the
        // generated keys went through the ad search rather than stopping at shape detection.
        for v in wrapped(value) {
            let outcome = parse_value(&v);
            prop_assert!(outcome.is_ok(), "{:?}", outcome);
            prop_assert_eq!(parse_str(&v.to_string()), outcome);
        }
    }

    #[test]
    fn byte_flips_in_a_fixture_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)
    ) {
        let mut raw = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/whatsapp/evolution_extended_text_nested.json"
        ))
        .to_vec();
        for (at, byte) in flips {
            let i = at.index(raw.len());
            raw[i] = byte;
        }
        let _ = parse_bytes(&raw);
    }
}

/// Every prefix of a real payload: each one is either parsed or refused, never a panic.
#[test]
fn every_truncation_of_a_fixture_is_handled() {
    let raw = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/whatsapp/evolution_messages_upsert_conversation.json"
    ));
    let end = raw.iter().rposition(|b| *b == b'}').expect("a JSON object") + 1;
    for len in 0..end {
        // A strict prefix of one JSON object is never complete JSON.
        assert!(
            parse_bytes(&raw[..len]).is_err(),
            "prefix of {len} bytes parsed"
        );
    }
    for len in end..=raw.len() {
        assert!(
            parse_bytes(&raw[..len]).is_ok(),
            "prefix of {len} bytes refused"
        );
    }
}
