//! Fuzz target: client WebSocket frames through `websocket::WsDecoder`, whole and in chunks.
//!
//! Invariants: no panic, no hang; every call consumes input or returns; the messages (and the
//! first error) are the same whether the bytes arrive at once or in chunks of any size.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::websocket::{WsDecoder, WsError, WsMessage};

fn decode(data: &[u8], chunk: usize) -> (Vec<WsMessage>, Option<WsError>) {
    let mut d = WsDecoder::new(1 << 16);
    let mut out = Vec::new();
    for mut piece in data.chunks(chunk.max(1)) {
        loop {
            let before = piece.len();
            match d.decode(&mut piece) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => {
                    assert!(piece.is_empty());
                    break;
                }
                Err(e) => return (out, Some(e)),
            }
            assert!(piece.len() < before || piece.is_empty());
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let whole = decode(rest, rest.len());
    assert_eq!(decode(rest, usize::from(first % 16) + 1), whole);
});
