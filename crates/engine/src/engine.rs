//! The engine: request routing, handshakes, the session supervisor (heartbeat and close) and
//! packet dispatch shared by both transports.

use crate::admission::{self, Admission, Limits, Permit};
use crate::config::EngineConfig;
use crate::error::{CloseReason, HttpError};
use crate::handler::{Handler, Incoming};
use crate::http_util::{self, Body};
use crate::metrics::EngineMetrics;
use crate::query::EngineQuery;
use crate::sharded::ShardedMap;
use crate::sid::Sid;
use crate::socket::{EioSocket, Frame, Heartbeat, Outgoing, RequestInfo, TransportKind};
use crate::{polling, ws};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use switchboard_protocol::EioPacket;

/// How long a polling session closed by its client stays reachable for a GET that raced the
/// close (see `supervise`).
const RACING_POLL_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Shards of the session map: lookups of different sessions rarely wait on one lock.
const SESSION_SHARDS: usize = 32;

/// Error type of request bodies the engine accepts.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) struct Inner<H: Handler> {
    pub(crate) config: EngineConfig,
    pub(crate) handler: H,
    /// Open sessions by id.
    pub(crate) sessions: ShardedMap<Sid, Arc<EioSocket<H::Data>>>,
    pub(crate) metrics: Arc<EngineMetrics>,
    pub(crate) admission: Arc<Admission>,
}

/// An Engine.IO v4 server. Cheap to clone; every clone serves the same sessions.
pub struct Engine<H: Handler> {
    pub(crate) inner: Arc<Inner<H>>,
}

