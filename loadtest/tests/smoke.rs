//! CI smoke runs of every scenario against the real `switchboard` binary through
//! `switchboard-load run` (which starts the server processes, and a real redis-server for the
//! two-node runs): a few seconds and a few hundred connections each. They check the JSON line's
//! fields and that nothing was lost; they assert no timing figure.
//!
//! Prerequisites: `redis-server` on the PATH (`scripts/test.sh` installs it) and `taskset`
//! (util-linux). The gateway binary is built with `cargo build -p switchboard-gateway` unless
//! `SWITCHBOARD_BIN` names one.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const LOAD: &str = env!("CARGO_BIN_EXE_switchboard-load");

/// The `switchboard` binary of the same profile, built once.
fn switchboard_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(b) = std::env::var("SWITCHBOARD_BIN") {
            return b;
        }
        let load = PathBuf::from(LOAD);
        let dir = load.parent().expect("the binary lives in a directory");
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "-q",
            "-p",
            "switchboard-gateway",
            "--bin",
            "switchboard",
        ]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build for the gateway");
        assert!(
            status.success(),
            "cargo build -p switchboard-gateway failed"
        );
        dir.join("switchboard").to_string_lossy().into_owned()
    })
}

struct Run {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The JSON line (the last line of stdout).
    fn json(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no JSON line on stdout; stderr:\n{}", self.stderr));
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nstderr:\n{}", self.stderr))
    }
}

/// `switchboard-load ARGS` with a 120 s limit.
fn load(args: &[&str]) -> Run {
    let mut child = Command::new(LOAD)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard-load");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("poll the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("collect output");
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `switchboard-load run --server-bin ... RUNNER_ARGS -- SCENARIO...`, expected to succeed.
fn run(runner: &[&str], scenario: &[&str]) -> Value {
    let bin = switchboard_bin();
    let mut args = vec!["run", "--server-bin", bin];
    args.extend_from_slice(runner);
    args.push("--");
    args.extend_from_slice(scenario);
    let r = load(&args);
    assert!(
        r.status.success(),
        "switchboard-load {args:?} failed ({}):\n{}",
        r.status,
        r.stderr
    );
    r.json()
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("`{k}` is not a count in {v}"))
}

fn assert_no_loss(j: &Value, connections: u64) {
    assert_eq!(u(j, "connected"), connections, "{j}");
    assert_eq!(u(j, "connect_failed"), 0, "{j}");
    assert_eq!(u(j, "disconnected"), 0, "{j}");
    assert!(u(j, "sent") > 0, "{j}");
    assert_eq!(u(j, "acked"), u(j, "sent"), "every publish is acked: {j}");
    assert_eq!(u(j, "publish_errors"), 0, "{j}");
    assert!(u(j, "expected") > 0, "{j}");
    assert_eq!(u(j, "lost"), 0, "{j}");
    assert_eq!(u(j, "duplicated"), 0, "{j}");
    assert_eq!(u(j, "received"), u(j, "expected"), "{j}");
    let lat = &j["latency_us"];
    for k in ["count", "p50", "p90", "p99", "p999", "max"] {
        assert!(lat[k].is_u64(), "latency_us.{k} missing: {j}");
    }
    assert_eq!(u(lat, "count"), u(j, "received"), "{j}");
    assert!(
        j["deliveries_per_s"].as_f64().is_some_and(|d| d > 0.0),
        "{j}"
    );
    assert!(j["server"]["cpu_us"].is_u64(), "{j}");
    assert!(j["server"].get("cpu_us_per_delivery").is_some(), "{j}");
    assert_eq!(
        j["server"]["pids"].as_array().map(Vec::len),
        j["urls"].as_array().map(Vec::len)
    );
}

const FANOUT: &[&str] = &[
    "--connections",
    "300",
    "--rooms",
    "3",
    "--publishers",
    "3",
    "--rate",
    "150",
    "--duration",
    "2",
    "--drain",
    "5",
    "--fail-on-loss",
];

