//! Redis Cluster mode, publishing: each `SPUBLISH` goes to the master owning its channel's
//! slot (`PUBLISH`, which the cluster broadcasts, to any master), many in flight per
//! connection. `MOVED` refreshes the slot map and resends to the new owner, `ASK` resends once
//! with `ASKING`, and a publish that finds its connection broken is resent once after the slot
//! map is read again; server counts are asked of the owner (`SHARDNUMSUB`) or summed over the
//! masters (`NUMSUB`).

use super::backoff::{backoff, pause};
use super::health::Side;
use super::nodes::Nodes;
use super::publisher::{fail, take_batch, MAX_BATCH};
use super::{BusState, PubCmd};
use crate::metrics::LossReason;
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One publish waiting to go out.
struct Pending {
    channel: String,
    payload: Vec<u8>,
    shard: bool,
    counted: bool,
}

/// Reads the topology again and connects to every master; on failure, returns when to try
/// again (backoff).
async fn refresh(
    shared: &BusState,
    nodes: &mut Nodes,
    attempt: &mut u32,
) -> Option<tokio::time::Instant> {
    match nodes.refresh_and_connect().await {
        Ok(()) => {
            *attempt = 0;
            shared.set_up(Side::Publisher, true);
            None
        }
        Err(why) => {
            shared.set_up(Side::Publisher, false);
            if attempt.is_multiple_of(10) {
                tracing::warn!(url = %shared.safe_url, error = %why, attempt = *attempt, "cannot reach every master of the Redis Cluster; retrying (a failover may be under way; check the seed addresses and that the cluster is up)");
            }
            let at = tokio::time::Instant::now() + backoff(*attempt, shared.config.max_backoff);
            *attempt = attempt.saturating_add(1);
            Some(at)
        }
    }
}

pub(super) async fn publisher(
    shared: Arc<BusState>,
    mut rx: mpsc::Receiver<PubCmd>,
    cancel: CancellationToken,
) {
    let m = shared.metrics.clone();
    let mut nodes = Nodes::new(shared.clone());
    let mut attempt = 0u32;
    let mut batch: Vec<PubCmd> = Vec::with_capacity(MAX_BATCH);
    // While the topology is stale, when to read it again.
    let mut retry_at = tokio::time::Instant::now();
    loop {
        if nodes.stale && tokio::time::Instant::now() >= retry_at {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = refresh(&shared, &mut nodes, &mut attempt) => next,
            };
            if let Some(at) = next {
                retry_at = at;
                if nodes.map.is_none() {
                    // No slot map at all: nothing can be sent, what is queued is lost. Otherwise
                    // the masters that answer keep being used meanwhile.
                    let d = at.saturating_duration_since(tokio::time::Instant::now());
                    let drained = pause(d, &mut rx, &cancel, |cmd| {
                        let why = "the Redis Cluster is unreachable";
                        fail(&m, cmd, LossReason::Disconnected, why)
                    });
                    if !drained.await {
                        return;
                    }
                    continue;
                }
            }
        }
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(retry_at), if nodes.stale => continue,
            cmd = rx.recv() => match cmd {
                None => return,
                Some(cmd) => cmd,
            },
        };
        take_batch(first, &mut rx, &mut batch, &m);
        let mut pending: Vec<Pending> = Vec::new();
        for cmd in batch.drain(..) {
            match cmd {
                PubCmd::Publish {
                    channel,
                    payload,
                    shard,
                    counted,
                } => pending.push(Pending {
                    channel,
                    payload,
                    shard,
                    counted,
                }),
                // Connection state recovery is off in Redis Cluster mode (lib.rs): never sent.
                PubCmd::Write { .. } => shared.metrics.lost(LossReason::Error, 1),
                PubCmd::Query { cmd, reply } => {
                    send_all(&shared, &mut nodes, std::mem::take(&mut pending)).await;
                    let _ = reply.send(query(&shared, &mut nodes, cmd).await);
                }
            }
        }
        send_all(&shared, &mut nodes, pending).await;
        if nodes.stale {
            shared.set_up(Side::Publisher, false);
        }
    }
}

/// How one publish ended.
enum Outcome {
    Sent,
    Redirect { addr: String, ask: bool },
    Failed(LossReason),
}

async fn send_one(
    mut c: MultiplexedConnection,
    p: &Pending,
    ask: bool,
    timeout: std::time::Duration,
) -> Outcome {
    let mut pipe = redis::pipe();
    if ask {
        pipe.cmd("ASKING").ignore();
    }
    pipe.cmd(if p.shard { "SPUBLISH" } else { "PUBLISH" })
        .arg(&p.channel)
        .arg(&p.payload)
        .ignore();
    match tokio::time::timeout(timeout, pipe.exec_async(&mut c)).await {
        Ok(Ok(())) => Outcome::Sent,
        Ok(Err(e)) => match e.redirect_node() {
            Some((host, port)) => Outcome::Redirect {
                addr: format!("{host}:{port}"),
                ask: e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Ask),
            },
            None if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
                Outcome::Failed(LossReason::Disconnected)
            }
            None => Outcome::Failed(LossReason::Error),
        },
        Err(_) => Outcome::Failed(LossReason::Timeout),
    }
}

