//! Redis Cluster mode, subscribing: one subscribed connection per master. Each sharded
//! channel is `SSUBSCRIBE`d on the master owning its slot; plain and pattern subscriptions
//! (classic wire, and the liveness probe) live on the first master, as the cluster relays
//! `PUBLISH` to every node. The placement is redone whenever the topology moves: a master's
//! connection drops (failover), a `sunsubscribe` arrives from the server for a channel still
//! wanted (its slot migrated), a subscription is refused with `MOVED`, or the slot map read
//! every probe interval differs from the one in force.

use super::backoff::backoff;
use super::health::Side;
use super::nodes::Nodes;
use super::probe::Probe;
use super::slots::{Addr, SlotMap};
use super::subscriber::{bulk_str, deliver, send_sub, verb, Desired, RECEIVE_QUEUE};
use super::{BusState, PubCmd, SubCtl, SubKind};
use crate::metrics::RedisMetrics;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushKind};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A master's subscribed connection, numbered so that the disconnection notice of a replaced
/// connection is told apart from the current one's.
struct ShardConn {
    conn: MultiplexedConnection,
    generation: u64,
}

/// Pushes of every master's connection into one queue; disconnections as `(addr, generation)`.
struct ShardSink {
    tx: mpsc::Sender<redis::PushInfo>,
    dead: mpsc::UnboundedSender<(Addr, u64)>,
    addr: Addr,
    generation: u64,
    metrics: Arc<RedisMetrics>,
}

