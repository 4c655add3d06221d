//! Export and import of the broker's keys (`consent-broker backup` and `restore`).
//!
//! Export walks every name under the key prefix with `SCAN` (every master in turn on a cluster,
//! as `scan` does), and reads each record (a hash) with `HMGET` and `PTTL` in one `MULTI`/`EXEC`,
//! so each record comes with the expiry it had at that moment; each index (a sorted set) is read
//! page by page. Redis offers no read across keys short of its own snapshot (RDB), so the export
//! is consistent per record, not across records: a record written during the walk may or may
//! not be in it. A name `SCAN` returns twice is exported once. A key under the prefix of any
//! other type was not written by the broker; it is left out and logged.
//!
//! Import writes each record with `DEL`, `HSET v d` and `PEXPIRE` in one `MULTI`/`EXEC` (one key,
//! so one cluster slot), with what is left of its expiry; index members go in with `ZADD`.

use std::collections::HashSet;

use ::redis::{Cmd, FromRedisValue, Pipeline};

use super::{Conn, INDEX_PREFIX, RedisStore};
use crate::store::{Entry, ExportSink, RawRecord, StoreError, now_millis};

/// Names asked for per `SCAN` page, and index members per `ZRANGEBYLEX` page.
const PAGE: usize = 1_000;
/// What `HMGET v d` and `PTTL` answer for one record: (version, value), then milliseconds left.
type RecordReply = ((Option<Vec<u8>>, Option<Vec<u8>>), i64);

/// Members per `ZADD` of an import.
const ZADD_BATCH: usize = 500;

impl RedisStore {
    /// One `MULTI`/`EXEC` (or plain pipeline) on the right connection, bounded like `command`.
    async fn pipeline<T: FromRedisValue + Send>(&self, op: &str, pipe: Pipeline, write: bool) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let deadline = self.deadline();
        self.bounded(op, async move {
            match conn {
                Conn::Standalone(mut c) => pipe.query_async(&mut c).await,
                Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
                Conn::Sentinel(s) => {
                    s.run(deadline, write, |mut c| async move { pipe.query_async(&mut c).await })
                        .await
                }
            }
        })
        .await
    }

    /// True when `SCAN` finds no name under the prefix (no record, no index).
    pub(super) async fn no_names(&self) -> Result<bool, StoreError> {
        let mut cursor = None;
        loop {
            let (names, next) = self.scan_names(cursor, PAGE).await?;
            if !self.stripped(names).is_empty() {
                return Ok(false);
            }
            match next {
                Some(n) => cursor = Some(n),
                None => return Ok(true),
            }
        }
    }

    pub(super) async fn export_keys(&self, sink: &mut ExportSink<'_>) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        let mut cursor = None;
        loop {
            let (names, next) = self.scan_names(cursor, PAGE).await?;
            for name in self.stripped(names) {
                if !seen.insert(name.clone()) {
                    continue;
                }
                if let Some(index) = name.strip_prefix(INDEX_PREFIX) {
                    self.export_index(index, sink).await?;
                } else if let Some(record) = self.export_record(&name).await? {
                    sink(Entry::Record(record))?;
                }
            }
            match next {
                Some(n) => cursor = Some(n),
                None => return Ok(()),
            }
        }
    }

    /// The record `key` with its expiry; `None` when it is gone meanwhile or is not a record.
    async fn export_record(&self, key: &str) -> Result<Option<RawRecord>, StoreError> {
        let full = self.key(key);
        let mut kind = ::redis::cmd("TYPE");
        kind.arg(&full);
        let kind: String = self.command("TYPE", kind, false).await?;
        match kind.as_str() {
            "hash" => {}
            "none" => return Ok(None),
            other => {
                tracing::warn!(key = %full, kind = %other, "a key under the prefix is not the broker's; not backed up");
                return Ok(None);
            }
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("HMGET")
            .arg(&full)
            .arg("v")
            .arg("d")
            .cmd("PTTL")
            .arg(&full);
        let now = now_millis();
        let ((version, value), pttl): RecordReply = self.pipeline("HMGET+PTTL", pipe, false).await?;
        let corrupt = |message: &str| StoreError::Corrupt {
            key: key.to_string(),
            message: message.into(),
        };
        let (version, value) = match (version, value) {
            (None, None) => return Ok(None),
            (Some(v), Some(d)) => (v, d),
            _ => return Err(corrupt("the record lacks its version or its value")),
        };
        let version = std::str::from_utf8(&version)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v >= 1)
            .ok_or_else(|| corrupt("the version field is not a positive integer"))?;
        let expires_at_ms = match pttl {
            -2 => return Ok(None),
            ms if ms < 0 => 0,
            ms => now.saturating_add(ms as u64).max(1),
        };
        Ok(Some(RawRecord {
            key: key.to_string(),
            value,
            version,
            expires_at_ms,
        }))
    }

    async fn export_index(&self, index: &str, sink: &mut ExportSink<'_>) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        loop {
            let members = self.index_range_page(index, after.as_deref()).await?;
            let done = members.len() < PAGE;
            after = members.last().cloned();
            for member in members {
                sink(Entry::IndexMember {
                    index: index.to_string(),
                    member,
                })?;
            }
            if done {
                return Ok(());
            }
        }
    }

    async fn index_range_page(&self, index: &str, after: Option<&str>) -> Result<Vec<String>, StoreError> {
        let mut cmd = ::redis::cmd("ZRANGEBYLEX");
        cmd.arg(self.index_key(index))
            .arg(after.map_or_else(|| "-".to_string(), |a| format!("({a}")))
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(PAGE);
        self.command("ZRANGEBYLEX", cmd, false).await
    }

    pub(super) async fn import_entries(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut members: Vec<(String, String)> = Vec::new();
        for entry in entries {
            match entry {
                Entry::Record(r) => self.import_record(r).await?,
                Entry::IndexMember { index, member } => members.push((index, member)),
            }
        }
        members.sort();
        for group in members.chunk_by(|a, b| a.0 == b.0) {
            for batch in group.chunks(ZADD_BATCH) {
                let mut cmd: Cmd = ::redis::cmd("ZADD");
                cmd.arg(self.index_key(&batch[0].0));
                for (_, member) in batch {
                    cmd.arg(0).arg(member);
                }
                self.command::<i64>("ZADD", cmd, true).await?;
            }
        }
        Ok(())
    }

    async fn import_record(&self, r: RawRecord) -> Result<(), StoreError> {
        let left_ms = match r.expires_at_ms {
            0 => None,
            at => match at.checked_sub(now_millis()) {
                Some(left) if left > 0 => Some(left),
                // Expired since the backup: it would be invisible anyway.
                _ => return Ok(()),
            },
        };
        let full = self.key(&r.key);
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(&full)
            .ignore()
            .cmd("HSET")
            .arg(&full)
            .arg("v")
            .arg(r.version.to_string())
            .arg("d")
            .arg(r.value)
            .ignore();
        if let Some(ms) = left_ms {
            pipe.cmd("PEXPIRE")
                .arg(&full)
                .arg(ms.min(super::MAX_TTL_MS as u64))
                .ignore();
        }
        self.pipeline::<()>("restore", pipe, true).await
    }
}
