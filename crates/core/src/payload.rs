//! Event arguments: JSON values, with binary values carried beside them as attachments.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use switchboard_protocol::socketio::{placeholder, placeholder_index};

/// The arguments of an event or an acknowledgement.
///
/// Binary values appear in `args` as `{"_placeholder":true,"num":N}` objects; attachment `N`
/// holds the bytes. [`Payload::binary`] adds one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    /// The arguments, in order.
    pub args: Vec<Value>,
    /// Binary attachments referenced by placeholders in `args`.
    pub attachments: Vec<Bytes>,
}

impl Payload {
    /// No arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Several JSON arguments.
    pub fn args(args: Vec<Value>) -> Self {
        Self {
            args,
            attachments: Vec::new(),
        }
    }

    /// Adds a JSON argument; a value that cannot be serialized becomes `null`.
    pub fn arg<T: Serialize>(mut self, value: &T) -> Self {
        self.args
            .push(serde_json::to_value(value).unwrap_or(Value::Null));
        self
    }

    /// Adds a binary argument.
    pub fn binary(mut self, data: impl Into<Bytes>) -> Self {
        self.args.push(placeholder(self.attachments.len()));
        self.attachments.push(data.into());
        self
    }

    /// Argument `i` deserialized as `T`.
    pub fn get<T: DeserializeOwned>(&self, i: usize) -> Result<T, serde_json::Error> {
        T::deserialize(self.args.get(i).unwrap_or(&Value::Null))
    }

    /// The bytes of argument `i` when it is a binary placeholder.
    pub fn bytes(&self, i: usize) -> Option<&Bytes> {
        self.args
            .get(i)
            .and_then(placeholder_index)
            .and_then(|n| self.attachments.get(n))
    }

    /// The bytes a placeholder value found anywhere inside the arguments stands for.
    pub fn attachment_for(&self, value: &Value) -> Option<&Bytes> {
        placeholder_index(value).and_then(|n| self.attachments.get(n))
    }

    /// The first argument, or `null` (what a broadcast with acknowledgement collects).
    pub fn first(&self) -> Value {
        self.args.first().cloned().unwrap_or(Value::Null)
    }

    /// Only the first argument (or `null`), keeping the attachments it may reference.
    pub fn into_first(mut self) -> Self {
        self.args.truncate(1);
        if self.args.is_empty() {
            self.args.push(Value::Null);
        }
        self
    }

    /// One payload whose single argument is the array of every payload's first argument, with
    /// placeholders renumbered into one attachment list.
    pub fn collect(payloads: Vec<Payload>) -> Self {
        let mut items = Vec::with_capacity(payloads.len());
        let mut attachments = Vec::new();
        for p in payloads {
            let offset = attachments.len();
            let mut first = p.args.into_iter().next().unwrap_or(Value::Null);
            shift_placeholders(&mut first, offset, 0);
            items.push(first);
            attachments.extend(p.attachments);
        }
        Self {
            args: vec![Value::Array(items)],
            attachments,
        }
    }
}

fn shift_placeholders(value: &mut Value, offset: usize, depth: usize) {
    if offset == 0 || depth > 256 {
        return;
    }
    if let Some(n) = placeholder_index(value) {
        *value = placeholder(n + offset);
        return;
    }
    match value {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| shift_placeholders(v, offset, depth + 1)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| shift_placeholders(v, offset, depth + 1)),
        _ => {}
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Self::args(vec![value])
    }
}

impl From<&str> for Payload {
    fn from(value: &str) -> Self {
        Self::args(vec![Value::String(value.to_owned())])
    }
}

impl From<String> for Payload {
    fn from(value: String) -> Self {
        Self::args(vec![Value::String(value)])
    }
}

impl From<()> for Payload {
    fn from(_: ()) -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collect_renumbers_placeholders() {
        let a = Payload::new().binary(vec![1u8]);
        let b = Payload::args(vec![json!({"x": placeholder(0)})]);
        let b = Payload {
            attachments: vec![Bytes::from_static(&[2])],
            ..b
        };
        let c = Payload::from(json!("plain"));
        let merged = Payload::collect(vec![a, b, c]);
        assert_eq!(
            merged.args,
            vec![json!([placeholder(0), {"x": placeholder(1)}, "plain"])]
        );
        assert_eq!(
            merged.attachments,
            vec![Bytes::from_static(&[1]), Bytes::from_static(&[2])]
        );
    }
}
