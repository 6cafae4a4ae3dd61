//! The adapter on a TLS-only redis-server (`--port 0 --tls-port`), with a CA and a server
//! certificate this test makes with `openssl`, and a Redis ACL user limited to pub/sub on the
//! adapter's channels: nodes connect with `rediss://user:password@` and the CA file, deliver
//! to each other, and stay not ready with a wrong password or an untrusted certificate.

mod rcluster;
mod sbnode;
mod support;
mod tlscerts;

use sbnode::SbNode;
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use support::{eventually, ClientDriver};
use switchboard_redis::{Mode, RedisAdapterConfig, RedisAdapterFactory};
use tlscerts::Certs;
use tokio::process::{Child, Command};

const ADMIN_PASSWORD: &str = "admin-secret";
const APP_USER: &str = "switchboard";
const APP_PASSWORD: &str = "app-secret";

/// A free loopback port below 55000 (the tests keep clear of the top of the ephemeral range).
fn free_port() -> u16 {
    for _ in 0..200 {
        let port = rand::random_range(20_000..55_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found between 20000 and 55000");
}

/// A redis-server that only speaks TLS, killed on drop.
struct TlsRedis {
    port: u16,
    certs: Certs,
    _child: Child,
}

impl TlsRedis {
    async fn start(certs: Certs) -> TlsRedis {
        let port = free_port();
        let exe = support::redis_server_exe();
        let child = Command::new(&exe)
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(certs.path("server.crt"))
            .arg("--tls-key-file")
            .arg(certs.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(certs.path("ca.crt"))
            .args(["--tls-auth-clients", "no", "--requirepass", ADMIN_PASSWORD])
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{exe}` ({e}): install redis-server (scripts/test.sh does)")
            });
        let redis = TlsRedis {
            port,
            certs,
            _child: child,
        };
        let admin = redis.url(&format!(":{ADMIN_PASSWORD}"));
        eventually(
            "the TLS redis-server answers",
            Duration::from_secs(10),
            || async { redis.command(&admin, &["PING"]).await.is_ok() },
        )
        .await;
        redis
    }

    /// `rediss://USERINFO@127.0.0.1:PORT`.
    fn url(&self, userinfo: &str) -> String {
        format!("rediss://{userinfo}@127.0.0.1:{}", self.port)
    }

    /// Runs one command as `url` (over TLS, trusting the test CA).
    async fn command(&self, url: &str, args: &[&str]) -> Result<redis::Value, String> {
        let _ = rustls_provider();
        let pem = std::fs::read(self.certs.path("ca.crt")).map_err(|e| e.to_string())?;
        let client = redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            },
        )
        .map_err(|e| e.to_string())?;
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut c).await.map_err(|e| e.to_string())
    }

    async fn admin(&self, args: &[&str]) -> redis::Value {
        let url = self.url(&format!(":{ADMIN_PASSWORD}"));
        self.command(&url, args)
            .await
            .unwrap_or_else(|e| panic!("admin command {args:?}: {e}"))
    }
}

/// The process-wide rustls provider (the adapter installs the same one).
fn rustls_provider() -> bool {
    rustls::crypto::ring::default_provider()
        .install_default()
        .is_ok()
}

/// Adapter settings for `url`, quick to retry, trusting `ca`.
fn tls_config(url: String, ca: Option<PathBuf>, mode: Mode, name: &str) -> RedisAdapterConfig {
    let mut cfg = RedisAdapterConfig::new(url);
    cfg.ca_file = ca;
    cfg.mode = mode;
    cfg.node_id = Some(name.to_owned());
    cfg.requests_timeout = Duration::from_millis(1500);
    cfg.probe_interval = Duration::from_millis(300);
    cfg.max_backoff = Duration::from_millis(300);
    cfg
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_redis_with_an_acl_user() {
    support::require_js();
    let redis = TlsRedis::start(Certs::make("acl")).await;
    // The application's user may only use pub/sub, on the adapter's channels; PSUBSCRIBE
    // patterns are matched literally, so the classic wire's per-namespace patterns are listed.
    redis
        .admin(&[
            "ACL",
            "SETUSER",
            APP_USER,
            "on",
            &format!(">{APP_PASSWORD}"),
            "resetchannels",
            "&socket.io*",
            "&socket.io#/#*",
            "&socket.io#/admin#*",
            "-@all",
            "+@pubsub",
            "+@connection",
        ])
        .await;
    let app_url = redis.url(&format!("{APP_USER}:{APP_PASSWORD}"));
    let ca = Some(redis.certs.path("ca.crt"));

    for (mode, tag) in [(Mode::Classic, "classic"), (Mode::Sharded, "sharded")] {
        let n1 = SbNode::start_with(
            tls_config(app_url.clone(), ca.clone(), mode, &format!("{tag}-1")),
            "tls-1",
        )
        .await;
        let n2 = SbNode::start_with(
            tls_config(app_url.clone(), ca.clone(), mode, &format!("{tag}-2")),
            "tls-2",
        )
        .await;
        let c = ClientDriver::spawn().await;
        c.connect("b", &n2.url(), "/").await;
        c.emit_with_ack("b", "join", json!(["r"]), 5000).await;
        // The dynamic room channel of the sharded wire is subscribed asynchronously: send
        // until one arrives, then check that a later one arrives too.
        let mut sent = 0;
        eventually(
            &format!("{tag}: a broadcast crosses the TLS Redis"),
            Duration::from_secs(10),
            || {
                sent += 1;
                n1.io.to("r").emit("hello", json!(sent)).expect("emit");
                let c = &c;
                async move { !c.events_named("b", "hello").await.is_empty() }
            },
        )
        .await;
        c.clear("b").await;
        n1.io.to("r").emit("hello", json!("last")).expect("emit");
        eventually(
            &format!("{tag}: the next broadcast arrives too"),
            Duration::from_secs(5),
            || async {
                let got = c.events_named("b", "hello").await;
                got.iter().any(|e| e.to_string().contains("\"last\""))
            },
        )
        .await;
        // Cross-node requests work under the ACL user too.
        let sockets = n1.io.fetch_sockets().await.expect("fetch_sockets over TLS");
        assert_eq!(sockets.len(), 1, "{tag}: {sockets:?}");
        // Both nodes' connections are the ACL user's.
        let clients = text(&redis.admin(&["CLIENT", "LIST"]).await);
        let app_conns = clients
            .lines()
            .filter(|l| l.contains(&format!(" user={APP_USER} ")))
            .count();
        assert!(
            app_conns >= 4,
            "{tag}: two connections per node expected:\n{clients}"
        );
        c.disconnect("b").await;
        n1.stop().await;
        n2.stop().await;
    }

    // A wrong password: the node never becomes ready (and says why in its log).
    let bad = RedisAdapterFactory::new(tls_config(
        redis.url(&format!("{APP_USER}:wrong")),
        ca.clone(),
        Mode::Classic,
        "bad-password",
    ))
    .expect("valid config");
    assert!(!bad.wait_ready(Duration::from_secs(2)).await);
    // The ACL holds: the user cannot touch keys.
    let err = redis
        .command(&app_url, &["SET", "k", "v"])
        .await
        .expect_err("the ACL user may not SET");
    assert!(err.to_lowercase().contains("noperm"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_is_checked() {
    let redis = TlsRedis::start(Certs::make("verify")).await;
    let url = redis.url(&format!(":{ADMIN_PASSWORD}"));
    // With the right CA the node connects.
    let ok = RedisAdapterFactory::new(tls_config(
        url.clone(),
        Some(redis.certs.path("ca.crt")),
        Mode::Classic,
        "trusted",
    ))
    .expect("valid config");
    assert!(ok.wait_ready(Duration::from_secs(10)).await);
    // Trusting another CA (or only the system's) it does not: the certificate is verified.
    let other = Certs::make("other");
    for ca in [Some(other.path("ca.crt")), None] {
        let f = RedisAdapterFactory::new(tls_config(
            url.clone(),
            ca.clone(),
            Mode::Classic,
            "untrusted",
        ))
        .expect("valid config");
        assert!(
            !f.wait_ready(Duration::from_secs(2)).await,
            "connected although the server's certificate is not signed by {ca:?}"
        );
    }
    // Plain redis:// to the TLS port does not get through either.
    let plain = RedisAdapterFactory::new(tls_config(
        format!("redis://:{ADMIN_PASSWORD}@127.0.0.1:{}", redis.port),
        None,
        Mode::Classic,
        "plain",
    ))
    .expect("valid config");
    assert!(!plain.wait_ready(Duration::from_secs(2)).await);
}

/// A Redis Cluster (3 masters, 3 replicas) speaking only TLS, clients, bus and replication, with
/// an ACL user on every node: two sharded nodes in cluster mode deliver to rooms of every shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_redis_cluster_with_an_acl_user() {
    support::require_js();
    let certs = Certs::make("cluster");
    let tls = rcluster::ClusterTls {
        ca: certs.path("ca.crt"),
        cert: certs.path("server.crt"),
        key: certs.path("server.key"),
    };
    let cluster = rcluster::RedisCluster::start_with(Some(ADMIN_PASSWORD), Some(tls)).await;
    // ACL users are per node: set it up on all six.
    for n in &cluster.nodes {
        cluster
            .cmd(
                n.port,
                &[
                    "ACL",
                    "SETUSER",
                    APP_USER,
                    "on",
                    &format!(">{APP_PASSWORD}"),
                    "resetchannels",
                    "&socket.io*",
                    "-@all",
                    "+@pubsub",
                    "+@connection",
                    "+cluster|slots",
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("ACL SETUSER on {}: {e}", n.port));
    }
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("rediss://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}", n.port))
        .collect();
    let rooms = cluster.room_per_master().await;
    let mut nodes = Vec::new();
    for name in ["tls-c1", "tls-c2"] {
        let mut cfg = tls_config(
            urls[0].clone(),
            Some(certs.path("ca.crt")),
            Mode::Sharded,
            name,
        );
        cfg.cluster = true;
        cfg.cluster_seeds = urls[1..].to_vec();
        nodes.push(SbNode::start_with(cfg, name).await);
    }
    let c = ClientDriver::spawn().await;
    c.connect("b", &nodes[1].url(), "/").await;
    for room in rooms.values() {
        c.emit_with_ack("b", "join", json!([room]), 5000).await;
    }
    for room in rooms.values() {
        let ev = format!("m-{room}");
        eventually(
            &format!("{room} crosses the TLS cluster"),
            Duration::from_secs(10),
            || {
                nodes[0]
                    .io
                    .to(room.as_str())
                    .emit(ev.as_str(), json!(1))
                    .expect("emit");
                let (c, ev) = (&c, ev.clone());
                async move { !c.events_named("b", &ev).await.is_empty() }
            },
        )
        .await;
    }
    assert_eq!(
        nodes[0]
            .io
            .of("/")
            .adapter()
            .expect("adapter")
            .server_count()
            .await,
        2
    );
}
