//! `deploy/local-cluster.sh`, end to end: the compose topology as processes on loopback.
//!
//! `up 3` starts redis-server, three gateways (this test's build of the binary), HAProxy and
//! Prometheus from the repository's config files; official `socket.io-client` sockets connect
//! through HAProxy over WebSocket, over long-polling (no cookies: affinity by session id) and
//! polling upgraded to WebSocket; a room spans the three gateways. Prometheus must report
//! `up == 1` for all three and return `switchboard_` series. Then one gateway gets SIGTERM: its
//! clients reconnect through HAProxy to the two others and every publish acknowledged before and
//! after reaches every member. `down` must stop exactly what `up` started.

#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
mod support;

use cluster_support::{eventually, workspace_root, ClientDriver};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SCRIPT: &str = "deploy/local-cluster.sh";

/// A cluster started by the script; `down` runs on drop, so a failing test cleans up too.
struct LocalCluster {
    state: PathBuf,
    /// `NAME → URL`, as `up` printed them.
    services: BTreeMap<String, String>,
    up_stderr: String,
}

impl LocalCluster {
    fn script(state: &Path, args: &[&str]) -> std::process::Output {
        Command::new(workspace_root().join(SCRIPT))
            .args(args)
            .env("LOCAL_CLUSTER_DIR", state)
            .env("LOCAL_CLUSTER_BIN", env!("CARGO_BIN_EXE_switchboard"))
            // Reaches every gateway: checked through their handshakes.
            .env("SWITCHBOARD_PING_INTERVAL_MS", "7000")
            .env("SWITCHBOARD_DRAIN_TIMEOUT_SECS", "10")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {SCRIPT}: {e}"))
    }

    fn up(n: usize) -> LocalCluster {
        let state =
            std::env::temp_dir().join(format!("switchboard-local-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let out = Self::script(&state, &["up", &n.to_string()]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let cluster = LocalCluster {
            services: stdout
                .lines()
                .filter_map(|l| {
                    let (name, url) = l.split_once(' ')?;
                    Some((name.to_owned(), url.to_owned()))
                })
                .collect(),
            state,
            up_stderr: stderr,
        };
        assert!(
            out.status.success(),
            "{SCRIPT} up {n} failed ({}):\n{stdout}\n{}",
            out.status,
            cluster.up_stderr
        );
        cluster
    }

    fn url(&self, name: &str) -> &str {
        self.services
            .get(name)
            .unwrap_or_else(|| panic!("`up` printed no {name}: {:?}", self.services))
    }

    fn addr(&self, name: &str) -> SocketAddr {
        let url = self.url(name);
        url.split("://")
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name} {url} is not http://IP:PORT"))
    }

