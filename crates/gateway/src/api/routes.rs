//! The `/api/v1/` routes: each reads its input, acts cluster-wide through the namespace's
//! adapter and answers JSON.

use super::input::{self, ApiError};
use super::{socket_json, user_of, Api, USER_ROOM_PREFIX};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use switchboard::{AdapterError, Partial, Room, SocketInfo};

type Answer = Result<Json<Value>, ApiError>;
/// A request's body, or why axum could not read it.
type RequestBody = Result<Bytes, BytesRejection>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// `POST /api/v1/emit`.
pub async fn emit(State(api): State<Arc<Api>>, body: RequestBody) -> Answer {
    let obj = input::object(body)?;
    input::only(&obj, &["namespace", "rooms", "except", "event", "data"])?;
    let ns = api.namespace(&input::namespace(&obj)?)?;
    let event = match obj.get("event") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(ApiError::field("event", "must be a non-empty string")),
    };
    let rooms = input::names(&obj, "rooms")?.unwrap_or_default();
    let except = input::names(&obj, "except")?.unwrap_or_default();
    let payload = match obj.get("data") {
        None => switchboard::Payload::new(),
        Some(data) => {
            crate::binary::from_json(vec![data.clone()]).map_err(|e| ApiError::field("data", e))?
        }
    };
    let op = ns
        .to(rooms.into_iter().map(Room::from).collect::<Vec<_>>())
        .except(except.into_iter().map(Room::from).collect::<Vec<_>>());
    op.emit(&event, payload)
        .map_err(|e| ApiError::field("event", e.to_string()))?;
    Ok(Json(json!({"ok": true})))
}

/// `POST /api/v1/sockets/join`.
pub async fn join(State(api): State<Arc<Api>>, body: RequestBody) -> Answer {
    let (ns, selection, rooms) = membership(&api, body)?;
    ns.to(selection).sockets_join(rooms);
    Ok(Json(json!({"ok": true})))
}

/// `POST /api/v1/sockets/leave`.
pub async fn leave(State(api): State<Arc<Api>>, body: RequestBody) -> Answer {
    let (ns, selection, rooms) = membership(&api, body)?;
    ns.to(selection).sockets_leave(rooms);
    Ok(Json(json!({"ok": true})))
}

type Membership = (Arc<switchboard::Namespace>, Vec<Room>, Vec<Room>);

fn membership(api: &Api, body: RequestBody) -> Result<Membership, ApiError> {
    let obj = input::object(body)?;
    input::only(&obj, &["namespace", "rooms", "sockets", "users", "room"])?;
    let ns = api.namespace(&input::namespace(&obj)?)?;
    let selection = input::selection(&obj)?;
    let rooms = input::names(&obj, "room")?
        .ok_or_else(|| ApiError::field("room", "the room to join or leave is required"))?;
    Ok((ns, selection, rooms.into_iter().map(Room::from).collect()))
}

/// `POST /api/v1/sockets/disconnect`.
pub async fn disconnect(State(api): State<Arc<Api>>, body: RequestBody) -> Answer {
    let obj = input::object(body)?;
    input::only(
        &obj,
        &["namespace", "rooms", "sockets", "users", "reason", "close"],
    )?;
    let name = input::namespace(&obj)?;
    let ns = api.namespace(&name)?;
    let selection = input::selection(&obj)?;
    let reason = input::opt_string(&obj, "reason")?;
    let close = input::flag(&obj, "close")?;
    tracing::info!(
        namespace = %name,
        reason = reason.as_deref().unwrap_or(""),
        close,
        "api: disconnecting sockets"
    );
    ns.to(selection).disconnect_sockets(close);
    Ok(Json(json!({"ok": true})))
}

/// Sockets from every node that answered, and the nodes that did not.
async fn fetch(
    api: &Api,
    ns: &Arc<switchboard::Namespace>,
    rooms: Vec<Room>,
) -> Result<(Vec<SocketInfo>, Vec<String>), ApiError> {
    let started = std::time::Instant::now();
    let result = ns.to(rooms).fetch_sockets().await;
    api.metrics
        .cluster_request_duration
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(sockets) => Ok((sockets, Vec::new())),
        Err(AdapterError::Timeout { nodes, partial, .. }) => {
            let sockets = match *partial {
                Partial::Sockets(s) => s,
                _ => Vec::new(),
            };
            Ok((sockets, nodes.split(", ").map(str::to_owned).collect()))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )),
    }
}

fn params(query: Params) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::field("query", e.to_string()))
}

fn query_namespace(
    api: &Api,
    q: &HashMap<String, String>,
) -> Result<(String, Arc<switchboard::Namespace>), ApiError> {
    let name = q.get("namespace").cloned().unwrap_or_else(|| "/".into());
    let ns = api.namespace(&name)?;
    Ok((name, ns))
}

/// `GET /api/v1/rooms?namespace=/`: every room with its member count, cluster-wide.
pub async fn rooms(State(api): State<Arc<Api>>, query: Params) -> Answer {
    let q = params(query)?;
    let (name, ns) = query_namespace(&api, &q)?;
    let (sockets, missing) = fetch(&api, &ns, Vec::new()).await?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &sockets {
        for r in s.rooms.iter().filter(|r| **r != s.id) {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let rooms: Vec<Value> = counts
        .into_iter()
        .map(|(room, n)| json!({"name": room, "sockets": n}))
        .collect();
    Ok(Json(
        json!({"namespace": name, "rooms": rooms, "missing": missing}),
    ))
}

/// `GET /api/v1/sockets?namespace=/&room=...`: id, user, rooms and node of each socket.
pub async fn sockets(State(api): State<Arc<Api>>, query: Params) -> Answer {
    let q = params(query)?;
    let (name, ns) = query_namespace(&api, &q)?;
    let rooms = match q.get("room") {
        None => Vec::new(),
        Some(r) => vec![Room::from(input::name("room", r)?)],
    };
    let (sockets, missing) = fetch(&api, &ns, rooms).await?;
    let list: Vec<Value> = sockets.iter().map(|s| socket_json(s, &name)).collect();
    Ok(Json(
        json!({"namespace": name, "sockets": list, "missing": missing}),
    ))
}

/// `GET /api/v1/users/{id}?namespace=/`: is the user online, on which sockets.
pub async fn user(State(api): State<Arc<Api>>, Path(id): Path<String>, query: Params) -> Answer {
    let q = params(query)?;
    let (name, ns) = query_namespace(&api, &q)?;
    let id = input::name("id", &id)?;
    let room = Room::from(format!("{USER_ROOM_PREFIX}{id}"));
    let (sockets, missing) = fetch(&api, &ns, vec![room]).await?;
    let list: Vec<Value> = sockets
        .iter()
        .filter(|s| user_of(&s.rooms).is_some())
        .map(|s| socket_json(s, &name))
        .collect();
    Ok(Json(json!({
        "user": id,
        "namespace": name,
        "online": !list.is_empty(),
        "sockets": list,
        "missing": missing,
    })))
}
