//! Connect sessions, browser flows, handoff codes and reconnect links.

use std::time::Duration;

use super::keys::*;
use super::{Records, encode};
use crate::crypto::Sensitive;
use crate::entra::Category;
use crate::ids::{ConnectionId, ConnectorId, FlowId};
use crate::store::StoreError;

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
    pub connector: ConnectorId,
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
    pub category: Option<Category>,
    /// AADSTS code of the latest failed flow.
    pub aadsts: Option<u32>,
    /// Set once a flow completed.
    pub connection_id: Option<ConnectionId>,
    /// The approval page of the latest flow, when it needs the tenant's approval.
    #[serde(default)]
    pub approval_flow: Option<FlowId>,
}

/// Where a connect token points.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConnectTokenTarget {
    /// Owning connector.
    pub connector: ConnectorId,
    /// The session.
    pub session_id: String,
}

/// One browser sign-in attempt, stored under its `state` until the callback takes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Flow {
    /// `fl_...`
    pub id: FlowId,
    /// Connector running the flow.
    pub connector: ConnectorId,
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
    /// The approval page this sign-in was continued from: when it needs approval again, it ends
    /// on that page (same address, the one already sent to IT), not on a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_page: Option<FlowId>,
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
    pub connection_id: ConnectionId,
    /// The connector's state, echoed on redeem.
    pub state: Option<String>,
}

impl Records {
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
                &session_key(session.connector.as_str(), &session.id),
                encode(session),
                Some(ttl + retention),
            )
            .await?;
        self.store
            .put(&connect_token_key(connect_token), encode(&target), Some(ttl))
            .await?;
        Ok(())
    }

    /// Another connect token for an existing session (valid for `ttl`): the "try again" link of a
    /// failed sign-in's page, equivalent to the link the user followed.
    pub async fn add_connect_token(
        &self,
        session: &ConnectSession,
        connect_token: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let target = ConnectTokenTarget {
            connector: session.connector.clone(),
            session_id: session.id.clone(),
        };
        self.store
            .put(&connect_token_key(connect_token), encode(&target), Some(ttl))
            .await?;
        Ok(())
    }

    /// A connector's session.
    pub async fn session(&self, connector: &ConnectorId, id: &str) -> Result<Option<ConnectSession>, StoreError> {
        Ok(self.get(&session_key(connector.as_str(), id)).await?.map(|(s, _)| s))
    }

    /// Rewrites a session, keeping its expiry (plus `retention`).
    pub async fn save_session(&self, session: &ConnectSession, retention: Duration) -> Result<(), StoreError> {
        let remaining = session.expires_at + retention.as_secs() as i64 - crate::clock::now_unix();
        if remaining <= 0 {
            return Ok(());
        }
        self.store
            .put(
                &session_key(session.connector.as_str(), &session.id),
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
            return Err(StoreError::backend("state collision"));
        }
        Ok(())
    }

    /// The reconnect link last handed out for a connection, if any is still stored.
    pub async fn reconnect_link(&self, connection_id: &ConnectionId) -> Result<Option<ReconnectLink>, StoreError> {
        Ok(self.get(&reconnect_key(connection_id.as_str())).await?.map(|(r, _)| r))
    }

    /// Stores a connection's reconnect link until its session's link expires.
    pub async fn put_reconnect_link(
        &self,
        connection_id: &ConnectionId,
        link: &ReconnectLink,
    ) -> Result<(), StoreError> {
        let left = link.expires_at - crate::clock::now_unix();
        if left <= 0 {
            return Ok(());
        }
        self.store
            .put(
                &reconnect_key(connection_id.as_str()),
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
        connector: &ConnectorId,
        code: &str,
        handoff: &Handoff,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.store
            .put(&handoff_key(connector.as_str(), code), encode(handoff), Some(ttl))
            .await?;
        Ok(())
    }

    /// Takes a connector's handoff code: a code works once, and only for its connector.
    pub async fn take_handoff(&self, connector: &ConnectorId, code: &str) -> Result<Option<Handoff>, StoreError> {
        self.take(&handoff_key(connector.as_str(), code)).await
    }
}
