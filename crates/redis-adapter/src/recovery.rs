//! Connection state recovery across nodes: one namespace's recoverable packets and sessions,
//! kept in Redis so that a client whose node died takes its session back on another node.
//!
//! - Packets: a stream per namespace, `<key>-recovery#<nsp>#packets`, bounded with
//!   `XADD ... MAXLEN ~ max_packets`. The node that sends a recoverable packet appends it
//!   (queued behind its publishes, never waited for) with its offset, `<ms>:<seq>:<node>`:
//!   unique in the cluster, and its time lets a restore read the stream from there on only.
//! - Sessions: `<key>-recovery#<nsp>#session#<pid>`, a JSON [`SessionState`] with a TTL of the
//!   recovery window. A connected socket's snapshot is written once it is connected and
//!   after each change of its rooms or data, and its TTL refreshed every third of the window,
//!   so it outlives a SIGKILL of its node by one window; a disconnect rewrites it with the
//!   time of the disconnect. A restore takes it with `GETDEL`, so it is taken back once.
//!
//! Needs one Redis server (any mode but Redis Cluster, where the keys would live on other
//! shards than the connection the commands go to).

use crate::bus::Bus;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use switchboard::{
    BroadcastOptions, ConnectionStateRecovery, EventPacket, RecoveredSession, RecoveryFailure,
    Room, SessionState,
};

/// How far before an offset's own time a restore starts reading the stream: the clocks of
/// the node that wrote it and of Redis may disagree by this much.
const CLOCK_SKEW_MS: u64 = 10_000;
/// Stream entries read per `XRANGE`.
const PAGE: usize = 500;

pub(crate) struct Recovery {
    config: ConnectionStateRecovery,
    bus: Arc<Bus>,
    stream: String,
    session_prefix: String,
    seq: AtomicU64,
    /// Private ids of this node's connected sockets whose snapshot is kept.
    live: Mutex<HashSet<String>>,
}

impl Recovery {
    /// The recovery store of namespace `nsp`; refreshes its snapshots until dropped.
    pub(crate) fn start(config: ConnectionStateRecovery, bus: Arc<Bus>, nsp: &str) -> Arc<Self> {
        let key = &bus.shared.config.key;
        let me = Arc::new(Self {
            stream: format!("{key}-recovery#{nsp}#packets"),
            session_prefix: format!("{key}-recovery#{nsp}#session#"),
            config,
            bus,
            seq: AtomicU64::new(0),
            live: Mutex::new(HashSet::new()),
        });
        let every = (me.config.max_disconnection_duration / 3).max(Duration::from_secs(1));
        tokio::spawn(refresh(Arc::downgrade(&me), every));
        me
    }

    fn window_ms(&self) -> u64 {
        self.config.max_disconnection_duration.as_millis() as u64
    }

    fn session_key(&self, pid: &str) -> String {
        format!("{}{pid}", self.session_prefix)
    }

    /// Appends `packet` to the stream (with its offset) and returns the offset.
    pub(crate) fn record(&self, packet: &EventPacket, opts: &BroadcastOptions) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let offset = format!("{}:{seq}:{}", switchboard::now_ms(), self.bus.shared.uid);
        let mut data = packet.data.clone();
        data.push(Value::String(offset.clone()));
        let names = |rooms: &[Room]| rooms.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let meta = serde_json::json!({
            "r": names(&opts.rooms),
            "e": names(&opts.except),
            "d": data,
        });
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config.max_packets)
            .arg("*")
            .arg("o")
            .arg(&offset)
            .arg("m")
            .arg(meta.to_string());
        for a in &packet.attachments {
            cmd.arg("a").arg(a.as_ref());
        }
        self.bus.write(cmd);
        offset
    }

    fn set(&self, session: &SessionState) {
        let Ok(json) = serde_json::to_string(session) else {
            return;
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.session_key(&session.pid))
            .arg(json)
            .arg("PX")
            .arg(self.window_ms().max(1));
        self.bus.write(cmd);
    }

    /// A connected socket's snapshot.
    pub(crate) fn keep(&self, session: SessionState) {
        if let Ok(mut live) = self.live.lock() {
            live.insert(session.pid.clone());
        }
        self.set(&session);
    }

    /// A disconnected socket's session.
    pub(crate) fn persist(&self, session: SessionState) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(&session.pid);
        }
        self.set(&session);
    }

    /// A socket that left for good.
    pub(crate) fn forget(&self, pid: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(pid);
        }
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.session_key(pid));
        self.bus.write(cmd);
    }

    /// Takes back session `pid` and the stream's packets after `offset` addressed to it.
    pub(crate) fn restore(
        self: &Arc<Self>,
        pid: String,
        offset: String,
    ) -> BoxFuture<'static, Result<RecoveredSession, RecoveryFailure>> {
        let me = self.clone();
        Box::pin(async move { me.restore_now(&pid, &offset).await })
    }

    async fn restore_now(
        &self,
        pid: &str,
        offset: &str,
    ) -> Result<RecoveredSession, RecoveryFailure> {
        let unavailable = |e: String| RecoveryFailure::Unavailable(e);
        let mut cmd = redis::cmd("GETDEL");
        cmd.arg(self.session_key(pid));
        let session = match self.bus.query(cmd).await.map_err(unavailable)? {
            redis::Value::Nil => return Err(RecoveryFailure::UnknownSession),
            redis::Value::BulkString(b) => serde_json::from_slice::<SessionState>(&b)
                .map_err(|_| RecoveryFailure::InvalidSession)?,
            _ => return Err(RecoveryFailure::InvalidSession),
        };
        if session.pid != pid {
            return Err(RecoveryFailure::InvalidSession);
        }
        if session.is_expired(
            self.config.max_disconnection_duration,
            switchboard::now_ms(),
        ) {
            return Err(RecoveryFailure::Expired);
        }
        // The offset names its time: read from a little before it.
        let ms: u64 = offset
            .split(':')
            .next()
            .and_then(|m| m.parse().ok())
            .ok_or(RecoveryFailure::UnknownOffset)?;
        let mut start = format!("{}-0", ms.saturating_sub(CLOCK_SKEW_MS));
        let mut found = false;
        let mut missed = Vec::new();
        loop {
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(&self.stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(PAGE);
            let page = entries(self.bus.query(cmd).await.map_err(unavailable)?);
            let Some(last) = page.last().map(|e| e.id.clone()) else {
                break;
            };
            let full = page.len() >= PAGE;
            for entry in page {
                if !found {
                    found = entry.offset == offset;
                    continue;
                }
                if session.is_addressed(&entry.opts) {
                    missed.push(entry.packet);
                }
                if missed.len() > self.config.max_packets {
                    // More than a full stream can hold: some were trimmed meanwhile.
                    return Err(RecoveryFailure::UnknownOffset);
                }
            }
            if !full {
                break;
            }
            start = format!("({last}");
        }
        if !found {
            return Err(RecoveryFailure::UnknownOffset);
        }
        Ok(RecoveredSession { session, missed })
    }
}

