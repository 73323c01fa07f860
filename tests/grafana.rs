//! The Grafana dashboard, the alert rules and the operations guide stay true to what the worker
//! exports.
//!
//! - A worker runs in-process against the Graph API sandbox (deliveries, a 5xx retry, a
//!   throttle, an invalid token, configuration alerts), `/metrics` is scraped, and every query
//!   of grafana/dashboards/stagecast.json (panels and template variables) may only name series,
//!   labels and label values present in that scrape. Every series in the scrape must be in
//!   `stagecast::metrics_catalog`, with its type and labels, and vice versa.
//! - When a `prometheus` binary is installed (Debian: `apt-get install prometheus`), a real
//!   Prometheus scrapes the worker every second and every panel query must return data through
//!   its HTTP API, and `promtool check rules` must accept grafana/alerts.yml. Without them,
//!   those parts are skipped with a message on the real stderr (shown even when the test
//!   passes), unless `STAGECAST_REQUIRE_PROMETHEUS=1` (set by `.ci/run`) makes that a failure.
//! - `/healthz` answers; `/readyz` is 200 only with migrations current and LISTEN connected,
//!   and 503 while the database is too slow to answer or LISTEN is down.
//! - docs/operations.md: the metrics and configuration references are generated (from the
//!   catalog and from clap), and the runbook covers every alert cause; grafana/alerts.yml only
//!   names catalogued series.
//!
//! The Prometheus recorder is process-global, which is why this is a test binary of its own.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use stagecast::alerts::AlertCause;
use stagecast::metrics_catalog::{MetricDef, MetricType, CATALOG};
use stagecast::queue::WorkerStats;
use stagecast_sandbox::Fault;
use support::process::KillOnDrop;
use support::stack::Stack;
use support::wait::{wait_until, DEADLINE};

// ------------------------------------------------------------------------------------------
// Files

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    let path = repo_file(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("grafana/dashboards/stagecast.json"))
        .expect("grafana/dashboards/stagecast.json is valid JSON")
}

/// Every panel, including those nested in collapsed rows.
fn panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// (where, PromQL) of every panel target.
fn panel_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                let title = p["title"].as_str().unwrap_or("?");
                let r = t["refId"].as_str().unwrap_or("?");
                out.push((format!("panel {title:?} target {r}"), expr.to_string()));
            }
        }
    }
    out
}

/// Query variables: (name, selector, label) from `label_values(selector, label)`.
fn variable_queries(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("?").to_string();
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name} has no query"));
        let inner = q
            .trim()
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: only label_values(…) is supported: {q}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("variable {name}: label_values needs a metric: {q}"));
        out.push((name, selector.trim().to_string(), label.trim().to_string()));
    }
    out
}

/// Names of the dashboard's variables.
fn variable_names(d: &Value) -> Vec<String> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect()
}

/// Grafana's interval variables become fixed windows (long enough for 1 s test scrapes, and
/// for rates to see at least two samples); the dashboard's own variables become "all" (`.*`).
fn substitute(expr: &str, variables: &[String]) -> String {
    let mut s = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h");
    for v in variables {
        s = s
            .replace(&format!("${{{v}}}"), ".*")
            .replace(&format!("${v}"), ".*");
    }
    assert!(
        !s.contains('$'),
        "unknown variable in {expr:?} (defined: {variables:?})"
    );
    s
}

// ------------------------------------------------------------------------------------------
// The exposition format

#[derive(Debug, Default)]
struct Scrape {
    /// Sample name → label sets.
    samples: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    /// Family name → TYPE.
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                if let (Some(n), Some(t)) = (it.next(), it.next()) {
                    s.types.insert(n.to_string(), t.to_string());
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, labels) = parse_sample(line)
                .unwrap_or_else(|| panic!("unparseable exposition line: {line:?}"));
            s.samples.entry(name).or_default().push(labels);
        }
        s
    }

    fn has_label(&self, metric: &str, label: &str) -> bool {
        self.samples
            .get(metric)
            .is_some_and(|sets| sets.iter().any(|l| l.contains_key(label)))
    }

    fn has_value(&self, metric: &str, label: &str, value: &str) -> bool {
        self.samples.get(metric).is_some_and(|sets| {
            sets.iter()
                .any(|l| l.get(label).is_some_and(|v| v == value))
        })
    }
}

/// `name{a="x",b="y"} value` → (name, labels).
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>)> {
    let end = line.find(['{', ' '])?;
    let name = line[..end].to_string();
    let mut labels = BTreeMap::new();
    let rest = &line[end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.chars().peekable();
        loop {
            while chars.peek() == Some(&',') || chars.peek() == Some(&' ') {
                chars.next();
            }
            if chars.peek() == Some(&'}') {
                break;
            }
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if chars.next() != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key.trim().to_string(), value);
        }
    }
    Some((name, labels))
}

