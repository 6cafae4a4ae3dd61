//! `deploy/docker-compose.yml` and `deploy/Dockerfile`, checked without Docker.
//!
//! The compose file is parsed and its topology checked: one Redis without persistence; three
//! gateway services built from `deploy/Dockerfile`, configured only through the `SWITCHBOARD_*`
//! variables that `switchboard --help` lists, with unique node ids, one Redis URL naming the redis
//! service, listeners reachable from outside their container, unique published ports, a stop
//! grace period longer than the drain, and a healthcheck. The Dockerfile is checked too (its Rust
//! image is new enough for the locked dependencies, both stages share one Debian release).
//!
//! Then the same topology runs as plain processes: a throw-away redis-server and the three
//! gateway binaries with the containers' environment (image `ENV`, then the service's
//! `environment`), addresses moved to loopback. Each node must turn ready, pass the compose
//! healthcheck command, and a relay `publish` from a client on the first node must reach clients on
//! the others.

#[path = "../../redis-adapter/tests/support/mod.rs"]
mod cluster_support;
mod support;

use cluster_support::{eventually, workspace_root, ClientDriver, RedisServer};
use serde_json::json;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

const COMPOSE_FILE: &str = "deploy/docker-compose.yml";
const DOCKERFILE: &str = "deploy/Dockerfile";
/// Environment variables a gateway service may set besides the gateway's own flags.
const OTHER_ENV: &[&str] = &["RUST_LOG", "RUST_BACKTRACE"];
/// The variables that differ between the nodes of one cluster; all others must be the same on
/// every node (docs/cluster.md, "Rules for every node of one cluster"; behind one load balancer a
/// client may reach any node, hence the auth token and the limits too).
const NODE_SPECIFIC_ENV: &[&str] = &["SWITCHBOARD_NODE_ID"];
/// What Docker waits after SIGTERM before SIGKILL when `stop_grace_period` is not set.
const DOCKER_DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The gateway's default `--drain-timeout-secs`.
const DEFAULT_DRAIN_SECS: u64 = 30;

// ---------------------------------------------------------------------------------------------
// Reading the files
// ---------------------------------------------------------------------------------------------

fn read(rel: &str) -> String {
    let path = workspace_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn compose_dir() -> PathBuf {
    workspace_root().join("deploy")
}

/// The compose file as YAML, anchors and `<<` merge keys resolved.
fn parse_compose(text: &str) -> Value {
    let mut doc: Value =
        serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{COMPOSE_FILE}: {e}"));
    doc.apply_merge()
        .unwrap_or_else(|e| panic!("{COMPOSE_FILE}: merge keys: {e}"));
    doc
}

/// Every `[env: NAME...]` of `switchboard --help`: the variables the gateway reads.
fn known_env_keys() -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--help")
        // Set variables would show up in the help text as values.
        .env_clear()
        .output()
        .expect("run switchboard --help");
    assert!(out.status.success(), "switchboard --help: {}", out.status);
    // Words joined by single spaces, in case the help text is ever wrapped.
    let text = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // `[env: NAME=]`, `[env: NAME=value]`, or `[env: NAME]` for hidden values.
    let keys: BTreeSet<String> = text
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| Some(rest[..rest.find(['=', ']'])?].to_owned()))
        .collect();
    for expected in [
        "SWITCHBOARD_NODE_ID",
        "SWITCHBOARD_REDIS_URL",
        "SWITCHBOARD_LISTEN",
    ] {
        assert!(
            keys.contains(expected),
            "{expected} missing from the variables found in switchboard --help: {keys:?}"
        );
    }
    keys
}

/// A scalar as compose reads it: strings, numbers and booleans all become strings.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Compose's interpolation: `$$` is a literal `$`; `$NAME` and `${...}` are substituted from the
/// environment of whoever runs `docker compose`, which this check refuses (the file would not say
/// what the containers get).
fn unescape_dollars(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some(&n) if n == '{' || n == '_' || n.is_ascii_alphabetic() => {
                return Err(format!(
                    "{s:?}: compose substitutes `$NAME` and `${{NAME}}` from the host's environment; write `$$` for a literal `$`"
                ));
            }
            _ => out.push('$'),
        }
    }
    Ok(out)
}

/// `environment:` as a map or as a list of `KEY=VALUE`.
fn environment(v: Option<&Value>) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                let key = scalar(k).ok_or_else(|| format!("environment key {k:?}"))?;
                let value = scalar(v).ok_or_else(|| {
                    format!("environment {key} has no value: compose would take it from the host")
                })?;
                env.insert(key, unescape_dollars(&value)?);
            }
        }
        Some(Value::Sequence(items)) => {
            for item in items {
                let entry = scalar(item).ok_or_else(|| format!("environment entry {item:?}"))?;
                let (key, value) = entry.split_once('=').ok_or_else(|| {
                    format!("environment {entry} has no value: compose would take it from the host")
                })?;
                env.insert(key.to_owned(), unescape_dollars(value)?);
            }
        }
        Some(other) => {
            return Err(format!(
                "environment is neither a map nor a list: {other:?}"
            ))
        }
    }
    Ok(env)
}

