//! Readiness of the node's Redis connections: up when both the publishing and the
//! subscribed connection are, with each outage counted, timed and logged once.

use super::BusState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Transitions of the readiness, under the lock of [`BusState::health`].
#[derive(Default)]
pub(super) struct Health {
    ready: bool,
    ever_ready: bool,
    down_since: Option<Instant>,
}

/// Which of the two connections changed state.
#[derive(Debug, Clone, Copy)]
pub(super) enum Side {
    Publisher,
    Subscriber,
}

impl BusState {
    fn flag(&self, side: Side) -> &AtomicBool {
        match side {
            Side::Publisher => &self.pub_up,
            Side::Subscriber => &self.sub_up,
        }
    }

    /// True while both connections are up and subscribed.
    pub(super) fn ready(&self) -> bool {
        self.sub_up.load(Ordering::Acquire) && self.pub_up.load(Ordering::Acquire)
    }

    /// True while the publishing connection is up.
    pub(super) fn publisher_up(&self) -> bool {
        self.pub_up.load(Ordering::Acquire)
    }

    /// Records that `side` went up or down, and the readiness change that follows.
    pub(super) fn set_up(&self, side: Side, up: bool) {
        self.flag(side).store(up, Ordering::Release);
        let ready = self.ready();
        let Ok(mut h) = self.health.lock() else {
            return;
        };
        if h.ready == ready {
            return;
        }
        h.ready = ready;
        self.metrics.up.set(i64::from(ready));
        if ready {
            if let Some(since) = h.down_since.take() {
                let secs = since.elapsed().as_secs_f64();
                self.metrics.outage_seconds.inc_by(secs);
                tracing::info!(url = %self.safe_url, outage_secs = secs, "Redis connection restored; cluster traffic flows again");
            } else {
                tracing::info!(url = %self.safe_url, node = %self.uid, "connected to Redis");
            }
            h.ever_ready = true;
        } else if h.ever_ready {
            h.down_since = Some(Instant::now());
            self.metrics.outages.inc();
            tracing::warn!(url = %self.safe_url, "lost Redis: node not ready, cluster messages are being lost; reconnecting with backoff (check that Redis is running and reachable)");
        }
    }
}
