//! `switchboard-load run`: starts a redis-server (when clustered) and the server processes on
//! free loopback ports, pinned with `taskset` to the server CPUs, then runs the scenario pinned
//! to the load CPUs with `--url` and `--server-pid` filled in, and stops everything afterwards.

use crate::cli::{RunArgs, ServerKind};
use crate::redis_procs;
use crate::scenario::Failure;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Processes the runner started; killed when dropped.
struct Started(Vec<(String, Child)>);

impl Drop for Started {
    fn drop(&mut self) {
        for (_, c) in self.0.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

fn pinned(cpus: &str, no_pin: bool, program: &str) -> Command {
    if no_pin {
        return Command::new(program);
    }
    let mut c = Command::new("taskset");
    c.arg("-c").arg(cpus).arg(program);
    c
}

fn wait_listening(label: &str, port: u16, child: &mut Child) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{label} exited with {status} before listening on {addr}: see its output above"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{label} did not listen on {addr} within 30 s: see its output above"
    ))
}

fn default_server_bin(kind: ServerKind) -> Result<String, String> {
    Ok(match kind {
        ServerKind::Switchboard => {
            let exe =
                std::env::current_exe().map_err(|e| format!("cannot locate this binary: {e}"))?;
            exe.with_file_name("switchboard")
                .to_string_lossy()
                .into_owned()
        }
        ServerKind::Node => "node".to_owned(),
        ServerKind::Socketioxide => {
            "loadtest/peers/socketioxide/target/release/socketioxide-peer".to_owned()
        }
    })
}

fn server_command(
    a: &RunArgs,
    bin: &str,
    node: u32,
    port: u16,
    redis: Option<&redis_procs::Redis>,
) -> Command {
    let mut c = pinned(&a.server_cpus, a.no_pin, bin);
    let redis_url = redis.map(redis_procs::Redis::url);
    match a.server {
        ServerKind::Switchboard => {
            c.arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--admin-listen")
                .arg("127.0.0.1:0")
                .env("RUST_LOG", "warn");
            if let Some(r) = redis {
                c.args(r.switchboard_args())
                    .arg("--node-id")
                    .arg(format!("sb-{node}"));
            }
        }
        ServerKind::Node => {
            c.arg(&a.node_script).env("NODE_ENV", "production");
        }
        ServerKind::Socketioxide => {}
    }
    c.env("PORT", port.to_string());
    if let Some(url) = &redis_url {
        c.env("REDIS_URL", url);
    }
    c.stdin(Stdio::null());
    c
}

/// Runs the scenario against freshly started servers; returns the scenario's exit status.
pub fn run(a: &RunArgs) -> Result<ExitStatus, Failure> {
    if a.nodes == 0 {
        return Err(Failure::Usage("--nodes must be at least 1".into()));
    }
    let Some(scenario) = a.scenario.first() else {
        return Err(Failure::Usage(
            "name a scenario after the runner's options, e.g. `run -- fanout --rate 200`".into(),
        ));
    };
    if !["idle", "fanout", "crossnode", "storm", "sweep", "soak"].contains(&scenario.as_str()) {
        return Err(Failure::Usage(format!(
            "`{scenario}`: the scenario must be idle, fanout, crossnode, storm, sweep or soak"
        )));
    }
    if !a.no_pin && Command::new("taskset").arg("-V").output().is_err() {
        return Err(Failure::Usage(
            "taskset not found: install util-linux, or pass --no-pin".into(),
        ));
    }
    let bin = match &a.server_bin {
        Some(b) => b.clone(),
        None => default_server_bin(a.server)?,
    };
    if a.redis_shards > 0 && a.server != ServerKind::Switchboard {
        return Err(Failure::Usage(
            "--redis-shards runs Switchboard's sharded wire on a Redis Cluster: use it with --server switchboard".into(),
        ));
    }
    let mut started = Started(Vec::new());
    let redis = if a.nodes > 1 || a.redis || a.redis_shards > 0 {
        Some(redis_procs::start(
            a.redis_shards,
            &a.redis_server,
            &a.redis_cli,
            |program| pinned(&a.server_cpus, a.no_pin, program),
            &mut started.0,
            wait_listening,
        )?)
    } else {
        None
    };
    let mut urls = Vec::new();
    let mut pids = Vec::new();
    for node in 0..a.nodes {
        let port = free_port()?;
        let label = format!("{} node {node}", a.server.name());
        let mut child = server_command(a, &bin, node, port, redis.as_ref())
            .spawn()
            .map_err(|e| format!("cannot start `{bin}` ({e}): build it or pass --server-bin"))?;
        wait_listening(&label, port, &mut child)?;
        eprintln!("run: {label} (pid {}) on 127.0.0.1:{port}", child.id());
        urls.push(format!("http://127.0.0.1:{port}"));
        pids.push(child.id());
        started.0.push((label, child));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this binary: {e}"))?;
    let mut c = pinned(&a.load_cpus, a.no_pin, &exe.to_string_lossy());
    c.args(&a.scenario);
    if !a.scenario.iter().any(|s| s == "--url") {
        for u in &urls {
            c.arg("--url").arg(u);
        }
    }
    for p in &pids {
        c.arg("--server-pid").arg(p.to_string());
    }
    if !a.scenario.iter().any(|s| s == "--label") {
        let label = match (a.nodes, &redis) {
            (1, None) => a.server.name().to_owned(),
            (n, Some(r)) if r.cluster => {
                format!("{}-{n}node-{}shard", a.server.name(), r.ports.len())
            }
            (n, _) => format!("{}-{n}node", a.server.name()),
        };
        c.arg("--label").arg(label);
    }
    if let Some(r) = &redis {
        r.reset_stats(&a.redis_cli);
    }
    c.stdout(Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(|e| format!("cannot start the load generator: {e}"))?;
    // The scenario's stdout is JSON lines; the last one gets what each Redis did.
    let mut lines = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            match line {
                Ok(l) => lines.push(l),
                Err(e) => {
                    return Err(format!("cannot read the load generator's output: {e}").into())
                }
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the load generator: {e}"))?;
    let last = lines.pop();
    let mut out = std::io::stdout().lock();
    for l in &lines {
        let _ = writeln!(out, "{l}");
    }
    if let Some(last) = last {
        match (serde_json::from_str::<serde_json::Value>(&last), &redis) {
            (Ok(mut v), Some(r)) if v.is_object() => {
                v["redis"] = r.stats(&a.redis_cli);
                let _ = writeln!(out, "{v}");
            }
            _ => {
                let _ = writeln!(out, "{last}");
            }
        }
    }
    let _ = out.flush();
    drop(started);
    Ok(status)
}
