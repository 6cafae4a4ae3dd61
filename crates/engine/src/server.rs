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

/// Present (a request extension) when the request came over TLS.
#[derive(Debug, Clone, Copy)]
pub struct Tls;

/// Listener and connection limits.
#[derive(Clone)]
pub struct ServeConfig {
    /// Listen backlog (accept queue). Default 4096: a connect storm queues instead of failing.
    pub backlog: u32,
    /// Most simultaneous TCP connections being served as HTTP; more wait in the accept queue.
    /// A connection upgraded to WebSocket stops counting here once its 101 is sent: sessions
    /// are capped by [`crate::EngineConfig::max_sessions`] for their whole life. Default
    /// 100,000.
    pub max_connections: usize,
    /// Time a client has to send its request headers. Default 10 s.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes, as parsed (request line and headers); past it the
    /// answer is 431. Default 64 KiB.
    pub max_header_bytes: usize,
    /// Serve TLS with this acceptor (see [`tls_acceptor`]); `None` serves plain TCP. The TLS
    /// handshake must finish within `header_read_timeout`.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("backlog", &self.backlog)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            backlog: 4096,
            max_connections: 100_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            tls: None,
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

/// A TLS acceptor from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or
/// SEC1), with the `ring` provider and HTTP/1.1 over ALPN. The error says which file is wrong.
pub fn tls_acceptor(
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: not a PEM certificate chain ({e})", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("{}: not a PEM private key ({e})", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "{} does not match {}: {e}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A request handler for [`serve`].
pub trait HttpHandler: Clone + Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send;
}

struct Svc<S> {
    handler: S,
    peer: SocketAddr,
    max_head: usize,
    tls: bool,
}

/// The size of a request head as parsed: request line and every header line.
fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

impl<S: HttpHandler> hyper::service::Service<Request<Incoming>> for Svc<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if head_size(&req) > self.max_head {
            let mut res = Response::new(Body::default());
            *res.status_mut() = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            return Box::pin(async move { Ok(res) });
        }
        req.extensions_mut().insert(RemoteAddr(self.peer));
        if self.tls {
            req.extensions_mut().insert(Tls);
        }
        let handler = self.handler.clone();
        // hyper drops a request's future unpolled when the connection's end arrives in the same
        // read as its head. The handler runs in its own task and is polled at least once, so a
        // request that fully arrived is always seen (a poll whose client hung up closes its
        // session, as in Node); dropping the returned future then cancels the handler.
        let gone = CancellationToken::new();
        let task = tokio::spawn(run_until_dropped(handler, req, gone.clone()));
        let dropped = gone.drop_guard();
        Box::pin(async move {
            let _dropped = dropped;
            match task.await {
                Ok(Some(res)) => Ok(res),
                // The handler panicked (or was cancelled, and then nobody reads this).
                _ => Ok(crate::http_util::empty(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                )),
            }
        })
    }
}

/// Runs `handler` on `req` until it answers or `gone` is cancelled, polling it first each time.
async fn run_until_dropped<S: HttpHandler>(
    handler: S,
    req: Request<Incoming>,
    gone: CancellationToken,
) -> Option<Response<Body>> {
    let answer = handler.call(req);
    tokio::pin!(answer);
    tokio::select! {
        biased;
        res = &mut answer => Some(res),
        _ = gone.cancelled() => None,
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
        let svc = Svc {
            handler: handler.clone(),
            peer,
            max_head: config.max_header_bytes,
            tls: config.tls.is_some(),
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            .max_buf_size(config.max_header_bytes.max(8192));
        let shutdown = shutdown.clone();
        let tls = config.tls.clone();
        let handshake_timeout = config.header_read_timeout;
        // Two tasks of their own types: a task is as large as its largest state, and a plain
        // connection would otherwise carry room for the TLS session inline (a few KB each,
        // for as long as a long-poll waits).
        match tls {
            None => {
                tokio::spawn(async move {
                    serve_io(TokioIo::new(stream), builder, svc, shutdown).await;
                    drop(permit);
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let accepted =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
                    if let Ok(Ok(stream)) = accepted {
                        serve_io(TokioIo::new(stream), builder, svc, shutdown).await;
                    }
                    drop(permit);
                });
            }
        }
    }
}

async fn serve_io<I, S>(io: I, builder: http1::Builder, svc: Svc<S>, shutdown: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: HttpHandler,
{
    let conn = builder.serve_connection(io, svc).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
