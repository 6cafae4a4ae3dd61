//! Waiting between reconnection attempts: exponential backoff with jitter, and a pause that
//! keeps draining the task's inbox so requests made while Redis is away are not left waiting.

use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A queue a task drains while it waits to reconnect.
pub(super) trait Inbox<T> {
    fn next(&mut self) -> impl std::future::Future<Output = Option<T>> + Send;
}

impl<T: Send> Inbox<T> for mpsc::Receiver<T> {
    fn next(&mut self) -> impl std::future::Future<Output = Option<T>> + Send {
        self.recv()
    }
}

impl<T: Send> Inbox<T> for mpsc::UnboundedReceiver<T> {
    fn next(&mut self) -> impl std::future::Future<Output = Option<T>> + Send {
        self.recv()
    }
}

/// Waits `d`, handing whatever arrives in `inbox` to `handle` meanwhile. False when the bus
/// stops (cancelled, or the inbox closed).
pub(super) async fn pause<T, I: Inbox<T>>(
    d: Duration,
    inbox: &mut I,
    cancel: &CancellationToken,
    mut handle: impl FnMut(T),
) -> bool {
    let wait = tokio::time::sleep(d);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = &mut wait => return true,
            item = inbox.next() => match item {
                None => return false,
                Some(item) => handle(item),
            },
        }
    }
}

/// The wait before reconnection attempt `attempt` (0-based): 100 ms doubling, capped at `max`,
/// plus up to a quarter of jitter so that nodes do not reconnect in lockstep.
pub(super) fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1u32 << attempt.min(8));
    let capped = base.min(max);
    let jitter = rand::random_range(0..=capped.as_millis() as u64 / 4 + 1);
    capped + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(5);
        let first = backoff(0, max);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(126));
        let third = backoff(2, max);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(501));
        let late = backoff(30, max);
        assert!(late >= max && late <= max + max / 4 + Duration::from_millis(1));
    }
}
