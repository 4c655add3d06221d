//! The control API under `/_sim`, used by tests and benchmarks to reshape the world while the
//! simulator runs. Not part of Entra: errors here are plain `{"error": "…"}` JSON with 400/404.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::format_description::well_known::Rfc3339;

use crate::config::SimConfig;
use crate::errors::json_with_status;
use crate::faults::FaultSpec;
use crate::scopes;
use crate::state::SimState;
use crate::stats::Stats;

/// Routes mounted at the root (paths carry the `/_sim` prefix).
pub fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/_sim/config", get(get_config).put(put_config))
        .route("/_sim/tenants/{id}", axum::routing::patch(patch_tenant))
        .route(
            "/_sim/tenants/{id}/grants/{client_id}",
            put(put_grant).delete(delete_grant),
        )
        .route("/_sim/users/{upn}/revoke", post(revoke_user))
        .route("/_sim/clock", post(advance_clock))
        .route("/_sim/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/stats", get(stats))
        .route("/_sim/stats/reset", post(reset_stats))
}

fn problem(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json_with_status(status, &serde_json::json!({ "error": message.to_string() }))
}

/// Parses a JSON body; the error is the message for a 400.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

async fn get_config(State(state): State<Arc<SimState>>) -> Response {
    let config = state.world().config.clone();
    json_with_status(StatusCode::OK, &config)
}

/// Replaces the whole world configuration; keys, issued codes/tokens and user grants stay.
async fn put_config(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let config = match parse::<SimConfig>(&body) {
        Ok(config) => config,
        Err(error) => return problem(StatusCode::BAD_REQUEST, error),
    };
    match config.validated() {
        Ok(config) => {
            state.world().config = config;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => problem(StatusCode::BAD_REQUEST, format!("{error:#}")),
    }
}

/// Replaces the given top-level fields of one tenant, e.g. `{"mfa_required": true}`.
async fn patch_tenant(State(state): State<Arc<SimState>>, Path(id): Path<String>, body: Bytes) -> Response {
    let patch = match parse::<serde_json::Value>(&body) {
        Ok(patch) => patch,
        Err(error) => return problem(StatusCode::BAD_REQUEST, error),
    };
    let mut world = state.world();
    // The path may name the tenant by GUID or verified domain.
    let tenant_id = world.config.tenant(&id).map(|t| t.id.clone());
    let Some(index) = tenant_id.and_then(|tid| world.config.tenants.iter().position(|t| t.id == tid)) else {
        return problem(StatusCode::NOT_FOUND, format!("no tenant {id}"));
    };
    let patched = match world.config.tenants[index].patched(&patch) {
        Ok(patched) => patched,
        Err(error) => return problem(StatusCode::BAD_REQUEST, error),
    };
    // Validate the whole config so a patch cannot break cross-references (ids, default_user).
    let mut candidate = world.config.clone();
    candidate.tenants[index] = patched;
    match candidate.validated() {
        Ok(config) => {
            world.config = config;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => problem(StatusCode::BAD_REQUEST, format!("{error:#}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    scopes: Vec<String>,
}

/// Sets (replaces) the tenant-wide admin grant for a client.
async fn put_grant(
    State(state): State<Arc<SimState>>,
    Path((id, client_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let grant = match parse::<GrantBody>(&body) {
        Ok(grant) => grant,
        Err(error) => return problem(StatusCode::BAD_REQUEST, error),
    };
    let Ok(client) = uuid::Uuid::parse_str(&client_id) else {
        return problem(StatusCode::BAD_REQUEST, format!("{client_id} is not a GUID"));
    };
    let mut world = state.world();
    let Some(tenant) = world.config.tenant_mut(&id) else {
        return problem(StatusCode::NOT_FOUND, format!("no tenant {id}"));
    };
    let mut granted = Vec::new();
    scopes::merge_into(&mut granted, &grant.scopes);
    let client = client.hyphenated().to_string();
    tenant.admin_grants.insert(client.clone(), granted);
    let tenant_id = tenant.id.clone();
    // As in Entra, granting consent creates the enterprise application, which outlives the grant.
    world.add_service_principal(&tenant_id, &client);
    StatusCode::NO_CONTENT.into_response()
}

/// Withdraws admin consent and every user's consent for the client in the tenant.
async fn delete_grant(State(state): State<Arc<SimState>>, Path((id, client_id)): Path<(String, String)>) -> Response {
    let Ok(client) = uuid::Uuid::parse_str(&client_id) else {
        return problem(StatusCode::BAD_REQUEST, format!("{client_id} is not a GUID"));
    };
    let mut world = state.world();
    let Some(tenant_id) = world.config.tenant(&id).map(|t| t.id.clone()) else {
        return problem(StatusCode::NOT_FOUND, format!("no tenant {id}"));
    };
    world.withdraw_grants(&tenant_id, &client.hyphenated().to_string());
    StatusCode::NO_CONTENT.into_response()
}

/// Revokes sign-in sessions: refresh tokens issued until now fail with AADSTS50173.
async fn revoke_user(State(state): State<Arc<SimState>>, Path(upn): Path<String>) -> Response {
    if state.world().revoke_sessions(&upn) == 0 {
        return problem(StatusCode::NOT_FOUND, format!("no user {upn}"));
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    advance_secs: u64,
}

/// Moves the simulator clock forward; answers with the new simulated time.
async fn advance_clock(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let clock = match parse::<ClockBody>(&body) {
        Ok(clock) => clock,
        Err(error) => return problem(StatusCode::BAD_REQUEST, error),
    };
    let mut world = state.world();
    if let Err(error) = world.advance_clock(clock.advance_secs) {
        return problem(StatusCode::BAD_REQUEST, error);
    }
    let now = world.now().format(&Rfc3339).unwrap_or_default();
    json_with_status(StatusCode::OK, &serde_json::json!({ "now": now }))
}

async fn add_fault(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match parse::<FaultSpec>(&body) {
        Ok(fault) => {
            state.faults().add(fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => problem(StatusCode::BAD_REQUEST, error),
    }
}

async fn clear_faults(State(state): State<Arc<SimState>>) -> Response {
    state.faults().clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(State(state): State<Arc<SimState>>) -> Response {
    let stats = state.stats().clone();
    json_with_status(StatusCode::OK, &stats)
}

async fn reset_stats(State(state): State<Arc<SimState>>) -> Response {
    *state.stats() = Stats::default();
    StatusCode::NO_CONTENT.into_response()
}