impl<H: Handler> Clone for Engine<H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<H: Handler> std::fmt::Debug for Engine<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.inner.config.path)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Engine<H> {
    /// An engine with a validated `config` calling `handler`.
    pub fn new(config: EngineConfig, handler: H) -> Self {
        let admission = Admission::new(Limits {
            max_sessions: config.max_sessions,
            max_sessions_per_ip: config.max_sessions_per_ip,
            handshake_rate_per_ip: config.handshake_rate_per_ip,
        });
        let inner = Arc::new(Inner {
            admission,
            config,
            handler,
            sessions: ShardedMap::new(SESSION_SHARDS),
            metrics: Arc::new(EngineMetrics::default()),
        });
        let sessions = Arc::downgrade(&inner);
        inner.metrics.queued_bytes.set_source(Box::new(move || {
            sessions.upgrade().map_or(0, |inner| {
                let mut queued = 0usize;
                inner
                    .sessions
                    .for_each(|_, socket| queued = queued.saturating_add(socket.queued_bytes()));
                i64::try_from(queued).unwrap_or(i64::MAX)
            })
        }));
        Self { inner }
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &Arc<EngineMetrics> {
        &self.inner.metrics
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.inner.handler
    }

    /// Looks a session up by id.
    pub fn session(&self, sid: &Sid) -> Option<Arc<EioSocket<H::Data>>> {
        self.inner.sessions.get(sid)
    }

    /// Every open session.
    pub fn sessions(&self) -> Vec<Arc<EioSocket<H::Data>>> {
        self.inner.sessions.values()
    }

    /// The number of open sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Sessions counted against `max_sessions`: open ones, ones whose WebSocket is being set
    /// up, and closed polling sessions still waiting for their last GET.
    pub fn admitted_sessions(&self) -> usize {
        self.inner.admission.admitted()
    }

    /// True when `path` is under the engine's path.
    pub fn handles(&self, path: &str) -> bool {
        let prefix = &self.inner.config.path;
        path.starts_with(prefix.as_str()) || path == prefix.trim_end_matches('/')
    }

    /// Serves one HTTP request: a handshake, a poll, a POST or a WebSocket upgrade.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if !self.handles(req.uri().path()) {
            return http_util::empty(StatusCode::NOT_FOUND);
        }
        let cors = self.inner.config.cors.clone();
        // Only the Origin is needed afterwards, copied out: the request's own value (or a clone
        // of its headers) shares hyper's read buffer and would keep it alive (and growing) for
        // as long as a long-poll waits.
        let origin = cors
            .as_ref()
            .and(req.headers().get(http::header::ORIGIN))
            .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok());
        let mut res = match self.route(req).await {
            Ok(res) => res,
            Err(err) => {
                self.inner
                    .metrics
                    .http_errors
                    .get_or_create(&[("error", err.label())])
                    .inc();
                http_util::error(err)
            }
        };
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            http_util::apply_cors(cors.as_ref(), origin.as_ref(), &mut res);
        }
        res
    }

    async fn route<B>(&self, req: Request<B>) -> Result<Response<Body>, HttpError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let config = &self.inner.config;
        if req.method() == Method::OPTIONS {
            if let Some(cors) = &config.cors {
                return Ok(http_util::preflight(cors, req.headers()));
            }
        }
        let uri = req.uri().clone();
        let query = EngineQuery::parse(uri.query());
        let transport = match query.transport.as_deref() {
            Some("polling") if config.allow_polling => TransportKind::Polling,
            Some("websocket") if config.allow_websocket => TransportKind::Websocket,
            _ => return Err(HttpError::UnknownTransport),
        };
        if !http_util::origin_allowed(config.cors.as_ref(), req.headers()) {
            return Err(HttpError::Forbidden);
        }
        let upgrade = ws::is_upgrade_request(&req);

        if let Some(sid) = query.sid.as_deref() {
            let socket = Sid::parse(sid)
                .and_then(|sid| self.inner.sessions.get(&sid))
                .ok_or(HttpError::UnknownSid)?;
            // Any request naming the session shows its client is there: a poll, a POST, or the
            // WebSocket of an upgrade (a client may upgrade without ever polling).
            socket.polled.store(true, Ordering::Release);
            if !socket.answers_after_close() {
                // Closed and waiting only for its supervisor to remove it.
                return Err(HttpError::UnknownSid);
            }
            if !socket.is_closed() && socket.heartbeat_expired() {
                // The pong deadline passed before this request: the session timed out, whether
                // or not the supervisor's timer has woken yet (as Node, which closes at the
                // deadline).
                socket.close(CloseReason::PingTimeout);
                return Err(HttpError::UnknownSid);
            }
            return match transport {
                TransportKind::Websocket if upgrade => {
                    ws::accept(self.clone(), req, Some(socket), None)
                        .map_err(|_| HttpError::BadRequest)
                }
                TransportKind::Websocket => Err(HttpError::BadRequest),
                TransportKind::Polling if socket.transport() != TransportKind::Polling => {
                    Err(HttpError::BadRequest)
                }
                TransportKind::Polling => match *req.method() {
                    Method::GET => {
                        // Nothing of the request is needed while the poll waits; dropping it
                        // (and the URI copy, which shares its bytes) lets hyper reuse its read
                        // buffer instead of allocating another one.
                        drop(query);
                        drop(uri);
                        drop(req);
                        polling::get(&self.inner, socket).await
                    }
                    // Boxed so that a waiting GET's state is not sized for a body being read.
                    Method::POST => Box::pin(polling::post(self, socket, req)).await,
                    _ => Ok(http_util::empty(StatusCode::INTERNAL_SERVER_ERROR)),
                },
            };
        }

        if req.method() != Method::GET {
            return Err(HttpError::BadHandshakeMethod);
        }
        if transport == TransportKind::Websocket && !upgrade {
            return Err(HttpError::BadRequest);
        }
        if query.eio.as_deref() != Some("4") {
            return Err(HttpError::UnsupportedProtocolVersion);
        }
        // Boxed: a request's future is as large as its largest state, and a waiting poll (the
        // state an idle polling session spends its life in) has no use for the handshake's.
        Box::pin(self.handshake(req, transport)).await
    }

    /// Opens a session: admission, `allow_request`, then the WebSocket upgrade or the open
    /// packet of a polling session.
    async fn handshake<B>(
        &self,
        req: Request<B>,
        transport: TransportKind,
    ) -> Result<Response<Body>, HttpError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let config = &self.inner.config;
        let info = self.inner.request_info(&req);
        let permit = self
            .inner
            .admission
            .admit(info.remote_addr.map(|a| a.ip()))?;
        if let Some(allow) = &config.allow_request {
            if !allow.allows(&info).await {
                return Err(HttpError::NotAllowed);
            }
        }
        match transport {
            TransportKind::Websocket => ws::accept(self.clone(), req, None, Some((info, permit)))
                .map_err(|_| HttpError::BadRequest),
            TransportKind::Polling => {
                let socket = self.open_session(TransportKind::Polling, info);
                tokio::spawn(supervise(self.inner.clone(), socket.clone(), permit));
                reap_if_never_polled(&socket, self.inner.config.ping_timeout);
                let open = self.open_packet(&socket).encode_text();
                self.inner.handler.on_open(&socket);
                Ok(http_util::text(
                    StatusCode::OK,
                    "text/plain; charset=UTF-8",
                    open,
                ))
            }
        }
    }

    pub(crate) fn open_packet(&self, socket: &EioSocket<H::Data>) -> EioPacket {
        let c = &self.inner.config;
        let upgrades = if socket.transport() == TransportKind::Polling
            && c.allow_upgrades
            && c.allow_websocket
        {
            "[\"websocket\"]"
        } else {
            "[]"
        };
        EioPacket::Open(format!(
            "{{\"sid\":\"{}\",\"upgrades\":{},\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            socket.sid(),
            upgrades,
            c.ping_interval.as_millis(),
            c.ping_timeout.as_millis(),
            c.max_payload
        ))
    }

    /// Opens and registers a session. Its caller supervises it: a polling session gets a task
    /// of its own ([`supervise`]); a WebSocket's connection task sends the pings itself and
    /// calls [`end_session`].
    pub(crate) fn open_session(
        &self,
        transport: TransportKind,
        request: RequestInfo,
    ) -> Arc<EioSocket<H::Data>> {
        let c = &self.inner.config;
        let socket = Arc::new(EioSocket::new(
            self.inner.handler.new_data(),
            request,
            transport,
            Heartbeat {
                interval: c.ping_interval,
                timeout: c.ping_timeout,
            },
            c.max_queue_items,
            c.max_queue_bytes,
            self.inner.metrics.clone(),
        ));
        self.inner.sessions.insert(socket.sid(), socket.clone());
        let m = &self.inner.metrics;
        m.sessions.inc();
        m.sessions_opened
            .get_or_create(&[("transport", transport.as_str())])
            .inc();
        socket
    }

    /// Lets every closed polling session that has no request in flight leave at once instead of
    /// waiting up to `close_timeout` for its client's last GET: its client is gone (an abandoned
    /// session) or between two polls (its next poll gets `Session ID unknown` and it reconnects).
    /// Returns how many sessions were released. Used while draining.
    pub fn release_idle_closed(&self) -> usize {
        let mut released = 0;
        for socket in self.inner.sessions.values() {
            if socket.is_closed()
                && socket.transport() == TransportKind::Polling
                && !socket.get_pending.load(Ordering::Acquire)
                && !socket.post_in_flight.load(Ordering::Acquire)
            {
                socket.drained.notify_one();
                released += 1;
            }
        }
        released
    }

    /// Closes every session with `reason` (e.g. at shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        for socket in self.inner.sessions.values() {
            socket.close(reason);
        }
    }
}

