//! HTTP: the router, the security headers every response carries, and the handlers.

pub mod api;
pub mod api_keys;
pub mod api_types;
pub mod approval;
pub mod binding;
pub mod browser;
pub mod conn_limit;
pub mod dead_letters;
pub mod error;
pub mod i18n;
pub mod limits;
pub mod negotiate;
pub mod observe;
pub mod openapi;
pub mod pages;
#[cfg(test)]
mod tests;
mod token_first;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get, post};

use crate::app::AppState;
use api_types::{ErrorBody, ErrorCode};
use error::ApiError;

/// Largest request body accepted (the contract's largest is a 64 KiB `explain` text).
const MAX_BODY: usize = 80 * 1024;

pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One path of the main router and the handlers behind it.
pub struct Route {
    /// The path template, exactly as docs/openapi.yaml names it.
    pub path: &'static str,
    /// Pages and redirects a browser drives are limited per client IP; the connector API has its
    /// own per-connector budget, and probes, assets and the approval page's poll none.
    pub per_ip_limit: bool,
    handlers: fn() -> MethodRouter<AppState>,
}

/// Every route of the main router but `/metrics` ([`METRICS_PATH`]). The router is built from this
/// list alone, so that tests/integration/openapi.rs can hold the OpenAPI document to it.
pub const ROUTES: &[Route] = &[
    Route {
        path: "/v1/connect-sessions",
        per_ip_limit: false,
        handlers: || post(api::create_session),
    },
    Route {
        path: "/v1/connect-sessions/{session_id}",
        per_ip_limit: false,
        handlers: || get(api::get_session),
    },
    Route {
        path: "/v1/handoff/redeem",
        per_ip_limit: false,
        handlers: || post(api::redeem),
    },
    Route {
        path: "/v1/explain",
        per_ip_limit: false,
        handlers: || post(api::explain),
    },
    Route {
        path: "/v1/connections",
        per_ip_limit: false,
        handlers: || get(api::list_connections),
    },
    Route {
        path: "/v1/connections/{connection_id}",
        per_ip_limit: false,
        handlers: || get(api::get_connection).delete(api::delete_connection),
    },
    Route {
        // Also served before the router, by token_first.rs (a test holds the two to each other).
        path: observe::TOKEN_ROUTE,
        per_ip_limit: false,
        handlers: || get(api::token),
    },
    Route {
        path: "/v1/webhooks/dead-letters",
        per_ip_limit: false,
        handlers: || get(dead_letters::list),
    },
    Route {
        path: "/v1/webhooks/dead-letters/{event_id}/retry",
        per_ip_limit: false,
        handlers: || post(dead_letters::retry),
    },
    // Polled every few seconds by an open approval page: cheap, and not worth a user's budget.
    Route {
        path: "/v1/approval/{flow_id}/status",
        per_ip_limit: false,
        handlers: || get(approval::status),
    },
    Route {
        path: "/v1/connect/{token}",
        per_ip_limit: true,
        handlers: || get(browser::connect),
    },
    Route {
        path: "/v1/authorize",
        per_ip_limit: true,
        handlers: || get(browser::authorize),
    },
    Route {
        path: "/v1/callback",
        per_ip_limit: true,
        handlers: || get(browser::callback),
    },
    Route {
        path: "/v1/approval/{flow_id}",
        per_ip_limit: true,
        handlers: || get(approval::page),
    },
    Route {
        path: "/v1/approval/{flow_id}/continue",
        per_ip_limit: true,
        handlers: || get(approval::continue_flow),
    },
    Route {
        path: "/v1/admin-consent/start",
        per_ip_limit: true,
        handlers: || get(approval::admin_consent_start),
    },
    Route {
        path: "/v1/admin-consent/callback",
        per_ip_limit: true,
        handlers: || get(approval::admin_consent_callback),
    },
    Route {
        path: "/healthz",
        per_ip_limit: false,
        handlers: || get(healthz),
    },
    Route {
        path: "/readyz",
        per_ip_limit: false,
        handlers: || get(readyz),
    },
    Route {
        path: "/assets/approval.js",
        per_ip_limit: false,
        handlers: || get(script),
    },
    Route {
        path: "/assets/broker.css",
        per_ip_limit: false,
        handlers: || get(stylesheet),
    },
];

