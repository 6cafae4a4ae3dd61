//! The WebSocket transport: one task per connection, and the upgrade from long-polling
//! (`2probe` / `3probe` / `5`).
//!
//! The task reads the socket only when it is readable, into a temporary buffer on its stack,
//! and decodes frames with [`WsDecoder`], which keeps nothing between messages; queued frames
//! go out as `[header, shared payload]` pairs in one vectored write per batch, so no frame is
//! copied into a per-connection buffer. An idle connection therefore holds no read or write
//! buffer, whatever the size of the messages it carried before.

use crate::admission::Permit;
use crate::engine::{end_session, Engine, Inner};
use crate::error::CloseReason;
use crate::handler::{Handler, Incoming};
use crate::http_util::{self, Body};
use crate::queue::Receiver;
use crate::socket::{EioSocket, Frame, Outgoing, RequestInfo, TransportKind};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use switchboard_protocol::websocket::{
    close_payload, encode_header, OpCode, WsDecoder, WsError, WsMessage, MAX_SERVER_HEADER,
};
use switchboard_protocol::EioPacket;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{timeout, timeout_at, Instant, Sleep};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

type Io = TokioIo<hyper::upgrade::Upgraded>;

/// Most frames in one vectored write (two slices each).
const BATCH: usize = 64;

/// How long the polling transport must have been quiet (no POST in flight or answered) before
/// a probe is answered, and the longest a probe waits for that.
const PROBE_QUIET: Duration = Duration::from_millis(10);
const PROBE_QUIET_MAX: Duration = Duration::from_millis(500);
/// The temporary read buffer, on the stack of the poll that reads (see
/// [`crate::EngineConfig::ws_read_buffer`]).
const READ_STACK: usize = 16 * 1024;
/// How long a closing writer may spend flushing the last packets and the close frame.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

fn header_has(req_headers: &http::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    req_headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// True when the request asks for a WebSocket upgrade.
pub(crate) fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    header_has(req.headers(), header::UPGRADE, "websocket")
}

/// Why an upgrade request was refused before the 101.
#[derive(Debug)]
pub(crate) struct BadUpgrade;

/// True when `key` is what RFC 6455 §4.1 requires: the base64 of 16 bytes.
fn valid_key(key: &HeaderValue) -> bool {
    use base64::Engine as _;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key.as_bytes())
            .is_ok_and(|k| k.len() == 16)
}

/// Answers a WebSocket upgrade with 101 and serves the connection in a new task: the upgrade
/// of `existing`, or a new session admitted with `fresh`.
pub(crate) fn accept<H: Handler, B: Send + 'static>(
    engine: Engine<H>,
    mut req: Request<B>,
    existing: Option<Arc<EioSocket<H::Data>>>,
    fresh: Option<(RequestInfo, Permit)>,
) -> Result<Response<Body>, BadUpgrade> {
    let headers = req.headers();
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| valid_key(k))
        .ok_or(BadUpgrade)?;
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    if req.method() != http::Method::GET
        || !version_ok
        || !header_has(headers, header::CONNECTION, "upgrade")
    {
        return Err(BadUpgrade);
    }
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let c = engine.config();
        let ws = Conn::new(TokioIo::new(upgraded), c.max_payload, c.ws_read_buffer);
        match (existing, fresh) {
            (None, None) => {}
            (None, Some((info, permit))) => {
                let socket = engine.open_session(TransportKind::Websocket, info);
                let open = engine.open_packet(&socket).encode_text();
                let queued = socket.send(Outgoing::One(Frame::text(open))).is_ok();
                if queued {
                    engine.handler().on_open(&socket);
                }
                match socket.take_rx() {
                    // A task of its own, so what the connection keeps for its life is only
                    // the state of `run`, not that of this setup as well. It supervises the
                    // session too (pings, then the end), so the session needs no other task.
                    Some(rx) if queued => {
                        tokio::spawn(run(engine.inner.clone(), ws, socket, rx, Some(permit)));
                    }
                    _ => {
                        socket.close(CloseReason::TransportError);
                        end_session(&engine.inner, &socket).await;
                        drop(permit);
                    }
                }
            }
            // Rare: boxed, so the task of every connection is not the size of this path.
            (Some(socket), _) => Box::pin(upgrade(engine, ws, socket)).await,
        }
    });
    let mut res = http_util::empty(StatusCode::SWITCHING_PROTOCOLS);
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(res)
}

