//! Where a Redis connection delivers what the server pushes: messages into a bounded queue,
//! and the disconnection notice as a flag that can never be lost to a full queue.

use crate::metrics::RedisMetrics;
use redis::PushKind;
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// The push sender given to one connection.
pub(super) struct PushSink {
    tx: mpsc::Sender<redis::PushInfo>,
    dead: Arc<Notify>,
    metrics: Arc<RedisMetrics>,
}

impl PushSink {
    /// A sink queueing up to `capacity` messages, its receiver, and the disconnection flag.
    pub(super) fn new(
        capacity: usize,
        metrics: Arc<RedisMetrics>,
    ) -> (Self, mpsc::Receiver<redis::PushInfo>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(capacity);
        let dead = Arc::new(Notify::new());
        (
            Self {
                tx,
                dead: dead.clone(),
                metrics,
            },
            rx,
            dead,
        )
    }
}

impl redis::aio::AsyncPushSender for PushSink {
    fn send(&self, info: redis::PushInfo) -> Result<(), redis::aio::SendError> {
        if info.kind == PushKind::Disconnection {
            // notify_one keeps a permit: the waiter sees it even if it is not waiting yet.
            self.dead.notify_one();
            return Ok(());
        }
        match self.tx.try_send(info) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.receive_dropped.inc();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(redis::aio::SendError),
        }
    }
}
