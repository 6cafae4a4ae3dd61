//! The node's two Redis connections, shared by every namespace: one publishing (pipelined,
//! behind a bounded queue) and one subscribed (RESP3, so plain, pattern and sharded
//! subscriptions share it). Both reconnect with backoff by themselves; the subscription is
//! restored in full after a reconnect, and a liveness probe (a message this node publishes to
//! itself) catches a subscription that is connected but no longer delivers.

use crate::metrics::{LossReason, RedisMetrics};
use crate::RedisAdapterConfig;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo, ProtocolVersion, PushKind};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Largest number of publishes sent in one pipeline.
const MAX_BATCH: usize = 256;
/// How long a node that sent us something counts as "known" when naming silent nodes.
const SEEN_TTL: Duration = Duration::from_secs(60);

/// How a channel is subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SubKind {
    /// `SUBSCRIBE`.
    Channel,
    /// `PSUBSCRIBE`.
    Pattern,
    /// `SSUBSCRIBE` (Redis ≥ 7).
    Shard,
}

/// Receives the messages of the subscriptions it registered.
pub(crate) trait Route: Send + Sync + 'static {
    /// One message, `channel` being the channel it was published on.
    fn on_message(&self, channel: &str, payload: &[u8]);
}

enum PubCmd {
    Publish {
        channel: String,
        payload: Vec<u8>,
        shard: bool,
        /// False for the liveness probe, which is not cluster traffic.
        counted: bool,
    },
    Query {
        cmd: redis::Cmd,
        reply: oneshot::Sender<Result<redis::Value, String>>,
    },
}

enum SubCtl {
    Add(SubKind, String),
    Remove(SubKind, String),
}

/// Channel (or pattern) → its receiver, one map per kind so that a lookup borrows the channel
/// name from the message instead of allocating a key.
type RouteMap = [HashMap<String, Weak<dyn Route>>; 3];

/// Messages from Redis that may wait for the subscriber task; past that the node is not
/// keeping up, and further messages are dropped and counted rather than piling up in memory.
const RECEIVE_QUEUE: usize = 65_536;

/// Where a connection delivers what Redis pushes: messages into a bounded queue, and the
/// disconnection notice as a flag that can never be lost to a full queue.
struct PushSink {
    tx: mpsc::Sender<redis::PushInfo>,
    dead: Arc<tokio::sync::Notify>,
    metrics: Arc<RedisMetrics>,
}

impl PushSink {
    fn new(
        capacity: usize,
        metrics: Arc<RedisMetrics>,
    ) -> (
        Self,
        mpsc::Receiver<redis::PushInfo>,
        Arc<tokio::sync::Notify>,
    ) {
        let (tx, rx) = mpsc::channel(capacity);
        let dead = Arc::new(tokio::sync::Notify::new());
        (
            Self {
                tx,
                dead: dead.clone(),
                metrics,
            },
            rx,
            dead,
        )
    }
}

impl redis::aio::AsyncPushSender for PushSink {
    fn send(&self, info: redis::PushInfo) -> Result<(), redis::aio::SendError> {
        if info.kind == PushKind::Disconnection {
            // notify_one keeps a permit: the waiter sees it even if it is not waiting yet.
            self.dead.notify_one();
            return Ok(());
        }
        match self.tx.try_send(info) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.receive_dropped.inc();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(redis::aio::SendError),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) config: RedisAdapterConfig,
    pub(crate) uid: String,
    pub(crate) metrics: Arc<RedisMetrics>,
    /// RESP3 (Redis ≥ 6) for both connections: it carries subscriptions and the
    /// disconnection notice on the same multiplexed connection type.
    client: redis::Client,
    routes: RwLock<RouteMap>,
    sub_up: AtomicBool,
    pub_up: AtomicBool,
    health: Mutex<Health>,
    seen: Mutex<HashMap<String, Instant>>,
    probe_channel: String,
    /// The URL without its password, for logs.
    safe_url: String,
}

#[derive(Default)]
struct Health {
    ready: bool,
    ever_ready: bool,
    down_since: Option<Instant>,
}

/// Handle on the node's Redis connections; the tasks stop when the last handle is dropped.
pub(crate) struct Bus {
    pub(crate) shared: Arc<Shared>,
    pub_tx: mpsc::Sender<PubCmd>,
    sub_tx: mpsc::UnboundedSender<SubCtl>,
    _stop: DropGuard,
}

