//! Socket.IO v5 packets in the default text encoding:
//! `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`, followed by one binary Engine.IO message
//! per attachment for BINARY_EVENT and BINARY_ACK.
//!
//! Binary values stay where the sender put them as `{"_placeholder":true,"num":N}` objects and
//! the bytes travel beside the JSON in [`Packet`]'s attachment list. This keeps relaying cheap:
//! a packet forwarded to other sockets is never rebuilt.

use crate::Parser;
use bytes::Bytes;
use serde_json::Value;
use std::fmt::Write as _;

/// Event names a client may not use: they would collide with the library's own events.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Default cap on attachments per packet (socket.io-parser 4.2.6's `maxAttachments`).
pub const DEFAULT_MAX_ATTACHMENTS: usize = 10;

/// The root namespace.
pub const ROOT_NAMESPACE: &str = "/";

/// One Socket.IO packet addressed to a namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The namespace, always starting with `/`.
    pub nsp: String,
    /// What the packet is, with exactly its fields.
    pub kind: PacketKind,
}

/// The seven Socket.IO packet types, binary ones folded into [`PacketKind::Event`] and
/// [`PacketKind::Ack`] with a non-empty attachment list.
#[derive(Debug, Clone, PartialEq)]
pub enum PacketKind {
    /// CONNECT: the client's auth object, or the server's `{"sid":...}` reply.
    Connect(Option<Value>),
    /// DISCONNECT from the namespace.
    Disconnect,
    /// EVENT or BINARY_EVENT: `data[0]` is the event name.
    Event {
        /// The event name followed by its arguments.
        data: Vec<Value>,
        /// Ack id when the sender wants an acknowledgement.
        id: Option<u64>,
        /// Binary attachments referenced by placeholders in `data`.
        attachments: Vec<Bytes>,
    },
    /// ACK or BINARY_ACK.
    Ack {
        /// The acknowledgement arguments.
        data: Vec<Value>,
        /// The id of the event being acknowledged.
        id: u64,
        /// Binary attachments referenced by placeholders in `data`.
        attachments: Vec<Bytes>,
    },
    /// CONNECT_ERROR: `{"message":...,"data":...}`.
    ConnectError(Value),
}

/// Why a Socket.IO packet was refused. Any of these closes the Engine.IO connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Empty text.
    #[error("empty packet")]
    Empty,
    /// The type digit is not 0–6.
    #[error("unknown packet type")]
    UnknownType,
    /// The attachment count is missing, not an integer, zero, or over the limit.
    #[error("illegal attachment count")]
    IllegalAttachments,
    /// The ack id is not a valid unsigned integer.
    #[error("invalid ack id")]
    InvalidAckId,
    /// The payload is not valid JSON.
    #[error("invalid JSON payload")]
    InvalidJson,
    /// The payload is JSON of the wrong shape for the packet type.
    #[error("invalid payload for packet type")]
    InvalidPayload,
    /// The event name is missing, not a string or number, or reserved.
    #[error("invalid event name")]
    InvalidEventName,
    /// A text packet arrived while attachments were still expected.
    #[error("text packet while reconstructing a binary packet")]
    UnexpectedText,
    /// A binary message arrived with no binary packet waiting for it.
    #[error("binary message without a pending binary packet")]
    UnexpectedBinary,
    /// A placeholder's `num` is not an integer index of a received attachment.
    #[error("invalid attachment placeholder")]
    InvalidPlaceholder,
    /// The reassembled packet (text plus every attachment) is over the decoder's byte limit.
    #[error("packet too large")]
    TooLarge,
    /// A text message reached a decoder for the msgpack parser, which takes binary messages
    /// only (usually a client with the default parser talking to a msgpack server).
    #[error("text message for the msgpack parser")]
    TextMessage,
    /// A binary message that is not exactly one msgpack value.
    #[error("invalid msgpack")]
    InvalidMsgpack,
    /// A msgpack packet nests deeper than [`crate::msgpack::MAX_DEPTH`].
    #[error("msgpack nested too deep")]
    TooDeep,
    /// A msgpack packet whose `nsp` is missing, not a string, or does not start with `/`.
    #[error("invalid namespace")]
    InvalidNamespace,
}

