//! Country and state tables. Keys are [`super::text::lookup_key`] forms (accent-folded, lowercase,
//! letters and digits only); values are lowercase ISO codes.

/// Every officially assigned ISO 3166-1 alpha-2 code (249), lowercase. Meta wants exactly these.
pub(crate) const ISO_ALPHA2: &[&str] = &[
    "ad", "ae", "af", "ag", "ai", "al", "am", "ao", "aq", "ar", "as", "at", "au", "aw", "ax", "az",
    "ba", "bb", "bd", "be", "bf", "bg", "bh", "bi", "bj", "bl", "bm", "bn", "bo", "bq", "br", "bs",
    "bt", "bv", "bw", "by", "bz", "ca", "cc", "cd", "cf", "cg", "ch", "ci", "ck", "cl", "cm", "cn",
    "co", "cr", "cu", "cv", "cw", "cx", "cy", "cz", "de", "dj", "dk", "dm", "do", "dz", "ec", "ee",
    "eg", "eh", "er", "es", "et", "fi", "fj", "fk", "fm", "fo", "fr", "ga", "gb", "gd", "ge", "gf",
    "gg", "gh", "gi", "gl", "gm", "gn", "gp", "gq", "gr", "gs", "gt", "gu", "gw", "gy", "hk", "hm",
    "hn", "hr", "ht", "hu", "id", "ie", "il", "im", "in", "io", "iq", "ir", "is", "it", "je", "jm",
    "jo", "jp", "ke", "kg", "kh", "ki", "km", "kn", "kp", "kr", "kw", "ky", "kz", "la", "lb", "lc",
    "li", "lk", "lr", "ls", "lt", "lu", "lv", "ly", "ma", "mc", "md", "me", "mf", "mg", "mh", "mk",
    "ml", "mm", "mn", "mo", "mp", "mq", "mr", "ms", "mt", "mu", "mv", "mw", "mx", "my", "mz", "na",
    "nc", "ne", "nf", "ng", "ni", "nl", "no", "np", "nr", "nu", "nz", "om", "pa", "pe", "pf", "pg",
    "ph", "pk", "pl", "pm", "pn", "pr", "ps", "pt", "pw", "py", "qa", "re", "ro", "rs", "ru", "rw",
    "sa", "sb", "sc", "sd", "se", "sg", "sh", "si", "sj", "sk", "sl", "sm", "sn", "so", "sr", "ss",
    "st", "sv", "sx", "sy", "sz", "tc", "td", "tf", "tg", "th", "tj", "tk", "tl", "tm", "tn", "to",
    "tr", "tt", "tv", "tw", "tz", "ua", "ug", "um", "us", "uy", "uz", "va", "vc", "ve", "vg", "vi",
    "vn", "vu", "wf", "ws", "ye", "yt", "za", "zm", "zw",
];

