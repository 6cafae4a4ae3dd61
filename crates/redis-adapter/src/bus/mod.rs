//! The node's two Redis connections, shared by every namespace: one publishing (pipelined,
//! behind a bounded queue) and one subscribed (RESP3, so plain, pattern and sharded
//! subscriptions share it). Both reconnect with backoff by themselves; the subscription is
//! restored in full after a reconnect, and a liveness probe (a message this node publishes to
//! itself) catches a subscription that is connected but no longer delivers.
//!
//! In Redis Cluster mode the same handle drives `cluster_publisher.rs` and
//! `cluster_subscriber.rs` instead, which place each channel on the master owning its slot
//! (`slots.rs`), with one connection per master (`nodes.rs`).
//!
//! Layout: this file holds the handle ([`Bus`]) and the state its tasks share;
//! `publisher.rs` and `subscriber.rs` are the two connection tasks, `probe.rs` the liveness
//! probe, `health.rs` readiness and outage accounting, `push.rs` the sink of server pushes,
//! `seen.rs` the nodes heard from, `client.rs` the URL and TLS settings, `backoff.rs` the waits between reconnection attempts.

mod backoff;
mod client;
mod cluster_publisher;
mod cluster_subscriber;
mod health;
mod nodes;
mod probe;
mod publisher;
mod push;
mod seen;
mod slots;
mod subscriber;

use crate::metrics::{LossReason, RedisMetrics};
use crate::RedisAdapterConfig;
use seen::SeenNodes;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock, Weak};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

/// How a channel is subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SubKind {
    /// `SUBSCRIBE`.
    Channel,
    /// `PSUBSCRIBE`.
    Pattern,
    /// `SSUBSCRIBE` (Redis ≥ 7).
    Shard,
}

/// Receives the messages of the subscriptions it registered.
pub(crate) trait Route: Send + Sync + 'static {
    /// One message, `channel` being the channel it was published on.
    fn on_message(&self, channel: &str, payload: &[u8]);
}

/// A request to the publisher task.
enum PubCmd {
    Publish {
        channel: String,
        payload: Vec<u8>,
        shard: bool,
        /// False for the liveness probe, which is not cluster traffic.
        counted: bool,
    },
    Query {
        cmd: redis::Cmd,
        reply: oneshot::Sender<Result<redis::Value, String>>,
    },
    /// A keyed write whose answer nobody waits for (connection state recovery), pipelined
    /// with the publishes in queue order.
    Write { cmd: redis::Cmd },
}

/// A change of the wanted subscriptions.
enum SubCtl {
    Add(SubKind, String),
    Remove(SubKind, String),
}

/// Channel (or pattern) → its receiver, one map per kind so that a lookup borrows the channel
/// name from the message instead of allocating a key.
type RouteMap = [HashMap<String, Weak<dyn Route>>; 3];

/// What the bus's handle and its connection tasks share.
pub(crate) struct BusState {
    pub(crate) config: RedisAdapterConfig,
    pub(crate) uid: String,
    pub(crate) metrics: Arc<RedisMetrics>,
    /// RESP3 (Redis ≥ 6) for both connections: it carries subscriptions and the
    /// disconnection notice on the same multiplexed connection type. TLS for `rediss://`.
    client: redis::Client,
    routes: RwLock<RouteMap>,
    sub_up: AtomicBool,
    pub_up: AtomicBool,
    health: Mutex<health::Health>,
    seen: SeenNodes,
    probe_channel: String,
    /// The URL without its password, for logs.
    safe_url: String,
}

/// Handle on the node's Redis connections; the tasks stop when the last handle is dropped.
pub(crate) struct Bus {
    pub(crate) shared: Arc<BusState>,
    pub_tx: mpsc::Sender<PubCmd>,
    sub_tx: mpsc::UnboundedSender<SubCtl>,
    _stop: DropGuard,
}

