//! Finding PostgreSQL *server* binaries (`initdb`, `postgres`) on this machine.
//!
//! Client packages (psql, pg_config) are common on machines without a server, so a directory
//! only counts when it holds both `initdb` and `postgres`. Distributions keep them off PATH
//! (Debian: `/usr/lib/postgresql/<ver>/bin`), hence the list of well-known places.

use std::path::{Path, PathBuf};

use tokio::process::Command;

/// A directory with usable server binaries and the version they report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBinaries {
    /// The directory holding `initdb` and `postgres`.
    pub bindir: PathBuf,
    /// `(major, minor)`, e.g. `(15, 20)`; used to prefer the newest installation.
    pub version: (u32, u32),
    /// The version as PostgreSQL prints it, e.g. `15.20`.
    pub version_string: String,
}

impl ServerBinaries {
    pub fn initdb(&self) -> PathBuf {
        self.bindir.join("initdb")
    }

    pub fn postgres(&self) -> PathBuf {
        self.bindir.join("postgres")
    }
}

/// Expands a pattern whose only wildcard is a `*` in the last-but-one component, e.g.
/// `/usr/lib/postgresql/*/bin`. Enough for the fixed list below, without a glob dependency.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let Some((head, tail)) = pattern.split_once('*') else {
        return vec![PathBuf::from(pattern)];
    };
    let (dir, prefix) = match head.rsplit_once('/') {
        Some((dir, prefix)) => (if dir.is_empty() { "/" } else { dir }, prefix),
        None => return Vec::new(),
    };
    let (suffix, rest) = match tail.split_once('/') {
        Some((suffix, rest)) => (suffix, Some(rest)),
        None => (tail, None),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (name.starts_with(prefix) && name.ends_with(suffix)).then(|| {
                let p = e.path();
                match rest {
                    Some(rest) => p.join(rest),
                    None => p,
                }
            })
        })
        .collect();
    out.sort();
    out
}

fn is_server_bindir(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// Candidate directories, most authoritative first. Duplicates are removed by the caller.
async fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // pg_config knows where *its* installation put the server, whatever the layout.
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output().await {
        if out.status.success() {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !dir.is_empty() {
                dirs.push(PathBuf::from(dir));
            }
        }
    }
    for pattern in [
        "/usr/lib/postgresql/*/bin", // Debian, Ubuntu
        "/usr/pgsql-*/bin",          // PGDG packages on RHEL, Fedora, Rocky
    ] {
        dirs.extend(expand(pattern));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for pattern in [
        "/usr/local/pgsql/bin", // source builds
        "/opt/homebrew/opt/postgresql@*/bin",
        "/opt/homebrew/opt/postgresql/bin",
        "/usr/local/opt/postgresql@*/bin",
        "/usr/local/opt/postgresql/bin",
        "/Applications/Postgres.app/Contents/Versions/*/bin",
    ] {
        dirs.extend(expand(pattern));
    }
    dirs
}

/// Parses `postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` or `... 17beta1`.
fn parse_version(output: &str) -> Option<((u32, u32), String)> {
    let word = output
        .split_whitespace()
        .skip_while(|w| *w != "(PostgreSQL)")
        .nth(1)?;
    let mut numbers = word.split(|c: char| !c.is_ascii_digit());
    let major: u32 = numbers.next()?.parse().ok()?;
    let minor: u32 = numbers.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some(((major, minor), word.to_owned()))
}

async fn probe(dir: &Path) -> Option<ServerBinaries> {
    if !is_server_bindir(dir) {
        return None;
    }
    // `--version` is answered before PostgreSQL's refuse-to-run-as-root check, so this works
    // for root too.
    let out = Command::new(dir.join("postgres"))
        .arg("--version")
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let (version, version_string) = parse_version(&String::from_utf8_lossy(&out.stdout))?;
    Some(ServerBinaries {
        bindir: dir.to_owned(),
        version,
        version_string,
    })
}

/// The newest server installation on this machine, or `None` when there is none.
pub async fn find() -> Option<ServerBinaries> {
    let mut seen = Vec::new();
    let mut best: Option<ServerBinaries> = None;
    for dir in candidates().await {
        let canonical = std::fs::canonicalize(&dir).unwrap_or(dir);
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical.clone());
        if let Some(found) = probe(&canonical).await {
            // Strictly greater: on a tie the earlier (more authoritative) candidate wins.
            if best.as_ref().is_none_or(|b| found.version > b.version) {
                best = Some(found);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n"),
            Some(((15, 20), "15.20".to_owned()))
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 17beta1"),
            Some(((17, 0), "17beta1".to_owned()))
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 9.6.24"),
            Some(((9, 6), "9.6.24".to_owned()))
        );
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn expands_star_patterns() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["14", "16", "x"] {
            std::fs::create_dir_all(dir.path().join(format!("pg-{v}/bin"))).unwrap();
        }
        let pattern = format!("{}/pg-*/bin", dir.path().display());
        let found = expand(&pattern);
        assert_eq!(found.len(), 3);
        assert!(found[0].ends_with("pg-14/bin"));
        assert!(expand("/definitely/not/here/*/bin").is_empty());
    }
}
