//! Robustness tests for the codecs: decoding never panics, never hangs, and refuses exactly
//! what the spec says to refuse.
//!
//! - (a) The malicious-input corpus of `hardening.md` §1.1 / §1.9 (Socket.IO and Engine.IO
//!   parts), each with the accept/reject that `socketio-wire.md` §1.2, §1.4, §2.2, §2.3 expects.
//! - (b) A deterministic mutation loop (xorshift PRNG, ~200k iterations) over valid packets,
//!   with random interleavings of binary frames, checking "no panic" and the round-trip property
//!   `decode(encode(p)) == p` for every packet that decodes.
//! - (c) Size bombs: 100k nested `[` and a ~1 MB polling body of 2-byte packets.
//!
//! Hangs show up as a test that never finishes; nothing here measures time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod close;

use bytes::Bytes;
use serde_json::{json, Value};
use switchboard_protocol::engine::{decode_payload, EioDecodeError, EioPacket, SEPARATOR};
use switchboard_protocol::socketio::{
    placeholder, placeholder_index, DecodeError, Decoded, Decoder, Packet, PacketKind,
    DEFAULT_MAX_ATTACHMENTS, RESERVED_EVENTS,
};

/// The engine crate's default `max_packets_per_payload`.
const MAX_PACKETS: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn sio(text: &str) -> Result<Decoded, DecodeError> {
    Decoder::default().decode_text(text)
}

fn sio_packet(text: &str) -> Packet {
    match sio(text) {
        Ok(Decoded::Packet(p)) => p,
        other => panic!("{text:?} should decode to a packet, got {other:?}"),
    }
}

/// Feeds a header then `frames` to a fresh decoder; returns the final result.
fn sio_binary(header: &str, frames: &[&[u8]]) -> Result<Decoded, DecodeError> {
    let mut d = Decoder::default();
    let mut last = d.decode_text(header);
    for frame in frames {
        if last.is_err() {
            break;
        }
        last = d.decode_binary(Bytes::copy_from_slice(frame));
    }
    if last.is_err() {
        assert!(!d.is_pending(), "an error must drop the pending packet");
    }
    last
}

fn event(nsp: &str, data: Vec<Value>, id: Option<u64>, attachments: Vec<Bytes>) -> Packet {
    Packet {
        nsp: nsp.to_owned(),
        kind: PacketKind::Event {
            data,
            id,
            attachments,
        },
    }
}

/// True when every `{"_placeholder":true,...}` object in `v` is a valid index below `count`.
fn placeholders_in_range(v: &Value, count: usize) -> bool {
    match v {
        Value::Array(items) => items.iter().all(|i| placeholders_in_range(i, count)),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                placeholder_index(v).is_some_and(|n| n < count)
            } else {
                map.values().all(|i| placeholders_in_range(i, count))
            }
        }
        _ => true,
    }
}

/// Encodes `p` and decodes it again (feeding its attachments), returning the decoded packet.
fn sio_round_trip(p: &Packet) -> Result<Packet, String> {
    let text = p.encode();
    let mut d = Decoder::new(p.attachments().len().max(DEFAULT_MAX_ATTACHMENTS));
    let mut res = d.decode_text(&text);
    for a in p.attachments() {
        match res {
            Ok(Decoded::NeedAttachments) => res = d.decode_binary(a.clone()),
            other => return Err(format!("{text:?}: header gave {other:?}")),
        }
    }
    match res {
        Ok(Decoded::Packet(q)) => Ok(q),
        other => Err(format!("{text:?}: re-decoding gave {other:?}")),
    }
}

/// Checks the invariants of a packet that came out of the decoder, then the round trip.
fn check_decoded_sio(p: &Packet, origin: &str) {
    assert!(p.nsp.starts_with('/'), "{origin:?}: nsp {:?}", p.nsp);
    match &p.kind {
        PacketKind::Event {
            data, attachments, ..
        } => {
            assert!(!data.is_empty(), "{origin:?}: event without a name");
            match &data[0] {
                Value::String(name) => {
                    assert!(!RESERVED_EVENTS.contains(&name.as_str()), "{origin:?}");
                }
                Value::Number(_) => {}
                other => panic!("{origin:?}: event name {other:?}"),
            }
            if !attachments.is_empty() {
                assert!(attachments.len() <= DEFAULT_MAX_ATTACHMENTS, "{origin:?}");
                assert!(
                    data.iter()
                        .all(|v| placeholders_in_range(v, attachments.len())),
                    "{origin:?}: placeholder out of range"
                );
            }
        }
        PacketKind::Ack {
            data, attachments, ..
        } => {
            if !attachments.is_empty() {
                assert!(attachments.len() <= DEFAULT_MAX_ATTACHMENTS, "{origin:?}");
                assert!(
                    data.iter()
                        .all(|v| placeholders_in_range(v, attachments.len())),
                    "{origin:?}: placeholder out of range"
                );
            }
        }
        PacketKind::Connect(Some(v)) => assert!(v.is_object(), "{origin:?}"),
        PacketKind::ConnectError(v) => assert!(v.is_object() || v.is_string(), "{origin:?}"),
        PacketKind::Connect(None) | PacketKind::Disconnect => {}
    }
    match sio_round_trip(p) {
        Ok(q) => assert!(
            close::packets_close(&q, p),
            "{origin:?}: round trip changed the packet\n  left: {q:?}\n right: {p:?}"
        ),
        Err(e) => panic!("{origin:?}: round trip failed: {e}"),
    }
}

