//! A hash map split into shards, each behind its own lock, so that operations on different
//! keys rarely contend: the engine's sessions, a namespace's sockets and its room index.
//!
//! Every method takes the lock of one shard (or of each shard in turn) and releases it before
//! it returns; nothing is ever held across an `.await`. Closures passed in run under the lock:
//! they must not block, nor touch the same map.

use parking_lot::RwLock;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

/// A concurrent map of `K` to `V`, sharded by the hash of the key.
pub struct ShardedMap<K, V> {
    shards: Box<[RwLock<HashMap<K, V>>]>,
    hasher: RandomState,
}

impl<K, V> std::fmt::Debug for ShardedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedMap")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash, V> ShardedMap<K, V> {
    /// An empty map of `shards` shards (at least one).
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<HashMap<K, V>> {
        // The modulo keeps the index in bounds; `new` made at least one shard.
        let i = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[i]
    }

    /// A copy of the value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.read(key, V::clone)
    }

    /// Calls `f` with the value of `key`, under the shard's read lock.
    pub fn read<Q, R>(&self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).read().get(key).map(f)
    }

    /// True when `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).read().contains_key(key)
    }

    /// Sets the value of `key`; returns the value it replaced.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.shard(&key).write().insert(key, value)
    }

    /// Removes the value of `key` and returns it (dropped by the caller, outside the lock).
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).write().remove(key)
    }

    /// Changes the value of `key` with `update`, or, when there is none, inserts the one
    /// `create` makes; both run under the shard's write lock, so the changes of one key are
    /// applied in the order they were made.
    pub fn update_or_insert(&self, key: &K, update: impl FnOnce(&mut V), create: impl FnOnce() -> V)
    where
        K: Clone,
    {
        let mut shard = self.shard(key).write();
        match shard.get_mut(key) {
            Some(value) => update(value),
            None => {
                shard.insert(key.clone(), create());
            }
        }
    }

    /// Shows the value of `key` to `remove`, which may change it, and removes it when `remove`
    /// returns true; under the shard's write lock. Returns the removed value.
    pub fn remove_if<Q>(&self, key: &Q, remove: impl FnOnce(&mut V) -> bool) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.shard(key).write();
        match shard.get_mut(key).map(remove) {
            Some(true) => shard.remove(key),
            _ => None,
        }
    }

    /// Calls `f` with every entry, one shard at a time under its read lock (an entry changed
    /// meanwhile in a shard already visited is not seen again).
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for shard in &self.shards {
            for (k, v) in shard.read().iter() {
                f(k, v);
            }
        }
    }

    /// What `f` makes of each entry, collected (shard by shard, as [`ShardedMap::for_each`]).
    pub fn collect<T>(&self, mut f: impl FnMut(&K, &V) -> T) -> Vec<T> {
        let mut out = Vec::new();
        self.for_each(|k, v| out.push(f(k, v)));
        out
    }

    /// A copy of every value.
    pub fn values(&self) -> Vec<V>
    where
        V: Clone,
    {
        self.collect(|_, v| v.clone())
    }

    /// A copy of every key.
    pub fn keys(&self) -> Vec<K>
    where
        K: Clone,
    {
        self.collect(|k, _| k.clone())
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// True when the map has no entry.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.read().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_in_their_shard() {
        let map: ShardedMap<String, u32> = ShardedMap::new(4);
        assert!(map.is_empty());
        for i in 0..100 {
            assert_eq!(map.insert(format!("k{i}"), i), None);
        }
        assert_eq!(map.len(), 100);
        assert_eq!(map.get("k7"), Some(7));
        assert_eq!(map.read("k8", |v| v * 2), Some(16));
        assert!(map.contains_key("k99") && !map.contains_key("k100"));
        assert_eq!(map.insert("k7".to_owned(), 70), Some(7));
        assert_eq!(map.remove("k7"), Some(70));
        assert_eq!(map.remove("k7"), None);
        let mut keys = map.keys();
        keys.sort();
        assert_eq!(keys.len(), 99);
        assert_eq!(
            map.values().iter().map(|v| u64::from(*v)).sum::<u64>(),
            4950 - 7
        );
    }

    #[test]
    fn update_insert_and_conditional_remove() {
        let map: ShardedMap<String, u32> = ShardedMap::new(1);
        let key = "a".to_owned();
        map.update_or_insert(&key, |v| *v += 1, || 1);
        map.update_or_insert(&key, |v| *v += 1, || 1);
        assert_eq!(map.get("a"), Some(2));
        assert_eq!(
            map.remove_if("a", |v| {
                *v -= 1;
                *v == 0
            }),
            None
        );
        assert_eq!(map.get("a"), Some(1));
        assert_eq!(map.remove_if("a", |v| *v == 1), Some(1));
        assert_eq!(map.remove_if("a", |_| true), None);
        assert!(map.is_empty());
        // No shard at all is never made.
        let one: ShardedMap<u8, u8> = ShardedMap::new(0);
        one.insert(1, 2);
        assert_eq!(one.get(&1), Some(2));
    }
}
