//! Converting between Socket.IO's JSON-with-placeholders form and the msgpack form that Node's
//! adapters put on Redis (binary values in place, as msgpack `bin`), plus room lists, flags and socket descriptions.

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{json, Map, Number, Value};
use switchboard::{BroadcastFlags, BroadcastOptions, Room, SocketInfo};
use switchboard_protocol::socketio::{placeholder, placeholder_index};

/// msgpack ext type notepack uses for `ArrayBuffer` (and, with one zero byte, `undefined`).
const EXT_ARRAY_BUFFER: i8 = 0;
/// msgpack's timestamp ext type (notepack 3 encodes `Date` with it).
const EXT_TIMESTAMP: i8 = -1;

/// `value` (which may hold placeholders into `attachments`) as msgpack, binaries inline.
pub fn json_to_mp(value: &Value, attachments: &[Bytes]) -> Mp {
    if !attachments.is_empty() {
        if let Some(i) = placeholder_index(value) {
            if let Some(b) = attachments.get(i) {
                return Mp::Binary(b.to_vec());
            }
        }
    }
    match value {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(n) => number_to_mp(n),
        Value::String(s) => Mp::String(s.as_str().into()),
        Value::Array(a) => Mp::Array(a.iter().map(|v| json_to_mp(v, attachments)).collect()),
        Value::Object(m) => Mp::Map(
            m.iter()
                .map(|(k, v)| (Mp::String(k.as_str().into()), json_to_mp(v, attachments)))
                .collect(),
        ),
    }
}

fn number_to_mp(n: &Number) -> Mp {
    if let Some(u) = n.as_u64() {
        Mp::from(u)
    } else if let Some(i) = n.as_i64() {
        Mp::from(i)
    } else {
        Mp::F64(n.as_f64().unwrap_or(0.0))
    }
}

/// Every element of `values` as msgpack.
pub fn json_list_to_mp(values: &[Value], attachments: &[Bytes]) -> Mp {
    Mp::Array(values.iter().map(|v| json_to_mp(v, attachments)).collect())
}

/// True when `value` holds a binary anywhere.
pub fn mp_has_binary(value: &Mp) -> bool {
    match value {
        Mp::Binary(_) => true,
        Mp::Ext(EXT_ARRAY_BUFFER, data) => !is_undefined_ext(data),
        Mp::Array(a) => a.iter().any(mp_has_binary),
        Mp::Map(m) => m.iter().any(|(_, v)| mp_has_binary(v)),
        _ => false,
    }
}

fn is_undefined_ext(data: &[u8]) -> bool {
    data == [0]
}

/// A msgpack value as JSON; binaries become placeholders appended to `attachments`.
/// Returns `None` for JavaScript `undefined` (left out of maps, `null` in arrays).
pub fn mp_to_json(value: Mp, attachments: &mut Vec<Bytes>) -> Option<Value> {
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
        Mp::Binary(b) => binary(Bytes::from(b), attachments),
        Mp::Array(a) => Value::Array(
            a.into_iter()
                .map(|v| mp_to_json(v, attachments).unwrap_or(Value::Null))
                .collect(),
        ),
        Mp::Map(entries) => {
            let mut m = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let Some(key) = map_key(k) else { continue };
                if let Some(v) = mp_to_json(v, attachments) {
                    m.insert(key, v);
                }
            }
            Value::Object(m)
        }
        Mp::Ext(EXT_ARRAY_BUFFER, data) if is_undefined_ext(&data) => return None,
        Mp::Ext(EXT_ARRAY_BUFFER, data) => binary(Bytes::from(data), attachments),
        Mp::Ext(EXT_TIMESTAMP, data) => match timestamp(&data) {
            // What a Node server would send its clients for a `Date` argument.
            Some((secs, nanos)) => {
                Value::String(switchboard::time::iso8601(secs, nanos / 1_000_000))
            }
            None => Value::Null,
        },
        // notepack hands unknown extensions over as `[type, bytes]`.
        Mp::Ext(kind, data) => Value::Array(vec![
            Value::from(kind),
            binary(Bytes::from(data), attachments),
        ]),
    })
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn binary(b: Bytes, attachments: &mut Vec<Bytes>) -> Value {
    attachments.push(b);
    placeholder(attachments.len() - 1)
}

fn map_key(k: Mp) -> Option<String> {
    match k {
        Mp::String(s) => s.into_str(),
        Mp::Integer(i) => Some(i.to_string()),
        Mp::Boolean(b) => Some(b.to_string()),
        Mp::F64(f) => Some(f.to_string()),
        _ => None,
    }
}

