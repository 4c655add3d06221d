//! Durable state: a small key-value contract that every backend implements, and the typed
//! records the broker keeps in it ([`records`]).
//!
//! The contract is deliberately narrow (get, put, insert-if-absent, atomic take, compare-and-swap
//! on a version, delete, purge) so that Redis implements it with single commands or short Lua
//! scripts, each touching one key (so it also works on Redis Cluster). Every record may carry an
//! expiry; an expired record is invisible to every operation even before the purge task removes it.
//!
//! [`EncryptedStore`] wraps any backend and encrypts every value at rest; [`rotate`] re-encrypts
//! a store under a new key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

mod embedded;
pub mod encrypted;
mod memory;
pub mod records;
mod redis;
pub mod rotate;
mod timed;

pub use self::redis::{RedisFailure, RedisStore};
pub use embedded::EmbeddedStore;
pub use encrypted::{EncryptedStore, Keyring};
pub use memory::MemoryStore;
pub use timed::TimedStore;

/// The underlying error of a [`StoreError::Backend`].
pub type BackendSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from a store backend. A store error is never "not found": callers must not act on it
/// as if a record were absent.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, corruption, unavailable).
    #[error("store backend error: {message}")]
    Backend {
        /// What failed. It repeats the source's text, because logs show only this line; like
        /// the source it is free of secrets (Redis passwords are scrubbed from both).
        message: String,
        /// The error underneath (I/O, redb, Redis, a timeout), for callers that inspect it.
        #[source]
        source: Option<BackendSource>,
    },
    /// A stored value could not be decoded.
    #[error("stored record {key} is not readable: {message}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What went wrong.
        message: String,
    },
}

impl StoreError {
    /// A backend failure with no error underneath (a refused precondition, a broken invariant).
    pub fn backend(message: impl Into<String>) -> Self {
        Self::Backend {
            message: message.into(),
            source: None,
        }
    }

    /// A backend failure caused by `source`; `message` should include what it says.
    pub fn backend_from(message: impl Into<String>, source: impl Into<BackendSource>) -> Self {
        Self::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }
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
    /// Writes only if the live record still has `expected_version`. A zero `ttl` makes the
    /// record expire at once (a delete conditional on the version; refresh leases use it).
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

    /// One page of record keys, for maintenance jobs (`rotate-keys`), never for request handling.
    ///
    /// Start with `cursor = None` and pass each returned cursor back until it comes back `None`;
    /// a cursor is opaque and belongs to the backend that made it. Every record that stays live
    /// for the whole scan is returned at least once; one written, deleted or expiring meanwhile
    /// may or may not be. Memory and embedded return at most `limit` keys per page, in key order,
    /// each once. Redis uses `SCAN` (on a cluster, every master in turn): `limit` is its `COUNT`
    /// hint, so a page may hold somewhat more or fewer keys (even none while the cursor is not
    /// `None`), a key may come twice, and a resharding or failover during the scan may hide some
    /// keys from it (run the job again). A `limit` of 0 counts as 1.
    async fn scan(&self, cursor: Option<String>, limit: usize) -> Result<(Vec<String>, Option<String>), StoreError>;

    /// Replaces the bytes of a live record that still has exactly `expected_version` and
    /// `expected_value`, keeping its version and its expiry; true when replaced.
    ///
    /// For rewrites that leave a record's meaning as it was (re-encryption under another key):
    /// a broker that read the record before still holds a valid version for its
    /// compare-and-swap, so a rotation never makes a refresh lose its rotated token; and the
    /// expiry is kept by the backend itself, exactly, without reading and re-applying a TTL.
    /// Comparing the bytes as well as the version makes it safe even if the record was deleted
    /// and rewritten up to the same version meanwhile.
    async fn rewrite_in_place(
        &self,
        key: &str,
        expected_version: u64,
        expected_value: &[u8],
        value: Vec<u8>,
    ) -> Result<bool, StoreError>;

