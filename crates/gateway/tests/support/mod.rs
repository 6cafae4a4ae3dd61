//! Shared by the gateway's integration tests: reading the gateway's startup log.
#![allow(dead_code)]

use std::net::SocketAddr;

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c2 in chars.by_ref() {
                    if c2.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Extracts the `addr=HOST:PORT` value from a log line that contains `marker`.
pub fn parse_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    let line = strip_ansi(line);
    if !line.contains(marker) {
        return None;
    }
    line.split_whitespace()
        .filter_map(|tok| tok.strip_prefix("addr="))
        .map(|v| v.trim_matches(|c: char| c == '"' || c == ',' || c == '}' || c == '{'))
        .find_map(|v| v.parse().ok())
}

/// `GET path` on an admin listener (`/ready`, `/live`, `/metrics`) over a fresh connection:
/// `(status, body)`, status 0 when the listener cannot be reached.
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(admin).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        s.read_to_string(&mut out),
    )
    .await;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// A `switchboard` process whose stderr is collected and whose two listening addresses were
/// read from its log.
pub struct GatewayProcess {
    /// The process (killed on drop).
    pub child: tokio::process::Child,
    /// Socket.IO listener.
    pub addr: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl GatewayProcess {
    /// Spawns `cmd` (the binary with its arguments and environment; it must log at info) and
    /// waits up to 20 s for `socket.io listening addr=` and `admin listening addr=`.
    pub async fn spawn(mut cmd: tokio::process::Command, label: &str) -> GatewayProcess {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the switchboard binary");
        let log: std::sync::Arc<std::sync::Mutex<String>> = Default::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut admin) = (None, None);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while addr.is_none() || admin.is_none() {
            let Ok(Some(line)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                panic!(
                    "{label} did not log its addresses (it needs RUST_LOG at info):\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            };
            addr = addr.or_else(|| parse_addr(&line, "socket.io listening"));
            admin = admin.or_else(|| parse_addr(&line, "admin listening"));
        }
        GatewayProcess {
            child,
            addr: addr.expect("socket.io address"),
            admin: admin.expect("admin address"),
            log,
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
