//! Browser-facing endpoints: starting flows and Entra's callback.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;

use super::binding::BrowserCookie;
use super::error::PageError;
use super::found;
use super::i18n::{Lang, category_messages_de, fill};
use super::pages::{self, PageContent};
use crate::app::AppState;
use crate::flow::{AuthorizeQuery, CallbackOutcome, CallbackParams, FailedFlow};

/// `Query<T>` whose rejections are readable pages.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(PageError))]
pub struct PageQuery<T>(pub T);

/// The redirect to Entra that starts a flow, binding it to the browser's cookie (set or renewed
/// for as long as the flow's state lives).
pub fn start_redirect(state: &AppState, cookie: &BrowserCookie, url: &url::Url) -> Response {
    let mut response = found(url.as_str());
    cookie.set(&mut response, state.config.flow.state_ttl);
    response
}

/// `GET /v1/connect/{token}`
pub async fn connect(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let cookie = BrowserCookie::read_or_new(&headers, state.secure_cookies());
    let url = state
        .flow
        .start_from_connect_token(&token, &cookie.binding())
        .await
        .map_err(|e| PageError::from_flow(e, lang))?;
    Ok(start_redirect(&state, &cookie, &url))
}

/// `GET /v1/authorize`
pub async fn authorize(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    PageQuery(q): PageQuery<AuthorizeQuery>,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let cookie = BrowserCookie::read_or_new(&headers, state.secure_cookies());
    let client = state.limits.client_ip(&headers, peer.map(|p| p.0.0));
    let url = state
        .flow
        .start_from_authorize(&q, &cookie.binding(), client)
        .await
        .map_err(|e| PageError::from_flow(e, lang))?;
    Ok(start_redirect(&state, &cookie, &url))
}

/// `GET /v1/callback`
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let t = lang.texts();
    let params = CallbackParams::parse(raw.as_deref().unwrap_or("")).map_err(|e| PageError::from_flow(e, lang))?;
    let cookie = BrowserCookie::read(&headers, state.secure_cookies());
    let outcome = state
        .flow
        .callback(params, cookie.as_ref().map(BrowserCookie::binding).as_ref())
        .await
        .map_err(|e| PageError::from_flow(e, lang))?;
    let mut page = match outcome {
        CallbackOutcome::Completed {
            redirect: Some(url), ..
        } => return Ok(found(url.as_str())),
        CallbackOutcome::Failed(FailedFlow {
            approval_path: Some(path),
            ..
        }) => {
            let mut response = found(&state.public(&path));
            // The wait for an administrator can take hours; "continue" needs the cookie then.
            if let Some(cookie) = &cookie {
                cookie.set(&mut response, crate::approval::APPROVAL_TTL);
            }
            return Ok(response);
        }
        CallbackOutcome::Completed {
            redirect: None,
            handoff_code,
            connector_name,
            expires_in,
            ..
        } => {
            let name = connector_name.as_str();
            let mut page = PageContent::message(t.connected_title, fill(t.connected_lead, &[("connector", name)]));
            let minutes = expires_in.div_ceil(60).to_string();
            page.paragraphs
                .push(fill(t.connected_code, &[("connector", name), ("minutes", &minutes)]));
            page.code = Some(handoff_code.expose().to_string());
            page
        }
        CallbackOutcome::Failed(failed) => {
            let c = &failed.classification;
            let name = failed.connector_name.as_str();
            let (user_message, admin_message) = match lang {
                Lang::En => (c.user_message(), c.admin_message()),
                Lang::De => category_messages_de(c.category),
            };
            let mut page = PageContent::message(t.failed_title, user_message);
            page.paragraphs.push(fill(
                t.failed_for_it,
                &[("connector", name), ("message", admin_message)],
            ));
            if c.reason == Some("user_not_assigned") {
                page.paragraphs.push(fill(
                    t.assign_hint,
                    &[("connector", name), ("client_id", &failed.client_id)],
                ));
            }
            if let Some(url) = &failed.back_url {
                page.action = Some((fill(t.back_to, &[("connector", name)]), url.to_string()));
            }
            page.details.push(("Category".into(), c.category.as_str().into()));
            if let Some(code) = c.primary_code() {
                page.details.push(("Error code".into(), format!("AADSTS{code}")));
            }
            if let Some(id) = &c.trace_id {
                page.details.push(("Trace ID".into(), id.clone()));
            }
            if let Some(id) = &c.correlation_id {
                page.details.push(("Correlation ID".into(), id.clone()));
            }
            page
        }
    };
    page.lang = lang;
    // 200 for both: the flow ended as designed, with an answer for the user.
    Ok(pages::render(StatusCode::OK, &page))
}
