//! A whole stagecast stack for integration tests: a fresh database, the Graph API, TikTok and
//! Google Ads sandboxes, and in-process workers tuned for fast tests (short backoff, polls and pauses).
//!
//! Workers (in-process and spawned) run as the database's worker role, the CRM helpers
//! (`seed_standard`, `customer`, `move_to`, `crm_exec`) as its CRM role and `admin_exec` (replay,
//! cancel) as its admin role, as in production; `pool()` and `exec` are the superuser's, for
//! assertions and setup no CRM would do.
#![allow(dead_code)]

use std::time::Duration;

use stagecast::pipeline::{Pipeline, PipelineConfig};
use stagecast::platforms::google_ads::GoogleAdsConfig;
use stagecast::platforms::meta::MetaConfig;
use stagecast::platforms::tiktok::TiktokConfig;
use stagecast::platforms::{PlatformsConfig, Registry};
use stagecast::queue::{Backoff, RetryPolicy, Worker, WorkerConfig, WorkerHandle};
use stagecast::secrets::{KeyRing, Secret};
use stagecast::store::Store;
use stagecast_sandbox::{GoogleAdsSandbox, MetaGraphSandbox, TiktokSandbox};

use super::TestDb;

pub const PIXEL: &str = "1111222233334444";
pub const TOKEN: &str = "EAAtest-secret-token-9f8e7d";
/// The TikTok CRM event set of `seed_tiktok`, and its token.
pub const TIKTOK_EVENT_SET: &str = "7301234567890123456";
pub const TIKTOK_TOKEN: &str = "tt-secret-access-token-5c4b3a";
/// The Google Ads destination of `seed_google`: its customer, conversion action, the OAuth
/// client every worker of the stack uses, and the destination's refresh token.
pub const GOOGLE_CUSTOMER: &str = "1234567890";
pub const GOOGLE_ACTION: &str = "987654321";
pub const GOOGLE_CLIENT_ID: &str = "stagecast-test.apps.googleusercontent.com";
pub const GOOGLE_CLIENT_SECRET: &str = "GOCSPX-test-client-secret-7q6w5e";
pub const GOOGLE_REFRESH: &str = "1//0g-test-refresh-token-4r3t2y";
pub const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub struct Stack {
    pub db: TestDb,
    /// The worker role's store (what the in-process workers use).
    pub store: Store,
    pub sandbox: MetaGraphSandbox,
    /// TikTok's Events API, played locally.
    pub tiktok: TiktokSandbox,
    /// Google's OAuth token endpoint and the Google Ads API, played locally.
    pub google: GoogleAdsSandbox,
    pub keys: KeyRing,
}

/// Worker and pipeline knobs a test may change.
#[derive(Clone)]
pub struct Tuning {
    pub meta: MetaConfig,
    pub tiktok: TiktokConfig,
    pub google_ads: GoogleAdsConfig,
    pub pipeline: PipelineConfig,
    pub worker: WorkerConfig,
}

impl Tuning {
    /// The platforms of a pipeline with these settings (as `stagecast run` builds them).
    pub fn registry(&self) -> Registry {
        Registry::from_config(&PlatformsConfig {
            meta: self.meta.clone(),
            tiktok: self.tiktok.clone(),
            google_ads: self.google_ads.clone(),
        })
        .expect("platform config")
    }
}

impl Stack {
    pub async fn new() -> Stack {
        let db = TestDb::new().await;
        let store = Store::new(db.worker_pool.clone());
        let sandbox = MetaGraphSandbox::start().await.expect("sandbox starts");
        sandbox.add_pixel(PIXEL, TOKEN);
        let tiktok = TiktokSandbox::start().await.expect("tiktok sandbox starts");
        tiktok.add_event_source(TIKTOK_EVENT_SET, TIKTOK_TOKEN);
        let google = GoogleAdsSandbox::start(GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET)
            .await
            .expect("google ads sandbox starts");
        google.add_refresh_token(GOOGLE_REFRESH);
        let keys = KeyRing::parse(KEYS).expect("test key ring");
        Stack {
            db,
            store,
            sandbox,
            tiktok,
            google,
            keys,
        }
    }

