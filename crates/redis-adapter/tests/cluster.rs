//! Three Switchboard nodes on one real redis-server, official socket.io-client sockets on each:
//! every operation must behave as on one server, in the classic and the sharded wire.

mod sbnode;
mod support;

use sbnode::SbNode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use support::{bin, eventually, unbin, ClientDriver, RedisServer};
use switchboard::{AdapterError, Payload};
use switchboard_redis::Mode;

const SETTLE: Duration = Duration::from_millis(300);

fn ids(sockets: &[switchboard::SocketInfo]) -> BTreeSet<String> {
    sockets.iter().map(|s| s.id.clone()).collect()
}

async fn count_named(c: &ClientDriver, name: &str, event: &str) -> usize {
    c.events_named(name, event).await.len()
}

/// Clients a (node 1), b (node 2), c and d (node 3); a, b, c join room `r`.
async fn three_nodes(mode: Mode) -> (RedisServer, [SbNode; 3], ClientDriver, [String; 4]) {
    support::require_js();
    let redis = RedisServer::start().await;
    let n1 = SbNode::start(&redis.url(), mode, "sb-1").await;
    let n2 = SbNode::start(&redis.url(), mode, "sb-2").await;
    let n3 = SbNode::start(&redis.url(), mode, "sb-3").await;
    let c = ClientDriver::spawn().await;
    let a = c.connect("a", &n1.url(), "/").await;
    let b = c.connect("b", &n2.url(), "/").await;
    let cc = c.connect("c", &n3.url(), "/").await;
    let d = c.connect("d", &n3.url(), "/").await;
    for name in ["a", "b", "c"] {
        assert_eq!(
            c.emit_with_ack(name, "join", json!(["r"]), 5000).await,
            json!(["joined"])
        );
    }
    (redis, [n1, n2, n3], c, [a, b, cc, d])
}

async fn broadcasts(mode: Mode) {
    let (_redis, [n1, n2, n3], c, [_a, b, _c, _d]) = three_nodes(mode).await;
    assert_eq!(
        n1.io
            .of("/")
            .adapter()
            .expect("adapter")
            .server_count()
            .await,
        3
    );

    // io.to(room) reaches members on every node exactly once, and no one else: with one
    // PUBLISH, whatever the number of recipients, decoded once by each other node.
    let published = n1.redis.metrics().published.get();
    let received = [
        n2.redis.metrics().received.get(),
        n3.redis.metrics().received.get(),
    ];
    n1.io.to("r").emit("m", json!(1)).expect("emit");
    for name in ["a", "b", "c"] {
        c.wait(name, "m", 1, 5000).await;
    }
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        n1.redis.metrics().published.get() - published,
        1,
        "one PUBLISH"
    );
    assert_eq!(
        n2.redis.metrics().received.get() - received[0],
        1,
        "node 2 got one message"
    );
    assert_eq!(
        n3.redis.metrics().received.get() - received[1],
        1,
        "node 3 got one message"
    );
    for name in ["a", "b", "c"] {
        assert_eq!(
            count_named(&c, name, "m").await,
            1,
            "{name} must get m exactly once"
        );
    }
    assert_eq!(count_named(&c, "d", "m").await, 0, "d is not in r");

    // io.emit reaches everyone.
    n2.io.emit("all", json!("x")).expect("emit");
    for name in ["a", "b", "c", "d"] {
        c.wait(name, "all", 1, 5000).await;
    }

    // except: c also joins x; to(r).except(x) leaves c out.
    c.emit_with_ack("c", "join", json!(["x"]), 5000).await;
    n3.io
        .to("r")
        .except("x")
        .emit("ex", json!(true))
        .expect("emit");
    c.wait("a", "ex", 1, 5000).await;
    c.wait("b", "ex", 1, 5000).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        count_named(&c, "c", "ex").await,
        0,
        "c is in the excepted room"
    );
    assert_eq!(count_named(&c, "d", "ex").await, 0);

    // Several rooms: the union, each socket once.
    n1.io
        .to(vec!["r", "x"])
        .emit("union", json!(0))
        .expect("emit");
    for name in ["a", "b", "c"] {
        c.wait(name, "union", 1, 5000).await;
    }
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        count_named(&c, "c", "union").await,
        1,
        "c is in both rooms, gets it once"
    );

    // A socket id is a room too: reaching b (on node 2) from node 3.
    n3.io
        .to(b.as_str())
        .emit("direct", json!("hi b"))
        .expect("emit");
    let got = c.wait("b", "direct", 1, 5000).await;
    assert_eq!(got[0]["args"], json!(["hi b"]));

    // socket.to(room) from a client on node 1 excludes the sender on every node.
    c.emit("a", "shout", json!(["r", "hey"])).await;
    c.wait("b", "shout", 1, 5000).await;
    c.wait("c", "shout", 1, 5000).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        count_named(&c, "a", "shout").await,
        0,
        "the sender is excluded"
    );

    // Binary arguments cross Redis as msgpack bin and reach clients as binary.
    let payload = Payload::new().arg(&"bin").binary(vec![1u8, 2, 3, 250]);
    n2.io.to("r").emit("bin", payload).expect("emit");
    for name in ["a", "b", "c"] {
        let got = c.wait(name, "bin", 1, 5000).await;
        assert_eq!(got[0]["args"][0], json!("bin"));
        assert_eq!(
            unbin(&got[0]["args"][1]),
            Some(vec![1, 2, 3, 250]),
            "{name}: {got:?}"
        );
    }

    // A client's binary argument, relayed by the server, also arrives intact elsewhere.
    c.emit("b", "shout", json!(["r", bin(&[9, 8, 7])])).await;
    let got = c.wait("a", "shout", 1, 5000).await;
    assert_eq!(unbin(&got[0]["args"][0]), Some(vec![9, 8, 7]));

    // Namespaces stay apart.
    c.connect("adm", &n1.url(), "/admin").await;
    n2.io.of("/admin").emit("adm", json!(1)).expect("emit");
    c.wait("adm", "adm", 1, 5000).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(count_named(&c, "d", "adm").await, 0);
}

