//! Two `switchboard` gateway processes on a real Redis Cluster (3 masters, 3 replicas, with a
//! password) through `--redis-cluster-url`: relay publishes to rooms on every shard cross
//! nodes, `/ready` follows a master failover, and the password never reaches the log.

#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
#[path = "../../redis-adapter/tests/rcluster/mod.rs"]
mod rcluster;
mod support;

use cluster_support::{eventually, ClientDriver};
use rcluster::RedisCluster;
use serde_json::json;
use std::time::Duration;
use tokio::process::Command;

const PASSWORD: &str = "cluster-s3cret";

async fn gateway(seeds: &[String], node_id: &str) -> support::GatewayProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        // Two seeds in one value, the rest repeated.
        .args(["--redis-cluster-url", &seeds[..2].join(",")])
        .args(["--adapter-mode", "sharded", "--node-id", node_id])
        .env("RUST_LOG", "info");
    for s in &seeds[2..] {
        cmd.args(["--redis-cluster-url", s]);
    }
    support::GatewayProcess::spawn(cmd, &format!("gateway {node_id}")).await
}

async fn ready(g: &support::GatewayProcess) -> u16 {
    support::admin_get(g.admin, "/ready").await.0
}

/// Waits until `/ready` answers `status`; panics with the gateway's log after `limit`.
async fn until_ready(g: &support::GatewayProcess, status: u16, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while ready(g).await != status {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready did not answer {status} within {limit:?}; log:\n{}",
            g.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_on_a_redis_cluster() {
    cluster_support::require_js();
    let mut cluster = RedisCluster::start_with_password(Some(PASSWORD)).await;
    let seeds = cluster.urls();
    let g1 = gateway(&seeds, "gw-1").await;
    let g2 = gateway(&seeds, "gw-2").await;
    for g in [&g1, &g2] {
        until_ready(g, 200, Duration::from_secs(15)).await;
    }
    // A room on each master.
    let mut rooms = std::collections::BTreeMap::new();
    for i in 0..200 {
        let room = format!("room-{i}");
        let slot = cluster.keyslot(&format!("socket.io#/#{room}#")).await;
        rooms.entry(cluster.owner(slot).await).or_insert(room);
        if rooms.len() == 3 {
            break;
        }
    }
    let c = ClientDriver::spawn().await;
    c.connect("a", &format!("http://{}", g1.addr), "/").await;
    c.connect("b", &format!("http://{}", g2.addr), "/").await;
    for room in rooms.values() {
        for name in ["a", "b"] {
            let ack = c.emit_with_ack(name, "join", json!([room]), 5000).await;
            assert_eq!(ack[0]["ok"], json!(true), "{ack}");
        }
    }
    let publish_until_b_gets = |room: String, event: String| {
        let c = &c;
        async move {
            eventually(
                &format!("{event} reaches b"),
                Duration::from_secs(20),
                || {
                    let (room, event) = (room.clone(), event.clone());
                    async move {
                        let ack = c
                            .emit_with_ack(
                                "a",
                                "publish",
                                json!([{"to": room, "event": event, "data": 1}]),
                                5000,
                            )
                            .await;
                        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
                        !c.events_named("b", &event).await.is_empty()
                    }
                },
            )
            .await;
        }
    };
    for room in rooms.values() {
        publish_until_b_gets(room.clone(), format!("chat-{room}")).await;
    }

    // A master dies: both gateways go not ready, then ready again once its replica took
    // over, and deliver again.
    let victim = *rooms.keys().next().expect("a master");
    cluster.kill(victim).await;
    for g in [&g1, &g2] {
        until_ready(g, 503, Duration::from_secs(10)).await;
    }
    cluster.wait_failover(victim).await;
    for g in [&g1, &g2] {
        until_ready(g, 200, Duration::from_secs(20)).await;
    }
    let room = rooms[&victim].clone();
    publish_until_b_gets(room.clone(), format!("after-{room}")).await;

    for g in [&g1, &g2] {
        let log = g.log();
        assert!(
            !log.contains(PASSWORD),
            "the password leaked into the log:\n{log}"
        );
    }
}
