//! Cluster test harness shared by the Redis adapter's integration tests (`mod support;`).
//!
//! It starts throw-away `redis-server` processes ([`RedisServer`]) and drives the Node scripts in
//! `tests/clients/cluster/` over their JSON-lines protocol (see the README there):
//! - [`ClientDriver`]: one Node process hosting many official `socket.io-client` sockets;
//! - [`NodeServer`]: a real Node `socket.io@4` server on `@socket.io/redis-adapter@8` (classic or sharded);
//! - [`run_emitter`]: one `@socket.io/redis-emitter@5` publish.
//!
//! Prerequisites: `npm ci` in `tests/clients` and a `redis-server` (7.x) on the PATH; `scripts/test.sh`
//! installs both. Overrides: `SWITCHBOARD_NODE` (node executable), `SWITCHBOARD_REDIS_SERVER` (redis-server
//! executable), `SWITCHBOARD_JS_LOG=1` (echo the Node processes' stderr live, prefixed with their label).
//!
//! Binary values travel in JSON as `{"$bin": "<base64>"}` both ways: see [`bin`] and [`unbin`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout, Instant};

/// How long [`JsProcess::request`] waits for the answer to one command.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How many stderr lines of a Node process are included in failure messages.
const TAIL_LINES: usize = 40;
/// How many stderr lines of a Node process are kept in memory.
const KEEP_LINES: usize = 5000;

// ---------------------------------------------------------------------------------------------------------
// Paths and prerequisites
// ---------------------------------------------------------------------------------------------------------

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let raw = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    raw.canonicalize().unwrap_or(raw)
}

/// `tests/clients` (the npm project holding the Node scripts and their pinned dependencies).
pub fn clients_dir() -> PathBuf {
    workspace_root().join("tests").join("clients")
}

/// The Node executable: `SWITCHBOARD_NODE`, else `node`.
pub fn node_exe() -> String {
    std::env::var("SWITCHBOARD_NODE").unwrap_or_else(|_| "node".to_string())
}

/// The redis-server executable: `SWITCHBOARD_REDIS_SERVER`, else `redis-server`.
pub fn redis_server_exe() -> String {
    std::env::var("SWITCHBOARD_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

const NPM_HINT: &str = "run `npm ci` in tests/clients (scripts/test.sh does it)";
const REDIS_HINT: &str =
    "install redis-server (apt-get install redis-server; scripts/test.sh does it)";

/// Panics with what to do when node or the npm packages the cluster scripts need are missing.
pub fn require_js() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let node = node_exe();
        match std::process::Command::new(&node).arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "`{node} --version` failed ({}): install Node.js, then {NPM_HINT}",
                out.status
            ),
            Err(e) => panic!("cannot run `{node}` ({e}): install Node.js, then {NPM_HINT}"),
        }
        let modules = clients_dir().join("node_modules");
        for pkg in [
            "socket.io",
            "socket.io-client",
            "@socket.io/redis-adapter",
            "@socket.io/redis-emitter",
            "redis",
            "socket.io-msgpack-parser",
        ] {
            let manifest = modules.join(pkg).join("package.json");
            assert!(
                manifest.is_file(),
                "missing {}: {NPM_HINT}",
                manifest.display()
            );
        }
    });
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------------------
// Binary convention and polling
// ---------------------------------------------------------------------------------------------------------

/// `{"$bin": "<base64>"}`: stands for a Buffer in the scripts' JSON.
pub fn bin(bytes: &[u8]) -> Value {
    json!({ "$bin": base64::engine::general_purpose::STANDARD.encode(bytes) })
}

