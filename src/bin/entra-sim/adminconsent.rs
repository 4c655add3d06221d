//! `GET /{tenant}/v2.0/adminconsent` (entra.md §3.1): tenant-wide consent by an administrator.
//!
//! The consenting account is the `login_hint` user, else the tenant's first admin. Shapes:
//! - success: `?admin_consent=True&tenant=<guid>&scope=<granted, fully qualified>&state=…`;
//! - non-admin: `?error=access_denied&error_description=AADSTS90094…&error_uri=…&admin_consent=True&state=…`
//!   (90095 when the tenant's admin-consent workflow is on, as at `/authorize`);
//! - admin pressing Cancel: `?error=access_denied&error_subcode=cancel&admin_consent=True&state=…`
//!   with no description (observed, entra.md §1.4).
//!
//! Error redirects never carry `tenant` and end with a bare `#`, as in the observed response in
//! entra.md §3.1 (MicrosoftDocs/azure-docs#114009); brokers must ignore that empty fragment.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::response::Response;

use crate::authorize::front_door;
use crate::conn::ConnHandle;
use crate::errors::{AadError, Surface, Trace};
use crate::faults::{self, FaultAction};
use crate::policy::{self, Denial, NoHint};
use crate::scopes::{self, Scopes};
use crate::state::{SimState, World};
use crate::stats::Endpoint;
use crate::web::{self, Params, ResponseMode};

/// The handler.
pub async fn admin_consent(
    State(state): State<Arc<SimState>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    state.count(Endpoint::AdminConsent);
    let pending_fault = match faults::apply(&state, Endpoint::AdminConsent, None, &conn).await {
        // Token-answer alterations do not apply here.
        FaultAction::Proceed | FaultAction::Alter(_) => None,
        FaultAction::Respond(response) => return response,
        FaultAction::Fail(error) => Some(error),
    };
    let trace = Trace::new(state.now(), None);
    let Ok(params) = Params::parse(query.unwrap_or_default().as_bytes()) else {
        return AadError::malformed_request().page(&trace);
    };
    let mut world = state.world();
    consent(&mut world, &tenant, &params, pending_fault, &trace)
}

/// What `/adminconsent` decided.
enum Decision {
    /// Entra's own page: the redirect URI is not trusted, or nobody could sign in.
    Page(AadError),
    /// Tenant-wide consent recorded.
    Granted {
        redirect_uri: String,
        tenant_id: String,
        scope: String,
    },
    /// An error redirect.
    Failed { redirect_uri: String, failure: Failure },
}

/// Error redirects carry `admin_consent=True`; a cancel carries no description.
enum Failure {
    Error(AadError),
    Cancelled,
}

fn consent(
    world: &mut World,
    segment: &str,
    params: &Params,
    pending_fault: Option<AadError>,
    trace: &Trace,
) -> Response {
    let state = params.get("state").map(str::to_string);
    let mut query: Vec<(&str, String)> = Vec::new();
    let redirect_uri = match decide(world, segment, params, pending_fault) {
        Decision::Page(error) => {
            tracing::info!(code = error.code(), "adminconsent: error page");
            return error.page(trace);
        }
        Decision::Granted {
            redirect_uri,
            tenant_id,
            scope,
        } => {
            tracing::info!(tenant = %tenant_id, "adminconsent: granted");
            query.push(("admin_consent", "True".into()));
            query.push(("tenant", tenant_id));
            query.push(("scope", scope));
            if let Some(state) = state {
                query.push(("state", state));
            }
            return web::deliver(&redirect_uri, ResponseMode::Query, &query);
        }
        Decision::Failed {
            redirect_uri,
            failure: Failure::Error(error),
        } => {
            tracing::info!(code = error.code(), "adminconsent: error redirect");
            query.push(("error", error.error.to_string()));
            if error.cancelled {
                query.push(("error_subcode", "cancel".into()));
            }
            query.push(("error_description", error.description(trace)));
            query.push(("error_uri", error.error_uri()));
            redirect_uri
        }
        Decision::Failed {
            redirect_uri,
            failure: Failure::Cancelled,
        } => {
            tracing::info!("adminconsent: admin cancelled");
            query.push(("error", "access_denied".into()));
            query.push(("error_subcode", "cancel".into()));
            redirect_uri
        }
    };
    query.push(("admin_consent", "True".into()));
    if let Some(state) = state {
        query.push(("state", state));
    }
    web::deliver_with_suffix(&redirect_uri, ResponseMode::Query, &query, "#")
}

fn decide(world: &mut World, segment: &str, params: &Params, pending_fault: Option<AadError>) -> Decision {
    let config = &world.config;
    let front = match front_door(config, segment, params) {
        Ok(front) => front,
        Err(error) => return Decision::Page(error),
    };
    let redirect_uri = front.redirect_uri.clone();
    let fail = |failure| Decision::Failed {
        redirect_uri: redirect_uri.clone(),
        failure,
    };
    if let Some(error) = pending_fault {
        return fail(Failure::Error(error));
    }
    let Some(raw_scope) = params.get("scope") else {
        return fail(Failure::Error(AadError::missing_parameter("scope")));
    };
    let app = front.app;
    let (tenant, user) = match policy::resolve_user(config, front.scope, params.get("login_hint"), NoHint::FirstAdmin) {
        Ok(found) => found,
        Err(miss) => return Decision::Page(miss.page_error(app)),
    };
    // Assignment governs using the app, not granting consent to it; account state and CA still apply.
    let denial = policy::sign_in_denial(tenant, user, &app.client_id, true).filter(|d| *d != Denial::NotAssigned);
    if let Some(denial) = denial {
        return fail(Failure::Error(denial.error(Surface::Authorize, tenant, user, app)));
    }
    if !user.admin {
        let mut error = AadError::admin_approval_required(app.name(), tenant.admin_consent_workflow);
        error.cancelled = false;
        return fail(Failure::Error(error));
    }
    if user.declines_consent {
        return fail(Failure::Cancelled);
    }

    let requested = Scopes::parse(raw_scope).resource;
    let tenant_id = tenant.id.clone();
    let client_id = app.client_id.clone();
    if let Some(tenant) = world.config.tenant_mut(&tenant_id) {
        let grant = tenant.admin_grants.entry(client_id.clone()).or_default();
        scopes::merge_into(grant, &requested);
    }
    world.add_service_principal(&tenant_id, &client_id);
    let scope = requested
        .iter()
        .map(|s| scopes::qualified_form(s))
        .collect::<Vec<_>>()
        .join(" ");
    Decision::Granted {
        redirect_uri,
        tenant_id,
        scope,
    }
}
