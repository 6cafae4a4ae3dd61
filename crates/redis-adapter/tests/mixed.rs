//! A Node.js `socket.io@4` server on `@socket.io/redis-adapter@8` and two Switchboard nodes on
//! one real redis-server, plus a backend on `@socket.io/redis-emitter@5`: every operation works
//! in both directions.

mod sbnode;
mod support;

use sbnode::SbNode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use support::{bin, eventually, run_emitter, unbin, ClientDriver, NodeServer, RedisServer};
use switchboard::Payload;
use switchboard_redis::Mode;

const SETTLE: Duration = Duration::from_millis(300);

fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn fetched_ids(answer: &Value) -> BTreeSet<String> {
    answer["sockets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["id"].as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn assert_decoded_everything(nodes: &[&SbNode]) {
    for n in nodes {
        assert_eq!(
            n.redis.metrics().decode_errors.get(),
            0,
            "{} decoded everything",
            n.name
        );
    }
}

/// Node server `js`, Switchboard nodes sb-1 and sb-2; clients a (js), b (sb-1), c (sb-2), all in r.
async fn mixed(
    mode: Mode,
) -> (
    RedisServer,
    NodeServer,
    SbNode,
    SbNode,
    ClientDriver,
    [String; 3],
) {
    support::require_js();
    let redis = RedisServer::start().await;
    let mode_name = match mode {
        Mode::Classic => "classic",
        Mode::Sharded => "sharded",
    };
    let js = NodeServer::start(&redis.url(), mode_name, "js").await;
    let s1 = SbNode::start(&redis.url(), mode, "sb-1").await;
    let s2 = SbNode::start(&redis.url(), mode, "sb-2").await;
    let c = ClientDriver::spawn().await;
    let a = c.connect("a", &js.url(), "/").await;
    let b = c.connect("b", &s1.url(), "/").await;
    let cc = c.connect("c", &s2.url(), "/").await;
    for name in ["a", "b", "c"] {
        assert_eq!(
            c.emit_with_ack(name, "join", json!(["r"]), 5000).await,
            json!(["joined"])
        );
    }
    (redis, js, s1, s2, c, [a, b, cc])
}

async fn broadcasts_both_ways(c: &ClientDriver, js: &NodeServer, s1: &SbNode, round: &str) {
    // Node → everyone.
    let ev = format!("from-js-{round}");
    js.request(json!({"cmd": "emit", "rooms": ["r"], "event": ev, "args": [1, {"k": "v"}]}))
        .await;
    for name in ["a", "b", "c"] {
        let got = c.wait(name, &ev, 1, 5000).await;
        assert_eq!(got[0]["args"], json!([1, {"k": "v"}]), "{name}");
    }
    // Switchboard → everyone.
    let ev = format!("from-sb-{round}");
    s1.io.to("r").emit(&ev, json!({"n": 2.5})).expect("emit");
    for name in ["a", "b", "c"] {
        let got = c.wait(name, &ev, 1, 5000).await;
        assert_eq!(got[0]["args"], json!([{"n": 2.5}]), "{name}");
    }
    tokio::time::sleep(SETTLE).await;
    for name in ["a", "b", "c"] {
        let events = c.events(name).await;
        let n = events
            .iter()
            .filter(|e| e["event"].as_str().is_some_and(|s| s.ends_with(round)))
            .count();
        assert_eq!(n, 2, "{name} got each broadcast exactly once: {events:?}");
    }
}

async fn binary_both_ways(c: &ClientDriver, js: &NodeServer, s2: &SbNode) {
    js.request(
        json!({"cmd": "emit", "rooms": ["r"], "event": "jsbin", "args": [bin(&[0, 1, 255])]}),
    )
    .await;
    for name in ["b", "c"] {
        let got = c.wait(name, "jsbin", 1, 5000).await;
        assert_eq!(
            unbin(&got[0]["args"][0]),
            Some(vec![0, 1, 255]),
            "{name}: {got:?}"
        );
    }
    s2.io
        .to("r")
        .emit("sbbin", Payload::new().binary(vec![7u8; 3]).arg(&"t"))
        .expect("emit");
    let got = c.wait("a", "sbbin", 1, 5000).await;
    assert_eq!(unbin(&got[0]["args"][0]), Some(vec![7, 7, 7]), "{got:?}");
    assert_eq!(got[0]["args"][1], json!("t"));
}

async fn fetch_both_ways(js: &NodeServer, s1: &SbNode, ids: &[String; 3]) {
    let all = set(ids.iter().cloned());
    let answer = js.request(json!({"cmd": "fetchSockets"})).await;
    assert_eq!(
        fetched_ids(&answer),
        all,
        "Node sees Switchboard sockets: {answer}"
    );
    let servers: BTreeSet<String> = answer["sockets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["data"]["server"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(servers, set(["js", "sb-1", "sb-2"]));
    // Switchboard's handshakes have Node's shape, `time` being a Date string as Node's.
    for s in answer["sockets"].as_array().into_iter().flatten() {
        let hs = &s["handshake"];
        for key in [
            "headers", "time", "address", "xdomain", "secure", "issued", "url", "query", "auth",
        ] {
            assert!(
                hs.get(key).is_some(),
                "handshake of {} lacks {key}: {hs}",
                s["data"]["server"]
            );
        }
        let time = hs["time"].as_str().unwrap_or_default();
        assert!(time.contains(" GMT"), "time as Date text: {time}");
    }
    let from_sb = s1.io.fetch_sockets().await.expect("fetch");
    assert_eq!(set(from_sb.iter().map(|s| s.id.clone())), all);
    let js_socket = from_sb
        .iter()
        .find(|s| s.id == ids[0])
        .expect("Node's socket");
    assert_eq!(js_socket.data["server"], json!("js"));
    assert!(js_socket.rooms.contains(&"r".to_owned()));
}

async fn acks_both_ways(js: &NodeServer, s2: &SbNode) {
    let answer = js
        .request(json!({"cmd": "emitWithAck", "rooms": ["r"], "event": "ask", "args": [1], "timeout_ms": 3000}))
        .await;
    assert_eq!(answer["err"], Value::Null, "{answer}");
    assert_eq!(
        strings(&answer["responses"]),
        set(["ack-a", "ack-b", "ack-c"])
    );
    let acks = s2
        .io
        .to("r")
        .timeout(Duration::from_secs(3))
        .emit_with_ack("ask", json!(2))
        .await
        .expect("emit");
    assert!(!acks.timed_out, "{acks:?}");
    let got: BTreeSet<String> = acks
        .responses
        .iter()
        .filter_map(|p| p.args[0].as_str().map(str::to_owned))
        .collect();
    assert_eq!(got, set(["ack-a", "ack-b", "ack-c"]));
}

async fn join_leave_both_ways(js: &NodeServer, s1: &SbNode, s2: &SbNode, ids: &[String; 3]) {
    let [a, b, _] = ids;
    // Node makes b (on sb-1) join j; Switchboard sees it.
    js.request(json!({"cmd": "socketsJoin", "rooms": [b], "join": ["j"]}))
        .await;
    eventually("b joined j", Duration::from_secs(5), || async {
        s2.io
            .in_("j")
            .fetch_sockets()
            .await
            .map(|s| s.len() == 1 && s[0].id == *b)
            .unwrap_or(false)
    })
    .await;
    // Switchboard makes a (on Node) join k; Node sees it.
    s2.io.in_(a.as_str()).sockets_join("k");
    eventually("a joined k", Duration::from_secs(5), || async {
        js.fetch_socket_ids("/", &["k"]).await == vec![a.clone()]
    })
    .await;
    // ... and leave again.
    s1.io.in_(a.as_str()).sockets_leave("k");
    eventually("a left k", Duration::from_secs(5), || async {
        js.fetch_socket_ids("/", &["k"]).await.is_empty()
    })
    .await;
    js.request(json!({"cmd": "socketsLeave", "rooms": [b], "leave": ["j"]}))
        .await;
    eventually("b left j", Duration::from_secs(5), || async {
        s1.io
            .in_("j")
            .fetch_sockets()
            .await
            .map(|s| s.is_empty())
            .unwrap_or(false)
    })
    .await;
}

async fn server_side_both_ways(js: &NodeServer, s1: &SbNode, s2: &SbNode) {
    let answer = js
        .request(json!({"cmd": "serverSideEmitWithAck", "event": "sse", "args": ["q"]}))
        .await;
    assert_eq!(answer["err"], Value::Null, "{answer}");
    assert_eq!(
        strings(&answer["responses"]),
        set(["pong-sb-1", "pong-sb-2"])
    );
    let acks = s1
        .io
        .of("/")
        .server_side_emit_with_ack("sse", vec![json!("q2")], Duration::from_secs(3))
        .await
        .expect("every node answers");
    let got: BTreeSet<String> = acks
        .responses
        .iter()
        .filter_map(|p| p.args[0].as_str().map(str::to_owned))
        .collect();
    assert_eq!(got, set(["pong-js", "pong-sb-2"]));
    assert!(s2.sse_received().iter().any(|a| a == &vec![json!("q")]));
}

async fn disconnect_both_ways(c: &ClientDriver, js: &NodeServer, s1: &SbNode, ids: &[String; 3]) {
    let [a, _, cc] = ids;
    js.request(json!({"cmd": "disconnectSockets", "rooms": [cc], "close": false}))
        .await;
    eventually("c disconnected by Node", Duration::from_secs(5), || async {
        !c.status("c").await.0
    })
    .await;
    s1.io.in_(a.as_str()).disconnect_sockets(true);
    eventually(
        "a disconnected by Switchboard",
        Duration::from_secs(5),
        || async { !c.status("a").await.0 },
    )
    .await;
    assert!(c.status("b").await.0, "b untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_mixed_cluster() {
    let (redis, js, s1, s2, c, ids) = mixed(Mode::Classic).await;
    assert_eq!(
        js.server_count("/").await,
        3,
        "Node counts the Switchboard nodes"
    );
    assert_eq!(
        s1.io
            .of("/")
            .adapter()
            .expect("adapter")
            .server_count()
            .await,
        3
    );
    broadcasts_both_ways(&c, &js, &s1, "1").await;
    binary_both_ways(&c, &js, &s2).await;
    fetch_both_ways(&js, &s1, &ids).await;
    acks_both_ways(&js, &s2).await;
    server_side_both_ways(&js, &s1, &s2).await;

    // allRooms from both sides.
    let answer = js.request(json!({"cmd": "allRooms"})).await;
    let rooms = strings(&answer["rooms"]);
    assert!(
        rooms.contains("r") && rooms.contains(&ids[1]) && rooms.contains(&ids[2]),
        "{answer}"
    );
    let rooms: BTreeSet<String> = s2
        .io
        .all_rooms()
        .await
        .expect("rooms")
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert!(rooms.contains(&ids[0]));

    // A backend on @socket.io/redis-emitter reaches Switchboard clients by room.
    run_emitter(
        &redis.url(),
        json!({"cmd": "emit", "rooms": ["r"], "event": "from-emitter", "args": ["e", bin(&[5])]}),
    )
    .await;
    for name in ["a", "b", "c"] {
        let got = c.wait(name, "from-emitter", 1, 5000).await;
        assert_eq!(got[0]["args"][0], json!("e"));
        assert_eq!(unbin(&got[0]["args"][1]), Some(vec![5]), "{name}");
    }
    run_emitter(&redis.url(), json!({"cmd": "emit", "rooms": ["r"], "except": [ids[1].clone()], "event": "emitter-except", "args": []})).await;
    c.wait("c", "emitter-except", 1, 5000).await;
    tokio::time::sleep(SETTLE).await;
    assert!(c.events_named("b", "emitter-except").await.is_empty());
    run_emitter(
        &redis.url(),
        json!({"cmd": "socketsJoin", "rooms": [ids[2].clone()], "join": ["e-room"]}),
    )
    .await;
    eventually(
        "c joined e-room via the emitter",
        Duration::from_secs(5),
        || async {
            s1.io
                .in_("e-room")
                .fetch_sockets()
                .await
                .map(|s| s.len() == 1)
                .unwrap_or(false)
        },
    )
    .await;
    run_emitter(
        &redis.url(),
        json!({"cmd": "serverSideEmit", "event": "sse", "args": ["from-emitter"]}),
    )
    .await;
    eventually(
        "emitter server-side event",
        Duration::from_secs(5),
        || async {
            s1.sse_received()
                .iter()
                .any(|a| a == &vec![json!("from-emitter")])
        },
    )
    .await;

    // A RemoteSocket from Node's fetchSockets emits to a socket held by Switchboard.
    js.request(
        json!({"cmd": "remoteEmit", "socket_id": ids[2].clone(), "event": "just-you", "args": [1]}),
    )
    .await;
    c.wait("c", "just-you", 1, 5000).await;

    join_leave_both_ways(&js, &s1, &s2, &ids).await;
    disconnect_both_ways(&c, &js, &s1, &ids).await;
    assert_decoded_everything(&[&s1, &s2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_mixed_cluster() {
    let (_redis, js, s1, s2, c, ids) = mixed(Mode::Sharded).await;
    assert_eq!(
        js.server_count("/").await,
        3,
        "Node counts the Switchboard nodes"
    );
    broadcasts_both_ways(&c, &js, &s1, "1").await;
    binary_both_ways(&c, &js, &s2).await;
    fetch_both_ways(&js, &s1, &ids).await;
    acks_both_ways(&js, &s2).await;
    server_side_both_ways(&js, &s1, &s2).await;
    join_leave_both_ways(&js, &s1, &s2, &ids).await;
    disconnect_both_ways(&c, &js, &s1, &ids).await;
    assert_decoded_everything(&[&s1, &s2]);
}

/// Node's other sharded subscription modes: with the same mode on every node, room and
/// socket-id broadcasts cross in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_subscription_modes_interoperate() {
    support::require_js();
    for (flag, mode) in [
        ("static", switchboard_redis::SubscriptionMode::Static),
        (
            "dynamic-private",
            switchboard_redis::SubscriptionMode::DynamicPrivate,
        ),
    ] {
        let redis = RedisServer::start().await;
        let js = NodeServer::start_with(
            &redis.url(),
            "sharded",
            "js",
            &["--subscription-mode", flag],
        )
        .await;
        let mut cfg = switchboard_redis::RedisAdapterConfig::new(redis.url());
        cfg.mode = Mode::Sharded;
        cfg.subscription_mode = mode;
        cfg.node_id = Some("sb-1".into());
        let s1 = SbNode::start_with(cfg, "sb-1").await;
        let c = ClientDriver::spawn().await;
        let a = c.connect("a", &js.url(), "/").await;
        let b = c.connect("b", &s1.url(), "/").await;
        for name in ["a", "b"] {
            c.emit_with_ack(name, "join", json!(["r"]), 5000).await;
        }
        js.request(json!({"cmd": "emit", "rooms": ["r"], "event": "js-r", "args": [flag]}))
            .await;
        c.wait("b", "js-r", 1, 5000).await;
        s1.io.to("r").emit("sb-r", json!(flag)).expect("emit");
        c.wait("a", "sb-r", 1, 5000).await;
        js.request(json!({"cmd": "emit", "rooms": [b.clone()], "event": "js-direct", "args": []}))
            .await;
        c.wait("b", "js-direct", 1, 5000).await;
        s1.io
            .to(a.as_str())
            .emit("sb-direct", json!(null))
            .expect("emit");
        c.wait("a", "sb-direct", 1, 5000).await;
        tokio::time::sleep(SETTLE).await;
        assert_eq!(c.events_named("a", "js-r").await.len(), 1, "{flag}");
        assert_eq!(c.events_named("b", "sb-r").await.len(), 1, "{flag}");
    }
}

/// `publishOnSpecificResponseChannel` on both sides: replies go to the requester's own channel
/// and requests still complete in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_specific_response_channel() {
    support::require_js();
    let redis = RedisServer::start().await;
    let js = NodeServer::start_with(
        &redis.url(),
        "classic",
        "js",
        &["--specific-response-channel"],
    )
    .await;
    let mut cfg = switchboard_redis::RedisAdapterConfig::new(redis.url());
    cfg.node_id = Some("sb-1".into());
    cfg.publish_on_specific_response_channel = true;
    let s1 = SbNode::start_with(cfg, "sb-1").await;
    let c = ClientDriver::spawn().await;
    let a = c.connect("a", &js.url(), "/").await;
    let b = c.connect("b", &s1.url(), "/").await;
    let answer = js.request(json!({"cmd": "fetchSockets"})).await;
    assert_eq!(fetched_ids(&answer), set([a.clone(), b.clone()]));
    let from_sb = s1.io.fetch_sockets().await.expect("fetch");
    assert_eq!(set(from_sb.iter().map(|s| s.id.clone())), set([a, b]));
    let acks = s1
        .io
        .timeout(Duration::from_secs(3))
        .emit_with_ack("ask", json!(1))
        .await
        .expect("emit");
    assert!(!acks.timed_out, "{acks:?}");
    assert_eq!(acks.responses.len(), 2);
    let answer = js
        .request(json!({"cmd": "emitWithAck", "event": "ask", "args": [], "timeout_ms": 3000}))
        .await;
    assert_eq!(strings(&answer["responses"]), set(["ack-a", "ack-b"]));
}
