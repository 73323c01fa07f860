//! docs/CONVERSION_EVENTS.md stays true to the code:
//!
//! - every JSON block is announced by an `<!-- example: KIND [NAME] [key=value] -->` marker, and
//!   each kind is checked: `input` and `crm-rows` describe CRM rows and the stage config (parsed
//!   with the worker's `utm_event` parser, every entry valid), `payload` is exactly what Meta's
//!   encoder (`AdPlatform::encode`, through the pipeline's own identity builder, fallbacks and
//!   event id) produces for that input, `request` is the request body around it, `utm_event` a
//!   stage config that parses, `graph-answer` an answer the retry logic classifies as the marker
//!   says;
//! - each payload example, posted as the sink posts it, is accepted by the Graph API sandbox;
//! - the error table is what `retry::classify_error` decides, row by row, and the rejected-event
//!   table what `retry::rejected_event_cause` raises;
//! - the alert table names exactly `AlertCause::ALL`, and every "alert `x`" in the page is a
//!   cause;
//! - every relative link points to a file that exists, and its anchor to a heading there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use stagecast::alerts::AlertCause;
use stagecast::pii::Normalizer;
use stagecast::pipeline::{event_config, identity, resolve};
use stagecast::platforms::event::{event_id, order_id, ConversionEvent};
use stagecast::platforms::meta::payload::request_body;
use stagecast::platforms::meta::retry::{classify_error, rejected_event_cause, ErrorClass};
use stagecast::platforms::meta::{ApiError, Classification, GraphResponse, Meta, MetaConfig};
use stagecast::platforms::platform::AdPlatform;
use stagecast::store::{PixelRow, StageChangeContext};

const DOC: &str = "CONVERSION_EVENTS.md";

fn doc() -> String {
    super::read_doc(DOC)
}

/// One fenced JSON block and the marker line announcing it.
struct Example {
    kind: String,
    name: Option<String>,
    attrs: BTreeMap<String, String>,
    json: Value,
    line: usize,
}

const MARKER: &str = "<!-- example:";

/// Every ```json block of the page, with its marker (the last non-blank line before the fence).
fn examples(doc: &str) -> Vec<Example> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```json" {
            i += 1;
            continue;
        }
        let start = i;
        let marker = lines[..start]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim())
            .filter(|l| l.starts_with(MARKER) && l.ends_with("-->"))
            .unwrap_or_else(|| {
                panic!(
                    "docs/{DOC}:{}: a JSON block without an `{MARKER} KIND … -->` line before it",
                    start + 1
                )
            });
        let mut words = marker[MARKER.len()..marker.len() - 3].split_whitespace();
        let kind = words.next().expect("marker has a kind").to_string();
        let mut name = None;
        let mut attrs = BTreeMap::new();
        for w in words {
            match w.split_once('=') {
                Some((k, v)) => {
                    attrs.insert(k.to_string(), v.to_string());
                }
                None => name = Some(w.to_string()),
            }
        }
        let end = start
            + 1
            + lines[start + 1..]
                .iter()
                .position(|l| l.trim() == "```")
                .expect("closed fence");
        let text = lines[start + 1..end].join("\n");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "docs/{DOC}:{}: the JSON block does not parse: {e}",
                start + 1
            )
        });
        out.push(Example {
            kind,
            name,
            attrs,
            json,
            line: start + 1,
        });
        i = end + 1;
    }
    out
}

