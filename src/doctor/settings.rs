//! The settings `stagecast run` reads ([`WorkerArgs`], [`PipelineArgs`], [`PlatformArgs`]), taken
//! by the doctor as raw text, validated with `run`'s own parsers and checked against each
//! other with `run`'s own rules ([`crate::settings::consistency`]).
//!
//! Why not simply flatten the typed structs into `DoctorArgs`: clap would then reject an invalid
//! value (`STAGECAST_LOCALE=fr`) before the doctor runs, with clap's usage error and exit code 2,
//! which the doctor reserves for "database unreachable", and the doctor could never report it.
//! The arguments are still *taken from* `WorkerArgs`, `PipelineArgs` and `PlatformArgs` (names, env
//! twins, defaults, help), so the two commands cannot drift apart.

use std::ffi::OsString;

use clap::builder::ValueParser;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};

use super::report::{Check, Group};
use crate::locale::Locale;
use crate::pii::Normalizer;
use crate::platforms::args::{PlatformArgs, SettingsCheck};
use crate::settings::{PipelineArgs, WorkerArgs};

/// One setting as given: from the command line, the environment, or the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSetting {
    /// clap's id (the field name in `PipelineArgs`, `MetaArgs`, ...).
    pub id: String,
    pub long: String,
    pub env: Option<String>,
    pub value: Option<String>,
    pub source: Option<ValueSource>,
}

impl RawSetting {
    /// How the operator knows this setting: the environment variable when it came from there
    /// (or has one), else the flag.
    pub fn name(&self) -> String {
        match (&self.env, self.source) {
            (_, Some(ValueSource::CommandLine)) => format!("--{}", self.long),
            (Some(env), _) => env.clone(),
            (None, _) => format!("--{}", self.long),
        }
    }

    fn origin(&self) -> &'static str {
        match self.source {
            Some(ValueSource::DefaultValue) => " (default)",
            Some(ValueSource::EnvVariable) => " (from the environment)",
            Some(ValueSource::CommandLine) => " (from the command line)",
            _ => "",
        }
    }
}

/// `run`'s worker, pipeline and platform settings, unparsed. Implements clap's `Args` by hand:
/// each argument of `WorkerArgs`, `PipelineArgs` and `PlatformArgs` that takes a value is copied
/// with a plain string parser.
#[derive(Debug, Clone, Default)]
pub struct RawSettings {
    pub settings: Vec<RawSetting>,
}

/// The value-taking arguments of `WorkerArgs`, `PipelineArgs` and `PlatformArgs`, exactly as
/// `run` defines them.
/// Flags without a value (`--meta-resolve-ads`) are left out: the doctor does not use them and
/// they have nothing to validate beyond clap's own bool parsing.
fn typed_command() -> Command {
    PlatformArgs::augment_args(PipelineArgs::augment_args(WorkerArgs::augment_args(
        Command::new("stagecast-settings"),
    )))
}

pub(crate) fn value_args() -> Vec<clap::Arg> {
    typed_command()
        .get_arguments()
        .filter(|a| a.get_action().takes_values() && a.get_long().is_some())
        .cloned()
        .collect()
}