#[test]
fn fanout_on_one_node_loses_nothing() {
    let mut args = vec!["fanout"];
    args.extend_from_slice(FANOUT);
    let j = run(&["--no-pin"], &args);
    assert_eq!(j["scenario"], "fanout");
    assert_eq!(j["label"], "switchboard");
    assert_no_loss(&j, 300);
    // 3 publishers × 50 msg/s × 2 s, each to a room of 100 minus the sender.
    assert_eq!(u(&j, "sent"), 300);
    assert_eq!(u(&j, "expected"), 300 * 99);
}

#[test]
fn fanout_over_two_workers_and_two_sources_merges_results() {
    let mut args = vec!["fanout", "--workers", "2", "--sources", "2"];
    args.extend_from_slice(FANOUT);
    let j = run(&["--no-pin"], &args);
    assert_eq!(u(&j, "workers"), 2);
    assert_eq!(u(&j, "sources"), 2);
    assert_no_loss(&j, 300);
    assert_eq!(u(&j, "expected"), 300 * 99);
}

#[test]
fn crossnode_on_two_nodes_and_redis_loses_nothing() {
    let mut args = vec!["crossnode", "--broadcast-rate", "2"];
    args.extend_from_slice(FANOUT);
    let j = run(&["--no-pin", "--nodes", "2"], &args);
    assert_eq!(j["scenario"], "crossnode");
    assert_eq!(j["label"], "switchboard-2node");
    assert_eq!(j["urls"].as_array().map(Vec::len), Some(2));
    assert_no_loss(&j, 300);
    // Room traffic plus 4 broadcasts to the 299 others.
    assert_eq!(u(&j, "expected"), 300 * 99 + 4 * 299);
}

#[test]
fn crossnode_on_a_three_master_redis_cluster_spreads_spublish_over_the_shards() {
    let j = run(
        &["--no-pin", "--nodes", "3", "--redis-shards", "3"],
        &[
            "crossnode",
            "--connections",
            "300",
            "--rooms",
            "60",
            "--publishers",
            "60",
            "--rate",
            "300",
            "--duration",
            "2",
            "--drain",
            "5",
            "--fail-on-loss",
        ],
    );
    assert_eq!(j["label"], "switchboard-3node-3shard");
    assert_no_loss(&j, 300);
    // 60 rooms of 5, every publish reaches the 4 others.
    assert_eq!(u(&j, "expected"), u(&j, "sent") * 4);
    let redis = &j["redis"];
    assert_eq!(redis["cluster"], true, "{j}");
    let shards = redis["shards"].as_array().expect("redis.shards");
    assert_eq!(shards.len(), 3, "{j}");
    let spublish: Vec<u64> = shards.iter().map(|s| u(s, "spublish")).collect();
    // Every room message is an SPUBLISH on the shard owning the room's channel (plus the
    // nodes' own control traffic), and 60 room channels hash onto all three masters.
    assert!(spublish.iter().sum::<u64>() >= u(&j, "sent"), "{j}");
    assert!(spublish.iter().all(|&n| n > 0), "{j}");
}

#[test]
fn idle_reports_rss_per_connection() {
    let j = run(
        &["--no-pin"],
        &["idle", "--connections", "300", "--duration", "1"],
    );
    assert_eq!(j["scenario"], "idle");
    assert_eq!(u(&j, "connected"), 300);
    assert_eq!(u(&j, "disconnected"), 0);
    let server = &j["server"];
    assert!(
        u(server, "rss_end_bytes") > u(server, "rss_baseline_bytes"),
        "{j}"
    );
    assert!(
        server["rss_bytes_per_connection"]
            .as_f64()
            .is_some_and(|b| b > 0.0),
        "{j}"
    );
}

