//! Small string helpers for `postgres://` URLs.
//!
//! We edit the caller's URL as text instead of round-tripping it through `PgConnectOptions`
//! because a round trip would drop or rewrite parameters we do not model (sslmode, options[...],
//! the user's own spelling of the host). Only the database and the password are ever touched.

/// Characters allowed unencoded in a URL path segment (RFC 3986 "unreserved").
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A URL split into the pieces we edit. `authority` is everything between `://` and the path.
struct Parts<'a> {
    scheme: &'a str,
    authority: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

fn split(url: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    Some(Parts {
        scheme,
        authority,
        path,
        query,
        fragment,
    })
}

fn join(p: &Parts<'_>, authority: &str, path: &str, query: Option<&str>) -> String {
    let mut out = format!("{}://{}{}", p.scheme, authority, path);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = p.fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

fn query_key(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(k, _)| k)
}

/// The same URL with every password replaced by `***`, safe to print or log.
///
/// Handles both `user:password@host` and the `?password=` query parameter. Input that does
/// not look like a URL is replaced entirely: it might be a password pasted into the wrong place.
pub fn redact(url: &str) -> String {
    let Some(p) = split(url) else {
        return "<not a URL>".to_owned();
    };
    // The last '@' ends the userinfo: passwords may contain unencoded '@'.
    let authority = match p.authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => p.authority.to_owned(),
        },
        None => p.authority.to_owned(),
    };
    let query = p.query.map(|q| {
        q.split('&')
            .map(|pair| {
                if query_key(pair).eq_ignore_ascii_case("password") {
                    "password=***".to_owned()
                } else {
                    pair.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    join(&p, &authority, p.path, query.as_deref())
}

/// The same URL pointing at database `database`.
///
/// A `dbname=` query parameter would override the path (libpq and sqlx both honour it), so it
/// is removed.
pub fn with_database(url: &str, database: &str) -> String {
    let Some(p) = split(url) else {
        return url.to_owned();
    };
    let query = p.query.map(|q| {
        q.split('&')
            .filter(|pair| !query_key(pair).eq_ignore_ascii_case("dbname"))
            .collect::<Vec<_>>()
            .join("&")
    });
    let path = format!("/{}", percent_encode(database));
    join(&p, p.authority, &path, query.as_deref())
}

/// The same URL logging in as `user` with `password` (the server, database and every other
/// parameter unchanged). A `user=`/`password=` query parameter (Unix-socket URLs) is replaced
/// in place; otherwise the user info of the authority is.
pub fn with_login(url: &str, user: &str, password: &str) -> String {
    let Some(p) = split(url) else {
        return url.to_owned();
    };
    let in_query = p.query.is_some_and(|q| {
        q.split('&')
            .any(|pair| query_key(pair).eq_ignore_ascii_case("user"))
    });
    if in_query {
        let mut pairs: Vec<String> = p
            .query
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !query_key(pair).eq_ignore_ascii_case("password"))
            .map(|pair| {
                if query_key(pair).eq_ignore_ascii_case("user") {
                    format!("user={}", percent_encode(user))
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        pairs.push(format!("password={}", percent_encode(password)));
        return join(&p, p.authority, p.path, Some(&pairs.join("&")));
    }
    let host = p
        .authority
        .rsplit_once('@')
        .map_or(p.authority, |(_, host)| host);
    let authority = format!(
        "{}:{}@{host}",
        percent_encode(user),
        percent_encode(password)
    );
    let query = p.query.map(|q| {
        q.split('&')
            .filter(|pair| !query_key(pair).eq_ignore_ascii_case("password"))
            .collect::<Vec<_>>()
            .join("&")
    });
    join(&p, &authority, p.path, query.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_login_keeping_everything_else() {
        assert_eq!(
            with_login(
                "postgres://postgres@127.0.0.1:5432/db?sslmode=disable",
                "w",
                "p@ss"
            ),
            "postgres://w:p%40ss@127.0.0.1:5432/db?sslmode=disable"
        );
        assert_eq!(
            with_login("postgres://a:old@h/db?password=old2", "w", "p"),
            "postgres://w:p@h/db"
        );
        assert_eq!(
            with_login("postgres:///db?host=/tmp&user=postgres", "w", "p"),
            "postgres:///db?host=/tmp&user=w&password=p"
        );
    }

    #[test]
    fn redacts_userinfo_password() {
        assert_eq!(
            redact("postgres://app:s3cr@t@db.example:5432/crm?sslmode=require"),
            "postgres://app:***@db.example:5432/crm?sslmode=require"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
    }

    #[test]
    fn redacts_query_password() {
        assert_eq!(
            redact("postgres:///crm?host=/tmp&user=u&password=hunter2"),
            "postgres:///crm?host=/tmp&user=u&password=***"
        );
    }

    #[test]
    fn redacts_non_urls_entirely() {
        assert_eq!(redact("hunter2"), "<not a URL>");
    }

    #[test]
    fn replaces_database_keeping_everything_else() {
        assert_eq!(
            with_database("postgres://u:p@h:5433/crm?sslmode=disable", "postgres"),
            "postgres://u:p@h:5433/postgres?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h", "stagecast_test_1_0_ab"),
            "postgres://u@h/stagecast_test_1_0_ab"
        );
        assert_eq!(
            with_database(
                "postgres:///postgres?host=/var/run/postgresql&user=postgres",
                "x"
            ),
            "postgres:///x?host=/var/run/postgresql&user=postgres"
        );
        assert_eq!(
            with_database("postgres://h/a?dbname=a&sslmode=disable", "b"),
            "postgres://h/b?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h/a", "we ird"),
            "postgres://h/we%20ird"
        );
    }
}
