//! Public API tests: a served `Server` driven by raw Socket.IO v5 WebSocket clients.
//!
//! Every expected frame is awaited with a timeout; the only sleeps are the short windows of
//! "nothing arrives" checks.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard::{
    AckError, ConnectError, DisconnectReason, Payload, Server, ServerConfig, SocketRef,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

/// Serves `io` on a free port; returns the port.
fn serve(io: &Server) -> u16 {
    let listener = switchboard::engine::bind("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(switchboard::engine::serve(
        listener,
        io.engine(),
        Default::default(),
        CancellationToken::new(),
    ));
    port
}

fn server() -> (Server, u16) {
    let io = Server::new(ServerConfig::default()).unwrap();
    let port = serve(&io);
    (io, port)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Opens the Engine.IO session (reads the open packet) without joining a namespace.
    async fn open_with_query(port: u16, query: &str) -> Client {
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket{query}");
        let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        let mut c = Client { ws };
        let open = c.recv_text().await;
        assert!(open.starts_with("0{"), "open packet: {open:?}");
        c
    }

    async fn open(port: u16) -> Client {
        Self::open_with_query(port, "").await
    }

    /// Opens and joins `/`; returns the client and its socket id.
    async fn connect(port: u16) -> (Client, String) {
        let mut c = Self::open(port).await;
        let sid = c.join("/", None).await;
        (c, sid)
    }

    /// Sends CONNECT for `nsp` and expects the success reply; returns the socket id.
    async fn join(&mut self, nsp: &str, auth: Option<Value>) -> String {
        self.send(&connect_packet(nsp, auth.as_ref())).await;
        let reply = self.recv_text().await;
        let prefix = if nsp == "/" {
            "40".to_string()
        } else {
            format!("40{nsp},")
        };
        let json = reply
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("CONNECT reply for {nsp}: {reply:?}"));
        let v: Value = serde_json::from_str(json).unwrap();
        v["sid"].as_str().unwrap().to_string()
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// Next frame that is not an Engine.IO ping (pings are answered); `None` on close.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    let _ = self.ws.send(Message::text("3")).await;
                }
                Some(Ok(Message::Text(t))) => return Some(Frame::Text(t.as_str().to_string())),
                Some(Ok(Message::Binary(b))) => return Some(Frame::Binary(b.to_vec())),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn recv(&mut self) -> Frame {
        match tokio::time::timeout(TIMEOUT, self.next()).await {
            Ok(Some(f)) => f,
            Ok(None) => panic!("connection closed while a frame was expected"),
            Err(_) => panic!("no frame within {TIMEOUT:?}"),
        }
    }

    async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Frame::Text(t) => t,
            f => panic!("expected text, got {f:?}"),
        }
    }

    async fn recv_binary(&mut self) -> Vec<u8> {
        match self.recv().await {
            Frame::Binary(b) => b,
            f => panic!("expected binary, got {f:?}"),
        }
    }

    /// Asserts nothing arrives for [`QUIET`].
    async fn expect_nothing(&mut self) {
        if let Ok(f) = tokio::time::timeout(QUIET, self.next()).await {
            panic!("expected nothing, got {f:?}");
        }
    }

    /// Waits for the server to close the connection; returns the frames received before.
    async fn expect_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(None) => return frames,
                Ok(Some(f)) => frames.push(f),
                Err(_) => panic!("connection not closed; frames {frames:?}"),
            }
        }
    }
}

fn connect_packet(nsp: &str, auth: Option<&Value>) -> String {
    let mut s = String::from("40");
    if nsp != "/" {
        s.push_str(nsp);
        s.push(',');
    }
    if let Some(a) = auth {
        s.push_str(&a.to_string());
    }
    s
}

/// Collects the sockets connecting to `/` (in order).
fn socket_channel(io: &Server) -> mpsc::UnboundedReceiver<SocketRef> {
    let (tx, rx) = mpsc::unbounded_channel();
    io.on_connection(move |s| {
        let _ = tx.send(s.clone());
    });
    rx
}

async fn recv_within<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .expect("nothing received in time")
        .expect("channel closed")
}

