//! `POST /{tenant}/oauth2/v2.0/token` (entra.md §2, §6): authorization-code, refresh-token and
//! client-credentials grants.
//!
//! Order of checks: request shape → throttling → tenant → client → grant type → client credential
//! (secret, or certificate assertion: see `assertion.rs`) → the grant's own checks → the tenant's
//! current policies (account, assignment, Conditional Access, MFA) → consent. Everything that needs
//! the world happens under one lock; the ID token is signed after it is released.
//!
//! Client credentials (app-only) need a specific tenant and one resource's `/.default`, and are
//! answered only where the app has a service principal, i.e. where an admin or a user consented
//! or someone signed in; elsewhere Entra answers 400 `unauthorized_client` AADSTS700016
//! ("…not found in the directory… not been installed by the administrator of the tenant or
//! consented to by any user in the tenant"), which is what a multi-tenant app gets in a customer
//! tenant. (7000229, "missing service principal", is what Entra sends an app in its own home
//! tenant, which the simulator does not model.)
//!
//! Clocks: codes, refresh tokens and client secrets expire on the simulator clock (which
//! `POST /_sim/clock` advances), but ID-token `iat`/`nbf`/`exp` use real wall-clock time, because the
//! broker validates them against its own clock.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::assertion;
use crate::config::AppConfig;
use crate::conn::ConnHandle;
use crate::errors::{AadError, Surface, Trace, json_with_status};
use crate::faults::{self, FaultAction, FaultKind};
use crate::policy::{self, TenantScope};
use crate::scopes::{self, Scopes};
use crate::state::{RefreshToken, SimState, UserKey, World, random_b64, secs};
use crate::stats::Endpoint;
use crate::web::{Params, form_decode};

const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
const GRANT_REFRESH_TOKEN: &str = "refresh_token";
const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";

/// `x-ms-ests-server`: Entra reports its build and region here.
const ESTS_SERVER: &str = "2.1.20000.0 - SIM entra-sim";

/// ID tokens live one hour (entra.md §6).
const ID_TOKEN_LIFETIME_SECS: i64 = 3600;

/// The handler.
pub async fn token(
    State(state): State<Arc<SimState>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.count(Endpoint::Token);
    let params = Params::parse(&body);
    let grant_type = params
        .as_ref()
        .ok()
        .and_then(|p| p.get("grant_type"))
        .map(str::to_string);
    if let Some(grant_type) = &grant_type {
        state.stats().grant(grant_type);
    }
    if let Some(jti) = params
        .as_ref()
        .ok()
        .and_then(|p| p.get("client_assertion"))
        .and_then(assertion::jti)
    {
        state.stats().assertion(jti);
    }
    let client_request_id = headers.get("client-request-id").and_then(|v| v.to_str().ok());
    let trace = Trace::new(state.now(), client_request_id);

    let response = match faults::apply(&state, Endpoint::Token, grant_type.as_deref(), &conn).await {
        FaultAction::Respond(response) => {
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                state.stats().token_error("429".into());
            }
            response
        }
        FaultAction::Fail(error) => error_response(&state, &error, &trace),
        FaultAction::Proceed => match params {
            Ok(params) => process(&state, &tenant, &headers, &params, &trace),
            Err(()) => error_response(&state, &AadError::malformed_request(), &trace),
        },
        FaultAction::Alter(kind) => match params {
            Ok(params) => alter(process(&state, &tenant, &headers, &params, &trace), kind).await,
            Err(()) => error_response(&state, &AadError::malformed_request(), &trace),
        },
    };
    with_token_headers(response, &trace)
}

/// Rewrites a successful token answer the way an `Alter` fault asks (errors pass unchanged).
async fn alter(response: Response, kind: FaultKind) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return axum::response::IntoResponse::into_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return axum::response::IntoResponse::into_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    match kind {
        FaultKind::NoRefreshToken => {
            json.as_object_mut().map(|o| o.remove("refresh_token"));
        }
        FaultKind::WrongTokenType => json["token_type"] = "pop".into(),
        _ => {}
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(json.to_string()))
}

