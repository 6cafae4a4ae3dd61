//! Shared fixture for the Engine.IO v4 / Socket.IO v5 conformance tests.
//!
//! * [`Fx`] targets either an in-process conformance server (the `conformance` example's
//!   `server::start`, bound to `127.0.0.1:0`) or, when `SWITCHBOARD_CONFORMANCE_URL` is set
//!   (e.g. `http://127.0.0.1:3000`), an already running external server such as the Node.js
//!   reference implementation.
//! * A tiny hand-rolled HTTP/1.1 client (one request per connection, `Connection: close`) gives
//!   precise control over pending / aborted / concurrent long-polling requests.
//! * [`Ws`] wraps a tokio-tungstenite client with timeouts.
//! * [`cases`] holds the Engine.IO-level cases that both suites run (the Engine.IO suite against
//!   `/engine.io/`, the Socket.IO suite against `/socket.io/`).
//!
//! Expected messages are always awaited with a timeout, never slept for. Sleeps only appear where
//! the case is about time passing (ping timeout, aborted request, letting a request get parked).
//! Tests use a multi-thread runtime so the in-process server runs as it would in production.
//!
//! Validating the tests against the Node.js reference (outside the repo):
//! `npm install engine.io@6 socket.io@4`, run the script below, then
//! `SWITCHBOARD_CONFORMANCE_URL=http://127.0.0.1:3000 cargo test -p switchboard --test conformance_engine --test conformance_socketio`.
//!
//! ```js
//! const http = require("http"), engine = require("engine.io"), { Server } = require("socket.io");
//! const httpServer = http.createServer();
//! const common = { pingInterval: 300, pingTimeout: 200, maxHttpBufferSize: 1e6,
//!                  cors: { origin: "*" }, destroyUpgrade: false };
//! engine.attach(httpServer, { ...common, path: "/engine.io/" })
//!   .on("connection", (s) => s.on("message", (d) => s.send(d)));
//! const io = new Server(httpServer, { ...common, path: "/socket.io/", connectTimeout: 1000 });
//! io.on("connection", (s) => {
//!   s.emit("auth", s.handshake.auth);
//!   s.on("message", (...a) => s.emit("message-back", ...a));
//!   s.on("message-with-ack", (...a) => { const cb = a.pop(); cb(...a); });
//! });
//! io.of("/custom").on("connection", (s) => s.emit("auth", s.handshake.auth));
//! httpServer.listen(3000, "127.0.0.1");
//! ```

#![allow(dead_code)]

// Only `Fx::new` (in-process mode) depends on this file.
#[path = "../../examples/conformance/server.rs"]
mod server;

use std::io;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Environment variable selecting an external server instead of the in-process one.
pub const URL_ENV: &str = "SWITCHBOARD_CONFORMANCE_URL";

/// How long an expected message / response may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Server configuration both suites rely on (§6.2).
pub const PING_INTERVAL: u64 = 300;
pub const PING_TIMEOUT: u64 = 200;
pub const MAX_PAYLOAD: u64 = 1_000_000;

/// The record separator used by HTTP long-polling payloads.
pub const SEP: char = '\u{1e}';

/// Which server path (and which application behaviour) a case runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Engine.IO echo server at `/engine.io/`.
    Engine,
    /// Socket.IO server at `/socket.io/`.
    SocketIo,
}

