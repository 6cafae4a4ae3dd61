//! One worker process. It talks to the coordinator over stdin/stdout in JSON lines:
//! it sets up its connections and prints `Ready`, waits for `go` on stdin, runs the measured
//! phase printing `Progress` every second, prints `Result`, and exits on `exit` (or EOF) so the
//! coordinator can sample the servers while the connections are still open.

use crate::cli::Transport;
use crate::client::{event_frame, Client, ClientError, FrameOutcome, Target};
use crate::plan::{Job, Publication, WorkerSpec};
use crate::polling::{Held, PollingSession};
use crate::stats::{bump, encode_histogram, Arrival, Counts, Tracks, WorkerCounters};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_protocol::{Packet, PacketKind};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio::time::Instant;

/// Event name of the measured messages.
pub const EVENT: &str = "m";

/// One line a worker prints.
#[derive(Debug, Serialize, Deserialize)]
pub enum WorkerLine {
    /// Setup is done (or failed for some connections).
    Ready(Counts),
    /// Counters so far, and the p99 latency so far in µs.
    Progress {
        /// Counters.
        counts: Counts,
        /// p99 so far.
        p99_us: u64,
    },
    /// The final counters and the histogram (V2, base64).
    Result {
        /// Counters.
        counts: Counts,
        /// Latency histogram.
        hist: String,
    },
}

/// The phase the connection tasks are in.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Setup,
    Run { start: Instant, wall_us: u64 },
    Stop,
}

