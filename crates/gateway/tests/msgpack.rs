//! `--parser msgpack` with the official `socket.io-client` using `socket.io-msgpack-parser`
//! (pinned in `tests/clients/package-lock.json`): events, acks both ways, binary in and out and
//! rooms over both transports on one gateway; then a msgpack gateway and a default-parser
//! gateway on one real redis-server delivering to each other, and what a client with the other
//! parser gets.

#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
mod support;

use cluster_support::{bin, eventually, unbin, ClientDriver, RedisServer};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::process::Command;

struct Gw(support::GatewayProcess);

impl Gw {
    async fn start(parser: &str, redis_url: Option<&str>, node_id: &str) -> Gw {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--parser", parser, "--publish-scope", "any"])
            .env("RUST_LOG", "info");
        if let Some(url) = redis_url {
            cmd.args(["--redis-url", url, "--node-id", node_id]);
        }
        Gw(support::GatewayProcess::spawn(cmd, &format!("gateway {node_id}")).await)
    }

    fn url(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    async fn ready(&self) -> bool {
        support::admin_get(self.0.admin, "/ready").await.0 == 200
    }

    /// The sum of the metric lines starting with `prefix` (name and labels).
    async fn metric(&self, prefix: &str) -> f64 {
        let (_, body) = support::admin_get(self.0.admin, "/metrics").await;
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Connects socket `name` with `parser` on `transports`.
async fn connect(c: &ClientDriver, name: &str, url: &str, parser: &str, transports: Value) {
    c.connect_with(json!({
        "name": name, "url": url, "nsp": "/", "parser": parser, "transports": transports,
    }))
    .await;
}

async fn ack(c: &ClientDriver, name: &str, event: &str, arg: Value) -> Value {
    c.emit_with_ack(name, event, json!([arg]), 5000).await[0].clone()
}

async fn join(c: &ClientDriver, name: &str, room: &str) {
    let got = ack(c, name, "join", json!(room)).await;
    assert_eq!(got["ok"], json!(true), "{name} joins {room}: {got}");
}

async fn publish(c: &ClientDriver, from: &str, req: Value) -> Value {
    let got = c.emit_with_ack(from, "publish", json!([req]), 10_000).await[0].clone();
    assert_eq!(got["ok"], json!(true), "{from} publishes: {got}");
    got
}

/// The single argument of the first `event` that `name` received.
async fn received(c: &ClientDriver, name: &str, event: &str) -> Value {
    c.wait(name, event, 1, 5000).await[0]["args"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_clients_on_one_gateway() {
    cluster_support::require_js();
    let gw = Gw::start("msgpack", None, "mp-1").await;
    let c = ClientDriver::spawn().await;
    let url = gw.url();
    connect(&c, "ws", &url, "msgpack", json!(["websocket"])).await;
    connect(&c, "poll", &url, "msgpack", json!(["polling"])).await;
    connect(&c, "up", &url, "msgpack", json!(["polling", "websocket"])).await;

    // Client-to-server acks: the relay answers join with its rooms.
    let got = ack(&c, "ws", "join", json!(["r", "s"])).await;
    assert_eq!(got, json!({"ok": true, "rooms": ["r", "s"]}));
    join(&c, "poll", "r").await;
    join(&c, "up", "other").await;

    // Events with binary inside, in and out, on both transports.
    let bytes: Vec<u8> = (0..=255u8).collect();
    let data = json!({"text": "héllo", "n": 1.5, "neg": -7, "big": 1u64 << 40, "none": null,
        "list": [true, false, bin(&bytes)], "bin": bin(&[1, 2, 3])});
    publish(&c, "ws", json!({"to": "r", "event": "chat", "data": data})).await;
    assert_eq!(received(&c, "poll", "chat").await, data);
    // A bare Buffer from the polling client (a `b<base64>` message) to the WebSocket one.
    let big = vec![7u8; 100_000];
    publish(
        &c,
        "poll",
        json!({"to": "r", "event": "blob", "data": bin(&big), "self": true}),
    )
    .await;
    for name in ["ws", "poll"] {
        let got = received(&c, name, "blob").await;
        assert_eq!(unbin(&got).as_deref(), Some(&big[..]), "{name}");
    }

    // Server-to-client acks: a publish with a timeout collects each recipient's ack.
    let got = publish(
        &c,
        "up",
        json!({"to": ["r", "other"], "event": "ask", "data": 1, "timeout": 3000, "self": true}),
    )
    .await;
    let mut responses: Vec<String> = got["responses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    responses.sort();
    assert_eq!(responses, ["ack-poll", "ack-up", "ack-ws"]);

    // Rooms: only members get a room's events; leaving stops them.
    let got = ack(&c, "poll", "leave", json!("r")).await;
    assert_eq!(got, json!({"ok": true, "rooms": []}));
    publish(
        &c,
        "ws",
        json!({"to": "r", "event": "after-leave", "data": 2, "self": true}),
    )
    .await;
    assert_eq!(received(&c, "ws", "after-leave").await, json!(2));
    // Everything sent to a socket before an ack reaches it first.
    join(&c, "poll", "barrier").await;
    join(&c, "up", "barrier").await;
    assert!(c.events_named("poll", "after-leave").await.is_empty());
    assert!(c.events_named("up", "after-leave").await.is_empty());
    assert!(c.events_named("up", "chat").await.is_empty());
    assert_eq!(
        gw.metric("switchboard_socketio_parse_errors_total").await,
        0.0
    );
    for name in ["ws", "poll", "up"] {
        assert_eq!(c.status(name).await, (true, None), "{name} still connected");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_and_default_gateways_deliver_to_each_other() {
    cluster_support::require_js();
    let redis = RedisServer::start().await;
    let mp = Gw::start("msgpack", Some(&redis.url()), "gw-msgpack").await;
    let text = Gw::start("default", Some(&redis.url()), "gw-default").await;
    for g in [&mp, &text] {
        eventually("gateway ready", Duration::from_secs(10), || async {
            g.ready().await
        })
        .await;
    }
    let c = ClientDriver::spawn().await;
    connect(&c, "m", &mp.url(), "msgpack", json!(["websocket"])).await;
    connect(&c, "m-poll", &mp.url(), "msgpack", json!(["polling"])).await;
    connect(&c, "d", &text.url(), "default", json!(["websocket"])).await;
    for name in ["m", "m-poll", "d"] {
        join(&c, name, "r").await;
    }

    // msgpack client -> default-parser client on the other node, binary included.
    let data = json!({"from": "m", "bytes": bin(&[0, 255, 10]), "f": 0.25});
    publish(&c, "m", json!({"to": "r", "event": "chat", "data": data})).await;
    assert_eq!(received(&c, "d", "chat").await, data);
    assert_eq!(received(&c, "m-poll", "chat").await, data);
    // And back: a default-parser client's binary event reaches the msgpack clients.
    let data = json!([bin(&[9; 2000]), "x", {"deep": [[bin(&[])]]}]);
    publish(&c, "d", json!({"to": "r", "event": "back", "data": data})).await;
    for name in ["m", "m-poll"] {
        assert_eq!(received(&c, name, "back").await, data, "{name}");
    }
    // Acks across the nodes and the parsers.
    let got = publish(
        &c,
        "d",
        json!({"to": "r", "event": "ask", "data": 0, "timeout": 3000}),
    )
    .await;
    let mut responses: Vec<String> = got["responses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    responses.sort();
    assert_eq!(responses, ["ack-m", "ack-m-poll"]);

    // A client with the other parser never connects, and its node counts why.
    for (gw, parser, kind) in [
        (&mp, "default", "text_message"),
        (&text, "msgpack", "unexpected_binary"),
    ] {
        let refused = c
            .try_connect_with(json!({
                "name": format!("wrong-{parser}"), "url": gw.url(), "nsp": "/",
                "parser": parser, "transports": ["websocket"], "timeout_ms": 2000,
            }))
            .await;
        assert!(refused.is_err(), "a {parser} client connected: {refused:?}");
        let label = format!("switchboard_socketio_parse_errors_total{{kind=\"{kind}\"}}");
        eventually(
            "the refused packet is counted",
            Duration::from_secs(5),
            || async { gw.metric(&label).await >= 1.0 },
        )
        .await;
    }
    // The right clients were not disturbed.
    for name in ["m", "m-poll", "d"] {
        assert_eq!(c.status(name).await, (true, None), "{name} still connected");
    }
}

/// The option from a TOML file, and a bad value: exit 64 naming the flag.
#[test]
fn parser_option_from_the_file_and_a_bad_value() {
    let bin = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        for (k, _) in std::env::vars() {
            if k.starts_with("SWITCHBOARD_") {
                cmd.env_remove(k);
            }
        }
        cmd
    };
    let path = std::env::temp_dir().join(format!("switchboard-parser-{}.toml", std::process::id()));
    std::fs::write(&path, "parser = \"msgpack\"\n").expect("write the config file");
    let out = bin()
        .arg("--config")
        .arg(&path)
        .arg("--print-config")
        .output()
        .expect("run");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().any(|l| l.starts_with("parser = \"msgpack\"")),
        "{text}"
    );
    let out = bin().args(["--parser", "json"]).output().expect("run");
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--parser") && err.contains("default, msgpack"),
        "{err}"
    );
}
