//! One Engine.IO session: its id, outbound queue, transport state and close signal.

use crate::error::{CloseReason, SendError};
use crate::metrics::EngineMetrics;
use crate::queue::{self, Receiver, Sender};
use crate::sid::Sid;
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One Engine.IO frame ready for the wire.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A text packet, type digit included (`4...`, `2`, `6`).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Frame {
    /// A text frame from owned text (no copy).
    pub fn text(s: String) -> Self {
        Self::Text(Utf8Bytes::from(s))
    }

    fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Binary(b) => b.len(),
        }
    }
}

/// An item of the outbound queue: frames that must go out back to back.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// One frame.
    One(Frame),
    /// A Socket.IO binary packet: its text header then its attachments, shared between every
    /// recipient of a broadcast.
    Many(Arc<[Frame]>),
}

impl Outgoing {
    /// Bytes this item holds on the wire (before base64 on polling).
    pub fn len(&self) -> usize {
        match self {
            Self::One(f) => f.len(),
            Self::Many(fs) => fs.iter().map(Frame::len).sum(),
        }
    }

    /// True when the item carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frames, in order.
    pub fn frames(&self) -> &[Frame] {
        match self {
            Self::One(f) => std::slice::from_ref(f),
            Self::Many(fs) => fs,
        }
    }
}

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    Websocket,
}

impl TransportKind {
    /// The name used in the `transport` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Polling => "polling",
            Self::Websocket => "websocket",
        }
    }
}

/// Facts about the HTTP request that opened a session, copied out of the request once (so no
/// part of hyper's read buffer stays pinned) and shared with the layers above.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Request headers (a compact copy: every value in one allocation).
    pub headers: Arc<http::HeaderMap>,
    /// The full request URI.
    pub uri: http::Uri,
    /// Peer address, when known.
    pub remote_addr: Option<std::net::SocketAddr>,
    /// When the handshake arrived.
    pub time: std::time::SystemTime,
    /// True when the request came over TLS ([`crate::ServeConfig::tls`]).
    pub secure: bool,
}

/// A session's heartbeat settings (the engine's `pingInterval` and `pingTimeout`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

/// One Engine.IO session, shared between its transport tasks and the application.
pub struct EioSocket<D> {
    sid: Sid,
    /// Application data attached to the session.
    pub data: D,
    request: RequestInfo,
    tx: Sender,
    rx: Mutex<Option<Receiver>>,
    pub(crate) rx_returned: Notify,
    queued_bytes: AtomicUsize,
    max_queue_bytes: usize,
    transport: AtomicU8,
    pub(crate) upgrading: AtomicBool,
    /// Wakes a waiting poll when what it waits on changed: the probe was answered or the client
    /// switched to WebSocket.
    pub(crate) poll_wake: Notify,
    pub(crate) awaiting_pong: AtomicBool,
    pub(crate) pong: Notify,
    heartbeat: Heartbeat,
    /// When the session opened: the origin of its heartbeat deadlines.
    opened: Instant,
    /// The instant (microseconds after `opened`) by which the next pong must arrive: the open or
    /// the last pong, plus pingInterval, plus pingTimeout. The supervisor sleeps until these
    /// absolute instants, and a request arriving past the deadline finds the session expired, so
    /// a late timer wake-up never keeps a dead session alive.
    pong_deadline_us: AtomicU64,
    /// Set when the client ended the session with a close packet (`1`).
    pub(crate) close_packet: AtomicBool,
    pub(crate) post_in_flight: AtomicBool,
    /// When the last POST was answered (microseconds after `opened`; 0: none yet).
    post_ended_us: AtomicU64,
    pub(crate) get_pending: AtomicBool,
    /// Set by the first request after the handshake (a GET, a POST or an upgrade's WebSocket).
    pub(crate) polled: AtomicBool,
    pub(crate) drained: Notify,
    /// Wakes every [`EioSocket::closed`] waiter when the reason is set (in the session itself:
    /// no allocation of its own).
    closed: Notify,
    reason: OnceLock<CloseReason>,
    metrics: Arc<EngineMetrics>,
}

impl<D> std::fmt::Debug for EioSocket<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EioSocket")
            .field("sid", &self.sid)
            .field("transport", &self.transport())
            .finish_non_exhaustive()
    }
}