/// Strict float round trip: what a relayed event must preserve (JS `JSON.stringify` writes the
/// shortest representation, and every client expects to read back the same double).
///
/// Holds because the workspace enables serde_json's `float_roundtrip` feature.
#[test]
fn float_values_survive_reencoding() {
    for text in [
        "2[\"f\",1.2889701057240635]",
        "2[\"f\",0.019720514892501026]",
        "2[\"f\",15957.752149382113]",
    ] {
        let p = sio_packet(text);
        assert_eq!(
            p.encode(),
            text,
            "the relayed text must carry the same number"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (a) Socket.IO corpus: hardening.md §1.1
// ---------------------------------------------------------------------------------------------

/// socket.io-parser's own regression strings (hardening §1.1, CVE-2023-32695 row), with the
/// error the wire spec (§2.1, §2.3) assigns to each.
#[test]
fn parser_regression_strings_are_refused() {
    use DecodeError::*;
    let cases: &[(&str, DecodeError)] = &[
        // Type 4, ack id 42, then truncated JSON.
        ("442[\"some\",\"data\"", InvalidJson),
        ("0/admin,\"invalid\"", InvalidPayload),
        ("0[]", InvalidPayload),
        ("1/admin,{}", InvalidPayload),
        ("2/admin,\"invalid", InvalidJson),
        ("2/admin,{}", InvalidPayload),
        ("2[{\"toString\":\"foo\"}]", InvalidEventName),
        ("2[true,\"foo\"]", InvalidEventName),
        ("2[null,\"bar\"]", InvalidEventName),
        ("2[\"connect\"]", InvalidEventName),
        ("2[\"disconnect\",\"123\"]", InvalidEventName),
        ("5", IllegalAttachments),
        ("51", IllegalAttachments),
        ("5a-", IllegalAttachments),
        ("51.23-", IllegalAttachments),
        ("999", UnknownType),
        // §2.3 test cases (without the Engine.IO `4`).
        ("abc", UnknownType),
        ("2{}", InvalidPayload),
        ("2abc[\"message-with-ack\",1]", InvalidJson),
        ("", Empty),
        ("7", UnknownType),
        ("é", UnknownType),
    ];
    for (input, expected) in cases {
        assert_eq!(sio(input), Err(expected.clone()), "input {input:?}");
    }
}

/// The §2.2 examples decode and re-encode to exactly the same text.
#[test]
fn spec_examples_decode_and_reencode_exactly() {
    for text in [
        "0",
        "0/admin,{\"token\":\"123\"}",
        "0{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}",
        "0{\"sid\":\"GNpWD7LbGCBNCr8GAAAB\",\"pid\":\"YHcX2sdAF1z452-HAAAW\"}",
        "4{\"message\":\"Not authorized\"}",
        "4/random,{\"message\":\"Invalid namespace\"}",
        "2[\"hey\",\"Jude\"]",
        "2/admin,[\"bar\"]",
        "212[\"foo\"]",
        "2/admin,13[\"foo\"]",
        "312[\"bar\"]",
        "3/admin,13[\"bar\"]",
        "3456[]",
        "1",
        "1/admin,",
    ] {
        let p = sio_packet(text);
        assert_eq!(p.encode(), text);
        check_decoded_sio(&p, text);
    }
    // `40/custom` without a comma is valid and names `/custom` (§2.3).
    assert_eq!(sio_packet("0/custom").nsp, "/custom");

    let binary = [
        ("51-[\"baz\",{\"_placeholder\":true,\"num\":0}]", 1),
        (
            "52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
            2,
        ),
        ("61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]", 1),
    ];
    for (header, n) in binary {
        let frames: Vec<&[u8]> = (0..n).map(|_| &[1u8, 2, 3, 4][..]).collect();
        let Ok(Decoded::Packet(p)) = sio_binary(header, &frames) else {
            panic!("{header:?} should reassemble");
        };
        assert_eq!(p.attachments().len(), n);
        assert_eq!(p.encode(), header);
        check_decoded_sio(&p, header);
    }
}

/// CVE-2022-2421: placeholder `num` that is not an in-range integer index.
#[test]
fn cve_2022_2421_bad_placeholders_are_refused() {
    let header = |num: &str| format!("51-[\"hello\",{{\"_placeholder\":true,\"num\":{num}}}]");
    for num in [
        "\"splice\"",
        "\"0\"",
        "\"x\"",
        "1.5",
        "-1",
        "1",
        "2",
        "null",
        "true",
    ] {
        let text = header(num);
        assert_eq!(
            sio_binary(&text, &[b"\x01"]),
            Err(DecodeError::InvalidPlaceholder),
            "num {num}"
        );
    }
    // Missing `num`.
    assert_eq!(
        sio_binary("51-[\"hello\",{\"_placeholder\":true}]", &[b"\x01"]),
        Err(DecodeError::InvalidPlaceholder)
    );
    // Nested out-of-range placeholder (arrays by index, objects by key: §2.3).
    assert_eq!(
        sio_binary(
            "51-[\"a\",{\"k\":[{\"_placeholder\":true,\"num\":7}]}]",
            &[b"\x01"]
        ),
        Err(DecodeError::InvalidPlaceholder)
    );
    // `1e309` is not JSON serde_json accepts (it overflows f64): the header itself is refused.
    assert_eq!(sio(&header("1e309")), Err(DecodeError::InvalidJson));
    // A placeholder as the event name position in a binary event is not a string or number.
    assert_eq!(
        sio("51-[{\"_placeholder\":true,\"num\":0}]"),
        Err(DecodeError::InvalidEventName)
    );

    // Duplicated placeholders: both in range, so accepted, as the reference parser does.
    let Ok(Decoded::Packet(p)) = sio_binary(
        "52-[\"a\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":0}]",
        &[b"x", b"y"],
    ) else {
        panic!("duplicated in-range placeholders are valid");
    };
    check_decoded_sio(&p, "duplicated placeholders");
    // In-range placeholder `num:0` with the exact attachment count.
    let Ok(Decoded::Packet(p)) = sio_binary(&header("0"), &[b"\x01\x02"]) else {
        panic!("valid binary event");
    };
    assert_eq!(p.attachments(), &[Bytes::from_static(b"\x01\x02")]);
}

/// CVE-2022-2421 (fix part 2): ordering violations during reconstruction.
#[test]
fn reassembly_order_violations_are_refused() {
    // Binary frame with no pending header.
    let mut d = Decoder::default();
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"x")),
        Err(DecodeError::UnexpectedBinary)
    );
    // Binary frame after a complete plain event.
    assert!(matches!(d.decode_text("2[\"a\"]"), Ok(Decoded::Packet(_))));
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"x")),
        Err(DecodeError::UnexpectedBinary)
    );
    // Text while reconstructing; the pending packet is dropped and the decoder is usable again.
    assert_eq!(
        d.decode_text("52-[\"a\",{\"_placeholder\":true,\"num\":0}]"),
        Ok(Decoded::NeedAttachments)
    );
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"1")),
        Ok(Decoded::NeedAttachments)
    );
    assert_eq!(d.decode_text("2[\"a\"]"), Err(DecodeError::UnexpectedText));
    assert!(!d.is_pending());
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"2")),
        Err(DecodeError::UnexpectedBinary)
    );
    assert!(matches!(d.decode_text("2[\"a\"]"), Ok(Decoded::Packet(_))));
    // One frame too many after completion.
    let mut d = Decoder::default();
    assert_eq!(
        d.decode_text("51-[\"a\",{\"_placeholder\":true,\"num\":0}]"),
        Ok(Decoded::NeedAttachments)
    );
    assert!(matches!(
        d.decode_binary(Bytes::from_static(b"1")),
        Ok(Decoded::Packet(_))
    ));
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"2")),
        Err(DecodeError::UnexpectedBinary)
    );
    // Empty binary frames are legitimate attachments.
    assert!(matches!(
        sio_binary("51-[\"a\",{\"_placeholder\":true,\"num\":0}]", &[b""]),
        Ok(Decoded::Packet(_))
    ));
}

