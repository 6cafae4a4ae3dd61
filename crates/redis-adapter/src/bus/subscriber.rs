//! The subscribed connection (RESP3, so plain, pattern and sharded subscriptions share it):
//! keeps the set of wanted subscriptions, restores it in full after a reconnect, hands each
//! message to the route that registered its channel, and runs the liveness probe.

use super::backoff::{backoff, pause};
use super::health::Side;
use super::probe::Probe;
use super::push::PushSink;
use super::{BusState, PubCmd, SubCtl, SubKind};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushKind};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages from Redis that may wait for the subscriber task; past that the node is not
/// keeping up, and further messages are dropped and counted rather than piling up in memory.
pub(super) const RECEIVE_QUEUE: usize = 65_536;

/// The subscriptions the node wants, whatever Redis has at the moment.
pub(super) struct Desired {
    pub(super) set: BTreeSet<(SubKind, String)>,
}

impl Desired {
    pub(super) fn apply(&mut self, ctl: &SubCtl) -> bool {
        match ctl {
            SubCtl::Add(k, c) => self.set.insert((*k, c.clone())),
            SubCtl::Remove(k, c) => self.set.remove(&(*k, c.clone())),
        }
    }
}

pub(super) async fn subscriber(
    shared: Arc<BusState>,
    mut ctl: mpsc::UnboundedReceiver<SubCtl>,
    pub_tx: mpsc::Sender<PubCmd>,
    cancel: CancellationToken,
) {
    let mut desired = Desired {
        set: BTreeSet::new(),
    };
    desired
        .set
        .insert((SubKind::Channel, shared.probe_channel.clone()));
    let mut attempt = 0u32;
    loop {
        match session(&shared, &mut ctl, &mut desired, &pub_tx, &cancel).await {
            SessionEnd::Cancelled => return,
            SessionEnd::Failed { was_up, why } => {
                shared.set_up(Side::Subscriber, false);
                if was_up {
                    attempt = 0;
                    tracing::warn!(reason = %why, "Redis subscription lost; resubscribing");
                } else if attempt.is_multiple_of(10) {
                    tracing::warn!(reason = %why, attempt, "cannot subscribe on Redis; retrying (the sharded mode needs Redis >= 7)");
                }
            }
        }
        let d = backoff(attempt, shared.config.max_backoff);
        attempt = attempt.saturating_add(1);
        if !pause(d, &mut ctl, &cancel, |c| {
            desired.apply(&c);
        })
        .await
        {
            return;
        }
    }
}

enum SessionEnd {
    Cancelled,
    Failed { was_up: bool, why: String },
}

pub(super) async fn send_sub(
    c: &mut MultiplexedConnection,
    verb: &str,
    channels: &[&str],
    timeout: Duration,
) -> Result<(), String> {
    if channels.is_empty() {
        return Ok(());
    }
    let mut cmd = redis::cmd(verb);
    for ch in channels {
        cmd.arg(*ch);
    }
    match tokio::time::timeout(timeout, cmd.exec_async(c)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{verb} failed: {e}")),
        Err(_) => Err(format!("{verb} timed out")),
    }
}

pub(super) fn verb(kind: SubKind, add: bool) -> &'static str {
    match (kind, add) {
        (SubKind::Channel, true) => "SUBSCRIBE",
        (SubKind::Channel, false) => "UNSUBSCRIBE",
        (SubKind::Pattern, true) => "PSUBSCRIBE",
        (SubKind::Pattern, false) => "PUNSUBSCRIBE",
        (SubKind::Shard, true) => "SSUBSCRIBE",
        (SubKind::Shard, false) => "SUNSUBSCRIBE",
    }
}

