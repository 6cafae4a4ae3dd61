//! The socketioxide contender for `switchboard-load`: socketioxide 0.18 serving the relay events
//! of the switchboard gateway (README.md, "Relay events"): `join` / `leave` (a room or an array)
//! acked with `{ok, rooms}`, `publish` `{to, event, data, self}` acked with `{ok: true}`.
//! One tokio worker thread, listen backlog 4096, handlers registered in a synchronous connect
//! handler (so before the CONNECT reply). With `REDIS_URL` set the nodes share rooms through
//! socketioxide-redis (its own wire, not compatible with Node's adapter); otherwise in memory.
//!
//! Usage: `PORT=3000 [REDIS_URL=redis://127.0.0.1:6379] socketioxide-peer`

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use socketioxide_redis::drivers::redis::redis_client as redis;
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};
use std::net::SocketAddr;

const MAX_ROOM: usize = 256;

fn room_list(v: &Value) -> Option<Vec<String>> {
    let list: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    if list.is_empty() {
        return None;
    }
    list.into_iter()
        .map(|r| match r.as_str() {
            Some(s) if !s.is_empty() && s.len() <= MAX_ROOM => Some(s.to_owned()),
            _ => None,
        })
        .collect()
}

fn rooms_of<A: Adapter>(s: &SocketRef<A>) -> Vec<String> {
    let own = s.id.to_string();
    s.rooms()
        .into_iter()
        .map(|r| r.to_string())
        .filter(|r| *r != own)
        .collect()
}

/// Registers the relay handlers. It runs as a connect middleware, which socketioxide awaits
/// before it sends the CONNECT reply, so a client's first event always finds its handler.
async fn register<A: Adapter>(s: SocketRef<A>) -> Result<(), std::convert::Infallible> {
    s.on(
        "join",
        async |s: SocketRef<A>, Data(v): Data<Value>, ack: AckSender<A>| {
            let reply = match room_list(&v) {
                Some(list) => {
                    s.join(list);
                    json!({"ok": true, "rooms": rooms_of(&s)})
                }
                None => json!({"ok": false, "error": "invalid room"}),
            };
            let _ = ack.send(&reply);
        },
    );
    s.on(
        "leave",
        async |s: SocketRef<A>, Data(v): Data<Value>, ack: AckSender<A>| {
            let reply = match room_list(&v) {
                Some(list) => {
                    s.leave(list);
                    json!({"ok": true, "rooms": rooms_of(&s)})
                }
                None => json!({"ok": false, "error": "invalid room"}),
            };
            let _ = ack.send(&reply);
        },
    );
    s.on(
        "publish",
        async |s: SocketRef<A>, Data(v): Data<Value>, ack: AckSender<A>| {
            let Some(event) = v.get("event").and_then(Value::as_str).map(str::to_owned) else {
                let _ = ack.send(&json!({"ok": false, "error": "invalid publish"}));
                return;
            };
            let data = v.get("data").cloned().unwrap_or(Value::Null);
            let include_self = v.get("self") == Some(&Value::Bool(true));
            let op = match v.get("to") {
                None if include_self => s.broadcast().except(Vec::<String>::new()),
                None => s.broadcast(),
                Some(to) => match room_list(to) {
                    Some(list) if include_self => s.within(list),
                    Some(list) => s.to(list),
                    None => {
                        let _ = ack.send(&json!({"ok": false, "error": "invalid room"}));
                        return;
                    }
                },
            };
            let reply = match op.emit(&event, &data).await {
                Ok(()) => json!({"ok": true}),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            };
            let _ = ack.send(&reply);
        },
    );
    Ok(())
}

async fn on_connect<A: Adapter>(_s: SocketRef<A>) {}

async fn serve<S, B>(listener: tokio::net::TcpListener, svc: S)
where
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let port: u16 = match std::env::var("PORT").unwrap_or_else(|_| "3000".into()).parse() {
        Ok(p) => p,
        Err(_) => {
            eprintln!("socketioxide-peer: PORT must be a TCP port");
            std::process::exit(64);
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let socket = match tokio::net::TcpSocket::new_v4() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("socketioxide-peer: socket: {e}");
            std::process::exit(1);
        }
    };
    let _ = socket.set_reuseaddr(true);
    let listener = match socket.bind(addr).and_then(|()| socket.listen(4096)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("socketioxide-peer: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    match std::env::var("REDIS_URL") {
        Ok(url) => {
            let url = if url.contains("protocol=") { url } else { format!("{url}?protocol=resp3") };
            let adapter = async {
                let client = redis::Client::open(url.as_str())?;
                RedisAdapterCtr::new_with_redis(&client).await
            };
            let adapter = match adapter.await {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("socketioxide-peer: redis {url}: {e}");
                    std::process::exit(1);
                }
            };
            let (svc, io) = SocketIo::builder()
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_svc();
            if let Err(e) = io.ns("/", on_connect.with(register)).await {
                eprintln!("socketioxide-peer: namespace init: {e}");
                std::process::exit(1);
            }
            eprintln!("socketioxide peer listening on {addr} (redis)");
            serve(listener, svc).await;
        }
        Err(_) => {
            let (svc, io) = SocketIo::builder().build_svc();
            io.ns("/", on_connect.with(register));
            eprintln!("socketioxide peer listening on {addr}");
            serve(listener, svc).await;
        }
    }
}
