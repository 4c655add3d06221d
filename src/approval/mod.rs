//! The approval experience: when a tenant must approve a connector, the flow ends on an approval
//! page that explains it, gives the admin a one-click consent link, notices the approval by itself
//! and continues. Admin consent comes back to the broker, which checks it with Entra and records
//! the tenant's approval; every waiting page of that tenant and connector then reads "approved".
//!
//! The admin-consent callback proves nothing by itself: anyone can start a round trip and type
//! `admin_consent=True&tenant=<GUID>` with its state. So before recording, the broker asks Entra
//! for an app-only token in that tenant: Entra issues one only where the app has a service
//! principal, which the admin's consent creates.

pub mod pending;
pub mod permissions;

pub use pending::PendingApprovals;

use std::time::Duration;

use url::Url;

use crate::app::AppState;
use crate::clock::now_unix;
use crate::config::ConnectorConfig;
use crate::crypto::random_token;
use crate::entra::client::ClientAuth;
use crate::entra::{Category, Classification, EntraError, TokenError, aadsts, classify};
use crate::flow::{FlowError, SignInEndpoint};
use crate::metrics::ConsentVerification;
use crate::store::StoreError;
use crate::store::records::{AdminConsentState, Approval, Flow, Records, TenantApproval};

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

/// The page path for an approval.
pub fn page_path(flow_id: &str) -> String {
    format!("/v1/approval/{flow_id}")
}

/// The domain of a UPN hint (`frank@fabrikam.com` → `fabrikam.com`).
fn hint_domain(login_hint: Option<&str>) -> Option<String> {
    let domain = login_hint?.rsplit_once('@')?.1.to_ascii_lowercase();
    crate::config::is_tenant_segment(&domain).then_some(domain)
}

fn is_generic_tenant(t: &str) -> bool {
    matches!(t, "organizations" | "common" | "consumers")
}

/// Records an approval page for a flow Entra refused for want of approval, at `now` (Unix
/// seconds); `entra` resolves the organization's tenant id.
pub async fn record(
    records: &Records,
    entra: &dyn SignInEndpoint,
    pending: &PendingApprovals,
    now: i64,
    flow: &Flow,
    c: &Classification,
) -> Result<String, StoreError> {
    // Which organization: the flow's own tenant when it named one, else the user's domain.
    let named = (!is_generic_tenant(&flow.tenant)).then(|| flow.tenant.clone());
    let label = named.clone().or_else(|| hint_domain(flow.login_hint.as_deref()));
    let tenant_id = match &label {
        Some(t) => entra.resolve_tenant(t).await,
        None => None,
    };
    let approval = Approval {
        flow_id: flow.id.clone(),
        connector: flow.connector.clone(),
        session_id: flow.session_id.clone(),
        return_url: flow.return_url.clone(),
        connector_state: flow.connector_state.clone(),
        login_hint: flow.login_hint.clone(),
        tenant: named
            .or_else(|| tenant_id.clone())
            .unwrap_or_else(|| flow.tenant.clone()),
        tenant_id,
        tenant_label: label,
        category: c.category,
        aadsts: c.primary_code(),
        created_at_ms: crate::clock::now_millis(),
        expires_at: now + APPROVAL_TTL.as_secs() as i64,
        browser: flow.browser.clone(),
    };
    records.put_approval(&approval, RETENTION).await?;
    pending.opened(
        &approval.connector,
        approval.tenant_id.as_deref().unwrap_or(&approval.tenant),
        approval.created_at_ms,
    );
    tracing::info!(flow = %flow.id, connector = %flow.connector, tenant = approval.tenant_id.as_deref().unwrap_or("?"), "approval page opened");
    Ok(flow.id.clone())
}

