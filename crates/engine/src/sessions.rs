//! The session registry, sharded so that lookups never contend on one lock.

use crate::sid::Sid;
use crate::socket::EioSocket;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

const SHARDS: usize = 32;

/// Sessions by id.
pub(crate) struct Sessions<D> {
    shards: Vec<RwLock<HashMap<Sid, Arc<EioSocket<D>>>>>,
    hasher: RandomState,
}

impl<D> Sessions<D> {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, sid: &Sid) -> &RwLock<HashMap<Sid, Arc<EioSocket<D>>>> {
        let i = self.hasher.hash_one(sid) as usize % SHARDS;
        &self.shards[i]
    }

    pub(crate) fn get(&self, sid: &Sid) -> Option<Arc<EioSocket<D>>> {
        self.shard(sid).read().get(sid).cloned()
    }

    pub(crate) fn insert(&self, socket: Arc<EioSocket<D>>) {
        {
            let mut shard = self.shard(&socket.sid()).write();
            shard.insert(socket.sid(), socket);
        }
    }

    pub(crate) fn remove(&self, sid: &Sid) {
        {
            let mut shard = self.shard(sid).write();
            shard.remove(sid);
        }
    }

    pub(crate) fn all(&self) -> Vec<Arc<EioSocket<D>>> {
        self.shards
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Bytes waiting in the outbound queues of every session.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .values()
                    .map(|socket| socket.queued_bytes())
                    .sum::<usize>()
            })
            .sum()
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}
