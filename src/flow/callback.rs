//! Entra's callback: the browser check, the state taken once, the code exchange and id_token
//! checks, the connection stored, and the outcome recorded on the session and in the metrics.

use std::sync::Arc;

use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;
use url::Url;

use super::binding::{Binding, same_browser};
use super::session::SESSION_RETENTION;
use super::{FlowError, FlowService, return_url};
use crate::config::ConnectorConfig;
use crate::crypto::Sensitive;
use crate::entra::{Classification, EntraError, classify};
use crate::ids::ConnectionId;
use crate::store::records::{Flow, SessionStatus};

/// Parameters Entra sends to the callback (unknown ones are ignored).
#[derive(Debug, Default)]
pub struct CallbackParams {
    /// `state`.
    pub state: Option<String>,
    /// `code`.
    pub code: Option<String>,
    /// The error fields, when Entra sent `error`.
    pub error: Option<EntraError>,
}

impl CallbackParams {
    /// Parses a raw query string; duplicate security parameters are refused.
    pub fn parse(raw: &str) -> Result<Self, FlowError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw).map_err(|_| FlowError::InvalidParameter {
                field: "query",
                message: "is not a valid query string",
            })?;
        let mut out = Self::default();
        let mut err = EntraError::default();
        for (k, v) in pairs {
            let (slot, max): (&mut Option<String>, usize) = match k.as_str() {
                "state" => (&mut out.state, 512),
                "code" => (&mut out.code, 16_384),
                "error" => (&mut err.error, 256),
                "error_description" => (&mut err.error_description, 8_192),
                "error_subcode" => (&mut err.error_subcode, 256),
                "suberror" => (&mut err.suberror, 256),
                "trace_id" => (&mut err.trace_id, 64),
                "correlation_id" => (&mut err.correlation_id, 64),
                _ => continue,
            };
            if slot.is_some() {
                return Err(FlowError::InvalidParameter {
                    field: "query",
                    message: "repeats a parameter",
                });
            }
            if v.len() > max {
                return Err(FlowError::InvalidParameter {
                    field: "query",
                    message: "has a parameter that is too long",
                });
            }
            *slot = Some(v);
        }
        if err.error.is_some() {
            out.error = Some(err);
        }
        Ok(out)
    }
}

/// What the callback ends in.
pub enum CallbackOutcome {
    /// Connected: redirect with a handoff code, or show it (out-of-band).
    Completed {
        /// `return_url?handoff=..&state=..`, or `None` for out-of-band.
        redirect: Option<Url>,
        /// The handoff code (shown on the out-of-band page).
        handoff_code: Sensitive,
        /// Connector display name.
        connector_name: String,
        /// Seconds the code stays valid.
        expires_in: u64,
        /// The account connected (its sign-in name, else its display name), for the page.
        account: Option<String>,
        /// The connection made or renewed.
        connection_id: ConnectionId,
    },
    /// Entra reported an error; the user sees who can fix it.
    Failed(FailedFlow),
}

/// A flow that Entra refused, with what the error page needs.
pub struct FailedFlow {
    /// The approval page, when the tenant must approve (the callback redirects there).
    pub approval_path: Option<String>,
    /// The connector's application (client) id, for instructions to admins.
    pub client_id: String,
    /// The classification.
    pub classification: Classification,
    /// Connector display name.
    pub connector_name: String,
    /// "Back to the connector" link, when the flow has a return URL.
    pub back_url: Option<Url>,
    /// A link that starts the sign-in again (a fresh connect link of its session), when a new
    /// attempt can succeed: the user may decline less, pick another account or pass the step.
    pub retry_url: Option<String>,
}

