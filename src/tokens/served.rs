//! The last access token served per connection, for answering while the store is unreachable.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{AccessToken, Served};
use crate::ids::{ConnectionId, ConnectorId};

/// Most connections whose last served token [`ServedTokens`] keeps; past it, the entry that
/// expires first makes room.
const SERVED_TOKENS_CAPACITY: usize = 10_000;

/// The last access token this broker served per connection (never a refresh token), kept in
/// memory only to keep answering while the store is unreachable; an entry is useless once its
/// token expires.
#[derive(Default)]
pub struct ServedTokens {
    entries: Mutex<HashMap<ConnectionId, (ConnectorId, AccessToken)>>,
}

impl ServedTokens {
    /// Remembers a token served for a connector's connection.
    pub(super) fn remember(
        &self,
        connector: &ConnectorId,
        connection_id: &ConnectionId,
        token: &AccessToken,
        now: i64,
    ) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SERVED_TOKENS_CAPACITY && !map.contains_key(connection_id) {
            map.retain(|_, (_, t)| t.expires_at > now);
            if map.len() >= SERVED_TOKENS_CAPACITY
                && let Some(first) = map
                    .iter()
                    .min_by_key(|(_, (_, t))| t.expires_at)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&first);
            }
        }
        map.insert(connection_id.clone(), (connector.clone(), token.clone()));
    }

    /// The remembered token of a connector's connection, while it is still valid.
    pub(super) fn recall(
        &self,
        connector: &ConnectorId,
        connection_id: &ConnectionId,
        now: i64,
    ) -> Option<AccessToken> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(connection_id) {
            Some((owner, t)) if owner == connector && t.expires_at > now => Some(AccessToken {
                served: Served::FromMemory,
                ..t.clone()
            }),
            _ => None,
        }
    }

    /// Forgets a connection (it needs a new sign-in, or is gone).
    pub(super) fn forget(&self, connection_id: &ConnectionId) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(connection_id);
    }

    /// Forgets a connection's token if `connector` owns it (DELETE).
    pub fn forget_owned(&self, connector: &ConnectorId, connection_id: &ConnectionId) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(connection_id).is_some_and(|(owner, _)| owner == connector) {
            map.remove(connection_id);
        }
    }

    /// How many connections have a remembered token (for tests).
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Sensitive;

    #[test]
    fn served_tokens_are_bounded_valid_and_per_connector() {
        let cache = ServedTokens::default();
        let token = |expires_at: i64| AccessToken {
            access_token: Sensitive::new("at"),
            expires_at,
            scope: String::new(),
            served: Served::CacheHit,
            min_ttl_unmet: false,
        };
        let now = 1_700_000_000;
        cache.remember(
            &ConnectorId::new("files"),
            &ConnectionId::new("c1"),
            &token(now + 60),
            now,
        );
        assert_eq!(
            cache
                .recall(&ConnectorId::new("files"), &ConnectionId::new("c1"), now)
                .map(|t| t.served),
            Some(Served::FromMemory)
        );
        assert!(
            cache
                .recall(&ConnectorId::new("crm"), &ConnectionId::new("c1"), now)
                .is_none(),
            "only for its connector"
        );
        cache.remember(
            &ConnectorId::new("files"),
            &ConnectionId::new("c2"),
            &token(now - 1),
            now,
        );
        assert!(
            cache
                .recall(&ConnectorId::new("files"), &ConnectionId::new("c2"), now)
                .is_none(),
            "never an expired token"
        );
        cache.forget(&ConnectionId::new("c1"));
        assert!(
            cache
                .recall(&ConnectorId::new("files"), &ConnectionId::new("c1"), now)
                .is_none()
        );

        for i in 0..SERVED_TOKENS_CAPACITY + 10 {
            cache.remember(
                &ConnectorId::new("files"),
                &ConnectionId::new(format!("n{i}")),
                &token(now + 60 + i as i64),
                now,
            );
        }
        assert_eq!(cache.len(), SERVED_TOKENS_CAPACITY, "bounded");
        assert!(
            cache
                .recall(&ConnectorId::new("files"), &ConnectionId::new("n0"), now)
                .is_none(),
            "the soonest to expire made room"
        );
        assert!(
            cache
                .recall(
                    &ConnectorId::new("files"),
                    &ConnectionId::new(format!("n{}", SERVED_TOKENS_CAPACITY + 9)),
                    now
                )
                .is_some()
        );
    }
}