async fn session(
    shared: &Arc<BusState>,
    ctl: &mut mpsc::UnboundedReceiver<SubCtl>,
    desired: &mut Desired,
    pub_tx: &mpsc::Sender<PubCmd>,
    cancel: &CancellationToken,
) -> SessionEnd {
    let cfg_timeout = shared.config.connect_timeout;
    let (sink, mut push_rx, dead) = PushSink::new(RECEIVE_QUEUE, shared.metrics.clone());
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg_timeout))
        .set_response_timeout(Some(cfg_timeout))
        .set_push_sender(sink);
    let connect = shared
        .client
        .get_multiplexed_async_connection_with_config(&cfg);
    let mut c = tokio::select! {
        _ = cancel.cancelled() => return SessionEnd::Cancelled,
        r = tokio::time::timeout(cfg_timeout, connect) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return SessionEnd::Failed { was_up: false, why: e.to_string() },
            Err(_) => return SessionEnd::Failed { was_up: false, why: "connect timed out".into() },
        },
    };
    // Take in every change requested so far, then subscribe everything in one go per kind.
    while let Ok(c) = ctl.try_recv() {
        desired.apply(&c);
    }
    for kind in [SubKind::Channel, SubKind::Pattern] {
        let list: Vec<&str> = desired
            .set
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, c)| c.as_str())
            .collect();
        if let Err(why) = send_sub(&mut c, verb(kind, true), &list, cfg_timeout).await {
            return SessionEnd::Failed { was_up: false, why };
        }
    }
    // One channel per SSUBSCRIBE: a cluster would refuse channels of different slots.
    let shards: Vec<String> = desired
        .set
        .iter()
        .filter(|(k, _)| *k == SubKind::Shard)
        .map(|(_, c)| c.clone())
        .collect();
    let subs = shards.iter().map(|ch| {
        let mut c = c.clone();
        async move { send_sub(&mut c, "SSUBSCRIBE", &[ch.as_str()], cfg_timeout).await }
    });
    for r in futures_util::future::join_all(subs).await {
        if let Err(why) = r {
            return SessionEnd::Failed { was_up: false, why };
        }
    }
    shared.metrics.subscribes.inc();
    shared.set_up(Side::Subscriber, true);

    let mut probe = Probe::new(shared.config.probe_interval);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            _ = dead.notified() => {
                return SessionEnd::Failed { was_up: true, why: "connection closed by Redis".into() };
            }
            push = push_rx.recv() => {
                let Some(push) = push else {
                    return SessionEnd::Failed { was_up: true, why: "connection closed".into() };
                };
                deliver(shared, &push, &mut probe);
            }
            change = ctl.recv() => {
                let Some(change) = change else { return SessionEnd::Cancelled };
                // Take every change waiting (a burst of room joins) and send them all at once:
                // one round trip instead of one per room while messages wait.
                let mut batch = vec![change];
                while batch.len() < 1024 {
                    match ctl.try_recv() {
                        Ok(c) => batch.push(c),
                        Err(_) => break,
                    }
                }
                let sends = batch.iter().filter(|ch| desired.apply(ch)).map(|change| {
                    let (kind, ch, add) = match change {
                        SubCtl::Add(k, ch) => (*k, ch.clone(), true),
                        SubCtl::Remove(k, ch) => (*k, ch.clone(), false),
                    };
                    let mut c = c.clone();
                    async move { send_sub(&mut c, verb(kind, add), &[ch.as_str()], cfg_timeout).await }
                });
                let results = futures_util::future::join_all(sends.collect::<Vec<_>>()).await;
                if let Some(Err(why)) = results.into_iter().find(Result::is_err) {
                    return SessionEnd::Failed { was_up: true, why };
                }
            }
            _ = probe.tick() => {
                if let Err(why) = probe.check_and_send(shared, pub_tx) {
                    return SessionEnd::Failed { was_up: true, why };
                }
            }
        }
    }
}

fn bulk(v: &redis::Value) -> Option<&[u8]> {
    match v {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(super) fn bulk_str(v: &redis::Value) -> Option<&str> {
    bulk(v).and_then(|b| std::str::from_utf8(b).ok())
}

fn two(data: &[redis::Value]) -> Option<(&str, &[u8])> {
    Some((bulk_str(data.first()?)?, bulk(data.get(1)?)?))
}

fn dispatch(shared: &BusState, kind: SubKind, key: &str, channel: &str, payload: &[u8]) {
    shared.metrics.received.inc();
    if let Some(route) = shared.route(kind, key) {
        route.on_message(channel, payload);
    }
}

/// Hands a pushed message to its route (or, for the probe channel, to the probe). Other
/// pushes (subscription confirmations) are ignored.
pub(super) fn deliver(shared: &BusState, push: &redis::PushInfo, probe: &mut Probe) {
    match push.kind {
        PushKind::Message => {
            if let Some((ch, payload)) = two(&push.data) {
                if ch == shared.probe_channel {
                    probe.echoed();
                } else {
                    dispatch(shared, SubKind::Channel, ch, ch, payload);
                }
            }
        }
        PushKind::PMessage => {
            if let (Some(pattern), Some((ch, payload))) = (
                push.data.first().and_then(bulk_str),
                push.data.get(1..).and_then(two),
            ) {
                dispatch(shared, SubKind::Pattern, pattern, ch, payload);
            }
        }
        PushKind::SMessage => {
            if let Some((ch, payload)) = two(&push.data) {
                dispatch(shared, SubKind::Shard, ch, ch, payload);
            }
        }
        _ => {}
    }
}
