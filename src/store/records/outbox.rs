//! The webhook outbox: one record per event (its body fixed when it was raised, and where each
//! of the connector's endpoints stands), an ordered index of when each event is next due, and
//! the dead letters a connector may list and re-send.
//!
//! An event is written in the same store operation as the change that raises it
//! ([`Records::apply`], over [`crate::store::Store::write_with_event`]), so a crash between the two
//! cannot lose it. Its due entry is added just before: a crash in between leaves an entry without
//! a record, which delivery drops once it is old, never a record nobody would find.

use std::time::Duration;

use super::keys::*;
use super::{Records, encode};
use crate::ids::ConnectorId;
use crate::store::{CasOutcome, StoreError, Write, WriteOutcome};

/// A due entry older than this without its record is dropped (its write never happened).
const ORPHAN_AFTER_MS: i64 = 60_000;
/// How long a dead letter is kept for listing and re-sending.
pub const DEAD_LETTER_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where one endpoint's delivery of an event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not acknowledged yet; retried until the window ends.
    Pending,
    /// A 2xx answer acknowledged it.
    Delivered,
    /// The retry window ended without an acknowledgement.
    Dead,
}

/// One endpoint's delivery of an event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    /// The endpoint (as configured when the event was raised).
    pub url: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds of the next attempt, while pending.
    pub next_at_ms: i64,
    /// What the last failed attempt met (a status code or a transport error), never a body.
    pub last_error: Option<String>,
}

/// One event in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxEvent {
    /// `evt_…`: the `webhook-id`, the same on every attempt.
    pub id: String,
    /// The connector whose endpoints receive it.
    pub connector: ConnectorId,
    /// The event type (`connection.created`, …).
    pub kind: String,
    /// The JSON body, fixed when the event was raised.
    pub body: String,
    /// Unix milliseconds when it was raised.
    pub created_at_ms: i64,
    /// Unix milliseconds from which the retry window counts (raised, or last re-sent).
    pub window_from_ms: i64,
    /// One per endpoint.
    pub deliveries: Vec<Delivery>,
}

impl OutboxEvent {
    /// When the next pending delivery is due, if any is pending.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.deliveries
            .iter()
            .filter(|d| d.state == DeliveryState::Pending)
            .map(|d| d.next_at_ms)
            .min()
    }
}

/// An event ready to be written with the change that raises it.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// Its record key (carrying the hash tag of the record it is written with).
    pub key: String,
    /// The event.
    pub event: OutboxEvent,
    /// Woken once the event is stored, so this broker delivers it without waiting for its tick.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}

impl PendingEvent {
    /// An event keyed to be written atomically with a record under the hash tag `tag` (a
    /// connection's id; the event's own id otherwise).
    pub fn new(tag: &str, event: OutboxEvent, wake: std::sync::Arc<tokio::sync::Notify>) -> Self {
        Self {
            key: outbox_key(tag, &event.id),
            event,
            wake,
        }
    }
}

/// An outbox entry due for delivery: its index member and record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEvent {
    /// The member in the due index.
    pub member: String,
    /// The event's record key.
    pub key: String,
    /// When it is due (Unix milliseconds).
    pub due_ms: i64,
}

/// A dead letter as listed: the event and its record key.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The event, with the deliveries that died.
    pub event: OutboxEvent,
}

impl Records {
    /// Applies `write` and, when `event` is given, stores it in the same operation; the event is
    /// filed for delivery only when the write applied.
    pub async fn apply(&self, write: Write, event: Option<&PendingEvent>) -> Result<WriteOutcome, StoreError> {
        let Some(event) = event else {
            return self.apply_plain(write).await;
        };
        let member = due_member(
            event.event.next_due_ms().unwrap_or(event.event.created_at_ms),
            &event.key,
        );
        self.store.index_add(WEBHOOK_DUE_INDEX, &member).await?;
        let outcome = self
            .store
            .write_with_event(write, &event.key, encode(&event.event), None)
            .await;
        match &outcome {
            Ok(WriteOutcome::Applied(_)) => event.wake.notify_one(),
            // Not written: its due entry goes too (if this fails, delivery drops it later).
            Ok(WriteOutcome::NotApplied) => {
                if let Err(e) = self.store.index_remove(WEBHOOK_DUE_INDEX, &member).await {
                    tracing::debug!(error = %e, "an unwritten event's due entry stays until delivery drops it");
                }
            }
            // Unknown (a timeout may come after the write landed): the entry stays, and delivery
            // either finds the event or drops the entry once it is old.
            Err(_) => {}
        }
        outcome
    }

