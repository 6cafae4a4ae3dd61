//! Three Switchboard nodes, sharded wire with dynamic subscriptions, on a real Redis Cluster
//! of three masters and three replicas: rooms on the slots of every shard get each broadcast
//! exactly once, every cross-node request works, and delivery resumes by itself after a slot
//! of an active room migrates and after a master is SIGKILLed (its replica promoted). The
//! times to recover are printed (`--nocapture`) and recorded in docs/cluster.md.

mod rcluster;
mod sbnode;
mod support;

use rcluster::RedisCluster;
use sbnode::SbNode;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::{eventually, ClientDriver, NodeServer};
use switchboard_redis::{Mode, RedisAdapterConfig};

async fn rooms_on_every_master(cluster: &RedisCluster) -> BTreeMap<u16, String> {
    cluster.room_per_master().await
}

/// A sharded, dynamic node on the cluster, every node given as a seed.
async fn node(cluster: &RedisCluster, name: &str) -> SbNode {
    node_with(cluster, name, Mode::Sharded).await
}

/// A node speaking `mode` on the cluster.
async fn node_with(cluster: &RedisCluster, name: &str, mode: Mode) -> SbNode {
    let urls = cluster.urls();
    let mut cfg = RedisAdapterConfig::new(urls[0].clone());
    cfg.cluster = true;
    cfg.cluster_seeds = urls[1..].to_vec();
    cfg.mode = mode;
    cfg.node_id = Some(name.to_owned());
    cfg.requests_timeout = Duration::from_millis(1500);
    cfg.probe_interval = Duration::from_millis(300);
    cfg.max_backoff = Duration::from_millis(300);
    SbNode::start_with(cfg, name).await
}

/// `PUBSUB SHARDNUMSUB channel` on the node on `port`.
async fn shard_numsub(port: u16, channel: &str) -> i64 {
    match rcluster::command(port, &["PUBSUB", "SHARDNUMSUB", channel]).await {
        Ok(redis::Value::Array(v)) => match v.get(1) {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("SHARDNUMSUB on {port}: {other:?}"),
        },
        other => panic!("SHARDNUMSUB on {port}: {other:?}"),
    }
}

fn ids(sockets: &[switchboard::SocketInfo]) -> BTreeSet<String> {
    sockets.iter().map(|s| s.id.clone()).collect()
}

/// The values of the `event` events socket `name` received.
async fn values(c: &ClientDriver, name: &str, event: &str) -> Vec<serde_json::Value> {
    c.events_named(name, event)
        .await
        .into_iter()
        .filter_map(|e| e.get("args").and_then(|a| a.get(0)).cloned())
        .collect()
}

