//! A namespace: its sockets, rooms, handlers and adapter.

use crate::adapter::{Adapter, AdapterError, BroadcastOptions, EventPacket, LocalNamespace};
use crate::client::encode;
use crate::config::ServerConfig;
use crate::error::{ConnectError, EmitError};
use crate::metrics::SocketIoMetrics;
use crate::operators::BroadcastOperator;
use crate::payload::Payload;
use crate::room::{IntoRooms, Room, RoomIndex};
use crate::socket::{AckTarget, SocketInfo, SocketRef};
use futures_util::future::BoxFuture;
use parking_lot::RwLock;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use switchboard_engine::{ShardedMap, Sid};
use switchboard_protocol::{Packet, PacketKind};
use tokio::sync::{mpsc, oneshot};

type Middleware =
    Arc<dyn Fn(SocketRef) -> BoxFuture<'static, Result<(), ConnectError>> + Send + Sync>;
type ConnectionHandler = Arc<dyn Fn(&SocketRef) + Send + Sync>;
type ServerSideHandler = Arc<dyn Fn(Vec<Value>, Option<oneshot::Sender<Value>>) + Send + Sync>;

/// Handlers of a namespace; shared by the children of a dynamic namespace.
#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) middlewares: RwLock<Vec<Middleware>>,
    pub(crate) connection: RwLock<Vec<ConnectionHandler>>,
    pub(crate) server_side: RwLock<HashMap<String, ServerSideHandler>>,
}

impl Handlers {
    pub(crate) fn add_middleware<F, Fut>(&self, middleware: F)
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        {
            let mut m = self.middlewares.write();
            m.push(Arc::new(move |s| Box::pin(middleware(s))));
        }
    }

    pub(crate) fn add_connection<F>(&self, handler: F)
    where
        F: Fn(&SocketRef) + Send + Sync + 'static,
    {
        {
            let mut h = self.connection.write();
            h.push(Arc::new(handler));
        }
    }
}

/// Shards of a namespace's socket map.
const SOCKET_SHARDS: usize = 16;

/// What the server shares with each of its namespaces: its configuration and metrics.
pub(crate) struct ServerContext {
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Arc<SocketIoMetrics>,
}

