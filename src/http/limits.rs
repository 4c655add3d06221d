//! The per-IP rate limit of browser endpoints, as a route layer, and the whole-request timeout.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, PageError};
use super::i18n::Lang;
use crate::app::AppState;
use crate::flow::FlowError;

/// Refuses a browser request over its client IP's limit with a readable 429 page and Retry-After.
pub async fn per_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    if let Some(ip) = state.limits.client_ip(req.headers(), peer)
        && let Err(limited) = state.limits.check_ip(ip, &state.metrics)
    {
        tracing::info!(
            retry_after = limited.retry_after.as_secs(),
            "browser request over the per-IP limit"
        );
        let lang = Lang::from_headers(req.headers());
        return PageError::from_flow(
            FlowError::RateLimited {
                retry_after: limited.retry_after,
            },
            lang,
        )
        .into_response();
    }
    next.run(req).await
}

/// How long a timed-out caller is told to wait.
const TIMEOUT_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers 503 with Retry-After when a request takes longer than `server.request_timeout_secs`:
/// a page for browsers, JSON for the API. A refresh in flight is not cut short by it: it runs on
/// its own task (`tokens`) and its result is kept for the next call.
pub async fn request_timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let lang = Lang::from_headers(req.headers());
    let browser = req
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    match tokio::time::timeout(state.config.http.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_secs = state.config.http.request_timeout.as_secs(),
                "request took longer than the request timeout"
            );
            if browser {
                PageError::from_flow(
                    FlowError::EntraUnavailable {
                        retry_after: TIMEOUT_RETRY_AFTER,
                    },
                    lang,
                )
                .into_response()
            } else {
                ApiError::Unavailable {
                    code: super::api_types::ErrorCode::Timeout,
                    retry_after: TIMEOUT_RETRY_AFTER,
                    message: "the broker could not answer in time; retry shortly",
                }
                .into_response()
            }
        }
    }
}
