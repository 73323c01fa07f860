//! `stagecast demo`: the whole product on one machine in a few seconds. Finds or starts a
//! Postgres, migrates a fresh demo database, starts the Graph API, TikTok Events API and Google
//! Ads (with its OAuth token endpoint) sandboxes, runs a worker, moves demo customers through
//! stages (one stage sends to Meta, TikTok and Google Ads) and prints what each platform
//! received and which alerts agents got in their chats.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;

use crate::local_pg::{FindOptions, LocalPostgres};
use crate::locale::Locale;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::platforms::google_ads::GoogleAdsConfig;
use crate::platforms::meta::MetaConfig;
use crate::platforms::tiktok::TiktokConfig;
use crate::platforms::{PlatformsConfig, Registry};
use crate::queue::{Backoff, RetryPolicy, Worker, WorkerConfig};
use crate::secrets::{KeyRing, Secret};
use crate::store::Store;
use stagecast_sandbox::{GoogleAdsSandbox, MetaGraphSandbox, TiktokSandbox};

#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Language of the chat alerts: pt, en or es.
    #[arg(long, env = "STAGECAST_LOCALE", default_value = "pt")]
    pub locale: Locale,
    /// Keep the demo database afterwards (to explore it with psql).
    #[arg(long)]
    pub keep: bool,
}

const DEMO_PIXEL_ID: &str = "1234567890";
const DEMO_TOKEN: &str = "EAADEMO-plaintext-token-written-by-the-crm";
const DEMO_TIKTOK_EVENT_SET: &str = "7300000000000000001";
const DEMO_TIKTOK_TOKEN: &str = "TTDEMO-plaintext-token-written-by-the-crm";
const DEMO_GOOGLE_REFRESH: &str = "1//DEMO-plaintext-refresh-token-written-by-the-crm";
const DEMO_GOOGLE_CLIENT_ID: &str = "demo.apps.googleusercontent.com";
const DEMO_GOOGLE_CLIENT_SECRET: &str = "GOCSPX-demo-client-secret";

