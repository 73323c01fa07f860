//! "Match-key coverage": our own 0–10 heuristic for how well an event can be matched to a Meta
//! account. **It is not Meta's Event Match Quality (EMQ)** and must not be labelled as such.
//!
//! Meta shows EMQ only for website events; for the business-messaging, CRM and offline events
//! this worker sends, Events Manager shows no score (Meta's Conversions API best-practices page,
//! <https://developers.facebook.com/documentation/ads-commerce/conversions-api/best-practices>). This proxy
//! gives the UI something to show per event, from which keys were present:
//!
//! | key | points | why |
//! |---|---|---|
//! | click id (`ctwa_clid`, `fbc` or `lead_id`, counted once) | 3 | ties the event to the exact ad click; Meta ranks click ids and `lead_id` highest |
//! | `em` | 3 | "highest" priority in Meta's CRM guidance |
//! | `ph` | 3 | "high" priority; for WhatsApp leads it is almost always present |
//! | `external_id` | 2 | stable advertiser id; helps only when the same id is sent from other channels |
//! | `client_ip_address` + `client_user_agent` (both) | 2 | a pair: one without the other is weak |
//! | `fn` + `ln` (both) | 1 | useful only together, and only alongside stronger keys |
//! | `ct`, `st`, `zp`, `country`, `db`, `ge` | 0.5 each | narrow a match, never make one |
//!
//! The sum is capped at 10. See `docs/match-quality.md` for how to read it.

/// The highest score.
pub const MAX_SCORE: f32 = 10.0;

/// Which match keys an event carries (present and valid after normalisation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchKeys {
    /// `ctwa_clid` or `fbc`.
    pub click_id: bool,
    /// Lead Ads `lead_id`; shares the click-id points (an event has one origin).
    pub lead_id: bool,
    pub em: bool,
    pub ph: bool,
    pub external_id: bool,
    pub client_ip: bool,
    pub user_agent: bool,
    pub first_name: bool,
    pub last_name: bool,
    pub city: bool,
    pub state: bool,
    pub zip: bool,
    pub country: bool,
    pub date_of_birth: bool,
    pub gender: bool,
}

/// One line of the score: a key (or key pair) and the points it earned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Contribution {
    pub key: &'static str,
    pub points: f32,
}

/// The points each present key earns, before the cap; keys that earn nothing are left out.
pub fn contributions(keys: &MatchKeys) -> Vec<Contribution> {
    let k = keys;
    let rules: [(&'static str, bool, f32); 12] = [
        ("click_id", k.click_id || k.lead_id, 3.0),
        ("em", k.em, 3.0),
        ("ph", k.ph, 3.0),
        ("external_id", k.external_id, 2.0),
        (
            "client_ip_address+client_user_agent",
            k.client_ip && k.user_agent,
            2.0,
        ),
        ("fn+ln", k.first_name && k.last_name, 1.0),
        ("ct", k.city, 0.5),
        ("st", k.state, 0.5),
        ("zp", k.zip, 0.5),
        ("country", k.country, 0.5),
        ("db", k.date_of_birth, 0.5),
        ("ge", k.gender, 0.5),
    ];
    rules
        .into_iter()
        .filter(|(_, present, _)| *present)
        .map(|(key, _, points)| Contribution { key, points })
        .collect()
}

/// Match-key coverage, 0.0 to 10.0 in steps of 0.5.
pub fn estimate(keys: &MatchKeys) -> f32 {
    let sum: f32 = contributions(keys).iter().map(|c| c.points).sum();
    sum.min(MAX_SCORE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_scores_zero() {
        assert_eq!(estimate(&MatchKeys::default()), 0.0);
        assert!(contributions(&MatchKeys::default()).is_empty());
    }

    #[test]
    fn typical_whatsapp_lead() {
        // CTWA click id + phone.
        let keys = MatchKeys {
            click_id: true,
            ph: true,
            ..Default::default()
        };
        assert_eq!(estimate(&keys), 6.0);
        // Plus name and country.
        let keys = MatchKeys {
            first_name: true,
            last_name: true,
            country: true,
            ..keys
        };
        assert_eq!(estimate(&keys), 7.5);
    }

    #[test]
    fn click_id_and_lead_id_count_once() {
        let both = MatchKeys {
            click_id: true,
            lead_id: true,
            ..Default::default()
        };
        let lead = MatchKeys {
            lead_id: true,
            ..Default::default()
        };
        assert_eq!(estimate(&both), 3.0);
        assert_eq!(estimate(&lead), 3.0);
    }

    #[test]
    fn pairs_need_both_halves() {
        let ip_only = MatchKeys {
            client_ip: true,
            ..Default::default()
        };
        let first_only = MatchKeys {
            first_name: true,
            ..Default::default()
        };
        assert_eq!(estimate(&ip_only), 0.0);
        assert_eq!(estimate(&first_only), 0.0);
        let pairs = MatchKeys {
            client_ip: true,
            user_agent: true,
            first_name: true,
            last_name: true,
            ..Default::default()
        };
        assert_eq!(estimate(&pairs), 3.0);
    }

    #[test]
    fn half_points_add_up() {
        let geo = MatchKeys {
            city: true,
            state: true,
            zip: true,
            country: true,
            date_of_birth: true,
            gender: true,
            ..Default::default()
        };
        assert_eq!(estimate(&geo), 3.0);
        let email_and_ext = MatchKeys {
            em: true,
            external_id: true,
            ..geo
        };
        assert_eq!(estimate(&email_and_ext), 8.0);
    }

    #[test]
    fn capped_at_ten() {
        let all = MatchKeys {
            click_id: true,
            lead_id: true,
            em: true,
            ph: true,
            external_id: true,
            client_ip: true,
            user_agent: true,
            first_name: true,
            last_name: true,
            city: true,
            state: true,
            zip: true,
            country: true,
            date_of_birth: true,
            gender: true,
        };
        let raw: f32 = contributions(&all).iter().map(|c| c.points).sum();
        assert_eq!(raw, 17.0);
        assert_eq!(estimate(&all), MAX_SCORE);
        let three_strong = MatchKeys {
            click_id: true,
            em: true,
            ph: true,
            ..Default::default()
        };
        assert_eq!(estimate(&three_strong), 9.0);
        let plus_ext = MatchKeys {
            external_id: true,
            ..three_strong
        };
        assert_eq!(estimate(&plus_ext), 10.0);
    }

    #[test]
    fn contributions_name_the_keys() {
        let keys = MatchKeys {
            em: true,
            zip: true,
            ..Default::default()
        };
        let got: Vec<_> = contributions(&keys)
            .into_iter()
            .map(|c| (c.key, c.points))
            .collect();
        assert_eq!(got, [("em", 3.0), ("zp", 0.5)]);
    }
}
