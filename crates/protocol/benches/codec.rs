//! Codec micro-benchmarks: encode and decode cost per packet for the shapes a broker sees most.
//!
//! Run with `cargo bench -p switchboard-protocol --bench codec`. Throughput is the wire size of
//! one iteration (for the polling payload, one iteration is the whole 10-packet body).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use serde_json::json;
use switchboard_protocol::engine::{self, EioPacket, SEPARATOR};
use switchboard_protocol::msgpack;
use switchboard_protocol::socketio::{placeholder, Decoded, Decoder, Packet, PacketKind};

/// The engine crate's default packet limit per polling payload.
const MAX_PACKETS: usize = 1024;

fn event(nsp: &str, data: Vec<serde_json::Value>, attachments: Vec<Bytes>) -> Packet {
    Packet {
        nsp: nsp.to_owned(),
        kind: PacketKind::Event {
            data,
            id: None,
            attachments,
        },
    }
}

fn decode_one(d: &mut Decoder, text: &str) -> Packet {
    match d.decode_text(text) {
        Ok(Decoded::Packet(p)) => p,
        other => panic!("bench input {text:?} did not decode: {other:?}"),
    }
}

fn text_case(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    packet: &Packet,
) {
    let text = packet.encode();
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function(format!("decode/{name}"), |b| {
        let mut d = Decoder::default();
        b.iter(|| decode_one(&mut d, black_box(&text)));
    });
    group.bench_function(format!("encode/{name}"), |b| {
        let mut out = String::with_capacity(text.len());
        b.iter(|| {
            out.clear();
            black_box(packet).encode_into(&mut out);
            black_box(out.len())
        });
    });
}

fn socketio(c: &mut Criterion) {
    let mut group = c.benchmark_group("sio");

    // `42["message",{"a":1}]` without the Engine.IO `4`.
    let small = event("/", vec![json!("message"), json!({"a": 1})], vec![]);
    text_case(&mut group, "small_event", &small);

    // An event whose payload is a 1 KiB string.
    let kib = event("/", vec![json!("message"), json!("x".repeat(1024))], vec![]);
    text_case(&mut group, "text_1kib", &kib);

    // A binary event: header text plus one 1 KiB attachment through the stateful decoder.
    let attachment = Bytes::from(vec![0xa5u8; 1024]);
    let binary = event(
        "/",
        vec![json!("upload"), placeholder(0)],
        vec![attachment.clone()],
    );
    let header = binary.encode();
    group.throughput(Throughput::Bytes((header.len() + attachment.len()) as u64));
    group.bench_function("decode/binary_1kib", |b| {
        let mut d = Decoder::default();
        b.iter(|| {
            match d.decode_text(black_box(&header)) {
                Ok(Decoded::NeedAttachments) => {}
                other => panic!("header did not wait for attachments: {other:?}"),
            }
            match d.decode_binary(black_box(attachment.clone())) {
                Ok(Decoded::Packet(p)) => p,
                other => panic!("attachment did not complete the packet: {other:?}"),
            }
        });
    });
    // Encoding builds only the header text; the attachment goes out as it is (a `Bytes` clone).
    group.throughput(Throughput::Bytes(header.len() as u64));
    group.bench_function("encode/binary_1kib", |b| {
        let mut out = String::with_capacity(header.len());
        b.iter(|| {
            out.clear();
            black_box(&binary).encode_into(&mut out);
            black_box((out.len(), binary.attachments().len()))
        });
    });

    // A broadcast: encoded once, then shared; measured as the full Engine.IO frame text.
    let broadcast = event(
        "/chat",
        vec![
            json!("chat message"),
            json!({"user": "alice", "text": "hello everyone in the room", "ts": 1_700_000_000_000u64}),
        ],
        vec![],
    );
    let frame_len = 1 + broadcast.encode().len();
    group.throughput(Throughput::Bytes(frame_len as u64));
    group.bench_function("encode/broadcast_frame", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(frame_len);
            out.push('4');
            black_box(&broadcast).encode_into(&mut out);
            Bytes::from(out)
        });
    });
    group.finish();
}

/// The same shapes in the `socket.io-msgpack-parser` encoding: one binary message per packet,
/// binary values inline.
fn socketio_msgpack(c: &mut Criterion) {
    let mut group = c.benchmark_group("sio_msgpack");
    let cases = [
        (
            "small_event",
            event("/", vec![json!("message"), json!({"a": 1})], vec![]),
        ),
        (
            "binary_1kib",
            event(
                "/",
                vec![json!("upload"), placeholder(0)],
                vec![Bytes::from(vec![0xa5u8; 1024])],
            ),
        ),
        (
            "broadcast_frame",
            event(
                "/chat",
                vec![
                    json!("chat message"),
                    json!({"user": "alice", "text": "hello everyone in the room", "ts": 1_700_000_000_000u64}),
                ],
                vec![],
            ),
        ),
    ];
    for (name, packet) in &cases {
        let wire = msgpack::encode(packet);
        assert_eq!(msgpack::decode(&wire).as_ref(), Ok(packet));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| msgpack::decode(black_box(&wire)))
        });
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| msgpack::encode(black_box(packet)))
        });
    }
    group.finish();
}

fn engineio(c: &mut Criterion) {
    let mut group = c.benchmark_group("eio");
    let packets: Vec<EioPacket> = (0..10)
        .map(|i| match i % 5 {
            0 => EioPacket::Ping(String::new()),
            1 => EioPacket::Binary(Bytes::from(vec![i as u8; 16])),
            _ => EioPacket::Message(format!("2[\"message\",{{\"seq\":{i},\"text\":\"hello\"}}]")),
        })
        .collect();
    let mut body = String::new();
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            body.push(SEPARATOR);
        }
        p.encode_text_into(&mut body);
    }
    assert_eq!(
        engine::decode_payload(&body, MAX_PACKETS).as_ref(),
        Ok(&packets)
    );

    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("decode/payload_10", |b| {
        b.iter(|| engine::decode_payload(black_box(&body), MAX_PACKETS))
    });
    group.bench_function("encode/payload_10", |b| {
        let mut out = String::with_capacity(body.len());
        b.iter(|| {
            out.clear();
            for (i, p) in black_box(&packets).iter().enumerate() {
                if i > 0 {
                    out.push(SEPARATOR);
                }
                p.encode_text_into(&mut out);
            }
            black_box(out.len())
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = socketio, socketio_msgpack, engineio
}
criterion_main!(benches);
