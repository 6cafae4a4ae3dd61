//! The sharded wire of `@socket.io/redis-adapter`'s `createShardedAdapter` (Redis ≥ 7,
//! `SSUBSCRIBE`/`SPUBLISH`): `ClusterAdapter` envelopes `{uid, nsp, type, data}` as JSON, or
//! msgpack when they carry binary, on `key#nsp#` (every node), `key#nsp#uid#` (replies to one
//! node) and, in the dynamic subscription mode, `key#nsp#room#` for rooms with local members.

use crate::bus::SubKind;
use crate::cluster::{ClusterMessage, Inbound, Outbound, Reply, Request, Wire};
use crate::codec::{
    json_to_mp, mp_decode, mp_encode, mp_to_json, opts_from_json, opts_json, room_from_json,
    rooms_json, socket_from_json, socket_json,
};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use switchboard::{EventPacket, LocalNamespace, Payload, Room};

/// Message types of `ClusterAdapter`.
mod kind {
    pub const BROADCAST: u64 = 3;
    pub const SOCKETS_JOIN: u64 = 4;
    pub const SOCKETS_LEAVE: u64 = 5;
    pub const DISCONNECT_SOCKETS: u64 = 6;
    pub const FETCH_SOCKETS: u64 = 7;
    pub const FETCH_SOCKETS_RESPONSE: u64 = 8;
    pub const SERVER_SIDE_EMIT: u64 = 9;
    pub const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
    pub const BROADCAST_CLIENT_COUNT: u64 = 11;
    pub const BROADCAST_ACK: u64 = 12;
}

/// Room names of this length (in UTF-16 code units, as JavaScript counts) are taken for socket
/// ids in the dynamic mode (Node's heuristic) and travel on the main channel.
const SOCKET_ID_LEN: usize = 20;

/// Channel names and identity of one namespace on the sharded wire.
pub(crate) struct Sharded {
    uid: String,
    nsp: String,
    main: String,
    own: String,
    /// How this node's own JSON envelopes begin (see [`Sharded::envelope`]): every node hears
    /// its own broadcasts on `key#nsp#`, and this drops them without parsing.
    echo_prefix: String,
    mode: crate::SubscriptionMode,
}

impl Sharded {
    pub(crate) fn new(key: &str, nsp: &str, uid: &str, mode: crate::SubscriptionMode) -> Self {
        Self {
            uid: uid.to_owned(),
            nsp: nsp.to_owned(),
            main: format!("{key}#{nsp}#"),
            own: format!("{key}#{nsp}#{uid}#"),
            echo_prefix: format!("{{\"uid\":{},", Value::from(uid)),
            mode,
        }
    }

    /// `{uid, nsp, type, data}`, the uid first (the map keeps insertion order), so that an
    /// echo of this node's own JSON message starts with `echo_prefix`.
    fn envelope(&self, channel: String, t: u64, data: Value, attachments: &[Bytes]) -> Outbound {
        let mut m = Map::new();
        m.insert("uid".into(), Value::from(self.uid.as_str()));
        m.insert("nsp".into(), Value::from(self.nsp.as_str()));
        m.insert("type".into(), Value::from(t));
        m.insert("data".into(), data);
        let v = Value::Object(m);
        let payload = if attachments.is_empty() {
            serde_json::to_vec(&v).unwrap_or_default()
        } else {
            mp_encode(&json_to_mp(&v, attachments))
        };
        Outbound {
            channel,
            payload,
            shard: true,
        }
    }

    /// The channel of `room`, in the modes that give rooms their own channel.
    fn room_channel_name(&self, room: &Room) -> Option<String> {
        use crate::SubscriptionMode as M;
        let own = match self.mode {
            M::Static => false,
            M::Dynamic => room.as_str().encode_utf16().count() != SOCKET_ID_LEN,
            M::DynamicPrivate => true,
        };
        own.then(|| format!("{}{}#", self.main, room))
    }
}

fn packet_json(packet: &EventPacket) -> Value {
    json!({"type": 2, "data": packet.data})
}

/// Takes `packet.data` out of a BROADCAST's `data` (no copy of the arguments).
fn event_from(data: &mut Value, attachments: Vec<Bytes>) -> Option<EventPacket> {
    let Value::Array(list) = data.get_mut("packet")?.get_mut("data")?.take() else {
        return None;
    };
    if !matches!(list.first(), Some(Value::String(_))) {
        return None;
    }
    Some(EventPacket {
        data: list,
        attachments,
    })
}

