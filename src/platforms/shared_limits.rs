//! The link of a process's limiters and holds to the database, so every worker on it shares one
//! rate limit, one pause and one hold per destination (docs/operations.md, "Rate limits,
//! throttles and holds"). Attached to each platform's sink when a pipeline is built
//! (`Registry::share_limits`); without it (the doctor, unit tests) limits are the process's own.
//!
//! A database that does not answer within [`DB_TIMEOUT`] must neither stall delivery nor let
//! the workers exceed the limit wildly: for [`DB_RETRY_AFTER`] each worker then uses its local
//! limiter at its share of the limit (the limit divided by the workers seen recently); holds it
//! learns meanwhile stay in its own memory (the other workers learn them from their own refused
//! request), and pauses are kept and written once the database answers again
//! (`DestinationLimiter`'s `unwritten`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::store::{Store, StoreError};

/// How long a shared-limit statement may take before the worker falls back to its local share.
pub const DB_TIMEOUT: Duration = Duration::from_millis(500);
/// The server-side bound of the same statements (their own pool's `statement_timeout` and
/// `lock_timeout`): a little shorter, so the server gives up first and no connection is left
/// waiting on a lock.
const SERVER_TIMEOUT: Duration = Duration::from_millis(400);
/// After a failure, the local share is used this long before the database is tried again.
pub const DB_RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often the workers' presence (and each platform's holds) is re-read.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// A worker not seen for this long no longer counts for the fallback share.
const PEER_WINDOW: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SharedLimitError {
    #[error("shared limits: {0}")]
    Store(#[from] StoreError),
    #[error("shared limits: the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("shared limits: the database failed recently; using this worker's share")]
    Unavailable,
}

struct Inner {
    /// The pipeline's store: only its connection options are used, for `limits`.
    store: Store,
    /// The limits' own small pool, bounded server-side (built on first use, in the runtime).
    limits: std::sync::OnceLock<Store>,
    peer: String,
    peers: AtomicU32,
    down_until: Mutex<Option<Instant>>,
    /// Between a failure and the next statement that answers: logged once each way.
    outage: AtomicBool,
    last_announce: Mutex<Option<Instant>>,
}

/// Cheap to clone; one per pipeline (per database).
#[derive(Clone)]
pub struct SharedLimits {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("peer", &self.inner.peer)
            .field("peers", &self.peers())
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    pub fn new(store: Store) -> Self {
        let peer = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Self {
            inner: Arc::new(Inner {
                store,
                limits: std::sync::OnceLock::new(),
                peer,
                peers: AtomicU32::new(1),
                down_until: Mutex::new(None),
                outage: AtomicBool::new(false),
                last_announce: Mutex::new(None),
            }),
        }
    }

    /// The workers sharing the limits, as last seen (at least 1).
    pub fn peers(&self) -> u32 {
        self.inner.peers.load(Ordering::Relaxed).max(1)
    }

    /// Run one statement against the database, bounded by [`DB_TIMEOUT`]; while it failed
    /// recently, do not even try (the caller uses its local share).
    pub async fn run<T, F>(
        &self,
        platform: &'static str,
        f: impl FnOnce(Store) -> F,
    ) -> Result<T, SharedLimitError>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        if self.is_down() {
            return Err(SharedLimitError::Unavailable);
        }
        self.announce_if_due();
        let result = match tokio::time::timeout(DB_TIMEOUT, f(self.limits_store())).await {
            Ok(Ok(v)) => {
                if self.inner.outage.swap(false, Ordering::Relaxed) {
                    info!(platform, "shared limits available again");
                }
                return Ok(v);
            }
            Ok(Err(e)) => SharedLimitError::Store(e),
            Err(_) => SharedLimitError::Timeout(DB_TIMEOUT),
        };
        self.failed(platform, &result);
        Err(result)
    }

    /// Run a statement in the background (a pause, a released hold): its effect in this
    /// process is immediate, the others learn it when it lands.
    pub fn spawn<F>(&self, platform: &'static str, f: impl FnOnce(Store) -> F + Send + 'static)
    where
        F: std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
    {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        rt.spawn(async move {
            let _ = this.run(platform, f).await;
        });
    }

    fn limits_store(&self) -> Store {
        self.inner
            .limits
            .get_or_init(|| self.inner.store.limits_store(SERVER_TIMEOUT))
            .clone()
    }

    fn is_down(&self) -> bool {
        let mut down = self
            .inner
            .down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *down {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *down = None;
                false
            }
            None => false,
        }
    }

    fn failed(&self, platform: &'static str, error: &SharedLimitError) {
        let mut down = self
            .inner
            .down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if down.is_none() {
            warn!(platform, %error, peers = self.peers(), retry_in = ?DB_RETRY_AFTER,
                "shared limits unavailable; this worker uses its share of each limit meanwhile");
        }
        *down = Some(Instant::now() + DB_RETRY_AFTER);
    }

    /// Refresh the number of peers about every [`REFRESH_EVERY`], in the background.
    fn announce_if_due(&self) {
        {
            let mut last = self
                .inner
                .last_announce
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(&self.inner);
        let store = self.limits_store();
        rt.spawn(async move {
            let announce = store.announce_limit_peer(&inner.peer, PEER_WINDOW.as_secs_f64());
            if let Ok(Ok(n)) = tokio::time::timeout(DB_TIMEOUT, announce).await {
                inner.peers.store(
                    u32::try_from(n).unwrap_or(u32::MAX).max(1),
                    Ordering::Relaxed,
                );
            }
        });
    }
}
