//! The sign-in flow: connect sessions, starting a flow, Entra's callback, and the handoff.
//!
//! `session` makes connect sessions and their links, `start` turns a link, an `/v1/authorize`
//! query or an approval page's "continue" into Entra's authorize URL, `callback` checks the
//! browser and takes the state, `exchange` redeems the code and checks the id_token, and `handoff`
//! hands the connection to the backend.
//!
//! [`FlowService`] holds only what this needs (records, a [`SignInEndpoint`], the connectors, the
//! flow settings, the start limiter, a [`Clock`], metrics), so its paths are unit-tested against
//! the memory store, a scripted endpoint and a manual clock (`tests.rs`).

pub mod binding;
mod callback;
mod endpoint;
mod exchange;
mod handoff;
mod hints;
pub mod return_url;
mod session;
mod start;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::approval::PendingApprovals;
use crate::clock::Clock;
use crate::config::{Config, ConnectorConfig, Connectors};
use crate::entra::Category;
use crate::entra::id_token::IdTokenError;
use crate::ids::ConnectorId;
use crate::metrics::Metrics;
use crate::ratelimit::Limiters;
use crate::store::StoreError;
use crate::store::records::{Connection, Records};
use crate::tokens::TokenCache;
use crate::webhooks::{Outbox, ReconnectLinks};

pub use callback::{CallbackOutcome, CallbackParams, FailedFlow};
pub use endpoint::{EntraSignIn, SignInEndpoint};
pub use handoff::Redeemed;
pub use session::{CreatedSession, SessionRequest};
pub use start::AuthorizeQuery;