impl Args for RawSettings {
    fn augment_args(cmd: Command) -> Command {
        value_args().into_iter().fold(cmd, |cmd, arg| {
            cmd.arg(
                arg.value_parser(ValueParser::string())
                    .help_heading("Settings of `stagecast run` (checked)"),
            )
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for RawSettings {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let settings = value_args()
            .iter()
            .map(|arg| {
                let id = arg.get_id().as_str();
                RawSetting {
                    id: id.to_string(),
                    long: arg.get_long().unwrap_or(id).to_string(),
                    env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                    value: matches.get_one::<String>(id).cloned(),
                    source: matches.value_source(id),
                }
            })
            .collect();
        Ok(RawSettings { settings })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// The settings, typed, when every one of them parses.
pub struct Typed {
    pub worker: WorkerArgs,
    pub pipeline: PipelineArgs,
    pub platforms: PlatformArgs,
}

/// A setting `run`'s parser rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub setting: RawSetting,
    /// The parser's own explanation (never the whole clap usage text).
    pub reason: String,
    /// The argument's help text, to say what a valid value looks like.
    pub help: String,
    pub default: Option<String>,
}

impl RawSettings {
    pub fn get(&self, id: &str) -> Option<&RawSetting> {
        self.settings.iter().find(|s| s.id == id)
    }

    /// Parse every setting with `run`'s parsers; all of them typed, or the ones that fail.
    pub fn parse(&self) -> Result<Typed, Vec<Invalid>> {
        // Without env twins: the values were already read (from the environment too), and an
        // env var must not sneak back in for a setting we pass explicitly.
        let cmd = typed_command().mut_args(|a| a.env(None));
        let mut invalid = Vec::new();
        let mut argv: Vec<OsString> = vec!["stagecast-settings".into()];
        for s in &self.settings {
            let Some(value) = &s.value else { continue };
            // `--long=value`, so a value starting with `-` is not read as a flag.
            let arg = OsString::from(format!("--{}={value}", s.long));
            if let Err(e) = cmd
                .clone()
                .try_get_matches_from([OsString::from("stagecast-settings"), arg.clone()])
            {
                let def = cmd.get_arguments().find(|a| a.get_id().as_str() == s.id);
                invalid.push(Invalid {
                    setting: s.clone(),
                    reason: clap_reason(&e),
                    help: def
                        .and_then(|a| a.get_help())
                        .map(|h| h.to_string())
                        .unwrap_or_default(),
                    default: def
                        .and_then(|a| a.get_default_values().first())
                        .map(|d| d.to_string_lossy().into_owned()),
                });
            }
            argv.push(arg);
        }
        if !invalid.is_empty() {
            return Err(invalid);
        }
        let typed = cmd.try_get_matches_from(argv).and_then(|m| {
            Ok((
                WorkerArgs::from_arg_matches(&m)?,
                PipelineArgs::from_arg_matches(&m)?,
                PlatformArgs::from_arg_matches(&m)?,
            ))
        });
        match typed {
            Ok((worker, pipeline, platforms)) => Ok(Typed {
                worker,
                pipeline,
                platforms,
            }),
            // Each value parsed on its own above; failing together would be a clap surprise.
            // Report it rather than panic.
            Err(e) => Err(vec![Invalid {
                setting: RawSetting {
                    id: "settings".into(),
                    long: "settings".into(),
                    env: None,
                    value: None,
                    source: None,
                },
                reason: clap_reason(&e),
                help: String::new(),
                default: None,
            }]),
        }
    }
}

/// The parser's own message (`unknown locale "fr": expected one of pt, en, es`), without
/// clap's "error:" prefix, usage and "try --help" lines.
fn clap_reason(e: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or("invalid value")
        .trim_start_matches("error: ")
        .to_string()
}

/// The Settings section: every setting parses, and the ones the pipeline interprets further
/// (region, currency, locale, each platform's own, such as Meta's Graph API URL and version)
/// make sense. Returns the typed settings
/// when they are all valid, for the checks that need them.
pub fn check(raw: &RawSettings) -> (Vec<Check>, Option<Typed>) {
    let mut checks = Vec::new();
    let typed = match raw.parse() {
        Ok(t) => Some(t),
        Err(invalid) => {
            for i in invalid {
                let name = i.setting.name();
                let found = match &i.setting.value {
                    Some(v) => format!("{name}={v:?} is invalid: {}", i.reason),
                    None => i.reason.clone(),
                };
                let mut fix = format!("correct {name}");
                if !i.help.is_empty() {
                    fix.push_str(&format!(" ({})", i.help.trim_end_matches('.')));
                }
                if let Some(d) = &i.default {
                    fix.push_str(&format!(", or unset it to use the default {d:?}"));
                }
                checks.push(
                    Check::build(Group::Settings, format!("settings.{}", i.setting.id), name)
                        .problem(found, fix),
                );
            }
            None
        }
    };
    // What the pipeline makes of the values; a setting clap already rejected is not repeated.
    for semantic in [
        region(raw.get("default_region")),
        currency(raw.get("default_currency")),
        locale(raw.get("locale")),
    ]
    .into_iter()
    .flatten()
    {
        if !checks.iter().any(|c| c.id == semantic.id) {
            checks.push(semantic);
        }
    }
    if let Some(t) = &typed {
        // Each platform's own validation: the same its registration refuses to start with.
        for platform in t.platforms.settings_checks() {
            checks.push(platform_settings(platform));
        }
        // The same rules `stagecast run` refuses to start with.
        for c in crate::settings::consistency::check(&t.worker, &t.platforms.limits()) {
            checks.push(
                Check::build(
                    Group::Settings,
                    format!("settings.{}", c.rule),
                    format!("{} and {}", c.first, c.second),
                )
                .problem(c.problem, c.fix),
            );
        }
    }
    if typed.is_some() && checks.iter().all(|c| c.fix.is_none()) {
        checks.push(
            Check::build(Group::Settings, "settings.all", "Other settings")
                .ok("every setting of `stagecast run` has a valid value"),
        );
    }
    (checks, typed)
}

fn region(s: Option<&RawSetting>) -> Option<Check> {
    let s = s?;
    let value = s.value.clone().unwrap_or_default();
    let c = Check::build(Group::Settings, "settings.default_region", s.name());
    Some(match Normalizer::new(&value) {
        Ok(n) => c.ok(format!(
            "phones without a country code are read as {}{}",
            n.default_region(),
            s.origin()
        )),
        Err(e) => c.problem(
            format!("{value:?} is not a usable region: {e}"),
            format!(
                "set {} to an ISO 3166 alpha-2 country code such as BR or US",
                s.name()
            ),
        ),
    })
}

fn currency(s: Option<&RawSetting>) -> Option<Check> {
    let s = s?;
    let value = s.value.clone().unwrap_or_default();
    let code = value.trim();
    let c = Check::build(Group::Settings, "settings.default_currency", s.name());
    // Same rule as the currency fallback: exactly 3 letters, upper-cased when used.
    Some(if crate::pipeline::resolve::is_currency_code(code) {
        c.ok(format!(
            "{} when no event config, customer or campaign has a currency{}",
            code.to_ascii_uppercase(),
            s.origin()
        ))
    } else {
        c.problem(
            format!("{value:?} is not a 3-letter currency code"),
            format!("set {} to an ISO 4217 code such as BRL or USD", s.name()),
        )
    })
}

fn locale(s: Option<&RawSetting>) -> Option<Check> {
    let s = s?;
    let value = s.value.clone().unwrap_or_default();
    let c = Check::build(Group::Settings, "settings.locale", s.name());
    Some(match value.parse::<Locale>() {
        Ok(l) => c.ok(format!("chat alerts are written in {l}{}", s.origin())),
        Err(e) => c.problem(e.to_string(), format!("set {} to pt, en or es", s.name())),
    })
}

fn platform_settings(p: SettingsCheck) -> Check {
    let c = Check::build(Group::Settings, format!("settings.{}", p.id), p.title);
    match p.result {
        Ok(found) => c.ok(found),
        Err((found, fix)) => c.problem(found, fix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::test_support::parse_args;

    fn raw(args: &[&str]) -> RawSettings {
        parse_args(args).settings
    }

    #[test]
    fn valid_settings_pass_and_say_so() {
        // Only flags on the command line: the test must not depend on this process's env.
        let r = raw(&[
            "--locale=pt",
            "--default-region=BR",
            "--default-currency=BRL",
            "--meta-graph-url=https://graph.facebook.com",
            "--meta-api-version=v26.0",
        ]);
        let (checks, typed) = check(&r);
        assert!(typed.is_some());
        assert!(checks.iter().all(|c| c.fix.is_none()), "{checks:#?}");
        assert!(checks.iter().any(|c| c.id == "settings.all"));
    }

    #[test]
    fn invalid_values_are_reported_with_the_setting_and_a_fix() {
        let r = raw(&[
            "--locale=fr",
            "--default-region=Brasil",
            "--default-currency=R$",
            "--meta-rate-limit=0",
            "--meta-api-version=26",
        ]);
        let (checks, typed) = check(&r);
        assert!(typed.is_none());
        let find = |id: &str| {
            checks
                .iter()
                .find(|c| c.id == id)
                .unwrap_or_else(|| panic!("{id} in {checks:#?}"))
        };
        let locale = find("settings.locale");
        assert!(locale.found.contains("unknown locale \"fr\""), "{locale:?}");
        assert_eq!(locale.title, "--locale");
        assert!(find("settings.default_region").fix.is_some());
        assert!(find("settings.default_currency")
            .found
            .contains("not a 3-letter"));
        let rate = find("settings.meta_rate_limit");
        assert!(rate.found.contains("\"0\" is invalid"), "{rate:?}");
        assert!(rate.fix.as_deref().unwrap().contains("Requests per second"));
        assert!(!checks.iter().any(|c| c.id == "settings.all"));
    }

    #[test]
    fn graph_api_version_is_validated_once_everything_parses() {
        let (checks, _) = check(&raw(&["--meta-api-version=26"]));
        let api = checks
            .iter()
            .find(|c| c.id == "settings.graph_api")
            .unwrap();
        assert!(api.found.contains("v26.0"), "{api:?}");
        assert_eq!(
            api.fix.as_deref(),
            Some("set STAGECAST_META_API_VERSION to a version such as v26.0")
        );
    }

    #[test]
    fn contradictory_settings_are_reported_as_run_refuses_them() {
        let (checks, typed) = check(&raw(&["--lease=5s", "--meta-timeout=10s"]));
        assert!(typed.is_some());
        let c = checks
            .iter()
            .find(|c| c.id == "settings.lease_meta_timeout")
            .unwrap_or_else(|| panic!("{checks:#?}"));
        assert_eq!(
            c.title,
            "--lease (STAGECAST_LEASE) and --meta-timeout (STAGECAST_META_TIMEOUT)"
        );
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .contains("raise --lease to at least 23s"));
        assert!(!checks.iter().any(|c| c.id == "settings.all"));
    }
}
