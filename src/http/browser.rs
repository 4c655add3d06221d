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
use super::i18n::{Lang, fill};
use super::pages::{self, HandoffView, PageContent};
use crate::app::AppState;
use crate::entra::Category;
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

/// Starts a sign-in from a connect session's link: the redirect to Entra, bound to this browser.
#[utoipa::path(
    get,
    path = "/v1/connect/{token}",
    tag = "browser",
    params(("token" = String, Path, description = "The token in the session's `connect_url`.")),
    responses(
        (status = 302, description = "To Entra's v2.0 authorize endpoint: the broker's `redirect_uri` (`{public_url}/v1/callback`), `response_type=code`, `response_mode=query`, a fresh `state`, PKCE `code_challenge_method=S256`, a `nonce`, the connector's scopes plus `openid profile offline_access`, `prompt=select_account`, and `login_hint`/`domain_hint` when known.",
            headers(("Location" = String, description = "Entra's authorize URL."),
                    ("Set-Cookie" = String, description = "The browser-binding cookie (`cb_browser`, `__Host-cb_browser` on https; HttpOnly, SameSite=Lax, Path=/)."))),
        (status = 400, description = "A readable page: unknown or expired link, or a session that already completed.", content_type = "text/html"),
        (status = 429, description = "Too many sign-ins started, or over the per-address limit.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The store does not answer.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
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

/// Starts a sign-in for connectors that only point a browser at the broker (no server call first).
#[utoipa::path(
    get,
    path = "/v1/authorize",
    tag = "browser",
    params(AuthorizeQuery),
    responses(
        (status = 302, description = "To Entra's v2.0 authorize endpoint, as for `/v1/connect/{token}` (without `prompt=select_account`).",
            headers(("Location" = String, description = "Entra's authorize URL."),
                    ("Set-Cookie" = String, description = "The browser-binding cookie."))),
        (status = 400, description = "A readable page: unknown connector, `return_url` missing or not registered for the connector, or an invalid parameter.", content_type = "text/html"),
        (status = 429, description = "Too many sign-ins started from this address.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The store does not answer.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
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

/// Entra's redirect target: finishes the sign-in, or shows who can fix what went wrong.
#[utoipa::path(
    get,
    path = "/v1/callback",
    tag = "browser",
    params(
        ("state" = String, Query, description = "The single-use `state` of the sign-in (expires after 10 minutes)."),
        ("code" = Option<String>, Query, description = "Entra's authorization code, on success."),
        ("error" = Option<String>, Query, description = "Entra's OAuth error, on failure."),
        ("error_description" = Option<String>, Query, description = "Entra's error text (with the AADSTS code)."),
        ("error_subcode" = Option<String>, Query, description = "Entra's error subcode (e.g. `cancel`)."),
        ("suberror" = Option<String>, Query, description = "Entra's suberror."),
        ("trace_id" = Option<String>, Query, description = "Entra's trace id."),
        ("correlation_id" = Option<String>, Query, description = "Entra's correlation id."),
    ),
    responses(
        (status = 302, description = "Success: to `return_url?handoff=<code>&state=<connector state>`. `admin_approval_required` or `consent_required`: to `/v1/approval/{flow_id}`.",
            headers(("Location" = String, description = "The return URL with the handoff code, or the approval page."))),
        (status = 200, description = "Out-of-band success: the \"copy this code\" page with the handoff code. Any other classified error: a page that says who can fix it and how, with \"try again\" or \"sign in with another account\" (a fresh link of the connect session) where a new attempt can succeed, and \"back to <connector>\" (`return_url?error=<category>&aadsts=<code>&state=..`), and a support reference.", content_type = "text/html"),
        (status = 400, description = "A page, nothing stored: unknown, reused or expired `state`, no `code`, a repeated parameter, an id_token that fails validation, or a browser that does not carry the sign-in's cookie.", content_type = "text/html"),
        (status = 429, description = "Over the per-address limit.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 502, description = "A page: Entra answered something unexpected.", content_type = "text/html"),
        (status = 503, description = "A page: Entra or the store is unavailable.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
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
            account,
            ..
        } => {
            let name = connector_name.as_str();
            let mut page = PageContent::message(t.connected_title, fill(t.connected_lead, &[("connector", name)]));
            page.paragraphs.push(fill(t.connected_code, &[("connector", name)]));
            let minutes = expires_in.div_ceil(60).to_string();
            page.code = Some(HandoffView {
                code: handoff_code.expose().to_string(),
                account,
                expires_in,
                expiry_text: fill(t.code_expires_at, &[("minutes", &minutes)]),
                close_text: fill(t.close_window, &[("connector", name)]),
            });
            page
        }
        CallbackOutcome::Failed(failed) => failure_page(&failed, lang),
    };
    page.lang = lang;
    // 200 for both: the flow ended as designed, with an answer for the user.
    Ok(pages::render(StatusCode::OK, &page))
}

/// The page of a sign-in Entra refused: what happened, who fixes it, the way on (try again or
/// another account when that can help, else back to the connector) and the support reference.
fn failure_page(failed: &FailedFlow, lang: Lang) -> PageContent {
    let t = lang.texts();
    let c = &failed.classification;
    let name = failed.connector_name.as_str();
    // The code's own words when the table has them, else the category's, in the page's language.
    let (user_message, admin_message) = (c.user_message_in(lang), c.admin_message_in(lang));
    let mut page = PageContent::message(t.failed_title, user_message);
    if admin_message != user_message {
        page.paragraphs.push(fill(
            t.failed_for_it,
            &[("connector", name), ("message", admin_message)],
        ));
    }
    if c.reason == Some("user_not_assigned") {
        page.paragraphs.push(fill(
            t.assign_hint,
            &[("connector", name), ("client_id", &failed.client_id)],
        ));
    }
    let another_account = matches!(c.category, Category::NotAssigned);
    page.action = match (&failed.retry_url, &failed.back_url) {
        (Some(url), _) => Some((
            if another_account {
                t.try_other_account
            } else {
                t.try_again
            }
            .to_string(),
            url.clone(),
        )),
        (None, Some(url)) => Some((fill(t.back_to, &[("connector", name)]), url.to_string())),
        (None, None) => None,
    };
    if let (Some(_), Some(url)) = (&failed.retry_url, &failed.back_url) {
        page.secondary = Some((fill(t.back_to, &[("connector", name)]), url.to_string()));
    }
    page.back_button = page.action.is_none();
    page.details.push((
        t.label_category.into(),
        super::approval::category_name(c.category, lang),
    ));
    if let Some(code) = c.primary_code() {
        page.details.push((t.label_error_code.into(), format!("AADSTS{code}")));
    }
    if let Some(id) = &c.trace_id {
        page.details.push((t.label_trace_id.into(), id.clone()));
    }
    if let Some(id) = &c.correlation_id {
        page.details.push((t.label_correlation_id.into(), id.clone()));
    }
    page
}
