//! The scenarios as the user sees them: each runs one or more jobs through the coordinator and
//! turns the outcome into one JSON line (stdout) and a human summary (stderr).

use crate::cli::{IdleArgs, LoadArgs, SoakArgs, StormArgs, SweepArgs};
use crate::coord::{coordinate, Outcome};
use crate::plan::Job;
use crate::procstat::ServerCost;
use crate::stats::Latency;
use serde_json::{json, Value};
use std::io::Write as _;

/// Why a scenario did not produce a report.
#[derive(Debug)]
pub enum Failure {
    /// The options are wrong (exit 64); the message names the flag.
    Usage(String),
    /// The run failed (exit 1); the message says what to check.
    Run(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Run(s)
    }
}

/// What a scenario produced: the JSON line, and whether anything was lost or failed.
pub struct Report {
    /// The JSON line.
    pub json: Value,
    /// A readable summary.
    pub human: String,
    /// Loss, duplicates, failed connections or disconnects happened.
    pub lossy: bool,
    /// Why the scenario's own check failed (soak: RSS kept growing); exit 1 whatever the flags.
    pub failed: Option<String>,
}

impl Report {
    /// Prints the JSON line on stdout and the summary on stderr.
    pub fn print(&self) {
        eprintln!("{}", self.human);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", self.json);
        let _ = out.flush();
    }
}

fn per(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| ((a as f64 / b as f64) * 100.0).round() / 100.0)
}

fn server_cost(o: &Outcome, pids: &[u32]) -> ServerCost {
    let cpu_us = o.end.cpu_us.saturating_sub(o.loaded.cpu_us);
    ServerCost {
        pids: pids.to_vec(),
        rss_baseline_bytes: o.baseline.rss_bytes,
        rss_loaded_bytes: o.loaded.rss_bytes,
        rss_end_bytes: o.end.rss_bytes,
        cpu_us,
        ..ServerCost::default()
    }
}

