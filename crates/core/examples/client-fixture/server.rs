//! The server the `socket.io-client` package's own test suite expects (its
//! `test/support/server.ts`), built on Switchboard: pingInterval 2 s, a 10 ms admission delay
//! on every handshake, connection state recovery, the namespaces `/`, `/foo`,
//! `/timeout_socket`, `/valid`, `/asd`, `/abc` and `/no`, and the events the tests emit.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard::engine::{AllowRequest, EngineConfig};
use switchboard::{
    ConnectError, ConnectionStateRecovery, Event, Payload, Server, ServerConfig, SocketRef,
};

/// The fixture's configuration: server.ts's `new Server(3210, {...})`.
pub fn config() -> ServerConfig {
    ServerConfig {
        engine: EngineConfig {
            path: "/socket.io/".into(),
            ping_interval: Duration::from_millis(2000),
            // server.ts: `setTimeout(() => callback(null, true), 10)`, so that the client's
            // connection timeout can be tested.
            allow_request: Some(AllowRequest::new(|_req| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                true
            })),
            ..EngineConfig::default()
        },
        // `connectionStateRecovery: {}`: Node's defaults (2 minutes, middlewares skipped).
        connection_state_recovery: Some(ConnectionStateRecovery::default()),
        ..ServerConfig::default()
    }
}

/// Builds the fixture server with every namespace, middleware and handler of server.ts.
pub fn build() -> Result<Server, Box<dyn std::error::Error>> {
    let io = Server::new(config())?;

    io.of("/foo").on_connection(|socket| {
        socket.on("getId", reply_id);
    });
    // Namespaces that only need to exist.
    for name in ["/timeout_socket", "/valid", "/asd"] {
        io.of(name).on_connection(|_socket| {});
    }
    io.of("/abc").on_connection(|socket| {
        let _ = socket.emit(
            "handshake",
            Payload::args(vec![socket.handshake().to_json()]),
        );
    });

    // server.ts tests `socket.request._query.fail`: present and not empty.
    io.use_middleware(|socket| async move {
        if socket
            .handshake()
            .query()
            .get("fail")
            .is_some_and(|v| !v.is_empty())
        {
            return Err(ConnectError::new("Auth failed (main namespace)"));
        }
        Ok(())
    });
    io.of("/no").use_middleware(|_socket| async move {
        Err(ConnectError::new("Auth failed (custom namespace)"))
    });

    io.on_connection(main_namespace);
    Ok(io)
}

/// The main namespace's handlers.
fn main_namespace(socket: &SocketRef) {
    plain_events(socket);
    binary_events(socket);
    ordered_events(socket);
    socket.on("getHandshake", |socket, mut event| {
        event.ack(Payload::args(vec![socket.handshake().to_json()]));
    });
    socket.on("getId", reply_id);
}

/// Events without binary data: `hi`, `echo`, `ack`, the dates, `getUtf8`, `false`.
fn plain_events(socket: &SocketRef) {
    socket.on("hi", |socket, _event| emit(socket, "hi", vec![]));
    socket.on("echo", |_socket, mut event| {
        // `cb(arg)`: the first argument back (undefined serializes as null), binary kept.
        let payload = std::mem::take(&mut event.payload).into_first();
        event.ack(payload);
    });
    socket.on("ack", |socket, _event| {
        let socket = socket.clone();
        tokio::spawn(async move {
            let Ok(reply) = socket.emit_with_ack("ack", Payload::new()).await else {
                return;
            };
            if reply.args.first() == Some(&json!(5)) && truthy(reply.args.get(1), "test") {
                emit(&socket, "got it", vec![]);
            }
        });
    });
    socket.on("getAckDate", |_socket, mut event| {
        event.ack(Payload::args(vec![now_json()]));
    });
    socket.on("getDate", |socket, _event| {
        emit(socket, "takeDate", vec![now_json()]);
    });
    socket.on("getDateObj", |socket, _event| {
        emit(socket, "takeDateObj", vec![json!({ "date": now_json() })]);
    });
    socket.on("getUtf8", |socket, _event| {
        for text in [
            "てすと",
            "Я Б Г Д Ж Й",
            "Ä ä Ü ü ß",
            "utf8 — string",
            "utf8 — string",
        ] {
            emit(socket, "takeUtf8", vec![json!(text)]);
        }
    });
    socket.on("false", |socket, _event| {
        emit(socket, "false", vec![json!(false)])
    });
}