/// Takes off the pending-approvals gauge the pages this process opened whose tenant has since
/// approved, through any broker sharing the store, or that expired. Run on the purge interval:
/// the approving callback may well land on another instance.
pub async fn settle_pending(state: &AppState) {
    let now = crate::clock::now_millis();
    let ttl_ms = APPROVAL_TTL.as_millis() as i64;
    for (connector, tenant, newest_ms) in state.pending_approvals.open() {
        let settled = newest_ms + ttl_ms <= now
            || match state.records.tenant_approval(&connector, &tenant).await {
                Ok(Some(a)) => a.approved_at_ms >= newest_ms,
                Ok(None) => false,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot check pending approvals now");
                    return;
                }
            };
        if settled {
            state.pending_approvals.settled(&connector, &tenant);
        }
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

/// The approval's current status.
pub async fn status(state: &AppState, approval: &Approval) -> Result<Status, StoreError> {
    if let Some(tid) = &approval.tenant_id
        && let Some(ta) = state.records.tenant_approval(&approval.connector, tid).await?
        && ta.approved_at_ms > approval.created_at_ms
    {
        return Ok(Status::Approved);
    }
    Ok(if approval.expires_at <= now_unix() {
        Status::Expired
    } else {
        Status::Pending
    })
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

/// Compares what was approved with what fails now.
pub async fn diagnose(state: &AppState, approval: &Approval) -> Result<Option<Diagnosis>, StoreError> {
    let Some(connector) = state.connector(&approval.connector) else {
        return Ok(None);
    };
    if let Some(tid) = &approval.tenant_id {
        if let Some(ta) = state.records.tenant_approval(&approval.connector, tid).await?
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
        let others = state.records.approved_tenants(&approval.connector).await?;
        if others.iter().any(|t| t != tid) {
            return Ok(Some(Diagnosis::OtherTenant));
        }
    }
    Ok(None)
}

/// The one-click admin-consent link for an approval page.
pub fn admin_link(state: &AppState, approval: &Approval) -> String {
    start_link(
        state,
        &approval.connector,
        approval.tenant_id.as_deref().unwrap_or(&approval.tenant),
        Some(&approval.flow_id),
    )
}

/// `/v1/admin-consent/start` for a connector and tenant (and the approval page to return to).
pub fn start_link(state: &AppState, connector: &str, tenant: &str, flow_id: Option<&str>) -> String {
    let mut url =
        Url::parse(&state.public("/v1/admin-consent/start")).unwrap_or_else(|_| state.config.public_url.clone());
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("connector", connector).append_pair("tenant", tenant);
        if let Some(flow) = flow_id {
            query.append_pair("flow", flow);
        }
    }
    url.to_string()
}

/// `GET /v1/admin-consent/start`: a fresh single-use state and the Entra admin-consent URL.
pub async fn admin_consent_start(
    state: &AppState,
    connector_id: &str,
    tenant: &str,
    flow_id: Option<&str>,
) -> Result<Url, FlowError> {
    let connector = state.connector(connector_id).ok_or(FlowError::UnknownConnector)?;
    let tenant = tenant.to_ascii_lowercase();
    // Entra: never `common` for admin consent (personal accounts cannot consent for a tenant).
    if !crate::config::is_tenant_segment(&tenant) || matches!(tenant.as_str(), "common" | "consumers") {
        return Err(FlowError::InvalidParameter {
            field: "tenant",
            message: "must be a tenant GUID, a domain or organizations",
        });
    }
    if let Some(f) = flow_id
        && (f.len() > 64 || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(FlowError::InvalidParameter {
            field: "flow",
            message: "is not a flow id",
        });
    }
    let expected_tenant_id = state.entra.resolve_tenant(&tenant).await;
    let state_value = random_token();
    state
        .records
        .put_admin_consent(
            &state_value,
            &AdminConsentState {
                connector: connector.id.clone(),
                tenant: tenant.clone(),
                expected_tenant_id,
                flow_id: flow_id.map(str::to_string),
            },
            state.config.flow.state_ttl,
        )
        .await?;
    state
        .entra
        .admin_consent_url(
            &tenant,
            &connector.client_id,
            &connector.scopes,
            &state.public("/v1/admin-consent/callback"),
            &state_value,
        )
        .map_err(FlowError::EntraProtocol)
}

/// How an admin-consent round trip ended.
#[derive(Debug)]
pub enum ConsentOutcome {
    /// Recorded.
    Approved {
        /// Connector id.
        connector: String,
        /// Tenant GUID.
        tenant_id: String,
        /// The approval page that started it.
        flow_id: Option<String>,
    },
    /// The admin cancelled.
    Cancelled {
        /// Connector id.
        connector: String,
    },
    /// The account could not approve for the tenant.
    NotAdmin {
        /// Connector id.
        connector: String,
    },
    /// Entra approved another tenant than the one asked for.
    WrongTenant,
    /// The callback said "approved" but Entra did not confirm it; nothing was recorded.
    Unconfirmed {
        /// Connector id.
        connector: String,
        /// Tenant GUID the callback named.
        tenant_id: String,
        /// The approval page that started it.
        flow_id: Option<String>,
        /// Why it is not confirmed.
        reason: Unconfirmed,
    },
    /// Something else went wrong.
    Failed {
        /// Connector id.
        connector: String,
        /// Entra's error.
        classification: Box<Classification>,
    },
}

/// Why an admin consent is not (yet) confirmed by Entra.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unconfirmed {
    /// Entra has no service principal of the app in the tenant: nobody consented, or Entra has
    /// not finished creating it yet.
    NoServicePrincipal,
    /// Entra could not be asked (unreachable, failing, throttling, circuit open).
    EntraUnavailable {
        /// When to try again.
        retry_after: Duration,
    },
}

