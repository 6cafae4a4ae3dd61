//! Socket.IO v5 packets in the encoding of npm's `socket.io-msgpack-parser` 3: each packet is
//! one msgpack map `{type, data, nsp, id?}` sent as one binary Engine.IO message. There are no
//! BINARY_EVENT/BINARY_ACK types and no attachments on the wire: binary values are msgpack
//! `bin` in place.
//!
//! Packets decode into the same [`Packet`] as the default parser, binary values turned into
//! placeholders with their bytes in the attachment list, so the rest of the server (and the
//! Redis adapter) handles both encodings alike; [`encode`] puts the bytes back in place.
//!
//! What the JavaScript codec (notepack.io 2.2) writes beyond plain msgpack, and how it reads
//! here:
//! - `undefined` is fixext1 of type 0 (`d4 00 00`): a missing value (left out of maps, `null`
//!   in arrays, no payload for `data`).
//! - `Date` is fixext8 of type 0 holding milliseconds since the epoch: the ISO 8601 text that
//!   `JSON.stringify` would have sent. An 8-byte `ArrayBuffer` sent as ext type 0 cannot be
//!   told apart from it and reads as a date too.
//! - Any other ext of type 0 is an `ArrayBuffer`: binary. Other ext types become
//!   `[type, <bin>]`, as notepack decodes them.
//! - Keys the decoder does not know (the client's `options`) are ignored.
//!
//! Decoding checks what the JavaScript decoder checks (type 0–4, `nsp` a string, `data` of the
//! packet's shape, `id` an integer), and what the default parser checks besides: an event name
//! that is a string or a number and not reserved, `nsp` starting with `/`, an ACK with an id,
//! no trailing bytes, nesting at most [`MAX_DEPTH`] deep.

use crate::socketio::{is_reserved_event, placeholder, placeholder_index, DecodeError};
use crate::{Packet, PacketKind};
use bytes::Bytes;
use rmpv::ValueRef as Mp;
use serde_json::{Map, Number, Value};

/// Deepest nesting accepted in a decoded packet (the packet map counts as one level); deeper
/// input is refused with [`DecodeError::TooDeep`] rather than risking the stack. serde_json
/// refuses JSON text past the same depth.
pub const MAX_DEPTH: usize = 128;

/// msgpack ext type notepack uses for `undefined`, `Date` and `ArrayBuffer`.
const EXT_JS: i8 = 0;

/// Encodes `packet` as one msgpack map; placeholders in its data become `bin` values holding
/// the attachments they stand for.
pub fn encode(packet: &Packet) -> Bytes {
    let mut out = Vec::with_capacity(32);
    let (ty, data, id, attachments): (u8, Option<Data<'_>>, Option<u64>, &[Bytes]) =
        match &packet.kind {
            PacketKind::Connect(v) => (0, v.as_ref().map(Data::Value), None, &[]),
            PacketKind::Disconnect => (1, None, None, &[]),
            PacketKind::Event {
                data,
                id,
                attachments,
            } => (2, Some(Data::Array(data)), *id, attachments),
            PacketKind::Ack {
                data,
                id,
                attachments,
            } => (3, Some(Data::Array(data)), Some(*id), attachments),
            PacketKind::ConnectError(v) => (4, Some(Data::Value(v)), None, &[]),
        };
    let len = 2 + u32::from(data.is_some()) + u32::from(id.is_some());
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_map_len(&mut out, len);
    let _ = rmp::encode::write_str(&mut out, "type");
    let _ = rmp::encode::write_uint(&mut out, u64::from(ty));
    if let Some(data) = data {
        let _ = rmp::encode::write_str(&mut out, "data");
        match data {
            Data::Value(v) => write_value(&mut out, v, attachments),
            Data::Array(items) => write_array(&mut out, items, attachments),
        }
    }
    let _ = rmp::encode::write_str(&mut out, "nsp");
    let _ = rmp::encode::write_str(&mut out, &packet.nsp);
    if let Some(id) = id {
        let _ = rmp::encode::write_str(&mut out, "id");
        let _ = rmp::encode::write_uint(&mut out, id);
    }
    Bytes::from(out)
}

enum Data<'a> {
    Value(&'a Value),
    Array(&'a [Value]),
}

fn write_array(out: &mut Vec<u8>, items: &[Value], attachments: &[Bytes]) {
    let _ = rmp::encode::write_array_len(out, len_u32(items.len()));
    for v in items {
        write_value(out, v, attachments);
    }
}

/// msgpack lengths are 32-bit; a packet that large is far past any payload limit.
fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn write_value(out: &mut Vec<u8>, value: &Value, attachments: &[Bytes]) {
    if !attachments.is_empty() {
        if let Some(bytes) = placeholder_index(value).and_then(|i| attachments.get(i)) {
            let _ = rmp::encode::write_bin(out, bytes);
            return;
        }
    }
    match value {
        Value::Null => {
            let _ = rmp::encode::write_nil(out);
        }
        Value::Bool(b) => {
            let _ = rmp::encode::write_bool(out, *b);
        }
        Value::Number(n) => write_number(out, n),
        Value::String(s) => {
            let _ = rmp::encode::write_str(out, s);
        }
        Value::Array(items) => write_array(out, items, attachments),
        Value::Object(map) => {
            let _ = rmp::encode::write_map_len(out, len_u32(map.len()));
            for (k, v) in map {
                let _ = rmp::encode::write_str(out, k);
                write_value(out, v, attachments);
            }
        }
    }
}

/// Integers in their smallest form, every other number as float64 (what notepack writes).
fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        let _ = rmp::encode::write_uint(out, u);
    } else if let Some(i) = n.as_i64() {
        let _ = rmp::encode::write_sint(out, i);
    } else {
        let _ = rmp::encode::write_f64(out, n.as_f64().unwrap_or(0.0));
    }
}

