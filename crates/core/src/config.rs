//! Server options.

use std::time::Duration;
use switchboard_engine::EngineConfig;
use switchboard_protocol::Parser;

/// Socket.IO server options. Defaults match socket.io 4.8.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Engine options; the path defaults to `/socket.io/`. Its `max_payload` also caps a
    /// whole Socket.IO packet once reassembled (text plus every binary attachment): a sender
    /// past it is disconnected with a parse error.
    pub engine: EngineConfig,
    /// A connection that joins no namespace within this time is closed. Default 45 s.
    pub connect_timeout: Duration,
    /// Timeout of `emit_with_ack` when none is given. Default 30 s.
    pub ack_timeout: Duration,
    /// Most attachments one binary packet may declare. Default 10.
    pub max_attachments: usize,
    /// Most acknowledgements a socket may have outstanding. Default 1024.
    pub max_pending_acks: usize,
    /// The packet encoding every client of this server uses: [`Parser::Default`] (the
    /// default) or [`Parser::Msgpack`] (`socket.io-msgpack-parser`). A client with the other
    /// parser is disconnected with a parse error on its first packet.
    pub parser: Parser,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig {
                path: "/socket.io/".into(),
                ..EngineConfig::default()
            },
            connect_timeout: Duration::from_secs(45),
            ack_timeout: Duration::from_secs(30),
            max_attachments: switchboard_protocol::socketio::DEFAULT_MAX_ATTACHMENTS,
            max_pending_acks: 1024,
            parser: Parser::Default,
        }
    }
}
