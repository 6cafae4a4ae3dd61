//! Fuzz target: Engine.IO v4 polling bodies (`\x1e`-separated records, `b` + base64), then each
//! decoded message through the Socket.IO decoder as the gateway would.
//!
//! Invariants: no panic, no hang; an accepted body re-encodes to an equal packet list; an
//! accepted single frame re-encodes to an equal packet; every Socket.IO packet round-trips.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::engine::EioPacket;
use switchboard_protocol::socketio::{Decoded, Decoder, DEFAULT_MAX_ATTACHMENTS};

fuzz_target!(|data: &[u8]| {
    // The transport hands the codec UTF-8 only; keep invalid inputs useful by replacing.
    let body = String::from_utf8_lossy(data);

    if let Ok(p) = EioPacket::decode_text(&body) {
        assert_eq!(EioPacket::decode_text(&p.encode_text()), Ok(p));
    }

    // A tiny limit exercises the packet-count check; the default one the decoding.
    let _ = common::check_payload(&body, 3);
    let Some(packets) = common::check_payload(&body, common::MAX_PACKETS) else {
        return;
    };
    let mut d = Decoder::default();
    for p in packets {
        let res = match p {
            EioPacket::Message(m) => d.decode_text(&m),
            EioPacket::Binary(b) => d.decode_binary(b),
            _ => continue,
        };
        match res {
            Ok(Decoded::Packet(p)) => common::check_packet(&p, DEFAULT_MAX_ATTACHMENTS),
            Ok(Decoded::NeedAttachments) => assert!(d.is_pending()),
            Err(_) => assert!(!d.is_pending()),
        }
    }
});
