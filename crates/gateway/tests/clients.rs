//! Client-compatibility tests: drive the OFFICIAL Socket.IO clients (Node `socket.io-client`, Python
//! `python-socketio`) against the `switchboard` binary using the scripts in `tests/clients/`.
//!
//! Prerequisites (installed by `scripts/test.sh`): `npm ci` in `tests/clients` and
//! `pip install -r tests/clients/requirements.txt`. Missing prerequisites make the tests FAIL, never skip.
//!
//! Overrides (optional): `SWITCHBOARD_BIN` (gateway executable, default: the cargo-built `switchboard`),
//! `SWITCHBOARD_NODE` (default `node`), `SWITCHBOARD_PYTHON` (default `python3`).

mod support;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};
use support::parse_addr;

/// How long a script may run before the harness kills it (the scripts have their own ~15 s limit).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(40);
/// How long the gateway may take to print its `socket.io listening addr=...` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

fn workspace_root() -> PathBuf {
    let raw = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    raw.canonicalize().unwrap_or(raw)
}

fn clients_dir() -> PathBuf {
    workspace_root().join("tests").join("clients")
}

fn gateway_bin() -> String {
    std::env::var("SWITCHBOARD_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").to_string())
}

fn node_exe() -> String {
    std::env::var("SWITCHBOARD_NODE").unwrap_or_else(|_| "node".to_string())
}

fn python_exe() -> String {
    std::env::var("SWITCHBOARD_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Shared, growing text log filled by drain threads.
type Log = Arc<Mutex<String>>;

fn log_text(log: &Log) -> String {
    log.lock().map(|s| s.clone()).unwrap_or_default()
}

fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

/// Spawns a thread that copies `reader` line by line into `log` and hands every line to `tx`.
fn drain<R: Read + Send + 'static>(
    reader: R,
    prefix: &'static str,
    log: Log,
    tx: Option<mpsc::Sender<String>>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    if let Ok(mut l) = log.lock() {
                        l.push_str(prefix);
                        l.push_str(&line);
                        l.push('\n');
                    }
                    if let Some(tx) = &tx {
                        // the receiver may be gone (we only care about the first lines); keep draining anyway
                        let _ = tx.send(line);
                    }
                }
            }
        }
    });
}

/// A running gateway process, killed on drop.
struct Gateway {
    child: Child,
    addr: SocketAddr,
    log: Log,
}

impl Gateway {
    /// Starts the gateway with `--listen <listen> --admin-listen 127.0.0.1:0 <flags>` and waits for its address.
    fn start(listen: &str, flags: &[&str]) -> Result<Gateway, String> {
        let bin = gateway_bin();
        let mut child = Command::new(&bin)
            .args(["--listen", listen, "--admin-listen", "127.0.0.1:0"])
            // The scenarios test client compatibility, whole-namespace publishes included;
            // the publish scope has its own tests (security.rs).
            .args(["--publish-scope", "any"])
            .args(flags)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot spawn gateway {bin:?}: {e}"))?;
        let log: Log = Arc::default();
        let (tx, rx) = mpsc::channel();
        // The contract says stderr; read stdout too so a logger writing there still works and never blocks.
        if let Some(err) = child.stderr.take() {
            drain(err, "[gw] ", log.clone(), Some(tx.clone()));
        }
        if let Some(out) = child.stdout.take() {
            drain(out, "[gw:stdout] ", log.clone(), Some(tx));
        }
        let mut gw = Gateway {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(addr) = parse_addr(&line, "socket.io listening") {
                        gw.addr = addr;
                        return Ok(gw);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(50));
                }
            }
            if let Ok(Some(status)) = gw.child.try_wait() {
                return Err(format!(
                    "gateway exited ({status}) before logging `socket.io listening addr=...`:\n{}",
                    log_text(&gw.log)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "gateway did not log `socket.io listening addr=...` within {STARTUP_TIMEOUT:?}:\n{}",
                    log_text(&gw.log)
                ));
            }
        }
    }

    /// Starts the gateway on an exact address, retrying for a while if it exits early (port still busy).
    fn start_on(addr: SocketAddr, flags: &[&str]) -> Gateway {
        let listen = addr.to_string();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match Gateway::start(&listen, flags) {
                Ok(gw) => return gw,
                Err(e) if e.starts_with("gateway exited") && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("could not restart the gateway on {listen}: {e}"),
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug)]
enum Lang {
    Js,
    Py,
}

