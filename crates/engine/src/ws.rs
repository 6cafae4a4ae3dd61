//! The WebSocket transport: a reader task and a writer task per connection, and the upgrade
//! from long-polling (`2probe` / `3probe` / `5`).

use crate::admission::Permit;
use crate::engine::{Engine, Inner};
use crate::error::CloseReason;
use crate::handler::{Handler, Incoming};
use crate::http_util::{self, Body};
use crate::socket::{EioSocket, Frame, Outgoing, RequestInfo, TransportKind};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::EioPacket;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Most queued items written before one flush.
const BATCH: usize = 64;
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
        let config = WebSocketConfig::default()
            .read_buffer_size(c.ws_read_buffer)
            .write_buffer_size(16 * 1024)
            .max_write_buffer_size(c.max_payload.saturating_mul(2).max(1 << 20))
            .max_message_size(Some(c.max_payload))
            .max_frame_size(Some(c.max_payload));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        match (existing, fresh) {
            (None, None) => {}
            (None, Some((info, permit))) => {
                let socket = engine.open_session(TransportKind::Websocket, info, permit);
                let open = engine.open_packet(&socket).encode_text();
                if socket.send(Outgoing::One(Frame::text(open))).is_err() {
                    return;
                }
                engine.handler().on_open(&socket);
                let Some(rx) = socket.take_rx() else { return };
                run(engine.inner.clone(), ws, socket, rx).await;
            }
            (Some(socket), _) => upgrade(engine, ws, socket).await,
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

async fn close_ws(mut ws: Ws) {
    let _ = timeout(CLOSE_FLUSH, ws.close(None)).await;
}

fn text_of(msg: Option<Result<Message, WsError>>) -> Option<String> {
    match msg {
        Some(Ok(Message::Text(t))) => Some(t.as_str().to_owned()),
        _ => None,
    }
}

/// Polling → WebSocket: probe, switch on `5`, then serve the WebSocket.
async fn upgrade<H: Handler>(engine: Engine<H>, mut ws: Ws, socket: Arc<EioSocket<H::Data>>) {
    let inner = engine.inner.clone();
    let deadline = Instant::now() + inner.config.upgrade_timeout;
    // Already on WebSocket, closed, or another upgrade under way (possibly about to switch):
    // refuse at once rather than wait for a probe that has no future.
    if socket.transport() != TransportKind::Polling
        || socket.is_closed()
        || socket.upgrading.load(Ordering::Acquire)
    {
        return close_ws(ws).await;
    }
    let first = tokio::time::timeout_at(deadline, ws.next())
        .await
        .ok()
        .flatten();
    if text_of(first).as_deref() != Some("2probe") || socket.upgrading.swap(true, Ordering::AcqRel)
    {
        return close_ws(ws).await;
    }
    if ws.send(Message::text("3probe")).await.is_err() {
        socket.end_upgrade();
        return;
    }
    // Ends the pending poll (and any poll until the switch) with a noop.
    socket.upgrade_started.notify_waiters();
    let second = tokio::time::timeout_at(deadline, ws.next())
        .await
        .ok()
        .flatten();
    if text_of(second).as_deref() != Some("5") {
        socket.end_upgrade();
        return close_ws(ws).await;
    }
    // The client switched: polls from now on get 400, and a poll still waiting (one that
    // raced the `5`) is woken to answer 400 and give the queue back.
    socket.set_transport(TransportKind::Websocket);
    socket.upgrade_started.notify_waiters();
    let rx = loop {
        let returned = socket.rx_returned.notified();
        tokio::pin!(returned);
        returned.as_mut().enable();
        if let Some(rx) = socket.take_rx() {
            break rx;
        }
        tokio::select! {
            _ = returned => {}
            _ = socket.closed_token().cancelled() => return close_ws(ws).await,
            _ = tokio::time::sleep_until(deadline) => {
                socket.end_upgrade();
                return close_ws(ws).await;
            }
        }
    };
    socket.end_upgrade();
    inner.metrics.upgrades.inc();
    run(inner, ws, socket, rx).await;
}

/// Serves an established WebSocket session: spawns the writer, reads in this task.
async fn run<H: Handler>(
    inner: Arc<Inner<H>>,
    ws: Ws,
    socket: Arc<EioSocket<H::Data>>,
    rx: mpsc::Receiver<Outgoing>,
) {
    let (sink, stream) = ws.split();
    let write_timeout = inner.config.write_timeout;
    tokio::spawn(writer(sink, rx, socket.clone(), write_timeout));
    reader(&inner, stream, &socket).await;
}

async fn reader<H: Handler>(
    inner: &Inner<H>,
    mut stream: SplitStream<Ws>,
    socket: &Arc<EioSocket<H::Data>>,
) {
    let closed = socket.closed_token().clone();
    loop {
        let msg = tokio::select! {
            _ = closed.cancelled() => return,
            msg = stream.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(text))) => match EioPacket::decode_text(text.as_str()) {
                Ok(packet) => inner.handle_packet(socket, packet).await,
                Err(err) => inner.parse_error(socket, err.code()),
            },
            Some(Ok(Message::Binary(data))) => {
                socket.received(data.len());
                inner
                    .handler
                    .on_message(socket, Incoming::Binary(data))
                    .await;
            }
            Some(Ok(Message::Close(_)))
            | None
            | Some(Err(
                WsError::ConnectionClosed
                | WsError::AlreadyClosed
                | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            )) => socket.close(CloseReason::TransportClose),
            Some(Ok(_)) => {}
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                inner
                    .metrics
                    .payload_too_large
                    .get_or_create(&[("transport", "websocket")])
                    .inc();
                socket.close(CloseReason::MessageTooBig);
            }
            Some(Err(WsError::Protocol(_) | WsError::Utf8(_) | WsError::Capacity(_))) => {
                inner.parse_error(socket, "websocket_protocol");
            }
            Some(Err(_)) => socket.close(CloseReason::TransportError),
        }
        if socket.is_closed() {
            return;
        }
    }
}

