//! Fuzz target: one binary message through the msgpack parser (`Decoder::for_parser` with
//! `Parser::Msgpack`, i.e. `msgpack::decode`).
//!
//! Invariants: no panic, no hang; an accepted packet satisfies the per-type rules of the wire
//! spec (§2.1, §2.9); its encoding decodes again and re-encodes to the same bytes; text
//! messages are always refused.

#![no_main]

mod common;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard_protocol::socketio::{Decoded, Decoder};
use switchboard_protocol::{msgpack, DecodeError, PacketKind, Parser};

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::for_parser(Parser::Msgpack, 10, usize::MAX);
    match d.decode_binary(Bytes::copy_from_slice(data)) {
        Ok(Decoded::Packet(p)) => {
            assert!(!d.is_pending());
            assert!(p.nsp.starts_with('/'));
            let n = p.attachments().len();
            match &p.kind {
                PacketKind::Event { data, .. } => {
                    assert!(matches!(
                        data.first(),
                        Some(Value::String(_) | Value::Number(_))
                    ));
                    assert!(data.iter().all(|v| common::placeholders_in_range(v, n)));
                }
                PacketKind::Ack { data, .. } => {
                    assert!(data.iter().all(|v| common::placeholders_in_range(v, n)));
                }
                PacketKind::Connect(Some(v)) => assert!(v.is_object()),
                PacketKind::ConnectError(v) => assert!(v.is_object() || v.is_string()),
                _ => {}
            }
            let once = msgpack::encode(&p);
            let again = msgpack::decode(&once).expect("an encoded packet decodes");
            assert_eq!(msgpack::encode(&again), once);
        }
        Ok(Decoded::NeedAttachments) => panic!("the msgpack parser has no attachments"),
        Err(e) => {
            assert!(!d.is_pending());
            assert!(!e.code().is_empty());
        }
    }
    let text = String::from_utf8_lossy(data);
    assert_eq!(d.decode_text(&text), Err(DecodeError::TextMessage));
});