impl Bus {
    /// Opens the connections in the background (the node is not ready until they are up).
    /// Must be called inside a tokio runtime.
    pub(crate) fn start(config: RedisAdapterConfig, uid: String) -> Result<Arc<Bus>, String> {
        let info = config.url.as_str().into_connection_info().map_err(|e| {
            format!(
                "invalid Redis URL {:?}: {e}",
                crate::redact_url(&config.url)
            )
        })?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(resp3)).map_err(|e| {
            format!(
                "invalid Redis URL {:?}: {e}",
                crate::redact_url(&config.url)
            )
        })?;
        let probe_channel = format!("{}-probe#{}#", config.key, uid);
        let safe_url = crate::redact_url(&config.url);
        let shared = Arc::new(Shared {
            config,
            uid,
            metrics: Arc::new(RedisMetrics::default()),
            client,
            routes: RwLock::new(Default::default()),
            sub_up: AtomicBool::new(false),
            pub_up: AtomicBool::new(false),
            health: Mutex::new(Health::default()),
            seen: Mutex::new(HashMap::new()),
            probe_channel,
            safe_url,
        });
        let cancel = CancellationToken::new();
        let (pub_tx, pub_rx) = mpsc::channel(shared.config.publish_queue.max(1));
        let (sub_tx, sub_rx) = mpsc::unbounded_channel();
        tokio::spawn(publisher(shared.clone(), pub_rx, cancel.clone()));
        tokio::spawn(subscriber(
            shared.clone(),
            sub_rx,
            pub_tx.clone(),
            cancel.clone(),
        ));
        Ok(Arc::new(Bus {
            shared,
            pub_tx,
            sub_tx,
            _stop: cancel.drop_guard(),
        }))
    }

    /// Queues a publish; never waits. A full queue or a closed bus counts the message lost.
    pub(crate) fn publish(&self, channel: String, payload: Vec<u8>, shard: bool) {
        match self.pub_tx.try_send(PubCmd::Publish {
            channel,
            payload,
            shard,
            counted: true,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.metrics.lost(LossReason::QueueFull, 1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.metrics.lost(LossReason::Disconnected, 1);
            }
        }
    }

    /// Runs one command on the publishing connection, after the publishes queued before it.
    pub(crate) async fn query(&self, cmd: redis::Cmd) -> Result<redis::Value, String> {
        let (reply, rx) = oneshot::channel();
        self.pub_tx
            .send(PubCmd::Query { cmd, reply })
            .await
            .map_err(|_| "the Redis adapter is shut down".to_owned())?;
        rx.await
            .map_err(|_| "the Redis adapter is shut down".to_owned())?
    }

    /// Subscribes `channel` and sends its messages to `route`.
    pub(crate) fn subscribe(&self, kind: SubKind, channel: String, route: Weak<dyn Route>) {
        if let Ok(mut routes) = self.shared.routes.write() {
            routes[kind as usize].insert(channel.clone(), route);
        }
        let _ = self.sub_tx.send(SubCtl::Add(kind, channel));
    }

    /// Drops the subscription of `channel`.
    pub(crate) fn unsubscribe(&self, kind: SubKind, channel: String) {
        if let Ok(mut routes) = self.shared.routes.write() {
            routes[kind as usize].remove(&channel);
        }
        let _ = self.sub_tx.send(SubCtl::Remove(kind, channel));
    }

    /// True while both connections are up and subscribed.
    pub(crate) fn is_ready(&self) -> bool {
        self.shared.sub_up.load(Ordering::Acquire) && self.shared.pub_up.load(Ordering::Acquire)
    }
}

impl Shared {
    /// Notes that node `uid` is alive (it sent us something).
    pub(crate) fn seen(&self, uid: &str) {
        if uid == self.uid || uid == "emitter" || uid.is_empty() {
            return;
        }
        if let Ok(mut seen) = self.seen.lock() {
            let now = Instant::now();
            if seen.len() > 1024 {
                seen.retain(|_, t| now.duration_since(*t) < SEEN_TTL);
            }
            if let Some(t) = seen.get_mut(uid) {
                *t = now;
            } else {
                seen.insert(uid.to_owned(), now);
            }
        }
    }

