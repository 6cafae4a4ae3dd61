//! Connection state recovery (`--recovery-window`) with the official socket.io-client: on one
//! node, on a second node after the first is killed with SIGKILL (two gateways on one real
//! redis-server), and past the window (a fresh session). Each checks that the missed packets
//! arrive in order, each once.

#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
mod support;

use cluster_support::{eventually, ClientDriver, RedisServer};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::process::Command;

async fn gateway(window: &str, redis_url: Option<&str>, node_id: &str) -> support::GatewayProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--publish-scope", "any", "--recovery-window", window])
        .env("RUST_LOG", "info");
    if let Some(url) = redis_url {
        cmd.args(["--redis-url", url, "--node-id", node_id]);
    }
    let g = support::GatewayProcess::spawn(cmd, &format!("gateway {node_id}")).await;
    eventually("gateway ready", Duration::from_secs(10), || async {
        support::admin_get(g.admin, "/ready").await.0 == 200
    })
    .await;
    g
}

fn url(g: &support::GatewayProcess) -> String {
    format!("http://{}", g.addr)
}

/// The sum of the metric lines starting with `name`.
async fn metric(g: &support::GatewayProcess, name: &str) -> f64 {
    let (_, body) = support::admin_get(g.admin, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Connects `name` with reconnection on: it comes back `delay_ms` after losing its
/// connection, presenting its `pid` and last offset. WebSocket only, or long-polling only.
async fn connect_recovering(
    c: &ClientDriver,
    name: &str,
    url: &str,
    delay_ms: u64,
    polling: bool,
) -> String {
    let transports = match polling {
        true => json!(["polling"]),
        false => json!(["websocket"]),
    };
    c.connect_with(json!({
        "name": name,
        "url": url,
        "reconnection": true,
        "transports": transports,
        "opts": {
            "reconnectionDelay": delay_ms,
            "reconnectionDelayMax": delay_ms,
            "randomizationFactor": 0,
        },
    }))
    .await
}

async fn status(c: &ClientDriver, name: &str) -> Value {
    c.request(json!({"cmd": "status", "name": name})).await
}

async fn publish(c: &ClientDriver, from: &str, event: &str, data: Value) {
    let req = json!({"to": "r", "event": event, "data": data});
    let ack = c.emit_with_ack(from, "publish", json!([req]), 10_000).await;
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
}

async fn join(c: &ClientDriver, name: &str) {
    let ack = c.emit_with_ack(name, "join", json!(["r"]), 5000).await;
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
}

/// Waits for the `connects`-th connection of `name`; returns its status.
async fn reconnected(c: &ClientDriver, name: &str, connects: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = status(c, name).await;
        if last["connected"] == json!(true) && last["connects"] == json!(connects) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} did not reconnect: {last}");
}

/// The `m` events `name` received: each is `[n, offset]`; asserts the numbers are `0..n`
/// in order (none missing, none twice) and every offset a string.
async fn assert_all_in_order(c: &ClientDriver, name: &str, n: u64) {
    let got = c.wait(name, "m", n as usize, 10_000).await;
    let numbers: Vec<u64> = got
        .iter()
        .map(|e| {
            let args = e["args"].as_array().expect("args");
            assert_eq!(args.len(), 2, "data then offset: {e}");
            assert!(args[1].is_string(), "offset: {e}");
            args[0].as_u64().expect("a number")
        })
        .collect();
    assert_eq!(numbers, (0..n).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_on_one_node_with_missed_packets_in_order() {
    cluster_support::require_js();
    let g = gateway("2m", None, "solo").await;
    let c = ClientDriver::spawn().await;
    let sid = connect_recovering(&c, "a", &url(&g), 500, true).await;
    c.connect("pub", &url(&g), "/").await;
    join(&c, "a").await;
    publish(&c, "pub", "m", json!(0)).await;
    c.wait("a", "m", 1, 5000).await;

    c.request(json!({"cmd": "dropTransport", "name": "a"}))
        .await;
    for n in 1..50 {
        publish(&c, "pub", "m", json!(n)).await;
    }
    let st = reconnected(&c, "a", 2).await;
    assert_eq!(st["sid"], json!(sid), "same id: {st}");
    assert_eq!(st["recovered"], json!(true), "{st}");
    // Its room is back: live packets follow the replayed ones.
    publish(&c, "pub", "m", json!(50)).await;
    assert_all_in_order(&c, "a", 51).await;
    assert_eq!(
        metric(
            &g,
            "switchboard_socketio_recoveries_total{result=\"recovered\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_on_another_node_after_sigkill() {
    cluster_support::require_js();
    let redis = RedisServer::start().await;
    let mut g1 = gateway("2m", Some(&redis.url()), "gw-1").await;
    let g2 = gateway("2m", Some(&redis.url()), "gw-2").await;
    let c = ClientDriver::spawn().await;
    let sid = connect_recovering(&c, "a", &url(&g1), 1000, false).await;
    c.connect("pub", &url(&g2), "/").await;
    join(&c, "a").await;
    publish(&c, "pub", "m", json!(0)).await;
    c.wait("a", "m", 1, 5000).await;

    // The client's node dies without a word; its next connection goes to the other node.
    c.request(json!({"cmd": "setUrl", "name": "a", "url": url(&g2)}))
        .await;
    g1.child.start_kill().expect("SIGKILL gw-1");
    let _ = g1.child.wait().await;
    for n in 1..40 {
        publish(&c, "pub", "m", json!(n)).await;
    }
    // Binary arguments come back from the stream intact.
    publish(&c, "pub", "bin", cluster_support::bin(&[0, 1, 2, 255])).await;
    let st = reconnected(&c, "a", 2).await;
    assert_eq!(st["sid"], json!(sid), "same id on gw-2: {st}");
    assert_eq!(st["recovered"], json!(true), "{st}");
    publish(&c, "pub", "m", json!(40)).await;
    assert_all_in_order(&c, "a", 41).await;
    let got = c.wait("a", "bin", 1, 5000).await;
    let bytes = cluster_support::unbin(&got[0]["args"][0]);
    assert_eq!(bytes.as_deref(), Some(&[0u8, 1, 2, 255][..]), "{got:?}");
    assert_eq!(
        metric(
            &g2,
            "switchboard_socketio_recoveries_total{result=\"recovered\"}"
        )
        .await,
        1.0
    );
    // In Redis: the namespace's packet stream, and the live sessions' snapshots (a on gw-2,
    // pub) each with a TTL of the window.
    let xlen = redis
        .command(&["XLEN", "socket.io-recovery#/#packets"])
        .await;
    let xlen: u64 = xlen.trim().trim_start_matches(':').parse().unwrap_or(0);
    assert!(xlen >= 42, "XLEN {xlen}");
    let keys = redis
        .command(&["KEYS", "socket.io-recovery#/#session#*"])
        .await;
    let keys: Vec<&str> = keys
        .lines()
        .filter(|l| l.starts_with("socket.io-recovery"))
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        let ttl = redis.command(&["PTTL", key]).await;
        let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap_or(-1);
        assert!(ttl > 0 && ttl <= 120_000, "{key}: PTTL {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_window_a_fresh_session() {
    cluster_support::require_js();
    let g = gateway("1", None, "solo").await;
    let c = ClientDriver::spawn().await;
    let sid = connect_recovering(&c, "a", &url(&g), 2500, false).await;
    c.connect("pub", &url(&g), "/").await;
    join(&c, "a").await;
    publish(&c, "pub", "m", json!(0)).await;
    c.wait("a", "m", 1, 5000).await;
    c.request(json!({"cmd": "dropTransport", "name": "a"}))
        .await;
    publish(&c, "pub", "m", json!(1)).await;
    let st = reconnected(&c, "a", 2).await;
    assert_ne!(st["sid"], json!(sid), "a new id: {st}");
    assert_eq!(st["recovered"], json!(false), "{st}");
    // Not in the room any more, and nothing replayed.
    publish(&c, "pub", "m", json!(2)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.events_named("a", "m").await.len(), 1);
    let failed = metric(
        &g,
        "switchboard_socketio_recoveries_total{result=\"expired\"}",
    )
    .await
        + metric(
            &g,
            "switchboard_socketio_recoveries_total{result=\"unknown_session\"}",
        )
        .await;
    assert_eq!(failed, 1.0);
}

#[test]
fn a_bad_recovery_window_exits_64_naming_the_flag() {
    for (value, says) in [("soon", "--recovery-window"), ("48h", "at most 24h")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["--recovery-window", value])
            .env_remove("SWITCHBOARD_RECOVERY_WINDOW")
            .output()
            .expect("run the switchboard binary");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{value}: {err}");
        assert!(
            err.contains("--recovery-window") && err.contains(says),
            "{value}: {err}"
        );
    }
}
