//! The gateway's own series: `switchboard_build_info` and connected sockets by namespace.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
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
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        let m = Self {
            build_info: Family::default(),
            sockets: Family::default(),
        };
        m.build_info
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        m
    }
}

impl GatewayMetrics {
    /// Registers `build_info` and `sockets`.
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
    }

    /// Counts the sockets of `ns`.
    pub fn install(self: &Arc<Self>, ns: &Arc<Namespace>) {
        let m = self.clone();
        ns.on_connection(move |socket| {
            let label = [("namespace", socket.nsp().name().to_owned())];
            m.sockets.get_or_create(&label).inc();
            let m = m.clone();
            socket.on_disconnect(move |socket, _| {
                let label = [("namespace", socket.nsp().name().to_owned())];
                m.sockets.get_or_create(&label).dec();
            });
        });
    }
}
