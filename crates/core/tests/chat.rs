//! The `chat` example end to end: real WebSocket clients against the example's handlers.
#![allow(clippy::unwrap_used)]

#[path = "../examples/chat/app.rs"]
mod app;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use switchboard::{Server, ServerConfig};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn start() -> std::net::SocketAddr {
    let io = Server::new(ServerConfig::default()).unwrap();
    app::install(&io);
    let listener = switchboard::engine::bind("127.0.0.1:0".parse().unwrap(), 128).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(switchboard::engine::serve(
        listener,
        io.engine(),
        Default::default(),
        tokio_util::sync::CancellationToken::new(),
    ));
    addr
}

/// Connects to `/` and returns the socket with its id; skips the `welcome` event.
async fn connect(addr: std::net::SocketAddr) -> (Ws, String) {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("0{"));
    ws.send(Message::text("40")).await.unwrap();
    let reply = next_text(&mut ws).await;
    let sid: Value = serde_json::from_str(reply.strip_prefix("40").unwrap()).unwrap();
    assert!(next_text(&mut ws).await.starts_with("42[\"welcome\""));
    (ws, sid["sid"].as_str().unwrap().to_owned())
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(3), ws.next())
            .await
            .expect("a frame within 3 s")
            .expect("stream open")
            .unwrap();
        if let Message::Text(t) = msg {
            if t.as_str() == "2" {
                ws.send(Message::text("3")).await.unwrap();
                continue;
            }
            return t.as_str().to_owned();
        }
    }
}

/// The next packet text, skipping `broadcast` announcements of other users joining.
async fn next_packet(ws: &mut Ws) -> String {
    loop {
        let text = next_text(ws).await;
        if !text.starts_with("42[\"broadcast\"") {
            return text;
        }
    }
}

/// The next event's array.
async fn next_event(ws: &mut Ws) -> Value {
    let text = next_packet(ws).await;
    let body = text.trim_start_matches(|c: char| c.is_ascii_digit());
    serde_json::from_str(body).unwrap()
}

async fn quiet(ws: &mut Ws) {
    if let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        assert!(
            t.as_str() == "2" || t.contains("\"broadcast\""),
            "unexpected {t}"
        );
    }
}

#[tokio::test]
async fn group_chat_rooms_typing_and_notifications() {
    let addr = start().await;
    let (mut a, a_id) = connect(addr).await;
    let (mut b, _) = connect(addr).await;
    let (mut c, _) = connect(addr).await;

    for ws in [&mut a, &mut b] {
        ws.send(Message::text("420[\"joinRoom\",\"groupA\"]"))
            .await
            .unwrap();
        let ack = next_packet(ws).await;
        assert!(ack.starts_with("430[") && ack.contains("groupA"), "{ack}");
    }

    a.send(Message::text(
        "421[\"chatMessage\",{\"room\":\"groupA\",\"text\":\"Hello group!\"}]",
    ))
    .await
    .unwrap();
    let expected = json!(["chatMessage", {"sender": a_id, "text": "Hello group!"}]);
    // The sender is in the room too (io.to): it gets the message and its ack, in order.
    assert_eq!(next_event(&mut a).await, expected);
    assert_eq!(next_packet(&mut a).await, "431[\"OK\"]");
    assert_eq!(next_event(&mut b).await, expected);
    quiet(&mut c).await;

    a.send(Message::text("42[\"typing\",\"groupA\"]"))
        .await
        .unwrap();
    assert_eq!(next_event(&mut b).await[0], "typing");
    quiet(&mut a).await;
    quiet(&mut c).await;

    c.send(Message::text("42[\"register\",{\"userId\":\"7\"}]"))
        .await
        .unwrap();
    a.send(Message::text(
        "42[\"notify\",{\"userId\":\"7\",\"text\":\"You have a new message\"}]",
    ))
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut c).await,
        json!(["notification", "You have a new message"])
    );

    drop(a);
    let left = next_event(&mut b).await;
    assert_eq!(left[0], "left");
    assert_eq!(left[1]["id"], json!(a_id));
}
