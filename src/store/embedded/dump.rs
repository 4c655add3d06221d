//! Export and import of the embedded store (`consent-broker backup` and `restore`): the whole
//! file in one read transaction, from the broker's own handle or from a read-only one opened
//! beside a running broker ([`EmbeddedStore::export_file`]).

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::mpsc;

use super::{CONCURRENCY, EXPIRY, EmbeddedStore, Failure, HEADER, INDEX, KV, backend, decode, encode};
use crate::store::{Entry, ExportSink, RawRecord, StoreError, is_expired, now_millis};

/// Entries in flight between the reading thread and the sink.
pub(super) const CHANNEL: usize = 256;
/// Records written per write transaction by an import (one commit, one flush, each).
const IMPORT_BATCH: usize = 1_000;

/// Sends every live record and index member of one read transaction to `tx`; stops early, with
/// no error, when the receiver is gone (the sink failed, and says why).
pub(super) fn export_in(db: &impl ReadableDatabase, tx: &mpsc::Sender<Entry>) -> Result<(), Failure> {
    let txn = db.begin_read()?;
    let now = now_millis();
    for item in txn.open_table(KV)?.iter()? {
        let (key, raw) = item?;
        let key = key.value();
        // A record too short for its header has no version or expiry to save: the backup fails
        // naming it rather than leaving it out unnoticed.
        let (version, expires_at_ms, value) = decode(key, raw.value())?;
        if is_expired(expires_at_ms, now) {
            continue;
        }
        let record = RawRecord {
            key: key.to_string(),
            value: value.to_vec(),
            version,
            expires_at_ms,
        };
        if tx.blocking_send(Entry::Record(record)).is_err() {
            return Ok(());
        }
    }
    for item in txn.open_table(INDEX)?.iter()? {
        let (key, _) = item?;
        let (index, member) = key.value();
        let entry = Entry::IndexMember {
            index: index.to_string(),
            member: member.to_string(),
        };
        if tx.blocking_send(entry).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Runs `reading` (which fills the channel) and hands what arrives to `sink`; the sink's error
/// wins over the reader's, which only stopped because of it.
pub(super) async fn drain(
    reading: impl Future<Output = Result<(), StoreError>>,
    mut rx: mpsc::Receiver<Entry>,
    sink: &mut ExportSink<'_>,
) -> Result<(), StoreError> {
    let receiving = async move {
        while let Some(entry) = rx.recv().await {
            sink(entry)?;
        }
        Ok::<(), StoreError>(())
    };
    let (read, received) = tokio::join!(reading, receiving);
    received.and(read)
}

/// Writes `entries` in batches of [`IMPORT_BATCH`], each in one write transaction.
pub(super) fn import_in(db: &Database, entries: Vec<Entry>) -> Result<(), Failure> {
    let now = now_millis();
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let txn = db.begin_write()?;
        {
            let mut records = txn.open_table(KV)?;
            let mut indexes = txn.open_table(INDEX)?;
            let mut expiry = txn.open_table(EXPIRY)?;
            for entry in entries.by_ref().take(IMPORT_BATCH) {
                match entry {
                    Entry::Record(r) if !is_expired(r.expires_at_ms, now) => {
                        records.insert(r.key.as_str(), encode(r.version, r.expires_at_ms, &r.value).as_slice())?;
                        if r.expires_at_ms != 0 {
                            expiry.insert((r.expires_at_ms, r.key.as_str()), ())?;
                        }
                    }
                    Entry::Record(_) => {}
                    Entry::IndexMember { index, member } => {
                        indexes.insert((index.as_str(), member.as_str()), ())?;
                    }
                }
            }
        }
        txn.commit()?;
    }
    Ok(())
}

/// No live record (one too short for its header counts as present) and no index member.
pub(super) fn is_empty_in(db: &Database) -> Result<bool, Failure> {
    let txn = db.begin_read()?;
    let now = now_millis();
    for item in txn.open_table(KV)?.iter()? {
        let (_, raw) = item?;
        let raw = raw.value();
        if raw.len() < HEADER || !is_expired(u64::from_le_bytes(raw[8..16].try_into().unwrap_or_default()), now) {
            return Ok(false);
        }
    }
    Ok(txn.open_table(INDEX)?.first()?.is_none())
}

impl EmbeddedStore {
    /// Exports the store file at `path` as [`crate::store::Store::export`] does, through a
    /// read-only handle that a running broker admits beside it (see [`CONCURRENCY`]): one read
    /// transaction, so a consistent snapshot while the broker writes. Never writes to the file.
    pub async fn export_file(path: &Path, sink: &mut ExportSink<'_>) -> Result<(), StoreError> {
        let path = path.to_path_buf();
        let (tx, rx) = mpsc::channel(CHANNEL);
        let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
        let reading = async move {
            tokio::task::spawn_blocking(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let db = open_read_only(&path)?;
                    export_in(&db, &tx).map_err(|e| match e {
                        Failure::Store(e) => e,
                        Failure::Redb(e) => backend(format_args!("cannot read {}", path.display()), e),
                    })
                })
            })
            .await
            .map_err(|e| backend("store task failed", e))?
        };
        drain(reading, rx, sink).await
    }
}

/// Opens the file read-only beside a running broker, with messages for the cases an operator
/// meets.
fn open_read_only(path: &Path) -> Result<redb::ReadOnlyDatabase, StoreError> {
    if !path.exists() {
        return Err(StoreError::backend(format!(
            "cannot open {}: there is no store file there",
            path.display()
        )));
    }
    redb::Builder::new()
        .set_concurrency_mode(CONCURRENCY)
        .open_read_only(path)
        .map_err(|e| match e {
            e @ redb::DatabaseError::DatabaseAlreadyOpen => StoreError::backend_from(
                format!(
                    "cannot open {} read-only: another process locks the whole file (a consent-broker older than this one, or another tool); stop it or upgrade it first",
                    path.display()
                ),
                e,
            ),
            e @ redb::DatabaseError::RepairAborted => StoreError::backend_from(
                format!(
                    "cannot open {} read-only: the file was not closed cleanly and no broker has it open; start the broker once (it repairs the file), then take the backup",
                    path.display()
                ),
                e,
            ),
            e => backend(format_args!("cannot open {} read-only", path.display()), e),
        })
}