/// The example of `kind` named `name`.
fn find<'a>(examples: &'a [Example], kind: &str, name: &str) -> &'a Example {
    examples
        .iter()
        .find(|e| e.kind == kind && e.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("docs/{DOC} has no `{kind} {name}` example"))
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn number(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

/// Panics on a key the test does not map: the doc cannot show a column that plays no part.
fn only_keys(what: &str, v: &Value, keys: &[&str]) {
    for k in v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is an object"))
        .keys()
    {
        assert!(
            keys.contains(&k.as_str()),
            "{what} shows `{k}`, which this test does not map onto the worker's input; known: {keys:?}"
        );
    }
}

/// One example's input: the CRM rows (the shared ones of `crm-rows`, the example's customer
/// columns merged over them), as the context query and `load_pixels` would return them.
struct Input {
    ctx: StageChangeContext,
    pixel: PixelRow,
    changed_at: DateTime<Utc>,
    now: DateTime<Utc>,
}

fn input(examples: &[Example], name: &str) -> Input {
    let base = examples
        .iter()
        .find(|e| e.kind == "crm-rows")
        .expect("a `crm-rows` example");
    let ex = find(examples, "input", name);
    only_keys(
        "crm-rows",
        &base.json,
        &["customer", "campaign", "changed_at", "sent_at"],
    );
    only_keys(
        &format!("input {name}"),
        &ex.json,
        &["customer", "stage", "pixel"],
    );
    let mut customer = base.json["customer"].as_object().cloned().unwrap();
    if let Some(Value::Object(over)) = ex.json.get("customer") {
        for (k, v) in over {
            customer.insert(k.clone(), v.clone());
        }
    }
    let customer = Value::Object(customer);
    const OPTIONAL: [&str; 4] = ["fbp", "birth_date", "gender", "lead_id"];
    let mut columns = vec![
        "id",
        "name",
        "email",
        "phone",
        "sale_price",
        "currency",
        "utm_campaign_id",
        "utm_metadata",
        "client_ip",
        "client_user_agent",
        "fbclid",
        "fbclid_at",
        "city",
        "state",
        "zip",
        "country",
    ];
    columns.extend(OPTIONAL);
    only_keys("customer", &customer, &columns);
    let campaign = &base.json["campaign"];
    only_keys(
        "campaign",
        campaign,
        &["id", "name", "pixel_id", "currency"],
    );
    let stage = &ex.json["stage"];
    only_keys(
        "stage",
        stage,
        &[
            "id",
            "name",
            "funnel_category",
            "default_value",
            "utm_event",
        ],
    );
    let pixel = &ex.json["pixel"];
    const PIXEL_OPTIONS: [&str; 5] = [
        "lead_event_source",
        "limited_data_use",
        "ldu_country",
        "ldu_state",
        "opt_out",
    ];
    let mut pixel_columns = vec![
        "id",
        "pixel_id",
        "action_source",
        "waba_id",
        "messaging_mode",
        "test_event_code",
    ];
    pixel_columns.extend(PIXEL_OPTIONS);
    only_keys("pixel", pixel, &pixel_columns);

    let time = |v: &Value, key: &str| {
        text(v, key).map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .unwrap_or_else(|e| panic!("{key}: {e}"))
                .with_timezone(&Utc)
        })
    };
    let changed_at = time(&base.json, "changed_at").expect("crm-rows has changed_at");
    let now = time(&base.json, "sent_at").expect("crm-rows has sent_at");
    let optional: Map<String, Value> = OPTIONAL
        .iter()
        .filter_map(|k| customer.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    // The customer's campaign is the example's campaign row (matched by `utm_campaign_id`).
    let has_campaign = int(&customer, "utm_campaign_id").is_some();
    assert_eq!(
        int(&customer, "utm_campaign_id"),
        int(campaign, "id"),
        "the examples' customer belongs to the campaign shown"
    );
    let ctx = StageChangeContext {
        job_id: 1,
        customer_id: int(&customer, "id"),
        name: text(&customer, "name"),
        email: text(&customer, "email"),
        phone: text(&customer, "phone"),
        sale_price: number(&customer, "sale_price"),
        currency: text(&customer, "currency"),
        utm_metadata: customer.get("utm_metadata").cloned(),
        client_ip: text(&customer, "client_ip"),
        client_user_agent: text(&customer, "client_user_agent"),
        fbclid: text(&customer, "fbclid"),
        fbclid_at: time(&customer, "fbclid_at"),
        ttclid: None,
        city: text(&customer, "city"),
        state: text(&customer, "state"),
        zip: text(&customer, "zip"),
        country: text(&customer, "country"),
        customer_created_at: None,
        optional: Some(Value::Object(optional)),
        stage_id: int(stage, "id"),
        stage_name: text(stage, "name"),
        funnel_category: text(stage, "funnel_category"),
        utm_event: stage.get("utm_event").cloned(),
        stage_default_value: number(stage, "default_value"),
        campaign_id: has_campaign.then(|| int(campaign, "id")).flatten(),
        campaign_name: has_campaign.then(|| text(campaign, "name")).flatten(),
        campaign_pixel_ref: has_campaign.then(|| int(campaign, "pixel_id")).flatten(),
        campaign_currency: has_campaign.then(|| text(campaign, "currency")).flatten(),
        campaign_matched_by: has_campaign.then(|| "customer".to_string()),
        contacts: Some(json!([])),
    };
    let options: Map<String, Value> = PIXEL_OPTIONS
        .iter()
        .filter_map(|k| pixel.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    let pixel = PixelRow {
        id: int(pixel, "id").expect("pixel id"),
        platform: "facebook".into(),
        name: None,
        pixel_id: text(pixel, "pixel_id").expect("pixel_id"),
        access_token: None,
        access_token_enc: None,
        active: true,
        is_default: false,
        waba_id: text(pixel, "waba_id"),
        test_event_code: text(pixel, "test_event_code"),
        action_source: text(pixel, "action_source"),
        messaging_mode: text(pixel, "messaging_mode"),
        options: Some(Value::Object(options)),
    };
    Input {
        ctx,
        pixel,
        changed_at,
        now,
    }
}

/// What the worker sends for the input's first `utm_event` entry, built as `pipeline::plan`
/// builds it: the parser, the fallbacks, the identity builder, the deterministic ids, then
/// Meta's own check and encoder. Returns the event JSON and its match-key coverage.
fn encode(input: &Input, meta: &Meta) -> (Value, f32) {
    let ctx = &input.ctx;
    let configs = event_config::parse(ctx.utm_event.as_ref().unwrap());
    let config = configs[0].clone().expect("the example's entry is valid");
    let pixels = std::slice::from_ref(&input.pixel);
    let resolved =
        resolve::resolve(ctx, &config, pixels, "BRL").expect("the example's fallbacks resolve");
    let name = meta.event_name(&config.event).expect("a Meta event name");
    let normalizer = Normalizer::new("BR").unwrap();
    let customer_id = ctx.customer_id.unwrap();
    let to_stage_id = ctx.stage_id.unwrap();
    let event = ConversionEvent {
        event_id: event_id(
            customer_id,
            to_stage_id,
            input.changed_at,
            "facebook",
            &resolved.pixel.pixel_id,
            config.event.as_str(),
        ),
        event: config.event.clone(),
        name,
        event_time: input.changed_at,
        value: resolved.value.map(|(v, _)| v),
        currency: Some(resolved.currency.clone()),
        stage_name: ctx.stage_name.clone(),
        funnel_category: ctx.funnel_category.clone(),
        campaign_name: ctx.campaign_name.clone(),
        order_id: (config.event.as_str() == "Purchase")
            .then(|| order_id(customer_id, to_stage_id, input.changed_at)),
        user: Arc::new(identity::build(ctx, &normalizer, input.now)),
        ad: identity::ad_info(ctx).map(Arc::new),
    };
    meta.check(&event, resolved.pixel, input.now)
        .unwrap_or_else(|p| panic!("the example would not be sent: {}", p.message));
    let encoded = meta.encode(&event, resolved.pixel, input.now);
    (
        serde_json::from_str(&encoded.json).unwrap(),
        encoded.match_quality,
    )
}

#[test]
fn conversion_events_payload_examples_are_what_the_encoder_builds() {
    let doc = doc();
    let examples = examples(&doc);
    let meta = Meta::new(MetaConfig::default()).unwrap();
    let mut problems = Vec::new();
    let mut sources = BTreeSet::new();
    for ex in &examples {
        let name = ex.name.as_deref().unwrap_or("");
        match ex.kind.as_str() {
            "crm-rows" => {}
            "utm_event" | "input" => {
                let config = match ex.kind.as_str() {
                    "input" => &ex.json["stage"]["utm_event"],
                    _ => &ex.json,
                };
                for (i, entry) in event_config::parse(config).into_iter().enumerate() {
                    if let Err(issue) = entry {
                        problems.push(format!(
                            "line {}: utm_event entry {} does not parse: {}",
                            ex.line,
                            i + 1,
                            issue.message
                        ));
                    }
                }
            }
            "payload" => {
                let input = input(&examples, name);
                let (built, score) = encode(&input, &meta);
                if built != ex.json {
                    problems.push(format!(
                        "line {}: the `{name}` payload is not what the encoder builds; it builds:\n{}",
                        ex.line,
                        serde_json::to_string_pretty(&built).unwrap()
                    ));
                }
                let shown: f32 = ex
                    .attrs
                    .get("match_quality")
                    .unwrap_or_else(|| {
                        panic!("line {}: payload marker lacks match_quality=", ex.line)
                    })
                    .parse()
                    .unwrap();
                if (shown - score).abs() > 1e-6 {
                    problems.push(format!(
                        "line {}: `{name}` shows match_quality={shown}, the estimate is {score}",
                        ex.line
                    ));
                }
                let source = built["action_source"].as_str().unwrap().to_string();
                if ex.attrs.get("action_source") != Some(&source) {
                    problems.push(format!(
                        "line {}: `{name}` marker should say action_source={source}",
                        ex.line
                    ));
                }
                sources.insert(source);
            }
            "request" => {
                let input = input(&examples, name);
                let (built, _) = encode(&input, &meta);
                let event = built.to_string().into_bytes();
                let body = request_body(
                    &[event.as_slice()],
                    &MetaConfig::default().partner_agent,
                    input.pixel.test_event_code.as_deref(),
                );
                let body: Value = serde_json::from_slice(&body).unwrap();
                if body != ex.json {
                    problems.push(format!(
                        "line {}: the `{name}` request body is not what the sink sends; it sends:\n{}",
                        ex.line,
                        serde_json::to_string_pretty(&body).unwrap()
                    ));
                }
            }
            "graph-answer" => {
                let status: u16 = ex.attrs["status"].parse().unwrap();
                let got = match stagecast::platforms::meta::retry::classify(&GraphResponse {
                    status,
                    body: Some(ex.json.clone()),
                    text: None,
                    usage_pct: None,
                    regain_minutes: None,
                    retry_after: None,
                    elapsed: std::time::Duration::ZERO,
                }) {
                    Classification::Delivered { .. } => "delivered".to_string(),
                    Classification::Retry(_) => "retry".to_string(),
                    Classification::Throttle { .. } => "throttle".to_string(),
                    Classification::RejectEvents(_) => "isolate".to_string(),
                    Classification::HoldDestination { cause, .. } => {
                        format!("hold:{}", cause.code())
                    }
                };
                if ex.attrs.get("class") != Some(&got) {
                    problems.push(format!(
                        "line {}: the retry logic classifies this answer as class={got}",
                        ex.line
                    ));
                }
            }
            other => problems.push(format!("line {}: unknown example kind `{other}`", ex.line)),
        }
    }
    for source in ["physical_store", "business_messaging", "system_generated"] {
        if !sources.contains(source) {
            problems.push(format!("no payload example with action_source {source}"));
        }
    }
    assert!(problems.is_empty(), "docs/{DOC}:\n{}", problems.join("\n"));
}

/// The rows of the table between `begin` and `end`, as trimmed cells without backticks.
fn table_rows(doc: &str, begin: &str, end: &str) -> Vec<Vec<String>> {
    super::between(doc, begin, end)
        .unwrap_or_else(|| panic!("docs/{DOC} lacks {begin} … {end}"))
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(super::unquote)
                .collect()
        })
        .collect()
}

