//! Test vectors: the examples of Meta's customer-information parameters page, and tricky inputs
//! (national and WhatsApp phone formats, NFD names, CEPs) hashed as they normalise under the rules
//! we follow (`printf %s '<normalised>' | sha256sum`); plus error hygiene and property tests.

use super::*;
use proptest::prelude::*;

/// One of the hashing methods of [`Normalizer`].
type NormFn = fn(&Normalizer, &str) -> Result<Hashed, PiiError>;

fn br() -> Normalizer {
    Normalizer::new("BR").unwrap()
}

fn us() -> Normalizer {
    Normalizer::new("us").unwrap()
}

const PH_5511987654321: &str = "029c7290f14c4516673508635f0519db95f7daf42057fd0e4ad1de84c5408a66";
const DB_19970216: &str = "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c";

#[track_caller]
fn assert_hash(got: Result<Hashed, PiiError>, want: &str) {
    match got {
        Ok(h) => assert_eq!(h.as_str(), want),
        Err(e) => panic!("expected {want}, got error: {e}"),
    }
}

#[test]
fn sha256_hex_matches_sha256sum() {
    assert_eq!(
        sha256_hex("john_smith@gmail.com"),
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
    );
    assert_eq!(
        sha256_hex(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn meta_documented_examples() {
    let us = us();
    assert_hash(
        us.email("John_Smith@gmail.com"),
        "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
    );
    assert_hash(
        us.phone("(650)555-1212"),
        "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
    );
    assert_hash(
        us.first_name("Mary"),
        "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec",
    );
    assert_hash(
        us.first_name("Valéry"),
        "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c",
    );
    assert_hash(
        us.country("United States"),
        "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621",
    );
    assert_hash(us.date_of_birth("2/16/1997"), DB_19970216);
}

#[test]
fn email_vectors() {
    assert_hash(
        br().email("  John.Doe@Example.COM "),
        "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f",
    );
}

#[test]
fn phone_vectors() {
    let br = br();
    for raw in [
        "+55 (11) 98765-4321",
        "0055 11 98765-4321",
        "+55.11.98765.4321",
        "5511987654321@s.whatsapp.net",
    ] {
        assert_hash(br.phone(raw), PH_5511987654321);
    }
    // BR national with trunk 0: both Meta SDKs produce the +1-looking `11987654321`; parsing
    // with region BR gives the right number.
    let trunk = br.phone("011 98765-4321").unwrap();
    assert_eq!(trunk.as_str(), PH_5511987654321);
    assert_ne!(
        trunk.as_str(),
        "4fd70d38eff60fe8cf9f324b3979a076c595ebec57da7b6f0a5fb6a2b6723015"
    );
    assert_eq!(br.phone_digits("011 98765-4321").unwrap(), "5511987654321");
    // Same line without the 9th digit, as some BR WhatsApp ids appear.
    assert_hash(
        br.phone("551187654321"),
        "9d00682b6cd3bf3cfdfcb37f11706e1183d9e9aa55e88e775efdd5c2d1581efe",
    );
}

#[test]
fn name_vectors() {
    let n = br();
    let jose = "d994e1d001886fe5b45b1267bd1fa2b752ac50742579bd3dad7b2a2aa0ed6866";
    assert_hash(n.first_name("José"), jose);
    // NFD input (`e` + U+0301) hashes like NFC; hashed raw it would differ
    // (`printf 'jose\xcc\x81' | sha256sum` gives 0c06649e…).
    let nfd = "Jose\u{301}";
    assert_hash(n.first_name(nfd), jose);
    assert_eq!(
        sha256_hex(&nfd.to_lowercase()),
        "0c06649e61569bf7f121faa2a2cf294afb57f9e5f1b0a72424b80ca99419af67"
    );
    assert_hash(
        n.first_name("Jose"),
        "1ec4ed037766aa181d8840ad04b9fc6e195fd37dedc04c98a5767a67d3758ece",
    );
    let obrien = n.last_name("O'Brien").unwrap();
    assert_eq!(
        obrien.as_str(),
        "b4cb6cb33fe4b865868de825023a1e2790dc12ac01ecc8d7c5afe8254071c8ba"
    );
    assert_ne!(
        obrien.as_str(),
        "65b87174be3b1b122e2b0929f0b84888637d31a4a83bb96a860bcff411f5e668"
    );
    assert_eq!(n.last_name("O’Brien").unwrap(), obrien);
    let maryjane = "f08f448a5e7a9dc3619bb7c129f6a7d5fc6af002cea17ad71dfdc1c68f4d4e0e";
    assert_hash(n.first_name("Mary Jane"), maryjane);
    assert_hash(n.first_name("Mary-Jane"), maryjane);
}

#[test]
fn location_vectors() {
    let n = br();
    assert_hash(
        n.city("São Paulo"),
        "3eda1428ae1aece064071f8d40f08fe2bc59ffa66c171a163caf15122ec4d7f0",
    );
    assert_hash(
        n.city("Sa\u{303}o Paulo 2"),
        "3eda1428ae1aece064071f8d40f08fe2bc59ffa66c171a163caf15122ec4d7f0",
    );
    assert_hash(
        n.city("Sao Paulo"),
        "8f7f2f7ccd3f2898cf4850905346e8fb333d00aac1c974f8f37326e068cf7b1e",
    );
    let sp = "be18b85f77fc024db379acf19e8a1ce62307ab7bb1bca395389ecfc2dafaf741";
    assert_hash(n.state("SP"), sp);
    assert_hash(n.state("São Paulo"), sp);
    assert_hash(n.state("s.p."), sp);
    let cep = "9a4a139dfbfcd2fc89a3cb4302dad65a35abd8d29a56c09a962b69c5cf3bca40";
    assert_hash(n.zip("01310-100"), cep);
    assert_hash(n.zip("01.310-100"), cep);
    let br_hash = "885036a0da3dff3c3e05bc79bf49382b12bc5098514ed57ce0875aba1aa2c40d";
    assert_hash(n.country("Brazil"), br_hash);
    assert_hash(n.country("BR"), br_hash);
    assert_hash(n.country("Brasil"), br_hash);
}

#[test]
fn states_map_names_and_never_truncate() {
    let n = br();
    let st = |s: &str| n.state(s).unwrap();
    assert_eq!(st("Rio Grande do Sul"), Hashed::of("rs"));
    assert_eq!(st("california"), Hashed::of("ca"));
    assert_eq!(st("New York"), Hashed::of("ny"));
    assert_eq!(st("Québec"), Hashed::of("qc"));
    // Unknown long name: lowercase, no spaces/punctuation, accents kept, not cut to 2 letters.
    assert_eq!(st("Île-de-France"), Hashed::of("îledefrance"));
}

#[test]
fn zip_rules() {
    assert_eq!(us().zip("94025-1234").unwrap(), Hashed::of("94025"));
    assert_eq!(us().zip("K1A 0B1").unwrap(), Hashed::of("k1a0b1"));
    // Only US tenants cut to 5 digits.
    assert_eq!(br().zip("01310-100").unwrap(), Hashed::of("01310100"));
    assert_eq!(br().zip("M1 1AE").unwrap(), Hashed::of("m11ae"));
}

#[test]
fn country_rules() {
    let n = br();
    for (raw, code) in [
        ("us", "us"),
        ("USA", "us"),
        ("Estados Unidos", "us"),
        ("EE.UU.", "us"),
        ("México", "mx"),
        ("UK", "gb"),
        ("Portugal", "pt"),
        (" pt ", "pt"),
    ] {
        assert_eq!(n.country(raw).unwrap(), Hashed::of(code), "{raw}");
    }
    assert_eq!(n.country("Atlantis"), Err(PiiError::UnknownCountry));
    assert_eq!(n.country("XX"), Err(PiiError::UnknownCountry));
    assert_eq!(n.country("--"), Err(PiiError::Empty(Field::Country)));
}

#[test]
fn date_of_birth_vectors() {
    assert_hash(br().date_of_birth("16/02/1997"), DB_19970216);
    assert_hash(br().date_of_birth("1997-02-16"), DB_19970216);
    // Never month-first for BR: `2/16/1997` is an error, `02/03/1997` is 2 March.
    assert!(br().date_of_birth("2/16/1997").is_err());
    assert_eq!(
        br().date_of_birth("02/03/1997").unwrap(),
        Hashed::of("19970302")
    );
    assert_eq!(
        Normalizer::new("PT")
            .unwrap()
            .date_of_birth("02/03/1997")
            .unwrap(),
        Hashed::of("19970302")
    );
}

#[test]
fn gender_vectors() {
    let n = br();
    let f = "252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111";
    let m = "62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a";
    for raw in ["Female", "F", "feminino", "Mulher", "mujer"] {
        assert_hash(n.gender(raw), f);
    }
    for raw in ["m", "Male", "Masculino", "homem", "HOMBRE"] {
        assert_hash(n.gender(raw), m);
    }
    assert_eq!(n.gender("other"), Err(PiiError::UnknownGender));
}

#[test]
fn external_id_vectors() {
    let h = br().external_id(" CRM-000123 ").unwrap();
    assert_eq!(
        h.as_str(),
        "bb9edd468efd9eb23a23da18bbde007bbc1af81ca297634fdc29a616661bdb09"
    );
    assert_ne!(
        h.as_str(),
        "c4b4d9756afd66a87d001d43868ac50831a88c9ba46845fd10edb7debd865de0"
    );
}

#[test]
fn already_hashed_values_pass_through_lowercased() {
    let n = br();
    let upper = format!("  {}  ", PH_5511987654321.to_uppercase());
    let all: [NormFn; 11] = [
        Normalizer::email,
        Normalizer::phone,
        Normalizer::first_name,
        Normalizer::last_name,
        Normalizer::city,
        Normalizer::state,
        Normalizer::zip,
        Normalizer::country,
        Normalizer::date_of_birth,
        Normalizer::gender,
        Normalizer::external_id,
    ];
    for f in all {
        assert_hash(f(&n, &upper), PH_5511987654321);
        assert_hash(f(&n, PH_5511987654321), PH_5511987654321);
    }
    assert!(is_already_hashed(&upper));
    // MD5-length hex is hashed, not passed through (see module docs).
    let md5 = "5d41402abc4b2a76b9719d911017c592";
    assert!(!is_already_hashed(md5));
    assert_eq!(n.external_id(md5).unwrap().as_str(), sha256_hex(md5));
    assert!(!is_already_hashed(&PH_5511987654321[1..]));
    assert!(!is_already_hashed(&format!("{}g", &PH_5511987654321[1..])));
    assert_eq!(
        n.phone_digits(PH_5511987654321),
        Err(PiiError::AlreadyHashed(Field::Phone))
    );
}

#[test]
fn hashed_serializes_as_string_and_refuses_raw_on_deserialize() {
    let h = br().email("a@b.co").unwrap();
    let json = serde_json::to_string(&h).unwrap();
    assert_eq!(json, format!("\"{}\"", h.as_str()));
    assert_eq!(serde_json::from_str::<Hashed>(&json).unwrap(), h);
    assert!(serde_json::from_str::<Hashed>("\"maria@example.com\"").is_err());
    assert_eq!(h.to_string(), h.as_str());
}

#[test]
fn invalid_emails() {
    let n = br();
    for (raw, reason) in [
        ("maria.example.com", "email has no @"),
        ("@example.com", "email has nothing before @"),
        ("maria@example", "email domain is not a dotted name"),
        ("maria@.com", "email domain is not a dotted name"),
        ("maria silva@example.com", "email contains whitespace"),
    ] {
        assert_eq!(
            n.email(raw),
            Err(PiiError::InvalidEmail { reason }),
            "{raw}"
        );
    }
    assert_eq!(n.email("   "), Err(PiiError::Empty(Field::Email)));
    assert!(n.email("maria+crm@mail.example.com.br").is_ok());
}

#[test]
fn invalid_phones() {
    let n = br();
    assert_eq!(
        n.phone("98765-4321"),
        Err(PiiError::PhoneUnparseable {
            region: "BR".into()
        })
    );
    assert_eq!(
        n.phone("98765-4321").unwrap_err().to_string(),
        "phone has no country code and could not be parsed for region BR"
    );
    assert!(n.phone("not a phone").is_err());
    assert_eq!(n.phone(""), Err(PiiError::Empty(Field::Phone)));
    assert_eq!(
        n.phone("213709100187796@lid"),
        Err(PiiError::PhoneIsWhatsAppLid)
    );
}

#[test]
fn empty_after_cleaning_is_an_error() {
    let n = br();
    assert_eq!(n.first_name(" - "), Err(PiiError::Empty(Field::FirstName)));
    assert_eq!(n.city("123"), Err(PiiError::Empty(Field::City)));
    assert_eq!(n.zip(" -- "), Err(PiiError::Empty(Field::Zip)));
    assert_eq!(
        n.external_id("\u{FEFF} "),
        Err(PiiError::Empty(Field::ExternalId))
    );
}

#[test]
fn region_parsing() {
    assert_eq!(Normalizer::new("BR").unwrap().default_region(), "BR");
    assert_eq!(Normalizer::new(" us ").unwrap().default_region(), "US");
    for bad in ["", "Brazil", "ZZ", "12"] {
        assert_eq!(Normalizer::new(bad).unwrap_err(), PiiError::InvalidRegion);
    }
}

#[test]
fn error_messages_never_contain_the_raw_value() {
    let n = br();
    let cases: [(NormFn, &str); 12] = [
        (Normalizer::email, "maria.silva.example"),
        (Normalizer::email, "joana d'arc@example.com"),
        (Normalizer::email, "someone@localhost"),
        (Normalizer::phone, "98765-4321"),
        (Normalizer::phone, "+999 4455 6677"),
        (Normalizer::phone, "joana@example.com"),
        (Normalizer::phone, "1122334455@lid"),
        (Normalizer::country, "Atlantis Kingdom"),
        (Normalizer::date_of_birth, "31/02/1997"),
        (Normalizer::date_of_birth, "2/16/1997"),
        (Normalizer::date_of_birth, "16/02/97"),
        (Normalizer::gender, "nonbinary"),
    ];
    for (f, raw) in cases {
        let msg = match f(&n, raw) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error for case {raw:?}"),
        };
        let lower = msg.to_lowercase();
        assert!(!lower.contains(&raw.to_lowercase()), "{msg}");
        // No recognisable fragment either: any 4+ character run of digits or of letters.
        for token in raw
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| t.len() >= 4)
        {
            assert!(
                !lower.contains(&token.to_lowercase()) || ["phone", "email"].contains(&token),
                "{msg:?} contains {token:?}"
            );
        }
    }
}

#[test]
fn split_full_name_cases() {
    assert_eq!(
        split_full_name("Maria da Silva"),
        (Some("Maria".into()), Some("da Silva".into()))
    );
    assert_eq!(
        split_full_name("  João   Pedro  Souza "),
        (Some("João".into()), Some("Pedro Souza".into()))
    );
    assert_eq!(split_full_name("Cher"), (Some("Cher".into()), None));
    assert_eq!(split_full_name("   "), (None, None));
    assert_eq!(split_full_name(""), (None, None));
}

fn all_normalizers() -> Vec<(&'static str, NormFn)> {
    vec![
        ("email", Normalizer::email),
        ("phone", Normalizer::phone),
        ("first_name", Normalizer::first_name),
        ("last_name", Normalizer::last_name),
        ("city", Normalizer::city),
        ("state", Normalizer::state),
        ("zip", Normalizer::zip),
        ("country", Normalizer::country),
        ("date_of_birth", Normalizer::date_of_birth),
        ("gender", Normalizer::gender),
        ("external_id", Normalizer::external_id),
    ]
}

fn check_all(input: &str) -> Result<(), TestCaseError> {
    for region in ["BR", "US"] {
        let n = Normalizer::new(region).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (name, f) in all_normalizers() {
            if let Ok(h) = f(&n, input) {
                let s = h.as_str();
                prop_assert!(
                    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                    "{name} produced {s}"
                );
            }
        }
        if let Ok(d) = n.phone_digits(input) {
            prop_assert!((6..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn no_panic_on_arbitrary_strings(s in any::<String>()) {
        check_all(&s)?;
    }

    #[test]
    fn no_panic_on_phone_like_strings(s in "[+0-9 ().\\-#x@:a-z]{0,40}") {
        check_all(&s)?;
    }

    #[test]
    fn no_panic_on_digit_strings(plus in proptest::bool::ANY, s in "[0-9]{0,20}") {
        let input = if plus { format!("+{s}") } else { s };
        check_all(&input)?;
        check_all(&format!("{input}@s.whatsapp.net"))?;
    }

    #[test]
    fn no_panic_on_date_like_strings(s in "[0-9]{0,5}[-/. ]?[0-9]{0,5}[-/. ]?[0-9]{0,6}") {
        check_all(&s)?;
    }

    #[test]
    fn br_mobiles_never_change_meaning(area in 11u32..=99, rest in 10_000_000u32..=99_999_999) {
        let national = format!("({area}) 9{rest}");
        if let Ok(d) = br().phone_digits(&national) {
            prop_assert_eq!(d, format!("55{area}9{rest}"));
        }
    }

    #[test]
    fn br_mobiles_in_real_area_codes_parse(
        area in prop::sample::select(vec![11u32, 21, 31, 41, 48, 51, 55, 61, 71, 81, 85, 91]),
        rest in 60_000_000u32..=99_999_999,
        trunk in proptest::bool::ANY,
    ) {
        let national = format!("{}{area} 9{rest}", if trunk { "0" } else { "" });
        prop_assert_eq!(br().phone_digits(&national).ok(), Some(format!("55{area}9{rest}")));
    }
}

#[test]
fn google_emails_drop_gmail_dots_and_plus_tags_only_for_gmail() {
    let n = Normalizer::new("BR").unwrap();
    // Google's documented examples (Data Manager API, "Format user data").
    assert_eq!(
        n.google_email("cloudy.sanfrancisco+shopping@gmail.com")
            .unwrap(),
        n.email("cloudysanfrancisco@gmail.com").unwrap()
    );
    assert_eq!(
        n.google_email(" J.O.H.N@GoogleMail.com ").unwrap(),
        n.email("john@googlemail.com").unwrap()
    );
    assert_eq!(
        n.google_email("user.name+NYC@Example.com").unwrap(),
        n.email("user.name+nyc@example.com").unwrap()
    );
    assert!(n.google_email("+tag@gmail.com").is_err());
    assert!(n.google_email("not an email").is_err());
    let hex = crate::pii::sha256_hex("x@gmail.com");
    assert_eq!(
        n.google_email(&hex).unwrap().as_str(),
        hex,
        "a digest is not hashed twice"
    );
}

/// Found by the `pii_phone` fuzz target: with region BR, an invalid Brazilian number written
/// with `+55` was re-read through Brazil's "00 + carrier code" rule as `+95…` (Myanmar). That
/// rule is for numbers dialled with `00`; a `+` already names the country.
#[test]
fn a_plus_number_is_never_re_read_as_a_carrier_prefixed_one() {
    let digits = br().phone_digits("+55 95 58675-4321").unwrap();
    assert!(digits.starts_with("55"), "{digits}");
    assert_eq!(br().phone_digits(&format!("+{digits}")).unwrap(), digits);
    // Dialled with 00 + carrier 21, the rule still applies.
    assert_eq!(
        br().phone_digits("0021 1 650 555 0100").unwrap(),
        "16505550100"
    );
}

/// Found by the `pii_phone` fuzz target: an invalid international number was kept with one
/// trunk 0 dropped, and that result was itself a valid number spelled differently, so
/// normalising the output again changed it (two hashes for one number).
#[test]
fn an_invalid_international_number_normalises_to_a_fixed_point() {
    let digits = br().phone_digits("00 5 30 0 02410043").unwrap();
    assert_eq!(br().phone_digits(&format!("+{digits}")).unwrap(), digits);
}
