//! The doctor's findings and how they are printed: a grouped, human-readable report (✓ / ! / ✗)
//! or JSON for machines. Nothing here knows how a check is made.

use std::fmt::Write as _;

use serde::Serialize;

/// How a check came out. Ordered by severity, so the worst of several is their `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Could not run because something it depends on failed (reported by that check).
    Skipped,
    /// Works, but something will bite later or is degraded.
    Warning,
    /// Something that makes stage changes fail (or the doctor could not verify it).
    Problem,
}

/// The sections of the report, in the order they are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Database,
    Settings,
    Keys,
    Pixels,
    Campaigns,
    StageEvents,
    Queue,
}

impl Group {
    pub const ALL: [Group; 7] = [
        Group::Database,
        Group::Settings,
        Group::Keys,
        Group::Pixels,
        Group::Campaigns,
        Group::StageEvents,
        Group::Queue,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Group::Database => "Database",
            Group::Settings => "Settings",
            Group::Keys => "Keys and tokens",
            Group::Pixels => "Pixels",
            Group::Campaigns => "Campaigns",
            Group::StageEvents => "Stage events",
            Group::Queue => "Queue",
        }
    }
}

/// One finding: what was looked at, what was found, and (unless it is fine) how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub group: Group,
    /// Stable machine name, e.g. `database.migrations` or `pixels.api.3` (3 = pixels.id).
    pub id: String,
    pub title: String,
    pub status: Status,
    /// One line: what was found.
    pub found: String,
    /// One line: how to fix it. `None` for checks that are fine.
    pub fix: Option<String>,
}

impl Check {
    pub fn build(group: Group, id: impl Into<String>, title: impl Into<String>) -> CheckBuilder {
        CheckBuilder {
            group,
            id: id.into(),
            title: title.into(),
        }
    }
}

/// `Check::build(..).ok(found)` / `.warning(found, fix)` / `.problem(found, fix)` read like the
/// report they produce.
pub struct CheckBuilder {
    group: Group,
    id: String,
    title: String,
}

impl CheckBuilder {
    fn finish(self, status: Status, found: String, fix: Option<String>) -> Check {
        Check {
            group: self.group,
            id: self.id,
            title: self.title,
            status,
            found,
            fix,
        }
    }

    pub fn ok(self, found: impl Into<String>) -> Check {
        self.finish(Status::Ok, found.into(), None)
    }

    pub fn skipped(self, why: impl Into<String>) -> Check {
        self.finish(Status::Skipped, why.into(), None)
    }

    pub fn warning(self, found: impl Into<String>, fix: impl Into<String>) -> Check {
        self.finish(Status::Warning, found.into(), Some(fix.into()))
    }

    pub fn problem(self, found: impl Into<String>, fix: impl Into<String>) -> Check {
        self.finish(Status::Problem, found.into(), Some(fix.into()))
    }
}

/// Counts per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warnings: usize,
    pub problems: usize,
    pub skipped: usize,
}

/// The process exit code the report maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No problems (warnings allowed): exit 0.
    Healthy,
    /// At least one problem: exit 1.
    Problems,
    /// The database could not be reached, so most checks could not run: exit 2.
    DatabaseUnreachable,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Problems => 1,
            Verdict::DatabaseUnreachable => 2,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The database checked, password redacted.
    pub database: String,
    pub checks: Vec<Check>,
    #[serde(skip)]
    pub database_unreachable: bool,
}

