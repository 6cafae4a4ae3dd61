//! The gateway's public API: the relay events `join`, `leave` and `publish`, and the optional
//! shared-token check at connection.

use crate::config::RelayLimits;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchboard::{ConnectError, Event, Namespace, Payload, Room, SocketRef};

/// Longest `timeout` a publish may ask for.
const MAX_ACK_TIMEOUT_MS: u64 = 60_000;

type Label = [(&'static str, &'static str); 2];

/// Relay counters.
#[derive(Debug, Default)]
pub struct RelayMetrics {
    /// Relay requests, by event and outcome (`ok` or an error kind).
    pub requests: Family<Label, Counter>,
}

impl RelayMetrics {
    /// Registers under the `relay` prefix.
    pub fn register(&self, registry: &mut Registry) {
        registry.sub_registry_with_prefix("relay").register(
            "requests",
            "Relay requests, by event and outcome",
            self.requests.clone(),
        );
    }
}

/// A refused relay request: the error text sent back and its metric label.
struct Refusal(&'static str, String);

fn refuse(kind: &'static str, message: impl Into<String>) -> Refusal {
    Refusal(kind, message.into())
}

struct Relay {
    limits: RelayLimits,
    metrics: Arc<RelayMetrics>,
}

/// Installs the relay events on `ns` (and the token check when `token` is set).
pub fn install(
    ns: &Arc<Namespace>,
    limits: RelayLimits,
    token: Option<String>,
    metrics: Arc<RelayMetrics>,
) {
    if let Some(token) = token {
        let token = Arc::new(token);
        ns.use_middleware(move |socket| {
            let token = token.clone();
            async move { check_token(&socket, &token) }
        });
    }
    let relay = Arc::new(Relay { limits, metrics });
    ns.on_connection(move |socket| {
        let r = relay.clone();
        socket.on("join", move |socket, event| {
            r.handle("join", socket, event, Relay::join)
        });
        let r = relay.clone();
        socket.on("leave", move |socket, event| {
            r.handle("leave", socket, event, Relay::leave)
        });
        let r = relay.clone();
        socket.on("publish", move |socket, event| r.publish(socket, event));
    });
}

fn check_token(socket: &SocketRef, token: &str) -> Result<(), ConnectError> {
    let given = socket.handshake().auth.get("token").and_then(Value::as_str);
    match given {
        None => {
            Err(ConnectError::new("unauthorized").with_data(json!({"reason": "missing token"})))
        }
        Some(given) if !constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            Err(ConnectError::new("unauthorized").with_data(json!({"reason": "bad token"})))
        }
        Some(_) => Ok(()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Relay {
    fn count(&self, event: &'static str, outcome: &'static str) {
        self.metrics
            .requests
            .get_or_create(&[("event", event), ("outcome", outcome)])
            .inc();
    }

    fn handle(
        &self,
        name: &'static str,
        socket: &SocketRef,
        mut event: Event,
        op: fn(&Self, &SocketRef, &Event) -> Result<Value, Refusal>,
    ) {
        let answer = match op(self, socket, &event) {
            Ok(v) => {
                self.count(name, "ok");
                v
            }
            Err(Refusal(kind, message)) => {
                self.count(name, kind);
                json!({"ok": false, "error": message})
            }
        };
        event.ack(answer);
    }

    /// Room names from a string or an array of strings.
    fn rooms(&self, value: Option<&Value>) -> Result<Vec<Room>, Refusal> {
        let names: Vec<&str> = match value {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().ok_or(()))
                .collect::<Result<_, _>>()
                .map_err(|_| refuse("bad_request", "rooms must be strings"))?,
            _ => {
                return Err(refuse(
                    "bad_request",
                    "expected a room name or an array of room names",
                ))
            }
        };
        if names.len() > self.limits.max_rooms_per_socket {
            return Err(refuse("limit", "too many rooms in one request"));
        }
        names
            .into_iter()
            .map(|n| {
                if n.is_empty() || n.len() > self.limits.max_room_name {
                    Err(refuse(
                        "bad_request",
                        format!(
                            "room names must be 1 to {} bytes",
                            self.limits.max_room_name
                        ),
                    ))
                } else {
                    Ok(Room::from(n))
                }
            })
            .collect()
    }

    fn member_rooms(socket: &SocketRef) -> Value {
        let own = socket.id();
        let mut rooms: Vec<String> = socket
            .rooms()
            .into_iter()
            .filter(|r| r.as_str() != own.as_str())
            .map(|r| r.to_string())
            .collect();
        rooms.sort();
        json!({"ok": true, "rooms": rooms})
    }

    fn join(&self, socket: &SocketRef, event: &Event) -> Result<Value, Refusal> {
        let rooms = self.rooms(event.payload.args.first())?;
        let current = socket.rooms().len().saturating_sub(1);
        let fresh = rooms.iter().filter(|r| !socket.rooms().contains(r)).count();
        if current + fresh > self.limits.max_rooms_per_socket {
            return Err(refuse(
                "limit",
                format!(
                    "a socket may be in at most {} rooms",
                    self.limits.max_rooms_per_socket
                ),
            ));
        }
        if rooms.iter().any(|r| r.as_str() == socket.id().as_str()) {
            return Err(refuse(
                "bad_request",
                "a socket cannot join its own id room",
            ));
        }
        socket.join(rooms);
        Ok(Self::member_rooms(socket))
    }

    fn leave(&self, socket: &SocketRef, event: &Event) -> Result<Value, Refusal> {
        let rooms: Vec<Room> = self
            .rooms(event.payload.args.first())?
            .into_iter()
            .filter(|r| r.as_str() != socket.id().as_str())
            .collect();
        socket.leave(rooms);
        Ok(Self::member_rooms(socket))
    }

    fn publish(&self, socket: &SocketRef, mut event: Event) {
        let request = match self.parse_publish(&event) {
            Ok(r) => r,
            Err(Refusal(kind, message)) => {
                self.count("publish", kind);
                event.ack(json!({"ok": false, "error": message}));
                return;
            }
        };
        let payload = Payload {
            args: vec![request.data],
            attachments: std::mem::take(&mut event.payload.attachments),
        };
        let mut op = if request.include_self {
            socket.nsp().to(Vec::<Room>::new())
        } else {
            socket.broadcast()
        };
        if let Some(rooms) = request.rooms {
            op = op.to(rooms);
        }
        let Some(timeout) = request.timeout else {
            let answer = match op.emit(&request.event, payload) {
                Ok(()) => {
                    self.count("publish", "ok");
                    json!({"ok": true})
                }
                Err(err) => {
                    self.count("publish", "bad_request");
                    json!({"ok": false, "error": err.to_string()})
                }
            };
            event.ack(answer);
            return;
        };
        let metrics = self.metrics.clone();
        let ack = event.ack.take();
        tokio::spawn(async move {
            let (answer, outcome) = match op
                .timeout(timeout)
                .emit_with_ack(&request.event, payload)
                .await
            {
                Ok(result) => {
                    let ok = !result.timed_out;
                    let merged = Payload::collect(result.responses);
                    let responses = merged.args.into_iter().next().unwrap_or(Value::Null);
                    let body = match (ok, result.missing_nodes) {
                        (true, _) => json!({"ok": true, "responses": responses}),
                        (false, None) => {
                            json!({"ok": false, "error": "timeout", "responses": responses})
                        }
                        // Cluster mode: which nodes did not report, or why none could.
                        (false, Some(missing)) => json!({
                            "ok": false,
                            "error": "timeout",
                            "responses": responses,
                            "missing": missing,
                        }),
                    };
                    (
                        Payload {
                            args: vec![body],
                            attachments: merged.attachments,
                        },
                        if ok { "ok" } else { "timeout" },
                    )
                }
                Err(err) => (
                    Payload::from(json!({"ok": false, "error": err.to_string()})),
                    "bad_request",
                ),
            };
            metrics
                .requests
                .get_or_create(&[("event", "publish"), ("outcome", outcome)])
                .inc();
            if let Some(ack) = ack {
                ack.send(answer);
            }
        });
    }

    fn parse_publish(&self, event: &Event) -> Result<PublishRequest, Refusal> {
        let Some(Value::Object(obj)) = event.payload.args.first() else {
            return Err(refuse(
                "bad_request",
                "publish takes one object {to, event, data, self}",
            ));
        };
        let name = match obj.get("event") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(refuse(
                    "bad_request",
                    "\"event\" must be a non-empty string",
                ))
            }
        };
        let rooms = match obj.get("to") {
            None | Some(Value::Null) => None,
            other => Some(self.rooms(other)?),
        };
        let include_self = match obj.get("self") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            _ => return Err(refuse("bad_request", "\"self\" must be a boolean")),
        };
        let timeout = match obj.get("timeout") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(ms) if (1..=MAX_ACK_TIMEOUT_MS).contains(&ms) => {
                    Some(Duration::from_millis(ms))
                }
                _ => {
                    return Err(refuse(
                        "bad_request",
                        format!("\"timeout\" must be 1 to {MAX_ACK_TIMEOUT_MS} milliseconds"),
                    ))
                }
            },
        };
        Ok(PublishRequest {
            event: name,
            rooms,
            include_self,
            timeout,
            data: obj.get("data").cloned().unwrap_or(Value::Null),
        })
    }
}

struct PublishRequest {
    event: String,
    rooms: Option<Vec<Room>>,
    include_self: bool,
    timeout: Option<Duration>,
    data: Value,
}
