//! Every JSON body of the broker's external contract, as types: the answers of the connector API,
//! its error answers, the approval page's status and the request bodies. The handlers build these
//! and nothing else, so a field can only be renamed or dropped here, where the OpenAPI document
//! (docs/openapi.yaml, derived from these types) shows the change too.
//!
//! An `Option` field is sent as `null`, never left out, so its schema says `required` (always
//! present, possibly null): clients may index it without checking for the key first.
//!
//! The two request types the flow itself consumes live in `flow` and are re-exported here, so
//! that this module is the whole contract in one place.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use crate::entra::aadsts::WhoFixes;
pub use crate::entra::errors::Category;
pub use crate::flow::{AuthorizeQuery, SessionRequest};

use crate::clock::rfc3339;
use crate::entra::explain::Explanation;
use crate::ids::{ConnectionId, ConnectorId, TenantId};
use crate::store::records::{
    ConnectSession, Connection, ConnectionStatus, ConnectionUser, ReauthReason, SessionStatus,
};

/// The `error` of every JSON error answer: one stable snake_case code per kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No API key, or not one the broker knows (401).
    Unauthorized,
    /// No such resource, or another connector's (404, so that ids do not leak).
    NotFound,
    /// The request body exceeds the broker's limit (413).
    BodyTooLarge,
    /// The body is not the JSON the endpoint takes (400).
    InvalidBody,
    /// The query string has an unknown or malformed parameter (400).
    InvalidQuery,
    /// A path segment could not be read (400).
    InvalidPath,
    /// A field is empty, too long or out of range (400).
    InvalidParameter,
    /// `return_url` matches none of the connector's registered return URLs (400).
    ReturnUrlNotAllowed,
    /// The handoff code is unknown, expired or already used (400).
    InvalidHandoffCode,
    /// The `explain` text is over 64 KiB (400).
    TextTooLarge,
    /// The connection can no longer be refreshed; the user must sign in again (409).
    ReauthRequired,
    /// Over a rate limit; see `Retry-After` (429).
    RateLimited,
    /// The token store does not answer (503).
    StoreUnavailable,
    /// Entra is unavailable or throttling and the cached token has expired (503).
    EntraUnavailable,
    /// Another broker instance is refreshing this connection right now (503).
    RefreshInProgress,
    /// The broker could not complete the request for another internal reason (503).
    Unavailable,
    /// The request took longer than the broker's request timeout (503).
    Timeout,
    /// Entra refused a refresh for a reason the user cannot fix (502).
    EntraRefused,
    /// The listing cursor is malformed or was issued to another connector (400).
    InvalidCursor,
}

/// Error answer with a code and human text (401, 404, 400, 413).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs.
    pub error: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

/// Error answer of a 429 or 503: the same seconds as the `Retry-After` header, in the body too.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryableErrorBody {
    /// `rate_limited`, `store_unavailable`, `entra_unavailable`, `refresh_in_progress`,
    /// `unavailable` or `timeout`.
    pub error: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Seconds to wait before retrying.
    pub retry_after: u64,
}

/// 409 answer of the token call when the grant is gone: why, and the link that fixes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReauthRequiredBody {
    /// Always `reauth_required`.
    pub error: ErrorCode,
    /// The classified reason the grant is gone.
    pub category: Category,
    /// Entra's AADSTS code, when Entra gave one.
    #[schema(required = true)]
    pub aadsts: Option<u32>,
    /// What happened, for people.
    pub message: String,
    /// Broker URL that starts a new sign-in for the same user and return URL.
    pub reconnect_url: String,
}

/// 502 answer of the token call when Entra refused for a reason no new sign-in fixes.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntraRefusedBody {
    /// Always `entra_refused`.
    pub error: ErrorCode,
    /// The classified refusal (typically the broker's own credential: the operator fixes it).
    pub category: Category,
    /// Entra's AADSTS code, when Entra gave one.
    #[schema(required = true)]
    pub aadsts: Option<u32>,
    /// What happened, for people.
    pub message: String,
}

