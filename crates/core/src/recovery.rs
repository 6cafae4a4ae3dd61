//! Connection state recovery: what a disconnected socket leaves behind, how a reconnecting
//! client takes it back, and the in-memory store the [`InMemoryAdapter`] keeps it in.
//!
//! The model is Node's (socket.io 4.6): every recoverable packet (an EVENT sent with no
//! acknowledgement and not volatile) is given an offset, appended as its last argument, and
//! kept for `max_disconnection_duration`; a socket that loses its connection for a
//! recoverable reason leaves its session (id, private id, rooms, data). A client that comes
//! back with `auth.pid` and `auth.offset` gets the session and the packets after its offset
//! that were addressed to its rooms. Adapters hold both: this file's [`MemoryStore`] for one
//! node, the Redis adapter for a cluster.
//!
//! [`InMemoryAdapter`]: crate::InMemoryAdapter

use crate::adapter::{BroadcastOptions, EventPacket};
use crate::config::ConnectionStateRecovery;
use crate::error::DisconnectReason;
use crate::metrics::SocketIoMetrics;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a disconnected socket leaves for its client to take back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// The public socket id, given back to the recovered socket.
    pub sid: String,
    /// The private session id the client presents (`auth.pid`); never shown to others.
    pub pid: String,
    /// The rooms it was in, its own id room included.
    pub rooms: Vec<String>,
    /// `socket.data`.
    pub data: Value,
    /// When it disconnected, in milliseconds since the Unix epoch; 0 in a snapshot of a
    /// connected socket (its store's expiry then bounds its age).
    pub disconnected_at: u64,
}

impl SessionState {
    /// True when a packet sent with `opts` was addressed to this session's socket: to every
    /// socket, or to one of its rooms, and not to a room it is excluded by.
    pub fn is_addressed(&self, opts: &BroadcastOptions) -> bool {
        let member = |room: &crate::Room| self.rooms.iter().any(|r| r == room.as_str());
        (opts.rooms.is_empty() || opts.rooms.iter().any(member)) && !opts.except.iter().any(member)
    }

    /// True when the session is older than `window`, measured at `now_ms`.
    pub fn is_expired(&self, window: Duration, now_ms: u64) -> bool {
        self.disconnected_at != 0
            && self
                .disconnected_at
                .saturating_add(window.as_millis() as u64)
                < now_ms
    }
}

/// A session taken back, with the packets its socket missed in the order they were sent
/// (each still carrying its offset as its last argument).
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredSession {
    /// The session.
    pub session: SessionState,
    /// The packets to replay.
    pub missed: Vec<EventPacket>,
}

/// Why a reconnecting client got a fresh session instead of its old one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryFailure {
    /// No session with that private id (never issued, already taken back, or dropped).
    #[error("unknown session")]
    UnknownSession,
    /// The session is older than the recovery window.
    #[error("session expired")]
    Expired,
    /// The client's offset is no longer kept (or never was), so some packets would be lost.
    #[error("offset not found")]
    UnknownOffset,
    /// The stored session is not one this server can restore (e.g. a malformed id).
    #[error("invalid stored session")]
    InvalidSession,
    /// The missed packets are more than the connection's queue may take at once (over half
    /// of `max_queue_bytes`); the client gets a fresh session instead of a slow-consumer
    /// disconnect.
    #[error("too many missed packets to replay")]
    TooManyMissed,
    /// The adapter does not keep sessions.
    #[error("the adapter cannot recover sessions")]
    Unsupported,
    /// The store (e.g. Redis) could not be read; the client gets a fresh session.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

impl RecoveryFailure {
    /// A metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::UnknownSession => "unknown_session",
            Self::Expired => "expired",
            Self::UnknownOffset => "unknown_offset",
            Self::InvalidSession => "invalid_session",
            Self::TooManyMissed => "too_many_missed",
            Self::Unsupported => "unsupported",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// True for the disconnect reasons after which Node keeps the session: the connection was
/// lost or closed under the client, not a namespace disconnect either side asked for.
pub(crate) fn is_recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportError
            | DisconnectReason::TransportClose
            | DisconnectReason::ForcedClose
            | DisconnectReason::PingTimeout
            | DisconnectReason::ServerShutdown
            | DisconnectReason::ForcedServerClose
    )
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The size a packet is counted for: its JSON text plus its attachments.
pub fn packet_size(packet: &EventPacket) -> usize {
    let text: usize = packet
        .data
        .iter()
        .map(|v| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0))
        .sum();
    text + packet.attachments.iter().map(|a| a.len()).sum::<usize>()
}