    /// The superuser's pool: assertions and setup no CRM would do.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.db.pool
    }

    /// The CRM role's pool: every write a CRM makes.
    pub fn crm(&self) -> &sqlx::PgPool {
        &self.db.crm_pool
    }

    /// The admin role's pool: what `stagecast jobs` and a CRM's admin screen do.
    pub fn admin(&self) -> &sqlx::PgPool {
        &self.db.admin_pool
    }

    /// Fast settings: retries after ≤ 100 ms, polls every 50 ms, throttle pauses of 300 ms.
    pub fn tuning(&self) -> Tuning {
        Tuning {
            meta: MetaConfig {
                graph_url: self.sandbox.base_url(),
                timeout: Duration::from_secs(5),
                throttle_pause: Duration::from_millis(300),
                ..MetaConfig::default()
            },
            tiktok: TiktokConfig {
                base_url: self.tiktok.base_url(),
                timeout: Duration::from_secs(5),
                throttle_pause: Duration::from_millis(300),
                ..TiktokConfig::default()
            },
            google_ads: GoogleAdsConfig {
                base_url: self.google.base_url(),
                token_url: self.google.token_url(),
                client_id: GOOGLE_CLIENT_ID.into(),
                client_secret: Some(Secret::new(GOOGLE_CLIENT_SECRET)),
                // A delivery may refresh a token and upload: twice this stays under the lease.
                timeout: Duration::from_secs(3),
                throttle_pause: Duration::from_millis(300),
                ..GoogleAdsConfig::default()
            },
            pipeline: PipelineConfig {
                retry: RetryPolicy {
                    backoff: Backoff {
                        base: Duration::from_millis(50),
                        cap: Duration::from_millis(100),
                    },
                    ..RetryPolicy::default()
                },
                ..PipelineConfig::default()
            },
            worker: WorkerConfig {
                poll_interval: Duration::from_millis(50),
                maintenance_interval: Duration::from_millis(100),
                lease: Duration::from_secs(10),
                heartbeat_interval: Some(Duration::from_secs(1)),
                drain_timeout: Duration::from_secs(10),
                ..WorkerConfig::default()
            },
        }
    }

    pub fn start_worker(&self) -> WorkerHandle {
        self.start_worker_with(self.tuning())
    }

    /// Each worker gets a worker id of its own, even from a cloned `Tuning` (the id is made
    /// when the tuning is): two workers under one id would share their leases, and the second
    /// could never take the first one's liveness lock.
    pub fn start_worker_with(&self, mut t: Tuning) -> WorkerHandle {
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        t.worker.worker_id = format!("{}-{n}", t.worker.worker_id);
        let pipeline = Pipeline::new(
            self.store.clone(),
            t.registry(),
            Some(self.keys.clone()),
            t.pipeline,
        )
        .expect("pipeline config");
        Worker::new(self.store.clone(), pipeline, t.worker).spawn()
    }

    /// The `stagecast run` binary pointed at this stack (database, sandbox, keys), tuned for
    /// fast tests, logging JSON, stdout/stderr piped, killed on drop. Its environment is only
    /// what this sets (see `support::process::stagecast`): nothing of the developer's leaks in.
    /// Callers add `STAGECAST_LOG` and anything else they need, then spawn it.
    pub fn worker_command(&self) -> tokio::process::Command {
        let mut cmd = super::process::stagecast();
        cmd.args([
            "--log-format",
            "json",
            "run",
            "--metrics-addr",
            "",
            "--poll-interval",
            "50ms",
            "--retry-base",
            "50ms",
            "--retry-cap",
            "100ms",
        ])
        .env("DATABASE_URL", &self.db.worker_url)
        .env("STAGECAST_META_GRAPH_URL", self.sandbox.base_url())
        .env("STAGECAST_TIKTOK_BASE_URL", self.tiktok.base_url())
        .env("STAGECAST_GOOGLE_ADS_BASE_URL", self.google.base_url())
        .env("STAGECAST_GOOGLE_ADS_TOKEN_URL", self.google.token_url())
        .env("STAGECAST_GOOGLE_ADS_CLIENT_ID", GOOGLE_CLIENT_ID)
        .env("STAGECAST_GOOGLE_ADS_CLIENT_SECRET", GOOGLE_CLIENT_SECRET)
        // Under the stack's 10 s lease: a delivery may refresh a token and upload.
        .env("STAGECAST_GOOGLE_ADS_TIMEOUT", "4s")
        .env("STAGECAST_KEYS", KEYS)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        cmd
    }

    /// Run SQL as the superuser (setup no CRM would do).
    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(self.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    /// Run SQL as the CRM role: writes to the CRM's tables.
    pub async fn crm_exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(self.crm())
            .await
            .unwrap_or_else(|e| panic!("as the CRM role: {e}: {sql}"));
    }

    /// Run SQL as the admin role: the audited replay and cancel functions.
    pub async fn admin_exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(self.admin())
            .await
            .unwrap_or_else(|e| panic!("as the admin role: {e}: {sql}"));
    }

    /// Standard CRM: pixel 1 (active, default, sealed token), campaign 1 → pixel 1, stage 1
    /// "Qualificado" (Lead), stage 2 "Comprou" (Purchase using the sale price).
    pub async fn seed_standard(&self) {
        sqlx::query(
            "INSERT INTO pixels (id, platform, name, pixel_id, access_token_enc, active, is_default) \
             VALUES (1, 'facebook', 'Main', $1, $2, true, true)",
        )
        .bind(PIXEL)
        .bind(self.keys.seal(TOKEN))
        .execute(self.crm())
        .await
        .expect("insert pixel");
        self.crm_exec(
            r#"
            INSERT INTO utm_campaigns (id, name, facebook_ad_ids, pixel_id) VALUES (1, 'Verão', ARRAY['120226305854810726'], 1);
            INSERT INTO crm_stages (id, name, funnel_category, utm_event) VALUES
              (1, 'Qualificado', 'meio', '[{"platform":"facebook","event_name":"Lead"}]'),
              (2, 'Comprou', 'fundo', '[{"platform":"facebook","event_name":"Purchase","use_sale_price":true}]');
            "#,
        )
        .await;
    }

    /// TikTok next to the standard CRM: pixel 2 (TikTok CRM event set, default for TikTok,
    /// sealed token), and stages 1 and 2 sending to Meta and to TikTok.
    pub async fn seed_tiktok(&self) {
        sqlx::query(
            "INSERT INTO pixels (id, platform, name, pixel_id, access_token_enc, active, is_default) \
             VALUES (2, 'tiktok', 'TikTok CRM', $1, $2, true, true)",
        )
        .bind(TIKTOK_EVENT_SET)
        .bind(self.keys.seal(TIKTOK_TOKEN))
        .execute(self.crm())
        .await
        .expect("insert tiktok pixel");
        self.crm_exec(
            r#"
            UPDATE crm_stages SET utm_event = '[{"platform":"facebook","event_name":"Lead"},{"platform":"tiktok","event_name":"Lead"}]' WHERE id = 1;
            UPDATE crm_stages SET utm_event = '[{"platform":"facebook","event_name":"Purchase","use_sale_price":true},{"platform":"tiktok","event_name":"Purchase","use_sale_price":true}]' WHERE id = 2;
            "#,
        )
        .await;
    }

    /// Google Ads next to the standard CRM: pixel 3 (customer `GOOGLE_CUSTOMER`, conversion
    /// action `GOOGLE_ACTION`, default for Google Ads, sealed refresh token), and stage 2
    /// ("Comprou") sending to Meta and to Google Ads.
    pub async fn seed_google(&self) {
        sqlx::query(
            "INSERT INTO pixels (id, platform, name, pixel_id, access_token_enc, conversion_action_id, active, is_default) \
             VALUES (3, 'google_ads', 'Google Ads - Venda', '123-456-7890', $1, $2, true, true)",
        )
        .bind(self.keys.seal(GOOGLE_REFRESH))
        .bind(GOOGLE_ACTION)
        .execute(self.crm())
        .await
        .expect("insert google ads pixel");
        self.crm_exec(
            r#"UPDATE crm_stages SET utm_event = '[{"platform":"facebook","event_name":"Purchase","use_sale_price":true},{"platform":"google_ads","event_name":"Purchase","use_sale_price":true}]' WHERE id = 2;"#,
        )
        .await;
    }

    /// A customer in campaign 1 with a chat; returns its id.
    pub async fn customer(
        &self,
        id: i64,
        email: &str,
        phone: &str,
        sale_price: Option<f64>,
    ) -> i64 {
        sqlx::query(
            "INSERT INTO customers (id, name, email, phone, utm_campaign_id, sale_price, client_ip) \
             VALUES ($1, 'Maria da Silva', $2, $3, 1, $4, '200.150.10.20')",
        )
        .bind(id)
        .bind(email)
        .bind(phone)
        .bind(sale_price)
        .execute(self.crm())
        .await
        .expect("insert customer");
        sqlx::query("INSERT INTO chats (customer_id, channel, external_id) VALUES ($1, 'whatsapp', 'chat-' || $1)")
            .bind(id)
            .execute(self.crm())
            .await
            .expect("insert chat");
        id
    }

    /// The CRM moves a customer: a plain UPDATE, as any CRM would.
    pub async fn move_to(&self, customer: i64, stage: i64) {
        sqlx::query("UPDATE customers SET stage_id = $2 WHERE id = $1")
            .bind(customer)
            .bind(stage)
            .execute(self.crm())
            .await
            .expect("CRM update succeeds");
    }

    pub async fn drained(&self) {
        assert!(
            self.store
                .wait_until_drained(Duration::from_secs(20))
                .await
                .expect("queue counts"),
            "queue did not drain within 20s"
        );
    }

    /// (status, last_error) of every stage_change job of a customer, live or archived.
    pub async fn jobs_of(&self, customer: i64) -> Vec<(String, Option<String>)> {
        sqlx::query_as(
            "SELECT status, last_error FROM stagecast.jobs WHERE customer_id = $1 AND kind = 'stage_change' \
             UNION ALL SELECT 'done', note FROM stagecast.job_archive WHERE customer_id = $1 AND kind = 'stage_change'",
        )
        .bind(customer)
        .fetch_all(self.pool())
        .await
        .expect("jobs query")
    }

    /// System messages (alerts) in a customer's chats.
    pub async fn chat_alerts(&self, customer: i64) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT m.body FROM chat_messages m JOIN chats c ON c.id = m.chat_id \
             WHERE c.customer_id = $1 AND m.direction = 'system' ORDER BY m.id",
        )
        .bind(customer)
        .fetch_all(self.pool())
        .await
        .expect("alerts query")
    }

    /// Alert causes recorded for a customer.
    pub async fn alert_causes(&self, customer: i64) -> Vec<String> {
        sqlx::query_scalar("SELECT cause FROM stagecast.alerts WHERE customer_id = $1 ORDER BY id")
            .bind(customer)
            .fetch_all(self.pool())
            .await
            .expect("alert causes")
    }
}
