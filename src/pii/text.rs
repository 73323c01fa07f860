//! Text canonicalisation shared by every field.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Invisible characters that copy/paste from chat apps and spreadsheets leaves in CRM fields.
/// They never belong to a value, yet they change its bytes and so its hash. Zero-width joiners
/// are kept: they carry meaning in some scripts.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}')
}

/// NFC, drop invisible characters, trim, Unicode lowercase, NFC again.
///
/// NFC comes first because `é` typed as `e` + U+0301 has different bytes (and hash) from U+00E9.
/// Lowercasing can in rare cases yield a sequence that is not NFC (e.g. `İ` → `i̇`), hence the
/// second pass.
pub(crate) fn canonical(raw: &str) -> String {
    let nfc: String = raw.nfc().filter(|c| !is_invisible(*c)).collect();
    nfc.trim().to_lowercase().nfc().collect()
}

/// Typographic punctuation that shows up in names typed on phones (`O’Brien`, `Jean‐Luc`).
/// Meta's rule is "no punctuation"; removing only ASCII punctuation would make `O’Brien` and
/// `O'Brien` hash differently.
fn is_typographic_punct(c: char) -> bool {
    matches!(
        c,
        '\u{2018}'..='\u{201F}' // ‘ ’ ‚ ‛ “ ” „ ‟
            | '\u{2010}'..='\u{2015}' // ‐ ‑ ‒ – — ―
            | '\u{00B4}' // ´
            | '\u{02BC}' // ʼ
            | '\u{00B7}' // ·
            | '\u{00AB}' // «
            | '\u{00BB}' // »
    )
}

/// Names (`fn`, `ln`): remove whitespace and punctuation, keep letters (accents included) and
/// digits. Input must already be [`canonical`].
pub(crate) fn strip_name(canon: &str) -> String {
    canon
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_ascii_punctuation() && !is_typographic_punct(*c))
        .collect()
}

/// City (`ct`) and unknown states: letters only (accents and non-Latin scripts kept); digits,
/// whitespace, punctuation and symbols removed. Combining marks are kept so scripts without
/// precomposed forms survive. Input must already be [`canonical`].
pub(crate) fn letters_only(canon: &str) -> String {
    canon
        .chars()
        .filter(|c| c.is_alphabetic() || is_combining_mark(*c))
        .collect()
}

/// Key used only to look values up in our tables (countries, states, genders): accents folded,
/// letters and digits only. Never hashed.
pub(crate) fn lookup_key(canon: &str) -> String {
    canon
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .filter(|c| c.is_alphanumeric())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_composes_trims_and_lowercases() {
        assert_eq!(canonical("  Jose\u{301} \u{FEFF}"), "josé");
        assert_eq!(canonical("\u{A0}MARIA\u{A0}"), "maria");
    }

    #[test]
    fn names_lose_punctuation_and_spaces_but_keep_accents() {
        assert_eq!(strip_name(&canonical("O’Brien")), "obrien");
        assert_eq!(strip_name(&canonical("Jean-Luc  Picard")), "jeanlucpicard");
        assert_eq!(strip_name(&canonical("Valéry")), "valéry");
    }

    #[test]
    fn lookup_key_folds_accents() {
        assert_eq!(lookup_key(&canonical("São Paulo")), "saopaulo");
        assert_eq!(lookup_key(&canonical("E.U.A.")), "eua");
    }
}