/// An outbound frame source: a queued item, or a control frame of the transport itself.
enum Out {
    Data(Outgoing),
    Control(OpCode, Bytes),
}

impl Out {
    /// Frame `i` of this item: its opcode and payload.
    fn frame(&self, i: usize) -> Option<(OpCode, &[u8])> {
        match self {
            Self::Data(item) => item.frames().get(i).map(|f| match f {
                Frame::Text(t) => (OpCode::Text, t.as_bytes()),
                Frame::Binary(b) => (OpCode::Binary, &b[..]),
            }),
            Self::Control(op, payload) => (i == 0).then_some((*op, &payload[..])),
        }
    }
}

fn header_len(payload: usize) -> usize {
    match payload {
        0..126 => 2,
        126..=0xffff => 4,
        _ => 10,
    }
}

/// Frames taken from the queue and not yet fully written, with the position reached.
#[derive(Default)]
struct Outbox {
    items: VecDeque<Out>,
    /// Frame of the first item being written.
    frame: usize,
    /// Bytes of that frame (header included) already written.
    offset: usize,
    /// Bytes were written since the last flush.
    unflushed: bool,
    /// Bytes were written since this was last cleared (resets the stall timer).
    progressed: bool,
}

impl Outbox {
    fn push(&mut self, out: Out) {
        self.items.push_back(out);
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Gives up every item not yet started (a client-initiated close needs no more data); the
    /// item being written is finished so the stream stays well framed.
    fn keep_started(&mut self) {
        let keep = usize::from(self.frame > 0 || self.offset > 0);
        self.items.truncate(keep);
    }

    /// Releases the queue's memory once it is empty after a burst.
    fn shrink_if_idle(&mut self) {
        if self.items.is_empty() && self.items.capacity() > 4 {
            self.items = VecDeque::new();
        }
    }

    /// Writes until everything is out (then flushes) or the socket would block.
    fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
    ) -> Poll<std::io::Result<()>> {
        while !self.items.is_empty() {
            let n = ready!(self.write_some(cx, io))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
            self.unflushed = true;
            self.progressed = true;
        }
        if self.unflushed {
            ready!(Pin::new(&mut *io).poll_flush(cx))?;
            self.unflushed = false;
        }
        self.shrink_if_idle();
        Poll::Ready(Ok(()))
    }