fn to_message(frame: &Frame) -> Message {
    match frame {
        Frame::Text(t) => Message::Text(t.clone()),
        Frame::Binary(b) => Message::Binary(b.clone()),
    }
}

async fn feed<D>(
    sink: &mut SplitSink<Ws, Message>,
    socket: &EioSocket<D>,
    item: Outgoing,
) -> Result<(), WsError> {
    socket.dequeued(&item);
    for frame in item.frames() {
        sink.feed(to_message(frame)).await?;
    }
    Ok(())
}

/// Drains the session's queue into the socket, many frames per flush; every flush has a
/// deadline so a stalled peer cannot pin the task.
async fn writer<D>(
    mut sink: SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    socket: Arc<EioSocket<D>>,
    write_timeout: Duration,
) {
    let closed = socket.closed_token().clone();
    loop {
        let item = tokio::select! {
            biased;
            _ = closed.cancelled() => break,
            item = rx.recv() => item,
        };
        let Some(item) = item else { break };
        let batch = async {
            feed(&mut sink, &socket, item).await?;
            for _ in 1..BATCH {
                let Ok(item) = rx.try_recv() else { break };
                feed(&mut sink, &socket, item).await?;
            }
            sink.flush().await
        };
        match timeout(write_timeout, batch).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                socket.close(CloseReason::TransportError);
                break;
            }
        }
    }
    let reason = socket.close_reason().unwrap_or(CloseReason::TransportClose);
    let finish = async {
        if reason.server_initiated() {
            while let Ok(item) = rx.try_recv() {
                feed(&mut sink, &socket, item).await?;
            }
        }
        let frame = CloseFrame {
            code: CloseCode::from(reason.ws_close_code()),
            reason: reason.as_str().into(),
        };
        sink.send(Message::Close(Some(frame))).await
    };
    let _ = timeout(CLOSE_FLUSH, finish).await;
    while let Ok(item) = rx.try_recv() {
        socket.dequeued(&item);
    }
}