/// A `_placeholder` object inside a non-binary event is plain data.
#[test]
fn placeholder_in_plain_event_is_plain_data() {
    for text in [
        "2[\"a\",{\"_placeholder\":true,\"num\":0}]",
        "2[\"a\",{\"_placeholder\":true,\"num\":\"splice\"}]",
        "3[{\"_placeholder\":true,\"num\":-1}]",
    ] {
        assert!(sio(text).is_err() || sio_packet(text).attachments().is_empty());
    }
    let p = sio_packet("2[\"a\",{\"_placeholder\":true,\"num\":\"splice\"}]");
    assert_eq!(
        p,
        event(
            "/",
            vec![json!("a"), json!({"_placeholder": true, "num": "splice"})],
            None,
            vec![]
        )
    );
    check_decoded_sio(&p, "plain placeholder");
    // `3[...]` lacks an ack id: refused regardless of content.
    assert_eq!(
        sio("3[{\"_placeholder\":true,\"num\":-1}]"),
        Err(DecodeError::InvalidAckId)
    );
}

/// CVE-2023-32695: event names that are not a string or number, or are reserved.
#[test]
fn cve_2023_32695_bad_event_names_are_refused() {
    let mut names: Vec<String> = [
        "{\"toString\":\"foo\"}",
        "[]",
        "[\"a\"]",
        "null",
        "true",
        "false",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.extend(RESERVED_EVENTS.iter().map(|n| format!("\"{n}\"")));
    for name in &names {
        for text in [
            format!("2[{name}]"),
            format!("2[{name},1,2]"),
            format!("2/admin,7[{name}]"),
            format!("51-[{name},{{\"_placeholder\":true,\"num\":0}}]"),
        ] {
            assert_eq!(sio(&text), Err(DecodeError::InvalidEventName), "{text:?}");
        }
    }
    assert_eq!(sio("2[]"), Err(DecodeError::InvalidEventName));
    assert_eq!(sio("51-[]"), Err(DecodeError::InvalidEventName));
    // Numbers are valid names; so are names that only look internal (CVE-2024-38355's `error`
    // is handled by the dispatcher, not the parser: the reserved list is §2.3's six names).
    for text in [
        "2[1]",
        "2[-1.5,\"x\"]",
        "2[\"error\"]",
        "2[\"__proto__\"]",
        "2[\"\"]",
    ] {
        check_decoded_sio(&sio_packet(text), text);
    }
}

/// CVE-2026-33151 and CVE-2026-69185: attachment counts.
#[test]
fn attachment_counts_are_bounded() {
    for text in [
        "5-1-[\"a\"]",
        "51e9-[\"a\"]",
        "5999999999-[\"a\"]",
        "5184467440737095516160-[\"a\"]",
        "511-[\"a\"]",
        "5100-[\"a\"]",
        "5 1-[\"a\"]",
        "5+1-[\"a\"]",
        "5-[\"a\"]",
        "50-[\"a\"]",
        "500-[\"a\"]",
        "50-[]",
        "60-[]",
        "60-1[\"a\"]",
        "5invalid",
        "5/admin-x,[\"a\"]",
    ] {
        assert_eq!(sio(text), Err(DecodeError::IllegalAttachments), "{text:?}");
    }

    // Exactly the limit is accepted, and completes only after every frame.
    let header = format!(
        "510-[\"a\"{}]",
        (0..10)
            .map(|i| format!(",{}", placeholder(i)))
            .collect::<String>()
    );
    let mut d = Decoder::default();
    assert_eq!(d.decode_text(&header), Ok(Decoded::NeedAttachments));
    for i in 0..9u8 {
        assert_eq!(
            d.decode_binary(Bytes::from(vec![i])),
            Ok(Decoded::NeedAttachments)
        );
    }
    let Ok(Decoded::Packet(p)) = d.decode_binary(Bytes::from_static(b"last")) else {
        panic!("the tenth frame completes the packet");
    };
    assert_eq!(p.attachments().len(), 10);
    check_decoded_sio(&p, &header);

    // A count that never completes: a text packet ends it, and a flood of frames is refused.
    let mut d = Decoder::default();
    assert_eq!(d.decode_text(&header), Ok(Decoded::NeedAttachments));
    for _ in 0..9 {
        assert_eq!(
            d.decode_binary(Bytes::from_static(b"x")),
            Ok(Decoded::NeedAttachments)
        );
    }
    assert_eq!(d.decode_text("2[\"a\"]"), Err(DecodeError::UnexpectedText));
    for _ in 0..1000 {
        assert_eq!(
            d.decode_binary(Bytes::from_static(b"x")),
            Err(DecodeError::UnexpectedBinary)
        );
    }
    assert!(!d.is_pending());

    // A custom limit.
    let mut d = Decoder::new(2);
    assert_eq!(
        d.decode_text("53-[\"a\"]"),
        Err(DecodeError::IllegalAttachments)
    );
    assert_eq!(d.decode_text("52-[\"a\"]"), Ok(Decoded::NeedAttachments));
    let mut d = Decoder::new(0);
    assert_eq!(
        d.decode_text("51-[\"a\"]"),
        Err(DecodeError::IllegalAttachments)
    );
}

/// CVE-2020-36049: a large (~1 MB) text packet decodes once, whole.
#[test]
fn large_text_packet_decodes() {
    let big = "x".repeat(1 << 20);
    let text = format!("2[\"upload\",\"{big}\"]");
    let p = sio_packet(&text);
    assert_eq!(
        p,
        event("/", vec![json!("upload"), json!(big)], None, vec![])
    );
    assert_eq!(p.encode(), text);
    // Truncated by one byte: refused, not buffered.
    assert_eq!(sio(&text[..text.len() - 1]), Err(DecodeError::InvalidJson));
}

// ---------------------------------------------------------------------------------------------
// (a) Socket.IO corpus: hardening.md §1.9
// ---------------------------------------------------------------------------------------------

#[test]
fn summary_corpus_socketio() {
    // Ack ids around u64::MAX.
    assert_eq!(
        sio("218446744073709551616[\"a\"]"),
        Err(DecodeError::InvalidAckId)
    );
    assert_eq!(
        sio("399999999999999999999999[]"),
        Err(DecodeError::InvalidAckId)
    );
    let p = sio_packet("218446744073709551615[\"a\"]");
    assert_eq!(p, event("/", vec![json!("a")], Some(u64::MAX), vec![]));
    check_decoded_sio(&p, "u64::MAX ack id");
    // Leading zeros in an ack id are tolerated (maximal digit run, §2.3).
    assert!(matches!(
        sio_packet("3007[]").kind,
        PacketKind::Ack { id: 7, .. }
    ));

    // Namespace edge cases: the decoder accepts them; whether the namespace exists is the
    // server's decision (`44/unknown,{"message":"Invalid namespace"}`).
    assert_eq!(sio_packet("0/unknown,").nsp, "/unknown");
    assert_eq!(sio_packet("0/a*,").nsp, "/a*");
    assert_eq!(sio_packet("0/,").nsp, "/");
    let long_nsp = format!("/{}", "n".repeat(10 * 1024));
    let p = sio_packet(&format!("0{long_nsp},"));
    assert_eq!(p.nsp, long_nsp);
    check_decoded_sio(&p, "10 KB namespace");
    // A namespace without a comma swallows the rest: an event needs a payload.
    assert_eq!(sio("2/admin[\"a\"]"), Err(DecodeError::InvalidPayload));

    // CONNECT with a non-object payload; DISCONNECT with a payload.
    assert_eq!(sio("0\"x\""), Err(DecodeError::InvalidPayload));
    assert_eq!(sio("0[]"), Err(DecodeError::InvalidPayload));
    assert_eq!(sio("0null"), Err(DecodeError::InvalidPayload));
    assert_eq!(sio("1/admin,{}"), Err(DecodeError::InvalidPayload));
    assert_eq!(sio("1[]"), Err(DecodeError::InvalidPayload));
    // CONNECT_ERROR: object or string only, and required.
    assert_eq!(sio("4"), Err(DecodeError::InvalidPayload));
    assert_eq!(sio("4[1]"), Err(DecodeError::InvalidPayload));
    check_decoded_sio(&sio_packet("4\"v4 style\""), "string connect_error");
    // ACK needs an id and an array.
    assert_eq!(sio("3[\"no id\"]"), Err(DecodeError::InvalidAckId));
    assert_eq!(sio("31{}"), Err(DecodeError::InvalidPayload));
    assert_eq!(sio("31"), Err(DecodeError::InvalidPayload));

    // Duplicate keys: the last one wins (as JSON.parse does).
    let p = sio_packet("2[\"a\",{\"k\":1,\"k\":2}]");
    assert_eq!(
        p,
        event("/", vec![json!("a"), json!({"k": 2})], None, vec![])
    );
    // Lone surrogates: serde_json refuses them (JSON.parse would accept).
    assert_eq!(sio("2[\"\\ud800\"]"), Err(DecodeError::InvalidJson));
    assert_eq!(sio("2[\"a\",\"\\udc00x\"]"), Err(DecodeError::InvalidJson));
    // A valid surrogate pair is fine.
    check_decoded_sio(&sio_packet("2[\"\\ud83d\\ude00\"]"), "surrogate pair");
    // Numbers that overflow f64.
    assert_eq!(sio("2[\"a\",1e999999]"), Err(DecodeError::InvalidJson));
    assert_eq!(sio("2[\"a\",-1e309]"), Err(DecodeError::InvalidJson));
    // Trailing garbage after the JSON.
    assert_eq!(sio("2[\"a\"]x"), Err(DecodeError::InvalidJson));
    assert_eq!(sio("2[\"a\"][\"b\"]"), Err(DecodeError::InvalidJson));

    // Invalid UTF-8 cannot reach the `&str` API; the transport refuses or replaces it. After
    // lossy replacement the decoder sees U+FFFD and must not panic on multi-byte characters.
    let lossy = String::from_utf8_lossy(b"2[\"\xff\xfe\",\"\xc3\"]");
    check_decoded_sio(&sio_packet(&lossy), "lossy UTF-8");
    for text in [
        "\u{fffd}",
        "2\u{fffd}",
        "5\u{fffd}-",
        "51\u{fffd}-",
        "2/é,é",
    ] {
        assert!(sio(text).is_err(), "{text:?}");
    }
    assert_eq!(sio_packet("0/\u{fffd}").nsp, "/\u{fffd}");
}

// ---------------------------------------------------------------------------------------------
// (a) Engine.IO corpus: hardening.md §1.2 / §1.6 / §1.9, wire spec §1.2 / §1.4
// ---------------------------------------------------------------------------------------------

#[test]
fn engineio_packet_corpus() {
    use EioDecodeError::*;
    for (input, expected) in [
        ("7", UnknownType),
        ("8", UnknownType),
        ("9", UnknownType),
        ("7hello", UnknownType),
        ("", Empty),
        ("a", UnknownType),
        ("B", UnknownType),
        (" 4", UnknownType),
        ("\x1e", UnknownType),
        ("é", UnknownType),
        ("\u{fffd}", UnknownType),
        // v3 length prefix: not v4 framing.
        ("99999991:4222", UnknownType),
        ("b!!", InvalidBase64),
        ("b=", InvalidBase64),
        ("bA", InvalidBase64),
        ("b AQID", InvalidBase64),
        ("bAQID\n", InvalidBase64),
        ("bé", InvalidBase64),
    ] {
        assert_eq!(EioPacket::decode_text(input), Err(expected), "{input:?}");
    }
    // v3 length prefixes whose first digit happens to be a v4 type decode as that type; the
    // session layer then sees a nonsense close/noop, never a crash.
    assert_eq!(EioPacket::decode_text("11:4hello"), Ok(EioPacket::Close));
    assert_eq!(EioPacket::decode_text("6:4hello"), Ok(EioPacket::Noop));
    // Every defined type, and the empty message `4`.
    assert_eq!(
        EioPacket::decode_text("4"),
        Ok(EioPacket::Message(String::new()))
    );
    assert_eq!(
        EioPacket::decode_text("b"),
        Ok(EioPacket::Binary(Bytes::new()))
    );
    assert_eq!(
        EioPacket::decode_text("bAQIDBA=="),
        Ok(EioPacket::Binary(Bytes::from_static(&[1, 2, 3, 4])))
    );
    // A `\x1e` inside one WebSocket frame is data, not a separator.
    assert_eq!(
        EioPacket::decode_text("4a\x1e4b"),
        Ok(EioPacket::Message("a\x1e4b".into()))
    );
}

#[test]
fn engineio_payload_corpus() {
    // Only separators: every record is empty.
    for body in [
        "\x1e",
        "\x1e\x1e",
        &"\x1e".repeat(10_000),
        "4a\x1e",
        "\x1e4a",
    ] {
        assert_eq!(
            decode_payload(body, MAX_PACKETS),
            Err(EioDecodeError::Empty)
        );
    }
    assert_eq!(decode_payload("", MAX_PACKETS), Err(EioDecodeError::Empty));
    // The first bad record fails the whole payload.
    assert_eq!(
        decode_payload("4a\x1e7\x1e4b", MAX_PACKETS),
        Err(EioDecodeError::UnknownType)
    );
    assert_eq!(
        decode_payload("4a\x1eb!!", MAX_PACKETS),
        Err(EioDecodeError::InvalidBase64)
    );
    // §1.4 examples.
    assert_eq!(
        decode_payload("4hello\x1e2\x1e4world", MAX_PACKETS),
        Ok(vec![
            EioPacket::Message("hello".into()),
            EioPacket::Ping(String::new()),
            EioPacket::Message("world".into()),
        ])
    );
    assert_eq!(
        decode_payload(
            "451-[\"message-back\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID",
            MAX_PACKETS
        ),
        Ok(vec![
            EioPacket::Message("51-[\"message-back\",{\"_placeholder\":true,\"num\":0}]".into()),
            EioPacket::Binary(Bytes::from_static(&[1, 2, 3])),
        ])
    );
    // v3 framing as a v4 body: `2:42` is one record, a ping carrying `:42`, which the session
    // layer refuses on v4 (wrong heartbeat direction); the codec itself accepts it.
    assert_eq!(
        decode_payload("2:422:42", MAX_PACKETS),
        Ok(vec![EioPacket::Ping(":422:42".into())])
    );
    // v3 binary payloads (socketioxide #739/#741) are not UTF-8; after lossy replacement they
    // are refused at once.
    for raw in [
        &[1u8, 5, 255, 4, 1, 2][..],
        &[0, 208, 4],
        &[1, 255, 255, 255],
        &[4, 0xd0, 0xff],
    ] {
        let body = String::from_utf8_lossy(raw);
        assert_eq!(
            decode_payload(&body, MAX_PACKETS),
            Err(EioDecodeError::UnknownType),
            "{raw:?}"
        );
    }
    // The packet limit is exact.
    let body = vec!["4x"; 16].join("\x1e");
    assert_eq!(decode_payload(&body, 16).map(|p| p.len()), Ok(16));
    assert_eq!(
        decode_payload(&body, 15),
        Err(EioDecodeError::TooManyPackets)
    );
}

// ---------------------------------------------------------------------------------------------
// (c) Size bombs
// ---------------------------------------------------------------------------------------------

#[test]
fn deeply_nested_json_is_refused_without_overflow() {
    const N: usize = 100_000;
    let open = "[".repeat(N);
    let balanced = format!("{open}{}", "]".repeat(N));
    let objects = format!("{}1{}", "{\"a\":".repeat(N), "}".repeat(N));
    for body in [&open, &balanced, &objects] {
        for prefix in ["2", "2[\"a\",", "3/a,1", "0", "4", "51-", "51-[\"a\","] {
            let text = format!("{prefix}{body}");
            let res = sio(&text);
            assert!(res.is_err(), "{prefix}+nested must be refused");
            assert!(
                matches!(
                    res,
                    Err(DecodeError::InvalidJson | DecodeError::InvalidPayload)
                ),
                "{prefix}: {res:?}"
            );
        }
    }
    // Nesting within serde_json's limit decodes, and placeholder checks walk it.
    let depth = 100;
    let header = format!(
        "51-[\"a\",{}{}{}]",
        "[".repeat(depth),
        placeholder(0),
        "]".repeat(depth)
    );
    let Ok(Decoded::Packet(p)) = sio_binary(&header, &[b"x"]) else {
        panic!("moderately nested placeholder is valid");
    };
    check_decoded_sio(&p, "nested placeholder");
    // Engine.IO does not parse JSON: a nested message is just text.
    let msg = format!("4{open}");
    assert_eq!(
        EioPacket::decode_text(&msg),
        Ok(EioPacket::Message(open.clone()))
    );
}

#[test]
fn polling_packet_count_bomb_completes() {
    // ~1 MB of 2-byte packets (`4x`) separated by `\x1e`.
    let count = (1 << 20) / 3;
    let body = vec!["4x"; count].join("\x1e");
    assert!(body.len() >= 1_000_000);
    assert_eq!(
        decode_payload(&body, MAX_PACKETS),
        Err(EioDecodeError::TooManyPackets)
    );
    assert_eq!(
        decode_payload(&body, 16),
        Err(EioDecodeError::TooManyPackets)
    );
    // Without a limit the work is still linear and finishes.
    let all = decode_payload(&body, usize::MAX).expect("all records are valid");
    assert_eq!(all.len(), count);
    assert!(all.iter().all(|p| *p == EioPacket::Message("x".into())));
    // Pings and an invalid tail: the whole payload fails, after a linear scan.
    let mut bad = vec!["2"; count].join("\x1e");
    bad.push_str("\x1e9");
    assert_eq!(
        decode_payload(&bad, usize::MAX),
        Err(EioDecodeError::UnknownType)
    );
    // Each record fed to the Socket.IO decoder too (`4x` → `x`: unknown type).
    let mut d = Decoder::default();
    let mut refused = 0usize;
    for p in &all {
        if let EioPacket::Message(m) = p {
            if d.decode_text(m).is_err() {
                refused += 1;
            }
        }
    }
    assert_eq!(refused, count);
}

// ---------------------------------------------------------------------------------------------
// (b) Deterministic mutation loop
// ---------------------------------------------------------------------------------------------

/// xorshift64* — tiny, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const TOKENS: &[&[u8]] = &[
    b"\"",
    b"[",
    b"]",
    b"{",
    b"}",
    b"-",
    b",",
    b"/",
    b":",
    b"\x1e",
    b"0",
    b"1",
    b"5",
    b"9",
    b"b",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"e9",
    b".5",
    b"null",
    b"true",
    b"\"_placeholder\":true",
    b"\"num\":",
    b"{\"_placeholder\":true,\"num\":0}",
    b"18446744073709551616",
    b"\xc3\xa9",
    b"\xff",
];

