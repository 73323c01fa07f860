//! Tests of the key ring and the sealed format.

use std::env::VarError;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use proptest::prelude::*;

use super::*;

/// 32 ASCII bytes, so "the raw key bytes appear in this string" is checkable with `contains`.
const RAW_KEY_1: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const RAW_KEY_2: &[u8; 32] = b"ZYXWVUTSRQPONMLKZYXWVUTSRQPONMLK";
const TOKEN: &str = "EAABwzLixnjYBO-plaintext-access-token";

fn b64(key: &[u8]) -> String {
    STANDARD.encode(key)
}

fn make_ring(spec: &[(&str, &[u8; 32])]) -> KeyRing {
    let spec: Vec<String> = spec
        .iter()
        .map(|(id, key)| format!("{id}:{}", b64(*key)))
        .collect();
    KeyRing::parse(&spec.join(",")).expect("valid spec")
}

fn ring_k1() -> KeyRing {
    make_ring(&[("k1", RAW_KEY_1)])
}

fn ring_k2_k1() -> KeyRing {
    make_ring(&[("k2", RAW_KEY_2), ("k1", RAW_KEY_1)])
}

/// Rebuilds a token with a modified decoded payload.
fn with_payload(sealed: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let (head, payload) = sealed.rsplit_once(':').unwrap();
    let mut bytes = STANDARD.decode(payload).unwrap();
    edit(&mut bytes);
    format!("{head}:{}", STANDARD.encode(bytes))
}

/// Builds a `v1` token by hand with an arbitrary AAD and plaintext bytes, to forge what a buggy
/// or malicious producer could write.
fn forge(key: &[u8; 32], key_id: &str, aad: &[u8], plaintext: &[u8]) -> String {
    let nonce = [7u8; 12];
    let ct = Aes256Gcm::new_from_slice(key)
        .unwrap()
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap();
    let mut payload = nonce.to_vec();
    payload.extend_from_slice(&ct);
    format!("v1:{key_id}:{}", STANDARD.encode(payload))
}

