//! Fuzz target: one Socket.IO text packet through `Decoder::decode_text`.
//!
//! Invariants: no panic, no hang; an accepted packet satisfies the per-type rules of the wire
//! spec (§2.1) and re-encodes to an equal packet; a binary header leaves the decoder pending.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::socketio::{Decoded, Decoder, DEFAULT_MAX_ATTACHMENTS};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut d = Decoder::default();
    match d.decode_text(&text) {
        Ok(Decoded::Packet(p)) => {
            assert!(p.attachments().is_empty());
            assert!(!d.is_pending());
            common::check_packet(&p, DEFAULT_MAX_ATTACHMENTS);
        }
        Ok(Decoded::NeedAttachments) => {
            assert!(d.is_pending());
            assert!(text.starts_with('5') || text.starts_with('6'));
        }
        Err(e) => {
            assert!(!d.is_pending());
            assert!(!e.code().is_empty());
        }
    }
});
