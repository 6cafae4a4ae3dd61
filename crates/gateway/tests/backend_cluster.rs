//! The server API and the backend proxy across three `switchboard` nodes on one real
//! redis-server: sockets, users and rooms seen cluster-wide with their node, emits, joins and
//! disconnects reaching other nodes, proxied emits crossing nodes, and a frozen node reported
//! in `missing` instead of a hang.

mod backend_support;
#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
mod support;

use backend_support::{json_request, Backend, Reply};
use cluster_support::{eventually, ClientDriver, RedisServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::process::Command;

const TOKEN: &str = "cluster-token-0123456789";

async fn node(redis: &str, id: &str, backend: &str) -> support::GatewayProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args([
            "--redis-url",
            redis,
            "--node-id",
            id,
            "--requests-timeout-ms",
            "1000",
        ])
        .args(["--api-token", TOKEN, "--proxy-url", backend])
        .env("RUST_LOG", "info");
    support::GatewayProcess::spawn(cmd, id).await
}

async fn api(g: &support::GatewayProcess, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = json_request(g.admin, method, path, Some(TOKEN), body).await;
    assert_eq!(status, 200, "{method} {path}: {answer}");
    answer
}

fn nodes_of(sockets: &Value) -> Vec<String> {
    let mut nodes: Vec<String> = sockets["sockets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["node"].as_str().map(str::to_owned))
        .collect();
    nodes.sort();
    nodes
}

fn script(hook: &str, body: &Value) -> Reply {
    match (hook, body["event"].as_str()) {
        ("connect", _) => Reply::ok(json!({"accept": true, "user": body["auth"]["user"]})),
        ("event", Some("chat")) => Reply::ok(json!({
            "ack": "stored",
            "join": ["room-9"],
            "emits": [{"to": ["room-9"], "event": "said", "data": body["args"][0]}],
        })),
        _ => Reply::ok(json!({})),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_proxy_across_three_nodes() {
    cluster_support::require_js();
    let redis = RedisServer::start().await;
    let backend = Backend::start(script).await;
    let g1 = node(&redis.url(), "gw-1", &backend.url()).await;
    let g2 = node(&redis.url(), "gw-2", &backend.url()).await;
    let g3 = node(&redis.url(), "gw-3", &backend.url()).await;
    for g in [&g1, &g2, &g3] {
        eventually("node ready", Duration::from_secs(10), || async {
            support::admin_get(g.admin, "/ready").await.0 == 200
        })
        .await;
    }
    let c = ClientDriver::spawn().await;
    for (name, g) in [("a", &g1), ("b", &g2), ("c", &g3)] {
        c.connect_with(json!({"name": name, "url": format!("http://{}", g.addr), "nsp": "/", "auth": {"user": format!("u{name}")}}))
            .await;
    }

    // Every node sees every socket, with the node it is on.
    let all = api(&g1, "GET", "/api/v1/sockets", None).await;
    assert_eq!(nodes_of(&all), vec!["gw-1", "gw-2", "gw-3"], "{all}");
    assert_eq!(all["missing"], json!([]));
    let uc = api(&g1, "GET", "/api/v1/users/uc", None).await;
    assert_eq!(uc["online"], json!(true), "{uc}");
    assert_eq!(uc["sockets"][0]["node"], json!("gw-3"));

    // An emit to a user on another node arrives.
    api(
        &g1,
        "POST",
        "/api/v1/emit",
        Some(json!({"rooms": ["user:uc"], "event": "note", "data": "hi"})),
    )
    .await;
    c.wait("c", "note", 1, 5000).await;
    assert!(c.events_named("a", "note").await.is_empty());

    // A join through node 1 applies on node 2, and the room count is cluster-wide.
    api(
        &g1,
        "POST",
        "/api/v1/sockets/join",
        Some(json!({"users": ["ub", "uc"], "room": "team"})),
    )
    .await;
    eventually("team has two members", Duration::from_secs(5), || async {
        let rooms = api(&g3, "GET", "/api/v1/rooms", None).await;
        rooms["rooms"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r == &json!({"name": "team", "sockets": 2}))
    })
    .await;

    // The backend's emits cross nodes.
    assert_eq!(
        c.emit_with_ack("b", "chat", json!(["first"]), 5000).await,
        json!(["stored"])
    );
    assert_eq!(
        c.emit_with_ack("c", "chat", json!(["second"]), 5000).await,
        json!(["stored"])
    );
    let said = c.wait("b", "said", 1, 5000).await;
    assert_eq!(said[0]["args"], json!(["second"]));

    // A disconnect through node 1 of a socket on node 3, reported by node 3 to the backend.
    api(
        &g1,
        "POST",
        "/api/v1/sockets/disconnect",
        Some(json!({"users": ["uc"]})),
    )
    .await;
    eventually(
        "c disconnected and reported",
        Duration::from_secs(5),
        || async {
            backend.calls("disconnect").iter().any(|d| {
                d["user"] == json!("uc") && d["reason"] == json!("server namespace disconnect")
            })
        },
    )
    .await;
    assert!(!c.status("c").await.0);

    // A frozen node: the API answers with what the others know and names what is missing.
    c.connect_with(json!({"name": "d", "url": format!("http://{}", g3.addr), "nsp": "/", "auth": {"user": "ud"}}))
        .await;
    let before = api(&g1, "GET", "/api/v1/sockets", None).await;
    assert_eq!(nodes_of(&before), vec!["gw-1", "gw-2", "gw-3"], "{before}");
    let pid = g3.child.id().expect("gw-3 pid").to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill -STOP");
    assert!(stop.success());
    eventually("gw-3 is stopped", Duration::from_secs(5), || async {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('T'))
    })
    .await;
    let started = Instant::now();
    let partial = api(&g1, "GET", "/api/v1/sockets", None).await;
    let waited = started.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    assert_eq!(nodes_of(&partial), vec!["gw-1", "gw-2"], "{partial}");
    let missing = partial["missing"].as_array().cloned().unwrap_or_default();
    assert!(!missing.is_empty(), "{partial}");
    assert!(
        missing
            .iter()
            .any(|m| m.as_str().unwrap_or_default().contains("gw-3")),
        "{partial}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "bounded by --requests-timeout-ms, took {waited:?}"
    );
}
