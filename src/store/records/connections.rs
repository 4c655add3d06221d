//! Connections (one user's tokens for one connector in one tenant) and their refresh leases.

use std::time::Duration;

use super::keys::*;

/// Marks a store whose connections are all in their connectors' lists.
const LIST_BACKFILLED: &str = "connlist-backfilled:v1";

/// Most list entries one page of [`Records::connections_page`] looks at.
pub const LIST_EXAMINE_MAX: usize = 5_000;
use super::{PendingEvent, ReconnectLink, Records, encode};
use crate::crypto::Sensitive;
use crate::entra::Category;
use crate::ids::{ConnectionId, ConnectorId, TenantId};
use crate::store::{CasOutcome, StoreError, Write, WriteOutcome};

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
    pub category: Category,
    /// Entra's AADSTS code, if any.
    pub aadsts: Option<u32>,
}

/// One user's delegated tokens for one connector in one tenant.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    /// `conn_...`
    pub id: ConnectionId,
    /// Owning connector.
    pub connector: ConnectorId,
    /// The connector's user id from the session, when known.
    pub end_user: Option<String>,
    /// Tenant GUID (`tid`).
    pub tenant_id: TenantId,
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
    /// Set while refreshes fail for a reason that passes (Entra unavailable); cleared, with a
    /// `connection.recovered` event, by the next successful refresh. Left out when unset, so a
    /// connection that never failed is written exactly as before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<TransientFailure>,
}

/// Refreshes of a connection have been failing transiently since `since`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransientFailure {
    /// Unix seconds of the first failure in a row.
    pub since: i64,
    /// Its category (`transient`).
    pub category: Category,
}

/// The whole identity a connection's tokens were issued for: a token is served only for exactly
/// this tenant, client id and scope set, so that changing a connector's client id or scopes never
/// serves a token issued for the old ones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenIdentity {
    /// Tenant GUID.
    pub tenant_id: TenantId,
    /// The connector's Entra application (client) id.
    pub client_id: String,
    /// The resource scopes requested, sorted and without duplicates (compared as sets).
    pub scopes: Vec<String>,
}

impl TokenIdentity {
    /// The identity for a tenant, client id and requested scopes (in any order, any case, Graph's
    /// with or without its resource prefix: see [`crate::scope::canonical`]).
    pub fn new(tenant_id: &TenantId, client_id: &str, scopes: &[String]) -> Self {
        let mut scopes: Vec<String> = scopes.iter().map(|s| crate::scope::canonical(s)).collect();
        scopes.sort();
        scopes.dedup();
        Self {
            tenant_id: TenantId::new(tenant_id.as_str().to_ascii_lowercase()),
            client_id: client_id.to_ascii_lowercase(),
            scopes,
        }
    }

    /// This identity's client id and scopes for `tenant_id`.
    pub fn for_tenant(&self, tenant_id: &TenantId) -> Self {
        Self {
            tenant_id: TenantId::new(tenant_id.as_str().to_ascii_lowercase()),
            client_id: self.client_id.clone(),
            scopes: self.scopes.clone(),
        }
    }

    /// True when both name the same client id and scope set (whatever their tenants).
    pub fn same_client_and_scopes(&self, other: &TokenIdentity) -> bool {
        self.client_id == other.client_id && self.scopes == other.scopes
    }
}

/// A refresh lease this broker holds on one connection (see [`Records::try_lease`]).
#[derive(Debug)]
pub struct Lease {
    key: String,
    owner: String,
    version: u64,
}

impl Records {
    /// A connection with its version (for compare-and-swap).
    pub async fn connection(&self, id: &ConnectionId) -> Result<Option<(Connection, u64)>, StoreError> {
        self.get(&connection_key(id.as_str())).await
    }