impl Bus {
    /// Opens the connections in the background (the node is not ready until they are up).
    /// Must be called inside a tokio runtime.
    pub(crate) fn start(config: RedisAdapterConfig, uid: String) -> Result<Arc<Bus>, String> {
        let client = client::client(&config)?;
        let probe_channel = format!("{}-probe#{}#", config.key, uid);
        let safe_url = crate::redact_url(&config.url);
        let shared = Arc::new(BusState {
            config,
            uid,
            metrics: Arc::new(RedisMetrics::default()),
            client,
            routes: RwLock::new(Default::default()),
            sub_up: AtomicBool::new(false),
            pub_up: AtomicBool::new(false),
            health: Mutex::new(health::Health::default()),
            seen: SeenNodes::default(),
            probe_channel,
            safe_url,
        });
        let cancel = CancellationToken::new();
        let (pub_tx, pub_rx) = mpsc::channel(shared.config.publish_queue.max(1));
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        if shared.config.cluster {
            tokio::spawn(cluster_publisher::publisher(
                shared.clone(),
                pub_rx,
                cancel.clone(),
            ));
            tokio::spawn(cluster_subscriber::subscriber(
                shared.clone(),
                sub_rx,
                pub_tx.clone(),
                cancel.clone(),
            ));
        } else {
            tokio::spawn(publisher::publisher(shared.clone(), pub_rx, cancel.clone()));
            tokio::spawn(subscriber::subscriber(
                shared.clone(),
                sub_rx,
                pub_tx.clone(),
                cancel.clone(),
            ));
        }
        Ok(Arc::new(Bus {
            shared,
            pub_tx,
            sub_tx,
            _stop: cancel.drop_guard(),
        }))
    }

    /// Queues a publish; never waits. A full queue or a closed bus counts the message lost.
    pub(crate) fn publish(&self, channel: String, payload: Vec<u8>, shard: bool) {
        match self.pub_tx.try_send(PubCmd::Publish {
            channel,
            payload,
            shard,
            counted: true,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.metrics.lost(LossReason::QueueFull, 1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.metrics.lost(LossReason::Disconnected, 1);
            }
        }
    }

    /// Queues a write (connection state recovery) behind the publishes queued before it;
    /// never waits. A full queue or a closed bus counts it lost.
    pub(crate) fn write(&self, cmd: redis::Cmd) {
        match self.pub_tx.try_send(PubCmd::Write { cmd }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.metrics.lost(LossReason::QueueFull, 1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.metrics.lost(LossReason::Disconnected, 1);
            }
        }
    }

    /// Runs one command on the publishing connection, after the publishes queued before it.
    pub(crate) async fn query(&self, cmd: redis::Cmd) -> Result<redis::Value, String> {
        let (reply, rx) = oneshot::channel();
        self.pub_tx
            .send(PubCmd::Query { cmd, reply })
            .await
            .map_err(|_| "the Redis adapter is shut down".to_owned())?;
        rx.await
            .map_err(|_| "the Redis adapter is shut down".to_owned())?
    }

    /// Subscribes `channel` and sends its messages to `route`.
    pub(crate) fn subscribe(&self, kind: SubKind, channel: String, route: Weak<dyn Route>) {
        if let Ok(mut routes) = self.shared.routes.write() {
            routes[kind as usize].insert(channel.clone(), route);
        }
        let _ = self.sub_tx.send(SubCtl::Add(kind, channel));
    }

    /// Drops the subscription of `channel`.
    pub(crate) fn unsubscribe(&self, kind: SubKind, channel: String) {
        if let Ok(mut routes) = self.shared.routes.write() {
            routes[kind as usize].remove(&channel);
        }
        let _ = self.sub_tx.send(SubCtl::Remove(kind, channel));
    }

    /// True while both connections are up and subscribed.
    pub(crate) fn is_ready(&self) -> bool {
        self.shared.ready()
    }
}

impl BusState {
    /// Notes that node `uid` is alive (it sent us something).
    pub(crate) fn seen(&self, uid: &str) {
        if uid == self.uid || uid == "emitter" || uid.is_empty() {
            return;
        }
        self.seen.note(uid);
    }

    /// Redis Cluster mode: the `host:port` of every seed node, `url` first.
    fn seeds(&self) -> Vec<String> {
        std::iter::once(&self.config.url)
            .chain(&self.config.cluster_seeds)
            .map(|u| slots::addr_of(u))
            .collect()
    }

    /// Nodes heard from recently, this one excluded.
    pub(crate) fn known_nodes(&self) -> Vec<String> {
        self.seen.recent()
    }

    fn route(&self, kind: SubKind, key: &str) -> Option<Arc<dyn Route>> {
        let routes = self.routes.read().ok()?;
        routes[kind as usize].get(key)?.upgrade()
    }
}