    /// Stores an event that goes with no record change (its own insert is the change).
    pub async fn raise(&self, event: &PendingEvent) -> Result<(), StoreError> {
        let member = due_member(event.event.created_at_ms, &event.key);
        self.store.index_add(WEBHOOK_DUE_INDEX, &member).await?;
        self.store.put(&event.key, encode(&event.event), None).await?;
        event.wake.notify_one();
        Ok(())
    }

    async fn apply_plain(&self, write: Write) -> Result<WriteOutcome, StoreError> {
        let applied = match write {
            Write::Put { key, value, ttl } => Some(self.store.put(&key, value, ttl).await?),
            Write::Cas {
                key,
                expected_version,
                value,
                ttl,
            } => match self.store.compare_and_swap(&key, expected_version, value, ttl).await? {
                CasOutcome::Written(v) => Some(v),
                CasOutcome::Conflict => None,
            },
            Write::InsertNew { key, value, ttl } => self.store.insert_new(&key, value, ttl).await?.then_some(1),
            Write::Delete { key } => self.store.delete(&key).await?.then_some(0),
        };
        Ok(applied.map_or(WriteOutcome::NotApplied, WriteOutcome::Applied))
    }

    /// Up to `limit` outbox entries due at `now_ms` or earlier, earliest first.
    pub async fn due_events(&self, now_ms: i64, limit: usize) -> Result<Vec<DueEvent>, StoreError> {
        let members = self.store.index_range(WEBHOOK_DUE_INDEX, None, limit).await?;
        Ok(members
            .into_iter()
            .filter_map(|member| {
                let (due, key) = member.split_once(':')?;
                let due_ms: i64 = due.parse().ok()?;
                (due_ms <= now_ms).then(|| DueEvent {
                    key: key.to_string(),
                    due_ms,
                    member: member.clone(),
                })
            })
            .collect())
    }

    /// An outbox event with its version.
    pub async fn outbox_event(&self, key: &str) -> Result<Option<(OutboxEvent, u64)>, StoreError> {
        self.get(key).await
    }

    /// Drops a due entry whose record is gone: at once when the event was finished, else only
    /// once it is old (its record may be about to be written).
    pub async fn drop_due(&self, due: &DueEvent, now_ms: i64, finished: bool) -> Result<(), StoreError> {
        if finished || now_ms - due.due_ms > ORPHAN_AFTER_MS {
            self.store.index_remove(WEBHOOK_DUE_INDEX, &due.member).await?;
        }
        Ok(())
    }

    /// Writes an event back after attempts (compare-and-swap on `version`) and files it anew:
    /// under its next due time while a delivery is pending; as a dead letter of its connector
    /// when none is pending and one died; gone when all were delivered. The due entry `old` is
    /// removed last, so a crash leaves the event filed twice (delivered at least once), never not
    /// at all. False when someone wrote the event meanwhile (nothing changed; it stays due).
    pub async fn settle_event(
        &self,
        key: &str,
        event: &OutboxEvent,
        version: u64,
        old: &str,
    ) -> Result<bool, StoreError> {
        let dead = event.deliveries.iter().any(|d| d.state == DeliveryState::Dead);
        let written = match event.next_due_ms() {
            Some(due) => {
                let outcome = self.store.compare_and_swap(key, version, encode(event), None).await?;
                if outcome == CasOutcome::Conflict {
                    return Ok(false);
                }
                let member = due_member(due, key);
                if member != old {
                    self.store.index_add(WEBHOOK_DUE_INDEX, &member).await?;
                }
                member != old
            }
            None if dead => {
                let outcome = self
                    .store
                    .compare_and_swap(key, version, encode(event), Some(DEAD_LETTER_RETENTION))
                    .await?;
                if outcome == CasOutcome::Conflict {
                    return Ok(false);
                }
                self.store
                    .put(
                        &dead_letter_key(event.connector.as_str(), &event.id),
                        encode(&key.to_string()),
                        Some(DEAD_LETTER_RETENTION),
                    )
                    .await?;
                self.store
                    .index_add(
                        &dead_letter_index(event.connector.as_str()),
                        &dead_letter_member(event.created_at_ms, &event.id),
                    )
                    .await?;
                true
            }
            None => {
                // Delivered everywhere: a zero TTL removes it only if nobody wrote it meanwhile.
                let outcome = self
                    .store
                    .compare_and_swap(key, version, encode(event), Some(Duration::ZERO))
                    .await?;
                if outcome == CasOutcome::Conflict {
                    return Ok(false);
                }
                true
            }
        };
        if written {
            self.store.index_remove(WEBHOOK_DUE_INDEX, old).await?;
        }
        Ok(true)
    }

