//! Errors of the Socket.IO layer.

use serde_json::Value;

/// Why an emit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The event name is reserved (`connect`, `disconnect`, ...); pick another name.
    #[error("\"{0}\" is a reserved event name")]
    ReservedEvent(String),
    /// The socket is disconnected.
    #[error("socket disconnected")]
    Disconnected,
    /// The client reads too slowly; it was disconnected.
    #[error("slow consumer disconnected")]
    SlowConsumer,
}

/// Why an acknowledgement did not arrive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No reply within the timeout.
    #[error("operation has timed out")]
    Timeout,
    /// The socket disconnected before replying.
    #[error("socket has been disconnected")]
    Disconnected,
    /// The emit itself failed.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// Too many acknowledgements are outstanding for this socket.
    #[error("too many pending acknowledgements")]
    TooManyPending,
}

/// A refusal from a connection middleware, sent to the client as CONNECT_ERROR.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    /// `err.message` on the client.
    pub message: String,
    /// `err.data` on the client.
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// Why a socket left its namespace, as Socket.IO spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The connection failed.
    TransportError,
    /// The client closed the connection.
    TransportClose,
    /// The connection was closed by the server's engine.
    ForcedClose,
    /// No pong in time.
    PingTimeout,
    /// The client sent an invalid packet.
    ParseError,
    /// The server is shutting down.
    ServerShutdown,
    /// `disconnect(true)` closed the whole connection.
    ForcedServerClose,
    /// The client left the namespace.
    ClientNamespaceDisconnect,
    /// The server removed the socket from the namespace.
    ServerNamespaceDisconnect,
    /// The client did not read fast enough.
    SlowConsumer,
    /// The client sent a message over the payload limit.
    MessageTooBig,
}

impl DisconnectReason {
    /// The reason text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportError => "transport error",
            Self::TransportClose => "transport close",
            Self::ForcedClose => "forced close",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ServerShutdown => "server shutting down",
            Self::ForcedServerClose => "forced server close",
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::SlowConsumer => "slow consumer",
            Self::MessageTooBig => "message too big",
        }
    }

    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::TransportError => "transport_error",
            Self::TransportClose => "transport_close",
            Self::ForcedClose => "forced_close",
            Self::PingTimeout => "ping_timeout",
            Self::ParseError => "parse_error",
            Self::ServerShutdown => "server_shutdown",
            Self::ForcedServerClose => "forced_server_close",
            Self::ClientNamespaceDisconnect => "client_namespace_disconnect",
            Self::ServerNamespaceDisconnect => "server_namespace_disconnect",
            Self::SlowConsumer => "slow_consumer",
            Self::MessageTooBig => "message_too_big",
        }
    }
}

impl From<switchboard_engine::CloseReason> for DisconnectReason {
    fn from(r: switchboard_engine::CloseReason) -> Self {
        use switchboard_engine::CloseReason as C;
        match r {
            C::PingTimeout => Self::PingTimeout,
            C::TransportClose => Self::TransportClose,
            C::TransportError => Self::TransportError,
            C::ParseError => Self::ParseError,
            C::ForcedClose => Self::ForcedServerClose,
            C::ServerShutdown => Self::ServerShutdown,
            C::SlowConsumer => Self::SlowConsumer,
            C::MessageTooBig => Self::MessageTooBig,
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
