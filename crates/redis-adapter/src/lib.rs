//! Redis pub/sub adapter for Switchboard.
//!
//! Speaks the wire of Node's `@socket.io/redis-adapter` 8, in its classic form (`PUBLISH` and
//! `PSUBSCRIBE`, also what `@socket.io/redis-emitter` 5 sends) or its sharded form
//! (`createShardedAdapter`: `SPUBLISH`/`SSUBSCRIBE`, Redis ≥ 7), so Switchboard nodes, Node.js
//! Socket.IO servers and emitter backends can share one Redis.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use switchboard_redis::{RedisAdapterConfig, RedisAdapterFactory};
//!
//! let redis = RedisAdapterFactory::new(RedisAdapterConfig::new("redis://127.0.0.1:6379"))?;
//! let io = switchboard::Server::with_adapter(Default::default(), Arc::new(redis.clone()))?;
//! io.to("room1").emit("hello", "world")?; // reaches room1 on every node
//! # Ok(()) }
//! ```

mod bus;
mod classic;
mod cluster;
pub mod codec;
mod metrics;
mod recovery;
mod sharded;

pub use metrics::{LossReason, RedisMetrics};

use cluster::RedisAdapter;
use std::sync::Arc;
use std::time::Duration;
use switchboard::{Adapter, AdapterFactory, LocalNamespace};

/// `url` with its password hidden, for logs: `redis://user:***@host:port` (or
/// `redis://***@host:port` when the URL names no user).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) if !user.is_empty() => {
                    format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..])
                }
                _ => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
            }
        }
        _ => url.to_owned(),
    }
}

/// Which of Node's two Redis wires to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `createAdapter`: `PUBLISH`/`PSUBSCRIBE`; interoperates with `@socket.io/redis-emitter`.
    #[default]
    Classic,
    /// `createShardedAdapter`: `SPUBLISH`/`SSUBSCRIBE`, Redis ≥ 7.
    Sharded,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "classic" => Ok(Self::Classic),
            "sharded" => Ok(Self::Sharded),
            other => Err(format!(
                "unknown adapter mode {other:?}: use \"classic\" or \"sharded\""
            )),
        }
    }
}

/// Which rooms get their own channel on the sharded wire (Node's `subscriptionMode`); every
/// node of a cluster must use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// Two channels per namespace; every broadcast goes to every node.
    Static,
    /// Plus one channel per room that is not a socket id, subscribed by the nodes that have
    /// members in it (Node's default).
    #[default]
    Dynamic,
    /// Plus one channel per room, socket-id rooms included.
    DynamicPrivate,
}

impl std::str::FromStr for SubscriptionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "static" => Ok(Self::Static),
            "dynamic" => Ok(Self::Dynamic),
            "dynamic-private" => Ok(Self::DynamicPrivate),
            other => Err(format!(
                "unknown subscription mode {other:?}: use \"static\", \"dynamic\" or \"dynamic-private\""
            )),
        }
    }
}

/// Settings of the Redis adapter. Its `Debug` hides the password of the URL.
#[derive(Clone)]
pub struct RedisAdapterConfig {
    /// `redis://[[user]:password@]host:port[/db]`, or `rediss://` for TLS; `user` is a Redis
    /// ACL user (`default` when absent).
    pub url: String,
    /// PEM file with the CA certificate(s) that signed the server's certificate, for a
    /// `rediss://` URL to a Redis with a private CA. Default: the system's trust store.
    pub ca_file: Option<std::path::PathBuf>,
    /// Redis Cluster mode: `url` (and `cluster_seeds`) are seed nodes of a Redis Cluster;
    /// each sharded channel is subscribed and published on the master owning its slot, and
    /// failovers and slot migrations are followed. Default false (one Redis server).
    pub cluster: bool,
    /// Redis Cluster mode: more seed node URLs, tried after `url` when reading the slot map.
    pub cluster_seeds: Vec<String>,
    /// Wire format.
    pub mode: Mode,
    /// Sharded wire: which rooms get their own channel.
    pub subscription_mode: SubscriptionMode,
    /// This node's id on the wire (the adapter `uid`); must differ between nodes. Default:
    /// random, 6 URL-safe characters (classic) or 16 hex digits (sharded), as Node's.
    pub node_id: Option<String>,
    /// Channel prefix (Node's `key` / `channelPrefix`), default `socket.io`.
    pub key: String,
    /// How long a request to the other nodes waits for their replies (Node's
    /// `requestsTimeout`), default 5 s.
    pub requests_timeout: Duration,
    /// How long Redis may take to acknowledge a publish before the messages are counted lost
    /// and the connection replaced, default 2 s.
    pub publish_timeout: Duration,
    /// Connection (and subscription command) timeout, default 2 s.
    pub connect_timeout: Duration,
    /// Interval of the liveness probe; three intervals without its echo force a
    /// resubscription. Default 2 s.
    pub probe_interval: Duration,
    /// Longest wait between reconnection attempts, default 5 s.
    pub max_backoff: Duration,
    /// Messages that may wait for the publishing connection before new ones are dropped
    /// (and counted), default 65 536.
    pub publish_queue: usize,
    /// Classic wire: send replies to the requester's own response channel (Node's
    /// `publishOnSpecificResponseChannel`), default false as in Node.
    pub publish_on_specific_response_channel: bool,
}

