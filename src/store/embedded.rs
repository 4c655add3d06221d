//! The default store: one redb file, ACID with fsync on every commit, so a single-node broker
//! loses no connection on restart or crash. redb is synchronous, so every call runs on tokio's
//! blocking pool.
//!
//! A failed write (disk full, I/O error) makes redb refuse every later call on that handle, so the
//! store closes it and opens the file again on the next call, at most once a second: calls fail
//! (503) while the disk is full and work again once space returns, with no restart. A commit that
//! failed never reached the file's header, so the file keeps the last committed state.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};

use super::{
    CasOutcome, ExportSink, Store, StoreError, Versioned, WriteOutcome, check_event_key, expiry_for, is_expired,
    now_millis,
};

mod dump;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// The ordered indexes: (index, member), ordered by index then member.
const INDEX: TableDefinition<(&str, &str), ()> = TableDefinition::new("index");
/// The records that expire, by (expiry in epoch ms, key): the purge walks only what is due, not
/// the whole file (connections never expire, and a million of them made every sweep read it all
/// while holding the write lock). An entry whose record has since changed is dropped by the purge
/// without touching the record.
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new(EXPIRY_TABLE);
const EXPIRY_TABLE: &str = "expiry";
/// Record layout: version (u64 LE), expiry in epoch ms (u64 LE, 0 = never), then the value.
const HEADER: usize = 16;
/// How often a closed file is tried again: reopening runs redb's repair, which reads the file.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// A redb-backed [`Store`].
#[derive(Clone)]
pub struct EmbeddedStore {
    file: Arc<File>,
}

/// The file and its open handle, if any: `None` after an I/O failure until a reopen succeeds.
struct File {
    path: PathBuf,
    cache_bytes: usize,
    handle: RwLock<Handle>,
    last_reopen: Mutex<Option<Instant>>,
}

struct Handle {
    /// Bumped on every reopen, so a call that failed on an old handle does not close a new one.
    generation: u64,
    db: Option<Database>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

/// Why a call on the file failed: redb's own errors tell whether the handle is still usable.
enum Failure {
    Redb(redb::Error),
    Store(StoreError),
}

impl<E: Into<redb::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Redb(e.into())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// A failure of the file, with what redb or the OS said as its source.
fn backend(context: impl std::fmt::Display, source: impl Into<super::BackendSource>) -> StoreError {
    let source = source.into();
    StoreError::backend_from(format!("{context}: {source}"), source)
}

fn encode(version: u64, expires_at: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + value.len());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&expires_at.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Splits a stored record into (version, expiry, value).
fn decode<'a>(key: &str, raw: &'a [u8]) -> Result<(u64, u64, &'a [u8]), StoreError> {
    if raw.len() < HEADER {
        return Err(StoreError::Corrupt {
            key: key.to_string(),
            message: "record shorter than its header".into(),
        });
    }
    let version = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
    let expires_at = u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default());
    Ok((version, expires_at, &raw[HEADER..]))
}

/// How the broker shares its file: one writing process (the broker) and any number of read-only
/// ones beside it (`consent-broker backup`, [`EmbeddedStore::export_file`]), which read a
/// consistent snapshot in one read transaction while the broker goes on writing. redb's default
/// mode locks the whole file, so a backup could only be taken with the broker stopped, and
/// copying the file while it writes is not safe. This mode costs each commit one more flush
/// (redb commits in two phases so that a reader in another process never follows a commit whose
/// pages are not on disk yet). A second writing process is refused as before.
pub(super) const CONCURRENCY: redb::ConcurrencyMode = redb::ConcurrencyMode::SingleWriter;

