//! The key of every record. Bearer values appear only as SHA-256 digests; connector-scoped
//! records carry the connector id; a connection's keys share a Redis Cluster hash tag.

use crate::crypto::sha256_hex;

pub(super) fn session_key(connector: &str, id: &str) -> String {
    format!("session:{connector}:{id}")
}
pub(super) fn connect_token_key(token: &str) -> String {
    format!("connect:{}", sha256_hex(token))
}
pub(super) fn flow_key(state: &str) -> String {
    format!("flow:{}", sha256_hex(state))
}
pub(super) fn handoff_key(connector: &str, code: &str) -> String {
    format!("handoff:{connector}:{}", sha256_hex(code))
}
/// `conn:{<id>}`: the braces are a Redis Cluster hash tag, so every key built around one
/// connection id (this record and its refresh lease, `lease:{<id>}`) lands in one slot and can be
/// used together by one Lua script. Other backends treat the braces as plain characters.
pub(super) fn connection_key(id: &str) -> String {
    format!("conn:{{{id}}}")
}
/// Whether a record key is a connection's (what [`connection_key`] builds).
pub(super) fn is_connection_key(key: &str) -> bool {
    key.starts_with("conn:{")
}

/// `reconnect:{<id>}`: a connection's current reconnect link, in the connection's hash slot.
pub(super) fn reconnect_key(connection_id: &str) -> String {
    format!("reconnect:{{{connection_id}}}")
}
/// `lease:{<id>}`: the refresh lease of a connection, in the connection's hash slot.
pub(super) fn lease_key(connection_id: &str) -> String {
    format!("lease:{{{connection_id}}}")
}
pub(super) fn connection_index_key(connector: &str, tenant_id: &str, oid: &str) -> String {
    format!("connidx:{connector}:{tenant_id}:{oid}")
}

pub(super) fn approval_key(flow_id: &str) -> String {
    format!("approval:{flow_id}")
}
pub(super) fn tenant_approval_key(connector: &str, tenant_id: &str) -> String {
    format!("tenantapproval:{connector}:{tenant_id}")
}
pub(super) fn tenant_approvals_index_key(connector: &str) -> String {
    format!("tenantapprovals:{connector}")
}
/// `approvalpending:<connector>:<tenant>`: users of the tenant wait for its approval (announced).
pub(super) fn pending_approval_key(connector: &str, tenant: &str) -> String {
    format!("approvalpending:{connector}:{tenant}")
}
pub(super) fn admin_consent_key(state: &str) -> String {
    format!("adminconsent:{}", sha256_hex(state))
}

/// `connlist:<connector>`: the ordered index of a connector's connections, newest first.
pub(super) fn connection_list_index(connector: &str) -> String {
    format!("connlist:{connector}")
}

/// A connection's member in its connector's list: the creation time counted down from
/// `i64::MAX` (so that byte order is newest first), then the id, which breaks ties.
pub fn connection_list_member(created_at: i64, id: &str) -> String {
    format!("{:019}:{id}", i64::MAX - created_at.max(0))
}

/// `keepalive`: every connection under the time (Unix seconds) of its next keep-alive check.
pub(super) const KEEPALIVE_INDEX: &str = "keepalive";

/// A connection's member in the keep-alive index: its due time, zero-padded so that byte order
/// is time order, then the id.
pub fn keepalive_member(due: i64, id: &str) -> String {
    format!("{:019}:{id}", due.max(0))
}

/// `outbox:{<tag>}:<event id>`: an event, under the hash tag of the record it is written with
/// (a connection's id), so that both land in one Redis Cluster slot and one script writes them.
pub(super) fn outbox_key(tag: &str, event_id: &str) -> String {
    format!("outbox:{{{tag}}}:{event_id}")
}

/// `webhooks-due`: every outbox event under the time (Unix ms) its next delivery is due.
pub(super) const WEBHOOK_DUE_INDEX: &str = "webhooks-due";

/// An event's member in the due index: the due time zero-padded, then its record key.
pub(super) fn due_member(due_ms: i64, key: &str) -> String {
    format!("{:019}:{key}", due_ms.max(0))
}

/// `deadletter:<connector>:<event id>`: where a connector's dead letter is (its record key).
pub(super) fn dead_letter_key(connector: &str, event_id: &str) -> String {
    format!("deadletter:{connector}:{event_id}")
}

/// `webhooks-dead:<connector>`: a connector's dead letters, newest first.
pub(super) fn dead_letter_index(connector: &str) -> String {
    format!("webhooks-dead:{connector}")
}

/// A dead letter's member: its creation time counted down (newest first), then its id.
pub(super) fn dead_letter_member(created_at_ms: i64, event_id: &str) -> String {
    format!("{:019}:{event_id}", i64::MAX - created_at_ms.max(0))
}

/// `whlease:<event key>`: the lease of the broker attempting an event's deliveries.
pub(super) fn delivery_lease_key(event_key: &str) -> String {
    format!("whlease:{event_key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connections_key_is_hash_tagged_on_its_id() {
        assert_eq!(connection_key("conn_abc"), "conn:{conn_abc}");
        assert!(is_connection_key(&connection_key("conn_abc")) && !is_connection_key(&lease_key("conn_abc")));
        assert_eq!(lease_key("conn_abc"), "lease:{conn_abc}");
        // Keys of other records carry no braces, so Redis Cluster hashes them whole.
        for key in [
            session_key("files", "cs_1"),
            connect_token_key("t"),
            flow_key("s"),
            handoff_key("files", "c"),
            connection_index_key("files", "tid", "oid"),
        ] {
            assert!(!key.contains('{') && !key.contains('}'), "{key}");
        }
    }
}
