//! A socket: one client's connection to one namespace.

use crate::adapter::EventPacket;
use crate::client::Conn;
use crate::error::{AckError, DisconnectReason, EmitError};
use crate::namespace::Namespace;
use crate::operators::BroadcastOperator;
use crate::payload::Payload;
use crate::room::{IntoRooms, Room};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_engine::{Outgoing, SendError, Sid};
use switchboard_protocol::socketio::is_reserved_event;
use switchboard_protocol::{Packet, PacketKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A shared handle to a socket; handlers receive `&SocketRef`.
pub type SocketRef = Arc<Socket>;

type EventHandler = Arc<dyn Fn(&SocketRef, Event) + Send + Sync>;
type AnyHandler = Arc<dyn Fn(&SocketRef, &Event) + Send + Sync>;
type DisconnectHandler = Arc<dyn Fn(&SocketRef, DisconnectReason) + Send + Sync>;
type EventGuard = Arc<dyn Fn(&SocketRef, &Event) -> Verdict + Send + Sync>;

/// What an event guard ([`Socket::use_guard`]) decides about an incoming event.
#[derive(Debug)]
pub enum Verdict {
    /// Hand the event to `on_any` and its handler.
    Pass,
    /// Drop the event; if the client asked for an acknowledgement, answer it with this.
    Refuse(Payload),
}

/// What the client sent when it connected to the namespace.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Request headers of the connection (shared with the engine session, not copied).
    pub headers: Arc<http::HeaderMap>,
    /// The CONNECT packet's auth object (`{}` when absent).
    pub auth: Value,
    /// Peer address.
    pub address: Option<SocketAddr>,
    /// When the socket was created (Node's `handshake.time` and `issued` are taken then too).
    pub time: SystemTime,
    /// The URL of the request that opened the connection (shared with the engine session);
    /// [`Handshake::url`] and [`Handshake::query`] read it on demand, so an idle socket keeps
    /// no parsed copy.
    pub uri: http::Uri,
    /// True when the connection came over TLS.
    pub secure: bool,
}

impl Handshake {
    /// Query parameters of the connection URL, decoded as Node's engine.io does (its
    /// `URLSearchParams`: percent-decoded, `+` is a space; of a repeated key, the last value),
    /// by the parser the engine reads its own parameters with
    /// ([`switchboard_engine::query_params`]). Parsed at each call.
    pub fn query(&self) -> HashMap<String, String> {
        switchboard_engine::query_params(self.uri.query().unwrap_or(""))
    }

    /// The URL of the request that opened the connection (path and query).
    pub fn url(&self) -> String {
        self.uri.to_string()
    }

    /// A request header as Node's `req.headers` has it: the values of a repeated header joined
    /// with ", " (`set-cookie` included, never sent by clients); `None` when absent or when no
    /// value is visible ASCII.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// The handshake as Socket.IO serializes it for `fetchSockets` (Node's field names).
    pub fn to_json(&self) -> Value {
        let mut headers = serde_json::Map::new();
        for name in self.headers.keys() {
            if let Some(value) = self.header(name) {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
        let issued = self
            .time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        serde_json::json!({
            "headers": headers,
            "time": crate::time::js_date_string(self.time),
            "address": self.address.map(|a| a.ip().to_string()).unwrap_or_default(),
            "xdomain": self.headers.contains_key(http::header::ORIGIN),
            "secure": self.secure,
            "issued": issued,
            "url": self.url(),
            "query": self.query(),
            "auth": self.auth,
        })
    }
}

/// A socket as seen by `fetch_sockets`: its id, rooms, handshake and data, from any node.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketInfo {
    /// Socket id.
    pub id: String,
    /// Rooms, its own id included.
    pub rooms: Vec<String>,
    /// Handshake in Node's JSON shape.
    pub handshake: Value,
    /// `socket.data`.
    pub data: Value,
}

/// An event received from the client.
#[derive(Debug)]
pub struct Event {
    /// The event name (a numeric name is given as its decimal text).
    pub name: String,
    /// The arguments after the name.
    pub payload: Payload,
    /// Present when the client asked for an acknowledgement.
    pub ack: Option<Ack>,
}

impl Event {
    /// Argument `i` deserialized as `T`.
    pub fn arg<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<T, serde_json::Error> {
        self.payload.get(i)
    }

