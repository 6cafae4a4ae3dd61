//! Command-line and environment configuration, validated once into [`Config`].

use clap::Parser;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard::engine::{AllowOrigin, CorsConfig, EngineConfig};
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
    /// When set, every connection must send auth `{"token": "<value>"}`.
    #[arg(long, env = "SWITCHBOARD_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Milliseconds between server pings.
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,
    /// Milliseconds to wait for a pong.
    #[arg(long, env = "SWITCHBOARD_PING_TIMEOUT_MS", default_value_t = 20_000)]
    pub ping_timeout_ms: u64,
    /// Milliseconds a connection may take to join a namespace.
    #[arg(long, env = "SWITCHBOARD_CONNECT_TIMEOUT_MS", default_value_t = 45_000)]
    pub connect_timeout_ms: u64,
    /// Largest message or polling body in bytes (both transports).
    #[arg(long, env = "SWITCHBOARD_MAX_PAYLOAD", default_value_t = 1_000_000)]
    pub max_payload: usize,
    /// Outbound queue cap per connection in bytes; a client past it is disconnected as slow.
    #[arg(long, env = "SWITCHBOARD_MAX_QUEUE_BYTES", default_value_t = 4 << 20)]
    pub max_queue_bytes: usize,
    /// Allowed browser origins, comma separated; `*` allows any. Unset: no CORS headers.
    #[arg(long, env = "SWITCHBOARD_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Most simultaneous connections; more wait in the accept queue.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Listen backlog.
    #[arg(long, env = "SWITCHBOARD_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,
    /// Most rooms one socket may be in (its own id room excluded).
    #[arg(long, env = "SWITCHBOARD_MAX_ROOMS_PER_SOCKET", default_value_t = 1000)]
    pub max_rooms_per_socket: usize,
    /// Longest room name in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_ROOM_NAME", default_value_t = 256)]
    pub max_room_name: usize,
    /// Seconds to drain connections on SIGTERM before exiting.
    #[arg(long, env = "SWITCHBOARD_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    pub drain_timeout_secs: u64,
    /// Redis URL (`redis://[:password@]host:port[/db]`): joins the cluster on that Redis.
    /// Unset: a single node.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Redis wire: `classic` (Node's createAdapter, works with @socket.io/redis-emitter) or
    /// `sharded` (Node's createShardedAdapter, SPUBLISH/SSUBSCRIBE, Redis >= 7).
    #[arg(long, env = "SWITCHBOARD_ADAPTER_MODE", default_value = "classic")]
    pub adapter_mode: String,
    /// Sharded wire: which rooms get their own channel, `static`, `dynamic` or
    /// `dynamic-private` (Node's subscriptionMode; the same on every node).
    #[arg(
        long,
        env = "SWITCHBOARD_SHARDED_SUBSCRIPTION_MODE",
        default_value = "dynamic"
    )]
    pub sharded_subscription_mode: String,
    /// This node's id in the cluster (must differ between nodes). Default: random.
    #[arg(long, env = "SWITCHBOARD_NODE_ID")]
    pub node_id: Option<String>,
    /// Channel prefix on Redis (Node's `key`), shared by every node of the cluster.
    #[arg(long, env = "SWITCHBOARD_REDIS_KEY", default_value = "socket.io")]
    pub redis_key: String,
    /// Milliseconds a cluster request (fetch sockets, all rooms, server-side acks) waits for
    /// the other nodes.
    #[arg(long, env = "SWITCHBOARD_REQUESTS_TIMEOUT_MS", default_value_t = 5_000)]
    pub requests_timeout_ms: u64,
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
        .collect();
    let mut unknown: Vec<String> = vars
        .into_iter()
        .filter(|k| k.starts_with("SWITCHBOARD_") && !known.contains(k))
        .collect();
    unknown.sort();
    unknown
}

/// Relay limits.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// Most rooms per socket.
    pub max_rooms_per_socket: usize,
    /// Longest room name.
    pub max_room_name: usize,
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
    /// Required auth token.
    pub auth_token: Option<String>,
    /// Server options.
    pub server: ServerConfig,
    /// Connection cap.
    pub max_connections: usize,
    /// Backlog.
    pub backlog: u32,
    /// Relay limits.
    pub relay: RelayLimits,
    /// Drain deadline.
    pub drain_timeout: Duration,
    /// Redis adapter settings; `None` for a single node.
    pub redis: Option<switchboard_redis::RedisAdapterConfig>,
}

impl Args {
    /// Checks the arguments; the error says what to change.
    pub fn validate(self) -> Result<Config, String> {
        let mut namespaces = vec!["/".to_owned()];
        for ns in self.namespaces {
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
        if self.auth_token.as_deref() == Some("") {
            return Err("--auth-token is empty: give a secret or leave it unset".into());
        }
        if self.ping_interval_ms == 0 || self.ping_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(
                "--ping-interval-ms, --ping-timeout-ms and --connect-timeout-ms must be above 0"
                    .into(),
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
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            ping_timeout: Duration::from_millis(self.ping_timeout_ms),
            max_payload: self.max_payload,
            max_queue_bytes: self.max_queue_bytes,
            cors,
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
        let redis = match redis_url {
            None => {
                if node_id.is_some() {
                    return Err(
                        "--node-id needs --redis-url: a node id only matters in a cluster".into(),
                    );
                }
                None
            }
            Some(url) => {
                let mut r = switchboard_redis::RedisAdapterConfig::new(url);
                r.mode = mode;
                r.subscription_mode = subscription_mode;
                r.node_id = node_id;
                r.key = self.redis_key;
                r.requests_timeout = Duration::from_millis(self.requests_timeout_ms);
                r.validate().map_err(|e| {
                    let flag = match e.field {
                        "url" => "--redis-url",
                        "node_id" => "--node-id",
                        "key" => "--redis-key",
                        "requests_timeout" => "--requests-timeout-ms",
                        other => other,
                    };
                    format!("{flag}: {}", e.reason)
                })?;
                Some(r)
            }
        };
        Ok(Config {
            listen: self.listen,
            admin_listen: self.admin_listen,
            namespaces,
            auth_token: self.auth_token,
            server: ServerConfig {
                engine,
                connect_timeout: Duration::from_millis(self.connect_timeout_ms),
                ..ServerConfig::default()
            },
            max_connections: self.max_connections.max(1),
            backlog: self.backlog.max(1),
            relay: RelayLimits {
                max_rooms_per_socket: self.max_rooms_per_socket,
                max_room_name: self.max_room_name,
            },
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            redis,
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
            (&["--redis-url", "rediss://h:6380"][..], "TLS"),
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
