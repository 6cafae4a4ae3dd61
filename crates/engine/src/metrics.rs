//! The engine's own Prometheus metrics; labels are low-cardinality (transport, reason, code).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};

/// One label pair with a static key.
pub type Label = [(&'static str, &'static str); 1];

/// Counters and gauges for sessions, transports, errors and outbound queues.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    /// Open sessions.
    pub sessions: Gauge,
    /// Sessions opened, by initial transport.
    pub sessions_opened: Family<Label, Counter>,
    /// Sessions closed, by reason.
    pub sessions_closed: Family<Label, Counter>,
    /// Completed polling → WebSocket upgrades.
    pub upgrades: Counter,
    /// HTTP error answers, by Engine.IO error kind.
    pub http_errors: Family<Label, Counter>,
    /// Engine.IO packets that failed to decode, by kind.
    pub parse_errors: Family<Label, Counter>,
    /// Bodies or messages over the payload limit, by transport.
    pub payload_too_large: Family<Label, Counter>,
    /// Volatile packets dropped because the transport was not writable.
    pub volatile_dropped: Counter,
    /// Sessions closed because their outbound queue hit the cap.
    pub slow_consumers: Counter,
    /// Bytes waiting in all outbound queues, summed over the sessions when read.
    pub queued_bytes: QueueDepth,
    /// Message bytes received from clients (Engine.IO message payloads, both transports).
    pub received_bytes: Counter,
    /// Bytes taken from outbound queues to be written to clients.
    pub sent_bytes: Counter,
}

impl EngineMetrics {
    /// Registers every metric under the `engine` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("engine");
        r.register("sessions", "Open Engine.IO sessions", self.sessions.clone());
        r.register(
            "sessions_opened",
            "Engine.IO sessions opened, by transport",
            self.sessions_opened.clone(),
        );
        r.register(
            "sessions_closed",
            "Engine.IO sessions closed, by reason",
            self.sessions_closed.clone(),
        );
        r.register(
            "upgrades",
            "Polling to WebSocket upgrades",
            self.upgrades.clone(),
        );
        r.register(
            "http_errors",
            "HTTP error answers, by Engine.IO error",
            self.http_errors.clone(),
        );
        r.register(
            "parse_errors",
            "Engine.IO packets that failed to decode, by kind",
            self.parse_errors.clone(),
        );
        r.register(
            "payload_too_large",
            "Bodies or messages over the payload limit, by transport",
            self.payload_too_large.clone(),
        );
        r.register(
            "volatile_dropped",
            "Volatile packets dropped on a non-writable transport",
            self.volatile_dropped.clone(),
        );
        r.register(
            "slow_consumer_disconnects",
            "Sessions closed because their outbound queue was full",
            self.slow_consumers.clone(),
        );
        r.register_collector(Box::new(self.queued_bytes.clone()));
        r.register(
            "received_bytes",
            "Message bytes received from clients",
            self.received_bytes.clone(),
        );
        r.register(
            "sent_bytes",
            "Bytes taken from outbound queues to be written to clients",
            self.sent_bytes.clone(),
        );
    }
}

type DepthSource = Box<dyn Fn() -> i64 + Send + Sync>;

/// The depth of all outbound queues in bytes, computed when it is read (a scrape) from the
/// sessions' own counts: no shared gauge is updated as each packet is queued and written.
#[derive(Clone, Default)]
pub struct QueueDepth(Arc<OnceLock<DepthSource>>);

impl std::fmt::Debug for QueueDepth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("QueueDepth").field(&self.get()).finish()
    }
}

impl QueueDepth {
    /// Bytes waiting now in every outbound queue of the engine (0 before it starts).
    pub fn get(&self) -> i64 {
        self.0.get().map_or(0, |source| source())
    }

    /// Where the depth is read from; set once by the engine that owns the queues.
    pub(crate) fn set_source(&self, source: DepthSource) {
        let _ = self.0.set(source);
    }
}

impl Collector for QueueDepth {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(self.get());
        let metric = encoder.encode_descriptor(
            "outbound_queue_bytes",
            "Bytes waiting in all outbound queues",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}
