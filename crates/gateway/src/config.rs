//! Command-line and environment configuration, validated once into [`Config`].

use crate::auth::{AuthMode, JwtVerifier};
use crate::policy::PublishScope;
use crate::relay::RelayConfig;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchboard::engine::{AllowOrigin, CorsConfig, EngineConfig, RateLimit};
use switchboard::ServerConfig;

/// One Switchboard gateway node: Socket.IO v4 on `/socket.io/` with built-in relay events.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Args {
    /// Address for Socket.IO clients.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Address of the admin endpoints (/metrics, /live, /ready).
    #[arg(
        long,
        env = "SWITCHBOARD_ADMIN_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub admin_listen: SocketAddr,
    /// Extra namespaces served with the relay events (repeatable), besides `/`.
    #[arg(
        long = "namespace",
        env = "SWITCHBOARD_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// When set, every connection must send auth `{"token": "<value>"}` (one shared secret;
    /// see the --jwt-* options for per-user tokens).
    #[arg(long, env = "SWITCHBOARD_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// HS256 secret: every connection presents a JWT signed with it, in auth `{"token"}` or
    /// `Authorization: Bearer`.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file of the RSA (RS256...) or EC (ES256/ES384) public key that signs the JWTs.
    #[arg(long, env = "SWITCHBOARD_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS file (JSON) of the RSA/EC keys that sign the JWTs, chosen by `kid`.
    #[arg(long, env = "SWITCHBOARD_JWKS_FILE", value_name = "FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` claim of the JWTs.
    #[arg(long, env = "SWITCHBOARD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim of the JWTs.
    #[arg(long, env = "SWITCHBOARD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on the JWTs' `exp` and `nbf`.
    #[arg(long, env = "SWITCHBOARD_JWT_LEEWAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,
    /// Glob patterns of rooms clients may join (repeatable or comma separated). Unset (and no
    /// `rooms` claim in the token): every room except socket-id and `user:` rooms.
    #[arg(long, env = "SWITCHBOARD_ALLOW_JOIN", value_delimiter = ',')]
    pub allow_join: Vec<String>,
    /// Glob patterns of rooms clients may publish to (repeatable or comma separated).
    #[arg(long, env = "SWITCHBOARD_ALLOW_PUBLISH", value_delimiter = ',')]
    pub allow_publish: Vec<String>,
    /// Where `publish` may reach: `joined` (rooms the socket is in), `allowed` (rooms its
    /// patterns allow) or `any` (any room or the whole namespace: trusted clients only).
    #[arg(
        long,
        env = "SWITCHBOARD_PUBLISH_SCOPE",
        value_enum,
        default_value = "joined"
    )]
    pub publish_scope: PublishScope,
    /// Time between server pings (e.g. 25s; a bare number is milliseconds).
    #[arg(long, alias = "ping-interval-ms", env = "SWITCHBOARD_PING_INTERVAL", default_value = "25s", value_parser = crate::config_file::duration_ms)]
    pub ping_interval: Duration,
    /// Time to wait for a pong (a bare number is milliseconds).
    #[arg(long, alias = "ping-timeout-ms", env = "SWITCHBOARD_PING_TIMEOUT", default_value = "20s", value_parser = crate::config_file::duration_ms)]
    pub ping_timeout: Duration,
    /// Time a connection may take to join a namespace (a bare number is milliseconds).
    #[arg(long, alias = "connect-timeout-ms", env = "SWITCHBOARD_CONNECT_TIMEOUT", default_value = "45s", value_parser = crate::config_file::duration_ms)]
    pub connect_timeout: Duration,
    /// Largest message or polling body in bytes (both transports).
    #[arg(long, env = "SWITCHBOARD_MAX_PAYLOAD", default_value_t = 1_000_000)]
    pub max_payload: usize,
    /// Outbound queue cap per connection in bytes; a client past it is disconnected as slow.
    #[arg(long, env = "SWITCHBOARD_MAX_QUEUE_BYTES", default_value_t = 4 << 20)]
    pub max_queue_bytes: usize,
    /// Allowed browser origins, comma separated; `*` allows any. Unset: no CORS headers.
    #[arg(long, env = "SWITCHBOARD_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Most Engine.IO sessions at once (WebSocket and polling, each for its whole life);
    /// handshakes past it get HTTP 503.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Most sessions at once from one client address (HTTP 429 past it). Unset: no limit.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Handshakes per second from one client address (token bucket; HTTP 429 past it).
    /// Unset: no limit.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKES_PER_SEC_PER_IP")]
    pub handshakes_per_sec_per_ip: Option<f64>,
    /// Burst of the per-address handshake rate. Default: twice the rate.
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_BURST")]
    pub handshake_burst: Option<u32>,
    /// Events per second one socket may send (token bucket): excess events get an error ack
    /// `rate_limited`, and a socket that keeps flooding is disconnected. Unset: no limit.
    #[arg(long, env = "SWITCHBOARD_MAX_EVENTS_PER_SEC")]
    pub max_events_per_sec: Option<f64>,
    /// Burst of the per-socket event rate. Default: twice the rate.
    #[arg(long, env = "SWITCHBOARD_MAX_EVENTS_BURST")]
    pub max_events_burst: Option<u32>,
    /// Most binary attachments in one packet; a client sending more is disconnected.
    #[arg(long, env = "SWITCHBOARD_MAX_ATTACHMENTS", default_value_t = 10)]
    pub max_attachments: usize,
    /// Socket.IO packet encoding of every client: `default` (socket.io-parser) or `msgpack`
    /// (socket.io-msgpack-parser). A client with the other parser is disconnected.
    #[arg(long, env = "SWITCHBOARD_PARSER", default_value = "default", value_parser = ["default", "msgpack"])]
    pub parser: String,
    /// How long a polling POST body may take to arrive (HTTP 408 past it).
    #[arg(long, env = "SWITCHBOARD_POLLING_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub polling_body_timeout: Duration,
    /// Proxy address or CIDR whose `X-Forwarded-For` is believed (repeatable or comma
    /// separated): it then gives the client address for the per-address limits and the
    /// handshake. Unset: the TCP peer is the client.
    #[arg(
        long = "trusted-proxy",
        env = "SWITCHBOARD_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// PEM certificate chain: serve TLS (https/wss) on --listen. Needs --tls-key.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Listen backlog.
    #[arg(long, env = "SWITCHBOARD_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,
    /// Most rooms one socket may be in (its own id room excluded).
    #[arg(long, env = "SWITCHBOARD_MAX_ROOMS_PER_SOCKET", default_value_t = 1000)]
    pub max_rooms_per_socket: usize,
    /// Longest room name in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_ROOM_NAME", default_value_t = 256)]
    pub max_room_name: usize,
    /// Time to drain connections on SIGTERM before exiting (a bare number is seconds).
    #[arg(long, alias = "drain-timeout-secs", env = "SWITCHBOARD_DRAIN_TIMEOUT", default_value = "30s", value_parser = crate::config_file::duration_secs)]
    pub drain_timeout: Duration,
    /// Connection state recovery: a client whose connection dropped gets its socket id, rooms
    /// and the packets it missed back if it returns within this window (`2m`; a bare number
    /// is seconds). `0`: off. With --redis-url the state is kept in Redis, so any node can
    /// recover it.
    #[arg(long, env = "SWITCHBOARD_RECOVERY_WINDOW", default_value = "0", value_parser = crate::config_file::duration_secs)]
    pub recovery_window: Duration,
    /// Redis URL (`redis://[[user]:password@]host:port[/db]`, `rediss://` for TLS; `user` is
    /// a Redis ACL user): joins the cluster on that Redis. Unset: a single node.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Redis wire: `classic` (Node's createAdapter, works with @socket.io/redis-emitter) or
    /// `sharded` (Node's createShardedAdapter, SPUBLISH/SSUBSCRIBE, Redis >= 7).
    #[arg(long, env = "SWITCHBOARD_ADAPTER_MODE", default_value = "classic", value_parser = ["classic", "sharded"])]
    pub adapter_mode: String,
    /// Sharded wire: which rooms get their own channel, `static`, `dynamic` or
    /// `dynamic-private` (Node's subscriptionMode; the same on every node).
    #[arg(
        long,
        env = "SWITCHBOARD_SHARDED_SUBSCRIPTION_MODE",
        default_value = "dynamic",
        value_parser = ["static", "dynamic", "dynamic-private"]
    )]
    pub sharded_subscription_mode: String,
    /// This node's id in the cluster (must differ between nodes). Default: random.
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Channel prefix on Redis (Node's `key`), shared by every node of the cluster.
    #[arg(long, env = "SWITCHBOARD_REDIS_KEY", default_value = "socket.io")]
    pub redis_key: String,
    /// Serves the files of this directory at `/` on the Socket.IO listener (e.g. the browser
    /// demo in examples/chat-web). Unset: only /socket.io/ answers.
    #[arg(long, env = "SWITCHBOARD_STATIC_DIR")]
    pub static_dir: Option<std::path::PathBuf>,
    /// Time a cluster request (fetch sockets, all rooms, server-side acks) waits for the
    /// other nodes (a bare number is milliseconds).
    #[arg(long, alias = "requests-timeout-ms", env = "SWITCHBOARD_REQUESTS_TIMEOUT", default_value = "5s", value_parser = crate::config_file::duration_ms)]
    pub requests_timeout: Duration,
    /// Backend API, proxy and log options.
    #[command(flatten)]
    pub backend: crate::backend_config::BackendArgs,
    /// `--config` and `--print-config`.
    #[command(flatten)]
    pub file: crate::config_file::FileArgs,
    // Redis TLS (issue 12).
    /// PEM file of the CA that signed the Redis server's certificate (`rediss://` with a
    /// private CA). Default: the system's trust store.
    #[arg(long, env = "SWITCHBOARD_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    // Redis Cluster (issue 12).
    /// Seed node of a Redis Cluster (`redis://[[user]:password@]host:port`, `rediss://` for
    /// TLS); repeat (or separate with commas) for more seeds. Instead of --redis-url.
    #[arg(
        long,
        env = "SWITCHBOARD_REDIS_CLUSTER_URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub redis_cluster_url: Vec<String>,
    /// --redis-url is a seed node of a Redis Cluster.
    #[arg(long, env = "SWITCHBOARD_REDIS_CLUSTER")]
    pub redis_cluster: bool,
}

