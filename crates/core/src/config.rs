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
    /// Connection state recovery (Socket.IO 4.6's `connectionStateRecovery`): a client that
    /// lost its connection gets its id, rooms, data and missed packets back. Default `None`
    /// (off), as in Node.
    pub connection_state_recovery: Option<ConnectionStateRecovery>,
}

/// Options of connection state recovery. See `docs/cluster.md` for where the state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStateRecovery {
    /// How long a disconnected socket's session and the packets it missed are kept.
    /// Default 120 s (Node's `maxDisconnectionDuration`).
    pub max_disconnection_duration: Duration,
    /// A recovered socket skips the namespace's middlewares. Default true (Node's
    /// `skipMiddlewares`).
    pub skip_middlewares: bool,
    /// Most recoverable packets kept per namespace (the oldest go first). Default 10 000.
    pub max_packets: usize,
    /// Most bytes of recoverable packets kept per namespace (the oldest go first; counted as
    /// the JSON text plus the attachments). Default 64 MiB.
    pub max_packet_bytes: usize,
    /// Most disconnected sessions kept per namespace (the oldest go first). Default 100 000.
    pub max_sessions: usize,
}

impl Default for ConnectionStateRecovery {
    fn default() -> Self {
        Self {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
            max_packets: 10_000,
            max_packet_bytes: 64 << 20,
            max_sessions: 100_000,
        }
    }
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
            connection_state_recovery: None,
            parser: Parser::Default,
        }
    }
}
