//! The server (`io`): namespaces, the root namespace's shortcuts, and the engine it runs on.

use crate::adapter::{AdapterError, AdapterFactory, InMemoryAdapterFactory};
use crate::client::SocketIoHandler;
use crate::config::ServerConfig;
use crate::error::{ConnectError, EmitError};
use crate::metrics::SocketIoMetrics;
use crate::namespace::{Handlers, Namespace, ServerContext};
use crate::operators::BroadcastOperator;
use crate::payload::Payload;
use crate::room::{IntoRooms, Room};
use crate::socket::{SocketInfo, SocketRef};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use switchboard_engine::{CloseReason, ConfigError, Engine};

type Matcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub(crate) struct ServerInner {
    pub(crate) shared: Arc<ServerContext>,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    dynamic: RwLock<Vec<(Matcher, Arc<Handlers>)>>,
    factory: Arc<dyn AdapterFactory>,
    engine: OnceLock<Engine<SocketIoHandler>>,
}

impl ServerInner {
    /// The namespace for a CONNECT: a static one, or a new child of a matching dynamic one.
    pub(crate) fn namespace_for(&self, name: &str) -> Option<Arc<Namespace>> {
        if let Some(ns) = self.namespaces.read().get(name) {
            return Some(ns.clone());
        }
        let handlers = self
            .dynamic
            .read()
            .iter()
            .find(|(matches, _)| matches(name))
            .map(|(_, h)| h.clone())?;
        let mut map = self.namespaces.write();
        let ns = map.entry(name.to_owned()).or_insert_with(|| {
            Namespace::new(
                name.to_owned(),
                self.shared.clone(),
                handlers,
                &*self.factory,
            )
        });
        Some(ns.clone())
    }
}

/// A Socket.IO server. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    inner: Arc<ServerInner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

/// Handlers shared by every namespace a dynamic matcher creates.
#[derive(Clone)]
pub struct DynamicNamespace {
    handlers: Arc<Handlers>,
}

impl std::fmt::Debug for DynamicNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicNamespace").finish_non_exhaustive()
    }
}

impl DynamicNamespace {
    /// Adds a connection middleware to every matching namespace.
    pub fn use_middleware<F, Fut>(&self, middleware: F)
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.handlers.add_middleware(middleware);
    }

    /// Adds a connection handler to every matching namespace.
    pub fn on_connection<F>(&self, handler: F)
    where
        F: Fn(&SocketRef) + Send + Sync + 'static,
    {
        self.handlers.add_connection(handler);
    }
}

impl Server {
    /// A server with the in-memory adapter.
    pub fn new(config: ServerConfig) -> Result<Self, ConfigError> {
        Self::with_adapter(config, Arc::new(InMemoryAdapterFactory))
    }

    /// A server whose namespaces use adapters from `factory`.
    pub fn with_adapter(
        mut config: ServerConfig,
        factory: Arc<dyn AdapterFactory>,
    ) -> Result<Self, ConfigError> {
        config.engine = config.engine.validate()?;
        if config.max_attachments == 0 {
            return Err(ConfigError("max attachments must be above zero".into()));
        }
        let engine_config = config.engine.clone();
        let inner = Arc::new(ServerInner {
            shared: Arc::new(ServerContext {
                config,
                metrics: Arc::new(SocketIoMetrics::default()),
            }),
            namespaces: RwLock::new(HashMap::new()),
            dynamic: RwLock::new(Vec::new()),
            factory,
            engine: OnceLock::new(),
        });
        let engine = Engine::new(
            engine_config,
            SocketIoHandler {
                server: inner.clone(),
            },
        );
        let _ = inner.engine.set(engine);
        let server = Self { inner };
        server.of("/");
        Ok(server)
    }

    /// The engine to serve (an HTTP handler and a tower `Service`).
    pub fn engine(&self) -> Engine<SocketIoHandler> {
        match self.inner.engine.get() {
            Some(e) => e.clone(),
            None => unreachable!("the engine is set in the constructor"),
        }
    }

