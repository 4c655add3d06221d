//! The sign-in flow: connect sessions, starting a flow, Entra's callback, and the handoff.

pub mod binding;
pub mod return_url;

use std::net::IpAddr;
use std::time::Duration;

use tracing::Instrument as _;

use oauth2::PkceCodeChallenge;
use url::Url;

use crate::app::AppState;
use crate::clock::now_unix;
use crate::config::{ConnectorConfig, is_tenant_segment};
use crate::crypto::{Sensitive, random_id, random_token};
use crate::entra::client::{AuthorizeRequest, ClientAuth};
use crate::entra::id_token::{self, IdTokenError};
use crate::entra::{Category, Classification, EntraError, TokenError, classify};
use crate::ratelimit::StartKey;
use crate::store::StoreError;
use crate::store::records::*;
use binding::{Binding, same_browser};

/// Scopes the broker always adds: sign-in, profile claims, and a refresh token.
const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "offline_access"];
/// How long a session record is kept after it stops being usable, so polls can say "expired".
const SESSION_RETENTION: Duration = Duration::from_secs(24 * 3_600);

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

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), FlowError> {
    if value.is_empty() {
        return Err(FlowError::InvalidParameter {
            field,
            message: "must not be empty",
        });
    }
    if value.len() > max {
        return Err(FlowError::InvalidParameter {
            field,
            message: "is too long",
        });
    }
    if value.chars().any(char::is_control) {
        return Err(FlowError::InvalidParameter {
            field,
            message: "must not contain control characters",
        });
    }
    Ok(())
}

/// Validated optional start parameters shared by both starts.
struct Hints {
    return_url: Option<Url>,
    state: Option<String>,
    tenant: Option<String>,
    login_hint: Option<String>,
}

fn validate_hints(
    connector: &ConnectorConfig,
    return_url: Option<&str>,
    state: Option<&str>,
    tenant: Option<&str>,
    login_hint: Option<&str>,
) -> Result<Hints, FlowError> {
    let return_url = match return_url {
        Some(raw) => {
            if Url::parse(raw).is_ok_and(|u| return_url::carries_reserved(&u)) {
                return Err(FlowError::InvalidParameter {
                    field: "return_url",
                    message: "must not carry handoff, state, error or aadsts in its query (the broker adds them)",
                });
            }
            Some(return_url::check(&connector.return_urls, raw).ok_or(FlowError::ReturnUrlNotAllowed)?)
        }
        None => None,
    };
    if let Some(s) = state {
        check_text("state", s, 512)?;
    }
    if let Some(t) = tenant
        && !is_tenant_segment(t)
    {
        return Err(FlowError::InvalidParameter {
            field: "tenant",
            message: "must be a tenant GUID or domain",
        });
    }
    if let Some(h) = login_hint {
        check_text("login_hint", h, 256)?;
        if h.contains(char::is_whitespace) {
            return Err(FlowError::InvalidParameter {
                field: "login_hint",
                message: "must be a single sign-in name",
            });
        }
    }
    Ok(Hints {
        return_url,
        state: state.map(str::to_string),
        tenant: tenant.map(str::to_ascii_lowercase),
        login_hint: login_hint.map(str::to_string),
    })
}

/// Creates a connect session for a connector's user.
pub async fn create_session(state: &AppState, caller: &str, req: &SessionRequest) -> Result<CreatedSession, FlowError> {
    if req.connector != caller {
        return Err(FlowError::UnknownConnector);
    }
    let connector = state.connector(caller).ok_or(FlowError::UnknownConnector)?;
    check_text("end_user", &req.end_user, 256)?;
    let hints = validate_hints(
        connector,
        req.return_url.as_deref(),
        req.state.as_deref(),
        req.tenant.as_deref(),
        req.login_hint.as_deref(),
    )?;
    let now = now_unix();
    let ttl = state.config.flow.session_ttl;
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
    state
        .records
        .create_session(&session, &token, ttl, SESSION_RETENTION)
        .await?;
    Ok(CreatedSession {
        connect_url: state.public(&format!("/v1/connect/{token}")),
        session,
    })
}

/// Links younger than this many seconds before expiry are not handed out again: the user needs
/// time to follow one.
const RECONNECT_MIN_LEFT: i64 = 300;

