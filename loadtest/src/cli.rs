//! Command-line options of every scenario and of the runner.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

/// switchboard-load: drives any Socket.IO v4 server that implements the relay events `join`,
/// `leave` and `publish` (with acks), and measures it.
#[derive(Debug, Parser)]
#[command(name = "switchboard-load", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The scenarios, the runner, and the hidden worker entry point.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hold N connections for S seconds; report server RSS per connection.
    Idle(IdleArgs),
    /// C connections in R rooms on one node, P paced publishers: deliveries/s, loss, latency.
    Fanout(LoadArgs),
    /// Like fanout, with the connections spread over several node URLs (repeat --url).
    Crossnode(LoadArgs),
    /// Full handshakes per second at a given concurrency, and server CPU per handshake.
    Storm(StormArgs),
    /// Raise the fanout rate step by step until p99 or loss crosses a bound.
    Sweep(SweepArgs),
    /// Fanout for a long time (default 10 minutes) while sampling server RSS each second; fails
    /// (exit 1) when RSS keeps growing after the warm-up.
    #[command(mut_arg("duration", |a| a.default_value("600")))]
    Soak(SoakArgs),
    /// Start Redis and server processes pinned to CPUs, then run a scenario against them.
    Run(RunArgs),
    /// Internal: one worker process of a scenario (the coordinator starts these).
    #[command(name = "__worker", hide = true)]
    Worker {
        /// The worker's job, as JSON.
        spec: String,
    },
}

/// Options every scenario shares.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct Common {
    /// Server URL (http://HOST:PORT[/path/]); repeat for several nodes.
    #[arg(long = "url", default_value = "http://127.0.0.1:3000")]
    pub urls: Vec<String>,
    /// Pid of a server process whose CPU time and RSS are sampled from /proc; repeatable.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Worker processes (0: one per 15,000 connections). Each holds at most ~20,000 files.
    #[arg(long, default_value_t = 0)]
    pub workers: u32,
    /// Source addresses 127.0.0.1, 127.0.0.2, ... (0: one per 20,000 connections).
    #[arg(long, default_value_t = 0)]
    pub sources: u32,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Tokio worker threads per worker process.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// A tag copied into the JSON line (the runner sets the contender's name).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Exit with status 1 when anything was lost, failed or disconnected.
    #[arg(long)]
    pub fail_on_loss: bool,
}

/// `fanout` and `crossnode`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct LoadArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub common: Common,
    /// Connections (the first --publishers of them also publish).
    #[arg(long, default_value_t = 1000)]
    pub connections: u64,
    /// Rooms; connection i joins room i mod R.
    #[arg(long, default_value_t = 10)]
    pub rooms: u64,
    /// Publishers; publisher p publishes to room p mod R.
    #[arg(long, default_value_t = 10)]
    pub publishers: u64,
    /// Total publish rate over all publishers, messages/s (open loop: paced, never waiting for acks).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Bytes of padding in each message's data.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for late deliveries after publishing stops (later ones count as lost).
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// Messages/s from connection 0 to a room every connection joins (0: none).
    #[arg(long, default_value_t = 0.0)]
    pub broadcast_rate: f64,
    /// Prefix of the room names (`<prefix>0`, ..., `<prefix>all`).
    #[arg(long, default_value = "lt-")]
    pub room_prefix: String,
}

/// `idle`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct IdleArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub common: Common,
    /// Connections to hold.
    #[arg(long, default_value_t = 10_000)]
    pub connections: u64,
    /// Seconds to hold them once all are up.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// How each connection is held: a WebSocket, or an Engine.IO long-polling session (one
    /// keep-alive HTTP connection with a GET always waiting).
    #[arg(long, value_enum, default_value = "websocket")]
    pub transport: Transport,
}

/// The transport of `idle` connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `transport=websocket` from the start.
    Websocket,
    /// `transport=polling`, never upgraded.
    Polling,
}

/// `storm`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct StormArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub common: Common,
    /// Handshakes in flight at once (each loop connects, waits for CONNECT, closes, repeats).
    #[arg(long, default_value_t = 50)]
    pub concurrency: u64,
    /// Seconds of storm.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

/// `sweep`.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub load: LoadArgs,
    /// First rate, messages/s.
    #[arg(long, default_value_t = 200.0)]
    pub start_rate: f64,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// Highest rate tried.
    #[arg(long, default_value_t = 100_000.0)]
    pub max_rate: f64,
    /// A step fails when its p99 exceeds this, ms.
    #[arg(long, default_value_t = 50.0)]
    pub max_p99_ms: f64,
    /// A step fails when lost/expected exceeds this fraction.
    #[arg(long, default_value_t = 0.0)]
    pub max_loss: f64,
}

/// `soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub load: LoadArgs,
    /// Seconds at the start of publishing whose RSS is not judged (allocator and buffers settle).
    #[arg(long, default_value_t = 60.0)]
    pub warmup: f64,
    /// The most RSS may grow after the warm-up, MiB, by the least-squares trend over the samples
    /// (trend slope × judged seconds); more fails the soak.
    #[arg(long, default_value_t = 8.0)]
    pub max_growth_mib: f64,
}

/// Which server the runner starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerKind {
    /// The `switchboard` gateway.
    Switchboard,
    /// `loadtest/peers/node/server.js` (socket.io 4 + @socket.io/redis-adapter 8).
    Node,
    /// `loadtest/peers/socketioxide` (socketioxide 0.18 + socketioxide-redis).
    Socketioxide,
}

impl ServerKind {
    /// The lowercase name used in labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Switchboard => "switchboard",
            Self::Node => "node",
            Self::Socketioxide => "socketioxide",
        }
    }
}

/// `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Which server to start.
    #[arg(long, value_enum, default_value = "switchboard")]
    pub server: ServerKind,
    /// Server processes; more than one shares one Redis started by the runner.
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Use Redis even with one node.
    #[arg(long)]
    pub redis: bool,
    /// Start a Redis Cluster of this many masters (no replicas, slots split evenly) instead of
    /// one redis-server, and run Switchboard's sharded wire on it (switchboard only).
    #[arg(long, default_value_t = 0)]
    pub redis_shards: u32,
    /// The redis-cli executable (used to form the Redis Cluster and read each Redis's stats).
    #[arg(long, default_value = "redis-cli")]
    pub redis_cli: String,
    /// The server executable (switchboard: next to this binary; socketioxide:
    /// loadtest/peers/socketioxide/target/release/socketioxide-peer; node: `node`).
    #[arg(long)]
    pub server_bin: Option<String>,
    /// The Node peer's script.
    #[arg(long, default_value = "loadtest/peers/node/server.js")]
    pub node_script: String,
    /// The redis-server executable.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
    /// CPUs for Redis and the servers (taskset -c list).
    #[arg(long, default_value = "0")]
    pub server_cpus: String,
    /// CPUs for the load generator (taskset -c list).
    #[arg(long, default_value = "1")]
    pub load_cpus: String,
    /// Do not pin with taskset.
    #[arg(long)]
    pub no_pin: bool,
    /// The scenario and its options, e.g. `fanout --connections 1000 --rate 200`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub scenario: Vec<String>,
}
