//! Engine.IO v4 conformance (25 cases, mirroring the official v4 test-suite inventory) against
//! the echo server at `/engine.io/`: every message is sent back unchanged.
//!
//! Runs against the in-process `conformance` example server, or against
//! `$SWITCHBOARD_CONFORMANCE_URL` when set (see `common/mod.rs`).

mod common;

use std::time::Duration;

use common::{assert_unknown_sid, cases, sid_query, Flavor, Fx, SEP};

const F: Flavor = Flavor::Engine;

// ----- handshake / HTTP long-polling ---------------------------------------------------------

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

// ----- handshake / WebSocket -----------------------------------------------------------------

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

// ----- message / HTTP long-polling -----------------------------------------------------------

/// POSTs `payload` and expects the very same payload back from one GET.
async fn polling_echo(payload: &str) {
    let fx = Fx::new(F).await;
    let sid = fx.polling_handshake().await;
    fx.send_payload(&sid, payload).await;
    let r = fx.poll(&sid).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_polling_sends_and_receives_a_plain_text_packet() {
    polling_echo("4hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_polling_sends_and_receives_several_plain_text_packets() {
    polling_echo(&format!("4test1{SEP}4test2{SEP}4test3")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_polling_sends_and_receives_plain_text_and_binary_packets() {
    // `bAQIDBA==` = binary message <01 02 03 04>
    polling_echo(&format!("4hello{SEP}bAQIDBA==")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_polling_closes_the_session_upon_invalid_packet_format() {
    let fx = Fx::new(F).await;
    let sid = fx.polling_handshake().await;
    // The POST itself may be answered `200 ok` (engine.io 6.6.12 does that), 400, or aborted;
    // what matters is that the session is gone afterwards.
    match fx.try_request("POST", &sid_query(&sid), Some(b"abc")).await {
        Ok(r) if r.status == 200 => assert_eq!(r.text(), "ok", "{r:?}"),
        Ok(r) => assert_eq!(r.status, 400, "{r:?}"),
        Err(_aborted) => {}
    }
    assert_unknown_sid(&fx.poll(&sid).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_polling_closes_the_session_upon_duplicate_poll_requests() {
    let fx = Fx::new(F).await;
    let sid = fx.polling_handshake().await;
    let first = fx
        .start_request("GET", &sid_query(&sid), None)
        .await
        .expect("first GET");
    // Let the first GET get parked on the server before the overlapping one arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = fx.poll(&sid).await;
    assert!(
        matches!(second.status, 400 | 500),
        "overlapping GET: {second:?}"
    );
    let first = first.response().await.expect("first GET response");
    assert_eq!(
        (first.status, first.text().as_str()),
        (200, "1"),
        "{first:?}"
    );
    assert_unknown_sid(&fx.poll(&sid).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_polling_closes_the_session_upon_cancelled_polling_request() {
    let fx = Fx::new(F).await;
    let sid = fx.polling_handshake().await;
    let pending = fx
        .start_request("GET", &sid_query(&sid), None)
        .await
        .expect("GET");
    tokio::time::sleep(Duration::from_millis(5)).await;
    pending.abort();
    // Give the server a moment to notice the hang-up. The next GET must then find no session
    // (400 code 1) — an overlap rejection would mean the abort went unnoticed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_unknown_sid(&fx.poll(&sid).await);
}

// ----- message / WebSocket -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_websocket_sends_and_receives_a_plain_text_packet() {
    let fx = Fx::new(F).await;
    let (mut ws, _sid) = fx.ws_handshake().await;
    ws.send_text("4hello").await;
    assert_eq!(ws.recv_app_text().await, "4hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_websocket_sends_and_receives_a_binary_packet() {
    let fx = Fx::new(F).await;
    let (mut ws, _sid) = fx.ws_handshake().await;
    ws.send_binary(&[1, 2, 3, 4]).await;
    assert_eq!(ws.recv_app_binary().await, [1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_websocket_closes_the_session_upon_invalid_packet_format() {
    let fx = Fx::new(F).await;
    let (mut ws, _sid) = fx.ws_handshake().await;
    ws.send_text("abc").await;
    // Pings are answered, so only the parse error can close the connection.
    ws.expect_closed(true).await;
}

// ----- heartbeat -----------------------------------------------------------------------------

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

// ----- close ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_polling_forcefully_closes_the_session() {
    cases::close_polling_forcefully(F).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_websocket_forcefully_closes_the_session() {
    cases::close_ws_forcefully(F).await;
}

// ----- upgrade -------------------------------------------------------------------------------

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
