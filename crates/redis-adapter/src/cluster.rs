//! What both wire formats share: the operations a node sends to the others, the replies it
//! collects, and how it answers theirs. A [`Wire`] turns these into Redis channels and bytes
//! (classic `@socket.io/redis-adapter` or the sharded `ClusterAdapter` envelope).

use crate::bus::{Bus, Route, SubKind};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use switchboard::{
    AckResponses, Adapter, AdapterError, BroadcastOptions, EventPacket, LocalNamespace, Partial,
    Payload, Room, SocketInfo,
};
use tokio::sync::mpsc;

/// An operation sent to the other nodes.
#[derive(Debug)]
pub(crate) enum Request {
    Broadcast {
        packet: EventPacket,
        opts: BroadcastOptions,
    },
    BroadcastAck {
        id: String,
        packet: EventPacket,
        opts: BroadcastOptions,
    },
    Join {
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    },
    Leave {
        opts: BroadcastOptions,
        rooms: Vec<Room>,
    },
    Disconnect {
        opts: BroadcastOptions,
        close: bool,
    },
    Fetch {
        id: String,
        opts: BroadcastOptions,
    },
    AllRooms {
        id: String,
    },
    ServerSide {
        id: Option<String>,
        data: Vec<Value>,
    },
}

/// A node's answer to a request.
#[derive(Debug)]
pub(crate) enum Reply {
    Sockets {
        id: String,
        sockets: Vec<SocketInfo>,
    },
    Rooms {
        id: String,
        rooms: Vec<Room>,
    },
    ServerSide {
        id: String,
        value: Payload,
    },
    Count {
        id: String,
        count: usize,
    },
    Ack {
        id: String,
        value: Payload,
    },
}

impl Reply {
    fn id(&self) -> &str {
        match self {
            Self::Sockets { id, .. }
            | Self::Rooms { id, .. }
            | Self::ServerSide { id, .. }
            | Self::Count { id, .. }
            | Self::Ack { id, .. } => id,
        }
    }
}

/// A decoded cluster message: a request from a node, or a reply to one.
#[derive(Debug)]
pub(crate) enum ClusterMessage {
    Request(Request),
    Reply(Reply),
}

/// A decoded message and its sender (absent for emitters and Node's replies).
#[derive(Debug)]
pub(crate) struct Inbound {
    pub uid: Option<String>,
    pub body: ClusterMessage,
}

/// A message ready for Redis.
pub(crate) struct Outbound {
    pub channel: String,
    pub payload: Vec<u8>,
    pub shard: bool,
}

/// One wire format.
pub(crate) trait Wire: Send + Sync + 'static {
    /// Channels to subscribe when the namespace starts.
    fn subscriptions(&self) -> Vec<(SubKind, String)>;
    /// Encodes a request from this node.
    fn request(&self, req: &Request) -> Result<Outbound, String>;
    /// Encodes a reply to the node `to`.
    fn reply(&self, to: Option<&str>, reply: &Reply) -> Result<Outbound, String>;
    /// Decodes a message; `Ok(None)` for messages that are not for this node.
    fn decode(
        &self,
        local: &LocalNamespace,
        channel: &str,
        payload: &[u8],
    ) -> Result<Option<Inbound>, String>;
    /// The command that counts the nodes serving this namespace.
    fn server_count(&self) -> redis::Cmd;
    /// The channel to subscribe while `room` has local members, if any.
    fn room_channel(&self, _room: &Room) -> Option<(SubKind, String)> {
        None
    }
    /// Whether the wire has an all-rooms request (else rooms are gathered by fetching sockets).
    fn has_all_rooms(&self) -> bool;
}

/// Random ids: `len` characters of the URL-safe base64 alphabet, as Node's `uid2`.
pub(crate) fn uid2(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..len)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

/// Random ids of `bytes` random bytes in hex, as the sharded adapter's `randomId`.
pub(crate) fn hex_id(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A reply to one of this node's pending requests, with the uid of the node that sent it.
struct NodeReply {
    uid: Option<String>,
    reply: Reply,
}

type Pending = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<NodeReply>>>>;

/// Removes a pending request when its waiter finishes or is dropped.
struct PendingGuard {
    map: Pending,
    id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&self.id);
        }
    }
}

