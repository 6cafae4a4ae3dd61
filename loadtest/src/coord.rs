//! The coordinator: starts the worker processes of one job, prints the progress line, samples
//! the servers in /proc around the measured phase, and merges the workers' results.

use crate::plan::{sources, worker_count, Job, WorkerSpec};
use crate::procstat::{self, Sample};
use crate::scenario::Failure;
use crate::stats::{decode_histogram, new_histogram, Counts};
use crate::worker::WorkerLine;
use hdrhistogram::Histogram;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The merged outcome of one job.
pub struct Outcome {
    /// Counters summed over workers.
    pub counts: Counts,
    /// Latency histogram merged over workers.
    pub hist: Histogram<u64>,
    /// Seconds from `go` to the last result.
    pub run_secs: f64,
    /// Seconds the setup (connect + join) took.
    pub setup_secs: f64,
    /// Worker processes used.
    pub workers: u64,
    /// Source addresses used (0: the kernel's choice).
    pub sources: usize,
    /// Servers before the workers started.
    pub baseline: Sample,
    /// Servers when every worker was ready.
    pub loaded: Sample,
    /// Servers when every worker had reported its result.
    pub end: Sample,
    /// CPU time the worker processes used during the measured phase, µs (to tell a saturated
    /// load generator from a saturated server).
    pub load_cpu_us: u64,
    /// The servers' total RSS once a second during the measured phase: (seconds since `go`,
    /// bytes). Empty without `--server-pid`.
    pub rss_series: Vec<(f64, u64)>,
}

enum Event {
    Line(usize, WorkerLine),
    Eof(usize),
}

struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
}

impl Workers {
    async fn tell(&mut self, word: &str) -> Result<(), String> {
        for (i, s) in self.stdins.iter_mut().enumerate() {
            s.write_all(format!("{word}\n").as_bytes())
                .await
                .map_err(|e| {
                    format!("worker {i} stopped taking commands ({e}); see its stderr above")
                })?;
        }
        Ok(())
    }
}

fn spawn_workers(job: &Job, tx: mpsc::UnboundedSender<Event>) -> Result<Workers, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this executable to start workers: {e}"))?;
    let count = worker_count(job);
    let sources = sources(job);
    let mut workers = Workers {
        children: Vec::new(),
        stdins: Vec::new(),
    };
    for index in 0..count {
        let spec = WorkerSpec {
            job: job.clone(),
            index,
            count,
            sources: sources.clone(),
        };
        let spec = serde_json::to_string(&spec).map_err(|e| format!("worker spec: {e}"))?;
        let mut child = Command::new(&exe)
            .arg("__worker")
            .arg(spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start worker {index}: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("worker {index}: pipes missing"));
        };
        let tx = tx.clone();
        let i = index as usize;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<WorkerLine>(&line) {
                    Ok(l) => {
                        let _ = tx.send(Event::Line(i, l));
                    }
                    Err(_) => eprintln!("worker {i}: {line}"),
                }
            }
            let _ = tx.send(Event::Eof(i));
        });
        workers.children.push(child);
        workers.stdins.push(stdin);
    }
    Ok(workers)
}

fn sum(latest: &[Counts]) -> Counts {
    let mut total = Counts::default();
    for c in latest {
        total.add(c);
    }
    total
}

fn progress_line(
    elapsed: f64,
    running: bool,
    now: &Counts,
    last: &Counts,
    p99_us: u64,
    total_conns: u64,
    rss_bytes: Option<u64>,
) {
    let rate = |a: u64, b: u64| a.saturating_sub(b);
    let rss = rss_bytes
        .map(|b| format!(" server RSS {:.1} MiB", b as f64 / 1048576.0))
        .unwrap_or_default();
    if !running {
        eprintln!(
            "[{elapsed:6.1}s] setup  conns {}/{} failed {}",
            now.connected, total_conns, now.connect_failed
        );
    } else if now.handshakes > 0 || now.handshake_failed > 0 {
        eprintln!(
            "[{elapsed:6.1}s] storm  handshakes {} ({}/s) failed {} p99 {:.2} ms{rss}",
            now.handshakes,
            rate(now.handshakes, last.handshakes),
            now.handshake_failed,
            p99_us as f64 / 1000.0
        );
    } else {
        eprintln!(
            "[{elapsed:6.1}s] run    conns {} sent {} ({}/s) deliveries {} ({}/s) p99 {:.2} ms disconnected {}{rss}",
            now.connected - now.disconnected.min(now.connected),
            now.sent,
            rate(now.sent, last.sent),
            now.received,
            rate(now.received, last.received),
            p99_us as f64 / 1000.0,
            now.disconnected
        );
    }
}

