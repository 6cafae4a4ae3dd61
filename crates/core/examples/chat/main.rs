//! A group chat (rooms, typing indicator, personal rooms, acks), on the Switchboard library.
//!
//! `cargo run -p switchboard --example chat -- --port 3000`, then connect any Socket.IO client:
//! - `register` `{"userId": "42"}`: joins the personal room `user-42` (for notifications);
//! - `joinRoom` `"groupA"` (ack: the rooms you are in);
//! - `chatMessage` `{"room": "groupA", "text": "Hello group!"}`: everyone in the room gets
//!   `chatMessage` `{"sender", "text"}` via `io.to(room)`; with an ack you get `"OK"`;
//! - `typing` `"groupA"`: everyone in the room but you gets `typing` (`socket.to(room)`);
//! - `notify` `{"userId": "42", "text": "..."}`: that user's personal room gets `notification`.
//!
//! Every event is logged with `on_any`; disconnects are announced to the user's rooms.

use clap::Parser;
use switchboard::engine::{bind, serve, ServeConfig};
use switchboard::{Server, ServerConfig};

mod app;
use tokio_util::sync::CancellationToken;

/// Group chat example.
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
    let io = Server::new(ServerConfig::default())?;
    app::install(&io);
    let listener = bind(([127, 0, 0, 1], args.port).into(), 4096)?;
    tracing::info!(addr = %listener.local_addr()?, "chat listening");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    serve(listener, io.engine(), ServeConfig::default(), shutdown).await;
    Ok(())
}
