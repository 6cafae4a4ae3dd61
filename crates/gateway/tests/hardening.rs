//! Adversarial integration tests: each test starts its own `switchboard` gateway, connects an innocent
//! WebSocket client first, sends one class of malicious input (see `hardening.md` §1.9, §3, §5), checks
//! the protocol's answer and the matching metric, then checks the innocent client still works.
//!
//! Clients are blocking (std `TcpStream` + `tungstenite`) with read timeouts, so every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use support::parse_addr;

use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// Longest single wait in these tests.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Gateway process
// ---------------------------------------------------------------------------------------------

struct Gateway {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(flags: &[&str]) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(flags)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gateway");
        let (tx, rx) = mpsc::channel::<String>();
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut reader = BufReader::new(err);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            assert!(Instant::now() < deadline, "gateway did not start");
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                addr = addr.or_else(|| parse_addr(&line, "socket.io listening"));
                admin = admin.or_else(|| parse_addr(&line, "admin listening"));
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("gateway exited early: {status}");
            }
        }
        Gateway {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "gateway process died"
        );
    }

    fn metrics(&self) -> Metrics {
        let res = http(
            self.admin,
            "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes(),
        );
        assert_eq!(res.status, 200, "metrics scrape failed");
        Metrics(String::from_utf8_lossy(&res.body).into_owned())
    }
}

/// One `/metrics` scrape.
struct Metrics(String);

impl Metrics {
    /// Sum of every sample of `name` whose labels contain all of `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut sum = 0.0;
        for line in self.0.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let (label_part, value) = if let Some(r) = rest.strip_prefix('{') {
                let Some(end) = r.find('}') else { continue };
                (&r[..end], r[end + 1..].trim())
            } else if rest.starts_with(' ') {
                ("", rest.trim())
            } else {
                continue;
            };
            if labels
                .iter()
                .all(|(k, v)| label_part.contains(&format!("{k}=\"{v}\"")))
            {
                let v = value.split_whitespace().next().unwrap_or("0");
                sum += v.parse::<f64>().unwrap_or(0.0);
            }
        }
        sum
    }
}

