//! Errors of the engine, each mapped to the protocol's HTTP answer and a metric label.

/// Engine.IO HTTP error, sent before a session exists or for a bad session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Code 0: the `transport` query value is missing, unknown or disabled. Fix the client URL.
    #[error("Transport unknown")]
    UnknownTransport,
    /// Code 1: the `sid` is unknown or expired; the client must handshake again.
    #[error("Session ID unknown")]
    UnknownSid,
    /// Code 2: a handshake must be a GET.
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    /// Code 3: malformed request (transport mismatch, websocket without upgrade, overlap).
    #[error("Bad request")]
    BadRequest,
    /// Code 4: the origin is not allowed (HTTP 403).
    #[error("Forbidden")]
    Forbidden,
    /// Code 5: only `EIO=4` is spoken here.
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
    /// HTTP 503, code 4: the node holds its most sessions; retry later or on another node.
    #[error("Server at capacity")]
    AtCapacity,
    /// HTTP 429, code 4: this client address holds its most sessions.
    #[error("Too many sessions from this address")]
    TooManySessionsFromAddress,
    /// HTTP 429, code 4: this client address opens sessions faster than allowed.
    #[error("Too many handshakes from this address")]
    HandshakeRateLimited,
    /// HTTP 408, code 3: a polling body did not arrive within the deadline.
    #[error("Request body timeout")]
    BodyTimeout,
    /// HTTP 403, code 4: the application's admission callback
    /// ([`crate::EngineConfig::allow_request`]) refused the handshake.
    #[error("Forbidden")]
    NotAllowed,
}

impl HttpError {
    /// The Engine.IO error code in the JSON body.
    pub fn code(self) -> u8 {
        match self {
            Self::UnknownTransport => 0,
            Self::UnknownSid => 1,
            Self::BadHandshakeMethod => 2,
            Self::BadRequest => 3,
            Self::Forbidden | Self::NotAllowed => 4,
            Self::UnsupportedProtocolVersion => 5,
            Self::AtCapacity | Self::TooManySessionsFromAddress | Self::HandshakeRateLimited => 4,
            Self::BodyTimeout => 3,
        }
    }

    /// The HTTP status.
    pub fn status(self) -> http::StatusCode {
        match self {
            Self::Forbidden | Self::NotAllowed => http::StatusCode::FORBIDDEN,
            Self::AtCapacity => http::StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManySessionsFromAddress | Self::HandshakeRateLimited => {
                http::StatusCode::TOO_MANY_REQUESTS
            }
            Self::BodyTimeout => http::StatusCode::REQUEST_TIMEOUT,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    /// A stable short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownTransport => "unknown_transport",
            Self::UnknownSid => "unknown_sid",
            Self::BadHandshakeMethod => "bad_handshake_method",
            Self::BadRequest => "bad_request",
            Self::Forbidden => "forbidden",
            Self::UnsupportedProtocolVersion => "unsupported_protocol_version",
            Self::AtCapacity => "at_capacity",
            Self::TooManySessionsFromAddress => "too_many_sessions_per_ip",
            Self::HandshakeRateLimited => "handshake_rate_limited",
            Self::BodyTimeout => "body_timeout",
            Self::NotAllowed => "not_allowed",
        }
    }
}

/// Why a session ended. Socket.IO surfaces these as disconnect reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// No pong within the ping timeout.
    PingTimeout,
    /// The client closed the transport (close packet, WebSocket close, TCP end).
    TransportClose,
    /// The transport failed (I/O error, overlapping polls, write timeout).
    TransportError,
    /// The client sent something that does not parse.
    ParseError,
    /// The server closed the session on purpose.
    ForcedClose,
    /// The server is shutting down.
    ServerShutdown,
    /// The client does not read fast enough: its outbound queue hit the cap.
    SlowConsumer,
    /// A message over the payload limit arrived on the WebSocket.
    MessageTooBig,
}

impl CloseReason {
    /// The reason as Socket.IO spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PingTimeout => "ping timeout",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::ParseError => "parse error",
            Self::ForcedClose => "forced close",
            Self::ServerShutdown => "server shutting down",
            Self::SlowConsumer => "slow consumer",
            Self::MessageTooBig => "message too big",
        }
    }

    /// A stable short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::PingTimeout => "ping_timeout",
            Self::TransportClose => "transport_close",
            Self::TransportError => "transport_error",
            Self::ParseError => "parse_error",
            Self::ForcedClose => "forced_close",
            Self::ServerShutdown => "server_shutdown",
            Self::SlowConsumer => "slow_consumer",
            Self::MessageTooBig => "message_too_big",
        }
    }

    /// The WebSocket close code sent for this reason.
    pub fn ws_close_code(self) -> u16 {
        match self {
            Self::ServerShutdown => 1001,
            Self::ParseError => 1002,
            Self::SlowConsumer => 1008,
            Self::MessageTooBig => 1009,
            Self::TransportError => 1011,
            _ => 1000,
        }
    }

    /// True when the server ended the session and the client should be told (`1` on polling).
    pub fn server_initiated(self) -> bool {
        matches!(
            self,
            Self::ForcedClose | Self::ServerShutdown | Self::SlowConsumer
        )
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a packet could not be queued for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session is closed or closing.
    #[error("session closed")]
    Closed,
    /// The outbound queue was full: the session was closed as a slow consumer.
    #[error("outbound queue full; session closed as a slow consumer")]
    SlowConsumer,
    /// A volatile packet was dropped because the transport was not writable.
    #[error("volatile packet dropped")]
    Dropped,
}