/// A Socket.IO namespace (`/`, `/admin`, ...).
pub struct Namespace {
    name: String,
    shared: Arc<ServerContext>,
    sockets: ShardedMap<Sid, SocketRef>,
    pub(crate) rooms: RoomIndex<SocketRef>,
    adapter: OnceLock<Arc<dyn Adapter>>,
    pub(crate) handlers: Arc<Handlers>,
    ack_ids: AtomicU64,
    /// Fields added to every socket's `data` as `fetch_sockets` reports it.
    fetch_fields: RwLock<Vec<(String, Value)>>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Namespace {
    pub(crate) fn new(
        name: String,
        shared: Arc<ServerContext>,
        handlers: Arc<Handlers>,
        factory: &dyn crate::adapter::AdapterFactory,
    ) -> Arc<Self> {
        let ns = Arc::new(Self {
            name,
            shared,
            sockets: ShardedMap::new(SOCKET_SHARDS),
            rooms: RoomIndex::new(),
            adapter: OnceLock::new(),
            handlers,
            ack_ids: AtomicU64::new(0),
            fetch_fields: RwLock::new(Vec::new()),
        });
        let _ = ns.adapter.set(factory.create(LocalNamespace::of(&ns)));
        ns
    }

    /// The name, with its leading `/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds `key: value` to the `data` of every socket of this namespace (when its data is an
    /// object) as `fetch_sockets` reports it, on this node and to other nodes, without storing
    /// it in each socket: for a fact shared by every socket here, such as the node's name.
    /// Setting a key again replaces its value.
    pub fn tag_fetched(&self, key: impl Into<String>, value: Value) {
        let key = key.into();
        let mut fields = self.fetch_fields.write();
        fields.retain(|(k, _)| *k != key);
        fields.push((key, value));
    }

    /// Applies [`Namespace::tag_fetched`] to one socket's data.
    pub(crate) fn tag_data(&self, data: &mut Value) {
        let Value::Object(map) = data else { return };
        for (k, v) in self.fetch_fields.read().iter() {
            map.insert(k.clone(), v.clone());
        }
    }

    /// The adapter routing this namespace's broadcasts.
    pub fn adapter(&self) -> Option<&Arc<dyn Adapter>> {
        self.adapter.get()
    }

    pub(crate) fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    pub(crate) fn metrics(&self) -> &SocketIoMetrics {
        &self.shared.metrics
    }

    pub(crate) fn metrics_handle(&self) -> Arc<SocketIoMetrics> {
        self.shared.metrics.clone()
    }

    /// Connection state recovery: gives a recoverable packet its offset (appended as its last
    /// argument) when recovery is on and the adapter keeps packets.
    pub(crate) fn add_offset(&self, packet: &mut EventPacket, opts: &BroadcastOptions) {
        if self.config().connection_state_recovery.is_none() {
            return;
        }
        if let Some(offset) = self.adapter().and_then(|a| a.record_packet(packet, opts)) {
            packet.data.push(Value::String(offset));
        }
    }

    pub(crate) fn next_ack_id(&self) -> u64 {
        self.ack_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a connection middleware; an `Err` refuses the connection with CONNECT_ERROR.
    pub fn use_middleware<F, Fut>(&self, middleware: F)
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.handlers.add_middleware(middleware);
    }

    /// Registers a connection handler: it runs for each new socket before the client learns
    /// it is connected, so handlers it installs never miss an event.
    pub fn on_connection<F>(&self, handler: F)
    where
        F: Fn(&SocketRef) + Send + Sync + 'static,
    {
        self.handlers.add_connection(handler);
    }

    /// Registers a listener for events other nodes send with `server_side_emit`. The second
    /// argument, when present, takes the reply.
    pub fn on_server_side<F>(&self, event: impl Into<String>, handler: F)
    where
        F: Fn(Vec<Value>, Option<oneshot::Sender<Value>>) + Send + Sync + 'static,
    {
        {
            let mut h = self.handlers.server_side.write();
            h.insert(event.into(), Arc::new(handler));
        }
    }

    /// A local socket by id.
    pub fn socket(&self, id: &Sid) -> Option<SocketRef> {
        self.sockets.get(id)
    }

    /// Every local socket.
    pub fn sockets(&self) -> Vec<SocketRef> {
        self.sockets.values()
    }

    /// Broadcast to `rooms`.
    pub fn to(self: &Arc<Self>, rooms: impl IntoRooms) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).to(rooms)
    }

    /// Same as [`Namespace::to`].
    pub fn in_(self: &Arc<Self>, rooms: impl IntoRooms) -> BroadcastOperator {
        self.to(rooms)
    }

    /// Broadcast leaving out sockets in `rooms`.
    pub fn except(self: &Arc<Self>, rooms: impl IntoRooms) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).except(rooms)
    }

    /// Volatile broadcast.
    pub fn volatile(self: &Arc<Self>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).volatile()
    }

    /// Broadcast on this node only.
    pub fn local(self: &Arc<Self>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).local()
    }

    /// Broadcast with acknowledgements collected within `timeout`.
    pub fn timeout(self: &Arc<Self>, timeout: Duration) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).timeout(timeout)
    }

    /// Emits to every socket of the namespace.
    pub fn emit(
        self: &Arc<Self>,
        event: &str,
        payload: impl Into<Payload>,
    ) -> Result<(), EmitError> {
        BroadcastOperator::new(self.clone()).emit(event, payload)
    }

    /// Describes every socket of the namespace, on every node.
    pub async fn fetch_sockets(self: &Arc<Self>) -> Result<Vec<SocketInfo>, AdapterError> {
        BroadcastOperator::new(self.clone()).fetch_sockets().await
    }

    /// Makes every socket join `rooms`.
    pub fn sockets_join(self: &Arc<Self>, rooms: impl IntoRooms) {
        BroadcastOperator::new(self.clone()).sockets_join(rooms)
    }

    /// Makes every socket leave `rooms`.
    pub fn sockets_leave(self: &Arc<Self>, rooms: impl IntoRooms) {
        BroadcastOperator::new(self.clone()).sockets_leave(rooms)
    }

    /// Disconnects every socket; `close` closes their connections too.
    pub fn disconnect_sockets(self: &Arc<Self>, close: bool) {
        BroadcastOperator::new(self.clone()).disconnect_sockets(close)
    }

    /// Every room with a member, on every node.
    pub async fn all_rooms(&self) -> Result<Vec<Room>, AdapterError> {
        match self.adapter() {
            Some(a) => a.all_rooms().await,
            None => Err(AdapterError::Closed),
        }
    }

    /// Emits to the other nodes' server-side listeners.
    pub fn server_side_emit(&self, event: &str, args: Vec<Value>) -> Result<(), AdapterError> {
        let data = crate::socket::event_data(event, args)
            .map_err(|e| AdapterError::Unavailable(e.to_string()))?;
        match self.adapter() {
            Some(a) => a.server_side_emit(data),
            None => Err(AdapterError::Closed),
        }
    }

    /// Emits to the other nodes' server-side listeners and collects their replies.
    pub async fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<crate::adapter::AckResponses, AdapterError> {
        let data = crate::socket::event_data(event, args)
            .map_err(|e| AdapterError::Unavailable(e.to_string()))?;
        match self.adapter() {
            Some(a) => a.server_side_emit_with_ack(data, timeout).await,
            None => Err(AdapterError::Closed),
        }
    }

    pub(crate) fn insert_socket(&self, socket: SocketRef) {
        self.sockets.insert(socket.id(), socket);
    }

    pub(crate) fn remove_socket(&self, id: &Sid) {
        self.sockets.remove(id);
    }

    pub(crate) fn room_add(&self, room: &Room, socket: &SocketRef) {
        self.rooms.add(room, socket, || {
            if let Some(a) = self.adapter() {
                a.room_created(room);
            }
        });
    }

    pub(crate) fn room_remove(&self, room: &Room, sid: &Sid) {
        self.rooms.remove(room, sid, || {
            if let Some(a) = self.adapter() {
                a.room_deleted(room);
            }
        });
    }

    /// The local sockets `opts` addresses, each once. The room index holds the sockets
    /// themselves: choosing a room's members looks nothing up per member.
    pub(crate) fn select(&self, opts: &BroadcastOptions) -> Vec<SocketRef> {
        let mut except: HashSet<Sid> = HashSet::new();
        for room in &opts.except {
            self.rooms.for_each_member(room.as_str(), |socket| {
                except.insert(socket.id());
            });
        }
        let mut out = Vec::new();
        if opts.rooms.is_empty() {
            self.sockets.for_each(|sid, socket| {
                if !except.contains(sid) {
                    out.push(socket.clone());
                }
            });
            return out;
        }
        let mut seen: HashSet<Sid> = HashSet::new();
        let single = opts.rooms.len() == 1;
        for room in &opts.rooms {
            self.rooms.for_each_member(room.as_str(), |socket| {
                let sid = socket.id();
                if !except.contains(&sid) && (single || seen.insert(sid)) {
                    out.push(socket.clone());
                }
            });
        }
        out
    }

    /// Delivers `packet` to the local sockets `opts` addresses, encoded once for all; a
    /// borrowed packet is copied only when someone here is addressed.
    pub(crate) fn local_broadcast(
        &self,
        packet: Cow<'_, EventPacket>,
        opts: &BroadcastOptions,
    ) -> usize {
        let started = std::time::Instant::now();
        let targets = self.select(opts);
        if targets.is_empty() {
            return 0;
        }
        let EventPacket { data, attachments } = packet.into_owned();
        let item = encode(
            self.config().parser,
            &Packet {
                nsp: self.name.clone(),
                kind: PacketKind::Event {
                    data,
                    id: None,
                    attachments,
                },
            },
        );
        let mut delivered = 0;
        for socket in &targets {
            if socket
                .send_encoded(item.clone(), opts.flags.volatile)
                .is_ok()
            {
                delivered += 1;
            }
        }
        let m = self.metrics();
        m.broadcasts.inc();
        m.broadcast_recipients.inc_by(delivered as u64);
        m.broadcast_duration
            .observe(started.elapsed().as_secs_f64());
        delivered
    }

    pub(crate) fn local_broadcast_with_ack(
        &self,
        packet: &EventPacket,
        opts: &BroadcastOptions,
    ) -> (usize, mpsc::UnboundedReceiver<Payload>) {
        let started = std::time::Instant::now();
        let (tx, rx) = mpsc::unbounded_channel();
        let targets = self.select(opts);
        if targets.is_empty() {
            return (0, rx);
        }
        let id = self.next_ack_id();
        let item = encode(
            self.config().parser,
            &Packet {
                nsp: self.name.clone(),
                kind: PacketKind::Event {
                    data: packet.data.clone(),
                    id: Some(id),
                    attachments: packet.attachments.clone(),
                },
            },
        );
        let timeout = opts.flags.timeout.unwrap_or(self.config().ack_timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut count = 0;
        for socket in &targets {
            if socket
                .register_ack(id, AckTarget::Many(tx.clone(), deadline))
                .is_err()
            {
                continue;
            }
            if socket
                .send_encoded(item.clone(), opts.flags.volatile)
                .is_ok()
            {
                count += 1;
            }
        }
        self.metrics().broadcasts.inc();
        self.metrics().broadcast_recipients.inc_by(count as u64);
        self.metrics()
            .broadcast_duration
            .observe(started.elapsed().as_secs_f64());
        (count, rx)
    }

    pub(crate) fn local_fetch(&self, opts: &BroadcastOptions) -> Vec<SocketInfo> {
        self.select(opts).iter().map(|s| s.info()).collect()
    }

    pub(crate) fn local_add_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        for socket in self.select(opts) {
            socket.join(rooms.to_vec());
        }
    }

    pub(crate) fn local_del_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        for socket in self.select(opts) {
            socket.leave(rooms.to_vec());
        }
    }

    pub(crate) fn local_disconnect(&self, opts: &BroadcastOptions, close: bool) {
        for socket in self.select(opts) {
            socket.disconnect(close);
        }
    }

    pub(crate) fn run_server_side(&self, data: Vec<Value>, reply: Option<oneshot::Sender<Value>>) {
        let Some(Value::String(event)) = data.first() else {
            return;
        };
        let handler = self.handlers.server_side.read().get(event).cloned();
        if let Some(handler) = handler {
            handler(data[1..].to_vec(), reply);
        }
    }

    pub(crate) async fn run_middlewares(&self, socket: &SocketRef) -> Result<(), ConnectError> {
        let middlewares: Vec<Middleware> = self.handlers.middlewares.read().clone();
        for m in middlewares {
            m(socket.clone()).await?;
        }
        Ok(())
    }

    pub(crate) fn run_connection_handlers(&self, socket: &SocketRef) {
        let handlers: Vec<ConnectionHandler> = self.handlers.connection.read().clone();
        for h in handlers {
            h(socket);
        }
    }
}