/// Decodes one binary Engine.IO message into a packet; binary values share the message's
/// buffer. Every failure is the parse error that closes the connection.
pub fn decode(message: &Bytes) -> Result<Packet, DecodeError> {
    let mut rest = &message[..];
    // rmpv spends two units of its depth budget on each container level and up to three on a
    // leaf, so this budget lets [`MAX_DEPTH`] levels through.
    let budget = 2 * MAX_DEPTH + 2;
    let value =
        rmpv::decode::read_value_ref_with_max_depth(&mut rest, budget).map_err(|e| match e {
            rmpv::decode::Error::DepthLimitExceeded => DecodeError::TooDeep,
            _ => DecodeError::InvalidMsgpack,
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::InvalidMsgpack);
    }
    // Anything but a map has no `type`, which is what the JavaScript decoder reports.
    let Mp::Map(entries) = value else {
        return Err(DecodeError::UnknownType);
    };
    let (mut ty, mut nsp, mut data, mut id) = (None, None, None, None);
    // A repeated key keeps its last value, as in a JavaScript object.
    for (key, value) in entries {
        let Mp::String(key) = key else { continue };
        match key.as_str() {
            Some("type") => ty = Some(value),
            Some("nsp") => nsp = Some(value),
            Some("data") => data = Some(value),
            Some("id") => id = Some(value),
            _ => {}
        }
    }
    let ty = ty
        .and_then(|t| t.as_u64())
        .filter(|t| *t <= 4)
        .ok_or(DecodeError::UnknownType)?;
    let nsp = match nsp {
        Some(Mp::String(s)) => s
            .into_str()
            .filter(|s| s.starts_with('/'))
            .map(str::to_owned),
        _ => None,
    }
    .ok_or(DecodeError::InvalidNamespace)?;
    let id = match id {
        None => None,
        Some(v) if is_undefined(&v) => None,
        Some(v) => Some(v.as_u64().ok_or(DecodeError::InvalidAckId)?),
    };
    let mut attachments = Vec::new();
    let data = data.and_then(|d| to_json(d, message, &mut attachments));
    let kind = match (ty, data) {
        (0, None) => PacketKind::Connect(None),
        (0, Some(v @ Value::Object(_))) if attachments.is_empty() => PacketKind::Connect(Some(v)),
        (1, None) => PacketKind::Disconnect,
        (2, Some(Value::Array(data))) => {
            match data.first() {
                Some(Value::String(name)) if !is_reserved_event(name) => {}
                Some(Value::Number(_)) => {}
                _ => return Err(DecodeError::InvalidEventName),
            }
            PacketKind::Event {
                data,
                id,
                attachments,
            }
        }
        (3, Some(Value::Array(data))) => PacketKind::Ack {
            data,
            id: id.ok_or(DecodeError::InvalidAckId)?,
            attachments,
        },
        (4, Some(v @ (Value::Object(_) | Value::String(_)))) if attachments.is_empty() => {
            PacketKind::ConnectError(v)
        }
        _ => return Err(DecodeError::InvalidPayload),
    };
    Ok(Packet { nsp, kind })
}

