//! The statements of dead-worker rescue (docs/operations.md, "Dead-worker rescue"): each worker
//! holds a session-level advisory lock on a connection of its own; rescuers release the jobs of
//! registered workers whose lock is gone.

use sqlx::Connection as _;
use sqlx::PgConnection;

use super::{timed, Bounds, Result, Store};

mod sql {
    pub const WORKER_LOCK_SESSION: &str = include_str!("../../sql/worker_lock_session.sql");
    pub const REGISTER_WORKER: &str = include_str!("../../sql/register_worker.sql");
    pub const TAKE_WORKER_LOCK: &str = include_str!("../../sql/take_worker_lock.sql");
    pub const WORKER_LOCK_HELD: &str = include_str!("../../sql/worker_lock_held.sql");
    pub const RESCUE_DEAD_WORKERS: &str = include_str!("../../sql/rescue_dead_workers.sql");
}

/// The session that holds a worker's liveness lock. Not from the pool: a pooled connection
/// is shared and recycled, and the lock must live exactly as long as this one session. Dropping
/// it closes the session, which releases the lock.
#[derive(Debug)]
pub struct LockSession {
    conn: PgConnection,
    key: i32,
}

/// What one rescue did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rescue {
    /// Jobs whose lease was cut short: the next claim takes them up.
    pub released: u64,
    /// Workers found dead (their rows are deleted).
    pub dead: Vec<String>,
}

impl Store {
    /// Open a session of its own and take `worker`'s liveness lock in it (registering the
    /// worker first). `None` when the lock is still held: by the session of this worker that was
    /// just lost, which the server has not seen end yet.
    pub async fn take_worker_lock(&self, worker: &str) -> Result<Option<LockSession>> {
        let mut conn = PgConnection::connect_with(&self.pool().connect_options()).await?;
        timed(
            "worker_lock_session",
            sqlx::query(sql::WORKER_LOCK_SESSION)
                .bind(worker)
                .execute(&mut conn),
        )
        .await?;
        let key: i32 = timed(
            "register_worker",
            sqlx::query_scalar(sql::REGISTER_WORKER)
                .bind(worker)
                .fetch_one(&mut conn),
        )
        .await?;
        let got: bool = timed(
            "take_worker_lock",
            sqlx::query_scalar(sql::TAKE_WORKER_LOCK)
                .bind(key)
                .fetch_one(&mut conn),
        )
        .await?;
        if !got {
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(LockSession { conn, key }))
    }

    /// Release the jobs of workers whose lock stayed missing for `grace` (nothing in the first
    /// `restart_grace` after the server started), bounded by [`Bounds::MAINTENANCE`].
    pub async fn rescue_dead_workers(
        &self,
        grace: std::time::Duration,
        restart_grace: std::time::Duration,
    ) -> Result<Rescue> {
        let mut tx = self.begin_bounded(Bounds::MAINTENANCE).await?;
        let (released, dead): (i64, Vec<String>) = timed(
            "rescue_dead_workers",
            sqlx::query_as(sql::RESCUE_DEAD_WORKERS)
                .bind(grace.as_secs_f64())
                .bind(restart_grace.as_secs_f64())
                .fetch_one(&mut *tx),
        )
        .await?;
        tx.commit().await?;
        Ok(Rescue {
            released: released as u64,
            dead,
        })
    }
}

impl LockSession {
    /// Whether this session still holds the lock (an error: the session is gone or unusable).
    pub async fn held(&mut self) -> Result<bool> {
        Ok(timed(
            "worker_lock_held",
            sqlx::query_scalar(sql::WORKER_LOCK_HELD)
                .bind(self.key)
                .fetch_one(&mut self.conn),
        )
        .await?)
    }

    /// Close the session (the server releases the lock with it).
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}
