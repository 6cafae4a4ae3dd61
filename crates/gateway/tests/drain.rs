//! The drain on SIGTERM, through the real binary: an abandoned polling session (handshake, then
//! no more polls) does not hold the exit for the drain timeout, and while something does hold
//! it, `drain progress` is logged at most once a second.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::GatewayProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

async fn start(drain_secs: &str) -> GatewayProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--drain-timeout-secs", drain_secs])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    GatewayProcess::spawn(cmd, "switchboard").await
}

/// One HTTP/1.1 request over a fresh connection; the response body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{method} {path}: {out}");
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()
}

/// A polling handshake plus a Socket.IO CONNECT on `/`: the session id.
async fn abandoned_polling_session(addr: SocketAddr) -> String {
    let open = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
    let json = open.trim_start_matches('0');
    let v: serde_json::Value = serde_json::from_str(json).expect("open packet");
    let sid = v["sid"].as_str().expect("sid").to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(addr, "POST", &path, "40").await, "ok");
    // Read the CONNECT answer, then never poll again.
    let connected = http(addr, "GET", &path, "").await;
    assert!(connected.starts_with("40"), "{connected}");
    sid
}

async fn sigterm(gw: &GatewayProcess) {
    let pid = gw.child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

/// Waits up to `limit` for the process to exit; its exit status.
async fn exited_within(gw: &mut GatewayProcess, limit: Duration) -> std::process::ExitStatus {
    match tokio::time::timeout(limit, gw.child.wait()).await {
        Ok(status) => status.expect("wait"),
        Err(_) => panic!(
            "the gateway did not exit within {limit:?} of SIGTERM; its log:\n{}",
            gw.log()
        ),
    }
}

#[tokio::test]
async fn an_abandoned_polling_session_does_not_hold_the_drain() {
    // The drain timeout is far above the wait below: only releasing the session lets it exit.
    let mut gw = start("120").await;
    let _a = abandoned_polling_session(gw.addr).await;
    let _b = abandoned_polling_session(gw.addr).await;
    sigterm(&gw).await;
    let status = exited_within(&mut gw, Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}; log:\n{}", gw.log());
    let log = gw.log();
    assert!(log.contains("connections=2"), "{log}");
    assert!(!log.contains("drain deadline reached"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn drain_progress_is_logged_at_most_once_a_second() {
    let drain_secs = 4;
    let mut gw = start(&drain_secs.to_string()).await;
    let sid = abandoned_polling_session(gw.addr).await;
    // A POST whose body never arrives keeps the session's transport busy through the drain.
    let mut held = TcpStream::connect(gw.addr).await.expect("connect");
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n42"
    );
    held.write_all(head.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&gw).await;
    let status = exited_within(&mut gw, Duration::from_secs(30)).await;
    assert!(status.success(), "exit status {status}");
    let log = gw.log();
    assert!(log.contains("drain deadline reached"), "{log}");
    let progress = log.matches("drain progress").count();
    assert!(
        (1..=drain_secs).contains(&progress),
        "{progress} `drain progress` lines in a {drain_secs} s drain:\n{log}"
    );
    drop(held);
}
