//! The approval page, its status, "continue", and the admin-consent round trip.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::api_types::{ApprovalStatusBody, ErrorBody, RetryableErrorBody};
use super::binding::BrowserCookie;
use super::browser::PageQuery;
use super::error::{ApiError, PageError};
use super::found;
use super::i18n::{Lang, fill};
use super::pages::{self, PageContent};
use crate::app::AppState;
use crate::approval::{self, ConsentOutcome, Status, Unconfirmed};
use crate::flow::{self, FlowError};
use crate::ids::{ConnectorId, FlowId};
use crate::store::records::Approval;

mod view;

pub use view::category_name;

async fn load(state: &AppState, flow_id: &str) -> Result<Option<Approval>, crate::store::StoreError> {
    if flow_id.is_empty() || flow_id.len() > 64 {
        return Ok(None);
    }
    state.approval.approval(&FlowId::new(flow_id)).await
}

fn not_found(lang: Lang) -> PageError {
    let t = lang.texts();
    PageError {
        status: StatusCode::NOT_FOUND,
        content: PageContent {
            lang,
            back_button: true,
            ..PageContent::message(t.approval_not_found_title, t.approval_not_found)
        },
        retry_after: None,
    }
}

/// The "your organization needs to approve <connector>" page a sign-in that needs the tenant's
/// approval ends on (HTML, English or German from `Accept-Language`).
#[utoipa::path(
    get,
    path = "/v1/approval/{flow_id}",
    tag = "approval",
    params(("flow_id" = String, Path, description = "The failed sign-in's flow, from the callback's redirect or the session's `approval_url`.")),
    responses(
        (status = 200, description = "The approval page, one state at a time: waiting (the connector, its publisher and links, the organization by domain, each permission in plain words, what the user can do now, and under \"I'm an administrator\" the one-click link and the ways to fix it for everyone), request sent, approved (only \"Approved — continue\" and what was approved), expired (with \"start again\"), or approved but still failing. With JavaScript it polls `/v1/approval/{flow_id}/status` and turns approved or expired by itself.", content_type = "text/html"),
        (status = 404, description = "No such approval page (unknown or expired flow).", content_type = "text/html"),
        (status = 429, description = "Over the per-address limit of browser pages.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The store does not answer.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn page(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let approval = load(&state, &flow_id)
        .await
        .map_err(FlowError::from)?
        .ok_or_else(|| not_found(lang))?;
    let connector = state.connector(&approval.connector).ok_or_else(|| not_found(lang))?;
    let status = state.approval.status(&approval).await.map_err(FlowError::from)?;
    let diagnosis = match status {
        Status::Pending => state.approval.diagnose(&approval).await.map_err(FlowError::from)?,
        Status::Approved | Status::Expired => None,
    };
    let cookie = BrowserCookie::read(&headers, state.secure_cookies());
    let own = cookie
        .as_ref()
        .filter(|c| flow::binding::same_browser(Some(&c.binding()), &approval.browser));
    let authority = &state.config.entra.authority;
    let entra_host = match authority.port() {
        Some(port) => format!("{}:{port}", authority.host_str().unwrap_or_default()),
        None => authority.host_str().unwrap_or_default().to_string(),
    };
    let page = view::build(view::Inputs {
        lang,
        approval: &approval,
        connector,
        status,
        diagnosis,
        can_continue: own.is_some(),
        page_url: state.public(&approval::page_path(&approval.flow_id)),
        admin_link: state.approval.admin_link(&approval),
        entra_host,
    });
    match page.html() {
        Ok(html) => {
            let mut response = (StatusCode::OK, Html(html)).into_response();
            if let Some(csp) = connector.publisher.logo_url.as_ref().and_then(logo_csp) {
                response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
            }
            // Coming back to the page keeps the user able to continue for as long as it waits.
            let left = approval.expires_at - crate::clock::now_unix();
            if let Some(cookie) = own
                && left > 0
            {
                cookie.set(&mut response, std::time::Duration::from_secs(left as u64));
            }
            Ok(response)
        }
        Err(e) => {
            tracing::error!(error = %e, "approval template failed");
            Ok((StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response())
        }
    }
}

/// The broker's policy with images also allowed from the configured logo's origin (the page's
/// only third-party resource).
fn logo_csp(logo: &url::Url) -> Option<HeaderValue> {
    let origin = logo.origin().ascii_serialization();
    let csp = super::CSP.replace("img-src 'self'", &format!("img-src 'self' {origin}"));
    HeaderValue::from_str(&csp).ok()
}

/// Whether the tenant has approved since the page opened: what the open approval page polls.
/// Needs no API key (the flow id is the page's own secret) and is not rate-limited per address.
#[utoipa::path(
    get,
    path = "/v1/approval/{flow_id}/status",
    tag = "approval",
    params(("flow_id" = String, Path, description = "The approval page's flow.")),
    responses(
        (status = 200, description = "Where the wait stands.", body = ApprovalStatusBody),
        (status = 404, description = "`not_found`: no such approval page.", body = ErrorBody),
        (status = 503, description = "`store_unavailable`.", body = RetryableErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
) -> Result<Json<ApprovalStatusBody>, ApiError> {
    let approval = load(&state, &flow_id).await?.ok_or(ApiError::NotFound)?;
    let status = state.approval.status(&approval).await?;
    Ok(Json(ApprovalStatusBody {
        status: status.into(),
        retry_url: state.public(&format!("{}/continue", approval::page_path(&approval.flow_id))),
        tenant_id: approval.tenant_id,
    }))
}

/// "Continue" / "try again" on an approval page: a new sign-in with the same connector, user hint
/// and return URL, in the browser that started the first one.
#[utoipa::path(
    get,
    path = "/v1/approval/{flow_id}/continue",
    tag = "approval",
    params(("flow_id" = String, Path, description = "The approval page's flow.")),
    responses(
        (status = 302, description = "To Entra's authorize endpoint, as `GET /v1/connect/{token}` does; renews the browser-binding cookie.",
            headers(("Location" = String, description = "Entra's authorize URL."),
                    ("Set-Cookie" = String, description = "The browser-binding cookie (`cb_browser`, `__Host-cb_browser` on https)."))),
        (status = 400, description = "A readable page: this browser did not start the sign-in, or a parameter is invalid.", content_type = "text/html"),
        (status = 404, description = "No such approval page.", content_type = "text/html"),
        (status = 429, description = "Too many sign-ins started, or over the per-address limit.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The store does not answer.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn continue_flow(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let approval = load(&state, &flow_id)
        .await
        .map_err(FlowError::from)?
        .ok_or_else(|| not_found(lang))?;
    let cookie = BrowserCookie::read(&headers, state.secure_cookies());
    let client = state.limits.client_ip(&headers, peer.map(|p| p.0.0));
    let url = state
        .flow
        .start_for_approval(&approval, cookie.as_ref().map(BrowserCookie::binding).as_ref(), client)
        .await
        .map_err(|e| {
            // Whatever stopped it, the way on is the page it came from, which says what to do.
            let mut page = PageError::from_flow(e, lang);
            page.content.action = Some((
                lang.texts().back_to_approval.to_string(),
                state.public(&approval::page_path(&approval.flow_id)),
            ));
            page
        })?;
    let cookie = cookie.ok_or(FlowError::OtherBrowser)?;
    let mut response = found(url.as_str());
    // Long enough for the new sign-in, and for coming back to this page if it fails again.
    let left = std::time::Duration::from_secs((approval.expires_at - crate::clock::now_unix()).max(0) as u64);
    cookie.set(&mut response, left.max(state.config.flow.state_ttl));
    Ok(response)
}

/// Query of `GET /v1/admin-consent/start`; the required two are `Option`s so that a missing one is
/// a readable page.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// The connector to approve.
    #[param(required = true)]
    connector: Option<String>,
    /// The tenant (GUID or domain) whose administrator approves.
    #[param(required = true)]
    tenant: Option<String>,
    /// The approval page to return to afterwards.
    flow: Option<String>,
}

/// The admin's one-click link: starts Entra's admin consent for the connector in a tenant.
#[utoipa::path(
    get,
    path = "/v1/admin-consent/start",
    tag = "approval",
    params(StartQuery),
    responses(
        (status = 302, description = "To `https://{authority}/{tenant}/v2.0/adminconsent` with the connector's `client_id`, its scopes, `redirect_uri={public_url}/v1/admin-consent/callback` and a fresh single-use `state`.",
            headers(("Location" = String, description = "Entra's admin consent URL."))),
        (status = 400, description = "A readable page: unknown connector or a missing or invalid parameter.", content_type = "text/html"),
        (status = 429, description = "Over the per-address limit.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "The store does not answer.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn admin_consent_start(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageQuery(q): PageQuery<StartQuery>,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let (Some(connector), Some(tenant)) = (q.connector.as_deref(), q.tenant.as_deref()) else {
        // Someone opened the address without the link's parameters (typed, or cut off in a mail).
        let t = lang.texts();
        let mut content = PageContent {
            lang,
            ..PageContent::message(t.start_incomplete.0, t.start_incomplete.1)
        };
        content.back_button = true;
        return Err(PageError {
            status: StatusCode::BAD_REQUEST,
            content,
            retry_after: None,
        });
    };
    let url = state
        .approval
        .admin_consent_start(connector, tenant, q.flow.as_deref())
        .await
        .map_err(|e| PageError::from_flow(e, lang))?;
    Ok(found(url.as_str()))
}

/// Entra's redirect target after admin consent: checks the approval with Entra, records it and
/// turns every waiting approval page of that tenant and connector to "approved".
#[utoipa::path(
    get,
    path = "/v1/admin-consent/callback",
    tag = "approval",
    params(
        ("admin_consent" = Option<String>, Query, description = "`True` when the admin approved."),
        ("tenant" = Option<String>, Query, description = "The tenant GUID that approved."),
        ("scope" = Option<String>, Query, description = "The granted scopes."),
        ("state" = Option<String>, Query, description = "The single-use state of `/v1/admin-consent/start`."),
        ("error" = Option<String>, Query, description = "Entra's error, when the admin cancelled or could not approve."),
        ("error_description" = Option<String>, Query, description = "Entra's error text (with the AADSTS code)."),
    ),
    responses(
        (status = 200, description = "A page: thanks (approval checked with Entra and recorded), cancelled, not an administrator, what went wrong and who fixes it, or \"we could not confirm the approval yet\" with \"try again\".", content_type = "text/html"),
        (status = 400, description = "A page: unknown, reused or expired `state`, or a tenant other than the one asked for; nothing recorded.", content_type = "text/html"),
        (status = 429, description = "Over the per-address limit.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
        (status = 503, description = "A page: Entra is unavailable or throttling, so the approval could not be checked and nothing was recorded; or the store does not answer.", content_type = "text/html",
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    )
)]
pub async fn admin_consent_callback(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let t = lang.texts();
    let outcome = match state
        .approval
        .admin_consent_callback(raw.as_deref().unwrap_or(""))
        .await
    {
        Err(FlowError::InvalidState) => return Err(spent_state(&state, raw.as_deref().unwrap_or(""), lang).await),
        other => other.map_err(|e| PageError::from_flow(e, lang))?,
    };
    let name = |id: &ConnectorId| {
        state
            .connector(id)
            .map_or_else(|| id.to_string(), |c| c.display_name.clone())
    };
    let mut retry = None;
    // The admin came from an approval page: that is where to go on.
    let back_to_page =
        |flow: Option<&FlowId>| flow.map(|f| (t.back_to_approval.to_string(), state.public(&approval::page_path(f))));
    let (status, mut content) = match outcome {
        ConsentOutcome::Approved {
            connector,
            tenant_id,
            flow_id,
        } => {
            let n = name(&connector);
            let mut page = PageContent::message(
                &fill(t.thanks_title, &[("connector", &n)]),
                fill(t.thanks_body, &[("connector", &n), ("tenant", tenant_id.as_str())]),
            );
            page.action = back_to_page(flow_id.as_ref());
            (StatusCode::OK, page)
        }
        ConsentOutcome::Cancelled { flow_id, .. } => {
            let mut page = PageContent::message(t.consent_cancelled_title, t.consent_cancelled_body);
            page.action = back_to_page(flow_id.as_ref());
            (StatusCode::OK, page)
        }
        ConsentOutcome::NotAdmin { connector, flow_id } => {
            let mut page = PageContent::message(
                t.consent_not_admin_title,
                fill(t.consent_not_admin_body, &[("connector", &name(&connector))]),
            );
            page.action = back_to_page(flow_id.as_ref());
            (StatusCode::OK, page)
        }
        ConsentOutcome::WrongTenant { flow_id } => {
            let mut page = PageContent::message(t.consent_failed_title, t.consent_wrong_tenant);
            page.action = back_to_page(flow_id.as_ref());
            (StatusCode::BAD_REQUEST, page)
        }
        ConsentOutcome::Unconfirmed {
            connector,
            tenant_id,
            flow_id,
            reason,
        } => {
            let n = name(&connector);
            let values = [("connector", n.as_str()), ("tenant", tenant_id.as_str())];
            let (status, body) = match reason {
                Unconfirmed::NoServicePrincipal => (StatusCode::OK, t.consent_unconfirmed_body),
                Unconfirmed::EntraUnavailable { retry_after } => {
                    retry = Some(retry_after);
                    (StatusCode::SERVICE_UNAVAILABLE, t.consent_unavailable_body)
                }
            };
            let mut page = PageContent::message(t.consent_unconfirmed_title, fill(body, &values));
            page.action = Some((
                t.try_again.to_string(),
                state
                    .approval
                    .start_link(&connector, tenant_id.as_str(), flow_id.as_ref()),
            ));
            page.details.push((t.label_tenant_id.into(), tenant_id.to_string()));
            (status, page)
        }
        ConsentOutcome::Failed {
            classification: c,
            flow_id,
            ..
        } => {
            let (user, admin) = (c.user_message_in(lang), c.admin_message_in(lang));
            let mut page = PageContent::message(t.consent_failed_title, user);
            if admin != user {
                page.paragraphs.push(admin.to_string());
            }
            page.action = back_to_page(flow_id.as_ref());
            page.details
                .push((t.label_category.into(), category_name(c.category, lang)));
            if let Some(code) = c.primary_code() {
                page.details.push((t.label_error_code.into(), format!("AADSTS{code}")));
            }
            for (label, id) in [
                (t.label_trace_id, &c.trace_id),
                (t.label_correlation_id, &c.correlation_id),
            ] {
                if let Some(id) = id {
                    page.details.push((label.into(), id.clone()));
                }
            }
            (StatusCode::OK, page)
        }
    };
    content.lang = lang;
    // Pages without a link of their own (cancelled, not an admin, wrong tenant, failed) offer "back".
    content.back_button = content.action.is_none();
    let mut response = pages::render(status, &content);
    if let Some(r) = retry
        && let Ok(v) = HeaderValue::from_str(&r.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(response)
}

/// The page for an admin-consent callback whose state is unknown, spent or expired. Reloading the
/// thank-you page is the common case: when the callback reports success for a tenant that has
/// since approved a connector, say that it is done rather than that it failed. Nothing is
/// recorded either way (the answer itself proves nothing; see `approval::consent`).
async fn spent_state(state: &AppState, raw: &str, lang: Lang) -> PageError {
    let t = lang.texts();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let said_approved = get("admin_consent").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let tenant = get("tenant").filter(|t| uuid::Uuid::parse_str(t).is_ok());
    let mut approved = Vec::new();
    if let (true, Some(tenant)) = (said_approved, tenant) {
        for connector in &state.config.connectors {
            if let Ok(Some(_)) = state.records.tenant_approval(&connector.id, &tenant.into()).await {
                approved.push(connector.display_name.as_str());
            }
        }
    }
    let mut content = if approved.is_empty() {
        PageContent::message(t.consent_link_used_title, t.consent_state_invalid)
    } else {
        PageContent::message(
            t.consent_already_done_title,
            fill(t.consent_already_done_body, &[("connector", &approved.join(", "))]),
        )
    };
    content.lang = lang;
    content.back_button = true;
    PageError {
        status: if approved.is_empty() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        content,
        retry_after: None,
    }
}
