//! Waiting for observable conditions instead of sleeping "long enough".
//!
//! Tests never assert how fast something happens (a loaded 2-core CI machine is slow at random);
//! they wait for the condition itself, polled every 20 ms, and fail with a message after a
//! deadline far beyond any normal run.

use std::future::Future;
use std::time::{Duration, Instant};

/// The deadline tests use unless they have a reason for another.
pub const DEADLINE: Duration = Duration::from_secs(30);

const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Some`, and returns that value. Panics with `what` after
/// `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `condition` until it is true. Panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, timeout, || {
        let fut = condition();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `probe` until `done` holds for what it returns, and returns that value. Panics with
/// `what` and the last value seen after `timeout`, so a failure says where it got stuck.
pub async fn wait_for_value<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {value:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
