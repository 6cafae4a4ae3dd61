//! Cost of one cluster broadcast on the Redis wire: building the msgpack message Node's
//! adapter expects (`[uid, {type, data, nsp}, {rooms, except, flags}]`) on the sending node,
//! and turning it back into a Socket.IO event on a receiving node. Each node pays this once
//! per broadcast, whatever the number of recipients.
//!
//! Run with `cargo bench -p switchboard-redis --bench wire`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rmpv::Value as Mp;
use serde_json::{json, Value};
use std::hint::black_box;
use switchboard::{BroadcastOptions, Room};
use switchboard_protocol::socketio::placeholder;
use switchboard_redis::codec::{
    json_list_to_mp, mp_decode, mp_encode, mp_take, mp_to_json, opts_from_mp, opts_mp,
};

fn message(data: &[Value], attachments: &[Bytes], opts: &BroadcastOptions) -> Vec<u8> {
    mp_encode(&Mp::Array(vec![
        Mp::from("kSk3O7"),
        Mp::Map(vec![
            (Mp::from("type"), Mp::from(2)),
            (Mp::from("data"), json_list_to_mp(data, attachments)),
            (Mp::from("nsp"), Mp::from("/")),
        ]),
        opts_mp(opts),
    ]))
}

fn receive(bytes: &[u8]) -> (Value, Vec<Bytes>, BroadcastOptions) {
    let Ok(Mp::Array(mut parts)) = mp_decode(bytes) else {
        panic!("not a broadcast")
    };
    let opts = opts_from_mp(parts.pop().unwrap_or(Mp::Nil));
    let Some(Mp::Map(mut packet)) = parts.pop() else {
        panic!("no packet")
    };
    let mut attachments = Vec::new();
    let data = mp_take(&mut packet, "data")
        .and_then(|d| mp_to_json(d, &mut attachments))
        .unwrap_or(Value::Null);
    (data, attachments, opts)
}

fn bench(c: &mut Criterion) {
    let opts = BroadcastOptions {
        rooms: vec![Room::from("room-42")],
        ..Default::default()
    };
    let cases: Vec<(&str, Vec<Value>, Vec<Bytes>)> = vec![
        (
            "chat_event",
            vec![
                json!("chat"),
                json!({"from": "user-1234", "text": "hello there, how is it going?", "ts": 1_732_000_000_000u64}),
            ],
            vec![],
        ),
        (
            "binary_1KiB",
            vec![json!("frame"), placeholder(0), json!({"seq": 7})],
            vec![Bytes::from(vec![7u8; 1024])],
        ),
    ];
    let mut g = c.benchmark_group("redis_wire");
    for (name, data, atts) in &cases {
        let bytes = message(data, atts, &opts);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| message(black_box(data), black_box(atts), black_box(&opts)))
        });
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| receive(black_box(&bytes)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
