//! The connector backend API (server to server, `Authorization: Bearer <API key>`).

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::crypto::{ct_eq, sha256_hex};
use crate::flow::SessionRequest;
use crate::store::records::{Connection, ConnectionStatus};
use crate::tokens::TokenServiceError;

/// The connector whose API key authenticated the request.
pub struct Caller(pub String);

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
        let digest = sha256_hex(key);
        // Compare against every hash without stopping early, so timing says nothing about which.
        let mut found: Option<&str> = None;
        for connector in state.connectors.values() {
            for hash in &connector.api_key_hashes {
                if ct_eq(hash.as_bytes(), digest.as_bytes()) {
                    found = Some(&connector.id);
                }
            }
        }
        let id = found.ok_or(ApiError::Unauthorized)?;
        // After authentication, so nobody can spend a connector's budget without its key.
        state.limits.check_connector(id, &state.metrics)?;
        Ok(Caller(id.to_string()))
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

/// `POST /v1/connect-sessions`
pub async fn create_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<Response, ApiError> {
    let created = state.flow.create_session(&caller, &req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "session_id": created.session.id,
            "connect_url": created.connect_url,
            "expires_at": rfc3339(created.session.expires_at),
        })),
    )
        .into_response())
}

/// `GET /v1/connect-sessions/{session_id}`
pub async fn get_session(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = state.records.session(&caller, &id).await?.ok_or(ApiError::NotFound)?;
    let status = state.flow.session_status(&session);
    Ok(Json(json!({
        "session_id": session.id,
        "status": status,
        "category": session.category,
        "aadsts": session.aadsts,
        "approval_url": session.approval_flow.as_deref().map(|id| state.public(&crate::approval::page_path(id))),
        "connection_id": if status == "completed" { session.connection_id } else { None },
        "expires_at": rfc3339(session.expires_at),
    })))
}

/// Body of `POST /v1/handoff/redeem`.
#[derive(Deserialize)]
pub struct RedeemRequest {
    code: String,
}

/// `POST /v1/handoff/redeem`
pub async fn redeem(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let redeemed = state.flow.redeem_handoff(&caller, &req.code).await?.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_handoff_code",
            "the handoff code is unknown, expired or already used",
        )
    })?;
    let c = &redeemed.connection;
    Ok(Json(json!({
        "connection_id": c.id,
        "connector": c.connector,
        "tenant_id": c.tenant_id,
        "user": c.user,
        "scopes": c.scopes,
        "state": redeemed.state,
    })))
}

async fn owned_connection(state: &AppState, caller: &str, id: &str) -> Result<(Connection, u64), ApiError> {
    match state.records.connection(id).await? {
        Some((c, v)) if c.connector == caller => Ok((c, v)),
        _ => Err(ApiError::NotFound),
    }
}

/// `GET /v1/connections/{connection_id}`
pub async fn get_connection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (c, _) = owned_connection(&state, &caller, &id).await?;
    Ok(Json(json!({
        "connection_id": c.id,
        "connector": c.connector,
        "tenant_id": c.tenant_id,
        "user": c.user,
        "end_user": c.end_user,
        "scopes": c.scopes,
        "created_at": rfc3339(c.created_at),
        "refreshed_at": rfc3339(c.refreshed_at),
        "status": match c.status { ConnectionStatus::Active => "active", ConnectionStatus::ReauthRequired => "reauth_required" },
        "reauth": c.reauth,
    })))
}

/// `DELETE /v1/connections/{connection_id}`
pub async fn delete_connection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    // First, and whatever the store says: this broker must not go on serving the token from
    // memory during a store outage once its connection was asked to go.
    state.tokens.forget_owned(&caller, &id);
    let (c, _) = owned_connection(&state, &caller, &id).await?;
    state.records.delete_connection(&c).await?;
    tracing::info!(connection = %c.id, connector = %c.connector, "connection deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Query of the token endpoint.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    min_ttl: Option<u64>,
}

/// The `Warning` header of a token answer that lives less than the caller's `min_ttl`.
const MIN_TTL_UNMET_WARNING: &str =
    "199 consent-broker \"min_ttl not met: this is the freshest token; see expires_at\"";

/// Longest `min_ttl` accepted: Entra access tokens live at most about a day.
const MAX_MIN_TTL: u64 = 86_400;

/// `GET /v1/connections/{connection_id}/token`
pub async fn token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<Response, ApiError> {
    let min_ttl = match q.min_ttl {
        Some(v) if v > MAX_MIN_TTL => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("min_ttl must be at most {MAX_MIN_TTL} seconds"),
            ));
        }
        Some(v) => Duration::from_secs(v),
        None => state.config.flow.default_min_ttl,
    };
    match state.tokens.access_token(&caller, &id, min_ttl).await {
        Ok(t) => {
            let body = Json(json!({
                "access_token": t.access_token.expose(),
                "token_type": "Bearer",
                "expires_at": rfc3339(t.expires_at),
                "scope": t.scope,
                "min_ttl_unmet": t.min_ttl_unmet,
            }));
            if t.min_ttl_unmet {
                // RFC 7234's "miscellaneous warning": the token is the freshest there is.
                Ok(([(header::WARNING, MIN_TTL_UNMET_WARNING)], body).into_response())
            } else {
                Ok(body.into_response())
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

/// Body of `POST /v1/explain`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    text: String,
}

/// `POST /v1/explain`
pub async fn explain(
    Caller(_caller): Caller,
    ApiJson(req): ApiJson<ExplainRequest>,
) -> Result<Json<crate::entra::explain::Explanation>, ApiError> {
    if req.text.len() > crate::entra::explain::MAX_TEXT {
        return Err(ApiError::bad_request("text_too_large", "text must be at most 64 KiB"));
    }
    Ok(Json(crate::entra::explain::explain(&req.text)))
}