impl DecodeError {
    /// A stable short code for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::UnknownType => "unknown_type",
            Self::IllegalAttachments => "illegal_attachments",
            Self::InvalidAckId => "invalid_ack_id",
            Self::InvalidJson => "invalid_json",
            Self::InvalidPayload => "invalid_payload",
            Self::InvalidEventName => "invalid_event_name",
            Self::UnexpectedText => "unexpected_text",
            Self::UnexpectedBinary => "unexpected_binary",
            Self::InvalidPlaceholder => "invalid_placeholder",
            Self::TooLarge => "packet_too_large",
            Self::TextMessage => "text_message",
            Self::InvalidMsgpack => "invalid_msgpack",
            Self::TooDeep => "too_deep",
            Self::InvalidNamespace => "invalid_namespace",
        }
    }
}

/// The result of feeding one Engine.IO message to a [`Decoder`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A complete packet.
    Packet(Packet),
    /// A binary packet header or attachment was taken; more attachments are needed.
    NeedAttachments,
}

/// A binary packet waiting for its attachments.
#[derive(Debug)]
struct Pending {
    packet: Packet,
    expected: usize,
    bytes: usize,
}

/// A stateful decoder for one connection: text packets decode at once, binary packets wait for
/// their attachments. With [`Parser::Msgpack`] every packet is one binary message instead
/// ([`crate::msgpack`]) and text messages are refused.
#[derive(Debug)]
pub struct Decoder {
    parser: Parser,
    max_attachments: usize,
    max_bytes: usize,
    pending: Option<Pending>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ATTACHMENTS)
    }
}

impl Decoder {
    /// A decoder that refuses binary packets declaring more than `max_attachments` attachments.
    pub fn new(max_attachments: usize) -> Self {
        Self::with_limits(max_attachments, usize::MAX)
    }

    /// A decoder that also refuses a packet whose text plus attachments exceed `max_bytes`
    /// once reassembled: each message may be under the transport's limit while the packet a
    /// peer builds from them is not.
    pub fn with_limits(max_attachments: usize, max_bytes: usize) -> Self {
        Self::for_parser(Parser::Default, max_attachments, max_bytes)
    }

    /// A decoder for `parser` with the limits of [`Decoder::with_limits`]; the msgpack parser
    /// has no attachments, so only `max_bytes` applies to it.
    pub fn for_parser(parser: Parser, max_attachments: usize, max_bytes: usize) -> Self {
        Self {
            parser,
            max_attachments,
            max_bytes,
            pending: None,
        }
    }

    /// True while a binary packet waits for attachments.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Decodes a text Engine.IO message (without its leading `4`).
    pub fn decode_text(&mut self, text: &str) -> Result<Decoded, DecodeError> {
        if self.pending.is_some() {
            self.pending = None;
            return Err(DecodeError::UnexpectedText);
        }
        if self.parser == Parser::Msgpack {
            return Err(DecodeError::TextMessage);
        }
        if text.len() > self.max_bytes {
            return Err(DecodeError::TooLarge);
        }
        let (packet, attachments) = parse_text(text, self.max_attachments)?;
        if attachments == 0 {
            return Ok(Decoded::Packet(packet));
        }
        self.pending = Some(Pending {
            packet,
            expected: attachments,
            bytes: text.len(),
        });
        Ok(Decoded::NeedAttachments)
    }

