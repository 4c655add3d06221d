//! HTTP: the router, the security headers every response carries, and the handlers.

pub mod api;
pub mod approval;
pub mod binding;
pub mod browser;
pub mod conn_limit;
pub mod error;
pub mod i18n;
pub mod limits;
pub mod observe;
pub mod pages;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::AppState;
use error::ApiError;

/// Largest request body accepted (the contract's largest is a 64 KiB `explain` text).
const MAX_BODY: usize = 80 * 1024;

const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Builds the broker's router.
pub fn router(state: AppState) -> Router {
    let headers = [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    let mut router: Router<AppState> = Router::new()
        .route("/v1/connect-sessions", post(api::create_session))
        .route("/v1/connect-sessions/{session_id}", get(api::get_session))
        .route("/v1/handoff/redeem", post(api::redeem))
        .route("/v1/explain", post(api::explain))
        .route(
            "/v1/connections/{connection_id}",
            get(api::get_connection).delete(api::delete_connection),
        )
        .route("/v1/connections/{connection_id}/token", get(api::token))
        // Polled every few seconds by an open approval page: cheap, and not worth a user's budget.
        .route("/v1/approval/{flow_id}/status", get(approval::status))
        .merge(browser_routes(state.clone()))
        .route("/assets/approval.js", get(script))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/assets/broker.css", get(stylesheet))
        .fallback(|| async { ApiError::NotFound });
    if state.config.metrics_listen.is_none() {
        router = router.route("/metrics", get(metrics));
    }
    let http = state.config.http.clone();
    let tls = state.config.tls.is_some();
    let mut router = router
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // A body that stalls fails its read (a 400 from the extractor) instead of holding on.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(http.body_timeout))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::record))
        .with_state(state);
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if tls {
        // Only when the broker itself serves TLS: behind a proxy, the proxy owns the https policy.
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    router
}

/// Pages and redirects a browser drives, limited per client IP.
fn browser_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/connect/{token}", get(browser::connect))
        .route("/v1/authorize", get(browser::authorize))
        .route("/v1/callback", get(browser::callback))
        .route("/v1/approval/{flow_id}", get(approval::page))
        .route("/v1/approval/{flow_id}/continue", get(approval::continue_flow))
        .route("/v1/admin-consent/start", get(approval::admin_consent_start))
        .route("/v1/admin-consent/callback", get(approval::admin_consent_callback))
        .route_layer(axum::middleware::from_fn_with_state(state, limits::per_ip))
}

/// A `302 Found` redirect (the contract's status; axum's `Redirect::to` answers 303).
pub fn found(location: &str) -> axum::response::Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => {
            tracing::error!("refusing to redirect to a location that is not a valid header value");
            (StatusCode::INTERNAL_SERVER_ERROR, "invalid redirect").into_response()
        }
    }
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.records.store().ping().await {
        Ok(()) => {
            state.metrics.store_up(true);
            (StatusCode::OK, "ready")
        }
        Err(e) => {
            state.metrics.store_up(false);
            tracing::warn!(error = %e, "readiness check failed: store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

/// The router of the separate metrics listener (`server.metrics_listen`): `/metrics` only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

/// OpenMetrics text exposition; carries no secrets (labels are connector ids, categories,
/// outcomes, table AADSTS codes, route templates, store operation names, and the tenants of open
/// approval pages). With `server.metrics_token_env` set, a scrape must present that bearer token.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> axum::response::Response {
    if let Some(expected) = &state.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::crypto::ct_eq(presented.trim().as_bytes(), expected.expose().as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({
                    "error": "unauthorized",
                    "message": "a valid metrics token is required (Authorization: Bearer <token>)",
                })),
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/approval.js"),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/broker.css"),
    )
}
