//! The gateway's own series: `switchboard_build_info`, connected sockets by namespace, and the
//! time from the Engine.IO handshake to the namespace connection.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::SystemTime;
use switchboard::Namespace;

type NamespaceLabel = [(&'static str, String); 1];
type BuildLabel = [(&'static str, &'static str); 1];

/// Gateway metrics.
#[derive(Debug)]
pub struct GatewayMetrics {
    /// Always 1, labelled with the version.
    pub build_info: Family<BuildLabel, Gauge>,
    /// Connected sockets, by namespace (namespaces come from the configuration: bounded).
    pub sockets: Family<NamespaceLabel, Gauge>,
    /// Handshake to namespace connection (auth and the backend's connect hook included).
    pub connect_duration: Histogram,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let m = Self {
            build_info: Family::default(),
            sockets: Family::default(),
            // 1 ms to ~33 s.
            connect_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        m.build_info
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        m
    }
}

impl GatewayMetrics {
    /// Registers `build_info`, `sockets` and `connect_duration_seconds`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "build_info",
            "Build information (always 1)",
            self.build_info.clone(),
        );
        registry.register(
            "sockets",
            "Connected sockets, by namespace",
            self.sockets.clone(),
        );
        registry.register(
            "connect_duration_seconds",
            "Time from the Engine.IO handshake to the namespace connection",
            self.connect_duration.clone(),
        );
    }

    /// Counts the sockets of `ns` and their connection time.
    pub fn install(self: &Arc<Self>, ns: &Arc<Namespace>) {
        let m = self.clone();
        ns.on_connection(move |socket| {
            let label = [("namespace", socket.nsp().name().to_owned())];
            m.sockets.get_or_create(&label).inc();
            if let Ok(elapsed) = SystemTime::now().duration_since(socket.handshake().time) {
                m.connect_duration.observe(elapsed.as_secs_f64());
            }
            let m = m.clone();
            socket.on_disconnect(move |socket, _| {
                let label = [("namespace", socket.nsp().name().to_owned())];
                m.sockets.get_or_create(&label).dec();
            });
        });
    }
}