    /// Adds `member` to the ordered index `index`: a set of strings kept in byte order, apart from
    /// the records (a scan never lists it, nothing expires it, and it is not encrypted, so members
    /// hold ids and times, never secrets). Adding a member that is there changes nothing.
    async fn index_add(&self, index: &str, member: &str) -> Result<(), StoreError>;

    /// Removes `member` from `index`; true when it was there.
    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError>;

    /// Up to `limit` members of `index` in byte order, starting after `after` (exclusive; from the
    /// first when `None`). Members added or removed meanwhile do not disturb the others, so a
    /// walk page by page meets every member that was there throughout exactly once.
    async fn index_range(&self, index: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError>;

    /// The encryption layer, when this store is one (`rotate-keys` needs it); `None` otherwise.
    fn encryption(&self) -> Option<&EncryptedStore> {
        None
    }
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

    /// The whole contract on one store. Uses the keys `a`, `b`, `e`, `f`, `g`, `keep`, `l` and
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

        // compare_and_swap with a zero TTL is a delete conditional on the version
        store.put("l", b"1".to_vec(), None).await.unwrap();
        assert_eq!(
            store
                .compare_and_swap("l", 2, b"1".to_vec(), Some(Duration::ZERO))
                .await
                .unwrap(),
            CasOutcome::Conflict
        );
        assert!(matches!(
            store
                .compare_and_swap("l", 1, b"1".to_vec(), Some(Duration::ZERO))
                .await
                .unwrap(),
            CasOutcome::Written(_)
        ));
        assert_eq!(store.get("l").await.unwrap(), None);
        assert!(store.insert_new("l", b"2".to_vec(), None).await.unwrap(), "free again");

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
        indexes(store).await;
    }