/// `depends_on:` as a list or as a map of service names.
fn depends_on(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        Some(Value::Mapping(m)) => m.keys().filter_map(scalar).collect(),
        Some(other) => scalar(other).into_iter().collect(),
        None => Vec::new(),
    }
}

/// One published port.
#[derive(Debug)]
struct Port {
    /// The host port; `None` lets Docker pick one.
    published: Option<u16>,
    /// The container port.
    target: u16,
}

fn parse_port(v: &Value) -> Result<Port, String> {
    let num = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("port {v:?}: {s:?} is not a port number (ranges are not checked: list ports one by one)"))
    };
    if let Some(m) = v.as_mapping() {
        let target = m
            .get("target")
            .and_then(scalar)
            .ok_or("port without target")?;
        let published = match m.get("published").and_then(scalar) {
            Some(p) => Some(num(&p)?),
            None => None,
        };
        return Ok(Port {
            published,
            target: num(&target)?,
        });
    }
    let s = scalar(v).ok_or_else(|| format!("port {v:?}"))?;
    let s = s.strip_suffix("/tcp").unwrap_or(&s);
    if s.contains('/') {
        return Err(format!("port {s:?}: the gateway listens on TCP only"));
    }
    // `[HOST_IP:]HOST:CONTAINER` or `CONTAINER`; HOST_IP may be `[::1]`, so split from the right.
    let mut parts = s.rsplitn(3, ':');
    let target = num(parts.next().unwrap_or_default())?;
    let published = match parts.next() {
        Some(p) => Some(num(p)?),
        None => None,
    };
    Ok(Port { published, target })
}

/// A compose duration (`1m30s`, `25s`, `500ms`).
fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" => 1e-6,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(n * unit_secs);
    }
    Some(total)
}

/// The parts of `redis://[user:password@]host[:port][/db]` the checks and the rewrite need.
#[derive(Debug, PartialEq)]
struct RedisUrl {
    credentials: Option<String>,
    host: String,
    port: u16,
    path: String,
}

