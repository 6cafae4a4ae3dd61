//! `docker-compose.yml`, `deploy/Dockerfile`, `deploy/haproxy.cfg`, `deploy/prometheus.yml` and
//! `deploy/grafana/`, checked without Docker.
//!
//! The compose file is parsed and its topology checked: one Redis without persistence; one
//! `gateway` service built from `deploy/Dockerfile` that can be scaled (`--scale gateway=N`: no
//! container name, no fixed host port, no node id so each replica picks a random one), configured
//! only through the `SWITCHBOARD_*` variables that `switchboard --help` lists, listening where
//! the other containers reach it, stopped with a grace period longer than the drain, and
//! health-checked on `/ready`; HAProxy in front with the gateways found by DNS
//! (`server-template`), health checks on the admin port's `/ready` and long-polling affinity by
//! session id or cookie; Prometheus finding every replica by DNS; Grafana provisioned with that
//! Prometheus and the dashboard. HAProxy's and Prometheus's own checkers (`haproxy -c`,
//! `promtool check config`) read the config files. Then a real gateway gets traffic from official
//! clients and every metric the dashboard queries must be in its `/metrics`, and the image's
//! HEALTHCHECK command must pass on it. `crates/gateway/tests/local_cluster.rs` runs the same
//! topology as processes.

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

const COMPOSE_FILE: &str = "docker-compose.yml";
const HAPROXY_CFG: &str = "deploy/haproxy.cfg";
const PROMETHEUS_YML: &str = "deploy/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/dashboards/switchboard.json";
const DATASOURCE: &str = "deploy/grafana/provisioning/datasources/prometheus.yml";
const DASHBOARD_PROVIDER: &str = "deploy/grafana/provisioning/dashboards/switchboard.yml";
const DOCKERFILE: &str = "deploy/Dockerfile";
/// Environment variables a gateway service may set besides the gateway's own flags.
const OTHER_ENV: &[&str] = &["RUST_LOG", "RUST_BACKTRACE"];
/// What Docker waits after SIGTERM before SIGKILL when `stop_grace_period` is not set.
const DOCKER_DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The gateway's default `--drain-timeout`, in seconds.
const DEFAULT_DRAIN_SECS: u64 = 30;

// ---------------------------------------------------------------------------------------------
// Reading the files
// ---------------------------------------------------------------------------------------------