/// (customer id, name, stage id, stage name, what to expect)
const MOVES: &[(i64, &str, i64, &str, &str)] = &[
    (
        1,
        "Maria Souza",
        2,
        "Qualificado",
        "Lead (stage config is a legacy object, normalised)",
    ),
    (
        2,
        "João Pereira",
        2,
        "Qualificado",
        "LeadSubmitted via WhatsApp: campaign matched from the ad id",
    ),
    (3, "Ana Lima", 3, "Agendou visita", "alert: no campaign"),
    (4, "Pedro Alves", 2, "Qualificado", "alert: pixel inactive"),
    (
        1,
        "Maria Souza",
        4,
        "Comprou",
        "Purchase with the sale price, to Meta, TikTok and Google Ads",
    ),
    (
        5,
        "Carla Dias",
        4,
        "Comprou",
        "alert: purchase without value",
    ),
    (
        6,
        "Bruno Costa",
        5,
        "Retorno",
        "alert: unknown event name \"Purchse\"",
    ),
];

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    println!("stagecast demo\n==============");
    let pg = LocalPostgres::find_or_start(FindOptions::from_env())
        .await
        .context("no PostgreSQL for the demo")?;
    println!("• PostgreSQL: {}", pg.describe());
    let db_name = format!("stagecast_demo_{}", std::process::id());
    let url = pg.create_database(&db_name).await?;
    // Ctrl-C must not leave a demo database behind (unless --keep).
    let result = tokio::select! {
        r = demo(&url, &db_name, &args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if args.keep {
        println!(
            "\nThe demo database is kept: psql '{}'",
            crate::local_pg::redact_url(&url)
        );
        if pg.is_throwaway() {
            println!("(it lives in a throwaway cluster that stops when this process exits)");
        }
    } else if let Err(e) = pg.drop_database(&db_name).await {
        eprintln!("warning: could not drop the demo database {db_name}: {e}");
    }
    result
}

async fn demo(url: &str, db_name: &str, args: &DemoArgs) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
    let store = Store::new(pool.clone());
    store.migrate().await?;
    println!(
        "• database {db_name} created and migrated ({} migrations)",
        crate::store::MIGRATOR.iter().count()
    );

    let sandbox = MetaGraphSandbox::start()
        .await
        .context("could not start the Graph API sandbox")?;
    sandbox.add_pixel(DEMO_PIXEL_ID, DEMO_TOKEN);
    // The demo pixel is the dataset of the seed's WhatsApp Business Account (sql/demo/seed.sql).
    sandbox.link_waba("555000111", DEMO_PIXEL_ID, DEMO_TOKEN);
    println!(
        "• Graph API sandbox on {} (validates requests as Meta documents)",
        sandbox.base_url()
    );

    let tiktok = TiktokSandbox::start()
        .await
        .context("could not start the TikTok Events API sandbox")?;
    tiktok.add_event_source(DEMO_TIKTOK_EVENT_SET, DEMO_TIKTOK_TOKEN);
    println!(
        "• TikTok Events API sandbox on {} (validates requests as TikTok documents)",
        tiktok.base_url()
    );

    let google = GoogleAdsSandbox::start(DEMO_GOOGLE_CLIENT_ID, DEMO_GOOGLE_CLIENT_SECRET)
        .await
        .context("could not start the Google Ads sandbox")?;
    google.add_refresh_token(DEMO_GOOGLE_REFRESH);
    println!(
        "• Google Ads sandbox on {} (OAuth token endpoint and uploadClickConversions, validated as Google documents)",
        google.base_url()
    );

    let keys = match KeyRing::from_env()? {
        Some(k) => {
            println!(
                "• token encryption: STAGECAST_KEYS (primary key {})",
                k.primary_key_id()
            );
            k
        }
        None => {
            println!("• token encryption: an ephemeral demo key (STAGECAST_KEYS is not set)");
            KeyRing::parse(&KeyRing::generate_key_entry("demo")?)?
        }
    };

    sqlx::raw_sql(include_str!("../sql/demo/seed.sql"))
        .execute(&pool)
        .await
        .context("seeding the demo CRM failed")?;
    println!("• demo CRM seeded: 5 stages, 4 pixels (2 Meta, 1 TikTok, 1 Google Ads), 2 campaigns, 6 customers with chats");

    let meta = MetaConfig {
        graph_url: sandbox.base_url(),
        ..MetaConfig::default()
    };
    let pipeline_config = PipelineConfig {
        locale: args.locale,
        retry: RetryPolicy {
            backoff: Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(2),
            },
            ..RetryPolicy::default()
        },
        ..PipelineConfig::default()
    };
    let platforms = Registry::from_config(&PlatformsConfig {
        meta,
        tiktok: TiktokConfig {
            base_url: tiktok.base_url(),
            ..TiktokConfig::default()
        },
        google_ads: GoogleAdsConfig {
            base_url: google.base_url(),
            token_url: google.token_url(),
            client_id: DEMO_GOOGLE_CLIENT_ID.into(),
            client_secret: Some(Secret::new(DEMO_GOOGLE_CLIENT_SECRET)),
            ..GoogleAdsConfig::default()
        },
    })?;
    let pipeline = Pipeline::new(store.clone(), platforms, Some(keys), pipeline_config)?;
    let worker = Worker::new(
        store.clone(),
        pipeline,
        WorkerConfig {
            maintenance_interval: Duration::from_millis(200),
            ..WorkerConfig::default()
        },
    )
    .spawn();
    println!("• worker {} started\n", worker.worker_id());

    println!("Moving customers through the pipeline (each UPDATE is what a CRM does):");
    let started = Instant::now();
    for (customer, name, stage, stage_name, expect) in MOVES {
        sqlx::query("UPDATE customers SET stage_id = $2 WHERE id = $1")
            .bind(customer)
            .bind(stage)
            .execute(&pool)
            .await?;
        println!("  {name:<13} → {stage_name:<15} {expect}");
        // Let each change land on its own, as agents work one customer at a time.
        store.wait_until_drained(Duration::from_secs(10)).await?;
    }
    let drained = store.wait_until_drained(Duration::from_secs(15)).await?;
    // One more maintenance round seals the plaintext token if no event needed it first.
    tokio::time::sleep(Duration::from_millis(400)).await;
    println!(
        "{} in {:.2}s\n",
        if drained {
            "queue drained"
        } else {
            "queue NOT drained (timeout)"
        },
        started.elapsed().as_secs_f64()
    );
    worker.shutdown().await?;

    print_events(&sandbox);
    print_tiktok_events(&tiktok);
    print_google_conversions(&google);
    print_alerts(&pool).await?;
    print_jobs(&pool).await?;
    print_tokens(&pool).await?;
    Ok(())
}

fn short(v: Option<&Value>, n: usize) -> String {
    match v {
        Some(Value::String(s)) => {
            s.chars().take(n).collect::<String>() + if s.chars().count() > n { "…" } else { "" }
        }
        Some(Value::Array(a)) => short(a.first(), n),
        Some(Value::Number(x)) => x.to_string(),
        _ => "-".to_string(),
    }
}

