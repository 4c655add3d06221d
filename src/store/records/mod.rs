//! The records the broker keeps, their keys and lifetimes, over any [`Store`].
//!
//! Keys are built only here. Bearer values (state, handoff codes, connect tokens) appear in keys
//! as SHA-256 digests, never in clear; connector-scoped records carry the connector id in the
//! key so that one connector's lookups cannot find another's records. A connection's key carries a
//! Redis Cluster hash tag on its id (see `connection_key`).

//!
//! One file per kind of record: `sessions` (connect sessions, flows, handoff codes, reconnect
//! links), `connections` (connections and their refresh leases), `approvals` (approval pages,
//! tenant approvals, admin-consent round trips); the key schema is in `keys`.

mod approvals;
mod connections;
mod keys;
mod sessions;

use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};

use super::{Store, StoreError};

pub use approvals::*;
pub use connections::*;
pub use keys::{connection_list_member, keepalive_member};
pub use sessions::*;

/// Typed access to the broker's records.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}

impl Records {
    /// Wraps a backend.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The backend (for health checks and the purge task).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, u64)>, StoreError> {
        match self.store.get(key).await? {
            Some(v) => Ok(Some((decode(key, &v.value)?, v.version))),
            None => Ok(None),
        }
    }

    async fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.store.take(key).await? {
            Some(bytes) => Ok(Some(decode(key, &bytes)?)),
            None => Ok(None),
        }
    }
}