/// Decodes the msgpack timestamp extension (4, 8 or 12 bytes) into seconds and nanoseconds.
fn timestamp(data: &[u8]) -> Option<(i64, u32)> {
    match data.len() {
        4 => Some((i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0)),
        8 => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            Some(((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32))
        }
        12 => {
            let nanos = u32::from_be_bytes(data.get(..4)?.try_into().ok()?);
            let secs = i64::from_be_bytes(data.get(4..)?.try_into().ok()?);
            Some((secs, nanos))
        }
        _ => None,
    }
}

/// A room name from the wire: JavaScript allows numbers, which name the same room as their
/// decimal text here.
pub fn room_from_mp(v: Mp) -> Option<Room> {
    match v {
        Mp::String(s) => s.into_str().map(Room::from),
        Mp::Integer(i) => Some(Room::from(i.to_string())),
        Mp::F64(f) => Some(Room::from(f.to_string())),
        _ => None,
    }
}

/// A room name from JSON (strings and numbers).
pub fn room_from_json(v: &Value) -> Option<Room> {
    match v {
        Value::String(s) => Some(Room::from(s.as_str())),
        Value::Number(n) => Some(Room::from(n.to_string())),
        _ => None,
    }
}

/// Rooms as JSON strings.
pub fn rooms_json(rooms: &[Room]) -> Value {
    Value::Array(rooms.iter().map(|r| Value::from(r.as_str())).collect())
}

/// Rooms as msgpack strings.
pub fn rooms_mp(rooms: &[Room]) -> Mp {
    Mp::Array(rooms.iter().map(|r| Mp::from(r.as_str())).collect())
}

/// `{rooms, except, flags}` as Node writes it (flags only with the keys that are set).
pub fn opts_mp(opts: &BroadcastOptions) -> Mp {
    let mut flags = Vec::new();
    let f = &opts.flags;
    if f.volatile {
        flags.push((Mp::from("volatile"), Mp::Boolean(true)));
    }
    if let Some(c) = f.compress {
        flags.push((Mp::from("compress"), Mp::Boolean(c)));
    }
    if let Some(t) = f.timeout {
        flags.push((Mp::from("timeout"), Mp::from(t.as_millis() as u64)));
    }
    Mp::Map(vec![
        (Mp::from("rooms"), rooms_mp(&opts.rooms)),
        (Mp::from("except"), rooms_mp(&opts.except)),
        (Mp::from("flags"), Mp::Map(flags)),
    ])
}

/// `{rooms, except, flags}` as JSON (cluster messages, requests).
pub fn opts_json(opts: &BroadcastOptions, with_flags: bool) -> Value {
    let mut m = Map::new();
    m.insert("rooms".into(), rooms_json(&opts.rooms));
    m.insert("except".into(), rooms_json(&opts.except));
    if with_flags {
        let mut flags = Map::new();
        let f = &opts.flags;
        if f.volatile {
            flags.insert("volatile".into(), Value::Bool(true));
        }
        if let Some(c) = f.compress {
            flags.insert("compress".into(), Value::Bool(c));
        }
        if let Some(t) = f.timeout {
            flags.insert("timeout".into(), Value::from(t.as_millis() as u64));
        }
        m.insert("flags".into(), Value::Object(flags));
    }
    Value::Object(m)
}

/// Reads `{rooms, except, flags}` from JSON; unknown flag keys are ignored.
pub fn opts_from_json(v: Option<&Value>) -> BroadcastOptions {
    let mut opts = BroadcastOptions::default();
    let Some(Value::Object(m)) = v else {
        return opts;
    };
    let list = |k: &str| -> Vec<Room> {
        m.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(room_from_json).collect())
            .unwrap_or_default()
    };
    opts.rooms = list("rooms");
    opts.except = list("except");
    if let Some(Value::Object(f)) = m.get("flags") {
        opts.flags = flags_from(
            f.get("volatile").and_then(Value::as_bool),
            f.get("compress").and_then(Value::as_bool),
            f.get("timeout").and_then(Value::as_f64),
        );
    }
    opts
}

/// Reads `{rooms, except, flags}` from msgpack; unknown flag keys are ignored.
pub fn opts_from_mp(v: Mp) -> BroadcastOptions {
    let mut opts = BroadcastOptions::default();
    let Mp::Map(entries) = v else {
        return opts;
    };
    for (k, v) in entries {
        match k.as_str() {
            Some("rooms") => opts.rooms = room_list(v),
            Some("except") => opts.except = room_list(v),
            Some("flags") => {
                let Mp::Map(f) = v else { continue };
                let get = |name: &str| f.iter().find(|(k, _)| k.as_str() == Some(name));
                opts.flags = flags_from(
                    get("volatile").and_then(|(_, v)| v.as_bool()),
                    get("compress").and_then(|(_, v)| v.as_bool()),
                    get("timeout").and_then(|(_, v)| v.as_f64().or(v.as_u64().map(|u| u as f64))),
                );
            }
            _ => {}
        }
    }
    opts
}