fn is_undefined(v: &Mp<'_>) -> bool {
    matches!(v, Mp::Ext(EXT_JS, data) if data.len() == 1)
}

/// A msgpack value as JSON; binaries become placeholders appended to `attachments`. `None`
/// for JavaScript `undefined`.
fn to_json(value: Mp<'_>, message: &Bytes, attachments: &mut Vec<Bytes>) -> Option<Value> {
    Some(match value {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(b),
        Mp::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(s)) => Value::from(s),
            _ => Value::Null,
        },
        Mp::F32(f) => float(f64::from(f)),
        Mp::F64(f) => float(f),
        Mp::String(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Mp::Binary(b) => binary(message.slice_ref(b), attachments),
        Mp::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| to_json(v, message, attachments).unwrap_or(Value::Null))
                .collect(),
        ),
        Mp::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let Some(key) = map_key(k) else { continue };
                match to_json(v, message, attachments) {
                    Some(v) => map.insert(key, v),
                    None => map.remove(&key),
                };
            }
            Value::Object(map)
        }
        Mp::Ext(EXT_JS, data) => match data.len() {
            1 => return None,
            8 => date(data),
            _ => binary(message.slice_ref(data), attachments),
        },
        Mp::Ext(kind, data) => Value::Array(vec![
            Value::from(kind),
            binary(message.slice_ref(data), attachments),
        ]),
    })
}

/// Not every double is a JSON number: NaN and the infinities become `null`, as
/// `JSON.stringify` makes them.
fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn binary(bytes: Bytes, attachments: &mut Vec<Bytes>) -> Value {
    attachments.push(bytes);
    placeholder(attachments.len() - 1)
}

