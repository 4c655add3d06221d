//! The records the broker keeps, their keys and lifetimes, over any [`Store`].
//!
//! Keys are built only here. Bearer values (state, handoff codes, connect tokens) appear in keys
//! as SHA-256 digests, never in clear; connector-scoped records carry the connector id in the
//! key so that one connector's lookups cannot find another's records. A connection's key carries a
//! Redis Cluster hash tag on its id (see `connection_key`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use super::{CasOutcome, Store, StoreError};
use crate::crypto::{Sensitive, sha256_hex};

/// Status of a connect session's latest flow (contract values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// No flow finished yet.
    Pending,
    /// A connection was made.
    Completed,
    /// The tenant must approve the connector first.
    ApprovalRequired,
    /// The latest flow failed.
    Failed,
}

/// A connect session created by a connector backend.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConnectSession {
    /// `cs_...`
    pub id: String,
    /// Owning connector.
    pub connector: String,
    /// The connector's opaque id for its user.
    pub end_user: String,
    /// Where the flow ends; `None` means out-of-band (copy-the-code page).
    pub return_url: Option<String>,
    /// The connector's state, echoed back.
    pub state: Option<String>,
    /// Tenant hint (GUID or domain).
    pub tenant: Option<String>,
    /// UPN hint.
    pub login_hint: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Outcome of the latest flow.
    pub status: SessionStatus,
    /// Error category of the latest failed flow.
    pub category: Option<String>,
    /// AADSTS code of the latest failed flow.
    pub aadsts: Option<u32>,
    /// Set once a flow completed.
    pub connection_id: Option<String>,
    /// The approval page of the latest flow, when it needs the tenant's approval.
    #[serde(default)]
    pub approval_flow: Option<String>,
}

/// Where a connect token points.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConnectTokenTarget {
    /// Owning connector.
    pub connector: String,
    /// The session.
    pub session_id: String,
}

/// One browser sign-in attempt, stored under its `state` until the callback takes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Flow {
    /// `fl_...`
    pub id: String,
    /// Connector running the flow.
    pub connector: String,
    /// The connect session it belongs to (none for `/v1/authorize` starts).
    pub session_id: Option<String>,
    /// Validated return URL, or `None` for out-of-band.
    pub return_url: Option<String>,
    /// The connector's state to echo.
    pub connector_state: Option<String>,
    /// Tenant path segment used at `/authorize`.
    pub tenant: String,
    /// UPN hint sent to Entra.
    pub login_hint: Option<String>,
    /// OIDC nonce expected in the id_token.
    pub nonce: Sensitive,
    /// PKCE verifier for the code exchange.
    pub pkce_verifier: Sensitive,
    /// Scopes requested (resource scopes plus OIDC ones).
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Digest of the starting browser's binding cookie (`flow::binding`); a flow stored without
    /// one completes in no browser.
    #[serde(default)]
    pub browser: String,
}

/// The reconnect link handed out for a connection that needs a new sign-in, kept so that a
/// backend polling the token endpoint gets the same link each time instead of a new session per
/// call. The link is a bearer: it lives only in the (encrypted) store, like the tokens.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReconnectLink {
    /// The connect session behind it.
    pub session_id: String,
    /// The connect URL.
    pub connect_url: Sensitive,
    /// Unix seconds: when the session's link stops working.
    pub expires_at: i64,
}

/// What a handoff code redeems to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Handoff {
    /// The connection made by the flow.
    pub connection_id: String,
    /// The connector's state, echoed on redeem.
    pub state: Option<String>,
}

/// Connection status (contract values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Tokens can be served or refreshed.
    Active,
    /// The grant is gone; the user must sign in again.
    ReauthRequired,
}

/// The signed-in user, from the validated id_token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnectionUser {
    /// Entra object id (stable per tenant).
    pub oid: String,
    /// Display name.
    pub name: Option<String>,
    /// UPN or email-like sign-in name (mutable; for display only).
    pub preferred_username: Option<String>,
}

