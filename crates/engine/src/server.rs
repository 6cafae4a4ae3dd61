//! Accepting connections: a listener with a deep backlog, a connection cap, HTTP/1.1 with a
//! header timeout, upgrades, and graceful shutdown.

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::http_util::Body;

/// The peer address of the connection a request came on (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// Listener and connection limits.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Listen backlog (accept queue). Default 4096: a connect storm queues instead of failing.
    pub backlog: u32,
    /// Most simultaneous connections; more wait in the accept queue. Default 100,000.
    pub max_connections: usize,
    /// Time a client has to send its request headers. Default 10 s.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes. Default 64 KiB.
    pub max_header_bytes: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            backlog: 4096,
            max_connections: 100_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Binds a TCP listener with `SO_REUSEADDR` and the given backlog.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A request handler for [`serve`].
pub trait HttpHandler: Clone + Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send;
}

struct Svc<S>(S, SocketAddr);

impl<S: HttpHandler> hyper::service::Service<Request<Incoming>> for Svc<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(RemoteAddr(self.1));
        let handler = self.0.clone();
        Box::pin(async move { Ok(handler.call(req).await) })
    }
}

/// Serves HTTP/1.1 (with upgrades) on `listener` until `shutdown` is cancelled; then stops
/// accepting and asks open connections to finish.
pub async fn serve<S: HttpHandler>(
    listener: TcpListener,
    handler: S,
    config: ServeConfig,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => p,
        };
        let Ok(permit) = permit else { return };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed; raise the open-file limit (ulimit -n) if this repeats");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = Svc(handler.clone(), peer);
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192));
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
            drop(permit);
        });
    }
}