impl Flavor {
    pub fn path(self) -> &'static str {
        match self {
            Flavor::Engine => "/engine.io/",
            Flavor::SocketIo => "/socket.io/",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

/// One server under test plus the path of the suite.
pub struct Fx {
    /// `host:port`
    pub host: String,
    pub flavor: Flavor,
}

impl Fx {
    /// Starts a fresh in-process server, or targets `$SWITCHBOARD_CONFORMANCE_URL`.
    pub async fn new(flavor: Flavor) -> Fx {
        let host = match std::env::var(URL_ENV) {
            Ok(url) if !url.trim().is_empty() => host_of(&url),
            _ => {
                let addr = "127.0.0.1:0".parse().expect("valid socket address");
                let bound = server::start(addr)
                    .await
                    .expect("failed to start the in-process conformance server");
                bound.to_string()
            }
        };
        Fx { host, flavor }
    }

    /// `<path>?<query>`
    pub fn target(&self, query: &str) -> String {
        format!("{}?{}", self.flavor.path(), query)
    }

    /// Starts a request and returns as soon as it has been written.
    pub async fn start_request(
        &self,
        method: &str,
        query: &str,
        body: Option<&[u8]>,
    ) -> io::Result<PendingRequest> {
        PendingRequest::send(&self.host, method, &self.target(query), body).await
    }

    /// Full request/response; I/O errors (reset, early close) are returned, a timeout panics.
    pub async fn try_request(
        &self,
        method: &str,
        query: &str,
        body: Option<&[u8]>,
    ) -> io::Result<HttpResponse> {
        let pending = self.start_request(method, query, body).await?;
        pending.response().await
    }

    /// Full request/response that must succeed at the HTTP level (any status).
    pub async fn request(&self, method: &str, query: &str, body: Option<&[u8]>) -> HttpResponse {
        match self.try_request(method, query, body).await {
            Ok(r) => r,
            Err(e) => panic!("{method} {} failed: {e}", self.target(query)),
        }
    }

    pub async fn get(&self, query: &str) -> HttpResponse {
        self.request("GET", query, None).await
    }

    pub async fn post(&self, query: &str, body: &str) -> HttpResponse {
        self.request("POST", query, Some(body.as_bytes())).await
    }

    /// `GET ?EIO=4&transport=polling&sid=<sid>`
    pub async fn poll(&self, sid: &str) -> HttpResponse {
        self.get(&sid_query(sid)).await
    }

    /// `POST ?EIO=4&transport=polling&sid=<sid>` that must be answered `200 ok`.
    pub async fn send_payload(&self, sid: &str, payload: &str) {
        let r = self.post(&sid_query(sid), payload).await;
        assert_eq!(r.status, 200, "POST {payload:?}: unexpected response {r:?}");
        assert_eq!(r.text(), "ok", "POST {payload:?}: unexpected body");
    }

    /// Polling handshake; asserts the open packet and returns the sid.
    pub async fn polling_handshake(&self) -> String {
        let r = self.get("EIO=4&transport=polling").await;
        assert_eq!(r.status, 200, "handshake: unexpected response {r:?}");
        assert_open_packet(&r.text(), &["websocket"])
    }

    /// Opens a WebSocket with the given query on the suite path.
    pub async fn try_ws(&self, query: &str) -> Result<Ws, tungstenite::Error> {
        let url = format!("ws://{}{}", self.host, self.target(query));
        match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url.as_str())).await {
            Ok(Ok((inner, _resp))) => Ok(Ws { inner }),
            Ok(Err(e)) => Err(e),
            Err(_) => panic!("WebSocket connect to {url} timed out"),
        }
    }

    pub async fn ws(&self, query: &str) -> Ws {
        match self.try_ws(query).await {
            Ok(ws) => ws,
            Err(e) => panic!("WebSocket connect ({query}) failed: {e}"),
        }
    }

    /// WebSocket-only handshake; asserts the open packet (`"upgrades":[]`), returns the socket and sid.
    pub async fn ws_handshake(&self) -> (Ws, String) {
        let mut ws = self.ws("EIO=4&transport=websocket").await;
        let open = ws.recv_text().await;
        let sid = assert_open_packet(&open, &[]);
        (ws, sid)
    }

    /// Polling handshake, then the probe/upgrade exchange over a new WebSocket (`2probe` →
    /// `3probe`, `5`). Returns the upgraded socket and the sid.
    pub async fn upgraded_session(&self) -> (Ws, String) {
        let sid = self.polling_handshake().await;
        let mut ws = self.ws(&ws_sid_query(&sid)).await;
        ws.send_text("2probe").await;
        assert_eq!(ws.recv_text().await, "3probe");
        ws.send_text("5").await;
        (ws, sid)
    }

    /// A WebSocket request with this query must not yield a usable session: either the upgrade
    /// is refused, or the socket is closed without ever delivering an open packet.
    pub async fn assert_ws_refused(&self, query: &str) {
        match self.try_ws(query).await {
            Err(_) => {}
            Ok(mut ws) => {
                let frames = ws.expect_closed(false).await;
                assert!(
                    !frames
                        .iter()
                        .any(|f| matches!(f, Frame::Text(t) if t.starts_with('0'))),
                    "{query}: got an open packet before the close: {frames:?}"
                );
            }
        }
    }
}