const SIO_SEEDS: &[&str] = &[
    "0",
    "0/admin,{\"token\":\"123\"}",
    "0{\"sid\":\"wZX3oN0bSVIhsaknAAAI\",\"pid\":\"YHcX2sdAF1z452-HAAAW\"}",
    "1",
    "1/admin,",
    "2[\"hey\",\"Jude\"]",
    "2/admin,13[\"foo\"]",
    "2[\"message\",{\"a\":1,\"b\":[1.5,-2,true,null,\"x\\\"y\"],\"c\":{\"d\":\"é\"}}]",
    "2[42,\"numbered\"]",
    "3456[]",
    "3/admin,13[\"bar\",{\"ok\":true}]",
    "4{\"message\":\"Not authorized\",\"data\":{\"code\":3}}",
    "4/random,{\"message\":\"Invalid namespace\"}",
    "4\"v4\"",
    "51-[\"baz\",{\"_placeholder\":true,\"num\":0}]",
    "52-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]",
    "61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]",
    "62-/a,7[{\"x\":[{\"_placeholder\":true,\"num\":1}]},{\"_placeholder\":true,\"num\":0}]",
    "51-[\"hello\",{\"_placeholder\":true,\"num\":\"splice\"}]",
    "2[\"a\",1e308,-0,0.1,123456789012345678901234567890]",
    "218446744073709551615[\"a\"]",
    "442[\"some\",\"data\"",
    "5invalid",
];