/// Sends `room` numbered broadcasts from `from` until b and c both got one, then a sentinel;
/// returns how long the first delivery took. Afterwards every value b and c got is distinct
/// (no message twice).
async fn delivers(from: &SbNode, c: &ClientDriver, room: &str, tag: &str) -> Duration {
    let event = format!("m-{room}");
    c.clear("b").await;
    c.clear("c").await;
    let start = Instant::now();
    let mut seq = 0u64;
    eventually(
        &format!("{tag}: {room} delivers to b and c"),
        Duration::from_secs(30),
        || {
            seq += 1;
            from.io
                .to(room)
                .emit(event.as_str(), json!(format!("{tag}-{seq}")))
                .expect("emit");
            let event = event.clone();
            async move {
                !values(c, "b", &event).await.is_empty() && !values(c, "c", &event).await.is_empty()
            }
        },
    )
    .await;
    let took = start.elapsed();
    let sentinel = json!(format!("{tag}-end"));
    from.io
        .to(room)
        .emit(event.as_str(), sentinel.clone())
        .expect("emit");
    for name in ["b", "c"] {
        eventually(
            &format!("{tag}: {name} gets the sentinel of {room}"),
            Duration::from_secs(10),
            || {
                let (event, sentinel) = (event.clone(), sentinel.clone());
                async move { values(c, name, &event).await.contains(&sentinel) }
            },
        )
        .await;
        let got = values(c, name, &event).await;
        let distinct: BTreeSet<String> = got.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            distinct.len(),
            got.len(),
            "{tag}: {name} got a message twice: {got:?}"
        );
    }
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_on_a_redis_cluster() {
    support::require_js();
    let mut cluster = RedisCluster::start().await;
    let masters = cluster.masters().await;
    assert_eq!(masters.len(), 3);

    let rooms = rooms_on_every_master(&cluster).await;

    let n1 = node(&cluster, "rc-1").await;
    let n2 = node(&cluster, "rc-2").await;
    let n3 = node(&cluster, "rc-3").await;
    let c = ClientDriver::spawn().await;
    let a = c.connect("a", &n1.url(), "/").await;
    let b = c.connect("b", &n2.url(), "/").await;
    let cc = c.connect("c", &n3.url(), "/").await;
    for room in rooms.values() {
        for name in ["b", "c"] {
            c.emit_with_ack(name, "join", json!([room]), 5000).await;
        }
    }
    // Every node counts the three (SHARDNUMSUB on the owner of the request channel).
    assert_eq!(
        n1.io
            .of("/")
            .adapter()
            .expect("adapter")
            .server_count()
            .await,
        3
    );
    // to(room) on every shard: b and c get each message once, a (not a member) none.
    for room in rooms.values() {
        delivers(&n1, &c, room, "steady").await;
        // The room channel is subscribed on its owner by the two nodes with members.
        let slot = cluster.keyslot(&format!("socket.io#/#{room}#")).await;
        let owner = cluster.owner(slot).await;
        let subscribers = shard_numsub(owner, &format!("socket.io#/#{room}#")).await;
        assert_eq!(subscribers, 2, "{room} on {owner}");
    }
    assert!(values(&c, "a", "m-room-0").await.is_empty());

    // Cross-node requests, as on one Redis.
    let all = n2.io.fetch_sockets().await.expect("fetch");
    assert_eq!(
        ids(&all),
        BTreeSet::from([a.clone(), b.clone(), cc.clone()])
    );
    let first_room = rooms.values().next().cloned().expect("a room");
    let in_room = n1
        .io
        .in_(first_room.as_str())
        .fetch_sockets()
        .await
        .expect("fetch");
    assert_eq!(ids(&in_room), BTreeSet::from([b.clone(), cc.clone()]));
    let all_rooms: BTreeSet<String> = n3
        .io
        .all_rooms()
        .await
        .expect("all rooms")
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert!(
        rooms.values().all(|r| all_rooms.contains(r)),
        "{all_rooms:?}"
    );
    n3.io.in_(first_room.as_str()).sockets_join("joined-later");
    eventually(
        "b and c joined joined-later",
        Duration::from_secs(5),
        || async {
            n1.io
                .in_("joined-later")
                .fetch_sockets()
                .await
                .is_ok_and(|s| ids(&s) == BTreeSet::from([b.clone(), cc.clone()]))
        },
    )
    .await;
    n1.io.in_(b.as_str()).sockets_leave("joined-later");
    eventually("b left joined-later", Duration::from_secs(5), || async {
        n2.io
            .in_("joined-later")
            .fetch_sockets()
            .await
            .is_ok_and(|s| ids(&s) == BTreeSet::from([cc.clone()]))
    })
    .await;
    let acks = n1
        .io
        .of("/")
        .server_side_emit_with_ack("sse", vec![json!("ping")], Duration::from_secs(3))
        .await
        .expect("every node answers");
    assert_eq!(acks.responses.len(), 2);
    let acks = n2
        .io
        .timeout(Duration::from_secs(3))
        .emit_with_ack("ask", json!(1))
        .await
        .expect("emit");
    assert!(!acks.timed_out && acks.expected == 3, "{acks:?}");

    // A slot of an active room migrates to another master: delivery continues.
    let (&from, moving) = rooms.iter().next().expect("a room");
    let moving = moving.clone();
    let to = masters
        .iter()
        .copied()
        .find(|m| *m != from)
        .expect("another master");
    let slot = cluster.keyslot(&format!("socket.io#/#{moving}#")).await;
    let started = Instant::now();
    cluster.migrate_slot(slot, to).await;
    let took = delivers(&n1, &c, &moving, "migrated").await;
    eprintln!(
        "MEASURED slot migration: {moving} (slot {slot}) {from} -> {to}: delivering again {:?} after the move ({:?} after its start)",
        took,
        started.elapsed()
    );
    assert_eq!(cluster.owner(slot).await, to);
    let subscribers = shard_numsub(to, &format!("socket.io#/#{moving}#")).await;
    assert_eq!(subscribers, 2, "resubscribed on {to}");

    // A master is SIGKILLed: its replica takes over, every node is ready and delivering again.
    let victim = *rooms.keys().last().expect("a master");
    let victim_room = rooms[&victim].clone();
    let mut survivor_room = None;
    for room in rooms.values() {
        let slot = cluster.keyslot(&format!("socket.io#/#{room}#")).await;
        if cluster.owner(slot).await != victim {
            survivor_room = Some(room.clone());
        }
    }
    let survivor_room = survivor_room.expect("a room on another master");
    let killed = Instant::now();
    cluster.kill(victim).await;
    eventually(
        "a node notices the failover",
        Duration::from_secs(10),
        || async { !n1.io.is_ready() || !n2.io.is_ready() || !n3.io.is_ready() },
    )
    .await;
    // Meanwhile the rooms of the other shards keep delivering.
    let during = delivers(&n1, &c, &survivor_room, "during-failover").await;
    let still_failing_over = !(n1.io.is_ready() && n2.io.is_ready() && n3.io.is_ready());
    cluster.wait_failover(victim).await;
    let promoted = killed.elapsed();
    eventually(
        "every node is ready again",
        Duration::from_secs(30),
        || async { n1.io.is_ready() && n2.io.is_ready() && n3.io.is_ready() },
    )
    .await;
    let ready = killed.elapsed();
    delivers(&n1, &c, &victim_room, "failover").await;
    let delivering = killed.elapsed();
    eprintln!(
        "MEASURED master failover: killed {victim}; replica promoted after {promoted:?}; all nodes ready after {ready:?}; {victim_room} delivering after {delivering:?}; {survivor_room} (another shard) delivered in {during:?} during it (failover still under way then: {still_failing_over})"
    );
    for room in rooms.values() {
        delivers(&n2, &c, room, "after").await;
    }
    // Namespace-wide broadcasts (the main channel), with except, and a remote disconnect.
    n3.io
        .except(b.as_str())
        .emit("all", json!(1))
        .expect("emit");
    for name in ["a", "c"] {
        c.wait(name, "all", 1, 5000).await;
    }
    n3.io.emit("all-end", json!(2)).expect("emit");
    c.wait("b", "all-end", 1, 5000).await;
    assert!(
        c.events_named("b", "all").await.is_empty(),
        "except left b out"
    );
    n1.io.in_(cc.as_str()).disconnect_sockets(false);
    eventually(
        "c is disconnected from node 1",
        Duration::from_secs(5),
        || async { !c.status("c").await.0 },
    )
    .await;
    assert!(c.status("b").await.0, "b stays connected");
    for n in [&n1, &n2, &n3] {
        let m = n.redis.metrics();
        assert!(m.outages.get() >= 1, "{}: the outage is counted", n.name);
        assert_eq!(m.decode_errors.get(), 0);
    }
}

