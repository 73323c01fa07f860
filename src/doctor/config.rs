//! CRM configuration: every campaign resolves to an active pixel, every stage's `utm_event`
//! parses into events its platform can take, and no problem recorded by the `utm_event` trigger
//! is still open. Each check runs the worker's own code (`pipeline::resolve::pixel`,
//! `pipeline::event_config::parse`, the platform's `event_name`), so the doctor reports exactly
//! what a stage change would run into.

use super::keys::pixel_label;
use super::pixels::check_id;
use super::report::{list, named, Check, Group};
use crate::alerts::AlertCause;
use crate::pipeline::event_config::{self, ConfigIssue};
use crate::pipeline::resolve;
use crate::platforms::platform::LocalProblem;
use crate::platforms::{registry, Platform, Registry};
use crate::store::doctor::{CampaignRow, ConfigProblemRow, StageRow};
use crate::store::{PixelRow, StageChangeContext};

/// A stage change of a customer in `campaign`, as far as pixel resolution looks at it.
fn campaign_context(campaign: &CampaignRow) -> StageChangeContext {
    StageChangeContext {
        job_id: 0,
        campaign_id: Some(campaign.id),
        campaign_name: campaign.name.clone(),
        campaign_pixel_ref: campaign.pixel_id,
        campaign_matched_by: Some("customer".into()),
        ..StageChangeContext::default()
    }
}

fn campaign_label(c: &CampaignRow) -> String {
    let mut s = named(c.name.as_deref(), c.id);
    if c.active == Some(false) {
        // The worker still uses inactive campaigns, so they are checked too.
        s.push_str(" [inactive campaign]");
    }
    s
}

/// Campaign → pixel for one platform's events, as `resolve::pixel` decides it.
pub fn campaigns(campaigns: &[CampaignRow], pixels: &[PixelRow], platform: Platform) -> Vec<Check> {
    let check = |id: &str, title: &str| {
        Check::build(
            Group::Campaigns,
            check_id(&format!("campaigns.{id}"), platform),
            title,
        )
    };
    if campaigns.is_empty() {
        return vec![check("pixels", "Campaigns").warning(
            "no campaigns: every stage change fails with no_campaign",
            "create the campaigns in utm_campaigns and link customers to them (customers.utm_campaign_id)",
        )];
    }
    let mut missing = Vec::new();
    let mut inactive = Vec::new();
    for c in campaigns {
        match resolve::pixel(&campaign_context(c), platform, pixels) {
            Ok(_) => {}
            Err(p) if p.cause == AlertCause::PixelMissing => missing.push(campaign_label(c)),
            Err(problem) => {
                // Name the pixel the worker chose: the campaign's own, else the default.
                let own = c
                    .pixel_id
                    .and_then(|id| pixels.iter().find(|p| p.id == id))
                    .filter(|p| Platform::parse(&p.platform) == Some(platform));
                let via = match own {
                    Some(p) => pixel_label(p),
                    None => pixels
                        .iter()
                        .find(|p| p.is_default && Some(&p.pixel_id) == problem.pixel.as_ref())
                        .map(|p| format!("the default {}", pixel_label(p)))
                        .unwrap_or_else(|| "the default pixel".into()),
                };
                inactive.push(format!("{} → {via}", campaign_label(c)));
            }
        }
    }
    let mut checks = Vec::new();
    if !missing.is_empty() {
        checks.push(check("without_pixel", "Campaigns without a pixel").problem(
            format!(
                "{} campaign(s) have no pixel and there is no default pixel: {}",
                missing.len(),
                list(&missing, 10)
            ),
            "link a pixel to each (utm_campaigns.pixel_id), or mark an active pixel as default (pixels.is_default)",
        ));
    }
    if !inactive.is_empty() {
        checks.push(
            check("inactive_pixel", "Campaigns with an inactive pixel").problem(
                format!(
                "{} campaign(s) report to an inactive pixel (events fail with pixel_inactive): {}",
                inactive.len(),
                list(&inactive, 10)
            ),
                "activate the pixel (pixels.active = true) or link an active pixel to the campaign",
            ),
        );
    }
    if checks.is_empty() {
        checks.push(check("pixels", "Campaigns").ok(format!(
            "all {} resolve to an active pixel",
            campaigns.len()
        )));
    }
    checks
}

