//! The gateway's public API: the relay events `join`, `leave` and `publish`, guarded by the
//! connection's authentication (see `auth.rs`), its room grants (see `policy.rs`) and its
//! event rate.

use crate::auth::{self, AuthMode, Claims};
use crate::config::RelayLimits;
use crate::policy::{self, Forbidden, Grants, PublishScope, USER_ROOM_PREFIX};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use switchboard::engine::{Bucket, RateLimit};
use switchboard::{Event, Namespace, Payload, Room, SocketRef, Verdict};
use tokio_util::sync::CancellationToken;

/// Longest `timeout` a publish may ask for.
const MAX_ACK_TIMEOUT_MS: u64 = 60_000;

type Label = [(&'static str, &'static str); 2];
type Label1 = [(&'static str, &'static str); 1];

/// Relay and authentication counters.
#[derive(Debug, Default)]
pub struct RelayMetrics {
    /// Relay requests, by event and outcome (`ok` or an error kind such as `forbidden`).
    pub requests: Family<Label, Counter>,
    /// Connections refused by authentication, by reason.
    pub auth_refused: Family<Label1, Counter>,
    /// Sockets disconnected because their token expired.
    pub auth_expired: Counter,
    /// Events refused by the per-socket event rate.
    pub rate_limited: Counter,
    /// Sockets disconnected for flooding past the event rate.
    pub rate_limit_disconnects: Counter,
}

impl RelayMetrics {
    /// Registers under the `relay` and `auth` prefixes.
    pub fn register(&self, registry: &mut Registry) {
        let relay = registry.sub_registry_with_prefix("relay");
        relay.register(
            "requests",
            "Relay requests, by event and outcome",
            self.requests.clone(),
        );
        relay.register(
            "rate_limited_events",
            "Events refused by the per-socket event rate",
            self.rate_limited.clone(),
        );
        relay.register(
            "rate_limit_disconnects",
            "Sockets disconnected for flooding past the event rate",
            self.rate_limit_disconnects.clone(),
        );
        let auth = registry.sub_registry_with_prefix("auth");
        auth.register(
            "refused",
            "Connections refused by authentication, by reason",
            self.auth_refused.clone(),
        );
        auth.register(
            "expired_disconnects",
            "Sockets disconnected when their token expired",
            self.auth_expired.clone(),
        );
    }
}

/// Everything the relay enforces, fixed at start.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Room name and count limits.
    pub limits: RelayLimits,
    /// How connections authenticate.
    pub auth: AuthMode,
    /// Join patterns from the configuration (`--allow-join`).
    pub allow_join: Vec<String>,
    /// Publish patterns from the configuration (`--allow-publish`).
    pub allow_publish: Vec<String>,
    /// The publish scope.
    pub scope: PublishScope,
    /// Per-socket event rate; `None`: unlimited.
    pub event_rate: Option<RateLimit>,
}

/// What a connection proved at CONNECT, kept on its socket.
#[derive(Debug, Clone)]
struct Identity {
    user: Option<String>,
    expires: Option<SystemTime>,
    grants: Arc<Grants>,
}

