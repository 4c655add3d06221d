//! Durable state: a small key-value contract that every backend implements, and the typed
//! records the broker keeps in it ([`records`]).
//!
//! The contract is deliberately narrow (get, put, insert-if-absent, atomic take, compare-and-swap
//! on a version, delete, purge) so that Redis implements it with single commands or short Lua
//! scripts, each touching one key (so it also works on Redis Cluster). The one exception,
//! [`Store::write_with_event`], writes a record and an event record together (a durable outbox);
//! on a cluster it is atomic only when both keys share a hash slot. Every record may carry an
//! expiry; an expired record is invisible to every operation even before the purge task removes it.
//!
//! [`EncryptedStore`] wraps any backend and encrypts every value at rest; [`rotate`] re-encrypts
//! a store under a new key. [`Store::export`] and [`Store::import`] move a store's contents, as
//! stored, in and out (`consent-broker backup` and `restore`, [`crate::backup`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
mod embedded;
pub mod encrypted;
mod memory;
pub mod records;
mod redis;
pub mod rotate;
mod timed;

pub use self::redis::{RedisChannel, RedisFailure, RedisStore, Subscription};
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
    /// A stored record is in a format newer than this broker reads: a newer consent-broker wrote
    /// it. It is left as it is; upgrading this broker makes it readable.
    #[error(
        "stored record {key} is in format {format}, written by a newer consent-broker; upgrade this broker (it reads formats up to {current})",
        current = records::FORMAT
    )]
    NewerFormat {
        /// The record's key.
        key: String,
        /// The record's format.
        format: u8,
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

/// One record write whose effect [`Store::write_with_event`] makes conditional.
#[derive(Debug, Clone)]
pub enum Write {
    /// Like [`Store::put`]: always applies.
    Put {
        /// The record's key.
        key: String,
        /// The record's new bytes.
        value: Vec<u8>,
        /// The record's new expiry, from now (`None`: never; zero: at once).
        ttl: Option<Duration>,
    },
    /// Like [`Store::compare_and_swap`]: applies only if the live record has `expected_version`.
    Cas {
        /// The record's key.
        key: String,
        /// The version the live record must still have.
        expected_version: u64,
        /// The record's new bytes.
        value: Vec<u8>,
        /// The record's new expiry, from now (`None`: never; zero: at once).
        ttl: Option<Duration>,
    },
    /// Like [`Store::insert_new`]: applies only if no live record has the key.
    InsertNew {
        /// The record's key.
        key: String,
        /// The record's bytes.
        value: Vec<u8>,
        /// The record's expiry, from now (`None`: never; zero: at once).
        ttl: Option<Duration>,
    },
    /// Like [`Store::delete`]: applies only if a live record existed.
    Delete {
        /// The record's key.
        key: String,
    },
}

impl Write {
    /// The key of the record this write changes.
    pub fn key(&self) -> &str {
        match self {
            Write::Put { key, .. } | Write::Cas { key, .. } | Write::InsertNew { key, .. } | Write::Delete { key } => {
                key
            }
        }
    }
}

/// What [`Store::write_with_event`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write applied (the record's new version; 0 for a delete) and the event was stored.
    Applied(u64),
    /// The write's condition failed (version conflict, key present, key absent): nothing written.
    NotApplied,
}

/// One record exactly as a backend keeps it, for backup and restore: the value as stored (sealed
/// when the store is encrypted, so a backup holds no secret in clear), its version and its
/// absolute expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// The record's key (without the Redis `key_prefix`).
    pub key: String,
    /// The record's bytes as the backend holds them.
    pub value: Vec<u8>,
    /// The record's version.
    pub version: u64,
    /// When it expires, in Unix epoch milliseconds; 0 for never.
    pub expires_at_ms: u64,
}

/// One item of a store's contents, as [`Store::export`] hands them out and [`Store::import`]
/// takes them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A live record.
    Record(RawRecord),
    /// A member of an ordered index.
    IndexMember {
        /// The index's name.
        index: String,
        /// The member.
        member: String,
    },
}

/// Where [`Store::export`] puts each entry; an error stops the export and is returned by it.
pub type ExportSink<'a> = dyn FnMut(Entry) -> Result<(), StoreError> + Send + 'a;

/// Refuses an event that would overwrite the very record its write changes: "both" would then
/// be one record, and which of the two values wins would depend on the backend.
pub(crate) fn check_event_key(write: &Write, event_key: &str) -> Result<(), StoreError> {
    if write.key() == event_key {
        return Err(StoreError::backend(format!(
            "write_with_event: the event key {event_key:?} is the key of the record written"
        )));
    }
    Ok(())
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
    /// Applies `write` and, only when it applies, stores the record `event_key` = `event_value`
    /// (with `event_ttl`) as [`Store::put`] would: both or neither.
    ///
    /// The record gets the version the matching single operation would give it, the event record
    /// a new version as from `put`. An `event_key` equal to the write's key is refused (an error,
    /// nothing written). Atomic (both or neither, no other writer in between) on memory, embedded,
    /// and Redis on one server or a Sentinel master. On a Redis Cluster it is atomic only when the
    /// two keys (with the key prefix) hash to the same slot, e.g. because they carry the same hash
    /// tag `{...}`; otherwise the write is applied first and the event put after it, so a crash or
    /// failure between the two loses the event (the call then returns an error although the write
    /// applied).
    async fn write_with_event(
        &self,
        write: Write,
        event_key: &str,
        event_value: Vec<u8>,
        event_ttl: Option<Duration>,
    ) -> Result<WriteOutcome, StoreError>;
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

    /// Hands every live record (as stored, with its version and expiry) and every index member to
    /// `sink`, for `consent-broker backup`; never for request handling.
    ///
    /// Memory and embedded read one consistent state (the memory store under its locks, the
    /// embedded store in one read transaction, while writers go on). Redis has no such read: it
    /// walks the keys with `SCAN` (every master in turn on a cluster) and reads each key
    /// atomically, so the result is consistent per record, not across records. Records pass
    /// through the encryption layer still sealed.
    async fn export(&self, sink: &mut ExportSink<'_>) -> Result<(), StoreError>;

    /// Writes `entries` as they are, for `consent-broker restore`: each record with its version,
    /// its expiry (one already past is not written) and its bytes unchanged (still sealed: the
    /// encryption layer passes them through), replacing a record of the same key; each index
    /// member added. Not atomic as a whole; each record is written atomically.
    async fn import(&self, entries: Vec<Entry>) -> Result<(), StoreError>;

    /// True when the store holds no live record and no index member (restore refuses to write
    /// into a store that is not, unless forced).
    async fn is_empty(&self) -> Result<bool, StoreError>;

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
