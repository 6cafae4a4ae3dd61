//! A throw-away Redis Cluster of three masters and three replicas on loopback: six
//! `redis-server --cluster-enabled yes` processes and `redis-cli --cluster create`, all
//! killed (and their directory removed) on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};

/// Cluster bus timeout: a master silent this long is failed over (quick, for tests).
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// One process of the cluster.
pub struct ClusterNode {
    pub port: u16,
    child: Option<Child>,
}

/// The cluster; node `i` listens on `ports[i]` (and its cluster bus on port + 10000).
pub struct RedisCluster {
    pub nodes: Vec<ClusterNode>,
    dir: PathBuf,
    password: Option<String>,
    tls: Option<ClusterTls>,
}

/// TLS everywhere (clients, cluster bus, replication), with these PEM files.
#[derive(Clone)]
pub struct ClusterTls {
    /// The CA that signed `cert`.
    pub ca: PathBuf,
    /// The nodes' certificate (for 127.0.0.1) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `n` free ports whose cluster bus ports (+10000) are free too. Node ports come from
/// 20000–22767 and bus ports so from 30000–32767: the two ranges never overlap (a cluster
/// started by a concurrent test cannot take another's bus port as its node port), and both sit
/// below the kernel's ephemeral range (32768–60999), so no outgoing connection takes them.
/// Ports handed out in this process are never handed out again.
fn free_ports(n: usize) -> Vec<u16> {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    for _ in 0..4000 {
        if out.len() == n {
            break;
        }
        let p: u16 = rand::random_range(20_000..22_768);
        if !out.contains(&p) && !taken.contains(&p) && free(p) && free(p + 10_000) {
            out.push(p);
        }
    }
    assert_eq!(
        out.len(),
        n,
        "not enough free loopback ports in 20000-22767 (and +10000)"
    );
    taken.extend_from_slice(&out);
    out
}

/// Runs one command on 127.0.0.1:`port` (RESP2, fresh connection).
pub async fn command(port: u16, args: &[&str]) -> Result<redis::Value, String> {
    command_as(None, None, port, args).await
}

/// [`command`] authenticated with `password` (the `default` user's), over TLS trusting
/// `tls_ca` when given.
pub async fn command_as(
    password: Option<&str>,
    tls_ca: Option<&Path>,
    port: u16,
    args: &[&str],
) -> Result<redis::Value, String> {
    let auth = password.map(|p| format!(":{p}@")).unwrap_or_default();
    let client = match tls_ca {
        None => redis::Client::open(format!("redis://{auth}127.0.0.1:{port}")),
        Some(ca) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
            redis::Client::build_with_tls(
                format!("rediss://{auth}127.0.0.1:{port}"),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
    }
    .map_err(|e| e.to_string())?;
    let mut c = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| format!("connecting to {port} timed out"))?
    .map_err(|e| e.to_string())?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    tokio::time::timeout(Duration::from_secs(2), cmd.query_async(&mut c))
        .await
        .map_err(|_| format!("{args:?} on {port} timed out"))?
        .map_err(|e| e.to_string())
}

/// The text of a bulk or simple string reply.
pub fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::VerbatimString { text, .. } => text.clone(),
        redis::Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

impl RedisCluster {
    /// Starts six nodes and joins them into 3 masters with one replica each; returns once
    /// every node reports `cluster_state:ok`.
    pub async fn start() -> RedisCluster {
        Self::start_with_password(None).await
    }

    /// [`RedisCluster::start`], every node requiring `password` (`requirepass`/`masterauth`).
    pub async fn start_with_password(password: Option<&str>) -> RedisCluster {
        Self::start_with(password, None).await
    }

