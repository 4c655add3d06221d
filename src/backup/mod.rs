//! `consent-broker backup` and `consent-broker restore`: a store's contents, still encrypted, in
//! one file, and back.
//!
//! A backup holds every live record exactly as stored (sealed by the encryption layer) with its
//! version and expiry, and every index member ([`format`] describes the file). It is written to
//! a temporary file beside the target, readable by its owner only (0600), flushed to disk and
//! renamed over the target, so the target is either the previous file or the whole new one.
//!
//! - **Embedded store**: the file is opened read-only beside the running broker (redb's
//!   single-writer mode, see `store::embedded`) and read in one read transaction: a consistent
//!   snapshot, taken while the broker goes on serving.
//! - **Redis** (one server, a Sentinel master, or a Cluster, every master in turn): the broker's
//!   keys by the configured key prefix, each record with its expiry, read key by key while the
//!   brokers run. Consistent per record, not across records; a restore therefore lets the first
//!   broker list every connection again (see [`Records::is_listing_marker`]).
//! - **Memory store**: refused; it keeps nothing to back up.
//!
//! A restore reads and checks the whole file before it writes anything, refuses a store that is
//! not empty unless forced, and writes the records as they were (still sealed: the same
//! encryption keys must be configured to read them, and it counts the records that do not open
//! with the configured keys). Neither command prints a value, only counts.

pub mod format;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::zeroize::Zeroizing;

use crate::config::{Config, StoreConfig};
use crate::store::records::Records;
use crate::store::{EmbeddedStore, Entry, Keyring, RedisStore, Store, StoreError, is_expired, now_millis};

/// Entries per [`Store::import`] call of a restore.
const RESTORE_BATCH: usize = 1_000;

/// Why a backup or a restore did not complete.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The configured store is the memory store.
    #[error(
        "the memory store keeps nothing beyond the process, so there is nothing to back up or restore; configure the embedded or the Redis store"
    )]
    MemoryStore,
    /// The store could not be opened or read, or refused a write.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Writing the backup file failed; the target is as it was.
    #[error("cannot write the backup to {path}: {source}; the file there (if any) is unchanged")]
    Write {
        /// The target.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The backup file could not be opened.
    #[error("cannot open the backup {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a complete, undamaged backup; nothing was written to the store.
    #[error("{path} is not a usable backup: {reason}; nothing was written to the store")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: format::FormatError,
    },
    /// The target store holds records or index entries already.
    #[error(
        "the {store} store is not empty; restore writes only into an empty store (start from an empty file or key prefix), or pass --force to write the backup's records over the ones there (others are kept)"
    )]
    NotEmpty {
        /// `embedded` or `redis`.
        store: &'static str,
    },
}

/// What a backup or a restore moved: counts only, never a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// `embedded` or `redis`: the store written to or read from.
    pub store: &'static str,
    /// Records by kind (the part of the key before its first `:`).
    pub records: BTreeMap<String, u64>,
    /// Index members by kind of index.
    pub index_members: BTreeMap<String, u64>,
    /// Records by the key id that sealed them (`(not encrypted)` for plain values).
    pub key_ids: BTreeMap<String, u64>,
    /// Restore: records left out because they expired since the backup.
    pub expired: u64,
    /// Restore: the listing marker left out, so the first broker lists connections again.
    pub relist: bool,
    /// Restore: records that do not open with the configured keys (written all the same).
    pub unreadable: u64,
}

fn kind_of(name: &str) -> String {
    name.split(':').next().unwrap_or(name).to_string()
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Summary {
    fn new(store: &'static str) -> Self {
        Self {
            store,
            ..Default::default()
        }
    }

    /// Records counted.
    pub fn record_count(&self) -> u64 {
        self.records.values().sum()
    }

    /// Index members counted.
    pub fn member_count(&self) -> u64 {
        self.index_members.values().sum()
    }

    fn count(&mut self, entry: &Entry, keys: Option<&Keyring>) {
        match entry {
            Entry::Record(r) => {
                *self.records.entry(kind_of(&r.key)).or_default() += 1;
                let id = keys
                    .and_then(|k| k.key_id_of(&r.key, &r.value).ok().flatten())
                    .map_or_else(|| "(not encrypted)".to_string(), str::to_string);
                *self.key_ids.entry(id).or_default() += 1;
            }
            Entry::IndexMember { index, .. } => *self.index_members.entry(kind_of(index)).or_default() += 1,
        }
    }

    /// The lines `backup` and `restore` print after their first one.
    pub fn details(&self) -> Vec<String> {
        let mut lines = vec![
            format!("  records by kind: {}", counts(&self.records)),
            format!("  index entries by index: {}", counts(&self.index_members)),
            format!("  records by encryption key id: {}", counts(&self.key_ids)),
        ];
        if self.expired > 0 {
            lines.push(format!(
                "  left out: {} record(s) expired since the backup",
                self.expired
            ));
        }
        if self.relist {
            lines.push("  the first broker started on this store lists every connection again".into());
        }
        lines
    }

    /// Warnings for standard error.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.unreadable > 0 {
            out.push(format!(
                "{} record(s) do not open with the configured encryption keys; they were restored unchanged, and the broker reports them as unreadable until the keys the backup was taken with are configured",
                self.unreadable
            ));
        }
        out
    }
}