fn emit(line: &WorkerLine) {
    if let Ok(text) = serde_json::to_string(line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// Microseconds since the Unix epoch (the clock every process on the machine shares).
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Entry point of `switchboard-load __worker SPEC`.
pub fn main(spec: &str) -> Result<(), String> {
    let spec: WorkerSpec =
        serde_json::from_str(spec).map_err(|e| format!("bad worker spec: {e}"))?;
    let threads = spec.job.common().threads.max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    rt.block_on(run(spec))
}

async fn run(spec: WorkerSpec) -> Result<(), String> {
    let targets = spec
        .job
        .common()
        .urls
        .iter()
        .map(|u| Target::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    let shared = Arc::new(WorkerCounters::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let progress = tokio::spawn(report_progress(shared.clone()));
    let spec = Arc::new(spec);
    let tasks = match &spec.job {
        Job::Load(_) | Job::Idle(_) => {
            setup(spec.clone(), &targets, shared.clone(), phase_rx.clone()).await
        }
        Job::Storm(_) => Vec::new(),
    };
    emit(&WorkerLine::Ready(shared.counts()));
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    match stdin.next_line().await {
        Ok(Some(l)) if l.trim() == "go" => {}
        _ => return Ok(()),
    }
    let start = Instant::now();
    let _ = phase_tx.send(Phase::Run {
        start,
        wall_us: wall_us(),
    });
    match &spec.job {
        Job::Load(a) => tokio::time::sleep(Duration::from_secs_f64(a.duration + a.drain)).await,
        Job::Idle(a) => tokio::time::sleep(Duration::from_secs_f64(a.duration)).await,
        Job::Storm(a) => storm(&spec, a, &targets, shared.clone()).await,
    }
    let _ = phase_tx.send(Phase::Stop);
    let mut clients = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(Ok(Some(c))) = tokio::time::timeout(Duration::from_secs(5), t).await {
            clients.push(c);
        }
    }
    progress.abort();
    emit(&WorkerLine::Result {
        counts: shared.counts(),
        hist: encode_histogram(&shared.histogram()),
    });
    let _ = stdin.next_line().await;
    drop(clients);
    Ok(())
}

async fn report_progress(shared: Arc<WorkerCounters>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        emit(&WorkerLine::Progress {
            counts: shared.counts(),
            p99_us: shared.histogram().value_at_quantile(0.99),
        });
    }
}

/// An open connection of either transport (held, not moved around: the size gap is fine).
#[allow(clippy::large_enum_variant)]
enum Opened {
    Ws(Client),
    Polling(PollingSession),
}

/// Connects this worker's connections (bounded concurrency), joins their rooms and spawns one
/// task per connection.
async fn setup(
    spec: Arc<WorkerSpec>,
    targets: &[Target],
    shared: Arc<WorkerCounters>,
    phase: watch::Receiver<Phase>,
) -> Vec<tokio::task::JoinHandle<Option<Opened>>> {
    let total = spec.job.connections();
    let concurrency = spec.job.common().connect_concurrency.max(1);
    let indices: Vec<u64> = spec.my_connections(total).collect();
    let connecting = futures_util::stream::iter(indices)
        .map(|i| {
            let spec = spec.clone();
            let target = match &spec.job {
                Job::Load(a) => targets[a.node_of(i, targets.len())].clone(),
                _ => targets[(i % targets.len() as u64) as usize].clone(),
            };
            async move {
                if let Job::Idle(a) = &spec.job {
                    if a.transport == Transport::Polling {
                        let session = PollingSession::open(&target, spec.source(i)).await?;
                        return Ok((i, Opened::Polling(session)));
                    }
                }
                let mut client = Client::connect(&target, spec.source(i)).await?;
                if let Job::Load(a) = &spec.job {
                    let ack = client.emit_with_ack("join", json!(a.joins(i))).await?;
                    if ack.first().and_then(|v| v.get("ok")) != Some(&Value::Bool(true)) {
                        return Err(ClientError::Refused(format!("join refused: {ack:?}")));
                    }
                }
                Ok::<_, ClientError>((i, Opened::Ws(client)))
            }
        })
        .buffer_unordered(concurrency);
    tokio::pin!(connecting);
    let mut tasks = Vec::new();
    let mut first_error = true;
    while let Some(result) = connecting.next().await {
        match result {
            Ok((_, Opened::Polling(session))) => {
                bump(&shared.connected);
                let shared = shared.clone();
                let mut phase = phase.clone();
                let stop = async move {
                    while phase.changed().await.is_ok() {
                        if matches!(*phase.borrow(), Phase::Stop) {
                            return;
                        }
                    }
                };
                tasks.push(tokio::spawn(async move {
                    match session.hold(stop).await {
                        Held::Open(s) => Some(Opened::Polling(s)),
                        Held::Closed => {
                            bump(&shared.disconnected);
                            None
                        }
                    }
                }));
            }
            Ok((i, Opened::Ws(client))) => {
                bump(&shared.connected);
                let publications = match &spec.job {
                    Job::Load(a) => a.publications(i),
                    _ => Vec::new(),
                };
                let pad = match &spec.job {
                    Job::Load(a) => "x".repeat(a.payload),
                    _ => String::new(),
                };
                let end = match &spec.job {
                    Job::Load(a) => Duration::from_secs_f64(a.duration),
                    _ => Duration::ZERO,
                };
                let conn = Connection {
                    client,
                    publications,
                    pad,
                    end,
                    shared: shared.clone(),
                    phase: phase.clone(),
                };
                tasks.push(tokio::spawn(
                    async move { conn.run().await.map(Opened::Ws) },
                ));
            }
            Err(e) => {
                bump(&shared.connect_failed);
                if first_error {
                    first_error = false;
                    eprintln!(
                        "switchboard-load worker {}: connection failed: {e}",
                        spec.index
                    );
                }
            }
        }
    }
    tasks
}

/// One connection's task: answers pings, counts deliveries, publishes on its schedule.
struct Connection {
    client: Client,
    publications: Vec<Publication>,
    pad: String,
    end: Duration,
    shared: Arc<WorkerCounters>,
    phase: watch::Receiver<Phase>,
}

struct Schedule {
    publication: Publication,
    seq: u64,
    due: Instant,
}

impl Connection {
    /// Runs until the phase is `Stop` (returns the client, still open) or the server closes.
    async fn run(mut self) -> Option<Client> {
        let mut tracks = Tracks::default();
        let mut schedules: Vec<Schedule> = Vec::new();
        let mut run: Option<(Instant, u64)> = None;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let next_due = schedules.iter().map(|s| s.due).min();
            tokio::select! {
                changed = self.phase.changed() => {
                    if changed.is_err() {
                        return Some(self.client);
                    }
                    let phase = *self.phase.borrow_and_update();
                    match phase {
                        Phase::Setup => {}
                        Phase::Stop => return Some(self.client),
                        Phase::Run { start, wall_us } => {
                            run = Some((start, wall_us));
                            schedules = self.publications.iter().map(|p| Schedule {
                                publication: p.clone(),
                                seq: 0,
                                due: start + p.offset,
                            }).collect();
                        }
                    }
                }
                frame = self.client.ws.next() => {
                    let outcome = match frame {
                        None => Err(ClientError::Closed),
                        Some(Err(e)) => Err(e.into()),
                        Some(Ok(m)) => self.on_frame(m, &mut tracks).await,
                    };
                    if outcome.is_err() {
                        bump(&self.shared.disconnected);
                        return None;
                    }
                }
                _ = tokio::time::sleep_until(next_due.unwrap_or(far)), if next_due.is_some() => {
                    let Some((start, wall)) = run else { continue };
                    if self.publish_due(&mut schedules, start, wall).await.is_err() {
                        bump(&self.shared.disconnected);
                        return None;
                    }
                }
            }
        }
    }

    /// Sends every message whose time has come (open loop: a late sender catches up at once,
    /// and the send time in the payload is the scheduled one).
    async fn publish_due(
        &mut self,
        schedules: &mut Vec<Schedule>,
        start: Instant,
        wall: u64,
    ) -> Result<(), ClientError> {
        let now = Instant::now();
        let end = start + self.end;
        for s in schedules.iter_mut() {
            while s.due <= now && s.due < end {
                let t = wall + (s.due - start).as_micros() as u64;
                let data = json!({
                    "to": s.publication.room,
                    "event": EVENT,
                    "data": {"p": s.publication.id, "s": s.seq, "t": t, "d": self.pad},
                    "self": false,
                });
                let id = self.client.ack_id();
                self.client
                    .send_text(event_frame("publish", data, Some(id)))
                    .await?;
                bump(&self.shared.sent);
                self.shared
                    .expected
                    .fetch_add(s.publication.fanout, std::sync::atomic::Ordering::Relaxed);
                s.seq += 1;
                s.due += s.publication.interval;
            }
        }
        schedules.retain(|s| s.due < end);
        Ok(())
    }

    async fn on_frame(
        &mut self,
        message: tokio_tungstenite::tungstenite::Message,
        tracks: &mut Tracks,
    ) -> Result<(), ClientError> {
        let Some(packet) = Client::decode_frame(message)? else {
            return Ok(());
        };
        let FrameOutcome::Packet(Packet { kind, .. }) = self.client.handle(packet).await? else {
            return Ok(());
        };
        match kind {
            PacketKind::Event { data, .. } => {
                if data.first().and_then(Value::as_str) != Some(EVENT) {
                    return Ok(());
                }
                let Some(body) = data.get(1) else {
                    return Ok(());
                };
                let field = |k: &str| body.get(k).and_then(Value::as_u64);
                let (Some(p), Some(s), Some(t)) = (field("p"), field("s"), field("t")) else {
                    return Ok(());
                };
                bump(&self.shared.received);
                self.shared.record(wall_us().saturating_sub(t));
                match tracks.arrive(p, s) {
                    Some(Arrival::InOrder) => bump(&self.shared.unique),
                    Some(Arrival::Reordered) => {
                        bump(&self.shared.unique);
                        bump(&self.shared.reordered);
                    }
                    Some(Arrival::Duplicate) => bump(&self.shared.duplicated),
                    None => {}
                }
            }
            PacketKind::Ack { data, .. } => {
                if data.first().and_then(|v| v.get("ok")) == Some(&Value::Bool(true)) {
                    bump(&self.shared.acked);
                } else {
                    bump(&self.shared.publish_errors);
                }
            }
            PacketKind::Disconnect => return Err(ClientError::Closed),
            _ => {}
        }
        Ok(())
    }
}

/// `storm`: this worker's share of the loops, each connecting, waiting for the namespace
/// CONNECT, closing and starting over until the duration is up.
async fn storm(
    spec: &Arc<WorkerSpec>,
    a: &crate::cli::StormArgs,
    targets: &[Target],
    shared: Arc<WorkerCounters>,
) {
    let loops = a.concurrency / spec.count + u64::from(spec.index < a.concurrency % spec.count);
    let end = Instant::now() + Duration::from_secs_f64(a.duration);
    let mut handles = Vec::new();
    for k in 0..loops {
        let global = spec.index + k * spec.count;
        let target = targets[(global % targets.len() as u64) as usize].clone();
        let shared = shared.clone();
        let spec = spec.clone();
        handles.push(tokio::spawn(async move {
            let mut n = global;
            while Instant::now() < end {
                let t0 = Instant::now();
                match Client::connect(&target, spec.source(n)).await {
                    Ok(client) => {
                        shared.record(t0.elapsed().as_micros() as u64);
                        bump(&shared.handshakes);
                        client.close().await;
                    }
                    Err(_) => {
                        bump(&shared.handshake_failed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                n += a_count(&spec);
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

fn a_count(spec: &WorkerSpec) -> u64 {
    match &spec.job {
        Job::Storm(a) => a.concurrency.max(1),
        _ => 1,
    }
}
