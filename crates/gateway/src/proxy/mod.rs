//! The backend event proxy: a connection asks the backend (`POST {URL}/connect`), every
//! client event without a handler of its own goes to `POST {URL}/event` (one at a time per
//! socket, so their order is kept), and a disconnect is reported to `POST {URL}/disconnect`.
//! `client.rs` makes the HTTP calls.

mod client;

pub use client::{BackendClient, CallError, Hook, ProxyMetrics};

use crate::api::{DATA_KEY, USER_ROOM_PREFIX};
use crate::binary;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use switchboard::{ConnectError, DisconnectReason, Event, Namespace, Room, SocketRef};
use tokio::sync::mpsc;

/// Longest user id or room name the backend may give, in bytes.
const MAX_NAME: usize = 1024;

enum Job {
    Event(Box<Event>),
    Disconnect(DisconnectReason, Value),
}

/// Installs the three hooks on `ns`.
pub fn install(ns: &Arc<Namespace>, backend: Arc<BackendClient>) {
    let b = backend.clone();
    ns.use_middleware(move |socket| {
        let b = b.clone();
        async move { connect(&b, &socket).await }
    });
    ns.on_connection(move |socket| {
        let queue = Arc::new(Queue {
            backend: backend.clone(),
            state: Mutex::new(State::Idle),
        });
        let q = queue.clone();
        socket.on_fallback(move |socket, event| q.push(socket, event));
        // While disconnecting, the rooms (and so the user) are still readable.
        socket.on_disconnecting(move |socket, reason| queue.close(socket, reason));
    });
}

/// A socket's events on their way to the backend. The worker task and its channel exist only
/// once the socket has sent an event: an idle socket costs one small allocation.
struct Queue {
    backend: Arc<BackendClient>,
    state: Mutex<State>,
}

enum State {
    Idle,
    Running(mpsc::Sender<Job>),
    Closed,
}

impl Queue {
    fn push(&self, socket: &SocketRef, event: Event) {
        let mut event = event;
        let refused = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(*state, State::Idle) {
                let (tx, rx) = mpsc::channel(self.backend.config().queue);
                tokio::spawn(worker(self.backend.clone(), socket.clone(), rx));
                *state = State::Running(tx);
            }
            match &*state {
                State::Running(tx) => match tx.try_send(Job::Event(Box::new(event))) {
                    Ok(()) => None,
                    Err(mpsc::error::TrySendError::Full(Job::Event(e)))
                    | Err(mpsc::error::TrySendError::Closed(Job::Event(e))) => Some(*e),
                    Err(_) => None,
                },
                _ => Some(event),
            }
        };
        if let Some(e) = refused {
            event = e;
            self.backend.metrics.count(Hook::Event, "queue_full");
            event.ack(
                json!({"ok": false, "error": "too many events waiting for the backend; slow down"}),
            );
        }
    }

    fn close(&self, socket: &SocketRef, reason: DisconnectReason) {
        let previous = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *state, State::Closed)
        };
        let job = Job::Disconnect(reason, user_of(socket));
        match previous {
            // After the socket's earlier events, in its worker.
            State::Running(tx) => {
                if let Err(mpsc::error::TrySendError::Full(job)) = tx.try_send(job) {
                    // The worker drains the queue within its timeouts: wait for room.
                    tokio::spawn(async move {
                        let _ = tx.send(job).await;
                    });
                }
            }
            State::Idle => {
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.try_send(job);
                drop(tx);
                tokio::spawn(worker(self.backend.clone(), socket.clone(), rx));
            }
            State::Closed => {}
        }
    }
}

fn user_of(socket: &SocketRef) -> Value {
    let rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    crate::api::user_of(&rooms)
        .map(|u| Value::String(u.to_owned()))
        .unwrap_or(Value::Null)
}

async fn connect(backend: &BackendClient, socket: &SocketRef) -> Result<(), ConnectError> {
    let hs = socket.handshake();
    let mut headers = Map::new();
    for name in &backend.config().forward_headers {
        if let Some(value) = hs.header(name) {
            headers.insert(name.as_str().into(), Value::String(value));
        }
    }
    let body = json!({
        "socket": socket.id().as_str(),
        "namespace": socket.nsp().name(),
        "auth": hs.auth,
        "headers": headers,
        "query": hs.query(),
        "address": hs.address.map(|a| a.ip().to_string()),
    });
    let answer = backend.call(Hook::Connect, &body).await;
    let result = answer.and_then(|a| accept(socket, a));
    match result {
        Ok(Ok(())) => {
            backend.metrics.count(Hook::Connect, "ok");
            Ok(())
        }
        Ok(Err(refusal)) => {
            backend.metrics.count(Hook::Connect, "rejected");
            Err(refusal)
        }
        Err(err) => {
            backend.metrics.count(Hook::Connect, err.label());
            tracing::warn!(error = %err, "connect hook failed; connection refused");
            Err(ConnectError::new("backend unavailable").with_data(json!({"reason": err.label()})))
        }
    }
}

fn names(value: Option<&Value>, field: &str) -> Result<Vec<Room>, CallError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if !s.is_empty() && s.len() <= MAX_NAME => Ok(Room::from(s)),
                _ => Err(CallError::BadResponse(format!(
                    "\"{field}\" must hold room names of 1 to {MAX_NAME} bytes"
                ))),
            })
            .collect(),
        Some(_) => Err(CallError::BadResponse(format!(
            "\"{field}\" must be an array of strings"
        ))),
    }
}

