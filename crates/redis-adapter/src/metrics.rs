//! Counters and gauges of the Redis adapter (`switchboard_redis_*` once registered).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Why a message was not published.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum LossReason {
    /// No publishing connection (Redis down or reconnecting).
    Disconnected,
    /// Redis did not answer the publish in time.
    Timeout,
    /// Redis answered with an error, or the connection broke mid-publish.
    Error,
    /// The publish queue was full (Redis slower than the broadcasts).
    QueueFull,
}

impl LossReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::QueueFull => "queue_full",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabel {
    op: &'static str,
}

/// The adapter's metrics; one set per node, shared by all namespaces.
#[derive(Debug, Default)]
pub struct RedisMetrics {
    /// 1 while both connections are up and subscribed.
    pub up: Gauge,
    /// Times the node lost Redis (subscription or publishing connection).
    pub outages: Counter,
    /// Seconds spent not ready (either connection down), summed over ended outages.
    pub outage_seconds: Counter<f64, AtomicU64>,
    /// Subscription connections (re)established, the first one included.
    pub subscribes: Counter,
    /// Resubscriptions forced by a silent subscription (the liveness probe got no echo).
    pub probe_failures: Counter,
    /// Messages published (liveness probes excluded).
    pub published: Counter,
    /// Messages that could not be published, by reason.
    pub(crate) publish_failures: Family<ReasonLabel, Counter>,
    /// Messages received from Redis.
    pub received: Counter,
    /// Messages from Redis dropped because this node could not process them fast enough.
    pub receive_dropped: Counter,
    /// Messages waiting for the publishing connection (sampled at each pipeline).
    pub publish_queue: Gauge,
    /// Messages from Redis that could not be decoded, and messages this node could not
    /// encode (dropped, counted).
    pub decode_errors: Counter,
    /// Requests to other nodes that timed out, by operation.
    pub(crate) request_timeouts: Family<OpLabel, Counter>,
}

impl RedisMetrics {
    /// Counts `n` messages lost for `reason`.
    pub fn lost(&self, reason: LossReason, n: u64) {
        self.publish_failures
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc_by(n);
    }

    /// Messages lost for `reason` so far.
    pub fn lost_count(&self, reason: LossReason) -> u64 {
        self.publish_failures
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .get()
    }

    /// Requests of kind `op` (`fetch_sockets`, `all_rooms`, `server_side_emit`,
    /// `broadcast_with_ack`) that timed out so far.
    pub fn request_timeout_count(&self, op: &'static str) -> u64 {
        self.request_timeouts.get_or_create(&OpLabel { op }).get()
    }

    /// Counts a timed-out request of kind `op`.
    pub(crate) fn request_timeout(&self, op: &'static str) {
        self.request_timeouts.get_or_create(&OpLabel { op }).inc();
    }

    /// Registers every metric under the `switchboard_redis` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("switchboard_redis");
        r.register(
            "up",
            "1 while the node is connected to Redis and subscribed",
            self.up.clone(),
        );
        r.register(
            "outages",
            "Times the node lost its Redis connection or subscription",
            self.outages.clone(),
        );
        r.register(
            "outage_seconds",
            "Seconds spent without Redis, summed over ended outages",
            self.outage_seconds.clone(),
        );
        r.register(
            "subscribes",
            "Subscriptions established (first one included)",
            self.subscribes.clone(),
        );
        r.register(
            "probe_failures",
            "Resubscriptions forced because the liveness probe got no echo",
            self.probe_failures.clone(),
        );
        r.register(
            "published",
            "Messages published to Redis",
            self.published.clone(),
        );
        r.register(
            "publish_failures",
            "Messages that could not be published to Redis, by reason",
            self.publish_failures.clone(),
        );
        r.register(
            "received",
            "Messages received from Redis",
            self.received.clone(),
        );
        r.register(
            "receive_dropped",
            "Messages from Redis dropped because the node could not keep up",
            self.receive_dropped.clone(),
        );
        r.register(
            "publish_queue",
            "Messages waiting for the publishing connection",
            self.publish_queue.clone(),
        );
        r.register(
            "decode_errors",
            "Messages from Redis that could not be decoded",
            self.decode_errors.clone(),
        );
        r.register(
            "request_timeouts",
            "Cluster requests that timed out waiting for other nodes, by operation",
            self.request_timeouts.clone(),
        );
    }
}
