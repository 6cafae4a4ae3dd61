//! Packet equality up to float rounding, shared by the robustness tests and the fuzz targets
//! (`fuzz/fuzz_targets/common.rs` includes this file).

use serde_json::Value;
use switchboard_protocol::socketio::{Packet, PacketKind};

/// The round-trip property, weakened for floats.
///
/// Why weaker: serde_json is built without its `float_roundtrip` feature, so its float parser
/// may round the last bit wrongly (`1.2889701057240635` parses as `1.2889701057240637`). The
/// re-encoded text then carries a different shortest representation and re-parses one or two
/// ulps away. Everything else (structure, strings, integers, ids, namespaces, attachments) must
/// match exactly. `float_values_survive_reencoding` in `robustness.rs` holds the strict check.
pub fn packets_close(a: &Packet, b: &Packet) -> bool {
    if a == b {
        return true;
    }
    if a.nsp != b.nsp || a.attachments() != b.attachments() {
        return false;
    }
    let all = |x: &[Value], y: &[Value]| {
        x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_close(x, y))
    };
    match (&a.kind, &b.kind) {
        (PacketKind::Event { data: x, id: i, .. }, PacketKind::Event { data: y, id: j, .. }) => {
            i == j && all(x, y)
        }
        (PacketKind::Ack { data: x, id: i, .. }, PacketKind::Ack { data: y, id: j, .. }) => {
            i == j && all(x, y)
        }
        (PacketKind::Connect(Some(x)), PacketKind::Connect(Some(y)))
        | (PacketKind::ConnectError(x), PacketKind::ConnectError(y)) => values_close(x, y),
        _ => false,
    }
}

fn values_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x != y => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_sign_negative() == y.is_sign_negative() => {
                x.to_bits().abs_diff(y.to_bits()) <= 2
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_close(v, w)))
        }
        _ => a == b,
    }
}
