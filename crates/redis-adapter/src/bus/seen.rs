//! The other nodes this one heard from recently, so that a request that times out can name
//! the nodes that stayed silent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a node that sent us something counts as "known" when naming silent nodes.
const SEEN_TTL: Duration = Duration::from_secs(60);
/// Past this many entries, expired ones are swept on insert.
const SWEEP_ABOVE: usize = 1024;

/// Node id → when it was last heard from.
#[derive(Default)]
pub(crate) struct SeenNodes {
    seen: Mutex<HashMap<String, Instant>>,
}

impl SeenNodes {
    /// Notes that node `uid` is alive.
    pub(crate) fn note(&self, uid: &str) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let now = Instant::now();
        if seen.len() > SWEEP_ABOVE {
            seen.retain(|_, t| now.duration_since(*t) < SEEN_TTL);
        }
        if let Some(t) = seen.get_mut(uid) {
            *t = now;
        } else {
            seen.insert(uid.to_owned(), now);
        }
    }

    /// Nodes heard from within the last minute, sorted.
    pub(crate) fn recent(&self) -> Vec<String> {
        let now = Instant::now();
        let mut out: Vec<String> = self
            .seen
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(_, t)| now.duration_since(**t) < SEEN_TTL)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_listed_once_and_sorted() {
        let s = SeenNodes::default();
        s.note("b");
        s.note("a");
        s.note("b");
        assert_eq!(s.recent(), vec!["a".to_owned(), "b".to_owned()]);
    }
}
