//! The timing and ordering cases the official protocol suites check without margins, pinned
//! down here as Switchboard answers them (see docs/official-suites.md):
//! - the heartbeat deadline is an instant of the session, so a poll sent exactly
//!   pingInterval + pingTimeout after the handshake finds the session gone;
//! - a poll that reaches the server just after the client's close packet gets the noop, as a
//!   poll that was already waiting does, and the poll after it gets 400;
//! - a poll that arrives once the upgrade probe is answered is served like any other (what is
//!   queued for the client comes at once), but gets 400 after the client's `5` and, with
//!   nothing to carry and no `5`, the noop;
//! - a poll whose connection closes right after its request (often in the same read) is still
//!   handled, so its session closes and the next poll gets 400;
//! - a client that upgrades without ever polling keeps its session past pingTimeout (the
//!   upgrade's WebSocket counts as its first request);
//! - a probe that arrives while a POST is in flight is answered only once that POST has been
//!   answered (a client that reads `3probe` with a POST in flight holds what it emits until
//!   its poll ends).
//!
//! Runs against the in-process `conformance` example server (both paths).

mod common;

use std::time::Duration;

use common::{
    assert_eio_error, assert_unknown_sid, sid_query, ws_sid_query, Flavor, Fx, PING_INTERVAL,
    PING_TIMEOUT,
};

async fn poll_at_the_pong_deadline_is_refused(flavor: Flavor) {
    let fx = Fx::new(flavor).await;
    let sid = fx.polling_handshake().await;
    // No margin: the session opened before its handshake answer left the server.
    tokio::time::sleep(Duration::from_millis(PING_INTERVAL + PING_TIMEOUT)).await;
    assert_unknown_sid(&fx.poll(&sid).await);
}

async fn poll_after_the_close_packet_gets_the_noop(flavor: Flavor) {
    let fx = Fx::new(flavor).await;
    let sid = fx.polling_handshake().await;
    // The close POST wins the race outright: no GET is waiting when it lands.
    fx.send_payload(&sid, "1").await;
    let r = fx.poll(&sid).await;
    assert_eq!((r.status, r.text().as_str()), (200, "6"), "{r:?}");
    assert_unknown_sid(&fx.poll(&sid).await);
}

async fn poll_during_the_upgrade_waits_for_the_switch(flavor: Flavor) {
    let fx = Fx::new(flavor).await;
    let sid = fx.polling_handshake().await;
    let mut ws = fx.ws(&ws_sid_query(&sid)).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    let pending = fx
        .start_request("GET", &sid_query(&sid), None)
        .await
        .expect("GET during the upgrade");
    ws.send_text("5").await;
    let r = pending.response().await.expect("GET response");
    assert_eio_error(&r, 400, 3, "Bad request");
}

async fn poll_during_an_unfinished_upgrade_gets_the_noop(flavor: Flavor) {
    let fx = Fx::new(flavor).await;
    let sid = fx.polling_handshake().await;
    let mut ws = fx.ws(&ws_sid_query(&sid)).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    // The client has not sent `5`: the poll ends with a noop so that it can.
    let r = fx.poll(&sid).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"6".as_slice()),
        "{r:?}"
    );
}

async fn poll_closed_at_once_closes_the_session(flavor: Flavor) {
    let fx = Fx::new(flavor).await;
    // The head and the connection's end often land in one read; before the fix that request
    // was dropped unseen about one time in ten, so 20 rounds catch it nearly always.
    for round in 0..20 {
        let sid = fx.polling_handshake().await;
        fx.start_request("GET", &sid_query(&sid), None)
            .await
            .expect("GET written")
            .abort();
        // Let the server read the request and the end of its connection.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = fx.poll(&sid).await;
        assert_eq!(r.status, 400, "round {round}: {r:?}");
    }
}