/// Opens (or creates) the file and its table, with a page cache of at most `cache_bytes`.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let db = redb::Builder::new()
        .set_concurrency_mode(CONCURRENCY)
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| match e {
        // redb locks the file: a second writing process (rotate-keys or restore next to a running
        // broker) is refused.
        e @ redb::DatabaseError::DatabaseAlreadyOpen => StoreError::backend_from(
            format!(
                "cannot open {}: the file is in use by another process (a running broker?); the embedded store admits one writing process at a time",
                path.display()
            ),
            e,
        ),
        e => backend(format_args!("cannot open {}", path.display()), e),
    })?;
    let created = (|| -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        let had_expiry = txn.list_tables()?.any(|t| redb::TableHandle::name(&t) == EXPIRY_TABLE);
        let records = txn.open_table(KV)?;
        txn.open_table(INDEX)?;
        let mut expiry = txn.open_table(EXPIRY)?;
        if !had_expiry {
            // A file from before the expiry table: index its expiring records once.
            for item in records.iter()? {
                let (key, raw) = item?;
                let raw = raw.value();
                if raw.len() >= HEADER {
                    let expires_at = u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default());
                    if expires_at != 0 {
                        expiry.insert((expires_at, key.value()), ())?;
                    }
                }
            }
        }
        drop((records, expiry));
        txn.commit()?;
        Ok(())
    })();
    created.map_err(|e| backend(format_args!("cannot open {}", path.display()), e))?;
    Ok(db)
}

impl File {
    /// Runs `f` on the open handle, reopening the file first if an I/O failure closed it.
    fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T, Failure>) -> Result<T, StoreError> {
        let mut handle = self.handle.read().unwrap_or_else(PoisonError::into_inner);
        if handle.db.is_none() {
            drop(handle);
            self.reopen()?;
            handle = self.handle.read().unwrap_or_else(PoisonError::into_inner);
        }
        let generation = handle.generation;
        let Some(db) = handle.db.as_ref() else {
            return Err(self.unavailable());
        };
        match f(db) {
            Ok(v) => Ok(v),
            Err(Failure::Store(e)) => Err(e),
            Err(Failure::Redb(e)) => {
                drop(handle);
                if matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo) {
                    self.close(generation, &e);
                }
                Err(backend(self.path.display(), e))
            }
        }
    }

    /// Drops a handle redb stopped trusting, which also releases the file's lock for the reopen.
    fn close(&self, generation: u64, cause: &redb::Error) {
        let mut handle = self.handle.write().unwrap_or_else(PoisonError::into_inner);
        if handle.generation == generation && handle.db.take().is_some() {
            tracing::error!(file = %self.path.display(), error = %cause, "the embedded store failed to write (disk full?); closed it, reopening on the next call");
        }
    }

    fn reopen(&self) -> Result<(), StoreError> {
        {
            let mut last = self.last_reopen.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < REOPEN_EVERY) {
                return Err(self.unavailable());
            }
            *last = Some(Instant::now());
        }
        let mut handle = self.handle.write().unwrap_or_else(PoisonError::into_inner);
        if handle.db.is_none() {
            handle.db = Some(open_database(&self.path, self.cache_bytes)?);
            handle.generation += 1;
            tracing::info!(file = %self.path.display(), "the embedded store is open again");
        }
        Ok(())
    }

    fn unavailable(&self) -> StoreError {
        StoreError::backend(format!(
            "{} is closed after a failed write (disk full?); retrying",
            self.path.display()
        ))
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the database file, creating its parent directory, with the default
    /// page cache ([`crate::config::DEFAULT_EMBEDDED_CACHE_MB`]).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, (crate::config::DEFAULT_EMBEDDED_CACHE_MB as usize) << 20)
    }

    /// [`EmbeddedStore::open`] with a page cache of at most `cache_bytes` (`[store] cache_mb`):
    /// redb keeps the pages it reads and writes in memory up to this, so it bounds the broker's
    /// memory however large the file grows.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| backend(format_args!("cannot create {}", dir.display()), e))?;
        }
        let db = open_database(path, cache_bytes)?;
        Ok(Self {
            file: Arc::new(File {
                path: path.to_path_buf(),
                cache_bytes,
                handle: RwLock::new(Handle {
                    generation: 0,
                    db: Some(db),
                }),
                last_reopen: Mutex::new(None),
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, StoreError> {
        let file = self.file.clone();
        // A blocking thread starts in the global dispatcher; keep the caller's, which may be
        // scoped to one broker (see `server::in_current_dispatcher`).
        let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
        tokio::task::spawn_blocking(move || tracing::dispatcher::with_default(&dispatch, || file.with(f)))
            .await
            .map_err(|e| backend("store task failed", e))?
    }

    /// Runs `f` on the live record of `key` (version, expiry, value) inside one write
    /// transaction; `f` returns what to do with the record, plus the caller's result.
    async fn update<T: Send + 'static>(
        &self,
        key: &str,
        f: impl FnOnce(Option<(u64, u64, &[u8])>) -> (Write, T) + Send + 'static,
    ) -> Result<T, StoreError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let out = update_in(&mut txn.open_table(KV)?, &mut txn.open_table(EXPIRY)?, &key, f)?;
            txn.commit()?;
            Ok(out)
        })
        .await
    }
}