/// Runs `job` over its worker processes and returns the merged outcome.
pub async fn coordinate(job: &Job) -> Result<Outcome, Failure> {
    let pids = job.common().server_pids.clone();
    procstat::check_pids(&pids).map_err(Failure::Usage)?;
    Ok(coordinate_checked(job, pids).await?)
}

async fn coordinate_checked(job: &Job, pids: Vec<u32>) -> Result<Outcome, String> {
    let total_conns = job.connections();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let baseline = procstat::sample(&pids);
    let t0 = Instant::now();
    let mut workers = spawn_workers(job, tx)?;
    let n = workers.children.len();
    let worker_pids: Vec<u32> = workers.children.iter().filter_map(Child::id).collect();
    let mut load_start = 0;
    let mut latest = vec![Counts::default(); n];
    let mut p99s = vec![0u64; n];
    let mut ready = vec![false; n];
    let mut results: Vec<Option<(Counts, String)>> = vec![None; n];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = Counts::default();
    let mut running: Option<Instant> = None;
    let mut setup_secs = 0.0;
    let mut loaded = Sample::default();
    let mut rss_series = Vec::new();
    let setup_deadline = t0 + Duration::from_secs(60 + total_conns / 100);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = sum(&latest);
                let p99 = p99s.iter().copied().max().unwrap_or(0);
                let rss = match running {
                    Some(r) if !pids.is_empty() => {
                        let bytes = procstat::sample(&pids).rss_bytes;
                        rss_series.push((r.elapsed().as_secs_f64(), bytes));
                        Some(bytes)
                    }
                    _ => None,
                };
                progress_line(t0.elapsed().as_secs_f64(), running.is_some(), &now, &last, p99, total_conns, rss);
                last = now;
                if running.is_none() && Instant::now() > setup_deadline {
                    return Err(format!(
                        "setup did not finish in {} s: lower --connections or raise --connect-concurrency, and check the server's logs",
                        (setup_deadline - t0).as_secs()
                    ));
                }
            }
            event = rx.recv() => match event {
                None => return Err("every worker stopped: see their stderr above".into()),
                Some(Event::Eof(i)) => {
                    if results[i].is_none() {
                        return Err(format!("worker {i} exited before reporting: see its stderr above"));
                    }
                }
                Some(Event::Line(i, WorkerLine::Ready(c))) => {
                    latest[i] = c;
                    ready[i] = true;
                    if ready.iter().all(|r| *r) {
                        setup_secs = t0.elapsed().as_secs_f64();
                        loaded = procstat::sample(&pids);
                        load_start = procstat::sample(&worker_pids).cpu_us;
                        workers.tell("go").await?;
                        running = Some(Instant::now());
                        last = sum(&latest);
                    }
                }
                Some(Event::Line(i, WorkerLine::Progress { counts, p99_us })) => {
                    latest[i] = counts;
                    p99s[i] = p99_us;
                }
                Some(Event::Line(i, WorkerLine::Result { counts, hist })) => {
                    latest[i] = counts.clone();
                    results[i] = Some((counts, hist));
                    if results.iter().all(Option::is_some) {
                        break;
                    }
                }
            }
        }
    }
    let run_secs = running.map(|r| r.elapsed().as_secs_f64()).unwrap_or(0.0);
    let end = procstat::sample(&pids);
    let load_cpu_us = procstat::sample(&worker_pids)
        .cpu_us
        .saturating_sub(load_start);
    let _ = workers.tell("exit").await;
    for c in workers.children.iter_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
    }
    let mut counts = Counts::default();
    let mut hist = new_histogram();
    for (c, h) in results.into_iter().flatten() {
        counts.add(&c);
        let h = decode_histogram(&h)?;
        hist.add(&h)
            .map_err(|e| format!("merging histograms: {e:?}"))?;
    }
    Ok(Outcome {
        counts,
        hist,
        run_secs,
        setup_secs,
        workers: n as u64,
        sources: sources(job).len(),
        baseline,
        loaded,
        end,
        load_cpu_us,
        rss_series,
    })
}