impl<H: Handler> Inner<H> {
    /// Dispatches one decoded packet from either transport.
    pub(crate) async fn handle_packet(&self, socket: &Arc<EioSocket<H::Data>>, packet: EioPacket) {
        match packet {
            EioPacket::Message(text) => {
                socket.received(text.len());
                self.handler.on_message(socket, Incoming::Text(text)).await;
            }
            EioPacket::Binary(data) => {
                socket.received(data.len());
                self.handler
                    .on_message(socket, Incoming::Binary(data))
                    .await;
            }
            EioPacket::Pong(_) => socket.on_pong(),
            EioPacket::Close => {
                socket.close_packet.store(true, Ordering::Release);
                socket.close(CloseReason::TransportClose);
            }
            // v4 pings go server → client only: a client ping is a protocol violation.
            EioPacket::Ping(_) | EioPacket::Open(_) | EioPacket::Upgrade | EioPacket::Noop => {
                self.parse_error(socket, "unexpected_packet");
            }
        }
    }

    pub(crate) fn parse_error(&self, socket: &EioSocket<H::Data>, kind: &'static str) {
        self.metrics
            .parse_errors
            .get_or_create(&[("kind", kind)])
            .inc();
        socket.close(CloseReason::ParseError);
    }
}

impl<H: Handler> Inner<H> {
    /// What a session keeps of the request that opened it; the address is the client's (see
    /// [`EngineConfig::trusted_proxies`]).
    pub(crate) fn request_info<B>(&self, req: &Request<B>) -> RequestInfo {
        let peer = req
            .extensions()
            .get::<crate::server::RemoteAddr>()
            .map(|a| a.0);
        RequestInfo {
            headers: Arc::new(compact_headers(req.headers())),
            uri: owned_uri(req.uri()),
            remote_addr: admission::client_addr(peer, req.headers(), &self.config.trusted_proxies),
            time: std::time::SystemTime::now(),
            secure: req.extensions().get::<crate::server::Tls>().is_some(),
        }
    }
}

