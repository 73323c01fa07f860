//! Date of birth → `YYYYMMDD`.
//!
//! Meta's SDK helper guesses month-first whenever a date is ambiguous, which turns a Brazilian
//! `02/03/1997` (2 March) into 3 February. We never guess: the order of a numeric date comes
//! from the tenant's region, and a date that is invalid in that order is an error, not a cue
//! to try the other order.

use chrono::{NaiveDate, Utc};

use super::PiiError;

/// How a `a/b/yyyy` date is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateOrder {
    DayFirst,
    MonthFirst,
}

impl DateOrder {
    /// Month-first only where that is the national convention: the US and the territories that
    /// follow US usage. Everything else (Brazil, Latin America, Europe…) is day-first.
    pub(crate) fn for_region(region: &str) -> Self {
        match region {
            "US" | "PR" | "GU" | "VI" | "AS" | "MP" | "UM" => DateOrder::MonthFirst,
            _ => DateOrder::DayFirst,
        }
    }
}

fn invalid(reason: &'static str) -> PiiError {
    PiiError::InvalidDateOfBirth { reason }
}

/// Parses one numeric component of at most 4 ASCII digits (so it can never overflow).
fn number(part: &str) -> Result<u32, PiiError> {
    if part.is_empty() || part.len() > 4 || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "date of birth is not in a recognised numeric format",
        ));
    }
    part.parse()
        .map_err(|_| invalid("date of birth is not in a recognised numeric format"))
}

/// `canon` is the canonical (trimmed, lowercased) input. Returns `YYYYMMDD`.
pub(crate) fn normalize(canon: &str, order: DateOrder) -> Result<String, PiiError> {
    normalize_at(canon, order, Utc::now().date_naive())
}

pub(crate) fn normalize_at(
    canon: &str,
    order: DateOrder,
    today: NaiveDate,
) -> Result<String, PiiError> {
    // Drop a time part (`1997-02-16T00:00:00Z`, `16/02/1997 00:00`): CRMs often store a timestamp.
    let date = canon
        .split(|c: char| c.is_whitespace() || c == 't')
        .next()
        .unwrap_or_default();

    let (y, m, d) = if date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()) {
        // Already YYYYMMDD (what Meta wants). DDMMYYYY is not accepted: it is indistinguishable.
        let (y, rest) = date.split_at(4);
        let (m, d) = rest.split_at(2);
        (number(y)?, number(m)?, number(d)?)
    } else {
        let parts: Vec<&str> = date.split(['-', '/', '.']).collect();
        let [a, b, c] = parts.as_slice() else {
            return Err(invalid(
                "date of birth is not in a recognised numeric format",
            ));
        };
        if a.len() == 4 {
            // ISO order is unambiguous whatever the region.
            (number(a)?, number(b)?, number(c)?)
        } else if c.len() == 4 {
            match order {
                DateOrder::DayFirst => (number(c)?, number(b)?, number(a)?),
                DateOrder::MonthFirst => (number(c)?, number(a)?, number(b)?),
            }
        } else {
            // `16/02/97`: the century would be a guess.
            return Err(invalid("date of birth must have a 4-digit year"));
        }
    };

    let Some(dob) = NaiveDate::from_ymd_opt(y as i32, m, d) else {
        return Err(invalid("date of birth is not a real calendar date"));
    };
    // Meta's documented range: year 1900 to the current year.
    if y < 1900 || dob > today {
        return Err(invalid("date of birth is outside 1900 to today"));
    }
    Ok(format!("{y:04}{m:02}{d:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
    }

    fn br(s: &str) -> Result<String, PiiError> {
        normalize_at(s, DateOrder::DayFirst, today())
    }

    fn us(s: &str) -> Result<String, PiiError> {
        normalize_at(s, DateOrder::MonthFirst, today())
    }

    #[test]
    fn day_first_for_br() {
        assert_eq!(br("16/02/1997").unwrap(), "19970216");
        assert_eq!(br("02/03/1997").unwrap(), "19970302");
        assert_eq!(br("2.3.1997").unwrap(), "19970302");
        assert_eq!(br("16-02-1997 00:00").unwrap(), "19970216");
        // Month-first input is rejected, never reinterpreted.
        assert!(br("2/16/1997").is_err());
    }

    #[test]
    fn month_first_for_us() {
        assert_eq!(us("2/16/1997").unwrap(), "19970216");
        assert_eq!(us("02/03/1997").unwrap(), "19970203");
        assert!(us("16/02/1997").is_err());
    }

    #[test]
    fn iso_and_compact_forms_are_region_independent() {
        for f in [br, us] {
            assert_eq!(f("1997-02-16").unwrap(), "19970216");
            assert_eq!(f("1997-02-16t10:00:00z").unwrap(), "19970216");
            assert_eq!(f("1997/2/16").unwrap(), "19970216");
            assert_eq!(f("19970216").unwrap(), "19970216");
        }
    }

    #[test]
    fn rejects_impossible_and_out_of_range_dates() {
        assert!(br("31/02/1997").is_err());
        assert!(br("01/01/1899").is_err());
        assert!(br("02/06/2026").is_err()); // tomorrow
        assert_eq!(br("01/06/2026").unwrap(), "20260601");
        assert!(br("16/02/97").is_err());
        assert!(br("16/02").is_err());
        assert!(br("1997-02-16-01").is_err());
        assert!(br("abc").is_err());
        assert!(br("99999/1/1").is_err());
    }
}