fn malformed(result: Result<Secret, SecretsError>) -> MalformedReason {
    match result {
        Err(SecretsError::Malformed { reason }) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn spec_problem(spec: &str) -> (usize, SpecProblem) {
    match KeyRing::parse(spec) {
        Err(SecretsError::InvalidSpec { entry, problem }) => (entry, problem),
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Sealing and opening

#[test]
fn round_trip() {
    let ring = ring_k1();
    for plaintext in [TOKEN, "", "ação 🔑 ключ", &"x".repeat(10_000)] {
        let sealed = ring.seal(plaintext);
        assert!(sealed.starts_with("v1:k1:"), "{sealed}");
        assert_eq!(ring.open(&sealed).unwrap().expose(), plaintext);
        assert!(!sealed.contains(plaintext) || plaintext.is_empty());
    }
}

#[test]
fn sealed_payload_has_nonce_ciphertext_and_tag() {
    let sealed = ring_k1().seal(TOKEN);
    let payload = STANDARD
        .decode(sealed.strip_prefix("v1:k1:").unwrap())
        .unwrap();
    assert_eq!(payload.len(), NONCE_LEN + TOKEN.len() + TAG_LEN);
}

#[test]
fn two_seals_of_the_same_plaintext_differ() {
    let ring = ring_k1();
    let a = ring.seal(TOKEN);
    let b = ring.seal(TOKEN);
    assert_ne!(a, b);
    // Specifically the nonces differ (the rest follows from that).
    assert_ne!(
        STANDARD.decode(&a[6..]).unwrap()[..12],
        STANDARD.decode(&b[6..]).unwrap()[..12]
    );
}

#[test]
fn open_tolerates_surrounding_whitespace_and_missing_padding() {
    let ring = ring_k1();
    let sealed = ring.seal("abcd"); // 12 + 4 + 16 = 32 bytes → base64 with one `=`
    assert!(sealed.ends_with('='));
    assert_eq!(ring.open(&format!(" {sealed}\n")).unwrap().expose(), "abcd");
    let unpadded = sealed.trim_end_matches('=');
    assert_eq!(ring.open(unpadded).unwrap().expose(), "abcd");
}

#[test]
fn rotation() {
    let old = ring_k1();
    let sealed_k1 = old.seal(TOKEN);

    let rotated = ring_k2_k1();
    assert_eq!(rotated.primary_key_id(), "k2");
    assert_eq!(rotated.open(&sealed_k1).unwrap().expose(), TOKEN);
    assert!(rotated.needs_reseal(&sealed_k1));

    let sealed_k2 = rotated.reseal(&sealed_k1).unwrap();
    assert_eq!(KeyRing::sealed_key_id(&sealed_k2).unwrap(), "k2");
    assert!(!rotated.needs_reseal(&sealed_k2));
    assert!(rotated.seal(TOKEN).starts_with("v1:k2:"));

    // After the old key is removed, resealed tokens still open...
    let only_k2 = make_ring(&[("k2", RAW_KEY_2)]);
    assert_eq!(only_k2.open(&sealed_k2).unwrap().expose(), TOKEN);
    // ...and one that was missed is reported, not misread.
    assert!(matches!(
        only_k2.open(&sealed_k1),
        Err(SecretsError::UnknownKeyId { key_id }) if key_id == "k1"
    ));
}

#[test]
fn reseal_of_a_primary_token_gives_a_fresh_nonce() {
    let ring = ring_k1();
    let sealed = ring.seal(TOKEN);
    let again = ring.reseal(&sealed).unwrap();
    assert_ne!(sealed, again);
    assert_eq!(ring.open(&again).unwrap().expose(), TOKEN);
}

#[test]
fn needs_reseal_answers_true_for_anything_not_sealed_with_the_primary() {
    let ring = ring_k2_k1();
    assert!(!ring.needs_reseal(&ring.seal(TOKEN)));
    assert!(ring.needs_reseal(&ring_k1().seal(TOKEN)));
    assert!(ring.needs_reseal(&make_ring(&[("k9", RAW_KEY_1)]).seal(TOKEN)));
    // Malformed: true, so `keys rotate` calls `reseal` and reports the error.
    assert!(ring.needs_reseal("not a sealed token"));
    assert!(ring.reseal("not a sealed token").is_err());
}

#[test]
fn sealed_key_id_parses_the_header_only() {
    assert_eq!(
        KeyRing::sealed_key_id("v1:k-2_x:anything").unwrap(),
        "k-2_x"
    );
    assert!(matches!(
        KeyRing::sealed_key_id("v1:k 1:AAAA"),
        Err(SecretsError::Malformed {
            reason: MalformedReason::KeyId(KeyIdProblem::InvalidChar)
        })
    ));
    assert!(KeyRing::sealed_key_id("EAABplaintext").is_err());
}

#[test]
fn ring_without_the_key_reports_unknown_key_id() {
    let sealed = ring_k1().seal(TOKEN);
    let other = make_ring(&[("k2", RAW_KEY_2)]);
    let err = other.open(&sealed).unwrap_err();
    assert!(matches!(&err, SecretsError::UnknownKeyId { key_id } if key_id == "k1"));
    assert!(err.to_string().contains("`k1`"));
}

#[test]
fn tampered_ciphertext_nonce_or_tag_fails_authentication() {
    let ring = ring_k1();
    let sealed = ring.seal(TOKEN);
    let len = NONCE_LEN + TOKEN.len() + TAG_LEN;
    for index in [
        0,
        NONCE_LEN - 1,
        NONCE_LEN,
        NONCE_LEN + 5,
        len - TAG_LEN,
        len - 1,
    ] {
        let tampered = with_payload(&sealed, |p| p[index] ^= 0x01);
        assert!(
            matches!(ring.open(&tampered), Err(SecretsError::Decrypt { ref key_id }) if key_id == "k1"),
            "byte {index}"
        );
    }
    // Truncated ciphertext (still long enough to parse) and appended bytes.
    let shorter = with_payload(&sealed, |p| {
        p.remove(NONCE_LEN);
    });
    assert!(matches!(
        ring.open(&shorter),
        Err(SecretsError::Decrypt { .. })
    ));
    let longer = with_payload(&sealed, |p| p.push(0));
    assert!(matches!(
        ring.open(&longer),
        Err(SecretsError::Decrypt { .. })
    ));
}

#[test]
fn swapped_key_id_fails_even_when_both_ids_hold_the_same_key() {
    // k1 and alias hold the same bytes: only the AAD binding tells the tokens apart.
    let ring = make_ring(&[("k1", RAW_KEY_1), ("alias", RAW_KEY_1)]);
    let sealed = ring.seal(TOKEN);
    let swapped = sealed.replacen("v1:k1:", "v1:alias:", 1);
    assert!(
        matches!(ring.open(&swapped), Err(SecretsError::Decrypt { ref key_id }) if key_id == "alias")
    );

    // With different keys behind the ids, a swap fails too.
    let ring = ring_k2_k1();
    let swapped = ring.seal(TOKEN).replacen("v1:k2:", "v1:k1:", 1);
    assert!(matches!(
        ring.open(&swapped),
        Err(SecretsError::Decrypt { .. })
    ));
}

#[test]
fn wrong_aad_fails_authentication() {
    let ring = ring_k1();
    for aad in [
        &b""[..],
        b"stagecast:v1:k2",
        b"stagecast:v2:k1",
        b"stagecast:v1:k1 ",
    ] {
        let forged = forge(RAW_KEY_1, "k1", aad, TOKEN.as_bytes());
        assert!(
            matches!(ring.open(&forged), Err(SecretsError::Decrypt { .. })),
            "{aad:?}"
        );
    }
    // The helper itself is right: the documented AAD opens.
    let good = forge(RAW_KEY_1, "k1", b"stagecast:v1:k1", TOKEN.as_bytes());
    assert_eq!(ring.open(&good).unwrap().expose(), TOKEN);
}

#[test]
fn same_id_with_a_different_key_fails_authentication() {
    let sealed = make_ring(&[("k1", RAW_KEY_2)]).seal(TOKEN);
    assert!(matches!(
        ring_k1().open(&sealed),
        Err(SecretsError::Decrypt { .. })
    ));
}

#[test]
fn authentic_non_utf8_plaintext_is_reported_not_panicked() {
    let forged = forge(RAW_KEY_1, "k1", b"stagecast:v1:k1", &[0xff, 0xfe, 0x00]);
    assert!(matches!(
        ring_k1().open(&forged),
        Err(SecretsError::NotUtf8 { .. })
    ));
}

#[test]
fn malformed_tokens() {
    let ring = ring_k1();
    let good_payload = ring.seal(TOKEN)[6..].to_string();
    use MalformedReason as M;
    assert_eq!(malformed(ring.open("")), M::Shape);
    assert_eq!(malformed(ring.open("   ")), M::Shape);
    assert_eq!(malformed(ring.open(TOKEN)), M::Shape);
    assert_eq!(malformed(ring.open("v1:k1")), M::Shape);
    assert_eq!(malformed(ring.open(":")), M::Shape);
    assert_eq!(malformed(ring.open("::")), M::UnsupportedVersion);
    assert_eq!(
        malformed(ring.open(&format!("v2:k1:{good_payload}"))),
        M::UnsupportedVersion
    );
    assert_eq!(
        malformed(ring.open(&format!("V1:k1:{good_payload}"))),
        M::UnsupportedVersion
    );
    assert_eq!(
        malformed(ring.open(&format!("v1::{good_payload}"))),
        M::KeyId(KeyIdProblem::Empty)
    );
    assert_eq!(
        malformed(ring.open(&format!("v1:{}:{good_payload}", "k".repeat(33)))),
        M::KeyId(KeyIdProblem::TooLong { len: 33 })
    );
    assert_eq!(
        malformed(ring.open(&format!("v1:k.1:{good_payload}"))),
        M::KeyId(KeyIdProblem::InvalidChar)
    );
    assert_eq!(malformed(ring.open("v1:k1:!!!!")), M::Base64);
    assert_eq!(malformed(ring.open("v1:k1:AAAA:BBBB")), M::Base64);
    assert_eq!(malformed(ring.open("v1:k1:A")), M::Base64);
    // URL-safe alphabet is not the documented format.
    let url_safe = URL_SAFE_NO_PAD.encode([0xfb; 40]);
    assert_eq!(
        malformed(ring.open(&format!("v1:k1:{url_safe}"))),
        M::Base64
    );
    assert_eq!(malformed(ring.open("v1:k1:")), M::TooShort { len: 0 });
    let short = STANDARD.encode([0u8; 27]);
    assert_eq!(
        malformed(ring.open(&format!("v1:k1:{short}"))),
        M::TooShort { len: 27 }
    );
    // Exactly nonce + tag (empty plaintext) parses and then fails authentication.
    let minimal = STANDARD.encode([0u8; 28]);
    assert!(matches!(
        ring.open(&format!("v1:k1:{minimal}")),
        Err(SecretsError::Decrypt { .. })
    ));
}

#[test]
fn malformed_wins_over_unknown_key_id() {
    // A garbage token is reported as garbage whichever ring reads it.
    let ring = make_ring(&[("k2", RAW_KEY_2)]);
    assert_eq!(malformed(ring.open("v1:k1:!!!!")), MalformedReason::Base64);
}

/// Known-answer test: pins the documented format byte for byte. The expected strings were
/// computed independently with Python's `cryptography` (48.0) — and cross-checked with Node.js
/// `crypto` — by the snippets in docs/secrets.md, with
/// key = bytes(range(32)), nonce = bytes(range(0xa0, 0xac)), key id "k1":
///
/// ```python
/// AESGCM(key).encrypt(nonce, b"EAAB-known-answer-token", b"stagecast:v1:k1")
/// ```
#[test]
fn known_answer() {
    let key: Vec<u8> = (0u8..32).collect();
    let nonce: [u8; 12] = std::array::from_fn(|i| 0xa0 + i as u8);
    let key_b64 = STANDARD.encode(&key);
    assert_eq!(key_b64, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    let ring = KeyRing::parse(&format!("k1:{key_b64}")).unwrap();

    let expected = "v1:k1:oKGio6Slpqeoqaqro1k9b2igbNAVC6qyaQm3uwKBLX/50iwcCVIRqBtu4u6JI+UhURBd";
    assert_eq!(
        ring.seal_with_nonce("EAAB-known-answer-token", &nonce),
        expected
    );
    assert_eq!(
        ring.open(expected).unwrap().expose(),
        "EAAB-known-answer-token"
    );

    let expected_empty = "v1:k1:oKGio6SlpqeoqaqroNaQn/iV7O1TeX7E7xih6Q==";
    assert_eq!(ring.seal_with_nonce("", &nonce), expected_empty);
    assert_eq!(ring.open(expected_empty).unwrap().expose(), "");
}

// ---------------------------------------------------------------------------------------------
// Key ring spec

#[test]
fn parse_accepts_padded_unpadded_and_url_safe_keys() {
    // 0xfb bytes encode to `+/v7...` in standard and `-_v7...` in URL-safe base64.
    let key = [0xfbu8; 32];
    let forms = [
        STANDARD.encode(key),
        STANDARD_NO_PAD.encode(key),
        base64::engine::general_purpose::URL_SAFE.encode(key),
        URL_SAFE_NO_PAD.encode(key),
    ];
    assert!(forms[0].contains('+') && forms[3].contains('-'));
    let reference = KeyRing::parse(&format!("k1:{}", forms[0])).unwrap();
    let sealed = reference.seal(TOKEN);
    for form in &forms {
        let ring = KeyRing::parse(&format!("k1:{form}")).unwrap();
        assert_eq!(ring.open(&sealed).unwrap().expose(), TOKEN, "{form}");
    }
}

#[test]
fn parse_order_whitespace_and_blank_entries() {
    let spec = format!(
        " k2 : {} ,\n k1:{} ,",
        b64(RAW_KEY_2),
        STANDARD_NO_PAD.encode(RAW_KEY_1)
    );
    let ring = KeyRing::parse(&spec).unwrap();
    assert_eq!(ring.primary_key_id(), "k2");
    assert_eq!(ring.key_ids().collect::<Vec<_>>(), ["k2", "k1"]);
    assert!(ring.contains_key_id("k1"));
    assert!(!ring.contains_key_id("k3"));

    let max_id = "A-z_9".repeat(6) + "xy"; // 32 chars, every allowed class
    assert_eq!(max_id.len(), 32);
    let ring = KeyRing::parse(&format!("{max_id}:{}", b64(RAW_KEY_1))).unwrap();
    assert_eq!(ring.primary_key_id(), max_id);
    assert!(ring.seal("x").starts_with(&format!("v1:{max_id}:")));
}

#[test]
fn parse_errors() {
    for spec in ["", "   ", ",", " , ,\n"] {
        assert!(
            matches!(KeyRing::parse(spec), Err(SecretsError::NoKeys)),
            "{spec:?}"
        );
    }
    let k = b64(RAW_KEY_1);

    assert_eq!(spec_problem(&k), (1, SpecProblem::MissingSeparator));
    assert_eq!(
        spec_problem(&format!("k1:{k},k2={k}")),
        (2, SpecProblem::MissingSeparator)
    );
    assert_eq!(
        spec_problem(&format!(":{k}")),
        (1, SpecProblem::KeyId(KeyIdProblem::Empty))
    );
    assert_eq!(
        spec_problem(&format!("{}:{k}", "a".repeat(33))),
        (1, SpecProblem::KeyId(KeyIdProblem::TooLong { len: 33 }))
    );
    assert_eq!(
        spec_problem(&format!("k 1:{k}")),
        (1, SpecProblem::KeyId(KeyIdProblem::InvalidChar))
    );
    assert_eq!(
        spec_problem(&format!("clé:{k}")),
        (1, SpecProblem::KeyId(KeyIdProblem::InvalidChar))
    );
    assert_eq!(
        spec_problem(&format!("k2:{k},k1:{k},,k1:{}", b64(RAW_KEY_2))),
        (4, SpecProblem::DuplicateKeyId { first_entry: 2 })
    );
    assert_eq!(spec_problem("k1:not*base64"), (1, SpecProblem::BadBase64));
    // Mixed alphabets are neither standard nor URL-safe.
    assert_eq!(
        spec_problem(&format!("k1:+-{}", &k[2..])),
        (1, SpecProblem::BadBase64)
    );
    for (len, id) in [(16usize, "short"), (31, "k31"), (33, "k33"), (0, "empty")] {
        let (entry, problem) = spec_problem(&format!("{id}:{}", STANDARD.encode(vec![1u8; len])));
        assert_eq!(entry, 1);
        assert_eq!(problem, SpecProblem::BadKeyLength { len });
        let message = SecretsError::InvalidSpec { entry, problem }.to_string();
        assert!(
            message.contains(&format!("decoded to {len} bytes")),
            "{message}"
        );
    }
}

#[test]
fn from_env_value() {
    assert!(KeyRing::from_var(Err(VarError::NotPresent))
        .unwrap()
        .is_none());
    assert!(KeyRing::from_var(Ok(String::new())).unwrap().is_none());
    assert!(KeyRing::from_var(Ok(" \n".into())).unwrap().is_none());
    assert!(matches!(
        KeyRing::from_var(Err(VarError::NotUnicode("\u{fffd}".into()))),
        Err(SecretsError::EnvNotUnicode {
            var: "STAGECAST_KEYS"
        })
    ));
    let ring = KeyRing::from_var(Ok(format!("k1:{}", b64(RAW_KEY_1))))
        .unwrap()
        .unwrap();
    assert_eq!(ring.primary_key_id(), "k1");
    assert!(matches!(
        KeyRing::from_var(Ok(",".into())),
        Err(SecretsError::NoKeys)
    ));
    assert!(matches!(
        KeyRing::from_var(Ok("k1:abc".into())),
        Err(SecretsError::InvalidSpec { .. })
    ));
}

#[test]
fn generate_key_entry_yields_a_usable_distinct_key() {
    let a = KeyRing::generate_key_entry("k3").unwrap();
    let b = KeyRing::generate_key_entry("k3").unwrap();
    assert_ne!(a, b);
    let (id, key) = a.split_once(':').unwrap();
    assert_eq!(id, "k3");
    assert_eq!(key.len(), 44);
    assert_eq!(STANDARD.decode(key).unwrap().len(), 32);
    let ring = KeyRing::parse(&format!("{a},{}", ring_entry("k1", RAW_KEY_1))).unwrap();
    assert_eq!(ring.open(&ring.seal(TOKEN)).unwrap().expose(), TOKEN);

    assert!(matches!(
        KeyRing::generate_key_entry(""),
        Err(SecretsError::InvalidKeyId(KeyIdProblem::Empty))
    ));
    assert!(matches!(
        KeyRing::generate_key_entry("k:3"),
        Err(SecretsError::InvalidKeyId(KeyIdProblem::InvalidChar))
    ));
}

fn ring_entry(id: &str, key: &[u8]) -> String {
    format!("{id}:{}", b64(key))
}

#[test]
fn key_ring_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<KeyRing>();
    assert_send_sync::<Secret>();
    assert_send_sync::<SecretsError>();
}

// ---------------------------------------------------------------------------------------------
// Nothing secret in Debug, Display or errors

/// Every textual form of the key material and the plaintext that must never be printed.
fn forbidden() -> Vec<String> {
    let mut out = vec![TOKEN.to_string()];
    for key in [RAW_KEY_1, RAW_KEY_2] {
        out.push(String::from_utf8(key.to_vec()).unwrap()); // raw bytes (ASCII by construction)
        out.push(format!("{:?}", key.to_vec())); // `[48, 49, ...]`
        out.push(format!("{:?}", &key[..8])); // a prefix of the same
        out.push(hex::encode(key));
        out.push(STANDARD.encode(key));
        out.push(STANDARD_NO_PAD.encode(key));
        out.push(URL_SAFE_NO_PAD.encode(key));
        out.push(STANDARD_NO_PAD.encode(key)[..12].to_string()); // a recognisable fragment
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    for bad in forbidden() {
        assert!(!text.contains(&bad), "{what} leaks {bad:?}: {text}");
    }
}

#[test]
fn nothing_secret_is_ever_printed() {
    let ring = ring_k2_k1();
    let debug = format!("{ring:?}");
    assert_eq!(debug, r#"KeyRing { primary: "k2", key_ids: ["k2", "k1"] }"#);
    assert_clean("KeyRing {:#?}", &format!("{ring:#?}"));

    let secret = ring.open(&ring.seal(TOKEN)).unwrap();
    assert_clean("Secret Debug", &format!("{secret:?}"));
    assert_clean("Secret Display", &format!("{secret}"));
    assert_clean("Secret in a struct", &format!("{:?}", (1, Some(&secret))));

    let k1 = b64(RAW_KEY_1);
    let k1_np = STANDARD_NO_PAD.encode(RAW_KEY_1);
    let sealed = ring.seal(TOKEN);
    let mut errors: Vec<SecretsError> = vec![
        // Spec mistakes that put the key where an id or a whole entry is expected.
        KeyRing::parse(&k1).unwrap_err(),
        KeyRing::parse(&format!("{k1}:k1")).unwrap_err(),
        KeyRing::parse(&format!("{k1_np}:k1")).unwrap_err(),
        KeyRing::parse(&format!("{}:k1", &k1_np[..20])).unwrap_err(),
        KeyRing::parse(&format!("k1={k1}")).unwrap_err(),
        // A key with one bad character (base64's own error would quote it).
        KeyRing::parse(&format!("k1:{}*{}", &k1[..10], &k1[11..])).unwrap_err(),
        // A key one byte short.
        KeyRing::parse(&format!("k1:{}", b64(&RAW_KEY_1[..31]))).unwrap_err(),
        KeyRing::parse(&format!("k1:{k1},k1:{k1}")).unwrap_err(),
        KeyRing::parse("").unwrap_err(),
        KeyRing::generate_key_entry(&k1).unwrap_err(),
        KeyRing::from_var(Err(VarError::NotUnicode(k1.clone().into()))).unwrap_err(),
        // A CRM writing the plaintext token into the sealed column, in a few shapes.
        ring.open(TOKEN).unwrap_err(),
        ring.open(&format!("v1:{TOKEN}:AAAA")).unwrap_err(),
        ring.open(&format!("v1:k1:{TOKEN}")).unwrap_err(),
        ring.open(&format!("{TOKEN}:k1:AAAA")).unwrap_err(),
        ring.open(&format!("v1:k1:{}", STANDARD.encode(TOKEN)))
            .unwrap_err(),
        // Authentication failures and an unknown key.
        ring.open(&with_payload(&sealed, |p| p[20] ^= 1))
            .unwrap_err(),
        make_ring(&[("k9", RAW_KEY_1)]).open(&sealed).unwrap_err(),
        ring.open(&forge(RAW_KEY_2, "k2", b"stagecast:v1:k2", &[0xff]))
            .unwrap_err(),
    ];
    errors.push(SecretsError::InvalidKeyId(KeyIdProblem::TooLong {
        len: 44,
    }));
    for err in &errors {
        assert_clean("error Display", &err.to_string());
        assert_clean("error Debug", &format!("{err:?}"));
        assert_clean("error Debug (alternate)", &format!("{err:#?}"));
    }
    // And every variant was exercised.
    let names: std::collections::BTreeSet<&str> = errors
        .iter()
        .map(|e| match e {
            SecretsError::NoKeys => "NoKeys",
            SecretsError::InvalidSpec { .. } => "InvalidSpec",
            SecretsError::InvalidKeyId(_) => "InvalidKeyId",
            SecretsError::EnvNotUnicode { .. } => "EnvNotUnicode",
            SecretsError::UnknownKeyId { .. } => "UnknownKeyId",
            SecretsError::Malformed { .. } => "Malformed",
            SecretsError::Decrypt { .. } => "Decrypt",
            SecretsError::NotUtf8 { .. } => "NotUtf8",
        })
        .collect();
    assert_eq!(names.len(), 8, "{names:?}");
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn open_never_panics_on_arbitrary_strings(s in any::<String>()) {
        let _ = ring_k1().open(&s);
        let _ = KeyRing::sealed_key_id(&s);
        let _ = ring_k1().needs_reseal(&s);
    }

    #[test]
    fn open_never_panics_on_token_shaped_strings(
        version in "v[0-9]|v1",
        id in "[A-Za-z0-9_.:-]{0,34}",
        payload in "[A-Za-z0-9+/=_-]{0,120}",
    ) {
        let _ = ring_k2_k1().open(&format!("{version}:{id}:{payload}"));
    }

    #[test]
    fn any_single_bit_flip_is_detected(
        plaintext in ".{0,64}",
        index in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let ring = ring_k1();
        let sealed = ring.seal(&plaintext);
        let tampered = with_payload(&sealed, |p| {
            let i = index.index(p.len());
            p[i] ^= 1 << bit;
        });
        let is_decrypt_error = matches!(ring.open(&tampered), Err(SecretsError::Decrypt { .. }));
        prop_assert!(is_decrypt_error);
    }

    #[test]
    fn seal_open_round_trips(plaintext in any::<String>()) {
        let ring = ring_k2_k1();
        let opened = ring.open(&ring.seal(&plaintext)).unwrap();
        prop_assert_eq!(opened.expose(), plaintext.as_str());
    }

    #[test]
    fn parse_never_panics(spec in any::<String>()) {
        let _ = KeyRing::parse(&spec);
    }
}