/// What [`EmbeddedStore::update`] and [`update_in`] do to the record.
enum Write {
    Keep,
    Set(Vec<u8>),
    Remove,
}

/// The record of `key` in `table` as `f` decides, within the caller's transaction.
fn update_in<T>(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    expiry: &mut Table<'_, (u64, &'static str), ()>,
    key: &str,
    f: impl FnOnce(Option<(u64, u64, &[u8])>) -> (Write, T),
) -> Result<T, Failure> {
    let current = table.get(key)?.map(|g| g.value().to_vec());
    let now = now_millis();
    let (live, old_expiry) = match &current {
        Some(raw) => {
            let (version, expires_at, value) = decode(key, raw)?;
            (
                (!is_expired(expires_at, now)).then_some((version, expires_at, value)),
                expires_at,
            )
        }
        None => (None, 0),
    };
    let (write, out) = f(live);
    let forget_old = |expiry: &mut Table<'_, (u64, &'static str), ()>| -> Result<(), Failure> {
        if old_expiry != 0 {
            expiry.remove((old_expiry, key))?;
        }
        Ok(())
    };
    match write {
        Write::Keep => {}
        Write::Set(bytes) => {
            forget_old(expiry)?;
            let (_, expires_at, _) = decode(key, &bytes)?;
            if expires_at != 0 {
                expiry.insert((expires_at, key), ())?;
            }
            table.insert(key, bytes.as_slice())?;
        }
        Write::Remove => {
            forget_old(expiry)?;
            table.remove(key)?;
        }
    }
    Ok(out)
}

/// A live record as [`update_in`] passes it: (version, expiry, value).
type Live<'a> = Option<(u64, u64, &'a [u8])>;

// What each write does to the live record, shared by the single operations and
// `write_with_event`, so that a write means the same whichever way it arrives.

fn put_plan(value: &[u8], ttl: Option<Duration>, live: Live<'_>) -> (Write, u64) {
    let version = live.map_or(1, |(v, _, _)| v + 1);
    (Write::Set(encode(version, expiry_for(ttl), value)), version)
}

fn insert_new_plan(value: &[u8], ttl: Option<Duration>, live: Live<'_>) -> (Write, bool) {
    match live {
        Some(_) => (Write::Keep, false),
        None => (Write::Set(encode(1, expiry_for(ttl), value)), true),
    }
}

fn compare_and_swap_plan(
    expected_version: u64,
    value: &[u8],
    ttl: Option<Duration>,
    live: Live<'_>,
) -> (Write, CasOutcome) {
    match live {
        Some((v, _, _)) if v == expected_version => {
            let version = v + 1;
            (
                Write::Set(encode(version, expiry_for(ttl), value)),
                CasOutcome::Written(version),
            )
        }
        _ => (Write::Keep, CasOutcome::Conflict),
    }
}

