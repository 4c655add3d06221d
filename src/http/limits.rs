//! The per-IP rate limit of browser endpoints, as a route layer.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::PageError;
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
