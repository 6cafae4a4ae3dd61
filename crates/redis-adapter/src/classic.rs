//! The classic wire of `@socket.io/redis-adapter` 8 (and `@socket.io/redis-emitter` 5):
//! broadcasts as msgpack `[uid, packet, opts]` on `key#nsp#` (or `key#nsp#room#`), requests
//! and replies as JSON (msgpack for broadcasts with acknowledgement) on `key-request#nsp#` and
//! `key-response#nsp#`.

use crate::bus::SubKind;
use crate::cluster::{ClusterMessage, Inbound, Outbound, Reply, Request, Wire};
use crate::codec::{
    json_list_to_mp, json_to_mp, mp_decode, mp_encode, mp_first_str, mp_get, mp_take, mp_to_json,
    opts_from_json, opts_from_mp, opts_json, opts_mp, room_from_json, rooms_json, socket_from_json,
    socket_json,
};
use rmpv::Value as Mp;
use serde_json::{json, Map, Value};
use switchboard::{EventPacket, LocalNamespace, Payload};

/// Request types of the classic adapter.
mod kind {
    pub const ALL_ROOMS: u64 = 1;
    pub const REMOTE_JOIN: u64 = 2;
    pub const REMOTE_LEAVE: u64 = 3;
    pub const REMOTE_DISCONNECT: u64 = 4;
    pub const REMOTE_FETCH: u64 = 5;
    pub const SERVER_SIDE_EMIT: u64 = 6;
    pub const BROADCAST: u64 = 7;
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub const BROADCAST_ACK: u64 = 9;
}

/// Channel names and identity of one namespace on the classic wire.
pub(crate) struct Classic {
    uid: String,
    nsp: String,
    base: String,
    request: String,
    response: String,
    own_response: String,
    specific: bool,
}

impl Classic {
    pub(crate) fn new(key: &str, nsp: &str, uid: &str, specific: bool) -> Self {
        Self {
            uid: uid.to_owned(),
            nsp: nsp.to_owned(),
            base: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            response: format!("{key}-response#{nsp}#"),
            own_response: format!("{key}-response#{nsp}#{uid}#"),
            specific,
        }
    }

    fn packet_mp(&self, packet: &EventPacket) -> Mp {
        Mp::Map(vec![
            (Mp::from("type"), Mp::from(2)),
            (
                Mp::from("data"),
                json_list_to_mp(&packet.data, &packet.attachments),
            ),
            (Mp::from("nsp"), Mp::from(self.nsp.as_str())),
        ])
    }

    fn json_out(&self, channel: &str, v: &Value) -> Result<Outbound, String> {
        Ok(Outbound {
            channel: channel.to_owned(),
            payload: serde_json::to_vec(v).map_err(|e| e.to_string())?,
            shard: false,
        })
    }

    /// Decodes `[uid, packet, opts]` from a broadcast channel.
    fn decode_broadcast(
        &self,
        local: &LocalNamespace,
        channel: &str,
        payload: &[u8],
    ) -> Result<Option<Inbound>, String> {
        if channel.len() > self.base.len() {
            // A single-room channel: skip without decoding when the room has no member here.
            let room = channel
                .get(self.base.len()..channel.len() - 1)
                .unwrap_or_default();
            if !local.has_room(room) {
                return Ok(None);
            }
        }
        // This node's own broadcasts come back on the channel: dropped before decoding.
        if mp_first_str(payload) == Some(self.uid.as_str()) {
            return Ok(None);
        }
        let Mp::Array(mut parts) = mp_decode(payload).map_err(|e| e.to_string())? else {
            return Err("broadcast is not an array".into());
        };
        if parts.len() < 2 {
            return Err("broadcast has no packet".into());
        }
        let opts = if parts.len() > 2 {
            parts.swap_remove(2)
        } else {
            Mp::Nil
        };
        let packet = parts.swap_remove(1);
        let uid = parts.first().and_then(|u| u.as_str()).map(str::to_owned);
        if uid.as_deref() == Some(self.uid.as_str()) {
            return Ok(None);
        }
        let Mp::Map(mut packet) = packet else {
            return Err("packet is not a map".into());
        };
        let nsp = mp_get(&packet, "nsp")
            .and_then(|n| n.as_str())
            .unwrap_or("/");
        if nsp != self.nsp {
            return Ok(None);
        }
        let Some(event) = event_from_mp(mp_take(&mut packet, "data")) else {
            return Err("packet has no event".into());
        };
        Ok(Some(Inbound {
            uid,
            body: ClusterMessage::Request(Request::Broadcast {
                packet: event,
                opts: opts_from_mp(opts),
            }),
        }))
    }