    /// Decodes a binary Engine.IO message: the next attachment of the pending packet, or with
    /// the msgpack parser a whole packet.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Decoded, DecodeError> {
        if self.parser == Parser::Msgpack {
            if data.len() > self.max_bytes {
                return Err(DecodeError::TooLarge);
            }
            return crate::msgpack::decode(&data).map(Decoded::Packet);
        }
        let mut pending = self.pending.take().ok_or(DecodeError::UnexpectedBinary)?;
        pending.bytes = pending.bytes.saturating_add(data.len());
        if pending.bytes > self.max_bytes {
            return Err(DecodeError::TooLarge);
        }
        let list = match &mut pending.packet.kind {
            PacketKind::Event { attachments, .. } | PacketKind::Ack { attachments, .. } => {
                attachments
            }
            _ => return Err(DecodeError::UnexpectedBinary),
        };
        list.push(data);
        if list.len() < pending.expected {
            self.pending = Some(pending);
            return Ok(Decoded::NeedAttachments);
        }
        let count = list.len();
        let args = match &pending.packet.kind {
            PacketKind::Event { data, .. } | PacketKind::Ack { data, .. } => data,
            _ => return Err(DecodeError::UnexpectedBinary),
        };
        if !args.iter().all(|v| placeholders_valid(v, count, 0)) {
            return Err(DecodeError::InvalidPlaceholder);
        }
        Ok(Decoded::Packet(pending.packet))
    }
}

/// Deepest nesting walked when checking placeholders; deeper JSON is refused by serde_json first.
const MAX_DEPTH: usize = 256;

fn placeholders_valid(value: &Value, count: usize, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match value {
        Value::Array(items) => items
            .iter()
            .all(|v| placeholders_valid(v, count, depth + 1)),
        Value::Object(map) => match map.get("_placeholder") {
            Some(Value::Bool(true)) => placeholder_index(value).is_some_and(|n| n < count),
            _ => map
                .values()
                .all(|v| placeholders_valid(v, count, depth + 1)),
        },
        _ => true,
    }
}

/// The attachment index of a `{"_placeholder":true,"num":N}` object, if `value` is one.
pub fn placeholder_index(value: &Value) -> Option<usize> {
    let map = value.as_object()?;
    if map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    map.get("num")?
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
}

/// The placeholder object that stands for attachment `num`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

/// True when `name` may be used as an event name by a peer.
pub fn is_reserved_event(name: &str) -> bool {
    RESERVED_EVENTS.contains(&name)
}

fn parse_text(text: &str, max_attachments: usize) -> Result<(Packet, usize), DecodeError> {
    let bytes = text.as_bytes();
    let kind = *bytes.first().ok_or(DecodeError::Empty)?;
    let mut pos = 1;
    let binary = matches!(kind, b'5' | b'6');
    if !(b'0'..=b'6').contains(&kind) {
        return Err(DecodeError::UnknownType);
    }

    let mut attachments = 0usize;
    if binary {
        let dash = bytes[pos..]
            .iter()
            .position(|&b| b == b'-')
            .ok_or(DecodeError::IllegalAttachments)?;
        let digits = &text[pos..pos + dash];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 6 {
            return Err(DecodeError::IllegalAttachments);
        }
        attachments = digits
            .parse()
            .map_err(|_| DecodeError::IllegalAttachments)?;
        if attachments == 0 || attachments > max_attachments {
            return Err(DecodeError::IllegalAttachments);
        }
        pos += dash + 1;
    }

    let mut nsp = ROOT_NAMESPACE.to_owned();
    if bytes.get(pos) == Some(&b'/') {
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b',')
            .map_or(bytes.len(), |i| pos + i);
        nsp = text[pos..end].to_owned();
        pos = (end + 1).min(bytes.len());
    }

    let mut id = None;
    let digits = bytes[pos..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits > 0 {
        let parsed = text[pos..pos + digits]
            .parse::<u64>()
            .map_err(|_| DecodeError::InvalidAckId)?;
        id = Some(parsed);
        pos += digits;
    }

    let rest = &text[pos..];
    let payload = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(rest).map_err(|_| DecodeError::InvalidJson)?)
    };

    let kind = match kind {
        b'0' => match payload {
            None => PacketKind::Connect(None),
            Some(v @ Value::Object(_)) => PacketKind::Connect(Some(v)),
            Some(_) => return Err(DecodeError::InvalidPayload),
        },
        b'1' => match payload {
            None => PacketKind::Disconnect,
            Some(_) => return Err(DecodeError::InvalidPayload),
        },
        b'2' | b'5' => {
            let data = event_args(payload)?;
            PacketKind::Event {
                data,
                id,
                attachments: Vec::with_capacity(attachments),
            }
        }
        b'3' | b'6' => match payload {
            Some(Value::Array(data)) => PacketKind::Ack {
                data,
                id: id.ok_or(DecodeError::InvalidAckId)?,
                attachments: Vec::with_capacity(attachments),
            },
            _ => return Err(DecodeError::InvalidPayload),
        },
        _ => match payload {
            Some(v @ (Value::Object(_) | Value::String(_))) => PacketKind::ConnectError(v),
            _ => return Err(DecodeError::InvalidPayload),
        },
    };
    Ok((Packet { nsp, kind }, attachments))
}

