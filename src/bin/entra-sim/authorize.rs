//! `GET /{tenant}/oauth2/v2.0/authorize` (entra.md §1).
//!
//! There is no UI: the signed-in user is the `login_hint` account (or the tenant's `default_user`), and
//! every interactive step is decided from configuration — the user completes MFA, accepts or cancels a
//! consent prompt (`declines_consent`), or ends on the admin-approval page and returns to the app.
//!
//! Evaluation is split in two: [`evaluate`] reads the world and produces a [`Verdict`] with owned data;
//! [`apply`] performs the writes (user consent, code issuance) and renders it.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::config::{AppConfig, SimConfig};
use crate::conn::ConnHandle;
use crate::errors::{AadError, Surface, Trace};
use crate::faults::{self, FaultAction};
use crate::policy::{self, ConsentOutcome, NoHint, TenantScope};
use crate::scopes::{self, Scopes};
use crate::state::{AuthCode, Pkce, PkceMethod, SimState, UserKey, World};
use crate::stats::Endpoint;
use crate::web::{self, Params, ResponseMode};

/// A request that passed the checks Entra makes before it trusts the redirect URI. Failures before this
/// point are shown on Entra's own page, never redirected.
pub struct FrontDoor<'c> {
    /// The `{tenant}` segment after lookup.
    pub scope: TenantScope<'c>,
    /// The requesting app.
    pub app: &'c AppConfig,
    /// The redirect URI results go to (exactly as registered).
    pub redirect_uri: String,
}

/// Validates tenant (90002), client (900144/700016) and redirect URI (50011/500113).
///
/// A missing `redirect_uri` falls back to the app's first registered URI: the OIDC doc says Entra then
/// picks a registered one.
pub fn front_door<'c>(config: &'c SimConfig, segment: &str, params: &Params) -> Result<FrontDoor<'c>, AadError> {
    let scope = policy::tenant_scope(config, segment).ok_or_else(|| AadError::tenant_not_found(segment))?;
    let client_id = params
        .get("client_id")
        .ok_or_else(|| AadError::missing_parameter("client_id"))?;
    let directory = match scope {
        TenantScope::Specific(tenant) => tenant.directory_name(),
        TenantScope::Multi => segment,
    };
    let app = config
        .app(client_id)
        .ok_or_else(|| AadError::app_not_found(client_id, directory))?;
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if app.redirect_uris.iter().any(|r| r == uri) => uri.to_string(),
        Some(uri) => return Err(AadError::redirect_uri_mismatch(uri, &app.client_id)),
        None => app
            .redirect_uris
            .first()
            .cloned()
            .ok_or_else(AadError::no_reply_address)?,
    };
    Ok(FrontDoor {
        scope,
        app,
        redirect_uri,
    })
}

/// Where and how a result is returned to the app.
#[derive(Debug, Clone)]
struct Delivery {
    redirect_uri: String,
    mode: ResponseMode,
    state: Option<String>,
}

/// The decision for one authorize request.
enum Verdict {
    /// Entra's own error page (redirect target not trusted, or the user is stuck in Entra's UI).
    Page(AadError),
    /// An error redirect.
    Redirect(Delivery, AadError),
    /// Success: record any consent the user gave, then issue the code.
    Issue {
        to: Delivery,
        code: Box<AuthCode>,
        consented: Option<Vec<String>>,
        client_info: Option<String>,
    },
}

/// `prompt` values that change the outcome. `login`/`select_account` need UI the simulator does not
/// have, so they behave like no prompt; v1's `admin_consent` is ignored on v2 (entra.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prompt {
    Default,
    None,
    Consent,
}

impl Prompt {
    fn parse(raw: Option<&str>) -> Self {
        match raw {
            Some("none") => Prompt::None,
            Some("consent") => Prompt::Consent,
            _ => Prompt::Default,
        }
    }
}

/// The handler.
pub async fn authorize(
    State(state): State<Arc<SimState>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    state.count(Endpoint::Authorize);
    // Outage faults still need a trusted redirect URI to be reported, so they are carried into evaluation.
    let pending_fault = match faults::apply(&state, Endpoint::Authorize, None, &conn).await {
        // Token-answer alterations do not apply here.
        FaultAction::Proceed | FaultAction::Alter(_) => None,
        FaultAction::Respond(response) => return response,
        FaultAction::Fail(error) => Some(error),
    };
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    let trace = Trace::new(
        state.now(),
        params.as_ref().ok().and_then(|p| p.get("client-request-id")),
    );
    let Ok(params) = params else {
        return AadError::malformed_request().page(&trace);
    };
    let mut world = state.world();
    let verdict = evaluate(&world, &tenant, &params, pending_fault);
    apply(&mut world, verdict, &trace)
}

