//! Keys and tokens: `STAGECAST_KEYS` parses, every sealed token opens, and nothing waits to be
//! sealed or re-sealed. Messages name pixels and key ids only: never a key, never a token.

use super::report::{list, Check, Group};
use crate::secrets::{KeyRing, Secret, SecretsError};
use crate::store::PixelRow;

/// `STAGECAST_KEYS` as the process sees it.
pub type Ring = Result<Option<KeyRing>, SecretsError>;

fn check(id: &str, title: &str) -> super::report::CheckBuilder {
    Check::build(Group::Keys, format!("keys.{id}"), title)
}

/// The key ring alone (all the doctor can say when the database is unreachable).
pub fn ring(ring: &Ring) -> Option<Check> {
    let c = check("ring", "STAGECAST_KEYS");
    match ring {
        Ok(Some(keys)) => Some(c.ok(format!(
            "{} key(s); tokens are sealed with {}",
            keys.key_ids().count(),
            keys.primary_key_id()
        ))),
        // Whether a missing ring matters depends on the tokens: see `tokens`.
        Ok(None) => None,
        // SecretsError never quotes key material (it names entries by position).
        Err(e) => Some(c.problem(
            format!("cannot be read: {e}"),
            "correct it: comma-separated `<key_id>:<base64 of 32 bytes>` entries, the sealing key first (docs/secrets.md); `stagecast keys generate k1` makes an entry",
        )),
    }
}

/// `pixel 1111 "Main" (id 1)`: the Meta id operators know, and the row id the CLI takes.
pub fn pixel_label(p: &PixelRow) -> String {
    match p.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => format!("pixel {} {name:?} (id {})", p.pixel_id, p.id),
        None => format!("pixel {} (id {})", p.pixel_id, p.id),
    }
}

fn sealed(p: &PixelRow) -> Option<&str> {
    p.access_token_enc
        .as_deref()
        .filter(|s| !s.trim().is_empty())
}

