//! Per-request observation: HTTP request counts and latency by route and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;
use crate::metrics::method_label;

/// Counts and times every request under its route template (`/v1/connections/{connection_id}`,
/// never the concrete path, which would carry ids), or `unmatched`.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let response = next.run(req).await;
    state.metrics.http_request(
        method,
        route.as_deref().unwrap_or("unmatched"),
        response.status().as_u16(),
        start.elapsed(),
    );
    response
}
