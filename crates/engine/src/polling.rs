//! The HTTP long-polling transport: GET waits for packets, POST delivers them.

use crate::engine::{BoxError, Engine, Inner};
use crate::error::{CloseReason, HttpError};
use crate::handler::Handler;
use crate::http_util::{self, Body};
use crate::socket::{EioSocket, Frame, Outgoing, TransportKind};
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use switchboard_protocol::engine::{decode_payload, encode_binary_record, SEPARATOR};

/// How long a poll waits during an upgrade, with nothing queued, before it ends with a noop so
/// that the client, which pauses polling once it reads `3probe`, can send its `5`. Node's
/// upgrade check writes that noop every 100 ms from the probe.
const UPGRADE_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Holds the queue's receiving end for one GET. If the GET future is dropped before it answers
/// (the client hung up), the session closes: nobody would read what it took.
struct PollGuard<'a, D> {
    socket: &'a EioSocket<D>,
    rx: Option<crate::queue::Receiver>,
    answered: bool,
}

impl<D> Drop for PollGuard<'_, D> {
    fn drop(&mut self) {
        self.socket.get_pending.store(false, Ordering::Release);
        if let Some(rx) = self.rx.take() {
            self.socket.return_rx(rx);
        }
        if !self.answered {
            self.socket.close(CloseReason::TransportClose);
        }
    }
}

fn payload_response(body: String) -> Response<Body> {
    let mut res = http_util::text(StatusCode::OK, "text/plain; charset=UTF-8", body);
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    res
}

fn append(out: &mut String, item: &Outgoing) {
    for frame in item.frames() {
        if !out.is_empty() {
            out.push(SEPARATOR);
        }
        match frame {
            Frame::Text(t) => out.push_str(t.as_str()),
            Frame::Binary(b) => encode_binary_record(b, out),
        }
    }
}

/// A GET: answers with every queued packet, or waits for one.
pub(crate) async fn get<H: Handler>(
    inner: &Inner<H>,
    socket: Arc<EioSocket<H::Data>>,
) -> Result<Response<Body>, HttpError> {
    if socket.transport() != TransportKind::Polling {
        // The client switched to WebSocket since the request was routed.
        return Err(HttpError::BadRequest);
    }
    let Some(rx) = socket.take_rx() else {
        // Overlapping GETs: the protocol closes the session; the first GET gets `1`.
        socket.close(CloseReason::TransportError);
        return Err(HttpError::BadRequest);
    };
    socket.get_pending.store(true, Ordering::Release);
    let mut guard = PollGuard {
        socket: &socket,
        rx: Some(rx),
        answered: false,
    };
    let mut body = String::new();
    // During an upgrade (from the probe on) a poll carries what is queued (the client may still
    // be POSTing and waiting for answers) and otherwise ends with a noop after UPGRADE_CHECK.
    let check = tokio::time::sleep(UPGRADE_CHECK);
    tokio::pin!(check);
    let mut checking = false;
    let first = loop {
        let wake = socket.poll_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        if socket.transport() != TransportKind::Polling {
            // The `5` came: this poll gives the queue back to the WebSocket.
            guard.answered = true;
            return Err(HttpError::BadRequest);
        }
        if !checking && socket.upgrading.load(Ordering::Acquire) {
            checking = true;
            check
                .as_mut()
                .reset(tokio::time::Instant::now() + UPGRADE_CHECK);
        }
        let Some(rx) = guard.rx.as_mut() else {
            return Err(HttpError::BadRequest);
        };
        tokio::select! {
            biased;
            _ = socket.closed() => break None,
            _ = &mut wake => continue,
            item = rx.recv() => break item,
            _ = &mut check, if checking => {
                guard.answered = true;
                if socket.transport() != TransportKind::Polling {
                    return Err(HttpError::BadRequest);
                }
                return Ok(payload_response("6".into()));
            }
        }
    };
    let limit = inner.config.max_payload;
    if let Some(rx) = guard.rx.as_mut() {
        if let Some(item) = first {
            socket.dequeued(&item);
            append(&mut body, &item);
        }
        while body.len() < limit || socket.is_closed() {
            let Ok(item) = rx.try_recv() else { break };
            socket.dequeued(&item);
            append(&mut body, &item);
        }
    }
    if let Some(reason) = socket.close_reason() {
        if reason == CloseReason::TransportClose {
            body = "6".into();
        } else {
            if !body.is_empty() {
                body.push(SEPARATOR);
            }
            body.push('1');
        }
        socket.drained.notify_one();
        // This was the session's last answer: the next request for it gets 400 at once.
        inner.sessions.remove(&socket.sid());
    }
    guard.answered = true;
    drop(guard);
    Ok(payload_response(body))
}

/// Clears the in-flight flag when a POST ends, however it ends.
struct PostGuard<'a, D>(&'a EioSocket<D>);

impl<D> Drop for PostGuard<'_, D> {
    fn drop(&mut self) {
        self.0.post_ended();
        self.0.post_in_flight.store(false, Ordering::Release);
    }
}

/// A POST: decodes the body and hands each packet to the session, in order.
pub(crate) async fn post<H, B>(
    engine: &Engine<H>,
    socket: Arc<EioSocket<H::Data>>,
    req: Request<B>,
) -> Result<Response<Body>, HttpError>
where
    H: Handler,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let inner = &engine.inner;
    if socket.post_in_flight.swap(true, Ordering::AcqRel) {
        socket.close(CloseReason::TransportError);
        return Err(HttpError::BadRequest);
    }
    let _guard = PostGuard(&socket);
    let binary_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    if binary_body {
        // EIO=4 never sends binary HTTP bodies.
        inner.parse_error(&socket, "binary_body");
        return Err(HttpError::BadRequest);
    }
    let limit = inner.config.max_payload;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Ok(too_large(inner));
    }
    let capacity = declared.map_or(0, |len| len as usize);
    let read = read_body(req.into_body(), capacity, limit);
    let bytes = match tokio::time::timeout(inner.config.post_body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::TooLarge)) => return Ok(too_large(inner)),
        Ok(Err(BodyError::Aborted)) => {
            // The client went away mid-body.
            socket.close(CloseReason::TransportError);
            return Err(HttpError::BadRequest);
        }
        Err(_) => {
            // A body trickled in slower than the deadline: the session cannot be trusted
            // with a partial batch of packets.
            socket.close(CloseReason::TransportError);
            return Err(HttpError::BodyTimeout);
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        inner.parse_error(&socket, "invalid_utf8");
        return Err(HttpError::BadRequest);
    };
    let packets = match decode_payload(text, inner.config.max_packets_per_payload) {
        Ok(packets) => packets,
        Err(err) => {
            inner.parse_error(&socket, err.code());
            return Err(HttpError::BadRequest);
        }
    };
    for packet in packets {
        if socket.is_closed() {
            break;
        }
        inner.handle_packet(&socket, packet).await;
    }
    Ok(http_util::text(StatusCode::OK, "text/html", "ok"))
}

enum BodyError {
    TooLarge,
    Aborted,
}

/// Reads a body into one buffer sized from its declared length (at most `limit`), so a body
/// sent in many tiny pieces costs its own size, not one allocation per piece.
async fn read_body<B>(body: B, capacity: usize, limit: usize) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut buf = bytes::BytesMut::with_capacity(capacity.min(limit));
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(BodyError::Aborted);
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn too_large<H: Handler>(inner: &Inner<H>) -> Response<Body> {
    inner
        .metrics
        .payload_too_large
        .get_or_create(&[("transport", "polling")])
        .inc();
    http_util::empty(StatusCode::PAYLOAD_TOO_LARGE)
}