/// AADSTS codes meaning "the app has no service principal in this tenant": 700016 (application
/// not found in the directory: what a multi-tenant app gets in a customer tenant nobody consented
/// in) and 7000229 (missing service principal: Entra's newer wording for the same state).
const NO_SERVICE_PRINCIPAL: [u32; 2] = [700016, 7000229];

/// How the check with Entra ended.
enum Verification {
    /// Entra issued an app-only token: the consent is real.
    Verified,
    /// Not confirmed: nothing is recorded.
    Unconfirmed(Unconfirmed),
    /// Entra refused for another reason (e.g. the connector's own credential).
    Failed(Box<Classification>),
}

/// Asks Entra whether the app now has a service principal in `tenant_id`, authenticating exactly
/// as the code redemption does (secret or certificate), through the same retries and breaker.
async fn verify_with_entra(
    state: &AppState,
    connector: &ConnectorConfig,
    tenant_id: &str,
) -> Result<Verification, FlowError> {
    let client = ClientAuth {
        client_id: &connector.client_id,
        credential: &connector.credential,
    };
    let (verification, outcome) = match state.entra.app_only_token_issued(tenant_id, &client).await {
        Ok(()) => (Verification::Verified, ConsentVerification::Verified),
        Err(TokenError::Rejected(err)) => {
            let c = classify(&err);
            let (trace_id, correlation_id) = (
                c.trace_id.as_deref().unwrap_or(""),
                c.correlation_id.as_deref().unwrap_or(""),
            );
            if c.aadsts.iter().any(|code| NO_SERVICE_PRINCIPAL.contains(code)) {
                tracing::warn!(
                    connector = %connector.id,
                    tenant = %tenant_id,
                    aadsts = ?c.aadsts,
                    trace_id,
                    correlation_id,
                    "admin consent not confirmed: the app has no service principal in the tenant; nothing recorded"
                );
                (
                    Verification::Unconfirmed(Unconfirmed::NoServicePrincipal),
                    ConsentVerification::NotConfirmed,
                )
            } else {
                tracing::warn!(
                    connector = %connector.id,
                    tenant = %tenant_id,
                    category = %c.category,
                    aadsts = ?c.aadsts,
                    trace_id,
                    correlation_id,
                    "admin consent could not be verified: Entra refused the app-only token request"
                );
                if c.category == Category::ClientCredentialInvalid {
                    state.metrics.credential_error(&connector.id, c.primary_code());
                }
                (Verification::Failed(Box::new(c)), ConsentVerification::Failed)
            }
        }
        Err(e @ TokenError::Unavailable { .. }) => {
            let (trace_id, correlation_id) = e.entra_ids();
            tracing::warn!(
                connector = %connector.id,
                tenant = %tenant_id,
                error = %e,
                trace_id,
                correlation_id,
                "admin consent could not be verified: Entra unavailable; nothing recorded"
            );
            let retry_after = e.retry_after().unwrap_or(state.config.entra.default_retry_after);
            (
                Verification::Unconfirmed(Unconfirmed::EntraUnavailable { retry_after }),
                ConsentVerification::Unavailable,
            )
        }
        Err(e @ TokenError::Credential(_)) => {
            tracing::error!(connector = %connector.id, error = %e, "admin consent verification not attempted");
            (
                Verification::Failed(Box::new(Classification::local_credential_failure())),
                ConsentVerification::Failed,
            )
        }
        Err(TokenError::Protocol(m)) => {
            state
                .metrics
                .admin_consent_verified(&connector.id, ConsentVerification::Failed);
            return Err(FlowError::EntraProtocol(m));
        }
    };
    state.metrics.admin_consent_verified(&connector.id, outcome);
    Ok(verification)
}

