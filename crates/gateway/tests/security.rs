//! The gateway as an attacker meets it, with the official `socket.io-client` (driven through
//! `tests/clients/cluster/client-driver.js`) and raw HTTP: JWT authentication, room grants and
//! the publish scope, session caps on both transports, the event rate, oversized packets,
//! slow bodies, abandoned sessions, trusted proxies, TLS and configuration errors. Every
//! refusal is checked for its protocol answer and its metric, and innocent clients for
//! carrying on.

#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
mod support;

use cluster_support::{bin, eventually, ClientDriver};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

const SECRET: &str = "a-test-secret-of-32-bytes-length";

struct Gw(support::GatewayProcess);

impl Gw {
    async fn start(flags: &[&str]) -> Gw {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(flags)
            .env("RUST_LOG", "info");
        Gw(support::GatewayProcess::spawn(cmd, &format!("gateway {flags:?}")).await)
    }

    fn url(&self) -> String {
        format!("http://{}", self.0.addr)
    }

    /// The sum of the samples of metric `name` (with or without the `switchboard_` prefix)
    /// whose labels include every `key="value"` of `labels`.
    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, body) = support::admin_get(self.0.admin, "/metrics").await;
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                let metric = metric.strip_prefix("switchboard_").unwrap_or(metric);
                (metric == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())
                .flatten()
            })
            .sum()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hs256(claims: Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

/// A fresh temporary directory for key files.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-security-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl on the PATH (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Generates a private key with `openssl genpkey` (PKCS#8) and writes its public half.
fn keypair(dir: &Path, name: &str, genpkey: &[&str]) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub.pem"));
    let key_s = key.to_str().expect("utf-8 path");
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", key_s]);
    openssl(&args);
    openssl(&[
        "pkey",
        "-in",
        key_s,
        "-pubout",
        "-out",
        public.to_str().expect("utf-8 path"),
    ]);
    (key, public)
}

async fn try_connect(
    d: &ClientDriver,
    name: &str,
    url: &str,
    extra: Value,
) -> Result<String, String> {
    let mut cmd = json!({"name": name, "url": url, "nsp": "/", "transports": ["websocket"]});
    if let (Some(cmd), Value::Object(extra)) = (cmd.as_object_mut(), extra) {
        cmd.extend(extra);
    }
    d.try_connect_with(cmd).await
}

async fn ack(d: &ClientDriver, name: &str, event: &str, arg: Value) -> Value {
    d.emit_with_ack(name, event, json!([arg]), 5000).await[0].clone()
}

async fn connected(d: &ClientDriver, name: &str) -> bool {
    d.status(name).await.0
}

