//! The chat application: every handler of the example, installed on a [`Server`].

use serde_json::{json, Value};
use switchboard::Server;

/// Installs the group chat on `io`'s root namespace.
pub fn install(io: &Server) {
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
