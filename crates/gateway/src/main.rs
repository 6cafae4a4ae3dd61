//! `switchboard`: one Socket.IO gateway node. See `switchboard --help`.

mod api;
mod auth;
mod backend_config;
mod binary;
mod config;
mod config_file;
mod gateway;
mod metrics;
mod policy;
mod proxy;
mod relay;
mod web;

use tokio_util::sync::CancellationToken;

/// Exit status for invalid configuration (EX_USAGE).
const EXIT_CONFIG: i32 = 64;

fn main() {
    let (args, sources) = config_file::parse();
    init_logs(&args.backend);
    let print_config = args.file.print_config;
    for var in config::unknown_env_vars(std::env::vars().map(|(k, _)| k)) {
        tracing::warn!(variable = %var, "unknown SWITCHBOARD_* variable ignored; `switchboard --help` lists the valid ones");
    }
    let config = match args.validate() {
        Ok(c) => c,
        Err(err) => {
            eprintln!(
                "switchboard: invalid configuration: {}",
                sources.annotate(&err)
            );
            std::process::exit(EXIT_CONFIG);
        }
    };
    if print_config {
        use std::io::Write as _;
        let _ = std::io::stdout().write_all(sources.print().as_bytes());
        return;
    }
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

/// Logs to stderr in the chosen format; the filter is `--log`, else `RUST_LOG`, else `info`.
fn init_logs(args: &backend_config::BackendArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = match &args.log {
        Some(spec) => match EnvFilter::try_new(spec) {
            Ok(f) => f,
            Err(err) => {
                eprintln!("switchboard: invalid configuration: --log {spec:?}: {err}; e.g. --log info,switchboard_gateway=debug");
                std::process::exit(EXIT_CONFIG);
            }
        },
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter);
    match args.log_format {
        backend_config::LogFormat::Text => logs.init(),
        backend_config::LogFormat::Json => logs.json().flatten_event(true).init(),
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
