//! The marketer's guides (docs/GUIA_CONVERSOES.md and its English and Spanish twins) stay true to
//! the code:
//!
//! - every ```json block is a stage config (`crm_stages.utm_event`) that the worker's own parser
//!   (`pipeline::event_config::parse`) reads without an issue, with only the keys it knows;
//! - every quoted alert (a `> ⚠️ stagecast: ` line) is exactly the text `Alert::render` writes in
//!   the guide's language for the cause of the heading it sits under, with `{placeholders}` where
//!   the text interpolates values; every `AlertCause::ALL` has such a heading and quote, so a new
//!   cause fails here until the guides document it;
//! - every event name in the catalog tables (between `<!-- guide:events:begin -->` and
//!   `<!-- guide:events:end -->`) is in `stagecast::catalog`, and every catalog event has its row
//!   there with the catalog's label and "when to use" in the guide's language;
//! - the three languages have the same sections: the same headings at each level, in the same
//!   order, identified by their number ("4.3") or the alert code in them;
//! - every link of the guides leads to a file or a heading that exists;
//! - the README links the guides first.
//!
//! Other docs get the JSON and alert checks by being added to `OTHER_DOCS` below (the technical
//! reference, docs/CONVERSION_EVENTS.md). The Markdown is read line by line: the
//! guides use only fenced blocks, `#` headings, tables and `>` quotes, so a Markdown parser would
//! be a dependency for nothing.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use stagecast::alerts::{Alert, AlertCause, AlertDetails};
use stagecast::catalog::{self, EventKind};
use stagecast::locale::Locale;
use stagecast::pipeline::event_config;

/// The guides: one per language, the same sections in each.
const GUIDES: [(&str, Locale); 3] = [
    ("docs/GUIA_CONVERSOES.md", Locale::Pt),
    ("docs/guide/conversions.en.md", Locale::En),
    ("docs/guide/conversiones.es.md", Locale::Es),
];

/// Docs whose ```json stage configs (there: the blocks that are JSON arrays) and quoted alerts
/// (`> ⚠️ stagecast: ` lines under a heading naming the alert code) are checked like the guides'
/// (not their sections or catalog tables). Add docs/CONVERSION_EVENTS.md here when it exists.
const OTHER_DOCS: &[(&str, Locale)] = &[("docs/CONVERSION_EVENTS.md", Locale::En)];

const EVENTS_BEGIN: &str = "<!-- guide:events:begin -->";
const EVENTS_END: &str = "<!-- guide:events:end -->";
const ALERT_PREFIX: &str = "⚠️ stagecast: ";

/// The keys of a `utm_event` entry the worker reads (`src/pipeline/event_config.rs`); a doc
/// example with another key would teach a key that does nothing.
const CONFIG_KEYS: [&str; 7] = [
    "platform",
    "event_name",
    "custom_event_name",
    "enabled",
    "value",
    "currency",
    "use_sale_price",
];

fn read(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn checked_docs() -> impl Iterator<Item = (&'static str, Locale)> {
    GUIDES.into_iter().chain(OTHER_DOCS.iter().copied())
}

/// The fenced code blocks of a doc: (info string, body, line of the opening fence).
fn fenced_blocks(doc: &str) -> Vec<(String, String, usize)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (n, line) in doc.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((info.trim().to_string(), String::new(), n + 1));
                }
            }
            Some((info, mut body, start)) => {
                if trimmed.starts_with("```") {
                    blocks.push((info, body, start));
                } else {
                    body.push_str(line);
                    body.push('\n');
                    open = Some((info, body, start));
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    blocks
}

/// The headings outside code blocks: (level, text).
fn headings(doc: &str) -> Vec<(usize, String)> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let level = line.chars().take_while(|c| *c == '#').count();
        if level > 0 && line[level..].starts_with(' ') {
            out.push((level, line[level..].trim().to_string()));
        }
    }
    out
}