/// Asserts that `name{labels}` grew by at least one between two scrapes.
fn assert_incremented(before: &Metrics, after: &Metrics, name: &str, labels: &[(&str, &str)]) {
    let (b, a) = (before.get(name, labels), after.get(name, labels));
    assert!(
        a > b,
        "metric {name}{labels:?} did not increase ({b} -> {a}); scrape:\n{}",
        after
            .0
            .lines()
            .filter(|l| l.starts_with(name))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Polls `/metrics` until `name{labels}` exceeds the value in `before` (metrics may lag the close).
fn wait_incremented(gw: &Gateway, before: &Metrics, name: &str, labels: &[(&str, &str)]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let after = gw.metrics();
        if after.get(name, labels) > before.get(name, labels) || Instant::now() > deadline {
            assert_incremented(before, &after, name, labels);
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct HttpResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl HttpResponse {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Sends one raw request on a fresh connection and reads one response.
fn http(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut s = connect(addr);
    s.write_all(request).expect("write request");
    read_response(&mut s).expect("read response")
}

/// Reads one HTTP response (Content-Length, chunked or until EOF). `None` if the connection closed first.
fn read_response(s: &mut TcpStream) -> Option<HttpResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut read_more = |rest: &mut Vec<u8>| match s.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            rest.extend_from_slice(&chunk[..n]);
            true
        }
    };
    let body = if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            if !read_more(&mut rest) {
                break;
            }
        }
        rest.truncate(len);
        rest
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let line_end = loop {
                if let Some(p) = find(&rest[pos..], b"\r\n") {
                    break pos + p;
                }
                if !read_more(&mut rest) {
                    return Some(HttpResponse { status, head, body });
                }
            };
            let size_text = String::from_utf8_lossy(&rest[pos..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            pos = line_end + 2;
            if size == 0 {
                break;
            }
            while rest.len() < pos + size + 2 {
                if !read_more(&mut rest) {
                    return Some(HttpResponse { status, head, body });
                }
            }
            body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
        body
    } else if status == 101 || status == 204 || status == 304 {
        Vec::new()
    } else {
        while read_more(&mut rest) {}
        rest
    };
    Some(HttpResponse { status, head, body })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> HttpResponse {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    http(addr, &req)
}

/// Opens a polling session and returns its sid.
fn polling_handshake(addr: SocketAddr) -> String {
    let res = get(addr, "/socket.io/?EIO=4&transport=polling");
    assert_eq!(res.status, 200, "polling handshake: {res:?}");
    let text = res.text();
    let open: Value = serde_json::from_str(text.strip_prefix('0').expect("open packet")).unwrap();
    open["sid"].as_str().unwrap().to_string()
}

fn poll_path(sid: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
}

/// A polling session is alive when a CONNECT round trip works on it.
fn assert_polling_session_works(addr: SocketAddr, sid: &str) {
    let res = post(addr, &poll_path(sid), "text/plain;charset=UTF-8", b"40");
    assert_eq!(res.status, 200, "POST on live session: {res:?}");
    let res = get(addr, &poll_path(sid));
    assert_eq!(res.status, 200, "GET on live session: {res:?}");
    assert!(
        res.text().starts_with("40"),
        "expected CONNECT answer: {res:?}"
    );
}

/// The session `sid` is closed. A closed polling session stays reachable until its
/// supervisor has seen the final CLOSE packet (`1`) delivered, so GETs racing that (on a busy
/// machine, more than one) receive `1`; after that, "Session ID unknown".
fn assert_session_gone(addr: SocketAddr, sid: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let res = get(addr, &poll_path(sid));
        if res.status != 200 {
            assert_engine_error(&res, 1);
            return;
        }
        assert_eq!(
            res.text(),
            "1",
            "a closing session only sends CLOSE: {res:?}"
        );
        assert!(
            Instant::now() < deadline,
            "session {sid} still answers after {WAIT:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn assert_engine_error(res: &HttpResponse, code: u64) {
    assert_eq!(res.status, 400, "expected 400: {res:?}");
    assert_eq!(
        res.json()["code"],
        code,
        "wrong Engine.IO error code: {res:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// WebSocket clients
// ---------------------------------------------------------------------------------------------

type Ws = WebSocket<TcpStream>;

/// Opens an Engine.IO WebSocket session and connects the `/` namespace.
fn ws_connect(addr: SocketAddr) -> Ws {
    let stream = connect(addr);
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).expect("ws handshake");
    let open = ws_recv_text(&mut ws).expect("open packet");
    assert!(open.starts_with('0'), "expected open packet, got {open}");
    ws.send(Message::text("40")).unwrap();
    let connect = ws_recv_text(&mut ws).expect("connect answer");
    assert!(
        connect.starts_with("40{"),
        "expected CONNECT answer, got {connect}"
    );
    ws
}

/// Next text message, answering pings. `None` if the connection closed.
fn ws_recv_text(ws: &mut Ws) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no message within {WAIT:?}");
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "2" => {
                ws.send(Message::text("3")).ok()?;
            }
            Ok(Message::Text(t)) => return Some(t.as_str().to_string()),
            Ok(Message::Close(_)) => return None,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                panic!("no message within {WAIT:?}")
            }
            Err(_) => return None,
        }
    }
}

/// Reads until the server closes the connection; returns the close code if a Close frame came.
/// Panics if the connection is still open after `WAIT`.
fn ws_expect_close(ws: &mut Ws) -> Option<u16> {
    let deadline = Instant::now() + WAIT;
    let mut code = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "connection still open after {WAIT:?}"
        );
        match ws.read() {
            Ok(Message::Close(frame)) => {
                code = Some(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                panic!("connection still open after {WAIT:?}")
            }
            Err(_) => return code,
        }
    }
}

/// Sends `42<ack><args>` and returns the ack's first argument.
fn ws_call(ws: &mut Ws, ack: u64, args: &Value) -> Value {
    ws.send(Message::text(format!("42{ack}{args}"))).unwrap();
    let prefix = format!("43{ack}");
    loop {
        let text = ws_recv_text(ws).expect("connection closed while waiting for an ack");
        if let Some(rest) = text.strip_prefix(&prefix) {
            let v: Value = serde_json::from_str(rest).unwrap();
            return v[0].clone();
        }
    }
}

/// A well-behaved client, connected before each attack, in room "r".
struct Innocent {
    ws: Ws,
    next_ack: u64,
}

impl Innocent {
    fn connect(gw: &Gateway) -> Innocent {
        let mut ws = ws_connect(gw.addr);
        let answer = ws_call(&mut ws, 0, &serde_json::json!(["join", "r"]));
        assert_eq!(answer["ok"], true, "join failed: {answer}");
        Innocent { ws, next_ack: 1 }
    }

    fn call(&mut self, args: Value) -> Value {
        let ack = self.next_ack;
        self.next_ack += 1;
        ws_call(&mut self.ws, ack, &args)
    }

