//! Redis Cluster mode: the nodes of the cluster as one task sees them, the slot map (refreshed
//! from `CLUSTER SLOTS` on any reachable node, seeds first) and one connection per master,
//! opened on first use and forgotten when it fails.

use super::slots::{host_of, node_url, Addr, SlotMap};
use super::BusState;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use std::collections::HashMap;
use std::sync::Arc;

/// Topology and connections of one task.
pub(super) struct Nodes {
    shared: Arc<BusState>,
    /// The slot map last read; `None` until the first is.
    pub(super) map: Option<SlotMap>,
    /// True until the slot map is read and every master reached, and again after a failure
    /// (a redirect, a lost connection) that calls for reading it again.
    pub(super) stale: bool,
    conns: HashMap<Addr, MultiplexedConnection>,
}

impl Nodes {
    pub(super) fn new(shared: Arc<BusState>) -> Self {
        Self {
            shared,
            map: None,
            stale: true,
            conns: HashMap::new(),
        }
    }

    /// Connection settings of this task's connections (no push sender).
    fn connection_config(&self) -> AsyncConnectionConfig {
        let c = &self.shared.config;
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(c.connect_timeout))
            .set_response_timeout(Some(c.publish_timeout))
    }

    /// Opens a connection to `addr` with `cfg`, at most the connect timeout.
    pub(super) async fn open(
        shared: &BusState,
        addr: &str,
        cfg: &AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, String> {
        let url = node_url(&shared.config.url, addr);
        let client = super::client::client_for(&shared.config, &url)?;
        match tokio::time::timeout(
            shared.config.connect_timeout,
            client.get_multiplexed_async_connection_with_config(cfg),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
            Err(_) => Err(format!("connecting to {addr} timed out")),
        }
    }

    /// The connection to `addr`, opened if needed.
    pub(super) async fn conn(&mut self, addr: &str) -> Result<MultiplexedConnection, String> {
        if let Some(c) = self.conns.get(addr) {
            return Ok(c.clone());
        }
        let cfg = self.connection_config();
        let c = Self::open(&self.shared, addr, &cfg).await?;
        self.conns.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// Forgets the connection to `addr` (it failed); the next use opens a new one.
    pub(super) fn forget(&mut self, addr: &str) {
        self.conns.remove(addr);
    }

    /// Reads the slot map again, then connects to every master of it: fails, and stays
    /// stale, while one is unreachable (a failover under way). The map read is kept, so that
    /// the other masters go on being used.
    pub(super) async fn refresh_and_connect(&mut self) -> Result<(), String> {
        self.stale = true;
        let masters = self.refresh().await?.masters();
        for addr in masters {
            self.conn(&addr).await?;
        }
        self.stale = false;
        Ok(())
    }

    /// Reads the slot map again: from the masters known so far, then the seeds. The new map
    /// is kept, and returned, only when complete (every slot owned).
    pub(super) async fn refresh(&mut self) -> Result<&SlotMap, String> {
        let mut candidates: Vec<Addr> = self.map.as_ref().map(SlotMap::masters).unwrap_or_default();
        for seed in self.shared.seeds() {
            if !candidates.contains(&seed) {
                candidates.push(seed);
            }
        }
        let mut last_error = String::from("no seed node configured");
        for addr in candidates {
            let mut c = match self.conn(&addr).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            let reply = tokio::time::timeout(
                self.shared.config.connect_timeout,
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async::<redis::Value>(&mut c),
            )
            .await;
            let reply = match reply {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    self.forget(&addr);
                    last_error = format!("CLUSTER SLOTS on {addr}: {e}");
                    continue;
                }
                Err(_) => {
                    self.forget(&addr);
                    last_error = format!("CLUSTER SLOTS on {addr} timed out");
                    continue;
                }
            };
            match SlotMap::parse(&reply, host_of(&addr)) {
                Ok(map) if map.covers_all() => {
                    let masters = map.masters();
                    self.conns.retain(|a, _| masters.contains(a));
                    return Ok(self.map.insert(map));
                }
                Ok(_) => {
                    last_error =
                        format!("{addr} reports slots without a master (the cluster is not ready)")
                }
                Err(e) => last_error = format!("{addr}: {e}"),
            }
        }
        Err(last_error)
    }
}
