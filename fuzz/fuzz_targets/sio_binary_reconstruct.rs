//! Fuzz target: binary packet reconstruction under arbitrary sequences of Engine.IO messages.
//!
//! Input layout: byte 0 picks `max_attachments` (0–11). Then repeated records: one control byte
//! `c`; if `c & 0x80 == 0` a text message of `c & 0x7f` bytes follows (`0x7f`: the rest of the
//! input), else a binary frame of `c & 0x0f` bytes follows.
//!
//! Invariants: no panic, no hang; a completed packet has between 1 and `max_attachments`
//! attachments, exactly the frames fed since its header, and every placeholder in range; the
//! decoder never holds more than `max_attachments` frames; an error drops the pending packet.

#![no_main]

mod common;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard_protocol::socketio::{DecodeError, Decoded, Decoder};

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(first % 12);
    let mut d = Decoder::new(max);
    // Frames taken by the pending packet so far.
    let mut buffered = 0usize;

    while let Some((&c, tail)) = rest.split_first() {
        let len = if c & 0x80 == 0 {
            usize::from(c & 0x7f)
        } else {
            usize::from(c & 0x0f)
        };
        let len = if c == 0x7f {
            tail.len()
        } else {
            len.min(tail.len())
        };
        let (chunk, tail) = tail.split_at(len);
        rest = tail;

        if c & 0x80 == 0 {
            let was_pending = d.is_pending();
            let text = String::from_utf8_lossy(chunk);
            match d.decode_text(&text) {
                Ok(Decoded::Packet(p)) => {
                    assert!(!was_pending && p.attachments().is_empty());
                    common::check_packet(&p, max);
                }
                Ok(Decoded::NeedAttachments) => {
                    assert!(!was_pending && d.is_pending() && max > 0);
                    buffered = 0;
                }
                Err(e) => {
                    if was_pending {
                        assert_eq!(e, DecodeError::UnexpectedText);
                    }
                    assert!(!d.is_pending());
                }
            }
        } else {
            let was_pending = d.is_pending();
            match d.decode_binary(Bytes::copy_from_slice(chunk)) {
                Ok(Decoded::Packet(p)) => {
                    buffered += 1;
                    assert!(was_pending && !d.is_pending());
                    assert_eq!(p.attachments().len(), buffered);
                    assert_eq!(p.attachments().last().map(|b| &b[..]), Some(chunk));
                    common::check_packet(&p, max);
                }
                Ok(Decoded::NeedAttachments) => {
                    buffered += 1;
                    assert!(was_pending && d.is_pending());
                    assert!(
                        buffered < max,
                        "buffered {buffered} frames with a cap of {max}"
                    );
                }
                Err(e) => {
                    if !was_pending {
                        assert_eq!(e, DecodeError::UnexpectedBinary);
                    }
                    assert!(!d.is_pending());
                }
            }
        }
    }
});