/// Country names (English, Portuguese, Spanish), common alpha-3 codes and everyday aliases.
/// Not exhaustive: it covers the countries CRM users in the Americas and Europe actually type;
/// anything else must be given as an ISO code.
const COUNTRY_ALIASES: &[(&str, &str)] = &[
    // Americas
    ("brazil", "br"),
    ("brasil", "br"),
    ("bra", "br"),
    ("republicafederativadobrasil", "br"),
    ("unitedstates", "us"),
    ("unitedstatesofamerica", "us"),
    ("usa", "us"),
    ("eua", "us"),
    ("estadosunidos", "us"),
    ("estadosunidosdaamerica", "us"),
    ("estadosunidosdeamerica", "us"),
    ("eeuu", "us"),
    ("canada", "ca"),
    ("can", "ca"),
    ("mexico", "mx"),
    ("mex", "mx"),
    ("argentina", "ar"),
    ("arg", "ar"),
    ("chile", "cl"),
    ("chl", "cl"),
    ("colombia", "co"),
    ("col", "co"),
    ("peru", "pe"),
    ("per", "pe"),
    ("uruguay", "uy"),
    ("uruguai", "uy"),
    ("ury", "uy"),
    ("paraguay", "py"),
    ("paraguai", "py"),
    ("pry", "py"),
    ("bolivia", "bo"),
    ("bol", "bo"),
    ("ecuador", "ec"),
    ("equador", "ec"),
    ("ecu", "ec"),
    ("venezuela", "ve"),
    ("ven", "ve"),
    ("guyana", "gy"),
    ("guiana", "gy"),
    ("suriname", "sr"),
    ("surinam", "sr"),
    ("costarica", "cr"),
    ("panama", "pa"),
    ("guatemala", "gt"),
    ("honduras", "hn"),
    ("elsalvador", "sv"),
    ("nicaragua", "ni"),
    ("cuba", "cu"),
    ("haiti", "ht"),
    ("dominicanrepublic", "do"),
    ("republicadominicana", "do"),
    ("puertorico", "pr"),
    ("portorico", "pr"),
    ("jamaica", "jm"),
    // Europe
    ("portugal", "pt"),
    ("prt", "pt"),
    ("spain", "es"),
    ("espanha", "es"),
    ("espana", "es"),
    ("esp", "es"),
    ("unitedkingdom", "gb"),
    ("uk", "gb"),
    ("greatbritain", "gb"),
    ("gbr", "gb"),
    ("reinounido", "gb"),
    ("england", "gb"),
    ("inglaterra", "gb"),
    ("scotland", "gb"),
    ("escocia", "gb"),
    ("wales", "gb"),
    ("northernireland", "gb"),
    ("france", "fr"),
    ("franca", "fr"),
    ("francia", "fr"),
    ("fra", "fr"),
    ("germany", "de"),
    ("alemanha", "de"),
    ("alemania", "de"),
    ("deutschland", "de"),
    ("deu", "de"),
    ("italy", "it"),
    ("italia", "it"),
    ("ita", "it"),
    ("ireland", "ie"),
    ("irlanda", "ie"),
    ("netherlands", "nl"),
    ("holland", "nl"),
    ("holanda", "nl"),
    ("paisesbaixos", "nl"),
    ("paisesbajos", "nl"),
    ("nld", "nl"),
    ("belgium", "be"),
    ("belgica", "be"),
    ("switzerland", "ch"),
    ("suica", "ch"),
    ("suiza", "ch"),
    ("austria", "at"),
    ("luxembourg", "lu"),
    ("luxemburgo", "lu"),
    ("sweden", "se"),
    ("suecia", "se"),
    ("norway", "no"),
    ("noruega", "no"),
    ("denmark", "dk"),
    ("dinamarca", "dk"),
    ("finland", "fi"),
    ("finlandia", "fi"),
    ("poland", "pl"),
    ("polonia", "pl"),
    ("greece", "gr"),
    ("grecia", "gr"),
    ("czechia", "cz"),
    ("czechrepublic", "cz"),
    ("tchequia", "cz"),
    ("republicacheca", "cz"),
    ("chequia", "cz"),
    ("hungary", "hu"),
    ("hungria", "hu"),
    ("romania", "ro"),
    ("russia", "ru"),
    ("russianfederation", "ru"),
    ("rusia", "ru"),
    ("ukraine", "ua"),
    ("ucrania", "ua"),
    ("turkey", "tr"),
    ("turkiye", "tr"),
    ("turquia", "tr"),
    // Africa, Asia, Oceania
    ("angola", "ao"),
    ("mozambique", "mz"),
    ("mocambique", "mz"),
    ("capeverde", "cv"),
    ("caboverde", "cv"),
    ("southafrica", "za"),
    ("africadosul", "za"),
    ("sudafrica", "za"),
    ("nigeria", "ng"),
    ("egypt", "eg"),
    ("egito", "eg"),
    ("egipto", "eg"),
    ("morocco", "ma"),
    ("marrocos", "ma"),
    ("marruecos", "ma"),
    ("israel", "il"),
    ("unitedarabemirates", "ae"),
    ("uae", "ae"),
    ("emiradosarabesunidos", "ae"),
    ("saudiarabia", "sa"),
    ("arabiasaudita", "sa"),
    ("china", "cn"),
    ("chn", "cn"),
    ("japan", "jp"),
    ("japao", "jp"),
    ("japon", "jp"),
    ("jpn", "jp"),
    ("southkorea", "kr"),
    ("korea", "kr"),
    ("coreiadosul", "kr"),
    ("coreadelsur", "kr"),
    ("india", "in"),
    ("ind", "in"),
    ("hongkong", "hk"),
    ("taiwan", "tw"),
    ("singapore", "sg"),
    ("singapura", "sg"),
    ("singapur", "sg"),
    ("philippines", "ph"),
    ("filipinas", "ph"),
    ("indonesia", "id"),
    ("thailand", "th"),
    ("tailandia", "th"),
    ("vietnam", "vn"),
    ("vietna", "vn"),
    ("malaysia", "my"),
    ("malasia", "my"),
    ("australia", "au"),
    ("aus", "au"),
    ("newzealand", "nz"),
    ("novazelandia", "nz"),
    ("nuevazelanda", "nz"),
];