impl RedisAdapterConfig {
    /// Defaults, with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            cluster: false,
            cluster_seeds: Vec::new(),
            mode: Mode::Classic,
            subscription_mode: SubscriptionMode::Dynamic,
            node_id: None,
            key: "socket.io".into(),
            requests_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            probe_interval: Duration::from_secs(2),
            max_backoff: Duration::from_secs(5),
            publish_queue: 65_536,
            publish_on_specific_response_channel: false,
        }
    }
}

impl std::fmt::Debug for RedisAdapterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdapterConfig")
            .field("url", &redact_url(&self.url))
            .field("ca_file", &self.ca_file)
            .field("cluster", &self.cluster)
            .field(
                "cluster_seeds",
                &self
                    .cluster_seeds
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("mode", &self.mode)
            .field("subscription_mode", &self.subscription_mode)
            .field("node_id", &self.node_id)
            .field("key", &self.key)
            .field("requests_timeout", &self.requests_timeout)
            .field("publish_timeout", &self.publish_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("probe_interval", &self.probe_interval)
            .field("max_backoff", &self.max_backoff)
            .field("publish_queue", &self.publish_queue)
            .field(
                "publish_on_specific_response_channel",
                &self.publish_on_specific_response_channel,
            )
            .finish()
    }
}

/// A setting of [`RedisAdapterConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidConfig {
    /// The field of [`RedisAdapterConfig`] at fault (`url`, `node_id`, `key`, ...).
    pub field: &'static str,
    /// What is wrong and what to use instead.
    pub reason: String,
}

impl RedisAdapterConfig {
    /// Checks every setting; the error names the field and what to use instead.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let bad = |field, reason: String| Err(InvalidConfig { field, reason });
        let url = &self.url;
        let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok || redis::IntoConnectionInfo::into_connection_info(url.as_str()).is_err() {
            return bad(
                "url",
                format!(
                    "{:?} is not a Redis URL: use redis://[[user]:password@]host:port[/db], rediss://... for TLS (or unix:///path/to/redis.sock)",
                    redact_url(url)
                ),
            );
        }
        let tls = url.starts_with("rediss://");
        if tls && url.ends_with("#insecure") {
            return bad(
                "url",
                "#insecure (no certificate check) is not supported: give the CA that signed the server's certificate with the CA file option".into(),
            );
        }
        if let Some(path) = &self.ca_file {
            if !tls {
                return bad(
                    "ca_file",
                    "a CA file only applies to TLS: use a rediss:// URL".into(),
                );
            }
            match std::fs::read(path) {
                Err(e) => return bad("ca_file", format!("cannot read {}: {e}", path.display())),
                Ok(pem) if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => {
                    return bad(
                        "ca_file",
                        format!(
                            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                            path.display()
                        ),
                    )
                }
                Ok(_) => {}
            }
        }
        if !self.cluster_seeds.is_empty() && !self.cluster {
            return bad(
                "cluster_seeds",
                "seed nodes only apply to Redis Cluster mode: set cluster".into(),
            );
        }
        if self.cluster {
            for seed in std::iter::once(url).chain(&self.cluster_seeds) {
                let info = redis::IntoConnectionInfo::into_connection_info(seed.as_str());
                let tcp = seed.starts_with("redis://") || seed.starts_with("rediss://");
                let db0 = info.as_ref().is_ok_and(|i| i.redis_settings().db() == 0);
                if !tcp || !db0 {
                    return bad(
                        if seed == url { "url" } else { "cluster_seeds" },
                        format!(
                            "{:?}: a Redis Cluster seed is redis://[[user]:password@]host:port (or rediss://), without a database number",
                            redact_url(seed)
                        ),
                    );
                }
            }
        }
        if let Some(id) = &self.node_id {
            if id.is_empty() || id.contains('#') || id.len() > 64 {
                return bad(
                    "node_id",
                    format!("{id:?}: use 1 to 64 characters without '#'"),
                );
            }
        }
        if self.key.is_empty() || self.key.contains('#') {
            return bad("key", "must be non-empty and without '#'".into());
        }
        for (field, d) in [
            ("requests_timeout", self.requests_timeout),
            ("publish_timeout", self.publish_timeout),
            ("connect_timeout", self.connect_timeout),
            ("probe_interval", self.probe_interval),
            ("max_backoff", self.max_backoff),
        ] {
            if d.is_zero() {
                return bad(field, "must be above 0".into());
            }
        }
        if self.publish_queue == 0 {
            return bad("publish_queue", "must be above 0".into());
        }
        Ok(())
    }
}

