//! The example backend (`examples/chat-backend/`, Python) driving the group
//! chat through the `switchboard` binary, with two official socket.io-client sockets: token
//! auth at connect, `joinRoom` authorized by the backend, `message:send` stored in SQLite and
//! emitted as `message:new` to `channel-<id>` with an ack carrying the stored id, and an
//! `@mention` notification sent by the backend through `POST /api/v1/emit` to `user:<id>`.

mod backend_support;
#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
mod support;

use cluster_support::{workspace_root, ClientDriver};
use serde_json::json;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const TOKEN: &str = "chat-api-token-0123456789";
const SECRET: &str = "hook-secret";

fn python() -> String {
    std::env::var("SWITCHBOARD_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Starts the example backend on a free port; returns the process and its base URL.
async fn start_backend(db: &std::path::Path, gateway_api: &str) -> (tokio::process::Child, String) {
    let script = workspace_root().join("examples/chat-backend/chat_backend.py");
    let mut child = Command::new(python())
        .arg(&script)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "--secret",
            SECRET,
            "--api-token",
            TOKEN,
        ])
        .arg("--db")
        .arg(db)
        .args(["--gateway-api", gateway_api])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} {script:?}: {e}", python()));
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("the backend starts within 15 s")
        .expect("read the backend's stdout")
        .expect("the backend prints its address");
    let url = line
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_chat_through_the_python_backend() {
    cluster_support::require_js();
    let dir = std::env::temp_dir().join(format!("switchboard-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("chat.db");
    let _ = std::fs::remove_file(&db);
    // The backend needs the gateway's API address and the gateway the backend's: fix the
    // admin port first.
    let admin_port = backend_support::closed_port();
    let (_backend, backend_url) =
        start_backend(&db, &format!("http://127.0.0.1:{admin_port}")).await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        &format!("127.0.0.1:{admin_port}"),
    ])
    .args(["--proxy-url", &backend_url, "--api-token", TOKEN])
    .args(["--proxy-header", &format!("X-Switchboard-Secret:{SECRET}")])
    .env("RUST_LOG", "info");
    let g = support::GatewayProcess::spawn(cmd, "gateway").await;
    let url = format!("http://{}", g.addr);

    let c = ClientDriver::spawn().await;
    let err = c
        .try_connect_with(
            json!({"name": "eve", "url": url, "nsp": "/", "auth": {"token": "guess"}}),
        )
        .await
        .expect_err("unknown token refused");
    assert!(err.contains("unauthorized"), "{err}");
    c.connect_with(
        json!({"name": "nikhil", "url": url, "nsp": "/", "auth": {"token": "token-nikhil"}}),
    )
    .await;
    c.connect_with(
        json!({"name": "mridul", "url": url, "nsp": "/", "auth": {"token": "token-mridul"}}),
    )
    .await;

    // joinRoom is authorized by the backend.
    for name in ["nikhil", "mridul"] {
        let ack = c.emit_with_ack(name, "joinRoom", json!([5]), 5000).await;
        assert_eq!(ack, json!([{"ok": true, "room": "channel-5"}]), "{name}");
    }
    let ack = c
        .emit_with_ack("mridul", "joinRoom", json!([6]), 5000)
        .await;
    assert_eq!(ack[0]["ok"], json!(false), "{ack}");

    // message:send -> stored -> message:new to channel-5, ack with the stored id.
    let ack = c
        .emit_with_ack(
            "nikhil",
            "message:send",
            json!([{"channelId": 5, "content": "Hello @mridul!"}]),
            5000,
        )
        .await;
    assert_eq!(ack, json!([{"ok": true, "id": 1}]));
    for name in ["nikhil", "mridul"] {
        let got = c.wait(name, "message:new", 1, 5000).await;
        let m = &got[0]["args"][0];
        assert_eq!(m["id"], json!(1), "{m}");
        assert_eq!(m["channelId"], json!(5));
        assert_eq!(m["userId"], json!("nikhil"));
        assert_eq!(m["userName"], json!("Nikhil"));
        assert_eq!(m["content"], json!("Hello @mridul!"));
    }
    // The mention becomes a notification to user:mridul through the server API.
    let note = c.wait("mridul", "notification", 1, 5000).await;
    assert_eq!(
        note[0]["args"][0],
        json!({"from": "nikhil", "channelId": 5, "messageId": 1})
    );
    assert!(c.events_named("nikhil", "notification").await.is_empty());

    // Sending to a channel one is not a member of is refused and stores nothing.
    let ack = c
        .emit_with_ack(
            "mridul",
            "message:send",
            json!([{"channelId": 6, "content": "sneaky"}]),
            5000,
        )
        .await;
    assert_eq!(ack[0]["ok"], json!(false), "{ack}");
    let ack = c
        .emit_with_ack(
            "mridul",
            "message:send",
            json!([{"channelId": 5, "content": "hi Nikhil"}]),
            5000,
        )
        .await;
    assert_eq!(ack, json!([{"ok": true, "id": 2}]));
    c.wait("nikhil", "message:new", 2, 5000).await;

    // The database holds exactly the two accepted messages.
    let out = std::process::Command::new(python())
        .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT group_concat(id || \":\" || user_id, \",\") FROM messages').fetchone()[0])"])
        .arg(&db)
        .output()
        .expect("query the database");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1:nikhil,2:mridul"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