fn stage_title(s: &StageRow) -> String {
    format!("Stage {}", named(s.name.as_deref(), s.id))
}

/// How to fix one `utm_event` issue.
fn issue_fix(issue: &ConfigIssue) -> String {
    let entry = issue
        .index
        .map(|i| format!(" (entry {})", i + 1))
        .unwrap_or_default();
    match (issue.cause, &issue.suggestion) {
        (AlertCause::UnknownEventName, Some(s)) => format!(
            "set \"event_name\" to {s:?} in the stage's utm_event{entry}, or use \"Other\" with a \"custom_event_name\""
        ),
        (AlertCause::UnknownEventName, None) => format!(
            "use a catalog event name (docs/events.md){entry}, or \"Other\" with a \"custom_event_name\""
        ),
        _ => format!(
            "correct the stage's utm_event{entry}: an array of {{\"platform\", \"event_name\", …}} objects (docs/events.md)"
        ),
    }
}

/// How to fix an entry naming an event its platform has no counterpart for.
fn name_fix(problem: &LocalProblem, platform: Platform, index: usize) -> String {
    let instead = match &problem.suggestion {
        Some(s) => format!("{s:?} or "),
        None => String::new(),
    };
    format!(
        "set \"event_name\" of entry {} ({platform}) to {instead}\"Other\" with a \"custom_event_name\" (docs/events.md)",
        index + 1
    )
}

/// Every stage's `utm_event` through the worker's parser, and each entry's event through its
/// platform's `event_name` (the name the worker would send), for the platforms in `platforms`.
pub fn stages(stages: &[StageRow], platforms: &Registry) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut sending = 0;
    for s in stages {
        let value = s.utm_event.clone().unwrap_or(serde_json::Value::Null);
        let parsed = event_config::parse(&value);
        if parsed.iter().any(Result::is_ok) {
            sending += 1;
        }
        for result in &parsed {
            // Stable per entry (counted from 1, as in the messages); `value` for the whole value.
            let entry = match result {
                Ok(config) => Some(config.index),
                Err(issue) => issue.index,
            };
            let id = match entry {
                Some(i) => format!("stage_events.{}.{}", s.id, i + 1),
                None => format!("stage_events.{}.value", s.id),
            };
            match result {
                Err(issue) => checks.push(
                    Check::build(Group::StageEvents, id, stage_title(s))
                        .problem(issue.message.clone(), issue_fix(issue)),
                ),
                Ok(config) if !registry::available().any(|a| a == config.platform) => checks.push(
                    Check::build(Group::StageEvents, id, stage_title(s)).warning(
                        format!(
                            "entry {}: platform {} is not supported yet; its event is not sent (unsupported_platform)",
                            config.index + 1,
                            config.platform
                        ),
                        format!(
                            "remove the entry or set \"enabled\": false until a stagecast version supports {}",
                            config.platform
                        ),
                    ),
                ),
                Ok(config) => {
                    let named = platforms
                        .get(config.platform)
                        .map(|p| p.event_name(&config.event));
                    if let Some(Err(problem)) = named {
                        checks.push(
                            Check::build(Group::StageEvents, id, stage_title(s)).problem(
                                format!(
                                    "entry {}: {} ({}): the event is not sent",
                                    config.index + 1,
                                    problem.message,
                                    problem.cause.code()
                                ),
                                name_fix(&problem, config.platform, config.index),
                            ),
                        );
                    }
                }
            }
        }
    }
    if checks.is_empty() {
        let c = Check::build(Group::StageEvents, "stage_events", "Stage events");
        checks.push(if sending == 0 {
            c.warning(
                format!(
                    "none of the {} stage(s) sends an event (every utm_event is empty or disabled): nothing is reported to Meta",
                    stages.len()
                ),
                "configure the events of the stages that matter in crm_stages.utm_event (docs/events.md)",
            )
        } else {
            c.ok(format!(
                "{} stage(s), {sending} send events; every entry is valid",
                stages.len()
            ))
        });
    }
    checks
}