/// Why a token request failed.
enum Failure {
    /// An Entra error (JSON body).
    Aad(AadError),
    /// Over the per-client rate: 429 with this `Retry-After`.
    Throttled(u64),
}

impl From<AadError> for Failure {
    fn from(error: AadError) -> Self {
        Failure::Aad(error)
    }
}

/// Who the tokens are for, captured under the lock for signing afterwards.
struct Identity {
    tenant_id: String,
    oid: String,
    upn: String,
    name: String,
}

/// A successful redemption, ready to become a response.
struct Issued {
    grant_type: &'static str,
    client_id: String,
    identity: Identity,
    scopes: Scopes,
    nonce: Option<String>,
    refresh_token: Option<String>,
    client_info: Option<String>,
    expires_in: u64,
}

/// An app-only token, ready to become a response.
struct AppOnly {
    expires_in: u64,
}

/// What a grant produced.
enum Outcome {
    /// Tokens for a user (code or refresh token).
    User(Box<Issued>),
    /// An app-only token (client credentials).
    App(AppOnly),
}

fn process(state: &SimState, segment: &str, headers: &HeaderMap, params: &Params, trace: &Trace) -> Response {
    let outcome = {
        let mut world = state.world();
        authenticate_caller(&mut world, &state.base_url, segment, headers, params).and_then(|caller| {
            match caller.grant_type {
                GRANT_CLIENT_CREDENTIALS => app_only(&world, &caller, params).map(Outcome::App),
                _ => redeem(&mut world, &caller, params).map(|issued| Outcome::User(Box::new(issued))),
            }
        })
    };
    let result = outcome.and_then(|outcome| match outcome {
        Outcome::User(issued) => respond(state, *issued).map_err(Failure::Aad),
        Outcome::App(app) => Ok(respond_app_only(app)),
    });
    match result {
        Ok(response) => response,
        Err(Failure::Aad(error)) => error_response(state, &error, trace),
        Err(Failure::Throttled(retry_after)) => {
            tracing::info!(retry_after, "token: throttled");
            state.stats().token_error("429".into());
            faults::throttled(retry_after)
        }
    }
}

fn error_response(state: &SimState, error: &AadError, trace: &Trace) -> Response {
    tracing::info!(code = error.code(), error = error.error, "token: error");
    state.stats().token_error(error.code().to_string());
    error.json_response(trace)
}

/// Client id and secret from HTTP Basic (`client_secret_basic`) or the form (`client_secret_post`),
/// or a client assertion (`private_key_jwt`, always in the form).
struct ClientCredentials {
    client_id: Option<String>,
    secret: Option<String>,
    assertion: Option<Assertion>,
}

/// `client_assertion` with its `client_assertion_type`.
struct Assertion {
    kind: Option<String>,
    jwt: String,
}

fn client_credentials(headers: &HeaderMap, params: &Params) -> Result<ClientCredentials, AadError> {
    let assertion = params.get("client_assertion").map(|jwt| Assertion {
        kind: params.get("client_assertion_type").map(str::to_string),
        jwt: jwt.to_string(),
    });
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let raw = value.to_str().map_err(|_| AadError::malformed_request())?;
        if let Some(encoded) = raw.strip_prefix("Basic ").or_else(|| raw.strip_prefix("basic ")) {
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(AadError::malformed_request)?;
            let (id, secret) = decoded.split_once(':').ok_or_else(AadError::malformed_request)?;
            return Ok(ClientCredentials {
                client_id: Some(form_decode(id)),
                secret: Some(form_decode(secret)),
                assertion,
            });
        }
    }
    Ok(ClientCredentials {
        client_id: params.get("client_id").map(str::to_string),
        secret: params.get("client_secret").map(str::to_string),
        assertion,
    })
}