/// Waits until `room` of `/` has `n` members. Rooms joined in a connection handler may lag
/// the client's CONNECT reply (see `connection_handler_runs_before_client_sees_connect`).
async fn wait_room_size(io: &Server, room: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if io.to(room).fetch_sockets().await.unwrap().len() == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "room {room} never reached {n} members"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The ack id and JSON of a `42<id>[...]` packet on `/`.
fn split_ack_event(text: &str) -> (u64, Value) {
    let rest = text
        .strip_prefix("42")
        .unwrap_or_else(|| panic!("{text:?}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    assert!(!digits.is_empty(), "no ack id in {text:?}");
    let json = serde_json::from_str(&rest[digits.len()..]).unwrap();
    (digits.parse().unwrap(), json)
}

// ---------------------------------------------------------------------------------------------
// Broadcasts
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_to_room_reaches_members_only() {
    let (io, port) = server();
    let mut sockets = socket_channel(&io);
    let (mut a, _) = Client::connect(port).await;
    let (mut b, _) = Client::connect(port).await;
    recv_within(&mut sockets).await.join("room1");
    recv_within(&mut sockets).await;
    io.to("room1").emit("hello", json!(1)).unwrap();
    assert_eq!(a.recv_text().await, r#"42["hello",1]"#);
    b.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_to_room_excludes_sender() {
    let (io, port) = server();
    io.on_connection(|s| {
        s.join("room");
        s.on("say", |s, ev| {
            s.to("room").emit("said", ev.payload).unwrap();
        });
    });
    let (mut a, _) = Client::connect(port).await;
    let (mut b, _) = Client::connect(port).await;
    wait_room_size(&io, "room", 2).await;
    a.send(r#"42["say","hi"]"#).await;
    assert_eq!(b.recv_text().await, r#"42["said","hi"]"#);
    a.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn except_leaves_out_room_members() {
    let (io, port) = server();
    let mut sockets = socket_channel(&io);
    let (mut a, _) = Client::connect(port).await;
    let (mut b, _) = Client::connect(port).await;
    let (mut c, _) = Client::connect(port).await;
    let sa = recv_within(&mut sockets).await;
    let sb = recv_within(&mut sockets).await;
    let sc = recv_within(&mut sockets).await;
    sa.join("r");
    sb.join(["r", "muted"]);
    sc.join("r");
    io.to("r").except("muted").emit("x", ()).unwrap();
    assert_eq!(a.recv_text().await, r#"42["x"]"#);
    assert_eq!(c.recv_text().await, r#"42["x"]"#);
    b.expect_nothing().await;
    io.except("muted").emit("y", ()).unwrap();
    assert_eq!(a.recv_text().await, r#"42["y"]"#);
    assert_eq!(c.recv_text().await, r#"42["y"]"#);
    b.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_emit_reaches_all() {
    let (io, port) = server();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::connect(port).await.0);
    }
    io.emit("all", json!({"k": "v"})).unwrap();
    for c in &mut clients {
        assert_eq!(c.recv_text().await, r#"42["all",{"k":"v"}]"#);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_in_two_targeted_rooms_receives_once() {
    let (io, port) = server();
    let mut sockets = socket_channel(&io);
    let (mut a, _) = Client::connect(port).await;
    recv_within(&mut sockets).await.join(["r1", "r2"]);
    io.to("r1").to("r2").emit("once", ()).unwrap();
    assert_eq!(a.recv_text().await, r#"42["once"]"#);
    a.expect_nothing().await;
    io.to(["r1", "r2"]).emit("twice-targeted", ()).unwrap();
    assert_eq!(a.recv_text().await, r#"42["twice-targeted"]"#);
    a.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_binary_payload() {
    let (io, port) = server();
    let (mut a, _) = Client::connect(port).await;
    let (mut b, _) = Client::connect(port).await;
    io.emit("bin", Payload::new().arg(&"x").binary(vec![1u8, 2, 3]))
        .unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.recv_text().await,
            r#"451-["bin","x",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(c.recv_binary().await, vec![1u8, 2, 3]);
    }
}

// ---------------------------------------------------------------------------------------------
// Event handlers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_any_runs_before_specific_handler() {
    let (io, port) = server();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    io.on_connection(move |s| {
        let t1 = tx.clone();
        let t2 = tx.clone();
        s.on_any(move |_, ev| {
            let _ = t1.send(format!("any:{}", ev.name));
        });
        s.on("ev", move |_, ev| {
            let _ = t2.send(format!("ev:{}", ev.arg::<i64>(0).unwrap()));
        });
    });
    let (mut a, _) = Client::connect(port).await;
    a.send(r#"42["ev",7]"#).await;
    a.send(r#"42["other"]"#).await;
    assert_eq!(recv_within(&mut rx).await, "any:ev");
    assert_eq!(recv_within(&mut rx).await, "ev:7");
    assert_eq!(recv_within(&mut rx).await, "any:other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_removes_handler() {
    let (io, port) = server();
    io.on_connection(|s| {
        s.on("ping-me", |s, _| {
            s.emit("pong-you", ()).unwrap();
        });
        s.on("remove", |s, _| {
            s.off("ping-me");
            s.emit("removed", ()).unwrap();
        });
    });
    let (mut a, _) = Client::connect(port).await;
    a.send(r#"42["ping-me"]"#).await;
    assert_eq!(a.recv_text().await, r#"42["pong-you"]"#);
    a.send(r#"42["remove"]"#).await;
    assert_eq!(a.recv_text().await, r#"42["removed"]"#);
    a.send(r#"42["ping-me"]"#).await;
    a.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_event_name() {
    let (io, port) = server();
    io.on_connection(|s| {
        s.on("42", |s, ev| {
            s.emit("got", ev.payload).unwrap();
        });
    });
    let (mut a, _) = Client::connect(port).await;
    a.send(r#"42[42,"n"]"#).await;
    assert_eq!(a.recv_text().await, r#"42["got","n"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_event_with_ack_is_acked() {
    let (io, port) = server();
    io.on_connection(|s| {
        s.on("add", |_, mut ev| {
            let a: i64 = ev.arg(0).unwrap();
            let b: i64 = ev.arg(1).unwrap();
            ev.ack(json!(a + b));
        });
    });
    let (mut a, _) = Client::connect(port).await;
    a.send(r#"4217["add",2,3]"#).await;
    assert_eq!(a.recv_text().await, "4317[5]");
}

// ---------------------------------------------------------------------------------------------
// Server-to-client acknowledgements
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_with_ack_gets_reply() {
    let (io, port) = server();
    let mut sockets = socket_channel(&io);
    let (mut a, _) = Client::connect(port).await;
    let s = recv_within(&mut sockets).await;
    let task = tokio::spawn(async move { s.emit_with_ack_timeout("q", json!("?"), TIMEOUT).await });
    let (id, v) = split_ack_event(&a.recv_text().await);
    assert_eq!(v, json!(["q", "?"]));
    a.send(&format!(r#"43{id}["answer",2]"#)).await;
    let payload = task.await.unwrap().unwrap();
    assert_eq!(payload.args, vec![json!("answer"), json!(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_with_ack_times_out() {
    let (io, port) = server();
    let mut sockets = socket_channel(&io);
    let (mut a, _) = Client::connect(port).await;
    let s = recv_within(&mut sockets).await;
    let start = tokio::time::Instant::now();
    let result = tokio::time::timeout(
        TIMEOUT,
        s.emit_with_ack_timeout("q", (), Duration::from_millis(200)),
    )
    .await
    .expect("emit_with_ack_timeout did not return");
    assert_eq!(result, Err(AckError::Timeout));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(200), "too early: {took:?}");
    assert!(took < Duration::from_secs(2), "too late: {took:?}");
    let (id, _) = split_ack_event(&a.recv_text().await);
    // A late reply is ignored, the connection stays usable.
    a.send(&format!("43{id}[1]")).await;
    s.emit("still", ()).unwrap();
    assert_eq!(a.recv_text().await, r#"42["still"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_with_ack_fails_when_client_disconnects() {
    let (io, port) = server();
    let mut sockets = socket_channel(&io);
    let (mut a, _) = Client::connect(port).await;
    let s = recv_within(&mut sockets).await;
    let task = tokio::spawn(async move {
        s.emit_with_ack_timeout("q", (), Duration::from_secs(10))
            .await
    });
    let _ = a.recv_text().await;
    a.send("41").await;
    let result = tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("emit_with_ack_timeout did not return after the disconnect")
        .unwrap();
    assert_eq!(result, Err(AckError::Disconnected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_with_ack_collects_responses() {
    let (io, port) = server();
    let (mut a, _) = Client::connect(port).await;
    let (mut b, _) = Client::connect(port).await;
    let io2 = io.clone();
    let task = tokio::spawn(async move {
        io2.timeout(Duration::from_secs(3))
            .emit_with_ack("ask", json!(1))
            .await
    });
    for (c, answer) in [(&mut a, "ra"), (&mut b, "rb")] {
        let (id, v) = split_ack_event(&c.recv_text().await);
        assert_eq!(v, json!(["ask", 1]));
        c.send(&format!(r#"43{id}["{answer}","ignored"]"#)).await;
    }
    let res = tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("broadcast ack did not complete")
        .unwrap()
        .unwrap();
    assert!(!res.timed_out, "{res:?}");
    assert_eq!(res.expected, 2);
    let mut got: Vec<Value> = res.responses.iter().map(Payload::first).collect();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, vec![json!("ra"), json!("rb")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_with_ack_times_out_with_partial_responses() {
    let (io, port) = server();
    let (mut a, _) = Client::connect(port).await;
    let (mut b, _) = Client::connect(port).await;
    let io2 = io.clone();
    let start = tokio::time::Instant::now();
    let task = tokio::spawn(async move {
        io2.timeout(Duration::from_millis(300))
            .emit_with_ack("ask", ())
            .await
    });
    let (id, _) = split_ack_event(&a.recv_text().await);
    a.send(&format!(r#"43{id}["only-a"]"#)).await;
    let _silent = b.recv_text().await;
    let res = tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("broadcast ack did not complete")
        .unwrap()
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(res.timed_out, "{res:?}");
    assert_eq!(res.expected, 2);
    assert_eq!(res.responses.len(), 1, "{res:?}");
    assert_eq!(res.responses[0].first(), json!("only-a"));
}

// ---------------------------------------------------------------------------------------------
// Middleware and handshake
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middleware_refusal_sends_connect_error_and_keeps_connection() {
    let (io, port) = server();
    io.use_middleware(|_s| async { Err(ConnectError::new("nope").with_data(json!({"a": 1}))) });
    io.of("/admin");
    let mut c = Client::open(port).await;
    c.send("40").await;
    assert_eq!(
        c.recv_text().await,
        r#"44{"message":"nope","data":{"a":1}}"#
    );
    let sid = c.join("/admin", None).await;
    assert!(!sid.is_empty());
    assert!(io.fetch_sockets().await.unwrap().is_empty());
    assert_eq!(io.of("/admin").fetch_sockets().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn middleware_data_visible_in_fetch_sockets() {
    let (io, port) = server();
    io.use_middleware(|s| async move {
        s.set_data(json!({"user": "alice"}));
        Ok(())
    });
    let (_a, sid) = Client::connect(port).await;
    let all = io.fetch_sockets().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, sid);
    assert_eq!(all[0].data, json!({"user": "alice"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_auth_and_query_visible() {
    let (io, port) = server();
    let (tx, mut rx) = mpsc::unbounded_channel::<(Value, Option<String>)>();
    let (qtx, mut qrx) = mpsc::unbounded_channel::<(Option<String>, Option<String>)>();
    io.on_connection(move |s| {
        let h = s.handshake();
        let _ = tx.send((h.auth.clone(), h.query().get("foo").cloned()));
        let _ = qtx.send((h.query().get("&a").cloned(), h.query().get("sp").cloned()));
    });
    // Encoded as socket.io-client encodes `{ "&a": "&=?a", sp: "a b" }` (the client suite's
    // encoding test), plus a repeated key.
    let mut c = Client::open_with_query(port, "&foo=bar&foo=baz&%26a=%26%3D%3Fa&sp=a+b").await;
    c.join("/", Some(json!({"token": "abc"}))).await;
    let (auth, foo) = recv_within(&mut rx).await;
    assert_eq!(auth, json!({"token": "abc"}));
    // Of a repeated key, the last value, as engine.io's `URLSearchParams`.
    assert_eq!(foo.as_deref(), Some("baz"));
    let (amp, sp) = recv_within(&mut qrx).await;
    assert_eq!(amp.as_deref(), Some("&=?a"));
    assert_eq!(sp.as_deref(), Some("a b"));

    // Without an auth object, auth is `{}`.
    let (_c2, _) = Client::connect(port).await;
    let (auth, _) = recv_within(&mut rx).await;
    assert_eq!(auth, json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_in_nodes_shape() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (io, port) = server();
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    io.on_connection(move |s| {
        let _ = tx.send(s.handshake().to_json());
    });
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&k=1&k=2");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "http://example.test".parse().unwrap());
    req.headers_mut().append("x-multi", "a".parse().unwrap());
    req.headers_mut().append("x-multi", "b".parse().unwrap());
    let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .unwrap()
        .unwrap();
    let mut c = Client { ws };
    assert!(c.recv_text().await.starts_with("0{"));
    c.join("/", None).await;
    let h = recv_within(&mut rx).await;
    let after = before + 60_000;

    // `new Date().toString()` of a Node process in UTC.
    let time = h["time"].as_str().unwrap();
    assert!(
        time.ends_with(" GMT+0000 (Coordinated Universal Time)") && time.len() == 62,
        "{time:?}"
    );
    let issued = h["issued"].as_u64().unwrap();
    assert!(
        (before..after).contains(&issued),
        "{issued} not after {before}"
    );
    assert_eq!(
        h["url"],
        json!("/socket.io/?EIO=4&transport=websocket&k=1&k=2")
    );
    assert_eq!(h["secure"], json!(false));
    assert_eq!(h["xdomain"], json!(true), "an Origin header was sent");
    assert_eq!(h["address"], json!("127.0.0.1"));
    // engine.io's `URLSearchParams`: a repeated key keeps its last value.
    assert_eq!(h["query"]["k"], json!("2"));
    assert_eq!(h["query"]["EIO"], json!("4"));
    assert_eq!(h["headers"]["origin"], json!("http://example.test"));
    assert_eq!(h["headers"]["x-multi"], json!("a, b"));
    assert_eq!(h["auth"], json!({}));

    // Without an Origin header, `xdomain` is false.
    let (_c2, _) = Client::connect(port).await;
    assert_eq!(recv_within(&mut rx).await["xdomain"], json!(false));
}

/// A raw HTTP/1.1 request (a GET when `body` is `None`); returns the status and the body.
async fn http(port: u16, target: &str, body: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = match body {
        None => format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        Some(b) => format!(
            "POST {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
    };
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_request_decides_each_handshake() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use switchboard::engine::{AllowRequest, EngineConfig};
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let io = Server::new(ServerConfig {
        engine: EngineConfig {
            path: "/socket.io/".into(),
            // Refuses handshakes whose URL has `deny`, after a pause (it may take its time).
            allow_request: Some(AllowRequest::new(move |req| {
                counted.fetch_add(1, Ordering::SeqCst);
                let deny = req.uri.query().unwrap_or("").contains("deny");
                async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    !deny
                }
            })),
            ..EngineConfig::default()
        },
        ..ServerConfig::default()
    })
    .unwrap();
    let port = serve(&io);
    let refused = || {
        io.engine()
            .metrics()
            .http_errors
            .get_or_create(&[("error", "not_allowed")])
            .get()
    };

    let (status, body) = http(port, "/socket.io/?EIO=4&transport=polling&deny=1", None).await;
    assert_eq!(
        (status, body.as_str()),
        (403, r#"{"code":4,"message":"Forbidden"}"#)
    );
    assert_eq!(refused(), 1);
    assert_eq!(io.engine().session_count(), 0);

    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&deny=1");
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 403)
        }
        other => panic!("a refused WebSocket handshake got {other:?}"),
    }
    assert_eq!(refused(), 2);

    // Admitted handshakes open sessions on both transports; requests of an existing session
    // are not asked about.
    let (status, open) = http(port, "/socket.io/?EIO=4&transport=polling", None).await;
    assert_eq!(status, 200, "{open}");
    let sid: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    let sid = sid["sid"].as_str().unwrap();
    let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(
        http(port, &target, Some("40")).await,
        (200, "ok".to_owned())
    );
    let mut c = Client::open(port).await;
    c.join("/", None).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(refused(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_namespace() {
    let (io, port) = server();
    let dynamic = io.of_dynamic(|n| n.starts_with("/tenant-"));
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    dynamic.on_connection(move |s| {
        let _ = tx.send(s.nsp().name().to_owned());
    });
    let mut c = Client::open(port).await;
    c.join("/tenant-1", None).await;
    assert_eq!(recv_within(&mut rx).await, "/tenant-1");
    c.send("40/other,").await;
    assert_eq!(
        c.recv_text().await,
        r#"44/other,{"message":"Invalid namespace"}"#
    );
    // The connection is still usable.
    c.join("/tenant-2", None).await;
    assert_eq!(recv_within(&mut rx).await, "/tenant-2");
}

// ---------------------------------------------------------------------------------------------
// Server-side socket management
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_sockets_lists_ids_and_rooms() {
    let (io, port) = server();
    let mut sockets = socket_channel(&io);
    let (_a, sid_a) = Client::connect(port).await;
    let (_b, sid_b) = Client::connect(port).await;
    recv_within(&mut sockets).await.join("ra");
    recv_within(&mut sockets).await;
    let all = io.fetch_sockets().await.unwrap();
    let ids: HashSet<String> = all.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, HashSet::from([sid_a.clone(), sid_b.clone()]));
    let in_ra = io.to("ra").fetch_sockets().await.unwrap();
    assert_eq!(in_ra.len(), 1);
    assert_eq!(in_ra[0].id, sid_a);
    let rooms: HashSet<&str> = in_ra[0].rooms.iter().map(String::as_str).collect();
    assert_eq!(rooms, HashSet::from([sid_a.as_str(), "ra"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_join_and_leave() {
    let (io, port) = server();
    let (mut a, _) = Client::connect(port).await;
    let (mut b, _) = Client::connect(port).await;
    io.sockets_join("everyone");
    io.to("everyone").emit("e1", ()).unwrap();
    assert_eq!(a.recv_text().await, r#"42["e1"]"#);
    assert_eq!(b.recv_text().await, r#"42["e1"]"#);
    io.sockets_leave("everyone");
    io.to("everyone").emit("e2", ()).unwrap();
    a.expect_nothing().await;
    b.expect_nothing().await;
    assert!(io.to("everyone").fetch_sockets().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_sockets_without_close_sends_disconnect() {
    let (io, port) = server();
    let (mut a, _) = Client::connect(port).await;
    io.disconnect_sockets(false);
    assert_eq!(a.recv_text().await, "41");
    assert!(io.fetch_sockets().await.unwrap().is_empty());
    // The connection stays open: rejoining works.
    a.join("/", None).await;
    assert_eq!(io.fetch_sockets().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_disconnect_close_closes_connection() {
    let (io, port) = server();
    let mut sockets = socket_channel(&io);
    let (mut a, _) = Client::connect(port).await;
    let s = recv_within(&mut sockets).await;
    s.disconnect(true);
    let frames = a.expect_closed().await;
    assert!(
        frames.iter().all(|f| *f == Frame::Text("41".into())),
        "{frames:?}"
    );
    assert!(!s.connected());
    assert!(io.fetch_sockets().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_rooms_lists_rooms() {
    let (io, port) = server();
    let mut sockets = socket_channel(&io);
    let (_a, _) = Client::connect(port).await;
    let (_b, _) = Client::connect(port).await;
    let sa = recv_within(&mut sockets).await;
    let sb = recv_within(&mut sockets).await;
    sa.join(["x", "y"]);
    sb.join("y");
    let rooms: HashSet<String> = io
        .all_rooms()
        .await
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert!(rooms.contains("x") && rooms.contains("y"), "{rooms:?}");
    sa.leave("x");
    let rooms: HashSet<String> = io
        .all_rooms()
        .await
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert!(!rooms.contains("x"), "{rooms:?}");
    assert!(rooms.contains("y"), "{rooms:?}");
}

// ---------------------------------------------------------------------------------------------
// Disconnect handlers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_handler_sees_rooms() {
    let (io, port) = server();
    let (tx, mut rx) = mpsc::unbounded_channel::<(&'static str, Vec<String>)>();
    io.on_connection(move |s| {
        s.join("kept");
        let t1 = tx.clone();
        let t2 = tx.clone();
        s.on_disconnecting(move |s, _| {
            let _ = t1.send(("disconnecting", room_names(s)));
        });
        s.on_disconnect(move |s, _| {
            let _ = t2.send(("disconnect", room_names(s)));
        });
    });
    let (mut a, _) = Client::connect(port).await;
    a.send("41").await;
    let (what, rooms) = recv_within(&mut rx).await;
    assert_eq!(what, "disconnecting");
    assert!(rooms.contains(&"kept".to_string()), "{rooms:?}");
    let (what, rooms) = recv_within(&mut rx).await;
    assert_eq!(what, "disconnect");
    assert!(rooms.is_empty(), "{rooms:?}");
}

fn room_names(s: &SocketRef) -> Vec<String> {
    s.rooms().iter().map(|r| r.to_string()).collect()
}

fn reason_channel(io: &Server) -> mpsc::UnboundedReceiver<DisconnectReason> {
    let (tx, rx) = mpsc::unbounded_channel();
    io.on_connection(move |s| {
        let tx = tx.clone();
        s.on_disconnect(move |_, reason| {
            let _ = tx.send(reason);
        });
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reason_client_namespace_disconnect() {
    let (io, port) = server();
    let mut reasons = reason_channel(&io);
    let (mut a, _) = Client::connect(port).await;
    a.send("41").await;
    assert_eq!(
        recv_within(&mut reasons).await,
        DisconnectReason::ClientNamespaceDisconnect
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reason_transport_close() {
    let (io, port) = server();
    let mut reasons = reason_channel(&io);
    let (a, _) = Client::connect(port).await;
    drop(a);
    assert_eq!(
        recv_within(&mut reasons).await,
        DisconnectReason::TransportClose
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_reason_transport_close_after_close_frame() {
    let (io, port) = server();
    let mut reasons = reason_channel(&io);
    let (mut a, _) = Client::connect(port).await;
    a.ws.close(None).await.unwrap();
    assert_eq!(
        recv_within(&mut reasons).await,
        DisconnectReason::TransportClose
    );
}

// ---------------------------------------------------------------------------------------------
// Ordering and connection-handler races
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_events_keep_order() {
    const N: u64 = 2000;
    let (io, port) = server();
    io.on_connection(|s| {
        s.join("room");
        s.on("n", |s, ev| {
            s.to("room").emit("n", ev.payload).unwrap();
        });
    });
    let (mut sender, _) = Client::connect(port).await;
    let mut receivers = Vec::new();
    for _ in 0..2 {
        let (mut r, _) = Client::connect(port).await;
        receivers.push(tokio::spawn(async move {
            for i in 0..N {
                let text = r.recv_text().await;
                assert_eq!(text, format!(r#"42["n",{i}]"#), "receiver out of order");
            }
            r.expect_nothing().await;
        }));
    }
    wait_room_size(&io, "room", 3).await;
    for i in 0..N {
        sender
            .ws
            .feed(Message::text(format!(r#"42["n",{i}]"#)))
            .await
            .unwrap();
        if i % 100 == 99 {
            sender.ws.flush().await.unwrap();
        }
    }
    sender.ws.flush().await.unwrap();
    for r in receivers {
        tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .expect("receiver did not finish")
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_from_on_connection_sees_event_sent_right_after_connect() {
    let (io, port) = server();
    io.on_connection(|s| {
        s.on("early", |s, ev| {
            s.emit("seen", ev.payload).unwrap();
        });
    });
    for round in 0..20 {
        let mut c = Client::open(port).await;
        c.ws.feed(Message::text("40")).await.unwrap();
        c.ws.feed(Message::text(format!(r#"42["early",{round}]"#)))
            .await
            .unwrap();
        c.ws.flush().await.unwrap();
        let reply = c.recv_text().await;
        assert!(reply.starts_with("40{\"sid\":"), "{reply:?}");
        assert_eq!(c.recv_text().await, format!(r#"42["seen",{round}]"#));
    }
}

// ---------------------------------------------------------------------------------------------
// Edge cases
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_joined_by_refusing_middleware_do_not_leak() {
    let (io, port) = server();
    io.use_middleware(|s| async move {
        s.join("mw-room");
        Err(ConnectError::new("nope"))
    });
    let mut c = Client::open(port).await;
    c.send("40").await;
    assert_eq!(c.recv_text().await, r#"44{"message":"nope"}"#);
    let rooms: Vec<String> = io
        .all_rooms()
        .await
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert!(
        !rooms.contains(&"mw-room".to_string()),
        "a refused socket left a room behind: {rooms:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_joined_by_accepting_middleware_is_kept() {
    let (io, port) = server();
    io.use_middleware(|s| async move {
        s.join("mw-room");
        Ok(())
    });
    let (mut c, _) = Client::connect(port).await;
    io.to("mw-room").emit("hi", ()).unwrap();
    assert_eq!(c.recv_text().await, r#"42["hi"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_handler_runs_before_client_sees_connect() {
    // `Namespace::on_connection` promises the handler runs "before the client learns it is
    // connected": a room joined there must be targetable as soon as the client has `40`.
    let (io, port) = server();
    io.on_connection(|s| {
        // Stands for any work done in the handler before joining (`block_in_place` hands the
        // worker's queue to another thread, as a busy production runtime would run it).
        tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(300)));
        s.join("joined-in-handler");
    });
    let mut c = Client::open(port).await;
    c.send("40").await;
    let reply = c.recv_text().await;
    assert!(reply.starts_with("40{\"sid\":"), "{reply:?}");
    io.to("joined-in-handler").emit("x", ()).unwrap();
    assert_eq!(c.recv_text().await, r#"42["x"]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_disconnect_leaves_other_namespaces_connected() {
    let (io, port) = server();
    io.of("/admin");
    io.on_connection(|s| {
        s.on("sync", |_, mut ev| ev.ack(()));
    });
    let (mut c, _) = Client::connect(port).await;
    c.join("/admin", None).await;
    c.send("41/admin,").await;
    // Packets of a connection are handled in order: once `sync` is acked, the DISCONNECT
    // has been processed.
    c.send(r#"421["sync"]"#).await;
    assert_eq!(c.recv_text().await, "431[]");
    assert!(io.of("/admin").fetch_sockets().await.unwrap().is_empty());
    assert_eq!(io.fetch_sockets().await.unwrap().len(), 1);
    io.of("/admin").emit("admin", ()).unwrap();
    io.emit("root", ()).unwrap();
    assert_eq!(c.recv_text().await, r#"42["root"]"#);
    c.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_event_from_client_and_binary_ack() {
    let (io, port) = server();
    io.on_connection(|s| {
        s.on("upload", |_, mut ev| {
            let data = ev.payload.bytes(1).unwrap().clone();
            let name: String = ev.arg(0).unwrap();
            let mut reversed = data.to_vec();
            reversed.reverse();
            ev.ack(Payload::new().arg(&name).binary(reversed));
        });
    });
    let (mut c, _) = Client::connect(port).await;
    c.send(r#"451-9["upload","f",{"_placeholder":true,"num":0}]"#)
        .await;
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        c.recv_text().await,
        r#"461-9["f",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(c.recv_binary().await, vec![3u8, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_event_names_are_refused() {
    let (io, port) = server();
    let mut sockets = socket_channel(&io);
    let (mut c, _) = Client::connect(port).await;
    let s = recv_within(&mut sockets).await;
    for name in ["connect", "disconnect", "disconnecting", "connect_error"] {
        assert!(
            matches!(
                s.emit(name, ()),
                Err(switchboard::EmitError::ReservedEvent(_))
            ),
            "{name}"
        );
        assert!(io.emit(name, ()).is_err(), "{name}");
    }
    c.expect_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_close_leaves_every_namespace() {
    let (io, port) = server();
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, DisconnectReason)>();
    let mut sockets = socket_channel(&io);
    for ns in [io.of("/"), io.of("/admin")] {
        let tx = tx.clone();
        ns.on_connection(move |s| {
            let tx = tx.clone();
            s.on_disconnect(move |s, r| {
                let _ = tx.send((s.nsp().name().to_owned(), r));
            });
        });
    }
    let (mut c, _) = Client::connect(port).await;
    c.join("/admin", None).await;
    recv_within(&mut sockets).await.disconnect(true);
    let mut frames = c.expect_closed().await;
    frames.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(
        frames,
        vec![Frame::Text("41".into()), Frame::Text("41/admin,".into())]
    );
    let mut got = vec![recv_within(&mut rx).await, recv_within(&mut rx).await];
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("/".to_owned(), DisconnectReason::ServerNamespaceDisconnect),
            (
                "/admin".to_owned(),
                DisconnectReason::ServerNamespaceDisconnect
            ),
        ]
    );
}
