//! Starting a flow: from a connect link, from `GET /v1/authorize`, or from an approval page's
//! "continue"; each stores the flow under a fresh state and returns Entra's authorize URL.

use std::net::IpAddr;

use oauth2::PkceCodeChallenge;
use url::Url;

use super::binding::Binding;
use super::hints::{Hints, validate_hints};
use super::{FlowError, FlowService, return_url};
use crate::config::ConnectorConfig;
use crate::crypto::{Sensitive, random_token};
use crate::entra::client::AuthorizeRequest;
use crate::ids::FlowId;
use crate::ratelimit::StartKey;
use crate::store::records::{Approval, Flow, SessionStatus};

/// Scopes the broker always adds: sign-in, profile claims, and a refresh token.
use crate::scope::SIGN_IN_OIDC as OIDC_SCOPES;

/// Query of `GET /v1/authorize`. Both required parameters are `Option`s so that a missing one is
/// the flow's own readable error page rather than the extractor's.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// Connector id.
    #[param(required = true)]
    pub connector: Option<String>,
    /// Where the browser returns; must match one of the connector's registered return URLs.
    #[param(required = true)]
    pub return_url: Option<String>,
    /// Opaque value echoed back on the return URL and by the handoff redemption.
    pub state: Option<String>,
    /// Tenant hint (GUID or domain), sent to Entra as `domain_hint`.
    pub tenant: Option<String>,
    /// The user's sign-in name, sent to Entra as `login_hint`.
    pub login_hint: Option<String>,
}

impl FlowService {
    /// Starts a flow from a connect token in `browser`; returns the Entra authorize URL.
    pub async fn start_from_connect_token(&self, token: &str, browser: &Binding) -> Result<Url, FlowError> {
        if token.is_empty() || token.len() > 128 {
            return Err(FlowError::UnknownSession);
        }
        let session = self
            .records
            .session_by_connect_token(token)
            .await?
            .filter(|s| s.expires_at > self.now())
            .ok_or(FlowError::UnknownSession)?;
        if session.status == SessionStatus::Completed {
            return Err(FlowError::SessionCompleted);
        }
        let connector = self.connector(&session.connector).ok_or(FlowError::UnknownSession)?;
        // The return URL was checked at creation; re-check in case the allow-list changed since.
        let return_url = match &session.return_url {
            Some(raw) => Some(return_url::check(&connector.return_urls, raw).ok_or(FlowError::ReturnUrlNotAllowed)?),
            None => None,
        };
        self.start(
            connector,
            Some(session.id.clone()),
            Hints {
                return_url,
                state: session.state.clone(),
                tenant: session.tenant.clone(),
                login_hint: session.login_hint.clone(),
                approval_page: None,
            },
            browser,
            None,
        )
        .await
    }

    /// Starts a new flow with an approval page's connector, user hint, tenant and return URL
    /// ("continue"): only in the browser whose flow ended on the page, only while the page and its
    /// connect session are alive. The page's id travels to IT in the admin link, so it must not be
    /// enough to continue the user's session.
    pub async fn start_for_approval(
        &self,
        approval: &Approval,
        browser: Option<&Binding>,
        client: Option<IpAddr>,
    ) -> Result<Url, FlowError> {
        let Some(browser) = browser.filter(|b| b.matches(&approval.browser)) else {
            tracing::warn!(flow = %approval.flow_id, connector = %approval.connector, "approval continue refused: not the browser that started the sign-in");
            return Err(FlowError::OtherBrowser);
        };
        let now = self.now();
        if approval.expires_at <= now {
            return Err(FlowError::UnknownSession);
        }
        let connector = self.connector(&approval.connector).ok_or(FlowError::UnknownConnector)?;
        if let Some(id) = &approval.session_id {
            let session = self
                .records
                .session(&approval.connector, id)
                .await?
                .filter(|s| s.expires_at > now)
                .ok_or(FlowError::UnknownSession)?;
            if session.status == SessionStatus::Completed {
                return Err(FlowError::SessionCompleted);
            }
        }
        let return_url = match &approval.return_url {
            Some(raw) => Some(return_url::check(&connector.return_urls, raw).ok_or(FlowError::ReturnUrlNotAllowed)?),
            None => None,
        };
        let tenant = approval
            .tenant_id
            .as_ref()
            .map_or_else(|| approval.tenant.clone(), ToString::to_string);
        self.start(
            connector,
            approval.session_id.clone(),
            Hints {
                return_url,
                state: approval.connector_state.clone(),
                tenant: Some(tenant),
                login_hint: approval.login_hint.clone(),
                approval_page: Some(approval.flow_id.clone()),
            },
            browser,
            // A page reached from /v1/authorize (no connect session) counts against the client,
            // like its first start: anyone can make such a page, and must not spend a tenant's budget.
            client,
        )
        .await
    }