    /// The frames not yet fully written, from the current position, at most [`BATCH`].
    fn pending(&self) -> impl Iterator<Item = (OpCode, &[u8])> + '_ {
        let first = self.frame;
        self.items
            .iter()
            .enumerate()
            .flat_map(move |(n, item)| {
                let start = if n == 0 { first } else { 0 };
                (start..).map_while(move |i| item.frame(i))
            })
            .take(BATCH)
    }

    /// One vectored write of up to [`BATCH`] frames from the current position. The headers
    /// and slices live in inline vectors that are not initialised beyond what is pushed, so
    /// the usual write (one frame) costs one header and two slices, not a batch's arrays.
    fn write_some<W: AsyncWrite + Unpin>(
        &self,
        cx: &mut Context<'_>,
        io: &mut W,
    ) -> Poll<std::io::Result<usize>> {
        let heads: SmallVec<[([u8; MAX_SERVER_HEADER], usize); BATCH]> = self
            .pending()
            .map(|(op, payload)| {
                let mut head = [0u8; MAX_SERVER_HEADER];
                let len = encode_header(op, payload.len(), &mut head);
                (head, len)
            })
            .collect();
        let mut slices: SmallVec<[IoSlice<'_>; 2 * BATCH]> = SmallVec::new();
        let mut skip = self.offset;
        for ((head, len), (_, payload)) in heads.iter().zip(self.pending()) {
            let head = &head[..*len];
            if skip < head.len() {
                slices.push(IoSlice::new(&head[skip..]));
            }
            let rest = skip.saturating_sub(head.len());
            if rest < payload.len() {
                slices.push(IoSlice::new(&payload[rest..]));
            }
            skip = 0;
        }
        Pin::new(io).poll_write_vectored(cx, &slices)
    }

    /// Moves the position on by `n` written bytes, dropping finished items.
    fn advance(&mut self, mut n: usize) {
        while let Some(item) = self.items.front() {
            let Some((_, payload)) = item.frame(self.frame) else {
                self.items.pop_front();
                self.frame = 0;
                self.offset = 0;
                continue;
            };
            let rest = header_len(payload.len()) + payload.len() - self.offset;
            if n < rest {
                self.offset += n;
                return;
            }
            n -= rest;
            self.offset = 0;
            self.frame += 1;
            if item.frame(self.frame).is_none() {
                self.items.pop_front();
                self.frame = 0;
            }
            if n == 0 {
                return;
            }
        }
    }
}

/// Why reading stopped.
enum ReadEnd {
    /// The peer closed its side.
    Eof,
    /// The socket failed.
    Io,
    /// The bytes are not WebSocket frames we accept.
    Frames(WsError),
}

/// One WebSocket connection: the socket, the frame decoder and what is read or to be written.
struct Conn {
    io: Io,
    decoder: WsDecoder,
    /// Messages decoded and not yet handled (at most one read's worth).
    inbox: VecDeque<WsMessage>,
    out: Outbox,
    read_max: usize,
}

impl Conn {
    fn new(io: Io, max_payload: usize, read_buffer: usize) -> Self {
        Self {
            io,
            decoder: WsDecoder::new(max_payload),
            inbox: VecDeque::new(),
            out: Outbox::default(),
            read_max: read_buffer.clamp(256, READ_STACK),
        }
    }

    /// Reads what the socket has into a buffer that lives only during this call and decodes
    /// it; complete messages go to the inbox.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ReadEnd>> {
        // Not zeroed: this runs on every wake-up of the connection (each delivery), most of
        // which find nothing to read, and zeroing 16 KiB each time showed in the profile.
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); READ_STACK];
        let mut rb = ReadBuf::uninit(&mut buf[..self.read_max]);
        if ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb)).is_err() {
            return Poll::Ready(Err(ReadEnd::Io));
        }
        let mut data = rb.filled();
        if data.is_empty() {
            return Poll::Ready(Err(ReadEnd::Eof));
        }
        while !data.is_empty() {
            match self.decoder.decode(&mut data) {
                Ok(Some(msg)) => self.inbox.push_back(msg),
                Ok(None) => break,
                Err(err) => return Poll::Ready(Err(ReadEnd::Frames(err))),
            }
        }
        if self.inbox.is_empty() && self.inbox.capacity() > 4 {
            self.inbox = VecDeque::new();
        }
        Poll::Ready(Ok(()))
    }

    /// The next data message (pings are answered on the next write); `None` when the
    /// connection ends or sends something that is not a frame.
    async fn next_message(&mut self) -> Option<WsMessage> {
        loop {
            while let Some(msg) = self.inbox.pop_front() {
                match msg {
                    WsMessage::Ping(p) => self.out.push(Out::Control(OpCode::Pong, p)),
                    WsMessage::Pong => {}
                    other => return Some(other),
                }
            }
            if poll_fn(|cx| self.poll_read(cx)).await.is_err() {
                return None;
            }
        }
    }

    /// Writes everything in the outbox.
    async fn write_all(&mut self) -> std::io::Result<()> {
        let Self { io, out, .. } = self;
        poll_fn(|cx| out.poll_write(cx, io)).await
    }

    /// Sends a close frame (and whatever is in the outbox before it), then shuts the socket.
    async fn close(mut self, code: u16, reason: &str) {
        let finish = async {
            self.out.push(Out::Control(
                OpCode::Close,
                Bytes::from(close_payload(code, reason)),
            ));
            self.write_all().await?;
            poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await
        };
        let _ = timeout(CLOSE_FLUSH, finish).await;
    }
}

