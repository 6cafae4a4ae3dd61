//! The slot map of a Redis Cluster: which master owns the hash slot of a channel (CRC16 of
//! the channel, or of its `{hash tag}`, mod 16384), read from `CLUSTER SLOTS`.

use std::collections::BTreeSet;

/// Number of hash slots of a Redis Cluster.
pub(super) const SLOTS: u16 = 16_384;

/// The hash slot of `key` (a channel name), as Redis computes it.
pub(super) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(bytes);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % SLOTS
}

/// A master's address, `host:port`.
pub(super) type Addr = String;

/// Slot ranges and their masters, sorted by the first slot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct SlotMap {
    ranges: Vec<(u16, u16, Addr)>,
}

impl SlotMap {
    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, ...], replicas...], ...]`.
    /// A master announced without a host (`""` or `?`) is reached at `fallback_host`, the
    /// host the reply came from.
    pub(super) fn parse(reply: &redis::Value, fallback_host: &str) -> Result<SlotMap, String> {
        let redis::Value::Array(entries) = reply else {
            return Err(format!("CLUSTER SLOTS: unexpected reply {reply:?}"));
        };
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let redis::Value::Array(fields) = entry else {
                return Err("CLUSTER SLOTS: an entry is not an array".into());
            };
            let (Some(start), Some(end), Some(redis::Value::Array(master))) = (
                fields.first().and_then(int),
                fields.get(1).and_then(int),
                fields.get(2),
            ) else {
                return Err("CLUSTER SLOTS: an entry lacks its range or master".into());
            };
            let host = master.first().and_then(text).unwrap_or_default();
            let host = if host.is_empty() || host == "?" {
                fallback_host.to_owned()
            } else {
                host
            };
            let Some(port) = master.get(1).and_then(int) else {
                return Err("CLUSTER SLOTS: a master lacks its port".into());
            };
            let (Ok(start), Ok(end)) = (u16::try_from(start), u16::try_from(end)) else {
                return Err("CLUSTER SLOTS: a slot is out of range".into());
            };
            ranges.push((start, end, format!("{host}:{port}")));
        }
        ranges.sort();
        Ok(SlotMap { ranges })
    }

    /// The master owning `slot`, if any does.
    pub(super) fn owner(&self, slot: u16) -> Option<&str> {
        let i = self.ranges.partition_point(|(start, _, _)| *start <= slot);
        let (start, end, addr) = self.ranges.get(i.checked_sub(1)?)?;
        (*start <= slot && slot <= *end).then_some(addr.as_str())
    }

    /// The master owning the slot of `channel`.
    pub(super) fn owner_of(&self, channel: &str) -> Option<&str> {
        self.owner(slot(channel))
    }

    /// Every master, sorted.
    pub(super) fn masters(&self) -> Vec<Addr> {
        let set: BTreeSet<&str> = self.ranges.iter().map(|(_, _, a)| a.as_str()).collect();
        set.into_iter().map(str::to_owned).collect()
    }

    /// True when every slot has an owner.
    pub(super) fn covers_all(&self) -> bool {
        let mut next = 0u32;
        for (start, end, _) in &self.ranges {
            if u32::from(*start) > next {
                return false;
            }
            next = next.max(u32::from(*end) + 1);
        }
        next >= u32::from(SLOTS)
    }
}

fn int(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(n) => Some(*n),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `seed_url` (`redis[s]://[user:password@]host:port[/...]`) pointed at `addr` instead, with
/// the same scheme and credentials.
pub(super) fn node_url(seed_url: &str, addr: &str) -> String {
    let (scheme, rest) = seed_url.split_once("://").unwrap_or(("redis", seed_url));
    let userinfo = rest.rfind('@').map(|at| &rest[..=at]).unwrap_or_default();
    format!("{scheme}://{userinfo}{addr}")
}

/// The host of `addr` (`host:port`).
pub(super) fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value as V;

    fn b(s: &str) -> V {
        V::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("a{}b"), slot("a{}b"));
        assert_eq!(slot(""), 0);
        assert_eq!(slot("socket.io#/#"), slot("socket.io#/#"));
    }

    #[test]
    fn cluster_slots_reply_parses() {
        let reply = V::Array(vec![
            V::Array(vec![
                V::Int(5461),
                V::Int(10922),
                V::Array(vec![b("127.0.0.1"), V::Int(7001), b("id2")]),
            ]),
            V::Array(vec![
                V::Int(0),
                V::Int(5460),
                V::Array(vec![b(""), V::Int(7000), b("id1")]),
                V::Array(vec![b("127.0.0.1"), V::Int(7004)]),
            ]),
            V::Array(vec![
                V::Int(10923),
                V::Int(16383),
                V::Array(vec![b("127.0.0.1"), V::Int(7002)]),
            ]),
        ]);
        let m = SlotMap::parse(&reply, "10.0.0.9").expect("valid");
        assert_eq!(m.owner(0), Some("10.0.0.9:7000"));
        assert_eq!(m.owner(5461), Some("127.0.0.1:7001"));
        assert_eq!(m.owner(16383), Some("127.0.0.1:7002"));
        assert!(m.covers_all());
        assert_eq!(m.masters().len(), 3);
        let partial = SlotMap::parse(
            &V::Array(vec![V::Array(vec![
                V::Int(1),
                V::Int(2),
                V::Array(vec![b("h"), V::Int(1)]),
            ])]),
            "x",
        )
        .expect("valid");
        assert_eq!(partial.owner(0), None);
        assert!(!partial.covers_all());
        assert!(SlotMap::parse(&V::Int(1), "x").is_err());
    }

    #[test]
    fn node_urls_keep_scheme_and_credentials() {
        assert_eq!(
            node_url("rediss://u:p@seed:7000", "10.0.0.2:7001"),
            "rediss://u:p@10.0.0.2:7001"
        );
        assert_eq!(node_url("redis://seed:7000", "h:1"), "redis://h:1");
        assert_eq!(host_of("127.0.0.1:7000"), "127.0.0.1");
    }
}

/// The `host:port` of a Redis URL (default port 6379).
pub(super) fn addr_of(url: &str) -> Addr {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_owned()
    } else {
        format!("{hostport}:6379")
    }
}

#[cfg(test)]
mod addr_tests {
    #[test]
    fn addresses_come_out_of_urls() {
        assert_eq!(super::addr_of("rediss://u:p@h:7000/0"), "h:7000");
        assert_eq!(super::addr_of("redis://h"), "h:6379");
    }
}