/// A copy of `headers` that owns its bytes: hyper's header values are slices of the
/// connection's read buffer, and keeping them would keep that whole buffer alive for the
/// session's life. Every value lands in one exactly sized allocation.
fn compact_headers(headers: &http::HeaderMap) -> http::HeaderMap {
    let total = headers.values().map(|v| v.len()).sum();
    let mut all = bytes::BytesMut::with_capacity(total);
    for v in headers.values() {
        all.extend_from_slice(v.as_bytes());
    }
    let all = all.freeze();
    let mut out = http::HeaderMap::with_capacity(headers.len());
    let mut at = 0;
    for (name, v) in headers {
        let end = at + v.len();
        if let Ok(mut value) = http::HeaderValue::from_maybe_shared(all.slice(at..end)) {
            value.set_sensitive(v.is_sensitive());
            out.append(name.clone(), value);
        }
        at = end;
    }
    out
}

/// A copy of `uri` that shares nothing with the request (see [`compact_headers`]).
fn owned_uri(uri: &http::Uri) -> http::Uri {
    http::Uri::from_maybe_shared(Bytes::from(uri.to_string())).unwrap_or_else(|_| uri.clone())
}

/// A polling session whose client never sends a request after the handshake is closed once
/// `deadline` has passed, instead of holding its place until the heartbeat gives up.
fn reap_if_never_polled<D: Send + Sync + 'static>(
    socket: &Arc<EioSocket<D>>,
    deadline: std::time::Duration,
) {
    let socket = socket.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = socket.closed() => {}
            _ = tokio::time::sleep(deadline) => {
                if !socket.polled.load(Ordering::Acquire) {
                    socket.close(CloseReason::PingTimeout);
                }
            }
        }
    });
}

/// Runs for the whole life of a session: pings, waits for pongs, and on close notifies the
/// handler and removes the session. The session's admission permit is held until then. Every
/// deadline is an absolute instant of the session (its open or its last pong, see
/// [`EioSocket::pong_deadline`]), so wake-up latency never adds up.
async fn supervise<H: Handler>(
    inner: Arc<Inner<H>>,
    socket: Arc<EioSocket<H::Data>>,
    permit: Permit,
) {
    let opened = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = socket.closed() => break,
            _ = tokio::time::sleep_until(socket.next_ping()) => {}
        }
        let due = socket.next_ping();
        socket.ping_going_out();
        let deadline = socket.pong_deadline();
        tracing::trace!(
            age_ms = opened.elapsed().as_millis() as u64,
            late_ms = due.elapsed().as_millis() as u64,
            pong_due_ms = deadline.saturating_duration_since(opened).as_millis() as u64,
            transport = socket.transport().as_str(),
            "ping"
        );
        socket.awaiting_pong.store(true, Ordering::Release);
        if socket
            .send(Outgoing::One(Frame::text("2".to_owned())))
            .is_err()
        {
            break;
        }
        if !pong_in_time(&socket, deadline).await {
            break;
        }
    }
    end_session(&inner, &socket).await;
    drop(permit);
}

