//! Waiting on a condition with a deadline, the replacement for sleeps in tests.

use std::future::Future;
use std::time::Duration;

/// How often [`wait_until`] re-evaluates its condition.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Evaluates `condition` every ~20 ms until it returns `true` or `timeout` has passed.
///
/// `what` describes the condition for the error, e.g. `"ingest /health is 200"`.
///
/// # Errors
/// `Err("timed out after ..: <what>")` when the condition never held.
pub async fn wait_until<F, Fut>(
    timeout: Duration,
    what: &str,
    mut condition: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for: {what}"));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