fn store_name(config: &Config) -> Result<&'static str, BackupError> {
    match &config.store {
        StoreConfig::Memory { .. } => Err(BackupError::MemoryStore),
        StoreConfig::Embedded { .. } => Ok("embedded"),
        StoreConfig::Redis { .. } => Ok("redis"),
    }
}

/// Takes a backup of the configured store into `to` (see the module documentation).
pub async fn backup(config: &Config, to: &Path) -> Result<Summary, BackupError> {
    let store = store_name(config)?;
    let write_error = |source| BackupError::Write {
        path: to.to_path_buf(),
        source,
    };
    let partial = Partial::create(to).map_err(write_error)?;
    let mut writer =
        format::Writer::new(BufWriter::new(partial.file()?), &format::Header::new(store)).map_err(write_error)?;
    let mut summary = Summary::new(store);
    let mut failed = None;
    let keys = config.encryption.as_ref();
    let exported = {
        let mut sink = |entry: Entry| {
            summary.count(&entry, keys);
            writer.entry(&entry).map_err(|e| {
                let stop = StoreError::backend(format!("writing the backup failed: {e}"));
                failed = Some(e);
                stop
            })
        };
        match &config.store {
            StoreConfig::Embedded { path, .. } => EmbeddedStore::export_file(path, &mut sink).await,
            StoreConfig::Redis { redis, .. } => match RedisStore::connect(redis).await {
                Ok(redis) => redis.export(&mut sink).await,
                Err(e) => Err(e),
            },
            StoreConfig::Memory { .. } => return Err(BackupError::MemoryStore),
        }
    };
    if let Some(e) = failed {
        return Err(write_error(e));
    }
    exported?;
    let mut out = writer.finish().map_err(write_error)?;
    out.flush().map_err(write_error)?;
    drop(out);
    partial.commit().map_err(write_error)?;
    Ok(summary)
}

/// Restores the backup `from` into the configured store (see the module documentation).
pub async fn restore(config: &Config, from: &Path, force: bool) -> Result<Summary, BackupError> {
    let store_kind = store_name(config)?;
    let file = File::open(from).map_err(|source| BackupError::Open {
        path: from.to_path_buf(),
        source,
    })?;
    let backup = format::read(BufReader::new(file)).map_err(|reason| BackupError::Invalid {
        path: from.to_path_buf(),
        reason,
    })?;
    // The raw backend, without the encryption layer: the values are sealed already.
    let store: Arc<dyn Store> = match &config.store {
        StoreConfig::Embedded { path, cache_bytes, .. } => {
            Arc::new(EmbeddedStore::open_with_cache(path, *cache_bytes)?)
        }
        StoreConfig::Redis { redis, .. } => Arc::new(RedisStore::connect(redis).await?),
        StoreConfig::Memory { .. } => return Err(BackupError::MemoryStore),
    };
    if !force && !store.is_empty().await? {
        return Err(BackupError::NotEmpty { store: store_kind });
    }
    let mut summary = Summary::new(store_kind);
    let keys = config.encryption.as_ref();
    let now = now_millis();
    let mut entries = Vec::with_capacity(backup.entries.len());
    for entry in backup.entries {
        if let Entry::Record(r) = &entry {
            if Records::is_listing_marker(&r.key) {
                summary.relist = true;
                continue;
            }
            if is_expired(r.expires_at_ms, now) {
                summary.expired += 1;
                continue;
            }
            if let Some(keys) = keys
                && keys.open(&r.key, &r.value).map(Zeroizing::new).is_err()
            {
                summary.unreadable += 1;
            }
        }
        summary.count(&entry, keys);
        entries.push(entry);
    }
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        store.import(entries.by_ref().take(RESTORE_BATCH).collect()).await?;
    }
    Ok(summary)
}

/// The temporary file a backup is written to, beside its target; removed unless committed.
struct Partial {
    temp: PathBuf,
    target: PathBuf,
    file: Option<File>,
}

impl Partial {
    fn create(target: &Path) -> std::io::Result<Self> {
        let name = target
            .file_name()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"))?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let suffix = crate::crypto::random_token();
        let temp = dir.join(format!(
            ".{}.{}.partial",
            name.to_string_lossy(),
            &suffix[..12.min(suffix.len())]
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&temp)?;
        Ok(Self {
            temp,
            target: target.to_path_buf(),
            file: Some(file),
        })
    }

    fn file(&self) -> Result<File, BackupError> {
        self.file
            .as_ref()
            .and_then(|f| f.try_clone().ok())
            .ok_or_else(|| BackupError::Write {
                path: self.target.clone(),
                source: std::io::Error::other("the temporary file is gone"),
            })
    }

    /// Flushes the file to disk and renames it over the target, then flushes the directory.
    fn commit(mut self) -> std::io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        std::fs::rename(&self.temp, &self.target)?;
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_the_first_part_of_a_key() {
        assert_eq!(kind_of("conn:{conn_1}"), "conn");
        assert_eq!(kind_of("keepalive"), "keepalive");
        assert_eq!(kind_of("webhooks-dead:files"), "webhooks-dead");
    }

    #[test]
    fn a_partial_file_is_private_and_gone_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("b.backup");
        std::fs::write(&target, b"previous").unwrap();
        {
            let partial = Partial::create(&target).unwrap();
            let mut f = partial.file().unwrap();
            f.write_all(b"half").unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&partial.temp).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the partial file is removed"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"previous", "the target is untouched");
        let partial = Partial::create(&target).unwrap();
        partial.file().unwrap().write_all(b"new").unwrap();
        partial.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