fn print_events(sandbox: &MetaGraphSandbox) {
    let events = sandbox.received();
    println!(
        "Events the Graph API sandbox accepted ({}), PII SHA-256 hashed as Meta specifies:",
        events.len()
    );
    println!(
        "  {:<14} {:<19} {:>9} {:<5} {:<14} {:<14} {:<16} event_id",
        "event", "action_source", "value", "cur", "em", "ph", "ctwa_clid"
    );
    for r in &events {
        let e = &r.event;
        let ud = e.get("user_data");
        let cd = e.get("custom_data");
        println!(
            "  {:<14} {:<19} {:>9} {:<5} {:<14} {:<14} {:<16} {}",
            short(e.get("event_name"), 14),
            short(e.get("action_source"), 19),
            short(cd.and_then(|c| c.get("value")), 9),
            short(cd.and_then(|c| c.get("currency")), 5),
            short(ud.and_then(|u| u.get("em")), 12),
            short(ud.and_then(|u| u.get("ph")), 12),
            short(ud.and_then(|u| u.get("ctwa_clid")), 14),
            short(e.get("event_id"), 12),
        );
    }
    if let Some(first) = events.first() {
        println!(
            "\nThe first event as sent:\n{}",
            serde_json::to_string_pretty(&first.event).unwrap_or_default()
        );
    }
    println!();
}

fn print_tiktok_events(tiktok: &TiktokSandbox) {
    let events = tiktok.received();
    println!(
        "Events the TikTok Events API sandbox accepted ({}), hashed as TikTok specifies (phone E.164 with +):",
        events.len()
    );
    println!(
        "  {:<14} {:<6} {:>9} {:<5} {:<14} {:<14} {:<16} event_id",
        "event", "source", "value", "cur", "email", "phone", "ttclid"
    );
    for r in &events {
        let e = &r.event;
        let user = e.get("user");
        let props = e.get("properties");
        println!(
            "  {:<14} {:<6} {:>9} {:<5} {:<14} {:<14} {:<16} {}",
            short(e.get("event"), 14),
            r.event_source,
            short(props.and_then(|p| p.get("value")), 9),
            short(props.and_then(|p| p.get("currency")), 5),
            short(user.and_then(|u| u.get("email")), 12),
            short(user.and_then(|u| u.get("phone")), 12),
            short(user.and_then(|u| u.get("ttclid")), 14),
            short(e.get("event_id"), 12),
        );
    }
    println!();
}

fn print_google_conversions(google: &GoogleAdsSandbox) {
    let rows = google.accepted();
    println!(
        "Click conversions the Google Ads sandbox accepted ({}), identifiers hashed as Google specifies:",
        rows.len()
    );
    println!(
        "  {:<25} {:>9} {:<5} {:<16} {:<9} {:<14} orderId",
        "conversionDateTime", "value", "cur", "gclid", "consent", "email"
    );
    for r in &rows {
        let email = r
            .get("userIdentifiers")
            .and_then(Value::as_array)
            .and_then(|ids| ids.iter().find_map(|i| i.get("hashedEmail")));
        println!(
            "  {:<25} {:>9} {:<5} {:<16} {:<9} {:<14} {}",
            short(r.get("conversionDateTime"), 25),
            short(r.get("conversionValue"), 9),
            short(r.get("currencyCode"), 5),
            short(r.get("gclid"), 14),
            short(r.pointer("/consent/adUserData"), 9),
            short(email, 12),
            short(r.get("orderId"), 12),
        );
    }
    println!();
}

async fn print_alerts(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let rows: Vec<(String, String)> = sqlx::query_as(include_str!("../sql/demo/alerts.sql"))
        .fetch_all(pool)
        .await?;
    println!(
        "Chat alerts written for agents ({} system messages):",
        rows.len()
    );
    for (name, body) in rows {
        println!("  [{name}] {body}");
    }
    println!();
    Ok(())
}

async fn print_jobs(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let rows: Vec<(i64, String, Option<i64>, Option<String>)> =
        sqlx::query_as(include_str!("../sql/demo/jobs.sql"))
            .fetch_all(pool)
            .await?;
    let done = rows.iter().filter(|r| r.1 == "done").count();
    println!(
        "Jobs: {done} done, {} failed with a reason:",
        rows.len() - done
    );
    for (id, status, customer, note) in rows {
        println!(
            "  job {id:<3} customer {:<3} {status:<7} {}",
            customer.unwrap_or_default(),
            note.unwrap_or_default()
        );
    }
    println!();
    Ok(())
}

async fn print_tokens(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let rows: Vec<(i64, bool, Option<String>)> =
        sqlx::query_as(include_str!("../sql/demo/pixel_tokens.sql"))
            .fetch_all(pool)
            .await?;
    println!(
        "Pixel tokens (the CRM wrote them in plaintext; the worker sealed them with AES-256-GCM):"
    );
    for (id, plaintext, sealed) in rows {
        println!(
            "  pixel {id}: plaintext column {} · access_token_enc {}",
            if plaintext { "still set" } else { "cleared" },
            sealed
                .map(|s| format!("{s}…"))
                .unwrap_or_else(|| "empty".into())
        );
    }
    Ok(())
}
