//! Keep-alive: Entra drops a refresh token nobody used for 90 days (AADSTS700082), so the
//! broker refreshes every connection that nobody refreshed for `[keepalive] idle_after_secs`.
//!
//! Finding them does not scan the records: the store keeps a `keepalive` index of every
//! connection under the time it is next due. A sign-in files its connection as due at once; the
//! first look then files it under its real time, `refreshed_at + idle_after + jitter`, where the
//! jitter (up to a tenth of `idle_after`, fixed per connection) keeps connections made together
//! from coming due together. A caller's refresh does not touch the index: when such a
//! connection's entry comes due, the look finds it refreshed since and files it later. So an
//! entry is never later than its connection's real due time, and each connection has one.
//!
//! Due connections are refreshed through [`TokenService::keep_alive`]: the same lease and
//! fencing as a caller's refresh, so with several brokers each connection is refreshed once. A
//! transient failure (Entra down, throttled, the circuit open) changes nothing but the entry's
//! time and ends the round, honouring `Retry-After`; a dead grant flips the connection to
//! `reauth_required` as any refresh does, and it leaves the index until a new sign-in files it.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::KeepaliveConfig;
use crate::ids::ConnectionId;
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::records::{Connection, ConnectionStatus, Records};
use crate::tokens::{Served, TokenService, TokenServiceError};

/// Entries looked at per batch; a round goes on batch after batch until nothing is due.
const BATCH: usize = 200;

/// Refreshes idle connections on an interval.
pub struct KeepAlive {
    records: Records,
    tokens: Arc<TokenService>,
    settings: KeepaliveConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Connections found idle and due.
    pub due: usize,
    /// Of those, refreshed (here, or meanwhile by another broker).
    pub refreshed: usize,
    /// Of those, failed (transient ones are tried again later).
    pub failed: usize,
}

impl KeepAlive {
    /// Keep-alive over `records`, refreshing through `tokens`.
    pub fn new(
        records: Records,
        tokens: Arc<TokenService>,
        settings: KeepaliveConfig,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            records,
            tokens,
            settings,
            clock,
            metrics,
        }
    }

    /// When `conn` is next due: its last refresh, plus the idle time, plus its own jitter.
    pub fn next_due(&self, conn: &Connection) -> i64 {
        let idle = self.settings.idle_after.as_secs();
        let spread = (idle / 10).max(1);
        let digest = Sha256::digest(conn.id.as_str().as_bytes());
        let jitter = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default()) % spread;
        conn.refreshed_at.saturating_add((idle + jitter) as i64)
    }

    /// Runs rounds every `check_interval` until the task is dropped.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(self.settings.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.round().await {
                Ok(r) if r.due > 0 => {
                    tracing::info!(
                        due = r.due,
                        refreshed = r.refreshed,
                        failed = r.failed,
                        "keep-alive round"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "keep-alive could not read the store; trying next round"),
            }
        }
    }

    /// One round: every entry due now, batch after batch, until none is left or Entra asks to
    /// wait.
    pub async fn round(&self) -> Result<Round, StoreError> {
        let mut round = Round::default();
        loop {
            let now = self.clock.now_unix();
            let due = self.records.keepalive_due(now, BATCH).await?;
            let full = due.len() == BATCH;
            for (member, id) in due {
                match self.visit(&member, &id, now, &mut round).await? {
                    Next::Go => {}
                    Next::Wait => return Ok(round),
                }
            }
            if !full {
                return Ok(round);
            }
        }
    }

    async fn visit(&self, member: &str, id: &ConnectionId, now: i64, round: &mut Round) -> Result<Next, StoreError> {
        let found = match self.records.connection(id).await {
            Ok(found) => found,
            // A connection this broker cannot read (a newer broker's during a rolling upgrade,
            // or a damaged record) is left as it is and looked at again later. Skipping it
            // without rescheduling would leave it the earliest entry due, read again and again.
            Err(e @ (StoreError::Corrupt { .. } | StoreError::NewerFormat { .. })) => {
                tracing::warn!(connection = %id, error = %e, "keep-alive cannot read a connection; left as it is");
                let later = now + self.later().as_secs().max(1) as i64;
                self.records.reschedule_keepalive(member, id, later).await?;
                return Ok(Next::Go);
            }
            Err(e) => return Err(e),
        };
        let Some((conn, version)) = found else {
            self.records.unschedule_keepalive(member).await?;
            return Ok(Next::Go);
        };
        if conn.status == ConnectionStatus::ReauthRequired {
            self.records.unschedule_keepalive(member).await?;
            return Ok(Next::Go);
        }
        let due = self.next_due(&conn);
        if due > now {
            self.records.reschedule_keepalive(member, id, due).await?;
            return Ok(Next::Go);
        }
        round.due += 1;
        self.metrics.keepalive_due(conn.connector.as_str());
        let failure = match self.tokens.keep_alive(&conn.connector, id, version).await {
            Ok(t) if t.served == Served::Refreshed => {
                round.refreshed += 1;
                self.metrics.keepalive_refreshed(conn.connector.as_str());
                let refreshed = match self.records.connection(id).await? {
                    Some((c, _)) => self.next_due(&c),
                    None => now + self.settings.idle_after.as_secs() as i64,
                };
                self.records.reschedule_keepalive(member, id, refreshed).await?;
                return Ok(Next::Go);
            }
            // Entra unavailable or the refresh budget used up, with the stored token still
            // valid: nothing was refreshed.
            Ok(_) => {
                tracing::warn!(connection = %id, connector = %conn.connector, "keep-alive refresh postponed: Entra unavailable or the refresh budget used up");
                Failure {
                    category: "transient",
                    after: After::In(self.later()),
                    next: Next::Wait,
                }
            }
            Err(e) => {
                tracing::warn!(connection = %id, connector = %conn.connector, error = %e, "keep-alive refresh failed");
                self.failed(&e)
            }
        };
        round.failed += 1;
        self.metrics.keepalive_failed(conn.connector.as_str(), failure.category);
        match failure.after {
            After::Never => self.records.unschedule_keepalive(member).await?,
            After::In(wait) => {
                self.records
                    .reschedule_keepalive(member, id, now + wait.as_secs().max(1) as i64)
                    .await?
            }
        }
        Ok(failure.next)
    }

    fn later(&self) -> Duration {
        self.settings.check_interval.max(Duration::from_secs(1))
    }

    /// What a failure counts as, when to look at the connection again, and whether the rest of
    /// the round goes on: when Entra (or this broker's budget) asks to wait, the rest waits too.
    fn failed(&self, e: &TokenServiceError) -> Failure {
        let (category, after, next) = match e {
            TokenServiceError::NotFound => ("not_found", After::Never, Next::Go),
            TokenServiceError::ReauthRequired(_) => ("reauth_required", After::Never, Next::Go),
            TokenServiceError::Unavailable { retry_after } => {
                ("transient", After::In((*retry_after).max(self.later())), Next::Wait)
            }
            TokenServiceError::RefreshInProgress { .. } => ("transient", After::In(self.later()), Next::Go),
            TokenServiceError::Store(_) => ("transient", After::In(self.later()), Next::Wait),
            // The broker's own credential or registration: an operator must act; look again
            // after a tenth of the idle time rather than every round.
            TokenServiceError::Upstream(c) => (
                c.category.as_str(),
                After::In((self.settings.idle_after / 10).max(self.later())),
                Next::Go,
            ),
        };
        Failure { category, after, next }
    }
}

