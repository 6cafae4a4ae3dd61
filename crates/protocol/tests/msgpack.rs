//! Robustness of the msgpack codec: a deterministic mutation loop (xorshift PRNG) over encoded
//! packets checks that decoding never panics, that every decoded packet keeps the invariants
//! the server relies on, and that encoding is stable: `encode(decode(encode(p))) == encode(p)`.
//! Nothing here measures time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use serde_json::{json, Value};
use switchboard_protocol::msgpack::encode;
use switchboard_protocol::socketio::{placeholder, Decoded, Decoder, RESERVED_EVENTS};
use switchboard_protocol::{DecodeError, Packet, PacketKind, Parser};

struct Rng(u64);

impl Rng {
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
}

fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
    switchboard_protocol::msgpack::decode(&Bytes::copy_from_slice(bytes))
}

fn seeds() -> Vec<Bytes> {
    let event = |nsp: &str, data: Vec<Value>, id, attachments: Vec<Bytes>| Packet {
        nsp: nsp.into(),
        kind: PacketKind::Event {
            data,
            id,
            attachments,
        },
    };
    let packets = [
        Packet {
            nsp: "/".into(),
            kind: PacketKind::Connect(None),
        },
        Packet {
            nsp: "/admin".into(),
            kind: PacketKind::Connect(Some(json!({"token": "t", "n": [1, 2.5]}))),
        },
        Packet {
            nsp: "/".into(),
            kind: PacketKind::Disconnect,
        },
        event("/", vec![json!("hey"), json!("Jude")], None, vec![]),
        event(
            "/chat",
            vec![
                json!("bin"),
                placeholder(0),
                json!({"x": [placeholder(1), null, true, -3, 1e300]}),
            ],
            Some(42),
            vec![Bytes::from_static(b"abc"), Bytes::from(vec![0u8; 300])],
        ),
        event(
            "/",
            vec![json!(7), json!({"k": "v"})],
            Some(u64::MAX),
            vec![],
        ),
        Packet {
            nsp: "/".into(),
            kind: PacketKind::Ack {
                data: vec![json!("ok"), placeholder(0)],
                id: 3,
                attachments: vec![Bytes::from_static(&[1, 2])],
            },
        },
        Packet::connect_error("/", "nope", Some(json!({"code": 1}))),
    ];
    let mut out: Vec<Bytes> = packets.iter().map(encode).collect();
    // What the JavaScript client adds: `undefined`, dates, ArrayBuffers, the `options` key.
    out.push(Bytes::from_static(&[
        0x84, 0xa4, b't', b'y', b'p', b'e', 0x02, 0xa4, b'd', b'a', b't', b'a', 0x94, 0xa1, b'x',
        0xd4, 0x00, 0x00, 0xd7, 0x00, 0, 0, 1, 0x8d, 0xf1, 0x2e, 0x5a, 0x00, 0xc7, 0x02, 0x00, 9,
        9, 0xa7, b'o', b'p', b't', b'i', b'o', b'n', b's', 0x81, 0xa1, b'c', 0xc3, 0xa3, b'n',
        b's', b'p', 0xa1, b'/',
    ]));
    out
}

/// msgpack markers worth splicing in: containers, ext, bin, str, nil, ints.
const MARKERS: &[u8] = &[
    0x90, 0x91, 0x93, 0x80, 0x81, 0xdc, 0xde, 0xdd, 0xc4, 0xc6, 0xc7, 0xd4, 0xd7, 0xa1, 0xa4, 0xd9,
    0xc0, 0xc3, 0xcb, 0xcf, 0xd3, 0xff, 0x00, 0x02, 0x03,
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = MARKERS[rng.below(MARKERS.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                let most = if rng.below(8) == 0 { 300 } else { 2 };
                let reps = 1 + rng.below(most);
                let m = MARKERS[rng.below(MARKERS.len())];
                input.splice(i..i, std::iter::repeat_n(m, reps));
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(8));
                input.drain(i..i + n);
            }
            4 if len > 0 => input.truncate(rng.below(len)),
            _ if len > 0 => {
                let a = rng.below(len);
                let b = a + rng.below((len - a).min(32) + 1);
                let copy = input[a..b].to_vec();
                let i = rng.below(len + 1);
                input.splice(i..i, copy);
            }
            _ => input.push(MARKERS[rng.below(MARKERS.len())]),
        }
    }
}

fn check(p: &Packet, origin: &[u8]) {
    assert!(p.nsp.starts_with('/'), "{origin:02x?}");
    match &p.kind {
        PacketKind::Event { data, .. } => match data.first() {
            Some(Value::String(name)) => assert!(!RESERVED_EVENTS.contains(&name.as_str())),
            Some(Value::Number(_)) => {}
            other => panic!("{origin:02x?}: event name {other:?}"),
        },
        PacketKind::Connect(Some(v)) => assert!(v.is_object()),
        PacketKind::ConnectError(v) => assert!(v.is_object() || v.is_string()),
        _ => {}
    }
    let once = encode(p);
    let again = decode(&once).unwrap_or_else(|e| panic!("{origin:02x?}: re-decoding: {e}"));
    assert_eq!(
        encode(&again),
        once,
        "{origin:02x?}: encoding is not stable"
    );
}

#[test]
fn mutated_packets_never_panic_and_reencode_stably() {
    let seeds = seeds();
    for s in &seeds {
        check(&decode(s).expect("every seed decodes"), s);
    }
    let mut rng = Rng(0x5eed_0042);
    let (mut packets, mut errors) = (0, 0);
    for _ in 0..100_000 {
        let mut input = seeds[rng.below(seeds.len())].to_vec();
        mutate(&mut rng, &mut input);
        match decode(&input) {
            Ok(p) => {
                packets += 1;
                check(&p, &input);
            }
            Err(e) => {
                errors += 1;
                assert!(!e.code().is_empty());
            }
        }
    }
    // The loop must reach both outcomes, or it proves little.
    assert!(packets > 2_000, "{packets} packets, {errors} errors");
    assert!(errors > 5_000, "{packets} packets, {errors} errors");
}

#[test]
fn the_decoder_takes_binary_messages_only() {
    let mut d = Decoder::for_parser(Parser::Msgpack, 10, 64);
    assert_eq!(d.decode_text("40"), Err(DecodeError::TextMessage));
    let connect = encode(&Packet {
        nsp: "/".into(),
        kind: PacketKind::Connect(None),
    });
    assert!(matches!(d.decode_binary(connect), Ok(Decoded::Packet(_))));
    assert!(!d.is_pending(), "no attachments ever wait");
    // The byte limit covers the whole message, binary values included.
    let big = encode(&Packet {
        nsp: "/".into(),
        kind: PacketKind::Event {
            data: vec![json!("b"), placeholder(0)],
            id: None,
            attachments: vec![Bytes::from(vec![0u8; 64])],
        },
    });
    assert_eq!(d.decode_binary(big), Err(DecodeError::TooLarge));
    // And the default parser refuses a msgpack packet as a stray binary message.
    let mut text = Decoder::for_parser(Parser::Default, 10, 1 << 20);
    let connect = encode(&Packet {
        nsp: "/".into(),
        kind: PacketKind::Connect(None),
    });
    assert_eq!(
        text.decode_binary(connect),
        Err(DecodeError::UnexpectedBinary)
    );
}
