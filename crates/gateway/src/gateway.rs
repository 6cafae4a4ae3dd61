//! Runs one node: Socket.IO listener, admin listener, and the drain on SIGTERM/SIGINT.

use crate::api::{self, Admin, Api, ApiMetrics};
use crate::config::Config;
use crate::metrics::GatewayMetrics;
use crate::proxy::{self, BackendClient, ProxyMetrics};
use crate::relay::{self, RelayMetrics};
use crate::web::Public;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard::engine::{self, ServeConfig};
use switchboard::Server;
use switchboard_redis::RedisAdapterFactory;
use tokio_util::sync::CancellationToken;

/// Connections closed per batch while draining.
const DRAIN_BATCH: usize = 500;
/// Pause between drain batches.
const DRAIN_PAUSE: Duration = Duration::from_millis(20);
/// How often the drain checks what is left.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// Least time between two `drain progress` log lines.
const DRAIN_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A running gateway node.
pub struct Gateway {
    config: Config,
    io: Server,
    registry: Registry,
    api: Option<Arc<Api>>,
}

impl Gateway {
    /// Builds the node from a validated config.
    pub fn new(config: Config) -> Result<Self, String> {
        let mut registry = Registry::default();
        let mut node_id: Arc<str> = Arc::from("standalone");
        let io = match &config.redis {
            None => Server::new(config.server.clone()).map_err(|e| e.to_string())?,
            Some(redis) => {
                let factory = RedisAdapterFactory::new(redis.clone())?;
                node_id = Arc::from(factory.node_id());
                factory.metrics().register(&mut registry);
                tracing::info!(
                    url = %switchboard_redis::redact_url(&redis.url),
                    mode = ?redis.mode,
                    node_id = factory.node_id(),
                    "cluster mode: Redis adapter (not ready until Redis answers)"
                );
                Server::with_adapter(config.server.clone(), Arc::new(factory))
                    .map_err(|e| e.to_string())?
            }
        };
        // Every series is `switchboard_*`; the Redis adapter names its own that way already.
        let own = registry.sub_registry_with_prefix("switchboard");
        io.register_metrics(own);
        let relay_metrics = Arc::new(RelayMetrics::default());
        relay_metrics.register(own);
        let gateway_metrics = Arc::new(GatewayMetrics::default());
        gateway_metrics.register(own);
        let backend = config.backend.proxy.clone().map(|proxy| {
            let metrics = Arc::new(ProxyMetrics::default());
            metrics.register(own);
            tracing::info!(url = %proxy.url, timeout = ?proxy.timeout, "backend event proxy on");
            Arc::new(BackendClient::new(proxy, metrics))
        });
        // With a backend, its connect hook decides who may connect.
        if matches!(config.relay.auth, crate::auth::AuthMode::Anonymous) && backend.is_none() {
            tracing::warn!(
                "no authentication configured: anyone who reaches --listen may connect; set --jwt-secret, --jwt-public-key, --jwks-file, --auth-token or --proxy-url"
            );
        }
        for name in &config.namespaces {
            relay::install(&io.of(name), config.relay.clone(), relay_metrics.clone())?;
            if let Some(backend) = &backend {
                proxy::install(&io.of(name), backend.clone());
            }
            api::tag_node(&io.of(name), node_id.clone());
            gateway_metrics.install(&io.of(name));
        }
        let api = config.backend.api_token.clone().map(|token| {
            let metrics = Arc::new(ApiMetrics::default());
            metrics.register(own);
            Arc::new(Api {
                io: io.clone(),
                namespaces: config.namespaces.clone(),
                token,
                metrics,
            })
        });
        Ok(Self {
            config,
            io,
            registry,
            api,
        })
    }

    /// Serves until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let listener = engine::bind(self.config.listen, self.config.backlog).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {}: {e}; pick a free address with --listen",
                    self.config.listen
                ),
            )
        })?;
        let admin_listener = engine::bind(self.config.admin_listen, 128).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {}: {e}; pick a free address with --admin-listen",
                    self.config.admin_listen
                ),
            )
        })?;
        let addr = listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let draining = Arc::new(AtomicBool::new(false));
        let admin = Admin::new(
            Arc::new(self.registry),
            self.io.clone(),
            draining.clone(),
            self.api.clone(),
            self.config.backend.api_max_body,
        );
        let stop_accepting = CancellationToken::new();
        let stop_admin = CancellationToken::new();
        let serve_config = ServeConfig {
            backlog: self.config.backlog,
            max_connections: self.config.max_http_connections,
            tls: self.config.tls.as_ref().map(|t| t.0.clone()),
            ..ServeConfig::default()
        };
        if let Some(dir) = &self.config.static_dir {
            tracing::info!(dir = %dir.display(), "serving static files at /");
        }
        let public = Public {
            engine: self.io.engine(),
            static_dir: self.config.static_dir.clone(),
        };
        let sio = tokio::spawn(engine::serve(
            listener,
            public,
            serve_config,
            stop_accepting.clone(),
        ));
        let admin_task = tokio::spawn(engine::serve(
            admin_listener,
            admin,
            ServeConfig::default(),
            stop_admin.clone(),
        ));
        tracing::info!(%addr, namespaces = ?self.config.namespaces, "socket.io listening");
        tracing::info!(addr = %admin_addr, "admin listening");

        shutdown.cancelled().await;
        draining.store(true, Ordering::Release);
        let engine = self.io.engine();
        let total = engine.session_count();
        tracing::info!(
            connections = total,
            deadline_secs = self.config.drain_timeout.as_secs(),
            "draining"
        );
        stop_accepting.cancel();
        self.io.close(DRAIN_BATCH, DRAIN_PAUSE).await;
        let deadline = tokio::time::Instant::now() + self.config.drain_timeout;
        let mut last_progress = tokio::time::Instant::now();
        loop {
            // A closed polling session whose client is not polling has no transport to flush.
            engine.release_idle_closed();
            tokio::task::yield_now().await;
            let left = engine.session_count();
            if left == 0 {
                break;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                tracing::warn!(
                    left,
                    "drain deadline reached; exiting with connections open"
                );
                break;
            }
            if now.duration_since(last_progress) >= DRAIN_PROGRESS_EVERY {
                tracing::info!(left, "drain progress");
                last_progress = now;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        stop_admin.cancel();
        let _ = sio.await;
        let _ = admin_task.await;
        tracing::info!("stopped");
        Ok(())
    }
}