/// Sends `pending` to their owners, all in flight at once; follows one redirect each.
async fn send_all(shared: &BusState, nodes: &mut Nodes, pending: Vec<Pending>) {
    if pending.is_empty() {
        return;
    }
    let m = &shared.metrics;
    let timeout = shared.config.publish_timeout;
    let mut jobs = Vec::with_capacity(pending.len());
    for p in &pending {
        let target = nodes.map.as_ref().and_then(|map| {
            if p.shard {
                map.owner_of(&p.channel).map(str::to_owned)
            } else {
                map.masters().into_iter().next()
            }
        });
        let conn = match target {
            Some(addr) => nodes.conn(&addr).await.map(|c| (addr, c)),
            None => Err("no slot map".to_owned()),
        };
        jobs.push(conn);
    }
    let sends = pending.iter().zip(jobs).map(|(p, job)| async move {
        match job {
            Ok((addr, c)) => (addr, send_one(c, p, false, timeout).await),
            Err(_) => (String::new(), Outcome::Failed(LossReason::Disconnected)),
        }
    });
    let results = futures_util::future::join_all(sends).await;
    let mut sent = 0u64;
    // Publishes whose connection was found broken (a master gone since the last slot-map read):
    // resent once after reading the map again.
    let mut resend: Vec<&Pending> = Vec::new();
    for (p, (addr, outcome)) in pending.iter().zip(results) {
        let outcome = match outcome {
            Outcome::Redirect { addr: to, ask } => {
                if !ask {
                    // The slot moved for good: read the new map before the next batch.
                    nodes.stale = true;
                }
                match nodes.conn(&to).await {
                    Ok(c) => match send_one(c, p, ask, timeout).await {
                        Outcome::Redirect { .. } => Outcome::Failed(LossReason::Error),
                        other => other,
                    },
                    Err(_) => Outcome::Failed(LossReason::Disconnected),
                }
            }
            Outcome::Failed(LossReason::Disconnected) if !addr.is_empty() => {
                nodes.forget(&addr);
                nodes.stale = true;
                resend.push(p);
                continue;
            }
            other => {
                if matches!(other, Outcome::Failed(_)) && !addr.is_empty() {
                    nodes.forget(&addr);
                    nodes.stale = true;
                }
                other
            }
        };
        match outcome {
            Outcome::Sent => sent += u64::from(p.counted),
            Outcome::Failed(reason) => {
                if p.counted {
                    m.lost(reason, 1);
                }
            }
            Outcome::Redirect { .. } => {}
        }
    }
    if !resend.is_empty() {
        sent += resend_after_refresh(shared, nodes, &resend).await;
    }
    m.published.inc_by(sent);
}

/// Reads the slot map again and sends `pending` once more to their owners; returns how many
/// counted publishes went out (the others are counted lost).
async fn resend_after_refresh(shared: &BusState, nodes: &mut Nodes, pending: &[&Pending]) -> u64 {
    let m = &shared.metrics;
    let timeout = shared.config.publish_timeout;
    let refreshed = nodes.refresh_and_connect().await.is_ok();
    let mut sent = 0u64;
    for p in pending {
        let target = nodes.map.as_ref().and_then(|map| {
            if p.shard {
                map.owner_of(&p.channel).map(str::to_owned)
            } else {
                map.masters().into_iter().next()
            }
        });
        let outcome = match target {
            Some(addr) if refreshed => match nodes.conn(&addr).await {
                Ok(c) => send_one(c, p, false, timeout).await,
                Err(_) => Outcome::Failed(LossReason::Disconnected),
            },
            _ => Outcome::Failed(LossReason::Disconnected),
        };
        match outcome {
            Outcome::Sent => sent += u64::from(p.counted),
            Outcome::Failed(reason) if p.counted => m.lost(reason, 1),
            Outcome::Redirect { .. } if p.counted => m.lost(LossReason::Error, 1),
            _ => {}
        }
    }
    sent
}

/// Runs a query where it belongs: `PUBSUB SHARDNUMSUB ch` on the owner of `ch`, `PUBSUB
/// NUMSUB ch` on every master (summed), anything else on the first master.
async fn query(
    shared: &BusState,
    nodes: &mut Nodes,
    cmd: redis::Cmd,
) -> Result<redis::Value, String> {
    let args: Vec<Vec<u8>> = cmd
        .args_iter()
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(b.to_vec()),
            _ => None,
        })
        .collect();
    let upper = |i: usize| {
        args.get(i)
            .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
    };
    let channel = args.get(2).map(|a| String::from_utf8_lossy(a).into_owned());
    let Some(map) = nodes.map.clone() else {
        return Err("the Redis Cluster's slot map is not known yet".into());
    };
    let targets: Vec<String> = match (upper(0).as_deref(), upper(1).as_deref(), &channel) {
        (Some("PUBSUB"), Some("SHARDNUMSUB"), Some(ch)) => {
            map.owner_of(ch).map(str::to_owned).into_iter().collect()
        }
        (Some("PUBSUB"), Some("NUMSUB"), Some(_)) => map.masters(),
        _ => map.masters().into_iter().take(1).collect(),
    };
    let mut total: i64 = 0;
    let mut single = None;
    for addr in &targets {
        let mut c = nodes.conn(addr).await?;
        let r = tokio::time::timeout(
            shared.config.publish_timeout,
            cmd.query_async::<redis::Value>(&mut c),
        )
        .await;
        let v = match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.redirect_node().is_some() {
                    nodes.forget(addr);
                    nodes.stale = true;
                }
                return Err(e.to_string());
            }
            Err(_) => {
                nodes.forget(addr);
                nodes.stale = true;
                return Err("Redis did not answer in time".into());
            }
        };
        total += i64::try_from(crate::cluster::numsub(&v)).unwrap_or(0);
        single = Some(v);
    }
    match (targets.len(), channel) {
        (n, Some(ch)) if n > 1 => Ok(redis::Value::Array(vec![
            redis::Value::BulkString(ch.into_bytes()),
            redis::Value::Int(total),
        ])),
        _ => single.ok_or_else(|| "no master owns the channel's slot".to_owned()),
    }
}
