//! Durable state: a small key-value contract that every backend implements, and the typed
//! records the broker keeps in it ([`records`]).
//!
//! The contract is deliberately narrow (get, put, insert-if-absent, atomic take, compare-and-swap
//! on a version, delete, purge) so that Redis implements it with single commands or short Lua
//! scripts, each touching one key (so it also works on Redis Cluster). Every record may carry an
//! expiry; an expired record is invisible to every operation even before the purge task removes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

mod embedded;
mod memory;
pub mod records;
mod redis;

pub use self::redis::RedisStore;
pub use embedded::EmbeddedStore;
pub use memory::MemoryStore;

/// Errors from a store backend. A store error is never "not found": callers must not act on it
/// as if a record were absent.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption, unavailable).
    #[error("store backend error: {0}")]
    Backend(String),
    /// A stored value could not be decoded.
    #[error("stored record {key} is not readable: {message}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What went wrong.
        message: String,
    },
}

/// A stored value with its version (starts at 1, bumped by every write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The record's bytes.
    pub value: Vec<u8>,
    /// Monotonic per-key write counter, for compare-and-swap.
    pub version: u64,
}

/// The outcome of [`Store::compare_and_swap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// Written; the record now has this version.
    Written(u64),
    /// Someone wrote first (or the record is gone); nothing was written.
    Conflict,
}

/// The operations every backend provides. Keys are opaque strings built by [`records`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads a live record.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;
    /// Writes a record unconditionally, returning its new version.
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<u64, StoreError>;
    /// Writes only if no live record exists; true when written.
    async fn insert_new(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StoreError>;
    /// Atomically reads and deletes a live record (single-use values).
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes only if the live record still has `expected_version`.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected_version: u64,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, StoreError>;
    /// Deletes a record; true when a live one existed.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Removes expired records; returns how many.
    async fn purge_expired(&self) -> Result<usize, StoreError>;
    /// Checks the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Milliseconds since the Unix epoch (the stores' clock).
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Absolute expiry in epoch milliseconds for a TTL; 0 means "never".
pub(crate) fn expiry_for(ttl: Option<Duration>) -> u64 {
    match ttl {
        Some(d) => now_millis().saturating_add(d.as_millis() as u64).max(1),
        None => 0,
    }
}

/// True when an expiry (epoch ms, 0 = never) has passed.
pub(crate) fn is_expired(expires_at: u64, now: u64) -> bool {
    expires_at != 0 && expires_at <= now
}

#[doc(hidden)]
pub mod conformance {
    //! One behavioural suite run against every backend: the unit tests of the memory and embedded
    //! stores and the Redis integration tests (`tests/integration/redis_store.rs`) call it. It is
    //! test code compiled into the library so that integration tests can reach it; it panics on
    //! the first broken expectation and needs only normal dependencies.
    use super::*;

    /// The whole contract on one store. Uses the keys `a`, `b`, `e`, `f`, `g`, `keep` and
    /// `missing`; run it on an empty store.
    pub async fn run(store: &dyn Store) {
        // get / put / versions
        assert_eq!(store.get("a").await.unwrap(), None);
        assert_eq!(store.put("a", b"1".to_vec(), None).await.unwrap(), 1);
        assert_eq!(store.put("a", b"2".to_vec(), None).await.unwrap(), 2);
        assert_eq!(
            store.get("a").await.unwrap(),
            Some(Versioned {
                value: b"2".to_vec(),
                version: 2
            })
        );

        // insert_new refuses a live record
        assert!(!store.insert_new("a", b"x".to_vec(), None).await.unwrap());
        assert!(store.insert_new("b", b"x".to_vec(), None).await.unwrap());

        // take is single-use
        assert_eq!(store.take("b").await.unwrap(), Some(b"x".to_vec()));
        assert_eq!(store.take("b").await.unwrap(), None);

        // compare_and_swap
        assert_eq!(
            store.compare_and_swap("a", 1, b"3".to_vec(), None).await.unwrap(),
            CasOutcome::Conflict
        );
        assert_eq!(
            store.compare_and_swap("a", 2, b"3".to_vec(), None).await.unwrap(),
            CasOutcome::Written(3)
        );
        assert_eq!(
            store.compare_and_swap("missing", 1, b"3".to_vec(), None).await.unwrap(),
            CasOutcome::Conflict
        );

        // delete
        assert!(store.delete("a").await.unwrap());
        assert!(!store.delete("a").await.unwrap());
        assert_eq!(store.get("a").await.unwrap(), None);

        // expiry hides records before the purge removes them
        store
            .put("e", b"1".to_vec(), Some(Duration::from_millis(30)))
            .await
            .unwrap();
        assert!(
            store
                .insert_new("f", b"1".to_vec(), Some(Duration::from_millis(30)))
                .await
                .unwrap()
        );
        store
            .put("keep", b"1".to_vec(), Some(Duration::from_secs(60)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(store.get("e").await.unwrap(), None);
        assert_eq!(store.take("f").await.unwrap(), None);
        assert!(
            store.insert_new("e", b"2".to_vec(), None).await.unwrap(),
            "expired key is free again"
        );
        store
            .put("g", b"1".to_vec(), Some(Duration::from_millis(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        // How many records a purge removes is the backend's business (Redis expires keys itself
        // and reports 0; see `purge_counts` for the backends that sweep); what must hold is that
        // the expired record stays gone and the live one stays.
        store.purge_expired().await.unwrap();
        assert_eq!(store.get("g").await.unwrap(), None);
        assert!(store.get("keep").await.unwrap().is_some());
        store.ping().await.unwrap();
    }

    /// For backends whose purge sweeps expired records itself (memory, embedded): it counts them.
    pub async fn purge_counts(store: &dyn Store) {
        store
            .put("p", b"1".to_vec(), Some(Duration::from_millis(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(store.purge_expired().await.unwrap() >= 1);
        assert_eq!(store.purge_expired().await.unwrap(), 0, "nothing left to purge");
    }

    /// 32 concurrent `take`s of one value: exactly one wins. Uses the key `once`.
    pub async fn concurrent_take(store: std::sync::Arc<dyn Store>) {
        store.put("once", b"v".to_vec(), None).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move { s.take("once").await.unwrap() }));
        }
        let mut winners = 0;
        for t in tasks {
            if t.await.unwrap().is_some() {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "a single-use value is taken exactly once");
    }
}