impl Wire for Sharded {
    fn subscriptions(&self) -> Vec<(SubKind, String)> {
        vec![
            (SubKind::Shard, self.main.clone()),
            (SubKind::Shard, self.own.clone()),
        ]
    }

    fn request(&self, req: &Request) -> Result<Outbound, String> {
        let main = self.main.clone();
        Ok(match req {
            Request::Broadcast { packet, opts } => {
                let channel = match opts.rooms.as_slice() {
                    [room] => self.room_channel_name(room).unwrap_or(main),
                    _ => main,
                };
                self.envelope(
                    channel,
                    kind::BROADCAST,
                    json!({"opts": opts_json(opts, true), "packet": packet_json(packet)}),
                    &packet.attachments,
                )
            }
            Request::BroadcastAck { id, packet, opts } => self.envelope(
                main,
                kind::BROADCAST,
                json!({"opts": opts_json(opts, true), "packet": packet_json(packet), "requestId": id}),
                &packet.attachments,
            ),
            Request::Join { opts, rooms } => self.envelope(
                main,
                kind::SOCKETS_JOIN,
                json!({"opts": opts_json(opts, true), "rooms": rooms_json(rooms)}),
                &[],
            ),
            Request::Leave { opts, rooms } => self.envelope(
                main,
                kind::SOCKETS_LEAVE,
                json!({"opts": opts_json(opts, true), "rooms": rooms_json(rooms)}),
                &[],
            ),
            Request::Disconnect { opts, close } => self.envelope(
                main,
                kind::DISCONNECT_SOCKETS,
                json!({"opts": opts_json(opts, true), "close": close}),
                &[],
            ),
            Request::Fetch { id, opts } => self.envelope(
                main,
                kind::FETCH_SOCKETS,
                json!({"opts": opts_json(opts, true), "requestId": id}),
                &[],
            ),
            Request::AllRooms { .. } => return Err("the sharded wire has no all-rooms request".into()),
            Request::ServerSide { id, data } => {
                let mut m = Map::new();
                m.insert("packet".into(), Value::Array(data.clone()));
                if let Some(id) = id {
                    m.insert("requestId".into(), Value::from(id.as_str()));
                }
                self.envelope(main, kind::SERVER_SIDE_EMIT, Value::Object(m), &[])
            }
        })
    }

    fn reply(&self, to: Option<&str>, reply: &Reply) -> Result<Outbound, String> {
        let to = to.ok_or("a sharded reply needs the requester's uid")?;
        let channel = format!("{}{}#", self.main, to);
        Ok(match reply {
            Reply::Sockets { id, sockets } => {
                let list: Vec<Value> = sockets.iter().map(socket_json).collect();
                self.envelope(
                    channel,
                    kind::FETCH_SOCKETS_RESPONSE,
                    json!({"requestId": id, "sockets": list}),
                    &[],
                )
            }
            Reply::Rooms { .. } => return Err("the sharded wire has no all-rooms reply".into()),
            Reply::ServerSide { id, value } => {
                let (arg, atts) = crate::cluster::first_arg(value);
                self.envelope(
                    channel,
                    kind::SERVER_SIDE_EMIT_RESPONSE,
                    json!({"requestId": id, "packet": arg}),
                    atts,
                )
            }
            Reply::Count { id, count } => self.envelope(
                channel,
                kind::BROADCAST_CLIENT_COUNT,
                json!({"requestId": id, "clientCount": count}),
                &[],
            ),
            Reply::Ack { id, value } => {
                let (arg, atts) = crate::cluster::first_arg(value);
                self.envelope(
                    channel,
                    kind::BROADCAST_ACK,
                    json!({"requestId": id, "packet": arg}),
                    atts,
                )
            }
        })
    }