#[test]
fn storm_pinned_to_one_cpu_counts_handshakes() {
    let j = run(
        &["--server-cpus", "0", "--load-cpus", "0"],
        &[
            "storm",
            "--concurrency",
            "10",
            "--duration",
            "2",
            "--fail-on-loss",
        ],
    );
    assert_eq!(j["scenario"], "storm");
    assert!(u(&j, "handshakes") > 0, "{j}");
    assert_eq!(u(&j, "handshake_failed"), 0, "{j}");
    assert_eq!(u(&j["latency_us"], "count"), u(&j, "handshakes"));
    assert!(j["server"].get("cpu_us_per_handshake").is_some(), "{j}");
}

#[test]
fn sweep_reports_each_step_and_the_saturation_point() {
    let j = run(
        &["--no-pin"],
        &[
            "sweep",
            "--connections",
            "200",
            "--rooms",
            "2",
            "--publishers",
            "2",
            "--start-rate",
            "50",
            "--factor",
            "2",
            "--max-rate",
            "100",
            "--duration",
            "1",
            "--drain",
            "5",
            "--max-p99-ms",
            "60000",
        ],
    );
    assert_eq!(j["scenario"], "sweep");
    let steps = j["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{j}");
    for s in steps {
        assert_eq!(s["lost"], 0, "{j}");
        assert_eq!(s["ok"], true, "{j}");
    }
    assert_eq!(j["saturation"]["rate"], 100.0, "{j}");
}

#[test]
fn bad_options_exit_64_naming_the_flag() {
    let r = load(&["fanout", "--rooms", "0"]);
    assert_eq!(r.status.code(), Some(64), "{}", r.stderr);
    assert!(r.stderr.contains("--rooms"), "{}", r.stderr);
    let r = load(&["fanout", "--connections", "many"]);
    assert_eq!(r.status.code(), Some(64), "{}", r.stderr);
    let r = load(&["crossnode", "--url", "http://127.0.0.1:1"]);
    assert_eq!(r.status.code(), Some(64), "{}", r.stderr);
    assert!(r.stderr.contains("--url"), "{}", r.stderr);
    let r = load(&["idle", "--server-pid", "999999999"]);
    assert_eq!(r.status.code(), Some(64), "{}", r.stderr);
    assert!(r.stderr.contains("--server-pid"), "{}", r.stderr);
}

#[test]
fn an_unreachable_server_fails_with_a_hint() {
    let r = load(&[
        "fanout",
        "--url",
        "http://127.0.0.1:1",
        "--connections",
        "5",
        "--rooms",
        "1",
        "--publishers",
        "1",
        "--duration",
        "1",
        "--fail-on-loss",
    ]);
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("is the server up"), "{}", r.stderr);
}

#[path = "../../crates/gateway/tests/support/mod.rs"]
mod support;

/// A `switchboard` started by the test itself (for server options the runner does not pass),
/// through the gateway tests' [`support::GatewayProcess`] (free ports read back from its log,
/// killed on drop); the runtime keeps reading its log while the test blocks on the load tool.
struct Gateway {
    // Declared first so that it is dropped (killed) while the runtime still runs.
    process: support::GatewayProcess,
    rt: tokio::runtime::Runtime,
    url: String,
}

impl Gateway {
    fn start(extra: &[&str]) -> Gateway {
        let rt = tokio::runtime::Runtime::new().expect("start a tokio runtime");
        let mut cmd = tokio::process::Command::new(switchboard_bin());
        cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(extra);
        let process = rt.block_on(support::GatewayProcess::spawn(cmd, "switchboard"));
        let url = format!("http://{}", process.addr);
        Gateway { process, rt, url }
    }

    fn pid(&self) -> String {
        self.process
            .child
            .id()
            .expect("the gateway runs")
            .to_string()
    }

    /// `GET /metrics` on the admin listener.
    fn metrics(&self) -> String {
        self.rt
            .block_on(support::admin_get(self.process.admin, "/metrics"))
            .1
    }
}