fn delete_plan(live: Live<'_>) -> (Write, bool) {
    (Write::Remove, live.is_some())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(KV)?;
            let Some(guard) = table.get(key.as_str())? else {
                return Ok(None);
            };
            let (version, expires_at, value) = decode(&key, guard.value())?;
            if is_expired(expires_at, now_millis()) {
                return Ok(None);
            }
            Ok(Some(Versioned {
                value: value.to_vec(),
                version,
            }))
        })
        .await
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<u64, StoreError> {
        self.update(key, move |live| put_plan(&value, ttl, live)).await
    }

    async fn insert_new(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StoreError> {
        self.update(key, move |live| insert_new_plan(&value, ttl, live)).await
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.update(key, |live| (Write::Remove, live.map(|(_, _, v)| v.to_vec())))
            .await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected_version: u64,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, StoreError> {
        self.update(key, move |live| {
            compare_and_swap_plan(expected_version, &value, ttl, live)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.update(key, delete_plan).await
    }

    /// Both in one write transaction: redb serialises write transactions, and one that fails
    /// before its commit leaves the file as it was.
    async fn write_with_event(
        &self,
        write: super::Write,
        event_key: &str,
        event_value: Vec<u8>,
        event_ttl: Option<Duration>,
    ) -> Result<WriteOutcome, StoreError> {
        check_event_key(&write, event_key)?;
        let event_key = event_key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let applied = {
                let mut table = txn.open_table(KV)?;
                let mut expiry = txn.open_table(EXPIRY)?;
                let applied = match write {
                    super::Write::Put { key, value, ttl } => Some(update_in(&mut table, &mut expiry, &key, |live| {
                        put_plan(&value, ttl, live)
                    })?),
                    super::Write::Cas {
                        key,
                        expected_version,
                        value,
                        ttl,
                    } => match update_in(&mut table, &mut expiry, &key, |live| {
                        compare_and_swap_plan(expected_version, &value, ttl, live)
                    })? {
                        CasOutcome::Written(version) => Some(version),
                        CasOutcome::Conflict => None,
                    },
                    super::Write::InsertNew { key, value, ttl } => {
                        update_in(&mut table, &mut expiry, &key, |live| insert_new_plan(&value, ttl, live))?
                            .then_some(1)
                    }
                    super::Write::Delete { key } => update_in(&mut table, &mut expiry, &key, delete_plan)?.then_some(0),
                };
                if applied.is_some() {
                    update_in(&mut table, &mut expiry, &event_key, |live| {
                        put_plan(&event_value, event_ttl, live)
                    })?;
                }
                applied
            };
            match applied {
                Some(version) => {
                    txn.commit()?;
                    Ok(WriteOutcome::Applied(version))
                }
                None => {
                    // Nothing to keep (a delete of an expired record would only have tidied up).
                    txn.abort()?;
                    Ok(WriteOutcome::NotApplied)
                }
            }
        })
        .await
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_write()?;
            let mut removed = 0;
            {
                let mut table = txn.open_table(KV)?;
                let mut expiry = txn.open_table(EXPIRY)?;
                let now = now_millis();
                let due: Vec<(u64, String)> = expiry
                    .range((0, "")..=(now, "\u{10ffff}"))?
                    .map(|item| item.map(|(k, _)| (k.value().0, k.value().1.to_string())))
                    .collect::<Result<_, _>>()?;
                for (expires_at, key) in due {
                    expiry.remove((expires_at, key.as_str()))?;
                    // Only a record that still carries this expiry; unreadable records are kept
                    // for an operator to inspect, never dropped.
                    let current = table.get(key.as_str())?.map(|raw| {
                        let raw = raw.value();
                        raw.len() >= HEADER
                            && u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default()) == expires_at
                    });
                    if current == Some(true) && is_expired(expires_at, now) {
                        table.remove(key.as_str())?;
                        removed += 1;
                    }
                }
            }
            txn.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read()?;
            txn.open_table(KV)?;
            Ok(())
        })
        .await
    }

    async fn scan(&self, cursor: Option<String>, limit: usize) -> Result<(Vec<String>, Option<String>), StoreError> {
        let limit = limit.max(1);
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(KV)?;
            let from = match &cursor {
                Some(c) => Bound::Excluded(c.as_str()),
                None => Bound::Unbounded,
            };
            let now = now_millis();
            let mut keys = Vec::new();
            for entry in table.range::<&str>((from, Bound::Unbounded))? {
                let (key, raw) = entry?;
                let raw = raw.value();
                // A record too short for its header is listed, not hidden: whoever scans (a key
                // rotation) then reports it as unreadable.
                if raw.len() >= HEADER && is_expired(u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default()), now)
                {
                    continue;
                }
                if keys.len() == limit {
                    let next = keys.last().cloned();
                    return Ok((keys, next));
                }
                keys.push(key.value().to_string());
            }
            Ok((keys, None))
        })
        .await
    }

    async fn index_add(&self, index: &str, member: &str) -> Result<(), StoreError> {
        let (index, member) = (index.to_string(), member.to_string());
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            txn.open_table(INDEX)?.insert((index.as_str(), member.as_str()), ())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError> {
        let (index, member) = (index.to_string(), member.to_string());
        self.blocking(move |db| {
            let txn = db.begin_write()?;
            let removed = txn
                .open_table(INDEX)?
                .remove((index.as_str(), member.as_str()))?
                .is_some();
            txn.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn index_range(&self, index: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let (index, after) = (index.to_string(), after.map(str::to_string));
        let limit = limit.max(1);
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(INDEX)?;
            let from = match &after {
                Some(a) => Bound::Excluded((index.as_str(), a.as_str())),
                None => Bound::Included((index.as_str(), "")),
            };
            let mut members = Vec::new();
            for entry in table.range::<(&str, &str)>((from, Bound::Unbounded))? {
                let (key, _) = entry?;
                let (ix, member) = key.value();
                if ix != index || members.len() == limit {
                    break;
                }
                members.push(member.to_string());
            }
            Ok(members)
        })
        .await
    }

    /// One read transaction for the whole export: a consistent snapshot while writers go on.
    async fn export(&self, sink: &mut ExportSink<'_>) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(dump::CHANNEL);
        let reading = self.blocking(move |db| dump::export_in(db, &tx));
        dump::drain(reading, rx, sink).await
    }

    /// In write transactions of a batch each: a failed one leaves the file as the last committed.
    async fn import(&self, entries: Vec<super::Entry>) -> Result<(), StoreError> {
        self.blocking(move |db| dump::import_in(db, entries)).await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.blocking(dump::is_empty_in).await
    }

    async fn rewrite_in_place(
        &self,
        key: &str,
        expected_version: u64,
        expected_value: &[u8],
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let expected_value = expected_value.to_vec();
        self.update(key, move |live| match live {
            Some((v, expires_at, current)) if v == expected_version && current == expected_value.as_slice() => {
                (Write::Set(encode(v, expires_at, &value)), true)
            }
            _ => (Write::Keep, false),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("a.redb")).unwrap();
        super::super::conformance::run(&store).await;
        super::super::conformance::purge_counts(&store).await;
        super::super::conformance::concurrent_take(Arc::new(store.clone())).await;
        super::super::conformance::concurrent_write_with_event(Arc::new(store)).await;
        let store = EmbeddedStore::open(&dir.path().join("scan.redb")).unwrap();
        super::super::conformance::scan_and_rewrite(&store).await;
        let store = EmbeddedStore::open(&dir.path().join("ordered.redb")).unwrap();
        super::super::conformance::ordered_scan(&store).await;
        let source = EmbeddedStore::open(&dir.path().join("export.redb")).unwrap();
        let target = EmbeddedStore::open(&dir.path().join("import.redb")).unwrap();
        super::super::conformance::export_and_import(&source, &target).await;
    }

    #[tokio::test]
    async fn a_file_many_times_its_page_cache_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small-cache.redb");
        // 8 MB of records through a 64 KiB page cache: every read past the first few pages
        // comes from the file, not from memory.
        let value = |i: usize| format!("{i:06}").repeat(700).into_bytes();
        {
            let store = EmbeddedStore::open_with_cache(&path, 64 << 10).unwrap();
            super::super::conformance::run(&store).await;
            for i in 0..2_000 {
                store.put(&format!("big:{i}"), value(i), None).await.unwrap();
            }
            for i in (0..2_000).rev() {
                let got = store.get(&format!("big:{i}")).await.unwrap().expect("kept");
                assert_eq!(got.value, value(i), "record {i}");
            }
        }
        let store = EmbeddedStore::open_with_cache(&path, 64 << 10).unwrap();
        for i in 0..2_000 {
            let got = store
                .get(&format!("big:{i}"))
                .await
                .unwrap()
                .expect("kept across a reopen");
            assert_eq!(got.value, value(i), "record {i}");
        }
    }

    #[tokio::test]
    async fn the_purge_removes_what_expired_and_never_a_record_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("expiry.redb");
        // A file from before the expiry table: one expired record, one that never expires.
        {
            let db = redb::Builder::new().create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut kv = txn.open_table(KV).unwrap();
                kv.insert("old:expired", encode(1, 1, b"gone").as_slice()).unwrap();
                kv.insert("old:forever", encode(1, 0, b"kept").as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        let short = Some(Duration::from_millis(1));
        store.put("a:rewritten", b"v1".to_vec(), short).await.unwrap();
        store.put("a:rewritten", b"v2".to_vec(), None).await.unwrap();
        store.put("a:extended", b"v1".to_vec(), short).await.unwrap();
        store
            .put("a:extended", b"v2".to_vec(), Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        store.put("a:due", b"v".to_vec(), short).await.unwrap();
        store.put("a:deleted", b"v".to_vec(), short).await.unwrap();
        store.delete("a:deleted").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(store.purge_expired().await.unwrap(), 2, "old:expired and a:due");
        assert_eq!(store.purge_expired().await.unwrap(), 0, "nothing twice");
        for (key, value) in [
            ("old:forever", &b"kept"[..]),
            ("a:rewritten", b"v2"),
            ("a:extended", b"v2"),
        ] {
            assert_eq!(store.get(key).await.unwrap().expect(key).value, value, "{key}");
        }
        let raw = |key: &'static str| {
            let file = store.file.clone();
            async move {
                file.with(|db| Ok(db.begin_read()?.open_table(KV)?.get(key)?.is_some()))
                    .unwrap()
            }
        };
        assert!(!raw("old:expired").await && !raw("a:due").await, "purged from the file");
        // The expiry table holds only the one live expiring record.
        let entries = store
            .file
            .with(|db| Ok(redb::ReadableTableMetadata::len(&db.begin_read()?.open_table(EXPIRY)?)?))
            .unwrap();
        assert_eq!(entries, 1);
    }

    #[tokio::test]
    async fn a_second_process_is_told_the_file_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.redb");
        let _held = EmbeddedStore::open(&path).unwrap();
        let err = EmbeddedStore::open(&path).unwrap_err();
        let e = err.to_string();
        assert!(e.contains("in use by another process"), "{e}");
        let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<redb::DatabaseError>());
        assert!(
            matches!(source, Some(redb::DatabaseError::DatabaseAlreadyOpen)),
            "redb's error is the source: {err:?}"
        );
    }

    #[tokio::test]
    async fn an_unusable_directory_keeps_the_io_error_as_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let err = EmbeddedStore::open(&not_a_dir.join("c.redb")).unwrap_err();
        let io = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .unwrap_or_else(|| panic!("the I/O error is the source: {err:?}"));
        assert!(err.to_string().ends_with(&io.to_string()), "{err}");
        assert!(err.to_string().contains("cannot create"), "{err}");
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/b.redb");
        {
            let store = EmbeddedStore::open(&path).unwrap();
            store.put("k", b"v".to_vec(), None).await.unwrap();
            store.put("k", b"w".to_vec(), None).await.unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        assert_eq!(
            store.get("k").await.unwrap(),
            Some(Versioned {
                value: b"w".to_vec(),
                version: 2
            })
        );
    }
}
