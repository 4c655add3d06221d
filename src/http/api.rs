//! The connector backend API (server to server, `Authorization: Bearer <API key>`).

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::api_types::{
    AccessTokenBody, ConnectionInfo, ConnectionList, ConnectionState, EntraRefusedBody, ErrorBody, ErrorCode,
    ExplainRequest, ExplainResponse, HandoffRedeemed, ListQuery, ReauthRequiredBody, RedeemRequest, RetryableErrorBody,
    SessionCreated, SessionOutcome, SessionRequest, SessionState, TokenQuery, TokenType,
};
use super::error::ApiError;
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::crypto::ct_eq;
use crate::ids::{ConnectionId, ConnectorId};
use crate::store::records::Connection;
use crate::tokens::TokenServiceError;

/// The connector whose API key authenticated the request.
pub struct Caller(pub ConnectorId);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or(ApiError::Unauthorized)?;
        let id = state.api_keys.connector(key).ok_or(ApiError::Unauthorized)?;
        // After authentication, so nobody can spend a connector's budget without its key.
        state.limits.check_connector(id.as_str(), &state.metrics)?;
        Ok(Caller(id.clone()))
    }
}

/// `Json<T>` whose rejections are the API's JSON errors.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Path<T>` whose rejections are the API's JSON errors.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `Query<T>` whose rejections are the API's JSON errors.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Creates a connect session: a link that signs one of the connector's users in.
///
/// Send the user's browser to `connect_url`. With `return_url` the browser comes back there with
/// `?handoff=<code>&state=<state>`; without it the sign-in ends on the broker's "copy this code"
/// page and the backend polls the session.
#[utoipa::path(
    post,
    path = "/v1/connect-sessions",
    tag = "connect sessions",
    security(("api_key" = [])),
    request_body = SessionRequest,
    responses(
        (status = 201, description = "The session and the link to send the browser to.", body = SessionCreated),
        (status = 400, description = "`return_url_not_allowed`: `return_url` matches none of the connector's registered return URLs. `invalid_parameter`: a field is empty or too long, or `return_url` carries a parameter the broker adds. `invalid_body`: not the JSON above (unknown fields included).", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no API key, or an unknown one.", body = ErrorBody),
        (status = 404, description = "`not_found`: `connector` is not the caller's own.", body = ErrorBody),
        (status = 413, description = "`body_too_large`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the connector's request budget.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`store_unavailable` or `unavailable`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn create_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<Response, ApiError> {
    let created = state.flow.create_session(&caller, &req).await?;
    let body = SessionCreated {
        session_id: created.session.id,
        connect_url: created.connect_url,
        expires_at: rfc3339(created.session.expires_at),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The outcome of a session's latest sign-in, for backends that poll.
#[utoipa::path(
    get,
    path = "/v1/connect-sessions/{session_id}",
    tag = "connect sessions",
    security(("api_key" = [])),
    params(("session_id" = String, Path, description = "The `session_id` of `POST /v1/connect-sessions`.")),
    responses(
        (status = 200, description = "Where the session stands.", body = SessionOutcome),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such session, or another connector's.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`store_unavailable`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn get_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionOutcome>, ApiError> {
    let session = state.records.session(&caller, &id).await?.ok_or(ApiError::NotFound)?;
    let status = state.flow.session_status(&session);
    Ok(Json(SessionOutcome {
        approval_url: session
            .approval_flow
            .as_ref()
            .map(|id| state.public(&crate::approval::page_path(id))),
        connection_id: if status == SessionState::Completed {
            session.connection_id
        } else {
            None
        },
        expires_at: rfc3339(session.expires_at),
        session_id: session.id,
        status,
        category: session.category,
        aadsts: session.aadsts,
    }))
}

/// Redeems a handoff code (single use, at most 5 minutes old) for the connection it stands for.
#[utoipa::path(
    post,
    path = "/v1/handoff/redeem",
    tag = "connections",
    security(("api_key" = [])),
    request_body = RedeemRequest,
    responses(
        (status = 200, description = "The connection the sign-in made.", body = HandoffRedeemed),
        (status = 400, description = "`invalid_handoff_code`: unknown, expired, already used, or another connector's. `invalid_body`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 413, description = "`body_too_large`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`store_unavailable` or `unavailable`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn redeem(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> Result<Json<HandoffRedeemed>, ApiError> {
    let redeemed = state.flow.redeem_handoff(&caller, &req.code).await?.ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidHandoffCode,
            "the handoff code is unknown, expired or already used",
        )
    })?;
    let c = redeemed.connection;
    Ok(Json(HandoffRedeemed {
        user: (&c.user).into(),
        connection_id: c.id,
        connector: c.connector,
        tenant_id: c.tenant_id,
        scopes: c.scopes,
        state: redeemed.state,
    }))
}

async fn owned_connection(
    state: &AppState,
    caller: &ConnectorId,
    id: &ConnectionId,
) -> Result<(Connection, u64), ApiError> {
    match state.records.connection(id).await? {
        Some((c, v)) if c.connector == *caller => Ok((c, v)),
        _ => Err(ApiError::NotFound),
    }
}

/// Largest and default page of `GET /v1/connections`.
const LIST_MAX: usize = 500;
const LIST_DEFAULT: usize = 100;

/// The page size a listing asked for (`limit`), checked: 1-500, 100 when absent.
pub(super) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(LIST_DEFAULT);
    if !(1..=LIST_MAX).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidParameter,
            format!("limit must be between 1 and {LIST_MAX}"),
        ));
    }
    Ok(limit)
}

