//! Switchboard: a Socket.IO v4 server API in Rust, with Socket.IO's own names.
//!
//! ```no_run
//! use switchboard::{Server, ServerConfig, Payload};
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let io = Server::new(ServerConfig::default())?;
//! io.on_connection(|socket| {
//!     socket.on("join-room", |socket, event| {
//!         if let Ok(room) = event.arg::<String>(0) {
//!             socket.join(room);
//!         }
//!     });
//!     socket.on("chat", |socket, event| {
//!         let room: String = event.arg(0).unwrap_or_default();
//!         let _ = socket.to(room).emit("chat", Payload::args(event.payload.args[1..].to_vec()));
//!     });
//! });
//! let listener = switchboard::engine::bind("127.0.0.1:3000".parse()?, 4096)?;
//! switchboard::engine::serve(listener, io.engine(), Default::default(), Default::default()).await;
//! # Ok(()) }
//! ```
//!
//! Layout: [`Server`] holds [`Namespace`]s; a namespace holds [`Socket`]s, its rooms and an
//! [`Adapter`]; [`BroadcastOperator`] selects sockets (`to`, `except`, `volatile`, `local`,
//! `timeout`) and acts on them through the adapter; `client.rs` decodes each connection's
//! packets and dispatches them; `recovery.rs` holds connection state recovery's session
//! types and the in-memory store of sessions and recoverable packets.

mod adapter;
mod client;
mod config;
mod error;
mod metrics;
mod namespace;
mod operators;
mod payload;
mod recovery;
mod room;
mod server;
mod socket;

#[allow(deprecated)]
pub use adapter::LocalAdapter;
pub use adapter::{
    collect_acks, AckResponses, Adapter, AdapterError, AdapterFactory, BroadcastFlags,
    BroadcastOptions, EventPacket, InMemoryAdapter, InMemoryAdapterFactory, LocalNamespace,
    Partial,
};
pub use client::{Client, SocketIoHandler};
pub use config::{ConnectionStateRecovery, ServerConfig};
pub use error::{AckError, ConnectError, DisconnectReason, EmitError};
pub use metrics::SocketIoMetrics;
pub use namespace::Namespace;
pub use operators::BroadcastOperator;
pub use payload::Payload;
pub use recovery::{now_ms, packet_size, RecoveredSession, RecoveryFailure, SessionState};
pub use room::{IntoRooms, Room};
pub use server::{DynamicNamespace, Server};
pub use socket::{Ack, Event, Handshake, Socket, SocketInfo, SocketRef, Verdict, VolatileSocket};
pub use switchboard_protocol::{time, Parser};

/// The engine layer, re-exported for serving.
pub use switchboard_engine as engine;
/// The protocol layer, re-exported.
pub use switchboard_protocol as protocol;
