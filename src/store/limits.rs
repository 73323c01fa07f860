//! The limits every worker on a database shares (`platforms::shared_limits`): request slots and
//! pauses per destination, holds, and the workers' presence. Each is one short statement in
//! autocommit, bounded by the caller's timeout.

use super::{timed, Result, Store};

mod sql {
    pub const TAKE_REQUEST_SLOT: &str = include_str!("../../sql/take_request_slot.sql");
    pub const PAUSE_DESTINATION: &str = include_str!("../../sql/pause_destination.sql");
    pub const HOLD_DESTINATION: &str = include_str!("../../sql/hold_destination.sql");
    pub const DESTINATION_HOLDS: &str = include_str!("../../sql/destination_holds.sql");
    pub const RELEASE_DESTINATION_HOLD: &str =
        include_str!("../../sql/release_destination_hold.sql");
    pub const CLAIM_HOLD_PROBE: &str = include_str!("../../sql/claim_hold_probe.sql");
    pub const ANNOUNCE_LIMIT_PEER: &str = include_str!("../../sql/announce_limit_peer.sql");
    pub const LIMIT_SESSION_SETTINGS: &str = include_str!("../../sql/limit_session_settings.sql");
}

/// Connections of the shared limits' own pool: few (their statements take a fraction of a
/// millisecond), so a slow or locked limits table can neither take the claim's and the
/// write-back's connections nor be waited on longer than `statement_timeout`.
const LIMIT_POOL_SIZE: u32 = 3;

/// The answer to a slot request: held (the `hold_*` fields, when a hold was asked about), paused
/// (for that many seconds), or go after `wait_for` seconds.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RequestSlot {
    pub paused_for: Option<f64>,
    pub wait_for: f64,
    pub hold_cause: Option<String>,
    pub hold_http_status: Option<i32>,
    pub hold_error_code: Option<String>,
    pub hold_error_subcode: Option<i64>,
    pub hold_trace_id: Option<String>,
    pub hold_message: Option<String>,
    pub hold_probe_in: Option<f64>,
}

/// Which hold a slot request also checks (sql/take_request_slot.sql): the destination's hold
/// key and the fingerprint of the configuration about to be sent.
#[derive(Debug, Clone, Copy)]
pub struct HoldQuery<'a> {
    pub key: &'a str,
    pub fingerprint: &'a str,
}

impl RequestSlot {
    /// The hold the slot found (no slot was taken then), as a stored row.
    pub fn hold(&self, query: HoldQuery<'_>) -> Option<HoldRow> {
        Some(HoldRow {
            destination: query.key.to_string(),
            fingerprint: query.fingerprint.to_string(),
            cause: self.hold_cause.clone()?,
            http_status: self.hold_http_status,
            error_code: self.hold_error_code.clone(),
            error_subcode: self.hold_error_subcode,
            trace_id: self.hold_trace_id.clone(),
            message: self.hold_message.clone().unwrap_or_default(),
            probe_in: self.hold_probe_in.unwrap_or(0.0),
        })
    }
}

/// A pause to record (see [`Store::pause_destination`]); seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PauseRequest {
    pub hint: Option<f64>,
    pub first: f64,
    pub max: f64,
    pub throttle: bool,
}

/// The answer to a probe claim (sql/claim_hold_probe.sql).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeClaim {
    /// This worker sends the probe.
    Probe,
    /// Another worker claimed it: hold.
    Held,
    /// The hold of this configuration is gone (lifted by another worker).
    Open,
}

/// A hold as stored (the error's fields, `probe_in` seconds until the next probe).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HoldRow {
    pub destination: String,
    pub fingerprint: String,
    pub cause: String,
    pub http_status: Option<i32>,
    pub error_code: Option<String>,
    pub error_subcode: Option<i64>,
    pub trace_id: Option<String>,
    pub message: String,
    pub probe_in: f64,
}

/// A hold to record (see [`Store::hold_destination`]).
#[derive(Debug, Clone)]
pub struct NewHold<'a> {
    pub platform: &'a str,
    pub destination: &'a str,
    pub fingerprint: &'a str,
    pub cause: &'a str,
    pub http_status: Option<u16>,
    pub error_code: Option<&'a str>,
    pub error_subcode: Option<i64>,
    pub trace_id: Option<&'a str>,
    pub message: &'a str,
    pub probe_in: f64,
}

