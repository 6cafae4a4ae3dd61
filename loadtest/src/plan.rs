//! How a scenario's connections are laid out: which worker owns connection i, which node URL and
//! source address it uses, which rooms it joins and what it publishes. Every worker computes the
//! same plan from the same options, so nothing else has to be shared between processes.

use crate::cli::{Common, IdleArgs, LoadArgs, StormArgs};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Connections per worker process when `--workers 0`.
pub const CONNECTIONS_PER_WORKER: u64 = 15_000;
/// Connections per source address when `--sources 0`.
pub const CONNECTIONS_PER_SOURCE: u64 = 20_000;

/// One worker's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Job {
    /// `idle`.
    Idle(IdleArgs),
    /// `fanout`, `crossnode` and one `sweep` step.
    Load(LoadArgs),
    /// `storm`.
    Storm(StormArgs),
}

impl Job {
    /// The shared options.
    pub fn common(&self) -> &Common {
        match self {
            Job::Idle(a) => &a.common,
            Job::Load(a) => &a.common,
            Job::Storm(a) => &a.common,
        }
    }

    /// Connections this job opens at once.
    pub fn connections(&self) -> u64 {
        match self {
            Job::Idle(a) => a.connections,
            Job::Load(a) => a.connections,
            Job::Storm(a) => a.concurrency,
        }
    }
}

/// What the coordinator hands a worker process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The job, with every option.
    pub job: Job,
    /// This worker's index.
    pub index: u64,
    /// How many workers share the job.
    pub count: u64,
    /// Source addresses to bind (empty: let the kernel choose).
    pub sources: Vec<IpAddr>,
}

/// Worker processes for a job: `--workers`, or one per [`CONNECTIONS_PER_WORKER`].
pub fn worker_count(job: &Job) -> u64 {
    match job.common().workers {
        0 => job.connections().div_ceil(CONNECTIONS_PER_WORKER).max(1),
        n => u64::from(n),
    }
}

/// Source addresses: `--sources`, or one per [`CONNECTIONS_PER_SOURCE`]; a single source means
/// no explicit bind.
pub fn sources(job: &Job) -> Vec<IpAddr> {
    let n = match job.common().sources {
        0 => job.connections().div_ceil(CONNECTIONS_PER_SOURCE).max(1),
        n => u64::from(n),
    };
    if n <= 1 {
        return Vec::new();
    }
    (0..n.min(250))
        .map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + k as u8)))
        .collect()
}

impl WorkerSpec {
    /// Global indices of the connections this worker owns (interleaved, so publishers spread).
    pub fn my_connections(&self, total: u64) -> impl Iterator<Item = u64> + '_ {
        (self.index..total).step_by(self.count.max(1) as usize)
    }

    /// The source address of connection `i`.
    pub fn source(&self, i: u64) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        self.sources
            .get((i % self.sources.len() as u64) as usize)
            .copied()
    }
}

/// One paced stream of messages a connection sends.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Publisher id carried in the payload (room publishers 0..P, the broadcast P).
    pub id: u64,
    /// Target room.
    pub room: String,
    /// Time between two messages.
    pub interval: Duration,
    /// Delay of the first message after the start (spreads publishers evenly).
    pub offset: Duration,
    /// Deliveries one message should cause (room members other than the sender).
    pub fanout: u64,
}