/// A sample value, summed over the label sets that contain `labels`.
fn value_of(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, ls) = parse_sample(l)?;
            let v: f64 = l.rsplit(' ').next()?.parse().ok()?;
            (name == metric
                && labels
                    .iter()
                    .all(|(k, want)| ls.get(*k).map(String::as_str) == Some(want)))
            .then_some(v)
        })
        .sum()
}

// ------------------------------------------------------------------------------------------
// PromQL: just enough to find the series a query selects.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num,
    Punct(String),
}

fn lex(expr: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    s.push(ch);
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(format!("unterminated string in {expr:?}"));
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["=~", "!~", "!=", "==", "<=", ">="].contains(&two.as_str()) {
                out.push(Tok::Punct(two));
                i += 2;
            } else if "(){}[],=<>+-*/%^@".contains(c) {
                out.push(Tok::Punct(c.to_string()));
                i += 1;
            } else {
                return Err(format!("unexpected {c:?} in {expr:?}"));
            }
        }
    }
    Ok(out)
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "ln",
    "log2",
    "log10",
    "minute",
    "month",
    "predict_linear",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "time",
    "timestamp",
    "vector",
    "year",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2"];
/// Labels Prometheus attaches at scrape time (absent from the worker's own exposition).
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// (label, operator, value) of one label matcher.
type Matcher = (String, String, String);

#[derive(Debug, Default)]
struct Selected {
    /// (metric, its label matchers)
    selectors: Vec<(String, Vec<Matcher>)>,
    /// Labels named in by/without/on/ignoring/group_* clauses.
    grouping: BTreeSet<String>,
}

fn select(expr: &str) -> Result<Selected, String> {
    let toks = lex(expr)?;
    let mut out = Selected::default();
    let mut i = 0;
    let punct = |t: Option<&Tok>, p: &str| matches!(t, Some(Tok::Punct(x)) if x == p);
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(w) => {
                let next = toks.get(i + 1);
                if GROUPING.contains(&w.as_str()) {
                    i += 1;
                    if punct(toks.get(i), "(") {
                        i += 1;
                        while i < toks.len() && !punct(toks.get(i), ")") {
                            if let Tok::Ident(l) = &toks[i] {
                                out.grouping.insert(l.clone());
                            }
                            i += 1;
                        }
                        i += 1;
                    }
                } else if KEYWORDS.contains(&w.as_str()) || AGGREGATIONS.contains(&w.as_str()) {
                    i += 1;
                } else if punct(next, "(") {
                    if !FUNCTIONS.contains(&w.as_str()) {
                        return Err(format!("unknown function {w}() in {expr:?}"));
                    }
                    i += 1;
                } else {
                    let mut matchers = Vec::new();
                    i += 1;
                    if punct(toks.get(i), "{") {
                        i += 1;
                        loop {
                            match (toks.get(i), toks.get(i + 1), toks.get(i + 2)) {
                                (Some(Tok::Punct(p)), _, _) if p == "}" => {
                                    i += 1;
                                    break;
                                }
                                (Some(Tok::Punct(p)), _, _) if p == "," => i += 1,
                                (Some(Tok::Ident(l)), Some(Tok::Punct(op)), Some(Tok::Str(v))) => {
                                    matchers.push((l.clone(), op.clone(), v.clone()));
                                    i += 3;
                                }
                                _ => return Err(format!("bad label matchers in {expr:?}")),
                            }
                        }
                    }
                    out.selectors.push((w.clone(), matchers));
                }
            }
            Tok::Punct(p) if p == "[" => {
                while i < toks.len() && !punct(toks.get(i), "]") {
                    i += 1;
                }
                i += 1;
            }
            Tok::Punct(p) if p == "{" => {
                return Err(format!("a selector without a metric name in {expr:?}"));
            }
            _ => i += 1,
        }
    }
    if out.selectors.is_empty() {
        return Err(format!("{expr:?} selects no series"));
    }
    Ok(out)
}

/// Plain label values a matcher requires (`a|b` → [a, b]); none for real regexes.
fn literal_alternatives(op: &str, value: &str) -> Vec<String> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c))
    };
    match op {
        "=" => vec![value.to_string()],
        "=~" if value.split('|').all(plain) => value.split('|').map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// What in `expr` the scrape does not have: metrics, labels, label values.
fn missing_in_scrape(expr: &str, scrape: &Scrape) -> Vec<String> {
    let sel = match select(expr) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for (metric, matchers) in &sel.selectors {
        if !scrape.samples.contains_key(metric) {
            problems.push(format!("metric {metric} is not exported"));
            continue;
        }
        for (label, op, value) in matchers {
            if TARGET_LABELS.contains(&label.as_str()) {
                continue;
            }
            if !scrape.has_label(metric, label) {
                problems.push(format!("{metric} has no label {label}"));
                continue;
            }
            for v in literal_alternatives(op, value) {
                if !scrape.has_value(metric, label, &v) {
                    problems.push(format!("{metric} has no series with {label}={v:?}"));
                }
            }
        }
    }
    for label in &sel.grouping {
        let known = TARGET_LABELS.contains(&label.as_str())
            || sel
                .selectors
                .iter()
                .any(|(m, _)| scrape.has_label(m, label));
        if !known {
            problems.push(format!(
                "grouping label {label} is on none of the selected series"
            ));
        }
    }
    problems
}

// ------------------------------------------------------------------------------------------
// The catalog

/// The catalog family a sample name belongs to (histograms expose _bucket/_sum/_count).
fn family(sample: &str) -> Option<&'static MetricDef> {
    if let Some(def) = CATALOG
        .iter()
        .find(|d| d.name == sample && d.kind != MetricType::Histogram)
    {
        return Some(def);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = sample.strip_suffix(suffix)?;
        CATALOG
            .iter()
            .find(|d| d.name == base && d.kind == MetricType::Histogram)
    })
}

