//! Approval pages, tenants' recorded admin consent and admin-consent round trips.

use std::time::Duration;

use super::keys::*;
use super::{PendingEvent, Records, encode};
use crate::entra::Category;
use crate::ids::{ConnectorId, FlowId, TenantId};
use crate::store::{CasOutcome, StoreError, Write};

/// A flow that needs the tenant's approval, kept for the approval page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    /// The failed flow's id (the page's id).
    pub flow_id: FlowId,
    /// Connector.
    pub connector: ConnectorId,
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
    pub tenant_id: Option<TenantId>,
    /// What to call the tenant on the page (a domain or GUID).
    pub tenant_label: Option<String>,
    /// Category of the error.
    pub category: Category,
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

impl Approval {
    /// The tenant as the admin-consent link and the pending-approvals gauge name it: its GUID
    /// when resolved, else the segment the flow used.
    pub fn tenant_key(&self) -> &str {
        self.tenant_id.as_ref().map_or(self.tenant.as_str(), TenantId::as_str)
    }
}

/// A tenant's recorded admin consent for a connector.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TenantApproval {
    /// Tenant GUID.
    pub tenant_id: TenantId,
    /// Scopes the admin granted, as Entra reported them.
    pub scopes: Vec<String>,
    /// Unix milliseconds.
    pub approved_at_ms: i64,
}

/// An admin-consent round trip in progress (stored under its state).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AdminConsentState {
    /// Connector.
    pub connector: ConnectorId,
    /// Tenant segment sent to Entra.
    pub tenant: String,
    /// Tenant GUID the callback must report, when known in advance.
    pub expected_tenant_id: Option<TenantId>,
    /// The approval page that started it.
    pub flow_id: Option<FlowId>,
}

/// How long a tenant's pending approval is remembered (so announced once) when nobody approves.
const PENDING_APPROVAL_MEMORY: Duration = Duration::from_secs(30 * 24 * 3600);

/// At most this many tenants are listed in a connector's approved-tenant index. The index is one
/// value, read and rewritten whole (compare-and-swap) on every approval, and it only feeds the
/// "approved for another organization" hint, which needs some other tenant, not all of them; so
/// past the cap the oldest approvals leave the list (their own approval records stay). 1,000 GUIDs
/// are about 40 KB.
pub const APPROVED_TENANTS_INDEX_CAP: usize = 1_000;

/// The index after `tenant_id` approved: listed last (the most recent), once, and the oldest
/// entries dropped beyond [`APPROVED_TENANTS_INDEX_CAP`].
fn with_latest_approval(mut ids: Vec<TenantId>, tenant_id: &TenantId) -> Vec<TenantId> {
    ids.retain(|t| t != tenant_id);
    ids.push(tenant_id.clone());
    let excess = ids.len().saturating_sub(APPROVED_TENANTS_INDEX_CAP);
    ids.drain(..excess);
    ids
}

impl Records {
    /// Stores an approval page's record, kept `retention` past its expiry so the page can say "expired".
    pub async fn put_approval(&self, approval: &Approval, retention: Duration) -> Result<(), StoreError> {
        let ttl = (approval.expires_at - crate::clock::now_unix()).max(0) as u64 + retention.as_secs();
        self.store
            .put(
                &approval_key(approval.flow_id.as_str()),
                encode(approval),
                Some(Duration::from_secs(ttl)),
            )
            .await?;
        Ok(())
    }

    /// An approval page's record.
    pub async fn approval(&self, flow_id: &FlowId) -> Result<Option<Approval>, StoreError> {
        Ok(self.get(&approval_key(flow_id.as_str())).await?.map(|(a, _)| a))
    }

    /// Records (or replaces) a tenant's admin consent for a connector.
    pub async fn put_tenant_approval(
        &self,
        connector: &ConnectorId,
        approval: &TenantApproval,
    ) -> Result<(), StoreError> {
        self.put_tenant_approval_with(connector, approval, None).await
    }

