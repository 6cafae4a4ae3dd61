//! What a worker counts: delivery counters, loss/duplicate/reorder tracking per publisher, and
//! the latency histogram (HDR, microseconds), in a form that workers send to the coordinator
//! and the coordinator merges.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Highest latency the histogram holds (60 s in µs); larger values are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A new latency histogram: 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|_| {
        // The bounds above are constants that hdrhistogram accepts.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// Encodes a histogram for the worker → coordinator line (V2 format, base64).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    if V2Serializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes what [`encode_histogram`] produced.
pub fn decode_histogram(s: &str) -> Result<Histogram<u64>, String> {
    if s.is_empty() {
        return Ok(new_histogram());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("worker histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("worker histogram does not decode: {e:?}"))
}

/// Counters one worker reports; the coordinator adds them up.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Counts {
    /// Connections that completed the Socket.IO connect (and their joins).
    pub connected: u64,
    /// Connections that failed during setup.
    pub connect_failed: u64,
    /// Connections closed by the server while the scenario ran.
    pub disconnected: u64,
    /// `publish` requests sent.
    pub sent: u64,
    /// `publish` acks with `ok: true`.
    pub acked: u64,
    /// `publish` acks with `ok: false`.
    pub publish_errors: u64,
    /// Deliveries the sent messages should have caused.
    pub expected: u64,
    /// Deliveries received, duplicates included.
    pub received: u64,
    /// Distinct deliveries received.
    pub unique: u64,
    /// Deliveries received more than once.
    pub duplicated: u64,
    /// Deliveries that arrived after a later message of the same publisher.
    pub reordered: u64,
    /// Full handshakes completed (storm).
    pub handshakes: u64,
    /// Handshakes that failed (storm).
    pub handshake_failed: u64,
}

impl Counts {
    /// Adds `other` field by field.
    pub fn add(&mut self, o: &Counts) {
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.disconnected += o.disconnected;
        self.sent += o.sent;
        self.acked += o.acked;
        self.publish_errors += o.publish_errors;
        self.expected += o.expected;
        self.received += o.received;
        self.unique += o.unique;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.handshakes += o.handshakes;
        self.handshake_failed += o.handshake_failed;
    }

    /// Expected deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.unique)
    }
}

/// The counters shared by a worker's connection tasks.
#[derive(Default)]
pub struct WorkerCounters {
    /// See [`Counts`] for each field.
    pub connected: AtomicU64,
    #[allow(missing_docs)]
    pub connect_failed: AtomicU64,
    #[allow(missing_docs)]
    pub disconnected: AtomicU64,
    #[allow(missing_docs)]
    pub sent: AtomicU64,
    #[allow(missing_docs)]
    pub acked: AtomicU64,
    #[allow(missing_docs)]
    pub publish_errors: AtomicU64,
    #[allow(missing_docs)]
    pub expected: AtomicU64,
    #[allow(missing_docs)]
    pub received: AtomicU64,
    #[allow(missing_docs)]
    pub unique: AtomicU64,
    #[allow(missing_docs)]
    pub duplicated: AtomicU64,
    #[allow(missing_docs)]
    pub reordered: AtomicU64,
    #[allow(missing_docs)]
    pub handshakes: AtomicU64,
    #[allow(missing_docs)]
    pub handshake_failed: AtomicU64,
    hist: Mutex<Option<Histogram<u64>>>,
}

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl WorkerCounters {
    /// Records one latency in µs.
    pub fn record(&self, us: u64) {
        if let Ok(mut h) = self.hist.lock() {
            let h = h.get_or_insert_with(new_histogram);
            h.saturating_record(us.clamp(1, MAX_LATENCY_US));
        }
    }

    /// A copy of the histogram so far.
    pub fn histogram(&self) -> Histogram<u64> {
        self.hist
            .lock()
            .ok()
            .and_then(|h| h.clone())
            .unwrap_or_else(new_histogram)
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            connected: g(&self.connected),
            connect_failed: g(&self.connect_failed),
            disconnected: g(&self.disconnected),
            sent: g(&self.sent),
            acked: g(&self.acked),
            publish_errors: g(&self.publish_errors),
            expected: g(&self.expected),
            received: g(&self.received),
            unique: g(&self.unique),
            duplicated: g(&self.duplicated),
            reordered: g(&self.reordered),
            handshakes: g(&self.handshakes),
            handshake_failed: g(&self.handshake_failed),
        }
    }
}

/// What one delivery was, relative to the earlier ones from the same publisher.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// First time, in order.
    InOrder,
    /// First time, but after a higher sequence number.
    Reordered,
    /// Seen before.
    Duplicate,
}

/// Sequence numbers one connection received from one publisher (a bitset).
#[derive(Debug, Default)]
pub struct Track {
    seen: Vec<u64>,
    max: Option<u64>,
}

/// Per-connection tracking across publishers (few per room, so a small list).
#[derive(Debug, Default)]
pub struct Tracks(Vec<(u64, Track)>);

/// Sequence numbers above this are refused (a bitset of 2^26 bits is 8 MiB).
const MAX_SEQ: u64 = 1 << 26;

impl Track {
    /// Notes `seq`; `None` when it is beyond what a run can send.
    pub fn arrive(&mut self, seq: u64) -> Option<Arrival> {
        if seq >= MAX_SEQ {
            return None;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            return Some(Arrival::Duplicate);
        }
        self.seen[word] |= 1 << bit;
        let late = self.max.is_some_and(|m| seq < m);
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
        Some(if late {
            Arrival::Reordered
        } else {
            Arrival::InOrder
        })
    }
}

impl Tracks {
    /// Notes delivery `seq` from publisher `publisher`.
    pub fn arrive(&mut self, publisher: u64, seq: u64) -> Option<Arrival> {
        if let Some((_, t)) = self.0.iter_mut().find(|(p, _)| *p == publisher) {
            return t.arrive(seq);
        }
        let mut t = Track::default();
        let a = t.arrive(seq);
        self.0.push((publisher, t));
        a
    }
}

/// Latency percentiles in µs, for the JSON line.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    #[allow(missing_docs)]
    pub p50: u64,
    #[allow(missing_docs)]
    pub p90: u64,
    #[allow(missing_docs)]
    pub p99: u64,
    #[allow(missing_docs)]
    pub p999: u64,
    #[allow(missing_docs)]
    pub max: u64,
    #[allow(missing_docs)]
    pub mean: f64,
}

impl Latency {
    /// Reads the percentiles off a histogram.
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_order_duplicates_and_reorders() {
        let mut t = Tracks::default();
        assert_eq!(t.arrive(1, 0), Some(Arrival::InOrder));
        assert_eq!(t.arrive(1, 2), Some(Arrival::InOrder));
        assert_eq!(t.arrive(1, 1), Some(Arrival::Reordered));
        assert_eq!(t.arrive(1, 2), Some(Arrival::Duplicate));
        assert_eq!(t.arrive(2, 0), Some(Arrival::InOrder));
        assert_eq!(t.arrive(2, MAX_SEQ), None);
    }

    #[test]
    fn histograms_survive_the_worker_line() {
        let mut h = new_histogram();
        for v in [10, 200, 3000, 40_000] {
            h.record(v).expect("in range");
        }
        let back = decode_histogram(&encode_histogram(&h)).expect("decodes");
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), h.max());
        assert!(decode_histogram("!!").is_err());
    }
}
