//! Engine.IO v4 packets: one packet per WebSocket frame, or `\x1e`-separated records in a
//! long-polling body (binary records as `b` + base64).

use base64::Engine as _;
use bytes::Bytes;

/// The record separator between packets in a long-polling payload.
pub const SEPARATOR: char = '\x1e';

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EioPacket {
    /// `0`: the handshake (server → client), JSON payload.
    Open(String),
    /// `1`: close this session.
    Close,
    /// `2`: ping; the payload is `probe` during an upgrade, otherwise empty.
    Ping(String),
    /// `3`: pong; mirrors the ping payload.
    Pong(String),
    /// `4`: a text message.
    Message(String),
    /// A binary message (a binary WebSocket frame, or `b<base64>` in text).
    Binary(Bytes),
    /// `5`: completes an upgrade on the new transport.
    Upgrade,
    /// `6`: no operation; ends a pending poll during an upgrade.
    Noop,
}

/// Why a text could not be decoded as an Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EioDecodeError {
    /// The packet was empty: there is no type byte.
    #[error("empty packet")]
    Empty,
    /// The first byte is not a packet type `0`–`6` nor `b`.
    #[error("unknown packet type")]
    UnknownType,
    /// A `b` packet whose payload is not valid base64.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// A polling payload held more packets than allowed.
    #[error("too many packets in one payload")]
    TooManyPackets,
}

impl EioDecodeError {
    /// A stable short code for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::UnknownType => "unknown_type",
            Self::InvalidBase64 => "invalid_base64",
            Self::TooManyPackets => "too_many_packets",
        }
    }
}

impl EioPacket {
    /// Decodes one text packet: a WebSocket text frame or one record of a polling payload.
    pub fn decode_text(text: &str) -> Result<Self, EioDecodeError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(EioDecodeError::Empty)?;
        let rest = chars.as_str();
        Ok(match kind {
            '0' => Self::Open(rest.to_owned()),
            '1' => Self::Close,
            '2' => Self::Ping(rest.to_owned()),
            '3' => Self::Pong(rest.to_owned()),
            '4' => Self::Message(rest.to_owned()),
            '5' => Self::Upgrade,
            '6' => Self::Noop,
            'b' => Self::Binary(Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .map_err(|_| EioDecodeError::InvalidBase64)?,
            )),
            _ => return Err(EioDecodeError::UnknownType),
        })
    }

    /// Appends the text form of this packet to `out` (binary as `b` + base64, as polling wants).
    pub fn encode_text_into(&self, out: &mut String) {
        let (digit, data) = match self {
            Self::Open(d) => ('0', d.as_str()),
            Self::Close => ('1', ""),
            Self::Ping(d) => ('2', d.as_str()),
            Self::Pong(d) => ('3', d.as_str()),
            Self::Message(d) => ('4', d.as_str()),
            Self::Upgrade => ('5', ""),
            Self::Noop => ('6', ""),
            Self::Binary(b) => {
                out.push('b');
                base64::engine::general_purpose::STANDARD.encode_string(b, out);
                return;
            }
        };
        out.push(digit);
        out.push_str(data);
    }

    /// The text form of this packet.
    pub fn encode_text(&self) -> String {
        let mut out = String::new();
        self.encode_text_into(&mut out);
        out
    }
}

/// Decodes a long-polling request body into packets.
///
/// At most `max_packets` records are accepted, which bounds the work one body can cause
/// (a body of 2-byte records is the classic packet-count bomb). Any record that fails to decode
/// fails the whole payload: the caller closes the session with `parse error`.
pub fn decode_payload(body: &str, max_packets: usize) -> Result<Vec<EioPacket>, EioDecodeError> {
    let mut packets = Vec::new();
    for record in body.split(SEPARATOR) {
        if packets.len() >= max_packets {
            return Err(EioDecodeError::TooManyPackets);
        }
        packets.push(EioPacket::decode_text(record)?);
    }
    Ok(packets)
}

/// Appends one binary record (`b` + base64) to a polling payload being built.
pub fn encode_binary_record(data: &[u8], out: &mut String) {
    out.push('b');
    base64::engine::general_purpose::STANDARD.encode_string(data, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_text_type() {
        assert_eq!(
            EioPacket::decode_text("0{}"),
            Ok(EioPacket::Open("{}".into()))
        );
        assert_eq!(EioPacket::decode_text("1"), Ok(EioPacket::Close));
        assert_eq!(
            EioPacket::decode_text("2probe"),
            Ok(EioPacket::Ping("probe".into()))
        );
        assert_eq!(
            EioPacket::decode_text("3"),
            Ok(EioPacket::Pong(String::new()))
        );
        assert_eq!(
            EioPacket::decode_text("4hello"),
            Ok(EioPacket::Message("hello".into()))
        );
        assert_eq!(
            EioPacket::decode_text("4"),
            Ok(EioPacket::Message(String::new()))
        );
        assert_eq!(EioPacket::decode_text("5"), Ok(EioPacket::Upgrade));
        assert_eq!(EioPacket::decode_text("6"), Ok(EioPacket::Noop));
        assert_eq!(
            EioPacket::decode_text("bAQIDBA=="),
            Ok(EioPacket::Binary(Bytes::from_static(&[1, 2, 3, 4])))
        );
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(EioPacket::decode_text(""), Err(EioDecodeError::Empty));
        assert_eq!(
            EioPacket::decode_text("abc"),
            Err(EioDecodeError::UnknownType)
        );
        assert_eq!(
            EioPacket::decode_text("7"),
            Err(EioDecodeError::UnknownType)
        );
        assert_eq!(
            EioPacket::decode_text("b!!"),
            Err(EioDecodeError::InvalidBase64)
        );
        assert_eq!(
            EioPacket::decode_text("é"),
            Err(EioDecodeError::UnknownType)
        );
    }

    #[test]
    fn payload_round_trip() {
        let body = "4hello\x1ebAQIDBA==\x1e2";
        let packets = decode_payload(body, 16).expect("valid payload");
        assert_eq!(
            packets,
            vec![
                EioPacket::Message("hello".into()),
                EioPacket::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                EioPacket::Ping(String::new()),
            ]
        );
        let encoded: Vec<String> = packets.iter().map(EioPacket::encode_text).collect();
        assert_eq!(encoded.join("\x1e"), body);
    }

    #[test]
    fn payload_limits_and_errors() {
        assert_eq!(decode_payload("abc", 16), Err(EioDecodeError::UnknownType));
        assert_eq!(
            decode_payload("4a\x1e\x1e4b", 16),
            Err(EioDecodeError::Empty)
        );
        let bomb = vec!["42"; 100].join("\x1e");
        assert_eq!(
            decode_payload(&bomb, 64),
            Err(EioDecodeError::TooManyPackets)
        );
        assert_eq!(decode_payload(&bomb, 100).map(|p| p.len()), Ok(100));
    }

    #[test]
    fn encodes_open_and_binary_record() {
        assert_eq!(
            EioPacket::Open("{\"sid\":\"x\"}".into()).encode_text(),
            "0{\"sid\":\"x\"}"
        );
        let mut out = String::from("4a\x1e");
        encode_binary_record(&[1, 2, 3], &mut out);
        assert_eq!(out, "4a\x1ebAQID");
    }
}