/// The cluster side of one namespace.
pub(crate) struct Node<W: Wire> {
    pub(crate) wire: W,
    pub(crate) local: LocalNamespace,
    pub(crate) bus: Arc<Bus>,
    pending: Pending,
    new_id: fn() -> String,
    me: Weak<Node<W>>,
    closed: std::sync::atomic::AtomicBool,
}

/// The [`Adapter`] of a namespace on the Redis bus.
pub(crate) struct RedisAdapter<W: Wire>(Arc<Node<W>>, Option<Arc<crate::recovery::Recovery>>);

impl<W: Wire> std::fmt::Debug for RedisAdapter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("nsp", &self.0.local.namespace())
            .field("uid", &self.0.bus.shared.uid)
            .finish()
    }
}

impl<W: Wire> RedisAdapter<W> {
    pub(crate) fn start(
        wire: W,
        local: LocalNamespace,
        bus: Arc<Bus>,
        new_id: fn() -> String,
    ) -> Self {
        let node = Arc::new_cyclic(|me| Node {
            wire,
            local,
            bus,
            pending: Arc::new(Mutex::new(HashMap::new())),
            new_id,
            me: me.clone(),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let route: Weak<dyn Route> = Arc::downgrade(&node) as Weak<dyn Route>;
        for (kind, channel) in node.wire.subscriptions() {
            node.bus.subscribe(kind, channel, route.clone());
        }
        let recovery = match node.local.recovery() {
            Some(_) if node.bus.shared.config.cluster => {
                tracing::warn!(nsp = node.local.namespace(), "connection state recovery is not available with a Redis Cluster: clients reconnect with fresh sessions (use a single Redis server to recover across nodes)");
                None
            }
            Some(config) => Some(crate::recovery::Recovery::start(
                config,
                node.bus.clone(),
                node.local.namespace(),
            )),
            None => None,
        };
        Self(node, recovery)
    }
}

impl<W: Wire> Node<W> {
    fn send(&self, out: Result<Outbound, String>) {
        match out {
            Ok(o) => self.bus.publish(o.channel, o.payload, o.shard),
            Err(e) => {
                tracing::warn!(error = %e, nsp = self.local.namespace(), "could not encode a cluster message; dropped");
                self.bus.shared.metrics.decode_errors.inc();
            }
        }
    }

    fn register(&self, id: &str) -> (PendingGuard, mpsc::UnboundedReceiver<NodeReply>) {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut m) = self.pending.lock() {
            m.insert(id.to_owned(), tx);
        }
        (
            PendingGuard {
                map: self.pending.clone(),
                id: id.to_owned(),
            },
            rx,
        )
    }

    fn is_pending(&self, id: &str) -> bool {
        self.pending
            .lock()
            .map(|m| m.contains_key(id))
            .unwrap_or(false)
    }

    /// How many nodes serve the namespace, this one included.
    async fn count(&self) -> Result<usize, AdapterError> {
        if !self.bus.is_ready() {
            return Err(AdapterError::Unavailable(
                "not connected to Redis, so the other nodes cannot be reached".into(),
            ));
        }
        let v = self
            .bus
            .query(self.wire.server_count())
            .await
            .map_err(|e| AdapterError::Unavailable(format!("Redis: {e}")))?;
        Ok(numsub(&v).max(1))
    }

    /// Names the nodes that did not answer: nodes heard from recently that are not among
    /// `answered`. When some replies carried no node id (Node.js servers on the classic wire),
    /// the silent ones are only known to be among those candidates.
    fn missing(&self, answered: &HashSet<String>, missing: usize, unsigned: usize) -> String {
        let candidates: Vec<String> = self
            .bus
            .shared
            .known_nodes()
            .into_iter()
            .filter(|n| !answered.contains(n))
            .collect();
        const UNKNOWN: &str = "nodes that never sent a message with their id";
        if unsigned > 0 {
            return if candidates.is_empty() {
                format!("{missing} of the {UNKNOWN}")
            } else {
                format!("{missing} among {}, or {UNKNOWN}", candidates.join(", "))
            };
        }
        let mut parts: Vec<String> = candidates.into_iter().take(missing).collect();
        let unnamed = missing.saturating_sub(parts.len());
        if unnamed > 0 {
            parts.push(format!("{unnamed} of the {UNKNOWN}"));
        }
        parts.join(", ")
    }

    /// Sends `req` and waits for `expected` replies or the deadline.
    async fn gather(
        &self,
        id: &str,
        req: Request,
        timeout: Duration,
        expected: usize,
        op: &'static str,
    ) -> (Vec<Reply>, Option<(usize, String)>) {
        let (_guard, mut rx) = self.register(id);
        self.send(self.wire.request(&req));
        let mut got = Vec::with_capacity(expected);
        let mut answered = HashSet::new();
        let mut unsigned = 0;
        let deadline = tokio::time::Instant::now() + timeout;
        while got.len() < expected {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(inc)) => {
                    match inc.uid {
                        Some(uid) => {
                            answered.insert(uid);
                        }
                        None => unsigned += 1,
                    }
                    got.push(inc.reply);
                }
                Ok(None) | Err(_) => break,
            }
        }
        if got.len() < expected {
            self.bus.shared.metrics.request_timeout(op);
            let missing = expected - got.len();
            let names = self.missing(&answered, missing, unsigned);
            return (got, Some((missing, names)));
        }
        (got, None)
    }

    async fn fetch(
        self: Arc<Self>,
        opts: BroadcastOptions,
    ) -> Result<Vec<SocketInfo>, AdapterError> {
        let servers = self.count().await?;
        let mut sockets = self.local.fetch_sockets(&opts);
        if servers <= 1 {
            return Ok(sockets);
        }
        let id = (self.new_id)();
        let timeout = opts
            .flags
            .timeout
            .unwrap_or(self.bus.shared.config.requests_timeout);
        let mut req_opts = opts.clone();
        req_opts.flags = Default::default();
        let (replies, missing) = self
            .gather(
                &id,
                Request::Fetch {
                    id: id.clone(),
                    opts: req_opts,
                },
                timeout,
                servers - 1,
                "fetch_sockets",
            )
            .await;
        for r in replies {
            if let Reply::Sockets { sockets: s, .. } = r {
                sockets.extend(s);
            }
        }
        match missing {
            None => Ok(sockets),
            Some((missing, nodes)) => Err(AdapterError::Timeout {
                missing,
                nodes,
                partial: Box::new(Partial::Sockets(sockets)),
            }),
        }
    }

    async fn rooms(self: Arc<Self>) -> Result<Vec<Room>, AdapterError> {
        if !self.wire.has_all_rooms() {
            let merge = |sockets: Vec<SocketInfo>| -> Vec<Room> {
                let mut set: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
                for s in sockets {
                    set.extend(s.rooms);
                }
                set.into_iter().map(Room::from).collect()
            };
            return match self.fetch(BroadcastOptions::default()).await {
                Ok(s) => Ok(merge(s)),
                Err(AdapterError::Timeout {
                    missing,
                    nodes,
                    partial,
                }) => {
                    let rooms = match *partial {
                        Partial::Sockets(s) => merge(s),
                        _ => Vec::new(),
                    };
                    Err(AdapterError::Timeout {
                        missing,
                        nodes,
                        partial: Box::new(Partial::Rooms(rooms)),
                    })
                }
                Err(e) => Err(e),
            };
        }
        let servers = self.count().await?;
        let mut rooms: HashSet<Room> = self.local.rooms().into_iter().collect();
        if servers > 1 {
            let id = (self.new_id)();
            let timeout = self.bus.shared.config.requests_timeout;
            let (replies, missing) = self
                .gather(
                    &id,
                    Request::AllRooms { id: id.clone() },
                    timeout,
                    servers - 1,
                    "all_rooms",
                )
                .await;
            for r in replies {
                if let Reply::Rooms { rooms: rs, .. } = r {
                    rooms.extend(rs);
                }
            }
            if let Some((missing, nodes)) = missing {
                return Err(AdapterError::Timeout {
                    missing,
                    nodes,
                    partial: Box::new(Partial::Rooms(rooms.into_iter().collect())),
                });
            }
        }
        Ok(rooms.into_iter().collect())
    }

    async fn server_side_with_ack(
        self: Arc<Self>,
        data: Vec<Value>,
        timeout: Duration,
    ) -> Result<AckResponses, AdapterError> {
        let servers = self.count().await?;
        let expected = servers - 1;
        let mut out = AckResponses {
            expected,
            ..Default::default()
        };
        if expected == 0 {
            return Ok(out);
        }
        let id = (self.new_id)();
        let (replies, missing) = self
            .gather(
                &id,
                Request::ServerSide {
                    id: Some(id.clone()),
                    data,
                },
                timeout,
                expected,
                "server_side_emit",
            )
            .await;
        out.responses = replies
            .into_iter()
            .filter_map(|r| match r {
                Reply::ServerSide { value, .. } => Some(value),
                _ => None,
            })
            .collect();
        match missing {
            None => Ok(out),
            Some((missing, nodes)) => {
                out.timed_out = true;
                out.missing_nodes = Some(nodes.clone());
                Err(AdapterError::Timeout {
                    missing,
                    nodes,
                    partial: Box::new(Partial::Acks(out)),
                })
            }
        }
    }

    async fn broadcast_ack(
        self: Arc<Self>,
        packet: EventPacket,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> AckResponses {
        let id = (self.new_id)();
        let (_guard, mut rx) = self.register(&id);
        let (servers, unavailable) = match self.count().await {
            Ok(n) => (n, None),
            Err(e) => (1, Some(e.to_string())),
        };
        let (local_count, mut local_rx) = self.local.broadcast_with_ack(&packet, &opts);
        if unavailable.is_none() {
            self.send(self.wire.request(&Request::BroadcastAck {
                id: id.clone(),
                packet,
                opts,
            }));
        }
        let mut out = AckResponses {
            expected: local_count,
            ..Default::default()
        };
        let want_servers = servers - 1;
        let mut reported = 0usize;
        let mut answered = HashSet::new();
        let mut unsigned = 0;
        let mut local_open = local_count > 0;
        let deadline = tokio::time::Instant::now() + timeout;
        while reported < want_servers || out.responses.len() < out.expected {
            tokio::select! {
                v = local_rx.recv(), if local_open => match v {
                    Some(v) => out.responses.push(v),
                    None => local_open = false,
                },
                inc = rx.recv() => match inc {
                    Some(NodeReply { uid, reply: Reply::Count { count, .. } }) => {
                        reported += 1;
                        out.expected += count;
                        match uid {
                            Some(uid) => {
                                answered.insert(uid);
                            }
                            None => unsigned += 1,
                        }
                    }
                    Some(NodeReply { reply: Reply::Ack { value, .. }, .. }) => out.responses.push(value),
                    Some(_) => {}
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if reported < want_servers || out.responses.len() < out.expected {
            out.timed_out = true;
            if reported < want_servers {
                self.bus
                    .shared
                    .metrics
                    .request_timeout("broadcast_with_ack");
                out.missing_nodes =
                    Some(self.missing(&answered, want_servers - reported, unsigned));
            }
        }
        if let Some(why) = unavailable {
            // Whatever other nodes would have answered is unknown: the result is incomplete.
            out.timed_out = true;
            out.missing_nodes = Some(why);
        }
        out
    }

    /// Answers a broadcast with acknowledgement from node `from`.
    fn answer_broadcast_ack(
        &self,
        from: Option<String>,
        id: String,
        packet: EventPacket,
        opts: BroadcastOptions,
    ) {
        let (count, mut rx) = self.local.broadcast_with_ack(&packet, &opts);
        self.send(self.wire.reply(
            from.as_deref(),
            &Reply::Count {
                id: id.clone(),
                count,
            },
        ));
        if count == 0 {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let timeout = opts
            .flags
            .timeout
            .unwrap_or(me.bus.shared.config.requests_timeout);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout + Duration::from_millis(100);
            let mut sent = 0;
            while sent < count {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(value)) => {
                        sent += 1;
                        me.send(me.wire.reply(
                            from.as_deref(),
                            &Reply::Ack {
                                id: id.clone(),
                                value,
                            },
                        ));
                    }
                    _ => break,
                }
            }
        });
    }

    fn answer_server_side(&self, from: Option<String>, id: Option<String>, data: Vec<Value>) {
        let Some(id) = id else {
            self.local.server_side_event(data, None);
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.local.server_side_event(data, Some(tx));
        let Some(me) = self.me.upgrade() else { return };
        let timeout = me.bus.shared.config.requests_timeout;
        tokio::spawn(async move {
            if let Ok(Ok(v)) = tokio::time::timeout(timeout, rx).await {
                let value = Payload {
                    args: vec![v],
                    attachments: Vec::new(),
                };
                me.send(
                    me.wire
                        .reply(from.as_deref(), &Reply::ServerSide { id, value }),
                );
            }
        });
    }

    fn handle(&self, inbound: Inbound) {
        let Inbound { uid, body } = inbound;
        if let Some(u) = uid.as_deref() {
            if u == self.bus.shared.uid {
                return;
            }
            self.bus.shared.seen(u);
        }
        match body {
            ClusterMessage::Reply(reply) => {
                let tx = self
                    .pending
                    .lock()
                    .ok()
                    .and_then(|m| m.get(reply.id()).cloned());
                if let Some(tx) = tx {
                    let _ = tx.send(NodeReply { uid, reply });
                }
            }
            ClusterMessage::Request(req) => match req {
                Request::Broadcast { packet, opts } => {
                    self.local.broadcast_owned(packet, &opts);
                }
                Request::BroadcastAck { id, packet, opts } => {
                    if !self.is_pending(&id) {
                        self.answer_broadcast_ack(uid, id, packet, opts);
                    }
                }
                Request::Join { opts, rooms } => self.local.add_sockets(&opts, &rooms),
                Request::Leave { opts, rooms } => self.local.del_sockets(&opts, &rooms),
                Request::Disconnect { opts, close } => self.local.disconnect_sockets(&opts, close),
                Request::Fetch { id, opts } => {
                    if !self.is_pending(&id) {
                        let sockets = self.local.fetch_sockets(&opts);
                        self.send(
                            self.wire
                                .reply(uid.as_deref(), &Reply::Sockets { id, sockets }),
                        );
                    }
                }
                Request::AllRooms { id } => {
                    if !self.is_pending(&id) {
                        let rooms = self.local.rooms();
                        self.send(self.wire.reply(uid.as_deref(), &Reply::Rooms { id, rooms }));
                    }
                }
                Request::ServerSide { id, data } => self.answer_server_side(uid, id, data),
            },
        }
    }
}

impl<W: Wire> Route for Node<W> {
    fn on_message(&self, channel: &str, payload: &[u8]) {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        match self.wire.decode(&self.local, channel, payload) {
            Ok(Some(inbound)) => self.handle(inbound),
            Ok(None) => {}
            Err(e) => {
                self.bus.shared.metrics.decode_errors.inc();
                tracing::debug!(error = %e, channel, "undecodable message from Redis dropped");
            }
        }
    }
}

/// Reads the count out of a `PUBSUB NUMSUB`/`SHARDNUMSUB` reply for one channel.
pub(crate) fn numsub(v: &redis::Value) -> usize {
    let as_count = |v: &redis::Value| match v {
        redis::Value::Int(n) => usize::try_from(*n).ok(),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    };
    match v {
        redis::Value::Array(items) => items.get(1).and_then(as_count).unwrap_or(0),
        redis::Value::Map(pairs) => pairs.first().and_then(|(_, n)| as_count(n)).unwrap_or(0),
        _ => 0,
    }
}

impl<W: Wire> Adapter for RedisAdapter<W> {
    fn broadcast(&self, packet: EventPacket, opts: BroadcastOptions) {
        self.0.local.broadcast(&packet, &opts);
        if !opts.flags.local {
            self.0
                .send(self.0.wire.request(&Request::Broadcast { packet, opts }));
        }
    }

    fn broadcast_with_ack(
        &self,
        packet: EventPacket,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'static, AckResponses> {
        if opts.flags.local {
            let (count, rx) = self.0.local.broadcast_with_ack(&packet, &opts);
            return Box::pin(switchboard::collect_acks(rx, count, timeout));
        }
        Box::pin(self.0.clone().broadcast_ack(packet, opts, timeout))
    }

    fn fetch_sockets(
        &self,
        opts: BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<SocketInfo>, AdapterError>> {
        if opts.flags.local {
            let s = self.0.local.fetch_sockets(&opts);
            return Box::pin(async move { Ok(s) });
        }
        Box::pin(self.0.clone().fetch(opts))
    }

    fn add_sockets(&self, opts: BroadcastOptions, rooms: Vec<Room>) {
        self.0.local.add_sockets(&opts, &rooms);
        if !opts.flags.local {
            self.0
                .send(self.0.wire.request(&Request::Join { opts, rooms }));
        }
    }

    fn del_sockets(&self, opts: BroadcastOptions, rooms: Vec<Room>) {
        self.0.local.del_sockets(&opts, &rooms);
        if !opts.flags.local {
            self.0
                .send(self.0.wire.request(&Request::Leave { opts, rooms }));
        }
    }

    fn disconnect_sockets(&self, opts: BroadcastOptions, close: bool) {
        if !opts.flags.local {
            self.0.send(self.0.wire.request(&Request::Disconnect {
                opts: opts.clone(),
                close,
            }));
        }
        self.0.local.disconnect_sockets(&opts, close);
    }

    fn all_rooms(&self) -> BoxFuture<'static, Result<Vec<Room>, AdapterError>> {
        Box::pin(self.0.clone().rooms())
    }

    fn server_side_emit(&self, data: Vec<Value>) -> Result<(), AdapterError> {
        self.0
            .send(self.0.wire.request(&Request::ServerSide { id: None, data }));
        Ok(())
    }

    fn server_side_emit_with_ack(
        &self,
        data: Vec<Value>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<AckResponses, AdapterError>> {
        Box::pin(self.0.clone().server_side_with_ack(data, timeout))
    }

    fn server_count(&self) -> BoxFuture<'static, usize> {
        let node = self.0.clone();
        Box::pin(async move { node.count().await.unwrap_or(1) })
    }

    fn room_created(&self, room: &Room) {
        if let Some((kind, channel)) = self.0.wire.room_channel(room) {
            let route: Weak<dyn Route> = Arc::downgrade(&self.0) as Weak<dyn Route>;
            self.0.bus.subscribe(kind, channel, route);
        }
    }

    fn room_deleted(&self, room: &Room) {
        if let Some((kind, channel)) = self.0.wire.room_channel(room) {
            self.0.bus.unsubscribe(kind, channel);
        }
    }

    fn is_ready(&self) -> bool {
        self.0.bus.is_ready()
    }

    fn record_packet(&self, packet: &EventPacket, opts: &BroadcastOptions) -> Option<String> {
        self.1.as_ref().map(|r| r.record(packet, opts))
    }

    fn keeps_live_sessions(&self) -> bool {
        self.1.is_some()
    }

    fn keep_session(&self, session: switchboard::SessionState) {
        if let Some(r) = &self.1 {
            r.keep(session);
        }
    }

    fn persist_session(&self, session: switchboard::SessionState) {
        if let Some(r) = &self.1 {
            r.persist(session);
        }
    }

    fn forget_session(&self, pid: &str) {
        if let Some(r) = &self.1 {
            r.forget(pid);
        }
    }

    fn restore_session(
        &self,
        pid: String,
        offset: String,
    ) -> BoxFuture<'static, Result<switchboard::RecoveredSession, switchboard::RecoveryFailure>>
    {
        match &self.1 {
            Some(r) => r.restore(pid, offset),
            None => Box::pin(async { Err(switchboard::RecoveryFailure::Unsupported) }),
        }
    }

    fn close(&self) {
        self.0
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        for (kind, channel) in self.0.wire.subscriptions() {
            self.0.bus.unsubscribe(kind, channel);
        }
    }
}

/// The first argument of a reply (acks carry only that one) with the attachments its
/// placeholders point into.
pub(crate) fn first_arg(value: &Payload) -> (Value, &[Bytes]) {
    (
        value.args.first().cloned().unwrap_or(Value::Null),
        &value.attachments,
    )
}