/// A refused relay request: its metric label, the error text sent back, and for a
/// forbidden room, which one and why.
struct Refusal(&'static str, String, Option<Forbidden>);

impl Refusal {
    fn forbidden(f: Forbidden) -> Self {
        Self("forbidden", "forbidden".into(), Some(f))
    }

    fn answer(self) -> Value {
        match self.2 {
            None => json!({"ok": false, "error": self.1}),
            Some(f) => json!({"ok": false, "error": self.1, "room": f.room, "reason": f.reason}),
        }
    }
}

fn refuse(kind: &'static str, message: impl Into<String>) -> Refusal {
    Refusal(kind, message.into(), None)
}

struct Relay {
    config: RelayConfig,
    /// Grants of sockets whose token adds no patterns of its own.
    default_grants: Arc<Grants>,
    metrics: Arc<RelayMetrics>,
}

/// Installs authentication and the relay events on `ns`. Fails when a pattern does not
/// compile (the message names it).
pub fn install(
    ns: &Arc<Namespace>,
    config: RelayConfig,
    metrics: Arc<RelayMetrics>,
) -> Result<(), String> {
    let default_grants = Arc::new(Grants {
        join: policy::compile(&config.allow_join)?,
        publish: policy::compile(&config.allow_publish)?,
        scope: config.scope,
    });
    let relay = Arc::new(Relay {
        config,
        default_grants,
        metrics,
    });
    if !matches!(relay.config.auth, AuthMode::Anonymous) {
        let r = relay.clone();
        ns.use_middleware(move |socket| {
            let r = r.clone();
            async move { r.authenticate(&socket) }
        });
    }
    ns.on_connection(move |socket| relay.clone().on_connection(socket));
    Ok(())
}

/// The per-socket event rate: a token bucket for events, and a second one for refusals that
/// a socket which keeps flooding runs out of.
struct EventRate {
    limit: RateLimit,
    events: Bucket,
    strikes: Bucket,
}

impl Relay {
    fn authenticate(&self, socket: &SocketRef) -> Result<(), switchboard::ConnectError> {
        let refuse = |reason: auth::Reason| {
            self.metrics
                .auth_refused
                .get_or_create(&[("reason", reason)])
                .inc();
            Err(auth::unauthorized(reason))
        };
        let Some(token) = auth::presented_token(socket) else {
            return refuse("missing token");
        };
        match &self.config.auth {
            AuthMode::Anonymous => Ok(()),
            AuthMode::SharedToken(secret) if auth::same_secret(&token, secret) => Ok(()),
            AuthMode::SharedToken(_) => refuse("bad token"),
            AuthMode::Jwt(verifier) => match verifier.verify(&token) {
                Ok(claims) => match self.identity(claims) {
                    Ok(identity) => {
                        socket.insert_extension(identity);
                        Ok(())
                    }
                    Err(reason) => refuse(reason),
                },
                Err(reason) => refuse(reason),
            },
        }
    }

    fn identity(&self, claims: Claims) -> Result<Identity, auth::Reason> {
        let grants = if claims.rooms.is_empty() && claims.publish.is_empty() {
            self.default_grants.clone()
        } else {
            let with = |config: &[String], token: &[String]| {
                let all: Vec<String> = config.iter().chain(token).cloned().collect();
                policy::compile(&all).map_err(|_| "malformed claims")
            };
            Arc::new(Grants {
                join: with(&self.config.allow_join, &claims.rooms)?,
                publish: with(&self.config.allow_publish, &claims.publish)?,
                scope: self.config.scope,
            })
        };
        let user = claims.sub.clone().filter(|s| !s.is_empty());
        if user
            .as_ref()
            .is_some_and(|u| u.len() + USER_ROOM_PREFIX.len() > self.config.limits.max_room_name)
        {
            return Err("malformed claims");
        }
        Ok(Identity {
            user,
            expires: claims.expires_at(),
            grants,
        })
    }

    fn on_connection(self: Arc<Self>, socket: &SocketRef) {
        let identity = socket.extension::<Identity>().unwrap_or_else(|| Identity {
            user: None,
            expires: None,
            grants: self.default_grants.clone(),
        });
        if let Some(user) = &identity.user {
            socket.join(format!("{USER_ROOM_PREFIX}{user}"));
            socket.set_data(json!({ "user": user }));
        }
        if let Some(expires) = identity.expires {
            self.disconnect_at_expiry(socket, expires, identity.user.clone());
        }
        if let Some(limit) = self.config.event_rate {
            self.limit_events(socket, limit);
        }
        let grants = identity.grants;
        let (r, g) = (self.clone(), grants.clone());
        socket.on("join", move |socket, event| {
            r.handle("join", socket, event, |relay, socket, event| {
                relay.join(socket, event, &g)
            })
        });
        let (r, g) = (self.clone(), grants.clone());
        socket.on("leave", move |socket, event| {
            r.handle("leave", socket, event, |relay, socket, event| {
                relay.leave(socket, event, &g)
            })
        });
        let r = self;
        socket.on("publish", move |socket, event| {
            r.publish(socket, event, &grants)
        });
    }

    fn disconnect_at_expiry(&self, socket: &SocketRef, expires: SystemTime, user: Option<String>) {
        let left = expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let gone = CancellationToken::new();
        let cancel = gone.clone();
        socket.on_disconnect(move |_, _| cancel.cancel());
        let socket = socket.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = gone.cancelled() => {}
                _ = tokio::time::sleep(left) => {
                    tracing::info!(
                        socket = %socket.id(),
                        user = user.as_deref().unwrap_or(""),
                        "token expired; socket disconnected"
                    );
                    metrics.auth_expired.inc();
                    socket.disconnect(false);
                }
            }
        });
    }

    fn limit_events(&self, socket: &SocketRef, limit: RateLimit) {
        let now = Instant::now();
        let state = Mutex::new(EventRate {
            limit,
            events: Bucket::full(limit, now),
            strikes: Bucket::full(limit, now),
        });
        let metrics = self.metrics.clone();
        socket.use_guard(move |socket, _event| {
            let now = Instant::now();
            let mut rate = state.lock();
            let limit = rate.limit;
            if rate.events.take(limit, now) {
                return Verdict::Pass;
            }
            metrics.rate_limited.inc();
            if !rate.strikes.take(limit, now) {
                drop(rate);
                tracing::info!(socket = %socket.id(), "event flood; socket disconnected");
                metrics.rate_limit_disconnects.inc();
                socket.disconnect(false);
            }
            Verdict::Refuse(Payload::from(json!({"ok": false, "error": "rate_limited"})))
        });
    }

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
        op: impl Fn(&Self, &SocketRef, &Event) -> Result<Value, Refusal>,
    ) {
        let answer = match op(self, socket, &event) {
            Ok(v) => {
                self.count(name, "ok");
                v
            }
            Err(refusal) => {
                self.count(name, refusal.0);
                refusal.answer()
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
        let limits = &self.config.limits;
        if names.len() > limits.max_rooms_per_socket {
            return Err(refuse("limit", "too many rooms in one request"));
        }
        names
            .into_iter()
            .map(|n| {
                if n.is_empty() || n.len() > limits.max_room_name {
                    Err(refuse(
                        "bad_request",
                        format!("room names must be 1 to {} bytes", limits.max_room_name),
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

    fn join(&self, socket: &SocketRef, event: &Event, grants: &Grants) -> Result<Value, Refusal> {
        let rooms = self.rooms(event.payload.args.first())?;
        for room in &rooms {
            grants.may_join(room.as_str()).map_err(Refusal::forbidden)?;
        }
        let current: Vec<Room> = socket.rooms();
        let own = current
            .iter()
            .filter(|r| policy::is_reserved(r.as_str()))
            .count();
        let fresh = rooms.iter().filter(|r| !current.contains(r)).count();
        let max = self.config.limits.max_rooms_per_socket;
        if current.len() - own + fresh > max {
            return Err(refuse(
                "limit",
                format!("a socket may be in at most {max} rooms"),
            ));
        }
        socket.join(rooms);
        Ok(Self::member_rooms(socket))
    }

    fn leave(&self, socket: &SocketRef, event: &Event, grants: &Grants) -> Result<Value, Refusal> {
        let rooms = self.rooms(event.payload.args.first())?;
        for room in &rooms {
            grants
                .may_leave(room.as_str())
                .map_err(Refusal::forbidden)?;
        }
        socket.leave(rooms);
        Ok(Self::member_rooms(socket))
    }

    fn publish(&self, socket: &SocketRef, mut event: Event, grants: &Grants) {
        let request = self.parse_publish(&mut event).and_then(|request| {
            let names: Option<Vec<String>> = request
                .rooms
                .as_ref()
                .map(|rooms| rooms.iter().map(|r| r.to_string()).collect());
            grants
                .may_publish(socket, names.as_deref())
                .map_err(Refusal::forbidden)?;
            Ok(request)
        });
        let request = match request {
            Ok(r) => r,
            Err(refusal) => {
                self.count("publish", refusal.0);
                event.ack(refusal.answer());
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

    /// The publish request in `event`; its `data` is moved out of the event, not copied.
    fn parse_publish(&self, event: &mut Event) -> Result<PublishRequest, Refusal> {
        let Some(Value::Object(obj)) = event.payload.args.first_mut() else {
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
            data: obj.remove("data").unwrap_or(Value::Null),
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
