//! WebSocket framing (RFC 6455) for the server side, without I/O.
//!
//! The engine reads a socket into a temporary buffer only when it is readable and hands the
//! bytes to a [`WsDecoder`]; the decoder copies (and unmasks) a message's payload straight into
//! the message it builds, so an idle connection holds no read buffer at all: between messages
//! the decoder owns no heap memory. Outbound frames are a small header from [`encode_header`]
//! followed by the shared payload, written with one vectored write, so no per-connection write
//! buffer holds a copy either.
//!
//! Only what Engine.IO needs is accepted: no extensions (a reserved bit set is an error), masked
//! client frames, text and binary messages (possibly fragmented), close, ping and pong.

use bytes::Bytes;

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// Continuation of a fragmented message.
    Continuation = 0,
    /// A text frame.
    Text = 1,
    /// A binary frame.
    Binary = 2,
    /// A close frame.
    Close = 8,
    /// A ping.
    Ping = 9,
    /// A pong.
    Pong = 10,
}

impl OpCode {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Continuation,
            1 => Self::Text,
            2 => Self::Binary,
            8 => Self::Close,
            9 => Self::Ping,
            10 => Self::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) >= 8
    }
}

/// The longest header of a server frame (unmasked, 64-bit length).
pub const MAX_SERVER_HEADER: usize = 10;

/// The longest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A complete message (or control frame) from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// A text message (valid UTF-8).
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A ping; the answer is a pong with the same payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close frame with its status code, if it carried one.
    Close(Option<u16>),
}

/// Why a client's bytes are not acceptable WebSocket frames. After an error the connection
/// must be closed with [`WsError::close_code`]: the decoder's state is undefined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// A client frame without a mask; close the connection (1002).
    #[error("client frame is not masked")]
    Unmasked,
    /// RSV1–3 set, but no extension was negotiated; close the connection (1002).
    #[error("reserved bits set without an extension")]
    ReservedBits,
    /// An opcode RFC 6455 does not define; close the connection (1002).
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    /// A control frame fragmented or longer than 125 bytes; close the connection (1002).
    #[error("control frame fragmented or longer than 125 bytes")]
    BadControlFrame,
    /// A continuation with no message to continue, or a new message inside a fragmented one;
    /// close the connection (1002).
    #[error("frame out of sequence in a fragmented message")]
    BadFragment,
    /// A 64-bit length with its most significant bit set; close the connection (1002).
    #[error("frame length out of range")]
    BadLength,
    /// A message longer than the limit; close the connection (1009).
    #[error("message of at least {size} bytes is over the {max} byte limit")]
    TooBig {
        /// Bytes the message has at least.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A text message (or close reason) that is not UTF-8; close the connection (1007).
    #[error("text is not valid UTF-8")]
    Utf8,
    /// A close frame with a one-byte payload; close the connection (1002).
    #[error("malformed close frame")]
    BadClose,
}

