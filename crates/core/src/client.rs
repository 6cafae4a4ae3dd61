//! One Engine.IO connection as Socket.IO sees it: the packet decoder, the namespaces joined,
//! and the dispatch of each packet. Implements the engine's [`Handler`].

use crate::error::DisconnectReason;
use crate::payload::Payload;
use crate::server::ServerInner;
use crate::socket::{Socket, SocketRef};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchboard_engine::{CloseReason, EioSocket, Frame, Handler, Incoming, Outgoing, Sid};
use switchboard_protocol::{msgpack, Decoded, Decoder, Packet, PacketKind, Parser};

/// The engine session of a client; its data is the [`Client`].
pub(crate) type Conn = Arc<EioSocket<Client>>;

/// Socket.IO state of one connection.
pub struct Client {
    decoder: Mutex<Decoder>,
    sockets: Mutex<HashMap<String, SocketRef>>,
    joined_once: AtomicBool,
    /// The connect-timeout timer, stopped as soon as a namespace is joined.
    connect_timer: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn sockets(&self) -> Vec<SocketRef> {
        self.sockets.lock().values().cloned().collect()
    }

    pub(crate) fn remove(&self, nsp: &str, id: &Sid) {
        {
            let mut s = self.sockets.lock();
            if s.get(nsp).is_some_and(|sock| sock.id() == *id) {
                s.remove(nsp);
            }
        }
    }

    fn get(&self, nsp: &str) -> Option<SocketRef> {
        self.sockets.lock().get(nsp).cloned()
    }
}

/// Encodes a packet once, with the server's parser, into frames every recipient can share.
pub(crate) fn encode(parser: Parser, packet: &Packet) -> Outgoing {
    if parser == Parser::Msgpack {
        return Outgoing::One(Frame::Binary(msgpack::encode(packet)));
    }
    let mut text = String::with_capacity(32);
    text.push('4');
    packet.encode_into(&mut text);
    let attachments = packet.attachments();
    if attachments.is_empty() {
        return Outgoing::One(Frame::text(text));
    }
    let mut frames = Vec::with_capacity(attachments.len() + 1);
    frames.push(Frame::text(text));
    frames.extend(attachments.iter().cloned().map(Frame::Binary));
    Outgoing::Many(frames.into())
}

/// Bridges the engine to the Socket.IO layer.
///
/// It owns the server state: the server lives as long as any clone of its engine is served.
pub struct SocketIoHandler {
    pub(crate) server: Arc<ServerInner>,
}

impl std::fmt::Debug for SocketIoHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoHandler").finish()
    }
}

impl Handler for SocketIoHandler {
    type Data = Client;

    fn new_data(&self) -> Client {
        let config = &self.server.shared.config;
        Client {
            decoder: Mutex::new(Decoder::for_parser(
                config.parser,
                config.max_attachments,
                config.engine.max_payload,
            )),
            sockets: Mutex::new(HashMap::new()),
            joined_once: AtomicBool::new(false),
            connect_timer: Mutex::new(None),
        }
    }

    fn on_open(&self, conn: &Conn) {
        let timeout = self.server.shared.config.connect_timeout;
        let session = conn.clone();
        let timer = tokio::spawn(async move {
            tokio::select! {
                _ = session.closed() => {}
                _ = tokio::time::sleep(timeout) => {
                    if !session.data.joined_once.load(Ordering::Acquire) {
                        session.close(CloseReason::ForcedClose);
                    }
                }
            }
        });
        let mut slot = conn.data.connect_timer.lock();
        if conn.data.joined_once.load(Ordering::Acquire) {
            timer.abort();
        } else {
            *slot = Some(timer.abort_handle());
        }
    }

    async fn on_message(&self, conn: &Conn, message: Incoming) {
        let server = &self.server;
        let decoded = {
            let mut d = conn.data.decoder.lock();
            match message {
                Incoming::Text(text) => d.decode_text(&text),
                Incoming::Binary(data) => d.decode_binary(data),
            }
        };
        match decoded {
            Ok(Decoded::Packet(packet)) => on_packet(server, conn, packet).await,
            Ok(Decoded::NeedAttachments) => {}
            Err(err) => refuse(server, conn, err.code()),
        }
    }

