//! The in-memory binding table: every device's live bindings, sharded so REGISTERs for
//! different devices do not contend.
//!
//! It is a cache of the store, never the only copy: a change is enqueued for commit while the
//! shard lock is held (so commits happen in the order the table changed), and the REGISTER is
//! answered only once that commit is durable. Locks are never held across an await.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Mutex;

use switchboard_model::{Binding, UnixMillis};

const SHARDS: usize = 64;

type Shard = HashMap<String, Vec<Binding>>;

/// See the module documentation.
pub struct BindingTable {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl std::fmt::Debug for BindingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingTable")
            .field("bindings", &self.len())
            .finish()
    }
}

impl Default for BindingTable {
    fn default() -> Self {
        Self::new()
    }
}

impl BindingTable {
    pub fn new() -> Self {
        BindingTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, device_id: &str) -> &Mutex<Shard> {
        let index = self.hasher.hash_one(device_id) as usize % self.shards.len();
        &self.shards[index]
    }

    /// Runs `f` on the device's bindings with its shard locked. `f` must not block.
    pub fn with_device<R>(&self, device_id: &str, f: impl FnOnce(&mut Vec<Binding>) -> R) -> R {
        let mut shard = self
            .shard(device_id)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match shard.get_mut(device_id) {
            Some(bindings) => {
                let result = f(bindings);
                if bindings.is_empty() {
                    shard.remove(device_id);
                }
                result
            }
            None => {
                let mut bindings = Vec::new();
                let result = f(&mut bindings);
                if !bindings.is_empty() {
                    shard.insert(device_id.to_owned(), bindings);
                }
                result
            }
        }
    }

    /// A copy of the device's bindings.
    pub fn device_bindings(&self, device_id: &str) -> Vec<Binding> {
        self.with_device(device_id, |bindings| bindings.clone())
    }

    /// A copy of every binding of an account's devices, sorted by (device id, key). Scans
    /// every shard: for the operator API, not the REGISTER path.
    pub fn account_bindings(&self, account_id: &str) -> Vec<Binding> {
        let mut found: Vec<Binding> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for bindings in shard.values() {
                found.extend(
                    bindings
                        .iter()
                        .filter(|binding| binding.account_id == account_id)
                        .cloned(),
                );
            }
        }
        found.sort_by(|a, b| (&a.device_id, &a.key).cmp(&(&b.device_id, &b.key)));
        found
    }

    /// Calls `visit` on every binding, one shard locked at a time. `visit` must not block.
    pub fn for_each(&self, mut visit: impl FnMut(&Binding)) {
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for binding in shard.values().flatten() {
                visit(binding);
            }
        }
    }

    /// Copies of one binding, if the device still has it.
    pub fn find(&self, device_id: &str, key: &str) -> Option<Binding> {
        self.with_device(device_id, |bindings| {
            bindings.iter().find(|binding| binding.key == key).cloned()
        })
    }

    /// `(device id, key)` of every binding, one shard locked at a time (the keepalive plan).
    pub fn keys(&self) -> Vec<(String, String)> {
        let mut keys = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (device_id, bindings) in shard.iter() {
                keys.extend(
                    bindings
                        .iter()
                        .map(|binding| (device_id.clone(), binding.key.clone())),
                );
            }
        }
        keys
    }

    /// Replaces the whole table (at start).
    pub fn load(&self, bindings: Vec<Binding>) {
        for binding in bindings {
            let device_id = binding.device_id.clone();
            self.with_device(&device_id, |list| {
                list.retain(|b| b.key != binding.key);
                list.push(binding);
            });
        }
    }

    /// Number of bindings held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .map(Vec::len)
                    .sum::<usize>()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes the bindings that expired at or before `now_ms`, one shard at a time, calling
    /// `on_expired` with each shard's harvest while that shard is still locked (so the caller
    /// can enqueue the store changes in table order).
    pub fn sweep_expired(&self, now_ms: UnixMillis, mut on_expired: impl FnMut(Vec<Binding>)) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let mut expired = Vec::new();
            shard.retain(|_, bindings| {
                let mut index = 0;
                while index < bindings.len() {
                    if bindings[index].expires_at_ms <= now_ms {
                        expired.push(bindings.swap_remove(index));
                    } else {
                        index += 1;
                    }
                }
                !bindings.is_empty()
            });
            if !expired.is_empty() {
                on_expired(expired);
            }
        }
    }
}
