//! Waiting for an observable condition with a generous deadline (never for a fixed time).

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a condition may take before the test fails: generous, so a loaded 2-core CI
/// machine never fails a correct test; it only bounds how long a broken one hangs.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Poll `cond` every 20 ms until it holds; panic naming `what` after [`DEADLINE`].
pub async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "waited {DEADLINE:?} for {what}, in vain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
