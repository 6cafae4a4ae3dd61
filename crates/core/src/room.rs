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

/// The members of one room. Most rooms have one (every socket's own room, named by its id),
/// kept inline: a set is allocated only for a room's second member.
enum Members {
    One(Sid),
    Many(HashSet<Sid>),
}

impl Members {
    fn insert(&mut self, sid: Sid) {
        match self {
            Self::One(one) if *one == sid => {}
            Self::One(one) => *self = Self::Many(HashSet::from([*one, sid])),
            Self::Many(set) => {
                set.insert(sid);
            }
        }
    }

    /// Removes `sid`; true when no member is left.
    fn remove(&mut self, sid: &Sid) -> bool {
        match self {
            Self::One(one) => one == sid,
            Self::Many(set) => {
                set.remove(sid);
                set.is_empty()
            }
        }
    }

    fn for_each(&self, f: impl FnMut(Sid)) {
        match self {
            Self::One(one) => std::iter::once(*one).for_each(f),
            Self::Many(set) => set.iter().copied().for_each(f),
        }
    }
}

type Shard = RwLock<HashMap<Room, Members>>;

/// Room → members, sharded by room so joins in different rooms never contend.
pub(crate) struct RoomIndex {
    shards: Vec<Shard>,
    hasher: RandomState,
}

impl RoomIndex {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, room: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(room) as usize % SHARDS]
    }

    /// Adds `sid` to `room`; `created` runs if that created the room. It runs under the
    /// room's lock, so the creations and deletions of one room are seen in the order they
    /// happened; it must not block nor touch this index.
    pub(crate) fn add(&self, room: &Room, sid: Sid, created: impl FnOnce()) {
        let mut shard = self.shard(room.as_str()).write();
        match shard.get_mut(room.as_str()) {
            Some(members) => members.insert(sid),
            None => {
                shard.insert(room.clone(), Members::One(sid));
                created();
            }
        }
    }

    /// Removes `sid` from `room`; `deleted` runs (under the room's lock, as for
    /// [`RoomIndex::add`]) if the room is now gone.
    pub(crate) fn remove(&self, room: &Room, sid: &Sid, deleted: impl FnOnce()) {
        let mut shard = self.shard(room.as_str()).write();
        let Some(members) = shard.get_mut(room.as_str()) else {
            return;
        };
        if members.remove(sid) {
            shard.remove(room.as_str());
            deleted();
        }
    }

    /// Calls `f` with each member of `room`.
    pub(crate) fn for_each_member(&self, room: &str, f: impl FnMut(Sid)) {
        {
            let shard = self.shard(room).read();
            if let Some(members) = shard.get(room) {
                members.for_each(f);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn members(index: &RoomIndex, room: &str) -> Vec<Sid> {
        let mut out = Vec::new();
        index.for_each_member(room, |sid| out.push(sid));
        out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        out
    }

    #[test]
    fn a_room_is_created_with_its_first_member_and_deleted_with_its_last() {
        let index = RoomIndex::new();
        let room = Room::from("r");
        let (a, b) = (Sid::random(), Sid::random());
        let mut created = 0;
        index.add(&room, a, || created += 1);
        index.add(&room, a, || created += 1);
        assert_eq!(members(&index, "r"), vec![a]);
        index.add(&room, b, || created += 1);
        assert_eq!(created, 1);
        let mut both = vec![a, b];
        both.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        assert_eq!(members(&index, "r"), both);
        let mut deleted = 0;
        index.remove(&room, &a, || deleted += 1);
        assert_eq!(members(&index, "r"), vec![b]);
        assert!(index.contains("r"));
        index.remove(&room, &a, || deleted += 1);
        index.remove(&room, &b, || deleted += 1);
        assert_eq!(deleted, 1);
        assert!(!index.contains("r"));
        assert!(members(&index, "r").is_empty());
        // A single member other than the one removed stays.
        index.add(&room, a, || {});
        index.remove(&room, &b, || deleted += 1);
        assert_eq!(members(&index, "r"), vec![a]);
        assert_eq!(deleted, 1);
    }
}