impl redis::aio::AsyncPushSender for ShardSink {
    fn send(&self, info: redis::PushInfo) -> Result<(), redis::aio::SendError> {
        if info.kind == PushKind::Disconnection {
            let _ = self.dead.send((self.addr.clone(), self.generation));
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

/// State of the cluster subscriber task.
struct Placement {
    shared: Arc<BusState>,
    nodes: Nodes,
    /// The slot map the subscriptions are placed by.
    applied: Option<SlotMap>,
    shards: HashMap<Addr, ShardConn>,
    /// Sharded channel → the master it is subscribed on.
    placed: HashMap<String, Addr>,
    /// Where the plain and pattern subscriptions are.
    classic_on: Option<Addr>,
    desired: Desired,
    push_tx: mpsc::Sender<redis::PushInfo>,
    dead_tx: mpsc::UnboundedSender<(Addr, u64)>,
    generation: u64,
}

impl Placement {
    async fn shard(&mut self, addr: &str) -> Result<MultiplexedConnection, String> {
        if let Some(s) = self.shards.get(addr) {
            return Ok(s.conn.clone());
        }
        self.generation += 1;
        let timeout = self.shared.config.connect_timeout;
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_push_sender(ShardSink {
                tx: self.push_tx.clone(),
                dead: self.dead_tx.clone(),
                addr: addr.to_owned(),
                generation: self.generation,
                metrics: self.shared.metrics.clone(),
            });
        let conn = Nodes::open(&self.shared, addr, &cfg).await?;
        // A new connection holds no subscription yet.
        self.placed.retain(|_, a| a != addr);
        if self.classic_on.as_deref() == Some(addr) {
            self.classic_on = None;
        }
        self.shards.insert(
            addr.to_owned(),
            ShardConn {
                conn: conn.clone(),
                generation: self.generation,
            },
        );
        Ok(conn)
    }

    fn drop_shard(&mut self, addr: &str) {
        self.shards.remove(addr);
        self.placed.retain(|_, a| a != addr);
        if self.classic_on.as_deref() == Some(addr) {
            self.classic_on = None;
        }
    }

    /// Reads the slot map and (re)places every wanted subscription on its owner.
    async fn rebuild(&mut self) -> Result<(), String> {
        self.nodes.refresh_and_connect().await?;
        let Some(map) = self.nodes.map.clone() else {
            return Err("no slot map".into());
        };
        let masters = map.masters();
        let gone: Vec<Addr> = self
            .shards
            .keys()
            .filter(|a| !masters.contains(a))
            .cloned()
            .collect();
        for addr in gone {
            self.drop_shard(&addr);
        }
        for addr in &masters {
            self.shard(addr).await?;
        }
        let first = masters.first().ok_or("the cluster has no master")?;
        self.place_classic(first).await?;
        self.place_shards(&map).await?;
        self.applied = Some(map);
        Ok(())
    }

    /// Moves the plain and pattern subscriptions to `first` unless they are there.
    async fn place_classic(&mut self, first: &str) -> Result<(), String> {
        if self.classic_on.as_deref() == Some(first) {
            return Ok(());
        }
        let timeout = self.shared.config.connect_timeout;
        let lists: Vec<(SubKind, Vec<String>)> = [SubKind::Channel, SubKind::Pattern]
            .into_iter()
            .map(|kind| {
                let list = self
                    .desired
                    .set
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, c)| c.clone())
                    .collect();
                (kind, list)
            })
            .collect();
        if let Some(old) = self.classic_on.take() {
            if let Some(s) = self.shards.get(&old) {
                let mut c = s.conn.clone();
                for (kind, list) in &lists {
                    let list: Vec<&str> = list.iter().map(String::as_str).collect();
                    let _ = send_sub(&mut c, verb(*kind, false), &list, timeout).await;
                }
            }
        }
        let mut c = self.shard(first).await?;
        for (kind, list) in &lists {
            let list: Vec<&str> = list.iter().map(String::as_str).collect();
            send_sub(&mut c, verb(*kind, true), &list, timeout).await?;
        }
        self.classic_on = Some(first.to_owned());
        Ok(())
    }

    /// Subscribes each wanted sharded channel on its slot's owner, where it is not yet.
    async fn place_shards(&mut self, map: &SlotMap) -> Result<(), String> {
        let timeout = self.shared.config.connect_timeout;
        let mut moves = Vec::new();
        for (kind, ch) in &self.desired.set {
            if *kind != SubKind::Shard {
                continue;
            }
            let owner = map.owner_of(ch).ok_or("a slot has no owner")?;
            if self.placed.get(ch).map(String::as_str) != Some(owner) {
                moves.push((ch.clone(), owner.to_owned()));
            }
        }
        let mut sends = Vec::with_capacity(moves.len());
        for (ch, owner) in &moves {
            let mut c = self.shard(owner).await?;
            sends
                .push(async move { send_sub(&mut c, "SSUBSCRIBE", &[ch.as_str()], timeout).await });
        }
        let results = futures_util::future::join_all(sends).await;
        let mut first_error = None;
        for ((ch, owner), r) in moves.into_iter().zip(results) {
            match r {
                Ok(()) => {
                    self.placed.insert(ch, owner);
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Delivers a pushed message; a `sunsubscribe` from the server for a channel still
    /// wanted means its slot moved: returns why the placement must be redone.
    fn on_push(&mut self, push: &redis::PushInfo, probe: &mut Probe) -> Option<String> {
        if push.kind != PushKind::SUnsubscribe {
            deliver(&self.shared, push, probe);
            return None;
        }
        let ch = push.data.first().and_then(bulk_str)?;
        let wanted = self.desired.set.contains(&(SubKind::Shard, ch.to_owned()));
        (wanted && self.placed.remove(ch).is_some()).then(|| format!("the slot of {ch} moved"))
    }

    /// Applies a batch of subscription changes on the connections in place; false when one
    /// could not be (the placement must be redone, and will cover it).
    async fn apply(&mut self, batch: Vec<SubCtl>) -> bool {
        let timeout = self.shared.config.connect_timeout;
        let mut ok = true;
        let mut jobs = Vec::new();
        for change in &batch {
            if !self.desired.apply(change) {
                continue;
            }
            let (kind, ch, add) = match change {
                SubCtl::Add(k, ch) => (*k, ch.clone(), true),
                SubCtl::Remove(k, ch) => (*k, ch.clone(), false),
            };
            let target = match kind {
                SubKind::Shard if add => self
                    .applied
                    .as_ref()
                    .and_then(|m| m.owner_of(&ch))
                    .map(str::to_owned),
                SubKind::Shard => self.placed.remove(&ch),
                _ => self.classic_on.clone(),
            };
            match target.and_then(|a| Some((self.shards.get(&a)?.conn.clone(), a))) {
                Some((conn, addr)) => jobs.push((kind, ch, add, conn, addr)),
                // Nowhere to subscribe: the next placement will. Nothing to unsubscribe from.
                None => ok &= !add,
            }
        }
        let sends = jobs.iter().map(|(kind, ch, add, conn, _)| {
            let mut c = conn.clone();
            async move { send_sub(&mut c, verb(*kind, *add), &[ch.as_str()], timeout).await }
        });
        let results = futures_util::future::join_all(sends.collect::<Vec<_>>()).await;
        for ((kind, ch, add, _, addr), r) in jobs.into_iter().zip(results) {
            match r {
                Ok(()) if kind == SubKind::Shard && add => {
                    self.placed.insert(ch, addr);
                }
                Ok(()) => {}
                Err(_) => ok = false,
            }
        }
        ok
    }
}

/// When the placement must be redone, and how often it failed in a row.
struct Retry {
    /// Why it must be redone; `None` while it holds.
    stale: Option<String>,
    /// While stale, when to try again.
    at: tokio::time::Instant,
    attempt: u32,
}

impl Retry {
    fn due(&self) -> bool {
        self.stale.is_some() && tokio::time::Instant::now() >= self.at
    }

    fn mark(&mut self, why: impl Into<String>) {
        self.stale = Some(why.into());
    }
}

impl Placement {
    /// Tries the placement again; on failure schedules the next try with backoff. Messages of
    /// the masters that still answer keep being delivered between tries.
    async fn retry(&mut self, retry: &mut Retry, probe: &mut Probe) {
        let why = retry.stale.take().unwrap_or_default();
        let shared = self.shared.clone();
        shared.set_up(Side::Subscriber, false);
        match self.rebuild().await {
            Ok(()) => {
                if retry.attempt > 0 || why != "starting" {
                    tracing::info!(reason = %why, masters = self.shards.len(), "Redis Cluster subscriptions placed on the current masters");
                }
                retry.attempt = 0;
                shared.metrics.subscribes.inc();
                shared.set_up(Side::Subscriber, true);
                *probe = Probe::new(shared.config.probe_interval);
            }
            Err(e) => {
                if retry.attempt.is_multiple_of(10) {
                    tracing::warn!(reason = %why, error = %e, attempt = retry.attempt, "cannot subscribe on every master of the Redis Cluster; retrying (a failover may be under way; sharded pub/sub needs Redis >= 7)");
                }
                retry.stale = Some(why);
                retry.at =
                    tokio::time::Instant::now() + backoff(retry.attempt, shared.config.max_backoff);
                retry.attempt = retry.attempt.saturating_add(1);
            }
        }
    }

    /// A master's connection dropped (unless it is a replaced one's notice).
    fn on_dead(&mut self, addr: &str, generation: u64) -> Option<String> {
        if self
            .shards
            .get(addr)
            .is_none_or(|s| s.generation != generation)
        {
            return None;
        }
        tracing::warn!(master = %addr, "connection to a Redis Cluster master lost; reading the slot map again");
        self.drop_shard(addr);
        Some(format!("connection to {addr} lost"))
    }

    /// Reads the slot map; a map unlike the one in force calls for a new placement.
    async fn check_topology(&mut self) -> Option<String> {
        match self.nodes.refresh().await {
            Ok(map) if self.applied.as_ref() == Some(map) => None,
            Ok(_) => Some("the slot map changed".into()),
            Err(e) => Some(e),
        }
    }
}

pub(super) async fn subscriber(
    shared: Arc<BusState>,
    mut ctl: mpsc::UnboundedReceiver<SubCtl>,
    pub_tx: mpsc::Sender<PubCmd>,
    cancel: CancellationToken,
) {
    let (push_tx, mut push_rx) = mpsc::channel(RECEIVE_QUEUE);
    let (dead_tx, mut dead_rx) = mpsc::unbounded_channel();
    let mut desired = Desired {
        set: BTreeSet::new(),
    };
    desired
        .set
        .insert((SubKind::Channel, shared.probe_channel.clone()));
    let mut p = Placement {
        nodes: Nodes::new(shared.clone()),
        shared: shared.clone(),
        applied: None,
        shards: HashMap::new(),
        placed: HashMap::new(),
        classic_on: None,
        desired,
        push_tx,
        dead_tx,
        generation: 0,
    };
    let mut retry = Retry {
        stale: Some("starting".to_owned()),
        at: tokio::time::Instant::now(),
        attempt: 0,
    };
    let mut probe = Probe::new(shared.config.probe_interval);
    let mut topology = tokio::time::interval(shared.config.probe_interval);
    topology.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if retry.due() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = p.retry(&mut retry, &mut probe) => {}
            }
        }
        let why = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(retry.at), if retry.stale.is_some() => None,
            dead = dead_rx.recv() => {
                let Some((addr, generation)) = dead else { return };
                p.on_dead(&addr, generation)
            }
            push = push_rx.recv() => {
                let Some(push) = push else { return };
                p.on_push(&push, &mut probe)
            }
            change = ctl.recv() => {
                let Some(change) = change else { return };
                let mut batch = vec![change];
                while batch.len() < 1024 {
                    match ctl.try_recv() {
                        Ok(c) => batch.push(c),
                        Err(_) => break,
                    }
                }
                (!p.apply(batch).await).then(|| "a subscription was refused".to_owned())
            }
            _ = topology.tick() => p.check_topology().await,
            _ = probe.tick() => probe.check_and_send(&shared, &pub_tx).err().inspect(|_| {
                if let Some(addr) = p.classic_on.clone() {
                    p.drop_shard(&addr);
                }
            }),
        };
        if let Some(why) = why {
            retry.mark(why);
        }
    }
}