impl WsError {
    /// The close code to answer with (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooBig { .. } => 1009,
            Self::Utf8 => 1007,
            _ => 1002,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct FrameHead {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    len: usize,
    /// Payload bytes already read.
    read: usize,
}

/// A streaming decoder of client frames. Feed it whatever the socket gave; it returns each
/// message as soon as its last byte arrived.
#[derive(Debug)]
pub struct WsDecoder {
    max_message: usize,
    head: [u8; 14],
    head_len: usize,
    frame: Option<FrameHead>,
    /// The data message being assembled: binary or not, and the payload so far.
    message: Option<(bool, Vec<u8>)>,
    /// The payload of the control frame being read.
    control: Vec<u8>,
}

impl WsDecoder {
    /// A decoder refusing messages longer than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            head: [0; 14],
            head_len: 0,
            frame: None,
            message: None,
            control: Vec::new(),
        }
    }

    /// True when no frame is partly read: the decoder holds no bytes.
    pub fn is_idle(&self) -> bool {
        self.head_len == 0 && self.frame.is_none() && self.message.is_none()
    }

    /// Consumes bytes from the front of `input` up to the end of the next complete message and
    /// returns it; `Ok(None)` when `input` ran out first (everything was consumed and kept).
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<WsMessage>, WsError> {
        loop {
            let mut frame = match self.frame {
                Some(f) => f,
                None => match self.read_head(input)? {
                    Some(f) => f,
                    None => return Ok(None),
                },
            };
            let take = (frame.len - frame.read).min(input.len());
            let (chunk, rest) = input.split_at(take);
            let target = if frame.opcode.is_control() {
                &mut self.control
            } else {
                match &mut self.message {
                    Some((_, data)) => data,
                    None => return Err(WsError::BadFragment),
                }
            };
            target.extend(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ frame.mask[(frame.read + i) % 4]),
            );
            *input = rest;
            frame.read += take;
            if frame.read < frame.len {
                self.frame = Some(frame);
                return Ok(None);
            }
            self.frame = None;
            if frame.opcode.is_control() {
                return self.finish_control(frame.opcode).map(Some);
            }
            if frame.fin {
                let Some((binary, data)) = self.message.take() else {
                    return Err(WsError::BadFragment);
                };
                return if binary {
                    Ok(Some(WsMessage::Binary(Bytes::from(data))))
                } else {
                    String::from_utf8(data)
                        .map(|s| Some(WsMessage::Text(s)))
                        .map_err(|_| WsError::Utf8)
                };
            }
        }
    }

    /// Reads the next frame header; `Ok(None)` when `input` ran out first.
    fn read_head(&mut self, input: &mut &[u8]) -> Result<Option<FrameHead>, WsError> {
        loop {
            let need = header_len(&self.head[..self.head_len]);
            if self.head_len >= need {
                break;
            }
            let n = (need - self.head_len).min(input.len());
            if n == 0 {
                return Ok(None);
            }
            let (chunk, rest) = input.split_at(n);
            self.head[self.head_len..self.head_len + n].copy_from_slice(chunk);
            self.head_len += n;
            *input = rest;
        }
        let head = &self.head[..self.head_len];
        self.head_len = 0;
        let (b0, b1) = (head[0], head[1]);
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(WsError::UnknownOpcode(b0 & 0x0f))?;
        if b1 & 0x80 == 0 {
            return Err(WsError::Unmasked);
        }
        let fin = b0 & 0x80 != 0;
        let (len, at) = match b1 & 0x7f {
            126 => (u64::from(u16::from_be_bytes([head[2], head[3]])), 4),
            127 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(&head[2..10]);
                (u64::from_be_bytes(l), 10)
            }
            n => (u64::from(n), 2),
        };
        if len >> 63 != 0 {
            return Err(WsError::BadLength);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&head[at..at + 4]);
        if opcode.is_control() {
            if !fin || len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(WsError::BadControlFrame);
            }
            self.control = Vec::with_capacity(len as usize);
        } else {
            let so_far = match (&mut self.message, opcode) {
                (None, OpCode::Continuation) | (Some(_), OpCode::Text | OpCode::Binary) => {
                    return Err(WsError::BadFragment)
                }
                (Some((_, data)), _) => data.len() as u64,
                (None, _) => 0,
            };
            let size = so_far.saturating_add(len);
            if size > self.max_message as u64 {
                return Err(WsError::TooBig {
                    size,
                    max: self.max_message,
                });
            }
            // Bounded by the limit just checked, so it fits in usize.
            let len = len as usize;
            match &mut self.message {
                Some((_, data)) => data.reserve_exact(len),
                None => {
                    self.message = Some((opcode == OpCode::Binary, Vec::with_capacity(len)));
                }
            }
        }
        let len = usize::try_from(len).map_err(|_| WsError::BadLength)?;
        let frame = FrameHead {
            fin,
            opcode,
            mask,
            len,
            read: 0,
        };
        self.frame = Some(frame);
        Ok(Some(frame))
    }

    fn finish_control(&mut self, opcode: OpCode) -> Result<WsMessage, WsError> {
        let payload = std::mem::take(&mut self.control);
        match opcode {
            OpCode::Ping => Ok(WsMessage::Ping(Bytes::from(payload))),
            OpCode::Pong => Ok(WsMessage::Pong),
            _ => match payload.len() {
                0 => Ok(WsMessage::Close(None)),
                1 => Err(WsError::BadClose),
                _ => {
                    std::str::from_utf8(&payload[2..]).map_err(|_| WsError::Utf8)?;
                    Ok(WsMessage::Close(Some(u16::from_be_bytes([
                        payload[0], payload[1],
                    ]))))
                }
            },
        }
    }
}

