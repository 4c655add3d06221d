//! Frozen-format checks for the compatibility tests (`tests/integration/record_formats.rs`):
//! decode a stored record of a named kind with this build's types and encode it again.

use super::{decode, encode};
use crate::ids::{ConnectionId, TenantId};
use crate::store::StoreError;

/// Every kind of stored value, by the name the frozen fixtures use.
pub const KINDS: &[&str] = &[
    "connect_session",
    "connect_token_target",
    "flow",
    "reconnect_link",
    "handoff",
    "connection",
    "approval",
    "tenant_approval",
    "admin_consent_state",
    "outbox_event",
    "connection_index",
    "tenant_approvals_index",
    "pending_approval",
    "dead_letter_pointer",
    "lease_owner",
    "list_backfilled_marker",
];

fn again<T: serde::Serialize + serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    decode::<T>(key, bytes).map(|value| encode(&value))
}

/// Decodes `bytes` (stored under `key`) as a record of `kind` and returns what this build
/// writes for it; an unknown kind is an error, not a pass.
pub fn reencode(kind: &str, key: &str, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    match kind {
        "connect_session" => again::<super::ConnectSession>(key, bytes),
        "connect_token_target" => again::<super::ConnectTokenTarget>(key, bytes),
        "flow" => again::<super::Flow>(key, bytes),
        "reconnect_link" => again::<super::ReconnectLink>(key, bytes),
        "handoff" => again::<super::Handoff>(key, bytes),
        "connection" => again::<super::Connection>(key, bytes),
        "approval" => again::<super::Approval>(key, bytes),
        "tenant_approval" => again::<super::TenantApproval>(key, bytes),
        "admin_consent_state" => again::<super::AdminConsentState>(key, bytes),
        "outbox_event" => again::<super::OutboxEvent>(key, bytes),
        "connection_index" => again::<ConnectionId>(key, bytes),
        "tenant_approvals_index" => again::<Vec<TenantId>>(key, bytes),
        "pending_approval" => again::<i64>(key, bytes),
        "dead_letter_pointer" | "lease_owner" => again::<String>(key, bytes),
        "list_backfilled_marker" => again::<bool>(key, bytes),
        other => Err(StoreError::backend(format!("no record kind {other:?}"))),
    }
}
