//! The optional TOML file (`--config FILE`) and `--print-config`.
//!
//! The file's keys are the long option names (`proxy-timeout` or `proxy_timeout`). Each value
//! becomes that option's default, so the precedence is: command line, then `SWITCHBOARD_*`
//! environment, then the file, then the built-in default. Every option is covered, with no
//! per-option code. Each value is checked by the option's own parser, and a bad key or value
//! exits 64 naming the key and the file. An error found later by [`crate::config::Args::validate`]
//! is annotated with where the option it names came from.

use clap::parser::ValueSource;
use clap::{ArgMatches, Command, CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `--config` and `--print-config`.
#[derive(Debug, Clone, clap::Args)]
pub struct FileArgs {
    /// TOML file with any of these options (keys are the option names without `--`, e.g.
    /// `proxy-timeout = "2s"`). Command line and SWITCHBOARD_* variables take precedence.
    #[arg(long, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the resolved configuration as TOML (secrets redacted), then exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Environment names of the options that became durations, and the option each sets (same
/// meaning as before: a bare number is milliseconds, or seconds for the drain).
pub const LEGACY_ENV: &[(&str, &str)] = &[
    ("SWITCHBOARD_PING_INTERVAL_MS", "ping-interval"),
    ("SWITCHBOARD_PING_TIMEOUT_MS", "ping-timeout"),
    ("SWITCHBOARD_CONNECT_TIMEOUT_MS", "connect-timeout"),
    ("SWITCHBOARD_DRAIN_TIMEOUT_SECS", "drain-timeout"),
    ("SWITCHBOARD_REQUESTS_TIMEOUT_MS", "requests-timeout"),
];

/// A duration in human text (`250ms`, `5s`); a bare number is milliseconds.
pub fn duration_ms(text: &str) -> Result<Duration, String> {
    duration(text, Duration::from_millis)
}

/// A duration in human text (`30s`, `2m`); a bare number is seconds.
pub fn duration_secs(text: &str) -> Result<Duration, String> {
    duration(text, Duration::from_secs)
}

fn duration(text: &str, bare: fn(u64) -> Duration) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Ok(bare(n));
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (write e.g. 250ms, 5s or 2m)"))
}

/// Options that make no sense in the file.
const NOT_IN_FILE: &[&str] = &["config", "print-config", "help", "version"];

/// A loaded file: its path and its `(option long name, key as written, values)` entries.
struct FileValues {
    path: PathBuf,
    entries: Vec<(String, String, Vec<String>)>,
}

/// Where each option's value came from (command line, environment, file, default).
pub struct Resolved {
    legacy: Vec<(&'static str, &'static str)>,
    matches: ArgMatches,
    command: Command,
    file: Option<FileValues>,
}

fn fail(message: String) -> ! {
    eprintln!("switchboard: invalid configuration: {message}");
    std::process::exit(crate::EXIT_CONFIG);
}

/// `--config`'s value on the command line, else `SWITCHBOARD_CONFIG`.
fn config_path(argv: &[OsString], env: Option<OsString>) -> Option<PathBuf> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    env.filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads the file and checks every key and value against `command`.
fn load(path: &Path, command: &Command) -> Result<FileValues, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--config {shown}: {e}; give a readable TOML file"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("--config {shown}: not valid TOML: {e}"))?;
    let mut entries = Vec::new();
    for (key, value) in table {
        let written = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(written.as_str())
                    || a.get_all_aliases().is_some_and(|al| al.contains(&written.as_str()))
            })
            .filter(|_| !NOT_IN_FILE.contains(&written.as_str()))
            .ok_or_else(|| {
                format!("{shown}: unknown key `{key}`; the keys are the option names of `switchboard --help`")
            })?;
        let long = arg.get_long().unwrap_or(written.as_str()).to_owned();
        let values = match &value {
            toml::Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("{shown}: key `{key}`: an array of strings or numbers"))?,
            other => vec![scalar(other)
                .ok_or_else(|| format!("{shown}: key `{key}`: a string, number or boolean"))?],
        };
        // The option's own parser checks the value.
        let mut argv: Vec<String> = vec!["switchboard".into()];
        for v in &values {
            argv.push(format!("--{long}={v}"));
        }
        let takes_value = arg.get_action().takes_values();
        if !takes_value {
            if values != ["true"] && values != ["false"] {
                return Err(format!("{shown}: key `{key}`: true or false"));
            }
        } else if let Err(e) = command.clone().try_get_matches_from(&argv) {
            let text = e.to_string();
            let detail = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            return Err(format!(
                "{shown}: key `{key}`: {detail}; see `switchboard --help` for --{long}"
            ));
        }
        entries.push((long, key, values));
    }
    Ok(FileValues {
        path: path.to_owned(),
        entries,
    })
}