    /// Nodes heard from recently, this one excluded.
    pub(crate) fn known_nodes(&self) -> Vec<String> {
        let now = Instant::now();
        let mut out: Vec<String> = self
            .seen
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(_, t)| now.duration_since(**t) < SEEN_TTL)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    fn set_up(&self, which: &AtomicBool, up: bool) {
        which.store(up, Ordering::Release);
        let ready = self.sub_up.load(Ordering::Acquire) && self.pub_up.load(Ordering::Acquire);
        let Ok(mut h) = self.health.lock() else {
            return;
        };
        if h.ready == ready {
            return;
        }
        h.ready = ready;
        self.metrics.up.set(i64::from(ready));
        if ready {
            if let Some(since) = h.down_since.take() {
                let secs = since.elapsed().as_secs_f64();
                self.metrics.outage_seconds.inc_by(secs);
                tracing::info!(url = %self.safe_url, outage_secs = secs, "Redis connection restored; cluster traffic flows again");
            } else {
                tracing::info!(url = %self.safe_url, node = %self.uid, "connected to Redis");
            }
            h.ever_ready = true;
        } else if h.ever_ready {
            h.down_since = Some(Instant::now());
            self.metrics.outages.inc();
            tracing::warn!(url = %self.safe_url, "lost Redis: node not ready, cluster messages are being lost; reconnecting with backoff (check that Redis is running and reachable)");
        }
    }

    fn route(&self, kind: SubKind, key: &str) -> Option<Arc<dyn Route>> {
        let routes = self.routes.read().ok()?;
        routes[kind as usize].get(key)?.upgrade()
    }
}

/// A queue a task drains while it waits to reconnect.
trait Inbox<T> {
    fn next(&mut self) -> impl std::future::Future<Output = Option<T>> + Send;
}

impl<T: Send> Inbox<T> for mpsc::Receiver<T> {
    fn next(&mut self) -> impl std::future::Future<Output = Option<T>> + Send {
        self.recv()
    }
}

impl<T: Send> Inbox<T> for mpsc::UnboundedReceiver<T> {
    fn next(&mut self) -> impl std::future::Future<Output = Option<T>> + Send {
        self.recv()
    }
}

/// Waits `d`, handing whatever arrives in `inbox` to `handle` meanwhile. False when the bus
/// stops (cancelled, or the inbox closed).
async fn pause<T, I: Inbox<T>>(
    d: Duration,
    inbox: &mut I,
    cancel: &CancellationToken,
    mut handle: impl FnMut(T),
) -> bool {
    let wait = tokio::time::sleep(d);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = &mut wait => return true,
            item = inbox.next() => match item {
                None => return false,
                Some(item) => handle(item),
            },
        }
    }
}

fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1u32 << attempt.min(8));
    let capped = base.min(max);
    let jitter = rand::random_range(0..=capped.as_millis() as u64 / 4 + 1);
    capped + Duration::from_millis(jitter)
}