/// Checks the client secret on the simulator clock (so advancing it can expire secrets), or the
/// client assertion against the app's certificates (`assertion.rs`).
fn authenticate(
    app: &AppConfig,
    credentials: &ClientCredentials,
    audiences: Vec<String>,
    now: OffsetDateTime,
) -> Result<(), AadError> {
    let secret = match (credentials.secret.as_deref(), &credentials.assertion) {
        (Some(_), Some(_)) => return Err(AadError::client_secret_and_assertion()),
        (None, None) => return Err(AadError::missing_client_credential()),
        (None, Some(assertion)) => {
            let expected = assertion::Expected {
                app,
                audiences,
                sim_now: now,
                wall_now: OffsetDateTime::now_utc(),
            };
            return assertion::verify(assertion.kind.as_deref(), &assertion.jwt, &expected);
        }
        (Some(secret), None) => secret,
    };
    match app.secrets.iter().find(|s| s.value == secret) {
        None => Err(AadError::bad_client_secret(&app.client_id)),
        Some(s) if s.expires_at.is_some_and(|at| at <= now) => Err(AadError::expired_client_secret(&app.client_id)),
        Some(_) => Ok(()),
    }
}

/// The authenticated client of a token request: what every grant starts from.
struct Caller {
    app: AppConfig,
    grant_type: &'static str,
    /// The path's tenant GUID; `None` for `common`/`organizations`.
    path_tenant: Option<String>,
    /// The directory as Entra names it in messages (display name, else the segment).
    directory: String,
}

/// The checks every grant shares, in Entra's order: up to and including client authentication.
fn authenticate_caller(
    world: &mut World,
    base_url: &str,
    segment: &str,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Caller, Failure> {
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| AadError::missing_parameter("grant_type"))?;
    let credentials = client_credentials(headers, params)?;
    let client_id = credentials
        .client_id
        .clone()
        .ok_or_else(|| AadError::missing_parameter("client_id"))?;
    world
        .admit_token_request(&client_id.to_ascii_lowercase())
        .map_err(Failure::Throttled)?;

    let scope = policy::tenant_scope(&world.config, segment).ok_or_else(|| AadError::tenant_not_found(segment))?;
    let (path_tenant, directory) = match scope {
        TenantScope::Specific(tenant) => (Some(tenant.id.clone()), tenant.directory_name().to_string()),
        TenantScope::Multi => (None, segment.to_string()),
    };
    let app = world
        .config
        .app(&client_id)
        .cloned()
        .ok_or_else(|| AadError::app_not_found(&client_id, &directory))?;
    let grant_type = match grant_type {
        GRANT_AUTHORIZATION_CODE => GRANT_AUTHORIZATION_CODE,
        GRANT_REFRESH_TOKEN => GRANT_REFRESH_TOKEN,
        GRANT_CLIENT_CREDENTIALS => GRANT_CLIENT_CREDENTIALS,
        other => return Err(AadError::unsupported_grant_type(other).into()),
    };
    // A client assertion names the endpoint it is for: the one called, by the path's segment or,
    // for a specific tenant, by its GUID.
    let endpoint = |tenant: &str| format!("{base_url}/{tenant}/oauth2/v2.0/token");
    let mut audiences = vec![endpoint(segment)];
    audiences.extend(path_tenant.as_deref().map(endpoint));
    authenticate(&app, &credentials, audiences, world.now())?;
    Ok(Caller {
        app,
        grant_type,
        path_tenant,
        directory,
    })
}

/// The client-credentials grant: an app-only token for one resource, in a tenant where the app
/// has a service principal.
fn app_only(world: &World, caller: &Caller, params: &Params) -> Result<AppOnly, Failure> {
    // Entra cannot tell which directory `common`/`organizations` means for an app alone.
    let tenant_id = caller
        .path_tenant
        .as_deref()
        .ok_or_else(AadError::no_tenant_information)?;
    let scope = params
        .get("scope")
        .ok_or_else(|| AadError::missing_parameter("scope"))?;
    let mut scopes = scope.split_whitespace();
    let single_default = match (scopes.next(), scopes.next()) {
        (Some(only), None) => only.len() > "/.default".len() && only.ends_with("/.default"),
        _ => false,
    };
    if !single_default {
        return Err(AadError::client_credentials_scope_invalid(scope).into());
    }
    if !world.has_service_principal(tenant_id, &caller.app.client_id) {
        return Err(AadError::app_not_found(&caller.app.client_id, &caller.directory).into());
    }
    Ok(AppOnly {
        expires_in: world.config.access_token_lifetime_secs,
    })
}