/// Why a connection needs a new sign-in.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReauthReason {
    /// Error category.
    pub category: String,
    /// Entra's AADSTS code, if any.
    pub aadsts: Option<u32>,
}

/// One user's delegated tokens for one connector in one tenant.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    /// `conn_...`
    pub id: String,
    /// Owning connector.
    pub connector: String,
    /// The connector's user id from the session, when known.
    pub end_user: Option<String>,
    /// Tenant GUID (`tid`).
    pub tenant_id: String,
    /// The user.
    pub user: ConnectionUser,
    /// Granted scopes as Entra reported them.
    pub scopes: Vec<String>,
    /// Current access token.
    pub access_token: Sensitive,
    /// Unix seconds when the access token expires.
    pub access_expires_at: i64,
    /// Current refresh token.
    pub refresh_token: Option<Sensitive>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last successful refresh (or sign-in).
    pub refreshed_at: i64,
    /// Active or needs reauth.
    pub status: ConnectionStatus,
    /// Set when `status` is `reauth_required`.
    pub reauth: Option<ReauthReason>,
    /// Return URL of the flow that made it, reused for reconnects.
    pub return_url: Option<String>,
    /// What the stored tokens were issued for; `None` in records written before it existed
    /// (their access token is then not served until a refresh records it).
    #[serde(default)]
    pub token_identity: Option<TokenIdentity>,
}

/// The whole identity a connection's tokens were issued for: a token is served only for exactly
/// this tenant, client id and scope set, so that changing a connector's client id or scopes never
/// serves a token issued for the old ones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenIdentity {
    /// Tenant GUID.
    pub tenant_id: String,
    /// The connector's Entra application (client) id.
    pub client_id: String,
    /// The resource scopes requested, sorted and without duplicates (compared as sets).
    pub scopes: Vec<String>,
}

impl TokenIdentity {
    /// The identity for a tenant, client id and requested scopes (in any order, any case).
    pub fn new(tenant_id: &str, client_id: &str, scopes: &[String]) -> Self {
        let mut scopes: Vec<String> = scopes.iter().map(|s| s.to_ascii_lowercase()).collect();
        scopes.sort();
        scopes.dedup();
        Self {
            tenant_id: tenant_id.to_ascii_lowercase(),
            client_id: client_id.to_ascii_lowercase(),
            scopes,
        }
    }
}

/// A refresh lease this broker holds on one connection (see [`Records::try_lease`]).
#[derive(Debug)]
pub struct Lease {
    key: String,
    owner: String,
    version: u64,
}

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

