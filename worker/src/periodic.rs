//! Background passes (the janitor, the chunk sweep) that run on a timer for as long as the
//! process lives, shrugging off a failed pass until the next one.
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// Runs `pass` after `first_after`, then every `every`, forever; a failure is logged as `what`.
pub async fn run_every<T, E, F, Fut>(
    what: &'static str,
    first_after: Duration,
    every: Duration,
    mut pass: F,
) where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = tokio::time::Instant::now() + first_after;
    let mut tick = tokio::time::interval_at(start, every.max(Duration::from_millis(1)));
    loop {
        tick.tick().await;
        if let Err(e) = pass().await {
            tracing::warn!(error = %e, "{what} failed; trying again later");
        }
    }
}