/// Node's `createShardedAdapter` on node-redis `createCluster` and two Switchboard nodes on
/// the same Redis Cluster: broadcasts to rooms of every shard, requests and server counts
/// cross in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sharded_adapter_on_the_same_cluster() {
    support::require_js();
    let cluster = RedisCluster::start().await;
    let rooms = rooms_on_every_master(&cluster).await;
    let js = NodeServer::start_with(&cluster.urls()[0], "sharded", "js", &["--cluster"]).await;
    let s1 = node(&cluster, "sb-1").await;
    let s2 = node(&cluster, "sb-2").await;
    let c = ClientDriver::spawn().await;
    let a = c.connect("a", &js.url(), "/").await;
    let b = c.connect("b", &s1.url(), "/").await;
    let cc = c.connect("c", &s2.url(), "/").await;
    for room in rooms.values() {
        for name in ["a", "b", "c"] {
            c.emit_with_ack(name, "join", json!([room]), 5000).await;
        }
    }
    for room in rooms.values() {
        // Node → Switchboard (b on s1, c on s2), sent until the subscriptions are in place.
        let ev = format!("js-{room}");
        eventually(
            &format!("Node's broadcast to {room} reaches b and c"),
            Duration::from_secs(15),
            || {
                let ev = ev.clone();
                let js = &js;
                let c = &c;
                async move {
                    js.request(
                        json!({"cmd": "emit", "rooms": [room], "event": ev, "args": [room]}),
                    )
                    .await;
                    !c.events_named("b", &ev).await.is_empty()
                        && !c.events_named("c", &ev).await.is_empty()
                }
            },
        )
        .await;
        // Switchboard → Node (a) and the other Switchboard node (c).
        let ev = format!("sb-{room}");
        eventually(
            &format!("Switchboard's broadcast to {room} reaches a and c"),
            Duration::from_secs(15),
            || {
                s1.io
                    .to(room.as_str())
                    .emit(ev.as_str(), json!(room))
                    .expect("emit");
                let ev = ev.clone();
                let c = &c;
                async move {
                    !c.events_named("a", &ev).await.is_empty()
                        && !c.events_named("c", &ev).await.is_empty()
                }
            },
        )
        .await;
    }
    // Server counts and requests both ways.
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
    let answer = js.request(json!({"cmd": "fetchSockets"})).await;
    let from_js: BTreeSet<String> = answer["sockets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    let all = BTreeSet::from([a.clone(), b.clone(), cc.clone()]);
    assert_eq!(from_js, all, "{answer}");
    let from_sb = s2.io.fetch_sockets().await.expect("fetch");
    assert_eq!(ids(&from_sb), all);
    let acks = s1
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
        BTreeSet::from(["pong-js".into(), "pong-sb-2".into()])
    );
}

