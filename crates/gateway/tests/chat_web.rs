//! The browser demo `examples/chat-web/`, served by the gateway's `--static-dir`, in headless
//! Chromium driven over the DevTools protocol: two pages, each loaded from a different gateway
//! of one Redis cluster, chat in one room (online notices, "X is typing" for everyone but X,
//! messages, offline notice). A screenshot is saved to `target/test-artifacts/chat-web.png`.
//! The static file handling (content types, no traversal, no hidden files, GET/HEAD only) is
//! checked over raw HTTP first.
//!
//! Needs Debian's `chromium` (or `CHROMIUM=/path`) and `npm ci` in examples/chat-web;
//! scripts/test.sh installs both.

#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
mod support;

use cluster_support::{eventually, workspace_root, RedisServer};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use support::GatewayProcess;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

fn demo_dir() -> PathBuf {
    workspace_root().join("examples/chat-web")
}

async fn gateway(redis: &RedisServer) -> GatewayProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--redis-url", &redis.url()])
        .arg("--static-dir")
        .arg(demo_dir())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    GatewayProcess::spawn(cmd, "switchboard --static-dir examples/chat-web").await
}

/// One raw HTTP/1.1 request: `(status, content type, body)`.
async fn raw(addr: SocketAddr, method: &str, target: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

#[tokio::test]
async fn static_dir_serves_files_safely() {
    let redis = RedisServer::start().await;
    let gw = gateway(&redis).await;
    let (status, ct, body) = raw(gw.addr, "GET", "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(body.contains("Switchboard group chat"), "{body}");
    let (status, ct, _) = raw(gw.addr, "GET", "/chat.js").await;
    assert_eq!(status, 200);
    assert!(ct.contains("javascript"), "{ct}");
    let bundle = "/node_modules/socket.io-client/dist/socket.io.min.js";
    let (status, _, _) = raw(gw.addr, "HEAD", bundle).await;
    assert_eq!(
        status, 200,
        "{bundle} missing: run `npm ci` in examples/chat-web (scripts/test.sh does)"
    );
    for target in [
        "/../Cargo.toml",
        "/..%2fCargo.toml",
        "/x%2f..%2f..%2f..%2fCargo.toml",
        "/%2e%2e/%2e%2e/Cargo.toml",
        "/node_modules/.package-lock.json",
        "//etc/passwd",
        "/nope.html",
    ] {
        let (status, _, body) = raw(gw.addr, "GET", target).await;
        assert!(
            status == 404 || status == 400,
            "GET {target}: {status} {body}"
        );
        assert!(
            !body.contains("[workspace]") && !body.contains("root:"),
            "GET {target} leaked: {body}"
        );
    }
    let (status, _, _) = raw(gw.addr, "POST", "/index.html").await;
    assert_eq!(status, 405);
    // Socket.IO still answers under its path.
    let (status, _, body) = raw(gw.addr, "GET", "/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("0{\"sid\":"), "{body}");
}

/// A DevTools protocol connection to the browser, with flattened page sessions.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    /// Events received while waiting for a reply (kept for later inspection).
    events: VecDeque<Value>,
}

impl Cdp {
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to chromium");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer from chromium to {method}"));
            let Some(Ok(Message::Text(text))) = next else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).expect("CDP JSON");
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
            self.events.push_back(v);
            if self.events.len() > 1000 {
                self.events.pop_front();
            }
        }
    }

    /// Evaluates `expr` in a page; its value (promises awaited).
    async fn eval(&mut self, session: &str, expr: &str) -> Value {
        let r = self
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expr} threw: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is true in a page.
    async fn wait_for(&mut self, session: &str, expr: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // The page may still be loading: a missing element counts as "not yet".
        let guarded =
            format!("(() => {{ try {{ return {expr}; }} catch (e) {{ return false; }} }})()");
        loop {
            if self.eval(session, &guarded).await == json!(true) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self.eval(session, "document.body.innerText").await;
                panic!("timed out waiting for {what} ({expr}); the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens `url` in a fresh browser context (its own cookies); the page's session id.
    async fn open_page(&mut self, url: &str) -> String {
        let ctx = self
            .call(None, "Target.createBrowserContext", json!({}))
            .await;
        let target = self
            .call(
                None,
                "Target.createTarget",
                json!({"url": url, "browserContextId": ctx["browserContextId"]}),
            )
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned()
    }
}

fn chromium_exe() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// Starts headless Chromium with a fresh profile; the process and its DevTools WebSocket URL.
async fn start_chromium(profile: &std::path::Path) -> (tokio::process::Child, String) {
    let mut child = Command::new(chromium_exe())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=900,700",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install Debian's chromium (scripts/test.sh does) or set CHROMIUM",
                chromium_exe()
            )
        });
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let mut seen = String::new();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(i) = line.find("ws://") {
                return Some(line[i..].trim().to_owned());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("chromium printed no DevTools URL:\n{seen}"));
    // Keep reading stderr so chromium never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

