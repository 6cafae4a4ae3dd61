//! In-process Switchboard nodes on the Redis adapter, with the same small application as the
//! Node.js test server (`tests/clients/cluster/node-server.js`): `join`/`leave` events with an
//! acknowledgement, `shout` (a `socket.to(room)` broadcast), and a server-side `sse` listener.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard::engine::{self, ServeConfig};
use switchboard::{Server, ServerConfig};
use switchboard_redis::{Mode, RedisAdapterConfig, RedisAdapterFactory};
use tokio_util::sync::CancellationToken;

/// One node serving `/` and `/admin` on a random loopback port.
pub struct SbNode {
    /// The Socket.IO server.
    pub io: Server,
    /// Its adapter factory (readiness, metrics).
    pub redis: RedisAdapterFactory,
    /// Listening address.
    pub addr: SocketAddr,
    /// Node name (also its node id).
    pub name: String,
    /// Arguments of every `sse` server-side event received.
    pub sse: Arc<Mutex<Vec<Vec<Value>>>>,
    stop: CancellationToken,
}

impl SbNode {
    /// Starts node `name` on `redis_url` and waits until it is connected.
    pub async fn start(redis_url: &str, mode: Mode, name: &str) -> SbNode {
        let mut cfg = RedisAdapterConfig::new(redis_url);
        cfg.mode = mode;
        cfg.node_id = Some(name.to_owned());
        cfg.requests_timeout = Duration::from_millis(1500);
        cfg.probe_interval = Duration::from_millis(300);
        cfg.max_backoff = Duration::from_millis(300);
        Self::start_with(cfg, name).await
    }

    /// Starts a node with an explicit adapter configuration.
    pub async fn start_with(cfg: RedisAdapterConfig, name: &str) -> SbNode {
        let redis = RedisAdapterFactory::new(cfg).expect("valid adapter config");
        let io = Server::with_adapter(ServerConfig::default(), Arc::new(redis.clone()))
            .expect("valid server config");
        let sse = Arc::new(Mutex::new(Vec::new()));
        for nsp in ["/", "/admin"] {
            install(&io, nsp, name, sse.clone());
        }
        let listener = engine::bind("127.0.0.1:0".parse().expect("addr"), 1024).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        tokio::spawn(engine::serve(
            listener,
            io.engine(),
            ServeConfig::default(),
            stop.clone(),
        ));
        assert!(
            redis.wait_ready(Duration::from_secs(10)).await,
            "node {name} did not connect to Redis within 10 s"
        );
        SbNode {
            io,
            redis,
            addr,
            name: name.to_owned(),
            sse,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Server-side events received so far.
    pub fn sse_received(&self) -> Vec<Vec<Value>> {
        self.sse.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Stops serving (connections are closed).
    pub async fn stop(self) {
        self.stop.cancel();
        self.io.close(1000, Duration::from_millis(1)).await;
    }
}

fn install(io: &Server, nsp: &str, name: &str, sse: Arc<Mutex<Vec<Vec<Value>>>>) {
    let ns = io.of(nsp);
    let server = name.to_owned();
    ns.on_connection(move |socket| {
        let user = socket
            .handshake()
            .auth
            .get("user")
            .cloned()
            .unwrap_or(Value::Null);
        socket.set_data(json!({"server": server, "user": user}));
        socket.on("join", |socket, mut event| {
            if let Ok(room) = event.arg::<String>(0) {
                socket.join(room);
            }
            event.ack("joined");
        });
        socket.on("leave", |socket, mut event| {
            if let Ok(room) = event.arg::<String>(0) {
                socket.leave(room);
            }
            event.ack("left");
        });
        // `shout(room, text)`: to everyone in `room` but the sender, on every node.
        socket.on("shout", |socket, event| {
            if let Ok(room) = event.arg::<String>(0) {
                let mut rest = event.payload;
                rest.args.remove(0);
                let _ = socket.to(room).emit("shout", rest);
            }
        });
    });
    let reply = format!("pong-{name}");
    ns.on_server_side("sse", move |args, ack| {
        if let Ok(mut v) = sse.lock() {
            v.push(args);
        }
        if let Some(ack) = ack {
            let _ = ack.send(Value::from(reply.clone()));
        }
    });
}

/// A bare Redis connection subscribed to `channel` that never reads: it keeps the channel
/// counted by `PUBSUB NUMSUB` as a frozen node would. Dropping it unsubscribes.
pub async fn subscribe_raw(port: u16, channel: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to redis");
    s.write_all(&crate::support::resp_encode(&["SUBSCRIBE", channel]))
        .await
        .expect("subscribe");
    s
}