    /// A connector's dead letters, newest first: up to `limit` after the member `after`, and the
    /// member to continue after when more may follow.
    pub async fn dead_letters(
        &self,
        connector: &ConnectorId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, Option<String>), StoreError> {
        let index = dead_letter_index(connector.as_str());
        let members = self.store.index_range(&index, after, limit.max(1)).await?;
        let more = members.len() >= limit.max(1);
        let mut letters = Vec::new();
        let last = members.last().cloned();
        for member in members {
            let Some((_, id)) = member.split_once(':') else {
                continue;
            };
            match self.dead_letter(connector, id).await? {
                Some((event, _, _)) => letters.push(DeadLetter { event }),
                // Expired, or re-sent meanwhile: the entry has no letter behind it any more.
                None => {
                    self.store.index_remove(&index, &member).await?;
                }
            }
        }
        Ok((letters, if more { last } else { None }))
    }

    /// One of a connector's dead letters by event id: the event, its version and record key.
    pub async fn dead_letter(
        &self,
        connector: &ConnectorId,
        event_id: &str,
    ) -> Result<Option<(OutboxEvent, u64, String)>, StoreError> {
        let Some((key, _)) = self
            .get::<String>(&dead_letter_key(connector.as_str(), event_id))
            .await?
        else {
            return Ok(None);
        };
        match self.get::<OutboxEvent>(&key).await? {
            Some((event, version)) if event.connector == *connector && event.id == event_id => {
                let dead = event.deliveries.iter().any(|d| d.state == DeliveryState::Dead);
                Ok(dead.then_some((event, version, key)))
            }
            _ => Ok(None),
        }
    }

    /// Sends a dead letter again: its dead deliveries pending from `now_ms`, with a fresh retry
    /// window; false when someone changed it meanwhile.
    pub async fn resend_dead_letter(
        &self,
        mut event: OutboxEvent,
        version: u64,
        key: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        for d in event.deliveries.iter_mut().filter(|d| d.state == DeliveryState::Dead) {
            d.state = DeliveryState::Pending;
            d.attempts = 0;
            d.next_at_ms = now_ms;
        }
        event.window_from_ms = now_ms;
        let member = due_member(now_ms, key);
        self.store.index_add(WEBHOOK_DUE_INDEX, &member).await?;
        if self.store.compare_and_swap(key, version, encode(&event), None).await? == CasOutcome::Conflict {
            self.store.index_remove(WEBHOOK_DUE_INDEX, &member).await?;
            return Ok(false);
        }
        self.store
            .delete(&dead_letter_key(event.connector.as_str(), &event.id))
            .await?;
        self.store
            .index_remove(
                &dead_letter_index(event.connector.as_str()),
                &dead_letter_member(event.created_at_ms, &event.id),
            )
            .await?;
        Ok(true)
    }

    /// Takes the delivery lease of an event for `ttl`: one broker attempts it at a time.
    pub async fn try_delivery_lease(&self, key: &str, ttl: Duration) -> Result<Option<super::Lease>, StoreError> {
        self.try_lease_on(delivery_lease_key(key), ttl).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryStore;

    fn event(id: &str, urls: &[&str], now_ms: i64) -> OutboxEvent {
        OutboxEvent {
            id: id.into(),
            connector: "files".into(),
            kind: "connection.created".into(),
            body: "{}".into(),
            created_at_ms: now_ms,
            window_from_ms: now_ms,
            deliveries: urls
                .iter()
                .map(|u| Delivery {
                    url: u.to_string(),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    next_at_ms: now_ms,
                    last_error: None,
                })
                .collect(),
        }
    }

    fn pending(tag: &str, e: OutboxEvent) -> PendingEvent {
        PendingEvent::new(tag, e, Arc::new(tokio::sync::Notify::new()))
    }

    #[tokio::test]
    async fn an_event_is_filed_only_when_its_write_applies() {
        let records = Records::new(Arc::new(MemoryStore::new()));
        let p = pending("conn_1", event("evt_1", &["https://a.example/"], 1_000));
        let put = Write::Put {
            key: "conn:{conn_1}".into(),
            value: b"x".to_vec(),
            ttl: None,
        };
        assert_eq!(records.apply(put, Some(&p)).await.unwrap(), WriteOutcome::Applied(1));
        let due = records.due_events(1_000, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].key, p.key);
        assert!(p.key.contains("{conn_1}"), "under the connection's hash tag: {}", p.key);
        assert_eq!(records.outbox_event(&p.key).await.unwrap().unwrap().0, p.event);

        // A stale compare-and-swap writes neither the record nor the event, nor leaves a due entry.
        let q = pending("conn_1", event("evt_2", &["https://a.example/"], 1_000));
        let stale = Write::Cas {
            key: "conn:{conn_1}".into(),
            expected_version: 7,
            value: b"y".to_vec(),
            ttl: None,
        };
        assert_eq!(records.apply(stale, Some(&q)).await.unwrap(), WriteOutcome::NotApplied);
        assert!(records.outbox_event(&q.key).await.unwrap().is_none());
        assert_eq!(records.due_events(i64::MAX, 10).await.unwrap().len(), 1);
        assert!(
            records.due_events(999, 10).await.unwrap().is_empty(),
            "not due before its time"
        );
    }

