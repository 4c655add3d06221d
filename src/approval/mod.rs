//! The approval experience: when a tenant must approve a connector, the flow ends on an approval
//! page that explains it, gives the admin a one-click consent link, notices the approval by itself
//! and continues. Admin consent comes back to the broker, which checks it with Entra and records
//! the tenant's approval; every waiting page of that tenant and connector then reads "approved".
//!
//! The admin-consent callback proves nothing by itself: anyone can start a round trip and type
//! `admin_consent=True&tenant=<GUID>` with its state. So before recording, the broker asks Entra
//! for an app-only token in that tenant: Entra issues one only where the app has a service
//! principal, which the admin's consent creates.

mod consent;
mod endpoint;
pub mod pending;
pub mod permissions;
#[cfg(test)]
mod tests;

pub use consent::{ConsentOutcome, Unconfirmed};
pub use endpoint::ConsentEndpoint;
pub use pending::PendingApprovals;

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::clock::Clock;
use crate::config::{Config, ConnectorConfig, Connectors};
use crate::entra::{Category, Classification};
use crate::flow::SignInEndpoint;
use crate::ids::{ConnectorId, FlowId, TenantId};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::records::{Approval, Flow, Records};
use crate::webhooks::Outbox;

/// How long an approval page waits for the approval.
pub const APPROVAL_TTL: Duration = Duration::from_secs(24 * 3_600);
/// How long an expired approval page is kept so it can say "expired".
const RETENTION: Duration = Duration::from_secs(24 * 3_600);

/// Categories whose flows end on the approval page.
pub fn needs_approval_page(category: Category) -> bool {
    match category {
        Category::AdminApprovalRequired | Category::ConsentRequired => true,
        Category::UserDeclined
        | Category::NotAssigned
        | Category::ConditionalAccess
        | Category::InteractionRequired
        | Category::ReauthRequired
        | Category::AppMisconfigured
        | Category::TenantMisconfigured
        | Category::ClientCredentialInvalid
        | Category::Transient
        | Category::InvalidRequest
        | Category::Unknown => false,
    }
}

/// The approval page a flow that needs approval ends on: the page it was continued from, so that
/// the address already sent to IT stays the one that works, else a page of its own.
pub fn page_id(flow: &Flow) -> &FlowId {
    flow.approval_page.as_ref().unwrap_or(&flow.id)
}

/// The page path for an approval.
pub fn page_path(flow_id: &FlowId) -> String {
    format!("/v1/approval/{flow_id}")
}

/// The domain of a UPN hint (`frank@fabrikam.com` → `fabrikam.com`).
fn hint_domain(login_hint: Option<&str>) -> Option<String> {
    let domain = login_hint?.rsplit_once('@')?.1.to_ascii_lowercase();
    crate::config::is_tenant_segment(&domain).then_some(domain)
}

/// What to call the organization on its pages: a domain people recognise, never a GUID when a
/// domain is known: the tenant the flow named when it is a domain, else the domain of the user's
/// sign-in name, else the tenant GUID the flow named (a retry from an approval page names the GUID).
pub fn organization_label(named_tenant: Option<&str>, login_hint: Option<&str>) -> Option<String> {
    let named = named_tenant.filter(|t| !is_generic_tenant(t));
    let is_guid = |t: &str| uuid::Uuid::parse_str(t).is_ok();
    named
        .filter(|t| !is_guid(t))
        .map(str::to_string)
        .or_else(|| hint_domain(login_hint))
        .or_else(|| named.map(str::to_string))
}

fn is_generic_tenant(t: &str) -> bool {
    matches!(t, "organizations" | "common" | "consumers")
}

/// What recording an approval page touches: the store, Entra (to resolve the tenant), this
/// broker's pending-approvals gauge and the outbox (`approval.pending`).
pub struct Recorder<'a> {
    /// Typed store access.
    pub records: &'a Records,
    /// Resolves the organization's tenant id.
    pub entra: &'a dyn SignInEndpoint,
    /// The gauge of open pages.
    pub pending: &'a PendingApprovals,
    /// Where `approval.pending` is raised.
    pub outbox: &'a Outbox,
}

