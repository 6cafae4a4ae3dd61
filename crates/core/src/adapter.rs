//! The Adapter seam: how operations that address many sockets reach them.
//!
//! Every namespace has one [`Adapter`]. The default, [`InMemoryAdapter`], serves only this
//! process. A cluster adapter (Redis) implements the same trait: it applies each operation
//! on this node through the [`LocalNamespace`] handle it is given (the namespace's sockets and
//! rooms here) and forwards it to the other nodes, which apply it through theirs. The public
//! API above never changes.

use crate::config::ConnectionStateRecovery;
use crate::metrics::SocketIoMetrics;
use crate::namespace::Namespace;
use crate::payload::Payload;
use crate::recovery::{MemoryStore, RecoveredSession, RecoveryFailure, SessionState};
use crate::room::Room;
use crate::socket::SocketInfo;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Flags of a broadcast, as Socket.IO names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastFlags {
    /// Drop the packet for sockets whose transport cannot take it right now.
    pub volatile: bool,
    /// Only this node: never forwarded to other nodes.
    pub local: bool,
    /// `Some(false)` disables compression for this packet.
    pub compress: Option<bool>,
    /// Acknowledgement timeout of a broadcast with acknowledgement.
    pub timeout: Option<Duration>,
}

/// Which sockets an operation addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Union of these rooms; empty means every socket of the namespace.
    pub rooms: Vec<Room>,
    /// Sockets in any of these rooms are left out.
    pub except: Vec<Room>,
    /// Flags.
    pub flags: BroadcastFlags,
}

/// An EVENT to broadcast: the event name then its arguments, plus attachments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPacket {
    /// Event name followed by the arguments (binary values as placeholders).
    pub data: Vec<Value>,
    /// Binary attachments.
    pub attachments: Vec<Bytes>,
}

/// Replies collected by a broadcast (or server-side emit) with acknowledgement: the first
/// argument of each reply, as Socket.IO collects them (with the attachments it references).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AckResponses {
    /// The replies that arrived, one argument each.
    pub responses: Vec<Payload>,
    /// How many replies were expected (known once every node reported its count).
    pub expected: usize,
    /// True when the timeout passed before every reply arrived.
    pub timed_out: bool,
    /// Which nodes did not report in time, when known (cluster adapters).
    pub missing_nodes: Option<String>,
}

/// What a cluster request had collected when it timed out.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Partial {
    /// Nothing to return.
    #[default]
    None,
    /// Sockets from the nodes (this one included) that answered.
    Sockets(Vec<SocketInfo>),
    /// Rooms from the nodes (this one included) that answered.
    Rooms(Vec<Room>),
    /// Replies that arrived.
    Acks(AckResponses),
}

/// A cluster operation that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdapterError {
    /// Some nodes did not answer in time; `partial` holds what arrived.
    #[error("timeout reached: {missing} node(s) did not answer ({nodes}); check those nodes and the bus")]
    Timeout {
        /// Number of nodes that did not answer.
        missing: usize,
        /// What is known of them: ids of nodes seen recently that did not answer.
        nodes: String,
        /// What arrived before the timeout.
        partial: Box<Partial>,
    },
    /// The bus (e.g. Redis) is unreachable; retry later or check its address.
    #[error("adapter unavailable: {0}; check the bus connection")]
    Unavailable(String),
    /// The namespace is gone.
    #[error("namespace closed")]
    Closed,
}