fn event_args(payload: Option<Value>) -> Result<Vec<Value>, DecodeError> {
    let Some(Value::Array(data)) = payload else {
        return Err(DecodeError::InvalidPayload);
    };
    match data.first() {
        Some(Value::String(name)) if !is_reserved_event(name) => Ok(data),
        Some(Value::Number(_)) => Ok(data),
        _ => Err(DecodeError::InvalidEventName),
    }
}

impl Packet {
    /// A CONNECT reply carrying the socket id.
    pub fn connect_ok(nsp: &str, sid: &str) -> Self {
        Self {
            nsp: nsp.to_owned(),
            kind: PacketKind::Connect(Some(serde_json::json!({ "sid": sid }))),
        }
    }

    /// A CONNECT_ERROR with `message` and optional `data`.
    pub fn connect_error(nsp: &str, message: &str, data: Option<Value>) -> Self {
        let mut body = serde_json::Map::new();
        body.insert("message".into(), Value::String(message.to_owned()));
        if let Some(data) = data {
            body.insert("data".into(), data);
        }
        Self {
            nsp: nsp.to_owned(),
            kind: PacketKind::ConnectError(Value::Object(body)),
        }
    }

    /// The attachments carried beside the JSON (empty for non-binary packets).
    pub fn attachments(&self) -> &[Bytes] {
        match &self.kind {
            PacketKind::Event { attachments, .. } | PacketKind::Ack { attachments, .. } => {
                attachments
            }
            _ => &[],
        }
    }

    /// Appends the text form (without the Engine.IO `4`) to `out`.
    pub fn encode_into(&self, out: &mut String) {
        let attachments = self.attachments().len();
        let (digit, id, payload): (char, Option<u64>, Option<PacketJson<'_>>) = match &self.kind {
            PacketKind::Connect(v) => ('0', None, v.as_ref().map(PacketJson::Value)),
            PacketKind::Disconnect => ('1', None, None),
            PacketKind::Event { data, id, .. } => {
                let digit = if attachments > 0 { '5' } else { '2' };
                (digit, *id, Some(PacketJson::Array(data)))
            }
            PacketKind::Ack { data, id, .. } => {
                let digit = if attachments > 0 { '6' } else { '3' };
                (digit, Some(*id), Some(PacketJson::Array(data)))
            }
            PacketKind::ConnectError(v) => ('4', None, Some(PacketJson::Value(v))),
        };
        out.push(digit);
        if attachments > 0 {
            let _ = write!(out, "{attachments}-");
        }
        if self.nsp != ROOT_NAMESPACE {
            out.push_str(&self.nsp);
            out.push(',');
        }
        if let Some(id) = id {
            let _ = write!(out, "{id}");
        }
        if let Some(payload) = payload {
            payload.write(out);
        }
    }

    /// The text form (without the Engine.IO `4`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }
}

