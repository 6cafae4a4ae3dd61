//! The liveness probe: a message the node publishes to itself every interval. A subscription
//! that is connected but no longer echoes it for three intervals is replaced.

use super::{BusState, PubCmd};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The probe of one subscribed session.
pub(super) struct Probe {
    interval: Duration,
    ticker: tokio::time::Interval,
    last_echo: Instant,
    seq: u64,
}

impl Probe {
    pub(super) fn new(interval: Duration) -> Self {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            interval,
            ticker,
            last_echo: Instant::now(),
            seq: 0,
        }
    }

    /// Resolves at the next probe time.
    pub(super) async fn tick(&mut self) {
        self.ticker.tick().await;
    }

    /// The probe came back.
    pub(super) fn echoed(&mut self) {
        self.last_echo = Instant::now();
    }

    /// At a probe time: fails when the probe has not come back for three intervals, otherwise
    /// sends the next one through the publisher.
    pub(super) fn check_and_send(
        &mut self,
        shared: &BusState,
        pub_tx: &mpsc::Sender<PubCmd>,
    ) -> Result<(), String> {
        let publisher_up = shared.publisher_up();
        if publisher_up && self.last_echo.elapsed() > self.interval * 3 {
            shared.metrics.probe_failures.inc();
            return Err(format!(
                "liveness probe not echoed for {:?}",
                self.last_echo.elapsed()
            ));
        }
        if !publisher_up {
            // The publisher is down: no probe can go out, so none can be missed.
            self.last_echo = Instant::now();
        }
        self.seq += 1;
        let _ = pub_tx.try_send(PubCmd::Publish {
            channel: shared.probe_channel.clone(),
            payload: self.seq.to_string().into_bytes(),
            shard: false,
            counted: false,
        });
        Ok(())
    }
}
