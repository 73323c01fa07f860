//! Phone numbers → E.164 digits without `+`.
//!
//! The `phonenumber` crate does the real work (country codes, trunk prefixes, validity). Around it
//! we add what CRM data needs: WhatsApp ids, the `00` international prefix (which the library
//! would misread for Brazil, see [`lex`]), extensions, and a strict policy on what to accept.

use std::panic::{catch_unwind, AssertUnwindSafe};

use phonenumber::{country, metadata::DATABASE, Mode, PhoneNumber};
use unicode_normalization::UnicodeNormalization;

use super::PiiError;

/// E.164 allows at most 15 digits; anything longer (plus a `00` prefix) is not one number.
const MAX_DIGITS: usize = 17;
/// Shorter than this cannot hold a country code and a subscriber number.
const MIN_DIGITS: usize = 6;

/// A validated default region the `phonenumber` database has metadata for.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    id: country::Id,
    code: String,
}

impl Region {
    pub(crate) fn parse(raw: &str) -> Result<Self, PiiError> {
        let code = raw.trim().to_ascii_uppercase();
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(PiiError::InvalidRegion);
        }
        let id: country::Id = code.parse().map_err(|_| PiiError::InvalidRegion)?;
        // The library unwraps this lookup internally; checking here keeps it from panicking.
        if DATABASE.by_id(id.as_ref()).is_none() {
            return Err(PiiError::InvalidRegion);
        }
        Ok(Region { id, code })
    }

    pub(crate) fn code(&self) -> &str {
        &self.code
    }
}

/// What the user dialled, reduced to ASCII digits.
#[derive(Debug, PartialEq, Eq)]
struct Dialled {
    digits: String,
    /// A country code is explicitly present (`+`, `00`, or a WhatsApp id).
    international: bool,
    /// It was dialled with `00` (stripped from `digits`): only then can a Brazilian carrier
    /// code sit between the prefix and the country code.
    via_00: bool,
    /// The input was nothing but digits (how WhatsApp `wa_id`s and exports look), as opposed
    /// to a number formatted for humans such as `(60) 92000-0000`.
    bare: bool,
}

/// Domains of WhatsApp JIDs that carry a phone number in the user part.
const WA_PHONE_DOMAINS: &[&str] = &["s.whatsapp.net", "c.us", "whatsapp.net"];

/// Lexical clean-up; no knowledge of numbering plans.
fn lex(raw: &str) -> Result<Dialled, PiiError> {
    // NFKC folds full-width digits and `＋` to ASCII.
    let text: String = raw.nfkc().collect::<String>().trim().to_lowercase();
    let mut text = text.as_str();
    for prefix in ["tel:", "whatsapp:"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            text = rest;
        }
    }

    let bare = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let mut international = false;
    let mut via_00 = false;
    if let Some((user, domain)) = text.split_once('@') {
        match domain.trim() {
            d if WA_PHONE_DOMAINS.contains(&d) => {
                // `5511987654321:12@s.whatsapp.net`: the suffix after `:` is a device number.
                text = user.split(':').next().unwrap_or_default();
                // A WhatsApp user part is always the full international number.
                international = true;
            }
            "lid" => return Err(PiiError::PhoneIsWhatsAppLid),
            _ => {
                return Err(PiiError::InvalidPhone {
                    reason: "phone contains @ but is not a WhatsApp phone-number id",
                })
            }
        }
    }

    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if c == '+' && digits.is_empty() {
            international = true;
        } else if !digits.is_empty() && (c.is_alphabetic() || matches!(c, '#' | ';' | ',')) {
            // Extension (`x123`, `ext. 12`, `ramal 3`, `;ext=1`) or a second number: stop.
            break;
        }
        // Anything else is formatting: spaces, dots, dashes, slashes, brackets, leading labels.
    }

    if digits.is_empty() {
        return Err(PiiError::InvalidPhone {
            reason: "phone has no digits",
        });
    }
    // `00` is the international prefix nearly everywhere outside North America. We strip it
    // ourselves: with region BR the library reads `0055…` as carrier-selection IDD `0055`
    // followed by a +1 number.
    if !international {
        if let Some(rest) = digits.strip_prefix("00") {
            digits = rest.to_owned();
            international = true;
            via_00 = true;
        }
    }
    if digits.len() > MAX_DIGITS {
        return Err(PiiError::InvalidPhone {
            reason: "phone has too many digits",
        });
    }
    if digits.len() < MIN_DIGITS {
        return Err(PiiError::InvalidPhone {
            reason: "phone has too few digits",
        });
    }
    Ok(Dialled {
        digits,
        international,
        via_00,
        bare,
    })
}