async fn publisher(shared: Arc<Shared>, mut rx: mpsc::Receiver<PubCmd>, cancel: CancellationToken) {
    let m = shared.metrics.clone();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut attempt = 0u32;
    let mut batch: Vec<PubCmd> = Vec::with_capacity(MAX_BATCH);
    let mut closed = Arc::new(tokio::sync::Notify::new());
    let mut _pushes: mpsc::Receiver<redis::PushInfo>;
    loop {
        if conn.is_none() {
            // The push channel only carries the disconnection notice: it lets the node notice
            // a dead connection at once instead of at the next failed publish.
            let (sink, pushes, dead) = PushSink::new(1, m.clone());
            closed = dead;
            // Kept open so the sink stays usable until the disconnection notice.
            _pushes = pushes;
            let cfg = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(shared.config.connect_timeout))
                .set_response_timeout(Some(shared.config.publish_timeout))
                .set_push_sender(sink);
            let connect = shared
                .client
                .get_multiplexed_async_connection_with_config(&cfg);
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = tokio::time::timeout(shared.config.connect_timeout, connect) => r,
            };
            match result {
                Ok(Ok(c)) => {
                    conn = Some(c);
                    attempt = 0;
                    shared.set_up(&shared.pub_up, true);
                }
                Ok(Err(e)) => {
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(url = %shared.safe_url, error = %e, attempt, "cannot connect to Redis; retrying (check the address, the password, and that Redis is >= 6 for RESP3)");
                    }
                }
                Err(_) => {
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(url = %shared.safe_url, attempt, "connecting to Redis timed out; retrying (check that Redis is up and reachable)");
                    }
                }
            }
            if conn.is_none() {
                shared.set_up(&shared.pub_up, false);
                // While down, whatever is queued is lost (and counted) rather than delivered
                // late and out of order.
                let d = backoff(attempt, shared.config.max_backoff);
                attempt = attempt.saturating_add(1);
                let drained = pause(d, &mut rx, &cancel, |cmd| {
                    fail(&m, cmd, LossReason::Disconnected, "Redis is unreachable")
                });
                if !drained.await {
                    return;
                }
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = closed.notified() => {
                tracing::debug!("Redis publish connection closed");
                conn = None;
                shared.set_up(&shared.pub_up, false);
                continue;
            }
            cmd = rx.recv() => match cmd {
                None => return,
                Some(cmd) => cmd,
            },
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
        m.publish_queue.set(rx.len() as i64);
        let mut pipe = redis::pipe();
        let mut pending = 0u64;
        let mut counted_n = 0u64;
        let mut broken = false;
        for cmd in batch.drain(..) {
            match cmd {
                PubCmd::Publish {
                    channel,
                    payload,
                    shard,
                    counted,
                } => {
                    pipe.cmd(if shard { "SPUBLISH" } else { "PUBLISH" })
                        .arg(channel)
                        .arg(payload)
                        .ignore();
                    pending += 1;
                    counted_n += u64::from(counted);
                }
                PubCmd::Query { cmd, reply } => {
                    if broken {
                        let _ = reply.send(Err("Redis connection lost".into()));
                        continue;
                    }
                    if pending > 0 {
                        broken = !flush(&shared, c, &pipe, counted_n).await;
                        pipe = redis::pipe();
                        pending = 0;
                        counted_n = 0;
                    }
                    if broken {
                        let _ = reply.send(Err("Redis connection lost".into()));
                        continue;
                    }
                    let r = tokio::time::timeout(
                        shared.config.publish_timeout,
                        cmd.query_async::<redis::Value>(c),
                    )
                    .await;
                    let r = match r {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => {
                            broken = e.is_io_error() || e.is_connection_dropped();
                            Err(e.to_string())
                        }
                        Err(_) => {
                            broken = true;
                            Err("Redis did not answer in time".into())
                        }
                    };
                    let _ = reply.send(r);
                }
            }
        }
        if pending > 0 {
            if broken {
                m.lost(LossReason::Disconnected, counted_n);
            } else {
                broken = !flush(&shared, c, &pipe, counted_n).await;
            }
        }
        if broken {
            conn = None;
            shared.set_up(&shared.pub_up, false);
        }
    }
}

/// Sends a pipeline holding `n` counted publishes; false when the connection must be replaced.
async fn flush(
    shared: &Shared,
    c: &mut MultiplexedConnection,
    pipe: &redis::Pipeline,
    n: u64,
) -> bool {
    let m = &shared.metrics;
    match tokio::time::timeout(shared.config.publish_timeout, pipe.exec_async(c)).await {
        Ok(Ok(())) => {
            m.published.inc_by(n);
            true
        }
        Ok(Err(e)) if !e.is_timeout() => {
            tracing::warn!(error = %e, messages = n, "publishing to Redis failed; messages lost, reconnecting");
            m.lost(LossReason::Error, n);
            false
        }
        _ => {
            tracing::warn!(messages = n, timeout = ?shared.config.publish_timeout, "Redis did not acknowledge a publish in time; messages counted lost, reconnecting");
            m.lost(LossReason::Timeout, n);
            false
        }
    }
}

fn fail(m: &RedisMetrics, cmd: PubCmd, reason: LossReason, why: &str) {
    match cmd {
        PubCmd::Publish { counted, .. } => m.lost(reason, u64::from(counted)),
        PubCmd::Query { reply, .. } => {
            let _ = reply.send(Err(why.to_owned()));
        }
    }
}

struct Desired {
    set: BTreeSet<(SubKind, String)>,
}

