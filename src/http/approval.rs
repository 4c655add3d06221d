//! The approval page, its status, "continue", and the admin-consent round trip.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::binding::BrowserCookie;
use super::error::{ApiError, PageError};
use super::found;
use super::i18n::{Lang, Texts, fill};
use super::pages::{self, PageContent};
use crate::app::AppState;
use crate::approval::{self, ConsentOutcome, Diagnosis, Status, Unconfirmed, permissions};
use crate::flow::{self, FlowError};
use crate::store::records::Approval;

/// One permission row.
struct PermissionView {
    name: String,
    description: String,
    admin_only: bool,
    low_impact: bool,
}

#[derive(Template)]
#[template(path = "approval.html", config = "src/http/askama.toml")]
struct ApprovalPage<'a> {
    lang: &'static str,
    t: &'static Texts,
    title: String,
    organization: String,
    status: &'static str,
    status_text: String,
    approved_text: String,
    expired_text: String,
    status_url: String,
    retry_url: String,
    branch_text: String,
    publisher_note: Option<String>,
    permissions_heading: String,
    permissions: Vec<PermissionView>,
    admin_app: String,
    admin_link: String,
    admin_button: String,
    fixes: Vec<String>,
    it_message: String,
    diagnosis: Option<String>,
    details: Vec<(&'a str, String)>,
    can_continue: bool,
}

fn date(unix: i64) -> String {
    crate::clock::rfc3339(unix).chars().take(10).collect()
}

async fn load(state: &AppState, flow_id: &str) -> Result<Option<Approval>, crate::store::StoreError> {
    if flow_id.is_empty() || flow_id.len() > 64 {
        return Ok(None);
    }
    state.records.approval(flow_id).await
}

fn not_found(lang: Lang) -> PageError {
    let t = lang.texts();
    PageError {
        status: StatusCode::NOT_FOUND,
        content: PageContent {
            lang,
            ..PageContent::message(t.approval_not_found, t.approval_not_found)
        },
        retry_after: None,
    }
}

