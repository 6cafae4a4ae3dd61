//! Engine.IO v4 server sessions over hyper.
//!
//! Layout:
//! - [`Engine`] routes HTTP requests (handshake, poll, POST, WebSocket upgrade) and supervises
//!   each session's heartbeat and close (`engine.rs`; a session opened on WebSocket is
//!   supervised by its connection task, `ws.rs`);
//! - `polling.rs` and `ws.rs` are the two transports; a WebSocket is one task that reads and
//!   writes (with its own frame codec), polling hands the outbound queue (`queue.rs`) to
//!   whichever GET is waiting;
//! - [`EioSocket`] is one session: id, bounded outbound queue (capped in bytes), state;
//! - [`Handler`] is the seam to the Socket.IO layer above;
//! - [`serve`] accepts connections with a deep backlog and a connection cap;
//! - [`ShardedMap`] (`sharded.rs`) is the workspace's one sharded map (sessions here; a
//!   namespace's sockets and rooms in the Socket.IO layer), and [`query_params`] (`query.rs`)
//!   its one query-string parser.
//!
//! The engine is a [`tower_service::Service`] too, so it mounts in hyper or axum.

mod admission;
mod config;
mod engine;
mod error;
mod handler;
mod http_util;
mod metrics;
mod polling;
mod query;
mod queue;
mod server;
mod sharded;
mod sid;
mod socket;
mod ws;

pub use admission::{AllowRequest, Bucket, Permit, RateLimit};
pub use config::{AllowOrigin, ConfigError, CorsConfig, EngineConfig};
pub use engine::{BoxError, Engine};
pub use error::{CloseReason, HttpError, SendError};
pub use handler::{Handler, Incoming};
pub use http_util::Body;
pub use metrics::EngineMetrics;
pub use query::{query_pairs, query_params};
pub use server::{bind, serve, tls_acceptor, HttpHandler, RemoteAddr, ServeConfig, Tls};
pub use sharded::ShardedMap;
pub use sid::{Sid, SID_LEN};
pub use socket::{EioSocket, Frame, Outgoing, RequestInfo, TransportKind};
pub use tokio_rustls::TlsAcceptor;

use bytes::Bytes;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

impl<H: Handler> HttpHandler for Engine<H> {
    fn call(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = http::Response<Body>> + Send {
        self.handle(req)
    }
}

impl<H, B> tower_service::Service<http::Request<B>> for Engine<H>
where
    H: Handler,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let engine = self.clone();
        Box::pin(async move { Ok(engine.handle(req).await) })
    }
}