/// The alert cause a heading is about: the first `code` in it that is a cause's code.
fn heading_cause(text: &str) -> Option<AlertCause> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .find_map(|code| AlertCause::ALL.into_iter().find(|c| c.code() == code))
}

/// What identifies a section across languages: its number ("4.3."), else its alert code.
fn section_id(level: usize, text: &str) -> String {
    let number: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let id = if !number.is_empty() {
        number.trim_end_matches('.').to_string()
    } else if let Some(cause) = heading_cause(text) {
        cause.code().to_string()
    } else {
        String::new()
    };
    format!("{} {id}", "#".repeat(level))
}

/// Values the quoted alerts are rendered with. A guide writes `{name}` where the agent sees a
/// value; `fill` puts these values in, so the guide's text must become exactly what the code
/// writes for them.
const SAMPLE: [(&str, &str); 11] = [
    ("{event}", "EVENT_X"),
    ("{stage}", "STAGE_X"),
    ("{pixel}", "PIXEL_X"),
    ("{campaign}", "CAMPAIGN_X"),
    ("{code}", "CODE_X"),
    ("{subcode}", "4242"),
    ("{trace_name}", "TRACE_NAME_X"),
    ("{trace_id}", "TRACE_ID_X"),
    ("{error}", "ERROR_X"),
    ("{suggestion}", "SUGGESTION_X"),
    ("{ad_id}", "AD_X"),
];

/// `{platform}` is shown as the platform's name; the sample is Meta's.
const SAMPLE_PLATFORM: (&str, &str) = ("facebook", "Meta");

fn sample(with_suggestion: bool) -> AlertDetails {
    let v = |name: &str| {
        SAMPLE
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    AlertDetails {
        platform: Some(SAMPLE_PLATFORM.0.into()),
        event_name: v("{event}"),
        stage_name: v("{stage}"),
        pixel: v("{pixel}"),
        campaign: v("{campaign}"),
        code: v("{code}"),
        subcode: v("{subcode}").map(|s| s.parse().unwrap()),
        trace_id: v("{trace_id}"),
        trace_name: Some("TRACE_NAME_X"),
        error: v("{error}"),
        suggestion: if with_suggestion {
            v("{suggestion}")
        } else {
            None
        },
        ad_id: v("{ad_id}"),
        // Meta's own 7 days, as the guides explain `{window}` with.
        max_age_secs: None,
    }
}

/// `{window}` for the sample (Meta's 7 days), in the doc's language.
fn sample_window(locale: Locale) -> &'static str {
    match locale {
        Locale::Pt => "7 dias",
        Locale::En => "7 days",
        Locale::Es => "7 días",
    }
}

fn fill(quoted: &str, locale: Locale) -> String {
    let mut text = quoted
        .replace("{platform}", SAMPLE_PLATFORM.1)
        .replace("{window}", sample_window(locale));
    for (placeholder, value) in SAMPLE {
        text = text.replace(placeholder, value);
    }
    text
}

/// What the code writes for `cause` with the sample, with and without a suggestion (the
/// "did you mean" part appears only when there is one; a guide may quote either).
fn rendered(cause: AlertCause, locale: Locale) -> [String; 2] {
    [true, false].map(|s| Alert::new(cause, sample(s)).render(locale))
}

/// Every quoted alert of a doc with the cause of the heading above it and its line.
fn quoted_alerts(doc: &str) -> Vec<(Option<AlertCause>, String, usize)> {
    let mut current = None;
    let mut in_code = false;
    let mut out = Vec::new();
    for (n, line) in doc.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if line.starts_with('#') {
            current = heading_cause(line);
        } else if let Some(quote) = line.trim_start().strip_prefix("> ") {
            if quote.starts_with(ALERT_PREFIX) {
                out.push((current, quote.trim_end().to_string(), n + 1));
            }
        }
    }
    out
}