fn check_node_prereqs() -> Result<(), String> {
    let dir = clients_dir();
    if !dir
        .join("node_modules/socket.io-client/package.json")
        .is_file()
    {
        return Err(format!(
            "socket.io-client is not installed in {}: run scripts/test.sh (or `npm ci` in tests/clients)",
            dir.display()
        ));
    }
    match Command::new(node_exe()).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`{} --version` failed: {o:?}; run scripts/test.sh",
            node_exe()
        )),
        Err(e) => Err(format!(
            "cannot run `{}` ({e}): install Node.js and run scripts/test.sh",
            node_exe()
        )),
    }
}

fn check_python_prereqs() -> Result<(), String> {
    match Command::new(python_exe())
        .args(["-c", "import socketio, engineio, websocket, requests"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "python-socketio client is not importable by `{}`: run scripts/test.sh \
             (or `pip install -r tests/clients/requirements.txt`)\n{}",
            python_exe(),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(format!(
            "cannot run `{}` ({e}): install Python 3 and run scripts/test.sh",
            python_exe()
        )),
    }
}

fn require(lang: Lang) {
    static NODE: OnceLock<Result<(), String>> = OnceLock::new();
    static PY: OnceLock<Result<(), String>> = OnceLock::new();
    let res = match lang {
        Lang::Js => NODE.get_or_init(check_node_prereqs),
        Lang::Py => PY.get_or_init(check_python_prereqs),
    };
    if let Err(msg) = res {
        panic!("client-compat prerequisites missing: {msg}");
    }
}

fn script_command(lang: Lang, scenario: &str, url: &str, extra: &[&str]) -> Command {
    let dir = clients_dir();
    let mut cmd = match lang {
        Lang::Js => {
            let mut c = Command::new(node_exe());
            c.arg(dir.join("js").join(format!("{scenario}.js")));
            c
        }
        Lang::Py => {
            let mut c = Command::new(python_exe());
            c.arg(dir.join("py").join(format!("{scenario}.py")));
            c.env("PYTHONUNBUFFERED", "1")
                .env("PYTHONDONTWRITEBYTECODE", "1");
            c
        }
    };
    cmd.arg(url)
        .args(extra)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A running client script with its output collected in the background.
struct Script {
    child: Child,
    what: String,
    out: Log,
    lines: mpsc::Receiver<String>,
}

impl Script {
    fn spawn(lang: Lang, scenario: &str, url: &str, extra: &[&str]) -> Script {
        let what = format!("{lang:?} client scenario `{scenario}`");
        let mut child = script_command(lang, scenario, url, extra)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
        let out: Log = Arc::default();
        let (tx, lines) = mpsc::channel();
        if let Some(o) = child.stdout.take() {
            drain(o, "[stdout] ", out.clone(), Some(tx));
        }
        if let Some(e) = child.stderr.take() {
            drain(e, "[stderr] ", out.clone(), None);
        }
        Script {
            child,
            what,
            out,
            lines,
        }
    }

    fn fail(&mut self, why: &str, gateways: &[&Gateway]) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(100)); // let the drain threads catch up
        let mut msg = format!(
            "{} {why}\n--- script output ---\n{}\n",
            self.what,
            log_text(&self.out)
        );
        for gw in gateways {
            msg.push_str(&format!(
                "--- gateway log (tail) ---\n{}\n",
                tail(&log_text(&gw.log), 60)
            ));
        }
        panic!("{msg}");
    }

    /// Waits for a stdout line equal to `want`.
    fn wait_line(&mut self, want: &str, timeout: Duration, gateways: &[&Gateway]) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                Ok(line) if line.trim() == want => return,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(50));
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(
                    &format!("exited ({status}) before printing {want}"),
                    gateways,
                );
            }
            if left.is_zero() {
                self.fail(
                    &format!("did not print {want} within {timeout:?}"),
                    gateways,
                );
            }
        }
    }

    /// Waits for the script to exit and asserts success.
    fn finish(&mut self, gateways: &[&Gateway]) {
        let deadline = Instant::now() + SCRIPT_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return,
                Ok(Some(status)) => {
                    thread::sleep(Duration::from_millis(100));
                    self.fail(&format!("failed ({status})"), gateways);
                }
                Ok(None) if Instant::now() > deadline => {
                    self.fail(
                        &format!("still running after {SCRIPT_TIMEOUT:?}; killed"),
                        gateways,
                    );
                }
                Ok(None) => thread::sleep(Duration::from_millis(50)),
                Err(e) => self.fail(&format!("could not be waited for: {e}"), gateways),
            }
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a gateway with `flags`, runs one scenario script against it, asserts exit 0.
fn run_scenario(lang: Lang, scenario: &str, flags: &[&str], extra: &[&str]) {
    require(lang);
    let gw = Gateway::start("127.0.0.1:0", flags).unwrap_or_else(|e| panic!("{e}"));
    let mut script = Script::spawn(lang, scenario, &gw.url(), extra);
    script.finish(&[&gw]);
}