fn is_text(msg: Option<WsMessage>, want: &str) -> bool {
    matches!(msg, Some(WsMessage::Text(t)) if t == want)
}

/// Polling → WebSocket: probe, switch on `5`, then serve the WebSocket.
async fn upgrade<H: Handler>(engine: Engine<H>, mut ws: Conn, socket: Arc<EioSocket<H::Data>>) {
    let inner = engine.inner.clone();
    let deadline = Instant::now() + inner.config.upgrade_timeout;
    // Already on WebSocket, closed, or another upgrade under way (possibly about to switch):
    // refuse at once rather than wait for a probe that has no future.
    if socket.transport() != TransportKind::Polling
        || socket.is_closed()
        || socket.upgrading.load(Ordering::Acquire)
    {
        return ws.close(1000, "").await;
    }
    let first = timeout_at(deadline, ws.next_message()).await.ok().flatten();
    if !is_text(first, "2probe") || socket.upgrading.swap(true, Ordering::AcqRel) {
        return ws.close(1000, "").await;
    }
    // The client holds what it emits while a POST of its is in flight, and from the moment it
    // reads `3probe` until its polling ends: a `3probe` read between a POST's start and its
    // answer keeps those packets back until its poll ends (UPGRADE_CHECK in polling.rs). So
    // the probe is answered once the polling transport has been quiet for PROBE_QUIET, or at
    // PROBE_QUIET_MAX at the latest.
    let answer_by = (Instant::now() + PROBE_QUIET_MAX).min(deadline);
    while let Some(wait) = socket.polling_quiet_in(PROBE_QUIET) {
        let now = Instant::now();
        if now >= answer_by || socket.is_closed() {
            break;
        }
        tokio::time::sleep_until((now + wait).min(answer_by)).await;
    }
    ws.out
        .push(Out::Data(Outgoing::One(Frame::text("3probe".to_owned()))));
    if !matches!(timeout_at(deadline, ws.write_all()).await, Ok(Ok(()))) {
        socket.end_upgrade();
        return;
    }
    // A waiting poll (and any poll until the switch) now ends with a noop when nothing comes
    // within the upgrade check.
    socket.poll_wake.notify_waiters();
    let second = timeout_at(deadline, ws.next_message()).await.ok().flatten();
    if !is_text(second, "5") {
        socket.end_upgrade();
        return ws.close(1000, "").await;
    }
    // The client switched: polls from now on get 400, and a poll still waiting (one that
    // raced the `5`) is woken to answer 400 and give the queue back.
    socket.set_transport(TransportKind::Websocket);
    socket.poll_wake.notify_waiters();
    let rx = loop {
        let returned = socket.rx_returned.notified();
        tokio::pin!(returned);
        returned.as_mut().enable();
        if let Some(rx) = socket.take_rx() {
            break rx;
        }
        tokio::select! {
            _ = returned => {}
            _ = socket.closed() => return ws.close(1000, "").await,
            _ = tokio::time::sleep_until(deadline) => {
                socket.end_upgrade();
                return ws.close(1000, "").await;
            }
        }
    };
    socket.end_upgrade();
    inner.metrics.upgrades.inc();
    // The session's supervisor (started with its polling handshake) keeps its heartbeat.
    run(inner, ws, socket, rx, None).await;
}

/// A write stall timer, allocated only while a write waits on the socket.
type Stall = Option<Pin<Box<tokio::time::Sleep>>>;

