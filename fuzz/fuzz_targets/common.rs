//! Checks shared by the fuzz targets: invariants of decoded packets and the round trip.

#![allow(dead_code)]

use serde_json::Value;

#[path = "../../crates/protocol/tests/close/mod.rs"]
mod close;
pub use close::packets_close;
use switchboard_protocol::engine::{decode_payload, EioPacket, SEPARATOR};
use switchboard_protocol::socketio::{placeholder_index, Decoded, Decoder, Packet, PacketKind};

/// The engine crate's default `max_packets_per_payload`.
pub const MAX_PACKETS: usize = 1024;

/// True when every `{"_placeholder":true,...}` object in `v` is an index below `count`.
pub fn placeholders_in_range(v: &Value, count: usize) -> bool {
    match v {
        Value::Array(items) => items.iter().all(|i| placeholders_in_range(i, count)),
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            placeholder_index(v).is_some_and(|n| n < count)
        }
        Value::Object(map) => map.values().all(|i| placeholders_in_range(i, count)),
        _ => true,
    }
}

/// Invariants of a packet the decoder produced, then `decode(encode(p)) == p`.
pub fn check_packet(p: &Packet, max_attachments: usize) {
    assert!(p.nsp.starts_with('/'));
    let n = p.attachments().len();
    assert!(n <= max_attachments);
    match &p.kind {
        PacketKind::Event { data, .. } => {
            assert!(matches!(
                data.first(),
                Some(Value::String(_) | Value::Number(_))
            ));
            if n > 0 {
                assert!(data.iter().all(|v| placeholders_in_range(v, n)));
            }
        }
        PacketKind::Ack { data, .. } if n > 0 => {
            assert!(data.iter().all(|v| placeholders_in_range(v, n)));
        }
        PacketKind::Connect(Some(v)) => assert!(v.is_object()),
        PacketKind::ConnectError(v) => assert!(v.is_object() || v.is_string()),
        _ => {}
    }

    let text = p.encode();
    let mut d = Decoder::new(max_attachments.max(n));
    let mut res = d.decode_text(&text);
    for a in p.attachments() {
        assert_eq!(res, Ok(Decoded::NeedAttachments), "{text:?}");
        res = d.decode_binary(a.clone());
    }
    match res {
        Ok(Decoded::Packet(q)) => assert!(packets_close(&q, p), "{text:?}: {q:?} != {p:?}"),
        other => panic!("{text:?} did not decode again: {other:?}"),
    }
}

/// Decodes a polling body, checks its round trip, and returns the packets.
pub fn check_payload(body: &str, max: usize) -> Option<Vec<EioPacket>> {
    let packets = decode_payload(body, max).ok()?;
    assert!(packets.len() <= max);
    let mut again = String::new();
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            again.push(SEPARATOR);
        }
        p.encode_text_into(&mut again);
    }
    assert_eq!(decode_payload(&again, max).as_ref(), Ok(&packets));
    Some(packets)
}