impl FlowService {
    /// Handles `GET /v1/callback` in `browser` (the binding cookie it carries, if any).
    pub async fn callback(
        self: &Arc<Self>,
        params: CallbackParams,
        browser: Option<&Binding>,
    ) -> Result<CallbackOutcome, FlowError> {
        let state_value = params
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or(FlowError::InvalidState)?;
        // Looked at before it is taken: a callback replayed in another browser must neither use the
        // code nor use up the state, so that the browser that started the sign-in still completes it.
        let started = self.records.flow(state_value).await?.ok_or(FlowError::InvalidState)?;
        if !same_browser(browser, &started.browser) {
            tracing::warn!(flow = %started.id, connector = %started.connector, "callback refused: not the browser that started the sign-in");
            return Err(FlowError::OtherBrowser);
        }
        let flow = self
            .records
            .take_flow(state_value)
            .await?
            .ok_or(FlowError::InvalidState)?;
        // On its own task: once Entra has issued tokens for the code they must be stored, even if
        // the browser leaves while Entra answers (the state and the code are spent either way).
        let finish = {
            let this = self.clone();
            self.background.spawn(
                async move {
                    let (error, code) = (params.error, params.code);
                    this.finish_callback(flow, error, code).await
                }
                .in_current_span()
                .with_current_subscriber(),
            )
        };
        finish.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the callback task failed");
            Err(FlowError::EntraProtocol("the sign-in could not be finished".into()))
        })
    }

    /// The callback once its flow is taken: redeem the code (or classify Entra's error), store the
    /// connection, record the outcome.
    async fn finish_callback(
        &self,
        flow: Flow,
        error: Option<EntraError>,
        code: Option<String>,
    ) -> Result<CallbackOutcome, FlowError> {
        let connector = self.connector(&flow.connector).ok_or(FlowError::InvalidState)?.clone();
        let mut result = match (error, code) {
            (Some(err), _) => Ok(fail(&flow, &connector, classify(&err))),
            (None, Some(code)) if !code.is_empty() => self.complete(&flow, &connector, &code).await,
            _ => Err(FlowError::InvalidParameter {
                field: "code",
                message: "is missing",
            }),
        };
        if let Ok(CallbackOutcome::Failed(failed)) = &mut result
            && crate::approval::needs_approval_page(failed.classification.category)
        {
            let recorder = crate::approval::Recorder {
                records: &self.records,
                entra: self.entra.as_ref(),
                pending: &self.pending_approvals,
                outbox: &self.outbox,
            };
            let page = crate::approval::page_id(&flow);
            let id = recorder
                .record(
                    &self.settings.public(&crate::approval::page_path(page)),
                    self.clock.now_millis(),
                    &flow,
                    &failed.classification,
                )
                .await?;
            failed.approval_path = Some(crate::approval::page_path(&id));
        }
        self.record_outcome(&flow, &result).await;
        self.count_outcome(&flow, &result);
        if let Ok(CallbackOutcome::Failed(failed)) = &mut result
            && failed.approval_path.is_none()
            && retry_can_help(failed.classification.category)
        {
            failed.retry_url = self.retry_link(&flow).await;
        }
        result
    }

    /// A fresh connect link of the flow's session (none without a session, or once it completed
    /// or expired). Best effort: the page without it still says what happened.
    async fn retry_link(&self, flow: &Flow) -> Option<String> {
        let id = flow.session_id.as_ref()?;
        let session = match self.records.session(&flow.connector, id).await {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "no retry link: the session could not be read");
                return None;
            }
        };
        let left = session.expires_at - self.now();
        if left <= 0 || session.status == SessionStatus::Completed {
            return None;
        }
        let token = crate::crypto::random_token();
        let ttl = std::time::Duration::from_secs(left as u64);
        match self.records.add_connect_token(&session, &token, ttl).await {
            Ok(()) => Some(self.settings.public(&format!("/v1/connect/{token}"))),
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "no retry link: the store did not take it");
                None
            }
        }
    }

    /// Counts the callback's end in the flow metrics (and Entra's error code, when it refused).
    fn count_outcome(&self, flow: &Flow, result: &Result<CallbackOutcome, FlowError>) {
        let m = &self.metrics;
        match result {
            Ok(CallbackOutcome::Completed { .. }) => m.flow_completed(flow.connector.as_str()),
            Ok(CallbackOutcome::Failed(f)) => {
                let c = &f.classification;
                m.flow_failed(flow.connector.as_str(), c.category.as_str());
                m.entra_error(c.primary_code());
            }
            Err(e) => m.flow_failed(flow.connector.as_str(), e.category().as_str()),
        }
    }

    /// Writes the flow's outcome onto its connect session (best effort: the user's page matters more).
    async fn record_outcome(&self, flow: &Flow, result: &Result<CallbackOutcome, FlowError>) {
        let Some(session_id) = &flow.session_id else { return };
        let mut session = match self.records.session(&flow.connector, session_id).await {
            Ok(Some(session)) => session,
            Ok(None) => return,
            // Unreadable is not absent: say so, and leave the session as it is.
            Err(e) => {
                tracing::warn!(session = %session_id, error = %e, "could not read the flow's session to record its outcome");
                return;
            }
        };
        match result {
            Ok(CallbackOutcome::Completed { connection_id, .. }) => {
                session.status = SessionStatus::Completed;
                session.category = None;
                session.aadsts = None;
                session.approval_flow = None;
                session.connection_id = Some(connection_id.clone());
            }
            Ok(CallbackOutcome::Failed(f)) => {
                let c = &f.classification;
                // The same categories that get an approval page: the session's `approval_url`
                // points at it.
                session.status = if crate::approval::needs_approval_page(c.category) {
                    SessionStatus::ApprovalRequired
                } else {
                    SessionStatus::Failed
                };
                session.category = Some(c.category);
                session.aadsts = c.primary_code();
                session.approval_flow = f.approval_path.as_ref().map(|_| crate::approval::page_id(flow).clone());
            }
            Err(e) => {
                session.status = SessionStatus::Failed;
                session.category = Some(e.category());
                session.aadsts = None;
            }
        }
        if let Err(e) = self.records.save_session(&session, SESSION_RETENTION).await {
            tracing::warn!(session = %session.id, error = %e, "could not record the flow's outcome on its session");
        }
    }
}