fn evaluate(world: &World, segment: &str, params: &Params, pending_fault: Option<AadError>) -> Verdict {
    let config = &world.config;
    let front = match front_door(config, segment, params) {
        Ok(front) => front,
        Err(error) => return Verdict::Page(error),
    };
    let app = front.app;
    let mut to = Delivery {
        redirect_uri: front.redirect_uri,
        mode: ResponseMode::Query,
        state: params.get("state").map(str::to_string),
    };
    match ResponseMode::parse(params.get("response_mode")) {
        Ok(mode) => to.mode = mode,
        Err(mode) => return Verdict::Redirect(to, AadError::unsupported_response_mode(&mode)),
    }
    if let Some(error) = pending_fault {
        return Verdict::Redirect(to, error);
    }
    if let Err(error) = check_response_type(params.get("response_type")) {
        return Verdict::Redirect(to, error);
    }
    let Some(raw_scope) = params.get("scope") else {
        return Verdict::Redirect(to, AadError::missing_parameter("scope"));
    };
    let scopes = Scopes::parse(raw_scope);
    let pkce = match parse_pkce(params) {
        Ok(pkce) => pkce,
        Err(error) => return Verdict::Redirect(to, error),
    };
    let prompt = Prompt::parse(params.get("prompt"));
    let silent = prompt == Prompt::None;

    let (tenant, user) = match policy::resolve_user(config, front.scope, params.get("login_hint"), NoHint::DefaultUser)
    {
        Ok(found) => found,
        Err(_) if silent => return Verdict::Redirect(to, AadError::login_required()),
        Err(miss) => return Verdict::Page(miss.page_error(app)),
    };
    // Interactively the user can always complete MFA; with prompt=none they cannot.
    if let Some(denial) = policy::sign_in_denial(tenant, user, &app.client_id, !silent) {
        return Verdict::Redirect(to, denial.error(Surface::Authorize, tenant, user, app));
    }

    let user_key = UserKey {
        tenant_id: tenant.id.clone(),
        oid: user.oid.clone(),
    };
    let missing = if prompt == Prompt::Consent {
        // prompt=consent re-asks the user for everything the admin has not granted tenant-wide.
        let admin: &[String] = tenant
            .admin_grants
            .get(&app.client_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        scopes::missing(&scopes.resource, &[admin])
    } else {
        world.missing_consent(&user_key, &app.client_id, &scopes.resource)
    };
    let consented = match policy::consent_outcome(config, tenant, user, app, missing) {
        ConsentOutcome::Covered => None,
        _ if silent => {
            return Verdict::Redirect(
                to,
                AadError::consent_missing(Surface::Authorize, app.name(), &app.client_id),
            );
        }
        ConsentOutcome::UserMayConsent(_) if user.declines_consent => {
            return Verdict::Redirect(to, AadError::consent_declined());
        }
        ConsentOutcome::UserMayConsent(missing) => Some(missing),
        ConsentOutcome::NeedsAdmin => {
            return Verdict::Redirect(
                to,
                AadError::admin_approval_required(app.name(), tenant.admin_consent_workflow),
            );
        }
    };

    let client_info = (params.get("client_info") == Some("1")).then(|| {
        let json = serde_json::json!({ "uid": user.oid, "utid": tenant.id });
        URL_SAFE_NO_PAD.encode(json.to_string())
    });
    let code = AuthCode {
        client_id: app.client_id.clone(),
        redirect_uri: to.redirect_uri.clone(),
        pkce,
        nonce: params.get("nonce").map(str::to_string),
        scopes,
        user: user_key,
        issued_at: world.now(),
        mfa: tenant.mfa_required && !silent,
        redeemed: false,
    };
    Verdict::Issue {
        to,
        code: Box::new(code),
        consented,
        client_info,
    }
}

fn apply(world: &mut World, verdict: Verdict, trace: &Trace) -> Response {
    match verdict {
        Verdict::Page(error) => {
            tracing::info!(code = error.code(), "authorize: error page");
            error.page(trace)
        }
        Verdict::Redirect(to, error) => {
            tracing::info!(code = error.code(), error = error.error, "authorize: error redirect");
            let mut params = error.redirect_params(trace);
            if let Some(state) = to.state {
                params.push(("state", state));
            }
            web::deliver(&to.redirect_uri, to.mode, &params)
        }
        Verdict::Issue {
            to,
            code,
            consented,
            client_info,
        } => {
            if let Some(consented) = consented {
                world.grant_to_user(&code.user, &code.client_id, &consented);
            }
            let value = world.issue_code(*code);
            tracing::info!("authorize: code issued");
            let mut params = vec![("code", value)];
            if let Some(client_info) = client_info {
                params.push(("client_info", client_info));
            }
            if let Some(state) = to.state {
                params.push(("state", state));
            }
            params.push(("session_state", Uuid::new_v4().to_string()));
            web::deliver(&to.redirect_uri, to.mode, &params)
        }
    }
}

/// `response_type` must contain `code`; anything beyond it would need the implicit-grant settings,
/// which no simulated app enables.
fn check_response_type(raw: Option<&str>) -> Result<(), AadError> {
    let raw = raw.ok_or_else(|| AadError::missing_parameter("response_type"))?;
    let parts: Vec<&str> = raw.split_whitespace().collect();
    if !parts.contains(&"code") {
        return Err(AadError::response_type_not_code(raw));
    }
    if parts.iter().any(|part| *part != "code") {
        return Err(AadError::implicit_not_enabled(raw));
    }
    Ok(())
}

/// Validates the PKCE parameters (RFC 7636 §4.2/§4.3): S256 challenges are 43–128 base64url characters,
/// plain ones 43–128 unreserved characters.
fn parse_pkce(params: &Params) -> Result<Option<Pkce>, AadError> {
    let method = params.get("code_challenge_method");
    let Some(challenge) = params.get("code_challenge") else {
        return match method {
            Some(_) => Err(AadError::missing_code_challenge()),
            None => Ok(None),
        };
    };
    let method = match method {
        None | Some("plain") => PkceMethod::Plain,
        Some("S256") => PkceMethod::S256,
        Some(other) => return Err(AadError::invalid_code_challenge_method(other)),
    };
    let allowed = |b: u8| {
        b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (method == PkceMethod::Plain && (b == b'.' || b == b'~'))
    };
    if !(43..=128).contains(&challenge.len()) || !challenge.bytes().all(allowed) {
        return Err(AadError::invalid_code_challenge());
    }
    Ok(Some(Pkce {
        challenge: challenge.to_string(),
        method,
    }))
}