impl LoadArgs {
    /// Checks the options, naming the flag to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.rooms == 0 || self.rooms > self.connections {
            return Err("--rooms must be between 1 and --connections".into());
        }
        if self.publishers == 0 || self.publishers > self.connections {
            return Err("--publishers must be between 1 and --connections".into());
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err("--rate must be a positive number of messages/s".into());
        }
        if self.rate / (self.publishers as f64) > 100_000.0 {
            return Err("--rate: at most 100,000 msg/s per publisher; add --publishers".into());
        }
        if !(self.duration > 0.0 && self.duration.is_finite()) {
            return Err("--duration must be a positive number of seconds".into());
        }
        if !(self.drain >= 0.0 && self.drain.is_finite()) {
            return Err("--drain must be zero or a positive number of seconds".into());
        }
        if !(self.broadcast_rate >= 0.0 && self.broadcast_rate.is_finite()) {
            return Err("--broadcast-rate must be zero or positive".into());
        }
        Ok(())
    }

    /// Room of connection `i`.
    pub fn room_of(&self, i: u64) -> u64 {
        i % self.rooms
    }

    /// Connections in room `r`.
    pub fn members(&self, r: u64) -> u64 {
        self.connections / self.rooms + u64::from(r < self.connections % self.rooms)
    }

    /// Node URL index of connection `i`: members of one room are spread over the nodes, and
    /// publishers (low indices) sit on the first node, so about (U−1)/U of the deliveries cross
    /// nodes.
    pub fn node_of(&self, i: u64, nodes: usize) -> usize {
        ((i / self.rooms) % nodes.max(1) as u64) as usize
    }

    /// Room names.
    pub fn room_name(&self, r: u64) -> String {
        format!("{}{r}", self.room_prefix)
    }

    /// The room every connection joins when there is broadcast traffic.
    pub fn all_room(&self) -> String {
        format!("{}all", self.room_prefix)
    }

    /// Rooms connection `i` joins.
    pub fn joins(&self, i: u64) -> Vec<String> {
        let mut rooms = vec![self.room_name(self.room_of(i))];
        if self.broadcast_rate > 0.0 {
            rooms.push(self.all_room());
        }
        rooms
    }

    /// What connection `i` publishes.
    pub fn publications(&self, i: u64) -> Vec<Publication> {
        let mut out = Vec::new();
        if i < self.publishers {
            let per = self.rate / self.publishers as f64;
            let interval = Duration::from_secs_f64(1.0 / per);
            let r = self.room_of(i);
            out.push(Publication {
                id: i,
                room: self.room_name(r),
                interval,
                offset: interval.mul_f64(i as f64 / self.publishers as f64),
                fanout: self.members(r).saturating_sub(1),
            });
        }
        if i == 0 && self.broadcast_rate > 0.0 {
            out.push(Publication {
                id: self.publishers,
                room: self.all_room(),
                interval: Duration::from_secs_f64(1.0 / self.broadcast_rate),
                offset: Duration::ZERO,
                fanout: self.connections - 1,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn load(args: &[&str]) -> LoadArgs {
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: LoadArgs,
        }
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::parse_from(v).a
    }

    #[test]
    fn rooms_and_publishers_cover_every_connection() {
        let a = load(&[
            "--connections",
            "1003",
            "--rooms",
            "10",
            "--publishers",
            "20",
        ]);
        a.validate().expect("valid");
        assert_eq!((0..10).map(|r| a.members(r)).sum::<u64>(), 1003);
        assert_eq!(a.members(0), 101);
        assert_eq!(a.members(9), 100);
        let p = a.publications(13);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].room, "lt-3");
        assert_eq!(p[0].fanout, 99);
        assert!(a.publications(20).is_empty());
        assert_eq!(a.node_of(3, 2), 0);
        assert_eq!(a.node_of(13, 2), 1);
    }

    #[test]
    fn broadcast_adds_the_all_room() {
        let a = load(&["--connections", "100", "--broadcast-rate", "1"]);
        assert_eq!(a.joins(5), vec!["lt-5", "lt-all"]);
        let p = a.publications(0);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].fanout, 99);
        assert!(load(&["--rooms", "0"]).validate().is_err());
    }

    #[test]
    fn workers_split_connections() {
        let a = load(&["--connections", "40000"]);
        let job = Job::Load(a);
        assert_eq!(worker_count(&job), 3);
        assert_eq!(sources(&job).len(), 2);
        let spec = WorkerSpec {
            job,
            index: 1,
            count: 3,
            sources: Vec::new(),
        };
        let mine: Vec<u64> = spec.my_connections(8).collect();
        assert_eq!(mine, vec![1, 4, 7]);
    }
}