/// 201 answer of `POST /v1/connect-sessions`: where to send the user's browser, and until when.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCreated {
    /// The session's id, for `GET /v1/connect-sessions/{session_id}`.
    pub session_id: String,
    /// Absolute broker URL that starts the sign-in (`GET /v1/connect/{token}`).
    pub connect_url: String,
    /// When the session and its connect link expire (RFC 3339).
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// Where a connect session's latest sign-in stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// No sign-in has finished yet.
    Pending,
    /// A sign-in made a connection (`connection_id` is set).
    Completed,
    /// The tenant must approve the connector first (`approval_url` is set).
    ApprovalRequired,
    /// The latest sign-in failed (`category`, `aadsts`).
    Failed,
    /// The session expired before a sign-in completed.
    Expired,
}

impl SessionState {
    /// The state a polling backend sees: a completed session stays completed, anything else
    /// turns `expired` once the session's time is up.
    pub fn of(session: &ConnectSession, now: i64) -> Self {
        match session.status {
            SessionStatus::Completed => Self::Completed,
            _ if session.expires_at <= now => Self::Expired,
            SessionStatus::Pending => Self::Pending,
            SessionStatus::ApprovalRequired => Self::ApprovalRequired,
            SessionStatus::Failed => Self::Failed,
        }
    }
}

/// 200 answer of `GET /v1/connect-sessions/{session_id}`: the outcome of the session's latest flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOutcome {
    /// The session's id.
    pub session_id: String,
    /// Where the latest sign-in stands.
    pub status: SessionState,
    /// The category of the latest failure, else null.
    #[schema(required = true)]
    pub category: Option<Category>,
    /// The AADSTS code of the latest failure, else null.
    #[schema(required = true)]
    pub aadsts: Option<u32>,
    /// The approval page to show the user when the tenant must approve, else null.
    #[schema(required = true)]
    pub approval_url: Option<String>,
    /// The connection, once (and only once) the session completed.
    #[schema(required = true)]
    pub connection_id: Option<ConnectionId>,
    /// When the session expires (RFC 3339).
    #[schema(format = DateTime)]
    pub expires_at: String,
}

/// The signed-in user of a connection, from the validated id_token.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserInfo {
    /// Entra object id, stable per tenant: the key to the user.
    pub oid: String,
    /// Display name.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Sign-in name (UPN or email-like); it can change, so for display only.
    #[schema(required = true)]
    pub preferred_username: Option<String>,
}

impl From<&ConnectionUser> for UserInfo {
    fn from(u: &ConnectionUser) -> Self {
        Self {
            oid: u.oid.clone(),
            name: u.name.clone(),
            preferred_username: u.preferred_username.clone(),
        }
    }
}

/// Body of `POST /v1/handoff/redeem`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RedeemRequest {
    /// The handoff code the browser brought back (`?handoff=`) or the user pasted.
    pub code: String,
}

/// 200 answer of `POST /v1/handoff/redeem`: the connection the finished sign-in made.
#[derive(Debug, Serialize, ToSchema)]
pub struct HandoffRedeemed {
    /// The connection's id, for the token and connection calls.
    pub connection_id: ConnectionId,
    /// The connector it belongs to (the caller).
    pub connector: ConnectorId,
    /// The user's tenant (GUID).
    pub tenant_id: TenantId,
    /// Who signed in.
    pub user: UserInfo,
    /// The delegated scopes Entra granted.
    pub scopes: Vec<String>,
    /// The `state` the connector passed when it started the flow, echoed back.
    #[schema(required = true)]
    pub state: Option<String>,
}

/// Whether a connection can still be refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Tokens are served and refreshed.
    Active,
    /// The grant is gone: the token call answers 409 until the user signs in again.
    ReauthRequired,
}

impl From<ConnectionStatus> for ConnectionState {
    fn from(s: ConnectionStatus) -> Self {
        match s {
            ConnectionStatus::Active => Self::Active,
            ConnectionStatus::ReauthRequired => Self::ReauthRequired,
        }
    }
}

/// Why a connection needs a new sign-in.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReauthInfo {
    /// The classified reason.
    pub category: Category,
    /// Entra's AADSTS code, when Entra gave one.
    #[schema(required = true)]
    pub aadsts: Option<u32>,
}

