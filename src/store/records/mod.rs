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
#[cfg(any(test, feature = "test-support"))]
pub mod compat;
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

/// The record format this broker writes and the newest it reads.
///
/// Format 1 is the JSON every release so far has written, with no tag. A later format is
/// written as [`FORMAT_TAG`], the format number (one byte), then the record's body, so that this
/// broker (and every earlier one, which reads the tag as bad JSON) refuses it rather than
/// misreading it. A record without the tag is format 1, so stores written before formats were
/// numbered need no migration. See the README's "Upgrades" section for the rolling-upgrade rule.
pub const FORMAT: u8 = 1;

/// The oldest record format this broker still reads (and rewrites as [`FORMAT`] on its next write).
pub const OLDEST_READABLE_FORMAT: u8 = 1;

/// First byte of a tagged record: no JSON text starts with a NUL byte, so an untagged record
/// (format 1) can never be taken for a tagged one.
pub const FORMAT_TAG: u8 = 0;

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Format 1 is written untagged: it is what every earlier release reads. Serialising these
    // plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// A record's format and its body: untagged bytes are format 1.
fn split_format<'a>(key: &str, bytes: &'a [u8]) -> Result<(u8, &'a [u8]), StoreError> {
    match bytes {
        [FORMAT_TAG, format, body @ ..] => Ok((*format, body)),
        [FORMAT_TAG] => Err(StoreError::Corrupt {
            key: key.to_string(),
            message: "a format tag without a format number".to_string(),
        }),
        _ => Ok((1, bytes)),
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let (format, body) = split_format(key, bytes)?;
    if format > FORMAT {
        return Err(StoreError::NewerFormat {
            key: key.to_string(),
            format,
        });
    }
    if format < OLDEST_READABLE_FORMAT {
        return Err(StoreError::Corrupt {
            key: key.to_string(),
            message: format!("record format {format} is not one this broker reads"),
        });
    }
    // Every readable format so far (only 1) has the same body; a format 2 would convert here.
    serde_json::from_slice(body).map_err(|e| StoreError::Corrupt {
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

    /// Takes a single-use record, but only one this broker can read: a record it cannot read
    /// (a newer broker's during a rolling upgrade, or a damaged one) is reported and left in
    /// the store, never consumed and lost. Single-use records are written once and never
    /// rewritten, so the record read first is the one taken.
    async fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let Some(peeked) = self.store.get(key).await? else {
            return Ok(None);
        };
        decode::<T>(key, &peeked.value)?;
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

    // Untagged bytes are format 1 (every store written before formats were numbered); a tagged
    // format 1 reads the same; a newer format is refused naming it; malformed tags are corrupt.
    #[test]
    fn record_formats_are_read_by_their_tag() {
        let body = br#"{"tenant_id":"t","scopes":[],"approved_at_ms":1}"#;
        let untagged: TenantApproval = decode("k", body).expect("format 1, untagged");
        let mut tagged = vec![FORMAT_TAG, 1];
        tagged.extend_from_slice(body);
        let tagged: TenantApproval = decode("k", &tagged).expect("format 1, tagged");
        assert_eq!(untagged.approved_at_ms, tagged.approved_at_ms);
        assert_eq!(encode(&untagged), body.to_vec(), "format 1 is written untagged");

        let mut newer = vec![FORMAT_TAG, FORMAT + 1];
        newer.extend_from_slice(body);
        let e = decode::<TenantApproval>("rec", &newer).unwrap_err();
        assert!(matches!(e, StoreError::NewerFormat { ref key, format } if key == "rec" && format == FORMAT + 1));
        assert!(
            e.to_string()
                .contains("written by a newer consent-broker; upgrade this broker"),
            "{e}"
        );

        for bad in [&[FORMAT_TAG][..], &[FORMAT_TAG, 0, b'{', b'}'][..], &[][..]] {
            assert!(
                matches!(decode::<TenantApproval>("k", bad), Err(StoreError::Corrupt { .. })),
                "{bad:?}"
            );
        }
    }

    // A single-use record this broker cannot read stays in the store for the broker that can.
    #[tokio::test]
    async fn an_unreadable_single_use_record_is_not_taken() {
        let records = Records::new(Arc::new(crate::store::MemoryStore::new()));
        let key = keys::handoff_key("files", "code");
        let newer = vec![FORMAT_TAG, FORMAT + 1, b'{', b'}'];
        records.store.put(&key, newer.clone(), None).await.unwrap();
        let e = records.take_handoff(&"files".into(), "code").await.unwrap_err();
        assert!(matches!(e, StoreError::NewerFormat { .. }), "{e}");
        assert_eq!(records.store.get(&key).await.unwrap().expect("left").value, newer);
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
