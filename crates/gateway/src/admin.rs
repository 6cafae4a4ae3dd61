//! The admin endpoints: `/metrics` (Prometheus text), `/live` and `/ready`.

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchboard::engine::{Body, HttpHandler};
use switchboard::Server;

/// State the admin endpoints read.
#[derive(Clone)]
pub struct Admin {
    /// Every metric of the node.
    pub registry: Arc<Registry>,
    /// The Socket.IO server (its adapters decide readiness).
    pub io: Server,
    /// Set once the node drains: `/ready` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    res
}

impl HttpHandler for Admin {
    async fn call(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        match req.uri().path() {
            "/metrics" => {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &self.registry) {
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
            "/live" => text(StatusCode::OK, "text/plain", "ok\n".into()),
            "/ready" => {
                if self.draining.load(Ordering::Acquire) {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "draining\n".into(),
                    )
                } else if !self.io.is_ready() {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "adapter not ready: the node cannot reach the cluster bus (Redis); see switchboard_redis_* metrics and the log\n".into(),
                    )
                } else {
                    text(StatusCode::OK, "text/plain", "ready\n".into())
                }
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: try /metrics, /live or /ready\n".into(),
            ),
        }
    }
}