    /// Publishes to its own room with `self: true` and expects both the message and the ack.
    fn check(&mut self) {
        let ack = self.next_ack;
        self.next_ack += 1;
        let token = format!("still-alive-{ack}");
        let req =
            serde_json::json!(["publish", {"to": "r", "event": "m", "data": token, "self": true}]);
        self.ws
            .send(Message::text(format!("42{ack}{req}")))
            .expect("innocent client can send");
        let (mut got_msg, mut got_ack) = (false, false);
        while !(got_msg && got_ack) {
            let text = ws_recv_text(&mut self.ws).expect("innocent client was disconnected");
            if text == format!("42[\"m\",\"{token}\"]") {
                got_msg = true;
            } else if let Some(rest) = text.strip_prefix(&format!("43{ack}")) {
                let v: Value = serde_json::from_str(rest).unwrap();
                assert_eq!(v[0]["ok"], true, "publish refused: {text}");
                got_ack = true;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Socket.IO parser attacks over WebSocket
// ---------------------------------------------------------------------------------------------

enum Step {
    Text(String),
    Binary(Vec<u8>),
}

fn text(s: &str) -> Step {
    Step::Text(s.to_string())
}

/// Runs one parser attack on a fresh connection: it must be closed and counted as a Socket.IO parse error.
fn parser_attack(steps: Vec<Step>) {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let before = gw.metrics();
    let mut attacker = ws_connect(gw.addr);
    for step in steps {
        let msg = match step {
            Step::Text(t) => Message::text(t),
            Step::Binary(b) => Message::binary(b),
        };
        // the server may already have closed after an earlier step
        if attacker.send(msg).is_err() {
            break;
        }
    }
    let code = ws_expect_close(&mut attacker);
    assert!(
        matches!(code, Some(1002)),
        "expected close 1002 (parse error), got {code:?}"
    );
    wait_incremented(&gw, &before, "switchboard_socketio_parse_errors_total", &[]);
    wait_incremented(
        &gw,
        &before,
        "switchboard_engine_sessions_closed_total",
        &[("reason", "parse_error")],
    );
    innocent.check();
    gw.assert_alive();
}

#[test]
fn parser_rejects_non_string_event_name() {
    parser_attack(vec![text(r#"42[{"toString":"foo"}]"#)]);
}

#[test]
fn parser_rejects_reserved_event_name() {
    parser_attack(vec![text(r#"42["connect"]"#)]);
}

#[test]
fn parser_rejects_placeholder_num_splice() {
    parser_attack(vec![
        text(r#"451-["a",{"_placeholder":true,"num":"splice"}]"#),
        Step::Binary(vec![1, 2, 3]),
    ]);
}

#[test]
fn parser_rejects_placeholder_num_negative() {
    parser_attack(vec![
        text(r#"451-["a",{"_placeholder":true,"num":-1}]"#),
        Step::Binary(vec![1, 2, 3]),
    ]);
}

#[test]
fn parser_rejects_placeholder_num_out_of_range() {
    parser_attack(vec![
        text(r#"451-["a",{"_placeholder":true,"num":7}]"#),
        Step::Binary(vec![1, 2, 3]),
    ]);
}

#[test]
fn parser_rejects_binary_header_without_attachments() {
    parser_attack(vec![text(r#"450-["a"]"#)]);
}

#[test]
fn parser_rejects_too_many_attachments() {
    parser_attack(vec![text(r#"4511-["a",{"_placeholder":true,"num":0}]"#)]);
}

#[test]
fn parser_rejects_text_while_attachments_pending() {
    parser_attack(vec![
        text(r#"451-["a",{"_placeholder":true,"num":0}]"#),
        text(r#"42["b"]"#),
    ]);
}

#[test]
fn parser_rejects_binary_without_pending_header() {
    parser_attack(vec![Step::Binary(vec![0xde, 0xad, 0xbe, 0xef])]);
}

#[test]
fn parser_rejects_garbage_ack_id() {
    parser_attack(vec![text(r#"42abc["a"]"#)]);
}

#[test]
fn parser_rejects_deep_nesting() {
    let mut s = String::from("42[\"a\",");
    s.push_str(&"[".repeat(100_000));
    parser_attack(vec![Step::Text(s)]);
}

#[test]
fn parser_rejects_ack_id_overflow() {
    parser_attack(vec![text(r#"4218446744073709551616["a"]"#)]);
}

#[test]
fn parser_rejects_event_payload_not_array() {
    parser_attack(vec![text("42{}")]);
}

#[test]
fn parser_rejects_unknown_socketio_type() {
    parser_attack(vec![text(r#"47["a"]"#)]);
}

#[test]
fn parser_rejects_connect_with_non_object_payload() {
    parser_attack(vec![text(r#"40/other,"x""#)]);
}

#[test]
fn parser_rejects_lone_surrogate_and_huge_number() {
    // invalid JSON escapes are parse errors, never panics
    parser_attack(vec![text(r#"42["a","\ud800",1e999999]"#)]);
}

#[test]
fn unknown_namespace_gets_connect_error_and_connection_stays() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let before = gw.metrics();
    let mut client = ws_connect(gw.addr);
    client.send(Message::text("40/unknown,")).unwrap();
    let answer = ws_recv_text(&mut client).expect("CONNECT_ERROR");
    assert!(
        answer.starts_with("44/unknown,"),
        "expected CONNECT_ERROR, got {answer}"
    );
    let body: Value = serde_json::from_str(answer.strip_prefix("44/unknown,").unwrap()).unwrap();
    assert!(body["message"].is_string(), "{answer}");
    let namespace = format!("40/{},", "n".repeat(10 * 1024));
    client.send(Message::text(namespace)).unwrap();
    let answer = ws_recv_text(&mut client).expect("CONNECT_ERROR for a 10 KB namespace");
    assert!(
        answer.starts_with("44/"),
        "expected CONNECT_ERROR, got {answer:.80}"
    );
    assert_incremented(
        &before,
        &gw.metrics(),
        "switchboard_socketio_connect_errors_total",
        &[("reason", "invalid_namespace")],
    );
    // the main namespace of that client still works
    let answer = ws_call(&mut client, 9, &serde_json::json!(["join", "r"]));
    assert_eq!(answer["ok"], true, "{answer}");
    innocent.check();
    gw.assert_alive();
}

/// Reads and discards until the server closes the connection (true) or the socket's read
/// timeout passes (false).
fn read_until_eof(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Sends one raw WebSocket frame on a connected session and expects a 1002 close and a
/// `websocket_protocol` parse error.
fn websocket_frame_attack(first_byte: u8, masked: bool, payload: &[u8]) {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let before = gw.metrics();
    let mut s = raw_ws_connect(gw.addr);
    let mut frame = vec![first_byte];
    if masked {
        frame.push(0x80 | payload.len() as u8);
        frame.extend_from_slice(&[0, 0, 0, 0]);
    } else {
        frame.push(payload.len() as u8);
    }
    frame.extend_from_slice(payload);
    s.write_all(&frame).unwrap();
    assert!(
        read_until_eof(&mut s),
        "connection still open after a bad frame"
    );
    wait_incremented(
        &gw,
        &before,
        "switchboard_engine_parse_errors_total",
        &[("kind", "websocket_protocol")],
    );
    innocent.check();
    gw.assert_alive();
}

#[test]
fn websocket_unmasked_client_frame_is_closed() {
    websocket_frame_attack(0x81, false, b"42[\"a\"]");
}

#[test]
fn websocket_rsv_bits_are_closed() {
    websocket_frame_attack(0x81 | 0x70, true, b"42[\"a\"]");
}

#[test]
fn websocket_fragmented_control_frame_is_closed() {
    // FIN=0 on a ping
    websocket_frame_attack(0x09, true, b"x");
}

// ---------------------------------------------------------------------------------------------
// 2. Engine.IO request validation
// ---------------------------------------------------------------------------------------------

#[test]
fn engine_rejects_bad_handshake_parameters() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let before = gw.metrics();

    let res = get(gw.addr, "/socket.io/?EIO=4&transport=__proto__");
    assert_engine_error(&res, 0);
    let res = get(gw.addr, "/socket.io/?EIO=4&transport=polling&sid=__proto__");
    assert_engine_error(&res, 1);
    let long_sid = "A".repeat(10 * 1024);
    let res = get(
        gw.addr,
        &format!("/socket.io/?EIO=4&transport=polling&sid={long_sid}"),
    );
    assert_engine_error(&res, 1);
    let res = get(gw.addr, "/socket.io/?EIO=3&transport=polling");
    assert_engine_error(&res, 5);
    let res = get(gw.addr, "/socket.io/?EIO=&transport=polling");
    assert_engine_error(&res, 5);
    let res = get(gw.addr, "/socket.io/?EIO=abc&transport=polling");
    assert_engine_error(&res, 5);
    let res = get(gw.addr, "/socket.io/?transport=polling");
    assert_engine_error(&res, 5);
    let res = get(gw.addr, "/socket.io/?EIO=4");
    assert_engine_error(&res, 0);

    let after = gw.metrics();
    for (label, n) in [
        ("unknown_transport", 2.0),
        ("unknown_sid", 2.0),
        ("unsupported_protocol_version", 4.0),
    ] {
        let labels = [("error", label)];
        let delta = after.get("switchboard_engine_http_errors_total", &labels)
            - before.get("switchboard_engine_http_errors_total", &labels);
        assert!(
            delta >= n,
            "switchboard_engine_http_errors_total{{error={label}}} grew by {delta}, expected {n}"
        );
    }
    innocent.check();
    gw.assert_alive();
}

#[test]
fn engine_closes_websocket_on_unknown_packet_type() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let before = gw.metrics();
    let mut attacker = ws_connect(gw.addr);
    attacker.send(Message::text("7hello")).unwrap();
    let code = ws_expect_close(&mut attacker);
    assert!(matches!(code, Some(1002)), "close code {code:?}");
    wait_incremented(&gw, &before, "switchboard_engine_parse_errors_total", &[]);
    innocent.check();
    gw.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// 3. Polling POST bodies
// ---------------------------------------------------------------------------------------------

#[test]
fn polling_post_over_limit_with_content_length_is_413_and_session_survives() {
    let mut gw = Gateway::start(&["--max-payload", "1000"]);
    let mut innocent = Innocent::connect(&gw);
    let sid = polling_handshake(gw.addr);
    let before = gw.metrics();
    // Send only the head: the server must answer from Content-Length without reading the body.
    let mut s = connect(gw.addr);
    write!(
        s,
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 5000\r\n\r\n",
        poll_path(&sid)
    )
    .unwrap();
    let res = read_response(&mut s).expect("a response before the body");
    assert_eq!(res.status, 413, "{res:?}");
    drop(s);
    assert_incremented(
        &before,
        &gw.metrics(),
        "switchboard_engine_payload_too_large_total",
        &[("transport", "polling")],
    );
    assert_polling_session_works(gw.addr, &sid);
    innocent.check();
    gw.assert_alive();
}

#[test]
fn polling_chunked_post_over_limit_is_413() {
    let mut gw = Gateway::start(&["--max-payload", "1000"]);
    let mut innocent = Innocent::connect(&gw);
    let sid = polling_handshake(gw.addr);
    let before = gw.metrics();
    let mut s = connect(gw.addr);
    let chunk = format!("4{}", "x".repeat(1500));
    write!(
        s,
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        poll_path(&sid),
        chunk.len()
    )
    .unwrap();
    let res = read_response(&mut s).expect("a response to the oversized chunked body");
    assert_eq!(res.status, 413, "{res:?}");
    drop(s);
    assert_incremented(
        &before,
        &gw.metrics(),
        "switchboard_engine_payload_too_large_total",
        &[("transport", "polling")],
    );
    assert_polling_session_works(gw.addr, &sid);
    innocent.check();
    gw.assert_alive();
}

#[test]
fn polling_packet_count_bomb_is_400_and_closes_session() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let sid = polling_handshake(gw.addr);
    let before = gw.metrics();
    // ~1 MB minus a margin: 300k two-byte packets, far over the 1024 packets-per-payload cap.
    let body = vec!["40"; 300_000].join("\u{1e}");
    assert!(body.len() < 1_000_000);
    let res = post(
        gw.addr,
        &poll_path(&sid),
        "text/plain;charset=UTF-8",
        body.as_bytes(),
    );
    assert_eq!(res.status, 400, "{res:?}");
    assert_incremented(
        &before,
        &gw.metrics(),
        "switchboard_engine_parse_errors_total",
        &[],
    );
    assert_session_gone(gw.addr, &sid);
    innocent.check();
    gw.assert_alive();
}

#[test]
fn polling_binary_content_type_is_400() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let sid = polling_handshake(gw.addr);
    let before = gw.metrics();
    let res = post(gw.addr, &poll_path(&sid), "application/octet-stream", b"40");
    assert_engine_error(&res, 3);
    assert_incremented(
        &before,
        &gw.metrics(),
        "switchboard_engine_parse_errors_total",
        &[("kind", "binary_body")],
    );
    innocent.check();
    gw.assert_alive();
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn malformed_posts_do_not_leak_file_descriptors() {
    let mut gw = Gateway::start(&["--max-payload", "1000"]);
    let mut innocent = Innocent::connect(&gw);
    // warm up: one session of each kind so lazily opened fds are counted in the baseline
    let sid = polling_handshake(gw.addr);
    assert_polling_session_works(gw.addr, &sid);
    thread::sleep(Duration::from_millis(200));
    let baseline = fd_count(gw.pid());
    assert!(baseline > 0, "cannot read /proc/<pid>/fd");
    let before = gw.metrics();
    for i in 0..200 {
        match i % 4 {
            // unknown sid
            0 => {
                let res = post(gw.addr, &poll_path("nope"), "text/plain", b"40");
                assert_eq!(res.status, 400);
            }
            // invalid UTF-8 body on a live session
            1 => {
                let sid = polling_handshake(gw.addr);
                let res = post(gw.addr, &poll_path(&sid), "text/plain", b"4\xff\xfe");
                assert_eq!(res.status, 400);
            }
            // body shorter than Content-Length, then hang up
            2 => {
                let sid = polling_handshake(gw.addr);
                let mut s = connect(gw.addr);
                write!(
                    s,
                    "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n40",
                    poll_path(&sid)
                )
                .unwrap();
            }
            // garbage request line
            _ => {
                let mut s = connect(gw.addr);
                s.write_all(b"POST \x00\x01 HTTP/9.9\r\n\r\n").unwrap();
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            }
        }
    }
    // fds must return close to the baseline once the server notices the closed connections
    let deadline = Instant::now() + WAIT;
    let mut now = fd_count(gw.pid());
    while now > baseline + 5 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        now = fd_count(gw.pid());
    }
    assert!(
        now <= baseline + 5,
        "fd leak: {baseline} fds before, {now} after 200 malformed POSTs"
    );
    let after = gw.metrics();
    assert!(
        after.get(
            "switchboard_engine_http_errors_total",
            &[("error", "unknown_sid")]
        ) - before.get(
            "switchboard_engine_http_errors_total",
            &[("error", "unknown_sid")]
        ) >= 50.0
    );
    assert!(
        after.get(
            "switchboard_engine_parse_errors_total",
            &[("kind", "invalid_utf8")]
        ) - before.get(
            "switchboard_engine_parse_errors_total",
            &[("kind", "invalid_utf8")]
        ) >= 50.0
    );
    let sid = polling_handshake(gw.addr);
    assert_polling_session_works(gw.addr, &sid);
    innocent.check();
    gw.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// 4. WebSocket message over the payload limit
// ---------------------------------------------------------------------------------------------

#[test]
fn websocket_message_over_limit_is_closed_with_1009() {
    let mut gw = Gateway::start(&["--max-payload", "1000"]);
    let mut innocent = Innocent::connect(&gw);
    let before = gw.metrics();
    let mut attacker = ws_connect(gw.addr);
    let big = format!("42[\"a\",\"{}\"]", "x".repeat(5000));
    let _ = attacker.send(Message::text(big));
    let code = ws_expect_close(&mut attacker);
    assert!(matches!(code, Some(1009)), "close code {code:?}");
    wait_incremented(
        &gw,
        &before,
        "switchboard_engine_payload_too_large_total",
        &[("transport", "websocket")],
    );
    innocent.check();
    gw.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// 5. Slow consumer
// ---------------------------------------------------------------------------------------------

/// Writes one masked client frame.
fn raw_frame(s: &mut TcpStream, opcode: u8, payload: &[u8]) {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut frame = vec![0x80 | opcode];
    let len = payload.len();
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else if len <= 0xffff {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(0x80 | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
}

/// Hand-made WebSocket handshake plus CONNECT to `/`; the open packet stays unread.
fn raw_ws_connect(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    write!(
        s,
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let res = read_response(&mut s).expect("101");
    assert_eq!(res.status, 101, "{res:?}");
    raw_frame(&mut s, 1, b"40");
    s
}

#[test]
fn slow_consumer_is_disconnected_and_publisher_keeps_working() {
    let mut gw = Gateway::start(&[
        "--max-payload",
        "100000",
        "--max-queue-bytes",
        "200000",
        "--publish-scope",
        "any",
    ]);
    let mut innocent = Innocent::connect(&gw);
    let mut publisher = Innocent::connect(&gw);

    // raw client: handshake by hand, connect, join "flood", never read again
    let mut slow = raw_ws_connect(gw.addr);
    raw_frame(&mut slow, 1, br#"420["join","flood"]"#);
    thread::sleep(Duration::from_millis(300));

    let before = gw.metrics();
    let data = "y".repeat(10_000);
    let req =
        serde_json::json!(["publish", {"to": "flood", "event": "f", "data": data}]).to_string();
    let mut disconnected = false;
    for _batch in 0..100 {
        let first = publisher.next_ack;
        for _ in 0..50 {
            let ack = publisher.next_ack;
            publisher.next_ack += 1;
            publisher
                .ws
                .send(Message::text(format!("42{ack}{req}")))
                .expect("publisher can send");
        }
        // read the 50 acks
        let mut pending = 50;
        while pending > 0 {
            let text = ws_recv_text(&mut publisher.ws).expect("publisher was disconnected");
            if let Some(rest) = text.strip_prefix("43") {
                let ack: u64 = rest
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .unwrap();
                if ack >= first {
                    assert!(text.contains(r#""ok":true"#), "publish refused: {text}");
                    pending -= 1;
                }
            }
        }
        if gw
            .metrics()
            .get("switchboard_engine_slow_consumer_disconnects_total", &[])
            > before.get("switchboard_engine_slow_consumer_disconnects_total", &[])
        {
            disconnected = true;
            break;
        }
    }
    assert!(disconnected, "slow consumer was never disconnected");
    wait_incremented(
        &gw,
        &before,
        "switchboard_engine_sessions_closed_total",
        &[("reason", "slow_consumer")],
    );
    publisher.check();
    innocent.check();
    gw.assert_alive();
    drop(slow);
}

// ---------------------------------------------------------------------------------------------
// 6. Relay requests with bad shapes
// ---------------------------------------------------------------------------------------------

#[test]
fn relay_refuses_bad_shapes_and_keeps_the_socket() {
    let mut gw = Gateway::start(&[]);
    let mut client = Innocent::connect(&gw);
    let before = gw.metrics();
    let long_room = "z".repeat(300);
    let cases = [
        serde_json::json!(["publish", {"to": 5, "event": "m", "data": 1}]),
        serde_json::json!(["publish", {"to": "r", "data": 1}]),
        serde_json::json!(["publish", {"to": "r", "event": "disconnect", "data": 1}]),
        serde_json::json!(["publish", {"to": "r", "event": "m", "timeout": -1}]),
        serde_json::json!(["publish", "not an object"]),
        serde_json::json!(["join", long_room]),
        serde_json::json!(["join", []]),
        serde_json::json!(["join", [1, 2]]),
    ];
    for case in cases {
        let answer = client.call(case.clone());
        assert_eq!(answer["ok"], false, "{case} was accepted: {answer}");
        assert!(
            answer["error"].is_string(),
            "{case}: no error text: {answer}"
        );
    }
    let after = gw.metrics();
    for event in ["publish", "join"] {
        let labels = [("event", event), ("outcome", "bad_request")];
        assert_incremented(&before, &after, "switchboard_relay_requests_total", &labels);
    }
    client.check();
    gw.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// 7. Header flood
// ---------------------------------------------------------------------------------------------

#[test]
fn header_flood_is_refused_without_crash() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let mut req = String::from("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n");
    for i in 0..2000 {
        req.push_str(&format!("X-Flood-{i}: v\r\n"));
    }
    req.push_str("Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n");
    let mut s = connect(gw.addr);
    // the server may close before reading everything
    let _ = s.write_all(req.as_bytes());
    match read_response(&mut s) {
        None => {}
        Some(res) => assert!(
            res.status == 431 || res.status == 400,
            "header flood got {}",
            res.head
        ),
    }
    let sid = polling_handshake(gw.addr);
    assert_polling_session_works(gw.addr, &sid);
    innocent.check();
    gw.assert_alive();
}

#[test]
fn huge_header_line_is_refused_without_crash() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let req = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    );
    let mut s = connect(gw.addr);
    let _ = s.write_all(req.as_bytes());
    if let Some(res) = read_response(&mut s) {
        assert!(
            res.status == 431 || res.status == 400,
            "huge header got {}",
            res.head
        );
    }
    let sid = polling_handshake(gw.addr);
    assert_polling_session_works(gw.addr, &sid);
    innocent.check();
    gw.assert_alive();
}

#[test]
fn smuggling_style_bodies_are_refused() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let sid = polling_handshake(gw.addr);
    let path = poll_path(&sid);
    let cases = [
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n40"),
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n40x"),
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n40\r\n0\r\n\r\n"
        ),
    ];
    for case in cases {
        let mut s = connect(gw.addr);
        let _ = s.write_all(case.as_bytes());
        if let Some(res) = read_response(&mut s) {
            assert!(
                res.status >= 400,
                "smuggling input accepted ({}): {case:?}",
                res.head
            );
        }
    }
    let sid = polling_handshake(gw.addr);
    assert_polling_session_works(gw.addr, &sid);
    innocent.check();
    gw.assert_alive();
}

#[test]
fn invalid_frame_pipelined_with_upgrade_is_closed() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let before = gw.metrics();
    let mut s = connect(gw.addr);
    let mut req = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    // an unmasked frame with RSV bits set, in the same segment as the handshake
    req.extend_from_slice(&[0xf1, 0x02, b'4', b'0']);
    s.write_all(&req).unwrap();
    let res = read_response(&mut s).expect("a response to the upgrade");
    assert_eq!(res.status, 101, "{res:?}");
    assert!(
        read_until_eof(&mut s),
        "connection still open after a pipelined bad frame"
    );
    wait_incremented(
        &gw,
        &before,
        "switchboard_engine_parse_errors_total",
        &[("kind", "websocket_protocol")],
    );
    innocent.check();
    gw.assert_alive();
}

#[test]
fn concurrent_posts_are_refused_and_close_the_session() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let sid = polling_handshake(gw.addr);
    let before = gw.metrics();
    // first POST: head plus part of the body, so it stays in flight
    let mut first = connect(gw.addr);
    write!(
        first,
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 10\r\n\r\n4",
        poll_path(&sid)
    )
    .unwrap();
    thread::sleep(Duration::from_millis(300));
    let res = post(gw.addr, &poll_path(&sid), "text/plain;charset=UTF-8", b"40");
    assert_engine_error(&res, 3);
    drop(first);
    assert_incremented(
        &before,
        &gw.metrics(),
        "switchboard_engine_http_errors_total",
        &[("error", "bad_request")],
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let res = get(gw.addr, &poll_path(&sid));
        if res.status == 400 {
            assert_engine_error(&res, 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "session survived a concurrent POST"
        );
        thread::sleep(Duration::from_millis(100));
    }
    innocent.check();
    gw.assert_alive();
}

#[test]
fn room_limits_are_enforced() {
    let mut gw = Gateway::start(&["--max-rooms-per-socket", "3", "--max-room-name", "16"]);
    let mut client = Innocent::connect(&gw);
    let before = gw.metrics();
    let answer = client.call(serde_json::json!(["join", ["a", "b", "c", "d"]]));
    assert_eq!(answer["ok"], false, "{answer}");
    let answer = client.call(serde_json::json!(["join", ["a", "b"]]));
    assert_eq!(answer["ok"], true, "{answer}");
    // "r" + "a" + "b" = 3 rooms: one more is over the cap
    let answer = client.call(serde_json::json!(["join", "c"]));
    assert_eq!(answer["ok"], false, "{answer}");
    let answer = client.call(serde_json::json!(["join", "x".repeat(17)]));
    assert_eq!(answer["ok"], false, "{answer}");
    let after = gw.metrics();
    assert_incremented(
        &before,
        &after,
        "switchboard_relay_requests_total",
        &[("event", "join"), ("outcome", "limit")],
    );
    client.check();
    gw.assert_alive();
}

#[test]
fn pre_auth_client_with_pending_attachment_is_closed_by_connect_timeout() {
    let mut gw = Gateway::start(&["--connect-timeout-ms", "500"]);
    let mut innocent = Innocent::connect(&gw);
    let before = gw.metrics();
    let stream = connect(gw.addr);
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", gw.addr);
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).expect("ws handshake");
    let open = ws_recv_text(&mut ws).expect("open packet");
    assert!(open.starts_with('0'), "{open}");
    // never CONNECT, and leave a binary packet waiting for its attachment forever
    ws.send(Message::text(r#"451-["a",{"_placeholder":true,"num":0}]"#))
        .unwrap();
    let started = Instant::now();
    ws_expect_close(&mut ws);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed only after {:?}",
        started.elapsed()
    );
    wait_incremented(
        &gw,
        &before,
        "switchboard_engine_sessions_closed_total",
        &[("reason", "forced_close")],
    );
    innocent.check();
    gw.assert_alive();
}

// ---------------------------------------------------------------------------------------------
// 8. Slowloris
// ---------------------------------------------------------------------------------------------

#[test]
fn slowloris_partial_head_is_closed_by_header_timeout() {
    let mut gw = Gateway::start(&[]);
    let mut innocent = Innocent::connect(&gw);
    let mut s = connect(gw.addr);
    s.write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // header_read_timeout defaults to 10 s: allow a margin, this is the one wait longer than WAIT
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = Instant::now();
    // A 408 response before the close is fine too.
    let closed = read_until_eof(&mut s);
    assert!(
        closed,
        "half-sent request head still open after {:?}",
        started.elapsed()
    );
    innocent.check();
    gw.assert_alive();
}
