//! Who may use the console: users from configuration (`STAGECAST_CONSOLE_USERS`, no default),
//! sessions held in memory, CSRF tokens bound to the session.
//!
//! - A user is `name:role:token`. Only the SHA-256 of each token is kept; a presented token is
//!   hashed and compared with every user's digest in constant time, so neither the comparison
//!   nor its length tells anything about a token.
//! - Signing in gives a session: a random 256-bit id in an `HttpOnly`, `SameSite=Strict` cookie
//!   (`Secure` unless the console listens on loopback), valid for 8 hours and 1 hour idle.
//! - Every state-changing request carries the session's CSRF token in its form, compared in
//!   constant time; signing in carries a pre-session one (login CSRF).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::locale::Locale;

/// Shortest token accepted: 32 characters of a random token are ~190 bits.
pub const MIN_TOKEN_CHARS: usize = 32;
const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Sessions kept at most; the oldest goes when a new one would exceed it.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads every page, changes nothing.
    Viewer,
    /// Also replays, cancels and edits stage events.
    Admin,
}

impl Role {
    pub fn code(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

#[derive(Clone)]
struct User {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The configured users. Never prints a token (no `Debug` of the digests either).
#[derive(Clone)]
pub struct Users(Vec<User>);

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.0
                    .iter()
                    .map(|u| format!("{}:{}", u.name, u.role.code())),
            )
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsersError {
    #[error("no console users configured: set STAGECAST_CONSOLE_USERS to `name:role:token` entries (role admin or viewer); the console has no default password (docs/console.md)")]
    None,
    #[error("console user entry {0} is not `name:role:token`")]
    Shape(usize),
    #[error("console user entry {0}: the name must be 1-64 letters, digits or . _ @ -")]
    Name(usize),
    #[error("console user entry {0}: unknown role {1:?} (expected admin or viewer)")]
    Role(usize, String),
    #[error("console user entry {0}: the token must be at least {MIN_TOKEN_CHARS} characters without spaces (e.g. `head -c 32 /dev/urandom | base64`)")]
    WeakToken(usize),
    #[error("console user {0:?} is configured twice")]
    DuplicateName(String),
    #[error("console user entries {0} and {1} have the same token: give each user their own")]
    DuplicateToken(usize, usize),
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Users {
    /// Entries separated by commas or newlines: `name:role:token`. Error messages name entries
    /// by position (from 1), never by their token.
    pub fn parse(spec: &str) -> Result<Users, UsersError> {
        let mut users: Vec<User> = Vec::new();
        let entries = spec
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let n = i + 1;
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(UsersError::Shape(n));
            };
            let name = name.trim();
            if name.is_empty()
                || name.chars().count() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
            {
                return Err(UsersError::Name(n));
            }
            let role = match role.trim().to_ascii_lowercase().as_str() {
                "admin" => Role::Admin,
                "viewer" | "read-only" | "readonly" => Role::Viewer,
                other => return Err(UsersError::Role(n, other.to_string())),
            };
            let token = token.trim();
            if token.chars().count() < MIN_TOKEN_CHARS || token.chars().any(char::is_whitespace) {
                return Err(UsersError::WeakToken(n));
            }
            if users.iter().any(|u| u.name == name) {
                return Err(UsersError::DuplicateName(name.to_string()));
            }
            let d = digest(token);
            if let Some(j) = users.iter().position(|u| bool::from(u.digest.ct_eq(&d))) {
                return Err(UsersError::DuplicateToken(j + 1, n));
            }
            users.push(User {
                name: name.to_string(),
                role,
                digest: d,
            });
        }
        if users.is_empty() {
            return Err(UsersError::None);
        }
        Ok(Users(users))
    }

    /// The user whose token this is. Every digest is compared, in constant time each.
    fn authenticate(&self, token: &str) -> Option<(String, Role)> {
        let d = digest(token.trim());
        let mut found = None;
        for u in &self.0 {
            if bool::from(u.digest.ct_eq(&d)) {
                found = Some((u.name.clone(), u.role));
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// 256 random bits, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Constant-time equality of two secrets given as text.
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(digest(a).ct_eq(&digest(b)))
}

/// What a request's session says about its user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
    pub locale: Locale,
    created: Instant,
    last_seen: Instant,
}

impl Session {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The actor recorded in `stagecast.admin_audit`.
    pub fn actor(&self) -> String {
        format!("console:{}", self.user)
    }

    pub fn csrf_ok(&self, presented: &str) -> bool {
        !presented.is_empty() && same_secret(&self.csrf, presented)
    }
}

/// Sessions by the SHA-256 of their id.
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    /// Sign-in attempts: 10 at once, then one a second, for the whole console. Tokens are far
    /// too long to guess; this keeps a scripted guesser from costing CPU.
    logins: DefaultDirectRateLimiter,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

impl Sessions {
    pub fn new() -> Self {
        let quota = Quota::per_second(NonZeroU32::MIN)
            .allow_burst(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN));
        Sessions {
            map: Mutex::new(HashMap::new()),
            logins: RateLimiter::direct(quota),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still sane.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether another sign-in attempt may be checked now.
    pub fn login_allowed(&self) -> bool {
        self.logins.check().is_ok()
    }

    /// A new session for the holder of `token`; `None` if no user has that token.
    pub fn sign_in(&self, users: &Users, token: &str, locale: Locale) -> Option<(String, Session)> {
        let (user, role) = users.authenticate(token)?;
        let id = random_token();
        let now = Instant::now();
        let session = Session {
            user,
            role,
            csrf: random_token(),
            locale,
            created: now,
            last_seen: now,
        };
        let mut map = self.lock();
        map.retain(|_, s| !expired(s, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(digest(&id), session.clone());
        Some((id, session))
    }

    /// The live session with this id (its idle clock restarts).
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let key = digest(id);
        let mut map = self.lock();
        match map.get_mut(&key) {
            Some(s) if !expired(s, now) => {
                s.last_seen = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn set_locale(&self, id: &str, locale: Locale) {
        if let Some(s) = self.lock().get_mut(&digest(id)) {
            s.locale = locale;
        }
    }

    pub fn sign_out(&self, id: &str) {
        self.lock().remove(&digest(id));
    }
}

fn expired(s: &Session, now: Instant) -> bool {
    now.duration_since(s.created) > SESSION_LIFETIME
        || now.duration_since(s.last_seen) > SESSION_IDLE
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const T2: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn err(spec: &str) -> UsersError {
        Users::parse(spec).expect_err("an error")
    }

    #[test]
    fn users_parse_and_errors_never_quote_a_token() {
        let users = Users::parse(&format!("ana:admin:{T1}, bob:viewer:{T2}\n")).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users.authenticate(T1), Some(("ana".into(), Role::Admin)));
        assert_eq!(users.authenticate(T2), Some(("bob".into(), Role::Viewer)));
        assert_eq!(users.authenticate("nope"), None);
        assert_eq!(users.authenticate(&T1[1..]), None);
        assert!(!format!("{users:?}").contains(T1));

        assert_eq!(err(""), UsersError::None);
        assert_eq!(err(" , "), UsersError::None);
        assert_eq!(err("ana:admin"), UsersError::Shape(1));
        assert_eq!(err("ana:admin:short-password"), UsersError::WeakToken(1));
        assert_eq!(
            err(&format!("ana:root:{T1}")),
            UsersError::Role(1, "root".into())
        );
        assert_eq!(err(&format!("a b:admin:{T1}")), UsersError::Name(1));
        assert_eq!(
            err(&format!("ana:admin:{T1},ana:viewer:{T2}")),
            UsersError::DuplicateName("ana".into())
        );
        assert_eq!(
            err(&format!("ana:admin:{T1},bob:viewer:{T1}")),
            UsersError::DuplicateToken(1, 2)
        );
        for e in [
            UsersError::WeakToken(1),
            UsersError::Shape(2),
            UsersError::None,
        ] {
            assert!(!e.to_string().contains(T1));
        }
    }

    #[test]
    fn sessions_sign_in_out_and_check_csrf() {
        let users = Users::parse(&format!("ana:admin:{T1}")).unwrap();
        let sessions = Sessions::new();
        assert!(sessions.sign_in(&users, "wrong", Locale::Pt).is_none());
        let (id, s) = sessions.sign_in(&users, T1, Locale::En).unwrap();
        assert_eq!(s.actor(), "console:ana");
        let got = sessions.get(&id).unwrap();
        assert!(got.csrf_ok(&s.csrf));
        assert!(!got.csrf_ok(""));
        assert!(!got.csrf_ok(&random_token()));
        sessions.set_locale(&id, Locale::Es);
        assert_eq!(sessions.get(&id).unwrap().locale, Locale::Es);
        assert!(sessions.get("forged").is_none());
        sessions.sign_out(&id);
        assert!(sessions.get(&id).is_none());
        assert_eq!(random_token().len(), 43);
    }
}