    /// The namespace `name`, created if missing (a leading `/` is added when absent).
    pub fn of(&self, name: &str) -> Arc<Namespace> {
        let name = if name.starts_with('/') {
            name.to_owned()
        } else {
            format!("/{name}")
        };
        if let Some(ns) = self.inner.namespaces.read().get(&name).cloned() {
            return ns;
        }
        let mut map = self.inner.namespaces.write();
        map.entry(name.clone())
            .or_insert_with(|| {
                Namespace::new(
                    name,
                    self.inner.shared.clone(),
                    Arc::new(Handlers::default()),
                    &*self.inner.factory,
                )
            })
            .clone()
    }

    /// Accepts connections to any namespace name `matches` approves, creating it on demand.
    pub fn of_dynamic<F>(&self, matches: F) -> DynamicNamespace
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        let handlers = Arc::new(Handlers::default());
        {
            let mut d = self.inner.dynamic.write();
            d.push((Arc::new(matches), handlers.clone()));
        }
        DynamicNamespace { handlers }
    }

    /// Namespaces that exist now.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.inner.namespaces.read().values().cloned().collect()
    }

    /// The root namespace `/`.
    pub fn sockets(&self) -> Arc<Namespace> {
        self.of("/")
    }

    /// The metrics of the Socket.IO layer.
    pub fn metrics(&self) -> &Arc<SocketIoMetrics> {
        &self.inner.shared.metrics
    }

    /// Registers the engine's and the Socket.IO layer's metrics.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.engine().metrics().register(registry);
        self.metrics().register(registry);
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.shared.config
    }

    /// True when every namespace's adapter reaches its cluster.
    pub fn is_ready(&self) -> bool {
        self.namespaces()
            .iter()
            .all(|ns| ns.adapter().is_some_and(|a| a.is_ready()))
    }

    /// Registers a connection handler on `/`.
    pub fn on_connection<F>(&self, handler: F)
    where
        F: Fn(&SocketRef) + Send + Sync + 'static,
    {
        self.of("/").on_connection(handler)
    }

    /// Adds a connection middleware on `/`.
    pub fn use_middleware<F, Fut>(&self, middleware: F)
    where
        F: Fn(SocketRef) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.of("/").use_middleware(middleware)
    }

    /// Emits to every socket of `/`.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        self.of("/").emit(event, payload)
    }

    /// Broadcast on `/` to `rooms`.
    pub fn to(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.of("/").to(rooms)
    }

    /// Same as [`Server::to`].
    pub fn in_(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.to(rooms)
    }

    /// Broadcast on `/` leaving out `rooms`.
    pub fn except(&self, rooms: impl IntoRooms) -> BroadcastOperator {
        self.of("/").except(rooms)
    }

    /// Volatile broadcast on `/`.
    pub fn volatile(&self) -> BroadcastOperator {
        self.of("/").volatile()
    }

    /// Broadcast on `/`, this node only.
    pub fn local(&self) -> BroadcastOperator {
        self.of("/").local()
    }

    /// Broadcast with acknowledgements on `/`.
    pub fn timeout(&self, timeout: Duration) -> BroadcastOperator {
        self.of("/").timeout(timeout)
    }

    /// Describes every socket of `/` on every node.
    pub async fn fetch_sockets(&self) -> Result<Vec<SocketInfo>, AdapterError> {
        self.of("/").fetch_sockets().await
    }

    /// Makes every socket of `/` join `rooms`.
    pub fn sockets_join(&self, rooms: impl IntoRooms) {
        self.of("/").sockets_join(rooms)
    }

    /// Makes every socket of `/` leave `rooms`.
    pub fn sockets_leave(&self, rooms: impl IntoRooms) {
        self.of("/").sockets_leave(rooms)
    }

    /// Disconnects every socket of `/`.
    pub fn disconnect_sockets(&self, close: bool) {
        self.of("/").disconnect_sockets(close)
    }

    /// Every room of `/` on every node.
    pub async fn all_rooms(&self) -> Result<Vec<Room>, AdapterError> {
        self.of("/").all_rooms().await
    }

    /// Closes every connection with reason `server shutting down`, in batches of `batch`
    /// separated by `pause`, so reconnecting clients do not arrive as one storm elsewhere.
    pub async fn close(&self, batch: usize, pause: Duration) {
        let sessions = self.engine().sessions();
        for chunk in sessions.chunks(batch.max(1)) {
            for session in chunk {
                session.close(CloseReason::ServerShutdown);
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        for ns in self.namespaces() {
            if let Some(a) = ns.adapter() {
                a.close();
            }
        }
    }
}