impl Desired {
    fn apply(&mut self, ctl: &SubCtl) -> bool {
        match ctl {
            SubCtl::Add(k, c) => self.set.insert((*k, c.clone())),
            SubCtl::Remove(k, c) => self.set.remove(&(*k, c.clone())),
        }
    }
}

async fn subscriber(
    shared: Arc<Shared>,
    mut ctl: mpsc::UnboundedReceiver<SubCtl>,
    pub_tx: mpsc::Sender<PubCmd>,
    cancel: CancellationToken,
) {
    let mut desired = Desired {
        set: BTreeSet::new(),
    };
    desired
        .set
        .insert((SubKind::Channel, shared.probe_channel.clone()));
    let mut attempt = 0u32;
    loop {
        match session(&shared, &mut ctl, &mut desired, &pub_tx, &cancel).await {
            SessionEnd::Cancelled => return,
            SessionEnd::Failed { was_up, why } => {
                shared.set_up(&shared.sub_up, false);
                if was_up {
                    attempt = 0;
                    tracing::warn!(reason = %why, "Redis subscription lost; resubscribing");
                } else if attempt.is_multiple_of(10) {
                    tracing::warn!(reason = %why, attempt, "cannot subscribe on Redis; retrying (the sharded mode needs Redis >= 7)");
                }
            }
        }
        let d = backoff(attempt, shared.config.max_backoff);
        attempt = attempt.saturating_add(1);
        if !pause(d, &mut ctl, &cancel, |c| {
            desired.apply(&c);
        })
        .await
        {
            return;
        }
    }
}

enum SessionEnd {
    Cancelled,
    Failed { was_up: bool, why: String },
}

async fn send_sub(
    c: &mut MultiplexedConnection,
    verb: &str,
    channels: &[&str],
    timeout: Duration,
) -> Result<(), String> {
    if channels.is_empty() {
        return Ok(());
    }
    let mut cmd = redis::cmd(verb);
    for ch in channels {
        cmd.arg(*ch);
    }
    match tokio::time::timeout(timeout, cmd.exec_async(c)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{verb} failed: {e}")),
        Err(_) => Err(format!("{verb} timed out")),
    }
}

fn verb(kind: SubKind, add: bool) -> &'static str {
    match (kind, add) {
        (SubKind::Channel, true) => "SUBSCRIBE",
        (SubKind::Channel, false) => "UNSUBSCRIBE",
        (SubKind::Pattern, true) => "PSUBSCRIBE",
        (SubKind::Pattern, false) => "PUNSUBSCRIBE",
        (SubKind::Shard, true) => "SSUBSCRIBE",
        (SubKind::Shard, false) => "SUNSUBSCRIBE",
    }
}