/// Applies a connect answer: `Ok(Ok)` accepted, `Ok(Err)` refused by the backend.
fn accept(socket: &SocketRef, answer: Value) -> Result<Result<(), ConnectError>, CallError> {
    match answer.get("accept") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => {
            let message = answer
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("refused by the backend");
            let mut err = ConnectError::new(message);
            if let Some(data) = answer.get("data").filter(|d| !d.is_null()) {
                err = err.with_data(data.clone());
            }
            return Ok(Err(err));
        }
        _ => {
            return Err(CallError::BadResponse(
                "the connect answer needs \"accept\": true or false".into(),
            ))
        }
    }
    let mut rooms = names(answer.get("rooms"), "rooms")?;
    match answer.get("user") {
        None | Some(Value::Null) => {}
        Some(Value::String(u)) if !u.is_empty() && u.len() <= MAX_NAME => {
            rooms.push(Room::from(format!("{USER_ROOM_PREFIX}{u}")));
        }
        Some(_) => {
            return Err(CallError::BadResponse(format!(
                "\"user\" must be a string of 1 to {MAX_NAME} bytes"
            )))
        }
    }
    if let Some(data) = answer.get("data").filter(|d| !d.is_null()) {
        let mut current = socket.data();
        if let Value::Object(map) = &mut current {
            map.insert(DATA_KEY.into(), data.clone());
            socket.set_data(current);
        }
    }
    socket.join(rooms);
    Ok(Ok(()))
}

async fn worker(backend: Arc<BackendClient>, socket: SocketRef, mut rx: mpsc::Receiver<Job>) {
    while let Some(job) = rx.recv().await {
        match job {
            Job::Event(event) => on_event(&backend, &socket, *event).await,
            Job::Disconnect(reason, user) => {
                let body = json!({
                    "socket": socket.id().as_str(),
                    "user": user,
                    "namespace": socket.nsp().name(),
                    "reason": reason.to_string(),
                });
                let outcome = match backend.call(Hook::Disconnect, &body).await {
                    Ok(_) => "ok",
                    Err(e) => {
                        tracing::warn!(error = %e, "disconnect hook failed after its retries");
                        e.label()
                    }
                };
                backend.metrics.count(Hook::Disconnect, outcome);
                return;
            }
        }
    }
}

async fn on_event(backend: &BackendClient, socket: &SocketRef, mut event: Event) {
    let body = json!({
        "socket": socket.id().as_str(),
        "user": user_of(socket),
        "namespace": socket.nsp().name(),
        "event": event.name,
        "args": binary::to_json(&event.payload),
    });
    let result = match backend.call(Hook::Event, &body).await {
        Ok(answer) => apply(socket, answer),
        Err(e) => Err(e),
    };
    match result {
        Ok(ack) => {
            backend.metrics.count(Hook::Event, "ok");
            if let Some(ack) = ack {
                event.ack(ack);
            } else {
                event.ack(switchboard::Payload::new());
            }
        }
        Err(err) => {
            backend.metrics.count(Hook::Event, err.label());
            tracing::debug!(error = %err, event = %event.name, "event hook failed");
            event.ack(json!({"ok": false, "error": err.to_string()}));
        }
    }
}

/// Applies an event answer (joins, leaves, emits) and returns the acknowledgement to send.
fn apply(socket: &SocketRef, answer: Value) -> Result<Option<switchboard::Payload>, CallError> {
    let join = names(answer.get("join"), "join")?;
    let leave = names(answer.get("leave"), "leave")?;
    let emits = match answer.get("emits") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(parse_emit).collect::<Result<_, _>>()?,
        Some(_) => return Err(CallError::BadResponse("\"emits\" must be an array".into())),
    };
    let ack = match answer.get("ack") {
        None => None,
        Some(v) => Some(binary::from_json(vec![v.clone()]).map_err(CallError::BadResponse)?),
    };
    if !socket.connected() {
        return Ok(ack);
    }
    let own = Room::from(socket.id());
    socket.join(join.into_iter().filter(|r| *r != own).collect::<Vec<_>>());
    socket.leave(leave.into_iter().filter(|r| *r != own).collect::<Vec<_>>());
    for e in emits {
        let result = if e.to.is_empty() {
            socket.emit(&e.event, e.payload)
        } else {
            let mut op = socket.nsp().to(e.to).except(e.except);
            if !e.include_self {
                op = op.except(own.clone());
            }
            op.emit(&e.event, e.payload)
        };
        if let Err(err) = result {
            return Err(CallError::BadResponse(format!("emit {:?}: {err}", e.event)));
        }
    }
    Ok(ack)
}

struct Emit {
    to: Vec<Room>,
    except: Vec<Room>,
    event: String,
    payload: switchboard::Payload,
    include_self: bool,
}

fn parse_emit(value: &Value) -> Result<Emit, CallError> {
    let bad = |m: &str| CallError::BadResponse(format!("emits: {m}"));
    let Value::Object(obj) = value else {
        return Err(bad("each emit is an object"));
    };
    let event = match obj.get("event") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(bad("\"event\" must be a non-empty string")),
    };
    let payload = match obj.get("data") {
        None => switchboard::Payload::new(),
        Some(d) => binary::from_json(vec![d.clone()]).map_err(|e| bad(&e))?,
    };
    let include_self = match obj.get("self") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("\"self\" must be a boolean")),
    };
    Ok(Emit {
        to: names(obj.get("to"), "to")?,
        except: names(obj.get("except"), "except")?,
        event,
        payload,
        include_self,
    })
}
