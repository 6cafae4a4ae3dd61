//! The Socket.IO layer's own metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Label = [(&'static str, &'static str); 1];

/// Counters for sockets, events, broadcasts, acknowledgements and refused input; latency
/// histograms for namespace connections and local fan-out.
#[derive(Debug)]
pub struct SocketIoMetrics {
    /// Connected sockets (all namespaces).
    pub sockets: Gauge,
    /// Namespace connections accepted.
    pub connects: Counter,
    /// Namespace connections refused, by reason.
    pub connect_errors: Family<Label, Counter>,
    /// Sockets disconnected, by reason.
    pub disconnects: Family<Label, Counter>,
    /// Socket.IO packets refused, by kind.
    pub parse_errors: Family<Label, Counter>,
    /// Events received from clients.
    pub events_received: Counter,
    /// Broadcasts delivered on this node.
    pub broadcasts: Counter,
    /// Packets queued to sockets by broadcasts.
    pub broadcast_recipients: Counter,
    /// Acknowledgements that did not arrive in time.
    pub ack_timeouts: Counter,
    /// Seconds from a CONNECT packet to its accepted reply being queued (middlewares included).
    pub connect_duration: Histogram,
    /// Seconds one broadcast takes to reach this node's recipients' queues (select, encode
    /// once, enqueue to each).
    pub broadcast_duration: Histogram,
    /// Socket.IO packets queued to sockets (events, acks, connects, disconnects).
    pub packets_sent: Counter,
    /// Reconnections that asked for connection state recovery, by result (`recovered`, or
    /// why not: `unknown_session`, `expired`, `unknown_offset`, `unavailable`, ...).
    pub recoveries: Family<Label, Counter>,
    /// Disconnected sessions handed to the adapter to keep for recovery.
    pub sessions_persisted: Counter,
    /// Disconnected sessions kept in this process for recovery (in-memory adapter).
    pub recovery_sessions: Gauge,
    /// Recoverable packets kept in this process (in-memory adapter).
    pub recovery_packets: Gauge,
    /// Bytes of the recoverable packets kept in this process (in-memory adapter).
    pub recovery_bytes: Gauge,
    /// Recoverable packets and sessions dropped before a client took them back, by kind
    /// (`packet_age`, `packet_count`, `packet_bytes`, `session_age`, `session_count`).
    pub recovery_evictions: Family<Label, Counter>,
}

/// 50 µs to about 13 s, ×4 per bucket.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 4.0, 10))
}

impl Default for SocketIoMetrics {
    fn default() -> Self {
        Self {
            sockets: Gauge::default(),
            connects: Counter::default(),
            connect_errors: Family::default(),
            disconnects: Family::default(),
            parse_errors: Family::default(),
            events_received: Counter::default(),
            broadcasts: Counter::default(),
            broadcast_recipients: Counter::default(),
            ack_timeouts: Counter::default(),
            connect_duration: latency_buckets(),
            broadcast_duration: latency_buckets(),
            packets_sent: Counter::default(),
            recoveries: Family::default(),
            sessions_persisted: Counter::default(),
            recovery_sessions: Gauge::default(),
            recovery_packets: Gauge::default(),
            recovery_bytes: Gauge::default(),
            recovery_evictions: Family::default(),
        }
    }
}

impl SocketIoMetrics {
    /// Registers every metric under the `socketio` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("socketio");
        r.register("sockets", "Connected sockets", self.sockets.clone());
        r.register(
            "connects",
            "Namespace connections accepted",
            self.connects.clone(),
        );
        r.register(
            "connect_errors",
            "Namespace connections refused, by reason",
            self.connect_errors.clone(),
        );
        r.register(
            "disconnects",
            "Sockets disconnected, by reason",
            self.disconnects.clone(),
        );
        r.register(
            "parse_errors",
            "Socket.IO packets refused, by kind",
            self.parse_errors.clone(),
        );
        r.register(
            "events_received",
            "Events received from clients",
            self.events_received.clone(),
        );
        r.register(
            "broadcasts",
            "Broadcasts delivered on this node",
            self.broadcasts.clone(),
        );
        r.register(
            "broadcast_recipients",
            "Packets queued to sockets by broadcasts",
            self.broadcast_recipients.clone(),
        );
        r.register(
            "ack_timeouts",
            "Acknowledgements that did not arrive in time",
            self.ack_timeouts.clone(),
        );
        r.register(
            "connect_duration_seconds",
            "Seconds from a CONNECT packet to its accepted reply (middlewares included)",
            self.connect_duration.clone(),
        );
        r.register(
            "broadcast_duration_seconds",
            "Seconds one broadcast takes to reach this node's recipients' queues",
            self.broadcast_duration.clone(),
        );
        r.register(
            "packets_sent",
            "Socket.IO packets queued to sockets",
            self.packets_sent.clone(),
        );
        r.register(
            "recoveries",
            "Reconnections that asked for connection state recovery, by result",
            self.recoveries.clone(),
        );
        r.register(
            "sessions_persisted",
            "Disconnected sessions handed to the adapter to keep for recovery",
            self.sessions_persisted.clone(),
        );
        r.register(
            "recovery_sessions",
            "Disconnected sessions kept in this process for recovery",
            self.recovery_sessions.clone(),
        );
        r.register(
            "recovery_packets",
            "Recoverable packets kept in this process",
            self.recovery_packets.clone(),
        );
        r.register(
            "recovery_bytes",
            "Bytes of the recoverable packets kept in this process",
            self.recovery_bytes.clone(),
        );
        r.register(
            "recovery_evictions",
            "Recoverable packets and sessions dropped before a client took them back, by kind",
            self.recovery_evictions.clone(),
        );
    }
}