/// Routes multi-socket operations of one namespace, locally or across a cluster.
pub trait Adapter: Send + Sync + 'static {
    /// Sends `packet` to the addressed sockets. Never blocks on the network.
    fn broadcast(&self, packet: EventPacket, opts: BroadcastOptions);

    /// Sends `packet` expecting one acknowledgement per recipient, within `timeout`.
    fn broadcast_with_ack(
        &self,
        packet: EventPacket,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'static, AckResponses>;

    /// Describes the addressed sockets (on every node).
    fn fetch_sockets(
        &self,
        opts: BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<SocketInfo>, AdapterError>>;

    /// Makes the addressed sockets join `rooms`.
    fn add_sockets(&self, opts: BroadcastOptions, rooms: Vec<Room>);

    /// Makes the addressed sockets leave `rooms`.
    fn del_sockets(&self, opts: BroadcastOptions, rooms: Vec<Room>);

    /// Disconnects the addressed sockets; `close` also closes their connections.
    fn disconnect_sockets(&self, opts: BroadcastOptions, close: bool);

    /// Every room with a member (on every node).
    fn all_rooms(&self) -> BoxFuture<'static, Result<Vec<Room>, AdapterError>>;

    /// Emits an event to the other nodes' server-side listeners.
    fn server_side_emit(&self, data: Vec<Value>) -> Result<(), AdapterError>;

    /// Emits to the other nodes' server-side listeners and collects their replies.
    fn server_side_emit_with_ack(
        &self,
        data: Vec<Value>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<AckResponses, AdapterError>>;

    /// How many nodes serve this namespace, this one included.
    fn server_count(&self) -> BoxFuture<'static, usize>;

    /// A room got its first local member (a sharded adapter subscribes to it here). Called
    /// under the room's lock, so the calls for one room come in the order of its changes: it
    /// must not block, and must not read the namespace's rooms.
    fn room_created(&self, _room: &Room) {}

    /// A room lost its last local member (same calling rules as `room_created`).
    fn room_deleted(&self, _room: &Room) {}

    /// True when the adapter can currently reach every node (always true in memory).
    fn is_ready(&self) -> bool {
        true
    }

    /// Stops the adapter (namespace shutdown).
    fn close(&self) {}

    /// Connection state recovery: keeps a recoverable packet (an EVENT with no ack, not
    /// volatile) addressed by `opts` for replay, and returns the offset the sender appends to
    /// it as its last argument (the kept copy must carry it too: replays send it as it was
    /// sent). Called only while recovery is on. `None`: this adapter keeps
    /// no packets, so the packet goes out without an offset.
    fn record_packet(&self, _packet: &EventPacket, _opts: &BroadcastOptions) -> Option<String> {
        None
    }

    /// Connection state recovery: keeps the session of a socket that lost its connection for
    /// the recovery window. Never blocks on the network.
    fn persist_session(&self, _session: SessionState) {}

    /// Connection state recovery: a snapshot of a connected socket's session
    /// (`disconnected_at` 0), given once it is connected and again after its rooms or data
    /// change, so that a cluster adapter can keep it where another node finds it should this
    /// node die. Never blocks on the network.
    fn keep_session(&self, _session: SessionState) {}

    /// True when this adapter wants [`Adapter::keep_session`] snapshots (building one costs a
    /// copy of the socket's rooms and data, so sockets skip it otherwise).
    fn keeps_live_sessions(&self) -> bool {
        false
    }

    /// Connection state recovery: the socket with private id `pid` left for a reason that
    /// keeps no session (a namespace disconnect); drop any snapshot of it.
    fn forget_session(&self, _pid: &str) {}

    /// Connection state recovery: takes back session `pid` (once) and the packets addressed
    /// to it after `offset`, in the order they were sent.
    fn restore_session(
        &self,
        _pid: String,
        _offset: String,
    ) -> BoxFuture<'static, Result<RecoveredSession, RecoveryFailure>> {
        Box::pin(async { Err(RecoveryFailure::Unsupported) })
    }
}

/// Creates the adapter of each namespace.
pub trait AdapterFactory: Send + Sync + 'static {
    /// The adapter for the namespace behind `local`.
    fn create(&self, local: LocalNamespace) -> Arc<dyn Adapter>;
}

/// A namespace's sockets and rooms on this node, as its adapter reaches them: what an adapter
/// calls to apply an operation here (Node's in-memory adapter does the same work in the base
/// class every cluster adapter extends). It holds the namespace weakly: once the namespace is
/// gone, every operation does nothing.
#[derive(Clone)]
pub struct LocalNamespace {
    nsp: Weak<Namespace>,
    name: String,
}

/// The former name of [`LocalNamespace`], which is no adapter itself but what adapters call.
#[deprecated(note = "renamed `LocalNamespace`")]
pub type LocalAdapter = LocalNamespace;

