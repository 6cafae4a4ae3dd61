//! Server-side cost from `/proc`: CPU time (`/proc/PID/stat` utime + stime) and resident memory
//! (`/proc/PID/status` VmRSS) of the server processes named with `--server-pid`.

use serde::Serialize;
use std::sync::OnceLock;

/// CPU time and RSS of a set of processes at one moment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sample {
    /// utime + stime of all processes, µs.
    pub cpu_us: u64,
    /// Sum of VmRSS, bytes.
    pub rss_bytes: u64,
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when that fails).
fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// utime + stime in µs from the text of `/proc/PID/stat`.
fn parse_stat_cpu_us(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 overall are the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / ticks_per_second())
}

/// VmRSS in bytes from the text of `/proc/PID/status`.
fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples every pid; a process that is gone counts as zero.
pub fn sample(pids: &[u32]) -> Sample {
    let mut s = Sample::default();
    for pid in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            s.cpu_us += parse_stat_cpu_us(&stat).unwrap_or(0);
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            s.rss_bytes += parse_status_rss(&status).unwrap_or(0);
        }
    }
    s
}

/// Checks that every pid exists, for a config error that names the flag.
pub fn check_pids(pids: &[u32]) -> Result<(), String> {
    for pid in pids {
        if std::fs::metadata(format!("/proc/{pid}/stat")).is_err() {
            return Err(format!(
                "--server-pid {pid}: no such process (give the pid of a running server)"
            ));
        }
    }
    Ok(())
}

/// The server-side figures of one run, for the JSON line.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ServerCost {
    /// The sampled pids.
    pub pids: Vec<u32>,
    /// Total RSS before the load connected, bytes.
    pub rss_baseline_bytes: u64,
    /// Total RSS when all connections were up, bytes.
    pub rss_loaded_bytes: u64,
    /// Total RSS at the end of the measured phase, bytes.
    pub rss_end_bytes: u64,
    /// CPU time the servers used during the measured phase, µs.
    pub cpu_us: u64,
    /// `cpu_us` per delivery received (fanout, crossnode, sweep).
    pub cpu_us_per_delivery: Option<f64>,
    /// `cpu_us` per completed handshake (storm).
    pub cpu_us_per_handshake: Option<f64>,
    /// (RSS at the end − baseline) / connections (idle).
    pub rss_bytes_per_connection: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_and_rss() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        let cpu = parse_stat_cpu_us(stat).expect("parses");
        assert_eq!(cpu, 300 * 1_000_000 / ticks_per_second());
        assert_eq!(
            parse_status_rss("Name:\tx\nVmRSS:\t  1234 kB\n"),
            Some(1234 * 1024)
        );
        let own = sample(&[std::process::id()]);
        assert!(own.rss_bytes > 0);
    }
}
