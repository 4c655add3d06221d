//! OpenID Connect discovery and the JWKS (entra.md §7.1, §7.2).
//!
//! For a tenant GUID or domain the metadata names the tenant GUID everywhere (issuer included); for
//! `common`/`organizations` the issuer is the `{tenantid}` template and endpoints keep the segment.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

use crate::conn::ConnHandle;
use crate::errors::{AadError, Trace, json_with_status};
use crate::faults::{self, FaultAction};
use crate::policy::{self, TenantScope};
use crate::state::SimState;
use crate::stats::Endpoint;

/// The v2 metadata document, in the field order Entra serves.
#[derive(Serialize)]
struct OpenIdConfiguration {
    token_endpoint: String,
    token_endpoint_auth_methods_supported: [&'static str; 3],
    jwks_uri: String,
    response_modes_supported: [&'static str; 3],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [&'static str; 1],
    response_types_supported: [&'static str; 4],
    scopes_supported: [&'static str; 4],
    issuer: String,
    request_uri_parameter_supported: bool,
    userinfo_endpoint: &'static str,
    authorization_endpoint: String,
    device_authorization_endpoint: String,
    http_logout_supported: bool,
    frontchannel_logout_supported: bool,
    end_session_endpoint: String,
    claims_supported: [&'static str; 20],
    kerberos_endpoint: String,
    tenant_region_scope: Option<&'static str>,
    cloud_instance_name: &'static str,
    cloud_graph_host_name: &'static str,
    msgraph_host: &'static str,
    rbac_url: &'static str,
}

/// Resolves the segment to what appears in URLs: the tenant GUID, or `common`/`organizations`.
fn url_segment(state: &SimState, segment: &str) -> Option<(String, bool)> {
    let world = state.world();
    match policy::tenant_scope(&world.config, segment)? {
        TenantScope::Specific(tenant) => Some((tenant.id.clone(), true)),
        TenantScope::Multi => Some((segment.to_ascii_lowercase(), false)),
    }
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub async fn openid_configuration(
    State(state): State<Arc<SimState>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    Path(segment): Path<String>,
) -> Response {
    state.count(Endpoint::OpenidConfiguration);
    if let Some(response) = fault_response(&state, Endpoint::OpenidConfiguration, &conn).await {
        return response;
    }
    let Some((tenant, specific)) = url_segment(&state, &segment) else {
        return tenant_not_found(&state, &segment);
    };
    let base = &state.base_url;
    let document = OpenIdConfiguration {
        token_endpoint: format!("{base}/{tenant}/oauth2/v2.0/token"),
        token_endpoint_auth_methods_supported: ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        jwks_uri: format!("{base}/{tenant}/discovery/v2.0/keys"),
        response_modes_supported: ["query", "fragment", "form_post"],
        subject_types_supported: ["pairwise"],
        id_token_signing_alg_values_supported: ["RS256"],
        response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
        scopes_supported: ["openid", "profile", "email", "offline_access"],
        issuer: if specific {
            state.issuer(&tenant)
        } else {
            state.issuer("{tenantid}")
        },
        request_uri_parameter_supported: false,
        userinfo_endpoint: "https://graph.microsoft.com/oidc/userinfo",
        authorization_endpoint: format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        device_authorization_endpoint: format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        http_logout_supported: true,
        frontchannel_logout_supported: true,
        end_session_endpoint: format!("{base}/{tenant}/oauth2/v2.0/logout"),
        claims_supported: [
            "sub",
            "iss",
            "cloud_instance_name",
            "cloud_instance_host_name",
            "cloud_graph_host_name",
            "msgraph_host",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "acr",
            "nonce",
            "preferred_username",
            "name",
            "tid",
            "ver",
            "at_hash",
            "c_hash",
            "email",
            "oid",
        ],
        kerberos_endpoint: format!("{base}/{tenant}/kerberos"),
        tenant_region_scope: specific.then_some("NA"),
        cloud_instance_name: "microsoftonline.com",
        cloud_graph_host_name: "graph.windows.net",
        msgraph_host: "graph.microsoft.com",
        rbac_url: "https://pas.windows.net",
    };
    cacheable(json_with_status(StatusCode::OK, &document))
}

/// `GET /{tenant}/discovery/v2.0/keys` (including `/common/…`).
pub async fn keys(
    State(state): State<Arc<SimState>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    Path(segment): Path<String>,
) -> Response {
    state.count(Endpoint::Keys);
    if let Some(response) = fault_response(&state, Endpoint::Keys, &conn).await {
        return response;
    }
    if url_segment(&state, &segment).is_none() {
        return tenant_not_found(&state, &segment);
    }
    let issuer_template = state.issuer("{tenantid}");
    let mut response = json_with_status(StatusCode::OK, &state.keys.jwks(&issuer_template));
    response
        .headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    cacheable(response)
}

async fn fault_response(state: &SimState, endpoint: Endpoint, conn: &ConnHandle) -> Option<Response> {
    match faults::apply(state, endpoint, None, conn).await {
        // Token-answer alterations do not apply here.
        FaultAction::Proceed | FaultAction::Alter(_) => None,
        FaultAction::Respond(response) => Some(response),
        FaultAction::Fail(error) => Some(error.json_response(&Trace::new(state.now(), None))),
    }
}

fn tenant_not_found(state: &SimState, segment: &str) -> Response {
    AadError::tenant_not_found(segment).json_response(&Trace::new(state.now(), None))
}

/// Discovery documents are cacheable for a day (entra.md §7.2).
fn cacheable(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400, private"),
    );
    response
}