/// A map key as JavaScript turns it into a property name.
fn map_key(k: Mp<'_>) -> Option<String> {
    match k {
        Mp::String(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Mp::Integer(i) => Some(i.to_string()),
        Mp::Boolean(b) => Some(b.to_string()),
        Mp::Nil => Some("null".to_owned()),
        Mp::F64(f) => Some(f.to_string()),
        _ => None,
    }
}

/// notepack's `Date`: signed milliseconds since the epoch (high 32 bits signed, low unsigned),
/// as `Date.prototype.toISOString()` prints it; `null` outside JavaScript's date range.
fn date(data: &[u8]) -> Value {
    let Ok(raw) = <[u8; 8]>::try_from(data) else {
        return Value::Null;
    };
    let ms = i64::from_be_bytes(raw);
    // JavaScript dates span ±8.64e15 ms around the epoch.
    if ms.unsigned_abs() > 8_640_000_000_000_000 {
        return Value::Null;
    }
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    Value::String(crate::time::iso8601(secs, millis as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as Mp;
    use serde_json::json;

    fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
        super::decode(&Bytes::copy_from_slice(bytes))
    }

    fn hex(s: &str) -> Vec<u8> {
        let clean: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap_or(0))
            .collect()
    }

    /// msgpack of a map with string keys, built by hand for the tests.
    fn map(entries: Vec<(&str, Mp)>) -> Vec<u8> {
        let mp = Mp::Map(entries.into_iter().map(|(k, v)| (Mp::from(k), v)).collect());
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &mp).expect("vec write");
        out
    }

    fn undefined() -> Mp {
        Mp::Ext(0, vec![0])
    }

    #[test]
    fn decodes_captured_client_packets() {
        // CONNECT without auth: {"type":0,"data":undefined,"nsp":"/"}.
        let connect = hex("83 a474797065 00 a464617461 d40000 a36e7370 a12f");
        assert_eq!(
            decode(&connect),
            Ok(Packet {
                nsp: "/".into(),
                kind: PacketKind::Connect(None)
            })
        );
        // socket.emit("x", undefined, null, 1) with the client's extra `options` key.
        let event = hex("84 a474797065 02 a464617461 94 a178 d40000 c0 01 \
             a76f7074696f6e73 81 a8636f6d7072657373 c3 a36e7370 a12f");
        assert_eq!(
            decode(&event),
            Ok(Packet {
                nsp: "/".into(),
                kind: PacketKind::Event {
                    data: vec![json!("x"), Value::Null, Value::Null, json!(1)],
                    id: None,
                    attachments: vec![]
                }
            })
        );
    }

    #[test]
    fn encodes_the_captured_server_shapes() {
        let ack = Packet {
            nsp: "/".into(),
            kind: PacketKind::Ack {
                data: vec![json!("ok")],
                id: 7,
                attachments: vec![],
            },
        };
        assert_eq!(
            encode(&ack).as_ref(),
            hex("84 a474797065 03 a464617461 91 a26f6b a36e7370 a12f a26964 07")
        );
        let connect = Packet::connect_ok("/admin", "abc");
        assert_eq!(
            encode(&connect).as_ref(),
            hex("83 a474797065 00 a464617461 81 a3736964 a3616263 a36e7370 a62f61646d696e")
        );
        let disconnect = Packet {
            nsp: "/".into(),
            kind: PacketKind::Disconnect,
        };
        assert_eq!(
            encode(&disconnect).as_ref(),
            hex("82 a474797065 01 a36e7370 a12f")
        );
    }

    #[test]
    fn binary_values_are_inline() {
        let bytes = map(vec![
            ("type", Mp::from(2)),
            (
                "data",
                Mp::Array(vec![
                    Mp::from("bin"),
                    Mp::Binary(vec![1, 2]),
                    Mp::Map(vec![(Mp::from("k"), Mp::Ext(0, vec![9, 9, 9]))]),
                ]),
            ),
            ("nsp", Mp::from("/")),
            ("id", Mp::from(3)),
        ]);
        let packet = decode(&bytes).expect("decodes");
        assert_eq!(
            packet.kind,
            PacketKind::Event {
                data: vec![json!("bin"), placeholder(0), json!({"k": placeholder(1)})],
                id: Some(3),
                attachments: vec![Bytes::from_static(&[1, 2]), Bytes::from_static(&[9, 9, 9])]
            }
        );
        // Re-encoded, each binary is a msgpack bin in its place.
        let again = decode(&encode(&packet)).expect("re-decodes");
        assert_eq!(again, packet);
        let wire = encode(&packet);
        assert!(wire.windows(4).any(|w| w == [0xc4, 2, 1, 2]));
    }

    #[test]
    fn javascript_values() {
        let when = Mp::Ext(0, 1_709_210_096_789i64.to_be_bytes().to_vec());
        let bytes = map(vec![
            ("type", Mp::from(2)),
            (
                "data",
                Mp::Array(vec![
                    Mp::from("v"),
                    when,
                    Mp::Map(vec![
                        (Mp::from("gone"), undefined()),
                        (Mp::from(5), Mp::F64(f64::NAN)),
                    ]),
                    Mp::Ext(5, vec![1]),
                    Mp::F32(1.5),
                ]),
            ),
            ("nsp", Mp::from("/")),
        ]);
        let PacketKind::Event {
            data, attachments, ..
        } = decode(&bytes).expect("decodes").kind
        else {
            panic!("not an event");
        };
        assert_eq!(
            data,
            vec![
                json!("v"),
                json!("2024-02-29T12:34:56.789Z"),
                json!({"5": null}),
                json!([5, placeholder(0)]),
                json!(1.5)
            ]
        );
        assert_eq!(attachments, vec![Bytes::from_static(&[1])]);
        assert_eq!(
            date(&(-1i64).to_be_bytes()),
            json!("1969-12-31T23:59:59.999Z")
        );
        assert_eq!(date(&i64::MAX.to_be_bytes()), Value::Null);
    }

    #[test]
    fn refuses_what_the_javascript_decoder_refuses() {
        let cases: Vec<(Vec<(&str, Mp)>, DecodeError)> = vec![
            (vec![("nsp", Mp::from("/"))], DecodeError::UnknownType),
            (
                vec![("type", Mp::from(5)), ("nsp", Mp::from("/"))],
                DecodeError::UnknownType,
            ),
            (
                vec![("type", Mp::from(-1)), ("nsp", Mp::from("/"))],
                DecodeError::UnknownType,
            ),
            (vec![("type", Mp::from(0))], DecodeError::InvalidNamespace),
            (
                vec![("type", Mp::from(0)), ("nsp", Mp::from(1))],
                DecodeError::InvalidNamespace,
            ),
            (
                vec![("type", Mp::from(0)), ("nsp", Mp::from("admin"))],
                DecodeError::InvalidNamespace,
            ),
            (
                vec![
                    ("type", Mp::from(0)),
                    ("nsp", Mp::from("/")),
                    ("data", Mp::from("x")),
                ],
                DecodeError::InvalidPayload,
            ),
            (
                vec![
                    ("type", Mp::from(1)),
                    ("nsp", Mp::from("/")),
                    ("data", Mp::Array(vec![])),
                ],
                DecodeError::InvalidPayload,
            ),
            (
                vec![
                    ("type", Mp::from(2)),
                    ("nsp", Mp::from("/")),
                    ("data", Mp::Map(vec![])),
                ],
                DecodeError::InvalidPayload,
            ),
            (
                vec![
                    ("type", Mp::from(2)),
                    ("nsp", Mp::from("/")),
                    ("data", Mp::Array(vec![Mp::from("connect")])),
                ],
                DecodeError::InvalidEventName,
            ),
            (
                vec![
                    ("type", Mp::from(2)),
                    ("nsp", Mp::from("/")),
                    ("data", Mp::Array(vec![Mp::Nil])),
                ],
                DecodeError::InvalidEventName,
            ),
            (
                vec![
                    ("type", Mp::from(2)),
                    ("nsp", Mp::from("/")),
                    ("data", Mp::Array(vec![Mp::from("a")])),
                    ("id", Mp::from("1")),
                ],
                DecodeError::InvalidAckId,
            ),
            (
                vec![
                    ("type", Mp::from(3)),
                    ("nsp", Mp::from("/")),
                    ("data", Mp::Array(vec![])),
                ],
                DecodeError::InvalidAckId,
            ),
            (
                vec![
                    ("type", Mp::from(4)),
                    ("nsp", Mp::from("/")),
                    ("data", Mp::from(3)),
                ],
                DecodeError::InvalidPayload,
            ),
        ];
        for (entries, want) in cases {
            let bytes = map(entries);
            assert_eq!(decode(&bytes), Err(want), "{bytes:02x?}");
        }
        assert_eq!(decode(&[]), Err(DecodeError::InvalidMsgpack));
        assert_eq!(decode(&[0x93, 1, 2]), Err(DecodeError::InvalidMsgpack));
        assert_eq!(decode(&[0x01]), Err(DecodeError::UnknownType));
        let mut trailing = map(vec![("type", Mp::from(1)), ("nsp", Mp::from("/"))]);
        trailing.push(0xc0);
        assert_eq!(decode(&trailing), Err(DecodeError::InvalidMsgpack));
    }

    #[test]
    fn nesting_and_lengths_are_bounded() {
        // {"type":2,"nsp":"/","data":["a",[[[...]]]]}: deep enough to blow a naive stack.
        let mut deep = hex("83 a474797065 02 a36e7370 a12f a464617461 92 a161");
        deep.extend(std::iter::repeat_n(0x91u8, 100_000));
        deep.push(0xc0);
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep));
        // Just under the limit is fine.
        let mut ok = hex("83 a474797065 02 a36e7370 a12f a464617461 92 a161");
        ok.extend(std::iter::repeat_n(0x91u8, MAX_DEPTH - 3));
        ok.push(0xc0);
        assert!(decode(&ok).is_ok(), "{:?}", decode(&ok));
        let mut over = hex("83 a474797065 02 a36e7370 a12f a464617461 92 a161");
        over.extend(std::iter::repeat_n(0x91u8, MAX_DEPTH));
        over.push(0xc0);
        assert_eq!(decode(&over), Err(DecodeError::TooDeep));
        // Lengths that promise gigabytes are not allocated up front.
        for bomb in [
            &[0xdd, 0xff, 0xff, 0xff, 0xff][..],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0xc6, 0xff, 0xff, 0xff, 0xff, 1],
            &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
        ] {
            assert_eq!(decode(bomb), Err(DecodeError::InvalidMsgpack));
        }
    }
}