    /// Replies to the client's acknowledgement request, if any.
    pub fn ack(&mut self, payload: impl Into<Payload>) {
        if let Some(ack) = self.ack.take() {
            ack.send(payload);
        }
    }
}

/// The right to answer one acknowledgement request; consumed by [`Ack::send`].
pub struct Ack {
    socket: SocketRef,
    id: u64,
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack").field("id", &self.id).finish()
    }
}

impl Ack {
    /// Sends the acknowledgement.
    pub fn send(self, payload: impl Into<Payload>) {
        let payload = payload.into();
        let packet = Packet {
            nsp: self.socket.ns.name().to_owned(),
            kind: PacketKind::Ack {
                data: payload.args,
                id: self.id,
                attachments: payload.attachments,
            },
        };
        let _ = self.socket.send_packet(&packet, false);
    }
}

pub(crate) enum AckTarget {
    One(oneshot::Sender<Payload>),
    Many(mpsc::UnboundedSender<Payload>, Instant),
}

/// One client's membership of one namespace.
pub struct Socket {
    id: Sid,
    /// Private session id (connection state recovery on): the client presents it to take
    /// its session back; never shown to anyone else.
    pid: Option<Sid>,
    recovered: bool,
    /// Set once connected (recovery on): room and data changes refresh the adapter's
    /// snapshot of the session.
    keeping: AtomicBool,
    pub(crate) ns: Arc<Namespace>,
    pub(crate) conn: Conn,
    handshake: Handshake,
    data: Mutex<Value>,
    extensions: Mutex<http::Extensions>,
    /// The rooms this socket is in: the reverse index of the namespace's room index, so that
    /// leaving costs the rooms of this socket. `None` once it left the namespace: a join then
    /// does nothing, so no room ever keeps a socket that is gone.
    rooms: Mutex<Option<HashSet<Room>>>,
    handlers: RwLock<HashMap<String, EventHandler>>,
    any_handlers: RwLock<Vec<AnyHandler>>,
    guards: RwLock<Vec<EventGuard>>,
    fallback: RwLock<Option<EventHandler>>,
    disconnecting: RwLock<Vec<DisconnectHandler>>,
    disconnect: RwLock<Vec<DisconnectHandler>>,
    acks: Mutex<HashMap<u64, AckTarget>>,
    connected: AtomicBool,
    /// Until the CONNECT reply is queued, packets for this socket wait here, so a client
    /// never sees anything of the namespace before it knows it is connected.
    buffering: AtomicBool,
    buffered: Mutex<Vec<(Outgoing, bool)>>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id)
            .field("nsp", &self.ns.name())
            .finish_non_exhaustive()
    }
}

impl Socket {
    /// A socket for `conn`; with `restored`, it takes that session's ids and data back.
    pub(crate) fn new(
        ns: Arc<Namespace>,
        conn: Conn,
        auth: Value,
        restored: Option<(Sid, Sid, Value)>,
    ) -> SocketRef {
        let req = conn.request();
        let handshake = Handshake {
            headers: req.headers.clone(),
            uri: req.uri.clone(),
            auth,
            address: req.remote_addr,
            time: SystemTime::now(),
            secure: req.secure,
        };
        let recovery = ns.config().connection_state_recovery.is_some();
        let recovered = restored.is_some();
        let (id, pid, data) = match restored {
            Some((id, pid, data)) => (id, Some(pid), data),
            None => (
                Sid::random(),
                recovery.then(Sid::random),
                Value::Object(Default::default()),
            ),
        };
        Arc::new(Self {
            id,
            pid,
            recovered,
            keeping: AtomicBool::new(false),
            ns,
            conn,
            handshake,
            data: Mutex::new(data),
            extensions: Mutex::new(http::Extensions::new()),
            rooms: Mutex::new(Some(HashSet::new())),
            handlers: RwLock::new(HashMap::new()),
            any_handlers: RwLock::new(Vec::new()),
            guards: RwLock::new(Vec::new()),
            fallback: RwLock::new(None),
            disconnecting: RwLock::new(Vec::new()),
            disconnect: RwLock::new(Vec::new()),
            acks: Mutex::new(HashMap::new()),
            connected: AtomicBool::new(false),
            buffering: AtomicBool::new(true),
            buffered: Mutex::new(Vec::new()),
        })
    }

    /// The socket id (public: other clients may know it).
    pub fn id(&self) -> Sid {
        self.id
    }

