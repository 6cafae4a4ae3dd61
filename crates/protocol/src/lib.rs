//! Sans-I/O codecs for the Socket.IO v4 wire protocol.
//!
//! - [`engine`]: Engine.IO v4 packets (`0`–`6`, binary messages) and long-polling payloads.
//! - [`socketio`]: Socket.IO v5 packets, with a stateful [`socketio::Decoder`] that reassembles
//!   binary attachments.
//! - [`websocket`]: server-side WebSocket framing (RFC 6455) that holds no buffer between
//!   messages.
//! - [`msgpack`]: the same packets in the encoding of `socket.io-msgpack-parser`, one binary
//!   message each; [`Parser`] says which of the two a server speaks.
//!
//! Nothing here performs I/O or depends on an async runtime. Decoding never panics and never
//! loops on any input: every step consumes input or fails with a typed error.

pub mod engine;
pub mod msgpack;
mod parser;
pub mod socketio;
pub mod time;
pub mod websocket;

pub use engine::{EioDecodeError, EioPacket};
pub use parser::{Parser, UnknownParser};
pub use socketio::{DecodeError, Decoded, Decoder, Packet, PacketKind};
