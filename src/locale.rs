//! The language of texts agents and marketers read (chat alerts, event catalog).

use std::fmt;
use std::str::FromStr;

/// A supported language. `pt` (Brazilian Portuguese) is the default because the CRMs this
/// was built for run in Brazil.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    Pt,
    En,
    Es,
}

impl Locale {
    pub const ALL: [Locale; 3] = [Locale::Pt, Locale::En, Locale::Es];

    pub fn code(self) -> &'static str {
        match self {
            Locale::Pt => "pt",
            Locale::En => "en",
            Locale::Es => "es",
        }
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown locale {0:?}: expected one of pt, en, es")]
pub struct UnknownLocale(String);

impl FromStr for Locale {
    type Err = UnknownLocale;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Accept regional tags such as pt-BR or es_MX: only the language matters here.
        let lang = s
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match lang.as_str() {
            "pt" => Ok(Locale::Pt),
            "en" => Ok(Locale::En),
            "es" => Ok(Locale::Es),
            _ => Err(UnknownLocale(s.to_string())),
        }
    }
}

/// A text in every supported language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Localized {
    pub pt: &'static str,
    pub en: &'static str,
    pub es: &'static str,
}

impl Localized {
    pub fn get(&self, locale: Locale) -> &'static str {
        match locale {
            Locale::Pt => self.pt,
            Locale::En => self.en,
            Locale::Es => self.es,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_regional_tags_and_rejects_unknown() {
        assert_eq!("pt-BR".parse::<Locale>().unwrap(), Locale::Pt);
        assert_eq!("es_MX".parse::<Locale>().unwrap(), Locale::Es);
        assert_eq!(" EN ".parse::<Locale>().unwrap(), Locale::En);
        assert!("fr".parse::<Locale>().is_err());
    }
}
