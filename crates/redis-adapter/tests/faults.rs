//! Faults against a real redis-server: a restart, and a subscription that stays connected but
//! goes silent. Nodes must report not ready, count what they lose, and heal by themselves.

mod sbnode;
mod support;

use sbnode::SbNode;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{eventually, ClientDriver, RedisServer};
use switchboard_redis::{LossReason, Mode, RedisAdapterConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_heals_and_is_counted() {
    support::require_js();
    let mut redis = RedisServer::start().await;
    let n1 = SbNode::start(&redis.url(), Mode::Classic, "sb-1").await;
    let n2 = SbNode::start(&redis.url(), Mode::Classic, "sb-2").await;
    let c = ClientDriver::spawn().await;
    c.connect("a", &n1.url(), "/").await;
    c.connect("b", &n2.url(), "/").await;
    c.emit_with_ack("b", "join", json!(["r"]), 5000).await;
    n1.io.to("r").emit("before", json!(1)).expect("emit");
    c.wait("b", "before", 1, 5000).await;
    assert!(n1.io.is_ready() && n2.io.is_ready());

    redis.kill().await;
    eventually(
        "both nodes report not ready",
        Duration::from_secs(10),
        || async { !n1.io.is_ready() && !n2.io.is_ready() },
    )
    .await;
    assert_eq!(n1.redis.metrics().up.get(), 0);
    // Broadcasts during the outage still reach this node's sockets, and the copies for the
    // other nodes are counted lost, never queued forever and never a crash.
    c.emit_with_ack("a", "join", json!(["r"]), 5000).await;
    for i in 0..5 {
        n1.io.to("r").emit("during", json!(i)).expect("emit");
    }
    c.wait("a", "during", 5, 5000).await;
    eventually(
        "the lost publishes are counted",
        Duration::from_secs(10),
        || async {
            let m = n1.redis.metrics();
            m.lost_count(LossReason::Disconnected)
                + m.lost_count(LossReason::Error)
                + m.lost_count(LossReason::Timeout)
                >= 5
        },
    )
    .await;
    // Requests do not hang while Redis is away: they fail at once with what to check.
    let err = n1.io.fetch_sockets().await.expect_err("Redis is down");
    assert!(err.to_string().contains("Redis"), "{err}");

    redis.restart().await;
    eventually(
        "both nodes ready again",
        Duration::from_secs(15),
        || async { n1.io.is_ready() && n2.io.is_ready() },
    )
    .await;
    for n in [&n1, &n2] {
        let m = n.redis.metrics();
        assert_eq!(m.outages.get(), 1, "{}: one outage", n.name);
        assert!(
            m.outage_seconds.get() > 0.0,
            "{}: the outage lasted",
            n.name
        );
        assert!(m.subscribes.get() >= 2, "{}: resubscribed", n.name);
        assert_eq!(m.up.get(), 1);
    }
    assert!(
        c.events_named("b", "during").await.is_empty(),
        "lost during the outage, as documented"
    );
    n1.io.to("r").emit("after", json!(1)).expect("emit");
    c.wait("b", "after", 1, 5000).await;
    assert_eq!(n1.io.fetch_sockets().await.expect("fetch").len(), 2);
}

/// A TCP proxy that can go silent: after `freeze`, bytes from Redis on the connections open at
/// that moment are swallowed while the connections stay open (new connections pass).
struct Proxy {
    port: u16,
    conns: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let conns: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let list = conns.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let frozen = Arc::new(AtomicBool::new(false));
                if let Ok(mut l) = list.lock() {
                    l.push(frozen.clone());
                }
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if frozen.load(Ordering::Acquire) {
                            continue;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Proxy { port, conns }
    }

    fn freeze(&self) {
        if let Ok(l) = self.conns.lock() {
            for f in l.iter() {
                f.store(true, Ordering::Release);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_subscription_is_detected_by_the_probe() {
    support::require_js();
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(redis.port()).await;
    let mut cfg = RedisAdapterConfig::new(format!("redis://127.0.0.1:{}", proxy.port));
    cfg.node_id = Some("sb-1".into());
    cfg.probe_interval = Duration::from_millis(300);
    cfg.max_backoff = Duration::from_millis(300);
    cfg.publish_timeout = Duration::from_millis(500);
    let n1 = SbNode::start_with(cfg, "sb-1").await;
    let n2 = SbNode::start(&redis.url(), Mode::Classic, "sb-2").await;
    let c = ClientDriver::spawn().await;
    c.connect("a", &n1.url(), "/").await;
    c.emit_with_ack("a", "join", json!(["r"]), 5000).await;
    n2.io.to("r").emit("before", json!(1)).expect("emit");
    c.wait("a", "before", 1, 5000).await;

    // Node 1's connections stay open but Redis's bytes no longer reach it.
    proxy.freeze();
    eventually(
        "the probe notices the silence",
        Duration::from_secs(10),
        || async { n1.redis.metrics().probe_failures.get() >= 1 },
    )
    .await;
    eventually(
        "node 1 resubscribed on a fresh connection",
        Duration::from_secs(10),
        || async { n1.io.is_ready() },
    )
    .await;
    // Delivery works again (retry: the resubscription may land just after a publish).
    let mut delivered = false;
    for i in 0..40 {
        n2.io.to("r").emit("after", json!(i)).expect("emit");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !c.events_named("a", "after").await.is_empty() {
            delivered = true;
            break;
        }
    }
    assert!(
        delivered,
        "node 1 receives broadcasts again after the forced resubscription"
    );
    assert!(n1.redis.metrics().subscribes.get() >= 2);
}

/// Garbage on the adapter's channels (from a buggy or hostile publisher) is dropped and
/// counted; the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_redis_is_counted_and_harmless() {
    support::require_js();
    let redis = RedisServer::start().await;
    let n1 = SbNode::start(&redis.url(), Mode::Classic, "sb-1").await;
    let n2 = SbNode::start(&redis.url(), Mode::Classic, "sb-2").await;
    let c = ClientDriver::spawn().await;
    c.connect("a", &n1.url(), "/").await;
    let garbage: [(&str, &str); 6] = [
        ("socket.io#/#", "not msgpack"),
        ("socket.io#/#", "\u{93}\u{a1}x"),
        ("socket.io-request#/#", "{\"type\": \"seven\""),
        ("socket.io-request#/#", "{\"type\": 5}"),
        ("socket.io-response#/#", "{\"requestId\": 12"),
        ("socket.io-request#/#", "\u{c1}"),
    ];
    for (channel, payload) in garbage {
        redis.command(&["PUBLISH", channel, payload]).await;
    }
    eventually(
        "every bad message is counted",
        Duration::from_secs(5),
        || async { n1.redis.metrics().decode_errors.get() >= 6 },
    )
    .await;
    n2.io.emit("still", json!("fine")).expect("emit");
    c.wait("a", "still", 1, 5000).await;
    assert_eq!(n1.io.fetch_sockets().await.expect("fetch").len(), 1);

    // Sharded: a request that wants a reply but does not say who sent it is refused.
    let s1 = SbNode::start(&redis.url(), Mode::Sharded, "sb-s1").await;
    let anonymous =
        r#"{"type":7,"nsp":"/","data":{"requestId":"r1","opts":{"rooms":[],"except":[]}}}"#;
    redis
        .command(&["SPUBLISH", "socket.io#/#", anonymous])
        .await;
    eventually(
        "the anonymous request is counted",
        Duration::from_secs(5),
        || async { s1.redis.metrics().decode_errors.get() >= 1 },
    )
    .await;
}

/// Redis stops answering (SIGSTOP: connections stay open, nothing comes back). Publishes time
/// out and are counted, the node keeps serving its own sockets and its requests end, and it
/// heals once Redis answers again. (Node's classic adapter dies here on an unhandled timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_is_counted_never_stalls() {
    support::require_js();
    let redis = RedisServer::start().await;
    let info = redis.command(&["INFO", "server"]).await;
    let pid: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no process_id in INFO: {info}"));
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} {pid}");
    };
    let mut cfg = RedisAdapterConfig::new(redis.url());
    cfg.node_id = Some("sb-1".into());
    cfg.publish_timeout = Duration::from_millis(500);
    cfg.connect_timeout = Duration::from_millis(500);
    cfg.requests_timeout = Duration::from_millis(500);
    cfg.probe_interval = Duration::from_millis(300);
    cfg.max_backoff = Duration::from_millis(300);
    cfg.publish_queue = 16;
    let n1 = SbNode::start_with(cfg, "sb-1").await;
    let n2 = SbNode::start(&redis.url(), Mode::Classic, "sb-2").await;
    let c = ClientDriver::spawn().await;
    c.connect("a", &n1.url(), "/").await;
    c.connect("b", &n2.url(), "/").await;
    for name in ["a", "b"] {
        c.emit_with_ack(name, "join", json!(["r"]), 5000).await;
    }

    signal("-STOP");
    // A burst while Redis does not answer overflows the small publish queue: counted, dropped.
    for i in 0..200 {
        n1.io
            .to("r")
            .emit("burst", json!(i))
            .expect("emit never blocks");
    }
    c.wait("a", "burst", 200, 5000).await;
    assert!(
        n1.redis.metrics().lost_count(LossReason::QueueFull) >= 1,
        "a full publish queue drops and counts"
    );
    for i in 0..3 {
        n1.io
            .to("r")
            .emit("frozen", json!(i))
            .expect("emit never blocks");
    }
    c.wait("a", "frozen", 3, 5000).await;
    eventually(
        "the timed-out publish is counted",
        Duration::from_secs(10),
        || async { n1.redis.metrics().lost_count(LossReason::Timeout) >= 1 },
    )
    .await;
    eventually(
        "node 1 reports not ready",
        Duration::from_secs(10),
        || async { !n1.io.is_ready() },
    )
    .await;
    let started = std::time::Instant::now();
    let result = n1.io.fetch_sockets().await;
    assert!(
        result.is_err(),
        "no cluster answer while Redis is frozen: {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the request ended in {:?}",
        started.elapsed()
    );

    signal("-CONT");
    eventually(
        "both nodes ready again",
        Duration::from_secs(20),
        || async { n1.io.is_ready() && n2.io.is_ready() },
    )
    .await;
    let mut delivered = false;
    for i in 0..40 {
        n1.io.to("r").emit("thawed", json!(i)).expect("emit");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !c.events_named("b", "thawed").await.is_empty() {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "delivery resumes after Redis answers again");
}