/// `host:port` out of `http://host:port[/...]`, `ws://host:port` or `host:port`.
fn host_of(url: &str) -> String {
    let url = url.trim();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

pub fn sid_query(sid: &str) -> String {
    format!("EIO=4&transport=polling&sid={sid}")
}

pub fn ws_sid_query(sid: &str) -> String {
    format!("EIO=4&transport=websocket&sid={sid}")
}

// ---------------------------------------------------------------------------------------------
// Assertions on wire strings
// ---------------------------------------------------------------------------------------------

/// Asserts `0{"sid":..,"upgrades":[..],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}`
/// with exactly those keys; returns the sid.
pub fn assert_open_packet(text: &str, upgrades: &[&str]) -> String {
    let json = text
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("expected an open packet, got {text:?}"));
    let v: Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("open packet is not JSON ({e}): {text:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("open packet is not an object: {text:?}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ],
        "open packet keys: {text:?}"
    );
    let sid = obj["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("sid not a string: {text:?}"));
    assert!(!sid.is_empty(), "empty sid: {text:?}");
    assert_eq!(
        obj["upgrades"],
        serde_json::json!(upgrades),
        "upgrades: {text:?}"
    );
    assert_eq!(
        obj["pingInterval"],
        serde_json::json!(PING_INTERVAL),
        "pingInterval: {text:?}"
    );
    assert_eq!(
        obj["pingTimeout"],
        serde_json::json!(PING_TIMEOUT),
        "pingTimeout: {text:?}"
    );
    assert_eq!(
        obj["maxPayload"],
        serde_json::json!(MAX_PAYLOAD),
        "maxPayload: {text:?}"
    );
    sid.to_string()
}

/// Asserts an Engine.IO HTTP error: status, `application/json`, body `{"code":N,"message":"..."}`.
pub fn assert_eio_error(r: &HttpResponse, status: u16, code: u8, message: &str) {
    assert_eq!(r.status, status, "unexpected response {r:?}");
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?} in {r:?}"
    );
    assert_eq!(
        r.text(),
        format!(r#"{{"code":{code},"message":"{message}"}}"#)
    );
}

