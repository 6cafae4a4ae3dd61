//! The admin listener's router: `/metrics`, `/live`, `/ready` and, with `--api-token`, the
//! HTTP server API under `/api/v1/` (`routes.rs`), whose JSON input is read by `input.rs`.

mod input;
mod routes;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, Full};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchboard::engine::{Body, HttpHandler};
use switchboard::{Namespace, Server, SocketInfo};

pub use input::ApiError;

/// The socket-data key holding the id of the node a socket is connected to.
pub const NODE_KEY: &str = "node";
/// The socket-data key holding the data the backend gave at connection.
pub const DATA_KEY: &str = "data";
/// Prefix of the room of a user's sockets.
pub const USER_ROOM_PREFIX: &str = "user:";

type RequestLabel = [(&'static str, String); 2];

/// API counters.
#[derive(Debug)]
pub struct ApiMetrics {
    /// Requests, by route and status code.
    pub requests: Family<RequestLabel, Counter>,
    /// Time of the cluster-wide lookups behind the GET routes (every node's answer or the
    /// cluster request timeout).
    pub cluster_request_duration: Histogram,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            // 1 ms to ~16 s.
            cluster_request_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        }
    }
}

impl ApiMetrics {
    /// Registers under the `api` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("api");
        r.register(
            "requests",
            "HTTP server API requests, by route and status",
            self.requests.clone(),
        );
        r.register(
            "cluster_request_duration_seconds",
            "Time of the cluster-wide lookups behind the GET routes",
            self.cluster_request_duration.clone(),
        );
    }
}

/// What the API routes need.
pub struct Api {
    /// The Socket.IO server (every namespace's adapter).
    pub io: Server,
    /// Namespaces the gateway serves.
    pub namespaces: Vec<String>,
    /// The bearer token.
    pub token: String,
    /// Counters.
    pub metrics: Arc<ApiMetrics>,
}

impl Api {
    /// The served namespace `name`, or a 400 naming the field.
    fn namespace(&self, name: &str) -> Result<Arc<Namespace>, ApiError> {
        if self.namespaces.iter().any(|n| n == name) {
            Ok(self.io.of(name))
        } else {
            Err(ApiError::field(
                "namespace",
                format!(
                    "{name:?} is not served; served namespaces: {}",
                    self.namespaces.join(", ")
                ),
            ))
        }
    }
}

/// State the admin endpoints read.
#[derive(Clone)]
pub struct Admin {
    router: Router,
}

struct Health {
    registry: Arc<Registry>,
    io: Server,
    draining: Arc<AtomicBool>,
}

impl Admin {
    /// The admin router; `api` is `None` when no token is configured (the API answers 404).
    pub fn new(
        registry: Arc<Registry>,
        io: Server,
        draining: Arc<AtomicBool>,
        api: Option<Arc<Api>>,
        max_body: usize,
    ) -> Self {
        let health = Arc::new(Health {
            registry,
            io,
            draining,
        });
        let mut router = Router::new()
            .route("/metrics", get(metrics))
            .route("/live", get(live))
            .route("/ready", get(ready))
            .with_state(health);
        if let Some(api) = api {
            router = router.merge(api_router(api, max_body));
        }
        Self {
            router: router.fallback(not_found),
        }
    }
}

impl HttpHandler for Admin {
    async fn call(&self, req: http::Request<hyper::body::Incoming>) -> http::Response<Body> {
        let mut router = self.router.clone();
        let res = match tower_service::Service::call(&mut router, req).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
        let (parts, body) = res.into_parts();
        // Every answer is built here and small (the largest is /metrics), so it is buffered.
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => bytes::Bytes::new(),
        };
        http::Response::from_parts(parts, Full::new(bytes))
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

async fn metrics(State(h): State<Arc<Health>>) -> Response {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &h.registry) {
        Ok(()) => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            out,
        ),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "encode failed\n".into(),
        ),
    }
}

async fn live() -> Response {
    text(StatusCode::OK, "text/plain", "ok\n".into())
}

async fn ready(State(h): State<Arc<Health>>) -> Response {
    if h.draining.load(Ordering::Acquire) {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".into(),
        )
    } else if !h.io.is_ready() {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "adapter not ready: the node cannot reach the cluster bus (Redis); see switchboard_redis_* metrics and the log\n".into(),
        )
    } else {
        text(StatusCode::OK, "text/plain", "ready\n".into())
    }
}

async fn not_found(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route (the API is off unless --api-token is set); see docs/api.md",
        )
        .into_response();
    }
    text(
        StatusCode::NOT_FOUND,
        "text/plain",
        "not found: try /metrics, /live or /ready\n".into(),
    )
}

fn api_router(api: Arc<Api>, max_body: usize) -> Router {
    Router::new()
        .route("/api/v1/emit", post(routes::emit))
        .route("/api/v1/sockets/join", post(routes::join))
        .route("/api/v1/sockets/leave", post(routes::leave))
        .route("/api/v1/sockets/disconnect", post(routes::disconnect))
        .route("/api/v1/sockets", get(routes::sockets))
        .route("/api/v1/rooms", get(routes::rooms))
        .route("/api/v1/users/{id}", get(routes::user))
        .route_layer(middleware::from_fn_with_state(api.clone(), authorize))
        .route_layer(middleware::from_fn_with_state(api.clone(), count))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(api)
}

async fn authorize(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    if bearer_matches(req.headers(), &api.token) {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <--api-token>`",
        )
        .into_response()
    }
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    crate::auth::bearer(headers).is_some_and(|given| crate::auth::same_secret(given, token))
}

async fn count(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().trim_start_matches("/api/v1").to_owned())
        .unwrap_or_else(|| "other".into());
    let res = next.run(req).await;
    api.metrics
        .requests
        .get_or_create(&[
            ("route", route),
            ("status", res.status().as_u16().to_string()),
        ])
        .inc();
    res
}

/// The user id of a socket: its `user:<id>` room (set by JWT auth or by the backend).
pub fn user_of(rooms: &[String]) -> Option<&str> {
    rooms.iter().find_map(|r| r.strip_prefix(USER_ROOM_PREFIX))
}

/// A socket as the API shows it.
fn socket_json(info: &SocketInfo, namespace: &str) -> Value {
    let rooms: Vec<&String> = info.rooms.iter().filter(|r| **r != info.id).collect();
    json!({
        "id": info.id,
        "namespace": namespace,
        "user": user_of(&info.rooms),
        "rooms": rooms,
        "node": info.data.get(NODE_KEY).cloned().unwrap_or(Value::Null),
        "data": info.data.get(DATA_KEY).cloned().unwrap_or(Value::Null),
    })
}

/// Shows `node` in the data of every socket of `ns` as `fetch_sockets` reports it (the API
/// shows where a socket is); nothing is stored per socket.
pub fn tag_node(ns: &Arc<Namespace>, node: Arc<str>) {
    ns.tag_fetched(NODE_KEY, Value::String(node.to_string()));
}
