//! The publishing connection: drains the bounded publish queue into pipelines (up to
//! [`MAX_BATCH`] commands per round trip), runs one-off queries in order with the publishes,
//! and reconnects with backoff, counting what is lost while Redis is away.

use super::backoff::{backoff, pause};
use super::health::Side;
use super::push::PushSink;
use super::{BusState, PubCmd};
use crate::metrics::{LossReason, RedisMetrics};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Largest number of publishes sent in one pipeline.
pub(super) const MAX_BATCH: usize = 256;

pub(super) async fn publisher(
    shared: Arc<BusState>,
    mut rx: mpsc::Receiver<PubCmd>,
    cancel: CancellationToken,
) {
    let m = shared.metrics.clone();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut attempt = 0u32;
    let mut batch: Vec<PubCmd> = Vec::with_capacity(MAX_BATCH);
    let mut closed = Arc::new(tokio::sync::Notify::new());
    let mut _pushes: mpsc::Receiver<redis::PushInfo>;
    loop {
        if conn.is_none() {
            // The push channel only carries the disconnection notice: it lets the node notice
            // a dead connection at once instead of at the next failed publish.
            let (sink, pushes, dead) = PushSink::new(1, m.clone());
            closed = dead;
            // Kept open so the sink stays usable until the disconnection notice.
            _pushes = pushes;
            let cfg = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(shared.config.connect_timeout))
                .set_response_timeout(Some(shared.config.publish_timeout))
                .set_push_sender(sink);
            let connect = shared
                .client
                .get_multiplexed_async_connection_with_config(&cfg);
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = tokio::time::timeout(shared.config.connect_timeout, connect) => r,
            };
            match result {
                Ok(Ok(c)) => {
                    conn = Some(c);
                    attempt = 0;
                    shared.set_up(Side::Publisher, true);
                }
                Ok(Err(e)) => {
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(url = %shared.safe_url, error = %e, attempt, "cannot connect to Redis; retrying (check the address, the ACL user and password, the CA file for rediss://, and that Redis is >= 6 for RESP3)");
                    }
                }
                Err(_) => {
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(url = %shared.safe_url, attempt, "connecting to Redis timed out; retrying (check that Redis is up and reachable)");
                    }
                }
            }
            if conn.is_none() {
                shared.set_up(Side::Publisher, false);
                // While down, whatever is queued is lost (and counted) rather than delivered
                // late and out of order.
                let d = backoff(attempt, shared.config.max_backoff);
                attempt = attempt.saturating_add(1);
                let drained = pause(d, &mut rx, &cancel, |cmd| {
                    fail(&m, cmd, LossReason::Disconnected, "Redis is unreachable")
                });
                if !drained.await {
                    return;
                }
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = closed.notified() => {
                tracing::debug!("Redis publish connection closed");
                conn = None;
                shared.set_up(Side::Publisher, false);
                continue;
            }
            cmd = rx.recv() => match cmd {
                None => return,
                Some(cmd) => cmd,
            },
        };
        take_batch(first, &mut rx, &mut batch, &m);
        let mut pipe = redis::pipe();
        let mut pending = 0u64;
        let mut counted_n = 0u64;
        let mut broken = false;
        for cmd in batch.drain(..) {
            match cmd {
                PubCmd::Publish {
                    channel,
                    payload,
                    shard,
                    counted,
                } => {
                    pipe.cmd(if shard { "SPUBLISH" } else { "PUBLISH" })
                        .arg(channel)
                        .arg(payload)
                        .ignore();
                    pending += 1;
                    counted_n += u64::from(counted);
                }
                PubCmd::Write { cmd } => {
                    pipe.add_command(cmd).ignore();
                    pending += 1;
                }
                PubCmd::Query { cmd, reply } => {
                    if broken {
                        let _ = reply.send(Err("Redis connection lost".into()));
                        continue;
                    }
                    if pending > 0 {
                        broken = !flush(&shared, c, &pipe, counted_n).await;
                        pipe = redis::pipe();
                        pending = 0;
                        counted_n = 0;
                    }
                    if broken {
                        let _ = reply.send(Err("Redis connection lost".into()));
                        continue;
                    }
                    let r = tokio::time::timeout(
                        shared.config.publish_timeout,
                        cmd.query_async::<redis::Value>(c),
                    )
                    .await;
                    let r = match r {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => {
                            broken = e.is_io_error() || e.is_connection_dropped();
                            Err(e.to_string())
                        }
                        Err(_) => {
                            broken = true;
                            Err("Redis did not answer in time".into())
                        }
                    };
                    let _ = reply.send(r);
                }
            }
        }
        if pending > 0 {
            if broken {
                m.lost(LossReason::Disconnected, counted_n);
            } else {
                broken = !flush(&shared, c, &pipe, counted_n).await;
            }
        }
        if broken {
            conn = None;
            shared.set_up(Side::Publisher, false);
        }
    }
}

/// Sends a pipeline holding `n` counted publishes; false when the connection must be replaced.
async fn flush(
    shared: &BusState,
    c: &mut MultiplexedConnection,
    pipe: &redis::Pipeline,
    n: u64,
) -> bool {
    let m = &shared.metrics;
    match tokio::time::timeout(shared.config.publish_timeout, pipe.exec_async(c)).await {
        Ok(Ok(())) => {
            m.published.inc_by(n);
            true
        }
        Ok(Err(e)) if !e.is_timeout() => {
            tracing::warn!(error = %e, messages = n, "publishing to Redis failed; messages lost, reconnecting");
            m.lost(LossReason::Error, n);
            false
        }
        _ => {
            tracing::warn!(messages = n, timeout = ?shared.config.publish_timeout, "Redis did not acknowledge a publish in time; messages counted lost, reconnecting");
            m.lost(LossReason::Timeout, n);
            false
        }
    }
}

/// Fills `batch` with `first` and whatever else waits (up to [`MAX_BATCH`]), and reports the
/// queue depth left behind: one round trip carries the whole batch.
pub(super) fn take_batch(
    first: PubCmd,
    rx: &mut mpsc::Receiver<PubCmd>,
    batch: &mut Vec<PubCmd>,
    m: &RedisMetrics,
) {
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(cmd) => batch.push(cmd),
            Err(_) => break,
        }
    }
    m.publish_queue.set(rx.len() as i64);
}

pub(super) fn fail(m: &RedisMetrics, cmd: PubCmd, reason: LossReason, why: &str) {
    match cmd {
        PubCmd::Publish { counted, .. } => m.lost(reason, u64::from(counted)),
        PubCmd::Write { .. } => m.lost(reason, 1),
        PubCmd::Query { reply, .. } => {
            let _ = reply.send(Err(why.to_owned()));
        }
    }
}
