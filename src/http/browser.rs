//! Browser-facing endpoints: starting flows and Entra's callback.

use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::error::PageError;
use super::found;
use super::pages::{self, PageContent};
use crate::app::AppState;
use crate::flow::{self, AuthorizeQuery, CallbackOutcome, CallbackParams, FailedFlow};

/// `Query<T>` whose rejections are readable pages.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(PageError))]
pub struct PageQuery<T>(pub T);

/// `GET /v1/connect/{token}`
pub async fn connect(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, PageError> {
    let url = flow::start_from_connect_token(&state, &token).await?;
    Ok(found(url.as_str()))
}

/// `GET /v1/authorize`
pub async fn authorize(
    State(state): State<AppState>,
    PageQuery(q): PageQuery<AuthorizeQuery>,
) -> Result<Response, PageError> {
    let url = flow::start_from_authorize(&state, &q).await?;
    Ok(found(url.as_str()))
}

/// `GET /v1/callback`
pub async fn callback(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response, PageError> {
    let params = CallbackParams::parse(raw.as_deref().unwrap_or(""))?;
    match flow::callback(&state, params).await? {
        CallbackOutcome::Completed {
            redirect: Some(url), ..
        } => Ok(found(url.as_str())),
        CallbackOutcome::Completed {
            redirect: None,
            handoff_code,
            connector_name,
            expires_in,
            ..
        } => {
            let mut page = PageContent::message(
                "You're connected",
                format!("{connector_name} is now connected to your Microsoft account."),
            );
            page.paragraphs.push(format!(
                "Copy this code and paste it into {connector_name} to finish. It works once and expires in {} minutes.",
                expires_in.div_ceil(60)
            ));
            page.code = Some(handoff_code.expose().to_string());
            Ok(pages::render(StatusCode::OK, &page))
        }
        CallbackOutcome::Failed(FailedFlow {
            approval_path: Some(path),
            ..
        }) => Ok(found(&state.public(&path))),
        CallbackOutcome::Failed(failed) => {
            let c = &failed.classification;
            let (user_message, admin_message) = (c.user_message(), c.admin_message());
            let mut page = PageContent::message("We couldn't connect your account", user_message);
            page.paragraphs.push(format!(
                "For your IT team or {}: {admin_message}",
                failed.connector_name
            ));
            if c.reason == Some("user_not_assigned") {
                page.paragraphs.push(format!(
                    "Ask your administrator to assign you to the enterprise application \u{201c}{}\u{201d} (application ID {}) under Enterprise applications > Users and groups.",
                    failed.connector_name, failed.client_id
                ));
            }
            if let Some(url) = &failed.back_url {
                page.action = Some((format!("Back to {}", failed.connector_name), url.to_string()));
            }
            page.details.push(("Category".into(), c.category.as_str().into()));
            if let Some(code) = c.primary_code() {
                page.details.push(("Error code".into(), format!("AADSTS{code}")));
            }
            if let Some(t) = &c.trace_id {
                page.details.push(("Trace ID".into(), t.clone()));
            }
            if let Some(t) = &c.correlation_id {
                page.details.push(("Correlation ID".into(), t.clone()));
            }
            // 200: the flow ended as designed, with an answer for the user.
            Ok(pages::render(StatusCode::OK, &page))
        }
    }
}