impl<D> EioSocket<D> {
    pub(crate) fn new(
        data: D,
        request: RequestInfo,
        transport: TransportKind,
        heartbeat: Heartbeat,
        max_queue_items: usize,
        max_queue_bytes: usize,
        metrics: Arc<EngineMetrics>,
    ) -> Self {
        let (tx, rx) = queue::queue(max_queue_items);
        Self {
            sid: Sid::random(),
            data,
            request,
            tx,
            rx: Mutex::new(Some(rx)),
            rx_returned: Notify::new(),
            queued_bytes: AtomicUsize::new(0),
            max_queue_bytes,
            transport: AtomicU8::new(transport as u8),
            upgrading: AtomicBool::new(false),
            poll_wake: Notify::new(),
            awaiting_pong: AtomicBool::new(false),
            pong: Notify::new(),
            heartbeat,
            opened: Instant::now(),
            pong_deadline_us: AtomicU64::new(micros(heartbeat.interval + heartbeat.timeout)),
            close_packet: AtomicBool::new(false),
            post_in_flight: AtomicBool::new(false),
            post_ended_us: AtomicU64::new(0),
            get_pending: AtomicBool::new(false),
            polled: AtomicBool::new(false),
            drained: Notify::new(),
            closed: Notify::new(),
            reason: OnceLock::new(),
            metrics,
        }
    }

    /// The session id (secret: it is the only credential of a polling request).
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The request that opened the session.
    pub fn request(&self) -> &RequestInfo {
        &self.request
    }

    /// The current transport.
    pub fn transport(&self) -> TransportKind {
        if self.transport.load(Ordering::Acquire) == TransportKind::Websocket as u8 {
            TransportKind::Websocket
        } else {
            TransportKind::Polling
        }
    }

    pub(crate) fn set_transport(&self, kind: TransportKind) {
        self.transport.store(kind as u8, Ordering::Release);
    }

    /// True once the session is closed or closing.
    pub fn is_closed(&self) -> bool {
        // The reason is set before the close is signalled; one atomic load (this runs on
        // every enqueue).
        self.reason.get().is_some()
    }

    /// The reason the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    /// True while a closed session still answers a poll: after a server-initiated close (the
    /// poll gets the last packets and `1`) or a client's close packet (a poll that raced it gets
    /// `6`). Any other closed session is gone for requests, as if already removed.
    pub(crate) fn answers_after_close(&self) -> bool {
        match self.close_reason() {
            None => true,
            Some(CloseReason::TransportClose) => self.close_packet.load(Ordering::Acquire),
            Some(reason) => reason.server_initiated(),
        }
    }

    /// Completes once the session is closed or closing.
    pub async fn closed(&self) {
        // Created before the check: it sees a close that happens between the two.
        let closed = self.closed.notified();
        if self.is_closed() {
            return;
        }
        closed.await;
    }

    /// Closes the session; the first reason wins. Queued frames are still flushed when the
    /// reason is server-initiated.
    pub fn close(&self, reason: CloseReason) {
        if self.reason.set(reason).is_ok() {
            self.closed.notify_waiters();
        }
    }

    /// Queues an item for the client. A full queue (bytes already waiting plus this item over
    /// the cap) closes the session as a slow consumer: one slow client never stalls a
    /// broadcast or grows memory without bound. An item into an empty queue always fits.
    pub fn send(&self, item: Outgoing) -> Result<(), SendError> {
        self.enqueue(item, false)
    }

    /// Queues an item only if the transport can take it now; otherwise drops it (counted).
    pub fn send_volatile(&self, item: Outgoing) -> Result<(), SendError> {
        self.enqueue(item, true)
    }

    fn writable(&self) -> bool {
        match self.transport() {
            TransportKind::Websocket => self.queued_bytes.load(Ordering::Relaxed) == 0,
            TransportKind::Polling => self.get_pending.load(Ordering::Relaxed),
        }
    }