    /// Starts a flow from `GET /v1/authorize` (no server call first) in `browser`, whose address
    /// (`client`) its start is counted against.
    pub async fn start_from_authorize(
        &self,
        q: &AuthorizeQuery,
        browser: &Binding,
        client: Option<IpAddr>,
    ) -> Result<Url, FlowError> {
        let id = q.connector.as_deref().ok_or(FlowError::InvalidParameter {
            field: "connector",
            message: "is required",
        })?;
        let connector = self.connectors.get(id).ok_or(FlowError::UnknownConnector)?;
        let return_url = q.return_url.as_deref().ok_or(FlowError::InvalidParameter {
            field: "return_url",
            message: "is required",
        })?;
        let hints = validate_hints(
            connector,
            Some(return_url),
            q.state.as_deref(),
            q.tenant.as_deref(),
            q.login_hint.as_deref(),
        )?;
        self.start(connector, None, hints, browser, client).await
    }

    async fn start(
        &self,
        connector: &ConnectorConfig,
        session_id: Option<String>,
        hints: Hints,
        browser: &Binding,
        client: Option<IpAddr>,
    ) -> Result<Url, FlowError> {
        let mut scopes: Vec<String> = connector.scopes.clone();
        for s in OIDC_SCOPES {
            if !scopes.iter().any(|x| x.eq_ignore_ascii_case(s)) {
                scopes.push(s.to_string());
            }
        }
        let tenant = hints.tenant.clone().unwrap_or_else(|| connector.tenant.clone());
        // Before anything is stored: a refused start costs nothing but the check.
        let named_tenant = hints.tenant.as_deref().or_else(|| {
            let t = connector.tenant.as_str();
            (!matches!(t, "organizations" | "common" | "consumers")).then_some(t)
        });
        self.limits
            .check_start(
                start_key(connector.id.as_str(), named_tenant, session_id.as_deref(), client),
                &self.metrics,
            )
            .map_err(|l| FlowError::RateLimited {
                retry_after: l.retry_after,
            })?;
        let domain_hint = hints
            .tenant
            .as_deref()
            .filter(|t| !matches!(*t, "organizations" | "common" | "consumers"));
        let state_value = random_token();
        let nonce = random_token();
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let redirect_uri = self.settings.redirect_uri();
        let url = self
            .entra
            .authorize_url(AuthorizeRequest {
                tenant: &tenant,
                client_id: &connector.client_id,
                redirect_uri: &redirect_uri,
                scopes: &scopes,
                state: &state_value,
                nonce: &nonce,
                pkce_challenge: challenge,
                login_hint: hints.login_hint.as_deref(),
                domain_hint,
                // A connect link may come from someone else (any connector backend can make one and
                // send it): the person who follows it must see which account gets connected, never
                // be signed in silently.
                prompt: session_id.is_some().then_some("select_account"),
            })
            .map_err(FlowError::EntraProtocol)?;
        let flow = Flow {
            id: FlowId::generate(),
            connector: connector.id.clone(),
            session_id,
            return_url: hints.return_url.map(|u| u.to_string()),
            connector_state: hints.state,
            tenant,
            login_hint: hints.login_hint,
            nonce: Sensitive::new(nonce),
            pkce_verifier: Sensitive::new(verifier.secret().clone()),
            scopes,
            created_at: self.now(),
            browser: browser.digest().to_string(),
            approval_page: hints.approval_page,
        };
        self.records
            .put_flow(&state_value, &flow, self.settings.state_ttl)
            .await?;
        tracing::info!(flow = %flow.id, connector = %flow.connector, "flow started");
        self.metrics.flow_started(flow.connector.as_str());
        Ok(url)
    }
}

/// What a start is counted against: an unauthenticated `/v1/authorize` start against its client
/// address (so one address cannot use up a tenant's budget), a start from a connect session
/// (created with an API key) against its connector and tenant, or against its session when it
/// names no tenant (never one `organizations` bucket shared by every hint-less sign-in).
fn start_key<'a>(
    connector: &'a str,
    tenant: Option<&'a str>,
    session_id: Option<&'a str>,
    client: Option<IpAddr>,
) -> StartKey<'a> {
    match (session_id, client, tenant) {
        (None, Some(ip), _) => StartKey::Client(ip),
        (_, _, Some(tenant)) => StartKey::Tenant { connector, tenant },
        (Some(session), _, None) => StartKey::Session(session),
        (None, None, None) => StartKey::Tenant {
            connector,
            tenant: "organizations",
        },
    }
}