struct Kept {
    seq: u64,
    emitted_at: u64,
    size: usize,
    opts: BroadcastOptions,
    packet: EventPacket,
}

#[derive(Default)]
struct StoreState {
    next: u64,
    packets: VecDeque<Kept>,
    bytes: usize,
    sessions: HashMap<String, SessionState>,
    /// Private ids in the order their sessions were kept, to drop the oldest first.
    order: VecDeque<String>,
}

/// One namespace's recoverable packets and disconnected sessions, in this process: bounded
/// by age, count and bytes, and reported in the `socketio_recovery_*` metrics.
pub(crate) struct MemoryStore {
    config: ConnectionStateRecovery,
    metrics: Arc<SocketIoMetrics>,
    state: Mutex<StoreState>,
}

impl MemoryStore {
    pub(crate) fn new(config: ConnectionStateRecovery, metrics: Arc<SocketIoMetrics>) -> Self {
        // Offsets start from the clock, so an offset from an earlier run of the process never
        // names a packet of this one.
        let state = StoreState {
            next: now_ms().saturating_mul(1000),
            ..StoreState::default()
        };
        Self {
            config,
            metrics,
            state: Mutex::new(state),
        }
    }

    fn window_ms(&self) -> u64 {
        self.config.max_disconnection_duration.as_millis() as u64
    }

    /// Keeps `packet` and returns its offset.
    pub(crate) fn record(&self, packet: &EventPacket, opts: &BroadcastOptions) -> String {
        let now = now_ms();
        let mut st = self.state.lock();
        let seq = st.next;
        st.next += 1;
        let offset = seq.to_string();
        // Kept as it goes out: the offset is its last argument on replay too.
        let mut packet = packet.clone();
        packet.data.push(Value::String(offset.clone()));
        let size = packet_size(&packet);
        st.packets.push_back(Kept {
            seq,
            emitted_at: now,
            size,
            opts: BroadcastOptions {
                rooms: opts.rooms.clone(),
                except: opts.except.clone(),
                flags: Default::default(),
            },
            packet,
        });
        st.bytes += size;
        self.metrics.recovery_packets.inc();
        self.metrics.recovery_bytes.inc_by(size as i64);
        self.trim_packets(&mut st, now);
        offset
    }

    fn trim_packets(&self, st: &mut StoreState, now: u64) {
        let window = self.window_ms();
        while let Some(front) = st.packets.front() {
            let kind = if front.emitted_at.saturating_add(window) < now {
                "packet_age"
            } else if st.packets.len() > self.config.max_packets {
                "packet_count"
            } else if st.bytes > self.config.max_packet_bytes {
                "packet_bytes"
            } else {
                break;
            };
            if let Some(old) = st.packets.pop_front() {
                st.bytes -= old.size;
                self.metrics.recovery_packets.dec();
                self.metrics.recovery_bytes.dec_by(old.size as i64);
                self.metrics
                    .recovery_evictions
                    .get_or_create(&[("kind", kind)])
                    .inc();
            }
        }
    }

    fn trim_sessions(&self, st: &mut StoreState, now: u64) {
        let window = self.config.max_disconnection_duration;
        while let Some(pid) = st.order.front() {
            let kind = match st.sessions.get(pid) {
                // Already taken back: only the order entry is left.
                None => None,
                Some(s) if s.is_expired(window, now) => Some("session_age"),
                Some(_) if st.sessions.len() > self.config.max_sessions => Some("session_count"),
                Some(_) => break,
            };
            if let Some(pid) = st.order.pop_front() {
                if let Some(kind) = kind {
                    st.sessions.remove(&pid);
                    self.metrics.recovery_sessions.dec();
                    self.metrics
                        .recovery_evictions
                        .get_or_create(&[("kind", kind)])
                        .inc();
                }
            }
        }
    }

    /// Keeps a disconnected socket's session.
    pub(crate) fn persist(&self, session: SessionState) {
        let now = now_ms();
        let mut st = self.state.lock();
        st.order.push_back(session.pid.clone());
        if st.sessions.insert(session.pid.clone(), session).is_none() {
            self.metrics.recovery_sessions.inc();
        }
        self.trim_sessions(&mut st, now);
        self.trim_packets(&mut st, now);
    }