/// Unresolved rows of `stagecast.config_problems` (see sql/doctor/config_problems.sql).
pub fn config_problems(rows: &[ConfigProblemRow], stages: &[StageRow]) -> Check {
    let c = Check::build(
        Group::StageEvents,
        "stage_events.config_problems",
        "Recorded problems",
    );
    if rows.is_empty() {
        return c.ok("no unresolved row in stagecast.config_problems");
    }
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let what = match (r.source.as_str(), r.row_id) {
                ("crm_stages.utm_event", Some(id)) => {
                    let name = stages
                        .iter()
                        .find(|s| s.id == id)
                        .and_then(|s| s.name.as_deref());
                    format!("stage {}", named(name, id))
                }
                (source, Some(id)) => format!("{source} {id}"),
                (source, None) => source.to_string(),
            };
            format!(
                "{what}: {} (since {})",
                r.problem,
                r.found_at.format("%Y-%m-%d %H:%M UTC")
            )
        })
        .collect();
    c.problem(
        format!(
            "{} unresolved in stagecast.config_problems: {}",
            rows.len(),
            list(&items, 5)
        ),
        "correct the value (a stage counts as resolved once its utm_event is a valid array)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::keys::tests::pixel;
    use crate::doctor::report::Status;
    use serde_json::json;

    fn registry() -> Registry {
        Registry::from_config_lenient(&crate::platforms::registry::PlatformsConfig::default()).0
    }

    #[test]
    fn an_event_a_platform_has_no_counterpart_for_is_a_problem_with_its_suggestion() {
        let rows = [StageRow {
            id: 5,
            name: Some("Doação".into()),
            utm_event: Some(json!([
                {"platform": "tiktok", "event_name": "Donate"},
                {"platform": "facebook", "event_name": "Donate"},
                {"platform": "tiktok", "event_name": "PageView"},
                {"platform": "tiktok", "event_name": "Lead"}
            ])),
        }];
        let checks = stages(&rows, &registry());
        let texts: Vec<String> = checks
            .iter()
            .map(|c| {
                format!(
                    "{:?} {} {}: {} | {:?}",
                    c.status, c.id, c.title, c.found, c.fix
                )
            })
            .collect();
        assert_eq!(
            checks.len(),
            2,
            "Meta's Donate and TikTok's Lead are fine: {texts:#?}"
        );
        assert_eq!(checks[0].status, Status::Problem, "{texts:#?}");
        assert_eq!(checks[0].id, "stage_events.5.1");
        assert!(
            texts[0].contains("entry 1: TikTok has no event equivalent to Donate")
                && texts[0].contains("event_not_on_platform")
                && checks[0]
                    .fix
                    .as_deref()
                    .unwrap_or("")
                    .contains("\"Purchase\""),
            "{texts:#?}"
        );
        assert_eq!(checks[1].id, "stage_events.5.3");
        assert!(
            texts[1].contains("PageView")
                && checks[1]
                    .fix
                    .as_deref()
                    .unwrap_or("")
                    .contains("\"ViewContent\""),
            "{texts:#?}"
        );
        // The same function the worker uses decides: without a built platform, no verdict.
        assert!(stages(&rows, &Registry::default())
            .iter()
            .all(|c| c.status == Status::Ok));
    }

    fn campaign(id: i64, name: &str, pixel_id: Option<i64>) -> CampaignRow {
        CampaignRow {
            id,
            name: Some(name.into()),
            pixel_id,
            active: Some(true),
        }
    }

    #[test]
    fn campaigns_resolve_like_the_worker() {
        let pixels = [pixel(1, true, false), pixel(2, false, false)];
        let checks = campaigns(
            &[
                campaign(1, "Verão", Some(1)),
                campaign(2, "Inverno", Some(2)),
                campaign(3, "Sem pixel", None),
            ],
            &pixels,
            Platform::Facebook,
        );
        let missing = checks
            .iter()
            .find(|c| c.id == "campaigns.without_pixel")
            .unwrap();
        assert!(
            missing.found.contains("\"Sem pixel\" (id 3)"),
            "{missing:?}"
        );
        assert!(!missing.found.contains("Verão"));
        let inactive = checks
            .iter()
            .find(|c| c.id == "campaigns.inactive_pixel")
            .unwrap();
        assert!(
            inactive
                .found
                .contains("\"Inverno\" (id 2) → pixel 222 \"P2\" (id 2)"),
            "{inactive:?}"
        );

        // With an active default, a campaign without a pixel is fine.
        let fb = Platform::Facebook;
        let ok = campaigns(
            &[campaign(3, "Sem pixel", None)],
            &[pixel(1, true, true)],
            fb,
        );
        assert_eq!(ok[0].status, Status::Ok);
        // With only an inactive default, it reports to that inactive default.
        let via_default = campaigns(
            &[campaign(3, "Sem pixel", None)],
            &[pixel(1, false, true)],
            fb,
        );
        assert!(
            via_default[0].found.contains("the default pixel 111"),
            "{via_default:?}"
        );
    }

    #[test]
    fn stage_issues_are_reported_per_entry_with_the_suggestion() {
        let stages_rows = vec![
            StageRow {
                id: 1,
                name: Some("Qualificado".into()),
                utm_event: Some(json!([{"event_name": "Lead"}])),
            },
            StageRow {
                id: 3,
                name: Some("Venda".into()),
                utm_event: Some(json!([
                    {"event_name": "Purchse"},
                    {"platform": "myspace", "event_name": "Lead"},
                    {"platform": "google_ads", "event_name": "Lead"},
                    {"event_name": "Lead", "value": -1}
                ])),
            },
            StageRow {
                id: 4,
                name: None,
                utm_event: Some(json!("Purchase")),
            },
        ];
        let checks = stages(&stages_rows, &registry());
        let texts: Vec<String> = checks
            .iter()
            .map(|c| format!("{:?} {}: {} | {:?}", c.status, c.title, c.found, c.fix))
            .collect();
        // Google Ads is delivered: its entry is valid (no check of its own).
        assert_eq!(checks.len(), 4, "{texts:#?}");
        assert!(texts[0].contains("Problem Stage \"Venda\" (id 3): entry 1: unknown event name \"Purchse\": did you mean \"Purchase\"?"), "{texts:#?}");
        assert!(
            texts[0].contains("set \\\"event_name\\\" to \\\"Purchase\\\""),
            "{texts:#?}"
        );
        assert!(
            texts[1].contains("unknown platform \"myspace\""),
            "{texts:#?}"
        );
        assert!(!texts.iter().any(|t| t.contains("not supported yet")));
        assert!(texts[2].contains("is not a number from 0 to 1000000000"));
        assert!(
            texts[3].contains("Stage id 4: utm_event is a JSON string"),
            "{texts:#?}"
        );

        assert_eq!(checks[0].id, "stage_events.3.1");
        assert_eq!(checks[3].id, "stage_events.4.value");

        let fine = stages(&stages_rows[..1], &registry());
        assert_eq!(
            fine[0].found,
            "1 stage(s), 1 send events; every entry is valid"
        );
        let silent = stages(
            &[StageRow {
                id: 9,
                name: None,
                utm_event: Some(json!([{"event_name": "Lead", "enabled": false}])),
            }],
            &registry(),
        );
        assert_eq!(silent[0].status, Status::Warning, "{silent:?}");
    }

    #[test]
    fn recorded_problems_name_the_stage() {
        let rows = [ConfigProblemRow {
            source: "crm_stages.utm_event".into(),
            row_id: Some(4),
            problem: "utm_event is a JSON string, expected an array of event config objects".into(),
            found_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        }];
        let stage = StageRow {
            id: 4,
            name: Some("Visita".into()),
            utm_event: None,
        };
        let c = config_problems(&rows, &[stage]);
        assert_eq!(c.status, Status::Problem);
        assert!(
            c.found
                .contains("stage \"Visita\" (id 4): utm_event is a JSON string"),
            "{c:?}"
        );
        assert_eq!(config_problems(&[], &[]).status, Status::Ok);
    }
}