impl From<&ReauthReason> for ReauthInfo {
    fn from(r: &ReauthReason) -> Self {
        Self {
            category: r.category,
            aadsts: r.aadsts,
        }
    }
}

/// 200 answer of `GET /v1/connections/{connection_id}`: the connection's metadata, never a token.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionInfo {
    /// The connection's id.
    pub connection_id: ConnectionId,
    /// The connector it belongs to (the caller).
    pub connector: ConnectorId,
    /// The user's tenant (GUID).
    pub tenant_id: TenantId,
    /// Who signed in.
    pub user: UserInfo,
    /// The connector's own id for its user, from the connect session (null for `/v1/authorize`).
    #[schema(required = true)]
    pub end_user: Option<String>,
    /// The delegated scopes Entra granted.
    pub scopes: Vec<String>,
    /// When the connection was made (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its tokens were last refreshed or issued (RFC 3339).
    #[schema(format = DateTime)]
    pub refreshed_at: String,
    /// Whether it can still be refreshed.
    pub status: ConnectionState,
    /// Why it needs a new sign-in, when `status` is `reauth_required`; else null.
    #[schema(required = true)]
    pub reauth: Option<ReauthInfo>,
    /// Set while its refreshes fail for a reason that passes (Entra unavailable; it stays
    /// `active` and is served while its token is valid); null once it refreshes again. Recorded
    /// for connectors with webhooks, which hear `connection.recovered` when it ends.
    #[schema(required = true)]
    pub transient_failure: Option<TransientFailureInfo>,
}

/// Since when a connection's refreshes have been failing transiently.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransientFailureInfo {
    /// When the first failure in a row happened (RFC 3339).
    #[schema(format = DateTime)]
    pub since: String,
    /// Its category (`transient`).
    pub category: Category,
}

impl From<&Connection> for ConnectionInfo {
    fn from(c: &Connection) -> Self {
        Self {
            connection_id: c.id.clone(),
            connector: c.connector.clone(),
            tenant_id: c.tenant_id.clone(),
            user: (&c.user).into(),
            end_user: c.end_user.clone(),
            scopes: c.scopes.clone(),
            created_at: rfc3339(c.created_at),
            refreshed_at: rfc3339(c.refreshed_at),
            status: c.status.into(),
            reauth: c.reauth.as_ref().map(Into::into),
            transient_failure: c.failing.as_ref().map(|f| TransientFailureInfo {
                since: rfc3339(f.since),
                category: f.category,
            }),
        }
    }
}

/// Query of `GET /v1/connections/{connection_id}/token`; any other parameter is a 400.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// Refresh first when the cached access token would live fewer seconds than this
    /// (default 300, at most 86400).
    #[param(maximum = 86_400)]
    pub min_ttl: Option<u64>,
}