fn plaintext(p: &PixelRow) -> Option<&str> {
    p.access_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// How to fix a token that does not open, by error (docs/secrets.md, "Errors at a glance").
fn open_fix(e: &SecretsError, p: &PixelRow) -> String {
    match e {
        SecretsError::UnknownKeyId { key_id } => format!(
            "add key `{key_id}` back to STAGECAST_KEYS (at the end), then run `stagecast keys rotate`"
        ),
        SecretsError::Malformed { .. } => format!(
            "the value is not a sealed token (a plaintext token belongs in access_token): store it again with `stagecast pixel set-token {} < token.txt`",
            p.id
        ),
        _ => format!(
            "store the token again with `stagecast pixel set-token {} < token.txt`; check that the CRM and the workers use the same key",
            p.id
        ),
    }
}

/// The token checks over every pixel (active or not: all of them must survive a rotation).
pub fn tokens(ring_result: &Ring, pixels: &[PixelRow]) -> Vec<Check> {
    let mut checks: Vec<Check> = ring(ring_result).into_iter().collect();
    let sealed_pixels: Vec<&PixelRow> = pixels.iter().filter(|p| sealed(p).is_some()).collect();
    let plain_pixels: Vec<String> = pixels
        .iter()
        .filter(|p| plaintext(p).is_some())
        .map(pixel_label)
        .collect();

    match ring_result {
        Err(_) => {
            if !sealed_pixels.is_empty() {
                checks.push(check("sealed", "Sealed tokens").skipped(format!(
                    "{} sealed token(s) not checked: STAGECAST_KEYS cannot be read",
                    sealed_pixels.len()
                )));
            }
        }
        Ok(None) if !sealed_pixels.is_empty() => {
            let names: Vec<String> = sealed_pixels.iter().map(|p| pixel_label(p)).collect();
            checks.push(check("ring", "STAGECAST_KEYS").problem(
                format!(
                    "not set, but {} token(s) are sealed and cannot be read: {}",
                    sealed_pixels.len(),
                    list(&names, 5)
                ),
                "set STAGECAST_KEYS to the key ring that sealed them (the same value the workers use)",
            ));
        }
        Ok(None) => {
            checks.push(check("ring", "STAGECAST_KEYS").warning(
                "not set: tokens cannot be sealed, and a CRM's plaintext tokens stay in the clear",
                "create a key with `stagecast keys generate k1` and set STAGECAST_KEYS for the workers and the doctor",
            ));
        }
        Ok(Some(keys)) => {
            let mut opened = 0;
            let mut older: Vec<String> = Vec::new();
            let mut older_keys: Vec<String> = Vec::new();
            for p in &sealed_pixels {
                let value = sealed(p).unwrap_or_default();
                match keys.open(value) {
                    Ok(_) => {
                        opened += 1;
                        if keys.needs_reseal(value) {
                            older.push(pixel_label(p));
                            if let Ok(id) = KeyRing::sealed_key_id(value) {
                                if !older_keys.iter().any(|k| k == id) {
                                    older_keys.push(id.to_string());
                                }
                            }
                        }
                    }
                    Err(e) => checks.push(
                        check(
                            &format!("sealed.{}", p.id),
                            &format!("Token of {}", pixel_label(p)),
                        )
                        .problem(format!("cannot be opened: {e}"), open_fix(&e, p)),
                    ),
                }
            }
            if !sealed_pixels.is_empty() && opened == sealed_pixels.len() {
                checks.push(
                    check("sealed", "Sealed tokens")
                        .ok(format!("all {opened} open with STAGECAST_KEYS")),
                );
            }
            if !older.is_empty() {
                checks.push(check("reseal", "Older keys").warning(
                    format!(
                        "{} token(s) sealed with {} instead of {}: {}",
                        older.len(),
                        older_keys.join(", "),
                        keys.primary_key_id(),
                        list(&older, 5)
                    ),
                    "run `stagecast keys rotate` (they stop opening once that key leaves STAGECAST_KEYS)",
                ));
            }
        }
    }

    if !plain_pixels.is_empty() {
        let fix = match ring_result {
            Ok(Some(_)) => "a running worker seals them within seconds; `stagecast keys rotate` seals them now",
            _ => "set STAGECAST_KEYS (`stagecast keys generate k1`), then run `stagecast keys rotate` to seal them",
        };
        checks.push(check("plaintext", "Plaintext tokens").warning(
            format!(
                "{} token(s) in pixels.access_token waiting to be sealed: {}",
                plain_pixels.len(),
                list(&plain_pixels, 5)
            ),
            fix,
        ));
    }
    checks
}

/// Why a pixel has no usable token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenProblem {
    Missing,
    /// Sealed, but STAGECAST_KEYS is not set.
    NoKeys,
    /// Sealed, and STAGECAST_KEYS could not be parsed.
    BadKeys,
    /// The ring could not open it (the message is a `SecretsError`, free of secrets).
    Unreadable(String),
}

