//! Who may open a session: the session cap (for the whole life of every session, on both
//! transports), the per-address cap, the per-address handshake rate, the application's own
//! admission callback ([`AllowRequest`]), and the client address itself (`X-Forwarded-For`,
//! believed only from trusted proxies).

use crate::error::HttpError;
use crate::socket::RequestInfo;
use ipnet::IpNet;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

type AllowFn = dyn Fn(&RequestInfo) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync;

/// The application's say on each handshake (Node's `allowRequest`): called, after the built-in
/// limits let the handshake through, with the request that opens the session, on both
/// transports; `false` refuses it with HTTP 403 (code 4, `Forbidden`). Requests of an existing
/// session never reach it. It may take its time (look a token up, wait): the handshake waits.
#[derive(Clone)]
pub struct AllowRequest(Arc<AllowFn>);

impl AllowRequest {
    /// Wraps `decide`, which reads what it needs from the request and returns the future
    /// deciding.
    pub fn new<F, Fut>(decide: F) -> Self
    where
        F: Fn(&RequestInfo) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        Self(Arc::new(move |req| Box::pin(decide(req))))
    }

    /// Asks whether `req` may open a session.
    pub async fn allows(&self, req: &RequestInfo) -> bool {
        (self.0)(req).await
    }
}

impl std::fmt::Debug for AllowRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AllowRequest(..)")
    }
}

/// A token bucket: `per_second` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained rate.
    pub per_second: f64,
    /// Largest burst.
    pub burst: u32,
}

/// One token bucket's state.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            at: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, limit: RateLimit, now: Instant) -> bool {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True when the bucket has refilled completely (its entry may be forgotten).
    pub fn is_full(&mut self, limit: RateLimit, now: Instant) -> bool {
        self.refill(limit, now);
        self.tokens >= f64::from(limit.burst)
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        self.at = now;
    }
}

/// Admission limits; see the fields of [`crate::EngineConfig`] that feed them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Limits {
    pub(crate) max_sessions: usize,
    pub(crate) max_sessions_per_ip: Option<usize>,
    pub(crate) handshake_rate_per_ip: Option<RateLimit>,
}

/// Address tables are swept of idle entries once they hold this many.
const SWEEP_AT: usize = 4096;

/// Session counters and per-address state shared by every handshake.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    limits: Limits,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Held by a session for its whole life; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.total.fetch_sub(1, Ordering::AcqRel);
        if let (Some(ip), Some(_)) = (self.ip, self.admission.limits.max_sessions_per_ip) {
            let mut map = self.admission.per_ip.lock();
            if let Some(n) = map.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            ..Self::default()
        })
    }

    /// Sessions holding a permit.
    pub(crate) fn admitted(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Admits a new session from `ip`, or says which limit refuses it.
    pub(crate) fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Permit, HttpError> {
        let limits = &self.limits;
        if let (Some(rate), Some(ip)) = (limits.handshake_rate_per_ip, ip) {
            let now = Instant::now();
            let mut buckets = self.buckets.lock();
            if buckets.len() >= SWEEP_AT {
                buckets.retain(|_, b| !b.is_full(rate, now));
            }
            let bucket = buckets.entry(ip).or_insert_with(|| Bucket::full(rate, now));
            if !bucket.take(rate, now) {
                return Err(HttpError::HandshakeRateLimited);
            }
        }
        let admitted = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limits.max_sessions).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err(HttpError::AtCapacity);
        }
        // From here on the permit owns the slot: an early return gives it back.
        let mut permit = Permit {
            admission: self.clone(),
            ip: None,
        };
        let (Some(max), Some(ip)) = (limits.max_sessions_per_ip, ip) else {
            return Ok(permit);
        };
        let mut map = self.per_ip.lock();
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return Err(HttpError::TooManySessionsFromAddress);
        }
        *n += 1;
        drop(map);
        permit.ip = Some(ip);
        Ok(permit)
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the nearest address
/// in `X-Forwarded-For` that is not itself a trusted proxy.
pub(crate) fn client_addr(
    peer: Option<SocketAddr>,
    headers: &http::HeaderMap,
    trusted: &[IpNet],
) -> Option<SocketAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    let mut client = peer.ip().to_canonical();
    if !is_trusted(client) {
        return Some(peer);
    }
    // Hops are appended left to right, so the nearest one is the last.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    Some(SocketAddr::new(client, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_ip: Option<usize>, rate: Option<RateLimit>) -> Arc<Admission> {
        Admission::new(Limits {
            max_sessions: max,
            max_sessions_per_ip: per_ip,
            handshake_rate_per_ip: rate,
        })
    }

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn the_cap_holds_until_a_permit_is_dropped() {
        let a = limits(2, None, None);
        let p1 = a.admit(ip("10.0.0.1")).expect("first");
        let _p2 = a.admit(ip("10.0.0.2")).expect("second");
        assert_eq!(a.admit(ip("10.0.0.3")).err(), Some(HttpError::AtCapacity));
        drop(p1);
        assert!(a.admit(ip("10.0.0.3")).is_ok());
    }

    #[test]
    fn per_address_cap_frees_its_global_slot_when_refused() {
        let a = limits(10, Some(1), None);
        let _p = a.admit(ip("10.0.0.1")).expect("first");
        assert_eq!(
            a.admit(ip("10.0.0.1")).err(),
            Some(HttpError::TooManySessionsFromAddress)
        );
        assert_eq!(a.admitted(), 1, "a refusal keeps no slot");
        assert!(a.admit(ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn handshake_rate_is_per_address() {
        let rate = RateLimit {
            per_second: 0.001,
            burst: 2,
        };
        let a = limits(100, None, Some(rate));
        let _k: Vec<_> = (0..2)
            .map(|_| a.admit(ip("10.0.0.1")).expect("burst"))
            .collect();
        assert_eq!(
            a.admit(ip("10.0.0.1")).err(),
            Some(HttpError::HandshakeRateLimited)
        );
        assert!(a.admit(ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().expect("net")];
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 127.0.0.5".parse().expect("value"),
        );
        let proxy: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let stranger: SocketAddr = "198.51.100.1:5000".parse().expect("addr");
        // The rightmost untrusted hop is the client; the spoofable left part is ignored.
        assert_eq!(
            client_addr(Some(proxy), &h, &trusted).map(|a| a.ip()),
            ip("203.0.113.9")
        );
        assert_eq!(client_addr(Some(stranger), &h, &trusted), Some(stranger));
        assert_eq!(client_addr(Some(proxy), &h, &[]), Some(proxy));
        assert_eq!(
            client_addr(Some(proxy), &http::HeaderMap::new(), &trusted).map(|a| a.ip()),
            Some(proxy.ip())
        );
    }
}