/// The bytes of a `{"$bin": "<base64>"}` value, `None` for anything else.
pub fn unbin(v: &Value) -> Option<Vec<u8>> {
    let obj = v.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    let b64 = obj.get("$bin")?.as_str()?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Polls `f` every 50 ms until it returns true; panics with `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if f().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------------------------------------

/// A throw-away `redis-server` on 127.0.0.1 (no persistence), killed on drop. Its output goes to a log file
/// that is deleted on drop unless the test is panicking.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    log_path: PathBuf,
}

static REDIS_SEQ: AtomicU64 = AtomicU64::new(0);

async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0 to pick a free port");
    listener
        .local_addr()
        .expect("local address of the port-picking listener")
        .port()
}

/// Sends `PING` on a fresh connection; true when `+PONG` comes back within 500 ms.
async fn ping_port(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"+PONG"))
    };
    matches!(
        timeout(Duration::from_millis(500), attempt).await,
        Ok(Some(true))
    )
}

/// Byte offset just past the complete RESP value starting at `pos`, `None` while incomplete.
fn resp_end(buf: &[u8], pos: usize) -> Option<usize> {
    let kind = *buf.get(pos)?;
    let rel = buf.get(pos..)?.windows(2).position(|w| w == b"\r\n")?;
    let line_end = pos + rel;
    let header = std::str::from_utf8(&buf[pos + 1..line_end]).ok()?;
    let after = line_end + 2;
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(after),
        b'$' | b'!' | b'=' => {
            let n: i64 = header.trim().parse().ok()?;
            let Ok(len) = usize::try_from(n) else {
                return Some(after); // null bulk string
            };
            let end = after + len + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n: i64 = header.trim().parse().ok()?;
            let Ok(count) = usize::try_from(n) else {
                return Some(after); // null array
            };
            let items = if kind == b'%' || kind == b'|' {
                count * 2
            } else {
                count
            };
            let mut p = after;
            for _ in 0..items {
                p = resp_end(buf, p)?;
            }
            Some(p)
        }
        _ => None,
    }
}

/// One Redis command in RESP.
pub fn resp_encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The integer after the last `:` line of a raw RESP reply (e.g. the count in a `PUBSUB NUMSUB ch` reply).
fn last_integer(reply: &str) -> Option<i64> {
    reply
        .split("\r\n")
        .filter_map(|l| l.strip_prefix(':'))
        .last()
        .and_then(|n| n.parse().ok())
}

impl RedisServer {
    /// Starts a redis-server on a free port and waits until it answers `PING` (10 s limit).
    pub async fn start() -> RedisServer {
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port().await;
            let seq = REDIS_SEQ.fetch_add(1, Ordering::Relaxed);
            let log_path = std::env::temp_dir().join(format!(
                "switchboard-redis-{}-{seq}-{port}.log",
                std::process::id()
            ));
            let mut server = RedisServer {
                port,
                child: None,
                log_path,
            };
            match server.launch(Duration::from_secs(10)).await {
                Ok(()) => return server,
                // Most likely someone else took the port between our probe and redis' bind: try another.
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where redis-server's stdout/stderr go.
    pub fn log_path(&self) -> PathBuf {
        self.log_path.clone()
    }

    /// The last `n` lines of the redis-server log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        tail(&lines, n)
    }

    /// True when the server answers `PING` with `+PONG`.
    pub async fn ping(&self) -> bool {
        ping_port(self.port).await
    }

    /// SIGKILLs the server and waits for it to be gone (no-op when not running).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error here means it had already exited, which is what we want anyway.
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Kills the server if it runs, then starts it again on the SAME port (retrying the bind for a few seconds)
    /// and waits until it answers `PING`. The data set is empty afterwards.
    pub async fn restart(&mut self) {
        self.kill().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.launch(Duration::from_secs(10)).await {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!(
                        "redis-server restart on port {} failed, retrying: {e}",
                        self.port
                    );
                    sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("could not restart redis-server on port {}: {e}", self.port),
            }
        }
    }

    /// Sends one command (RESP-encoded) on a fresh connection and returns the raw reply text, e.g.
    /// `"*2\r\n$9\r\nsocket.io\r\n:2\r\n"`. Returns whatever arrived when the reply is still incomplete after
    /// 2 s; panics when the server cannot be reached.
    pub async fn command(&self, args: &[&str]) -> String {
        let mut stream = match TcpStream::connect(("127.0.0.1", self.port)).await {
            Ok(s) => s,
            Err(e) => panic!(
                "redis command {args:?}: cannot connect to 127.0.0.1:{}: {e}",
                self.port
            ),
        };
        if let Err(e) = stream.write_all(&resp_encode(args)).await {
            panic!("redis command {args:?}: write failed: {e}");
        }
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut chunk = [0u8; 4096];
        while resp_end(&buf, 0).is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// `PUBSUB NUMSUB channel` → the subscriber count (classic Pub/Sub).
    pub async fn numsub(&self, channel: &str) -> i64 {
        let reply = self.command(&["PUBSUB", "NUMSUB", channel]).await;
        last_integer(&reply).unwrap_or_else(|| panic!("unexpected PUBSUB NUMSUB reply: {reply:?}"))
    }

    /// `PUBSUB SHARDNUMSUB channel` → the subscriber count (sharded Pub/Sub).
    pub async fn shard_numsub(&self, channel: &str) -> i64 {
        let reply = self.command(&["PUBSUB", "SHARDNUMSUB", channel]).await;
        last_integer(&reply)
            .unwrap_or_else(|| panic!("unexpected PUBSUB SHARDNUMSUB reply: {reply:?}"))
    }

    /// `PUBSUB NUMPAT` → the number of pattern subscriptions.
    pub async fn numpat(&self) -> i64 {
        let reply = self.command(&["PUBSUB", "NUMPAT"]).await;
        last_integer(&reply).unwrap_or_else(|| panic!("unexpected PUBSUB NUMPAT reply: {reply:?}"))
    }

    /// Spawns redis-server on `self.port` and waits for `PING`; Err when it exits or stays silent.
    async fn launch(&mut self, limit: Duration) -> Result<(), String> {
        let exe = redis_server_exe();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("cannot open {}: {e}", self.log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot clone the log file handle: {e}"))?;
        let port = self.port.to_string();
        let spawned = Command::new(&exe)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "no"])
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("`{exe}` not found: {REDIS_HINT}")
            }
            Err(e) => panic!("cannot spawn `{exe}` ({e}): {REDIS_HINT}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "redis-server on port {} exited with {status}; log:\n{}",
                        self.port,
                        self.log_tail(20)
                    ));
                }
            }
            if ping_port(self.port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill().await;
                return Err(format!(
                    "redis-server on port {} did not answer PING within {limit:?}; log:\n{}",
                    self.port,
                    self.log_tail(20)
                ));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "redis-server (port {}) log kept at {}",
                self.port,
                self.log_path.display()
            );
        } else {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Node processes speaking JSON lines
// ---------------------------------------------------------------------------------------------------------

type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Value>>>>>;
type Lines = Arc<Mutex<Vec<String>>>;

/// Why an exchange with a Node process failed.
enum Failure {
    /// The process answered `ok:false` with this error.
    Rejected(String),
    /// No answer: timeout, EOF, write error.
    Transport(String),
}

/// A Node script (run in `tests/clients`) speaking the JSON-lines protocol: each command gets an `"id"`, the
/// answers are routed back by id, so requests may be concurrent. Killed on drop.
pub struct JsProcess {
    label: String,
    child: tokio::sync::Mutex<Child>,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    pending: Pending,
    next_id: AtomicU64,
    stderr: Lines,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
}

impl JsProcess {
    /// Spawns `node <script> args...` with `tests/clients` as working directory (`script` is relative to it,
    /// e.g. `cluster/node-server.js`). `label` prefixes diagnostics.
    pub fn spawn(label: &str, script: &str, args: &[String]) -> JsProcess {
        require_js();
        let node = node_exe();
        let mut child = Command::new(&node)
            .arg(script)
            .args(args)
            .current_dir(clients_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn `{node} {script}` ({e}): {NPM_HINT}"));
        let stdin = child.stdin.take().expect("piped stdin of the node process");
        let stdout = child
            .stdout
            .take()
            .expect("piped stdout of the node process");
        let stderr_pipe = child
            .stderr
            .take()
            .expect("piped stderr of the node process");

        let stderr: Lines = Arc::new(Mutex::new(Vec::new()));
        let echo = std::env::var_os("SWITCHBOARD_JS_LOG").is_some();
        {
            let stderr = Arc::clone(&stderr);
            let label = label.to_string();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr_pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("[{label}] {line}");
                    }
                    push_line(&stderr, line);
                }
            });
        }

        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        {
            let pending = Arc::clone(&pending);
            let stderr = Arc::clone(&stderr);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    route_line(&line, &pending, &stderr, &events_tx);
                }
                // EOF: every waiting request fails now (its sender is dropped), later ones at once.
                lock(&pending).take();
                push_line(&stderr, "[harness] stdout closed".to_string());
            });
        }

        JsProcess {
            label: label.to_string(),
            child: tokio::sync::Mutex::new(child),
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            pending,
            next_id: AtomicU64::new(1),
            stderr,
            events: tokio::sync::Mutex::new(events_rx),
        }
    }

    /// The label given at spawn.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Sends `cmd` (a JSON object; `"id"` is added) and returns the `ok:true` answer. Panics on timeout (20 s),
    /// EOF or `ok:false`, with the command, the error and the last 40 lines of the process's stderr.
    pub async fn request(&self, cmd: Value) -> Value {
        self.request_timeout(cmd, REQUEST_TIMEOUT).await
    }

    /// [`JsProcess::request`] with another time limit.
    pub async fn request_timeout(&self, cmd: Value, limit: Duration) -> Value {
        match self.exchange(cmd.clone(), limit).await {
            Ok(v) => v,
            Err(Failure::Rejected(e)) | Err(Failure::Transport(e)) => {
                panic!("{}", self.failure_report(&cmd, &e).await)
            }
        }
    }

    /// Like [`JsProcess::request`] but an `ok:false` answer comes back as `Err(error)`. Still panics when no
    /// answer arrives (timeout, EOF): that is a harness failure, not an outcome to assert on.
    pub async fn try_request(&self, cmd: Value) -> Result<Value, String> {
        self.try_request_timeout(cmd, REQUEST_TIMEOUT).await
    }

    /// [`JsProcess::try_request`] with another time limit.
    pub async fn try_request_timeout(&self, cmd: Value, limit: Duration) -> Result<Value, String> {
        match self.exchange(cmd.clone(), limit).await {
            Ok(v) => Ok(v),
            Err(Failure::Rejected(e)) => Err(e),
            Err(Failure::Transport(e)) => panic!("{}", self.failure_report(&cmd, &e).await),
        }
    }

    /// The next stdout line without an `"id"` (e.g. node-server's `{"event":"listening",...}`), `None` on
    /// timeout or EOF.
    pub async fn next_event(&self, limit: Duration) -> Option<Value> {
        let mut rx = self.events.lock().await;
        timeout(limit, rx.recv()).await.ok().flatten()
    }

    /// The last 40 lines the process wrote on stderr.
    pub fn stderr_tail(&self) -> String {
        tail(&lock(&self.stderr), TAIL_LINES)
    }

    /// Everything kept from the process's stderr (up to the last 5000 lines).
    pub fn stderr_all(&self) -> String {
        lock(&self.stderr).join("\n")
    }

    /// SIGKILLs the process and waits for it.
    pub async fn kill(&self) {
        let mut child = self.child.lock().await;
        let _ = child.start_kill();
        let _ = child.wait().await;
    }

    /// Closes stdin (the scripts exit on EOF) and waits up to 5 s, then kills.
    pub async fn shutdown(&self) {
        self.stdin.lock().await.take();
        let mut child = self.child.lock().await;
        if timeout(Duration::from_secs(5), child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    async fn exchange(&self, mut cmd: Value, limit: Duration) -> Result<Value, Failure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let Some(obj) = cmd.as_object_mut() else {
            panic!("{}: a command must be a JSON object, got {cmd}", self.label);
        };
        obj.insert("id".to_string(), json!(id));
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            let Some(map) = pending.as_mut() else {
                return Err(Failure::Transport(
                    "the process has closed its stdout (exited?)".to_string(),
                ));
            };
            map.insert(id, tx);
        }
        let mut line = cmd.to_string();
        line.push('\n');
        let written = {
            let mut stdin = self.stdin.lock().await;
            match stdin.as_mut() {
                None => Err("stdin already closed".to_string()),
                Some(pipe) => match pipe.write_all(line.as_bytes()).await {
                    Ok(()) => pipe.flush().await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
            }
        };
        if let Err(e) = written {
            self.forget(id);
            return Err(Failure::Transport(format!("cannot write the command: {e}")));
        }
        let answer = match timeout(limit, rx).await {
            Err(_) => {
                self.forget(id);
                return Err(Failure::Transport(format!("no answer within {limit:?}")));
            }
            Ok(Err(_)) => {
                return Err(Failure::Transport(
                    "the process closed its stdout before answering (exited?)".to_string(),
                ))
            }
            Ok(Ok(v)) => v,
        };
        if answer.get("ok") == Some(&Value::Bool(true)) {
            Ok(answer)
        } else {
            let error = match answer.get("error") {
                Some(Value::String(s)) => s.clone(),
                _ => format!("answer without ok:true: {answer}"),
            };
            Err(Failure::Rejected(error))
        }
    }

    fn forget(&self, id: u64) {
        if let Some(map) = lock(&self.pending).as_mut() {
            map.remove(&id);
        }
    }

    async fn failure_report(&self, cmd: &Value, error: &str) -> String {
        let status = match self.child.try_lock() {
            Ok(mut child) => match child.try_wait() {
                Ok(Some(status)) => format!("exited with {status}"),
                Ok(None) => "still running".to_string(),
                Err(e) => format!("unknown ({e})"),
            },
            Err(_) => "busy".to_string(),
        };
        // Give the stderr reader a moment to catch up with a dying process.
        sleep(Duration::from_millis(100)).await;
        format!(
            "{label}: command {cmd} failed: {error}\n(process {status})\n--- last {TAIL_LINES} lines of {label} stderr ---\n{tail}\n--- end of {label} stderr ---",
            label = self.label,
            tail = self.stderr_tail(),
        )
    }
}

fn push_line(lines: &Lines, line: String) {
    let mut lines = lock(lines);
    lines.push(line);
    if lines.len() > KEEP_LINES {
        let excess = lines.len() - KEEP_LINES;
        lines.drain(..excess);
    }
}

fn route_line(
    line: &str,
    pending: &Pending,
    stderr: &Lines,
    events: &mpsc::UnboundedSender<Value>,
) {
    if line.trim().is_empty() {
        return;
    }
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(_) => {
            push_line(
                stderr,
                format!("[harness] stdout line that is not JSON: {line}"),
            );
            return;
        }
    };
    match value.get("id").and_then(Value::as_u64) {
        Some(id) => {
            let sender = lock(pending).as_mut().and_then(|map| map.remove(&id));
            match sender {
                Some(tx) => {
                    let _ = tx.send(value);
                }
                None => push_line(
                    stderr,
                    format!("[harness] answer nobody waits for (late?): {line}"),
                ),
            }
        }
        None => {
            let _ = events.send(value);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// client-driver.js
// ---------------------------------------------------------------------------------------------------------

/// `tests/clients/cluster/client-driver.js`: many official `socket.io-client` sockets, addressed by name.
/// Each socket records every event it receives (`{"event": name, "args": [...]}`) and answers server acks
/// with `"ack-<name>"`.
pub struct ClientDriver {
    proc: JsProcess,
}

impl ClientDriver {
    /// Starts the driver process.
    pub async fn spawn() -> ClientDriver {
        ClientDriver {
            proc: JsProcess::spawn("client-driver", "cluster/client-driver.js", &[]),
        }
    }

    /// The underlying process (raw requests, stderr).
    pub fn process(&self) -> &JsProcess {
        &self.proc
    }

    /// Raw request (panics on failure), see [`JsProcess::request`].
    pub async fn request(&self, cmd: Value) -> Value {
        self.proc.request(cmd).await
    }

    /// Raw request, `ok:false` as `Err`, see [`JsProcess::try_request`].
    pub async fn try_request(&self, cmd: Value) -> Result<Value, String> {
        self.proc.try_request(cmd).await
    }

    /// Connects socket `name` to `url` (e.g. `http://127.0.0.1:P`) on namespace `nsp`; returns its id.
    pub async fn connect(&self, name: &str, url: &str, nsp: &str) -> String {
        self.connect_with(json!({ "name": name, "url": url, "nsp": nsp }))
            .await
    }

    /// Connect with any fields of the `connect` command (`name`, `url`, `nsp`, `transports`, `auth`,
    /// `reconnection`, `query`, `path`, `timeout_ms`); returns the socket id, panics on `connect_error`.
    pub async fn connect_with(&self, cmd_extra: Value) -> String {
        let answer = self.proc.request(connect_cmd(cmd_extra)).await;
        sid_of(&answer)
    }

    /// [`ClientDriver::connect_with`] returning the `connect_error` message as `Err`.
    pub async fn try_connect_with(&self, cmd_extra: Value) -> Result<String, String> {
        let answer = self.proc.try_request(connect_cmd(cmd_extra)).await?;
        Ok(sid_of(&answer))
    }

    /// `socket.emit(event, ...args)`; `args` must be a JSON array.
    pub async fn emit(&self, name: &str, event: &str, args: Value) {
        self.proc
            .request(json!({ "cmd": "emit", "name": name, "event": event, "args": args }))
            .await;
    }

    /// `socket.timeout(t).emit(event, ...args, cb)`; returns all the ack arguments as a JSON array.
    pub async fn emit_with_ack(
        &self,
        name: &str,
        event: &str,
        args: Value,
        timeout_ms: u64,
    ) -> Value {
        let answer = self
            .proc
            .request_timeout(
                json!({ "cmd": "emitWithAck", "name": name, "event": event, "args": args, "timeout_ms": timeout_ms }),
                REQUEST_TIMEOUT.max(Duration::from_millis(timeout_ms + 5000)),
            )
            .await;
        answer.get("ack").cloned().unwrap_or(Value::Null)
    }

    /// Every event socket `name` recorded so far, in order.
    pub async fn events(&self, name: &str) -> Vec<Value> {
        let answer = self
            .proc
            .request(json!({ "cmd": "events", "name": name }))
            .await;
        array_field(&answer, "events")
    }

    /// The recorded events of socket `name` called `event`, in order.
    pub async fn events_named(&self, name: &str, event: &str) -> Vec<Value> {
        self.events(name)
            .await
            .into_iter()
            .filter(|e| e.get("event").and_then(Value::as_str) == Some(event))
            .collect()
    }

    /// Waits until socket `name` recorded at least `count` events called `event`; returns those events.
    /// Panics (listing what was recorded) after `timeout_ms`.
    pub async fn wait(&self, name: &str, event: &str, count: usize, timeout_ms: u64) -> Vec<Value> {
        let answer = self
            .proc
            .request_timeout(
                json!({ "cmd": "wait", "name": name, "event": event, "count": count, "timeout_ms": timeout_ms }),
                REQUEST_TIMEOUT.max(Duration::from_millis(timeout_ms + 5000)),
            )
            .await;
        array_field(&answer, "events")
    }

    /// Forgets what socket `name` recorded.
    pub async fn clear(&self, name: &str) {
        self.proc
            .request(json!({ "cmd": "clear", "name": name }))
            .await;
    }

    /// `(connected, last disconnect reason)` of socket `name`.
    pub async fn status(&self, name: &str) -> (bool, Option<String>) {
        let answer = self
            .proc
            .request(json!({ "cmd": "status", "name": name }))
            .await;
        let connected = answer.get("connected") == Some(&Value::Bool(true));
        let reason = answer
            .get("disconnect_reason")
            .and_then(Value::as_str)
            .map(str::to_string);
        (connected, reason)
    }

    /// `socket.disconnect()`.
    pub async fn disconnect(&self, name: &str) {
        self.proc
            .request(json!({ "cmd": "disconnect", "name": name }))
            .await;
    }
}

