//! Binary values in the backend's JSON: an attachment travels as `{"_binary": "<base64>"}`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};
use switchboard::protocol::socketio::{placeholder, placeholder_index};
use switchboard::Payload;

/// The key of the binary marker object.
pub const MARKER: &str = "_binary";
/// Deepest nesting walked (deeper values are passed as they are).
const MAX_DEPTH: usize = 32;

/// The arguments as JSON, each attachment replaced by its base64 marker.
pub fn to_json(payload: &Payload) -> Vec<Value> {
    payload.args.iter().map(|v| encode(v, payload, 0)).collect()
}

fn encode(value: &Value, payload: &Payload, depth: usize) -> Value {
    if let Some(bytes) = payload.attachment_for(value) {
        let mut map = Map::new();
        map.insert(MARKER.into(), Value::String(STANDARD.encode(bytes)));
        return Value::Object(map);
    }
    if depth >= MAX_DEPTH {
        return value.clone();
    }
    match value {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| encode(v, payload, depth + 1))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), encode(v, payload, depth + 1)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A payload from JSON arguments whose base64 markers become attachments. An invalid base64
/// text is an error naming the problem.
pub fn from_json(args: Vec<Value>) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for mut arg in args {
        decode(&mut arg, &mut payload, 0)?;
        payload.args.push(arg);
    }
    Ok(payload)
}

fn decode(value: &mut Value, payload: &mut Payload, depth: usize) -> Result<(), String> {
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    match value {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(text)) = map.get(MARKER) {
                    let bytes = STANDARD
                        .decode(text)
                        .map_err(|e| format!("a {MARKER:?} value is not base64: {e}"))?;
                    *value = placeholder(payload.attachments.len());
                    payload.attachments.push(bytes.into());
                    return Ok(());
                }
            }
            if placeholder_index(value).is_some() {
                // A placeholder typed by the backend would point at nothing: pass it as null.
                *value = Value::Null;
                return Ok(());
            }
            if let Value::Object(map) = value {
                for v in map.values_mut() {
                    decode(v, payload, depth + 1)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            for v in items {
                decode(v, payload, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markers_round_trip() {
        let p = Payload::args(vec![json!({"a": 1})]).binary(vec![1u8, 2, 3]);
        let j = to_json(&p);
        assert_eq!(j, vec![json!({"a": 1}), json!({"_binary": "AQID"})]);
        let back = from_json(vec![json!({"file": {"_binary": "AQID"}, "n": [1]})]).expect("valid");
        assert_eq!(back.attachments.len(), 1);
        assert_eq!(&back.attachments[0][..], &[1, 2, 3]);
        assert_eq!(back.args[0]["file"], placeholder(0));
        assert!(from_json(vec![json!({"_binary": "!!"})]).is_err());
        let forged = from_json(vec![json!({"_placeholder": true, "num": 0})]).expect("valid");
        assert_eq!(forged.args[0], Value::Null);
    }
}
