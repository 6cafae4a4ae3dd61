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