    /// [`RedisCluster::start_with_password`], speaking only TLS when `tls` is given.
    pub async fn start_with(password: Option<&str>, tls: Option<ClusterTls>) -> RedisCluster {
        let exe =
            std::env::var("SWITCHBOARD_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir = std::env::temp_dir().join(format!(
            "switchboard-rcluster-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        let ports = free_ports(6);
        let mut nodes = Vec::new();
        for &port in &ports {
            let child = Command::new(&exe)
                .args(match &tls {
                    None => vec!["--port".to_owned(), port.to_string()],
                    Some(t) => [
                        "--port",
                        "0",
                        "--tls-port",
                        &port.to_string(),
                        "--tls-cluster",
                        "yes",
                        "--tls-replication",
                        "yes",
                        "--tls-auth-clients",
                        "no",
                    ]
                    .into_iter()
                    .map(str::to_owned)
                    .chain([
                        "--tls-cert-file".to_owned(),
                        t.cert.display().to_string(),
                        "--tls-key-file".to_owned(),
                        t.key.display().to_string(),
                        "--tls-ca-cert-file".to_owned(),
                        t.ca.display().to_string(),
                    ])
                    .collect(),
                })
                .args(["--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
                // A replica may take over however long ago it last heard from its master.
                .args(["--cluster-replica-validity-factor", "0"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .args(["--logfile", &format!("redis-{port}.log")])
                .args(
                    password
                        .map(|p| vec!["--requirepass", p, "--masterauth", p])
                        .unwrap_or_default(),
                )
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start `{exe}` ({e}): install redis-server (scripts/test.sh does)"
                    )
                });
            nodes.push(ClusterNode {
                port,
                child: Some(child),
            });
        }
        let cluster = RedisCluster {
            nodes,
            dir,
            password: password.map(str::to_owned),
            tls: tls.clone(),
        };
        let c = &cluster;
        for &port in &ports {
            cluster
                .until(&format!("redis-server on {port} answers"), || async move {
                    c.cmd(port, &["PING"]).await.is_ok()
                })
                .await;
        }
        let cli = std::env::var("SWITCHBOARD_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into());
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(str::to_owned));
        if let Some(t) = &tls {
            args.extend([
                "--tls".to_owned(),
                "--cacert".to_owned(),
                t.ca.display().to_string(),
            ]);
        }
        if let Some(p) = password {
            args.extend([
                "-a".to_owned(),
                p.to_owned(),
                "--no-auth-warning".to_owned(),
            ]);
        }
        // redis-cli waits forever for nodes that cannot meet: bound it.
        let create = Command::new(&cli)
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), create)
            .await
            .unwrap_or_else(|_| panic!("redis-cli --cluster create did not finish within 30 s (the nodes cannot meet on their cluster bus ports); logs in {}", cluster.dir.display()))
            .unwrap_or_else(|e| {
                panic!("cannot run `{cli}` ({e}): install redis-tools (scripts/test.sh does)")
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for &port in &ports {
            cluster
                .until(&format!("{port} sees the cluster ok"), || async move {
                    c.cmd(port, &["CLUSTER", "INFO"])
                        .await
                        .is_ok_and(|v| text(&v).contains("cluster_state:ok"))
                })
                .await;
        }
        cluster
            .until("three masters with a replica each", || cluster.settled())
            .await;
        cluster
    }

    /// Runs one command on the node on `port`, authenticated when the cluster has a password.
    pub async fn cmd(&self, port: u16, args: &[&str]) -> Result<redis::Value, String> {
        let ca = self.tls.as_ref().map(|t| t.ca.as_path());
        command_as(self.password.as_deref(), ca, port, args).await
    }

    async fn until<F, Fut>(&self, what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f().await {
            assert!(
                Instant::now() < deadline,
                "Redis Cluster: timed out waiting for: {what}"
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// True when the live nodes agree on 3 masters covering every slot, each with a replica.
    async fn settled(&self) -> bool {
        let Some(port) = self.live_ports().first().copied() else {
            return false;
        };
        let Ok(v) = self.cmd(port, &["CLUSTER", "NODES"]).await else {
            return false;
        };
        let nodes = text(&v);
        let masters = nodes
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .count();
        let replicas = nodes
            .lines()
            .filter(|l| l.contains("slave") && !l.contains("fail"))
            .count();
        if masters != 3 || replicas < 3 {
            return false;
        }
        // Every replica has finished its first sync (or it could not take over).
        for port in self.live_ports() {
            let Ok(v) = self.cmd(port, &["INFO", "replication"]).await else {
                return false;
            };
            let info = text(&v);
            if info.contains("role:slave") && !info.contains("master_link_status:up") {
                return false;
            }
        }
        true
    }

    /// Seed URLs, `redis://[:password@]127.0.0.1:PORT`, of every node.
    pub fn urls(&self) -> Vec<String> {
        let auth = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        self.nodes
            .iter()
            .map(|n| format!("{scheme}://{auth}127.0.0.1:{}", n.port))
            .collect()
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// `(start, end, master port)` of every slot range, from a live node.
    pub async fn slot_ranges(&self) -> Vec<(u16, u16, u16)> {
        for port in self.live_ports() {
            let Ok(redis::Value::Array(entries)) = self.cmd(port, &["CLUSTER", "SLOTS"]).await
            else {
                continue;
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(n) => u16::try_from(*n).ok(),
                _ => None,
            };
            let mut out = Vec::new();
            for e in entries {
                if let redis::Value::Array(f) = e {
                    if let (Some(s), Some(end), Some(redis::Value::Array(m))) =
                        (f.first().and_then(int), f.get(1).and_then(int), f.get(2))
                    {
                        if let Some(p) = m.get(1).and_then(int) {
                            out.push((s, end, p));
                        }
                    }
                }
            }
            return out;
        }
        panic!("no live cluster node answers CLUSTER SLOTS");
    }

    /// The hash slot of `key` (asked of Redis itself).
    pub async fn keyslot(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        let v = self
            .cmd(port, &["CLUSTER", "KEYSLOT", key])
            .await
            .expect("CLUSTER KEYSLOT");
        text(&v).parse().expect("a slot number")
    }

    /// One room name per master (by its port): names whose room channel on `/` falls in that
    /// master's slots.
    pub async fn room_per_master(&self) -> std::collections::BTreeMap<u16, String> {
        let mut rooms = std::collections::BTreeMap::new();
        for i in 0..200 {
            let room = format!("room-{i}");
            let slot = self.keyslot(&format!("socket.io#/#{room}#")).await;
            rooms.entry(self.owner(slot).await).or_insert(room);
            if rooms.len() == 3 {
                break;
            }
        }
        assert_eq!(rooms.len(), 3, "rooms on every master: {rooms:?}");
        rooms
    }

    /// The port of the master owning `slot`.
    pub async fn owner(&self, slot: u16) -> u16 {
        self.slot_ranges()
            .await
            .into_iter()
            .find(|(s, e, _)| *s <= slot && slot <= *e)
            .map(|(_, _, p)| p)
            .expect("every slot has an owner")
    }

    /// The sorted ports of the masters.
    pub async fn masters(&self) -> Vec<u16> {
        let mut m: Vec<u16> = self
            .slot_ranges()
            .await
            .into_iter()
            .map(|(_, _, p)| p)
            .collect();
        m.sort();
        m.dedup();
        m
    }

    /// `CLUSTER MYID` of the node on `port`.
    pub async fn id(&self, port: u16) -> String {
        text(
            &self
                .cmd(port, &["CLUSTER", "MYID"])
                .await
                .expect("CLUSTER MYID"),
        )
    }

    /// Moves `slot` (holding no keys) from its master to the master on `to`, the way
    /// `redis-cli --cluster reshard` does: IMPORTING on the target, MIGRATING on the source,
    /// then NODE everywhere (target first).
    pub async fn migrate_slot(&self, slot: u16, to: u16) {
        let from = self.owner(slot).await;
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let (from_id, to_id) = (self.id(from).await, self.id(to).await);
        let s = slot.to_string();
        let ok = |r: Result<redis::Value, String>, what: &str| {
            r.unwrap_or_else(|e| panic!("{what}: {e}"));
        };
        ok(
            self.cmd(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id])
                .await,
            "IMPORTING",
        );
        ok(
            self.cmd(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id])
                .await,
            "MIGRATING",
        );
        let keys = self
            .cmd(from, &["CLUSTER", "GETKEYSINSLOT", &s, "100"])
            .await
            .expect("GETKEYSINSLOT");
        assert!(
            matches!(keys, redis::Value::Array(ref k) if k.is_empty()),
            "slot {slot} holds keys"
        );
        ok(
            self.cmd(to, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id])
                .await,
            "NODE on the target",
        );
        ok(
            self.cmd(from, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id])
                .await,
            "NODE on the source",
        );
        for m in self.masters().await {
            if m != from && m != to {
                ok(
                    self.cmd(m, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id])
                        .await,
                    "NODE elsewhere",
                );
            }
        }
    }

    /// SIGKILLs the node on `port`.
    pub async fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of the cluster");
        if let Some(mut child) = node.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Waits until a replica has taken over the slots of a killed master (30 s at most).
    pub async fn wait_failover(&self, dead: u16) {
        self.until(
            "a replica takes over the dead master's slots",
            || async move {
                let ranges = self.slot_ranges().await;
                let live = self.live_ports();
                !ranges.is_empty()
                    && ranges
                        .iter()
                        .all(|(_, _, p)| *p != dead && live.contains(p))
                    && futures_ok(self, &live).await
            },
        )
        .await;
    }
}

async fn futures_ok(cluster: &RedisCluster, ports: &[u16]) -> bool {
    for &p in ports {
        match cluster.cmd(p, &["CLUSTER", "INFO"]).await {
            Ok(v) if text(&v).contains("cluster_state:ok") => {}
            _ => return false,
        }
    }
    true
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(child) = n.child.as_mut() {
                let _ = child.start_kill();
            }
        }
        if std::thread::panicking() {
            eprintln!("Redis Cluster logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