/// The reconnect URL for a connection that needs a new sign-in: the one handed out before while
/// its session is pending and has time left, else a new session's (so a backend polling the
/// token endpoint does not fill the store with sessions).
pub async fn reconnect_url(state: &AppState, caller: &str, conn: &Connection) -> Result<String, FlowError> {
    let now = now_unix();
    if let Some(link) = state.records.reconnect_link(&conn.id).await?
        && link.expires_at - now > RECONNECT_MIN_LEFT
        && state
            .records
            .session(caller, &link.session_id)
            .await?
            .is_some_and(|s| s.status != SessionStatus::Completed)
    {
        return Ok(link.connect_url.expose().to_string());
    }
    let connector = state.connector(caller).ok_or(FlowError::UnknownConnector)?;
    let created = create_session(
        state,
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
            tenant: Some(conn.tenant_id.clone()),
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
    if let Err(e) = state.records.put_reconnect_link(&conn.id, &link).await {
        tracing::warn!(connection = %conn.id, error = %e, "could not keep the reconnect link");
    }
    Ok(created.connect_url)
}

/// Starts a flow from a connect token in `browser`; returns the Entra authorize URL.
pub async fn start_from_connect_token(state: &AppState, token: &str, browser: &Binding) -> Result<Url, FlowError> {
    if token.is_empty() || token.len() > 128 {
        return Err(FlowError::UnknownSession);
    }
    let session = state
        .records
        .session_by_connect_token(token)
        .await?
        .filter(|s| s.expires_at > now_unix())
        .ok_or(FlowError::UnknownSession)?;
    if session.status == SessionStatus::Completed {
        return Err(FlowError::SessionCompleted);
    }
    let connector = state.connector(&session.connector).ok_or(FlowError::UnknownSession)?;
    // The return URL was checked at creation; re-check in case the allow-list changed since.
    let return_url = match &session.return_url {
        Some(raw) => Some(return_url::check(&connector.return_urls, raw).ok_or(FlowError::ReturnUrlNotAllowed)?),
        None => None,
    };
    start(
        state,
        connector,
        Some(session.id.clone()),
        Hints {
            return_url,
            state: session.state.clone(),
            tenant: session.tenant.clone(),
            login_hint: session.login_hint.clone(),
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
    state: &AppState,
    approval: &crate::store::records::Approval,
    browser: Option<&Binding>,
    client: Option<IpAddr>,
) -> Result<Url, FlowError> {
    let Some(browser) = browser.filter(|b| b.matches(&approval.browser)) else {
        tracing::warn!(flow = %approval.flow_id, connector = %approval.connector, "approval continue refused: not the browser that started the sign-in");
        return Err(FlowError::OtherBrowser);
    };
    let now = now_unix();
    if approval.expires_at <= now {
        return Err(FlowError::UnknownSession);
    }
    let connector = state
        .connector(&approval.connector)
        .ok_or(FlowError::UnknownConnector)?;
    if let Some(id) = &approval.session_id {
        let session = state
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
    let tenant = approval.tenant_id.clone().unwrap_or_else(|| approval.tenant.clone());
    start(
        state,
        connector,
        approval.session_id.clone(),
        Hints {
            return_url,
            state: approval.connector_state.clone(),
            tenant: Some(tenant),
            login_hint: approval.login_hint.clone(),
        },
        browser,
        // A page reached from /v1/authorize (no connect session) counts against the client,
        // like its first start: anyone can make such a page, and must not spend a tenant's budget.
        client,
    )
    .await
}

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

/// Starts a flow from `GET /v1/authorize` (no server call first) in `browser`, whose address
/// (`client`) its start is counted against.
pub async fn start_from_authorize(
    state: &AppState,
    q: &AuthorizeQuery,
    browser: &Binding,
    client: Option<IpAddr>,
) -> Result<Url, FlowError> {
    let id = q.connector.as_deref().ok_or(FlowError::InvalidParameter {
        field: "connector",
        message: "is required",
    })?;
    let connector = state.connector(id).ok_or(FlowError::UnknownConnector)?;
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
    start(state, connector, None, hints, browser, client).await
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

async fn start(
    state: &AppState,
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
    state
        .limits
        .check_start(
            start_key(&connector.id, named_tenant, session_id.as_deref(), client),
            &state.metrics,
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
    let redirect_uri = state.redirect_uri();
    let url = state
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
        id: random_id("fl"),
        connector: connector.id.clone(),
        session_id,
        return_url: hints.return_url.map(|u| u.to_string()),
        connector_state: hints.state,
        tenant,
        login_hint: hints.login_hint,
        nonce: Sensitive::new(nonce),
        pkce_verifier: Sensitive::new(verifier.secret().clone()),
        scopes,
        created_at: now_unix(),
        browser: browser.digest().to_string(),
    };
    state
        .records
        .put_flow(&state_value, &flow, state.config.flow.state_ttl)
        .await?;
    tracing::info!(flow = %flow.id, connector = %flow.connector, "flow started");
    state.metrics.flow_started(&flow.connector);
    Ok(url)
}

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
        /// The connection made or renewed.
        connection_id: String,
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
}

/// Handles `GET /v1/callback` in `browser` (the binding cookie it carries, if any).
pub async fn callback(
    state: &AppState,
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
    let started = state.records.flow(state_value).await?.ok_or(FlowError::InvalidState)?;
    if !same_browser(browser, &started.browser) {
        tracing::warn!(flow = %started.id, connector = %started.connector, "callback refused: not the browser that started the sign-in");
        return Err(FlowError::OtherBrowser);
    }
    let flow = state
        .records
        .take_flow(state_value)
        .await?
        .ok_or(FlowError::InvalidState)?;
    // On its own task: once Entra has issued tokens for the code they must be stored, even if
    // the browser leaves while Entra answers (the state and the code are spent either way).
    let finish = {
        let state = state.clone();
        state.background.clone().spawn(
            async move {
                let (error, code) = (params.error, params.code);
                finish_callback(&state, flow, error, code).await
            }
            .in_current_span(),
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
    state: &AppState,
    flow: Flow,
    error: Option<EntraError>,
    code: Option<String>,
) -> Result<CallbackOutcome, FlowError> {
    let connector = state.connector(&flow.connector).ok_or(FlowError::InvalidState)?.clone();
    let mut result = match (error, code) {
        (Some(err), _) => Ok(fail(&flow, &connector, classify(&err))),
        (None, Some(code)) if !code.is_empty() => complete(state, &flow, &connector, &code).await,
        _ => Err(FlowError::InvalidParameter {
            field: "code",
            message: "is missing",
        }),
    };
    if let Ok(CallbackOutcome::Failed(failed)) = &mut result
        && crate::approval::needs_approval_page(failed.classification.category)
    {
        let id = crate::approval::record(state, &flow, &failed.classification).await?;
        failed.approval_path = Some(crate::approval::page_path(&id));
    }
    record_outcome(state, &flow, &result).await;
    count_outcome(state, &flow, &result);
    result
}

/// Counts the callback's end in the flow metrics (and Entra's error code, when it refused).
fn count_outcome(state: &AppState, flow: &Flow, result: &Result<CallbackOutcome, FlowError>) {
    let m = &state.metrics;
    match result {
        Ok(CallbackOutcome::Completed { .. }) => m.flow_completed(&flow.connector),
        Ok(CallbackOutcome::Failed(f)) => {
            let c = &f.classification;
            m.flow_failed(&flow.connector, c.category.as_str());
            m.entra_error(c.primary_code());
        }
        // The same category the session records for it.
        Err(e) => {
            let category = match e {
                FlowError::EntraUnavailable { .. } => Category::Transient,
                _ => Category::InvalidRequest,
            };
            m.flow_failed(&flow.connector, category.as_str());
        }
    }
}

fn fail(flow: &Flow, connector: &ConnectorConfig, c: Classification) -> CallbackOutcome {
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
        client_id: connector.client_id.clone(),
        classification: c,
        connector_name: connector.display_name.clone(),
        back_url,
    })
}

async fn complete(
    state: &AppState,
    flow: &Flow,
    connector: &ConnectorConfig,
    code: &str,
) -> Result<CallbackOutcome, FlowError> {
    let tokens = match state
        .entra
        .exchange_code(
            &flow.tenant,
            &ClientAuth {
                client_id: &connector.client_id,
                credential: &connector.credential,
            },
            code,
            &state.redirect_uri(),
            flow.pkce_verifier.expose(),
            &flow.scopes,
        )
        .await
    {
        Ok(t) => t,
        Err(TokenError::Rejected(err)) => {
            let c = classify(&err);
            if c.category == Category::ClientCredentialInvalid {
                state.metrics.credential_error(&flow.connector, c.primary_code());
            }
            return Ok(fail(flow, connector, c));
        }
        Err(e @ TokenError::Unavailable { .. }) => {
            let (trace_id, correlation_id) = e.entra_ids();
            tracing::warn!(flow = %flow.id, error = %e, trace_id, correlation_id, "code redemption failed: Entra unavailable");
            return Err(FlowError::EntraUnavailable {
                retry_after: e.retry_after().unwrap_or(state.config.entra.default_retry_after),
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
    let claims = id_token::validate(
        &state.keys,
        id_token.expose(),
        &id_token::Expected {
            client_id: &connector.client_id,
            nonce: flow.nonce.expose(),
            tenant_guid,
            leeway: state.config.entra.clock_skew,
        },
    )
    .await
    .inspect_err(|e| tracing::warn!(flow = %flow.id, connector = %flow.connector, error = %e, "id_token rejected"))?;

    let now = now_unix();
    let scopes: Vec<String> = tokens
        .scope
        .as_deref()
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_else(|| flow.scopes.clone());
    let user = ConnectionUser {
        oid: claims.oid.clone(),
        name: claims.name.clone(),
        preferred_username: claims.preferred_username.clone(),
    };
    let end_user = match &flow.session_id {
        Some(id) => state.records.session(&flow.connector, id).await?.map(|s| s.end_user),
        None => None,
    };
    // A returning user keeps their connection id, so the connector's stored id stays valid.
    let existing = state
        .records
        .connection_for_user(&flow.connector, &claims.tid, &claims.oid)
        .await?;
    let connection = Connection {
        id: existing
            .as_ref()
            .map_or_else(|| random_id("conn"), |(c, _)| c.id.clone()),
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
    };
    state.records.put_connection(&connection).await?;

    let handoff_code = random_token();
    let ttl = state.config.flow.handoff_ttl;
    state
        .records
        .put_handoff(
            &flow.connector,
            &handoff_code,
            &Handoff {
                connection_id: connection.id.clone(),
                state: flow.connector_state.clone(),
            },
            ttl,
        )
        .await?;
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
        connection_id: connection.id,
    })
}

/// Writes the flow's outcome onto its connect session (best effort: the user's page matters more).
async fn record_outcome(state: &AppState, flow: &Flow, result: &Result<CallbackOutcome, FlowError>) {
    let Some(session_id) = &flow.session_id else { return };
    let mut session = match state.records.session(&flow.connector, session_id).await {
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
            session.status = match c.category {
                Category::AdminApprovalRequired | Category::ConsentRequired => SessionStatus::ApprovalRequired,
                _ => SessionStatus::Failed,
            };
            session.category = Some(c.category.as_str().to_string());
            session.aadsts = c.primary_code();
            session.approval_flow = f.approval_path.as_ref().map(|_| flow.id.clone());
        }
        Err(e) => {
            session.status = SessionStatus::Failed;
            session.category = Some(
                match e {
                    FlowError::EntraUnavailable { .. } => Category::Transient,
                    _ => Category::InvalidRequest,
                }
                .as_str()
                .to_string(),
            );
            session.aadsts = None;
        }
    }
    if let Err(e) = state.records.save_session(&session, SESSION_RETENTION).await {
        tracing::warn!(session = %session.id, error = %e, "could not record the flow's outcome on its session");
    }
}

/// What `POST /v1/handoff/redeem` returns.
pub struct Redeemed {
    /// The connection.
    pub connection: Connection,
    /// The connector's state.
    pub state: Option<String>,
}

/// Redeems a handoff code for the calling connector (single use).
pub async fn redeem_handoff(state: &AppState, caller: &str, code: &str) -> Result<Option<Redeemed>, FlowError> {
    if code.is_empty() || code.len() > 128 {
        return Ok(None);
    }
    let Some(handoff) = state.records.take_handoff(caller, code).await? else {
        return Ok(None);
    };
    match state.records.connection(&handoff.connection_id).await? {
        Some((connection, _)) if connection.connector == caller => Ok(Some(Redeemed {
            connection,
            state: handoff.state,
        })),
        _ => Ok(None),
    }
}
