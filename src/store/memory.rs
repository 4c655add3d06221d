//! In-process store for tests and throwaway runs; everything is lost on exit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    CasOutcome, Entry as Dumped, ExportSink, RawRecord, Store, StoreError, Versioned, Write, WriteOutcome,
    check_event_key, expiry_for, is_expired, now_millis,
};

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    version: u64,
    expires_at: u64,
}

/// A sorted map behind a mutex (sorted so that `scan` pages by key); every operation is atomic
/// under the lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<String, Entry>>,
    indexes: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_map<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Entry>, u64) -> T) -> Result<T, StoreError> {
        let mut map = self
            .map
            .lock()
            .map_err(|_| StoreError::backend("memory store lock poisoned"))?;
        Ok(f(&mut map, now_millis()))
    }
}

impl MemoryStore {
    fn with_indexes<T>(&self, f: impl FnOnce(&mut HashMap<String, BTreeSet<String>>) -> T) -> Result<T, StoreError> {
        let mut indexes = self
            .indexes
            .lock()
            .map_err(|_| StoreError::backend("memory store lock poisoned"))?;
        Ok(f(&mut indexes))
    }
}

fn live<'a>(map: &'a BTreeMap<String, Entry>, key: &str, now: u64) -> Option<&'a Entry> {
    map.get(key).filter(|e| !is_expired(e.expires_at, now))
}

// The writes on the locked map, shared by the single operations and `write_with_event`, so that
// a write means the same whichever way it arrives.