    /// Takes back session `pid` and the packets after `offset` addressed to it.
    pub(crate) fn restore(
        &self,
        pid: &str,
        offset: &str,
    ) -> Result<RecoveredSession, RecoveryFailure> {
        let now = now_ms();
        let mut st = self.state.lock();
        let session = st.sessions.remove(pid);
        if session.is_some() {
            self.metrics.recovery_sessions.dec();
        }
        self.trim_sessions(&mut st, now);
        self.trim_packets(&mut st, now);
        let session = session.ok_or(RecoveryFailure::UnknownSession)?;
        if session.is_expired(self.config.max_disconnection_duration, now) {
            return Err(RecoveryFailure::Expired);
        }
        let seq: u64 = offset.parse().map_err(|_| RecoveryFailure::UnknownOffset)?;
        let at = st
            .packets
            .binary_search_by_key(&seq, |k| k.seq)
            .map_err(|_| RecoveryFailure::UnknownOffset)?;
        let missed = st
            .packets
            .range(at + 1..)
            .filter(|k| session.is_addressed(&k.opts))
            .map(|k| k.packet.clone())
            .collect();
        Ok(RecoveredSession { session, missed })
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        self.metrics
            .recovery_sessions
            .dec_by(st.sessions.len() as i64);
        self.metrics
            .recovery_packets
            .dec_by(st.packets.len() as i64);
        self.metrics.recovery_bytes.dec_by(st.bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(config: ConnectionStateRecovery) -> MemoryStore {
        MemoryStore::new(config, Arc::new(SocketIoMetrics::default()))
    }

    fn packet(n: u64) -> EventPacket {
        EventPacket {
            data: vec![json!("ev"), json!(n)],
            attachments: vec![],
        }
    }

    fn to(rooms: &[&str], except: &[&str]) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms.iter().map(|r| crate::Room::from(*r)).collect(),
            except: except.iter().map(|r| crate::Room::from(*r)).collect(),
            flags: Default::default(),
        }
    }

    fn session(pid: &str, rooms: &[&str]) -> SessionState {
        SessionState {
            sid: "s".repeat(20),
            pid: pid.into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            data: json!({}),
            disconnected_at: now_ms(),
        }
    }

    #[test]
    fn replays_what_the_rooms_missed_in_order() {
        let s = store(ConnectionStateRecovery::default());
        let first = s.record(&packet(0), &to(&[], &[]));
        s.record(&packet(1), &to(&["a"], &[]));
        s.record(&packet(2), &to(&["b"], &[]));
        s.record(&packet(3), &to(&[], &["a"]));
        s.record(&packet(4), &to(&[], &[]));
        s.persist(session("p1", &["a"]));
        let r = s.restore("p1", &first).expect("recovered");
        let ns: Vec<_> = r.missed.iter().map(|p| p.data[1].clone()).collect();
        assert_eq!(ns, vec![json!(1), json!(4)]);
        assert_eq!(
            s.restore("p1", &first).err(),
            Some(RecoveryFailure::UnknownSession),
            "a session is taken back once"
        );
    }

    #[test]
    fn an_evicted_offset_fails_and_bounds_hold() {
        let s = store(ConnectionStateRecovery {
            max_packets: 3,
            max_sessions: 2,
            ..Default::default()
        });
        let first = s.record(&packet(0), &to(&[], &[]));
        for n in 1..10 {
            s.record(&packet(n), &to(&[], &[]));
        }
        assert_eq!(s.metrics.recovery_packets.get(), 3);
        for pid in ["p1", "p2", "p3"] {
            s.persist(session(pid, &[]));
        }
        assert_eq!(s.metrics.recovery_sessions.get(), 2);
        assert_eq!(
            s.restore("p1", "x").err(),
            Some(RecoveryFailure::UnknownSession)
        );
        assert_eq!(
            s.restore("p2", &first).err(),
            Some(RecoveryFailure::UnknownOffset)
        );
        assert_eq!(
            s.restore("p3", "not a number").err(),
            Some(RecoveryFailure::UnknownOffset)
        );
    }

    #[test]
    fn an_old_session_is_expired() {
        let s = store(ConnectionStateRecovery {
            max_disconnection_duration: Duration::from_millis(10),
            ..Default::default()
        });
        let first = s.record(&packet(0), &to(&[], &[]));
        let mut old = session("p1", &[]);
        old.disconnected_at -= 1000;
        s.persist(old.clone());
        // The sweep on persist already dropped it.
        assert_eq!(
            s.restore("p1", &first).err(),
            Some(RecoveryFailure::UnknownSession)
        );
        assert!(old.is_expired(Duration::from_millis(10), now_ms()));
    }
}