fn room_list(v: Mp) -> Vec<Room> {
    match v {
        Mp::Array(a) => a.into_iter().filter_map(room_from_mp).collect(),
        _ => Vec::new(),
    }
}

fn flags_from(
    volatile: Option<bool>,
    compress: Option<bool>,
    timeout: Option<f64>,
) -> BroadcastFlags {
    BroadcastFlags {
        volatile: volatile.unwrap_or(false),
        local: false,
        compress,
        timeout: timeout
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| std::time::Duration::from_millis(t.min(86_400_000.0) as u64)),
    }
}

/// Looks up `key` in a msgpack map.
pub fn mp_get<'a>(map: &'a [(Mp, Mp)], key: &str) -> Option<&'a Mp> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Removes `key` from a msgpack map and returns its value.
pub fn mp_take(map: &mut Vec<(Mp, Mp)>, key: &str) -> Option<Mp> {
    let i = map.iter().position(|(k, _)| k.as_str() == Some(key))?;
    Some(map.swap_remove(i).1)
}

/// Encodes a msgpack value.
pub fn mp_encode(v: &Mp) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

/// Deepest nesting accepted from Redis, as serde_json's own limit for JSON: deeper input is
/// refused rather than risking the stack.
pub const MAX_DEPTH: usize = 128;

/// Decodes one msgpack value, refusing nesting deeper than [`MAX_DEPTH`].
pub fn mp_decode(bytes: &[u8]) -> Result<Mp, rmpv::decode::Error> {
    let mut rd = bytes;
    rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)
}

/// The first element of a msgpack array when it is a string (the sender's uid of a
/// broadcast), read without decoding the rest of the message.
pub(crate) fn mp_first_str(bytes: &[u8]) -> Option<&str> {
    let mut rd = bytes;
    let len = rmp::decode::read_array_len(&mut rd).ok()?;
    if len == 0 {
        return None;
    }
    rmp::decode::read_str_from_slice(rd).ok().map(|(s, _)| s)
}

/// A socket description from a reply (Node's `{id, handshake, rooms, data}`).
pub(crate) fn socket_from_json(v: &Value) -> Option<SocketInfo> {
    Some(SocketInfo {
        id: v.get("id")?.as_str()?.to_owned(),
        rooms: v
            .get("rooms")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(room_from_json)
                    .map(|r| r.to_string())
                    .collect()
            })
            .unwrap_or_default(),
        handshake: v.get("handshake").cloned().unwrap_or(Value::Null),
        data: v.get("data").cloned().unwrap_or(Value::Null),
    })
}