/// Served by the main router unless `server.metrics_listen` gives it a listener of its own.
pub const METRICS_PATH: &str = "/metrics";

/// Builds the broker's service: the token call served first ([`token_first`]), every other
/// request through [`routes`]. (The outer router holds only that fallback: it still matches it
/// and clones it per request, but none of the per-route layering below.)
pub fn router(state: AppState) -> Router {
    let routes = routes(state.clone());
    Router::new().fallback_service(token_first::TokenFirst::new(state, routes))
}

/// axum's router of every route, the token call's included (it also answers the token calls
/// [`token_first`] leaves to it, such as `HEAD` or an id with `%` escapes).
pub(crate) fn routes(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mut browser: Router<AppState> = Router::new();
    for route in ROUTES {
        if route.per_ip_limit {
            browser = browser.route(route.path, (route.handlers)());
        } else {
            router = router.route(route.path, (route.handlers)());
        }
    }
    let browser = browser.route_layer(axum::middleware::from_fn_with_state(state.clone(), limits::per_ip));
    let mut router = router.merge(browser).fallback(|| async { ApiError::NotFound });
    if state.config.metrics_listen.is_none() {
        router = router.route(METRICS_PATH, get(metrics));
    }
    let http = state.config.http.clone();
    router
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // A body that stalls fails its read (a 400 from the extractor) instead of holding on.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(http.body_timeout))
        // Observation, the request timeout, error pages for browsers and the security headers,
        // in one middleware.
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::record))
        .with_state(state)
}

/// How many [`SECURITY_HEADERS`] there are (maps sized for a response's headers count them).
pub(crate) const SECURITY_HEADER_COUNT: usize = 6;

/// The headers every response carries, unless its handler set them itself.
const SECURITY_HEADERS: [(HeaderName, &str); SECURITY_HEADER_COUNT] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::PRAGMA, "no-cache"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CONTENT_SECURITY_POLICY, CSP),
];

/// Adds [`SECURITY_HEADERS`] a response lacks, and HSTS when the broker itself serves TLS
/// (behind a proxy, the proxy owns the https policy).
pub(crate) fn add_security_headers(headers: &mut HeaderMap, tls: bool) {
    for (name, value) in SECURITY_HEADERS {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    if tls {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static("max-age=31536000"));
    }
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

/// Liveness: answers while the process serves, whatever the store does.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operator",
    responses((status = 200, description = "`ok`.", body = String, content_type = "text/plain"))
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: answers 200 only while the token store answers, so a load balancer stops sending
/// traffic to a broker that could not serve it.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operator",
    responses(
        (status = 200, description = "`ready`.", body = String, content_type = "text/plain"),
        (status = 503, description = "`store unavailable`.", body = String, content_type = "text/plain"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
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
        .route(METRICS_PATH, get(metrics))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}

/// The broker's metrics, in the OpenMetrics text format Prometheus scrapes.
///
/// Flows started, completed and failed by connector and category, Entra errors by AADSTS code,
/// token requests by outcome, refresh and store latency, rate-limited requests, pending approvals.
/// They carry no secrets: labels are connector ids, categories, outcomes, table AADSTS codes, route
/// templates, store operation names, and the tenants of open approval pages. Served on the main
/// listener unless `server.metrics_listen` gives it one of its own; with `server.metrics_token_env`
/// set, a scrape must send `Authorization: Bearer <token>`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operator",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "The metrics.", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "`unauthorized`: a metrics token is configured and the scrape did not send it.", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`."))),
    )
)]
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> axum::response::Response {
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
                axum::Json(ErrorBody {
                    error: ErrorCode::Unauthorized,
                    message: "a valid metrics token is required (Authorization: Bearer <token>)".into(),
                }),
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

/// The approval page's script: polls the status and turns the page to "approved" by itself.
#[utoipa::path(
    get,
    path = "/assets/approval.js",
    tag = "assets",
    responses((status = 200, description = "JavaScript.", body = String, content_type = "text/javascript; charset=utf-8"))
)]
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/approval.js"),
    )
}

/// The stylesheet of every broker page (a file of its own, as the CSP allows no inline style).
#[utoipa::path(
    get,
    path = "/assets/broker.css",
    tag = "assets",
    responses((status = 200, description = "CSS.", body = String, content_type = "text/css; charset=utf-8"))
)]
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/broker.css"),
    )
}
