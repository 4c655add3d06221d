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
mod outbox;
mod sessions;

use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};

use super::{Store, StoreError};

pub use approvals::*;
pub use connections::*;
pub use keys::{connection_list_member, keepalive_member};
pub use outbox::*;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entra::Category;

    /// Decodes `json` as a record of type `T` and checks that writing it back gives the same bytes.
    fn round_trip<T: Serialize + DeserializeOwned>(json: &str) -> T {
        let record: T = decode("k", json.as_bytes()).expect("an older broker's record decodes");
        assert_eq!(
            String::from_utf8(encode(&record)).unwrap(),
            json,
            "re-encoded unchanged"
        );
        record
    }

    // Written as the broker wrote them while categories were plain strings: the enum must read
    // them and write them back byte for byte.
    #[test]
    fn records_with_string_categories_decode_and_encode_unchanged() {
        let connection: Connection = round_trip(concat!(
            r#"{"id":"conn_1","connector":"files","end_user":null,"tenant_id":"t1","#,
            r#""user":{"oid":"o1","name":null,"preferred_username":"a@contoso.com"},"scopes":["Files.Read"],"#,
            r#""access_token":"at","access_expires_at":10,"refresh_token":"rt","created_at":1,"refreshed_at":2,"#,
            r#""status":"reauth_required","reauth":{"category":"interaction_required","aadsts":50076},"#,
            r#""return_url":null,"token_identity":null}"#
        ));
        let reauth = connection.reauth.expect("reauth reason");
        assert_eq!(
            (reauth.category, reauth.aadsts),
            (Category::InteractionRequired, Some(50076))
        );

        let session: ConnectSession = round_trip(concat!(
            r#"{"id":"cs_1","connector":"files","end_user":"u1","return_url":null,"state":null,"#,
            r#""tenant":null,"login_hint":null,"created_at":1,"expires_at":2,"status":"approval_required","#,
            r#""category":"admin_approval_required","aadsts":90094,"connection_id":null,"approval_flow":"fl_1"}"#
        ));
        assert_eq!(session.category, Some(Category::AdminApprovalRequired));
        let pending: ConnectSession = round_trip(concat!(
            r#"{"id":"cs_2","connector":"files","end_user":"u1","return_url":null,"state":null,"#,
            r#""tenant":null,"login_hint":null,"created_at":1,"expires_at":2,"status":"pending","#,
            r#""category":null,"aadsts":null,"connection_id":null,"approval_flow":null}"#
        ));
        assert_eq!(pending.category, None);

        let approval: Approval = round_trip(concat!(
            r#"{"flow_id":"fl_1","connector":"files","session_id":null,"return_url":null,"#,
            r#""connector_state":null,"login_hint":null,"tenant":"organizations","tenant_id":null,"#,
            r#""tenant_label":null,"category":"consent_required","aadsts":65001,"created_at_ms":1,"#,
            r#""expires_at":2,"browser":"b"}"#
        ));
        assert_eq!(approval.category, Category::ConsentRequired);
    }

    // A category this build does not know (a newer broker's, or a renamed one) must not make the
    // record unreadable: the connection would be lost to every token call. It reads as `unknown`.
    #[test]
    fn an_unknown_category_reads_as_unknown() {
        let json = concat!(
            r#"{"flow_id":"fl_1","connector":"files","session_id":null,"return_url":null,"#,
            r#""connector_state":null,"login_hint":null,"tenant":"organizations","tenant_id":null,"#,
            r#""tenant_label":null,"category":"category_from_the_future","aadsts":null,"created_at_ms":1,"#,
            r#""expires_at":2}"#
        );
        let approval: Approval = decode("k", json.as_bytes()).expect("still readable");
        assert_eq!(approval.category, Category::Unknown);
        let reason: ReauthReason = decode("k", br#"{"category":"","aadsts":null}"#).expect("still readable");
        assert_eq!(reason.category, Category::Unknown);
        // Only strings are categories: a record of another shape stays corrupt, not `unknown`.
        assert!(matches!(
            decode::<ReauthReason>("k", br#"{"category":7,"aadsts":null}"#),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
