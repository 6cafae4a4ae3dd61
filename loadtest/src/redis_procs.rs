//! The Redis side of `switchboard-load run`: one redis-server, or a Redis Cluster of N masters
//! formed by hand (`CLUSTER ADDSLOTSRANGE` and `CLUSTER MEET` through `redis-cli`, which works
//! for one master too, where `redis-cli --cluster create` wants three), and what each Redis did
//! during the run (`INFO commandstats` and `INFO cpu`), added to the scenario's JSON line.

use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Hash slots of a Redis Cluster.
const SLOTS: u32 = 16384;

/// The Redis processes the runner started.
pub struct Redis {
    /// Ports of the redis-servers (one, or one per master).
    pub ports: Vec<u16>,
    /// Whether they form a Redis Cluster.
    pub cluster: bool,
    /// The cluster's config files live here; removed on drop.
    dir: Option<PathBuf>,
    /// The slot range of each master, as `lo-hi`.
    ranges: Vec<(u32, u32)>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A loopback port that is free, and whose cluster-bus port (+10000) is free too when `bus`.
fn free_port(bus: bool) -> Result<u16, String> {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot find a free loopback port: {e}"))?;
        let port = l
            .local_addr()
            .map_err(|e| format!("cannot find a free loopback port: {e}"))?
            .port();
        if !bus {
            return Ok(port);
        }
        if port < 45000 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return Ok(port);
        }
    }
    Err("cannot find a free loopback port below 45000 whose +10000 cluster-bus port is free too: free some ports and retry".into())
}

/// The slot ranges of `n` masters, split evenly.
fn slot_ranges(n: u32) -> Vec<(u32, u32)> {
    (0..n)
        .map(|i| (i * SLOTS / n, (i + 1) * SLOTS / n - 1))
        .collect()
}