    /// Pids recorded in the state directory, by service name.
    fn pids(&self) -> BTreeMap<String, u32> {
        std::fs::read_to_string(self.state.join("services"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let name = w.next()?.to_owned();
                let pid = w.nth(1)?.parse().ok()?;
                Some((name, pid))
            })
            .collect()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.state.join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = Self::script(&self.state, &["down"]);
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// `GET path` over HTTP/1.0: `(status, body)`, status 0 when unreachable.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// Sum of the samples of `name` (any labels) in a `/metrics` text.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' ']).next() == Some(name) && (labels.is_empty() || l.contains(labels))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A Prometheus instant query's result vector.
async fn prom_query(prom: SocketAddr, query: &str) -> Vec<Value> {
    let (status, body) = http_get(prom, &format!("/api/v1/query?query={query}")).await;
    if status != 200 {
        return Vec::new();
    }
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

const ROOM: &str = "lobby";

/// Publishes `n` from `from` to the room (acknowledged, or the test fails).
async fn publish(c: &ClientDriver, from: &str, n: u64) {
    let ack = c
        .emit_with_ack(
            from,
            "publish",
            json!([{"to": ROOM, "event": "chat", "data": {"n": n}, "self": true}]),
            5000,
        )
        .await;
    assert_eq!(ack[0]["ok"], json!(true), "publish {n} from {from}: {ack}");
}

async fn join(c: &ClientDriver, name: &str) {
    let ack = c.emit_with_ack(name, "join", json!([ROOM]), 5000).await;
    assert_eq!(ack[0]["ok"], json!(true), "{name} join: {ack}");
}

/// The `n` of every `chat` event `name` received, in order.
async fn received(c: &ClientDriver, name: &str) -> Vec<u64> {
    c.events_named(name, "chat")
        .await
        .iter()
        .filter_map(|e| e["args"][0]["n"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_balances_survives_a_drain_and_is_scraped() {
    cluster_support::require_js();
    let cluster = LocalCluster::up(3);
    for name in [
        "redis",
        "gateway-1",
        "gateway-2",
        "gateway-3",
        "lb",
        "lb-stats",
        "prometheus",
    ] {
        assert!(
            cluster.url(name).contains("://127.0.0.1:"),
            "{name} is not on loopback: {}",
            cluster.url(name)
        );
    }
    let lb = cluster.url("lb").to_owned();
    let admins: Vec<SocketAddr> = (1..=3)
        .map(|i| cluster.addr(&format!("gateway-{i}-admin")))
        .collect();

    // The caller's SWITCHBOARD_* variables reached every gateway.
    for i in 1..=3 {
        let addr = cluster.addr(&format!("gateway-{i}"));
        let (status, open) = http_get(addr, "/socket.io/?EIO=4&transport=polling").await;
        assert_eq!(status, 200, "gateway-{i} handshake: {open}");
        assert!(
            open.contains("\"pingInterval\":7000"),
            "gateway-{i} did not get SWITCHBOARD_PING_INTERVAL_MS: {open}"
        );
    }

    // The browser demo, through the balancer.
    let (status, page) = http_get(cluster.addr("lb"), "/").await;
    assert_eq!(status, 200, "GET / through the balancer: {page}");
    assert!(page.contains("Switchboard group chat"), "{page}");

    // Clients through the balancer: long-polling only first (round robin spreads their
    // handshakes over the three gateways), then polling upgraded to WebSocket, then WebSocket.
    let c = ClientDriver::spawn().await;
    let mut names = Vec::new();
    for (prefix, transports) in [
        ("poll", json!(["polling"])),
        ("upgrade", json!(["polling", "websocket"])),
        ("ws", json!(["websocket"])),
    ] {
        for i in 1..=3 {
            let name = format!("{prefix}-{i}");
            c.connect_with(json!({
                "name": name, "url": lb, "nsp": "/", "transports": transports, "reconnection": true
            }))
            .await;
            join(&c, &name).await;
            names.push(name);
        }
    }
    let mut polling_per_gateway = Vec::new();
    for admin in &admins {
        let (_, m) = http_get(*admin, "/metrics").await;
        polling_per_gateway.push(metric(
            &m,
            "switchboard_engine_sessions_opened_total",
            "transport=\"polling\"",
        ));
    }
    assert!(
        polling_per_gateway.iter().all(|n| *n >= 1.0),
        "polling sessions per gateway {polling_per_gateway:?}: HAProxy did not spread them"
    );

    // Room delivery across the gateways, through the balancer; the polling sessions keep
    // working over several requests each.
    for n in 1..=3 {
        publish(&c, &names[(n as usize - 1) * 3], n).await;
    }
    for name in &names {
        c.wait(name, "chat", 3, 10_000).await;
        assert_eq!(received(&c, name).await, vec![1, 2, 3], "{name}");
        let (connected, reason) = c.status(name).await;
        assert!(
            connected,
            "{name} disconnected ({reason:?}): affinity broke"
        );
    }

    // Prometheus scrapes all three gateways.
    let prom = cluster.addr("prometheus");
    eventually(
        "Prometheus reports up == 1 for three gateways",
        Duration::from_secs(60),
        || async {
            let up = prom_query(prom, "up").await;
            up.len() == 3 && up.iter().all(|s| s["value"][1] == json!("1"))
        },
    )
    .await;
    let series = prom_query(prom, "switchboard_redis_up").await;
    assert_eq!(series.len(), 3, "switchboard_redis_up series: {series:?}");

    // Drain gateway-1: its clients come back through HAProxy on the two others.
    let (_, m1) = http_get(admins[0], "/metrics").await;
    let on_first = metric(&m1, "switchboard_socketio_sockets", "");
    assert!(on_first >= 1.0, "no socket on gateway-1 to move:\n{m1}");
    let pid = cluster.pids()["gateway-1"];
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    eventually("gateway-1 exits", Duration::from_secs(20), || async {
        !alive(pid)
    })
    .await;
    let log = cluster.log("gateway-1");
    assert!(log.contains("stopped"), "gateway-1 log:\n{log}");
    assert!(
        !log.contains("drain deadline reached"),
        "gateway-1 log:\n{log}"
    );
    for name in &names {
        eventually(
            &format!("{name} connected"),
            Duration::from_secs(20),
            || async { c.status(name).await.0 },
        )
        .await;
        join(&c, name).await;
    }
    let reconnected: Vec<&String> = {
        let mut v = Vec::new();
        for name in &names {
            let answer = c.request(json!({"cmd": "status", "name": name})).await;
            if answer["connects"].as_u64().unwrap_or(0) >= 2 {
                v.push(name);
            }
        }
        v
    };
    assert_eq!(
        reconnected.len() as f64,
        on_first,
        "the sockets of gateway-1 should have reconnected: {reconnected:?}"
    );
    let mut on_others = 0.0;
    for admin in &admins[1..] {
        let (_, m) = http_get(*admin, "/metrics").await;
        on_others += metric(&m, "switchboard_socketio_sockets", "");
    }
    assert_eq!(on_others, names.len() as f64, "sockets on gateway-2 and -3");

    // Every acknowledged publish reaches every member, after the drain too.
    for n in 4..=6 {
        publish(&c, &names[(n as usize - 4) * 3 + 1], n).await;
    }
    for name in &names {
        c.wait(name, "chat", 6, 10_000).await;
        let got = received(&c, name).await;
        assert_eq!(got, vec![1, 2, 3, 4, 5, 6], "{name}");
    }

    // `down` stops exactly what `up` started.
    let pids = cluster.pids();
    assert_eq!(pids.len(), 6, "recorded services: {pids:?}");
    let started: Vec<u32> = pids.values().copied().filter(|p| *p > 0).collect();
    drop(c);
    let state = cluster.state.clone();
    let stderr = cluster.up_stderr.clone();
    drop(cluster);
    for pid in started {
        assert!(!alive(pid), "pid {pid} still runs after down");
    }
    let status = LocalCluster::script(&state, &["status"]);
    assert!(!status.status.success(), "status after down: {status:?}");
    assert!(stderr.contains("starting haproxy"), "{stderr}");
}