/// `SWITCHBOARD_*` variables in `vars` that no option reads (typos such as
/// `SWITCHBOARD_REDIS_ULR` would otherwise pass silently).
pub fn unknown_env_vars(vars: impl IntoIterator<Item = String>) -> Vec<String> {
    use clap::CommandFactory;
    let cmd = Args::command();
    let known: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .chain(
            crate::config_file::LEGACY_ENV
                .iter()
                .map(|(v, _)| (*v).to_owned()),
        )
        .collect();
    let mut unknown: Vec<String> = vars
        .into_iter()
        .filter(|k| k.starts_with("SWITCHBOARD_") && !known.contains(k))
        .collect();
    unknown.sort();
    unknown
}

/// Patterns as given, trimmed, empty entries dropped (`SWITCHBOARD_ALLOW_JOIN=` means none).
fn patterns(given: &[String]) -> Vec<String> {
    given
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Relay limits.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// Most rooms per socket.
    pub max_rooms_per_socket: usize,
    /// Longest room name.
    pub max_room_name: usize,
}

/// TLS on the public listener (the acceptor holds the key: never printed).
#[derive(Clone)]
pub struct Tls(pub switchboard::engine::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(<acceptor>)")
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Socket.IO listen address.
    pub listen: SocketAddr,
    /// Admin listen address.
    pub admin_listen: SocketAddr,
    /// Namespaces served (`/` first).
    pub namespaces: Vec<String>,
    /// Server options.
    pub server: ServerConfig,
    /// Cap on TCP connections being served as HTTP (sessions are capped in the engine).
    pub max_http_connections: usize,
    /// Backlog.
    pub backlog: u32,
    /// What the relay enforces.
    pub relay: RelayConfig,
    /// TLS on the public listener.
    pub tls: Option<Tls>,
    /// Drain deadline.
    pub drain_timeout: Duration,
    /// Redis adapter settings; `None` for a single node.
    pub redis: Option<switchboard_redis::RedisAdapterConfig>,
    /// Directory served at `/`, when set.
    pub static_dir: Option<std::path::PathBuf>,
    /// Backend API and proxy.
    pub backend: crate::backend_config::BackendConfig,
}