fn put_in(map: &mut BTreeMap<String, Entry>, now: u64, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> u64 {
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
}

fn insert_new_in(
    map: &mut BTreeMap<String, Entry>,
    now: u64,
    key: &str,
    value: Vec<u8>,
    ttl: Option<Duration>,
) -> bool {
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
}

fn compare_and_swap_in(
    map: &mut BTreeMap<String, Entry>,
    now: u64,
    key: &str,
    expected_version: u64,
    value: Vec<u8>,
    ttl: Option<Duration>,
) -> CasOutcome {
    match live(map, key, now) {
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
    }
}

fn delete_in(map: &mut BTreeMap<String, Entry>, now: u64, key: &str) -> bool {
    map.remove(key).is_some_and(|e| !is_expired(e.expires_at, now))
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
        self.with_map(|map, now| put_in(map, now, key, value, ttl))
    }

    async fn insert_new(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StoreError> {
        self.with_map(|map, now| insert_new_in(map, now, key, value, ttl))
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
        self.with_map(|map, now| compare_and_swap_in(map, now, key, expected_version, value, ttl))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.with_map(|map, now| delete_in(map, now, key))
    }

    /// Both under the one lock, so no other call sees or makes a state in between.
    async fn write_with_event(
        &self,
        write: Write,
        event_key: &str,
        event_value: Vec<u8>,
        event_ttl: Option<Duration>,
    ) -> Result<WriteOutcome, StoreError> {
        check_event_key(&write, event_key)?;
        self.with_map(|map, now| {
            let applied = match write {
                Write::Put { key, value, ttl } => Some(put_in(map, now, &key, value, ttl)),
                Write::Cas {
                    key,
                    expected_version,
                    value,
                    ttl,
                } => match compare_and_swap_in(map, now, &key, expected_version, value, ttl) {
                    CasOutcome::Written(version) => Some(version),
                    CasOutcome::Conflict => None,
                },
                Write::InsertNew { key, value, ttl } => insert_new_in(map, now, &key, value, ttl).then_some(1),
                Write::Delete { key } => delete_in(map, now, &key).then_some(0),
            };
            match applied {
                Some(version) => {
                    put_in(map, now, event_key, event_value, event_ttl);
                    WriteOutcome::Applied(version)
                }
                None => WriteOutcome::NotApplied,
            }
        })
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

    async fn scan(&self, cursor: Option<String>, limit: usize) -> Result<(Vec<String>, Option<String>), StoreError> {
        let limit = limit.max(1);
        self.with_map(|map, now| {
            let from = match &cursor {
                Some(c) => Bound::Excluded(c.as_str()),
                None => Bound::Unbounded,
            };
            let mut live = map
                .range::<str, _>((from, Bound::Unbounded))
                .filter(|(_, e)| !is_expired(e.expires_at, now))
                .map(|(k, _)| k);
            let keys: Vec<String> = live.by_ref().take(limit).cloned().collect();
            let next = match live.next() {
                Some(_) => keys.last().cloned(),
                None => None,
            };
            (keys, next)
        })
    }

    async fn index_add(&self, index: &str, member: &str) -> Result<(), StoreError> {
        self.with_indexes(|ix| {
            ix.entry(index.to_string()).or_default().insert(member.to_string());
        })
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError> {
        self.with_indexes(|ix| {
            let Some(set) = ix.get_mut(index) else {
                return false;
            };
            let removed = set.remove(member);
            if set.is_empty() {
                ix.remove(index);
            }
            removed
        })
    }

    async fn index_range(&self, index: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        self.with_indexes(|ix| {
            let Some(set) = ix.get(index) else {
                return Vec::new();
            };
            let from = match after {
                Some(a) => Bound::Excluded(a.to_string()),
                None => Bound::Unbounded,
            };
            set.range((from, Bound::Unbounded))
                .take(limit.max(1))
                .cloned()
                .collect()
        })
    }

    async fn export(&self, sink: &mut ExportSink<'_>) -> Result<(), StoreError> {
        self.contents()?.into_iter().try_for_each(sink)
    }

    async fn import(&self, entries: Vec<Dumped>) -> Result<(), StoreError> {
        let mut members = Vec::new();
        self.with_map(|map, now| {
            for entry in entries {
                match entry {
                    Dumped::Record(r) if !is_expired(r.expires_at_ms, now) => {
                        map.insert(
                            r.key,
                            Entry {
                                value: r.value,
                                version: r.version,
                                expires_at: r.expires_at_ms,
                            },
                        );
                    }
                    Dumped::Record(_) => {}
                    Dumped::IndexMember { index, member } => members.push((index, member)),
                }
            }
        })?;
        self.with_indexes(|ix| {
            for (index, member) in members {
                ix.entry(index).or_default().insert(member);
            }
        })
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        let no_records = self.with_map(|map, now| map.values().all(|e| is_expired(e.expires_at, now)))?;
        Ok(no_records && self.with_indexes(|ix| ix.is_empty())?)
    }

    async fn rewrite_in_place(
        &self,
        key: &str,
        expected_version: u64,
        expected_value: &[u8],
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.with_map(|map, now| match map.get_mut(key) {
            Some(e) if !is_expired(e.expires_at, now) && e.version == expected_version && e.value == expected_value => {
                e.value = value;
                true
            }
            _ => false,
        })
    }
}

impl MemoryStore {
    /// Everything live, taken under both locks at once so that records and indexes agree.
    fn contents(&self) -> Result<Vec<Dumped>, StoreError> {
        let map = self
            .map
            .lock()
            .map_err(|_| StoreError::backend("memory store lock poisoned"))?;
        let indexes = self
            .indexes
            .lock()
            .map_err(|_| StoreError::backend("memory store lock poisoned"))?;
        let now = now_millis();
        let mut out: Vec<Dumped> = map
            .iter()
            .filter(|(_, e)| !is_expired(e.expires_at, now))
            .map(|(key, e)| {
                Dumped::Record(RawRecord {
                    key: key.clone(),
                    value: e.value.clone(),
                    version: e.version,
                    expires_at_ms: e.expires_at,
                })
            })
            .collect();
        let mut names: Vec<&String> = indexes.keys().collect();
        names.sort();
        for index in names {
            for member in &indexes[index] {
                out.push(Dumped::IndexMember {
                    index: index.clone(),
                    member: member.clone(),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        super::super::conformance::run(&MemoryStore::new()).await;
        super::super::conformance::purge_counts(&MemoryStore::new()).await;
        super::super::conformance::scan_and_rewrite(&MemoryStore::new()).await;
        super::super::conformance::ordered_scan(&MemoryStore::new()).await;
        super::super::conformance::concurrent_take(std::sync::Arc::new(MemoryStore::new())).await;
        super::super::conformance::concurrent_write_with_event(std::sync::Arc::new(MemoryStore::new())).await;
        super::super::conformance::export_and_import(&MemoryStore::new(), &MemoryStore::new()).await;
    }
}
