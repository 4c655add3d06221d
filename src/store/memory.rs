//! In-process store for tests and throwaway runs; everything is lost on exit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{CasOutcome, Store, StoreError, Versioned, expiry_for, is_expired, now_millis};

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    version: u64,
    expires_at: u64,
}

/// A `HashMap` behind a mutex; every operation is atomic under the lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, Entry>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_map<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>, u64) -> T) -> Result<T, StoreError> {
        let mut map = self
            .map
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))?;
        Ok(f(&mut map, now_millis()))
    }
}

fn live<'a>(map: &'a HashMap<String, Entry>, key: &str, now: u64) -> Option<&'a Entry> {
    map.get(key).filter(|e| !is_expired(e.expires_at, now))
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.with_map(|map, now| {
            live(map, key, now).map(|e| Versioned {
                value: e.value.clone(),
                version: e.version,
            })
        })
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<u64, StoreError> {
        self.with_map(|map, now| {
            let version = live(map, key, now).map_or(1, |e| e.version + 1);
            map.insert(
                key.to_string(),
                Entry {
                    value,
                    version,
                    expires_at: expiry_for(ttl),
                },
            );
            version
        })
    }

    async fn insert_new(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StoreError> {
        self.with_map(|map, now| {
            if live(map, key, now).is_some() {
                return false;
            }
            map.insert(
                key.to_string(),
                Entry {
                    value,
                    version: 1,
                    expires_at: expiry_for(ttl),
                },
            );
            true
        })
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_map(|map, now| {
            map.remove(key)
                .filter(|e| !is_expired(e.expires_at, now))
                .map(|e| e.value)
        })
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected_version: u64,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, StoreError> {
        self.with_map(|map, now| match live(map, key, now) {
            Some(e) if e.version == expected_version => {
                let version = expected_version + 1;
                map.insert(
                    key.to_string(),
                    Entry {
                        value,
                        version,
                        expires_at: expiry_for(ttl),
                    },
                );
                CasOutcome::Written(version)
            }
            _ => CasOutcome::Conflict,
        })
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.with_map(|map, now| map.remove(key).is_some_and(|e| !is_expired(e.expires_at, now)))
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.with_map(|map, now| {
            let before = map.len();
            map.retain(|_, e| !is_expired(e.expires_at, now));
            before - map.len()
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with_map(|_, _| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run(&MemoryStore::new()).await;
        super::super::conformance::purge_counts(&MemoryStore::new()).await;
        super::super::conformance::concurrent_take(std::sync::Arc::new(MemoryStore::new())).await;
    }
}