fn cli(redis_cli: &str, port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new(redis_cli)
        .arg("-h")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run `{redis_cli}` ({e}): install redis-tools or pass --redis-cli")
        })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.starts_with("ERR") {
        return Err(format!(
            "`redis-cli -p {port} {}` failed: {}{}",
            args.join(" "),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(text)
}

/// Starts one redis-server (`shards == 0`) or a Redis Cluster of `shards` masters; every
/// process is pushed onto `started` so the caller stops them.
pub fn start(
    shards: u32,
    redis_server: &str,
    redis_cli: &str,
    mut command: impl FnMut(&str) -> Command,
    started: &mut Vec<(String, Child)>,
    wait_listening: impl Fn(&str, u16, &mut Child) -> Result<(), String>,
) -> Result<Redis, String> {
    let cluster = shards > 0;
    let n = shards.max(1);
    let dir = if cluster {
        let d = std::env::temp_dir().join(format!("switchboard-load-redis-{}", std::process::id()));
        std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        Some(d)
    } else {
        None
    };
    let mut redis = Redis {
        ports: Vec::new(),
        cluster,
        dir,
        ranges: if cluster { slot_ranges(n) } else { Vec::new() },
    };
    for i in 0..n {
        let port = free_port(cluster)?;
        let mut c = command(redis_server);
        c.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        if let Some(d) = &redis.dir {
            c.args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(d.join(format!("nodes-{port}.conf")))
                .current_dir(d);
        }
        c.stdin(Stdio::null()).stdout(Stdio::null());
        let mut child = c.spawn().map_err(|e| {
            format!(
                "cannot start `{redis_server}` ({e}): install redis-server or pass --redis-server"
            )
        })?;
        let label = format!("redis-server {i}");
        wait_listening(&label, port, &mut child)?;
        started.push((label, child));
        redis.ports.push(port);
    }
    if cluster {
        form_cluster(&redis, redis_cli)?;
        eprintln!(
            "run: Redis Cluster of {n} master(s) on 127.0.0.1 ports {}",
            redis
                .ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        eprintln!("run: redis-server on 127.0.0.1:{}", redis.ports[0]);
    }
    Ok(redis)
}

/// Gives each master its slots, introduces them to each other and waits for `cluster_state:ok`.
fn form_cluster(r: &Redis, redis_cli: &str) -> Result<(), String> {
    for (port, (lo, hi)) in r.ports.iter().zip(&r.ranges) {
        cli(
            redis_cli,
            *port,
            &["CLUSTER", "ADDSLOTSRANGE", &lo.to_string(), &hi.to_string()],
        )?;
    }
    let first = r.ports[0].to_string();
    for port in &r.ports[1..] {
        cli(redis_cli, *port, &["CLUSTER", "MEET", "127.0.0.1", &first])?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ok = true;
        for port in &r.ports {
            let info = cli(redis_cli, *port, &["CLUSTER", "INFO"])?;
            let known = format!("cluster_known_nodes:{}", r.ports.len());
            ok &= info.contains("cluster_state:ok") && info.contains(&known);
        }
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the Redis Cluster did not reach cluster_state:ok within 30 s: check that redis-server >= 7 is installed and its cluster-bus ports (+10000) are free".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `calls` of one command in an `INFO commandstats` reply.
fn calls(info: &str, cmd: &str) -> u64 {
    let key = format!("cmdstat_{cmd}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A float field of an `INFO` reply.
fn field(info: &str, name: &str) -> f64 {
    let key = format!("{name}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

impl Redis {
    /// The URL arguments that point a Switchboard node at this Redis.
    pub fn switchboard_args(&self) -> Vec<String> {
        let url = format!("redis://127.0.0.1:{}", self.ports[0]);
        if self.cluster {
            vec![
                "--redis-cluster-url".into(),
                url,
                "--adapter-mode".into(),
                "sharded".into(),
            ]
        } else {
            vec!["--redis-url".into(), url]
        }
    }

    /// The URL for the peers (`REDIS_URL`).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// Resets every Redis's command statistics (after setup, before the scenario).
    pub fn reset_stats(&self, redis_cli: &str) {
        for port in &self.ports {
            let _ = cli(redis_cli, *port, &["CONFIG", "RESETSTAT"]);
        }
    }

    /// What each Redis did since `reset_stats`: publishes, subscriptions and its CPU seconds
    /// (over its whole life: setup included).
    pub fn stats(&self, redis_cli: &str) -> Value {
        let shards: Vec<Value> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| {
                let cmd = cli(redis_cli, *port, &["INFO", "commandstats"]).unwrap_or_default();
                let cpu = cli(redis_cli, *port, &["INFO", "cpu"]).unwrap_or_default();
                let mut v = json!({
                    "port": port,
                    "publish": calls(&cmd, "publish"),
                    "spublish": calls(&cmd, "spublish"),
                    "ssubscribe": calls(&cmd, "ssubscribe"),
                    "sunsubscribe": calls(&cmd, "sunsubscribe"),
                    "cpu_s": field(&cpu, "used_cpu_user") + field(&cpu, "used_cpu_sys"),
                });
                if let Some((lo, hi)) = self.ranges.get(i) {
                    v["slots"] = json!(format!("{lo}-{hi}"));
                }
                v
            })
            .collect();
        json!({ "cluster": self.cluster, "shards": shards })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_split_evenly_and_completely() {
        assert_eq!(slot_ranges(1), vec![(0, 16383)]);
        let three = slot_ranges(3);
        assert_eq!(three, vec![(0, 5460), (5461, 10921), (10922, 16383)]);
    }

    #[test]
    fn reads_commandstats_and_cpu() {
        let info = "# Commandstats\r\ncmdstat_spublish:calls=42,usec=10,usec_per_call=0.2\r\ncmdstat_ping:calls=1,usec=0\r\n";
        assert_eq!(calls(info, "spublish"), 42);
        assert_eq!(calls(info, "publish"), 0);
        let cpu = "used_cpu_sys:1.50\r\nused_cpu_user:0.25\r\n";
        assert!((field(cpu, "used_cpu_sys") + field(cpu, "used_cpu_user") - 1.75).abs() < 1e-9);
    }
}