    fn on_close(&self, conn: &Conn, reason: CloseReason) {
        let reason = DisconnectReason::from(reason);
        for socket in conn.data.sockets() {
            socket.leave_namespace(reason, false);
        }
    }
}

/// A protocol violation: count it and close the whole connection, as Socket.IO does.
fn refuse(server: &ServerInner, conn: &Conn, kind: &'static str) {
    server
        .shared
        .metrics
        .parse_errors
        .get_or_create(&[("kind", kind)])
        .inc();
    conn.close(CloseReason::ParseError);
}

async fn on_packet(server: &Arc<ServerInner>, conn: &Conn, packet: Packet) {
    let Packet { nsp, kind } = packet;
    match kind {
        PacketKind::Connect(auth) => connect(server, conn, nsp, auth).await,
        PacketKind::Disconnect => match conn.data.get(&nsp) {
            Some(socket) => {
                socket.leave_namespace(DisconnectReason::ClientNamespaceDisconnect, false)
            }
            None => refuse(server, conn, "invalid_state"),
        },
        PacketKind::Event {
            data,
            id,
            attachments,
        } => match conn.data.get(&nsp) {
            Some(socket) => socket.dispatch(data, id, attachments),
            None => refuse(server, conn, "invalid_state"),
        },
        PacketKind::Ack {
            data,
            id,
            attachments,
        } => match conn.data.get(&nsp) {
            Some(socket) => socket.on_ack(
                id,
                Payload {
                    args: data,
                    attachments,
                },
            ),
            None => refuse(server, conn, "invalid_state"),
        },
        PacketKind::ConnectError(_) => refuse(server, conn, "invalid_state"),
    }
}

fn reply(server: &ServerInner, conn: &Conn, packet: &Packet) {
    let _ = conn.send(encode(server.shared.config.parser, packet));
}

async fn connect(server: &Arc<ServerInner>, conn: &Conn, nsp: String, auth: Option<Value>) {
    let started = std::time::Instant::now();
    let metrics = &server.shared.metrics;
    if conn.data.get(&nsp).is_some() {
        return refuse(server, conn, "invalid_state");
    }
    let Some(ns) = server.namespace_for(&nsp) else {
        metrics
            .connect_errors
            .get_or_create(&[("reason", "invalid_namespace")])
            .inc();
        return reply(
            server,
            conn,
            &Packet::connect_error(&nsp, "Invalid namespace", None),
        );
    };
    let auth = auth.unwrap_or_else(|| Value::Object(Default::default()));
    let recovery = server.shared.config.connection_state_recovery.as_ref();
    let restored = match recovery {
        Some(_) => restore(server, &ns, &auth).await,
        None => None,
    };
    let (restored, missed) = match restored {
        Some(r) => (Some(r.0), r.1),
        None => (None, Vec::new()),
    };
    let rooms = restored
        .as_ref()
        .map(|r| r.rooms.clone())
        .unwrap_or_default();
    let identity = restored.map(|r| (r.sid, r.pid, r.data));
    let socket = Socket::new(ns.clone(), conn.clone(), auth, identity);
    let skip = socket.recovered() && recovery.is_some_and(|r| r.skip_middlewares);
    let refused = match skip {
        true => Ok(()),
        false => ns.run_middlewares(&socket).await,
    };
    if let Err(err) = refused {
        socket.leave_all();
        metrics
            .connect_errors
            .get_or_create(&[("reason", "middleware")])
            .inc();
        return reply(
            server,
            conn,
            &Packet::connect_error(&nsp, &err.message, err.data),
        );
    }
    if conn.is_closed() {
        socket.leave_all();
        return;
    }
    {
        let mut sockets = conn.data.sockets.lock();
        sockets.insert(nsp.clone(), socket.clone());
    }
    conn.data.joined_once.store(true, Ordering::Release);
    // The timer task would otherwise live (with its session) until the timeout.
    let timer = conn.data.connect_timer.lock().take();
    if let Some(timer) = timer {
        timer.abort();
    }
    ns.insert_socket(socket.clone());
    socket.connect_now();
    socket.join(rooms);
    metrics.sockets.inc();
    metrics.connects.inc();
    // Packets of this connection are handled one at a time, so no event from the client can
    // be dispatched before the handlers below are installed; and until the CONNECT reply is
    // queued, whatever is sent to the socket (by the handlers or by broadcasts elsewhere)
    // waits behind it.
    ns.run_connection_handlers(&socket);
    let reply = match socket.pid() {
        Some(pid) => Packet {
            nsp: nsp.clone(),
            kind: PacketKind::Connect(Some(
                serde_json::json!({ "sid": socket.id().as_str(), "pid": pid.as_str() }),
            )),
        },
        None => Packet::connect_ok(&nsp, socket.id().as_str()),
    };
    socket.flush_connect(missed, encode(server.shared.config.parser, &reply));
    socket.start_keeping();
    metrics
        .connect_duration
        .observe(started.elapsed().as_secs_f64());
}