/// The cursor of a listing (connections, dead letters): the connector it was issued to and the
/// list member to continue after, base64url so that it is opaque and URL-safe. Naming the connector is what lets one
/// connector's cursor be refused to another (it could only ever page the caller's own list).
pub(super) fn encode_cursor(connector: &ConnectorId, member: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{connector}\n{member}"))
}

pub(super) fn decode_cursor(caller: &ConnectorId, cursor: &str) -> Result<String, ApiError> {
    use base64::Engine as _;
    let invalid = || {
        ApiError::bad_request(
            ErrorCode::InvalidCursor,
            "the cursor is malformed or not this connector's",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(raw).map_err(|_| invalid())?;
    let (connector, member) = text.split_once('\n').ok_or_else(invalid)?;
    let well_formed = member
        .split_once(':')
        .is_some_and(|(time, id)| time.len() == 19 && time.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty())
        && !member.chars().any(char::is_control);
    if !well_formed || !ct_eq(connector.as_bytes(), caller.as_str().as_bytes()) {
        return Err(invalid());
    }
    Ok(member.to_string())
}

/// The caller's connections, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/connections",
    tag = "connections",
    security(("api_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "One page of the caller's connections.", body = ConnectionList),
        (status = 400, description = "`invalid_cursor`: malformed, or another connector's. `invalid_parameter`: `limit` outside 1-500. `invalid_query`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`store_unavailable`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn list_connections(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ConnectionList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q.cursor.as_deref().map(|c| decode_cursor(&caller, c)).transpose()?;
    let keep = |c: &Connection| {
        q.status.is_none_or(|s| ConnectionState::from(c.status) == s)
            && q.tenant_id
                .as_deref()
                .is_none_or(|t| c.tenant_id.as_str().eq_ignore_ascii_case(t))
            && q.end_user.as_deref().is_none_or(|u| c.end_user.as_deref() == Some(u))
    };
    let (page, next) = state
        .records
        .connections_page(&caller, after.as_deref(), limit, keep)
        .await?;
    Ok(Json(ConnectionList {
        connections: page.iter().map(ConnectionInfo::from).collect(),
        next_cursor: next.map(|m| encode_cursor(&caller, &m)),
    }))
}

/// A connection's metadata (never its tokens).
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}",
    tag = "connections",
    security(("api_key" = [])),
    params(("connection_id" = String, Path, description = "The `connection_id` of the handoff redemption.")),
    responses(
        (status = 200, description = "The connection.", body = ConnectionInfo),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such connection, or another connector's.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`store_unavailable`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn get_connection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<ConnectionId>,
) -> Result<Json<ConnectionInfo>, ApiError> {
    let (c, _) = owned_connection(&state, &caller, &id).await?;
    Ok(Json(ConnectionInfo::from(&c)))
}

/// Deletes a connection: its tokens are gone from the store and from every broker's memory.
#[utoipa::path(
    delete,
    path = "/v1/connections/{connection_id}",
    tag = "connections",
    security(("api_key" = [])),
    params(("connection_id" = String, Path, description = "The connection to delete.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such connection (already deleted included), or another connector's.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`store_unavailable`: nothing was deleted; this broker has already stopped serving the token from memory.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn delete_connection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<ConnectionId>,
) -> Result<StatusCode, ApiError> {
    // First, and whatever the store says: this broker must not go on serving the token from
    // memory during a store outage once its connection was asked to go.
    state.tokens.forget_owned(&caller, &id);
    let (c, _) = owned_connection(&state, &caller, &id).await?;
    let event = state.outbox.deleted(&c);
    state.records.delete_connection_with(&c, event.as_ref()).await?;
    // And after it, here and on every broker sharing the store: a token load that raced the
    // delete must not leave the token cached anywhere.
    state.tokens.deleted(&c.id);
    tracing::info!(connection = %c.id, connector = %c.connector, "connection deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The `Warning` header of a token answer that lives less than the caller's `min_ttl`.
const MIN_TTL_UNMET_WARNING: &str =
    "199 consent-broker \"min_ttl not met: this is the freshest token; see expires_at\"";

/// Longest `min_ttl` accepted: Entra access tokens live at most about a day.
const MAX_MIN_TTL: u64 = 86_400;

/// A fresh delegated access token for the connection, refreshed at most once however many
/// callers ask at the same time.
#[utoipa::path(
    get,
    path = "/v1/connections/{connection_id}/token",
    tag = "connections",
    security(("api_key" = [])),
    params(("connection_id" = String, Path, description = "The connection."), TokenQuery),
    responses(
        (status = 200, description = "The access token. When no token living `min_ttl` could be had, the freshest one, with `min_ttl_unmet: true` and a `Warning` header.", body = AccessTokenBody,
            headers(("Warning" = String, description = "Only with `min_ttl_unmet`: `199 consent-broker \"min_ttl not met: ...\"`."))),
        (status = 400, description = "`invalid_parameter`: `min_ttl` over 86400. `invalid_query`: an unknown parameter or a `min_ttl` that is not a number.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such connection, or another connector's.", body = ErrorBody),
        (status = 409, description = "`reauth_required`: the grant is gone (refresh token expired or revoked, consent withdrawn, user disabled...); send the user to `reconnect_url`.", body = ReauthRequiredBody),
        (status = 429, description = "`rate_limited`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 502, description = "`entra_refused`: Entra refused the refresh for a reason a new sign-in does not fix (typically the broker's client credential); the operator must act.", body = EntraRefusedBody),
        (status = 503, description = "`entra_unavailable`: Entra is unavailable or throttling and the cached token has expired. `refresh_in_progress`: another broker is refreshing it. `store_unavailable`. `timeout`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<ConnectionId>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<Response, ApiError> {
    let min_ttl = match q.min_ttl {
        Some(v) if v > MAX_MIN_TTL => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("min_ttl must be at most {MAX_MIN_TTL} seconds"),
            ));
        }
        Some(v) => Duration::from_secs(v),
        None => state.config.flow.default_min_ttl,
    };
    match state.tokens.access_token(&caller, &id, min_ttl).await {
        Ok(t) => {
            let body = || AccessTokenBody {
                access_token: t.access_token.expose(),
                token_type: TokenType::Bearer,
                expires_at: rfc3339(t.expires_at),
                scope: &t.scope,
                min_ttl_unmet: t.min_ttl_unmet,
            };
            if t.min_ttl_unmet {
                // RFC 7234's "miscellaneous warning": the token is the freshest there is.
                Ok(([(header::WARNING, MIN_TTL_UNMET_WARNING)], Json(body())).into_response())
            } else {
                // Every answer for this token is the same bytes, so they are rendered once and
                // shared with the cache's later hits of it.
                match t.answer.get_or_render(|| serde_json::to_vec(&body())) {
                    Ok(rendered) => Ok(json_answer(rendered)),
                    // Text and a bool always serialize; if not, axum's own answer for it.
                    Err(_) => Ok(Json(body()).into_response()),
                }
            }
        }
        Err(TokenServiceError::ReauthRequired(reason)) => {
            let (conn, _) = owned_connection(&state, &caller, &id).await?;
            Err(ApiError::ReauthRequired {
                category: reason.category,
                aadsts: reason.aadsts,
                reconnect_url: state.flow.reconnect_url(&caller, &conn).await?,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// A rendered JSON answer in a header map sized at once for its own headers (type and length)
/// and those the middleware adds ([`super::observe::ADDED_HEADERS`]): a map grown (and rehashed)
/// on the way out cost more than writing its headers.
fn json_answer(body: bytes::Bytes) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    let headers = response.headers_mut();
    headers.reserve(super::observe::ADDED_HEADERS + 2);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Explains an error a user pasted: its category, codes, who fixes it and how.
#[utoipa::path(
    post,
    path = "/v1/explain",
    tag = "explain",
    security(("api_key" = [])),
    request_body = ExplainRequest,
    responses(
        (status = 200, description = "The explanation; text without an Entra error answers `category: unknown` with `aadsts: []`.", body = ExplainResponse),
        (status = 400, description = "`text_too_large`: over 64 KiB. `invalid_body`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 413, description = "`body_too_large`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn explain(
    Caller(_caller): Caller,
    ApiJson(req): ApiJson<ExplainRequest>,
) -> Result<Json<ExplainResponse>, ApiError> {
    if req.text.len() > crate::entra::explain::MAX_TEXT {
        return Err(ApiError::bad_request(
            ErrorCode::TextTooLarge,
            "text must be at most 64 KiB",
        ));
    }
    Ok(Json(crate::entra::explain::explain(&req.text).into()))
}
