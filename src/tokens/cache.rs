//! The in-process token cache (`[store] token_cache_capacity`): access tokens this broker served,
//! kept decrypted in memory so that a warm token call never touches the store, and, while the
//! store is unreachable, the last token served per connection (the outage copy).
//!
//! Only access tokens are kept, never a refresh token: an entry holds what the API answers plus
//! the identity the token was issued for, so a hit passes the same identity check as the store
//! path. A hit must still satisfy the caller's `min_ttl`; a token that does not goes to the store,
//! which decides about refreshing exactly as it does without the cache.
//!
//! Invalidation: whatever deletes a connection, flips it to reauth_required, refreshes it or signs
//! its user in again calls [`TokenCache::invalidate`], which forgets the entry here and tells the
//! other brokers sharing the store through an [`InvalidationBus`] (Redis pub/sub, see
//! `invalidation.rs`; the memory and embedded stores are opened by one broker each, so
//! forgetting locally is all there is to do). While a broker may miss what others publish (not
//! yet subscribed, or the subscription lost) it serves no hits ([`TokenCache::pause`]), and when
//! it subscribes again nothing it kept from before is a hit ([`TokenCache::resume`]; kept only as
//! the outage copy). A load from the store
//! that started before an invalidation never puts its (possibly stale) token back: each shard
//! counts its invalidations, and [`TokenCache::remember`] inserts only when the count is the one
//! its [`Ticket`] saw before the load.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{AccessToken, Served};
use crate::ids::{ConnectionId, ConnectorId};
use crate::store::records::TokenIdentity;

/// Shards of the map: callers for different connections rarely share a lock.
const SHARDS: usize = 64;

/// How many connections keep an outage copy when the cache is off (capacity 0), as before the
/// cache existed.
pub(crate) const OUTAGE_ONLY_CAPACITY: usize = 10_000;

/// Tells the other brokers sharing the store that a connection's cached token must go.
pub trait InvalidationBus: Send + Sync {
    /// Announces that `connection_id`'s cached token is stale (deleted, flipped or refreshed).
    /// Best effort and non-blocking: a broker that misses it clears its whole cache when its
    /// subscription is lost, which is the only way to miss one.
    fn publish(&self, connection_id: &ConnectionId);
}

/// The bus of a store only one broker opens (memory, embedded): nobody else has a cache.
pub struct LocalOnly;

impl InvalidationBus for LocalOnly {
    fn publish(&self, _: &ConnectionId) {}
}

/// A cached token and what its hit is checked against; shared, so that a hit copies nothing
/// but reference counts.
struct Entry {
    connector: ConnectorId,
    issued_for: Arc<TokenIdentity>,
    token: AccessToken,
    /// The cache's epoch its load began in; only entries of the current epoch are hits.
    epoch: u64,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<ConnectionId, Arc<Entry>>,
    /// Invalidations in this shard so far (see [`Ticket`]).
    invalidations: u64,
}

/// Taken before a store load: the shard's invalidation count then, which the load's
/// [`TokenCache::remember`] must still find.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    shard: usize,
    invalidations: u64,
    epoch: u64,
}

/// Access tokens by connection, bounded, in shards (see the module documentation).
pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// False with capacity 0: entries are then only the outage copy, never a hit.
    serves_hits: bool,
    /// False while invalidations from other brokers may be missed (see [`TokenCache::pause`]).
    listening: AtomicBool,
    /// Bumped by [`TokenCache::resume`]: entries of an earlier epoch may have missed an
    /// invalidation, so they are no longer hits, but stay as the outage copy.
    epoch: AtomicU64,
    hasher: RandomState,
    bus: Arc<dyn InvalidationBus>,
}