/// The end of a closed session, once: counts it, tells the handler and removes it (a polling
/// session stays reachable a while for its client's last GET). The caller drops the session's
/// admission permit after this.
pub(crate) async fn end_session<H: Handler>(inner: &Inner<H>, socket: &Arc<EioSocket<H::Data>>) {
    let reason = socket.close_reason().unwrap_or(CloseReason::TransportClose);
    tracing::debug!(
        reason = reason.label(),
        transport = socket.transport().as_str(),
        age_ms = socket.age().as_millis() as u64,
        "session closed"
    );
    inner
        .metrics
        .sessions_closed
        .get_or_create(&[("reason", reason.label())])
        .inc();
    inner.metrics.sessions.dec();
    inner.handler.on_close(socket, reason);
    if socket.transport() == TransportKind::Polling {
        if reason.server_initiated() {
            // Keep the session reachable so the client's next poll gets the last packets and `1`.
            let _ =
                tokio::time::timeout(inner.config.close_timeout, socket.drained.notified()).await;
        } else if socket.answers_after_close() {
            // A client's close (POST `1`) and its GET are sent together and may arrive in either
            // order. A waiting GET gets its noop (`6`) as in Node; a GET that lost the race by a
            // moment is answered the same way instead of 400. The poll after that finds no
            // session (400), because a GET that answers a closed session removes it.
            let _ = tokio::time::timeout(RACING_POLL_GRACE, socket.drained.notified()).await;
        }
    }
    inner.sessions.remove(&socket.sid());
}

/// Waits for the pong to the ping just sent; false when the session closed or timed out. The
/// pong itself decides, not which wake-up the scheduler delivers first: a starved task may find
/// both the pong and its timer ready, and a pong that came before the deadline counts.
async fn pong_in_time<D>(socket: &EioSocket<D>, deadline: tokio::time::Instant) -> bool {
    loop {
        tokio::select! {
            biased;
            _ = socket.closed() => return false,
            // A wake-up left over from an earlier pong finds `awaiting_pong` still set: keep
            // waiting.
            _ = socket.pong.notified() => {
                if !socket.awaiting_pong.load(Ordering::Acquire) {
                    return true;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if !socket.awaiting_pong.load(Ordering::Acquire) {
                    return true;
                }
                socket.close(CloseReason::PingTimeout);
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    fn session(interval: Duration, timeout: Duration) -> EioSocket<()> {
        let request = RequestInfo {
            headers: Arc::default(),
            uri: http::Uri::from_static("/engine.io/"),
            remote_addr: None,
            time: std::time::SystemTime::now(),
            secure: false,
        };
        EioSocket::new(
            (),
            request,
            TransportKind::Polling,
            Heartbeat { interval, timeout },
            16,
            1 << 20,
            Arc::new(EngineMetrics::default()),
        )
    }

    #[tokio::test]
    async fn a_pong_before_a_late_wake_up_counts() {
        let socket = session(Duration::from_millis(300), Duration::from_millis(200));
        // The supervisor runs late: its deadline has passed and the pong is already in.
        socket.awaiting_pong.store(true, Ordering::Release);
        socket.on_pong();
        let past = Instant::now() - Duration::from_millis(1);
        for _ in 0..50 {
            assert!(pong_in_time(&socket, past).await);
            assert!(!socket.is_closed());
        }
    }

    #[tokio::test]
    async fn no_pong_by_the_deadline_times_out() {
        let socket = session(Duration::from_millis(300), Duration::from_millis(200));
        socket.awaiting_pong.store(true, Ordering::Release);
        // A wake-up left over from an earlier pong does not count as this ping's pong.
        socket.pong.notify_one();
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(!pong_in_time(&socket, soon).await);
        assert!(Instant::now() >= soon);
        assert_eq!(socket.close_reason(), Some(CloseReason::PingTimeout));
    }

    #[tokio::test]
    async fn a_ping_taken_at_once_gets_the_whole_ping_timeout() {
        let timeout = Duration::from_millis(200);
        let waiting = session(Duration::from_millis(1), timeout);
        let idle = session(Duration::from_millis(1), timeout);
        let scheduled = idle.pong_deadline();
        // The ping timer woke 30 ms late.
        tokio::time::sleep(Duration::from_millis(30)).await;
        waiting.get_pending.store(true, Ordering::Release);
        let sent = Instant::now();
        waiting.ping_going_out();
        idle.ping_going_out();
        // A waiting poll takes the ping now: the client has pingTimeout from now.
        assert!(waiting.pong_deadline() >= sent + timeout);
        // Nobody is polling: the ping waits in the queue and the deadline stays the session's.
        assert_eq!(idle.pong_deadline(), scheduled);
    }
}