/// Brazilian states, US states/DC/territories and Canadian provinces. Names are unique across
/// the three tables (a test checks it), so no default region is needed to look them up.
const STATE_NAMES: &[(&str, &str)] = &[
    // Brazil (IBGE codes)
    ("acre", "ac"),
    ("alagoas", "al"),
    ("amapa", "ap"),
    ("amazonas", "am"),
    ("bahia", "ba"),
    ("ceara", "ce"),
    ("distritofederal", "df"),
    ("espiritosanto", "es"),
    ("goias", "go"),
    ("maranhao", "ma"),
    ("matogrosso", "mt"),
    ("matogrossodosul", "ms"),
    ("minasgerais", "mg"),
    ("para", "pa"),
    ("paraiba", "pb"),
    ("parana", "pr"),
    ("pernambuco", "pe"),
    ("piaui", "pi"),
    ("riodejaneiro", "rj"),
    ("riograndedonorte", "rn"),
    ("riograndedosul", "rs"),
    ("rondonia", "ro"),
    ("roraima", "rr"),
    ("santacatarina", "sc"),
    ("saopaulo", "sp"),
    ("sergipe", "se"),
    ("tocantins", "to"),
    // United States (ANSI/USPS codes)
    ("alabama", "al"),
    ("alaska", "ak"),
    ("arizona", "az"),
    ("arkansas", "ar"),
    ("california", "ca"),
    ("colorado", "co"),
    ("connecticut", "ct"),
    ("delaware", "de"),
    ("florida", "fl"),
    ("georgia", "ga"),
    ("hawaii", "hi"),
    ("idaho", "id"),
    ("illinois", "il"),
    ("indiana", "in"),
    ("iowa", "ia"),
    ("kansas", "ks"),
    ("kentucky", "ky"),
    ("louisiana", "la"),
    ("maine", "me"),
    ("maryland", "md"),
    ("massachusetts", "ma"),
    ("michigan", "mi"),
    ("minnesota", "mn"),
    ("mississippi", "ms"),
    ("missouri", "mo"),
    ("montana", "mt"),
    ("nebraska", "ne"),
    ("nevada", "nv"),
    ("newhampshire", "nh"),
    ("newjersey", "nj"),
    ("newmexico", "nm"),
    ("newyork", "ny"),
    ("northcarolina", "nc"),
    ("northdakota", "nd"),
    ("ohio", "oh"),
    ("oklahoma", "ok"),
    ("oregon", "or"),
    ("pennsylvania", "pa"),
    ("rhodeisland", "ri"),
    ("southcarolina", "sc"),
    ("southdakota", "sd"),
    ("tennessee", "tn"),
    ("texas", "tx"),
    ("utah", "ut"),
    ("vermont", "vt"),
    ("virginia", "va"),
    ("washington", "wa"),
    ("westvirginia", "wv"),
    ("wisconsin", "wi"),
    ("wyoming", "wy"),
    ("districtofcolumbia", "dc"),
    ("washingtondc", "dc"),
    ("puertorico", "pr"),
    ("guam", "gu"),
    ("usvirginislands", "vi"),
    ("americansamoa", "as"),
    ("northernmarianaislands", "mp"),
    // Canada
    ("alberta", "ab"),
    ("britishcolumbia", "bc"),
    ("manitoba", "mb"),
    ("newbrunswick", "nb"),
    ("newfoundlandandlabrador", "nl"),
    ("newfoundland", "nl"),
    ("novascotia", "ns"),
    ("northwestterritories", "nt"),
    ("nunavut", "nu"),
    ("ontario", "on"),
    ("princeedwardisland", "pe"),
    ("quebec", "qc"),
    ("saskatchewan", "sk"),
    ("yukon", "yt"),
];

#[cfg(test)]
fn is_iso_alpha2(code: &str) -> bool {
    ISO_ALPHA2.binary_search(&code).is_ok()
}

/// ISO code for a country given as a code, an alpha-3 code or a name (lookup key form).
pub(crate) fn country_code(key: &str) -> Option<&'static str> {
    if key.len() == 2 {
        if let Ok(i) = ISO_ALPHA2.binary_search(&key) {
            return ISO_ALPHA2.get(i).copied();
        }
    }
    COUNTRY_ALIASES
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, code)| *code)
}

/// Two-letter code for a full state/province name (lookup key form).
pub(crate) fn state_code(key: &str) -> Option<&'static str> {
    STATE_NAMES
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, code)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn iso_list_is_sorted_complete_and_unique() {
        assert_eq!(ISO_ALPHA2.len(), 249);
        assert!(ISO_ALPHA2.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn aliases_point_at_real_codes_and_are_unique() {
        let mut seen = HashSet::new();
        for (name, code) in COUNTRY_ALIASES {
            assert!(is_iso_alpha2(code), "{name} → {code}");
            assert!(seen.insert(*name), "duplicate alias {name}");
            // An alias must not shadow a real ISO code (e.g. "uk" is fine, "us" would not be).
            assert!(name.len() != 2 || !is_iso_alpha2(name), "{name}");
        }
    }

    #[test]
    fn state_names_are_unique_and_codes_two_letters() {
        let mut seen = HashSet::new();
        for (name, code) in STATE_NAMES {
            assert_eq!(code.len(), 2);
            assert!(seen.insert(*name), "duplicate state name {name}");
        }
        assert_eq!(
            STATE_NAMES.iter().filter(|(_, c)| c.len() == 2).count(),
            STATE_NAMES.len()
        );
    }
}
