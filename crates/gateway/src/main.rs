//! `switchboard`: one Socket.IO gateway node. See `switchboard --help`.

mod admin;
mod auth;
mod config;
mod gateway;
mod policy;
mod relay;
mod web;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Exit status for invalid configuration (EX_USAGE).
const EXIT_CONFIG: i32 = 64;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    for var in config::unknown_env_vars(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!(variable = %var, "unknown SWITCHBOARD_* variable ignored; `switchboard --help` lists the valid ones");
    }
    let args = match config::Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            use clap::error::ErrorKind;
            let code = match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => EXIT_CONFIG,
            };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    let config = match args.validate() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("switchboard: invalid configuration: {err}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("switchboard: cannot start the runtime: {err}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        let gateway = gateway::Gateway::new(config).map_err(std::io::Error::other)?;
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            signal.cancel();
        });
        gateway.run(shutdown).await
    });
    if let Err(err) = result {
        eprintln!("switchboard: {err}");
        std::process::exit(1);
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
