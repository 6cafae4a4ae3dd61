//! Runs the conformance server: `cargo run -p switchboard --example conformance -- --port 3000`.

mod server;

use clap::Parser;

/// The server the official protocol test suites expect.
#[derive(Parser)]
struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 3000)]
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
    let addr = server::start(([127, 0, 0, 1], args.port).into()).await?;
    tracing::info!(%addr, "conformance server listening");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