    /// True when this socket took back the session of an earlier connection (connection
    /// state recovery): same id, rooms and data, and the packets it missed were replayed.
    /// Node's `socket.recovered`.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    pub(crate) fn pid(&self) -> Option<Sid> {
        self.pid
    }

    /// The namespace.
    pub fn nsp(&self) -> &Arc<Namespace> {
        &self.ns
    }

    /// The handshake.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// `socket.data`: free-form JSON that travels with `fetch_sockets`.
    pub fn data(&self) -> Value {
        self.data.lock().clone()
    }

    /// Replaces `socket.data`.
    pub fn set_data(&self, value: Value) {
        {
            let mut d = self.data.lock();
            *d = value;
        }
        self.keep_session();
    }

    /// Stores a typed value on the socket, for this node's own handlers (unlike
    /// [`Socket::data`], it never leaves the node). A value of the same type is replaced.
    pub fn insert_extension<T: Clone + Send + Sync + 'static>(&self, value: T) {
        self.extensions.lock().insert(value);
    }

    /// The value of type `T` stored with [`Socket::insert_extension`], if any.
    pub fn extension<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.extensions.lock().get::<T>().cloned()
    }

    /// True while the socket is connected.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The current transport (`polling` or `websocket`).
    pub fn transport(&self) -> &'static str {
        self.conn.transport().as_str()
    }

    /// Adds a guard that sees every incoming event before `on_any` and the event's handler
    /// (Socket.IO's `socket.use`): the first guard that refuses an event drops it, and its
    /// acknowledgement, if the client asked for one, carries the refusal.
    pub fn use_guard<F>(&self, guard: F)
    where
        F: Fn(&SocketRef, &Event) -> Verdict + Send + Sync + 'static,
    {
        self.guards.write().push(Arc::new(guard));
    }

    /// Registers the handler of `event`, replacing any previous one.
    pub fn on<F>(&self, event: impl Into<String>, handler: F)
    where
        F: Fn(&SocketRef, Event) + Send + Sync + 'static,
    {
        {
            let mut h = self.handlers.write();
            h.insert(event.into(), Arc::new(handler));
        }
    }

    /// Removes the handler of `event`.
    pub fn off(&self, event: &str) {
        {
            let mut h = self.handlers.write();
            h.remove(event);
        }
    }

    /// Registers a handler called for every event before its own handler.
    pub fn on_any<F>(&self, handler: F)
    where
        F: Fn(&SocketRef, &Event) + Send + Sync + 'static,
    {
        {
            let mut h = self.any_handlers.write();
            h.push(Arc::new(handler));
        }
    }

    /// Registers the handler of every event that has no handler of its own (replacing any
    /// previous one); it owns the event, so it may answer the acknowledgement later.
    pub fn on_fallback<F>(&self, handler: F)
    where
        F: Fn(&SocketRef, Event) + Send + Sync + 'static,
    {
        *self.fallback.write() = Some(Arc::new(handler));
    }

    /// Registers a handler called when the socket is about to leave (rooms still readable).
    pub fn on_disconnecting<F>(&self, handler: F)
    where
        F: Fn(&SocketRef, DisconnectReason) + Send + Sync + 'static,
    {
        {
            let mut h = self.disconnecting.write();
            h.push(Arc::new(handler));
        }
    }

    /// Registers a handler called once the socket has left.
    pub fn on_disconnect<F>(&self, handler: F)
    where
        F: Fn(&SocketRef, DisconnectReason) + Send + Sync + 'static,
    {
        {
            let mut h = self.disconnect.write();
            h.push(Arc::new(handler));
        }
    }

    /// Sends `event` to this client.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let mut packet = event_for_broadcast(event, payload.into())?;
        if self.pid.is_some() {
            // Recoverable, as Node's emit through the adapter to the socket's own room.
            let opts = crate::adapter::BroadcastOptions {
                rooms: vec![Room::from(self.id)],
                ..Default::default()
            };
            self.ns.add_offset(&mut packet, &opts);
        }
        let packet = Packet {
            nsp: self.ns.name().to_owned(),
            kind: PacketKind::Event {
                data: packet.data,
                id: None,
                attachments: packet.attachments,
            },
        };
        self.send_packet(&packet, false)
    }

    /// Sends `event` expecting an acknowledgement within the server's default ack timeout.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
    ) -> Result<Payload, AckError> {
        let timeout = self.ns.config().ack_timeout;
        self.emit_with_ack_timeout(event, payload, timeout).await
    }

    /// Sends `event` expecting an acknowledgement within `timeout`.
    pub async fn emit_with_ack_timeout(
        &self,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<Payload, AckError> {
        let id = self.ns.next_ack_id();
        let packet = event_packet(self.ns.name(), event, payload.into(), Some(id))?;
        let (tx, rx) = oneshot::channel();
        self.register_ack(id, AckTarget::One(tx))?;
        if let Err(err) = self.send_packet(&packet, false) {
            self.take_ack(id);
            return Err(err.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                self.take_ack(id);
                self.ns.metrics().ack_timeouts.inc();
                Err(AckError::Timeout)
            }
        }
    }

    /// Joins `rooms`. Before the socket is connected (in a middleware) the rooms are noted,
    /// and it becomes their member as it connects; after it left, this does nothing.
    pub fn join(self: &Arc<Self>, rooms: impl IntoRooms) {
        let mut changed = false;
        {
            // Held while the room index changes, so that the two indexes always agree.
            let mut mine = self.rooms.lock();
            let Some(mine) = mine.as_mut() else { return };
            let listed = self.connected();
            for room in rooms.into_rooms() {
                if !mine.contains(&room) {
                    if listed {
                        self.ns.room_add(&room, self);
                    }
                    mine.insert(room);
                    changed = true;
                }
            }
        }
        if changed {
            self.keep_session();
        }
    }

    /// Leaves `rooms`.
    pub fn leave(&self, rooms: impl IntoRooms) {
        let mut changed = false;
        {
            let mut mine = self.rooms.lock();
            let Some(mine) = mine.as_mut() else { return };
            for room in rooms.into_rooms() {
                if mine.remove(&room) {
                    self.ns.room_remove(&room, &self.id);
                    changed = true;
                }
            }
        }
        if changed {
            self.keep_session();
        }
    }

    /// The rooms this socket is in, its own id included.
    pub fn rooms(&self) -> Vec<Room> {
        self.rooms
            .lock()
            .as_ref()
            .map(|mine| mine.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Broadcast to `rooms`, leaving this socket out.
    pub fn to(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.broadcast().to(rooms)
    }

    /// Same as [`Socket::to`].
    pub fn in_(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.to(rooms)
    }

    /// Broadcast leaving out sockets in `rooms` (and this socket).
    pub fn except(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.broadcast().except(rooms)
    }

    /// Broadcast to every socket of the namespace but this one.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.ns.clone()).except(Room::from(self.id))
    }

    /// Emits dropped if the transport cannot take them right now.
    pub fn volatile(self: &Arc<Self>) -> VolatileSocket {
        VolatileSocket(self.clone())
    }

    /// Leaves the namespace (the client gets DISCONNECT); with `close`, also closes the whole
    /// connection and every other namespace on it.
    pub fn disconnect(self: &Arc<Self>, close: bool) {
        if close {
            let sockets = self.conn.data.sockets();
            for socket in sockets {
                socket.leave_namespace(DisconnectReason::ServerNamespaceDisconnect, true);
            }
            self.conn
                .close(switchboard_engine::CloseReason::ForcedClose);
        } else {
            self.leave_namespace(DisconnectReason::ServerNamespaceDisconnect, true);
        }
    }

    /// Marks the socket connected and makes it a member of the rooms it joined so far (in a
    /// middleware) and of its own room.
    pub(crate) fn connect_now(self: &Arc<Self>) {
        {
            let mine = self.rooms.lock();
            self.connected.store(true, Ordering::Release);
            for room in mine.iter().flatten() {
                self.ns.room_add(room, self);
            }
        }
        self.join(Room::from(self.id));
    }

    /// Queues the packets a recovered socket missed (before the CONNECT reply, as Node
    /// writes them: the client holds them until it is connected), the reply, then
    /// everything emitted to the socket meanwhile, in order.
    pub(crate) fn flush_connect(&self, missed: Vec<switchboard_engine::Frame>, reply: Outgoing) {
        let mut buffered = self.buffered.lock();
        if missed.is_empty() {
            let _ = self.conn.send(reply);
        } else {
            // One queue item, however many packets: a replay never overflows the queue's
            // item count, and its size was checked against the byte cap.
            let count = missed.len() as u64;
            let mut frames = missed;
            match reply {
                Outgoing::One(f) => frames.push(f),
                Outgoing::Many(fs) => frames.extend(fs.iter().cloned()),
            }
            if self.conn.send(Outgoing::Many(frames.into())).is_ok() {
                self.ns.metrics().packets_sent.inc_by(count);
            }
        }
        for (item, volatile) in buffered.drain(..) {
            let _ = self.raw_send(item, volatile);
        }
        self.buffering.store(false, Ordering::Release);
    }

    fn session_state(&self, pid: Sid, disconnected_at: u64) -> crate::recovery::SessionState {
        crate::recovery::SessionState {
            sid: self.id.to_string(),
            pid: pid.to_string(),
            rooms: self.rooms().iter().map(|r| r.to_string()).collect(),
            data: self.data(),
            disconnected_at,
        }
    }

    /// Connection state recovery: from now on, keeps the adapter's snapshot of the session
    /// current (a first one now).
    pub(crate) fn start_keeping(&self) {
        if self.pid.is_some() {
            self.keeping.store(true, Ordering::Release);
            self.keep_session();
        }
    }

    fn keep_session(&self) {
        let Some(pid) = self.pid else { return };
        if !self.keeping.load(Ordering::Acquire) {
            return;
        }
        if let Some(adapter) = self.ns.adapter().filter(|a| a.keeps_live_sessions()) {
            adapter.keep_session(self.session_state(pid, 0));
        }
    }

    /// Connection state recovery: leaves the session behind when the connection was lost,
    /// and drops its snapshot otherwise.
    fn persist_session(&self, reason: DisconnectReason) {
        let Some(pid) = self.pid else { return };
        self.keeping.store(false, Ordering::Release);
        let Some(adapter) = self.ns.adapter() else {
            return;
        };
        if !crate::recovery::is_recoverable(reason) {
            adapter.forget_session(pid.as_str());
            return;
        }
        adapter.persist_session(self.session_state(pid, crate::recovery::now_ms()));
        self.ns.metrics().sessions_persisted.inc();
    }

    /// Leaves every room for good (a refused connection must not leave members behind).
    pub(crate) fn leave_all(&self) {
        let mut mine = self.rooms.lock();
        for room in mine.take().into_iter().flatten() {
            self.ns.room_remove(&room, &self.id);
        }
    }

    /// Removes the socket from its namespace and client; runs the disconnect handlers.
    pub(crate) fn leave_namespace(self: &Arc<Self>, reason: DisconnectReason, notify: bool) {
        if !self.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        if notify {
            let packet = Packet {
                nsp: self.ns.name().to_owned(),
                kind: PacketKind::Disconnect,
            };
            let _ = self.write(&packet, false);
        }
        let disconnecting: Vec<_> = self.disconnecting.read().clone();
        for h in disconnecting {
            h(self, reason);
        }
        self.persist_session(reason);
        self.leave_all();
        self.ns.remove_socket(&self.id);
        self.conn.data.remove(self.ns.name(), &self.id);
        {
            let mut acks = self.acks.lock();
            acks.clear();
        }
        let m = self.ns.metrics();
        m.sockets.dec();
        m.disconnects
            .get_or_create(&[("reason", reason.label())])
            .inc();
        let handlers: Vec<_> = self.disconnect.read().clone();
        for h in handlers {
            h(self, reason);
        }
        {
            let mut h = self.handlers.write();
            h.clear();
        }
        {
            let mut h = self.any_handlers.write();
            h.clear();
        }
        self.guards.write().clear();
        *self.fallback.write() = None;
    }

    pub(crate) fn dispatch(
        self: &Arc<Self>,
        mut data: Vec<Value>,
        id: Option<u64>,
        attachments: Vec<bytes::Bytes>,
    ) {
        let name = match data.first() {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return,
        };
        data.remove(0);
        let event = Event {
            name,
            payload: Payload {
                args: data,
                attachments,
            },
            ack: id.map(|id| Ack {
                socket: self.clone(),
                id,
            }),
        };
        self.ns.metrics().events_received.inc();
        // Most sockets have no guard: no copy (and no allocation) per event for them.
        let guards: Vec<_> = {
            let g = self.guards.read();
            if g.is_empty() {
                Vec::new()
            } else {
                g.clone()
            }
        };
        for guard in guards {
            if let Verdict::Refuse(answer) = guard(self, &event) {
                let mut event = event;
                event.ack(answer);
                return;
            }
        }
        let any: Vec<_> = self.any_handlers.read().clone();
        for h in any {
            h(self, &event);
        }
        let handler = self
            .handlers
            .read()
            .get(&event.name)
            .cloned()
            .or_else(|| self.fallback.read().clone());
        if let Some(h) = handler {
            h(self, event);
        }
    }

    pub(crate) fn on_ack(&self, id: u64, payload: Payload) {
        match self.take_ack(id) {
            Some(AckTarget::One(tx)) => {
                let _ = tx.send(payload);
            }
            Some(AckTarget::Many(tx, _)) => {
                let _ = tx.send(payload.into_first());
            }
            None => tracing::debug!(id, "ack with unknown id ignored"),
        }
    }

    fn take_ack(&self, id: u64) -> Option<AckTarget> {
        self.acks.lock().remove(&id)
    }

    pub(crate) fn register_ack(&self, id: u64, target: AckTarget) -> Result<(), AckError> {
        let mut acks = self.acks.lock();
        if acks.len() >= self.ns.config().max_pending_acks {
            // Broadcast acks have no owner to clean them: drop the expired ones first.
            let now = Instant::now();
            acks.retain(|_, t| match t {
                AckTarget::Many(tx, deadline) => *deadline > now && !tx.is_closed(),
                AckTarget::One(tx) => !tx.is_closed(),
            });
            if acks.len() >= self.ns.config().max_pending_acks {
                return Err(AckError::TooManyPending);
            }
        }
        acks.insert(id, target);
        Ok(())
    }

    /// Queues an already encoded item (shared by broadcasts).
    pub(crate) fn send_encoded(&self, item: Outgoing, volatile: bool) -> Result<(), EmitError> {
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        match self.enqueue(item, volatile) {
            Ok(()) => {
                self.ns.metrics().packets_sent.inc();
                Ok(())
            }
            Err(SendError::Dropped) => Ok(()),
            Err(SendError::Closed) => Err(EmitError::Disconnected),
            Err(SendError::SlowConsumer) => Err(EmitError::SlowConsumer),
        }
    }

    pub(crate) fn send_packet(&self, packet: &Packet, volatile: bool) -> Result<(), EmitError> {
        self.send_encoded(
            crate::client::encode(self.ns.config().parser, packet),
            volatile,
        )
    }

    fn write(&self, packet: &Packet, volatile: bool) -> Result<(), SendError> {
        self.enqueue(
            crate::client::encode(self.ns.config().parser, packet),
            volatile,
        )
    }

    /// The one path to the connection's queue: buffered until the CONNECT reply is out.
    fn enqueue(&self, item: Outgoing, volatile: bool) -> Result<(), SendError> {
        if self.buffering.load(Ordering::Acquire) {
            {
                let mut buffered = self.buffered.lock();
                if self.buffering.load(Ordering::Acquire) {
                    buffered.push((item, volatile));
                    return Ok(());
                }
            }
        }
        self.raw_send(item, volatile)
    }

    fn raw_send(&self, item: Outgoing, volatile: bool) -> Result<(), SendError> {
        if volatile {
            self.conn.send_volatile(item)
        } else {
            self.conn.send(item)
        }
    }

    pub(crate) fn info(&self) -> SocketInfo {
        SocketInfo {
            id: self.id.to_string(),
            rooms: self.rooms().iter().map(|r| r.to_string()).collect(),
            handshake: self.handshake.to_json(),
            data: {
                let mut data = self.data();
                self.ns.tag_data(&mut data);
                data
            },
        }
    }
}

impl crate::room::Member for SocketRef {
    fn sid(&self) -> &Sid {
        &self.id
    }
}

/// A socket whose emits are volatile.
#[derive(Debug, Clone)]
pub struct VolatileSocket(SocketRef);

impl VolatileSocket {
    /// Sends `event` if the transport can take it now; drops it otherwise.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let packet = event_packet(self.0.ns.name(), event, payload.into(), None)?;
        self.0.send_packet(&packet, true)
    }
}

/// Builds an EVENT packet, refusing reserved names.
pub(crate) fn event_packet(
    nsp: &str,
    event: &str,
    payload: Payload,
    id: Option<u64>,
) -> Result<Packet, EmitError> {
    let data = event_data(event, payload.args)?;
    Ok(Packet {
        nsp: nsp.to_owned(),
        kind: PacketKind::Event {
            data,
            id,
            attachments: payload.attachments,
        },
    })
}

/// `[event, ...args]`, refusing reserved names.
pub(crate) fn event_data(event: &str, args: Vec<Value>) -> Result<Vec<Value>, EmitError> {
    if is_reserved_event(event) {
        return Err(EmitError::ReservedEvent(event.to_owned()));
    }
    let mut data = Vec::with_capacity(args.len() + 1);
    data.push(Value::String(event.to_owned()));
    data.extend(args);
    Ok(data)
}

/// Builds the broadcast form of an event.
pub(crate) fn event_for_broadcast(event: &str, payload: Payload) -> Result<EventPacket, EmitError> {
    Ok(EventPacket {
        data: event_data(event, payload.args)?,
        attachments: payload.attachments,
    })
}