fn class_text(class: ErrorClass) -> String {
    match class {
        ErrorClass::Throttle => "throttle".into(),
        ErrorClass::Transient => "retry".into(),
        ErrorClass::Event => "isolate".into(),
        ErrorClass::Request(cause) => format!("hold: {}", cause.code()),
    }
}

#[test]
fn conversion_events_error_table_is_what_the_retry_logic_decides() {
    let doc = doc();
    let mut problems = Vec::new();
    let rows = table_rows(
        &doc,
        "<!-- meta-errors:begin -->",
        "<!-- meta-errors:end -->",
    );
    assert!(rows.len() >= 10, "the error table has {} rows", rows.len());
    for row in &rows {
        assert!(row.len() >= 5, "an error row has 5 cells: {row:?}");
        let codes: Vec<Option<i64>> = match row[0].as_str() {
            "none" => vec![None],
            c => c
                .split(", ")
                .flat_map(|c| match c.split_once('–') {
                    Some((a, b)) => {
                        let (a, b): (i64, i64) = (a.parse().unwrap(), b.parse().unwrap());
                        vec![Some(a), Some((a + b) / 2), Some(b)]
                    }
                    None => vec![Some(c.parse().unwrap_or_else(|_| panic!("code {c:?}")))],
                })
                .collect(),
        };
        let subcodes: Vec<Option<i64>> = match row[1].as_str() {
            "any" => vec![None, Some(33), Some(2804001)],
            "none" => vec![None],
            "other" => vec![Some(2804001), Some(2804019)],
            s => vec![Some(s.parse().unwrap_or_else(|_| panic!("subcode {s:?}")))],
        };
        let transients: Vec<bool> = match row[2].as_str() {
            "any" => vec![false, true],
            "true" => vec![true],
            "false" => vec![false],
            t => panic!("is_transient {t:?}"),
        };
        let statuses: Vec<u16> = match row[3].as_str() {
            "any" => vec![400, 500],
            "4xx" => vec![400, 403],
            "5xx" => vec![500, 503],
            s => vec![s.parse().unwrap_or_else(|_| panic!("HTTP {s:?}"))],
        };
        for &code in &codes {
            for &sub in &subcodes {
                for &transient in &transients {
                    for &status in &statuses {
                        let got = class_text(classify_error(code, sub, transient, status));
                        if got != row[4] {
                            problems.push(format!(
                                "{row:?}: code {code:?}, subcode {sub:?}, is_transient {transient}, HTTP {status} is `{got}`"
                            ));
                        }
                    }
                }
            }
        }
    }
    let rows = table_rows(&doc, "<!-- rejected:begin -->", "<!-- rejected:end -->");
    for row in &rows {
        let sub = match row[0].as_str() {
            "other" => Some(2804001),
            s => Some(s.parse().unwrap()),
        };
        let cause = rejected_event_cause(&ApiError {
            code: Some(100),
            subcode: sub,
            ..ApiError::default()
        });
        if cause.code() != row[1] {
            problems.push(format!("{row:?}: raises `{}`", cause.code()));
        }
    }
    assert!(problems.is_empty(), "docs/{DOC}:\n{}", problems.join("\n"));
}