    /// Ordered indexes: byte order, exclusive paging, idempotent adds, removal, separate
    /// indexes, and no index in a scan of the records. Uses the indexes `ix` and `iy`.
    pub async fn indexes(store: &dyn Store) {
        assert!(store.index_range("ix", None, 10).await.unwrap().is_empty());
        for m in ["b", "a", "c:2", "c:10", "d"] {
            store.index_add("ix", m).await.unwrap();
        }
        store.index_add("ix", "a").await.unwrap();
        store.index_add("iy", "a").await.unwrap();
        assert_eq!(
            store.index_range("ix", None, 10).await.unwrap(),
            ["a", "b", "c:10", "c:2", "d"],
            "byte order, each member once"
        );
        assert_eq!(store.index_range("ix", None, 2).await.unwrap(), ["a", "b"]);
        assert_eq!(store.index_range("ix", Some("b"), 2).await.unwrap(), ["c:10", "c:2"]);
        assert_eq!(
            store.index_range("ix", Some("bz"), 10).await.unwrap(),
            ["c:10", "c:2", "d"],
            "after a member that is not there"
        );
        assert!(store.index_range("ix", Some("d"), 10).await.unwrap().is_empty());
        assert!(store.index_remove("ix", "b").await.unwrap());
        assert!(!store.index_remove("ix", "b").await.unwrap());
        assert!(!store.index_remove("none", "b").await.unwrap());
        assert_eq!(
            store.index_range("ix", None, 10).await.unwrap(),
            ["a", "c:10", "c:2", "d"]
        );
        assert_eq!(
            store.index_range("iy", None, 10).await.unwrap(),
            ["a"],
            "indexes are apart"
        );
        let mut cursor = None;
        loop {
            let (keys, next) = store.scan(cursor, 100).await.unwrap();
            assert!(
                keys.iter().all(|k| !k.contains("ix") && !k.contains("iy")),
                "a scan lists records only: {keys:?}"
            );
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        for m in ["a", "c:10", "c:2", "d"] {
            assert!(store.index_remove("ix", m).await.unwrap());
        }
        assert!(store.index_remove("iy", "a").await.unwrap());
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

    /// `scan` pages through every live record exactly as its contract says, and `rewrite_in_place`
    /// replaces only an unchanged record, keeping its version and expiry. Uses keys starting with
    /// `s:`, `r` and `t`; run it on an empty store.
    pub async fn scan_and_rewrite(store: &dyn Store) {
        assert!(scan_all(store, 10).await.is_empty(), "an empty store scans empty");

        let mut expected = std::collections::BTreeSet::new();
        for i in 0..25 {
            let key = format!("s:{i:02}");
            let ttl = (i % 3 == 0).then(|| Duration::from_secs(60));
            store.put(&key, b"v".to_vec(), ttl).await.unwrap();
            expected.insert(key);
        }
        store
            .put("s:expired", b"v".to_vec(), Some(Duration::from_millis(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let seen = scan_all(store, 7).await;
        assert_eq!(
            seen.iter().cloned().collect::<std::collections::BTreeSet<_>>(),
            expected,
            "every live record, no expired one"
        );

        // rewrite_in_place: only the exact version and bytes, version and expiry kept.
        store.put("r", b"a".to_vec(), None).await.unwrap();
        assert_eq!(
            store.compare_and_swap("r", 1, b"b".to_vec(), None).await.unwrap(),
            CasOutcome::Written(2)
        );
        assert!(!store.rewrite_in_place("r", 1, b"b", b"x".to_vec()).await.unwrap());
        assert!(!store.rewrite_in_place("r", 2, b"a", b"x".to_vec()).await.unwrap());
        assert!(!store.rewrite_in_place("missing", 1, b"a", b"x".to_vec()).await.unwrap());
        assert!(store.rewrite_in_place("r", 2, b"b", b"c".to_vec()).await.unwrap());
        assert_eq!(
            store.get("r").await.unwrap(),
            Some(Versioned {
                value: b"c".to_vec(),
                version: 2
            })
        );
        assert_eq!(
            store.compare_and_swap("r", 2, b"d".to_vec(), None).await.unwrap(),
            CasOutcome::Written(3),
            "a writer holding the version read before the rewrite still wins"
        );
        store
            .put("t", b"a".to_vec(), Some(Duration::from_millis(150)))
            .await
            .unwrap();
        assert!(store.rewrite_in_place("t", 1, b"a", b"b".to_vec()).await.unwrap());
        assert_eq!(store.get("t").await.unwrap().map(|v| v.value), Some(b"b".to_vec()));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(store.get("t").await.unwrap(), None, "the expiry was kept");
        assert!(!store.rewrite_in_place("t", 1, b"b", b"c".to_vec()).await.unwrap());
    }

    /// For the backends that page in key order (memory, embedded): pages of at most `limit` keys,
    /// sorted, each key once. Uses the keys `o:0` to `o:9`; run it on an empty store.
    pub async fn ordered_scan(store: &dyn Store) {
        for i in 0..10 {
            store.put(&format!("o:{i}"), b"v".to_vec(), None).await.unwrap();
        }
        let mut pages = Vec::new();
        let mut cursor = None;
        loop {
            let (keys, next) = store.scan(cursor, 3).await.unwrap();
            pages.push(keys);
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let expected: Vec<Vec<String>> = [&[0, 1, 2][..], &[3, 4, 5], &[6, 7, 8], &[9]]
            .iter()
            .map(|page| page.iter().map(|i| format!("o:{i}")).collect())
            .collect();
        assert_eq!(pages, expected);
        assert_eq!(
            store.scan(None, 0).await.unwrap().0,
            ["o:0"],
            "a limit of 0 counts as 1"
        );
    }

    /// Every key a whole scan returns, in page order (Redis may repeat one).
    async fn scan_all(store: &dyn Store, limit: usize) -> Vec<String> {
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..1_000 {
            let (keys, next) = store.scan(cursor, limit).await.unwrap();
            seen.extend(keys);
            match next {
                Some(c) => cursor = Some(c),
                None => return seen,
            }
        }
        panic!("the scan does not end");
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
