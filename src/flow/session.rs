//! Connect sessions: created by a connector backend, followed by a browser as a connect link, and
//! the reconnect link handed out when a connection needs a new sign-in.

use std::time::Duration;

use super::hints::{check_text, validate_hints};
use super::{FlowError, FlowService, return_url};
use crate::crypto::{Sensitive, random_id, random_token};
use crate::http::api_types::SessionState;
use crate::ids::ConnectorId;
use crate::store::records::{ConnectSession, Connection, ReconnectLink, SessionStatus};

/// How long a session record is kept after it stops being usable, so polls can say "expired".
pub(super) const SESSION_RETENTION: Duration = Duration::from_secs(24 * 3_600);
/// Links younger than this many seconds before expiry are not handed out again: the user needs
/// time to follow one.
const RECONNECT_MIN_LEFT: i64 = 300;

/// What a connector backend asks for in `POST /v1/connect-sessions` (its body; any other field
/// is a 400).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// Connector id; must be the connector whose API key makes the call.
    pub connector: String,
    /// The connector's opaque id for its user, kept with the connection.
    pub end_user: String,
    /// Where the browser returns with `?handoff=`; must match a registered return URL.
    /// Without it the sign-in ends on the broker's "copy this code" page.
    pub return_url: Option<String>,
    /// Opaque value echoed back on the return URL and by the handoff redemption.
    pub state: Option<String>,
    /// Tenant hint (GUID or domain), sent to Entra as `domain_hint`.
    pub tenant: Option<String>,
    /// The user's sign-in name, sent to Entra as `login_hint`.
    pub login_hint: Option<String>,
}

/// A created session: its record and the connect URL for the browser.
pub struct CreatedSession {
    /// The stored session.
    pub session: ConnectSession,
    /// Absolute URL that starts the flow.
    pub connect_url: String,
}

impl FlowService {
    /// Creates a connect session for a connector's user.
    pub async fn create_session(
        &self,
        caller: &ConnectorId,
        req: &SessionRequest,
    ) -> Result<CreatedSession, FlowError> {
        if req.connector != caller.as_str() {
            return Err(FlowError::UnknownConnector);
        }
        let connector = self.connector(caller).ok_or(FlowError::UnknownConnector)?;
        check_text("end_user", &req.end_user, 256)?;
        let hints = validate_hints(
            connector,
            req.return_url.as_deref(),
            req.state.as_deref(),
            req.tenant.as_deref(),
            req.login_hint.as_deref(),
        )?;
        let now = self.now();
        let ttl = self.settings.session_ttl;
        let session = ConnectSession {
            id: random_id("cs"),
            connector: connector.id.clone(),
            end_user: req.end_user.clone(),
            return_url: hints.return_url.map(|u| u.to_string()),
            state: hints.state,
            tenant: hints.tenant,
            login_hint: hints.login_hint,
            created_at: now,
            expires_at: now + ttl.as_secs() as i64,
            status: SessionStatus::Pending,
            category: None,
            aadsts: None,
            connection_id: None,
            approval_flow: None,
        };
        let token = random_token();
        self.records
            .create_session(&session, &token, ttl, SESSION_RETENTION)
            .await?;
        Ok(CreatedSession {
            connect_url: self.settings.public(&format!("/v1/connect/{token}")),
            session,
        })
    }

    /// The reconnect URL for a connection that needs a new sign-in: the one handed out before while
    /// its session is pending and has time left, else a new session's (so a backend polling the
    /// token endpoint does not fill the store with sessions).
    pub async fn reconnect_url(&self, caller: &ConnectorId, conn: &Connection) -> Result<String, FlowError> {
        let now = self.now();
        if let Some(link) = self.records.reconnect_link(&conn.id).await?
            && link.expires_at - now > RECONNECT_MIN_LEFT
            && self
                .records
                .session(caller, &link.session_id)
                .await?
                .is_some_and(|s| s.status != SessionStatus::Completed)
        {
            return Ok(link.connect_url.expose().to_string());
        }
        let connector = self.connector(caller).ok_or(FlowError::UnknownConnector)?;
        let created = self
            .create_session(
                caller,
                &SessionRequest {
                    connector: caller.to_string(),
                    end_user: conn.end_user.clone().unwrap_or_else(|| conn.user.oid.clone()),
                    // A return URL the operator has since unregistered falls back to out-of-band.
                    return_url: conn
                        .return_url
                        .clone()
                        .filter(|u| return_url::check(&connector.return_urls, u).is_some()),
                    state: None,
                    tenant: Some(conn.tenant_id.to_string()),
                    login_hint: conn
                        .user
                        .preferred_username
                        .clone()
                        .filter(|u| !u.contains(char::is_whitespace)),
                },
            )
            .await?;
        let link = ReconnectLink {
            session_id: created.session.id.clone(),
            connect_url: Sensitive::new(created.connect_url.clone()),
            expires_at: created.session.expires_at,
        };
        // Best effort: without it the next call makes another session, as before.
        if let Err(e) = self.records.put_reconnect_link(&conn.id, &link).await {
            tracing::warn!(connection = %conn.id, error = %e, "could not keep the reconnect link");
        }
        Ok(created.connect_url)
    }

    /// The contract's status of a session, including `expired`, by this service's clock.
    pub fn session_status(&self, session: &ConnectSession) -> SessionState {
        SessionState::of(session, self.now())
    }
}