#[test]
fn conversion_events_names_every_alert_cause_and_only_those() {
    let doc = doc();
    let codes: BTreeSet<String> = AlertCause::ALL
        .iter()
        .map(|c| c.code().to_string())
        .collect();
    let listed: Vec<String> = table_rows(&doc, "<!-- alerts:begin -->", "<!-- alerts:end -->")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed.len(), listed_set.len(), "a cause listed twice");
    assert_eq!(
        listed_set, codes,
        "the alert table of docs/{DOC} lists exactly AlertCause::ALL"
    );
    // Prose: "alert `x`", "alerts `x`", "hold: x".
    let mut problems = Vec::new();
    for needle in ["alert `", "alerts `", "hold: `"] {
        for (i, _) in doc.match_indices(needle) {
            let rest = &doc[i + needle.len()..];
            let name = &rest[..rest.find('`').unwrap()];
            if !codes.contains(name) {
                problems.push(format!("{needle}{name}` is not an alert cause"));
            }
        }
    }
    assert!(problems.is_empty(), "docs/{DOC}:\n{}", problems.join("\n"));
}

/// GitHub's heading anchors: lowercase, punctuation dropped (not `-` and `_`), spaces as `-`.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        out.insert(slug);
    }
    out
}

#[test]
fn conversion_events_links_point_to_pages_and_headings_that_exist() {
    let doc = doc();
    let docs_dir = super::repo("docs");
    let mut problems = Vec::new();
    let mut pages = 0;
    for (i, _) in doc.match_indices("](") {
        let rest = &doc[i + 2..];
        let target = &rest[..rest.find(')').unwrap()];
        if target.starts_with("http://") || target.starts_with("https://") {
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((f, a)) => (f, Some(a)),
            None => (target, None),
        };
        let path = if file.is_empty() {
            docs_dir.join(DOC)
        } else {
            docs_dir.join(file)
        };
        let Ok(path) = path.canonicalize() else {
            problems.push(format!("({target}): {} does not exist", path.display()));
            continue;
        };
        pages += usize::from(!file.is_empty());
        if let Some(anchor) = anchor {
            let is_md = Path::new(&path).extension().is_some_and(|e| e == "md");
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if is_md && !anchors(&text).contains(anchor) {
                problems.push(format!("({target}): no heading with that anchor"));
            }
        }
    }
    assert!(pages >= 10, "only {pages} links to other pages");
    assert!(problems.is_empty(), "docs/{DOC}:\n{}", problems.join("\n"));
}