/// `GET /v1/approval/{flow_id}`
pub async fn page(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let t = lang.texts();
    let approval = load(&state, &flow_id)
        .await
        .map_err(FlowError::from)?
        .ok_or_else(|| not_found(lang))?;
    let connector = state.connector(&approval.connector).ok_or_else(|| not_found(lang))?;
    let name = connector.display_name.as_str();
    let status = approval::status(&state, &approval).await.map_err(FlowError::from)?;
    let cookie = BrowserCookie::read(&headers, state.secure_cookies());
    let own = cookie
        .as_ref()
        .filter(|c| flow::binding::same_browser(Some(&c.binding()), &approval.browser));
    let tenant = approval
        .tenant_label
        .clone()
        .unwrap_or_else(|| t.your_organization.to_string());

    let permissions: Vec<PermissionView> = connector
        .scopes
        .iter()
        .chain(["offline_access".to_string()].iter())
        .map(|scope| match permissions::describe(scope) {
            Some(p) => PermissionView {
                name: p.name.to_string(),
                description: (if lang == Lang::De { p.de } else { p.en }).to_string(),
                admin_only: p.admin_only,
                low_impact: !p.admin_only && !permissions::is_oidc(p.name),
            },
            None => PermissionView {
                name: permissions::short_name(scope).to_string(),
                description: t.unknown_permission.to_string(),
                admin_only: false,
                low_impact: false,
            },
        })
        .collect();
    let classifiable: Vec<&str> = permissions
        .iter()
        .filter(|p| p.low_impact)
        .map(|p| p.name.as_str())
        .collect();
    let permission_lines: Vec<String> = permissions
        .iter()
        .map(|p| format!("- {}: {}", p.name, p.description))
        .collect();

    let requested = approval.aadsts == Some(90095);
    let branch_text = match (approval.category.as_str(), requested) {
        ("consent_required", _) => fill(t.branch_consent, &[("connector", name)]),
        (_, true) => t.branch_requested.to_string(),
        _ => t.branch_admin_only.to_string(),
    };
    let status_text = match status {
        Status::Approved => t.status_approved.to_string(),
        Status::Expired => fill(t.status_expired, &[("connector", name)]),
        Status::Pending if requested => t.status_requested.to_string(),
        Status::Pending => fill(t.status_pending, &[("connector", name)]),
    };
    let admin_link = approval::admin_link(&state, &approval);
    let reference = match approval.aadsts {
        Some(code) => format!("AADSTS{code}, {}", approval.flow_id),
        None => approval.flow_id.clone(),
    };
    let diagnosis = approval::diagnose(&state, &approval)
        .await
        .map_err(FlowError::from)?
        .map(|d| match d {
            Diagnosis::NewScopes { approved_at, missing } => fill(
                t.diag_new_scopes,
                &[
                    ("connector", name),
                    ("date", &date(approved_at)),
                    ("permissions", &missing.join(", ")),
                ],
            ),
            Diagnosis::AssignmentLikely { approved_at } => {
                fill(t.diag_assignment, &[("connector", name), ("date", &date(approved_at))])
            }
            Diagnosis::OtherTenant => fill(t.diag_other_tenant, &[("connector", name), ("tenant", &tenant)]),
        });
    let mut details = vec![("Category", approval.category.clone())];
    if let Some(code) = approval.aadsts {
        details.push(("Error code", format!("AADSTS{code}")));
    }
    if let Some(tid) = &approval.tenant_id {
        details.push(("Tenant ID", tid.clone()));
    }
    details.push(("Reference", approval.flow_id.clone()));

    let page = ApprovalPage {
        lang: lang.code(),
        t,
        title: fill(t.approval_title, &[("connector", name)]),
        organization: fill(t.organization, &[("tenant", &tenant)]),
        status: status.as_str(),
        status_text,
        approved_text: t.status_approved.to_string(),
        expired_text: fill(t.status_expired, &[("connector", name)]),
        status_url: format!("{}/status", approval::page_path(&approval.flow_id)),
        retry_url: format!("{}/continue", approval::page_path(&approval.flow_id)),
        branch_text,
        publisher_note: (!connector.publisher_verified).then(|| fill(t.unverified_publisher, &[("connector", name)])),
        permissions_heading: fill(t.permissions_heading, &[("connector", name)]),
        admin_app: fill(t.admin_app, &[("connector", name), ("client_id", &connector.client_id)]),
        admin_button: fill(t.admin_button, &[("connector", name)]),
        fixes: vec![
            fill(t.fix_grant, &[("connector", name)]),
            t.fix_workflow.to_string(),
            fill(t.fix_classify, &[("permissions", &classifiable.join(", "))]),
        ],
        it_message: fill(
            t.it_message,
            &[
                ("connector", name),
                ("client_id", &connector.client_id),
                ("tenant", &tenant),
                ("permission_lines", &permission_lines.join("\n")),
                ("admin_link", &admin_link),
                ("reference", &reference),
            ],
        ),
        admin_link,
        permissions,
        diagnosis,
        details,
        can_continue: own.is_some(),
    };
    match page.render() {
        Ok(html) => {
            let mut response = (StatusCode::OK, Html(html)).into_response();
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

/// `GET /v1/approval/{flow_id}/status`
pub async fn status(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let approval = load(&state, &flow_id).await?.ok_or(ApiError::NotFound)?;
    let status = approval::status(&state, &approval).await?;
    Ok(Json(json!({
        "status": status.as_str(),
        "tenant_id": approval.tenant_id,
        "retry_url": state.public(&format!("{}/continue", approval::page_path(&approval.flow_id))),
    })))
}

/// `GET /v1/approval/{flow_id}/continue`: a new sign-in with the same connector, hint and return URL.
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
        .map_err(|e| PageError::from_flow(e, lang))?;
    let cookie = cookie.ok_or(FlowError::OtherBrowser)?;
    let mut response = found(url.as_str());
    // Long enough for the new sign-in, and for coming back to this page if it fails again.
    let left = std::time::Duration::from_secs((approval.expires_at - crate::clock::now_unix()).max(0) as u64);
    cookie.set(&mut response, left.max(state.config.flow.state_ttl));
    Ok(response)
}

/// Query of `GET /v1/admin-consent/start`.
#[derive(Deserialize)]
pub struct StartQuery {
    connector: Option<String>,
    tenant: Option<String>,
    flow: Option<String>,
}

/// `GET /v1/admin-consent/start`
pub async fn admin_consent_start(
    State(state): State<AppState>,
    Query(q): Query<StartQuery>,
) -> Result<Response, PageError> {
    let connector = q.connector.as_deref().ok_or(FlowError::InvalidParameter {
        field: "connector",
        message: "is required",
    })?;
    let tenant = q.tenant.as_deref().ok_or(FlowError::InvalidParameter {
        field: "tenant",
        message: "is required",
    })?;
    let url = approval::admin_consent_start(&state, connector, tenant, q.flow.as_deref()).await?;
    Ok(found(url.as_str()))
}

/// `GET /v1/admin-consent/callback`
pub async fn admin_consent_callback(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let lang = Lang::from_headers(&headers);
    let t = lang.texts();
    let outcome = match approval::admin_consent_callback(&state, raw.as_deref().unwrap_or("")).await {
        Err(FlowError::InvalidState) => {
            return Err(PageError {
                status: StatusCode::BAD_REQUEST,
                content: PageContent {
                    lang,
                    ..PageContent::message(t.consent_failed_title, t.consent_state_invalid)
                },
                retry_after: None,
            });
        }
        other => other?,
    };
    let name = |id: &str| {
        state
            .connector(id)
            .map_or_else(|| id.to_string(), |c| c.display_name.clone())
    };
    let mut retry = None;
    let (status, mut content) = match outcome {
        ConsentOutcome::Approved {
            connector,
            tenant_id,
            flow_id,
        } => {
            let n = name(&connector);
            let mut page = PageContent::message(
                &fill(t.thanks_title, &[("connector", &n)]),
                fill(t.thanks_body, &[("connector", &n), ("tenant", &tenant_id)]),
            );
            if let Some(f) = flow_id {
                page.action = Some((t.continue_label.to_string(), state.public(&approval::page_path(&f))));
            }
            (StatusCode::OK, page)
        }
        ConsentOutcome::Cancelled { .. } => (
            StatusCode::OK,
            PageContent::message(t.consent_cancelled_title, t.consent_cancelled_body),
        ),
        ConsentOutcome::NotAdmin { connector } => (
            StatusCode::OK,
            PageContent::message(
                t.consent_not_admin_title,
                fill(t.consent_not_admin_body, &[("connector", &name(&connector))]),
            ),
        ),
        ConsentOutcome::WrongTenant => (
            StatusCode::BAD_REQUEST,
            PageContent::message(t.consent_failed_title, t.consent_wrong_tenant),
        ),
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
                approval::start_link(&state, &connector, &tenant_id, flow_id.as_deref()),
            ));
            page.details.push(("Tenant ID".into(), tenant_id));
            (status, page)
        }
        ConsentOutcome::Failed { classification, .. } => {
            let mut page = PageContent::message(t.consent_failed_title, classification.user_message());
            page.paragraphs.push(classification.admin_message().to_string());
            if let Some(code) = classification.primary_code() {
                page.details.push(("Error code".into(), format!("AADSTS{code}")));
            }
            (StatusCode::OK, page)
        }
    };
    content.lang = lang;
    let mut response = pages::render(status, &content);
    if let Some(r) = retry
        && let Ok(v) = HeaderValue::from_str(&r.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(response)
}
