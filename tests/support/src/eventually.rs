//! One way to wait for something that happens in the background (a file reload, a
//! process that starts listening or exits, a probe that flips, a cluster that converges):
//! try, and try again until it holds or the time is up, then fail with what the last try
//! said. Like linkerd2-proxy's `assert_eventually!`, so no test hand-writes a deadline
//! loop, and every such wait is bounded.
//!
//! Two ways to call it, one loop: [`eventually`] for the in-process tests, which poll
//! often and whose `Err` reads like an assertion message, and [`awaiting`] for the
//! end-to-end suite, which names what it awaits and polls real programs (the apiserver,
//! Prometheus, kubectl) less often.

use std::{fmt::Display, future::Future, time::Duration};

use tokio::time::Instant;

/// How often [`eventually`] tries: short next to every timeout the tests use, long
/// enough that a check which makes a request does not load two shared cores.
const POLL: Duration = Duration::from_millis(50);

/// How often [`awaiting`] tries: its checks start processes and query real servers.
const POLL_REAL: Duration = Duration::from_millis(200);

/// Calls `attempt` until it returns `Ok`, and returns that value. If it still fails
/// once `timeout` has passed, panics with the last error as the message, so that the
/// `Err` reads like an assertion message ("readyz never failed"). An `attempt` may
/// itself panic to fail at once (an assertion on a value that must not change).
pub async fn eventually<T, E, F, Fut>(timeout: Duration, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    match retry(timeout, POLL, attempt).await {
        Ok(value) => value,
        Err(last) => panic!("{last}"),
    }
}

/// Like [`eventually`], every 200 ms, and the panic says what was awaited:
/// "timed out after … waiting for `what` (last: …)".
pub async fn awaiting<T, E, F, Fut>(timeout: Duration, what: &str, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    match retry(timeout, POLL_REAL, attempt).await {
        Ok(value) => value,
        Err(last) => panic!("timed out after {timeout:?} waiting for {what} (last: {last})"),
    }
}

/// The loop: `Ok` as soon as an attempt succeeds, else the last error once `timeout`
/// has passed.
async fn retry<T, E, F, Fut>(timeout: Duration, poll: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(poll).await,
        }
    }
}