/// The token a worker would call the API with: the plaintext one a CRM just wrote, else the
/// sealed one opened with the ring (the same order as the pipeline's `token_for`).
pub fn token_for(p: &PixelRow, ring: &Ring) -> Result<Secret, TokenProblem> {
    if let Some(plain) = plaintext(p) {
        return Ok(Secret::new(plain.to_string()));
    }
    let Some(value) = sealed(p) else {
        return Err(TokenProblem::Missing);
    };
    match ring {
        Ok(Some(keys)) => keys
            .open(value)
            .map_err(|e| TokenProblem::Unreadable(e.to_string())),
        Ok(None) => Err(TokenProblem::NoKeys),
        Err(_) => Err(TokenProblem::BadKeys),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::doctor::report::Status;

    pub const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    pub const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    pub fn pixel(id: i64, active: bool, is_default: bool) -> PixelRow {
        PixelRow {
            id,
            platform: "facebook".into(),
            name: Some(format!("P{id}")),
            pixel_id: format!("{id}{id}{id}"),
            access_token: None,
            access_token_enc: None,
            active,
            is_default,
            waba_id: None,
            test_event_code: None,
            action_source: None,
            messaging_mode: None,
            options: None,
        }
    }

    fn ring_of(spec: &str) -> Ring {
        Ok(Some(KeyRing::parse(spec).unwrap()))
    }

    fn find<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("{id} in {checks:#?}"))
    }

    #[test]
    fn sealed_tokens_open_and_older_keys_ask_for_rotation() {
        let k1 = KeyRing::parse(K1).unwrap();
        let mut a = pixel(1, true, true);
        a.access_token_enc = Some(k1.seal("EAAone-secret"));
        let mut b = pixel(2, true, false);
        b.access_token_enc = Some(KeyRing::parse(K2).unwrap().seal("EAAtwo-secret"));
        let checks = tokens(&ring_of(&format!("{K2},{K1}")), &[a, b]);
        assert_eq!(find(&checks, "keys.ring").status, Status::Ok);
        assert_eq!(
            find(&checks, "keys.sealed").found,
            "all 2 open with STAGECAST_KEYS"
        );
        let reseal = find(&checks, "keys.reseal");
        assert_eq!(reseal.status, Status::Warning);
        assert!(
            reseal.found.contains("sealed with k1 instead of k2"),
            "{reseal:?}"
        );
        assert!(reseal
            .fix
            .as_deref()
            .unwrap()
            .contains("stagecast keys rotate"));
        let all = format!("{checks:?}");
        assert!(!all.contains("secret"), "no token in {all}");
    }

    #[test]
    fn a_token_from_a_removed_key_is_a_problem_with_the_fix() {
        let mut a = pixel(1, true, true);
        a.access_token_enc = Some(KeyRing::parse(K1).unwrap().seal("EAAone-secret"));
        let checks = tokens(&ring_of(K2), &[a]);
        let c = find(&checks, "keys.sealed.1");
        assert_eq!(c.status, Status::Problem);
        assert!(c.found.contains("key id `k1`"), "{c:?}");
        assert!(c.fix.as_deref().unwrap().contains("add key `k1` back"));
    }

    #[test]
    fn no_keys_with_sealed_tokens_is_a_problem_and_without_a_warning() {
        let mut a = pixel(1, true, true);
        a.access_token_enc = Some(KeyRing::parse(K1).unwrap().seal("EAAone-secret"));
        let checks = tokens(&Ok(None), std::slice::from_ref(&a));
        let c = find(&checks, "keys.ring");
        assert_eq!(c.status, Status::Problem);
        assert!(c.found.contains("1 token(s) are sealed"));
        assert_eq!(token_for(&a, &Ok(None)).unwrap_err(), TokenProblem::NoKeys);

        let checks = tokens(&Ok(None), &[pixel(2, true, true)]);
        assert_eq!(find(&checks, "keys.ring").status, Status::Warning);
    }

    #[test]
    fn plaintext_tokens_wait_to_be_sealed_and_win_over_sealed_ones() {
        let mut a = pixel(1, true, true);
        a.access_token = Some(" EAAplain-secret ".into());
        a.access_token_enc = Some("garbage".into());
        let checks = tokens(&ring_of(K1), std::slice::from_ref(&a));
        let c = find(&checks, "keys.plaintext");
        assert_eq!(c.status, Status::Warning);
        assert!(c.found.contains("pixel 111 \"P1\" (id 1)"));
        assert!(!c.found.contains("EAAplain"));
        assert_eq!(
            token_for(&a, &ring_of(K1)).unwrap().expose(),
            "EAAplain-secret"
        );
        // The malformed sealed value is still reported.
        assert!(find(&checks, "keys.sealed.1").found.contains("malformed"));
    }

    #[test]
    fn an_unparsable_ring_is_a_problem_that_never_quotes_the_spec() {
        let spec = "k1:c2hvcnQ=";
        let bad: Ring = KeyRing::parse(spec).map(Some);
        let c = ring(&bad).unwrap();
        assert_eq!(c.status, Status::Problem);
        assert!(c.found.contains("entry 1"), "{c:?}");
        assert!(!c.found.contains("c2hvcnQ"));
        assert_eq!(
            token_for(&pixel(1, true, true), &bad).unwrap_err(),
            TokenProblem::Missing
        );
    }
}
