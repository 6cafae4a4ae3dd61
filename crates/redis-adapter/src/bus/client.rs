//! The `redis::Client` both connections open: RESP3 (Redis ≥ 6), and for `rediss://` TLS
//! through rustls, trusting the CA file of the config or else the system's trust store.

use crate::{redact_url, RedisAdapterConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, TlsCertificates};

/// The client for `config.url`; the error names the URL (password hidden) and what is wrong.
pub(super) fn client(config: &RedisAdapterConfig) -> Result<redis::Client, String> {
    client_for(config, &config.url)
}

/// The client for `url` (a node of the cluster), with the TLS settings of `config`.
pub(super) fn client_for(config: &RedisAdapterConfig, url: &str) -> Result<redis::Client, String> {
    let bad = |e: redis::RedisError| format!("invalid Redis URL {:?}: {e}", redact_url(url));
    let info = url.into_connection_info().map_err(bad)?;
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let info = info.set_redis_settings(resp3);
    if !url.starts_with("rediss://") {
        return redis::Client::open(info).map_err(bad);
    }
    // rustls needs a process-wide crypto provider; another part of the program may have
    // installed one already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root_cert = match &config.ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            format!(
                "cannot read the Redis CA file {}: {e} (give a readable PEM file)",
                path.display()
            )
        })?),
        None => None,
    };
    redis::Client::build_with_tls(
        info,
        TlsCertificates {
            client_tls: None,
            root_cert,
        },
    )
    .map_err(|e| {
        format!(
            "cannot set up TLS to {:?}: {e} (check the CA file holds PEM certificates)",
            redact_url(url)
        )
    })
}