type Handling<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Starts handling one message from the client; a Socket.IO message becomes a future the
/// connection polls (while it still writes) before it reads on.
fn dispatch<'a, H: Handler>(
    inner: &'a Inner<H>,
    socket: &'a Arc<EioSocket<H::Data>>,
    out: &mut Outbox,
    msg: WsMessage,
) -> Option<Handling<'a>> {
    match msg {
        WsMessage::Text(text) => match EioPacket::decode_text(&text) {
            Ok(packet) => Some(Box::pin(inner.handle_packet(socket, packet))),
            Err(err) => {
                inner.parse_error(socket, err.code());
                None
            }
        },
        WsMessage::Binary(data) => {
            socket.received(data.len());
            Some(Box::pin(
                inner.handler.on_message(socket, Incoming::Binary(data)),
            ))
        }
        WsMessage::Ping(payload) => {
            out.push(Out::Control(OpCode::Pong, payload));
            None
        }
        WsMessage::Pong => None,
        WsMessage::Close(_) => {
            socket.close(CloseReason::TransportClose);
            None
        }
    }
}

/// What woke the connection.
enum Step {
    /// Something progressed; look again.
    Again,
    /// The session closed.
    Closed,
    /// The connection ended or failed; close the session with this reason.
    Ended(CloseReason),
    /// The client sent bytes that are not acceptable frames.
    BadFrames(WsError),
}

/// The heartbeat of a session its connection task supervises: sends the ping when it is due,
/// and closes the session when the pong is late. The timer is set to the session's own
/// absolute instants (see [`EioSocket::pong_deadline`]), so a late wake-up never adds up; a
/// pong the task read before it looked at the timer has already counted.
fn poll_heartbeat<D>(
    socket: &EioSocket<D>,
    mut timer: Pin<&mut Sleep>,
    cx: &mut Context<'_>,
) -> Poll<Step> {
    loop {
        let awaiting = socket.awaiting_pong.load(Ordering::Acquire);
        let due = if awaiting {
            socket.pong_deadline()
        } else {
            socket.next_ping()
        };
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if awaiting {
            socket.close(CloseReason::PingTimeout);
            return Poll::Ready(Step::Closed);
        }
        socket.ping_going_out();
        tracing::trace!(
            age_ms = socket.age().as_millis() as u64,
            late_ms = due.elapsed().as_millis() as u64,
            transport = "websocket",
            "ping"
        );
        socket.awaiting_pong.store(true, Ordering::Release);
        // Queued like any packet: the queue wakes this task to write it.
        if socket
            .send(Outgoing::One(Frame::text("2".to_owned())))
            .is_err()
        {
            return Poll::Ready(Step::Closed);
        }
    }
}