    fn decode_json_request(&self, v: Value) -> Result<Option<Inbound>, String> {
        let uid = v.get("uid").and_then(Value::as_str).map(str::to_owned);
        let id = v
            .get("requestId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let t = v
            .get("type")
            .and_then(Value::as_u64)
            .ok_or("request without type")?;
        let rooms = || -> Vec<switchboard::Room> {
            v.get("rooms")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(room_from_json).collect())
                .unwrap_or_default()
        };
        let opts = || opts_from_json(v.get("opts"));
        let req = match t {
            kind::ALL_ROOMS => Request::AllRooms {
                id: id.ok_or("ALL_ROOMS without requestId")?,
            },
            kind::REMOTE_JOIN if v.get("opts").is_some() => Request::Join {
                opts: opts(),
                rooms: rooms(),
            },
            kind::REMOTE_LEAVE if v.get("opts").is_some() => Request::Leave {
                opts: opts(),
                rooms: rooms(),
            },
            kind::REMOTE_DISCONNECT if v.get("opts").is_some() => Request::Disconnect {
                opts: opts(),
                close: v.get("close").and_then(Value::as_bool).unwrap_or(false),
            },
            kind::REMOTE_FETCH => Request::Fetch {
                id: id.ok_or("REMOTE_FETCH without requestId")?,
                opts: opts(),
            },
            kind::SERVER_SIDE_EMIT => Request::ServerSide {
                id,
                data: v
                    .get("data")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            },
            // Legacy single-socket forms (adapters before 8) and types this node never answers.
            _ => return Ok(None),
        };
        Ok(Some(Inbound {
            uid,
            body: ClusterMessage::Request(req),
        }))
    }

    fn decode_mp_request(&self, payload: &[u8]) -> Result<Option<Inbound>, String> {
        let Mp::Map(mut m) = mp_decode(payload).map_err(|e| e.to_string())? else {
            return Err("request is not a map".into());
        };
        if mp_get(&m, "type").and_then(Mp::as_u64) != Some(kind::BROADCAST) {
            return Ok(None);
        }
        let uid = mp_get(&m, "uid").and_then(Mp::as_str).map(str::to_owned);
        let id = mp_get(&m, "requestId")
            .and_then(Mp::as_str)
            .ok_or("BROADCAST without requestId")?
            .to_owned();
        let Some(Mp::Map(mut packet)) = mp_take(&mut m, "packet") else {
            return Err("BROADCAST without packet".into());
        };
        if mp_get(&packet, "nsp").and_then(Mp::as_str).unwrap_or("/") != self.nsp {
            return Ok(None);
        }
        let event = event_from_mp(mp_take(&mut packet, "data")).ok_or("BROADCAST without event")?;
        let opts = opts_from_mp(mp_take(&mut m, "opts").unwrap_or(Mp::Nil));
        Ok(Some(Inbound {
            uid,
            body: ClusterMessage::Request(Request::BroadcastAck {
                id,
                packet: event,
                opts,
            }),
        }))
    }

