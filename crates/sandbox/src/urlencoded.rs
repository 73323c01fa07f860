//! `application/x-www-form-urlencoded` decoding for query strings and form bodies.
//!
//! axum is built without its `form` feature and the crate has no direct form decoder; the format
//! is small enough (`&`-separated `name=value`, `+` for space, `%HH` escapes) that a few lines here
//! beat a new dependency. Malformed escapes are kept literally, as browsers and `form_urlencoded` do.

/// Decoded `(name, value)` pairs, in order. Empty segments (`a=1&&b=2`) are skipped.
pub(crate) fn pairs(input: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    input
        .split(|&b| b == b'&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| {
            let (name, value) = match seg.iter().position(|&b| b == b'=') {
                Some(eq) => (&seg[..eq], &seg[eq + 1..]),
                None => (seg, &[][..]),
            };
            (decode(name), decode(value))
        })
}

/// First value of `name`, if present.
pub(crate) fn get(input: &[u8], name: &str) -> Option<String> {
    pairs(input).find(|(n, _)| n == name).map(|(_, v)| v)
}

fn decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let got: Vec<_> = pairs(b"data=%5B%7B%22a%22%3A1%7D%5D&x=a+b&&flag&bad=%zz%4").collect();
        assert_eq!(
            got,
            vec![
                ("data".into(), r#"[{"a":1}]"#.into()),
                ("x".into(), "a b".into()),
                ("flag".into(), String::new()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
        assert_eq!(
            get(b"a=1&access_token=t%2Fk&a=2", "access_token").as_deref(),
            Some("t/k")
        );
        assert_eq!(get(b"a=1", "access_token"), None);
        assert_eq!(decode(b"%C3%A9%FF"), "é\u{fffd}");
    }
}