async fn upgrade_without_a_poll_keeps_the_session(flavor: Flavor) {
    let fx = Fx::new(flavor).await;
    let sid = fx.polling_handshake().await;
    let mut ws = fx.ws(&ws_sid_query(&sid)).await;
    // Slower than pingTimeout (200 ms), which is how long a session that is never asked for is
    // kept, and well before the first pong is due (500 ms).
    tokio::time::sleep(Duration::from_millis(PING_TIMEOUT + 50)).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    ws.send_text("5").await;
    ws.send_text("3").await;
    // The session is on the WebSocket now: the old transport is refused.
    assert_eio_error(&fx.poll(&sid).await, 400, 3, "Bad request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_upgrade_without_a_poll_keeps_the_session() {
    upgrade_without_a_poll_keeps_the_session(Flavor::Engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_upgrade_without_a_poll_keeps_the_session() {
    upgrade_without_a_poll_keeps_the_session(Flavor::SocketIo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_poll_closed_at_once_closes_the_session() {
    poll_closed_at_once_closes_the_session(Flavor::Engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_poll_at_the_pong_deadline_is_refused() {
    poll_at_the_pong_deadline_is_refused(Flavor::Engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_poll_at_the_pong_deadline_is_refused() {
    poll_at_the_pong_deadline_is_refused(Flavor::SocketIo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_poll_after_the_close_packet_gets_the_noop() {
    poll_after_the_close_packet_gets_the_noop(Flavor::Engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_poll_after_the_close_packet_gets_the_noop() {
    poll_after_the_close_packet_gets_the_noop(Flavor::SocketIo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_poll_during_the_upgrade_waits_for_the_switch() {
    poll_during_the_upgrade_waits_for_the_switch(Flavor::Engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_poll_during_the_upgrade_waits_for_the_switch() {
    poll_during_the_upgrade_waits_for_the_switch(Flavor::SocketIo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_poll_during_an_unfinished_upgrade_gets_the_noop() {
    poll_during_an_unfinished_upgrade_gets_the_noop(Flavor::Engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_poll_during_an_unfinished_upgrade_gets_the_noop() {
    poll_during_an_unfinished_upgrade_gets_the_noop(Flavor::SocketIo).await;
}

/// The socket.io-client's upgrade: the client may still POST (and so get answers queued) after
/// the probe, and its next poll must carry them at once: the client waits for that poll to end
/// before it sends `5`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_poll_during_the_upgrade_carries_queued_packets() {
    let fx = Fx::new(Flavor::Engine).await;
    let sid = fx.polling_handshake().await;
    let mut ws = fx.ws(&ws_sid_query(&sid)).await;
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    // The echo is queued before the poll arrives.
    fx.send_payload(&sid, "4hello").await;
    let r = fx.poll(&sid).await;
    assert_eq!((r.status, r.text().as_str()), (200, "4hello"), "{r:?}");
    ws.send_text("5").await;
    ws.send_text("4again").await;
    assert_eq!(ws.recv_text().await, "4again");
}

/// The socket.io-client emits as it connects, while its CONNECT's POST may still be in flight;
/// if `3probe` came then, it would hold those events until its poll ended. So the probe waits
/// for the POST (here one whose body is still on its way) to be answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_waits_for_the_post_in_flight() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fx = Fx::new(Flavor::Engine).await;
    let sid = fx.polling_handshake().await;
    let mut post = tokio::net::TcpStream::connect(&fx.host)
        .await
        .expect("connect for the POST");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 6\r\n\r\n4he",
        fx.target(&sid_query(&sid)),
        fx.host
    );
    post.write_all(head.as_bytes()).await.expect("POST head");
    let mut ws = fx.ws(&ws_sid_query(&sid)).await;
    ws.send_text("2probe").await;
    // Nothing may come while the POST's body is incomplete (this can only fail early).
    let early = tokio::time::timeout(Duration::from_millis(300), ws.recv()).await;
    assert!(
        early.is_err(),
        "answered the probe during a POST: {early:?}"
    );
    post.write_all(b"llo").await.expect("POST body");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), post.read_to_end(&mut answer))
        .await
        .expect("POST answered")
        .expect("POST read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(ws.recv_text().await, "3probe");
    // The echo (after any ping of the short test heartbeat).
    let r = fx.poll(&sid).await;
    let text = r.text();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(text.split('\u{1e}').next_back(), Some("4hello"), "{r:?}");
}