/// Why a flow step failed. Messages are safe to show: no codes or tokens.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The connector does not exist (or belongs to someone else).
    #[error("unknown connector")]
    UnknownConnector,
    /// `return_url` is not on the connector's allow-list.
    #[error("return_url is not registered for this connector")]
    ReturnUrlNotAllowed,
    /// A parameter is missing, too long or malformed.
    #[error("{field}: {message}")]
    InvalidParameter {
        /// The parameter.
        field: &'static str,
        /// What is wrong.
        message: &'static str,
    },
    /// The connect link is unknown or expired.
    #[error("this sign-in link is unknown or has expired")]
    UnknownSession,
    /// The connect link was already used to completion.
    #[error("this sign-in link was already used")]
    SessionCompleted,
    /// The callback's state is unknown, expired or already used.
    #[error("this sign-in attempt is unknown, expired or was already completed")]
    InvalidState,
    /// The sign-in was started in another browser (or the browser lost its binding cookie).
    #[error("this sign-in was started in another browser")]
    OtherBrowser,
    /// The id_token failed validation.
    #[error("the sign-in could not be verified: {0}")]
    IdToken(#[from] IdTokenError),
    /// Entra is unreachable or throttling.
    #[error("Microsoft's sign-in service is unavailable")]
    EntraUnavailable {
        /// When to retry.
        retry_after: Duration,
    },
    /// Entra answered something outside its protocol.
    #[error("unexpected answer from Microsoft's sign-in service")]
    EntraProtocol(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Too many sign-ins were started (towards this tenant, or from this address).
    #[error("too many sign-ins were started; try again shortly")]
    RateLimited {
        /// When to retry.
        retry_after: Duration,
    },
}

impl FlowError {
    /// The category a callback that ended in this error is recorded under, on its connect session
    /// and in the flow metrics (one mapping, so the two never disagree).
    pub fn category(&self) -> Category {
        match self {
            // Nothing the connector or the user did: trying again later can work, and
            // `invalid_request` would send the connector's developer looking for a bug.
            Self::EntraUnavailable { .. } | Self::EntraProtocol(_) | Self::Store(_) | Self::RateLimited { .. } => {
                Category::Transient
            }
            Self::UnknownConnector
            | Self::ReturnUrlNotAllowed
            | Self::InvalidParameter { .. }
            | Self::UnknownSession
            | Self::SessionCompleted
            | Self::InvalidState
            | Self::OtherBrowser
            | Self::IdToken(_) => Category::InvalidRequest,
        }
    }
}

/// The settings a flow reads from the config.
#[derive(Debug, Clone)]
pub struct FlowSettings {
    /// Where browsers reach the broker (`server.public_url`): connect links and the redirect URI.
    pub public_url: Url,
    /// Connect-session lifetime (`[flow] session_ttl_secs`).
    pub session_ttl: Duration,
    /// `state` lifetime: the sign-in must finish within it.
    pub state_ttl: Duration,
    /// Handoff-code lifetime.
    pub handoff_ttl: Duration,
    /// `Retry-After` when Entra sent none.
    pub default_retry_after: Duration,
    /// Clock skew allowed in id_token checks.
    pub clock_skew: Duration,
}

impl FlowSettings {
    /// The settings of a validated config.
    pub fn from_config(config: &Config) -> Self {
        Self {
            public_url: config.public_url.clone(),
            session_ttl: config.flow.session_ttl,
            state_ttl: config.flow.state_ttl,
            handoff_ttl: config.flow.handoff_ttl,
            default_retry_after: config.entra.default_retry_after,
            clock_skew: config.entra.clock_skew,
        }
    }

    /// `{public_url}{path}`.
    fn public(&self, path: &str) -> String {
        format!("{}{path}", self.public_url.as_str().trim_end_matches('/'))
    }

    /// The broker's OAuth redirect URI.
    fn redirect_uri(&self) -> String {
        self.public("/v1/callback")
    }
}

#[async_trait::async_trait]
impl ReconnectLinks for FlowService {
    async fn reconnect_url(&self, conn: &Connection) -> Option<String> {
        match FlowService::reconnect_url(self, &conn.connector, conn).await {
            Ok(url) => Some(url),
            Err(e) => {
                tracing::warn!(connection = %conn.id, error = %e, "no reconnect link for the event");
                None
            }
        }
    }
}

/// Runs sign-ins: connect sessions, starts, Entra's callback and the handoff.
pub struct FlowService {
    records: Records,
    entra: Arc<dyn SignInEndpoint>,
    connectors: Connectors,
    settings: FlowSettings,
    limits: Arc<Limiters>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    pending_approvals: Arc<PendingApprovals>,
    outbox: Arc<Outbox>,
    background: tokio_util::task::TaskTracker,
    tokens: Arc<TokenCache>,
}

/// What a [`FlowService`] is built from.
pub struct FlowServiceParts {
    /// Typed store access.
    pub records: Records,
    /// Entra (or a scripted endpoint in tests).
    pub entra: Arc<dyn SignInEndpoint>,
    /// Connectors by id.
    pub connectors: Connectors,
    /// Lifetimes, URLs and Entra defaults.
    pub settings: FlowSettings,
    /// The broker's limiters; a flow checks its start against them.
    pub limits: Arc<Limiters>,
    /// The time source for expiries.
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The approval pages waiting for an admin, counted when a sign-in ends on one.
    pub pending_approvals: Arc<PendingApprovals>,
    /// Where the events of sign-ins (`connection.created`, `approval.pending`) are raised.
    pub outbox: Arc<Outbox>,
    /// Where code exchanges run, so shutdown can wait for them.
    pub background: tokio_util::task::TaskTracker,
    /// The token cache, told when a returning user's sign-in replaces a connection's tokens.
    pub tokens: Arc<TokenCache>,
}

impl FlowService {
    /// Builds the service.
    pub fn new(parts: FlowServiceParts) -> Self {
        Self {
            records: parts.records,
            entra: parts.entra,
            connectors: parts.connectors,
            settings: parts.settings,
            limits: parts.limits,
            clock: parts.clock,
            metrics: parts.metrics,
            pending_approvals: parts.pending_approvals,
            outbox: parts.outbox,
            background: parts.background,
            tokens: parts.tokens,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    fn connector(&self, id: &ConnectorId) -> Option<&ConnectorConfig> {
        self.connectors.get(id)
    }
}
