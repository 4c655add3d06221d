//! The admin-consent round trip: a single-use state, Entra's consent screen, and a callback
//! whose "approved" is believed only once Entra confirms it (see the module above).

use std::time::Duration;

use url::Url;

use super::ApprovalService;
use crate::config::ConnectorConfig;
use crate::crypto::random_token;
use crate::entra::client::ClientAuth;
use crate::entra::{Category, Classification, EntraError, TokenError, aadsts, classify};
use crate::flow::FlowError;
use crate::ids::{ConnectorId, FlowId, TenantId};
use crate::metrics::ConsentVerification;
use crate::store::records::{AdminConsentState, TenantApproval};

/// How an admin-consent round trip ended.
#[derive(Debug)]
pub enum ConsentOutcome {
    /// Recorded.
    Approved {
        /// Connector id.
        connector: ConnectorId,
        /// Tenant GUID.
        tenant_id: TenantId,
        /// The approval page that started it.
        flow_id: Option<FlowId>,
    },
    /// The admin cancelled.
    Cancelled {
        /// Connector id.
        connector: ConnectorId,
        /// The approval page that started it.
        flow_id: Option<FlowId>,
    },
    /// The account could not approve for the tenant.
    NotAdmin {
        /// Connector id.
        connector: ConnectorId,
        /// The approval page that started it.
        flow_id: Option<FlowId>,
    },
    /// Entra approved another tenant than the one asked for.
    WrongTenant {
        /// The approval page that started it.
        flow_id: Option<FlowId>,
    },
    /// The callback said "approved" but Entra did not confirm it; nothing was recorded.
    Unconfirmed {
        /// Connector id.
        connector: ConnectorId,
        /// Tenant GUID the callback named.
        tenant_id: TenantId,
        /// The approval page that started it.
        flow_id: Option<FlowId>,
        /// Why it is not confirmed.
        reason: Unconfirmed,
    },
    /// Something else went wrong.
    Failed {
        /// Connector id.
        connector: ConnectorId,
        /// Entra's error.
        classification: Box<Classification>,
        /// The approval page that started it.
        flow_id: Option<FlowId>,
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

impl ApprovalService {
    /// `GET /v1/admin-consent/start`: a fresh single-use state and the Entra admin-consent URL.
    pub async fn admin_consent_start(
        &self,
        connector_id: &str,
        tenant: &str,
        flow_id: Option<&str>,
    ) -> Result<Url, FlowError> {
        let connector = self.connectors.get(connector_id).ok_or(FlowError::UnknownConnector)?;
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
        let expected_tenant_id = self.entra.resolve_tenant(&tenant).await;
        let state_value = random_token();
        self.records
            .put_admin_consent(
                &state_value,
                &AdminConsentState {
                    connector: connector.id.clone(),
                    tenant: tenant.clone(),
                    expected_tenant_id,
                    flow_id: flow_id.map(FlowId::new),
                },
                self.settings.state_ttl,
            )
            .await?;
        self.entra
            .admin_consent_url(
                &tenant,
                &connector.client_id,
                &connector.scopes,
                &self.public("/v1/admin-consent/callback"),
                &state_value,
            )
            .map_err(FlowError::EntraProtocol)
    }

    /// Asks Entra whether the app now has a service principal in `tenant_id`, authenticating exactly
    /// as the code redemption does (secret or certificate), through the same retries and breaker.
    async fn verify_with_entra(
        &self,
        connector: &ConnectorConfig,
        tenant_id: &TenantId,
    ) -> Result<Verification, FlowError> {
        let client = ClientAuth {
            client_id: &connector.client_id,
            credential: &connector.credential,
        };
        let (verification, outcome) = match self.entra.app_only_token_issued(tenant_id, &client).await {
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
                        self.metrics.credential_error(connector.id.as_str(), c.primary_code());
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
                let retry_after = e.retry_after().unwrap_or(self.settings.default_retry_after);
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
                self.metrics
                    .admin_consent_verified(connector.id.as_str(), ConsentVerification::Failed);
                return Err(FlowError::EntraProtocol(m));
            }
        };
        self.metrics.admin_consent_verified(connector.id.as_str(), outcome);
        Ok(verification)
    }

    /// `GET /v1/admin-consent/callback`.
    pub async fn admin_consent_callback(&self, raw_query: &str) -> Result<ConsentOutcome, FlowError> {
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
        let pending = self
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
                ConsentOutcome::Cancelled {
                    connector,
                    flow_id: pending.flow_id,
                }
            } else if matches!(c.category, Category::AdminApprovalRequired | Category::NotAssigned)
                || c.primary_code()
                    .is_some_and(|code| aadsts::NOT_AN_APPROVER.contains(&code))
            {
                ConsentOutcome::NotAdmin {
                    connector,
                    flow_id: pending.flow_id,
                }
            } else {
                ConsentOutcome::Failed {
                    connector,
                    classification: Box::new(c),
                    flow_id: pending.flow_id,
                }
            });
        }
        if !get("admin_consent")?.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(FlowError::InvalidParameter {
                field: "admin_consent",
                message: "is missing",
            });
        }
        let tenant_id = TenantId::new(
            get("tenant")?
                .filter(|t| uuid::Uuid::parse_str(t).is_ok())
                .ok_or(FlowError::InvalidParameter {
                    field: "tenant",
                    message: "must be the tenant GUID",
                })?
                .to_ascii_lowercase(),
        );
        // The `tenant` parameter is not authenticated (entra.md §3.1): accept only the tenant asked for.
        if pending.expected_tenant_id.as_ref().is_some_and(|t| *t != tenant_id) {
            tracing::warn!(connector = %connector, "admin consent came back for another tenant than requested");
            return Ok(ConsentOutcome::WrongTenant {
                flow_id: pending.flow_id,
            });
        }
        let scopes: Vec<String> = get("scope")?
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let config = self.connector(&connector).ok_or(FlowError::UnknownConnector)?;
        match self.verify_with_entra(config, &tenant_id).await? {
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
                    flow_id: pending.flow_id,
                });
            }
        }
        let event = self.outbox.approval_granted(&connector, &tenant_id, &scopes);
        self.records
            .put_tenant_approval_with(
                &connector,
                &TenantApproval {
                    tenant_id: tenant_id.clone(),
                    scopes,
                    approved_at_ms: self.now_ms(),
                },
                event.as_ref(),
            )
            .await?;
        tracing::info!(connector = %connector, tenant = %tenant_id, "tenant approved the connector");
        self.pending.settled(connector.as_str(), tenant_id.as_str());
        Ok(ConsentOutcome::Approved {
            connector,
            tenant_id,
            flow_id: pending.flow_id,
        })
    }
}