    fn decode(
        &self,
        _local: &LocalNamespace,
        channel: &str,
        payload: &[u8],
    ) -> Result<Option<Inbound>, String> {
        let mut attachments = Vec::new();
        if payload.starts_with(self.echo_prefix.as_bytes()) {
            // Our own JSON message: dropped before any parsing. (Binary ones, in msgpack, are
            // rare; they are decoded and dropped by their uid below.)
            return Ok(None);
        }
        let mut v: Value = if payload.first() == Some(&b'{') {
            serde_json::from_slice(payload).map_err(|e| e.to_string())?
        } else {
            let mp = mp_decode(payload).map_err(|e| e.to_string())?;
            mp_to_json(mp, &mut attachments).ok_or("undefined message")?
        };
        let uid = v.get("uid").and_then(Value::as_str).map(str::to_owned);
        if uid.as_deref() == Some(self.uid.as_str()) {
            return Ok(None);
        }
        if v.get("nsp").and_then(Value::as_str).unwrap_or("/") != self.nsp {
            return Ok(None);
        }
        let t = v
            .get("type")
            .and_then(Value::as_u64)
            .ok_or("message without type")?;
        let mut data = v.get_mut("data").map(Value::take).unwrap_or(Value::Null);
        let id = || -> Result<String, String> {
            data.get("requestId")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("type {t} without requestId"))
        };
        let opts = || opts_from_json(data.get("opts"));
        let rooms = || -> Vec<Room> {
            data.get("rooms")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(room_from_json).collect())
                .unwrap_or_default()
        };
        let payload_of = |key: &str| Payload {
            args: vec![data.get(key).cloned().unwrap_or(Value::Null)],
            attachments: attachments.clone(),
        };
        let body = if channel == self.own {
            ClusterMessage::Reply(match t {
                kind::FETCH_SOCKETS_RESPONSE => Reply::Sockets {
                    id: id()?,
                    sockets: data
                        .get("sockets")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(socket_from_json).collect())
                        .unwrap_or_default(),
                },
                kind::SERVER_SIDE_EMIT_RESPONSE => Reply::ServerSide {
                    id: id()?,
                    value: payload_of("packet"),
                },
                kind::BROADCAST_CLIENT_COUNT => Reply::Count {
                    id: id()?,
                    count: data.get("clientCount").and_then(Value::as_u64).unwrap_or(0) as usize,
                },
                kind::BROADCAST_ACK => Reply::Ack {
                    id: id()?,
                    value: payload_of("packet"),
                },
                _ => return Ok(None),
            })
        } else {
            ClusterMessage::Request(match t {
                kind::BROADCAST => {
                    let opts = opts();
                    let request_id = data
                        .get("requestId")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let packet =
                        event_from(&mut data, attachments).ok_or("BROADCAST without event")?;
                    match request_id {
                        Some(id) => Request::BroadcastAck { id, packet, opts },
                        None => Request::Broadcast { packet, opts },
                    }
                }
                kind::SOCKETS_JOIN => Request::Join {
                    opts: opts(),
                    rooms: rooms(),
                },
                kind::SOCKETS_LEAVE => Request::Leave {
                    opts: opts(),
                    rooms: rooms(),
                },
                kind::DISCONNECT_SOCKETS => Request::Disconnect {
                    opts: opts(),
                    close: data.get("close").and_then(Value::as_bool).unwrap_or(false),
                },
                kind::FETCH_SOCKETS => Request::Fetch {
                    id: id()?,
                    opts: opts(),
                },
                kind::SERVER_SIDE_EMIT => Request::ServerSide {
                    id: data
                        .get("requestId")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    data: data
                        .get("packet")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                },
                // Heartbeats and ADAPTER_CLOSE come from adapters with heartbeat; not ours.
                _ => return Ok(None),
            })
        };
        // A reply goes to the requester's own channel: a request that wants one must say who
        // sent it, or it is refused here (a decode error) rather than answered nowhere.
        let wants_reply = matches!(
            body,
            ClusterMessage::Request(
                Request::BroadcastAck { .. }
                    | Request::Fetch { .. }
                    | Request::ServerSide { id: Some(_), .. }
            )
        );
        if wants_reply && uid.is_none() {
            return Err(format!("type {t} request without the sender's uid"));
        }
        Ok(Some(Inbound { uid, body }))
    }

    fn server_count(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("SHARDNUMSUB").arg(&self.main);
        cmd
    }

    fn room_channel(&self, room: &Room) -> Option<(SubKind, String)> {
        self.room_channel_name(room).map(|c| (SubKind::Shard, c))
    }

    fn has_all_rooms(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SubscriptionMode;

    #[test]
    fn own_json_envelopes_begin_with_the_echo_prefix() {
        let ours = Sharded::new("socket.io", "/", "abc", SubscriptionMode::Static);
        let other = Sharded::new("socket.io", "/", "abcd", SubscriptionMode::Static);
        let out = ours.envelope("c".into(), 3, serde_json::json!({"x": 1}), &[]);
        assert!(out.payload.starts_with(ours.echo_prefix.as_bytes()));
        assert!(!out.payload.starts_with(other.echo_prefix.as_bytes()));
        let theirs = other.envelope("c".into(), 3, serde_json::json!({"x": 1}), &[]);
        assert!(!theirs.payload.starts_with(ours.echo_prefix.as_bytes()));
    }
}