impl Recorder<'_> {
    /// Records an approval page, at `page_url`, for a flow Entra refused for want of approval, at
    /// `now_ms` (Unix milliseconds).
    pub async fn record(
        &self,
        page_url: &str,
        now_ms: i64,
        flow: &Flow,
        c: &Classification,
    ) -> Result<FlowId, StoreError> {
        let (records, entra, pending, outbox) = (self.records, self.entra, self.pending, self.outbox);
        // Which organization: the flow's own tenant when it named one, else the user's domain.
        let named = (!is_generic_tenant(&flow.tenant)).then(|| flow.tenant.clone());
        let label = organization_label(named.as_deref(), flow.login_hint.as_deref());
        let tenant_id = match &label {
            Some(t) => entra.resolve_tenant(t).await,
            None => None,
        };
        let approval = Approval {
            flow_id: page_id(flow).clone(),
            connector: flow.connector.clone(),
            session_id: flow.session_id.clone(),
            return_url: flow.return_url.clone(),
            connector_state: flow.connector_state.clone(),
            login_hint: flow.login_hint.clone(),
            tenant: named
                .or_else(|| tenant_id.as_ref().map(ToString::to_string))
                .unwrap_or_else(|| flow.tenant.clone()),
            tenant_id,
            tenant_label: label,
            category: c.category,
            aadsts: c.primary_code(),
            created_at_ms: now_ms,
            expires_at: now_ms / 1000 + APPROVAL_TTL.as_secs() as i64,
            browser: flow.browser.clone(),
        };
        records.put_approval(&approval, RETENTION).await?;
        // `approval.pending` once per tenant until it approves; a tenant nobody could name (no hint,
        // `organizations`) is told each time, having no key to remember it by.
        if let Some(event) = outbox.approval_pending(&approval, page_url) {
            let tenant = approval
                .tenant_id
                .as_ref()
                .map(|t| t.as_str())
                .or(approval.tenant_label.as_deref());
            match tenant {
                Some(t) => records.note_pending_approval(&approval.connector, t, &event).await?,
                None => records.raise(&event).await?,
            }
        }
        pending.opened(
            approval.connector.as_str(),
            approval.tenant_key(),
            approval.created_at_ms,
        );
        tracing::info!(flow = %flow.id, connector = %flow.connector, tenant = approval.tenant_id.as_ref().map_or("?", |t| t.as_str()), "approval page opened");
        Ok(approval.flow_id)
    }
}

/// What the approval service needs from the configuration.
#[derive(Debug, Clone)]
pub struct ApprovalSettings {
    /// The broker's public base URL (links and the admin-consent redirect URI).
    pub public_url: Url,
    /// How long an admin-consent round trip may take (its state's lifetime).
    pub state_ttl: Duration,
    /// How long to ask the admin to wait when Entra gives no Retry-After.
    pub default_retry_after: Duration,
}

impl ApprovalSettings {
    /// The settings `config` gives.
    pub fn from_config(config: &Config) -> Self {
        Self {
            public_url: config.public_url.clone(),
            state_ttl: config.flow.state_ttl,
            default_retry_after: config.entra.default_retry_after,
        }
    }
}

/// What an [`ApprovalService`] is built from.
pub struct ApprovalServiceParts {
    /// Typed store access.
    pub records: Records,
    /// Entra's admin-consent calls.
    pub entra: Arc<dyn ConsentEndpoint>,
    /// Connectors by id.
    pub connectors: Connectors,
    /// This broker's open approval pages (the pending-approvals gauge).
    pub pending: Arc<PendingApprovals>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where `approval.granted` is raised.
    pub outbox: Arc<Outbox>,
    /// Settings.
    pub settings: ApprovalSettings,
}

/// Approval pages' state and the admin-consent round trip, with only what they need.
pub struct ApprovalService {
    records: Records,
    entra: Arc<dyn ConsentEndpoint>,
    connectors: Connectors,
    pending: Arc<PendingApprovals>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    outbox: Arc<Outbox>,
    settings: ApprovalSettings,
}

impl ApprovalService {
    /// Builds the service.
    pub fn new(parts: ApprovalServiceParts) -> Self {
        Self {
            records: parts.records,
            entra: parts.entra,
            connectors: parts.connectors,
            pending: parts.pending,
            clock: parts.clock,
            metrics: parts.metrics,
            outbox: parts.outbox,
            settings: parts.settings,
        }
    }

    /// A configured connector.
    pub fn connector(&self, id: &ConnectorId) -> Option<&ConnectorConfig> {
        self.connectors.get(id)
    }

