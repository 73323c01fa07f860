//! Text the database would refuse, made storable at the store boundary.
//!
//! Postgres `text` cannot hold the byte 0x00 ("invalid byte sequence for encoding UTF8: 0x00")
//! and `jsonb` refuses the escape `\u0000` ("unsupported Unicode escape sequence"); `json`
//! accepts the escape but every `->>` on it would then fail. Strings are otherwise valid UTF-8
//! (Rust guarantees it), so NUL is the one thing to remove. Such text only ever comes from
//! outside (an API error body, a proxy's page): one bad answer must not make a whole
//! write-back fail. Each NUL becomes U+FFFD, so the audit still shows that something was there.

use std::borrow::Cow;

use serde_json::Value;

const REPLACEMENT: char = '\u{FFFD}';

/// `s` without NUL characters (borrowed, no copy, when it has none: the common case).
pub fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

pub fn opt_text(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(text)
}

/// JSON text whose strings hold no NUL: the `\u0000` escapes (and raw NULs, which are not
/// valid JSON anyway) are replaced. JSON that does not parse is kept as a JSON string, so the
/// `::json` cast of the audit columns cannot fail either.
pub fn json_text(s: &str) -> Cow<'_, str> {
    if !s.contains("\\u0000") && !s.contains('\0') {
        return Cow::Borrowed(s);
    }
    match serde_json::from_str::<Value>(s) {
        Ok(mut v) => {
            json_in_place(&mut v);
            Cow::Owned(v.to_string())
        }
        Err(_) => Cow::Owned(Value::String(text(s).into_owned()).to_string()),
    }
}

/// A JSON value whose strings and keys hold no NUL.
pub fn json(v: &Value) -> Cow<'_, Value> {
    if has_nul(v) {
        let mut v = v.clone();
        json_in_place(&mut v);
        Cow::Owned(v)
    } else {
        Cow::Borrowed(v)
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn json_in_place(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', &REPLACEMENT.to_string()),
        Value::Array(a) => a.iter_mut().for_each(json_in_place),
        Value::Object(o) => {
            if o.keys().any(|k| k.contains('\0')) {
                let entries = std::mem::take(o);
                for (k, mut v) in entries {
                    json_in_place(&mut v);
                    o.insert(text(&k).into_owned(), v);
                }
            } else {
                o.values_mut().for_each(json_in_place);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clean_text_is_borrowed_and_nul_is_replaced() {
        assert!(matches!(text("plain"), Cow::Borrowed("plain")));
        assert_eq!(text("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn json_text_loses_only_its_nul_escapes() {
        assert!(matches!(json_text(r#"{"a":"b"}"#), Cow::Borrowed(_)));
        let body = json!({"error": {"message": "bad\u{0}value", "code": 100}}).to_string();
        assert!(body.contains("\\u0000"));
        let clean = json_text(&body);
        assert!(!clean.contains("\\u0000"));
        let v: Value = serde_json::from_str(&clean).unwrap();
        assert_eq!(v["error"]["message"], "bad\u{FFFD}value");
        assert_eq!(v["error"]["code"], 100);
        // An escaped backslash followed by "u0000" is text, not NUL: it survives a round trip.
        let literal = json!({"m": "\\u0000", "n": "x\u{0}"}).to_string();
        let v: Value = serde_json::from_str(&json_text(&literal)).unwrap();
        assert_eq!(v["m"], "\\u0000");
        // Not JSON: kept as a JSON string.
        assert_eq!(json_text("<html>\0"), "\"<html>\u{FFFD}\"");
    }

    #[test]
    fn json_values_are_cleaned_in_strings_and_keys() {
        let v = json!({"ok": 1, "list": ["a\u{0}"], "k\u{0}": "v"});
        let clean = json(&v).into_owned();
        assert_eq!(
            clean,
            json!({"ok": 1, "list": ["a\u{FFFD}"], "k\u{FFFD}": "v"})
        );
        let fine = json!({"a": [1, "b"]});
        assert!(matches!(json(&fine), Cow::Borrowed(_)));
    }
}