    /// [`Records::put_tenant_approval`], storing `event` in the same operation; the tenant's
    /// pending-approval note goes, so its users' next wait is announced again.
    pub async fn put_tenant_approval_with(
        &self,
        connector: &ConnectorId,
        approval: &TenantApproval,
        event: Option<&PendingEvent>,
    ) -> Result<(), StoreError> {
        let write = Write::Put {
            key: tenant_approval_key(connector.as_str(), approval.tenant_id.as_str()),
            value: encode(approval),
            ttl: None,
        };
        self.apply(write, event).await?;
        self.store
            .delete(&pending_approval_key(connector.as_str(), approval.tenant_id.as_str()))
            .await?;
        // The index lists which tenants approved, oldest approval first, for "you approved a
        // different tenant" hints. Concurrent approvals retry on conflict, so none is lost.
        let index = tenant_approvals_index_key(connector.as_str());
        loop {
            match self.get::<Vec<TenantId>>(&index).await? {
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

    /// Records that users of `tenant` wait for `connector`'s approval, with `event`, unless
    /// that is recorded already (then nothing is written: the event was raised before).
    pub async fn note_pending_approval(
        &self,
        connector: &ConnectorId,
        tenant: &str,
        event: &PendingEvent,
    ) -> Result<(), StoreError> {
        let write = Write::InsertNew {
            key: pending_approval_key(connector.as_str(), tenant),
            value: encode(&event.event.created_at_ms),
            ttl: Some(PENDING_APPROVAL_MEMORY),
        };
        self.apply(write, Some(event)).await.map(drop)
    }

    /// A tenant's recorded admin consent for a connector.
    pub async fn tenant_approval(
        &self,
        connector: &ConnectorId,
        tenant_id: &TenantId,
    ) -> Result<Option<TenantApproval>, StoreError> {
        Ok(self
            .get(&tenant_approval_key(connector.as_str(), tenant_id.as_str()))
            .await?
            .map(|(a, _)| a))
    }

    /// Tenants that approved a connector, oldest approval first; at most
    /// [`APPROVED_TENANTS_INDEX_CAP`], the most recent ones.
    pub async fn approved_tenants(&self, connector: &ConnectorId) -> Result<Vec<TenantId>, StoreError> {
        Ok(self
            .get(&tenant_approvals_index_key(connector.as_str()))
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
            return Err(StoreError::backend("state collision"));
        }
        Ok(())
    }

    /// Takes an admin-consent state: it works once.
    pub async fn take_admin_consent(&self, state: &str) -> Result<Option<AdminConsentState>, StoreError> {
        self.take(&admin_consent_key(state)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_approved_tenant_index_keeps_the_most_recent_approvals_up_to_its_cap() {
        let records = Records::new(Arc::new(crate::store::MemoryStore::new()));
        let files = ConnectorId::new("files");
        let approve = |tenant: TenantId| {
            let records = records.clone();
            async move {
                let approval = TenantApproval {
                    tenant_id: tenant,
                    scopes: vec!["Files.Read.All".into()],
                    approved_at_ms: 1,
                };
                records
                    .put_tenant_approval(&ConnectorId::new("files"), &approval)
                    .await
                    .unwrap();
            }
        };
        let tenant = |i: usize| TenantId::new(format!("00000000-0000-4000-8000-{i:012}"));
        let total = APPROVED_TENANTS_INDEX_CAP + 5;
        for i in 0..total {
            approve(tenant(i)).await;
        }
        let ids = records.approved_tenants(&files).await.unwrap();
        assert_eq!(ids.len(), APPROVED_TENANTS_INDEX_CAP);
        assert_eq!(ids.first(), Some(&tenant(5)), "the five oldest left the index");
        assert_eq!(ids.last(), Some(&tenant(total - 1)), "the newest is kept");
        let unique: std::collections::HashSet<&TenantId> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "no tenant twice");
        assert!(
            records.tenant_approval(&files, &tenant(0)).await.unwrap().is_some(),
            "an approval that left the index is still recorded"
        );

        // Approving again makes a tenant the most recent one: the oldest other one leaves.
        approve(tenant(5)).await;
        let ids = records.approved_tenants(&files).await.unwrap();
        assert_eq!(ids.len(), APPROVED_TENANTS_INDEX_CAP);
        assert_eq!(ids.last(), Some(&tenant(5)));
        assert_eq!(ids.first(), Some(&tenant(6)));
        // A tenant that was evicted and approves again comes back as the newest.
        approve(tenant(0)).await;
        let ids = records.approved_tenants(&files).await.unwrap();
        assert_eq!(ids.len(), APPROVED_TENANTS_INDEX_CAP);
        assert_eq!(ids.last(), Some(&tenant(0)));
        assert!(!ids.contains(&tenant(6)));
        assert!(
            records
                .approved_tenants(&ConnectorId::new("crm"))
                .await
                .unwrap()
                .is_empty(),
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
                        tenant_id: TenantId::new(format!("t{i}")),
                        scopes: Vec::new(),
                        approved_at_ms: 1,
                    };
                    records
                        .put_tenant_approval(&ConnectorId::new("files"), &approval)
                        .await
                        .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let mut ids = records.approved_tenants(&ConnectorId::new("files")).await.unwrap();
        ids.sort();
        let mut expected: Vec<TenantId> = (0..20).map(|i| TenantId::new(format!("t{i}"))).collect();
        expected.sort();
        assert_eq!(ids, expected);
    }
}