#[test]
fn json_examples_are_stage_configs_the_worker_parses() {
    let mut problems = Vec::new();
    for (path, _) in checked_docs() {
        let doc = read(path);
        let mut configs = 0;
        let guide = GUIDES.iter().any(|(g, _)| *g == path);
        for (info, body, line) in fenced_blocks(&doc) {
            if info != "json" {
                continue;
            }
            let parsed: Result<Value, _> = serde_json::from_str(&body);
            // In the guides every JSON block is a stage config. Other docs also show payloads
            // (what Meta receives, shortened): there only arrays are stage configs.
            let entries = match &parsed {
                Ok(Value::Array(entries)) => entries,
                _ if !guide => continue,
                Ok(_) => {
                    problems.push(format!("{path}:{line}: a stage config is a JSON array"));
                    continue;
                }
                Err(e) => {
                    problems.push(format!("{path}:{line}: not JSON: {e}"));
                    continue;
                }
            };
            let value = Value::Array(entries.clone());
            configs += 1;
            for entry in entries {
                for key in entry.as_object().into_iter().flat_map(|o| o.keys()) {
                    if !CONFIG_KEYS.contains(&key.as_str()) {
                        problems.push(format!(
                            "{path}:{line}: key {key:?} is not one the worker reads"
                        ));
                    }
                }
            }
            let enabled = entries
                .iter()
                .filter(|e| event_config::flag(e.get("enabled"), true))
                .count();
            let parsed = event_config::parse(&value);
            if parsed.len() != enabled {
                problems.push(format!(
                    "{path}:{line}: {} enabled entries, the parser read {}",
                    enabled,
                    parsed.len()
                ));
            }
            for result in parsed {
                if let Err(issue) = result {
                    problems.push(format!(
                        "{path}:{line}: the worker would alert {}: {}",
                        issue.cause.code(),
                        issue.message
                    ));
                }
            }
        }
        if guide && configs < 5 {
            problems.push(format!(
                "{path}: only {configs} ```json stage configs; the guides show at least 5"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn quoted_alerts_are_the_texts_the_code_writes() {
    let mut problems = Vec::new();
    for (path, locale) in checked_docs() {
        let doc = read(path);
        for (cause, quote, line) in quoted_alerts(&doc) {
            let Some(cause) = cause else {
                problems.push(format!(
                    "{path}:{line}: a quoted alert under a heading that names no alert code"
                ));
                continue;
            };
            let filled = fill(&quote, locale);
            let want = rendered(cause, locale);
            if !want.contains(&filled) {
                problems.push(format!(
                    "{path}:{line}: the quoted `{}` alert is not the {locale} text; with the sample values\n  the doc gives: {filled}\n  the code says: {}",
                    cause.code(),
                    want[0]
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_guides_document_every_alert_cause() {
    let mut problems = Vec::new();
    for (path, _) in GUIDES {
        let doc = read(path);
        let quoted: BTreeSet<&str> = quoted_alerts(&doc)
            .into_iter()
            .filter_map(|(c, _, _)| c.map(AlertCause::code))
            .collect();
        for cause in AlertCause::ALL {
            if !quoted.contains(cause.code()) {
                problems.push(format!(
                    "{path} has no `{}` heading with its quoted alert text",
                    cause.code()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Backquoted words that look like event names (`Purchase`, `QualifiedLead`): a capital letter,
/// then letters only. Keys such as `custom_event_name` or `business_messaging` are not.
fn event_like_names(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.starts_with(|c: char| c.is_ascii_uppercase())
                && w.chars().all(|c| c.is_ascii_alphabetic())
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_catalog_tables_name_catalog_events_and_all_of_them() {
    let mut problems = Vec::new();
    for (path, locale) in GUIDES {
        let doc = read(path);
        let (Some(begin), Some(end)) = (doc.find(EVENTS_BEGIN), doc.find(EVENTS_END)) else {
            problems.push(format!("{path} lacks {EVENTS_BEGIN} … {EVENTS_END}"));
            continue;
        };
        let region = &doc[begin..end];
        let mut named = BTreeSet::new();
        for row in region.lines().filter(|l| l.starts_with('|')) {
            for name in event_like_names(row) {
                if catalog::lookup(&name).is_none() {
                    problems.push(format!(
                        "{path}: the catalog tables name `{name}`, which is not in the catalog"
                    ));
                }
                named.insert(name);
            }
        }
        for def in catalog::all() {
            // Each event's own row: its name, then the catalog's label and "when to use" in the
            // guide's language (what the console's stage form shows), then, for the
            // business-messaging-only names, the standard event to use instead.
            let start = format!("| `{}` |", def.name);
            let mut want = format!(
                "{start} {} | {} |",
                def.label.get(locale),
                def.when_to_use.get(locale)
            );
            if def.kind == EventKind::BusinessMessagingOnly {
                want.push_str(&format!(" `{}` |", catalog::standard_alternative(def.name)));
            }
            match region.lines().find(|l| l.starts_with(&start)) {
                None => problems.push(format!(
                    "{path}: the catalog tables have no row for `{}`; expected:\n{want}",
                    def.name
                )),
                Some(row) if row.trim_end() != want => problems.push(format!(
                    "{path}: the row of `{}` is not the catalog's; expected:\n{want}",
                    def.name
                )),
                Some(_) => {}
            }
        }
        assert!(!named.is_empty(), "{path}: no event names in the tables");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_three_languages_have_the_same_sections() {
    let sections: Vec<(&str, Vec<String>)> = GUIDES
        .iter()
        .map(|(path, _)| {
            let ids = headings(&read(path))
                .iter()
                .map(|(level, text)| section_id(*level, text))
                .collect();
            (*path, ids)
        })
        .collect();
    let (first, want) = &sections[0];
    assert!(
        want.len() > 40,
        "{first}: only {} headings; the guide has a section per alert cause",
        want.len()
    );
    // Every section below the title is numbered or names an alert code.
    for id in want.iter().skip(1) {
        assert!(
            id.split_once(' ').is_some_and(|(_, rest)| !rest.is_empty()),
            "{first}: a heading with neither a number nor an alert code: {id:?}"
        );
    }
    for (path, ids) in &sections[1..] {
        assert_eq!(
            ids, want,
            "{path} does not have the sections of {first}, in the same order"
        );
    }
}

#[test]
fn the_readme_links_the_guides_first() {
    let readme = read("README.md");
    let docs = readme
        .split_once("## Documentation")
        .map(|(_, rest)| rest)
        .expect("README has a Documentation section");
    let first_links: Vec<&str> = docs
        .lines()
        .filter(|l| l.starts_with("| [") || l.starts_with("- ["))
        .take(1)
        .collect();
    let first = first_links
        .first()
        .expect("the documentation list has rows");
    for (path, _) in GUIDES {
        assert!(
            first.contains(&format!("({path})")),
            "the first documentation row of README.md does not link {path}: {first}"
        );
    }
}

/// The anchor GitHub gives a heading: lowercase, letters, digits, `-` and `_` kept, spaces
/// become `-`, everything else dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The targets of the Markdown links `](target)` of a doc, outside code blocks.
fn link_targets(doc: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        for (_, rest) in line.match_indices("](").map(|(i, _)| line.split_at(i + 2)) {
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

#[test]
fn the_guides_links_lead_somewhere() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, _) in GUIDES {
        let doc = read(path);
        let anchors: BTreeSet<String> = headings(&doc)
            .iter()
            .map(|(_, text)| github_anchor(text))
            .collect();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(path)
            .parent()
            .unwrap()
            .to_path_buf();
        for target in link_targets(&doc) {
            checked += 1;
            if target.starts_with("http") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            if !file.is_empty() && !dir.join(file).exists() {
                problems.push(format!("{path}: the link {target} leads to no file"));
            }
            if file.is_empty() && !anchors.contains(anchor) {
                problems.push(format!("{path}: the link {target} leads to no heading"));
            }
        }
    }
    assert!(checked > 30, "only {checked} links found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