/// A session taken back: its id, private id, rooms and data, and the packets it missed.
struct Restored {
    sid: Sid,
    pid: Sid,
    rooms: Vec<crate::Room>,
    data: Value,
}

/// Connection state recovery: takes back the session named by `auth.pid` with the packets
/// after `auth.offset`, when the client sent both (as strings). Every attempt is counted by
/// result; a failed one gives the client a fresh session.
async fn restore(
    server: &ServerInner,
    ns: &crate::Namespace,
    auth: &Value,
) -> Option<(Restored, Vec<Frame>)> {
    let (Some(Value::String(pid)), Some(Value::String(offset))) =
        (auth.get("pid"), auth.get("offset"))
    else {
        return None;
    };
    let adapter = ns.adapter()?;
    // The replay goes out as one queue item ahead of the CONNECT reply; past half the
    // connection's queue cap, what follows it would make the client look slow.
    let max_replay = server.shared.config.engine.max_queue_bytes / 2;
    let parser = server.shared.config.parser;
    let result = adapter
        .restore_session(pid.clone(), offset.clone())
        .await
        .and_then(|r| {
            let ids = Sid::parse(&r.session.sid).zip(Sid::parse(&r.session.pid));
            let (sid, pid) = ids.ok_or(crate::RecoveryFailure::InvalidSession)?;
            let restored = Restored {
                sid,
                pid,
                rooms: r.session.rooms.into_iter().map(crate::Room::from).collect(),
                data: r.session.data,
            };
            let missed = replay_frames(parser, ns.name(), r.missed, max_replay)?;
            Ok((restored, missed))
        });
    let label = match &result {
        Ok(_) => "recovered",
        Err(e) => e.label(),
    };
    server
        .shared
        .metrics
        .recoveries
        .get_or_create(&[("result", label)])
        .inc();
    match result {
        Ok(r) => {
            // A snapshot of a socket this node still thinks connected (its connection died
            // unnoticed): the client has moved on, so the old one goes first.
            if let Some(old) = ns.socket(&r.0.sid) {
                old.disconnect(true);
            }
            tracing::debug!(nsp = ns.name(), sid = %r.0.sid, missed = r.1.len(), "connection state recovered");
            Some(r)
        }
        Err(e) => {
            tracing::debug!(nsp = ns.name(), reason = %e, "connection state not recovered; a fresh session");
            None
        }
    }
}

/// The missed packets encoded for `nsp`, frame after frame; refused past `max_bytes`.
fn replay_frames(
    parser: Parser,
    nsp: &str,
    missed: Vec<crate::EventPacket>,
    max_bytes: usize,
) -> Result<Vec<Frame>, crate::RecoveryFailure> {
    let mut frames = Vec::with_capacity(missed.len());
    let mut bytes = 0usize;
    for p in missed {
        let item = encode(
            parser,
            &Packet {
                nsp: nsp.to_owned(),
                kind: PacketKind::Event {
                    data: p.data,
                    id: None,
                    attachments: p.attachments,
                },
            },
        );
        bytes += item.len();
        if bytes > max_bytes {
            return Err(crate::RecoveryFailure::TooManyMissed);
        }
        match item {
            Outgoing::One(f) => frames.push(f),
            Outgoing::Many(fs) => frames.extend(fs.iter().cloned()),
        }
    }
    Ok(frames)
}