fn parse_redis_url(url: &str) -> Result<RedisUrl, String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("{url:?}: expected redis://host:port"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (credentials, host_port) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c.to_owned()), h),
        None => (None, authority),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
        ),
        None => (host_port, 6379),
    };
    Ok(RedisUrl {
        credentials,
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

/// The same URL on `127.0.0.1:port`, credentials and database kept.
fn redis_url_on_loopback(url: &str, port: u16) -> String {
    let u = parse_redis_url(url).expect("checked by check_compose");
    let credentials = u.credentials.map(|c| format!("{c}@")).unwrap_or_default();
    format!("redis://{credentials}127.0.0.1:{port}{}", u.path)
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile
// ---------------------------------------------------------------------------------------------

/// What the checks read from the Dockerfile; `env`, `expose`, `user` and `entrypoint` are the
/// final stage's.
#[derive(Debug, Default, Clone)]
struct DockerFacts {
    /// The image of each `FROM`, in order.
    stages: Vec<String>,
    /// Every `RUN`, of every stage.
    runs: Vec<String>,
    env: BTreeMap<String, String>,
    expose: BTreeSet<u16>,
    user: Option<String>,
    entrypoint: Option<Vec<String>>,
}

fn docker_facts(text: &str) -> DockerFacts {
    // Logical instructions: comment lines dropped, `\` continuations joined.
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(t);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut f = DockerFacts::default();
    for ins in instructions {
        let (word, rest) = ins.split_once(char::is_whitespace).unwrap_or((&ins, ""));
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            "FROM" => {
                let image = rest
                    .split_whitespace()
                    .find(|w| !w.starts_with("--"))
                    .unwrap_or_default();
                f.stages.push(image.to_owned());
                f.env.clear();
                f.expose.clear();
                f.user = None;
                f.entrypoint = None;
            }
            "RUN" => f.runs.push(rest.to_owned()),
            "ENV" => {
                if rest
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w.contains('='))
                {
                    for pair in rest.split_whitespace() {
                        if let Some((k, v)) = pair.split_once('=') {
                            f.env.insert(k.to_owned(), v.trim_matches('"').to_owned());
                        }
                    }
                } else if let Some((k, v)) = rest.split_once(char::is_whitespace) {
                    f.env.insert(k.to_owned(), v.trim().to_owned());
                }
            }
            "EXPOSE" => f.expose.extend(
                rest.split_whitespace()
                    .filter_map(|p| p.trim_end_matches("/tcp").parse::<u16>().ok()),
            ),
            "USER" => f.user = Some(rest.to_owned()),
            "ENTRYPOINT" => f.entrypoint = serde_json::from_str(rest).ok(),
            _ => {}
        }
    }
    f
}

/// `(major, minor)` of `1.88` or `1.88.0`.
fn rust_version(s: &str) -> Option<(u64, u64)> {
    let mut parts = s.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The highest `rust-version` among the workspace and the packages the release build of the
/// gateway compiles (normal and build dependencies, every platform, as locked): `(version, who)`.
fn rust_floor() -> ((u64, u64), String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let metadata = |offline: bool| {
        let mut cmd = std::process::Command::new(&cargo);
        cmd.args(["metadata", "--format-version", "1", "--locked"])
            .current_dir(workspace_root());
        if offline {
            cmd.arg("--offline");
        }
        cmd.output()
    };
    let out = match metadata(true) {
        Ok(out) if out.status.success() => out,
        // A fresh machine may lack the sources of other platforms' packages.
        _ => metadata(false).expect("run cargo metadata"),
    };
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let packages: HashMap<&str, &serde_json::Value> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root = packages
        .iter()
        .find(|(_, p)| p["name"] == "switchboard-gateway")
        .map(|(id, _)| *id)
        .expect("switchboard-gateway in cargo metadata");
    let mut seen = BTreeSet::from([root]);
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        for dep in nodes[id]["deps"].as_array().into_iter().flatten() {
            let shipped = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if let Some(pkg) = dep["pkg"].as_str() {
                if shipped && seen.insert(pkg) {
                    todo.push(pkg);
                }
            }
        }
    }
    let mut floor = ((0, 0), String::new());
    for id in seen {
        let p = packages[id];
        if let Some(v) = p["rust_version"].as_str().and_then(rust_version) {
            if v > floor.0 {
                floor = (v, format!("{} {}", p["name"], p["version"]));
            }
        }
    }
    floor
}

/// Problems of the Dockerfile; `floor` is the oldest Rust that builds the gateway.
fn check_dockerfile(
    f: &DockerFacts,
    known: &BTreeSet<String>,
    floor: &((u64, u64), String),
) -> Vec<String> {
    let mut errs = Vec::new();
    if f.stages.len() < 2 {
        errs.push(format!(
            "{DOCKERFILE}: expected a build stage and a runtime stage, found {:?}",
            f.stages
        ));
        return errs;
    }
    let build = &f.stages[0];
    let runtime = &f.stages[f.stages.len() - 1];
    let build_tag = build.strip_prefix("rust:").unwrap_or_default();
    let (version, build_release) = build_tag.split_once('-').unwrap_or((build_tag, ""));
    match rust_version(version) {
        None => errs.push(format!(
            "{DOCKERFILE}: build on a pinned official Rust image (rust:1.NN-<debian>), not {build:?}"
        )),
        Some(v) => {
            let ((fmaj, fmin), who) = floor;
            if v < (*fmaj, *fmin) {
                errs.push(format!(
                    "{DOCKERFILE}: {build} cannot build the locked dependencies: {who} needs Rust {fmaj}.{fmin}"
                ));
            }
        }
    }
    let runtime_release = runtime
        .strip_prefix("debian:")
        .and_then(|t| t.strip_suffix("-slim"))
        .unwrap_or_default();
    if runtime_release.is_empty() {
        errs.push(format!(
            "{DOCKERFILE}: run on debian:<release>-slim, not {runtime:?}"
        ));
    } else if build_release != runtime_release {
        errs.push(format!(
            "{DOCKERFILE}: the binary is built on Debian {build_release:?} and run on {runtime_release:?}: use one release (glibc)"
        ));
    }
    let runs = f.runs.join(" ");
    for needed in [
        "cargo build",
        "--release",
        "--locked",
        "-p switchboard-gateway",
    ] {
        if !runs.contains(needed) {
            errs.push(format!("{DOCKERFILE}: no RUN with `{needed}`"));
        }
    }
    if f.entrypoint.as_deref() != Some(&["switchboard".to_owned()][..]) {
        errs.push(format!(
            "{DOCKERFILE}: ENTRYPOINT must be [\"switchboard\"], not {:?}",
            f.entrypoint
        ));
    }
    match f
        .user
        .as_deref()
        .map(|u| u.split(':').next().unwrap_or_default())
    {
        None | Some("root" | "0") => errs.push(format!(
            "{DOCKERFILE}: the runtime stage must switch to a non-root USER"
        )),
        Some(_) => {}
    }
    for key in f.env.keys() {
        if key.starts_with("SWITCHBOARD_") && !known.contains(key) {
            errs.push(format!(
                "{DOCKERFILE}: ENV {key} is not a variable of switchboard --help"
            ));
        }
    }
    for key in ["SWITCHBOARD_LISTEN", "SWITCHBOARD_ADMIN_LISTEN"] {
        match f.env.get(key).and_then(|a| a.parse::<SocketAddr>().ok()) {
            Some(addr) if f.expose.contains(&addr.port()) => {}
            Some(addr) => errs.push(format!(
                "{DOCKERFILE}: ENV {key} listens on port {} but EXPOSE has {:?}",
                addr.port(),
                f.expose
            )),
            None => errs.push(format!(
                "{DOCKERFILE}: set ENV {key} to 0.0.0.0:PORT: the default 127.0.0.1 is unreachable from outside the container"
            )),
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// The compose file
// ---------------------------------------------------------------------------------------------

/// A gateway service as its container sees it.
#[derive(Debug, Clone)]
struct Gateway {
    service: String,
    /// The container's environment: the image's `ENV`, overridden by `environment:`.
    env: BTreeMap<String, String>,
    /// The container port of `SWITCHBOARD_LISTEN`, when it is valid.
    listen_port: Option<u16>,
    /// The healthcheck command (without `CMD`), compose's `$$` resolved.
    healthcheck: Vec<String>,
}

#[derive(Debug)]
struct Topology {
    gateways: Vec<Gateway>,
}

/// The unspecified-address listener of `key` (`0.0.0.0:PORT` or `[::]:PORT`), or what is wrong.
fn container_listener(
    service: &str,
    env: &BTreeMap<String, String>,
    key: &str,
) -> Result<u16, String> {
    let value = env.get(key).ok_or_else(|| {
        format!("{service}: {key} is not set (neither by the image nor by the service)")
    })?;
    let addr: SocketAddr = value
        .parse()
        .map_err(|_| format!("{service}: {key}={value:?} is not an address"))?;
    if !addr.ip().is_unspecified() {
        return Err(format!(
            "{service}: {key}={value}: a container must listen on 0.0.0.0 (or [::]) to be reachable"
        ));
    }
    Ok(addr.port())
}

/// Checks the compose file against the image (`image` is what the Dockerfile sets) and the
/// gateway's flags; returns the gateways, or every problem found.
fn check_compose(
    doc: &Value,
    image: &DockerFacts,
    known: &BTreeSet<String>,
) -> Result<Topology, Vec<String>> {
    let Some(services) = doc.get("services").and_then(Value::as_mapping) else {
        return Err(vec![format!("{COMPOSE_FILE}: no `services` map")]);
    };
    let services: Vec<(String, &Value)> = services
        .iter()
        .filter_map(|(k, v)| Some((scalar(k)?, v)))
        .collect();
    let mut errs = Vec::new();
    let redis: Vec<&(String, &Value)> = services
        .iter()
        .filter(|(_, svc)| {
            svc.get("image").and_then(scalar).is_some_and(|i| {
                i.split(':').next().unwrap_or_default().rsplit('/').next() == Some("redis")
            })
        })
        .collect();
    let [(redis_name, redis_svc)] = redis.as_slice() else {
        return Err(vec![format!(
            "expected exactly one service with a redis image, found {:?}",
            redis.iter().map(|(n, _)| n).collect::<Vec<_>>()
        )]);
    };
    let redis = (
        redis_name.as_str(),
        check_redis(redis_name, redis_svc, &mut errs),
    );
    let gateways: Vec<Gateway> = services
        .iter()
        .filter(|(_, svc)| svc.get("build").is_some())
        .filter_map(|(name, svc)| check_gateway(name, svc, redis, image, known, &mut errs))
        .collect();
    if gateways.len() != 3 {
        errs.push(format!(
            "expected three gateway services built from {DOCKERFILE}, found {:?}",
            gateways.iter().map(|g| &g.service).collect::<Vec<_>>()
        ));
    }
    check_cluster(&gateways, &mut errs);
    check_host_ports(&services, &mut errs);
    for (name, svc) in &services {
        if svc.get("build").is_none() && name != redis_name {
            check_balancer(name, svc, &gateways, &mut errs);
        }
    }
    if errs.is_empty() {
        Ok(Topology { gateways })
    } else {
        Err(errs)
    }
}

/// Redis 7 or later, without persistence; returns the port it listens on.
fn check_redis(name: &str, svc: &Value, errs: &mut Vec<String>) -> u16 {
    let image = svc.get("image").and_then(scalar).unwrap_or_default();
    let major = image
        .split_once(':')
        .and_then(|(_, tag)| tag.split(['.', '-']).next()?.parse::<u32>().ok());
    if major.is_none_or(|m| m < 7) {
        errs.push(format!(
            "{name}: pin Redis 7 or later (redis:7), not {image:?}"
        ));
    }
    let command: Vec<String> = match svc.get("command") {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        Some(other) => scalar(other)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    let arg_after = |flag: &str| {
        command
            .iter()
            .position(|a| a == flag)
            .and_then(|i| command.get(i + 1))
            .map(|s| s.trim_matches(['"', '\'']).to_owned())
    };
    if arg_after("--save").as_deref() != Some("")
        || arg_after("--appendonly").as_deref() != Some("no")
    {
        errs.push(format!(
            "{name}: run redis-server with --save \"\" --appendonly no (the cluster stores nothing), command is {command:?}"
        ));
    }
    arg_after("--port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(6379)
}

/// One service with `build`: built from deploy/Dockerfile, configured by known variables only,
/// reachable, in the cluster on `redis` (service name, port), stopped gently, health-checked.
fn check_gateway(
    name: &str,
    svc: &Value,
    (redis_name, redis_port): (&str, u16),
    image: &DockerFacts,
    known: &BTreeSet<String>,
    errs: &mut Vec<String>,
) -> Option<Gateway> {
    let (context, file) = match svc.get("build") {
        Some(Value::Mapping(m)) => (
            m.get("context")
                .and_then(scalar)
                .unwrap_or_else(|| ".".into()),
            m.get("dockerfile")
                .and_then(scalar)
                .unwrap_or_else(|| "Dockerfile".into()),
        ),
        other => (
            other.and_then(scalar).unwrap_or_default(),
            "Dockerfile".into(),
        ),
    };
    let built_from = compose_dir().join(&context).join(&file);
    let dockerfile = workspace_root().join(DOCKERFILE);
    if built_from.canonicalize().ok() != dockerfile.canonicalize().ok() {
        errs.push(format!(
            "{name}: built from {} (context {context:?}), expected {DOCKERFILE}",
            built_from.display()
        ));
        return None;
    }
    for key in ["command", "entrypoint"] {
        if svc.get(key).is_some() {
            errs.push(format!(
                "{name}: no `{key}`: configure the gateway through SWITCHBOARD_* variables only"
            ));
        }
    }
    if svc.get("restart").and_then(scalar).as_deref() != Some("unless-stopped") {
        errs.push(format!("{name}: set `restart: unless-stopped`"));
    }
    if !depends_on(svc.get("depends_on"))
        .iter()
        .any(|d| d == redis_name)
    {
        errs.push(format!("{name}: depends_on must list {redis_name}"));
    }
    let own_env = environment(svc.get("environment"))
        .map_err(|e| errs.push(format!("{name}: {e}")))
        .ok()?;
    for key in own_env.keys() {
        if !known.contains(key) && !OTHER_ENV.contains(&key.as_str()) {
            errs.push(format!(
                "{name}: {key} is unknown: not a variable of switchboard --help (the gateway would ignore it)"
            ));
        }
    }
    let mut env = image.env.clone();
    env.extend(own_env);

    // Listeners reachable from outside the container; the Socket.IO port published.
    let listen = container_listener(name, &env, "SWITCHBOARD_LISTEN");
    let admin = container_listener(name, &env, "SWITCHBOARD_ADMIN_LISTEN");
    let listen_port = listen.as_ref().ok().copied();
    match (listen, admin) {
        (Ok(listen), Ok(admin)) => {
            let mut targets = Vec::new();
            for p in svc
                .get("ports")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                // A port that does not parse is reported by check_host_ports.
                if let Ok(p) = parse_port(p) {
                    targets.push(p.target);
                }
            }
            if !targets.contains(&listen) {
                errs.push(format!(
                    "{name}: the Socket.IO port {listen} is not published (ports target {targets:?})"
                ));
            }
            for t in targets {
                if t != listen && t != admin {
                    errs.push(format!(
                        "{name}: publishes container port {t}, where nothing listens ({listen} and {admin} do)"
                    ));
                }
            }
        }
        (listen, admin) => {
            errs.extend(listen.err());
            errs.extend(admin.err());
        }
    }

    // The cluster settings.
    match env.get("SWITCHBOARD_NODE_ID") {
        None => errs.push(format!(
            "{name}: set SWITCHBOARD_NODE_ID (random ids make timeout errors unreadable)"
        )),
        Some(id) if id.is_empty() || id.len() > 64 || id.contains('#') => {
            errs.push(format!(
                "{name}: node id {id:?}: 1 to 64 characters without '#'"
            ));
        }
        Some(_) => {}
    }
    match env.get("SWITCHBOARD_REDIS_URL").map(|u| parse_redis_url(u)) {
        None => errs.push(format!(
            "{name}: set SWITCHBOARD_REDIS_URL, or the node runs alone"
        )),
        Some(Err(e)) => errs.push(format!("{name}: SWITCHBOARD_REDIS_URL {e}")),
        Some(Ok(u)) if u.host != redis_name || u.port != redis_port => errs.push(format!(
            "{name}: SWITCHBOARD_REDIS_URL points at {}:{}, not at the {redis_name} service ({redis_name}:{redis_port})",
            u.host, u.port
        )),
        Some(Ok(_)) => {}
    }

    // Docker's SIGKILL must not cut the drain short.
    let drain = env
        .get("SWITCHBOARD_DRAIN_TIMEOUT_SECS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_DRAIN_SECS);
    let grace = match svc.get("stop_grace_period").and_then(scalar) {
        None => Some(DOCKER_DEFAULT_GRACE),
        Some(g) => parse_duration(&g),
    };
    match grace {
        None => errs.push(format!("{name}: stop_grace_period is not a duration")),
        Some(g) if g <= Duration::from_secs(drain) => errs.push(format!(
            "{name}: stop_grace_period {g:?} is not longer than the {drain} s drain: docker stop would SIGKILL draining nodes"
        )),
        Some(_) => {}
    }

    // The healthcheck, in exec form (or CMD-SHELL).
    let test: Vec<String> = svc
        .get("healthcheck")
        .and_then(|h| h.get("test"))
        .and_then(Value::as_sequence)
        .map(|items| items.iter().filter_map(scalar).collect())
        .unwrap_or_default();
    let healthcheck = match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        Some((kind, [script])) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".into(), "-c".into(), script.clone()]
        }
        _ => {
            errs.push(format!(
                "{name}: add a healthcheck on /ready (test: [\"CMD\", ...])"
            ));
            Vec::new()
        }
    };
    let healthcheck = healthcheck
        .iter()
        .map(|a| unescape_dollars(a))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| {
            errs.push(format!("{name}: healthcheck {e}"));
            Vec::new()
        });
    Some(Gateway {
        service: name.to_owned(),
        env,
        listen_port,
        healthcheck,
    })
}

/// Unique node ids, and the same settings on every node.
fn check_cluster(gateways: &[Gateway], errs: &mut Vec<String>) {
    let mut ids: HashMap<&str, &str> = HashMap::new();
    for g in gateways {
        if let Some(id) = g.env.get("SWITCHBOARD_NODE_ID") {
            if let Some(other) = ids.insert(id, &g.service) {
                errs.push(format!(
                    "{} and {other} share the node id {id:?}: each drops the other's messages",
                    g.service
                ));
            }
        }
    }
    let shared = |g: &Gateway| -> BTreeMap<String, String> {
        g.env
            .iter()
            .filter(|(k, _)| !NODE_SPECIFIC_ENV.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let Some((first, others)) = gateways.split_first() else {
        return;
    };
    let reference = shared(first);
    for g in others {
        let env = shared(g);
        let keys: BTreeSet<&String> = reference.keys().chain(env.keys()).collect();
        for k in keys {
            if reference.get(k) != env.get(k) {
                errs.push(format!(
                    "{} and {} differ in {k} ({:?} vs {:?}): the nodes of one cluster share everything but their id",
                    first.service,
                    g.service,
                    reference.get(k),
                    env.get(k)
                ));
            }
        }
    }
}

/// Each host port published once over all services.
fn check_host_ports(services: &[(String, &Value)], errs: &mut Vec<String>) {
    let mut published: HashMap<u16, &str> = HashMap::new();
    for (name, svc) in services {
        for p in svc
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            match parse_port(p) {
                Ok(Port {
                    published: Some(host),
                    ..
                }) => {
                    if let Some(other) = published.insert(host, name) {
                        errs.push(format!(
                            "host port {host} is published twice ({other} and {name})"
                        ));
                    }
                }
                Ok(_) => {}
                Err(e) => errs.push(format!("{name}: {e}")),
            }
        }
    }
}

/// A service mounting a config file from deploy/ that has an `upstream` block (a load
/// balancer): its `server HOST:PORT` entries are exactly the gateways.
fn check_balancer(name: &str, svc: &Value, gateways: &[Gateway], errs: &mut Vec<String>) {
    let expected: BTreeSet<String> = gateways
        .iter()
        .filter_map(|g| Some(format!("{}:{}", g.service, g.listen_port?)))
        .collect();
    for v in svc
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let Some(source) = scalar(v).and_then(|s| s.split(':').next().map(str::to_owned)) else {
            continue;
        };
        if !source.starts_with('.') {
            continue;
        }
        let path = compose_dir().join(&source);
        if !path.exists() {
            errs.push(format!("{name}: mounts {source}, which does not exist"));
        }
        let Ok(conf) = std::fs::read_to_string(&path) else {
            continue;
        };
        if !conf.contains("upstream") {
            continue;
        }
        let servers: BTreeSet<String> = conf
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server "))
            .filter_map(|rest| rest.split([';', ' ']).next())
            .filter(|target| target.contains(':'))
            .map(str::to_owned)
            .collect();
        if servers != expected {
            errs.push(format!(
                "{name}: {source} balances over {servers:?}, but the gateways are {expected:?}"
            ));
        }
    }
}

/// The compose file and the Dockerfile, checked; panics listing every problem.
fn checked_topology(known: &BTreeSet<String>) -> (Topology, DockerFacts) {
    let image = docker_facts(&read(DOCKERFILE));
    match check_compose(&parse_compose(&read(COMPOSE_FILE)), &image, known) {
        Ok(t) => (t, image),
        Err(errs) => panic!("{COMPOSE_FILE}:\n- {}", errs.join("\n- ")),
    }
}

#[test]
fn compose_file_and_dockerfile_describe_a_working_cluster() {
    let known = known_env_keys();
    let (topology, image) = checked_topology(&known);
    let errs = check_dockerfile(&image, &known, &rust_floor());
    assert!(errs.is_empty(), "{DOCKERFILE}:\n- {}", errs.join("\n- "));
    let ignore = read(".dockerignore");
    for entry in ["target", "node_modules", ".git"] {
        assert!(
            ignore
                .lines()
                .any(|l| l.trim().trim_start_matches("**/") == entry),
            ".dockerignore must leave {entry} out of the build context"
        );
    }
    assert_eq!(topology.gateways.len(), 3);
}

#[test]
fn the_checks_catch_broken_deployments() {
    let known = known_env_keys();
    let image = docker_facts(&read(DOCKERFILE));
    let good = parse_compose(&read(COMPOSE_FILE));
    let broken = |edit: &dyn Fn(&mut Value), hint: &str| {
        let mut doc = good.clone();
        edit(&mut doc);
        match check_compose(&doc, &image, &known) {
            Ok(_) => panic!("a compose file with {hint:?} passed the checks"),
            Err(errs) => assert!(
                errs.iter().any(|e| e.contains(hint)),
                "expected a problem mentioning {hint:?}, got {errs:#?}"
            ),
        }
    };
    let env = |doc: &mut Value, svc: &str, key: &str, value: &str| {
        doc["services"][svc]["environment"][key] = Value::from(value);
    };
    broken(
        &|d| env(d, "sb-3", "SWITCHBOARD_NODE_ID", "sb-1"),
        "share the node id \"sb-1\"",
    );
    broken(
        &|d| env(d, "sb-2", "SWITCHBOARD_REDIS_ULR", "redis://redis:6379"),
        "SWITCHBOARD_REDIS_ULR is unknown",
    );
    broken(
        &|d| env(d, "sb-1", "SWITCHBOARD_REDIS_URL", "redis://localhost:6379"),
        "not at the redis service",
    );
    broken(
        &|d| env(d, "sb-1", "SWITCHBOARD_LISTEN", "127.0.0.1:3000"),
        "must listen on 0.0.0.0",
    );
    broken(
        &|d| env(d, "sb-2", "SWITCHBOARD_ADAPTER_MODE", "sharded"),
        "differ in SWITCHBOARD_ADAPTER_MODE",
    );
    broken(
        &|d| env(d, "sb-1", "SWITCHBOARD_AUTH_TOKEN", "${TOKEN}"),
        "compose substitutes",
    );
    broken(
        &|d| d["services"]["sb-2"]["ports"][0] = Value::from("3001:3000"),
        "host port 3001 is published twice",
    );
    broken(
        &|d| d["services"]["sb-3"]["ports"][0] = Value::from("3003:3999"),
        "the Socket.IO port 3000 is not published",
    );
    broken(
        &|d| {
            d["services"]["sb-1"]
                .as_mapping_mut()
                .expect("sb-1 is a map")
                .remove("stop_grace_period");
        },
        "stop_grace_period 10s",
    );
    broken(
        &|d| {
            d["services"]
                .as_mapping_mut()
                .expect("services is a map")
                .remove("sb-3");
        },
        "expected three gateway services",
    );
    broken(
        &|d| d["services"]["sb-1"]["command"] = Value::from("--node-id x"),
        "no `command`",
    );
    broken(
        &|d| d["services"]["redis"]["command"] = Value::Null,
        "--appendonly no",
    );

    // The Dockerfile.
    let floor = ((1, 88), "redis 1.8.1".to_owned());
    assert!(check_dockerfile(&image, &known, &floor).is_empty());
    let with = |from: &str, to: &str| {
        let text = read(DOCKERFILE).replace(from, to);
        assert_ne!(text, read(DOCKERFILE), "{from:?} is in {DOCKERFILE}");
        check_dockerfile(&docker_facts(&text), &known, &floor).join("\n")
    };
    let build_image = image.stages[0].clone();
    let errs = with(&build_image, "rust:1.85-bookworm");
    assert!(errs.contains("needs Rust 1.88"), "{errs}");
    let errs = with(&build_image, "rust:1.88-trixie");
    assert!(errs.contains("use one release"), "{errs}");
    let errs = with("USER 10001:10001", "USER root");
    assert!(errs.contains("non-root"), "{errs}");
    let errs = with("ENV SWITCHBOARD_LISTEN=", "ENV SWITCHBOARD_LISTN=");
    assert!(
        errs.contains("SWITCHBOARD_LISTN is not a variable"),
        "{errs}"
    );
}

// ---------------------------------------------------------------------------------------------
// The same topology as processes
// ---------------------------------------------------------------------------------------------

/// One gateway process started with a service's environment.
struct Node(support::GatewayProcess);

impl Node {
    /// Starts the gateway with exactly `env` and waits for its two listening addresses.
    async fn start(service: &str, env: &BTreeMap<String, String>) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.env_clear().envs(env);
        Node(support::GatewayProcess::spawn(cmd, &format!("{service} (environment {env:?})")).await)
    }

    fn log(&self) -> String {
        self.0.log()
    }
}

/// Runs a service's healthcheck command as its container would, the admin listener being at
/// `admin`: true when it exits 0.
async fn healthcheck_passes(g: &Gateway, admin: SocketAddr) -> bool {
    let mut env = g.env.clone();
    env.insert("SWITCHBOARD_ADMIN_LISTEN".into(), admin.to_string());
    let run = Command::new(&g.healthcheck[0])
        .args(&g.healthcheck[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(Duration::from_secs(10), run).await,
        Ok(Ok(status)) if status.success()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_topology_runs_as_processes() {
    cluster_support::require_js();
    let known = known_env_keys();
    let (topology, _) = checked_topology(&known);
    let redis = RedisServer::start().await;

    // The containers' environment, with host names and ports moved to this machine's loopback.
    let mut nodes = Vec::new();
    for g in &topology.gateways {
        let mut env = g.env.clone();
        let url = redis_url_on_loopback(&env["SWITCHBOARD_REDIS_URL"], redis.port());
        env.insert("SWITCHBOARD_REDIS_URL".into(), url);
        env.insert("SWITCHBOARD_LISTEN".into(), "127.0.0.1:0".into());
        env.insert("SWITCHBOARD_ADMIN_LISTEN".into(), "127.0.0.1:0".into());
        nodes.push(Node::start(&g.service, &env).await);
    }
    for (g, n) in topology.gateways.iter().zip(&nodes) {
        eventually(
            &format!("{} ready", g.service),
            Duration::from_secs(10),
            || async { support::admin_get(n.0.admin, "/ready").await.0 == 200 },
        )
        .await;
        assert!(
            healthcheck_passes(g, n.0.admin).await,
            "{}: the compose healthcheck {:?} fails on a ready node",
            g.service,
            g.healthcheck
        );
    }
    // The healthcheck really reads the status: the Socket.IO listener has no /ready.
    assert!(
        !healthcheck_passes(&topology.gateways[0], nodes[0].0.addr).await,
        "the compose healthcheck passes where /ready does not answer 200"
    );

    // Official socket.io clients on every node, one room, one publish crossing the cluster.
    let c = ClientDriver::spawn().await;
    let names = ["a", "b", "c"];
    for (name, n) in names.iter().zip(&nodes) {
        c.connect(name, &format!("http://{}", n.0.addr), "/").await;
        let ack = c.emit_with_ack(name, "join", json!(["r"]), 5000).await;
        assert_eq!(ack[0]["ok"], json!(true), "{name} join: {ack}");
    }
    let data = json!({"text": "hello from sb-1", "n": 1});
    let ack = c
        .emit_with_ack(
            "a",
            "publish",
            json!([{"to": "r", "event": "chat", "data": data}]),
            5000,
        )
        .await;
    assert_eq!(ack[0]["ok"], json!(true), "publish: {ack}");
    for (name, (g, n)) in names
        .iter()
        .zip(topology.gateways.iter().zip(&nodes))
        .skip(1)
    {
        let got = c.wait(name, "chat", 1, 5000).await;
        assert_eq!(
            got[0]["args"],
            json!([data]),
            "{name} on {}; its log:\n{}",
            g.service,
            n.log()
        );
    }
}