/// Scenario g: the script prints READY, we restart the gateway on the same port, the script must reconnect.
fn run_reconnect(lang: Lang) {
    require(lang);
    let gw = Gateway::start("127.0.0.1:0", &[]).unwrap_or_else(|e| panic!("{e}"));
    let addr = gw.addr;
    let mut script = Script::spawn(lang, "reconnect", &gw.url(), &[]);
    script.wait_line("READY", Duration::from_secs(20), &[&gw]);
    drop(gw); // SIGKILL: the clients see the connection drop
    let gw2 = Gateway::start_on(addr, &[]);
    script.wait_line("RECONNECTED", Duration::from_secs(30), &[&gw2]);
    script.finish(&[&gw2]);
}

macro_rules! scenario_tests {
    ($($name:ident => $lang:ident, $scenario:literal, [$($flag:literal),*];)*) => {
        $(
            #[test]
            fn $name() {
                run_scenario(Lang::$lang, $scenario, &[$($flag),*], &[]);
            }
        )*
    };
}

scenario_tests! {
    js_connect => Js, "connect", [];
    py_connect => Py, "connect", [];
    js_ack => Js, "ack", [];
    py_ack => Py, "ack", [];
    js_binary => Js, "binary", [];
    py_binary => Py, "binary", [];
    js_rooms => Js, "rooms", [];
    py_rooms => Py, "rooms", [];
    js_namespaces => Js, "namespaces", ["--namespace", "/chat"];
    py_namespaces => Py, "namespaces", ["--namespace", "/chat"];
    js_auth => Js, "auth", ["--auth-token", "s3cret"];
    py_auth => Py, "auth", ["--auth-token", "s3cret"];
}

#[test]
fn js_reconnect() {
    run_reconnect(Lang::Js);
}

#[test]
fn py_reconnect() {
    run_reconnect(Lang::Py);
}

#[test]
fn addr_parsing() {
    let line = "2026-01-01T00:00:00.000000Z  INFO switchboard_gateway: socket.io listening addr=127.0.0.1:4567";
    assert_eq!(
        parse_addr(line, "socket.io listening"),
        Some(SocketAddr::from(([127, 0, 0, 1], 4567)))
    );
    let colored = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m socket.io listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:99";
    assert_eq!(
        parse_addr(colored, "socket.io listening"),
        Some(SocketAddr::from(([127, 0, 0, 1], 99)))
    );
    assert_eq!(
        parse_addr("admin listening addr=127.0.0.1:1", "socket.io listening"),
        None
    );
}