    /// An approval page's record.
    pub async fn approval(&self, flow_id: &FlowId) -> Result<Option<Approval>, StoreError> {
        self.records.approval(flow_id).await
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

    /// `{public_url}{path}`.
    fn public(&self, path: &str) -> String {
        format!("{}{path}", self.settings.public_url.as_str().trim_end_matches('/'))
    }
    /// Takes off the pending-approvals gauge the pages this process opened whose tenant has since
    /// approved, through any broker sharing the store, or that expired. Run on the purge interval:
    /// the approving callback may well land on another instance.
    pub async fn settle_pending(&self) {
        let now = self.now_ms();
        let ttl_ms = APPROVAL_TTL.as_millis() as i64;
        for (connector, tenant, newest_ms) in self.pending.open() {
            let settled = newest_ms + ttl_ms <= now
                || match self
                    .records
                    .tenant_approval(&ConnectorId::new(connector.as_str()), &TenantId::new(tenant.as_str()))
                    .await
                {
                    Ok(Some(a)) => a.approved_at_ms >= newest_ms,
                    Ok(None) => false,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot check pending approvals now");
                        return;
                    }
                };
            if settled {
                self.pending.settled(&connector, &tenant);
            }
        }
    }

    /// The approval's current status.
    pub async fn status(&self, approval: &Approval) -> Result<Status, StoreError> {
        if let Some(tid) = &approval.tenant_id
            && let Some(ta) = self.records.tenant_approval(&approval.connector, tid).await?
            && ta.approved_at_ms > approval.created_at_ms
        {
            return Ok(Status::Approved);
        }
        Ok(if approval.expires_at <= self.clock.now_unix() {
            Status::Expired
        } else {
            Status::Pending
        })
    }

    /// Compares what was approved with what fails now.
    pub async fn diagnose(&self, approval: &Approval) -> Result<Option<Diagnosis>, StoreError> {
        let Some(connector) = self.connector(&approval.connector) else {
            return Ok(None);
        };
        if let Some(tid) = &approval.tenant_id {
            if let Some(ta) = self.records.tenant_approval(&approval.connector, tid).await?
                && ta.approved_at_ms <= approval.created_at_ms
            {
                // Compared canonically: the callback reports scopes with their resource.
                let granted: Vec<String> = ta.scopes.iter().map(|s| crate::scope::canonical(s)).collect();
                let missing: Vec<String> = connector
                    .scopes
                    .iter()
                    .filter(|s| !crate::scope::is_oidc(s))
                    .filter(|s| !granted.contains(&crate::scope::canonical(s)))
                    .cloned()
                    .collect();
                return Ok(Some(if missing.is_empty() {
                    Diagnosis::AssignmentLikely {
                        approved_at: ta.approved_at_ms / 1000,
                    }
                } else {
                    Diagnosis::NewScopes {
                        approved_at: ta.approved_at_ms / 1000,
                        missing,
                    }
                }));
            }
            let others = self.records.approved_tenants(&approval.connector).await?;
            if others.iter().any(|t| t != tid) {
                return Ok(Some(Diagnosis::OtherTenant));
            }
        }
        Ok(None)
    }

    /// The one-click admin-consent link for an approval page.
    pub fn admin_link(&self, approval: &Approval) -> String {
        self.start_link(&approval.connector, approval.tenant_key(), Some(&approval.flow_id))
    }

    /// `/v1/admin-consent/start` for a connector and tenant (and the approval page to return to).
    pub fn start_link(&self, connector: &ConnectorId, tenant: &str, flow_id: Option<&FlowId>) -> String {
        let mut url =
            Url::parse(&self.public("/v1/admin-consent/start")).unwrap_or_else(|_| self.settings.public_url.clone());
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("connector", connector.as_str())
                .append_pair("tenant", tenant);
            if let Some(flow) = flow_id {
                query.append_pair("flow", flow.as_str());
            }
        }
        url.to_string()
    }
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the admin.
    Pending,
    /// The tenant approved the connector after the page was opened.
    Approved,
    /// The page waited too long.
    Expired,
}

impl Status {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Expired => "expired",
        }
    }
}

/// Why it might still fail although the tenant approved before (shown on the page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
    /// The connector asks for scopes the approval did not cover.
    NewScopes {
        /// When the tenant approved (Unix seconds).
        approved_at: i64,
        /// Scopes not covered.
        missing: Vec<String>,
    },
    /// Everything asked for was approved: the likely cause is user assignment.
    AssignmentLikely {
        /// When the tenant approved.
        approved_at: i64,
    },
    /// Other tenants approved, not this one.
    OtherTenant,
}