/// The library has panicked on malformed input before (rust-phonenumber#43). We only ever pass it
/// ASCII digits with an optional `+`, and still contain any panic so one bad row cannot take the
/// worker down.
fn parse(region: Option<country::Id>, s: &str) -> Option<PhoneNumber> {
    catch_unwind(AssertUnwindSafe(|| phonenumber::parse(region, s).ok()))
        .ok()
        .flatten()
}

fn e164_digits(n: &PhoneNumber) -> Option<String> {
    let formatted = n.format().mode(Mode::E164).to_string();
    let digits = formatted.strip_prefix('+')?;
    let ok =
        (MIN_DIGITS..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| digits.to_owned())
}

fn valid_digits(n: &PhoneNumber) -> Option<String> {
    if n.is_valid() {
        e164_digits(n)
    } else {
        None
    }
}

/// E.164 digits (no `+`) for `raw`, or why not.
pub(crate) fn normalize(raw: &str, region: &Region) -> Result<String, PiiError> {
    let dialled = lex(raw)?;
    let digits = dialled.digits.as_str();

    if dialled.international {
        let intl = format!("+{digits}");
        if let Some(d) = parse(None, &intl).as_ref().and_then(valid_digits) {
            return Ok(d);
        }
        // Brazil dials abroad as 00 + 2-digit carrier + country code (`0021 1 650…`). Never
        // after a `+`: `+55 95 5867…` (invalid) must not become Myanmar's `+95 5867…`.
        if region.id == country::Id::BR && dialled.via_00 {
            if let Some(rest) = digits.get(2..) {
                if let Some(d) = parse(None, &format!("+{rest}"))
                    .as_ref()
                    .and_then(valid_digits)
                {
                    return Ok(d);
                }
            }
        }
        // Not valid per the library's metadata, but the country code is explicit and known (e.g.
        // a Brazilian WhatsApp id without the 9th digit): keep it. The library still normalises
        // it (drops a stray trunk 0 after the country code).
        // If what that leaves is a valid number, take its canonical spelling, so normalising
        // the result again gives the same digits (one number, one hash).
        return parse(None, &intl)
            .as_ref()
            .and_then(e164_digits)
            .map(|d| {
                parse(None, &format!("+{d}"))
                    .as_ref()
                    .and_then(valid_digits)
                    .unwrap_or(d)
            })
            .ok_or(PiiError::PhoneUnknownCountryCode);
    }

    let national = parse(Some(region.id), digits);
    if let Some(d) = national.as_ref().and_then(valid_digits) {
        return Ok(d);
    }
    // The library may take a leading area code equal to the country code for the country code
    // (Brazil's area 55: `55 91234-5678`) and then find the rest invalid. Read as a national
    // number first.
    if let Some(cc) = DATABASE.by_id(region.id.as_ref()).map(|m| m.country_code()) {
        if let Some(d) = parse(None, &format!("+{cc}{digits}"))
            .as_ref()
            .and_then(valid_digits)
        {
            return Ok(d);
        }
    }
    // The library found the region's own country code in the digits and the number is not
    // valid either way (`551187654321`, a pre-9th-digit WhatsApp id, with region BR): the
    // country is explicit, so keep it like an international number.
    if let Some(n) = national.as_ref() {
        if n.code().source() != country::Source::Default {
            if let Some(d) = e164_digits(n) {
                return Ok(d);
            }
        }
    }
    // A bare international number without `+` (WhatsApp `wa_id`, `5511987654321`) for a tenant
    // in another region. Only long, unformatted digit strings qualify: a national number (short,
    // or written like `(60) 92000-0000`) must not be misread as a foreign one.
    if dialled.bare && digits.len() >= 11 && !digits.starts_with('0') {
        if let Some(d) = parse(None, &format!("+{digits}"))
            .as_ref()
            .and_then(valid_digits)
        {
            return Ok(d);
        }
    }
    Err(PiiError::PhoneUnparseable {
        region: region.code.clone(),
    })
}