#[test]
fn idle_polling_sessions_answer_pings_and_stay_polling() {
    // Pings every 300 ms with 300 ms to answer: a session whose pongs did not arrive would be
    // closed well within the 3 s hold and count as disconnected.
    let g = Gateway::start(&["--ping-interval", "300ms", "--ping-timeout", "300ms"]);
    let pid = g.pid();
    let r = load(&[
        "idle",
        "--url",
        &g.url,
        "--server-pid",
        &pid,
        "--transport",
        "polling",
        "--connections",
        "200",
        "--duration",
        "3",
        "--fail-on-loss",
    ]);
    assert!(r.status.success(), "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["transport"], "polling", "{j}");
    assert_eq!(u(&j, "connected"), 200, "{j}");
    assert_eq!(u(&j, "disconnected"), 0, "{j}");
    assert!(
        j["server"]["rss_bytes_per_connection"]
            .as_f64()
            .is_some_and(|b| b > 0.0),
        "{j}"
    );
    // `disconnected` 0 above is the pong check: a session the gateway closed (a ping timeout
    // among them) answers its waiting GET with `1`, which the tool counts. After the run the tool
    // stops answering, so the close reasons the gateway records then say nothing.
    let metrics = g.metrics();
    let opened = |transport: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("switchboard_engine_sessions_opened_total")
                    && l.contains(&format!("transport=\"{transport}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(opened("polling"), 200, "{metrics}");
    assert_eq!(opened("websocket"), 0, "{metrics}");
}

const SOAK: &[&str] = &[
    "soak",
    "--connections",
    "100",
    "--rooms",
    "2",
    "--publishers",
    "2",
    "--rate",
    "50",
    "--duration",
    "12",
    "--warmup",
    "2",
    "--drain",
    "3",
];

#[test]
fn soak_judges_server_rss_flat_after_the_warm_up() {
    let g = Gateway::start(&[]);
    let pid = g.pid();
    let mut args = SOAK.to_vec();
    args.extend_from_slice(&["--url", &g.url, "--server-pid", &pid, "--fail-on-loss"]);
    let r = load(&args);
    assert!(r.status.success(), "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["scenario"], "soak", "{j}");
    assert_no_loss(&j, 100);
    let soak = &j["soak"];
    assert_eq!(soak["flat"], true, "{j}");
    assert!(u(soak, "samples") >= 8, "a sample each second: {j}");
    assert!(
        soak["rss_mib_every_10s"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{j}"
    );
    assert!(r.stderr.contains("server RSS"), "{}", r.stderr);
}

#[test]
fn soak_fails_when_rss_keeps_growing() {
    let g = Gateway::start(&[]);
    // A second sampled process that grows by 4 MiB (touched) twice a second: the summed RSS
    // grows ~80 MiB over the judged 10 s, far past the 8 MiB allowed.
    let mut grower = Command::new("python3")
        .args([
            "-c",
            "import time\na=[]\nwhile True:\n a.append(b'x'*(4<<20))\n time.sleep(0.5)",
        ])
        .spawn()
        .expect("start python3");
    let (gw, grows) = (g.pid(), grower.id().to_string());
    let mut args = SOAK.to_vec();
    args.extend_from_slice(&["--url", &g.url, "--server-pid", &gw, "--server-pid", &grows]);
    let r = load(&args);
    let _ = grower.kill();
    let _ = grower.wait();
    assert_eq!(r.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("GROWING"), "{}", r.stderr);
    assert!(r.stderr.contains("grew"), "{}", r.stderr);
    assert_eq!(r.json()["soak"]["flat"], false);
}

#[test]
fn soak_without_a_server_pid_is_a_usage_error() {
    let r = load(&["soak", "--duration", "20"]);
    assert_eq!(r.status.code(), Some(64), "{}", r.stderr);
    assert!(r.stderr.contains("--server-pid"), "{}", r.stderr);
    let r = load(&[
        "soak",
        "--server-pid",
        "1",
        "--duration",
        "20",
        "--warmup",
        "15",
    ]);
    assert_eq!(r.status.code(), Some(64), "{}", r.stderr);
    assert!(r.stderr.contains("--warmup"), "{}", r.stderr);
}
