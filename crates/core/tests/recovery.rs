//! Connection state recovery on one node (the in-memory adapter), through the wire: a raw
//! Socket.IO v5 WebSocket client loses its connection, packets are sent meanwhile, and a new
//! connection presenting `pid` and `offset` gets the same id, rooms and data back, with the
//! missed packets replayed in order before the CONNECT reply.

#![allow(clippy::unwrap_used)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard::{ConnectionStateRecovery, Server, ServerConfig};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(5);

fn server(recovery: ConnectionStateRecovery) -> (Server, u16) {
    let io = Server::new(ServerConfig {
        connection_state_recovery: Some(recovery),
        ..ServerConfig::default()
    })
    .unwrap();
    let listener = switchboard::engine::bind("127.0.0.1:0".parse().unwrap(), 64).unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(switchboard::engine::serve(
        listener,
        io.engine(),
        Default::default(),
        CancellationToken::new(),
    ));
    (io, port)
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    async fn open(port: u16) -> Client {
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap()
            .unwrap();
        let mut c = Client { ws };
        assert!(c.recv().await.starts_with("0{"));
        c
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next Socket.IO text frame (pings answered).
    async fn recv(&mut self) -> String {
        loop {
            let msg = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("connection open")
                .unwrap();
            match msg {
                Message::Text(t) if t.as_str() == "2" => self.send("3").await,
                Message::Text(t) => return t.as_str().to_owned(),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Sends CONNECT with `auth`; returns the frames up to and with the CONNECT reply, and
    /// the reply's JSON.
    async fn connect(&mut self, auth: Value) -> (Vec<String>, Value) {
        self.send(&format!("40{auth}")).await;
        let mut before = Vec::new();
        loop {
            let f = self.recv().await;
            if let Some(json) = f.strip_prefix("40") {
                return (before, serde_json::from_str(json).unwrap());
            }
            before.push(f);
        }
    }

    /// An EVENT frame's array.
    async fn event(&mut self) -> Vec<Value> {
        let f = self.recv().await;
        serde_json::from_str(f.strip_prefix("42").expect("an EVENT")).unwrap()
    }
}

fn events(frames: &[String]) -> Vec<Vec<Value>> {
    frames
        .iter()
        .map(|f| serde_json::from_str(f.strip_prefix("42").expect("an EVENT")).unwrap())
        .collect()
}

async fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn recoveries(io: &Server, result: &'static str) -> u64 {
    io.metrics()
        .recoveries
        .get_or_create(&[("result", result)])
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_gets_its_session_and_missed_packets_back() {
    let (io, port) = server(ConnectionStateRecovery::default());
    let middleware_runs = Arc::new(AtomicUsize::new(0));
    let runs = middleware_runs.clone();
    io.use_middleware(move |_| {
        runs.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    io.on_connection(move |socket| {
        if !socket.recovered() {
            socket.join("r");
            socket.set_data(json!({"user": 7}));
        }
        let _ = tx.send((socket.id().to_string(), socket.recovered(), socket.data()));
    });

    let mut c = Client::open(port).await;
    let (_, reply) = c.connect(json!({})).await;
    let (sid, pid) = (reply["sid"].clone(), reply["pid"].clone());
    assert!(pid.as_str().is_some_and(|p| p.len() == 20), "{reply}");
    assert!(!rx.recv().await.unwrap().1);

    // Every recoverable emit carries its offset as the last argument.
    io.to("r").emit("m", json!(0)).unwrap();
    let first = c.event().await;
    assert_eq!(first[..2], [json!("m"), json!(0)]);
    let offset = first[2].as_str().unwrap().to_owned();

    // The connection drops under the client (no DISCONNECT packet).
    drop(c);
    wait_for("the session is kept", || {
        io.metrics().sessions_persisted.get() == 1
    })
    .await;
    // More than the connection's queue holds items (4096): the replay is one item.
    for n in 1..=5000 {
        io.to("r").emit("m", json!(n)).unwrap();
    }
    io.to("elsewhere").emit("not-for-you", json!(0)).unwrap();
    io.except("r").emit("not-for-you", json!(1)).unwrap();
    io.emit("all", json!("x")).unwrap();
    io.volatile().emit("volatile", json!(0)).unwrap();
    // Addressed to the socket's own id room, as `socket.emit` is.
    io.to(sid.as_str().unwrap())
        .emit("direct", json!(1))
        .unwrap();

    let mut c = Client::open(port).await;
    let (missed, reply) = c
        .connect(json!({"pid": pid, "offset": offset, "token": "t"}))
        .await;
    assert_eq!(reply["sid"], sid);
    assert_eq!(reply["pid"], pid);
    let (id, recovered, data) = rx.recv().await.unwrap();
    assert_eq!(json!(id), sid);
    assert!(recovered);
    assert_eq!(data, json!({"user": 7}));
    assert_eq!(middleware_runs.load(Ordering::SeqCst), 1, "skipped");
    let missed = events(&missed);
    let names: Vec<_> = missed
        .iter()
        .map(|e| (e[0].clone(), e[1].clone()))
        .collect();
    let mut want: Vec<_> = (1..=5000).map(|n| (json!("m"), json!(n))).collect();
    want.push((json!("all"), json!("x")));
    want.push((json!("direct"), json!(1)));
    assert_eq!(names, want, "in order, each once, only what was addressed");
    assert!(missed.iter().all(|e| e.len() == 3 && e[2].is_string()));
    assert_eq!(recoveries(&io, "recovered"), 1);

    // Its room came back: a new emit to it arrives, after the replay.
    io.to("r").emit("m", json!(5001)).unwrap();
    assert_eq!(c.event().await[1], json!(5001));

    // A second attempt with the same pid is a fresh session.
    let mut c2 = Client::open(port).await;
    let (missed, reply) = c2.connect(json!({"pid": pid, "offset": offset})).await;
    assert!(missed.is_empty());
    assert_ne!(reply["sid"], sid);
    assert_eq!(recoveries(&io, "unknown_session"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_window_or_a_lost_offset_gives_a_fresh_session() {
    let (io, port) = server(ConnectionStateRecovery {
        max_disconnection_duration: Duration::from_millis(300),
        skip_middlewares: false,
        max_packets: 5,
        ..ConnectionStateRecovery::default()
    });
    let middleware_runs = Arc::new(AtomicUsize::new(0));
    let runs = middleware_runs.clone();
    io.use_middleware(move |_| {
        runs.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    });
    io.on_connection(|socket| {
        let _ = socket.emit("hi", json!(socket.recovered()));
    });

    // Expiry: back after the window.
    let mut c = Client::open(port).await;
    let (_, reply) = c.connect(json!({})).await;
    let hi = c.event().await;
    assert_eq!(hi[..2], [json!("hi"), json!(false)]);
    drop(c);
    wait_for("the session is kept", || {
        io.metrics().sessions_persisted.get() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut c = Client::open(port).await;
    let auth = json!({"pid": reply["pid"], "offset": hi[2]});
    let (missed, fresh) = c.connect(auth).await;
    assert!(missed.is_empty());
    assert_ne!(fresh["sid"], reply["sid"]);
    assert_ne!(fresh["pid"], reply["pid"]);
    assert_eq!(c.event().await[1], json!(false));
    assert_eq!(
        recoveries(&io, "expired") + recoveries(&io, "unknown_session"),
        1
    );

    // A lost offset: more packets than are kept went by.
    let hi = c.event_or_nothing().await;
    assert!(hi.is_none());
    let pid = fresh["pid"].clone();
    io.emit("m", json!(0)).unwrap();
    let offset = c.event().await[2].clone();
    drop(c);
    wait_for("the session is kept", || {
        io.metrics().sessions_persisted.get() == 2
    })
    .await;
    for n in 1..=10 {
        io.emit("m", json!(n)).unwrap();
    }
    assert_eq!(io.metrics().recovery_packets.get(), 5, "bounded");
    let mut c = Client::open(port).await;
    let (missed, again) = c.connect(json!({"pid": pid, "offset": offset})).await;
    assert!(missed.is_empty());
    assert_ne!(again["sid"], fresh["sid"]);
    assert_eq!(recoveries(&io, "unknown_offset"), 1);
    assert_eq!(middleware_runs.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_no_pid_and_no_offsets() {
    let io = Server::new(ServerConfig::default()).unwrap();
    let listener = switchboard::engine::bind("127.0.0.1:0".parse().unwrap(), 64).unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(switchboard::engine::serve(
        listener,
        io.engine(),
        Default::default(),
        CancellationToken::new(),
    ));
    io.on_connection(|socket| {
        let _ = socket.emit("hi", json!(1));
    });
    let mut c = Client::open(port).await;
    let (_, reply) = c.connect(json!({"pid": "x", "offset": "y"})).await;
    assert!(reply.get("pid").is_none(), "{reply}");
    assert_eq!(c.event().await, vec![json!("hi"), json!(1)]);
}

impl Client {
    /// The next EVENT if one arrives within 200 ms.
    async fn event_or_nothing(&mut self) -> Option<Vec<Value>> {
        match tokio::time::timeout(Duration::from_millis(200), self.recv()).await {
            Ok(f) => Some(serde_json::from_str(f.strip_prefix("42")?).ok()?),
            Err(_) => None,
        }
    }
}