/// The JSON part of an encoded packet, after its header.
enum PacketJson<'a> {
    Value(&'a Value),
    Array(&'a [Value]),
}

impl PacketJson<'_> {
    fn write(&self, out: &mut String) {
        // serde_json writes into a Vec<u8>; reuse the String's buffer to avoid a copy.
        let mut buf = std::mem::take(out).into_bytes();
        let result = match self {
            Self::Value(v) => serde_json::to_writer(&mut buf, v),
            Self::Array(a) => serde_json::to_writer(&mut buf, a),
        };
        debug_assert!(
            result.is_ok(),
            "serializing a serde_json::Value cannot fail"
        );
        // serde_json only writes valid UTF-8, and `buf` started as a String.
        *out = String::from_utf8(buf).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(text: &str) -> Result<Decoded, DecodeError> {
        Decoder::default().decode_text(text)
    }

    fn packet(text: &str) -> Packet {
        match decode(text) {
            Ok(Decoded::Packet(p)) => p,
            other => panic!("{text:?} did not decode to a packet: {other:?}"),
        }
    }

    #[test]
    fn connect_variants() {
        assert_eq!(packet("0").kind, PacketKind::Connect(None));
        assert_eq!(packet("0").nsp, "/");
        let p = packet("0/admin,{\"token\":\"123\"}");
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.kind, PacketKind::Connect(Some(json!({"token":"123"}))));
        assert_eq!(packet("0/custom").nsp, "/custom");
        assert_eq!(packet("0/custom,").nsp, "/custom");
        assert_eq!(
            decode("0/admin,\"invalid\""),
            Err(DecodeError::InvalidPayload)
        );
        assert_eq!(decode("0[]"), Err(DecodeError::InvalidPayload));
    }

    #[test]
    fn disconnect_rejects_payload() {
        assert_eq!(packet("1/admin,").kind, PacketKind::Disconnect);
        assert_eq!(decode("1/admin,{}"), Err(DecodeError::InvalidPayload));
    }

    #[test]
    fn events_and_ack_ids() {
        let p = packet("2[\"hey\",\"Jude\"]");
        assert_eq!(
            p.kind,
            PacketKind::Event {
                data: vec![json!("hey"), json!("Jude")],
                id: None,
                attachments: vec![]
            }
        );
        let p = packet("2/admin,13[\"foo\"]");
        assert_eq!(p.nsp, "/admin");
        assert!(matches!(p.kind, PacketKind::Event { id: Some(13), .. }));
        assert!(matches!(packet("2[1,2]").kind, PacketKind::Event { .. }));
        assert_eq!(
            packet("3456[]").kind,
            PacketKind::Ack {
                data: vec![],
                id: 456,
                attachments: vec![]
            }
        );
    }

    #[test]
    fn rejects_parser_regression_strings() {
        for bad in [
            "442[\"some\",\"data\"",
            "2/admin,\"invalid",
            "2/admin,{}",
            "2[{\"toString\":\"foo\"}]",
            "2[true,\"foo\"]",
            "2[null,\"bar\"]",
            "2[\"connect\"]",
            "2[\"disconnect\",\"123\"]",
            "2[]",
            "2{}",
            "5",
            "51",
            "5a-",
            "51.23-",
            "5-1-[\"a\"]",
            "51e9-[\"a\"]",
            "50-[\"a\"]",
            "60-[\"a\"]",
            "511-[\"a\"]",
            "5invalid",
            "999",
            "abc",
            "",
            "2abc[\"message\"]",
            "218446744073709551616[\"a\"]",
            "3[\"no id\"]",
            "4",
            "4[1]",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn binary_reassembly() {
        let mut d = Decoder::default();
        let header = "52-789[\"message\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]";
        assert_eq!(d.decode_text(header), Ok(Decoded::NeedAttachments));
        assert!(d.is_pending());
        assert_eq!(
            d.decode_binary(Bytes::from_static(&[1, 2, 3])),
            Ok(Decoded::NeedAttachments)
        );
        let Ok(Decoded::Packet(p)) = d.decode_binary(Bytes::from_static(&[4, 5, 6])) else {
            panic!("expected a complete packet");
        };
        assert_eq!(p.attachments().len(), 2);
        assert!(matches!(p.kind, PacketKind::Event { id: Some(789), .. }));
        assert_eq!(p.encode(), header);
        assert!(!d.is_pending());
    }

    #[test]
    fn reassembled_size_is_capped() {
        let header =
            "52-[\"m\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]";
        let limit = header.len() + 10;
        let mut d = Decoder::with_limits(10, limit);
        assert_eq!(d.decode_text(header), Ok(Decoded::NeedAttachments));
        assert_eq!(
            d.decode_binary(Bytes::from(vec![0u8; 6])),
            Ok(Decoded::NeedAttachments)
        );
        // Each part alone is small; together they pass the limit.
        assert_eq!(
            d.decode_binary(Bytes::from(vec![0u8; 6])),
            Err(DecodeError::TooLarge)
        );
        assert!(!d.is_pending());
        let mut d = Decoder::with_limits(10, 8);
        assert_eq!(
            d.decode_text("2[\"long-name\"]"),
            Err(DecodeError::TooLarge)
        );
        let mut d = Decoder::with_limits(10, limit + 2);
        d.decode_text(header).expect("header");
        d.decode_binary(Bytes::from(vec![0u8; 6])).expect("first");
        assert!(matches!(
            d.decode_binary(Bytes::from(vec![0u8; 6])),
            Ok(Decoded::Packet(_))
        ));
    }

    #[test]
    fn binary_protocol_violations() {
        let mut d = Decoder::default();
        assert_eq!(
            d.decode_binary(Bytes::from_static(b"x")),
            Err(DecodeError::UnexpectedBinary)
        );
        d.decode_text("51-[\"a\",{\"_placeholder\":true,\"num\":0}]")
            .expect("header");
        assert_eq!(d.decode_text("2[\"a\"]"), Err(DecodeError::UnexpectedText));
        assert!(!d.is_pending(), "a violation drops the pending packet");

        for num in ["\"splice\"", "-1", "1.5", "1", "1e309", "null"] {
            let mut d = Decoder::default();
            let text = format!("51-[\"a\",{{\"_placeholder\":true,\"num\":{num}}}]");
            if d.decode_text(&text).is_err() {
                continue; // e.g. 1e309 is not JSON serde accepts
            }
            assert_eq!(
                d.decode_binary(Bytes::from_static(b"x")),
                Err(DecodeError::InvalidPlaceholder),
                "num {num} must be refused"
            );
        }
    }

    #[test]
    fn placeholder_in_plain_event_is_data() {
        let p = packet("2[\"a\",{\"_placeholder\":true,\"num\":5}]");
        assert!(p.attachments().is_empty());
    }

    #[test]
    fn encodes_exact_wire_strings() {
        assert_eq!(
            Packet::connect_ok("/", "abc").encode(),
            "0{\"sid\":\"abc\"}"
        );
        assert_eq!(
            Packet::connect_ok("/admin", "abc").encode(),
            "0/admin,{\"sid\":\"abc\"}"
        );
        assert_eq!(
            Packet::connect_error("/random", "Invalid namespace", None).encode(),
            "4/random,{\"message\":\"Invalid namespace\"}"
        );
        assert_eq!(
            Packet::connect_error("/", "no", Some(json!({"a":1}))).encode(),
            "4{\"message\":\"no\",\"data\":{\"a\":1}}"
        );
        let disconnect = Packet {
            nsp: "/admin".into(),
            kind: PacketKind::Disconnect,
        };
        assert_eq!(disconnect.encode(), "1/admin,");
        let ack = Packet {
            nsp: "/".into(),
            kind: PacketKind::Ack {
                data: vec![json!(1), json!("2")],
                id: 456,
                attachments: vec![],
            },
        };
        assert_eq!(ack.encode(), "3456[1,\"2\"]");
        let bin_ack = Packet {
            nsp: "/admin".into(),
            kind: PacketKind::Ack {
                data: vec![placeholder(0)],
                id: 15,
                attachments: vec![Bytes::from_static(b"x")],
            },
        };
        assert_eq!(
            bin_ack.encode(),
            "61-/admin,15[{\"_placeholder\":true,\"num\":0}]"
        );
    }

    #[test]
    fn placeholder_helpers() {
        assert_eq!(placeholder_index(&placeholder(3)), Some(3));
        assert_eq!(placeholder_index(&json!({"num": 1})), None);
        assert!(is_reserved_event("disconnecting"));
        assert!(!is_reserved_event("error"));
    }
}