/// Creates the Redis adapter of each namespace; all namespaces share one pair of connections.
#[derive(Clone)]
pub struct RedisAdapterFactory {
    bus: Arc<bus::Bus>,
}

impl std::fmt::Debug for RedisAdapterFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdapterFactory")
            .field("url", &redact_url(&self.bus.shared.config.url))
            .field("mode", &self.bus.shared.config.mode)
            .field("node_id", &self.bus.shared.uid)
            .finish()
    }
}

impl RedisAdapterFactory {
    /// Starts connecting to Redis in the background; the node reports not ready until both
    /// connections are up. Fails only on an invalid configuration. Call inside a tokio
    /// runtime.
    pub fn new(config: RedisAdapterConfig) -> Result<Self, String> {
        config.validate().map_err(|e| e.to_string())?;
        let uid = config.node_id.clone().unwrap_or_else(|| match config.mode {
            Mode::Classic => cluster::uid2(6),
            Mode::Sharded => cluster::hex_id(8),
        });
        Ok(Self {
            bus: bus::Bus::start(config, uid)?,
        })
    }

    /// This node's id on the wire.
    pub fn node_id(&self) -> &str {
        &self.bus.shared.uid
    }

    /// The configuration in force.
    pub fn config(&self) -> &RedisAdapterConfig {
        &self.bus.shared.config
    }

    /// True while both connections are up and subscribed.
    pub fn is_ready(&self) -> bool {
        self.bus.is_ready()
    }

    /// Waits until the node is ready, at most `timeout`; returns whether it is.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// The adapter's metrics.
    pub fn metrics(&self) -> &Arc<RedisMetrics> {
        &self.bus.shared.metrics
    }
}

impl AdapterFactory for RedisAdapterFactory {
    fn create(&self, local: LocalNamespace) -> Arc<dyn Adapter> {
        let shared = &self.bus.shared;
        let cfg = &shared.config;
        let nsp = local.namespace().to_owned();
        match cfg.mode {
            Mode::Classic => Arc::new(RedisAdapter::start(
                classic::Classic::new(
                    &cfg.key,
                    &nsp,
                    &shared.uid,
                    cfg.publish_on_specific_response_channel,
                ),
                local,
                self.bus.clone(),
                || cluster::uid2(6),
            )),
            Mode::Sharded => Arc::new(RedisAdapter::start(
                sharded::Sharded::new(&cfg.key, &nsp, &shared.uid, cfg.subscription_mode),
                local,
                self.bus.clone(),
                || cluster::hex_id(8),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_modes_parse() {
        assert_eq!(
            redact_url("redis://:s3cret@10.0.0.1:6379/2"),
            "redis://***@10.0.0.1:6379/2"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("rediss://alice:p@ss@h:6380"),
            "rediss://alice:***@h:6380"
        );
        assert_eq!("sharded".parse::<Mode>(), Ok(Mode::Sharded));
        assert!("cluster".parse::<Mode>().is_err());
        assert_eq!(
            "dynamic-private".parse::<SubscriptionMode>(),
            Ok(SubscriptionMode::DynamicPrivate)
        );
        assert!(RedisAdapterConfig::new("redis://x").node_id.is_none());
        let debug = format!(
            "{:?}",
            RedisAdapterConfig::new("rediss://app:s3cret@h:6380")
        );
        assert!(
            debug.contains("app:***@h") && !debug.contains("s3cret"),
            "{debug}"
        );
    }

    #[test]
    fn validation_names_the_field() {
        let ok = RedisAdapterConfig::new("redis://127.0.0.1:6379/1");
        assert_eq!(ok.validate(), Ok(()));
        let field = |c: RedisAdapterConfig| c.validate().map_err(|e| e.field);
        assert_eq!(
            field(RedisAdapterConfig::new("rediss://u:p@h:6380")),
            Ok(())
        );
        assert_eq!(
            field(RedisAdapterConfig::new("rediss://h:6380/#insecure")),
            Err("url")
        );
        let mut c = RedisAdapterConfig::new("redis://h:6379");
        c.ca_file = Some("/etc/hostname".into());
        assert_eq!(field(c.clone()), Err("ca_file"));
        c.url = "rediss://h:6380".into();
        assert_eq!(field(c.clone()), Err("ca_file"));
        c.ca_file = Some("/nonexistent/ca.pem".into());
        assert_eq!(field(c), Err("ca_file"));
        assert_eq!(field(RedisAdapterConfig::new("http://h")), Err("url"));
        let mut c = ok.clone();
        c.node_id = Some("a#b".into());
        assert_eq!(field(c), Err("node_id"));
        let mut c = ok.clone();
        c.key = String::new();
        assert_eq!(field(c), Err("key"));
        let mut c = ok;
        c.requests_timeout = std::time::Duration::ZERO;
        assert_eq!(field(c), Err("requests_timeout"));
    }
}