fn connect_cmd(extra: Value) -> Value {
    let mut cmd = Map::new();
    cmd.insert("cmd".to_string(), json!("connect"));
    match extra {
        Value::Object(fields) => cmd.extend(fields),
        other => panic!("connect_with needs a JSON object, got {other}"),
    }
    Value::Object(cmd)
}

fn sid_of(answer: &Value) -> String {
    answer
        .get("sid")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("connect answer without a sid: {answer}"))
        .to_string()
}

fn array_field(answer: &Value, field: &str) -> Vec<Value> {
    answer
        .get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| panic!("answer without a {field:?} array: {answer}"))
}

// ---------------------------------------------------------------------------------------------------------
// node-server.js
// ---------------------------------------------------------------------------------------------------------

/// `tests/clients/cluster/node-server.js`: a Node `socket.io@4` server on the Redis adapter, serving `/` and
/// `/admin` on 127.0.0.1.
pub struct NodeServer {
    proc: JsProcess,
    port: u16,
    name: String,
}

impl NodeServer {
    /// Starts a server on `redis_url` in `mode` (`"classic"` or `"sharded"`) named `name` (its sockets get
    /// `socket.data.server = name`), with `--requests-timeout 2000`; returns once it listens and its adapters'
    /// subscriptions are confirmed by redis.
    pub async fn start(redis_url: &str, mode: &str, name: &str) -> NodeServer {
        Self::start_with(redis_url, mode, name, &[]).await
    }