const EIO_SEEDS: &[&str] = &[
    "0{\"sid\":\"abc\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000}",
    "1",
    "2",
    "2probe",
    "3probe",
    "4hello",
    "42[\"message\",{\"a\":1}]",
    "5",
    "6",
    "bAQIDBA==",
    "b",
    "4hello\x1e2\x1e4world",
    "4hello\x1ebAQIDBA==",
    "451-[\"message-back\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID",
    "452-/a,1[\"x\",{\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":0}]\x1eb/w==\x1ebAA==\x1e42[\"y\"]",
    "40/admin,{\"token\":\"t\"}\x1e41/admin,\x1e3",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[&str]) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(8) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            // Replace a byte with a random or structural one.
            1 if len > 0 => {
                let i = rng.below(len);
                let tok = TOKENS[rng.below(TOKENS.len())];
                input[i] = if rng.chance(2) {
                    rng.next() as u8
                } else {
                    tok[0]
                };
            }
            // Insert a token.
            2 | 3 => {
                let i = rng.below(len + 1);
                let tok = TOKENS[rng.below(TOKENS.len())];
                let reps = if rng.chance(8) { 1 + rng.below(300) } else { 1 };
                let ins: Vec<u8> = tok.iter().copied().cycle().take(tok.len() * reps).collect();
                input.splice(i..i, ins);
            }
            // Delete a range.
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(8));
                input.drain(i..i + n);
            }
            // Splice in a piece of another seed.
            5 => {
                let other = seeds[rng.below(seeds.len())].as_bytes();
                let a = rng.below(other.len() + 1);
                let b = a + rng.below(other.len() - a + 1);
                let i = rng.below(len + 1);
                input.splice(i..i, other[a..b].iter().copied());
            }
            // Truncate.
            6 if len > 0 => input.truncate(rng.below(len)),
            // Duplicate a range.
            _ if len > 0 => {
                let a = rng.below(len);
                let b = a + rng.below((len - a).min(32) + 1);
                let copy = input[a..b].to_vec();
                let i = rng.below(len + 1);
                input.splice(i..i, copy);
            }
            _ => input.push(TOKENS[rng.below(TOKENS.len())][0]),
        }
    }
}