fn read(rel: &str) -> String {
    let path = workspace_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Relative paths in the compose file start here.
fn compose_dir() -> PathBuf {
    workspace_root()
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
    /// The final stage's `HEALTHCHECK ... CMD [...]` command (exec form).
    healthcheck: Option<Vec<String>>,
    /// Destinations of the final stage's `COPY` instructions.
    copies: Vec<String>,
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
                f.healthcheck = None;
                f.copies.clear();
            }
            "COPY" => f
                .copies
                .extend(rest.split_whitespace().last().map(str::to_owned)),
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
            "HEALTHCHECK" => {
                f.healthcheck = rest
                    .find("CMD ")
                    .and_then(|i| serde_json::from_str(rest[i + 4..].trim()).ok());
            }
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
    match &f.healthcheck {
        Some(cmd) if cmd.join(" ").contains("/ready") && cmd.join(" ").contains("SWITCHBOARD_ADMIN_LISTEN") => {}
        _ => errs.push(format!(
            "{DOCKERFILE}: add a HEALTHCHECK CMD [...] (exec form) asking /ready on the port of SWITCHBOARD_ADMIN_LISTEN"
        )),
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

/// The gateway service as its containers see it.
#[derive(Debug, Clone)]
struct Gateway {
    service: String,
    /// The container's environment: the image's `ENV`, overridden by `environment:`.
    env: BTreeMap<String, String>,
    /// The container port of `SWITCHBOARD_LISTEN`.
    listen_port: u16,
    /// The container port of `SWITCHBOARD_ADMIN_LISTEN`.
    admin_port: u16,
    /// The healthcheck command (the service's, else the image's), compose's `$$` resolved.
    healthcheck: Vec<String>,
}

#[derive(Debug)]
struct Topology {
    gateway: Gateway,
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

/// The services whose image name (without registry and tag) is `name`.
fn services_with_image<'a>(services: &'a [(String, &'a Value)], name: &str) -> Vec<&'a str> {
    services
        .iter()
        .filter(|(_, svc)| {
            svc.get("image").and_then(scalar).is_some_and(|i| {
                i.split(':').next().unwrap_or_default().rsplit('/').next() == Some(name)
            })
        })
        .map(|(n, _)| n.as_str())
        .collect()
}

/// The one service with image `name`, or an error.
fn one_service<'a>(
    services: &'a [(String, &'a Value)],
    name: &str,
    errs: &mut Vec<String>,
) -> Option<(&'a str, &'a Value)> {
    match services_with_image(services, name).as_slice() {
        [one] => services
            .iter()
            .find(|(n, _)| n == one)
            .map(|(n, v)| (n.as_str(), *v)),
        found => {
            errs.push(format!(
                "expected exactly one service with a {name} image, found {found:?}"
            ));
            None
        }
    }
}

/// The host side of a bind mount of `target` in `svc`, resolved from the compose directory.
fn mount_source(name: &str, svc: &Value, target: &str, errs: &mut Vec<String>) -> Option<PathBuf> {
    let found = svc
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(scalar)
        .find_map(|v| {
            let mut parts = v.split(':');
            let source = parts.next()?.to_owned();
            (parts.next()? == target).then_some(source)
        });
    match found {
        Some(source) if source.starts_with('.') => {
            let path = compose_dir().join(&source);
            if path.exists() {
                Some(path)
            } else {
                errs.push(format!("{name}: mounts {source}, which does not exist"));
                None
            }
        }
        _ => {
            errs.push(format!(
                "{name}: mount a file of the repository (./deploy/...) at {target}"
            ));
            None
        }
    }
}

/// Checks the compose file and the files it mounts against the image (`image` is what the
/// Dockerfile sets) and the gateway's flags; returns the gateway, or every problem found.
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
    let Some((redis_name, redis_svc)) = one_service(&services, "redis", &mut errs) else {
        return Err(errs);
    };
    let redis = (redis_name, check_redis(redis_name, redis_svc, &mut errs));
    let built: Vec<&(String, &Value)> = services
        .iter()
        .filter(|(_, svc)| svc.get("build").is_some())
        .collect();
    let [(gateway_name, gateway_svc)] = built.as_slice() else {
        errs.push(format!(
            "expected one gateway service built from {DOCKERFILE} (scaled with --scale), found {:?}",
            built.iter().map(|(n, _)| n).collect::<Vec<_>>()
        ));
        return Err(errs);
    };
    let gateway = check_gateway(gateway_name, gateway_svc, redis, image, known, &mut errs);
    check_host_ports(&services, &mut errs);
    if let Some(g) = &gateway {
        if let Some((name, svc)) = one_service(&services, "haproxy", &mut errs) {
            if let Some(path) =
                mount_source(name, svc, "/usr/local/etc/haproxy/haproxy.cfg", &mut errs)
            {
                let cfg = std::fs::read_to_string(&path).unwrap_or_default();
                errs.extend(
                    check_haproxy(&cfg, g)
                        .into_iter()
                        .map(|e| format!("{name}: {e}")),
                );
                let published: Vec<u16> = svc
                    .get("ports")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| parse_port(p).ok().map(|p| p.target))
                    .collect();
                match haproxy_bind(&cfg, "socketio") {
                    Some(port) if published.contains(&port) => {}
                    port => errs.push(format!(
                        "{name}: publish the Socket.IO frontend's port {port:?} (ports target {published:?})"
                    )),
                }
            }
        }
        if let Some((name, svc)) = one_service(&services, "prometheus", &mut errs) {
            if let Some(path) = mount_source(name, svc, "/etc/prometheus/prometheus.yml", &mut errs)
            {
                let yml = std::fs::read_to_string(&path).unwrap_or_default();
                errs.extend(
                    check_prometheus(&yml, g)
                        .into_iter()
                        .map(|e| format!("{name}: {e}")),
                );
            }
            check_grafana(&services, name, &mut errs);
        }
    }
    match gateway {
        Some(gateway) if errs.is_empty() => Ok(Topology { gateway }),
        _ => Err(errs),
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

/// The service with `build`: built from deploy/Dockerfile, scalable, configured by known
/// variables only, reachable, in the cluster on `redis` (service name, port), stopped gently,
/// health-checked.
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
    if svc.get("container_name").is_some() {
        errs.push(format!(
            "{name}: no container_name: replicas need their own names (--scale {name}=N)"
        ));
    }
    for p in svc
        .get("ports")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        if let Ok(Port {
            published: Some(host),
            ..
        }) = parse_port(p)
        {
            errs.push(format!(
                "{name}: no fixed host port ({host}): a second replica could not bind it; clients come through the balancer"
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
    if env.contains_key("SWITCHBOARD_NODE_ID") {
        errs.push(format!(
            "{name}: do not set SWITCHBOARD_NODE_ID: every replica would share it and drop the others' messages (unset, each picks a random id)"
        ));
    }
    if let Some(dir) = env.get("SWITCHBOARD_STATIC_DIR") {
        if !image.copies.iter().any(|c| c.trim_end_matches('/') == dir) {
            errs.push(format!(
                "{name}: SWITCHBOARD_STATIC_DIR={dir} is not a directory the image copies ({:?})",
                image.copies
            ));
        }
    }
    let listen = container_listener(name, &env, "SWITCHBOARD_LISTEN");
    let admin = container_listener(name, &env, "SWITCHBOARD_ADMIN_LISTEN");
    let (listen_port, admin_port) = match (listen, admin) {
        (Ok(l), Ok(a)) => (Some(l), Some(a)),
        (l, a) => {
            errs.extend(l.err());
            errs.extend(a.err());
            (None, None)
        }
    };
    match env.get("SWITCHBOARD_REDIS_URL").map(|u| parse_redis_url(u)) {
        None => errs.push(format!(
            "{name}: set SWITCHBOARD_REDIS_URL, or each replica runs alone"
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
        .get("SWITCHBOARD_DRAIN_TIMEOUT")
        .and_then(|s| parse_duration(s))
        .map(|d| d.as_secs())
        .unwrap_or(DEFAULT_DRAIN_SECS);
    let grace = match svc.get("stop_grace_period").and_then(scalar) {
        None => Some(DOCKER_DEFAULT_GRACE),
        Some(g) => parse_duration(&g),
    };
    match grace {
        None => errs.push(format!("{name}: stop_grace_period is not a duration")),
        Some(g) if g <= Duration::from_secs(drain) => errs.push(format!(
            "{name}: stop_grace_period {g:?} is not longer than the {drain} s drain: docker stop would SIGKILL draining gateways"
        )),
        Some(_) => {}
    }

    // The healthcheck: the service's (exec form or CMD-SHELL), else the image's.
    let hc = svc.get("healthcheck");
    if hc.and_then(|h| h.get("disable")).and_then(Value::as_bool) == Some(true) {
        errs.push(format!(
            "{name}: keep the healthcheck: a gateway that is not ready must show as unhealthy"
        ));
    }
    let test: Vec<String> = hc
        .and_then(|h| h.get("test"))
        .and_then(Value::as_sequence)
        .map(|items| items.iter().filter_map(scalar).collect())
        .unwrap_or_default();
    let healthcheck = match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest
            .iter()
            .map(|a| unescape_dollars(a))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| {
                errs.push(format!("{name}: healthcheck {e}"));
                Vec::new()
            }),
        Some((kind, [script])) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".into(), "-c".into(), script.clone()]
        }
        Some(_) => {
            errs.push(format!(
                "{name}: healthcheck test must be [\"CMD\", ...] or [\"CMD-SHELL\", \"...\"]"
            ));
            Vec::new()
        }
        None => image.healthcheck.clone().unwrap_or_default(),
    };
    if healthcheck.is_empty() {
        errs.push(format!(
            "{name}: no healthcheck: add one on /ready (the image's HEALTHCHECK or the service's)"
        ));
    }
    Some(Gateway {
        service: name.to_owned(),
        env,
        listen_port: listen_port?,
        admin_port: admin_port?,
        healthcheck,
    })
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

/// HAProxy's config as `section header → its lines` (comments dropped, lines trimmed).
fn haproxy_sections(cfg: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in cfg.lines() {
        let body = line.split('#').next().unwrap_or_default();
        if body.trim().is_empty() {
            continue;
        }
        if !body.starts_with(char::is_whitespace) {
            out.push((body.trim().to_owned(), Vec::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push(body.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

/// The port of `bind :PORT` (or `bind ADDR:PORT`) in `frontend NAME`.
fn haproxy_bind(cfg: &str, frontend: &str) -> Option<u16> {
    let sections = haproxy_sections(cfg);
    let (_, lines) = sections
        .iter()
        .find(|(h, _)| h == &format!("frontend {frontend}"))?;
    lines
        .iter()
        .find_map(|l| l.strip_prefix("bind "))
        .and_then(|b| b.split_whitespace().next())
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
}

/// HAProxy in front of `g`: DNS discovery of every replica, `/ready` health checks on the admin
/// port, WebSocket-friendly timeouts, long-polling affinity by sid or cookie.
fn check_haproxy(cfg: &str, g: &Gateway) -> Vec<String> {
    let mut errs = Vec::new();
    let sections = haproxy_sections(cfg);
    let Some((_, backend)) = sections.iter().find(|(h, lines)| {
        h.starts_with("backend ")
            && lines
                .iter()
                .any(|l| l.starts_with("server-template ") || l.starts_with("server "))
    }) else {
        return vec![format!("{HAPROXY_CFG}: no backend with servers")];
    };
    let has = |prefix: &str| backend.iter().any(|l| l.starts_with(prefix));
    let target = format!("{}:{}", g.service, g.listen_port);
    match backend.iter().find(|l| l.starts_with("server-template ")) {
        None => errs.push(format!(
            "{HAPROXY_CFG}: find the replicas by DNS: server-template NAME COUNT {target} resolvers ..."
        )),
        Some(t) => {
            let words: Vec<&str> = t.split_whitespace().collect();
            if words.get(3) != Some(&target.as_str()) {
                errs.push(format!(
                    "{HAPROXY_CFG}: server-template targets {:?}, not the gateway service {target}",
                    words.get(3)
                ));
            }
            if words.get(2).and_then(|n| n.parse::<u32>().ok()).is_none_or(|n| n < 5) {
                errs.push(format!(
                    "{HAPROXY_CFG}: server-template needs room for at least 5 replicas"
                ));
            }
            match words.iter().position(|w| *w == "resolvers") {
                None => errs.push(format!("{HAPROXY_CFG}: server-template without resolvers")),
                Some(i) => {
                    let name = words.get(i + 1).copied().unwrap_or_default();
                    let docker_dns = sections.iter().any(|(h, lines)| {
                        h == &format!("resolvers {name}")
                            && lines
                                .iter()
                                .any(|l| l.starts_with("nameserver ") && l.ends_with(" 127.0.0.11:53"))
                    });
                    if !docker_dns {
                        errs.push(format!(
                            "{HAPROXY_CFG}: resolvers {name} must ask Docker's DNS (nameserver ... 127.0.0.11:53)"
                        ));
                    }
                }
            }
        }
    }
    if !has("option httpchk GET /ready") || !has("http-check expect status 200") {
        errs.push(format!(
            "{HAPROXY_CFG}: health-check the gateways with option httpchk GET /ready and http-check expect status 200"
        ));
    }
    let checks_admin = backend.iter().any(|l| {
        (l.starts_with("default-server ") || l.starts_with("server-template "))
            && l.contains(" check")
            && l.contains(&format!(" port {}", g.admin_port))
    });
    if !checks_admin {
        errs.push(format!(
            "{HAPROXY_CFG}: /ready is on the admin port: `check ... port {}`",
            g.admin_port
        ));
    }
    if !has("stick match url_param(sid)") && !has("stick on url_param(sid)") {
        errs.push(format!(
            "{HAPROXY_CFG}: route long-polling requests by their sid (stick match url_param(sid))"
        ));
    }
    if !has("cookie ") {
        errs.push(format!(
            "{HAPROXY_CFG}: set an affinity cookie for clients that keep cookies"
        ));
    }
    if backend.iter().any(|l| l.starts_with("balance source")) {
        errs.push(format!(
            "{HAPROXY_CFG}: no affinity by client address (balance source): clients behind one NAT would share one gateway"
        ));
    }
    let defaults: Vec<&String> = sections
        .iter()
        .filter(|(h, _)| h.starts_with("defaults"))
        .flat_map(|(_, l)| l)
        .collect();
    if !defaults.iter().any(|l| l.starts_with("timeout tunnel ")) {
        errs.push(format!(
            "{HAPROXY_CFG}: set `timeout tunnel` in defaults: upgraded WebSockets live longer than a request"
        ));
    }
    errs
}

/// Prometheus scraping every replica of `g` through DNS on the admin port.
fn check_prometheus(yml: &str, g: &Gateway) -> Vec<String> {
    let doc: Value = match serde_yaml_ng::from_str(yml) {
        Ok(d) => d,
        Err(e) => return vec![format!("{PROMETHEUS_YML}: {e}")],
    };
    let found = doc
        .get("scrape_configs")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter(|job| {
            job.get("metrics_path")
                .and_then(scalar)
                .is_none_or(|p| p == "/metrics")
        })
        .flat_map(|job| {
            job.get("dns_sd_configs")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default()
        })
        .any(|sd| {
            let names: Vec<String> = sd
                .get("names")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(scalar)
                .collect();
            names.contains(&g.service)
                && sd.get("type").and_then(scalar).as_deref() == Some("A")
                && sd.get("port").and_then(scalar) == Some(g.admin_port.to_string())
        });
    if found {
        Vec::new()
    } else {
        vec![format!(
            "{PROMETHEUS_YML}: scrape /metrics of every replica: dns_sd_configs names [{}], type A, port {}",
            g.service, g.admin_port
        )]
    }
}

/// Grafana: provisioned from deploy/grafana with `prometheus` as its data source.
fn check_grafana(services: &[(String, &Value)], prometheus: &str, errs: &mut Vec<String>) {
    let Some((name, svc)) = one_service(services, "grafana", errs) else {
        return;
    };
    let mut errs_here = Vec::new();
    let provisioning = mount_source(name, svc, "/etc/grafana/provisioning", &mut errs_here);
    let provider: Value = serde_yaml_ng::from_str(&read(DASHBOARD_PROVIDER)).unwrap_or(Value::Null);
    let dashboards_at = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let dashboards = mount_source(name, svc, &dashboards_at, &mut errs_here);
    if provisioning.is_some_and(|p| !p.join("datasources").exists())
        || dashboards.is_some_and(|d| !d.join("switchboard.json").exists())
    {
        errs_here.push(format!(
            "{name}: mount deploy/grafana/provisioning and the dashboards folder its provider names"
        ));
    }
    let datasource: Value = serde_yaml_ng::from_str(&read(DATASOURCE)).unwrap_or(Value::Null);
    let url = datasource["datasources"][0]["url"]
        .as_str()
        .unwrap_or_default();
    if url != format!("http://{prometheus}:9090") {
        errs_here.push(format!(
            "{DATASOURCE}: the data source must be http://{prometheus}:9090, not {url:?}"
        ));
    }
    errs.extend(errs_here);
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
fn compose_file_and_dockerfile_describe_a_scalable_cluster() {
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
    assert_eq!(topology.gateway.service, "gateway");
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
    let env = |doc: &mut Value, key: &str, value: &str| {
        doc["services"]["gateway"]["environment"][key] = Value::from(value);
    };
    let remove = |doc: &mut Value, svc: &str, key: &str| {
        doc["services"][svc]
            .as_mapping_mut()
            .expect("a service map")
            .remove(key);
    };
    broken(
        &|d| env(d, "SWITCHBOARD_NODE_ID", "sb-1"),
        "do not set SWITCHBOARD_NODE_ID",
    );
    broken(
        &|d| env(d, "SWITCHBOARD_REDIS_ULR", "redis://redis:6379"),
        "SWITCHBOARD_REDIS_ULR is unknown",
    );
    broken(
        &|d| env(d, "SWITCHBOARD_REDIS_URL", "redis://localhost:6379"),
        "not at the redis service",
    );
    broken(
        &|d| env(d, "SWITCHBOARD_LISTEN", "127.0.0.1:3000"),
        "must listen on 0.0.0.0",
    );
    broken(
        &|d| env(d, "SWITCHBOARD_AUTH_TOKEN", "${TOKEN}"),
        "compose substitutes",
    );
    broken(
        &|d| d["services"]["gateway"]["container_name"] = Value::from("sb"),
        "no container_name",
    );
    broken(
        &|d| {
            d["services"]["gateway"]["ports"] =
                serde_yaml_ng::from_str("[\"3005:3000\"]").expect("yaml")
        },
        "no fixed host port (3005)",
    );
    broken(
        &|d| d["services"]["grafana"]["ports"][0] = Value::from("127.0.0.1:9090:3000"),
        "host port 9090 is published twice",
    );
    broken(
        &|d| remove(d, "gateway", "stop_grace_period"),
        "stop_grace_period 10s",
    );
    broken(
        &|d| {
            d["services"]["gateway"]["healthcheck"] =
                serde_yaml_ng::from_str("{disable: true}").expect("yaml")
        },
        "keep the healthcheck",
    );
    broken(
        &|d| d["services"]["gateway"]["command"] = Value::from("--node-id x"),
        "no `command`",
    );
    broken(
        &|d| d["services"]["redis"]["command"] = Value::Null,
        "--appendonly no",
    );
    broken(
        &|d| env(d, "SWITCHBOARD_STATIC_DIR", "/srv/web"),
        "SWITCHBOARD_STATIC_DIR=/srv/web is not a directory the image copies",
    );
    broken(
        &|d| remove(d, "lb", "volumes"),
        "at /usr/local/etc/haproxy/haproxy.cfg",
    );
    broken(
        &|d| d["services"]["lb"]["ports"][0] = Value::from("3000:3999"),
        "publish the Socket.IO frontend's port",
    );
    broken(
        &|d| {
            d["services"]
                .as_mapping_mut()
                .expect("services is a map")
                .remove("prometheus");
        },
        "a prometheus image",
    );
    broken(
        &|d| {
            d["services"]["prometheus"]["volumes"][0] =
                Value::from("./deploy/nope.yml:/etc/prometheus/prometheus.yml:ro")
        },
        "mounts ./deploy/nope.yml, which does not exist",
    );
    broken(
        &|d| remove(d, "grafana", "volumes"),
        "at /etc/grafana/provisioning",
    );
    broken(
        &|d| {
            let svc = d["services"]["gateway"].clone();
            d["services"]["gateway-2"] = svc;
        },
        "expected one gateway service",
    );

    // The balancer's and Prometheus's own files.
    let (topology, _) = checked_topology(&known);
    let g = &topology.gateway;
    let haproxy = read(HAPROXY_CFG);
    let edited = |from: &str, to: &str| {
        assert!(haproxy.contains(from), "{from:?} is in {HAPROXY_CFG}");
        check_haproxy(&haproxy.replace(from, to), g).join("\n")
    };
    assert!(check_haproxy(&haproxy, g).is_empty());
    assert!(edited("gateway:3000", "gw:3000").contains("not the gateway service"));
    assert!(edited("port 9464", "port 3000").contains("admin port"));
    assert!(edited("GET /ready", "GET /live").contains("GET /ready"));
    assert!(edited("stick match url_param(sid)", "").contains("by their sid"));
    assert!(edited("balance roundrobin", "balance source").contains("client address"));
    assert!(edited("127.0.0.11:53", "8.8.8.8:53").contains("Docker's DNS"));
    assert!(edited("timeout tunnel 1h", "").contains("timeout tunnel"));
    let prom = read(PROMETHEUS_YML);
    assert!(check_prometheus(&prom, g).is_empty());
    assert!(!check_prometheus(&prom.replace("names: [gateway]", "names: [gw]"), g).is_empty());
    assert!(!check_prometheus(&prom.replace("port: 9464", "port: 3000"), g).is_empty());

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
    let errs = with("HEALTHCHECK", "# HEALTHCHECK");
    assert!(errs.contains("add a HEALTHCHECK"), "{errs}");
    let errs = with("ENV SWITCHBOARD_LISTEN=", "ENV SWITCHBOARD_LISTN=");
    assert!(
        errs.contains("SWITCHBOARD_LISTN is not a variable"),
        "{errs}"
    );
}

/// Runs `tool args` and panics with its output unless it exits 0.
fn run_checker(tool: &str, args: &[&str]) {
    let out = std::process::Command::new(tool)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {tool} ({e}): install it (scripts/test.sh installs haproxy and prometheus with apt-get)")
        });
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn haproxy_and_prometheus_accept_their_config_files() {
    run_checker("haproxy", &["-c", "-f", HAPROXY_CFG]);
    run_checker("promtool", &["check", "config", PROMETHEUS_YML]);
}

// ---------------------------------------------------------------------------------------------
// A real gateway: the dashboard's metrics and the image's healthcheck
// ---------------------------------------------------------------------------------------------

/// Every metric name the dashboard's queries read (functions, label names and ranges left out).
fn dashboard_metrics(dashboard: &serde_json::Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            // Drop label matchers `{...}`, ranges `[...]` and grouping `by (...)`.
            let mut plain = String::new();
            let mut depth = 0;
            for c in expr.chars() {
                match c {
                    '{' | '[' => depth += 1,
                    '}' | ']' => depth -= 1,
                    _ if depth == 0 => plain.push(c),
                    _ => {}
                }
            }
            let plain = plain.replace("by (le)", "").replace("by (instance)", "");
            let mut rest = plain.as_str();
            while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
                rest = &rest[start..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                let word = &rest[..end];
                rest = &rest[end..];
                if !rest.trim_start().starts_with('(') {
                    names.insert(word.to_owned());
                }
            }
        }
    }
    names
}

/// Runs the gateway's healthcheck command as its container would, the admin listener being at
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
async fn dashboard_metrics_are_exported_and_the_healthcheck_reads_ready() {
    cluster_support::require_js();
    let known = known_env_keys();
    let (topology, _) = checked_topology(&known);
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    let wanted = dashboard_metrics(&dashboard);
    assert!(wanted.len() >= 8, "{DASHBOARD} queries only {wanted:?}");

    let redis = RedisServer::start().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--redis-url", &redis.url()])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let gw = support::GatewayProcess::spawn(cmd, "switchboard").await;
    eventually("gateway ready", Duration::from_secs(10), || async {
        support::admin_get(gw.admin, "/ready").await.0 == 200
    })
    .await;
    assert!(
        healthcheck_passes(&topology.gateway, gw.admin).await,
        "the image's healthcheck {:?} fails on a ready gateway",
        topology.gateway.healthcheck
    );
    assert!(
        !healthcheck_passes(&topology.gateway, gw.addr).await,
        "the image's healthcheck passes where /ready does not answer 200"
    );

    // Traffic: two official clients in one room, one publish.
    let c = ClientDriver::spawn().await;
    for name in ["a", "b"] {
        c.connect(name, &format!("http://{}", gw.addr), "/").await;
        let ack = c.emit_with_ack(name, "join", json!(["r"]), 5000).await;
        assert_eq!(ack[0]["ok"], json!(true), "{name} join: {ack}");
    }
    let ack = c
        .emit_with_ack(
            "a",
            "publish",
            json!([{"to": "r", "event": "chat", "data": "hi"}]),
            5000,
        )
        .await;
    assert_eq!(ack[0]["ok"], json!(true), "publish: {ack}");
    c.wait("b", "chat", 1, 5000).await;

    let (status, metrics) = support::admin_get(gw.admin, "/metrics").await;
    assert_eq!(status, 200);
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|m| !exported.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{DASHBOARD} queries {missing:?}, which the gateway does not export:\n{metrics}"
    );
    // The latency histograms saw the traffic.
    for count in [
        "switchboard_socketio_connect_duration_seconds_count",
        "switchboard_socketio_broadcast_duration_seconds_count",
    ] {
        let n: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(count)?.trim().parse().ok())
            .unwrap_or(0.0);
        assert!(n >= 1.0, "{count} is {n} after traffic:\n{metrics}");
    }
}