fn redeem(world: &mut World, caller: &Caller, params: &Params) -> Result<Issued, Failure> {
    let Caller {
        app,
        grant_type,
        path_tenant,
        ..
    } = caller;
    let grant_type = *grant_type;
    let requested = params.get("scope").map(Scopes::parse);
    let grant = match grant_type {
        GRANT_AUTHORIZATION_CODE => redeem_code(world, app, path_tenant.as_deref(), params)?,
        _ => redeem_refresh_token(world, app, path_tenant.as_deref(), params)?,
    };
    // The request's `scope` picks the permissions the access token carries (consent is checked for
    // them below); the OIDC scopes (ID token, refresh token) are the ones consented on /authorize.
    // A token is for one resource: a `scope` naming several is refused (AADSTS700022), and without
    // one the token is for the grant's first resource.
    let scopes = match requested.filter(|r| !r.resource.is_empty()) {
        Some(requested) if requested.resources().len() > 1 => {
            return Err(AadError::scope_spans_resources(params.get("scope").unwrap_or_default()).into());
        }
        Some(requested) => grant.scopes.clone().with_resources(requested.resource),
        None => grant.scopes.clone().of_first_resource(),
    };
    let identity = check_access(world, app, &grant.user, &scopes, grant.mfa)?;
    grant.commit(world);

    let refresh_token = scopes.offline_access.then(|| {
        let mut family_scopes = grant.scopes.clone();
        scopes::merge_into(&mut family_scopes.resource, &scopes.resource);
        world.issue_refresh_token(RefreshToken {
            client_id: app.client_id.clone(),
            user: grant.user.clone(),
            scopes: family_scopes,
            issued_at: world.now(),
            mfa: grant.mfa,
            rotated_at: None,
        })
    });
    let client_info = (params.get("client_info") == Some("1")).then(|| {
        let json = serde_json::json!({ "uid": identity.oid, "utid": identity.tenant_id });
        URL_SAFE_NO_PAD.encode(json.to_string())
    });
    Ok(Issued {
        grant_type,
        client_id: app.client_id.clone(),
        identity,
        scopes,
        nonce: grant.nonce,
        refresh_token,
        client_info,
        expires_in: world.config.access_token_lifetime_secs,
    })
}

/// What a code or refresh token grants, plus the state change to make once issuance is certain.
struct Grant {
    user: UserKey,
    scopes: Scopes,
    mfa: bool,
    nonce: Option<String>,
    commit: Commit,
}

/// Codes are consumed and refresh tokens marked rotated only when tokens are actually issued.
enum Commit {
    RedeemCode(String),
    RotateRefreshToken(String),
}

impl Grant {
    fn commit(&self, world: &mut World) {
        match &self.commit {
            Commit::RedeemCode(value) => {
                if let Some(code) = world.code_mut(value) {
                    code.redeemed = true;
                }
            }
            Commit::RotateRefreshToken(value) => {
                let now = world.now();
                if let Some(token) = world.refresh_token_mut(value) {
                    token.rotated_at.get_or_insert(now);
                }
            }
        }
    }
}

fn redeem_code(
    world: &mut World,
    app: &AppConfig,
    path_tenant: Option<&str>,
    params: &Params,
) -> Result<Grant, AadError> {
    let value = params.get("code").ok_or_else(|| AadError::missing_parameter("code"))?;
    let now = world.now();
    let lifetime = secs(world.config.code_lifetime_secs);
    let code = world.code_mut(value).ok_or_else(AadError::code_invalid)?;
    if code.client_id != app.client_id {
        return Err(AadError::code_for_other_client());
    }
    if code.redeemed {
        return Err(AadError::code_redeemed());
    }
    if code.issued_at + lifetime <= now {
        return Err(AadError::code_expired());
    }
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| AadError::missing_parameter("redirect_uri"))?;
    if redirect_uri != code.redirect_uri {
        return Err(AadError::code_redirect_mismatch(redirect_uri));
    }
    if let Some(pkce) = &code.pkce {
        let verified = params.get("code_verifier").is_some_and(|v| pkce.verify(v));
        if !verified {
            return Err(AadError::pkce_mismatch());
        }
    }
    if path_tenant.is_some_and(|tid| tid != code.user.tenant_id) {
        return Err(AadError::code_for_other_tenant());
    }
    Ok(Grant {
        user: code.user.clone(),
        scopes: code.scopes.clone(),
        mfa: code.mfa,
        nonce: code.nonce.clone(),
        commit: Commit::RedeemCode(value.to_string()),
    })
}

