//! Shared by the gateway's integration tests: reading the gateway's startup log.
#![allow(dead_code)]

use std::net::SocketAddr;

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c2 in chars.by_ref() {
                    if c2.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Extracts the `addr=HOST:PORT` value from a log line that contains `marker`.
pub fn parse_addr(line: &str, marker: &str) -> Option<SocketAddr> {
    let line = strip_ansi(line);
    if !line.contains(marker) {
        return None;
    }
    line.split_whitespace()
        .filter_map(|tok| tok.strip_prefix("addr="))
        .map(|v| v.trim_matches(|c: char| c == '"' || c == ',' || c == '}' || c == '{'))
        .find_map(|v| v.parse().ok())
}