/// Query of `GET /v1/connections`: filters, page size and the cursor of the previous page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only connections in this state.
    pub status: Option<ConnectionState>,
    /// Only connections of this tenant (GUID).
    pub tenant_id: Option<String>,
    /// Only connections of this end user (the connector's own id for its user).
    pub end_user: Option<String>,
    /// Connections per page, 1-500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// 200 answer of `GET /v1/connections`: one page of the caller's connections, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    /// The page; may be shorter than `limit` (even empty) while `next_cursor` is not null, when
    /// filters matched few of the connections looked at.
    pub connections: Vec<ConnectionInfo>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/webhooks/dead-letters`; any other parameter is a 400.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Letters per page, 1-500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One endpoint's part of a dead letter.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadDelivery {
    /// The endpoint.
    pub url: String,
    /// `dead` (given up), `pending` or `delivered` (another endpoint of the same event).
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// What the last attempt met (`HTTP 503`, `no answer in time`, ...), never a body.
    #[schema(required = true)]
    pub last_error: Option<String>,
}

/// An event whose delivery was given up at one endpoint or more.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterInfo {
    /// The event's `webhook-id`: re-sending keeps it, so receivers can tell a repeat.
    pub event_id: String,
    /// Its type (`connection.created`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was raised (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// How each endpoint's delivery ended.
    pub deliveries: Vec<DeadDelivery>,
}

/// 200 answer of `GET /v1/webhooks/dead-letters`: the caller's dead letters, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterList {
    /// The page.
    pub dead_letters: Vec<DeadLetterInfo>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// 202 answer of `POST /v1/webhooks/dead-letters/{event_id}/retry`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterRetried {
    /// The event, queued again for the endpoints that had given up.
    pub event_id: String,
    /// Always `queued`.
    pub status: String,
}

/// The token type of every access token the broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum TokenType {
    /// Send it as `Authorization: Bearer <access_token>`.
    Bearer,
}

/// 200 answer of the token call: a delegated access token to call the resource with.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessTokenBody<'a> {
    /// The access token (borrowed, so the secret is not copied for the answer).
    pub access_token: &'a str,
    /// Always `Bearer`.
    pub token_type: TokenType,
    /// When the access token expires (RFC 3339).
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// Space-separated scopes the token carries.
    pub scope: &'a str,
    /// True when the token lives less than `min_ttl` because no fresher one could be had
    /// (the answer also carries a `Warning` header then).
    pub min_ttl_unmet: bool,
}

/// Body of `POST /v1/explain`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// Whatever the user pasted: page text, a log line, an exception, a token body, a URL
    /// (at most 64 KiB).
    pub text: String,
}

/// 200 answer of `POST /v1/explain` (and of `consent-broker explain --json`): what the error is,
/// who fixes it and how.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainResponse {
    /// The top-level answer to "who can fix this, and how"; `unknown` for text without an Entra error.
    pub category: Category,
    /// A finer reason, e.g. `mfa_required`, `wrong_account`, `secret_expired`, when known.
    #[schema(required = true)]
    pub reason: Option<&'static str>,
    /// The AADSTS codes found, most specific first (empty when none).
    pub aadsts: Vec<u32>,
    /// The OAuth `error` value, when present.
    #[schema(required = true)]
    pub oauth_error: Option<String>,
    /// The OAuth `suberror` value, when present.
    #[schema(required = true)]
    pub suberror: Option<String>,
    /// Entra's trace id, for the Entra sign-in logs.
    #[schema(required = true)]
    pub trace_id: Option<String>,
    /// Entra's correlation id, for the Entra sign-in logs.
    #[schema(required = true)]
    pub correlation_id: Option<String>,
    /// Who can fix it.
    pub who_fixes: WhoFixes,
    /// Plain words for the user.
    pub user_message: &'static str,
    /// Plain words for the administrator, with the fix.
    pub admin_message: &'static str,
}

impl From<Explanation> for ExplainResponse {
    fn from(e: Explanation) -> Self {
        let c = e.classification;
        Self {
            category: c.category,
            reason: c.reason,
            aadsts: c.aadsts,
            oauth_error: c.oauth_error,
            suberror: c.suberror,
            trace_id: c.trace_id,
            correlation_id: c.correlation_id,
            who_fixes: e.who_fixes,
            user_message: e.user_message,
            admin_message: e.admin_message,
        }
    }
}

/// Where an approval page's wait stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for an administrator of the tenant.
    Pending,
    /// The tenant approved the connector since the page was opened: "try again" now works.
    Approved,
    /// The page waited too long; a new sign-in starts over.
    Expired,
}

impl From<crate::approval::Status> for ApprovalState {
    fn from(s: crate::approval::Status) -> Self {
        match s {
            crate::approval::Status::Pending => Self::Pending,
            crate::approval::Status::Approved => Self::Approved,
            crate::approval::Status::Expired => Self::Expired,
        }
    }
}

/// 200 answer of `GET /v1/approval/{flow_id}/status`, polled by the open approval page.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalStatusBody {
    /// Where the wait stands.
    pub status: ApprovalState,
    /// The tenant waiting for approval (GUID), when Entra named it.
    #[schema(required = true)]
    pub tenant_id: Option<TenantId>,
    /// Broker URL that starts the sign-in again ("try again").
    pub retry_url: String,
}