/// A socket description as Node writes it.
pub(crate) fn socket_json(s: &SocketInfo) -> Value {
    json!({ "id": s.id, "handshake": s.handshake, "rooms": s.rooms, "data": s.data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_sender_is_read_without_decoding_the_message() {
        let message = mp_encode(&Mp::Array(vec![
            Mp::from("node-a"),
            Mp::Map(vec![(Mp::from("nsp"), Mp::from("/"))]),
        ]));
        assert_eq!(mp_first_str(&message), Some("node-a"));
        // A long uid (a str16 header).
        let long = "u".repeat(300);
        let message = mp_encode(&Mp::Array(vec![Mp::from(long.as_str()), Mp::Nil]));
        assert_eq!(mp_first_str(&message), Some(long.as_str()));
        // Not an array, an empty array, a first element that is not a string, truncated.
        assert_eq!(mp_first_str(&mp_encode(&Mp::from("node-a"))), None);
        assert_eq!(mp_first_str(&mp_encode(&Mp::Array(vec![]))), None);
        assert_eq!(
            mp_first_str(&mp_encode(&Mp::Array(vec![Mp::from(7)]))),
            None
        );
        let whole = mp_encode(&Mp::Array(vec![Mp::from("node-a")]));
        for cut in 0..whole.len() {
            assert_eq!(mp_first_str(&whole[..cut]), None);
        }
        assert_eq!(mp_first_str(&[]), None);
    }

    #[test]
    fn binary_round_trip_through_msgpack() {
        let atts = vec![Bytes::from_static(&[1, 2, 3])];
        let v = json!(["bin", {"_placeholder": true, "num": 0}, {"k": 1.5}]);
        let mp = json_to_mp(&v, &atts);
        assert!(mp_has_binary(&mp));
        let bytes = mp_encode(&mp);
        let mut out = Vec::new();
        let back = mp_to_json(mp_decode(&bytes).expect("decodes"), &mut out).expect("defined");
        assert_eq!(back, v);
        assert_eq!(out, atts);
    }

    #[test]
    fn captured_node_broadcast_decodes() {
        // io.emit("hello","world",1,1.5,{a:true,n:null}) captured from Node (reference §4.4).
        let hex = "93a66b536b334f3783a474797065 02a46461746195a568656c6c6fa5776f726c6401cb3ff8000000000000 82a161c3a16ec0a36e7370a12f83a5726f6f6d7390a6657863657074 90a5666c61677380";
        let clean: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes: Vec<u8> = (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).expect("hex"))
            .collect();
        let Mp::Array(parts) = mp_decode(&bytes).expect("decodes") else {
            panic!("not an array")
        };
        assert_eq!(parts[0].as_str(), Some("kSk3O7"));
        let Mp::Map(packet) = parts[1].clone() else {
            panic!("not a map")
        };
        let data = mp_get(&packet, "data").cloned().expect("data");
        let mut atts = Vec::new();
        let json = mp_to_json(data, &mut atts).expect("defined");
        assert_eq!(
            json,
            json!(["hello", "world", 1, 1.5, {"a": true, "n": null}])
        );
        assert!(opts_from_mp(parts[2].clone()) == BroadcastOptions::default());
    }

    #[test]
    fn dates_undefined_and_numeric_rooms() {
        let mut atts = Vec::new();
        assert_eq!(
            mp_to_json(Mp::Ext(-1, vec![0, 0, 0, 0]), &mut atts),
            Some(json!("1970-01-01T00:00:00.000Z"))
        );
        // 2024-02-29T12:34:56.789Z as a 12-byte timestamp.
        let mut data = 789_000_000u32.to_be_bytes().to_vec();
        data.extend_from_slice(&1_709_210_096i64.to_be_bytes());
        assert_eq!(
            mp_to_json(Mp::Ext(-1, data), &mut atts),
            Some(json!("2024-02-29T12:34:56.789Z"))
        );
        let undefined_in_map = Mp::Map(vec![
            (Mp::from("a"), Mp::Ext(0, vec![0])),
            (Mp::from("b"), Mp::from(1)),
        ]);
        assert_eq!(
            mp_to_json(undefined_in_map, &mut atts),
            Some(json!({"b": 1}))
        );
        assert_eq!(
            mp_to_json(Mp::Array(vec![Mp::Ext(0, vec![0])]), &mut atts),
            Some(json!([null]))
        );
        assert_eq!(room_from_mp(Mp::from(42)), Some(Room::from("42")));
        assert!(atts.is_empty());
    }

    #[test]
    fn nesting_is_bounded() {
        // 5000 nested one-element arrays: refused, not a stack overflow.
        let mut deep = vec![0x91u8; 5000];
        deep.push(0xc0);
        assert!(mp_decode(&deep).is_err());
        // Lengths that promise gigabytes are not allocated up front.
        assert!(mp_decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(mp_decode(&[0xc6, 0xff, 0xff, 0xff, 0xff, 1]).is_err());
        assert!(mp_decode(&[0xc9, 0xff, 0xff, 0xff, 0xff, 0, 1]).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        // Deterministic pseudo-random inputs, biased towards msgpack container and ext markers.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let markers = [
            0x91u8, 0x93, 0x81, 0xdc, 0xde, 0xc4, 0xd4, 0xd6, 0xc7, 0xa3, 0xcb, 0xc0,
        ];
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 {
                        markers[(r >> 8) as usize % markers.len()]
                    } else {
                        (r >> 16) as u8
                    }
                })
                .collect();
            if let Ok(v) = mp_decode(&bytes) {
                let mut atts = Vec::new();
                let _ = mp_to_json(v.clone(), &mut atts);
                let _ = opts_from_mp(v);
            }
        }
    }

    #[test]
    fn opts_keep_flags() {
        let opts = BroadcastOptions {
            rooms: vec![Room::from("a")],
            except: vec![Room::from("b")],
            flags: BroadcastFlags {
                volatile: true,
                local: false,
                compress: Some(false),
                timeout: Some(std::time::Duration::from_millis(1000)),
            },
        };
        assert_eq!(opts_from_mp(opts_mp(&opts)), opts);
        assert_eq!(opts_from_json(Some(&opts_json(&opts, true))), opts);
    }
}
