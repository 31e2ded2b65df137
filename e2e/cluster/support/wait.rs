//! The one way to wait for something: poll a check until it passes or a deadline
//! passes, then fail with what was awaited and what was last seen.

use std::{future::Future, time::Duration};

use tokio::time::{sleep, Instant};

const POLL: Duration = Duration::from_millis(200);

/// Runs `check` every 200 ms until it returns `Ok`, for at most `timeout`. Panics with
/// "timed out after … waiting for `what` (last: …)" otherwise.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what} (last: {last})");
        }
        sleep(POLL).await;
    }
}