fn session_key(connector: &str, id: &str) -> String {
    format!("session:{connector}:{id}")
}
fn connect_token_key(token: &str) -> String {
    format!("connect:{}", sha256_hex(token))
}
fn flow_key(state: &str) -> String {
    format!("flow:{}", sha256_hex(state))
}
fn handoff_key(connector: &str, code: &str) -> String {
    format!("handoff:{connector}:{}", sha256_hex(code))
}
/// `conn:{<id>}`: the braces are a Redis Cluster hash tag, so every key built around one
/// connection id (this record and its refresh lease, `lease:{<id>}`) lands in one slot and can be
/// used together by one Lua script. Other backends treat the braces as plain characters.
fn connection_key(id: &str) -> String {
    format!("conn:{{{id}}}")
}
/// `reconnect:{<id>}`: a connection's current reconnect link, in the connection's hash slot.
fn reconnect_key(connection_id: &str) -> String {
    format!("reconnect:{{{connection_id}}}")
}
/// `lease:{<id>}`: the refresh lease of a connection, in the connection's hash slot.
fn lease_key(connection_id: &str) -> String {
    format!("lease:{{{connection_id}}}")
}
fn connection_index_key(connector: &str, tenant_id: &str, oid: &str) -> String {
    format!("connidx:{connector}:{tenant_id}:{oid}")
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

    /// Stores a new session (kept `retention` past its expiry, for polling) and its connect
    /// token (valid for `ttl`).
    pub async fn create_session(
        &self,
        session: &ConnectSession,
        connect_token: &str,
        ttl: Duration,
        retention: Duration,
    ) -> Result<(), StoreError> {
        let target = ConnectTokenTarget {
            connector: session.connector.clone(),
            session_id: session.id.clone(),
        };
        self.store
            .put(
                &session_key(&session.connector, &session.id),
                encode(session),
                Some(ttl + retention),
            )
            .await?;
        self.store
            .put(&connect_token_key(connect_token), encode(&target), Some(ttl))
            .await?;
        Ok(())
    }

    /// A connector's session.
    pub async fn session(&self, connector: &str, id: &str) -> Result<Option<ConnectSession>, StoreError> {
        Ok(self.get(&session_key(connector, id)).await?.map(|(s, _)| s))
    }

    /// Rewrites a session, keeping its expiry (plus `retention`).
    pub async fn save_session(&self, session: &ConnectSession, retention: Duration) -> Result<(), StoreError> {
        let remaining = session.expires_at + retention.as_secs() as i64 - crate::clock::now_unix();
        if remaining <= 0 {
            return Ok(());
        }
        self.store
            .put(
                &session_key(&session.connector, &session.id),
                encode(session),
                Some(Duration::from_secs(remaining as u64)),
            )
            .await?;
        Ok(())
    }

    /// The session a connect token points at.
    pub async fn session_by_connect_token(&self, token: &str) -> Result<Option<ConnectSession>, StoreError> {
        let Some((target, _)) = self.get::<ConnectTokenTarget>(&connect_token_key(token)).await? else {
            return Ok(None);
        };
        self.session(&target.connector, &target.session_id).await
    }

    /// Stores a flow under its state.
    pub async fn put_flow(&self, state: &str, flow: &Flow, ttl: Duration) -> Result<(), StoreError> {
        if !self.store.insert_new(&flow_key(state), encode(flow), Some(ttl)).await? {
            return Err(StoreError::Backend("state collision".into()));
        }
        Ok(())
    }

    /// The reconnect link last handed out for a connection, if any is still stored.
    pub async fn reconnect_link(&self, connection_id: &str) -> Result<Option<ReconnectLink>, StoreError> {
        Ok(self.get(&reconnect_key(connection_id)).await?.map(|(r, _)| r))
    }

    /// Stores a connection's reconnect link until its session's link expires.
    pub async fn put_reconnect_link(&self, connection_id: &str, link: &ReconnectLink) -> Result<(), StoreError> {
        let left = link.expires_at - crate::clock::now_unix();
        if left <= 0 {
            return Ok(());
        }
        self.store
            .put(
                &reconnect_key(connection_id),
                encode(link),
                Some(Duration::from_secs(left as u64)),
            )
            .await?;
        Ok(())
    }

    /// Reads the flow for a state without using it up (the callback checks the browser first).
    pub async fn flow(&self, state: &str) -> Result<Option<Flow>, StoreError> {
        Ok(self.get(&flow_key(state)).await?.map(|(f, _)| f))
    }

    /// Takes the flow for a state: a state works once.
    pub async fn take_flow(&self, state: &str) -> Result<Option<Flow>, StoreError> {
        self.take(&flow_key(state)).await
    }

    /// Stores a handoff code.
    pub async fn put_handoff(
        &self,
        connector: &str,
        code: &str,
        handoff: &Handoff,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.store
            .put(&handoff_key(connector, code), encode(handoff), Some(ttl))
            .await?;
        Ok(())
    }

    /// Takes a connector's handoff code: a code works once, and only for its connector.
    pub async fn take_handoff(&self, connector: &str, code: &str) -> Result<Option<Handoff>, StoreError> {
        self.take(&handoff_key(connector, code)).await
    }

    /// A connection with its version (for compare-and-swap).
    pub async fn connection(&self, id: &str) -> Result<Option<(Connection, u64)>, StoreError> {
        self.get(&connection_key(id)).await
    }

    /// The existing connection for this connector, tenant and user, if any.
    pub async fn connection_for_user(
        &self,
        connector: &str,
        tenant_id: &str,
        oid: &str,
    ) -> Result<Option<(Connection, u64)>, StoreError> {
        let Some((id, _)) = self
            .get::<String>(&connection_index_key(connector, tenant_id, oid))
            .await?
        else {
            return Ok(None);
        };
        match self.connection(&id).await? {
            Some((c, v)) if c.connector == connector => Ok(Some((c, v))),
            _ => Ok(None),
        }
    }

    /// Writes a connection (new or replaced) and its user index.
    pub async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        self.store.put(&connection_key(&conn.id), encode(conn), None).await?;
        self.store
            .put(
                &connection_index_key(&conn.connector, &conn.tenant_id, &conn.user.oid),
                encode(&conn.id),
                None,
            )
            .await?;
        Ok(())
    }

    /// Replaces a connection only if nobody wrote it since `version` was read.
    pub async fn update_connection(&self, conn: &Connection, version: u64) -> Result<CasOutcome, StoreError> {
        self.store
            .compare_and_swap(&connection_key(&conn.id), version, encode(conn), None)
            .await
    }

    /// Takes the refresh lease of a connection for `ttl` when nobody holds it; `None` when
    /// another holder does. The lease names a random owner, so only its taker can renew or
    /// release it.
    pub async fn try_lease(&self, connection_id: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let key = lease_key(connection_id);
        let owner = crate::crypto::random_token();
        if !self.store.insert_new(&key, encode(&owner), Some(ttl)).await? {
            return Ok(None);
        }
        // The version is needed to renew and release; read it back (and make sure the lease
        // did not expire in between, which only a tiny TTL on a slow store could cause).
        match self.get::<String>(&key).await? {
            Some((stored, version)) if stored == owner => Ok(Some(Lease { key, owner, version })),
            _ => Ok(None),
        }
    }

    /// Extends a held lease to `ttl` from now; false when it was lost (expired, and perhaps
    /// taken by another broker).
    ///
    /// The owner is checked before the compare-and-swap because versions start again at 1 when
    /// an expired lease is taken anew, so a version alone could match another holder's lease.
    /// What is left (the lease expiring and being retaken between the two steps, up to the same
    /// version) can only cost a second refresh: the connection's own compare-and-swap, not the
    /// lease, is what keeps a refresh from overwriting a newer one.
    pub async fn renew_lease(&self, lease: &mut Lease, ttl: Duration) -> Result<bool, StoreError> {
        if !self.still_ours(lease).await? {
            return Ok(false);
        }
        match self
            .store
            .compare_and_swap(&lease.key, lease.version, encode(&lease.owner), Some(ttl))
            .await?
        {
            CasOutcome::Written(version) => {
                lease.version = version;
                Ok(true)
            }
            CasOutcome::Conflict => Ok(false),
        }
    }

    /// Gives a lease up, if it is still ours: a compare-and-swap with a zero TTL, which every
    /// backend treats as "expired at once", so a lease another broker took meanwhile stays.
    pub async fn release_lease(&self, lease: Lease) -> Result<(), StoreError> {
        if self.still_ours(&lease).await? {
            self.store
                .compare_and_swap(&lease.key, lease.version, encode(&lease.owner), Some(Duration::ZERO))
                .await?;
        }
        Ok(())
    }

    async fn still_ours(&self, lease: &Lease) -> Result<bool, StoreError> {
        Ok(matches!(
            self.get::<String>(&lease.key).await?,
            Some((owner, version)) if owner == lease.owner && version == lease.version
        ))
    }

    /// Deletes a connection and its index; true when it existed.
    pub async fn delete_connection(&self, conn: &Connection) -> Result<bool, StoreError> {
        let existed = self.store.delete(&connection_key(&conn.id)).await?;
        let index = connection_index_key(&conn.connector, &conn.tenant_id, &conn.user.oid);
        if let Some((id, _)) = self.get::<String>(&index).await?
            && id == conn.id
        {
            self.store.delete(&index).await?;
        }
        // A reconnect link handed out for it must not bring it back: its session goes too.
        if let Some((link, _)) = self.get::<ReconnectLink>(&reconnect_key(&conn.id)).await? {
            self.store
                .delete(&session_key(&conn.connector, &link.session_id))
                .await?;
            self.store.delete(&reconnect_key(&conn.id)).await?;
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_identities_compare_scopes_as_sets() {
        let scopes = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            TokenIdentity::new("T", "C", &scopes(&["b", "A", "a"])),
            TokenIdentity::new("t", "c", &scopes(&["a", "b"]))
        );
        assert_ne!(
            TokenIdentity::new("t", "c", &scopes(&["a"])),
            TokenIdentity::new("t", "c", &scopes(&["a", "b"]))
        );
    }

    #[tokio::test]
    async fn a_lease_has_one_holder_and_only_it_renews_or_releases() {
        let records = Records::new(Arc::new(crate::store::MemoryStore::new()));
        let ttl = Duration::from_secs(60);
        let mut first = records.try_lease("c1", ttl).await.unwrap().expect("free");
        assert!(records.try_lease("c1", ttl).await.unwrap().is_none(), "held");
        assert!(records.try_lease("c2", ttl).await.unwrap().is_some(), "per connection");
        assert!(records.renew_lease(&mut first, ttl).await.unwrap());
        records.release_lease(first).await.unwrap();
        let mut second = records.try_lease("c1", ttl).await.unwrap().expect("released");

        // A lease that expired and was taken by someone else is not theirs to renew or release.
        let mut stale = records
            .try_lease("c3", Duration::from_millis(20))
            .await
            .unwrap()
            .expect("free");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let taker = records
            .try_lease("c3", ttl)
            .await
            .unwrap()
            .expect("expired, free again");
        assert!(!records.renew_lease(&mut stale, ttl).await.unwrap());
        records.release_lease(stale).await.unwrap();
        assert!(
            records.try_lease("c3", ttl).await.unwrap().is_none(),
            "still the taker's"
        );
        records.release_lease(taker).await.unwrap();
        assert!(records.renew_lease(&mut second, ttl).await.unwrap());
    }

    #[tokio::test]
    async fn the_approved_tenant_index_keeps_the_most_recent_approvals_up_to_its_cap() {
        let records = Records::new(Arc::new(crate::store::MemoryStore::new()));
        let approve = |tenant: String| {
            let records = records.clone();
            async move {
                let approval = TenantApproval {
                    tenant_id: tenant,
                    scopes: vec!["Files.Read.All".into()],
                    approved_at_ms: 1,
                };
                records.put_tenant_approval("files", &approval).await.unwrap();
            }
        };
        let tenant = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
        let total = APPROVED_TENANTS_INDEX_CAP + 5;
        for i in 0..total {
            approve(tenant(i)).await;
        }
        let ids = records.approved_tenants("files").await.unwrap();
        assert_eq!(ids.len(), APPROVED_TENANTS_INDEX_CAP);
        assert_eq!(ids.first(), Some(&tenant(5)), "the five oldest left the index");
        assert_eq!(ids.last(), Some(&tenant(total - 1)), "the newest is kept");
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "no tenant twice");
        assert!(
            records.tenant_approval("files", &tenant(0)).await.unwrap().is_some(),
            "an approval that left the index is still recorded"
        );

        // Approving again makes a tenant the most recent one: the oldest other one leaves.
        approve(tenant(5)).await;
        let ids = records.approved_tenants("files").await.unwrap();
        assert_eq!(ids.len(), APPROVED_TENANTS_INDEX_CAP);
        assert_eq!(ids.last(), Some(&tenant(5)));
        assert_eq!(ids.first(), Some(&tenant(6)));
        // A tenant that was evicted and approves again comes back as the newest.
        approve(tenant(0)).await;
        let ids = records.approved_tenants("files").await.unwrap();
        assert_eq!(ids.len(), APPROVED_TENANTS_INDEX_CAP);
        assert_eq!(ids.last(), Some(&tenant(0)));
        assert!(!ids.contains(&tenant(6)));
        assert!(
            records.approved_tenants("crm").await.unwrap().is_empty(),
            "per connector"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_approvals_all_reach_the_index() {
        let records = Records::new(Arc::new(crate::store::MemoryStore::new()));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let records = records.clone();
                tokio::spawn(async move {
                    let approval = TenantApproval {
                        tenant_id: format!("t{i}"),
                        scopes: Vec::new(),
                        approved_at_ms: 1,
                    };
                    records.put_tenant_approval("files", &approval).await.unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut ids = records.approved_tenants("files").await.unwrap();
        ids.sort();
        let mut expected: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        expected.sort();
        assert_eq!(ids, expected);
    }

    #[test]
    fn a_connections_key_is_hash_tagged_on_its_id() {
        assert_eq!(connection_key("conn_abc"), "conn:{conn_abc}");
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

/// A flow that needs the tenant's approval, kept for the approval page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    /// The failed flow's id (the page's id).
    pub flow_id: String,
    /// Connector.
    pub connector: String,
    /// The connect session, for "continue".
    pub session_id: Option<String>,
    /// Return URL, for "continue".
    pub return_url: Option<String>,
    /// Connector state, for "continue".
    pub connector_state: Option<String>,
    /// UPN hint, for "continue".
    pub login_hint: Option<String>,
    /// Tenant segment the flow used (GUID, domain or `organizations`).
    pub tenant: String,
    /// Tenant GUID, when it could be resolved.
    pub tenant_id: Option<String>,
    /// What to call the tenant on the page (a domain or GUID).
    pub tenant_label: Option<String>,
    /// Category of the error.
    pub category: String,
    /// AADSTS code of the error.
    pub aadsts: Option<u32>,
    /// Unix milliseconds (approvals are ordered against it, often within the same second).
    pub created_at_ms: i64,
    /// Unix seconds after which the page says "expired".
    pub expires_at: i64,
    /// Digest of the browser whose flow ended here: only it may continue (`flow::binding`).
    #[serde(default)]
    pub browser: String,
}

/// A tenant's recorded admin consent for a connector.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TenantApproval {
    /// Tenant GUID.
    pub tenant_id: String,
    /// Scopes the admin granted, as Entra reported them.
    pub scopes: Vec<String>,
    /// Unix milliseconds.
    pub approved_at_ms: i64,
}

/// An admin-consent round trip in progress (stored under its state).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdminConsentState {
    /// Connector.
    pub connector: String,
    /// Tenant segment sent to Entra.
    pub tenant: String,
    /// Tenant GUID the callback must report, when known in advance.
    pub expected_tenant_id: Option<String>,
    /// The approval page that started it.
    pub flow_id: Option<String>,
}

/// At most this many tenants are listed in a connector's approved-tenant index. The index is one
/// value, read and rewritten whole (compare-and-swap) on every approval, and it only feeds the
/// "approved for another organization" hint, which needs some other tenant, not all of them; so
/// past the cap the oldest approvals leave the list (their own approval records stay). 1,000 GUIDs
/// are about 40 KB.
pub const APPROVED_TENANTS_INDEX_CAP: usize = 1_000;

/// The index after `tenant_id` approved: listed last (the most recent), once, and the oldest
/// entries dropped beyond [`APPROVED_TENANTS_INDEX_CAP`].
fn with_latest_approval(mut ids: Vec<String>, tenant_id: &str) -> Vec<String> {
    ids.retain(|t| t != tenant_id);
    ids.push(tenant_id.to_string());
    let excess = ids.len().saturating_sub(APPROVED_TENANTS_INDEX_CAP);
    ids.drain(..excess);
    ids
}

fn approval_key(flow_id: &str) -> String {
    format!("approval:{flow_id}")
}
fn tenant_approval_key(connector: &str, tenant_id: &str) -> String {
    format!("tenantapproval:{connector}:{tenant_id}")
}
fn tenant_approvals_index_key(connector: &str) -> String {
    format!("tenantapprovals:{connector}")
}
fn admin_consent_key(state: &str) -> String {
    format!("adminconsent:{}", sha256_hex(state))
}

impl Records {
    /// Stores an approval page's record, kept `retention` past its expiry so the page can say "expired".
    pub async fn put_approval(&self, approval: &Approval, retention: Duration) -> Result<(), StoreError> {
        let ttl = (approval.expires_at - crate::clock::now_unix()).max(0) as u64 + retention.as_secs();
        self.store
            .put(
                &approval_key(&approval.flow_id),
                encode(approval),
                Some(Duration::from_secs(ttl)),
            )
            .await?;
        Ok(())
    }

    /// An approval page's record.
    pub async fn approval(&self, flow_id: &str) -> Result<Option<Approval>, StoreError> {
        Ok(self.get(&approval_key(flow_id)).await?.map(|(a, _)| a))
    }

    /// Records (or replaces) a tenant's admin consent for a connector.
    pub async fn put_tenant_approval(&self, connector: &str, approval: &TenantApproval) -> Result<(), StoreError> {
        self.store
            .put(
                &tenant_approval_key(connector, &approval.tenant_id),
                encode(approval),
                None,
            )
            .await?;
        // The index lists which tenants approved, oldest approval first, for "you approved a
        // different tenant" hints. Concurrent approvals retry on conflict, so none is lost.
        let index = tenant_approvals_index_key(connector);
        loop {
            match self.get::<Vec<String>>(&index).await? {
                Some((ids, _)) if ids.last() == Some(&approval.tenant_id) => return Ok(()),
                Some((ids, version)) => {
                    let ids = with_latest_approval(ids, &approval.tenant_id);
                    if self.store.compare_and_swap(&index, version, encode(&ids), None).await? != CasOutcome::Conflict {
                        return Ok(());
                    }
                }
                None => {
                    if self
                        .store
                        .insert_new(&index, encode(&vec![approval.tenant_id.clone()]), None)
                        .await?
                    {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// A tenant's recorded admin consent for a connector.
    pub async fn tenant_approval(
        &self,
        connector: &str,
        tenant_id: &str,
    ) -> Result<Option<TenantApproval>, StoreError> {
        Ok(self
            .get(&tenant_approval_key(connector, tenant_id))
            .await?
            .map(|(a, _)| a))
    }

    /// Tenants that approved a connector, oldest approval first; at most
    /// [`APPROVED_TENANTS_INDEX_CAP`], the most recent ones.
    pub async fn approved_tenants(&self, connector: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .get(&tenant_approvals_index_key(connector))
            .await?
            .map(|(ids, _)| ids)
            .unwrap_or_default())
    }

    /// Stores an admin-consent state (single use).
    pub async fn put_admin_consent(
        &self,
        state: &str,
        value: &AdminConsentState,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if !self
            .store
            .insert_new(&admin_consent_key(state), encode(value), Some(ttl))
            .await?
        {
            return Err(StoreError::Backend("state collision".into()));
        }
        Ok(())
    }

    /// Takes an admin-consent state: it works once.
    pub async fn take_admin_consent(&self, state: &str) -> Result<Option<AdminConsentState>, StoreError> {
        self.take(&admin_consent_key(state)).await
    }
}
