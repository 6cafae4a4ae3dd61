//! Self-check of the cluster test harness (`tests/support`): real Node `socket.io@4` servers on
//! `@socket.io/redis-adapter@8` sharing one throw-away redis-server, official `socket.io-client` sockets in the
//! client driver, and the `@socket.io/redis-emitter@5` script. No Rust adapter involved: when this fails, the
//! harness (or its prerequisites) is broken, not the adapter.
//!
//! Prerequisites (installed by `scripts/test.sh`): `npm ci` in `tests/clients`, `redis-server` 7.x.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use support::{bin, eventually, run_emitter, unbin, ClientDriver, NodeServer, RedisServer};

/// How long deliveries may take before a `wait` fails.
const WAIT_MS: u64 = 3000;
/// Pause before checking that nothing more (e.g. a duplicate) arrived.
const SETTLE: Duration = Duration::from_millis(300);

fn strings(values: &[Value]) -> BTreeSet<String> {
    values
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {v}"))
                .to_string()
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `a` on `node1`, `b` on `node2`, both in room `r`.
async fn two_clients_in_room_r(
    driver: &ClientDriver,
    node1: &NodeServer,
    node2: &NodeServer,
) -> (String, String) {
    let sid_a = driver.connect("a", &node1.url(), "/").await;
    let sid_b = driver
        .connect_with(json!({ "name": "b", "url": node2.url(), "transports": ["websocket"] }))
        .await;
    assert_ne!(sid_a, sid_b);
    for name in ["a", "b"] {
        let ack = driver.emit_with_ack(name, "join", json!(["r"]), 2000).await;
        assert_eq!(ack, json!(["joined"]), "join ack of {name}");
    }
    (sid_a, sid_b)
}

/// Waits until both `a` and `b` got `event` once, checks that no duplicate follows, returns their args.
async fn both_receive_once(driver: &ClientDriver, event: &str) -> Vec<Value> {
    let mut args = Vec::new();
    for name in ["a", "b"] {
        let got = driver.wait(name, event, 1, WAIT_MS).await;
        args.push(got[0]["args"].clone());
    }
    tokio::time::sleep(SETTLE).await;
    for name in ["a", "b"] {
        let got = driver.events_named(name, event).await;
        assert_eq!(
            got.len(),
            1,
            "{name} must get {event:?} exactly once, got {got:?}"
        );
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_cluster_of_two_node_servers() {
    let mut redis = RedisServer::start().await;
    let node1 = NodeServer::start(&redis.url(), "classic", "node1").await;
    let node2 = NodeServer::start(&redis.url(), "classic", "node2").await;
    let driver = ClientDriver::spawn().await;
    let (sid_a, sid_b) = two_clients_in_room_r(&driver, &node1, &node2).await;

    // Both servers see each other (PUBSUB NUMSUB on the request channel), for / and /admin.
    assert_eq!(node1.server_count("/").await, 2);
    assert_eq!(node2.server_count("/admin").await, 2);
    assert_eq!(redis.numsub("socket.io-request#/#").await, 2);

    // Room broadcast from node1 reaches the local and the remote client exactly once.
    node1
        .request(json!({ "cmd": "emit", "rooms": ["r"], "event": "hello", "args": ["world", 42, { "k": [true, null] }] }))
        .await;
    for args in both_receive_once(&driver, "hello").await {
        assert_eq!(args, json!(["world", 42, { "k": [true, null] }]));
    }

    // Binary arguments round-trip (top level and nested) through the msgpack-encoded redis message.
    node1
        .request(json!({ "cmd": "emit", "rooms": ["r"], "event": "bytes", "args": [bin(&[1, 2, 3]), { "nested": bin(&[]) }] }))
        .await;
    for args in both_receive_once(&driver, "bytes").await {
        assert_eq!(unbin(&args[0]), Some(vec![1, 2, 3]), "got {args}");
        assert_eq!(unbin(&args[1]["nested"]), Some(vec![]), "got {args}");
    }

    // `except` is honoured across servers.
    node2
        .request(json!({ "cmd": "emit", "rooms": ["r"], "except": [sid_a.clone()], "event": "not-a", "args": [] }))
        .await;
    driver.wait("b", "not-a", 1, WAIT_MS).await;
    tokio::time::sleep(SETTLE).await;
    assert!(driver.events_named("a", "not-a").await.is_empty());

    // fetchSockets on node2 sees both sockets with their rooms and data.
    let answer = node2
        .request(json!({ "cmd": "fetchSockets", "rooms": ["r"] }))
        .await;
    let sockets = answer["sockets"].as_array().expect("sockets array").clone();
    let ids: Vec<Value> = sockets.iter().map(|s| s["id"].clone()).collect();
    assert_eq!(strings(&ids), set(&[&sid_a, &sid_b]));
    for s in &sockets {
        let expected_server = if s["id"] == json!(sid_a) {
            "node1"
        } else {
            "node2"
        };
        assert_eq!(s["data"]["server"], json!(expected_server), "socket {s}");
        let rooms = strings(s["rooms"].as_array().expect("rooms array"));
        assert!(rooms.contains("r"), "socket {s}");
    }
    assert_eq!(
        node1.fetch_socket_ids("/", &["nobody-here"]).await,
        Vec::<String>::new()
    );

    // The redis emitter reaches both servers' clients.
    driver.clear("a").await;
    driver.clear("b").await;
    run_emitter(
        &redis.url(),
        json!({ "cmd": "emit", "rooms": ["r"], "event": "from-emitter", "args": ["e", bin(&[9, 8])] }),
    )
    .await;
    for args in both_receive_once(&driver, "from-emitter").await {
        assert_eq!(args[0], json!("e"));
        assert_eq!(unbin(&args[1]), Some(vec![9, 8]));
    }

    // Broadcast with acknowledgements collects one ack per client, local and remote.
    let answer = node1
        .request(json!({ "cmd": "emitWithAck", "rooms": ["r"], "event": "ask", "args": [1], "timeout_ms": 3000 }))
        .await;
    assert_eq!(answer["err"], Value::Null, "{answer}");
    let responses = answer["responses"].as_array().expect("responses array");
    assert_eq!(strings(responses), set(&["ack-a", "ack-b"]));
    assert_eq!(responses.len(), 2);

    // serverSideEmit with ack: node2 answers node1.
    let answer = node1
        .request(json!({ "cmd": "serverSideEmitWithAck", "event": "sse", "args": ["ping", bin(&[7])], "timeout_ms": 3000 }))
        .await;
    assert_eq!(answer["err"], Value::Null, "{answer}");
    assert_eq!(answer["responses"], json!(["pong-node2"]));
    let received = node2.request(json!({ "cmd": "sseReceived" })).await;
    assert_eq!(
        received["events"].as_array().map(Vec::len),
        Some(1),
        "{received}"
    );
    assert_eq!(received["events"][0][0], json!("ping"));

    // A failing request is reported, not fatal to the server.
    let err = node1
        .try_request(
            json!({ "cmd": "remoteEmit", "socket_id": "no-such-socket", "event": "x", "args": [] }),
        )
        .await
        .expect_err("remoteEmit to an unknown socket must fail");
    assert!(err.contains("not found"), "{err}");
    node1
        .request(
            json!({ "cmd": "remoteEmit", "socket_id": sid_b, "event": "direct", "args": ["to-b"] }),
        )
        .await;
    assert_eq!(
        driver.wait("b", "direct", 1, WAIT_MS).await[0]["args"],
        json!(["to-b"])
    );

    // Redis can be killed and restarted on the same port; the Node servers reconnect and resubscribe.
    redis.kill().await;
    assert!(!redis.ping().await, "redis must be gone after kill");
    redis.restart().await;
    assert!(redis.ping().await);
    assert_eq!(redis.command(&["PING"]).await, "+PONG\r\n");
    eventually(
        "both node servers resubscribed after the redis restart",
        Duration::from_secs(10),
        || async {
            redis.numsub("socket.io-request#/#").await == 2
                && redis.numsub("socket.io-request#/admin#").await == 2
        },
    )
    .await;
    driver.clear("a").await;
    driver.clear("b").await;
    node2
        .request(json!({ "cmd": "emit", "rooms": ["r"], "event": "after-restart", "args": [] }))
        .await;
    both_receive_once(&driver, "after-restart").await;

    let (connected, reason) = driver.status("a").await;
    assert!(connected && reason.is_none());
    driver.disconnect("a").await;
    eventually("a is disconnected", Duration::from_secs(3), || async {
        driver.status("a").await == (false, Some("io client disconnect".to_string()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_cluster_of_two_node_servers() {
    let redis = RedisServer::start().await;
    let node1 = NodeServer::start(&redis.url(), "sharded", "shard1").await;
    let node2 = NodeServer::start(&redis.url(), "sharded", "shard2").await;
    let driver = ClientDriver::spawn().await;
    two_clients_in_room_r(&driver, &node1, &node2).await;

    // Sharded Pub/Sub: the namespace channel and (dynamic mode) the room's own channel.
    assert_eq!(node1.server_count("/").await, 2);
    assert_eq!(redis.shard_numsub("socket.io#/#").await, 2);
    assert_eq!(redis.shard_numsub("socket.io#/#r#").await, 2);
    assert_eq!(redis.numsub("socket.io-request#/#").await, 0);

    node2
        .request(json!({ "cmd": "emit", "rooms": ["r"], "event": "sharded-hello", "args": [bin(&[1, 2, 3])] }))
        .await;
    for args in both_receive_once(&driver, "sharded-hello").await {
        assert_eq!(unbin(&args[0]), Some(vec![1, 2, 3]), "got {args}");
    }
}