/// The sample names a catalogued family is queried by.
fn sample_names(def: &MetricDef) -> Vec<String> {
    match def.kind {
        MetricType::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{}{s}", def.name))
            .collect(),
        _ => vec![def.name.to_string()],
    }
}

fn check_scrape_against_catalog(scrape: &Scrape) -> Vec<String> {
    let mut problems = Vec::new();
    for (sample, sets) in &scrape.samples {
        if !sample.starts_with("stagecast_") {
            problems.push(format!("{sample} lacks the stagecast_ prefix"));
            continue;
        }
        let Some(def) = family(sample) else {
            problems.push(format!(
                "{sample} is exported but not in stagecast::metrics_catalog::CATALOG"
            ));
            continue;
        };
        match scrape.types.get(def.name) {
            Some(t) if t == def.kind.as_str() => {}
            other => problems.push(format!(
                "{} is exported as {other:?}, catalogued as {}",
                def.name,
                def.kind.as_str()
            )),
        }
        for labels in sets {
            let names: BTreeSet<&str> = labels
                .keys()
                .map(String::as_str)
                .filter(|l| !(*l == "le" && sample.ends_with("_bucket")))
                .collect();
            let want: BTreeSet<&str> = def.labels.iter().copied().collect();
            if names != want {
                problems.push(format!(
                    "{sample} has labels {names:?}, catalogued {want:?}"
                ));
            }
        }
    }
    for def in CATALOG {
        for name in sample_names(def) {
            if !scrape.samples.contains_key(&name) {
                problems.push(format!("{name} is catalogued but not in the scrape"));
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

// ------------------------------------------------------------------------------------------
// Driving traffic

/// HTTP client for the endpoints the tests start on 127.0.0.1: never through a proxy the
/// environment may name.
fn local_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

async fn get(url: &str) -> (u16, String) {
    let r = local_client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Deliveries (one bulk update), a 5xx retry, a throttle, invalid identifiers, a rejected event,
/// a configuration alert and an invalid token (held): every outcome the dashboard shows.
async fn drive_traffic(s: &Stack) {
    s.seed_standard().await;
    for id in 1..=3 {
        s.customer(
            id,
            &format!("c{id}@example.com"),
            &format!("+55119999900{id:02}"),
            None,
        )
        .await;
    }
    // An invalid email is dropped (pii_rejected{field="em"}); the phone still matches.
    s.customer(4, "not-an-email", "+5511999990004", None).await;
    s.crm_exec("UPDATE customers SET stage_id = 1 WHERE id BETWEEN 1 AND 4")
        .await;
    s.drained().await;

    s.customer(5, "c5@example.com", "+5511999990005", None)
        .await;
    s.sandbox.push_fault(Fault::ServerError(503));
    s.move_to(5, 1).await;
    s.drained().await;

    s.customer(6, "c6@example.com", "+5511999990006", None)
        .await;
    s.sandbox.push_fault(Fault::Throttle {
        code: 80004,
        subcode: Some(2446079),
        regain_minutes: None,
    });
    s.move_to(6, 1).await;
    s.drained().await;

    // No campaign: an alert before anything is sent.
    s.crm_exec(
        "INSERT INTO customers (id, name, email, phone) VALUES (7, 'Sem Campanha', 'c7@example.com', '+5511999990007'); \
         INSERT INTO chats (customer_id, channel, external_id) VALUES (7, 'whatsapp', 'chat-7')",
    )
    .await;
    s.move_to(7, 1).await;
    s.drained().await;

    // Meta rejects one event: the job fails.
    s.customer(8, "c8@example.com", "+5511999990008", None)
        .await;
    s.sandbox.push_fault(Fault::Reject {
        http: 400,
        code: 100,
        subcode: Some(2804001),
        message: "Invalid parameter".into(),
    });
    s.move_to(8, 1).await;
    s.drained().await;
    assert_eq!(s.alert_causes(7).await, ["no_campaign"]);
    assert_eq!(s.alert_causes(8).await, ["api_error"]);

    // Last, as it holds the pixel for good: an invalid token (the job waits, held).
    s.customer(9, "c9@example.com", "+5511999990009", None)
        .await;
    s.sandbox.push_fault(Fault::InvalidToken);
    s.move_to(9, 1).await;
    wait_until("the token_invalid alert", DEADLINE, || async {
        s.alert_causes(9).await == ["token_invalid"]
    })
    .await;
}

// ------------------------------------------------------------------------------------------
// A real Prometheus, when installed

struct Prometheus {
    // Declared first so the process is killed before its data directory is removed.
    _child: KillOnDrop,
    url: String,
    _dir: tempfile::TempDir,
}

/// `STAGECAST_REQUIRE_PROMETHEUS=1` (set by `.ci/run`): the real-Prometheus and promtool checks
/// must run, so a missing binary fails the test instead of skipping it.
fn prometheus_required() -> bool {
    std::env::var("STAGECAST_REQUIRE_PROMETHEUS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A part of a test that cannot run here: fails when `.ci/run` requires it, otherwise says so
/// on the test's real stderr (not the captured output, which a passing test never shows).
fn skip_or_fail(part: &str, why: &str) {
    if prometheus_required() {
        panic!(
            "STAGECAST_REQUIRE_PROMETHEUS is set, but {part} cannot run: {why}. \
             Install it (Debian: apt-get install prometheus) or unset the variable."
        );
    }
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "\nSKIPPED {part} ({why}); set STAGECAST_REQUIRE_PROMETHEUS=1 to make this an error\n"
    );
}

fn prometheus_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("STAGECAST_PROMETHEUS").filter(|p| !p.is_empty()) {
        if p == "off" {
            return Err("STAGECAST_PROMETHEUS=off".into());
        }
        return Ok(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("prometheus"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/prometheus")])
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "no prometheus binary on PATH or at /usr/bin/prometheus (Debian/Ubuntu: apt-get install prometheus; or set STAGECAST_PROMETHEUS)".to_string()
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second; waits until it has scraped it once.
    async fn start(binary: &Path, target: SocketAddr) -> Result<Prometheus, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: stagecast\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let port = free_port();
        let child = support::process::hermetic_std(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let p = Prometheus {
            _child: KillOnDrop(child),
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = p.query("stagecast_build_info").await {
                if !r.is_empty() {
                    return Ok(p);
                }
            }
            if Instant::now() > deadline {
                return Err("Prometheus did not scrape the worker within 30s".into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let r = local_client()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{expr}: {body}"));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

// ------------------------------------------------------------------------------------------
// Tests

/// (metric, labels, minimum value) the scrape must show.
type Expected = (&'static str, Vec<(&'static str, &'static str)>, f64);

#[tokio::test]
async fn every_dashboard_query_names_series_the_worker_exports() {
    // Installed before anything is counted, as `stagecast run` does.
    stagecast::ops::prometheus();
    let s = Stack::new().await;
    let mut tuning = s.tuning();
    // 2 requests/s per pixel with no burst: back-to-back requests wait for the limiter.
    tuning.meta.requests_per_second = std::num::NonZeroU32::new(2).unwrap();
    tuning.meta.burst = std::num::NonZeroU32::new(1).unwrap();
    let worker = s.start_worker_with(tuning);
    let ops = stagecast::ops::serve(
        "127.0.0.1:0".parse().unwrap(),
        s.store.clone(),
        Arc::clone(worker.stats()),
    )
    .await
    .expect("ops endpoint starts");

    let prometheus = match prometheus_binary() {
        Ok(bin) => match Prometheus::start(&bin, ops.addr).await {
            Ok(p) => Some(p),
            Err(e) => panic!("{} is installed but did not work: {e}", bin.display()),
        },
        Err(why) => {
            skip_or_fail("the real-Prometheus part of tests/grafana.rs", &why);
            None
        }
    };

    drive_traffic(&s).await;

    // What the traffic must have produced (the recorder is process-global: at least). Counters
    // are bumped right after each write-back commits and the queue gauges on the maintenance
    // tick (100 ms in tests), so wait until the scrape shows all of them.
    let expected: Vec<Expected> = vec![
        (
            "stagecast_events_total",
            vec![("outcome", "delivered")],
            6.0,
        ),
        ("stagecast_events_total", vec![("outcome", "retry")], 1.0),
        (
            "stagecast_events_total",
            vec![("outcome", "throttled")],
            1.0,
        ),
        ("stagecast_events_total", vec![("outcome", "failed")], 1.0),
        ("stagecast_events_total", vec![("outcome", "held")], 1.0),
        (
            "stagecast_alerts_total",
            vec![("cause", "token_invalid")],
            1.0,
        ),
        (
            "stagecast_alerts_total",
            vec![("cause", "no_campaign")],
            1.0,
        ),
        (
            "stagecast_jobs_completed_total",
            vec![("kind", "stage_change"), ("outcome", "done")],
            6.0,
        ),
        (
            "stagecast_jobs_completed_total",
            vec![("kind", "stage_change"), ("outcome", "retry")],
            1.0,
        ),
        (
            "stagecast_jobs_completed_total",
            vec![("kind", "stage_change"), ("outcome", "throttled")],
            1.0,
        ),
        (
            "stagecast_jobs_completed_total",
            vec![("kind", "stage_change"), ("outcome", "failed")],
            1.0,
        ),
        (
            "stagecast_jobs_completed_total",
            vec![("kind", "stage_change"), ("outcome", "held")],
            1.0,
        ),
        (
            "stagecast_jobs_claimed_total",
            vec![("kind", "stage_change_batch")],
            1.0,
        ),
        (
            "stagecast_queue_jobs",
            vec![("kind", "stage_change"), ("status", "failed")],
            1.0,
        ),
        ("stagecast_pii_rejected_total", vec![("field", "em")], 1.0),
        (
            "stagecast_rate_limit_waits_total",
            vec![("reason", "limiter")],
            1.0,
        ),
        (
            "stagecast_request_duration_seconds_count",
            vec![("outcome", "rejected")],
            1.0,
        ),
        (
            "stagecast_request_duration_seconds_count",
            vec![("outcome", "held")],
            1.0,
        ),
        (
            "stagecast_build_info",
            vec![("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        ),
    ];
    let missing = |text: &str| -> Vec<String> {
        expected
            .iter()
            .filter_map(|(metric, labels, min)| {
                let v = value_of(text, metric, labels);
                (v < *min).then(|| format!("{metric}{labels:?} = {v}, expected at least {min}"))
            })
            .collect()
    };
    let metrics_url = format!("http://{}/metrics", ops.addr);
    let deadline = Instant::now() + DEADLINE;
    let text = loop {
        let (status, text) = get(&metrics_url).await;
        assert_eq!(status, 200);
        let missing = missing(&text);
        if missing.is_empty() {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the scrape never showed what the traffic produced:\n  {}\n{text}",
            missing.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let scrape = Scrape::parse(&text);

    let problems = check_scrape_against_catalog(&scrape);
    assert!(
        problems.is_empty(),
        "the scrape and stagecast::metrics_catalog disagree:\n  {}",
        problems.join("\n  ")
    );

    let d = dashboard();
    let vars = variable_names(&d);
    let queries = panel_queries(&d);
    assert!(queries.len() >= 20, "only {} panel queries", queries.len());
    let mut problems = Vec::new();
    for (place, expr) in &queries {
        for p in missing_in_scrape(&substitute(expr, &vars), &scrape) {
            problems.push(format!("{place}: {p}\n    {expr}"));
        }
    }
    for (name, selector, label) in variable_queries(&d) {
        let selector = substitute(&selector, &vars);
        for p in missing_in_scrape(&selector, &scrape) {
            problems.push(format!("variable {name}: {p}"));
        }
        let sel = select(&selector).unwrap();
        let metric = &sel.selectors[0].0;
        if !TARGET_LABELS.contains(&label.as_str()) && !scrape.has_label(metric, &label) {
            problems.push(format!("variable {name}: {metric} has no label {label}"));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard queries name what the worker does not export:\n{}",
        problems.join("\n")
    );

    if let Some(prom) = &prometheus {
        // Rates need two scrapes after the traffic (1 s apart): poll until every panel query
        // and variable has data, or report the ones that never got any.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut empty = Vec::new();
            for (place, expr) in &queries {
                let q = substitute(expr, &vars);
                match prom.query(&q).await {
                    Ok(r) if !r.is_empty() => {}
                    Ok(_) => empty.push(format!("{place}: no data\n    {q}")),
                    Err(e) => empty.push(format!("{place}: {e}")),
                }
            }
            for (name, selector, label) in variable_queries(&d) {
                let q = format!("count by ({label}) ({})", substitute(&selector, &vars));
                let values = prom.query(&q).await.unwrap_or_default();
                if !values.iter().any(|v| v["metric"][&label].is_string()) {
                    empty.push(format!("variable {name}: no values from {q}"));
                }
            }
            // And the headline number is real, not just a series of zeros.
            let delivered = prom
                .query(r#"sum(increase(stagecast_events_total{outcome="delivered"}[1m]))"#)
                .await
                .unwrap_or_default();
            let v: f64 = delivered
                .first()
                .and_then(|d| d["value"][1].as_str())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            if v <= 0.0 {
                empty.push(format!("Prometheus saw no deliveries: {delivered:?}"));
            }
            if empty.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "panels without data in a real Prometheus:\n{}",
                empty.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!(
            "real Prometheus answered all {} panel queries with data",
            queries.len()
        );
    }
    drop(prometheus);
    worker.shutdown().await.unwrap();
}

async fn wait_ready(addr: SocketAddr, want: u16) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = get(&format!("http://{addr}/readyz")).await;
        if status == want {
            return serde_json::from_str(&body).expect("/readyz answers JSON");
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status} (wanted {want}): {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_is_200_with_migrations_current_and_the_listener_connected() {
    let s = Stack::new().await;
    let worker = s.start_worker();
    let ops = stagecast::ops::serve(
        "127.0.0.1:0".parse().unwrap(),
        s.store.clone(),
        Arc::clone(worker.stats()),
    )
    .await
    .unwrap();

    let (status, body) = get(&format!("http://{}/healthz", ops.addr)).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let ready = wait_ready(ops.addr, 200).await;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["database"], true);
    assert_eq!(ready["migrations_current"], true);
    assert_eq!(ready["listener_connected"], true);

    // A stopped worker has no LISTEN connection: not ready (it would not wake on new jobs).
    worker.shutdown().await.unwrap();
    let ready = wait_ready(ops.addr, 503).await;
    assert_eq!(ready["listener_connected"], false);
    assert_eq!(ready["migrations_current"], true);
    let (status, _) = get(&format!("http://{}/healthz", ops.addr)).await;
    assert_eq!(status, 200, "/healthz only says the process answers");
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_not_migrated() {
    let s = Stack::new().await;
    // Isolate the migration condition: the listener counts as connected.
    let stats = Arc::new(WorkerStats::default());
    stats
        .listener_connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let ops = stagecast::ops::serve("127.0.0.1:0".parse().unwrap(), s.store.clone(), stats)
        .await
        .unwrap();
    wait_ready(ops.addr, 200).await;

    // The binary is newer than the schema: the newest migration is not applied (the superuser
    // edits sqlx's record to get there).
    s.exec(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .await;
    let ready = wait_ready(ops.addr, 503).await;
    assert_eq!(ready["database"], true);
    assert_eq!(ready["migrations_current"], false);

    // Never migrated at all: reachable, but not ready, and the detail says what to run.
    s.exec("DROP TABLE _sqlx_migrations").await;
    let ready = wait_ready(ops.addr, 503).await;
    assert_eq!(ready["database"], true, "{ready}");
    assert_eq!(ready["migrations_current"], false);
    assert!(
        ready["detail"]
            .as_str()
            .unwrap()
            .contains("stagecast migrate"),
        "{ready}"
    );
}

#[tokio::test]
async fn readyz_is_503_while_the_database_does_not_answer_in_time() {
    let s = Stack::new().await;
    let stats = Arc::new(WorkerStats::default());
    stats
        .listener_connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let ops = stagecast::ops::serve("127.0.0.1:0".parse().unwrap(), s.store.clone(), stats)
        .await
        .unwrap();
    wait_ready(ops.addr, 200).await;

    // An admin's open transaction holds a lock the readiness query waits for: the database is
    // reachable but does not answer within the probe's 2 s.
    let mut locker = s.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let ready = wait_ready(ops.addr, 503).await;
    assert_eq!(ready["database"], false, "{ready}");
    assert!(
        ready["detail"]
            .as_str()
            .unwrap()
            .contains("did not answer within 2s"),
        "{ready}"
    );
    locker.rollback().await.unwrap();
    let ready = wait_ready(ops.addr, 200).await;
    assert_eq!(ready["database"], true);
}

#[tokio::test]
async fn readyz_is_503_while_listen_is_down_and_ready_again_once_it_reconnects() {
    use std::str::FromStr as _;
    let s = Stack::new().await;
    let worker = s.start_worker();
    // The probe gets a pool of its own (named, so it can be spared below): the database stays
    // reachable for it while the worker's connections, LISTEN included, are cut. It is the
    // worker's /readyz, so it connects as the worker role, as `stagecast run` does.
    let probe_pool = stagecast::store::pool_options()
        .max_connections(2)
        .connect_with(
            sqlx::postgres::PgConnectOptions::from_str(&s.db.worker_url)
                .unwrap()
                .application_name("readyz-probe"),
        )
        .await
        .unwrap();
    let ops = stagecast::ops::serve(
        "127.0.0.1:0".parse().unwrap(),
        stagecast::store::Store::new(probe_pool),
        Arc::clone(worker.stats()),
    )
    .await
    .unwrap();
    wait_ready(ops.addr, 200).await;

    // The database refuses new connections, and every connection of the worker is terminated:
    // LISTEN is gone and cannot come back. (ALTER DATABASE … ALLOW_CONNECTIONS cannot run
    // inside that database, hence the server's admin connection.)
    let db = &s.db.name;
    let mut admin = admin_conn().await;
    sqlx::raw_sql(&format!(
        "ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS false"
    ))
    .execute(&mut *admin)
    .await
    .unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
          WHERE datname = $1 AND application_name <> 'readyz-probe'",
    )
    .bind(db)
    .fetch_all(&mut *admin)
    .await
    .unwrap();
    assert!(!terminated.is_empty(), "the worker's connections were cut");
    let ready = wait_ready(ops.addr, 503).await;
    assert_eq!(ready["listener_connected"], false, "{ready}");
    assert_eq!(
        ready["database"], true,
        "the probe still reaches it: {ready}"
    );

    sqlx::raw_sql(&format!(
        "ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS true"
    ))
    .execute(&mut *admin)
    .await
    .unwrap();
    let ready = wait_ready(ops.addr, 200).await;
    assert_eq!(ready["listener_connected"], true);
    worker.shutdown().await.unwrap();
}

/// A connection to the server's administration database.
async fn admin_conn() -> Box<sqlx::PgConnection> {
    use sqlx::Connection as _;
    let url = support::server().await.admin_url();
    Box::new(sqlx::PgConnection::connect(url).await.unwrap())
}

#[test]
fn the_dashboard_is_well_formed_and_shows_every_catalogued_metric() {
    let d = dashboard();
    assert_eq!(d["uid"], "stagecast");
    let vars = variable_names(&d);
    for v in ["datasource", "job", "destination"] {
        assert!(vars.iter().any(|n| n == v), "no ${v} variable");
    }
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_i64().expect("panel id")),
            "duplicate id at {title}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_i64().unwrap(), g["w"].as_i64().unwrap());
        assert!(
            x >= 0 && w > 0 && x + w <= 24,
            "{title} does not fit the grid"
        );
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{title} has no query"
            );
        }
    }
    let all: String = panel_queries(&d)
        .into_iter()
        .map(|(_, e)| e + "\n")
        .collect();
    for (place, expr) in panel_queries(&d) {
        // Multi-value variables expand to regexes: `=~` only.
        for (i, _) in expr.match_indices("\"$") {
            assert!(
                expr[..i].ends_with("=~"),
                "{place}: use =~ with a variable: {expr}"
            );
        }
        // Every query is scoped to the selected jobs.
        for (metric, matchers) in select(&substitute(&expr, &vars)).unwrap().selectors {
            assert!(
                matchers.iter().any(|(l, op, _)| l == "job" && op == "=~"),
                "{place}: {metric} is not filtered by job=~\"$job\""
            );
        }
    }
    // Per-pixel rows repeat over the destination variable.
    assert!(panels(&d).iter().any(|p| p["repeat"] == "destination"));
    for def in CATALOG {
        assert!(
            sample_names(def).iter().any(|n| all.contains(n.as_str())),
            "no panel shows {}",
            def.name
        );
    }
}

#[test]
fn alert_rules_name_only_catalogued_series() {
    let rules = read("grafana/alerts.yml");
    let exprs: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(str::trim)
        .collect();
    assert!(exprs.len() >= 8, "only {} rules", exprs.len());
    for expr in &exprs {
        for (metric, matchers) in select(expr).unwrap().selectors {
            if metric == "up" {
                continue; // Prometheus's own per-target series
            }
            let def =
                family(&metric).unwrap_or_else(|| panic!("{metric} is not catalogued: {expr}"));
            for (label, _, _) in matchers {
                assert!(
                    def.labels.contains(&label.as_str()) || TARGET_LABELS.contains(&label.as_str()),
                    "{metric} has no label {label}: {expr}"
                );
            }
        }
    }
    let doc = read("docs/operations.md");
    for anchor in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook: docs/operations.md#"))
    {
        let heading = doc
            .lines()
            .filter_map(|l| l.strip_prefix("### "))
            .any(|h| github_anchor(h) == anchor);
        assert!(heading, "docs/operations.md has no section #{anchor}");
    }
    match which("promtool") {
        Some(promtool) => {
            let out = support::process::hermetic_std(promtool)
                .args(["check", "rules"])
                .arg(repo_file("grafana/alerts.yml"))
                .output()
                .expect("promtool runs");
            assert!(
                out.status.success(),
                "promtool check rules failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => skip_or_fail(
            "promtool check rules of grafana/alerts.yml",
            "no promtool on PATH",
        ),
    }
}

/// `promtool test rules`: `StagecastTokenProblem` fires for every cause that holds or stops a
/// destination for its credentials or configuration (an invalid, missing or unreadable token,
/// and `request_refused`: Meta refusing a pixel's requests), per cause, and not for event-level
/// causes such as `api_error`.
#[test]
fn the_token_problem_rule_covers_request_refused() {
    let Some(promtool) = which("promtool") else {
        return skip_or_fail(
            "promtool test rules of grafana/alerts.yml",
            "no promtool on PATH",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let series = |cause: &str, platform: &str, values: &str| {
        format!(
            "      - series: 'stagecast_alerts_total{{cause=\"{cause}\", platform=\"{platform}\", job=\"stagecast\", instance=\"w1\"}}'\n        values: '{values}'\n"
        )
    };
    let expected = |cause: &str| {
        format!(
            "          - exp_labels: {{severity: warning, cause: {cause}}}\n            exp_annotations:\n              summary: \"{cause}: a destination's access token or configuration needs attention\"\n              runbook: docs/operations.md#token-invalid\n"
        )
    };
    let mut test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
        repo_file("grafana/alerts.yml").display()
    );
    for (cause, platform) in [
        ("request_refused", "facebook"),
        ("token_invalid", "tiktok"),
        ("token_missing", "facebook"),
        ("token_unreadable", "tiktok"),
    ] {
        test += &series(cause, platform, "0 1 1 1 1");
    }
    test += &series("api_error", "facebook", "0 5 9 9 9");
    test += "    alert_rule_test:\n      - eval_time: 4m\n        alertname: StagecastTokenProblem\n        exp_alerts:\n";
    for cause in [
        "request_refused",
        "token_invalid",
        "token_missing",
        "token_unreadable",
    ] {
        test += &expected(cause);
    }
    let file = dir.path().join("token_problem_test.yml");
    std::fs::write(&file, test).unwrap();
    let out = support::process::hermetic_std(promtool)
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// GitHub's heading anchors: lowercase, spaces to dashes, punctuation dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// docs/operations.md

fn between<'a>(doc: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = doc.find(begin)? + begin.len();
    let len = doc[start..].find(end)?;
    Some(doc[start..start + len].trim_matches('\n'))
}

/// Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn assert_generated(doc_name: &str, begin: &str, end: &str, expected: &str) {
    let doc = read(doc_name);
    let found = between(&doc, begin, end).unwrap_or_else(|| {
        panic!("{doc_name} lacks the markers; put this between them:\n{begin}\n{expected}{end}")
    });
    assert!(
        found == expected.trim_end_matches('\n'),
        "the generated table in {doc_name} is out of date; replace what is between\n{begin}\nand {end} with:\n{expected}"
    );
}

const METRICS_BEGIN: &str = "<!-- metrics:begin (generated from stagecast::metrics_catalog::CATALOG by tests/grafana.rs; do not edit by hand) -->";
const METRICS_END: &str = "<!-- metrics:end -->";

fn metrics_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for m in CATALOG {
        let labels = if m.labels.is_empty() {
            "—".to_string()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            labels,
            cell(m.help)
        ));
    }
    out
}

#[test]
fn operations_doc_metrics_reference_is_generated_from_the_catalog() {
    assert_generated(
        "docs/operations.md",
        METRICS_BEGIN,
        METRICS_END,
        &metrics_table(),
    );
}

const CONFIG_BEGIN: &str = "<!-- run-flags:begin (generated from `stagecast run --help` by tests/grafana.rs; do not edit by hand) -->";
const CONFIG_END: &str = "<!-- run-flags:end -->";

/// The settings of `stagecast run`, from the same clap definition `--help` prints.
fn config_table() -> String {
    use clap::CommandFactory;
    let mut cli = stagecast::cli::Cli::command();
    cli.build(); // propagates the global flags into `run`, as `--help` shows them
    let run = cli.find_subcommand("run").expect("a run subcommand");
    let mut out = String::from("| flag | environment | default | meaning |\n|---|---|---|---|\n");
    for arg in run.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        let flag = match arg.get_value_names() {
            Some(names) if takes_value => format!("`--{long} <{}>`", names.join(" ")),
            _ => format!("`--{long}`"),
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_else(|| "—".into());
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if !takes_value {
            "off".to_string()
        } else if defaults.is_empty() {
            if arg.is_required_set() {
                "required"
            } else {
                "—"
            }
            .to_string()
        } else if defaults.iter().all(String::is_empty) {
            "empty".to_string()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|_| takes_value)
            .map(|p| format!("`{}`", p.get_name()))
            .collect();
        if !possible.is_empty() {
            if !help.ends_with(['.', '!', '?']) {
                help.push('.');
            }
            help.push_str(&format!(" One of {}.", possible.join(", ")));
        }
        out.push_str(&format!(
            "| {flag} | {env} | {default} | {} |\n",
            cell(&help)
        ));
    }
    out
}

#[test]
fn operations_doc_configuration_reference_matches_run_help() {
    let table = config_table();
    // Sanity: the generator sees the flags `stagecast run --help` prints.
    for must in [
        "--database-url",
        "--metrics-addr",
        "STAGECAST_LOG_FORMAT",
        "--meta-rate-limit",
    ] {
        assert!(table.contains(must), "{must} missing from\n{table}");
    }
    assert_generated("docs/operations.md", CONFIG_BEGIN, CONFIG_END, &table);
}

#[test]
fn operations_doc_runbook_covers_every_alert_cause() {
    let doc = read("docs/operations.md");
    let runbook = doc
        .split("## Runbook")
        .nth(1)
        .expect("docs/operations.md has a ## Runbook section");
    for cause in AlertCause::ALL {
        assert!(
            runbook.contains(&format!("`{}`", cause.code())),
            "the runbook does not explain the alert cause `{}`",
            cause.code()
        );
    }
}
