//! Runs the fixture server of the `socket.io-client` package's own test suite:
//! `cargo run -p switchboard --example client-fixture -- --port 3210`.
//!
//! `scripts/client-suite.sh` builds it and `tests/client-suite/hooks.mjs` starts and stops it
//! around the suite. It listens on 127.0.0.1 and, when the machine has it, on [::1], because
//! the suite connects to `localhost`, which may resolve to either.

mod server;

use clap::Parser;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The server the socket.io-client test suite expects (its test/support/server.ts).
#[derive(Parser)]
struct Args {
    /// Port to listen on, on the loopback addresses (the suite's own is 3210).
    #[arg(long, env = "CLIENT_FIXTURE_PORT", default_value_t = 3210)]
    port: u16,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let io = server::build()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = switchboard::engine::bind(v4, 1024).map_err(|err| {
        format!("cannot listen on {v4} ({err}): stop whatever holds the port or pass --port")
    })?;
    tokio::spawn(switchboard::engine::serve(
        listener,
        io.engine(),
        Default::default(),
        shutdown.clone(),
    ));
    tracing::info!(addr = %v4, "client fixture listening");
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, args.port));
    match switchboard::engine::bind(v6, 1024) {
        Ok(listener) => {
            tokio::spawn(switchboard::engine::serve(
                listener,
                io.engine(),
                Default::default(),
                shutdown.clone(),
            ));
            tracing::info!(addr = %v6, "client fixture listening");
        }
        // A machine without IPv6 loopback resolves `localhost` to 127.0.0.1 only.
        Err(err) => tracing::info!(addr = %v6, error = %err, "no IPv6 loopback; IPv4 only"),
    }
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    Ok(())
}