/// Refreshes the TTL of this node's connected sockets' snapshots every `every`, until the
/// namespace's adapter is gone.
async fn refresh(me: Weak<Recovery>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(me) = me.upgrade() else { return };
        let pids: Vec<String> = match me.live.lock() {
            Ok(live) => live.iter().cloned().collect(),
            Err(_) => return,
        };
        let window = me.window_ms().max(1);
        for pid in pids {
            let mut cmd = redis::cmd("PEXPIRE");
            cmd.arg(me.session_key(&pid)).arg(window);
            me.bus.write(cmd);
        }
    }
}

struct Entry {
    id: String,
    offset: String,
    opts: BroadcastOptions,
    packet: EventPacket,
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The entries of an `XRANGE` reply; malformed ones (not written by this module) skipped.
fn entries(reply: redis::Value) -> Vec<Entry> {
    let redis::Value::Array(items) = reply else {
        return Vec::new();
    };
    items.into_iter().filter_map(entry).collect()
}

fn entry(item: redis::Value) -> Option<Entry> {
    let redis::Value::Array(parts) = item else {
        return None;
    };
    let id = text(parts.first()?)?;
    let pairs: Vec<(redis::Value, redis::Value)> = match parts.into_iter().nth(1)? {
        redis::Value::Array(flat) => {
            let mut it = flat.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            out
        }
        redis::Value::Map(pairs) => pairs,
        _ => return None,
    };
    let (mut offset, mut meta, mut attachments) = (None, None, Vec::new());
    for (k, v) in pairs {
        match text(&k)?.as_str() {
            "o" => offset = text(&v),
            "m" => meta = text(&v),
            "a" => match v {
                redis::Value::BulkString(b) => attachments.push(Bytes::from(b)),
                _ => return None,
            },
            _ => {}
        }
    }
    let meta: Value = serde_json::from_str(&meta?).ok()?;
    let rooms = |k: &str| -> Vec<Room> {
        meta[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str())
                    .map(Room::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let opts = BroadcastOptions {
        rooms: rooms("r"),
        except: rooms("e"),
        flags: Default::default(),
    };
    let data = meta["d"].as_array()?.clone();
    Some(Entry {
        id,
        offset: offset?,
        opts,
        packet: EventPacket { data, attachments },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value as V;

    fn bulk(s: &str) -> V {
        V::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn stream_entries_parse_in_both_reply_shapes_and_bad_ones_are_skipped() {
        let meta = r#"{"r":["room"],"e":["x"],"d":["ev",1,"5:0:n"]}"#;
        let flat = V::Array(vec![
            bulk("1-0"),
            V::Array(vec![
                bulk("o"),
                bulk("5:0:n"),
                bulk("m"),
                bulk(meta),
                bulk("a"),
                V::BulkString(vec![0, 255]),
            ]),
        ]);
        let map = V::Array(vec![
            bulk("2-0"),
            V::Map(vec![(bulk("o"), bulk("6:1:n")), (bulk("m"), bulk(meta))]),
        ]);
        let garbage = V::Array(vec![bulk("3-0"), V::Array(vec![bulk("m"), bulk("{")])]);
        let got = entries(V::Array(vec![flat, garbage, map, V::Nil]));
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].id.as_str(), got[0].offset.as_str()),
            ("1-0", "5:0:n")
        );
        assert_eq!(got[0].opts.rooms, vec![Room::from("room")]);
        assert_eq!(got[0].opts.except, vec![Room::from("x")]);
        assert_eq!(got[0].packet.data[1], serde_json::json!(1));
        assert_eq!(
            got[0].packet.attachments,
            vec![Bytes::from_static(&[0, 255])]
        );
        assert_eq!(got[1].offset, "6:1:n");
        assert!(entries(V::Nil).is_empty());
    }
}