impl Store {
    /// A store on a small pool of its own for the shared limits, to the same database as this
    /// one, whose sessions give up on any statement after `timeout` (server side). Connects
    /// lazily; call it inside the runtime.
    pub fn limits_store(&self, timeout: std::time::Duration) -> Store {
        let bound = super::millis(timeout);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .after_connect(move |conn, _meta| {
                let bound = bound.clone();
                Box::pin(async move {
                    use sqlx::Executor as _;
                    conn.execute(super::session::PIN_SEARCH_PATH).await?;
                    sqlx::query(sql::LIMIT_SESSION_SETTINGS)
                        .bind(bound)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .max_connections(LIMIT_POOL_SIZE)
            .acquire_timeout(timeout)
            .connect_lazy_with((*self.pool.connect_options()).clone());
        Store::new(pool)
    }

    /// Reserve the next request slot of a destination (GCRA over the shared row), unless it is
    /// paused or (`hold` given) held for that configuration.
    pub async fn take_request_slot(
        &self,
        platform: &str,
        destination: &str,
        interval_secs: f64,
        tolerance_secs: f64,
        hold: Option<HoldQuery<'_>>,
    ) -> Result<RequestSlot> {
        Ok(timed(
            "take_request_slot",
            sqlx::query_as(sql::TAKE_REQUEST_SLOT)
                .bind(platform)
                .bind(destination)
                .bind(interval_secs)
                .bind(tolerance_secs)
                .bind(hold.map(|h| h.key))
                .bind(hold.map(|h| h.fingerprint))
                .fetch_one(&self.pool),
        )
        .await?)
    }

    /// Pause a destination for every worker (a longer pause already there stays): for `hint`
    /// seconds, or (a throttle without a hint) `first` seconds doubled per throttle of the
    /// shared streak, at most `max`. `throttle` false: usage ran high, `hint` is the pause and
    /// the streak is kept. Returns the pause in force, in seconds from now, and the streak.
    pub async fn pause_destination(
        &self,
        platform: &str,
        destination: &str,
        pause: PauseRequest,
    ) -> Result<(f64, i32)> {
        Ok(timed(
            "pause_destination",
            sqlx::query_as(sql::PAUSE_DESTINATION)
                .bind(platform)
                .bind(destination)
                .bind(pause.hint)
                .bind(pause.first)
                .bind(pause.max)
                .bind(pause.throttle)
                .fetch_one(&self.pool),
        )
        .await?)
    }

    /// Record a hold; true when it is news (the caller raises the one alert).
    pub async fn hold_destination(&self, h: &NewHold<'_>) -> Result<bool> {
        Ok(timed(
            "hold_destination",
            sqlx::query_scalar(sql::HOLD_DESTINATION)
                .bind(h.platform)
                .bind(h.destination)
                .bind(h.fingerprint)
                .bind(h.cause)
                .bind(h.http_status.map(i32::from))
                .bind(h.error_code)
                .bind(h.error_subcode)
                .bind(h.trace_id)
                .bind(h.message)
                .bind(h.probe_in)
                .fetch_one(&self.pool),
        )
        .await?)
    }

    /// Every hold of one platform's destinations.
    pub async fn destination_holds(&self, platform: &str) -> Result<Vec<HoldRow>> {
        Ok(timed(
            "destination_holds",
            sqlx::query_as(sql::DESTINATION_HOLDS)
                .bind(platform)
                .fetch_all(&self.pool),
        )
        .await?)
    }

    /// Lift a destination's hold: any (`fingerprint` None) or only that configuration's.
    pub async fn release_destination_hold(
        &self,
        platform: &str,
        destination: &str,
        fingerprint: Option<&str>,
    ) -> Result<()> {
        timed(
            "release_destination_hold",
            sqlx::query(sql::RELEASE_DESTINATION_HOLD)
                .bind(platform)
                .bind(destination)
                .bind(fingerprint)
                .execute(&self.pool),
        )
        .await?;
        Ok(())
    }

    /// This worker found a held destination's probe due: claim it (one worker of all wins).
    pub async fn claim_hold_probe(
        &self,
        platform: &str,
        destination: &str,
        fingerprint: &str,
        secs: f64,
    ) -> Result<ProbeClaim> {
        let claim: String = timed(
            "claim_hold_probe",
            sqlx::query_scalar(sql::CLAIM_HOLD_PROBE)
                .bind(platform)
                .bind(destination)
                .bind(secs)
                .bind(fingerprint)
                .fetch_one(&self.pool),
        )
        .await?;
        Ok(match claim.as_str() {
            "probe" => ProbeClaim::Probe,
            "open" => ProbeClaim::Open,
            _ => ProbeClaim::Held,
        })
    }

    /// Say `peer` shares the limits; how many peers (itself included) were seen within
    /// `within_secs`.
    pub async fn announce_limit_peer(&self, peer: &str, within_secs: f64) -> Result<i64> {
        Ok(timed(
            "announce_limit_peer",
            sqlx::query_scalar(sql::ANNOUNCE_LIMIT_PEER)
                .bind(peer)
                .bind(within_secs)
                .fetch_one(&self.pool),
        )
        .await?)
    }
}
