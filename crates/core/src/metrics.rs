//! The Socket.IO layer's own metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Label = [(&'static str, &'static str); 1];

/// Counters for sockets, events, broadcasts, acknowledgements and refused input.
#[derive(Debug, Default)]
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
    }
}