fn redeem_refresh_token(
    world: &mut World,
    app: &AppConfig,
    path_tenant: Option<&str>,
    params: &Params,
) -> Result<Grant, AadError> {
    let value = params
        .get("refresh_token")
        .ok_or_else(|| AadError::missing_parameter("refresh_token"))?;
    if !World::looks_like_refresh_token(value) {
        return Err(AadError::refresh_token_malformed());
    }
    let now = world.now();
    let max_inactive = world.config.refresh_token_max_inactive_secs;
    let grace = secs(world.config.refresh_token_rotation_grace_secs);
    let token = world
        .refresh_token_mut(value)
        .ok_or_else(AadError::refresh_token_invalid)?
        .clone();
    // Guest access to other tenants is not modelled, so an RT only works in its user's tenant.
    if token.client_id != app.client_id || path_tenant.is_some_and(|tid| tid != token.user.tenant_id) {
        return Err(AadError::refresh_token_invalid());
    }
    if let Some(rotated_at) = token.rotated_at
        && rotated_at + grace < now
    {
        return Err(AadError::refresh_token_rotated_out(rotated_at));
    }
    if token.issued_at + secs(max_inactive) < now {
        return Err(AadError::refresh_token_inactive(token.issued_at, max_inactive));
    }
    if let Some(revoked_at) = world.revoked_at(&token.user)
        && token.issued_at <= revoked_at
    {
        return Err(AadError::refresh_token_revoked(token.issued_at, revoked_at));
    }
    Ok(Grant {
        user: token.user,
        scopes: token.scopes,
        mfa: token.mfa,
        nonce: None,
        commit: Commit::RotateRefreshToken(value.to_string()),
    })
}

/// The tenant's current policies and consent, evaluated at redemption time: an admin withdrawing
/// consent, disabling the account or adding a CA/MFA policy affects existing codes and refresh tokens.
fn check_access(
    world: &World,
    app: &AppConfig,
    user: &UserKey,
    scopes: &Scopes,
    mfa: bool,
) -> Result<Identity, AadError> {
    let tenant = world
        .config
        .tenant(&user.tenant_id)
        .ok_or_else(|| AadError::tenant_not_found(&user.tenant_id))?;
    let account = tenant
        .user_by_oid(&user.oid)
        .ok_or_else(|| AadError::user_not_found(&user.oid, tenant.directory_name()))?;
    if let Some(denial) = policy::sign_in_denial(tenant, account, &app.client_id, mfa) {
        return Err(denial.error(Surface::Token, tenant, account, app));
    }
    if !world.missing_consent(user, &app.client_id, &scopes.resource).is_empty() {
        return Err(AadError::consent_missing(Surface::Token, app.name(), &app.client_id));
    }
    Ok(Identity {
        tenant_id: tenant.id.clone(),
        oid: account.oid.clone(),
        upn: account.upn.clone(),
        name: account.name.clone(),
    })
}

/// The success body, in the field order Entra emits (entra.md §2.3).
#[derive(Serialize)]
struct TokenResponse {
    token_type: &'static str,
    scope: String,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_info: Option<String>,
}

/// The client-credentials success body: no scope, refresh token or ID token (entra.md §2.1).
#[derive(Serialize)]
struct AppTokenResponse {
    token_type: &'static str,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: String,
}

fn respond_app_only(app: AppOnly) -> Response {
    tracing::info!(grant_type = GRANT_CLIENT_CREDENTIALS, "token: issued");
    let body = AppTokenResponse {
        token_type: "Bearer",
        expires_in: app.expires_in,
        ext_expires_in: app.expires_in,
        access_token: random_b64(480),
    };
    json_with_status(StatusCode::OK, &body)
}

