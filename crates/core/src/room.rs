//! Room names and the sharded room index of a namespace.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use switchboard_engine::{ShardedMap, Sid};

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

/// What the room index keeps of each member: its socket, so that a broadcast reaches every
/// member without looking it up again (in this module's tests, a bare id).
pub(crate) trait Member: Clone {
    /// The member's socket id.
    fn sid(&self) -> &Sid;
}

/// A member in a room's set, hashed and compared by its socket id, so the set is looked up by
/// id and holds no copy of it.
struct ById<M>(M);

impl<M: Member> PartialEq for ById<M> {
    fn eq(&self, other: &Self) -> bool {
        self.0.sid() == other.0.sid()
    }
}

impl<M: Member> Eq for ById<M> {}

impl<M: Member> Hash for ById<M> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.sid().hash(state);
    }
}

impl<M: Member> Borrow<Sid> for ById<M> {
    fn borrow(&self) -> &Sid {
        self.0.sid()
    }
}

/// The members of one room. Most rooms have one (every socket's own room, named by its id),
/// kept inline: a set is allocated only for a room's second member.
enum Members<M> {
    One(M),
    Many(HashSet<ById<M>>),
}

impl<M: Member> Members<M> {
    fn insert(&mut self, member: &M) {
        match self {
            Self::One(one) if one.sid() == member.sid() => {}
            Self::One(one) => {
                *self = Self::Many(HashSet::from([ById(one.clone()), ById(member.clone())]))
            }
            Self::Many(set) => {
                set.insert(ById(member.clone()));
            }
        }
    }

    /// Removes `sid`; true when no member is left.
    fn remove(&mut self, sid: &Sid) -> bool {
        match self {
            Self::One(one) => one.sid() == sid,
            Self::Many(set) => {
                set.remove(sid);
                set.is_empty()
            }
        }
    }

    fn for_each(&self, mut f: impl FnMut(&M)) {
        match self {
            Self::One(one) => f(one),
            Self::Many(set) => set.iter().for_each(|m| f(&m.0)),
        }
    }
}

/// Room → members, sharded by room so joins in different rooms never contend. The reverse
/// index (socket → rooms) is each socket's own set, so leaving costs the rooms of that socket.
pub(crate) struct RoomIndex<M> {
    rooms: ShardedMap<Room, Members<M>>,
}

impl<M: Member> RoomIndex<M> {
    pub(crate) fn new() -> Self {
        Self {
            rooms: ShardedMap::new(SHARDS),
        }
    }

    /// Adds `member` to `room`; `created` runs if that created the room. It runs under the
    /// room's lock, so the creations and deletions of one room are seen in the order they
    /// happened; it must not block nor touch this index.
    pub(crate) fn add(&self, room: &Room, member: &M, created: impl FnOnce()) {
        self.rooms.update_or_insert(
            room,
            |members| members.insert(member),
            || {
                created();
                Members::One(member.clone())
            },
        );
    }

    /// Removes `sid` from `room`; `deleted` runs (under the room's lock, as for
    /// [`RoomIndex::add`]) if the room is now gone.
    pub(crate) fn remove(&self, room: &Room, sid: &Sid, deleted: impl FnOnce()) {
        self.rooms.remove_if(room.as_str(), |members| {
            let gone = members.remove(sid);
            if gone {
                deleted();
            }
            gone
        });
    }

    /// Calls `f` with each member of `room`, under the room's read lock (`f` must not block
    /// nor touch this index).
    pub(crate) fn for_each_member(&self, room: &str, f: impl FnMut(&M)) {
        self.rooms.read(room, |members| members.for_each(f));
    }

    /// True when the room exists here.
    pub(crate) fn contains(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Every room with at least one member.
    pub(crate) fn all(&self) -> Vec<Room> {
        self.rooms.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Member for Sid {
        fn sid(&self) -> &Sid {
            self
        }
    }

    fn members(index: &RoomIndex<Sid>, room: &str) -> Vec<Sid> {
        let mut out = Vec::new();
        index.for_each_member(room, |sid| out.push(*sid));
        out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        out
    }

    #[test]
    fn a_room_is_created_with_its_first_member_and_deleted_with_its_last() {
        let index = RoomIndex::new();
        let room = Room::from("r");
        let (a, b) = (Sid::random(), Sid::random());
        let mut created = 0;
        index.add(&room, &a, || created += 1);
        index.add(&room, &a, || created += 1);
        assert_eq!(members(&index, "r"), vec![a]);
        index.add(&room, &b, || created += 1);
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
        index.add(&room, &a, || {});
        index.remove(&room, &b, || deleted += 1);
        assert_eq!(members(&index, "r"), vec![a]);
        assert_eq!(deleted, 1);
    }
}
