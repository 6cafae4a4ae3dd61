//! The TOML config file through the `switchboard` binary: precedence (command line >
//! SWITCHBOARD_* > file > default) as `--print-config` shows it, secrets redacted, exit 64
//! naming the key and the file, and a node configured by its file alone serving the API.

mod backend_support;
mod support;

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    // The test's own environment must not leak SWITCHBOARD_* settings into the child.
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHBOARD_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("switchboard-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write the config file");
        p.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{key} =")))
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

#[test]
fn precedence_is_flags_then_environment_then_file_then_defaults() {
    let dir = TempDir::new("precedence");
    let file = dir.file(
        "gw.toml",
        "proxy-url = \"http://127.0.0.1:8000/hooks\"\nproxy_timeout = \"2s\"\nproxy-retries = 5\n\
         proxy-queue = 8\nnamespace = [\"/a\", \"/b\"]\napi-token = \"file-secret-0123456789\"\n",
    );
    let out = bin()
        .args(["--config", &file, "--print-config", "--proxy-retries", "1"])
        .env("SWITCHBOARD_PROXY_TIMEOUT", "3s")
        .env("SWITCHBOARD_PROXY_QUEUE", "9")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        line(&text, "proxy-retries").starts_with("proxy-retries = 1  # from the command line"),
        "{text}"
    );
    assert!(
        line(&text, "proxy-timeout")
            .contains("\"3s\"  # from the environment (SWITCHBOARD_PROXY_TIMEOUT)"),
        "{text}"
    );
    assert!(
        line(&text, "proxy-queue").starts_with("proxy-queue = 9"),
        "{text}"
    );
    assert!(
        line(&text, "proxy-url").contains(&format!("from {file}, key `proxy-url`")),
        "{text}"
    );
    assert!(
        line(&text, "namespace").starts_with("namespace = [\"/a\", \"/b\"]"),
        "{text}"
    );
    assert!(
        line(&text, "max-payload").starts_with("max-payload = 1000000  # the default"),
        "{text}"
    );
    assert!(
        line(&text, "api-token").starts_with("api-token = \"<redacted>\""),
        "{text}"
    );
    assert!(
        !text.contains("file-secret"),
        "secrets never printed:\n{text}"
    );

    // The same file through SWITCHBOARD_CONFIG.
    let out = bin()
        .arg("--print-config")
        .env("SWITCHBOARD_CONFIG", &file)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(line(&text, "proxy-timeout").contains("\"2s\""), "{text}");
}

#[test]
fn bad_files_exit_64_naming_the_key_and_where_it_came_from() {
    let dir = TempDir::new("bad");
    let cases = [
        (
            "typo.toml",
            "proxy_timout = \"2s\"\n",
            "unknown key `proxy_timout`",
        ),
        (
            "value.toml",
            "proxy-timeout = \"soon\"\n",
            "key `proxy-timeout`",
        ),
        ("toml.toml", "proxy-timeout = \n", "not valid TOML"),
        (
            "checked.toml",
            "proxy-url = \"https://backend\"\n",
            "--proxy-url",
        ),
    ];
    for (name, text, expected) in cases {
        let file = dir.file(name, text);
        let out = bin().args(["--config", &file]).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(64), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err}");
    }
    // A value checked after parsing names the file and the key it came from.
    let file = dir.file("zero.toml", "ping-interval-ms = 0\n");
    let out = bin().args(["--config", &file]).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains(&format!("from {file}, key `ping-interval-ms`")),
        "{err}"
    );
    let out = bin()
        .args(["--config", "/nonexistent/gw.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let out = bin().arg("--no-such-flag").output().expect("run");
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_from_its_file() {
    let dir = TempDir::new("run");
    let file = dir.file(
        "gw.toml",
        "listen = \"127.0.0.1:0\"\nadmin-listen = \"127.0.0.1:0\"\napi-token = \"from-the-file-0123456789\"\nlog-format = \"text\"\n",
    );
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--config", &file]).env("RUST_LOG", "info");
    let g = support::GatewayProcess::spawn(cmd, "gateway from a file").await;
    let (status, rooms) = backend_support::json_request(
        g.admin,
        "GET",
        "/api/v1/rooms",
        Some("from-the-file-0123456789"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rooms}");
    assert_eq!(rooms["rooms"], serde_json::json!([]));
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let mut child = bin()
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--log-format", "json", "--log", "info"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut found = None;
    for l in BufReader::new(stderr).lines().take(20) {
        let l = l.expect("read the log");
        let v: serde_json::Value =
            serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        if v["message"] == "socket.io listening" {
            found = Some(v);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let v = found.expect("the listening line");
    assert_eq!(v["level"], "INFO");
    assert!(
        v["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{v}"
    );
    let bad = bin().args(["--log", "info,=[bad"]).output().expect("run");
    assert_eq!(bad.status.code(), Some(64));
}

#[test]
fn every_option_is_documented_in_operations_md() {
    let help = bin().arg("--help").output().expect("run --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/operations.md"
    ))
    .expect("docs/operations.md");
    let options: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', ',']).next())
        .filter(|o| !["help", "version"].contains(o))
        .collect();
    assert!(options.len() > 20, "{help}");
    for o in options {
        assert!(
            doc.contains(&format!("`--{o}`")),
            "--{o} is not in docs/operations.md"
        );
    }
}

#[test]
fn timeouts_are_durations_and_the_old_names_still_work() {
    let out = bin()
        .args([
            "--print-config",
            "--ping-interval",
            "1500ms",
            "--connect-timeout-ms",
            "700",
        ])
        .env("SWITCHBOARD_DRAIN_TIMEOUT_SECS", "20")
        .env("SWITCHBOARD_REQUESTS_TIMEOUT_MS", "900")
        .env("SWITCHBOARD_REQUESTS_TIMEOUT", "2s")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(
        line(&text, "ping-interval").starts_with("ping-interval = \"1500ms\""),
        "{text}"
    );
    assert!(
        line(&text, "connect-timeout")
            .starts_with("connect-timeout = 700  # from the command line"),
        "{text}"
    );
    assert!(
        line(&text, "drain-timeout")
            .contains("# from the environment (SWITCHBOARD_DRAIN_TIMEOUT_SECS)"),
        "{text}"
    );
    assert!(
        line(&text, "requests-timeout").starts_with("requests-timeout = \"2s\""),
        "the new name wins: {text}"
    );
    assert!(
        !err.contains("unknown SWITCHBOARD_"),
        "old names are known: {err}"
    );
    let out = bin()
        .args(["--drain-timeout", "soon"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let out = bin()
        .args(["--adapter-mode", "clasic"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: classic, sharded"));
}