/// The response to a request carrying a sid that no longer exists: 400 code 1.
pub fn assert_unknown_sid(r: &HttpResponse) {
    assert_eio_error(r, 400, 1, "Session ID unknown");
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("response body is not UTF-8")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request that has been written; dropping it aborts it (closes the TCP connection).
pub struct PendingRequest {
    stream: TcpStream,
    what: String,
}

impl PendingRequest {
    pub async fn send(
        host: &str,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> io::Result<PendingRequest> {
        let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(host))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        let mut req =
            format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        if let Some(b) = body {
            req.push_str("Content-Type: text/plain;charset=UTF-8\r\n");
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        } else if method != "GET" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        Ok(PendingRequest {
            stream,
            what: format!("{method} {target}"),
        })
    }

    /// Reads the response (panics after [`TIMEOUT`]).
    pub async fn response(self) -> io::Result<HttpResponse> {
        self.response_within(TIMEOUT).await
    }

    pub async fn response_within(mut self, limit: Duration) -> io::Result<HttpResponse> {
        match tokio::time::timeout(limit, read_response(&mut self.stream)).await {
            Ok(r) => r,
            Err(_) => panic!("no response to {} within {limit:?}", self.what),
        }
    }

    /// Client-side abort: close the connection while the request is pending.
    pub fn abort(self) {
        drop(self);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn read_response(stream: &mut TcpStream) -> io::Result<HttpResponse> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if read_more(stream, &mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response head",
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = buf.split_off(head_end + 4);
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());

    let body = if header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            if let Some(body) = decode_chunked(&rest)? {
                break body;
            }
            if read_more(stream, &mut rest).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated chunked body",
                ));
            }
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        while rest.len() < len {
            if read_more(stream, &mut rest).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated body",
                ));
            }
        }
        rest.truncate(len);
        rest
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else {
        while read_more(stream, &mut rest).await? != 0 {}
        rest
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// `Ok(Some(body))` once the whole chunked body (through the last chunk and trailers) is in `buf`.
fn decode_chunked(buf: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_len) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[pos..pos + line_len]).into_owned();
        let size_hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        pos += line_len + 2;
        if size == 0 {
            // trailers, terminated by an empty line
            loop {
                let Some(l) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += l + 2;
                if l == 0 {
                    return Ok(Some(out));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------------------------

/// A data frame received on a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

pub struct Ws {
    inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn send_text(&mut self, text: &str) {
        self.inner
            .send(Message::text(text))
            .await
            .unwrap_or_else(|e| panic!("sending {text:?} failed: {e}"));
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.inner
            .send(Message::binary(data.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("sending binary {data:?} failed: {e}"));
    }

    /// Next data frame, or `None` once the connection is closed / broken.
    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.inner.next().await {
                Some(Ok(Message::Text(t))) => return Some(Frame::Text(t.as_str().to_string())),
                Some(Ok(Message::Binary(b))) => return Some(Frame::Binary(b.to_vec())),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue, // WebSocket-level ping/pong
            }
        }
    }

    /// The next data frame, whatever it is (fails on timeout or close).
    pub async fn recv(&mut self) -> Frame {
        match tokio::time::timeout(TIMEOUT, self.next_frame()).await {
            Ok(Some(f)) => f,
            Ok(None) => panic!("WebSocket closed while a frame was expected"),
            Err(_) => panic!("no WebSocket frame within {TIMEOUT:?}"),
        }
    }

    /// The next frame, which must be text.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Frame::Text(t) => t,
            Frame::Binary(b) => panic!("expected a text frame, got binary {b:?}"),
        }
    }

    /// The next frame, which must be binary.
    pub async fn recv_binary(&mut self) -> Vec<u8> {
        match self.recv().await {
            Frame::Binary(b) => b,
            Frame::Text(t) => panic!("expected a binary frame, got text {t:?}"),
        }
    }

    /// The next frame that is not an Engine.IO ping; pings (`2`) met on the way are answered
    /// with `3` so the session stays alive however slow the machine is.
    pub async fn recv_app(&mut self) -> Frame {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.next_frame()).await {
                Ok(Some(Frame::Text(t))) if t == "2" => self.send_text("3").await,
                Ok(Some(f)) => return f,
                Ok(None) => panic!("WebSocket closed while a frame was expected"),
                Err(_) => panic!("no WebSocket frame within {TIMEOUT:?}"),
            }
        }
    }

    pub async fn recv_app_text(&mut self) -> String {
        match self.recv_app().await {
            Frame::Text(t) => t,
            Frame::Binary(b) => panic!("expected a text frame, got binary {b:?}"),
        }
    }

    pub async fn recv_app_binary(&mut self) -> Vec<u8> {
        match self.recv_app().await {
            Frame::Binary(b) => b,
            Frame::Text(t) => panic!("expected a binary frame, got text {t:?}"),
        }
    }

    /// Waits (up to [`TIMEOUT`]) for the server to close the connection; returns the data frames
    /// received before the close. With `answer_pings`, pings are answered so that a ping timeout
    /// cannot be what closes the connection.
    pub async fn expect_closed(&mut self, answer_pings: bool) -> Vec<Frame> {
        self.expect_closed_timed(answer_pings).await.0
    }

    /// Like [`Ws::expect_closed`], also returning how long the close took.
    pub async fn expect_closed_timed(&mut self, answer_pings: bool) -> (Vec<Frame>, Duration) {
        let start = Instant::now();
        let deadline = start + TIMEOUT;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.next_frame()).await {
                Ok(None) => return (frames, start.elapsed()),
                Ok(Some(f)) => {
                    if answer_pings && f == Frame::Text("2".into()) {
                        // The server may already be closing: ignore a failed send.
                        let _ = self.inner.send(Message::text("3")).await;
                    }
                    frames.push(f);
                }
                Err(_) => panic!("connection not closed within {TIMEOUT:?}; frames: {frames:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Engine.IO-level cases shared by both suites (§6.3; run on /engine.io/ and /socket.io/)
// ---------------------------------------------------------------------------------------------

pub mod cases {
    use super::*;

    // ----- handshake / polling ----------------------------------------------------------------

    pub async fn handshake_polling_opens_session(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let r = fx.get("EIO=4&transport=polling").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_open_packet(&r.text(), &["websocket"]);
    }

    pub async fn handshake_polling_invalid_eio(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        for query in ["transport=polling", "EIO=abc&transport=polling"] {
            let r = fx.get(query).await;
            assert_eio_error(&r, 400, 5, "Unsupported protocol version");
        }
    }

    pub async fn handshake_polling_invalid_transport(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        for query in ["EIO=4", "EIO=4&transport=abc"] {
            let r = fx.get(query).await;
            assert_eio_error(&r, 400, 0, "Transport unknown");
        }
    }

    pub async fn handshake_polling_invalid_method(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        for method in ["POST", "PUT"] {
            let r = fx.request(method, "EIO=4&transport=polling", None).await;
            assert_eio_error(&r, 400, 2, "Bad handshake method");
        }
    }

    // ----- handshake / websocket --------------------------------------------------------------

    pub async fn handshake_ws_opens_session(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let mut ws = fx.ws("EIO=4&transport=websocket").await;
        assert_open_packet(&ws.recv_text().await, &[]);
    }

    pub async fn handshake_ws_invalid_eio(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        fx.assert_ws_refused("transport=websocket").await;
        fx.assert_ws_refused("EIO=abc&transport=websocket").await;
    }

    pub async fn handshake_ws_invalid_transport(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        fx.assert_ws_refused("EIO=4").await;
        fx.assert_ws_refused("EIO=4&transport=abc").await;
    }

    // ----- heartbeat --------------------------------------------------------------------------

    pub async fn heartbeat_polling_sends_ping_packets(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let sid = fx.polling_handshake().await;
        for round in 0..3 {
            let r = fx.poll(&sid).await;
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "2"),
                "round {round}: {r:?}"
            );
            fx.send_payload(&sid, "3").await;
        }
    }

    pub async fn heartbeat_polling_ping_timeout(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let sid = fx.polling_handshake().await;
        // Never polled, never ponged: gone pingInterval + pingTimeout (500 ms) after the handshake.
        tokio::time::sleep(Duration::from_millis(PING_INTERVAL + PING_TIMEOUT + 100)).await;
        assert_unknown_sid(&fx.poll(&sid).await);
    }

    pub async fn heartbeat_ws_sends_ping_packets(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let (mut ws, _sid) = fx.ws_handshake().await;
        for _ in 0..3 {
            assert_eq!(ws.recv_text().await, "2");
            ws.send_text("3").await;
        }
    }

    pub async fn heartbeat_ws_ping_timeout(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let (mut ws, _sid) = fx.ws_handshake().await;
        let (frames, took) = ws.expect_closed_timed(false).await;
        assert!(
            frames.contains(&Frame::Text("2".into())),
            "no ping before the close: {frames:?}"
        );
        assert!(
            took >= Duration::from_millis(PING_INTERVAL),
            "closed too early ({took:?})"
        );
    }

    // ----- close ------------------------------------------------------------------------------

    pub async fn close_polling_forcefully(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let sid = fx.polling_handshake().await;
        let pending = fx
            .start_request("GET", &sid_query(&sid), None)
            .await
            .expect("pending GET");
        // Let the GET get parked on the server before the close packet is posted.
        tokio::time::sleep(Duration::from_millis(100)).await;
        fx.send_payload(&sid, "1").await;
        let r = pending.response().await.expect("pending GET response");
        assert_eq!((r.status, r.text().as_str()), (200, "6"), "{r:?}");
        assert_unknown_sid(&fx.poll(&sid).await);
    }

    pub async fn close_ws_forcefully(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let (mut ws, _sid) = fx.ws_handshake().await;
        ws.send_text("1").await;
        // The JS server only closes on the ping timeout here; closing at once is also fine.
        ws.expect_closed(false).await;
    }

    // ----- upgrade ----------------------------------------------------------------------------

    /// After an upgrade the WebSocket still carries traffic: the echo server echoes, the
    /// Socket.IO server accepts a CONNECT to the main namespace.
    async fn assert_ws_usable(flavor: Flavor, ws: &mut Ws) {
        match flavor {
            Flavor::Engine => {
                ws.send_text("4hello").await;
                assert_eq!(ws.recv_app_text().await, "4hello");
            }
            Flavor::SocketIo => {
                ws.send_text("40").await;
                let reply = ws.recv_app_text().await;
                assert!(reply.starts_with("40{\"sid\":"), "CONNECT reply {reply:?}");
            }
        }
    }

    pub async fn upgrade_polling_to_ws(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let sid = fx.polling_handshake().await;
        let mut ws = fx.ws(&ws_sid_query(&sid)).await;
        ws.send_text("2probe").await;
        assert_eq!(ws.recv_text().await, "3probe");
        // A poll issued while upgrading is ended with a noop.
        let r = fx.poll(&sid).await;
        assert_eq!((r.status, r.text().as_str()), (200, "6"), "{r:?}");
        ws.send_text("5").await;
        assert_ws_usable(flavor, &mut ws).await;
    }

    pub async fn upgrade_ignores_http_after_upgrade(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let (mut ws, sid) = fx.upgraded_session().await;
        // The `5` travels on the WebSocket and this GET on its own connection: until the server
        // has read the `5`, a poll gets the upgrade's noop `6`; from then on, 400. Data never.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let r = fx.poll(&sid).await;
            if r.status != 200 {
                assert_eio_error(&r, 400, 3, "Bad request");
                break;
            }
            assert_eq!(r.body, b"6", "only the noop before the switch: {r:?}");
            assert!(Instant::now() < deadline, "still polling after {TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_ws_usable(flavor, &mut ws).await;
    }

    pub async fn upgrade_ignores_ws_after_upgrade(flavor: Flavor) {
        let fx = Fx::new(flavor).await;
        let (mut ws, sid) = fx.upgraded_session().await;
        if let Ok(mut second) = fx.try_ws(&ws_sid_query(&sid)).await {
            second.expect_closed(false).await;
        }
        assert_ws_usable(flavor, &mut ws).await;
    }
}