/// The length of the header that starts with `head` (2 until its first two bytes are known).
fn header_len(head: &[u8]) -> usize {
    let Some(&b1) = head.get(1) else { return 2 };
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Writes the header of a final, unmasked server frame of `len` payload bytes into `out` and
/// returns its length.
pub fn encode_header(opcode: OpCode, len: usize, out: &mut [u8; MAX_SERVER_HEADER]) -> usize {
    out[0] = 0x80 | opcode as u8;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// The payload of a close frame: `code` and as much of `reason` as fits in a control frame.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn decode_all(d: &mut WsDecoder, mut input: &[u8]) -> Vec<Result<WsMessage, WsError>> {
        let mut out = Vec::new();
        loop {
            match d.decode(&mut input) {
                Ok(Some(m)) => out.push(Ok(m)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    #[test]
    fn rfc_example_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut d = WsDecoder::new(1000);
        assert_eq!(
            decode_all(&mut d, &wire),
            vec![Ok(WsMessage::Text("Hello".into()))]
        );
        assert!(d.is_idle());
    }

    #[test]
    fn byte_by_byte_and_fragmented_with_interleaved_ping() {
        let mut wire = client_frame(0x01, b"Hel", [1, 2, 3, 4]);
        wire.extend(client_frame(0x89, b"hi", [9, 8, 7, 6]));
        wire.extend(client_frame(0x80, b"lo", [5, 6, 7, 8]));
        wire.extend(client_frame(0x82, &[0, 1, 2], [0xaa, 0xbb, 0xcc, 0xdd]));
        let mut d = WsDecoder::new(1000);
        let mut got = Vec::new();
        for b in &wire {
            got.extend(decode_all(&mut d, std::slice::from_ref(b)));
        }
        assert_eq!(
            got,
            vec![
                Ok(WsMessage::Ping(Bytes::from_static(b"hi"))),
                Ok(WsMessage::Text("Hello".into())),
                Ok(WsMessage::Binary(Bytes::from_static(&[0, 1, 2]))),
            ]
        );
        assert!(d.is_idle());
    }

    #[test]
    fn extended_lengths() {
        let medium = vec![b'a'; 300];
        let large = vec![7u8; 70_000];
        let mut wire = client_frame(0x81, &medium, [1, 1, 1, 1]);
        wire.extend(client_frame(0x82, &large, [3, 4, 5, 6]));
        let mut d = WsDecoder::new(100_000);
        let got = decode_all(&mut d, &wire);
        assert_eq!(
            got,
            vec![
                Ok(WsMessage::Text("a".repeat(300))),
                Ok(WsMessage::Binary(Bytes::from(large))),
            ]
        );
    }

    #[test]
    fn close_frames() {
        let mut d = WsDecoder::new(100);
        let wire = client_frame(0x88, &close_payload(1000, "bye"), [1, 2, 3, 4]);
        assert_eq!(
            decode_all(&mut d, &wire),
            vec![Ok(WsMessage::Close(Some(1000)))]
        );
        let wire = client_frame(0x88, b"", [1, 2, 3, 4]);
        assert_eq!(decode_all(&mut d, &wire), vec![Ok(WsMessage::Close(None))]);
        let wire = client_frame(0x88, b"x", [1, 2, 3, 4]);
        assert_eq!(decode_all(&mut d, &wire), vec![Err(WsError::BadClose)]);
    }

    #[test]
    fn violations_are_typed_errors() {
        let cases: Vec<(Vec<u8>, WsError)> = vec![
            (vec![0x81, 0x01, b'a'], WsError::Unmasked),
            (client_frame(0xc1, b"a", [0; 4]), WsError::ReservedBits),
            (client_frame(0x83, b"a", [0; 4]), WsError::UnknownOpcode(3)),
            (client_frame(0x09, b"a", [0; 4]), WsError::BadControlFrame),
            (
                client_frame(0x89, &[0; 126], [0; 4]),
                WsError::BadControlFrame,
            ),
            (client_frame(0x80, b"a", [0; 4]), WsError::BadFragment),
            (client_frame(0x81, &[0xff, 0xfe], [0; 4]), WsError::Utf8),
            (
                client_frame(0x82, &[0; 11], [0; 4]),
                WsError::TooBig { size: 11, max: 10 },
            ),
            (
                vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
                WsError::BadLength,
            ),
        ];
        for (wire, want) in cases {
            let mut d = WsDecoder::new(10);
            assert_eq!(decode_all(&mut d, &wire), vec![Err(want.clone())], "{want}");
        }
        let mut wire = client_frame(0x01, b"a", [0; 4]);
        wire.extend(client_frame(0x81, b"b", [0; 4]));
        let mut d = WsDecoder::new(10);
        assert_eq!(decode_all(&mut d, &wire), vec![Err(WsError::BadFragment)]);
        // The limit counts every fragment of a message.
        let mut wire = client_frame(0x02, &[0; 6], [0; 4]);
        wire.extend(client_frame(0x80, &[0; 6], [0; 4]));
        let mut d = WsDecoder::new(10);
        assert_eq!(
            decode_all(&mut d, &wire),
            vec![Err(WsError::TooBig { size: 12, max: 10 })]
        );
    }

    #[test]
    fn the_size_check_comes_before_any_allocation() {
        // A header announcing 2^62 bytes is refused from its header alone.
        let wire = [0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        let mut d = WsDecoder::new(1 << 20);
        assert!(matches!(
            decode_all(&mut d, &wire)[..],
            [Err(WsError::TooBig { .. })]
        ));
    }

    #[test]
    fn server_headers() {
        let mut h = [0u8; MAX_SERVER_HEADER];
        assert_eq!(encode_header(OpCode::Text, 5, &mut h), 2);
        assert_eq!(&h[..2], &[0x81, 5]);
        assert_eq!(encode_header(OpCode::Binary, 300, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 1, 44]);
        assert_eq!(encode_header(OpCode::Close, 70_000, &mut h), 10);
        assert_eq!(&h[..10], &[0x88, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        let long = "é".repeat(100);
        let p = close_payload(1001, &long);
        assert!(p.len() <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
    }

    /// Messages and the first error, feeding `wire` in pieces of `chunk(i)` bytes.
    fn decode_chunked(
        wire: &[u8],
        mut chunk: impl FnMut() -> usize,
    ) -> (Vec<WsMessage>, Option<WsError>) {
        let mut d = WsDecoder::new(150);
        let mut out = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            let (mut piece, tail) = rest.split_at(chunk().clamp(1, rest.len()));
            rest = tail;
            loop {
                match d.decode(&mut piece) {
                    Ok(Some(m)) => out.push(m),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
            assert!(piece.is_empty());
        }
        (out, None)
    }

    #[test]
    fn mutated_input_never_panics_and_chunking_does_not_matter() {
        // xorshift: deterministic, no dependency.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut base = client_frame(0x01, b"frag", [1, 2, 3, 4]);
        base.extend(client_frame(0x89, b"p", [4, 3, 2, 1]));
        base.extend(client_frame(0x80, &[b'x'; 200], [7, 7, 7, 7]));
        base.extend(client_frame(0x88, &close_payload(1000, "x"), [0; 4]));
        for _ in 0..20_000 {
            let mut wire = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % wire.len();
                wire[i] = next() as u8;
            }
            wire.truncate((next() as usize) % (wire.len() + 1));
            let whole = decode_chunked(&wire, || usize::MAX);
            let sizes = next();
            let mut k = 0;
            let chunked = decode_chunked(&wire, || {
                k += 1;
                ((sizes >> (k % 16 * 4)) & 7) as usize + 1
            });
            assert_eq!(whole, chunked, "{wire:?}");
        }
    }
}
