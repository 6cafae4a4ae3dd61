//! Broadcast operators: `to`, `in_`, `except`, `volatile`, `local`, `timeout`, then an action.

use crate::adapter::{AckResponses, AdapterError, BroadcastOptions};
use crate::error::EmitError;
use crate::namespace::Namespace;
use crate::payload::Payload;
use crate::room::{IntoRooms, Room};
use crate::socket::{event_for_broadcast, SocketInfo};
use std::sync::Arc;
use std::time::Duration;

/// Selects sockets of a namespace and acts on them, on every node through the adapter.
#[derive(Debug, Clone)]
pub struct BroadcastOperator {
    ns: Arc<Namespace>,
    opts: BroadcastOptions,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Arc<Namespace>) -> Self {
        Self {
            ns,
            opts: BroadcastOptions::default(),
        }
    }

    /// The selection so far.
    pub fn options(&self) -> &BroadcastOptions {
        &self.opts
    }

    /// Adds rooms to the target (union).
    pub fn to(mut self, rooms: impl IntoRooms) -> Self {
        for room in rooms.into_rooms() {
            if !self.opts.rooms.contains(&room) {
                self.opts.rooms.push(room);
            }
        }
        self
    }

    /// Same as [`BroadcastOperator::to`].
    pub fn in_(self, rooms: impl IntoRooms) -> Self {
        self.to(rooms)
    }

    /// Leaves out sockets in `rooms`.
    pub fn except(mut self, rooms: impl IntoRooms) -> Self {
        for room in rooms.into_rooms() {
            if !self.opts.except.contains(&room) {
                self.opts.except.push(room);
            }
        }
        self
    }

    /// Drops the packet for sockets that cannot take it right now.
    pub fn volatile(mut self) -> Self {
        self.opts.flags.volatile = true;
        self
    }

    /// Only this node.
    pub fn local(mut self) -> Self {
        self.opts.flags.local = true;
        self
    }

    /// Sets compression for the packet.
    pub fn compress(mut self, compress: bool) -> Self {
        self.opts.flags.compress = Some(compress);
        self
    }

    /// Acknowledgement timeout for [`BroadcastOperator::emit_with_ack`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.opts.flags.timeout = Some(timeout);
        self
    }

    fn local_namespace(&self) -> crate::adapter::LocalNamespace {
        crate::adapter::LocalNamespace::of(&self.ns)
    }

    /// Emits `event` to the selected sockets.
    pub fn emit(self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        let mut packet = event_for_broadcast(event, payload.into())?;
        if !self.opts.flags.volatile {
            self.ns.add_offset(&mut packet, &self.opts);
        }
        if self.opts.flags.local {
            self.local_namespace().broadcast_owned(packet, &self.opts);
        } else if let Some(adapter) = self.ns.adapter() {
            adapter.broadcast(packet, self.opts);
        }
        Ok(())
    }

    /// Emits `event` and collects one acknowledgement per recipient (the first argument of
    /// each) until every recipient answered or the timeout passed.
    pub async fn emit_with_ack(
        self,
        event: &str,
        payload: impl Into<Payload>,
    ) -> Result<AckResponses, EmitError> {
        let packet = event_for_broadcast(event, payload.into())?;
        let timeout = self
            .opts
            .flags
            .timeout
            .unwrap_or(self.ns.config().ack_timeout);
        let mut opts = self.opts.clone();
        opts.flags.timeout = Some(timeout);
        let result = if opts.flags.local {
            let (count, rx) = self.local_namespace().broadcast_with_ack(&packet, &opts);
            crate::adapter::collect_acks(rx, count, timeout).await
        } else if let Some(adapter) = self.ns.adapter() {
            adapter.broadcast_with_ack(packet, opts, timeout).await
        } else {
            AckResponses::default()
        };
        if result.timed_out {
            self.ns.metrics().ack_timeouts.inc();
        }
        Ok(result)
    }

    /// Describes the selected sockets.
    pub async fn fetch_sockets(self) -> Result<Vec<SocketInfo>, AdapterError> {
        if self.opts.flags.local {
            return Ok(self.local_namespace().fetch_sockets(&self.opts));
        }
        match self.ns.adapter() {
            Some(a) => a.fetch_sockets(self.opts).await,
            None => Err(AdapterError::Closed),
        }
    }

    /// Makes the selected sockets join `rooms`.
    pub fn sockets_join(self, rooms: impl IntoRooms) {
        let rooms: Vec<Room> = rooms.into_rooms();
        if self.opts.flags.local {
            self.local_namespace().add_sockets(&self.opts, &rooms);
        } else if let Some(a) = self.ns.adapter() {
            a.add_sockets(self.opts, rooms);
        }
    }

    /// Makes the selected sockets leave `rooms`.
    pub fn sockets_leave(self, rooms: impl IntoRooms) {
        let rooms: Vec<Room> = rooms.into_rooms();
        if self.opts.flags.local {
            self.local_namespace().del_sockets(&self.opts, &rooms);
        } else if let Some(a) = self.ns.adapter() {
            a.del_sockets(self.opts, rooms);
        }
    }

    /// Disconnects the selected sockets; `close` closes their connections too.
    pub fn disconnect_sockets(self, close: bool) {
        if self.opts.flags.local {
            self.local_namespace().disconnect_sockets(&self.opts, close);
        } else if let Some(a) = self.ns.adapter() {
            a.disconnect_sockets(self.opts, close);
        }
    }
}
