//! Which rooms a socket may join and publish to: reserved rooms no client can enter, glob
//! patterns from the configuration and from the socket's token, and the publish scope.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use switchboard::engine::Sid;
use switchboard::SocketRef;

/// How far a socket's `publish` may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PublishScope {
    /// Only rooms the socket is in (and that its publish patterns allow, if any are set).
    Joined,
    /// Any room its publish patterns allow (without patterns: any room it could join).
    Allowed,
    /// Any room, or the whole namespace when `to` is absent: for trusted clients only.
    Any,
}

/// The prefix of the rooms the gateway keeps for users (`user:<sub>`).
pub const USER_ROOM_PREFIX: &str = "user:";

/// True for rooms no client may join or leave through the relay: every name shaped like a
/// socket id (on any node, so the check is by shape, not by lookup) and every `user:` room,
/// in any letter case.
pub fn is_reserved(room: &str) -> bool {
    Sid::parse(room).is_some()
        || room
            .get(..USER_ROOM_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(USER_ROOM_PREFIX))
}

/// Compiles glob patterns (`*` matches any run of characters, `?` one, `[a-z]` a class).
pub fn compile(patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("{p:?}: {e}"))?;
        set.add(glob);
    }
    set.build().map(Some).map_err(|e| e.to_string())
}

/// What one socket may do, fixed when it connects.
#[derive(Debug, Clone)]
pub struct Grants {
    /// Join patterns (configuration plus token); `None`: every room that is not reserved.
    pub join: Option<GlobSet>,
    /// Publish patterns (configuration plus token); `None`: no extra restriction.
    pub publish: Option<GlobSet>,
    /// The publish scope.
    pub scope: PublishScope,
}

/// A refusal: metric label and the text of the error ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The room refused (absent when the whole namespace was).
    pub room: Option<String>,
    /// Why, in words for the client.
    pub reason: &'static str,
}

impl Grants {
    /// May the socket join `room`?
    pub fn may_join(&self, room: &str) -> Result<(), Forbidden> {
        if is_reserved(room) {
            return Err(forbidden(Some(room), "reserved room"));
        }
        match &self.join {
            Some(set) if !set.is_match(room) => Err(forbidden(Some(room), "not allowed to join")),
            _ => Ok(()),
        }
    }

    /// May the socket leave `room`? Reserved rooms are the server's to manage.
    pub fn may_leave(&self, room: &str) -> Result<(), Forbidden> {
        if is_reserved(room) {
            return Err(forbidden(Some(room), "reserved room"));
        }
        Ok(())
    }

    /// May `socket` publish to `rooms` (`None`: the whole namespace)?
    pub fn may_publish(
        &self,
        socket: &SocketRef,
        rooms: Option<&[String]>,
    ) -> Result<(), Forbidden> {
        let Some(rooms) = rooms else {
            return match self.scope {
                PublishScope::Any => Ok(()),
                _ => Err(forbidden(
                    None,
                    "publishing to the whole namespace is not allowed",
                )),
            };
        };
        if self.scope == PublishScope::Any {
            return Ok(());
        }
        let member_of = if self.scope == PublishScope::Joined {
            socket.rooms()
        } else {
            Vec::new()
        };
        for room in rooms {
            let allowed = match (&self.publish, self.scope) {
                (Some(set), _) if !set.is_match(room) => false,
                (_, PublishScope::Joined) => member_of.iter().any(|r| r.as_str() == room),
                (Some(_), _) => true,
                (None, _) => self.may_join(room).is_ok(),
            };
            if !allowed {
                let reason = if self.scope == PublishScope::Joined {
                    "not a member of the room"
                } else {
                    "not allowed to publish to the room"
                };
                return Err(forbidden(Some(room), reason));
            }
        }
        Ok(())
    }
}

fn forbidden(room: Option<&str>, reason: &'static str) -> Forbidden {
    Forbidden {
        room: room.map(str::to_owned),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_rooms_are_recognised_by_shape() {
        let sid = Sid::random();
        assert!(is_reserved(sid.as_str()));
        assert!(is_reserved("user:alice"));
        assert!(is_reserved("USER:alice"));
        assert!(is_reserved("User:"));
        assert!(!is_reserved("users"));
        assert!(!is_reserved("room-1"));
        assert!(!is_reserved("ü"));
    }

    #[test]
    fn join_patterns_restrict_when_present() {
        let g = Grants {
            join: compile(&["chat:*".into(), "lobby".into()]).expect("globs"),
            publish: None,
            scope: PublishScope::Joined,
        };
        assert!(g.may_join("chat:1").is_ok());
        assert!(g.may_join("chat:a/b").is_ok());
        assert!(g.may_join("lobby").is_ok());
        assert_eq!(
            g.may_join("admin").err().map(|f| f.reason),
            Some("not allowed to join")
        );
        let open = Grants {
            join: None,
            ..g.clone()
        };
        assert!(open.may_join("admin").is_ok());
        assert!(open.may_join("user:bob").is_err());
        assert!(compile(&["[".into()]).is_err());
    }
}