impl std::fmt::Debug for LocalNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNamespace")
            .field("nsp", &self.name)
            .finish()
    }
}

impl LocalNamespace {
    pub(crate) fn of(ns: &Arc<Namespace>) -> Self {
        Self {
            nsp: Arc::downgrade(ns),
            name: ns.name().to_owned(),
        }
    }

    /// The namespace name.
    pub fn namespace(&self) -> &str {
        &self.name
    }

    /// The connection state recovery options, when recovery is on.
    pub fn recovery(&self) -> Option<ConnectionStateRecovery> {
        self.with(|ns| ns.config().connection_state_recovery.clone())
            .flatten()
    }

    /// The Socket.IO layer's metrics (recovery results and store sizes live there).
    pub fn metrics(&self) -> Option<Arc<SocketIoMetrics>> {
        self.with(|ns| ns.metrics_handle())
    }

    fn with<T>(&self, f: impl FnOnce(&Namespace) -> T) -> Option<T> {
        self.nsp.upgrade().map(|ns| f(&ns))
    }

    /// Delivers `packet` to the addressed local sockets; returns how many got it.
    pub fn broadcast(&self, packet: &EventPacket, opts: &BroadcastOptions) -> usize {
        self.with(|ns| ns.local_broadcast(Cow::Borrowed(packet), opts))
            .unwrap_or(0)
    }

    /// [`LocalNamespace::broadcast`] of a packet the caller no longer needs: its data is encoded
    /// without being copied first.
    pub fn broadcast_owned(&self, packet: EventPacket, opts: &BroadcastOptions) -> usize {
        self.with(|ns| ns.local_broadcast(Cow::Owned(packet), opts))
            .unwrap_or(0)
    }

    /// Delivers `packet` with an acknowledgement request to the addressed local sockets.
    /// Returns how many sockets got it and a receiver of their replies (first argument each).
    pub fn broadcast_with_ack(
        &self,
        packet: &EventPacket,
        opts: &BroadcastOptions,
    ) -> (usize, tokio::sync::mpsc::UnboundedReceiver<Payload>) {
        match self.nsp.upgrade() {
            Some(ns) => ns.local_broadcast_with_ack(packet, opts),
            None => (0, tokio::sync::mpsc::unbounded_channel().1),
        }
    }

    /// Describes the addressed local sockets.
    pub fn fetch_sockets(&self, opts: &BroadcastOptions) -> Vec<SocketInfo> {
        self.with(|ns| ns.local_fetch(opts)).unwrap_or_default()
    }

    /// Makes the addressed local sockets join `rooms`.
    pub fn add_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        self.with(|ns| ns.local_add_sockets(opts, rooms));
    }

    /// Makes the addressed local sockets leave `rooms`.
    pub fn del_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        self.with(|ns| ns.local_del_sockets(opts, rooms));
    }

    /// Disconnects the addressed local sockets.
    pub fn disconnect_sockets(&self, opts: &BroadcastOptions, close: bool) {
        self.with(|ns| ns.local_disconnect(opts, close));
    }

    /// Every local room with a member.
    pub fn rooms(&self) -> Vec<Room> {
        self.with(|ns| ns.rooms.all()).unwrap_or_default()
    }

    /// True when `id` is the id of a socket connected to this node.
    pub fn has_socket(&self, id: &str) -> bool {
        let Some(sid) = switchboard_engine::Sid::parse(id) else {
            return false;
        };
        self.with(|ns| ns.socket(&sid).is_some()).unwrap_or(false)
    }

    /// True when `room` has a local member.
    pub fn has_room(&self, room: &str) -> bool {
        self.with(|ns| ns.rooms.contains(room)).unwrap_or(false)
    }

    /// Runs the local server-side listeners for an event from another node; `reply` receives
    /// the listener's answer when the sender asked for one.
    pub fn server_side_event(
        &self,
        data: Vec<Value>,
        reply: Option<tokio::sync::oneshot::Sender<Value>>,
    ) {
        self.with(|ns| ns.run_server_side(data, reply));
    }
}

