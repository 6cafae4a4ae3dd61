//! The seam between the engine and the layer above it (Socket.IO).

use crate::error::CloseReason;
use crate::socket::EioSocket;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;

/// A message received from a client.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A text message (Engine.IO type `4`, without the digit).
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

/// What the engine calls as sessions open, receive messages and close.
///
/// Messages of one session are delivered one at a time, in order: the engine awaits
/// [`Handler::on_message`] before it reads the next one.
pub trait Handler: Send + Sync + 'static {
    /// Per-session state owned by the handler.
    type Data: Send + Sync + 'static;

    /// Builds the per-session state for a new session.
    fn new_data(&self) -> Self::Data;

    /// A session opened; the open packet is already queued.
    fn on_open(&self, socket: &Arc<EioSocket<Self::Data>>);

    /// A message arrived.
    fn on_message(
        &self,
        socket: &Arc<EioSocket<Self::Data>>,
        message: Incoming,
    ) -> impl Future<Output = ()> + Send;

    /// The session closed; called exactly once.
    fn on_close(&self, socket: &Arc<EioSocket<Self::Data>>, reason: CloseReason);
}