impl Report {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.checks {
            match c.status {
                Status::Ok => s.ok += 1,
                Status::Warning => s.warnings += 1,
                Status::Problem => s.problems += 1,
                Status::Skipped => s.skipped += 1,
            }
        }
        s
    }

    pub fn verdict(&self) -> Verdict {
        if self.database_unreachable {
            Verdict::DatabaseUnreachable
        } else if self.checks.iter().any(|c| c.status == Status::Problem) {
            Verdict::Problems
        } else {
            Verdict::Healthy
        }
    }

    /// Replace every occurrence of each secret in every text of the report. The checks never
    /// put a token into a message on purpose; this catches one echoed back by a server or a
    /// library error, so "never print a token" does not depend on what others write.
    pub fn redact(&mut self, secrets: &[&str]) {
        // Short strings would shred ordinary words; real tokens and passwords are long.
        let secrets: Vec<&str> = secrets
            .iter()
            .copied()
            .filter(|s| s.chars().count() >= 6)
            .collect();
        if secrets.is_empty() {
            return;
        }
        let scrub = |text: &mut String| {
            for s in &secrets {
                if text.contains(s) {
                    *text = text.replace(s, "[redacted]");
                }
            }
        };
        scrub(&mut self.database);
        for c in &mut self.checks {
            scrub(&mut c.title);
            scrub(&mut c.found);
            if let Some(fix) = &mut c.fix {
                scrub(fix);
            }
        }
    }

    /// The machine-readable report (`--json`), keys in reading order.
    pub fn render_json(&self) -> String {
        #[derive(Serialize)]
        struct Json<'a> {
            database: &'a str,
            verdict: Verdict,
            exit_code: u8,
            summary: Summary,
            checks: &'a [Check],
        }
        let verdict = self.verdict();
        let json = Json {
            database: &self.database,
            verdict,
            exit_code: verdict.exit_code(),
            summary: self.summary(),
            checks: &self.checks,
        };
        // Plain strings, enums and integers: serialization cannot fail.
        let mut out = serde_json::to_string_pretty(&json).unwrap_or_else(|e| {
            serde_json::json!({ "error": format!("could not serialize the report: {e}") })
                .to_string()
        });
        out.push('\n');
        out
    }

    /// The human-readable report. `color`: ANSI colors (only when stdout is a terminal).
    pub fn render_text(&self, color: bool) -> String {
        let paint = |code: &str, text: &str| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        let mut out = String::new();
        let _ = writeln!(out, "stagecast doctor: {}", self.database);
        for group in Group::ALL {
            let checks: Vec<&Check> = self.checks.iter().filter(|c| c.group == group).collect();
            if checks.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{}", paint("1", group.title()));
            for c in checks {
                let marker = match c.status {
                    Status::Ok => paint("32", "✓"),
                    Status::Warning => paint("33", "!"),
                    Status::Problem => paint("31", "✗"),
                    Status::Skipped => paint("2", "-"),
                };
                let _ = writeln!(out, "  {marker} {}: {}", c.title, c.found);
                if let Some(fix) = &c.fix {
                    let _ = writeln!(out, "    {} {fix}", paint("2", "fix:"));
                }
            }
        }
        let s = self.summary();
        let mut line = format!(
            "{} ok, {} {}, {} {}",
            s.ok,
            s.warnings,
            plural(s.warnings, "warning", "warnings"),
            s.problems,
            plural(s.problems, "problem", "problems"),
        );
        if s.skipped > 0 {
            let _ = write!(line, ", {} skipped", s.skipped);
        }
        let verdict = match self.verdict() {
            Verdict::Healthy if s.warnings == 0 => paint("32", "healthy"),
            Verdict::Healthy => paint("33", "healthy, with warnings"),
            Verdict::Problems => paint("31", "problems found"),
            Verdict::DatabaseUnreachable => paint("31", "the database cannot be reached"),
        };
        let _ = writeln!(out, "\nSummary: {line}: {verdict}.");
        out
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// "a, b, c and 4 more": keeps a line readable when a CRM has hundreds of campaigns.
pub fn list(items: &[String], max: usize) -> String {
    let shown = items.len().min(max);
    let mut out = items[..shown].join(", ");
    if items.len() > shown {
        let _ = write!(out, " and {} more", items.len() - shown);
    }
    out
}

/// `"Name" (id 3)`, or `id 3` when the CRM left the name empty.
pub fn named(name: Option<&str>, id: i64) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("{n:?} (id {id})"),
        None => format!("id {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: &[Status]) -> Report {
        Report {
            database: "postgres://u:***@h/db".into(),
            checks: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let b = Check::build(Group::Queue, format!("c{i}"), format!("Check {i}"));
                    match s {
                        Status::Ok => b.ok("fine"),
                        Status::Skipped => b.skipped("needs the database"),
                        Status::Warning => b.warning("meh", "do this"),
                        Status::Problem => b.problem("broken", "do that"),
                    }
                })
                .collect(),
            database_unreachable: false,
        }
    }

    #[test]
    fn verdict_follows_the_worst_status() {
        assert_eq!(
            report(&[Status::Ok, Status::Warning]).verdict(),
            Verdict::Healthy
        );
        assert_eq!(
            report(&[Status::Ok, Status::Problem]).verdict(),
            Verdict::Problems
        );
        let mut r = report(&[Status::Problem]);
        r.database_unreachable = true;
        assert_eq!(r.verdict(), Verdict::DatabaseUnreachable);
        assert_eq!(r.verdict().exit_code(), 2);
    }

    #[test]
    fn text_has_markers_fixes_and_summary_without_color_codes() {
        let text = report(&[
            Status::Ok,
            Status::Warning,
            Status::Problem,
            Status::Skipped,
        ])
        .render_text(false);
        assert!(text.contains("  ✓ Check 0: fine"), "{text}");
        assert!(
            text.contains("  ! Check 1: meh\n    fix: do this"),
            "{text}"
        );
        assert!(
            text.contains("  ✗ Check 2: broken\n    fix: do that"),
            "{text}"
        );
        assert!(text.contains("  - Check 3: needs the database"), "{text}");
        assert!(
            text.contains("Summary: 1 ok, 1 warning, 1 problem, 1 skipped: problems found."),
            "{text}"
        );
        assert!(!text.contains('\x1b'));
        assert!(report(&[Status::Ok])
            .render_text(true)
            .contains("\x1b[32m✓"));
    }

    #[test]
    fn json_lists_checks_summary_and_exit_code() {
        let text = report(&[Status::Ok, Status::Problem]).render_json();
        assert!(text.starts_with("{\n  \"database\""), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["verdict"], "problems");
        assert_eq!(v["summary"]["problems"], 1);
        assert_eq!(v["checks"][1]["status"], "problem");
        assert_eq!(v["checks"][1]["group"], "queue");
        assert_eq!(v["checks"][0]["fix"], serde_json::Value::Null);
    }

    #[test]
    fn redact_scrubs_secrets_everywhere_but_leaves_short_strings() {
        let mut r = report(&[Status::Problem]);
        r.checks[0].found = "server said: bad token EAAsecret123".into();
        r.checks[0].fix = Some("EAAsecret123 is wrong".into());
        r.redact(&["EAAsecret123", "ok"]);
        assert_eq!(r.checks[0].found, "server said: bad token [redacted]");
        assert_eq!(r.checks[0].fix.as_deref(), Some("[redacted] is wrong"));
        assert_eq!(r.checks[0].title, "Check 0");
    }

    #[test]
    fn lists_are_capped() {
        let items: Vec<String> = (1..=5).map(|i| i.to_string()).collect();
        assert_eq!(list(&items, 3), "1, 2, 3 and 2 more");
        assert_eq!(list(&items[..2], 3), "1, 2");
        assert_eq!(named(Some("Verão"), 1), "\"Verão\" (id 1)");
        assert_eq!(named(Some("  "), 2), "id 2");
    }
}
