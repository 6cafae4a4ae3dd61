//! Engine options, validated once and shared by every session.

use crate::admission::{AllowRequest, RateLimit};
use ipnet::IpNet;
use std::time::Duration;

/// Which browser origins may reach the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowOrigin {
    /// `Access-Control-Allow-Origin: *`; every origin passes.
    Any,
    /// Reflect the request's `Origin` back (needed with credentials); every origin passes.
    Mirror,
    /// Only these exact origins; others get HTTP 403 on polling and on the WebSocket upgrade.
    List(Vec<String>),
}

/// CORS options for the long-polling transport (and the `Origin` allowlist for WebSocket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Allowed origins.
    pub origin: AllowOrigin,
    /// Adds `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// Preflight cache lifetime, `Access-Control-Max-Age`.
    pub max_age: Option<Duration>,
}

impl CorsConfig {
    /// CORS for every origin, as the official test suites' servers use.
    pub fn any() -> Self {
        Self {
            origin: AllowOrigin::Any,
            credentials: false,
            max_age: None,
        }
    }
}

/// Engine.IO server options. Defaults match engine.io 6.6.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// URL path prefix, with leading and trailing `/`. Default `/engine.io/`.
    pub path: String,
    /// Interval between server pings. Default 25 s.
    pub ping_interval: Duration,
    /// How long to wait for a pong after a ping. Default 20 s.
    pub ping_timeout: Duration,
    /// How long an upgrade to WebSocket may take. Default 10 s.
    pub upgrade_timeout: Duration,
    /// Largest message or polling body in bytes, on both transports. Default 1,000,000.
    pub max_payload: usize,
    /// Most packets accepted in one polling body. Default 1024.
    pub max_packets_per_payload: usize,
    /// Outbound queue cap per session in bytes; past it the session is closed as a slow
    /// consumer. Default 4 MiB.
    pub max_queue_bytes: usize,
    /// Outbound queue cap per session in queued items. Default 4096.
    pub max_queue_items: usize,
    /// How long bytes written to a WebSocket may wait with no progress (the peer reads
    /// nothing) before the session is closed. Default 10 s.
    pub write_timeout: Duration,
    /// How long a closed polling session waits for the client's last GET. Default 30 s.
    pub close_timeout: Duration,
    /// Allow the polling transport. Default true.
    pub allow_polling: bool,
    /// Allow the WebSocket transport. Default true.
    pub allow_websocket: bool,
    /// Offer upgrades from polling to WebSocket. Default true.
    pub allow_upgrades: bool,
    /// CORS; `None` (default) sends no CORS headers and refuses preflights.
    pub cors: Option<CorsConfig>,
    /// Most bytes one WebSocket read takes, in bytes (clamped to 256..=16 KiB). The buffer is
    /// on the stack of the read only; a connection keeps none between reads. Default 4 KiB.
    pub ws_read_buffer: usize,
    /// Most sessions open at once, on both transports, each counted from its handshake until
    /// it is gone; a handshake past it gets HTTP 503. Default 100,000.
    pub max_sessions: usize,
    /// Most sessions open at once from one client address (HTTP 429 past it). Default off.
    pub max_sessions_per_ip: Option<usize>,
    /// Handshakes per second from one client address, as a token bucket (HTTP 429 past it).
    /// Default off.
    pub handshake_rate_per_ip: Option<RateLimit>,
    /// Proxies whose `X-Forwarded-For` is believed for the client address (and so for the
    /// per-address limits and the handshake's address). Default none.
    pub trusted_proxies: Vec<IpNet>,
    /// How long a polling POST body may take to arrive (HTTP 408 past it). Default 10 s.
    pub post_body_timeout: Duration,
    /// The application's admission callback for handshakes (Node's `allowRequest`). Default
    /// none: every handshake within the limits above opens a session.
    pub allow_request: Option<AllowRequest>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            path: "/engine.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            max_packets_per_payload: 1024,
            max_queue_bytes: 4 << 20,
            max_queue_items: 4096,
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(30),
            allow_polling: true,
            allow_websocket: true,
            allow_upgrades: true,
            cors: None,
            ws_read_buffer: 4096,
            max_sessions: 100_000,
            max_sessions_per_ip: None,
            handshake_rate_per_ip: None,
            trusted_proxies: Vec::new(),
            post_body_timeout: Duration::from_secs(10),
            allow_request: None,
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid engine config: {0}")]
pub struct ConfigError(pub String);

impl EngineConfig {
    /// Normalises the path and checks the values; call once before building an engine.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        let trimmed = self.path.trim_matches('/');
        self.path = if trimmed.is_empty() {
            "/".into()
        } else {
            format!("/{trimmed}/")
        };
        if self.ping_interval.is_zero() || self.ping_timeout.is_zero() {
            return Err(ConfigError(
                "ping interval and timeout must be above zero".into(),
            ));
        }
        if self.max_payload < 16 {
            return Err(ConfigError("max payload must be at least 16 bytes".into()));
        }
        if self.max_queue_items == 0 || self.max_queue_bytes < self.max_payload {
            return Err(ConfigError(
                "the outbound queue must hold at least one max-size payload".into(),
            ));
        }
        if !self.allow_polling && !self.allow_websocket {
            return Err(ConfigError("at least one transport must be allowed".into()));
        }
        if self.max_sessions == 0 || self.max_sessions_per_ip == Some(0) {
            return Err(ConfigError("session caps must be above zero".into()));
        }
        if let Some(rate) = self.handshake_rate_per_ip {
            if !(rate.per_second > 0.0 && rate.per_second.is_finite()) || rate.burst == 0 {
                return Err(ConfigError(
                    "the handshake rate and its burst must be above zero".into(),
                ));
            }
        }
        if self.post_body_timeout.is_zero() {
            return Err(ConfigError(
                "the POST body timeout must be above zero".into(),
            ));
        }
        if self.max_packets_per_payload == 0 {
            return Err(ConfigError(
                "max packets per payload must be above zero".into(),
            ));
        }
        Ok(self)
    }
}
