//! Socket.IO v5 conformance (32 cases, mirroring the official v5 test-suite inventory) against
//! the Socket.IO server at `/socket.io/` (namespaces `/` and `/custom`, see §6.2 of
//! socketio-wire.md): the 16 Engine.IO-level cases plus 16 Socket.IO cases over WebSocket.
//!
//! Runs against the in-process `conformance` example server, or against
//! `$SWITCHBOARD_CONFORMANCE_URL` when set (see `common/mod.rs`).

mod common;

use std::time::Duration;

use common::{cases, Flavor, Fx, Ws};

const F: Flavor = Flavor::SocketIo;

// ----- helpers -------------------------------------------------------------------------------

/// Asserts a CONNECT reply `<prefix>{"sid":"..."}` whose object has exactly the key `sid`.
fn assert_connect_reply(text: &str, prefix: &str) -> String {
    let json = text
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix}{{\"sid\":..}}, got {text:?}"));
    let v: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("CONNECT payload is not JSON ({e}): {text:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("CONNECT payload not an object: {text:?}"));
    assert_eq!(
        obj.keys().collect::<Vec<_>>(),
        ["sid"],
        "CONNECT payload keys: {text:?}"
    );
    let sid = obj["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("sid not a string: {text:?}"));
    assert!(!sid.is_empty(), "empty sid: {text:?}");
    sid.to_string()
}

/// WebSocket session with the main namespace joined (`40` → `40{"sid"}` + `42["auth",{}]`).
async fn connected_to_main(fx: &Fx) -> Ws {
    let (mut ws, _eio_sid) = fx.ws_handshake().await;
    ws.send_text("40").await;
    assert_connect_reply(&ws.recv_app_text().await, "40");
    assert_eq!(ws.recv_app_text().await, r#"42["auth",{}]"#);
    ws
}

/// Sends `packet` on a connected session; the server must close the whole connection
/// (pings are answered meanwhile, so neither heartbeat nor anything else can explain the close).
async fn assert_closes_connection_after(packet: &str) {
    let fx = Fx::new(F).await;
    let mut ws = connected_to_main(&fx).await;
    ws.send_text(packet).await;
    ws.expect_closed(true).await;
}

const PH0: &str = r#"{"_placeholder":true,"num":0}"#;
const PH1: &str = r#"{"_placeholder":true,"num":1}"#;

// ----- Engine.IO-level cases on /socket.io/ --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_polling_successfully_opens_a_session() {
    cases::handshake_polling_opens_session(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_polling_fails_with_an_invalid_eio_parameter() {
    cases::handshake_polling_invalid_eio(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_polling_fails_with_an_invalid_transport_parameter() {
    cases::handshake_polling_invalid_transport(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_polling_fails_with_an_invalid_request_method() {
    cases::handshake_polling_invalid_method(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_websocket_successfully_opens_a_session() {
    cases::handshake_ws_opens_session(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_websocket_fails_with_an_invalid_eio_parameter() {
    cases::handshake_ws_invalid_eio(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_websocket_fails_with_an_invalid_transport_parameter() {
    cases::handshake_ws_invalid_transport(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_polling_sends_ping_packets() {
    cases::heartbeat_polling_sends_ping_packets(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_polling_closes_the_session_upon_ping_timeout() {
    cases::heartbeat_polling_ping_timeout(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_websocket_sends_ping_packets() {
    cases::heartbeat_ws_sends_ping_packets(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_websocket_closes_the_session_upon_ping_timeout() {
    cases::heartbeat_ws_ping_timeout(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_polling_forcefully_closes_the_session() {
    cases::close_polling_forcefully(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_websocket_forcefully_closes_the_session() {
    cases::close_ws_forcefully(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_successfully_upgrades_from_polling_to_websocket() {
    cases::upgrade_polling_to_ws(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_ignores_http_requests_with_same_sid_after_upgrade() {
    cases::upgrade_ignores_http_after_upgrade(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_ignores_websocket_connection_with_same_sid_after_upgrade() {
    cases::upgrade_ignores_ws_after_upgrade(F).await;
}

// ----- connect -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_allows_connection_to_the_main_namespace() {
    let fx = Fx::new(F).await;
    connected_to_main(&fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_allows_connection_to_the_main_namespace_with_a_payload() {
    let fx = Fx::new(F).await;
    let (mut ws, _) = fx.ws_handshake().await;
    ws.send_text(r#"40{"token":"123"}"#).await;
    assert_connect_reply(&ws.recv_app_text().await, "40");
    assert_eq!(ws.recv_app_text().await, r#"42["auth",{"token":"123"}]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_allows_connection_to_a_custom_namespace() {
    let fx = Fx::new(F).await;
    let (mut ws, _) = fx.ws_handshake().await;
    ws.send_text("40/custom,").await;
    assert_connect_reply(&ws.recv_app_text().await, "40/custom,");
    assert_eq!(ws.recv_app_text().await, r#"42/custom,["auth",{}]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_allows_connection_to_a_custom_namespace_with_a_payload() {
    let fx = Fx::new(F).await;
    let (mut ws, _) = fx.ws_handshake().await;
    ws.send_text(r#"40/custom,{"token":"abc"}"#).await;
    assert_connect_reply(&ws.recv_app_text().await, "40/custom,");
    assert_eq!(
        ws.recv_app_text().await,
        r#"42/custom,["auth",{"token":"abc"}]"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disallows_connection_to_an_unknown_namespace() {
    let fx = Fx::new(F).await;
    let (mut ws, _) = fx.ws_handshake().await;
    ws.send_text("40/random").await;
    assert_eq!(
        ws.recv_app_text().await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    // The Engine.IO connection stays open: the main namespace can still be joined.
    ws.send_text("40").await;
    assert_connect_reply(&ws.recv_app_text().await, "40");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_disallows_connection_with_an_invalid_handshake() {
    let fx = Fx::new(F).await;
    let (mut ws, _) = fx.ws_handshake().await;
    ws.send_text("4abc").await;
    let (_, took) = ws.expect_closed_timed(true).await;
    // Must be the parse error, not the 1000 ms connect timeout.
    assert!(
        took < Duration::from_millis(900),
        "closed only after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_closes_the_connection_if_no_handshake() {
    let fx = Fx::new(F).await;
    let (mut ws, _) = fx.ws_handshake().await;
    // Pings are answered, so only connectTimeout (1000 ms) can close the connection.
    let (frames, took) = ws.expect_closed_timed(true).await;
    assert!(
        took >= Duration::from_millis(800),
        "closed after only {took:?}"
    );
    assert!(
        frames.iter().all(|f| *f == common::Frame::Text("2".into())),
        "{frames:?}"
    );
}

// ----- disconnect ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_disconnects_from_the_main_namespace() {
    let fx = Fx::new(F).await;
    let mut ws = connected_to_main(&fx).await;
    ws.send_text("41").await;
    // No reply to the DISCONNECT; the Engine.IO connection stays up, so the next frame is a ping.
    assert_eq!(ws.recv_text().await, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_connects_then_disconnects_from_a_custom_namespace() {
    let fx = Fx::new(F).await;
    let mut ws = connected_to_main(&fx).await;
    ws.send_text("40/custom").await; // no trailing comma: still namespace /custom
    assert_connect_reply(&ws.recv_app_text().await, "40/custom,");
    assert_eq!(ws.recv_app_text().await, r#"42/custom,["auth",{}]"#);
    ws.send_text("41/custom").await;
    ws.send_text(r#"42["message","message to main namespace"]"#)
        .await;
    assert_eq!(
        ws.recv_app_text().await,
        r#"42["message-back","message to main namespace"]"#
    );
}

// ----- message -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_sends_a_plain_text_packet() {
    let fx = Fx::new(F).await;
    let mut ws = connected_to_main(&fx).await;
    ws.send_text(r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        ws.recv_app_text().await,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_sends_a_packet_with_binary_attachments() {
    let fx = Fx::new(F).await;
    let mut ws = connected_to_main(&fx).await;
    ws.send_text(&format!(r#"452-["message",{PH0},{PH1}]"#))
        .await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.send_binary(&[4, 5, 6]).await;
    assert_eq!(
        ws.recv_app_text().await,
        format!(r#"452-["message-back",{PH0},{PH1}]"#)
    );
    assert_eq!(ws.recv_app_binary().await, [1, 2, 3]);
    assert_eq!(ws.recv_app_binary().await, [4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_sends_a_plain_text_packet_with_an_ack() {
    let fx = Fx::new(F).await;
    let mut ws = connected_to_main(&fx).await;
    ws.send_text(r#"42456["message-with-ack",1,"2",{"3":[false]}]"#)
        .await;
    assert_eq!(ws.recv_app_text().await, r#"43456[1,"2",{"3":[false]}]"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_sends_a_packet_with_binary_attachments_and_an_ack() {
    let fx = Fx::new(F).await;
    let mut ws = connected_to_main(&fx).await;
    ws.send_text(&format!(r#"452-789["message-with-ack",{PH0},{PH1}]"#))
        .await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.send_binary(&[4, 5, 6]).await;
    assert_eq!(ws.recv_app_text().await, format!("462-789[{PH0},{PH1}]"));
    assert_eq!(ws.recv_app_binary().await, [1, 2, 3]);
    assert_eq!(ws.recv_app_binary().await, [4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_closes_the_connection_upon_invalid_format_unknown_packet_type() {
    assert_closes_connection_after("4abc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_closes_the_connection_upon_invalid_format_invalid_payload() {
    assert_closes_connection_after("42{}").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_closes_the_connection_upon_invalid_format_invalid_ack_id() {
    assert_closes_connection_after(r#"42abc["message-with-ack",1,"2",{"3":[false]}]"#).await;
}