    /// [`NodeServer::start`] with extra command-line flags, e.g. `["--requests-timeout", "500"]`,
    /// `["--key", "prefix"]`, `["--subscription-mode", "static"]`, `["--specific-response-channel"]`.
    pub async fn start_with(
        redis_url: &str,
        mode: &str,
        name: &str,
        extra_args: &[&str],
    ) -> NodeServer {
        let mut args: Vec<String> = [
            "--redis", redis_url, "--mode", mode, "--port", "0", "--name", name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let proc = JsProcess::spawn(
            &format!("node-server {name}"),
            "cluster/node-server.js",
            &args,
        );
        let listening = proc.next_event(REQUEST_TIMEOUT).await;
        let port = listening
            .as_ref()
            .filter(|v| v.get("event").and_then(Value::as_str) == Some("listening"))
            .and_then(|v| v.get("port"))
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else {
            panic!(
                "node-server {name} did not report listening (got {listening:?})\n--- stderr ---\n{}",
                proc.stderr_tail()
            );
        };
        NodeServer {
            proc,
            port,
            name: name.to_string(),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `--name` it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying process (stderr, kill, shutdown).
    pub fn process(&self) -> &JsProcess {
        &self.proc
    }

    /// Raw request (panics on failure), see [`JsProcess::request`].
    pub async fn request(&self, cmd: Value) -> Value {
        self.proc.request(cmd).await
    }

    /// Raw request, `ok:false` as `Err`, see [`JsProcess::try_request`].
    pub async fn try_request(&self, cmd: Value) -> Result<Value, String> {
        self.proc.try_request(cmd).await
    }

    /// `await io.of(nsp).adapter.serverCount()`.
    pub async fn server_count(&self, nsp: &str) -> u64 {
        let answer = self
            .request(json!({ "cmd": "serverCount", "nsp": nsp }))
            .await;
        answer
            .get("count")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("serverCount answer without a count: {answer}"))
    }

    /// The ids of the sockets `fetchSockets()` returns for `io.of(nsp).to(rooms)`.
    pub async fn fetch_socket_ids(&self, nsp: &str, rooms: &[&str]) -> Vec<String> {
        let answer = self
            .request(json!({ "cmd": "fetchSockets", "nsp": nsp, "rooms": rooms }))
            .await;
        array_field(&answer, "sockets")
            .iter()
            .map(|s| {
                s.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("fetched socket without an id: {s}"))
                    .to_string()
            })
            .collect()
    }

    /// SIGKILLs the server (a crashed cluster node).
    pub async fn kill(&self) {
        self.proc.kill().await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// emitter.js
// ---------------------------------------------------------------------------------------------------------

/// Runs `node cluster/emitter.js --redis <url> '<cmd>'` (one `@socket.io/redis-emitter` publish) and waits for
/// it; panics with its output when it fails.
pub async fn run_emitter(redis_url: &str, cmd: Value) {
    require_js();
    let node = node_exe();
    let run = Command::new(&node)
        .arg("cluster/emitter.js")
        .args(["--redis", redis_url])
        .arg(cmd.to_string())
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match timeout(REQUEST_TIMEOUT, run).await {
        Err(_) => panic!("emitter.js {cmd} did not finish within {REQUEST_TIMEOUT:?}"),
        Ok(Err(e)) => panic!("cannot run `{node} cluster/emitter.js` ({e}): {NPM_HINT}"),
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let ok = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|v| v.get("ok") == Some(&Value::Bool(true)));
    assert!(
        output.status.success() && ok,
        "emitter.js {cmd} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
}
