//! [`Store::write_with_event`] on Redis: one script over both keys wherever both live on one
//! server (standalone, Sentinel, or a cluster when the two keys hash to one slot); on a cluster
//! with the keys in different slots, which no script may span, the write and then the event as
//! two operations (see the module documentation of `redis.rs`).

use std::time::Duration;

use ::redis::cluster_routing::Slot;

use super::{Conn, RedisStore, ttl_arg};
use crate::store::{CasOutcome, Store, StoreError, Write, WriteOutcome, check_event_key};

/// What the script returns when the write's condition failed (versions are never negative).
const NOT_APPLIED: i64 = -1;

impl RedisStore {
    /// The body of [`Store::write_with_event`].
    pub(super) async fn write_and_event(
        &self,
        write: Write,
        event_key: &str,
        event_value: Vec<u8>,
        event_ttl: Option<Duration>,
    ) -> Result<WriteOutcome, StoreError> {
        check_event_key(&write, event_key)?;
        let record = self.key(write.key());
        let event = self.key(event_key);
        if matches!(self.conn, Conn::Cluster(_)) && !same_slot(&record, &event) {
            return self.write_then_event(write, event_key, event_value, event_ttl).await;
        }
        let (op, expected_version, value, ttl) = match write {
            Write::Put { value, ttl, .. } => ("put", 0, value, ttl),
            Write::Cas {
                expected_version,
                value,
                ttl,
                ..
            } => ("cas", expected_version, value, ttl),
            Write::InsertNew { value, ttl, .. } => ("insert_new", 0, value, ttl),
            Write::Delete { .. } => ("delete", 0, Vec::new(), None),
        };
        let mut call = self.scripts.write_with_event.key(record);
        call.key(event)
            .arg(op)
            .arg(expected_version.to_string())
            .arg(value)
            .arg(ttl_arg(ttl))
            .arg(event_value)
            .arg(ttl_arg(event_ttl));
        let version: i64 = self.script("write_with_event", call).await?;
        if version == NOT_APPLIED {
            return Ok(WriteOutcome::NotApplied);
        }
        u64::try_from(version).map(WriteOutcome::Applied).map_err(|e| {
            StoreError::backend_from(format!("redis write_with_event: unexpected reply {version}: {e}"), e)
        })
    }

    /// The cluster case with the keys in two slots: not atomic. The write goes first, so that an
    /// event is never stored for a write that did not happen; a failure in between loses the
    /// event, and the caller hears of it as an error.
    async fn write_then_event(
        &self,
        write: Write,
        event_key: &str,
        event_value: Vec<u8>,
        event_ttl: Option<Duration>,
    ) -> Result<WriteOutcome, StoreError> {
        let key = write.key().to_string();
        let applied = match write {
            Write::Put { key, value, ttl } => Some(self.put(&key, value, ttl).await?),
            Write::Cas {
                key,
                expected_version,
                value,
                ttl,
            } => match self.compare_and_swap(&key, expected_version, value, ttl).await? {
                CasOutcome::Written(version) => Some(version),
                CasOutcome::Conflict => None,
            },
            Write::InsertNew { key, value, ttl } => self.insert_new(&key, value, ttl).await?.then_some(1),
            Write::Delete { key } => self.delete(&key).await?.then_some(0),
        };
        let Some(version) = applied else {
            return Ok(WriteOutcome::NotApplied);
        };
        self.put(event_key, event_value, event_ttl).await.map_err(|e| {
            StoreError::backend_from(
                format!(
                    "write_with_event: the write of {key} applied but its event {event_key} was not stored (the keys are in different cluster slots): {e}"
                ),
                e,
            )
        })?;
        Ok(WriteOutcome::Applied(version))
    }
}

/// Whether Redis Cluster puts both full keys in one slot (the hash tag `{...}` decides when
/// there is one), so that one script may touch both.
pub(super) fn same_slot(a: &str, b: &str) -> bool {
    Slot::for_key(a) == Slot::for_key(b)
}