#[test]
fn conversion_events_is_linked_from_the_readme_and_the_architecture_page() {
    let readme = std::fs::read_to_string(super::repo("README.md")).unwrap();
    assert!(readme.contains("](docs/CONVERSION_EVENTS.md)"));
    assert!(super::read_doc("architecture.md").contains("](CONVERSION_EVENTS.md)"));
}

/// The payload examples are also requests Meta would take: each one, with its `event_time`
/// moved to now (the sandbox, like Meta, refuses events older than 7 days), is posted in the
/// request body the sink builds to the Graph API sandbox, which validates it as Meta documents
/// (docs/sandbox.md) and must accept it unchanged.
#[tokio::test]
async fn conversion_events_payload_examples_are_accepted_by_the_graph_api_sandbox() {
    let doc = doc();
    let examples = examples(&doc);
    let sandbox = stagecast_sandbox::MetaGraphSandbox::start().await.unwrap();
    const TOKEN: &str = "EAADOCS-token";
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut sent = 0;
    for ex in examples.iter().filter(|e| e.kind == "payload") {
        let name = ex.name.as_deref().unwrap();
        let input = input(&examples, name);
        let pixel_id = input.pixel.pixel_id.clone();
        sandbox.add_pixel(&pixel_id, TOKEN);
        if let Some(waba) = &input.pixel.waba_id {
            sandbox.link_waba(waba, &pixel_id, TOKEN);
        }
        let mut event = ex.json.clone();
        event["event_time"] = json!(Utc::now().timestamp());
        let bytes = event.to_string().into_bytes();
        let body = request_body(
            &[bytes.as_slice()],
            &MetaConfig::default().partner_agent,
            input.pixel.test_event_code.as_deref(),
        );
        let answer = client
            .post(format!(
                "{}/{}/{pixel_id}/events",
                sandbox.base_url(),
                stagecast::platforms::meta::config::DEFAULT_API_VERSION
            ))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert!(
            status.is_success(),
            "the `{name}` example is refused by the sandbox: {status} {text}"
        );
        sent += 1;
        let received = sandbox.received();
        assert_eq!(
            received.last().map(|r| &r.event),
            Some(&event),
            "the sandbox recorded the `{name}` event as sent"
        );
    }
    assert!(sent >= 3, "only {sent} payload examples");
}
