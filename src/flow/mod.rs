//! The sign-in flow: connect sessions, starting a flow, Entra's callback, and the handoff.
//!
//! `session` makes connect sessions and their links, `start` turns a link, an `/v1/authorize`
//! query or an approval page's "continue" into Entra's authorize URL, `callback` takes the state,
//! redeems the code and checks the id_token, and `handoff` hands the connection to the backend.

pub mod binding;
mod callback;
mod handoff;
mod hints;
pub mod return_url;
mod session;
mod start;

use std::time::Duration;

use crate::entra::Category;
use crate::entra::id_token::IdTokenError;
use crate::store::StoreError;

pub use callback::{CallbackOutcome, CallbackParams, FailedFlow, callback};
pub use handoff::{Redeemed, redeem_handoff};
pub use session::{CreatedSession, SessionRequest, create_session, reconnect_url, session_status};
pub use start::{AuthorizeQuery, start_for_approval, start_from_authorize, start_from_connect_token};

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
            Self::EntraUnavailable { .. } => Category::Transient,
            _ => Category::InvalidRequest,
        }
    }
}