    /// The existing connection for this connector, tenant and user, if any.
    pub async fn connection_for_user(
        &self,
        connector: &ConnectorId,
        tenant_id: &TenantId,
        oid: &str,
    ) -> Result<Option<(Connection, u64)>, StoreError> {
        let Some((id, _)) = self
            .get::<ConnectionId>(&connection_index_key(connector.as_str(), tenant_id.as_str(), oid))
            .await?
        else {
            return Ok(None);
        };
        match self.connection(&id).await? {
            Some((c, v)) if c.connector == *connector => Ok(Some((c, v))),
            _ => Ok(None),
        }
    }

    /// Writes a connection (new or replaced), its user index and its place in the connector's
    /// list. The list entry goes first: a crash in between leaves an entry without a record,
    /// which listing skips, never a connection that is not listed.
    pub async fn put_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        self.put_connection_with(conn, None).await
    }

    /// [`Records::put_connection`], storing `event` in the same operation as the record.
    pub async fn put_connection_with(&self, conn: &Connection, event: Option<&PendingEvent>) -> Result<(), StoreError> {
        self.store
            .index_add(
                &connection_list_index(conn.connector.as_str()),
                &connection_list_member(conn.created_at, conn.id.as_str()),
            )
            .await?;
        // Due at once: keep-alive then files it under its real time (see `crate::keepalive`).
        self.store
            .index_add(KEEPALIVE_INDEX, &keepalive_member(conn.refreshed_at, conn.id.as_str()))
            .await?;
        self.apply(
            Write::Put {
                key: connection_key(conn.id.as_str()),
                value: encode(conn),
                ttl: None,
            },
            event,
        )
        .await?;
        self.store
            .put(
                &connection_index_key(conn.connector.as_str(), conn.tenant_id.as_str(), &conn.user.oid),
                encode(&conn.id),
                None,
            )
            .await?;
        Ok(())
    }

    /// Replaces a connection only if nobody wrote it since `version` was read.
    pub async fn update_connection(&self, conn: &Connection, version: u64) -> Result<CasOutcome, StoreError> {
        self.update_connection_with(conn, version, None).await
    }

    /// [`Records::update_connection`], storing `event` only if the connection is written.
    pub async fn update_connection_with(
        &self,
        conn: &Connection,
        version: u64,
        event: Option<&PendingEvent>,
    ) -> Result<CasOutcome, StoreError> {
        let write = Write::Cas {
            key: connection_key(conn.id.as_str()),
            expected_version: version,
            value: encode(conn),
            ttl: None,
        };
        Ok(match self.apply(write, event).await? {
            WriteOutcome::Applied(v) => CasOutcome::Written(v),
            WriteOutcome::NotApplied => CasOutcome::Conflict,
        })
    }

    /// One page of `connector`'s connections, newest first, that `keep` accepts: up to `limit`,
    /// after the list member `after`. Also the member to continue after, when more may follow;
    /// a page examines at most [`LIST_EXAMINE_MAX`] entries, so a filter that matches little
    /// can give a short page that still has a cursor.
    pub async fn connections_page(
        &self,
        connector: &ConnectorId,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&Connection) -> bool,
    ) -> Result<(Vec<Connection>, Option<String>), StoreError> {
        let index = connection_list_index(connector.as_str());
        let limit = limit.max(1);
        let mut page = Vec::new();
        let mut cursor = after.map(str::to_string);
        let mut examined = 0;
        loop {
            let members = self.store.index_range(&index, cursor.as_deref(), limit).await?;
            let exhausted = members.len() < limit;
            for member in members {
                examined += 1;
                cursor = Some(member.clone());
                let Some((_, id)) = member.split_once(':') else {
                    continue;
                };
                // An entry whose record is gone (a crash mid-write, a delete in progress) is
                // skipped, not removed: a create may be about to write its record.
                if let Some((conn, _)) = self.connection(&ConnectionId::new(id)).await?
                    && conn.connector == *connector
                    && keep(&conn)
                {
                    page.push(conn);
                    if page.len() == limit {
                        return Ok((page, cursor));
                    }
                }
            }
            if exhausted {
                return Ok((page, None));
            }
            if examined >= LIST_EXAMINE_MAX {
                return Ok((page, cursor));
            }
        }
    }

    /// Up to `limit` entries of the keep-alive index due at `now` or earlier, earliest first:
    /// (member, connection id).
    pub async fn keepalive_due(&self, now: i64, limit: usize) -> Result<Vec<(String, ConnectionId)>, StoreError> {
        let members = self.store.index_range(KEEPALIVE_INDEX, None, limit).await?;
        Ok(members
            .into_iter()
            .filter_map(|m| {
                let (due, id) = m.split_once(':')?;
                let due: i64 = due.parse().ok()?;
                (due <= now).then(|| (m.clone(), ConnectionId::new(id)))
            })
            .collect())
    }

    /// Files a connection under `due` in the keep-alive index and removes its entry `old`, in
    /// that order, so that a crash in between leaves it filed twice (harmless), never not at all.
    pub async fn reschedule_keepalive(&self, old: &str, id: &ConnectionId, due: i64) -> Result<(), StoreError> {
        let new = keepalive_member(due, id.as_str());
        if new != old {
            self.store.index_add(KEEPALIVE_INDEX, &new).await?;
            self.store.index_remove(KEEPALIVE_INDEX, old).await?;
        }
        Ok(())
    }

    /// Removes a keep-alive entry (its connection is gone or needs a new sign-in).
    pub async fn unschedule_keepalive(&self, member: &str) -> Result<(), StoreError> {
        self.store.index_remove(KEEPALIVE_INDEX, member).await.map(|_| ())
    }

    /// Lists, once per store, the connections written before connector lists existed (by a
    /// broker older than this one): scans every record, adds each connection to its list, then
    /// leaves a marker so that later starts skip the scan. Safe to run on several brokers at
    /// once (adding is idempotent); returns how many connections it listed.
    ///
    /// A connection it cannot read (a newer broker's, or damaged) is skipped, and then no marker
    /// is left: the next start scans again, so the connection is listed once it reads (after
    /// this broker is upgraded, or the record repaired) rather than never.
    pub async fn list_unlisted_connections(&self) -> Result<usize, StoreError> {
        if self.store.get(LIST_BACKFILLED).await?.is_some() {
            return Ok(0);
        }
        let mut listed = 0;
        let mut skipped = 0;
        let mut cursor = None;
        loop {
            let (keys, next) = self.store.scan(cursor, 500).await?;
            for key in keys.iter().filter(|k| is_connection_key(k)) {
                match self.get::<Connection>(key).await {
                    Ok(Some((c, _))) => {
                        self.store
                            .index_add(
                                &connection_list_index(c.connector.as_str()),
                                &connection_list_member(c.created_at, c.id.as_str()),
                            )
                            .await?;
                        self.store
                            .index_add(KEEPALIVE_INDEX, &keepalive_member(c.refreshed_at, c.id.as_str()))
                            .await?;
                        listed += 1;
                    }
                    Ok(None) => {}
                    // Left for an operator (rotate-keys reports it); it is not listed.
                    Err(e) => {
                        skipped += 1;
                        tracing::warn!(key = %key, error = %e, "an unreadable connection was not listed");
                    }
                }
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        if skipped == 0 {
            self.store.put(LIST_BACKFILLED, encode(&true), None).await?;
        } else {
            tracing::warn!(
                skipped,
                "connections this broker cannot read were not listed; the next start tries again"
            );
        }
        Ok(listed)
    }

    /// Whether `key` is the marker [`Records::list_unlisted_connections`] leaves. A restore
    /// leaves it out, so that the restored store's first broker lists every connection again
    /// (adding is idempotent): that repairs any list or keep-alive entry a backup of a busy
    /// Redis, which is consistent per record only, missed.
    pub fn is_listing_marker(key: &str) -> bool {
        key == LIST_BACKFILLED
    }

    /// Takes the refresh lease of a connection for `ttl` when nobody holds it; `None` when
    /// another holder does. The lease names a random owner, so only its taker can renew or
    /// release it.
    pub async fn try_lease(&self, connection_id: &ConnectionId, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        self.try_lease_on(lease_key(connection_id.as_str()), ttl).await
    }

    /// Takes the lease record `key` for `ttl` when nobody holds it (see [`Records::try_lease`]).
    pub(super) async fn try_lease_on(&self, key: String, ttl: Duration) -> Result<Option<Lease>, StoreError> {
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
        self.delete_connection_with(conn, None).await
    }

    /// [`Records::delete_connection`], storing `event` only if the connection existed.
    pub async fn delete_connection_with(
        &self,
        conn: &Connection,
        event: Option<&PendingEvent>,
    ) -> Result<bool, StoreError> {
        let existed = matches!(
            self.apply(
                Write::Delete {
                    key: connection_key(conn.id.as_str())
                },
                event
            )
            .await?,
            WriteOutcome::Applied(_)
        );
        self.store
            .index_remove(
                &connection_list_index(conn.connector.as_str()),
                &connection_list_member(conn.created_at, conn.id.as_str()),
            )
            .await?;
        let index = connection_index_key(conn.connector.as_str(), conn.tenant_id.as_str(), &conn.user.oid);
        if let Some((id, _)) = self.get::<ConnectionId>(&index).await?
            && id == conn.id
        {
            self.store.delete(&index).await?;
        }
        // A reconnect link handed out for it must not bring it back: its session goes too.
        if let Some((link, _)) = self.get::<ReconnectLink>(&reconnect_key(conn.id.as_str())).await? {
            self.store
                .delete(&session_key(conn.connector.as_str(), &link.session_id))
                .await?;
            self.store.delete(&reconnect_key(conn.id.as_str())).await?;
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn token_identities_compare_scopes_as_sets() {
        let scopes = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            TokenIdentity::new(&TenantId::new("T"), "C", &scopes(&["b", "A", "a"])),
            TokenIdentity::new(&TenantId::new("t"), "c", &scopes(&["a", "b"]))
        );
        assert_ne!(
            TokenIdentity::new(&TenantId::new("t"), "c", &scopes(&["a"])),
            TokenIdentity::new(&TenantId::new("t"), "c", &scopes(&["a", "b"]))
        );
        // One permission however it names Graph; another cloud's Graph is another resource.
        assert_eq!(
            TokenIdentity::new(
                &"t".into(),
                "c",
                &scopes(&["https://graph.microsoft.com/Files.Read.All"])
            ),
            TokenIdentity::new(&"t".into(), "c", &scopes(&["files.read.all"]))
        );
        assert_ne!(
            TokenIdentity::new(
                &"t".into(),
                "c",
                &scopes(&["https://graph.microsoft.us/Files.Read.All"])
            ),
            TokenIdentity::new(&"t".into(), "c", &scopes(&["Files.Read.All"]))
        );
    }

    #[tokio::test]
    async fn a_lease_has_one_holder_and_only_it_renews_or_releases() {
        let records = Records::new(Arc::new(crate::store::MemoryStore::new()));
        let ttl = Duration::from_secs(60);
        let mut first = records
            .try_lease(&ConnectionId::new("c1"), ttl)
            .await
            .unwrap()
            .expect("free");
        assert!(
            records
                .try_lease(&ConnectionId::new("c1"), ttl)
                .await
                .unwrap()
                .is_none(),
            "held"
        );
        assert!(
            records
                .try_lease(&ConnectionId::new("c2"), ttl)
                .await
                .unwrap()
                .is_some(),
            "per connection"
        );
        assert!(records.renew_lease(&mut first, ttl).await.unwrap());
        records.release_lease(first).await.unwrap();
        let mut second = records
            .try_lease(&ConnectionId::new("c1"), ttl)
            .await
            .unwrap()
            .expect("released");

        // A lease that expired and was taken by someone else is not theirs to renew or release.
        let mut stale = records
            .try_lease(&ConnectionId::new("c3"), Duration::from_millis(20))
            .await
            .unwrap()
            .expect("free");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let taker = records
            .try_lease(&ConnectionId::new("c3"), ttl)
            .await
            .unwrap()
            .expect("expired, free again");
        assert!(!records.renew_lease(&mut stale, ttl).await.unwrap());
        records.release_lease(stale).await.unwrap();
        assert!(
            records
                .try_lease(&ConnectionId::new("c3"), ttl)
                .await
                .unwrap()
                .is_none(),
            "still the taker's"
        );
        records.release_lease(taker).await.unwrap();
        assert!(records.renew_lease(&mut second, ttl).await.unwrap());
    }

    #[tokio::test]
    async fn connections_written_before_lists_existed_are_listed_once() {
        let records = Records::new(Arc::new(crate::store::MemoryStore::new()));
        let mut conns = Vec::new();
        for i in 0..3 {
            let c: Connection = serde_json::from_value(serde_json::json!({
                "id": format!("conn_old_{i}"), "connector": "files", "end_user": null,
                "tenant_id": "t", "user": {"oid": format!("o{i}"), "name": null, "preferred_username": null},
                "scopes": [], "access_token": "at", "access_expires_at": 0, "refresh_token": "rt",
                "created_at": 100 + i, "refreshed_at": 100, "status": "active", "reauth": null,
                "return_url": null
            }))
            .unwrap();
            records.put_connection(&c).await.unwrap();
            // As an older broker wrote it: no list entry.
            let list = connection_list_index("files");
            assert!(
                records
                    .store
                    .index_remove(&list, &connection_list_member(c.created_at, c.id.as_str()))
                    .await
                    .unwrap()
            );
            conns.push(c);
        }
        assert!(
            records
                .connections_page(&ConnectorId::new("files"), None, 10, |_| true)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        assert_eq!(records.list_unlisted_connections().await.unwrap(), 3);
        let (page, _) = records
            .connections_page(&ConnectorId::new("files"), None, 10, |_| true)
            .await
            .unwrap();
        let ids: Vec<&str> = page.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["conn_old_2", "conn_old_1", "conn_old_0"], "newest first");
        assert_eq!(records.list_unlisted_connections().await.unwrap(), 0, "once per store");
    }

    // A connection skipped as unreadable keeps the listing pending: once it reads (this broker
    // upgraded, the record repaired), a later start lists it.
    #[tokio::test]
    async fn an_unreadable_connection_keeps_the_listing_pending_until_it_reads() {
        let records = Records::new(Arc::new(crate::store::MemoryStore::new()));
        let json = serde_json::json!({
            "id": "conn_new", "connector": "files", "end_user": null,
            "tenant_id": "t", "user": {"oid": "o", "name": null, "preferred_username": null},
            "scopes": [], "access_token": "at", "access_expires_at": 0, "refresh_token": "rt",
            "created_at": 100, "refreshed_at": 100, "status": "active", "reauth": null,
            "return_url": null
        });
        let key = connection_key("conn_new");
        // As a broker of a newer record format wrote it.
        let mut newer = vec![super::super::FORMAT_TAG, super::super::FORMAT + 1];
        newer.extend_from_slice(json.to_string().as_bytes());
        records.store.put(&key, newer.clone(), None).await.unwrap();
        assert_eq!(records.list_unlisted_connections().await.unwrap(), 0);
        assert!(
            records.store.get(LIST_BACKFILLED).await.unwrap().is_none(),
            "no marker while a connection was skipped"
        );
        assert_eq!(
            records.store.get(&key).await.unwrap().unwrap().value,
            newer,
            "left untouched"
        );
        assert_eq!(
            records.list_unlisted_connections().await.unwrap(),
            0,
            "still unreadable"
        );

        // The upgrade: the record now reads.
        records
            .store
            .put(&key, json.to_string().into_bytes(), None)
            .await
            .unwrap();
        assert_eq!(records.list_unlisted_connections().await.unwrap(), 1);
        let (page, _) = records
            .connections_page(&ConnectorId::new("files"), None, 10, |_| true)
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        assert!(records.store.get(LIST_BACKFILLED).await.unwrap().is_some());
        assert!(Records::is_listing_marker(LIST_BACKFILLED) && !Records::is_listing_marker(&key));
    }
}