/// The default adapter: this process only. With connection state recovery on, it keeps the
/// namespace's recoverable packets and disconnected sessions in memory, as Node's
/// `SessionAwareAdapter` does.
pub struct InMemoryAdapter {
    local: LocalNamespace,
    store: Option<MemoryStore>,
}

impl std::fmt::Debug for InMemoryAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryAdapter")
            .field("local", &self.local)
            .field("recovery", &self.store.is_some())
            .finish()
    }
}

/// Creates [`InMemoryAdapter`]s.
#[derive(Debug, Default, Clone, Copy)]
pub struct InMemoryAdapterFactory;

impl AdapterFactory for InMemoryAdapterFactory {
    fn create(&self, local: LocalNamespace) -> Arc<dyn Adapter> {
        let store = match (local.recovery(), local.metrics()) {
            (Some(config), Some(metrics)) => Some(MemoryStore::new(config, metrics)),
            _ => None,
        };
        Arc::new(InMemoryAdapter { local, store })
    }
}

/// Collects up to `expected` replies from `rx` until `timeout`.
pub async fn collect_acks(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Payload>,
    expected: usize,
    timeout: Duration,
) -> AckResponses {
    let mut out = AckResponses {
        responses: Vec::with_capacity(expected),
        expected,
        timed_out: false,
        missing_nodes: None,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    while out.responses.len() < expected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(v)) => out.responses.push(v),
            Ok(None) => break,
            Err(_) => {
                out.timed_out = true;
                break;
            }
        }
    }
    if out.responses.len() < expected {
        out.timed_out = true;
    }
    out
}

impl Adapter for InMemoryAdapter {
    fn broadcast(&self, packet: EventPacket, opts: BroadcastOptions) {
        self.local.broadcast_owned(packet, &opts);
    }

    fn broadcast_with_ack(
        &self,
        packet: EventPacket,
        opts: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<'static, AckResponses> {
        let (count, rx) = self.local.broadcast_with_ack(&packet, &opts);
        Box::pin(collect_acks(rx, count, timeout))
    }

    fn fetch_sockets(
        &self,
        opts: BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<SocketInfo>, AdapterError>> {
        let sockets = self.local.fetch_sockets(&opts);
        Box::pin(async move { Ok(sockets) })
    }

    fn add_sockets(&self, opts: BroadcastOptions, rooms: Vec<Room>) {
        self.local.add_sockets(&opts, &rooms);
    }

    fn del_sockets(&self, opts: BroadcastOptions, rooms: Vec<Room>) {
        self.local.del_sockets(&opts, &rooms);
    }

    fn disconnect_sockets(&self, opts: BroadcastOptions, close: bool) {
        self.local.disconnect_sockets(&opts, close);
    }

    fn all_rooms(&self) -> BoxFuture<'static, Result<Vec<Room>, AdapterError>> {
        let rooms = self.local.rooms();
        Box::pin(async move { Ok(rooms) })
    }

    fn server_side_emit(&self, _data: Vec<Value>) -> Result<(), AdapterError> {
        // There is no other node; Socket.IO does not call this node's own listeners.
        Ok(())
    }

    fn server_side_emit_with_ack(
        &self,
        _data: Vec<Value>,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<AckResponses, AdapterError>> {
        Box::pin(async { Ok(AckResponses::default()) })
    }

    fn server_count(&self) -> BoxFuture<'static, usize> {
        Box::pin(async { 1 })
    }

    fn record_packet(&self, packet: &EventPacket, opts: &BroadcastOptions) -> Option<String> {
        self.store.as_ref().map(|s| s.record(packet, opts))
    }

    fn persist_session(&self, session: SessionState) {
        if let Some(store) = &self.store {
            store.persist(session);
        }
    }

    fn restore_session(
        &self,
        pid: String,
        offset: String,
    ) -> BoxFuture<'static, Result<RecoveredSession, RecoveryFailure>> {
        let result = match &self.store {
            Some(store) => store.restore(&pid, &offset),
            None => Err(RecoveryFailure::Unsupported),
        };
        Box::pin(async move { result })
    }
}