/// `GET /v1/admin-consent/callback`.
pub async fn admin_consent_callback(state: &AppState, raw_query: &str) -> Result<ConsentOutcome, FlowError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw_query).map_err(|_| FlowError::InvalidParameter {
            field: "query",
            message: "is not a valid query string",
        })?;
    let get = |name: &str| -> Result<Option<&str>, FlowError> {
        let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(FlowError::InvalidParameter {
                field: "query",
                message: "repeats a parameter",
            });
        }
        if first.is_some_and(|v| v.len() > 8_192) {
            return Err(FlowError::InvalidParameter {
                field: "query",
                message: "has a parameter that is too long",
            });
        }
        Ok(first)
    };
    let state_value = get("state")?
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .ok_or(FlowError::InvalidState)?;
    let pending = state
        .records
        .take_admin_consent(state_value)
        .await?
        .ok_or(FlowError::InvalidState)?;
    let connector = pending.connector.clone();

    if let Some(error) = get("error")? {
        let err = EntraError {
            error: Some(error.to_string()),
            error_description: get("error_description")?.map(str::to_string),
            error_subcode: get("error_subcode")?.map(str::to_string),
            ..Default::default()
        };
        let c = classify(&err);
        tracing::warn!(
            connector = %connector,
            category = %c.category,
            aadsts = ?c.aadsts,
            trace_id = c.trace_id.as_deref().unwrap_or(""),
            correlation_id = c.correlation_id.as_deref().unwrap_or(""),
            "admin consent not granted"
        );
        let cancelled =
            err.error_subcode.as_deref() == Some("cancel") || c.primary_code() == Some(aadsts::CONSENT_DECLINED);
        return Ok(if cancelled {
            ConsentOutcome::Cancelled { connector }
        } else if matches!(c.category, Category::AdminApprovalRequired | Category::NotAssigned)
            || c.primary_code()
                .is_some_and(|code| aadsts::NOT_AN_APPROVER.contains(&code))
        {
            ConsentOutcome::NotAdmin { connector }
        } else {
            ConsentOutcome::Failed {
                connector,
                classification: Box::new(c),
            }
        });
    }
    if !get("admin_consent")?.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(FlowError::InvalidParameter {
            field: "admin_consent",
            message: "is missing",
        });
    }
    let tenant_id = get("tenant")?
        .filter(|t| uuid::Uuid::parse_str(t).is_ok())
        .ok_or(FlowError::InvalidParameter {
            field: "tenant",
            message: "must be the tenant GUID",
        })?
        .to_ascii_lowercase();
    // The `tenant` parameter is not authenticated (entra.md §3.1): accept only the tenant asked for.
    if pending.expected_tenant_id.as_ref().is_some_and(|t| *t != tenant_id) {
        tracing::warn!(connector = %connector, "admin consent came back for another tenant than requested");
        return Ok(ConsentOutcome::WrongTenant);
    }
    let scopes: Vec<String> = get("scope")?
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let config = state.connector(&connector).ok_or(FlowError::UnknownConnector)?;
    match verify_with_entra(state, config, &tenant_id).await? {
        Verification::Verified => {}
        Verification::Unconfirmed(reason) => {
            return Ok(ConsentOutcome::Unconfirmed {
                connector,
                tenant_id,
                flow_id: pending.flow_id,
                reason,
            });
        }
        Verification::Failed(classification) => {
            return Ok(ConsentOutcome::Failed {
                connector,
                classification,
            });
        }
    }
    state
        .records
        .put_tenant_approval(
            &connector,
            &TenantApproval {
                tenant_id: tenant_id.clone(),
                scopes,
                approved_at_ms: crate::clock::now_millis(),
            },
        )
        .await?;
    tracing::info!(connector = %connector, tenant = %tenant_id, "tenant approved the connector");
    state.pending_approvals.settled(&connector, &tenant_id);
    Ok(ConsentOutcome::Approved {
        connector,
        tenant_id,
        flow_id: pending.flow_id,
    })
}