/// Asserts a connect was refused with `unauthorized` and this `data.reason`.
fn assert_unauthorized(result: Result<String, String>, reason: &str) {
    let err = result.expect_err("the connection must be refused");
    assert!(
        err.contains("unauthorized") && err.contains(&format!("\"reason\":\"{reason}\"")),
        "expected unauthorized/{reason}, got {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_tokens_are_checked_claim_by_claim_and_users_are_reachable() {
    let gw = Gw::start(&[
        "--jwt-secret",
        SECRET,
        "--jwt-issuer",
        "issuer-1",
        "--jwt-audience",
        "chat",
        "--jwt-leeway",
        "0s",
        "--publish-scope",
        "allowed",
        "--allow-publish",
        "user:*",
    ])
    .await;
    let d = ClientDriver::spawn().await;
    let url = gw.url();
    let good =
        |sub: &str| json!({"sub": sub, "exp": now() + 600, "iss": "issuer-1", "aud": "chat"});

    try_connect(
        &d,
        "alice",
        &url,
        json!({"auth": {"token": hs256(good("alice"), SECRET)}}),
    )
    .await
    .expect("a valid token connects");
    // The token may also come as a bearer header on the handshake request.
    let bearer = format!("Bearer {}", hs256(good("bob"), SECRET));
    try_connect(
        &d,
        "bob",
        &url,
        json!({"extraHeaders": {"Authorization": bearer}}),
    )
    .await
    .expect("a bearer header connects");

    let mut refused = 0.0;
    for (claims, secret, reason) in [
        (
            good("x"),
            "another-secret-of-32-bytes-length",
            "bad signature",
        ),
        (
            json!({"sub": "x", "exp": now() - 30, "iss": "issuer-1", "aud": "chat"}),
            SECRET,
            "token expired",
        ),
        (
            json!({"sub": "x", "iss": "issuer-1", "aud": "chat"}),
            SECRET,
            "missing exp",
        ),
        (
            json!({"sub": "x", "exp": now() + 600, "iss": "other", "aud": "chat"}),
            SECRET,
            "wrong issuer",
        ),
        (
            json!({"sub": "x", "exp": now() + 600, "iss": "issuer-1", "aud": "other"}),
            SECRET,
            "wrong audience",
        ),
    ] {
        let result = try_connect(
            &d,
            "eve",
            &url,
            json!({"auth": {"token": hs256(claims, secret)}}),
        )
        .await;
        assert_unauthorized(result, reason);
        refused += 1.0;
        assert_eq!(
            gw.metric("auth_refused_total", &[("reason", reason)]).await,
            1.0
        );
    }
    assert_unauthorized(
        try_connect(&d, "eve", &url, json!({})).await,
        "missing token",
    );
    // `alg: none`, unsigned.
    use base64::Engine as _;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(json!({"alg": "none"})), b64(good("eve")));
    assert_unauthorized(
        try_connect(&d, "eve", &url, json!({"auth": {"token": none}})).await,
        "algorithm not allowed",
    );
    assert_eq!(gw.metric("auth_refused_total", &[]).await, refused + 2.0);

    // `sub` puts the socket in `user:<sub>`; a publish allowed on `user:*` reaches it.
    let answer = ack(
        &d,
        "bob",
        "publish",
        json!({"to": "user:alice", "event": "dm", "data": "hi"}),
    )
    .await;
    assert_eq!(answer["ok"], json!(true), "{answer}");
    let got = d.wait("alice", "dm", 1, 5000).await;
    assert_eq!(got[0]["args"], json!(["hi"]));
    // ... but nobody can join someone else's user room.
    let answer = ack(&d, "bob", "join", json!("user:alice")).await;
    assert_eq!(answer["error"], json!("forbidden"), "{answer}");
    assert!(connected(&d, "bob").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_pem_and_es256_jwks_keys_refuse_algorithm_confusion() {
    let dir = temp_dir("keys");
    let (rsa_key, rsa_pub) = keypair(
        &dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ec_key, _) = keypair(
        &dir,
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    // The JWKS entry of the EC key: x and y are the two halves of the uncompressed point that
    // ends the DER public key.
    let der = openssl(&[
        "pkey",
        "-in",
        ec_key.to_str().expect("path"),
        "-pubout",
        "-outform",
        "DER",
    ]);
    let point = &der[der.len() - 64..];
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
        "x": b64(&point[..32]), "y": b64(&point[32..])}]});
    let jwks_path = dir.join("jwks.json");
    std::fs::write(&jwks_path, jwks.to_string()).expect("write jwks");

    let rsa_gw = Gw::start(&["--jwt-public-key", rsa_pub.to_str().expect("path")]).await;
    let ec_gw = Gw::start(&["--jwks-file", jwks_path.to_str().expect("path")]).await;
    let d = ClientDriver::spawn().await;
    let claims = json!({"sub": "carol", "exp": now() + 600});

    let rsa_enc =
        EncodingKey::from_rsa_pem(&std::fs::read(&rsa_key).expect("key")).expect("rsa key");
    let rs = encode(&Header::new(Algorithm::RS256), &claims, &rsa_enc).expect("encode");
    try_connect(&d, "rs", &rsa_gw.url(), json!({"auth": {"token": rs}}))
        .await
        .expect("RS256 token connects");
    // Algorithm confusion: an HS256 token whose "secret" is the RSA public key itself.
    let public_pem = std::fs::read_to_string(&rsa_pub).expect("pub");
    let confused = hs256(claims.clone(), &public_pem);
    assert_unauthorized(
        try_connect(&d, "x", &rsa_gw.url(), json!({"auth": {"token": confused}})).await,
        "algorithm not allowed",
    );

    let ec_enc = EncodingKey::from_ec_pem(&std::fs::read(&ec_key).expect("key")).expect("ec key");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    let es = encode(&header, &claims, &ec_enc).expect("encode");
    try_connect(&d, "es", &ec_gw.url(), json!({"auth": {"token": es}}))
        .await
        .expect("ES256 token from the JWKS connects");
    // A token signed by another key of the right family fails its signature.
    let other_rs = encode(&Header::new(Algorithm::RS256), &claims, &rsa_enc).expect("encode");
    assert_unauthorized(
        try_connect(&d, "x", &ec_gw.url(), json!({"auth": {"token": other_rs}})).await,
        "algorithm not allowed",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_disconnected_when_its_token_expires() {
    let gw = Gw::start(&["--jwt-secret", SECRET, "--jwt-leeway", "0s"]).await;
    let d = ClientDriver::spawn().await;
    let token = hs256(json!({"sub": "dave", "exp": now() + 2}), SECRET);
    try_connect(&d, "dave", &gw.url(), json!({"auth": {"token": token}}))
        .await
        .expect("connects before expiry");
    let long = hs256(json!({"sub": "erin", "exp": now() + 600}), SECRET);
    try_connect(&d, "erin", &gw.url(), json!({"auth": {"token": long}}))
        .await
        .expect("connects");
    eventually(
        "the expired socket is disconnected",
        Duration::from_secs(6),
        || async { !connected(&d, "dave").await },
    )
    .await;
    assert_eq!(
        d.status("dave").await.1.as_deref(),
        Some("io server disconnect")
    );
    assert!(connected(&d, "erin").await, "a valid token stays connected");
    assert_eq!(gw.metric("auth_expired_disconnects_total", &[]).await, 1.0);
    assert!(gw.0.log().contains("token expired; socket disconnected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_join_reads_another_sockets_direct_messages() {
    // `any` lets C address B's id directly: the one case where direct messages flow.
    let gw = Gw::start(&["--publish-scope", "any"]).await;
    let d = ClientDriver::spawn().await;
    let url = gw.url();
    try_connect(&d, "a", &url, json!({})).await.expect("a");
    let b_id = try_connect(&d, "b", &url, json!({})).await.expect("b");
    try_connect(&d, "c", &url, json!({})).await.expect("c");
    let mixed: String = b_id
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    for attempt in [
        json!(b_id),
        json!(["lobby", b_id]),
        json!(mixed),
        json!("User:b"),
    ] {
        let answer = ack(&d, "a", "join", attempt.clone()).await;
        assert_eq!(answer["ok"], json!(false), "join {attempt}: {answer}");
        assert_eq!(
            answer["error"],
            json!("forbidden"),
            "join {attempt}: {answer}"
        );
        assert_eq!(answer["reason"], json!("reserved room"));
    }
    assert!(connected(&d, "a").await, "a refusal never disconnects");
    // Nothing of the refused array was joined either.
    let answer = ack(&d, "a", "join", json!("lobby")).await;
    assert_eq!(answer["rooms"], json!(["lobby"]));
    let answer = ack(
        &d,
        "c",
        "publish",
        json!({"to": b_id, "event": "dm", "data": 1}),
    )
    .await;
    assert_eq!(answer["ok"], json!(true));
    d.wait("b", "dm", 1, 5000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        d.events_named("a", "dm").await.is_empty(),
        "a read b's direct message"
    );
    assert_eq!(
        gw.metric(
            "relay_requests_total",
            &[("event", "join"), ("outcome", "forbidden")]
        )
        .await,
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_scope_allows_publishing_only_to_joined_rooms() {
    let gw = Gw::start(&["--allow-join", "chat:*"]).await;
    let d = ClientDriver::spawn().await;
    let url = gw.url();
    for n in ["p", "q"] {
        try_connect(&d, n, &url, json!({})).await.expect(n);
    }
    assert_eq!(
        ack(&d, "p", "join", json!("chat:1")).await["ok"],
        json!(true)
    );
    assert_eq!(
        ack(&d, "q", "join", json!("chat:1")).await["ok"],
        json!(true)
    );
    let answer = ack(&d, "p", "join", json!("admin")).await;
    assert_eq!(
        (answer["error"].clone(), answer["reason"].clone()),
        (json!("forbidden"), json!("not allowed to join"))
    );
    let answer = ack(
        &d,
        "p",
        "publish",
        json!({"to": "chat:2", "event": "m", "data": 1}),
    )
    .await;
    assert_eq!(
        answer["reason"],
        json!("not a member of the room"),
        "{answer}"
    );
    let answer = ack(&d, "p", "publish", json!({"event": "m", "data": 1})).await;
    assert_eq!(
        answer["error"],
        json!("forbidden"),
        "whole namespace: {answer}"
    );
    let answer = ack(
        &d,
        "p",
        "publish",
        json!({"to": "chat:1", "event": "m", "data": 2}),
    )
    .await;
    assert_eq!(answer["ok"], json!(true));
    assert_eq!(d.wait("q", "m", 1, 5000).await[0]["args"], json!([2]));
    assert!(connected(&d, "p").await);
    assert_eq!(
        gw.metric(
            "relay_requests_total",
            &[("event", "publish"), ("outcome", "forbidden")]
        )
        .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_reassembled_packet_disconnects_only_its_sender() {
    let gw = Gw::start(&[]).await;
    let d = ClientDriver::spawn().await;
    let url = gw.url();
    for n in ["attacker", "m1", "m2"] {
        try_connect(&d, n, &url, json!({})).await.expect(n);
        assert_eq!(ack(&d, n, "join", json!("room")).await["ok"], json!(true));
    }
    // Six 900 KB buffers: every WebSocket frame is under --max-payload, the packet is not.
    let chunk = vec![7u8; 900_000];
    let data: Vec<Value> = (0..6).map(|_| bin(&chunk)).collect();
    d.emit(
        "attacker",
        "publish",
        json!([{"to": "room", "event": "big", "data": data}]),
    )
    .await;
    eventually(
        "the sender is disconnected",
        Duration::from_secs(10),
        || async { !connected(&d, "attacker").await },
    )
    .await;
    assert_eq!(
        gw.metric(
            "socketio_parse_errors_total",
            &[("kind", "packet_too_large")]
        )
        .await,
        1.0
    );
    // Too many attachments, each tiny: refused the same way.
    try_connect(&d, "attacker2", &url, json!({}))
        .await
        .expect("attacker2");
    let many: Vec<Value> = (0..11).map(|_| bin(b"x")).collect();
    d.emit(
        "attacker2",
        "publish",
        json!([{"to": "room", "event": "big", "data": many}]),
    )
    .await;
    eventually(
        "the second sender is disconnected",
        Duration::from_secs(10),
        || async { !connected(&d, "attacker2").await },
    )
    .await;
    // The members stayed and still receive.
    assert!(connected(&d, "m1").await && connected(&d, "m2").await);
    let answer = ack(
        &d,
        "m1",
        "publish",
        json!({"to": "room", "event": "after", "data": "ok"}),
    )
    .await;
    assert_eq!(answer["ok"], json!(true));
    d.wait("m2", "after", 1, 5000).await;
    assert!(d.events_named("m2", "big").await.is_empty());
    assert_eq!(
        gw.metric("engine_slow_consumer_disconnects_total", &[])
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_large_broadcast_never_makes_its_recipients_slow() {
    // The queue cap equals the payload cap: one message at the limit must still go through.
    let gw = Gw::start(&["--max-payload", "200000", "--max-queue-bytes", "200000"]).await;
    let d = ClientDriver::spawn().await;
    let url = gw.url();
    for n in ["s", "r"] {
        try_connect(&d, n, &url, json!({})).await.expect(n);
        assert_eq!(ack(&d, n, "join", json!("room")).await["ok"], json!(true));
    }
    d.clear("r").await;
    let data: Vec<Value> = (0..3).map(|_| bin(&vec![1u8; 60_000])).collect();
    let answer = ack(
        &d,
        "s",
        "publish",
        json!({"to": "room", "event": "big", "data": data}),
    )
    .await;
    assert_eq!(answer["ok"], json!(true), "{answer}");
    d.wait("r", "big", 1, 5000).await;
    assert!(connected(&d, "r").await);
    assert_eq!(
        gw.metric("engine_slow_consumer_disconnects_total", &[])
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cap_holds_on_both_transports() {
    let gw = Gw::start(&["--max-connections", "20", "--publish-scope", "any"]).await;
    let d = ClientDriver::spawn().await;
    let url = gw.url();
    for transport in ["websocket", "polling"] {
        let (mut ok, mut refused) = (0, 0);
        for i in 0..50 {
            let name = format!("{transport}-{i}");
            let extra = json!({"transports": [transport], "timeout_ms": 3000});
            match try_connect(&d, &name, &url, extra).await {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            }
        }
        assert_eq!((ok, refused), (20, 30), "{transport}");
        // The twenty keep working while the others are refused.
        let answer = ack(
            &d,
            &format!("{transport}-0"),
            "publish",
            json!({"event": "x", "data": 1}),
        )
        .await;
        assert_eq!(answer["ok"], json!(true));
        for i in 0..50 {
            let name = format!("{transport}-{i}");
            if connected(&d, &name).await {
                d.disconnect(&name).await;
            }
        }
        eventually("every session is gone", Duration::from_secs(10), || async {
            gw.metric("engine_sessions", &[]).await == 0.0
        })
        .await;
    }
    assert!(
        gw.metric("engine_http_errors_total", &[("error", "at_capacity")])
            .await
            >= 60.0
    );

    // Polling handshakes over one keep-alive connection count too.
    let mut s = TcpStream::connect(gw.0.addr).await.expect("connect");
    let mut statuses = Vec::new();
    for _ in 0..25 {
        let (status, body) = http(
            &mut s,
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        if status == 503 {
            assert!(
                body.contains("\"code\":4") && body.contains("Server at capacity"),
                "{body}"
            );
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        20,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        5,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limits_follow_trusted_proxies_only() {
    let gw = Gw::start(&[
        "--max-connections-per-ip",
        "2",
        "--trusted-proxy",
        "127.0.0.1",
    ])
    .await;
    let plain = Gw::start(&["--max-connections-per-ip", "2"]).await;
    let handshake = |xff: &str| {
        format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n")
    };
    let mut statuses = Vec::new();
    for xff in ["203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.2"] {
        let mut s = TcpStream::connect(gw.0.addr).await.expect("connect");
        statuses.push(http(&mut s, &handshake(xff)).await.0);
    }
    assert_eq!(
        statuses,
        vec![200, 200, 429, 200],
        "behind a trusted proxy the forwarded address counts"
    );
    let mut statuses = Vec::new();
    for xff in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let mut s = TcpStream::connect(plain.0.addr).await.expect("connect");
        statuses.push(http(&mut s, &handshake(xff)).await.0);
    }
    assert_eq!(
        statuses,
        vec![200, 200, 429],
        "an untrusted peer cannot pick its address"
    );
    assert_eq!(
        plain
            .metric(
                "engine_http_errors_total",
                &[("error", "too_many_sessions_per_ip")]
            )
            .await,
        1.0
    );

    let rate = Gw::start(&[
        "--handshakes-per-sec-per-ip",
        "0.5",
        "--handshake-burst",
        "3",
    ])
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(rate.0.addr).await.expect("connect");
        statuses.push(http(&mut s, &handshake("x")).await.0);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    assert_eq!(
        rate.metric(
            "engine_http_errors_total",
            &[("error", "handshake_rate_limited")]
        )
        .await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_flood_is_refused_then_disconnected_while_others_lose_nothing() {
    let gw = Gw::start(&["--max-events-per-sec", "20", "--max-events-burst", "20"]).await;
    let d = ClientDriver::spawn().await;
    let url = gw.url();
    for n in ["flood", "x", "y"] {
        try_connect(&d, n, &url, json!({})).await.expect(n);
    }
    for n in ["x", "y"] {
        assert_eq!(ack(&d, n, "join", json!("talk")).await["ok"], json!(true));
    }
    let flooder = async {
        let mut refused = 0;
        for i in 0..300 {
            match d
                .try_request(
                    json!({"cmd": "emitWithAck", "name": "flood", "event": "publish",
                "args": [{"to": "talk", "event": "spam", "data": i}], "timeout_ms": 2000}),
                )
                .await
            {
                Ok(answer) if answer["ack"][0]["error"] == json!("rate_limited") => refused += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        refused
    };
    let talkers = async {
        for i in 0..30 {
            let answer = ack(
                &d,
                "x",
                "publish",
                json!({"to": "talk", "event": "msg", "data": i}),
            )
            .await;
            assert_eq!(answer["ok"], json!(true), "{answer}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (refused, ()) = tokio::join!(flooder, talkers);
    assert!(refused > 0, "the flood was never refused");
    let got = d.wait("y", "msg", 30, 5000).await;
    let values: Vec<Value> = got.iter().map(|e| e["args"][0].clone()).collect();
    assert_eq!(
        values,
        (0..30).map(|i| json!(i)).collect::<Vec<_>>(),
        "loss or reordering"
    );
    eventually(
        "the flooder is disconnected",
        Duration::from_secs(5),
        || async { !connected(&d, "flood").await },
    )
    .await;
    assert!(gw.metric("relay_rate_limited_events_total", &[]).await >= refused as f64);
    assert_eq!(
        gw.metric("relay_rate_limit_disconnects_total", &[]).await,
        1.0
    );
    assert!(connected(&d, "x").await && connected(&d, "y").await);
}

/// Writes `request` and reads one response: (status, body). Keeps the connection for reuse
/// when the response has a Content-Length.
async fn http(s: &mut TcpStream, request: &str) -> (u16, String) {
    s.write_all(request.as_bytes()).await.expect("write");
    read_response(s).await
}

async fn read_response<R: tokio::io::AsyncRead + Unpin>(s: &mut R) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await {
            Ok(Ok(1)) => buf.push(byte[0]),
            _ => return (0, String::new()),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut body)).await;
    (status, String::from_utf8_lossy(&body).to_string())
}

/// The `sid` of a polling handshake's open packet.
async fn polling_session(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let (status, body) = http(
        &mut s,
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let open: Value = serde_json::from_str(body.trim_start_matches('0')).expect("open packet");
    open["sid"].as_str().expect("sid").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_abandoned_sessions_and_bad_upgrades_are_refused() {
    let gw = Gw::start(&["--polling-body-timeout", "1s", "--ping-timeout-ms", "600"]).await;
    // A POST body trickled one byte at a time is cut off at the deadline.
    let sid = polling_session(gw.0.addr).await;
    let mut s = TcpStream::connect(gw.0.addr).await.expect("connect");
    let head = format!("POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("head");
    let started = std::time::Instant::now();
    let (mut reader, mut writer) = s.split();
    let trickle = async {
        for _ in 0..100 {
            if writer.write_all(b"4").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let response = tokio::select! {
        r = read_response(&mut reader) => r,
        () = trickle => (0, "the body was read to its end".into()),
    };
    assert_eq!(response.0, 408, "{response:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        gw.metric("engine_http_errors_total", &[("error", "body_timeout")])
            .await,
        1.0
    );

    // A session that never polls after its handshake is gone within the ping timeout.
    let sid = polling_session(gw.0.addr).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut s = TcpStream::connect(gw.0.addr).await.expect("connect");
    let (status, body) = http(&mut s, &format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(
        (status, body.contains("Session ID unknown")),
        (400, true),
        "{body}"
    );

    // RFC 6455: the key must be the base64 of 16 bytes.
    let mut s = TcpStream::connect(gw.0.addr).await.expect("connect");
    let (status, _) = http(&mut s, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: not-a-key\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_the_official_client() {
    let dir = temp_dir("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-days",
        "1",
        "-keyout",
        key.to_str().expect("path"),
        "-out",
        cert.to_str().expect("path"),
    ]);
    let gw = Gw::start(&[
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
    ])
    .await;
    let d = ClientDriver::spawn().await;
    let url = format!("https://{}", gw.0.addr);
    for transport in ["websocket", "polling"] {
        let name = format!("tls-{transport}");
        try_connect(
            &d,
            &name,
            &url,
            json!({"transports": [transport], "opts": {"rejectUnauthorized": false}}),
        )
        .await
        .unwrap_or_else(|e| panic!("{transport} over TLS: {e}"));
        assert_eq!(
            ack(&d, &name, "join", json!("secure")).await["ok"],
            json!(true)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn configuration_errors_exit_64_and_name_the_flag() {
    for (args, hint) in [
        (&["--no-such-flag"][..], "--no-such-flag"),
        (&["--publish-scope", "everyone"][..], "--publish-scope"),
        (
            &["--jwt-secret", SECRET, "--auth-token", "t"][..],
            "choose one",
        ),
        (&["--jwt-secret", "short"][..], "--jwt-secret"),
        (
            &["--jwt-public-key", "/nonexistent.pem"][..],
            "--jwt-public-key",
        ),
        (&["--jwt-audience", "a"][..], "--jwt-audience"),
        (&["--allow-join", "["][..], "--allow-join"),
        (&["--trusted-proxy", "nowhere"][..], "--trusted-proxy"),
        (&["--tls-cert", "/x.pem"][..], "--tls-key"),
        (&["--max-events-burst", "3"][..], "--max-events-per-sec"),
        (&["--jwt-leeway", "soon"][..], "--jwt-leeway"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .output()
            .expect("run switchboard");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains(hint),
            "{args:?} should mention {hint}: {stderr}"
        );
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--help")
        .output()
        .expect("run switchboard");
    assert_eq!(help.status.code(), Some(0));
}
