//! Reading the API's JSON input field by field, so that a 400 names the bad field.

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use switchboard::Room;

/// Longest room or user id the API accepts, in bytes.
pub const MAX_NAME: usize = 1024;

/// An API error: its status and the JSON body `{"error", "field"?, "message"}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    field: Option<&'static str>,
    message: String,
}

impl ApiError {
    /// An error with a status and a stable code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            field: None,
            message: message.into(),
        }
    }

    /// A 400 about `field`.
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            field: Some(field),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if let (Some(field), Value::Object(map)) = (self.field, &mut body) {
            map.insert("field".into(), Value::String(field.into()));
        }
        (self.status, Json(body)).into_response()
    }
}

/// The request body as a JSON object (413 past the body limit, 400 otherwise).
pub fn object(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, format!("{rejection}; see --api-max-body"))
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::field("body", "the body must be a JSON object")),
        Err(e) => Err(ApiError::field("body", format!("invalid JSON: {e}"))),
    }
}

/// `namespace`, `/` when absent.
pub fn namespace(obj: &Map<String, Value>) -> Result<String, ApiError> {
    match obj.get("namespace") {
        None | Some(Value::Null) => Ok("/".into()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::field(
            "namespace",
            "must be a string such as \"/\"",
        )),
    }
}

/// A non-empty name of at most [`MAX_NAME`] bytes.
pub fn name(field: &'static str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(ApiError::field(
            field,
            format!("names must be 1 to {MAX_NAME} bytes"),
        ));
    }
    Ok(value.to_owned())
}

/// An optional array of names; `Some(empty)` is refused (omit the field instead).
pub fn names(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Vec<String>>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![name(field, s)?])),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Value::String(s) => name(field, s),
                _ => Err(ApiError::field(field, "must be an array of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(Value::Array(_)) => Err(ApiError::field(
            field,
            "must not be empty (leave it out to mean no restriction)",
        )),
        Some(_) => Err(ApiError::field(field, "must be an array of strings")),
    }
}

/// The sockets a join/leave/disconnect addresses: exactly one of `rooms`, `sockets`, `users`,
/// as rooms (a socket's own id is a room; a user is the room `user:<id>`).
pub fn selection(obj: &Map<String, Value>) -> Result<Vec<Room>, ApiError> {
    let rooms = names(obj, "rooms")?;
    let sockets = names(obj, "sockets")?;
    let users = names(obj, "users")?;
    let given = [rooms.is_some(), sockets.is_some(), users.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given != 1 {
        return Err(ApiError::field(
            "rooms",
            "give exactly one of \"rooms\", \"sockets\" or \"users\"",
        ));
    }
    let rooms: Vec<String> = match (rooms, sockets, users) {
        (Some(r), _, _) | (_, Some(r), _) => r,
        (_, _, Some(u)) => u
            .into_iter()
            .map(|u| format!("{}{u}", super::USER_ROOM_PREFIX))
            .collect(),
        _ => Vec::new(),
    };
    Ok(rooms.into_iter().map(Room::from).collect())
}

/// An optional string field.
pub fn opt_string(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_NAME => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::field(
            field,
            format!("must be a string of at most {MAX_NAME} bytes"),
        )),
    }
}

/// An optional boolean field, `false` when absent.
pub fn flag(obj: &Map<String, Value>, field: &'static str) -> Result<bool, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::field(field, "must be a boolean")),
    }
}

/// Refuses fields the route does not know (a typo must not widen an operation silently).
pub fn only(obj: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(ApiError::field(
            "body",
            format!("unknown field {k:?}; this route takes {}", known.join(", ")),
        )),
    }
}