async fn session(
    shared: &Arc<Shared>,
    ctl: &mut mpsc::UnboundedReceiver<SubCtl>,
    desired: &mut Desired,
    pub_tx: &mpsc::Sender<PubCmd>,
    cancel: &CancellationToken,
) -> SessionEnd {
    let cfg_timeout = shared.config.connect_timeout;
    let (sink, mut push_rx, dead) = PushSink::new(RECEIVE_QUEUE, shared.metrics.clone());
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg_timeout))
        .set_response_timeout(Some(cfg_timeout))
        .set_push_sender(sink);
    let connect = shared
        .client
        .get_multiplexed_async_connection_with_config(&cfg);
    let mut c = tokio::select! {
        _ = cancel.cancelled() => return SessionEnd::Cancelled,
        r = tokio::time::timeout(cfg_timeout, connect) => match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return SessionEnd::Failed { was_up: false, why: e.to_string() },
            Err(_) => return SessionEnd::Failed { was_up: false, why: "connect timed out".into() },
        },
    };
    // Take in every change requested so far, then subscribe everything in one go per kind.
    while let Ok(c) = ctl.try_recv() {
        desired.apply(&c);
    }
    for kind in [SubKind::Channel, SubKind::Pattern] {
        let list: Vec<&str> = desired
            .set
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, c)| c.as_str())
            .collect();
        if let Err(why) = send_sub(&mut c, verb(kind, true), &list, cfg_timeout).await {
            return SessionEnd::Failed { was_up: false, why };
        }
    }
    // One channel per SSUBSCRIBE: a cluster would refuse channels of different slots.
    let shards: Vec<String> = desired
        .set
        .iter()
        .filter(|(k, _)| *k == SubKind::Shard)
        .map(|(_, c)| c.clone())
        .collect();
    let subs = shards.iter().map(|ch| {
        let mut c = c.clone();
        async move { send_sub(&mut c, "SSUBSCRIBE", &[ch.as_str()], cfg_timeout).await }
    });
    for r in futures_util::future::join_all(subs).await {
        if let Err(why) = r {
            return SessionEnd::Failed { was_up: false, why };
        }
    }
    shared.metrics.subscribes.inc();
    shared.set_up(&shared.sub_up, true);

    let interval = shared.config.probe_interval;
    let mut probe = tokio::time::interval(interval);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_echo = Instant::now();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return SessionEnd::Cancelled,
            _ = dead.notified() => {
                return SessionEnd::Failed { was_up: true, why: "connection closed by Redis".into() };
            }
            push = push_rx.recv() => {
                let Some(push) = push else {
                    return SessionEnd::Failed { was_up: true, why: "connection closed".into() };
                };
                match push.kind {
                    PushKind::Message => {
                        if let Some((ch, payload)) = two(&push.data) {
                            if ch == shared.probe_channel {
                                last_echo = Instant::now();
                            } else {
                                dispatch(shared, SubKind::Channel, ch, ch, payload);
                            }
                        }
                    }
                    PushKind::PMessage => {
                        if let (Some(pattern), Some((ch, payload))) =
                            (push.data.first().and_then(bulk_str), push.data.get(1..).and_then(two))
                        {
                            dispatch(shared, SubKind::Pattern, pattern, ch, payload);
                        }
                    }
                    PushKind::SMessage => {
                        if let Some((ch, payload)) = two(&push.data) {
                            dispatch(shared, SubKind::Shard, ch, ch, payload);
                        }
                    }
                    _ => {}
                }
            }
            change = ctl.recv() => {
                let Some(change) = change else { return SessionEnd::Cancelled };
                // Take every change waiting (a burst of room joins) and send them all at once:
                // one round trip instead of one per room while messages wait.
                let mut batch = vec![change];
                while batch.len() < 1024 {
                    match ctl.try_recv() {
                        Ok(c) => batch.push(c),
                        Err(_) => break,
                    }
                }
                let sends = batch.iter().filter(|ch| desired.apply(ch)).map(|change| {
                    let (kind, ch, add) = match change {
                        SubCtl::Add(k, ch) => (*k, ch.clone(), true),
                        SubCtl::Remove(k, ch) => (*k, ch.clone(), false),
                    };
                    let mut c = c.clone();
                    async move { send_sub(&mut c, verb(kind, add), &[ch.as_str()], cfg_timeout).await }
                });
                let results = futures_util::future::join_all(sends.collect::<Vec<_>>()).await;
                if let Some(Err(why)) = results.into_iter().find(Result::is_err) {
                    return SessionEnd::Failed { was_up: true, why };
                }
            }
            _ = probe.tick() => {
                if shared.pub_up.load(Ordering::Acquire) && last_echo.elapsed() > interval * 3 {
                    shared.metrics.probe_failures.inc();
                    return SessionEnd::Failed {
                        was_up: true,
                        why: format!("liveness probe not echoed for {:?}", last_echo.elapsed()),
                    };
                }
                if !shared.pub_up.load(Ordering::Acquire) {
                    // The publisher is down: no probe can go out, so none can be missed.
                    last_echo = Instant::now();
                }
                seq += 1;
                let _ = pub_tx.try_send(PubCmd::Publish {
                    channel: shared.probe_channel.clone(),
                    payload: seq.to_string().into_bytes(),
                    shard: false,
                    counted: false,
                });
            }
        }
    }
}

fn bulk(v: &redis::Value) -> Option<&[u8]> {
    match v {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn bulk_str(v: &redis::Value) -> Option<&str> {
    bulk(v).and_then(|b| std::str::from_utf8(b).ok())
}

fn two(data: &[redis::Value]) -> Option<(&str, &[u8])> {
    Some((bulk_str(data.first()?)?, bulk(data.get(1)?)?))
}

fn dispatch(shared: &Shared, kind: SubKind, key: &str, channel: &str, payload: &[u8]) {
    shared.metrics.received.inc();
    if let Some(route) = shared.route(kind, key) {
        route.on_message(channel, payload);
    }
}