async fn requests(mode: Mode) {
    let (_redis, [n1, n2, n3], c, [a, b, cc, d]) = three_nodes(mode).await;

    // fetch_sockets from any node sees every node's sockets, with their data.
    let all = n2.io.fetch_sockets().await.expect("fetch");
    assert_eq!(
        ids(&all),
        BTreeSet::from([a.clone(), b.clone(), cc.clone(), d.clone()])
    );
    let servers: BTreeSet<String> = all
        .iter()
        .map(|s| s.data["server"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        servers,
        BTreeSet::from(["sb-1".into(), "sb-2".into(), "sb-3".into()])
    );
    let in_r = n1.io.in_("r").fetch_sockets().await.expect("fetch");
    assert_eq!(
        ids(&in_r),
        BTreeSet::from([a.clone(), b.clone(), cc.clone()])
    );
    let rooms_of_c = in_r.iter().find(|s| s.id == cc).expect("c").rooms.clone();
    assert!(rooms_of_c.contains(&"r".to_owned()) && rooms_of_c.contains(&cc));
    assert!(all.iter().all(|s| s.handshake.get("headers").is_some()));

    // all_rooms gathers every node's rooms.
    let rooms: BTreeSet<String> = n3
        .io
        .all_rooms()
        .await
        .expect("all rooms")
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert!(rooms.contains("r") && rooms.contains(&a) && rooms.contains(&b));

    // sockets_join from node 3: every socket of r, on every node, joins r2.
    n3.io.in_("r").sockets_join("r2");
    eventually(
        "r2 has a, b and c on all nodes",
        Duration::from_secs(5),
        || async {
            n1.io
                .in_("r2")
                .fetch_sockets()
                .await
                .map(|s| ids(&s) == BTreeSet::from([a.clone(), b.clone(), cc.clone()]))
                .unwrap_or(false)
        },
    )
    .await;
    n1.io.to("r2").emit("in-r2", json!(1)).expect("emit");
    for name in ["a", "b", "c"] {
        c.wait(name, "in-r2", 1, 5000).await;
    }

    // sockets_leave from node 1: b leaves r2 (its socket is on node 2).
    n1.io.in_(b.as_str()).sockets_leave("r2");
    eventually("b left r2", Duration::from_secs(5), || async {
        n3.io
            .in_("r2")
            .fetch_sockets()
            .await
            .map(|s| ids(&s) == BTreeSet::from([a.clone(), cc.clone()]))
            .unwrap_or(false)
    })
    .await;

    // server_side_emit reaches the other nodes' listeners, not the sender's.
    n1.io
        .of("/")
        .server_side_emit("sse", vec![json!(1), json!("x")])
        .expect("sse");
    eventually("nodes 2 and 3 got sse", Duration::from_secs(5), || async {
        n2.sse_received().len() == 1 && n3.sse_received().len() == 1
    })
    .await;
    assert_eq!(n2.sse_received()[0], vec![json!(1), json!("x")]);
    assert!(n1.sse_received().is_empty());

    // ... and with acknowledgements: one reply per other node.
    let acks = n1
        .io
        .of("/")
        .server_side_emit_with_ack("sse", vec![json!("ping")], Duration::from_secs(3))
        .await
        .expect("every node answers");
    let replies: BTreeSet<String> = acks
        .responses
        .iter()
        .map(|p| p.args[0].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        replies,
        BTreeSet::from(["pong-sb-2".into(), "pong-sb-3".into()])
    );

    // Broadcast with acknowledgement collects from clients on every node.
    let acks = n2
        .io
        .timeout(Duration::from_secs(3))
        .emit_with_ack("ask", json!(1))
        .await
        .expect("emit");
    assert!(!acks.timed_out, "{acks:?}");
    assert_eq!(acks.expected, 4);
    let replies: BTreeSet<String> = acks
        .responses
        .iter()
        .map(|p| p.args[0].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        replies,
        BTreeSet::from([
            "ack-a".into(),
            "ack-b".into(),
            "ack-c".into(),
            "ack-d".into()
        ])
    );

    // disconnect_sockets from node 1 reaches d on node 3.
    n1.io.in_(d.as_str()).disconnect_sockets(false);
    eventually("d is disconnected", Duration::from_secs(5), || async {
        !c.status("d").await.0
    })
    .await;
    assert_eq!(
        c.status("d").await.1.as_deref(),
        Some("io server disconnect")
    );
    assert!(c.status("c").await.0, "c stays connected");

    // No node ever timed out above.
    for n in [&n1, &n2, &n3] {
        let m = n.redis.metrics();
        assert_eq!(m.request_timeout_count("fetch_sockets"), 0);
        assert_eq!(m.decode_errors.get(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_broadcasts() {
    broadcasts(Mode::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_requests() {
    requests(Mode::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_broadcasts() {
    broadcasts(Mode::Sharded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_requests() {
    requests(Mode::Sharded).await;
}

/// Sharded mode subscribes a room channel only while the room has a local member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_subscribes_rooms_dynamically() {
    let (redis, [n1, _n2, _n3], c, _ids) = three_nodes(Mode::Sharded).await;
    eventually(
        "room r subscribed by three nodes",
        Duration::from_secs(5),
        || async { redis.shard_numsub("socket.io#/#r#").await == 3 },
    )
    .await;
    assert_eq!(redis.shard_numsub("socket.io#/#").await, 3);
    c.emit_with_ack("a", "leave", json!(["r"]), 5000).await;
    eventually("node 1 unsubscribed r", Duration::from_secs(5), || async {
        redis.shard_numsub("socket.io#/#r#").await == 2
    })
    .await;
    // A node with no member in r no longer hears r's broadcasts, and nobody misses one.
    n1.io.to("r").emit("after", json!(1)).expect("emit");
    c.wait("b", "after", 1, 5000).await;
    c.wait("c", "after", 1, 5000).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(count_named(&c, "a", "after").await, 0);
}

/// A node that stops answering makes requests time out with what arrived and its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_times_out_with_partial_result() {
    let (redis, [n1, n2, n3], _c, [a, b, _cc, _d]) = three_nodes(Mode::Classic).await;
    // Node 3 answers once, so node 1 learns its id; then it goes silent: its namespace stops
    // handling messages, and a bare subscriber keeps it counted, as a frozen process would be.
    assert_eq!(n1.io.fetch_sockets().await.expect("all answer").len(), 4);
    n3.io.of("/").adapter().expect("adapter").close();
    let _frozen = sbnode::subscribe_raw(redis.port(), "socket.io-request#/#").await;
    eventually("still three counted", Duration::from_secs(5), || async {
        redis.numsub("socket.io-request#/#").await == 3
    })
    .await;
    let started = std::time::Instant::now();
    let err = n1.io.fetch_sockets().await.expect_err("node 3 is silent");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    match err {
        AdapterError::Timeout {
            missing,
            nodes,
            partial,
        } => {
            assert_eq!(missing, 1);
            assert!(nodes.contains("sb-3"), "{nodes}");
            let switchboard::Partial::Sockets(s) = *partial else {
                panic!("partial sockets expected")
            };
            assert_eq!(ids(&s), BTreeSet::from([a.clone(), b.clone()]));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(n1.redis.metrics().request_timeout_count("fetch_sockets"), 1);
    let acks = n2
        .io
        .timeout(Duration::from_millis(800))
        .emit_with_ack("ask", json!(1))
        .await
        .expect("emit");
    assert!(acks.timed_out);
    assert!(
        acks.missing_nodes
            .as_deref()
            .unwrap_or_default()
            .contains("sb-3"),
        "{acks:?}"
    );
    let replies: Vec<Value> = acks.responses.iter().map(|p| p.args[0].clone()).collect();
    assert_eq!(replies.len(), 2, "a and b answered: {replies:?}");
}

/// A burst of room joins (sharded: one channel each) is subscribed in one go, and every room
/// is reachable from another node afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_room_burst() {
    let (redis, [_n1, n2, _n3], c, _ids) = three_nodes(Mode::Sharded).await;
    for i in 0..300 {
        c.emit("d", "join", json!([format!("burst-{i}")])).await;
    }
    c.emit_with_ack("d", "join", json!(["burst-last"]), 5000)
        .await;
    for room in ["burst-0", "burst-150", "burst-299", "burst-last"] {
        let channel = format!("socket.io#/#{room}#");
        eventually(
            &format!("{room} subscribed"),
            Duration::from_secs(10),
            || async { redis.shard_numsub(&channel).await == 1 },
        )
        .await;
    }
    n2.io
        .to("burst-150")
        .emit("burst", json!(150))
        .expect("emit");
    let got = c.wait("d", "burst", 1, 5000).await;
    assert_eq!(got[0]["args"], json!([150]));
}