/// v2 ID-token claims, in Entra's order. `name`/`oid`/`preferred_username` need the `profile` scope
/// and `email` the `email` scope (entra.md §7.3).
#[derive(Serialize)]
struct IdTokenClaims<'a> {
    aud: &'a str,
    iss: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    aio: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<&'a str>,
    rh: String,
    sub: String,
    tid: &'a str,
    uti: String,
    ver: &'static str,
}

fn respond(state: &SimState, issued: Issued) -> Result<Response, AadError> {
    let id_token = if issued.scopes.openid {
        let fault = state.faults().take_id_token_fault(issued.grant_type);
        Some(sign_id_token(state, &issued, fault)?)
    } else {
        None
    };
    tracing::info!(grant_type = issued.grant_type, "token: issued");
    let body = TokenResponse {
        token_type: "Bearer",
        scope: issued.scopes.response_string(),
        expires_in: issued.expires_in,
        ext_expires_in: issued.expires_in,
        access_token: random_b64(480),
        refresh_token: issued.refresh_token,
        id_token,
        client_info: issued.client_info,
    };
    Ok(json_with_status(StatusCode::OK, &body))
}

fn sign_id_token(state: &SimState, issued: &Issued, fault: Option<FaultKind>) -> Result<String, AadError> {
    let identity = &issued.identity;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let (iat, exp) = match fault {
        Some(FaultKind::IdTokenExpired) => (now - 2 * ID_TOKEN_LIFETIME_SECS, now - ID_TOKEN_LIFETIME_SECS),
        _ => (now, now + ID_TOKEN_LIFETIME_SECS),
    };
    let issuer_tenant = match fault {
        Some(FaultKind::IdTokenWrongTenant) => other_tenant(state, &identity.tenant_id),
        _ => identity.tenant_id.clone(),
    };
    let profile = issued.scopes.profile;
    let claims = IdTokenClaims {
        aud: &issued.client_id,
        iss: state.issuer(&issuer_tenant),
        iat,
        nbf: iat,
        exp,
        aio: random_b64(48),
        email: issued.scopes.email.then_some(identity.upn.as_str()),
        name: profile.then_some(identity.name.as_str()),
        nonce: issued.nonce.as_deref(),
        oid: profile.then_some(identity.oid.as_str()),
        preferred_username: profile.then_some(identity.upn.as_str()),
        rh: format!("0.AXoA{}.", random_b64(32)),
        sub: pairwise_subject(&identity.oid, &issued.client_id),
        tid: &identity.tenant_id,
        uti: random_b64(16),
        ver: "2.0",
    };
    let key = match fault {
        Some(FaultKind::IdTokenUnknownKey) => &state.keys.rogue,
        _ => &state.keys.signing,
    };
    key.sign_jwt(&claims).map_err(|_| AadError::server_error())
}

/// Another configured tenant's id, or a fresh GUID when there is only one tenant.
fn other_tenant(state: &SimState, tenant_id: &str) -> String {
    state
        .world()
        .config
        .tenants
        .iter()
        .map(|t| t.id.clone())
        .find(|id| id != tenant_id)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

/// `sub` is pairwise: stable per (user, app), different across apps.
fn pairwise_subject(oid: &str, client_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{oid}:{client_id}").as_bytes()))
}

/// Headers Entra puts on every token response (entra.md §2.3).
fn with_token_headers(mut response: Response, trace: &Trace) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, no-cache"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::EXPIRES, HeaderValue::from_static("-1"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&trace.trace_id.to_string()) {
        headers.insert(HeaderName::from_static("x-ms-request-id"), value);
    }
    headers.insert(
        HeaderName::from_static("x-ms-ests-server"),
        HeaderValue::from_static(ESTS_SERVER),
    );
    if trace.correlation_from_client
        && let Ok(value) = HeaderValue::from_str(&trace.correlation_id.to_string())
    {
        headers.insert(HeaderName::from_static("client-request-id"), value);
    }
    response
}