fn random_frame(rng: &mut Rng) -> Bytes {
    let n = rng.below(8);
    Bytes::from((0..n).map(|_| rng.next() as u8).collect::<Vec<u8>>())
}

/// Feeds one Engine.IO message (text or binary) to a Socket.IO decoder and checks the result.
fn feed_text(d: &mut Decoder, text: &str, stats: &mut Stats) {
    match d.decode_text(text) {
        Ok(Decoded::Packet(p)) => {
            assert!(!d.is_pending());
            assert!(p.attachments().is_empty(), "{text:?}");
            stats.packets += 1;
            check_decoded_sio(&p, text);
        }
        Ok(Decoded::NeedAttachments) => {
            assert!(d.is_pending(), "{text:?}");
            stats.headers += 1;
        }
        Err(e) => {
            assert!(!d.is_pending(), "{text:?}: {e:?} left a pending packet");
            assert!(!e.code().is_empty());
            stats.errors += 1;
        }
    }
}

fn feed_binary(d: &mut Decoder, frame: Bytes, stats: &mut Stats) {
    let was_pending = d.is_pending();
    match d.decode_binary(frame) {
        Ok(Decoded::Packet(p)) => {
            assert!(was_pending && !d.is_pending());
            assert!(!p.attachments().is_empty());
            stats.binary_packets += 1;
            check_decoded_sio(&p, "reassembled binary packet");
        }
        Ok(Decoded::NeedAttachments) => assert!(was_pending && d.is_pending()),
        Err(e) => {
            assert!(!d.is_pending());
            if !was_pending {
                assert_eq!(e, DecodeError::UnexpectedBinary);
            }
            stats.errors += 1;
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    packets: usize,
    headers: usize,
    binary_packets: usize,
    errors: usize,
}

#[test]
fn mutated_socketio_packets_never_panic_and_round_trip() {
    let mut rng = Rng::new(0x5eed_0001);
    let mut stats = Stats::default();
    let mut d = Decoder::default();
    for _ in 0..120_000 {
        let mut input = SIO_SEEDS[rng.below(SIO_SEEDS.len())].as_bytes().to_vec();
        if !rng.chance(16) {
            mutate(&mut rng, &mut input, SIO_SEEDS);
        }
        let text = String::from_utf8_lossy(&input);
        // Random interleaving: sometimes stray frames before the text.
        if rng.chance(10) {
            feed_binary(&mut d, random_frame(&mut rng), &mut stats);
        }
        feed_text(&mut d, &text, &mut stats);
        // Then usually as many frames as a pending header wants, sometimes fewer or more.
        if d.is_pending() {
            let frames = match rng.below(6) {
                0 => rng.below(3),
                1 => 1 + rng.below(12),
                _ => 12,
            };
            for _ in 0..frames {
                if !d.is_pending() && !rng.chance(4) {
                    break;
                }
                feed_binary(&mut d, random_frame(&mut rng), &mut stats);
            }
        }
        // A fresh decoder too, so the state carried over does not mask stateless results.
        if rng.chance(4) {
            let mut fresh = Decoder::default();
            feed_text(&mut fresh, &text, &mut stats);
        }
    }
    // The loop must exercise every outcome, or it proves little.
    assert!(stats.packets > 1_000, "{stats:?}");
    assert!(stats.headers > 1_000, "{stats:?}");
    assert!(stats.binary_packets > 500, "{stats:?}");
    assert!(stats.errors > 10_000, "{stats:?}");
}

#[test]
fn mutated_engineio_payloads_never_panic_and_round_trip() {
    let mut rng = Rng::new(0x5eed_0002);
    let mut stats = Stats::default();
    let (mut eio_ok, mut eio_err) = (0usize, 0usize);
    let mut d = Decoder::default();
    for _ in 0..80_000 {
        let mut input = EIO_SEEDS[rng.below(EIO_SEEDS.len())].as_bytes().to_vec();
        if !rng.chance(16) {
            mutate(&mut rng, &mut input, EIO_SEEDS);
        }
        let body = String::from_utf8_lossy(&input);

        // A single WebSocket text frame.
        if let Ok(p) = EioPacket::decode_text(&body) {
            assert_eq!(EioPacket::decode_text(&p.encode_text()), Ok(p), "{body:?}");
        }

        // A polling body, then each packet through the Socket.IO layer as a gateway would.
        let max = if rng.chance(8) {
            rng.below(4)
        } else {
            MAX_PACKETS
        };
        match decode_payload(&body, max) {
            Ok(packets) => {
                eio_ok += 1;
                assert!(packets.len() <= max);
                assert_eq!(packets.len(), body.split(SEPARATOR).count());
                let mut again = String::new();
                for (i, p) in packets.iter().enumerate() {
                    if i > 0 {
                        again.push(SEPARATOR);
                    }
                    p.encode_text_into(&mut again);
                }
                assert_eq!(
                    decode_payload(&again, max).as_ref(),
                    Ok(&packets),
                    "{body:?}"
                );
                for p in packets {
                    match p {
                        EioPacket::Message(m) => feed_text(&mut d, &m, &mut stats),
                        EioPacket::Binary(b) => feed_binary(&mut d, b, &mut stats),
                        _ => {}
                    }
                }
            }
            Err(e) => {
                eio_err += 1;
                assert!(!e.code().is_empty());
                if e == EioDecodeError::TooManyPackets {
                    assert!(body.split(SEPARATOR).count() > max);
                } else {
                    assert!(body
                        .split(SEPARATOR)
                        .take(max)
                        .any(|r| EioPacket::decode_text(r).is_err()));
                }
            }
        }
    }
    assert!(
        eio_ok > 10_000 && eio_err > 10_000,
        "{eio_ok} ok / {eio_err} err"
    );
    assert!(
        stats.packets > 1_000 && stats.binary_packets > 100,
        "{stats:?}"
    );
}