impl TokenCache {
    /// A cache of at most about `capacity` tokens (rounded up to a multiple of the shard count);
    /// with 0, no hits, and an outage copy of [`OUTAGE_ONLY_CAPACITY`] tokens.
    pub fn new(capacity: usize, bus: Arc<dyn InvalidationBus>) -> Self {
        let (serves_hits, capacity) = match capacity {
            0 => (false, OUTAGE_ONLY_CAPACITY),
            n => (true, n),
        };
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            serves_hits,
            listening: AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            hasher: RandomState::new(),
            bus,
        }
    }

    fn shard_of(&self, id: &ConnectionId) -> usize {
        (self.hasher.hash_one(id.as_str()) as usize) % SHARDS
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        self.shards[shard].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached token of a connector's connection when it still lives `min_ttl` and
    /// `acceptable` accepts the identity it was issued for (the connector's current client id and
    /// scopes). Never with capacity 0, nor while paused.
    pub(crate) fn hit(
        &self,
        connector: &ConnectorId,
        connection_id: &ConnectionId,
        min_ttl: Duration,
        now: i64,
        acceptable: impl FnOnce(&TokenIdentity) -> bool,
    ) -> Option<AccessToken> {
        if !self.serves_hits || !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entry = {
            let shard = self.lock(self.shard_of(connection_id));
            let e = shard.entries.get(connection_id)?;
            if e.epoch != self.epoch.load(Ordering::Acquire) {
                return None;
            }
            let remaining = e.token.expires_at - now;
            // The store path's rule: never an expired token, and at least min_ttl.
            if e.connector != *connector || remaining <= 0 || remaining < min_ttl.as_secs() as i64 {
                return None;
            }
            e.clone()
        };
        acceptable(&entry.issued_for).then(|| AccessToken {
            served: Served::CacheHit,
            ..entry.token.clone()
        })
    }

    /// What a store load must hand to [`TokenCache::remember`].
    pub(crate) fn ticket(&self, connection_id: &ConnectionId) -> Ticket {
        let shard = self.shard_of(connection_id);
        // Read before the shard's count: a resume in between makes the entry an old epoch's
        // (never a hit), which is the safe side.
        let epoch = self.epoch.load(Ordering::Acquire);
        Ticket {
            shard,
            invalidations: self.lock(shard).invalidations,
            epoch,
        }
    }

    /// Keeps a token served for a connector's connection, unless the connection was invalidated
    /// since `ticket` was taken, or the token carries no identity (it could not pass a hit's
    /// check). Past capacity, expired entries go first, then the one that expires soonest.
    pub(crate) fn remember(
        &self,
        ticket: Ticket,
        connector: &ConnectorId,
        connection_id: &ConnectionId,
        token: &AccessToken,
        now: i64,
    ) {
        let Some(issued_for) = token.issued_for.clone() else {
            return;
        };
        let mut shard = self.lock(ticket.shard);
        if shard.invalidations != ticket.invalidations {
            return;
        }
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(connection_id) {
            shard.entries.retain(|_, e| e.token.expires_at > now);
            if shard.entries.len() >= self.per_shard
                && let Some(first) = shard
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.token.expires_at)
                    .map(|(k, _)| k.clone())
            {
                shard.entries.remove(&first);
            }
        }
        shard.entries.insert(
            connection_id.clone(),
            Arc::new(Entry {
                connector: connector.clone(),
                issued_for,
                token: token.clone(),
                epoch: ticket.epoch,
            }),
        );
    }

    /// The kept token of a connector's connection while it is still valid, whatever `min_ttl`
    /// the caller asked for: the answer while the store is unreachable.
    pub(crate) fn recall(
        &self,
        connector: &ConnectorId,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Option<AccessToken> {
        let shard = self.lock(self.shard_of(connection_id));
        match shard.entries.get(connection_id) {
            Some(e) if e.connector == *connector && e.token.expires_at > now => Some(AccessToken {
                served: Served::FromMemory,
                ..e.token.clone()
            }),
            _ => None,
        }
    }

    /// Forgets a connection here only (this broker saw it gone, or was told so).
    pub fn forget(&self, connection_id: &ConnectionId) {
        let mut shard = self.lock(self.shard_of(connection_id));
        shard.invalidations += 1;
        shard.entries.remove(connection_id);
    }

    /// Forgets a connection's token if `connector` owns it (DELETE, before the store is asked).
    pub fn forget_owned(&self, connector: &ConnectorId, connection_id: &ConnectionId) {
        let mut shard = self.lock(self.shard_of(connection_id));
        if shard
            .entries
            .get(connection_id)
            .is_some_and(|e| e.connector == *connector)
        {
            shard.invalidations += 1;
            shard.entries.remove(connection_id);
        }
    }

    /// Forgets a connection here and on every broker sharing the store (deleted, flipped to
    /// reauth_required, or refreshed).
    pub fn invalidate(&self, connection_id: &ConnectionId) {
        self.forget(connection_id);
        self.bus.publish(connection_id);
    }

    /// Stops serving hits (entries stay, as the outage copy) while another broker's invalidations
    /// could be missed: before the first subscription and whenever it is lost.
    pub fn pause(&self) {
        self.listening.store(false, Ordering::Release);
    }

    /// Serves hits again, but none of what was kept before (subscribed anew: whatever was
    /// published while not subscribed is unknown). Those entries stay as the outage copy: a Redis
    /// that is back for subscriptions may not yet answer commands (loading its data, the store's
    /// connection still reconnecting), and the broker goes on answering from them meanwhile.
    pub fn resume(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.listening.store(true, Ordering::Release);
    }

    /// True when the cache answers token requests (capacity above 0).
    pub fn serves_hits(&self) -> bool {
        self.serves_hits
    }

    /// True while hits are served (not paused).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Forgets everything (an invalidation may have been missed).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.invalidations += 1;
            shard.entries.clear();
        }
    }

    /// How many tokens are kept.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).entries.len())
            .sum()
    }

    /// True when no token is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every secret the cache holds, exposed (tests check no refresh token is among them).
    #[cfg(test)]
    pub(crate) fn kept_secrets(&self) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|s| {
                let shard = s.lock().unwrap_or_else(|p| p.into_inner());
                shard
                    .entries
                    .values()
                    .map(|e| e.token.access_token.expose().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}