    fn decode_reply(&self, payload: &[u8]) -> Result<Option<Inbound>, String> {
        if payload.first() != Some(&b'{') {
            let Mp::Map(m) = mp_decode(payload).map_err(|e| e.to_string())? else {
                return Err("reply is not a map".into());
            };
            if mp_get(&m, "type").and_then(Mp::as_u64) != Some(kind::BROADCAST_ACK) {
                return Ok(None);
            }
            let id = mp_get(&m, "requestId")
                .and_then(Mp::as_str)
                .ok_or("ack without requestId")?
                .to_owned();
            let uid = mp_get(&m, "uid").and_then(Mp::as_str).map(str::to_owned);
            let mut attachments = Vec::new();
            let arg = mp_get(&m, "packet")
                .cloned()
                .and_then(|p| mp_to_json(p, &mut attachments))
                .unwrap_or(Value::Null);
            return Ok(Some(Inbound {
                uid,
                body: ClusterMessage::Reply(Reply::Ack {
                    id,
                    value: Payload {
                        args: vec![arg],
                        attachments,
                    },
                }),
            }));
        }
        let v: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        let Some(id) = v
            .get("requestId")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return Ok(None);
        };
        let uid = v.get("uid").and_then(Value::as_str).map(str::to_owned);
        let reply = match v.get("type").and_then(Value::as_u64) {
            Some(kind::BROADCAST_CLIENT_COUNT) => Reply::Count {
                id,
                count: v.get("clientCount").and_then(Value::as_u64).unwrap_or(0) as usize,
            },
            Some(kind::SERVER_SIDE_EMIT) => Reply::ServerSide {
                id,
                value: Payload {
                    args: vec![v.get("data").cloned().unwrap_or(Value::Null)],
                    attachments: Vec::new(),
                },
            },
            _ => {
                if let Some(sockets) = v.get("sockets").and_then(Value::as_array) {
                    Reply::Sockets {
                        id,
                        sockets: sockets.iter().filter_map(socket_from_json).collect(),
                    }
                } else if let Some(rooms) = v.get("rooms").and_then(Value::as_array) {
                    Reply::Rooms {
                        id,
                        rooms: rooms.iter().filter_map(room_from_json).collect(),
                    }
                } else {
                    return Ok(None);
                }
            }
        };
        Ok(Some(Inbound {
            uid,
            body: ClusterMessage::Reply(reply),
        }))
    }
}

/// `[event, ...args]` in msgpack as an [`EventPacket`].
pub(crate) fn event_from_mp(data: Option<Mp>) -> Option<EventPacket> {
    let mut attachments = Vec::new();
    let Value::Array(data) = mp_to_json(data?, &mut attachments)? else {
        return None;
    };
    if !matches!(data.first(), Some(Value::String(_))) {
        return None;
    }
    Some(EventPacket { data, attachments })
}

impl Wire for Classic {
    fn subscriptions(&self) -> Vec<(SubKind, String)> {
        vec![
            (SubKind::Pattern, format!("{}*", self.base)),
            (SubKind::Channel, self.request.clone()),
            (SubKind::Channel, self.response.clone()),
            (SubKind::Channel, self.own_response.clone()),
        ]
    }