/// Serves an established WebSocket session until it closes: handles what the client sends,
/// one message at a time, and writes what is queued, both in this one task. With the
/// session's admission `permit`, the task also supervises the session: it sends the pings and
/// ends the session when it closes (a session that opened on WebSocket has no other task).
async fn run<H: Handler>(
    inner: Arc<Inner<H>>,
    mut ws: Conn,
    socket: Arc<EioSocket<H::Data>>,
    mut rx: Receiver,
    permit: Option<Permit>,
) {
    let write_timeout = inner.config.write_timeout;
    let supervising = permit.is_some();
    // Only polled while supervising (an unpolled timer is not registered anywhere).
    let heartbeat = tokio::time::sleep_until(socket.next_ping());
    tokio::pin!(heartbeat);
    let cancelled = socket.closed();
    tokio::pin!(cancelled);
    // Armed while written bytes wait on the socket: a peer that takes nothing for
    // `write_timeout` is a failed transport.
    let mut stall: Stall = None;
    let mut handling: Option<Handling<'_>> = None;
    loop {
        while handling.is_none() && !socket.is_closed() {
            let Some(msg) = ws.inbox.pop_front() else {
                break;
            };
            handling = dispatch(&inner, &socket, &mut ws.out, msg);
        }
        if socket.is_closed() {
            break;
        }
        let step = poll_fn(|cx| {
            if let Some(h) = handling.as_mut() {
                if h.as_mut().poll(cx).is_ready() {
                    handling = None;
                    return Poll::Ready(Step::Again);
                }
            }
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Step::Closed);
            }
            // Take what is queued (up to a batch) and write it in as few calls as the socket
            // allows; a few rounds at most before yielding to other connections.
            let mut rounds = 0;
            loop {
                if rounds == 4 {
                    // More may be queued, and nothing registered a wake-up for it: come back
                    // after the others had their turn.
                    cx.waker().wake_by_ref();
                    break;
                }
                rounds += 1;
                while ws.out.items.len() < BATCH {
                    match rx.poll_recv(cx) {
                        Poll::Ready(Some(item)) => {
                            socket.dequeued(&item);
                            ws.out.push(Out::Data(item));
                        }
                        _ => break,
                    }
                }
                if ws.out.is_empty() && !ws.out.unflushed {
                    stall = None;
                    break;
                }
                match ws.out.poll_write(cx, &mut ws.io) {
                    Poll::Ready(Ok(())) => stall = None,
                    Poll::Ready(Err(_)) => {
                        return Poll::Ready(Step::Ended(CloseReason::TransportError))
                    }
                    Poll::Pending => {
                        let deadline = Instant::now() + write_timeout;
                        let timer = stall
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                        if std::mem::take(&mut ws.out.progressed) {
                            timer.as_mut().reset(deadline);
                        }
                        if timer.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Step::Ended(CloseReason::TransportError));
                        }
                        break;
                    }
                }
            }
            if handling.is_none() && ws.inbox.is_empty() {
                let read = match ws.poll_read(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Ok(())) => Poll::Ready(Step::Again),
                    Poll::Ready(Err(ReadEnd::Eof)) => {
                        Poll::Ready(Step::Ended(CloseReason::TransportClose))
                    }
                    Poll::Ready(Err(ReadEnd::Io)) => {
                        Poll::Ready(Step::Ended(CloseReason::TransportError))
                    }
                    Poll::Ready(Err(ReadEnd::Frames(err))) => Poll::Ready(Step::BadFrames(err)),
                };
                if let Poll::Ready(end) = read {
                    return Poll::Ready(end);
                }
            }
            if supervising {
                return poll_heartbeat(&socket, heartbeat.as_mut(), cx);
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Again => {}
            Step::Closed => break,
            Step::Ended(reason) => {
                socket.close(reason);
                break;
            }
            Step::BadFrames(WsError::TooBig { .. }) => {
                inner
                    .metrics
                    .payload_too_large
                    .get_or_create(&[("transport", "websocket")])
                    .inc();
                socket.close(CloseReason::MessageTooBig);
                break;
            }
            Step::BadFrames(_) => {
                inner.parse_error(&socket, "websocket_protocol");
                break;
            }
        }
    }
    drop(stall);
    // Once per connection, and boxed so the connection's task does not carry its size.
    Box::pin(async {
        if let Some(permit) = permit {
            end_session(&inner, &socket).await;
            drop(permit);
        }
        finish(ws, &socket, rx, handling).await;
    })
    .await;
}

/// The end of a connection: the last packets when the server closed it, the close frame, and
/// the end of a message still being handled.
async fn finish<D>(
    mut ws: Conn,
    socket: &EioSocket<D>,
    mut rx: Receiver,
    handling: Option<Handling<'_>>,
) {
    let reason = socket.close_reason().unwrap_or(CloseReason::TransportClose);
    if reason.server_initiated() {
        while let Ok(item) = rx.try_recv() {
            socket.dequeued(&item);
            ws.out.push(Out::Data(item));
        }
    } else {
        ws.out.keep_started();
    }
    ws.close(reason.ws_close_code(), reason.as_str()).await;
    while let Ok(item) = rx.try_recv() {
        socket.dequeued(&item);
    }
    if let Some(h) = handling {
        h.await;
    }
}
