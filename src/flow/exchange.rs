//! The code exchange: Entra's tokens for the code, the id_token checked against the flow, the
//! connection stored (a returning user keeps its id), and its handoff code issued.

use url::Url;

use super::callback::{CallbackOutcome, fail};
use super::{FlowError, FlowService, return_url};
use crate::config::ConnectorConfig;
use crate::crypto::Sensitive;
use crate::entra::client::ClientAuth;
use crate::entra::id_token::{self, IdTokenError};
use crate::entra::{Category, Classification, TokenError, classify};
use crate::ids::ConnectionId;
use crate::store::records::{Connection, ConnectionStatus, ConnectionUser, Flow, TokenIdentity};

impl FlowService {
    /// Redeems the code, checks the id_token, stores the connection and issues its handoff code.
    pub(super) async fn complete(
        &self,
        flow: &Flow,
        connector: &ConnectorConfig,
        code: &str,
    ) -> Result<CallbackOutcome, FlowError> {
        // Consent covered every resource on /authorize; a token request names one (entra.md §2.1).
        let token_scopes = crate::scope::for_token_request(&flow.scopes);
        let tokens = match self
            .entra
            .exchange_code(
                &flow.tenant,
                &ClientAuth {
                    client_id: &connector.client_id,
                    credential: &connector.credential,
                },
                code,
                &self.settings.redirect_uri(),
                flow.pkce_verifier.expose(),
                &token_scopes,
            )
            .await
        {
            Ok(t) => t,
            Err(TokenError::Rejected(err)) => {
                let c = classify(&err);
                if c.category == Category::ClientCredentialInvalid {
                    self.metrics.credential_error(flow.connector.as_str(), c.primary_code());
                }
                return Ok(fail(flow, connector, c));
            }
            Err(e @ TokenError::Unavailable { .. }) => {
                let (trace_id, correlation_id) = e.entra_ids();
                tracing::warn!(flow = %flow.id, error = %e, trace_id, correlation_id, "code redemption failed: Entra unavailable");
                return Err(FlowError::EntraUnavailable {
                    retry_after: e.retry_after().unwrap_or(self.settings.default_retry_after),
                });
            }
            Err(TokenError::Protocol(m)) => return Err(FlowError::EntraProtocol(m)),
            Err(e @ TokenError::Credential(_)) => {
                tracing::error!(flow = %flow.id, connector = %flow.connector, error = %e, "code redemption not attempted");
                return Ok(fail(flow, connector, Classification::local_credential_failure()));
            }
        };
        let id_token = tokens
            .id_token
            .as_ref()
            .ok_or(IdTokenError::Malformed("Entra returned no id_token".into()))?;
        let tenant_guid = uuid::Uuid::parse_str(&flow.tenant)
            .is_ok()
            .then_some(flow.tenant.as_str());
        let claims = self
            .entra
            .validate_id_token(
                id_token.expose(),
                &id_token::Expected {
                    client_id: &connector.client_id,
                    nonce: flow.nonce.expose(),
                    tenant_guid,
                    leeway: self.settings.clock_skew,
                },
            )
            .await
            .inspect_err(
                |e| tracing::warn!(flow = %flow.id, connector = %flow.connector, error = %e, "id_token rejected"),
            )?;

        let now = self.now();
        let scopes: Vec<String> = tokens
            .scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or(token_scopes);
        let user = ConnectionUser {
            oid: claims.oid.clone(),
            name: claims.name.clone(),
            preferred_username: claims.preferred_username.clone(),
        };
        let end_user = match &flow.session_id {
            Some(id) => self.records.session(&flow.connector, id).await?.map(|s| s.end_user),
            None => None,
        };
        // A returning user keeps their connection id, so the connector's stored id stays valid.
        let existing = self
            .records
            .connection_for_user(&flow.connector, &claims.tid, &claims.oid)
            .await?;
        let connection = Connection {
            id: existing
                .as_ref()
                .map_or_else(ConnectionId::generate, |(c, _)| c.id.clone()),
            connector: flow.connector.clone(),
            end_user: end_user.or_else(|| existing.as_ref().and_then(|(c, _)| c.end_user.clone())),
            tenant_id: claims.tid.clone(),
            user,
            scopes,
            access_token: tokens.access_token,
            access_expires_at: now + tokens.expires_in.max(0),
            refresh_token: tokens.refresh_token,
            created_at: existing.as_ref().map_or(now, |(c, _)| c.created_at),
            refreshed_at: now,
            status: ConnectionStatus::Active,
            reauth: None,
            return_url: flow.return_url.clone(),
            token_identity: Some(TokenIdentity::new(&claims.tid, &connector.client_id, &connector.scopes)),
            failing: None,
        };
        let event = self
            .outbox
            .connection_created(&connection, flow.connector_state.as_deref());
        self.records.put_connection_with(&connection, event.as_ref()).await?;
        if existing.is_some() {
            // Any broker may still hold the token of the sign-in this one replaced.
            self.tokens.invalidate(&connection.id);
        }

        let ttl = self.settings.handoff_ttl;
        let handoff_code = self.issue_handoff(flow, &connection.id, ttl).await?;
        tracing::info!(flow = %flow.id, connector = %flow.connector, connection = %connection.id, tenant = %claims.tid, "flow completed");

        let redirect = flow.return_url.as_deref().and_then(|u| Url::parse(u).ok()).map(|u| {
            let mut params = vec![("handoff", handoff_code.as_str())];
            if let Some(s) = &flow.connector_state {
                params.push(("state", s));
            }
            return_url::with_params(&u, &params)
        });
        Ok(CallbackOutcome::Completed {
            redirect,
            handoff_code: Sensitive::new(handoff_code),
            connector_name: connector.display_name.clone(),
            expires_in: ttl.as_secs(),
            account: connection
                .user
                .preferred_username
                .clone()
                .or(connection.user.name.clone()),
            connection_id: connection.id,
        })
    }
}