    fn enqueue(&self, item: Outgoing, volatile: bool) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if volatile && !self.writable() {
            self.metrics.volatile_dropped.inc();
            return Err(SendError::Dropped);
        }
        let len = item.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        // The cap is on backlog: one item alone always fits, so no single packet, however
        // large, can make its recipients look slow.
        let over = before > 0 && before + len > self.max_queue_bytes;
        if over || self.tx.try_send(item).is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            if volatile {
                self.metrics.volatile_dropped.inc();
                return Err(SendError::Dropped);
            }
            if self.is_closed() {
                return Err(SendError::Closed);
            }
            self.metrics.slow_consumers.inc();
            self.close(CloseReason::SlowConsumer);
            return Err(SendError::SlowConsumer);
        }
        Ok(())
    }

    /// Bookkeeping when an item leaves the queue.
    pub(crate) fn dequeued(&self, item: &Outgoing) {
        let len = item.len();
        self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
        self.metrics.sent_bytes.inc_by(len as u64);
    }

    /// Counts the bytes of a message received from the client.
    pub(crate) fn received(&self, len: usize) {
        self.metrics.received_bytes.inc_by(len as u64);
    }

    /// Takes the queue's receiving end; `None` while another transport holds it.
    pub(crate) fn take_rx(&self) -> Option<Receiver> {
        self.rx.lock().take()
    }

    /// Gives the receiving end back and wakes anyone waiting for it.
    pub(crate) fn return_rx(&self, rx: Receiver) {
        {
            let mut slot = self.rx.lock();
            *slot = Some(rx);
        }
        self.rx_returned.notify_waiters();
    }

    /// Marks the upgrade as over (switched or abandoned). A poll already waiting keeps its
    /// upgrade check and ends with the noop at it; later polls wait as usual.
    pub(crate) fn end_upgrade(&self) {
        self.upgrading.store(false, Ordering::Release);
    }

    /// Records that a POST was answered.
    pub(crate) fn post_ended(&self) {
        self.post_ended_us
            .store(micros(self.opened.elapsed()).max(1), Ordering::Release);
    }

    /// How long until the polling transport has been quiet (no POST in flight, none answered)
    /// for `quiet`; `None` when it has been already.
    pub(crate) fn polling_quiet_in(&self, quiet: Duration) -> Option<Duration> {
        if self.post_in_flight.load(Ordering::Acquire) {
            return Some(quiet);
        }
        let ended = self.post_ended_us.load(Ordering::Acquire);
        if ended == 0 {
            return None;
        }
        let since = self
            .opened
            .elapsed()
            .saturating_sub(Duration::from_micros(ended));
        quiet.checked_sub(since).filter(|d| !d.is_zero())
    }

    /// Records a pong; it only counts while a ping is outstanding. The next ping is due
    /// pingInterval from now, and its pong pingTimeout after that.
    pub(crate) fn on_pong(&self) {
        if self.awaiting_pong.swap(false, Ordering::AcqRel) {
            let next = self.opened.elapsed() + self.heartbeat.interval + self.heartbeat.timeout;
            self.pong_deadline_us.store(micros(next), Ordering::Release);
            self.pong.notify_one();
        }
    }

    /// Called as the supervisor sends a ping. When a transport takes it at once (a WebSocket, or
    /// a poll that is waiting), the client gets its whole pingTimeout from now, as in Node, even
    /// if the timer woke late. A ping that waits in the queue for the next poll keeps the
    /// deadline of the session's own instants, so a client that stopped polling times out on
    /// time.
    pub(crate) fn ping_going_out(&self) {
        let delivered_now = self.transport() == TransportKind::Websocket
            || self.get_pending.load(Ordering::Acquire);
        if delivered_now {
            let from_now = micros(self.opened.elapsed() + self.heartbeat.timeout);
            self.pong_deadline_us.fetch_max(from_now, Ordering::AcqRel);
        }
    }

    /// The instant by which the next pong must arrive.
    pub(crate) fn pong_deadline(&self) -> Instant {
        let us = self.pong_deadline_us.load(Ordering::Acquire);
        let year = Duration::from_secs(365 * 24 * 3600);
        self.opened
            .checked_add(Duration::from_micros(us))
            .unwrap_or(self.opened + year)
    }

    /// The instant the next ping is due (pingTimeout before the pong deadline).
    pub(crate) fn next_ping(&self) -> Instant {
        let deadline = self.pong_deadline();
        deadline
            .checked_sub(self.heartbeat.timeout)
            .unwrap_or(deadline)
    }

    /// True when the pong deadline has passed with no pong: the session is dead even if the
    /// supervisor's timer has not fired yet.
    pub(crate) fn heartbeat_expired(&self) -> bool {
        Instant::now() >= self.pong_deadline()
    }

    /// How long ago the session opened.
    pub(crate) fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Bytes waiting in the outbound queue.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }
}

/// `d` in whole microseconds, rounded up: a deadline stored this way is never earlier than the
/// one computed.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX)
}
