//! The seed documents' group chat, on the Switchboard library.
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
use serde_json::{json, Value};
use switchboard::engine::{bind, serve, ServeConfig};
use switchboard::{Server, ServerConfig};
use tokio_util::sync::CancellationToken;

/// Group chat example.
#[derive(Parser)]
struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 3000)]
    port: u16,
}

fn install(io: &Server) {
    let io2 = io.clone();
    io.on_connection(move |socket| {
        tracing::info!(id = %socket.id(), "user connected");
        let _ = socket.emit("welcome", format!("Welcome to the server {}", socket.id()));
        let _ = socket
            .broadcast()
            .emit("broadcast", format!("{} joined the server", socket.id()));

        socket.on_any(|socket, event| {
            tracing::info!(id = %socket.id(), event = %event.name, "event");
        });

        socket.on("register", |socket, event| {
            if let Ok(user) = event.arg::<Value>(0) {
                if let Some(id) = user.get("userId").and_then(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or_else(|| v.as_u64().map(|n| n.to_string()))
                }) {
                    socket.join(format!("user-{id}"));
                }
            }
        });

        socket.on("joinRoom", |socket, mut event| {
            if let Ok(room) = event.arg::<String>(0) {
                socket.join(room);
            }
            let rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
            event.ack(json!(rooms));
        });

        let io = io2.clone();
        socket.on("chatMessage", move |socket, mut event| {
            let Ok(msg) = event.arg::<Value>(0) else {
                return;
            };
            let (Some(room), Some(text)) = (msg["room"].as_str(), msg["text"].as_str()) else {
                event.ack(json!({"error": "expected {room, text}"}));
                return;
            };
            let _ = io.to(room).emit(
                "chatMessage",
                json!({"sender": socket.id().to_string(), "text": text}),
            );
            event.ack("OK");
        });

        socket.on("typing", |socket, event| {
            if let Ok(room) = event.arg::<String>(0) {
                let _ = socket
                    .to(room)
                    .emit("typing", format!("{} is typing...", socket.id()));
            }
        });

        let io = io2.clone();
        socket.on("notify", move |_socket, event| {
            let Ok(msg) = event.arg::<Value>(0) else {
                return;
            };
            if let (Some(user), Some(text)) = (msg["userId"].as_str(), msg["text"].as_str()) {
                let _ = io.to(format!("user-{user}")).emit("notification", text);
            }
        });

        socket.on_disconnecting(|socket, reason| {
            for room in socket.rooms() {
                if room.as_str() != socket.id().as_str() {
                    let _ = socket.to(room).emit(
                        "left",
                        json!({"id": socket.id().to_string(), "reason": reason.as_str()}),
                    );
                }
            }
        });
        socket.on_disconnect(|socket, reason| {
            tracing::info!(id = %socket.id(), %reason, "user disconnected");
        });
    });
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
    install(&io);
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
