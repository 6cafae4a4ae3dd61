//! Three `switchboard` gateway processes on one real redis-server (`--redis-url`), official
//! socket.io-client sockets on each, using the relay events: cross-node delivery, readiness and
//! metrics through a Redis restart, and a killed node.

#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
mod support;

use cluster_support::{eventually, ClientDriver, RedisServer};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::process::Command;

struct Gw(support::GatewayProcess);

impl Gw {
    async fn start(redis_url: &str, node_id: &str) -> Gw {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--redis-url", redis_url, "--node-id", node_id])
            .args(["--publish-scope", "any"])
            .env("RUST_LOG", "info");
        Gw(support::GatewayProcess::spawn(cmd, &format!("gateway {node_id}")).await)
    }

    fn url(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    /// `GET path` on the admin listener: (status, body).
    async fn admin_get(&self, path: &str) -> (u16, String) {
        support::admin_get(self.0.admin, path).await
    }

    async fn ready(&self) -> u16 {
        self.admin_get("/ready").await.0
    }

    /// The value of the first metric line starting with `name`.
    async fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.admin_get("/metrics").await;
        body.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

async fn publish(c: &ClientDriver, from: &str, req: Value) -> Value {
    let ack = c.emit_with_ack(from, "publish", json!([req]), 10_000).await;
    ack[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_cluster_through_redis_restart_and_node_loss() {
    cluster_support::require_js();
    let mut redis = RedisServer::start().await;
    let g1 = Gw::start(&redis.url(), "gw-1").await;
    let g2 = Gw::start(&redis.url(), "gw-2").await;
    let mut g3 = Gw::start(&redis.url(), "gw-3").await;
    for g in [&g1, &g2, &g3] {
        eventually("gateway ready", Duration::from_secs(10), || async {
            g.ready().await == 200
        })
        .await;
    }
    let c = ClientDriver::spawn().await;
    c.connect("a", &g1.url(), "/").await;
    c.connect("b", &g2.url(), "/").await;
    c.connect("c", &g3.url(), "/").await;
    for name in ["a", "b", "c"] {
        let ack = c.emit_with_ack(name, "join", json!(["r"]), 5000).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    }

    // A publish on one gateway reaches the room's members on the others, sender excluded.
    assert_eq!(
        publish(
            &c,
            "a",
            json!({"to": "r", "event": "chat", "data": {"n": 1}})
        )
        .await["ok"],
        json!(true)
    );
    for name in ["b", "c"] {
        let got = c.wait(name, "chat", 1, 5000).await;
        assert_eq!(got[0]["args"], json!([{"n": 1}]));
    }
    // With acknowledgements from clients on every other node.
    let ack = publish(
        &c,
        "b",
        json!({"to": "r", "event": "ask", "data": 1, "timeout": 3000}),
    )
    .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let mut responses: Vec<String> = ack["responses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    responses.sort();
    assert_eq!(responses, vec!["ack-a", "ack-c"]);

    // Redis goes away: every node says so on /ready and in its metrics.
    redis.kill().await;
    for g in [&g1, &g2, &g3] {
        eventually(
            "gateway not ready while Redis is down",
            Duration::from_secs(10),
            || async { g.ready().await == 503 },
        )
        .await;
    }
    assert_eq!(g1.metric("switchboard_redis_up").await, 0.0);
    // A publish with acks cannot be complete: it says so, and why.
    let ack = publish(
        &c,
        "a",
        json!({"to": "r", "event": "ask", "data": 0, "timeout": 1000}),
    )
    .await;
    assert_eq!(ack["ok"], json!(false), "{ack}");
    assert!(
        ack["missing"]
            .as_str()
            .unwrap_or_default()
            .contains("Redis"),
        "{ack}"
    );
    assert_eq!(
        publish(&c, "a", json!({"to": "r", "event": "lost", "data": 0})).await["ok"],
        json!(true)
    );
    eventually(
        "the lost publish is counted",
        Duration::from_secs(10),
        || async { g1.metric("switchboard_redis_publish_failures_total").await >= 1.0 },
    )
    .await;

    // Redis is back: the nodes heal by themselves and the outage shows in the counters.
    redis.restart().await;
    for g in [&g1, &g2, &g3] {
        eventually("gateway ready again", Duration::from_secs(20), || async {
            g.ready().await == 200
        })
        .await;
    }
    assert_eq!(g1.metric("switchboard_redis_outages_total").await, 1.0);
    assert!(g1.metric("switchboard_redis_outage_seconds_total").await > 0.0);
    assert_eq!(
        publish(&c, "a", json!({"to": "r", "event": "chat2", "data": 2})).await["ok"],
        json!(true)
    );
    c.wait("b", "chat2", 1, 5000).await;
    c.wait("c", "chat2", 1, 5000).await;
    assert!(
        c.events_named("b", "lost").await.is_empty(),
        "lost in the outage, as documented"
    );

    // A node dies: the others keep serving, and their requests stop waiting for it.
    g3.0.child.start_kill().expect("kill gw-3");
    let _ = g3.0.child.wait().await;
    let ack = publish(
        &c,
        "a",
        json!({"to": "r", "event": "ask2", "data": 1, "timeout": 5000}),
    )
    .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(ack["responses"], json!(["ack-b"]));
    assert_eq!(g1.ready().await, 200);
    assert_eq!(g2.ready().await, 200);
    let log = g1.0.log();
    assert!(
        log.contains("lost Redis"),
        "the outage is logged with what to do:\n{log}"
    );
}