    fn request(&self, req: &Request) -> Result<Outbound, String> {
        let uid = self.uid.as_str();
        match req {
            Request::Broadcast { packet, opts } => {
                let channel = match opts.rooms.as_slice() {
                    [room] => format!("{}{}#", self.base, room),
                    _ => self.base.clone(),
                };
                let msg = Mp::Array(vec![Mp::from(uid), self.packet_mp(packet), opts_mp(opts)]);
                Ok(Outbound { channel, payload: mp_encode(&msg), shard: false })
            }
            Request::BroadcastAck { id, packet, opts } => {
                let msg = Mp::Map(vec![
                    (Mp::from("uid"), Mp::from(uid)),
                    (Mp::from("requestId"), Mp::from(id.as_str())),
                    (Mp::from("type"), Mp::from(kind::BROADCAST)),
                    (Mp::from("packet"), self.packet_mp(packet)),
                    (Mp::from("opts"), opts_mp(opts)),
                ]);
                Ok(Outbound { channel: self.request.clone(), payload: mp_encode(&msg), shard: false })
            }
            Request::Join { opts, rooms } => self.json_out(
                &self.request,
                &json!({"uid": uid, "type": kind::REMOTE_JOIN, "opts": opts_json(opts, false), "rooms": rooms_json(rooms)}),
            ),
            Request::Leave { opts, rooms } => self.json_out(
                &self.request,
                &json!({"uid": uid, "type": kind::REMOTE_LEAVE, "opts": opts_json(opts, false), "rooms": rooms_json(rooms)}),
            ),
            Request::Disconnect { opts, close } => self.json_out(
                &self.request,
                &json!({"uid": uid, "type": kind::REMOTE_DISCONNECT, "opts": opts_json(opts, false), "close": close}),
            ),
            Request::Fetch { id, opts } => self.json_out(
                &self.request,
                &json!({"uid": uid, "requestId": id, "type": kind::REMOTE_FETCH, "opts": opts_json(opts, false)}),
            ),
            Request::AllRooms { id } => self.json_out(
                &self.request,
                &json!({"uid": uid, "requestId": id, "type": kind::ALL_ROOMS}),
            ),
            Request::ServerSide { id, data } => {
                let mut m = Map::new();
                m.insert("uid".into(), Value::from(uid));
                if let Some(id) = id {
                    m.insert("requestId".into(), Value::from(id.as_str()));
                }
                m.insert("type".into(), Value::from(kind::SERVER_SIDE_EMIT));
                m.insert("data".into(), Value::Array(data.clone()));
                self.json_out(&self.request, &Value::Object(m))
            }
        }
    }

    fn reply(&self, to: Option<&str>, reply: &Reply) -> Result<Outbound, String> {
        let channel = match (self.specific, to) {
            (true, Some(to)) if !matches!(reply, Reply::ServerSide { .. }) => {
                format!("{}{}#", self.response, to)
            }
            _ => self.response.clone(),
        };
        let uid = self.uid.as_str();
        match reply {
            Reply::Sockets { id, sockets } => {
                let list: Vec<Value> = sockets.iter().map(socket_json).collect();
                self.json_out(&channel, &json!({"requestId": id, "sockets": list, "uid": uid}))
            }
            Reply::Rooms { id, rooms } => self.json_out(
                &channel,
                &json!({"requestId": id, "rooms": rooms_json(rooms), "uid": uid}),
            ),
            Reply::ServerSide { id, value } => self.json_out(
                &channel,
                &json!({"type": kind::SERVER_SIDE_EMIT, "requestId": id, "data": value.args.first().cloned().unwrap_or(Value::Null), "uid": uid}),
            ),
            Reply::Count { id, count } => self.json_out(
                &channel,
                &json!({"type": kind::BROADCAST_CLIENT_COUNT, "requestId": id, "clientCount": count, "uid": uid}),
            ),
            Reply::Ack { id, value } => {
                let (arg, attachments) = crate::cluster::first_arg(value);
                let msg = Mp::Map(vec![
                    (Mp::from("type"), Mp::from(kind::BROADCAST_ACK)),
                    (Mp::from("requestId"), Mp::from(id.as_str())),
                    (Mp::from("packet"), json_to_mp(&arg, attachments)),
                    (Mp::from("uid"), Mp::from(uid)),
                ]);
                Ok(Outbound { channel, payload: mp_encode(&msg), shard: false })
            }
        }
    }

    fn decode(
        &self,
        local: &LocalNamespace,
        channel: &str,
        payload: &[u8],
    ) -> Result<Option<Inbound>, String> {
        if channel == self.request {
            if payload.first() == Some(&b'{') {
                let v: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
                return self.decode_json_request(v);
            }
            return self.decode_mp_request(payload);
        }
        if channel == self.response || channel == self.own_response {
            return self.decode_reply(payload);
        }
        if channel.starts_with(&self.base) && channel.ends_with('#') {
            return self.decode_broadcast(local, channel, payload);
        }
        Ok(None)
    }

    fn server_count(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("NUMSUB").arg(&self.request);
        cmd
    }

    fn has_all_rooms(&self) -> bool {
        true
    }
}