impl Args {
    /// The authentication the flags ask for; key files are read here.
    fn auth_mode(&self) -> Result<AuthMode, String> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let chosen = [
            given(&self.auth_token).is_some(),
            given(&self.jwt_secret).is_some(),
            self.jwt_public_key.is_some(),
            self.jwks_file.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if chosen > 1 {
            return Err(
                "--auth-token, --jwt-secret, --jwt-public-key and --jwks-file exclude each other: choose one"
                    .into(),
            );
        }
        if self.auth_token.is_some() && given(&self.auth_token).is_none() {
            return Err("--auth-token is empty: give a secret or leave it unset".into());
        }
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
        };
        let verifier = if let Some(secret) = given(&self.jwt_secret) {
            if secret.len() < 16 {
                return Err(
                    "--jwt-secret: use at least 16 bytes (32 random bytes recommended)".into(),
                );
            }
            JwtVerifier::from_secret(secret.as_bytes())
        } else if let Some(path) = &self.jwt_public_key {
            JwtVerifier::from_public_pem(&read("--jwt-public-key", path)?)
                .map_err(|e| format!("--jwt-public-key {}: {e}", path.display()))?
        } else if let Some(path) = &self.jwks_file {
            JwtVerifier::from_jwks(&read("--jwks-file", path)?)
                .map_err(|e| format!("--jwks-file {}: {e}", path.display()))?
        } else {
            if self.jwt_issuer.is_some() || self.jwt_audience.is_some() {
                return Err(
                    "--jwt-issuer and --jwt-audience need a key: --jwt-secret, --jwt-public-key or --jwks-file"
                        .into(),
                );
            }
            return Ok(match given(&self.auth_token) {
                Some(token) => AuthMode::SharedToken(token.to_owned()),
                None => AuthMode::Anonymous,
            });
        };
        let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        Ok(AuthMode::Jwt(Arc::new(
            verifier
                .issuer(nonempty(&self.jwt_issuer))
                .audience(nonempty(&self.jwt_audience))
                .leeway(self.jwt_leeway),
        )))
    }

    /// Checks the arguments; the error says what to change.
    pub fn validate(self) -> Result<Config, String> {
        let backend = self.backend.clone().validate()?;
        let mut namespaces = vec!["/".to_owned()];
        for ns in &self.namespaces {
            let ns = ns.trim();
            if ns.is_empty() {
                continue;
            }
            if !ns.starts_with('/') || ns.contains(',') || ns.len() > 128 {
                return Err(format!(
                    "--namespace {ns:?}: a namespace starts with '/', has no ',' and is at most 128 bytes"
                ));
            }
            if !namespaces.iter().any(|n| n == ns) {
                namespaces.push(ns.to_owned());
            }
        }
        let auth = self.auth_mode()?;
        let rate = |flag: &str, rate: Option<f64>, burst: Option<u32>| match rate {
            None if burst.is_some() => Err(format!("{flag}: a burst needs its rate")),
            None => Ok(None),
            Some(r) if !(r > 0.0 && r.is_finite()) => Err(format!("{flag}: must be above 0")),
            Some(r) => {
                let burst = burst.unwrap_or_else(|| ((r * 2.0).ceil() as u32).max(1));
                if burst == 0 {
                    return Err(format!("{flag}: the burst must be above 0"));
                }
                Ok(Some(RateLimit {
                    per_second: r,
                    burst,
                }))
            }
        };
        let handshake_rate = rate(
            "--handshakes-per-sec-per-ip",
            self.handshakes_per_sec_per_ip,
            self.handshake_burst,
        )?;
        let event_rate = rate(
            "--max-events-per-sec",
            self.max_events_per_sec,
            self.max_events_burst,
        )?;
        if self.max_connections == 0 || self.max_connections_per_ip == Some(0) {
            return Err("--max-connections and --max-connections-per-ip must be above 0".into());
        }
        if self.max_attachments == 0 {
            return Err("--max-attachments must be above 0".into());
        }
        let parser: switchboard::Parser =
            self.parser.parse().map_err(|e| format!("--parser: {e}"))?;
        if self.polling_body_timeout.is_zero() {
            return Err("--polling-body-timeout must be above 0".into());
        }
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!(
                            "--trusted-proxy {p:?}: give an address or a CIDR such as 10.0.0.0/8"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (flag, given) in [
            ("--allow-join", &self.allow_join),
            ("--allow-publish", &self.allow_publish),
        ] {
            crate::policy::compile(&patterns(given)).map_err(|e| format!("{flag} {e}"))?;
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(Tls(switchboard::engine::tls_acceptor(cert, key)
                .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?)),
            _ => return Err("--tls-cert and --tls-key go together: give both or neither".into()),
        };
        if self.ping_interval.is_zero()
            || self.ping_timeout.is_zero()
            || self.connect_timeout.is_zero()
        {
            return Err(
                "--ping-interval, --ping-timeout and --connect-timeout must be above 0".into(),
            );
        }
        if self.max_rooms_per_socket == 0 || self.max_room_name == 0 {
            return Err("--max-rooms-per-socket and --max-room-name must be above 0".into());
        }
        // Entries are trimmed, and empty ones (`SWITCHBOARD_CORS_ORIGIN=` from a compose file
        // whose variable is unset) count as absent.
        let cors_origin: Vec<String> = self
            .cors_origin
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        let cors = if cors_origin.is_empty() {
            None
        } else if cors_origin.iter().any(|o| o == "*") {
            Some(CorsConfig::any())
        } else {
            Some(CorsConfig {
                origin: AllowOrigin::List(cors_origin),
                credentials: true,
                max_age: None,
            })
        };
        let engine = EngineConfig {
            path: "/socket.io/".into(),
            ping_interval: self.ping_interval,
            ping_timeout: self.ping_timeout,
            max_payload: self.max_payload,
            max_queue_bytes: self.max_queue_bytes,
            cors,
            max_sessions: self.max_connections,
            max_sessions_per_ip: self.max_connections_per_ip,
            handshake_rate_per_ip: handshake_rate,
            trusted_proxies,
            post_body_timeout: self.polling_body_timeout,
            ..EngineConfig::default()
        }
        .validate()
        .map_err(|e| format!("{e}: adjust --max-payload / --max-queue-bytes"))?;
        let mode: switchboard_redis::Mode = self
            .adapter_mode
            .parse()
            .map_err(|e| format!("--adapter-mode: {e}"))?;
        let subscription_mode: switchboard_redis::SubscriptionMode = self
            .sharded_subscription_mode
            .parse()
            .map_err(|e| format!("--sharded-subscription-mode: {e}"))?;
        // An empty value (a compose variable left unset) means "not set".
        let node_id = self.node_id.filter(|v| !v.trim().is_empty());
        let redis_url = self.redis_url.filter(|v| !v.trim().is_empty());
        // Redis Cluster: seeds from --redis-cluster-url, or --redis-url with --redis-cluster.
        let mut seeds: Vec<String> = self
            .redis_cluster_url
            .iter()
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        let url_flag = if seeds.is_empty() {
            "--redis-url"
        } else {
            "--redis-cluster-url"
        };
        let redis_cluster = self.redis_cluster || !seeds.is_empty();
        let redis_url = match (redis_url, seeds.is_empty()) {
            (Some(_), false) => return Err("--redis-url and --redis-cluster-url: give the seed nodes of a Redis Cluster with --redis-cluster-url only (or --redis-url with --redis-cluster)".into()),
            (None, false) => Some(seeds.remove(0)),
            (None, true) if self.redis_cluster => return Err("--redis-cluster needs --redis-url (a seed node of the Redis Cluster)".into()),
            (url, true) => url,
        };
        let redis = match redis_url {
            None => {
                if node_id.is_some() {
                    return Err(
                        "--node-id needs --redis-url: a node id only matters in a cluster".into(),
                    );
                }
                if self.redis_ca_file.is_some() {
                    return Err("--redis-ca-file needs --redis-url (a rediss:// URL)".into());
                }
                None
            }
            Some(url) => {
                let mut r = switchboard_redis::RedisAdapterConfig::new(url);
                r.mode = mode;
                r.subscription_mode = subscription_mode;
                r.node_id = node_id;
                r.key = self.redis_key;
                r.requests_timeout = self.requests_timeout;
                r.ca_file = self.redis_ca_file;
                r.cluster = redis_cluster;
                r.cluster_seeds = seeds;
                r.validate().map_err(|e| {
                    let flag = match e.field {
                        "url" => url_flag,
                        "cluster_seeds" => "--redis-cluster-url",
                        "node_id" => "--node-id",
                        "key" => "--redis-key",
                        "requests_timeout" => "--requests-timeout",
                        "ca_file" => "--redis-ca-file",
                        other => other,
                    };
                    format!("{flag}: {}", e.reason)
                })?;
                Some(r)
            }
        };
        // An empty value (a compose variable left unset) means "not set".
        if self.recovery_window > Duration::from_secs(24 * 3600) {
            return Err(format!(
                "--recovery-window {}: at most 24h (sessions and missed packets are kept that long); use e.g. 2m, or 0 to turn recovery off",
                humantime::format_duration(self.recovery_window)
            ));
        }
        let static_dir = self.static_dir.filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = &static_dir {
            if !dir.is_dir() {
                return Err(format!(
                    "--static-dir {}: not a directory; give the folder to serve (e.g. examples/chat-web) or leave it unset",
                    dir.display()
                ));
            }
        }
        Ok(Config {
            static_dir,
            listen: self.listen,
            admin_listen: self.admin_listen,
            namespaces,
            server: ServerConfig {
                engine,
                connect_timeout: self.connect_timeout,
                max_attachments: self.max_attachments,
                connection_state_recovery: (!self.recovery_window.is_zero()).then(|| {
                    switchboard::ConnectionStateRecovery {
                        max_disconnection_duration: self.recovery_window,
                        // The token is checked again (and the backend's connect hook asked):
                        // a recovered socket keeps no rights its credentials no longer give.
                        skip_middlewares: false,
                        ..Default::default()
                    }
                }),
                parser,
                ..ServerConfig::default()
            },
            // A polling session may use two connections at once (a waiting GET and a POST).
            max_http_connections: self.max_connections.saturating_mul(2).saturating_add(64),
            backlog: self.backlog.max(1),
            relay: RelayConfig {
                limits: RelayLimits {
                    max_rooms_per_socket: self.max_rooms_per_socket,
                    max_room_name: self.max_room_name,
                },
                auth,
                allow_join: patterns(&self.allow_join),
                allow_publish: patterns(&self.allow_publish),
                scope: self.publish_scope,
                event_rate,
            },
            tls,
            drain_timeout: self.drain_timeout,
            redis,
            backend,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut full = vec!["switchboard"];
        full.extend_from_slice(args);
        Args::try_parse_from(full)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn static_dir_must_be_a_directory() {
        let err = parse(&["--static-dir", "/nonexistent/switchboard-web"]).expect_err("refused");
        assert!(err.contains("--static-dir"), "{err}");
        let err = parse(&["--static-dir", "Cargo.toml"]).expect_err("a file is refused");
        assert!(err.contains("not a directory"), "{err}");
        let c = parse(&["--static-dir", "."]).expect("valid");
        assert_eq!(c.static_dir.as_deref(), Some(std::path::Path::new(".")));
        assert!(parse(&[]).expect("valid").static_dir.is_none());
    }

    #[test]
    fn redis_cluster_seeds() {
        let c = parse(&[
            "--redis-cluster-url",
            "redis://10.0.0.1:7000",
            "--redis-cluster-url",
            "redis://10.0.0.2:7000,redis://10.0.0.3:7000",
            "--adapter-mode",
            "sharded",
        ])
        .expect("valid");
        let r = c.redis.expect("cluster mode");
        assert!(r.cluster);
        assert_eq!(r.url, "redis://10.0.0.1:7000");
        assert_eq!(r.cluster_seeds.len(), 2);
        let c = parse(&["--redis-url", "rediss://u:p@h:7000", "--redis-cluster"]).expect("valid");
        let r = c.redis.expect("cluster mode");
        assert!(r.cluster && r.cluster_seeds.is_empty());
        assert!(
            !parse(&["--redis-url", "redis://h"])
                .expect("valid")
                .redis
                .expect("redis")
                .cluster
        );
    }

    #[test]
    fn cluster_flags_build_the_adapter_config() {
        let c = parse(&[
            "--redis-url",
            "redis://:pw@127.0.0.1:7000/1",
            "--adapter-mode",
            "sharded",
            "--sharded-subscription-mode",
            "static",
            "--node-id",
            "gw-1",
            "--redis-key",
            "chat",
            "--requests-timeout-ms",
            "1500",
        ])
        .expect("valid");
        let r = c.redis.expect("cluster mode");
        assert_eq!(r.mode, switchboard_redis::Mode::Sharded);
        assert_eq!(
            r.subscription_mode,
            switchboard_redis::SubscriptionMode::Static
        );
        assert_eq!(r.node_id.as_deref(), Some("gw-1"));
        assert_eq!(r.key, "chat");
        assert_eq!(r.requests_timeout, Duration::from_millis(1500));
        assert!(parse(&[]).expect("valid").redis.is_none());
    }

    #[test]
    fn empty_values_count_as_unset_and_origins_are_trimmed() {
        let c = parse(&[
            "--node-id",
            "",
            "--redis-url",
            "",
            "--cors-origin",
            "https://a.com, https://b.com,",
        ])
        .expect("valid");
        assert!(c.redis.is_none());
        let cors = c.server.engine.cors.expect("cors on");
        assert_eq!(
            cors.origin,
            AllowOrigin::List(vec!["https://a.com".into(), "https://b.com".into()])
        );
        assert!(parse(&["--cors-origin", ""])
            .expect("valid")
            .server
            .engine
            .cors
            .is_none());
    }

    #[test]
    fn unknown_switchboard_variables_are_reported() {
        let vars = [
            "SWITCHBOARD_REDIS_URL",
            "SWITCHBOARD_REDIS_ULR",
            "HOME",
            "SWITCHBOARD_NODE_ID",
        ];
        assert_eq!(
            unknown_env_vars(vars.iter().map(|s| s.to_string())),
            vec!["SWITCHBOARD_REDIS_ULR".to_owned()]
        );
    }

    #[test]
    fn bad_cluster_flags_say_what_to_change() {
        for (args, hint) in [
            (
                &["--redis-url", "rediss://h:6380/#insecure"][..],
                "#insecure",
            ),
            (&["--redis-ca-file", "/etc/hosts"][..], "needs --redis-url"),
            (
                &["--redis-cluster"][..],
                "--redis-cluster needs --redis-url",
            ),
            (
                &[
                    "--redis-url",
                    "redis://h",
                    "--redis-cluster-url",
                    "redis://h",
                ][..],
                "give the seed nodes",
            ),
            (
                &[
                    "--redis-cluster-url",
                    "redis://a:1",
                    "--redis-cluster-url",
                    "redis://b:2/3",
                ][..],
                "--redis-cluster-url",
            ),
            (
                &["--redis-url", "redis://h", "--redis-ca-file", "/etc/hosts"][..],
                "--redis-ca-file: a CA file only applies to TLS",
            ),
            (&["--redis-url", "http://h"][..], "redis://"),
            (&["--node-id", "a"][..], "needs --redis-url"),
            (
                &["--redis-url", "redis://h", "--node-id", "a#b"][..],
                "without '#'",
            ),
            (
                &["--redis-url", "redis://h", "--adapter-mode", "cluster"][..],
                "classic",
            ),
            (
                &[
                    "--redis-url",
                    "redis://h",
                    "--sharded-subscription-mode",
                    "x",
                ][..],
                "dynamic-private",
            ),
            (
                &["--redis-url", "redis://h", "--redis-key", ""][..],
                "--redis-key",
            ),
        ] {
            let err = parse(args).expect_err("invalid");
            assert!(err.contains(hint), "{args:?}: {err}");
        }
    }
}