/// The outcome of a flow Entra refused, with the back link carrying the category and code.
/// Whether signing in again can end differently without anyone changing a setting: the user may
/// accept this time, use another account, complete the extra step, or Entra may have recovered.
pub fn retry_can_help(category: crate::entra::Category) -> bool {
    use crate::entra::Category::*;
    match category {
        UserDeclined | NotAssigned | ConditionalAccess | InteractionRequired | ReauthRequired | Transient | Unknown => {
            true
        }
        AdminApprovalRequired
        | ConsentRequired
        | AppMisconfigured
        | TenantMisconfigured
        | ClientCredentialInvalid
        | InvalidRequest => false,
    }
}

pub(super) fn fail(flow: &Flow, connector: &ConnectorConfig, c: Classification) -> CallbackOutcome {
    tracing::warn!(
        flow = %flow.id,
        connector = %flow.connector,
        category = %c.category,
        aadsts = ?c.aadsts,
        trace_id = c.trace_id.as_deref().unwrap_or(""),
        correlation_id = c.correlation_id.as_deref().unwrap_or(""),
        "sign-in failed at Entra"
    );
    let back_url = flow.return_url.as_deref().and_then(|u| Url::parse(u).ok()).map(|u| {
        let code = c.primary_code().map(|n| n.to_string()).unwrap_or_default();
        let mut params = vec![("error", c.category.as_str()), ("aadsts", code.as_str())];
        if let Some(s) = &flow.connector_state {
            params.push(("state", s));
        }
        return_url::with_params(&u, &params)
    });
    CallbackOutcome::Failed(FailedFlow {
        approval_path: None,
        retry_url: None,
        client_id: connector.client_id.clone(),
        classification: c,
        connector_name: connector.display_name.clone(),
        back_url,
    })
}
