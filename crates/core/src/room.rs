//! Room names and the sharded room index of a namespace.

use parking_lot::RwLock;
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use switchboard_engine::Sid;

/// A room name. Every socket is in the room named by its own id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Room(Arc<str>);

impl Room {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Room {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Room {
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl From<String> for Room {
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl From<&String> for Room {
    fn from(s: &String) -> Self {
        Self(Arc::from(s.as_str()))
    }
}

impl From<Sid> for Room {
    fn from(s: Sid) -> Self {
        Self(Arc::from(s.as_str()))
    }
}

impl From<&Room> for Room {
    fn from(r: &Room) -> Self {
        r.clone()
    }
}

/// Anything that names one or more rooms: a `&str`, a `String`, a `Room`, or a list of them.
pub trait IntoRooms {
    /// The rooms.
    fn into_rooms(self) -> Vec<Room>;
}

impl<T: Into<Room>> IntoRooms for T {
    fn into_rooms(self) -> Vec<Room> {
        vec![self.into()]
    }
}

impl<T: Into<Room>> IntoRooms for Vec<T> {
    fn into_rooms(self) -> Vec<Room> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: Into<Room> + Clone, const N: usize> IntoRooms for [T; N] {
    fn into_rooms(self) -> Vec<Room> {
        self.into_iter().map(Into::into).collect()
    }
}

const SHARDS: usize = 16;

/// Room → members, sharded by room so joins in different rooms never contend.
pub(crate) struct RoomIndex {
    shards: Vec<RwLock<HashMap<Room, HashSet<Sid>>>>,
    hasher: RandomState,
}

impl RoomIndex {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, room: &str) -> &RwLock<HashMap<Room, HashSet<Sid>>> {
        &self.shards[self.hasher.hash_one(room) as usize % SHARDS]
    }

    /// Adds `sid` to `room`; `created` runs if that created the room. It runs under the
    /// room's lock, so the creations and deletions of one room are seen in the order they
    /// happened; it must not block nor touch this index.
    pub(crate) fn add(&self, room: &Room, sid: Sid, created: impl FnOnce()) {
        let mut shard = self.shard(room.as_str()).write();
        let new = !shard.contains_key(room.as_str());
        shard.entry(room.clone()).or_default().insert(sid);
        if new {
            created();
        }
    }

    /// Removes `sid` from `room`; `deleted` runs (under the room's lock, as for
    /// [`RoomIndex::add`]) if the room is now gone.
    pub(crate) fn remove(&self, room: &Room, sid: &Sid, deleted: impl FnOnce()) {
        let mut shard = self.shard(room.as_str()).write();
        let Some(members) = shard.get_mut(room.as_str()) else {
            return;
        };
        members.remove(sid);
        if members.is_empty() {
            shard.remove(room.as_str());
            deleted();
        }
    }

    /// Calls `f` with each member of `room`.
    pub(crate) fn for_each_member(&self, room: &str, mut f: impl FnMut(Sid)) {
        {
            let shard = self.shard(room).read();
            if let Some(members) = shard.get(room) {
                members.iter().copied().for_each(&mut f);
            }
        }
    }

    /// True when the room exists here.
    pub(crate) fn contains(&self, room: &str) -> bool {
        self.shard(room).read().contains_key(room)
    }

    /// Every room with at least one member.
    pub(crate) fn all(&self) -> Vec<Room> {
        self.shards
            .iter()
            .flat_map(|s| s.read().keys().cloned().collect::<Vec<_>>())
            .collect()
    }
}