    #[tokio::test]
    async fn settling_reschedules_finishes_or_dead_letters_and_a_dead_letter_is_resent_once() {
        let records = Records::new(Arc::new(MemoryStore::new()));
        let files: ConnectorId = "files".into();
        let p = pending(
            "evt_1",
            event("evt_1", &["https://a.example/", "https://b.example/"], 1_000),
        );
        records.raise(&p).await.unwrap();
        let due = records.due_events(1_000, 10).await.unwrap().remove(0);
        let (mut e, v) = records.outbox_event(&due.key).await.unwrap().unwrap();

        // One endpoint acknowledged, the other retries later: filed under the later time only.
        e.deliveries[0].state = DeliveryState::Delivered;
        e.deliveries[1].next_at_ms = 6_000;
        assert!(records.settle_event(&due.key, &e, v, &due.member).await.unwrap());
        assert!(records.due_events(5_999, 10).await.unwrap().is_empty());
        let due = records.due_events(6_000, 10).await.unwrap();
        assert_eq!(due.len(), 1, "the old entry is gone");
        let due = due[0].clone();
        assert!(
            !records.settle_event(&due.key, &e, v, &due.member).await.unwrap(),
            "a stale version changes nothing"
        );

        // The window ends: a dead letter of its connector, out of the due index.
        let (mut e, v) = records.outbox_event(&due.key).await.unwrap().unwrap();
        e.deliveries[1].state = DeliveryState::Dead;
        e.deliveries[1].last_error = Some("HTTP 503".into());
        assert!(records.settle_event(&due.key, &e, v, &due.member).await.unwrap());
        assert!(records.due_events(i64::MAX, 10).await.unwrap().is_empty());
        let (letters, next) = records.dead_letters(&files, None, 10).await.unwrap();
        assert_eq!((letters.len(), next), (1, None));
        assert!(
            records.dead_letter(&"crm".into(), "evt_1").await.unwrap().is_none(),
            "only its connector's"
        );

        // Re-sent: due again with a fresh window, only the dead delivery pending, the letter gone.
        let (e, v, key) = records.dead_letter(&files, "evt_1").await.unwrap().unwrap();
        assert!(records.resend_dead_letter(e, v, &key, 9_000).await.unwrap());
        let (e, _) = records.outbox_event(&key).await.unwrap().unwrap();
        assert_eq!(e.window_from_ms, 9_000);
        assert_eq!(
            e.deliveries.iter().map(|d| d.state).collect::<Vec<_>>(),
            [DeliveryState::Delivered, DeliveryState::Pending]
        );
        assert_eq!(records.due_events(9_000, 10).await.unwrap().len(), 1);
        assert!(records.dead_letter(&files, "evt_1").await.unwrap().is_none());
        assert!(records.dead_letters(&files, None, 10).await.unwrap().0.is_empty());

        // Delivered everywhere: the event is gone.
        let due = records.due_events(9_000, 10).await.unwrap().remove(0);
        let (mut e, v) = records.outbox_event(&due.key).await.unwrap().unwrap();
        e.deliveries[1].state = DeliveryState::Delivered;
        assert!(records.settle_event(&due.key, &e, v, &due.member).await.unwrap());
        assert!(records.outbox_event(&due.key).await.unwrap().is_none());
        assert!(records.due_events(i64::MAX, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_due_entry_without_its_record_is_dropped_only_once_old() {
        let records = Records::new(Arc::new(MemoryStore::new()));
        let member = due_member(1_000, "outbox:{x}:evt_9");
        records.store.index_add(WEBHOOK_DUE_INDEX, &member).await.unwrap();
        let due = records.due_events(1_000, 10).await.unwrap().remove(0);
        records.drop_due(&due, 1_000 + ORPHAN_AFTER_MS, false).await.unwrap();
        assert_eq!(
            records.due_events(i64::MAX, 10).await.unwrap().len(),
            1,
            "its write may be under way"
        );
        records.drop_due(&due, 1_001 + ORPHAN_AFTER_MS, false).await.unwrap();
        assert!(records.due_events(i64::MAX, 10).await.unwrap().is_empty());
    }
}