/// Binary data both ways: `doge`, `getbin`, `buffa`, `blob`, `jsonbuff`, `jsonblob`.
fn binary_events(socket: &SocketRef) {
    socket.on("doge", |socket, _event| {
        let _ = socket.emit("doge", Payload::new().binary(&b"asdfasdf"[..]));
    });
    socket.on("getbin", |socket, _event| {
        let _ = socket.emit("takebin", Payload::new().binary(&b"asdfasdf"[..]));
    });
    socket.on("buffa", |socket, event| {
        if event.payload.bytes(0).is_some() {
            emit(socket, "buffack", vec![]);
        }
    });
    socket.on("blob", |socket, event| {
        if event.payload.bytes(0).is_some() {
            emit(socket, "back", vec![]);
        }
    });
    socket.on("jsonbuff", |socket, event| {
        if is_mixed(&event) {
            emit(socket, "jsonbuff-ack", vec![]);
        }
    });
    socket.on("jsonblob", |socket, event| {
        if is_mixed(&event) {
            emit(socket, "jsonblob-ack", vec![]);
        }
    });
}

/// Packets sent in order arrive in order: `abuff1`/`abuff2` and `blob1`..`blob3`.
fn ordered_events(socket: &SocketRef) {
    // Buffers sent in order arrive in order.
    let abuff1 = Arc::new(AtomicBool::new(false));
    let seen = abuff1.clone();
    socket.on("abuff1", move |_socket, event| {
        if event.payload.bytes(0).is_some() {
            seen.store(true, Ordering::Release);
        }
    });
    socket.on("abuff2", move |socket, _event| {
        if abuff1.load(Ordering::Acquire) {
            emit(socket, "abuff2-ack", vec![]);
        }
    });

    // Blobs sent in order arrive in order.
    let blob1 = Arc::new(AtomicBool::new(false));
    let blob2 = Arc::new(AtomicBool::new(false));
    let seen1 = blob1.clone();
    socket.on("blob1", move |_socket, event| {
        if event.payload.bytes(0).is_some() {
            seen1.store(true, Ordering::Release);
        }
    });
    let (after1, seen2) = (blob1.clone(), blob2.clone());
    socket.on("blob2", move |_socket, event| {
        if after1.load(Ordering::Acquire) && event.payload.args.first() == Some(&json!("second")) {
            seen2.store(true, Ordering::Release);
        }
    });
    socket.on("blob3", move |socket, event| {
        if event.payload.bytes(0).is_some()
            && blob1.load(Ordering::Acquire)
            && blob2.load(Ordering::Acquire)
        {
            emit(socket, "blob3-ack", vec![]);
        }
    });
}

/// `getId`: acknowledges with the socket id.
fn reply_id(socket: &SocketRef, mut event: Event) {
    event.ack(Payload::args(vec![json!(socket.id().as_str())]));
}

fn emit(socket: &SocketRef, event: &str, args: Vec<Value>) {
    let _ = socket.emit(event, Payload::args(args));
}

/// `{ hello: "lol", message: <binary>, goodbye: "gotcha" }`, what `jsonbuff` and `jsonblob`
/// expect.
fn is_mixed(event: &Event) -> bool {
    let Some(a) = event.payload.args.first() else {
        return false;
    };
    a.get("hello") == Some(&json!("lol"))
        && a.get("goodbye") == Some(&json!("gotcha"))
        && a.get("message")
            .and_then(|m| event.payload.attachment_for(m))
            .is_some()
}

/// JavaScript truthiness of `value[key]`.
fn truthy(value: Option<&Value>, key: &str) -> bool {
    match value.and_then(|v| v.get(key)) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// `new Date()` as JSON: `Date.prototype.toJSON`, the ISO 8601 text.
fn now_json() -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    json!(switchboard::time::iso8601(
        now.as_secs() as i64,
        now.subsec_millis()
    ))
}