/// The classic wire on a Redis Cluster (PUBLISH, which the cluster relays to every node):
/// two Switchboard nodes and Node's `createAdapter` on `createCluster` deliver to each other
/// and count each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_wire_on_a_redis_cluster() {
    support::require_js();
    let cluster = RedisCluster::start().await;
    let js = NodeServer::start_with(&cluster.urls()[0], "classic", "js", &["--cluster"]).await;
    let s1 = node_with(&cluster, "sb-1", Mode::Classic).await;
    let s2 = node_with(&cluster, "sb-2", Mode::Classic).await;
    let c = ClientDriver::spawn().await;
    c.connect("a", &js.url(), "/").await;
    c.connect("b", &s1.url(), "/").await;
    c.connect("c", &s2.url(), "/").await;
    for name in ["a", "b", "c"] {
        c.emit_with_ack(name, "join", json!(["r"]), 5000).await;
    }
    js.request(json!({"cmd": "emit", "rooms": ["r"], "event": "from-js", "args": [1]}))
        .await;
    for name in ["b", "c"] {
        c.wait(name, "from-js", 1, 5000).await;
    }
    s1.io.to("r").emit("from-sb", json!(2)).expect("emit");
    for name in ["a", "b", "c"] {
        c.wait(name, "from-sb", 1, 5000).await;
    }
    s2.io.to("r").emit("end", json!(3)).expect("emit");
    for name in ["a", "b", "c"] {
        c.wait(name, "end", 1, 5000).await;
        assert_eq!(
            c.events_named(name, "from-sb").await.len(),
            1,
            "{name}: exactly once"
        );
    }
    // PUBSUB NUMSUB summed over the masters: every node counts the three.
    assert_eq!(js.server_count("/").await, 3);
    assert_eq!(
        s2.io
            .of("/")
            .adapter()
            .expect("adapter")
            .server_count()
            .await,
        3
    );
    assert_eq!(s1.io.fetch_sockets().await.expect("fetch").len(), 3);
}
