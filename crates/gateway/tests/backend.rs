//! The backend integration through the `switchboard` binary: the HTTP server API (every route
//! and error status, real HTTP), the backend event proxy against a real HTTP backend started
//! here (accept/reject, acks, joins, emits, order, slow/failing/absent backends, disconnect
//! reports), and the metrics of both parsed from `/metrics`. Clients are the official
//! socket.io-client (tests/clients).

mod backend_support;
#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
mod support;

use backend_support::{json_request, metric_sum, parse_metrics, request, Backend, Reply};
use cluster_support::{eventually, ClientDriver};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::process::Command;

const TOKEN: &str = "test-token-0123456789";

async fn gateway(args: &[&str], label: &str) -> support::GatewayProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info");
    support::GatewayProcess::spawn(cmd, label).await
}

fn url(g: &support::GatewayProcess) -> String {
    format!("http://{}", g.addr)
}

async fn api(
    g: &support::GatewayProcess,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    json_request(g.admin, method, path, Some(TOKEN), body).await
}

async fn metrics(g: &support::GatewayProcess) -> Vec<backend_support::Sample> {
    let (status, text) = request(g.admin, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    parse_metrics(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_api_routes_and_errors() {
    cluster_support::require_js();
    let g = gateway(
        &[
            "--api-token",
            TOKEN,
            "--api-max-body",
            "2048",
            "--namespace",
            "/chat",
        ],
        "gateway",
    )
    .await;
    let c = ClientDriver::spawn().await;
    let a = c.connect("a", &url(&g), "/").await;
    let b = c.connect("b", &url(&g), "/").await;

    // The admin endpoints keep their behaviour on the same router.
    assert_eq!(
        request(g.admin, "GET", "/live", None, None).await,
        (200, "ok\n".into())
    );
    assert_eq!(request(g.admin, "GET", "/ready", None, None).await.0, 200);

    // 401 without or with a wrong token; 404 for unknown routes.
    let (status, body) = json_request(g.admin, "GET", "/api/v1/rooms", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = json_request(
        g.admin,
        "GET",
        "/api/v1/rooms",
        Some("wrong-token-0123456789"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = api(&g, "GET", "/api/v1/nothing", None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    assert_eq!(request(g.admin, "GET", "/nothing", None, None).await.0, 404);

    // 400 naming the field; 413 over the body limit.
    let cases = [
        (json!({"data": 1}), "event"),
        (json!({"event": "x", "namespace": "/nope"}), "namespace"),
        (json!({"event": "x", "rooms": [1]}), "rooms"),
        (json!({"event": "x", "rooms": []}), "rooms"),
        (json!({"event": "x", "except": "a", "extra": 1}), "body"),
        (json!({"event": "connect"}), "event"),
        (json!({"event": "x", "data": {"_binary": "%%"}}), "data"),
    ];
    for (body, field) in cases {
        let (status, answer) = api(&g, "POST", "/api/v1/emit", Some(body.clone())).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["field"], json!(field), "{body} -> {answer}");
    }
    let (status, answer) = request(
        g.admin,
        "POST",
        "/api/v1/emit",
        Some(TOKEN),
        Some("{not json".into()),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = api(
        &g,
        "POST",
        "/api/v1/sockets/join",
        Some(json!({"rooms": ["a"], "users": ["u"], "room": "r"})),
    )
    .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (400, Some("rooms")),
        "{answer}"
    );
    let (status, answer) = api(
        &g,
        "POST",
        "/api/v1/sockets/join",
        Some(json!({"sockets": [a]})),
    )
    .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (400, Some("room")),
        "{answer}"
    );
    let big = json!({"event": "x", "data": "y".repeat(4096)}).to_string();
    let (status, answer) = request(g.admin, "POST", "/api/v1/emit", Some(TOKEN), Some(big)).await;
    assert_eq!(status, 413, "{answer}");

    // join by socket id, then the rooms and sockets views.
    let (status, answer) = api(
        &g,
        "POST",
        "/api/v1/sockets/join",
        Some(json!({"sockets": [a], "room": "r1"})),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"ok": true})));
    let (status, rooms) = api(&g, "GET", "/api/v1/rooms?namespace=/", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        rooms["rooms"],
        json!([{"name": "r1", "sockets": 1}]),
        "{rooms}"
    );
    assert_eq!(rooms["missing"], json!([]));
    let (_, sockets) = api(&g, "GET", "/api/v1/sockets?room=r1", None).await;
    let list = sockets["sockets"].as_array().expect("sockets");
    assert_eq!(list.len(), 1, "{sockets}");
    assert_eq!(list[0]["id"], json!(a));
    assert_eq!(list[0]["rooms"], json!(["r1"]));
    assert_eq!(list[0]["node"], json!("standalone"));
    let (_, all) = api(&g, "GET", "/api/v1/sockets", None).await;
    assert_eq!(all["sockets"].as_array().map(Vec::len), Some(2), "{all}");

    // emit to a room, to everyone, and with except.
    let (status, _) = api(
        &g,
        "POST",
        "/api/v1/emit",
        Some(json!({"rooms": ["r1"], "event": "news", "data": {"n": 1}})),
    )
    .await;
    assert_eq!(status, 200);
    let got = c.wait("a", "news", 1, 5000).await;
    assert_eq!(got[0]["args"], json!([{"n": 1}]));
    api(
        &g,
        "POST",
        "/api/v1/emit",
        Some(json!({"event": "all", "except": ["r1"]})),
    )
    .await;
    api(
        &g,
        "POST",
        "/api/v1/emit",
        Some(json!({"event": "all", "data": 2})),
    )
    .await;
    c.wait("b", "all", 2, 5000).await;
    c.wait("a", "all", 1, 5000).await;
    assert!(c.events_named("b", "news").await.is_empty());

    // A user is the room user:<id>.
    api(
        &g,
        "POST",
        "/api/v1/sockets/join",
        Some(json!({"sockets": [b], "room": "user:u7"})),
    )
    .await;
    let (status, user) = api(&g, "GET", "/api/v1/users/u7", None).await;
    assert_eq!(status, 200);
    assert_eq!(user["online"], json!(true), "{user}");
    assert_eq!(user["sockets"][0]["id"], json!(b));
    assert_eq!(user["sockets"][0]["user"], json!("u7"));
    let (_, nobody) = api(&g, "GET", "/api/v1/users/u8", None).await;
    assert_eq!(nobody["online"], json!(false));
    api(
        &g,
        "POST",
        "/api/v1/emit",
        Some(json!({"rooms": ["user:u7"], "event": "dm", "data": "hi"})),
    )
    .await;
    c.wait("b", "dm", 1, 5000).await;
    assert!(c.events_named("a", "dm").await.is_empty());
    // Binary data travels as a base64 marker.
    api(
        &g,
        "POST",
        "/api/v1/emit",
        Some(json!({"rooms": ["user:u7"], "event": "file", "data": {"_binary": "AQID"}})),
    )
    .await;
    let file = c.wait("b", "file", 1, 5000).await;
    assert_eq!(file[0]["args"], json!([{"$bin": "AQID"}]));

    // leave, by users, and by rooms.
    api(
        &g,
        "POST",
        "/api/v1/sockets/join",
        Some(json!({"users": ["u7"], "room": ["r1", "r2"]})),
    )
    .await;
    let (_, rooms) = api(&g, "GET", "/api/v1/rooms", None).await;
    assert_eq!(
        rooms["rooms"],
        json!([{"name": "r1", "sockets": 2}, {"name": "r2", "sockets": 1}, {"name": "user:u7", "sockets": 1}])
    );
    api(
        &g,
        "POST",
        "/api/v1/sockets/leave",
        Some(json!({"rooms": ["r1"], "room": "r1"})),
    )
    .await;
    let (_, rooms) = api(&g, "GET", "/api/v1/rooms", None).await;
    assert_eq!(
        rooms["rooms"],
        json!([{"name": "r2", "sockets": 1}, {"name": "user:u7", "sockets": 1}])
    );

    // Another namespace is addressed by name only.
    c.connect("chat", &url(&g), "/chat").await;
    let (_, chat) = api(&g, "GET", "/api/v1/sockets?namespace=/chat", None).await;
    assert_eq!(chat["sockets"].as_array().map(Vec::len), Some(1), "{chat}");
    let (status, _) = api(&g, "GET", "/api/v1/sockets?namespace=/nope", None).await;
    assert_eq!(status, 400);

    // disconnect a user.
    let (status, _) = api(
        &g,
        "POST",
        "/api/v1/sockets/disconnect",
        Some(json!({"users": ["u7"], "reason": "banned"})),
    )
    .await;
    assert_eq!(status, 200);
    eventually("b is disconnected", Duration::from_secs(5), || async {
        c.status("b").await == (false, Some("io server disconnect".into()))
    })
    .await;
    assert!(c.status("a").await.0);

    // Every request was counted by route and status.
    let m = metrics(&g).await;
    let requests = "switchboard_api_requests_total";
    assert!(metric_sum(&m, requests, &[("route", "/emit"), ("status", "200")]) >= 5.0);
    assert!(metric_sum(&m, requests, &[("route", "/emit"), ("status", "400")]) >= 7.0);
    assert!(metric_sum(&m, requests, &[("route", "/emit"), ("status", "413")]) >= 1.0);
    assert!(metric_sum(&m, requests, &[("route", "/rooms"), ("status", "401")]) >= 2.0);
    assert!(metric_sum(&m, requests, &[("route", "/users/{id}"), ("status", "200")]) >= 2.0);

    // The named series after real traffic, all under one prefix.
    for s in &m {
        assert!(
            s.name.starts_with("switchboard_"),
            "{} lacks the prefix",
            s.name
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        metric_sum(&m, "switchboard_build_info", &[("version", version)]),
        1.0
    );
    assert_eq!(
        metric_sum(&m, "switchboard_sockets", &[("namespace", "/")]),
        1.0
    );
    assert_eq!(
        metric_sum(&m, "switchboard_sockets", &[("namespace", "/chat")]),
        1.0
    );
    assert!(
        metric_sum(
            &m,
            "switchboard_socketio_connect_duration_seconds_count",
            &[]
        ) >= 3.0
    );
    assert_eq!(
        metric_sum(
            &m,
            "switchboard_socketio_disconnects_total",
            &[("reason", "server_namespace_disconnect")]
        ),
        1.0
    );
    assert!(metric_sum(&m, "switchboard_socketio_broadcasts_total", &[]) >= 5.0);
    assert!(metric_sum(&m, "switchboard_socketio_broadcast_recipients_total", &[]) >= 6.0);
    assert!(
        metric_sum(
            &m,
            "switchboard_socketio_broadcast_duration_seconds_count",
            &[]
        ) >= 5.0
    );
    assert!(metric_sum(&m, "switchboard_socketio_packets_sent_total", &[]) >= 6.0);
    assert!(metric_sum(&m, "switchboard_engine_received_bytes_total", &[]) > 0.0);
    assert!(metric_sum(&m, "switchboard_engine_sent_bytes_total", &[]) > 0.0);
    assert!(
        metric_sum(
            &m,
            "switchboard_api_cluster_request_duration_seconds_count",
            &[]
        ) >= 6.0
    );
    for present in [
        "switchboard_engine_outbound_queue_bytes",
        "switchboard_socketio_ack_timeouts_total",
        "switchboard_engine_volatile_dropped_total",
        "switchboard_engine_slow_consumer_disconnects_total",
        "switchboard_socketio_events_received_total",
    ] {
        assert!(m.iter().any(|s| s.name == present), "{present} missing");
    }

    // Without a token the API does not exist.
    let off = gateway(&[], "gateway without API").await;
    let (status, _) = json_request(off.admin, "GET", "/api/v1/rooms", Some(TOKEN), None).await;
    assert_eq!(status, 404);
}

/// A backend answering by event name: `slow` sleeps past the timeout, `fail` answers 500,
/// `chat` joins and emits, anything else is acked with its sequence number.
fn scripted(hook: &str, body: &Value) -> Reply {
    match hook {
        "connect" => match body["auth"]["user"].as_str() {
            Some("mallory") => {
                Reply::ok(json!({"accept": false, "message": "banned", "data": {"until": 5}}))
            }
            Some(user) => Reply::ok(
                json!({"accept": true, "user": user, "rooms": ["lobby"], "data": {"plan": "pro"}}),
            ),
            None => Reply::ok(json!({"accept": true})),
        },
        "event" => match body["event"].as_str() {
            Some("slow") => Reply {
                status: 200,
                body: json!({"ack": "late"}),
                delay: Duration::from_secs(3),
            },
            Some("fail") => Reply {
                status: 500,
                body: json!({"oops": true}),
                delay: Duration::ZERO,
            },
            Some("chat") => Reply::ok(json!({
                "ack": {"stored": true, "user": body["user"]},
                "join": ["room-9"],
                "emits": [
                    {"to": ["room-9"], "event": "said", "data": body["args"][0]},
                    {"event": "receipt", "data": 1},
                ],
            })),
            Some("quit") => Reply::ok(json!({"leave": ["lobby"]})),
            _ => Reply::ok(json!({"ack": body["args"][0]})),
        },
        _ => Reply::ok(json!({})),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_hooks_against_a_real_backend() {
    cluster_support::require_js();
    let backend = Backend::start(scripted).await;
    let g = gateway(
        &[
            "--proxy-url",
            &backend.url(),
            "--proxy-timeout",
            "1s",
            "--proxy-header",
            "X-Backend-Secret:s3cret",
            "--api-token",
            TOKEN,
        ],
        "gateway with proxy",
    )
    .await;
    let c = ClientDriver::spawn().await;

    // connect: accepted with a user, rooms and data; refused with the backend's message.
    let alice = c
        .connect_with(json!({"name": "alice", "url": url(&g), "nsp": "/", "auth": {"user": "alice"}, "query": {"v": "2"}}))
        .await;
    let connect = &backend.calls("connect")[0];
    assert_eq!(connect["socket"], json!(alice));
    assert_eq!(connect["namespace"], json!("/"));
    assert_eq!(connect["auth"], json!({"user": "alice"}));
    assert_eq!(connect["query"]["v"], json!("2"));
    assert_eq!(connect["address"], json!("127.0.0.1"));
    assert!(connect["headers"]["user-agent"].is_string(), "{connect}");
    assert!(
        connect["headers"].get("host").is_none(),
        "only the configured headers: {connect}"
    );
    assert_eq!(
        backend
            .headers("connect")
            .get("x-backend-secret")
            .map(String::as_str),
        Some("s3cret")
    );
    let (_, user) = api(&g, "GET", "/api/v1/users/alice", None).await;
    assert_eq!(user["online"], json!(true), "{user}");
    assert_eq!(user["sockets"][0]["data"], json!({"plan": "pro"}));
    let mut rooms: Vec<String> =
        serde_json::from_value(user["sockets"][0]["rooms"].clone()).expect("rooms");
    rooms.sort();
    assert_eq!(rooms, vec!["lobby", "user:alice"]);
    let err = c
        .try_connect_with(
            json!({"name": "mallory", "url": url(&g), "nsp": "/", "auth": {"user": "mallory"}}),
        )
        .await
        .expect_err("refused");
    assert!(err.contains("banned"), "{err}");
    let bob = c
        .connect_with(json!({"name": "bob", "url": url(&g), "nsp": "/", "auth": {"user": "bob"}}))
        .await;

    // An event is answered with an ack; joins and emits are applied.
    let ack = c
        .emit_with_ack("bob", "chat", json!([{"text": "hi"}]), 5000)
        .await;
    assert_eq!(ack, json!([{"stored": true, "user": "bob"}]));
    c.wait("bob", "receipt", 1, 5000).await;
    let ack = c
        .emit_with_ack("alice", "chat", json!([{"text": "yo"}]), 5000)
        .await;
    assert_eq!(ack[0]["user"], json!("alice"));
    let said = c.wait("bob", "said", 1, 5000).await;
    assert_eq!(said[0]["args"], json!([{"text": "yo"}]));
    assert!(
        c.events_named("alice", "said").await.is_empty(),
        "the sender is left out"
    );
    let event = backend.calls("event")[0].clone();
    assert_eq!(event["socket"], json!(bob));
    assert_eq!(event["user"], json!("bob"));
    assert_eq!(event["event"], json!("chat"));
    assert_eq!(event["args"], json!([{"text": "hi"}]));
    // Binary arguments reach the backend as base64 markers, and back.
    let ack = c
        .emit_with_ack("bob", "echo", json!([{"$bin": "AQID"}]), 5000)
        .await;
    assert_eq!(ack, json!([{"$bin": "AQID"}]));
    // The relay built-ins are not proxied.
    let ack = c.emit_with_ack("bob", "join", json!(["side"]), 5000).await;
    assert_eq!(ack[0]["ok"], json!(true));
    assert!(backend
        .calls("event")
        .iter()
        .all(|e| e["event"] != json!("join")));

    // Per-socket order is kept.
    for i in 0..20 {
        c.emit("bob", "seq", json!([i])).await;
    }
    let last = c.emit_with_ack("bob", "seq", json!([20]), 5000).await;
    assert_eq!(last, json!([20]));
    let seen: Vec<Value> = backend
        .calls("event")
        .into_iter()
        .filter(|e| e["event"] == json!("seq"))
        .map(|e| e["args"][0].clone())
        .collect();
    assert_eq!(seen, (0..=20).map(|i| json!(i)).collect::<Vec<_>>());

    // A slow backend (past the timeout) and a failing one become error acks; the socket stays.
    let ack = c.emit_with_ack("bob", "slow", json!([]), 5000).await;
    assert_eq!(ack[0]["ok"], json!(false), "{ack}");
    assert!(
        ack[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timeout"),
        "{ack}"
    );
    let ack = c.emit_with_ack("bob", "fail", json!([]), 5000).await;
    assert!(
        ack[0]["error"].as_str().unwrap_or_default().contains("500"),
        "{ack}"
    );
    assert!(c.status("bob").await.0);
    let ack = c
        .emit_with_ack("bob", "after", json!(["still here"]), 5000)
        .await;
    assert_eq!(ack, json!(["still here"]));

    // Disconnects are reported with the reason.
    c.disconnect("alice").await;
    eventually(
        "the disconnect is reported",
        Duration::from_secs(5),
        || async {
            backend
                .calls("disconnect")
                .iter()
                .any(|d| d["socket"] == json!(alice))
        },
    )
    .await;
    let d = backend
        .calls("disconnect")
        .into_iter()
        .find(|d| d["socket"] == json!(alice))
        .expect("reported");
    assert_eq!(d["user"], json!("alice"));
    assert_eq!(d["reason"], json!("client namespace disconnect"));
    assert_eq!(d["namespace"], json!("/"));

    // Every outcome is counted, with a latency histogram (the disconnect is counted once the
    // backend's answer is in).
    eventually(
        "the disconnect call is counted",
        Duration::from_secs(5),
        || async {
            let m = metrics(&g).await;
            metric_sum(
                &m,
                "switchboard_proxy_calls_total",
                &[("hook", "disconnect")],
            ) >= 1.0
        },
    )
    .await;
    let m = metrics(&g).await;
    let calls = "switchboard_proxy_calls_total";
    assert_eq!(
        metric_sum(&m, calls, &[("hook", "connect"), ("outcome", "ok")]),
        2.0
    );
    assert_eq!(
        metric_sum(&m, calls, &[("hook", "connect"), ("outcome", "rejected")]),
        1.0
    );
    assert_eq!(
        metric_sum(&m, calls, &[("hook", "event"), ("outcome", "timeout")]),
        1.0
    );
    assert_eq!(
        metric_sum(&m, calls, &[("hook", "event"), ("outcome", "error_status")]),
        1.0
    );
    assert!(metric_sum(&m, calls, &[("hook", "event"), ("outcome", "ok")]) >= 25.0);
    assert_eq!(
        metric_sum(&m, calls, &[("hook", "disconnect"), ("outcome", "ok")]),
        1.0
    );
    assert!(
        metric_sum(
            &m,
            "switchboard_proxy_call_duration_seconds_count",
            &[("hook", "event")]
        ) >= 27.0
    );
    assert!(
        metric_sum(
            &m,
            "switchboard_proxy_call_duration_seconds_bucket",
            &[("hook", "connect"), ("le", "+Inf")]
        ) >= 3.0
    );

    // No backend at all: connections are refused at once with CONNECT_ERROR, and counted.
    let absent = format!("http://127.0.0.1:{}/hooks", backend_support::closed_port());
    let g2 = gateway(
        &["--proxy-url", &absent, "--proxy-timeout", "2s"],
        "gateway with absent backend",
    )
    .await;
    let err = c
        .try_connect_with(json!({"name": "lost", "url": url(&g2), "nsp": "/"}))
        .await
        .expect_err("no backend");
    assert!(err.contains("backend unavailable"), "{err}");
    let m = metrics(&g2).await;
    assert_eq!(
        metric_sum(
            &m,
            calls,
            &[("hook", "connect"), ("outcome", "unavailable")]
        ),
        1.0
    );
    assert!(
        metric_sum(
            &m,
            "switchboard_proxy_retries_total",
            &[("hook", "connect")]
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_per_socket_queue_answers_at_once() {
    cluster_support::require_js();
    let backend = Backend::start(|hook, body| match (hook, body["event"].as_str()) {
        ("event", Some("slow")) => Reply {
            status: 200,
            body: json!({"ack": "done"}),
            delay: Duration::from_millis(1500),
        },
        _ => Reply::ok(json!({"accept": true, "ack": body["args"][0]})),
    })
    .await;
    let g = gateway(
        &[
            "--proxy-url",
            &backend.url(),
            "--proxy-queue",
            "1",
            "--proxy-timeout",
            "5s",
        ],
        "gateway with a one-event queue",
    )
    .await;
    let c = ClientDriver::spawn().await;
    c.connect("a", &url(&g), "/").await;
    // One event with the backend, one waiting: the next ones are refused without waiting.
    c.emit("a", "slow", json!([])).await;
    eventually(
        "the first event reaches the backend",
        Duration::from_secs(5),
        || async { backend.calls("event").len() == 1 },
    )
    .await;
    c.emit("a", "slow", json!([])).await;
    let ack = c.emit_with_ack("a", "quick", json!([1]), 5000).await;
    assert_eq!(ack[0]["ok"], json!(false), "{ack}");
    assert!(
        ack[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("too many events"),
        "{ack}"
    );
    // Once the queue drains, events go through again, in order.
    eventually(
        "the slow events are answered",
        Duration::from_secs(10),
        || async { backend.calls("event").len() >= 2 },
    )
    .await;
    let ack = c.emit_with_ack("a", "quick", json!([2]), 10_000).await;
    assert_eq!(ack, json!([2]));
    let m = metrics(&g).await;
    assert!(
        metric_sum(
            &m,
            "switchboard_proxy_calls_total",
            &[("hook", "event"), ("outcome", "queue_full")]
        ) >= 1.0
    );
}
