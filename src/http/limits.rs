//! The per-IP rate limit of browser endpoints, as a route layer, and the whole-request timeout.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderMap;

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
const TIMEOUT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Whether a timed-out request gets a page rather than JSON: it names HTML in `Accept`.
pub(crate) fn times_out_as_page(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Answers 503 with Retry-After when `answer` takes longer than `limit`
/// (`server.request_timeout_secs`): a page when `page` (see [`times_out_as_page`]), JSON for the
/// API. A refresh in flight is not cut short by it: it runs on its own task (`tokens`) and its
/// result is kept for the next call. Called by the one middleware in front of every route
/// ([`super::observe::record`]).
pub(crate) async fn within_request_timeout(
    limit: Duration,
    page: bool,
    lang: Lang,
    answer: impl Future<Output = Response>,
) -> Response {
    match tokio::time::timeout(limit, answer).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_secs = limit.as_secs(),
                "request took longer than the request timeout"
            );
            if page {
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