fn text_of(id: &str) -> String {
    format!("document.getElementById({id:?}).innerText")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_on_two_gateways_chat_in_one_room() {
    let redis = RedisServer::start().await;
    let gw1 = gateway(&redis).await;
    let gw2 = gateway(&redis).await;
    for gw in [&gw1, &gw2] {
        eventually("gateway ready", Duration::from_secs(10), || async {
            support::admin_get(gw.admin, "/ready").await.0 == 200
        })
        .await;
    }
    let profile = std::env::temp_dir().join(format!("switchboard-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let (mut chromium, url) = start_chromium(&profile).await;
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect to chromium's DevTools");
    let mut cdp = Cdp {
        ws,
        next_id: 0,
        events: VecDeque::new(),
    };

    let alice = cdp.open_page(&format!("http://{}/", gw1.addr)).await;
    let bob = cdp.open_page(&format!("http://{}/", gw2.addr)).await;
    for page in [&alice, &bob] {
        cdp.wait_for(
            page,
            "document.getElementById('status').innerText.startsWith('connected')",
            "the page to connect",
        )
        .await;
    }
    let join = |name: &str| {
        format!(
            "document.getElementById('name').value = {name:?};
             document.getElementById('room').value = 'general';
             document.getElementById('join-form').requestSubmit(); true"
        )
    };
    cdp.eval(&alice, &join("alice")).await;
    cdp.wait_for(
        &alice,
        "document.getElementById('chat').classList.contains('joined')",
        "alice joined",
    )
    .await;
    cdp.eval(&bob, &join("bob")).await;
    let log_has = |s: &str| format!("{}.includes({s:?})", text_of("log"));
    cdp.wait_for(&alice, &log_has("bob is online"), "alice sees bob online")
        .await;
    cdp.wait_for(
        &bob,
        &format!("{}.includes('alice')", text_of("members")),
        "bob sees alice in the member list",
    )
    .await;

    // Bob types: alice sees it, bob does not.
    cdp.eval(
        &bob,
        "const t = document.getElementById('text'); t.value = 'hel';
         t.dispatchEvent(new Event('input')); true",
    )
    .await;
    cdp.wait_for(
        &alice,
        &format!("{} === 'bob is typing…'", text_of("typing")),
        "alice sees bob typing",
    )
    .await;
    assert_eq!(cdp.eval(&bob, &text_of("typing")).await, json!(""));

    let send = |text: &str| {
        format!(
            "document.getElementById('text').value = {text:?};
             document.getElementById('send-form').requestSubmit(); true"
        )
    };
    cdp.eval(&bob, &send("hello from bob")).await;
    cdp.wait_for(
        &alice,
        &log_has("bob: hello from bob"),
        "alice gets bob's message",
    )
    .await;
    cdp.eval(&alice, &send("hi bob, alice here")).await;
    cdp.wait_for(
        &bob,
        &log_has("alice: hi bob, alice here"),
        "bob gets alice's message",
    )
    .await;
    cdp.wait_for(
        &alice,
        &log_has("alice: hi bob, alice here"),
        "alice sees her own message",
    )
    .await;

    // The screenshot shows alice's page with the conversation.
    let shot = cdp
        .call(
            Some(&alice),
            "Page.captureScreenshot",
            json!({"format": "png"}),
        )
        .await;
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        shot["data"].as_str().expect("screenshot data"),
    )
    .expect("base64 PNG");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let artifacts = workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("create target/test-artifacts");
    std::fs::write(artifacts.join("chat-web.png"), &png).expect("write the screenshot");

    // Bob leaves: alice gets the offline notice.
    cdp.eval(&bob, "document.getElementById('leave').click(); true")
        .await;
    cdp.wait_for(
        &alice,
        &log_has("bob went offline"),
        "alice sees bob offline",
    )
    .await;
    cdp.wait_for(
        &alice,
        &format!("!{}.includes('bob')", text_of("members")),
        "bob gone from alice's member list",
    )
    .await;

    drop(cdp);
    let _ = chromium.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
}
