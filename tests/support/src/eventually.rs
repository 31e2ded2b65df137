//! One way to wait for something that happens in the background (a file reload, a
//! process that starts listening or exits, a probe that flips): try, and try again
//! until it holds or the time is up, then fail with what the last try said. Like
//! linkerd2-proxy's `assert_eventually!`, so no test hand-writes a deadline loop, and
//! every such wait is bounded.

use std::{fmt::Display, future::Future, time::Duration};

use tokio::time::Instant;

/// How long to sleep between tries: short next to every timeout the tests use, long
/// enough that a check which makes a request does not load two shared cores.
const POLL: Duration = Duration::from_millis(50);

/// Calls `attempt` until it returns `Ok`, and returns that value. If it still fails
/// once `timeout` has passed, panics with the last error as the message, so that the
/// `Err` reads like an assertion message ("readyz never failed"). An `attempt` may
/// itself panic to fail at once (an assertion on a value that must not change).
pub async fn eventually<T, E, F, Fut>(timeout: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let deadline = Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => panic!("{last}"),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
