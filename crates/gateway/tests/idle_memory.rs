//! An idle connection holds no large buffer after a large message: through the real binary,
//! 1000 WebSocket clients each receive one 512 KB event (from the HTTP API), and the gateway's
//! RSS then returns near what it was before the event. A transport that kept each connection's
//! write buffer at its largest size would hold about 500 MiB more.
//!
//! The clients are raw sockets that read into a small buffer and discard, so they measure
//! nothing of their own; the server runs in its own process, so its RSS is its own.

mod support;

use std::time::Duration;
use support::GatewayProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

const CLIENTS: usize = 1000;
const MESSAGE: usize = 512 * 1000;
const TOKEN: &str = "idle-memory-test-token";

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status");
    kib * 1024
}

/// A masked text frame from a client.
fn client_text(text: &str) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x81, 0x80 | text.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Connects, upgrades, joins `/`, and returns once the CONNECT reply arrived.
async fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send upgrade");
    s.write_all(&client_text("40")).await.expect("send CONNECT");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !find(&seen, b"40{\"sid\"") {
        let n = s.read(&mut buf).await.expect("read handshake");
        assert!(n > 0, "the gateway closed during the handshake");
        seen.extend_from_slice(&buf[..n]);
        assert!(seen.len() < 64 * 1024, "no CONNECT reply");
    }
    s
}

/// Reads and discards until `want` bytes arrived.
async fn drain(mut s: TcpStream, want: usize) -> TcpStream {
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0;
    while got < want {
        let n = s.read(&mut buf).await.expect("read the event");
        assert!(n > 0, "the gateway closed before the event arrived");
        got += n;
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_returns_near_baseline_after_one_large_message_per_connection() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--api-token", TOKEN])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let g = GatewayProcess::spawn(cmd, "switchboard").await;
    let pid = g.child.id().expect("gateway pid");

    let mut clients = Vec::with_capacity(CLIENTS);
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        connecting.spawn(connect(g.addr));
        if connecting.len() >= 50 {
            clients.push(
                connecting
                    .join_next()
                    .await
                    .expect("task")
                    .expect("connect"),
            );
        }
    }
    while let Some(c) = connecting.join_next().await {
        clients.push(c.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_bytes(pid);

    let body = serde_json::json!({"event": "big", "data": "x".repeat(MESSAGE)}).to_string();
    let mut api = TcpStream::connect(g.admin)
        .await
        .expect("connect to the API");
    let req = format!(
        "POST /api/v1/emit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    api.write_all(req.as_bytes()).await.expect("send emit");
    let mut answer = String::new();
    api.read_to_string(&mut answer)
        .await
        .expect("read the API answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut reading = tokio::task::JoinSet::new();
    for c in clients {
        reading.spawn(drain(c, MESSAGE));
    }
    let mut clients = Vec::with_capacity(CLIENTS);
    let all = async {
        while let Some(c) = reading.join_next().await {
            clients.push(c.expect("read task"));
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("every client got the event within 120 s");
    assert_eq!(clients.len(), CLIENTS);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = rss_bytes(pid);

    // ~500 MiB if every connection kept a buffer of the message's size; a few MiB otherwise
    // (allocator slack, the one shared copy of the frame). The bound is generous on purpose.
    let grown = after.saturating_sub(before);
    eprintln!(
        "gateway RSS {} KiB before the event, {} KiB after it was delivered",
        before / 1024,
        after / 1024
    );
    assert!(
        grown < 64 << 20,
        "RSS grew by {} KiB ({} B per connection) after one {MESSAGE} B message to each of \
         {CLIENTS} idle connections: a connection keeps a large buffer while idle",
        grown / 1024,
        grown / CLIENTS as u64
    );
    drop(clients);
}