/// The other spelling of a Brazilian mobile number with respect to the "9th digit".
///
/// WhatsApp registered some Brazilian mobiles before the extra leading 9 was added, so the same
/// line may be known as `5511987654321` or `551187654321` (adiwajshing/Baileys#1997). Given
/// either E.164 form, returns the other, so a caller can send both in the `ph` list or match both
/// internally.
/// Mobile subscriber numbers start with 6–9 (before the 9 was prepended); landlines (2–5) have
/// no variant.
pub fn br_mobile_variant(e164_digits: &str) -> Option<String> {
    if !e164_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = e164_digits.strip_prefix("55")?;
    let (area, subscriber) = (rest.get(..2)?, rest.get(2..)?);
    if area.starts_with('0') {
        return None;
    }
    match subscriber.len() {
        9 if subscriber.starts_with('9')
            && matches!(subscriber.as_bytes().get(1), Some(b'6'..=b'9')) =>
        {
            Some(format!("55{area}{}", &subscriber[1..]))
        }
        8 if matches!(subscriber.as_bytes().first(), Some(b'6'..=b'9')) => {
            Some(format!("55{area}9{subscriber}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br() -> Region {
        Region::parse("BR").unwrap()
    }

    fn us() -> Region {
        Region::parse("us").unwrap()
    }

    #[test]
    fn region_validation() {
        assert_eq!(br().code(), "BR");
        assert_eq!(us().code(), "US");
        for bad in ["", "B", "BRA", "ZZ", "1A", "b r", "ÇA"] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lex_handles_whatsapp_ids_and_extensions() {
        let d = lex("5511987654321:12@s.whatsapp.net").unwrap();
        assert_eq!(d.digits, "5511987654321");
        assert!(d.international);
        assert!(matches!(
            lex("213709100187796@lid"),
            Err(PiiError::PhoneIsWhatsAppLid)
        ));
        assert!(lex("120363@g.us").is_err());
        assert_eq!(
            lex("+1 650 555 1212 ext. 99").unwrap().digits,
            "16505551212"
        );
        assert_eq!(
            lex("tel:+55-11-98765-4321").unwrap().digits,
            "5511987654321"
        );
        assert_eq!(lex("Cel: (11) 98765-4321").unwrap().digits, "11987654321");
        assert_eq!(
            lex("＋５５ １１ ９８７６５ ４３２１").unwrap().digits,
            "5511987654321"
        );
    }

    #[test]
    fn br_numbers() {
        let r = br();
        for raw in [
            "+55 (11) 98765-4321",
            "0055 11 98765-4321",
            "011 98765-4321",
            "(11) 98765-4321",
            "11987654321",
            "5511987654321",
            "+55.11.98765.4321",
            "+55 (011) 98765-4321",
            "5511987654321@s.whatsapp.net",
            "5511987654321@c.us",
            "whatsapp:+5511987654321",
        ] {
            assert_eq!(normalize(raw, &r).unwrap(), "5511987654321", "{raw}");
        }
        // Landline.
        assert_eq!(normalize("(11) 3333-4444", &r).unwrap(), "551133334444");
        // Area code 55 is also Brazil's country code.
        assert_eq!(normalize("(55) 91000-0000", &r).unwrap(), "5555910000000");
        assert_eq!(normalize("55 3222-1234", &r).unwrap(), "555532221234");
        // Pre-9th-digit WhatsApp form: explicit country code, kept as is.
        assert_eq!(normalize("551187654321", &r).unwrap(), "551187654321");
        assert_eq!(
            normalize("551187654321@s.whatsapp.net", &r).unwrap(),
            "551187654321"
        );
        // Abroad via carrier 21.
        assert_eq!(normalize("0021 1 650 253 0000", &r).unwrap(), "16502530000");
    }

    #[test]
    fn us_numbers() {
        let r = us();
        assert_eq!(normalize("(650)555-1212", &r).unwrap(), "16505551212");
        assert_eq!(normalize("+1 (650) 253-0000", &r).unwrap(), "16502530000");
        assert_eq!(
            normalize("011 44 20 7946 0958", &r).unwrap(),
            "442079460958"
        );
        // A WhatsApp wa_id of a Brazilian customer for a US tenant.
        assert_eq!(normalize("5511987654321", &r).unwrap(), "5511987654321");
        // Formatted like a national number: not reinterpreted as Brazilian.
        assert!(normalize("(551) 198-7654321", &r).is_err());
    }

    #[test]
    fn rejects_what_it_cannot_place() {
        let r = br();
        // No area code: not a complete Brazilian number, and too short to be international.
        assert!(matches!(
            normalize("98765-4321", &r),
            Err(PiiError::PhoneUnparseable { .. })
        ));
        assert!(normalize("+999 1234 5678", &r).is_err());
        assert!(normalize("abc", &r).is_err());
        assert!(normalize("123", &r).is_err());
        assert!(normalize("+55 11 98765-4321 / +55 11 3333-4444 / 1", &r).is_err());
    }

    #[test]
    fn ninth_digit_variants() {
        assert_eq!(
            br_mobile_variant("5511987654321").as_deref(),
            Some("551187654321")
        );
        assert_eq!(
            br_mobile_variant("551187654321").as_deref(),
            Some("5511987654321")
        );
        assert_eq!(br_mobile_variant("551133334444"), None); // landline
        assert_eq!(br_mobile_variant("16505551212"), None);
        assert_eq!(br_mobile_variant("55"), None);
        assert_eq!(br_mobile_variant("55é1"), None);
    }
}