fn base(
    scenario: &str,
    label: &str,
    urls: &[String],
    o: &Outcome,
) -> serde_json::Map<String, Value> {
    let c = &o.counts;
    let mut m = serde_json::Map::new();
    m.insert(
        "tool".into(),
        json!(concat!("switchboard-load ", env!("CARGO_PKG_VERSION"))),
    );
    m.insert("scenario".into(), json!(scenario));
    m.insert("label".into(), json!(label));
    m.insert("urls".into(), json!(urls));
    m.insert(
        "unix_time".into(),
        json!(crate::worker::wall_us() / 1_000_000),
    );
    m.insert("workers".into(), json!(o.workers));
    m.insert("sources".into(), json!(o.sources));
    m.insert(
        "setup_s".into(),
        json!((o.setup_secs * 100.0).round() / 100.0),
    );
    m.insert("run_s".into(), json!((o.run_secs * 100.0).round() / 100.0));
    m.insert("connected".into(), json!(c.connected));
    m.insert("connect_failed".into(), json!(c.connect_failed));
    m.insert("disconnected".into(), json!(c.disconnected));
    let share = o.load_cpu_us as f64 / (o.run_secs.max(0.001) * 1e6);
    m.insert("load_cpu_us".into(), json!(o.load_cpu_us));
    m.insert(
        "load_cpu_share".into(),
        json!((share * 100.0).round() / 100.0),
    );
    m
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// `fanout` / `crossnode` / one sweep step.
pub async fn load(scenario: &str, a: &LoadArgs) -> Result<Report, Failure> {
    a.validate().map_err(Failure::Usage)?;
    if scenario == "crossnode" && a.common.urls.len() < 2 {
        return Err(Failure::Usage(
            "crossnode needs at least two --url (one per node sharing the Redis)".into(),
        ));
    }
    if scenario == "fanout" && a.common.urls.len() != 1 {
        return Err(Failure::Usage(
            "fanout takes exactly one --url (use crossnode for several nodes)".into(),
        ));
    }
    let o = coordinate(&Job::Load(a.clone())).await?;
    Ok(load_report(scenario, a, &o))
}

fn load_report(scenario: &str, a: &LoadArgs, o: &Outcome) -> Report {
    let c = &o.counts;
    let lat = Latency::of(&o.hist);
    let mut server = server_cost(o, &a.common.server_pids);
    server.cpu_us_per_delivery = per(server.cpu_us, c.received);
    let deliveries_per_s = (c.received as f64 / a.duration * 10.0).round() / 10.0;
    let mut m = base(scenario, &a.common.label, &a.common.urls, o);
    for (k, v) in [
        ("connections", json!(a.connections)),
        ("rooms", json!(a.rooms)),
        ("publishers", json!(a.publishers)),
        ("rate", json!(a.rate)),
        ("broadcast_rate", json!(a.broadcast_rate)),
        ("payload", json!(a.payload)),
        ("duration_s", json!(a.duration)),
        ("sent", json!(c.sent)),
        ("acked", json!(c.acked)),
        ("publish_errors", json!(c.publish_errors)),
        ("expected", json!(c.expected)),
        ("received", json!(c.received)),
        ("lost", json!(c.lost())),
        ("duplicated", json!(c.duplicated)),
        ("reordered", json!(c.reordered)),
        ("deliveries_per_s", json!(deliveries_per_s)),
        ("latency_us", json!(lat)),
        ("server", json!(server)),
    ] {
        m.insert(k.into(), v);
    }
    let lossy = c.lost() > 0
        || c.duplicated > 0
        || c.connect_failed > 0
        || c.disconnected > 0
        || c.publish_errors > 0;
    let cpu = server
        .cpu_us_per_delivery
        .map(|v| format!(", server {v} CPU-µs/delivery"))
        .unwrap_or_default();
    let human = format!(
        "{scenario}: {} connections in {} rooms over {} node(s), {} msg/s for {} s\n  \
         sent {} (acked {}, errors {}), deliveries {} of {} expected: lost {}, duplicated {}, reordered {}\n  \
         {deliveries_per_s} deliveries/s; latency p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}{cpu}",
        c.connected,
        a.rooms,
        a.common.urls.len(),
        a.rate,
        a.duration,
        c.sent,
        c.acked,
        c.publish_errors,
        c.received,
        c.expected,
        c.lost(),
        c.duplicated,
        c.reordered,
        ms(lat.p50),
        ms(lat.p90),
        ms(lat.p99),
        ms(lat.p999),
        ms(lat.max),
    );
    Report {
        json: Value::Object(m),
        human,
        lossy,
        failed: None,
    }
}

/// The least-squares slope of `y` over `x`, per unit of `x`.
fn slope(points: &[(f64, u64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 as f64 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

fn mib(bytes: f64) -> f64 {
    (bytes / 1048576.0 * 100.0).round() / 100.0
}

/// `soak`: a long fanout, judged on whether server RSS stays flat after the warm-up.
pub async fn soak(a: &SoakArgs) -> Result<Report, Failure> {
    if a.load.common.server_pids.is_empty() {
        return Err(Failure::Usage(
            "soak needs --server-pid (the RSS it judges is the server's); or use `run -- soak ...`"
                .into(),
        ));
    }
    if !(a.warmup >= 0.0 && a.warmup.is_finite() && a.load.duration >= a.warmup + 10.0) {
        return Err(Failure::Usage(
            "--warmup must be zero or more seconds, and --duration at least 10 s longer".into(),
        ));
    }
    if !(a.max_growth_mib >= 0.0 && a.max_growth_mib.is_finite()) {
        return Err(Failure::Usage(
            "--max-growth-mib must be zero or a positive number".into(),
        ));
    }
    a.load.validate().map_err(Failure::Usage)?;
    let o = coordinate(&Job::Load(a.load.clone())).await?;
    let mut r = load_report("soak", &a.load, &o);
    let judged: Vec<(f64, u64)> = o
        .rss_series
        .iter()
        .copied()
        .filter(|(t, _)| *t >= a.warmup && *t <= a.load.duration)
        .collect();
    let (Some(first), Some(last)) = (judged.first(), judged.last()) else {
        return Err(Failure::Run(
            "no RSS sample fell after the warm-up: the server stopped or the run ended early; see the progress lines above".into(),
        ));
    };
    let span = last.0 - first.0;
    let per_s = slope(&judged);
    let trend = per_s * span;
    let max = judged.iter().map(|p| p.1).max().unwrap_or(0);
    let mut every_10s: Vec<Value> = Vec::new();
    let mut bucket = None;
    for (t, b) in &o.rss_series {
        let this = (t / 10.0).floor() as u64;
        if bucket != Some(this) {
            bucket = Some(this);
            every_10s.push(json!([t.round(), mib(*b as f64)]));
        }
    }
    let flat = trend <= a.max_growth_mib * 1048576.0;
    if let Value::Object(m) = &mut r.json {
        m.insert(
            "soak".into(),
            json!({
                "warmup_s": a.warmup,
                "judged_s": (span * 10.0).round() / 10.0,
                "samples": judged.len(),
                "rss_after_warmup_mib": mib(first.1 as f64),
                "rss_end_mib": mib(last.1 as f64),
                "rss_max_mib": mib(max as f64),
                "trend_mib_per_min": mib(per_s * 60.0),
                "trend_growth_mib": mib(trend),
                "max_growth_mib": a.max_growth_mib,
                "flat": flat,
                "rss_mib_every_10s": every_10s,
            }),
        );
    }
    let verdict = format!(
        "soak: server RSS {:.1} MiB after the {} s warm-up, {:.1} MiB at the end (max {:.1}); trend {:+.2} MiB/min = {:+.2} MiB over {:.0} s (allowed {} MiB): {}",
        mib(first.1 as f64),
        a.warmup,
        mib(last.1 as f64),
        mib(max as f64),
        mib(per_s * 60.0),
        mib(trend),
        span,
        a.max_growth_mib,
        if flat { "flat" } else { "GROWING" }
    );
    r.human = format!("{}\n{verdict}", r.human);
    if !flat {
        r.failed = Some(format!(
            "server RSS grew {:.2} MiB after the warm-up (--max-growth-mib {}): look for a leak with heaptrack on the server, or raise --warmup if it levels off late",
            mib(trend),
            a.max_growth_mib
        ));
    }
    Ok(r)
}

/// `idle`.
pub async fn idle(a: &IdleArgs) -> Result<Report, Failure> {
    if a.connections == 0 {
        return Err(Failure::Usage("--connections must be at least 1".into()));
    }
    if !(a.duration >= 0.0 && a.duration.is_finite()) {
        return Err(Failure::Usage(
            "--duration must be zero or a positive number of seconds".into(),
        ));
    }
    let o = coordinate(&Job::Idle(a.clone())).await?;
    let c = &o.counts;
    let mut server = server_cost(&o, &a.common.server_pids);
    if !a.common.server_pids.is_empty() && c.connected > 0 {
        let grown = o.end.rss_bytes.saturating_sub(o.baseline.rss_bytes) as f64;
        server.rss_bytes_per_connection = Some((grown / c.connected as f64).round());
    }
    let connect_rate = (c.connected as f64 / o.setup_secs.max(0.001)).round();
    let mut m = base("idle", &a.common.label, &a.common.urls, &o);
    m.insert("connections".into(), json!(a.connections));
    m.insert("transport".into(), json!(a.transport));
    m.insert("duration_s".into(), json!(a.duration));
    m.insert("connects_per_s".into(), json!(connect_rate));
    m.insert("server".into(), json!(server));
    let rss = server
        .rss_bytes_per_connection
        .map(|b| {
            format!(
                ", server RSS {:.1} KiB per connection ({:.1} MiB total)",
                b / 1024.0,
                o.end.rss_bytes as f64 / 1048576.0
            )
        })
        .unwrap_or_default();
    let human = format!(
        "idle: {} of {} {} connections up in {:.1} s ({connect_rate}/s), held {} s, {} disconnected{rss}",
        c.connected,
        a.connections,
        match a.transport {
            crate::cli::Transport::Websocket => "WebSocket",
            crate::cli::Transport::Polling => "polling",
        },
        o.setup_secs,
        a.duration,
        c.disconnected
    );
    Ok(Report {
        json: Value::Object(m),
        human,
        lossy: c.connect_failed > 0 || c.disconnected > 0,
        failed: None,
    })
}

/// `storm`.
pub async fn storm(a: &StormArgs) -> Result<Report, Failure> {
    if a.concurrency == 0 {
        return Err(Failure::Usage("--concurrency must be at least 1".into()));
    }
    if !(a.duration > 0.0 && a.duration.is_finite()) {
        return Err(Failure::Usage(
            "--duration must be a positive number of seconds".into(),
        ));
    }
    let o = coordinate(&Job::Storm(a.clone())).await?;
    let c = &o.counts;
    let lat = Latency::of(&o.hist);
    let mut server = server_cost(&o, &a.common.server_pids);
    server.cpu_us_per_handshake = per(server.cpu_us, c.handshakes);
    let per_s = (c.handshakes as f64 / a.duration * 10.0).round() / 10.0;
    let mut m = base("storm", &a.common.label, &a.common.urls, &o);
    m.insert("concurrency".into(), json!(a.concurrency));
    m.insert("duration_s".into(), json!(a.duration));
    m.insert("handshakes".into(), json!(c.handshakes));
    m.insert("handshake_failed".into(), json!(c.handshake_failed));
    m.insert("handshakes_per_s".into(), json!(per_s));
    m.insert("latency_us".into(), json!(lat));
    m.insert("server".into(), json!(server));
    let cpu = server
        .cpu_us_per_handshake
        .map(|v| format!(", server {v} CPU-µs/handshake"))
        .unwrap_or_default();
    let human = format!(
        "storm: {} handshakes in {} s at concurrency {} ({per_s}/s), {} failed; handshake p50 {:.2} ms, p99 {:.2}, max {:.2}{cpu}",
        c.handshakes,
        a.duration,
        a.concurrency,
        c.handshake_failed,
        ms(lat.p50),
        ms(lat.p99),
        ms(lat.max)
    );
    Ok(Report {
        json: Value::Object(m),
        human,
        lossy: c.handshake_failed > 0,
        failed: None,
    })
}

/// `sweep`: fanout steps at rising rates until a bound is crossed.
pub async fn sweep(a: &SweepArgs) -> Result<Report, Failure> {
    if !(a.start_rate > 0.0 && a.factor > 1.0 && a.max_rate >= a.start_rate) {
        return Err(Failure::Usage(
            "--start-rate must be positive, --factor above 1, --max-rate at least --start-rate"
                .into(),
        ));
    }
    let scenario = if a.load.common.urls.len() > 1 {
        "crossnode"
    } else {
        "fanout"
    };
    let mut steps = Vec::new();
    let mut saturation: Option<Value> = None;
    let mut rate = a.start_rate;
    let mut failed_at = None;
    while rate <= a.max_rate * 1.000_001 {
        let mut step = a.load.clone();
        step.rate = rate;
        eprintln!("sweep: step at {rate:.0} msg/s");
        let r = load(scenario, &step).await?;
        eprintln!("{}", r.human);
        let j = r.json;
        let p99 = j["latency_us"]["p99"].as_u64().unwrap_or(u64::MAX);
        let expected = j["expected"].as_u64().unwrap_or(0).max(1);
        let loss = j["lost"].as_u64().unwrap_or(0) as f64 / expected as f64;
        let ok = (p99 as f64) <= a.max_p99_ms * 1000.0 && loss <= a.max_loss;
        steps.push(json!({
            "rate": rate,
            "deliveries_per_s": j["deliveries_per_s"],
            "p99_us": p99,
            "lost": j["lost"],
            "expected": j["expected"],
            "cpu_us_per_delivery": j["server"]["cpu_us_per_delivery"],
            "load_cpu_share": j["load_cpu_share"],
            "ok": ok,
        }));
        if !ok {
            failed_at = Some(rate);
            break;
        }
        saturation =
            Some(json!({"rate": rate, "deliveries_per_s": j["deliveries_per_s"], "p99_us": p99}));
        rate = (rate * a.factor).round();
    }
    let human = match (&saturation, failed_at) {
        (Some(s), Some(f)) => format!(
            "sweep: saturation at {} msg/s ({} deliveries/s, p99 {:.2} ms); {f} msg/s crossed the bound (p99 > {} ms or loss > {})",
            s["rate"], s["deliveries_per_s"], ms(s["p99_us"].as_u64().unwrap_or(0)), a.max_p99_ms, a.max_loss
        ),
        (Some(s), None) => format!(
            "sweep: no bound crossed up to --max-rate; highest step {} msg/s ({} deliveries/s)",
            s["rate"], s["deliveries_per_s"]
        ),
        (None, _) => format!("sweep: the first step ({} msg/s) already crossed the bound", a.start_rate),
    };
    let json = json!({
        "tool": concat!("switchboard-load ", env!("CARGO_PKG_VERSION")),
        "scenario": "sweep",
        "label": a.load.common.label,
        "urls": a.load.common.urls,
        "unix_time": crate::worker::wall_us() / 1_000_000,
        "connections": a.load.connections,
        "rooms": a.load.rooms,
        "publishers": a.load.publishers,
        "payload": a.load.payload,
        "step_duration_s": a.load.duration,
        "bound": {"max_p99_ms": a.max_p99_ms, "max_loss": a.max_loss},
        "steps": steps,
        "saturation": saturation,
        "crossed_at_rate": failed_at,
    });
    Ok(Report {
        json,
        human,
        lossy: false,
        failed: None,
    })
}