/// A keep-alive refresh that did not happen: its metric category, when to look again, and
/// whether the round goes on.
struct Failure {
    category: &'static str,
    after: After,
    next: Next,
}

enum Next {
    Go,
    Wait,
}

enum After {
    Never,
    In(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::tests::{NOW, Rig, Scripted, issued, rejected, rig};

    const IDLE: u64 = 1_800;

    fn keepalive(r: &Rig) -> KeepAlive {
        KeepAlive::new(
            r.records.clone(),
            r.service.clone(),
            KeepaliveConfig {
                idle_after: Duration::from_secs(IDLE),
                check_interval: Duration::from_secs(60),
            },
            r.clock.clone(),
            r.metrics.clone(),
        )
    }

    #[tokio::test]
    async fn an_idle_connection_is_refreshed_once_and_filed_under_its_next_due_time() {
        // Signed in (last refreshed) an hour ago, idle after half an hour.
        let r = rig(Scripted::new(vec![issued("at-1", Some("rt-1"), 3600)]));
        r.connection("c1", 3600).await;
        let ka = keepalive(&r);
        let round = ka.round().await.unwrap();
        assert_eq!(
            round,
            Round {
                due: 1,
                refreshed: 1,
                failed: 0
            }
        );
        assert_eq!(r.endpoint.calls(), 1);
        let stored = r.stored("c1").await;
        assert_eq!(stored.refreshed_at, NOW);
        let due = ka.next_due(&stored);
        assert!((NOW + IDLE as i64..NOW + IDLE as i64 + IDLE as i64 / 10).contains(&due));
        assert_eq!(
            r.records.keepalive_due(i64::MAX, 10).await.unwrap(),
            [(crate::store::records::keepalive_member(due, "c1"), "c1".into())],
            "filed once, under its next due time"
        );
        assert_eq!(ka.round().await.unwrap(), Round::default(), "nothing due until then");
        assert_eq!(r.endpoint.calls(), 1);
    }

    #[tokio::test]
    async fn a_connection_refreshed_since_is_filed_later_without_calling_entra() {
        let r = rig(Scripted::new(vec![]));
        let mut conn = r.connection("c1", 3600).await;
        // A caller refreshed it a minute ago; its entry (from the sign-in) comes due anyway.
        let (_, version) = r.records.connection(&"c1".into()).await.unwrap().unwrap();
        conn.refreshed_at = NOW - 60;
        r.records.update_connection(&conn, version).await.unwrap();
        let ka = keepalive(&r);
        assert_eq!(ka.round().await.unwrap(), Round::default());
        assert_eq!(r.endpoint.calls(), 0);
        let due = r.records.keepalive_due(i64::MAX, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            due[0].0,
            crate::store::records::keepalive_member(ka.next_due(&conn), "c1")
        );
    }

    #[tokio::test]
    async fn a_dead_grant_is_flipped_once_and_leaves_the_index() {
        let r = rig(Scripted::new(vec![rejected("invalid_grant", 50173)]));
        r.connection("c1", 3600).await;
        let ka = keepalive(&r);
        let round = ka.round().await.unwrap();
        assert_eq!((round.due, round.failed), (1, 1));
        assert_eq!(r.stored("c1").await.status, ConnectionStatus::ReauthRequired);
        assert!(r.records.keepalive_due(i64::MAX, 10).await.unwrap().is_empty());
        r.clock.advance(Duration::from_secs(10 * IDLE));
        assert_eq!(ka.round().await.unwrap(), Round::default());
        assert_eq!(r.endpoint.calls(), 1, "a dead connection is not tried again");
    }

    #[tokio::test]
    async fn entra_unavailable_postpones_without_flipping() {
        // No scripted answer left: the endpoint fails as a protocol error (Entra unavailable).
        let r = rig(Scripted::new(vec![]));
        r.connection("c1", 3600).await;
        r.connection("c2", 3600).await;
        let ka = keepalive(&r);
        let round = ka.round().await.unwrap();
        assert_eq!(
            (round.due, round.refreshed, round.failed),
            (1, 0, 1),
            "the round stops at the first"
        );
        for id in ["c1", "c2"] {
            assert_eq!(r.stored(id).await.status, ConnectionStatus::Active);
        }
        assert!(
            r.metrics
                .render()
                .contains("keepalive_failed_total{connector=\"files\",category=\"transient\"} 1")
        );
    }

    // During a rolling upgrade a newer broker may rewrite a connection in a format this one does
    // not read: keep-alive skips it, leaves the record as it is, and looks again a round later.
    #[tokio::test]
    async fn a_connection_it_cannot_read_is_skipped_left_untouched_and_looked_at_later() {
        use crate::store::Store;
        let r = rig(Scripted::new(vec![]));
        r.connection("c1", 3600).await;
        let key = "conn:{c1}";
        let body = r.store.get(key).await.unwrap().expect("stored").value;
        let mut newer = vec![crate::store::records::FORMAT_TAG, crate::store::records::FORMAT + 1];
        newer.extend_from_slice(&body);
        r.store.put(key, newer.clone(), None).await.unwrap();
        let before = r.store.get(key).await.unwrap().unwrap();

        let ka = keepalive(&r);
        assert_eq!(ka.round().await.unwrap(), Round::default(), "not counted as due");
        assert_eq!(r.endpoint.calls(), 0, "no refresh of a record it cannot read");
        assert_eq!(
            r.store.get(key).await.unwrap(),
            Some(before),
            "bytes and version unchanged"
        );
        assert_eq!(
            r.records.keepalive_due(i64::MAX, 10).await.unwrap(),
            [(crate::store::records::keepalive_member(NOW + 60, "c1"), "c1".into())],
            "filed again one check interval later, once"
        );
        assert!(
            r.records.keepalive_due(NOW, 10).await.unwrap().is_empty(),
            "not read again in the same round"
        );
    }

    #[tokio::test]
    async fn jitter_is_fixed_per_connection_and_under_a_tenth_of_the_idle_time() {
        let r = rig(Scripted::new(vec![]));
        let ka = keepalive(&r);
        let conn = r.connection("c0", 0).await;
        let mut dues = std::collections::HashSet::new();
        for i in 0..200 {
            let mut c = conn.clone();
            c.id = format!("conn_{i}").into();
            let due = ka.next_due(&c);
            assert_eq!(due, ka.next_due(&c), "fixed per connection");
            assert!((0..IDLE as i64 / 10).contains(&(due - c.refreshed_at - IDLE as i64)));
            dues.insert(due);
        }
        assert!(dues.len() > 100, "spread: {} distinct times", dues.len());
    }
}
