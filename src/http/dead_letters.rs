//! `GET /v1/webhooks/dead-letters` and `POST /v1/webhooks/dead-letters/{event_id}/retry`: a
//! connector's webhook events whose delivery was given up, and sending one again.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::api::{ApiPath, ApiQuery, Caller, decode_cursor, encode_cursor, page_limit};
use super::api_types::{
    DeadDelivery, DeadLetterInfo, DeadLetterList, DeadLetterQuery, DeadLetterRetried, ErrorBody, ErrorCode,
    RetryableErrorBody,
};
use super::error::ApiError;
use crate::app::AppState;
use crate::clock::rfc3339;
use crate::store::records::{DeliveryState, OutboxEvent};

/// The caller's dead letters, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/webhooks/dead-letters",
    tag = "webhooks",
    security(("api_key" = [])),
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "One page of the caller's dead letters (kept 30 days).", body = DeadLetterList),
        (status = 400, description = "`invalid_cursor`, `invalid_parameter` (`limit` outside 1-500) or `invalid_query`.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`store_unavailable`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<DeadLetterQuery>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q.cursor.as_deref().map(|c| decode_cursor(&caller, c)).transpose()?;
    let (letters, next) = state.records.dead_letters(&caller, after.as_deref(), limit).await?;
    Ok(Json(DeadLetterList {
        dead_letters: letters.iter().map(|l| info(&l.event)).collect(),
        next_cursor: next.map(|m| encode_cursor(&caller, &m)),
    }))
}

/// Sends a dead letter again: the endpoints that gave up get it anew (same `webhook-id`, a fresh
/// 24-hour retry window); endpoints that acknowledged it do not.
#[utoipa::path(
    post,
    path = "/v1/webhooks/dead-letters/{event_id}/retry",
    tag = "webhooks",
    security(("api_key" = [])),
    params(("event_id" = String, Path, description = "The dead letter's `event_id` (its `webhook-id`).")),
    responses(
        (status = 202, description = "Queued for delivery again.", body = DeadLetterRetried),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`: no such dead letter of the caller's (never one of another connector's, already re-sent, or expired).", body = ErrorBody),
        (status = 429, description = "`rate_limited`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "`store_unavailable`, or `unavailable` when the letter changed meanwhile (try again).", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(event_id): ApiPath<String>,
) -> Result<(StatusCode, Json<DeadLetterRetried>), ApiError> {
    if event_id.is_empty()
        || event_id.len() > 64
        || !event_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::NotFound);
    }
    let (event, version, key) = state
        .records
        .dead_letter(&caller, &event_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let now_ms = crate::clock::now_millis();
    if !state.records.resend_dead_letter(event, version, &key, now_ms).await? {
        return Err(ApiError::Unavailable {
            code: ErrorCode::Unavailable,
            retry_after: std::time::Duration::from_secs(1),
            message: "the dead letter changed meanwhile; try again",
        });
    }
    state.outbox.wake().notify_one();
    tracing::info!(event = %event_id, connector = %caller, "dead letter queued again");
    Ok((
        StatusCode::ACCEPTED,
        Json(DeadLetterRetried {
            event_id,
            status: "queued".into(),
        }),
    ))
}

fn info(event: &OutboxEvent) -> DeadLetterInfo {
    DeadLetterInfo {
        event_id: event.id.clone(),
        kind: event.kind.clone(),
        created_at: rfc3339(event.created_at_ms / 1000),
        deliveries: event
            .deliveries
            .iter()
            .map(|d| DeadDelivery {
                url: d.url.clone(),
                state: match d.state {
                    DeliveryState::Pending => "pending",
                    DeliveryState::Delivered => "delivered",
                    DeliveryState::Dead => "dead",
                }
                .into(),
                attempts: d.attempts,
                last_error: d.last_error.clone(),
            })
            .collect(),
    }
}