/// Parses the command line, the environment and the optional file; exits 64 on any error
/// (0 for `--help` and `--version`).
pub fn parse() -> (crate::config::Args, Resolved) {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let mut command = crate::config::Args::command();
    let file = config_path(&argv, std::env::var_os("SWITCHBOARD_CONFIG"))
        .map(|p| load(&p, &command).unwrap_or_else(|e| fail(e)));
    if let Some(file) = &file {
        for (long, _, values) in &file.entries {
            let id = command
                .get_arguments()
                .find(|a| a.get_long() == Some(long.as_str()))
                .map(|a| a.get_id().clone());
            if let Some(id) = id {
                let values = values.clone();
                command = command.mut_arg(id, move |a| {
                    if a.get_action().takes_values() {
                        a.default_values(values)
                    } else {
                        a.default_value(if values == ["true"] { "true" } else { "false" })
                    }
                });
            }
        }
    }
    // The old environment names still work, above the file and below the new names.
    let mut legacy = Vec::new();
    for (var, long) in LEGACY_ENV {
        let new_var = command
            .get_arguments()
            .find(|a| a.get_long() == Some(*long))
            .and_then(|a| a.get_env().map(|e| e.to_owned()));
        let Some(value) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        if new_var.is_some_and(|n| std::env::var_os(n).is_some()) {
            continue;
        }
        let id = command
            .get_arguments()
            .find(|a| a.get_long() == Some(*long))
            .map(|a| a.get_id().clone());
        if let Some(id) = id {
            command = command.mut_arg(id, move |a| a.default_value(value));
            legacy.push((*long, *var));
        }
    }
    let matches = match command.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let _ = e.print();
            std::process::exit(crate::EXIT_CONFIG);
        }
    };
    let args =
        crate::config::Args::from_arg_matches(&matches).unwrap_or_else(|e| fail(e.to_string()));
    (
        args,
        Resolved {
            matches,
            command,
            file,
            legacy,
        },
    )
}

impl Resolved {
    /// Where the option `--long` got its value, for error messages.
    pub fn source_of(&self, long: &str) -> String {
        let Some(arg) = self
            .command
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
        else {
            return String::new();
        };
        match self.matches.value_source(arg.get_id().as_str()) {
            Some(ValueSource::CommandLine) => "from the command line".into(),
            Some(ValueSource::EnvVariable) => format!(
                "from the environment ({})",
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            Some(ValueSource::DefaultValue) => {
                if let Some((_, var)) = self.legacy.iter().find(|(l, _)| *l == long) {
                    return format!("from the environment ({var})");
                }
                let key = self.file.as_ref().and_then(|f| {
                    f.entries
                        .iter()
                        .find(|(l, _, _)| l == long)
                        .map(|(_, k, _)| (f.path.display().to_string(), k.clone()))
                });
                match key {
                    Some((path, key)) => format!("from {path}, key `{key}`"),
                    None => "the default".into(),
                }
            }
            _ => String::new(),
        }
    }

    /// `error` with the source of the first option it names appended.
    pub fn annotate(&self, error: &str) -> String {
        let named = error
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .find_map(|w| w.strip_prefix("--").filter(|w| !w.is_empty()));
        match named.map(|long| self.source_of(long)) {
            Some(source) if !source.is_empty() => {
                format!("{error} (--{} {source})", named.unwrap_or_default())
            }
            _ => error.to_owned(),
        }
    }

    /// The resolved options as TOML, secrets (options whose environment values are hidden)
    /// redacted, each with where it came from.
    pub fn print(&self) -> String {
        let mut out = String::from("# switchboard: resolved configuration (secrets redacted)\n");
        // In --help order (the file's options were moved to the end by `mut_arg`).
        let order = crate::config::Args::command();
        for arg in order.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if NOT_IN_FILE.contains(&long) {
                continue;
            }
            let id = arg.get_id().as_str();
            let values: Vec<String> = self
                .matches
                .get_raw(id)
                .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let source = self.source_of(long);
            if values.is_empty() {
                out.push_str(&format!("# {long} is unset\n"));
                continue;
            }
            let secret = arg.is_hide_env_values_set();
            let quoted: Vec<String> = values
                .iter()
                .map(|v| {
                    if secret {
                        "\"<redacted>\"".to_owned()
                    } else if v.parse::<i64>().is_ok() && !v.starts_with('+') {
                        v.clone()
                    } else {
                        toml::Value::String(v.clone()).to_string()
                    }
                })
                .collect();
            let rendered = if arg.get_num_args().is_some_and(|n| n.max_values() > 1)
                || arg.get_value_delimiter().is_some()
            {
                format!("[{}]", quoted.join(", "))
            } else {
                quoted.join(", ")
            };
            out.push_str(&format!("{long} = {rendered}  # {source}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_keep_the_old_unit() {
        assert_eq!(duration_ms("250"), Ok(Duration::from_millis(250)));
        assert_eq!(duration_ms("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration_secs("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration_secs("1m 5s"), Ok(Duration::from_secs(65)));
        assert!(duration_ms("soon").is_err());
    }

    #[test]
    fn config_path_from_argv_or_env() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&argv(&["sb", "--config", "a.toml"]), None),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(&argv(&["sb", "--config=b.toml"]), Some("c.toml".into())),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(
            config_path(&argv(&["sb"]), Some("c.toml".into())),
            Some(PathBuf::from("c.toml"))
        );
        assert_eq!(config_path(&argv(&["sb"]), Some("".into())), None);
    }

    #[test]
    fn file_keys_and_values_are_checked() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cmd = crate::config::Args::command();
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write");
            p
        };
        let ok = load(
            &write(
                "ok.toml",
                "proxy_timeout = \"2s\"\nnamespace = [\"/a\", \"/b\"]\nmax-payload = 5000\n",
            ),
            &cmd,
        )
        .expect("valid");
        assert_eq!(ok.entries.len(), 3);
        let err = load(&write("typo.toml", "proxy_timout = \"2s\"\n"), &cmd)
            .err()
            .expect("unknown key");
        assert!(err.contains("unknown key `proxy_timout`"), "{err}");
        let err = load(&write("bad.toml", "proxy-timeout = \"soon\"\n"), &cmd)
            .err()
            .expect("bad value");
        assert!(err.contains("key `proxy-timeout`"), "{err}");
        let err = load(&write("nested.toml", "[proxy]\nurl = \"x\"\n"), &cmd)
            .err()
            .expect("table");
        assert!(err.contains("unknown key `proxy`"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
